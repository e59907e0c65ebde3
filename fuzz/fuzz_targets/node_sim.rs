//! Stateful simulation: two or three members (tag 203) and a network the fuzzer drives datagram by
//! datagram. The input is a sequence of operations — an application packet from one member to
//! another, delivering, duplicating, dropping, mutating or replaying datagrams in flight (any
//! order), raw datagrams from an outsider, clock advances that fire every timer (retransmission,
//! give-up, keepalives, rekeys, session expiry, key erasure), forced rekeys, restarts, stopping and
//! starting a member, wall-clock steps and roaming.
//!
//! Checked after every step: no panic; every refused datagram is counted exactly once and an
//! accepted one not at all; a node's `rx_packets` equals the data and keepalives it accepted;
//! every inner packet delivered came from the member the session belongs to, is addressed to the
//! receiver, was sent by the application and is delivered at most once — across replays,
//! duplicates and restarts; a mutated data message is never accepted; each node's table
//! invariants (`Node::check_invariants`); peers are only network members; timers make progress
//! (`handle_timeout` never leaves a timer due at the same instant more than a bounded number of
//! times). At the end, unless the input stepped a wall clock or moved an address (which can
//! legitimately cut members off), liveness: with the network healed, every member reaches every
//! other within 120 s of virtual time.
//!
//! Input layout (`common::Input`): `config u8` (bit 0: three members, else two; bit 1: skip the
//! liveness check; bit 2: eager handshakes; bit 3: ChaCha20-Poly1305), then up to 48 operations
//! `op u8` (mod 14) with their fields:
//! ```text
//! 0 send a u8, b u8, len u8        1 deliver k u8        2 duplicate k u8     3 drop k u8
//! 4 deliver all in flight          5 advance mode u8, amount u16 (ms, or ×100 ms for odd mode)
//! 6 restart i u8                   7 replay h u8         8 mutate k u8, pos u16, xor u8
//! 9 inject i u8, len u8, bytes     10 rekey a u8, b u8   11 clock step i u8, secs i16
//! 12 stop/start i u8               13 roam i u8
//! ```
#![no_main]
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use privnet_core::crypto::CipherSuite;
use privnet_core::testing::{ipv4_udp, udp_payload, TestNetwork};
use privnet_core::wire;
use privnet_core::{Decapsulated, Encapsulated, Node, NodeConfig};

mod common;
use common::Input;

const MAX_IN_FLIGHT: usize = 256;
const HISTORY: usize = 64;
const OPS: usize = 48;

struct Fixture {
    net: TestNetwork,
    now: Instant,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        // The clock origin of every input (then only virtual time).
        #[allow(clippy::disallowed_methods)]
        let now = Instant::now();
        Fixture {
            net: TestNetwork::new(3, 203),
            now,
        }
    })
}

struct Member {
    node: Node,
    addr: SocketAddr,
    up: bool,
    /// Data and keepalives this incarnation accepted.
    accepted: u64,
}

#[derive(Clone)]
struct Datagram {
    src: SocketAddr,
    dst: SocketAddr,
    bytes: Vec<u8>,
}

struct World<'f> {
    f: &'f Fixture,
    n: usize,
    eager: bool,
    suite: CipherSuite,
    members: Vec<Member>,
    now: Instant,
    in_flight: Vec<Datagram>,
    history: Vec<Datagram>,
    /// Serials sent by the application from a to b.
    sent: HashMap<(usize, usize), HashSet<u64>>,
    /// Serials delivered to b (over every incarnation).
    got: Vec<HashSet<u64>>,
    serial: u64,
    restarts: u64,
    /// Wall-clock steps or roaming happened: members may legitimately stay cut off.
    liveness_void: bool,
    buf: Vec<u8>,
}

fn attacker() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 99)), 666)
}

impl<'f> World<'f> {
    fn config(&self, i: usize, seed: u64) -> NodeConfig {
        let mut cfg = self.f.net.config(i, seed);
        cfg.eager_handshakes = self.eager;
        cfg.cipher = self.suite;
        cfg
    }

