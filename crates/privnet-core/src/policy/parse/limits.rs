//! The `[[limits]]` tables of the TOML front end (docs/POLICY.md §17).

use std::ops::Range;

use toml::de::{DeTable, DeValue};

use super::reader::{join, Parser, Val};
use crate::policy::limits::{MAX_BURST_MS, MAX_RATE};
use crate::policy::spec::{LimitDirection, LimitSpec};

const LIMIT_KEYS: &[&str] = &[
    "id",
    "members",
    "direction",
    "packets_per_sec",
    "bytes_per_sec",
    "burst_ms",
    "shared",
    "description",
];

impl Parser<'_> {
    /// One `[[limits]]` table.
    pub(super) fn limit(
        &mut self,
        t: &DeTable<'_>,
        span: Range<usize>,
        key: &str,
    ) -> Option<LimitSpec> {
        self.unknown_keys(t, key, LIMIT_KEYS);
        let members = match t.get("members") {
            Some(v) => self.selector(v, &join(key, "members")),
            None => {
                self.err(
                    span.clone(),
                    &join(key, "members"),
                    "a `members` selector (`\"network\"`, `\"self\"`, `{ members = [...] }`, `{ groups = { any = [...] } }`): this key is required",
                );
                None
            }
        };
        let direction = match t.get("direction") {
            Some(v) => match self.string(v, &join(key, "direction")).as_deref() {
                Some("out") => Some(LimitDirection::Out),
                Some("in") => Some(LimitDirection::In),
                Some("both") => Some(LimitDirection::Both),
                Some(_) => {
                    self.err(
                        v.span(),
                        &join(key, "direction"),
                        "`\"out\"` (what the members send), `\"in\"` (what they receive) or `\"both\"`",
                    );
                    None
                }
                None => None,
            },
            None => {
                self.err(
                    span.clone(),
                    &join(key, "direction"),
                    "a `direction` (`\"out\"`, `\"in\"` or `\"both\"`): this key is required",
                );
                None
            }
        };
        let max = i64::try_from(MAX_RATE).unwrap_or(i64::MAX);
        let rate = |p: &mut Self, name: &str, hi: i64| -> Result<Option<u64>, ()> {
            match t.get(name) {
                Some(v) => match p.int(v, &join(key, name), 1, hi) {
                    Some(n) => Ok(u64::try_from(n).ok()),
                    None => Err(()),
                },
                None => Ok(None),
            }
        };
        let packets = rate(self, "packets_per_sec", max);
        let bytes = rate(self, "bytes_per_sec", max);
        let burst = rate(
            self,
            "burst_ms",
            i64::try_from(MAX_BURST_MS).unwrap_or(i64::MAX),
        );
        let shared = match t.get("shared") {
            Some(v) => self.boolean(v, &join(key, "shared")),
            None => Some(false),
        };
        let id = t.get("id").and_then(|v| self.string(v, &join(key, "id")));
        let description = t
            .get("description")
            .and_then(|v| self.string(v, &join(key, "description")));
        let (Some(members), Some(direction), Ok(packets), Ok(bytes), Ok(burst), Some(shared)) =
            (members, direction, packets, bytes, burst, shared)
        else {
            return None;
        };
        Some(LimitSpec {
            id,
            members,
            direction,
            packets_per_sec: packets,
            bytes_per_sec: bytes,
            burst_ms: burst,
            shared,
            description,
            location: self.at(span),
        })
    }

    fn boolean(&mut self, v: &Val<'_>, key: &str) -> Option<bool> {
        match v.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            other => {
                self.err(
                    v.span(),
                    key,
                    format!("`true` or `false`, not {}", other.type_str()),
                );
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::policy::parse_policy;
    use crate::policy::spec::LimitDirection;

    #[test]
    fn limits_parse_with_their_lines() {
        let text = r#"
[[application]]
action = "allow"
from = "network"
to = "network"

[[limits]]
id = "batch"
members = { groups = { any = ["batch"] } }
direction = "out"
bytes_per_sec = 12_500_000
packets_per_sec = 20000
burst_ms = 50
shared = true
"#;
        let spec = parse_policy(text, "policy.toml").unwrap();
        let l = &spec.limits[0];
        assert_eq!(l.id.as_deref(), Some("batch"));
        assert_eq!(l.direction, LimitDirection::Out);
        assert_eq!(l.bytes_per_sec, Some(12_500_000));
        assert_eq!(l.packets_per_sec, Some(20_000));
        assert_eq!((l.burst_ms, l.shared), (Some(50), true));
        assert_eq!(l.location.map(|l| l.line), Some(7));
    }

    #[test]
    fn bad_limits_name_the_line_and_what_was_expected() {
        let text = "[[limits]]\nmembers = \"network\"\ndirection = \"sideways\"\nbytes_per_sec = -1\nrate = 3\n";
        let e = parse_policy(text, "policy.toml").unwrap_err().to_string();
        assert!(e.contains("policy.toml:3"), "{e}");
        assert!(e.contains("\"out\""), "{e}");
        assert!(e.contains("policy.toml:4"), "{e}");
        assert!(e.contains("an integer from 1"), "{e}");
        assert!(e.contains("limits[0].rate"), "{e}");
        let e = parse_policy("[[limits]]\nshared = 1\n", "p.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("`members` selector"), "{e}");
        assert!(e.contains("`direction`"), "{e}");
        assert!(e.contains("`true` or `false`"), "{e}");
    }
}
