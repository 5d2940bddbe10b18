//! Decoding RESP2 requests (arrays of bulk strings, or inline commands as typed into
//! telnet) from a connection's byte stream, with hard limits.
//!
//! Hand-written rather than taken from a crate, because kv needs three things together:
//! every declared length is checked against its limit *before* anything is buffered or
//! allocated (a client claiming a 4 GB bulk string gets an error, not an allocation); the
//! decoder *resumes* where it stopped when a request arrives in pieces (an 8 MiB value is
//! copied once, from the read buffer into its argument, and never re-parsed from the
//! start); and a request that is merely too large is *read and discarded*, so the client
//! gets an error reply and keeps its connection instead of seeing it reset.

use bytes::{Buf, BytesMut};
use std::fmt;

use super::inline::split_args;
use crate::store::{check_value_size, MAX_KEY_BYTES, MAX_VALUE_BYTES};

/// Largest request (all its arguments together) accepted, in bytes; a larger one is read,
/// discarded and answered with an error.
pub const MAX_REQUEST: usize = 16 * 1024 * 1024;
/// Largest argument accepted: kv's largest value (keys are checked against their own,
/// smaller, limit when the command runs).
pub const MAX_ARGUMENT: usize = MAX_VALUE_BYTES;
/// Longest bulk string kv will read only to discard it: a longer length is not a request
/// but a broken or hostile client, and its connection is closed (Redis's own limit).
pub const MAX_DISCARDED_BULK: usize = 512 * 1024 * 1024;
/// Most arguments in one request.
pub const MAX_ARGS: usize = 1024 * 1024;
/// Longest inline command.
const MAX_INLINE: usize = 64 * 1024;
/// Longest `*N` or `$N` header line: a sign and 19 digits, with room to spare.
const MAX_HEADER: usize = 32;
/// Bytes an argument is given up front; it grows as its bytes actually arrive.
const INITIAL_ARGUMENT: usize = 64 * 1024;

const _: () = assert!(MAX_KEY_BYTES <= MAX_ARGUMENT && MAX_ARGUMENT <= MAX_REQUEST);

/// One request: the command name and its arguments, as raw bytes.
pub type Request = Vec<Vec<u8>>;

/// What the decoder produced from the stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A complete request: its name and arguments.
    Request(Request),
    /// A request too large to accept, read to its end and discarded: answer with this
    /// error reply (starting with its code, `ERR ...`) and carry on with the connection.
    Refused(String),
}

/// Why the stream cannot be parsed any further; the connection is answered `-ERR` and
/// closed.
#[derive(Debug, PartialEq, Eq)]
pub enum ProtocolError {
    /// Not RESP (a bad length, a missing `$`, a missing CRLF...).
    Malformed(String),
    /// Beyond what kv reads at all (absurd lengths or argument counts).
    TooLarge(String),
    /// The connection ended, or went silent, in the middle of a request.
    Unterminated,
    /// Reading the socket failed.
    Io(std::io::ErrorKind),
    /// The connection did not authenticate in time, or sent too much before it did.
    Unauthenticated(&'static str),
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::Malformed(why) | ProtocolError::TooLarge(why) => {
                write!(f, "Protocol error: {why}")
            }
            ProtocolError::Unterminated => write!(f, "Protocol error: unterminated request"),
            ProtocolError::Io(kind) => write!(f, "connection error: {kind}"),
            ProtocolError::Unauthenticated(why) => f.write_str(why),
        }
    }
}

impl From<std::io::Error> for ProtocolError {
    fn from(e: std::io::Error) -> Self {
        ProtocolError::Io(e.kind())
    }
}

/// Where the decoder stands in the stream.
#[derive(Debug, Default)]
enum State {
    /// Between requests.
    #[default]
    Idle,
    /// In an inline command; `scanned` bytes of the buffer hold no line end.
    Inline { scanned: usize },
    /// In a multibulk request, before the next argument's `$len` line.
    Args(Multibulk),
    /// In an argument's bytes (and then its CRLF).
    Bulk {
        request: Multibulk,
        arg: Vec<u8>,
        len: usize,
    },
    /// Discarding the rest of a request that is too large: `skip` bytes of the current
    /// argument (with its CRLF), then `remaining` more arguments.
    Discard {
        skip: usize,
        remaining: usize,
        reason: String,
    },
}

/// The arguments of a multibulk request read so far.
#[derive(Debug)]
struct Multibulk {
    args: Request,
    remaining: usize,
    total: usize,
}

/// Decodes requests from a connection's byte stream, resuming mid-request as bytes come.
#[derive(Debug, Default)]
pub struct RequestDecoder {
    state: State,
}

/// A header line's length after its marker, and the bytes the line took.
type Header = Option<(i64, usize)>;

