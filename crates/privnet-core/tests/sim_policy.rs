//! The access policy enforced by the node on both ends (docs/POLICY.md, "Enforcement"), over the
//! simulated network with the fake clock: members `web` (group web), `db` (group db) and `ops`
//! (group ops).
#![allow(clippy::unwrap_used)]

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use ipnetwork::IpNetwork;
use privnet_core::credential::{PeerIdentity, StaticKeyVerifier};
use privnet_core::policy::{compile, parse_policy, CompiledPolicy};
use privnet_core::testing::{ipv4_udp, LinkConfig, Sim, TestNetwork};
use privnet_core::{DropReason, Event, Node};

const WEB: usize = 0;
const DB: usize = 1;
const OPS: usize = 2;

const POLICY: &str = r#"
default = "deny"

[[platform]]
id = "no-telnet"
action = "reject"
from = "any"
to = "any"
proto = "tcp"
ports = [23]

[[application]]
id = "audit-db"
action = "log"
from = "network"
to = { groups = { any = ["db"] } }

[[application]]
id = "web-to-db"
action = "allow"
from = { groups = { any = ["web"] } }
to = { groups = { any = ["db"] } }
proto = "tcp"
ports = [5432]

[[application]]
id = "ops-udp"
action = "allow"
from = { groups = { any = ["ops"] } }
to = "network"
proto = "udp"
ports = [53]
"#;

/// The same, with the allow for web → db gone.
const WITHOUT_WEB_TO_DB: &str = r#"
default = "deny"

[[application]]
id = "ops-udp"
action = "allow"
from = { groups = { any = ["ops"] } }
to = "network"
proto = "udp"
ports = [53]
"#;

fn policy(text: &str) -> Arc<CompiledPolicy> {
    let spec = parse_policy(text, "policy.toml").unwrap();
    Arc::new(compile(&spec, "policy.toml").unwrap())
}

const GROUPS: [&str; 3] = ["web", "db", "ops"];

/// Members `web`, `db` and `ops`, each in the group of its name (verified identities).
fn grouped_network(tag: u8) -> TestNetwork {
    let mut net = TestNetwork::new(3, tag);
    let mut v = StaticKeyVerifier::new();
    for (i, group) in GROUPS.iter().enumerate() {
        v.allow(
            net.public(i),
            PeerIdentity {
                name: (*group).to_owned(),
                addresses: vec![IpNetwork::new(net.overlay[i], 32).unwrap()],
                groups: vec![(*group).to_owned()],
                not_after: u64::MAX,
                fingerprint: [i as u8; 32],
            },
        );
    }
    net.verifier = Arc::new(v);
    net
}

/// Three members with groups; `with_policy[i]`: member i enforces `POLICY`.
fn setup(tag: u8, with_policy: [bool; 3]) -> (TestNetwork, Sim) {
    setup_with(tag, with_policy, POLICY)
}

/// [`setup`] with another policy text.
fn setup_with(tag: u8, with_policy: [bool; 3], text: &str) -> (TestNetwork, Sim) {
    let net = grouped_network(tag);
    let mut sim = Sim::new(u64::from(tag), LinkConfig::default());
    for (i, enforce) in with_policy.iter().enumerate() {
        let mut cfg = net.config(i, u64::from(tag));
        if *enforce {
            cfg.policy = Some(policy(text));
        }
        let now = sim.now;
        let node = net.node(i, cfg, now, net.unix_start);
        sim.add_node(node, net.underlay[i]);
    }
    sim.run_until_cond(Duration::from_secs(7), |s| {
        (0..3).all(|a| {
            (0..3)
                .filter(|b| *b != a)
                .all(|b| established(s, &net, a, b))
        })
    })
    .expect("every session established");
    (net, sim)
}

fn established(sim: &Sim, net: &TestNetwork, a: usize, b: usize) -> bool {
    let p = sim.nodes[a].node.peer_by_key(&net.public(b)).unwrap();
    sim.nodes[a].node.is_established(p)
}

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const RST: u8 = 0x04;

