//! The filter end to end on both members: the worked examples of docs/POLICY.md, reload and
//! identity-change re-checks, fragments, related ICMP, refusals, counters.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::policy::compile::compile;
use crate::policy::conntrack::ConntrackConfig;
use crate::policy::flow::{tcp_flags::*, Icmp, Protocol, QuotedFlow};
use crate::policy::parse::parse_policy;
use crate::policy::spec::Tier;
use crate::policy::tests::t0;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

const WEB: &str = "10.0.0.1";
const DB: &str = "10.0.0.2";

const SHOP: &str = r#"
default = "deny"

[[platform]]
id = "no-ssh-from-web"
action = "deny"
from = { groups = { any = ["web"] } }
to = "any"
proto = "tcp"
ports = [22]

[[application]]
id = "web-to-db"
action = "allow"
from = { groups = { any = ["web"] } }
to = { groups = { any = ["db"] } }
proto = "tcp"
ports = [5432]

[[application]]
id = "ssh-for-everyone"
action = "allow"
from = "network"
to = "network"
proto = "tcp"
ports = [22]

[[application]]
id = "no-admin"
action = "reject"
from = "network"
to = "network"
proto = "tcp"
ports = [8080]

[[baseline]]
id = "ping"
action = "allow"
from = "network"
to = "network"
proto = "icmp"
icmp = ["echo-request"]

[[baseline]]
id = "dns"
action = "allow"
from = "network"
to = "network"
proto = "udp"
ports = [53]
"#;

fn policy(text: &str) -> Arc<CompiledPolicy> {
    Arc::new(compile(&parse_policy(text, "p.toml").unwrap(), "p.toml").unwrap())
}

fn web() -> MemberRef {
    MemberRef::new("web-1", &["web"])
}

fn db() -> MemberRef {
    MemberRef::new("db-1", &["db"])
}

/// The two ends: the web member's filter (its peer 2 is db) and the db member's (its peer 1 is
/// web).
fn pair(text: &str) -> (Filter<u32>, Filter<u32>) {
    let t = t0();
    let p = policy(text);
    let mut w = Filter::new(ConntrackConfig::default(), web(), t, [1; 32]);
    let mut d = Filter::new(ConntrackConfig::default(), db(), t, [2; 32]);
    w.set_peer(2, db(), t);
    d.set_peer(1, web(), t);
    w.set_policy(Some(p.clone()));
    d.set_policy(Some(p));
    (w, d)
}

fn rev(f: &Flow, flags: u8) -> Flow {
    Flow {
        src: f.dst,
        dst: f.src,
        src_port: f.dst_port,
        dst_port: f.src_port,
        tcp_flags: flags,
        ..*f
    }
}

fn pass(d: Decision) -> bool {
    d.disposition == Disposition::Pass
}

#[test]
fn web_reaches_db_and_db_cannot_open_connections_to_web() {
    let (mut w, mut d) = pair(SHOP);
    let t = t0();
    let syn = Flow::tcp(ip(WEB), 40000, ip(DB), 5432, SYN);
    // At web, before encryption; at db, after authentication.
    let out = w.check(2, FlowPath::OUTBOUND, &syn, t);
    assert!(
        matches!(out.reason, Reason::Policy(v) if v.is_allow()),
        "{out:?}"
    );
    assert!(pass(d.check(1, FlowPath::INBOUND, &syn, t)));
    // Replies flow: established at both ends, without a policy lookup.
    let synack = rev(&syn, SYN | ACK);
    assert_eq!(
        d.check(1, FlowPath::OUTBOUND, &synack, t).reason,
        Reason::Established
    );
    assert_eq!(
        w.check(2, FlowPath::INBOUND, &synack, t).reason,
        Reason::Established
    );
    for _ in 0..100 {
        assert_eq!(
            w.check(
                2,
                FlowPath::OUTBOUND,
                &Flow {
                    tcp_flags: ACK,
                    ..syn
                },
                t
            )
            .reason,
            Reason::Established
        );
    }
    let c = w.counters();
    assert_eq!(
        c.totals.allowed, 1,
        "established packets are no new decisions"
    );
    assert_eq!(c.totals.established, 101);
    assert_eq!(
        c.rules.iter().find(|r| r.id == "web-to-db").unwrap().hits,
        1
    );
    // db opening a connection to web: no rule allows it; dropped at db before encryption, and
    // web would drop it too.
    let back = Flow::tcp(ip(DB), 5432, ip(WEB), 40001, SYN);
    let v = d.check(1, FlowPath::OUTBOUND, &back, t);
    assert_eq!(v.disposition, Disposition::Drop);
    assert!(matches!(v.reason, Reason::Policy(v) if v.rule().is_none()));
    assert_eq!(
        w.check(2, FlowPath::INBOUND, &back, t).disposition,
        Disposition::Drop
    );
}

