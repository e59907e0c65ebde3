//! `privnet up`: turn the validated configuration into one library driver per network
//! ([`privnet_core::io::Driver`] on a TUN device, or with `tun.mode = "userspace"` an embedded
//! node served by [`crate::userspace`]), serve the status socket and the metrics
//! endpoint from the drivers' snapshots, and handle signals: SIGTERM/SIGINT stop every driver,
//! SIGHUP reloads the configuration files and sends each driver a typed [`Reload`].
//!
//! Everything the driver needs from a [`NetworkConfig`] comes out of [`driver_config`] (the one
//! conversion from file configuration to [`DriverConfig`]) and [`node_config`]; DNS names of peer
//! endpoints are resolved here, once, at start.

use std::net::ToSocketAddrs;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context};
use ipnetwork::IpNetwork;
use privnet_core::crypto::{CipherSuite, StaticSecret};
use privnet_core::identity::CertVerifier;
use privnet_core::io::{
    ControlError, Driver, DriverConfig, DriverHandle, Identity, Reload, TunOptions,
};
use privnet_core::{CredentialVerifier, Node, NodeConfig, PeerConfig};
use tokio::task::JoinHandle;

use crate::config::{self, Config, NetworkConfig, TunMode};
use crate::status::Snapshots;

/// How long a driver may take to stop after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
}

/// `privnet up`: run every network of `config` until SIGTERM or SIGINT.
///
/// # Errors
/// A network that cannot start, or a status socket or metrics endpoint that cannot be bound.
pub fn up(config: Config, config_paths: Vec<PathBuf>) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    rt.block_on(run(config, config_paths))
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
        routes: cas
            .iter()
            .flat_map(|ca| ca.routes().iter().copied())
            .collect(),
    };
    cfg
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
    // The network's overlay (every CA's prefixes and granted routes): an underlay endpoint in
    // there would route the tunnel through itself (docs/PROTOCOL.md §6).
    cfg.overlay_prefixes = net
        .identity
        .trust
        .cas()
        .iter()
        .flat_map(|ca| ca.prefixes().iter().chain(ca.routes()).copied())
        .collect();
    (cfg, verifier)
}

/// Add the configured peers, resolving DNS names of endpoints now (a name that does not resolve
/// leaves the peer without an endpoint until it reaches us).
fn add_peers(node: &mut Node, net: &NetworkConfig) -> anyhow::Result<()> {
    let now = Instant::now();
    for p in &net.peers {
        let endpoint = match &p.endpoint {
            Some(ep) => match (ep.host.as_str(), ep.port).to_socket_addrs() {
                Ok(mut it) => it.next(),
                Err(e) => {
                    tracing::warn!(peer = %p.name, "cannot resolve endpoint {}:{}: {e}", ep.host, ep.port);
                    None
                }
            },
            None => None,
        };
        let mut pc = PeerConfig::new(p.public_key);
        pc.endpoint = endpoint;
        pc.allowed_ips = p.addresses.clone();
        pc.persistent_keepalive = p.persistent_keepalive;
        node.add_peer(pc, now)
            .map_err(|e| anyhow!("peer {:?}: {e}", p.name))?;
        let addrs: Vec<String> = p.addresses.iter().map(|a| a.to_string()).collect();
        tracing::info!(peer = %p.name, endpoint = ?endpoint, addresses = %addrs.join(" "), "peer configured");
    }
    Ok(())
}

/// One running network.
struct Network {
    name: String,
    /// The cipher it started with (a reload cannot change it).
    cipher: CipherSuite,
    handle: DriverHandle,
    task: JoinHandle<std::io::Result<()>>,
}

impl Network {
    async fn start(net: &NetworkConfig) -> anyhow::Result<Self> {
        let driver_cfg = driver_config(net);
        let (node_cfg, verifier) = node_config(net);
        let mut node = driver_cfg.new_node(node_cfg)?;
        add_peers(&mut node, net)?;
        let identity = Identity {
            verifier,
            certificate: net.identity.certificate.clone(),
        };
        if net.tun.mode == TunMode::Userspace {
            // No TUN: the embedded stack, with the forwards, services and proxy of [userspace].
            let (handle, task) =
                crate::userspace::start(node, driver_cfg, identity, &net.userspace).await?;
            return Ok(Self {
                name: net.network.clone(),
                cipher: net.cipher,
                handle,
                task,
            });
        }
        let driver = Driver::tun(node, driver_cfg, Some(identity)).await?;
        let handle = driver.handle();
        Ok(Self {
            name: net.network.clone(),
            cipher: net.cipher,
            handle,
            task: tokio::spawn(driver.run()),
        })
    }

    /// Send the reloaded configuration of this network to its driver.
    async fn reload(&self, cfg: &Config) {
        let Some(net) = cfg.networks.iter().find(|n| n.network == self.name) else {
            tracing::warn!(network = %self.name, "reload: network no longer configured; keeping it running");
            return;
        };
        let fresh = driver_config(net);
        if net.cipher != self.cipher {
            tracing::warn!(network = %self.name, running = %self.cipher, configured = %net.cipher,
                "reload: a new cipher takes effect only after a restart (every member of the network must change it); keeping the running one");
        }
        let reload = Reload {
            trust: Some(net.identity.trust.clone()),
            busy_poll: Some(fresh.busy_poll),
            batch_hold: Some(fresh.batch_hold),
        };
        match self.handle.reload(reload).await {
            // A refused trust store is logged by the driver.
            Ok(()) | Err(ControlError::TrustStore(_)) => {}
            Err(e) => tracing::error!(network = %self.name, "reload: {e}"),
        }
    }
}

async fn run(config: Config, config_paths: Vec<PathBuf>) -> anyhow::Result<()> {
    let mut networks = Vec::new();
    for net in &config.networks {
        let started = Network::start(net).await.with_context(|| {
            format!(
                "starting network {:?} ({})",
                net.network,
                net.file.display()
            )
        })?;
        networks.push(started);
    }
    let snapshots = Snapshots::new(networks.iter().map(|n| n.handle.clone()).collect());

    let status = match &config.status.socket {
        Some(path) => Some(crate::status::serve_status(
            path.clone(),
            snapshots.clone(),
        )?),
        None => None,
    };
    if let Some(addr) = config.metrics.listen {
        crate::metrics::serve_metrics(addr, snapshots.clone()).await?;
    }

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); break; }
            _ = int.recv() => { tracing::info!("SIGINT: shutting down"); break; }
            _ = hup.recv() => {
                match config::load(&config_paths, unix_now().as_secs()) {
                    Ok(new) => {
                        tracing::info!("SIGHUP: configuration reloaded (trust store, revocation list)");
                        for n in &networks {
                            n.reload(&new).await;
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
    }
    for n in &networks {
        // A driver that already stopped has nothing to stop.
        let _ = n.handle.shutdown().await;
    }
    for n in networks {
        match tokio::time::timeout(STOP_TIMEOUT, n.task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::error!("network task failed: {e:#}"),
            Ok(Err(e)) => tracing::error!("network task panicked: {e}"),
            Err(_) => tracing::warn!("network task did not stop within 5 s"),
        }
    }
    if let Some(path) = status {
        let _ = std::fs::remove_file(path);
    }
    tracing::info!("stopped");
    Ok(())
}
