//! The checks of `[[peer]]` entries: names and keys unique and not this node's, overlay prefixes
//! inside the network and overlapping nothing, endpoints (and outside the overlay), keepalives.
//!
//! Every field of every peer is checked even after a problem, and what a peer uses (name, key,
//! prefixes) is taken whether or not it had problems, so that each later clash is reported too, and
//! names the first owner.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ipnetwork::IpNetwork;
use privnet_core::identity::{is_valid_name, CaCertificate, TrustStore};

use crate::config::schema::PeerSection;
use crate::config::spans::Problems;
use crate::config::types::{Endpoint, PeerConfig};

/// Largest persistent keepalive interval, seconds.
pub const MAX_KEEPALIVE_SECS: u16 = 3600;

/// What earlier peers (and this node) already use: names, keys and overlay prefixes must not repeat.
struct Taken {
    names: HashSet<String>,
    /// Each key with the index of the first peer that has it.
    keys: BTreeMap<[u8; 32], usize>,
    /// Each prefix with its owner, for the problem text.
    prefixes: Vec<(IpNetwork, String)>,
}

pub(super) fn check_peers(
    p: &mut Problems<'_>,
    raw: &[Option<PeerSection>],
    trust: Option<&TrustStore>,
    own_key: Option<[u8; 32]>,
    own_prefixes: &[IpNetwork],
) -> Vec<PeerConfig> {
    let mut taken = Taken {
        names: HashSet::new(),
        keys: BTreeMap::new(),
        prefixes: own_prefixes
            .iter()
            .map(|p| (*p, "this node's certificate".to_owned()))
            .collect(),
    };
    let ca = trust.and_then(|t| t.cas().first());
    // The network's overlay: every CA's prefixes and routes (what `privnet up` gives the node as
    // `NodeConfig::overlay_prefixes`).
    let overlay: Vec<IpNetwork> = trust
        .map(|t| {
            t.cas()
                .iter()
                .flat_map(|ca| ca.prefixes().iter().chain(ca.routes()).copied())
                .collect()
        })
        .unwrap_or_default();
    raw.iter()
        .enumerate()
        .filter_map(|(i, peer)| {
            let peer = peer.as_ref()?;
            check_endpoint_outside(p, i, peer.endpoint.as_deref(), &overlay);
            check_peer(p, i, peer, ca, own_key, &mut taken)
        })
        .collect()
}

/// A peer's endpoint given as an IP address must lie outside the overlay: the node would send
/// that peer's tunnel through its own TUN device (a routing loop; docs/PROTOCOL.md §6). DNS names
/// are checked when `privnet up` resolves them.
fn check_endpoint_outside(
    p: &mut Problems<'_>,
    i: usize,
    endpoint: Option<&str>,
    overlay: &[IpNetwork],
) {
    let Some(ep) = endpoint.and_then(|t| parse_endpoint(t).ok()) else {
        return;
    };
    let Ok(ip) = ep.host.parse::<IpAddr>() else {
        return;
    };
    let ip = ip.to_canonical();
    // Only a default route covering it: the underlay (docs/PROTOCOL.md §6).
    if let Some(net) = overlay.iter().find(|n| n.prefix() > 0 && n.contains(ip)) {
        p.report(
            format!("peer[{i}].endpoint"),
            format!(
                "an underlay address outside the network's overlay; {ip} lies inside {net}, so the \
                 tunnel to this peer would be routed through itself (use the peer's underlay address)"
            ),
        );
    }
}

/// One `[[peer]]` (`peer[i]`); `None` after reporting a problem. Every field is checked even after
/// a problem, and what the peer uses is taken either way, so that later peers are compared with it.
fn check_peer(
    p: &mut Problems<'_>,
    i: usize,
    peer: &PeerSection,
    ca: Option<&CaCertificate>,
    own_key: Option<[u8; 32]>,
    taken: &mut Taken,
) -> Option<PeerConfig> {
    let name_ok = check_peer_name(p, i, &peer.name, &mut taken.names);
    let public_key = peer_key(p, i, &peer.public_key, own_key, &mut taken.keys);
    let addresses = peer_addresses(p, i, peer, ca, &mut taken.prefixes);
    let endpoint = peer_endpoint(p, i, peer.endpoint.as_deref());
    let keepalive = peer_keepalive(p, i, peer.persistent_keepalive);
    Some(PeerConfig {
        name: name_ok.then(|| peer.name.clone())?,
        public_key: public_key?,
        addresses: addresses?,
        endpoint: endpoint?,
        persistent_keepalive: keepalive?,
    })
}

