//! `privnet status` in words: the networks, their peers (state, endpoint, handshakes, traffic),
//! drops, the policy's counters, `--watch` with rates.

use super::*;

/// Human-readable status.
pub fn format_status(nets: &[serde_json::Value]) -> String {
    format_status_with_rates(nets, None)
}

/// Rates between two status documents: counter deltas over the seconds between them.
pub(super) fn rate(
    now: &serde_json::Value,
    before: Option<&serde_json::Value>,
    key: &str,
    secs: f64,
) -> f64 {
    let (Some(a), Some(b)) = (
        now.get(key).and_then(serde_json::Value::as_u64),
        before
            .and_then(|v| v.get(key))
            .and_then(serde_json::Value::as_u64),
    ) else {
        return 0.0;
    };
    if secs <= 0.0 {
        return 0.0;
    }
    a.saturating_sub(b) as f64 / secs
}

pub(super) fn per_sec(bytes_per_sec: f64) -> String {
    if bytes_per_sec >= 1e6 {
        format!("{:.1} MB/s", bytes_per_sec / 1e6)
    } else if bytes_per_sec >= 1e3 {
        format!("{:.1} kB/s", bytes_per_sec / 1e3)
    } else {
        format!("{bytes_per_sec:.0} B/s")
    }
}

pub(super) fn rates_line(
    now: &serde_json::Value,
    before: Option<&serde_json::Value>,
    secs: f64,
) -> String {
    format!(
        "rx {} {:.0} pkt/s, tx {} {:.0} pkt/s",
        per_sec(rate(now, before, "rx_bytes", secs)),
        rate(now, before, "rx_packets", secs),
        per_sec(rate(now, before, "tx_bytes", secs)),
        rate(now, before, "tx_packets", secs)
    )
}

/// A peer's state in words: `up`, `idle`, `connecting (N s, K initiations)`, or
/// `NO ANSWER since N s (K initiations) ...` with the likely causes.
pub(super) fn peer_state(p: &serde_json::Value) -> String {
    let established = p.get("established").and_then(serde_json::Value::as_bool) == Some(true);
    let state = p.get("state").and_then(|s| s.as_str());
    let secs = p
        .get("handshaking_for_secs")
        .and_then(serde_json::Value::as_u64);
    let attempts = p
        .get("handshake_attempts")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0);
    match (state, secs) {
        (Some("no answer"), Some(s)) => format!(
            "NO ANSWER since {s} s ({attempts} initiations unanswered: wrong public key or network \
             PSK, endpoint unreachable, or the peer is down; see the log)"
        ),
        (Some("connecting"), Some(s)) => {
            format!("connecting ({s} s, {attempts} initiation(s))")
        }
        (Some(other), _) => other.to_owned(),
        (None, _) if established => "up".to_owned(),
        (None, _) => "down".to_owned(),
    }
}

/// Human-readable status; with `previous` (an earlier document and the seconds since it), rates
/// per network and per peer.
pub fn format_status_with_rates(
    nets: &[serde_json::Value],
    previous: Option<(&[serde_json::Value], f64)>,
) -> String {
    let mut o = String::new();
    for n in nets {
        let before_net = previous
            .and_then(|(prev, _)| prev.iter().find(|b| b.get("network") == n.get("network")));
        let secs = previous.map_or(0.0, |(_, s)| s);
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
        if g("running").as_bool() == Some(false) {
            let _ = writeln!(
                o,
                "  NOT RUNNING: this network's driver has stopped (see the sidecar's log); the figures are its last"
            );
        }
        if let Some(keys) = n.get("restart_needed").and_then(|k| k.as_array()) {
            if !keys.is_empty() {
                let _ = writeln!(
                    o,
                    "  restart needed: {} changed in the configuration; a restart applies them (the running values stay until then)",
                    joined(&g("restart_needed"))
                );
            }
        }
        format_directory(&mut o, n);
        format_dns(&mut o, n);
        let _ = writeln!(
            o,
            "  tx {} packets / {} bytes, rx {} packets / {} bytes, handshakes {} initiated / {} completed, cookies {}",
            g("tx_packets"), g("tx_bytes"), g("rx_packets"), g("rx_bytes"),
            g("handshakes_initiated"), g("handshakes_completed"), g("cookies_sent")
        );
        if previous.is_some() {
            let _ = writeln!(o, "  rates: {}", rates_line(n, before_net, secs));
        }
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
        format_policy(&mut o, n);
        format_exposures(&mut o, n);
        super::routes::format_routes(&mut o, n);
        for p in n
            .get("peers")
            .and_then(|p| p.as_array())
            .into_iter()
            .flatten()
        {
            let pg = |k: &str| p.get(k).cloned().unwrap_or(serde_json::Value::Null);
            let before_peer = before_net.and_then(|b| {
                b.get("peers").and_then(|ps| ps.as_array()).and_then(|ps| {
                    ps.iter()
                        .find(|q| q.get("public_key") == p.get("public_key"))
                })
            });
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
                peer_state(p),
                hs,
                pg("rx_bytes"),
                pg("tx_bytes")
            );
            if previous.is_some() {
                let _ = writeln!(o, "    rates: {}", rates_line(p, before_peer, secs));
            }
        }
    }
    o
}

