//! Property tests of the policy engine against the naive reference evaluator, and the test
//! helpers shared by the policy modules' unit tests.
// A test: it takes the origin of its fake clock from the real one (see clippy.toml).
#![allow(clippy::disallowed_methods)]

use std::time::Instant;

use proptest::prelude::*;

use super::compile::compile;
use super::eval::{Decider, End};
use super::flow::MemberRef;
use super::fuzzing::{check_agreement, drive_filter};
use super::reference::{gen_flow, gen_member, gen_spec, ByteSource};

/// The origin of a fake clock (tests only advance it).
pub(crate) fn t0() -> Instant {
    Instant::now()
}

fn end<'a>(kind: u8, m: &'a MemberRef) -> End<'a> {
    match kind % 3 {
        0 => End::Local(m),
        1 => End::Member(m),
        _ => End::External,
    }
}

/// Compiled and reference agree on one policy for a batch of flows; returns how many flows.
pub(crate) fn agree(bytes: &[u8], flows: usize) -> usize {
    check_agreement(bytes, flows, 6, None)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, .. ProptestConfig::default() })]

    #[test]
    fn compiled_engine_agrees_with_the_reference(bytes in proptest::collection::vec(any::<u8>(), 64..2048)) {
        agree(&bytes, 64);
    }

    #[test]
    fn agreement_with_many_rules_and_residual_entries(
        bytes in proptest::collection::vec(any::<u8>(), 2048..8192),
        budget in prop_oneof![Just(None), Just(Some(0usize)), Just(Some(8usize))],
    ) {
        // Up to 120 rules per tier: several bit-set words, sparse lists that cross words.
        check_agreement(&bytes, 64, 120, budget);
    }
}

#[test]
fn agreement_on_fixed_seeds() {
    // Deterministic inputs (a cheap pseudo-random byte stream) so a failure reproduces exactly.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..200 {
        let bytes: Vec<u8> = (0..1500)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        agree(&bytes, 100);
    }
}

#[test]
fn generated_inputs_exercise_rules() {
    // Guard against a generator that only ever produces defaults: most verdicts come from rules,
    // and every action shows up.
    let mut x: u64 = 12345;
    let (mut by_rule, mut total) = (0, 0);
    let mut actions = std::collections::HashSet::new();
    let mut logged = 0;
    for _ in 0..100 {
        let bytes: Vec<u8> = (0..1500)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let mut u = ByteSource::new(&bytes);
        let spec = gen_spec(&mut u, 6);
        let c = compile(&spec, "gen").unwrap();
        for _ in 0..50 {
            let flow = gen_flow(&mut u);
            let (a, b) = (gen_member(&mut u), gen_member(&mut u));
            let (ka, kb) = (u.byte(), u.byte());
            let v = c.evaluate_ends(&flow, end(ka, &a), end(kb, &b));
            total += 1;
            if matches!(v.decided_by, Decider::Rule(_)) {
                by_rule += 1;
            }
            if v.logged.is_some() {
                logged += 1;
            }
            actions.insert(v.action);
        }
    }
    assert!(by_rule * 3 > total, "{by_rule} of {total} by rules");
    assert!(logged > 0);
    assert_eq!(actions.len(), 3, "{actions:?}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, .. ProptestConfig::default() })]

    #[test]
    fn the_filter_stays_bounded_and_decides_like_the_policy(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        drive_filter(&bytes, t0());
    }
}
