//! The changes against a map, without a store or a writer.

use super::*;
use std::collections::HashMap;

/// Resolves `change` against `data` at `now` and applies its ops (the tests' keys are
/// text; values are bytes).
fn run_at(data: &mut HashMap<String, Stored>, now: u64, change: Change) -> Result<Outcome> {
    let snapshot = data.clone();
    let text = |key: &[u8]| String::from_utf8(key.to_vec()).expect("a text key");
    let mut read = |key: &[u8]| Ok(snapshot.get(&text(key)).cloned());
    let mut expiry = |key: &[u8]| Ok(snapshot.get(&text(key)).map(|stored| stored.expires_at));
    let mut keys = || {
        let live = snapshot.iter().filter(|(_, stored)| stored.is_live(now));
        Ok(live.map(|(key, _)| key.clone().into_bytes()).collect())
    };
    let mut view = View {
        now,
        read: &mut read,
        expiry: &mut expiry,
        keys: &mut keys,
    };
    let (ops, outcome) = change.resolve(&mut view)?;
    for op in ops {
        match op {
            Op::Put {
                key,
                value,
                expires_at,
            } => {
                data.insert(text(&key), Stored { value, expires_at });
            }
            Op::Delete { key } => {
                data.remove(&text(&key));
            }
        }
    }
    Ok(outcome)
}

/// [`run_at`] on keys without expiry, holding text.
fn run(data: &mut HashMap<String, String>, change: Change) -> Result<Outcome> {
    let mut stored = data
        .drain()
        .map(|(key, value)| {
            (
                key,
                Stored {
                    value: value.into_bytes(),
                    expires_at: None,
                },
            )
        })
        .collect();
    let outcome = run_at(&mut stored, NOW, change);
    let text = |stored: Stored| String::from_utf8(stored.value).expect("a text value");
    data.extend(stored.into_iter().map(|(key, stored)| (key, text(stored))));
    outcome
}

const NOW: u64 = 1_700_000_000_000;

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
        assert_eq!(parse_integer(bad.as_bytes()), None, "{bad:?}");
    }
    assert_eq!(parse_integer(b"-12"), Some(-12));
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
    assert_eq!(parse_float(b" 1"), None);
    assert_eq!(parse_float(b"nan"), None);
}