/// The directory line of one network (with `[directory]`): connected or not, revision, members,
/// last update, bundle versions, skipped records and refused bundles.
pub(super) fn format_directory(o: &mut String, n: &serde_json::Value) {
    let Some(d) = n.get("directory").filter(|d| !d.is_null()) else {
        return;
    };
    let g = |k: &str| d.get(k).cloned().unwrap_or_default();
    let state = if g("connected").as_bool() == Some(true) {
        "connected".to_owned()
    } else {
        format!(
            "NOT CONNECTED ({}; the data plane keeps the last known members{})",
            g("last_error").as_str().unwrap_or("connecting"),
            if g("from_cache").as_bool() == Some(true) {
                ", from the on-disk cache"
            } else {
                ""
            }
        )
    };
    let age = g("last_update_age_s")
        .as_u64()
        .map_or_else(|| "never".to_owned(), |a| format!("{a} s ago"));
    let _ = writeln!(
        o,
        "  directory {} ({}): {state}, revision {}, {} member(s), last update {age}, policy v{}, revocations v{}, reconnects {}",
        joined(&g("endpoints")),
        g("prefix").as_str().unwrap_or("?"),
        g("revision"),
        g("members").as_array().map_or(0, Vec::len),
        g("policy_version"),
        g("revocations_version"),
        g("reconnects"),
    );
    for (what, key) in [
        ("records skipped", "skipped"),
        ("bundles refused", "bundles_refused"),
    ] {
        if let Some(m) = d
            .get(key)
            .and_then(|m| m.as_object())
            .filter(|m| !m.is_empty())
        {
            let list: Vec<String> = m.iter().map(|(k, v)| format!("{k} {v}")).collect();
            let _ = writeln!(o, "  directory {what}: {}", list.join(", "));
        }
    }
}

/// The DNS responder line of one network (with `[dns]`): where, which zone, its counters.
pub(super) fn format_dns(o: &mut String, n: &serde_json::Value) {
    let Some(d) = n.get("dns").filter(|d| !d.is_null()) else {
        return;
    };
    let g = |k: &str| d.get(k).cloned().unwrap_or_default();
    let _ = writeln!(
        o,
        "  dns {} (zone {}, ttl {} s): {} queries, {} answers, {} nodata, {} nxdomain, {} refused, {} notimp, {} malformed (dropped)",
        g("listen").as_str().unwrap_or("?"),
        g("zone").as_str().unwrap_or("?"),
        g("ttl_s"),
        g("queries"),
        g("answers"),
        g("nodata"),
        g("nxdomain"),
        g("refused"),
        g("notimp"),
        g("malformed"),
    );
}

/// Most rules listed by name in the text status (the busiest first; `--json` has them all).
const RULES_SHOWN: usize = 10;

