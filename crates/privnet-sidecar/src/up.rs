//! `privnet up`: turn the validated configuration into one library driver per network
//! ([`privnet_core::io::Driver`] on a TUN device, or with `tun.mode = "userspace"` an embedded
//! node served by [`crate::userspace`]), serve the status socket and the metrics
//! endpoint from the drivers' snapshots, and handle signals: SIGTERM/SIGINT stop every driver,
//! SIGHUP reloads the configuration files and sends each driver a typed [`Reload`].
//!
//! Everything the driver needs from a [`NetworkConfig`] comes out of [`driver_config`] (the one
//! conversion from file configuration to [`DriverConfig`]) and [`node_config`].
//!
//! # Threads
//!
//! The drivers share one current-thread runtime (the "data thread"). Nothing else that can take
//! time runs there: the status socket and the metrics endpoint run on their own thread
//! ([`ServerThread`]); reading and validating the files of a reload, looking at the policy files
//! (every [`POLL_EVERY`]) and compiling a changed one, and resolving DNS names of peer endpoints
//! run on the runtime's blocking pool (`spawn_blocking`), and only the typed [`Reload`] messages
//! and compiled policies reach the drivers.
//!
//! # A network that dies
//!
//! Every driver task is watched. When one ends while `privnet up` is not shutting down (its
//! socket or TUN device failed, or it panicked), its network shows `running: false` on the status
//! socket (`privnet health` fails, `privnet_up` is 0), the error is logged, the other networks are
//! stopped and `privnet up` exits with status 1, so that the supervisor (Kubernetes, systemd,
//! podman) restarts the whole sidecar — a restart in place could not recreate a TUN device that
//! another process may meanwhile have taken, and a restarted container is what operators watch.
//!
//! # Reload
//!
//! See [`Supervisor::reload`]: what can change live is applied (the access policy, trust store and
//! revocation list, PSKs, peers, the latency windows, the log level); every other changed key is
//! logged at warn and listed in the status document (`restart_needed`) until a restart. A policy
//! file that changes on disk is applied without a SIGHUP ([`Supervisor::poll_policies`],
//! [`crate::policy_watch`]).

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context};
use ipnetwork::IpNetwork;
use privnet_core::crypto::StaticSecret;
use privnet_core::directory::{Layout, MemberRecord};
use privnet_core::identity::CertVerifier;
use privnet_core::identity::VerifiedBundle;
use privnet_core::io::directory::{DirectoryClient, DirectoryConfig};
use privnet_core::io::dns::{DnsConfig, DnsResponder};
use privnet_core::io::expose::Dialer;
use privnet_core::io::{
    ChannelInner, ControlError, DefaultRoute, Driver, DriverConfig, DriverHandle, Identity,
    InnerSide, Psks, Reload, TunOptions,
};
use privnet_core::policy::MemberRef;
use privnet_core::{CredentialVerifier, Node, NodeConfig};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use zeroize::Zeroizing;

use crate::config::{
    self, Config, DnsSettings, LogSection, MetricsSection, NetworkConfig, PeerConfig,
    PolicySettings, Problem, StatusSection, TunMode,
};
use crate::exposures::Exposures;
use crate::logging::LogControl;
use crate::policy_watch::{Found, Watch, POLL_EVERY};
use crate::server::ServerThread;
use crate::status::{
    DnsServed, PolicyShown, RestartNeeded, Served, SharedPolicy, Snapshots, StatusSocket,
};

/// How long a driver may take to stop after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

mod reload;

fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
}

/// `privnet up`: run every network of `config` until SIGTERM or SIGINT (then `Ok`), or until a
/// network's driver dies (then the error). `log` changes the log level on reload.
///
/// # Errors
/// A network that cannot start or that died, or a status socket or metrics endpoint that cannot
/// be bound.
pub fn up(
    config: Config,
    config_paths: Vec<PathBuf>,
    log: Option<LogControl>,
) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    rt.block_on(async move {
        let Config {
            networks,
            metrics,
            status,
            log: log_section,
        } = config;
        let mut sup = Supervisor::new(metrics, status, log_section, log);
        for net in networks {
            let (name, file) = (net.network.clone(), net.file.clone());
            let started = if net.tun.mode == TunMode::Userspace {
                sup.start_userspace(net).await
            } else {
                sup.start_tun(net).await
            };
            started.with_context(|| format!("starting network {name:?} ({})", file.display()))?;
        }
        run(sup, config_paths).await
    })
}

