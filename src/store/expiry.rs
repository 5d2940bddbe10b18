//! Expiry as the store keeps it: a key may carry an absolute time (milliseconds since the
//! Unix epoch) after which it no longer exists. The primary decides it and logs it with the
//! put, so every node hides the key at the same moment, compares against the same number,
//! and the primary's sweep later deletes the row and logs the delete.

use super::Bytes;
use serde::{Deserialize, Serialize, Serializer};
use serde_bytes::ByteBuf;
use std::time::{SystemTime, UNIX_EPOCH};

/// The wall clock, in milliseconds since the Unix epoch (0 before it).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
        })
}

/// Whether a key expiring at `expires_at` still exists at `now`: it is gone from its
/// expiry on.
pub fn is_live(expires_at: Option<u64>, now: u64) -> bool {
    expires_at.is_none_or(|at| at > now)
}

/// A key's row as stored: its value and its expiry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    /// The value.
    pub value: Bytes,
    /// When the key expires, in ms since the Unix epoch (`None`: never).
    pub expires_at: Option<u64>,
}

impl Stored {
    /// Whether the key still exists at `now`.
    pub fn is_live(&self, now: u64) -> bool {
        is_live(self.expires_at, now)
    }
}

/// One row of the key space with its expiry, as a snapshot reads it and ships it: on the
/// wire a three-element array `[key, value, expires_at]` (key and value as MessagePack
/// binary), no field names per row.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(from = "(ByteBuf, ByteBuf, Option<u64>)")]
pub struct Record {
    /// The key.
    pub key: Bytes,
    /// Its value.
    pub value: Bytes,
    /// When it expires (`None`: never).
    pub expires_at: Option<u64>,
}

impl Record {
    /// A row that never expires.
    pub fn new(key: impl Into<Bytes>, value: impl Into<Bytes>) -> Record {
        Record {
            key: key.into(),
            value: value.into(),
            expires_at: None,
        }
    }

    /// Bytes of key and value.
    pub fn size(&self) -> usize {
        self.key.len() + self.value.len()
    }
}

impl From<(Bytes, Bytes)> for Record {
    fn from((key, value): (Bytes, Bytes)) -> Self {
        Record::new(key, value)
    }
}

impl From<(ByteBuf, ByteBuf, Option<u64>)> for Record {
    fn from((key, value, expires_at): (ByteBuf, ByteBuf, Option<u64>)) -> Self {
        Record {
            key: key.into_vec(),
            value: value.into_vec(),
            expires_at,
        }
    }
}

impl Serialize for Record {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let (key, value) = (
            serde_bytes::Bytes::new(&self.key),
            serde_bytes::Bytes::new(&self.value),
        );
        (key, value, &self.expires_at).serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_gone_from_its_expiry_on() {
        assert!(is_live(None, u64::MAX));
        assert!(is_live(Some(10), 9));
        assert!(!is_live(Some(10), 10));
        assert!(!is_live(Some(10), 11));
    }

    #[test]
    fn a_record_travels_as_a_three_element_array() {
        let record = Record {
            key: "k".into(),
            value: "v".into(),
            expires_at: Some(7),
        };
        let bytes = rmp_serde::to_vec_named(&record).expect("encodes");
        let back: Record = rmp_serde::from_slice(&bytes).expect("decodes");
        assert_eq!(back, record);
        let plain: (ByteBuf, ByteBuf, Option<u64>) = rmp_serde::from_slice(&bytes).expect("tuple");
        assert_eq!(plain.2, Some(7));
        let binary = Record::new(vec![0xff, 0], vec![0xfe]);
        let bytes = rmp_serde::to_vec_named(&binary).expect("encodes");
        assert_eq!(
            rmp_serde::from_slice::<Record>(&bytes).expect("decodes"),
            binary
        );
    }
}
