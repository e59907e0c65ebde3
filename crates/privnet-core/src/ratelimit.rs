//! Handshake admission: the per-source rate limiter, the "under load" detector, the node-wide
//! budget of Diffie-Hellman work and the small per-peer allowance of the priority lane.
//!
//! The limiter is `governor`'s GCRA keyed by source (an IPv4 address, or the /64 of an IPv6 address so
//! one host cannot rotate through its prefix), driven by a clock that the node sets from the `now` it
//! is given: no time is read here. Its table is bounded (`limiter_max_sources`) and garbage-collected
//! every second with `retain_recent` + `shrink_to_fit`.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::HashMapStateStore;
use governor::{Quota, RateLimiter};

use crate::config::UNDER_LOAD_AFTER;
use crate::error::DropReason;

/// A governor clock that reports the time the node last set.
#[derive(Clone, Debug, Default)]
pub struct NowClock(Arc<AtomicU64>);

impl NowClock {
    fn set(&self, nanos: u64) {
        self.0.fetch_max(nanos, Ordering::Relaxed);
    }
}

impl Clock for NowClock {
    type Instant = Nanos;
    fn now(&self) -> Nanos {
        Nanos::from(self.0.load(Ordering::Relaxed))
    }
}

/// The limiter key: IPv4 address or IPv6 /64.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SourceKey {
    /// An IPv4 source.
    V4(u32),
    /// The upper 64 bits of an IPv6 source.
    V6(u64),
}

impl SourceKey {
    /// The key for `ip` (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(a) => Self::V4(u32::from(a)),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => Self::V4(u32::from(v4)),
                None => Self::V6((u128::from(a) >> 64) as u64),
            },
        }
    }
}

type Limiter =
    RateLimiter<SourceKey, HashMapStateStore<SourceKey>, NowClock, NoOpMiddleware<Nanos>>;

/// Per-source handshake limiter.
pub struct HandshakeLimiter {
    limiter: Limiter,
    clock: NowClock,
    epoch: Instant,
    max_sources: usize,
    last_gc: Instant,
}

impl std::fmt::Debug for HandshakeLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandshakeLimiter")
            .field("sources", &self.limiter.len())
            .finish()
    }
}

impl HandshakeLimiter {
    /// `rate` handshakes per second per source, bursts of `burst`, at most `max_sources` tracked.
    pub fn new(rate: u32, burst: u32, max_sources: usize, now: Instant) -> Self {
        let rate = NonZeroU32::new(rate.max(1)).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN);
        let clock = NowClock::default();
        let limiter = RateLimiter::hashmap_with_clock(
            Quota::per_second(rate).allow_burst(burst),
            clock.clone(),
        );
        Self {
            limiter,
            clock,
            epoch: now,
            max_sources: max_sources.max(1),
            last_gc: now,
        }
    }

    fn tick(&self, now: Instant) {
        let nanos = now.saturating_duration_since(self.epoch).as_nanos();
        self.clock.set(u64::try_from(nanos).unwrap_or(u64::MAX));
    }

    /// Admit one handshake message from `src` at `now`.
    pub fn check(&mut self, src: IpAddr, now: Instant) -> Result<(), DropReason> {
        self.tick(now);
        if self.limiter.len() >= self.max_sources {
            if now.saturating_duration_since(self.last_gc) >= Duration::from_secs(1) {
                self.gc(now);
            }
            if self.limiter.len() >= self.max_sources {
                return Err(DropReason::LimiterFull);
            }
        }
        self.limiter
            .check_key(&SourceKey::of(src))
            .map_err(|_| DropReason::RateLimited)
    }

    /// Forget sources whose bucket is full again, and release memory.
    pub fn gc(&mut self, now: Instant) {
        self.tick(now);
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
        self.last_gc = now;
    }

    /// Number of sources currently tracked.
    pub fn len(&self) -> usize {
        self.limiter.len()
    }

    /// True if no source is tracked.
    pub fn is_empty(&self) -> bool {
        self.limiter.is_empty()
    }
}

/// Detects handshake load: more than `threshold` handshake messages (that passed mac1) within one
/// second puts the node under load, and it stays under load for [`UNDER_LOAD_AFTER`].
#[derive(Debug)]
pub struct LoadDetector {
    threshold: u32,
    window_start: Instant,
    count: u32,
    under_load_until: Option<Instant>,
}

impl LoadDetector {
    /// A detector with `threshold` messages per second.
    pub fn new(threshold: u32, now: Instant) -> Self {
        Self {
            threshold: threshold.max(1),
            window_start: now,
            count: 0,
            under_load_until: None,
        }
    }

