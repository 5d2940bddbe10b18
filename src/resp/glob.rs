//! Redis-style glob patterns for `KEYS` and `SCAN ... MATCH`: `*` (any run), `?` (one
//! character), `[abc]`, `[a-z]`, `[^a]` (classes, `^` negates) and `\x` (a literal x).
//! Matching is by character, iterative (no recursion, so no pattern can exhaust the stack),
//! and linear-space.

/// Longest pattern accepted, in characters: matching costs up to pattern × key length.
pub const MAX_PATTERN: usize = 4096;

/// A pattern prepared once for matching many keys.
pub struct Pattern {
    chars: Vec<char>,
}

impl Pattern {
    /// Prepares `pattern` (runs of `*` collapse to one, as in Redis), or refuses one
    /// longer than [`MAX_PATTERN`].
    pub fn new(pattern: &str) -> Result<Pattern, String> {
        let mut chars: Vec<char> = Vec::new();
        for c in pattern.chars() {
            if chars.len() >= MAX_PATTERN {
                return Err(format!("ERR pattern longer than {MAX_PATTERN} characters"));
            }
            let escaped = chars.len() >= 2 && chars[chars.len() - 2] == '\\';
            if !(c == '*' && chars.last() == Some(&'*') && !escaped) {
                chars.push(c);
            }
        }
        Ok(Pattern { chars })
    }

    /// Whether `text` matches.
    pub fn matches(&self, text: &str) -> bool {
        matches_chars(&self.chars, text)
    }
}

/// Whether `text` matches `pattern`.
pub fn matches(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    matches_chars(&pattern, text)
}

fn matches_chars(pattern: &[char], text: &str) -> bool {
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    // Where to resume after the last `*`: (pattern index after it, text index it covers to).
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
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
        // Mismatch: let the last `*` swallow one more character, or fail.
        match star {
            Some((after, covered)) => {
                p = after;
                t = covered + 1;
                star = Some((after, covered + 1));
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

/// If the pattern element at `p` matches `c`, the index after that element.
fn match_one(pattern: &[char], p: usize, c: char) -> Option<usize> {
    match pattern[p] {
        '?' => Some(p + 1),
        '\\' if p + 1 < pattern.len() => (pattern[p + 1] == c).then_some(p + 2),
        '[' => match_class(pattern, p + 1, c),
        literal => (literal == c).then_some(p + 1),
    }
}

/// Matches `c` against the class starting after `[` at `p`; the index after its `]`.
fn match_class(pattern: &[char], mut p: usize, c: char) -> Option<usize> {
    let negate = pattern.get(p) == Some(&'^');
    if negate {
        p += 1;
    }
    let mut found = false;
    while p < pattern.len() && pattern[p] != ']' {
        if pattern[p] == '\\' && p + 1 < pattern.len() {
            found |= pattern[p + 1] == c;
            p += 2;
        } else if p + 2 < pattern.len() && pattern[p + 1] == '-' && pattern[p + 2] != ']' {
            let (low, high) = (
                pattern[p].min(pattern[p + 2]),
                pattern[p].max(pattern[p + 2]),
            );
            found |= (low..=high).contains(&c);
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
pub fn literal_prefix(pattern: &str) -> &str {
    let end = pattern.find(['*', '?', '[', '\\']).unwrap_or(pattern.len());
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
            ("*a", "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", false),
        ] {
            assert_eq!(matches(pattern, text), expected, "{pattern} ~ {text}");
        }
    }

    #[test]
    fn prepared_patterns_collapse_stars_and_refuse_huge_ones() {
        let pattern = Pattern::new("a***b").expect("pattern");
        assert_eq!(pattern.chars, vec!['a', '*', 'b']);
        assert!(pattern.matches("axxb"));
        assert!(Pattern::new("a\\**").expect("escaped").matches("a*x"));
        assert!(
            Pattern::new(&"*".repeat(MAX_PATTERN * 2)).is_ok(),
            "stars collapse first"
        );
        assert!(Pattern::new(&"a".repeat(MAX_PATTERN + 1)).is_err());
    }

    #[test]
    fn many_stars_stay_fast() {
        let pattern = "*a".repeat(50) + "b";
        assert!(!matches(&pattern, &"a".repeat(5000)));
    }

    #[test]
    fn literal_prefixes() {
        assert_eq!(literal_prefix("user:*"), "user:");
        assert_eq!(literal_prefix("abc"), "abc");
        assert_eq!(literal_prefix("*x"), "");
        assert_eq!(literal_prefix("a?"), "a");
    }
}
