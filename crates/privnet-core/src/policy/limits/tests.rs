#![allow(clippy::disallowed_methods)] // the origin of the fake clock comes from the real one

use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;
use crate::policy::error::Problems;
use crate::policy::spec::{LimitDirection, LimitSpec, Selector};

fn compiled(specs: &[LimitSpec]) -> Vec<LimitInfo> {
    let mut p = Problems::default();
    let l = compile_limits(specs, &mut p);
    assert!(p.is_empty(), "{:?}", p.into_error("t").to_string());
    l
}

fn problems(specs: &[LimitSpec]) -> String {
    let mut p = Problems::default();
    let _ = compile_limits(specs, &mut p);
    p.into_error("policy.toml").to_string()
}

#[test]
fn bucket_starts_full_and_refills_at_its_rate() {
    let t0 = Instant::now();
    let mut b = TokenBucket::new(100, 10, t0);
    for _ in 0..10 {
        assert!(b.try_take(1, t0));
    }
    assert!(!b.try_take(1, t0), "burst spent");
    // 100 per second: one token every 10 ms.
    assert!(!b.try_take(1, t0 + Duration::from_millis(9)));
    assert!(b.try_take(1, t0 + Duration::from_millis(10)));
    // Never more than the burst, however long it rested.
    assert_eq!(b.available(t0 + Duration::from_secs(3600)), 10);
}

#[test]
fn compile_checks_rates_ids_and_selectors() {
    let no_rate = LimitSpec::new(Selector::network(), LimitDirection::Out);
    assert!(problems(&[no_rate]).contains("a rate"));
    let zero = LimitSpec::new(Selector::network(), LimitDirection::Out).packets(0);
    assert!(problems(&[zero]).contains("packets_per_sec"));
    let cidr = LimitSpec::new(
        Selector::cidr(&["10.0.0.0/8".parse().unwrap()], &[]),
        LimitDirection::In,
    )
    .bytes(1000);
    assert!(problems(&[cidr]).contains("by identity"));
    let a = LimitSpec::new(Selector::network(), LimitDirection::In)
        .bytes(1000)
        .id("x");
    let msg = problems(&[a.clone(), a]);
    assert!(msg.contains("already used"), "{msg}");
    let mut burst = LimitSpec::new(Selector::network(), LimitDirection::In).bytes(1000);
    burst.burst_ms = Some(0);
    assert!(problems(&[burst]).contains("burst_ms"));
    let ok = compiled(&[LimitSpec::new(Selector::network(), LimitDirection::In).bytes(1000)]);
    assert_eq!(ok[0].id, "limits/0");
    assert_eq!(ok[0].burst_ms, DEFAULT_BURST_MS);
}

fn member(name: &str, groups: &[&str]) -> MemberRef {
    MemberRef::new(name, groups)
}

#[test]
fn out_limits_the_selected_members_sending_at_both_ends() {
    let l = compiled(&[
        LimitSpec::new(Selector::groups_any(&["batch"]), LimitDirection::Out)
            .packets(10)
            .id("batch-out"),
    ]);
    let t0 = Instant::now();
    // At the receiver (target): packets from the batch member are counted, to it not.
    let mut target: Limiter<u32> = Limiter::new(member("target", &["db"]));
    target.set_limits(&l, t0);
    target.set_peer(1, member("flood", &["batch"]), t0);
    target.set_peer(2, member("victim", &["web"]), t0);
    let inbound_from_flood = (0..100)
        .filter(|_| target.check(&1, Direction::Inbound, 100, t0).is_ok())
        .count();
    assert_eq!(
        inbound_from_flood, 1,
        "a burst of 100 ms at 10/s: one packet"
    );
    assert!((0..100).all(|_| target.check(&1, Direction::Outbound, 100, t0).is_ok()));
    assert!((0..100).all(|_| target.check(&2, Direction::Inbound, 100, t0).is_ok()));
    // At the sender (flood itself): its own sending is counted, per peer.
    let mut flood: Limiter<u32> = Limiter::new(member("flood", &["batch"]));
    flood.set_limits(&l, t0);
    flood.set_peer(7, member("target", &["db"]), t0);
    flood.set_peer(8, member("victim", &["web"]), t0);
    assert!(flood.check(&7, Direction::Outbound, 100, t0).is_ok());
    assert_eq!(flood.check(&7, Direction::Outbound, 100, t0), Err(0));
    assert!(
        flood.check(&8, Direction::Outbound, 100, t0).is_ok(),
        "its own bucket"
    );
    assert!(flood.check(&7, Direction::Inbound, 100, t0).is_ok());
    let c = &flood.counters()[0];
    assert_eq!((c.id.as_str(), c.passed, c.dropped), ("batch-out", 2, 1));
    assert_eq!(c.dropped_bytes, 100);
}

