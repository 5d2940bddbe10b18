//! The content digest of a store: SHA-256 over its key-ordered rows, the same on both
//! backends, so two nodes can compare their whole contents with one line (`DIGEST`).

use super::Record;

/// Pairs hashed per snapshot chunk by [`KvStore::digest`](super::KvStore::digest).
pub const DIGEST_CHUNK: usize = 10_000;

/// The result of [`KvStore::digest`](super::KvStore::digest).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContentDigest {
    /// The seq the contents were read at.
    pub seq: u64,
    /// SHA-256 of the key-ordered rows, as 64 hex digits.
    pub hex: String,
}

/// SHA-256 over key-ordered rows, each fed as the key's and the value's byte lengths (u64
/// big-endian) followed by their bytes, then its expiry if it has one, so no two different
/// contents hash the same input.
#[derive(Default)]
pub struct ContentHasher(sha2::Sha256);

impl ContentHasher {
    /// Adds one row without an expiry; rows must come in key order.
    pub fn add(&mut self, key: &[u8], value: &[u8]) {
        use sha2::Digest;
        for part in [key, value] {
            self.0.update((part.len() as u64).to_be_bytes());
            self.0.update(part);
        }
    }

    /// Adds one row with its expiry, if it has one; rows must come in key order.
    pub fn add_record(&mut self, record: &Record) {
        use sha2::Digest;
        self.add(&record.key, &record.value);
        // A length no key can have marks an expiry, and only a row with one adds bytes:
        // contents without expiries hash as they did before expiry existed.
        if let Some(at) = record.expires_at {
            self.0.update(u64::MAX.to_be_bytes());
            self.0.update(at.to_be_bytes());
        }
    }

    /// The digest as 64 hex digits.
    pub fn finish(self) -> String {
        use sha2::Digest;
        hex::encode(self.0.finalize())
    }
}
