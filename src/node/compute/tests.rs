//! The changes against a map, without a store or a writer.

use super::*;
use std::collections::HashMap;

fn run(data: &mut HashMap<String, String>, change: Change) -> Result<Outcome> {
    let snapshot = data.clone();
    let mut read = |key: &str| Ok(snapshot.get(key).cloned());
    let mut keys = || Ok(snapshot.keys().cloned().collect());
    let (ops, outcome) = change.resolve(&mut read, &mut keys)?;
    for op in ops {
        match op {
            Op::Put { key, value } => {
                data.insert(key, value);
            }
            Op::Delete { key } => {
                data.remove(&key);
            }
        }
    }
    Ok(outcome)
}

fn incr(key: &str, by: i64) -> Change {
    Change::IncrBy {
        key: key.into(),
        by,
    }
}

#[test]
fn counters_count_and_refuse_what_is_not_a_number() {
    let mut data = HashMap::new();
    assert_eq!(run(&mut data, incr("n", 1)).expect("incr"), Outcome::Int(1));
    assert_eq!(
        run(&mut data, incr("n", -5)).expect("decrby"),
        Outcome::Int(-4)
    );
    assert_eq!(data["n"], "-4");
    data.insert("t".into(), "text".into());
    let refused = run(&mut data, incr("t", 1)).expect_err("not a number");
    assert_eq!(refused.to_string(), NOT_AN_INTEGER);
    data.insert("big".into(), i64::MAX.to_string());
    let overflow = run(&mut data, incr("big", 1)).expect_err("overflow");
    assert!(overflow.to_string().contains("overflow"));
    for bad in ["", " 1", "+1", "01", "-0", "1.0", "99999999999999999999"] {
        assert_eq!(parse_integer(bad), None, "{bad:?}");
    }
    assert_eq!(parse_integer("-12"), Some(-12));
}

#[test]
fn floats_print_as_redis_prints_them() {
    let mut data = HashMap::new();
    data.insert("f".into(), "0.1".into());
    let change = Change::IncrByFloat {
        key: "f".into(),
        by: 0.2,
    };
    assert_eq!(
        run(&mut data, change).expect("incr"),
        Outcome::Bulk(Some("0.3".into()))
    );
    assert_eq!(format_float(10.5), "10.5");
    assert_eq!(format_float(3.0), "3");
    assert_eq!(format_float(-0.0), "0");
    assert_eq!(format_float(1e20), "100000000000000000000");
    assert_eq!(format_float(5.0e-5), "0.00005");
    assert_eq!(parse_float(" 1"), None);
    assert_eq!(parse_float("nan"), None);
}

#[test]
fn conditional_sets_and_renames() {
    let mut data = HashMap::new();
    let set = |value: &str, when, get| Change::Set {
        key: "k".into(),
        value: value.into(),
        when,
        get,
    };
    assert_eq!(
        run(&mut data, set("a", When::Present, false)).expect("xx"),
        Outcome::Nil
    );
    assert_eq!(
        run(&mut data, set("a", When::Absent, false)).expect("nx"),
        Outcome::Ok
    );
    assert_eq!(
        run(&mut data, set("b", When::Absent, true)).expect("nx get"),
        Outcome::Bulk(Some("a".into()))
    );
    assert_eq!(data["k"], "a");
    let rename = Change::Rename {
        from: "k".into(),
        to: "j".into(),
        nx: false,
    };
    assert_eq!(run(&mut data, rename.clone()).expect("rename"), Outcome::Ok);
    assert_eq!(data.get("k"), None);
    let missing = run(&mut data, rename).expect_err("no such key");
    assert_eq!(missing.to_string(), "no such key");
    let msetnx = Change::MSetNx {
        pairs: vec![("x".into(), "1".into()), ("j".into(), "2".into())],
    };
    assert_eq!(run(&mut data, msetnx).expect("msetnx"), Outcome::Int(0));
    assert_eq!(data.get("x"), None, "all or none");
}

#[test]
fn setrange_pads_and_keeps_text() {
    let mut data = HashMap::new();
    let change = Change::SetRange {
        key: "r".into(),
        offset: 3,
        value: "ab".into(),
    };
    assert_eq!(run(&mut data, change).expect("setrange"), Outcome::Int(5));
    assert_eq!(data["r"], "\0\0\0ab");
    data.insert("u".into(), "é".into());
    let split = Change::SetRange {
        key: "u".into(),
        offset: 1,
        value: "x".into(),
    };
    assert!(
        run(&mut data, split).is_err(),
        "a split character is refused"
    );
}

#[test]
fn a_flush_deletes_every_key() {
    let mut data = HashMap::new();
    data.insert("a".into(), "1".into());
    data.insert("b".into(), "2".into());
    assert_eq!(run(&mut data, Change::Flush).expect("flush"), Outcome::Ok);
    assert!(data.is_empty());
}
