//! The audit log (`[log] audit`, docs/CONFIG.md): one JSON object per line for each access policy
//! applied (`"event": "policy_applied"`: time, network, file, hash, previous hash, rules, flows
//! cut, what triggered it) and each flow the policy refused (`"event": "flow_refused"`: time,
//! network, this member, the peer's verified name and groups, direction, action, the 5-tuple, rule
//! id, tier; rate-limited by the node, with the count of events left out in `suppressed`).
//!
//! The lines are the `tracing` events of target [`AUDIT_TARGET`], whatever the log level; a
//! [`tracing_subscriber::Layer`] turns each into JSON on the thread that logged it (a driver's:
//! a few fields, no I/O) and hands it to a writer thread of its own through a bounded queue, so
//! a slow disk never stalls a driver: when the queue is full, lines are dropped and the next line
//! written says how many (`"audit_lines_dropped"`). The file is opened for appending (created with
//! mode 0600) and reopened on SIGHUP, for log rotation.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

use crate::timefmt::utc_millis;

/// The `tracing` target of audit events.
pub const AUDIT_TARGET: &str = "privnet::audit";

/// Lines waiting for the writer at most.
const QUEUE: usize = 4096;

enum Msg {
    Line(String),
    Reopen,
}

/// An open audit log: its writer thread and the queue to it.
#[derive(Clone, Debug)]
pub struct AuditLog {
    path: PathBuf,
    tx: SyncSender<Msg>,
    dropped: Arc<AtomicU64>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Line(_) => "Line",
            Self::Reopen => "Reopen",
        })
    }
}

fn open_file(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

impl AuditLog {
    /// Open (or create, mode 0600) the audit log at `path` for appending, and start its writer.
    ///
    /// # Errors
    /// The file cannot be opened (a symbolic link is refused) or the thread not started.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let file =
            open_file(path).with_context(|| format!("opening the audit log {}", path.display()))?;
        let (tx, rx) = sync_channel(QUEUE);
        let shown = path.to_owned();
        std::thread::Builder::new()
            .name("privnet-audit".into())
            .spawn(move || write_lines(&shown, file, &rx))
            .context("starting the audit log's writer thread")?;
        Ok(Self {
            path: path.to_owned(),
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reopen the file (after a log rotation moved it away).
    pub fn reopen(&self) {
        let _ = self.tx.try_send(Msg::Reopen);
    }

    /// The layer that writes the audit events into this log.
    pub fn layer(&self) -> AuditLayer {
        AuditLayer {
            tx: self.tx.clone(),
            dropped: self.dropped.clone(),
        }
    }
}

fn write_lines(path: &Path, mut file: File, rx: &Receiver<Msg>) {
    let mut failed = false;
    while let Ok(msg) = rx.recv() {
        match msg {
            Msg::Reopen => match open_file(path) {
                Ok(f) => file = f,
                Err(e) => eprintln!("audit log {}: reopening: {e}", path.display()),
            },
            Msg::Line(line) => {
                let r = file.write_all(line.as_bytes());
                // One complaint per run of failures (on stderr: logging it would loop).
                if let Err(e) = &r {
                    if !failed {
                        eprintln!(
                            "audit log {}: {e}; audit lines are being lost",
                            path.display()
                        );
                    }
                }
                failed = r.is_err();
            }
        }
    }
}

/// Writes the events of target [`AUDIT_TARGET`] to an [`AuditLog`].
#[derive(Debug)]
pub struct AuditLayer {
    tx: SyncSender<Msg>,
    dropped: Arc<AtomicU64>,
}

impl<S: Subscriber> Layer<S> for AuditLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if event.metadata().target() != AUDIT_TARGET {
            return;
        }
        let line = to_line(event, self.dropped.swap(0, Ordering::Relaxed));
        match self.tx.try_send(Msg::Line(line)) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// One event as a JSON line: `time` first, then the fields, `message` last.
fn to_line(event: &Event<'_>, dropped: u64) -> String {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let mut v = Fields(Map::new());
    v.0.insert("time".into(), Value::String(utc_millis(ms)));
    event.record(&mut v);
    if dropped > 0 {
        v.0.insert("audit_lines_dropped".into(), Value::from(dropped));
    }
    if let Some(m) = v.0.remove("message") {
        v.0.insert("message".into(), m);
    }
    let mut line = Value::Object(v.0).to_string();
    line.push('\n');
    line
}

struct Fields(Map<String, Value>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().into(), Value::String(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), Value::from(value));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt as _;

    fn lines(path: &Path, n: usize) -> Vec<Value> {
        for _ in 0..200 {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            if text.lines().count() >= n {
                return text
                    .lines()
                    .map(|l| serde_json::from_str(l).unwrap())
                    .collect();
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("fewer than {n} lines in {}", path.display());
    }

    #[test]
    fn audit_events_become_json_lines_and_others_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(&path).unwrap();
        let sub = tracing_subscriber::registry().with(log.layer());
        tracing::subscriber::with_default(sub, || {
            tracing::info!("not an audit line");
            tracing::info!(target: "privnet::audit", event = "flow_refused", network = "shop",
                peer = %"web-1", src_port = 40000u16, dst_port = "5432", rule = "deny-db",
                "flow refused by the access policy");
            tracing::warn!(target: "privnet::audit", event = "policy_applied", rules = 12usize,
                flows_cut = 3usize, "applied");
        });
        let got = lines(&path, 2);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0]["event"], "flow_refused");
        assert_eq!(got[0]["peer"], "web-1");
        assert_eq!(got[0]["src_port"], 40000);
        assert_eq!(got[0]["rule"], "deny-db");
        assert_eq!(got[0]["message"], "flow refused by the access policy");
        assert!(got[0]["time"].as_str().unwrap().ends_with('Z'));
        assert_eq!(got[1]["flows_cut"], 3);
        // Mode 0600; reopened after a rotation.
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        std::fs::rename(&path, dir.path().join("audit.jsonl.1")).unwrap();
        log.reopen();
        let sub = tracing_subscriber::registry().with(log.layer());
        tracing::subscriber::with_default(sub, || {
            tracing::info!(target: "privnet::audit", event = "policy_applied", "after rotation");
        });
        assert_eq!(lines(&path, 1)[0]["message"], "after rotation");
        // A link is not followed.
        let link = dir.path().join("link.jsonl");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert!(AuditLog::open(&link).is_err());
    }
}
