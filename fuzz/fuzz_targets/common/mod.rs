//! What the fuzz targets share, and the seed generator with them
//! (`crates/privnet-core/tests/fuzz_corpus.rs` includes this file, so the seeds it writes are made
//! against exactly the fixture the targets use): the fixture network, built **once per process**,
//! a cursor over the fuzz input, the replay-window model, and message helpers.
//!
//! Everything here depends only on `privnet_core` (feature `test-util`) and `std`.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use privnet_core::credential::{CredentialVerifier, StandInCredential};
use privnet_core::crypto::{self, CipherSuite, PublicKey, StaticSecret};
use privnet_core::testing::{HandshakeKit, TestNetwork};
use privnet_core::wire;
use privnet_core::{Node, NodeConfig, PeerConfig};

/// The `TestNetwork` tag of the fixture (keys, PSK and addresses derive from it).
pub(crate) const TAG: u8 = 200;
/// The RNG seed of the node under test (its cookie secret, indices and ephemerals derive from it).
pub(crate) const NODE_SEED: u64 = 7;

/// Who sends a handshake message to the node under test (member 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sender {
    /// Member 1: a configured peer of the node.
    Member1,
    /// Member 2: accepted by the verifier, not configured (learned with `accept_unknown_peers`).
    Member2,
    /// A key the verifier does not know.
    Stranger,
    /// Member 1's key, but the Noise prologue of another network id.
    Member1OtherNetwork,
    /// Member 1's key, the Noise protocol of the other cipher suite (the header claims ours).
    Member1OtherSuite,
    /// The node's own static key (only a holder of its private key can send this).
    Itself,
}

impl Sender {
    pub(crate) const ALL: [Sender; 6] = [
        Sender::Member1,
        Sender::Member2,
        Sender::Stranger,
        Sender::Member1OtherNetwork,
        Sender::Member1OtherSuite,
        Sender::Itself,
    ];

    /// The static key the message carries.
    pub(crate) fn public(self, f: &Fixture) -> PublicKey {
        match self {
            Sender::Member1 | Sender::Member1OtherNetwork | Sender::Member1OtherSuite => {
                f.publics[1]
            }
            Sender::Member2 => f.publics[2],
            Sender::Stranger => f.stranger_public,
            Sender::Itself => f.publics[0],
        }
    }
}

/// Underlay sources a handshake message can come from.
pub(crate) const SOURCES: usize = 5;
/// Index in [`Fixture::sources`] of member 1's configured endpoint (the priority lane).
pub(crate) const SRC_MEMBER1: usize = 0;
/// Index of an address inside the overlay (member 1's overlay address): `endpoint_in_overlay`.
pub(crate) const SRC_OVERLAY: usize = 3;

/// Node configuration variants of the node under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Variant {
    pub(crate) suite: CipherSuite,
    /// `under_load_handshakes_per_sec = 1`: from the second handshake message in a second on,
    /// mac2 is required.
    pub(crate) low_load_threshold: bool,
    /// `accept_unknown_peers = false`.
    pub(crate) closed: bool,
}

impl Variant {
    pub(crate) fn from_byte(b: u8) -> Self {
        Self {
            suite: CipherSuite::ALL[usize::from(b & 1)],
            low_load_threshold: b & 2 != 0,
            closed: b & 4 != 0,
        }
    }

    pub(crate) fn to_byte(self) -> u8 {
        u8::from(self.suite == CipherSuite::ALL[1])
            | (u8::from(self.low_load_threshold) << 1)
            | (u8::from(self.closed) << 2)
    }

    fn index(self) -> usize {
        usize::from(self.to_byte())
    }

    /// The load threshold of this variant.
    pub(crate) fn load_threshold(self) -> u32 {
        if self.low_load_threshold {
            1
        } else {
            128
        }
    }
}

