//! Structure-aware initiations: the input is a configuration byte and a sequence of up to eight
//! initiations described field by field (who sends it, from where, when, its TAI64N label, its
//! credential, its sender index, its ephemeral key, a tampered byte, its mac1 and mac2). The target
//! builds each one with the node's own handshake code (`testing::HandshakeKit`) — so the Noise
//! payload really decrypts — writes mac1 and mac2 as asked, and delivers it to a fresh node
//! (member 0 of the fixture). Raw bytes never get past mac1 and the AEAD; these do, and reach
//! admission under load (cookies, mac2), the contributory-DH check, credential verification, the
//! far-future timestamp rule, learning unknown peers and the per-peer replay and flood guards.
//!
//! The target carries a model of what the node must decide (PROTOCOL.md §4.2, §7) and asserts,
//! for every message: the exact drop reason, counted exactly once; a cookie reply (and nothing
//! else) for `cookie_required`, sealed with the cookie the node hands that source; for an
//! accepted message exactly one response, to the sender, naming the sender's index, with a valid
//! mac1 for the sender; the peer's endpoint; and the node's table invariants.
//!
//! Input layout (`common::Input`, little-endian, zeros past the end):
//! ```text
//! config      u8   Variant: bit 0 suite, bit 1 load threshold 1, bit 2 accept_unknown_peers = false
//! then per message (at most 8):
//! advance     u16  milliseconds (mod 12,001) to advance the clock before the message
//! flags       u8   bits 0-2 sender (Sender::ALL, mod 6); bit 3 header names the other suite;
//!                  bit 4 mac1 wrong; bits 5-6 mac2: zero, valid cookie, another source's cookie,
//!                  garbage; bit 7 ephemeral override follows
//! flags2      u8   bits 0-2 source (mod 5); bits 3-4 timestamp mode; bits 5-6 credential mode;
//!                  bit 7 tamper follows
//! sender_idx  u32
//! seed        u8   the ephemeral key's seed
//! timestamp   mode 0: i32 seconds relative to the node's wall clock + u32 nanoseconds;
//!             mode 1: 12 raw bytes; mode 2: i16 milliseconds relative to the skew limit (600 s);
//!             mode 3: the label of the previous message (none: now)
//! credential  mode 0: u8 length + name bytes of a stand-in credential; mode 1: u16 length
//!             (mod 1,025) + raw bytes; mode 2: empty; mode 3: the member's own credential
//! ephemeral   (bit 7 of flags) u8: even = low-order point (next u8 picks one), odd = 32 raw bytes
//! tamper      (bit 7 of flags2) u16 position in the Noise bytes + u8 xor (forced odd)
//! ```
#![no_main]
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use privnet_core::config::{INITIATION_MIN_INTERVAL, MAX_TIMESTAMP_SKEW, UNDER_LOAD_AFTER};
use privnet_core::crypto::{self, PublicKey};
use privnet_core::tai64n::Tai64N;
use privnet_core::wire::{self, Message};
use privnet_core::{Decapsulated, DropReason, Node};

mod common;
use common::{fixture, other_suite, Fixture, Input, Sender, Variant, LOW_ORDER, SOURCES};

/// The node's load detector (ratelimit.rs, PROTOCOL.md §7.2) as a model.
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

/// Per-peer replay and flood guard (peer.rs `InitiationGuard`).
#[derive(Default)]
struct Guard {
    last_timestamp: Option<Tai64N>,
    last_consumed: Option<Instant>,
}

struct Model {
    load: Load,
    guards: HashMap<PublicKey, Guard>,
    /// Peers of the node (member 1 from the start) and their endpoints.
    endpoints: HashMap<PublicKey, SocketAddr>,
    previous_stamp: Option<[u8; 12]>,
}

/// One decoded message and what the model says the node must do with it.
struct Case {
    from_idx: usize,
    who: Sender,
    sender: u32,
    msg: Vec<u8>,
    expect: Result<(), DropReason>,
}

