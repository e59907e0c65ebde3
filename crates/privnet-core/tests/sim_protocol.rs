//! Deterministic simulation tests of the protocol: handshakes under loss, delivery under loss,
//! reordering and duplication, rekey, restarts, simultaneous initiation, network isolation.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::time::Duration;

use privnet_core::config::{REJECT_AFTER_MESSAGES, REKEY_AFTER_MESSAGES, REKEY_ATTEMPT_TIME};
use privnet_core::crypto::CipherSuite;
use privnet_core::testing::{ipv4_udp, udp_payload, LinkConfig, Sim, TestNetwork};
use privnet_core::{DropReason, Encapsulated};

fn established(sim: &Sim, a: usize, b: usize, net: &TestNetwork) -> bool {
    let pa = sim.nodes[a].node.peer_by_key(&net.public(b)).unwrap();
    let pb = sim.nodes[b].node.peer_by_key(&net.public(a)).unwrap();
    sim.nodes[a].node.is_established(pa) && sim.nodes[b].node.is_established(pb)
}

fn packet(net: &TestNetwork, from: usize, to: usize, seq: u64) -> Vec<u8> {
    ipv4_udp(net.overlay[from], net.overlay[to], &seq.to_le_bytes())
}

fn seqs(sim: &Sim, node: usize) -> Vec<u64> {
    sim.nodes[node]
        .inbox
        .iter()
        .map(|(_, p)| u64::from_le_bytes(udp_payload(p).try_into().unwrap()))
        .collect()
}

#[test]
fn handshake_and_exchange() {
    let net = TestNetwork::new(2, 1);
    let mut sim = net.sim(1, LinkConfig::default());
    let took = sim
        .run_until_cond(Duration::from_secs(5), |s| established(s, 0, 1, &net))
        .expect("handshake");
    assert!(took <= Duration::from_millis(30), "took {took:?}");
    for i in 0..10 {
        assert!(matches!(
            sim.send_packet(0, &packet(&net, 0, 1, i)),
            Ok(Encapsulated::Send(_))
        ));
        assert!(matches!(
            sim.send_packet(1, &packet(&net, 1, 0, i)),
            Ok(Encapsulated::Send(_))
        ));
    }
    sim.run_for(Duration::from_millis(50));
    assert_eq!(seqs(&sim, 1), (0..10).collect::<Vec<_>>());
    assert_eq!(seqs(&sim, 0), (0..10).collect::<Vec<_>>());
    // Simultaneous eager initiation converged on one session.
    let pa = sim.nodes[0].node.peer_by_key(&net.public(1)).unwrap();
    let pb = sim.nodes[1].node.peer_by_key(&net.public(0)).unwrap();
    let a = sim.nodes[0].node.current_session(pa).unwrap();
    let b = sim.nodes[1].node.current_session(pb).unwrap();
    assert_eq!(
        (a.local_index, a.remote_index),
        (b.remote_index, b.local_index)
    );
    assert_ne!(a.is_initiator, b.is_initiator);
    for n in &sim.nodes {
        assert_eq!(n.node.stats().dropped(DropReason::BadTag), 0);
        assert_eq!(n.node.stats().dropped(DropReason::SpoofedSource), 0);
    }
}

#[test]
fn packets_sent_before_handshake_are_queued_then_delivered() {
    let net = TestNetwork::new(2, 2);
    let mut sim = net.sim(2, LinkConfig::default());
    for i in 0..5 {
        assert_eq!(
            sim.send_packet(0, &packet(&net, 0, 1, i)),
            Ok(Encapsulated::Queued)
        );
    }
    sim.run_for(Duration::from_millis(100));
    assert_eq!(seqs(&sim, 1), (0..5).collect::<Vec<_>>());
}

