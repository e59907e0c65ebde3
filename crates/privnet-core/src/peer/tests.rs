//! The per-peer state machine driven directly: two members' [`Peer`]s exchange real Noise messages
//! through a minimal stand-in for the node (what `Node` does before it hands a message to a peer:
//! parse, Diffie-Hellman of the initiation, credential check), under a hand-advanced clock.
// A test: it reads the real clock or opens sockets (see clippy.toml).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnetwork::IpNetwork;
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

use super::*;
use crate::config::{NodeConfig, REKEY_ATTEMPT_TIME, REKEY_TIMEOUT};
use crate::credential::{CredentialVerifier, StandInCredential, StaticKeyVerifier};
use crate::crypto::StaticSecret;
use crate::peers::PeerTable;
use crate::wire::Message;

fn secret(i: u8) -> StaticSecret {
    StaticSecret::from_bytes([i.wrapping_mul(37).wrapping_add(1); 32])
}

fn overlay(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, i)
}

fn underlay(i: u8) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, i)), 51820)
}

/// An IPv4 packet from member `from` to member `to` with `payload` bytes of payload.
fn packet(from: u8, to: u8, payload: usize) -> Vec<u8> {
    let mut p = vec![0u8; 20 + payload];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(20 + payload as u16).to_be_bytes());
    p[9] = 17;
    p[12..16].copy_from_slice(&overlay(from).octets());
    p[16..20].copy_from_slice(&overlay(to).octets());
    p
}

/// One member's view of the other: the node-level resources a [`Ctx`] borrows, and the peer.
struct Side {
    me: u8,
    keys: LocalKeys,
    settings: Settings,
    rng: ChaCha20Rng,
    indices: IndexMap,
    out: Outbox,
    wall: WallClock,
    table: PeerTable<Peer>,
    id: PeerId,
    last_stamp: Tai64N,
    router: Router<PeerId>,
}

fn side(me: u8, other: u8, now: Instant) -> Side {
    let mut verifier = StaticKeyVerifier::new();
    for i in [me, other] {
        verifier.allow(
            secret(i).public_key(),
            crate::credential::PeerIdentity {
                name: format!("m{i}"),
                addresses: vec![IpNetwork::new(IpAddr::V4(overlay(i)), 32).unwrap()],
                groups: vec![],
                not_after: u64::MAX,
                fingerprint: [i; 32],
            },
        );
    }
    let verifier: Arc<dyn CredentialVerifier> = Arc::new(verifier);
    let mut cfg = NodeConfig::new(secret(me), [5; 32], [6; 16], verifier);
    let cred = StandInCredential {
        name: format!("m{me}"),
        addresses: vec![],
    };
    cfg.credential(cred.encode()).rng_seed([me; 32]);
    let mut parts = cfg.into_parts();
    parts.settings.local_addresses = vec![IpNetwork::new(IpAddr::V4(overlay(me)), 32).unwrap()];
    let params = parts.settings.cipher.noise_params().parse().unwrap();
    let keys = LocalKeys::new(
        params,
        parts.settings.cipher.wire_id(),
        parts.static_secret,
        parts.network_psk,
        &parts.accepted_psks,
        &parts.network_id,
    );
    let mut table = PeerTable::default();
    let peer_key = secret(other).public_key();
    let mut peer = Peer::new(peer_key, &keys, now);
    peer.configure(
        Some(underlay(other)),
        vec![IpNetwork::new(IpAddr::V4(overlay(other)), 32).unwrap()],
        None,
        now,
    );
    let id = table.insert(peer_key, peer).unwrap();
    Side {
        me,
        keys,
        settings: parts.settings,
        rng: ChaCha20Rng::from_seed(parts.rng_seed),
        indices: IndexMap::default(),
        out: Outbox::default(),
        wall: WallClock::new(now, Duration::from_secs(1_800_000_000)),
        table,
        id,
        last_stamp: Tai64N::default(),
        router: Router::new(),
    }
}

