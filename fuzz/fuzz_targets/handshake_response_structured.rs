//! Structure-aware responses, against a node that really waits for one: each input gets a fresh
//! initiator (member 1 of the fixture, its initiation to member 0 in its outbox) and a sequence of
//! up to eight operations: a response built field by field by member 0's own handshake code
//! (`testing::HandshakeKit::respond`, so it answers a real initiation of the node and its payload
//! decrypts) to the pending or an earlier initiation, with a chosen credential, indices, ephemeral
//! key, tampered byte, suite, mac1, mac2 and source; a cookie reply (valid or not) to the pending
//! initiation; raw bytes; the replay of an earlier message; an application packet; and clock
//! advances that fire the node's timers (retransmissions, give-up).
//!
//! The target models the node's decision for every response and cookie reply (PROTOCOL.md §4.3,
//! §7.3) and asserts: the exact drop reason, counted once; that a refused response leaves the
//! pending handshake usable (the genuine response still completes it); on success the session's
//! indices, the endpoint, the events (`EndpointChanged`, `PeerUp`) and the confirmation (one
//! keepalive, or exactly the packets queued meanwhile); after a valid cookie reply, a retried
//! initiation that carries mac2 under that cookie; every initiation's mac1; give-up counting one
//! `handshake_timeout` per queued packet; and the node's table invariants after every step.
//!
//! Input layout (`common::Input`, little-endian, zeros past the end):
//! ```text
//! config      u8   bit 0 suite, bit 1 load threshold 1 (mac2 required from the 2nd message/s)
//! then per operation (at most 8):
//! advance     u16  milliseconds (mod 12,001) before the operation (due timers fire)
//! op          u8   (mod 8) 0-3 response, 4 cookie reply, 5 raw datagram, 6 replay, 7 app packet
//! response:   flags  u8  bits 0-1 initiation answered (0, 1 the latest, 2 the first, 3 the one
//!                        before the latest); bit 2 header names the other suite; bit 3 mac1
//!                        wrong; bits 4-5 mac2 (zero, the source's cookie, garbage, zero);
//!                        bit 6 ephemeral override follows; bit 7 tamper follows
//!             flags2 u8  bits 0-1 source (member 0's endpoint, another, IPv6, overlay);
//!                        bits 2-3 credential (member 0's own, stand-in with a name, raw, empty);
//!                        bits 4-5 receiver index (of the answered initiation, the latest
//!                        initiation's, a raw u32 that follows, the current session's)
//!             sender u32, seed u8, [receiver u32], credential fields (name: u8 len + bytes;
//!             raw: u16 len mod 1,025 + bytes), ephemeral (u8: even = low-order point picked by
//!             the next u8, odd = 32 raw bytes), tamper (u16 position in the Noise bytes, u8 xor)
//! cookie:     flags u8 (bit 0 raw receiver u32 follows, bit 1 wrong key, bit 2 wrong ad),
//!             cookie [16], nonce seed u8
//! raw:        len u8, bytes (mac1 fixed when it is long enough)
//! replay:     u8 index into the messages delivered so far
//! app packet: u8 payload length
//! ```
#![no_main]
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use privnet_core::config::UNDER_LOAD_AFTER;
use privnet_core::credential::StandInCredential;
use privnet_core::crypto::{self, CipherSuite};
use privnet_core::node::HandshakePhase;
use privnet_core::testing::ipv4_udp;
use privnet_core::wire::{self, Message};
use privnet_core::{Decapsulated, DropReason, Encapsulated, Event, Node, PeerId};

mod common;
use common::{
    fixture, other_suite, Fixture, Input, LOW_ORDER, RESPONSE_SOURCES, RESPONSE_SRC_OVERLAY,
};

/// The node's load detector as a model (ratelimit.rs).
struct Load {
    threshold: u32,
    window_start: Instant,
    count: u32,
    until: Option<Instant>,
}

