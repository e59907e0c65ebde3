//! The Prometheus `/metrics` endpoint of a running sidecar (off by default; loopback only, enforced
//! by the config loader and again here) and the text exposition of the networks' snapshots. The
//! endpoint runs on the [`ServerThread`], never on a driver's (see `server.rs` for the limits).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use privnet_core::io::{NetworkSnapshot, PolicySnapshot};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::server::{bounded, Gate, Rendered, ServerThread, WRITE_TIMEOUT};
use crate::status::{ExposureStatus, NetworkStatus, Snapshots, MAX_REQUEST};

mod routes;

/// How long the metrics endpoint waits for the request line.
pub const METRICS_READ_TIMEOUT: Duration = Duration::from_secs(2);

/// Bind the metrics endpoint on `addr` (loopback) and serve it from the servers' thread. Returns
/// the bound address (`addr` with port 0 gets a free port).
///
/// # Errors
/// A non-loopback address, or the address could not be bound.
pub fn serve_metrics(
    addr: SocketAddr,
    snapshots: Snapshots,
    servers: &ServerThread,
) -> anyhow::Result<SocketAddr> {
    if !addr.ip().is_loopback() {
        bail!("metrics address {addr} is not a loopback address");
    }
    let listener = std::net::TcpListener::bind(addr)
        .with_context(|| format!("binding the metrics endpoint {addr}"))?;
    listener
        .set_nonblocking(true)
        .with_context(|| format!("metrics endpoint {addr}"))?;
    let bound = listener
        .local_addr()
        .with_context(|| format!("metrics endpoint {addr}"))?;
    tracing::info!(addr = %bound, "metrics endpoint listening");
    servers.spawn(async move {
        let listener = match TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!("metrics endpoint {bound}: {e}; metrics will not be served");
                return;
            }
        };
        let body = Arc::new(Rendered::new(move || render_status(&snapshots.collect())));
        let mut gate = Gate::new("metrics endpoint");
        loop {
            let mut conn = match listener.accept().await {
                Ok((conn, _)) => conn,
                Err(e) => {
                    gate.failed(e).await;
                    continue;
                }
            };
            let Some(permit) = gate.admit() else {
                drop(conn);
                continue;
            };
            let body = body.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let mut req = [0u8; MAX_REQUEST];
                let n = bounded(METRICS_READ_TIMEOUT, conn.read(&mut req))
                    .await
                    .and_then(Result::ok)
                    .unwrap_or(0);
                let head = String::from_utf8_lossy(&req[..n]);
                let found = head.starts_with("GET /metrics");
                let doc = if found { body.get() } else { Arc::new(String::new()) };
                let (status, text): (&str, &str) = if found {
                    ("200 OK", doc.as_str())
                } else {
                    ("404 Not Found", "not found; try /metrics\n")
                };
                let resp = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    text.len()
                );
                let _ = bounded(WRITE_TIMEOUT, async {
                    let _ = conn.write_all(resp.as_bytes()).await;
                    let _ = conn.write_all(text.as_bytes()).await;
                    let _ = conn.shutdown().await;
                })
                .await;
            });
        }
    });
    Ok(bound)
}

fn label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', " ")
}

/// The Prometheus text exposition of the networks: [`render_metrics`] of their snapshots, with
/// `privnet_up` from whether each driver still runs and `privnet_restart_needed` from the keys
/// waiting for a restart.
pub fn render_status(nets: &[NetworkStatus]) -> String {
    let snaps: Vec<NetworkSnapshot> = nets.iter().map(|n| n.snapshot.clone()).collect();
    let up: Vec<bool> = nets.iter().map(|n| n.running).collect();
    let mut o = render(&snaps, &up);
    let _ = writeln!(
        o,
        "# HELP privnet_restart_needed Configuration keys changed since start that take effect only after a restart.\n# TYPE privnet_restart_needed gauge"
    );
    for n in nets {
        let _ = writeln!(
            o,
            "privnet_restart_needed{{network=\"{}\"}} {}",
            label(&n.snapshot.network),
            n.restart_needed.len()
        );
    }
    let _ = writeln!(
        o,
        "# HELP privnet_policy_refused Problems of the last new version of the access policy that was refused (0 once a version is applied).\n# TYPE privnet_policy_refused gauge"
    );
    for n in nets {
        let _ = writeln!(
            o,
            "privnet_policy_refused{{network=\"{}\"}} {}",
            label(&n.snapshot.network),
            n.policy_refused.len()
        );
    }
    render_exposures(&mut o, nets);
    render_directory(&mut o, nets);
    render_dns(&mut o, nets);
    o
}

