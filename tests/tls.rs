//! TLS on both ports (`--tls-cert`, `--tls-key`, `--tls-ca`), with certificates made by
//! the tests (rcgen). What each test tries:
//!
//! - **Client port.** The `redis` crate (with a password URL too) and
//!   `redis-cli --tls --cacert` work. A client speaking plain text is told to use TLS, and
//!   the node logs it. With `--tls-auth-clients` a client needs a certificate signed by
//!   the CA: none, or one from another CA, is refused.
//! - **Replication link: mutual TLS.** A replica with a certificate of the deployment's CA
//!   converges. A peer without a certificate, or with another CA's, gets no data and the
//!   upstream logs why. A replica refuses an upstream whose certificate does not name the
//!   `--join` host, or is signed by another CA. Plain-text and TLS nodes do not mix, and
//!   both sides say why.
//! - **Start.** Incomplete or unusable TLS options are refused in one line; no key or
//!   secret appears in any output.

mod common;

use common::certs::{Ca, Identity};
use common::frames::{fresh_join, read_message, try_write_message};
use common::{kv_rows, refused_at_start, wait_until, KvProcess};
use kv::protocol::Message;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use tempfile::TempDir;

const PATIENCE: Duration = Duration::from_secs(15);
const SECRET: &str = "kv-tls-test-secret-8d2e61b0";

/// A deployment: its CA, and a certificate naming 127.0.0.1 and localhost.
fn deployment(dir: &Path) -> (Ca, Identity) {
    let ca = Ca::new(dir, "ca");
    let node = ca.issue("node", &["127.0.0.1", "localhost"]);
    (ca, node)
}

/// A primary with one key, on loopback, speaking TLS with `identity`.
fn primary(dir: &Path, ca: &Ca, identity: &Identity, extra: &[&str]) -> KvProcess {
    let db = dir.join("p.db").display().to_string();
    let mut args = vec!["primary", "--db", &db, "--listen", "127.0.0.1:0"];
    args.extend(identity.args(ca));
    args.extend_from_slice(extra);
    let mut node = KvProcess::start(&args);
    assert_eq!(node.command("PUT private 1"), "OK private = 1");
    node
}

fn redis_tls(port: u16, ca: &Ca, identity: Option<&Identity>, url: &str) -> redis::Client {
    let client_tls = identity.map(|identity| redis::ClientTlsConfig {
        client_cert: std::fs::read(&identity.cert).expect("cert"),
        client_key: std::fs::read(&identity.key).expect("key"),
    });
    let certificates = redis::TlsCertificates {
        client_tls,
        root_cert: Some(ca.pem()),
    };
    let url = url.replace("PORT", &port.to_string());
    redis::Client::build_with_tls(url, certificates).expect("a TLS client")
}

fn get(client: &redis::Client, key: &str) -> redis::RedisResult<Option<String>> {
    let mut con = client.get_connection()?;
    redis::cmd("GET").arg(key).query(&mut con)
}