impl Side {
    fn drive<R>(&mut self, f: impl FnOnce(&mut Peer, &mut Ctx<'_>) -> R) -> R {
        let peer = self.table.get_mut(self.id).unwrap();
        let mut ctx = Ctx {
            id: self.id,
            keys: &self.keys,
            settings: &self.settings,
            rng: &mut self.rng,
            indices: &mut self.indices,
            out: &mut self.out,
            wall: self.wall,
            last_stamp: &mut self.last_stamp,
            router: &self.router,
        };
        f(peer, &mut ctx)
    }

    fn peer(&self) -> &Peer {
        self.table.get(self.id).unwrap()
    }

    /// Everything in the outbox as datagrams (keepalives and queued data sealed now).
    fn flush(&mut self, now: Instant) -> Vec<Vec<u8>> {
        let mut sent = Vec::new();
        while let Some(p) = self.out.transmits.pop_front() {
            let mut buf = vec![0u8; 2048];
            let t = match p {
                Pending::Raw { bytes, .. } => {
                    sent.push(bytes);
                    continue;
                }
                Pending::Keepalive { .. } => {
                    self.drive(|p, ctx| p.seal_keepalive(&mut buf, now, ctx))
                }
                Pending::Data { packet, .. } => {
                    match self.drive(|p, ctx| p.seal(&packet, &mut buf, now, ctx)) {
                        Ok(Encapsulated::Send(t)) => Some(t),
                        _ => None,
                    }
                }
            };
            if let Some(t) = t {
                sent.push(buf[..t.len].to_vec());
            }
        }
        sent
    }

    /// What `Node::decapsulate` does with one datagram, minus admission.
    fn receive(&mut self, bytes: &[u8], from: u8, now: Instant) -> Result<usize, DropReason> {
        let from = underlay(from);
        match wire::parse(bytes)? {
            Message::Initiation(m) => {
                let mut seed = [0u8; 32];
                self.rng.fill_bytes(&mut seed);
                let rx = handshake::read_initiation(&self.keys, &m, 0, seed)?;
                let unix = self.wall.unix(now).as_secs();
                let identity = self
                    .settings
                    .verifier
                    .verify(&rx.credential, &rx.remote_static, unix)
                    .map_err(|_| DropReason::BadCredential)?;
                let sender = m.sender();
                self.drive(|p, ctx| p.on_initiation(from, rx, identity, sender, now, ctx))
                    .map(|_| 0)
            }
            Message::Response(m) => self
                .drive(|p, ctx| p.on_response(from, &m, now, ctx))
                .map(|_| 0),
            Message::CookieReply(m) => self
                .drive(|p, ctx| p.on_cookie_reply(&m, now, ctx))
                .map(|()| 0),
            Message::Data(d) => {
                let mut out = vec![0u8; 2048];
                self.drive(|p, ctx| p.on_data(from, &d, &mut out, now, ctx, None))
            }
        }
    }

    /// Indices held by the peer equal the index map (the node's invariant, for one peer).
    fn check_indices(&self) {
        let held: Vec<u32> = self.peer().indices().collect();
        assert_eq!(held.len(), self.indices.len(), "stale or missing index");
        for i in held {
            assert_eq!(self.indices.get(i), Some(self.id));
        }
    }

    fn initiations_sent(&self) -> u64 {
        self.out.stats.handshakes_initiated
    }
}

/// Deliver everything `from` has queued to `to`; returns what `to` answered with.
fn deliver(from: &mut Side, to: &mut Side, now: Instant) -> usize {
    let me = from.me;
    let mut n = 0;
    for d in from.flush(now) {
        let _ = to.receive(&d, me, now);
        n += 1;
    }
    n
}

/// A complete handshake initiated by `a`, confirmed by a keepalive.
fn handshake(a: &mut Side, b: &mut Side, now: Instant) {
    a.drive(|p, ctx| p.initiate(now, true, ctx));
    deliver(a, b, now); // initiation
    deliver(b, a, now); // response
    deliver(a, b, now); // keepalive confirms b's session
    assert!(a.peer().is_established(now) && b.peer().is_established(now));
}

#[test]
fn an_unanswered_initiation_is_retried_then_given_up_with_its_queue() {
    let t0 = Instant::now();
    let mut a = side(1, 2, t0);
    let mut buf = vec![0u8; 2048];
    let queued = a.drive(|p, ctx| p.seal(&packet(1, 2, 100), &mut buf, t0, ctx));
    assert_eq!(queued, Ok(Encapsulated::Queued));
    assert_eq!(a.initiations_sent(), 1);
    assert!(matches!(
        a.peer().phase(t0),
        HandshakePhase::Initiating { attempts: 1, .. }
    ));
    // Fire the timers every 100 ms for 100 s; nobody answers.
    let mut now = t0;
    while now < t0 + Duration::from_secs(100) {
        now += Duration::from_millis(100);
        let _ = a.drive(|p, ctx| p.on_timers(now, ctx));
        a.out.transmits.clear();
        a.check_indices();
    }
    // One initiation per REKEY_TIMEOUT + jitter until REKEY_ATTEMPT_TIME, then nothing.
    let sent = a.initiations_sent();
    let most = REKEY_ATTEMPT_TIME.as_secs() / REKEY_TIMEOUT.as_secs() + 1;
    assert!(sent >= most - 2 && sent <= most, "{sent} initiations");
    assert_eq!(a.peer().phase(now), HandshakePhase::Idle);
    assert_eq!(a.out.stats.dropped(DropReason::HandshakeTimeout), 1);
    assert_eq!(
        a.indices.len(),
        0,
        "the abandoned initiation's index is retired"
    );
}

#[test]
fn a_response_makes_the_initiator_current_and_data_confirms_the_responder() {
    let t0 = Instant::now();
    let (mut a, mut b) = (side(1, 2, t0), side(2, 1, t0));
    a.drive(|p, ctx| p.initiate(t0, false, ctx));
    deliver(&mut a, &mut b, t0);
    // The responder waits for confirmation: a session in `next`, nothing current.
    assert!(b.peer().sessions.next().is_some());
    assert!(!b.peer().is_established(t0));
    deliver(&mut b, &mut a, t0);
    let s = a.peer().current_session().unwrap();
    assert!(s.is_initiator);
    assert!(matches!(a.peer().phase(t0), HandshakePhase::Established));
    // The initiator confirms with a keepalive (no data queued).
    assert_eq!(deliver(&mut a, &mut b, t0), 1);
    let r = b.peer().current_session().unwrap();
    assert_eq!(
        (r.local_index, r.remote_index),
        (s.remote_index, s.local_index)
    );
    assert!(b.peer().sessions.next().is_none());
    a.check_indices();
    b.check_indices();
    // Data both ways, with the anti-spoofing check.
    let mut buf = vec![0u8; 2048];
    let Ok(Encapsulated::Send(t)) = a.drive(|p, ctx| p.seal(&packet(1, 2, 64), &mut buf, t0, ctx))
    else {
        panic!("no session");
    };
    assert_eq!(b.receive(&buf[..t.len], 1, t0), Ok(84));
    let Ok(Encapsulated::Send(t)) = b.drive(|p, ctx| p.seal(&packet(9, 1, 64), &mut buf, t0, ctx))
    else {
        panic!("no session");
    };
    assert_eq!(
        a.receive(&buf[..t.len], 2, t0),
        Err(DropReason::SpoofedSource)
    );
}

#[test]
fn rekeys_rotate_sessions_and_retire_the_displaced_indices() {
    let t0 = Instant::now();
    let (mut a, mut b) = (side(1, 2, t0), side(2, 1, t0));
    handshake(&mut a, &mut b, t0);
    let first = a.peer().current_session().unwrap();
    let t1 = t0 + Duration::from_secs(121);
    handshake(&mut a, &mut b, t1);
    let second = a.peer().current_session().unwrap();
    assert_ne!(first.local_index, second.local_index);
    // The old session is `previous`: a packet still in flight on it is accepted.
    let t2 = t0 + Duration::from_secs(242);
    handshake(&mut b, &mut a, t2);
    let third = b.peer().current_session().unwrap();
    assert!(third.is_initiator);
    // Each side keeps at most current + previous (+ next); everything older was retired.
    for s in [&a, &b] {
        s.check_indices();
        assert!(s.indices.len() <= 3, "{} indices", s.indices.len());
    }
    assert!(a.indices.get(first.local_index).is_none());
    assert_eq!(a.peer().counters.handshakes, 3);
}

#[test]
fn a_session_past_reject_after_time_queues_and_rekeys() {
    let t0 = Instant::now();
    let (mut a, mut b) = (side(1, 2, t0), side(2, 1, t0));
    handshake(&mut a, &mut b, t0);
    let late = t0 + REJECT_AFTER_TIME;
    let mut buf = vec![0u8; 2048];
    let before = a.initiations_sent();
    let r = a.drive(|p, ctx| p.seal(&packet(1, 2, 10), &mut buf, late, ctx));
    assert_eq!(r, Ok(Encapsulated::Queued));
    assert_eq!(a.initiations_sent(), before + 1);
    // The answer flushes the queued packet instead of a keepalive.
    deliver(&mut a, &mut b, late);
    deliver(&mut b, &mut a, late);
    let sent = a.flush(late);
    assert_eq!(sent.len(), 1);
    assert_eq!(b.receive(&sent[0], 1, late), Ok(30));
}

#[test]
fn simultaneous_initiations_settle_on_the_lower_keys_handshake() {
    let t0 = Instant::now();
    let (mut a, mut b) = (side(1, 2, t0), side(2, 1, t0));
    a.drive(|p, ctx| p.initiate(t0, false, ctx));
    b.drive(|p, ctx| p.initiate(t0, false, ctx));
    let from_a = a.flush(t0);
    let from_b = b.flush(t0);
    for d in &from_b {
        let _ = a.receive(d, 2, t0);
    }
    for d in &from_a {
        let _ = b.receive(d, 1, t0);
    }
    // Both answered; the higher key abandoned its own initiation.
    let (lower, higher) = if secret(1).public_key() < secret(2).public_key() {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    assert!(!higher.peer().initiator.is_initiating());
    assert!(lower.peer().initiator.is_initiating());
    for _ in 0..3 {
        deliver(lower, higher, t0);
        deliver(higher, lower, t0);
    }
    let l = lower.peer().current_session().unwrap();
    let h = higher.peer().current_session().unwrap();
    assert_eq!(
        (l.local_index, l.remote_index),
        (h.remote_index, h.local_index)
    );
    assert!(l.is_initiator && !h.is_initiator);
    lower.check_indices();
    higher.check_indices();
}

#[test]
fn teardown_ends_every_session_and_keeps_persistent_keepalives_going() {
    let t0 = Instant::now();
    let (mut a, mut b) = (side(1, 2, t0), side(2, 1, t0));
    handshake(&mut a, &mut b, t0);
    a.drive(|p, _| p.persistent_keepalive = Some(Duration::from_secs(25)));
    a.drive(|p, ctx| p.teardown(DownReason::Idle, t0, ctx));
    assert_eq!(a.indices.len(), 0);
    assert!(!a.peer().is_established(t0));
    assert!(a.out.events.iter().any(|e| matches!(
        e,
        Event::PeerDown {
            reason: DownReason::Idle,
            ..
        }
    )));
    assert_eq!(
        a.peer().timers.next_deadline(),
        Some(t0 + Duration::from_secs(25))
    );
    // Removal does not re-arm it.
    a.drive(|p, ctx| p.teardown(DownReason::Removed, t0, ctx));
    assert_eq!(a.peer().timers.next_deadline(), None);
}

#[test]
fn a_replayed_or_flooding_initiation_is_refused() {
    let t0 = Instant::now();
    let (mut a, mut b) = (side(1, 2, t0), side(2, 1, t0));
    a.drive(|p, ctx| p.initiate(t0, false, ctx));
    let init = a.flush(t0).remove(0);
    assert_eq!(b.receive(&init, 1, t0), Ok(0));
    let later = t0 + Duration::from_secs(1);
    assert_eq!(
        b.receive(&init, 1, later),
        Err(DropReason::ReplayedInitiation)
    );
    // A fresh initiation within 20 ms of the last consumed one is a flood.
    a.wall = WallClock::new(t0, Duration::from_secs(1_800_000_100));
    a.drive(|p, ctx| p.initiate(t0, true, ctx));
    let fresh = a.flush(t0).remove(0);
    assert_eq!(b.receive(&fresh, 1, t0), Err(DropReason::InitiationFlood));
    b.check_indices();
}
