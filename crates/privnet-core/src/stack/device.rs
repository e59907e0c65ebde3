//! The in-memory device between smoltcp and the driver (`Medium::Ip`).
//!
//! smoltcp reaches the outside through a `phy::Device` that lends it buffers through tokens. Here
//! the device is a short-lived [`Port`] built for each call into the interface:
//! - inbound, it lends smoltcp the caller's packet itself (no copy): one packet per call;
//! - outbound, it writes into recycled buffers of the [`TxQueue`], which the driver drains. When
//!   the queue is full, `transmit` says so and smoltcp keeps the data in its socket buffers for
//!   the next poll: **the device never drops** (smoltcp #949: a device that drops what overflows a
//!   small queue makes large windows collapse). Replies to an inbound packet (an RST, an echo
//!   reply) are always queued, whatever the queue holds.
//!
//! Buffers are allocated only while the pools warm up; afterwards a packet costs no allocation.
//! Packets up to the MTU use MTU-sized buffers, segmentation-offload super-packets 64 KiB ones.

use std::collections::VecDeque;
use std::num::{NonZeroU16, NonZeroUsize};

use smoltcp::phy::{
    self, Checksum, ChecksumCapabilities, DeviceCapabilities, Medium, PacketMeta,
    SegmentationCapabilities,
};
use smoltcp::time::Instant as SmolInstant;

use crate::checksum::{fold, sum};
use crate::packet::{IpPacket, Transport};

/// Largest packet smoltcp may hand the device with segmentation offload (IPv4's total length).
pub const SUPER_PACKET: usize = 65_535;
/// Packets the queue holds before `transmit` refuses (a 64 KiB burst of MTU-sized segments).
const QUEUE_PACKETS: usize = 64;
/// Bytes the queue holds before `transmit` refuses (four super-packets).
const QUEUE_BYTES: usize = 4 * SUPER_PACKET;

/// A packet the stack sends, in a recycled buffer: `buf[..len]`. Give it back with
/// `Stack::recycle` once it is sealed.
#[derive(Debug)]
pub struct Outbound {
    /// The buffer (longer than the packet).
    pub buf: Vec<u8>,
    /// Length of the packet.
    pub len: usize,
    /// For a TCP super-packet (segmentation offload): the payload bytes per segment to cut it
    /// into. Such packets, and every TCP packet when offload is on, carry no checksum yet.
    pub segment: Option<NonZeroU16>,
}

impl Outbound {
    /// The packet's bytes.
    #[inline]
    pub fn packet(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or(&[])
    }
}

/// Outbound packets waiting for the driver, and the buffers to build the next ones in.
#[derive(Debug)]
pub(crate) struct TxQueue {
    pub(crate) packets: VecDeque<Outbound>,
    bytes: usize,
    mtu: usize,
    small: Vec<Vec<u8>>,
    large: Vec<Vec<u8>>,
}

impl TxQueue {
    pub(crate) fn new(mtu: usize) -> Self {
        Self {
            packets: VecDeque::with_capacity(QUEUE_PACKETS),
            bytes: 0,
            mtu,
            small: Vec::new(),
            large: Vec::new(),
        }
    }

    /// Whether `transmit` refuses new packets.
    #[inline]
    pub(crate) fn is_full(&self) -> bool {
        self.packets.len() >= QUEUE_PACKETS || self.bytes >= QUEUE_BYTES
    }

    /// The next packet to seal.
    #[inline]
    pub(crate) fn pop(&mut self) -> Option<Outbound> {
        let p = self.packets.pop_front()?;
        self.bytes = self.bytes.saturating_sub(p.len);
        Some(p)
    }

    /// Take a buffer of a sealed packet back.
    pub(crate) fn recycle(&mut self, mut p: Outbound) {
        let cap = p.buf.len();
        // Keep the pools no larger than a full queue needs.
        if cap >= SUPER_PACKET {
            if self.large.len() < QUEUE_BYTES / SUPER_PACKET {
                self.large.push(std::mem::take(&mut p.buf));
            }
        } else if cap >= self.mtu && self.small.len() < QUEUE_PACKETS {
            self.small.push(std::mem::take(&mut p.buf));
        }
    }

    /// Free the pooled buffers (an idle stack gives its memory back).
    pub(crate) fn shrink(&mut self) {
        self.small = Vec::new();
        self.large = Vec::new();
    }

