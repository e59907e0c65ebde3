//! The privnet sidecar: configuration, identity files and the `privnet` command line.
//!
//! The binary (`src/main.rs`) is a thin wrapper around [`cli::main`]; the driver and the tests use
//! [`config`] directly.
// `unsafe_code` is denied by the workspace lints; the OS interfaces live in `privnet_core::io`.
#![warn(missing_docs)]

pub mod cli;
pub mod config;
pub mod control;
pub mod driver;
pub mod files;
pub mod logging;
