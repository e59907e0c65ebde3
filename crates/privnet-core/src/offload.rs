//! Segmentation offload, in software: split a TCP or UDP "super-packet" handed over by a TUN device
//! with TSO/USO enabled into wire-sized packets, and complete partial checksums.
//!
//! With `IFF_VNET_HDR` and `TUNSETOFFLOAD`, the kernel gives the TUN reader one packet of up to 64 KiB
//! per TCP burst instead of ~45 MTU-sized ones, described by a virtio-net header (`gso_type`,
//! `gso_size` = MSS, `csum_start`/`csum_offset`). One read then replaces dozens, which is where the
//! userspace overlays of 2023+ got their speed. This module turns such a packet back into ordinary
//! IP packets (correct lengths, IPv4 ids, TCP sequence numbers and flags, full checksums) so that the
//! peer receives packets any IP stack accepts. Pure functions, no allocation.
//!
//! The other direction, [`Coalescer`], merges decrypted packets from *remote* members back into
//! super-packets for the TUN, rewriting their headers. Headers are read only through the checked
//! view [`crate::packet::IpPacket`], and checksums come from [`crate::checksum`].
//!
//! # Invariant of the coalescer
//!
//! [`Coalescer::finish`] rewrites the length, checksum and pseudo-header fields of the packet it
//! built, at offsets taken from the pending packet's `Shape`. A `Shape` can only be made by
//! `Shape::of` from an [`IpPacket`] (so from [`IpPacket::new_checked`]) and proves: an IPv4 header
//! without options that is not a fragment (20 bytes), or an IPv6 header without extension headers
//! (40 bytes), whose length field equals the packet's length (at most [`Coalescer::MAX`]),
//! followed by a complete TCP header of the recorded length or an 8-byte UDP header whose length
//! field covers the rest, and at least one payload byte. The coalescer keeps a `Shape` only
//! together with the bytes it was made from (copied into its buffer by `start`); joining packets
//! (which must have an equal `Shape`) only appends payload after the pending length and rewrites
//! the TCP flags byte inside the header. So every offset `finish` writes lies inside the header of
//! the packet it describes, whatever a remote member sends.

use crate::checksum::{fold, sum};
use crate::packet::{Addresses, IpPacket, IpVersion, Transport, IPV6_HEADER_LEN};
use shape::{Candidate, Shape};

#[cfg(test)]
mod tests;

/// Segmentation type, as in the virtio-net header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GsoType {
    /// A single packet.
    None,
    /// TCP over IPv4.
    TcpV4,
    /// TCP over IPv6.
    TcpV6,
    /// UDP (USO), either family.
    Udp,
}

impl GsoType {
    /// From the virtio-net `gso_type` byte (ECN bit ignored).
    pub fn from_virtio(t: u8) -> Option<Self> {
        match t & 0x7f {
            0 => Some(Self::None),
            1 => Some(Self::TcpV4),
            4 => Some(Self::TcpV6),
            5 => Some(Self::Udp),
            _ => None,
        }
    }
}

/// Why a super-packet could not be segmented.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OffloadError {
    /// Headers malformed or not the kind the GSO type announces.
    Malformed,
    /// Segment size zero or the output buffer too small.
    BadSize,
}

/// Complete a partial checksum (virtio `NEEDS_CSUM`): the field at `csum_start + csum_offset` holds
/// the pseudo-header sum; the checksum of `packet[csum_start..]` is folded in and stored.
pub fn complete_checksum(
    packet: &mut [u8],
    csum_start: usize,
    csum_offset: usize,
) -> Result<(), OffloadError> {
    let at = csum_start
        .checked_add(csum_offset)
        .filter(|a| a + 2 <= packet.len())
        .ok_or(OffloadError::Malformed)?;
    let s = fold(sum(&packet[csum_start..], 0));
    let v = !s;
    packet[at..at + 2].copy_from_slice(&v.to_be_bytes());
    Ok(())
}

struct Layout {
    ip_len: usize,
    l4_len: usize,
    addrs: Addresses,
    v4: bool,
}

