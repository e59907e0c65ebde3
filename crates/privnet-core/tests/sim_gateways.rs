//! Routing policies (issue 15): gateway selection by the policy's `[[route]]` priority, failover
//! when the active gateway goes silent, fail-back after the hold, no false failover for a
//! one-way flow through a live gateway, and an idle standby that dies found before it is needed.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnetwork::IpNetwork;
use privnet_core::credential::{CredentialVerifier, PeerIdentity, StaticKeyVerifier};
use privnet_core::node::{
    GatewayChange, GatewayHealth, GATEWAY_DOWN_AFTER, GATEWAY_FAILBACK_AFTER,
    GATEWAY_IDLE_PROBE_AFTER, GATEWAY_PROBE_INTERVAL, GATEWAY_TICK,
};
use privnet_core::policy::{self, DefaultAction, PolicySpec, RouteSpec, Selector};
use privnet_core::testing::{ipv4_udp, LinkConfig, Sim, TestNetwork};
use privnet_core::Event;

const SUBNET: &str = "10.9.0.0/24";

/// Member 0 (the client, group `staff`), gateways 1 and 2 granted the subnet, member 3 a member
/// whose certificate does not grant it.
fn verifier(net: &TestNetwork) -> Arc<dyn CredentialVerifier> {
    let mut v = StaticKeyVerifier::new();
    for i in 0..4 {
        let mut addresses = vec![IpNetwork::new(net.overlay[i], 32).unwrap()];
        if i == 1 || i == 2 {
            addresses.push(SUBNET.parse().unwrap());
        }
        v.allow(
            net.public(i),
            PeerIdentity {
                name: format!("m{i}"),
                addresses,
                groups: if i == 0 { vec!["staff".into()] } else { vec![] },
                not_after: u64::MAX,
                fingerprint: [i as u8; 32],
            },
        );
    }
    Arc::new(v)
}

fn setup(tag: u8) -> (TestNetwork, Sim) {
    setup_with(tag, |_, _| {})
}

fn setup_with(tag: u8, tweak: impl Fn(usize, &mut privnet_core::NodeConfig)) -> (TestNetwork, Sim) {
    let net = TestNetwork::new(4, tag);
    let mut sim = Sim::new(u64::from(tag), LinkConfig::default());
    for i in 0..4 {
        let mut cfg = net.config(i, u64::from(tag));
        cfg.verifier = verifier(&net);
        tweak(i, &mut cfg);
        let node = net.node(i, cfg, sim.now, net.unix_start);
        sim.add_node(node, net.underlay[i]);
    }
    sim.run_for(Duration::from_secs(2));
    (net, sim)
}

/// A policy for the client: allow everything, the subnet via `via`.
fn install(sim: &mut Sim, via: &[&str], from: Option<Selector>) {
    let mut spec = PolicySpec::new(DefaultAction::Allow);
    let mut r = RouteSpec::new(SUBNET.parse().unwrap(), via);
    r.id = Some("lan".into());
    r.from = from;
    spec.routes.push(r);
    let p = Arc::new(policy::compile(&spec, "test.toml").unwrap());
    let now = sim.now;
    sim.nodes[0].node.set_policy(Some(p), now);
}

fn probe_packet(net: &TestNetwork, n: u32) -> Vec<u8> {
    ipv4_udp(
        net.overlay[0],
        "10.9.0.7".parse().unwrap(),
        format!("probe {n}").as_bytes(),
    )
}

fn got(sim: &Sim, i: usize, p: &[u8]) -> bool {
    sim.nodes[i].inbox.iter().any(|(_, q)| q == p)
}

fn events(sim: &mut Sim) -> Vec<Event> {
    std::iter::from_fn(|| sim.nodes[0].node.poll_event()).collect()
}

/// Send one packet every `every` until one arrives at `at`; the time of the first one sent that
/// arrived there.
fn stream_until(
    sim: &mut Sim,
    net: &TestNetwork,
    at: usize,
    every: Duration,
    max: Duration,
    n: &mut u32,
) -> Option<Instant> {
    let end = sim.now + max;
    let mut sent = Vec::new();
    while sim.now < end {
        *n += 1;
        let p = probe_packet(net, *n);
        let _ = sim.send_packet(0, &p);
        sent.push((sim.now, p));
        sim.run_for(every);
        if let Some((t, _)) = sent.iter().find(|(_, p)| got(sim, at, p)) {
            return Some(*t);
        }
    }
    None
}