/// The fixture: a three-member network (tag [`TAG`]) whose member 0 is the node under test,
/// with every key, configuration and derived key prepared once.
pub(crate) struct Fixture {
    pub(crate) net: TestNetwork,
    /// Virtual time of every fresh node (read once per process).
    pub(crate) now: Instant,
    /// Unix time at `now`.
    pub(crate) unix: Duration,
    pub(crate) publics: [PublicKey; 3],
    pub(crate) stranger_public: PublicKey,
    /// Member 0's configuration for each [`Variant`] (index `Variant::to_byte`).
    configs: Vec<NodeConfig>,
    /// Member 0's peer entry for member 1.
    pub(crate) peer1: PeerConfig,
    /// Member 1's peer entry for member 0 (the initiator node of the response target is member 1).
    pub(crate) peer0: PeerConfig,
    /// Member 1's configuration (the initiator node of the response target), per suite (bit 0
    /// of the index) and load threshold (bit 1: 1 instead of 128).
    initiator_configs: Vec<NodeConfig>,
    /// Sources of responses to the initiator (see [`RESPONSE_SOURCES`]).
    pub(crate) response_sources: [SocketAddr; RESPONSE_SOURCES],
    /// The cookie a fresh initiator hands each response source, learned once.
    pub(crate) response_cookies: [[u8; 16]; RESPONSE_SOURCES],
    /// mac1 key of messages to member 0 / member 1.
    pub(crate) mac1_key: [[u8; 32]; 2],
    /// Key of the cookie replies member 0 / member 1 send.
    pub(crate) cookie_key: [[u8; 32]; 2],
    /// Kits per suite (index in `CipherSuite::ALL`): member 0, member 1, member 2, stranger,
    /// member 1 in another network.
    kits: Vec<Vec<HandshakeKit>>,
    /// Underlay sources (see [`SOURCES`]).
    pub(crate) sources: [SocketAddr; SOURCES],
    /// The cookie member 0 (seed [`NODE_SEED`]) hands each source, learned once.
    pub(crate) cookies: [[u8; 16]; SOURCES],
    /// The stand-in credential every member of the fixture sends.
    pub(crate) credential: [Vec<u8>; 3],
}

/// Index of a suite in `CipherSuite::ALL`.
pub(crate) fn suite_index(s: CipherSuite) -> usize {
    usize::from(s != CipherSuite::ALL[0])
}

/// The other suite.
pub(crate) fn other_suite(s: CipherSuite) -> CipherSuite {
    CipherSuite::ALL[1 - suite_index(s)]
}

/// The fixture, built on first use.
pub(crate) fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(Fixture::build)
}

