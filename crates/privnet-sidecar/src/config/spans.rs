//! TOML text to [`FileConfig`], with every problem located by key path and line.
//!
//! The parser is lenient on purpose, so that `privnet check` reports every problem of a file in one
//! run: an unknown key is reported (with the nearest known key as a hint) and dropped; a key of the
//! wrong type is reported and dropped, and the section is read again without it; a missing
//! required key is reported. A section is returned when what is left still has every required key,
//! so the validator goes on to check the rest of the file (a dropped optional key falls back to its
//! default; checks that depend on it look at [`Problems::has`] first). Only a TOML syntax error
//! stops the parse: after it, the structure of the rest of the file is a guess.
//!
//! Lines come from the TOML spans while the document is parsed. Checks made later, on the typed
//! sections, no longer have spans; [`Problems::report`] finds their line with [`locate`].

use std::path::Path;

use serde_path_to_error::Segment;
use toml::de::{DeTable, DeValue, ValueDeserializer};
use toml::Spanned;

use super::schema::{FileConfig, Section, TOP_LEVEL_KEYS};
use super::types::Problem;

/// The problems found in one configuration file.
pub(super) struct Problems<'a> {
    file: &'a Path,
    text: &'a str,
    found: Vec<Problem>,
    /// Problems of another file this one names (the policy file), in that file's order.
    elsewhere: Vec<Problem>,
}

impl<'a> Problems<'a> {
    /// No problems yet in `file`, whose contents are `text`.
    pub(super) fn new(file: &'a Path, text: &'a str) -> Self {
        Self {
            file,
            text,
            found: Vec::new(),
            elsewhere: Vec::new(),
        }
    }

    /// The configuration file.
    pub(super) fn file(&self) -> &'a Path {
        self.file
    }

    /// A problem at `key`; its line is looked up in the text (best effort, see [`locate`]).
    pub(super) fn report(&mut self, key: impl Into<String>, expected: impl Into<String>) {
        let key = key.into();
        let line = locate(self.text, &key);
        self.at(key, line, expected);
    }

    /// A problem at `key` on a known line.
    pub(super) fn at(
        &mut self,
        key: impl Into<String>,
        line: Option<usize>,
        expected: impl Into<String>,
    ) {
        self.found.push(Problem {
            file: self.file.to_owned(),
            key: key.into(),
            line,
            expected: expected.into(),
        });
    }

    /// Add problems found earlier (by [`parse_str`]).
    pub(super) fn extend(&mut self, problems: Vec<Problem>) {
        self.found.extend(problems);
    }

    /// Add the problems of another file (with their own lines), listed after this file's.
    pub(super) fn extend_elsewhere(&mut self, problems: Vec<Problem>) {
        self.elsewhere.extend(problems);
    }

    /// Whether a problem was already reported at `key` or inside it (`log` covers `log.level`): a
    /// check that compares the value with something else is skipped then, because the value may be
    /// a default the parser put in place of the file's.
    pub(super) fn has(&self, key: &str) -> bool {
        self.found.iter().any(|p| {
            p.key
                .strip_prefix(key)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
        })
    }

    /// The problems in file order (problems without a line last, in the order found), then those
    /// of the other files it names.
    pub(super) fn into_sorted(mut self) -> Vec<Problem> {
        self.found.sort_by_key(|p| p.line.unwrap_or(usize::MAX));
        self.found.append(&mut self.elsewhere);
        self.found
    }
}