/// Bind the DNS responder of `net` (`[dns]`) on `d.listen` and run it on the names the driver
/// behind `handle` publishes.
///
/// # Errors
/// The address could not be bound (named with the file and the key).
async fn start_dns(
    net: &NetworkConfig,
    d: &DnsSettings,
    handle: &DriverHandle,
) -> anyhow::Result<(tokio::task::JoinHandle<()>, DnsServed)> {
    let cfg = DnsConfig {
        listen: d.listen,
        zone: d.zone.clone(),
    };
    let responder = DnsResponder::bind(cfg, handle.names())
        .await
        .with_context(|| {
            format!(
                "{}: dns.listen: binding the DNS responder on {} (UDP and TCP)",
                net.file.display(),
                d.listen
            )
        })?;
    let listen = responder.local_addr().unwrap_or(d.listen);
    let shown = DnsServed {
        listen,
        zone: d.zone.apex().to_ascii(),
        ttl_s: d.zone.ttl(),
        counters: responder.counters(),
    };
    tracing::info!(network = %net.network, %listen, zone = %shown.zone, ttl_s = shown.ttl_s,
        "dns: answering NAME.{} (A, AAAA) for the members this one knows", shown.zone);
    Ok((tokio::spawn(responder.run()), shown))
}

/// The driver configuration of one network: the underlay, the latency windows, our overlay
/// addresses (each with the prefix length of the smallest CA prefix holding it), the TUN device
/// with the CAs' gateway routes, and the configured peers' names.
pub fn driver_config(net: &NetworkConfig) -> DriverConfig {
    let cas = net.identity.trust.cas();
    let prefixes: Vec<IpNetwork> = cas
        .iter()
        .flat_map(|ca| ca.prefixes().iter().copied())
        .collect();
    let addresses = net
        .identity
        .certificate
        .addresses()
        .iter()
        .filter_map(|addr| {
            let plen = prefixes
                .iter()
                .filter(|p| p.contains(*addr))
                .map(|p| p.prefix())
                .min()
                .unwrap_or(if addr.is_ipv4() { 32 } else { 128 });
            IpNetwork::new(*addr, plen).ok()
        })
        .collect();
    let mut cfg = DriverConfig::new(net.network.clone(), net.listen);
    cfg.underlay_mtu = net.tun.underlay_mtu;
    cfg.busy_poll = net.tun.busy_poll;
    cfg.fairness = net.tun.fairness;
    cfg.workers = net.tun.workers;
    cfg.batch_hold = net.tun.batch_hold;
    cfg.addresses = addresses;
    cfg.peer_names = net
        .peers
        .iter()
        .map(|p| (p.public_key, p.name.clone()))
        .collect();
    cfg.tun = TunOptions {
        name: net.tun.name.clone(),
        mtu: net.tun.mtu,
        offload: net.tun.offload,
        // A CA's default route is no subnet route: it goes in only through `default_route`.
        routes: cas
            .iter()
            .flat_map(|ca| ca.routes().iter().copied())
            .filter(|r| r.prefix() > 0)
            .collect(),
        default_route: default_route(net),
    };
    cfg
}

/// The default route into the TUN device (docs/CONFIG.md, "Default route"): on for a family when
/// the policy at start has a `[[route]]` entry for that family's default route (`0.0.0.0/0`,
/// `::/0`) that applies to this member, and this member is not itself granted it (an exit
/// forwards to the outside; it does not send its own traffic into the tunnel).
pub fn default_route(net: &NetworkConfig) -> DefaultRoute {
    let me = MemberRef {
        name: net.identity.certificate.name().to_owned(),
        groups: net.identity.certificate.groups().to_vec(),
    };
    let own = net.identity.certificate.routes();
    let wanted = |v6: bool| {
        let asked =
            net.policy.as_ref().is_some_and(|p| {
                p.compiled.routes().entries().iter().any(|e| {
                    e.prefix.prefix() == 0 && e.prefix.is_ipv6() == v6 && e.applies_to(&me)
                })
            });
        let exit = own.iter().any(|r| r.prefix() == 0 && r.is_ipv6() == v6);
        asked && !exit
    };
    DefaultRoute {
        ipv4: wanted(false),
        ipv6: wanted(true),
        fwmark: net.tun.fwmark,
        table: net.tun.route_table,
    }
}

/// The network's overlay: every CA's prefixes and granted routes.
fn overlay(net: &NetworkConfig) -> Vec<IpNetwork> {
    net.identity
        .trust
        .cas()
        .iter()
        .flat_map(|ca| ca.prefixes().iter().chain(ca.routes()).copied())
        .collect()
}

/// The core's configuration of one network (its MTU and seed are set by
/// [`DriverConfig::new_node`]), and the certificate verifier it shares with the driver.
pub fn node_config(net: &NetworkConfig) -> (NodeConfig, Arc<CertVerifier>) {
    let verifier = Arc::new(CertVerifier::new(net.identity.trust.clone()));
    let dyn_verifier: Arc<dyn CredentialVerifier> = verifier.clone();
    let mut cfg = NodeConfig::new(
        StaticSecret::from_bytes(*net.identity.keypair.secret()),
        *net.identity.psk,
        net.network_id.0,
        dyn_verifier,
    );
    cfg.credential(net.identity.certificate.to_bytes());
    cfg.cipher = net.cipher;
    // PSKs accepted during a rotation (docs/CONFIG.md, "Rotating the network PSK").
    cfg.accepted_psks = net.identity.accepted_psks.iter().map(|k| **k).collect();
    // The network's overlay (every CA's prefixes and granted routes): an underlay endpoint in
    // there would route the tunnel through itself (docs/PROTOCOL.md §6).
    cfg.overlay_prefixes = overlay(net);
    // `node.policy`, compiled by the loader (docs/POLICY.md); without one members talk freely.
    cfg.policy = net.policy.as_ref().map(|p| p.compiled.clone());
    // `[conntrack]`: the tracker's size and per-peer quotas (docs/CONFIG.md).
    cfg.conntrack = net.conntrack;
    (cfg, verifier)
}

