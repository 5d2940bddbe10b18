//! kv: a replicated, durable key-value store.
//!
//! A primary commits each write to a [`store::KvStore`] together with a numbered log
//! entry; replicas join it over TCP ([`protocol`], [`connection`]), receive a consistent
//! snapshot followed by the log ([`replication`]), and serve reads from their own store.
//! A [`node::Node`] composes a store, its replication state and (on a primary) the write
//! path; the [`shell`] and the Redis client port ([`resp`]) drive it, and in a cluster
//! the [`cluster`] agent chooses its role through etcd; [`server`] starts one, and
//! [`cli`] parses the command line and calls it. Lower layers never use higher ones:
//! `error` ← `auth` ← `net` ← `store` ← `protocol` ← `connection` ← `replication` ← `node` ←
//! `cluster`/`shell`/`resp` ← `server` ← `cli` (checked by `tests/layering.rs`).

#![warn(missing_docs)]

pub mod auth;
pub mod cli;
pub mod cluster;
pub mod connection;
pub mod error;
mod locks;
pub mod net;
pub mod node;
pub mod protocol;
pub mod replication;
pub mod resp;
pub mod server;
pub mod shell;
pub mod store;

pub use error::{Error, Result};
