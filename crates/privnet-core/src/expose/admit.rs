//! The admission decision for a new outside connection (TCP) or flow (UDP) of one exposure, and the
//! byte budget of the flows it admitted. Pure: the caller passes `now` and the source address.
//!
//! Checks, in this order (the first that fails is the verdict's reason):
//! 1. **allow-list**: when one is configured, the source must be in it ([`Refusal::NotAllowed`]);
//! 2. **block-lists**: the source must be in none ([`Refusal::BlockListed`]; an address both allowed
//!    and block-listed is refused: a block-list names known bad actors);
//! 3. **total cap** on concurrent connections/flows of the exposure ([`Refusal::TotalCap`]);
//! 4. **per-source cap** on concurrent connections/flows ([`Refusal::SourceCap`]);
//! 5. **per-source rate** of new connections/flows, `governor`'s GCRA ([`Refusal::ConnectionRate`]);
//!    a connection refused by a cap does not spend a rate token.
//!
//! A source is an IPv4 address or the /64 of an IPv6 address (one host owns a /64 and could rotate
//! through it), IPv4-mapped IPv6 counting as IPv4. The tables are bounded: at most
//! [`AdmissionConfig::max_sources`] sources are tracked by each limiter (beyond it, after a garbage
//! collection of idle sources, new sources are refused with [`Refusal::TooManySources`]); the
//! concurrency table holds only sources with a live connection, so it is bounded by the total cap
//! or `max_sources`.
//!
//! Bytes per second per source ([`Admission::bytes`]) throttle both directions of admitted flows:
//! TCP waits for the budget (the answer is how long), UDP drops the datagram.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use governor::clock::{Clock, Reference};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::HashMapStateStore;
use governor::{Quota, RateLimiter};

use super::list::PrefixSet;
use crate::ratelimit::SourceKey;

/// Why a connection, flow or datagram was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Refusal {
    /// An allow-list is configured and the source is not in it.
    NotAllowed,
    /// The source is in a block-list.
    BlockListed,
    /// The exposure's cap on concurrent connections is reached.
    TotalCap,
    /// The source's cap on concurrent connections is reached.
    SourceCap,
    /// The source opens connections faster than its rate.
    ConnectionRate,
    /// A datagram beyond the source's bytes per second (UDP; TCP is slowed down instead).
    ByteRate,
    /// The limiter tables are full of active sources.
    TooManySources,
    /// No target to forward to (every member of the group is gone).
    NoTarget,
    /// The target did not accept the connection.
    TargetUnreachable,
}

impl Refusal {
    /// Every reason, in counter order.
    pub const ALL: [Refusal; 9] = [
        Refusal::NotAllowed,
        Refusal::BlockListed,
        Refusal::TotalCap,
        Refusal::SourceCap,
        Refusal::ConnectionRate,
        Refusal::ByteRate,
        Refusal::TooManySources,
        Refusal::NoTarget,
        Refusal::TargetUnreachable,
    ];

    /// The name in `privnet status` and the `reason` label of `/metrics`.
    pub fn name(self) -> &'static str {
        match self {
            Refusal::NotAllowed => "not_allowed",
            Refusal::BlockListed => "block_listed",
            Refusal::TotalCap => "total_cap",
            Refusal::SourceCap => "source_cap",
            Refusal::ConnectionRate => "connection_rate",
            Refusal::ByteRate => "byte_rate",
            Refusal::TooManySources => "too_many_sources",
            Refusal::NoTarget => "no_target",
            Refusal::TargetUnreachable => "target_unreachable",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A per-second rate with a burst.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// Sustained rate per second (at least 1).
    pub per_second: u32,
    /// Burst (at least 1).
    pub burst: u32,
}

/// The admission settings of one exposure.
#[derive(Clone, Debug, Default)]
pub struct AdmissionConfig {
    /// Only these sources (`None`: every source not block-listed).
    pub allow: Option<Arc<PrefixSet>>,
    /// New connections (flows) per second per source.
    pub connection_rate: Option<Rate>,
    /// Bytes per second per source (both directions together).
    pub byte_rate: Option<Rate>,
    /// Concurrent connections (flows) per source.
    pub max_per_source: Option<u32>,
    /// Concurrent connections (flows) in total.
    pub max_total: Option<u32>,
    /// Sources tracked by each rate limiter at most (0: 65,536).
    pub max_sources: usize,
}

/// Default bound of the limiter tables.
pub const DEFAULT_MAX_SOURCES: usize = 65_536;

/// Counters of one exposure.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AdmissionCounters {
    /// Connections (flows) admitted.
    pub admitted: u64,
    /// Refusals by reason, indexed like [`Refusal::ALL`].
    pub refused: [u64; Refusal::ALL.len()],
    /// Refusals per block-list, in the order the lists were set.
    pub blocked_by: Vec<u64>,
    /// Times a TCP flow had to wait for its source's byte budget.
    pub throttled: u64,
    /// Connections (flows) open now.
    pub active: u32,
}

