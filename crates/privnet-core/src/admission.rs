//! Handshake admission: the gate every handshake message passes after mac1 and before it costs
//! any Diffie-Hellman work (docs/PROTOCOL.md §7). It owns the state of that decision — the load
//! detector, the cookie secret, the per-source limiter and the node-wide work budget — so that the
//! node only asks "may this message cost DH work?".
//!
//! Order, for every message:
//! 1. load accounting; under load a valid mac2 is required (else a cookie reply to the source,
//!    answering the sender index, with the message's mac1 as associated data) — on the priority
//!    lane too, so that only the real holder of an address gets further;
//! 2. the priority lane (a known peer's own endpoint, or a response to our pending initiation,
//!    within that peer's allowance — decided by the node) skips the rest, so neither a flood of
//!    other sources nor a full limiter table can stop known peers' rekeys and reconnects;
//! 3. the per-source rate limit;
//! 4. the node-wide work budget: beyond it, `handshake_budget`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand_chacha::ChaCha20Rng;

use crate::config::Settings;
use crate::cookie::CookieJar;
use crate::error::DropReason;
use crate::event::Outbox;
use crate::handshake::{LocalKeys, PskIndex};
use crate::ratelimit::{HandshakeLimiter, LoadDetector, TokenBucket};

/// How often the per-source limiter forgets idle sources.
const LIMITER_GC_EVERY: Duration = Duration::from_secs(1);

/// Which path a message takes through admission.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lane {
    /// A known peer's rekey or reconnect, or the response we asked for.
    Priority,
    /// Everybody else.
    Ordinary,
}

impl Lane {
    pub(crate) fn of(priority: bool) -> Self {
        if priority {
            Self::Priority
        } else {
            Self::Ordinary
        }
    }
}

/// What admission borrows from the node for one message.
pub(crate) struct AdmitCtx<'a> {
    pub(crate) rng: &'a mut ChaCha20Rng,
    pub(crate) keys: &'a LocalKeys,
    pub(crate) out: &'a mut Outbox,
}

/// The state of handshake admission.
pub(crate) struct Admission {
    load: LoadDetector,
    cookies: CookieJar,
    limiter: HandshakeLimiter,
    last_gc: Instant,
    budget: TokenBucket,
}

impl Admission {
    pub(crate) fn new(settings: &Settings, rng: &mut ChaCha20Rng, now: Instant) -> Self {
        let budget = settings.handshake_budget_per_sec;
        Self {
            load: LoadDetector::new(settings.under_load_handshakes_per_sec, now),
            cookies: CookieJar::new(rng, now),
            limiter: HandshakeLimiter::new(
                settings.handshake_rate_per_source,
                settings.handshake_burst_per_source,
                settings.limiter_max_sources,
                now,
            ),
            last_gc: now,
            budget: TokenBucket::new(budget, budget, now),
        }
    }

    /// May the message from `from` (with `sender` index and `mac1` under network key `psk`, and
    /// the `mac2` parts) cost Diffie-Hellman work? See the module docs for the order.
    pub(crate) fn admit(
        &mut self,
        ctx: AdmitCtx<'_>,
        from: SocketAddr,
        (sender, (mac1, psk)): (u32, (&[u8], PskIndex)),
        mac2: (&[u8], &[u8]),
        lane: Lane,
        now: Instant,
    ) -> Result<(), DropReason> {
        if self.load.record(now) && !self.cookies.mac2_valid(ctx.rng, from, mac2, now) {
            let cookie_key = ctx.keys.network_key(psk).cookie_key;
            if let Some(reply) = self
                .cookies
                .reply(ctx.rng, &cookie_key, from, sender, mac1, now)
            {
                ctx.out.stats.cookies_sent += 1;
                ctx.out.send(from, reply);
            }
            return Err(DropReason::CookieRequired);
        }
        match lane {
            Lane::Priority => ctx.out.stats.handshake_work_priority += 1,
            Lane::Ordinary => {
                self.limiter.check(from.ip(), now)?;
                if !self.budget.take(now) {
                    return Err(DropReason::HandshakeBudget);
                }
            }
        }
        ctx.out.stats.handshake_work += 1;
        Ok(())
    }

    /// Whether the node currently demands cookies.
    pub(crate) fn is_under_load(&self, now: Instant) -> bool {
        self.load.is_under_load(now)
    }

    /// Entries in the per-source limiter table.
    pub(crate) fn limiter_sources(&self) -> usize {
        self.limiter.len()
    }

    /// When the limiter wants its next collection.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        (!self.limiter.is_empty()).then(|| self.last_gc + LIMITER_GC_EVERY)
    }

    /// Collect the limiter when due.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        if !self.limiter.is_empty() && now >= self.last_gc + LIMITER_GC_EVERY {
            self.limiter.gc(now);
            self.last_gc = now;
        }
    }
}
