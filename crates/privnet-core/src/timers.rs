//! Protocol timers: one [`TimerTable`] per peer (the single source of truth for its deadlines), the
//! node's [`WakeQueue`] that tells it which peer to look at next, and the [`WallClock`] that maps
//! the core's monotonic `Instant`s to Unix time.
//!
//! Invariant: a peer's deadlines live only in its table. The wake queue holds *hints* — "peer P may
//! have a timer due at T" — and may hold stale ones (a deadline that was moved or disarmed since);
//! a hint that fires finds nothing due and costs one table scan. A table asks for a new hint only
//! when a deadline appears that is earlier than every hint it already has in the queue, so the data
//! path, which moves the keepalive and new-handshake deadlines on every packet, pushes nothing in
//! the steady state.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use crate::peers::PeerId;

/// The peer timers: WireGuard's set (whitepaper §6.2–6.5) plus credential expiry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Timer {
    /// Resend an unanswered initiation (5 s + jitter), giving up after 90 s.
    RetransmitHandshake = 0,
    /// Data received, nothing sent: send a keepalive (10 s).
    SendKeepalive = 1,
    /// Data sent, nothing received: start a new handshake (15 s + jitter).
    NewHandshake = 2,
    /// Erase all key material (540 s after the last handshake).
    ZeroKeys = 3,
    /// Send a keepalive every N seconds regardless (NAT mappings).
    PersistentKeepalive = 4,
    /// The peer's credential expires.
    CredentialExpiry = 5,
}

const TIMERS: usize = 6;

/// Deadlines of one peer's timers.
#[derive(Clone, Debug, Default)]
pub(crate) struct TimerTable {
    deadlines: [Option<Instant>; TIMERS],
    /// The earliest hint this table has in the node's wake queue that has not fired yet. Every
    /// other pending hint of this peer is later, so a deadline before it needs a new hint.
    hinted: Option<Instant>,
}

impl TimerTable {
    /// Set `timer` to fire at `at` (replacing any earlier setting).
    #[inline]
    pub(crate) fn arm(&mut self, timer: Timer, at: Instant) {
        self.deadlines[timer as usize] = Some(at);
    }

    /// Set `timer` to fire at `at` unless it is armed already.
    #[inline]
    pub(crate) fn arm_if_unset(&mut self, timer: Timer, at: Instant) {
        let slot = &mut self.deadlines[timer as usize];
        if slot.is_none() {
            *slot = Some(at);
        }
    }

    /// Cancel `timer`.
    #[inline]
    pub(crate) fn disarm(&mut self, timer: Timer) {
        self.deadlines[timer as usize] = None;
    }

    #[inline]
    pub(crate) fn is_armed(&self, timer: Timer) -> bool {
        self.deadlines[timer as usize].is_some()
    }

    /// If `timer` is due at `now`, disarm it and return true.
    #[inline]
    pub(crate) fn take_due(&mut self, timer: Timer, now: Instant) -> bool {
        let slot = &mut self.deadlines[timer as usize];
        if slot.is_some_and(|t| t <= now) {
            *slot = None;
            true
        } else {
            false
        }
    }

    /// Cancel every timer.
    pub(crate) fn clear(&mut self) {
        self.deadlines = [None; TIMERS];
    }

    /// The earliest armed deadline.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.iter().flatten().min().copied()
    }

    /// A hint at `at` fired: forget it if it was the earliest one.
    pub(crate) fn hint_fired(&mut self, at: Instant) {
        if self.hinted.is_some_and(|h| h <= at) {
            self.hinted = None;
        }
    }

    /// The wake-up hint the node must queue after this table changed, if any: the earliest
    /// deadline, when no hint at or before it is queued yet.
    #[inline]
    pub(crate) fn hint_needed(&mut self) -> Option<Instant> {
        let d = self.next_deadline()?;
        if self.hinted.is_none_or(|h| d < h) {
            self.hinted = Some(d);
            Some(d)
        } else {
            None
        }
    }
}

/// The node's queue of wake-up hints, earliest first.
#[derive(Debug, Default)]
pub(crate) struct WakeQueue {
    heap: BinaryHeap<Reverse<(Instant, PeerId)>>,
}