#[test]
fn clients_speak_tls_and_plain_text_is_refused_at_start() {
    let dir = TempDir::new().expect("tempdir");
    let (ca, identity) = deployment(dir.path());
    let secret = dir.path().join("secret");
    std::fs::write(&secret, format!("{SECRET}\n")).expect("secret");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let secret = secret.display().to_string();
    let mut args = identity.args(&ca);
    args.extend(["--auth-file", &secret]);
    let node = KvProcess::primary_with_clients(&dir.path().join("p.db"), &args);
    let port = node.resp_port.expect("client port");

    // The redis crate over TLS, with the secret in its URL.
    let url = format!("rediss://:{SECRET}@127.0.0.1:PORT/");
    let client = redis_tls(port, &ca, None, &url);
    let mut con = client.get_connection().expect("a TLS connection");
    let () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query(&mut con)
        .expect("SET");
    assert_eq!(get(&client, "k").expect("GET"), Some("v".into()));
    // Over TLS, without the secret: still NOAUTH.
    let anonymous = redis_tls(port, &ca, None, "rediss://127.0.0.1:PORT/");
    let refused = get(&anonymous, "k").expect_err("no secret, no data");
    assert!(refused.to_string().contains("Authentication required"));

    // A pipeline far larger than one TLS record (16 KiB) or one read (64 KiB): every
    // reply, in order.
    let mut tls = ca.connect(port, None).expect("a TLS connection");
    let mut pipeline = format!("AUTH {SECRET}\r\n");
    let mut expected = String::from("+OK\r\n");
    for i in 0..3000 {
        let value = format!("value-{i:06}");
        pipeline += &format!("SET key:{i} {value}\r\nGET key:{i}\r\n");
        expected += &format!("+OK\r\n${}\r\n{value}\r\n", value.len());
    }
    tls.write_all(pipeline.as_bytes())
        .expect("send the pipeline");
    tls.flush().expect("flush");
    let mut replies = vec![0u8; expected.len()];
    tls.sock.set_read_timeout(Some(PATIENCE)).expect("timeout");
    tls.read_exact(&mut replies).expect("every reply");
    assert!(replies == expected.as_bytes(), "replies out of order");

    // A client certificate is optional, but one from another CA is refused.
    let other_ca = Ca::new(dir.path(), "other-ca");
    let stranger = other_ca.issue("stranger", &["app"]);
    let foreign = redis_tls(port, &ca, Some(&stranger), &url);
    assert!(
        get(&foreign, "k").is_err(),
        "another CA's client certificate"
    );

    // redis-cli --tls --cacert (CI installs redis-tools).
    let out = Command::new("redis-cli")
        .args(["--tls", "--cacert", ca.cert.to_str().expect("path")])
        .args(["-p", &port.to_string(), "-a", SECRET, "--no-auth-warning"])
        .args(["GET", "k"])
        .output()
        .expect("redis-cli (apt-get install redis-tools)");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "v");

    // Plain text on the TLS port: told so, in RESP, and logged.
    let mut plain = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    plain
        .set_read_timeout(Some(PATIENCE))
        .expect("read timeout");
    plain.write_all(b"GET k\r\n").expect("send");
    let mut reply = String::new();
    let _ = plain.read_to_string(&mut reply);
    assert!(
        reply.starts_with("-ERR this port speaks TLS only"),
        "{reply:?}"
    );
    node.wait_stderr("plain text on a TLS port");

    let logged = node.stderr_text();
    let key = std::fs::read_to_string(&identity.key).expect("key");
    let key_body = key.lines().nth(1).expect("a key line");
    assert!(!logged.contains(SECRET), "the secret was logged");
    assert!(!logged.contains(key_body), "the private key was logged");
}

#[test]
fn tls_auth_clients_requires_a_certificate_of_the_ca() {
    let dir = TempDir::new().expect("tempdir");
    let (ca, identity) = deployment(dir.path());
    let mut args = identity.args(&ca);
    args.push("--tls-auth-clients");
    let node = KvProcess::primary_with_clients(&dir.path().join("p.db"), &args);
    let port = node.resp_port.expect("client port");
    let url = "rediss://127.0.0.1:PORT/";

    let app = ca.issue("app", &["app"]);
    let with_cert = redis_tls(port, &ca, Some(&app), url);
    assert_eq!(get(&with_cert, "nothing").expect("GET"), None);

    let without = redis_tls(port, &ca, None, url);
    assert!(
        get(&without, "nothing").is_err(),
        "no certificate, no access"
    );
    let other_ca = Ca::new(dir.path(), "other-ca");
    let stranger = other_ca.issue("stranger", &["app"]);
    let foreign = redis_tls(port, &ca, Some(&stranger), url);
    assert!(
        get(&foreign, "nothing").is_err(),
        "another CA's certificate"
    );
    wait_lines(&node, "refused client", 2);
}

#[test]
fn replicas_with_the_cas_certificates_converge() {
    let dir = TempDir::new().expect("tempdir");
    let (ca, identity) = deployment(dir.path());
    let mut primary = primary(dir.path(), &ca, &identity, &[]);
    let replica_identity = ca.issue("replica", &["127.0.0.1"]);
    let replica_db = dir.path().join("r.db");
    // The --join host is checked against the upstream's names: localhost is one.
    let upstream = format!("localhost:{}", primary.port);
    let _replica = KvProcess::synced_replica(&replica_db, &upstream, &replica_identity.args(&ca));
    assert_eq!(primary.command("PUT after 2"), "OK after = 2");
    let caught_up = wait_until(PATIENCE, || kv_rows(&replica_db).len() == 2);
    assert!(caught_up, "the replica has {:?}", kv_rows(&replica_db));
}

