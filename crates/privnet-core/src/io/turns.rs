//! Turn-taking between the driver's inputs under a flood.
//!
//! The driver's loop is a `biased` `select!`: the UDP socket first, then the TUN, then the timer,
//! the status snapshot and config reloads. Checking in a fixed order keeps latency low (no
//! randomised order puts the busy-poll `yield` before a ready socket), but an input that is never
//! empty, such as a flood of datagrams at the socket, would take every turn: TUN reads, the
//! protocol's timers (rekeys, keepalives), status snapshots and SIGHUP reloads would starve.
//!
//! Each input is drained in batches. A batch that ends because it reached its size, not because
//! the input ran dry, is *full*: the input is likely still ready. After a full batch this state
//! machine makes the loop pay its debts before that input goes again:
//! * after a full UDP batch the TUN gets a turn before the socket does,
//! * after any full batch the timer, snapshot and reload get a *service pass* in which neither
//!   packet input is polled; the pass ends when none of them is ready, or after
//!   [`MAX_SERVICE_ITEMS`] of them (so a timer that stays due cannot stop the packets in turn).
//!
//! So under a flood of both inputs the loop runs UDP, TUN, service, UDP, ...; without a full batch
//! nothing changes. This is a pure state machine, tested below without I/O.

/// Most timer/snapshot/reload items handled in one service pass.
pub(crate) const MAX_SERVICE_ITEMS: u8 = 4;

/// Which inputs the next pass of the driver's loop may poll.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Turns {
    /// The TUN is owed a turn before the socket is polled again.
    owe_tun: bool,
    /// Items the service pass owed to the non-packet inputs may still handle (0: none owed).
    service_left: u8,
}

impl Turns {
    /// Nothing owed.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// May the socket be polled in this pass?
    pub(crate) fn udp_allowed(&self) -> bool {
        !self.serving()
    }

    /// May the TUN be polled in this pass?
    pub(crate) fn tun_allowed(&self) -> bool {
        !self.serving() || self.owe_tun
    }

    /// Is a service pass under way (the loop must not block on the other inputs alone: when none
    /// of them is ready it calls [`Turns::served`] and goes on)?
    pub(crate) fn serving(&self) -> bool {
        self.service_left > 0
    }

    /// A UDP batch was handled; `full` if it ended at its size limit.
    pub(crate) fn after_udp(&mut self, full: bool) {
        if full {
            self.owe_tun = true;
            self.owe_service();
        }
    }

    /// A TUN batch was handled; `full` if it ended at its size limit.
    pub(crate) fn after_tun(&mut self, full: bool) {
        self.owe_tun = false;
        if full {
            self.owe_service();
        }
    }

    fn owe_service(&mut self) {
        if !self.serving() {
            self.service_left = MAX_SERVICE_ITEMS;
        }
    }

    /// A timer, snapshot or reload was handled (in a service pass or not).
    pub(crate) fn after_service(&mut self) {
        if self.serving() {
            self.service_left -= 1;
            if self.service_left == 0 {
                self.served();
            }
        }
    }

    /// The service pass found nothing (more) ready: all debts are paid.
    pub(crate) fn served(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the driver's biased select picks given what is ready and what `Turns` allows.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Pick {
        Udp,
        Tun,
        Service,
        Served,
        Sleep,
    }

    fn pick(t: &Turns, udp: bool, tun: bool, service: bool) -> Pick {
        if udp && t.udp_allowed() {
            Pick::Udp
        } else if tun && t.tun_allowed() {
            Pick::Tun
        } else if service {
            Pick::Service
        } else if t.serving() {
            Pick::Served
        } else {
            Pick::Sleep
        }
    }