#[test]
fn handshake_completes_under_loss() {
    for loss_pct in [0u32, 5, 10, 20, 30] {
        for seed in 0..20u64 {
            let net = TestNetwork::new(2, 3);
            let link = LinkConfig {
                loss: f64::from(loss_pct) / 100.0,
                ..LinkConfig::default()
            };
            let mut sim = net.sim(seed * 100 + u64::from(loss_pct), link);
            // An application sending one packet each way per second keeps asking for a session
            // (a responder confirms its session on the first data packet, as in WireGuard).
            let mut t = None;
            for i in 0..90u64 {
                if established(&sim, 0, 1, &net) {
                    t = Some(i);
                    break;
                }
                let _ = sim.send_packet(0, &packet(&net, 0, 1, i));
                let _ = sim.send_packet(1, &packet(&net, 1, 0, i));
                sim.run_for(Duration::from_secs(1));
            }
            assert!(
                t.is_some(),
                "no handshake at {loss_pct}% loss, seed {seed}: {:?} {:?}",
                sim.nodes[0].node.stats(),
                sim.nodes[1].node.stats()
            );
        }
    }
}

#[test]
fn lossy_reordering_duplicating_link_delivers_at_most_once() {
    let net = TestNetwork::new(2, 4);
    let mut sim = net.sim(4, LinkConfig::default());
    sim.run_until_cond(Duration::from_secs(5), |s| established(s, 0, 1, &net))
        .expect("handshake");
    // 10 % loss, 5 % duplication, jitter 40 ms at one packet per 10 µs: reordering up to ~4000 deep.
    let link = LinkConfig {
        latency: Duration::from_millis(5),
        jitter: Duration::from_millis(40),
        loss: 0.10,
        duplicate: 0.05,
        mtu: 1472,
    };
    sim.set_link(0, 1, link);
    let n = 100_000u64;
    for i in 0..n {
        sim.send_packet(0, &packet(&net, 0, 1, i)).unwrap();
        sim.run_for(Duration::from_micros(10));
    }
    sim.run_for(Duration::from_millis(200));
    let got = seqs(&sim, 1);
    let unique: HashSet<u64> = got.iter().copied().collect();
    assert_eq!(unique.len(), got.len(), "a packet was delivered twice");
    let st = sim.nodes[1].node.stats();
    assert_eq!(
        st.dropped(DropReason::TooOld),
        0,
        "genuine in-window packet rejected"
    );
    assert_eq!(st.dropped(DropReason::BadTag), 0);
    // Everything that arrived at least once was delivered exactly once: delivered = n - lost.
    let lost_data = n - got.len() as u64;
    let expected_lost = n as f64 * 0.10;
    assert!(
        (lost_data as f64 - expected_lost).abs() < expected_lost * 0.1,
        "lost {lost_data}, expected about {expected_lost}"
    );
    assert!(
        st.dropped(DropReason::Duplicate) > 3000,
        "duplicates were dropped"
    );
    // Measure the reordering depth actually produced.
    let mut max_depth = 0u64;
    let mut highest = 0u64;
    for s in &got {
        if *s < highest {
            max_depth = max_depth.max(highest - s);
        }
        highest = highest.max(*s);
    }
    assert!(max_depth > 3000, "reordering depth only {max_depth}");
}

#[test]
fn rekey_under_continuous_traffic_loses_nothing() {
    let net = TestNetwork::new(2, 5);
    let mut sim = net.sim(5, LinkConfig::default());
    sim.run_until_cond(Duration::from_secs(5), |s| established(s, 0, 1, &net))
        .expect("handshake");
    let mut sent = [0u64; 2];
    // 10 minutes of traffic both ways, a packet every 20 ms each way: ~5 rekeys.
    let steps = 30_000u64;
    let mut last_rx = [0usize; 2];
    for i in 0..steps {
        for (from, to) in [(0usize, 1usize), (1, 0)] {
            sim.send_packet(from, &packet(&net, from, to, i)).unwrap();
            sent[from] += 1;
        }
        sim.run_for(Duration::from_millis(20));
        if i % 500 == 499 {
            // No direction goes deaf for 10 s.
            for (node, last) in last_rx.iter_mut().enumerate() {
                let now = sim.nodes[node].inbox.len();
                assert!(now > *last, "node {node} deaf around step {i}");
                *last = now;
            }
        }
    }
    sim.run_for(Duration::from_millis(100));
    assert_eq!(sim.nodes[1].inbox.len() as u64, sent[0]);
    assert_eq!(sim.nodes[0].inbox.len() as u64, sent[1]);
    let hs: u64 = sim
        .nodes
        .iter()
        .map(|n| n.node.stats().handshakes_completed)
        .sum();
    assert!(hs >= 8, "expected several rekeys, saw {hs} handshakes");
    for n in &sim.nodes {
        assert_eq!(n.node.stats().dropped(DropReason::SessionExpired), 0);
        assert_eq!(n.node.stats().dropped(DropReason::BadTag), 0);
    }
}

