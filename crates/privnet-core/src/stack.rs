//! The embedded userspace TCP/IP stack (feature `stack`): smoltcp behind a sans-IO façade, so
//! that a Rust service can hold overlay sockets without a TUN device or any privilege.
//!
//! ```text
//!   decrypted inner packets (Node::decapsulate)          packets to seal (Node::encapsulate)
//!          │ handle_inbound(pkt, sender, now)                       ▲ poll_outbound()
//!          ▼                                                        │
//!   classify (SYN? UDP?) → smoltcp Interface (Medium::Ip) → TCP / UDP sockets → TxQueue
//!                              ▲ poll(now), poll_timeout()          (bounded: backpressure)
//!   tcp_connect / tcp_listen / poll_accept / udp_bind: sockets for the async layer (io::embedded)
//! ```
//!
//! Like the rest of the core it reads no clock: every entry point takes `now`, converted to
//! smoltcp's time through a fixed [`Epoch`] taken at creation. The async part — wakers, the
//! driver's inner side, `AsyncRead`/`AsyncWrite` — is `io::embedded` (feature `driver`).
//!
//! What this layer adds to smoltcp:
//! - **Backpressure, no silent drop.** The device never drops (see `device.rs`); a writer waits
//!   while its socket's send buffer is full; a full UDP receive buffer drops a datagram as a
//!   kernel would, but counts it (`stack_udp_rx_full`).
//! - **A backlog.** smoltcp's listening socket *becomes* the connection, so a listener keeps one
//!   spare socket in LISTEN, replaced before each SYN is processed, and hands connections to
//!   `poll_accept` once established; beyond [`StackConfig::backlog`] SYNs are dropped (the client
//!   retries) rather than reset.
//! - **The caller's identity.** The sender of each SYN (the peer whose session decrypted it, not
//!   the packet's source address) is recorded with the connection's endpoints; a connection is
//!   accepted only with it, and a connect learns the server's from its SYN|ACK. Fails closed:
//!   without an identity (or with two peers claiming one endpoint) the connection is aborted.
//! - **Ephemeral ports**, orphaned connections (closed by the application, still sending their
//!   FIN) reaped when done or after [`ORPHAN_LINGER`], and refused packets (no route) failing the
//!   connect that sent them at once instead of after its SYN retries.
//!
//! Limits of smoltcp worth knowing (see docs/ARCHITECTURE.md, "Userspace stack"): it sends SACK
//! blocks but ignores the ones it receives, so a sender recovers one lost segment per
//! fast retransmit (three duplicate ACKs) or per retransmission timeout, whose minimum is one
//! second; out-of-order segments beyond 32 gaps (a compile-time setting) are dropped.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use smoltcp::iface::{Config as IfaceConfig, Interface, PollResult, SocketHandle, SocketSet};
use smoltcp::phy::DeviceCapabilities;
use smoltcp::socket::{tcp, udp};
use smoltcp::time::Duration as SmolDuration;
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr, IpEndpoint};

use crate::credential::PeerIdentity;

mod classify;
mod config;
mod device;
mod epoch;
#[cfg(test)]
mod tests;
mod sockets;

pub use classify::wants_sender;
pub use config::{
    Congestion, StackConfig, StackConfigError, StackSetup, DEFAULT_ACK_DELAY, DEFAULT_BACKLOG,
    DEFAULT_MAX_SOCKETS, DEFAULT_TCP_RX_BUFFER, DEFAULT_TCP_TX_BUFFER, DEFAULT_UDP_BUFFER,
    MAX_TCP_BUFFER, MIN_TCP_BUFFER,
};
pub use device::{fill_tcp_checksum, Outbound, SUPER_PACKET};
pub use epoch::Epoch;
/// smoltcp's handle of a socket (an index into the stack's socket set).
pub use smoltcp::iface::SocketHandle as Handle;
/// smoltcp's TCP and UDP sockets, for the async layer.
pub use smoltcp::socket::{tcp as tcp_socket, udp as udp_socket};

use classify::{classify, Inbound};
use device::{Port, TxQueue};

