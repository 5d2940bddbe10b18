//! The memory backend's key space: the ordered map of rows, and an index of the keys that
//! expire, by time, so the sweep finds what expired without reading every key (as the
//! SQLite backend's partial index on `expires_at` does).

use crate::store::{prefix_upper_bound, Bytes, Record, Stored};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

/// Every row, and the keys with an expiry ordered by it.
#[derive(Default)]
pub(super) struct KeySpace {
    rows: BTreeMap<Bytes, Stored>,
    expiring: BTreeSet<(u64, Bytes)>,
}

impl KeySpace {
    /// The key space of `records`.
    pub(super) fn from_records(records: impl IntoIterator<Item = Record>) -> KeySpace {
        let mut space = KeySpace::default();
        for record in records {
            let stored = Stored {
                value: record.value,
                expires_at: record.expires_at,
            };
            space.insert(record.key, stored);
        }
        space
    }

    /// Sets `key`'s row, replacing its value and expiry.
    pub(super) fn insert(&mut self, key: Bytes, stored: Stored) {
        let at = stored.expires_at;
        if let Some(old) = self.rows.insert(key.clone(), stored) {
            if let Some(old_at) = old.expires_at {
                self.expiring.remove(&(old_at, key.clone()));
            }
        }
        if let Some(at) = at {
            self.expiring.insert((at, key));
        }
    }

    /// Removes `key`'s row, if any.
    pub(super) fn remove(&mut self, key: &[u8]) {
        if let Some(old) = self.rows.remove(key) {
            if let Some(at) = old.expires_at {
                self.expiring.remove(&(at, key.to_vec()));
            }
        }
    }

    /// The row of `key`, expired or not.
    pub(super) fn get(&self, key: &[u8]) -> Option<&Stored> {
        self.rows.get(key)
    }

    /// Whether `key` has a row, expired or not.
    pub(super) fn contains(&self, key: &[u8]) -> bool {
        self.rows.contains_key(key)
    }

    /// How many rows, expired or not.
    pub(super) fn len(&self) -> usize {
        self.rows.len()
    }

    /// Every row, in key order.
    pub(super) fn records(&self) -> impl Iterator<Item = Record> + '_ {
        self.rows.iter().map(|(key, stored)| Record {
            key: key.clone(),
            value: stored.value.clone(),
            expires_at: stored.expires_at,
        })
    }

    /// Up to `limit` keys whose expiry is at or before `now`, oldest first.
    pub(super) fn expired(&self, now: u64, limit: usize) -> Vec<Bytes> {
        self.expiring
            .iter()
            .take_while(|(at, _)| *at <= now)
            .take(limit)
            .map(|(_, key)| key.clone())
            .collect()
    }

    /// How many keys expire after `now`.
    pub(super) fn expiring_after(&self, now: u64) -> usize {
        let after = (now.saturating_add(1), Bytes::new());
        self.expiring.range(after..).count()
    }

    /// The rows of the keys starting with `prefix` after `after` (if given), in order.
    pub(super) fn range<'a>(
        &'a self,
        prefix: &[u8],
        after: Option<&[u8]>,
    ) -> impl Iterator<Item = (&'a Bytes, &'a Stored)> + 'a {
        let upper = prefix_upper_bound(prefix);
        let lower = match (after, &upper) {
            // An `after` at or past the end of the prefix's range selects nothing; an empty
            // `[upper, upper)` range, because `BTreeMap::range` panics when start > end.
            (Some(after), Some(upper)) if after >= upper.as_slice() => {
                Bound::Included(upper.clone())
            }
            (Some(after), _) if after >= prefix => Bound::Excluded(after.to_vec()),
            _ => Bound::Included(prefix.to_vec()),
        };
        let upper = upper.map_or(Bound::Unbounded, Bound::Excluded);
        self.rows.range((lower, upper))
    }
}
