//! Unit tests of shell commands against an in-memory node.

use super::*;
use crate::node::lease::WriteLease;
use crate::node::Node;
use crate::store::{MemoryStore, Role};

fn shell(role: Role) -> (tokio::runtime::Runtime, Shell) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let store = Arc::new(MemoryStore::new(role));
    let addr = "127.0.0.1:0".parse().expect("addr");
    let node = Node::new(
        store,
        addr,
        runtime.handle().clone(),
        1 << 20,
        WriteLease::off(),
    )
    .expect("node");
    let shell = Shell::new(Arc::new(node), runtime.handle().clone());
    (runtime, shell)
}

fn out(shell: &Shell, line: &str) -> String {
    match shell.execute(line) {
        Outcome::Print(text) => text,
        other => panic!("{line}: {other:?}"),
    }
}

#[test]
fn book_transcript_on_the_primary() {
    let (_rt, sh) = shell(Role::Primary);
    assert_eq!(out(&sh, "PUT a 1"), "OK a = 1");
    assert_eq!(out(&sh, "GET a"), "a -> 1");
    assert_eq!(out(&sh, "GET zz"), "zz -> Not found");
    assert_eq!(sh.execute("EXIT"), Outcome::Exit);
    assert_eq!(sh.execute(""), Outcome::Nothing);
}

#[test]
fn banners_match_the_book() {
    let primary = banner(Role::Primary, 8080, None, true);
    assert!(primary.starts_with(
        "Primary server ready (port 8080)\nCommands:\n- PUT <key> <value>\n- GET <key>\n- EXIT\n"
    ));
    let replica = banner(Role::Replica, 8081, None, true);
    assert!(replica.starts_with(
        "Replica ready (port 8081)\nCommands:\n- GET <key>\n- JOIN <host:port>\n- EXIT\n"
    ));
}

#[test]
fn delete_keys_and_values_with_spaces() {
    let (_rt, sh) = shell(Role::Primary);
    assert_eq!(
        out(&sh, "put greeting hello world"),
        "OK greeting = hello world"
    );
    assert_eq!(out(&sh, "GET greeting"), "greeting -> hello world");
    assert_eq!(out(&sh, "DEL greeting"), "OK greeting deleted");
    assert_eq!(out(&sh, "DEL greeting"), "greeting -> Not found");
    assert_eq!(out(&sh, "KEYS"), "(no keys)");
    for i in 0..1003 {
        out(&sh, &format!("PUT k{i:04} v"));
    }
    out(&sh, "PUT other v");
    let keys = out(&sh, "KEYS k");
    let lines: Vec<&str> = keys.lines().collect();
    assert_eq!(lines.len(), 1001);
    assert_eq!(lines[0], "k0000");
    assert_eq!(lines[1000], "... (3 more)");
    assert_eq!(out(&sh, "KEYS o"), "other");
}

#[test]
fn status_reports_role_and_seq() {
    let (_rt, sh) = shell(Role::Primary);
    out(&sh, "PUT a 1");
    let status = out(&sh, "STATUS");
    assert!(status.contains("role: primary"), "{status}");
    assert!(status.contains("database: memory"), "{status}");
    assert!(status.contains("head_seq: 1"), "{status}");
    assert!(status.contains("keys: 1"), "{status}");
    let help = out(&sh, "help");
    assert!(help.contains("DEL <key>"), "{help}");
}

#[test]
fn replica_refuses_writes_and_bad_joins() {
    let (_rt, sh) = shell(Role::Replica);
    assert_eq!(out(&sh, "GET a"), "a -> Not found");
    assert!(out(&sh, "PUT a 1").starts_with("ERR PUT is not accepted here"));
    assert!(out(&sh, "DEL a").starts_with("ERR DEL is not accepted here"));
    assert!(out(&sh, "JOIN nowhere").starts_with("ERR 'nowhere' is not an address"));
    let refused = out(&sh, "JOIN 127.0.0.1:1");
    assert!(
        refused.starts_with("ERR JOIN 127.0.0.1:1 failed"),
        "{refused}"
    );
    let status = out(&sh, "STATUS");
    assert!(status.contains("role: replica"), "{status}");
    // Nothing to reconnect to: idle again, saying why the JOIN failed.
    assert!(status.contains("link: idle"), "{status}");
    assert!(status.contains("last_error: cannot connect"), "{status}");
}

#[test]
fn bad_input_is_one_err_line() {
    let (_rt, sh) = shell(Role::Primary);
    for raw in [
        &b"FROB"[..],
        b"PUT",
        b"PUT onlykey",
        b"GET",
        b"GET \xff\xfe",
        b"PUT a \x1b[31m",
        b"JOIN 127.0.0.1:1",
        b"PROMOTE",
        b"PROMOTE now",
    ] {
        match sh.execute_raw(raw) {
            Outcome::Print(text) => {
                assert!(text.starts_with("ERR "), "{raw:?}: {text}");
                assert_eq!(text.lines().count(), 1, "{raw:?}: {text}");
            }
            other => panic!("{raw:?}: {other:?}"),
        }
    }
    let long = vec![b'x'; 100 * 1024];
    assert!(
        matches!(sh.execute_raw(&long), Outcome::Print(t) if t.starts_with("ERR line too long"))
    );
}

