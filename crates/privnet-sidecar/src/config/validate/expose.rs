//! Checks of `[[expose]]`: names unique, listen ports 1-65535 and no address exposed twice per
//! transport (nor the UDP port of the node), targets that are members of the network (a `[[peer]]`
//! name, or an address inside a peer's addresses: an exposure is not an open relay to anywhere),
//! allow-list entries, rates and caps at least 1, the UDP idle timeout in range. The block-lists
//! were read and parsed by the loader (their problems name the list file and line).

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use privnet_core::expose::list::parse_entry;
use privnet_core::expose::{PrefixSet, Rate};

use super::super::expose::{
    BlockList, ExposeEntry, ExposeSettings, ProxyProtocol, MAX_UDP_IDLE_SECS,
};
use super::super::spans::Problems;
use super::super::types::PeerConfig;

/// Check the `[[expose]]` entries (`raw[i]` is `expose[i]`; `None` was reported by the parser)
/// with their block-lists as read (`lists[i][j]`: `None` when it could not be read, reported).
pub(in crate::config) fn exposures(
    p: &mut Problems<'_>,
    raw: &[Option<ExposeEntry>],
    lists: Vec<Vec<Option<BlockList>>>,
    peers: &[PeerConfig],
    node_listen: SocketAddr,
) -> Vec<ExposeSettings> {
    let mut names = HashSet::new();
    let mut listens = HashSet::new();
    let mut out = Vec::new();
    for (i, (e, lists)) in raw.iter().zip(lists).enumerate() {
        let Some(e) = e else {
            continue;
        };
        let key = format!("expose[{i}]");
        let name = e.name.clone().unwrap_or_else(|| key.clone());
        if name.is_empty() || name.len() > 64 || name.chars().any(|c| c.is_control() || c == '"') {
            p.report(
                format!("{key}.name"),
                format!("a name of 1 to 64 printable characters without quotes; found {name:?}"),
            );
        }
        if !names.insert(name.clone()) {
            p.report(
                format!("{key}.name"),
                format!("a name no other exposure has; {name:?} is taken"),
            );
        }
        if e.listen.port() == 0 {
            p.report(
                format!("{key}.listen"),
                "a port between 1 and 65535; found 0",
            );
        }
        for (tcp, on) in [(true, e.protocol.tcp()), (false, e.protocol.udp())] {
            if on && !listens.insert((e.listen, tcp)) {
                p.report(
                    format!("{key}.listen"),
                    format!(
                        "an address not exposed by another [[expose]]; {} is",
                        e.listen
                    ),
                );
            }
        }
        if e.protocol.udp()
            && e.listen.port() == node_listen.port()
            && same_host(e.listen.ip(), node_listen.ip())
        {
            p.report(
                format!("{key}.listen"),
                format!("another port than node.listen's ({node_listen}), which carries the network's own UDP"),
            );
        }
        let mut targets = Vec::new();
        if e.to.0.is_empty() {
            p.report(
                format!("{key}.to"),
                "at least one target \"name:port\" or \"address:port\"",
            );
        }
        for (j, t) in e.to.0.iter().enumerate() {
            let tkey = if e.to.0.len() == 1 {
                format!("{key}.to")
            } else {
                format!("{key}.to[{j}]")
            };
            match target(t, peers) {
                Ok(a) => targets.push(a),
                Err(why) => p.report(tkey, why),
            }
        }
        let allow = if e.allow.is_empty() {
            None
        } else {
            let mut prefixes = Vec::new();
            for (j, a) in e.allow.iter().enumerate() {
                match parse_entry(a.trim()) {
                    Ok(x) => prefixes.push(x),
                    Err(why) => p.report(format!("{key}.allow[{j}]"), why),
                }
            }
            Some(Arc::new(PrefixSet::from_prefixes(prefixes)))
        };
        let connection_rate = rate(
            p,
            &key,
            "connections",
            e.connections_per_second,
            e.connections_burst,
        );
        let byte_rate = rate(p, &key, "bytes", e.bytes_per_second, e.bytes_burst);
        for (k, v) in [
            ("max_connections_per_source", e.max_connections_per_source),
            ("max_connections", e.max_connections),
        ] {
            if v == Some(0) {
                p.report(
                    format!("{key}.{k}"),
                    "at least 1 (leave the key out for no cap)",
                );
            }
        }
        if !(1..=MAX_UDP_IDLE_SECS).contains(&e.udp_idle_secs) {
            p.report(
                format!("{key}.udp_idle_secs"),
                format!(
                    "1 to {MAX_UDP_IDLE_SECS} seconds; found {}",
                    e.udp_idle_secs
                ),
            );
        }
        out.push(ExposeSettings {
            name,
            listen: e.listen,
            protocol: e.protocol,
            to: e.to.0.clone(),
            targets,
            proxy_v2: e.proxy_protocol == ProxyProtocol::V2,
            allow,
            block_lists: lists.into_iter().flatten().collect(),
            connection_rate,
            byte_rate,
            max_per_source: e.max_connections_per_source,
            max_total: e.max_connections,
            udp_idle: Duration::from_secs(u64::from(e.udp_idle_secs)),
        });
    }
    out
}

