//! The node: one member of one private network, as a pure state machine.
//!
//! See the crate docs for the event-loop contract. In short: feed inner packets to
//! [`Node::encapsulate`], UDP datagrams to [`Node::decapsulate`], and time to
//! [`Node::handle_timeout`]; after each, drain [`Node::poll_transmit`] and [`Node::poll_event`], and
//! sleep until [`Node::poll_timeout`].

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnetwork::IpNetwork;
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use snow::params::NoiseParams;

use crate::config::{
    NodeConfig, PeerConfig, COOKIE_SECRET_MAX_AGE, INITIATION_MIN_INTERVAL, KEEPALIVE_TIMEOUT,
    MAX_TIMESTAMP_SKEW, REJECT_AFTER_TIME, REKEY_AFTER_MESSAGES, REKEY_AFTER_TIME,
    REKEY_ATTEMPT_TIME, REKEY_TIMEOUT, REKEY_TIMEOUT_JITTER, ZERO_KEYS_AFTER,
};
use crate::credential::{CredentialVerifier, PeerIdentity};
use crate::crypto::{self, PublicKey};
use crate::error::{DropReason, Stats};
use crate::handshake::{self, LocalKeys};
use crate::peer::{Peer, PeerCounters, Slot, Timer};
use crate::ratelimit::{HandshakeLimiter, LoadDetector};
use crate::router::Router;
use crate::session::Session;
use crate::tai64n::Tai64N;
use crate::wire::{self, Message, COOKIE_REPLY_LEN, DATA_OVERHEAD, HEADER_LEN, TYPE_COOKIE_REPLY};

pub use crate::peer::PeerCounters as Counters;

/// Identifies a peer within one [`Node`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub u32);

/// A datagram to send: `len` bytes at the start of the caller's buffer, to `dst`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Underlay destination.
    pub dst: SocketAddr,
    /// Length of the datagram in the caller's buffer.
    pub len: usize,
}

/// Outcome of [`Node::encapsulate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encapsulated {
    /// The sealed datagram is in the output buffer.
    Send(Transmit),
    /// No session yet: the packet is queued and a handshake is under way; `poll_transmit` yields it.
    Queued,
}

/// Outcome of [`Node::decapsulate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decapsulated {
    /// An authenticated inner packet of `len` bytes is in the output buffer.
    Packet {
        /// The sending peer.
        peer: PeerId,
        /// Length of the inner packet.
        len: usize,
    },
    /// A keepalive: authenticated, nothing to deliver.
    Keepalive,
    /// A handshake or cookie message was consumed; drain `poll_transmit`.
    Control,
}

/// Why a peer's sessions went away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DownReason {
    /// Handshake attempts gave up after `REKEY_ATTEMPT_TIME`.
    HandshakeTimeout,
    /// Key material erased after long inactivity.
    Idle,
    /// The peer's credential expired.
    CredentialExpired,
    /// The peer's credential was refused on revalidation (revoked, CA removed, ...).
    CredentialRevoked,
    /// The peer was removed.
    Removed,
}

/// Something the driver may want to log or act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A session with the peer is established (either role).
    PeerUp {
        /// The peer.
        peer: PeerId,
        /// Its verified name.
        name: String,
    },
    /// The peer's sessions were torn down.
    PeerDown {
        /// The peer.
        peer: PeerId,
        /// Why.
        reason: DownReason,
    },
    /// The peer's underlay endpoint changed (roaming).
    EndpointChanged {
        /// The peer.
        peer: PeerId,
        /// The new endpoint.
        endpoint: SocketAddr,
    },
}

/// Facts about a session, for status and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionInfo {
    /// Our index (the receiver index peers put in data packets to us).
    pub local_index: u32,
    /// The peer's index.
    pub remote_index: u32,
    /// Whether we initiated the handshake that made it.
    pub is_initiator: bool,
    /// Next send counter.
    pub send_counter: u64,
}

/// A snapshot of one peer for status and metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerStatus {
    /// The peer id.
    pub id: PeerId,
    /// Noise static public key.
    pub static_public: PublicKey,
    /// Verified name, once a handshake happened.
    pub name: Option<String>,
    /// Underlay endpoint.
    pub endpoint: Option<SocketAddr>,
    /// Prefixes routed to and accepted from the peer.
    pub addresses: Vec<IpNetwork>,
    /// When the last handshake completed.
    pub last_handshake: Option<Instant>,
    /// Whether a session can carry data now.
    pub established: bool,
    /// Traffic counters.
    pub counters: PeerCounters,
}

enum Pending {
    Raw { dst: SocketAddr, bytes: Vec<u8> },
    Data { peer: PeerId, packet: Vec<u8> },
    Keepalive { peer: PeerId },
}

/// One member of one network.
pub struct Node {
    params: NoiseParams,
    cfg: NodeConfig,
    our_public: PublicKey,
    prologue: [u8; 26],
    /// mac1 key of messages sent to us.
    our_mac1_key: [u8; 32],
    /// Key for cookie replies we send.
    our_cookie_key: [u8; 32],
    rng: ChaCha20Rng,
    epoch: Instant,
    unix_epoch: Duration,
    peers: Vec<Peer>,
    by_static: HashMap<PublicKey, PeerId>,
    indices: HashMap<u32, PeerId>,
    router: Router<PeerId>,
    limiter: HandshakeLimiter,
    load: LoadDetector,
    cookie_secret: [u8; 32],
    cookie_secret_born: Instant,
    timers: BinaryHeap<Reverse<(Instant, u32)>>,
    transmits: VecDeque<Pending>,
    events: VecDeque<Event>,
    stats: Stats,
    last_gc: Instant,
    static_dh: crypto::StaticDhCache,
    /// The latest `now` seen (for queries that take no time argument).
    last_now: Instant,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("peers", &self.peers.len())
            .field("stats", &self.stats)
            .finish()
    }
}

/// Errors from [`Node::new`] and [`Node::add_peer`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// A public key is a low-order point.
    #[error("public key is a low-order point")]
    LowOrderKey,
    /// The peer is ourselves.
    #[error("peer key is our own key")]
    OwnKey,
    /// The peer is already configured.
    #[error("peer already configured")]
    DuplicatePeer,
    /// Too many peers.
    #[error("too many peers")]
    TooManyPeers,
    /// Our credential is larger than a handshake can carry.
    #[error("credential larger than {} bytes", wire::MAX_CREDENTIAL_LEN)]
    CredentialTooLarge,
}

