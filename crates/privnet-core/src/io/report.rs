//! What the driver tells the operator about traffic it refuses and about peer events, without
//! flooding the log: hostile input is summarised per source every [`SUMMARY_EVERY`] ("dropped
//! 5,663 datagrams from 10.0.0.9 in the last 10 s: bad_type 5,322, too_short 341"), and
//! repetitive per-peer lines (a member whose source port alternates on every packet) are printed at
//! most once per [`REPEAT_EVERY`] with the count of the ones held back. Pure state: time comes in.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::error::{DropReason, DROP_REASONS};

/// How often the drop summary is logged.
pub(crate) const SUMMARY_EVERY: Duration = Duration::from_secs(10);
/// Sources with fewer drops than this in a window are not named (a stray duplicate is no news).
const SUMMARY_MIN_DROPS: u64 = 20;
/// Sources tracked per window; drops from further sources are summed as "other sources".
const MAX_SOURCES: usize = 256;
/// Sources named per summary (the busiest).
const NAMED_SOURCES: usize = 5;
/// A repetitive per-peer line is printed at most this often.
pub(crate) const REPEAT_EVERY: Duration = Duration::from_secs(10);
/// Peers tracked by the repeat limiter (it forgets everything beyond, then starts over).
const MAX_REPEAT_KEYS: usize = 4096;

#[derive(Clone)]
struct Tally {
    total: u64,
    reasons: [u32; DROP_REASONS],
}

impl Default for Tally {
    fn default() -> Self {
        Self {
            total: 0,
            reasons: [0; DROP_REASONS],
        }
    }
}

impl Tally {
    fn add(&mut self, reason: DropReason) {
        self.total += 1;
        if let Some(c) = self.reasons.get_mut(reason as usize) {
            *c = c.saturating_add(1);
        }
    }

