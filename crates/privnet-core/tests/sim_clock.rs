//! Wall-clock steps and suspends, under the simulator's fake clock (issue 13, item 1).
//!
//! The driver re-anchors each node's wall clock (`Node::set_wall_clock`) whenever it reads the
//! clocks; these tests do it by hand at the moments a driver would, and check what the core then
//! does: a node whose wall clock lagged accepts genuine initiations again at once, a step backwards
//! does not make our initiations look replayed, and a certificate that expired during a step or a
//! suspend is refused at once.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use ipnetwork::IpNetwork;
use privnet_core::credential::{CredentialVerifier, PeerIdentity, StaticKeyVerifier};
use privnet_core::node::DownReason;
use privnet_core::testing::{ipv4_udp, LinkConfig, Sim, TestNetwork};
use privnet_core::{DropReason, Event};

const HOUR: Duration = Duration::from_secs(3600);

fn established(sim: &Sim, a: usize, b: usize, net: &TestNetwork) -> bool {
    let pa = sim.nodes[a].node.peer_by_key(&net.public(b)).unwrap();
    sim.nodes[a].node.is_established(pa)
}

/// Real Unix time at the simulator's `now`.
fn real_unix(sim: &Sim, net: &TestNetwork) -> Duration {
    net.unix_start + (sim.now - sim.start)
}

/// Two members; member `i`'s wall clock starts `offset(i)` away from the real one (positive:
/// ahead). Only node 0 initiates (its first initiation leaves before node 1 exists, so the session
/// comes with its first retransmission, 5 s later).
fn pair(net: &TestNetwork, seed: u64, offset: impl Fn(usize) -> i64) -> Sim {
    let mut sim = Sim::new(seed, LinkConfig::default());
    for i in 0..2 {
        let mut cfg = net.config(i, seed);
        cfg.eager_handshakes = i == 0;
        let o = offset(i);
        let unix = if o >= 0 {
            net.unix_start + Duration::from_secs(o as u64)
        } else {
            net.unix_start - Duration::from_secs(o.unsigned_abs())
        };
        let node = net.node(i, cfg, sim.now, unix);
        sim.add_node(node, net.underlay[i]);
    }
    sim
}

#[test]
fn a_lagging_wall_clock_accepts_genuine_initiations_once_re_anchored() {
    // Node 1 lost an hour (a VM pause, CLOCK_MONOTONIC stopped during a suspend): every initiation
    // of node 0 looks an hour in the future to it.
    let net = TestNetwork::new(2, 50);
    let mut sim = pair(&net, 50, |i| if i == 1 { -3600 } else { 0 });
    sim.run_for(Duration::from_secs(12));
    let refused = sim.nodes[1]
        .node
        .stats()
        .dropped(DropReason::FutureTimestamp);
    assert!(refused >= 2, "{refused} future timestamps");
    assert!(!established(&sim, 0, 1, &net));
    // The driver reads the clocks on its next timer pass: node 1 catches up by +1 h.
    let unix = real_unix(&sim, &net);
    let now = sim.now;
    sim.nodes[1].node.set_wall_clock(now, unix);
    let took = sim
        .run_until_cond(Duration::from_secs(10), |s| established(s, 0, 1, &net))
        .expect("handshake after the re-anchor");
    assert!(took <= Duration::from_millis(5_400), "took {took:?}");
    assert_eq!(
        sim.nodes[1]
            .node
            .stats()
            .dropped(DropReason::FutureTimestamp),
        refused
    );
}

#[test]
fn a_step_backwards_does_not_make_our_initiations_look_replayed() {
    // Node 0 runs 5 minutes ahead (within the skew its peer accepts), then NTP sets it back by an
    // hour's worth of correction... of which 5 min bring it to the right time; here: -1 h.
    let net = TestNetwork::new(2, 51);
    let mut sim = pair(&net, 51, |i| if i == 0 { 300 } else { 0 });
    sim.run_until_cond(Duration::from_secs(7), |s| established(s, 0, 1, &net))
        .expect("handshake");
    let unix = real_unix(&sim, &net) + Duration::from_secs(300) - HOUR;
    let now = sim.now;
    sim.nodes[0].node.set_wall_clock(now, unix);
    // A rekey from node 0 after the step: its timestamp continues from the last one it sent.
    sim.run_for(Duration::from_secs(1));
    let p = sim.nodes[0].node.peer_by_key(&net.public(1)).unwrap();
    let before = sim.nodes[1].node.stats().handshakes_completed;
    let now = sim.now;
    sim.nodes[0].node.initiate_handshake(p, now);
    sim.flush(0);
    sim.run_for(Duration::from_secs(1));
    assert_eq!(
        sim.nodes[1]
            .node
            .stats()
            .dropped(DropReason::ReplayedInitiation),
        0
    );
    assert_eq!(sim.nodes[1].node.stats().handshakes_completed, before + 1);
    // And the traffic goes on.
    let pkt = ipv4_udp(net.overlay[0], net.overlay[1], b"after the step");
    sim.send_packet(0, &pkt).unwrap();
    sim.run_for(Duration::from_millis(50));
    assert!(sim.nodes[1].inbox.iter().any(|(_, p)| p == &pkt));
}