/// The headers of a super-packet, read by the checked view: an IPv4 header (options allowed) or
/// an IPv6 header without extension headers (the segments' payload length assumes none), then a
/// complete TCP (`tcp`) or UDP header, not a non-first fragment.
fn layout(pkt: &[u8], tcp: bool) -> Result<Layout, OffloadError> {
    let p = IpPacket::new_checked(pkt).map_err(|_| OffloadError::Malformed)?;
    let l4_len = match (tcp, p.transport()) {
        (true, Transport::Tcp(t)) => usize::from(t.header_len),
        (false, Transport::Udp(_)) => 8,
        _ => return Err(OffloadError::Malformed),
    };
    let v4 = p.version() == IpVersion::V4;
    if !v4 && p.transport_offset() != IPV6_HEADER_LEN {
        return Err(OffloadError::Malformed);
    }
    Ok(Layout {
        ip_len: p.transport_offset(),
        l4_len,
        addrs: p.addresses(),
        v4,
    })
}

/// Split `pkt` (a TCP or UDP super-packet of `kind`) into segments of at most `mss` payload bytes.
/// Each segment is built in `scratch` and passed to `emit`; returns the number of segments.
///
/// A packet no larger than one segment is emitted as is, with its checksum completed.
pub fn segment(
    pkt: &[u8],
    kind: GsoType,
    mss: usize,
    scratch: &mut [u8],
    mut emit: impl FnMut(&[u8]),
) -> Result<usize, OffloadError> {
    let tcp = match kind {
        GsoType::TcpV4 | GsoType::TcpV6 => true,
        GsoType::Udp => false,
        GsoType::None => return Err(OffloadError::Malformed),
    };
    if mss == 0 {
        return Err(OffloadError::BadSize);
    }
    let l = layout(pkt, tcp)?;
    let hdr = l.ip_len + l.l4_len;
    if scratch.len() < hdr + mss {
        return Err(OffloadError::BadSize);
    }
    let payload = &pkt[hdr..];
    let n = payload.len().div_ceil(mss).max(1);
    let seq0 = if tcp {
        u32::from_be_bytes([
            pkt[l.ip_len + 4],
            pkt[l.ip_len + 5],
            pkt[l.ip_len + 6],
            pkt[l.ip_len + 7],
        ])
    } else {
        0
    };
    let id0 = u16::from_be_bytes([pkt[4], pkt[5]]);
    let flags0 = if tcp { pkt[l.ip_len + 13] } else { 0 };
    // The address part of the pseudo-header, summed once: each segment adds protocol and length
    // (the same sum `Addresses::pseudo_header` gives).
    let proto = if tcp { 6 } else { 17 };
    let addr_sum = l.addrs.pseudo_header(0, 0);
    for i in 0..n {
        let start = i * mss;
        let chunk = &payload[start.min(payload.len())..(start + mss).min(payload.len())];
        let total = hdr + chunk.len();
        let seg = &mut scratch[..total];
        seg[..hdr].copy_from_slice(&pkt[..hdr]);
        seg[hdr..].copy_from_slice(chunk);
        let l4 = l.ip_len;
        let l4_total = l.l4_len + chunk.len();
        if l.v4 {
            seg[2..4].copy_from_slice(&(total as u16).to_be_bytes());
            seg[4..6].copy_from_slice(&id0.wrapping_add(i as u16).to_be_bytes());
            seg[10..12].copy_from_slice(&[0, 0]);
            let c = !fold(sum(&seg[..l.ip_len], 0));
            seg[10..12].copy_from_slice(&c.to_be_bytes());
        } else {
            seg[4..6].copy_from_slice(&(l4_total as u16).to_be_bytes());
        }
        let csum_at = if tcp {
            let seq = seq0.wrapping_add(start as u32);
            seg[l4 + 4..l4 + 8].copy_from_slice(&seq.to_be_bytes());
            let mut f = flags0;
            if i + 1 < n {
                f &= !(0x01 | 0x08); // FIN, PSH only on the last segment
            }
            if i > 0 {
                f &= !0x80; // CWR only on the first
            }
            seg[l4 + 13] = f;
            l4 + 16
        } else {
            seg[l4 + 4..l4 + 6].copy_from_slice(&(l4_total as u16).to_be_bytes());
            l4 + 6
        };
        seg[csum_at..csum_at + 2].copy_from_slice(&[0, 0]);
        let acc = sum(&seg[l4..], addr_sum + proto + l4_total as u64);
        let mut c = !fold(acc);
        if !tcp && c == 0 {
            c = 0xffff;
        }
        seg[csum_at..csum_at + 2].copy_from_slice(&c.to_be_bytes());
        emit(seg);
    }
    Ok(n)
}