impl RequestDecoder {
    /// Whether a request has begun and not yet ended (bytes of it were taken).
    pub fn in_request(&self) -> bool {
        !matches!(self.state, State::Idle)
    }

    /// Bytes of the request in progress that the decoder holds (its arguments so far),
    /// apart from the read buffer.
    pub fn retained(&self) -> usize {
        match &self.state {
            State::Args(request) => request.total,
            State::Bulk { request, arg, len } => request.total - len + arg.len(),
            _ => 0,
        }
    }

    /// The next request, taking its bytes from `buffer`; `Ok(None)` when more bytes are
    /// needed (everything usable was taken, so the buffer holds little or nothing).
    pub fn decode(&mut self, buffer: &mut BytesMut) -> Result<Option<Decoded>, ProtocolError> {
        loop {
            let progressed = match std::mem::take(&mut self.state) {
                State::Idle => match buffer.first() {
                    None => false,
                    Some(b'*') => self.begin_multibulk(buffer)?,
                    Some(_) => {
                        self.state = State::Inline { scanned: 0 };
                        true
                    }
                },
                State::Inline { scanned } => match self.inline(buffer, scanned)? {
                    Some(args) => return Ok(Some(self.finish(args))),
                    // A blank line was skipped (and the decoder is idle again), or the
                    // line is incomplete.
                    None => !self.in_request(),
                },
                State::Args(request) if request.remaining == 0 => {
                    return Ok(Some(self.finish(request.args)));
                }
                State::Args(request) => self.begin_argument(buffer, request)?,
                State::Bulk { request, arg, len } => {
                    self.fill_argument(buffer, request, arg, len)?
                }
                State::Discard {
                    skip,
                    remaining,
                    reason,
                } => match self.discard(buffer, skip, remaining, reason)? {
                    Some(refused) => return Ok(Some(refused)),
                    None => false,
                },
            };
            if !progressed {
                return Ok(None);
            }
        }
    }

    /// The stream ended: fine between requests, an error in the middle of one.
    pub fn at_end(&self, buffer: &BytesMut) -> Result<(), ProtocolError> {
        if self.in_request() || !buffer.is_empty() {
            return Err(ProtocolError::Unterminated);
        }
        Ok(())
    }

    fn finish(&mut self, args: Request) -> Decoded {
        self.state = State::Idle;
        Decoded::Request(args)
    }

    /// `*N`: starts a request of N arguments (or skips an empty one, as Redis does).
    /// Returns false while the line is incomplete.
    fn begin_multibulk(&mut self, buffer: &mut BytesMut) -> Result<bool, ProtocolError> {
        let Some((count, used)) = header(buffer, b'*', "multibulk")? else {
            return Ok(false);
        };
        buffer.advance(used);
        if count <= 0 {
            return Ok(true);
        }
        let count = usize::try_from(count).unwrap_or(usize::MAX);
        if count > MAX_ARGS {
            return Err(ProtocolError::TooLarge(format!(
                "more than {MAX_ARGS} arguments"
            )));
        }
        self.state = State::Args(Multibulk {
            // Never trust the count for allocation: grow as arguments actually arrive.
            args: Vec::with_capacity(count.min(64)),
            remaining: count,
            total: 0,
        });
        Ok(true)
    }

    /// `$len`: starts an argument, or the discarding of a request grown too large.
    /// Returns false while the line is incomplete.
    fn begin_argument(
        &mut self,
        buffer: &mut BytesMut,
        request: Multibulk,
    ) -> Result<bool, ProtocolError> {
        let Some(len) = self.bulk_header(buffer)? else {
            self.state = State::Args(request);
            return Ok(false);
        };
        let remaining = request.remaining - 1;
        let total = request.total.saturating_add(len);
        // An argument over the largest value is refused in the store's own words.
        let refusal = if let Err(too_large) = check_value_size(len) {
            Some(format!("ERR {too_large}"))
        } else if total > MAX_REQUEST {
            Some(format!(
                "ERR request too large: over {MAX_REQUEST} bytes (16 MiB) in all; send it \
                 in several commands"
            ))
        } else {
            None
        };
        self.state = match refusal {
            Some(reason) => State::Discard {
                skip: len + 2,
                remaining,
                reason,
            },
            None => State::Bulk {
                request: Multibulk {
                    remaining,
                    total,
                    ..request
                },
                arg: Vec::with_capacity(len.min(INITIAL_ARGUMENT)),
                len,
            },
        };
        Ok(true)
    }