#[test]
fn a_platform_deny_the_application_tier_cannot_undo() {
    let (mut w, mut d) = pair(SHOP);
    let t = t0();
    // ssh-for-everyone allows network → network tcp/22, but the platform tier denies web first.
    let ssh = Flow::tcp(ip(WEB), 40000, ip(DB), 22, SYN);
    for (f, path, peer) in [
        (&mut w, FlowPath::OUTBOUND, 2),
        (&mut d, FlowPath::INBOUND, 1),
    ] {
        let dec = f.check(peer, path, &ssh, t);
        let Reason::Policy(v) = dec.reason else {
            panic!("{dec:?}")
        };
        assert_eq!(v.action, Action::Deny);
        assert_eq!(v.tier, Some(Tier::Platform));
    }
    // db may ssh to web: the platform rule does not select it.
    let ssh_back = Flow::tcp(ip(DB), 40000, ip(WEB), 22, SYN);
    assert!(pass(d.check(1, FlowPath::OUTBOUND, &ssh_back, t)));
    assert_eq!(w.counters().drops_by_tier[Tier::Platform.index()], 1);
}

#[test]
fn reject_udp_and_icmp_rules() {
    let (mut w, mut d) = pair(SHOP);
    let t = t0();
    let admin = Flow::tcp(ip(WEB), 40000, ip(DB), 8080, SYN);
    assert_eq!(
        w.check(2, FlowPath::OUTBOUND, &admin, t).disposition,
        Disposition::Reject
    );
    let dns = Flow::udp(ip(WEB), 5353, ip(DB), 53);
    assert!(pass(w.check(2, FlowPath::OUTBOUND, &dns, t)));
    assert!(pass(d.check(1, FlowPath::INBOUND, &dns, t)));
    let answer = Flow::udp(ip(DB), 53, ip(WEB), 5353);
    assert_eq!(
        d.check(1, FlowPath::OUTBOUND, &answer, t).reason,
        Reason::Established
    );
    let other_udp = Flow::udp(ip(WEB), 5353, ip(DB), 54);
    assert_eq!(
        w.check(2, FlowPath::OUTBOUND, &other_udp, t).disposition,
        Disposition::Drop
    );
    let ping = Flow::icmp(ip(WEB), ip(DB), 8, 0, Some(9));
    assert!(pass(w.check(2, FlowPath::OUTBOUND, &ping, t)));
    assert!(pass(d.check(1, FlowPath::INBOUND, &ping, t)));
    let pong = Flow::icmp(ip(DB), ip(WEB), 0, 0, Some(9));
    assert_eq!(
        d.check(1, FlowPath::OUTBOUND, &pong, t).reason,
        Reason::Established
    );
    // A timestamp request is not an echo request: denied.
    let ts = Flow::icmp(ip(WEB), ip(DB), 13, 0, None);
    assert_eq!(
        w.check(2, FlowPath::OUTBOUND, &ts, t).disposition,
        Disposition::Drop
    );
}

#[test]
fn icmp_errors_about_a_tracked_flow_are_related() {
    let (mut w, _) = pair(SHOP);
    let t = t0();
    let dns = Flow::udp(ip(WEB), 5353, ip(DB), 53);
    assert!(pass(w.check(2, FlowPath::OUTBOUND, &dns, t)));
    let mut unreachable = Flow::icmp(ip(DB), ip(WEB), 3, 3, None);
    unreachable.icmp = Some(Icmp {
        ty: 3,
        code: 3,
        ident: None,
        quoted: Some(QuotedFlow {
            src: ip(WEB),
            dst: ip(DB),
            proto: Protocol::UDP,
            src_port: Some(5353),
            dst_port: Some(53),
        }),
    });
    assert_eq!(
        w.check(2, FlowPath::INBOUND, &unreachable, t).reason,
        Reason::Related
    );
    // An error about a flow nobody opened is just an ICMP packet: no rule allows it.
    let mut stray = unreachable;
    stray.icmp = stray.icmp.map(|i| Icmp {
        quoted: i.quoted.map(|q| QuotedFlow {
            dst_port: Some(99),
            ..q
        }),
        ..i
    });
    assert_eq!(
        w.check(2, FlowPath::INBOUND, &stray, t).disposition,
        Disposition::Drop
    );
}

