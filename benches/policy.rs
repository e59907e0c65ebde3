//! Criterion benchmarks of the policy engine: a new flow and an established flow against a
//! 10,000-rule policy, connection-tracker insert and lookup, and (printed before the benchmarks) the
//! memory of 1,000,000 tracked flows.
//!
//! Run: `cargo bench --bench policy`. Results are in docs/BENCHMARKS.md ("Policy engine").
// A benchmark: it reads the real clock and /proc (see clippy.toml).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion};
use privnet::policy::conntrack::{Conntrack, ConntrackConfig, FlowMeta};
use privnet::policy::filter::{Disposition, Filter, Reason};
use privnet::policy::{
    compile, tcp_flags, Action, CompiledPolicy, DefaultAction, End, Flow, FlowPath, MemberRef,
    PolicySpec, Protocol, RuleSpec, Selector, Tier,
};

const RULES: usize = 10_000;

fn v4(a: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(a))
}

/// 10,000 rules where identity decides: a 1,000-address block-list (platform), 8,000 services
/// each reachable by its own client group on its own port (application), 1,000 UDP services open
/// to the network (baseline).
fn identity_heavy() -> PolicySpec {
    let mut p = PolicySpec::new(DefaultAction::Deny);
    for i in 0..1_000u32 {
        let net = format!("{}/32", v4(0xc612_0000 + i))
            .parse()
            .expect("prefix");
        p.rule(
            Tier::Platform,
            RuleSpec::new(Action::Deny, Selector::cidr(&[net], &[]), Selector::any()),
        );
    }
    for i in 0..8_000u32 {
        let g = format!("svc-{i}-clients");
        let m = format!("svc-{i}");
        p.rule(
            Tier::Application,
            RuleSpec::new(
                Action::Allow,
                Selector::groups_any(&[g.as_str()]),
                Selector::members(&[m.as_str()]),
            )
            .proto(&[Protocol::TCP])
            .ports(&[(10_000 + i as u16, 10_000 + i as u16)]),
        );
    }
    for i in 0..1_000u32 {
        let m = format!("svc-{i}");
        p.rule(
            Tier::Baseline,
            RuleSpec::new(
                Action::Allow,
                Selector::network(),
                Selector::members(&[m.as_str()]),
            )
            .proto(&[Protocol::UDP])
            .ports(&[(20_000 + i as u16, 20_000 + i as u16)]),
        );
    }
    assert_eq!(p.rule_count(), RULES);
    p
}

/// 10,000 rules where only ports differ: network → network, one TCP port each (every identity
/// bit is set, so the protocol/port index does all the work).
fn port_heavy() -> PolicySpec {
    let mut p = PolicySpec::new(DefaultAction::Deny);
    for i in 0..RULES as u16 {
        let action = if i % 10 == 0 {
            Action::Deny
        } else {
            Action::Allow
        };
        p.rule(
            Tier::Application,
            RuleSpec::new(action, Selector::network(), Selector::network())
                .proto(&[Protocol::TCP])
                .ports(&[(1_000 + i, 1_000 + i)]),
        );
    }
    p
}

fn compiled(spec: &PolicySpec) -> Arc<CompiledPolicy> {
    let t = Instant::now();
    let c = compile(spec, "bench").expect("valid");
    eprintln!(
        "compiled {} rules ({} entries, index {} KiB) in {:?}",
        spec.rule_count(),
        c.entry_count(),
        c.index_bytes() / 1024,
        t.elapsed()
    );
    Arc::new(c)
}

