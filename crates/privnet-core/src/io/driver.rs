//! The driver: one tokio task per network membership owning its [`Node`], its underlay socket and
//! its inner side ([`InnerSide`]: the TUN, an in-memory channel, ...).
//!
//! On readiness it drains a batch of up to [`BATCH`] reads without blocking, hands each packet to
//! the core and writes what comes out; control traffic from `poll_transmit` is sent after every
//! batch and a single timer is re-armed only when the core's next deadline changes. The loop is a
//! `biased` `select!` over, in order: control messages, the socket, the inner side, the timer, the
//! snapshot tick, the end of a service pass, and busy polling. Turn-taking (`turns.rs`) keeps a
//! flooded input from starving the others; busy polling (`busypoll.rs`) and the batch hold
//! (`hold.rs`) trade a bounded amount of CPU for latency and batch size.
//!
//! Invariants of the packet path, which the benchmarks depend on: no allocation and no lock per
//! packet; one clock reading per batch (re-read after a send, which may have waited); the first
//! packet read after a wake-up is sent before the next read (a lone ping must not wait for the read
//! that says "nothing more"); what one underlay receive brought is delivered (and the coalescer
//! flushed) before the next receive; decrypted packets go from the decrypt buffer straight to the
//! inner side.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnetwork::IpNetwork;
use ring::rand::SecureRandom;

use super::busypoll::BusyPoll;
use super::clock::Clock;
use super::config::{unix_now, DriverConfig, Identity};
use super::counters::{Counters, DriverEvent};
use super::error::{ControlError, DriverError};
use super::fair::FairGate;
use super::handle::{Control, DriverEnds, DriverHandle, FlowExplanation, Reload};
use super::hold::{BatchHold, HoldEnd};
use super::inner::{HoldWake, InnerSide, ReadStatus, READ_BUF_LEN};
use super::lanes::{self, Lanes};
use super::report::{DropSummary, Repeats, REPEAT_EVERY};
use super::seal::{IcmpAnswers, Sealer};
use super::snapshot::{b64, NetworkSnapshot, Publisher};
use super::sys::tun::VNET_HDR_LEN;
use super::tun_side::TunInner;
use super::turns::Turns;
use super::underlay::{Stage, Underlay, STAGE_HEADROOM};
use super::workers::{Slot, Workers, MIN_SPLIT};
use crate::identity::{RevocationList, TrustStore};
use crate::names::NameTable;
use crate::node::{Decapsulated, Event, GatewayChange, Node};
use crate::policy::{CompiledPolicy, Direction, Flow};
use crate::{NodeConfig, PeerConfig, PeerId};

/// Reads drained per readiness event before the loop looks at its other inputs.
pub const BATCH: usize = 256;
/// How often a snapshot is published.
const SNAPSHOT_EVERY: Duration = Duration::from_secs(1);
/// Snapshot ticks between two resyncs of the per-peer receive sockets that no event asked for.
const LANES_RESYNC_TICKS: u32 = 10;
/// Decrypted packets are written here: the largest inner packet plus room for a virtio-net header.
const OUT_BUF_LEN: usize = 65_536 + 64 + VNET_HDR_LEN;
/// Control datagrams (handshakes, cookies, keepalives, queued packets) are built here.
/// Smallest buffer for control traffic: the largest handshake message, rounded up. The buffer is
/// also where packets queued during a handshake are sealed (`poll_transmit`), so it grows with the
/// tunnel MTU (see `Driver::run`).
const CTL_BUF_LEN: usize = 2048;

// The node helper lives here rather than in config.rs, which must not import the errors of
// starting a driver (error.rs imports config.rs for `ConfigError`).
impl DriverConfig {
    /// Build the [`Node`] for this driver from `cfg`: its MTU becomes [`Self::path_mtu`], its RNG
    /// seed comes from the operating system, and its clocks start now.
    ///
    /// # Errors
    /// [`DriverError::Random`] if the OS random number generator fails, [`DriverError::Node`] if
    /// the core refuses `cfg`.
    pub fn new_node(&self, mut cfg: NodeConfig) -> Result<Node, DriverError> {
        cfg.mtu = self.path_mtu();
        cfg.rng_seed(random_seed()?);
        Ok(Node::new(cfg, Instant::now(), unix_now())?)
    }
}

/// 32 bytes from the operating system's random number generator, e.g. for
/// [`NodeConfig::rng_seed`].
///
/// # Errors
/// [`DriverError::Random`] if the generator fails.
pub fn random_seed() -> Result<[u8; 32], DriverError> {
    let mut seed = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut seed)
        .map_err(|_| DriverError::Random)?;
    Ok(seed)
}

/// Our overlay addresses as snapshots and logs show them (`10.77.0.2/16`).
fn address_strings(config: &DriverConfig) -> Vec<String> {
    config.addresses.iter().map(ToString::to_string).collect()
}

