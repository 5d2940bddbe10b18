//! Authentication on the client port, in Redis's words so clients handle it: with a shared
//! secret (`--auth-file`), a connection must send `AUTH <secret>` (or `AUTH default
//! <secret>`, or `HELLO 2 AUTH default <secret>`) before any command but those and
//! `QUIT`. kv speaks RESP2 only: `HELLO 3` gets `-NOPROTO`.

use super::args::{arity, err};
use super::reply;
use crate::auth::Secret;
use bytes::BytesMut;

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

/// A connection's authentication state.
#[derive(Debug)]
pub struct ClientAuth {
    authenticated: bool,
}

impl ClientAuth {
    /// The state of a new connection: authenticated at once when there is no secret.
    pub fn new(secret: Option<&Secret>) -> Self {
        ClientAuth {
            authenticated: secret.is_none(),
        }
    }

    /// Whether the connection may send any command.
    pub fn authenticated(&self) -> bool {
        self.authenticated
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
            self.authenticated = true;
            return Ok(());
        }
        Err(WRONGPASS.into())
    }

    /// `HELLO [protover [AUTH user password] [SETNAME name]]`: kv's facts as a flat array
    /// (RESP2), after authenticating if asked; `SETNAME` is accepted and ignored here
    /// (the caller handles names through `CLIENT SETNAME`). Returns the name to set.
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
                Some(3) => return Err("NOPROTO unsupported protocol version".into()),
                _ => return Err(err("Protocol version is not an integer or out of range")),
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
                    name = Some(String::from_utf8_lossy(given).into_owned());
                }
                other => {
                    return Err(err(format!(
                        "Syntax error in HELLO option '{}'",
                        String::from_utf8_lossy(other).to_ascii_lowercase()
                    )))
                }
            }
        }
        if !self.authenticated {
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