#[test]
fn shared_limits_share_one_bucket() {
    let mut spec = LimitSpec::new(Selector::network(), LimitDirection::In).packets(10);
    spec.shared = true;
    let l = compiled(&[spec]);
    let t0 = Instant::now();
    let mut m: Limiter<u32> = Limiter::new(member("m", &[]));
    m.set_limits(&l, t0);
    m.set_peer(1, member("a", &[]), t0);
    m.set_peer(2, member("b", &[]), t0);
    assert!(m.check(&1, Direction::Inbound, 1, t0).is_ok());
    assert!(
        m.check(&2, Direction::Inbound, 1, t0).is_err(),
        "one bucket for both"
    );
}

#[test]
fn a_reload_keeps_the_buckets_of_unchanged_limits() {
    let keep = LimitSpec::new(Selector::network(), LimitDirection::In)
        .packets(10)
        .id("keep");
    let other = LimitSpec::new(Selector::network(), LimitDirection::Out)
        .packets(10)
        .id("other");
    let t0 = Instant::now();
    let mut m: Limiter<u32> = Limiter::new(member("m", &[]));
    m.set_limits(&compiled(std::slice::from_ref(&keep)), t0);
    m.set_peer(1, member("a", &[]), t0);
    assert!(m.check(&1, Direction::Inbound, 1, t0).is_ok());
    assert!(m.check(&1, Direction::Inbound, 1, t0).is_err());
    m.set_limits(&compiled(&[other, keep.clone()]), t0);
    assert!(
        m.check(&1, Direction::Inbound, 1, t0).is_err(),
        "still empty"
    );
    assert_eq!(m.counters()[1].dropped, 2, "counters kept");
    let faster = keep.packets(20);
    m.set_limits(&compiled(&[faster]), t0);
    assert!(
        m.check(&1, Direction::Inbound, 1, t0).is_ok(),
        "a changed limit starts full"
    );
    // Re-registering the same identity keeps the buckets, a new identity gets fresh ones.
    m.set_peer(1, member("a", &[]), t0);
    assert!(m.check(&1, Direction::Inbound, 1, t0).is_ok());
    assert!(m.check(&1, Direction::Inbound, 1, t0).is_err());
    m.remove_peer(&1);
    assert!(
        m.check(&1, Direction::Inbound, 1, t0).is_ok(),
        "unknown peers are not limited"
    );
}

proptest! {
    /// Against the arithmetic: over any run of arrivals, a byte bucket admits at most its burst
    /// plus rate x elapsed, and refuses nothing while it has room.
    #[test]
    fn bucket_never_exceeds_burst_plus_rate(
        rate in 1u64..1_000_000,
        burst in 1u64..100_000,
        steps in prop::collection::vec((0u64..5_000, 1u64..2_000), 1..200),
    ) {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(rate, burst, t0);
        let mut now = t0;
        let mut admitted: u128 = 0;
        // The naive model: exact tokens, in nano-units.
        let cap = u128::from(burst) * 1_000_000_000;
        let mut model = cap;
        let mut last = t0;
        for (dt_us, n) in steps {
            now += Duration::from_micros(dt_us);
            model = (model + u128::from(rate) * (now - last).as_nanos()).min(cap);
            last = now;
            let want = u128::from(n) * 1_000_000_000;
            let ok = b.try_take(n, now);
            prop_assert_eq!(ok, model >= want);
            if ok {
                model -= want;
                admitted += u128::from(n);
            }
            let elapsed = (now - t0).as_nanos();
            prop_assert!(admitted * 1_000_000_000 <= cap + u128::from(rate) * elapsed);
        }
    }
}