impl Node {
    /// Create a node. `unix_now` is the wall-clock time corresponding to `now`; it is used only for
    /// handshake timestamps and credential validity.
    pub fn new(cfg: NodeConfig, now: Instant, unix_now: Duration) -> Result<Self, NodeError> {
        if cfg.credential.len() > wire::MAX_CREDENTIAL_LEN {
            return Err(NodeError::CredentialTooLarge);
        }
        let params: NoiseParams = cfg
            .cipher
            .noise_params()
            .parse()
            .map_err(|_| NodeError::LowOrderKey)?;
        let our_public = cfg.static_secret.public_key();
        if crypto::is_low_order(&our_public) {
            return Err(NodeError::LowOrderKey);
        }
        let mut rng = ChaCha20Rng::from_seed(cfg.rng_seed);
        let mut cookie_secret = [0u8; 32];
        rng.fill_bytes(&mut cookie_secret);
        Ok(Self {
            params,
            our_mac1_key: crypto::mac1_key(&cfg.network_psk, &our_public),
            our_cookie_key: crypto::cookie_key(&cfg.network_psk, &our_public),
            prologue: crypto::prologue(&cfg.network_id),
            limiter: HandshakeLimiter::new(
                cfg.handshake_rate_per_source,
                cfg.handshake_burst_per_source,
                cfg.limiter_max_sources,
                now,
            ),
            load: LoadDetector::new(cfg.under_load_handshakes_per_sec, now),
            our_public,
            cfg,
            rng,
            epoch: now,
            unix_epoch: unix_now,
            peers: Vec::new(),
            by_static: HashMap::new(),
            indices: HashMap::new(),
            router: Router::new(),
            cookie_secret,
            cookie_secret_born: now,
            timers: BinaryHeap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
            last_gc: now,
            static_dh: crypto::StaticDhCache::default(),
            last_now: now,
        })
    }

    /// The network's cipher suite (`NodeConfig::cipher`).
    pub fn cipher(&self) -> crypto::CipherSuite {
        self.cfg.cipher
    }

    /// Our Noise static public key.
    pub fn public_key(&self) -> PublicKey {
        self.our_public
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Wall-clock time at `now`.
    pub fn unix_time(&self, now: Instant) -> Duration {
        self.unix_epoch + now.saturating_duration_since(self.epoch)
    }

    /// Add a configured peer. With `eager_handshakes` and a known endpoint, a handshake starts now.
    pub fn add_peer(&mut self, pc: PeerConfig, now: Instant) -> Result<PeerId, NodeError> {
        if crypto::is_low_order(&pc.static_public) {
            return Err(NodeError::LowOrderKey);
        }
        if pc.static_public == self.our_public {
            return Err(NodeError::OwnKey);
        }
        if self.by_static.contains_key(&pc.static_public) {
            return Err(NodeError::DuplicatePeer);
        }
        let id = self.new_peer(pc.static_public)?;
        let eager = self.cfg.eager_handshakes && pc.endpoint.is_some();
        if let Some(p) = self.peers.get_mut(id.0 as usize) {
            p.endpoint = pc.endpoint;
            p.persistent_keepalive = pc.persistent_keepalive;
            p.config_allowed = pc.allowed_ips.clone();
        }
        for net in pc.allowed_ips {
            self.router.insert(net, id);
        }
        if let Some(every) = pc.persistent_keepalive {
            if let Some(at) = now.checked_add(every) {
                self.arm(id, Timer::PersistentKeepalive, at);
            }
        }
        if eager {
            self.initiate(id, now, false);
        }
        Ok(id)
    }

    fn new_peer(&mut self, static_public: PublicKey) -> Result<PeerId, NodeError> {
        if self.peers.len() >= self.cfg.max_peers {
            return Err(NodeError::TooManyPeers);
        }
        let id = PeerId(u32::try_from(self.peers.len()).map_err(|_| NodeError::TooManyPeers)?);
        self.peers.push(Peer::new(
            static_public,
            crypto::mac1_key(&self.cfg.network_psk, &static_public),
            crypto::cookie_key(&self.cfg.network_psk, &static_public),
        ));
        self.by_static.insert(static_public, id);
        self.static_dh.register(static_public);
        Ok(id)
    }

    /// The peer holding `static_public`.
    pub fn peer_by_key(&self, static_public: &PublicKey) -> Option<PeerId> {
        self.by_static.get(static_public).copied()
    }

    /// Number of peers (configured and learned).
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// Status of every peer.
    pub fn peer_status(&self) -> Vec<PeerStatus> {
        self.peers
            .iter()
            .enumerate()
            .map(|(i, p)| PeerStatus {
                id: PeerId(i as u32),
                static_public: p.static_public,
                name: p.identity.as_ref().map(|i| i.name.clone()),
                endpoint: p.endpoint,
                addresses: p.allowed_sources().to_vec(),
                last_handshake: p.last_handshake,
                established: p.current.is_some(),
                counters: p.counters,
            })
            .collect()
    }

    /// Whether the peer has a session that can carry data (not past its reject-after time).
    pub fn is_established(&self, peer: PeerId) -> bool {
        self.is_established_at(peer, self.last_now)
    }

    fn is_established_at(&self, peer: PeerId, now: Instant) -> bool {
        self.peers
            .get(peer.0 as usize)
            .and_then(|p| p.current.as_deref())
            .is_some_and(|s| s.can_send(now))
    }

    /// The peer's current session: two nodes share one session when each one's local index is the
    /// other's remote index.
    pub fn current_session(&self, peer: PeerId) -> Option<SessionInfo> {
        self.peers
            .get(peer.0 as usize)
            .and_then(|p| p.current.as_deref())
            .map(|s| SessionInfo {
                local_index: s.local_index,
                remote_index: s.remote_index,
                is_initiator: s.is_initiator,
                send_counter: s.send_counter,
            })
    }

    /// Whether the node currently demands cookies.
    pub fn is_under_load(&self, now: Instant) -> bool {
        self.load.is_under_load(now)
    }

    /// Entries in the handshake limiter table.
    pub fn limiter_sources(&self) -> usize {
        self.limiter.len()
    }

    // -----------------------------------------------------------------------------------------
    // timers

    fn arm(&mut self, id: PeerId, timer: Timer, at: Instant) {
        let Some(p) = self.peers.get_mut(id.0 as usize) else {
            return;
        };
        p.timers[timer as usize] = Some(at);
        if p.scheduled.is_none_or(|s| at < s) {
            p.scheduled = Some(at);
            self.timers.push(Reverse((at, id.0)));
        }
    }

    fn arm_if_unset(&mut self, id: PeerId, timer: Timer, at: Instant) {
        let unset = self
            .peers
            .get(id.0 as usize)
            .is_some_and(|p| p.timers[timer as usize].is_none());
        if unset {
            self.arm(id, timer, at);
        }
    }

    fn disarm(&mut self, id: PeerId, timer: Timer) {
        if let Some(p) = self.peers.get_mut(id.0 as usize) {
            p.timers[timer as usize] = None;
        }
    }

    fn jitter(&mut self) -> Duration {
        let max = REKEY_TIMEOUT_JITTER.as_millis() as u32 + 1;
        Duration::from_millis(u64::from(self.rng.next_u32() % max))
    }

    /// When `handle_timeout` must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let peer = self.timers.peek().map(|Reverse((t, _))| *t);
        let gc = (!self.limiter.is_empty()).then(|| self.last_gc + Duration::from_secs(1));
        match (peer, gc) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Advance time: fire due timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.last_now = self.last_now.max(now);
        if !self.limiter.is_empty() && now >= self.last_gc + Duration::from_secs(1) {
            self.limiter.gc(now);
            self.last_gc = now;
        }
        while let Some(Reverse((t, id))) = self.timers.peek().copied() {
            if t > now {
                break;
            }
            self.timers.pop();
            let id = PeerId(id);
            if let Some(p) = self.peers.get_mut(id.0 as usize) {
                if p.scheduled == Some(t) {
                    p.scheduled = None;
                }
            }
            self.fire_peer_timers(id, now);
            let next = self
                .peers
                .get(id.0 as usize)
                .and_then(|p| p.next_deadline().map(|d| (d, p.scheduled)));
            if let Some((d, scheduled)) = next {
                if scheduled.is_none_or(|s| d < s || s <= now) {
                    if let Some(p) = self.peers.get_mut(id.0 as usize) {
                        p.scheduled = Some(d);
                    }
                    self.timers.push(Reverse((d.max(now), id.0)));
                }
            }
        }
    }