fn same_host(a: IpAddr, b: IpAddr) -> bool {
    a == b || a.is_unspecified() || b.is_unspecified()
}

fn rate(
    p: &mut Problems<'_>,
    key: &str,
    what: &str,
    per_second: Option<u32>,
    burst: Option<u32>,
) -> Option<Rate> {
    let (rate_key, burst_key) = if what == "bytes" {
        ("bytes_per_second", "bytes_burst")
    } else {
        ("connections_per_second", "connections_burst")
    };
    if per_second == Some(0) {
        p.report(
            format!("{key}.{rate_key}"),
            "at least 1 (leave the key out for no limit)",
        );
    }
    if burst == Some(0) {
        p.report(format!("{key}.{burst_key}"), "at least 1");
    }
    match (per_second, burst) {
        (None, Some(_)) => {
            p.report(
                format!("{key}.{burst_key}"),
                format!("{rate_key} as well (a burst of what rate?)"),
            );
            None
        }
        (None, None) => None,
        (Some(r), b) => Some(Rate {
            per_second: r.max(1),
            burst: b.unwrap_or(r).max(1),
        }),
    }
}

/// `name:port` (a peer's name: its first address) or `address:port` inside a peer's addresses.
fn target(t: &str, peers: &[PeerConfig]) -> Result<SocketAddr, String> {
    let expected = || {
        format!("a target \"name:port\" (a [[peer]] name) or \"address:port\" (IPv6 in brackets); found {t:?}")
    };
    if let Ok(a) = t.parse::<SocketAddr>() {
        if a.port() == 0 {
            return Err(format!("a port between 1 and 65535; found {t:?}"));
        }
        if peers
            .iter()
            .any(|p| p.addresses.iter().any(|n| n.contains(a.ip())))
        {
            return Ok(a);
        }
        return Err(format!(
            "an address of a member of the network (inside a [[peer]]'s addresses); {} is not",
            a.ip()
        ));
    }
    let (name, port) = t.rsplit_once(':').ok_or_else(expected)?;
    let port: u16 = port.parse().map_err(|_| expected())?;
    if port == 0 {
        return Err(format!("a port between 1 and 65535; found {t:?}"));
    }
    let peer = peers.iter().find(|p| p.name == name).ok_or_else(|| {
        format!("the name of a [[peer]] (or an overlay address); no peer is called {name:?}")
    })?;
    let ip = peer
        .addresses
        .first()
        .map(|n| n.ip())
        .ok_or_else(|| format!("a peer with an address; {name:?} has none"))?;
    Ok(SocketAddr::new(ip, port))
}