#[test]
fn conditional_sets_and_renames() {
    let mut data = HashMap::new();
    let set = |value: &str, when, get| Change::Set {
        key: "k".into(),
        value: value.into(),
        when,
        get,
        expiry: NewExpiry::Never,
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
fn setrange_pads_and_writes_bytes() {
    let mut data = HashMap::new();
    let change = Change::SetRange {
        key: "r".into(),
        offset: 3,
        value: "ab".into(),
    };
    assert_eq!(run(&mut data, change).expect("setrange"), Outcome::Int(5));
    assert_eq!(data["r"], "\0\0\0ab");
    let mut binary = HashMap::new();
    binary.insert("u".to_string(), stored("é", None));
    let split = Change::SetRange {
        key: "u".into(),
        offset: 1,
        value: "x".into(),
    };
    assert_eq!(
        run_at(&mut binary, NOW, split).expect("setrange"),
        Outcome::Int(2)
    );
    assert_eq!(
        binary["u"].value,
        [0xc3, b'x'],
        "values are bytes: any byte may change"
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

fn stored(value: &str, expires_at: Option<u64>) -> Stored {
    Stored {
        value: value.as_bytes().to_vec(),
        expires_at,
    }
}

#[test]
fn an_expired_key_is_absent_to_every_change() {
    let mut data = HashMap::new();
    data.insert("n".to_string(), stored("41", Some(NOW)));
    assert_eq!(
        run_at(&mut data, NOW, incr("n", 1)).expect("incr"),
        Outcome::Int(1)
    );
    assert_eq!(
        data["n"],
        stored("1", None),
        "a new key, without the old expiry"
    );
    data.insert("lock".to_string(), stored("a", Some(NOW - 1)));
    let nx = Change::Set {
        key: "lock".into(),
        value: "b".into(),
        when: When::Absent,
        get: false,
        expiry: NewExpiry::At(NOW + 30_000),
    };
    assert_eq!(run_at(&mut data, NOW, nx).expect("nx"), Outcome::Ok);
    assert_eq!(data["lock"], stored("b", Some(NOW + 30_000)));
}

#[test]
fn rewrites_keep_the_expiry_and_replacements_drop_it() {
    let mut data = HashMap::new();
    let later = Some(NOW + 10_000);
    data.insert("n".to_string(), stored("1", later));
    run_at(&mut data, NOW, incr("n", 1)).expect("incr");
    let append = Change::Append {
        key: "n".into(),
        value: "0".into(),
    };
    run_at(&mut data, NOW, append).expect("append");
    assert_eq!(data["n"], stored("20", later), "INCR and APPEND keep it");
    let copy = Change::Copy {
        from: "n".into(),
        to: "c".into(),
        replace: false,
    };
    run_at(&mut data, NOW, copy).expect("copy");
    assert_eq!(data["c"], stored("20", later), "COPY carries it");
    let keep = |expiry| Change::Set {
        key: "n".into(),
        value: "v".into(),
        when: When::Always,
        get: false,
        expiry,
    };
    run_at(&mut data, NOW, keep(NewExpiry::Keep)).expect("keepttl");
    assert_eq!(data["n"], stored("v", later), "KEEPTTL keeps it");
    run_at(&mut data, NOW, keep(NewExpiry::Never)).expect("set");
    assert_eq!(data["n"], stored("v", None), "SET drops it");
}

#[test]
fn expire_conditions_and_past_times() {
    let mut data = HashMap::new();
    data.insert("k".to_string(), stored("v", None));
    let expire = |at, when| Change::Expire {
        key: "k".into(),
        at,
        when,
    };
    let gt = ExpireIf {
        gt: true,
        ..ExpireIf::default()
    };
    let lt = ExpireIf {
        lt: true,
        ..ExpireIf::default()
    };
    let nx = ExpireIf {
        nx: true,
        ..ExpireIf::default()
    };
    assert_eq!(
        run_at(&mut data, NOW, expire(NOW + 5, gt)).expect("gt"),
        Outcome::Int(0),
        "no expiry is later than any"
    );
    assert_eq!(
        run_at(&mut data, NOW, expire(NOW + 9, lt)).expect("lt"),
        Outcome::Int(1)
    );
    assert_eq!(
        run_at(&mut data, NOW, expire(NOW + 5, nx)).expect("nx"),
        Outcome::Int(0)
    );
    assert_eq!(
        run_at(&mut data, NOW, expire(NOW + 10, gt)).expect("gt"),
        Outcome::Int(1)
    );
    assert_eq!(data["k"].expires_at, Some(NOW + 10));
    let persist = Change::Persist { key: "k".into() };
    assert_eq!(
        run_at(&mut data, NOW, persist.clone()).expect("persist"),
        Outcome::Int(1)
    );
    assert_eq!(
        run_at(&mut data, NOW, persist).expect("again"),
        Outcome::Int(0)
    );
    assert_eq!(
        run_at(&mut data, NOW, expire(NOW - 1, ExpireIf::default())).expect("past"),
        Outcome::Int(1)
    );
    assert!(
        !data.contains_key("k"),
        "a time already past deletes the key"
    );
    assert_eq!(
        run_at(&mut data, NOW, expire(NOW + 1, ExpireIf::default())).expect("absent"),
        Outcome::Int(0)
    );
}

#[test]
fn getex_and_the_sweep() {
    let mut data = HashMap::new();
    data.insert("k".to_string(), stored("v", None));
    data.insert("old".to_string(), stored("v", Some(NOW)));
    data.insert("new".to_string(), stored("v", Some(NOW + 1)));
    let getex = Change::GetEx {
        key: "k".into(),
        expiry: NewExpiry::At(NOW + 100),
    };
    assert_eq!(
        run_at(&mut data, NOW, getex).expect("getex"),
        Outcome::Bulk(Some("v".into()))
    );
    assert_eq!(data["k"].expires_at, Some(NOW + 100));
    let purge = Change::Purge {
        keys: vec!["old".into(), "new".into(), "gone".into()],
    };
    assert_eq!(
        run_at(&mut data, NOW, purge).expect("purge"),
        Outcome::Int(1)
    );
    assert!(!data.contains_key("old"));
    assert!(data.contains_key("new"), "not expired yet: kept");
}
