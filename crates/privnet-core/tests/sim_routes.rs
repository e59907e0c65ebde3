//! Route ownership between members (issue 13, item 9): two gateways granted the same subnet, and
//! a configured prefix that the CA granted to somebody else.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use ipnetwork::IpNetwork;
use privnet_core::credential::{CredentialVerifier, PeerIdentity, StaticKeyVerifier};
use privnet_core::testing::{ipv4_udp, LinkConfig, Sim, TestNetwork};
use privnet_core::{DropReason, Encapsulated};

fn identity(net: &TestNetwork, i: usize, extra: &[&str]) -> PeerIdentity {
    let mut addresses = vec![IpNetwork::new(net.overlay[i], 32).unwrap()];
    addresses.extend(extra.iter().map(|s| s.parse::<IpNetwork>().unwrap()));
    PeerIdentity {
        name: format!("m{i}"),
        addresses,
        groups: vec![],
        not_after: u64::MAX,
        fingerprint: [i as u8; 32],
    }
}

/// Member 0 and two gateways (1, 2) that are both granted 10.9.0.0/24.
fn verifier(net: &TestNetwork, without: Option<usize>) -> Arc<dyn CredentialVerifier> {
    let mut v = StaticKeyVerifier::new();
    for i in 0..3 {
        if Some(i) == without {
            continue;
        }
        let extra: &[&str] = if i == 0 { &[] } else { &["10.9.0.0/24"] };
        v.allow(net.public(i), identity(net, i, extra));
    }
    Arc::new(v)
}

fn established(sim: &Sim, a: usize, b: usize, net: &TestNetwork) -> bool {
    let p = sim.nodes[a].node.peer_by_key(&net.public(b)).unwrap();
    sim.nodes[a].node.is_established(p)
}

#[test]
fn a_shared_route_stays_with_its_first_owner_and_survives_the_others_revocation() {
    let net = TestNetwork::new(3, 60);
    let mut sim = Sim::new(60, LinkConfig::default());
    for i in 0..3 {
        let mut cfg = net.config(i, 60);
        cfg.verifier = verifier(&net, None);
        cfg.eager_handshakes = false;
        let node = net.node(i, cfg, sim.now, net.unix_start);
        sim.add_node(node, net.underlay[i]);
    }
    // Gateway 1 handshakes first, gateway 2 later: the later handshake must not take the route.
    for g in [1, 2] {
        let p = sim.nodes[g].node.peer_by_key(&net.public(0)).unwrap();
        let now = sim.now;
        sim.nodes[g].node.initiate_handshake(p, now);
        sim.flush(g);
        sim.run_until_cond(Duration::from_secs(1), |s| established(s, 0, g, &net))
            .expect("handshake");
        sim.run_for(Duration::from_millis(100));
    }
    let into_subnet = ipv4_udp(
        net.overlay[0],
        "10.9.0.7".parse().unwrap(),
        b"to the subnet",
    );
    sim.send_packet(0, &into_subnet).unwrap();
    sim.run_for(Duration::from_millis(50));
    assert!(sim.nodes[1].inbox.iter().any(|(_, p)| p == &into_subnet));
    assert!(!sim.nodes[2].inbox.iter().any(|(_, p)| p == &into_subnet));
    let g1 = sim.nodes[0].node.peer_by_key(&net.public(1)).unwrap();
    let g2 = sim.nodes[0].node.peer_by_key(&net.public(2)).unwrap();
    let routes = sim.nodes[0].node.routes();
    let shared = routes
        .iter()
        .find(|(n, _)| *n == "10.9.0.0/24".parse::<IpNetwork>().unwrap())
        .unwrap();
    assert_eq!(shared.1, vec![g1, g2]);
    // Gateway 1 is revoked: gateway 2 serves the subnet at once (it used to vanish with gateway 1).
    let now = sim.now;
    sim.nodes[0].node.set_verifier(verifier(&net, Some(1)), now);
    let again = ipv4_udp(
        net.overlay[0],
        "10.9.0.8".parse().unwrap(),
        b"after revocation",
    );
    assert!(matches!(
        sim.send_packet(0, &again),
        Ok(Encapsulated::Send(_))
    ));
    sim.run_for(Duration::from_millis(50));
    assert!(sim.nodes[2].inbox.iter().any(|(_, p)| p == &again));
    assert_eq!(sim.nodes[0].node.stats().dropped(DropReason::NoRoute), 0);
    // Gateway 2 may use the subnet as source too (it was granted it).
    let from_subnet = ipv4_udp("10.9.0.8".parse().unwrap(), net.overlay[0], b"reply");
    sim.send_packet(2, &from_subnet).unwrap();
    sim.run_for(Duration::from_millis(50));
    assert!(sim.nodes[0].inbox.iter().any(|(_, p)| p == &from_subnet));
}

#[test]
fn a_configured_prefix_granted_to_another_member_does_not_take_its_traffic() {
    // Node 0's configuration wrongly lists member 2's address as member 1's (a copy-paste error,
    // or a hostile config). Member 2's certificate grants it: member 2 gets the traffic.
    let net = TestNetwork::new(3, 61);
    let mut sim = Sim::new(61, LinkConfig::default());
    let mut cfg = net.config(0, 61);
    cfg.eager_handshakes = false;
    let mut node = privnet_core::Node::new(cfg, sim.now, net.unix_start).unwrap();
    for (i, claimed) in [(1, net.overlay[2]), (2, net.overlay[2])] {
        let pc = privnet_core::PeerConfig::new(net.public(i))
            .endpoint(net.underlay[i])
            .allowed_ip(IpNetwork::new(claimed, 32).unwrap());
        node.add_peer(pc, sim.now).unwrap();
    }
    sim.add_node(node, net.underlay[0]);
    for i in 1..3 {
        let node = net.node(i, net.config(i, 61), sim.now, net.unix_start);
        sim.add_node(node, net.underlay[i]);
    }
    sim.run_until_cond(Duration::from_secs(7), |s| {
        established(s, 0, 1, &net) && established(s, 0, 2, &net)
    })
    .expect("handshakes");
    let to_two = ipv4_udp(net.overlay[0], net.overlay[2], b"for member 2");
    sim.send_packet(0, &to_two).unwrap();
    sim.run_for(Duration::from_millis(50));
    assert!(sim.nodes[2].inbox.iter().any(|(_, p)| p == &to_two));
    assert!(!sim.nodes[1].inbox.iter().any(|(_, p)| p == &to_two));
}
