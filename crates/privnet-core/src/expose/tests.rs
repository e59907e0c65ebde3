//! Admission with a fake clock: the order of the checks, caps, rates and bounded tables.
#![allow(clippy::disallowed_methods)] // tests take the origin of their clock from the real one

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn set(text: &str) -> Arc<PrefixSet> {
    Arc::new(parse_list("t", text.as_bytes()).unwrap())
}

#[test]
fn allow_then_block_then_caps_then_rate() {
    let t0 = Instant::now();
    let mut a = Admission::new(
        AdmissionConfig {
            allow: Some(set("198.51.100.0/24\n2001:db8::/32\n")),
            connection_rate: Some(Rate {
                per_second: 1,
                burst: 2,
            }),
            max_per_source: Some(3),
            max_total: Some(4),
            ..AdmissionConfig::default()
        },
        t0,
    );
    a.set_block_lists(vec![set("203.0.113.0/24\n"), set("198.51.100.66\n")]);
    assert_eq!(a.admit(ip("192.0.2.1"), t0), Err(Refusal::NotAllowed));
    assert_eq!(a.admit(ip("198.51.100.66"), t0), Err(Refusal::BlockListed));
    assert_eq!(a.listed(ip("198.51.100.66")), Some(Refusal::BlockListed));
    assert_eq!(a.listed(ip("198.51.100.1")), None);
    let s = ip("198.51.100.1");
    assert_eq!(a.admit(s, t0), Ok(()));
    assert_eq!(a.admit(s, t0), Ok(()));
    // Burst of 2 spent: the third within the same instant is over the rate.
    assert_eq!(a.admit(s, t0), Err(Refusal::ConnectionRate));
    assert_eq!(a.admit(s, t0 + Duration::from_secs(1)), Ok(()));
    // Three active: the per-source cap refuses without spending a token.
    assert_eq!(
        a.admit(s, t0 + Duration::from_secs(5)),
        Err(Refusal::SourceCap)
    );
    // Another source is not affected by the first one's rate or cap.
    let other = ip("2001:db8::7");
    assert_eq!(a.admit(other, t0 + Duration::from_secs(5)), Ok(()));
    assert_eq!(
        a.admit(other, t0 + Duration::from_secs(5)),
        Err(Refusal::TotalCap)
    );
    a.release(s);
    assert_eq!(a.admit(other, t0 + Duration::from_secs(5)), Ok(()));
    let c = a.counters();
    assert_eq!(c.admitted, 5);
    assert_eq!(c.active, 4);
    assert_eq!(c.refused(Refusal::NotAllowed), 1);
    assert_eq!(c.refused(Refusal::BlockListed), 1);
    assert_eq!(c.refused(Refusal::ConnectionRate), 1);
    assert_eq!(c.refused(Refusal::SourceCap), 1);
    assert_eq!(c.refused(Refusal::TotalCap), 1);
    assert_eq!(c.blocked_by, vec![0, 1]);
}

#[test]
fn ipv6_sources_share_a_slash_64() {
    let t0 = Instant::now();
    let mut a = Admission::new(
        AdmissionConfig {
            connection_rate: Some(Rate {
                per_second: 1,
                burst: 1,
            }),
            ..AdmissionConfig::default()
        },
        t0,
    );
    assert_eq!(a.admit(ip("2001:db8:0:1::1"), t0), Ok(()));
    assert_eq!(
        a.admit(ip("2001:db8:0:1:ffff::2"), t0),
        Err(Refusal::ConnectionRate)
    );
    assert_eq!(a.admit(ip("2001:db8:0:2::1"), t0), Ok(()));
    assert_eq!(a.active_of(ip("2001:db8:0:1::99")), 1);
    // An IPv4-mapped address is its IPv4 source.
    assert_eq!(a.admit(ip("192.0.2.1"), t0), Ok(()));
    assert_eq!(
        a.admit(ip("::ffff:192.0.2.1"), t0),
        Err(Refusal::ConnectionRate)
    );
}

