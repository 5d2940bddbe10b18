//! Unit tests of the request decoder: pipelined and inline requests, resumption at every
//! byte boundary, and what is refused (and how).

use super::*;

/// Decodes all of `input` at once: the requests (refusals as `Err(reason)`).
fn decode_all(input: &[u8]) -> Result<Vec<Result<Request, String>>, ProtocolError> {
    decode_in_pieces(input, input.len().max(1))
}

/// Feeds `input` `piece` bytes at a time, as a slow network would.
fn decode_in_pieces(
    input: &[u8],
    piece: usize,
) -> Result<Vec<Result<Request, String>>, ProtocolError> {
    let mut buffer = BytesMut::new();
    let mut decoder = RequestDecoder::default();
    let mut out = Vec::new();
    for chunk in input.chunks(piece) {
        buffer.extend_from_slice(chunk);
        while let Some(decoded) = decoder.decode(&mut buffer)? {
            match decoded {
                Decoded::Request(args) => out.push(Ok(args)),
                Decoded::Refused(reason) => out.push(Err(reason)),
            }
        }
    }
    decoder.at_end(&buffer)?;
    Ok(out)
}

fn words(request: &[&str]) -> Result<Request, String> {
    Ok(request.iter().map(|w| w.as_bytes().to_vec()).collect())
}

#[test]
fn pipelined_multibulk_and_inline_requests() {
    let input = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nv a\r\n\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\nPING hi\r\n\r\n*0\r\n";
    let expected = vec![
        words(&["SET", "k", "v a\r\n"]),
        words(&["GET", "k"]),
        words(&["PING", "hi"]),
    ];
    assert_eq!(decode_all(input).expect("valid"), expected);
    for piece in 1..input.len() {
        assert_eq!(
            decode_in_pieces(input, piece).expect("valid"),
            expected,
            "fed {piece} bytes at a time"
        );
    }
}

#[test]
fn the_decoder_holds_only_the_arguments_of_the_request_in_progress() {
    let mut decoder = RequestDecoder::default();
    let mut buffer = BytesMut::from(&b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$10\r\n12345"[..]);
    assert_eq!(decoder.decode(&mut buffer), Ok(None));
    assert!(buffer.is_empty(), "everything usable was taken");
    assert_eq!(decoder.retained(), 3 + 1 + 5);
    buffer.extend_from_slice(b"67890\r\n\r\n\r\n");
    assert!(matches!(
        decoder.decode(&mut buffer),
        Ok(Some(Decoded::Request(_)))
    ));
    assert_eq!(
        decoder.decode(&mut buffer),
        Ok(None),
        "blank lines are skipped"
    );
    assert_eq!(
        (decoder.retained(), buffer.len()),
        (0, 0),
        "and nothing is kept of them"
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
fn an_incomplete_request_waits_for_more_and_is_unterminated_at_the_end() {
    let full = b"*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n";
    for cut in 1..full.len() {
        let mut buffer = BytesMut::from(&full[..cut]);
        let mut decoder = RequestDecoder::default();
        assert_eq!(decoder.decode(&mut buffer), Ok(None), "cut at {cut}");
        assert_eq!(
            decoder.at_end(&buffer),
            Err(ProtocolError::Unterminated),
            "cut at {cut}"
        );
    }
}

#[test]
fn a_large_value_is_copied_as_it_arrives_not_rebuffered() {
    let value = vec![b'v'; 3 * 1024 * 1024];
    let mut input = format!("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n${}\r\n", value.len()).into_bytes();
    input.extend_from_slice(&value);
    input.extend_from_slice(b"\r\n");
    let mut decoder = RequestDecoder::default();
    let mut buffer = BytesMut::new();
    for chunk in input.chunks(64 * 1024) {
        buffer.extend_from_slice(chunk);
        if let Some(decoded) = decoder.decode(&mut buffer).expect("valid") {
            let Decoded::Request(args) = decoded else {
                panic!("refused");
            };
            assert_eq!(args[2].len(), value.len());
            assert_eq!(
                args[2].capacity(),
                value.len(),
                "no doubling beyond the value"
            );
            return;
        }
        // The read buffer never holds more than a line end of what was fed.
        assert!(buffer.len() <= 2, "{} bytes left buffered", buffer.len());
    }
    panic!("never decoded");
}

#[test]
fn a_value_over_the_limit_is_read_discarded_and_refused_and_the_stream_goes_on() {
    let big = MAX_ARGUMENT + 1;
    let mut input = format!("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n${big}\r\n").into_bytes();
    input.extend(std::iter::repeat_n(b'x', big));
    input.extend_from_slice(b"\r\n*1\r\n$4\r\nPING\r\n");
    let decoded = decode_in_pieces(&input, 100_000).expect("valid");
    assert_eq!(decoded.len(), 2, "{:?}", decoded.len());
    let reason = decoded[0].clone().expect_err("refused");
    assert!(reason.starts_with("ERR value too large"), "{reason}");
    assert_eq!(decoded[1], words(&["PING"]));
}

#[test]
fn a_request_over_the_total_limit_is_refused_after_its_last_argument() {
    let value = vec![b'x'; MAX_ARGUMENT];
    let mut input = b"*4\r\n$4\r\nMSET\r\n$1\r\na\r\n".to_vec();
    input.extend_from_slice(format!("${}\r\n", value.len()).as_bytes());
    input.extend_from_slice(&value);
    input.extend_from_slice(b"\r\n");
    input.extend_from_slice(format!("${}\r\n", value.len()).as_bytes());
    input.extend_from_slice(&value);
    input.extend_from_slice(b"\r\nPING\r\n");
    let decoded = decode_all(&input).expect("valid");
    let reason = decoded[0].clone().expect_err("refused");
    assert!(reason.starts_with("ERR request too large"), "{reason}");
    assert_eq!(decoded[1], words(&["PING"]));
}

#[test]
fn malformed_and_absurd_requests_are_refused_without_allocating() {
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
