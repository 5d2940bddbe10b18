//! The replication link's proof of the shared secret (`--auth-file`), before `Join` and
//! before any data: the replica sends a fresh nonce, the upstream answers with its own,
//! the replica proves the secret over both, and only once that checks out does the
//! upstream prove it in turn. The secret never crosses the link; each proof covers a
//! nonce the verifier chose, so neither can be replayed, and is labelled by side. A
//! listener hands no proof to a peer that has not proved itself first, so a stranger
//! that connects gets nothing to guess the secret against. A peer without the secret,
//! or with another, gets nothing but an `Error`. Both ends refuse a peer that does not
//! do the same as they do: a node with a secret refuses one without, and the other way
//! round.

use super::HANDSHAKE_TIMEOUT;
use crate::auth::{self, Secret, Side, NONCE_LEN};
use crate::connection::{MessageReader, MessageWriter};
use crate::error::{Error, Result};
use crate::protocol::Message;
use tokio::io::{AsyncRead, AsyncWrite};

/// Why a link was refused for its proof.
fn refused(reason: &str) -> Error {
    Error::Protocol(format!("authentication failed: {reason}"))
}

/// What the replica makes of an upstream's message where it expected `expected`.
fn unexpected(message: Option<Message>, expected: &str) -> Error {
    match message {
        Some(Message::Error { message }) => Error::Remote(format!("the upstream says: {message}")),
        Some(other) => refused(&format!(
            "the upstream answered {} instead of {expected} (does it run without \
             --auth-file?); not following it",
            other.name()
        )),
        None => refused("the upstream closed the connection instead of proving the secret"),
    }
}

/// The replica's side, right after connecting: proves the secret to the upstream and
/// checks the upstream's proof (nothing to do without a secret).
pub async fn prove_to_upstream<R, W>(
    secret: Option<&Secret>,
    reader: &mut MessageReader<R>,
    writer: &mut MessageWriter<W>,
) -> Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let Some(secret) = secret else {
        return Ok(());
    };
    let mine = auth::nonce();
    writer
        .send(&Message::AuthChallenge {
            nonce: mine.clone(),
        })
        .await?;
    let theirs = match reader
        .read_before(HANDSHAKE_TIMEOUT, "AuthResponse")
        .await?
    {
        Some(Message::AuthResponse { nonce }) if nonce.len() == NONCE_LEN => nonce,
        Some(Message::AuthResponse { .. }) => return Err(refused("a malformed nonce")),
        other => return Err(unexpected(other, "AuthResponse")),
    };
    let proof = secret.prove(Side::Replica, &mine, &theirs);
    writer.send(&Message::AuthProof { proof }).await?;
    match reader.read_before(HANDSHAKE_TIMEOUT, "AuthConfirm").await? {
        Some(Message::AuthConfirm { proof })
            if secret.verify(Side::Upstream, &mine, &theirs, &proof) =>
        {
            Ok(())
        }
        Some(Message::AuthConfirm { .. }) => Err(refused(
            "the upstream could not prove the shared secret (is its --auth-file the same as \
             this node's?); not following it",
        )),
        other => Err(unexpected(other, "AuthConfirm")),
    }
}

/// The upstream's side: the replica's first message, and with a secret the proofs both
/// ways; returns the message that follows them (its `Join`, to be checked by the caller).
pub async fn check_replica<R, W>(
    secret: Option<&Secret>,
    reader: &mut MessageReader<R>,
    writer: &mut MessageWriter<W>,
) -> Result<Option<Message>>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let first = reader.read_before(HANDSHAKE_TIMEOUT, "Join").await?;
    let (secret, theirs) = match (secret, first) {
        (Some(secret), Some(Message::AuthChallenge { nonce })) if nonce.len() == NONCE_LEN => {
            (secret, nonce)
        }
        (Some(_), Some(Message::AuthChallenge { .. })) => {
            return Err(refused("a malformed challenge"))
        }
        (Some(_), _) => {
            return Err(refused(
                "this node requires the shared secret: start the replica with the same \
                 --auth-file",
            ))
        }
        (None, Some(Message::AuthChallenge { .. })) => {
            return Err(refused(
                "this node has no --auth-file, so it cannot prove a shared secret: give both \
                 nodes the same --auth-file",
            ))
        }
        (None, first) => return Ok(first),
    };
    let mine = auth::nonce();
    writer
        .send(&Message::AuthResponse {
            nonce: mine.clone(),
        })
        .await?;
    match reader.read_before(HANDSHAKE_TIMEOUT, "AuthProof").await? {
        Some(Message::AuthProof { proof })
            if secret.verify(Side::Replica, &theirs, &mine, &proof) => {}
        Some(Message::AuthProof { .. }) => {
            return Err(refused(
                "the replica's proof is wrong: its --auth-file holds another secret",
            ))
        }
        Some(other) => {
            return Err(refused(&format!(
                "expected AuthProof, got {}",
                other.name()
            )))
        }
        None => {
            return Err(refused(
                "the replica closed the connection before its proof",
            ))
        }
    }
    let proof = secret.prove(Side::Upstream, &theirs, &mine);
    writer.send(&Message::AuthConfirm { proof }).await?;
    reader.read_before(HANDSHAKE_TIMEOUT, "Join").await
}
