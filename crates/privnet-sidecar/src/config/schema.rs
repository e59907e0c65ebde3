//! The file schema: what serde reads from one configuration file, before any file it names is read
//! and before any value is checked beyond its TOML type.
//!
//! Invariant: every section struct lists its keys twice, once for serde (the fields) and once for
//! the lenient section parser in `spans.rs` ([`Section::KEYS`], [`Section::REQUIRED`]); the unit
//! tests at the bottom fail if the two disagree. The validated form the driver reads is in
//! `types.rs`; these raw structs do not leave the `config` module except through [`FileConfig`]
//! (`privnet status` reads `[status] socket` from it) and the process-wide sections.

use std::net::SocketAddr;
use std::path::PathBuf;

use privnet_core::crypto::CipherSuite;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::expose::ExposeEntry;
use super::userspace::UserspaceSection;

/// Default UDP listen address.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:51820";
/// Default TUN device name.
pub const DEFAULT_TUN_NAME: &str = "privnet0";
/// Default inner MTU: a 1500-byte underlay minus
/// [`TUNNEL_OVERHEAD`](crate::config::TUNNEL_OVERHEAD) (as WireGuard).
pub const DEFAULT_MTU: u16 = 1420;
/// Default underlay (physical) MTU.
pub const DEFAULT_UNDERLAY_MTU: u16 = 1500;
/// Default hold of a dense send batch, in microseconds.
pub const DEFAULT_BATCH_HOLD_US: u32 = 20;
/// Default busy-poll window after a packet, in microseconds.
pub const DEFAULT_BUSY_POLL_US: u32 = 200;

/// What the lenient section parser needs beyond serde: which keys exist and which have no default.
/// A key that is not in [`Section::KEYS`] is reported and dropped before serde sees the table, so
/// one misspelt key does not hide the rest of the section.
pub(super) trait Section: DeserializeOwned {
    /// Every key of the section, in declaration order (as serde's `deny_unknown_fields` knows them).
    const KEYS: &'static [&'static str];
    /// The keys without a default.
    const REQUIRED: &'static [&'static str];
}

/// `[node]`: this member's identity and listen address.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// Network name; must be the name in the CA certificate(s).
    pub network: String,
    /// Noise static private key file (`privnet keygen`), mode 0600.
    pub private_key: PathBuf,
    /// Member certificate file (`privnet cert issue`).
    pub certificate: PathBuf,
    /// Trusted CA certificate files (two during a CA rollover).
    pub ca_certificates: Vec<PathBuf>,
    /// Network pre-shared key file (`privnet ca init`), mode 0600.
    pub network_psk: PathBuf,
    /// PSK files also accepted during a PSK rotation (`privnet ca rotate-psk`), mode 0600.
    #[serde(default)]
    pub network_psk_accept: Vec<PathBuf>,
    /// Revocation list file (optional; reloaded on SIGHUP by the driver).
    #[serde(default)]
    pub revocation_list: Option<PathBuf>,
    /// UDP listen address.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Policy file (optional).
    #[serde(default)]
    pub policy: Option<PathBuf>,
    /// The network's AEAD; the same on every member of the network.
    #[serde(default)]
    pub cipher: CipherName,
}

impl Section for NodeSection {
    const KEYS: &'static [&'static str] = &[
        "network",
        "private_key",
        "certificate",
        "ca_certificates",
        "network_psk",
        "network_psk_accept",
        "revocation_list",
        "listen",
        "policy",
        "cipher",
    ];
    const REQUIRED: &'static [&'static str] = &[
        "network",
        "private_key",
        "certificate",
        "ca_certificates",
        "network_psk",
    ];
}

/// `[node] cipher`: the configuration names of [`CipherSuite`].
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
pub enum CipherName {
    /// AES-256-GCM (default).
    #[default]
    #[serde(rename = "aes-256-gcm")]
    Aes256Gcm,
    /// ChaCha20-Poly1305.
    #[serde(rename = "chacha20-poly1305")]
    ChaCha20Poly1305,
}

