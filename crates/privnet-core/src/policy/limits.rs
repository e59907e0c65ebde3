//! Per-member rate limits (`[[limits]]`, docs/POLICY.md §17): the compiled form of a limit, the
//! token bucket, and the [`Limiter`] that holds the buckets of one enforcing member. Pure: time is
//! an argument, nothing allocates per packet once a peer's buckets exist.
//!
//! A limit covers the traffic between a selected member and any other member, in the direction
//! it names, and is enforced at both ends of that traffic: at the enforcing member `E` talking to
//! peer `P`,
//!
//! | limit on `S` | `E` sending to `P` is counted if | `E` receiving from `P` is counted if |
//! |---|---|---|
//! | `out` | `E` ∈ `S` (E's own sending) | `P` ∈ `S` (P's sending, reaching E) |
//! | `in`  | `P` ∈ `S` (P's receiving)   | `E` ∈ `S` (E's own receiving) |
//!
//! Each (limit, peer, direction) has its own bucket, or with `shared` each (limit, direction)
//! at `E`. The receiver's check is the authoritative one (a sender may ignore its own policy).

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

use super::error::{Location, Problems};
use super::flow::{Direction, MemberRef};
use super::spec::{Atom, LimitDirection, LimitSpec, Selector};

/// Longest limit id.
const MAX_ID_LEN: usize = 128;
/// Highest rate accepted (packets or bytes per second): 2^40, about 1.1 TB/s.
pub const MAX_RATE: u64 = 1 << 40;
/// Default burst: a full bucket lasts this long at the limit's rate.
pub const DEFAULT_BURST_MS: u64 = 100;
/// Longest burst accepted.
pub const MAX_BURST_MS: u64 = 60_000;
/// A byte bucket always holds at least one largest inner packet, so that every packet can pass.
pub const MIN_BURST_BYTES: u64 = 65_535;
/// Most limits in one policy.
pub const MAX_LIMITS: usize = 1024;

/// A limit as the policy in force keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitInfo {
    /// The stable id: the file's `id`, else `limits/index`.
    pub id: String,
    /// Which traffic.
    pub direction: LimitDirection,
    /// Packets per second.
    pub packets_per_sec: Option<u64>,
    /// Bytes per second.
    pub bytes_per_sec: Option<u64>,
    /// Burst in milliseconds at the rate.
    pub burst_ms: u64,
    /// One bucket per enforcing member instead of one per pair.
    pub shared: bool,
    /// Where it starts in the file.
    pub location: Option<Location>,
    pub(crate) members: Selector,
}

impl LimitInfo {
    /// Whether the member `m` (`local`: the enforcing member itself) is selected.
    pub fn selects(&self, m: &MemberRef, local: bool) -> bool {
        self.members.0.iter().any(|a| match a {
            Atom::Any | Atom::Network => true,
            Atom::Local => local,
            Atom::Match(x) => {
                (x.members.is_empty() || x.members.contains(&m.name))
                    && (x.groups_any.is_empty()
                        || x.groups_any.iter().any(|g| m.groups.contains(g)))
                    && x.groups_all.iter().all(|g| m.groups.contains(g))
            }
        })
    }

    /// Whether the limit counts `E` (`local`) talking to `peer` in `dir`.
    fn covers(&self, local: &MemberRef, peer: &MemberRef, dir: Direction) -> bool {
        // The member whose sending (`out`) or receiving (`in`) this packet is.
        let (sender, receiver) = match dir {
            Direction::Outbound => ((local, true), (peer, false)),
            Direction::Inbound => ((peer, false), (local, true)),
        };
        let out = self.selects(sender.0, sender.1);
        let inn = self.selects(receiver.0, receiver.1);
        match self.direction {
            LimitDirection::Out => out,
            LimitDirection::In => inn,
            LimitDirection::Both => out || inn,
        }
    }

    /// The same limit for bucket purposes (state is kept across a reload when this holds).
    fn same_rates(&self, o: &Self) -> bool {
        self.id == o.id
            && self.direction == o.direction
            && self.packets_per_sec == o.packets_per_sec
            && self.bytes_per_sec == o.bytes_per_sec
            && self.burst_ms == o.burst_ms
            && self.shared == o.shared
            && self.members == o.members
    }
}

