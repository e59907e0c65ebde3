//! Criterion micro-benchmarks of the sans-IO core: seal and open of a 1,420-byte packet, the cost of
//! dropping a junk packet, and complete handshakes (both ends in this thread).
//!
//! Run: `cargo bench --bench core`. Results and the machine's ChaCha20-Poly1305 ceiling are in
//! docs/BENCHMARKS.md.
// A benchmark: it reads the real clock (see clippy.toml).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use privnet::testing::{ipv4_udp, TestNetwork};
use privnet::{Decapsulated, Encapsulated};

mod support;
use support::{pair as pair_with, shuttle};

fn pair() -> support::Pair {
    pair_with(None)
}

fn bench_data(c: &mut Criterion) {
    let net = TestNetwork::new(2, 90);
    let packet = ipv4_udp(net.overlay[0], net.overlay[1], &[0x5a; 1420 - 28]);
    assert_eq!(packet.len(), 1420);
    let mut g = c.benchmark_group("data");
    g.throughput(Throughput::Bytes(1420));
    g.measurement_time(Duration::from_secs(4));

    let mut p = pair();
    let mut out = vec![0u8; 2048];
    g.bench_function("seal_1420", |bch| {
        bch.iter(|| {
            let r = p.a.encapsulate(&packet, &mut out, p.now);
            assert!(matches!(r, Ok(Encapsulated::Send(_))));
        })
    });

    let mut p = pair();
    let mut sealed = vec![0u8; 2048];
    let mut opened = vec![0u8; 2048];
    let (a, b, now, addr_a) = (&mut p.a, &mut p.b, p.now, p.addr_a);
    g.bench_function("open_1420", |bch| {
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
    g.finish();

    let mut g = c.benchmark_group("drop");
    let mut p = pair();
    let mut junk = vec![0u8; 1452];
    junk[..4].copy_from_slice(&[4, 1, 0, 0]);
    let mut x = 0x9e37_79b9_u32;
    g.bench_function("junk_unknown_index", |bch| {
        bch.iter(|| {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            junk[4..8].copy_from_slice(&x.to_le_bytes());
            let r = p.b.decapsulate(p.addr_a, &junk, &mut out, p.now);
            assert!(r.is_err());
        })
    });
    g.bench_function("junk_bad_mac1_initiation", |bch| {
        let mut init = vec![0u8; 400];
        init[..4].copy_from_slice(&[1, 1, 0, 0]);
        bch.iter(|| {
            let r = p.b.decapsulate(p.addr_a, &init, &mut out, p.now);
            assert!(r.is_err());
        })
    });
    g.finish();
}

fn bench_handshake(c: &mut Criterion) {
    let mut g = c.benchmark_group("handshake");
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(5));
    let mut p = pair();
    g.bench_function("complete_handshake_both_ends", |bch| {
        bch.iter(|| {
            // 25 ms of virtual time per handshake keeps clear of the per-peer flood interval.
            p.now += Duration::from_millis(25);
            p.a.initiate_handshake(p.a_to_b, p.now);
            shuttle(&mut p.a, p.addr_a, &mut p.b, p.now); // initiation
            shuttle(&mut p.b, p.addr_b, &mut p.a, p.now); // response
            let before = p.b.stats().handshakes_completed;
            shuttle(&mut p.a, p.addr_a, &mut p.b, p.now); // confirming keepalive
            assert_eq!(p.b.stats().handshakes_completed, before + 1);
        })
    });
    g.finish();

    let mut g = c.benchmark_group("x25519");
    g.throughput(Throughput::Elements(1));
    let secret = privnet::crypto::StaticSecret::from_bytes([7; 32]);
    g.bench_function("public_key_derivation", |bch| {
        bch.iter(|| std::hint::black_box(secret.public_key()))
    });
    let other = privnet::crypto::StaticSecret::from_bytes([9; 32]).public_key();
    g.bench_function("diffie_hellman", |bch| {
        bch.iter(|| std::hint::black_box(privnet::crypto::x25519(&secret, &other)))
    });
    g.finish();
}

criterion_group!(benches, bench_data, bench_handshake);
criterion_main!(benches);
