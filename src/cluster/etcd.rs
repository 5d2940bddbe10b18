//! The few etcd v3 calls a cluster member makes (lease grant, keep-alive and revoke; range
//! over a prefix; put; a compare-and-swap transaction), through etcd's JSON gateway
//! (`POST /v3/...` on the client URL) with `ureq`, a small maintained blocking HTTP
//! client. Why the gateway and not gRPC: etcd's gRPC clients for Rust generate code with
//! `protoc` at build time, and a fresh machine's `cargo build` must need nothing but cargo.
//! The gateway maps each call to JSON: keys and values in base64, 64-bit integers as
//! strings, zero values left out.
//!
//! Calls are blocking, with a per-request timeout, and run on the cluster agent's own
//! threads, never on the async runtime. With several endpoints, a call that fails on one
//! is tried on the next, and the one that answered is tried first next time.

use crate::error::{Error, Result};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// A key and its value as etcd holds it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyValue {
    /// The key.
    pub key: String,
    /// The value's bytes.
    pub value: Vec<u8>,
    /// The revision that created the key (the fencing epoch of the primary key).
    pub create_revision: u64,
    /// The revision of its last change.
    pub mod_revision: u64,
    /// The lease it is bound to (0: none).
    pub lease: i64,
}

/// One condition of a transaction.
#[derive(Clone, Debug)]
pub enum Compare {
    /// The key does not exist.
    Absent(String),
    /// The key was created at this revision (it still exists, and was not re-created).
    CreatedAt(String, u64),
    /// The key was last changed at this revision (0: it does not exist).
    ModifiedAt(String, u64),
}

/// One operation of a transaction.
#[derive(Clone, Debug)]
pub enum TxnOp {
    /// Set `key` to `value`, bound to `lease` (0: no lease).
    Put {
        /// The key.
        key: String,
        /// The value.
        value: Vec<u8>,
        /// The lease.
        lease: i64,
    },
    /// Delete `key`.
    Delete(String),
}

/// Talks to one etcd cluster.
pub struct Etcd {
    agent: ureq::Agent,
    endpoints: Vec<String>,
    /// The endpoint that answered last.
    preferred: AtomicUsize,
}

impl Etcd {
    /// A client of the etcd cluster at `endpoints` (`http://host:port`), each request
    /// given up after `timeout`.
    pub fn new(endpoints: &[String], timeout: Duration) -> Result<Self> {
        check_endpoints(endpoints)?;
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .build()
            .into();
        Ok(Etcd {
            agent,
            endpoints: endpoints
                .iter()
                .map(|e| e.trim_end_matches('/').to_string())
                .collect(),
            preferred: AtomicUsize::new(0),
        })
    }

    /// Grants a lease of `ttl` seconds; returns its id and the TTL etcd granted (it may
    /// raise a short one to its minimum).
    pub fn grant(&self, ttl: u64) -> Result<(i64, u64)> {
        #[derive(Deserialize)]
        struct Granted {
            #[serde(rename = "ID", deserialize_with = "int")]
            id: i64,
            #[serde(rename = "TTL", default, deserialize_with = "int")]
            ttl: i64,
            #[serde(default)]
            error: Option<String>,
        }
        let granted: Granted = self.call("lease/grant", json!({ "TTL": ttl }))?;
        if let Some(error) = granted.error.filter(|e| !e.is_empty()) {
            return Err(Error::Etcd(format!("lease grant: {error}")));
        }
        Ok((granted.id, granted.ttl.max(0) as u64))
    }

    /// Renews lease `id`; returns its remaining TTL in seconds, or `None` if it is gone
    /// (expired or revoked).
    pub fn keep_alive(&self, id: i64) -> Result<Option<u64>> {
        #[derive(Deserialize, Default)]
        struct Renewed {
            #[serde(rename = "TTL", default, deserialize_with = "int")]
            ttl: i64,
        }
        #[derive(Deserialize)]
        struct Stream {
            result: Option<Renewed>,
        }
        let answer: Stream = self.call("lease/keepalive", json!({ "ID": id.to_string() }))?;
        let ttl = answer.result.unwrap_or_default().ttl;
        Ok((ttl > 0).then_some(ttl as u64))
    }

    /// Revokes lease `id`, deleting the keys bound to it.
    pub fn revoke(&self, id: i64) -> Result<()> {
        let _: Value = self.call("lease/revoke", json!({ "ID": id.to_string() }))?;
        Ok(())
    }

