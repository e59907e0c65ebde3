//! The connection tracker with a fake clock: every TCP transition through the table, timeouts,
//! RST, UDP and ICMP, per-peer quota, table full keeps established flows, the new-flow rate limit,
//! the sweep, ICMP errors, fragments.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::*;
use crate::policy::flow::{tcp_flags::*, Fragment, QuotedFlow};
use crate::policy::tests::t0;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

const A: &str = "10.0.0.1";
const B: &str = "10.0.0.2";

fn syn(sp: u16, dp: u16) -> Flow {
    Flow::tcp(ip(A), sp, ip(B), dp, SYN)
}

fn back(f: &Flow, flags: u8) -> Flow {
    Flow {
        src: f.dst,
        dst: f.src,
        src_port: f.dst_port,
        dst_port: f.src_port,
        tcp_flags: flags,
        ..*f
    }
}

fn fwd(f: &Flow, flags: u8) -> Flow {
    Flow {
        tcp_flags: flags,
        ..*f
    }
}

fn small(max: usize, per_peer: usize) -> ConntrackConfig {
    ConntrackConfig {
        max_flows: max,
        max_flows_per_peer: per_peer,
        new_flows_per_sec: 1_000_000,
        new_flow_burst: 1_000_000,
        ..ConntrackConfig::default()
    }
}

fn state(ct: &Conntrack<u32>, id: FlowId, now: Instant) -> FlowState {
    ct.get(id, now).unwrap().state
}

#[test]
fn tcp_lifecycle_through_the_table() {
    let t = t0();
    let mut ct = Conntrack::<u32>::new(small(16, 16), t, [7; 32]);
    let s = syn(40000, 443);
    let id = ct.insert(1, &s, FlowMeta::default(), t).unwrap();
    assert_eq!(state(&ct, id, t), FlowState::Tcp(TcpState::SynSent));
    let steps: &[(Flow, Side, TcpState)] = &[
        (back(&s, SYN | ACK), Side::Reply, TcpState::SynRecv),
        (fwd(&s, ACK), Side::Original, TcpState::Established),
        (back(&s, ACK | PSH), Side::Reply, TcpState::Established),
        (fwd(&s, FIN | ACK), Side::Original, TcpState::FinWait),
        (back(&s, ACK), Side::Reply, TcpState::CloseWait),
        (back(&s, FIN | ACK), Side::Reply, TcpState::LastAck),
        (fwd(&s, ACK), Side::Original, TcpState::TimeWait),
        (fwd(&s, SYN), Side::Original, TcpState::SynSent),
    ];
    for (i, (pkt, side, want)) in steps.iter().enumerate() {
        let hit = ct.lookup(&1, pkt, t).unwrap_or_else(|| panic!("step {i}"));
        assert_eq!(hit.side, *side, "step {i}");
        assert_eq!(state(&ct, id, t), FlowState::Tcp(*want), "step {i}");
    }
    assert!(ct.get(id, t).unwrap().assured);
    // The original orientation is kept.
    let tf = ct.get(id, t).unwrap();
    assert_eq!((tf.flow.src, tf.flow.dst_port), (ip(A), Some(443)));
    assert_eq!(tf.peer, 1);
}

#[test]
fn each_state_has_its_linux_timeout() {
    let t = t0();
    let cfg = small(64, 64);
    let tcp = cfg.tcp;
    // (first packet's flags, packets after it, timeout of the resulting state)
    type Case = (u8, Vec<(bool, u8)>, Duration);
    let cases: Vec<Case> = vec![
        (SYN, vec![], tcp.syn_sent),
        (SYN, vec![(false, SYN | ACK)], tcp.syn_recv),
        (ACK, vec![], tcp.unacknowledged), // picked up mid-stream, no reply yet
        (ACK, vec![(false, ACK)], tcp.established),
        (SYN, vec![(false, SYN | ACK), (true, ACK)], tcp.established),
        (
            SYN,
            vec![(false, SYN | ACK), (true, ACK), (true, FIN)],
            tcp.fin_wait,
        ),
        (
            SYN,
            vec![(false, SYN | ACK), (true, ACK), (true, FIN), (false, ACK)],
            tcp.close_wait,
        ),
        (
            SYN,
            vec![(false, SYN | ACK), (true, ACK), (true, FIN), (false, FIN)],
            tcp.last_ack,
        ),
        (
            SYN,
            vec![
                (false, SYN | ACK),
                (true, ACK),
                (true, FIN),
                (false, FIN),
                (true, ACK),
            ],
            tcp.time_wait,
        ),
        (SYN, vec![(false, RST)], tcp.close),
    ];
    for (n, (first, pkts, timeout)) in cases.into_iter().enumerate() {
        let mut ct = Conntrack::<u32>::new(cfg, t, [n as u8; 32]);
        let s = syn(1000 + n as u16, 80);
        ct.insert(9, &fwd(&s, first), FlowMeta::default(), t)
            .unwrap();
        for (orig, flags) in &pkts {
            let p = if *orig {
                fwd(&s, *flags)
            } else {
                back(&s, *flags)
            };
            assert!(ct.lookup(&9, &p, t).is_some(), "case {n}");
        }
        let id = ct.next_flow(0).unwrap().0;
        assert_eq!(ct.get(id, t).unwrap().expires_in, timeout, "case {n}");
        // Alive at its timeout, gone one second after (1 s resolution).
        let probe = |ct: &mut Conntrack<u32>, at: Instant| {
            ct.handle_timeout(at);
            ct.len()
        };
        assert_eq!(probe(&mut ct, t + timeout), 1, "case {n}");
        assert_eq!(
            probe(&mut ct, t + timeout + Duration::from_secs(2)),
            0,
            "case {n}"
        );
        assert_eq!(ct.stats().expired, 1);
    }
}