impl Fixture {
    fn build() -> Self {
        let net = TestNetwork::new(3, TAG);
        // The fixture's clock origin; every input then runs on virtual time from here.
        #[allow(clippy::disallowed_methods)]
        let now = Instant::now();
        let unix = net.unix_start;
        let publics = [net.public(0), net.public(1), net.public(2)];
        let stranger = StaticSecret::from_bytes([0x5e; 32]);
        let stranger_public = stranger.public_key();
        let mut configs = Vec::new();
        for b in 0..8u8 {
            let v = Variant::from_byte(b);
            let mut cfg = net.config(0, NODE_SEED);
            cfg.cipher = v.suite;
            cfg.eager_handshakes = false;
            cfg.under_load_handshakes_per_sec = v.load_threshold();
            cfg.accept_unknown_peers = !v.closed;
            configs.push(cfg);
        }
        let overlay32 = |i: usize| {
            ipnetwork::IpNetwork::new(net.overlay[i], 32).unwrap_or_else(|_| unreachable!())
        };
        let peer1 = PeerConfig::new(publics[1])
            .endpoint(net.underlay[1])
            .allowed_ip(overlay32(1));
        let peer0 = PeerConfig::new(publics[0])
            .endpoint(net.underlay[0])
            .allowed_ip(overlay32(0));
        let initiator_configs = (0..4)
            .map(|i| {
                let mut cfg = net.config(1, NODE_SEED);
                cfg.cipher = CipherSuite::ALL[i & 1];
                cfg.under_load_handshakes_per_sec = if i & 2 != 0 { 1 } else { 128 };
                cfg
            })
            .collect();
        let response_sources = [
            net.underlay[0],
            SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 9)), 7777),
            SocketAddr::new(
                IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 9, 0, 0, 0, 1)),
                51820,
            ),
            SocketAddr::new(net.overlay[0], 51820),
        ];
        let mac1_key = [
            crypto::mac1_key(&net.psk, &publics[0]),
            crypto::mac1_key(&net.psk, &publics[1]),
        ];
        let cookie_key = [
            crypto::cookie_key(&net.psk, &publics[0]),
            crypto::cookie_key(&net.psk, &publics[1]),
        ];
        let mut other_network = net.network_id;
        other_network[0] ^= 0xff;
        let kits = CipherSuite::ALL
            .iter()
            .map(|&suite| {
                let kit = |secret: &StaticSecret, network_id: [u8; 16]| {
                    HandshakeKit::new(suite, secret.clone(), net.psk, network_id)
                        .unwrap_or_else(|| unreachable!("both suites are supported"))
                };
                vec![
                    kit(&net.keys[0], net.network_id),
                    kit(&net.keys[1], net.network_id),
                    kit(&net.keys[2], net.network_id),
                    kit(&stranger, net.network_id),
                    kit(&net.keys[1], other_network),
                ]
            })
            .collect();
        let sources = [
            net.underlay[1],
            SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7)), 4000),
            SocketAddr::new(
                IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7)),
                51820,
            ),
            SocketAddr::new(net.overlay[1], 51820),
            net.underlay[2],
        ];
        let credential = [0, 1, 2].map(|i| {
            StandInCredential {
                name: format!("m{i}"),
                addresses: vec![],
            }
            .encode()
        });
        let mut f = Self {
            net,
            now,
            unix,
            publics,
            stranger_public,
            configs,
            peer1,
            peer0,
            initiator_configs,
            response_sources,
            response_cookies: [[0; 16]; RESPONSE_SOURCES],
            mac1_key,
            cookie_key,
            kits,
            sources,
            cookies: [[0; 16]; SOURCES],
            credential,
        };
        f.cookies = std::array::from_fn(|i| f.learn_cookie(i));
        f.response_cookies = std::array::from_fn(|i| f.learn_response_cookie(i));
        f
    }

    /// A fresh node under test (member 0, peer member 1 configured) in configuration `v`.
    pub(crate) fn node(&self, v: Variant) -> Node {
        let cfg = self.configs[v.index()].clone();
        let mut node = match Node::new(cfg, self.now, self.unix) {
            Ok(n) => n,
            Err(e) => panic!("fixture node: {e}"),
        };
        if let Err(e) = node.add_peer(self.peer1.clone(), self.now) {
            panic!("fixture peer: {e}");
        }
        node
    }

    /// A fresh member 1 with member 0 configured as its peer, its initiation to member 0 in its
    /// outbox; with `low_load_threshold`, from the second handshake message in a second on it
    /// requires mac2.
    pub(crate) fn initiator(&self, suite: CipherSuite, low_load_threshold: bool) -> Node {
        let i = suite_index(suite) | (usize::from(low_load_threshold) << 1);
        let cfg = self.initiator_configs[i].clone();
        let mut node = match Node::new(cfg, self.now, self.unix) {
            Ok(n) => n,
            Err(e) => panic!("fixture initiator: {e}"),
        };
        if let Err(e) = node.add_peer(self.peer0.clone(), self.now) {
            panic!("fixture peer: {e}");
        }
        node
    }

    /// The kit of `who` for messages in `suite` (the suite of the Noise protocol, which for
    /// [`Sender::Member1OtherSuite`] is the other one).
    pub(crate) fn kit(&self, who: Sender, suite: CipherSuite) -> &HandshakeKit {
        let (suite, i) = match who {
            Sender::Itself => (suite, 0),
            Sender::Member1 => (suite, 1),
            Sender::Member2 => (suite, 2),
            Sender::Stranger => (suite, 3),
            Sender::Member1OtherNetwork => (suite, 4),
            Sender::Member1OtherSuite => (other_suite(suite), 1),
        };
        &self.kits[suite_index(suite)][i]
    }

    /// The kit of member `i` (0 or 1) in `suite`.
    pub(crate) fn member_kit(&self, i: usize, suite: CipherSuite) -> &HandshakeKit {
        &self.kits[suite_index(suite)][i]
    }

    /// Whether the verifier accepts `who`'s key with `credential` at `unix_secs`.
    pub(crate) fn credential_ok(&self, key: &PublicKey, credential: &[u8], unix_secs: u64) -> bool {
        self.net.verifier.verify(credential, key, unix_secs).is_ok()
    }

    /// The cookie a fresh node under test hands `sources[i]`: learned through the protocol
    /// (a node whose load threshold is 1 answers the second initiation with a cookie reply).
    fn learn_cookie(&self, i: usize) -> [u8; 16] {
        let v = Variant {
            suite: CipherSuite::ALL[0],
            low_load_threshold: true,
            closed: false,
        };
        if i == SRC_OVERLAY {
            // No handshake work for an endpoint inside the overlay, so no cookie: any value.
            return [0xee; 16];
        }
        let mut node = self.node(v);
        let from = self.sources[i];
        let mut buf = vec![0u8; 2048];
        let mut reply = None;
        for n in 0..2u32 {
            let mut msg = vec![0u8; wire::INITIATION_MIN_LEN];
            wire::write_handshake_header(&mut msg, wire::TYPE_INITIATION, v.suite.wire_id());
            msg[4..8].copy_from_slice(&n.to_le_bytes());
            set_mac1(&mut msg, &self.mac1_key[0]);
            let _ = node.decapsulate(from, &msg, &mut buf, self.now);
            while let Some(t) = node.poll_transmit(&mut buf, self.now) {
                if t.dst == from && t.len == wire::COOKIE_REPLY_LEN {
                    let mac1: [u8; 16] = mac1_of(&msg);
                    reply =
                        crypto::open_cookie(&self.cookie_key[0], &buf[8..32], &buf[32..64], &mac1);
                }
            }
        }
        reply.unwrap_or_else(|| panic!("no cookie reply for source {i}"))
    }

    /// The cookie a fresh initiator hands `response_sources[i]`: its load threshold 1 makes it
    /// answer the second response naming its pending index with a cookie reply.
    fn learn_response_cookie(&self, i: usize) -> [u8; 16] {
        if i == RESPONSE_SRC_OVERLAY {
            return [0xee; 16];
        }
        let mut node = self.initiator(CipherSuite::ALL[0], true);
        let from = self.response_sources[i];
        let mut buf = vec![0u8; 2048];
        let mut pending = None;
        while let Some(t) = node.poll_transmit(&mut buf, self.now) {
            pending = Some(u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]));
            let _ = t;
        }
        let pending = pending.unwrap_or_else(|| panic!("the initiator sent no initiation"));
        let mut reply = None;
        for n in 0..2u32 {
            let mut msg = vec![0u8; wire::RESPONSE_MIN_LEN];
            wire::write_handshake_header(
                &mut msg,
                wire::TYPE_RESPONSE,
                CipherSuite::ALL[0].wire_id(),
            );
            msg[4..8].copy_from_slice(&n.to_le_bytes());
            msg[8..12].copy_from_slice(&pending.to_le_bytes());
            set_mac1(&mut msg, &self.mac1_key[1]);
            let _ = node.decapsulate(from, &msg, &mut buf, self.now);
            while let Some(t) = node.poll_transmit(&mut buf, self.now) {
                if t.dst == from && t.len == wire::COOKIE_REPLY_LEN {
                    let mac1 = mac1_of(&msg);
                    reply =
                        crypto::open_cookie(&self.cookie_key[1], &buf[8..32], &buf[32..64], &mac1);
                }
            }
        }
        reply.unwrap_or_else(|| panic!("no cookie reply for response source {i}"))
    }
}

