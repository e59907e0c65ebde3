//! Our side of a peer's handshake: idle, or an initiation out with its pending Noise state, its
//! retry data and its give-up clock; and the peer's priority-lane allowance (docs/PROTOCOL.md
//! §7.7). A part of the per-peer state machine that owns exactly this state: `peer.rs` drives it
//! and arms the timers.

use std::time::{Duration, Instant};

use crate::config::{
    PRIORITY_HANDSHAKES_PER_SEC, PRIORITY_HANDSHAKE_BURST, PRIORITY_RESPONSES_PER_INITIATION,
    REKEY_ATTEMPT_TIME,
};
use crate::event::HandshakePhase;
use crate::handshake::PendingInitiation;
use crate::peers::Retired;
use crate::ratelimit::TokenBucket;

/// An initiation we sent and whose response we await.
struct Initiating {
    pending: PendingInitiation,
    /// Start of this attempt: it gives up `REKEY_ATTEMPT_TIME` later.
    since: Instant,
    /// When the latest initiation was sent (no new one within `REKEY_TIMEOUT` unless retrying).
    last_sent: Instant,
    /// Initiations sent in this attempt.
    attempts: u32,
    /// Responses to the current initiation admitted through the priority lane.
    responses: u32,
}

/// The handshake state.
enum State {
    /// No handshake in progress.
    Idle,
    /// Our initiation is out (boxed: snow's handshake state is ~900 bytes, and most peers are
    /// idle most of the time).
    Initiating(Box<Initiating>),
}

/// Our side of one peer's handshake.
pub(super) struct Initiator {
    state: State,
    /// The priority lane's allowance (initiations from the peer's endpoint, responses to us).
    lane: TokenBucket,
}

impl Initiator {
    pub(super) fn new(now: Instant) -> Self {
        Self {
            state: State::Idle,
            lane: TokenBucket::new(PRIORITY_HANDSHAKES_PER_SEC, PRIORITY_HANDSHAKE_BURST, now),
        }
    }

    /// The local index of the pending initiation.
    pub(super) fn pending_index(&self) -> Option<u32> {
        match &self.state {
            State::Idle => None,
            State::Initiating(i) => Some(i.pending.local_index),
        }
    }

    pub(super) fn is_initiating(&self) -> bool {
        matches!(self.state, State::Initiating(_))
    }

    /// Idle or initiating (the peer knows whether a session is established).
    pub(super) fn phase(&self) -> HandshakePhase {
        match &self.state {
            State::Idle => HandshakePhase::Idle,
            State::Initiating(i) => HandshakePhase::Initiating {
                since: i.since,
                attempts: i.attempts,
            },
        }
    }

    /// Whether an initiation went out less than `within` before `now`.
    pub(super) fn sent_within(&self, within: Duration, now: Instant) -> bool {
        match &self.state {
            State::Initiating(i) => now.saturating_duration_since(i.last_sent) < within,
            State::Idle => false,
        }
    }

    /// An initiation went out: idle → initiating (a new attempt), or the next attempt of the
    /// current one. Returns the replaced initiation's index to retire.
    pub(super) fn sent(&mut self, pending: PendingInitiation, now: Instant) -> Retired {
        let (since, attempts) = match &self.state {
            State::Initiating(i) => (i.since, i.attempts.saturating_add(1)),
            State::Idle => (now, 1),
        };
        let old = std::mem::replace(
            &mut self.state,
            State::Initiating(Box::new(Initiating {
                pending,
                since,
                last_sent: now,
                attempts,
                responses: 0,
            })),
        );
        Retired::one(match old {
            State::Initiating(i) => Some(i.pending.local_index),
            State::Idle => None,
        })
    }

    /// Back to idle; returns the pending initiation's index to retire.
    pub(super) fn abandon(&mut self) -> Retired {
        let index = self.pending_index();
        self.state = State::Idle;
        Retired::one(index)
    }

    /// Whether the attempt has run out of time (`REKEY_ATTEMPT_TIME`), or there is none.
    pub(super) fn gave_up(&self, now: Instant) -> bool {
        match &self.state {
            State::Initiating(i) => now.saturating_duration_since(i.since) >= REKEY_ATTEMPT_TIME,
            State::Idle => true,
        }
    }

    /// A handshake completed (either role). A responder session that completed while our own
    /// initiation is still out (simultaneous initiation, we hold the lower key) keeps it for its
    /// response, with a fresh give-up clock.
    pub(super) fn completed(&mut self, now: Instant) {
        if let State::Initiating(i) = &mut self.state {
            i.since = now;
        }
    }

    /// The pending initiation if its index is `index` (to read a response into it).
    pub(super) fn pending_mut(&mut self, index: u32) -> Option<&mut PendingInitiation> {
        match &mut self.state {
            State::Initiating(i) if i.pending.local_index == index => Some(&mut i.pending),
            _ => None,
        }
    }

    /// Take the pending initiation named `index` (its response was read): back to idle.
    pub(super) fn take(&mut self, index: u32) -> Option<PendingInitiation> {
        self.pending_index().filter(|i| *i == index)?;
        match std::mem::replace(&mut self.state, State::Idle) {
            State::Initiating(i) => Some(i.pending),
            State::Idle => None,
        }
    }

    /// mac1 of the pending initiation named `index` (the associated data of a cookie reply to it).
    pub(super) fn pending_mac1(&self, index: u32) -> Option<[u8; 16]> {
        match &self.state {
            State::Initiating(i) if i.pending.local_index == index => Some(i.pending.mac1),
            _ => None,
        }
    }

    /// An initiation from the peer's own endpoint: may it take the priority lane?
    pub(super) fn priority_initiation(&mut self, now: Instant) -> bool {
        self.lane.take(now)
    }

    /// A response naming `index`: is it to our pending initiation, within its allowance?
    pub(super) fn priority_response(&mut self, index: u32, now: Instant) -> bool {
        match &mut self.state {
            State::Initiating(i)
                if i.pending.local_index == index
                    && i.responses < PRIORITY_RESPONSES_PER_INITIATION
                    && self.lane.take(now) =>
            {
                i.responses += 1;
                true
            }
            _ => false,
        }
    }
}