/// The I/O driver of one network membership, generic over its inner side.
///
/// Build it with [`Driver::tun`] (a kernel TUN device) or [`Driver::new`] (any [`InnerSide`], e.g.
/// [`super::ChannelInner`]), take a [`DriverHandle`] with [`Driver::handle`], then run it with
/// [`Driver::run`] on a tokio runtime (typically `tokio::spawn(driver.run())`).
pub struct Driver<I: InnerSide> {
    node: Node,
    inner: I,
    underlay: Underlay,
    /// Per-peer receive sockets next to the underlay socket (`lanes.rs`).
    lanes: Lanes,
    stage: Stage,
    answers: IcmpAnswers,
    counters: Counters,
    busy: BusyPoll,
    hold: BatchHold,
    publisher: Publisher,
    handle: DriverHandle,
    ends: DriverEnds,
    clock: Clock,
    /// Refused datagrams by source, for the log's summaries.
    drops: DropSummary,
    /// Per-peer log lines printed at most once per `REPEAT_EVERY`.
    repeats: Repeats<PeerId>,
    /// Peers with a session (so that a rekey does not log "session established" again).
    up: HashSet<PeerId>,
    /// Per-peer fairness before decryption (`fair.rs`).
    fair: FairGate<PeerId>,
    /// Per-peer fairness before encryption, by destination peer (`fair.rs`).
    fair_tx: FairGate<PeerId>,
    /// Our host addresses, for our own entry in the published names.
    own_hosts: Vec<IpAddr>,
    /// The trust store of the last [`Reload::trust`] (`None`: the one the verifier started
    /// with), without the directory's revocations.
    base_trust: Option<TrustStore>,
    /// The revocations of the last [`Reload::directory_revocations`], kept across trust reloads.
    directory_revoked: RevocationList,
    /// Received datagrams decrypted ahead by the workers.
    ahead: Ahead,
}

/// What the receive path needs to decrypt a GRO train ahead, split between the crypto workers:
/// one slot per datagram and a buffer for their plaintexts, datagram `i`'s at `i × seg`.
struct Ahead {
    slots: Vec<Slot>,
    buf: Vec<u8>,
}

impl Ahead {
    fn new(workers: &Workers) -> Self {
        if !workers.enabled() {
            return Self {
                slots: Vec::new(),
                buf: Vec::new(),
            };
        }
        Self {
            slots: Vec::with_capacity(super::sys::udp::MAX_GSO_SEGMENTS),
            // A train of `k` datagrams of `seg` bytes has at most `k × seg` < its length + `seg`
            // bytes: room for the largest receive plus the largest segment.
            buf: vec![0u8; READ_BUF_LEN + 65_536],
        }
    }
}

impl Driver<TunInner> {
    /// A driver whose inner side is a kernel TUN device: binds the underlay socket, creates the
    /// TUN device of `config.tun` in the calling thread's network namespace with
    /// `config.addresses` and routes (see [`TunInner::open`]). Needs `CAP_NET_ADMIN`.
    ///
    /// `node` is built by the caller with its peers (its MTU should be [`DriverConfig::path_mtu`];
    /// [`DriverConfig::new_node`] does that). `identity`, when the node verifies peers with a
    /// `CertVerifier`, enables trust-store reloads and certificate-expiry reports.
    ///
    /// # Errors
    /// A configuration out of range, or the socket, the device or its configuration failing.
    pub async fn tun(
        node: Node,
        config: DriverConfig,
        identity: Option<Identity>,
    ) -> Result<Self, DriverError> {
        config.validate()?;
        config.tun.validate(config.path_mtu())?;
        let underlay = Underlay::bind(config.listen, config.socket_buffer)?;
        if config.tun.default_route.any() {
            // Before the route exists: our own datagrams keep the main table (no loop).
            underlay.set_mark(config.tun.default_route.fwmark)?;
        }
        let inner = TunInner::open(&config.tun, &config.addresses)?;
        let mut d = Self::assemble(node, &config, identity, underlay, inner)?;
        if config.tun.default_route.any() {
            d.lanes.set_mark(config.tun.default_route.fwmark);
        }
        tracing::info!(
            network = %config.network,
            member = %d.publisher.member(),
            public_key = %b64(&d.node.public_key()),
            listen = %d.underlay.local_addr(),
            device = %d.inner.name(),
            addresses = ?address_strings(&config),
            mtu = config.tun.mtu,
            path_mtu = config.path_mtu(),
            tun_offload = d.inner.offload(),
            default_route = d.inner.default_route(),
            tun_uso = d.inner.uso(),
            udp_gso = d.underlay.gso(),
            udp_gro = d.underlay.gro(),
            fairness = config.fairness,
            peer_sockets = d.lanes.enabled(),
            workers = d.stage.workers.count(),
            "privnet up"
        );
        Ok(d)
    }
}

impl<I: InnerSide> Driver<I> {
    /// A driver with the given inner side: binds the underlay socket (in a tokio runtime). See
    /// [`Driver::tun`] for `node` and `identity`; `config.tun` is not used.
    ///
    /// # Errors
    /// A configuration out of range or the socket failing.
    pub async fn new(
        node: Node,
        config: DriverConfig,
        identity: Option<Identity>,
        inner: I,
    ) -> Result<Self, DriverError> {
        config.validate()?;
        let underlay = Underlay::bind(config.listen, config.socket_buffer)?;
        let d = Self::assemble(node, &config, identity, underlay, inner)?;
        tracing::info!(
            network = %config.network,
            member = %d.publisher.member(),
            public_key = %b64(&d.node.public_key()),
            listen = %d.underlay.local_addr(),
            device = %d.inner.name(),
            addresses = ?address_strings(&config),
            path_mtu = config.path_mtu(),
            udp_gso = d.underlay.gso(),
            udp_gro = d.underlay.gro(),
            fairness = config.fairness,
            peer_sockets = d.lanes.enabled(),
            workers = d.stage.workers.count(),
            "privnet up"
        );
        Ok(d)
    }

