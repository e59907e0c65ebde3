//! The tokio driver around the sans-IO core: `privnet up`.
//!
//! One task per network owns its [`Node`], its UDP socket and its TUN device. On readiness it drains
//! a batch of packets without blocking (`try_recv`), hands each to the core, and writes what comes
//! out; control traffic from `poll_transmit` is drained after every batch, and a single timer is
//! re-armed from `poll_timeout`. This is the only place that reads the clock (`Instant::now`) and
//! the OS random number generator (the node's seed).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context};
use ipnetwork::IpNetwork;
use privnet_core::crypto::StaticSecret;
use privnet_core::icmp::{self, V4Error, V6Error};
use privnet_core::identity::{expiry_report, CertVerifier};
use privnet_core::node::{Event, PeerStatus};
use privnet_core::{
    CredentialVerifier, Decapsulated, DropReason, Encapsulated, Node, NodeConfig, PeerConfig,
};
use ring::rand::SecureRandom;
use tokio::net::UdpSocket;
use tokio::sync::watch;

use crate::config::{self, Config, NetworkConfig, TunMode};
use privnet_core::io::busypoll::BusyPoll;
use privnet_core::io::hold::{BatchHold, HoldEnd};
use privnet_core::io::sys::netlink::Netlink;
use privnet_core::io::sys::tun::{
    TunConfig, TunDevice, VirtioNetHdr, VIRTIO_NET_HDR_F_NEEDS_CSUM, VNET_HDR_LEN,
};
use privnet_core::io::sys::udp as udpx;
use privnet_core::io::turns::Turns;
use privnet_core::offload::{self, GsoType};
use std::os::fd::AsRawFd;

/// Packets drained per readiness event before the loop looks at its other inputs.
const BATCH: usize = 256;
/// IPv4 + UDP header bytes added by the underlay.
const UNDERLAY_V4_OVERHEAD: usize = 28;
/// IPv6 + UDP header bytes added by the underlay.
const UNDERLAY_V6_OVERHEAD: usize = 48;
/// Socket buffer size asked for (the kernel caps it unless we may force it).
const SOCKET_BUFFER: usize = 8 << 20;
/// Staging area for sealed datagrams awaiting a (GSO) send.
const STAGE_BYTES: usize = 1 << 20;
/// Free room the stage must have before reading another TUN super-packet (64 KiB of inner data
/// becomes at most ~47 datagrams of overhead-inflated size).
const STAGE_HEADROOM: usize = 80 * 1024;

/// Sealed datagrams waiting to be sent, contiguous in one buffer so that runs to one destination
/// with one size go out as a single `UDP_SEGMENT` send.
struct Stage {
    buf: Vec<u8>,
    used: usize,
    items: Vec<(usize, usize, SocketAddr)>,
}

impl Stage {
    fn new() -> Self {
        Self {
            buf: vec![0u8; STAGE_BYTES],
            used: 0,
            items: Vec::with_capacity(1024),
        }
    }
    fn room(&self) -> usize {
        self.buf.len() - self.used
    }
}

/// What the status socket and the metrics endpoint show, published by each network's loop.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct NetworkSnapshot {
    /// Network name.
    pub network: String,
    /// Our member name.
    pub member: String,
    /// Our Noise public key (base64).
    pub public_key: String,
    /// Underlay listen address.
    pub listen: String,
    /// The network's cipher suite.
    pub cipher: String,
    /// TUN device.
    pub device: String,
    /// Our overlay addresses.
    pub addresses: Vec<String>,
    /// Seconds since start.
    pub uptime_secs: u64,
    /// Node-wide counters.
    pub tx_packets: u64,
    /// Inner bytes sent.
    pub tx_bytes: u64,
    /// Packets received and delivered.
    pub rx_packets: u64,
    /// Inner bytes delivered.
    pub rx_bytes: u64,
    /// Handshakes initiated.
    pub handshakes_initiated: u64,
    /// Handshakes completed.
    pub handshakes_completed: u64,
    /// Cookie replies sent.
    pub cookies_sent: u64,
    /// Drops by reason (non-zero only).
    pub drops: Vec<(String, u64)>,
    /// Driver-level drops (I/O errors, ICMP generated...) and busy-poll counts.
    pub driver: HashMap<String, u64>,
    /// Microseconds spent busy polling.
    pub busy_poll_us: u64,
    /// Peers.
    pub peers: Vec<PeerSnapshot>,
    /// Certificate expiry notices (subject, seconds left).
    pub expiry: Vec<(String, i64)>,
}

