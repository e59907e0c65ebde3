//! The per-peer state machine: one peer's sessions, handshake state, queue and timers.
//!
//! This is the "connection" half of quinn-proto's `Endpoint`/`Connection` split: a [`Peer`] owns
//! everything about one remote member and never looks at another peer or at the node's tables.
//! What it needs from the node — the local keys and settings, the RNG, the index map, the outbox of
//! datagrams and events — comes in a [`Ctx`] for the duration of one call; what it decides leaves
//! through the outbox (datagrams, events, counts) and through return values (a changed identity,
//! which makes the node rebuild the routes).
//!
//! States: our side of the handshake (`initiator.rs`) is idle or initiating (with the pending
//! Noise state, its retry data and its give-up clock); "established" is a property of the session
//! ring (a current session that can still send), since a rekey handshake runs while a session
//! carries data. [`Peer::phase`] folds both into idle / initiating / established.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ipnetwork::IpNetwork;
use rand_chacha::ChaCha20Rng;
use rand_core::RngCore;

use crate::config::{
    Settings, INITIATION_MIN_INTERVAL, KEEPALIVE_TIMEOUT, REJECT_AFTER_TIME, REKEY_AFTER_MESSAGES,
    REKEY_AFTER_TIME, REKEY_ATTEMPT_TIME, REKEY_TIMEOUT, REKEY_TIMEOUT_JITTER, ZERO_KEYS_AFTER,
};
use crate::cookie::ReceivedCookie;
use crate::credential::PeerIdentity;
use crate::crypto::{self, PublicKey};
use crate::error::{DropReason, EncapsulateError};
use crate::event::{
    DownReason, Encapsulated, Event, HandshakePhase, Outbox, PeerCounters, PeerStatus, Pending,
    SessionInfo, Transmit, UNANSWERED_AFTER,
};
use crate::handshake::{self, LocalKeys, ReceivedInitiation};
use crate::peers::{IndexMap, PeerId, Retired};
use crate::router::{contains_any, Router};
use crate::session::{Later, OpenJob, Opened, Session, Sessions, Slot};
use crate::tai64n::Tai64N;
use crate::timers::{Timer, TimerTable, WallClock};
use crate::wire;

mod initiator;
mod liveness;
#[cfg(test)]
mod tests;

use initiator::Initiator;
pub(crate) use liveness::Liveness;

/// What a peer's state machine borrows from the node for one call.
pub(crate) struct Ctx<'a> {
    /// The peer being driven.
    pub(crate) id: PeerId,
    pub(crate) keys: &'a LocalKeys,
    pub(crate) settings: &'a Settings,
    pub(crate) rng: &'a mut ChaCha20Rng,
    pub(crate) indices: &'a mut IndexMap,
    pub(crate) out: &'a mut Outbox,
    pub(crate) wall: WallClock,
    /// The newest TAI64N label this node sent (ours never go backwards, see [`Ctx::timestamp`]).
    pub(crate) last_stamp: &'a mut Tai64N,
    /// The node's routes (to refuse an endpoint inside the overlay).
    pub(crate) router: &'a Router<PeerId>,
}

impl Ctx<'_> {
    /// The label for an initiation sent at `now`: the wall clock's, but never earlier than one we
    /// sent before. After the clock steps back, a peer that saw our earlier labels would refuse
    /// anything older as a replay until our clock caught up again (up to `MAX_TIMESTAMP_SKEW`).
    fn timestamp(&mut self, now: Instant) -> Tai64N {
        let t = Tai64N::from_unix(self.wall.unix(now)).after(*self.last_stamp);
        *self.last_stamp = t;
        t
    }

    fn jitter(&mut self) -> Duration {
        let max = REKEY_TIMEOUT_JITTER.as_millis() as u32 + 1;
        Duration::from_millis(u64::from(self.rng.next_u32() % max))
    }
}

/// Replay protection of initiations from this peer (whitepaper §5.1).
#[derive(Default)]
struct InitiationGuard {
    /// Newest timestamp consumed: an initiation must carry a later one.
    last_timestamp: Option<Tai64N>,
    /// When the last initiation was consumed (at most one per `INITIATION_MIN_INTERVAL`).
    last_consumed: Option<Instant>,
}

