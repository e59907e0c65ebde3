//! The data path of a real session against a model of the replay window (PROTOCOL.md §6). Two
//! members (tag 202) complete a handshake once per process; each input is then a program over
//! that session: seal inner packets under counters the fuzzer picks (valid packets, keepalives,
//! spoofed sources, foreign destinations, arbitrary inner bytes), deliver them in any order, any
//! number of times, from the peer's endpoint or from elsewhere (roaming, a source inside the
//! overlay), mutated, truncated or extended, and forge data messages (any counter, any receiver
//! index, the counter limit).
//!
//! For every delivery the model predicts the exact outcome — `duplicate`, `too_old`,
//! `counter_limit`, `bad_tag`, `unknown_index`, `endpoint_in_overlay` (the window still advances),
//! `spoofed_source`, `bad_destination`, `malformed_inner`, a keepalive, or the inner packet with
//! exactly the sealed bytes — and the target asserts it, that it is counted exactly once, that a
//! genuine packet is delivered at most once and a forged or mutated one never, that the receiver's
//! session is untouched, where the endpoint moved (and the `EndpointChanged` events), and the
//! node's table invariants.
//!
//! Determinism across inputs: the receiver's window outlives an input, so every input works in
//! its own counter range `[base, base + 2^20)` above every counter used before (the model starts
//! empty there, exactly like the window); forged counters outside it are only ones whose verdict
//! does not depend on history (`counter_limit`). The endpoint is restored at the end of an input.
//!
//! Input layout (`common::Input`): a sequence of operations, `op u8` (mod 8) then its fields:
//! ```text
//! 0 seal      offset u32 (mod 2^20), kind u8 (mod 5: packet, keepalive, spoofed source,
//!             foreign destination, raw inner bytes), len u8, [raw bytes]
//! 1 deliver   pool index u8
//! 2 mutate    pool index u8, position u16, xor u8 (forced odd)
//! 3 resize    pool index u8, new length u16 (mod len + 64)
//! 4 roam      pool index u8, source u8 (mod 4: endpoint, another IPv4, IPv6, inside the overlay)
//! 5 forge     counter mode u8 (in range / at the limit / u64::MAX), offset u32, len u8
//! 6 index     receiver u32, counter offset u32
//! 7 burst     pool index u8, count u8 (mod 8): the same packet again and again
//! ```
#![no_main]
use std::cell::RefCell;
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use privnet_core::config::REJECT_AFTER_MESSAGES;
use privnet_core::testing::{ipv4_udp, LinkConfig, Sim, TestNetwork};
use privnet_core::wire::{self, Message};
use privnet_core::{Decapsulated, DropReason, Event, PeerId};

mod common;
use common::{Fresh, Input, ReplayModel};

/// Counters per input.
const SPAN: u64 = 1 << 20;
/// Most sealed packets per input, and most operations.
const POOL: usize = 32;
const OPS: usize = 64;

struct Pair {
    net: TestNetwork,
    sim: Sim,
    /// Node 0's peer id for node 1 and node 1's for node 0.
    to1: PeerId,
    to0: PeerId,
    base: u64,
    serial: u64,
    out: Vec<u8>,
}

thread_local! {
    static PAIR: RefCell<Option<Pair>> = const { RefCell::new(None) };
}

fn with_pair(f: impl FnOnce(&mut Pair)) {
    PAIR.with(|p| {
        let mut p = p.borrow_mut();
        let pair = p.get_or_insert_with(|| {
            let net = TestNetwork::new(2, 202);
            let mut sim = net.sim(3, LinkConfig::default());
            sim.run_for(Duration::from_millis(200));
            let to1 = sim.nodes[0]
                .node
                .peer_by_key(&net.public(1))
                .expect("peer 1");
            let to0 = sim.nodes[1]
                .node
                .peer_by_key(&net.public(0))
                .expect("peer 0");
            let a = sim.nodes[0].node.current_session(to1).expect("a session");
            let b = sim.nodes[1].node.current_session(to0).expect("a session");
            assert_eq!(
                (a.local_index, a.remote_index),
                (b.remote_index, b.local_index)
            );
            for n in &mut sim.nodes {
                while n.node.poll_event().is_some() {}
            }
            Pair {
                net,
                sim,
                to1,
                to0,
                base: SPAN,
                serial: 0,
                out: vec![0u8; 70_000],
            }
        });
        f(pair);
    });
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Packet,
    Keepalive,
    Spoofed,
    Foreign,
    Raw,
}