/// Check and compile the limits of a policy; problems go to `p`.
pub(crate) fn compile_limits(specs: &[LimitSpec], p: &mut Problems) -> Vec<LimitInfo> {
    if specs.len() > MAX_LIMITS {
        p.push(
            None,
            "limits",
            format!(
                "at most {MAX_LIMITS} limits (this policy has {})",
                specs.len()
            ),
        );
    }
    let mut ids: HashMap<&str, Option<Location>> = HashMap::new();
    let mut out = Vec::with_capacity(specs.len());
    for (i, l) in specs.iter().enumerate() {
        let key = format!("limits[{i}]");
        let at = l.location;
        let id = match &l.id {
            Some(id) => {
                let ok = !id.is_empty()
                    && id.len() <= MAX_ID_LEN
                    && id
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
                if !ok {
                    p.push(
                        at,
                        format!("{key}.id"),
                        format!("an id of 1 to {MAX_ID_LEN} letters, digits, `-`, `_`, `.` or `:`"),
                    );
                }
                if let Some(first) = ids.insert(id.as_str(), at) {
                    let line = first.map_or(String::new(), |l| format!(" (line {})", l.line));
                    p.push(
                        at,
                        format!("{key}.id"),
                        format!("a unique limit id: `{id}` is already used{line}"),
                    );
                }
                id.clone()
            }
            None => format!("limits/{i}"),
        };
        if l.packets_per_sec.is_none() && l.bytes_per_sec.is_none() {
            p.push(
                at,
                key.clone(),
                "a rate: `packets_per_sec`, `bytes_per_sec` or both",
            );
        }
        for (name, v) in [
            ("packets_per_sec", l.packets_per_sec),
            ("bytes_per_sec", l.bytes_per_sec),
        ] {
            if v.is_some_and(|v| v == 0 || v > MAX_RATE) {
                p.push(
                    at,
                    format!("{key}.{name}"),
                    format!("a rate from 1 to {MAX_RATE} per second (to block traffic, write a `deny` rule)"),
                );
            }
        }
        if l.burst_ms.is_some_and(|b| b == 0 || b > MAX_BURST_MS) {
            p.push(
                at,
                format!("{key}.burst_ms"),
                format!("a burst from 1 to {MAX_BURST_MS} milliseconds"),
            );
        }
        if l.members.0.is_empty() {
            p.push(at, format!("{key}.members"), "at least one selector");
        }
        for a in &l.members.0 {
            if let Atom::Match(m) = a {
                if m.has_address() || !m.has_identity() {
                    p.push(
                        at,
                        format!("{key}.members"),
                        "members by identity: `\"network\"`, `\"self\"`, `{ members = [...] }` or `{ groups = ... }` (limits are per member, not per address)",
                    );
                }
            }
        }
        out.push(LimitInfo {
            id,
            direction: l.direction,
            packets_per_sec: l.packets_per_sec,
            bytes_per_sec: l.bytes_per_sec,
            burst_ms: l.burst_ms.unwrap_or(DEFAULT_BURST_MS),
            shared: l.shared,
            location: at,
            members: l.members.clone(),
        });
    }
    out
}

/// A token bucket driven by `now`: `rate` tokens per second, at most `burst` held; it starts
/// full. Tokens are kept in nano-units, so no rate is rounded away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenBucket {
    rate: u64,
    cap: u128,
    tokens: u128,
    last: Instant,
}

impl TokenBucket {
    const NANO: u128 = 1_000_000_000;

    /// A full bucket of `burst` tokens refilled at `rate` per second.
    pub fn new(rate: u64, burst: u64, now: Instant) -> Self {
        let cap = u128::from(burst.max(1)) * Self::NANO;
        Self {
            rate,
            cap,
            tokens: cap,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last);
        if dt > Duration::ZERO {
            let add = u128::from(self.rate).saturating_mul(dt.as_nanos());
            self.tokens = self.tokens.saturating_add(add).min(self.cap);
            self.last = now;
        }
    }

    /// Whether `n` tokens are there now (without taking them).
    pub fn has(&mut self, n: u64, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= u128::from(n) * Self::NANO
    }

    /// Take `n` tokens (call after [`Self::has`] said yes; saturates at empty).
    pub fn take(&mut self, n: u64) {
        self.tokens = self.tokens.saturating_sub(u128::from(n) * Self::NANO);
    }

    /// Take `n` tokens if they are there.
    pub fn try_take(&mut self, n: u64, now: Instant) -> bool {
        let ok = self.has(n, now);
        if ok {
            self.take(n);
        }
        ok
    }