#[test]
fn later_fragments_follow_the_first_or_are_dropped() {
    let (mut w, _) = pair(SHOP);
    let t = t0();
    let first = Flow::udp(ip(WEB), 5353, ip(DB), 53).with_fragment(Fragment::First { ident: 5 });
    let mut later = Flow::other(ip(WEB), ip(DB), Protocol::UDP);
    later.fragment = Fragment::NonFirst { ident: 5 };
    // Before the first fragment: dropped (fail closed).
    assert_eq!(
        w.check(2, FlowPath::OUTBOUND, &later, t).reason,
        Reason::FragmentWithoutFirst
    );
    assert!(pass(w.check(2, FlowPath::OUTBOUND, &first, t)));
    assert_eq!(
        w.check(2, FlowPath::OUTBOUND, &later, t).reason,
        Reason::Fragment
    );
    // The first fragment of a denied datagram lets nothing through.
    let bad = Flow::udp(ip(WEB), 5353, ip(DB), 54).with_fragment(Fragment::First { ident: 6 });
    assert_eq!(
        w.check(2, FlowPath::OUTBOUND, &bad, t).disposition,
        Disposition::Drop
    );
    let mut bad_later = later;
    bad_later.fragment = Fragment::NonFirst { ident: 6 };
    assert_eq!(
        w.check(2, FlowPath::OUTBOUND, &bad_later, t).disposition,
        Disposition::Drop
    );
}

#[test]
fn a_reload_that_removes_an_allow_cuts_the_running_flow() {
    let (mut w, mut d) = pair(SHOP);
    let t = t0();
    let syn = Flow::tcp(ip(WEB), 40000, ip(DB), 5432, SYN);
    let dns = Flow::udp(ip(WEB), 5353, ip(DB), 53);
    assert!(pass(w.check(2, FlowPath::OUTBOUND, &syn, t)));
    assert!(pass(d.check(1, FlowPath::INBOUND, &syn, t)));
    assert!(pass(d.check(1, FlowPath::INBOUND, &dns, t)));
    // The same policy, reloaded (a new Arc, equal hash): nothing is cut.
    d.set_policy(Some(policy(SHOP)));
    assert_eq!(d.recheck(t).count(), 0);
    assert_eq!(
        d.check(
            1,
            FlowPath::INBOUND,
            &Flow {
                tcp_flags: ACK,
                ..syn
            },
            t
        )
        .reason,
        Reason::Established
    );
    // Without `web-to-db`.
    let without = SHOP.replace(
        "id = \"web-to-db\"\naction = \"allow\"",
        "id = \"web-to-db\"\naction = \"deny\"",
    );
    d.set_policy(Some(policy(&without)));
    let cuts: Vec<Cut<u32>> = d.recheck(t).collect();
    assert_eq!(cuts.len(), 1, "{cuts:?}");
    assert_eq!(cuts[0].flow.dst_port, Some(5432));
    assert_eq!(cuts[0].peer, 1);
    assert_eq!(cuts[0].verdict.action, Action::Deny);
    // DNS is still allowed and still tracked; the cut flow's next packet is a new (denied) flow.
    assert_eq!(
        d.check(1, FlowPath::INBOUND, &dns, t).reason,
        Reason::Established
    );
    let next = Flow {
        tcp_flags: ACK,
        ..syn
    };
    assert_eq!(
        d.check(1, FlowPath::INBOUND, &next, t).disposition,
        Disposition::Drop
    );
    assert_eq!(d.counters().totals.cut, 1);
    // Counters of surviving ids carried over.
    assert_eq!(
        d.counters()
            .rules
            .iter()
            .find(|r| r.id == "dns")
            .unwrap()
            .hits,
        1
    );
    // The lazy path cuts too, at the first packet, when nobody ran recheck.
    w.set_policy(Some(policy(&without)));
    let dec = w.check(2, FlowPath::OUTBOUND, &next, t);
    assert!(
        matches!(dec.reason, Reason::Cut(v) if v.action == Action::Deny),
        "{dec:?}"
    );
}

#[test]
fn a_group_change_rechecks_only_that_peers_flows() {
    let t = t0();
    let p = policy(SHOP);
    let mut d = Filter::new(ConntrackConfig::default(), db(), t, [3; 32]);
    d.set_policy(Some(p));
    d.set_peer(1, web(), t);
    d.set_peer(3, MemberRef::new("web-2", &["web"]), t);
    let from1 = Flow::tcp(ip(WEB), 40000, ip(DB), 5432, SYN);
    let from3 = Flow::tcp(ip("10.0.0.3"), 40000, ip(DB), 5432, SYN);
    assert!(pass(d.check(1, FlowPath::INBOUND, &from1, t)));
    assert!(pass(d.check(3, FlowPath::INBOUND, &from3, t)));
    // The same identity again changes nothing.
    d.set_peer(1, web(), t);
    assert_eq!(d.recheck_peer(&1, t).count(), 0);
    // web-1 loses the web group.
    d.set_peer(1, MemberRef::new("web-1", &[]), t);
    let cuts: Vec<Cut<u32>> = d.recheck_peer(&1, t).collect();
    assert_eq!(cuts.len(), 1);
    assert_eq!(cuts[0].peer, 1);
    // web-2's flow is untouched and passes without a re-evaluation.
    let allowed_before = d.counters().totals.allowed;
    assert_eq!(
        d.check(
            3,
            FlowPath::INBOUND,
            &Flow {
                tcp_flags: ACK,
                ..from3
            },
            t
        )
        .reason,
        Reason::Established
    );
    assert_eq!(d.counters().totals.allowed, allowed_before);
    assert_eq!(d.conntrack().len(), 1);
}