fn new_flows(c: &mut Criterion) {
    let client = MemberRef::new("client-1", &["svc-7999-clients"]);
    let last = MemberRef::new("svc-7999", &[]);
    let stranger = MemberRef::new("stranger", &[]);
    let a = v4(0x0a00_0001);
    let b = v4(0x0a00_0002);
    let mut g = c.benchmark_group("policy_new_flow_10k_rules");
    let p = compiled(&identity_heavy());
    let (sb, db) = (
        p.end_bits(End::Local(&client)),
        p.end_bits(End::Member(&last)),
    );
    let hit = Flow::tcp(a, 40_000, b, 17_999, tcp_flags::SYN);
    assert_eq!(p.evaluate(&hit, &sb, &db).action, Action::Allow);
    g.bench_function("identity_heavy/match_last_application_rule", |bch| {
        bch.iter(|| black_box(p.evaluate(black_box(&hit), &sb, &db)))
    });
    let nb = p.end_bits(End::Member(&stranger));
    let miss = Flow::tcp(a, 40_000, b, 5_000, tcp_flags::SYN);
    assert_eq!(p.evaluate(&miss, &sb, &nb).action, Action::Deny);
    g.bench_function("identity_heavy/no_match_default", |bch| {
        bch.iter(|| black_box(p.evaluate(black_box(&miss), &sb, &nb)))
    });
    let blocked = Flow::tcp(v4(0xc612_0000 + 999), 1, b, 17_999, tcp_flags::SYN);
    let ext = p.end_bits(End::External);
    g.bench_function("identity_heavy/blocklist_last_platform_rule", |bch| {
        bch.iter(|| black_box(p.evaluate(black_box(&blocked), &ext, &db)))
    });
    let q = compiled(&port_heavy());
    let (qs, qd) = (
        q.end_bits(End::Local(&client)),
        q.end_bits(End::Member(&last)),
    );
    let last_port = Flow::tcp(a, 40_000, b, 1_000 + RULES as u16 - 1, tcp_flags::SYN);
    assert_eq!(q.evaluate(&last_port, &qs, &qd).action, Action::Allow);
    g.bench_function("port_heavy/match_last_rule", |bch| {
        bch.iter(|| black_box(q.evaluate(black_box(&last_port), &qs, &qd)))
    });
    let no_port = Flow::tcp(a, 40_000, b, 80, tcp_flags::SYN);
    g.bench_function("port_heavy/no_match_default", |bch| {
        bch.iter(|| black_box(q.evaluate(black_box(&no_port), &qs, &qd)))
    });
    g.finish();
}

fn filter_with(policy: Arc<CompiledPolicy>, max_flows: usize) -> Filter<u32> {
    let cfg = ConntrackConfig {
        max_flows,
        max_flows_per_peer: max_flows,
        new_flows_per_sec: u32::MAX / 2000,
        new_flow_burst: u32::MAX / 2000,
        ..ConntrackConfig::default()
    };
    let mut f = Filter::new(
        cfg,
        MemberRef::new("client-1", &["svc-7999-clients"]),
        Instant::now(),
        [9; 32],
    );
    f.set_peer(1, MemberRef::new("svc-7999", &[]), Instant::now());
    f.set_policy(Some(policy));
    f
}