/// What a peer played by the test gets when it completes what it can of the handshake
/// and asks for data: every message but `Error`s, up to the snapshot's end or the close.
fn data_received(ca: &Ca, port: u16, identity: Option<&Identity>) -> Vec<Message> {
    let Ok(mut stream) = ca.connect(port, identity) else {
        return Vec::new(); // refused during the handshake
    };
    if try_write_message(&mut stream, &fresh_join()).is_err() {
        return Vec::new();
    }
    let mut data = Vec::new();
    while let Some(message) = read_message(&mut stream, PATIENCE) {
        match message {
            Message::Error { .. } => {}
            Message::SnapshotEnd { .. } => {
                data.push(message);
                break;
            }
            other => data.push(other),
        }
    }
    data
}

/// Waits until at least `count` of `node`'s stderr lines contain `needle`.
fn wait_lines(node: &KvProcess, needle: &str, count: usize) {
    let seen = || node.stderr_text().matches(needle).count();
    assert!(
        wait_until(PATIENCE, || seen() >= count),
        "{count} lines with {needle:?} expected: {}",
        node.stderr_text()
    );
}

#[test]
fn the_upstream_refuses_peers_without_a_certificate_of_its_ca() {
    let dir = TempDir::new().expect("tempdir");
    let (ca, identity) = deployment(dir.path());
    let primary = primary(dir.path(), &ca, &identity, &[]);

    // Played by the test: the CA's certificate gets the snapshot; no certificate, or
    // another CA's, gets nothing, and each refusal is logged.
    let member = ca.issue("member", &["127.0.0.1"]);
    let snapshot = data_received(&ca, primary.port, Some(&member));
    assert!(
        matches!(snapshot.first(), Some(Message::SnapshotBegin { .. })),
        "the CA's certificate gets the data: {snapshot:?}"
    );
    assert!(data_received(&ca, primary.port, None).is_empty());
    let other_ca = Ca::new(dir.path(), "other-ca");
    let stranger = other_ca.issue("stranger", &["127.0.0.1"]);
    assert!(data_received(&ca, primary.port, Some(&stranger)).is_empty());
    wait_lines(&primary, "refused a replica connection from 127.0.0.1", 2);

    // A kv replica whose certificate another CA signed (it trusts the right CA).
    let replica_db = dir.path().join("r.db");
    let mut args = vec!["--tls-cert", &stranger.cert, "--tls-key", &stranger.key];
    args.extend(["--tls-ca", ca.cert.to_str().expect("path")]);
    let replica = KvProcess::replica(&replica_db, &primary.addr(), &args);
    replica.wait_stderr("does it trust this node's certificate");
    assert!(
        kv_rows(&replica_db).is_empty(),
        "a refused replica holds data"
    );
}

#[test]
fn a_replica_refuses_an_upstream_it_cannot_verify() {
    let dir = TempDir::new().expect("tempdir");
    let ca = Ca::new(dir.path(), "ca");
    let replica = ca.issue("replica", &["127.0.0.1"]);
    // The upstream's certificate names another host.
    let elsewhere = ca.issue("elsewhere", &["db9.example"]);
    refuses_upstream(
        dir.path(),
        (&ca, &elsewhere),
        (&ca, &replica),
        "not valid for name",
    );
    // The upstream's certificate is another CA's.
    let other_ca = Ca::new(dir.path(), "other-ca");
    let impostor = other_ca.issue("impostor", &["127.0.0.1"]);
    refuses_upstream(
        dir.path(),
        (&other_ca, &impostor),
        (&ca, &replica),
        "UnknownIssuer",
    );
}

