//! RESP2, the Redis protocol, as far as a server needs it: requests (arrays of bulk
//! strings, or inline commands as typed into telnet) decoded from a byte buffer with hard
//! limits, and replies encoded into one.
//!
//! Hand-written rather than taken from a crate: a request parser is about a hundred lines,
//! and kv needs it to check every declared length against its limits *before* buffering
//! or allocating anything (a client claiming a 4 GB bulk string gets an error, not an
//! allocation), and to tell a malformed request from an incomplete one.

use bytes::{Buf, BufMut, BytesMut};
use std::fmt;
use tokio_util::codec::Decoder;

/// Largest request (all its arguments together) accepted, in bytes.
pub const MAX_REQUEST: usize = 16 * 1024 * 1024;
/// Most arguments in one request.
pub const MAX_ARGS: usize = 1024 * 1024;
/// Longest inline command.
const MAX_INLINE: usize = 64 * 1024;
/// Longest `*N` or `$N` header line: a sign and 19 digits, with room to spare.
const MAX_HEADER: usize = 32;

/// One request: the command name and its arguments, as raw bytes.
pub type Request = Vec<Vec<u8>>;

/// Why a request could not be parsed; the connection is answered `-ERR` and closed.
#[derive(Debug, PartialEq, Eq)]
pub enum ProtocolError {
    /// Not RESP (a bad length, a missing `$`, a missing CRLF...).
    Malformed(String),
    /// Over [`MAX_REQUEST`] or [`MAX_ARGS`].
    TooLarge(String),
    /// The connection ended in the middle of a request.
    Unterminated,
    /// Reading the socket failed.
    Io(std::io::ErrorKind),
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::Malformed(why) | ProtocolError::TooLarge(why) => {
                write!(f, "Protocol error: {why}")
            }
            ProtocolError::Unterminated => write!(f, "Protocol error: unterminated request"),
            ProtocolError::Io(kind) => write!(f, "connection error: {kind}"),
        }
    }
}

impl From<std::io::Error> for ProtocolError {
    fn from(e: std::io::Error) -> Self {
        ProtocolError::Io(e.kind())
    }
}

/// Decodes requests from a connection's byte stream.
#[derive(Debug, Default)]
pub struct RequestDecoder;

impl Decoder for RequestDecoder {
    type Item = Request;
    type Error = ProtocolError;

    fn decode(&mut self, buffer: &mut BytesMut) -> Result<Option<Request>, ProtocolError> {
        loop {
            let Some(&first) = buffer.first() else {
                return Ok(None);
            };
            let parsed = if first == b'*' {
                parse_multibulk(buffer)?
            } else {
                parse_inline(buffer)?
            };
            match parsed {
                None => return Ok(None),
                Some((used, request)) => {
                    buffer.advance(used);
                    // Empty requests (`*0`, a blank inline line) are skipped, as Redis does.
                    if !request.is_empty() {
                        return Ok(Some(request));
                    }
                }
            }
        }
    }

    fn decode_eof(&mut self, buffer: &mut BytesMut) -> Result<Option<Request>, ProtocolError> {
        match self.decode(buffer)? {
            Some(request) => Ok(Some(request)),
            None if buffer.is_empty() => Ok(None),
            None => Err(ProtocolError::Unterminated),
        }
    }
}

/// The header line (`*N` or `$N`) starting at `from`, without its CRLF, and the offset
/// after it, if complete. Only [`MAX_HEADER`] bytes are searched: a header that long is
/// not a length.
fn line(buffer: &[u8], from: usize) -> Result<Option<(&[u8], usize)>, ProtocolError> {
    let rest = &buffer[from.min(buffer.len())..];
    let window = &rest[..rest.len().min(MAX_HEADER + 2)];
    match window.iter().position(|&b| b == b'\n') {
        Some(end) if end > 0 && rest[end - 1] == b'\r' => {
            Ok(Some((&rest[..end - 1], from + end + 1)))
        }
        Some(_) => Err(ProtocolError::Malformed("expected CRLF".into())),
        None if rest.len() > MAX_HEADER + 2 => {
            Err(ProtocolError::Malformed("length line too long".into()))
        }
        None => Ok(None),
    }
}

/// A length after a `*` or `$` marker.
fn length(text: &[u8], what: &str) -> Result<i64, ProtocolError> {
    std::str::from_utf8(text)
        .ok()
        .and_then(|t| t.parse::<i64>().ok())
        .ok_or_else(|| ProtocolError::Malformed(format!("invalid {what} length")))
}