fn established(c: &mut Criterion) {
    let p = compiled(&identity_heavy());
    let now = Instant::now();
    let a = v4(0x0a00_0001);
    let b = v4(0x0a00_0002);
    let mut g = c.benchmark_group("policy_established_10k_rules");
    let mut f = filter_with(p.clone(), 1 << 16);
    let syn = Flow::tcp(a, 40_000, b, 17_999, tcp_flags::SYN);
    assert_eq!(
        f.check(1, FlowPath::OUTBOUND, &syn, now).disposition,
        Disposition::Pass
    );
    let ack = Flow {
        tcp_flags: tcp_flags::ACK,
        ..syn
    };
    assert_eq!(
        f.check(1, FlowPath::OUTBOUND, &ack, now).reason,
        Reason::Established
    );
    g.bench_function("filter_check/same_flow", |bch| {
        bch.iter(|| black_box(f.check(1, FlowPath::OUTBOUND, black_box(&ack), now)))
    });
    // 100,000 tracked flows, packets spread over all of them (cache misses included).
    let mut f = filter_with(p.clone(), 1 << 17);
    let flows: Vec<Flow> = (0..100_000u32)
        .map(|i| {
            Flow::tcp(
                v4(0x0a01_0000 + i / 60_000),
                (i % 60_000) as u16 + 1024,
                b,
                17_999,
                tcp_flags::SYN,
            )
        })
        .collect();
    for fl in &flows {
        assert_eq!(
            f.check(1, FlowPath::OUTBOUND, fl, now).disposition,
            Disposition::Pass
        );
    }
    let acks: Vec<Flow> = flows
        .iter()
        .map(|x| Flow {
            tcp_flags: tcp_flags::ACK,
            ..*x
        })
        .collect();
    let mut i = 0usize;
    g.bench_function("filter_check/100k_flows_spread", |bch| {
        bch.iter(|| {
            i = (i + 7919) % acks.len();
            black_box(f.check(1, FlowPath::OUTBOUND, &acks[i], now))
        })
    });
    // A new flow through the whole filter: evaluate + track. The table is emptied between
    // batches of 50,000 (untimed), so every timed packet opens a flow.
    let mut f = filter_with(p.clone(), 1 << 17);
    g.bench_function("filter_check/new_flow_evaluate_and_track", |bch| {
        bch.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut done = 0u64;
            while done < iters {
                let n = (iters - done).min(50_000) as u32;
                f.remove_peer(&1);
                f.set_peer(1, MemberRef::new("svc-7999", &[]), now);
                let start = Instant::now();
                for k in 0..n {
                    let fl = Flow::tcp(
                        v4(0x0a00_1000 + k / 50_000),
                        (k % 50_000) as u16 + 1024,
                        b,
                        17_999,
                        tcp_flags::SYN,
                    );
                    black_box(f.check(1, FlowPath::OUTBOUND, &fl, now));
                }
                total += start.elapsed();
                done += u64::from(n);
            }
            total
        })
    });
    g.finish();
}

fn conntrack(c: &mut Criterion) {
    let now = Instant::now();
    let b = v4(0x0a00_0002);
    let mut g = c.benchmark_group("conntrack");
    let cfg = ConntrackConfig {
        max_flows: 1 << 20,
        max_flows_per_peer: 1 << 20,
        new_flows_per_sec: u32::MAX / 2000,
        new_flow_burst: u32::MAX / 2000,
        ..ConntrackConfig::default()
    };
    let mut ct = Conntrack::<u32>::new(cfg, now, [3; 32]);
    let flow = |i: u32| Flow::udp(v4(0x0a00_0000 + i / 50_000), (i % 50_000) as u16 + 1, b, 53);
    for i in 0..1_000_000 {
        ct.insert(i % 1000, &flow(i), FlowMeta::default(), now)
            .expect("room");
    }
    let mut i = 0u32;
    g.bench_function("lookup_1m_flows_random", |bch| {
        bch.iter(|| {
            i = (i + 7919) % 1_000_000;
            black_box(ct.lookup(&(i % 1000), &flow(i), now))
        })
    });
    let hot = flow(12_345);
    g.bench_function("lookup_1m_flows_same_flow", |bch| {
        bch.iter(|| black_box(ct.lookup(&(12_345 % 1000), black_box(&hot), now)))
    });
    // Insert + remove in steady state (the table stays at 1 M flows).
    let mut j = 1_000_000u32;
    g.bench_function("insert_and_remove_at_1m_flows", |bch| {
        bch.iter(|| {
            let f = flow(j);
            let id = ct.insert(j % 1000, &f, FlowMeta::default(), now);
            if let Ok(id) = id {
                ct.remove(id);
            }
            j = j.wrapping_add(1);
            black_box(id)
        })
    });
    g.finish();
}