/// The core's view of configured peers, resolving DNS names of endpoints (a name that does not
/// resolve leaves the peer without an endpoint until it reaches us, with a warning). Blocking:
/// call it off the drivers' thread ([`resolve_peers`]).
fn resolve_blocking(
    network: &str,
    peers: &[PeerConfig],
) -> Vec<(privnet_core::PeerConfig, String)> {
    peers
        .iter()
        .map(|p| {
            let endpoint = p.endpoint.as_ref().and_then(|ep| {
                match (ep.host.as_str(), ep.port).to_socket_addrs() {
                    Ok(mut it) => it.next(),
                    Err(e) => {
                        tracing::warn!(network, peer = %p.name, "cannot resolve endpoint {ep}: {e}; waiting for the peer to reach us");
                        None
                    }
                }
            });
            let mut pc = privnet_core::PeerConfig::new(p.public_key);
            pc.endpoint = endpoint;
            pc.allowed_ips = p.addresses.clone();
            pc.persistent_keepalive = p.persistent_keepalive;
            (pc, p.name.clone())
        })
        .collect()
}

/// [`resolve_blocking`] on the blocking pool.
async fn resolve_peers(
    network: String,
    peers: Vec<PeerConfig>,
) -> anyhow::Result<Vec<(privnet_core::PeerConfig, String)>> {
    tokio::task::spawn_blocking(move || resolve_blocking(&network, &peers))
        .await
        .map_err(|e| anyhow!("resolving peer endpoints: {e}"))
}

/// The PSKs of a network as the node is given them: the primary first.
fn psks_of(net: &NetworkConfig) -> Vec<[u8; 32]> {
    std::iter::once(*net.identity.psk)
        .chain(net.identity.accepted_psks.iter().map(|k| **k))
        .collect()
}

/// What a network was started with that only a restart changes, for comparing reloads.
#[derive(Clone, Debug, PartialEq)]
struct Fixed {
    listen: SocketAddr,
    cipher: String,
    public_key: [u8; 32],
    certificate: String,
    mode: TunMode,
    tun_name: String,
    mtu: u16,
    underlay_mtu: u16,
    offload: bool,
    /// `[tun] fairness` and `[tun] workers`: the driver sets up its sockets and threads at start.
    fairness: bool,
    workers: usize,
    overlay: Vec<IpNetwork>,
    expose: String,
    default_route: DefaultRoute,
    /// `[dns]`: where it answers and its TTL ("off" without one).
    dns: String,
    /// `[conntrack]`: the tracker's size and quotas (the node builds its table at start).
    conntrack: String,
}

impl Fixed {
    fn of(net: &NetworkConfig) -> Self {
        let mut overlay = overlay(net);
        overlay.sort();
        overlay.dedup();
        Self {
            listen: net.listen,
            cipher: net.cipher.to_string(),
            public_key: net.identity.keypair.public(),
            certificate: net.identity.certificate.fingerprint().to_hex(),
            mode: net.tun.mode,
            tun_name: net.tun.name.clone(),
            mtu: net.tun.mtu,
            underlay_mtu: net.tun.underlay_mtu,
            offload: net.tun.offload,
            fairness: net.tun.fairness,
            workers: net.tun.workers,
            overlay,
            expose: crate::exposures::fixed(&net.exposures),
            default_route: default_route(net),
            dns: net.dns.as_ref().map_or_else(
                || "off".to_owned(),
                |d| format!("{} ttl {} s", d.listen, d.zone.ttl()),
            ),
            conntrack: {
                let c = &net.conntrack;
                format!(
                    "max_flows {}, max_flows_per_peer {}, new_flows_per_sec {}, new_flow_burst {}",
                    c.max_flows, c.max_flows_per_peer, c.new_flows_per_sec, c.new_flow_burst
                )
            },
        }
    }

