//! Encoding RESP2 replies into a connection's output buffer.

use bytes::{BufMut, BytesMut};

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_encode_as_resp2() {
        let mut out = BytesMut::new();
        simple(&mut out, "OK");
        error(&mut out, "ERR bad\r\nthing");
        integer(&mut out, -3);
        bulk(&mut out, Some(b"v"));
        bulk(&mut out, None);
        array_header(&mut out, 2);
        assert_eq!(
            &out[..],
            b"+OK\r\n-ERR bad  thing\r\n:-3\r\n$1\r\nv\r\n$-1\r\n*2\r\n"
        );
    }
}