/// Resident set size of this process, in bytes (Linux).
fn rss() -> Option<usize> {
    let s = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: usize = s.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// The memory figure: 1,000,000 tracked flows over 1,000 peers.
fn memory_report() {
    let now = Instant::now();
    let before = rss().unwrap_or(0);
    let cfg = ConntrackConfig {
        max_flows: 1_000_000,
        max_flows_per_peer: 1_000_000,
        new_flows_per_sec: u32::MAX / 2000,
        new_flow_burst: u32::MAX / 2000,
        ..ConntrackConfig::default()
    };
    let mut ct = Conntrack::<u32>::new(cfg, now, [1; 32]);
    let b = v4(0x0a00_0002);
    for i in 0..1_000_000u32 {
        let f = Flow::tcp(
            v4(0x0a10_0000 + i / 50_000),
            (i % 50_000) as u16 + 1,
            b,
            443,
            tcp_flags::SYN,
        );
        ct.insert(i % 1000, &f, FlowMeta::default(), now)
            .expect("room");
    }
    let after = rss().unwrap_or(0);
    eprintln!(
        "conntrack: {} flows; reserved {} bytes ({} bytes/flow: 64 entry + index); RSS grew by {} bytes ({:.1} bytes/flow)",
        ct.len(),
        ct.memory_bytes(),
        ct.bytes_per_flow(),
        after.saturating_sub(before),
        after.saturating_sub(before) as f64 / ct.len() as f64
    );
    drop(ct);
}

/// The best of several timed runs of `n` calls (on a shared machine the minimum is the figure least
/// disturbed by other processes), in ns per call.
fn best_of(runs: usize, n: u32, mut f: impl FnMut(u32)) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..runs {
        let t = Instant::now();
        for i in 0..n {
            f(i);
        }
        best = best.min(t.elapsed().as_nanos() as f64 / f64::from(n));
    }
    best
}

/// Minimum-of-runs figures for the two goals, printed before the criterion runs.
fn quick_report() {
    let now = Instant::now();
    let a = v4(0x0a00_0001);
    let b = v4(0x0a00_0002);
    let p = compiled(&identity_heavy());
    let mut f = filter_with(p.clone(), 1 << 17);
    let syn = Flow::tcp(a, 40_000, b, 17_999, tcp_flags::SYN);
    f.check(1, FlowPath::OUTBOUND, &syn, now);
    let ack = Flow {
        tcp_flags: tcp_flags::ACK,
        ..syn
    };
    let est = best_of(9, 1_000_000, |_| {
        black_box(f.check(1, FlowPath::OUTBOUND, black_box(&ack), now));
    });
    let client = MemberRef::new("client-1", &["svc-7999-clients"]);
    let last = MemberRef::new("svc-7999", &[]);
    let (sb, db) = (
        p.end_bits(End::Local(&client)),
        p.end_bits(End::Member(&last)),
    );
    let eval = best_of(9, 200_000, |_| {
        black_box(p.evaluate(black_box(&syn), &sb, &db));
    });
    let q = compiled(&port_heavy());
    let (qs, qd) = (
        q.end_bits(End::Local(&client)),
        q.end_bits(End::Member(&last)),
    );
    let last_port = Flow::tcp(a, 40_000, b, 1_000 + RULES as u16 - 1, tcp_flags::SYN);
    let eval_ports = best_of(9, 200_000, |_| {
        black_box(q.evaluate(black_box(&last_port), &qs, &qd));
    });
    // 9 × 50,000 distinct new flows into one table (room for all of them).
    let mut g = filter_with(p, 1 << 19);
    let mut seq = 0u32;
    let new_flow = best_of(9, 50_000, |_| {
        seq += 1;
        let fl = Flow::tcp(
            v4(0x0a00_1000 + seq / 50_000),
            (seq % 50_000) as u16 + 1024,
            b,
            17_999,
            tcp_flags::SYN,
        );
        black_box(g.check(1, FlowPath::OUTBOUND, &fl, now));
    });
    assert_eq!(g.conntrack().len(), 450_000);
    eprintln!(
        "best of 9 runs (ns per packet, {RULES} rules): established flow (Filter::check) {est:.1}; \
         new flow, evaluate only: identity-heavy {eval:.1}, port-heavy {eval_ports:.1}; \
         new flow, Filter::check (evaluate + track) {new_flow:.1}"
    );
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
}

criterion_group! {
    name = benches;
    config = config();
    targets = new_flows, established, conntrack
}

fn main() {
    memory_report();
    quick_report();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
