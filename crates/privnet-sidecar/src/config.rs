//! The member configuration file: schema, loader and validation.
//!
//! One TOML file describes this process's membership of **one network** (see `docs/CONFIG.md` for
//! the reference). A process that is a member of several networks is given several files
//! (`privnet check --config a.toml --config b.toml`); overlay addresses may overlap between
//! networks, but network names and ids, listen addresses and TUN device names may not. The
//! process-wide sections `[metrics]`, `[status]` and `[log]` may appear in any of the files; if they
//! appear in more than one, they must be identical.
//!
//! Loading never stops at the first problem: [`load`] returns either a validated [`Config`] or every
//! [`Problem`] found, each naming the file, the key path (`peer[1].public_key`), the line when known,
//! and what was expected. Relative paths in a file are relative to that file's directory.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ipnetwork::IpNetwork;
use privnet_core::crypto::CipherSuite;
use privnet_core::identity::{
    CaCertificate, CertError, MemberCertificate, NetworkId, NoiseKeyPair, RevocationList,
    TrustStore, TrustStoreError,
};
use serde::Deserialize;
use toml::de::{DeTable, DeValue, ValueDeserializer};
use toml::Spanned;
use zeroize::Zeroizing;

use crate::files::{self, FileError};

/// Default UDP listen address.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:51820";
/// Default TUN device name.
pub const DEFAULT_TUN_NAME: &str = "privnet0";
/// Default inner MTU: a 1500-byte underlay minus [`TUNNEL_OVERHEAD`] (as WireGuard).
pub const DEFAULT_MTU: u16 = 1420;
/// Default underlay (physical) MTU.
pub const DEFAULT_UNDERLAY_MTU: u16 = 1500;
/// Worst-case bytes added per packet: IPv6 (40) + UDP (8) + data header (16) + AEAD tag (16).
pub const TUNNEL_OVERHEAD: u16 = 80;
/// Bytes added per packet on an IPv4 underlay: IPv4 (20) + UDP (8) + 32.
pub const TUNNEL_OVERHEAD_V4: u16 = 60;
/// Smallest inner MTU (IPv6 minimum link MTU, RFC 8200).
pub const MIN_MTU: u16 = 1280;
/// Largest inner MTU.
pub const MAX_MTU: u16 = 9000;
/// Largest underlay MTU (jumbo frames).
pub const MAX_UNDERLAY_MTU: u16 = 9216;
/// Longest Linux interface name (IFNAMSIZ - 1).
pub const MAX_TUN_NAME_LEN: usize = 15;
/// Longest unix socket path (sun_path - 1).
pub const MAX_SOCKET_PATH_LEN: usize = 107;
/// Largest persistent keepalive interval, seconds.
pub const MAX_KEEPALIVE_SECS: u16 = 3600;

// ------------------------------------------------------------------------------------------------
// Problems

/// One problem in a configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The configuration file.
    pub file: PathBuf,
    /// Key path inside the file, e.g. `node.private_key` or `peer[1].addresses[0]`; empty for the
    /// whole file.
    pub key: String,
    /// Line in the configuration file (from 1), when known.
    pub line: Option<usize>,
    /// What was expected (and, usually, what was found).
    pub expected: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.expected)
    }
}

// ------------------------------------------------------------------------------------------------
// File schema (what serde reads)

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

/// `[tun]`: the overlay interface.
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
    /// to a tenth of a core (see `busypoll.rs`).
    #[serde(default = "default_busy_poll_us")]
    pub busy_poll_us: u32,
    /// When a dense send batch (4+ packets) runs dry, wait up to this long (microseconds) for more
    /// before sending it, at most 4 times per batch; packets on the underlay socket end the wait;
    /// 0 disables (see `hold.rs`).
    #[serde(default = "default_batch_hold_us")]
    pub batch_hold_us: u32,
}

/// Default hold of a dense send batch, in microseconds.
pub const DEFAULT_BATCH_HOLD_US: u32 = 20;
/// Largest hold accepted, in microseconds.
pub const MAX_BATCH_HOLD_US: u32 = 1_000;

fn default_batch_hold_us() -> u32 {
    DEFAULT_BATCH_HOLD_US
}

/// Default busy-poll window after a packet, in microseconds.
pub const DEFAULT_BUSY_POLL_US: u32 = 200;
/// Largest busy-poll window accepted, in microseconds.
pub const MAX_BUSY_POLL_US: u32 = 10_000;

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

