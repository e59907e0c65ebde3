//! The underlay: one non-blocking UDP socket with segmentation offloads, and the send stage.
//!
//! Sealed datagrams are staged contiguously in one buffer; a flush sends runs of datagrams to one
//! destination with one size (the last of a run may be shorter) as a single `UDP_SEGMENT` send
//! (GSO), and falls back to one datagram per send for good the first time the kernel or the route
//! refuses segmentation. Receives use `UDP_GRO`: one call may return a train of datagrams of one
//! flow, with its segment size.

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd};

use tokio::net::UdpSocket;

use super::counters::{Counters, DriverEvent};
use super::error::DriverError;
use super::sys;
use super::sys::udp as udpx;
use super::workers::{StagedSeal, Workers};
use crate::node::Node;
use crate::wire::DATA_HEADER_LEN;

/// Staging area for sealed datagrams awaiting a (GSO) send.
const STAGE_BYTES: usize = 1 << 20;
/// Free room the stage must have before another unit is read from the inner side (64 KiB of
/// inner data becomes at most ~47 datagrams of overhead-inflated size).
pub(crate) const STAGE_HEADROOM: usize = 80 * 1024;

/// Sealed datagrams waiting to be sent, contiguous in one buffer so that runs to one destination
/// with one size go out as a single `UDP_SEGMENT` send.
pub(crate) struct Stage {
    pub(crate) buf: Vec<u8>,
    pub(crate) used: usize,
    /// (offset, length, destination) of each staged datagram.
    pub(crate) items: Vec<(usize, usize, SocketAddr)>,
    /// With crypto workers (`workers.rs`): the staged datagrams whose encryption is still to
    /// run, done by [`Underlay::flush`] before anything is sent.
    pub(crate) seals: Vec<StagedSeal>,
    /// Their plaintexts (empty without workers), `plain_used` bytes of it taken.
    pub(crate) plain: Vec<u8>,
    pub(crate) plain_used: usize,
    /// The driver's crypto workers (the receive path borrows them from here too).
    pub(crate) workers: Workers,
}

impl Stage {
    pub(crate) fn new(workers: Workers) -> Self {
        let with = workers.enabled();
        Self {
            buf: vec![0u8; STAGE_BYTES],
            used: 0,
            items: Vec::with_capacity(1024),
            seals: Vec::with_capacity(if with { 1024 } else { 0 }),
            plain: if with {
                vec![0u8; STAGE_BYTES]
            } else {
                Vec::new()
            },
            plain_used: 0,
            workers,
        }
    }

    /// Run the encryptions left for later ([`Stage::seals`]), split between the workers; a
    /// datagram whose seal failed is taken out of the stage (counted), never sent half made.
    pub(crate) fn seal_pending(&mut self, counters: &mut Counters) {
        if self.seals.is_empty() {
            return;
        }
        let split = self.workers.seal(
            &mut self.seals,
            &mut self.buf,
            &self.plain[..self.plain_used],
        );
        counters.split(split);
        if self.seals.iter().any(|s| !s.ok) {
            let failed: Vec<usize> = self
                .seals
                .iter()
                .filter(|s| !s.ok)
                .map(|s| s.at - DATA_HEADER_LEN)
                .collect();
            for _ in &failed {
                counters.bump(DriverEvent::SealFailed);
            }
            self.items.retain(|(at, _, _)| !failed.contains(at));
        }
        self.seals.clear();
        self.plain_used = 0;
    }

    /// Bytes still free.
    pub(crate) fn room(&self) -> usize {
        self.buf.len() - self.used
    }

