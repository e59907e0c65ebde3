//! The privnet sidecar: configuration, identity files and the `privnet` command line.
//!
//! The binary (`src/main.rs`) is a thin wrapper around [`cli::main`]; the driver and the tests use
//! [`config`] directly.
// An I/O program, not sans-IO code: it reads clocks and opens sockets (see clippy.toml).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]
// `unsafe_code` is denied by the workspace lints; `sys/` (TUN ioctls) may allow it locally.
#![warn(missing_docs)]

pub mod busypoll;
pub mod cli;
pub mod config;
pub mod control;
pub mod driver;
pub mod files;
pub mod hold;
pub mod logging;
pub mod policy_cli;
pub mod sys;
pub mod turns;