#[test]
fn a_deny_for_one_member_overrides_a_group_allow() {
    let text = r#"
[[application]]
id = "not-web-9"
action = "deny"
from = { members = ["web-9"] }
to = "any"

[[application]]
id = "web-to-db"
action = "allow"
from = { groups = { any = ["web"] } }
to = { groups = { any = ["db"] } }
"#;
    let t = t0();
    let mut d = Filter::new(ConntrackConfig::default(), db(), t, [4; 32]);
    d.set_policy(Some(policy(text)));
    d.set_peer(1, web(), t);
    d.set_peer(9, MemberRef::new("web-9", &["web"]), t);
    let f1 = Flow::tcp(ip(WEB), 1, ip(DB), 5432, SYN);
    let f9 = Flow::tcp(ip("10.0.0.9"), 1, ip(DB), 5432, SYN);
    assert!(pass(d.check(1, FlowPath::INBOUND, &f1, t)));
    let dec = d.check(9, FlowPath::INBOUND, &f9, t);
    assert_eq!(dec.disposition, Disposition::Drop);
    let Reason::Policy(v) = dec.reason else {
        panic!()
    };
    assert_eq!(
        d.policy().unwrap().rule(v.rule().unwrap()).unwrap().id,
        "not-web-9"
    );
}

#[test]
fn no_policy_unknown_peers_and_refusals() {
    let t = t0();
    let mut f = Filter::new(
        ConntrackConfig {
            max_flows_per_peer: 2,
            ..ConntrackConfig::default()
        },
        web(),
        t,
        [5; 32],
    );
    let syn = |p| Flow::tcp(ip(WEB), p, ip(DB), 5432, SYN);
    assert_eq!(
        f.check(2, FlowPath::OUTBOUND, &syn(1), t).reason,
        Reason::NoPolicy
    );
    f.set_policy(Some(policy(SHOP)));
    assert_eq!(
        f.check(2, FlowPath::OUTBOUND, &syn(1), t).reason,
        Reason::UnknownPeer
    );
    f.set_peer(2, db(), t);
    assert!(pass(f.check(2, FlowPath::OUTBOUND, &syn(1), t)));
    assert!(pass(f.check(2, FlowPath::OUTBOUND, &syn(2), t)));
    assert_eq!(
        f.check(2, FlowPath::OUTBOUND, &syn(3), t).reason,
        Reason::Refused(Refused::PeerQuota)
    );
    assert_eq!(f.counters().totals.refused, 1);
    assert_eq!(f.counters().conntrack.refused_peer_quota, 1);
    // Routed ends need no identity: a host behind us reaching db is judged by address rules only
    // (none allow it here).
    let routed = FlowPath {
        local: EndKind::Routed,
        ..FlowPath::OUTBOUND
    };
    let from_lan = Flow::tcp(ip("192.168.1.5"), 1, ip(DB), 5432, SYN);
    assert_eq!(
        f.check(2, routed, &from_lan, t).disposition,
        Disposition::Drop
    );
    f.remove_peer(&2);
    assert!(f.conntrack().is_empty());
    // Timers: the tracker's sweep.
    f.set_peer(2, db(), t);
    assert!(pass(f.check(2, FlowPath::OUTBOUND, &syn(1), t)));
    let due = f.poll_timeout().unwrap();
    f.handle_timeout(due + Duration::from_secs(200));
    f.handle_timeout(due + Duration::from_secs(201));
    assert!(f.conntrack().is_empty());
}

#[test]
fn live_explanation_shows_the_tracked_flow_and_the_rules() {
    let (mut w, _) = pair(SHOP);
    let t = t0();
    let syn = Flow::tcp(ip(WEB), 40000, ip(DB), 5432, SYN);
    assert!(w.explain(&2, FlowPath::OUTBOUND, &syn, t).tracked.is_none());
    w.check(2, FlowPath::OUTBOUND, &syn, t);
    let e = w.explain(&2, FlowPath::OUTBOUND, &syn, t);
    assert!(e.tracked.is_some());
    let p = e.policy.unwrap();
    assert_eq!(p.decided_by, "web-to-db");
}
