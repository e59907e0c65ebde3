//! The driver's clocks, the only place they are read for the core (docs/PROTOCOL.md §8.1).
//!
//! - The core's `now` is an [`Instant`] that advances with `CLOCK_BOOTTIME`, which counts time
//!   the machine spent suspended (or a VM spent paused), where `Instant::now()`
//!   (`CLOCK_MONOTONIC`) stops: after a 20-minute suspend the core sees 20 minutes pass, so
//!   sessions and key material expire on time.
//! - The core's deadlines are in that clock; tokio's timers run on `CLOCK_MONOTONIC`:
//!   [`Clock::timer_deadline`] converts.
//! - Wall time ([`Clock::unix`]) is read whenever the node is re-anchored
//!   (`Node::set_wall_clock`), on every timer pass and snapshot tick.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::sys;

/// The driver's view of time.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Clock {
    origin: Instant,
    boot_origin: Duration,
}

impl Clock {
    pub(crate) fn new() -> Self {
        Self {
            origin: Instant::now(),
            boot_origin: sys::boottime(),
        }
    }

    /// The core's `now`: counts suspended time.
    #[inline]
    pub(crate) fn now(&self) -> Instant {
        self.origin + sys::boottime().saturating_sub(self.boot_origin)
    }

    /// Unix time now.
    pub(crate) fn unix() -> Duration {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
    }

    /// A core deadline as a tokio timer instant (`CLOCK_MONOTONIC`): as far from the monotonic
    /// now as it is from the core's now.
    pub(crate) fn timer_deadline(&self, deadline: Instant) -> tokio::time::Instant {
        let left = deadline.saturating_duration_since(self.now());
        tokio::time::Instant::now() + left
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_core_clock_advances_with_the_monotonic_one_when_nothing_sleeps() {
        let c = Clock::new();
        let a = c.now();
        std::thread::sleep(Duration::from_millis(20));
        let b = c.now();
        let d = b - a;
        assert!(
            d >= Duration::from_millis(19) && d < Duration::from_secs(2),
            "{d:?}"
        );
        // A deadline 5 s ahead of the core's now is about 5 s ahead for tokio.
        let t = c.timer_deadline(b + Duration::from_secs(5));
        let left = t - tokio::time::Instant::now();
        assert!(
            left <= Duration::from_secs(5) && left > Duration::from_secs(4),
            "{left:?}"
        );
        assert!(Clock::unix() > Duration::from_secs(1_700_000_000));
    }
}