/// Sources of responses to the initiator of the response target.
pub(crate) const RESPONSE_SOURCES: usize = 4;
/// Index in [`Fixture::response_sources`] of an address inside the overlay.
pub(crate) const RESPONSE_SRC_OVERLAY: usize = 3;

/// mac1 of a handshake message (the 16 bytes before mac2).
pub(crate) fn mac1_of(msg: &[u8]) -> [u8; 16] {
    let n = msg.len();
    let mut m = [0u8; 16];
    m.copy_from_slice(&msg[n - 32..n - 16]);
    m
}

/// Write a correct mac1 (keyed `key`) into a handshake message.
pub(crate) fn set_mac1(msg: &mut [u8], key: &[u8; 32]) {
    let n = msg.len();
    let mac1 = crypto::mac16(key, &msg[..n - 32]);
    msg[n - 32..n - 16].copy_from_slice(&mac1);
}

/// Write mac2 from `cookie` (zero without one) into a handshake message.
pub(crate) fn set_mac2(msg: &mut [u8], cookie: Option<&[u8; 16]>) {
    let n = msg.len();
    let mac2 = match cookie {
        Some(c) => crypto::mac16(c, &msg[..n - 16]),
        None => [0; 16],
    };
    msg[n - 16..].copy_from_slice(&mac2);
}