/// An IPv4 TCP segment (checksums zero: the core does not check them).
fn tcp(src: IpAddr, sport: u16, dst: IpAddr, dport: u16, flags: u8) -> Vec<u8> {
    let (IpAddr::V4(s), IpAddr::V4(d)) = (src, dst) else {
        unreachable!()
    };
    let mut p = vec![0u8; 40];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&40u16.to_be_bytes());
    p[8] = 64;
    p[9] = 6;
    p[12..16].copy_from_slice(&s.octets());
    p[16..20].copy_from_slice(&d.octets());
    p[20..22].copy_from_slice(&sport.to_be_bytes());
    p[22..24].copy_from_slice(&dport.to_be_bytes());
    p[24..28].copy_from_slice(&1000u32.to_be_bytes());
    p[32] = 5 << 4;
    p[33] = flags;
    p
}

fn received(sim: &Sim, i: usize, packet: &[u8]) -> bool {
    sim.nodes[i].inbox.iter().any(|(_, p)| p == packet)
}

fn drops(node: &Node, reason: DropReason) -> u64 {
    node.stats().dropped(reason)
}

#[test]
fn web_reaches_db_but_db_cannot_open_connections_to_web() {
    let (net, mut sim) = setup(90, [true; 3]);
    let (web, db) = (net.overlay[WEB], net.overlay[DB]);
    let syn = tcp(web, 40000, db, 5432, SYN);
    sim.send_packet(WEB, &syn).unwrap();
    sim.run_for(Duration::from_millis(20));
    assert!(received(&sim, DB, &syn), "web -> db:5432 is allowed");
    // The reply of the tracked flow passes both ends.
    let syn_ack = tcp(db, 5432, web, 40000, SYN | ACK);
    sim.send_packet(DB, &syn_ack).unwrap();
    sim.run_for(Duration::from_millis(20));
    assert!(received(&sim, WEB, &syn_ack), "replies flow");
    // db may not open a connection to web (refused at db, before encryption).
    let back = tcp(db, 41000, web, 8080, SYN);
    assert_eq!(sim.send_packet(DB, &back), Err(DropReason::PolicyDenied));
    sim.run_for(Duration::from_millis(20));
    assert!(!received(&sim, WEB, &back));
    assert_eq!(drops(&sim.nodes[DB].node, DropReason::PolicyDenied), 1);
    // Nor web to db on another port.
    let other = tcp(web, 40001, db, 22, SYN);
    assert_eq!(sim.send_packet(WEB, &other), Err(DropReason::PolicyDenied));
    let counters = sim.nodes[DB].node.policy_counters().unwrap();
    assert!(counters.totals.established >= 1, "{counters:?}");
    assert_eq!(sim.nodes[DB].node.tracked_flows(), 1);
    // The audit trail names the peer and the verdict.
    let mut denied = Vec::new();
    while let Some(e) = sim.nodes[DB].node.poll_event() {
        if let Event::PolicyDenied { flow, rejected, .. } = e {
            denied.push((flow.dst_port, rejected));
        }
    }
    assert_eq!(denied, vec![(Some(8080), false)]);
}

#[test]
fn the_receiver_stops_a_sender_that_ignores_its_own_policy() {
    // web runs without a policy (a patched config): db, the authoritative end, still refuses.
    let (net, mut sim) = setup(91, [false, true, true]);
    let (web, db) = (net.overlay[WEB], net.overlay[DB]);
    let ssh = tcp(web, 40000, db, 22, SYN);
    assert!(
        sim.send_packet(WEB, &ssh).is_ok(),
        "web's own end lets it out"
    );
    sim.run_for(Duration::from_millis(20));
    assert!(!received(&sim, DB, &ssh));
    assert_eq!(drops(&sim.nodes[DB].node, DropReason::PolicyDenied), 1);
    // The session is unharmed: an allowed flow still passes.
    let pg = tcp(web, 40001, db, 5432, SYN);
    sim.send_packet(WEB, &pg).unwrap();
    sim.run_for(Duration::from_millis(20));
    assert!(received(&sim, DB, &pg));
    assert!(established(&sim, &net, DB, WEB));
}