    fn due(&self, id: PeerId, timer: Timer, now: Instant) -> bool {
        self.peers
            .get(id.0 as usize)
            .and_then(|p| p.timers[timer as usize])
            .is_some_and(|t| t <= now)
    }

    fn fire_peer_timers(&mut self, id: PeerId, now: Instant) {
        if self.due(id, Timer::CredentialExpiry, now) {
            self.disarm(id, Timer::CredentialExpiry);
            self.check_credential(id, now);
        }
        if self.due(id, Timer::ZeroKeys, now) {
            self.disarm(id, Timer::ZeroKeys);
            self.teardown(id, DownReason::Idle);
        }
        if self.due(id, Timer::RetransmitHandshake, now) {
            self.disarm(id, Timer::RetransmitHandshake);
            let gave_up = self
                .peers
                .get(id.0 as usize)
                .and_then(|p| p.handshake_started)
                .is_none_or(|s| now.saturating_duration_since(s) >= REKEY_ATTEMPT_TIME);
            if gave_up {
                self.give_up_handshake(id, now);
            } else {
                self.initiate(id, now, true);
            }
        }
        if self.due(id, Timer::NewHandshake, now) {
            self.disarm(id, Timer::NewHandshake);
            self.initiate(id, now, false);
        }
        if self.due(id, Timer::SendKeepalive, now) {
            self.disarm(id, Timer::SendKeepalive);
            let again = self.peers.get_mut(id.0 as usize).is_some_and(|p| {
                std::mem::take(&mut p.need_another_keepalive) && p.current.is_some()
            });
            self.transmits.push_back(Pending::Keepalive { peer: id });
            if again {
                self.arm(id, Timer::SendKeepalive, now + KEEPALIVE_TIMEOUT);
            }
        }
        if self.due(id, Timer::PersistentKeepalive, now) {
            let every = self
                .peers
                .get(id.0 as usize)
                .and_then(|p| p.persistent_keepalive);
            self.disarm(id, Timer::PersistentKeepalive);
            if let Some(every) = every {
                if self.is_established_at(id, now) {
                    self.transmits.push_back(Pending::Keepalive { peer: id });
                } else {
                    self.initiate(id, now, false);
                }
                if let Some(at) = now.checked_add(every) {
                    self.arm(id, Timer::PersistentKeepalive, at);
                }
            }
        }
    }

    fn give_up_handshake(&mut self, id: PeerId, now: Instant) {
        let Some(p) = self.peers.get_mut(id.0 as usize) else {
            return;
        };
        let dropped = p.queue.len() as u64;
        p.queue.clear();
        p.queue.shrink_to_fit();
        p.handshake_started = None;
        if let Some(pending) = p.pending.take() {
            self.indices.remove(&pending.local_index);
        }
        for _ in 0..dropped {
            self.stats.drop(DropReason::HandshakeTimeout);
        }
        self.disarm(id, Timer::SendKeepalive);
        self.arm_if_unset(id, Timer::ZeroKeys, now + ZERO_KEYS_AFTER);
        tracing::debug!(
            peer = id.0,
            "handshake gave up after {:?}",
            REKEY_ATTEMPT_TIME
        );
    }

