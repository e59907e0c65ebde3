//! One transport session (a "keypair" in WireGuard terms): snow's stateless transport with an explicit
//! counter nonce, the send counter, the replay window and the session's age; and a peer's ring of
//! [`Sessions`] (current, previous, next) with WireGuard's rotation rules.

use std::time::Instant;

use crate::config::{REJECT_AFTER_MESSAGES, REJECT_AFTER_TIME, STOP_SENDING_AFTER_TIME};
use crate::error::{DropReason, EncapsulateError};
use crate::peers::Retired;
use crate::replay::{ReplayError, ReplayWindow};
use crate::wire::{self, DATA_HEADER_LEN, TAG_LEN, TYPE_DATA};

/// The AEAD nonce of a data message marked [`wire::DATA_FLAG_PRIORITY`] is its counter with this
/// bit set. Counters stay below it (`REJECT_AFTER_MESSAGES` < 2^63).
pub(crate) const FLAG_NONCE_BIT: u64 = 1 << 63;
const _: () = assert!(REJECT_AFTER_MESSAGES <= FLAG_NONCE_BIT);

/// The AEAD nonce of the data message with `counter` and the priority mark `high`. The header is
/// not associated data (snow's transport takes none), so the mark is bound to the message here:
/// setting or clearing it on the way changes the nonce and the tag fails (`bad_tag`). Nonces stay
/// unique per session: every counter is sent once, marked or not, and every counter is below
/// [`FLAG_NONCE_BIT`], so `counter | FLAG_NONCE_BIT` is no other message's nonce.
#[inline]
fn nonce(counter: u64, high: bool) -> u64 {
    if high {
        counter | FLAG_NONCE_BIT
    } else {
        counter
    }
}

pub(crate) struct Session {
    transport: snow::StatelessTransportState,
    pub(crate) local_index: u32,
    pub(crate) remote_index: u32,
    pub(crate) created: Instant,
    pub(crate) send_counter: u64,
    replay: ReplayWindow,
    pub(crate) is_initiator: bool,
    /// mac1 of the response that created this (responder) session: the AD of a cookie reply to it.
    pub(crate) response_mac1: [u8; 16],
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("local_index", &self.local_index)
            .field("remote_index", &self.remote_index)
            .field("send_counter", &self.send_counter)
            .field("is_initiator", &self.is_initiator)
            .finish()
    }
}

impl Session {
    pub(crate) fn new(
        transport: snow::StatelessTransportState,
        local_index: u32,
        remote_index: u32,
        is_initiator: bool,
        now: Instant,
    ) -> Box<Self> {
        Box::new(Self {
            transport,
            local_index,
            remote_index,
            created: now,
            send_counter: 0,
            replay: ReplayWindow::new(),
            is_initiator,
            response_mac1: [0; 16],
        })
    }

    /// Can this session still send at `now`? Not in its last `REJECT_AFTER_TIME −
    /// STOP_SENDING_AFTER_TIME` (see that constant), although it still receives then.
    #[inline]
    pub(crate) fn can_send(&self, now: Instant) -> bool {
        self.send_counter < REJECT_AFTER_MESSAGES
            && now.saturating_duration_since(self.created) < STOP_SENDING_AFTER_TIME
    }

    #[inline]
    pub(crate) fn expired(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.created) >= REJECT_AFTER_TIME
    }

    /// Seal `plaintext` as a data message into `out`; returns the datagram length.
    #[inline]
    pub(crate) fn seal(
        &mut self,
        plaintext: &[u8],
        out: &mut [u8],
    ) -> Result<usize, EncapsulateError> {
        self.seal_flagged(plaintext, out, false)
    }

    /// [`Session::seal`], marked [`wire::DATA_FLAG_PRIORITY`] when `high`. The flag is bound to
    /// the message through the nonce (see [`nonce`]), so it cannot be set or cleared on the way.
    #[inline]
    pub(crate) fn seal_flagged(
        &mut self,
        plaintext: &[u8],
        out: &mut [u8],
        high: bool,
    ) -> Result<usize, EncapsulateError> {
        let total = DATA_HEADER_LEN + plaintext.len() + TAG_LEN;
        if out.len() < total {
            return Err(EncapsulateError::BufferTooSmall);
        }
        if self.send_counter >= REJECT_AFTER_MESSAGES {
            return Err(EncapsulateError::CounterLimit);
        }
        let counter = self.send_counter;
        let (hdr, body) = out.split_at_mut(DATA_HEADER_LEN);
        wire::write_header(hdr, TYPE_DATA);
        if high {
            hdr[3] = wire::DATA_FLAG_PRIORITY;
        }
        hdr[4..8].copy_from_slice(&self.remote_index.to_le_bytes());
        hdr[8..16].copy_from_slice(&counter.to_le_bytes());
        let n = self
            .transport
            .write_message(
                nonce(counter, high),
                plaintext,
                &mut body[..plaintext.len() + TAG_LEN],
            )
            // The buffer was checked above: snow refuses only a message longer than a Noise
            // message may be (65,535 bytes).
            .map_err(|_| EncapsulateError::TooBig)?;
        self.send_counter += 1;
        Ok(DATA_HEADER_LEN + n)
    }

    /// Check, open and commit a data message. Returns the plaintext length in `out` and whether the
    /// packet is the newest seen on this session.
    #[inline]
    pub(crate) fn open(
        &mut self,
        data: &wire::Data<'_>,
        out: &mut [u8],
        now: Instant,
    ) -> Result<(usize, bool), DropReason> {
        if self.expired(now) {
            return Err(DropReason::SessionExpired);
        }
        let counter = data.counter();
        let high = data.priority_hint();
        if counter >= REJECT_AFTER_MESSAGES {
            return Err(DropReason::CounterLimit);
        }
        self.replay.check(counter).map_err(|e| match e {
            ReplayError::Duplicate => DropReason::Duplicate,
            ReplayError::TooOld => DropReason::TooOld,
        })?;
        let ct = data.ciphertext();
        if out.len() < ct.len() {
            return Err(DropReason::BufferTooSmall);
        }
        let n = self
            .transport
            .read_message(nonce(counter, high), ct, out)
            .map_err(|_| DropReason::BadTag)?;
        let newest = self.replay.commit(counter);
        Ok((n, newest))
    }

    #[cfg(any(test, feature = "test-util"))]
    pub(crate) fn set_send_counter(&mut self, c: u64) {
        self.send_counter = c;
    }
}

