//! Logging through `tracing`: text or JSON on stderr, level from the configuration (overridable with
//! `RUST_LOG`-style `PRIVNET_LOG`, e.g. `PRIVNET_LOG=debug`).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogSection};

/// Install the global subscriber (once; later calls are ignored).
pub fn init(log: &LogSection) {
    let level = format!("{:?}", log.level).to_lowercase();
    let filter = EnvFilter::try_from_env("PRIVNET_LOG").unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    let _ = match log.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