/// `[status]`: the local status socket.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StatusSection {
    /// Unix socket path (off when absent).
    #[serde(default)]
    pub socket: Option<PathBuf>,
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
}

/// One configuration file as parsed, before any file it names is read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileConfig {
    /// `[node]` (required; `None` only if missing or invalid, with a problem reported).
    pub node: Option<NodeSection>,
    /// `[[peer]]` entries that parsed.
    pub peers: Vec<PeerSection>,
    /// `[tun]`.
    pub tun: Option<TunSection>,
    /// `[metrics]`.
    pub metrics: Option<MetricsSection>,
    /// `[status]`.
    pub status: Option<StatusSection>,
    /// `[log]`.
    pub log: Option<LogSection>,
}

const TOP_LEVEL_KEYS: &str = "one of `node`, `peer`, `tun`, `metrics`, `status`, `log`";

/// Parse the text of one configuration file (pure: reads no other file). Returns the parsed
/// sections and every schema problem (syntax, unknown keys, wrong types, out-of-range integers).
pub fn parse_str(text: &str, file: &Path) -> (FileConfig, Vec<Problem>) {
    let mut cfg = FileConfig::default();
    let mut problems = Vec::new();
    let doc = match DeTable::parse(text) {
        Ok(doc) => doc,
        Err(e) => {
            problems.push(Problem {
                file: file.to_owned(),
                key: String::new(),
                line: e.span().map(|s| line_of(text, s.start)),
                expected: format!("valid TOML: {}", e.message().trim()),
            });
            return (cfg, problems);
        }
    };
    let mut p = |key: String, line: Option<usize>, expected: String| {
        problems.push(Problem {
            file: file.to_owned(),
            key,
            line,
            expected,
        });
    };
    for (k, v) in doc.get_ref().iter() {
        let name: &str = k.get_ref();
        let key_line = Some(line_of(text, k.span().start));
        match name {
            "node" => cfg.node = section(text, "node", v, &mut p),
            "tun" => cfg.tun = section(text, "tun", v, &mut p),
            "metrics" => cfg.metrics = section(text, "metrics", v, &mut p),
            "status" => cfg.status = section(text, "status", v, &mut p),
            "log" => cfg.log = section(text, "log", v, &mut p),
            "peer" => match v.get_ref() {
                DeValue::Array(items) => {
                    for (i, item) in items.iter().enumerate() {
                        if let Some(peer) = section(text, &format!("peer[{i}]"), item, &mut p) {
                            cfg.peers.push(peer);
                        }
                    }
                }
                _ => p(
                    "peer".into(),
                    key_line,
                    "an array of tables: one `[[peer]]` header per peer".into(),
                ),
            },
            other => p(
                safe_key(other),
                key_line,
                format!("no such key: expected {TOP_LEVEL_KEYS}"),
            ),
        }
    }
    let node_seen = doc.get_ref().contains_key("node");
    if !node_seen {
        p("node".into(), None, "a `[node]` section".into());
    }
    (cfg, problems)
}

/// Deserialize one section, reporting a problem (with key path and line) on failure.
fn section<T: serde::de::DeserializeOwned>(
    text: &str,
    prefix: &str,
    value: &Spanned<DeValue<'_>>,
    p: &mut impl FnMut(String, Option<usize>, String),
) -> Option<T> {
    if !matches!(value.get_ref(), DeValue::Table(_)) {
        p(
            prefix.to_owned(),
            Some(line_of(text, value.span().start)),
            format!("a table (`[{prefix}]` section)"),
        );
        return None;
    }
    let de = ValueDeserializer::from(value.clone());
    match serde_path_to_error::deserialize::<_, T>(de) {
        Ok(v) => Some(v),
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let msg = inner.message().trim().to_owned();
            let mut key = prefix.to_owned();
            if path != "." && !path.is_empty() {
                key.push('.');
                key.push_str(&path);
            }
            // serde reports an unknown field at its parent; name the field itself.
            if let Some(field) = msg
                .strip_prefix("unknown field `")
                .and_then(|r| r.split_once('`'))
                .map(|(f, _)| f)
            {
                let field = safe_key(field);
                if !key.ends_with(&format!(".{field}")) {
                    key.push('.');
                    key.push_str(&field);
                }
            }
            if let Some(field) = msg
                .strip_prefix("missing field `")
                .and_then(|r| r.split_once('`'))
                .map(|(f, _)| f)
            {
                if !key.ends_with(&format!(".{field}")) {
                    key.push('.');
                    key.push_str(field);
                }
            }
            let line = inner
                .span()
                .map(|s| line_of(text, s.start))
                .or_else(|| Some(line_of(text, value.span().start)));
            p(key, line, describe_serde_error(&msg));
            None
        }
    }
}