impl From<CipherName> for CipherSuite {
    fn from(c: CipherName) -> Self {
        match c {
            CipherName::Aes256Gcm => CipherSuite::Aes256Gcm,
            CipherName::ChaCha20Poly1305 => CipherSuite::ChaCha20Poly1305,
        }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 51820))
}

/// `[[peer]]`: one entry of the static discovery list.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PeerSection {
    /// Peer name (for logs; the authoritative name is in its certificate).
    pub name: String,
    /// Peer's Noise static public key, base64.
    pub public_key: String,
    /// Overlay addresses (and routed subnets) reached through this peer.
    pub addresses: Vec<String>,
    /// Underlay endpoint `host:port` (optional: the peer may connect to us first).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Persistent keepalive interval in seconds (optional; off when absent).
    #[serde(default)]
    pub persistent_keepalive: Option<u16>,
}

impl Section for PeerSection {
    const KEYS: &'static [&'static str] = &[
        "name",
        "public_key",
        "addresses",
        "endpoint",
        "persistent_keepalive",
    ];
    const REQUIRED: &'static [&'static str] = &["name", "public_key", "addresses"];
}

/// `[directory]`: the network's directory on etcd (docs/DIRECTORY.md). With it, `[[peer]]`
/// entries are optional: members find each other through their records.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DirectorySection {
    /// etcd endpoints, `HOST:PORT` or `http://HOST:PORT`.
    pub endpoints: Vec<String>,
    /// Key prefix of the network (default `/privnet/NETWORK`).
    #[serde(default)]
    pub prefix: Option<String>,
    /// Lease TTL of this member's record, seconds: a member that dies disappears this long after
    /// its last keepalive.
    #[serde(default = "default_lease_ttl")]
    pub lease_ttl_s: u32,
    /// Underlay endpoints this member publishes (default: `node.listen` if it is not a wildcard).
    #[serde(default)]
    pub advertise: Vec<String>,
    /// On-disk cache of the directory (optional; a restart during an etcd outage comes up from it).
    #[serde(default)]
    pub cache: Option<PathBuf>,
    /// etcd user (etcd's own authentication; with `password_file`).
    #[serde(default)]
    pub user: Option<String>,
    /// File holding the etcd user's password, mode 0600.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Capabilities published in this member's record.
    #[serde(default)]
    pub capabilities: Vec<String>,
}

impl Section for DirectorySection {
    const KEYS: &'static [&'static str] = &[
        "endpoints",
        "prefix",
        "lease_ttl_s",
        "advertise",
        "cache",
        "user",
        "password_file",
        "capabilities",
    ];
    const REQUIRED: &'static [&'static str] = &["endpoints"];
}

/// `[dns]`: the DNS responder of TUN mode (docs/CONFIG.md): answers `NAME.NETWORK.` (A, AAAA)
/// for the members this one knows.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DnsSection {
    /// Serve it (default `true` once the section is there).
    #[serde(default = "default_offload")]
    pub enable: bool,
    /// `IP:PORT` or `IP` (port 53) to answer on, UDP and TCP (default: this member's first
    /// overlay IPv4 address, else its first IPv6 one, port 53).
    #[serde(default)]
    pub listen: Option<String>,
    /// TTL of the answers, seconds.
    #[serde(default = "default_dns_ttl")]
    pub ttl_s: u32,
}

impl Section for DnsSection {
    const KEYS: &'static [&'static str] = &["enable", "listen", "ttl_s"];
    const REQUIRED: &'static [&'static str] = &[];
}

fn default_dns_ttl() -> u32 {
    privnet_core::io::dns::DEFAULT_TTL
}

/// Default `directory.lease_ttl_s`.
pub const DEFAULT_LEASE_TTL_S: u32 = 10;

fn default_lease_ttl() -> u32 {
    DEFAULT_LEASE_TTL_S
}

/// How overlay packets reach applications.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TunMode {
    /// A kernel TUN device (needs CAP_NET_ADMIN).
    #[default]
    Tun,
    /// An embedded userspace IP stack (no privileges).
    Userspace,
}

