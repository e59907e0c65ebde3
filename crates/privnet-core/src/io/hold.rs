//! Holding a dense send batch open for a moment (`[tun] batch_hold_us`): interrupt moderation for
//! the TUN.
//!
//! The sender reads the TUN until it runs dry, then sends what it staged as `UDP_SEGMENT` runs.
//! When an application sends a stream of small packets only slightly slower than the sidecar
//! reads them, the TUN runs dry every dozen packets, and every batch pays the same fixed costs:
//! a wake-up and a send here, and on the receiving member a wake-up, a receive, a TUN write and a
//! wake-up of the receiving application. Those costs land on both hosts and compete with the
//! applications for CPU.
//!
//! So when a batch is already dense (at least [`MIN_BURST`] packets read since the wake-up) and
//! the TUN runs dry, the driver waits up to `batch_hold_us` (in `ppoll`, which costs no CPU) for
//! the TUN or the underlay socket to become readable:
//! - more packets on the TUN join the batch ([`HoldEnd::Hit`]);
//! - packets on the socket end the hold at once ([`HoldEnd::Socket`]): the batch is sent and they
//!   are served, so ACKs, handshakes and the other direction's traffic never wait for a hold;
//! - when the window runs out the batch is sent ([`HoldEnd::Miss`]).
//!
//! A batch is held at most [`MAX_HOLDS`] times, so no packet waits longer than `MAX_HOLDS` windows
//! (each `batch_hold_us` plus the kernel's timer slack, 50 µs by default). A lone packet or a
//! short exchange (a ping, a request) is never held; TCP bulk arrives as TSO super-packets, a few
//! reads per batch, and its ACKs end holds.
//!
//! The wait holds the runtime thread, so other networks served by the same process wait as long
//! (bounded the same way). Measured figures: docs/BENCHMARKS.md §6.
//!
//! A pure state machine: the driver asks, sleeps and reports back.

use std::time::Duration;

/// Packets a batch must have read before it is held.
pub(crate) const MIN_BURST: usize = 4;
/// Holds per batch at most.
pub(crate) const MAX_HOLDS: u32 = 4;

/// How a hold ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HoldEnd {
    /// More packets came on the TUN: they join the batch.
    Hit,
    /// The window ran out: the batch is sent.
    Miss,
    /// The underlay socket had packets (ACKs, handshakes): the batch is sent and they are served.
    Socket,
}

/// Counters, reported with the driver's events.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct HoldStats {
    /// Holds (sleeps) done.
    pub(crate) holds: u64,
    /// Holds after which more packets had come.
    pub(crate) hits: u64,
    /// Holds after which none had (the batch was then sent).
    pub(crate) misses: u64,
    /// Holds cut short by packets on the underlay socket.
    pub(crate) socket: u64,
    /// Total time slept holding.
    pub(crate) held: Duration,
}

/// The hold window and its per-batch bound.
#[derive(Debug)]
pub(crate) struct BatchHold {
    window: Duration,
    stats: HoldStats,
}

impl BatchHold {
    /// A hold with the given window; a zero window never holds.
    pub(crate) fn new(window: Duration) -> Self {
        Self {
            window,
            stats: HoldStats::default(),
        }
    }

    /// Change the window (a configuration reload); the counters carry on.
    pub(crate) fn set_window(&mut self, window: Duration) {
        self.window = window;
    }

    /// Counters so far.
    pub(crate) fn stats(&self) -> HoldStats {
        self.stats
    }

    /// The TUN ran dry after `read` packets of this batch, which has been held `holds` times and
    /// has packets waiting to be sent (`waiting`). Returns how long to sleep before reading again,
    /// or `None` to send the batch now.
    pub(crate) fn begin(&self, read: usize, holds: u32, waiting: bool) -> Option<Duration> {
        if self.window.is_zero() || !waiting || read < MIN_BURST || holds >= MAX_HOLDS {
            return None;
        }
        Some(self.window)
    }

    /// A hold ended after `waited`, as `how`.
    pub(crate) fn end(&mut self, waited: Duration, how: HoldEnd) {
        self.stats.holds += 1;
        self.stats.held += waited;
        match how {
            HoldEnd::Hit => self.stats.hits += 1,
            HoldEnd::Miss => self.stats.misses += 1,
            HoldEnd::Socket => self.stats.socket += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: Duration = Duration::from_micros(1);

    #[test]
    fn zero_window_never_holds() {
        let h = BatchHold::new(Duration::ZERO);
        assert_eq!(h.begin(100, 0, true), None);
    }

    #[test]
    fn short_bursts_and_empty_stages_are_not_held() {
        let h = BatchHold::new(20 * US);
        for read in 0..MIN_BURST {
            assert_eq!(h.begin(read, 0, true), None, "{read} packets read");
        }
        assert_eq!(h.begin(MIN_BURST, 0, false), None, "nothing waits");
        assert_eq!(h.begin(MIN_BURST, 0, true), Some(20 * US));
    }

    #[test]
    fn a_batch_is_held_at_most_max_holds_times() {
        let mut h = BatchHold::new(20 * US);
        let mut holds = 0;
        while let Some(d) = h.begin(64, holds, true) {
            h.end(d + 3 * US, HoldEnd::Hit);
            holds += 1;
            assert!(holds <= MAX_HOLDS);
        }
        assert_eq!(holds, MAX_HOLDS);
        h.end(20 * US, HoldEnd::Miss);
        h.end(2 * US, HoldEnd::Socket);
        let s = h.stats();
        assert_eq!(
            (s.holds, s.hits, s.misses, s.socket),
            (u64::from(MAX_HOLDS) + 2, 4, 1, 1)
        );
        assert_eq!(s.held, 23 * US * MAX_HOLDS + 22 * US);
    }

    #[test]
    fn a_reload_changes_the_window() {
        let mut h = BatchHold::new(20 * US);
        h.set_window(Duration::ZERO);
        assert_eq!(h.begin(64, 0, true), None);
        h.set_window(50 * US);
        assert_eq!(h.begin(64, 0, true), Some(50 * US));
    }
}
