//! The replication link with a shared secret (`--auth-file`): nodes with the same secret
//! replicate; a replica without it, or with another, is refused before it receives any
//! data, and both sides say why; each side is also tested alone against a peer played by
//! the test (a handshake bug on one side would be hidden when two kv nodes meet): a fake
//! replica that sends no proof, or a wrong one, and then asks for data gets nothing but
//! an `Error`; a fake upstream that cannot prove the secret is refused before the replica
//! sends its `Join`.

mod common;

use common::frames::{fresh_join, read_message, write_message};
use common::{kv_rows, wait_until, KvProcess};
use kv::auth::{Secret, Side};
use kv::protocol::Message;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tempfile::TempDir;

const PATIENCE: Duration = Duration::from_secs(15);

fn secret_file(dir: &Path, name: &str, secret: &str) -> String {
    let path: PathBuf = dir.join(name);
    std::fs::write(&path, format!("{secret}\n")).expect("write the secret");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    path.display().to_string()
}

/// A primary with `extra` arguments holding one key.
fn primary(dir: &Path, extra: &[&str]) -> KvProcess {
    let db = dir.join("p.db").display().to_string();
    let mut args = vec!["primary", "--db", &db, "--listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let mut node = KvProcess::start(&args);
    assert_eq!(node.command("PUT private 1"), "OK private = 1");
    node
}

/// Every message the node sends until it closes: only an `Error` may come (besides an
/// `AuthResponse` when `challenged`), never data.
fn nothing_but_refusals(stream: &mut TcpStream, challenged: bool) -> Vec<String> {
    let mut reasons = Vec::new();
    while let Some(message) = read_message(stream, PATIENCE) {
        match message {
            Message::Error { message } => reasons.push(message),
            Message::AuthResponse { .. } if challenged => {}
            // The upstream's proof goes only to a peer that proved itself.
            other => panic!("an unauthenticated peer was sent {other:?}"),
        }
    }
    reasons
}

#[test]
fn nodes_with_the_same_secret_replicate() {
    let dir = TempDir::new().expect("tempdir");
    let secret = secret_file(dir.path(), "secret", "same-secret-for-both-0123456789");
    let mut primary = primary(dir.path(), &["--auth-file", &secret]);
    let replica_db = dir.path().join("r.db");
    let replica =
        KvProcess::synced_replica(&replica_db, &primary.addr(), &["--auth-file", &secret]);
    assert_eq!(primary.command("PUT after 2"), "OK after = 2");
    let caught_up = wait_until(PATIENCE, || kv_rows(&replica_db).len() == 2);
    assert!(caught_up, "the replica has {:?}", kv_rows(&replica_db));
    drop(replica);
}

#[test]
fn a_replica_without_the_secret_or_with_another_gets_nothing() {
    let dir = TempDir::new().expect("tempdir");
    let secret = secret_file(dir.path(), "secret", "the-real-secret-0123456789abcdef");
    let other = secret_file(dir.path(), "other", "another-secret-0123456789abcdef0");
    let primary = primary(dir.path(), &["--auth-file", &secret]);

    for (name, extra, replica_says, primary_says) in [
        (
            "none.db",
            vec![],
            "requires the shared secret",
            "requires the shared secret",
        ),
        (
            "other.db",
            vec!["--auth-file", other.as_str()],
            "its --auth-file holds another secret",
            "its --auth-file holds another secret",
        ),
    ] {
        let db = dir.path().join(name);
        let replica = KvProcess::replica(&db, &primary.addr(), &extra);
        replica.wait_stderr(replica_says);
        primary.wait_stderr(primary_says);
        assert!(kv_rows(&db).is_empty(), "{name} received data");
        let said = replica.stderr_text();
        assert!(
            !said.contains("the-real-secret") && !said.contains("another-secret"),
            "{said}"
        );
        drop(replica);
        assert!(kv_rows(&db).is_empty(), "{name} received data");
    }
    let text = primary.stderr_text();
    assert!(
        !text.contains("the-real-secret") && !text.contains("another-secret"),
        "{text}"
    );
}

#[test]
fn a_node_without_a_secret_refuses_a_replica_that_has_one() {
    let dir = TempDir::new().expect("tempdir");
    let secret = secret_file(dir.path(), "secret", "only-the-replica-has-it-012345");
    let primary = primary(dir.path(), &[]);
    let db = dir.path().join("r.db");
    let replica = KvProcess::replica(&db, &primary.addr(), &["--auth-file", &secret]);
    replica.wait_stderr("has no --auth-file");
    primary.wait_stderr("has no --auth-file");
    assert!(kv_rows(&db).is_empty(), "the replica received data");
}

/// Makes a forged proof from the replica's and the upstream's nonces.
type Forge<'a> = dyn FnOnce(&[u8], &[u8]) -> Vec<u8> + 'a;

/// A fake replica's attempt on `addr`: a challenge with nonce R, then the proof `forge`
/// makes from R and the upstream's nonce U, then a `Join`; returns the refusals it
/// received (failing on any data, or on the upstream's own proof).
fn attempt(addr: &str, forge: impl FnOnce(&[u8], &[u8]) -> Vec<u8>) -> Vec<String> {
    let mut stream = TcpStream::connect(addr).expect("connect");
    let mine = vec![7; 32];
    write_message(
        &mut stream,
        &Message::AuthChallenge {
            nonce: mine.clone(),
        },
    );
    let Some(Message::AuthResponse { nonce }) = read_message(&mut stream, PATIENCE) else {
        panic!("no AuthResponse");
    };
    assert_eq!(nonce.len(), 32);
    let proof = forge(&mine, &nonce);
    write_message(&mut stream, &Message::AuthProof { proof });
    write_message(&mut stream, &fresh_join());
    nothing_but_refusals(&mut stream, true)
}

#[test]
fn a_fake_replica_without_a_valid_proof_gets_nothing() {
    let dir = TempDir::new().expect("tempdir");
    let secret = secret_file(dir.path(), "secret", "fake-replicas-never-see-this-01");
    let primary = primary(dir.path(), &["--auth-file", &secret]);
    let addr = primary.addr();

    // Straight to Join: refused.
    let mut bare = TcpStream::connect(&addr).expect("connect");
    write_message(&mut bare, &fresh_join());
    let reasons = nothing_but_refusals(&mut bare, false);
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("requires the shared secret")),
        "{reasons:?}"
    );

    // A challenge, then a forged proof and a Join: the upstream's nonce, then only the
    // refusal (never the upstream's own proof).
    let real = Secret::load(Path::new(&secret)).expect("the secret");
    let other = secret_file(dir.path(), "other", "not-the-secret-at-all-0123456789");
    let other = Secret::load(Path::new(&other)).expect("another secret");
    let forgeries: [(&str, Box<Forge<'_>>); 3] = [
        ("zeros", Box::new(|_, _| vec![0; 32])),
        (
            "another secret",
            Box::new(|r, u| other.prove(Side::Replica, r, u)),
        ),
        (
            "the upstream's label",
            Box::new(|r, u| real.prove(Side::Upstream, r, u)),
        ),
    ];
    for (what, forge) in forgeries {
        let reasons = attempt(&addr, forge);
        assert!(
            reasons.iter().any(|r| r.contains("proof is wrong")),
            "{what}: {reasons:?}"
        );
    }
    // The right proof is accepted (the test can make it: it knows the secret).
    let mut right = TcpStream::connect(&addr).expect("connect");
    write_message(&mut right, &Message::AuthChallenge { nonce: vec![5; 32] });
    let Some(Message::AuthResponse { nonce }) = read_message(&mut right, PATIENCE) else {
        panic!("no AuthResponse");
    };
    let proof = real.prove(Side::Replica, &[5; 32], &nonce);
    write_message(&mut right, &Message::AuthProof { proof });
    let Some(Message::AuthConfirm { proof }) = read_message(&mut right, PATIENCE) else {
        panic!("no AuthConfirm for the right proof");
    };
    assert!(real.verify(Side::Upstream, &[5; 32], &nonce, &proof));

    // A challenge, then a Join without any proof.
    let mut skip = TcpStream::connect(&addr).expect("connect");
    write_message(&mut skip, &Message::AuthChallenge { nonce: vec![1; 32] });
    write_message(&mut skip, &fresh_join());
    let reasons = nothing_but_refusals(&mut skip, true);
    assert!(
        reasons.iter().any(|r| r.contains("expected AuthProof")),
        "{reasons:?}"
    );
}