/// How long a connection the application closed may take to finish (send its data and FIN,
/// receive the peer's) before it is aborted.
pub const ORPHAN_LINGER: Duration = Duration::from_secs(60);
/// How long the sender of a SYN is remembered for the connection it opens.
const SYN_MEMORY: Duration = Duration::from_secs(75);
/// Senders of SYNs remembered at most (beyond, new SYNs are dropped until old entries expire).
const SYN_TABLE_MAX: usize = 8192;
/// How often the stack's own timers (orphans, SYN senders) are looked at when they have work.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// Ephemeral ports (RFC 6335).
const EPHEMERAL: std::ops::RangeInclusive<u16> = 49152..=65535;

/// Why a stack operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StackError {
    /// No overlay address of the destination's family, or the core has no route to it.
    #[error("no route to the destination in the overlay")]
    Unreachable,
    /// An unspecified address or port zero.
    #[error("invalid address or port")]
    InvalidAddress,
    /// The port is taken.
    #[error("port in use")]
    AddrInUse,
    /// No free ephemeral port.
    #[error("no free ephemeral port")]
    PortsExhausted,
    /// The stack holds [`StackConfig::max_sockets`] sockets.
    #[error("too many open sockets")]
    TooManySockets,
    /// The connection arrived without a verified identity of its sender (fail closed).
    #[error("no verified identity for the connection")]
    NoIdentity,
}

/// A connection a listener has ready: established, with its sender's verified identity.
#[derive(Clone, Debug)]
pub struct Accepted {
    /// The connection's socket (owned by the caller now; give it back with
    /// [`Stack::tcp_release`]).
    pub handle: SocketHandle,
    /// The peer's address and port.
    pub remote: SocketAddr,
    /// The peer whose session carried the SYN.
    pub peer: Arc<PeerIdentity>,
}

/// Who holds a socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Owner {
    /// The application (a stream, a pending connect, a UDP socket).
    App,
    /// A listener on this port (spare, half-open or ready to accept).
    Listener(u16),
    /// Closed by the application at this time; reaped when done.
    Orphan(Instant),
}

#[derive(Debug)]
struct Slot {
    owner: Owner,
    udp: bool,
    /// Local port.
    port: u16,
    /// Whether `port` was taken from the pool of local ports (connects, UDP sockets) and goes
    /// back to it with the socket.
    own_port: bool,
    /// The peer (accepted connections; connects once their SYN|ACK came).
    peer: Option<Arc<PeerIdentity>>,
    /// Why the stack aborted the connection.
    error: Option<StackError>,
}

#[derive(Debug, Default)]
struct Listener {
    /// Sockets in LISTEN (normally one).
    spare: Vec<SocketHandle>,
    /// Sockets in SYN-RECEIVED.
    half_open: Vec<SocketHandle>,
    /// Established, waiting for `poll_accept`.
    ready: VecDeque<Accepted>,
    /// Tasks waiting in `poll_accept`.
    wakers: Vec<Waker>,
}

impl Listener {
    fn held(&self) -> usize {
        self.spare.len() + self.half_open.len() + self.ready.len()
    }
}

/// What the stack counts (reported with the driver's counters).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StackCounters {
    /// Connections handed to `poll_accept`.
    pub accepted: u64,
    /// SYNs dropped because the listener's backlog was full.
    pub syn_backlog_full: u64,
    /// SYNs dropped because the table of their senders was full.
    pub syn_table_full: u64,
    /// Connections aborted for want of a verified identity (or with two claiming it).
    pub no_identity: u64,
    /// Datagrams dropped at a full UDP receive buffer.
    pub udp_rx_full: u64,
    /// Connects failed at once because the core had no route for their SYN.
    pub unreachable: u64,
    /// Closed connections aborted after [`ORPHAN_LINGER`].
    pub orphans_aborted: u64,
}

