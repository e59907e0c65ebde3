//! The revocation list: a set of revoked certificate fingerprints.

use std::collections::BTreeSet;

use super::codec::Fingerprint;

/// Why a revocation list does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct RevocationParseError {
    /// Line number (from 1).
    pub line: usize,
    /// What was expected.
    pub reason: &'static str,
}

/// A set of revoked fingerprints (member or CA certificates).
///
/// Text format: one fingerprint per line as 64 hex digits; `#` starts a comment (whole line or after
/// the fingerprint); blank lines are ignored. Revoking a CA fingerprint revokes every certificate it
/// issued.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RevocationList {
    revoked: BTreeSet<Fingerprint>,
}

impl RevocationList {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parse the text format.
    ///
    /// # Errors
    /// The first bad line.
    pub fn parse(text: &str) -> Result<Self, RevocationParseError> {
        let mut list = Self::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split_once('#').map_or(raw, |(l, _)| l).trim();
            if line.is_empty() {
                continue;
            }
            let fp = Fingerprint::from_hex(line).ok_or(RevocationParseError {
                line: i + 1,
                reason:
                    "expected a fingerprint of 64 hex digits, optionally followed by a # comment",
            })?;
            list.revoked.insert(fp);
        }
        Ok(list)
    }

    /// The text format (sorted, one per line).
    pub fn to_text(&self) -> String {
        self.revoked.iter().map(|f| format!("{f}\n")).collect()
    }

    /// Add a fingerprint; returns whether it was new.
    pub fn insert(&mut self, fingerprint: Fingerprint) -> bool {
        self.revoked.insert(fingerprint)
    }

    /// Whether `fingerprint` is revoked.
    pub fn contains(&self, fingerprint: &Fingerprint) -> bool {
        self.revoked.contains(fingerprint)
    }

    /// Number of revoked fingerprints.
    pub fn len(&self) -> usize {
        self.revoked.len()
    }

    /// Whether nothing is revoked.
    pub fn is_empty(&self) -> bool {
        self.revoked.is_empty()
    }

    /// The revoked fingerprints, sorted.
    pub fn iter(&self) -> impl Iterator<Item = &Fingerprint> + '_ {
        self.revoked.iter()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn revocation_parses_comments_and_blank_lines() {
        let a = "ab".repeat(32);
        let b = "CD".repeat(32);
        let text = format!("# revoked\n\n{a}\n  {b}  # laptop stolen\r\n# end\n");
        let list = RevocationList::parse(&text).unwrap();
        assert_eq!(list.len(), 2);
        assert!(list.contains(&Fingerprint([0xab; 32])));
        assert!(list.contains(&Fingerprint([0xcd; 32])));
        assert_eq!(RevocationList::parse(&list.to_text()).unwrap(), list);
        assert!(RevocationList::parse("").unwrap().is_empty());
    }

    #[test]
    fn revocation_reports_bad_line() {
        let a = "ab".repeat(32);
        for bad in [&a[..63], "zz", "abc def", &format!("{a}00")] {
            let text = format!("{a}\n# ok\n{bad}\n");
            assert_eq!(RevocationList::parse(&text).unwrap_err().line, 3, "{bad}");
        }
    }
}
