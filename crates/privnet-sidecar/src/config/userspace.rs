//! `[userspace]`: what a member in `tun.mode = "userspace"` (no TUN, no privileges) offers on
//! its host — local port forwards into the network, local services published into it, a SOCKS5
//! proxy — as written in the file ([`UserspaceSection`]) and validated ([`UserspaceSettings`]).
//! A leaf of `config` (the schema and the validated types both hold these).

use std::net::SocketAddr;

use serde::Deserialize;

/// TCP or UDP.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP (default).
    #[default]
    Tcp,
    /// UDP.
    Udp,
}

/// `[[userspace.forward]]`: a local port whose connections (or datagrams) go to an overlay
/// endpoint.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ForwardEntry {
    /// Local address to listen on, e.g. `"127.0.0.1:5432"`.
    pub listen: SocketAddr,
    /// Overlay destination: `"name:port"` (a member's verified name) or `"address:port"`.
    pub to: String,
    /// `"tcp"` (default) or `"udp"`.
    #[serde(default)]
    pub protocol: Protocol,
}

/// `[[userspace.publish]]`: an overlay port whose connections (or datagrams) go to a local
/// service.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PublishEntry {
    /// Overlay port, on every overlay address of this member.
    pub port: u16,
    /// Local service, e.g. `"127.0.0.1:8080"`.
    pub to: SocketAddr,
    /// `"tcp"` (default) or `"udp"`.
    #[serde(default)]
    pub protocol: Protocol,
    /// Only callers whose certificate puts them in one of these groups (empty: every member).
    #[serde(default)]
    pub groups: Vec<String>,
}

/// `[userspace]` as written in the file.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct UserspaceSection {
    /// SOCKS5 proxy (CONNECT and UDP ASSOCIATE) on a loopback address, e.g. `"127.0.0.1:1080"`.
    #[serde(default)]
    pub socks: Option<SocketAddr>,
    /// Local port forwards.
    #[serde(default)]
    pub forward: Vec<ForwardEntry>,
    /// Published local services.
    #[serde(default)]
    pub publish: Vec<PublishEntry>,
}

/// One validated forward.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Forward {
    /// Local address.
    pub listen: SocketAddr,
    /// Overlay destination (`name:port` or `address:port`; resolved when used).
    pub to: String,
    /// TCP or UDP.
    pub protocol: Protocol,
}

/// One validated published service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Publish {
    /// Overlay port.
    pub port: u16,
    /// Local service.
    pub to: SocketAddr,
    /// TCP or UDP.
    pub protocol: Protocol,
    /// Allowed callers' groups (empty: every member).
    pub groups: Vec<String>,
}

/// The validated `[userspace]` section (empty for a TUN-mode network).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserspaceSettings {
    /// SOCKS5 proxy address.
    pub socks: Option<SocketAddr>,
    /// Local port forwards.
    pub forwards: Vec<Forward>,
    /// Published services.
    pub publish: Vec<Publish>,
}
