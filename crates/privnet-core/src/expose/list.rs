//! Address lists of an exposure: the allow-list and the block-lists, parsed from text and compiled
//! into an immutable [`PrefixSet`].
//!
//! # Format
//! One entry per line: a CIDR prefix (`198.51.100.0/24`, `2001:db8::/32`) or a bare address (a /32
//! or /128). Everything from the first `#` or `;` to the end of the line is a comment; blank lines
//! and surrounding white space (including a `\r` before the `\n`) are ignored, and so is a UTF-8 byte
//! order mark at the start. This reads the FireHOL `.netset`/`.ipset` files (`#` comments, one
//! prefix or address per line) and the Spamhaus DROP/EDROP files (`1.2.3.0/24 ; SBL123`) as they
//! are published. Host bits below the prefix length are ignored (`10.0.0.1/8` is `10.0.0.0/8`), as
//! `ip route` and `ipset` do. Anything else on a line is an error naming the file, the line and
//! what was expected; nothing of a file with an error is used.
//!
//! # Representation
//! The entries are turned into inclusive address ranges, sorted and merged into disjoint,
//! non-adjacent intervals (one vector for IPv4, one for IPv6). A lookup is one binary search:
//! O(log n), no allocation. IPv4-mapped IPv6 addresses (`::ffff:192.0.2.1`, what a dual-stack
//! socket reports for an IPv4 client) are looked up as the IPv4 address; accordingly an IPv4-mapped
//! entry (`::ffff:192.0.2.0/120`) is the IPv4 entry, and an IPv6 entry that covers the whole mapped
//! range (`::/0`) covers every IPv4 address.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Longest line considered (bytes). The published lists have lines under 100 bytes; a longer line is
/// an error rather than an unbounded allocation.
pub const MAX_LINE: usize = 4096;
/// Most entries in one list (the biggest public block-lists hold a few hundred thousand).
pub const MAX_ENTRIES: usize = 2_000_000;

/// A problem in a list: the file (as the caller named it), the line (from 1) and what was expected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListError {
    /// The name the caller gave the list (usually its path).
    pub file: String,
    /// Line number, from 1.
    pub line: usize,
    /// What was expected, and what was found.
    pub expected: String,
}

impl fmt::Display for ListError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.expected)
    }
}

impl std::error::Error for ListError {}

/// An immutable set of IPv4 and IPv6 prefixes with a fast membership test.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PrefixSet {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
    /// An IPv6 entry shorter than /96 covers the whole IPv4-mapped range (`::/0`): every IPv4
    /// address is in the set.
    all_v4: bool,
    entries: usize,
}

impl PrefixSet {
    /// The set of `prefixes` (address, prefix length); lengths beyond the family's width are
    /// clamped to it.
    pub fn from_prefixes(prefixes: impl IntoIterator<Item = (IpAddr, u8)>) -> Self {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        let mut entries = 0;
        for (addr, len) in prefixes {
            entries += 1;
            match addr {
                IpAddr::V4(a) => v4.push(range_v4(a, len)),
                // An IPv4-mapped prefix (`::ffff:192.0.2.0/120`) is the IPv4 prefix, since lookups
                // of mapped addresses are IPv4 lookups.
                IpAddr::V6(a) => match a.to_ipv4_mapped() {
                    Some(m) if len >= 96 => v4.push(range_v4(m, len - 96)),
                    _ => v6.push(range_v6(a, len)),
                },
            }
        }
        let v6 = merge(v6);
        let all_v4 = find(&v6, u128::from(Ipv4Addr::UNSPECIFIED.to_ipv6_mapped()));
        Self {
            v4: merge(v4),
            v6,
            all_v4,
            entries,
        }
    }

    /// Whether `ip` is in the set (an IPv4-mapped IPv6 address is looked up as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => self.all_v4 || find(&self.v4, u32::from(a)),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => self.all_v4 || find(&self.v4, u32::from(v4)),
                None => find(&self.v6, u128::from(a)),
            },
        }
    }

    /// Number of entries read (before merging).
    pub fn entries(&self) -> usize {
        self.entries
    }

    /// Number of disjoint intervals after merging (IPv4, IPv6).
    pub fn intervals(&self) -> (usize, usize) {
        (self.v4.len(), self.v6.len())
    }

    /// Whether the set holds no address.
    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }
}

fn range_v4(a: Ipv4Addr, len: u8) -> (u32, u32) {
    let len = u32::from(len.min(32));
    let host = u32::MAX.checked_shr(len).unwrap_or(0);
    let lo = u32::from(a) & !host;
    (lo, lo | host)
}

