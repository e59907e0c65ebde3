//! The node: one member of one private network, as a pure state machine.
//!
//! `Node` is the endpoint half of quinn-proto's `Endpoint`/`Connection` split. It owns what is
//! shared — the peer table and the index map (`peers.rs`), the router, the handshake limiter and
//! load detector, the cookie secret, the RNG, the wake-up queue, the outbox of datagrams and events,
//! the counters — and dispatches each input to the one `Peer` state machine (`peer.rs`) it
//! concerns, lending it a `Ctx` for that call. Work that must happen before a peer is even known
//! (mac1, cipher check, load and cookies, per-source limits, the Diffie-Hellman of an initiation,
//! credential verification) happens here.
//!
//! See the crate docs for the event-loop contract. In short: feed inner packets to
//! [`Node::encapsulate`], UDP datagrams to [`Node::decapsulate`], and time to
//! [`Node::handle_timeout`]; after each, drain [`Node::poll_transmit`] and [`Node::poll_event`], and
//! sleep until [`Node::poll_timeout`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use snow::params::NoiseParams;

use crate::admission::{Admission, AdmitCtx, Lane};
use crate::config::{NodeConfig, PeerConfig, Settings, MAX_TIMESTAMP_SKEW};
use crate::credential::{CredentialVerifier, PeerIdentity};
use crate::crypto::{self, PublicKey};
use crate::error::{DecapsulateError, DropReason, EncapsulateError, NodeError, Stats};
use crate::handshake::{self, LocalKeys, PskIndex};
use crate::peer::{Changed, Ctx, Peer};
use crate::peers::{IndexMap, PeerTable};
use crate::policy::Direction;
use crate::router::Router;
use crate::session::{Later, OpenJob, Opened};
use crate::tai64n::Tai64N;
use crate::timers::{WakeQueue, WallClock};
use crate::wire::{self, Message, DATA_OVERHEAD};

pub use crate::event::{
    Decapsulated, DownReason, Encapsulated, Event, HandshakePhase, Outbound, PeerCounters,
    PeerStatus, SessionInfo, Transmit, UNANSWERED_AFTER,
};
pub use crate::peers::PeerId;

use crate::event::{Outbox, Pending};

mod control;
mod gateways;
mod policy;
#[cfg(any(test, feature = "test-util"))]
mod test_hooks;
#[cfg(test)]
mod tests;

pub use crate::event::GatewayChange;
pub use gateways::{
    GatewayCandidate, GatewayCounters, GatewayHealth, GatewayRoute, GATEWAY_DOWN_AFTER,
    GATEWAY_FAILBACK_AFTER, GATEWAY_IDLE_PROBE_AFTER, GATEWAY_PROBE_AFTER, GATEWAY_PROBE_INTERVAL,
    GATEWAY_TICK,
};
pub use policy::{DENIED_EVENTS_PER_SEC, REJECT_REPLIES_PER_SEC};

/// One member of one network.
pub struct Node {
    keys: LocalKeys,
    settings: Settings,
    rng: ChaCha20Rng,
    wall: WallClock,
    peers: PeerTable<Peer>,
    indices: IndexMap,
    router: Router<PeerId>,
    admission: Admission,
    wake: WakeQueue,
    out: Outbox,
    /// The latest `now` seen (for queries that take no time argument).
    last_now: Instant,
    /// Reused by `handle_timeout` for the hints due in one pass.
    due: Vec<(Instant, PeerId)>,
    /// The newest initiation timestamp sent.
    last_stamp: Tai64N,
    /// Underlay endpoint → the peer there (the priority lane of handshake admission).
    known_endpoints: HashMap<SocketAddr, PeerId>,
    /// The access policy and its connection tracker (`node/policy.rs`).
    enforcer: policy::Enforcer,
    /// The routing entries that apply to us and the health of their gateways (`node/gateways.rs`).
    gateways: gateways::Gateways,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("public_key", &self.keys.static_public)
            .field("peers", &self.peers.len())
            .field("stats", &self.out.stats)
            .finish_non_exhaustive()
    }
}