/// The exposure families (`[[expose]]`), labelled by network and exposure name.
fn render_exposures(o: &mut String, nets: &[NetworkStatus]) {
    let all: Vec<(String, &ExposureStatus)> = nets
        .iter()
        .flat_map(|n| n.exposures.iter().map(|e| (label(&n.snapshot.network), e)))
        .collect();
    if all.is_empty() {
        return;
    }
    let head = |o: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
    head(
        o,
        "privnet_expose_admitted_total",
        "counter",
        "Outside connections (TCP) and flows (UDP) admitted by an exposure.",
    );
    for (net, e) in &all {
        let _ = writeln!(
            o,
            "privnet_expose_admitted_total{{network=\"{net}\",exposure=\"{}\"}} {}",
            label(&e.snapshot.name),
            e.snapshot.admitted
        );
    }
    head(
        o,
        "privnet_expose_active",
        "gauge",
        "Connections and flows of an exposure open now.",
    );
    for (net, e) in &all {
        let _ = writeln!(
            o,
            "privnet_expose_active{{network=\"{net}\",exposure=\"{}\"}} {}",
            label(&e.snapshot.name),
            e.snapshot.active
        );
    }
    head(
        o,
        "privnet_expose_refused_total",
        "counter",
        "Connections, flows and datagrams an exposure refused, by reason.",
    );
    for (net, e) in &all {
        for (reason, n) in &e.snapshot.refused {
            let _ = writeln!(o, "privnet_expose_refused_total{{network=\"{net}\",exposure=\"{}\",reason=\"{reason}\"}} {n}", label(&e.snapshot.name));
        }
    }
    head(
        o,
        "privnet_expose_bytes_total",
        "counter",
        "Bytes relayed by an exposure (in: from clients; out: to clients).",
    );
    for (net, e) in &all {
        let x = label(&e.snapshot.name);
        let _ = writeln!(
            o,
            "privnet_expose_bytes_total{{network=\"{net}\",exposure=\"{x}\",direction=\"in\"}} {}",
            e.snapshot.bytes_in
        );
        let _ = writeln!(
            o,
            "privnet_expose_bytes_total{{network=\"{net}\",exposure=\"{x}\",direction=\"out\"}} {}",
            e.snapshot.bytes_out
        );
    }
    head(
        o,
        "privnet_expose_throttled_total",
        "counter",
        "Times a TCP flow of an exposure waited for its source's byte budget.",
    );
    for (net, e) in &all {
        let _ = writeln!(
            o,
            "privnet_expose_throttled_total{{network=\"{net}\",exposure=\"{}\"}} {}",
            label(&e.snapshot.name),
            e.snapshot.throttled
        );
    }
    head(
        o,
        "privnet_expose_target_healthy",
        "gauge",
        "1 when the member behind a target of an exposure has an established session.",
    );
    for (net, e) in &all {
        for t in &e.snapshot.targets {
            let _ = writeln!(o, "privnet_expose_target_healthy{{network=\"{net}\",exposure=\"{}\",target=\"{}\"}} {}", label(&e.snapshot.name), label(&t.address), u8::from(t.healthy));
        }
    }
    head(
        o,
        "privnet_expose_block_list_entries",
        "gauge",
        "Entries of a block-list in force.",
    );
    for (net, e) in &all {
        for (file, entries, _) in &e.snapshot.block_lists {
            let _ = writeln!(o, "privnet_expose_block_list_entries{{network=\"{net}\",exposure=\"{}\",list=\"{}\"}} {entries}", label(&e.snapshot.name), label(file));
        }
    }
    head(o, "privnet_expose_block_list_refused", "gauge", "Problems of the last new version of a block-list that was refused (0 once a version is applied).");
    for (net, e) in &all {
        let _ = writeln!(
            o,
            "privnet_expose_block_list_refused{{network=\"{net}\",exposure=\"{}\"}} {}",
            label(&e.snapshot.name),
            e.lists_refused.len()
        );
    }
}

