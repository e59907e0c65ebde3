//! One transport session (a "keypair" in WireGuard terms): snow's stateless transport with an explicit
//! counter nonce, the send counter, the replay window and the session's age.

use std::time::Instant;

use crate::config::{REJECT_AFTER_MESSAGES, REJECT_AFTER_TIME};
use crate::error::DropReason;
use crate::replay::{ReplayError, ReplayWindow};
use crate::wire::{self, DATA_HEADER_LEN, TAG_LEN, TYPE_DATA};

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

    /// Can this session still send at `now`?
    #[inline]
    pub(crate) fn can_send(&self, now: Instant) -> bool {
        self.send_counter < REJECT_AFTER_MESSAGES
            && now.saturating_duration_since(self.created) < REJECT_AFTER_TIME
    }

    #[inline]
    pub(crate) fn expired(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.created) >= REJECT_AFTER_TIME
    }

    /// Seal `plaintext` as a data message into `out`; returns the datagram length.
    #[inline]
    pub(crate) fn seal(&mut self, plaintext: &[u8], out: &mut [u8]) -> Result<usize, DropReason> {
        let total = DATA_HEADER_LEN + plaintext.len() + TAG_LEN;
        if out.len() < total {
            return Err(DropReason::BufferTooSmall);
        }
        if self.send_counter >= REJECT_AFTER_MESSAGES {
            return Err(DropReason::CounterLimit);
        }
        let counter = self.send_counter;
        let (hdr, body) = out.split_at_mut(DATA_HEADER_LEN);
        wire::write_header(hdr, TYPE_DATA);
        hdr[4..8].copy_from_slice(&self.remote_index.to_le_bytes());
        hdr[8..16].copy_from_slice(&counter.to_le_bytes());
        let n = self
            .transport
            .write_message(counter, plaintext, &mut body[..plaintext.len() + TAG_LEN])
            .map_err(|_| DropReason::BufferTooSmall)?;
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
            .read_message(counter, ct, out)
            .map_err(|_| DropReason::BadTag)?;
        let newest = self.replay.commit(counter);
        Ok((n, newest))
    }

    #[cfg(any(test, feature = "test-util"))]
    pub(crate) fn set_send_counter(&mut self, c: u64) {
        self.send_counter = c;
    }
}