/// `*N\r\n$len\r\nbytes\r\n...`; `None` while incomplete.
fn parse_multibulk(buffer: &[u8]) -> Result<Option<(usize, Request)>, ProtocolError> {
    let Some((header, mut at)) = line(buffer, 0)? else {
        return Ok(None);
    };
    let count = length(&header[1..], "multibulk")?;
    if count <= 0 {
        return Ok(Some((at, Vec::new())));
    }
    let count = usize::try_from(count).unwrap_or(usize::MAX);
    if count > MAX_ARGS {
        return Err(ProtocolError::TooLarge(format!(
            "more than {MAX_ARGS} arguments"
        )));
    }
    // Never trust the count for allocation: grow as arguments actually arrive. Spans
    // first, bytes copied once the whole request is there (an incomplete one is re-parsed
    // when more arrives).
    let mut spans = Vec::with_capacity(count.min(64));
    let mut total = 0usize;
    for _ in 0..count {
        let Some((header, start)) = line(buffer, at)? else {
            return Ok(None);
        };
        if header.first() != Some(&b'$') {
            return Err(ProtocolError::Malformed("expected '$'".into()));
        }
        let len = usize::try_from(length(&header[1..], "bulk")?)
            .map_err(|_| ProtocolError::Malformed("invalid bulk length".into()))?;
        total = total.saturating_add(len);
        if total > MAX_REQUEST {
            return Err(ProtocolError::TooLarge(format!(
                "request larger than {} MiB",
                MAX_REQUEST / (1024 * 1024)
            )));
        }
        let end = start + len;
        if buffer.len() < end + 2 {
            return Ok(None);
        }
        if &buffer[end..end + 2] != b"\r\n" {
            return Err(ProtocolError::Malformed(
                "bulk string not followed by CRLF".into(),
            ));
        }
        spans.push(start..end);
        at = end + 2;
    }
    let args = spans
        .into_iter()
        .map(|span| buffer[span].to_vec())
        .collect();
    Ok(Some((at, args)))
}

/// An inline command: one line of words, split as Redis does (`sdssplitargs`): words
/// are separated by spaces; `"..."` may hold spaces and the escapes `\n \r \t \b \a \\ \"`
/// and `\xHH`; `'...'` may hold spaces and `\'`.
fn parse_inline(buffer: &[u8]) -> Result<Option<(usize, Request)>, ProtocolError> {
    let Some(end) = buffer.iter().position(|&b| b == b'\n') else {
        if buffer.len() > MAX_INLINE {
            return Err(ProtocolError::TooLarge(
                "inline request longer than 64 KiB".into(),
            ));
        }
        return Ok(None);
    };
    let text = buffer[..end].strip_suffix(b"\r").unwrap_or(&buffer[..end]);
    Ok(Some((end + 1, split_args(text)?)))
}

fn split_args(mut text: &[u8]) -> Result<Request, ProtocolError> {
    let unbalanced = || ProtocolError::Malformed("unbalanced quotes in request".into());
    let mut words = Vec::new();
    loop {
        text = text.trim_ascii_start();
        let Some(&first) = text.first() else {
            return Ok(words);
        };
        let (word, rest) = match first {
            b'"' => double_quoted(&text[1..]).ok_or_else(unbalanced)?,
            b'\'' => single_quoted(&text[1..]).ok_or_else(unbalanced)?,
            _ => {
                let end = text
                    .iter()
                    .position(u8::is_ascii_whitespace)
                    .unwrap_or(text.len());
                (text[..end].to_vec(), &text[end..])
            }
        };
        // A closing quote must end the word.
        if rest.first().is_some_and(|b| !b.is_ascii_whitespace()) {
            return Err(unbalanced());
        }
        words.push(word);
        text = rest;
    }
}

/// The word inside `"..."` (after the opening quote) and what follows the closing one.
fn double_quoted(text: &[u8]) -> Option<(Vec<u8>, &[u8])> {
    let mut word = Vec::new();
    let mut i = 0;
    loop {
        match *text.get(i)? {
            b'"' => return Some((word, &text[i + 1..])),
            b'\\' => {
                let escaped = *text.get(i + 1)?;
                let hex = text
                    .get(i + 2..i + 4)
                    .and_then(|h| std::str::from_utf8(h).ok());
                match (escaped, hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
                    (b'x', Some(byte)) => {
                        word.push(byte);
                        i += 4;
                        continue;
                    }
                    (b'n', _) => word.push(b'\n'),
                    (b'r', _) => word.push(b'\r'),
                    (b't', _) => word.push(b'\t'),
                    (b'b', _) => word.push(0x08),
                    (b'a', _) => word.push(0x07),
                    (other, _) => word.push(other),
                }
                i += 2;
            }
            byte => {
                word.push(byte);
                i += 1;
            }
        }
    }
}

/// The word inside `'...'` (after the opening quote) and what follows the closing one.
fn single_quoted(text: &[u8]) -> Option<(Vec<u8>, &[u8])> {
    let mut word = Vec::new();
    let mut i = 0;
    loop {
        match *text.get(i)? {
            b'\'' => return Some((word, &text[i + 1..])),
            b'\\' if text.get(i + 1) == Some(&b'\'') => {
                word.push(b'\'');
                i += 2;
            }
            byte => {
                word.push(byte);
                i += 1;
            }
        }
    }
}

/// Encodes replies.
pub mod reply {
    use super::*;

    /// `+text`
    pub fn simple(out: &mut BytesMut, text: &str) {
        out.put_u8(b'+');
        out.put_slice(text.as_bytes());
        out.put_slice(b"\r\n");
    }