/// The DNS responder metrics of the networks that have one: messages by outcome.
fn render_dns(o: &mut String, nets: &[NetworkStatus]) {
    let with: Vec<(&str, &crate::status::DnsShown)> = nets
        .iter()
        .filter_map(|n| n.dns.as_ref().map(|d| (n.snapshot.network.as_str(), d)))
        .collect();
    if with.is_empty() {
        return;
    }
    let _ = writeln!(o, "# HELP privnet_dns_queries_total DNS messages received by the responder, by outcome (answers, nodata, nxdomain, refused, notimp, malformed: dropped).\n# TYPE privnet_dns_queries_total counter");
    for (net, d) in &with {
        let s = &d.stats;
        for (outcome, v) in [
            ("answers", s.answers),
            ("nodata", s.nodata),
            ("nxdomain", s.nxdomain),
            ("refused", s.refused),
            ("notimp", s.notimp),
            ("malformed", s.malformed),
        ] {
            let _ = writeln!(
                o,
                "privnet_dns_queries_total{{network=\"{}\",outcome=\"{outcome}\"}} {v}",
                label(net)
            );
        }
    }
    let _ = writeln!(o, "# HELP privnet_dns_errors_total DNS responder problems: TCP connections refused over the limit, answers not sent.\n# TYPE privnet_dns_errors_total counter");
    for (net, d) in &with {
        for (kind, v) in [
            ("tcp_refused", d.stats.tcp_refused),
            ("send_error", d.stats.send_errors),
        ] {
            let _ = writeln!(
                o,
                "privnet_dns_errors_total{{network=\"{}\",kind=\"{kind}\"}} {v}",
                label(net)
            );
        }
    }
}

