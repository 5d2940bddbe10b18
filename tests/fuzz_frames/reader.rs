//! Check 2: [`MessageReader`] over an in-memory stream of length-prefixed frames (`Feed`),
//! delivered in random chunks, whole or byte by byte, checked frame by frame against a
//! model of the framing (`expectations`), with its allocations bounded.

use crate::alloc::{decode_bound, measure, FRAMED_READ_INITIAL};
use crate::messages::{message_of, VARIANTS};
use crate::mutate::{mutate, random_bytes};
use crate::{Rng, Stats};
use futures::FutureExt;
use kv::connection::MessageReader;
use kv::protocol::{self, Message, HANDSHAKE_MAX_FRAME, MAX_FRAME};
use rand::{RngExt, SeedableRng};
use std::cell::Cell;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, ReadBuf};

#[derive(Clone, Copy, Debug, PartialEq)]
enum End {
    /// The peer closes after the last byte.
    Eof,
    /// The connection stays open: reads past the last byte stay pending.
    Open,
    /// The connection fails (reset) after the last byte.
    Fail,
}

/// An in-memory connection: delivers `data` up to `limit` in random-sized chunks, then
/// stays pending (more is coming) or ends as `end` says.
struct Feed {
    data: Rc<Vec<u8>>,
    pos: Rc<Cell<usize>>,
    limit: Rc<Cell<usize>>,
    end: End,
    max_chunk: usize,
    rng: Rng,
}

impl AsyncRead for Feed {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let pos = this.pos.get();
        let limit = this.limit.get().min(this.data.len());
        if pos < limit {
            let chunk = this.rng.random_range(1..=this.max_chunk);
            let n = (limit - pos).min(buf.remaining()).min(chunk);
            buf.put_slice(&this.data[pos..pos + n]);
            this.pos.set(pos + n);
            return Poll::Ready(Ok(()));
        }
        if pos < this.data.len() {
            // Polled with `now_or_never`, so no waker needs registering.
            return Poll::Pending;
        }
        match this.end {
            End::Eof => Poll::Ready(Ok(())),
            End::Open => Poll::Pending,
            End::Fail => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "injected reset",
            ))),
        }
    }
}

/// What the reader must report next, and the stream offset from which it can.
#[derive(Debug)]
enum Expect {
    /// A complete frame whose body `decode`s to this message.
    Message(Message),
    /// A complete frame whose body does not decode.
    Undecodable,
    /// A length prefix above the limit: refused from the prefix alone.
    Oversize,
    /// The stream stops inside a frame (header or body).
    Truncated,
    /// The stream stops between frames.
    End,
}

/// The model: splits `stream` into frames the way the protocol defines them.
fn expectations(stream: &[u8], max_frame: usize) -> Vec<(Expect, usize)> {
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        if at == stream.len() {
            out.push((Expect::End, at));
            return out;
        }
        if stream.len() - at < 4 {
            out.push((Expect::Truncated, stream.len()));
            return out;
        }
        let claim = u32::from_be_bytes(stream[at..at + 4].try_into().expect("4 bytes")) as usize;
        if claim > max_frame {
            out.push((Expect::Oversize, at + 4));
            return out;
        }
        let end = at + 4 + claim;
        if end > stream.len() {
            out.push((Expect::Truncated, stream.len()));
            return out;
        }
        match protocol::decode(&stream[at + 4..end]) {
            Ok(message) => out.push((Expect::Message(message), end)),
            Err(_) => out.push((Expect::Undecodable, end)),
        }
        at = end;
    }
}

fn push_frame(stream: &mut Vec<u8>, body: &[u8]) {
    stream.extend_from_slice(&(body.len() as u32).to_be_bytes());
    stream.extend_from_slice(body);
}