#[test]
fn digest_follows_contents_not_history() {
    let (_rt, a) = shell(Role::Primary);
    let (_rt2, b) = shell(Role::Primary);
    let empty = out(&a, "DIGEST");
    assert!(empty.ends_with("(seq 0)"), "{empty}");
    assert_eq!(empty.split(' ').next().map(str::len), Some(64));
    out(&a, "PUT x 1");
    out(&a, "PUT y 2");
    out(&b, "PUT y 2");
    out(&b, "PUT x 1");
    let (da, db) = (out(&a, "DIGEST"), out(&b, "DIGEST"));
    assert_eq!(da, db, "same contents at the same seq, same digest");
    out(&b, "PUT x 2");
    assert_ne!(out(&b, "DIGEST").split(' ').next(), da.split(' ').next());
    // "ab" + "c" must not collide with "a" + "bc".
    let (_rt3, c) = shell(Role::Primary);
    let (_rt4, d) = shell(Role::Primary);
    out(&c, "PUT ab c");
    out(&d, "PUT a bc");
    assert_ne!(out(&c, "DIGEST"), out(&d, "DIGEST"));
    assert!(out(&a, "STATUS").contains(&format!("digest: {da}")));
}

#[test]
fn promote_turns_a_replica_into_a_primary_that_takes_puts() {
    let (_rt, sh) = shell(Role::Replica);
    assert!(out(&sh, "PUT a 1").starts_with("ERR"));
    assert_eq!(sh.prompt(), "replica> ");
    let promoted = out(&sh, "PROMOTE");
    assert!(promoted.starts_with("Promoted: new history"), "{promoted}");
    assert_eq!(sh.prompt(), "primary> ");
    assert_eq!(out(&sh, "PUT a 1"), "OK a = 1");
    assert!(out(&sh, "HELP").contains("JOIN <host:port>"));
    assert!(out(&sh, "PROMOTE").starts_with("ERR"));
}

#[test]
fn incr_counts_on_the_primary_only() {
    let (_rt, sh) = shell(Role::Primary);
    assert_eq!(out(&sh, "INCR visits"), "OK visits = 1");
    assert_eq!(out(&sh, "incr visits 41"), "OK visits = 42");
    assert_eq!(out(&sh, "INCR visits -50"), "OK visits = -8");
    assert_eq!(out(&sh, "GET visits"), "visits -> -8");
    assert_eq!(out(&sh, "PUT name ada"), "OK name = ada");
    assert_eq!(
        out(&sh, "INCR name"),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(
        out(&sh, "INCR visits x"),
        "ERR usage: INCR <key> [by] (by: a whole number)"
    );
    assert!(out(&sh, "HELP").contains("INCR <key> [by]"));
    let (_rt, replica) = shell(Role::Replica);
    assert!(out(&replica, "INCR visits").contains("not accepted here"));
}

#[test]
fn expire_and_ttl() {
    let (_rt, sh) = shell(Role::Primary);
    assert_eq!(out(&sh, "PUT s a session"), "OK s = a session");
    assert_eq!(out(&sh, "TTL s"), "s -> no expiry");
    assert_eq!(out(&sh, "EXPIRE s 100"), "OK s expires in 100 s");
    let left = out(&sh, "ttl s");
    assert!(
        left.starts_with("s -> expires in 99.") || left == "s -> expires in 100.000 s",
        "{left}"
    );
    assert_eq!(out(&sh, "GET s"), "s -> a session");
    assert_eq!(out(&sh, "EXPIRE nothing 5"), "nothing -> Not found");
    assert_eq!(out(&sh, "TTL nothing"), "nothing -> Not found");
    assert_eq!(out(&sh, "EXPIRE s 0"), "OK s deleted");
    assert_eq!(out(&sh, "GET s"), "s -> Not found");
    for bad in ["EXPIRE s", "EXPIRE s x", "EXPIRE s 1 2"] {
        assert_eq!(
            out(&sh, bad),
            "ERR usage: EXPIRE <key> <seconds> (a whole number)",
            "{bad}"
        );
    }
    assert_eq!(
        out(&sh, "EXPIRE s 9223372036854775807"),
        "ERR usage: EXPIRE <key> <seconds> (too many seconds)"
    );
    assert_eq!(out(&sh, "TTL"), "ERR usage: TTL <key>");
    let help = out(&sh, "HELP");
    assert!(help.contains("EXPIRE <key> <seconds>") && help.contains("TTL <key>"));
    let (_rt, replica) = shell(Role::Replica);
    assert!(out(&replica, "EXPIRE s 5").contains("not accepted here"));
    assert_eq!(out(&replica, "TTL s"), "s -> Not found");
}

#[test]
fn flush_asks_first_unless_told_yes() {
    let (_rt, sh) = shell(Role::Primary);
    assert_eq!(out(&sh, "PUT a 1"), "OK a = 1");
    let asked = sh.execute("FLUSH");
    let expected = Outcome::Confirm {
        question: "Delete all 1 keys (on every replica too)? [y/N] ".into(),
        line: "FLUSH YES".into(),
    };
    assert_eq!(asked, expected);
    assert_eq!(out(&sh, "GET a"), "a -> 1", "asking deletes nothing");
    assert_eq!(out(&sh, "flush yes"), "OK every key deleted");
    assert_eq!(out(&sh, "GET a"), "a -> Not found");
    assert_eq!(out(&sh, "FLUSH now"), "ERR usage: FLUSH [YES]");
    let (_rt, replica) = shell(Role::Replica);
    assert!(out(&replica, "FLUSH").contains("not accepted here"));
}

#[test]
fn bytes_that_are_not_text_are_shown_escaped() {
    assert_eq!(shown("h\u{e9}llo".as_bytes()), "h\u{e9}llo");
    assert_eq!(shown(b"a\xffb"), "a\\xffb");
    assert_eq!(shown(b"\xc3"), "\\xc3", "half a character");
    assert_eq!(
        shown(b"back\\slash\xff"),
        "back\\\\slash\\xff",
        "unambiguous"
    );
    assert_eq!(shown(b"back\\slash"), "back\\slash", "text stays as it is");
}
