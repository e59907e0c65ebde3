//! Handshake exhaustion by ex-members (issue 13, item 3): an attacker that holds the network PSK
//! (any past member) floods a node from 1,000 IPv6 /64 sources with initiations that pass mac1 and,
//! from every source it can receive at, carry a valid mac2 from the cookies it earned. Meanwhile
//! the node's three peers keep talking, rekey, and one of them restarts.
//!
//! What must hold, over 60 s of virtual time: every established session survives its rekeys, the
//! peer that restarted reconnects, and the node's Diffie-Hellman work outside the priority lane
//! stays within its budget — although the limiter table overflows and the node is under load.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use privnet_core::crypto;
use privnet_core::testing::{ipv4_udp, LinkConfig, Sim, TestNetwork};
use privnet_core::wire::{INITIATION_MIN_LEN, TYPE_COOKIE_REPLY};
use privnet_core::DropReason;

const SOURCES: u32 = 1_000;
const FLOOD: Duration = Duration::from_secs(60);
/// Messages per second from all sources together (20 per source: the per-source limit).
const RATE: u32 = 20 * SOURCES;

fn source(i: u32) -> SocketAddr {
    let a = Ipv6Addr::new(0x2001, 0xdb8, (i >> 16) as u16, i as u16, 0, 0, 0, 1);
    SocketAddr::new(IpAddr::V6(a), 4000)
}

fn established(sim: &Sim, a: usize, b: usize, net: &TestNetwork) -> bool {
    let p = sim.nodes[a].node.peer_by_key(&net.public(b)).unwrap();
    sim.nodes[a].node.is_established(p)
}

/// An initiation-shaped message with a valid mac1 (the attacker has the PSK) and, when it holds a
/// cookie for this source, a valid mac2. Its Noise part is garbage: it costs the target one
/// Diffie-Hellman before it fails.
struct Attacker {
    mac1_key: [u8; 32],
    cookie_key: [u8; 32],
    cookies: HashMap<u32, [u8; 16]>,
    last_mac1: HashMap<u32, [u8; 16]>,
    counter: u64,
}

impl Attacker {
    fn message(&mut self, src: u32) -> Vec<u8> {
        self.counter += 1;
        let mut m = vec![0u8; INITIATION_MIN_LEN];
        m[..4].copy_from_slice(&[
            1,
            1,
            privnet_core::crypto::CipherSuite::default().wire_id(),
            0,
        ]);
        m[4..8].copy_from_slice(&src.to_le_bytes()); // sender index = source number
        for (i, b) in m[8..INITIATION_MIN_LEN - 32].iter_mut().enumerate() {
            *b = (self.counter as u8).wrapping_mul(31).wrapping_add(i as u8);
        }
        let len = m.len();
        let mac1 = crypto::mac16(&self.mac1_key, &m[..len - 32]);
        m[len - 32..len - 16].copy_from_slice(&mac1);
        if let Some(c) = self.cookies.get(&src) {
            let mac2 = crypto::mac16(c, &m[..len - 16]);
            m[len - 16..].copy_from_slice(&mac2);
        }
        self.last_mac1.insert(src, mac1);
        m
    }

    /// Open the cookie replies the target sent to our sources.
    fn learn(&mut self, sim: &mut Sim) {
        let Some(cap) = sim.capture.as_mut() else {
            return;
        };
        for d in cap.drain(..) {
            if d.bytes.first() != Some(&TYPE_COOKIE_REPLY) || d.bytes.len() != 64 {
                continue;
            }
            let src = u32::from_le_bytes(d.bytes[4..8].try_into().unwrap());
            let Some(mac1) = self.last_mac1.get(&src) else {
                continue;
            };
            if let Some(c) =
                crypto::open_cookie(&self.cookie_key, &d.bytes[8..32], &d.bytes[32..], mac1)
            {
                self.cookies.insert(src, c);
            }
        }
    }
}