    fn assemble(
        node: Node,
        config: &DriverConfig,
        identity: Option<Identity>,
        underlay: Underlay,
        inner: I,
    ) -> Result<Self, DriverError> {
        let workers = Workers::new(config.workers)?;
        let publisher = Publisher::new(
            config.network.clone(),
            underlay.local_addr().to_string(),
            inner.name().to_owned(),
            address_strings(config),
            Instant::now(),
            config.peer_names.clone(),
            identity,
        );
        let (handle, ends) = DriverHandle::channel(NetworkSnapshot::default());
        // Lanes come with fairness: both keep one member's flood from being every member's queue.
        let lanes_ok = config.fairness
            && lanes::allow_lanes(underlay.fd())
                .map_err(|e| {
                    tracing::warn!(
                        "per-peer receive sockets are off: SO_REUSEPORT refused ({e}); all peers \
                         share one receive queue"
                    );
                })
                .is_ok();
        let lanes = {
            use std::os::fd::AsRawFd;
            Lanes::new(
                lanes_ok,
                underlay.fd().as_raw_fd(),
                underlay.local_addr(),
                config.socket_buffer,
            )
        };
        let mut d = Self {
            node,
            inner,
            underlay,
            lanes,
            ahead: Ahead::new(&workers),
            stage: Stage::new(workers),
            answers: IcmpAnswers::new(&config.addresses, config.path_mtu()),
            counters: Counters::default(),
            busy: BusyPoll::new(config.busy_poll),
            hold: BatchHold::new(config.batch_hold),
            publisher,
            handle,
            ends,
            clock: Clock::new(),
            drops: DropSummary::new(Instant::now()),
            repeats: Repeats::default(),
            up: HashSet::new(),
            fair: FairGate::new(config.fairness),
            fair_tx: FairGate::new(config.fairness),
            own_hosts: config.addresses.iter().map(IpNetwork::ip).collect(),
            base_trust: None,
            directory_revoked: RevocationList::new(),
        };
        d.publish();
        Ok(d)
    }

    /// A handle for snapshots and control messages (take it before [`Self::run`]; clone it freely).
    pub fn handle(&self) -> DriverHandle {
        self.handle.clone()
    }

