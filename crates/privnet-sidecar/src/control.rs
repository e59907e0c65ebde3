//! Operations interfaces of a running sidecar: the status socket (a Unix socket, mode 0600, one
//! JSON document per connection) used by `privnet status` and `privnet health`, and the Prometheus
//! `/metrics` endpoint (off by default; loopback only, enforced by the config loader).

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener};

use crate::driver::{NetworkSnapshot, Snapshots};

/// Largest request read from a status or metrics client.
const MAX_REQUEST: usize = 4096;

fn snapshot_json(snapshots: &Snapshots) -> String {
    let all = snapshots.lock().map(|s| s.clone()).unwrap_or_default();
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

/// Serve Prometheus metrics on `addr` (loopback).
pub async fn serve_metrics(addr: SocketAddr, snapshots: Snapshots) -> anyhow::Result<()> {
    if !addr.ip().is_loopback() {
        bail!("metrics address {addr} is not a loopback address");
    }
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the metrics endpoint {addr}"))?;
    tracing::info!(%addr, "metrics endpoint listening");
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                continue;
            };
            let snaps = snapshots.lock().map(|s| s.clone()).unwrap_or_default();
            tokio::spawn(async move {
                let mut req = [0u8; MAX_REQUEST];
                let n = tokio::time::timeout(Duration::from_secs(2), conn.read(&mut req))
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .unwrap_or(0);
                let head = String::from_utf8_lossy(&req[..n]);
                let (status, body) = if head.starts_with("GET /metrics") {
                    ("200 OK", render_metrics(&snaps))
                } else {
                    ("404 Not Found", "not found; try /metrics\n".to_owned())
                };
                let resp = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(resp.as_bytes()).await;
                let _ = conn.shutdown().await;
            });
        }
    });
    Ok(())
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

fn label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', " ")
}

