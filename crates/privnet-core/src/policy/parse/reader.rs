//! The scalar half of the TOML front end: a problem collector that knows the text (for line and
//! column), strings, lists, bounded integers, prefixes, port ranges, and the messages for unknown
//! keys (with a nearest-key hint).

use std::net::IpAddr;
use std::ops::Range;

use ipnetwork::IpNetwork;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::policy::error::{Location, Problems};
use crate::policy::spec::PortRange;

pub(super) type Val<'i> = Spanned<DeValue<'i>>;

/// Longest list in one key (members, prefixes, ports, ...).
pub(super) const MAX_LIST: usize = 1 << 16;

/// Walks one document, collecting problems.
pub(super) struct Parser<'t> {
    pub(super) text: &'t str,
    pub(super) problems: Problems,
}

impl Parser<'_> {
    pub(super) fn at(&self, span: Range<usize>) -> Option<Location> {
        Some(Location::of_offset(self.text, span.start))
    }

    pub(super) fn err(&mut self, span: Range<usize>, key: &str, expected: impl Into<String>) {
        let at = self.at(span);
        self.problems.push(at, key, expected);
    }

    /// Report keys of `t` not in `known`.
    pub(super) fn unknown_keys(&mut self, t: &DeTable<'_>, prefix: &str, known: &[&str]) {
        for (k, _) in t.iter() {
            let name: &str = k.get_ref();
            if !known.contains(&name) {
                let key = join(prefix, &safe(name));
                let msg = unknown_key(name, known);
                self.err(k.span(), &key, msg);
            }
        }
    }

    // --- scalars -------------------------------------------------------------------------

    pub(super) fn string(&mut self, v: &Val<'_>, key: &str) -> Option<String> {
        match v.get_ref() {
            DeValue::String(s) => Some(s.to_string()),
            other => {
                self.err(v.span(), key, format!("a string, not {}", other.type_str()));
                None
            }
        }
    }

    /// One string or an array of strings.
    pub(super) fn strings(&mut self, v: &Val<'_>, key: &str) -> Option<Vec<String>> {
        let items = self.list(v)?;
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for item in &items {
            match item.get_ref() {
                DeValue::String(s) => out.push(s.to_string()),
                other => {
                    self.err(
                        item.span(),
                        key,
                        format!("a string, not {}", other.type_str()),
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    /// A scalar as a one-item list, or the items of an array (bounded).
    pub(super) fn list<'a, 'i>(&mut self, v: &'a Val<'i>) -> Option<Vec<&'a Val<'i>>> {
        match v.get_ref() {
            DeValue::Array(a) => {
                if a.len() > MAX_LIST {
                    self.err(v.span(), "", format!("a list of at most {MAX_LIST} items"));
                    return None;
                }
                Some(a.iter().collect())
            }
            _ => Some(vec![v]),
        }
    }

    pub(super) fn int(&mut self, v: &Val<'_>, key: &str, min: i64, max: i64) -> Option<i64> {
        let range = format!("an integer from {min} to {max}");
        match v.get_ref() {
            DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
                Ok(n) if (min..=max).contains(&n) => Some(n),
                _ => {
                    self.err(v.span(), key, format!("{range}, not {}", safe(i.as_str())));
                    None
                }
            },
            other => {
                self.err(v.span(), key, format!("{range}, not {}", other.type_str()));
                None
            }
        }
    }
}

/// `10.0.0.0/8`, `2001:db8::/32`, or a bare address (a host prefix).
pub(super) fn parse_prefix(s: &str) -> Option<IpNetwork> {
    if let Ok(a) = s.parse::<IpAddr>() {
        return Some(IpNetwork::from(a));
    }
    let (addr, len) = s.split_once('/')?;
    let addr: IpAddr = addr.parse().ok()?;
    let len: u8 = len.parse().ok()?;
    IpNetwork::new(addr, len).ok()
}

/// `80` or `8000-8100`.
pub(super) fn parse_port_range(s: &str) -> Option<PortRange> {
    let (lo, hi) = match s.split_once('-') {
        Some((a, b)) => (a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?),
        None => {
            let p = s.trim().parse::<u16>().ok()?;
            (p, p)
        }
    };
    (lo <= hi).then_some(PortRange { lo, hi })
}

pub(super) fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

/// A value safe to echo in a message (bounded, no control characters).
pub(super) fn safe(s: &str) -> String {
    let mut out: String = s
        .chars()
        .take(64)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if s.chars().count() > 64 {
        out.push('…');
    }
    out
}

pub(super) fn unknown_key(name: &str, known: &[&str]) -> String {
    let list: Vec<String> = known.iter().map(|k| format!("`{k}`")).collect();
    match nearest(name, known) {
        Some(k) => format!(
            "a known key; did you mean `{k}`? (one of {})",
            list.join(", ")
        ),
        None => format!("one of {}", list.join(", ")),
    }
}

/// The known key within a third of its length in edits of `name`, if any.
fn nearest<'k>(name: &str, known: &[&'k str]) -> Option<&'k str> {
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

/// Levenshtein distance (both inputs are short).
fn edit_distance(a: &[u8], b: &[u8]) -> usize {
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j + 1] + 1)
                .min(cur[j] + 1)
                .min(prev[j] + usize::from(ca != cb));
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}