#[test]
fn reject_answers_the_client_at_once_on_both_ends() {
    let (net, mut sim) = setup(92, [false, true, true]);
    let (web, db, ops) = (net.overlay[WEB], net.overlay[DB], net.overlay[OPS]);
    // At the sender (ops enforces): refused before encryption, the answer built locally.
    let telnet = tcp(ops, 40000, db, 23, SYN);
    assert_eq!(
        sim.send_packet(OPS, &telnet),
        Err(DropReason::PolicyRejected)
    );
    let mut out = [0u8; 1500];
    let now = sim.now;
    let n = sim.nodes[OPS]
        .node
        .reject_reply(&telnet, &mut out, now)
        .unwrap();
    let rst = &out[..n];
    assert_eq!(
        &rst[12..16],
        &telnet[16..20],
        "from the refused destination"
    );
    assert_eq!(rst[33] & RST, RST);
    // At the receiver (web ignores the policy): db seals the RST back to web.
    let telnet = tcp(web, 40001, db, 23, SYN);
    sim.send_packet(WEB, &telnet).unwrap();
    sim.run_for(Duration::from_millis(20));
    assert!(!received(&sim, DB, &telnet));
    assert_eq!(drops(&sim.nodes[DB].node, DropReason::PolicyRejected), 1);
    let answered = sim.nodes[WEB].inbox.iter().any(|(_, p)| {
        p.len() == 40 && p[9] == 6 && p[12..16] == telnet[16..20] && p[33] & RST == RST
    });
    assert!(
        answered,
        "web's client gets a RST: {:?}",
        sim.nodes[WEB].inbox
    );
    // UDP to a port no rule allows is dropped silently; ops' DNS is allowed.
    let dns = ipv4_udp(ops, db, b"query");
    let mut dns = dns.clone();
    dns[22..24].copy_from_slice(&53u16.to_be_bytes());
    sim.send_packet(OPS, &dns).unwrap();
    sim.run_for(Duration::from_millis(20));
    assert!(received(&sim, DB, &dns));
}

#[test]
fn a_new_policy_cuts_the_running_flow_and_keeps_the_session() {
    let (net, mut sim) = setup(93, [true; 3]);
    let (web, db) = (net.overlay[WEB], net.overlay[DB]);
    let syn = tcp(web, 40000, db, 5432, SYN);
    sim.send_packet(WEB, &syn).unwrap();
    sim.run_for(Duration::from_millis(20));
    assert!(received(&sim, DB, &syn));
    // Segments of the running flow (the second and later take the fast path).
    for i in 0..3u8 {
        let mut seg = tcp(web, 40000, db, 5432, ACK);
        seg[27] = i;
        sim.send_packet(WEB, &seg).unwrap();
        sim.run_for(Duration::from_millis(5));
        assert!(received(&sim, DB, &seg));
    }
    let passed = sim.nodes[DB]
        .node
        .policy_counters()
        .unwrap()
        .totals
        .established;
    assert!(
        passed >= 3,
        "fast-path packets count as established: {passed}"
    );
    let now = sim.now;
    let cut = sim.nodes[DB]
        .node
        .set_policy(Some(policy(WITHOUT_WEB_TO_DB)), now);
    assert_eq!(cut, 1, "db's tracked flow is cut at once");
    let data = tcp(web, 40000, db, 5432, ACK);
    sim.send_packet(WEB, &data).unwrap();
    sim.run_for(Duration::from_millis(20));
    assert!(
        !received(&sim, DB, &data),
        "the flow is cut at the receiver"
    );
    assert!(
        established(&sim, &net, DB, WEB),
        "sessions are never dropped"
    );
    // And back to no policy: members talk freely again.
    let now = sim.now;
    sim.nodes[DB].node.set_policy(None, now);
    let again = tcp(web, 40000, db, 5432, ACK);
    sim.send_packet(WEB, &again).unwrap();
    sim.run_for(Duration::from_millis(20));
    assert!(received(&sim, DB, &again));
}

#[test]
fn tracked_flows_expire_on_the_fake_clock() {
    let (net, mut sim) = setup(94, [true; 3]);
    let (ops, db) = (net.overlay[OPS], net.overlay[DB]);
    let mut dns = ipv4_udp(ops, db, b"query");
    dns[22..24].copy_from_slice(&53u16.to_be_bytes());
    sim.send_packet(OPS, &dns).unwrap();
    sim.run_for(Duration::from_millis(20));
    assert_eq!(sim.nodes[DB].node.tracked_flows(), 1);
    // Unreplied UDP: 30 s (the sweep runs on the node's timers).
    sim.run_for(Duration::from_secs(45));
    assert_eq!(sim.nodes[DB].node.tracked_flows(), 0);
    // A reply now is a new flow from db, which no rule allows.
    let mut answer = ipv4_udp(db, ops, b"late answer");
    answer[20..22].copy_from_slice(&53u16.to_be_bytes());
    assert_eq!(sim.send_packet(DB, &answer), Err(DropReason::PolicyDenied));
}

