//! Unit tests of the store's shared helpers: chunk and batch bounds, size limits, seq
//! continuity, prefix bounds.

use super::*;

#[test]
fn upper_bound_increments_the_last_byte_below_ff() {
    assert_eq!(prefix_upper_bound(b"ab").as_deref(), Some(&b"ac"[..]));
    assert_eq!(prefix_upper_bound(b""), None);
    assert_eq!(prefix_upper_bound(b"a\xff\xff").as_deref(), Some(&b"b"[..]));
    assert_eq!(prefix_upper_bound(b"\xff"), None);
    assert_eq!(
        prefix_upper_bound("é".as_bytes()).as_deref(),
        Some(&[0xc3, 0xaa][..])
    );
}

fn pair(key: &str, bytes: usize) -> Result<Record> {
    Ok(Record::new(key, "v".repeat(bytes)))
}

#[test]
fn a_chunk_never_outgrows_its_byte_bound_unless_one_pair_does() {
    // ~1 MB of small pairs sorting before one maximal value: the big pair must not be
    // added to the chunk of small ones (that chunk would not fit one frame).
    let mut pairs = (0..1000)
        .map(|i| pair(&format!("a{i:04}"), 1000))
        .chain([pair("b", MAX_VALUE_BYTES)])
        .peekable();
    let mut chunks = Vec::new();
    loop {
        let chunk = fill_chunk(&mut pairs, 1000, 256 * 1024).expect("chunk");
        if chunk.is_empty() {
            break;
        }
        chunks.push(chunk);
    }
    for chunk in &chunks {
        let bytes: usize = chunk.iter().map(Record::size).sum();
        assert!(
            bytes <= 256 * 1024 || chunk.len() == 1,
            "a chunk of {} pairs holds {bytes} bytes",
            chunk.len()
        );
    }
    let last = chunks.last().expect("chunks");
    assert_eq!(last.len(), 1, "the maximal value travels alone");
    assert_eq!(last[0].key, b"b");
    let total: usize = chunks.iter().map(Vec::len).sum();
    assert_eq!(total, 1001, "nothing skipped or repeated");
}

#[test]
fn a_log_batch_stops_before_its_byte_bound_but_takes_one_entry() {
    let entry = |seq, bytes| {
        Ok(LogEntry {
            seq,
            op: Op::Put {
                key: "k".into(),
                value: vec![b'v'; bytes],
                expires_at: None,
            },
        })
    };
    let batch = fill_log_batch(
        [entry(1, 10), entry(2, 10), entry(3, 10)].into_iter(),
        10,
        25,
    )
    .expect("batch");
    assert_eq!(batch.len(), 2);
    let batch = fill_log_batch([entry(1, 100), entry(2, 1)].into_iter(), 10, 25).expect("batch");
    assert_eq!(batch.len(), 1, "the first entry is taken whatever its size");
}

#[test]
fn sizes_beyond_the_limits_are_refused() {
    let put = |key: String, value: String| Op::put(key, value);
    assert!(put("k".into(), "v".repeat(MAX_VALUE_BYTES))
        .check_size()
        .is_ok());
    let too_long = put("k".into(), "v".repeat(MAX_VALUE_BYTES + 1)).check_size();
    assert!(too_long
        .unwrap_err()
        .to_string()
        .contains("value too large"));
    let key = "k".repeat(MAX_KEY_BYTES + 1);
    let err = Op::Delete { key: key.into() }.check_size().unwrap_err();
    assert!(err.to_string().contains("key too large"), "{err}");
}

#[test]
fn continuity_rejects_gap_and_duplicate() {
    let put = |seq| LogEntry {
        seq,
        op: Op::Delete { key: "k".into() },
    };
    assert!(check_continues(4, &[put(5), put(6)]).is_ok());
    assert!(check_continues(4, &[put(6)]).is_err());
    assert!(check_continues(4, &[put(4)]).is_err());
    assert!(check_continues(4, &[put(5), put(5)]).is_err());
    assert!(
        check_continues(MAX_SEQ, &[put(0)]).is_err(),
        "no wrap-around"
    );
    assert!(check_continues(u64::MAX, &[put(0)]).is_err(), "no overflow");
}
