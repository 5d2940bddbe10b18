//! Parsing one shell line into a [`Command`]: pure code, no I/O. Command words are
//! case-insensitive; a key is one word; a value is the rest of the line after the key
//! and one separating space, kept verbatim (inner and trailing spaces included).

/// Longest line the shell accepts, in bytes.
pub const MAX_LINE: usize = 64 * 1024;

/// A parsed shell command.
#[derive(Debug, PartialEq, Eq)]
pub enum Command<'a> {
    /// `PUT <key> <value>`
    Put {
        /// The key.
        key: &'a str,
        /// The value: the rest of the line.
        value: &'a str,
    },
    /// `GET <key>`
    Get {
        /// The key.
        key: &'a str,
    },
    /// `DEL <key>`
    Del {
        /// The key.
        key: &'a str,
    },
    /// `INCR <key> [by]`
    Incr {
        /// The key.
        key: &'a str,
        /// What to add (1 unless given; negative subtracts).
        by: i64,
    },
    /// `EXPIRE <key> <seconds>`: the key goes after that many seconds (0 or less: now).
    Expire {
        /// The key.
        key: &'a str,
        /// Seconds from now.
        seconds: i64,
    },
    /// `TTL <key>`
    Ttl {
        /// The key.
        key: &'a str,
    },
    /// `FLUSH [YES]`: delete every key (`YES`: without asking).
    Flush {
        /// Whether the operator already confirmed it.
        confirmed: bool,
    },
    /// `KEYS [prefix]`
    Keys {
        /// Only keys starting with this.
        prefix: &'a str,
    },
    /// `STATUS`
    Status,
    /// `HELP`
    Help,
    /// `DIGEST`
    Digest,
    /// `JOIN <host:port>`
    Join {
        /// The upstream address.
        addr: &'a str,
    },
    /// `PROMOTE`
    Promote,
    /// `FAILOVER [host:port]`
    Failover {
        /// The replica to hand over to (its replication address), or the most caught up.
        target: Option<&'a str>,
    },
    /// `EXIT`
    Exit,
}

/// Checks a raw input line (without its newline) and returns it as text, or the `ERR`
/// message explaining what is wrong with it.
pub fn check_line(raw: &[u8]) -> Result<&str, String> {
    if raw.len() > MAX_LINE {
        return Err(format!(
            "line too long ({} bytes; the limit is {MAX_LINE})",
            raw.len()
        ));
    }
    let line = std::str::from_utf8(raw)
        .map_err(|_| "input is not valid UTF-8; keys and values must be UTF-8 text".to_string())?;
    let line = line.strip_suffix('\r').unwrap_or(line);
    if let Some(c) = line.chars().find(|&c| c.is_control() && c != '\t') {
        return Err(format!(
            "control character U+{:04X} in input; only printable text is accepted",
            c as u32
        ));
    }
    Ok(line)
}

fn split_word(text: &str) -> (&str, Option<&str>) {
    match text.find(char::is_whitespace) {
        Some(at) => {
            let sep_len = text[at..].chars().next().map_or(1, char::len_utf8);
            (&text[..at], Some(&text[at + sep_len..]))
        }
        None => (text, None),
    }
}

/// One word argument and nothing else, or the usage error.
fn one_word<'a>(rest: Option<&'a str>, usage: &str) -> Result<&'a str, String> {
    let rest = rest.map(str::trim).unwrap_or("");
    if rest.is_empty() || rest.contains(char::is_whitespace) {
        return Err(format!("usage: {usage}"));
    }
    Ok(rest)
}

fn no_args(rest: Option<&str>, word: &str) -> Result<(), String> {
    match rest.map(str::trim) {
        None | Some("") => Ok(()),
        Some(_) => Err(format!("usage: {word} (it takes no arguments)")),
    }
}

