//! TOML text to [`FileConfig`], with every problem located by key path and line.
//!
//! Lines come from the TOML spans while the document is parsed. Checks made later, on the typed
//! sections, no longer have spans; [`Problems::report`] finds their line with [`locate`].

use std::path::Path;

use toml::de::{DeTable, DeValue, ValueDeserializer};
use toml::Spanned;

use super::schema::FileConfig;
use super::types::Problem;

const TOP_LEVEL_KEYS: &str = "one of `node`, `peer`, `tun`, `metrics`, `status`, `log`";

/// The problems found in one configuration file.
pub(super) struct Problems<'a> {
    file: &'a Path,
    text: &'a str,
    found: Vec<Problem>,
}

impl<'a> Problems<'a> {
    /// No problems yet in `file`, whose contents are `text`.
    pub(super) fn new(file: &'a Path, text: &'a str) -> Self {
        Self {
            file,
            text,
            found: Vec::new(),
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

    /// The problems, in the order found.
    pub(super) fn into_vec(self) -> Vec<Problem> {
        self.found
    }
}

/// Parse the text of one configuration file (pure: reads no other file). Returns the parsed
/// sections and every schema problem (syntax, unknown keys, wrong types, out-of-range integers).
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
            return (cfg, p.into_vec());
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
            "peer" => match v.get_ref() {
                DeValue::Array(items) => {
                    for (i, item) in items.iter().enumerate() {
                        if let Some(peer) = section(&mut p, &format!("peer[{i}]"), item) {
                            cfg.peers.push(peer);
                        }
                    }
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
                format!("no such key: expected {TOP_LEVEL_KEYS}"),
            ),
        }
    }
    if !doc.get_ref().contains_key("node") {
        p.at("node", None, "a `[node]` section");
    }
    (cfg, p.into_vec())
}

/// Deserialize one section, reporting a problem (with key path and line) on failure.
fn section<T: serde::de::DeserializeOwned>(
    p: &mut Problems<'_>,
    prefix: &str,
    value: &Spanned<DeValue<'_>>,
) -> Option<T> {
    let text = p.text;
    if !matches!(value.get_ref(), DeValue::Table(_)) {
        p.at(
            prefix,
            Some(line_of(text, value.span().start)),
            format!("a table (`[{prefix}]` section)"),
        );
        return None;
    }
    let de = ValueDeserializer::from(value.clone());
    match serde_path_to_error::deserialize::<_, T>(de) {
        Ok(v) => Some(v),
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let msg = inner.message().trim().to_owned();
            let mut key = prefix.to_owned();
            if path != "." && !path.is_empty() {
                key.push('.');
                key.push_str(&path);
            }
            // serde reports an unknown field at its parent; name the field itself.
            if let Some(field) = msg
                .strip_prefix("unknown field `")
                .and_then(|r| r.split_once('`'))
                .map(|(f, _)| f)
            {
                let field = safe_key(field);
                if !key.ends_with(&format!(".{field}")) {
                    key.push('.');
                    key.push_str(&field);
                }
            }
            if let Some(field) = msg
                .strip_prefix("missing field `")
                .and_then(|r| r.split_once('`'))
                .map(|(f, _)| f)
            {
                if !key.ends_with(&format!(".{field}")) {
                    key.push('.');
                    key.push_str(field);
                }
            }
            let line = inner
                .span()
                .map(|s| line_of(text, s.start))
                .or_else(|| Some(line_of(text, value.span().start)));
            p.at(key, line, describe_serde_error(&msg));
            None
        }
    }
}

fn describe_serde_error(msg: &str) -> String {
    if let Some(rest) = msg.strip_prefix("unknown field ") {
        format!("no such key ({rest})")
    } else if msg.starts_with("missing field") {
        "this key is required".to_owned()
    } else if msg.contains("invalid socket address syntax") {
        format!("an IP address and port such as 0.0.0.0:51820 or [::]:51820 ({msg})")
    } else if msg.ends_with("expected u16") {
        format!("an integer between 0 and 65535 ({msg})")
    } else {
        msg.to_owned()
    }
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
}