/// `[tun]` as written in the file. Validation turns it into
/// [`TunSettings`](crate::config::TunSettings), which is what the driver reads.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TunSection {
    /// `"tun"` or `"userspace"`.
    #[serde(default)]
    pub mode: TunMode,
    /// Device name (mode `tun`).
    #[serde(default = "default_tun_name")]
    pub name: String,
    /// Inner MTU.
    #[serde(default = "default_mtu")]
    pub mtu: u16,
    /// Underlay MTU.
    #[serde(default = "default_underlay_mtu")]
    pub underlay_mtu: u16,
    /// Use TUN segmentation/checksum offloads (virtio-net headers, TSO) when the kernel offers them.
    #[serde(default = "default_offload")]
    pub offload: bool,
    /// Keep polling this long (microseconds) after a packet before sleeping; 0 disables. Bounded
    /// to a tenth of a core (see `privnet_core::io`, `io/busypoll.rs`).
    #[serde(default = "default_busy_poll_us")]
    pub busy_poll_us: u32,
    /// When a dense send batch (4+ packets) runs dry, wait up to this long (microseconds) for more
    /// before sending it, at most 4 times per batch; packets on the underlay socket end the wait;
    /// 0 disables (see `privnet_core::io`, `io/hold.rs`).
    #[serde(default = "default_batch_hold_us")]
    pub batch_hold_us: u32,
    /// Per-peer fairness before decryption: while this member cannot keep up, the heaviest
    /// senders' excess over a fair share is dropped first (see `privnet_core::io`, `io/fair.rs`).
    /// On by default; `false` only to compare.
    #[serde(default = "default_offload")]
    pub fairness: bool,
    /// Threads for the data path's encryption and decryption: 1 (the default) keeps everything
    /// on the network's one thread; `n` splits each large batch between it and `n - 1` more,
    /// order kept (see `privnet_core::io`, `io/workers.rs`). 1 to 64.
    #[serde(default = "default_workers")]
    pub workers: usize,
    /// Firewall mark of the underlay socket while a default route is installed (mode `tun`; a
    /// default `[[route]]` of the policy, docs/CONFIG.md "Default route").
    #[serde(default = "default_fwmark")]
    pub fwmark: u32,
    /// Routing table of the default route.
    #[serde(default = "default_route_table")]
    pub route_table: u32,
}

impl Section for TunSection {
    const KEYS: &'static [&'static str] = &[
        "mode",
        "name",
        "mtu",
        "underlay_mtu",
        "offload",
        "busy_poll_us",
        "batch_hold_us",
        "fairness",
        "workers",
        "fwmark",
        "route_table",
    ];
    const REQUIRED: &'static [&'static str] = &[];
}

fn default_workers() -> usize {
    1
}

fn default_fwmark() -> u32 {
    privnet_core::io::DEFAULT_FWMARK
}

fn default_route_table() -> u32 {
    privnet_core::io::DEFAULT_ROUTE_TABLE
}

fn default_batch_hold_us() -> u32 {
    DEFAULT_BATCH_HOLD_US
}

fn default_busy_poll_us() -> u32 {
    DEFAULT_BUSY_POLL_US
}

fn default_offload() -> bool {
    true
}

fn default_tun_name() -> String {
    DEFAULT_TUN_NAME.to_owned()
}
fn default_mtu() -> u16 {
    DEFAULT_MTU
}
fn default_underlay_mtu() -> u16 {
    DEFAULT_UNDERLAY_MTU
}

impl Default for TunSection {
    fn default() -> Self {
        Self {
            mode: TunMode::default(),
            name: default_tun_name(),
            mtu: DEFAULT_MTU,
            underlay_mtu: DEFAULT_UNDERLAY_MTU,
            offload: true,
            busy_poll_us: DEFAULT_BUSY_POLL_US,
            batch_hold_us: DEFAULT_BATCH_HOLD_US,
            fairness: true,
            workers: default_workers(),
            fwmark: default_fwmark(),
            route_table: default_route_table(),
        }
    }
}