/// A replica with `replica` joining an upstream with `upstream` logs `why` and gets no
/// data.
fn refuses_upstream(dir: &Path, upstream: (&Ca, &Identity), replica: (&Ca, &Identity), why: &str) {
    let (upstream_ca, upstream_identity) = upstream;
    let (replica_ca, replica_identity) = replica;
    let node_dir = TempDir::new_in(dir).expect("tempdir");
    let primary = primary(node_dir.path(), upstream_ca, upstream_identity, &[]);
    let replica_db = node_dir.path().join("r.db");
    let node = KvProcess::replica(
        &replica_db,
        &primary.addr(),
        &replica_identity.args(replica_ca),
    );
    node.wait_stderr(why);
    assert!(kv_rows(&replica_db).is_empty());
}

#[test]
fn plain_text_and_tls_nodes_do_not_mix() {
    let dir = TempDir::new().expect("tempdir");
    let (ca, identity) = deployment(dir.path());
    let tls_dir = dir.path().join("tls");
    std::fs::create_dir(&tls_dir).expect("dir");
    let tls_primary = primary(&tls_dir, &ca, &identity, &[]);

    // A plain replica of a TLS primary: refused, and told why.
    let plain_db = dir.path().join("plain-replica.db");
    let plain_replica = KvProcess::replica(&plain_db, &tls_primary.addr(), &[]);
    tls_primary.wait_stderr("plain text on a TLS port");
    plain_replica.wait_stderr("this port speaks TLS only");
    assert!(kv_rows(&plain_db).is_empty());

    // A TLS replica of a plain primary: it refuses, saying the handshake failed.
    let plain_dir = dir.path().join("plain");
    std::fs::create_dir(&plain_dir).expect("dir");
    let db = plain_dir.join("p.db").display().to_string();
    let mut plain_primary = KvProcess::start(&["primary", "--db", &db, "--listen", "127.0.0.1:0"]);
    assert_eq!(plain_primary.command("PUT private 1"), "OK private = 1");
    let tls_db = dir.path().join("tls-replica.db");
    let replica_identity = ca.issue("replica", &["127.0.0.1"]);
    let tls_replica =
        KvProcess::replica(&tls_db, &plain_primary.addr(), &replica_identity.args(&ca));
    tls_replica.wait_stderr("TLS handshake with");
    assert!(kv_rows(&tls_db).is_empty());
}

#[test]
fn incomplete_or_unusable_tls_options_are_refused_at_start() {
    let dir = TempDir::new().expect("tempdir");
    let (ca, identity) = deployment(dir.path());
    let ca_path = ca.cert.display().to_string();
    let db = dir.path().join("p.db").display().to_string();
    let base = ["primary", "--db", &db, "--listen", "127.0.0.1:0"];
    fn with<'a>(base: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
        [base, extra].concat()
    }

    refused_at_start(&with(&base, &["--tls-ca", &ca_path]), &["add --tls-cert"]);
    refused_at_start(
        &with(
            &base,
            &["--tls-cert", &identity.cert, "--tls-key", &identity.key],
        ),
        &["all three", "add --tls-ca"],
    );
    refused_at_start(
        &with(&base, &["--tls-auth-clients"]),
        &["--tls-auth-clients needs"],
    );
    refused_at_start(
        &with(&base, &["--tls-key", &identity.key]),
        &["add --tls-cert and --tls-ca"],
    );
    let mut swapped = identity.args(&ca);
    swapped[1] = &identity.key;
    refused_at_start(
        &with(&base, &swapped),
        &["--tls-cert", "no certificate in it"],
    );
    for open in [0o644, 0o640] {
        let mode = std::fs::Permissions::from_mode(open);
        std::fs::set_permissions(&identity.key, mode).expect("chmod");
        refused_at_start(
            &with(&base, &identity.args(&ca)),
            &["--tls-key", "chmod 600"],
        );
    }
    std::fs::set_permissions(&identity.key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let other_key = ca.issue("other", &["127.0.0.1"]).key;
    let mut mismatched = identity.args(&ca);
    mismatched[3] = &other_key;
    refused_at_start(
        &with(&base, &mismatched),
        &["the key is not the certificate's"],
    );
    assert!(
        !Path::new(&db).exists(),
        "a refused start created the database"
    );
}
