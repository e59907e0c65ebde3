//! The kernel TUN device as the driver's inner side ([`TunInner`]).
//!
//! With offloads (virtio-net headers) a read may be a TSO/USO super-packet of up to 64 KiB: it is
//! cut into segments (`offload::segment`) or its checksum completed (`offload::complete_checksum`)
//! before sealing. Delivery goes through the coalescer, which merges consecutive TCP segments and
//! UDP datagrams of one flow into super-packets and writes them (or a packet alone) straight from
//! its buffer behind a virtio-net header with one `writev`. Every TUN write goes to the kernel at
//! once and never waits: a TUN only refuses a write when its send buffer was limited, and then the
//! packet is dropped and counted rather than held. The batch hold waits in `ppoll` on the TUN and
//! the underlay socket.

use std::net::IpAddr;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

use ipnetwork::IpNetwork;

use super::config::{DefaultRoute, TunOptions};
use super::counters::{Counters, DriverEvent};
use super::error::DriverError;
use super::inner::{HoldWake, InnerSide, ReadStatus, Seal};
use super::sys;
use super::sys::netlink::Netlink;
use super::sys::netlink::Rule;
use super::sys::tun::{
    TunConfig, TunDevice, VirtioNetHdr, VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_TCPV4,
    VIRTIO_NET_HDR_GSO_TCPV6, VIRTIO_NET_HDR_GSO_UDP_L4, VNET_HDR_LEN,
};
use crate::offload::{self, Coalesced, Coalescer, GsoType};

/// How long to wait for the kernel to make our IPv6 address usable (duplicate address detection
/// is off on a TUN, but the address still becomes usable asynchronously).
const V6_READY_WAIT: Duration = Duration::from_secs(2);

/// The TUN device: packets read from it are sealed and sent to peers; decrypted packets are
/// written to it. Created (with its addresses, link state and routes) by [`TunInner::open`] or
/// [`super::Driver::tun`]; the kernel removes the interface when it is dropped.
pub struct TunInner {
    tun: TunDevice,
    /// The TUN carries virtio-net headers (offloads on).
    vnet: bool,
    coalescer: Coalescer,
    /// Room for the segments of one super-packet.
    scratch: Vec<u8>,
    counters: Counters,
    /// The rules of the default route, deleted on drop.
    rules: Option<Rules>,
}

impl std::fmt::Debug for TunInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunInner")
            .field("tun", &self.tun)
            .field("vnet", &self.vnet)
            .finish_non_exhaustive()
    }
}

