//! One transport session (a "keypair" in WireGuard terms): snow's stateless transport with an explicit
//! counter nonce, the send counter, the replay window and the session's age; and a peer's ring of
//! [`Sessions`] (current, previous, next) with WireGuard's rotation rules.

use std::sync::Arc;
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

/// The longest plaintext snow seals: a Noise message (ciphertext and tag) is at most 65,535 bytes.
const MAX_SEAL: usize = 65_535 - TAG_LEN;

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

/// The AEAD of one data message, split from its session's state: the session decided everything
/// else (the counter, the header, the replay check), and this carries the nonce with a shared
/// handle to the session's keys, so that the encryption itself can run on another core while the
/// state machine goes on (the driver's crypto workers). Holding one keeps the keys alive; it is
/// dropped with its batch.
#[cfg_attr(not(feature = "driver"), allow(dead_code))] // used by the driver's crypto workers
pub(crate) struct SealJob {
    transport: Arc<snow::StatelessTransportState>,
    nonce: u64,
}

#[cfg_attr(not(feature = "driver"), allow(dead_code))] // used by the driver's crypto workers
impl SealJob {
    /// Encrypt `plaintext` into `out` (the message after its header: `plaintext.len()` +
    /// [`TAG_LEN`] bytes). `false` only if `out` is too short or the message is longer than
    /// Noise allows, which the reservation already ruled out.
    #[inline]
    pub(crate) fn seal(&self, plaintext: &[u8], out: &mut [u8]) -> bool {
        out.get_mut(..plaintext.len() + TAG_LEN).is_some_and(|out| {
            self.transport
                .write_message(self.nonce, plaintext, out)
                .is_ok()
        })
    }
}

/// The decryption of one data message that passed its session's checks (index, age, counter
/// limit, replay window), to be done ahead of the state machine; see [`SealJob`]. The result,
/// [`Opened`], goes back to the session, which commits the counter only then, so a message
/// decrypted ahead but replayed within the same batch is still refused.
pub(crate) struct OpenJob {
    transport: Arc<snow::StatelessTransportState>,
    nonce: u64,
}

#[cfg_attr(not(feature = "driver"), allow(dead_code))] // used by the driver's crypto workers
impl OpenJob {
    /// Decrypt `ciphertext` (the message after its header) into `out`: what the session will
    /// take as [`Opened`].
    #[inline]
    pub(crate) fn open(self, ciphertext: &[u8], out: &mut [u8]) -> Opened {
        let len = self
            .transport
            .read_message(self.nonce, ciphertext, out)
            .ok();
        Opened { job: self, len }
    }
}

/// A data message decrypted ahead ([`OpenJob::open`]): its plaintext length, or `None` for a tag
/// that did not verify. The session uses it only if it was made with this very session's keys
/// and this message's nonce; otherwise it decrypts again.
pub(crate) struct Opened {
    job: OpenJob,
    len: Option<usize>,
}

/// Where a seal left to a [`SealJob`] ([`Session::seal_later`]) copies its plaintext, and the job
/// it made.
pub(crate) struct Later<'a> {
    pub(crate) plain: &'a mut [u8],
    pub(crate) job: Option<SealJob>,
}

