//! Properties shared by the property tests and the fuzz targets (feature `test-util`; not the
//! product). Each takes arbitrary bytes, builds inputs with the generators of `reference.rs` and
//! panics when a property fails.

use std::time::{Duration, Instant};

use super::compile::{compile, compile_with_budget, CompiledPolicy};
use super::conntrack::ConntrackConfig;
use super::eval::{Decider, End};
use super::filter::{Disposition, Filter, Reason};
use super::flow::{Direction, EndKind, Flow, FlowPath, MemberRef};
use super::reference::{gen_flow, gen_member, gen_spec, reference_verdict, ByteSource, RefDecider};

fn end(kind: u8, m: &MemberRef) -> End<'_> {
    match kind % 3 {
        0 => End::Local(m),
        1 => End::Member(m),
        _ => End::External,
    }
}

/// The compiled engine (both evaluation strategies) agrees with the reference evaluator, and the
/// explanation with both, on a random policy (up to `max_rules` per tier; with `budget`, a tiny
/// interval-index budget forces residual entries) and `flows` random flows and identities.
/// Returns the number of flows checked.
pub fn check_agreement(
    bytes: &[u8],
    flows: usize,
    max_rules: usize,
    budget: Option<usize>,
) -> usize {
    let mut u = ByteSource::new(bytes);
    let spec = gen_spec(&mut u, max_rules);
    let compiled = match budget {
        Some(b) => compile_with_budget(&spec, "gen", b),
        None => compile(&spec, "gen"),
    };
    let c = match compiled {
        Ok(c) => c,
        Err(e) => panic!("a generated policy does not compile: {e}\n{spec:#?}"),
    };
    let forced = [Some(true), Some(false)].map(|force| {
        let mut f = c.clone();
        f.force_sparse = force;
        f
    });
    for _ in 0..flows {
        let flow = gen_flow(&mut u);
        let (a, b) = (gen_member(&mut u), gen_member(&mut u));
        let (ka, kb) = (u.byte(), u.byte());
        let (src, dst) = (end(ka, &a), end(kb, &b));
        let got = c.evaluate_ends(&flow, src, dst);
        let want = reference_verdict(&spec, &flow, src, dst);
        for f in &forced {
            assert_eq!(
                f.evaluate_ends(&flow, src, dst),
                got,
                "strategy {:?}",
                f.force_sparse
            );
        }
        let pos = |r| c.rule(r).map(|i| (i.tier, i.position));
        let got_decider = match got.decided_by {
            Decider::Rule(r) => pos(r).map(|(t, p)| RefDecider::Rule(t, p)),
            Decider::Default => Some(RefDecider::Default),
            Decider::UnknownProtocol => Some(RefDecider::Unknown),
            Decider::NonFirstFragment => Some(RefDecider::NonFirst),
        };
        assert_eq!(
            (got.action, got_decider, got.logged.and_then(pos)),
            (want.action, Some(want.decided_by), want.logged),
            "policy {spec:#?}\nflow {flow:?}\nsrc {src:?}\ndst {dst:?}"
        );
        let e = c.explain(&flow, src, dst);
        assert_eq!(e.verdict, got, "{e}");
    }
    flows
}