/// What a coalesced packet needs in its virtio-net header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Coalesced {
    /// Bytes of the packet in the output buffer.
    pub len: usize,
    /// `None` for a single plain packet (checksum already complete), else the GSO type.
    pub gso: GsoType,
    /// IP + TCP header length.
    pub hdr_len: u16,
    /// Payload bytes per segment.
    pub gso_size: u16,
    /// Where the TCP header (checksum coverage) starts.
    pub csum_start: u16,
    /// Offset of the checksum field from `csum_start`.
    pub csum_offset: u16,
}

/// Merges consecutive packets of one flow into one super-packet (receive-side GRO), so the driver
/// writes one packet to the TUN where it received dozens:
/// - TCP: plain data segments (ACK, optionally PSH on the last) with identical headers but for
///   sequence number (which must be contiguous), checksum, IPv4 id and length;
/// - UDP (USO, `VIRTIO_NET_HDR_GSO_UDP_L4`): datagrams of one flow (same addresses, ports and IP
///   header fields but for length, id and checksum) with equal payload sizes, the last possibly
///   shorter, at most [`Coalescer::MAX_UDP_SEGMENTS`] of them. The kernel splits the super-packet
///   back into the same datagrams before any socket sees them.
///
/// Everything else is passed through unchanged. The merged packet carries the pseudo-header sum in
/// its checksum field (virtio `NEEDS_CSUM`).
#[derive(Debug)]
pub struct Coalescer {
    buf: Vec<u8>,
    /// The packet being built in `buf[..pending.len]`, if any.
    pending: Option<Pending>,
    /// Whether UDP datagrams may be merged (the TUN takes USO packets: Linux ≥ 6.2).
    merge_udp: bool,
    stats: CoalescerStats,
}

/// The packet being built.
#[derive(Clone, Copy, Debug)]
struct Pending {
    /// The layout of `buf[..len]`, proven by the checked parser on the first packet of the run,
    /// whose bytes were copied into `buf` with it (see the module docs).
    shape: Shape,
    len: usize,
    /// Payload bytes of the first packet: the segment size.
    seg: usize,
    segs: usize,
    /// TCP: the sequence number the next segment must carry.
    next_seq: u32,
    /// Whether another packet may still join.
    open: bool,
}

/// What a [`Coalescer`] merged so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CoalescerStats {
    /// TCP super-packets built.
    pub tcp_super_packets: u64,
    /// TCP segments that went into them.
    pub tcp_segments: u64,
    /// UDP (USO) super-packets built.
    pub udp_super_packets: u64,
    /// UDP datagrams that went into them.
    pub udp_datagrams: u64,
}

impl Default for Coalescer {
    fn default() -> Self {
        Self::new()
    }
}

impl Coalescer {
    /// Largest super-packet built.
    pub const MAX: usize = shape::MAX_LEN;
    /// Most UDP datagrams merged into one super-packet (the kernel's `UDP_MAX_SEGMENTS` of older
    /// kernels; newer ones take 128).
    pub const MAX_UDP_SEGMENTS: usize = 64;