fn decode(f: &Fixture, v: Variant, input: &mut Input<'_>, model: &mut Model, now: Instant) -> Case {
    let flags = input.u8();
    let flags2 = input.u8();
    let who = Sender::ALL[usize::from(flags & 7) % Sender::ALL.len()];
    let other_header_suite = flags & 8 != 0;
    let bad_mac1 = flags & 16 != 0;
    let mac2_mode = (flags >> 5) & 3;
    let from_idx = usize::from(flags2 & 7) % SOURCES;
    let sender = input.u32();
    let seed = [input.u8(); 32];
    let unix_now = f.unix + now.saturating_duration_since(f.now);
    let stamp: [u8; 12] = match (flags2 >> 3) & 3 {
        0 => {
            let secs = input.u32() as i32;
            let nanos = input.u32() % 1_000_000_000;
            let base = Duration::from_secs(unix_now.as_secs());
            let t = if secs >= 0 {
                base + Duration::from_secs(secs.unsigned_abs().into())
            } else {
                base.saturating_sub(Duration::from_secs(secs.unsigned_abs().into()))
            };
            common::tai64n(t + Duration::from_nanos(nanos.into()))
        }
        1 => input.array(),
        2 => {
            let ms = input.u16() as i16;
            let limit = unix_now + MAX_TIMESTAMP_SKEW;
            let t = if ms >= 0 {
                limit + Duration::from_millis(ms.unsigned_abs().into())
            } else {
                limit.saturating_sub(Duration::from_millis(ms.unsigned_abs().into()))
            };
            common::tai64n(t)
        }
        _ => model
            .previous_stamp
            .unwrap_or_else(|| common::tai64n(unix_now)),
    };
    model.previous_stamp = Some(stamp);
    let key = who.public(f);
    let own_credential = match who {
        Sender::Itself => &f.credential[0],
        Sender::Member2 => &f.credential[2],
        _ => &f.credential[1],
    };
    let credential: Vec<u8> = match (flags2 >> 5) & 3 {
        0 => {
            let n = usize::from(input.u8() % 32);
            let name = String::from_utf8_lossy(input.bytes(n)).into_owned();
            privnet_core::credential::StandInCredential {
                name,
                addresses: vec![],
            }
            .encode()
        }
        1 => {
            let n = usize::from(input.u16()) % (wire::MAX_CREDENTIAL_LEN + 1);
            input.bytes(n).to_vec()
        }
        2 => Vec::new(),
        _ => own_credential.clone(),
    };
    let ephemeral: Option<[u8; 32]> = (flags & 128 != 0).then(|| {
        let k = input.u8();
        if k & 1 == 0 {
            LOW_ORDER[usize::from(input.u8()) % LOW_ORDER.len()]
        } else {
            input.array()
        }
    });
    let tamper = (flags2 & 128 != 0).then(|| (input.u16(), input.u8() | 1));

    let kit = f.kit(who, v.suite);
    let mut msg = match kit.initiation(&f.publics[0], sender, stamp, &credential, None, seed) {
        Some(m) => m,
        None => unreachable!("credentials are at most 1,024 bytes"),
    };
    let len = msg.len();
    let original_noise = msg[8..len - 32].to_vec();
    if let Some(e) = ephemeral {
        msg[8..40].copy_from_slice(&e);
    }
    if let Some((pos, x)) = tamper {
        let noise_len = len - 40;
        msg[8 + usize::from(pos) % noise_len] ^= x;
    }
    let header_suite = if other_header_suite {
        other_suite(v.suite)
    } else {
        v.suite
    };
    msg[2] = header_suite.wire_id();
    common::set_mac1(&mut msg, &f.mac1_key[0]);
    if bad_mac1 {
        msg[len - 32] ^= 1;
    }
    let cookie = match mac2_mode {
        0 => None,
        1 => Some(f.cookies[from_idx]),
        2 => Some(f.cookies[(from_idx + 1) % SOURCES]),
        _ => Some([0xa5; 16]),
    };
    common::set_mac2(&mut msg, cookie.as_ref());
    let mac2_valid = mac2_mode == 1
        || (mac2_mode == 2 && f.cookies[(from_idx + 1) % SOURCES] == f.cookies[from_idx]);

    // The model, in the node's order of checks (node.rs handle_initiation).
    let expect = (|| {
        if bad_mac1 {
            return Err(DropReason::BadMac1);
        }
        if header_suite != v.suite {
            return Err(DropReason::CipherMismatch);
        }
        if from_idx == common::SRC_OVERLAY {
            return Err(DropReason::EndpointInOverlay);
        }
        if model.load.record(now) && !mac2_valid {
            return Err(DropReason::CookieRequired);
        }
        // At most 8 messages: neither the priority lane (burst 10), the per-source limiter
        // (burst 10) nor the work budget (500) can refuse one.
        let noise = &msg[8..len - 32];
        if noise[..32] != original_noise[..32] {
            let mut e = [0u8; 32];
            e.copy_from_slice(&noise[..32]);
            return Err(if crypto::is_low_order(&e) {
                DropReason::BadKey
            } else {
                DropReason::HandshakeFailed
            });
        }
        if noise != &original_noise[..]
            || matches!(who, Sender::Member1OtherNetwork | Sender::Member1OtherSuite)
        {
            return Err(DropReason::HandshakeFailed);
        }
        if !f.credential_ok(&key, &credential, unix_now.as_secs()) {
            return Err(DropReason::BadCredential);
        }
        let ts = Tai64N::from_bytes(stamp);
        if ts.to_unix() > unix_now + MAX_TIMESTAMP_SKEW {
            return Err(DropReason::FutureTimestamp);
        }
        if !model.endpoints.contains_key(&key) && v.closed {
            return Err(DropReason::BadCredential);
        }
        let guard = model.guards.entry(key).or_default();
        if guard.last_timestamp.is_some_and(|last| ts <= last) {
            return Err(DropReason::ReplayedInitiation);
        }
        if guard
            .last_consumed
            .is_some_and(|t| now.saturating_duration_since(t) < INITIATION_MIN_INTERVAL)
        {
            return Err(DropReason::InitiationFlood);
        }
        guard.last_timestamp = Some(ts);
        guard.last_consumed = Some(now);
        model.endpoints.insert(key, f.sources[from_idx]);
        Ok(())
    })();
    Case {
        from_idx,
        who,
        sender,
        msg,
        expect,
    }
}