    /// Drop every session and the pending handshake of `id`.
    fn teardown(&mut self, id: PeerId, reason: DownReason) {
        let Some(p) = self.peers.get_mut(id.0 as usize) else {
            return;
        };
        let was_up = p.current.is_some() || p.next.is_some() || p.previous.is_some();
        let idx: Vec<u32> = p.indices().collect();
        p.current = None;
        p.previous = None;
        p.next = None;
        p.pending = None;
        p.handshake_started = None;
        p.queue.clear();
        p.timers = [None; crate::peer::TIMERS];
        let keepalive = p.persistent_keepalive;
        for i in idx {
            self.indices.remove(&i);
        }
        if was_up {
            self.events.push_back(Event::PeerDown { peer: id, reason });
        }
        // A peer configured to be kept alive is tried again (after a revocation or expiry the
        // handshakes are refused by the peer's verifier, and give up after 90 s each round).
        if let (Some(every), false) = (keepalive, reason == DownReason::Removed) {
            if let Some(at) = self.last_now.checked_add(every) {
                self.arm(id, Timer::PersistentKeepalive, at);
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // credentials

    fn check_credential(&mut self, id: PeerId, now: Instant) {
        let unix = self.unix_time(now).as_secs();
        let Some(p) = self.peers.get(id.0 as usize) else {
            return;
        };
        let Some(ident) = &p.identity else {
            return;
        };
        if unix < ident.not_after {
            if let Some(at) = self.instant_of_unix(ident.not_after, now) {
                self.arm(
                    id,
                    Timer::CredentialExpiry,
                    at.max(now + Duration::from_millis(1)),
                );
            }
            return;
        }
        tracing::info!(peer = %ident.name, "peer credential expired; tearing down");
        self.revoke_peer(id, DownReason::CredentialExpired);
    }

    fn revoke_peer(&mut self, id: PeerId, reason: DownReason) {
        self.stats.credential_teardowns += 1;
        self.teardown(id, reason);
        if let Some(p) = self.peers.get_mut(id.0 as usize) {
            p.identity = None;
            p.credential = Vec::new();
            p.last_timestamp = None;
        }
        self.rebuild_routes(id);
    }

    /// The `Instant` at which wall time reaches `unix_secs`; `None` if beyond what `Instant` can
    /// represent (a credential that never expires in practice).
    fn instant_of_unix(&self, unix_secs: u64, now: Instant) -> Option<Instant> {
        let target = Duration::from_secs(unix_secs);
        match target.checked_sub(self.unix_epoch) {
            Some(d) => self.epoch.checked_add(d),
            None => Some(now),
        }
    }

    /// Replace the credential verifier (new CA set, new revocation list) and re-verify every peer's
    /// credential at once: peers that no longer verify are torn down now, not at the next rekey.
    pub fn set_verifier(&mut self, verifier: Arc<dyn CredentialVerifier>, now: Instant) {
        self.cfg.verifier = verifier;
        self.revalidate(now);
    }

    /// Re-verify every peer's credential with the current verifier.
    pub fn revalidate(&mut self, now: Instant) {
        let unix = self.unix_time(now).as_secs();
        let mut refused = Vec::new();
        for (i, p) in self.peers.iter().enumerate() {
            if p.identity.is_some()
                && self
                    .cfg
                    .verifier
                    .verify(&p.credential, &p.static_public, unix)
                    .is_err()
            {
                refused.push(PeerId(i as u32));
            }
        }
        for id in refused {
            tracing::info!(peer = id.0, "peer credential no longer valid; tearing down");
            self.revoke_peer(id, DownReason::CredentialRevoked);
        }
    }

    fn set_identity(&mut self, id: PeerId, ident: PeerIdentity, credential: Vec<u8>, now: Instant) {
        let expiry = self.instant_of_unix(ident.not_after, now);
        if let Some(p) = self.peers.get_mut(id.0 as usize) {
            let changed = p.identity.as_ref() != Some(&ident);
            p.identity = Some(ident);
            p.credential = credential;
            if changed {
                self.rebuild_routes(id);
            }
        }
        match expiry {
            Some(at) => self.arm(id, Timer::CredentialExpiry, at),
            None => self.disarm(id, Timer::CredentialExpiry),
        }
    }

    fn rebuild_routes(&mut self, id: PeerId) {
        self.router.remove_value(&id);
        let Some(p) = self.peers.get(id.0 as usize) else {
            return;
        };
        // The same prefixes the anti-spoofing check accepts: the verified credential's once known,
        // the configured ones before.
        let nets: Vec<IpNetwork> = p.allowed_sources().to_vec();
        for n in nets {
            self.router.insert(n, id);
        }
    }

    // -----------------------------------------------------------------------------------------
    // outbound

    /// Seal an inner IP packet for the peer that owns its destination.
    ///
    /// `out` must hold `packet.len() + 32` bytes. Allocates nothing when a session exists.
    pub fn encapsulate(
        &mut self,
        packet: &[u8],
        out: &mut [u8],
        now: Instant,
    ) -> Result<Encapsulated, DropReason> {
        let r = self.encapsulate_inner(packet, out, now);
        if let Err(e) = r {
            self.stats.drop(e);
        }
        r
    }

    fn encapsulate_inner(
        &mut self,
        packet: &[u8],
        out: &mut [u8],
        now: Instant,
    ) -> Result<Encapsulated, DropReason> {
        if packet.len() > self.cfg.mtu {
            return Err(DropReason::TooBig);
        }
        let (_, dst) = wire::inner_addresses(packet)?;
        let id = *self.router.lookup(dst).ok_or(DropReason::NoRoute)?;
        self.seal_for(id, packet, out, now)
    }

    /// Seal `packet` for a specific peer (the routing decision was made by the caller). Every
    /// `Err` has been counted in [`Node::stats`].
    pub fn encapsulate_to(
        &mut self,
        id: PeerId,
        packet: &[u8],
        out: &mut [u8],
        now: Instant,
    ) -> Result<Encapsulated, DropReason> {
        let r = self.seal_for(id, packet, out, now);
        if let Err(e) = r {
            self.stats.drop(e);
        }
        r
    }

    fn seal_for(
        &mut self,
        id: PeerId,
        packet: &[u8],
        out: &mut [u8],
        now: Instant,
    ) -> Result<Encapsulated, DropReason> {
        self.last_now = now;
        let max_queue = self.cfg.max_queued_per_peer;
        let p = self
            .peers
            .get_mut(id.0 as usize)
            .ok_or(DropReason::NoRoute)?;
        let usable = p.current.as_deref().is_some_and(|s| s.can_send(now));
        if !usable {
            if p.queue.len() >= max_queue {
                p.queue.pop_front();
                self.stats.drop(DropReason::QueueFull);
            }
            p.queue.push_back(packet.to_vec());
            self.initiate(id, now, false);
            return Ok(Encapsulated::Queued);
        }
        let endpoint = p.endpoint.ok_or(DropReason::NoEndpoint)?;
        let Some(s) = p.current.as_deref_mut() else {
            return Err(DropReason::NoRoute);
        };
        let n = s.seal(packet, out)?;
        let want_rekey = s.is_initiator
            && (s.send_counter >= REKEY_AFTER_MESSAGES
                || now.saturating_duration_since(s.created) >= REKEY_AFTER_TIME);
        p.counters.tx_packets += 1;
        p.counters.tx_bytes += packet.len() as u64;
        self.stats.tx_packets += 1;
        self.stats.tx_bytes += packet.len() as u64;
        self.on_authenticated_sent(id, !packet.is_empty(), now);
        if want_rekey {
            self.initiate(id, now, false);
        }
        Ok(Encapsulated::Send(Transmit {
            dst: endpoint,
            len: n,
        }))
    }

    #[inline]
    fn on_authenticated_sent(&mut self, id: PeerId, is_data: bool, now: Instant) {
        let Some(p) = self.peers.get_mut(id.0 as usize) else {
            return;
        };
        p.timers[Timer::SendKeepalive as usize] = None;
        let arm_new = is_data && p.timers[Timer::NewHandshake as usize].is_none();
        if arm_new {
            let at = now + KEEPALIVE_TIMEOUT + REKEY_TIMEOUT + self.jitter();
            self.arm(id, Timer::NewHandshake, at);
        }
    }

    /// Start a new handshake with `peer` now (a forced rekey), even if a session exists.
    pub fn initiate_handshake(&mut self, peer: PeerId, now: Instant) {
        self.initiate(peer, now, true);
    }

    /// Start a handshake with `id` unless one was sent less than `REKEY_TIMEOUT` ago (`retry` forces
    /// a new attempt, used by the retransmit timer).
    fn initiate(&mut self, id: PeerId, now: Instant, retry: bool) {
        let Some(p) = self.peers.get(id.0 as usize) else {
            return;
        };
        if !retry
            && p.pending.is_some()
            && p.last_initiation_sent
                .is_some_and(|t| now.saturating_duration_since(t) < REKEY_TIMEOUT)
        {
            return;
        }
        let Some(endpoint) = p.endpoint else {
            self.stats.drop(DropReason::NoEndpoint);
            return;
        };
        let remote = p.static_public;
        let mac1_key = p.mac1_key;
        let cookie = p
            .cookie
            .filter(|(_, t)| {
                now.saturating_duration_since(*t) < COOKIE_SECRET_MAX_AGE - Duration::from_secs(5)
            })
            .map(|(c, _)| c);
        let old_index = p.pending.as_ref().map(|x| x.local_index);
        if let Some(i) = old_index {
            self.indices.remove(&i);
        }
        let local_index = self.new_index(id);
        let mut seed = [0u8; 32];
        self.rng.fill_bytes(&mut seed);
        let ts = Tai64N::from_unix(self.unix_time(now));
        let keys = LocalKeys {
            params: &self.params,
            cipher_id: self.cfg.cipher.wire_id(),
            static_secret: &self.cfg.static_secret,
            static_public: &self.our_public,
            static_dh: &self.static_dh,
            psk: &self.cfg.network_psk,
            prologue: &self.prologue,
        };
        let built = handshake::build_initiation(
            &keys,
            &remote,
            &mac1_key,
            local_index,
            ts,
            &self.cfg.credential,
            cookie.as_ref(),
            seed,
        );
        let (pending, bytes) = match built {
            Ok(x) => x,
            Err(e) => {
                self.indices.remove(&local_index);
                self.stats.drop(e);
                return;
            }
        };
        let jitter = self.jitter();
        if let Some(p) = self.peers.get_mut(id.0 as usize) {
            p.pending = Some(pending);
            p.last_initiation_sent = Some(now);
            if p.handshake_started.is_none() {
                p.handshake_started = Some(now);
            }
        }
        self.arm(id, Timer::RetransmitHandshake, now + REKEY_TIMEOUT + jitter);
        self.stats.handshakes_initiated += 1;
        self.transmits.push_back(Pending::Raw {
            dst: endpoint,
            bytes,
        });
    }

    fn new_index(&mut self, id: PeerId) -> u32 {
        loop {
            let i = self.rng.next_u32();
            if i != 0 && !self.indices.contains_key(&i) {
                self.indices.insert(i, id);
                return i;
            }
        }
    }

    /// Next control datagram (handshake, cookie reply, keepalive) or queued data packet, written into
    /// `buf` (give it at least MTU + 32 bytes, or 1500 for handshakes). Returns `None` when empty.
    pub fn poll_transmit(&mut self, buf: &mut [u8], now: Instant) -> Option<Transmit> {
        while let Some(p) = self.transmits.pop_front() {
            match p {
                Pending::Raw { dst, bytes } => {
                    let Some(dst_buf) = buf.get_mut(..bytes.len()) else {
                        self.stats.drop(DropReason::BufferTooSmall);
                        continue;
                    };
                    dst_buf.copy_from_slice(&bytes);
                    return Some(Transmit {
                        dst,
                        len: bytes.len(),
                    });
                }
                Pending::Data { peer, packet } => {
                    match self.encapsulate_to(peer, &packet, buf, now) {
                        Ok(Encapsulated::Send(t)) => return Some(t),
                        Ok(Encapsulated::Queued) | Err(_) => continue,
                    }
                }
                Pending::Keepalive { peer } => {
                    let Some(p) = self.peers.get_mut(peer.0 as usize) else {
                        continue;
                    };
                    let Some(endpoint) = p.endpoint else {
                        continue;
                    };
                    let Some(s) = p.current.as_deref_mut().filter(|s| s.can_send(now)) else {
                        // The session expired: a keepalive is a reason to make a new one.
                        self.initiate(peer, now, false);
                        continue;
                    };
                    let want_rekey = s.is_initiator
                        && now.saturating_duration_since(s.created) >= REKEY_AFTER_TIME;
                    match s.seal(&[], buf) {
                        Ok(n) => {
                            p.counters.tx_packets += 1;
                            self.stats.keepalives_sent += 1;
                            self.on_authenticated_sent(peer, false, now);
                            if want_rekey {
                                self.initiate(peer, now, false);
                            }
                            return Some(Transmit {
                                dst: endpoint,
                                len: n,
                            });
                        }
                        Err(e) => {
                            self.stats.drop(e);
                            continue;
                        }
                    }
                }
            }
        }
        None
    }

    /// Next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    // -----------------------------------------------------------------------------------------
    // inbound

    /// Process one datagram received from `from`. An inner packet is written into `out` (give it
    /// as many bytes as the datagram). Every `Err` has been counted in [`Node::stats`].
    pub fn decapsulate(
        &mut self,
        from: SocketAddr,
        datagram: &[u8],
        out: &mut [u8],
        now: Instant,
    ) -> Result<Decapsulated, DropReason> {
        self.last_now = self.last_now.max(now);
        let r = match wire::parse(datagram) {
            Ok(Message::Data(d)) => self.handle_data(from, &d, out, now),
            Ok(Message::Initiation(m)) => self
                .handle_initiation(from, &m, now)
                .map(|_| Decapsulated::Control),
            Ok(Message::Response(m)) => self
                .handle_response(from, &m, now)
                .map(|_| Decapsulated::Control),
            Ok(Message::CookieReply(m)) => self
                .handle_cookie_reply(&m, now)
                .map(|_| Decapsulated::Control),
            Err(e) => Err(e),
        };
        if let Err(e) = r {
            self.stats.drop(e);
        }
        r
    }

    #[inline]
    fn handle_data(
        &mut self,
        from: SocketAddr,
        d: &wire::Data<'_>,
        out: &mut [u8],
        now: Instant,
    ) -> Result<Decapsulated, DropReason> {
        let id = *self
            .indices
            .get(&d.receiver())
            .ok_or(DropReason::UnknownIndex)?;
        let p = self
            .peers
            .get_mut(id.0 as usize)
            .ok_or(DropReason::UnknownIndex)?;
        let (slot, s) = p
            .session_mut(d.receiver())
            .ok_or(DropReason::UnknownIndex)?;
        let (n, newest) = s.open(d, out, now)?;
        let initiator_age = (slot == Slot::Current && s.is_initiator)
            .then(|| now.saturating_duration_since(s.created));

        // Key confirmation: the first packet on the responder's new session promotes it.
        let mut confirmed = false;
        let mut stale = None;
        if slot == Slot::Next {
            stale = p.previous.take().map(|s| s.local_index);
            p.previous = p.current.take();
            p.current = p.next.take();
            confirmed = true;
        }
        let roamed = newest && p.endpoint != Some(from);
        if roamed {
            p.endpoint = Some(from);
        }
        p.counters.rx_packets += 1;
        // Anti-spoofing: the inner source must belong to the sending member.
        let delivered = if n == 0 {
            Ok(Decapsulated::Keepalive)
        } else {
            match out.get(..n).map(wire::inner_addresses) {
                Some(Ok((src, _))) if crate::router::contains_any(p.allowed_sources(), src) => {
                    p.counters.rx_bytes += n as u64;
                    Ok(Decapsulated::Packet { peer: id, len: n })
                }
                Some(Ok(_)) => {
                    p.counters.spoofed += 1;
                    Err(DropReason::SpoofedSource)
                }
                _ => Err(DropReason::MalformedInner),
            }
        };
        if let Some(i) = stale {
            self.indices.remove(&i);
        }
        if confirmed {
            self.handshake_complete(id, now);
        }
        if roamed {
            self.events.push_back(Event::EndpointChanged {
                peer: id,
                endpoint: from,
            });
        }
        // Timers: any authenticated packet received.
        self.disarm(id, Timer::NewHandshake);
        if n > 0 {
            let armed = self
                .peers
                .get(id.0 as usize)
                .is_some_and(|p| p.timers[Timer::SendKeepalive as usize].is_some());
            if armed {
                if let Some(p) = self.peers.get_mut(id.0 as usize) {
                    p.need_another_keepalive = true;
                }
            } else {
                self.arm(id, Timer::SendKeepalive, now + KEEPALIVE_TIMEOUT);
            }
        }
        // Receiving-side rekey, initiator only.
        if initiator_age.is_some_and(|a| a >= REJECT_AFTER_TIME - KEEPALIVE_TIMEOUT - REKEY_TIMEOUT)
        {
            self.initiate(id, now, false);
        }
        if delivered.is_ok() {
            self.stats.rx_packets += 1;
            self.stats.rx_bytes += n as u64;
        }
        delivered
    }

    fn handshake_complete(&mut self, id: PeerId, now: Instant) {
        self.disarm(id, Timer::RetransmitHandshake);
        let name = match self.peers.get_mut(id.0 as usize) {
            Some(p) => {
                p.handshake_started = None;
                p.last_handshake = Some(now);
                p.counters.handshakes += 1;
                p.identity
                    .as_ref()
                    .map(|i| i.name.clone())
                    .unwrap_or_default()
            }
            None => return,
        };
        self.stats.handshakes_completed += 1;
        self.arm(id, Timer::ZeroKeys, now + ZERO_KEYS_AFTER);
        self.events.push_back(Event::PeerUp { peer: id, name });
        // Flush packets queued while the handshake was in progress.
        if let Some(p) = self.peers.get_mut(id.0 as usize) {
            let queued = std::mem::take(&mut p.queue);
            for packet in queued {
                self.transmits.push_back(Pending::Data { peer: id, packet });
            }
        }
    }

    fn cookie_for(&mut self, from: SocketAddr, now: Instant) -> [u8; 16] {
        if now.saturating_duration_since(self.cookie_secret_born) >= COOKIE_SECRET_MAX_AGE {
            self.rng.fill_bytes(&mut self.cookie_secret);
            self.cookie_secret_born = now;
        }
        let mut addr = [0u8; 18];
        match from.ip() {
            IpAddr::V4(a) => addr[..4].copy_from_slice(&a.octets()),
            IpAddr::V6(a) => addr[..16].copy_from_slice(&a.octets()),
        }
        addr[16..].copy_from_slice(&from.port().to_le_bytes());
        crypto::mac16(&self.cookie_secret, &addr)
    }

    fn send_cookie_reply(&mut self, from: SocketAddr, sender: u32, mac1: &[u8], now: Instant) {
        let cookie = self.cookie_for(from, now);
        let mut nonce = [0u8; 24];
        self.rng.fill_bytes(&mut nonce);
        let Some(sealed) = crypto::seal_cookie(&self.our_cookie_key, &nonce, &cookie, mac1) else {
            return;
        };
        let mut msg = vec![0u8; COOKIE_REPLY_LEN];
        wire::write_header(&mut msg, TYPE_COOKIE_REPLY);
        msg[HEADER_LEN..HEADER_LEN + 4].copy_from_slice(&sender.to_le_bytes());
        msg[HEADER_LEN + 4..HEADER_LEN + 28].copy_from_slice(&nonce);
        msg[HEADER_LEN + 28..].copy_from_slice(&sealed);
        self.stats.cookies_sent += 1;
        self.transmits.push_back(Pending::Raw {
            dst: from,
            bytes: msg,
        });
    }

    /// mac1 of a handshake message, checked with our own mac1 key (before any other work).
    fn check_mac1<'a>(&self, (covered, mac1): (&[u8], &'a [u8])) -> Result<&'a [u8], DropReason> {
        if crypto::ct_eq(&crypto::mac16(&self.our_mac1_key, covered), mac1) {
            Ok(mac1)
        } else {
            Err(DropReason::BadMac1)
        }
    }