struct Sealed {
    bytes: Vec<u8>,
    counter: u64,
    plain: Vec<u8>,
}

/// What the receiver must make of an authenticated, fresh packet with this plaintext.
fn inner_verdict(net: &TestNetwork, plain: &[u8]) -> Result<usize, DropReason> {
    if plain.is_empty() {
        return Ok(0);
    }
    match privnet_core::packet::addresses(plain) {
        None => Err(DropReason::MalformedInner),
        Some((src, _)) if src != net.overlay[0] => Err(DropReason::SpoofedSource),
        Some((_, dst)) if dst != net.overlay[1] => Err(DropReason::BadDestination),
        Some(_) => Ok(plain.len()),
    }
}

struct Run<'a> {
    p: &'a mut Pair,
    model: ReplayModel,
    pool: Vec<Sealed>,
    endpoint: SocketAddr,
    /// Counters of the genuine packets delivered in this input.
    delivered: HashSet<u64>,
    current: (u32, u32),
}

impl Run<'_> {
    fn sources(&self) -> [SocketAddr; 4] {
        [
            self.p.net.underlay[0],
            SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 20)), 6000),
            SocketAddr::new(
                IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x20)),
                51820,
            ),
            SocketAddr::new(self.p.net.overlay[0], 51820),
        ]
    }

    fn seal(&mut self, counter: u64, plain: Vec<u8>) -> Option<Sealed> {
        let node = &mut self.p.sim.nodes[0].node;
        node.set_send_counter_for_test(self.p.to1, counter);
        let now = self.p.sim.now;
        match node.encapsulate_to(self.p.to1, &plain, &mut self.p.out, now) {
            Ok(privnet_core::Encapsulated::Send(t)) => {
                assert_eq!(t.dst, self.p.net.underlay[1]);
                let bytes = self.p.out[..t.len].to_vec();
                assert_eq!(
                    u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes")),
                    counter,
                    "sealed under the counter asked for"
                );
                Some(Sealed {
                    bytes,
                    counter,
                    plain,
                })
            }
            other => panic!("sealing on an established session: {other:?}"),
        }
    }

    /// Deliver to node 1 from `from` and compare with `want`; returns the result.
    fn deliver(&mut self, from: SocketAddr, bytes: &[u8], want: Option<Result<usize, DropReason>>) {
        let now = self.p.sim.now;
        let node = &mut self.p.sim.nodes[1].node;
        let before = node.stats().total_drops();
        let r = node.decapsulate(from, bytes, &mut self.p.out, now);
        let after = node.stats().total_drops();
        let got: Result<usize, DropReason> = match &r {
            Ok(Decapsulated::Packet { peer, len }) => {
                assert_eq!(*peer, self.p.to0);
                Ok(*len)
            }
            Ok(Decapsulated::Keepalive) => Ok(0),
            Ok(Decapsulated::Control) => panic!("a data message handled as control"),
            Err(e) => Err(e.reason()),
        };
        if common::trace() {
            eprintln!(
                "deliver {} bytes from {from}: got {got:?}, want {want:?}",
                bytes.len()
            );
        }
        assert_eq!(
            after - before,
            u64::from(got.is_err()),
            "{got:?} counted wrongly"
        );
        if let Some(want) = want {
            assert_eq!(got, want, "node and model disagree");
        }
        let s = node.current_session(self.p.to0).expect("the session stays");
        assert_eq!(
            (s.local_index, s.remote_index),
            self.current,
            "the session changed"
        );
        node.check_invariants();
        let mut events = Vec::new();
        while let Some(e) = node.poll_event() {
            events.push(e);
        }
        for e in events {
            match e {
                Event::EndpointChanged { peer, endpoint } => {
                    assert_eq!(peer, self.p.to0);
                    self.endpoint = endpoint;
                }
                other => panic!("unexpected event {other:?}"),
            }
        }
        let status = node.peer(self.p.to0).expect("peer");
        assert_eq!(
            status.endpoint,
            Some(self.endpoint),
            "endpoint and events agree"
        );
    }

    /// Deliver a genuine sealed packet and check the model's verdict.
    fn deliver_genuine(&mut self, i: usize, from: SocketAddr) {
        let (counter, bytes, plain) = {
            let s = &self.pool[i];
            (s.counter, s.bytes.clone(), s.plain.clone())
        };
        let mut expected_endpoint = self.endpoint;
        let want = match self.model.check(counter) {
            Fresh::Duplicate => Err(DropReason::Duplicate),
            Fresh::TooOld => Err(DropReason::TooOld),
            Fresh::Yes => {
                // Authenticated: the window advances whatever the inner packet is. Roaming
                // (PROTOCOL.md §6): only the newest packet moves the endpoint, never into the
                // overlay (that one is refused), and the inner packet's verdict does not matter.
                let newest = self.model.commit(counter);
                let roams = newest && from != self.endpoint;
                if roams && from.ip() == self.p.net.overlay[0] {
                    Err(DropReason::EndpointInOverlay)
                } else {
                    if roams {
                        expected_endpoint = from;
                    }
                    inner_verdict(&self.p.net, &plain)
                }
            }
        };
        self.deliver(from, &bytes, Some(want));
        assert_eq!(
            self.endpoint, expected_endpoint,
            "the endpoint after {want:?} from {from}"
        );
        if let Ok(len) = want {
            assert!(
                self.delivered.insert(counter),
                "counter {counter} delivered twice"
            );
            if len > 0 {
                assert_eq!(&self.p.out[..len], &plain[..], "the exact inner packet");
            }
        }
    }

    /// The verdict on bytes that are not a genuine sealed packet (forged, mutated, resized).
    fn forged_verdict(&self, bytes: &[u8]) -> Option<Result<usize, DropReason>> {
        match wire::parse(bytes) {
            Err(e) => Some(Err(e)),
            Ok(Message::Data(d)) => {
                if d.receiver() != self.current.0 {
                    // Unknown, or another session of the peer (whose window we do not model).
                    return None;
                }
                let c = d.counter();
                if c >= REJECT_AFTER_MESSAGES {
                    return Some(Err(DropReason::CounterLimit));
                }
                if c < self.p.base {
                    // History below this input's range: not modelled (but never accepted).
                    return None;
                }
                Some(Err(match self.model.check(c) {
                    Fresh::Duplicate => DropReason::Duplicate,
                    Fresh::TooOld => DropReason::TooOld,
                    Fresh::Yes => DropReason::BadTag,
                }))
            }
            // A mutated header can make another message type: refused, reason not modelled.
            Ok(_) => None,
        }
    }

    fn deliver_forged(&mut self, from: SocketAddr, bytes: &[u8]) {
        let want = self.forged_verdict(bytes);
        let before = self.p.sim.nodes[1].node.stats().rx_packets;
        self.deliver(from, bytes, want);
        let node = &self.p.sim.nodes[1].node;
        assert_eq!(
            node.stats().rx_packets,
            before,
            "a forged message was accepted"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    with_pair(|p| {
        let s = p.sim.nodes[1].node.current_session(p.to0).expect("session");
        let current = (s.local_index, s.remote_index);
        let endpoint = p.net.underlay[0];
        let mut run = Run {
            p,
            model: ReplayModel::default(),
            pool: Vec::new(),
            endpoint,
            delivered: HashSet::new(),
            current,
        };
        let mut input = Input::new(data);
        for _ in 0..OPS {
            if input.is_empty() {
                break;
            }
            let op = input.u8() % 8;
            let sources = run.sources();
            match op {
                0 if run.pool.len() < POOL => {
                    let counter = run.p.base + u64::from(input.u32()) % SPAN;
                    let kind = [
                        Kind::Packet,
                        Kind::Keepalive,
                        Kind::Spoofed,
                        Kind::Foreign,
                        Kind::Raw,
                    ][usize::from(input.u8()) % 5];
                    let len = usize::from(input.u8());
                    run.p.serial += 1;
                    let serial = run.p.serial.to_le_bytes();
                    let net = &run.p.net;
                    let stranger = IpAddr::V4(Ipv4Addr::new(10, 77, 202, 99));
                    let plain = match kind {
                        Kind::Packet => ipv4_udp(net.overlay[0], net.overlay[1], &serial),
                        Kind::Keepalive => Vec::new(),
                        Kind::Spoofed => ipv4_udp(stranger, net.overlay[1], &serial),
                        Kind::Foreign => ipv4_udp(net.overlay[0], stranger, &serial),
                        Kind::Raw => input.bytes(len).to_vec(),
                    };
                    if let Some(s) = run.seal(counter, plain) {
                        run.pool.push(s);
                    }
                }
                0 => {}
                1 | 7 if !run.pool.is_empty() => {
                    let i = usize::from(input.u8()) % run.pool.len();
                    let times = if op == 7 {
                        1 + usize::from(input.u8() % 8)
                    } else {
                        1
                    };
                    for _ in 0..times {
                        run.deliver_genuine(i, sources[0]);
                    }
                }
                2 if !run.pool.is_empty() => {
                    let i = usize::from(input.u8()) % run.pool.len();
                    let mut bytes = run.pool[i].bytes.clone();
                    let pos = usize::from(input.u16()) % bytes.len();
                    bytes[pos] ^= input.u8() | 1;
                    run.deliver_forged(sources[0], &bytes);
                }
                3 if !run.pool.is_empty() => {
                    let i = usize::from(input.u8()) % run.pool.len();
                    let mut bytes = run.pool[i].bytes.clone();
                    let n = usize::from(input.u16()) % (bytes.len() + 64);
                    if n == bytes.len() {
                        continue;
                    }
                    bytes.resize(n, 0x5a);
                    run.deliver_forged(sources[0], &bytes);
                }
                4 if !run.pool.is_empty() => {
                    let i = usize::from(input.u8()) % run.pool.len();
                    let from = sources[usize::from(input.u8()) % sources.len()];
                    run.deliver_genuine(i, from);
                }
                5 => {
                    let mode = input.u8() % 3;
                    let offset = u64::from(input.u32());
                    let counter = match mode {
                        0 => run.p.base + offset % SPAN,
                        1 => REJECT_AFTER_MESSAGES + offset % 16,
                        _ => u64::MAX - offset % 16,
                    };
                    let len = usize::from(input.u8());
                    let mut bytes = vec![0u8; wire::DATA_MIN_LEN + len];
                    wire::write_header(&mut bytes, wire::TYPE_DATA);
                    bytes[4..8].copy_from_slice(&run.current.0.to_le_bytes());
                    bytes[8..16].copy_from_slice(&counter.to_le_bytes());
                    let fill = input.bytes(len);
                    bytes[16..16 + fill.len()].copy_from_slice(fill);
                    run.deliver_forged(sources[0], &bytes);
                }
                6 => {
                    let receiver = input.u32();
                    let counter = run.p.base + u64::from(input.u32()) % SPAN;
                    let mut bytes = vec![0u8; wire::DATA_MIN_LEN + 8];
                    wire::write_header(&mut bytes, wire::TYPE_DATA);
                    bytes[4..8].copy_from_slice(&receiver.to_le_bytes());
                    bytes[8..16].copy_from_slice(&counter.to_le_bytes());
                    run.deliver_forged(sources[0], &bytes);
                }
                _ => {}
            }
        }
        // Restore the endpoint for the next input: a fresh keepalive above this input's range.
        let top = run.p.base + SPAN;
        if let Some(k) = run.seal(top, Vec::new()) {
            let home = run.p.net.underlay[0];
            run.model.commit(top);
            run.deliver(home, &k.bytes, Some(Ok(0)));
        }
        assert_eq!(run.endpoint, run.p.net.underlay[0]);
        run.p.base += SPAN + 1;
        for n in &mut run.p.sim.nodes {
            while n
                .node
                .poll_transmit(&mut run.p.out, run.p.sim.now)
                .is_some()
            {}
            while n.node.poll_event().is_some() {}
        }
    });
});