fn describe_serde_error(msg: &str) -> String {
    if let Some(rest) = msg.strip_prefix("unknown field ") {
        format!("no such key ({rest})")
    } else if msg.starts_with("missing field") {
        "this key is required".to_owned()
    } else if msg.contains("invalid socket address syntax") {
        format!("an IP address and port such as 0.0.0.0:51820 or [::]:51820 ({msg})")
    } else if msg.ends_with("expected u16") {
        format!("an integer between 0 and 65535 ({msg})")
    } else {
        msg.to_owned()
    }
}

/// A key name safe to print (TOML keys may hold any character).
fn safe_key(k: &str) -> String {
    k.chars()
        .take(64)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()
        .iter()
        .take(offset)
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Best-effort line of `key` (e.g. `peer[1].endpoint`) in a conventionally formatted file.
fn locate(text: &str, key: &str) -> Option<usize> {
    let (head, field) = match key.split_once('.') {
        Some((h, f)) => (h, Some(f)),
        None => (key, None),
    };
    let (table, index) = match head.split_once('[') {
        Some((t, rest)) => (t, rest.trim_end_matches(']').parse::<usize>().ok()?),
        None => (head, 0),
    };
    let header = if head.contains('[') {
        format!("[[{table}]]")
    } else {
        format!("[{table}]")
    };
    let lines: Vec<&str> = text.lines().collect();
    let start = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.trim_start().starts_with(&header))
        .nth(index)
        .map(|(i, _)| i)?;
    let Some(field) = field else {
        return Some(start + 1);
    };
    let field = field.split(['.', '[']).next().unwrap_or(field);
    lines
        .iter()
        .enumerate()
        .skip(start + 1)
        .take_while(|(_, l)| !l.trim_start().starts_with('['))
        .find(|(_, l)| {
            l.trim_start()
                .strip_prefix(field)
                .is_some_and(|r| r.trim_start().starts_with('='))
        })
        .map(|(i, _)| i + 1)
}

// ------------------------------------------------------------------------------------------------
// Validated configuration (what the driver consumes)

/// Everything the process needs, validated.
#[derive(Debug)]
pub struct Config {
    /// One entry per network (per configuration file), in the order given.
    pub networks: Vec<NetworkConfig>,
    /// Metrics endpoint (process-wide).
    pub metrics: MetricsSection,
    /// Status socket (process-wide).
    pub status: StatusSection,
    /// Logging (process-wide).
    pub log: LogSection,
}

/// Resolved paths of a network's identity files (for reloading the revocation list or CAs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityPaths {
    /// Private key file.
    pub private_key: PathBuf,
    /// Member certificate file.
    pub certificate: PathBuf,
    /// CA certificate files.
    pub ca_certificates: Vec<PathBuf>,
    /// PSK file.
    pub network_psk: PathBuf,
    /// Revocation list file.
    pub revocation_list: Option<PathBuf>,
}

/// This node's loaded identity in one network.
pub struct NodeIdentity {
    /// Noise static key pair.
    pub keypair: NoiseKeyPair,
    /// Own member certificate (its key matches `keypair`).
    pub certificate: MemberCertificate,
    /// Trusted CAs and the revocation list.
    pub trust: TrustStore,
    /// Network pre-shared key.
    pub psk: Zeroizing<[u8; 32]>,
}

impl fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeIdentity")
            .field("keypair", &self.keypair)
            .field("certificate", &self.certificate)
            .field("trust", &self.trust)
            .finish_non_exhaustive()
    }
}

/// An underlay endpoint `host:port`; `host` is an IP address or a DNS name, resolved by the driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// IP address or DNS name (IPv6 without brackets).
    pub host: String,
    /// UDP port (1-65535).
    pub port: u16,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// A validated `[[peer]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerConfig {
    /// Name.
    pub name: String,
    /// Noise static public key.
    pub public_key: [u8; 32],
    /// Overlay prefixes routed to the peer (addresses as /32 or /128).
    pub addresses: Vec<IpNetwork>,
    /// Underlay endpoint.
    pub endpoint: Option<Endpoint>,
    /// Persistent keepalive.
    pub persistent_keepalive: Option<Duration>,
}

