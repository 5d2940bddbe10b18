//! The read commands on one string: `STRLEN`, `GETRANGE` (and its old name `SUBSTR`),
//! `TYPE`: point reads of one key, run inline like `GET`.

use super::args::{integer, Reply};
use super::commands::point_read;
use super::output::Output;
use super::reply;
use crate::node::Node;
use crate::store::Bytes;

/// The value of `key`, read inline.
async fn value(node: &Node, key: &[u8]) -> Result<Option<Bytes>, String> {
    let key = key.to_vec();
    point_read(node, 1, move |store| store.get(&key)).await
}

/// `STRLEN key`: its length in bytes, 0 if absent.
pub async fn strlen(node: &Node, key: &[u8], out: &mut Output) -> Reply {
    let length = value(node, key).await?.map_or(0, |value| value.len());
    reply::integer(out.buffer(), i64::try_from(length).unwrap_or(i64::MAX));
    Ok(())
}

/// `TYPE key`: `string`, or `none` if absent (every value is a string).
pub async fn type_of(node: &Node, key: &[u8], out: &mut Output) -> Reply {
    let kind = match value(node, key).await? {
        Some(_) => "string",
        None => "none",
    };
    reply::simple(out.buffer(), kind);
    Ok(())
}

/// `GETRANGE key start end`: the bytes from `start` to `end`, both included; negative
/// offsets count from the end, as in Redis.
pub async fn getrange(node: &Node, args: &[Vec<u8>], out: &mut Output) -> Reply {
    let (start, end) = (integer(&args[1])?, integer(&args[2])?);
    let value = value(node, &args[0]).await?.unwrap_or_default();
    let range = byte_range(value.len(), start, end);
    reply::bulk(out.buffer(), Some(&value[range]));
    Ok(())
}

/// The bytes `GETRANGE` answers of a value `len` bytes long.
fn byte_range(len: usize, start: i64, end: i64) -> std::ops::Range<usize> {
    let len = i64::try_from(len).unwrap_or(i64::MAX);
    if start < 0 && end < 0 && start > end {
        return 0..0;
    }
    let from_end = |offset: i64| {
        if offset < 0 {
            (len + offset).max(0)
        } else {
            offset
        }
    };
    let (start, end) = (from_end(start), from_end(end).min(len - 1));
    if len == 0 || start > end {
        return 0..0;
    }
    let at = |n: i64| usize::try_from(n).unwrap_or(0);
    at(start)..at(end) + 1
}

#[cfg(test)]
mod tests {
    use super::byte_range;

    #[test]
    fn ranges_as_redis_cuts_them() {
        // "This is a string", as in Redis's documentation.
        let len = 16;
        assert_eq!(byte_range(len, 0, 3), 0..4);
        assert_eq!(byte_range(len, -3, -1), 13..16);
        assert_eq!(byte_range(len, 0, -1), 0..16);
        assert_eq!(byte_range(len, 10, 100), 10..16);
        assert_eq!(byte_range(len, 5, 2), 0..0);
        assert_eq!(byte_range(len, -1, -5), 0..0);
        assert_eq!(byte_range(len, 20, 30), 0..0);
        assert_eq!(byte_range(0, 0, -1), 0..0);
    }
}