#[test]
fn restarted_peer_reachable_within_6s() {
    let net = TestNetwork::new(2, 6);
    let mut sim = net.sim(6, LinkConfig::default());
    sim.run_until_cond(Duration::from_secs(5), |s| established(s, 0, 1, &net))
        .expect("handshake");
    sim.run_for(Duration::from_secs(30));
    // Node 1 crashes and comes back with fresh state (new session keys, same identity).
    sim.set_up(1, false);
    sim.run_for(Duration::from_secs(2));
    let unix = net.unix_start + (sim.now - sim.start);
    let fresh = net.node(1, net.config(1, 777), sim.now, unix);
    sim.replace_node(1, fresh);
    let restart = sim.now;
    // Node 0 keeps sending to node 1 every 100 ms.
    let mut i = 0;
    loop {
        sim.send_packet(0, &packet(&net, 0, 1, i)).unwrap();
        sim.run_for(Duration::from_millis(100));
        i += 1;
        if !sim.nodes[1].inbox.is_empty() {
            break;
        }
        assert!(
            sim.now - restart < Duration::from_secs(6),
            "not reachable within 6 s"
        );
    }
}

#[test]
fn silent_restart_recovers_through_new_handshake_timer() {
    // Node 1 restarts without eager handshakes (it has no endpoints): node 0 only notices through
    // its NewHandshake timer (data sent, nothing received for 15 s) — WireGuard's bound.
    let net = TestNetwork::new(2, 7);
    let mut sim = net.sim(7, LinkConfig::default());
    sim.run_until_cond(Duration::from_secs(5), |s| established(s, 0, 1, &net))
        .expect("handshake");
    let unix = net.unix_start + (sim.now - sim.start);
    let mut cfg = net.config(1, 99);
    cfg.eager_handshakes = false;
    let fresh = net.node(1, cfg, sim.now, unix);
    sim.replace_node(1, fresh);
    let restart = sim.now;
    let mut i = 0;
    while sim.nodes[1].inbox.is_empty() {
        sim.send_packet(0, &packet(&net, 0, 1, i)).unwrap();
        sim.run_for(Duration::from_millis(100));
        i += 1;
        assert!(sim.now - restart < Duration::from_secs(20));
    }
}

#[test]
fn member_of_another_network_cannot_handshake() {
    let a = TestNetwork::new(2, 8);
    let mut sim = a.sim(8, LinkConfig::default());
    // Network B's member knows A-0's key and endpoint and even uses A's addresses and network id,
    // but not A's PSK.
    let b = TestNetwork::new(1, 9);
    let mut cfg = b.config(0, 1);
    cfg.network_id = a.network_id;
    let now = sim.now;
    let mut intruder = privnet_core::Node::new(cfg, now, a.unix_start).unwrap();
    intruder
        .add_peer(
            privnet_core::PeerConfig::new(a.public(0))
                .endpoint(a.underlay[0])
                .allowed_ip("10.77.8.0/24".parse().unwrap()),
            now,
        )
        .unwrap();
    let bi = sim.add_node(intruder, b.underlay[0]);
    for i in 0..20 {
        let _ = sim.send_packet(bi, &ipv4_udp(b.overlay[0], a.overlay[0], &[i]));
        sim.run_for(Duration::from_secs(5));
    }
    assert!(sim.nodes[0].inbox.is_empty());
    let pid = sim.nodes[bi].node.peer_by_key(&a.public(0)).unwrap();
    assert!(!sim.nodes[bi].node.is_established(pid));
    let st = sim.nodes[0].node.stats();
    assert!(st.dropped(DropReason::BadMac1) >= 10, "{st:?}");
    assert_eq!(st.handshakes_completed, 1, "only the A-A handshake");
}