fn check_peer_name(
    p: &mut Problems<'_>,
    i: usize,
    name: &str,
    names: &mut HashSet<String>,
) -> bool {
    if !is_valid_name(name) {
        p.report(
            format!("peer[{i}].name"),
            "a name of 1-64 letters, digits, '.', '_', '-', starting with a letter or digit",
        );
        false
    } else if !names.insert(name.to_owned()) {
        p.report(
            format!("peer[{i}].name"),
            format!("a unique peer name; `{name}` is used twice"),
        );
        false
    } else {
        true
    }
}

fn peer_key(
    p: &mut Problems<'_>,
    i: usize,
    text: &str,
    own_key: Option<[u8; 32]>,
    keys: &mut BTreeMap<[u8; 32], usize>,
) -> Option<[u8; 32]> {
    let key = format!("peer[{i}].public_key");
    let Some(public_key) = STANDARD
        .decode(text.trim().as_bytes())
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
    else {
        p.report(
            key,
            "base64 of a 32-byte X25519 public key (as printed by `privnet keygen`)",
        );
        return None;
    };
    if Some(public_key) == own_key {
        p.report(key, "a peer's key; this is this node's own key");
        return None;
    }
    match keys.entry(public_key) {
        Entry::Occupied(first) => {
            p.report(
                key,
                format!(
                    "a key not used by another peer; peer[{}] has the same key",
                    first.get()
                ),
            );
            None
        }
        Entry::Vacant(v) => {
            v.insert(i);
            Some(public_key)
        }
    }
}

/// The peer's overlay prefixes: inside the CA's prefixes or routes, without host bits, overlapping
/// nothing taken.
fn peer_addresses(
    p: &mut Problems<'_>,
    i: usize,
    peer: &PeerSection,
    ca: Option<&CaCertificate>,
    taken: &mut Vec<(IpNetwork, String)>,
) -> Option<Vec<IpNetwork>> {
    let mut ok = true;
    if peer.addresses.is_empty() {
        p.report(
            format!("peer[{i}].addresses"),
            "at least one overlay address of the peer",
        );
        ok = false;
    }
    let mut addresses = Vec::new();
    for (j, a) in peer.addresses.iter().enumerate() {
        let key = format!("peer[{i}].addresses[{j}]");
        let net = match a.parse::<IpNetwork>() {
            Ok(n) if n.network() == n.ip() => n,
            Ok(n) => {
                p.report(
                    key,
                    format!(
                        "a prefix without host bits (e.g. {}/{}); found {a}",
                        n.network(),
                        n.prefix()
                    ),
                );
                ok = false;
                continue;
            }
            Err(_) => {
                p.report(
                    key,
                    format!("an IP address or prefix such as 10.77.0.3 or fd77::3; found {a:?}"),
                );
                ok = false;
                continue;
            }
        };
        if let Some(ca) = ca {
            let inside = ca
                .prefixes()
                .iter()
                .any(|p| p.prefix() <= net.prefix() && p.contains(net.network()))
                || ca.allows_route(&net);
            if !inside {
                let allowed: Vec<String> = ca
                    .prefixes()
                    .iter()
                    .chain(ca.routes())
                    .map(ToString::to_string)
                    .collect();
                p.report(
                    key.clone(),
                    format!(
                        "an address inside the network's prefixes or routes ({}); found {net}",
                        allowed.join(", ")
                    ),
                );
                ok = false;
            }
        }
        // A default route (an exit's grant) lies over everything and overlaps nothing here: the
        // more specific prefix wins (docs/POLICY.md, "Routing policies").
        if let Some((_, owner)) = taken.iter().find(|(t, _)| {
            t.prefix() > 0
                && net.prefix() > 0
                && (t.contains(net.network()) || net.contains(t.network()))
        }) {
            p.report(
                key,
                format!(
                    "an address not overlapping another peer or this node; {net} overlaps {owner}"
                ),
            );
            ok = false;
        }
        taken.push((net, format!("peer[{i}] ({})", peer.name)));
        addresses.push(net);
    }
    ok.then_some(addresses)
}