impl Load {
    fn record(&mut self, now: Instant) -> bool {
        if now.saturating_duration_since(self.window_start) >= Duration::from_secs(1) {
            self.window_start = now;
            self.count = 0;
        }
        self.count = self.count.saturating_add(1);
        if self.count > self.threshold {
            self.until = Some(now + UNDER_LOAD_AFTER);
        }
        self.until.is_some_and(|t| now < t)
    }
}

/// What the model needs to know about a response it delivered (to replay it).
#[derive(Clone, Debug)]
struct Response {
    from_idx: usize,
    bytes: Vec<u8>,
    /// Position (in `State::initiations`) of the initiation it answers.
    answers: usize,
    mac1_ok: bool,
    suite_ok: bool,
    mac2_cookie_ok: bool,
    /// The final ephemeral is a low-order point.
    low_order: bool,
    /// Ephemeral or Noise bytes changed.
    noise_changed: bool,
    credential_ok: bool,
}

impl Response {
    fn receiver(&self) -> u32 {
        u32::from_le_bytes([self.bytes[8], self.bytes[9], self.bytes[10], self.bytes[11]])
    }
    fn sender(&self) -> u32 {
        u32::from_le_bytes([self.bytes[4], self.bytes[5], self.bytes[6], self.bytes[7]])
    }
}

#[derive(Clone)]
enum Delivered {
    Response(Response),
    Cookie { bytes: Vec<u8> },
}

struct State<'f> {
    f: &'f Fixture,
    suite: CipherSuite,
    node: Node,
    peer: PeerId,
    now: Instant,
    load: Load,
    /// Every initiation the node sent in this input, in order.
    initiations: Vec<Vec<u8>>,
    /// The index of the pending initiation.
    pending: Option<u32>,
    /// The pending initiation's Noise state already read a response (one whose credential was
    /// then refused): every later response to it fails (see the note in `expect_response`).
    spent: bool,
    /// Local indices of the sessions: current, then previous.
    sessions: Vec<u32>,
    /// Packets queued while no session could send.
    queued: usize,
    /// The endpoint the node sends to.
    endpoint: SocketAddr,
    delivered: Vec<Delivered>,
    /// Cookie the node holds from member 0 (after a valid cookie reply).
    cookie: Option<[u8; 16]>,
    /// Initiations of the current attempt and when it started.
    attempt: (u32, Instant),
    /// `HandshakeUnanswered` events the node owes (the fourth initiation of an attempt).
    unanswered: Vec<Event>,
    buf: Vec<u8>,
}

fn index_of(initiation: &[u8]) -> u32 {
    u32::from_le_bytes([initiation[4], initiation[5], initiation[6], initiation[7]])
}

