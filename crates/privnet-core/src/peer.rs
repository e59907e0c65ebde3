//! Per-peer state: sessions (current / previous / next), the pending initiation, timers, queue.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ipnetwork::IpNetwork;

use crate::credential::PeerIdentity;
use crate::crypto::PublicKey;
use crate::handshake::PendingInitiation;
use crate::session::Session;
use crate::tai64n::Tai64N;

/// The peer timers, WireGuard's set plus credential expiry.
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

pub(crate) const TIMERS: usize = 6;

/// Per-peer traffic counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerCounters {
    /// Inner bytes received.
    pub rx_bytes: u64,
    /// Inner bytes sent.
    pub tx_bytes: u64,
    /// Data packets received (including keepalives).
    pub rx_packets: u64,
    /// Data packets sent (including keepalives).
    pub tx_packets: u64,
    /// Handshakes completed with this peer.
    pub handshakes: u64,
    /// Packets dropped because the inner source was not the peer's.
    pub spoofed: u64,
}

pub(crate) struct Peer {
    pub(crate) static_public: PublicKey,
    /// mac1 key for messages we send to this peer.
    pub(crate) mac1_key: [u8; 32],
    /// Key of cookie replies this peer sends us.
    pub(crate) cookie_key: [u8; 32],
    pub(crate) endpoint: Option<SocketAddr>,
    pub(crate) config_allowed: Vec<IpNetwork>,
    pub(crate) identity: Option<PeerIdentity>,
    pub(crate) credential: Vec<u8>,
    pub(crate) current: Option<Box<Session>>,
    pub(crate) previous: Option<Box<Session>>,
    pub(crate) next: Option<Box<Session>>,
    pub(crate) pending: Option<PendingInitiation>,
    pub(crate) last_initiation_sent: Option<Instant>,
    pub(crate) handshake_started: Option<Instant>,
    pub(crate) last_timestamp: Option<Tai64N>,
    pub(crate) last_initiation_consumed: Option<Instant>,
    pub(crate) cookie: Option<([u8; 16], Instant)>,
    pub(crate) queue: VecDeque<Vec<u8>>,
    pub(crate) timers: [Option<Instant>; TIMERS],
    pub(crate) scheduled: Option<Instant>,
    pub(crate) need_another_keepalive: bool,
    pub(crate) persistent_keepalive: Option<Duration>,
    pub(crate) last_handshake: Option<Instant>,
    pub(crate) counters: PeerCounters,
}

impl Peer {
    pub(crate) fn new(static_public: PublicKey, mac1_key: [u8; 32], cookie_key: [u8; 32]) -> Self {
        Self {
            static_public,
            mac1_key,
            cookie_key,
            endpoint: None,
            config_allowed: Vec::new(),
            identity: None,
            credential: Vec::new(),
            current: None,
            previous: None,
            next: None,
            pending: None,
            last_initiation_sent: None,
            handshake_started: None,
            last_timestamp: None,
            last_initiation_consumed: None,
            cookie: None,
            queue: VecDeque::new(),
            timers: [None; TIMERS],
            scheduled: None,
            need_another_keepalive: false,
            persistent_keepalive: None,
            last_handshake: None,
            counters: PeerCounters::default(),
        }
    }

    /// Inner source prefixes this peer may use: its verified credential's, or the configured ones
    /// before any credential is known.
    #[inline]
    pub(crate) fn allowed_sources(&self) -> &[IpNetwork] {
        match &self.identity {
            Some(id) => &id.addresses,
            None => &self.config_allowed,
        }
    }

    #[inline]
    pub(crate) fn session_mut(&mut self, index: u32) -> Option<(Slot, &mut Session)> {
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

    /// Indices of all sessions and the pending handshake.
    pub(crate) fn indices(&self) -> impl Iterator<Item = u32> + '_ {
        [&self.current, &self.previous, &self.next]
            .into_iter()
            .filter_map(|s| s.as_ref().map(|s| s.local_index))
            .chain(self.pending.as_ref().map(|p| p.local_index))
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.timers.iter().flatten().min().copied()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Slot {
    Current,
    Previous,
    Next,
}
