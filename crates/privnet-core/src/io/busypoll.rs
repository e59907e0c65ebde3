//! Bounded busy polling after activity (`[tun] busy_poll_us`).
//!
//! A sleeping daemon pays for every packet that wakes it: the scheduler's context switch and, on an
//! idle (virtual) CPU, the exit from the halted state, tens of microseconds each. Request/response
//! traffic pays it on every hop. After handling a packet the driver therefore keeps polling the TUN
//! and the socket for a short window (yielding the CPU to anything runnable between polls) before it
//! goes back to sleep: the answer to a request it just forwarded usually arrives inside the window
//! and is picked up without a wake-up.
//!
//! Spinning costs CPU, so it is bounded twice: by the window after each packet, and by a budget of
//! [`BUDGET_PERCENT`] of one core per second of wall time (each network of the process has its
//! own). Only the time actually spent polling is charged. Under bulk traffic the windows between
//! batches add up to that budget (measured: +9% of a core in the receiving daemon of a TCP stream,
//! no throughput change), so members that only move bulk data may set `busy_poll_us = 0`.
//! This is a pure state machine: the driver passes `now` in.

use std::time::{Duration, Instant};

/// Share of one core the spinning may use, in percent per budget period.
pub(crate) const BUDGET_PERCENT: u32 = 10;
/// The budget period.
const PERIOD: Duration = Duration::from_secs(1);

/// Counters, reported with the driver's events.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct BusyPollStats {
    /// Windows opened (after activity, with budget left).
    pub(crate) windows: u64,
    /// Packets picked up while spinning (each a wake-up saved).
    pub(crate) hits: u64,
    /// Windows not opened because the budget of the period was spent.
    pub(crate) over_budget: u64,
    /// Total time spent spinning.
    pub(crate) spun: Duration,
}

/// The busy-poll window and its CPU budget.
#[derive(Debug)]
pub(crate) struct BusyPoll {
    window: Duration,
    budget: Duration,
    period_start: Option<Instant>,
    spent: Duration,
    /// End of the open window, if one is open.
    until: Option<Instant>,
    /// When spinning time was last accounted.
    last: Option<Instant>,
    stats: BusyPollStats,
}

impl BusyPoll {
    /// A poller with the given window; a zero window never spins.
    pub(crate) fn new(window: Duration) -> Self {
        Self {
            window,
            budget: PERIOD * BUDGET_PERCENT / 100,
            period_start: None,
            spent: Duration::ZERO,
            until: None,
            last: None,
            stats: BusyPollStats::default(),
        }
    }

    /// Counters so far.
    pub(crate) fn stats(&self) -> BusyPollStats {
        self.stats
    }

    /// Change the window (a configuration reload); the budget and counters carry on.
    pub(crate) fn set_window(&mut self, window: Duration) {
        self.window = window;
        if window.is_zero() {
            self.until = None;
            self.last = None;
        }
    }

    /// The driver woke up for I/O at `now`: spinning, if any, stops here (the time spent handling
    /// packets is not spinning and is not charged to the budget).
    pub(crate) fn woke(&mut self, now: Instant) {
        if self.until.is_some() {
            self.account(now);
        }
        self.last = None;
    }

    /// The driver handled `packets` packets, finishing at `now`. With packets, a window that was
    /// open counts as a hit and a new window opens if the budget allows; without (a spurious
    /// wake-up), an open window simply goes on.
    pub(crate) fn handled(&mut self, now: Instant, packets: usize) {
        if self.window.is_zero() {
            return;
        }
        if packets == 0 {
            if self.until.is_some() {
                self.last = Some(now);
            }
            return;
        }
        if self.until.is_some() {
            self.stats.hits += 1;
        }
        self.roll_period(now);
        if self.spent >= self.budget {
            self.until = None;
            self.last = None;
            self.stats.over_budget += 1;
            return;
        }
        let left = self.budget - self.spent;
        self.until = Some(now + self.window.min(left));
        self.last = Some(now);
        self.stats.windows += 1;
    }

    /// Whether to poll again at `now` instead of sleeping. Closes the window when it has run out.
    pub(crate) fn spinning(&mut self, now: Instant) -> bool {
        let Some(until) = self.until else {
            return false;
        };
        self.account(now);
        if now < until {
            return true;
        }
        self.until = None;
        self.last = None;
        false
    }