    fn describe(&self) -> String {
        let mut parts: Vec<(u32, &str)> = DropReason::ALL
            .iter()
            .filter_map(|r| {
                let n = self.reasons.get(*r as usize).copied().unwrap_or(0);
                (n > 0).then(|| (n, r.as_str()))
            })
            .collect();
        parts.sort_by_key(|p| std::cmp::Reverse(p.0));
        parts
            .iter()
            .map(|(n, r)| format!("{r} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Refused datagrams by source, summarised per window.
pub(crate) struct DropSummary {
    window_start: Instant,
    by_source: HashMap<IpAddr, Tally>,
    other: Tally,
}

impl DropSummary {
    pub(crate) fn new(now: Instant) -> Self {
        Self {
            window_start: now,
            by_source: HashMap::new(),
            other: Tally::default(),
        }
    }

    /// Count one refused datagram from `src` (the drop path only: never a delivered packet).
    #[inline]
    pub(crate) fn record(&mut self, src: IpAddr, reason: DropReason) {
        if let Some(t) = self.by_source.get_mut(&src) {
            t.add(reason);
        } else if self.by_source.len() < MAX_SOURCES {
            let mut t = Tally::default();
            t.add(reason);
            self.by_source.insert(src, t);
        } else {
            self.other.add(reason);
        }
    }

    /// At the end of a window, the lines to log (busiest sources first), and a new window.
    pub(crate) fn flush(&mut self, now: Instant) -> Vec<String> {
        let span = now.saturating_duration_since(self.window_start);
        if span < SUMMARY_EVERY {
            return Vec::new();
        }
        let mut sources: Vec<(IpAddr, Tally)> = self
            .by_source
            .drain()
            .filter(|(_, t)| t.total >= SUMMARY_MIN_DROPS)
            .collect();
        sources.sort_by_key(|s| std::cmp::Reverse(s.1.total));
        let secs = span.as_secs();
        let mut lines: Vec<String> = sources
            .iter()
            .take(NAMED_SOURCES)
            .map(|(ip, t)| {
                format!(
                    "dropped {} datagrams from {ip} in the last {secs} s: {}",
                    t.total,
                    t.describe()
                )
            })
            .collect();
        let rest: u64 = sources
            .iter()
            .skip(NAMED_SOURCES)
            .map(|(_, t)| t.total)
            .sum::<u64>()
            + self.other.total;
        if rest >= SUMMARY_MIN_DROPS {
            lines.push(format!(
                "dropped {rest} more datagrams from other sources in the last {secs} s"
            ));
        }
        self.by_source.clear();
        self.other = Tally::default();
        self.window_start = now;
        lines
    }
}

/// At most one line per key and [`REPEAT_EVERY`].
pub(crate) struct Repeats<K> {
    last: HashMap<K, (Instant, u64)>,
}

impl<K: std::hash::Hash + Eq> Default for Repeats<K> {
    fn default() -> Self {
        Self {
            last: HashMap::new(),
        }
    }
}

impl<K: std::hash::Hash + Eq> Repeats<K> {
    /// `Some(held_back)` if the line for `key` may be printed now (with the number of lines held
    /// back since the last one), `None` to hold this one back.
    pub(crate) fn allow(&mut self, key: K, now: Instant) -> Option<u64> {
        if self.last.len() >= MAX_REPEAT_KEYS && !self.last.contains_key(&key) {
            self.last.clear();
        }
        match self.last.get_mut(&key) {
            Some((at, held)) if now.saturating_duration_since(*at) < REPEAT_EVERY => {
                *held += 1;
                None
            }
            Some((at, held)) => {
                *at = now;
                Some(std::mem::take(held))
            }
            None => {
                self.last.insert(key, (now, 0));
                Some(0)
            }
        }
    }

    /// Forget `key` (its next line prints at once).
    pub(crate) fn forget(&mut self, key: &K) {
        self.last.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_summarised_per_source_every_window() {
        let t0 = Instant::now();
        let mut s = DropSummary::new(t0);
        let bad: IpAddr = "10.0.0.9".parse().unwrap();
        for _ in 0..5_322 {
            s.record(bad, DropReason::BadType);
        }
        for _ in 0..341 {
            s.record(bad, DropReason::TooShort);
        }
        s.record("10.0.0.10".parse().unwrap(), DropReason::Duplicate);
        assert!(
            s.flush(t0 + Duration::from_secs(5)).is_empty(),
            "window not over"
        );
        let lines = s.flush(t0 + SUMMARY_EVERY);
        assert_eq!(
            lines,
            vec![
                "dropped 5663 datagrams from 10.0.0.9 in the last 10 s: bad_type 5322, too_short 341"
                    .to_owned()
            ],
            "a single stray drop is not named"
        );
        assert!(s.flush(t0 + SUMMARY_EVERY * 2).is_empty(), "a new window");
    }

    #[test]
    fn sources_beyond_the_bound_are_summed() {
        let t0 = Instant::now();
        let mut s = DropSummary::new(t0);
        for i in 0..(MAX_SOURCES as u32 + 100) {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            s.record(ip, DropReason::BadMac1);
        }
        assert_eq!(s.by_source.len(), MAX_SOURCES);
        let lines = s.flush(t0 + SUMMARY_EVERY);
        assert_eq!(
            lines,
            vec!["dropped 100 more datagrams from other sources in the last 10 s".to_owned()]
        );
    }

    #[test]
    fn repeats_print_once_per_window_with_the_count_held_back() {
        let t0 = Instant::now();
        let mut r: Repeats<u32> = Repeats::default();
        assert_eq!(r.allow(1, t0), Some(0));
        for i in 1..=50 {
            assert_eq!(r.allow(1, t0 + Duration::from_millis(i)), None);
        }
        assert_eq!(r.allow(2, t0), Some(0), "another peer is not held back");
        assert_eq!(r.allow(1, t0 + REPEAT_EVERY), Some(50));
        r.forget(&1);
        assert_eq!(r.allow(1, t0 + REPEAT_EVERY), Some(0));
    }
}