    fn new_node(&self, i: usize, seed: u64) -> Node {
        let unix = self.f.net.unix_start + self.now.saturating_duration_since(self.f.now);
        let cfg = self.config(i, seed);
        let mut node = match Node::new(cfg, self.now, unix) {
            Ok(n) => n,
            Err(e) => panic!("node {i}: {e}"),
        };
        let net = &self.f.net;
        for j in 0..self.n {
            if j == i {
                continue;
            }
            let pc = privnet_core::PeerConfig::new(net.public(j))
                .endpoint(net.underlay[j])
                .allowed_ip(ipnetwork::IpNetwork::new(net.overlay[j], 32).expect("a /32"));
            if let Err(e) = node.add_peer(pc, self.now) {
                panic!("peer: {e}");
            }
        }
        node
    }

    fn drain(&mut self, i: usize) {
        let now = self.now;
        let m = &mut self.members[i];
        while let Some(t) = m.node.poll_transmit(&mut self.buf, now) {
            self.in_flight.push(Datagram {
                src: m.addr,
                dst: t.dst,
                bytes: self.buf[..t.len].to_vec(),
            });
        }
        while m.node.poll_event().is_some() {}
        if self.in_flight.len() > MAX_IN_FLIGHT {
            let excess = self.in_flight.len() - MAX_IN_FLIGHT;
            self.in_flight.drain(..excess);
        }
    }

    fn check(&self, i: usize) {
        let m = &self.members[i];
        m.node.check_invariants();
        assert!(m.node.peer_count() < self.n, "a peer that is not a member");
        assert_eq!(
            m.node.stats().rx_packets,
            m.accepted,
            "rx_packets vs accepted"
        );
    }

    fn member_of_key(&self, key: &[u8; 32]) -> Option<usize> {
        (0..self.n).find(|&j| self.f.net.public(j) == *key)
    }

    /// Deliver one datagram; `mutated` marks bytes changed in flight.
    fn deliver(&mut self, d: &Datagram, mutated: bool) {
        let Some(i) = self.members.iter().position(|m| m.addr == d.dst) else {
            return;
        };
        if !self.members[i].up {
            return;
        }
        let now = self.now;
        let before = self.members[i].node.stats().total_drops();
        let r = self.members[i]
            .node
            .decapsulate(d.src, &d.bytes, &mut self.buf, now);
        let after = self.members[i].node.stats().total_drops();
        if common::trace() {
            eprintln!(
                "{:?} {} B {} -> {i}: {r:?}",
                now - self.f.now,
                d.bytes.len(),
                d.src
            );
        }
        assert_eq!(
            after - before,
            u64::from(r.is_err()),
            "{r:?} counted wrongly at {i}"
        );
        match r {
            Ok(Decapsulated::Packet { peer, len }) => {
                assert!(!mutated, "a mutated datagram delivered a packet");
                self.members[i].accepted += 1;
                let key = match self.members[i].node.peer(peer) {
                    Some(s) => s.static_public,
                    None => panic!("a packet from an unknown peer id"),
                };
                let j = self.member_of_key(&key).expect("peers are members");
                let inner = &self.buf[..len];
                let Some((src, dst)) = privnet_core::packet::addresses(inner) else {
                    panic!("a malformed inner packet delivered");
                };
                assert_eq!(
                    src, self.f.net.overlay[j],
                    "the inner source is the sender's"
                );
                assert_eq!(dst, self.f.net.overlay[i], "addressed to the receiver");
                let payload = udp_payload(inner);
                let serial = u64::from_le_bytes(payload[..8].try_into().expect("8 bytes"));
                assert!(
                    self.sent.get(&(j, i)).is_some_and(|s| s.contains(&serial)),
                    "packet {serial} was never sent from {j} to {i}"
                );
                assert!(
                    self.got[i].insert(serial),
                    "packet {serial} delivered twice to {i}"
                );
            }
            Ok(Decapsulated::Keepalive) => {
                assert!(!mutated, "a mutated keepalive accepted");
                self.members[i].accepted += 1;
            }
            Ok(Decapsulated::Control) => assert!(!mutated, "a mutated data message as control"),
            Err(_) => {}
        }
        self.drain(i);
        self.check(i);
        if self.history.len() >= HISTORY {
            self.history.remove(0);
        }
        self.history.push(d.clone());
    }