impl TunInner {
    /// Create the TUN device of `opts` in the calling thread's network namespace (with offloads
    /// when asked and the kernel has them, plain packets otherwise), give it `addresses`, bring it
    /// up and route `opts.routes` into it. Needs `CAP_NET_ADMIN` and a tokio runtime with I/O.
    /// Blocks the calling thread while rtnetlink answers, and up to 2 s until the kernel makes the
    /// first IPv6 address usable.
    ///
    /// # Errors
    /// [`DriverError::Tun`], [`DriverError::Netlink`], [`DriverError::Address`] or
    /// [`DriverError::LinkUp`]; a route that cannot be added is only logged.
    pub fn open(opts: &TunOptions, addresses: &[IpNetwork]) -> Result<Self, DriverError> {
        // Offloads (TSO/USO and checksum) through virtio-net headers when the kernel has them;
        // plain packets otherwise.
        let create = |vnet_hdr| {
            TunDevice::create(&TunConfig {
                name: opts.name.clone(),
                mtu: Some(u32::from(opts.mtu)),
                vnet_hdr,
                multi_queue: false,
            })
        };
        let tun = create(opts.offload)
            .or_else(|e| {
                if !opts.offload {
                    return Err(e);
                }
                tracing::warn!("TUN offloads unavailable ({e}); using plain packets");
                create(false)
            })
            .map_err(|source| DriverError::Tun {
                name: opts.name.clone(),
                source,
            })?;
        let vnet = tun.vnet_hdr();
        let mut coalescer = Coalescer::new();
        coalescer.set_merge_udp(vnet && tun.offloads().uso);
        let mut nl = Netlink::new().map_err(DriverError::Netlink)?;
        let ifindex = tun.ifindex();
        for a in addresses {
            nl.add_address(ifindex, a.ip(), a.prefix())
                .map_err(|source| DriverError::Address {
                    address: *a,
                    device: opts.name.clone(),
                    source,
                })?;
        }
        nl.link_set_up(ifindex)
            .map_err(|source| DriverError::LinkUp {
                device: opts.name.clone(),
                source,
            })?;
        // Subnet routes gateways may serve also go into the TUN; a default route only the way
        // `opts.default_route` says (never into the main table).
        let mut routes = opts.routes.clone();
        routes.retain(|r| r.prefix() > 0);
        routes.sort();
        routes.dedup();
        for r in routes {
            if let Err(e) = nl.add_route(ifindex, r.network(), r.prefix()) {
                tracing::warn!("route {r} via {}: {e}", opts.name);
            }
        }
        let first_v6 = addresses.iter().map(IpNetwork::ip).find(IpAddr::is_ipv6);
        if let Some(v6) = first_v6 {
            let _ = nl.wait_local(v6, V6_READY_WAIT);
        }
        let rules = if opts.default_route.any() {
            let r = Rules::install(nl, ifindex, &opts.default_route).map_err(|source| {
                DriverError::DefaultRoute {
                    device: opts.name.clone(),
                    source,
                }
            })?;
            Some(r)
        } else {
            None
        };
        Ok(Self {
            tun,
            vnet,
            coalescer,
            scratch: vec![0u8; 65_536],
            counters: Counters::default(),
            rules,
        })
    }

    /// The device.
    pub fn device(&self) -> &TunDevice {
        &self.tun
    }

    /// Whether packets carry virtio-net headers (offloads on).
    pub fn offload(&self) -> bool {
        self.vnet
    }

    /// Whether a default route into this device is installed (with its rules).
    pub fn default_route(&self) -> bool {
        self.rules.is_some()
    }

    /// Whether the kernel takes UDP super-packets (USO) on this device.
    pub fn uso(&self) -> bool {
        self.vnet && self.tun.offloads().uso
    }

    /// Seal one packet; a refused one is answered with ICMP where that helps.
    #[inline]
    fn seal_one<S: Seal>(
        tun: &TunDevice,
        counters: &mut Counters,
        vnet: bool,
        pkt: &[u8],
        sink: &mut S,
    ) {
        if let Err(r) = sink.seal(pkt) {
            if let Some(reply) = sink.answer(r, pkt) {
                write_answer(tun, counters, vnet, reply);
            }
        }
    }
}

/// The policy routing rules of a default route (see [`DefaultRoute`]), deleted on drop; the
/// route itself lives in its table on the device and vanishes with it.
struct Rules {
    nl: Netlink,
    /// `(IPv6, rule)` for each rule we added (one that already existed is left alone).
    added: Vec<(bool, Rule)>,
}