    /// Whole tokens held now.
    pub fn available(&mut self, now: Instant) -> u64 {
        self.refill(now);
        u64::try_from(self.tokens / Self::NANO).unwrap_or(u64::MAX)
    }
}

/// The packet and byte buckets of one (limit, peer or shared, direction).
#[derive(Clone, Copy, Debug)]
struct Buckets {
    packets: Option<TokenBucket>,
    bytes: Option<TokenBucket>,
}

impl Buckets {
    fn new(l: &LimitInfo, now: Instant) -> Self {
        let burst = |rate: u64| {
            u64::try_from(u128::from(rate) * u128::from(l.burst_ms) / 1000).unwrap_or(u64::MAX)
        };
        Self {
            packets: l
                .packets_per_sec
                .map(|r| TokenBucket::new(r, burst(r).max(1), now)),
            bytes: l
                .bytes_per_sec
                .map(|r| TokenBucket::new(r, burst(r).max(MIN_BURST_BYTES), now)),
        }
    }

    /// Whether both buckets have room for a packet of `len` bytes.
    fn has(&mut self, len: u64, now: Instant) -> bool {
        self.packets.as_mut().is_none_or(|b| b.has(1, now))
            && self.bytes.as_mut().is_none_or(|b| b.has(len, now))
    }

    /// Charge a packet of `len` bytes.
    fn take(&mut self, len: u64) {
        if let Some(x) = self.packets.as_mut() {
            x.take(1);
        }
        if let Some(x) = self.bytes.as_mut() {
            x.take(len);
        }
    }
}

/// One limit's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct LimitCount {
    /// Stable id.
    pub id: String,
    /// `out`, `in` or `both`.
    pub direction: &'static str,
    /// Packets within the limit.
    pub passed: u64,
    /// Packets over the limit (dropped).
    pub dropped: u64,
    /// Their inner bytes.
    pub dropped_bytes: u64,
}

#[derive(Clone, Copy, Debug, Default)]
struct Count {
    passed: u64,
    dropped: u64,
    dropped_bytes: u64,
}

/// The rate limits of one enforcing member: the limits in force, the buckets of its peers, the
/// counters. `P` identifies a peer.
#[derive(Debug)]
pub struct Limiter<P> {
    local: MemberRef,
    limits: Vec<LimitInfo>,
    counts: Vec<Count>,
    /// Registered peers' identities.
    peers: HashMap<P, MemberRef>,
    /// Per peer, per direction (outbound, inbound): the (limit index, buckets) that cover it.
    buckets: HashMap<P, [Vec<(u32, Buckets)>; 2]>,
    /// Shared buckets: per limit, per direction.
    shared: Vec<[Buckets; 2]>,
}

fn dir_index(d: Direction) -> usize {
    match d {
        Direction::Outbound => 0,
        Direction::Inbound => 1,
    }
}

const DIRS: [Direction; 2] = [Direction::Outbound, Direction::Inbound];

impl<P: Copy + Eq + Hash> Limiter<P> {
    /// No limits yet, for the member `local`.
    pub fn new(local: MemberRef) -> Self {
        Self {
            local,
            limits: Vec::new(),
            counts: Vec::new(),
            peers: HashMap::new(),
            buckets: HashMap::new(),
            shared: Vec::new(),
        }
    }

    /// Whether any limit is in force (the per-packet branch).
    #[inline]
    pub fn active(&self) -> bool {
        !self.limits.is_empty()
    }

    /// The limits in force.
    pub fn limits(&self) -> &[LimitInfo] {
        &self.limits
    }

    /// Replace the limits. A limit whose id, members and rates did not change keeps its buckets'
    /// state and its counters; any other starts with full buckets and zero counters.
    pub fn set_limits(&mut self, limits: &[LimitInfo], now: Instant) {
        let old = std::mem::take(&mut self.limits);
        let old_counts = std::mem::take(&mut self.counts);
        let old_shared = std::mem::take(&mut self.shared);
        // new index -> old index of the same limit
        let same: Vec<Option<usize>> = limits
            .iter()
            .map(|l| old.iter().position(|o| o.same_rates(l)))
            .collect();
        self.counts = same
            .iter()
            .map(|o| {
                o.and_then(|i| old_counts.get(i).copied())
                    .unwrap_or_default()
            })
            .collect();
        self.shared = limits
            .iter()
            .zip(&same)
            .map(|(l, o)| {
                o.and_then(|i| old_shared.get(i).copied())
                    .unwrap_or_else(|| [Buckets::new(l, now), Buckets::new(l, now)])
            })
            .collect();
        self.limits = limits.to_vec();
        let mut old_buckets = std::mem::take(&mut self.buckets);
        let peers: Vec<(P, MemberRef)> = self.peers.iter().map(|(p, m)| (*p, m.clone())).collect();
        for (p, m) in peers {
            let prev = old_buckets.remove(&p);
            self.build_peer(p, &m, prev, &old, &same, now);
        }
    }