    fn advance(&mut self, by: Duration) {
        let target = self.now + by;
        let mut same_instant = 0u32;
        loop {
            let next = self
                .members
                .iter()
                .filter(|m| m.up)
                .filter_map(|m| m.node.poll_timeout())
                .min();
            let Some(t) = next.filter(|t| *t <= target) else {
                break;
            };
            if t <= self.now {
                same_instant += 1;
                assert!(
                    same_instant < 64,
                    "timers stay due at {:?}",
                    self.now - self.f.now
                );
            } else {
                same_instant = 0;
                self.now = t;
            }
            for i in 0..self.members.len() {
                let due = self.members[i].up
                    && self.members[i]
                        .node
                        .poll_timeout()
                        .is_some_and(|t| t <= self.now);
                if due {
                    let now = self.now;
                    self.members[i].node.handle_timeout(now);
                    self.drain(i);
                    self.check(i);
                }
            }
        }
        self.now = self.now.max(target);
    }

    fn send(&mut self, a: usize, b: usize, extra: usize) {
        if !self.members[a].up {
            return;
        }
        self.serial += 1;
        let mut payload = self.serial.to_le_bytes().to_vec();
        payload.resize(8 + extra, 0xcd);
        let net = &self.f.net;
        let pkt = ipv4_udp(net.overlay[a], net.overlay[b], &payload);
        self.sent.entry((a, b)).or_default().insert(self.serial);
        let now = self.now;
        let m = &mut self.members[a];
        let before = m.node.stats().total_drops();
        let r = m.node.encapsulate(&pkt, &mut self.buf, now);
        match r {
            Ok(Encapsulated::Send(t)) => {
                let bytes = self.buf[..t.len].to_vec();
                assert_eq!(bytes[0], wire::TYPE_DATA);
                self.in_flight.push(Datagram {
                    src: m.addr,
                    dst: t.dst,
                    bytes,
                });
            }
            Ok(Encapsulated::Queued) => {}
            Err(e) => {
                assert_eq!(
                    m.node.stats().total_drops(),
                    before + 1,
                    "{e:?} not counted"
                );
            }
        }
        self.drain(a);
        self.check(a);
    }

    fn deliver_all(&mut self, limit: usize) {
        let mut n = 0;
        while !self.in_flight.is_empty() && n < limit {
            let d = self.in_flight.remove(0);
            self.deliver(&d, false);
            n += 1;
        }
    }