/// Parses a checked line; `Ok(None)` for a blank line.
pub fn parse(line: &str) -> Result<Option<Command<'_>>, String> {
    let line = line.trim_start();
    if line.trim().is_empty() {
        return Ok(None);
    }
    let (word, rest) = split_word(line);
    let command = match word.to_ascii_uppercase().as_str() {
        "PUT" => {
            let usage = || "usage: PUT <key> <value>".to_string();
            let (key, value) = split_word(rest.map(str::trim_start).unwrap_or(""));
            match value {
                Some(value) if !key.is_empty() => Command::Put { key, value },
                _ => return Err(usage()),
            }
        }
        "GET" => Command::Get {
            key: one_word(rest, "GET <key>")?,
        },
        "DEL" => Command::Del {
            key: one_word(rest, "DEL <key>")?,
        },
        "INCR" => {
            let usage = || "usage: INCR <key> [by] (by: a whole number)".to_string();
            let words: Vec<&str> = rest.unwrap_or("").split_whitespace().collect();
            match words.as_slice() {
                [key] => Command::Incr { key, by: 1 },
                [key, by] => Command::Incr {
                    key,
                    by: by.parse().map_err(|_| usage())?,
                },
                _ => return Err(usage()),
            }
        }
        "EXPIRE" => {
            let usage = || "usage: EXPIRE <key> <seconds> (a whole number)".to_string();
            let words: Vec<&str> = rest.unwrap_or("").split_whitespace().collect();
            match words.as_slice() {
                [key, seconds] => Command::Expire {
                    key,
                    seconds: seconds.parse().map_err(|_| usage())?,
                },
                _ => return Err(usage()),
            }
        }
        "TTL" => Command::Ttl {
            key: one_word(rest, "TTL <key>")?,
        },
        "KEYS" => {
            let prefix = rest.map(str::trim).unwrap_or("");
            if prefix.contains(char::is_whitespace) {
                return Err("usage: KEYS [prefix]".into());
            }
            Command::Keys { prefix }
        }
        "PROMOTE" => no_args(rest, "PROMOTE").map(|_| Command::Promote)?,
        "FLUSH" => match rest.map(str::trim).unwrap_or("") {
            "" => Command::Flush { confirmed: false },
            yes if yes.eq_ignore_ascii_case("YES") => Command::Flush { confirmed: true },
            _ => return Err("usage: FLUSH [YES]".into()),
        },
        "FAILOVER" => {
            let target = rest.map(str::trim).filter(|t| !t.is_empty());
            if target.is_some_and(|t| t.contains(char::is_whitespace)) {
                return Err("usage: FAILOVER [host:port]".into());
            }
            Command::Failover { target }
        }
        "JOIN" => Command::Join {
            addr: one_word(rest, "JOIN <host:port>")?,
        },
        "STATUS" => no_args(rest, "STATUS").map(|_| Command::Status)?,
        "HELP" => no_args(rest, "HELP").map(|_| Command::Help)?,
        "DIGEST" => no_args(rest, "DIGEST").map(|_| Command::Digest)?,
        "EXIT" | "QUIT" => no_args(rest, "EXIT").map(|_| Command::Exit)?,
        _ => {
            return Err(format!(
                "unknown command '{}'; type HELP for the list of commands",
                truncate(word, 40)
            ))
        }
    };
    Ok(Some(command))
}

fn truncate(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_is_the_rest_of_the_line() {
        assert_eq!(
            parse("PUT greeting hello world").unwrap(),
            Some(Command::Put {
                key: "greeting",
                value: "hello world"
            })
        );
        assert_eq!(
            parse("put k  two  spaces ").unwrap(),
            Some(Command::Put {
                key: "k",
                value: " two  spaces "
            })
        );
        assert_eq!(
            parse("PUT k ").unwrap(),
            Some(Command::Put {
                key: "k",
                value: ""
            })
        );
    }

    #[test]
    fn words_are_case_insensitive() {
        assert_eq!(parse("get a").unwrap(), Some(Command::Get { key: "a" }));
        assert_eq!(parse("Exit").unwrap(), Some(Command::Exit));
        assert_eq!(parse("keys").unwrap(), Some(Command::Keys { prefix: "" }));
        assert_eq!(
            parse("KEYS us").unwrap(),
            Some(Command::Keys { prefix: "us" })
        );
    }

    #[test]
    fn missing_or_extra_arguments_explain_usage() {
        for (line, usage) in [
            ("PUT", "usage: PUT <key> <value>"),
            ("PUT a", "usage: PUT <key> <value>"),
            ("GET", "usage: GET <key>"),
            ("GET a b", "usage: GET <key>"),
            ("DEL", "usage: DEL <key>"),
            ("JOIN", "usage: JOIN <host:port>"),
            ("STATUS now", "usage: STATUS (it takes no arguments)"),
        ] {
            assert_eq!(parse(line).unwrap_err(), usage, "{line}");
        }
        assert!(parse("FROB x")
            .unwrap_err()
            .starts_with("unknown command 'FROB'"));
        assert_eq!(parse("   ").unwrap(), None);
    }

    #[test]
    fn bad_bytes_are_refused() {
        assert!(check_line(&vec![b'a'; MAX_LINE + 1])
            .unwrap_err()
            .contains("too long"));
        assert!(check_line(b"GET \xff").unwrap_err().contains("UTF-8"));
        assert!(check_line(b"GET a\x07").unwrap_err().contains("U+0007"));
        assert_eq!(check_line(b"GET a\r").unwrap(), "GET a");
        assert_eq!(check_line("PUT k é\tx".as_bytes()).unwrap(), "PUT k é\tx");
    }
}
