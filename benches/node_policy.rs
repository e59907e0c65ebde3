//! Criterion: what the access policy costs on the node's data path — `Node::encapsulate` and
//! `Node::decapsulate` of an established flow with no policy and with a 10,000-rule policy installed
//! on both members (9,999 rules that do not match, then the allow), in the same run.
//!
//! Run: `cargo bench --bench node_policy`. Results in docs/BENCHMARKS.md §7.
// A benchmark: it reads the real clock (see clippy.toml).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use privnet::policy::{compile, parse_policy, CompiledPolicy};

mod support;
use privnet::testing::{ipv4_udp, TestNetwork};
use privnet::{Decapsulated, Encapsulated};
use support::pair;

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