/// Members 0 and 1 of `net` (the others are known to the verifier but not started), where member
/// 1's credential expires `expires_in` after the start.
fn pair_with_expiring_peer(net: &TestNetwork, seed: u64, expires_in: Duration) -> Sim {
    let mut verifier = StaticKeyVerifier::new();
    for i in 0..net.overlay.len() {
        let not_after = if i == 1 {
            (net.unix_start + expires_in).as_secs()
        } else {
            u64::MAX
        };
        verifier.allow(
            net.public(i),
            PeerIdentity {
                name: format!("m{i}"),
                addresses: vec![IpNetwork::new(net.overlay[i], 32).unwrap()],
                groups: vec![],
                not_after,
                fingerprint: [i as u8; 32],
            },
        );
    }
    let verifier: Arc<dyn CredentialVerifier> = Arc::new(verifier);
    let mut sim = Sim::new(seed, LinkConfig::default());
    for i in 0..2 {
        let mut cfg = net.config(i, seed);
        cfg.verifier = verifier.clone();
        cfg.eager_handshakes = i == 0;
        let node = net.node(i, cfg, sim.now, net.unix_start);
        sim.add_node(node, net.underlay[i]);
    }
    sim
}

#[test]
fn a_forward_step_refuses_a_certificate_that_expired_meanwhile_at_once() {
    let net = TestNetwork::new(2, 52);
    let mut sim = pair_with_expiring_peer(&net, 52, Duration::from_secs(1800));
    sim.run_until_cond(Duration::from_secs(7), |s| established(s, 0, 1, &net))
        .expect("handshake");
    // Node 0's wall clock steps forward an hour (it had lagged; NTP corrects it).
    let unix = real_unix(&sim, &net) + HOUR;
    let now = sim.now;
    sim.nodes[0].node.set_wall_clock(now, unix);
    // The expiry that used to lie 30 minutes ahead is past: torn down on the next timer pass.
    sim.run_for(Duration::from_millis(10));
    assert!(!established(&sim, 0, 1, &net));
    let mut down = false;
    while let Some(e) = sim.nodes[0].node.poll_event() {
        if let Event::PeerDown { reason, .. } = e {
            down |= reason == DownReason::CredentialExpired;
        }
    }
    assert!(down, "no expiry teardown");
    // And its handshakes are refused from then on.
    let p = sim.nodes[1].node.peer_by_key(&net.public(0)).unwrap();
    let now = sim.now;
    sim.nodes[1].node.initiate_handshake(p, now);
    sim.flush(1);
    sim.run_for(Duration::from_secs(1));
    assert!(sim.nodes[0].node.stats().dropped(DropReason::BadCredential) >= 1);
    assert!(!established(&sim, 0, 1, &net));
}

#[test]
fn after_a_20_minute_suspend_sessions_are_remade_and_expired_certificates_refused() {
    // Node 0 sleeps 20 minutes. Its driver's clock counts suspended time (CLOCK_BOOTTIME) and it
    // re-anchors the wall clock on waking, so to the core the 20 minutes simply passed: its old
    // sessions are past REJECT_AFTER_TIME and ZERO_KEYS_AFTER, and new handshakes work.
    let net = TestNetwork::new(3, 53);
    let mut sim = pair_with_expiring_peer(&net, 53, Duration::from_secs(600));
    sim.run_until_cond(Duration::from_secs(7), |s| established(s, 0, 1, &net))
        .expect("handshake");
    sim.set_up(0, false);
    sim.run_for(Duration::from_secs(20 * 60));
    sim.set_up(0, true);
    let unix = real_unix(&sim, &net);
    let now = sim.now;
    sim.nodes[0].node.set_wall_clock(now, unix);
    sim.nodes[0].node.handle_timeout(now);
    // Member 1's certificate expired during the suspend: refused at once, not after a rekey.
    assert!(!established(&sim, 0, 1, &net));
    let pkt = ipv4_udp(net.overlay[0], net.overlay[1], b"after the suspend");
    let _ = sim.send_packet(0, &pkt);
    sim.run_for(Duration::from_secs(2));
    assert!(!sim.nodes[1].inbox.iter().any(|(_, p)| p == &pkt));
    assert!(sim.nodes[0].node.stats().dropped(DropReason::BadCredential) >= 1);
    // A member with a valid certificate (the third, added now) connects right away.
    let third = net.node(2, net.config(2, 53), sim.now, real_unix(&sim, &net));
    let i = sim.add_node(third, net.underlay[2]);
    let took = sim
        .run_until_cond(Duration::from_secs(6), |s| established(s, i, 0, &net))
        .expect("handshake after the suspend");
    assert!(took < Duration::from_secs(1), "took {took:?}");
}