/// A stream of frames (some valid, some not) for a reader limited to `max_frame`.
fn random_stream(rng: &mut Rng, max_frame: usize) -> Vec<u8> {
    let mut stream = Vec::new();
    for _ in 0..rng.random_range(0..12) {
        let message = message_of(rng.random_range(0..VARIANTS), rng);
        match rng.random_range(0..20) {
            0..=11 => push_frame(&mut stream, &protocol::encode(&message).expect("encode")),
            12..=14 => {
                let mut body = protocol::encode(&message).expect("encode");
                let other = protocol::encode(&message_of(rng.random_range(0..VARIANTS), rng))
                    .expect("encode");
                mutate(&mut body, &other, rng);
                push_frame(&mut stream, &body);
            }
            15..=16 => push_frame(&mut stream, &random_bytes(rng)),
            17 => push_frame(&mut stream, &[]),
            _ => {
                // An oversize prefix, then bytes of its "body" that look like frames.
                let claim: u64 = match rng.random_range(0..4) {
                    0 => max_frame as u64 + 1,
                    1 => u32::MAX as u64,
                    2 => 0x8000_0000,
                    _ => rng.random_range(max_frame as u64 + 1..=u32::MAX as u64),
                };
                stream.extend_from_slice(&(claim as u32).to_be_bytes());
                push_frame(&mut stream, &protocol::encode(&message).expect("encode"));
            }
        }
    }
    match rng.random_range(0..10) {
        0 => {
            // A truncated body; the claim may be anything up to the limit.
            let body =
                protocol::encode(&message_of(rng.random_range(0..VARIANTS), rng)).expect("encode");
            let cut = rng.random_range(0..body.len());
            let claim = if rng.random_bool(0.5) {
                body.len().min(max_frame)
            } else {
                rng.random_range(cut + 1..=max_frame.max(cut + 1))
            };
            stream.extend_from_slice(&(claim as u32).to_be_bytes());
            stream.extend_from_slice(&body[..cut.min(claim)]);
        }
        1 => {
            // A partial header.
            let header = (rng.random_range(0..=max_frame) as u32).to_be_bytes();
            stream.extend_from_slice(&header[..rng.random_range(1..4)]);
        }
        2 => {
            // A whole header, and not one byte of its body.
            let claim = rng.random_range(1..=max_frame) as u32;
            stream.extend_from_slice(&claim.to_be_bytes());
        }
        _ => {}
    }
    stream
}

type Polled = Option<kv::Result<Option<Message>>>;

fn describe(polled: &Polled) -> String {
    match polled {
        None => "pending".into(),
        Some(Ok(Some(message))) => format!("Ok(Some({}))", message.name()),
        Some(Ok(None)) => "Ok(None)".into(),
        Some(Err(e)) => format!("Err({e})"),
    }
}

struct ReaderCase<'a> {
    stream: &'a [u8],
    max_frame: usize,
    end: End,
    max_chunk: usize,
    incremental: bool,
    what: String,
}

impl ReaderCase<'_> {
    fn context(&self) -> String {
        format!(
            "{} (max_frame {}, end {:?}, chunk {}, incremental {}): stream {}",
            self.what,
            self.max_frame,
            self.end,
            self.max_chunk,
            self.incremental,
            hex::encode(self.stream)
        )
    }
}

/// Polls `reader.read()` once (the feed never needs a waker), measuring allocations.
fn poll_read(reader: &mut MessageReader<Feed>, case: &ReaderCase<'_>, peak: &mut usize) -> Polled {
    let (outcome, p) =
        measure(|| panic::catch_unwind(AssertUnwindSafe(|| reader.read().now_or_never())));
    *peak = (*peak).max(p);
    outcome.unwrap_or_else(|_| panic!("MessageReader::read panicked on {}", case.context()))
}

/// Fails the stream being checked with a message naming it.
macro_rules! ensure {
    ($case:expr, $cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!("{}: {}", format!($($fmt)+), $case.context()));
        }
    };
}