/// `[conntrack]`: the size of the connection tracker a policy's stateful rules use. Validation
/// turns it into the core's `ConntrackConfig` (timeouts stay Linux's defaults).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ConntrackSection {
    /// Flows tracked in total (80 bytes each at most, reserved when a policy is installed).
    #[serde(default = "default_max_flows")]
    pub max_flows: u32,
    /// Flows one peer may hold (default: the core's, or `max_flows` if that is smaller).
    #[serde(default)]
    pub max_flows_per_peer: Option<u32>,
    /// New flows one peer may open per second, sustained.
    #[serde(default = "default_new_flows_per_sec")]
    pub new_flows_per_sec: u32,
    /// New flows one peer may open in a burst.
    #[serde(default = "default_new_flow_burst")]
    pub new_flow_burst: u32,
}

impl Section for ConntrackSection {
    const KEYS: &'static [&'static str] = &[
        "max_flows",
        "max_flows_per_peer",
        "new_flows_per_sec",
        "new_flow_burst",
    ];
    const REQUIRED: &'static [&'static str] = &[];
}

fn conntrack_default() -> privnet_core::policy::ConntrackConfig {
    privnet_core::policy::ConntrackConfig::default()
}

fn default_max_flows() -> u32 {
    u32::try_from(conntrack_default().max_flows).unwrap_or(u32::MAX)
}

fn default_new_flows_per_sec() -> u32 {
    conntrack_default().new_flows_per_sec
}

fn default_new_flow_burst() -> u32 {
    conntrack_default().new_flow_burst
}

impl Default for ConntrackSection {
    fn default() -> Self {
        Self {
            max_flows: default_max_flows(),
            max_flows_per_peer: None,
            new_flows_per_sec: default_new_flows_per_sec(),
            new_flow_burst: default_new_flow_burst(),
        }
    }
}

/// `[metrics]`: Prometheus endpoint. Off unless `listen` is set; must be a loopback address.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    /// HTTP listen address for `/metrics`.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
}

impl Section for MetricsSection {
    const KEYS: &'static [&'static str] = &["listen"];
    const REQUIRED: &'static [&'static str] = &[];
}

/// `[status]`: the local status socket.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StatusSection {
    /// Unix socket path (off when absent).
    #[serde(default)]
    pub socket: Option<PathBuf>,
}

impl Section for StatusSection {
    const KEYS: &'static [&'static str] = &["socket"];
    const REQUIRED: &'static [&'static str] = &[];
}

/// Log verbosity.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Warnings and errors.
    Warn,
    /// Normal operation.
    #[default]
    Info,
    /// Debugging.
    Debug,
    /// Everything.
    Trace,
}

/// Log line format.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `[log]`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    /// Verbosity.
    #[serde(default)]
    pub level: LogLevel,
    /// Format.
    #[serde(default)]
    pub format: LogFormat,
    /// The audit log (JSON lines of applied policies and refused flows), an absolute path; off
    /// when absent.
    #[serde(default)]
    pub audit: Option<PathBuf>,
}

impl Section for LogSection {
    const KEYS: &'static [&'static str] = &["level", "format", "audit"];
    const REQUIRED: &'static [&'static str] = &[];
}

/// The top-level keys of a configuration file.
pub(super) const TOP_LEVEL_KEYS: &[&str] = &[
    "node",
    "peer",
    "tun",
    "metrics",
    "status",
    "log",
    "userspace",
    "expose",
    "directory",
    "dns",
    "conntrack",
];