    fn build_peer(
        &mut self,
        p: P,
        m: &MemberRef,
        prev: Option<[Vec<(u32, Buckets)>; 2]>,
        old: &[LimitInfo],
        same: &[Option<usize>],
        now: Instant,
    ) {
        let mut sets: [Vec<(u32, Buckets)>; 2] = [Vec::new(), Vec::new()];
        for (i, l) in self.limits.iter().enumerate() {
            for d in DIRS {
                if !l.covers(&self.local, m, d) {
                    continue;
                }
                let kept = same.get(i).copied().flatten().and_then(|oi| {
                    let _ = old.get(oi)?;
                    prev.as_ref()?[dir_index(d)]
                        .iter()
                        .find(|(li, _)| *li as usize == oi)
                        .map(|(_, b)| *b)
                });
                let b = kept.unwrap_or_else(|| Buckets::new(l, now));
                sets[dir_index(d)].push((u32::try_from(i).unwrap_or(u32::MAX), b));
            }
        }
        if sets.iter().all(Vec::is_empty) {
            self.buckets.remove(&p);
        } else {
            self.buckets.insert(p, sets);
        }
    }

    /// Register (or re-register) a peer's identity.
    pub fn set_peer(&mut self, p: P, member: MemberRef, now: Instant) {
        let same: Vec<Option<usize>> = (0..self.limits.len()).map(Some).collect();
        let prev = if self.peers.get(&p) == Some(&member) {
            self.buckets.remove(&p)
        } else {
            None
        };
        let limits = self.limits.clone();
        self.build_peer(p, &member, prev, &limits, &same, now);
        self.peers.insert(p, member);
    }

    /// Forget a peer.
    pub fn remove_peer(&mut self, p: &P) {
        self.peers.remove(p);
        self.buckets.remove(p);
    }

    /// Charge a packet of `len` inner bytes between this member and `p` in `dir`: `Ok` if every
    /// limit covering it has room (all of them are then charged), else the first limit without
    /// room (nothing is charged; that limit counts the drop).
    pub fn check(&mut self, p: &P, dir: Direction, len: usize, now: Instant) -> Result<(), u32> {
        let Some(sets) = self.buckets.get_mut(p) else {
            return Ok(());
        };
        let len = len as u64;
        let d = dir_index(dir);
        let set = &mut sets[d];
        let limits = &self.limits;
        let shared = &mut self.shared;
        let mut over = None;
        for (li, b) in set.iter_mut() {
            let l = *li as usize;
            let ok = if limits.get(l).is_some_and(|x| x.shared) {
                shared.get_mut(l).is_none_or(|s| s[d].has(len, now))
            } else {
                b.has(len, now)
            };
            if !ok {
                over = Some(*li);
                break;
            }
        }
        if let Some(li) = over {
            if let Some(c) = self.counts.get_mut(li as usize) {
                c.dropped += 1;
                c.dropped_bytes += len;
            }
            return Err(li);
        }
        for (li, b) in set.iter_mut() {
            let l = *li as usize;
            if limits.get(l).is_some_and(|x| x.shared) {
                if let Some(s) = shared.get_mut(l) {
                    s[d].take(len);
                }
            } else {
                b.take(len);
            }
            if let Some(c) = self.counts.get_mut(l) {
                c.passed += 1;
            }
        }
        Ok(())
    }

    /// The counters, in limit order.
    pub fn counters(&self) -> Vec<LimitCount> {
        self.limits
            .iter()
            .zip(&self.counts)
            .map(|(l, c)| LimitCount {
                id: l.id.clone(),
                direction: l.direction.name(),
                passed: c.passed,
                dropped: c.dropped,
                dropped_bytes: c.dropped_bytes,
            })
            .collect()
    }
}

#[cfg(test)]
#[path = "limits/tests.rs"]
mod tests;