#[test]
fn a_log_rule_reports_the_flows_it_lets_through_once() {
    let (net, mut sim) = setup(95, [true; 3]);
    let (web, db) = (net.overlay[WEB], net.overlay[DB]);
    while sim.nodes[DB].node.poll_event().is_some() {}
    let syn = tcp(web, 40000, db, 5432, SYN);
    sim.send_packet(WEB, &syn).unwrap();
    let data = tcp(web, 40000, db, 5432, ACK);
    sim.send_packet(WEB, &data).unwrap();
    sim.run_for(Duration::from_millis(20));
    assert!(received(&sim, DB, &data));
    let policy = sim.nodes[DB].node.policy().unwrap().clone();
    let mut logged = Vec::new();
    while let Some(e) = sim.nodes[DB].node.poll_event() {
        if let Event::PolicyLogged { verdict, flow, .. } = e {
            let rule = |r| policy.rule(r).unwrap().id.clone();
            logged.push((
                rule(verdict.logged.unwrap()),
                rule(verdict.rule().unwrap()),
                flow.dst_port,
            ));
        }
    }
    // Logged once, when the flow started (its later packets are established).
    assert_eq!(
        logged,
        vec![("audit-db".to_owned(), "web-to-db".to_owned(), Some(5432))]
    );
}

#[test]
fn the_first_packet_to_a_peer_not_met_yet_starts_the_handshake_and_is_judged_by_the_receiver() {
    // No eager handshakes: web's first SYN to db is what starts the handshake. Before it, web
    // does not know db's identity, so the sender cannot judge the SYN; db does.
    let net = grouped_network(96);
    let mut sim = Sim::new(96, LinkConfig::default());
    for i in 0..3 {
        let mut cfg = net.config(i, 96);
        cfg.policy = Some(policy(POLICY));
        cfg.eager_handshakes = false;
        let now = sim.now;
        let node = net.node(i, cfg, now, net.unix_start);
        sim.add_node(node, net.underlay[i]);
    }
    let (web, db) = (net.overlay[WEB], net.overlay[DB]);
    let syn = tcp(web, 40000, db, 5432, SYN);
    assert_eq!(
        sim.send_packet(WEB, &syn),
        Ok(privnet_core::Encapsulated::Queued)
    );
    sim.run_until_cond(Duration::from_secs(2), |s| received(s, DB, &syn))
        .expect("the queued SYN arrives once the session is up");
    // A flow the receiver's policy refuses, sent before web knew db: db drops it.
    let ssh = tcp(web, 40001, net.overlay[OPS], 22, SYN);
    assert_eq!(
        sim.send_packet(WEB, &ssh),
        Ok(privnet_core::Encapsulated::Queued)
    );
    sim.run_for(Duration::from_secs(2));
    assert!(!received(&sim, OPS, &ssh));
    assert_eq!(drops(&sim.nodes[OPS].node, DropReason::PolicyDenied), 1);
}

/// Everything allowed inside the network; web and ops each held to 100 packets/s (a burst of
/// 100 ms: 10 packets) towards any one other member.
const LIMITED: &str = r#"
[[application]]
action = "allow"
from = "network"
to = "network"

[[limits]]
id = "chatty"
members = [{ groups = { any = ["web"] } }, { groups = { any = ["ops"] } }]
direction = "out"
packets_per_sec = 100
"#;