/// The directory metrics of the networks that have one.
fn render_directory(o: &mut String, nets: &[NetworkStatus]) {
    let with: Vec<(&str, &crate::status::DirectoryShown)> = nets
        .iter()
        .filter_map(|n| {
            n.directory
                .as_ref()
                .map(|d| (n.snapshot.network.as_str(), d))
        })
        .collect();
    if with.is_empty() {
        return;
    }
    type Gauge = (
        &'static str,
        &'static str,
        fn(&crate::status::DirectoryShown) -> f64,
    );
    let gauges: [Gauge; 7] = [
        (
            "privnet_directory_connected",
            "1 while connected to etcd and watching.",
            |d| f64::from(u8::from(d.connected)),
        ),
        (
            "privnet_directory_registered",
            "1 while this member's record is registered under a live lease.",
            |d| f64::from(u8::from(d.registered)),
        ),
        (
            "privnet_directory_revision",
            "The etcd revision every directory change is applied up to.",
            |d| d.revision as f64,
        ),
        (
            "privnet_directory_last_update_age_seconds",
            "Seconds since the last directory change was applied (-1: none yet).",
            |d| d.last_update_age_s.map_or(-1.0, |a| a as f64),
        ),
        (
            "privnet_directory_members",
            "Members known from the directory.",
            |d| d.members.len() as f64,
        ),
        (
            "privnet_directory_policy_version",
            "Version of the policy bundle held (0: none).",
            |d| d.policy_version as f64,
        ),
        (
            "privnet_directory_revocations_version",
            "Version of the revocation bundle held (0: none).",
            |d| d.revocations_version as f64,
        ),
    ];
    for (name, help, f) in gauges {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (net, d) in &with {
            let _ = writeln!(o, "{name}{{network=\"{}\"}} {}", label(net), f(d));
        }
    }
    let _ = writeln!(o, "# HELP privnet_directory_reconnects_total Directory connections lost or failed.\n# TYPE privnet_directory_reconnects_total counter");
    for (net, d) in &with {
        let _ = writeln!(
            o,
            "privnet_directory_reconnects_total{{network=\"{}\"}} {}",
            label(net),
            d.reconnects
        );
    }
    let _ = writeln!(o, "# HELP privnet_directory_records_skipped_total Directory records skipped, by reason.\n# TYPE privnet_directory_records_skipped_total counter");
    for (net, d) in &with {
        for (reason, v) in &d.skipped {
            let _ = writeln!(
                o,
                "privnet_directory_records_skipped_total{{network=\"{}\",reason=\"{}\"}} {v}",
                label(net),
                label(reason)
            );
        }
    }
    let _ = writeln!(o, "# HELP privnet_directory_bundles_refused_total Signed bundles refused, by kind and reason.\n# TYPE privnet_directory_bundles_refused_total counter");
    for (net, d) in &with {
        for (what, v) in &d.bundles_refused {
            let (kind, reason) = what.split_once('/').unwrap_or((what.as_str(), ""));
            let _ = writeln!(o, "privnet_directory_bundles_refused_total{{network=\"{}\",kind=\"{}\",reason=\"{}\"}} {v}", label(net), label(kind), label(reason));
        }
    }
}

/// The fields of a plain counter struct (`Totals`, `ConntrackStats`) as (name, value).
fn fields<T: serde::Serialize>(v: &T) -> Vec<(String, u64)> {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::Object(m)) => m
            .into_iter()
            .filter_map(|(k, v)| Some((k, v.as_u64()?)))
            .collect(),
        _ => Vec::new(),
    }
}

