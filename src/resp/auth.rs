//! Authentication on the client port, in Redis's words so clients handle it: with a shared
//! secret (`--auth-file`), a connection must send `AUTH <secret>` (or `AUTH default
//! <secret>`, or `HELLO 2 AUTH default <secret>`) before any command but those and
//! `QUIT`. kv speaks RESP2 only: `HELLO 3` gets `-NOPROTO`. Failed attempts slow their
//! peer down ([`AuthThrottle`]).

use super::args::{arity, err};
use super::reply;
use crate::auth::Secret;
use crate::locks::lock;
use bytes::BytesMut;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The reply to a command sent before authenticating.
pub const NOAUTH: &str = "NOAUTH Authentication required.";

/// The reply to a wrong user or secret.
const WRONGPASS: &str = "WRONGPASS invalid username-password pair or user is disabled.";

/// The one user: Redis's default user.
const DEFAULT_USER: &[u8] = b"default";

/// Whether a connection must authenticate before sending `name`.
pub fn allowed_before_auth(name: &str) -> bool {
    matches!(name, "AUTH" | "HELLO" | "QUIT")
}

/// A connection's authentication state (shared with [`unauthenticated_deadline`]).
#[derive(Debug)]
pub struct ClientAuth {
    authenticated: Arc<AtomicBool>,
}

impl ClientAuth {
    /// The state of a new connection: authenticated at once when there is no secret.
    pub fn new(secret: Option<&Secret>) -> Self {
        ClientAuth {
            authenticated: Arc::new(AtomicBool::new(secret.is_none())),
        }
    }

    /// Whether the connection may send any command.
    pub fn authenticated(&self) -> bool {
        self.authenticated.load(Ordering::Relaxed)
    }

    /// The flag [`unauthenticated_deadline`] watches.
    pub fn flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.authenticated)
    }

    /// `AUTH [user] password`: `+OK` and authenticated, or Redis's error. A failed
    /// attempt leaves the connection as it was.
    pub fn auth(
        &mut self,
        secret: Option<&Secret>,
        args: &[Vec<u8>],
        out: &mut BytesMut,
    ) -> Result<(), String> {
        let (user, password) = match args {
            [password] => (DEFAULT_USER, password.as_slice()),
            [user, password] => (user.as_slice(), password.as_slice()),
            _ => return Err(arity("AUTH")),
        };
        self.check(secret, user, password, args.len() == 1)?;
        reply::simple(out, "OK");
        Ok(())
    }

    fn check(
        &mut self,
        secret: Option<&Secret>,
        user: &[u8],
        password: &[u8],
        bare: bool,
    ) -> Result<(), String> {
        let Some(secret) = secret else {
            return Err(match bare {
                true => err(
                    "AUTH <password> called without any password configured for the \
                             default user. Are you sure your configuration is correct?",
                ),
                false => WRONGPASS.into(),
            });
        };
        // Both compared in full, whichever differs.
        let user_ok = user == DEFAULT_USER;
        if secret.matches(password) && user_ok {
            self.authenticated.store(true, Ordering::Relaxed);
            return Ok(());
        }
        Err(WRONGPASS.into())
    }

    /// `HELLO [protover [AUTH user password] [SETNAME name]]`: kv's facts as a flat array
    /// (RESP2), after authenticating if asked. Returns the name `SETNAME` gave, for the
    /// caller to set.
    pub fn hello(
        &mut self,
        secret: Option<&Secret>,
        args: &[Vec<u8>],
        facts: &HelloFacts,
        out: &mut BytesMut,
    ) -> Result<Option<String>, String> {
        let mut rest = args.iter();
        if let Some(version) = rest.next() {
            match std::str::from_utf8(version)
                .ok()
                .and_then(|v| v.parse::<i64>().ok())
            {
                Some(2) => {}
                Some(_) => return Err("NOPROTO unsupported protocol version".into()),
                None => return Err(err("Protocol version is not an integer or out of range")),
            }
        }
        let mut name = None;
        while let Some(option) = rest.next() {
            match option.to_ascii_uppercase().as_slice() {
                b"AUTH" => {
                    let (Some(user), Some(password)) = (rest.next(), rest.next()) else {
                        return Err(err("Syntax error in HELLO option 'auth'"));
                    };
                    self.check(secret, user, password, false)?;
                }
                b"SETNAME" => {
                    let Some(given) = rest.next() else {
                        return Err(err("Syntax error in HELLO option 'setname'"));
                    };
                    let given = String::from_utf8_lossy(given).into_owned();
                    if given.contains(' ') {
                        return Err(err(
                            "Client names cannot contain spaces, newlines or special characters.",
                        ));
                    }
                    name = Some(given);
                }
                other => {
                    return Err(err(format!(
                        "Syntax error in HELLO option '{}'",
                        String::from_utf8_lossy(other).to_ascii_lowercase()
                    )))
                }
            }
        }
        if !self.authenticated() {
            return Err(
                "NOAUTH HELLO must be called with the client already authenticated, \
                        otherwise the HELLO <proto> AUTH <user> <pass> option can be used to \
                        authenticate the client and select the RESP protocol version at the \
                        same time"
                    .into(),
            );
        }
        facts.render(out);
        Ok(name)
    }
}

