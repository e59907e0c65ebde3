//! Policy evaluation and connection tracking: on an arbitrary policy and arbitrary flows and
//! identities, the compiled engine (both of its strategies) and the explanation agree with the
//! naive reference evaluator; a filter driven by arbitrary packets, clock steps, reloads and
//! identity changes never panics, stays within its bounds, and decides every new flow as the
//! policy does.
#![no_main]

use std::sync::OnceLock;
use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use privnet_core::policy::fuzzing::{check_agreement, drive_filter};

fuzz_target!(|data: &[u8]| {
    // The filter's clock origin, taken once; the property only ever advances it.
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    #[allow(clippy::disallowed_methods)]
    let origin = *ORIGIN.get_or_init(Instant::now);
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 4 {
        0 => {
            check_agreement(rest, 32, 8, None);
        }
        1 => {
            check_agreement(rest, 16, 40, Some(4));
        }
        _ => {
            drive_filter(rest, origin);
        }
    }
});