    /// The cipher suite named by a handshake message that passed mac1 (so it comes from a holder
    /// of the network's key) must be ours: another one is a different Noise protocol, which would
    /// fail later as an anonymous `handshake_failed`.
    fn check_cipher(&self, id: u8) -> Result<(), DropReason> {
        if id == self.cfg.cipher.wire_id() {
            Ok(())
        } else {
            tracing::debug!(
                ours = %self.cfg.cipher,
                theirs = ?crypto::CipherSuite::from_wire_id(id),
                "handshake from a member with another cipher suite"
            );
            Err(DropReason::CipherMismatch)
        }
    }

    /// Admission of a handshake message that passed mac1 and is about to cost Diffie-Hellman work:
    /// load accounting; under load a valid mac2 (else a cookie reply to `from`, answering `sender`,
    /// with `mac1` as associated data); then the per-source rate limit.
    fn admit_handshake(
        &mut self,
        from: SocketAddr,
        sender: u32,
        mac1: &[u8],
        (covered, mac2): (&[u8], &[u8]),
        now: Instant,
    ) -> Result<(), DropReason> {
        if self.load.record(now) {
            let cookie = self.cookie_for(from, now);
            if !crypto::ct_eq(&crypto::mac16(&cookie, covered), mac2) {
                self.send_cookie_reply(from, sender, mac1, now);
                return Err(DropReason::CookieRequired);
            }
        }
        self.limiter.check(from.ip(), now)
    }