fn check(f: &Fixture, node: &mut Node, case: &Case, now: Instant) {
    let from = f.sources[case.from_idx];
    let mut out = vec![0u8; 2048];
    let before = node.stats().clone();
    let r = node.decapsulate(from, &case.msg, &mut out, now);
    let mut sent = Vec::new();
    while let Some(t) = node.poll_transmit(&mut out, now) {
        sent.push((t.dst, out[..t.len].to_vec()));
    }
    let after = node.stats();
    match (&r, case.expect) {
        (Ok(Decapsulated::Control), Ok(())) => {
            assert_eq!(
                after.total_drops(),
                before.total_drops(),
                "accepted but counted"
            );
            assert_eq!(
                after.handshake_work,
                before.handshake_work + 1,
                "admitted once"
            );
            assert_eq!(
                sent.len(),
                1,
                "one response per accepted initiation: {sent:?}"
            );
            let (dst, resp) = &sent[0];
            assert_eq!(
                *dst, from,
                "the response goes where the initiation came from"
            );
            let key = case.who.public(f);
            match wire::parse(resp) {
                Ok(Message::Response(m)) => {
                    assert_eq!(
                        m.receiver(),
                        case.sender,
                        "the response names the sender's index"
                    );
                    let (covered, mac1) = m.mac1_parts();
                    let k = crypto::mac1_key(&f.net.psk, &key);
                    assert_eq!(
                        crypto::mac16(&k, covered),
                        mac1,
                        "response mac1 keyed for the sender"
                    );
                    assert_eq!(
                        m.mac2_parts().1,
                        &[0u8; 16][..],
                        "no cookie from the sender"
                    );
                    assert_eq!(resp.len(), wire::RESPONSE_MIN_LEN + f.credential[0].len());
                }
                other => panic!("the answer is not a response: {other:?}"),
            }
            let peer = node
                .peer_by_key(&key)
                .expect("an accepted initiation has a peer");
            let status = node.peer(peer).expect("peer status");
            assert_eq!(
                status.endpoint,
                Some(from),
                "endpoint follows the accepted initiation"
            );
        }
        (Err(e), Err(want)) => {
            assert_eq!(
                e.reason(),
                want,
                "model and node disagree on {:?}",
                case.who
            );
            assert_eq!(
                after.total_drops(),
                before.total_drops() + 1,
                "{want:?} not counted once"
            );
            assert_eq!(after.dropped(want), before.dropped(want) + 1);
            if want == DropReason::CookieRequired {
                assert_eq!(sent.len(), 1, "one cookie reply: {sent:?}");
                let (dst, reply) = &sent[0];
                assert_eq!(*dst, from);
                match wire::parse(reply) {
                    Ok(Message::CookieReply(c)) => {
                        assert_eq!(c.receiver(), case.sender);
                        let mac1 = common::mac1_of(&case.msg);
                        let cookie = crypto::open_cookie(
                            &f.cookie_key[0],
                            c.nonce(),
                            c.encrypted_cookie(),
                            &mac1,
                        );
                        assert_eq!(
                            cookie,
                            Some(f.cookies[case.from_idx]),
                            "the cookie of this source"
                        );
                    }
                    other => panic!("not a cookie reply: {other:?}"),
                }
            } else {
                assert!(sent.is_empty(), "{want:?} sent {sent:?}");
            }
        }
        (r, want) => panic!("node {r:?}, model {want:?} for {:?} from {from}", case.who),
    }
    node.check_invariants();
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let mut input = Input::new(data);
    let v = Variant::from_byte(input.u8());
    let mut node = f.node(v);
    let mut now = f.now;
    let mut model = Model {
        load: Load {
            threshold: v.load_threshold(),
            window_start: now,
            count: 0,
            until: None,
        },
        guards: HashMap::new(),
        endpoints: HashMap::from([(f.publics[1], f.sources[common::SRC_MEMBER1])]),
        previous_stamp: None,
    };
    for _ in 0..8 {
        if input.is_empty() {
            break;
        }
        let advance = Duration::from_millis(u64::from(input.u16() % 12_001));
        now += advance;
        if node.poll_timeout().is_some_and(|t| t <= now) {
            node.handle_timeout(now);
            let mut buf = vec![0u8; 2048];
            while node.poll_transmit(&mut buf, now).is_some() {}
        }
        let case = decode(f, v, &mut input, &mut model, now);
        if common::trace() {
            let from = f.sources[case.from_idx];
            eprintln!(
                "{:?} from {from} at +{:?}: expect {:?}",
                case.who,
                now - f.now,
                case.expect
            );
        }
        check(f, &mut node, &case, now);
    }
    while node.poll_event().is_some() {}
});