    fn buffer(&mut self, len: usize) -> Vec<u8> {
        let (pool, size) = if len <= self.mtu {
            (&mut self.small, self.mtu)
        } else {
            (&mut self.large, SUPER_PACKET.max(len))
        };
        match pool.pop() {
            Some(b) if b.len() >= len => b,
            _ => vec![0u8; size.max(len)],
        }
    }

    fn push(&mut self, buf: Vec<u8>, len: usize, meta: PacketMeta) {
        self.bytes += len;
        self.packets.push_back(Outbound {
            buf,
            len,
            segment: meta.segmentation_offload_size,
        });
    }
}

/// The device smoltcp sees during one call: at most one inbound packet (borrowed) and the
/// outbound queue.
pub(crate) struct Port<'a> {
    pub(crate) rx: Option<&'a [u8]>,
    pub(crate) tx: &'a mut TxQueue,
    pub(crate) caps: &'a DeviceCapabilities,
}

impl phy::Device for Port<'_> {
    type RxToken<'b>
        = Rx<'b>
    where
        Self: 'b;
    type TxToken<'b>
        = Tx<'b>
    where
        Self: 'b;

    fn receive(&mut self, _: SmolInstant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let packet = self.rx.take()?;
        Some((
            Rx(packet),
            Tx {
                queue: self.tx,
                meta: PacketMeta::default(),
            },
        ))
    }

    fn transmit(&mut self, _: SmolInstant) -> Option<Self::TxToken<'_>> {
        if self.tx.is_full() {
            return None;
        }
        Some(Tx {
            queue: self.tx,
            meta: PacketMeta::default(),
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        self.caps.clone()
    }
}

/// An inbound packet lent to smoltcp.
pub(crate) struct Rx<'a>(&'a [u8]);

impl phy::RxToken for Rx<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.0)
    }
}

/// Room for one outbound packet.
pub(crate) struct Tx<'a> {
    queue: &'a mut TxQueue,
    meta: PacketMeta,
}

impl phy::TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buf = self.queue.buffer(len);
        let r = f(&mut buf[..len]);
        self.queue.push(buf, len, self.meta);
        r
    }

    fn set_meta(&mut self, meta: PacketMeta) {
        self.meta = meta;
    }
}

/// The device's capabilities: IP medium, the MTU, no rx checksum verification (every packet was
/// authenticated by the AEAD of the tunnel, so a transmission error cannot reach it; a peer that
/// sends wrong checksums only hurts its own connection), and with offload TCP segmentation up to
/// [`SUPER_PACKET`] with the TCP checksum left to the driver (smoltcp requires both together).
pub(crate) fn capabilities(mtu: usize, max_burst: Option<usize>, offload: bool) -> DeviceCapabilities {
    let mut checksum = ChecksumCapabilities::ignored();
    checksum.ipv4 = Checksum::Tx;
    checksum.udp = Checksum::Tx;
    checksum.icmpv4 = Checksum::Tx;
    checksum.icmpv6 = Checksum::Tx;
    checksum.tcp = if offload { Checksum::None } else { Checksum::Tx };
    let mut segmentation = SegmentationCapabilities::default();
    if offload {
        segmentation.tcpv4 = NonZeroUsize::new(SUPER_PACKET);
        segmentation.tcpv6 = NonZeroUsize::new(SUPER_PACKET);
    }
    let mut caps = DeviceCapabilities::default();
    caps.medium = Medium::Ip;
    caps.max_transmission_unit = mtu;
    caps.max_burst_size = max_burst;
    caps.checksum = checksum;
    caps.segmentation = segmentation;
    caps
}

/// Fill in the TCP checksum of a complete TCP packet (offload leaves it zero). Returns `false`
/// (and changes nothing) for a packet that is not one.
pub fn fill_tcp_checksum(packet: &mut [u8]) -> bool {
    let Ok(p) = IpPacket::new_checked(&*packet) else {
        return false;
    };
    if !matches!(p.transport(), Transport::Tcp(_)) {
        return false;
    }
    let (at, end) = (p.transport_offset(), p.total_len());
    let pseudo = p.addresses().pseudo_header(6, end - at);
    let Some(l4) = packet.get_mut(at..end) else {
        return false;
    };
    l4[16] = 0;
    l4[17] = 0;
    let c = !fold(sum(l4, pseudo));
    l4[16..18].copy_from_slice(&c.to_be_bytes());
    true
}