#[test]
fn byte_budget_waits_then_passes() {
    let t0 = Instant::now();
    let mut a = Admission::new(
        AdmissionConfig {
            byte_rate: Some(Rate {
                per_second: 10_000,
                burst: 10_000,
            }),
            ..AdmissionConfig::default()
        },
        t0,
    );
    let s = ip("192.0.2.1");
    assert_eq!(a.bytes(s, 10_000, t0), None);
    let wait = a.bytes(s, 5_000, t0).unwrap();
    assert!(
        wait >= Duration::from_millis(499) && wait <= Duration::from_millis(501),
        "{wait:?}"
    );
    assert_eq!(a.bytes(s, 5_000, t0 + wait), None);
    // Another source has its own budget; a chunk above the burst is cut to it.
    assert_eq!(a.bytes(ip("192.0.2.2"), 1 << 20, t0), None);
    assert_eq!(a.counters().throttled, 1);
    // No byte rate configured: always passes.
    let mut free = Admission::new(AdmissionConfig::default(), t0);
    assert_eq!(free.bytes(s, usize::MAX, t0), None);
}

#[test]
fn the_source_tables_are_bounded() {
    let t0 = Instant::now();
    let mut a = Admission::new(
        AdmissionConfig {
            connection_rate: Some(Rate {
                per_second: 1,
                burst: 1,
            }),
            max_sources: 4,
            ..AdmissionConfig::default()
        },
        t0,
    );
    for i in 1..=4u8 {
        assert_eq!(a.admit(IpAddr::from([192, 0, 2, i]), t0), Ok(()));
    }
    // Four sources with live connections: a fifth is refused.
    assert_eq!(a.admit(ip("192.0.2.5"), t0), Err(Refusal::TooManySources));
    for i in 1..=4u8 {
        a.release(IpAddr::from([192, 0, 2, i]));
    }
    // Connections gone, budgets refilled: the limiter's collection makes room.
    assert_eq!(
        a.admit(ip("192.0.2.5"), t0 + Duration::from_secs(3)),
        Ok(())
    );
    assert_eq!(a.active_sources(), 1);
}

#[derive(Clone, Debug)]
enum Op {
    Open(u8),
    Close(u8),
    Wait(u16),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..6).prop_map(Op::Open),
        (0u8..6).prop_map(Op::Close),
        (0u16..2000).prop_map(Op::Wait),
    ]
}

proptest! {
    /// Caps are never exceeded, whatever the sequence; the admission's view of active
    /// connections equals a naive count; rates hold over any window (a naive sliding check).
    #[test]
    fn caps_are_never_exceeded(ops in prop::collection::vec(op(), 1..200),
                               per_source in 1u32..4, total in 1u32..8) {
        let t0 = Instant::now();
        let mut now = t0;
        let mut a = Admission::new(AdmissionConfig {
            connection_rate: Some(Rate { per_second: 5, burst: 3 }),
            max_per_source: Some(per_source),
            max_total: Some(total),
            ..AdmissionConfig::default()
        }, t0);
        let mut open = [0u32; 6];
        let mut admitted: Vec<Vec<Instant>> = vec![Vec::new(); 6];
        for op in ops {
            match op {
                Op::Open(s) => {
                    let src = IpAddr::from([192, 0, 2, s]);
                    match a.admit(src, now) {
                        Ok(()) => { open[s as usize] += 1; admitted[s as usize].push(now); }
                        Err(Refusal::SourceCap) => prop_assert!(open[s as usize] >= per_source),
                        Err(Refusal::TotalCap) => prop_assert!(open.iter().sum::<u32>() >= total),
                        Err(Refusal::ConnectionRate) => {}
                        Err(r) => prop_assert!(false, "unexpected {:?}", r),
                    }
                }
                Op::Close(s) => {
                    if open[s as usize] > 0 {
                        open[s as usize] -= 1;
                        a.release(IpAddr::from([192, 0, 2, s]));
                    }
                }
                Op::Wait(ms) => now += Duration::from_millis(u64::from(ms)),
            }
            prop_assert!(open.iter().all(|&n| n <= per_source));
            prop_assert!(open.iter().sum::<u32>() <= total);
            prop_assert_eq!(a.counters().active, open.iter().sum::<u32>());
        }
        // GCRA with rate r and burst b admits at most b + r*T within any window of T seconds.
        for times in &admitted {
            for (i, &start) in times.iter().enumerate() {
                let window = Duration::from_secs(1);
                let n = times[i..].iter().take_while(|&&t| t < start + window).count();
                prop_assert!(n <= 3 + 5, "{} in a second", n);
            }
        }
    }
}
