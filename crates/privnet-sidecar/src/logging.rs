//! Logging through `tracing`: text or JSON on stderr, level from the configuration (overridable with
//! `RUST_LOG`-style `PRIVNET_LOG`, e.g. `PRIVNET_LOG=debug`). The level can be changed while running
//! ([`LogControl::set_level`], used by a SIGHUP reload); the format cannot. With `[log] audit`,
//! the audit events (target `privnet::audit`) also go to the audit log ([`crate::audit`]) whatever
//! the level.

use std::io::IsTerminal;

use tracing::Level;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{reload, EnvFilter, Layer as _, Registry};

use crate::audit::{AuditLog, AUDIT_TARGET};
use crate::config::{LogFormat, LogLevel, LogSection};

/// Changes the level of the installed subscriber.
pub struct LogControl {
    set: Box<dyn Fn(EnvFilter) -> Result<(), String> + Send + Sync>,
    /// `PRIVNET_LOG` was set: it wins over the configuration, at start and on reload.
    env_override: bool,
    /// The audit log, if configured.
    audit: Option<AuditLog>,
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

    /// Reopen the audit log, if any (SIGHUP: after a log rotation).
    pub fn reopen_audit(&self) {
        if let Some(a) = &self.audit {
            a.reopen();
        }
    }
}

fn level_name(level: LogLevel) -> String {
    format!("{level:?}").to_lowercase()
}

/// Install the global subscriber (once; later calls are ignored and return `None`), writing the
/// audit events to `audit` too.
pub fn init(log: &LogSection, audit: Option<AuditLog>) -> Option<LogControl> {
    let env = EnvFilter::try_from_env("PRIVNET_LOG").ok();
    let env_override = env.is_some();
    let filter = env.unwrap_or_else(|| EnvFilter::new(level_name(log.level)));
    let (filter, handle) = reload::Layer::<EnvFilter, Registry>::new(filter);
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    let fmt = match log.format {
        LogFormat::Json => fmt.json().with_filter(filter).boxed(),
        LogFormat::Text => fmt.with_filter(filter).boxed(),
    };
    let audit_layer = audit.as_ref().map(|a| {
        a.layer()
            .with_filter(Targets::new().with_target(AUDIT_TARGET, Level::INFO))
    });
    tracing_subscriber::registry()
        .with(fmt)
        .with(audit_layer)
        .try_init()
        .ok()?;
    Some(LogControl {
        set: Box::new(move |f| handle.reload(f).map_err(|e| e.to_string())),
        env_override,
        audit,
    })
}