    /// An empty coalescer.
    pub fn new() -> Self {
        Self {
            buf: vec![0u8; Self::MAX],
            pending: None,
            merge_udp: true,
            stats: CoalescerStats::default(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> CoalescerStats {
        self.stats
    }

    /// Merge UDP datagrams (USO) or not. Only for a TUN whose kernel takes
    /// `VIRTIO_NET_HDR_GSO_UDP_L4` packets (Linux ≥ 6.2); older ones refuse the write. The pending
    /// packet, if any, must have been finished first.
    pub fn set_merge_udp(&mut self, on: bool) {
        self.merge_udp = on;
    }

    /// Whether a packet is pending.
    pub fn is_empty(&self) -> bool {
        self.pending.is_none()
    }

    /// Offer `pkt`. If it cannot join the pending packet, the pending packet is finished first:
    /// `flush` receives it (bytes and header info). Then `pkt` is either kept pending or, if it can
    /// never be merged, passed to `flush` as is.
    pub fn push(&mut self, pkt: &[u8], mut flush: impl FnMut(&[u8], Coalesced)) {
        let candidate = IpPacket::new_checked(pkt)
            .ok()
            .and_then(|p| Shape::of(&p, self.merge_udp));
        match candidate {
            None => {
                self.finish(&mut flush);
                flush(pkt, plain(pkt.len()));
            }
            Some(c) if c.shape.is_udp() => self.push_udp(pkt, c.shape, flush),
            Some(c) => self.push_tcp(pkt, c, flush),
        }
    }

    fn push_tcp(&mut self, pkt: &[u8], c: Candidate, mut flush: impl FnMut(&[u8], Coalesced)) {
        let (ip, hdr, v4) = (c.shape.ip_len(), c.shape.hdr_len(), c.shape.is_v4());
        let payload = pkt.len() - hdr;
        if let Some(p) = &mut self.pending {
            let joins = p.open
                && p.shape == c.shape
                && c.seq == p.next_seq
                && payload <= p.seg
                && p.len + payload <= Self::MAX
                && same_headers(&self.buf[..hdr], &pkt[..hdr], ip, v4);
            if joins {
                self.buf[p.len..p.len + payload].copy_from_slice(&pkt[hdr..]);
                p.len += payload;
                p.segs += 1;
                p.next_seq = c.seq.wrapping_add(payload as u32);
                // Take the last segment's flags (PSH), and stop after a short or PSH segment.
                self.buf[ip + 13] = c.flags;
                if payload < p.seg || c.flags & 0x08 != 0 {
                    p.open = false;
                }
                return;
            }
        }
        self.finish(&mut flush);
        self.start(
            pkt,
            c.shape,
            c.seq.wrapping_add(payload as u32),
            c.flags & 0x08 == 0,
        );
    }

    /// Make `pkt` (whose layout `shape` proves) the pending packet.
    fn start(&mut self, pkt: &[u8], shape: Shape, next_seq: u32, open: bool) {
        self.buf[..pkt.len()].copy_from_slice(pkt);
        self.pending = Some(Pending {
            shape,
            len: pkt.len(),
            seg: pkt.len() - shape.hdr_len(),
            segs: 1,
            next_seq,
            open,
        });
    }

    fn push_udp(&mut self, pkt: &[u8], shape: Shape, mut flush: impl FnMut(&[u8], Coalesced)) {
        let (ip, hdr, v4) = (shape.ip_len(), shape.hdr_len(), shape.is_v4());
        let payload = pkt.len() - hdr;
        if let Some(p) = &mut self.pending {
            let joins = p.open
                && p.shape == shape
                && payload <= p.seg
                && p.segs < Self::MAX_UDP_SEGMENTS
                && p.len + payload <= Self::MAX
                && same_ip_headers(&self.buf[..ip], &pkt[..ip], v4)
                && self.buf[ip..ip + 4] == pkt[ip..ip + 4];
            if joins {
                self.buf[p.len..p.len + payload].copy_from_slice(&pkt[hdr..]);
                p.len += payload;
                p.segs += 1;
                // A shorter datagram can only be the last of a run.
                if payload < p.seg {
                    p.open = false;
                }
                return;
            }
        }
        self.finish(&mut flush);
        self.start(pkt, shape, 0, true);
    }

    /// Hand the pending packet, if any, to `flush`.
    pub fn finish(&mut self, flush: &mut impl FnMut(&[u8], Coalesced)) {
        let Some(p) = self.pending.take() else {
            return;
        };
        let len = p.len;
        if p.segs == 1 {
            flush(&self.buf[..len], plain(len));
            return;
        }
        let segs = p.segs as u64;
        let udp = p.shape.is_udp();
        if udp {
            self.stats.udp_super_packets += 1;
            self.stats.udp_datagrams += segs;
        } else {
            self.stats.tcp_super_packets += 1;
            self.stats.tcp_segments += segs;
        }
        // In bounds: `p.shape` proves the header layout of `buf[..len]` (module docs).
        let (ip, hdr) = (p.shape.ip_len(), p.shape.hdr_len());
        let b = &mut self.buf[..len];
        let addrs = if p.shape.is_v4() {
            b[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            b[10..12].copy_from_slice(&[0, 0]);
            let c = !fold(sum(&b[..ip], 0));
            b[10..12].copy_from_slice(&c.to_be_bytes());
            Addresses::V4 {
                src: [b[12], b[13], b[14], b[15]].into(),
                dst: [b[16], b[17], b[18], b[19]].into(),
            }
        } else {
            b[4..6].copy_from_slice(&((len - 40) as u16).to_be_bytes());
            let mut s = [0u8; 16];
            s.copy_from_slice(&b[8..24]);
            let mut d = [0u8; 16];
            d.copy_from_slice(&b[24..40]);
            Addresses::V6 {
                src: s.into(),
                dst: d.into(),
            }
        };
        // NEEDS_CSUM: the checksum field holds the pseudo-header sum, the kernel does the rest.
        let csum_offset = p.shape.csum_offset();
        let (proto, gso) = if udp {
            // The UDP length field covers the whole super-packet, as in a USO send.
            b[ip + 4..ip + 6].copy_from_slice(&((len - ip) as u16).to_be_bytes());
            (17, GsoType::Udp)
        } else if p.shape.is_v4() {
            (6, GsoType::TcpV4)
        } else {
            (6, GsoType::TcpV6)
        };
        let ps = fold(addrs.pseudo_header(proto, len - ip));
        b[ip + csum_offset..ip + csum_offset + 2].copy_from_slice(&ps.to_be_bytes());
        flush(
            b,
            Coalesced {
                len,
                gso,
                hdr_len: hdr as u16,
                gso_size: p.seg as u16,
                csum_start: ip as u16,
                csum_offset: csum_offset as u16,
            },
        );
    }
}

fn plain(len: usize) -> Coalesced {
    Coalesced {
        len,
        gso: GsoType::None,
        hdr_len: 0,
        gso_size: 0,
        csum_start: 0,
        csum_offset: 0,
    }
}

/// IP headers equal except the fields that differ between packets of one burst.
fn same_ip_headers(a: &[u8], b: &[u8], v4: bool) -> bool {
    if v4 {
        // version/IHL, TOS, flags, TTL, protocol, addresses (skip length, id, checksum).
        a[0..2] == b[0..2] && a[6..10] == b[6..10] && a[12..20] == b[12..20]
    } else {
        // version, traffic class, flow label, next header, hop limit, addresses (skip length).
        a[0..4] == b[0..4] && a[6..40] == b[6..40]
    }
}

/// Headers equal except the fields that differ between segments of one burst.
fn same_headers(a: &[u8], b: &[u8], ip: usize, v4: bool) -> bool {
    if !same_ip_headers(a, b, v4) {
        return false;
    }
    // TCP: ports, ack, data offset, window, urgent, options; skip seq (4..8), flags (13: PSH),
    // checksum (16..18).
    a[ip..ip + 4] == b[ip..ip + 4]
        && a[ip + 8..ip + 13] == b[ip + 8..ip + 13]
        && a[ip + 14..ip + 16] == b[ip + 14..ip + 16]
        && a[ip + 18..] == b[ip + 18..]
}

/// Verify the transport checksum of an IPv4/IPv6 TCP or UDP packet (for tests).
pub fn transport_checksum_ok(pkt: &[u8]) -> bool {
    let Ok(p) = IpPacket::new_checked(pkt) else {
        return false;
    };
    let proto = match p.transport() {
        Transport::Tcp(_) => 6,
        Transport::Udp(_) => 17,
        _ => return false,
    };
    let Some(l4) = p.payload() else {
        return false;
    };
    fold(sum(l4, p.addresses().pseudo_header(proto, l4.len()))) == 0xffff
}

/// The one way to make a [`Shape`]: from a checked view. A leaf module, so that nothing else in
/// `offload` can build a `Shape` by hand.
mod shape {
    use crate::packet::{Fragment, IpPacket, IpVersion, Transport};

    /// Largest packet a shape describes: its length must fit the 16-bit length fields that
    /// `Coalescer::finish` rewrites.
    pub(super) const MAX_LEN: usize = 65_535;

    /// The proven header layout of a packet the coalescer may merge (see the invariant in the
    /// `offload` module docs). Two packets with equal shapes have their headers at the same
    /// offsets.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub(super) struct Shape {
        v4: bool,
        l4: L4,
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum L4 {
        Tcp { header_len: usize },
        Udp,
    }

    /// A mergeable packet: its shape and the per-packet TCP fields the coalescer compares.
    pub(super) struct Candidate {
        pub(super) shape: Shape,
        pub(super) seq: u32,
        pub(super) flags: u8,
    }

    impl Shape {
        /// `packet` as a coalescer candidate: a plain TCP data segment (ACK, optionally PSH,
        /// nothing else; at least one payload byte) or, if `udp`, a UDP datagram with at least one
        /// payload byte; in an IPv4 header without options that is not a fragment or an IPv6
        /// header without extension headers, whose length equals the buffer's (at most
        /// [`MAX_LEN`]).
        #[inline]
        pub(super) fn of(packet: &IpPacket<&[u8]>, udp: bool) -> Option<Candidate> {
            let len = packet.buffer().len();
            let v4 = match packet.version() {
                IpVersion::V4 => true,
                IpVersion::V6 => false,
            };
            let ip = if v4 { 20 } else { 40 };
            // One branch for the four checks (`|`, not `||`): this runs for every packet.
            if (len > MAX_LEN)
                | (packet.total_len() != len)
                | (packet.transport_offset() != ip)
                | (packet.fragment() != Fragment::Unfragmented)
            {
                return None;
            }
            match packet.transport() {
                Transport::Udp(u) if udp => {
                    let udp_len = usize::from(u.length);
                    (udp_len == len - ip && udp_len > 8).then_some(Candidate {
                        shape: Self { v4, l4: L4::Udp },
                        seq: 0,
                        flags: 0,
                    })
                }
                Transport::Tcp(t) => {
                    let header_len = usize::from(t.header_len);
                    // ACK set; no SYN/FIN/RST/URG/ECE/CWR (PSH allowed).
                    if len <= ip + header_len || t.flags.bits() & !0x08 != 0x10 {
                        return None;
                    }
                    Some(Candidate {
                        shape: Self {
                            v4,
                            l4: L4::Tcp { header_len },
                        },
                        seq: t.seq,
                        flags: t.flags.bits(),
                    })
                }
                _ => None,
            }
        }

        /// IPv4 (else IPv6).
        #[inline]
        pub(super) fn is_v4(self) -> bool {
            self.v4
        }

        /// A UDP datagram (else a TCP segment).
        #[inline]
        pub(super) fn is_udp(self) -> bool {
            self.l4 == L4::Udp
        }

        /// Length of the IP header: where the transport header starts.
        #[inline]
        pub(super) fn ip_len(self) -> usize {
            if self.v4 {
                20
            } else {
                40
            }
        }

        /// Length of the IP and transport headers: where the payload starts.
        #[inline]
        pub(super) fn hdr_len(self) -> usize {
            self.ip_len()
                + match self.l4 {
                    L4::Tcp { header_len } => header_len,
                    L4::Udp => 8,
                }
        }

        /// Offset of the transport checksum field from the transport header.
        #[inline]
        pub(super) fn csum_offset(self) -> usize {
            match self.l4 {
                L4::Tcp { .. } => 16,
                L4::Udp => 6,
            }
        }
    }
}