    /// The address the underlay socket is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.underlay.local_addr()
    }

    /// The node (e.g. to look up peers before running).
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// The inner side.
    pub fn inner(&self) -> &I {
        &self.inner
    }

    /// Run until [`DriverHandle::shutdown`] (then `Ok`), or until the socket or the inner side
    /// fails (then that error). A last snapshot is published either way.
    ///
    /// # Errors
    /// The I/O error that stopped the loop.
    pub async fn run(mut self) -> std::io::Result<()> {
        let mut in_buf = vec![0u8; READ_BUF_LEN];
        let mut out_buf = vec![0u8; OUT_BUF_LEN];
        // Queued data packets are sealed into this buffer too: room for the largest inner packet
        // the node accepts plus the data overhead (a 2,048-byte buffer dropped every packet queued
        // during a handshake as `buffer_too_small` once the MTU exceeded 2,016).
        let mut ctl_buf = vec![0u8; CTL_BUF_LEN.max(self.node.mtu() + Node::OVERHEAD)];
        let mut snapshot_tick = tokio::time::interval(SNAPSHOT_EVERY);
        snapshot_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.flush_control(&mut ctl_buf, self.clock.now()).await;
        self.peers_changed();
        // One timer, re-armed only when the core's next deadline changes (re-creating it on every
        // wake-up would re-register it with the runtime's timer wheel each time).
        let far = || tokio::time::Instant::now() + Duration::from_secs(86_400);
        let timer = tokio::time::sleep_until(far());
        tokio::pin!(timer);
        let mut armed: Option<Instant> = None;
        let mut turns = Turns::new();
        let lanes_on = self.lanes.enabled();
        let mut lanes_tick: u32 = 0;
        let result = loop {
            let spinning = self.busy.spinning(Instant::now());
            let deadline = self.node.poll_timeout();
            if deadline != armed {
                timer
                    .as_mut()
                    .reset(deadline.map_or_else(far, |d| self.clock.timer_deadline(d)));
                armed = deadline;
            }
            tokio::select! {
                biased;
                msg = self.ends.control.recv() => match msg {
                    // `None` cannot happen while `self.handle` holds a sender; stop anyway.
                    Some(Control::Shutdown) | None => break Ok(()),
                    Some(Control::Reload(reload, reply)) => {
                        let _ = reply.send(self.reload(*reload));
                        turns.after_service();
                    }
                    Some(Control::SetPolicy(policy, reply)) => {
                        let _ = reply.send(self.set_policy(policy));
                        turns.after_service();
                    }
                    Some(Control::Explain(what, reply)) => {
                        let (flow, direction) = *what;
                        let _ = reply.send(self.explain(&flow, direction));
                        turns.after_service();
                    }
                },
                r = self.underlay.readable(), if !lanes_on && turns.udp_allowed() => {
                    if let Err(e) = r {
                        break Err(e);
                    }
                    self.udp_turn(false, &mut in_buf, &mut out_buf, &mut turns);
                }
                // The same, with per-peer receive sockets: the main socket is one of the set.
                r = self.lanes.readable(), if lanes_on && turns.udp_allowed() => {
                    if let Err(e) = r {
                        break Err(e);
                    }
                    self.udp_turn(true, &mut in_buf, &mut out_buf, &mut turns);
                }
                r = self.inner.readable(), if turns.tun_allowed() => {
                    if let Err(e) = r {
                        break Err(e);
                    }
                    self.busy.woke(Instant::now());
                    let (n, full) = self.drain_inner(&mut in_buf).await;
                    self.busy.handled(Instant::now(), n);
                    if full {
                        self.counters.bump(DriverEvent::TunBatchFull);
                    }
                    turns.after_tun(full);
                }
                _ = timer.as_mut(), if armed.is_some() => {
                    armed = None;
                    self.timer_pass();
                    turns.after_service();
                }
                _ = snapshot_tick.tick() => {
                    // After a suspend the monotonic timer may fire late: timers that fell due on
                    // the core's clock (which counts the suspend) run now, within a second.
                    if self.node.poll_timeout().is_some_and(|d| d <= self.clock.now()) {
                        armed = None;
                        self.timer_pass();
                    }
                    for line in self.drops.flush(self.clock.now()) {
                        tracing::warn!(network = %self.publisher.network(), "{line}");
                    }
                    // A backstop for what no event announced (a session that ran out quietly):
                    // the sync walks every peer, so not every second on a node with thousands.
                    lanes_tick += 1;
                    if lanes_tick >= LANES_RESYNC_TICKS {
                        lanes_tick = 0;
                        self.sync_lanes();
                    }
                    self.publish();
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
            self.flush_control(&mut ctl_buf, self.clock.now()).await;
            self.drain_events();
        };
        self.publish();
        tracing::info!(network = %self.publisher.network(), "network stopped; {} closed", I::KIND);
        result
    }

    /// The socket side's turn of the loop: one receive batch from the main socket alone or, with
    /// `lanes`, from the per-peer sockets and the main one, with its busy-poll and turn-taking
    /// bookkeeping.
    fn udp_turn(&mut self, lanes: bool, in_buf: &mut [u8], out_buf: &mut [u8], turns: &mut Turns) {
        self.busy.woke(Instant::now());
        let (n, full) = if lanes {
            self.drain_lanes(in_buf, out_buf)
        } else {
            self.drain_udp(in_buf, out_buf)
        };
        self.busy.handled(Instant::now(), n);
        if full {
            self.counters.bump(DriverEvent::UdpBatchFull);
        }
        turns.after_udp(full);
    }

    /// Receive and handle up to [`BATCH`] receive calls; returns the datagrams read and whether
    /// the batch was full (the socket did not run dry).
    fn drain_udp(&mut self, in_buf: &mut [u8], out_buf: &mut [u8]) -> (usize, bool) {
        let mut read = 0;
        let mut full = true;
        for _ in 0..BATCH {
            let (n, from, seg) = match self.underlay.try_recv(in_buf) {
                Ok(x) => x,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    full = false;
                    break;
                }
                Err(e) => {
                    tracing::debug!("udp recv: {e}");
                    self.counters.bump(DriverEvent::UdpRecvError);
                    full = false;
                    break;
                }
            };
            read += self.receive(&in_buf[..n], from, seg, out_buf);
        }
        self.fair.end_batch(full || read >= super::fair::BACKLOG);
        (read, full)
    }

    /// [`Self::drain_udp`] with per-peer receive sockets (`lanes.rs`): up to [`BATCH`] receive
    /// calls over the sockets found ready, one call per ready socket per round, so that a quiet
    /// peer's datagram waits behind at most one receive call of a flooding one. Returns the
    /// datagrams read and whether sockets were still ready at the end.
    fn drain_lanes(&mut self, in_buf: &mut [u8], out_buf: &mut [u8]) -> (usize, bool) {
        let mut ready = self.lanes.take_ready();
        let mut read = 0;
        let mut calls = 0;
        while calls < BATCH {
            if ready.is_empty() {
                // Everything found ready was read dry (see `Lanes::clear`; a second
                // `epoll_wait` here cost a syscall per wake-up: TCP 4x -9 % in the lab).
                self.lanes.clear();
                break;
            }
            // One receive call per ready socket in this round; the dry ones leave it.
            ready.retain(|&token| {
                if calls >= BATCH {
                    return true;
                }
                calls += 1;
                match self.lanes.recv(token, in_buf) {
                    Ok((n, from, seg)) => {
                        read += self.receive(&in_buf[..n], from, seg, out_buf);
                        true
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
                    Err(e) => {
                        // A connected socket reports an ICMP error for its peer once
                        // (`ECONNREFUSED`); datagrams may follow it, so the socket stays in the
                        // round.
                        tracing::debug!("udp recv: {e}");
                        self.counters.bump(DriverEvent::UdpRecvError);
                        true
                    }
                }
            });
        }
        let full = !ready.is_empty();
        self.lanes.give_back(ready);
        self.fair.end_batch(full || read >= super::fair::BACKLOG);
        (read, full)
    }

    /// Handle what one receive call brought from `from` (a datagram, or a GRO train of
    /// `seg`-byte segments): each datagram through the fairness gate and the node, decrypted
    /// packets to the inner side, which is flushed at the end. Returns the datagrams counted.
    fn receive(&mut self, bytes: &[u8], from: SocketAddr, seg: usize, out_buf: &mut [u8]) -> usize {
        if self.stage.workers.enabled()
            && seg > 0
            && bytes.len() >= MIN_SPLIT * seg
            && bytes.len().div_ceil(seg) * seg <= self.ahead.buf.len()
        {
            return self.receive_ahead(bytes, from, seg);
        }
        let now = self.clock.now();
        if bytes.is_empty() {
            // A zero-length datagram: `chunks` yields nothing, but the node must count it
            // (too_short), as every refused datagram.
            if let Err(e) = self.node.decapsulate(from, &[], out_buf, now) {
                self.drops.record(from.ip(), e.reason());
            }
            return 1;
        }
        let mut read = 0;
        for dgram in bytes.chunks(seg.max(1)) {
            read += 1;
            // The fairness stage: a data message of a peer over its share while this member
            // is overloaded is dropped before it costs a decryption (the sender's priority
            // hint is checked against our policy after decryption, by the node).
            if self.fair.enabled() {
                if let Some(peer) = self.node.peer_of_datagram(dgram) {
                    let high = crate::wire::priority_hint(dgram);
                    if !self.fair.admit(peer, dgram.len(), high) {
                        continue;
                    }
                }
            }
            match self.node.decapsulate(from, dgram, out_buf, now) {
                Ok(Decapsulated::Packet { len, peer }) => {
                    self.inner.deliver_from(&out_buf[..len], peer, &self.node);
                }
                Ok(Decapsulated::Keepalive | Decapsulated::Control) => {}
                // Counted by the node; summarised per source for the log.
                Err(e) => self.drops.record(from.ip(), e.reason()),
            }
        }
        // What one receive call brought (up to a GRO train of segments, merged where they are
        // one flow) is delivered before the next receive: waiting for a receive that may only
        // say "nothing more" would add latency and nothing else.
        self.inner.flush();
        read
    }

    /// [`Self::receive`] of a GRO train with crypto workers (`workers.rs`): the fairness gate
    /// and the checks before decryption for every datagram, in order; then the decryptions,
    /// split between the workers, each into its own region of the plaintext buffer; then every
    /// datagram through the node, in order, which takes the decryption done ahead (and commits
    /// the replay window only now), and the packets to the inner side.
    fn receive_ahead(&mut self, bytes: &[u8], from: SocketAddr, seg: usize) -> usize {
        let now = self.clock.now();
        let Ahead { slots, buf } = &mut self.ahead;
        slots.clear();
        for dgram in bytes.chunks(seg) {
            if self.fair.enabled() {
                if let Some(peer) = self.node.peer_of_datagram(dgram) {
                    let high = crate::wire::priority_hint(dgram);
                    if !self.fair.admit(peer, dgram.len(), high) {
                        slots.push(Slot::Skip);
                        continue;
                    }
                }
            }
            slots.push(match self.node.open_job(dgram, seg, now) {
                Some(job) => Slot::Open(job),
                None => Slot::Plain,
            });
        }
        let split = self.stage.workers.open(slots, bytes, seg, buf);
        self.counters.split(split);
        let mut read = 0;
        for ((dgram, slot), out) in bytes
            .chunks(seg)
            .zip(slots.drain(..))
            .zip(buf.chunks_mut(seg))
        {
            read += 1;
            let r = match slot {
                Slot::Skip => continue,
                Slot::Opened(a) => self.node.decapsulate_ahead(from, dgram, out, now, Some(a)),
                // Not decrypted ahead: judged (and refused, counted) as without workers.
                Slot::Plain | Slot::Open(_) => self.node.decapsulate(from, dgram, out, now),
            };
            match r {
                Ok(Decapsulated::Packet { len, peer }) => {
                    self.inner.deliver_from(&out[..len], peer, &self.node);
                }
                Ok(Decapsulated::Keepalive | Decapsulated::Control) => {}
                Err(e) => self.drops.record(from.ip(), e.reason()),
            }
        }
        self.inner.flush();
        read
    }

    /// Read and seal up to [`BATCH`] units from the inner side; returns the units read and whether
    /// the batch was full (the inner side did not run dry).
    async fn drain_inner(&mut self, in_buf: &mut [u8]) -> (usize, bool) {
        // One clock reading per batch (a batch takes well under a millisecond; the core's timers
        // work in milliseconds), taken again after each send, which may have waited.
        let mut now = self.clock.now();
        let mut read = 0;
        let mut full = true;
        let mut holds = 0;
        for i in 0..BATCH {
            // The first packet after a wake-up goes out before the next read: a lone packet (a
            // ping, a request) must not wait for the read that only says "nothing more". The rest
            // of a burst is batched into `UDP_SEGMENT` sends.
            if i == 1 || self.stage.room() < STAGE_HEADROOM {
                self.underlay
                    .flush(&mut self.stage, &mut self.counters)
                    .await;
                now = self.clock.now();
            }
            let n = match self.inner.try_read(in_buf) {
                ReadStatus::Unit(n) => n,
                // A dense batch may wait a moment for more (see hold.rs).
                ReadStatus::Empty => match self.hold_batch(in_buf, read, holds) {
                    Some(n) => {
                        holds += 1;
                        now = self.clock.now();
                        n
                    }
                    None => {
                        full = false;
                        break;
                    }
                },
                ReadStatus::Failed => {
                    full = false;
                    break;
                }
            };
            read += 1;
            let Some(unit) = in_buf.get_mut(..n) else {
                continue;
            };
            let mut sealer = Sealer {
                node: &mut self.node,
                stage: &mut self.stage,
                answers: &mut self.answers,
                counters: &mut self.counters,
                fair: &mut self.fair_tx,
                now,
            };
            self.inner.seal_read(unit, &mut sealer);
        }
        self.fair_tx.end_batch(full || read >= super::fair::BACKLOG);
        self.underlay
            .flush(&mut self.stage, &mut self.counters)
            .await;
        (read, full)
    }

    /// The inner side ran dry after `read` units of a batch held `holds` times: if the batch hold
    /// allows (see hold.rs), wait up to its window for the inner side or the socket. Returns the
    /// length of a unit that came meanwhile, or `None` (send the batch).
    fn hold_batch(&mut self, in_buf: &mut [u8], read: usize, holds: u32) -> Option<usize> {
        let window = self.hold.begin(read, holds, !self.stage.is_empty())?;
        let start = Instant::now();
        let sockets = self.lanes.fd().unwrap_or_else(|| self.underlay.fd());
        match self.inner.hold(window, sockets) {
            HoldWake::Unsupported => None,
            HoldWake::Failed(e) => {
                tracing::debug!("batch hold poll: {e}");
                self.counters.bump(DriverEvent::BatchHoldPollError);
                self.hold.end(start.elapsed(), HoldEnd::Miss);
                None
            }
            HoldWake::Socket => {
                self.hold.end(start.elapsed(), HoldEnd::Socket);
                None
            }
            HoldWake::Timeout => {
                self.hold.end(start.elapsed(), HoldEnd::Miss);
                None
            }
            HoldWake::Inner => {
                let got = match self.inner.read_now(in_buf) {
                    ReadStatus::Unit(n) => Some(n),
                    ReadStatus::Empty | ReadStatus::Failed => None,
                };
                let how = if got.is_some() {
                    HoldEnd::Hit
                } else {
                    HoldEnd::Miss
                };
                self.hold.end(start.elapsed(), how);
                got
            }
        }
    }

    async fn flush_control(&mut self, buf: &mut [u8], now: Instant) {
        self.underlay
            .flush_control(&mut self.node, buf, &mut self.counters, now)
            .await;
    }

    /// Log the node's events: O(1) per event (no peer table scan), "session established" only
    /// when a peer comes up (rekeys every two minutes are debug), and an endpoint that keeps
    /// changing at most once per `REPEAT_EVERY` with the count held back.
    fn drain_events(&mut self) {
        let mut peers_changed = false;
        let mut moved = false;
        while let Some(ev) = self.node.poll_event() {
            peers_changed |= matches!(ev, Event::PeerUp { .. } | Event::PeerDown { .. });
            moved |= matches!(ev, Event::EndpointChanged { .. });
            let network = self.publisher.network();
            let name = |node: &Node, publisher: &Publisher, id: PeerId| {
                node.peer_label(id)
                    .map(|(key, verified)| publisher.name_for(&key, verified))
                    .unwrap_or_default()
            };
            match ev {
                Event::PeerUp { peer, .. } => {
                    if self.up.insert(peer) {
                        let name = name(&self.node, &self.publisher, peer);
                        tracing::info!(network = %network, peer = %name, "session established");
                    } else {
                        tracing::debug!(network = %network, peer = %peer, "session rekeyed");
                    }
                }
                Event::PeerDown { peer, reason } => {
                    self.up.remove(&peer);
                    self.repeats.forget(&peer);
                    let name = name(&self.node, &self.publisher, peer);
                    tracing::warn!(network = %network, peer = %name, ?reason, "session closed");
                }
                Event::HandshakeUnanswered {
                    peer,
                    endpoint,
                    attempts,
                    since,
                } => {
                    let name = name(&self.node, &self.publisher, peer);
                    let secs = self.clock.now().saturating_duration_since(since).as_secs();
                    tracing::warn!(network = %network, peer = %name, %endpoint, attempts,
                        "no answer to {attempts} handshake initiations in {secs} s; likely causes: a wrong \
                         public key for this peer in our configuration (or for us in its), another \
                         network PSK, the endpoint unreachable (address, port, firewall), or the peer is down");
                }
                Event::PolicyDenied {
                    peer,
                    direction,
                    flow,
                    rejected,
                    verdict,
                    reason,
                    suppressed,
                } => {
                    // The audit trail of refused flows (already rate-limited by the node).
                    let name = name(&self.node, &self.publisher, peer);
                    let rule = verdict
                        .and_then(|v| v.rule())
                        .and_then(|r| self.node.policy().and_then(|p| p.rule(r)))
                        .map_or_else(|| "-".to_owned(), |i| i.id.clone());
                    let tier = verdict.and_then(|v| v.tier).map_or("-", |t| t.name());
                    let port = |p: Option<u16>| p.map_or_else(|| "-".to_owned(), |p| p.to_string());
                    let groups = self
                        .node
                        .peer_identity(peer)
                        .map(|i| i.groups.join(","))
                        .unwrap_or_default();
                    let direction = match direction {
                        Direction::Outbound => "outbound",
                        Direction::Inbound => "inbound",
                    };
                    tracing::info!(target: "privnet::audit", event = "flow_refused",
                        network = %network, member = %self.publisher.member(), peer = %name,
                        peer_groups = %groups, direction, action = if rejected { "reject" } else { "deny" },
                        proto = %flow.proto.name(), src = %flow.src, src_port = %port(flow.src_port),
                        dst = %flow.dst, dst_port = %port(flow.dst_port), rule = %rule, tier,
                        reason = ?reason, suppressed, "flow refused by the access policy");
                }
                Event::PolicyLogged {
                    peer,
                    direction,
                    flow,
                    verdict,
                    suppressed,
                } => {
                    let name = name(&self.node, &self.publisher, peer);
                    let rule_id = |r: Option<crate::policy::RuleIdx>| {
                        r.and_then(|r| self.node.policy().and_then(|p| p.rule(r)))
                            .map_or_else(|| "-".to_owned(), |i| i.id.clone())
                    };
                    let (log_rule, rule) = (rule_id(verdict.logged), rule_id(verdict.rule()));
                    let tier = verdict.tier.map_or("-", |t| t.name());
                    let port = |p: Option<u16>| p.map_or_else(|| "-".to_owned(), |p| p.to_string());
                    tracing::info!(target: "privnet::audit", network = %network, peer = %name,
                        direction = ?direction, action = "log", proto = %flow.proto.name(),
                        src = %flow.src, src_port = %port(flow.src_port), dst = %flow.dst,
                        dst_port = %port(flow.dst_port), log_rule = %log_rule, rule = %rule, tier,
                        suppressed, "flow logged by the access policy");
                }
                Event::GatewayChanged {
                    route,
                    prefix,
                    from,
                    to,
                    reason,
                } => {
                    let label = |id: Option<PeerId>| {
                        id.map_or_else(
                            || "-".to_owned(),
                            |id| name(&self.node, &self.publisher, id),
                        )
                    };
                    let (from, to) = (label(from), label(to));
                    match reason {
                        GatewayChange::Failover => {
                            tracing::warn!(network = %network, route = %route,
                            %prefix, from = %from, to = %to, "gateway failover: {prefix} now via {to}")
                        }
                        _ => tracing::info!(network = %network, route = %route, %prefix,
                            from = %from, to = %to, ?reason, "gateway for {prefix} now {to}"),
                    }
                }
                Event::EndpointChanged { peer, endpoint } => {
                    let now = self.clock.now();
                    if let Some(held) = self.repeats.allow(peer, now) {
                        let name = name(&self.node, &self.publisher, peer);
                        if held == 0 {
                            tracing::info!(network = %network, peer = %name, %endpoint, "peer endpoint changed");
                        } else {
                            tracing::info!(network = %network, peer = %name, %endpoint, changes_not_logged = held,
                                "peer endpoint changed ({held} more changes in the last {} s not logged)",
                                REPEAT_EVERY.as_secs());
                        }
                    }
                }
            }
        }
        if peers_changed {
            self.peers_changed();
        } else if moved {
            // A moved peer's socket is connected to its old address: reconnect it.
            self.sync_lanes();
        }
    }

    /// Apply a reload: the windows first, then the PSKs, the peers, and the trust store (which
    /// revalidates every session).
    fn reload(&mut self, reload: Reload) -> Result<(), ControlError> {
        if let Some(w) = reload.busy_poll {
            self.busy.set_window(w);
        }
        if let Some(w) = reload.batch_hold {
            self.hold.set_window(w);
        }
        if let Some(psks) = reload.psks {
            self.node.set_psks(*psks.primary, &psks.accepted);
            tracing::info!(network = %self.publisher.network(), accepted = psks.accepted.len(),
                "network PSKs replaced (sessions kept; the next handshakes use them)");
        }
        let peers = self.reload_peers(reload.remove_peers, reload.add_peers);
        self.peers_changed();
        if reload.trust.is_none() && reload.directory_revocations.is_none() {
            return peers;
        }
        let network = self.publisher.network().to_owned();
        let Some(identity) = self.publisher.identity() else {
            tracing::error!(network = %network, "reload: no certificate identity, so no trust store to replace");
            return Err(ControlError::NoIdentity);
        };
        let verifier = identity.verifier.clone();
        let base = match reload.trust {
            Some(trust) => trust,
            None => self.base_trust.clone().unwrap_or_else(|| verifier.store()),
        };
        let revoked = reload
            .directory_revocations
            .unwrap_or_else(|| self.directory_revoked.clone());
        match verifier.set_store(base.clone().with_more_revocations(&revoked)) {
            Ok(()) => {
                let (configured, directory) = (base.revocations().len(), revoked.len());
                self.base_trust = Some(base);
                self.directory_revoked = revoked;
                self.node.revalidate(self.clock.now());
                self.peers_changed();
                tracing::info!(network = %network, configured, directory,
                    "trust store and revocation list reloaded ({configured} revoked by the configuration, {directory} by the directory); sessions revalidated");
                peers
            }
            Err(e) => {
                tracing::error!(network = %network, "reload refused, keeping the old trust store: {e}");
                Err(e.into())
            }
        }
    }

    /// Install an access policy (or none); returns the number of tracked flows it cut.
    fn set_policy(&mut self, policy: Option<Arc<CompiledPolicy>>) -> usize {
        let network = self.publisher.network();
        let hash = policy.as_ref().map(|p| p.hash_hex());
        let rules = policy.as_ref().map_or(0, |p| p.rules().len());
        let cut = self.node.set_policy(policy, self.clock.now());
        match hash {
            Some(hash) => tracing::info!(network = %network, %hash, rules, flows_cut = cut,
                "access policy installed ({rules} rules, hash {hash}); {cut} tracked flow(s) it no longer allows cut, sessions kept"),
            None => tracing::warn!(network = %network, flows_cut = cut,
                "access policy removed: members of the network talk freely"),
        }
        cut
    }

    /// [`Node::explain_flow`] with the peer's name and session.
    fn explain(&self, flow: &Flow, direction: Direction) -> Option<FlowExplanation> {
        let policy = self.node.policy()?.clone();
        let (id, live) = self.node.explain_flow(flow, direction)?;
        let peer = self
            .node
            .peer_label(id)
            .map(|(key, verified)| self.publisher.name_for(&key, verified))
            .unwrap_or_default();
        Some(FlowExplanation {
            peer,
            session: self.node.is_established(id),
            live,
            policy,
        })
    }

    /// Remove and add peers (a key already present is replaced); the first refused peer is the
    /// error, the others are still applied.
    fn reload_peers(
        &mut self,
        remove: Vec<[u8; 32]>,
        add: Vec<(PeerConfig, String)>,
    ) -> Result<(), ControlError> {
        let now = self.clock.now();
        let mut result = Ok(());
        let replaced: HashSet<[u8; 32]> = add.iter().map(|(pc, _)| pc.static_public).collect();
        let mut existed = HashSet::new();
        for key in remove.iter().chain(&replaced) {
            if let Some(id) = self.node.peer_by_key(key) {
                let name = self.publisher.name_for(key, None);
                self.node.remove_peer(id);
                self.fair.forget(id);
                self.fair_tx.forget(id);
                self.up.remove(&id);
                self.repeats.forget(&id);
                if replaced.contains(key) {
                    existed.insert(*key);
                } else {
                    self.publisher.set_peer_name(key, None);
                    tracing::info!(network = %self.publisher.network(), peer = %name, "peer removed");
                }
            }
        }
        for (pc, name) in add {
            let key = pc.static_public;
            match self.node.add_peer(pc, now) {
                Ok(_) => {
                    if existed.contains(&key) {
                        tracing::info!(network = %self.publisher.network(), peer = %name,
                            "peer reconfigured (its session restarts with a new handshake)");
                    } else {
                        tracing::info!(network = %self.publisher.network(), peer = %name, "peer added");
                    }
                    self.publisher.set_peer_name(&key, Some(name));
                }
                Err(e) => {
                    tracing::error!(network = %self.publisher.network(), peer = %name, "reload: peer refused: {e}");
                    self.publisher.set_peer_name(&key, None);
                    if result.is_ok() {
                        result = Err(ControlError::PeerRefused {
                            name,
                            reason: e.to_string(),
                        });
                    }
                }
            }
        }
        result
    }

    /// The peers changed: tell the inner side, and publish the members' names again.
    fn peers_changed(&mut self) {
        self.inner.peers_changed(&self.node);
        self.sync_lanes();
        let names = NameTable::from_node(&self.node, self.publisher.peer_names())
            .with_member(self.publisher.member(), &self.own_hosts);
        self.ends.names.send_if_modified(|old| {
            let changed = **old != names;
            if changed {
                *old = Arc::new(names);
            }
            changed
        });
    }

    /// Open and close per-peer receive sockets for the peers with a session now.
    fn sync_lanes(&mut self) {
        self.lanes
            .sync(self.node.established_endpoints(), &mut self.counters);
    }

    /// Re-anchor the node's wall clock (a suspend, a VM pause or an NTP step moves it with the
    /// real one) and fire its due timers.
    fn timer_pass(&mut self) {
        let now = self.clock.now();
        self.node.set_wall_clock(now, Clock::unix());
        self.node.handle_timeout(now);
    }
}

mod publish;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_seeds_differ() {
        let (a, b) = (random_seed(), random_seed());
        assert!(matches!((a, b), (Ok(a), Ok(b)) if a != b));
    }
}