#[test]
fn a_rate_limit_holds_a_member_to_its_rate_at_both_ends() {
    // web ignores the policy (a patched config); ops and db enforce it.
    let (net, mut sim) = setup_with(93, [false, true, true], LIMITED);
    let (web, db, ops) = (net.overlay[WEB], net.overlay[DB], net.overlay[OPS]);
    // At the sender: ops' 11th packet within the burst is refused before encryption.
    let mut refused = 0;
    for i in 0..30u8 {
        match sim.send_packet(OPS, &ipv4_udp(ops, db, &[i; 20])) {
            Ok(_) => {}
            Err(DropReason::MemberRateLimited) => refused += 1,
            Err(e) => panic!("unexpected refusal {e}"),
        }
    }
    assert_eq!(refused, 20);
    sim.run_for(Duration::from_millis(20));
    assert_eq!(sim.nodes[DB].inbox.len(), 10);
    let ops_limits = sim.nodes[OPS].node.limit_counters();
    assert_eq!(
        (
            ops_limits[0].id.as_str(),
            ops_limits[0].passed,
            ops_limits[0].dropped
        ),
        ("chatty", 10, 20)
    );
    assert_eq!(
        drops(&sim.nodes[OPS].node, DropReason::MemberRateLimited),
        20
    );
    // At the receiver: web sends all of it, db (the authoritative end) takes 10.
    sim.nodes[DB].inbox.clear();
    for i in 0..30u16 {
        sim.send_packet(WEB, &tcp(web, 40000 + i, db, 5432, SYN))
            .unwrap();
    }
    sim.run_for(Duration::from_millis(20));
    assert_eq!(sim.nodes[DB].inbox.len(), 10);
    assert_eq!(
        drops(&sim.nodes[DB].node, DropReason::MemberRateLimited),
        20
    );
    let db_limits = sim.nodes[DB].node.limit_counters();
    assert_eq!(
        (db_limits[0].passed, db_limits[0].dropped),
        (20, 20),
        "ops' 10 and web's 10 passed"
    );
    assert!(
        established(&sim, &net, DB, WEB),
        "a limit never touches the session"
    );
    // The buckets refill on the fake clock; db's replies to web are not limited (db is not
    // selected, and web's receiving is not counted by an `out` limit).
    sim.run_for(Duration::from_secs(1));
    sim.nodes[DB].inbox.clear();
    for i in 0..5u16 {
        sim.send_packet(WEB, &tcp(web, 41000 + i, db, 5432, SYN))
            .unwrap();
    }
    for i in 0..30u16 {
        sim.send_packet(DB, &tcp(db, 5432, web, 40000 + i, SYN | ACK))
            .unwrap();
    }
    sim.run_for(Duration::from_millis(20));
    assert_eq!(sim.nodes[DB].inbox.len(), 5);
    assert!(sim.nodes[WEB].inbox.len() >= 30);
}

#[test]
fn a_reload_keeps_the_state_of_an_unchanged_limit() {
    let (net, mut sim) = setup_with(94, [true; 3], LIMITED);
    let (ops, db) = (net.overlay[OPS], net.overlay[DB]);
    let sent = (0..30u8)
        .filter(|i| sim.send_packet(OPS, &ipv4_udp(ops, db, &[*i; 20])).is_ok())
        .count();
    assert_eq!(sent, 10);
    // The same limit under another policy (one more rule): the bucket stays empty.
    let more =
        format!("{LIMITED}\n[[baseline]]\naction = \"deny\"\nfrom = \"any\"\nto = \"any\"\n");
    let now = sim.now;
    sim.nodes[OPS].node.set_policy(Some(policy(&more)), now);
    assert_eq!(
        sim.send_packet(OPS, &ipv4_udp(ops, db, &[99; 20])),
        Err(DropReason::MemberRateLimited)
    );
    assert_eq!(sim.nodes[OPS].node.limit_counters()[0].dropped, 21);
    // A changed rate is a new limit: it starts full.
    let faster = LIMITED.replace("packets_per_sec = 100", "packets_per_sec = 200");
    sim.nodes[OPS].node.set_policy(Some(policy(&faster)), now);
    assert!(sim.send_packet(OPS, &ipv4_udp(ops, db, &[98; 20])).is_ok());
    // Without a policy nothing is limited.
    sim.nodes[OPS].node.set_policy(None, now);
    assert!((0..30u8).all(|i| sim.send_packet(OPS, &ipv4_udp(ops, db, &[i; 20])).is_ok()));
}

const PRIORITY_POLICY: &str = r#"
default = "deny"

[[application]]
id = "health"
action = "allow"
from = { groups = { any = ["web"] } }
to = { groups = { any = ["db"] } }
proto = "tcp"
ports = [8081]
priority = "high"

[[application]]
id = "sql"
action = "allow"
from = { groups = { any = ["web"] } }
to = { groups = { any = ["db"] } }
proto = "tcp"
ports = [5432]
"#;