#[test]
fn handshake_gives_up_after_90s_and_frees_queue() {
    let net = TestNetwork::new(2, 10);
    let mut sim = net.sim(10, LinkConfig::default());
    sim.set_up(1, false);
    for i in 0..5 {
        assert_eq!(
            sim.send_packet(0, &packet(&net, 0, 1, i)),
            Ok(Encapsulated::Queued)
        );
    }
    sim.run_for(REKEY_ATTEMPT_TIME + Duration::from_secs(10));
    let st = sim.nodes[0].node.stats();
    assert_eq!(st.dropped(DropReason::HandshakeTimeout), 5);
    // 90 s / 5 s per attempt: about 18 initiations plus the first.
    assert!(
        (17..=20).contains(&st.handshakes_initiated),
        "{} initiations",
        st.handshakes_initiated
    );
    // Nothing more is sent once it gave up.
    let before = st.handshakes_initiated;
    sim.run_for(Duration::from_secs(60));
    assert_eq!(sim.nodes[0].node.stats().handshakes_initiated, before);
}

#[test]
fn counter_limits_trigger_rekey_and_refusal() {
    let net = TestNetwork::new(2, 11);
    let mut sim = net.sim(11, LinkConfig::default());
    sim.run_until_cond(Duration::from_secs(5), |s| established(s, 0, 1, &net))
        .expect("handshake");
    sim.run_for(Duration::from_millis(100));
    // Only the initiator of a session rekeys by counter; set its counter to the threshold and the
    // next send starts a handshake.
    let p0 = sim.nodes[0].node.peer_by_key(&net.public(1)).unwrap();
    let sender = if sim.nodes[0].node.current_session(p0).unwrap().is_initiator {
        0
    } else {
        1
    };
    let other = 1 - sender;
    let pid = sim.nodes[sender]
        .node
        .peer_by_key(&net.public(other))
        .unwrap();
    sim.nodes[sender]
        .node
        .set_send_counter_for_test(pid, REKEY_AFTER_MESSAGES);
    let before = sim.nodes[sender].node.stats().handshakes_initiated;
    sim.send_packet(sender, &packet(&net, sender, other, 1))
        .unwrap();
    assert_eq!(
        sim.nodes[sender].node.stats().handshakes_initiated,
        before + 1
    );
    sim.run_for(Duration::from_millis(100));
    // At the reject limit the session is unusable: the packet is queued, a handshake follows.
    sim.nodes[sender]
        .node
        .set_send_counter_for_test(pid, REJECT_AFTER_MESSAGES);
    assert_eq!(
        sim.send_packet(sender, &packet(&net, sender, other, 2)),
        Ok(Encapsulated::Queued)
    );
    sim.run_for(Duration::from_millis(100));
    assert!(seqs(&sim, other).contains(&2));
}

#[test]
fn idle_session_expires_and_reestablishes() {
    let net = TestNetwork::new(2, 12);
    let mut sim = net.sim(12, LinkConfig::default());
    sim.run_until_cond(Duration::from_secs(5), |s| established(s, 0, 1, &net))
        .expect("handshake");
    sim.run_for(Duration::from_secs(200));
    // After REJECT_AFTER_TIME the old session cannot send; a new handshake carries the packet.
    let r = sim.send_packet(0, &packet(&net, 0, 1, 42));
    assert_eq!(r, Ok(Encapsulated::Queued));
    sim.run_for(Duration::from_millis(100));
    assert_eq!(seqs(&sim, 1), vec![42]);
    // After 540 s idle, keys are erased on both sides.
    sim.run_for(Duration::from_secs(600));
    assert!(!established(&sim, 0, 1, &net));
}