    /// Every key under `prefix`, in key order.
    pub fn range_prefix(&self, prefix: &str) -> Result<Vec<KeyValue>> {
        #[derive(Deserialize)]
        struct Range {
            #[serde(default)]
            kvs: Vec<RawKeyValue>,
        }
        let body = json!({
            "key": STANDARD.encode(prefix),
            "range_end": STANDARD.encode(prefix_end(prefix)),
        });
        let range: Range = self.call("kv/range", body)?;
        range.kvs.into_iter().map(RawKeyValue::decode).collect()
    }

    /// Sets `key` to `value`, bound to `lease` (0: none).
    pub fn put(&self, key: &str, value: &[u8], lease: i64) -> Result<()> {
        let _: Value = self.call("kv/put", put_body(key, value, lease))?;
        Ok(())
    }

    /// Runs `ops` if every comparison holds; returns whether they ran, and the revision
    /// etcd was at after the transaction (the revision of its writes, when they ran).
    pub fn txn(&self, compare: &[Compare], ops: &[TxnOp]) -> Result<(bool, u64)> {
        #[derive(Deserialize, Default)]
        struct Header {
            #[serde(default, deserialize_with = "int")]
            revision: i64,
        }
        #[derive(Deserialize)]
        struct Outcome {
            #[serde(default)]
            header: Header,
            #[serde(default)]
            succeeded: bool,
        }
        let body = json!({
            "compare": compare.iter().map(compare_json).collect::<Vec<_>>(),
            "success": ops.iter().map(op_json).collect::<Vec<_>>(),
        });
        let outcome: Outcome = self.call("kv/txn", body)?;
        Ok((outcome.succeeded, outcome.header.revision.max(0) as u64))
    }

    /// POSTs `body` to `/v3/<path>` on each endpoint in turn, from the preferred one,
    /// until one answers.
    fn call<T: DeserializeOwned>(&self, path: &str, body: Value) -> Result<T> {
        let first = self.preferred.load(Ordering::Relaxed);
        let mut last_error = None;
        for i in 0..self.endpoints.len() {
            let index = (first + i) % self.endpoints.len();
            match self.call_one(&self.endpoints[index], path, &body) {
                Ok(answer) => {
                    self.preferred.store(index, Ordering::Relaxed);
                    return Ok(answer);
                }
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| Error::Etcd("no endpoint".into())))
    }

    fn call_one<T: DeserializeOwned>(&self, endpoint: &str, path: &str, body: &Value) -> Result<T> {
        let url = format!("{endpoint}/v3/{path}");
        let failed = |e: &dyn std::fmt::Display| Error::Etcd(format!("{url}: {e}"));
        let mut response = self
            .agent
            .post(&url)
            .send_json(body)
            .map_err(|e| failed(&e))?;
        let status = response.status();
        let text = response
            .body_mut()
            .read_to_string()
            .map_err(|e| failed(&e))?;
        if !status.is_success() {
            let text: String = text.chars().take(200).collect();
            return Err(failed(&format!("HTTP {status}: {text}")));
        }
        serde_json::from_str(&text).map_err(|e| failed(&format!("unexpected answer: {e}")))
    }
}

/// etcd's words for a call naming a lease that has expired (or was revoked).
const LEASE_NOT_FOUND: &str = "requested lease not found";

/// Whether a failed call's message says that the lease it named no longer exists.
pub fn lease_expired(message: &str) -> bool {
    message.contains(LEASE_NOT_FOUND)
}

/// Refuses an empty list or a URL kv cannot use, before a node starts.
pub fn check_endpoints(endpoints: &[String]) -> Result<()> {
    if endpoints.is_empty() {
        return Err(Error::Invalid("--etcd needs at least one URL".into()));
    }
    endpoints.iter().try_for_each(|e| check_endpoint(e))
}

/// An etcd URL kv can use: `http://host:port` (TLS to etcd is not supported yet).
fn check_endpoint(endpoint: &str) -> Result<()> {
    match endpoint.strip_prefix("http://") {
        Some(rest) if !rest.is_empty() => Ok(()),
        _ => Err(Error::Invalid(format!(
            "--etcd {endpoint:?}: expected an http:// URL of an etcd client endpoint, \
             e.g. http://127.0.0.1:2379"
        ))),
    }
}

/// The end of the key range holding every key that starts with `prefix`: the prefix with
/// its last byte incremented (kv's prefixes end in `/`, never in 0xff).
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    if let Some(last) = end.last_mut() {
        *last = last.saturating_add(1);
    }
    end
}

