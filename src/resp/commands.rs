//! The read commands: `GET`, `MGET`, `EXISTS`, `DBSIZE`, and `KEYS`, which streams its
//! reply (it counts the matching keys, then sends them page by page, both passes in one
//! read transaction), so a large key space never sits in memory. Point reads of a few
//! keys (`GET`, a short `MGET` or `EXISTS`) run inline on the connection's task: on a warm
//! page cache such a read costs a few microseconds, less than the hop to the blocking
//! pool and back (bench/resp.sh measures it against Redis). Longer reads go to the store
//! off the async runtime.

use super::args::{arity, err, store_error, Reply};
use super::glob;
use super::output::Output;
use super::reply;
use crate::error::Result;
use crate::node::Node;
use crate::store::{Bytes, KvStore};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Keys read from the store per page when listing keys (at most 6.4 MiB of the largest).
const KEYS_PAGE: usize = 100;

/// Bytes of values `MGET` (or a batch of `GET`s) reads from the store before it sends
/// them on.
pub const VALUES_AT_ONCE: usize = 1024 * 1024;

/// Reads of at most this many keys run inline (see the module's doc).
const INLINE_KEYS: usize = 16;

/// Runs `f`, a point read of `keys` keys, inline if they are few, otherwise off the
/// runtime; a failure becomes an error reply.
pub async fn point_read<T, F>(node: &Node, keys: usize, f: F) -> Result<T, String>
where
    T: Send + 'static,
    F: FnOnce(&dyn KvStore) -> Result<T> + Send + 'static,
{
    match keys <= INLINE_KEYS {
        true => f(node.store().as_ref()).map_err(store_error),
        false => blocking(node, f).await,
    }
}

/// Runs `f` on the store off the runtime, turning a failure into an error reply.
pub async fn blocking<T, F>(node: &Node, f: F) -> Result<T, String>
where
    T: Send + 'static,
    F: FnOnce(&dyn KvStore) -> Result<T> + Send + 'static,
{
    node.blocking(f).await.map_err(store_error)
}

/// GET (one key: a bulk reply) or MGET (an array of them). Values are read about 1 MiB
/// at a time and sent on before the next are read, so an `MGET` of many large values
/// never holds them all. An `Err` means the connection failed.
pub async fn get(
    node: &Node,
    args: &[Vec<u8>],
    multi: bool,
    out: &mut Output,
) -> std::io::Result<Reply> {
    let keys = Arc::new(args.to_vec());
    let mut next = 0;
    while next < keys.len() {
        let values = match (values_from(node, &keys, next).await, next) {
            (Ok(values), _) => values,
            (Err(message), 0) => return Ok(Err(message)),
            // Part of the array is out: the reply cannot turn into an error any more.
            (Err(message), _) => return Err(std::io::Error::other(message)),
        };
        if multi && next == 0 {
            reply::array_header(out.buffer(), keys.len());
        }
        next += send_values(values, out).await?;
    }
    Ok(Ok(()))
}

/// The values of `keys[next..]`, in order, until they add up to [`VALUES_AT_ONCE`] (at
/// least one): one read transaction, inline when the keys are few.
pub async fn values_from(
    node: &Node,
    keys: &Arc<Vec<Bytes>>,
    next: usize,
) -> Result<Vec<Option<Bytes>>, String> {
    let batch = Arc::clone(keys);
    point_read(node, keys.len() - next, move |store| {
        let keys: Vec<&[u8]> = batch[next..].iter().map(Vec::as_slice).collect();
        store.get_many(&keys, VALUES_AT_ONCE)
    })
    .await
}

/// Appends a bulk reply for each of `values` and sends the replies due if enough are;
/// returns how many values there were.
pub async fn send_values(values: Vec<Option<Bytes>>, out: &mut Output) -> std::io::Result<usize> {
    for value in &values {
        reply::bulk(out.buffer(), value.as_deref());
    }
    out.flush_if_full().await?;
    Ok(values.len())
}

/// `EXISTS key...`: how many of the keys exist (a key named twice counts twice).
pub async fn exists(node: &Node, args: &[Vec<u8>], out: &mut Output) -> Reply {
    let keys = args.to_vec();
    let found = point_read(node, keys.len(), move |store| {
        let mut found = 0;
        for key in &keys {
            found += i64::from(store.get(key)?.is_some());
        }
        Ok(found)
    })
    .await?;
    reply::integer(out.buffer(), found);
    Ok(())
}