#[test]
fn spoofed_inner_source_is_dropped() {
    let net = TestNetwork::new(3, 13);
    let mut sim = net.sim(13, LinkConfig::default());
    sim.run_for(Duration::from_secs(1));
    // Member 1 sends to member 0 claiming member 2's address, and an unassigned one.
    sim.send_packet(1, &ipv4_udp(net.overlay[2], net.overlay[0], b"x"))
        .unwrap();
    sim.send_packet(
        1,
        &ipv4_udp("10.77.13.200".parse().unwrap(), net.overlay[0], b"y"),
    )
    .unwrap();
    sim.send_packet(1, &ipv4_udp(net.overlay[1], net.overlay[0], b"z"))
        .unwrap();
    sim.run_for(Duration::from_millis(50));
    assert_eq!(sim.nodes[0].inbox.len(), 1);
    assert_eq!(udp_payload(&sim.nodes[0].inbox[0].1), b"z");
    assert_eq!(
        sim.nodes[0].node.stats().dropped(DropReason::SpoofedSource),
        2
    );
}

#[test]
fn simultaneous_initiation_converges_across_seeds_and_latencies() {
    for seed in 0..30u64 {
        let net = TestNetwork::new(2, 14);
        let link = LinkConfig {
            latency: Duration::from_millis(1 + seed % 7),
            jitter: Duration::from_millis(seed % 5),
            ..LinkConfig::default()
        };
        let mut sim = net.sim(seed, link);
        sim.run_for(Duration::from_secs(2));
        for i in 0..3 {
            sim.send_packet(0, &packet(&net, 0, 1, i)).unwrap();
            sim.send_packet(1, &packet(&net, 1, 0, i)).unwrap();
        }
        sim.run_for(Duration::from_secs(1));
        let pa = sim.nodes[0].node.peer_by_key(&net.public(1)).unwrap();
        let pb = sim.nodes[1].node.peer_by_key(&net.public(0)).unwrap();
        let a = sim.nodes[0].node.current_session(pa).unwrap();
        let b = sim.nodes[1].node.current_session(pb).unwrap();
        assert_eq!(
            (a.local_index, a.remote_index),
            (b.remote_index, b.local_index),
            "seed {seed}"
        );
        assert_eq!(seqs(&sim, 0).len(), 3);
        assert_eq!(seqs(&sim, 1).len(), 3);
    }
}

#[test]
fn runs_are_deterministic() {
    let run = || {
        let net = TestNetwork::new(3, 15);
        let link = LinkConfig {
            loss: 0.2,
            jitter: Duration::from_millis(3),
            ..LinkConfig::default()
        };
        let mut sim = net.sim(15, link);
        sim.capture = Some(Vec::new());
        for i in 0..200 {
            let _ = sim.send_packet(0, &packet(&net, 0, 1 + (i as usize % 2), i));
            sim.run_for(Duration::from_millis(10));
        }
        sim.capture.take().unwrap()
    };
    assert_eq!(run(), run());
}

#[test]
fn persistent_keepalive_keeps_an_idle_session_up_indefinitely() {
    use privnet_core::{Node, PeerConfig};
    let net = TestNetwork::new(2, 16);
    let mut sim = Sim::new(16, LinkConfig::default());
    let now = sim.now;
    for i in 0..2 {
        let j = 1 - i;
        let mut node = Node::new(net.config(i, 1), now, net.unix_start).unwrap();
        node.add_peer(
            PeerConfig::new(net.public(j))
                .endpoint(net.underlay[j])
                .allowed_ip(ipnetwork::IpNetwork::new(net.overlay[j], 32).unwrap())
                .persistent_keepalive(Duration::from_secs(25)),
            now,
        )
        .unwrap();
        sim.add_node(node, net.underlay[i]);
    }
    // 20 minutes without any data: keepalives and rekeys keep a usable session at all times.
    for minute in 1..=20 {
        sim.run_for(Duration::from_secs(60));
        let p0 = sim.nodes[0].node.peer_by_key(&net.public(1)).unwrap();
        assert!(sim.nodes[0].node.is_established(p0), "minute {minute}");
    }
    assert!(sim.nodes[0].node.stats().keepalives_sent >= 40);
    assert!(sim.nodes[0].node.stats().handshakes_completed >= 8);
}

