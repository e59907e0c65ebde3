//! A network namespace per test (`pnt-<pid>-<n>`, removed by a guard even on failure), entered from
//! a dedicated thread that runs the test on a current-thread tokio runtime, every step bounded in
//! time. Creating one goes through the root policy of `privileged.rs`.
// A test: it reads the real clock or opens sockets (see clippy.toml).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]
#![allow(dead_code)] // each test crate uses a different part

use std::future::Future;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use privnet_core::io::sys::netns;

/// Bound on a whole test.
pub(crate) const TEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on one step of a test.
pub(crate) const STEP_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) struct Netns {
    name: String,
}

impl Netns {
    /// A fresh namespace for `test`, or `None` (reported as skipped) without the privileges.
    pub(crate) fn create(test: &str) -> Option<Self> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        if !crate::privileged::privileged(test) {
            return None;
        }
        let name = format!(
            "pnt-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let out = Command::new("ip").args(["netns", "add", &name]).output();
        let out = out.expect("failed to run `ip netns add` (is iproute2 installed?)");
        assert!(
            out.status.success(),
            "ip netns add {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(Self { name })
    }

    /// `ip -n NS ARGS`, returning stdout; panics on failure.
    pub(crate) fn ip(&self, args: &[&str]) -> String {
        let out = Command::new("ip")
            .arg("-n")
            .arg(&self.name)
            .args(args)
            .output();
        let out = out.expect("failed to run ip");
        assert!(
            out.status.success(),
            "ip -n {} {}: {}",
            self.name,
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Run `f` on a fresh thread inside this namespace, on a current-thread tokio runtime,
    /// bounded by [`TEST_TIMEOUT`]. Panics in `f` are re-raised here.
    pub(crate) fn run<F, Fut>(&self, f: F)
    where
        F: FnOnce(String) -> Fut + Send + 'static,
        Fut: Future<Output = ()>,
    {
        let name = self.name.clone();
        let thread = std::thread::spawn(move || {
            netns::enter_named(&name).expect("enter test namespace");
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("build tokio runtime");
            rt.block_on(async move {
                tokio::time::timeout(TEST_TIMEOUT, f(name))
                    .await
                    .expect("test did not finish within its time limit");
            });
        });
        if let Err(panic) = thread.join() {
            std::panic::resume_unwind(panic);
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

pub(crate) async fn step<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(STEP_TIMEOUT, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {STEP_TIMEOUT:?}: {what}"),
    }
}