impl AdmissionCounters {
    /// The count of `reason`.
    pub fn refused(&self, reason: Refusal) -> u64 {
        self.refused[reason.index()]
    }
}

/// A governor clock set from the `now` the caller passes.
#[derive(Clone, Debug, Default)]
struct SetClock(Arc<AtomicU64>);

impl Clock for SetClock {
    type Instant = Nanos;
    fn now(&self) -> Nanos {
        Nanos::from(self.0.load(Ordering::Relaxed))
    }
}

type Keyed = RateLimiter<SourceKey, HashMapStateStore<SourceKey>, SetClock, NoOpMiddleware<Nanos>>;

/// A keyed limiter with its bound.
struct Limiter {
    keyed: Keyed,
    burst: u32,
    max_sources: usize,
    last_gc: Option<Instant>,
}

impl Limiter {
    fn new(rate: Rate, clock: &SetClock, max_sources: usize) -> Self {
        let per = NonZeroU32::new(rate.per_second.max(1)).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(rate.burst.max(1)).unwrap_or(NonZeroU32::MIN);
        Self {
            keyed: RateLimiter::hashmap_with_clock(
                Quota::per_second(per).allow_burst(burst),
                clock.clone(),
            ),
            burst: burst.get(),
            max_sources,
            last_gc: None,
        }
    }

    /// Room for a new key (after a garbage collection at most once a second).
    fn has_room(&mut self, key: &SourceKey, now: Instant) -> bool {
        if self.keyed.len() < self.max_sources {
            return true;
        }
        let due = self
            .last_gc
            .is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(1));
        if due {
            self.keyed.retain_recent();
            self.keyed.shrink_to_fit();
            self.last_gc = Some(now);
        }
        // governor does not say whether a key is tracked, so a full table refuses every source
        // until a collection frees room (sources whose budget is full again are collected).
        let _ = key;
        self.keyed.len() < self.max_sources
    }
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("sources", &self.keyed.len())
            .finish()
    }
}

/// The admission state of one exposure.
#[derive(Debug)]
pub struct Admission {
    allow: Option<Arc<PrefixSet>>,
    blocks: Vec<Arc<PrefixSet>>,
    conn: Option<Limiter>,
    bytes: Option<Limiter>,
    max_per_source: Option<u32>,
    max_total: Option<u32>,
    active: HashMap<SourceKey, u32>,
    total: u32,
    max_sources: usize,
    clock: SetClock,
    epoch: Instant,
    counters: AdmissionCounters,
}

impl Admission {
    /// Admission with `cfg` and no block-list yet; `now` is the epoch of its clock.
    pub fn new(cfg: AdmissionConfig, now: Instant) -> Self {
        let clock = SetClock::default();
        let max_sources = if cfg.max_sources == 0 {
            DEFAULT_MAX_SOURCES
        } else {
            cfg.max_sources
        };
        Self {
            allow: cfg.allow,
            blocks: Vec::new(),
            conn: cfg
                .connection_rate
                .map(|r| Limiter::new(r, &clock, max_sources)),
            bytes: cfg.byte_rate.map(|r| Limiter::new(r, &clock, max_sources)),
            max_per_source: cfg.max_per_source,
            max_total: cfg.max_total,
            active: HashMap::new(),
            total: 0,
            max_sources,
            clock,
            epoch: now,
            counters: AdmissionCounters::default(),
        }
    }

    /// Replace the block-lists (a reload); their counters start again when the number of lists
    /// changes, and carry on otherwise.
    pub fn set_block_lists(&mut self, lists: Vec<Arc<PrefixSet>>) {
        if lists.len() != self.counters.blocked_by.len() {
            self.counters.blocked_by = vec![0; lists.len()];
        }
        self.blocks = lists;
    }

