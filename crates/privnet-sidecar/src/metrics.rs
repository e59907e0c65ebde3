//! The Prometheus `/metrics` endpoint of a running sidecar (off by default; loopback only, enforced
//! by the config loader and again here) and the text exposition of the drivers' snapshots.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context};
use privnet_core::io::NetworkSnapshot;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::status::{Snapshots, MAX_REQUEST};

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
            let snaps = snapshots.collect();
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

#[cfg(test)]
mod tests {
    use super::*;
    use privnet_core::io::PeerSnapshot;

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