pub(crate) struct Session {
    transport: Arc<snow::StatelessTransportState>,
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
            transport: Arc::new(transport),
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
        let (counter, body) = self.reserve(plaintext.len(), out, high)?;
        let n = self
            .transport
            .write_message(nonce(counter, high), plaintext, body)
            // The buffer was checked by `reserve`: snow refuses only a message longer than a
            // Noise message may be (65,535 bytes).
            .map_err(|_| EncapsulateError::TooBig)?;
        Ok(DATA_HEADER_LEN + n)
    }

    /// [`Session::seal_flagged`] with the encryption left to a [`SealJob`]: the header is written
    /// into `out` and the counter spent now, the plaintext copied to `plain_out` for the job.
    /// Returns the datagram length (header, ciphertext and tag) and the job.
    #[inline]
    pub(crate) fn seal_later(
        &mut self,
        plaintext: &[u8],
        out: &mut [u8],
        plain_out: &mut [u8],
        high: bool,
    ) -> Result<(usize, SealJob), EncapsulateError> {
        if plaintext.len() > MAX_SEAL {
            return Err(EncapsulateError::TooBig);
        }
        let plain_out = plain_out
            .get_mut(..plaintext.len())
            .ok_or(EncapsulateError::BufferTooSmall)?;
        let (counter, _) = self.reserve(plaintext.len(), out, high)?;
        plain_out.copy_from_slice(plaintext);
        let job = SealJob {
            transport: Arc::clone(&self.transport),
            nonce: nonce(counter, high),
        };
        Ok((DATA_HEADER_LEN + plaintext.len() + TAG_LEN, job))
    }

    /// Check the room in `out` and the counter limit, write the header of the next data message
    /// into `out` and spend its counter; the counter and the room after the header.
    #[inline]
    fn reserve<'o>(
        &mut self,
        len: usize,
        out: &'o mut [u8],
        high: bool,
    ) -> Result<(u64, &'o mut [u8]), EncapsulateError> {
        let total = DATA_HEADER_LEN + len + TAG_LEN;
        if out.len() < total {
            return Err(EncapsulateError::BufferTooSmall);
        }
        if self.send_counter >= REJECT_AFTER_MESSAGES {
            return Err(EncapsulateError::CounterLimit);
        }
        let counter = self.send_counter;
        let (hdr, body) = out[..total].split_at_mut(DATA_HEADER_LEN);
        wire::write_header(hdr, TYPE_DATA);
        if high {
            hdr[3] = wire::DATA_FLAG_PRIORITY;
        }
        hdr[4..8].copy_from_slice(&self.remote_index.to_le_bytes());
        hdr[8..16].copy_from_slice(&counter.to_le_bytes());
        self.send_counter += 1;
        Ok((counter, body))
    }

    /// Check, open and commit a data message. Returns the plaintext length in `out` and whether the
    /// packet is the newest seen on this session. With `ahead`, the decryption done by an
    /// [`OpenJob`] of this session for this message is taken instead of decrypting again; `out`
    /// must then hold what that job wrote.
    #[inline]
    pub(crate) fn open(
        &mut self,
        data: &wire::Data<'_>,
        out: &mut [u8],
        now: Instant,
        ahead: Option<Opened>,
    ) -> Result<(usize, bool), DropReason> {
        let (counter, nonce) = self.check(data, out.len(), now)?;
        let ct = data.ciphertext();
        let n = match ahead
            .filter(|a| a.job.nonce == nonce && Arc::ptr_eq(&a.job.transport, &self.transport))
        {
            Some(a) => a.len.ok_or(DropReason::BadTag)?,
            None => self
                .transport
                .read_message(nonce, ct, out)
                .map_err(|_| DropReason::BadTag)?,
        };
        let newest = self.replay.commit(counter);
        Ok((n, newest))
    }

    /// The checks a data message passes before it is decrypted, in [`Session::open`]'s order:
    /// the session's age, the counter limit, the replay window (not committed) and the room
    /// `out_len` for the plaintext. Its counter and nonce.
    #[inline]
    fn check(
        &self,
        data: &wire::Data<'_>,
        out_len: usize,
        now: Instant,
    ) -> Result<(u64, u64), DropReason> {
        if self.expired(now) {
            return Err(DropReason::SessionExpired);
        }
        let counter = data.counter();
        if counter >= REJECT_AFTER_MESSAGES {
            return Err(DropReason::CounterLimit);
        }
        self.replay.check(counter).map_err(|e| match e {
            ReplayError::Duplicate => DropReason::Duplicate,
            ReplayError::TooOld => DropReason::TooOld,
        })?;
        if out_len < data.ciphertext().len() {
            return Err(DropReason::BufferTooSmall);
        }
        Ok((counter, nonce(counter, data.priority_hint())))
    }

    /// An [`OpenJob`] for `data` if it passes the checks before decryption (otherwise `None`, and
    /// [`Session::open`] will refuse it with the reason); `out_len`: the room for its plaintext.
    #[inline]
    #[cfg_attr(not(feature = "driver"), allow(dead_code))] // used by the driver's crypto workers
    pub(crate) fn open_job(
        &self,
        data: &wire::Data<'_>,
        out_len: usize,
        now: Instant,
    ) -> Option<OpenJob> {
        let (_, nonce) = self.check(data, out_len, now).ok()?;
        Some(OpenJob {
            transport: Arc::clone(&self.transport),
            nonce,
        })
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

    /// The session with local index `index`, read-only.
    #[inline]
    pub(crate) fn find(&self, index: u32) -> Option<&Session> {
        [&self.current, &self.next, &self.previous]
            .into_iter()
            .find_map(|s| s.as_deref().filter(|s| s.local_index == index))
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