#[test]
fn rst_opens_nothing_and_a_reverse_syn_after_close_is_a_new_flow() {
    let t = t0();
    let mut ct = Conntrack::<u32>::new(small(16, 16), t, [1; 32]);
    let s = syn(1, 22);
    assert_eq!(
        ct.insert(1, &fwd(&s, RST), FlowMeta::default(), t),
        Err(Refused::NotTrackable)
    );
    assert!(!Conntrack::<u32>::trackable(&fwd(&s, RST | ACK)));
    ct.insert(1, &s, FlowMeta::default(), t).unwrap();
    ct.lookup(&1, &back(&s, RST), t).unwrap();
    // The responder now opens the other way on the same ports: not a reply of the old flow.
    assert_eq!(ct.lookup(&1, &back(&s, SYN), t), None);
    assert!(ct.is_empty());
}

#[test]
fn udp_unreplied_then_assured() {
    let t = t0();
    let mut ct = Conntrack::<u32>::new(small(16, 16), t, [2; 32]);
    let q = Flow::udp(ip(A), 5000, ip(B), 53);
    let id = ct.insert(1, &q, FlowMeta::default(), t).unwrap();
    assert_eq!(ct.get(id, t).unwrap().expires_in.as_secs(), 30);
    let r = Flow::udp(ip(B), 53, ip(A), 5000);
    assert_eq!(
        ct.lookup(&1, &r, t + Duration::from_secs(10)).unwrap().side,
        Side::Reply
    );
    let tf = ct.get(id, t + Duration::from_secs(10)).unwrap();
    assert!(tf.assured);
    assert_eq!(tf.expires_in.as_secs(), 120);
    assert!(ct.lookup(&1, &q, t + Duration::from_secs(129)).is_some());
    assert!(ct.lookup(&1, &q, t + Duration::from_secs(300)).is_none());
    assert_eq!(ct.stats().expired, 1);
}

#[test]
fn icmp_echo_request_reply_and_nothing_else() {
    let t = t0();
    let mut ct = Conntrack::<u32>::new(small(16, 16), t, [3; 32]);
    let req = Flow::icmp(ip(A), ip(B), 8, 0, Some(77));
    let rep = Flow::icmp(ip(B), ip(A), 0, 0, Some(77));
    let unreach = Flow::icmp(ip(B), ip(A), 3, 1, None);
    assert_eq!(
        ct.insert(1, &rep, FlowMeta::default(), t),
        Err(Refused::NotTrackable)
    );
    assert_eq!(
        ct.insert(1, &unreach, FlowMeta::default(), t),
        Err(Refused::NotTrackable)
    );
    ct.insert(1, &req, FlowMeta::default(), t).unwrap();
    assert_eq!(ct.lookup(&1, &rep, t).unwrap().side, Side::Reply);
    assert_eq!(ct.lookup(&1, &req, t).unwrap().side, Side::Original);
    // An echo request from the responder with the same identifier is not a reply.
    let rev = Flow::icmp(ip(B), ip(A), 8, 0, Some(77));
    assert!(ct.lookup(&1, &rev, t).is_none());
    // Another identifier is another flow.
    assert!(ct
        .lookup(&1, &Flow::icmp(ip(B), ip(A), 0, 0, Some(78)), t)
        .is_none());
    let v6 = Flow::icmp(ip("2001:db8::1"), ip("2001:db8::2"), 128, 0, Some(1));
    ct.insert(1, &v6, FlowMeta::default(), t).unwrap();
    let v6r = Flow::icmp(ip("2001:db8::2"), ip("2001:db8::1"), 129, 0, Some(1));
    assert!(ct.lookup(&1, &v6r, t).is_some());
}