impl Node {
    /// Create a node. `unix_now` is the wall-clock time corresponding to `now`; it is used for
    /// handshake timestamps and credential validity (see [`Node::set_wall_clock`]).
    ///
    /// # Errors
    /// [`NodeError::CredentialTooLarge`] if our credential cannot fit in a handshake,
    /// [`NodeError::LowOrderKey`] if our static key is a low-order point,
    /// [`NodeError::UnsupportedCipher`] if the Noise library lacks the configured suite,
    /// [`NodeError::MissingSeed`] if `rng_seed` was not set,
    /// [`NodeError::OwnCredential`] if `local_addresses` is not set and our own credential does
    /// not verify.
    pub fn new(cfg: NodeConfig, now: Instant, unix_now: Duration) -> Result<Self, NodeError> {
        if cfg.credential.len() > wire::MAX_CREDENTIAL_LEN {
            return Err(NodeError::CredentialTooLarge {
                len: cfg.credential.len(),
                max: wire::MAX_CREDENTIAL_LEN,
            });
        }
        let params: NoiseParams = cfg
            .cipher
            .noise_params()
            .parse()
            .map_err(|_| NodeError::UnsupportedCipher(cfg.cipher))?;
        if crypto::is_low_order(&cfg.static_secret.public_key()) {
            return Err(NodeError::LowOrderKey);
        }
        if cfg.rng_seed == [0; 32] {
            return Err(NodeError::MissingSeed);
        }
        let configured_local = cfg.local_addresses.is_some();
        let parts = cfg.into_parts();
        let mut settings = parts.settings;
        // Our own identity: the addresses we serve (unless configured) and what a policy's
        // `self` and our name and groups match.
        let own = settings.verifier.verify(
            &settings.credential,
            &parts.static_secret.public_key(),
            unix_now.as_secs(),
        );
        let local_member = match own {
            Ok(own) => {
                if !configured_local {
                    settings.local_addresses = own.addresses.clone();
                }
                crate::policy::MemberRef::from(&own)
            }
            Err(e) if !configured_local => return Err(NodeError::OwnCredential(e)),
            Err(_) => crate::policy::MemberRef::default(),
        };
        let keys = LocalKeys::new(
            params,
            settings.cipher.wire_id(),
            parts.static_secret,
            parts.network_psk,
            &parts.accepted_psks,
            &parts.network_id,
        );
        let mut rng = ChaCha20Rng::from_seed(parts.rng_seed);
        let admission = Admission::new(&settings, &mut rng, now);
        let mut filter_seed = [0u8; 32];
        rand_core::RngCore::fill_bytes(&mut rng, &mut filter_seed);
        let gateways = gateways::Gateways::new(local_member.clone());
        let enforcer = policy::Enforcer::new(
            parts.conntrack,
            local_member,
            &settings.local_addresses,
            filter_seed,
            now,
        );
        let mut node = Self {
            admission,
            keys,
            settings,
            rng,
            wall: WallClock::new(now, unix_now),
            peers: PeerTable::default(),
            indices: IndexMap::default(),
            router: Router::new(),
            wake: WakeQueue::default(),
            out: Outbox::default(),
            last_now: now,
            due: Vec::new(),
            last_stamp: Tai64N::default(),
            known_endpoints: HashMap::new(),
            enforcer,
            gateways,
        };
        if parts.policy.is_some() {
            node.set_policy(parts.policy, now);
        }
        Ok(node)
    }

    /// The network's cipher suite (`NodeConfig::cipher`).
    pub fn cipher(&self) -> crypto::CipherSuite {
        self.settings.cipher
    }

    /// The largest inner packet [`Node::encapsulate`] accepts (`NodeConfig::mtu`).
    pub fn mtu(&self) -> usize {
        self.settings.mtu
    }

    /// Our Noise static public key.
    pub fn public_key(&self) -> PublicKey {
        self.keys.static_public
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.out.stats
    }

    /// Wall-clock time at `now`.
    pub fn unix_time(&self, now: Instant) -> Duration {
        self.wall.unix(now)
    }