#[test]
fn a_high_priority_flow_is_marked_on_the_wire_and_confirmed_by_the_receivers_policy() {
    let (net, mut sim) = setup_with(97, [true; 3], PRIORITY_POLICY);
    let (web, db) = (net.overlay[WEB], net.overlay[DB]);
    let from = net.underlay[WEB];
    let now = sim.now;
    let mut buf = vec![0u8; 2048];
    let mut out = vec![0u8; 2048];
    // A health check: its rule is `priority = "high"`, so the sealed message carries the hint.
    let check = tcp(web, 40000, db, 8081, SYN);
    let o = sim.nodes[WEB].node.prepare(&check, now).unwrap();
    assert!(o.high, "the health check's flow is high priority");
    let Ok(privnet_core::Encapsulated::Send(t)) =
        sim.nodes[WEB].node.seal_prepared(o, &check, &mut buf, now)
    else {
        panic!("sealed")
    };
    assert!(privnet_core::wire::priority_hint(&buf[..t.len]));
    assert_eq!(sim.nodes[WEB].node.stats().priority_sent, 1);
    let got = sim.nodes[DB]
        .node
        .decapsulate(from, &buf[..t.len], &mut out, now)
        .unwrap();
    assert!(matches!(got, privnet_core::Decapsulated::Packet { .. }));
    assert_eq!(sim.nodes[DB].node.stats().priority_received, 1);
    // Its reply belongs to the same tracked flow: high at db too.
    let reply = tcp(db, 8081, web, 40000, SYN | ACK);
    assert!(sim.nodes[DB].node.prepare(&reply, now).unwrap().high);
    // An ordinary flow is not marked.
    let sql = tcp(web, 40001, db, 5432, SYN);
    let Ok(privnet_core::Encapsulated::Send(t)) =
        sim.nodes[WEB].node.encapsulate(&sql, &mut buf, now)
    else {
        panic!("sealed")
    };
    assert!(!privnet_core::wire::priority_hint(&buf[..t.len]));
    assert_eq!(sim.nodes[WEB].node.stats().priority_sent, 1);
    // A mark set on the way fails the tag: the flag is bound to the message by its nonce.
    let mut forged = buf[..t.len].to_vec();
    forged[3] |= privnet_core::wire::DATA_FLAG_PRIORITY;
    let r = sim.nodes[DB].node.decapsulate(from, &forged, &mut out, now);
    assert_eq!(r.err().map(|e| e.reason()), Some(DropReason::BadTag));
    // The genuine message still opens.
    let got = sim.nodes[DB]
        .node
        .decapsulate(from, &buf[..t.len], &mut out, now)
        .unwrap();
    assert!(matches!(got, privnet_core::Decapsulated::Packet { .. }));
    // A receiver on a policy that does not class the flow high delivers a marked packet as
    // ordinary traffic and counts it: its own policy decides the class.
    let normal = PRIORITY_POLICY.replace("priority = \"high\"", "");
    sim.nodes[DB].node.set_policy(Some(policy(&normal)), now);
    let check2 = tcp(web, 40002, db, 8081, SYN);
    let Ok(privnet_core::Encapsulated::Send(t)) =
        sim.nodes[WEB].node.encapsulate(&check2, &mut buf, now)
    else {
        panic!("sealed")
    };
    assert!(privnet_core::wire::priority_hint(&buf[..t.len]));
    let got = sim.nodes[DB]
        .node
        .decapsulate(from, &buf[..t.len], &mut out, now)
        .unwrap();
    assert!(matches!(got, privnet_core::Decapsulated::Packet { .. }));
    let s = sim.nodes[DB].node.stats();
    assert_eq!((s.priority_received, s.priority_unconfirmed), (1, 1));
    // Without a policy nothing is ever high.
    sim.nodes[OPS].node.set_policy(None, now);
    let p = ipv4_udp(net.overlay[OPS], db, b"x");
    assert!(!sim.nodes[OPS].node.prepare(&p, now).unwrap().high);
}

#[test]
fn priority_is_refused_on_rules_that_do_not_allow_and_changes_no_other_policy_hash() {
    let deny =
        "[[application]]\naction = \"deny\"\nfrom = \"any\"\nto = \"any\"\npriority = \"high\"\n";
    let e = parse_policy(deny, "p.toml").unwrap_err().to_string();
    assert!(
        e.contains("p.toml:5:") && e.contains("`priority` only on `allow` rules"),
        "{e}"
    );
    let bad = "[[application]]\naction = \"allow\"\nfrom = \"any\"\nto = \"any\"\npriority = \"urgent\"\n";
    let e = parse_policy(bad, "p.toml").unwrap_err().to_string();
    assert!(e.contains("`high` or `normal`"), "{e}");
    let plain = "[[application]]\naction = \"allow\"\nfrom = \"any\"\nto = \"any\"\n";
    let normal = format!("{plain}priority = \"normal\"\n");
    let high = format!("{plain}priority = \"high\"\n");
    assert_eq!(policy(plain).hash(), policy(&normal).hash());
    assert_ne!(policy(plain).hash(), policy(&high).hash());
}