/// Parse the text of one configuration file (pure: reads no other file). Returns the parsed
/// sections and every schema problem (syntax, unknown keys, wrong types, out-of-range integers,
/// missing required keys), in file order.
pub fn parse_str(text: &str, file: &Path) -> (FileConfig, Vec<Problem>) {
    let mut cfg = FileConfig::default();
    let mut p = Problems::new(file, text);
    let doc = match DeTable::parse(text) {
        Ok(doc) => doc,
        Err(e) => {
            p.at(
                "",
                e.span().map(|s| line_of(text, s.start)),
                format!("valid TOML: {}", e.message().trim()),
            );
            return (cfg, p.into_sorted());
        }
    };
    for (k, v) in doc.get_ref().iter() {
        let name: &str = k.get_ref();
        let key_line = Some(line_of(text, k.span().start));
        match name {
            "node" => cfg.node = section(&mut p, "node", v),
            "tun" => cfg.tun = section(&mut p, "tun", v),
            "metrics" => cfg.metrics = section(&mut p, "metrics", v),
            "status" => cfg.status = section(&mut p, "status", v),
            "log" => cfg.log = section(&mut p, "log", v),
            "userspace" => cfg.userspace = section(&mut p, "userspace", v),
            "expose" => match v.get_ref() {
                DeValue::Array(items) => {
                    cfg.expose = items
                        .iter()
                        .enumerate()
                        .map(|(i, item)| section(&mut p, &format!("expose[{i}]"), item))
                        .collect();
                }
                _ => p.at(
                    "expose",
                    key_line,
                    "an array of tables: one `[[expose]]` header per exposure",
                ),
            },
            "directory" => cfg.directory = section(&mut p, "directory", v),
            "dns" => cfg.dns = section(&mut p, "dns", v),
            "conntrack" => cfg.conntrack = section(&mut p, "conntrack", v),
            "peer" => match v.get_ref() {
                DeValue::Array(items) => {
                    cfg.peers = items
                        .iter()
                        .enumerate()
                        .map(|(i, item)| section(&mut p, &format!("peer[{i}]"), item))
                        .collect();
                }
                _ => p.at(
                    "peer",
                    key_line,
                    "an array of tables: one `[[peer]]` header per peer",
                ),
            },
            other => p.at(
                safe_key(other),
                key_line,
                unknown_key(other, TOP_LEVEL_KEYS),
            ),
        }
    }
    if !doc.get_ref().contains_key("node") {
        p.at("node", None, "a `[node]` section");
    }
    (cfg, p.into_sorted())
}

/// Read one section, reporting every problem in it (see the module docs). `prefix` is the key
/// path of the section (`node`, `peer[1]`).
fn section<T: Section>(
    p: &mut Problems<'_>,
    prefix: &str,
    value: &Spanned<DeValue<'_>>,
) -> Option<T> {
    let text = p.text;
    let header_line = Some(line_of(text, value.span().start));
    let DeValue::Table(table) = value.get_ref() else {
        p.at(
            prefix,
            header_line,
            format!("a table (`[{prefix}]` section)"),
        );
        return None;
    };
    let mut known = DeTable::new();
    for (k, v) in table.iter() {
        let name: &str = k.get_ref();
        if T::KEYS.contains(&name) {
            known.insert(k.clone(), v.clone());
        } else {
            p.at(
                format!("{prefix}.{}", safe_key(name)),
                Some(line_of(text, k.span().start)),
                unknown_key(name, T::KEYS),
            );
        }
    }
    for key in T::REQUIRED {
        if !known.contains_key(*key) {
            p.at(
                format!("{prefix}.{key}"),
                header_line,
                "this key is required",
            );
        }
    }
    // Every failed pass drops the key serde stopped at, so there are at most KEYS.len() + 1 passes
    // (the section is small: unknown keys were dropped above).
    loop {
        let table = Spanned::new(value.span(), DeValue::Table(known.clone()));
        let err = match serde_path_to_error::deserialize::<_, T>(ValueDeserializer::from(table)) {
            Ok(section) => return Some(section),
            Err(err) => err,
        };
        let top = match err.path().iter().next() {
            Some(Segment::Map { key }) => Some(key.clone()),
            _ => None,
        };
        let path = err.path().to_string();
        let inner = err.into_inner();
        let msg = inner.message().trim();
        if let Some(field) = missing_field(msg) {
            // A required key that is absent was reported above, one of the wrong type below; only
            // a key list that drifted from the struct (a bug, caught by the schema tests) is new.
            if !T::REQUIRED.contains(&field) {
                p.at(
                    format!("{prefix}.{field}"),
                    header_line,
                    "this key is required",
                );
            }
            return None;
        }
        let mut key = prefix.to_owned();
        if path != "." && !path.is_empty() {
            key.push('.');
            key.push_str(&path);
        }
        let key_line = top
            .as_deref()
            .and_then(|t| known.get_key_value(t))
            .map(|(k, _)| line_of(text, k.span().start));
        let line = inner
            .span()
            .map(|s| line_of(text, s.start))
            .or(key_line)
            .or(header_line);
        p.at(key, line, describe_serde_error(msg));
        // An error that is not in one key (cannot happen for these flat sections) leaves nothing
        // to drop: give up on the section then.
        top.and_then(|t| known.remove(t.as_str()))?;
    }
}

