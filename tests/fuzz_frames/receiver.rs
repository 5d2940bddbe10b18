//! Check 3: [`Receiver`] fed mostly-correct, sometimes perturbed sequences of messages
//! (each through an encode and a decode), checked against a model of what it accepted,
//! tracked from its steps alone.

use crate::messages::{
    encoding_of, message_of, random_data, random_expiry, random_seq, random_string, valid_expiry,
    SEQS, VARIANTS,
};
use crate::{Rng, Stats};
use kv::protocol::{self, Message};
use kv::replication::{Receiver, Step};
use kv::store::{Bytes, LogEntry, Op, Record, MAX_EXPIRY, MAX_SEQ};
use rand::RngExt;
use std::panic::{self, AssertUnwindSafe};

#[derive(Clone, Debug, PartialEq)]
enum Phase {
    Start,
    InSnapshot { seq: u64, last_key: Option<Bytes> },
    Streaming,
}

/// What the receiver has accepted so far, tracked from its steps alone.
#[derive(Debug)]
struct Model {
    phase: Phase,
    history: Option<String>,
    last: u64,
}

const HISTORIES: [&str; 3] = ["h-a", "h-b", ""];

fn random_history(rng: &mut Rng) -> String {
    if rng.random_bool(0.9) {
        HISTORIES[rng.random_range(0..HISTORIES.len())].to_string()
    } else {
        random_string(rng)
    }
}

fn start_seq(rng: &mut Rng) -> u64 {
    match rng.random_range(0..10) {
        0 => SEQS[rng.random_range(0..SEQS.len())],
        1 => MAX_SEQ - rng.random_range(0..4),
        _ => rng.random_range(0..100),
    }
}

/// A seq near `last`, or at a boundary.
fn nearby_seq(last: u64, rng: &mut Rng) -> u64 {
    match rng.random_range(0..8) {
        0 => last,
        1 => last.wrapping_sub(1),
        2 => last.wrapping_add(2),
        3 => last.wrapping_add(1),
        4 => SEQS[rng.random_range(0..SEQS.len())],
        5 => rng.random(),
        _ => last.wrapping_add(rng.random_range(0..5)).wrapping_sub(2),
    }
}

/// Keys in byte order (the order of `Vec<u8>`), all after `after`.
fn sorted_keys(after: Option<&[u8]>, rng: &mut Rng) -> Vec<Record> {
    let mut keys: Vec<Bytes> = (0..rng.random_range(0..6))
        .map(|_| random_data(rng))
        .collect();
    keys.sort();
    keys.dedup();
    keys.retain(|k| after.is_none_or(|after| k.as_slice() > after));
    keys.into_iter()
        .map(|key| Record {
            key,
            value: random_data(rng),
            expires_at: valid_expiry(rng),
        })
        .collect()
}

/// What a correct upstream would send next, given what the receiver accepted.
fn correct_next(model: &Model, rng: &mut Rng) -> Message {
    match &model.phase {
        Phase::Start => match &model.history {
            Some(history) if rng.random_bool(0.5) => Message::Continue {
                history_id: history.clone(),
                from_seq: model.last,
                fork: None,
                epoch: 0,
            },
            _ => Message::SnapshotBegin {
                history_id: random_history(rng),
                seq: if rng.random_bool(0.8) {
                    start_seq(rng)
                } else {
                    random_seq(rng)
                },
                keys: rng.random_range(0..10),
                reason: random_string(rng),
                fork: None,
                checksum: None,
                keep_diverged_after: None,
                epoch: 0,
            },
        },
        Phase::InSnapshot { seq, last_key } => {
            if rng.random_bool(0.6) {
                Message::Snapshot {
                    entries: sorted_keys(last_key.as_deref(), rng),
                }
            } else {
                Message::SnapshotEnd { seq: *seq }
            }
        }
        Phase::Streaming => {
            let seq = model.last.wrapping_add(1);
            match rng.random_range(0..10) {
                // A correct upstream pings with the last seq it sent, and its head.
                0 => Message::Ping {
                    seq: model.last.saturating_sub(rng.random_range(0..3)),
                    head: model.last.saturating_add(rng.random_range(0..1000)),
                },
                1..=3 => Message::Delete {
                    seq,
                    key: random_data(rng),
                },
                _ => Message::Put {
                    seq,
                    key: random_data(rng),
                    value: random_data(rng),
                    expires_at: valid_expiry(rng),
                },
            }
        }
    }
}