/// One peer in a snapshot.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct PeerSnapshot {
    /// Name from its certificate (or the config).
    pub name: String,
    /// Noise public key (base64).
    pub public_key: String,
    /// Underlay endpoint.
    pub endpoint: Option<String>,
    /// Overlay prefixes.
    pub addresses: Vec<String>,
    /// Seconds since the last completed handshake.
    pub last_handshake_secs_ago: Option<u64>,
    /// Whether a session is up.
    pub established: bool,
    /// Inner bytes received.
    pub rx_bytes: u64,
    /// Inner bytes sent.
    pub tx_bytes: u64,
    /// Packets received.
    pub rx_packets: u64,
    /// Packets sent.
    pub tx_packets: u64,
    /// Handshakes completed with it.
    pub handshakes: u64,
    /// Packets from it dropped for a spoofed inner source.
    pub spoofed: u64,
}

/// Snapshots of every network, shared with the status and metrics servers.
pub type Snapshots = Arc<Mutex<Vec<NetworkSnapshot>>>;

fn b64(k: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(k)
}

fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
}

/// `privnet up`: run every network of `config` until SIGTERM or SIGINT.
pub fn up(config: Config, config_paths: Vec<PathBuf>) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    rt.block_on(run(config, config_paths))
}

async fn run(config: Config, config_paths: Vec<PathBuf>) -> anyhow::Result<()> {
    let snapshots: Snapshots = Arc::default();
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (reload_tx, _) = tokio::sync::broadcast::channel::<Arc<Config>>(4);

    let mut tasks = Vec::new();
    for (i, net) in config.networks.iter().enumerate() {
        if net.tun.mode == TunMode::Userspace {
            bail!(
                "{}: tun.mode = \"userspace\" is not supported by `privnet up` yet; use mode = \"tun\"",
                net.file.display()
            );
        }
        if let Ok(mut s) = snapshots.lock() {
            s.push(NetworkSnapshot::default());
        }
        let driver = NetworkDriver::start(net, i, snapshots.clone())
            .await
            .with_context(|| {
                format!(
                    "starting network {:?} ({})",
                    net.network,
                    net.file.display()
                )
            })?;
        let rx = shutdown_rx.clone();
        let reload = reload_tx.subscribe();
        tasks.push(tokio::spawn(driver.run(rx, reload)));
    }

    let status = match &config.status.socket {
        Some(path) => Some(crate::control::serve_status(
            path.clone(),
            snapshots.clone(),
        )?),
        None => None,
    };
    if let Some(addr) = config.metrics.listen {
        crate::control::serve_metrics(addr, snapshots.clone()).await?;
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
                        let _ = reload_tx.send(Arc::new(new));
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
    let _ = shutdown_tx.send(true);
    for t in tasks {
        match tokio::time::timeout(Duration::from_secs(5), t).await {
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

#[derive(Default)]
struct DriverCounters {
    counts: HashMap<&'static str, u64>,
}

impl DriverCounters {
    fn bump(&mut self, what: &'static str) {
        *self.counts.entry(what).or_insert(0) += 1;
    }
}

struct NetworkDriver {
    index: usize,
    name: String,
    member: String,
    node: Node,
    udp: UdpSocket,
    tun: TunDevice,
    verifier: Arc<CertVerifier>,
    snapshots: Snapshots,
    started: Instant,
    our_v4: Option<std::net::Ipv4Addr>,
    our_v6: Option<std::net::Ipv6Addr>,
    addresses: Vec<String>,
    listen: SocketAddr,
    path_mtu: usize,
    counters: DriverCounters,
    peer_names: HashMap<[u8; 32], String>,
    own_cert: privnet_core::identity::MemberCertificate,
    stage: Stage,
    /// The kernel takes `UDP_SEGMENT` sends on our socket.
    gso: bool,
    /// The TUN carries virtio-net headers (offloads on).
    vnet: bool,
    scratch: Vec<u8>,
    coalescer: offload::Coalescer,
    /// When each certificate's expiry was last warned about.
    expiry_warned: HashMap<String, Instant>,
    /// Busy polling after activity.
    busy: BusyPoll,
    /// Holding dense send batches (see hold.rs).
    hold: BatchHold,
}

impl NetworkDriver {
    async fn start(
        net: &NetworkConfig,
        index: usize,
        snapshots: Snapshots,
    ) -> anyhow::Result<Self> {
        let now = Instant::now();
        let unix = unix_now();
        let verifier = Arc::new(CertVerifier::new(net.identity.trust.clone()));
        let dyn_verifier: Arc<dyn CredentialVerifier> = verifier.clone();

        let overhead = if net.listen.is_ipv6() {
            UNDERLAY_V6_OVERHEAD
        } else {
            UNDERLAY_V4_OVERHEAD
        };
        let path_mtu = usize::from(net.tun.underlay_mtu)
            .saturating_sub(overhead + Node::OVERHEAD)
            .max(576);

        let mut seed = [0u8; 32];
        ring::rand::SystemRandom::new()
            .fill(&mut seed)
            .map_err(|_| anyhow!("the OS random number generator failed"))?;
        let cert = &net.identity.certificate;
        let mut cfg = NodeConfig::new(
            StaticSecret::from_bytes(*net.identity.keypair.secret()),
            *net.identity.psk,
            net.network_id.0,
            dyn_verifier,
        );
        cfg.credential(cert.to_bytes()).rng_seed(seed);
        cfg.mtu = path_mtu;
        cfg.cipher = net.cipher;
        let mut node = Node::new(cfg, now, unix).map_err(|e| anyhow!("node: {e}"))?;

        // Underlay socket.
        let std_sock = std::net::UdpSocket::bind(net.listen)
            .with_context(|| format!("binding the underlay socket {}", net.listen))?;
        std_sock.set_nonblocking(true)?;
        privnet_core::io::sys::set_socket_buffers(&std_sock, SOCKET_BUFFER);
        let gso = udpx::gso_supported(std_sock.as_raw_fd());
        let gro = udpx::enable_gro(std_sock.as_raw_fd());
        let udp = UdpSocket::from_std(std_sock)?;
        let listen = udp.local_addr()?;

        // TUN device, address, MTU, routes.
        // Offloads (TSO/USO and checksum) through virtio-net headers when the kernel has them; plain
        // packets otherwise.
        let tun = TunDevice::create(&TunConfig {
            name: net.tun.name.clone(),
            mtu: Some(u32::from(net.tun.mtu)),
            vnet_hdr: net.tun.offload,
            multi_queue: false,
        })
        .or_else(|e| {
            if !net.tun.offload {
                return Err(e);
            }
            tracing::warn!("TUN offloads unavailable ({e}); using plain packets");
            TunDevice::create(&TunConfig {
                name: net.tun.name.clone(),
                mtu: Some(u32::from(net.tun.mtu)),
                vnet_hdr: false,
                multi_queue: false,
            })
        })
        .with_context(|| format!("creating TUN device {:?}", net.tun.name))?;
        let vnet = tun.vnet_hdr();
        let mut coalescer = offload::Coalescer::new();
        coalescer.set_merge_udp(vnet && tun.offloads().uso);
        let mut nl = Netlink::new().context("opening rtnetlink")?;
        let ifindex = tun.ifindex();
        let prefixes: Vec<IpNetwork> = net
            .identity
            .trust
            .cas()
            .iter()
            .flat_map(|ca| ca.prefixes().iter().copied())
            .collect();
        let mut our_v4 = None;
        let mut our_v6 = None;
        let mut addresses = Vec::new();
        for addr in cert.addresses() {
            let plen = prefixes
                .iter()
                .filter(|p| p.contains(*addr))
                .map(|p| p.prefix())
                .min()
                .unwrap_or(if addr.is_ipv4() { 32 } else { 128 });
            nl.add_address(ifindex, *addr, plen)
                .with_context(|| format!("adding {addr}/{plen} to {}", net.tun.name))?;
            match addr {
                IpAddr::V4(a) => our_v4 = our_v4.or(Some(*a)),
                IpAddr::V6(a) => our_v6 = our_v6.or(Some(*a)),
            }
            addresses.push(format!("{addr}/{plen}"));
        }
        nl.link_set_up(ifindex)
            .with_context(|| format!("bringing {} up", net.tun.name))?;
        // Subnet routes gateways may serve (the CA's route subnets) also go into the TUN.
        let mut routes: Vec<IpNetwork> = net
            .identity
            .trust
            .cas()
            .iter()
            .flat_map(|ca| ca.routes().iter().copied())
            .collect();
        routes.sort();
        routes.dedup();
        for r in routes {
            if let Err(e) = nl.add_route(ifindex, r.network(), r.prefix()) {
                tracing::warn!("route {r} via {}: {e}", net.tun.name);
            }
        }
        if let Some(v6) = our_v6 {
            let _ = nl.wait_local(IpAddr::V6(v6), Duration::from_secs(2));
        }

        // Peers.
        let mut peer_names = HashMap::new();
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
            peer_names.insert(p.public_key, p.name.clone());
            let addrs: Vec<String> = p.addresses.iter().map(|a| a.to_string()).collect();
            tracing::info!(peer = %p.name, endpoint = ?endpoint, addresses = %addrs.join(" "), "peer configured");
        }
        tracing::info!(
            network = %net.network,
            member = %cert.name(),
            public_key = %b64(&net.identity.keypair.public()),
            listen = %listen,
            device = %net.tun.name,
            addresses = ?addresses,
            mtu = net.tun.mtu,
            path_mtu,
            tun_offload = vnet,
            tun_uso = vnet && tun.offloads().uso,
            udp_gso = gso,
            udp_gro = gro,
            "privnet up"
        );
        Ok(Self {
            index,
            name: net.network.clone(),
            member: cert.name().to_owned(),
            node,
            udp,
            tun,
            verifier,
            snapshots,
            started: now,
            our_v4,
            our_v6,
            addresses,
            listen,
            path_mtu,
            counters: DriverCounters::default(),
            peer_names,
            own_cert: cert.clone(),
            stage: Stage::new(),
            gso,
            vnet,
            scratch: vec![0u8; 65_536],
            coalescer,
            expiry_warned: HashMap::new(),
            busy: BusyPoll::new(Duration::from_micros(u64::from(net.tun.busy_poll_us))),
            hold: BatchHold::new(Duration::from_micros(u64::from(net.tun.batch_hold_us))),
        })
    }

    async fn run(
        mut self,
        mut shutdown: watch::Receiver<bool>,
        mut reload: tokio::sync::broadcast::Receiver<Arc<Config>>,
    ) -> anyhow::Result<()> {
        let mut in_buf = vec![0u8; 65_536 + VNET_HDR_LEN];
        let mut out_buf = vec![0u8; 65_536 + 64 + VNET_HDR_LEN];
        let mut ctl_buf = vec![0u8; 2048];
        let mut snapshot_tick = tokio::time::interval(Duration::from_secs(1));
        snapshot_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.flush_control(&mut ctl_buf, Instant::now()).await;
        // One timer, re-armed only when the core's next deadline changes (re-creating it on every
        // wake-up would re-register it with the runtime's timer wheel each time).
        let far = || tokio::time::Instant::now() + Duration::from_secs(86_400);
        let timer = tokio::time::sleep_until(far());
        tokio::pin!(timer);
        let mut armed: Option<Instant> = None;
        let mut turns = Turns::new();
        loop {
            let spinning = self.busy.spinning(Instant::now());
            let deadline = self.node.poll_timeout();
            if deadline != armed {
                timer
                    .as_mut()
                    .reset(deadline.map_or_else(far, tokio::time::Instant::from_std));
                armed = deadline;
            }
            tokio::select! {
                biased;
                _ = shutdown.changed() => break,
                r = self.udp.readable(), if turns.udp_allowed() => {
                    r?;
                    self.busy.woke(Instant::now());
                    let (n, full) = self.drain_udp(&mut in_buf, &mut out_buf);
                    self.busy.handled(Instant::now(), n);
                    if full {
                        self.counters.bump("udp_batch_full");
                    }
                    turns.after_udp(full);
                }
                r = self.tun.readable(), if turns.tun_allowed() => {
                    r?;
                    self.busy.woke(Instant::now());
                    let (n, full) = self.drain_tun(&mut in_buf).await;
                    self.busy.handled(Instant::now(), n);
                    if full {
                        self.counters.bump("tun_batch_full");
                    }
                    turns.after_tun(full);
                }
                _ = timer.as_mut(), if armed.is_some() => {
                    armed = None;
                    self.node.handle_timeout(Instant::now());
                    turns.after_service();
                }
                _ = snapshot_tick.tick() => {
                    self.publish();
                    turns.after_service();
                }
                Ok(cfg) = reload.recv() => {
                    self.reload(&cfg);
                    turns.after_service();
                }
                // A service pass after a full batch (see turns.rs) found nothing else ready.
                () = std::future::ready(()), if turns.serving() => turns.served(),
                // Busy polling (see busypoll.rs): nothing was ready, but a packet was handled a
                // moment ago. Let the runtime poll the kernel without sleeping (`yield_now` makes
                // it look with a zero timeout) and let any other runnable thread on this CPU go
                // first, then look again.
                _ = tokio::task::yield_now(), if spinning => {
                    std::thread::yield_now();
                    continue;
                }
            }
            self.flush_control(&mut ctl_buf, Instant::now()).await;
            self.drain_events();
        }
        self.publish();
        tracing::info!(network = %self.name, "network stopped; TUN device closed");
        Ok(())
    }

    /// Receive and handle up to [`BATCH`] receive calls; returns the datagrams read and whether
    /// the batch was full (the socket did not run dry).
    fn drain_udp(&mut self, in_buf: &mut [u8], out_buf: &mut [u8]) -> (usize, bool) {
        let fd = self.udp.as_raw_fd();
        let mut read = 0;
        let mut full = true;
        for _ in 0..BATCH {
            let (n, from, seg) = match self.udp.try_io(tokio::io::Interest::READABLE, || {
                udpx::recv_segments(fd, in_buf)
            }) {
                Ok(x) => x,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    full = false;
                    break;
                }
                Err(e) => {
                    tracing::debug!("udp recv: {e}");
                    self.counters.bump("udp_recv_error");
                    full = false;
                    break;
                }
            };
            let now = Instant::now();
            for dgram in in_buf[..n].chunks(seg.max(1)) {
                read += 1;
                match self.node.decapsulate(from, dgram, out_buf, now) {
                    Ok(Decapsulated::Packet { len, .. }) => self.deliver(&out_buf[..len]),
                    Ok(Decapsulated::Keepalive | Decapsulated::Control) => {}
                    Err(_) => {} // counted by the node
                }
            }
            // What one receive call brought (up to a GRO train of segments, merged where they are
            // one flow) is written to the TUN before the next receive: waiting for a receive that
            // may only say "nothing more" would add latency and nothing else.
            self.finish_coalescing();
        }
        (read, full)
    }

    /// Hand a decrypted inner packet to the TUN: at once without offloads, else through the
    /// coalescer, which writes merged super-packets (or the packet itself) straight from its
    /// buffer, behind a virtio-net header, with one `writev` each.
    fn deliver(&mut self, pkt: &[u8]) {
        if !self.vnet {
            write_tun_now(&self.tun, &mut self.counters, &[], pkt);
            return;
        }
        let (tun, counters) = (&self.tun, &mut self.counters);
        self.coalescer
            .push(pkt, |p, info| write_coalesced(tun, counters, p, info));
    }

    fn finish_coalescing(&mut self) {
        let (tun, counters) = (&self.tun, &mut self.counters);
        self.coalescer
            .finish(&mut |p: &[u8], info| write_coalesced(tun, counters, p, info));
    }

    /// Read and seal up to [`BATCH`] TUN packets; returns the packets read and whether the batch
    /// was full (the TUN did not run dry).
    async fn drain_tun(&mut self, in_buf: &mut [u8]) -> (usize, bool) {
        // One clock reading per batch (a batch takes well under a millisecond; the core's timers
        // work in milliseconds), taken again after each send, which may have waited.
        let mut now = Instant::now();
        let mut read = 0;
        let mut full = true;
        let mut holds = 0;
        for i in 0..BATCH {
            // The first packet after a wake-up goes out before the next read: a lone packet (a
            // ping, a request) must not wait for the read that only says "nothing more". The rest
            // of a burst is batched into `UDP_SEGMENT` sends.
            if i == 1 || self.stage.room() < STAGE_HEADROOM {
                self.flush_stage().await;
                now = Instant::now();
            }
            let n = match self.tun.try_recv(in_buf) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    // A dense batch may wait a moment for more (see hold.rs).
                    match self.hold_batch(in_buf, read, holds) {
                        Some(n) => {
                            holds += 1;
                            now = Instant::now();
                            n
                        }
                        None => {
                            full = false;
                            break;
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!("tun recv: {e}");
                    self.counters.bump("tun_recv_error");
                    full = false;
                    break;
                }
            };
            read += 1;
            if !self.vnet {
                self.seal_one(&in_buf[..n], now);
                continue;
            }
            let Some(h) = VirtioNetHdr::decode(&in_buf[..n]) else {
                self.counters.bump("tun_short_read");
                continue;
            };
            let pkt = &mut in_buf[VNET_HDR_LEN..n];
            match GsoType::from_virtio(h.gso_type) {
                Some(GsoType::None) => {
                    if h.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM != 0
                        && offload::complete_checksum(
                            pkt,
                            usize::from(h.csum_start),
                            usize::from(h.csum_offset),
                        )
                        .is_err()
                    {
                        self.counters.bump("tun_bad_checksum_offset");
                        continue;
                    }
                    self.seal_one(pkt, now);
                }
                Some(kind) => {
                    let mut scratch = std::mem::take(&mut self.scratch);
                    // Segments of one super-packet share their fate: only the first refused one
                    // is answered.
                    let mut answered = false;
                    let r =
                        offload::segment(pkt, kind, usize::from(h.gso_size), &mut scratch, |seg| {
                            if let Err(e) = self.seal_staged(seg, now) {
                                if !answered {
                                    answered = true;
                                    self.refused(e, seg);
                                }
                            }
                        });
                    self.scratch = scratch;
                    if r.is_err() {
                        self.counters.bump("tun_bad_gso_packet");
                    }
                }
                None => self.counters.bump("tun_unknown_gso_type"),
            }
        }
        self.flush_stage().await;
        (read, full)
    }

    /// The TUN ran dry after `read` packets of a batch held `holds` times: if the batch hold
    /// allows (see hold.rs), wait up to its window for the TUN or the socket. Returns the length of
    /// a packet that came on the TUN meanwhile, or `None` (send the batch).
    fn hold_batch(&mut self, in_buf: &mut [u8], read: usize, holds: u32) -> Option<usize> {
        let window = self.hold.begin(read, holds, !self.stage.items.is_empty())?;
        let start = Instant::now();
        let ready = match privnet_core::io::sys::poll_in(
            self.tun.as_raw_fd(),
            self.udp.as_raw_fd(),
            window,
        ) {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!("batch hold poll: {e}");
                self.counters.bump("batch_hold_poll_error");
                self.hold.end(start.elapsed(), HoldEnd::Miss);
                return None;
            }
        };
        if ready.second {
            self.hold.end(start.elapsed(), HoldEnd::Socket);
            return None;
        }
        if !ready.first {
            self.hold.end(start.elapsed(), HoldEnd::Miss);
            return None;
        }
        // Straight to the kernel: tokio's readiness cache says "not readable" until the reactor
        // runs again.
        let got = match self.tun.recv_now(in_buf) {
            Ok(n) => Some(n),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => None,
            Err(e) => {
                tracing::debug!("tun recv: {e}");
                self.counters.bump("tun_recv_error");
                None
            }
        };
        let how = if got.is_some() {
            HoldEnd::Hit
        } else {
            HoldEnd::Miss
        };
        self.hold.end(start.elapsed(), how);
        got
    }

    /// Seal one inner packet into the stage (no I/O).
    fn seal_staged(&mut self, pkt: &[u8], now: Instant) -> Result<(), DropReason> {
        let at = self.stage.used;
        match self.node.encapsulate(pkt, &mut self.stage.buf[at..], now) {
            Ok(Encapsulated::Send(t)) => {
                self.stage.items.push((at, t.len, t.dst));
                self.stage.used += t.len;
                Ok(())
            }
            Ok(Encapsulated::Queued) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Seal one inner packet into the stage; a refused one is answered with ICMP where that helps.
    fn seal_one(&mut self, pkt: &[u8], now: Instant) {
        if let Err(e) = self.seal_staged(pkt, now) {
            self.refused(e, pkt);
        }
    }

    /// An inner packet the core refused: answer with ICMP where that helps the sender.
    fn refused(&mut self, e: DropReason, pkt: &[u8]) {
        match e {
            DropReason::NoRoute => self.icmp_reply(pkt, IcmpKind::Unreachable),
            DropReason::TooBig => self.icmp_reply(pkt, IcmpKind::TooBig),
            _ => {}
        }
    }

    /// Send everything staged: runs of datagrams to one destination with one size (the last of a
    /// run may be shorter) go out as one `UDP_SEGMENT` send.
    async fn flush_stage(&mut self) {
        let items = std::mem::take(&mut self.stage.items);
        let buf = std::mem::take(&mut self.stage.buf);
        let mut i = 0;
        while i < items.len() {
            let (start, size, dst) = items[i];
            let mut j = i + 1;
            let mut total = size;
            if self.gso {
                while j < items.len()
                    && j - i < udpx::MAX_GSO_SEGMENTS
                    && items[j].2 == dst
                    && items[j].1 <= size
                    && total + items[j].1 <= udpx::MAX_GSO_BYTES
                {
                    total += items[j].1;
                    let last = items[j].1 < size;
                    j += 1;
                    if last {
                        break;
                    }
                }
            }
            self.send_run(&buf[start..start + total], size, dst).await;
            i = j;
        }
        self.stage.buf = buf;
        self.stage.items = items;
        self.stage.items.clear();
        self.stage.used = 0;
    }

    async fn send_run(&mut self, bytes: &[u8], segment: usize, dst: SocketAddr) {
        let fd = self.udp.as_raw_fd();
        loop {
            let r = self.udp.try_io(tokio::io::Interest::WRITABLE, || {
                udpx::send_segments(fd, bytes, segment, &dst)
            });
            match r {
                Ok(_) => return,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if self.udp.writable().await.is_err() {
                        return;
                    }
                }
                Err(e) if bytes.len() > segment && self.gso => {
                    // The kernel or the route refused segmentation: send one by one from now on.
                    tracing::warn!(%dst, "UDP segmentation offload refused ({e}); sending datagrams one by one");
                    self.gso = false;
                    for d in bytes.chunks(segment) {
                        self.send_udp(d, dst).await;
                    }
                    return;
                }
                Err(e) => {
                    tracing::debug!(%dst, "udp send: {e}");
                    self.counters.bump("udp_send_error");
                    return;
                }
            }
        }
    }

    async fn send_udp(&mut self, bytes: &[u8], dst: SocketAddr) {
        loop {
            match self.udp.try_send_to(bytes, dst) {
                Ok(_) => return,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if self.udp.writable().await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::debug!(%dst, "udp send: {e}");
                    self.counters.bump("udp_send_error");
                    return;
                }
            }
        }
    }

    /// Answer `original` with an ICMP error written to the TUN (like every TUN write, at once:
    /// see [`write_tun_now`]).
    fn icmp_reply(&mut self, original: &[u8], kind: IcmpKind) {
        let mut buf = [0u8; 1400];
        let mtu = u32::try_from(self.path_mtu).unwrap_or(1280);
        // IPv4 errors come from the original destination, as if from the path towards it: Linux
        // drops an IPv4 packet arriving on the TUN whose source is one of its own addresses (a
        // "martian" unless accept_local=1), so an error sent from `our_v4` never reached the app.
        let v4_from = match icmp::IpPeek::parse(original).map(|p| p.dst) {
            Ok(IpAddr::V4(dst)) => Some(dst),
            _ => self.our_v4,
        };
        let n = match (original.first().map(|b| b >> 4), kind) {
            (Some(4), IcmpKind::Unreachable) => v4_from.and_then(|a| {
                icmp::build_v4_error(&mut buf, a, original, V4Error::HostUnreachable)
            }),
            (Some(4), IcmpKind::TooBig) => v4_from.and_then(|a| {
                icmp::build_v4_error(
                    &mut buf,
                    a,
                    original,
                    V4Error::FragmentationNeeded {
                        next_hop_mtu: u16::try_from(mtu).unwrap_or(1280),
                    },
                )
            }),
            (Some(6), IcmpKind::Unreachable) => self.our_v6.and_then(|a| {
                icmp::build_v6_error(&mut buf, a, original, V6Error::AddressUnreachable)
            }),
            (Some(6), IcmpKind::TooBig) => self.our_v6.and_then(|a| {
                icmp::build_v6_error(&mut buf, a, original, V6Error::PacketTooBig { mtu })
            }),
            _ => None,
        };
        if let Some(n) = n {
            self.counters.bump(match kind {
                IcmpKind::Unreachable => "icmp_unreachable_sent",
                IcmpKind::TooBig => "icmp_too_big_sent",
            });
            // behind an all-zero virtio-net header (no offload) when the TUN expects one
            let head: &[u8] = if self.vnet { &[0u8; VNET_HDR_LEN] } else { &[] };
            write_tun_now(&self.tun, &mut self.counters, head, &buf[..n]);
        }
    }

    async fn flush_control(&mut self, buf: &mut [u8], now: Instant) {
        while let Some(t) = self.node.poll_transmit(buf, now) {
            self.send_udp(&buf[..t.len], t.dst).await;
        }
    }

    fn peer_name(&self, p: &PeerStatus) -> String {
        p.name
            .clone()
            .or_else(|| self.peer_names.get(&p.static_public).cloned())
            .unwrap_or_else(|| b64(&p.static_public[..8]))
    }

    fn drain_events(&mut self) {
        while let Some(ev) = self.node.poll_event() {
            let status = self.node.peer_status();
            let name = |id: privnet_core::PeerId| {
                status
                    .iter()
                    .find(|p| p.id == id)
                    .map(|p| self.peer_name(p))
                    .unwrap_or_default()
            };
            match ev {
                Event::PeerUp { peer, .. } => {
                    tracing::info!(network = %self.name, peer = %name(peer), "session established")
                }
                Event::PeerDown { peer, reason } => {
                    tracing::warn!(network = %self.name, peer = %name(peer), ?reason, "session closed")
                }
                Event::EndpointChanged { peer, endpoint } => {
                    tracing::info!(network = %self.name, peer = %name(peer), %endpoint, "peer endpoint changed")
                }
            }
        }
    }

    fn reload(&mut self, cfg: &Config) {
        let Some(net) = cfg.networks.iter().find(|n| n.network == self.name) else {
            tracing::warn!(network = %self.name, "reload: network no longer configured; keeping it running");
            return;
        };
        self.busy
            .set_window(Duration::from_micros(u64::from(net.tun.busy_poll_us)));
        self.hold
            .set_window(Duration::from_micros(u64::from(net.tun.batch_hold_us)));
        if net.cipher != self.node.cipher() {
            tracing::warn!(network = %self.name, running = %self.node.cipher(), configured = %net.cipher,
                "reload: a new cipher takes effect only after a restart (every member of the network must change it); keeping the running one");
        }
        match self.verifier.set_store(net.identity.trust.clone()) {
            Ok(()) => {
                self.node.revalidate(Instant::now());
                tracing::info!(network = %self.name, "trust store and revocation list reloaded; sessions revalidated");
            }
            Err(e) => {
                tracing::error!(network = %self.name, "reload refused, keeping the old trust store: {e}")
            }
        }
    }

    fn publish(&mut self) {
        let now = Instant::now();
        let s = self.node.stats();
        let unix = unix_now().as_secs();
        let cas = self.verifier.store().cas().to_vec();
        let expiry = expiry_report(
            Some(&self.own_cert),
            &cas,
            unix,
            Duration::from_secs(30 * 86_400).as_secs(),
        )
        .into_iter()
        .map(|n| {
            let subject = match &n.subject {
                privnet_core::identity::ExpirySubject::Member { name, .. } => format!("member:{name}"),
                privnet_core::identity::ExpirySubject::Ca { name, .. } => format!("ca:{name}"),
            };
            // Warn when a certificate needs attention, at most once an hour per certificate.
            let due = self
                .expiry_warned
                .get(&subject)
                .is_none_or(|t| now.saturating_duration_since(*t) >= Duration::from_secs(3600));
            if n.needs_attention() && due {
                tracing::warn!(%subject, seconds_left = n.seconds_left, state = ?n.state, "certificate needs attention");
                self.expiry_warned.insert(subject.clone(), now);
            }
            (subject, i64::try_from(n.seconds_left).unwrap_or(i64::MAX))
        })
        .collect();
        let peers = self
            .node
            .peer_status()
            .iter()
            .map(|p| PeerSnapshot {
                name: self.peer_name(p),
                public_key: b64(&p.static_public),
                endpoint: p.endpoint.map(|e| e.to_string()),
                addresses: p.addresses.iter().map(|a| a.to_string()).collect(),
                last_handshake_secs_ago: p
                    .last_handshake
                    .map(|t| now.saturating_duration_since(t).as_secs()),
                established: p.established,
                rx_bytes: p.counters.rx_bytes,
                tx_bytes: p.counters.tx_bytes,
                rx_packets: p.counters.rx_packets,
                tx_packets: p.counters.tx_packets,
                handshakes: p.counters.handshakes,
                spoofed: p.counters.spoofed,
            })
            .collect();
        let busy = self.busy.stats();
        let hold = self.hold.stats();
        let mut driver: HashMap<String, u64> = self
            .counters
            .counts
            .iter()
            .map(|(k, v)| ((*k).to_owned(), *v))
            .collect();
        let merged = self.coalescer.stats();
        for (k, v) in [
            ("tun_gro_tcp_super_packets", merged.tcp_super_packets),
            ("tun_gro_tcp_segments", merged.tcp_segments),
            ("tun_gro_udp_super_packets", merged.udp_super_packets),
            ("tun_gro_udp_datagrams", merged.udp_datagrams),
            ("busy_poll_windows", busy.windows),
            ("busy_poll_hits", busy.hits),
            ("busy_poll_over_budget", busy.over_budget),
            ("batch_holds", hold.holds),
            ("batch_hold_hits", hold.hits),
            ("batch_hold_misses", hold.misses),
            ("batch_hold_socket", hold.socket),
        ] {
            if v > 0 {
                driver.insert(k.to_owned(), v);
            }
        }
        let snap = NetworkSnapshot {
            network: self.name.clone(),
            member: self.member.clone(),
            public_key: b64(&self.node.public_key()),
            listen: self.listen.to_string(),
            cipher: self.node.cipher().to_string(),
            device: self.tun.name().to_owned(),
            addresses: self.addresses.clone(),
            uptime_secs: now.saturating_duration_since(self.started).as_secs(),
            tx_packets: s.tx_packets,
            tx_bytes: s.tx_bytes,
            rx_packets: s.rx_packets,
            rx_bytes: s.rx_bytes,
            handshakes_initiated: s.handshakes_initiated,
            handshakes_completed: s.handshakes_completed,
            cookies_sent: s.cookies_sent,
            drops: s
                .nonzero_drops()
                .map(|(r, n)| (r.as_str().to_owned(), n))
                .collect(),
            driver,
            peers,
            expiry,
            busy_poll_us: u64::try_from(busy.spun.as_micros()).unwrap_or(u64::MAX),
        };
        if let Ok(mut all) = self.snapshots.lock() {
            if let Some(slot) = all.get_mut(self.index) {
                *slot = snap;
            }
        }
    }
}

/// Write one inner packet (`head` is its virtio-net header, or empty) to the TUN now. A TUN write
/// does not block unless its send buffer was limited; if it would, the packet is dropped and
/// counted rather than held.
fn write_tun_now(tun: &TunDevice, counters: &mut DriverCounters, head: &[u8], pkt: &[u8]) {
    let r = tun.send_now(head, pkt);
    match r {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => counters.bump("tun_write_full"),
        Err(e) => {
            tracing::debug!("tun write: {e}");
            counters.bump("tun_write_error");
        }
    }
}

/// Write a packet the coalescer produced, behind the virtio-net header it needs.
fn write_coalesced(
    tun: &TunDevice,
    counters: &mut DriverCounters,
    pkt: &[u8],
    info: offload::Coalesced,
) {
    let hdr = match info.gso {
        GsoType::None => VirtioNetHdr::default(),
        kind => VirtioNetHdr {
            flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
            gso_type: match kind {
                GsoType::TcpV6 => privnet_core::io::sys::tun::VIRTIO_NET_HDR_GSO_TCPV6,
                GsoType::Udp => privnet_core::io::sys::tun::VIRTIO_NET_HDR_GSO_UDP_L4,
                _ => privnet_core::io::sys::tun::VIRTIO_NET_HDR_GSO_TCPV4,
            },
            hdr_len: info.hdr_len,
            gso_size: info.gso_size,
            csum_start: info.csum_start,
            csum_offset: info.csum_offset,
        },
    };
    let mut head = [0u8; VNET_HDR_LEN];
    if hdr.encode(&mut head).is_none() {
        counters.bump("tun_write_error");
        return;
    }
    write_tun_now(tun, counters, &head, pkt);
}

#[derive(Clone, Copy)]
enum IcmpKind {
    Unreachable,
    TooBig,
}
