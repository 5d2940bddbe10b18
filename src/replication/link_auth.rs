//! The replication link's proof of the shared secret (`--auth-file`), before `Join` and
//! before any data: the replica sends a fresh nonce, the upstream answers with its own
//! nonce and its proof over both, and the replica, once that proof checks out, sends its
//! own. The secret itself never crosses the link, each side's proof covers a nonce it
//! chose (so neither can be replayed), and a peer without the secret, or with another,
//! gets nothing but an `Error`. Both ends refuse a peer that does not do the same as they
//! do: a node with a secret refuses one without, and the other way round.

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
    match reader
        .read_before(HANDSHAKE_TIMEOUT, "AuthResponse")
        .await?
    {
        Some(Message::AuthResponse { nonce, proof }) => {
            if nonce.len() != NONCE_LEN || !secret.verify(Side::Upstream, &mine, &nonce, &proof) {
                return Err(refused(
                    "the upstream could not prove the shared secret (is its --auth-file the \
                     same as this node's?); not following it",
                ));
            }
            let proof = secret.prove(Side::Replica, &mine, &nonce);
            writer.send(&Message::AuthProof { proof }).await
        }
        Some(Message::Error { message }) => {
            Err(Error::Remote(format!("the upstream says: {message}")))
        }
        Some(other) => Err(refused(&format!(
            "the upstream answered {} instead of proving the shared secret (does it run \
             without --auth-file?); not following it",
            other.name()
        ))),
        None => Err(refused(
            "the upstream closed the connection instead of proving the secret",
        )),
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
    let proof = secret.prove(Side::Upstream, &theirs, &mine);
    writer
        .send(&Message::AuthResponse {
            nonce: mine.clone(),
            proof,
        })
        .await?;
    match reader.read_before(HANDSHAKE_TIMEOUT, "AuthProof").await? {
        Some(Message::AuthProof { proof })
            if secret.verify(Side::Replica, &theirs, &mine, &proof) =>
        {
            reader.read_before(HANDSHAKE_TIMEOUT, "Join").await
        }
        Some(Message::AuthProof { .. }) => Err(refused(
            "the replica's proof is wrong: its --auth-file holds another secret",
        )),
        Some(other) => Err(refused(&format!(
            "expected AuthProof, got {}",
            other.name()
        ))),
        None => Err(refused(
            "the replica closed the connection before its proof",
        )),
    }
}