/// A verified credential and what it says.
struct Verified {
    identity: PeerIdentity,
    credential: Vec<u8>,
}

/// What a call changed that the node must act on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[must_use]
pub(crate) struct Changed {
    /// The prefixes routed to this peer changed (its verified identity came, went or changed).
    pub(crate) routes: bool,
}

/// One remote member.
pub(crate) struct Peer {
    static_public: PublicKey,
    /// mac1 key for messages we send to this peer.
    mac1_key: [u8; 32],
    /// Key of cookie replies this peer sends us.
    cookie_key: [u8; 32],
    endpoint: Option<SocketAddr>,
    /// Prefixes from the configuration, used until a credential is verified.
    configured: Vec<IpNetwork>,
    persistent_keepalive: Option<Duration>,
    verified: Option<Verified>,
    sessions: Sessions,
    /// Our side of the handshake: the pending initiation and the priority lane.
    initiator: Initiator,
    guard: InitiationGuard,
    /// The latest cookie this peer sent us (for mac2 in what we send it).
    cookie: Option<ReceivedCookie>,
    queue: VecDeque<Vec<u8>>,
    pub(crate) timers: TimerTable,
    need_another_keepalive: bool,
    last_handshake: Option<Instant>,
    counters: PeerCounters,
    liveness: Liveness,
}

impl Peer {
    pub(crate) fn new(static_public: PublicKey, keys: &LocalKeys, now: Instant) -> Self {
        Self {
            static_public,
            mac1_key: keys.mac1_key_for(&static_public),
            cookie_key: keys.cookie_key_of(&static_public),
            endpoint: None,
            configured: Vec::new(),
            persistent_keepalive: None,
            verified: None,
            sessions: Sessions::default(),
            initiator: Initiator::new(now),
            guard: InitiationGuard::default(),
            cookie: None,
            queue: VecDeque::new(),
            timers: TimerTable::default(),
            need_another_keepalive: false,
            last_handshake: None,
            counters: PeerCounters::default(),
            liveness: Liveness::default(),
        }
    }

    /// The network PSKs changed: re-derive the keys of our messages to it and of its cookies.
    pub(crate) fn rekey_network(&mut self, keys: &LocalKeys) {
        self.mac1_key = keys.mac1_key_for(&self.static_public);
        self.cookie_key = keys.cookie_key_of(&self.static_public);
    }

    /// An initiation from this peer's own endpoint: may it take the priority lane?
    pub(crate) fn priority_initiation(&mut self, now: Instant) -> bool {
        self.initiator.priority_initiation(now)
    }

    /// A response naming `index`: is it to our pending initiation, within its allowance?
    pub(crate) fn priority_response(&mut self, index: u32, now: Instant) -> bool {
        self.initiator.priority_response(index, now)
    }

    /// Apply the static configuration of a configured peer.
    pub(crate) fn configure(
        &mut self,
        endpoint: Option<SocketAddr>,
        allowed: Vec<IpNetwork>,
        keepalive: Option<Duration>,
        now: Instant,
    ) {
        self.endpoint = endpoint;
        self.configured = allowed;
        self.persistent_keepalive = keepalive;
        if let Some(at) = keepalive.and_then(|every| now.checked_add(every)) {
            self.timers.arm(Timer::PersistentKeepalive, at);
        }
    }

    pub(crate) fn static_public(&self) -> &PublicKey {
        &self.static_public
    }

    #[inline]
    pub(crate) fn endpoint(&self) -> Option<SocketAddr> {
        self.endpoint
    }

    pub(crate) fn verified_name(&self) -> Option<&str> {
        self.verified.as_ref().map(|v| v.identity.name.as_str())
    }

    pub(crate) fn identity(&self) -> Option<&PeerIdentity> {
        self.verified.as_ref().map(|v| &v.identity)
    }

    pub(crate) fn has_identity(&self) -> bool {
        self.verified.is_some()
    }

    pub(crate) fn credential(&self) -> Option<&[u8]> {
        self.verified.as_ref().map(|v| v.credential.as_slice())
    }

    /// Inner source prefixes this peer may use (and that are routed to it): its verified
    /// credential's, or the configured ones before any credential is known.
    #[inline]
    pub(crate) fn allowed_sources(&self) -> &[IpNetwork] {
        match &self.verified {
            Some(v) => &v.identity.addresses,
            None => &self.configured,
        }
    }

