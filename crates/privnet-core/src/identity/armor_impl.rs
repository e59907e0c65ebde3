//! PEM-like armour: `-----BEGIN LABEL-----`, base64 lines, `-----END LABEL-----`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

/// Largest armoured text accepted by [`decode`], in bytes.
pub const MAX_ARMOR_LEN: usize = 16 * 1024;
/// Characters of base64 per line written by [`encode`].
const LINE_LEN: usize = 64;
/// Longest base64 line accepted by [`decode`] (RFC 7468 lax parsers accept up to 76).
const MAX_LINE_LEN: usize = 76;

/// Why an armoured text was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ArmorError {
    /// The text is longer than [`MAX_ARMOR_LEN`].
    #[error("armoured text is {len} bytes, more than the {max} allowed")]
    TooLarge {
        /// Length of the text.
        len: usize,
        /// Maximum accepted.
        max: usize,
    },
    /// No `-----BEGIN ...-----` line at the start.
    #[error("expected a `-----BEGIN {expected}-----` line")]
    MissingBegin {
        /// The label that was expected.
        expected: String,
    },
    /// The armour has another label than the one expected.
    #[error("expected `{expected}`, found `{found}`")]
    WrongLabel {
        /// The label that was expected.
        expected: String,
        /// The label found in the BEGIN line.
        found: String,
    },
    /// No matching `-----END ...-----` line.
    #[error("missing `-----END {expected}-----` line")]
    MissingEnd {
        /// The label that was expected.
        expected: String,
    },
    /// A line between BEGIN and END is not valid base64 (line numbers start at 1).
    #[error("line {line}: invalid base64")]
    BadBase64 {
        /// Line number within the text.
        line: usize,
    },
    /// Non-blank text after the END line (line numbers start at 1).
    #[error("line {line}: unexpected text after the END line")]
    TrailingData {
        /// Line number within the text.
        line: usize,
    },
    /// The armour contains no data.
    #[error("armour contains no data")]
    Empty,
}

/// Armour `bytes` under `label`. The result ends with a newline.
pub fn encode(label: &str, bytes: &[u8]) -> String {
    let b64 = STANDARD.encode(bytes);
    let mut out = String::with_capacity(b64.len() + b64.len() / LINE_LEN + 2 * label.len() + 40);
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    let mut rest = b64.as_str();
    while !rest.is_empty() {
        let (line, tail) = rest.split_at(rest.len().min(LINE_LEN));
        out.push_str(line);
        out.push('\n');
        rest = tail;
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    out
}

/// The label of the first BEGIN line of `text` (after leading blank lines), if any. Use it to tell
/// which kind of object a file holds.
pub fn label(text: &str) -> Option<&str> {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .and_then(|l| l.strip_prefix("-----BEGIN "))
        .and_then(|l| l.strip_suffix("-----"))
}

/// Decode armoured `text` whose label must be `expected`. Blank lines and surrounding whitespace are
/// tolerated (and `\r\n` line ends); anything else outside the block is refused.
///
/// # Errors
/// [`ArmorError`] says what is wrong and, for content errors, on which line.
pub fn decode(expected: &str, text: &str) -> Result<Vec<u8>, ArmorError> {
    if text.len() > MAX_ARMOR_LEN {
        return Err(ArmorError::TooLarge {
            len: text.len(),
            max: MAX_ARMOR_LEN,
        });
    }
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty());

    let begin = lines.next().map(|(_, l)| l).unwrap_or_default();
    let found = begin
        .strip_prefix("-----BEGIN ")
        .and_then(|l| l.strip_suffix("-----"))
        .ok_or_else(|| ArmorError::MissingBegin {
            expected: expected.to_owned(),
        })?;
    if found != expected {
        return Err(ArmorError::WrongLabel {
            expected: expected.to_owned(),
            found: found.chars().take(64).collect(),
        });
    }

    let end_line = format!("-----END {expected}-----");
    let mut b64 = String::new();
    let mut ended = false;
    for (n, line) in lines.by_ref() {
        if line == end_line {
            ended = true;
            break;
        }
        if line.len() > MAX_LINE_LEN
            || !line
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
        {
            return Err(ArmorError::BadBase64 { line: n });
        }
        b64.push_str(line);
    }
    if !ended {
        return Err(ArmorError::MissingEnd {
            expected: expected.to_owned(),
        });
    }
    if let Some((n, _)) = lines.next() {
        return Err(ArmorError::TrailingData { line: n });
    }
    if b64.is_empty() {
        return Err(ArmorError::Empty);
    }
    // Padding inside the data, or a wrong total length, is caught here; report the first data line.
    STANDARD.decode(b64.as_bytes()).map_err(|_| {
        let first = text
            .lines()
            .position(|l| l.trim().starts_with("-----BEGIN "))
            .map_or(1, |p| p + 2);
        ArmorError::BadBase64 { line: first }
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn armor_round_trip() {
        for len in [1usize, 47, 48, 49, 200, 1024] {
            let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let text = encode("PRIVNET TEST", &data);
            assert!(text
                .lines()
                .all(|l| l.len() <= LINE_LEN || l.starts_with("-----")));
            assert_eq!(decode("PRIVNET TEST", &text).as_deref(), Ok(&data[..]));
            assert_eq!(label(&text), Some("PRIVNET TEST"));
        }
    }

    #[test]
    fn armor_tolerates_blank_lines_and_crlf() {
        let text = encode("X", b"hello world").replace('\n', "\r\n");
        let text = format!("\n\n  {text}\n\n");
        assert_eq!(decode("X", &text).as_deref(), Ok(&b"hello world"[..]));
    }

    #[test]
    fn armor_rejects_wrong_label() {
        let text = encode("PRIVNET CA CERTIFICATE", b"abc");
        assert!(matches!(
            decode("PRIVNET CERTIFICATE", &text),
            Err(ArmorError::WrongLabel { .. })
        ));
    }

    #[test]
    fn armor_rejects_missing_lines() {
        let text = encode("X", b"abc");
        let no_end: String = text.lines().take(2).collect::<Vec<_>>().join("\n");
        assert!(matches!(
            decode("X", &no_end),
            Err(ArmorError::MissingEnd { .. })
        ));
        let no_begin: String = text.lines().skip(1).collect::<Vec<_>>().join("\n");
        assert!(matches!(
            decode("X", &no_begin),
            Err(ArmorError::MissingBegin { .. })
        ));
        assert!(matches!(
            decode("X", ""),
            Err(ArmorError::MissingBegin { .. })
        ));
        assert_eq!(
            decode("X", "-----BEGIN X-----\n-----END X-----\n"),
            Err(ArmorError::Empty)
        );
    }

    #[test]
    fn armor_rejects_garbage() {
        let text = encode("X", b"abcdef");
        let bad = text.replace("YWJj", "YW*j");
        assert_eq!(decode("X", &bad), Err(ArmorError::BadBase64 { line: 2 }));
        let trailing = format!("{text}junk\n");
        assert_eq!(
            decode("X", &trailing),
            Err(ArmorError::TrailingData { line: 4 })
        );
        let truncated_b64 = text.replace("YWJjZGVm", "YWJjZGV");
        assert!(matches!(
            decode("X", &truncated_b64),
            Err(ArmorError::BadBase64 { .. })
        ));
        let huge = "A".repeat(MAX_ARMOR_LEN + 1);
        assert!(matches!(
            decode("X", &huge),
            Err(ArmorError::TooLarge { .. })
        ));
    }
}