    /// Re-anchor wall-clock time: `unix_now` is the Unix time at `now`. The driver calls this
    /// whenever it reads the clocks (at least on every timer pass), so that a suspend, a VM pause
    /// or an NTP step moves the core's idea of Unix time with the real one — handshake
    /// timestamps, certificate validity and expiry teardowns all use it.
    ///
    /// When the new anchor differs from the old one's projection by more than a second (a step,
    /// either way), every peer's credential expiry is re-armed against the new clock: one that is
    /// now past is torn down on the next [`Node::handle_timeout`]. A step backwards never makes
    /// our handshake timestamps go backwards (they continue from the newest one sent), so peers
    /// that saw them keep accepting ours; certificate checks use the earlier time.
    pub fn set_wall_clock(&mut self, now: Instant, unix_now: Duration) {
        let projected = self.wall.unix(now);
        let step = projected.abs_diff(unix_now);
        self.wall = WallClock::new(now, unix_now);
        if step > Duration::from_secs(1) {
            tracing::info!(
                step_secs = step.as_secs(),
                forward = unix_now > projected,
                "wall clock stepped; re-arming certificate expiry"
            );
            let ids: Vec<PeerId> = self.peers.iter().map(|(id, _)| id).collect();
            for id in ids {
                self.with_peer(id, |p, ctx| p.rearm_credential_expiry(now, ctx));
            }
        }
    }