fn put_body(key: &str, value: &[u8], lease: i64) -> Value {
    json!({
        "key": STANDARD.encode(key),
        "value": STANDARD.encode(value),
        "lease": lease.to_string(),
    })
}

fn compare_json(compare: &Compare) -> Value {
    let (key, target, field, revision) = match compare {
        Compare::Absent(key) => (key, "CREATE", "create_revision", 0),
        Compare::CreatedAt(key, rev) => (key, "CREATE", "create_revision", *rev),
        Compare::ModifiedAt(key, rev) => (key, "MOD", "mod_revision", *rev),
    };
    json!({
        "key": STANDARD.encode(key),
        "target": target,
        "result": "EQUAL",
        field: revision.to_string(),
    })
}

fn op_json(op: &TxnOp) -> Value {
    match op {
        TxnOp::Put { key, value, lease } => json!({ "request_put": put_body(key, value, *lease) }),
        TxnOp::Delete(key) => json!({ "request_delete_range": { "key": STANDARD.encode(key) } }),
    }
}

/// A key-value pair as the gateway sends it.
#[derive(Deserialize)]
struct RawKeyValue {
    key: String,
    #[serde(default)]
    value: String,
    #[serde(default, deserialize_with = "int")]
    create_revision: i64,
    #[serde(default, deserialize_with = "int")]
    mod_revision: i64,
    #[serde(default, deserialize_with = "int")]
    lease: i64,
}

impl RawKeyValue {
    fn decode(self) -> Result<KeyValue> {
        let bad = |e: base64::DecodeError| Error::Etcd(format!("undecodable key or value: {e}"));
        let key = STANDARD.decode(&self.key).map_err(bad)?;
        Ok(KeyValue {
            key: String::from_utf8_lossy(&key).into_owned(),
            value: STANDARD.decode(&self.value).map_err(bad)?,
            create_revision: self.create_revision.max(0) as u64,
            mod_revision: self.mod_revision.max(0) as u64,
            lease: self.lease,
        })
    }
}

/// A 64-bit integer the gateway sends as a string (or, from some versions, a number).
fn int<'de, D: Deserializer<'de>>(deserializer: D) -> std::result::Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Int {
        Text(String),
        Number(i64),
    }
    match Int::deserialize(deserializer)? {
        Int::Number(n) => Ok(n),
        Int::Text(text) => text.parse().map_err(serde::de::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_range_ends_after_every_key_under_it() {
        assert_eq!(prefix_end("/kv/a/"), b"/kv/a0".to_vec());
    }

    #[test]
    fn an_expired_lease_is_told_apart_from_an_outage() {
        // As a put naming an expired lease fails through the gateway.
        let expired = "http://127.0.0.1:2379/v3/kv/put: HTTP 404 Not Found: \
            {\"error\":\"etcdserver: requested lease not found\",\"code\":5}";
        assert!(lease_expired(expired));
        assert!(!lease_expired(
            "http://127.0.0.1:2379/v3/kv/put: Connection refused"
        ));
    }

    #[test]
    fn only_http_urls_are_taken() {
        assert!(check_endpoint("http://127.0.0.1:2379").is_ok());
        assert!(check_endpoint("127.0.0.1:2379").is_err());
        assert!(check_endpoint("https://etcd:2379").is_err());
        assert!(Etcd::new(&[], Duration::from_secs(1)).is_err());
    }

    #[test]
    fn the_gateway_json_decodes_with_zero_values_left_out() {
        let raw: RawKeyValue = serde_json::from_str(
            r#"{"key":"L2t2L2MvcHJpbWFyeQ==","create_revision":"2","mod_revision":"2","version":"1","value":"aGVsbG8=","lease":"2324035756298946055"}"#,
        )
        .expect("json");
        let kv = raw.decode().expect("decode");
        assert_eq!(kv.key, "/kv/c/primary");
        assert_eq!(kv.value, b"hello");
        assert_eq!((kv.create_revision, kv.lease), (2, 2324035756298946055));
        let bare: RawKeyValue = serde_json::from_str(r#"{"key":"YQ=="}"#).expect("json");
        assert_eq!(bare.decode().expect("decode").lease, 0);
    }

    #[test]
    fn a_compare_on_absence_is_a_create_revision_of_zero() {
        let json = compare_json(&Compare::Absent("/k".into()));
        assert_eq!(json["target"], "CREATE");
        assert_eq!(json["create_revision"], "0");
    }
}