fn range_v6(a: Ipv6Addr, len: u8) -> (u128, u128) {
    let len = u32::from(len.min(128));
    let host = u128::MAX.checked_shr(len).unwrap_or(0);
    let lo = u128::from(a) & !host;
    (lo, lo | host)
}

/// Sort and merge overlapping or adjacent inclusive ranges.
fn merge<T: Copy + Ord + Succ>(mut v: Vec<(T, T)>) -> Vec<(T, T)> {
    v.sort_unstable();
    let mut out: Vec<(T, T)> = Vec::with_capacity(v.len());
    for (lo, hi) in v {
        if let Some(last) = out.last_mut() {
            let touches = last.1.succ().is_none_or(|n| lo <= n);
            if touches {
                if hi > last.1 {
                    last.1 = hi;
                }
                continue;
            }
        }
        out.push((lo, hi));
    }
    out.shrink_to_fit();
    out
}

fn find<T: Copy + Ord>(v: &[(T, T)], x: T) -> bool {
    // The first interval whose end is >= x; it contains x iff its start is <= x.
    let i = v.partition_point(|&(_, hi)| hi < x);
    v.get(i).is_some_and(|&(lo, _)| lo <= x)
}

trait Succ: Sized {
    fn succ(self) -> Option<Self>;
}
impl Succ for u32 {
    fn succ(self) -> Option<Self> {
        self.checked_add(1)
    }
}
impl Succ for u128 {
    fn succ(self) -> Option<Self> {
        self.checked_add(1)
    }
}

/// Parse one entry (already stripped of comments and white space): `ADDR` or `ADDR/LEN`.
pub fn parse_entry(s: &str) -> Result<(IpAddr, u8), String> {
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let ip: IpAddr = addr.parse().map_err(|_| {
        format!(
            "an IPv4 or IPv6 address or CIDR prefix (e.g. 192.0.2.0/24 or 2001:db8::/32); found {:?}",
            clip(s)
        )
    })?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len = match len {
        None => max,
        Some(l) => match l.parse::<u8>() {
            Ok(n) if n <= max && !l.starts_with('+') => n,
            _ => {
                return Err(format!(
                    "a prefix length from 0 to {max} after the '/'; found {:?}",
                    clip(l)
                ))
            }
        },
    };
    Ok((ip, len))
}

/// What a line holds once comments and white space are gone.
fn entry_of(line: &str) -> &str {
    let end = line.find(['#', ';']).unwrap_or(line.len());
    line[..end].trim()
}

fn clip(s: &str) -> String {
    s.chars().take(60).collect()
}