/// The TAI64N label of `unix`.
pub(crate) fn tai64n(unix: Duration) -> [u8; 12] {
    privnet_core::tai64n::Tai64N::from_unix(unix).to_bytes()
}

/// X25519 encodings of low-order points (and non-canonical ones): every Diffie-Hellman with them
/// is all-zero.
pub(crate) const LOW_ORDER: [[u8; 32]; 8] = {
    let mut t = [[0u8; 32]; 8];
    // 0 and 1
    t[1][0] = 1;
    // order 8
    t[2] = [
        0xe0, 0xeb, 0x7a, 0x7c, 0x3b, 0x41, 0xb8, 0xae, 0x16, 0x56, 0xe3, 0xfa, 0xf1, 0x9f, 0xc4,
        0x6a, 0xda, 0x09, 0x8d, 0xeb, 0x9c, 0x32, 0xb1, 0xfd, 0x86, 0x62, 0x05, 0x16, 0x5f, 0x49,
        0xb8, 0x00,
    ];
    t[3] = [
        0x5f, 0x9c, 0x95, 0xbc, 0xa3, 0x50, 0x8c, 0x24, 0xb1, 0xd0, 0xb1, 0x55, 0x9c, 0x83, 0xef,
        0x5b, 0x04, 0x44, 0x5c, 0xc4, 0x58, 0x1c, 0x8e, 0x86, 0xd8, 0x22, 0x4e, 0xdd, 0xd0, 0x9f,
        0x11, 0x57,
    ];
    // p - 1, p, p + 1 (non-canonical 0 and 1 among them)
    let mut i = 4;
    while i < 7 {
        let mut k = [0xffu8; 32];
        k[31] = 0x7f;
        k[0] = 0xec + (i as u8 - 4);
        t[i] = k;
        i += 1;
    }
    // 0 with the (ignored) top bit set
    t[7][31] = 0x80;
    t
};

/// A cursor over the fuzz input: every read succeeds (zeros once the input is exhausted), so
/// every input decodes to some program.
pub(crate) struct Input<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Input<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }

    pub(crate) fn u8(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    pub(crate) fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    pub(crate) fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    pub(crate) fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | (u64::from(self.u32()) << 32)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> [u8; N] {
        std::array::from_fn(|_| self.u8())
    }

    /// Up to `n` bytes (fewer at the end of the input).
    pub(crate) fn bytes(&mut self, n: usize) -> &'a [u8] {
        let start = self.pos.min(self.data.len());
        let end = self.pos.saturating_add(n).min(self.data.len());
        self.pos = self.pos.saturating_add(n);
        &self.data[start..end]
    }
}

