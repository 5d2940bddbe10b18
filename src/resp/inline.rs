//! Inline commands, as typed into telnet: one line of words, split as Redis splits them
//! (`sdssplitargs`): words are separated by spaces; `"..."` may hold spaces and the escapes
//! `\n \r \t \b \a \\ \"` and `\xHH`; `'...'` may hold spaces and `\'`.

/// Why a line cannot be split.
pub const UNBALANCED: &str = "unbalanced quotes in request";

/// The words of one inline line (without its line end), or [`UNBALANCED`].
pub fn split_args(mut text: &[u8]) -> Result<Vec<Vec<u8>>, &'static str> {
    let unbalanced = || UNBALANCED;
    let mut words = Vec::new();
    loop {
        text = text.trim_ascii_start();
        let Some(&first) = text.first() else {
            return Ok(words);
        };
        let (word, rest) = match first {
            b'"' => double_quoted(&text[1..]).ok_or_else(unbalanced)?,
            b'\'' => single_quoted(&text[1..]).ok_or_else(unbalanced)?,
            _ => {
                let end = text
                    .iter()
                    .position(u8::is_ascii_whitespace)
                    .unwrap_or(text.len());
                (text[..end].to_vec(), &text[end..])
            }
        };
        // A closing quote must end the word.
        if rest.first().is_some_and(|b| !b.is_ascii_whitespace()) {
            return Err(unbalanced());
        }
        words.push(word);
        text = rest;
    }
}

/// The word inside `"..."` (after the opening quote) and what follows the closing one.
fn double_quoted(text: &[u8]) -> Option<(Vec<u8>, &[u8])> {
    let mut word = Vec::new();
    let mut i = 0;
    loop {
        match *text.get(i)? {
            b'"' => return Some((word, &text[i + 1..])),
            b'\\' => {
                let escaped = *text.get(i + 1)?;
                let hex = text
                    .get(i + 2..i + 4)
                    .and_then(|h| std::str::from_utf8(h).ok());
                match (escaped, hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
                    (b'x', Some(byte)) => {
                        word.push(byte);
                        i += 4;
                        continue;
                    }
                    (b'n', _) => word.push(b'\n'),
                    (b'r', _) => word.push(b'\r'),
                    (b't', _) => word.push(b'\t'),
                    (b'b', _) => word.push(0x08),
                    (b'a', _) => word.push(0x07),
                    (other, _) => word.push(other),
                }
                i += 2;
            }
            byte => {
                word.push(byte);
                i += 1;
            }
        }
    }
}

/// The word inside `'...'` (after the opening quote) and what follows the closing one.
fn single_quoted(text: &[u8]) -> Option<(Vec<u8>, &[u8])> {
    let mut word = Vec::new();
    let mut i = 0;
    loop {
        match *text.get(i)? {
            b'\'' => return Some((word, &text[i + 1..])),
            b'\\' if text.get(i + 1) == Some(&b'\'') => {
                word.push(b'\'');
                i += 2;
            }
            byte => {
                word.push(byte);
                i += 1;
            }
        }
    }
}
