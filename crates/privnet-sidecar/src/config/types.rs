//! The validated configuration the driver consumes, and [`Problem`], the one error type of the
//! loader.
//!
//! Invariant: a value of these types is only handed out by [`load`](crate::config::load) when no
//! problem was found in any file, so every range, name and file they hold has been checked. This
//! module is a leaf of `config/` (it imports only the schema), so that the parser, the validator
//! and the loader can all import it without importing each other.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ipnetwork::IpNetwork;
use privnet_core::crypto::CipherSuite;
use privnet_core::identity::{MemberCertificate, NetworkId, NoiseKeyPair, TrustStore};
use privnet_core::policy::{CompiledPolicy, Tier};
use zeroize::Zeroizing;

use super::expose::ExposeSettings;
use super::schema::{LogSection, MetricsSection, StatusSection, TunMode};
use super::userspace::UserspaceSettings;

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
    /// PSK files also accepted (during a PSK rotation).
    pub network_psk_accept: Vec<PathBuf>,
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
    /// Network pre-shared key (sent with).
    pub psk: Zeroizing<[u8; 32]>,
    /// PSKs also accepted during a PSK rotation (none equal to `psk`, no repeats).
    pub accepted_psks: Vec<Zeroizing<[u8; 32]>>,
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

/// The validated `[tun]` section: what the driver reads, at start and on reload. Built once by the
/// validator from the raw [`TunSection`](crate::config::TunSection); the durations are real
/// [`Duration`]s, already bounded (see `MAX_BUSY_POLL_US`, `MAX_BATCH_HOLD_US`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TunSettings {
    /// Kernel TUN device or userspace stack.
    pub mode: TunMode,
    /// Device name (mode `tun`): 1 to `MAX_TUN_NAME_LEN` letters, digits, `-`, `_`, `.`.
    pub name: String,
    /// Inner MTU (`MIN_MTU..=MAX_MTU`, and room for the tunnel overhead in `underlay_mtu`).
    pub mtu: u16,
    /// Underlay MTU (`MIN_MTU..=MAX_UNDERLAY_MTU`).
    pub underlay_mtu: u16,
    /// Use TUN segmentation/checksum offloads when the kernel offers them.
    pub offload: bool,
    /// Busy-poll window after a packet; zero disables busy polling.
    pub busy_poll: Duration,
    /// Longest wait for more packets when a dense send batch runs dry; zero disables the hold.
    pub batch_hold: Duration,
    /// Per-peer fairness before decryption (`[tun] fairness`).
    pub fairness: bool,
    /// Threads for the data path's crypto (`[tun] workers`, 1 to `MAX_WORKERS`).
    pub workers: usize,
    /// The underlay socket's mark while a default route is installed (`[tun] fwmark`, non-zero).
    pub fwmark: u32,
    /// The default route's routing table (`[tun] route_table`, not 0 or 253-255).
    pub route_table: u32,
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
    pub tun: TunSettings,
    /// `node.policy`, read and compiled (`None`: no policy, members talk freely).
    pub policy: Option<PolicySettings>,
    /// `[userspace]`: forwards, published services, SOCKS proxy (`tun.mode = "userspace"`).
    pub userspace: UserspaceSettings,
    /// `[[expose]]`: public addresses forwarded into the network, with their lists read.
    pub exposures: Vec<ExposeSettings>,
    /// `[directory]`, validated (`None`: static peers only).
    pub directory: Option<DirectorySettings>,
    /// `[dns]`, validated (`None`: no DNS responder).
    pub dns: Option<DnsSettings>,
    /// `[conntrack]`, validated (the core's defaults without the section).
    pub conntrack: privnet_core::policy::ConntrackConfig,
}

/// The validated `[dns]` section (TUN mode only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsSettings {
    /// Where it answers, UDP and TCP.
    pub listen: SocketAddr,
    /// The zone (the network's name) and the TTL of the answers.
    pub zone: privnet_core::io::dns::Zone,
}

/// The validated `[directory]` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectorySettings {
    /// etcd endpoints, each `http://HOST:PORT`.
    pub endpoints: Vec<String>,
    /// The network's key prefix (no trailing `/`).
    pub prefix: String,
    /// Lease TTL of this member's record.
    pub lease_ttl: Duration,
    /// Underlay endpoints published in this member's record.
    pub advertise: Vec<SocketAddr>,
    /// The on-disk cache file (resolved).
    pub cache: Option<PathBuf>,
    /// etcd user and password.
    pub credentials: Option<(String, Zeroizing<String>)>,
    /// Capabilities published in the record.
    pub capabilities: Vec<String>,
}

/// `node.policy`: the file and the policy compiled from it (docs/POLICY.md).
#[derive(Clone, Debug)]
pub struct PolicySettings {
    /// The resolved policy file.
    pub file: PathBuf,
    /// The compiled policy, shared with the node that enforces it.
    pub compiled: Arc<CompiledPolicy>,
}

impl PolicySettings {
    /// The policy's hash, lower-case hex.
    pub fn hash(&self) -> String {
        self.compiled.hash_hex()
    }

    /// Its number of rules, over all tiers.
    pub fn rule_count(&self) -> usize {
        self.compiled.rules().len()
    }

    /// One line for logs and `privnet check`: the file, its name, rules per tier, the default
    /// and the hash.
    pub fn describe(&self) -> String {
        let spec = self.compiled.spec();
        let count = |t: Tier| spec.tiers[t.index()].len();
        format!(
            "{}{}: {} rules (platform {}, application {}, baseline {}), default {}, hash {}",
            self.file.display(),
            spec.name
                .as_ref()
                .map_or(String::new(), |n| format!(" (policy `{n}`)")),
            self.rule_count(),
            count(Tier::Platform),
            count(Tier::Application),
            count(Tier::Baseline),
            spec.default.action().name(),
            self.hash()
        )
    }
}