/// Parse a list (`text`, named `file` in errors) into a [`PrefixSet`].
///
/// # Errors
/// The first bad line: not UTF-8, longer than [`MAX_LINE`], more than one word, not an address or
/// prefix, or beyond [`MAX_ENTRIES`].
pub fn parse_list(file: &str, text: &[u8]) -> Result<PrefixSet, ListError> {
    let text = text.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(text);
    let mut prefixes = Vec::new();
    let err = |line: usize, expected: String| ListError {
        file: file.to_owned(),
        line,
        expected,
    };
    for (i, raw) in text.split(|&b| b == b'\n').enumerate() {
        let line_no = i + 1;
        if raw.len() > MAX_LINE {
            return Err(err(
                line_no,
                format!("a line of at most {MAX_LINE} bytes; found {}", raw.len()),
            ));
        }
        let line = std::str::from_utf8(raw)
            .map_err(|_| err(line_no, "text (UTF-8); found other bytes".to_owned()))?;
        let entry = entry_of(line);
        if entry.is_empty() {
            continue;
        }
        if entry.contains(char::is_whitespace) {
            return Err(err(
                line_no,
                format!(
                    "one address or CIDR prefix per line (comments after '#' or ';'); found {:?}",
                    clip(entry)
                ),
            ));
        }
        let p = parse_entry(entry).map_err(|e| err(line_no, e))?;
        if prefixes.len() >= MAX_ENTRIES {
            return Err(err(
                line_no,
                format!("at most {MAX_ENTRIES} entries in one list"),
            ));
        }
        prefixes.push(p);
    }
    Ok(PrefixSet::from_prefixes(prefixes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn reads_firehol_and_spamhaus_formats() {
        let firehol = b"#\n# firehol_level1\n#\n0.0.0.0/8\n1.10.16.0/20\n223.254.0.0/16\n5.6.7.8\n";
        let s = parse_list("firehol_level1.netset", firehol).unwrap();
        assert_eq!(s.entries(), 4);
        assert!(s.contains(ip("1.10.31.255")));
        assert!(!s.contains(ip("1.10.32.0")));
        assert!(s.contains(ip("5.6.7.8")));
        assert!(!s.contains(ip("5.6.7.9")));
        let drop = b"; Spamhaus DROP List 2026/12/01\r\n; https://www.spamhaus.org/drop/drop.txt\r\n1.10.16.0/20 ; SBL256894\r\n2.56.192.0/22 ; SBL459831\r\n";
        let s = parse_list("drop.txt", drop).unwrap();
        assert_eq!(s.entries(), 2);
        assert!(s.contains(ip("2.56.195.1")));
        let v6 = b"2001:db8::/32 ; SBL1\n2001:db8::1\n\n   \t\n";
        let s = parse_list("drop_v6.txt", v6).unwrap();
        assert!(s.contains(ip("2001:db8:ffff::1")));
        assert!(!s.contains(ip("2001:db9::")));
        assert_eq!(s.intervals(), (0, 1));
    }

    #[test]
    fn a_bad_line_names_file_line_and_expectation() {
        let e = parse_list("lists/bad.netset", b"# ok\n10.0.0.0/8\n10.0.0.0/33\n").unwrap_err();
        assert_eq!((e.file.as_str(), e.line), ("lists/bad.netset", 3));
        assert!(e.expected.contains("prefix length from 0 to 32"), "{e}");
        assert!(e.to_string().starts_with("lists/bad.netset:3: "));
        let e = parse_list("l", b"10.0.0.0/8 10.1.0.0/16\n").unwrap_err();
        assert!(
            e.expected.contains("one address or CIDR prefix per line"),
            "{e}"
        );
        let e = parse_list("l", b"\n\nexample.com\n").unwrap_err();
        assert_eq!(e.line, 3);
        assert!(e.expected.contains("IPv4 or IPv6 address"), "{e}");
        let e = parse_list("l", b"1.2.3.4\n\xff\xfe\n").unwrap_err();
        assert_eq!(e.line, 2);
        let e = parse_list("l", b"2001:db8::/129").unwrap_err();
        assert!(e.expected.contains("0 to 128"), "{e}");
        let e = parse_list("l", b"1.2.3.0/+8").unwrap_err();
        assert_eq!(e.line, 1);
    }

    #[test]
    fn host_bits_mapped_addresses_and_the_edges() {
        let s = parse_list("l", b"\xEF\xBB\xBF10.1.2.3/8\n0.0.0.0/0\n").unwrap();
        assert!(s.contains(ip("255.255.255.255")));
        assert!(s.contains(ip("::ffff:192.0.2.1")));
        assert!(!s.contains(ip("2001:db8::1")));
        let s = parse_list("l", b"8000::/1\n255.255.255.255\n").unwrap();
        assert!(s.contains(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")));
        assert!(s.contains(ip("255.255.255.255")));
        assert!(!s.contains(ip("255.255.255.254")));
        assert!(PrefixSet::default().is_empty());
        assert!(!PrefixSet::default().contains(ip("1.1.1.1")));
    }

    #[test]
    fn ipv4_mapped_entries_are_ipv4_entries() {
        // Found by the list_parse fuzz target: a mapped entry went to the IPv6 table, where the
        // (IPv4) lookup of a mapped address never looks.
        let s = parse_list("l", b"::ffff:192.0.2.1\n::ffff:198.51.100.0/120\n").unwrap();
        assert!(s.contains(ip("::ffff:192.0.2.1")));
        assert!(s.contains(ip("192.0.2.1")));
        assert!(s.contains(ip("198.51.100.200")));
        assert!(!s.contains(ip("192.0.2.2")));
        assert_eq!(s.intervals(), (2, 0));
        // An IPv6 prefix that covers the mapped range covers every IPv4 address.
        let s = parse_list("l", b"::/0\n").unwrap();
        assert!(s.contains(ip("203.0.113.9")) && s.contains(ip("::ffff:203.0.113.9")));
        let s = parse_list("l", b"::ffff:0:0/95\n").unwrap();
        assert!(s.contains(ip("203.0.113.9")));
        let s = parse_list("l", b"2001:db8::/32\n").unwrap();
        assert!(!s.contains(ip("203.0.113.9")));
    }

    #[test]
    fn adjacent_and_nested_prefixes_merge() {
        let s = parse_list("l", b"10.0.0.0/25\n10.0.0.128/25\n10.0.0.7\n10.0.1.0/24\n").unwrap();
        assert_eq!(s.intervals(), (1, 0));
        assert_eq!(s.entries(), 4);
    }

    /// A naive model: the list of (network, length) checked one by one.
    fn naive_contains(prefixes: &[(IpAddr, u8)], x: IpAddr) -> bool {
        prefixes.iter().any(|&(a, len)| match (a, x) {
            (IpAddr::V4(a), IpAddr::V4(x)) => {
                let l = u32::from(len.min(32));
                len == 0 || (u32::from(a) >> (32 - l)) == (u32::from(x) >> (32 - l))
            }
            (IpAddr::V6(a), IpAddr::V6(x)) => {
                let l = u32::from(len.min(128));
                len == 0 || (u128::from(a) >> (128 - l)) == (u128::from(x) >> (128 - l))
            }
            _ => false,
        })
    }

    fn arb_v4() -> impl Strategy<Value = IpAddr> {
        // A small space so that prefixes overlap and lookups hit.
        (0u32..4, any::<u8>(), any::<u8>())
            .prop_map(|(a, b, c)| IpAddr::V4(Ipv4Addr::new(10, a as u8, b, c)))
    }

    fn arb_v6() -> impl Strategy<Value = IpAddr> {
        (0u16..4, any::<u16>(), any::<u16>())
            .prop_map(|(a, b, c)| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, a, b, 0, 0, 0, c)))
    }

    fn arb_prefix() -> impl Strategy<Value = (IpAddr, u8)> {
        prop_oneof![
            (arb_v4(), 8u8..=32).prop_map(|(a, l)| (a, l)),
            (arb_v6(), 32u8..=128).prop_map(|(a, l)| (a, l)),
        ]
    }

    proptest! {
        #[test]
        fn lookup_matches_a_linear_scan(
            prefixes in prop::collection::vec(arb_prefix(), 0..60),
            probes in prop::collection::vec(prop_oneof![arb_v4(), arb_v6()], 1..60),
        ) {
            let set = PrefixSet::from_prefixes(prefixes.iter().copied());
            for x in probes {
                prop_assert_eq!(set.contains(x), naive_contains(&prefixes, x), "{}", x);
            }
            // Merged intervals are sorted, disjoint and not adjacent.
            for w in set.v4.windows(2) {
                prop_assert!(w[0].1.checked_add(1).is_some_and(|n| n < w[1].0));
            }
            for w in set.v6.windows(2) {
                prop_assert!(w[0].1.checked_add(1).is_some_and(|n| n < w[1].0));
            }
        }

        #[test]
        fn the_parser_agrees_with_a_naive_one(
            lines in prop::collection::vec(
                prop_oneof![
                    arb_prefix().prop_map(|(a, l)| format!("{a}/{l}")),
                    arb_prefix().prop_map(|(a, l)| format!("  {a}/{l} ; SBL{l}\r")),
                    arb_v4().prop_map(|a| format!("{a}")),
                    Just("# comment".to_owned()),
                    Just(String::new()),
                    Just("10.0.0.0/40".to_owned()),
                    Just("nonsense here".to_owned()),
                    "[ -~]{0,12}",
                ],
                0..30,
            ),
        ) {
            let text = lines.join("\n");
            // The naive parser: split, cut comments, trim, parse with std and the expected bounds.
            let mut naive = Ok(Vec::new());
            for (i, l) in lines.iter().enumerate() {
                let e = l.split(['#', ';']).next().unwrap_or("").trim();
                if e.is_empty() { continue; }
                let parsed = (|| {
                    let (a, len) = match e.split_once('/') {
                        Some((a, len)) => (a.parse::<IpAddr>().ok()?, Some(len)),
                        None => (e.parse::<IpAddr>().ok()?, None),
                    };
                    let max = if a.is_ipv4() { 32 } else { 128 };
                    let len = match len {
                        None => max,
                        Some(s) if s.bytes().all(|b| b.is_ascii_digit()) => {
                            s.parse::<u8>().ok().filter(|&n| n <= max)?
                        }
                        Some(_) => return None,
                    };
                    Some((a, len))
                })();
                match parsed {
                    Some(p) => { if let Ok(v) = &mut naive { v.push(p); } }
                    None => { naive = Err(i + 1); break; }
                }
            }
            match (parse_list("f", text.as_bytes()), naive) {
                (Ok(set), Ok(v)) => {
                    prop_assert_eq!(set, PrefixSet::from_prefixes(v));
                }
                (Err(e), Err(line)) => prop_assert_eq!(e.line, line),
                (got, want) => prop_assert!(false, "parser {:?} vs naive {:?}", got, want),
            }
        }
    }
}