    /// With every member up and the network perfect, `a` reaches `b` within 120 s (the
    /// application sends a packet every second, as one that waits for an answer would: a packet
    /// sent on a session the other side lost is gone, and only the new-handshake timer heals it).
    fn reaches(&mut self, a: usize, b: usize) {
        let first = self.serial + 1;
        let deadline = self.now + Duration::from_secs(120);
        let mut next_send = self.now;
        loop {
            if self.now >= next_send {
                self.send(a, b, 0);
                next_send = self.now + Duration::from_secs(1);
            }
            self.deliver_all(10_000);
            if self.got[b].iter().any(|s| *s >= first) {
                return;
            }
            assert!(
                self.now < deadline,
                "member {a} cannot reach member {b} within 120 s"
            );
            let next = self
                .members
                .iter()
                .filter_map(|m| m.node.poll_timeout())
                .min()
                .unwrap_or(deadline)
                .min(deadline)
                .min(next_send);
            let step = next
                .saturating_duration_since(self.now)
                .max(Duration::from_millis(1));
            self.advance(step);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let mut input = Input::new(data);
    let config = input.u8();
    let n = if config & 1 != 0 { 3 } else { 2 };
    let mut w = World {
        f,
        n,
        eager: config & 4 != 0,
        suite: CipherSuite::ALL[usize::from(config >> 3 & 1)],
        members: Vec::new(),
        now: f.now,
        in_flight: Vec::new(),
        history: Vec::new(),
        sent: HashMap::new(),
        got: vec![HashSet::new(); n],
        serial: 0,
        restarts: 0,
        liveness_void: false,
        buf: vec![0u8; 70_000],
    };
    for i in 0..n {
        let node = w.new_node(i, 1);
        w.members.push(Member {
            node,
            addr: f.net.underlay[i],
            up: true,
            accepted: 0,
        });
        w.drain(i);
    }
    for _ in 0..OPS {
        if input.is_empty() {
            break;
        }
        let op = input.u8() % 14;
        if common::trace() {
            eprintln!(
                "op {op} at {:?}, {} in flight",
                w.now - f.now,
                w.in_flight.len()
            );
        }
        match op {
            0 => {
                let a = usize::from(input.u8()) % n;
                let b = (a + 1 + usize::from(input.u8()) % (n - 1)) % n;
                let len = usize::from(input.u8());
                w.send(a, b, len);
            }
            1..=3 if !w.in_flight.is_empty() => {
                let k = usize::from(input.u8()) % w.in_flight.len();
                let d = if op == 2 {
                    w.in_flight[k].clone()
                } else {
                    w.in_flight.remove(k)
                };
                if op != 3 {
                    w.deliver(&d, false);
                }
            }
            4 => w.deliver_all(MAX_IN_FLIGHT),
            5 => {
                let mode = input.u8();
                let amount = u64::from(input.u16());
                let ms = if mode & 1 == 0 { amount } else { amount * 100 };
                w.advance(Duration::from_millis(ms));
            }
            6 => {
                let i = usize::from(input.u8()) % n;
                w.restarts += 1;
                let node = w.new_node(i, 1 + w.restarts);
                let m = &mut w.members[i];
                m.node = node;
                m.up = true;
                m.accepted = 0;
                w.drain(i);
            }
            7 if !w.history.is_empty() => {
                let h = usize::from(input.u8()) % w.history.len();
                let d = w.history[h].clone();
                w.deliver(&d, false);
            }
            8 if !w.in_flight.is_empty() => {
                let k = usize::from(input.u8()) % w.in_flight.len();
                let mut d = w.in_flight.remove(k);
                let pos = usize::from(input.u16()) % d.bytes.len();
                let x = input.u8() | 1;
                let original_type = d.bytes[0];
                d.bytes[pos] ^= x;
                // A data message's every byte is covered (header fixed, index selects the
                // key, counter is the nonce, the rest is the AEAD): never accepted. Handshake
                // messages have mac2, which is checked only under load: no claim for them.
                let mutated = original_type == wire::TYPE_DATA;
                w.deliver(&d, mutated);
            }
            9 => {
                let i = usize::from(input.u8()) % n;
                let len = usize::from(input.u8());
                let mut bytes = input.bytes(len).to_vec();
                if bytes.len() >= 32 && matches!(bytes.first(), Some(1 | 2)) {
                    let key = privnet_core::crypto::mac1_key(&f.net.psk, &f.net.public(i));
                    common::set_mac1(&mut bytes, &key);
                }
                let d = Datagram {
                    src: attacker(),
                    dst: w.members[i].addr,
                    bytes,
                };
                w.deliver(&d, false);
            }
            10 => {
                let a = usize::from(input.u8()) % n;
                let b = (a + 1 + usize::from(input.u8()) % (n - 1)) % n;
                if !w.members[a].up {
                    continue;
                }
                let now = w.now;
                let m = &mut w.members[a];
                if let Some(p) = m.node.peer_by_key(&f.net.public(b)) {
                    m.node.initiate_handshake(p, now);
                }
                w.drain(a);
                w.check(a);
            }
            11 => {
                let i = usize::from(input.u8()) % n;
                let secs = input.u16() as i16;
                let unix = f.net.unix_start + w.now.saturating_duration_since(f.now);
                let stepped = if secs >= 0 {
                    unix + Duration::from_secs(secs.unsigned_abs().into())
                } else {
                    unix.saturating_sub(Duration::from_secs(secs.unsigned_abs().into()))
                };
                let now = w.now;
                w.members[i].node.set_wall_clock(now, stepped);
                w.liveness_void |= secs != 0;
                w.drain(i);
                w.check(i);
            }
            12 => {
                let i = usize::from(input.u8()) % n;
                w.members[i].up = !w.members[i].up;
            }
            13 => {
                let i = usize::from(input.u8()) % n;
                let a = &mut w.members[i];
                let port = a.addr.port().wrapping_add(1).max(1);
                a.addr =
                    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 30 + i as u8)), port);
                w.liveness_void = true;
            }
            _ => {}
        }
    }
    if config & 2 == 0 && !w.liveness_void {
        for m in &mut w.members {
            m.up = true;
        }
        for a in 0..n {
            for b in 0..n {
                if a != b {
                    w.reaches(a, b);
                }
            }
        }
    }
});