    /// Record one handshake message and report whether the node is under load.
    pub fn record(&mut self, now: Instant) -> bool {
        if now.saturating_duration_since(self.window_start) >= Duration::from_secs(1) {
            self.window_start = now;
            self.count = 0;
        }
        self.count = self.count.saturating_add(1);
        if self.count > self.threshold {
            self.under_load_until = Some(now + UNDER_LOAD_AFTER);
        }
        self.is_under_load(now)
    }

    /// Whether the node is under load at `now`.
    pub fn is_under_load(&self, now: Instant) -> bool {
        self.under_load_until.is_some_and(|t| now < t)
    }
}

/// A token bucket in whole tokens: `rate` per second, at most `burst` saved up. Time is an input.
#[derive(Clone, Copy, Debug)]
pub struct TokenBucket {
    rate: u32,
    burst: u32,
    /// Tokens, in millionths.
    micro: u64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: u32, burst: u32, now: Instant) -> Self {
        let burst = burst.max(1);
        Self {
            rate,
            burst,
            micro: u64::from(burst) * 1_000_000,
            last: now,
        }
    }

    /// Take one token at `now`; false when the bucket is empty.
    pub fn take(&mut self, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.last);
        self.last = self.last.max(now);
        let refill = u64::try_from(dt.as_micros())
            .unwrap_or(u64::MAX)
            .saturating_mul(u64::from(self.rate));
        self.micro = self
            .micro
            .saturating_add(refill)
            .min(u64::from(self.burst) * 1_000_000);
        if self.micro >= 1_000_000 {
            self.micro -= 1_000_000;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests take the origin of their clock from the real one
mod tests {
    use super::*;

    #[test]
    fn per_source_limit_and_v6_slash64() {
        let t0 = Instant::now();
        let mut l = HandshakeLimiter::new(20, 5, 100, t0);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..5 {
            assert!(l.check(a, t0).is_ok());
        }
        assert_eq!(l.check(a, t0), Err(DropReason::RateLimited));
        assert!(l.check(a, t0 + Duration::from_millis(60)).is_ok());
        // Different addresses in one /64 share a bucket.
        for i in 0..5u16 {
            let ip: IpAddr = format!("2001:db8::{i:x}").parse().unwrap();
            assert!(l.check(ip, t0).is_ok());
        }
        let other: IpAddr = "2001:db8::ffff".parse().unwrap();
        assert_eq!(l.check(other, t0), Err(DropReason::RateLimited));
        let elsewhere: IpAddr = "2001:db8:0:1::1".parse().unwrap();
        assert!(l.check(elsewhere, t0).is_ok());
    }

    #[test]
    fn table_is_bounded_and_collected() {
        let t0 = Instant::now();
        let mut l = HandshakeLimiter::new(20, 5, 1000, t0);
        for i in 0..1000u32 {
            let _ = l.check(IpAddr::V4(i.into()), t0);
        }
        assert_eq!(l.len(), 1000);
        assert_eq!(
            l.check("10.0.0.1".parse().unwrap(), t0),
            Err(DropReason::LimiterFull)
        );
        // A second later every bucket is full again: GC empties the table and new sources get in.
        let t1 = t0 + Duration::from_secs(2);
        assert!(l.check("10.0.0.1".parse().unwrap(), t1).is_ok());
        assert!(l.len() <= 1);
    }

    #[test]
    fn load_detector() {
        let t0 = Instant::now();
        let mut d = LoadDetector::new(10, t0);
        for _ in 0..10 {
            assert!(!d.record(t0));
        }
        assert!(d.record(t0));
        assert!(d.is_under_load(t0 + Duration::from_millis(999)));
        assert!(!d.is_under_load(t0 + Duration::from_millis(1001)));
    }

    #[test]
    fn token_bucket_refills_at_its_rate_up_to_its_burst() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, 3, t0);
        assert!(b.take(t0) && b.take(t0) && b.take(t0));
        assert!(!b.take(t0), "burst spent");
        assert!(!b.take(t0 + Duration::from_millis(99)));
        assert!(b.take(t0 + Duration::from_millis(100)), "one per 100 ms");
        let later = t0 + Duration::from_secs(60);
        let got = (0..10).filter(|_| b.take(later)).count();
        assert_eq!(got, 3, "never more than the burst saved up");
        // A clock that goes back takes nothing and gives nothing.
        assert!(!b.take(t0));
    }
}
