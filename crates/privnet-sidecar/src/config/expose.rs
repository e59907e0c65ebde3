//! `[[expose]]`: a public address of this member whose TCP connections or UDP datagrams are
//! forwarded into the network (to one member's port, or to one of a group of members), as written
//! in the file ([`ExposeEntry`]) and validated ([`ExposeSettings`]). A leaf of `config` (the schema
//! and the validated types both hold these); its checks are `validate/expose.rs`.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use privnet_core::expose::{AdmissionConfig, PrefixSet, Rate};
use privnet_core::io::expose::{ExposeSpec, DEFAULT_CONNECT_TIMEOUT};
use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// Default idle timeout of a UDP flow, in seconds.
pub const DEFAULT_UDP_IDLE_SECS: u32 = 60;
/// Longest idle timeout accepted, in seconds.
pub const MAX_UDP_IDLE_SECS: u32 = 3600;

/// Which transports an exposure accepts.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum ExposeProtocol {
    /// TCP connections (default).
    #[default]
    Tcp,
    /// UDP datagrams.
    Udp,
    /// Both, on the same address and port.
    Both,
}

impl ExposeProtocol {
    /// Accepts TCP.
    pub fn tcp(self) -> bool {
        self != Self::Udp
    }
    /// Accepts UDP.
    pub fn udp(self) -> bool {
        self != Self::Tcp
    }
}

/// `proxy_protocol`.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ProxyProtocol {
    /// No header (default): the target sees this member's overlay address.
    #[default]
    None,
    /// A PROXY protocol v2 header (TCP: before the stream; UDP: on every datagram).
    V2,
}

/// `to`: one target (`"name:port"`) or a list of them (a group).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Targets(pub Vec<String>);

impl<'de> Deserialize<'de> for Targets {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Targets;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a target \"name:port\" or \"address:port\", or an array of them (a group)",
                )
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Targets, E> {
                Ok(Targets(vec![s.to_owned()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Targets, A::Error> {
                let mut v = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    v.push(s);
                }
                Ok(Targets(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// `[[expose]]` as written in the file.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ExposeEntry {
    /// Name in logs, `privnet status` and `/metrics` (default: `expose[i]`).
    #[serde(default)]
    pub name: Option<String>,
    /// Public address to listen on, e.g. `"0.0.0.0:443"`.
    pub listen: SocketAddr,
    /// `"tcp"` (default), `"udp"` or `"both"`.
    #[serde(default)]
    pub protocol: ExposeProtocol,
    /// Target in the network: `"name:port"` (a `[[peer]]` name) or `"address:port"` (an overlay
    /// address of a `[[peer]]`), or an array of them: a group.
    pub to: Targets,
    /// `"v2"` or `"none"` (default).
    #[serde(default)]
    pub proxy_protocol: ProxyProtocol,
    /// Only these sources (CIDR prefixes or addresses); empty: every source.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Block-list files (one CIDR or address per line; FireHOL netset, Spamhaus DROP).
    #[serde(default)]
    pub block_lists: Vec<PathBuf>,
    /// New connections (UDP flows) per second per source (IPv4 address, IPv6 /64).
    #[serde(default)]
    pub connections_per_second: Option<u32>,
    /// Burst of new connections per source (default: `connections_per_second`).
    #[serde(default)]
    pub connections_burst: Option<u32>,
    /// Bytes per second per source, both directions together.
    #[serde(default)]
    pub bytes_per_second: Option<u32>,
    /// Burst of bytes per source (default: `bytes_per_second`).
    #[serde(default)]
    pub bytes_burst: Option<u32>,
    /// Concurrent connections (UDP flows) per source.
    #[serde(default)]
    pub max_connections_per_source: Option<u32>,
    /// Concurrent connections (UDP flows) in total.
    #[serde(default)]
    pub max_connections: Option<u32>,
    /// A UDP flow is forgotten after this many seconds without a datagram.
    #[serde(default = "default_udp_idle")]
    pub udp_idle_secs: u32,
}

fn default_udp_idle() -> u32 {
    DEFAULT_UDP_IDLE_SECS
}

/// One block-list, read and parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockList {
    /// The resolved file.
    pub path: PathBuf,
    /// Its prefixes.
    pub set: Arc<PrefixSet>,
}

/// One validated `[[expose]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExposeSettings {
    /// Name.
    pub name: String,
    /// Public listen address.
    pub listen: SocketAddr,
    /// Transports.
    pub protocol: ExposeProtocol,
    /// The targets as written (`to`).
    pub to: Vec<String>,
    /// The targets resolved to overlay addresses (same order).
    pub targets: Vec<SocketAddr>,
    /// PROXY protocol v2 on.
    pub proxy_v2: bool,
    /// The allow-list (`None`: every source).
    pub allow: Option<Arc<PrefixSet>>,
    /// The block-lists.
    pub block_lists: Vec<BlockList>,
    /// New connections per second per source.
    pub connection_rate: Option<Rate>,
    /// Bytes per second per source.
    pub byte_rate: Option<Rate>,
    /// Concurrent connections per source.
    pub max_per_source: Option<u32>,
    /// Concurrent connections in total.
    pub max_total: Option<u32>,
    /// UDP flow idle timeout.
    pub udp_idle: Duration,
}

impl ExposeSettings {
    /// What the library's listeners take.
    pub fn spec(&self) -> ExposeSpec {
        ExposeSpec {
            name: self.name.clone(),
            listen: self.listen,
            tcp: self.protocol.tcp(),
            udp: self.protocol.udp(),
            targets: self.targets.clone(),
            proxy_v2: self.proxy_v2,
            admission: AdmissionConfig {
                allow: self.allow.clone(),
                connection_rate: self.connection_rate,
                byte_rate: self.byte_rate,
                max_per_source: self.max_per_source,
                max_total: self.max_total,
                max_sources: 0,
            },
            block_lists: self
                .block_lists
                .iter()
                .map(|b| (b.path.display().to_string(), b.set.clone()))
                .collect(),
            udp_idle: self.udp_idle,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }

    /// One line for logs and `privnet check`.
    pub fn describe(&self) -> String {
        let lists: usize = self.block_lists.iter().map(|b| b.set.entries()).sum();
        format!(
            "exposure {}: {} {} -> {}{}; allow {}, {} block-list(s) with {} entries",
            self.name,
            match self.protocol {
                ExposeProtocol::Tcp => "tcp",
                ExposeProtocol::Udp => "udp",
                ExposeProtocol::Both => "tcp+udp",
            },
            self.listen,
            self.to.join(", "),
            if self.proxy_v2 { " (PROXY v2)" } else { "" },
            self.allow
                .as_ref()
                .map_or("every source".to_owned(), |a| format!(
                    "{} entries",
                    a.entries()
                )),
            self.block_lists.len(),
            lists
        )
    }
}