#[test]
fn a_replica_refuses_a_fake_upstream_that_cannot_prove_the_secret() {
    let dir = TempDir::new().expect("tempdir");
    let secret = secret_file(dir.path(), "secret", "a-replica-checks-its-upstream-0");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let upstream = listener.local_addr().expect("addr").to_string();
    let db = dir.path().join("r.db");
    let replica = KvProcess::replica(&db, &upstream, &["--auth-file", &secret]);

    let (mut stream, _) = listener.accept().expect("the replica connects");
    let Some(Message::AuthChallenge { nonce }) = read_message(&mut stream, PATIENCE) else {
        panic!("the replica did not start with a challenge");
    };
    assert_eq!(nonce.len(), 32);
    write_message(&mut stream, &Message::AuthResponse { nonce: vec![3; 32] });
    let Some(Message::AuthProof { proof }) = read_message(&mut stream, PATIENCE) else {
        panic!("the replica did not prove itself");
    };
    assert_eq!(proof.len(), 32);
    write_message(&mut stream, &Message::AuthConfirm { proof: vec![0; 32] });
    // The replica does not send its Join: it closes.
    let mut after = Vec::new();
    while let Some(message) = read_message(&mut stream, PATIENCE) {
        after.push(message.name());
    }
    assert!(after.is_empty(), "the replica sent {after:?}");
    replica.wait_stderr("could not prove the shared secret");
    assert!(kv_rows(&db).is_empty());
}