/// One network membership, validated.
#[derive(Debug)]
pub struct NetworkConfig {
    /// The configuration file.
    pub file: PathBuf,
    /// Network name.
    pub network: String,
    /// Network id (from the CA).
    pub network_id: NetworkId,
    /// Loaded identity.
    pub identity: NodeIdentity,
    /// Resolved identity file paths.
    pub paths: IdentityPaths,
    /// UDP listen address.
    pub listen: SocketAddr,
    /// The network's AEAD (`[node] cipher`).
    pub cipher: CipherSuite,
    /// Static peers.
    pub peers: Vec<PeerConfig>,
    /// Overlay interface.
    pub tun: TunSection,
    /// Resolved policy file path.
    pub policy: Option<PathBuf>,
}

// ------------------------------------------------------------------------------------------------
// Loading

struct Ctx<'a> {
    file: &'a Path,
    text: &'a str,
    problems: Vec<Problem>,
}

impl Ctx<'_> {
    fn problem(&mut self, key: impl Into<String>, expected: impl Into<String>) {
        let key = key.into();
        let line = locate(self.text, &key);
        self.problems.push(Problem {
            file: self.file.to_owned(),
            key,
            line,
            expected: expected.into(),
        });
    }

    fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_owned()
        } else {
            self.file.parent().unwrap_or_else(|| Path::new(".")).join(p)
        }
    }
}

fn file_problem(e: &FileError) -> String {
    match e {
        FileError::NotFound(p) => format!("an existing file; {} does not exist", p.display()),
        FileError::LoosePermissions { path, mode } => format!(
            "a file readable only by its owner (mode 0600); {} has mode {mode:04o} (run `chmod 600 {}`)",
            path.display(),
            path.display()
        ),
        other => format!("a readable file; {other}"),
    }
}

/// Load and validate the configuration files at `paths` (one per network) at Unix time `now`.
///
/// # Errors
/// Every problem found, across all files.
pub fn load(paths: &[PathBuf], now: u64) -> Result<Config, Vec<Problem>> {
    let mut problems = Vec::new();
    let mut networks = Vec::new();
    let mut metrics: Option<(PathBuf, MetricsSection)> = None;
    let mut status: Option<(PathBuf, StatusSection)> = None;
    let mut log: Option<(PathBuf, LogSection)> = None;
    if paths.is_empty() {
        problems.push(Problem {
            file: PathBuf::new(),
            key: String::new(),
            line: None,
            expected: "at least one configuration file (--config FILE)".into(),
        });
    }
    for path in paths {
        let text = match files::read_text(path) {
            Ok(t) => t,
            Err(e) => {
                problems.push(Problem {
                    file: path.clone(),
                    key: String::new(),
                    line: None,
                    expected: file_problem(&e),
                });
                continue;
            }
        };
        let (raw, mut ps) = parse_str(&text, path);
        problems.append(&mut ps);
        let mut ctx = Ctx {
            file: path,
            text: &text,
            problems: Vec::new(),
        };
        // Process-wide sections: identical wherever they appear.
        merge_global(&mut ctx, "metrics", raw.metrics.clone(), &mut metrics);
        merge_global(&mut ctx, "status", raw.status.clone(), &mut status);
        merge_global(&mut ctx, "log", raw.log.clone(), &mut log);
        if let Some(m) = &raw.metrics {
            check_metrics(&mut ctx, m);
        }
        if let Some(s) = &raw.status {
            check_status(&mut ctx, s);
        }
        let net = validate_network(&mut ctx, &raw, now);
        if let Some(net) = net {
            cross_check(&mut ctx, &networks, &net);
            networks.push(net);
        }
        problems.append(&mut ctx.problems);
    }
    if problems.is_empty() {
        Ok(Config {
            networks,
            metrics: metrics.map(|(_, m)| m).unwrap_or_default(),
            status: status.map(|(_, s)| s).unwrap_or_default(),
            log: log.map(|(_, l)| l).unwrap_or_default(),
        })
    } else {
        Err(problems)
    }
}

fn merge_global<T: PartialEq + Clone>(
    ctx: &mut Ctx<'_>,
    key: &str,
    new: Option<T>,
    cur: &mut Option<(PathBuf, T)>,
) {
    let Some(new) = new else { return };
    match cur {
        Some((first, old)) if *old != new => {
            let msg = format!(
                "the same [{key}] section as in {} (process-wide settings must agree), or none",
                first.display()
            );
            ctx.problem(key, msg);
        }
        Some(_) => {}
        None => *cur = Some((ctx.file.to_owned(), new)),
    }
}