/// Drive a [`Filter`] with random packets, time steps, reloads, identity changes and peer
/// removals; after every step the tracker stays within its bounds, and every new-flow decision is
/// the policy's own verdict for that flow. Returns the number of steps.
pub fn drive_filter(bytes: &[u8], origin: Instant) -> usize {
    let mut u = ByteSource::new(bytes);
    let cfg = ConntrackConfig {
        max_flows: 48,
        max_flows_per_peer: 16,
        new_flows_per_sec: 40,
        new_flow_burst: 20,
        fragment_slots: 16,
        ..ConntrackConfig::default()
    };
    let local = gen_member(&mut u);
    let mut filter: Filter<u8> = Filter::new(cfg, local.clone(), origin, [7; 32]);
    let mut peers: Vec<MemberRef> = (0..3).map(|_| gen_member(&mut u)).collect();
    for (i, m) in peers.iter().enumerate() {
        filter.set_peer(i as u8, m.clone(), origin);
    }
    let mut policy: Option<std::sync::Arc<CompiledPolicy>> = None;
    let mut now = origin;
    let steps = 32 + u.below(96);
    for _ in 0..steps {
        match u.below(24) {
            0 => {
                let spec = gen_spec(&mut u, 5);
                policy = compile(&spec, "gen").ok().map(std::sync::Arc::new);
                filter.set_policy(policy.clone());
                let max = u.below(8);
                for cut in filter.recheck(now).take(max) {
                    assert!(!cut.verdict.is_allow());
                }
            }
            1 => now += Duration::from_millis(u.below(200_000) as u64),
            2 => filter.handle_timeout(now),
            3 => {
                let p = u.below(peers.len());
                peers[p] = gen_member(&mut u);
                filter.set_peer(p as u8, peers[p].clone(), now);
                for cut in filter.recheck_peer(&(p as u8), now) {
                    assert_eq!(usize::from(cut.peer), p);
                }
            }
            4 => {
                let p = u.below(peers.len());
                filter.remove_peer(&(p as u8));
                assert_eq!(filter.conntrack().peer_flow_count(&(p as u8)), 0);
                filter.set_peer(p as u8, peers[p].clone(), now);
            }
            _ => {
                let p = u.below(peers.len());
                let path = FlowPath {
                    direction: if u.chance(50) {
                        Direction::Outbound
                    } else {
                        Direction::Inbound
                    },
                    local: if u.chance(80) {
                        EndKind::Member
                    } else {
                        EndKind::Routed
                    },
                    remote: if u.chance(80) {
                        EndKind::Member
                    } else {
                        EndKind::Routed
                    },
                };
                let flow = gen_flow(&mut u);
                let d = filter.check(p as u8, path, &flow, now);
                check_decision(&d, policy.as_deref(), &local, &peers[p], path, &flow);
            }
        }
        let ct = filter.conntrack();
        assert!(ct.len() <= cfg.max_flows);
        for p in 0..peers.len() {
            assert!(ct.peer_flow_count(&(p as u8)) <= cfg.max_flows_per_peer);
        }
    }
    steps
}

fn check_decision(
    d: &super::filter::Decision,
    policy: Option<&CompiledPolicy>,
    local: &MemberRef,
    peer: &MemberRef,
    path: FlowPath,
    flow: &Flow,
) {
    match (d.reason, policy) {
        (Reason::NoPolicy, p) => {
            assert!(p.is_none());
            assert_eq!(d.disposition, Disposition::Pass);
        }
        (Reason::Policy(v), Some(p)) => {
            let l = match path.local {
                EndKind::Member => End::Local(local),
                EndKind::Routed => End::External,
            };
            let r = match path.remote {
                EndKind::Member => End::Member(peer),
                EndKind::Routed => End::External,
            };
            let (src, dst) = match path.direction {
                Direction::Outbound => (l, r),
                Direction::Inbound => (r, l),
            };
            assert_eq!(v, p.evaluate_ends(flow, src, dst));
            let want = match v.action {
                super::spec::Action::Allow => Disposition::Pass,
                super::spec::Action::Reject => Disposition::Reject,
                _ => Disposition::Drop,
            };
            assert_eq!(d.disposition, want);
        }
        (Reason::Cut(v), _) => {
            assert!(!v.is_allow());
            assert_ne!(d.disposition, Disposition::Pass);
        }
        (Reason::Refused(_) | Reason::FragmentWithoutFirst, _) => {
            assert_eq!(d.disposition, Disposition::Drop);
        }
        (Reason::Established | Reason::Related | Reason::Fragment, _) => {
            assert_eq!(d.disposition, Disposition::Pass);
        }
        (reason, p) => panic!("unexpected {reason:?} with policy {}", p.is_some()),
    }
}