/// Runs one stream through a reader and checks it against the model. Returns the number
/// of frames the reader got to (including one it rejected), or how it disagreed with the
/// model. Panics (with the stream) if the reader panics or allocates beyond the bound.
fn check_reader(case: &ReaderCase<'_>, rng: &mut Rng, stats: &mut Stats) -> Result<usize, String> {
    let data = Rc::new(case.stream.to_vec());
    let pos = Rc::new(Cell::new(0));
    let limit = Rc::new(Cell::new(if case.incremental { 0 } else { data.len() }));
    let feed = Feed {
        data: data.clone(),
        pos: pos.clone(),
        limit: limit.clone(),
        end: case.end,
        max_chunk: case.max_chunk,
        rng: Rng::seed_from_u64(rng.random()),
    };
    let mut peak = 0;
    let (mut reader, p) = measure(|| MessageReader::new(feed, case.max_frame));
    peak = peak.max(p);
    let bound = 2 * FRAMED_READ_INITIAL
        .max(case.stream.len())
        .max(largest_claim_of(case))
        + decode_bound(case.stream.len());
    let mut frames = 0;
    let mut previous_end = 0;
    for (expect, ready_at) in expectations(case.stream, case.max_frame) {
        let whole_frame = matches!(
            expect,
            Expect::Message(_) | Expect::Undecodable | Expect::Oversize
        );
        frames += usize::from(!matches!(expect, Expect::End));
        if case.incremental {
            if whole_frame && ready_at > previous_end {
                // One byte short of deciding: the reader must wait, not guess.
                limit.set(ready_at - 1);
                let polled = poll_read(&mut reader, case, &mut peak);
                ensure!(
                    case,
                    polled.is_none(),
                    "{expect:?} decided one byte early, got {}",
                    describe(&polled)
                );
            }
            limit.set(ready_at);
        }
        let polled = poll_read(&mut reader, case, &mut peak);
        let ok = match (&expect, &polled) {
            (Expect::Message(want), Some(Ok(Some(got)))) => got == want,
            (Expect::Undecodable, Some(Err(_))) => true,
            (Expect::Oversize, Some(Err(_))) => true,
            (Expect::Truncated | Expect::End, None) => case.end == End::Open,
            (Expect::Truncated, Some(Err(_))) => case.end != End::Open,
            (Expect::End, Some(Ok(None))) => case.end == End::Eof,
            (Expect::End, Some(Err(_))) => case.end == End::Fail,
            _ => false,
        };
        ensure!(
            case,
            ok,
            "expected {} at byte {ready_at}, got {}",
            match &expect {
                Expect::Message(m) => format!("Ok(Some({}))", m.name()),
                Expect::Truncated if case.end != End::Open =>
                    "Err (closed in the middle of a frame)".into(),
                other => format!("{other:?}"),
            },
            describe(&polled)
        );
        match expect {
            Expect::Message(_) => stats.reader_messages += 1,
            Expect::Undecodable => stats.reader_rejections += 1,
            Expect::Oversize => {
                stats.reader_rejections += 1;
                // Refused from the prefix: nothing of the claimed body was read...
                ensure!(
                    case,
                    !case.incremental || pos.get() == ready_at,
                    "read {} bytes, past the rejected prefix ending at {ready_at}",
                    pos.get()
                );
                // ...and, offered everything after it, the reader returns none of it.
                limit.set(data.len());
                let after = poll_read(&mut reader, case, &mut peak);
                ensure!(
                    case,
                    !matches!(after, Some(Ok(Some(_)))),
                    "after refusing an oversize frame the reader returned {}",
                    describe(&after)
                );
            }
            Expect::Truncated | Expect::End => {
                if polled.is_some() {
                    // Finished: it stays finished.
                    let after = poll_read(&mut reader, case, &mut peak);
                    ensure!(
                        case,
                        !matches!(after, Some(Ok(Some(_)))),
                        "after the end the reader returned {}",
                        describe(&after)
                    );
                }
            }
        }
        previous_end = ready_at;
        assert!(
            peak <= bound,
            "MessageReader allocated {peak} bytes at once (bound {bound}): {}",
            case.context()
        );
    }
    if peak > stats.reader_peak {
        stats.reader_peak = peak;
        stats.reader_peak_bound = bound;
    }
    Ok(frames)
}

/// The largest length prefix within the limit on the frame path (what may be reserved).
fn largest_claim_of(case: &ReaderCase<'_>) -> usize {
    let (stream, max_frame) = (case.stream, case.max_frame);
    let mut largest = 0;
    let mut at = 0;
    while stream.len() - at >= 4 {
        let claim = u32::from_be_bytes(stream[at..at + 4].try_into().expect("4 bytes")) as usize;
        if claim > max_frame {
            break;
        }
        largest = largest.max(claim);
        at += 4 + claim;
        if at > stream.len() {
            break;
        }
    }
    largest
}

pub fn fuzz_reader(rng: &mut Rng, frames: usize, stats: &mut Stats) {
    let mut round = 0usize;
    while stats.reader_frames < frames {
        round += 1;
        let max_frame = match rng.random_range(0..10) {
            0..=3 => rng.random_range(8..=4096),
            4..=7 => HANDSHAKE_MAX_FRAME,
            _ => MAX_FRAME,
        };
        let stream = random_stream(rng, max_frame);
        let case = ReaderCase {
            stream: &stream,
            max_frame,
            end: [End::Eof, End::Eof, End::Open, End::Fail][rng.random_range(0..4)],
            max_chunk: [1, 3, 7, 64, 8192, usize::MAX][rng.random_range(0..6)],
            incremental: rng.random_bool(0.5),
            what: format!("reader round {round}"),
        };
        match check_reader(&case, rng, stats) {
            Ok(frames) => stats.reader_frames += frames,
            Err(mismatch) => {
                // Counted, and reported at the end, so the run still finishes and says
                // how often; the frames of a stream that went wrong count as fed.
                stats.reader_frames += expectations(&stream, max_frame).len();
                stats.reader_mismatches.push(mismatch);
            }
        }
        stats.reader_streams += 1;
    }
}
