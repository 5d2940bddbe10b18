//! Content digests: the documented encoding (SHA-256 over key-ordered rows, each as the
//! key's and the value's u64 big-endian byte lengths then their bytes), the same on both
//! backends, equal for equal contents whatever the history, and different otherwise.

use crate::helpers::{install, pairs, put};
use crate::Backend;
use kv::store::{KvStore, Pair, Role};
use sha2::{Digest, Sha256};

/// The digest of `rows` (already in key order), computed independently of kv.
fn expected(rows: &[Pair]) -> String {
    let mut hasher = Sha256::new();
    for (key, value) in rows {
        for part in [key, value] {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part);
        }
    }
    hex::encode(hasher.finalize())
}

pub fn digest_of_known_contents<B: Backend>(backend: &B) {
    let primary = backend.open(Role::Primary);
    let empty = primary.digest().expect("digest");
    assert_eq!((empty.seq, empty.hex.as_str()), (0, expected(&[]).as_str()));

    put(&primary, "é", "x y\n");
    put(&primary, "b", "");
    put(&primary, "a", "1");
    let rows = [("a", "1"), ("b", ""), ("é", "x y\n")];
    let digest = primary.digest().expect("digest");
    assert_eq!(digest.seq, 3);
    assert_eq!(digest.hex, expected(&pairs(&rows)));

    // A replica holding the same rows from another history at another seq: same hex.
    let replica = backend.open(Role::Replica);
    install(&replica, "other-history", 9, vec![pairs(&rows)]);
    let copy = replica.digest().expect("digest");
    assert_eq!((copy.seq, copy.hex.as_str()), (9, digest.hex.as_str()));

    // Any change to a value, or moving bytes between key and value, changes it.
    put(&primary, "a", "2");
    assert_ne!(primary.digest().expect("digest").hex, digest.hex);
    let shifted = backend.open(Role::Primary);
    put(&shifted, "a1", "");
    put(&shifted, "b", "");
    put(&shifted, "é", "x y\n");
    assert_ne!(shifted.digest().expect("digest").hex, digest.hex);

    // Bytes that are not UTF-8 are hashed as they are, in byte order.
    let binary = backend.open(Role::Primary);
    let rows: Vec<Pair> = vec![
        (vec![0x00], vec![0xff, 0xfe]),
        (b"a".to_vec(), vec![0xc3, 0x28]),
        (vec![0xff, 0x00], Vec::new()),
    ];
    for (key, value) in rows.iter().rev() {
        put(&binary, key, value);
    }
    assert_eq!(binary.digest().expect("digest").hex, expected(&rows));
}