impl Rules {
    /// Route each family of `dr` out of `ifindex` in `dr.table`, then add the two rules per
    /// family (the one to consult first last), and let the kernel's reverse-path check honour
    /// the mark (`net.ipv4.conf.all.src_valid_mark`, as wg-quick sets it).
    fn install(mut nl: Netlink, ifindex: u32, dr: &DefaultRoute) -> std::io::Result<Self> {
        let mut added = Vec::new();
        let families = [
            (false, dr.ipv4, IpAddr::from([0u8; 4])),
            (true, dr.ipv6, IpAddr::from([0u8; 16])),
        ];
        for (v6, on, any) in families {
            if !on {
                continue;
            }
            match nl.add_route_in(ifindex, any, 0, dr.table) {
                Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                    Self::remove(&mut nl, &added);
                    return Err(e);
                }
                _ => {}
            }
            for rule in [
                Rule::UnmarkedToTable {
                    mark: dr.fwmark,
                    table: dr.table,
                },
                Rule::MainWithoutDefault,
            ] {
                match nl.add_rule(v6, rule) {
                    Ok(()) => added.push((v6, rule)),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        tracing::info!("rule {rule} exists already; left in place at stop");
                    }
                    Err(e) => {
                        Self::remove(&mut nl, &added);
                        return Err(e);
                    }
                }
            }
            tracing::info!(
                table = dr.table,
                fwmark = %format!("{:#x}", dr.fwmark),
                "default route {any}/0 installed"
            );
        }
        if dr.ipv4 {
            if let Err(e) = std::fs::write("/proc/sys/net/ipv4/conf/all/src_valid_mark", b"1") {
                tracing::warn!("net.ipv4.conf.all.src_valid_mark=1: {e} (a strict rp_filter may drop underlay replies)");
            }
        }
        Ok(Self { nl, added })
    }

    fn remove(nl: &mut Netlink, added: &[(bool, Rule)]) {
        for &(v6, rule) in added.iter().rev() {
            if let Err(e) = nl.del_rule(v6, rule) {
                tracing::warn!("{e}");
            }
        }
    }
}

impl Drop for Rules {
    fn drop(&mut self) {
        Self::remove(&mut self.nl, &self.added);
        if !self.added.is_empty() {
            tracing::info!("default route rules removed");
        }
    }
}

impl InnerSide for TunInner {
    const KIND: &'static str = "TUN device";

    fn name(&self) -> &str {
        self.tun.name()
    }

    fn readable(&mut self) -> impl std::future::Future<Output = std::io::Result<()>> + Send {
        self.tun.readable()
    }

    #[inline]
    fn try_read(&mut self, buf: &mut [u8]) -> ReadStatus {
        match self.tun.try_recv(buf) {
            Ok(n) => ReadStatus::Unit(n),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => ReadStatus::Empty,
            Err(e) => {
                tracing::debug!("tun recv: {e}");
                self.counters.bump(DriverEvent::TunRecvError);
                ReadStatus::Failed
            }
        }
    }

    fn read_now(&mut self, buf: &mut [u8]) -> ReadStatus {
        // Straight to the kernel: tokio's readiness cache says "not readable" until the reactor
        // runs again.
        match self.tun.recv_now(buf) {
            Ok(n) => ReadStatus::Unit(n),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => ReadStatus::Empty,
            Err(e) => {
                tracing::debug!("tun recv: {e}");
                self.counters.bump(DriverEvent::TunRecvError);
                ReadStatus::Failed
            }
        }
    }

    fn hold(&mut self, window: Duration, socket: BorrowedFd<'_>) -> HoldWake {
        match sys::poll_in(self.tun.as_raw_fd(), socket.as_raw_fd(), window) {
            Ok(r) if r.second => HoldWake::Socket,
            Ok(r) if r.first => HoldWake::Inner,
            Ok(_) => HoldWake::Timeout,
            Err(e) => HoldWake::Failed(e),
        }
    }