    /// Whether nothing waits to be sent.
    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// The underlay socket and what the kernel accepted of its offloads.
pub(crate) struct Underlay {
    udp: UdpSocket,
    /// The kernel takes `UDP_SEGMENT` sends on the socket (cleared at the first refusal).
    gso: bool,
    /// The kernel coalesces received datagrams (`UDP_GRO`).
    gro: bool,
    local: SocketAddr,
}

impl Underlay {
    /// Bind `listen` (non-blocking, `socket_buffer` bytes of buffers unless 0, GSO/GRO probed) and
    /// register it with the current tokio runtime.
    pub(crate) fn bind(listen: SocketAddr, socket_buffer: usize) -> Result<Self, DriverError> {
        let std_sock = std::net::UdpSocket::bind(listen).map_err(|source| DriverError::Bind {
            addr: listen,
            source,
        })?;
        let setup = |source| DriverError::Socket {
            addr: listen,
            source,
        };
        std_sock.set_nonblocking(true).map_err(setup)?;
        if socket_buffer > 0 {
            sys::set_socket_buffers(&std_sock, socket_buffer);
        }
        let gso = udpx::gso_supported(std_sock.as_raw_fd());
        let gro = udpx::enable_gro(std_sock.as_raw_fd());
        let udp = UdpSocket::from_std(std_sock).map_err(setup)?;
        let local = udp.local_addr().map_err(setup)?;
        Ok(Self {
            udp,
            gso,
            gro,
            local,
        })
    }

    /// Mark every datagram of the socket with `mark` (`SO_MARK`, needs `CAP_NET_ADMIN`): the
    /// default route's rules send unmarked traffic into the tunnel, this socket's past it.
    pub(crate) fn set_mark(&self, mark: u32) -> Result<(), DriverError> {
        udpx::set_mark(self.udp.as_raw_fd(), mark).map_err(|source| DriverError::Socket {
            addr: self.local,
            source,
        })
    }

    /// The bound address.
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Whether GSO sends are on.
    pub(crate) fn gso(&self) -> bool {
        self.gso
    }

    /// Whether GRO receives are on.
    pub(crate) fn gro(&self) -> bool {
        self.gro
    }

    /// The socket, for the batch hold's `ppoll`.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.udp.as_fd()
    }

    /// Wait until the socket is readable.
    pub(crate) async fn readable(&self) -> std::io::Result<()> {
        self.udp.readable().await
    }

    /// One receive call (a datagram or a GRO train) into `buf` without waiting: `(bytes, source,
    /// segment size)`. `WouldBlock` when empty (which also re-arms tokio's readiness).
    pub(crate) fn try_recv(&self, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr, usize)> {
        let fd = self.udp.as_raw_fd();
        self.udp.try_io(tokio::io::Interest::READABLE, || {
            udpx::recv_segments(fd, buf)
        })
    }

    /// Send everything staged: runs of datagrams to one destination with one size (the last of a
    /// run may be shorter) go out as one `UDP_SEGMENT` send.
    pub(crate) async fn flush(&mut self, stage: &mut Stage, counters: &mut Counters) {
        stage.seal_pending(counters);
        let items = std::mem::take(&mut stage.items);
        let buf = std::mem::take(&mut stage.buf);
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
            self.send_run(&buf[start..start + total], size, dst, counters)
                .await;
            i = j;
        }
        stage.buf = buf;
        stage.items = items;
        stage.items.clear();
        stage.used = 0;
    }

    async fn send_run(
        &mut self,
        bytes: &[u8],
        segment: usize,
        dst: SocketAddr,
        counters: &mut Counters,
    ) {
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
                        self.send(d, dst, counters).await;
                    }
                    return;
                }
                Err(e) => {
                    tracing::debug!(%dst, "udp send: {e}");
                    counters.bump(DriverEvent::UdpSendError);
                    return;
                }
            }
        }
    }

    /// Send one datagram, waiting while the socket's buffer is full.
    pub(crate) async fn send(&self, bytes: &[u8], dst: SocketAddr, counters: &mut Counters) {
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
                    counters.bump(DriverEvent::UdpSendError);
                    return;
                }
            }
        }
    }

    /// Send the core's control traffic (handshakes, cookies, keepalives, queued packets).
    pub(crate) async fn flush_control(
        &self,
        node: &mut Node,
        buf: &mut [u8],
        counters: &mut Counters,
        now: std::time::Instant,
    ) {
        while let Some(t) = node.poll_transmit(buf, now) {
            self.send(&buf[..t.len], t.dst, counters).await;
        }
    }
}