/// One configuration file as parsed, before any file it names is read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileConfig {
    /// `[node]` (required; `None` only if missing or invalid, with a problem reported).
    pub node: Option<NodeSection>,
    /// `[[peer]]` entries in file order, so that `peers[i]` is `peer[i]` in problems; `None` for
    /// an entry that could not be read (a required key missing or of the wrong type, reported).
    pub peers: Vec<Option<PeerSection>>,
    /// `[tun]`.
    pub tun: Option<TunSection>,
    /// `[metrics]`.
    pub metrics: Option<MetricsSection>,
    /// `[status]`.
    pub status: Option<StatusSection>,
    /// `[log]`.
    pub log: Option<LogSection>,
    /// `[userspace]` (with `tun.mode = "userspace"`).
    pub userspace: Option<UserspaceSection>,
    /// `[directory]`.
    pub directory: Option<DirectorySection>,
    /// `[dns]`.
    pub dns: Option<DnsSection>,
    /// `[conntrack]`.
    pub conntrack: Option<ConntrackSection>,
    /// `[[expose]]` entries in file order (`None`: an entry that could not be read, reported).
    pub expose: Vec<Option<ExposeEntry>>,
}

impl Section for ExposeEntry {
    const KEYS: &'static [&'static str] = &[
        "name",
        "listen",
        "protocol",
        "to",
        "proxy_protocol",
        "allow",
        "block_lists",
        "connections_per_second",
        "connections_burst",
        "bytes_per_second",
        "bytes_burst",
        "max_connections_per_source",
        "max_connections",
        "udp_idle_secs",
    ];
    const REQUIRED: &'static [&'static str] = &["listen", "to"];
}

impl Section for UserspaceSection {
    const KEYS: &'static [&'static str] = &["socks", "forward", "publish"];
    const REQUIRED: &'static [&'static str] = &[];
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// serde's list of the keys of `T`, from its unknown-field message.
    fn serde_keys<T: Section + std::fmt::Debug>() -> Vec<String> {
        let err = toml::from_str::<T>("surely_not_a_key = 1\n").unwrap_err();
        let msg = err.message().to_owned();
        let list = msg
            .split_once("expected ")
            .map(|(_, l)| l)
            .unwrap_or_default();
        list.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect()
    }

    /// `minimal` holds exactly the required keys with valid values: it must parse, and dropping any
    /// one line must fail with "missing field" naming that key.
    fn check<T: Section + std::fmt::Debug>(minimal: &[(&str, &str)]) {
        assert_eq!(serde_keys::<T>(), T::KEYS, "KEYS drifted from the struct");
        let names: Vec<&str> = minimal.iter().map(|(k, _)| *k).collect();
        assert_eq!(names, T::REQUIRED, "REQUIRED drifted from the struct");
        let text = |skip: Option<usize>| -> String {
            minimal
                .iter()
                .enumerate()
                .filter(|(i, _)| Some(*i) != skip)
                .map(|(_, (k, v))| format!("{k} = {v}\n"))
                .collect()
        };
        toml::from_str::<T>(&text(None)).unwrap();
        for (i, key) in T::REQUIRED.iter().enumerate() {
            let err = toml::from_str::<T>(&text(Some(i))).unwrap_err();
            assert!(
                err.message().contains(&format!("missing field `{key}`")),
                "{key}: {err}"
            );
        }
    }

    #[test]
    fn section_key_lists_match_serde() {
        check::<NodeSection>(&[
            ("network", "\"n\""),
            ("private_key", "\"k\""),
            ("certificate", "\"c\""),
            ("ca_certificates", "[]"),
            ("network_psk", "\"p\""),
        ]);
        check::<PeerSection>(&[
            ("name", "\"n\""),
            ("public_key", "\"k\""),
            ("addresses", "[]"),
        ]);
        check::<TunSection>(&[]);
        check::<MetricsSection>(&[]);
        check::<StatusSection>(&[]);
        check::<LogSection>(&[]);
        check::<UserspaceSection>(&[]);
        check::<ExposeEntry>(&[("listen", "\"0.0.0.0:443\""), ("to", "\"b:80\"")]);
        check::<DirectorySection>(&[("endpoints", "[]")]);
        check::<DnsSection>(&[]);
        check::<ConntrackSection>(&[]);
    }

    #[test]
    fn tun_defaults_match_serde_defaults() {
        assert_eq!(
            toml::from_str::<TunSection>("").unwrap(),
            TunSection::default()
        );
        assert_eq!(
            toml::from_str::<ConntrackSection>("").unwrap(),
            ConntrackSection::default()
        );
    }
}