/// What `HELLO` tells a client.
pub struct HelloFacts<'a> {
    /// The Redis version kv answers as.
    pub version: &'a str,
    /// The connection's `CLIENT ID`.
    pub id: u64,
    /// `master` or `replica`.
    pub role: &'a str,
}

impl HelloFacts<'_> {
    fn render(&self, out: &mut BytesMut) {
        reply::array_header(out, 14);
        for (field, text) in [("server", "redis"), ("version", self.version)] {
            reply::bulk(out, Some(field.as_bytes()));
            reply::bulk(out, Some(text.as_bytes()));
        }
        reply::bulk(out, Some(b"proto"));
        reply::integer(out, 2);
        reply::bulk(out, Some(b"id"));
        reply::integer(out, i64::try_from(self.id).unwrap_or(i64::MAX));
        for (field, text) in [("mode", "standalone"), ("role", self.role)] {
            reply::bulk(out, Some(field.as_bytes()));
            reply::bulk(out, Some(text.as_bytes()));
        }
        reply::bulk(out, Some(b"modules"));
        reply::array_header(out, 0);
    }
}

/// Failed attempts are forgotten after this long without another.
const FORGET_AFTER: Duration = Duration::from_secs(60);

/// The spacing between a peer's attempts after its first failure; it doubles with each
/// failure...
const FIRST_DELAY: Duration = Duration::from_millis(100);

/// ...up to this.
const MAX_DELAY: Duration = Duration::from_secs(10);

/// The spacing between an address's attempts before any failed: enough that a burst of
/// parallel guesses queues (and mostly runs past [`MAX_WAIT`]) before the first
/// failure is recorded, little for a client opening a pool of connections.
const MIN_SPACING: Duration = Duration::from_millis(5);

/// The spacing between an address's attempts after `failures` failures.
fn spacing(failures: u32) -> Duration {
    match failures {
        0 => MIN_SPACING,
        n => FIRST_DELAY
            .saturating_mul(1 << (n - 1).min(16))
            .min(MAX_DELAY),
    }
}

/// Keeps the map within [`MAX_PEERS`]: addresses not seen for a while go first, then
/// those with the fewest failures.
fn make_room(peers: &mut HashMap<IpAddr, Strikes>) {
    if peers.len() < MAX_PEERS {
        return;
    }
    peers.retain(|_, strikes| strikes.last.elapsed() < FORGET_AFTER);
    if peers.len() >= MAX_PEERS {
        if let Some(least) = peers
            .iter()
            .min_by_key(|(_, s)| s.failures)
            .map(|(ip, _)| *ip)
        {
            peers.remove(&least);
        }
    }
}

/// An attempt that would have to wait longer than this is refused at once.
const MAX_WAIT: Duration = Duration::from_secs(10);

/// Peers remembered at most (beyond it, those not seen for a while are forgotten first).
const MAX_PEERS: usize = 10_000;

/// The reply to an attempt refused for its peer's failures.
pub const TOO_MANY: &str = "ERR too many failed AUTH attempts from this address; try again later";

/// Failed `AUTH` attempts per peer address: after a failure, that address's attempts are
/// spaced out (every connection of it queues for its turn), the spacing doubling with
/// each failure, so a brute-force client is slowed, and only it (the waits are on its own
/// connections; the node serves everyone else meanwhile).
#[derive(Default)]
pub struct AuthThrottle {
    peers: Mutex<HashMap<IpAddr, Strikes>>,
}

/// One address's recent failures and the time of its next turn.
#[derive(Clone, Copy)]
struct Strikes {
    failures: u32,
    last: Instant,
    next_turn: Instant,
}

impl AuthThrottle {
    /// Takes `peer`'s next turn: how long its attempt must wait, or `None` when that
    /// would be longer than [`MAX_WAIT`] (the attempt is then refused).
    pub fn reserve(&self, peer: IpAddr) -> Option<Duration> {
        let mut peers = lock(&self.peers);
        let now = Instant::now();
        let fresh = Strikes {
            failures: 0,
            last: now,
            next_turn: now,
        };
        make_room(&mut peers);
        let strikes = peers.entry(peer).or_insert(fresh);
        if now.duration_since(strikes.last) >= FORGET_AFTER {
            *strikes = fresh;
        }
        let turn = strikes.next_turn.max(now);
        let wait = turn.duration_since(now);
        if wait > MAX_WAIT {
            return None;
        }
        strikes.last = now;
        strikes.next_turn = turn + spacing(strikes.failures);
        Some(wait)
    }