#[test]
fn known_peers_survive_a_flood_of_ex_member_handshakes_within_the_work_budget() {
    let net = TestNetwork::new(4, 80);
    let mut sim = Sim::new(80, LinkConfig::default());
    for i in 0..4 {
        let mut cfg = net.config(i, 80);
        if i == 0 {
            // A small limiter table, so that the flood overflows it.
            cfg.limiter_max_sources = 512;
        }
        let node = net.node(i, cfg, sim.now, net.unix_start);
        sim.add_node(node, net.underlay[i]);
    }
    let all_up = |s: &Sim| (1..4).all(|k| established(s, 0, k, &net) && established(s, k, 0, &net));
    sim.run_until_cond(Duration::from_secs(12), all_up)
        .expect("mesh");
    // Sessions rekey at 120 s: let them age so that the rekeys fall inside the flood.
    let mut seq = 0u64;
    let mut ping = |sim: &mut Sim| {
        for k in 1..4 {
            seq += 1;
            let _ = sim.send_packet(
                0,
                &ipv4_udp(net.overlay[0], net.overlay[k], &seq.to_le_bytes()),
            );
            let _ = sim.send_packet(
                k,
                &ipv4_udp(net.overlay[k], net.overlay[0], &seq.to_le_bytes()),
            );
        }
    };
    for _ in 0..90 {
        ping(&mut sim);
        sim.run_for(Duration::from_secs(1));
    }
    let sessions_before: Vec<_> = (1..4)
        .map(|k| {
            let p = sim.nodes[0].node.peer_by_key(&net.public(k)).unwrap();
            sim.nodes[0].node.current_session(p).unwrap().local_index
        })
        .collect();
    let work_before = {
        let s = sim.nodes[0].node.stats();
        (s.handshake_work, s.handshake_work_priority)
    };

    let mut attacker = Attacker {
        mac1_key: crypto::mac1_key(&net.psk, &net.public(0)),
        cookie_key: crypto::cookie_key(&net.psk, &net.public(0)),
        cookies: HashMap::new(),
        last_mac1: HashMap::new(),
        counter: 0,
    };
    sim.capture = Some(Vec::new());
    // A relentless flood: a batch every millisecond, so that the limiter table never has room for
    // long after its once-a-second garbage collection.
    let step = Duration::from_millis(1);
    let per_step = RATE / 1000;
    let start = sim.now;
    let mut next_src = 0u32;
    let mut restarted_at = None;
    let mut reconnected_after = None;
    let mut delivered_during = 0usize;
    let inbox_before: Vec<usize> = (0..4).map(|i| sim.nodes[i].inbox.len()).collect();
    let mut tick = 0u64;
    while sim.now - start < FLOOD {
        for _ in 0..per_step {
            let m = attacker.message(next_src);
            sim.inject(source(next_src), 0, m);
            next_src = (next_src + 1) % SOURCES;
        }
        sim.run_for(step);
        attacker.learn(&mut sim);
        tick += 1;
        // (half a second off the node's once-a-second limiter collection, which empties the table
        // for a moment: the deterministic clock would otherwise line every rekey up with it)
        if tick % 1000 == 500 {
            ping(&mut sim);
        }
        // Peer 2 restarts 20 s into the flood (same key, same address, fresh state).
        if restarted_at.is_none() && sim.now - start >= Duration::from_secs(20) {
            let fresh = net.node(
                2,
                net.config(2, 81),
                sim.now,
                net.unix_start + (sim.now - sim.start),
            );
            sim.replace_node(2, fresh);
            restarted_at = Some(sim.now);
        }
        if let (Some(t), None) = (restarted_at, reconnected_after) {
            if established(&sim, 2, 0, &net) && established(&sim, 0, 2, &net) {
                reconnected_after = Some(sim.now - t);
            }
        }
    }
    // Peers 1 and 3 (peer 2 restarted, which resets its inbox): one packet each way per second.
    for i in [1, 3] {
        delivered_during += sim.nodes[i].inbox.len() - inbox_before[i];
    }
    let s = sim.nodes[0].node.stats();
    let work = s.handshake_work - work_before.0;
    let priority = s.handshake_work_priority - work_before.1;
    let budget = u64::from(
        privnet_core::NodeConfig::new(
            net.keys[0].clone(),
            net.psk,
            net.network_id,
            net.verifier.clone(),
        )
        .handshake_budget_per_sec,
    );
    eprintln!(
        "flood: {} messages, {} cookies earned, DH work {work} ({priority} priority), budget {} over {:?}; \
         drops: cookie_required {}, rate_limited {}, limiter_full {}, handshake_budget {}, handshake_failed {}",
        attacker.counter,
        attacker.cookies.len(),
        budget * FLOOD.as_secs(),
        FLOOD,
        s.dropped(DropReason::CookieRequired),
        s.dropped(DropReason::RateLimited),
        s.dropped(DropReason::LimiterFull),
        s.dropped(DropReason::HandshakeBudget),
        s.dropped(DropReason::HandshakeFailed),
    );
    // The attacks really happened: the table overflowed, cookies were earned, the budget bit.
    assert!(s.dropped(DropReason::LimiterFull) > 0);
    assert!(
        attacker.cookies.len() > 100,
        "{} cookies",
        attacker.cookies.len()
    );
    assert!(s.dropped(DropReason::HandshakeBudget) > 0);
    // DH work outside the priority lane stayed within the budget (plus its one-second burst).
    assert!(
        work - priority <= budget * (FLOOD.as_secs() + 1),
        "DH work {} over the budget",
        work - priority
    );
    // Every session survived its rekeys (new sessions, still established), the restarted peer is
    // back, and traffic kept flowing.
    for (k, before) in (1..4).zip(&sessions_before) {
        assert!(
            established(&sim, 0, k, &net) && established(&sim, k, 0, &net),
            "peer {k}"
        );
        if k != 2 {
            let p = sim.nodes[0].node.peer_by_key(&net.public(k)).unwrap();
            let now = sim.nodes[0].node.current_session(p).unwrap().local_index;
            assert_ne!(now, *before, "peer {k} did not rekey during the flood");
        }
    }
    let took = reconnected_after.expect("the restarted peer never reconnected");
    assert!(took <= Duration::from_secs(6), "reconnect took {took:?}");
    let sent = 2 * FLOOD.as_secs() as usize;
    assert!(
        delivered_during * 100 >= sent * 95,
        "only {delivered_during} of {sent} packets delivered during the flood"
    );
}
