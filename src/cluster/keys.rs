//! A cluster's keys in etcd, under `/kv/NAME/`: their names, and the [`View`] a member
//! reads back from them (docs/design.md, "Automatic failover with etcd", lists them).

use super::election::{Holder, PrimaryRecord, View};
use super::etcd::KeyValue;
use crate::error::{Error, Result};
use tracing::warn;

/// The key names of one cluster.
#[derive(Clone, Debug)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// The keys of cluster `name`.
    pub fn new(name: &str) -> Self {
        Keys {
            prefix: format!("/kv/{name}/"),
        }
    }

    /// The prefix every key of the cluster starts with.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The primary key, bound to its holder's lease.
    pub fn primary(&self) -> String {
        format!("{}primary", self.prefix)
    }

    /// The newest epoch that took office (permanent).
    pub fn epoch(&self) -> String {
        format!("{}epoch", self.prefix)
    }

    /// The target of a pending `FAILOVER`, bound to the target's lease.
    pub fn handoff(&self) -> String {
        format!("{}handoff", self.prefix)
    }

    /// A member's record, bound to its lease.
    pub fn member(&self, node_id: &str) -> String {
        format!("{}members/{node_id}", self.prefix)
    }

    /// The cluster's state from its keys. A primary key whose value does not parse
    /// counts as held by a node this member cannot follow (never as a vacancy, which
    /// would make the holder stand down); another unreadable value counts as absent. Both
    /// are logged.
    pub fn parse_view(&self, kvs: &[KeyValue]) -> View {
        let mut view = View::default();
        for kv in kvs {
            let Some(name) = kv.key.strip_prefix(&self.prefix) else {
                continue;
            };
            match name {
                "primary" => {
                    let record = serde_json::from_slice::<PrimaryRecord>(&kv.value)
                        .inspect_err(|e| warn!("cluster: unreadable {}: {e}", kv.key))
                        .unwrap_or_default();
                    view.holder = Some(Holder {
                        record,
                        epoch: kv.create_revision,
                        lease: kv.lease,
                    });
                }
                "epoch" => {
                    let text = String::from_utf8_lossy(&kv.value);
                    let epoch = text.trim().parse().unwrap_or_else(|_| {
                        warn!("cluster: unreadable {}: {text:?}", kv.key);
                        0
                    });
                    view.epoch = (epoch, kv.mod_revision);
                }
                "handoff" => view.handoff = Some(String::from_utf8_lossy(&kv.value).into_owned()),
                _ if name.starts_with("members/") => {
                    match serde_json::from_slice::<super::election::Member>(&kv.value) {
                        Ok(mut member) => {
                            member.revision = kv.mod_revision;
                            view.members.push(member);
                        }
                        Err(e) => warn!("cluster: ignoring an unreadable {}: {e}", kv.key),
                    }
                }
                _ => {}
            }
        }
        view
    }
}

/// `value` as the JSON kv stores in etcd.
pub fn to_json<T: serde::Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| Error::Invalid(format!("cannot encode: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::election::Member;

    fn kv(key: &str, value: &[u8], create_revision: u64, mod_revision: u64) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: value.to_vec(),
            create_revision,
            mod_revision,
            lease: 3,
        }
    }

    #[test]
    fn a_view_reads_every_key_of_its_cluster_only() {
        let keys = Keys::new("c");
        let member = Member {
            node_id: "n1".into(),
            repl_addr: "127.0.0.1:1".into(),
            ..Member::default()
        };
        let record = PrimaryRecord {
            node_id: "n1".into(),
            repl_addr: "127.0.0.1:1".into(),
            client_addr: None,
        };
        let view = keys.parse_view(&[
            kv("/kv/c/primary", &to_json(&record).expect("json"), 12, 12),
            kv("/kv/c/epoch", b"12", 5, 13),
            kv("/kv/c/handoff", b"n2", 14, 14),
            kv("/kv/c/members/n1", &to_json(&member).expect("json"), 2, 9),
            kv("/kv/c/members/bad", b"{", 2, 9),
            kv("/kv/other/primary", b"{}", 1, 1),
        ]);
        let holder = view.holder.expect("held");
        assert_eq!((holder.record, holder.epoch, holder.lease), (record, 12, 3));
        assert_eq!(view.epoch, (12, 13));
        assert_eq!(view.handoff.as_deref(), Some("n2"));
        assert_eq!(view.members.len(), 1, "the unreadable member is left out");
        assert_eq!(view.members[0].revision, 9);
    }

    #[test]
    fn an_unreadable_primary_key_still_counts_as_held() {
        let view = Keys::new("c").parse_view(&[kv("/kv/c/primary", b"?", 7, 7)]);
        let holder = view.holder.expect("held, not vacant");
        assert!(holder.record.repl_addr.is_empty());
        assert_eq!(holder.epoch, 7);
    }
}