    /// The keys whose values differ from `new`'s, each with the running and the new value.
    fn changed(&self, new: &Self) -> Vec<(&'static str, String, String)> {
        let mut out = Vec::new();
        let mut cmp = |key: &'static str, old: String, new: String| {
            if old != new {
                out.push((key, old, new));
            }
        };
        cmp(
            "node.listen",
            self.listen.to_string(),
            new.listen.to_string(),
        );
        cmp("node.cipher", self.cipher.clone(), new.cipher.clone());
        cmp("dns", self.dns.clone(), new.dns.clone());
        cmp("conntrack", self.conntrack.clone(), new.conntrack.clone());
        cmp(
            "node.private_key",
            b64(&self.public_key),
            b64(&new.public_key),
        );
        cmp(
            "node.certificate",
            self.certificate.clone(),
            new.certificate.clone(),
        );
        cmp(
            "node.ca_certificates",
            join(&self.overlay),
            join(&new.overlay),
        );
        cmp(
            "tun.mode",
            format!("{:?}", self.mode),
            format!("{:?}", new.mode),
        );
        cmp("tun.name", self.tun_name.clone(), new.tun_name.clone());
        cmp("tun.mtu", self.mtu.to_string(), new.mtu.to_string());
        cmp(
            "tun.underlay_mtu",
            self.underlay_mtu.to_string(),
            new.underlay_mtu.to_string(),
        );
        cmp(
            "tun.offload",
            self.offload.to_string(),
            new.offload.to_string(),
        );
        cmp(
            "tun.fairness",
            self.fairness.to_string(),
            new.fairness.to_string(),
        );
        cmp(
            "tun.workers",
            self.workers.to_string(),
            new.workers.to_string(),
        );
        cmp("expose", self.expose.clone(), new.expose.clone());
        let (old, new) = (self.default_route, new.default_route);
        cmp(
            "tun.fwmark",
            format!("{:#x}", old.fwmark),
            format!("{:#x}", new.fwmark),
        );
        cmp(
            "tun.route_table",
            old.table.to_string(),
            new.table.to_string(),
        );
        let families = |d: DefaultRoute| {
            match (d.ipv4, d.ipv6) {
                (false, false) => "none",
                (true, false) => "0.0.0.0/0",
                (false, true) => "::/0",
                (true, true) => "0.0.0.0/0, ::/0",
            }
            .to_owned()
        };
        cmp("policy.default_route", families(old), families(new));
        out
    }
}

fn hex(k: [u8; 32]) -> String {
    k.iter().map(|b| format!("{b:02x}")).collect()
}

fn b64(k: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(k)
}

fn join<T: ToString>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// One running network.
struct Network {
    name: String,
    handle: DriverHandle,
    /// What it started with (the keys only a restart changes).
    fixed: Fixed,
    /// Configured peers as last applied.
    peers: Vec<PeerConfig>,
    /// PSKs as last applied (the primary first).
    psks: Zeroizing<Vec<[u8; 32]>>,
    /// Keys waiting for a restart, shown on the status socket.
    restart_needed: RestartNeeded,
    /// The access policy in force and its file, as the file-change poll follows it.
    policy: Watch,
    /// The policy file and the last refused policy, shown on the status socket.
    policy_shown: SharedPolicy,
    /// Its exposures (`[[expose]]`).
    exposures: Exposures,
    /// The directory client (`[directory]`).
    directory: Option<DirectoryClient>,
    /// The DNS responder (`[dns]`, TUN mode): its task and what the status socket shows.
    dns: Option<(tokio::task::JoinHandle<()>, DnsServed)>,
}

/// How a reload went, per network: what was applied and what waits for a restart.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReloadReport {
    /// Per running network (by name): the changes applied live, in words.
    pub applied: HashMap<String, Vec<String>>,
    /// Per running network: the keys that changed and need a restart (process-wide keys are
    /// listed under every network).
    pub restart_needed: HashMap<String, Vec<String>>,
    /// Problems of the reload that were not applied (a refused peer or trust store), in words.
    pub refused: Vec<String>,
}

/// The networks of a running `privnet up`, their driver tasks, and what they started with.
pub struct Supervisor {
    networks: Vec<Network>,
    tasks: JoinSet<(usize, std::io::Result<()>)>,
    /// Which network each task runs (for a task that panicked).
    task_ids: HashMap<tokio::task::Id, usize>,
    metrics: MetricsSection,
    status: StatusSection,
    log: LogSection,
    log_control: Option<LogControl>,
    /// When each peer's DNS endpoint was last re-resolved (network index, key), to do it at
    /// most every [`RERESOLVE_EVERY`].
    resolved_at: HashMap<(usize, [u8; 32]), Instant>,
    /// Policy bundles from the networks' directories (network index, bundle).
    bundles: mpsc::Sender<(usize, VerifiedBundle)>,
    /// Their receiving end, until [`run`] takes it ([`Self::take_bundles`]).
    bundles_rx: Option<mpsc::Receiver<(usize, VerifiedBundle)>>,
}

/// How often `privnet up` looks for peers whose handshakes go unanswered, to re-resolve their
/// DNS endpoints.
pub const RERESOLVE_CHECK: Duration = Duration::from_secs(5);
/// The shortest time between two re-resolutions of one peer's endpoint.
pub const RERESOLVE_EVERY: Duration = Duration::from_secs(30);

