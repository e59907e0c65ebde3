//! The policy front end: arbitrary text never panics; every parse problem carries a line and
//! column inside the text; a policy that parses compiles or is refused with located problems;
//! one that compiles can be hashed, linted, explained and its embedded tests run.
#![no_main]

use libfuzzer_sys::fuzz_target;
use privnet_core::policy::selftest::run_tests;
use privnet_core::policy::{compile, lint::lint, parse_policy, End, Flow, MemberRef};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lines = text.lines().count().max(1) + 1;
    let spec = match parse_policy(text, "fuzz.toml") {
        Ok(spec) => spec,
        Err(e) => {
            assert!(!e.problems.is_empty());
            for p in &e.problems {
                let l = p.location.expect("parse problems carry a position");
                assert!(l.line >= 1 && l.line <= lines && l.column >= 1, "{e}");
                assert!(!p.expected.is_empty());
            }
            let _ = e.to_string();
            return;
        }
    };
    let policy = match compile(&spec, "fuzz.toml") {
        Ok(p) => p,
        Err(e) => {
            for p in &e.problems {
                // Only whole-policy problems (size limits) have no position.
                assert!(p.location.is_some() || p.key.is_empty(), "{e}");
            }
            return;
        }
    };
    let _ = policy.hash_hex();
    if spec.rule_count() <= 200 {
        let _ = lint(&policy, Some(&[MemberRef::new("a", &["g"])]));
    }
    let _ = run_tests(&policy, &[]);
    let f = Flow::tcp([10, 0, 0, 1].into(), 1, [10, 0, 0, 2].into(), 80, 2);
    let m = MemberRef::new("a", &["g"]);
    let e = policy.explain(&f, End::Local(&m), End::External);
    assert_eq!(e.verdict, policy.evaluate_ends(&f, End::Local(&m), End::External));
});