#[test]
fn the_policy_orders_gateways_and_a_silent_one_fails_over_then_back() {
    let (net, mut sim) = setup(90);
    // The router alone gives the subnet to the first gateway to claim it; the policy prefers m2.
    install(&mut sim, &["m2", "m1"], None);
    let mut n = 0;
    let p = probe_packet(&net, 0);
    sim.send_packet(0, &p).unwrap();
    sim.run_for(Duration::from_millis(50));
    assert!(
        got(&sim, 2, &p) && !got(&sim, 1, &p),
        "m2 serves the subnet"
    );
    let g1 = sim.nodes[0].node.peer_by_key(&net.public(1)).unwrap();
    let g2 = sim.nodes[0].node.peer_by_key(&net.public(2)).unwrap();
    let route = &sim.nodes[0].node.gateway_routes()[0];
    assert_eq!(route.active, Some(g2));
    assert_eq!(
        route.candidates.iter().map(|c| c.peer).collect::<Vec<_>>(),
        vec![g2, g1]
    );
    events(&mut sim);

    // m2 goes silent. Traffic keeps flowing (a packet every 100 ms) and must reach m1 within
    // the stated failover time of the first packet m2 did not answer.
    sim.set_up(2, false);
    let silent = sim.now;
    let moved = stream_until(
        &mut sim,
        &net,
        1,
        Duration::from_millis(100),
        Duration::from_secs(10),
        &mut n,
    )
    .expect("traffic moved to m1");
    let took = moved - silent;
    eprintln!("failover: first packet through m1 sent {took:?} after m2 went silent");
    let bound = GATEWAY_DOWN_AFTER + GATEWAY_TICK + Duration::from_millis(100);
    assert!(took <= bound, "failover took {took:?}, bound {bound:?}");
    assert!(
        took >= GATEWAY_DOWN_AFTER,
        "no failover before {GATEWAY_DOWN_AFTER:?}: {took:?}"
    );
    let ev = events(&mut sim);
    assert!(
        ev.iter().any(
            |e| matches!(e, Event::GatewayChanged { from: Some(f), to: Some(t),
            reason: GatewayChange::Failover, .. } if *f == g2 && *t == g1)
        ),
        "{ev:?}"
    );
    let route = &sim.nodes[0].node.gateway_routes()[0];
    assert_eq!(route.active, Some(g1));
    assert_eq!(route.failovers, 1);
    assert!(matches!(
        route.candidates[0].health,
        GatewayHealth::Down { .. }
    ));
    assert!(sim.nodes[0].node.gateway_counters().probes >= 1);

    // m2 is back: it answers the next probe, and takes the subnet back after the hold, not before.
    sim.set_up(2, true);
    let back = sim.now;
    let returned = stream_until(
        &mut sim,
        &net,
        2,
        Duration::from_millis(100),
        Duration::from_secs(30),
        &mut n,
    )
    .expect("fail-back to m2");
    let took = returned - back;
    eprintln!("fail-back: {took:?} after m2 came back");
    assert!(took >= GATEWAY_FAILBACK_AFTER, "fail-back after {took:?}");
    let bound = GATEWAY_FAILBACK_AFTER + GATEWAY_PROBE_INTERVAL + 2 * GATEWAY_TICK;
    assert!(took <= bound, "fail-back took {took:?}, bound {bound:?}");
    let route = &sim.nodes[0].node.gateway_routes()[0];
    assert_eq!((route.active, route.failbacks), (Some(g2), 1));
    assert!(events(&mut sim).iter().any(|e| matches!(
        e,
        Event::GatewayChanged {
            reason: GatewayChange::Failback,
            ..
        }
    )));
}

#[test]
fn a_one_way_flow_through_a_live_gateway_does_not_fail_over() {
    let (net, mut sim) = setup(91);
    install(&mut sim, &["m1", "m2"], None);
    // Twenty seconds of one-way traffic (the subnet never answers): the probes are answered.
    for n in 0..200 {
        sim.send_packet(0, &probe_packet(&net, n)).unwrap();
        sim.run_for(Duration::from_millis(100));
    }
    assert_eq!(sim.nodes[1].inbox.len(), 200);
    assert!(sim.nodes[2].inbox.is_empty());
    let route = &sim.nodes[0].node.gateway_routes()[0];
    assert_eq!(route.failovers, 0);
    assert_eq!(route.candidates[0].health, GatewayHealth::Up);
    assert!(sim.nodes[0].node.gateway_counters().probes >= 5);
}