fn check_metrics(ctx: &mut Ctx<'_>, m: &MetricsSection) {
    if let Some(addr) = m.listen {
        if !addr.ip().is_loopback() {
            ctx.problem(
                "metrics.listen",
                format!("a loopback address such as 127.0.0.1:9477 or [::1]:9477; found {addr}"),
            );
        }
        if addr.port() == 0 {
            ctx.problem("metrics.listen", "a port between 1 and 65535; found 0");
        }
    }
}

fn check_status(ctx: &mut Ctx<'_>, s: &StatusSection) {
    if let Some(path) = &s.socket {
        let len = ctx.resolve(path).as_os_str().len();
        if path.as_os_str().is_empty() {
            ctx.problem("status.socket", "a unix socket path; found an empty string");
        } else if len > MAX_SOCKET_PATH_LEN {
            ctx.problem(
                "status.socket",
                format!("a unix socket path of at most {MAX_SOCKET_PATH_LEN} bytes; found {len}"),
            );
        }
    }
}

fn cross_check(ctx: &mut Ctx<'_>, earlier: &[NetworkConfig], net: &NetworkConfig) {
    for other in earlier {
        let other_file = other.file.display();
        if other.network == net.network || other.network_id == net.network_id {
            ctx.problem(
                "node.network",
                format!(
                    "a network not already configured; {other_file} is also a member of `{}`",
                    other.network
                ),
            );
        }
        if other.listen == net.listen {
            ctx.problem(
                "node.listen",
                format!(
                    "a listen address not used by another network; {other_file} also listens on {}",
                    net.listen
                ),
            );
        }
        if other.tun.mode == TunMode::Tun
            && net.tun.mode == TunMode::Tun
            && other.tun.name == net.tun.name
        {
            ctx.problem(
                "tun.name",
                format!(
                    "a device name not used by another network; {other_file} also uses `{}`",
                    net.tun.name
                ),
            );
        }
    }
}

fn read_secret_key(ctx: &mut Ctx<'_>, key: &str, path: &Path) -> Option<Zeroizing<String>> {
    match files::read_secret(path) {
        Ok(t) => Some(t),
        Err(e) => {
            ctx.problem(key, file_problem(&e));
            None
        }
    }
}

fn read_public(ctx: &mut Ctx<'_>, key: &str, path: &Path) -> Option<String> {
    match files::read_text(path) {
        Ok(t) => Some(t),
        Err(e) => {
            ctx.problem(key, file_problem(&e));
            None
        }
    }
}

