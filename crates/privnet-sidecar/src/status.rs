//! The status socket of a running sidecar (a Unix socket, mode 0600, one JSON document per
//! connection) used by `privnet status` and `privnet health`: the server, the client and the
//! human-readable format. The document is the list of the drivers' snapshots
//! ([`privnet_core::io::NetworkSnapshot`]).

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use privnet_core::io::{DriverHandle, NetworkSnapshot};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;

/// Largest request read from a status or metrics client.
pub(crate) const MAX_REQUEST: usize = 4096;

/// The snapshots of every running network, in configuration order, shared by the status socket
/// and the metrics endpoint. Reading them takes the drivers' latest published snapshots; nothing
/// waits for a driver.
#[derive(Clone, Debug, Default)]
pub struct Snapshots(Arc<Vec<DriverHandle>>);

impl Snapshots {
    /// The snapshots of the drivers behind `handles`.
    pub fn new(handles: Vec<DriverHandle>) -> Self {
        Self(Arc::new(handles))
    }

    /// A copy of every network's latest snapshot.
    pub fn collect(&self) -> Vec<NetworkSnapshot> {
        self.0.iter().map(|h| (*h.snapshot()).clone()).collect()
    }
}

fn snapshot_json(snapshots: &Snapshots) -> String {
    let all = snapshots.collect();
    serde_json::to_string_pretty(&all).unwrap_or_else(|_| "[]".to_owned())
}

/// Bind the status socket at `path` (mode 0600) and serve snapshots on it. Returns the path, for
/// removal at shutdown.
pub fn serve_status(path: PathBuf, snapshots: Snapshots) -> anyhow::Result<PathBuf> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the status socket directory {}", dir.display()))?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(&path).is_ok() {
            bail!(
                "status socket {} is in use: another privnet is running with this configuration",
                path.display()
            );
        }
        std::fs::remove_file(&path)
            .with_context(|| format!("removing stale status socket {}", path.display()))?;
    }
    let listener = UnixListener::bind(&path)
        .with_context(|| format!("binding the status socket {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("chmod 0600 {}", path.display()))?;
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                continue;
            };
            let body = snapshot_json(&snapshots);
            tokio::spawn(async move {
                let mut req = [0u8; MAX_REQUEST];
                // The request is a single line ("status"); read what is there, bounded in time.
                let _ = tokio::time::timeout(Duration::from_millis(200), conn.read(&mut req)).await;
                let _ = conn.write_all(body.as_bytes()).await;
                let _ = conn.shutdown().await;
            });
        }
    });
    Ok(path)
}

/// Ask a running sidecar for its status.
pub fn query_status(socket: &Path) -> anyhow::Result<Vec<serde_json::Value>> {
    let mut s = std::os::unix::net::UnixStream::connect(socket).with_context(|| {
        format!(
            "connecting to the status socket {} (is `privnet up` running?)",
            socket.display()
        )
    })?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    s.write_all(b"status\n")?;
    let mut body = String::new();
    s.take(16 << 20).read_to_string(&mut body)?;
    serde_json::from_str(&body).context("the status socket answered with invalid JSON")
}

/// Human-readable status.
pub fn format_status(nets: &[serde_json::Value]) -> String {
    let mut o = String::new();
    for n in nets {
        let g = |k: &str| n.get(k).cloned().unwrap_or(serde_json::Value::Null);
        let _ = writeln!(
            o,
            "network {} — member {} ({}), device {} {}, listening on {}, cipher {}, up {} s",
            g("network").as_str().unwrap_or("?"),
            g("member").as_str().unwrap_or("?"),
            g("public_key").as_str().unwrap_or("?"),
            g("device").as_str().unwrap_or("?"),
            joined(&g("addresses")),
            g("listen").as_str().unwrap_or("?"),
            g("cipher").as_str().unwrap_or("?"),
            g("uptime_secs")
        );
        let _ = writeln!(
            o,
            "  tx {} packets / {} bytes, rx {} packets / {} bytes, handshakes {} initiated / {} completed, cookies {}",
            g("tx_packets"), g("tx_bytes"), g("rx_packets"), g("rx_bytes"),
            g("handshakes_initiated"), g("handshakes_completed"), g("cookies_sent")
        );
        if let Some(events) = n.get("driver").and_then(|d| d.as_object()) {
            if !events.is_empty() {
                let list: Vec<String> = events.iter().map(|(k, v)| format!("{k} {v}")).collect();
                let _ = writeln!(o, "  driver events: {}", list.join(", "));
            }
        }
        if let Some(drops) = n.get("drops").and_then(|d| d.as_array()) {
            if !drops.is_empty() {
                let list: Vec<String> = drops
                    .iter()
                    .filter_map(|d| Some(format!("{} {}", d.get(0)?.as_str()?, d.get(1)?)))
                    .collect();
                let _ = writeln!(o, "  drops: {}", list.join(", "));
            }
        }
        for p in n
            .get("peers")
            .and_then(|p| p.as_array())
            .into_iter()
            .flatten()
        {
            let pg = |k: &str| p.get(k).cloned().unwrap_or(serde_json::Value::Null);
            let hs = match pg("last_handshake_secs_ago").as_u64() {
                Some(s) => format!("{s} s ago"),
                None => "never".to_owned(),
            };
            let _ = writeln!(
                o,
                "  peer {} {} endpoint {} {} — {}, last handshake {}, rx {} B, tx {} B",
                pg("name").as_str().unwrap_or("?"),
                joined(&pg("addresses")),
                pg("endpoint").as_str().unwrap_or("-"),
                pg("public_key").as_str().unwrap_or("?"),
                if pg("established").as_bool() == Some(true) {
                    "up"
                } else {
                    "down"
                },
                hs,
                pg("rx_bytes"),
                pg("tx_bytes")
            );
        }
    }
    o
}

fn joined(v: &serde_json::Value) -> String {
    match v.as_array() {
        Some(a) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| x.to_string())
            })
            .collect::<Vec<_>>()
            .join(" "),
        None => v.to_string(),
    }
}