/// A standby nothing is sent to is probed every `GATEWAY_IDLE_PROBE_AFTER`: a live one stays up
/// (one handshake per interval, counted), a dead one is down within the interval plus
/// `GATEWAY_DOWN_AFTER` without any traffic through it, so when the primary then fails too the
/// entry does not move onto it; back, it recovers and is up again.
#[test]
fn an_idle_standby_that_dies_is_found_before_it_is_needed() {
    let (net, mut sim) = setup(92);
    install(&mut sim, &["m1", "m2"], None);
    let g1 = sim.nodes[0].node.peer_by_key(&net.public(1)).unwrap();
    let g2 = sim.nodes[0].node.peer_by_key(&net.public(2)).unwrap();
    let health = |sim: &Sim, g| {
        sim.nodes[0].node.gateway_routes()[0]
            .candidates
            .iter()
            .find(|c| c.peer == g)
            .map(|c| c.health)
    };
    let probes = |sim: &Sim| sim.nodes[0].node.gateway_counters().probes;
    // Both alive and idle for four intervals: probed, answered, up; a bounded number of probes.
    let before = probes(&sim);
    sim.run_for(GATEWAY_IDLE_PROBE_AFTER * 4);
    let sent = probes(&sim) - before;
    assert!(
        (4..=10).contains(&sent),
        "{sent} probes in four idle intervals"
    );
    assert_eq!(health(&sim, g2), Some(GatewayHealth::Up));
    assert_eq!(sim.nodes[0].node.gateway_routes()[0].active, Some(g1));

    // The standby dies while nothing goes through it: down within one interval plus the
    // down time, with no packet sent to the subnet at all.
    sim.set_up(2, false);
    let died = sim.now;
    let bound = GATEWAY_IDLE_PROBE_AFTER + GATEWAY_DOWN_AFTER + 2 * GATEWAY_TICK;
    while !matches!(health(&sim, g2), Some(GatewayHealth::Down { .. })) {
        assert!(
            sim.now - died <= bound,
            "the dead standby still counts as up after {bound:?}"
        );
        sim.run_for(GATEWAY_TICK);
    }
    eprintln!("dead standby found after {:?}", sim.now - died);
    assert_eq!(sim.nodes[0].node.gateway_routes()[0].active, Some(g1));

    // Back: it answers the down-state probes, recovers, and is up after the hold.
    sim.set_up(2, true);
    sim.run_for(GATEWAY_PROBE_INTERVAL + GATEWAY_FAILBACK_AFTER + 4 * GATEWAY_TICK);
    assert_eq!(health(&sim, g2), Some(GatewayHealth::Up));
    let route = &sim.nodes[0].node.gateway_routes()[0];
    assert_eq!((route.active, route.failovers), (Some(g1), 0));
}

#[test]
fn a_gateway_without_the_grant_and_an_entry_for_another_group_attract_nothing() {
    let (net, mut sim) = setup(92);
    // m3 is listed first but its certificate does not grant the subnet.
    install(&mut sim, &["m3", "m2"], None);
    let p = probe_packet(&net, 1);
    sim.send_packet(0, &p).unwrap();
    sim.run_for(Duration::from_millis(50));
    assert!(got(&sim, 2, &p) && !got(&sim, 3, &p));
    let g2 = sim.nodes[0].node.peer_by_key(&net.public(2)).unwrap();
    let route = &sim.nodes[0].node.gateway_routes()[0];
    // m3 holds no grant, m1 holds it but is not listed: m2 is the one candidate.
    assert_eq!(
        route.candidates.iter().map(|c| c.peer).collect::<Vec<_>>(),
        vec![g2]
    );
    assert_eq!(route.active, Some(g2));
    // Two entries for the prefix that apply to the client: the first in the file is the one.
    let mut spec = PolicySpec::new(DefaultAction::Allow);
    let mut first = RouteSpec::new(SUBNET.parse().unwrap(), &["m2"]);
    first.from = Some(Selector::groups_any(&["staff"]));
    spec.routes.push(first);
    spec.routes
        .push(RouteSpec::new(SUBNET.parse().unwrap(), &["m1"]));
    let now = sim.now;
    let p = Arc::new(policy::compile(&spec, "two.toml").unwrap());
    sim.nodes[0].node.set_policy(Some(p), now);
    let routes = sim.nodes[0].node.gateway_routes();
    assert_eq!(routes.len(), 1);
    assert_eq!(
        (routes[0].id.as_str(), routes[0].active),
        ("route/0", Some(g2))
    );
    // An entry for another group does not apply to the client: the router's owner (m1) serves.
    install(&mut sim, &["m2"], Some(Selector::groups_any(&["ops"])));
    assert!(sim.nodes[0].node.gateway_routes().is_empty());
    let p = probe_packet(&net, 2);
    sim.send_packet(0, &p).unwrap();
    sim.run_for(Duration::from_millis(50));
    assert!(got(&sim, 1, &p));
}