fn validate_network(ctx: &mut Ctx<'_>, raw: &FileConfig, now: u64) -> Option<NetworkConfig> {
    let node = raw.node.as_ref()?;
    let tun = raw.tun.clone().unwrap_or_default();
    check_tun(ctx, &tun, node.listen.is_ipv4());
    if !privnet_core::identity::is_valid_name(&node.network) {
        ctx.problem(
            "node.network",
            "a network name: 1-64 letters, digits, '.', '_', '-', starting with a letter or digit",
        );
    }
    if node.listen.port() == 0 {
        ctx.problem("node.listen", "a port between 1 and 65535; found 0");
    }
    let paths = IdentityPaths {
        private_key: ctx.resolve(&node.private_key),
        certificate: ctx.resolve(&node.certificate),
        ca_certificates: node
            .ca_certificates
            .iter()
            .map(|p| ctx.resolve(p))
            .collect(),
        network_psk: ctx.resolve(&node.network_psk),
        revocation_list: node.revocation_list.as_ref().map(|p| ctx.resolve(p)),
    };
    let policy = node.policy.as_ref().map(|p| ctx.resolve(p));
    if let Some(policy) = &policy {
        read_public(ctx, "node.policy", policy);
    }

    // Private key.
    let keypair = read_secret_key(ctx, "node.private_key", &paths.private_key).and_then(|t| {
        NoiseKeyPair::from_pem(&t)
            .map_err(|e| {
                ctx.problem(
                    "node.private_key",
                    format!(
                        "a private key written by `privnet keygen`; {}: {e}",
                        paths.private_key.display()
                    ),
                )
            })
            .ok()
    });
    // PSK.
    let psk = read_secret_key(ctx, "node.network_psk", &paths.network_psk).and_then(|t| {
        let decoded = Zeroizing::new(STANDARD.decode(t.trim().as_bytes()).unwrap_or_default());
        match <[u8; 32]>::try_from(decoded.as_slice()) {
            Ok(k) => Some(Zeroizing::new(k)),
            Err(_) => {
                ctx.problem(
                    "node.network_psk",
                    format!(
                        "base64 of 32 bytes (the network.psk written by `privnet ca init`) in {}",
                        paths.network_psk.display()
                    ),
                );
                None
            }
        }
    });
    // Certificate.
    let certificate = read_public(ctx, "node.certificate", &paths.certificate).and_then(|t| {
        MemberCertificate::from_pem(&t)
            .map_err(|e| {
                ctx.problem(
                    "node.certificate",
                    format!(
                        "a member certificate written by `privnet cert issue`; {}: {e}",
                        paths.certificate.display()
                    ),
                )
            })
            .ok()
    });
    // CAs.
    if paths.ca_certificates.is_empty() {
        ctx.problem(
            "node.ca_certificates",
            "at least one CA certificate file (the ca.crt written by `privnet ca init`)",
        );
    }
    let mut cas = Vec::new();
    for (i, path) in paths.ca_certificates.iter().enumerate() {
        let key = format!("node.ca_certificates[{i}]");
        if let Some(t) = read_public(ctx, &key, path) {
            match CaCertificate::from_pem(&t) {
                Ok(ca) => cas.push(ca),
                Err(e) => ctx.problem(
                    key,
                    format!("a CA certificate (ca.crt); {}: {e}", path.display()),
                ),
            }
        }
    }
    let all_cas_loaded = cas.len() == paths.ca_certificates.len() && !cas.is_empty();
    // Revocation list.
    let revoked = match &paths.revocation_list {
        None => Some(RevocationList::new()),
        Some(path) => read_public(ctx, "node.revocation_list", path).and_then(|t| {
            RevocationList::parse(&t)
                .map_err(|e| {
                    ctx.problem(
                        "node.revocation_list",
                        format!(
                            "one fingerprint (64 hex digits) per line, `#` comments; {}: {e}",
                            path.display()
                        ),
                    )
                })
                .ok()
        }),
    };
    let trust = if all_cas_loaded {
        let fingerprints: Vec<_> = cas.iter().map(CaCertificate::fingerprint).collect();
        match TrustStore::new(cas) {
            Ok(t) => Some(t.with_revocations(revoked.clone().unwrap_or_default())),
            Err(TrustStoreError::MixedNetworks { fingerprint, .. }) => {
                let i = fingerprints
                    .iter()
                    .position(|f| *f == fingerprint)
                    .unwrap_or_default();
                ctx.problem(
                    format!("node.ca_certificates[{i}]"),
                    format!(
                        "CA certificates of one network only; CA {fingerprint} is for another network"
                    ),
                );
                None
            }
            Err(e) => {
                ctx.problem("node.ca_certificates", e.to_string());
                None
            }
        }
    } else {
        None
    };

    if let Some(trust) = &trust {
        let ca = &trust.cas()[0];
        if ca.name() != node.network {
            ctx.problem(
                "node.network",
                format!("`{}`, the network named in the CA certificate", ca.name()),
            );
        }
    }

    // Own certificate against key and CAs.
    if let (Some(cert), Some(kp)) = (&certificate, &keypair) {
        if cert.public_key() != kp.public() {
            ctx.problem(
                "node.private_key",
                format!(
                    "the private key for the public key in node.certificate ({}); this key's public key is {}",
                    STANDARD.encode(cert.public_key()),
                    STANDARD.encode(kp.public())
                ),
            );
        }
    }
    if let (Some(cert), Some(trust)) = (&certificate, &trust) {
        if let Err(e) = trust.verify_certificate(cert, None, now) {
            let key = match e {
                CertError::CaExpired { .. } | CertError::CaNotYetValid { .. } => {
                    "node.ca_certificates"
                }
                CertError::CaRevoked(_) | CertError::Revoked(_) => "node.certificate",
                _ => "node.certificate",
            };
            ctx.problem(
                key,
                format!(
                    "a certificate issued by one of node.ca_certificates, valid now and not revoked; {}: {e}",
                    paths.certificate.display()
                ),
            );
        }
    }

    let own_key = keypair.as_ref().map(NoiseKeyPair::public);
    let own_prefixes = certificate
        .as_ref()
        .map(MemberCertificate::overlay_prefixes)
        .unwrap_or_default();
    let peers = check_peers(ctx, &raw.peers, trust.as_ref(), own_key, &own_prefixes);

    let (Some(keypair), Some(certificate), Some(trust), Some(psk), Some(_)) =
        (keypair, certificate, trust, psk, revoked)
    else {
        return None;
    };
    Some(NetworkConfig {
        file: ctx.file.to_owned(),
        network: node.network.clone(),
        network_id: trust.network_id(),
        identity: NodeIdentity {
            keypair,
            certificate,
            trust,
            psk,
        },
        paths,
        listen: node.listen,
        cipher: node.cipher.into(),
        peers,
        tun,
        policy,
    })
}