/// The access policy lines of one network: which policy, its totals, drops by tier, the tracker
/// and the busiest rules; a refused new version.
pub(super) fn format_policy(o: &mut String, n: &serde_json::Value) {
    let file = n.get("policy_file").and_then(|f| f.as_str());
    let p = n.get("policy").filter(|p| !p.is_null());
    let hash = p.and_then(|p| p.get("hash")).and_then(|h| h.as_str());
    match (file, hash) {
        (None, None) => {
            let _ = writeln!(o, "  no access policy: members of the network talk freely");
        }
        (file, hash) => {
            let g = |k: &str| p.and_then(|p| p.get(k)).cloned().unwrap_or_default();
            let tiers = g("rules_per_tier");
            let t = |i: usize| tiers.get(i).cloned().unwrap_or_default();
            let _ = writeln!(
                o,
                "  policy {}{}, hash {}, {} rules (platform {}, application {}, baseline {})",
                file.unwrap_or("-"),
                g("name")
                    .as_str()
                    .map_or(String::new(), |n| format!(" (`{n}`)")),
                hash.unwrap_or("none"),
                g("rules").as_array().map_or(0, Vec::len),
                t(0),
                t(1),
                t(2)
            );
            let tot = g("totals");
            let v = |k: &str| tot.get(k).cloned().unwrap_or_default();
            let _ = writeln!(
                o,
                "    new flows: {} allowed, {} denied, {} rejected ({} by the default); packets of tracked flows {}, related ICMP {}; flows cut {}, refused by the tracker {}",
                v("allowed"), v("denied"), v("rejected"), v("defaulted"), v("established"),
                v("related"), v("cut"), v("refused")
            );
            let d = g("drops_by_tier");
            let dv = |k: &str| d.get(k).cloned().unwrap_or_default();
            let _ = writeln!(
                o,
                "    drops by tier: platform {}, application {}, baseline {}, default {}",
                dv("platform"),
                dv("application"),
                dv("baseline"),
                dv("default")
            );
            let c = g("conntrack");
            let cv = |k: &str| c.get(k).cloned().unwrap_or_default();
            let _ = writeln!(
                o,
                "    conntrack: {} flows of {} ({} KiB reserved), {} created, {} expired, refused: {} table full, {} peer quota, {} rate",
                cv("flows"),
                g("conntrack_capacity"),
                g("conntrack_bytes").as_u64().unwrap_or(0) / 1024,
                cv("created"),
                cv("expired"),
                cv("refused_table_full"),
                cv("refused_peer_quota"),
                cv("refused_rate")
            );
            let all_rules = g("rules");
            let mut rules: Vec<(&str, &str, &str, u64)> = all_rules
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| {
                    Some((
                        r.get("id")?.as_str()?,
                        r.get("tier")?.as_str()?,
                        r.get("action")?.as_str()?,
                        r.get("hits")?.as_u64()?,
                    ))
                })
                .filter(|r| r.3 > 0)
                .collect::<Vec<_>>();
            rules.sort_by_key(|r| std::cmp::Reverse(r.3));
            if !rules.is_empty() {
                let shown: Vec<String> = rules
                    .iter()
                    .take(RULES_SHOWN)
                    .map(|(id, tier, action, hits)| format!("{id} ({tier} {action}) {hits}"))
                    .collect();
                let more = rules.len().saturating_sub(RULES_SHOWN);
                let _ = writeln!(
                    o,
                    "    rule hits: {}{}",
                    shown.join(", "),
                    if more > 0 {
                        format!(" and {more} more (see --json)")
                    } else {
                        String::new()
                    }
                );
            }
        }
    }
    if let Some(refused) = n.get("policy_refused").and_then(|r| r.as_array()) {
        if !refused.is_empty() {
            let _ = writeln!(
                o,
                "  POLICY REFUSED (the running policy stays): {}",
                joined_with(refused, "; ")
            );
        }
    }
}