#[test]
fn a_member_of_a_denied_group_cannot_use_the_route_at_the_gateway() {
    // The gateway's policy refuses group `staff` into the subnet (the client has no policy: the
    // receiving end is authoritative).
    let (net, mut sim) = setup(93);
    let mut spec = PolicySpec::new(DefaultAction::Allow);
    spec.rule(
        policy::Tier::Application,
        policy::RuleSpec::new(
            policy::Action::Deny,
            Selector::groups_any(&["staff"]),
            Selector::cidr(&[SUBNET.parse().unwrap()], &[]),
        )
        .id("no-staff-in-lan"),
    );
    let p = Arc::new(policy::compile(&spec, "gw.toml").unwrap());
    let now = sim.now;
    sim.nodes[1].node.set_policy(Some(p.clone()), now);
    sim.nodes[2].node.set_policy(Some(p), now);
    let pkt = probe_packet(&net, 1);
    sim.send_packet(0, &pkt).unwrap();
    sim.run_for(Duration::from_millis(50));
    assert!(!got(&sim, 1, &pkt) && !got(&sim, 2, &pkt));
    let denied: u64 = [1, 2]
        .iter()
        .map(|&i| {
            sim.nodes[i]
                .node
                .stats()
                .dropped(privnet_core::DropReason::PolicyDenied)
        })
        .sum();
    assert_eq!(denied, 1);
    // Its own address stays reachable: only the route is refused.
    let direct = ipv4_udp(net.overlay[0], net.overlay[1], b"direct");
    sim.send_packet(0, &direct).unwrap();
    sim.run_for(Duration::from_millis(50));
    assert!(got(&sim, 1, &direct));
}

/// An IPv4 TCP SYN from `src` to `dst` announcing `mss` (checksum zero: the core only fixes it
/// incrementally).
fn syn(src: std::net::IpAddr, dst: std::net::IpAddr, mss: u16) -> Vec<u8> {
    let (std::net::IpAddr::V4(s), std::net::IpAddr::V4(d)) = (src, dst) else {
        unreachable!()
    };
    let mut p = vec![0u8; 44];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&44u16.to_be_bytes());
    p[8] = 64;
    p[9] = 6;
    p[12..16].copy_from_slice(&s.octets());
    p[16..20].copy_from_slice(&d.octets());
    p[22..24].copy_from_slice(&443u16.to_be_bytes());
    p[32] = 6 << 4;
    p[33] = 0x02;
    p[40..44].copy_from_slice(&[2, 4, (mss >> 8) as u8, mss as u8]);
    p
}

#[test]
fn routed_syns_are_clamped_to_the_overlay_mtu_on_both_ends() {
    // Gateway 1 was configured with a larger MTU than the client: its own clamp lets a bigger
    // MSS through, and the client clamps on receipt.
    let (net, mut sim) = setup_with(94, |i, cfg| {
        if i == 1 {
            cfg.mtu = 8000;
        }
    });
    install(&mut sim, &["m1", "m2"], None);
    let limit = (sim.nodes[0].node.mtu() - 40) as u16;
    // Outbound at the client: a SYN into the subnet announcing a LAN-sized MSS.
    let s = syn(net.overlay[0], "10.9.0.7".parse().unwrap(), 8960);
    sim.send_packet(0, &s).unwrap();
    sim.run_for(Duration::from_millis(50));
    let (_, got) = sim.nodes[1].inbox.last().unwrap();
    assert_eq!(u16::from_be_bytes([got[42], got[43]]), limit);
    assert_eq!(sim.nodes[0].node.stats().mss_clamped, 1);
    // The gateway seals a SYN-ACK from a host behind it announcing 7900 (fits its 8000 MTU):
    // the client clamps it when it arrives.
    let mut back = syn("10.9.0.7".parse().unwrap(), net.overlay[0], 7900);
    back[33] = 0x12;
    sim.send_packet(1, &back).unwrap();
    sim.run_for(Duration::from_millis(50));
    assert_eq!(sim.nodes[1].node.stats().mss_clamped, 0);
    let (_, got) = sim.nodes[0].inbox.last().unwrap();
    assert_eq!(u16::from_be_bytes([got[42], got[43]]), limit);
    assert_eq!(sim.nodes[0].node.stats().mss_clamped, 2);
    // A SYN that fits, and an ACK with the same option bytes, are left alone.
    let fits = syn("10.9.0.7".parse().unwrap(), net.overlay[0], limit - 100);
    sim.send_packet(1, &fits).unwrap();
    back[33] = 0x10;
    sim.send_packet(1, &back).unwrap();
    sim.run_for(Duration::from_millis(50));
    let n = sim.nodes[0].inbox.len();
    assert_eq!(sim.nodes[0].inbox[n - 2].1, fits);
    assert_eq!(sim.nodes[0].inbox[n - 1].1, back);
    assert_eq!(sim.nodes[0].node.stats().mss_clamped, 2);
}