/// The access policy families: which policy (by hash), per-rule hits (labels are rule ids, never
/// flows or addresses), drops by tier, the totals and the connection tracker.
fn render_policy(o: &mut String, snaps: &[NetworkSnapshot]) {
    let family = |o: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
    let policies: Vec<(String, &PolicySnapshot)> = snaps
        .iter()
        .filter_map(|s| Some((label(&s.network), s.policy.as_ref()?)))
        .collect();
    family(
        o,
        "privnet_policy_info",
        "gauge",
        "1 for the access policy in force (its hash); no series without a policy.",
    );
    for (net, p) in &policies {
        if let Some(hash) = &p.hash {
            let _ = writeln!(
                o,
                "privnet_policy_info{{network=\"{net}\",hash=\"{hash}\"}} 1"
            );
        }
    }
    family(
        o,
        "privnet_policy_rules",
        "gauge",
        "Rules of the access policy in force.",
    );
    for (net, p) in &policies {
        let _ = writeln!(
            o,
            "privnet_policy_rules{{network=\"{net}\"}} {}",
            p.rules.len()
        );
    }
    family(
        o,
        "privnet_policy_rule_hits_total",
        "counter",
        "New-flow decisions taken by each rule (for log: flows logged; for pass: flows passed on).",
    );
    for (net, p) in &policies {
        for r in &p.rules {
            let _ = writeln!(
                o,
                "privnet_policy_rule_hits_total{{network=\"{net}\",rule=\"{}\",tier=\"{}\",action=\"{}\"}} {}",
                label(&r.id),
                r.tier,
                r.action,
                r.hits
            );
        }
    }
    family(
        o,
        "privnet_policy_limit_packets_total",
        "counter",
        "Inner packets counted by each rate limit of the policy ([[limits]]): passed, or dropped over the limit.",
    );
    for (net, p) in &policies {
        for l in &p.limits {
            for (verdict, n) in [("passed", l.passed), ("dropped", l.dropped)] {
                let _ = writeln!(
                    o,
                    "privnet_policy_limit_packets_total{{network=\"{net}\",limit=\"{}\",direction=\"{}\",verdict=\"{verdict}\"}} {n}",
                    label(&l.id),
                    l.direction
                );
            }
        }
    }
    family(
        o,
        "privnet_policy_drops_total",
        "counter",
        "New flows denied or rejected, by the tier that decided (or the default).",
    );
    for (net, p) in &policies {
        let d = p.drops_by_tier;
        for (tier, n) in [
            ("platform", d.platform),
            ("application", d.application),
            ("baseline", d.baseline),
            ("default", d.default),
        ] {
            let _ = writeln!(
                o,
                "privnet_policy_drops_total{{network=\"{net}\",tier=\"{tier}\"}} {n}"
            );
        }
    }
    family(
        o,
        "privnet_policy_total",
        "counter",
        "Access policy totals: new flows allowed, denied, rejected, defaulted, unknown_denied; packets established, related, fragments_passed, fragments_dropped; flows refused by the tracker, cut by a re-check; packets of an unknown peer.",
    );
    for (net, p) in &policies {
        for (k, v) in fields(&p.totals) {
            let _ = writeln!(
                o,
                "privnet_policy_total{{network=\"{net}\",counter=\"{k}\"}} {v}"
            );
        }
    }
    family(
        o,
        "privnet_conntrack_flows",
        "gauge",
        "Flows the connection tracker holds.",
    );
    for (net, p) in &policies {
        let _ = writeln!(
            o,
            "privnet_conntrack_flows{{network=\"{net}\"}} {}",
            p.conntrack.flows
        );
    }
    family(
        o,
        "privnet_conntrack_capacity",
        "gauge",
        "Most flows the connection tracker holds.",
    );
    for (net, p) in &policies {
        let _ = writeln!(
            o,
            "privnet_conntrack_capacity{{network=\"{net}\"}} {}",
            p.conntrack_capacity
        );
    }
    family(
        o,
        "privnet_conntrack_bytes",
        "gauge",
        "Memory the connection tracker has reserved.",
    );
    for (net, p) in &policies {
        let _ = writeln!(
            o,
            "privnet_conntrack_bytes{{network=\"{net}\"}} {}",
            p.conntrack_bytes
        );
    }
    family(
        o,
        "privnet_conntrack_total",
        "counter",
        "Connection tracker counters: flows created, expired, removed; new flows refused (table full, peer quota, rate); fragments remembered, evicted.",
    );
    for (net, p) in &policies {
        for (k, v) in fields(&p.conntrack) {
            if k != "flows" {
                let _ = writeln!(
                    o,
                    "privnet_conntrack_total{{network=\"{net}\",counter=\"{k}\"}} {v}"
                );
            }
        }
    }
}

/// The Prometheus text exposition of the snapshots (every network counted as running).
pub fn render_metrics(snaps: &[NetworkSnapshot]) -> String {
    render(snaps, &vec![true; snaps.len()])
}