fn missing_field(msg: &str) -> Option<&str> {
    msg.strip_prefix("missing field `")
        .and_then(|r| r.split_once('`'))
        .map(|(f, _)| f)
}

fn describe_serde_error(msg: &str) -> String {
    if msg.contains("invalid socket address syntax") {
        format!("an IP address and port such as 0.0.0.0:51820 or [::]:51820 ({msg})")
    } else if msg.ends_with("expected u16") {
        format!("an integer between 0 and 65535 ({msg})")
    } else if msg.ends_with("expected u32") {
        format!("an integer between 0 and 4294967295 ({msg})")
    } else {
        msg.to_owned()
    }
}

/// The problem text of an unknown key `name` where `known` are the keys allowed.
fn unknown_key(name: &str, known: &[&str]) -> String {
    let list: Vec<String> = known.iter().map(|k| format!("`{k}`")).collect();
    let list = list.join(", ");
    match nearest(name, known) {
        Some(k) => format!("no such key; did you mean `{k}`? (expected one of {list})"),
        None => format!("no such key (expected one of {list})"),
    }
}

/// The known key closest to `name` (a typo, a transposition, a different case), if one is close
/// enough to be a useful hint: at most a third of the longer name's characters differ.
fn nearest<'k>(name: &str, known: &[&'k str]) -> Option<&'k str> {
    // Keys are short; a long name is no typo of one (and bounds the work on hostile input).
    if name.len() > 64 {
        return None;
    }
    let name = name.to_ascii_lowercase();
    known
        .iter()
        .map(|k| (edit_distance(name.as_bytes(), k.as_bytes()), *k))
        .filter(|(d, k)| *d <= (k.len().max(name.len()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Optimal string alignment distance: insertions, deletions, substitutions and transpositions of
/// neighbours each cost 1.
fn edit_distance(a: &[u8], b: &[u8]) -> usize {
    // Three rows of the dynamic-programming table: two back (for transpositions), previous, current.
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur: Vec<usize> = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(before[j - 2] + 1);
            }
            cur[j] = d;
        }
        std::mem::swap(&mut before, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// A key name safe to print (TOML keys may hold any character).
fn safe_key(k: &str) -> String {
    k.chars()
        .take(64)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// The line (from 1) of byte `offset` in `text`.
pub(super) fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()
        .iter()
        .take(offset)
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Best-effort line of `key` (e.g. `peer[1].endpoint`) in a conventionally formatted file.
pub(super) fn locate(text: &str, key: &str) -> Option<usize> {
    let (head, field) = match key.split_once('.') {
        Some((h, f)) => (h, Some(f)),
        None => (key, None),
    };
    let (table, index) = match head.split_once('[') {
        Some((t, rest)) => (t, rest.trim_end_matches(']').parse::<usize>().ok()?),
        None => (head, 0),
    };
    let header = if head.contains('[') {
        format!("[[{table}]]")
    } else {
        format!("[{table}]")
    };
    let lines: Vec<&str> = text.lines().collect();
    let start = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.trim_start().starts_with(&header))
        .nth(index)
        .map(|(i, _)| i)?;
    let Some(field) = field else {
        return Some(start + 1);
    };
    let field = field.split(['.', '[']).next().unwrap_or(field);
    lines
        .iter()
        .enumerate()
        .skip(start + 1)
        .take_while(|(_, l)| !l.trim_start().starts_with('['))
        .find(|(_, l)| {
            l.trim_start()
                .strip_prefix(field)
                .is_some_and(|r| r.trim_start().starts_with('='))
        })
        .map(|(i, _)| i + 1)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn locate_finds_keys() {
        let text = "[node]\nnetwork = \"x\"\nlisten = \"1\"\n\n[[peer]]\nname = \"a\"\n[[peer]]\nname = \"b\"\nendpoint = \"e\"\n";
        assert_eq!(locate(text, "node.listen"), Some(3));
        assert_eq!(locate(text, "peer[1].endpoint"), Some(9));
        assert_eq!(locate(text, "peer[1]"), Some(7));
        assert_eq!(locate(text, "peer[0].endpoint"), None);
        assert_eq!(locate(text, "tun.mtu"), None);
    }

    #[test]
    fn parse_reports_syntax_error_with_line() {
        let (_, ps) = parse_str("[node]\nnetwork = \n", Path::new("x.toml"));
        assert_eq!(ps.len(), 1);
        assert_eq!(ps[0].line, Some(2));
    }

    #[test]
    fn edit_distance_counts_typos() {
        assert_eq!(edit_distance(b"listen", b"listen"), 0);
        assert_eq!(edit_distance(b"listne", b"listen"), 1);
        assert_eq!(edit_distance(b"lisen", b"listen"), 1);
        assert_eq!(edit_distance(b"", b"mtu"), 3);
        assert_eq!(edit_distance(b"kitten", b"sitting"), 3);
    }

    #[test]
    fn nearest_key_is_a_hint_only_when_close() {
        let keys = ["mode", "name", "mtu", "busy_poll_us"];
        assert_eq!(nearest("MTU", &keys), Some("mtu"));
        assert_eq!(nearest("nmae", &keys), Some("name"));
        assert_eq!(nearest("busy_poll", &keys), Some("busy_poll_us"));
        assert_eq!(nearest("queue", &keys), None);
        assert_eq!(nearest(&"x".repeat(1000), &keys), None);
        assert!(unknown_key("nmae", &keys).contains("did you mean `name`?"));
        assert!(!unknown_key("queue", &keys).contains("did you mean"));
    }

    #[test]
    fn unknown_key_does_not_hide_the_rest_of_the_section() {
        let text = "[node]\nnetwork = \"n\"\nlistne = \"0.0.0.0:1\"\nprivate_key = 5\n\n[tun]\nmtu = \"big\"\nbusy_poll = 3\noffload = 1\n";
        let (cfg, ps) = parse_str(text, Path::new("x.toml"));
        let got: Vec<(&str, Option<usize>)> = ps.iter().map(|p| (p.key.as_str(), p.line)).collect();
        assert_eq!(
            got,
            [
                ("node.certificate", Some(1)),
                ("node.ca_certificates", Some(1)),
                ("node.network_psk", Some(1)),
                ("node.listne", Some(3)),
                ("node.private_key", Some(4)),
                ("tun.mtu", Some(7)),
                ("tun.busy_poll", Some(8)),
                ("tun.offload", Some(9)),
            ]
        );
        assert!(
            ps[3].expected.contains("did you mean `listen`?"),
            "{}",
            ps[3]
        );
        assert!(ps[6].expected.contains("did you mean `busy_poll_us`?"));
        // A required key is missing: no [node]; [tun] keeps what is valid and defaults the rest.
        assert_eq!(cfg.node, None);
        let tun = cfg.tun.unwrap();
        assert_eq!(tun.mtu, crate::config::DEFAULT_MTU);
        assert!(tun.offload);
    }

    #[test]
    fn a_peer_that_fails_keeps_its_index() {
        let text =
            "[[peer]]\nname = 1\n[[peer]]\nname = \"b\"\npublic_key = \"k\"\naddresses = []\n";
        let (cfg, ps) = parse_str(text, Path::new("x.toml"));
        assert_eq!(cfg.peers.len(), 2);
        assert!(cfg.peers[0].is_none());
        assert_eq!(cfg.peers[1].as_ref().unwrap().name, "b");
        assert!(ps
            .iter()
            .any(|p| p.key == "peer[0].name" && p.line == Some(2)));
        assert!(ps.iter().any(|p| p.key == "peer[0].public_key"));
        assert!(!ps.iter().any(|p| p.key.starts_with("peer[1]")), "{ps:?}");
    }
}