/// The exposures of a network: listen address, targets with health, admitted / active, refusals
/// by reason (only those seen), block-lists and a refused list version.
pub(super) fn format_exposures(o: &mut String, n: &serde_json::Value) {
    let Some(list) = n.get("exposures").and_then(|e| e.as_array()) else {
        return;
    };
    for e in list {
        let s = |k: &str| e.get(k).and_then(serde_json::Value::as_str).unwrap_or("?");
        let u = |k: &str| e.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
        let targets: Vec<String> = e
            .get("targets")
            .and_then(|t| t.as_array())
            .map(|t| {
                t.iter()
                    .map(|x| {
                        format!(
                            "{} ({}, {} open)",
                            x.get("address").and_then(|a| a.as_str()).unwrap_or("?"),
                            if x.get("healthy").and_then(serde_json::Value::as_bool) == Some(true) {
                                "up"
                            } else {
                                "no session"
                            },
                            x.get("active")
                                .and_then(serde_json::Value::as_u64)
                                .unwrap_or(0)
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let _ = writeln!(
            o,
            "  expose {}: {} {}{} -> {}",
            s("name"),
            s("protocols"),
            s("listen"),
            if e.get("proxy_v2").and_then(serde_json::Value::as_bool) == Some(true) {
                " (PROXY v2)"
            } else {
                ""
            },
            targets.join(", ")
        );
        let refused: Vec<String> = e
            .get("refused")
            .and_then(|r| r.as_array())
            .map(|r| {
                r.iter()
                    .filter_map(|x| {
                        let pair = x.as_array()?;
                        let n = pair.get(1)?.as_u64()?;
                        let reason = pair.first()?.as_str()?;
                        (n > 0).then(|| format!("{reason} {n}"))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let _ = writeln!(
            o,
            "    admitted {}, open {}, in {} bytes, out {} bytes, throttled {}; refused: {}",
            u("admitted"),
            u("active"),
            u("bytes_in"),
            u("bytes_out"),
            u("throttled"),
            if refused.is_empty() {
                "none".to_owned()
            } else {
                refused.join(", ")
            }
        );
        if let Some(lists) = e.get("block_lists").and_then(|l| l.as_array()) {
            for l in lists {
                let Some(l) = l.as_array() else { continue };
                let _ = writeln!(
                    o,
                    "    block-list {}: {} entries, {} refused",
                    l.first().and_then(|x| x.as_str()).unwrap_or("?"),
                    l.get(1).and_then(serde_json::Value::as_u64).unwrap_or(0),
                    l.get(2).and_then(serde_json::Value::as_u64).unwrap_or(0)
                );
            }
        }
        if let Some(r) = e.get("lists_refused").and_then(|r| r.as_array()) {
            if !r.is_empty() {
                let _ = writeln!(
                    o,
                    "    BLOCK-LIST REFUSED (the running list stays): {}",
                    joined_with(r, "; ")
                );
            }
        }
    }
}

pub(super) fn joined_with(items: &[serde_json::Value], sep: &str) -> String {
    items
        .iter()
        .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_owned))
        .collect::<Vec<_>>()
        .join(sep)
}

/// `privnet status --watch`: redraw the status every second with rates, `count` times (or until
/// interrupted).
///
/// # Errors
/// The sidecar does not answer.
pub fn watch(socket: &Path, count: Option<u64>) -> anyhow::Result<()> {
    let mut previous: Option<(Vec<serde_json::Value>, std::time::Instant)> = None;
    let mut drawn = 0u64;
    loop {
        let nets = query_status(socket)?;
        let now = std::time::Instant::now();
        let text = format_status_with_rates(
            &nets,
            previous
                .as_ref()
                .map(|(p, at)| (p.as_slice(), now.duration_since(*at).as_secs_f64())),
        );
        let mut out = std::io::stdout().lock();
        // Home the cursor and clear the screen, as `watch(1)` does.
        write!(out, "\x1b[H\x1b[2J{text}")?;
        if previous.is_none() {
            writeln!(out, "  (rates from the next redraw; Ctrl-C stops)")?;
        }
        out.flush()?;
        drop(out);
        previous = Some((nets, now));
        drawn += 1;
        if count.is_some_and(|c| drawn >= c) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

pub(super) fn joined(v: &serde_json::Value) -> String {
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
