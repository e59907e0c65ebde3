//! Criterion benchmarks of exposures (`[[expose]]`): loading a 100,000-entry block-list (parse and
//! compile), and the per-connection cost of a lookup and of the whole admission decision with no
//! list and with 100,000 entries. Printed first: the load time of 100,000 entries measured once
//! (issue 15 asks for under a second).
//!
//! Run: `cargo bench --bench expose`. Results are in docs/BENCHMARKS.md ("Exposures").
// A benchmark: it reads the real clock (see clippy.toml).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion};
use privnet::expose::{parse_list, Admission, AdmissionConfig, PrefixSet, Rate};

const ENTRIES: usize = 100_000;

/// A list in the published formats: 90 % IPv4 prefixes of /16 to /32 spread over the space (the
/// FireHOL and Spamhaus mix), 10 % IPv6 /32 to /64, a comment every 50 lines, Spamhaus-style
/// trailing comments on a third of the lines. Deterministic (an xorshift generator).
fn list_text(n: usize) -> String {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut out = String::with_capacity(n * 28);
    out.push_str("# generated block-list\n");
    for i in 0..n {
        if i % 50 == 0 {
            out.push_str("# section\n");
        }
        let r = next();
        if i % 10 == 9 {
            let len = 32 + (r % 33) as u8;
            let a = Ipv6Addr::from(((r as u128) << 64) | 0x2000_0000_0000_0000_0000_0000_0000_0000);
            out.push_str(&format!("{a}/{len}"));
        } else {
            let len = 16 + (r >> 40) as u8 % 17;
            out.push_str(&format!("{}/{len}", Ipv4Addr::from(r as u32)));
        }
        if i % 3 == 0 {
            out.push_str(&format!(" ; SBL{i}"));
        }
        out.push('\n');
    }
    out
}

fn probes() -> Vec<IpAddr> {
    (0..1024u32)
        .map(|i| IpAddr::V4(Ipv4Addr::from(i.wrapping_mul(0x9E37_79B9))))
        .collect()
}

fn admission(list: Option<Arc<PrefixSet>>, now: Instant) -> Admission {
    let mut a = Admission::new(
        AdmissionConfig {
            connection_rate: Some(Rate {
                per_second: 1_000_000,
                burst: 1_000_000,
            }),
            max_per_source: Some(1_000_000),
            max_total: Some(1_000_000),
            ..AdmissionConfig::default()
        },
        now,
    );
    a.set_block_lists(list.into_iter().collect());
    a
}

fn load(c: &mut Criterion) {
    let text = list_text(ENTRIES);
    let mut g = c.benchmark_group("expose_load");
    g.sample_size(10);
    g.bench_function("parse_100k", |b| {
        b.iter(|| parse_list("bench.netset", black_box(text.as_bytes())).expect("parses"))
    });
    g.finish();
}

fn per_connection(c: &mut Criterion) {
    let set = Arc::new(parse_list("bench.netset", list_text(ENTRIES).as_bytes()).expect("parses"));
    let empty = Arc::new(PrefixSet::default());
    let probes = probes();
    let mut g = c.benchmark_group("expose_per_connection");
    for (name, list) in [("empty", &empty), ("100k", &set)] {
        let mut i = 0usize;
        g.bench_function(format!("lookup_{name}"), |b| {
            b.iter(|| {
                i = (i + 1) & 1023;
                black_box(list.contains(black_box(probes[i])))
            })
        });
    }
    // The whole decision (allow, block, caps, rate) and the release, for the same source set.
    let t0 = Instant::now();
    for (name, list) in [("no_list", None), ("100k", Some(set.clone()))] {
        let mut a = admission(list, t0);
        let mut i = 0usize;
        let mut now = t0;
        g.bench_function(format!("admit_release_{name}"), |b| {
            b.iter(|| {
                i = (i + 1) & 1023;
                now += Duration::from_micros(1);
                let src = probes[i];
                if a.admit(black_box(src), now).is_ok() {
                    a.release(src);
                }
            })
        });
    }
    g.finish();
}

/// The one-shot figure the issue asks for, printed before the benchmarks.
fn load_report() {
    let text = list_text(ENTRIES);
    let t = Instant::now();
    let set = parse_list("bench.netset", text.as_bytes()).expect("parses");
    let took = t.elapsed();
    let (v4, v6) = set.intervals();
    println!(
        "expose: {} entries ({} bytes) parsed and compiled in {:.1} ms: {v4} IPv4 + {v6} IPv6 disjoint intervals",
        set.entries(),
        text.len(),
        took.as_secs_f64() * 1e3
    );
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = load, per_connection
}

fn main() {
    load_report();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
