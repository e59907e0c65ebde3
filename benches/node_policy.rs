//! Criterion: what the access policy costs on the node's data path — `Node::encapsulate` and
//! `Node::decapsulate` of an established flow with no policy and with a 10,000-rule policy installed
//! on both members (9,999 rules that do not match, then the allow), in the same run.
//!
//! Run: `cargo bench --bench node_policy`. Results in docs/BENCHMARKS.md §7.
// A benchmark: it reads the real clock (see clippy.toml).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use privnet::policy::{compile, parse_policy, CompiledPolicy};
use privnet::testing::{ipv4_udp, TestNetwork};
use privnet::{Decapsulated, Encapsulated, Node, PeerId};

/// `rules` rules: platform denies of addresses nobody uses, then `allow network -> network udp`.
fn policy(rules: usize) -> Arc<CompiledPolicy> {
    let mut text = String::from("default = \"deny\"\n");
    for i in 0..rules - 1 {
        let _ = write!(
            text,
            "[[platform]]\naction = \"deny\"\nfrom = {{ cidr = [\"198.18.{}.{}\"] }}\nto = \"any\"\n",
            (i / 250) % 250,
            i % 250
        );
    }
    text.push_str("[[application]]\naction = \"allow\"\nfrom = \"network\"\nto = \"network\"\nproto = \"udp\"\n");
    let spec = parse_policy(&text, "bench.toml").expect("policy parses");
    Arc::new(compile(&spec, "bench.toml").expect("policy compiles"))
}

struct Pair {
    a: Node,
    b: Node,
    a_to_b: PeerId,
    now: Instant,
    addr_a: std::net::SocketAddr,
    addr_b: std::net::SocketAddr,
}

fn shuttle(from: &mut Node, from_addr: std::net::SocketAddr, to: &mut Node, now: Instant) -> usize {
    let mut buf = vec![0u8; 2048];
    let mut out = vec![0u8; 2048];
    let mut n = 0;
    while let Some(t) = from.poll_transmit(&mut buf, now) {
        let _ = to.decapsulate(from_addr, &buf[..t.len], &mut out, now);
        n += 1;
    }
    n
}

fn pair(policy: Option<Arc<CompiledPolicy>>) -> Pair {
    let net = TestNetwork::new(2, 90);
    let now = Instant::now();
    let mut ca = net.config(0, 1);
    ca.handshake_rate_per_source = 1_000_000;
    ca.handshake_burst_per_source = 1_000_000;
    ca.under_load_handshakes_per_sec = 1_000_000;
    let mut cb = net.config(1, 1);
    cb.handshake_rate_per_source = 1_000_000;
    cb.handshake_burst_per_source = 1_000_000;
    cb.under_load_handshakes_per_sec = 1_000_000;
    cb.eager_handshakes = false;
    ca.policy = policy.clone();
    cb.policy = policy;
    let mut a = net.node(0, ca, now, net.unix_start);
    let mut b = net.node(1, cb, now, net.unix_start);
    for _ in 0..4 {
        shuttle(&mut a, net.underlay[0], &mut b, now);
        shuttle(&mut b, net.underlay[1], &mut a, now);
    }
    let a_to_b = a.peer_by_key(&net.public(1)).expect("peer");
    assert!(a.is_established(a_to_b));
    Pair {
        a,
        b,
        a_to_b,
        now,
        addr_a: net.underlay[0],
        addr_b: net.underlay[1],
    }
}

fn bench(c: &mut Criterion) {
    let net = TestNetwork::new(2, 90);
    let big = policy(10_000);
    for len in [64usize, 1420] {
        let packet = ipv4_udp(net.overlay[0], net.overlay[1], &vec![0x5a; len - 28]);
        let mut g = c.benchmark_group(format!("node_{len}"));
        g.throughput(Throughput::Bytes(len as u64));
        g.measurement_time(Duration::from_secs(3));
        for (name, pol) in [("no_policy", None), ("policy_10k", Some(big.clone()))] {
            let mut p = pair(pol);
            let mut out = vec![0u8; 2048];
            g.bench_function(format!("seal/{name}"), |bch| {
                bch.iter(|| {
                    let r = p.a.encapsulate(&packet, &mut out, p.now);
                    assert!(matches!(r, Ok(Encapsulated::Send(_))));
                })
            });
            let mut sealed = vec![0u8; 2048];
            let mut opened = vec![0u8; 2048];
            let (a, b, now, addr_a) = (&mut p.a, &mut p.b, p.now, p.addr_a);
            g.bench_function(format!("open/{name}"), |bch| {
                bch.iter_batched_ref(
                    || match a.encapsulate(&packet, &mut sealed, now) {
                        Ok(Encapsulated::Send(t)) => sealed[..t.len].to_vec(),
                        other => panic!("{other:?}"),
                    },
                    |dgram| {
                        let r = b.decapsulate(addr_a, dgram, &mut opened, now);
                        assert!(matches!(r, Ok(Decapsulated::Packet { .. })));
                    },
                    BatchSize::SmallInput,
                )
            });
            let _ = (p.a_to_b, p.addr_b);
        }
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