    /// Runs `passes` passes of the loop. `udp`/`tun`: `None` idle, `Some(true)` flooding (every
    /// batch full, ready again at once), `Some(false)` busy but draining (each batch runs the input
    /// dry, and tokio clears its readiness until the reactor reports more: it is ready again on the
    /// pass after next). `service_every`: the timer becomes ready on every n-th pass and stays
    /// ready until served.
    fn run(passes: usize, udp: Option<bool>, tun: Option<bool>, service_every: usize) -> Vec<Pick> {
        let mut t = Turns::new();
        let mut service_ready = false;
        let (mut udp_dry, mut tun_dry) = (false, false);
        let mut picks = Vec::new();
        for i in 0..passes {
            if service_every > 0 && i % service_every == 0 {
                service_ready = true;
            }
            let udp_ready = udp.is_some() && !udp_dry;
            let tun_ready = tun.is_some() && !tun_dry;
            (udp_dry, tun_dry) = (false, false);
            let p = pick(&t, udp_ready, tun_ready, service_ready);
            match p {
                Pick::Udp => {
                    t.after_udp(udp == Some(true));
                    udp_dry = udp == Some(false);
                }
                Pick::Tun => {
                    t.after_tun(tun == Some(true));
                    tun_dry = tun == Some(false);
                }
                Pick::Service => {
                    service_ready = false;
                    t.after_service();
                }
                Pick::Served => t.served(),
                Pick::Sleep => {}
            }
            picks.push(p);
        }
        picks
    }

    /// Longest run of passes in which `p` was not picked.
    fn longest_gap(picks: &[Pick], p: Pick) -> usize {
        picks
            .split(|x| *x == p)
            .map(<[Pick]>::len)
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn nothing_changes_without_full_batches() {
        let mut t = Turns::new();
        t.after_udp(false);
        t.after_tun(false);
        assert!(t.udp_allowed() && t.tun_allowed() && !t.serving());
        // busy inputs that run dry take turns in the fixed order, no service passes
        let picks = run(6, Some(false), Some(false), 0);
        use Pick::*;
        assert_eq!(picks, [Udp, Tun, Udp, Tun, Udp, Tun]);
    }

    #[test]
    fn udp_flood_leaves_turns_to_tun_and_timers() {
        let picks = run(60, Some(true), Some(false), 7);
        assert!(longest_gap(&picks, Pick::Tun) <= 3, "{picks:?}");
        assert!(longest_gap(&picks, Pick::Service) <= 7 + 3, "{picks:?}");
        // the flood still gets most turns that are not owed to others
        let udp = picks.iter().filter(|p| **p == Pick::Udp).count();
        assert!(udp >= 60 / 4, "{udp} of 60: {picks:?}");
    }

    #[test]
    fn tun_flood_leaves_turns_to_udp_and_timers() {
        let picks = run(60, Some(false), Some(true), 5);
        assert!(longest_gap(&picks, Pick::Udp) <= 3, "{picks:?}");
        let picks = run(60, None, Some(true), 5);
        assert!(longest_gap(&picks, Pick::Service) <= 5 + 2, "{picks:?}");
        assert!(picks.contains(&Pick::Tun));
    }

    #[test]
    fn both_flooding_alternate_with_a_service_pass() {
        let picks = run(9, Some(true), Some(true), 0);
        use Pick::*;
        assert_eq!(
            picks,
            [Udp, Tun, Served, Udp, Tun, Served, Udp, Tun, Served]
        );
        let picks = run(90, Some(true), Some(true), 4);
        for p in [Udp, Tun, Service] {
            assert!(longest_gap(&picks, p) <= 8, "{p:?}: {picks:?}");
        }
    }

    #[test]
    fn a_timer_that_stays_due_cannot_stop_the_packets() {
        // the timer is ready on every pass (a deadline that handling does not clear)
        let mut t = Turns::new();
        let mut picks = Vec::new();
        for _ in 0..40 {
            let p = pick(&t, true, true, true);
            match p {
                Pick::Udp => t.after_udp(true),
                Pick::Tun => t.after_tun(true),
                Pick::Service => t.after_service(),
                Pick::Served => t.served(),
                Pick::Sleep => {}
            }
            picks.push(p);
        }
        let gap = usize::from(MAX_SERVICE_ITEMS) + 1;
        assert!(longest_gap(&picks, Pick::Udp) <= gap + 1, "{picks:?}");
        assert!(longest_gap(&picks, Pick::Tun) <= gap + 1, "{picks:?}");
    }

    #[test]
    fn a_service_pass_ends_when_nothing_else_is_ready() {
        let mut t = Turns::new();
        t.after_udp(true);
        assert!(!t.udp_allowed() && t.tun_allowed() && t.serving());
        t.after_tun(false);
        assert!(!t.udp_allowed() && !t.tun_allowed() && t.serving());
        t.served();
        assert_eq!(t, Turns::new());
    }
}