/// `Some(None)` when the peer has no endpoint; `None` after reporting a problem.
fn peer_endpoint(
    p: &mut Problems<'_>,
    i: usize,
    endpoint: Option<&str>,
) -> Option<Option<Endpoint>> {
    let Some(text) = endpoint else {
        return Some(None);
    };
    match parse_endpoint(text) {
        Ok(e) => Some(Some(e)),
        Err(expected) => {
            p.report(
                format!("peer[{i}].endpoint"),
                format!("{expected}; found {text:?}"),
            );
            None
        }
    }
}

/// `Some(None)` when keepalive is off; `None` after reporting a problem.
fn peer_keepalive(p: &mut Problems<'_>, i: usize, secs: Option<u16>) -> Option<Option<Duration>> {
    match secs {
        None => Some(None),
        Some(s) if (1..=MAX_KEEPALIVE_SECS).contains(&s) => {
            Some(Some(Duration::from_secs(u64::from(s))))
        }
        Some(s) => {
            p.report(
                format!("peer[{i}].persistent_keepalive"),
                format!(
                    "seconds between 1 and {MAX_KEEPALIVE_SECS} (leave the key out to disable); found {s}"
                ),
            );
            None
        }
    }
}

/// Parse `host:port` (IPv6 hosts in brackets).
///
/// # Errors
/// What was expected, when `s` is not an IP address or DNS name with a port from 1 to 65535.
pub fn parse_endpoint(s: &str) -> Result<Endpoint, &'static str> {
    const EXPECTED: &str =
        "`host:port` with an IP address or DNS name and a port between 1 and 65535 (IPv6 as [addr]:port)";
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, p) = rest.split_once("]:").ok_or(EXPECTED)?;
        h.parse::<std::net::Ipv6Addr>().map_err(|_| EXPECTED)?;
        (h, p)
    } else {
        let (h, p) = s.rsplit_once(':').ok_or(EXPECTED)?;
        if h.contains(':') {
            return Err(EXPECTED);
        }
        (h, p)
    };
    let port: u16 = port.parse().map_err(|_| EXPECTED)?;
    if port == 0 {
        return Err(EXPECTED);
    }
    let is_ip = host.parse::<IpAddr>().is_ok();
    let is_dns = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if !is_ip && !is_dns {
        return Err(EXPECTED);
    }
    Ok(Endpoint {
        host: host.to_owned(),
        port,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn endpoint_parsing() {
        assert_eq!(
            parse_endpoint("1.2.3.4:51820").unwrap(),
            Endpoint {
                host: "1.2.3.4".into(),
                port: 51820
            }
        );
        assert_eq!(parse_endpoint("[fd00::1]:1").unwrap().host, "fd00::1");
        assert_eq!(
            parse_endpoint("member-b.example:9").unwrap().to_string(),
            "member-b.example:9"
        );
        assert_eq!(parse_endpoint("[::1]:5").unwrap().to_string(), "[::1]:5");
        for bad in [
            "",
            "host",
            "host:0",
            "host:65536",
            ":80",
            "fd00::1:80",
            "a..b:1",
            "-a:1",
            "[zz]:1",
            "h st:1",
        ] {
            assert!(parse_endpoint(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn peer_problems_keep_checking_and_name_the_first_owner() {
        let peer = |name: &str, key: [u8; 32], addr: &str| {
            Some(PeerSection {
                name: name.into(),
                public_key: STANDARD.encode(key),
                addresses: vec![addr.into()],
                endpoint: None,
                persistent_keepalive: None,
            })
        };
        let raw = [
            peer("a", [1; 32], "10.0.0.1"),
            None, // did not parse; peer[1] keeps its index
            peer("c", [1; 32], "10.0.0.1"),
            peer("d", [1; 32], "10.0.0.4"),
        ];
        let text = "";
        let mut p = Problems::new(Path::new("x.toml"), text);
        let peers = check_peers(&mut p, &raw, None, Some([9; 32]), &[]);
        assert_eq!(peers.len(), 1);
        let problems = p.into_sorted();
        let got: Vec<(&str, &str)> = problems
            .iter()
            .map(|p| (p.key.as_str(), p.expected.as_str()))
            .collect();
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!(got[0].0, "peer[2].public_key");
        assert!(got[0].1.contains("peer[0] has the same key"));
        assert_eq!(got[1].0, "peer[2].addresses[0]");
        assert_eq!(got[2].0, "peer[3].public_key");
        assert!(got[2].1.contains("peer[0] has the same key"), "{got:?}");
    }
}