/// A two-member network whose members use the given cipher suites.
fn sim_with_suites(net: &TestNetwork, seed: u64, suites: [CipherSuite; 2]) -> Sim {
    let mut sim = Sim::new(seed, LinkConfig::default());
    let now = sim.now;
    for (i, suite) in suites.into_iter().enumerate() {
        let mut cfg = net.config(i, seed);
        cfg.cipher = suite;
        let node = net.node(i, cfg, now, net.unix_start);
        sim.add_node(node, net.underlay[i]);
    }
    sim
}

#[test]
fn both_cipher_suites_carry_traffic() {
    for (k, suite) in CipherSuite::ALL.into_iter().enumerate() {
        let net = TestNetwork::new(2, 40 + k as u8);
        let mut sim = sim_with_suites(&net, 40 + k as u64, [suite; 2]);
        sim.run_until_cond(Duration::from_secs(5), |s| established(s, 0, 1, &net))
            .unwrap_or_else(|| panic!("{suite}: no handshake"));
        for i in 0..10 {
            assert!(matches!(
                sim.send_packet(0, &packet(&net, 0, 1, i)),
                Ok(Encapsulated::Send(_))
            ));
        }
        sim.run_for(Duration::from_millis(50));
        assert_eq!(seqs(&sim, 1), (0..10).collect::<Vec<_>>(), "{suite}");
        for n in &sim.nodes {
            assert_eq!(n.node.stats().dropped(DropReason::CipherMismatch), 0);
            assert_eq!(n.node.stats().dropped(DropReason::HandshakeFailed), 0);
        }
    }
}

#[test]
fn members_with_different_cipher_suites_never_connect_and_say_why() {
    let net = TestNetwork::new(2, 42);
    let mut sim = sim_with_suites(
        &net,
        42,
        [CipherSuite::Aes256Gcm, CipherSuite::ChaCha20Poly1305],
    );
    for i in 0..3 {
        let _ = sim.send_packet(0, &packet(&net, 0, 1, i));
    }
    sim.run_for(Duration::from_secs(20));
    assert!(!established(&sim, 0, 1, &net));
    assert!(!established(&sim, 1, 0, &net));
    assert!(seqs(&sim, 1).is_empty());
    // Both sides initiated (eagerly, then retransmitting every 5 s); each counted the other's
    // initiations as a cipher mismatch, not as an anonymous handshake failure.
    for n in &sim.nodes {
        let mismatches = n.node.stats().dropped(DropReason::CipherMismatch);
        assert!(mismatches >= 2, "{mismatches}: {:?}", n.node.stats());
        assert_eq!(n.node.stats().dropped(DropReason::HandshakeFailed), 0);
    }
}

/// A session stops sending `REJECT_AFTER_TIME − STOP_SENDING_AFTER_TIME` before it stops
/// receiving: the responder's copy of a session is older by a round trip, so a packet the initiator
/// sealed in the last moments of its session used to arrive expired (`session_expired`).
#[test]
fn a_session_stops_sending_before_its_peer_stops_receiving() {
    use privnet_core::config::{REJECT_AFTER_TIME, STOP_SENDING_AFTER_TIME};
    use privnet_core::testing::Verdict;
    let net = TestNetwork::new(2, 40);
    let link = LinkConfig {
        latency: Duration::from_millis(100),
        ..LinkConfig::default()
    };
    let mut sim = Sim::new(40, link);
    for i in 0..2 {
        let mut cfg = net.config(i, 40);
        cfg.eager_handshakes = i == 0; // node 0 initiates the only session
        let node = net.node(i, cfg, sim.now, net.unix_start);
        sim.add_node(node, net.underlay[i]);
    }
    // (node 0's first initiation left before node 1 existed: the retry makes the session)
    sim.run_until_cond(Duration::from_secs(15), |s| established(s, 0, 1, &net))
        .expect("handshake");
    let pa = sim.nodes[0].node.peer_by_key(&net.public(1)).unwrap();
    assert!(sim.nodes[0].node.current_session(pa).unwrap().is_initiator);
    let started = sim.now;
    // From now on no handshake gets through: the session must live out its full life.
    sim.tamper = Some(Box::new(|d| {
        if matches!(d.bytes.first(), Some(1..=3)) {
            Verdict::Drop
        } else {
            Verdict::Deliver
        }
    }));
    let mut queued_after_limit = 0;
    for seq in 0u64.. {
        let age = sim.now - started;
        if age > REJECT_AFTER_TIME + Duration::from_secs(2) {
            break;
        }
        if let Ok(Encapsulated::Queued) = sim.send_packet(0, &packet(&net, 0, 1, seq)) {
            assert!(
                age + Duration::from_millis(150) >= STOP_SENDING_AFTER_TIME,
                "queued at {age:?}"
            );
            queued_after_limit += 1;
        }
        sim.run_for(Duration::from_millis(100));
    }
    assert!(queued_after_limit > 0);
    assert_eq!(
        sim.nodes[1]
            .node
            .stats()
            .dropped(DropReason::SessionExpired),
        0,
        "a packet sealed before the sending limit arrived after the receiving limit"
    );
    assert!(seqs(&sim, 1).len() > 1700);
}