impl StackCounters {
    /// Hand the non-zero counters to `out`.
    pub fn report(&self, out: &mut dyn FnMut(&'static str, u64)) {
        for (k, v) in [
            ("stack_accepted", self.accepted),
            ("stack_syn_backlog_full", self.syn_backlog_full),
            ("stack_syn_table_full", self.syn_table_full),
            ("stack_no_identity", self.no_identity),
            ("stack_udp_rx_full", self.udp_rx_full),
            ("stack_unreachable", self.unreachable),
            ("stack_orphans_aborted", self.orphans_aborted),
        ] {
            if v > 0 {
                out(k, v);
            }
        }
    }
}

/// The identity recorded for one remote endpoint and local port.
#[derive(Debug)]
struct SynSender {
    /// `None` once two different peers claimed the endpoint.
    peer: Option<Arc<PeerIdentity>>,
    at: Instant,
}

/// The embedded stack: one smoltcp interface with its sockets. See the module docs.
pub struct Stack {
    iface: Interface,
    sockets: SocketSet<'static>,
    tx: TxQueue,
    caps: DeviceCapabilities,
    epoch: Epoch,
    cfg: StackConfig,
    v4: Option<Ipv4Addr>,
    v6: Option<Ipv6Addr>,
    slots: HashMap<SocketHandle, Slot>,
    listeners: HashMap<u16, Listener>,
    udp_ports: HashMap<u16, SocketHandle>,
    /// Local ports of connects and UDP sockets.
    ports: HashSet<u16>,
    next_port: u16,
    syns: HashMap<(SocketAddr, u16), SynSender>,
    orphans: Vec<SocketHandle>,
    last_sweep: Instant,
    counters: StackCounters,
}

impl std::fmt::Debug for Stack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stack")
            .field("v4", &self.v4)
            .field("v6", &self.v6)
            .field("sockets", &self.slots.len())
            .field("listeners", &self.listeners.len())
            .finish_non_exhaustive()
    }
}