    fn account(&mut self, now: Instant) {
        if let Some(last) = self.last {
            let d = now.saturating_duration_since(last);
            self.spent += d;
            self.stats.spun += d;
        }
        self.last = Some(now);
    }

    fn roll_period(&mut self, now: Instant) {
        match self.period_start {
            Some(start) if now.saturating_duration_since(start) < PERIOD => {}
            _ => {
                self.period_start = Some(now);
                self.spent = Duration::ZERO;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: Duration = Duration::from_micros(1);

    #[test]
    fn zero_window_never_spins() {
        let t0 = Instant::now();
        let mut b = BusyPoll::new(Duration::ZERO);
        b.woke(t0);
        b.handled(t0, 1);
        assert!(!b.spinning(t0));
        assert_eq!(b.stats(), BusyPollStats::default());
    }

    #[test]
    fn window_opens_after_activity_and_closes_when_it_runs_out() {
        let t0 = Instant::now();
        let mut b = BusyPoll::new(200 * US);
        assert!(!b.spinning(t0), "no window before any activity");
        b.handled(t0, 1);
        assert!(b.spinning(t0 + 50 * US));
        assert!(b.spinning(t0 + 199 * US));
        assert!(!b.spinning(t0 + 200 * US));
        assert!(!b.spinning(t0 + 300 * US), "stays closed");
        let s = b.stats();
        assert_eq!((s.windows, s.hits), (1, 0));
        assert_eq!(s.spun, 200 * US);
    }

    #[test]
    fn a_packet_inside_the_window_is_a_hit_and_reopens_it() {
        let t0 = Instant::now();
        let mut b = BusyPoll::new(200 * US);
        b.handled(t0, 1);
        assert!(b.spinning(t0 + 100 * US));
        // A packet at 150 us, handled until 1150 us: only the 150 us of spinning are charged.
        b.woke(t0 + 150 * US);
        b.handled(t0 + 1150 * US, 3);
        assert!(b.spinning(t0 + 1300 * US), "window restarted after the hit");
        assert!(!b.spinning(t0 + 1350 * US));
        let s = b.stats();
        assert_eq!((s.windows, s.hits), (2, 1));
        assert_eq!(s.spun, 350 * US);
    }

    #[test]
    fn a_wake_up_that_reads_nothing_keeps_the_window_and_is_no_hit() {
        let t0 = Instant::now();
        let mut b = BusyPoll::new(200 * US);
        b.handled(t0, 1);
        b.woke(t0 + 50 * US);
        b.handled(t0 + 60 * US, 0);
        assert!(b.spinning(t0 + 150 * US), "same window");
        assert!(!b.spinning(t0 + 200 * US), "which still ends at 200 us");
        let s = b.stats();
        assert_eq!((s.windows, s.hits), (1, 0));
        assert_eq!(s.spun, 190 * US, "the 10 us of handling are not spinning");
    }

    #[test]
    fn set_window_zero_stops_at_once() {
        let t0 = Instant::now();
        let mut b = BusyPoll::new(200 * US);
        b.handled(t0, 1);
        b.set_window(Duration::ZERO);
        assert!(!b.spinning(t0 + 10 * US));
        b.handled(t0 + 20 * US, 1);
        assert!(!b.spinning(t0 + 30 * US));
    }

    #[test]
    fn the_budget_caps_spinning_per_period_and_refills() {
        let t0 = Instant::now();
        let mut b = BusyPoll::new(Duration::from_millis(2));
        let budget = PERIOD * BUDGET_PERCENT / 100;
        let mut t = t0;
        // Sparse packets each followed by a full, fruitless window.
        let mut spun = Duration::ZERO;
        for _ in 0..1000 {
            b.woke(t);
            b.handled(t, 1);
            while b.spinning(t) {
                t += 10 * US;
            }
            spun = b.stats().spun;
            t += 10 * US;
            if t.duration_since(t0) >= PERIOD - Duration::from_millis(50) {
                break;
            }
        }
        assert!(spun <= budget, "spun {spun:?} over the budget {budget:?}");
        assert!(spun >= budget - Duration::from_millis(1), "spun {spun:?}");
        assert!(b.stats().over_budget > 0);
        // A new period brings a new budget.
        b.handled(t0 + PERIOD + 100 * US, 1);
        assert!(b.spinning(t0 + PERIOD + 200 * US));
    }
}
