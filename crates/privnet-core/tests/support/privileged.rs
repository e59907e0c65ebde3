//! The root policy of tests that need privileges (network namespaces, TUN devices), in one place.
//!
//! A developer without root sees such a test reported as skipped, with the reason, on stderr; CI
//! (`scripts/test.sh` sets `PRIVNET_REQUIRE_PRIVILEGED_TESTS=1`) turns a skip into a failure, so
//! the tests can never pass there without having run.

use std::io::Write as _;
use std::os::unix::fs::MetadataExt;

/// Set to `1` to make a privileged test that cannot run fail instead of skip.
pub(crate) const REQUIRE_ENV: &str = "PRIVNET_REQUIRE_PRIVILEGED_TESTS";

/// Whether `test` can run here (root and `/dev/net/tun`). When it cannot, prints
/// `skipped: <test>: <reason>` to stderr and returns `false`, or panics if [`REQUIRE_ENV`] is `1`.
pub(crate) fn privileged(test: &str) -> bool {
    // /proc/self is owned by the process's effective uid.
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    let reason = if !root {
        "needs root (network namespaces, /dev/net/tun)"
    } else if !std::path::Path::new("/dev/net/tun").exists() {
        "needs /dev/net/tun (load the tun module or give the container the device)"
    } else {
        return true;
    };
    if std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "1") {
        panic!("{test}: {reason}, and {REQUIRE_ENV}=1 forbids skipping it");
    }
    // Straight to the stderr stream: `eprintln!` output of a passing test is captured by the test
    // harness and never shown, and a skip must be seen.
    let _ = writeln!(std::io::stderr(), "skipped: {test}: {reason}");
    false
}