fn smol_duration(d: Duration) -> SmolDuration {
    SmolDuration::from_micros(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

impl Stack {
    /// A stack for `setup` tuned by `cfg`, whose epoch is `now`.
    ///
    /// # Errors
    /// A configuration value out of range, or no address.
    pub fn new(cfg: StackConfig, setup: &StackSetup, now: Instant) -> Result<Self, StackConfigError> {
        cfg.validate(setup.mtu)?;
        let v4 = setup.addresses.iter().find_map(|a| match a.ip() {
            IpAddr::V4(v4) => Some((v4, a.prefix())),
            IpAddr::V6(_) => None,
        });
        let v6 = setup.addresses.iter().find_map(|a| match a.ip() {
            IpAddr::V6(v6) => Some((v6, a.prefix())),
            IpAddr::V4(_) => None,
        });
        if v4.is_none() && v6.is_none() {
            return Err(StackConfigError::NoAddress);
        }
        let epoch = Epoch::new(now);
        let caps = device::capabilities(setup.mtu, cfg.max_burst, cfg.segmentation_offload);
        let mut tx = TxQueue::new(setup.mtu);
        let mut icfg = IfaceConfig::new(HardwareAddress::Ip);
        icfg.random_seed = setup.seed;
        let mut iface = {
            let mut port = Port {
                rx: None,
                tx: &mut tx,
                caps: &caps,
            };
            Interface::new(icfg, &mut port, epoch.to_smol(now))
        };
        iface.update_ip_addrs(|addrs| {
            if let Some((a, p)) = v4 {
                let _ = addrs.push(IpCidr::new(IpAddress::Ipv4(a), p));
            }
            if let Some((a, p)) = v6 {
                let _ = addrs.push(IpCidr::new(IpAddress::Ipv6(a), p));
            }
        });
        // Destinations outside our prefixes (subnets behind gateways) go out the same way: the
        // core routes them. With Medium::Ip the gateway is only a name for "the device".
        if let Some((a, _)) = v4 {
            let _ = iface.routes_mut().add_default_ipv4_route(a);
        }
        if let Some((a, _)) = v6 {
            let _ = iface.routes_mut().add_default_ipv6_route(a);
        }
        let span = u64::from(EPHEMERAL.end() - EPHEMERAL.start()) + 1;
        let next_port = EPHEMERAL.start() + u16::try_from(setup.seed % span).unwrap_or(0);
        Ok(Self {
            iface,
            sockets: SocketSet::new(Vec::new()),
            tx,
            caps,
            epoch,
            cfg,
            v4: v4.map(|(a, _)| a),
            v6: v6.map(|(a, _)| a),
            slots: HashMap::new(),
            listeners: HashMap::new(),
            udp_ports: HashMap::new(),
            ports: HashSet::new(),
            next_port,
            syns: HashMap::new(),
            orphans: Vec::new(),
            last_sweep: now,
            counters: StackCounters::default(),
        })
    }

    /// The tuning in force.
    pub fn config(&self) -> &StackConfig {
        &self.cfg
    }

    /// Our IPv4 and IPv6 addresses.
    pub fn addresses(&self) -> (Option<Ipv4Addr>, Option<Ipv6Addr>) {
        (self.v4, self.v6)
    }

    /// Counters so far.
    pub fn counters(&self) -> StackCounters {
        self.counters
    }

    /// Open sockets (connections, listeners' sockets, UDP sockets, orphans).
    pub fn socket_count(&self) -> usize {
        self.slots.len()
    }

    // -----------------------------------------------------------------------------------------
    // packets

    /// Process one inbound packet (decrypted and checked by the core). `sender` is the identity
    /// of the peer whose session carried it; it is needed only when [`wants_sender`] says so.
    /// What smoltcp answers at once (an RST, an echo reply) is queued for [`Self::poll_outbound`].
    pub fn handle_inbound(
        &mut self,
        packet: &[u8],
        sender: Option<&Arc<PeerIdentity>>,
        now: Instant,
    ) {
        let kind = classify(packet);
        let mut udp_before = None;
        let mut syn_port = None;
        match kind {
            Inbound::Syn {
                remote,
                local_port,
                ack,
            } => {
                // A request to a listener, or the answer to one of our connects: the only SYNs
                // whose sender a connection will ask for.
                let wanted = if ack {
                    self.ports.contains(&local_port)
                } else {
                    self.listeners.contains_key(&local_port)
                };
                if wanted {
                    if !ack {
                        if !self.spare_for(local_port) {
                            return;
                        }
                        syn_port = Some(local_port);
                    }
                    if !self.remember_sender(remote, local_port, sender, now) {
                        self.counters.syn_table_full += 1;
                        return;
                    }
                }
            }
            Inbound::Udp { local_port, len } if len > 0 => {
                if let Some(&h) = self.udp_ports.get(&local_port) {
                    udp_before = Some((h, self.sockets.get::<udp::Socket<'_>>(h).recv_queue()));
                }
            }
            _ => {}
        }
        let ts = self.epoch.to_smol(now);
        let mut port = Port {
            rx: Some(packet),
            tx: &mut self.tx,
            caps: &self.caps,
        };
        let _ = self.iface.poll_ingress_single(ts, &mut port, &mut self.sockets);
        if let Some((h, before)) = udp_before {
            if self.sockets.get::<udp::Socket<'_>>(h).recv_queue() <= before {
                self.counters.udp_rx_full += 1;
            }
        }
        if let Some(p) = syn_port {
            self.after_syn(p);
        }
    }

    /// Make sure the listener on `port` has a spare socket in LISTEN for the SYN about to be
    /// processed; `false` (the SYN is dropped and counted) when its backlog is full or the stack
    /// holds its maximum of sockets.
    fn spare_for(&mut self, port: u16) -> bool {
        let (held, has_spare) = match self.listeners.get(&port) {
            Some(l) => (l.held(), !l.spare.is_empty()),
            None => return true,
        };
        if has_spare {
            return true;
        }
        if held >= self.cfg.backlog || self.slots.len() >= self.cfg.max_sockets {
            self.counters.syn_backlog_full += 1;
            return false;
        }
        let mut s = self.new_tcp();
        if s.listen(port).is_err() {
            return false;
        }
        let h = self.sockets.add(s);
        self.slots.insert(
            h,
            Slot {
                owner: Owner::Listener(port),
                udp: false,
                port,
                own_port: false,
                peer: None,
                error: None,
            },
        );
        if let Some(l) = self.listeners.get_mut(&port) {
            l.spare.push(h);
        }
        true
    }

    /// After a SYN to `port`: the spare that took it is half-open now.
    fn after_syn(&mut self, port: u16) {
        let Some(l) = self.listeners.get_mut(&port) else {
            return;
        };
        let sockets = &self.sockets;
        let (still, taken): (Vec<_>, Vec<_>) = l
            .spare
            .drain(..)
            .partition(|&h| sockets.get::<tcp::Socket<'_>>(h).state() == tcp::State::Listen);
        l.spare = still;
        l.half_open.extend(taken);
    }

    /// Record who sent a SYN from `remote` to our `local_port`; `false` if the table is full.
    fn remember_sender(
        &mut self,
        remote: SocketAddr,
        local_port: u16,
        sender: Option<&Arc<PeerIdentity>>,
        now: Instant,
    ) -> bool {
        if let Some(e) = self.syns.get_mut(&(remote, local_port)) {
            let same = match (&e.peer, sender) {
                (Some(a), Some(b)) => a.fingerprint == b.fingerprint,
                (None, _) | (_, None) => false,
            };
            if !same {
                // Two peers (or none) claim one endpoint: neither gets the connection.
                e.peer = None;
            }
            e.at = now;
            return true;
        }
        if self.syns.len() >= SYN_TABLE_MAX {
            self.syns
                .retain(|_, e| now.saturating_duration_since(e.at) < SYN_MEMORY);
            if self.syns.len() >= SYN_TABLE_MAX {
                return false;
            }
        }
        self.syns.insert(
            (remote, local_port),
            SynSender {
                peer: sender.cloned(),
                at: now,
            },
        );
        true
    }

    /// Run smoltcp's egress (new data, ACKs, retransmissions, timers due at `now`) until the
    /// outbound queue is full or nothing is left to send; then move established connections to
    /// their listeners' queues and reap finished ones. Returns whether packets wait in
    /// [`Self::poll_outbound`].
    pub fn poll(&mut self, now: Instant) -> bool {
        let ts = self.epoch.to_smol(now);
        {
            let mut port = Port {
                rx: None,
                tx: &mut self.tx,
                caps: &self.caps,
            };
            // Bounded: each round sends at least one packet or ends, and the queue is bounded.
            while !port.tx.is_full() {
                if self.iface.poll_egress(ts, &mut port, &mut self.sockets) == PollResult::None {
                    break;
                }
            }
        }
        self.sweep_listeners();
        if !self.orphans.is_empty() || !self.syns.is_empty() {
            if now.saturating_duration_since(self.last_sweep) >= SWEEP_EVERY {
                self.last_sweep = now;
                self.sweep_timers(now);
            } else {
                self.reap_orphans(None);
            }
        }
        !self.tx.packets.is_empty()
    }

    /// The next packet to seal, if any.
    #[inline]
    pub fn poll_outbound(&mut self) -> Option<Outbound> {
        self.tx.pop()
    }

    /// The length of the packet [`Self::poll_outbound`] would return.
    #[inline]
    pub fn peek_outbound(&self) -> Option<usize> {
        self.tx.packets.front().map(|p| p.len)
    }

    /// Give back the buffer of a sealed packet.
    #[inline]
    pub fn recycle(&mut self, packet: Outbound) {
        self.tx.recycle(packet);
    }

    /// Whether packets wait in [`Self::poll_outbound`].
    pub fn has_outbound(&self) -> bool {
        !self.tx.packets.is_empty()
    }

    /// Free pooled packet buffers (for an idle stack).
    pub fn shrink(&mut self) {
        self.tx.shrink();
    }

    /// When [`Self::poll`] must run next: now if packets wait or a socket has something to send,
    /// else smoltcp's next timer (retransmission, delayed ACK, keep-alive, zero-window probe) or
    /// the stack's own sweep; `None` when nothing is pending.
    pub fn poll_timeout(&mut self, now: Instant) -> Option<Instant> {
        if self.has_outbound() {
            return Some(now);
        }
        let ts = self.epoch.to_smol(now);
        let smol = self
            .iface
            .poll_at(ts, &self.sockets)
            .map(|t| self.epoch.to_core(t));
        let sweep = (!self.orphans.is_empty() || !self.syns.is_empty())
            .then(|| self.last_sweep + SWEEP_EVERY);
        match (smol, sweep) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The core refused to seal `packet` (no route to its destination): a connect whose SYN it
    /// was fails now with [`StackError::Unreachable`].
    pub fn refused(&mut self, packet: &[u8]) {
        let Inbound::Syn {
            remote: local,
            local_port: remote_port,
            ack: false,
        } = classify(packet)
        else {
            return;
        };
        // The packet is ours: its source is our end, its destination the peer's.
        let Some((_, dst)) = crate::packet::addresses(packet) else {
            return;
        };
        let remote = IpEndpoint::from(SocketAddr::new(dst, remote_port));
        for (h, slot) in &mut self.slots {
            if slot.udp || slot.owner != Owner::App || slot.port != local.port() {
                continue;
            }
            let s = self.sockets.get_mut::<tcp::Socket<'_>>(*h);
            if s.state() == tcp::State::SynSent && s.remote_endpoint() == Some(remote) {
                slot.error = Some(StackError::Unreachable);
                s.abort();
                self.counters.unreachable += 1;
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // sweeps

    fn sweep_listeners(&mut self) {
        for (&port, l) in &mut self.listeners {
            if l.half_open.is_empty() {
                continue;
            }
            let mut i = 0;
            while i < l.half_open.len() {
                let h = l.half_open[i];
                let s = self.sockets.get_mut::<tcp::Socket<'_>>(h);
                match s.state() {
                    tcp::State::SynReceived => i += 1,
                    // An RST in SYN-RECEIVED sends smoltcp's socket back to LISTEN.
                    tcp::State::Listen => {
                        l.half_open.swap_remove(i);
                        l.spare.push(h);
                    }
                    tcp::State::Established | tcp::State::CloseWait => {
                        l.half_open.swap_remove(i);
                        let remote = s.remote_endpoint().map(SocketAddr::from);
                        let peer = remote.and_then(|r| {
                            self.syns
                                .remove(&(r, port))
                                .and_then(|e| e.peer)
                        });
                        match (remote, peer) {
                            (Some(remote), Some(peer)) => {
                                if let Some(slot) = self.slots.get_mut(&h) {
                                    slot.peer = Some(peer.clone());
                                }
                                l.ready.push_back(Accepted {
                                    handle: h,
                                    remote,
                                    peer,
                                });
                                self.counters.accepted += 1;
                                for w in l.wakers.drain(..) {
                                    w.wake();
                                }
                            }
                            _ => {
                                s.abort();
                                self.counters.no_identity += 1;
                                if let Some(slot) = self.slots.get_mut(&h) {
                                    slot.owner = Owner::Orphan(self.last_sweep);
                                }
                                self.orphans.push(h);
                            }
                        }
                    }
                    // Closed or anything else: the attempt died before `accept`.
                    _ => {
                        l.half_open.swap_remove(i);
                        if let Some(slot) = self.slots.get_mut(&h) {
                            slot.owner = Owner::Orphan(self.last_sweep);
                        }
                        self.orphans.push(h);
                    }
                }
            }
        }
    }

    fn sweep_timers(&mut self, now: Instant) {
        self.syns
            .retain(|_, e| now.saturating_duration_since(e.at) < SYN_MEMORY);
        self.reap_orphans(Some(now));
    }

    /// Remove orphans that are done; with `now`, abort those older than [`ORPHAN_LINGER`].
    fn reap_orphans(&mut self, now: Option<Instant>) {
        let mut i = 0;
        while i < self.orphans.len() {
            let h = self.orphans[i];
            let since = match self.slots.get(&h).map(|s| s.owner) {
                Some(Owner::Orphan(t)) => t,
                _ => {
                    self.orphans.swap_remove(i);
                    continue;
                }
            };
            let s = self.sockets.get_mut::<tcp::Socket<'_>>(h);
            let done = matches!(s.state(), tcp::State::Closed | tcp::State::TimeWait)
                && (s.state() == tcp::State::TimeWait || s.remote_endpoint().is_none());
            if done {
                self.orphans.swap_remove(i);
                self.remove(h);
                continue;
            }
            if let Some(now) = now {
                if now.saturating_duration_since(since) >= ORPHAN_LINGER
                    && s.state() != tcp::State::Closed
                {
                    s.abort();
                    self.counters.orphans_aborted += 1;
                }
            }
            i += 1;
        }
    }

    fn remove(&mut self, h: SocketHandle) {
        if let Some(slot) = self.slots.remove(&h) {
            if slot.udp {
                self.udp_ports.remove(&slot.port);
            }
            if slot.own_port {
                self.ports.remove(&slot.port);
            }
            self.sockets.remove(h);
        }
    }

    // -----------------------------------------------------------------------------------------
    // TCP

}