    fn handle_initiation(
        &mut self,
        from: SocketAddr,
        m: &wire::Initiation<'_>,
        now: Instant,
    ) -> Result<(), DropReason> {
        let mac1 = self.check_mac1(m.mac1_parts())?;
        self.check_cipher(m.cipher_id())?;
        self.admit_handshake(from, m.sender(), mac1, m.mac2_parts(), now)?;
        // A low-order ephemeral or static key makes the first Diffie-Hellman that uses it all-zero,
        // which our X25519 refuses: the handshake stops there with `BadKey`.

        let mut seed = [0u8; 32];
        self.rng.fill_bytes(&mut seed);
        let keys = LocalKeys {
            params: &self.params,
            cipher_id: self.cfg.cipher.wire_id(),
            static_secret: &self.cfg.static_secret,
            static_public: &self.our_public,
            static_dh: &self.static_dh,
            psk: &self.cfg.network_psk,
            prologue: &self.prologue,
        };
        let rx = handshake::read_initiation(&keys, m, seed)?;
        let unix_now = self.unix_time(now);
        let ident = self
            .cfg
            .verifier
            .verify(&rx.credential, &rx.remote_static, unix_now.as_secs())
            .map_err(|e| {
                tracing::debug!(%from, error = %e, "initiation with refused credential");
                DropReason::BadCredential
            })?;
        if rx.timestamp.to_unix() > unix_now + MAX_TIMESTAMP_SKEW {
            return Err(DropReason::FutureTimestamp);
        }
        let id = match self.by_static.get(&rx.remote_static) {
            Some(id) => *id,
            None if self.cfg.accept_unknown_peers => self
                .new_peer(rx.remote_static)
                .map_err(|_| DropReason::TooManyPeers)?,
            None => return Err(DropReason::BadCredential),
        };
        let our_public = self.our_public;
        let p = self
            .peers
            .get_mut(id.0 as usize)
            .ok_or(DropReason::BadCredential)?;
        if p.last_timestamp.is_some_and(|last| rx.timestamp <= last) {
            return Err(DropReason::ReplayedInitiation);
        }
        if p.last_initiation_consumed
            .is_some_and(|t| now.saturating_duration_since(t) < INITIATION_MIN_INTERVAL)
        {
            return Err(DropReason::InitiationFlood);
        }
        p.last_timestamp = Some(rx.timestamp);
        p.last_initiation_consumed = Some(now);
        // Simultaneous initiation: the initiation of the lower static key wins. The higher key
        // abandons its own pending initiation and answers; the lower key answers too but keeps its
        // own, whose response will become the session both sides use.
        let mut abandoned = None;
        if our_public > rx.remote_static {
            if let Some(pending) = p.pending.take() {
                abandoned = Some(pending.local_index);
            }
        }
        let cookie = p
            .cookie
            .filter(|(_, t)| {
                now.saturating_duration_since(*t) < COOKIE_SECRET_MAX_AGE - Duration::from_secs(5)
            })
            .map(|(c, _)| c);
        let mac1_key = p.mac1_key;
        if let Some(i) = abandoned {
            self.indices.remove(&i);
            self.disarm(id, Timer::RetransmitHandshake);
        }
        let local_index = self.new_index(id);
        let built = handshake::build_response(
            rx.state,
            self.cfg.cipher.wire_id(),
            local_index,
            m.sender(),
            &self.cfg.credential,
            &mac1_key,
            cookie.as_ref(),
        );
        let (transport, bytes) = match built {
            Ok(x) => x,
            Err(e) => {
                self.indices.remove(&local_index);
                return Err(e);
            }
        };
        let response_mac1: [u8; 16] = bytes
            .get(bytes.len().saturating_sub(32)..bytes.len().saturating_sub(16))
            .and_then(|m| m.try_into().ok())
            .unwrap_or([0; 16]);
        let mut session = Session::new(transport, local_index, m.sender(), false, now);
        session.response_mac1 = response_mac1;
        let mut stale = None;
        let mut roamed = false;
        if let Some(p) = self.peers.get_mut(id.0 as usize) {
            stale = p.next.replace(session).map(|s| s.local_index);
            roamed = p.endpoint.is_some_and(|e| e != from);
            p.endpoint = Some(from);
        }
        if roamed {
            self.events.push_back(Event::EndpointChanged {
                peer: id,
                endpoint: from,
            });
        }
        if let Some(i) = stale {
            self.indices.remove(&i);
        }
        self.set_identity(id, ident, rx.credential, now);
        self.arm(id, Timer::ZeroKeys, now + ZERO_KEYS_AFTER);
        self.transmits.push_back(Pending::Raw { dst: from, bytes });
        Ok(())
    }

