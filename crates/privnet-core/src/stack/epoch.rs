//! The fixed epoch between the core's time and smoltcp's.
//!
//! smoltcp counts time as signed microseconds from an arbitrary origin (`smoltcp::time::Instant`).
//! The stack pins that origin once, at creation, to the core's `now` of that moment, and converts
//! every later `now` as "microseconds since the epoch". The conversion is monotonic because the
//! core's clock is, and it never reads a clock itself (style.md: firezone's `l3_tcp::now`).

use std::time::{Duration, Instant};

use smoltcp::time::Instant as SmolInstant;

/// The core's instant that is smoltcp's zero.
#[derive(Clone, Copy, Debug)]
pub struct Epoch(Instant);

impl Epoch {
    /// An epoch at `now`.
    pub fn new(now: Instant) -> Self {
        Self(now)
    }

    /// `now` in smoltcp's time: microseconds since the epoch (zero for an instant before it,
    /// saturating far in the future).
    #[inline]
    pub fn to_smol(&self, now: Instant) -> SmolInstant {
        let micros = now.saturating_duration_since(self.0).as_micros();
        SmolInstant::from_micros(i64::try_from(micros).unwrap_or(i64::MAX))
    }

    /// A smoltcp instant in the core's time (the epoch for anything before it).
    #[inline]
    pub fn to_core(&self, t: SmolInstant) -> Instant {
        let micros = u64::try_from(t.total_micros()).unwrap_or(0);
        self.0
            .checked_add(Duration::from_micros(micros))
            .unwrap_or(self.0)
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // the origin of the test's clock comes from the real one
mod tests {
    use super::*;

    #[test]
    fn conversions_round_trip_from_the_epoch() {
        let origin = Instant::now();
        let e = Epoch::new(origin);
        assert_eq!(e.to_smol(origin), SmolInstant::from_micros(0));
        let later = origin + Duration::from_millis(1500);
        assert_eq!(e.to_smol(later), SmolInstant::from_millis(1500));
        assert_eq!(e.to_core(e.to_smol(later)), later);
        // Before the epoch: clamped, never negative.
        assert_eq!(e.to_core(SmolInstant::from_millis(-5)), origin);
        if let Some(before) = origin.checked_sub(Duration::from_secs(1)) {
            assert_eq!(e.to_smol(before), SmolInstant::from_micros(0));
        }
    }
}
