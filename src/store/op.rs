//! One change to the key space ([`Op`]), and the sizes every stored key and value keeps
//! within, so that any of them fits the replication protocol's frames.

use super::Bytes;
use crate::error::Result;
use serde::{Deserialize, Serialize};

/// One change to the key space.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// Set `key` to `value`, creating or overwriting it.
    Put {
        /// The key written.
        key: Bytes,
        /// Its new value.
        value: Bytes,
        /// When it expires, in milliseconds since the Unix epoch (`None`: never). A put
        /// replaces the key's expiry with this one.
        expires_at: Option<u64>,
    },
    /// Remove `key`.
    Delete {
        /// The key removed.
        key: Bytes,
    },
}

/// The longest key kv stores, in bytes.
pub const MAX_KEY_BYTES: usize = 64 * 1024;

/// The longest value kv stores, in bytes. Every frame of the replication protocol
/// is sized to carry the largest key with the largest value, on the live stream and in a
/// snapshot chunk (see [`crate::protocol::MAX_FRAME`]).
pub const MAX_VALUE_BYTES: usize = 8 * 1024 * 1024;

impl Op {
    /// A put of `value` that never expires.
    pub fn put(key: impl Into<Bytes>, value: impl Into<Bytes>) -> Op {
        Op::Put {
            key: key.into(),
            value: value.into(),
            expires_at: None,
        }
    }

    /// The key this operation changes.
    pub fn key(&self) -> &[u8] {
        match self {
            Op::Put { key, .. } | Op::Delete { key } => key,
        }
    }

    /// Bytes of key and value this operation carries.
    pub fn size(&self) -> usize {
        match self {
            Op::Put { key, value, .. } => key.len() + value.len(),
            Op::Delete { key } => key.len(),
        }
    }

    /// Checks the key and value against [`MAX_KEY_BYTES`] and [`MAX_VALUE_BYTES`]: a write
    /// beyond them is refused before anything is stored, so every stored pair fits the
    /// replication protocol's frames.
    pub fn check_size(&self) -> Result<()> {
        check_key_size(self.key())?;
        match self {
            Op::Put { value, .. } => check_value_size(value.len()),
            Op::Delete { .. } => Ok(()),
        }
    }
}

/// Refuses a key longer than [`MAX_KEY_BYTES`].
pub fn check_key_size(key: &[u8]) -> Result<()> {
    if key.len() > MAX_KEY_BYTES {
        return Err(crate::error::Error::Invalid(format!(
            "key too large: {} bytes; kv stores keys of up to {MAX_KEY_BYTES} bytes (64 KiB)",
            key.len()
        )));
    }
    Ok(())
}

/// Refuses a value of `len` bytes when it is longer than [`MAX_VALUE_BYTES`].
pub fn check_value_size(len: usize) -> Result<()> {
    if len > MAX_VALUE_BYTES {
        return Err(crate::error::Error::Invalid(format!(
            "value too large: {len} bytes; kv stores values of up to {MAX_VALUE_BYTES} bytes (8 MiB)"
        )));
    }
    Ok(())
}