/// `DBSIZE`.
pub async fn dbsize(node: &Node, out: &mut Output) -> Reply {
    let count = blocking(node, |store| store.count(b"")).await?;
    reply::integer(out.buffer(), i64::try_from(count).unwrap_or(i64::MAX));
    Ok(())
}

/// `RANDOMKEY`: a key picked at random, or nil when there is none. Off the runtime: it
/// counts the keys, then reads the one at a random position.
pub async fn random_key(node: &Node, out: &mut Output) -> Reply {
    let key = blocking(node, |store| {
        let count = store.count(b"")?;
        if count == 0 {
            return Ok(None);
        }
        match store.nth_key(rand::random_range(0..count))? {
            Some(key) => Ok(Some(key)),
            // Keys deleted between the count and the read: the first will do.
            None => store.nth_key(0),
        }
    })
    .await?;
    reply::bulk(out.buffer(), key.as_deref());
    Ok(())
}

/// What the blocking side of `KEYS` hands the connection.
enum KeysPart {
    /// How many keys match (the reply's length).
    Count(usize),
    /// The next matching keys, in order.
    Keys(Vec<Bytes>),
}

/// `KEYS pattern`, streamed: the reply's length first, then the keys as they are read.
/// An `Err` is the connection failing (the client went away, or the store failed after
/// the length was sent): the connection then closes.
pub async fn keys(node: &Node, pattern: &[u8], out: &mut Output) -> std::io::Result<Reply> {
    let pattern = pattern.to_vec();
    let matcher = match glob::Pattern::new(&pattern) {
        Ok(matcher) => matcher,
        Err(message) => return Ok(Err(message)),
    };
    let (parts, mut incoming) = mpsc::channel(2);
    let store = Arc::clone(node.store());
    let lister = tokio::task::spawn_blocking(move || {
        let prefix = glob::literal_prefix(&pattern);
        if let Err(e) = list_keys(store.as_ref(), prefix, &matcher, &parts) {
            let _ = parts.blocking_send(Err(e));
        }
    });
    let mut promised = None;
    while let Some(part) = incoming.recv().await {
        match (part, promised) {
            (Ok(KeysPart::Count(count)), None) => {
                reply::array_header(out.buffer(), count);
                promised = Some(count);
            }
            (Ok(KeysPart::Keys(keys)), Some(_)) => {
                for key in keys {
                    reply::bulk(out.buffer(), Some(&key));
                    out.flush_if_full().await?;
                }
            }
            (Err(e), None) => return Ok(Err(store_error(e))),
            (part, _) => {
                let why = match part {
                    Err(e) => e.to_string(),
                    Ok(_) => "KEYS lost its place".into(),
                };
                return Err(std::io::Error::other(why));
            }
        }
    }
    lister.await.map_err(std::io::Error::other)?;
    Ok(Ok(()))
}

/// The blocking side of `KEYS`: counts the keys matching `matcher` under `prefix`, then
/// sends them in pages, from one consistent cursor. Stops early if the connection is gone.
fn list_keys(
    store: &dyn KvStore,
    prefix: &[u8],
    matcher: &glob::Pattern,
    parts: &mpsc::Sender<Result<KeysPart>>,
) -> Result<()> {
    let mut cursor = store.key_cursor(prefix)?;
    let mut count = 0;
    loop {
        let page = cursor.next_page(KEYS_PAGE)?;
        if page.is_empty() {
            break;
        }
        count += page.iter().filter(|k| matcher.matches(k)).count();
    }
    if parts.blocking_send(Ok(KeysPart::Count(count))).is_err() {
        return Ok(());
    }
    cursor.rewind();
    loop {
        let page = cursor.next_page(KEYS_PAGE)?;
        if page.is_empty() {
            return Ok(());
        }
        let matching: Vec<Bytes> = page.into_iter().filter(|k| matcher.matches(k)).collect();
        if !matching.is_empty() && parts.blocking_send(Ok(KeysPart::Keys(matching))).is_err() {
            return Ok(());
        }
    }
}