impl State<'_> {
    fn live(&self, index: u32) -> bool {
        self.pending == Some(index) || self.sessions.contains(&index)
    }

    /// Drain the node's transmits: record and check its initiations, return the rest.
    fn drain(&mut self) -> Vec<(SocketAddr, Vec<u8>)> {
        let mut other = Vec::new();
        while let Some(t) = self.node.poll_transmit(&mut self.buf, self.now) {
            let bytes = self.buf[..t.len].to_vec();
            if bytes[0] != wire::TYPE_INITIATION {
                other.push((t.dst, bytes));
                continue;
            }
            assert_eq!(
                t.dst, self.endpoint,
                "an initiation goes to the peer's endpoint"
            );
            let Ok(Message::Initiation(m)) = wire::parse(&bytes) else {
                panic!("the node sent a broken initiation");
            };
            let (covered, mac1) = m.mac1_parts();
            assert_eq!(
                crypto::mac16(&self.f.mac1_key[0], covered),
                mac1,
                "initiation mac1"
            );
            let (covered, mac2) = m.mac2_parts();
            match self.cookie {
                Some(c) => assert_eq!(mac2, crypto::mac16(&c, covered), "mac2 under the cookie"),
                None => assert_eq!(mac2, [0u8; 16], "no cookie, no mac2"),
            }
            assert_eq!(m.cipher_id(), self.suite.wire_id());
            // An attempt starts with an initiation sent while none is pending; after its third
            // unanswered one (that is, with the fourth) the node says so, once.
            self.attempt = match self.pending {
                None => (1, self.now),
                Some(_) => (self.attempt.0 + 1, self.attempt.1),
            };
            if self.attempt.0 == privnet_core::node::UNANSWERED_AFTER + 1 {
                self.unanswered.push(Event::HandshakeUnanswered {
                    peer: self.peer,
                    endpoint: self.endpoint,
                    attempts: privnet_core::node::UNANSWERED_AFTER,
                    since: self.attempt.1,
                });
            }
            self.pending = Some(m.sender());
            self.spent = false;
            self.initiations.push(bytes);
        }
        other
    }

    /// The node's events, less the `HandshakeUnanswered` ones, which must be exactly those owed.
    fn events(&mut self) -> Vec<Event> {
        let all: Vec<Event> = std::iter::from_fn(|| self.node.poll_event()).collect();
        let (unanswered, rest): (Vec<Event>, Vec<Event>) = all
            .into_iter()
            .partition(|e| matches!(e, Event::HandshakeUnanswered { .. }));
        assert_eq!(
            unanswered,
            std::mem::take(&mut self.unanswered),
            "HandshakeUnanswered"
        );
        rest
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        if !self.node.poll_timeout().is_some_and(|t| t <= self.now) {
            return;
        }
        let before = self.node.stats().total_drops();
        let was_established = self.node.is_established(self.peer);
        self.node.handle_timeout(self.now);
        let other = self.drain();
        assert!(other.is_empty(), "timers sent {other:?}");
        let phase = self.node.peer(self.peer).map(|s| s.phase);
        if phase == Some(HandshakePhase::Idle) && !was_established {
            // Gave up (REKEY_ATTEMPT_TIME): one handshake_timeout per queued packet.
            if self.pending.take().is_some() {
                let dropped = self.node.stats().total_drops() - before;
                assert_eq!(
                    dropped, self.queued as u64,
                    "handshake_timeout per queued packet"
                );
                self.queued = 0;
            }
        } else {
            assert_eq!(
                self.node.stats().total_drops(),
                before,
                "timers dropped something"
            );
        }
        assert!(self.events().is_empty(), "no events from timers here");
        self.node.check_invariants();
    }

    /// Deliver `bytes` from `from` and check the outcome against `expect`; returns the transmits.
    fn deliver(
        &mut self,
        from: SocketAddr,
        bytes: &[u8],
        expect: Option<Result<(), DropReason>>,
    ) -> (Result<Decapsulated, DropReason>, Vec<(SocketAddr, Vec<u8>)>) {
        let before = self.node.stats().clone();
        let mut out = vec![0u8; 2048];
        let r = self
            .node
            .decapsulate(from, bytes, &mut out, self.now)
            .map_err(|e| e.reason());
        let after = self.node.stats().clone();
        match &r {
            Ok(_) => assert_eq!(
                after.total_drops(),
                before.total_drops(),
                "accepted but counted"
            ),
            Err(e) => {
                assert_eq!(
                    after.total_drops(),
                    before.total_drops() + 1,
                    "{e:?} not counted once"
                );
                assert_eq!(after.dropped(*e), before.dropped(*e) + 1);
            }
        }
        assert!(
            !matches!(
                r,
                Ok(Decapsulated::Packet { .. }) | Ok(Decapsulated::Keepalive)
            ),
            "nobody here can seal data for the node"
        );
        if let Some(want) = expect {
            let got = r.clone().map(|_| ());
            assert_eq!(got, want, "node and model disagree");
        }
        let sent = self.drain();
        if let Err(DropReason::CookieRequired) = r {
            assert_eq!(sent.len(), 1, "one cookie reply: {sent:?}");
            let (dst, reply) = &sent[0];
            assert_eq!(*dst, from);
            let Ok(Message::CookieReply(c)) = wire::parse(reply) else {
                panic!("not a cookie reply");
            };
            let idx = self.f.response_sources.iter().position(|s| *s == from);
            if let Some(i) = idx {
                let mac1 = common::mac1_of(bytes);
                let cookie = crypto::open_cookie(
                    &self.f.cookie_key[1],
                    c.nonce(),
                    c.encrypted_cookie(),
                    &mac1,
                );
                assert_eq!(
                    cookie,
                    Some(self.f.response_cookies[i]),
                    "the source's cookie"
                );
            }
        } else if r.is_err() {
            assert!(sent.is_empty(), "a refusal sent {sent:?}");
        }
        self.node.check_invariants();
        (r, sent)
    }

    /// The model of a response (node.rs handle_response, peer.rs on_response).
    fn expect_response(&mut self, resp: &Response) -> Result<(), DropReason> {
        if !resp.mac1_ok {
            return Err(DropReason::BadMac1);
        }
        if !resp.suite_ok {
            return Err(DropReason::CipherMismatch);
        }
        if resp.from_idx == RESPONSE_SRC_OVERLAY {
            return Err(DropReason::EndpointInOverlay);
        }
        let receiver = resp.receiver();
        if !self.live(receiver) {
            return Err(DropReason::UnexpectedHandshake);
        }
        // At most 8 messages: neither the priority lane nor the limiter (bursts of 10) refuse.
        if self.load.record(self.now) && !resp.mac2_cookie_ok {
            return Err(DropReason::CookieRequired);
        }
        if self.pending != Some(receiver) {
            return Err(DropReason::UnexpectedHandshake);
        }
        // Observed behaviour (reported with this target): a response that passes Noise but
        // whose credential is refused leaves the node initiating, but its Noise state has read
        // message 2, so snow refuses any further read (`handshake_failed`) until the next
        // retransmission builds a new initiation. Only the holder of member 0's static key and
        // the PSK can make such a response. Noise failures, by contrast, leave the state usable.
        if self.spent {
            return Err(DropReason::HandshakeFailed);
        }
        if resp.low_order {
            return Err(DropReason::BadKey);
        }
        let latest = self.initiations.len() - 1;
        if resp.noise_changed || resp.answers != latest {
            return Err(DropReason::HandshakeFailed);
        }
        if !resp.credential_ok {
            self.spent = true;
            return Err(DropReason::BadCredential);
        }
        Ok(())
    }

    fn response_outcome(&mut self, resp: &Response) {
        let expect = self.expect_response(resp);
        if common::trace() {
            eprintln!(
                "response receiver {:#x} (pending {:?}, sessions {:?}) {resp:?}: expect {expect:?}",
                resp.receiver(),
                self.pending,
                self.sessions
            );
        }
        let from = self.f.response_sources[resp.from_idx];
        let pending = self.pending;
        let queued = self.queued;
        let (r, sent) = self.deliver(from, &resp.bytes, Some(expect));
        let events = self.events();
        if r.is_err() {
            assert!(
                events.is_empty(),
                "a refused response made events: {events:?}"
            );
            if pending.is_some() {
                assert_eq!(
                    self.pending, pending,
                    "the pending initiation survives a refusal"
                );
            }
            return;
        }
        // Success: the session of the pending initiation, with the responder's index.
        let session = self.node.current_session(self.peer).expect("a session");
        assert_eq!(Some(session.local_index), pending);
        assert_eq!(session.remote_index, resp.sender());
        assert!(session.is_initiator);
        assert!(self.node.is_established(self.peer));
        self.sessions.insert(0, session.local_index);
        self.sessions.truncate(2);
        self.pending = None;
        let mut want = Vec::new();
        if from != self.endpoint {
            want.push(Event::EndpointChanged {
                peer: self.peer,
                endpoint: from,
            });
        }
        want.push(Event::PeerUp {
            peer: self.peer,
            name: format!("m{}-0", common::TAG),
        });
        assert_eq!(events, want);
        self.endpoint = from;
        let data = sent.iter().filter(|(_, b)| b[0] == wire::TYPE_DATA).count();
        assert_eq!(data, sent.len(), "only data after a response: {sent:?}");
        assert!(
            sent.iter().all(|(d, _)| *d == from),
            "data goes to the new endpoint"
        );
        if queued == 0 {
            assert_eq!(sent.len(), 1, "one keepalive confirms the session");
            assert_eq!(sent[0].1.len(), wire::DATA_MIN_LEN);
        } else {
            assert_eq!(sent.len(), queued, "the queued packets, flushed");
        }
        self.queued = 0;
    }

    fn build_response(&mut self, input: &mut Input<'_>) -> Response {
        let f = self.f;
        let flags = input.u8();
        let flags2 = input.u8();
        let n = self.initiations.len();
        let answered = match flags & 3 {
            0 | 1 => n - 1,
            2 => 0,
            _ => n.saturating_sub(2),
        };
        let initiation = self.initiations[answered].clone();
        let sender = input.u32();
        let seed = [input.u8(); 32];
        let from_idx = usize::from(flags2 & 3) % RESPONSE_SOURCES;
        let receiver_mode = (flags2 >> 4) & 3;
        let raw_receiver = (receiver_mode == 2).then(|| input.u32());
        let own = &f.credential[0];
        let credential: Vec<u8> = match (flags2 >> 2) & 3 {
            0 => own.clone(),
            1 => {
                let len = usize::from(input.u8() % 32);
                StandInCredential {
                    name: String::from_utf8_lossy(input.bytes(len)).into_owned(),
                    addresses: vec![],
                }
                .encode()
            }
            2 => {
                let len = usize::from(input.u16()) % (wire::MAX_CREDENTIAL_LEN + 1);
                input.bytes(len).to_vec()
            }
            _ => Vec::new(),
        };
        let ephemeral = (flags & 64 != 0).then(|| {
            if input.u8() & 1 == 0 {
                LOW_ORDER[usize::from(input.u8()) % LOW_ORDER.len()]
            } else {
                input.array()
            }
        });
        let tamper = (flags & 128 != 0).then(|| (input.u16(), input.u8() | 1));
        let kit = f.member_kit(0, self.suite);
        let (initiator, mut bytes) = match kit.respond(&initiation, sender, &credential, None, seed)
        {
            Ok(x) => x,
            Err(e) => panic!("member 0 cannot read the node's initiation: {e:?}"),
        };
        assert_eq!(
            initiator, f.publics[1],
            "the initiation carries the node's key"
        );
        let len = bytes.len();
        let original = bytes[12..len - 32].to_vec();
        let receiver = match receiver_mode {
            0 => index_of(&initiation),
            1 => index_of(&self.initiations[n - 1]),
            2 => raw_receiver.unwrap_or(0),
            _ => self.sessions.first().copied().unwrap_or(0),
        };
        bytes[8..12].copy_from_slice(&receiver.to_le_bytes());
        if let Some(e) = ephemeral {
            bytes[12..44].copy_from_slice(&e);
        }
        if let Some((pos, x)) = tamper {
            let noise_len = len - 44;
            bytes[12 + usize::from(pos) % noise_len] ^= x;
        }
        let suite_ok = flags & 4 == 0;
        if !suite_ok {
            bytes[2] = other_suite(self.suite).wire_id();
        }
        common::set_mac1(&mut bytes, &f.mac1_key[1]);
        let mac1_ok = flags & 8 == 0;
        if !mac1_ok {
            bytes[len - 32] ^= 1;
        }
        let mac2_mode = (flags >> 4) & 3;
        let cookie = match mac2_mode {
            1 => Some(f.response_cookies[from_idx]),
            2 => Some([0x3c; 16]),
            _ => None,
        };
        common::set_mac2(&mut bytes, cookie.as_ref());
        let mut e = [0u8; 32];
        e.copy_from_slice(&bytes[12..44]);
        Response {
            from_idx,
            answers: answered,
            mac1_ok,
            suite_ok,
            mac2_cookie_ok: mac2_mode == 1,
            low_order: crypto::is_low_order(&e),
            noise_changed: bytes[12..len - 32] != original[..],
            credential_ok: f.credential_ok(&f.publics[0], &credential, self.unix_secs()),
            bytes,
        }
    }

    fn unix_secs(&self) -> u64 {
        (self.f.unix + self.now.saturating_duration_since(self.f.now)).as_secs()
    }

    fn cookie_reply(&mut self, input: &mut Input<'_>) {
        let flags = input.u8();
        let cookie: [u8; 16] = input.array();
        let nonce = [input.u8(); 24];
        let receiver = if flags & 1 != 0 {
            input.u32()
        } else {
            self.pending.unwrap_or(0)
        };
        let latest_mac1 = self.initiations.last().map(|m| common::mac1_of(m));
        let ad = match (flags & 4 != 0, latest_mac1) {
            (false, Some(m)) => m,
            _ => [0x77; 16],
        };
        let key = if flags & 2 != 0 {
            [0x42; 32]
        } else {
            self.f.cookie_key[0]
        };
        let Some(sealed) = crypto::seal_cookie(&key, &nonce, &cookie, &ad) else {
            return;
        };
        let mut bytes = vec![0u8; wire::COOKIE_REPLY_LEN];
        wire::write_header(&mut bytes, wire::TYPE_COOKIE_REPLY);
        bytes[4..8].copy_from_slice(&receiver.to_le_bytes());
        bytes[8..32].copy_from_slice(&nonce);
        bytes[32..].copy_from_slice(&sealed);
        self.cookie_outcome(&bytes);
        self.delivered.push(Delivered::Cookie { bytes });
    }

    /// Model and check a cookie reply (peer.rs on_cookie_reply).
    fn cookie_outcome(&mut self, bytes: &[u8]) {
        let receiver = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
        let opened = self.initiations.last().and_then(|m| {
            crypto::open_cookie(
                &self.f.cookie_key[0],
                &bytes[8..32],
                &bytes[32..],
                &common::mac1_of(m),
            )
        });
        let expect = if !self.live(receiver) || self.pending != Some(receiver) {
            Err(DropReason::UnexpectedHandshake)
        } else if opened.is_none() {
            Err(DropReason::BadCookie)
        } else {
            Ok(())
        };
        let old_pending = self.pending;
        if expect.is_ok() {
            // The node stores the cookie, then retries at once with mac2 under it.
            self.cookie = opened;
        }
        let from = self.f.response_sources[1];
        let (r, sent) = self.deliver(from, bytes, Some(expect));
        assert!(sent.is_empty(), "only the retried initiation: {sent:?}");
        if r.is_ok() {
            assert_ne!(
                self.pending, old_pending,
                "a cookie reply makes the node retry now"
            );
        }
        assert!(self.events().is_empty());
    }

    fn raw(&mut self, input: &mut Input<'_>) {
        let len = usize::from(input.u8());
        let mut bytes = input.bytes(len).to_vec();
        if bytes.len() >= 32 && matches!(bytes[0], 1 | 2) {
            common::set_mac1(&mut bytes, &self.f.mac1_key[1]);
        }
        // Raw handshake messages that pass mac1, the suite and the index count for load.
        match wire::parse(&bytes) {
            Ok(Message::Initiation(m)) if m.cipher_id() == self.suite.wire_id() => {
                self.load.record(self.now);
            }
            Ok(Message::Response(m))
                if m.cipher_id() == self.suite.wire_id() && self.live(m.receiver()) =>
            {
                self.load.record(self.now);
            }
            _ => {}
        }
        let from = self.f.response_sources[0];
        let pending = self.pending;
        let (r, _) = self.deliver(from, &bytes, None);
        // Without the keys nothing raw completes a handshake, retries or installs anything.
        let _ = r;
        assert_eq!(self.pending, pending, "raw bytes moved the handshake");
        let events = self.events();
        assert!(events.is_empty(), "raw bytes made events: {events:?}");
    }

    fn replay(&mut self, input: &mut Input<'_>) {
        if self.delivered.is_empty() {
            return;
        }
        let i = usize::from(input.u8()) % self.delivered.len();
        match self.delivered[i].clone() {
            Delivered::Response(resp) => {
                self.response_outcome(&resp);
                self.delivered.push(Delivered::Response(resp));
            }
            Delivered::Cookie { bytes } => self.cookie_outcome(&bytes),
        }
    }

    fn app_packet(&mut self, input: &mut Input<'_>) {
        let n = usize::from(input.u8());
        let pkt = ipv4_udp(self.f.net.overlay[1], self.f.net.overlay[0], &vec![0xab; n]);
        let established = self.node.is_established(self.peer);
        let mut out = vec![0u8; 2048];
        let r = self.node.encapsulate(&pkt, &mut out, self.now);
        match r {
            Ok(Encapsulated::Send(t)) => {
                assert!(established, "sent without a session");
                assert_eq!(t.dst, self.endpoint);
                assert_eq!(t.len, pkt.len() + wire::DATA_OVERHEAD);
            }
            Ok(Encapsulated::Queued) => {
                assert!(!established, "queued with a session");
                self.queued += 1;
            }
            Err(e) => panic!("a routable packet was refused: {e:?}"),
        }
        let other = self.drain();
        assert!(other.is_empty(), "{other:?}");
        assert!(self.events().is_empty());
        self.node.check_invariants();
    }
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let mut input = Input::new(data);
    let config = input.u8();
    let suite = CipherSuite::ALL[usize::from(config & 1)];
    let low_threshold = config & 2 != 0;
    let node = f.initiator(suite, low_threshold);
    let Some(peer) = node.peer_by_key(&f.publics[0]) else {
        panic!("member 0 is configured");
    };
    let mut st = State {
        f,
        suite,
        node,
        peer,
        now: f.now,
        load: Load {
            threshold: if low_threshold { 1 } else { 128 },
            window_start: f.now,
            count: 0,
            until: None,
        },
        initiations: Vec::new(),
        pending: None,
        spent: false,
        sessions: Vec::new(),
        queued: 0,
        endpoint: f.net.underlay[0],
        delivered: Vec::new(),
        cookie: None,
        attempt: (0, f.now),
        unanswered: Vec::new(),
        buf: vec![0u8; 4096],
    };
    let rest = st.drain();
    assert!(rest.is_empty(), "only the initiation at start: {rest:?}");
    assert_eq!(st.initiations.len(), 1, "an eager initiation at start");
    for _ in 0..8 {
        if input.is_empty() {
            break;
        }
        st.advance(Duration::from_millis(u64::from(input.u16() % 12_001)));
        let op = input.u8() % 8;
        if common::trace() {
            eprintln!("op {op} at +{:?}", st.now - f.now);
        }
        match op {
            0..=3 => {
                if st.initiations.is_empty() {
                    continue;
                }
                let resp = st.build_response(&mut input);
                st.response_outcome(&resp);
                st.delivered.push(Delivered::Response(resp));
            }
            4 => st.cookie_reply(&mut input),
            5 => st.raw(&mut input),
            6 => st.replay(&mut input),
            _ => st.app_packet(&mut input),
        }
    }
});