fn render(snaps: &[NetworkSnapshot], up: &[bool]) -> String {
    let mut o = String::new();
    let family = |o: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
    family(
        &mut o,
        "privnet_up",
        "gauge",
        "1 while the network's driver runs, 0 once it has stopped.",
    );
    for (s, up) in snaps.iter().zip(up) {
        let _ = writeln!(
            o,
            "privnet_up{{network=\"{}\"}} {}",
            label(&s.network),
            u8::from(*up)
        );
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
                        let _ =
                            writeln!(o, "{name}{{{l},reason=\"fair_share\"}} {}", p.fair_dropped);
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
    render_policy(&mut o, snaps);
    routes::render_routes(&mut o, snaps);
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use privnet_core::io::{PeerSnapshot, RuleHits, TierDrops};
    use privnet_core::policy::conntrack::ConntrackStats;
    use privnet_core::policy::counters::Totals;

    #[test]
    fn metrics_render_every_family() {
        let snap = NetworkSnapshot {
            network: "demo".into(),
            drops: vec![("bad_mac1".into(), 3)],
            peers: vec![PeerSnapshot {
                name: "b\"x".into(),
                established: true,
                rx_bytes: 10,
                fair_dropped: 12,
                ..Default::default()
            }],
            expiry: vec![("member a".into(), 100)],
            driver: [("busy_poll_hits".to_owned(), 7)].into_iter().collect(),
            busy_poll_us: 1234,
            policy: Some(PolicySnapshot {
                hash: Some("ab12".into()),
                rules: vec![RuleHits {
                    id: "web-to-db".into(),
                    tier: "application".into(),
                    action: "allow".into(),
                    hits: 5,
                }],
                drops_by_tier: TierDrops {
                    platform: 2,
                    ..Default::default()
                },
                totals: Totals {
                    cut: 4,
                    ..Default::default()
                },
                conntrack: ConntrackStats {
                    flows: 3,
                    refused_rate: 1,
                    ..Default::default()
                },
                conntrack_capacity: 262_144,
                limits: vec![privnet_core::policy::LimitCount {
                    id: "batch".into(),
                    direction: "out",
                    passed: 9,
                    dropped: 6,
                    dropped_bytes: 600,
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        let m = render_metrics(&[snap]);
        for want in [
            "privnet_policy_info{network=\"demo\",hash=\"ab12\"} 1",
            "privnet_policy_rules{network=\"demo\"} 1",
            "privnet_policy_rule_hits_total{network=\"demo\",rule=\"web-to-db\",tier=\"application\",action=\"allow\"} 5",
            "privnet_policy_drops_total{network=\"demo\",tier=\"platform\"} 2",
            "privnet_policy_drops_total{network=\"demo\",tier=\"default\"} 0",
            "privnet_policy_total{network=\"demo\",counter=\"cut\"} 4",
            "privnet_policy_total{network=\"demo\",counter=\"allowed\"} 0",
            "privnet_conntrack_flows{network=\"demo\"} 3",
            "privnet_conntrack_capacity{network=\"demo\"} 262144",
            "privnet_conntrack_total{network=\"demo\",counter=\"refused_rate\"} 1",
            "privnet_policy_limit_packets_total{network=\"demo\",limit=\"batch\",direction=\"out\",verdict=\"dropped\"} 6",
            "privnet_policy_limit_packets_total{network=\"demo\",limit=\"batch\",direction=\"out\",verdict=\"passed\"} 9",
        ] {
            assert!(m.contains(want), "{want} missing");
        }
        assert!(!m.contains("counter=\"flows\""));
        // No policy: no series of the policy families.
        let none = render_metrics(&[NetworkSnapshot::default()]);
        assert!(
            !none.lines().any(|l| l.starts_with("privnet_policy_")),
            "{none}"
        );
        assert!(
            m.contains("privnet_driver_events_total{network=\"demo\",event=\"busy_poll_hits\"} 7")
        );
        assert!(m.contains("privnet_busy_poll_microseconds_total{network=\"demo\"} 1234"));
        assert!(m.contains("privnet_drops_total{network=\"demo\",reason=\"bad_mac1\"} 3"));
        assert!(m.contains("privnet_peer_rx_bytes_total{network=\"demo\",peer=\"b\\\"x\"} 10"));
        assert!(m.contains("privnet_peer_established{network=\"demo\",peer=\"b\\\"x\"} 1"));
        assert!(m.contains(
            "privnet_peer_drops_total{network=\"demo\",peer=\"b\\\"x\",reason=\"fair_share\"} 12"
        ));
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