/// A PSK rotation in its three steps (docs/CONFIG.md): accept the new PSK everywhere, then send
/// with it, then drop the old one. Handshakes keep working at every step, whatever mix of members
/// is at which step, and at the end a holder of only the old PSK (an ex-member) gets no reply.
#[test]
fn psk_rotation_keeps_handshakes_working_and_locks_out_the_old_psk() {
    let net = TestNetwork::new(3, 41);
    let mut sim = net.sim(41, LinkConfig::default());
    sim.run_until_cond(Duration::from_secs(2), |s| {
        (1..3).all(|k| established(s, 0, k, &net))
    })
    .expect("mesh");
    let old = net.psk;
    let new = [0x5a; 32];
    let rekey_all = |sim: &mut Sim| {
        for a in 0..3 {
            for b in 0..3 {
                if a != b {
                    let p = sim.nodes[a].node.peer_by_key(&net.public(b)).unwrap();
                    let now = sim.now;
                    sim.nodes[a].node.initiate_handshake(p, now);
                    sim.flush(a);
                }
            }
        }
        let before: u64 = sim
            .nodes
            .iter()
            .map(|n| n.node.stats().handshakes_completed)
            .sum();
        sim.run_for(Duration::from_secs(1));
        let after: u64 = sim
            .nodes
            .iter()
            .map(|n| n.node.stats().handshakes_completed)
            .sum();
        after - before
    };
    // Step 1, one member at a time: accept the new PSK (still sending with the old).
    for i in 0..3 {
        sim.nodes[i].node.set_psks(old, &[new]);
        assert!(rekey_all(&mut sim) >= 6, "step 1, member {i}");
    }
    // Step 2, one at a time: send with the new PSK, still accepting the old.
    for i in 0..3 {
        sim.nodes[i].node.set_psks(new, &[old]);
        assert!(rekey_all(&mut sim) >= 6, "step 2, member {i}");
    }
    // Step 3: drop the old PSK.
    for i in 0..3 {
        sim.nodes[i].node.set_psks(new, &[]);
    }
    assert!(rekey_all(&mut sim) >= 6, "step 3");
    assert_eq!(
        sim.nodes
            .iter()
            .map(|n| n.node.stats().dropped(DropReason::BadMac1))
            .sum::<u64>(),
        0
    );
    // An ex-member that kept the old PSK (and a valid-looking configuration) is now refused at
    // mac1: no cookie, no DH work.
    let mut ex = net.config(2, 99);
    ex.network_psk = old;
    let ex = net.node(2, ex, sim.now, net.unix_start + (sim.now - sim.start));
    sim.replace_node(2, ex);
    let work = sim.nodes[0].node.stats().handshake_work;
    sim.run_for(Duration::from_secs(6));
    assert!(sim.nodes[0].node.stats().dropped(DropReason::BadMac1) >= 1);
    assert_eq!(sim.nodes[0].node.stats().handshake_work, work);
}