    /// Run `f` on peer `id` with a context borrowed from the node, then queue the wake-up hint its
    /// timer table asks for. Every call into a peer's state machine goes through here.
    #[inline]
    fn with_peer<R>(
        &mut self,
        id: PeerId,
        f: impl FnOnce(&mut Peer, &mut Ctx<'_>) -> R,
    ) -> Option<R> {
        self.drive_peer(id, true, f)
    }

    /// [`Node::with_peer`] for calls that never move the peer's endpoint (sealing: the hot
    /// outbound path skips the endpoint bookkeeping).
    #[inline]
    fn with_peer_sending<R>(
        &mut self,
        id: PeerId,
        f: impl FnOnce(&mut Peer, &mut Ctx<'_>) -> R,
    ) -> Option<R> {
        #[cfg(debug_assertions)]
        let before = self.peers.get(id).and_then(Peer::endpoint);
        let r = self.drive_peer(id, false, f);
        #[cfg(debug_assertions)]
        debug_assert_eq!(self.peers.get(id).and_then(Peer::endpoint), before);
        r
    }

    #[inline(always)]
    fn drive_peer<R>(
        &mut self,
        id: PeerId,
        track_endpoint: bool,
        f: impl FnOnce(&mut Peer, &mut Ctx<'_>) -> R,
    ) -> Option<R> {
        let Self {
            keys,
            settings,
            rng,
            wall,
            peers,
            indices,
            out,
            wake,
            last_stamp,
            router,
            known_endpoints,
            ..
        } = self;
        let peer = peers.get_mut(id)?;
        let endpoint = if track_endpoint {
            peer.endpoint()
        } else {
            None
        };
        let mut ctx = Ctx {
            id,
            keys,
            settings,
            rng,
            indices,
            out,
            wall: *wall,
            last_stamp,
            router,
        };
        let r = f(peer, &mut ctx);
        if let Some(at) = peer.timers.hint_needed() {
            wake.push(at, id);
        }
        if !track_endpoint {
            return Some(r);
        }
        let moved = peer.endpoint();
        if moved != endpoint {
            if let Some(old) = endpoint {
                if known_endpoints.get(&old) == Some(&id) {
                    known_endpoints.remove(&old);
                }
            }
            if let Some(new) = moved {
                known_endpoints.insert(new, id);
            }
        }
        Some(r)
    }

    /// Act on what a peer call changed.
    fn apply(&mut self, id: PeerId, changed: Changed) {
        if changed.routes {
            self.rebuild_routes(id);
            self.register_policy_peer(id, self.last_now);
            self.refresh_gateways(self.last_now);
        }
    }

    // -----------------------------------------------------------------------------------------
    // peers

    /// Add a configured peer. With `eager_handshakes` and a known endpoint, a handshake starts now.
    ///
    /// # Errors
    /// [`NodeError::LowOrderKey`], [`NodeError::OwnKey`], [`NodeError::DuplicatePeer`],
    /// [`NodeError::TooManyPeers`], [`NodeError::EndpointInOverlay`] for an endpoint inside the
    /// overlay (see [`NodeConfig::overlay_prefixes`]), or [`NodeError::KeepaliveTooShort`] for a persistent
    /// keepalive below one second (`Duration::ZERO` turns it off).
    pub fn add_peer(&mut self, pc: PeerConfig, now: Instant) -> Result<PeerId, NodeError> {
        if crypto::is_low_order(&pc.static_public) {
            return Err(NodeError::LowOrderKey);
        }
        if pc.static_public == self.keys.static_public {
            return Err(NodeError::OwnKey);
        }
        if self.peers.by_key(&pc.static_public).is_some() {
            return Err(NodeError::DuplicatePeer);
        }
        if let Some(ep) = pc.endpoint {
            if self.in_overlay(ep.ip()) {
                return Err(NodeError::EndpointInOverlay(ep));
            }
        }
        let keepalive = match pc.persistent_keepalive {
            Some(d) if d.is_zero() => None,
            Some(d) if d < Duration::from_secs(1) => return Err(NodeError::KeepaliveTooShort(d)),
            other => other,
        };
        let id = self.new_peer(pc.static_public)?;
        let eager = self.settings.eager_handshakes && pc.endpoint.is_some();
        for net in &pc.allowed_ips {
            self.router.insert(*net, id, false);
        }
        self.refresh_gateways(now);
        self.with_peer(id, |p, ctx| {
            p.configure(pc.endpoint, pc.allowed_ips, keepalive, now);
            if eager {
                p.initiate(now, false, ctx);
            }
        });
        Ok(id)
    }

    fn new_peer(&mut self, static_public: PublicKey) -> Result<PeerId, NodeError> {
        if self.peers.len() >= self.settings.max_peers {
            return Err(NodeError::TooManyPeers);
        }
        let peer = Peer::new(static_public, &self.keys, self.last_now);
        let id = self
            .peers
            .insert(static_public, peer)
            .ok_or(NodeError::DuplicatePeer)?;
        self.keys.static_dh.register(static_public);
        Ok(id)
    }

    /// Remove a peer: its sessions end (a [`Event::PeerDown`] with [`DownReason::Removed`] if it
    /// had any), its routes and indices go, and its key is forgotten, so it can be added again and,
    /// with `accept_unknown_peers = false`, can no longer handshake. Returns whether `id` named a
    /// peer.
    pub fn remove_peer(&mut self, id: PeerId) -> bool {
        let now = self.last_now;
        if self
            .with_peer(id, |p, ctx| p.teardown(DownReason::Removed, now, ctx))
            .is_none()
        {
            return false;
        }
        self.router.remove_value(&id);
        self.known_endpoints.retain(|_, p| *p != id);
        self.forget_policy_peer(id);
        self.refresh_gateways(now);
        let key = self.peers.get(id).map(|p| *p.static_public());
        if let Some(key) = key {
            self.peers.remove(id, &key);
            self.keys.static_dh.forget(&key);
        }
        true
    }

    /// The peer holding `static_public`.
    pub fn peer_by_key(&self, static_public: &PublicKey) -> Option<PeerId> {
        self.peers.by_key(static_public)
    }

    /// Number of peers (configured and learned).
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// Status of every peer.
    pub fn peer_status(&self) -> Vec<PeerStatus> {
        self.peers
            .iter()
            .map(|(id, p)| p.status(id, self.last_now))
            .collect()
    }

    /// The static key of peer `id` and its verified name, if a handshake happened: O(1), no
    /// allocation (for logging events).
    pub fn peer_label(&self, id: PeerId) -> Option<(PublicKey, Option<&str>)> {
        self.peers
            .get(id)
            .map(|p| (*p.static_public(), p.verified_name()))
    }

    /// The verified identity of peer `id` (its credential's name, addresses, groups and
    /// fingerprint), once a handshake verified it: O(1), no allocation (the userspace stack asks
    /// for the sender of every connection request).
    pub fn peer_identity(&self, id: PeerId) -> Option<&PeerIdentity> {
        self.peers.get(id).and_then(Peer::identity)
    }

    /// Status of one peer.
    pub fn peer(&self, id: PeerId) -> Option<PeerStatus> {
        self.peers.get(id).map(|p| p.status(id, self.last_now))
    }

    /// The peers with a session that can carry data and a known underlay endpoint, with that
    /// endpoint (the driver gives each its own receive socket; `io/lanes.rs`). O(peers).
    pub fn established_endpoints(&self) -> impl Iterator<Item = (PeerId, SocketAddr)> + '_ {
        self.peers.iter().filter_map(|(id, p)| {
            p.is_established(self.last_now)
                .then(|| p.endpoint())
                .flatten()
                .map(|ep| (id, ep))
        })
    }

    /// Whether the peer has a session that can carry data (not past its reject-after time).
    pub fn is_established(&self, peer: PeerId) -> bool {
        self.peers
            .get(peer)
            .is_some_and(|p| p.is_established(self.last_now))
    }

    /// The peer's current session: two nodes share one session when each one's local index is the
    /// other's remote index.
    pub fn current_session(&self, peer: PeerId) -> Option<SessionInfo> {
        self.peers.get(peer).and_then(Peer::current_session)
    }

    /// Whether the node currently demands cookies.
    pub fn is_under_load(&self, now: Instant) -> bool {
        self.admission.is_under_load(now)
    }

    /// Entries in the handshake limiter table.
    pub fn limiter_sources(&self) -> usize {
        self.admission.limiter_sources()
    }

    /// Whether an underlay address lies inside the overlay: the network's prefixes, our own
    /// addresses and routes, or any prefix routed to a peer. Such an endpoint would route the
    /// tunnel through itself (nebula#741): datagrams from it are refused and never move an
    /// endpoint.
    fn in_overlay(&self, ip: std::net::IpAddr) -> bool {
        crate::router::overlay_contains(
            &self.router,
            [
                &self.settings.overlay_prefixes,
                &self.settings.local_addresses,
            ],
            ip,
        )
    }

    /// Route to `id` the same prefixes the anti-spoofing check accepts from it: the verified
    /// credential's once known (granted claims), the configured ones before. Claims it keeps keep
    /// their place among the owners of a shared prefix (see `router.rs`).
    fn rebuild_routes(&mut self, id: PeerId) {
        match self.peers.get(id) {
            Some(p) => self
                .router
                .set_routes(&id, p.allowed_sources(), p.has_identity()),
            None => self.router.remove_value(&id),
        }
    }

    /// Every routed prefix with its owners, the active one first.
    pub fn routes(&self) -> Vec<(ipnetwork::IpNetwork, Vec<PeerId>)> {
        self.router.routes()
    }

    // -----------------------------------------------------------------------------------------
    // credentials

    /// Replace the credential verifier (new CA set, new revocation list) and re-verify every peer's
    /// credential at once: peers that no longer verify are torn down now, not at the next rekey.
    pub fn set_verifier(&mut self, verifier: Arc<dyn CredentialVerifier>, now: Instant) {
        self.settings.verifier = verifier;
        self.revalidate(now);
    }

    /// Re-verify every peer's credential with the current verifier.
    pub fn revalidate(&mut self, now: Instant) {
        let unix = self.wall.unix(now).as_secs();
        let refused: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, p)| {
                p.credential().is_some_and(|c| {
                    self.settings
                        .verifier
                        .verify(c, p.static_public(), unix)
                        .is_err()
                })
            })
            .map(|(id, _)| id)
            .collect();
        for id in refused {
            tracing::info!(peer = %id, "peer credential no longer valid; tearing down");
            if let Some(c) = self.with_peer(id, |p, ctx| {
                p.revoke(DownReason::CredentialRevoked, now, ctx)
            }) {
                self.apply(id, c);
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // timers

    /// When `handle_timeout` must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.wake.peek(),
            self.admission.poll_timeout(),
            self.enforcer.poll_timeout(),
            self.gateways.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Advance time: fire due timers. Timers that fall due again during this call (armed at or
    /// before `now`) fire on the next call, so one call always ends.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.last_now = self.last_now.max(now);
        self.admission.handle_timeout(now);
        self.enforcer.handle_timeout(now);
        let mut due = std::mem::take(&mut self.due);
        while let Some(hint) = self.wake.pop_due(now) {
            due.push(hint);
        }
        for (at, id) in due.drain(..) {
            let changed = self.with_peer(id, |p, ctx| {
                p.timers.hint_fired(at);
                p.on_timers(now, ctx)
            });
            if let Some(c) = changed {
                self.apply(id, c);
            }
        }
        self.due = due;
        self.gateways_timeout(now);
    }

    // -----------------------------------------------------------------------------------------
    // outbound

    /// Seal an inner IP packet for the peer that owns its destination.
    ///
    /// `out` must hold `packet.len() + 32` bytes. Allocates nothing when a session exists.
    ///
    /// # Errors
    /// An [`EncapsulateError`], already counted in [`Node::stats`] under its
    /// [`reason`](EncapsulateError::reason).
    pub fn encapsulate(
        &mut self,
        packet: &[u8],
        out: &mut [u8],
        now: Instant,
    ) -> Result<Encapsulated, EncapsulateError> {
        let o = self.prepare(packet, now)?;
        self.seal_prepared(o, packet, out, now)
    }

    /// The first half of [`Node::encapsulate`]: route `packet` and judge it by the policy
    /// (its peer and its priority class), sealing nothing. A driver that runs a fairness stage
    /// between the two halves calls this, decides, then calls [`Node::seal_prepared`].
    ///
    /// # Errors
    /// [`EncapsulateError::TooBig`], [`EncapsulateError::Malformed`],
    /// [`EncapsulateError::NoRoute`], the policy's refusals; counted like
    /// [`Node::encapsulate`]'s.
    #[inline]
    pub fn prepare(&mut self, packet: &[u8], now: Instant) -> Result<Outbound, EncapsulateError> {
        let r = self.prepare_inner(packet, now);
        self.counted(r)
    }

    /// `r`, its error (if any) counted under its drop reason.
    #[inline]
    fn counted<T>(&mut self, r: Result<T, EncapsulateError>) -> Result<T, EncapsulateError> {
        if let Err(e) = &r {
            self.out.drop(e.reason());
        }
        r
    }

    #[inline]
    fn prepare_inner(&mut self, packet: &[u8], now: Instant) -> Result<Outbound, EncapsulateError> {
        if packet.len() > self.settings.mtu {
            return Err(EncapsulateError::TooBig);
        }
        let (_, dst) = crate::packet::addresses(packet).ok_or(EncapsulateError::Malformed)?;
        let peer = self.route_to(dst)?;
        let high = if self.enforcer.active() {
            self.enforce_outbound(peer, packet, now)?
        } else {
            false
        };
        Ok(Outbound { peer, high })
    }

    /// The second half of [`Node::encapsulate`]: the rate limits, MSS clamping and the seal of
    /// `packet`, which [`Node::prepare`] judged as `o` (and which has not changed since).
    ///
    /// # Errors
    /// As [`Node::encapsulate`].
    #[inline]
    pub fn seal_prepared(
        &mut self,
        o: Outbound,
        packet: &[u8],
        out: &mut [u8],
        now: Instant,
    ) -> Result<Encapsulated, EncapsulateError> {
        let r = self.seal_prepared_inner(o, packet, out, now, None);
        self.counted(r)
    }

    /// [`Node::seal_prepared`] with the encryption left to the caller: everything the seal
    /// decides (limits, clamping, the counter, the header in `out`, the timers) happens now, the
    /// plaintext is copied to `later.plain` and `later.job` receives the [`SealJob`] that
    /// encrypts it into `out[DATA_HEADER_LEN..]`, on any thread, before the datagram is sent.
    /// The driver's crypto workers use it; the datagram must not be sent before its job ran.
    #[inline]
    #[cfg_attr(not(feature = "driver"), allow(dead_code))] // used by the driver's crypto workers
    pub(crate) fn seal_prepared_later(
        &mut self,
        o: Outbound,
        packet: &[u8],
        out: &mut [u8],
        later: &mut Later<'_>,
        now: Instant,
    ) -> Result<Encapsulated, EncapsulateError> {
        let r = self.seal_prepared_inner(o, packet, out, now, Some(later));
        self.counted(r)
    }

    #[inline]
    fn seal_prepared_inner(
        &mut self,
        o: Outbound,
        packet: &[u8],
        out: &mut [u8],
        now: Instant,
        later: Option<&mut Later<'_>>,
    ) -> Result<Encapsulated, EncapsulateError> {
        if self.enforcer.limited()
            && !self.enforce_limits(o.peer, Direction::Outbound, packet.len(), now)
        {
            return Err(EncapsulateError::RateLimited);
        }
        if crate::packet::maybe_syn(packet) {
            if let Some(clamped) = self.clamp_syn(packet) {
                return self.seal_for(o.peer, &clamped, out, now, o.high, later);
            }
        }
        self.seal_for(o.peer, packet, out, now, o.high, later)
    }

    /// Seal `packet` for a specific peer (the routing decision was made by the caller).
    ///
    /// # Errors
    /// As [`Node::encapsulate`], and [`EncapsulateError::UnknownPeer`] for a removed peer.
    pub fn encapsulate_to(
        &mut self,
        id: PeerId,
        packet: &[u8],
        out: &mut [u8],
        now: Instant,
    ) -> Result<Encapsulated, EncapsulateError> {
        let r = if self.enforcer.active() {
            self.enforce_outbound(id, packet, now).and_then(|high| {
                if self.enforcer.limited()
                    && !self.enforce_limits(id, Direction::Outbound, packet.len(), now)
                {
                    return Err(EncapsulateError::RateLimited);
                }
                self.seal_for(id, packet, out, now, high, None)
            })
        } else {
            self.seal_for(id, packet, out, now, false, None)
        };
        self.counted(r)
    }

    #[inline]
    fn seal_for(
        &mut self,
        id: PeerId,
        packet: &[u8],
        out: &mut [u8],
        now: Instant,
        high: bool,
        later: Option<&mut Later<'_>>,
    ) -> Result<Encapsulated, EncapsulateError> {
        self.last_now = now;
        let r = self
            .with_peer_sending(id, |p, ctx| {
                p.seal_classed(packet, out, now, ctx, high, later)
            })
            .unwrap_or(Err(EncapsulateError::UnknownPeer));
        if high && matches!(r, Ok(Encapsulated::Send(_))) {
            self.out.stats.priority_sent += 1;
        }
        r
    }

    /// Start a new handshake with `peer` now (a forced rekey), even if a session exists.
    pub fn initiate_handshake(&mut self, peer: PeerId, now: Instant) {
        self.with_peer(peer, |p, ctx| p.initiate(now, true, ctx));
    }

    /// Next control datagram (handshake, cookie reply, keepalive) or queued data packet, written into
    /// `buf` (give it at least MTU + 32 bytes, or 1500 for handshakes). Returns `None` when empty.
    pub fn poll_transmit(&mut self, buf: &mut [u8], now: Instant) -> Option<Transmit> {
        while let Some(p) = self.out.transmits.pop_front() {
            match p {
                Pending::Raw { dst, bytes } => {
                    let Some(dst_buf) = buf.get_mut(..bytes.len()) else {
                        self.out.drop(DropReason::BufferTooSmall);
                        continue;
                    };
                    dst_buf.copy_from_slice(&bytes);
                    return Some(Transmit {
                        dst,
                        len: bytes.len(),
                    });
                }
                // Checked by the policy when it was queued (or an answer to a `reject`).
                Pending::Data { peer, packet } => {
                    match self.seal_for(peer, &packet, buf, now, false, None) {
                        Ok(Encapsulated::Send(t)) => return Some(t),
                        Ok(Encapsulated::Queued) => {}
                        Err(e) => self.out.drop(e.reason()),
                    }
                }
                Pending::Keepalive { peer } => {
                    if let Some(Some(t)) =
                        self.with_peer_sending(peer, |p, ctx| p.seal_keepalive(buf, now, ctx))
                    {
                        return Some(t);
                    }
                }
            }
        }
        None
    }

    /// Next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.out.events.pop_front()
    }

    // -----------------------------------------------------------------------------------------
    // inbound

    /// Process one datagram received from `from`. An inner packet is written into `out` (give it
    /// as many bytes as the datagram).
    ///
    /// # Errors
    /// A [`DecapsulateError`], already counted in [`Node::stats`] under its
    /// [`reason`](DecapsulateError::reason).
    pub fn decapsulate(
        &mut self,
        from: SocketAddr,
        datagram: &[u8],
        out: &mut [u8],
        now: Instant,
    ) -> Result<Decapsulated, DecapsulateError> {
        self.decapsulate_ahead(from, datagram, out, now, None)
    }

    /// An [`OpenJob`] for `datagram` if it is a data message that one of our sessions would
    /// decrypt now (its index known, the session not expired, the counter below the limit and
    /// not yet seen; `out_len` bytes are room enough). Nothing is committed: the datagram still
    /// goes through [`Node::decapsulate_ahead`], which refuses what it would have refused and
    /// uses the job's result instead of decrypting again. `None` says nothing about the
    /// datagram; [`Node::decapsulate`] judges it.
    #[inline]
    #[cfg_attr(not(feature = "driver"), allow(dead_code))] // used by the driver's crypto workers
    pub(crate) fn open_job(
        &self,
        datagram: &[u8],
        out_len: usize,
        now: Instant,
    ) -> Option<OpenJob> {
        let Ok(Message::Data(d)) = wire::parse(datagram) else {
            return None;
        };
        let id = self.indices.get(d.receiver())?;
        self.peers.get(id)?.open_job(&d, out_len, now)
    }

    /// [`Node::decapsulate`] of a datagram whose decryption may have been done ahead (`ahead`,
    /// from an [`OpenJob`] of [`Node::open_job`]; `out` then holds what it wrote). The result
    /// is used only if it came from the session the message names, with its keys of now, and
    /// for this message's nonce; otherwise the message is decrypted again. Everything else (the
    /// replay window's commit, roaming, the policy, the counters) happens here, in order.
    #[inline]
    pub(crate) fn decapsulate_ahead(
        &mut self,
        from: SocketAddr,
        datagram: &[u8],
        out: &mut [u8],
        now: Instant,
        ahead: Option<Opened>,
    ) -> Result<Decapsulated, DecapsulateError> {
        self.last_now = self.last_now.max(now);
        let r = match wire::parse(datagram) {
            Ok(Message::Data(d)) => self.handle_data(from, &d, out, now, ahead),
            Ok(Message::Initiation(m)) => self
                .handle_initiation(from, &m, now)
                .map(|()| Decapsulated::Control),
            Ok(Message::Response(m)) => self
                .handle_response(from, &m, now)
                .map(|()| Decapsulated::Control),
            Ok(Message::CookieReply(m)) => self
                .handle_cookie_reply(&m, now)
                .map(|()| Decapsulated::Control),
            Err(e) => Err(e),
        };
        r.map_err(|e| {
            self.out.drop(e);
            DecapsulateError::new(e)
        })
    }

    /// The peer that owns `dst` (the routing decision of [`Node::encapsulate`], without sealing):
    /// what a driver's fairness stage groups inner packets by before it spends an encryption on
    /// them.
    #[inline]
    pub fn peer_for_destination(&self, dst: std::net::IpAddr) -> Option<PeerId> {
        self.router.lookup(dst).copied()
    }

    /// The peer a data message is for, from its receiver index alone (nothing is authenticated
    /// or decrypted): what a driver's fairness stage groups received datagrams by before it spends
    /// a decryption on them. `None` for handshake messages, junk and unknown indices.
    #[inline]
    pub fn peer_of_datagram(&self, datagram: &[u8]) -> Option<PeerId> {
        if datagram.len() < wire::DATA_MIN_LEN || datagram.first() != Some(&wire::TYPE_DATA) {
            return None;
        }
        let index: [u8; 4] = datagram
            .get(wire::HEADER_LEN..wire::HEADER_LEN + 4)?
            .try_into()
            .ok()?;
        self.indices.get(u32::from_le_bytes(index))
    }

    #[inline]
    fn handle_data(
        &mut self,
        from: SocketAddr,
        d: &wire::Data<'_>,
        out: &mut [u8],
        now: Instant,
        ahead: Option<Opened>,
    ) -> Result<Decapsulated, DropReason> {
        let id = self
            .indices
            .get(d.receiver())
            .ok_or(DropReason::UnknownIndex)?;
        let n = self
            .with_peer(id, |p, ctx| p.on_data(from, d, out, now, ctx, ahead))
            .ok_or(DropReason::UnknownIndex)??;
        if n > 0 && self.enforcer.active() {
            let packet = out.get(..n).ok_or(DropReason::BufferTooSmall)?;
            let high = self.enforce_inbound(id, packet, now)?;
            if d.priority_hint() {
                // The sender's mark was a hint for our fairness gate; our own policy decides.
                if high {
                    self.out.stats.priority_received += 1;
                } else {
                    self.out.stats.priority_unconfirmed += 1;
                }
            }
            if self.enforcer.limited() && !self.enforce_limits(id, Direction::Inbound, n, now) {
                return Err(DropReason::MemberRateLimited);
            }
        } else if n > 0 && d.priority_hint() {
            self.out.stats.priority_unconfirmed += 1;
        }
        if let Some(packet) = out.get_mut(..n).filter(|p| crate::packet::maybe_syn(p)) {
            let max = crate::packet::IpPacket::new_checked(&*packet)
                .map(|p| crate::packet::mss_limit(p.version(), self.settings.mtu));
            if let Ok(max) = max {
                if crate::packet::clamp_mss(packet, max).is_some() {
                    self.out.stats.mss_clamped += 1;
                }
            }
        }
        Ok(if n == 0 {
            Decapsulated::Keepalive
        } else {
            Decapsulated::Packet { peer: id, len: n }
        })
    }
}
