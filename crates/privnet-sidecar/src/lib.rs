//! The privnet sidecar: configuration, identity files and the `privnet` command line.
//!
//! The binary (`src/main.rs`) is a thin wrapper around [`cli::main`]. [`up`] turns the validated
//! [`config`] into library drivers (`privnet_core::io`) and handles signals; [`status`] and
//! [`metrics`] serve the drivers' snapshots; [`userspace`] serves a network in
//! `tun.mode = "userspace"` (embedded stack: forwards, published services, SOCKS5); [`demo`] is
//! `privnet demo`; [`cli::member`] is `privnet member add`.
// An I/O program, not sans-IO code: it reads clocks and opens sockets (see clippy.toml).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]
// `unsafe_code` is denied by the workspace lints; the OS interfaces live in `privnet_core::io`,
// except one `geteuid` call in `files.rs` (with its `// SAFETY:` comment).
#![warn(missing_docs)]

pub mod audit;
pub mod cli;
pub mod config;
pub mod demo;
pub mod explain_live;
pub mod exposures;
pub mod files;
pub mod logging;
pub mod metrics;
pub mod policy_cli;
pub mod policy_watch;
pub mod server;
pub mod status;
pub mod timefmt;
pub mod up;
pub mod userspace;