/// A plausible mistake: any message, with seqs and histories near the right ones.
fn perturbed_next(model: &Model, rng: &mut Rng) -> Message {
    let seq = nearby_seq(model.last, rng);
    match rng.random_range(0..10) {
        0 => Message::Continue {
            history_id: if rng.random_bool(0.5) {
                model.history.clone().unwrap_or_default()
            } else {
                random_history(rng)
            },
            from_seq: seq,
            fork: None,
            epoch: 0,
        },
        1 => Message::SnapshotBegin {
            history_id: random_history(rng),
            seq,
            keys: 0,
            reason: String::new(),
            fork: None,
            checksum: None,
            keep_diverged_after: None,
            epoch: 0,
        },
        2 => Message::Snapshot {
            // Possibly unsorted or repeated keys.
            entries: (0..rng.random_range(0..4))
                .map(|_| Record::new(HISTORIES[rng.random_range(0..3)], ""))
                .collect(),
        },
        3 => Message::SnapshotEnd { seq },
        4..=5 => Message::Put {
            seq,
            key: random_data(rng),
            value: random_data(rng),
            expires_at: random_expiry(rng),
        },
        6 => Message::Delete {
            seq,
            key: random_data(rng),
        },
        7 => Message::Error {
            message: random_string(rng),
        },
        _ => message_of(rng.random_range(0..VARIANTS), rng),
    }
}

/// Whether the receiver must accept `message` in the model's state (the next entry, a
/// heartbeat not ahead of what arrived...): it may not refuse what a correct upstream sends
/// (a put whose expiry is beyond what kv stores is not correct).
fn must_accept(model: &Model, message: &Message) -> bool {
    match (&model.phase, message) {
        (_, Message::Ping { seq, .. }) => *seq <= model.last,
        (Phase::Streaming, Message::Put { expires_at, .. }) if expires_at > &Some(MAX_EXPIRY) => {
            false
        }
        (Phase::Streaming, Message::Put { seq, .. } | Message::Delete { seq, .. }) => {
            model.last.checked_add(1) == Some(*seq) && *seq <= MAX_SEQ
        }
        (Phase::InSnapshot { seq: begun, .. }, Message::SnapshotEnd { seq }) => begun == seq,
        (
            Phase::Start,
            Message::Continue {
                history_id,
                from_seq,
                fork: None,
                ..
            },
        ) => model.history.as_deref() == Some(history_id.as_str()) && *from_seq == model.last,
        (
            Phase::Start,
            Message::SnapshotBegin {
                seq,
                fork,
                keep_diverged_after,
                ..
            },
        ) => {
            *seq <= MAX_SEQ
                && fork.as_ref().is_none_or(|fork| fork.seq <= *seq)
                && keep_diverged_after.is_none_or(|after| after <= MAX_SEQ)
        }
        _ => false,
    }
}