    fn handle_response(
        &mut self,
        from: SocketAddr,
        m: &wire::Response<'_>,
        now: Instant,
    ) -> Result<(), DropReason> {
        let mac1 = self.check_mac1(m.mac1_parts())?;
        self.check_cipher(m.cipher_id())?;
        let id = *self
            .indices
            .get(&m.receiver())
            .ok_or(DropReason::UnexpectedHandshake)?;
        // Responses cost two DH operations too: the same admission as initiations (as WireGuard).
        self.admit_handshake(from, m.sender(), mac1, m.mac2_parts(), now)?;
        let unix = self.unix_time(now).as_secs();
        let verifier = Arc::clone(&self.cfg.verifier);
        let p = self
            .peers
            .get_mut(id.0 as usize)
            .ok_or(DropReason::UnexpectedHandshake)?;
        let pending = p
            .pending
            .as_mut()
            .filter(|x| x.local_index == m.receiver())
            .ok_or(DropReason::UnexpectedHandshake)?;
        let credential = handshake::read_response(pending, m)?;
        let ident = verifier
            .verify(&credential, &p.static_public, unix)
            .map_err(|_| DropReason::BadCredential)?;
        let Some(pending) = p.pending.take() else {
            return Err(DropReason::UnexpectedHandshake);
        };
        let local_index = pending.local_index;
        let transport = handshake::into_transport(pending)?;
        let session = Session::new(transport, local_index, m.sender(), true, now);
        // WireGuard's rotation: an unconfirmed responder session becomes `previous` (it may still
        // receive), otherwise the old current does.
        let stale = if p.next.is_some() {
            let old_current = p.current.take().map(|s| s.local_index);
            let old_previous = std::mem::replace(&mut p.previous, p.next.take());
            [old_current, old_previous.map(|s| s.local_index)]
        } else {
            let old_previous = std::mem::replace(&mut p.previous, p.current.take());
            [old_previous.map(|s| s.local_index), None]
        };
        p.current = Some(session);
        let roamed = p.endpoint != Some(from);
        p.endpoint = Some(from);
        let queue_empty = p.queue.is_empty();
        if roamed {
            self.events.push_back(Event::EndpointChanged {
                peer: id,
                endpoint: from,
            });
        }
        for i in stale.into_iter().flatten() {
            self.indices.remove(&i);
        }
        self.set_identity(id, ident, credential, now);
        self.handshake_complete(id, now);
        if queue_empty {
            // Confirm the session to the responder right away.
            self.transmits.push_back(Pending::Keepalive { peer: id });
        }
        Ok(())
    }