/// The re-resolved peers whose endpoint differs from the one in use (`current`, as the snapshot
/// shows it); a name that no longer resolves keeps the old endpoint.
fn changed_endpoints(
    resolved: Vec<(privnet_core::PeerConfig, String)>,
    current: Vec<Option<String>>,
) -> Vec<(privnet_core::PeerConfig, String)> {
    resolved
        .into_iter()
        .zip(current)
        .filter(|((pc, _), old)| {
            pc.endpoint
                .is_some_and(|new| old.as_deref() != Some(new.to_string().as_str()))
        })
        .map(|(p, _)| p)
        .collect()
}

/// Whether `host` is a DNS name (not an IP address literal).
fn is_dns_name(host: &str) -> bool {
    host.parse::<std::net::IpAddr>().is_err()
}

impl Supervisor {
    /// No network yet; the process-wide sections as `privnet up` started with them.
    pub fn new(
        metrics: MetricsSection,
        status: StatusSection,
        log: LogSection,
        log_control: Option<LogControl>,
    ) -> Self {
        let (tx, rx) = mpsc::channel(8);
        Self {
            networks: Vec::new(),
            tasks: JoinSet::new(),
            task_ids: HashMap::new(),
            metrics,
            status,
            log,
            log_control,
            resolved_at: HashMap::new(),
            bundles: tx,
            bundles_rx: Some(rx),
        }
    }