    /// A `$len` line: the length, once the line is complete (taken from the buffer).
    fn bulk_header(&mut self, buffer: &mut BytesMut) -> Result<Option<usize>, ProtocolError> {
        let Some((len, used)) = header(buffer, b'$', "bulk")? else {
            return Ok(None);
        };
        let len = usize::try_from(len)
            .map_err(|_| ProtocolError::Malformed("invalid bulk length".into()))?;
        if len > MAX_DISCARDED_BULK {
            return Err(ProtocolError::TooLarge(format!(
                "invalid bulk length {len}: larger than {MAX_DISCARDED_BULK} bytes"
            )));
        }
        buffer.advance(used);
        Ok(Some(len))
    }

    /// Copies what has arrived of an argument; returns false while it is incomplete.
    fn fill_argument(
        &mut self,
        buffer: &mut BytesMut,
        mut request: Multibulk,
        mut arg: Vec<u8>,
        len: usize,
    ) -> Result<bool, ProtocolError> {
        let wanted = (len - arg.len()).min(buffer.len());
        if arg.capacity() < arg.len() + wanted {
            // Past its first bytes, an argument gets its whole size at once: one copy,
            // not a doubling that could leave twice the memory its bytes account for.
            arg.reserve_exact(len - arg.len());
        }
        arg.extend_from_slice(&buffer[..wanted]);
        buffer.advance(wanted);
        if arg.len() < len || buffer.len() < 2 {
            self.state = State::Bulk { request, arg, len };
            return Ok(false);
        }
        if &buffer[..2] != b"\r\n" {
            return Err(ProtocolError::Malformed(
                "bulk string not followed by CRLF".into(),
            ));
        }
        buffer.advance(2);
        request.args.push(arg);
        self.state = State::Args(request);
        Ok(true)
    }

    /// Skips what has arrived of a refused request; the refusal once it has all gone by.
    fn discard(
        &mut self,
        buffer: &mut BytesMut,
        mut skip: usize,
        mut remaining: usize,
        reason: String,
    ) -> Result<Option<Decoded>, ProtocolError> {
        loop {
            let skipped = skip.min(buffer.len());
            buffer.advance(skipped);
            skip -= skipped;
            if skip == 0 && remaining == 0 {
                return Ok(Some(Decoded::Refused(reason)));
            }
            let next = match skip {
                0 => self.bulk_header(buffer)?,
                _ => None,
            };
            let Some(len) = next else {
                self.state = State::Discard {
                    skip,
                    remaining,
                    reason,
                };
                return Ok(None);
            };
            skip = len + 2;
            remaining -= 1;
        }
    }

    /// An inline command's words once its line is complete; `scanned` bytes are known to
    /// hold no line end, so each byte is searched once however the line arrives.
    fn inline(
        &mut self,
        buffer: &mut BytesMut,
        scanned: usize,
    ) -> Result<Option<Request>, ProtocolError> {
        let Some(at) = buffer[scanned..].iter().position(|&b| b == b'\n') else {
            if buffer.len() > MAX_INLINE {
                return Err(ProtocolError::TooLarge(
                    "inline request longer than 64 KiB".into(),
                ));
            }
            self.state = State::Inline {
                scanned: buffer.len(),
            };
            return Ok(None);
        };
        let end = scanned + at;
        let line = &buffer[..end];
        let words = split_args(line.strip_suffix(b"\r").unwrap_or(line))
            .map_err(|why| ProtocolError::Malformed(why.into()))?;
        buffer.advance(end + 1);
        if words.is_empty() {
            // A blank line is skipped, as Redis does.
            return Ok(None);
        }
        Ok(Some(words))
    }
}

/// A header line (`*N` or `$N`, with `marker`) at the start of `buffer`: its length and
/// the bytes the line took, once complete. Only [`MAX_HEADER`] bytes are searched: a
/// header that long is not a length.
fn header(buffer: &[u8], marker: u8, what: &str) -> Result<Header, ProtocolError> {
    let window = &buffer[..buffer.len().min(MAX_HEADER + 2)];
    let end = match window.iter().position(|&b| b == b'\n') {
        Some(end) if end > 0 && buffer[end - 1] == b'\r' => end,
        Some(_) => return Err(ProtocolError::Malformed("expected CRLF".into())),
        None if buffer.len() > MAX_HEADER + 2 => {
            return Err(ProtocolError::Malformed("length line too long".into()))
        }
        None => return Ok(None),
    };
    let line = &buffer[..end - 1];
    if line.first() != Some(&marker) {
        return Err(ProtocolError::Malformed(format!(
            "expected '{}'",
            char::from(marker)
        )));
    }
    let length = std::str::from_utf8(&line[1..])
        .ok()
        .and_then(|t| t.parse::<i64>().ok())
        .ok_or_else(|| ProtocolError::Malformed(format!("invalid {what} length")))?;
    Ok(Some((length, end + 1)))
}

#[cfg(test)]
mod tests;