    /// Local indices of every session and of the pending initiation.
    #[cfg(any(test, feature = "test-util"))]
    pub(crate) fn indices(&self) -> impl Iterator<Item = u32> + '_ {
        self.sessions
            .indices()
            .chain(self.initiator.pending_index())
    }

    /// When we last heard from the peer, and since when it owes us an answer.
    pub(crate) fn liveness(&self) -> Liveness {
        self.liveness
    }

    /// Whether the current session can carry data at `now`.
    pub(crate) fn is_established(&self, now: Instant) -> bool {
        self.sessions.current().is_some_and(|s| s.can_send(now))
    }

    pub(crate) fn current_session(&self) -> Option<SessionInfo> {
        self.sessions.current().map(|s| SessionInfo {
            local_index: s.local_index,
            remote_index: s.remote_index,
            is_initiator: s.is_initiator,
            send_counter: s.send_counter,
        })
    }

    /// Idle, initiating or established.
    pub(crate) fn phase(&self, now: Instant) -> HandshakePhase {
        if self.is_established(now) {
            return HandshakePhase::Established;
        }
        self.initiator.phase()
    }

    pub(crate) fn status(&self, id: PeerId, now: Instant) -> PeerStatus {
        PeerStatus {
            id,
            static_public: self.static_public,
            name: self.verified.as_ref().map(|v| v.identity.name.clone()),
            endpoint: self.endpoint,
            addresses: self.allowed_sources().to_vec(),
            last_handshake: self.last_handshake,
            established: self.sessions.current().is_some(),
            phase: self.phase(now),
            counters: self.counters,
        }
    }

    // -----------------------------------------------------------------------------------------
    // handshakes we start

    /// Start a handshake unless one was sent less than `REKEY_TIMEOUT` ago (`retry` forces a new
    /// attempt: the retransmit timer and a cookie reply use it).
    pub(crate) fn initiate(&mut self, now: Instant, retry: bool, ctx: &mut Ctx<'_>) {
        if !retry && self.initiator.sent_within(REKEY_TIMEOUT, now) {
            return;
        }
        let Some(endpoint) = self.endpoint else {
            ctx.out.drop(DropReason::NoEndpoint);
            return;
        };
        let cookie = ReceivedCookie::usable(self.cookie.as_ref(), now);
        let local_index = ctx.indices.allocate(ctx.rng, ctx.id);
        let mut seed = [0u8; 32];
        ctx.rng.fill_bytes(&mut seed);
        let built = handshake::build_initiation(
            ctx.keys,
            &self.static_public,
            &self.mac1_key,
            local_index,
            ctx.timestamp(now),
            &ctx.settings.credential,
            cookie.as_ref(),
            seed,
        );
        let (pending, bytes) = match built {
            Ok(x) => x,
            Err(e) => {
                ctx.indices.retire(Retired::one(Some(local_index)));
                ctx.out.drop(e);
                return;
            }
        };
        let jitter = ctx.jitter();
        ctx.indices.retire(self.initiator.sent(pending, now));
        if let HandshakePhase::Initiating { since, attempts } = self.initiator.phase() {
            // The third initiation of an attempt means two went unanswered for ~5 s each: tell
            // the operator while the attempt still runs (it gives up after 90 s).
            if attempts == UNANSWERED_AFTER + 1 {
                ctx.out.event(Event::HandshakeUnanswered {
                    peer: ctx.id,
                    endpoint,
                    attempts: attempts - 1,
                    since,
                });
            }
        }
        self.timers
            .arm(Timer::RetransmitHandshake, now + REKEY_TIMEOUT + jitter);
        ctx.out.stats.handshakes_initiated += 1;
        self.liveness.sent(now);
        ctx.out.send(endpoint, bytes);
    }

    /// Our retransmissions went unanswered for `REKEY_ATTEMPT_TIME`: drop what waited for them.
    fn give_up_handshake(&mut self, now: Instant, ctx: &mut Ctx<'_>) {
        let dropped = self.queue.len();
        self.queue.clear();
        self.queue.shrink_to_fit();
        ctx.indices.retire(self.initiator.abandon());
        for _ in 0..dropped {
            ctx.out.drop(DropReason::HandshakeTimeout);
        }
        self.timers.disarm(Timer::SendKeepalive);
        self.timers
            .arm_if_unset(Timer::ZeroKeys, now + ZERO_KEYS_AFTER);
        tracing::debug!(peer = %ctx.id, "handshake gave up after {:?}", REKEY_ATTEMPT_TIME);
    }

    // -----------------------------------------------------------------------------------------
    // handshakes we receive

    /// A consumed initiation from this peer (mac1, admission, Diffie-Hellman, credential and
    /// timestamp skew were checked by the node): answer it and install the responder session.
    pub(crate) fn on_initiation(
        &mut self,
        from: SocketAddr,
        rx: ReceivedInitiation,
        identity: PeerIdentity,
        sender: u32,
        now: Instant,
        ctx: &mut Ctx<'_>,
    ) -> Result<Changed, DropReason> {
        if self
            .guard
            .last_timestamp
            .is_some_and(|last| rx.timestamp <= last)
        {
            return Err(DropReason::ReplayedInitiation);
        }
        if self
            .guard
            .last_consumed
            .is_some_and(|t| now.saturating_duration_since(t) < INITIATION_MIN_INTERVAL)
        {
            return Err(DropReason::InitiationFlood);
        }
        self.guard.last_timestamp = Some(rx.timestamp);
        self.guard.last_consumed = Some(now);
        self.liveness.received(now);
        // Simultaneous initiation: the initiation of the lower static key wins. The higher key
        // abandons its own pending initiation and answers; the lower key answers too but keeps its
        // own, whose response will become the session both sides use.
        if ctx.keys.static_public > rx.remote_static && self.initiator.is_initiating() {
            ctx.indices.retire(self.initiator.abandon());
            self.timers.disarm(Timer::RetransmitHandshake);
        }
        let cookie = ReceivedCookie::usable(self.cookie.as_ref(), now);
        let local_index = ctx.indices.allocate(ctx.rng, ctx.id);
        // The response is under the PSK of the initiation (during a rotation it may be one we
        // only accept).
        let mac1_key = match rx.psk {
            0 => self.mac1_key,
            i => ctx.keys.network_key(i).mac1_key_for(&self.static_public),
        };
        let built = handshake::build_response(
            rx.state,
            ctx.keys.cipher_id,
            local_index,
            sender,
            &ctx.settings.credential,
            &mac1_key,
            cookie.as_ref(),
        );
        let (transport, bytes) = match built {
            Ok(x) => x,
            Err(e) => {
                ctx.indices.retire(Retired::one(Some(local_index)));
                return Err(e);
            }
        };
        // mac1 of our response: the associated data of a cookie reply the initiator may send us.
        let response_mac1: [u8; 16] = bytes
            .get(bytes.len().saturating_sub(32)..bytes.len().saturating_sub(16))
            .and_then(|m| m.try_into().ok())
            .unwrap_or([0; 16]);
        let mut session = Session::new(transport, local_index, sender, false, now);
        session.response_mac1 = response_mac1;
        ctx.indices.retire(self.sessions.install_next(session));
        self.set_endpoint(from, ctx);
        let changed = self.set_identity(identity, rx.credential, now, ctx);
        self.timers.arm(Timer::ZeroKeys, now + ZERO_KEYS_AFTER);
        ctx.out.send(from, bytes);
        Ok(changed)
    }

    /// A response to our pending initiation (mac1 and admission were checked by the node).
    pub(crate) fn on_response(
        &mut self,
        from: SocketAddr,
        m: &wire::Response<'_>,
        now: Instant,
        ctx: &mut Ctx<'_>,
    ) -> Result<Changed, DropReason> {
        let pending = self
            .initiator
            .pending_mut(m.receiver())
            .ok_or(DropReason::UnexpectedHandshake)?;
        let credential = handshake::read_response(pending, m)?;
        let unix = ctx.wall.unix(now).as_secs();
        let identity = ctx
            .settings
            .verifier
            .verify(&credential, &self.static_public, unix)
            .map_err(|_| DropReason::BadCredential)?;
        let Some(pending) = self.initiator.take(m.receiver()) else {
            return Err(DropReason::UnexpectedHandshake);
        };
        let local_index = pending.local_index;
        let transport = match handshake::into_transport(pending) {
            Ok(t) => t,
            Err(e) => {
                ctx.indices.retire(Retired::one(Some(local_index)));
                return Err(e);
            }
        };
        let session = Session::new(transport, local_index, m.sender(), true, now);
        ctx.indices.retire(self.sessions.install_initiated(session));
        self.liveness.received(now);
        let queue_empty = self.queue.is_empty();
        if self.endpoint != Some(from) {
            self.endpoint = Some(from);
            ctx.out.event(Event::EndpointChanged {
                peer: ctx.id,
                endpoint: from,
            });
        }
        let changed = self.set_identity(identity, credential, now, ctx);
        self.handshake_complete(now, ctx);
        if queue_empty {
            // Confirm the session to the responder right away.
            ctx.out.keepalive(ctx.id);
        }
        Ok(changed)
    }

    /// A cookie reply: to our pending initiation (retry at once with mac2), or to a response we
    /// sent (keep the cookie so our next response carries mac2).
    pub(crate) fn on_cookie_reply(
        &mut self,
        m: &wire::CookieReply<'_>,
        now: Instant,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), DropReason> {
        let ad = self.initiator.pending_mac1(m.receiver());
        let retry = ad.is_some();
        let ad = match ad {
            Some(mac1) => mac1,
            None => self
                .sessions
                .next()
                .filter(|s| s.local_index == m.receiver())
                .map(|s| s.response_mac1)
                .ok_or(DropReason::UnexpectedHandshake)?,
        };
        // Under our primary PSK, or (a cookie for a response we sent under an accepted one) under
        // another of our network keys.
        let cookie = crypto::open_cookie(&self.cookie_key, m.nonce(), m.encrypted_cookie(), &ad)
            .or_else(|| {
                ctx.keys.network.iter().skip(1).find_map(|k| {
                    let key = k.cookie_key_of(&self.static_public);
                    crypto::open_cookie(&key, m.nonce(), m.encrypted_cookie(), &ad)
                })
            })
            .ok_or(DropReason::BadCookie)?;
        self.cookie = Some(ReceivedCookie::new(cookie, now));
        if retry {
            // The cookie proves we own our address.
            self.initiate(now, true, ctx);
        }
        Ok(())
    }

    fn handshake_complete(&mut self, now: Instant, ctx: &mut Ctx<'_>) {
        self.timers.disarm(Timer::RetransmitHandshake);
        self.initiator.completed(now);
        self.last_handshake = Some(now);
        self.counters.handshakes += 1;
        ctx.out.stats.handshakes_completed += 1;
        self.timers.arm(Timer::ZeroKeys, now + ZERO_KEYS_AFTER);
        let name = self
            .verified
            .as_ref()
            .map(|v| v.identity.name.clone())
            .unwrap_or_default();
        ctx.out.event(Event::PeerUp { peer: ctx.id, name });
        // Flush packets queued while the handshake was in progress.
        for packet in self.queue.drain(..) {
            ctx.out.transmits.push_back(Pending::Data {
                peer: ctx.id,
                packet,
            });
        }
    }

    fn set_endpoint(&mut self, from: SocketAddr, ctx: &mut Ctx<'_>) {
        let roamed = self.endpoint.is_some_and(|e| e != from);
        self.endpoint = Some(from);
        if roamed {
            ctx.out.event(Event::EndpointChanged {
                peer: ctx.id,
                endpoint: from,
            });
        }
    }

    // -----------------------------------------------------------------------------------------
    // credentials

    /// Record a verified credential; arms its expiry.
    pub(crate) fn set_identity(
        &mut self,
        identity: PeerIdentity,
        credential: Vec<u8>,
        now: Instant,
        ctx: &mut Ctx<'_>,
    ) -> Changed {
        let routes = self.verified.as_ref().map(|v| &v.identity) != Some(&identity);
        match ctx.wall.instant_of(identity.not_after, now) {
            Some(at) => self.timers.arm(Timer::CredentialExpiry, at),
            None => self.timers.disarm(Timer::CredentialExpiry),
        }
        self.verified = Some(Verified {
            identity,
            credential,
        });
        Changed { routes }
    }

    /// The credential expired or was refused on revalidation: tear everything down and forget it.
    pub(crate) fn revoke(
        &mut self,
        reason: DownReason,
        now: Instant,
        ctx: &mut Ctx<'_>,
    ) -> Changed {
        ctx.out.stats.credential_teardowns += 1;
        self.teardown(reason, now, ctx);
        self.verified = None;
        self.guard.last_timestamp = None;
        Changed { routes: true }
    }

    /// The wall clock was re-anchored: the credential's expiry moves with it (checked at once when
    /// it is past).
    pub(crate) fn rearm_credential_expiry(&mut self, now: Instant, ctx: &mut Ctx<'_>) {
        if let Some(v) = &self.verified {
            match ctx.wall.instant_of(v.identity.not_after, now) {
                Some(at) => self.timers.arm(Timer::CredentialExpiry, at),
                None => self.timers.disarm(Timer::CredentialExpiry),
            }
        }
    }

    fn check_credential(&mut self, now: Instant, ctx: &mut Ctx<'_>) -> Changed {
        let Some(v) = &self.verified else {
            return Changed::default();
        };
        let unix = ctx.wall.unix(now).as_secs();
        if unix < v.identity.not_after {
            if let Some(at) = ctx.wall.instant_of(v.identity.not_after, now) {
                self.timers.arm(
                    Timer::CredentialExpiry,
                    at.max(now + Duration::from_millis(1)),
                );
            }
            return Changed::default();
        }
        tracing::info!(peer = %v.identity.name, "peer credential expired; tearing down");
        self.revoke(DownReason::CredentialExpired, now, ctx)
    }

    /// Drop every session, the pending handshake, the queue and the timers.
    pub(crate) fn teardown(&mut self, reason: DownReason, now: Instant, ctx: &mut Ctx<'_>) {
        let was_up = self.sessions.any();
        ctx.indices
            .retire(self.sessions.clear().and(self.initiator.abandon()));
        self.queue.clear();
        self.timers.clear();
        if was_up {
            ctx.out.event(Event::PeerDown {
                peer: ctx.id,
                reason,
            });
        }
        // A peer configured to be kept alive is tried again (after a revocation or expiry the
        // handshakes are refused by the peer's verifier, and give up after 90 s each round).
        if let (Some(every), false) = (self.persistent_keepalive, reason == DownReason::Removed) {
            if let Some(at) = now.checked_add(every) {
                self.timers.arm(Timer::PersistentKeepalive, at);
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // timers

    /// Fire every timer due at `now`, in a fixed order.
    pub(crate) fn on_timers(&mut self, now: Instant, ctx: &mut Ctx<'_>) -> Changed {
        let mut changed = Changed::default();
        if self.timers.take_due(Timer::CredentialExpiry, now) {
            changed = self.check_credential(now, ctx);
        }
        if self.timers.take_due(Timer::ZeroKeys, now) {
            self.teardown(DownReason::Idle, now, ctx);
        }
        if self.timers.take_due(Timer::RetransmitHandshake, now) {
            let gave_up = self.initiator.gave_up(now);
            if gave_up {
                self.give_up_handshake(now, ctx);
            } else {
                self.initiate(now, true, ctx);
            }
        }
        if self.timers.take_due(Timer::NewHandshake, now) {
            self.initiate(now, false, ctx);
        }
        if self.timers.take_due(Timer::SendKeepalive, now) {
            let again = std::mem::take(&mut self.need_another_keepalive)
                && self.sessions.current().is_some();
            ctx.out.keepalive(ctx.id);
            if again {
                self.timers
                    .arm(Timer::SendKeepalive, now + KEEPALIVE_TIMEOUT);
            }
        }
        if self.timers.take_due(Timer::PersistentKeepalive, now) {
            if let Some(every) = self.persistent_keepalive {
                if self.is_established(now) {
                    ctx.out.keepalive(ctx.id);
                } else {
                    self.initiate(now, false, ctx);
                }
                if let Some(at) = now.checked_add(every) {
                    self.timers.arm(Timer::PersistentKeepalive, at);
                }
            }
        }
        changed
    }

    // -----------------------------------------------------------------------------------------
    // data

    /// [`Peer::seal_classed`] of an ordinary packet (the tests' shorthand).
    #[cfg(test)]
    pub(crate) fn seal(
        &mut self,
        packet: &[u8],
        out: &mut [u8],
        now: Instant,
        ctx: &mut Ctx<'_>,
    ) -> Result<Encapsulated, EncapsulateError> {
        self.seal_classed(packet, out, now, ctx, false, None)
    }

    /// Seal an inner packet (or queue it and start a handshake when no session can send);
    /// `high`: mark the data message [`crate::wire::DATA_FLAG_PRIORITY`] (a packet queued for a
    /// handshake loses the mark). With `later`, the encryption is left to the [`SealJob`] put
    /// there (see [`Session::seal_later`]).
    #[inline]
    pub(crate) fn seal_classed(
        &mut self,
        packet: &[u8],
        out: &mut [u8],
        now: Instant,
        ctx: &mut Ctx<'_>,
        high: bool,
        later: Option<&mut Later<'_>>,
    ) -> Result<Encapsulated, EncapsulateError> {
        if !self.is_established(now) {
            if self.queue.len() >= ctx.settings.max_queued_per_peer {
                self.queue.pop_front();
                ctx.out.drop(DropReason::QueueFull);
            }
            self.queue.push_back(packet.to_vec());
            self.initiate(now, false, ctx);
            return Ok(Encapsulated::Queued);
        }
        let endpoint = self.endpoint.ok_or(EncapsulateError::NoEndpoint)?;
        let Some(s) = self.sessions.current_mut() else {
            return Err(EncapsulateError::NoRoute);
        };
        let n = match later {
            None => s.seal_flagged(packet, out, high)?,
            Some(l) => {
                let (n, job) = s.seal_later(packet, out, l.plain, high)?;
                l.job = Some(job);
                n
            }
        };
        let want_rekey = s.is_initiator
            && (s.send_counter >= REKEY_AFTER_MESSAGES
                || now.saturating_duration_since(s.created) >= REKEY_AFTER_TIME);
        self.counters.tx_packets += 1;
        self.counters.tx_bytes += packet.len() as u64;
        if !packet.is_empty() {
            self.liveness.sent(now);
        }
        ctx.out.stats.tx_packets += 1;
        ctx.out.stats.tx_bytes += packet.len() as u64;
        self.on_authenticated_sent(!packet.is_empty(), now, ctx);
        if want_rekey {
            self.initiate(now, false, ctx);
        }
        Ok(Encapsulated::Send(Transmit {
            dst: endpoint,
            len: n,
        }))
    }

    /// Seal a keepalive (polled from the outbox); a session that cannot send starts a handshake.
    pub(crate) fn seal_keepalive(
        &mut self,
        buf: &mut [u8],
        now: Instant,
        ctx: &mut Ctx<'_>,
    ) -> Option<Transmit> {
        let endpoint = self.endpoint?;
        let Some(s) = self.sessions.current_mut().filter(|s| s.can_send(now)) else {
            // The session expired: a keepalive is a reason to make a new one.
            self.initiate(now, false, ctx);
            return None;
        };
        let want_rekey =
            s.is_initiator && now.saturating_duration_since(s.created) >= REKEY_AFTER_TIME;
        match s.seal(&[], buf) {
            Ok(n) => {
                self.counters.tx_packets += 1;
                ctx.out.stats.keepalives_sent += 1;
                self.on_authenticated_sent(false, now, ctx);
                if want_rekey {
                    self.initiate(now, false, ctx);
                }
                Some(Transmit {
                    dst: endpoint,
                    len: n,
                })
            }
            Err(e) => {
                ctx.out.drop(e.reason());
                None
            }
        }
    }

    #[inline]
    fn on_authenticated_sent(&mut self, is_data: bool, now: Instant, ctx: &mut Ctx<'_>) {
        self.timers.disarm(Timer::SendKeepalive);
        if is_data && !self.timers.is_armed(Timer::NewHandshake) {
            let at = now + KEEPALIVE_TIMEOUT + REKEY_TIMEOUT + ctx.jitter();
            self.timers.arm(Timer::NewHandshake, at);
        }
    }

    /// Open a data message addressed to one of this peer's sessions; the inner packet is written
    /// to `out`. Returns its length (0 for a keepalive). `ahead`: the message decrypted ahead
    /// into `out` (see [`Session::open`]).
    #[inline]
    pub(crate) fn on_data(
        &mut self,
        from: SocketAddr,
        d: &wire::Data<'_>,
        out: &mut [u8],
        now: Instant,
        ctx: &mut Ctx<'_>,
        ahead: Option<Opened>,
    ) -> Result<usize, DropReason> {
        let (slot, s) = self
            .sessions
            .find_mut(d.receiver())
            .ok_or(DropReason::UnknownIndex)?;
        let (n, newest) = s.open(d, out, now, ahead)?;
        self.liveness.received(now);
        let initiator_age = (slot == Slot::Current && s.is_initiator)
            .then(|| now.saturating_duration_since(s.created));
        // Key confirmation: the first packet on the responder's new session promotes it.
        let confirmed = slot == Slot::Next;
        if confirmed {
            ctx.indices.retire(self.sessions.confirm_next());
        }
        // Roaming: only the newest authenticated packet moves the endpoint, and never into the
        // overlay (a packet that came back through our own TUN: a routing loop).
        let mut roamed = newest && self.endpoint != Some(from);
        let looped = roamed
            && crate::router::overlay_contains(
                ctx.router,
                [
                    &ctx.settings.overlay_prefixes,
                    &ctx.settings.local_addresses,
                ],
                from.ip(),
            );
        if looped {
            roamed = false;
        } else if roamed {
            self.endpoint = Some(from);
        }
        self.counters.rx_packets += 1;
        // Anti-spoofing: the inner source must belong to the sending member; and the destination
        // must be ours (one of our addresses or a route we serve), whatever the peer chose.
        let delivered = if looped {
            Err(DropReason::EndpointInOverlay)
        } else if n == 0 {
            Ok(0)
        } else {
            match out.get(..n).and_then(crate::packet::addresses) {
                Some((src, dst))
                    if crate::router::source_allowed(
                        self.allowed_sources(),
                        &ctx.settings.overlay_prefixes,
                        src,
                    ) =>
                {
                    if contains_any(&ctx.settings.local_addresses, dst) {
                        self.counters.rx_bytes += n as u64;
                        Ok(n)
                    } else {
                        Err(DropReason::BadDestination)
                    }
                }
                Some(_) => {
                    self.counters.spoofed += 1;
                    Err(DropReason::SpoofedSource)
                }
                None => Err(DropReason::MalformedInner),
            }
        };
        if confirmed {
            self.handshake_complete(now, ctx);
        }
        if roamed {
            ctx.out.event(Event::EndpointChanged {
                peer: ctx.id,
                endpoint: from,
            });
        }
        // Timers: any authenticated packet received.
        self.timers.disarm(Timer::NewHandshake);
        if n > 0 {
            if self.timers.is_armed(Timer::SendKeepalive) {
                self.need_another_keepalive = true;
            } else {
                self.timers
                    .arm(Timer::SendKeepalive, now + KEEPALIVE_TIMEOUT);
            }
        }
        // Receiving-side rekey, initiator only.
        if initiator_age.is_some_and(|a| a >= REJECT_AFTER_TIME - KEEPALIVE_TIMEOUT - REKEY_TIMEOUT)
        {
            self.initiate(now, false, ctx);
        }
        if delivered.is_ok() {
            ctx.out.stats.rx_packets += 1;
            ctx.out.stats.rx_bytes += n as u64;
        }
        delivered
    }

    /// An [`OpenJob`] for the data message `d` if the session it names would decrypt it now.
    #[inline]
    #[cfg_attr(not(feature = "driver"), allow(dead_code))] // used by the driver's crypto workers
    pub(crate) fn open_job(
        &self,
        d: &wire::Data<'_>,
        out_len: usize,
        now: Instant,
    ) -> Option<OpenJob> {
        self.sessions.find(d.receiver())?.open_job(d, out_len, now)
    }

    #[cfg(any(test, feature = "test-util"))]
    pub(crate) fn set_send_counter(&mut self, counter: u64) {
        if let Some(s) = self.sessions.current_mut() {
            s.set_send_counter(counter);
        }
    }
}