    /// Start the directory client of network `index` if `net` has a `[directory]`: it registers
    /// this member and feeds the driver behind `handle` with the members it learns; its policy
    /// bundles come out of [`Self::next_bundle`].
    fn start_directory(
        &self,
        index: usize,
        net: &NetworkConfig,
        handle: &DriverHandle,
    ) -> Option<DirectoryClient> {
        let d = net.directory.as_ref()?;
        let mut record = MemberRecord::new(&net.identity.certificate, d.advertise.clone());
        record.capabilities.clone_from(&d.capabilities);
        let record = match record.to_bytes() {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(network = %net.network, "directory not started: this member's record: {e}");
                return None;
            }
        };
        let cfg = DirectoryConfig {
            endpoints: d.endpoints.clone(),
            layout: Layout::new(&d.prefix),
            name: net.identity.certificate.name().to_owned(),
            record,
            lease_ttl: d.lease_ttl,
            credentials: d.credentials.clone(),
            cache: d.cache.clone(),
            trust: net.identity.trust.clone(),
            own_key: net.identity.keypair.public(),
            reserved: net.peers.iter().map(|p| p.public_key).collect(),
        };
        tracing::info!(network = %net.network, endpoints = %d.endpoints.join(","), prefix = %d.prefix,
            lease_ttl_s = d.lease_ttl.as_secs(), "directory: starting");
        let (client, mut policies) = DirectoryClient::start(cfg, handle.clone());
        let tx = self.bundles.clone();
        tokio::spawn(async move {
            while let Some(b) = policies.recv().await {
                if tx.send((index, b)).await.is_err() {
                    break;
                }
            }
        });
        Some(client)
    }

    /// The policy bundles the directories accept (network index, bundle); `None` once taken.
    pub fn take_bundles(&mut self) -> Option<mpsc::Receiver<(usize, VerifiedBundle)>> {
        self.bundles_rx.take()
    }

    /// Compile a verified policy bundle of network `i` (on the blocking pool) and install it; a
    /// policy that does not compile is refused with its problems and the running one stays.
    pub async fn install_bundle(&mut self, i: usize, bundle: VerifiedBundle) {
        let Some(n) = self.networks.get(i) else {
            return;
        };
        let prefix = n
            .directory
            .as_ref()
            .map(|d| d.status().prefix.clone())
            .unwrap_or_default();
        let label = PathBuf::from(format!("etcd:{prefix}bundles/policy@v{}", bundle.version));
        let text = String::from_utf8_lossy(&bundle.payload).into_owned();
        let file = label.clone();
        let compiled =
            tokio::task::spawn_blocking(move || config::compile_policy_text(&file, &text)).await;
        let policy = match compiled {
            Ok(Ok(p)) => p,
            Ok(Err(problems)) => {
                let all: Vec<String> = problems.iter().map(ToString::to_string).collect();
                tracing::error!(network = %n.name, version = bundle.version,
                    "directory policy bundle does not compile, keeping the running policy: {}", all.join("; "));
                return;
            }
            Err(e) => {
                tracing::error!(network = %n.name, "directory policy bundle not compiled: {e}");
                return;
            }
        };
        let Some(n) = self.networks.get_mut(i) else {
            return;
        };
        match n.handle.set_policy(Some(policy.compiled.clone())).await {
            Ok(cut) => {
                let previous = n.policy.hash.map_or_else(|| "none".to_owned(), hex);
                n.policy.hash = Some(policy.compiled.hash());
                if let Ok(mut shown) = n.policy_shown.lock() {
                    shown.refused.clear();
                    shown.file = Some(label);
                }
                tracing::info!(target: "privnet::audit", event = "policy_applied", network = %n.name,
                    file = %policy.file.display(), hash = %policy.hash(), previous_hash = %previous,
                    rules = policy.rule_count(), flows_cut = cut, trigger = "directory",
                    version = bundle.version, signed_by = %bundle.signed_by,
                    "access policy applied (directory bundle v{}, signed by {}): {}; {cut} flow(s) cut",
                    bundle.version, bundle.signed_by, policy.describe());
            }
            Err(e) => tracing::error!(network = %n.name, "directory policy not installed: {e}"),
        }
    }

    /// Re-resolve the DNS endpoints of peers whose handshakes go unanswered (state `no answer`),
    /// on the blocking pool, never on the drivers' thread, at most every [`RERESOLVE_EVERY`] per
    /// peer; a peer whose name now resolves to another address is reconfigured with it (a new
    /// handshake starts at once). Returns how many peers got a new endpoint.
    pub async fn reresolve_unanswered(&mut self) -> usize {
        let now = Instant::now();
        let mut changed = 0;
        for i in 0..self.networks.len() {
            let (name, stuck) = {
                let n = &self.networks[i];
                let snap = n.handle.snapshot();
                let stuck: Vec<(PeerConfig, Option<String>)> = n
                    .peers
                    .iter()
                    .filter(|p| p.endpoint.as_ref().is_some_and(|e| is_dns_name(&e.host)))
                    .filter(|p| {
                        self.resolved_at
                            .get(&(i, p.public_key))
                            .is_none_or(|t| now.duration_since(*t) >= RERESOLVE_EVERY)
                    })
                    .filter_map(|p| {
                        let key = b64(&p.public_key);
                        let s = snap.peers.iter().find(|s| s.public_key == key)?;
                        (s.state == "no answer").then(|| (p.clone(), s.endpoint.clone()))
                    })
                    .collect();
                (n.name.clone(), stuck)
            };
            if stuck.is_empty() {
                continue;
            }
            for (p, _) in &stuck {
                self.resolved_at.insert((i, p.public_key), now);
            }
            let (peers, current): (Vec<PeerConfig>, Vec<Option<String>>) =
                stuck.into_iter().unzip();
            let Ok(resolved) = resolve_peers(name.clone(), peers).await else {
                continue;
            };
            let add_peers = changed_endpoints(resolved, current);
            for (pc, peer) in &add_peers {
                if let Some(new) = pc.endpoint {
                    tracing::info!(network = %name, peer = %peer, endpoint = %new,
                        "handshakes unanswered: the endpoint's name now resolves to {new}; trying it");
                }
            }
            if add_peers.is_empty() {
                continue;
            }
            changed += add_peers.len();
            let reload = Reload {
                add_peers,
                ..Reload::default()
            };
            if let Err(e) = self.networks[i].handle.reload(reload).await {
                tracing::warn!(network = %name, "re-resolved endpoint not applied: {e}");
            }
        }
        changed
    }

    /// Start `net` on a TUN device (needs `CAP_NET_ADMIN`).
    ///
    /// # Errors
    /// The node, the socket or the device could not be set up.
    pub async fn start_tun(&mut self, net: NetworkConfig) -> anyhow::Result<()> {
        let (node, driver_cfg, identity) = prepare(&net).await?;
        let driver = Driver::tun(node, driver_cfg, Some(identity)).await?;
        // After the TUN device: its default address is this member's overlay address.
        let dns = match &net.dns {
            Some(d) => Some(start_dns(&net, d, &driver.handle()).await?),
            None => None,
        };
        // TUN mode: targets are dialled with kernel sockets, routed into the TUN device.
        let exposures = Exposures::start(
            &net.network,
            &net.exposures,
            &Dialer::Kernel,
            Some(&driver.handle()),
        )
        .await?;
        self.spawn(net, driver, exposures);
        if let Some(n) = self.networks.last_mut() {
            n.dns = dns;
        }
        Ok(())
    }

    /// Start `net` with an in-memory inner side (tests, embedding) instead of a TUN device.
    ///
    /// # Errors
    /// The node or the socket could not be set up.
    pub async fn start_channel(
        &mut self,
        net: NetworkConfig,
        inner: ChannelInner,
    ) -> anyhow::Result<()> {
        let (node, driver_cfg, identity) = prepare(&net).await?;
        let driver = Driver::new(node, driver_cfg, Some(identity), inner).await?;
        let exposures = Exposures::start(
            &net.network,
            &net.exposures,
            &Dialer::Kernel,
            Some(&driver.handle()),
        )
        .await?;
        self.spawn(net, driver, exposures);
        Ok(())
    }

    /// Start `net` without a TUN device (`tun.mode = "userspace"`): the embedded stack, with the
    /// forwards, services and proxy of `[userspace]` ([`crate::userspace`]).
    ///
    /// # Errors
    /// The node, the socket or a local listener could not be set up.
    pub async fn start_userspace(&mut self, net: NetworkConfig) -> anyhow::Result<()> {
        let (node, driver_cfg, identity) = prepare(&net).await?;
        let (handle, task, dialer) =
            crate::userspace::start(node, driver_cfg, identity, &net.userspace).await?;
        // Userspace mode: targets are dialled through the embedded stack.
        let exposures =
            Exposures::start(&net.network, &net.exposures, &dialer, Some(&handle)).await?;
        self.watch(net, handle, exposures, async move {
            task.await.unwrap_or_else(|e| {
                Err(std::io::Error::other(format!(
                    "the embedded network's task ended: {e}"
                )))
            })
        });
        Ok(())
    }

    fn spawn<I: InnerSide + Send + 'static>(
        &mut self,
        net: NetworkConfig,
        driver: Driver<I>,
        exposures: Exposures,
    ) {
        let handle = driver.handle();
        self.watch(net, handle, exposures, driver.run());
    }

    /// Run `task` (a network's driver) in the supervised set.
    fn watch(
        &mut self,
        net: NetworkConfig,
        handle: DriverHandle,
        exposures: Exposures,
        task: impl std::future::Future<Output = std::io::Result<()>> + Send + 'static,
    ) {
        let index = self.networks.len();
        let task = self.tasks.spawn(async move { (index, task.await) });
        self.task_ids.insert(task.id(), index);
        let directory = self.start_directory(index, &net, &handle);
        self.networks.push(Network {
            directory,
            dns: None,
            name: net.network.clone(),
            handle,
            fixed: Fixed::of(&net),
            psks: Zeroizing::new(psks_of(&net)),
            policy: Watch::of(net.policy.as_ref()),
            policy_shown: Arc::new(Mutex::new(PolicyShown {
                file: net.policy.as_ref().map(|p| p.file.clone()),
                refused: Vec::new(),
            })),
            peers: net.peers,
            restart_needed: RestartNeeded::default(),
            exposures,
        });
    }

    /// The running networks' handles, in start order.
    pub fn handles(&self) -> Vec<DriverHandle> {
        self.networks.iter().map(|n| n.handle.clone()).collect()
    }

    /// What the status socket and the metrics endpoint serve.
    pub fn snapshots(&self) -> Snapshots {
        Snapshots::served(
            self.networks
                .iter()
                .map(|n| Served {
                    handle: n.handle.clone(),
                    restart_needed: n.restart_needed.clone(),
                    policy: n.policy_shown.clone(),
                    exposures: n.exposures.shown(),
                    directory: n.directory.as_ref().map(DirectoryClient::status_receiver),
                    dns: n.dns.as_ref().map(|(_, shown)| shown.clone()),
                })
                .collect(),
        )
    }

    /// Wait until a network's driver task ends; returns the network's name and how it ended.
    /// Pending forever when no network runs.
    pub async fn next_exit(&mut self) -> (String, anyhow::Result<()>) {
        loop {
            let Some(joined) = self.tasks.join_next().await else {
                std::future::pending::<()>().await;
                continue;
            };
            return match joined {
                Ok((i, result)) => (
                    self.name_of(i),
                    result.map_err(|e| anyhow!("its driver failed: {e}")),
                ),
                Err(e) => (
                    self.task_ids
                        .get(&e.id())
                        .map_or_else(|| "?".to_owned(), |i| self.name_of(*i)),
                    Err(anyhow!("its driver task panicked or was cancelled: {e}")),
                ),
            };
        }
    }

    fn name_of(&self, i: usize) -> String {
        self.networks
            .get(i)
            .map(|n| n.name.clone())
            .unwrap_or_else(|| "?".to_owned())
    }

    /// Stop every driver (each gets [`STOP_TIMEOUT`]) and wait for their tasks; first every
    /// directory client (its record is deleted at once).
    pub async fn shutdown(mut self) {
        for n in &mut self.networks {
            if let Some(d) = n.directory.take() {
                d.stop().await;
            }
            if let Some((task, _)) = n.dns.take() {
                task.abort();
            }
        }
        for n in &self.networks {
            // A driver that already stopped has nothing to stop.
            let _ = n.handle.shutdown().await;
        }
        let deadline = tokio::time::Instant::now() + STOP_TIMEOUT;
        while !self.tasks.is_empty() {
            match tokio::time::timeout_at(deadline, self.tasks.join_next()).await {
                Ok(Some(Ok((i, Ok(()))))) => tracing::debug!(network = %self.name_of(i), "stopped"),
                Ok(Some(Ok((i, Err(e))))) => {
                    tracing::error!(network = %self.name_of(i), "network task failed: {e:#}");
                }
                Ok(Some(Err(e))) => tracing::error!("network task panicked: {e}"),
                Ok(None) => break,
                Err(_) => {
                    tracing::warn!(
                        "network tasks did not stop within {} s",
                        STOP_TIMEOUT.as_secs()
                    );
                    self.tasks.abort_all();
                    break;
                }
            }
        }
    }
}

