//! The etcd harness itself (`common::etcd`): a started etcd serves the v3 JSON gateway,
//! keeps what is put into it, and is gone once its guard is dropped; a blackholed proxy in
//! front of it cuts it off.

use crate::common::etcd::{post, Etcd};
use crate::common::proxy::Proxy;
use std::path::Path;

#[test]
fn etcd_serves_requests_and_is_killed_on_drop() {
    let etcd = Etcd::start();
    assert!(
        etcd.url().starts_with("http://127.0.0.1:"),
        "{}",
        etcd.url()
    );
    let (status, body) = post(&etcd.addr(), "/v3/kv/range", r#"{"key":"AA=="}"#)
        .unwrap_or_else(|e| panic!("range request: {e}; log:\n{}", etcd.log_tail()));
    assert_eq!(status, 200, "{body}");
    assert_eq!(etcd.get("/kv/harness/missing"), None);
    etcd.put("/kv/harness/key", b"127.0.0.1:4242");
    assert_eq!(
        etcd.get("/kv/harness/key").as_deref(),
        Some(&b"127.0.0.1:4242"[..])
    );

    let (pid, addr) = (etcd.pid(), etcd.addr());
    drop(etcd);
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "etcd (pid {pid}) still running after drop"
    );
    assert!(
        post(&addr, "/v3/kv/range", r#"{"key":"AA=="}"#).is_err(),
        "{addr} still answers after drop"
    );
}

/// What `fencing` relies on: a request through a blackholed proxy gets no answer, and
/// requests pass again once the blackhole is lifted.
#[test]
fn a_blackholed_proxy_cuts_etcd_off() {
    let etcd = Etcd::start();
    let proxy = Proxy::new(&etcd.addr());
    let range = || post(&proxy.addr, "/v3/kv/range", r#"{"key":"AA=="}"#);
    assert_eq!(range().expect("through the proxy").0, 200);
    proxy.blackhole(true);
    assert!(range().is_err(), "answered through a blackhole");
    proxy.blackhole(false);
    assert_eq!(range().expect("after the blackhole").0, 200);
}
