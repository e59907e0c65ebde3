//! Errors of the policy front end and compiler: every problem names the file, the line and column
//! (when the policy came from text) and what was expected there.

use std::fmt;

/// A position in a policy file (1-based line and column, in characters).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Location {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1 (characters, not bytes).
    pub column: usize,
}

impl Location {
    /// The location of byte `offset` in `text` (clamped to the text).
    pub fn of_offset(text: &str, offset: usize) -> Self {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &text[..offset];
        let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        Self { line, column }
    }
}

/// One problem in a policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyProblem {
    /// Where it is, when known (a policy built with the typed API has no positions unless the
    /// builder set them).
    pub location: Option<Location>,
    /// The key path (`application[2].ports[0]`), or empty for the document itself.
    pub key: String,
    /// What was expected there (or what is wrong).
    pub expected: String,
}

/// Every problem found in one policy (parse and compile problems alike), in file order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyError {
    /// The file name given to the parser or compiler (a label: the core opens no file).
    pub file: String,
    /// The problems, at least one.
    pub problems: Vec<PolicyProblem>,
}

impl PolicyError {
    /// A single problem.
    pub(crate) fn one(
        file: &str,
        location: Option<Location>,
        key: impl Into<String>,
        expected: impl Into<String>,
    ) -> Self {
        Self {
            file: file.to_owned(),
            problems: vec![PolicyProblem {
                location,
                key: key.into(),
                expected: expected.into(),
            }],
        }
    }

    /// The first problem's line, if any (for tests and short reports).
    pub fn first_line(&self) -> Option<usize> {
        self.problems
            .first()
            .and_then(|p| p.location)
            .map(|l| l.line)
    }
}

impl fmt::Display for PolicyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "expected {}", self.expected)
        } else {
            write!(f, "{}: expected {}", self.key, self.expected)
        }
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            match p.location {
                Some(l) => write!(f, "{}:{}:{}: {p}", self.file, l.line, l.column)?,
                None => write!(f, "{}: {p}", self.file)?,
            }
        }
        Ok(())
    }
}

impl std::error::Error for PolicyError {}

/// Collects problems while a policy is read or compiled.
#[derive(Debug, Default)]
pub(crate) struct Problems {
    pub(crate) found: Vec<PolicyProblem>,
}

impl Problems {
    pub(crate) fn push(
        &mut self,
        location: Option<Location>,
        key: impl Into<String>,
        expected: impl Into<String>,
    ) {
        // Bounded: a hostile file cannot make the report itself unbounded.
        if self.found.len() < MAX_PROBLEMS {
            self.found.push(PolicyProblem {
                location,
                key: key.into(),
                expected: expected.into(),
            });
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.found.is_empty()
    }

    /// Into an error for `file`, problems in file order (those without a position last).
    pub(crate) fn into_error(mut self, file: &str) -> PolicyError {
        self.found
            .sort_by_key(|p| p.location.map_or((usize::MAX, 0), |l| (l.line, l.column)));
        PolicyError {
            file: file.to_owned(),
            problems: self.found,
        }
    }
}

/// At most this many problems are reported for one file.
pub(crate) const MAX_PROBLEMS: usize = 100;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_counts_lines_and_characters() {
        let t = "ab\ncdé\nx";
        assert_eq!(Location::of_offset(t, 0), Location { line: 1, column: 1 });
        assert_eq!(Location::of_offset(t, 3), Location { line: 2, column: 1 });
        assert_eq!(Location::of_offset(t, 7), Location { line: 2, column: 4 });
        // Inside the two-byte 'é': clamped back to a boundary.
        assert_eq!(Location::of_offset(t, 6), Location { line: 2, column: 3 });
        assert_eq!(Location::of_offset(t, 1000).line, 3);
    }

    #[test]
    fn display_names_file_line_column() {
        let e = PolicyError::one(
            "p.toml",
            Some(Location { line: 3, column: 7 }),
            "application[0].action",
            "one of `allow`, `deny`",
        );
        assert_eq!(
            e.to_string(),
            "p.toml:3:7: application[0].action: expected one of `allow`, `deny`"
        );
    }
}