/// The node (with its configured peers, resolved off this thread), driver configuration and
/// identity of `net`.
async fn prepare(net: &NetworkConfig) -> anyhow::Result<(Node, DriverConfig, Identity)> {
    let driver_cfg = driver_config(net);
    let (node_cfg, verifier) = node_config(net);
    let mut node = driver_cfg.new_node(node_cfg)?;
    let now = Instant::now();
    for (pc, name) in resolve_peers(net.network.clone(), net.peers.clone()).await? {
        let endpoint = pc.endpoint;
        let addrs = join(&pc.allowed_ips);
        node.add_peer(pc, now)
            .map_err(|e| anyhow!("peer {name:?}: {e}"))?;
        tracing::info!(peer = %name, endpoint = ?endpoint, addresses = %addrs, "peer configured");
    }
    match &net.policy {
        Some(p) => tracing::info!(target: "privnet::audit", event = "policy_applied",
            network = %net.network, file = %p.file.display(), hash = %p.hash(),
            previous_hash = "none", rules = p.rule_count(), flows_cut = 0usize, trigger = "start",
            "access policy enforced: {}", p.describe()),
        None => tracing::info!(network = %net.network,
            "no access policy (node.policy is not set): members of the network talk freely"),
    }
    let identity = Identity {
        verifier,
        certificate: net.identity.certificate.clone(),
    };
    Ok((node, driver_cfg, identity))
}