/// `ipv4_underlay`: the node listens on IPv4 only, so the per-packet overhead is 60 bytes, not 80.
fn check_tun(ctx: &mut Ctx<'_>, tun: &TunSection, ipv4_underlay: bool) {
    let overhead = if ipv4_underlay {
        TUNNEL_OVERHEAD_V4
    } else {
        TUNNEL_OVERHEAD
    };
    let name_ok = !tun.name.is_empty()
        && tun.name.len() <= MAX_TUN_NAME_LEN
        && tun
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && tun.name != "."
        && tun.name != "..";
    if !name_ok {
        ctx.problem(
            "tun.name",
            format!(
                "an interface name of 1-{MAX_TUN_NAME_LEN} letters, digits, '-', '_', '.'; found {:?}",
                tun.name
            ),
        );
    }
    if !(MIN_MTU..=MAX_MTU).contains(&tun.mtu) {
        ctx.problem(
            "tun.mtu",
            format!("an MTU between {MIN_MTU} and {MAX_MTU}; found {}", tun.mtu),
        );
    }
    if !(MIN_MTU..=MAX_UNDERLAY_MTU).contains(&tun.underlay_mtu) {
        ctx.problem(
            "tun.underlay_mtu",
            format!(
                "an MTU between {MIN_MTU} and {MAX_UNDERLAY_MTU}; found {}",
                tun.underlay_mtu
            ),
        );
    } else if u32::from(tun.mtu) + u32::from(overhead) > u32::from(tun.underlay_mtu) {
        ctx.problem(
            "tun.mtu",
            format!(
                "at most underlay_mtu - {overhead} = {} (tunnel overhead on an IPv{} underlay); found {}",
                tun.underlay_mtu.saturating_sub(overhead),
                if ipv4_underlay { 4 } else { 6 },
                tun.mtu
            ),
        );
    }
    if tun.busy_poll_us > MAX_BUSY_POLL_US {
        ctx.problem(
            "tun.busy_poll_us",
            format!(
                "a busy-poll window of 0 (off) to {MAX_BUSY_POLL_US} microseconds; found {}",
                tun.busy_poll_us
            ),
        );
    }
    if tun.batch_hold_us > MAX_BATCH_HOLD_US {
        ctx.problem(
            "tun.batch_hold_us",
            format!(
                "a batch hold of 0 (off) to {MAX_BATCH_HOLD_US} microseconds; found {}",
                tun.batch_hold_us
            ),
        );
    }
}

/// Parse `host:port` (IPv6 hosts in brackets).
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

