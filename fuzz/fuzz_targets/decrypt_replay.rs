//! The decrypt + replay path of an established session. The input is a program: replay one of 64
//! genuine sealed packets, deliver a mutated one, or deliver raw bytes. Invariants: no panic, a
//! genuine packet is delivered at most once, a mutated packet is never delivered, every refusal is
//! counted once, and the node's tables stay consistent. (`data_session` is the same path against a
//! full model of the replay window.)
//!
//! The established pair is built once per fuzzing thread (two handshakes cost far more than an
//! input). Every input has its own 64 genuine packets with counters above all earlier ones, so
//! the invariants hold per input; a packet is sealed (directly by the sending node) only when the
//! input first refers to it, so an input pays for the packets it uses, and nothing an input makes
//! (transmits, events) outlives it.
#![no_main]
use std::cell::RefCell;
use std::collections::HashSet;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use privnet_core::testing::{ipv4_udp, udp_payload, LinkConfig, Sim, TestNetwork};
use privnet_core::{Decapsulated, Encapsulated, PeerId};

struct Pair {
    net: TestNetwork,
    sim: Sim,
    to1: PeerId,
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
            let net = TestNetwork::new(2, 201);
            let mut sim = net.sim(1, LinkConfig::default());
            sim.run_for(Duration::from_millis(50));
            let to1 = sim.nodes[0].node.peer_by_key(&net.public(1)).expect("peer");
            Pair {
                net,
                sim,
                to1,
                serial: 0,
                out: vec![0u8; 70_000],
            }
        });
        f(pair);
    });
}

/// Packet `k` of this input, sealed on first use.
fn packet(pair: &mut Pair, sealed: &mut [Option<Vec<u8>>; 64], k: usize) -> Vec<u8> {
    if let Some(p) = &sealed[k] {
        return p.clone();
    }
    pair.serial += 1;
    let inner = ipv4_udp(
        pair.net.overlay[0],
        pair.net.overlay[1],
        &pair.serial.to_le_bytes(),
    );
    let now = pair.sim.now;
    let node = &mut pair.sim.nodes[0].node;
    let bytes = match node.encapsulate_to(pair.to1, &inner, &mut pair.out, now) {
        Ok(Encapsulated::Send(t)) => pair.out[..t.len].to_vec(),
        other => panic!("sealing on an established session: {other:?}"),
    };
    sealed[k] = Some(bytes.clone());
    bytes
}

/// Deliver to node 1 now; its answers (keepalives) are discarded so that nothing accumulates.
fn deliver(pair: &mut Pair, bytes: &[u8]) -> Result<Decapsulated, privnet_core::DropReason> {
    let now = pair.sim.now;
    let node = &mut pair.sim.nodes[1].node;
    let r = node.decapsulate(pair.net.underlay[0], bytes, &mut pair.out, now);
    if let Ok(Decapsulated::Packet { peer, len }) = r {
        pair.sim.nodes[1]
            .inbox
            .push((peer, pair.out[..len].to_vec()));
    }
    let node = &mut pair.sim.nodes[1].node;
    while node.poll_transmit(&mut pair.out, now).is_some() {}
    r.map_err(|e| e.reason())
}

fuzz_target!(|data: &[u8]| {
    with_pair(|pair| {
        let mut sealed: [Option<Vec<u8>>; 64] = std::array::from_fn(|_| None);
        let mut delivered = HashSet::new();
        let mut i = 0;
        while i + 2 <= data.len() {
            let (op, arg) = (data[i], data[i + 1]);
            i += 2;
            let k = usize::from(arg) % 64;
            let before = pair.sim.nodes[1].node.stats().total_drops();
            let r = match op % 3 {
                0 => {
                    let pkt = packet(pair, &mut sealed, k);
                    deliver(pair, &pkt)
                }
                1 => {
                    let mut m = packet(pair, &mut sealed, k);
                    let pos = usize::from(data.get(i).copied().unwrap_or(0)) % m.len();
                    m[pos] ^= data.get(i + 1).copied().unwrap_or(1) | 1;
                    i += 2;
                    let r = deliver(pair, &m);
                    assert!(
                        !matches!(r, Ok(Decapsulated::Packet { .. })),
                        "mutation accepted"
                    );
                    r
                }
                _ => {
                    let n = usize::from(arg).min(data.len() - i);
                    let r = deliver(pair, &data[i..i + n]);
                    i += n;
                    r
                }
            };
            let node = &pair.sim.nodes[1].node;
            assert_eq!(
                node.stats().total_drops() - before,
                u64::from(r.is_err()),
                "{r:?} counted wrongly"
            );
            if let Ok(Decapsulated::Packet { .. }) = r {
                let inbox = &pair.sim.nodes[1].inbox;
                let last = udp_payload(&inbox[inbox.len() - 1].1).to_vec();
                assert!(delivered.insert(last), "delivered twice");
            }
            node.check_invariants();
        }
        // Nothing an input makes outlives it: the inbox, the transmits, the events.
        let now = pair.sim.now;
        for n in &mut pair.sim.nodes {
            n.inbox.clear();
            while n.node.poll_transmit(&mut pair.out, now).is_some() {}
            while n.node.poll_event().is_some() {}
        }
    });
});