/// The Prometheus text exposition of the snapshots.
pub fn render_metrics(snaps: &[NetworkSnapshot]) -> String {
    let mut o = String::new();
    let family = |o: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
    family(&mut o, "privnet_up", "gauge", "1 while the network runs.");
    for s in snaps {
        let _ = writeln!(o, "privnet_up{{network=\"{}\"}} 1", label(&s.network));
    }
    for (name, help, get) in [
        (
            "privnet_tx_bytes_total",
            "Inner bytes sent to peers.",
            (|s: &NetworkSnapshot| s.tx_bytes) as fn(&NetworkSnapshot) -> u64,
        ),
        (
            "privnet_rx_bytes_total",
            "Inner bytes received from peers.",
            |s| s.rx_bytes,
        ),
        ("privnet_tx_packets_total", "Data packets sent.", |s| {
            s.tx_packets
        }),
        (
            "privnet_rx_packets_total",
            "Data packets received and delivered.",
            |s| s.rx_packets,
        ),
        (
            "privnet_handshakes_initiated_total",
            "Handshake initiations sent.",
            |s| s.handshakes_initiated,
        ),
        (
            "privnet_handshakes_completed_total",
            "Handshakes completed.",
            |s| s.handshakes_completed,
        ),
        (
            "privnet_cookie_replies_total",
            "Cookie replies sent (under load).",
            |s| s.cookies_sent,
        ),
    ] {
        family(&mut o, name, "counter", help);
        for s in snaps {
            let _ = writeln!(o, "{name}{{network=\"{}\"}} {}", label(&s.network), get(s));
        }
    }
    family(
        &mut o,
        "privnet_drops_total",
        "counter",
        "Packets dropped, by reason.",
    );
    for s in snaps {
        for (reason, n) in &s.drops {
            let _ = writeln!(
                o,
                "privnet_drops_total{{network=\"{}\",reason=\"{}\"}} {n}",
                label(&s.network),
                label(reason)
            );
        }
    }
    for (name, kind, help) in [
        (
            "privnet_peer_rx_bytes_total",
            "counter",
            "Inner bytes received from the peer.",
        ),
        (
            "privnet_peer_tx_bytes_total",
            "counter",
            "Inner bytes sent to the peer.",
        ),
        (
            "privnet_peer_rx_packets_total",
            "counter",
            "Packets received from the peer.",
        ),
        (
            "privnet_peer_tx_packets_total",
            "counter",
            "Packets sent to the peer.",
        ),
        (
            "privnet_peer_handshakes_total",
            "counter",
            "Handshakes completed with the peer.",
        ),
        (
            "privnet_peer_drops_total",
            "counter",
            "Packets from the peer dropped, by reason.",
        ),
        (
            "privnet_peer_established",
            "gauge",
            "1 if a session with the peer is up.",
        ),
        (
            "privnet_peer_last_handshake_seconds",
            "gauge",
            "Seconds since the last handshake with the peer.",
        ),
    ] {
        family(&mut o, name, kind, help);
        for s in snaps {
            for p in &s.peers {
                let l = format!(
                    "network=\"{}\",peer=\"{}\"",
                    label(&s.network),
                    label(&p.name)
                );
                let v = match name {
                    "privnet_peer_rx_bytes_total" => Some(p.rx_bytes),
                    "privnet_peer_tx_bytes_total" => Some(p.tx_bytes),
                    "privnet_peer_rx_packets_total" => Some(p.rx_packets),
                    "privnet_peer_tx_packets_total" => Some(p.tx_packets),
                    "privnet_peer_handshakes_total" => Some(p.handshakes),
                    "privnet_peer_drops_total" => {
                        let _ =
                            writeln!(o, "{name}{{{l},reason=\"spoofed_source\"}} {}", p.spoofed);
                        None
                    }
                    "privnet_peer_established" => Some(u64::from(p.established)),
                    _ => p.last_handshake_secs_ago,
                };
                if let Some(v) = v {
                    let _ = writeln!(o, "{name}{{{l}}} {v}");
                }
            }
        }
    }
    family(
        &mut o,
        "privnet_driver_events_total",
        "counter",
        "Driver events: I/O errors and drops outside the core, ICMP errors generated, packets merged for TUN writes (tun_gro_*), busy-poll windows, hits and windows refused for budget.",
    );
    for s in snaps {
        let mut events: Vec<_> = s.driver.iter().collect();
        events.sort();
        for (event, n) in events {
            let _ = writeln!(
                o,
                "privnet_driver_events_total{{network=\"{}\",event=\"{}\"}} {n}",
                label(&s.network),
                label(event)
            );
        }
    }
    family(
        &mut o,
        "privnet_busy_poll_microseconds_total",
        "counter",
        "Time spent busy polling after packets (bounded to a tenth of a core).",
    );
    for s in snaps {
        let _ = writeln!(
            o,
            "privnet_busy_poll_microseconds_total{{network=\"{}\"}} {}",
            label(&s.network),
            s.busy_poll_us
        );
    }
    family(
        &mut o,
        "privnet_certificate_expiry_seconds",
        "gauge",
        "Seconds until a certificate (own or CA) expires.",
    );
    for s in snaps {
        for (subject, secs) in &s.expiry {
            let _ = writeln!(
                o,
                "privnet_certificate_expiry_seconds{{network=\"{}\",subject=\"{}\"}} {secs}",
                label(&s.network),
                label(subject)
            );
        }
    }
    o
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::PeerSnapshot;

    #[test]
    fn metrics_render_every_family() {
        let snap = NetworkSnapshot {
            network: "demo".into(),
            drops: vec![("bad_mac1".into(), 3)],
            peers: vec![PeerSnapshot {
                name: "b\"x".into(),
                established: true,
                rx_bytes: 10,
                ..Default::default()
            }],
            expiry: vec![("member a".into(), 100)],
            driver: [("busy_poll_hits".to_owned(), 7)].into_iter().collect(),
            busy_poll_us: 1234,
            ..Default::default()
        };
        let m = render_metrics(&[snap]);
        assert!(
            m.contains("privnet_driver_events_total{network=\"demo\",event=\"busy_poll_hits\"} 7")
        );
        assert!(m.contains("privnet_busy_poll_microseconds_total{network=\"demo\"} 1234"));
        assert!(m.contains("privnet_drops_total{network=\"demo\",reason=\"bad_mac1\"} 3"));
        assert!(m.contains("privnet_peer_rx_bytes_total{network=\"demo\",peer=\"b\\\"x\"} 10"));
        assert!(m.contains("privnet_peer_established{network=\"demo\",peer=\"b\\\"x\"} 1"));
        assert!(m.contains(
            "privnet_certificate_expiry_seconds{network=\"demo\",subject=\"member a\"} 100"
        ));
        for line in m.lines().filter(|l| !l.starts_with('#')) {
            assert!(
                line.rsplit(' ')
                    .next()
                    .is_some_and(|v| v.parse::<i64>().is_ok()),
                "{line}"
            );
        }
    }
}