    /// Records a failed attempt from `peer`.
    pub fn failed(&self, peer: IpAddr) {
        let mut peers = lock(&self.peers);
        make_room(&mut peers);
        let now = Instant::now();
        let strikes = peers.entry(peer).or_insert(Strikes {
            failures: 0,
            last: now,
            next_turn: now,
        });
        strikes.failures = strikes.failures.saturating_add(1);
        strikes.last = now;
        strikes.next_turn = strikes.next_turn.max(now + spacing(strikes.failures));
    }

    /// Forgets `peer`'s failures (it proved the secret).
    pub fn succeeded(&self, peer: IpAddr) {
        lock(&self.peers).remove(&peer);
    }
}

/// Ends when a connection that has not authenticated (`authenticated` still false) has
/// had [`AUTH_DEADLINE`] and a second more, whatever it is waiting on (a reply the
/// client does not read, its turn for `AUTH`); never, once it has authenticated. The
/// connection's reads end it at the deadline itself, with a reply saying why.
pub async fn unauthenticated_deadline(authenticated: Arc<AtomicBool>) {
    tokio::time::sleep(AUTH_DEADLINE + Duration::from_secs(1)).await;
    if authenticated.load(Ordering::Relaxed) {
        std::future::pending::<()>().await;
    }
}

/// How long a connection may take to authenticate...
pub const AUTH_DEADLINE: Duration = Duration::from_secs(10);

/// ...and how many bytes it may send before it has.
pub const UNAUTHENTICATED_BYTES: usize = 64 * 1024;

/// A connection's allowance until it authenticates: a deadline and a byte budget, so
/// that strangers cannot hold connections or make the node read much for nothing.
pub struct AuthGate {
    deadline: tokio::time::Instant,
    read: usize,
}

impl Default for AuthGate {
    fn default() -> Self {
        AuthGate {
            deadline: tokio::time::Instant::now() + AUTH_DEADLINE,
            read: 0,
        }
    }
}

impl AuthGate {
    /// Counts `n` bytes read.
    pub fn count(&mut self, n: usize) {
        self.read = self.read.saturating_add(n);
    }

    /// An error if the connection, having run every request it sent so far, still has
    /// not authenticated and has sent more than its budget.
    pub fn check(&self, authenticated: bool) -> Result<(), &'static str> {
        match authenticated || self.read <= UNAUTHENTICATED_BYTES {
            true => Ok(()),
            false => {
                Err("too much data before AUTH: authenticate first (the node requires a secret)")
            }
        }
    }

    /// `read`, within the deadline if the connection has not authenticated yet.
    pub async fn bounded<T>(
        &self,
        authenticated: bool,
        read: impl std::future::Future<Output = T>,
    ) -> Result<T, &'static str> {
        if authenticated {
            return Ok(read.await);
        }
        tokio::time::timeout_at(self.deadline, read)
            .await
            .map_err(|_| "authentication timed out: send AUTH first")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waits(throttle: &AuthThrottle, peer: IpAddr) -> Duration {
        throttle.reserve(peer).expect("a turn")
    }

    #[test]
    fn failures_space_out_a_peers_attempts_and_success_clears_them() {
        let throttle = AuthThrottle::default();
        let peer: IpAddr = "127.0.0.1".parse().expect("ip");
        let other: IpAddr = "127.0.0.2".parse().expect("ip");
        assert_eq!(waits(&throttle, peer), Duration::ZERO);
        // Attempts at once from one address take turns, a few ms apart, even before
        // any failed: a burst of guesses queues.
        let burst = waits(&throttle, peer);
        assert!(burst > Duration::ZERO && burst <= MIN_SPACING, "{burst:?}");
        throttle.failed(peer);
        let first = waits(&throttle, peer);
        assert!(
            first > Duration::ZERO && first <= FIRST_DELAY + MIN_SPACING,
            "{first:?}"
        );
        // Parallel attempts queue: the next one waits a further turn.
        let second = waits(&throttle, peer);
        assert!(second > first, "{second:?} after {first:?}");
        assert_eq!(
            waits(&throttle, other),
            Duration::ZERO,
            "only that peer waits"
        );
        (0..10).for_each(|_| throttle.failed(peer));
        // Turns of up to 10 s each: soon no turn within the longest wait.
        let refused = (0..5).any(|_| throttle.reserve(peer).is_none());
        assert!(refused, "a queue longer than {MAX_WAIT:?} is refused");
        throttle.succeeded(peer);
        assert_eq!(waits(&throttle, peer), Duration::ZERO);
    }
}
