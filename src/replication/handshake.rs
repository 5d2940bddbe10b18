//! The replica's side of the handshake: the `Join` that tells the upstream where this
//! node's history stands (lineage, seq, log checksum, oldest logged seq), the answers to
//! the upstream's `Probe`s while it looks for the last seq both logs agree on, and the
//! replica's own rule about what it accepts: a history unrelated to the data it holds
//! only when the operator asked for this upstream (otherwise its link stops, saying why).

use super::report::FirstSync;
use super::{LinkState, Replication, DEAD_PEER};
use crate::connection::{MessageReader, MessageWriter};
use crate::error::{Error, Result};
use crate::protocol::{Message, PROTOCOL_VERSION};
use crate::store::history::{shared_bound, short_id};
use crate::store::{Lineage, Position, SnapshotTarget};
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::warn;

/// The `Join` of a replica at `position`.
pub fn join_message(repl: &Replication, position: &Position) -> Message {
    Message::Join {
        node_id: repl.node_id().to_string(),
        replica_addr: repl.listen_addr().to_string(),
        history_id: position.history_id.clone(),
        last_seq: position.head,
        protocol_version: PROTOCOL_VERSION,
        fork: position.fork.clone(),
        checksum: position.checksum,
        oldest_log: position.oldest_log,
        epoch: position.epoch,
    }
}

/// Most probes a replica answers on one connection: a bisection over the whole seq space
/// takes 63, plus the two comparisons before it; an upstream asking more is broken.
const MAX_PROBES: usize = 128;

/// Answers the upstream's probes with this node's log checksums until it sends anything
/// else (its decision), which is returned.
pub async fn answer_probes<R, W>(
    repl: &Replication,
    reader: &mut MessageReader<R>,
    writer: &mut MessageWriter<W>,
) -> Result<Message>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    for _ in 0..=MAX_PROBES {
        let message = next_message(reader).await?;
        let Message::Probe { seq } = message else {
            return Ok(message);
        };
        let checksum = repl.blocking(move |store| store.checksum_at(seq)).await?;
        writer.send(&Message::ProbeReply { seq, checksum }).await?;
    }
    Err(Error::Protocol(format!(
        "the upstream sent more than {MAX_PROBES} probes"
    )))
}

/// Refuses a snapshot of a history unrelated to the data this node holds (neither
/// descends from the other), unless `accept` (the operator asked for this upstream:
/// `JOIN`, `REPLICAOF`, a start with `--join`). A node without data accepts anything.
pub fn check_related(
    own: &Position,
    target: &SnapshotTarget,
    upstream: &str,
    accept: bool,
) -> Result<()> {
    let Some(own_history) = &own.history_id else {
        return Ok(());
    };
    let offered = Lineage {
        history_id: Some(target.history_id.clone()),
        fork: target.fork.clone(),
        epoch: target.epoch,
    };
    if accept || own.head == 0 || shared_bound(&own.lineage(), &offered).is_some() {
        return Ok(());
    }
    Err(Error::UnrelatedHistory(format!(
        "upstream {upstream} has an unrelated history {}… (this node holds history {}… up to \
         seq {}): kept this node's data and stopped following; to replace it with the \
         upstream's, JOIN {upstream} (or REPLICAOF with its address)",
        short_id(&target.history_id),
        short_id(own_history),
        own.head
    )))
}

/// The link stops for good: the upstream offered an unrelated history on a reconnect.
pub fn stop_following(
    repl: &Replication,
    upstream: &str,
    reason: &str,
    first_sync: Option<FirstSync>,
) {
    warn!("link to {upstream} stopped: {reason}");
    repl.update_link(|link| {
        link.state = LinkState::Stopped;
        link.last_error = Some(reason.to_string());
        link.snapshot = None;
    });
    if let Some(report) = first_sync {
        let _ = report.send(Err(Error::UnrelatedHistory(reason.to_string())));
    }
}

/// The upstream closed the connection.
pub(super) fn closed() -> Error {
    Error::Closed("the upstream closed the connection".into())
}

/// The next message from the upstream; silence for [`DEAD_PEER`] means it is dead.
pub(super) async fn next_message<R: AsyncRead + Unpin>(
    reader: &mut MessageReader<R>,
) -> Result<Message> {
    reader
        .read_within(DEAD_PEER, "a message from the upstream")
        .await?
        .ok_or_else(closed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(history: &str, head: u64) -> Position {
        Position {
            history_id: Some(history.into()),
            head,
            ..Position::default()
        }
    }

    #[test]
    fn an_unrelated_history_is_refused_unless_asked_for() {
        let other = SnapshotTarget::plain("b", 5);
        let refused = check_related(&at("a", 10), &other, "h:1", false);
        assert!(matches!(refused, Err(Error::UnrelatedHistory(_))));
        assert!(check_related(&at("a", 10), &other, "h:1", true).is_ok());
        // Nothing to lose: no history, or nothing ever written in it.
        assert!(check_related(&Position::default(), &other, "h:1", false).is_ok());
        assert!(check_related(&at("a", 0), &other, "h:1", false).is_ok());
        // A history that continues this one is related.
        let forked = SnapshotTarget {
            fork: Some(crate::store::Fork {
                prev_history_id: "a".into(),
                seq: 3,
                epoch: 0,
            }),
            ..other
        };
        assert!(check_related(&at("a", 10), &forked, "h:1", false).is_ok());
    }
}
