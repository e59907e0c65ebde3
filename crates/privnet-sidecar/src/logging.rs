//! Logging through `tracing`: text or JSON on stderr, level from the configuration (overridable with
//! `RUST_LOG`-style `PRIVNET_LOG`, e.g. `PRIVNET_LOG=debug`). The level can be changed while running
//! ([`LogControl::set_level`], used by a SIGHUP reload); the format cannot.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogLevel, LogSection};

/// Changes the level of the installed subscriber.
pub struct LogControl {
    set: Box<dyn Fn(EnvFilter) -> Result<(), String> + Send + Sync>,
    /// `PRIVNET_LOG` was set: it wins over the configuration, at start and on reload.
    env_override: bool,
}

impl std::fmt::Debug for LogControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogControl")
            .field("env_override", &self.env_override)
            .finish_non_exhaustive()
    }
}

impl LogControl {
    /// Log at `level` from now on. Returns `false` (and changes nothing) when `PRIVNET_LOG`
    /// decides the level or the filter could not be replaced.
    pub fn set_level(&self, level: LogLevel) -> bool {
        if self.env_override {
            return false;
        }
        (self.set)(EnvFilter::new(level_name(level))).is_ok()
    }

    /// Whether `PRIVNET_LOG` decides the level (configuration changes of `log.level` do nothing).
    pub fn env_override(&self) -> bool {
        self.env_override
    }
}

fn level_name(level: LogLevel) -> String {
    format!("{level:?}").to_lowercase()
}

/// Install the global subscriber (once; later calls are ignored and return `None`).
pub fn init(log: &LogSection) -> Option<LogControl> {
    let env = EnvFilter::try_from_env("PRIVNET_LOG").ok();
    let env_override = env.is_some();
    let filter = env.unwrap_or_else(|| EnvFilter::new(level_name(log.level)));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    match log.format {
        LogFormat::Json => {
            let builder = builder.json().with_filter_reloading();
            let handle = builder.reload_handle();
            builder.try_init().ok()?;
            Some(LogControl {
                set: Box::new(move |f| handle.reload(f).map_err(|e| e.to_string())),
                env_override,
            })
        }
        LogFormat::Text => {
            let builder = builder.with_filter_reloading();
            let handle = builder.reload_handle();
            builder.try_init().ok()?;
            Some(LogControl {
                set: Box::new(move |f| handle.reload(f).map_err(|e| e.to_string())),
                env_override,
            })
        }
    }
}
