//! Redis-style glob patterns for `KEYS` and `SCAN ... MATCH`: `*` (any run), `?` (one
//! byte), `[abc]`, `[a-z]`, `[^a]` (classes, `^` negates) and `\x` (a literal x), as
//! Redis's `stringmatchlen` reads them (a range's ends compare as signed bytes, and `]`
//! may end a range, as on x86-64).
//! Matching is by byte, as Redis's (a key is bytes), iterative (no recursion, so no
//! pattern can exhaust the stack), and linear-space.

/// Longest pattern accepted, in bytes: matching costs up to pattern × key length.
pub const MAX_PATTERN: usize = 4096;

/// A pattern prepared once for matching many keys.
pub struct Pattern {
    bytes: Vec<u8>,
}

impl Pattern {
    /// Prepares `pattern` (runs of `*` collapse to one, as in Redis), or refuses one
    /// longer than [`MAX_PATTERN`].
    pub fn new(pattern: &[u8]) -> Result<Pattern, String> {
        let mut bytes: Vec<u8> = Vec::new();
        for &c in pattern {
            if bytes.len() >= MAX_PATTERN {
                return Err(format!("ERR pattern longer than {MAX_PATTERN} bytes"));
            }
            let escaped = bytes.len() >= 2 && bytes[bytes.len() - 2] == b'\\';
            if !(c == b'*' && bytes.last() == Some(&b'*') && !escaped) {
                bytes.push(c);
            }
        }
        Ok(Pattern { bytes })
    }

    /// Whether `key` matches.
    pub fn matches(&self, key: &[u8]) -> bool {
        matches_bytes(&self.bytes, key)
    }
}

/// Whether `key` matches `pattern`.
pub fn matches(pattern: &[u8], key: &[u8]) -> bool {
    matches_bytes(pattern, key)
}

fn matches_bytes(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    // Where to resume after the last `*`: (pattern index after it, text index it covers to).
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p + 1, t));
                p += 1;
                continue;
            }
            Some(_) => {
                if let Some(next) = match_one(pattern, p, text[t]) {
                    p = next;
                    t += 1;
                    continue;
                }
            }
            None => {}
        }
        // Mismatch: let the last `*` swallow one more byte, or fail.
        match star {
            Some((after, covered)) => {
                p = after;
                t = covered + 1;
                star = Some((after, covered + 1));
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// If the pattern element at `p` matches `c`, the index after that element.
fn match_one(pattern: &[u8], p: usize, c: u8) -> Option<usize> {
    match pattern[p] {
        b'?' => Some(p + 1),
        b'\\' if p + 1 < pattern.len() => (pattern[p + 1] == c).then_some(p + 2),
        b'[' => match_class(pattern, p + 1, c),
        literal => (literal == c).then_some(p + 1),
    }
}

/// Matches `c` against the class starting after `[` at `p`; the index after its `]`.
fn match_class(pattern: &[u8], mut p: usize, c: u8) -> Option<usize> {
    let negate = pattern.get(p) == Some(&b'^');
    if negate {
        p += 1;
    }
    let mut found = false;
    while p < pattern.len() && pattern[p] != b']' {
        if pattern[p] == b'\\' && p + 1 < pattern.len() {
            found |= pattern[p + 1] == c;
            p += 2;
        } else if p + 2 < pattern.len() && pattern[p + 1] == b'-' {
            // Redis compares a range's bytes as C `char`s, signed on x86-64: bytes from
            // 0x80 up sort below 0x00 there, and kv answers the same.
            let (start, end) = (pattern[p] as i8, pattern[p + 2] as i8);
            let (low, high) = (start.min(end), start.max(end));
            found |= (low..=high).contains(&(c as i8));
            p += 3;
        } else {
            found |= pattern[p] == c;
            p += 1;
        }
    }
    // An unclosed class runs to the end of the pattern, as in Redis.
    (found != negate).then_some((p + 1).min(pattern.len()))
}

/// The literal start of `pattern` (before any special character): only keys with this
/// prefix can match, so scans can start there.
pub fn literal_prefix(pattern: &[u8]) -> &[u8] {
    let end = pattern
        .iter()
        .position(|c| matches!(c, b'*' | b'?' | b'[' | b'\\'))
        .unwrap_or(pattern.len());
    &pattern[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_glob_semantics() {
        for (pattern, text, expected) in [
            ("*", "", true),
            ("*", "anything", true),
            ("user:*", "user:1", true),
            ("user:*", "users", false),
            ("h?llo", "hello", true),
            ("h?llo", "hllo", false),
            ("h[ae]llo", "hallo", true),
            ("h[ae]llo", "hillo", false),
            ("h[^e]llo", "hallo", true),
            ("h[^e]llo", "hello", false),
            ("h[a-b]llo", "hbllo", true),
            ("h[a-b]llo", "hcllo", false),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("\\*", "*", true),
            ("\\*", "a", false),
            ("é*", "été", true),
            ("?", "é", false),
            ("[a-]", "]", true),
            ("[a-]", "-", false),
            ("*a", "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", false),
        ] {
            let found = matches(pattern.as_bytes(), text.as_bytes());
            assert_eq!(found, expected, "{pattern} ~ {text}");
        }
    }

    #[test]
    fn prepared_patterns_collapse_stars_and_refuse_huge_ones() {
        let pattern = Pattern::new(b"a***b").expect("pattern");
        assert_eq!(pattern.bytes, b"a*b");
        assert!(pattern.matches(b"axxb"));
        assert!(Pattern::new(b"a\\**").expect("escaped").matches(b"a*x"));
        assert!(
            Pattern::new("*".repeat(MAX_PATTERN * 2).as_bytes()).is_ok(),
            "stars collapse first"
        );
        assert!(Pattern::new("a".repeat(MAX_PATTERN + 1).as_bytes()).is_err());
        assert!(Pattern::new(b"a\xff*")
            .expect("binary")
            .matches(b"a\xff\x00"));
        // Signed bytes, as Redis on x86-64: 0xff is -1, below 'b'.
        assert!(!matches(b"[a-\xff]", b"b"));
        assert!(matches(b"[a-\xff]", b"\x00"));
        assert!(!matches(b"[\x00-\xff]", b"a"));
    }

    #[test]
    fn many_stars_stay_fast() {
        let pattern = "*a".repeat(50) + "b";
        assert!(!matches(pattern.as_bytes(), "a".repeat(5000).as_bytes()));
    }

    #[test]
    fn literal_prefixes() {
        assert_eq!(literal_prefix(b"user:*"), b"user:");
        assert_eq!(literal_prefix(b"abc"), b"abc");
        assert_eq!(literal_prefix(b"*x"), b"");
        assert_eq!(literal_prefix(b"a?"), b"a");
    }
}