#[test]
fn icmp_errors_of_a_tracked_flow_are_related() {
    let t = t0();
    let mut ct = Conntrack::<u32>::new(small(16, 16), t, [4; 32]);
    let q = Flow::udp(ip(A), 5000, ip(B), 9999);
    ct.insert(1, &q, FlowMeta::default(), t).unwrap();
    let quoted = QuotedFlow {
        src: ip(A),
        dst: ip(B),
        proto: Protocol::UDP,
        src_port: Some(5000),
        dst_port: Some(9999),
    };
    let mut err = Flow::icmp(ip(B), ip(A), 3, 3, None);
    err.icmp = err.icmp.map(|i| Icmp {
        quoted: Some(quoted),
        ..i
    });
    assert!(ct.related(&1, &err, t).is_some());
    // Not for another peer, not sent the wrong way, not for an unknown flow.
    assert!(ct.related(&2, &err, t).is_none());
    let mut wrong_way = err;
    wrong_way.dst = ip("10.0.0.3");
    assert!(ct.related(&1, &wrong_way, t).is_none());
    let mut other = err;
    other.icmp = other.icmp.map(|i| Icmp {
        quoted: Some(QuotedFlow {
            dst_port: Some(1),
            ..quoted
        }),
        ..i
    });
    assert!(ct.related(&1, &other, t).is_none());
}

#[test]
fn per_peer_quota_leaves_room_for_the_others() {
    let t = t0();
    let mut ct = Conntrack::<u32>::new(small(100, 10), t, [5; 32]);
    for p in 0..10u16 {
        ct.insert(1, &syn(p, 80), FlowMeta::default(), t).unwrap();
    }
    assert_eq!(
        ct.insert(1, &syn(10, 80), FlowMeta::default(), t),
        Err(Refused::PeerQuota)
    );
    assert_eq!(ct.stats().refused_peer_quota, 1);
    let other = Flow::tcp(ip("10.0.0.9"), 1, ip(B), 80, SYN);
    assert!(ct.insert(2, &other, FlowMeta::default(), t).is_ok());
    assert_eq!(ct.peer_flow_count(&1), 10);
    assert_eq!(ct.peer_flow_count(&2), 1);
    // Expired flows of the peer are reclaimed when it hits the quota.
    let later = t + Duration::from_secs(200);
    assert!(ct
        .insert(1, &syn(11, 80), FlowMeta::default(), later)
        .is_ok());
    assert_eq!(ct.peer_flow_count(&1), 1);
}

#[test]
fn a_full_table_refuses_new_flows_and_keeps_established_ones() {
    let t = t0();
    let mut ct = Conntrack::<u32>::new(small(8, 8), t, [6; 32]);
    let flows: Vec<Flow> = (0..8).map(|p| syn(p, 80)).collect();
    for f in &flows {
        ct.insert(
            u32::from(f.src_port.unwrap() % 2),
            f,
            FlowMeta::default(),
            t,
        )
        .unwrap();
    }
    for f in &flows {
        let peer = u32::from(f.src_port.unwrap() % 2);
        ct.lookup(&peer, &back(f, SYN | ACK), t).unwrap();
        ct.lookup(&peer, &fwd(f, ACK), t).unwrap();
    }
    assert_eq!(
        ct.insert(3, &syn(100, 80), FlowMeta::default(), t),
        Err(Refused::TableFull)
    );
    assert_eq!(ct.stats().refused_table_full, 1);
    let later = t + Duration::from_secs(3600);
    for f in &flows {
        let peer = u32::from(f.src_port.unwrap() % 2);
        assert!(ct.lookup(&peer, &back(f, ACK), later).is_some());
    }
    assert_eq!(ct.len(), 8);
}

