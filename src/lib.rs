//! kv: a replicated, durable key-value store.
//!
//! A primary commits each write to a [`store::KvStore`] together with a numbered log
//! entry; replicas join it over TCP ([`protocol`], [`connection`]), receive a consistent
//! snapshot followed by the log ([`replication`]), and serve reads from their own store.
//! [`primary`] and [`replica`] wire a store, the replication tasks and a [`shell`] into a
//! running node; [`cli`] is the command line that builds one.

#![warn(missing_docs)]

pub mod cli;
pub mod connection;
pub mod error;
mod locks;
pub mod node;
pub mod primary;
pub mod protocol;
pub mod replica;
pub mod replication;
pub mod resp;
pub mod shell;
pub mod store;

pub use error::{Error, Result};