/// The reply to a command kv does not have, in Redis's words.
pub fn unknown(name: &str, args: &[Vec<u8>]) -> String {
    let shown: Vec<String> = args
        .iter()
        .take(8)
        .map(|a| format!("'{}'", String::from_utf8_lossy(a)))
        .collect();
    err(format!(
        "unknown command '{}', with args beginning with: {}",
        name.to_ascii_lowercase(),
        shown.join(" ")
    ))
}

/// `CONFIG GET pattern ...`: the parameters kv has, under Redis's names, matched by
/// glob. kv has no RDB snapshots or append-only file (every write is committed to
/// SQLite), so `save` is empty and `appendonly` is `no`, which is what tools such as
/// redis-benchmark ask about.
pub fn config_get(node: &Node, port: u16, patterns: &[Vec<u8>], out: &mut Output) -> Reply {
    let durability = node.durability();
    let parameters = [
        ("appendonly", "no".to_string()),
        ("databases", "1".to_string()),
        ("maxclients", super::MAX_CLIENTS.to_string()),
        ("maxmemory", "0".to_string()),
        ("maxmemory-policy", "noeviction".to_string()),
        (
            "min-replicas-max-lag",
            durability.min_replicas_max_lag.as_secs().to_string(),
        ),
        (
            "min-replicas-to-write",
            durability.min_replicas_to_write.to_string(),
        ),
        ("port", port.to_string()),
        ("save", String::new()),
    ];
    let patterns = patterns
        .iter()
        .map(|p| glob::Pattern::new(&p.to_ascii_lowercase()))
        .collect::<Result<Vec<_>, _>>()?;
    let found: Vec<_> = parameters
        .iter()
        .filter(|(name, _)| patterns.iter().any(|p| p.matches(name.as_bytes())))
        .collect();
    let out = out.buffer();
    reply::array_header(out, found.len() * 2);
    for (name, value) in found {
        reply::bulk(out, Some(name.as_bytes()));
        reply::bulk(out, Some(value.as_bytes()));
    }
    Ok(())
}

/// `CONFIG SET name value [name value …]`: `min-replicas-to-write` and
/// `min-replicas-max-lag` change at once, for the writes that follow (until the node
/// restarts: its command line is the configuration); kv's other parameters are its
/// command-line options, set at start. All or nothing, as in Redis.
pub fn config_set(node: &Node, args: &[Vec<u8>], out: &mut Output) -> Reply {
    if args.is_empty() || !args.len().is_multiple_of(2) {
        return Err(arity("config|set"));
    }
    let mut durability = node.durability();
    for pair in args.chunks(2) {
        let name = String::from_utf8_lossy(&pair[0]).to_ascii_lowercase();
        let number = || config_number(&name, &pair[1]);
        match name.as_str() {
            "min-replicas-to-write" => durability.min_replicas_to_write = number()? as usize,
            "min-replicas-max-lag" => {
                durability.min_replicas_max_lag = Duration::from_secs(number()?)
            }
            "appendonly" | "databases" | "maxclients" | "maxmemory" | "maxmemory-policy"
            | "port" | "save" => {
                return Err(err(format!(
                    "kv does not change '{name}' at run time: restart the node with its \
                     command-line option (kv primary --help)"
                )))
            }
            _ => {
                return Err(err(format!(
                    "Unknown option or number of arguments for CONFIG SET - '{name}'"
                )))
            }
        }
    }
    node.set_durability(durability);
    reply::simple(out.buffer(), "OK");
    Ok(())
}

/// A `CONFIG SET` number, from 0 to 2147483647 as Redis's, with Redis's words.
fn config_number(name: &str, value: &[u8]) -> Result<u64, String> {
    let failed = |why: &str| {
        err(format!(
            "CONFIG SET failed (possibly related to argument '{name}') - {why}"
        ))
    };
    let number: i64 = std::str::from_utf8(value)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| failed("argument couldn't be parsed into an integer"))?;
    u64::try_from(number)
        .ok()
        .filter(|&n| n <= i32::MAX as u64)
        .ok_or_else(|| failed("argument must be between 0 and 2147483647 inclusive"))
}

/// `COMMAND`, `COMMAND DOCS`, `COMMAND COUNT`: enough for redis-cli, which asks at start.
pub fn command(args: &[Vec<u8>], out: &mut Output) {
    match args.first().map(|a| a.to_ascii_uppercase()) {
        Some(sub) if sub == b"COUNT" => reply::integer(out.buffer(), 0),
        _ => reply::array_header(out.buffer(), 0),
    }
}