    /// `-text` (text starts with an error code such as `ERR` or `READONLY`).
    pub fn error(out: &mut BytesMut, text: &str) {
        out.put_u8(b'-');
        // An error reply is one line: no CR or LF may leak from a message into it.
        let line: String = text
            .chars()
            .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
            .collect();
        out.put_slice(line.as_bytes());
        out.put_slice(b"\r\n");
    }

    /// `:n`
    pub fn integer(out: &mut BytesMut, n: i64) {
        out.put_slice(format!(":{n}\r\n").as_bytes());
    }

    /// `$len\r\nbytes` or the null bulk string `$-1`.
    pub fn bulk(out: &mut BytesMut, bytes: Option<&[u8]>) {
        match bytes {
            Some(bytes) => {
                out.put_slice(format!("${}\r\n", bytes.len()).as_bytes());
                out.put_slice(bytes);
                out.put_slice(b"\r\n");
            }
            None => out.put_slice(b"$-1\r\n"),
        }
    }

    /// `*n`, to be followed by n replies.
    pub fn array_header(out: &mut BytesMut, n: usize) {
        out.put_slice(format!("*{n}\r\n").as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8]) -> Result<Vec<Request>, ProtocolError> {
        let mut buffer = BytesMut::from(input);
        let mut decoder = RequestDecoder;
        let mut out = Vec::new();
        while let Some(request) = decoder.decode(&mut buffer)? {
            out.push(request);
        }
        Ok(out)
    }

    fn words(request: &[&str]) -> Request {
        request.iter().map(|w| w.as_bytes().to_vec()).collect()
    }

    #[test]
    fn pipelined_multibulk_and_inline_requests() {
        let input = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nv a\r\n\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\nPING hi\r\n\r\n*0\r\n";
        assert_eq!(
            decode_all(input).expect("valid"),
            vec![
                words(&["SET", "k", "v a\r\n"]),
                words(&["GET", "k"]),
                words(&["PING", "hi"])
            ]
        );
    }

    #[test]
    fn inline_commands_split_like_redis() {
        let ok = |line: &str| decode_all(format!("{line}\r\n").as_bytes()).expect("valid");
        assert_eq!(
            ok(r#"SET k "hello world""#),
            vec![words(&["SET", "k", "hello world"])]
        );
        assert_eq!(
            ok(r#"SET k 'it\'s' "a\"b\x41\n""#),
            vec![words(&["SET", "k", "it's", "a\"bA\n"])]
        );
        assert_eq!(ok("  GET   spaced  "), vec![words(&["GET", "spaced"])]);
        assert_eq!(ok(r#"SET k ab"c"#), vec![words(&["SET", "k", "ab\"c"])]);
        for bad in [r#"SET k "open"#, r#"SET k "a"b"#, "SET k 'open"] {
            assert!(
                matches!(
                    decode_all(format!("{bad}\r\n").as_bytes()),
                    Err(ProtocolError::Malformed(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn incomplete_requests_wait_for_more() {
        let full = b"*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n";
        for cut in 1..full.len() {
            let mut buffer = BytesMut::from(&full[..cut]);
            assert_eq!(RequestDecoder.decode(&mut buffer), Ok(None), "cut at {cut}");
            assert_eq!(buffer.len(), cut, "nothing consumed at {cut}");
        }
        let mut buffer = BytesMut::from(&full[..10]);
        assert_eq!(
            RequestDecoder.decode_eof(&mut buffer),
            Err(ProtocolError::Unterminated)
        );
    }

    #[test]
    fn malformed_and_oversized_requests_are_refused_without_allocating() {
        for bad in [
            &b"*2\r\n$3\r\nGET\r\nxkey\r\n"[..],
            b"*1\r\n$3\r\nGETX\r\n",
            b"*1\r\n$-5\r\n",
            b"*x\r\n",
            b"*1\n",
        ] {
            assert!(
                matches!(decode_all(bad), Err(ProtocolError::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(matches!(
            decode_all(b"*1\r\n$4294967295\r\n"),
            Err(ProtocolError::TooLarge(_))
        ));
        assert!(matches!(
            decode_all(b"*99999999999\r\n"),
            Err(ProtocolError::TooLarge(_))
        ));
        assert!(matches!(
            decode_all(&vec![b'a'; MAX_INLINE + 2]),
            Err(ProtocolError::TooLarge(_))
        ));
    }

    #[test]
    fn replies_encode_as_resp2() {
        let mut out = BytesMut::new();
        reply::simple(&mut out, "OK");
        reply::error(&mut out, "ERR bad\r\nthing");
        reply::integer(&mut out, -3);
        reply::bulk(&mut out, Some(b"v"));
        reply::bulk(&mut out, None);
        reply::array_header(&mut out, 2);
        assert_eq!(
            &out[..],
            b"+OK\r\n-ERR bad  thing\r\n:-3\r\n$1\r\nv\r\n$-1\r\n*2\r\n"
        );
    }
}