    fn seal_read<S: Seal>(&mut self, buf: &mut [u8], sink: &mut S) {
        if !self.vnet {
            Self::seal_one(&self.tun, &mut self.counters, false, buf, sink);
            return;
        }
        let Some(h) = VirtioNetHdr::decode(buf) else {
            self.counters.bump(DriverEvent::TunShortRead);
            return;
        };
        let pkt = &mut buf[VNET_HDR_LEN..];
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
                    self.counters.bump(DriverEvent::TunBadChecksumOffset);
                    return;
                }
                Self::seal_one(&self.tun, &mut self.counters, true, pkt, sink);
            }
            Some(kind) => {
                let (tun, counters) = (&self.tun, &mut self.counters);
                // Segments of one super-packet share their fate: only the first refused one is
                // answered.
                let mut answered = false;
                let r = offload::segment(
                    pkt,
                    kind,
                    usize::from(h.gso_size),
                    &mut self.scratch,
                    |seg| {
                        if let Err(e) = sink.seal(seg) {
                            if !answered {
                                answered = true;
                                if let Some(reply) = sink.answer(e, seg) {
                                    write_answer(tun, counters, true, reply);
                                }
                            }
                        }
                    },
                );
                if r.is_err() {
                    self.counters.bump(DriverEvent::TunBadGsoPacket);
                }
            }
            None => self.counters.bump(DriverEvent::TunUnknownGsoType),
        }
    }

    /// At once without offloads, else through the coalescer, which writes merged super-packets
    /// (or the packet itself) straight from its buffer, behind a virtio-net header, with one
    /// `writev` each.
    #[inline]
    fn deliver(&mut self, packet: &[u8]) {
        if !self.vnet {
            write_tun_now(&self.tun, &mut self.counters, &[], packet);
            return;
        }
        let (tun, counters) = (&self.tun, &mut self.counters);
        self.coalescer
            .push(packet, |p, info| write_coalesced(tun, counters, p, info));
    }

    fn flush(&mut self) {
        let (tun, counters) = (&self.tun, &mut self.counters);
        self.coalescer
            .finish(&mut |p: &[u8], info| write_coalesced(tun, counters, p, info));
    }

    fn report(&self, out: &mut dyn FnMut(&'static str, u64)) {
        self.counters.report(out);
        let merged = self.coalescer.stats();
        for (k, v) in [
            ("tun_gro_tcp_super_packets", merged.tcp_super_packets),
            ("tun_gro_tcp_segments", merged.tcp_segments),
            ("tun_gro_udp_super_packets", merged.udp_super_packets),
            ("tun_gro_udp_datagrams", merged.udp_datagrams),
        ] {
            if v > 0 {
                out(k, v);
            }
        }
    }
}

/// Write an ICMP answer to the TUN (like every TUN write, at once), behind an all-zero virtio-net
/// header (no offload) when the TUN expects one.
fn write_answer(tun: &TunDevice, counters: &mut Counters, vnet: bool, reply: &[u8]) {
    let head: &[u8] = if vnet { &[0u8; VNET_HDR_LEN] } else { &[] };
    write_tun_now(tun, counters, head, reply);
}

/// Write one inner packet (`head` is its virtio-net header, or empty) to the TUN now. A TUN write
/// does not block unless its send buffer was limited; if it would, the packet is dropped and
/// counted rather than held.
fn write_tun_now(tun: &TunDevice, counters: &mut Counters, head: &[u8], pkt: &[u8]) {
    match tun.send_now(head, pkt) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
            counters.bump(DriverEvent::TunWriteFull);
        }
        Err(e) => {
            tracing::debug!("tun write: {e}");
            counters.bump(DriverEvent::TunWriteError);
        }
    }
}

/// Write a packet the coalescer produced, behind the virtio-net header it needs.
fn write_coalesced(tun: &TunDevice, counters: &mut Counters, pkt: &[u8], info: Coalesced) {
    let hdr = match info.gso {
        GsoType::None => VirtioNetHdr::default(),
        kind => VirtioNetHdr {
            flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
            gso_type: match kind {
                GsoType::TcpV6 => VIRTIO_NET_HDR_GSO_TCPV6,
                GsoType::Udp => VIRTIO_NET_HDR_GSO_UDP_L4,
                _ => VIRTIO_NET_HDR_GSO_TCPV4,
            },
            hdr_len: info.hdr_len,
            gso_size: info.gso_size,
            csum_start: info.csum_start,
            csum_offset: info.csum_offset,
        },
    };
    let mut head = [0u8; VNET_HDR_LEN];
    if hdr.encode(&mut head).is_none() {
        counters.bump(DriverEvent::TunWriteError);
        return;
    }
    write_tun_now(tun, counters, &head, pkt);
}