    fn handle_cookie_reply(
        &mut self,
        m: &wire::CookieReply<'_>,
        now: Instant,
    ) -> Result<(), DropReason> {
        let id = *self
            .indices
            .get(&m.receiver())
            .ok_or(DropReason::UnexpectedHandshake)?;
        let p = self
            .peers
            .get_mut(id.0 as usize)
            .ok_or(DropReason::UnexpectedHandshake)?;
        let Some(pending) = p.pending.as_ref().filter(|x| x.local_index == m.receiver()) else {
            // A cookie reply to a response we sent (the initiator is under load): keep the cookie so
            // our response to its retried initiation carries mac2.
            let mac1 = p
                .next
                .as_ref()
                .filter(|s| s.local_index == m.receiver())
                .map(|s| s.response_mac1)
                .ok_or(DropReason::UnexpectedHandshake)?;
            let cookie = crypto::open_cookie(&p.cookie_key, m.nonce(), m.encrypted_cookie(), &mac1)
                .ok_or(DropReason::BadCookie)?;
            p.cookie = Some((cookie, now));
            return Ok(());
        };
        let cookie = crypto::open_cookie(
            &p.cookie_key,
            m.nonce(),
            m.encrypted_cookie(),
            &pending.mac1,
        )
        .ok_or(DropReason::BadCookie)?;
        p.cookie = Some((cookie, now));
        // Retry at once with mac2; the cookie proves we own our address.
        self.initiate(id, now, true);
        Ok(())
    }

    /// Remove a peer's sessions and routes (the slot stays reserved).
    pub fn remove_peer(&mut self, id: PeerId) {
        self.teardown(id, DownReason::Removed);
        self.router.remove_value(&id);
        if let Some(p) = self.peers.get_mut(id.0 as usize) {
            p.config_allowed.clear();
            p.identity = None;
            p.endpoint = None;
            p.persistent_keepalive = None;
        }
    }

    /// Per-packet overhead added by [`Node::encapsulate`].
    pub const OVERHEAD: usize = DATA_OVERHEAD;

    #[cfg(any(test, feature = "test-util"))]
    /// Test hook: set the send counter of the peer's current session.
    pub fn set_send_counter_for_test(&mut self, id: PeerId, counter: u64) {
        if let Some(s) = self
            .peers
            .get_mut(id.0 as usize)
            .and_then(|p| p.current.as_deref_mut())
        {
            s.set_send_counter(counter);
        }
    }
}