/// Serve the status socket and the metrics endpoint (on their own thread) for the networks of
/// `sup`, and handle signals until SIGTERM/SIGINT (then `Ok`) or a network's death (then its
/// error, after stopping the others).
///
/// # Errors
/// The status socket or metrics endpoint could not be bound, or a network died.
pub async fn run(mut sup: Supervisor, config_paths: Vec<PathBuf>) -> anyhow::Result<()> {
    let servers = ServerThread::start()?;
    let snapshots = sup.snapshots();
    let status: Option<StatusSocket> = match &sup.status.socket {
        Some(path) => Some(crate::status::serve_status(
            path,
            snapshots.clone(),
            &servers,
        )?),
        // No `[status] socket`: the default one of the first network, so that `privnet status`
        // and `privnet health` work without configuring it. One that cannot be served (in use by
        // another sidecar of the same network name, or no writable directory) is a warning, not a
        // failed start.
        None => sup.networks.first().and_then(|n| {
            let path = crate::status::default_status_socket(&n.name);
            match crate::status::serve_status(&path, snapshots.clone(), &servers) {
                Ok(s) => {
                    tracing::info!(socket = %path.display(), "status socket {} (the default; `privnet status` finds it)", path.display());
                    Some(s)
                }
                Err(e) => {
                    tracing::warn!("no status socket: the default one cannot be served: {e:#}; set [status] socket to choose one");
                    None
                }
            }
        }),
    };
    if let Some(addr) = sup.metrics.listen {
        crate::metrics::serve_metrics(addr, snapshots.clone(), &servers)?;
    }

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let mut policy_poll = tokio::time::interval(POLL_EVERY);
    policy_poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut bundles = sup.take_bundles();
    let mut reresolve = tokio::time::interval(RERESOLVE_CHECK);
    reresolve.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let outcome = loop {
        tokio::select! {
            _ = policy_poll.tick() => {
                // Logged where it happens (applied at info, refused at error).
                let _ = sup.poll_policies().await;
                sup.poll_block_lists().await;
            }
            _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); break Ok(()); }
            _ = int.recv() => { tracing::info!("SIGINT: shutting down"); break Ok(()); }
            (name, result) = sup.next_exit() => {
                let e = result.err().unwrap_or_else(|| anyhow!("its driver stopped"));
                tracing::error!(network = %name,
                    "network {name:?} stopped unexpectedly: {e:#}; stopping privnet (exit status 1) so that it is restarted");
                // Let `privnet health` see the dead network while the others stop.
                break Err(anyhow!("network {name:?} stopped unexpectedly: {e:#}"));
            }
            _ = reresolve.tick() => { sup.reresolve_unanswered().await; }
            Some((i, bundle)) = next_bundle(&mut bundles) => { sup.install_bundle(i, bundle).await; }
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading the configuration");
                if let Some(c) = &sup.log_control {
                    c.reopen_audit();
                }
                match sup.reload(&config_paths).await {
                    Ok(report) => {
                        for (net, keys) in &report.restart_needed {
                            tracing::warn!(network = %net, keys = %keys.join(", "),
                                "reload: these keys changed and need a restart: {}", keys.join(", "));
                        }
                    }
                    Err(problems) => {
                        for p in problems {
                            tracing::error!("reload refused, keeping the running configuration: {p}");
                        }
                    }
                }
            }
        }
    };
    sup.shutdown().await;
    if let Some(socket) = status {
        socket.remove();
    }
    servers.stop();
    tracing::info!("stopped");
    outcome
}

/// The next policy bundle from the directories (pending forever without a receiver).
async fn next_bundle(
    rx: &mut Option<mpsc::Receiver<(usize, VerifiedBundle)>>,
) -> Option<(usize, VerifiedBundle)> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests;