/// A writer of the same format (the seed generator's side of [`Input`]).
#[derive(Default)]
pub(crate) struct Output(pub(crate) Vec<u8>);

impl Output {
    pub(crate) fn u8(&mut self, b: u8) -> &mut Self {
        self.0.push(b);
        self
    }
    pub(crate) fn u16(&mut self, v: u16) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub(crate) fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub(crate) fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub(crate) fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(b);
        self
    }
}

/// The replay window as a specification (PROTOCOL.md §6): a counter is fresh if it was never
/// accepted and is not more than `WINDOW - 1` below the highest accepted one.
#[derive(Default)]
pub(crate) struct ReplayModel {
    max: Option<u64>,
    seen: std::collections::BTreeSet<u64>,
}

/// The verdict of [`ReplayModel::check`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fresh {
    Yes,
    Duplicate,
    TooOld,
}

impl ReplayModel {
    /// The highest accepted counter.
    pub(crate) fn max(&self) -> Option<u64> {
        self.max
    }

    pub(crate) fn check(&self, c: u64) -> Fresh {
        match self.max {
            Some(max) if c <= max => {
                if max - c >= privnet_core::replay::WINDOW {
                    Fresh::TooOld
                } else if self.seen.contains(&c) {
                    Fresh::Duplicate
                } else {
                    Fresh::Yes
                }
            }
            _ => Fresh::Yes,
        }
    }

    /// Record an accepted counter; returns whether it is the newest so far.
    pub(crate) fn commit(&mut self, c: u64) -> bool {
        let newest = self.max.is_none_or(|m| c > m);
        if newest {
            self.max = Some(c);
            // Forget what fell out of the window (keeps the model small).
            let floor = c.saturating_sub(privnet_core::replay::WINDOW);
            self.seen = self.seen.split_off(&floor);
        }
        self.seen.insert(c);
        newest
    }
}

/// Whether `PRIVNET_FUZZ_TRACE` is set: the targets then print every step (for reproducing a
/// crash: `PRIVNET_FUZZ_TRACE=1 cargo fuzz run TARGET ARTIFACT`).
pub(crate) fn trace() -> bool {
    static T: OnceLock<bool> = OnceLock::new();
    *T.get_or_init(|| std::env::var_os("PRIVNET_FUZZ_TRACE").is_some())
}

/// The CA trusted by `cert_decode`'s verifier (CA key seed `[1; 32]`): the seed generator issues
/// certificates under it, so that seeds reach the signature, validity, key and address checks
/// (they still fail: none binds the static key `cert_decode` presents, [`CERT_PROBE_KEY`]).
pub(crate) fn fuzz_ca() -> (
    privnet_core::identity::CaKey,
    privnet_core::identity::CaCertificate,
) {
    use privnet_core::identity::{CaCertificate, CaKey, CaParams, NetworkId};
    let key = CaKey::from_seed([1; 32]);
    let ca = CaCertificate::self_signed(
        &key,
        &CaParams {
            name: "fuzz".into(),
            network_id: NetworkId([0; 16]),
            prefixes: vec![
                "10.0.0.0/8".parse().expect("prefix"),
                "fd00::/8".parse().expect("prefix"),
            ],
            routes: vec!["192.168.0.0/16".parse().expect("route")],
            not_before: 0,
            not_after: u64::MAX,
        },
    )
    .expect("CA");
    (key, ca)
}

/// The static key `cert_decode` presents to its verifier (no seed certificate binds it).
pub(crate) const CERT_PROBE_KEY: [u8; 32] = [9; 32];
/// The time `cert_decode` verifies at.
pub(crate) const CERT_PROBE_TIME: u64 = 1_000;