/// Checks one step against the model and advances it.
fn check_step(model: &mut Model, message: &Message, step: &Step) -> Result<(), String> {
    match step {
        Step::Apply(entry) => {
            if model.phase != Phase::Streaming {
                return Err(format!("Apply while {:?}", model.phase));
            }
            if model.last.checked_add(1) != Some(entry.seq) || entry.seq > MAX_SEQ {
                return Err(format!(
                    "Apply of seq {} after seq {}: not exactly previous + 1",
                    entry.seq, model.last
                ));
            }
            let carried = match message {
                Message::Put {
                    seq,
                    key,
                    value,
                    expires_at,
                } => LogEntry {
                    seq: *seq,
                    op: Op::Put {
                        key: key.clone(),
                        value: value.clone(),
                        expires_at: *expires_at,
                    },
                },
                Message::Delete { seq, key } => LogEntry {
                    seq: *seq,
                    op: Op::Delete { key: key.clone() },
                },
                _ => return Err("Apply from a message that carries no entry".into()),
            };
            if *entry != carried {
                return Err(format!("Apply of {entry:?}, not the entry sent"));
            }
            model.last = entry.seq;
        }
        Step::BeginSnapshot { target, .. } => {
            let (history_id, seq) = (&target.history_id, &target.seq);
            if model.phase != Phase::Start || *seq > MAX_SEQ {
                return Err(format!("BeginSnapshot at {seq} while {:?}", model.phase));
            }
            model.phase = Phase::InSnapshot {
                seq: *seq,
                last_key: None,
            };
            model.history = Some(history_id.clone());
        }
        Step::SnapshotChunk(entries) => {
            let Phase::InSnapshot { last_key, .. } = &mut model.phase else {
                return Err(format!("SnapshotChunk while {:?}", model.phase));
            };
            // Keys are bytes, and `Vec<u8>` compares them in byte order.
            for Record { key, .. } in entries {
                if last_key.as_ref().is_some_and(|last| key <= last) {
                    return Err(format!("snapshot key {key:?} after {last_key:?}"));
                }
                *last_key = Some(key.clone());
            }
        }
        Step::FinishSnapshot { seq } => {
            let Phase::InSnapshot { seq: begun, .. } = model.phase else {
                return Err(format!("FinishSnapshot while {:?}", model.phase));
            };
            if *seq != begun {
                return Err(format!("FinishSnapshot at {seq}, begun at {begun}"));
            }
            model.last = *seq;
            model.phase = Phase::Streaming;
        }
        Step::Promote { seq } => {
            if model.phase != Phase::Streaming || *seq != model.last {
                return Err(format!(
                    "Promote at {seq} while {:?} at {}",
                    model.phase, model.last
                ));
            }
        }
        Step::Resume { from_seq, adopt } => {
            let Message::Continue { history_id, .. } = message else {
                return Err("Resume from something other than Continue".into());
            };
            if adopt.is_some()
                || model.phase != Phase::Start
                || *from_seq != model.last
                || model.history.as_deref() != Some(history_id.as_str())
            {
                return Err(format!(
                    "Resume from {history_id}@{from_seq} while {:?} at {:?}@{}",
                    model.phase, model.history, model.last
                ));
            }
            model.phase = Phase::Streaming;
        }
        Step::Heartbeat { head } => {
            let told = match message {
                Message::Ping { seq, head } => Some((*seq).max(*head)),
                _ => None,
            };
            if told != Some(*head) {
                return Err(format!("Heartbeat {head} from {message:?}"));
            }
        }
    }
    Ok(())
}

pub fn fuzz_receiver(rng: &mut Rng, frames: usize, stats: &mut Stats) {
    let mut round = 0usize;
    while stats.receiver_frames < frames {
        round += 1;
        let history = rng.random_bool(0.8).then(|| random_history(rng));
        let applied = start_seq(rng);
        let initial = history.clone();
        let mut receiver = Receiver::new(history.clone(), applied);
        let mut model = Model {
            phase: Phase::Start,
            history,
            last: applied,
        };
        let mut sent: Vec<Message> = Vec::new();
        let correctness = [0.6, 0.85, 0.97][rng.random_range(0..3)];
        for _ in 0..rng.random_range(1..60) {
            let original = if rng.random_bool(correctness) {
                correct_next(&model, rng)
            } else {
                perturbed_next(&model, rng)
            };
            // What the receiver gets is what came off the wire.
            let frame = encoding_of(&original, rng);
            let message = protocol::decode(&frame).expect("decode a valid frame");
            assert_eq!(message, original, "receiver round {round}: round trip");
            sent.push(message.clone());
            stats.receiver_frames += 1;
            let must = must_accept(&model, &message);
            let outcome =
                panic::catch_unwind(AssertUnwindSafe(|| receiver.on_message(message.clone())));
            let context = |model: &Model| {
                format!(
                    "receiver round {round}, Receiver::new({initial:?}, {applied}), model \
                     {model:?}, messages {sent:#?}"
                )
            };
            let Ok(result) = outcome else {
                panic!("Receiver::on_message panicked: {}", context(&model));
            };
            match result {
                Ok(step) => {
                    if let Err(violation) = check_step(&mut model, &message, &step) {
                        panic!("{violation}: {}", context(&model));
                    }
                    stats.receiver_applies += usize::from(matches!(step, Step::Apply(_)));
                }
                Err(e) => {
                    assert!(
                        !must,
                        "refused a correct {}: {e}: {}",
                        message.name(),
                        context(&model)
                    );
                    stats.receiver_errors += 1;
                }
            }
            assert_eq!(
                receiver.last_seq(),
                model.last,
                "last_seq disagrees with the steps: {}",
                context(&model)
            );
        }
        stats.receiver_sequences += 1;
    }
}