/// Which slot of the ring a session is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Slot {
    Current,
    Previous,
    Next,
}

/// A peer's sessions: `current` sends; `previous` still receives after a rotation (packets in
/// flight); `next` is a responder session not yet confirmed by the initiator's first data packet.
///
/// Every change returns the indices it displaced as [`Retired`], so that the node's index map
/// forgets them (see `peers.rs`).
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    current: Option<Box<Session>>,
    previous: Option<Box<Session>>,
    next: Option<Box<Session>>,
}

fn index_of(s: Option<Box<Session>>) -> Option<u32> {
    s.map(|s| s.local_index)
}

impl Sessions {
    #[inline]
    pub(crate) fn current(&self) -> Option<&Session> {
        self.current.as_deref()
    }

    #[inline]
    pub(crate) fn current_mut(&mut self) -> Option<&mut Session> {
        self.current.as_deref_mut()
    }

    /// The unconfirmed responder session.
    pub(crate) fn next(&self) -> Option<&Session> {
        self.next.as_deref()
    }

    /// Whether any session exists.
    pub(crate) fn any(&self) -> bool {
        self.current.is_some() || self.previous.is_some() || self.next.is_some()
    }

    /// The session with local index `index`.
    #[inline]
    pub(crate) fn find_mut(&mut self, index: u32) -> Option<(Slot, &mut Session)> {
        if let Some(s) = self.current.as_deref_mut() {
            if s.local_index == index {
                return Some((Slot::Current, s));
            }
        }
        if let Some(s) = self.next.as_deref_mut() {
            if s.local_index == index {
                return Some((Slot::Next, s));
            }
        }
        if let Some(s) = self.previous.as_deref_mut() {
            if s.local_index == index {
                return Some((Slot::Previous, s));
            }
        }
        None
    }

    /// Local indices of every session.
    #[cfg(any(test, feature = "test-util"))]
    pub(crate) fn indices(&self) -> impl Iterator<Item = u32> + '_ {
        [&self.current, &self.previous, &self.next]
            .into_iter()
            .filter_map(|s| s.as_ref().map(|s| s.local_index))
    }

    /// A responder session was created: it waits in `next` for confirmation (replacing an older
    /// unconfirmed one).
    pub(crate) fn install_next(&mut self, session: Box<Session>) -> Retired {
        Retired::one(index_of(self.next.replace(session)))
    }

    /// Our initiation was answered: the new session becomes `current`. WireGuard's rotation: an
    /// unconfirmed responder session becomes `previous` (it may still receive), otherwise the old
    /// current does.
    pub(crate) fn install_initiated(&mut self, session: Box<Session>) -> Retired {
        let retired = if self.next.is_some() {
            let old_current = index_of(self.current.take());
            let old_previous = std::mem::replace(&mut self.previous, self.next.take());
            Retired::one(old_current).with(index_of(old_previous))
        } else {
            let old_previous = std::mem::replace(&mut self.previous, self.current.take());
            Retired::one(index_of(old_previous))
        };
        self.current = Some(session);
        retired
    }

    /// The first packet on `next` confirmed it: next → current → previous.
    pub(crate) fn confirm_next(&mut self) -> Retired {
        let stale = index_of(self.previous.take());
        self.previous = self.current.take();
        self.current = self.next.take();
        Retired::one(stale)
    }

    /// Drop every session.
    pub(crate) fn clear(&mut self) -> Retired {
        Retired::one(index_of(self.current.take()))
            .with(index_of(self.previous.take()))
            .with(index_of(self.next.take()))
    }
}