    fn tick(&self, now: Instant) {
        let nanos = now.saturating_duration_since(self.epoch).as_nanos();
        self.clock
            .0
            .fetch_max(u64::try_from(nanos).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Count a refusal decided elsewhere (no target, target unreachable, a datagram over budget).
    pub fn count(&mut self, reason: Refusal) {
        self.counters.refused[reason.index()] += 1;
    }

    /// Whether `src` is refused by the lists alone (no state changes, nothing counted).
    pub fn listed(&self, src: IpAddr) -> Option<Refusal> {
        if let Some(allow) = &self.allow {
            if !allow.contains(src) {
                return Some(Refusal::NotAllowed);
            }
        }
        if self.blocks.iter().any(|b| b.contains(src)) {
            return Some(Refusal::BlockListed);
        }
        None
    }

    /// Decide on a new connection (flow) from `src` at `now`. On `Ok` the connection counts as
    /// active until [`Admission::release`] is called with the same source.
    ///
    /// # Errors
    /// The reason of the refusal (counted).
    pub fn admit(&mut self, src: IpAddr, now: Instant) -> Result<(), Refusal> {
        let verdict = self.decide(src, now);
        match verdict {
            Ok(()) => {
                self.counters.admitted += 1;
                self.total += 1;
                *self.active.entry(SourceKey::of(src)).or_insert(0) += 1;
            }
            Err(r) => self.count(r),
        }
        verdict
    }

    fn decide(&mut self, src: IpAddr, now: Instant) -> Result<(), Refusal> {
        if let Some(allow) = &self.allow {
            if !allow.contains(src) {
                return Err(Refusal::NotAllowed);
            }
        }
        if let Some(i) = self.blocks.iter().position(|b| b.contains(src)) {
            if let Some(c) = self.counters.blocked_by.get_mut(i) {
                *c += 1;
            }
            return Err(Refusal::BlockListed);
        }
        if self.max_total.is_some_and(|m| self.total >= m) {
            return Err(Refusal::TotalCap);
        }
        let key = SourceKey::of(src);
        let mine = self.active.get(&key).copied().unwrap_or(0);
        if self.max_per_source.is_some_and(|m| mine >= m) {
            return Err(Refusal::SourceCap);
        }
        if mine == 0 && self.active.len() >= self.max_sources {
            return Err(Refusal::TooManySources);
        }
        self.tick(now);
        if let Some(l) = &mut self.conn {
            if !l.has_room(&key, now) {
                return Err(Refusal::TooManySources);
            }
            if l.keyed.check_key(&key).is_err() {
                return Err(Refusal::ConnectionRate);
            }
        }
        Ok(())
    }

    /// One admitted connection (flow) of `src` ended.
    pub fn release(&mut self, src: IpAddr) {
        let key = SourceKey::of(src);
        if let Some(n) = self.active.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                self.active.remove(&key);
            }
            self.total = self.total.saturating_sub(1);
        }
    }

    /// Spend `n` bytes of `src`'s byte budget at `now`: `None` when they may pass now, `Some(wait)`
    /// when they may pass after `wait` (nothing spent; ask again then). `n` is cut to the burst, so
    /// a caller that moves chunks larger than the burst is still served (at the rate).
    pub fn bytes(&mut self, src: IpAddr, n: usize, now: Instant) -> Option<Duration> {
        self.tick(now);
        let l = self.bytes.as_mut()?;
        let key = SourceKey::of(src);
        if !l.has_room(&key, now) {
            return Some(Duration::from_secs(1));
        }
        let cells = u32::try_from(n).unwrap_or(u32::MAX).clamp(1, l.burst);
        let cells = NonZeroU32::new(cells).unwrap_or(NonZeroU32::MIN);
        match l.keyed.check_key_n(&key, cells) {
            Ok(Ok(())) => None,
            Ok(Err(not_until)) => {
                self.counters.throttled += 1;
                let at = not_until.earliest_possible();
                let wait = Duration::from(at.duration_since(self.clock.now()));
                Some(wait.max(Duration::from_micros(100)))
            }
            // Cut to the burst above, so capacity always suffices; treat it as a one-second wait.
            Err(_) => Some(Duration::from_secs(1)),
        }
    }

    /// The counters (with the number of active connections).
    pub fn counters(&self) -> AdmissionCounters {
        let mut c = self.counters.clone();
        c.active = self.total;
        c
    }

    /// Sources with active connections.
    pub fn active_sources(&self) -> usize {
        self.active.len()
    }

    /// Active connections of `src`.
    pub fn active_of(&self, src: IpAddr) -> u32 {
        self.active.get(&SourceKey::of(src)).copied().unwrap_or(0)
    }
}