impl WakeQueue {
    pub(crate) fn push(&mut self, at: Instant, peer: PeerId) {
        self.heap.push(Reverse((at, peer)));
    }

    /// The earliest hint.
    pub(crate) fn peek(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((t, _))| *t)
    }

    /// Remove and return the earliest hint if it is due at `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(Instant, PeerId)> {
        match self.heap.peek() {
            Some(Reverse((t, _))) if *t <= now => self.heap.pop().map(|Reverse(x)| x),
            _ => None,
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }
}

/// Wall-clock time as the core sees it: a Unix time anchored to an `Instant`.
///
/// The driver re-anchors it ([`crate::Node::set_wall_clock`]) whenever it reads the clocks, so a
/// suspend, a VM pause or an NTP step moves the core's idea of Unix time along with the real one.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WallClock {
    epoch: Instant,
    unix_epoch: Duration,
}

impl WallClock {
    pub(crate) fn new(now: Instant, unix_now: Duration) -> Self {
        Self {
            epoch: now,
            unix_epoch: unix_now,
        }
    }

    /// Unix time at `now`.
    pub(crate) fn unix(&self, now: Instant) -> Duration {
        match now.checked_duration_since(self.epoch) {
            Some(d) => self.unix_epoch + d,
            None => self
                .unix_epoch
                .saturating_sub(self.epoch.saturating_duration_since(now)),
        }
    }

    /// The `Instant` at which wall time reaches `unix_secs`; `now` if that is already past, `None`
    /// if beyond what `Instant` can represent (a credential that never expires in practice).
    pub(crate) fn instant_of(&self, unix_secs: u64, now: Instant) -> Option<Instant> {
        let target = Duration::from_secs(unix_secs);
        match target.checked_sub(self.unix(now)) {
            Some(d) => now.checked_add(d),
            None => Some(now),
        }
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests take the origin of their clock from the real one
mod tests {
    use super::*;

    #[test]
    fn table_asks_for_a_hint_only_when_a_deadline_moves_earlier() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut t = TimerTable::default();
        assert_eq!(t.hint_needed(), None);
        t.arm(Timer::SendKeepalive, t0 + s(10));
        assert_eq!(t.hint_needed(), Some(t0 + s(10)));
        // Later deadlines (the data path moving timers forward) need no new hint.
        t.arm(Timer::NewHandshake, t0 + s(15));
        t.disarm(Timer::SendKeepalive);
        t.arm(Timer::SendKeepalive, t0 + s(11));
        assert_eq!(t.hint_needed(), None);
        // An earlier one does.
        t.arm(Timer::RetransmitHandshake, t0 + s(5));
        assert_eq!(t.hint_needed(), Some(t0 + s(5)));
        // After the hint fired, the next deadline is hinted again.
        assert!(t.take_due(Timer::RetransmitHandshake, t0 + s(5)));
        t.hint_fired(t0 + s(5));
        assert_eq!(t.hint_needed(), Some(t0 + s(11)));
        assert!(!t.take_due(Timer::SendKeepalive, t0 + s(10)));
        assert!(t.take_due(Timer::SendKeepalive, t0 + s(11)));
        assert_eq!(t.next_deadline(), Some(t0 + s(15)));
        t.arm_if_unset(Timer::NewHandshake, t0 + s(99));
        assert_eq!(t.next_deadline(), Some(t0 + s(15)));
        t.clear();
        assert_eq!(t.next_deadline(), None);
    }

    #[test]
    fn wall_clock_maps_both_ways_and_saturates() {
        let t0 = Instant::now();
        let w = WallClock::new(t0, Duration::from_secs(1_000));
        assert_eq!(
            w.unix(t0 + Duration::from_secs(5)),
            Duration::from_secs(1_005)
        );
        assert_eq!(w.instant_of(1_010, t0), Some(t0 + Duration::from_secs(10)));
        assert_eq!(w.instant_of(10, t0), Some(t0));
        let w = WallClock::new(t0 + Duration::from_secs(100), Duration::from_secs(50));
        assert_eq!(w.unix(t0), Duration::ZERO);
    }
}
