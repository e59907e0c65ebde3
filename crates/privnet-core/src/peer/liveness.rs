//! What a peer's traffic says about whether it is alive: when we last heard from it, and since
//! when we have been sending to it (data or handshake initiations) without an answer. The
//! gateway selection (`node/gateways.rs`) reads it; nothing in the peer's own state machine does.

use std::time::Instant;

/// One peer's liveness marks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Liveness {
    /// The last authenticated packet (data, keepalive) or handshake message from the peer.
    pub(crate) last_rx: Option<Instant>,
    /// The first packet that asks for an answer (data, an initiation) sent after `last_rx`:
    /// `None` while nothing we sent is waiting for the peer.
    pub(crate) waiting_since: Option<Instant>,
}

impl Liveness {
    /// We sent something that the peer answers (data: its replies or its passive keepalive;
    /// an initiation: its response).
    #[inline]
    pub(crate) fn sent(&mut self, now: Instant) {
        if self.waiting_since.is_none() {
            self.waiting_since = Some(now);
        }
    }

    /// Something authenticated came from the peer.
    #[inline]
    pub(crate) fn received(&mut self, now: Instant) {
        self.last_rx = Some(now);
        self.waiting_since = None;
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests take the origin of their clock from the real one
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn waiting_starts_at_the_first_unanswered_send_and_ends_with_an_answer() {
        let t0 = Instant::now();
        let mut l = Liveness::default();
        l.sent(t0);
        l.sent(t0 + Duration::from_secs(1));
        assert_eq!(l.waiting_since, Some(t0));
        l.received(t0 + Duration::from_secs(2));
        assert_eq!(l.waiting_since, None);
        assert_eq!(l.last_rx, Some(t0 + Duration::from_secs(2)));
    }
}