fn check_peers(
    ctx: &mut Ctx<'_>,
    raw: &[PeerSection],
    trust: Option<&TrustStore>,
    own_key: Option<[u8; 32]>,
    own_prefixes: &[IpNetwork],
) -> Vec<PeerConfig> {
    let mut out = Vec::new();
    let mut names = HashSet::new();
    let mut keys: BTreeMap<[u8; 32], usize> = BTreeMap::new();
    let mut taken: Vec<(IpNetwork, String)> = own_prefixes
        .iter()
        .map(|p| (*p, "this node's certificate".to_owned()))
        .collect();
    for (i, p) in raw.iter().enumerate() {
        let k = |f: &str| format!("peer[{i}].{f}");
        let mut ok = true;
        if !privnet_core::identity::is_valid_name(&p.name) {
            ctx.problem(
                k("name"),
                "a name of 1-64 letters, digits, '.', '_', '-', starting with a letter or digit",
            );
            ok = false;
        } else if !names.insert(p.name.clone()) {
            ctx.problem(
                k("name"),
                format!("a unique peer name; `{}` is used twice", p.name),
            );
            ok = false;
        }
        let key = STANDARD
            .decode(p.public_key.trim().as_bytes())
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok());
        let key = match key {
            None => {
                ctx.problem(
                    k("public_key"),
                    "base64 of a 32-byte X25519 public key (as printed by `privnet keygen`)",
                );
                ok = false;
                [0; 32]
            }
            Some(key) => {
                if Some(key) == own_key {
                    ctx.problem(k("public_key"), "a peer's key; this is this node's own key");
                    ok = false;
                } else if let Some(first) = keys.insert(key, i) {
                    ctx.problem(
                        k("public_key"),
                        format!("a key not used by another peer; peer[{first}] has the same key"),
                    );
                    ok = false;
                }
                key
            }
        };
        if p.addresses.is_empty() {
            ctx.problem(k("addresses"), "at least one overlay address of the peer");
            ok = false;
        }
        let mut addresses = Vec::new();
        for (j, a) in p.addresses.iter().enumerate() {
            let ak = format!("peer[{i}].addresses[{j}]");
            let net = match a.parse::<IpNetwork>() {
                Ok(n) if n.network() == n.ip() => n,
                Ok(_) => {
                    ctx.problem(
                        ak,
                        format!(
                            "a prefix without host bits (e.g. {}/{}); found {a}",
                            net_base(a),
                            prefix_of(a)
                        ),
                    );
                    ok = false;
                    continue;
                }
                Err(_) => {
                    ctx.problem(
                        ak,
                        format!(
                            "an IP address or prefix such as 10.77.0.3 or fd77::3; found {a:?}"
                        ),
                    );
                    ok = false;
                    continue;
                }
            };
            if let Some(ca) = trust.and_then(|t| t.cas().first()) {
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
                    ctx.problem(
                        ak.clone(),
                        format!(
                            "an address inside the network's prefixes or routes ({}); found {net}",
                            allowed.join(", ")
                        ),
                    );
                    ok = false;
                }
            }
            if let Some((_, owner)) = taken
                .iter()
                .find(|(t, _)| t.contains(net.network()) || net.contains(t.network()))
            {
                ctx.problem(
                    ak,
                    format!("an address not overlapping another peer or this node; {net} overlaps {owner}"),
                );
                ok = false;
            }
            taken.push((net, format!("peer[{i}] ({})", p.name)));
            addresses.push(net);
        }
        let endpoint = match p.endpoint.as_deref().map(parse_endpoint) {
            None => None,
            Some(Ok(e)) => Some(e),
            Some(Err(expected)) => {
                ctx.problem(
                    k("endpoint"),
                    format!(
                        "{expected}; found {:?}",
                        p.endpoint.as_deref().unwrap_or_default()
                    ),
                );
                ok = false;
                None
            }
        };
        let keepalive = match p.persistent_keepalive {
            None => None,
            Some(s) if (1..=MAX_KEEPALIVE_SECS).contains(&s) => {
                Some(Duration::from_secs(u64::from(s)))
            }
            Some(s) => {
                ctx.problem(
                    k("persistent_keepalive"),
                    format!("seconds between 1 and {MAX_KEEPALIVE_SECS} (leave the key out to disable); found {s}"),
                );
                ok = false;
                None
            }
        };
        if ok {
            out.push(PeerConfig {
                name: p.name.clone(),
                public_key: key,
                addresses,
                endpoint,
                persistent_keepalive: keepalive,
            });
        }
    }
    out
}

fn net_base(s: &str) -> String {
    s.parse::<IpNetwork>()
        .map(|n| n.network().to_string())
        .unwrap_or_default()
}

fn prefix_of(s: &str) -> u8 {
    s.parse::<IpNetwork>().map(|n| n.prefix()).unwrap_or(0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
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
    fn locate_finds_keys() {
        let text = "[node]\nnetwork = \"x\"\nlisten = \"1\"\n\n[[peer]]\nname = \"a\"\n[[peer]]\nname = \"b\"\nendpoint = \"e\"\n";
        assert_eq!(locate(text, "node.listen"), Some(3));
        assert_eq!(locate(text, "peer[1].endpoint"), Some(9));
        assert_eq!(locate(text, "peer[1]"), Some(7));
        assert_eq!(locate(text, "peer[0].endpoint"), None);
        assert_eq!(locate(text, "tun.mtu"), None);
    }

    #[test]
    fn parse_reports_syntax_error_with_line() {
        let (_, ps) = parse_str("[node]\nnetwork = \n", Path::new("x.toml"));
        assert_eq!(ps.len(), 1);
        assert_eq!(ps[0].line, Some(2));
    }
}