#[test]
fn new_flow_rate_is_limited_per_peer() {
    let t = t0();
    let cfg = ConntrackConfig {
        new_flows_per_sec: 10,
        new_flow_burst: 5,
        ..small(1000, 1000)
    };
    let mut ct = Conntrack::<u32>::new(cfg, t, [8; 32]);
    for p in 0..5 {
        ct.insert(1, &syn(p, 80), FlowMeta::default(), t).unwrap();
    }
    assert_eq!(
        ct.insert(1, &syn(5, 80), FlowMeta::default(), t),
        Err(Refused::NewFlowRate)
    );
    // Another peer has its own bucket.
    let other = Flow::tcp(ip("10.0.0.9"), 1, ip(B), 80, SYN);
    assert!(ct.insert(2, &other, FlowMeta::default(), t).is_ok());
    // 100 ms later one token is back (10/s), not two.
    let t1 = t + Duration::from_millis(100);
    assert!(ct.insert(1, &syn(6, 80), FlowMeta::default(), t1).is_ok());
    assert_eq!(
        ct.insert(1, &syn(7, 80), FlowMeta::default(), t1),
        Err(Refused::NewFlowRate)
    );
    assert_eq!(ct.stats().refused_rate, 2);
    // Established flows are not rate limited.
    for _ in 0..100 {
        assert!(ct.lookup(&1, &back(&syn(0, 80), SYN | ACK), t1).is_some());
    }
}

#[test]
fn sweep_is_due_from_poll_timeout_and_expires_everything_eventually() {
    let t = t0();
    let mut ct = Conntrack::<u32>::new(small(50_000, 50_000), t, [9; 32]);
    assert_eq!(ct.poll_timeout(), None);
    for p in 0..20_000u16 {
        ct.insert(1, &Flow::udp(ip(A), p, ip(B), 53), FlowMeta::default(), t)
            .unwrap();
    }
    let due = ct.poll_timeout().unwrap();
    assert_eq!(due, t + Duration::from_secs(1));
    // Drive the timer like a node would, with a bounded loop.
    let mut now = due;
    for _ in 0..200 {
        ct.handle_timeout(now);
        match ct.poll_timeout() {
            Some(next) => now = next.max(now + Duration::from_millis(1)),
            None => break,
        }
    }
    assert!(ct.is_empty(), "{} left", ct.len());
    assert_eq!(ct.stats().expired, 20_000);
    assert!(
        now < t + Duration::from_secs(31 + 12),
        "took until {:?}",
        now - t
    );
}

#[test]
fn remove_peer_and_flow_ids() {
    let t = t0();
    let mut ct = Conntrack::<u32>::new(small(64, 64), t, [10; 32]);
    let ids: Vec<FlowId> = (0..5)
        .map(|p| ct.insert(1, &syn(p, 80), FlowMeta::default(), t).unwrap())
        .collect();
    ct.insert(2, &Flow::udp(ip(B), 1, ip(A), 2), FlowMeta::default(), t)
        .unwrap();
    assert_eq!(ct.peer_flows(&1).len(), 5);
    assert!(ct.remove(ids[2]));
    assert!(!ct.remove(ids[2]), "a stale id names nothing");
    assert_eq!(ct.peer_flows(&1).len(), 4);
    assert_eq!(ct.remove_peer(&1), 4);
    assert_eq!(ct.len(), 1);
    assert!(ct.get(ids[0], t).is_none());
    // The cursor visits what is left.
    let (id, next) = ct.next_flow(0).unwrap();
    assert_eq!(ct.get(id, t).unwrap().peer, 2);
    assert!(ct.next_flow(next).is_none());
    // Another peer's packet does not hit peer 2's flow.
    assert!(ct.lookup(&3, &Flow::udp(ip(B), 1, ip(A), 2), t).is_none());
}

#[test]
fn later_fragments_follow_an_allowed_first_fragment_only() {
    let t = t0();
    let mut ct = Conntrack::<u32>::new(small(16, 16), t, [11; 32]);
    let first = Flow::udp(ip(A), 5000, ip(B), 53).with_fragment(Fragment::First { ident: 42 });
    let mut later = Flow::other(ip(A), ip(B), Protocol::UDP);
    later.fragment = Fragment::NonFirst { ident: 42 };
    assert!(!ct.fragment_follows(&later, 42, t));
    ct.remember_fragment(&first, 42, t);
    assert!(ct.fragment_follows(&later, 42, t));
    assert!(!ct.fragment_follows(&later, 43, t), "another datagram");
    let mut rev = later;
    rev.src = ip(B);
    rev.dst = ip(A);
    assert!(!ct.fragment_follows(&rev, 42, t), "the other direction");
    assert!(ct.fragment_follows(&later, 42, t + Duration::from_secs(30)));
    assert!(!ct.fragment_follows(&later, 42, t + Duration::from_secs(32)));
}

#[test]
fn memory_is_reserved_up_front_and_bounded() {
    let t = t0();
    let ct = Conntrack::<u32>::new(small(1 << 16, 1 << 16), t, [0; 32]);
    assert_eq!(ct.bytes_per_flow(), 64 + 16);
    assert!(ct.memory_bytes() < (1 << 16) * 80 + 100_000);
}
