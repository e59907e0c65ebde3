//! Segmentation offload, in software: split a TCP or UDP "super-packet" handed over by a TUN device
//! with TSO/USO enabled into wire-sized packets, and complete partial checksums.
//!
//! With `IFF_VNET_HDR` and `TUNSETOFFLOAD`, the kernel gives the TUN reader one packet of up to 64 KiB
//! per TCP burst instead of ~45 MTU-sized ones, described by a virtio-net header (`gso_type`,
//! `gso_size` = MSS, `csum_start`/`csum_offset`). One read then replaces dozens, which is where the
//! userspace overlays of 2023+ got their speed. This module turns such a packet back into ordinary
//! IP packets (correct lengths, IPv4 ids, TCP sequence numbers and flags, full checksums) so that the
//! peer receives packets any IP stack accepts. Pure functions, no allocation.

use std::net::IpAddr;

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

/// One's-complement sum of `data` (big-endian 16-bit words) added to `acc`, not folded.
///
/// The data is summed in native little-endian 32-bit words (no byte swaps, which lets the compiler
/// vectorise the loop), folded, and byte-swapped into the big-endian domain once at the end: the
/// one's-complement sum does not depend on byte order (RFC 1071 §2.B). The folded result is the
/// same as summing big-endian words one by one (checked against that in the tests).
#[inline]
pub fn sum(data: &[u8], acc: u64) -> u64 {
    let mut le: u64 = 0;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        le += u64::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]]));
    }
    let rest = chunks.remainder();
    let mut i = 0;
    while i + 2 <= rest.len() {
        le += u64::from(u16::from_le_bytes([rest[i], rest[i + 1]]));
        i += 2;
    }
    if let Some(&b) = rest.get(i) {
        // an odd last byte is the high byte of a big-endian word: the low byte here
        le += u64::from(b);
    }
    acc.wrapping_add(u64::from(fold(le).swap_bytes()))
}

/// Fold a sum to 16 bits.
#[inline]
pub fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The pseudo-header sum for `proto` with `len` bytes of transport data.
fn pseudo(src: IpAddr, dst: IpAddr, proto: u8, len: usize) -> u64 {
    let mut acc = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => sum(&d.octets(), sum(&s.octets(), 0)),
        (IpAddr::V6(s), IpAddr::V6(d)) => sum(&d.octets(), sum(&s.octets(), 0)),
        _ => 0,
    };
    acc += u64::from(proto);
    acc += len as u64;
    acc
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
    src: IpAddr,
    dst: IpAddr,
    v4: bool,
}

fn layout(pkt: &[u8], tcp: bool) -> Result<Layout, OffloadError> {
    let first = *pkt.first().ok_or(OffloadError::Malformed)?;
    let (ip_len, proto, src, dst, v4) = match first >> 4 {
        4 => {
            let ihl = usize::from(first & 0xf) * 4;
            if ihl < 20 || pkt.len() < ihl {
                return Err(OffloadError::Malformed);
            }
            let s: [u8; 4] = pkt[12..16]
                .try_into()
                .map_err(|_| OffloadError::Malformed)?;
            let d: [u8; 4] = pkt[16..20]
                .try_into()
                .map_err(|_| OffloadError::Malformed)?;
            (ihl, pkt[9], IpAddr::from(s), IpAddr::from(d), true)
        }
        6 => {
            if pkt.len() < 40 {
                return Err(OffloadError::Malformed);
            }
            let s: [u8; 16] = pkt[8..24].try_into().map_err(|_| OffloadError::Malformed)?;
            let d: [u8; 16] = pkt[24..40]
                .try_into()
                .map_err(|_| OffloadError::Malformed)?;
            (40, pkt[6], IpAddr::from(s), IpAddr::from(d), false)
        }
        _ => return Err(OffloadError::Malformed),
    };
    let l4_len = if tcp {
        if proto != 6 {
            return Err(OffloadError::Malformed);
        }
        let off = pkt.get(ip_len + 12).ok_or(OffloadError::Malformed)?;
        let l = usize::from(off >> 4) * 4;
        if l < 20 {
            return Err(OffloadError::Malformed);
        }
        l
    } else {
        if proto != 17 {
            return Err(OffloadError::Malformed);
        }
        8
    };
    if pkt.len() < ip_len + l4_len {
        return Err(OffloadError::Malformed);
    }
    Ok(Layout {
        ip_len,
        l4_len,
        src,
        dst,
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
        let proto = if tcp { 6 } else { 17 };
        let acc = sum(&seg[l4..], pseudo(l.src, l.dst, proto, l4_total));
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
    len: usize,
    hdr: usize,
    ip: usize,
    seg: usize,
    segs: usize,
    next_seq: u32,
    v4: bool,
    udp: bool,
    open: bool,
    /// Whether UDP datagrams may be merged (the TUN takes USO packets: Linux ≥ 6.2).
    merge_udp: bool,
    stats: CoalescerStats,
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
    pub const MAX: usize = 65_535;
    /// Most UDP datagrams merged into one super-packet (the kernel's `UDP_MAX_SEGMENTS` of older
    /// kernels; newer ones take 128).
    pub const MAX_UDP_SEGMENTS: usize = 64;

    /// An empty coalescer.
    pub fn new() -> Self {
        Self {
            buf: vec![0u8; Self::MAX],
            len: 0,
            hdr: 0,
            ip: 0,
            seg: 0,
            segs: 0,
            next_seq: 0,
            v4: false,
            udp: false,
            open: false,
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
        self.len == 0
    }

    /// Offer `pkt`. If it cannot join the pending packet, the pending packet is finished first:
    /// `flush` receives it (bytes and header info). Then `pkt` is either kept pending or, if it can
    /// never be merged, passed to `flush` as is.
    pub fn push(&mut self, pkt: &[u8], mut flush: impl FnMut(&[u8], Coalesced)) {
        if self.merge_udp {
            if let Some((ip, v4)) = mergeable_udp(pkt) {
                self.push_udp(pkt, ip, v4, flush);
                return;
            }
        }
        let Some((ip, hdr, v4, seq, flags)) = mergeable(pkt) else {
            self.finish(&mut flush);
            flush(pkt, plain(pkt.len()));
            return;
        };
        let payload = pkt.len() - hdr;
        let joins = self.open
            && !self.udp
            && v4 == self.v4
            && ip == self.ip
            && hdr == self.hdr
            && seq == self.next_seq
            && payload <= self.seg
            && self.len + payload <= Self::MAX
            && same_headers(&self.buf[..hdr], &pkt[..hdr], ip, v4);
        if joins {
            self.buf[self.len..self.len + payload].copy_from_slice(&pkt[hdr..]);
            self.len += payload;
            self.segs += 1;
            self.next_seq = seq.wrapping_add(payload as u32);
            // Take the last segment's flags (PSH), and stop after a short or PSH segment.
            self.buf[ip + 13] = flags;
            if payload < self.seg || flags & 0x08 != 0 {
                self.open = false;
            }
            return;
        }
        self.finish(&mut flush);
        self.start(pkt, ip, hdr, v4, false);
        self.next_seq = seq.wrapping_add(payload as u32);
        self.open = flags & 0x08 == 0;
    }

    fn start(&mut self, pkt: &[u8], ip: usize, hdr: usize, v4: bool, udp: bool) {
        self.buf[..pkt.len()].copy_from_slice(pkt);
        self.len = pkt.len();
        self.hdr = hdr;
        self.ip = ip;
        self.seg = pkt.len() - hdr;
        self.segs = 1;
        self.v4 = v4;
        self.udp = udp;
    }

    fn push_udp(
        &mut self,
        pkt: &[u8],
        ip: usize,
        v4: bool,
        mut flush: impl FnMut(&[u8], Coalesced),
    ) {
        let hdr = ip + 8;
        let payload = pkt.len() - hdr;
        let joins = self.open
            && self.udp
            && v4 == self.v4
            && ip == self.ip
            && payload <= self.seg
            && self.segs < Self::MAX_UDP_SEGMENTS
            && self.len + payload <= Self::MAX
            && same_ip_headers(&self.buf[..ip], &pkt[..ip], v4)
            && self.buf[ip..ip + 4] == pkt[ip..ip + 4];
        if joins {
            self.buf[self.len..self.len + payload].copy_from_slice(&pkt[hdr..]);
            self.len += payload;
            self.segs += 1;
            // A shorter datagram can only be the last of a run.
            if payload < self.seg {
                self.open = false;
            }
            return;
        }
        self.finish(&mut flush);
        self.start(pkt, ip, hdr, v4, true);
        self.open = true;
    }

    /// Hand the pending packet, if any, to `flush`.
    pub fn finish(&mut self, flush: &mut impl FnMut(&[u8], Coalesced)) {
        if self.len == 0 {
            return;
        }
        let len = self.len;
        self.len = 0;
        self.open = false;
        if self.segs == 1 {
            flush(&self.buf[..len], plain(len));
            return;
        }
        let segs = self.segs as u64;
        if self.udp {
            self.stats.udp_super_packets += 1;
            self.stats.udp_datagrams += segs;
        } else {
            self.stats.tcp_super_packets += 1;
            self.stats.tcp_segments += segs;
        }
        let (ip, hdr) = (self.ip, self.hdr);
        let b = &mut self.buf[..len];
        let (src, dst) = if self.v4 {
            b[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            b[10..12].copy_from_slice(&[0, 0]);
            let c = !fold(sum(&b[..ip], 0));
            b[10..12].copy_from_slice(&c.to_be_bytes());
            let s: [u8; 4] = [b[12], b[13], b[14], b[15]];
            let d: [u8; 4] = [b[16], b[17], b[18], b[19]];
            (IpAddr::from(s), IpAddr::from(d))
        } else {
            b[4..6].copy_from_slice(&((len - 40) as u16).to_be_bytes());
            let mut s = [0u8; 16];
            s.copy_from_slice(&b[8..24]);
            let mut d = [0u8; 16];
            d.copy_from_slice(&b[24..40]);
            (IpAddr::from(s), IpAddr::from(d))
        };
        // NEEDS_CSUM: the checksum field holds the pseudo-header sum, the kernel does the rest.
        let (proto, csum_offset, gso) = if self.udp {
            // The UDP length field covers the whole super-packet, as in a USO send.
            b[ip + 4..ip + 6].copy_from_slice(&((len - ip) as u16).to_be_bytes());
            (17, 6, GsoType::Udp)
        } else if self.v4 {
            (6, 16, GsoType::TcpV4)
        } else {
            (6, 16, GsoType::TcpV6)
        };
        let ps = fold(pseudo(src, dst, proto, len - ip));
        b[ip + csum_offset..ip + csum_offset + 2].copy_from_slice(&ps.to_be_bytes());
        flush(
            b,
            Coalesced {
                len,
                gso,
                hdr_len: hdr as u16,
                gso_size: self.seg as u16,
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

/// `(ip header len, is v4)` of a plain IP packet carrying `proto`: IPv4 without options or
/// fragmentation, IPv6 without extension headers, the IP length matching the packet's.
fn plain_ip(pkt: &[u8], proto: u8) -> Option<(usize, bool)> {
    if pkt.len() > Coalescer::MAX {
        return None;
    }
    let first = *pkt.first()?;
    match first >> 4 {
        4 => {
            if first & 0xf != 5 || pkt.len() < 20 || pkt[9] != proto {
                return None;
            }
            let frag = u16::from_be_bytes([pkt[6], pkt[7]]);
            if frag & 0x3fff != 0 || usize::from(u16::from_be_bytes([pkt[2], pkt[3]])) != pkt.len()
            {
                return None;
            }
            Some((20, true))
        }
        6 => {
            if pkt.len() < 40 || pkt[6] != proto {
                return None;
            }
            if usize::from(u16::from_be_bytes([pkt[4], pkt[5]])) + 40 != pkt.len() {
                return None;
            }
            Some((40, false))
        }
        _ => None,
    }
}

/// `(ip header len, is v4)` of a UDP datagram that may be merged: a plain IP packet whose UDP
/// length matches and which carries at least one payload byte.
fn mergeable_udp(pkt: &[u8]) -> Option<(usize, bool)> {
    let (ip, v4) = plain_ip(pkt, 17)?;
    let udp_len = usize::from(u16::from_be_bytes([*pkt.get(ip + 4)?, *pkt.get(ip + 5)?]));
    (udp_len == pkt.len() - ip && udp_len > 8).then_some((ip, v4))
}

/// `(ip header len, ip+tcp header len, is v4, seq, flags)` of a TCP data segment that may be merged.
fn mergeable(pkt: &[u8]) -> Option<(usize, usize, bool, u32, u8)> {
    let (ip, v4) = plain_ip(pkt, 6)?;
    let off = usize::from(*pkt.get(ip + 12)? >> 4) * 4;
    let hdr = ip + off;
    if off < 20 || pkt.len() <= hdr {
        return None;
    }
    let flags = pkt[ip + 13];
    // ACK set; no SYN/FIN/RST/URG/ECE/CWR (PSH allowed).
    if flags & !0x08 != 0x10 {
        return None;
    }
    let seq = u32::from_be_bytes([pkt[ip + 4], pkt[ip + 5], pkt[ip + 6], pkt[ip + 7]]);
    Some((ip, hdr, v4, seq, flags))
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
    let tcp = match pkt.first().map(|b| b >> 4) {
        Some(4) => pkt.get(9) == Some(&6),
        Some(6) => pkt.get(6) == Some(&6),
        _ => false,
    };
    let Ok(l) = layout(pkt, tcp) else {
        return false;
    };
    let len = pkt.len() - l.ip_len;
    fold(sum(
        &pkt[l.ip_len..],
        pseudo(l.src, l.dst, if tcp { 6 } else { 17 }, len),
    )) == 0xffff
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The textbook sum: big-endian 16-bit words, one at a time.
    fn reference_sum(data: &[u8], mut acc: u64) -> u64 {
        for w in data.chunks(2) {
            let hi = u64::from(w[0]) << 8;
            acc += hi | w.get(1).map_or(0, |&b| u64::from(b));
        }
        acc
    }

    #[test]
    fn sum_equals_the_textbook_sum() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut data = vec![0u8; 1600];
        for round in 0..3000 {
            for b in data.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            if round % 7 == 0 {
                data.iter_mut().for_each(|b| *b = 0xff); // all-ones words: the two zeros
            }
            if round % 11 == 0 {
                data.iter_mut().for_each(|b| *b = 0);
            }
            let len = (x % 1600) as usize;
            let acc = if round % 3 == 0 { x >> 40 } else { 0 };
            assert_eq!(
                fold(sum(&data[..len], acc)),
                fold(reference_sum(&data[..len], acc)),
                "len {len} acc {acc}"
            );
        }
        for len in 0..9 {
            let d = [0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89, 0xfe];
            assert_eq!(fold(sum(&d[..len], 5)), fold(reference_sum(&d[..len], 5)));
        }
    }

    fn tcp_v4(payload: usize, flags: u8) -> Vec<u8> {
        let mut p = vec![0u8; 20 + 32 + payload];
        p[0] = 0x45;
        let total = p.len() as u16;
        p[2..4].copy_from_slice(&total.to_be_bytes());
        p[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
        p[8] = 64;
        p[9] = 6;
        p[12..16].copy_from_slice(&[10, 77, 0, 1]);
        p[16..20].copy_from_slice(&[10, 77, 0, 2]);
        p[20..22].copy_from_slice(&5201u16.to_be_bytes());
        p[22..24].copy_from_slice(&40000u16.to_be_bytes());
        p[24..28].copy_from_slice(&1000u32.to_be_bytes());
        p[32] = 8 << 4; // 32-byte header (timestamps)
        p[33] = flags;
        for (i, b) in p[52..].iter_mut().enumerate() {
            *b = i as u8;
        }
        p
    }

    fn tcp_v6(payload: usize) -> Vec<u8> {
        let mut p = vec![0u8; 40 + 20 + payload];
        p[0] = 0x60;
        p[4..6].copy_from_slice(&((20 + payload) as u16).to_be_bytes());
        p[6] = 6;
        p[7] = 64;
        p[8] = 0xfd;
        p[23] = 1;
        p[24] = 0xfd;
        p[39] = 2;
        p[40 + 12] = 5 << 4;
        p[40 + 13] = 0x18;
        for (i, b) in p[60..].iter_mut().enumerate() {
            *b = (i * 7) as u8;
        }
        p
    }

    #[test]
    fn tcp_v4_super_packet_segments_correctly() {
        let big = tcp_v4(10_000, 0x19); // ACK | PSH | FIN
        let mut scratch = vec![0u8; 2000];
        let mut segs: Vec<Vec<u8>> = Vec::new();
        let n = segment(&big, GsoType::TcpV4, 1388, &mut scratch, |s| {
            segs.push(s.to_vec())
        })
        .unwrap();
        assert_eq!(n, 8);
        let mut payload = Vec::new();
        for (i, s) in segs.iter().enumerate() {
            assert!(transport_checksum_ok(s), "segment {i}");
            assert_eq!(fold(sum(&s[..20], 0)), 0xffff, "ip checksum {i}");
            assert_eq!(usize::from(u16::from_be_bytes([s[2], s[3]])), s.len());
            assert_eq!(u16::from_be_bytes([s[4], s[5]]), 0x1234 + i as u16);
            let seq = u32::from_be_bytes([s[24], s[25], s[26], s[27]]);
            assert_eq!(seq, 1000 + (i * 1388) as u32);
            let last = i + 1 == segs.len();
            assert_eq!(s[33] & 0x09 != 0, last, "PSH/FIN only on the last");
            payload.extend_from_slice(&s[52..]);
        }
        assert_eq!(payload, big[52..]);
    }

    #[test]
    fn tcp_v6_and_small_packets() {
        let big = tcp_v6(3000);
        let segs = segments(&big, GsoType::TcpV6, 1400);
        assert_eq!(segs.len(), 3);
        for s in &segs {
            assert!(transport_checksum_ok(s));
            assert_eq!(usize::from(u16::from_be_bytes([s[4], s[5]])) + 40, s.len());
        }
        let small = tcp_v4(100, 0x10);
        let one = segments(&small, GsoType::TcpV4, 1400);
        assert_eq!(one.len(), 1);
        assert!(transport_checksum_ok(&one[0]));
    }

    #[test]
    fn completes_partial_checksums() {
        let mut p = tcp_v4(500, 0x10);
        // What the kernel hands over with NEEDS_CSUM: the pseudo-header sum in the field.
        let ps = fold(pseudo(
            "10.77.0.1".parse().unwrap(),
            "10.77.0.2".parse().unwrap(),
            6,
            p.len() - 20,
        ));
        p[36..38].copy_from_slice(&ps.to_be_bytes());
        complete_checksum(&mut p, 20, 16).unwrap();
        assert!(transport_checksum_ok(&p));
        assert!(complete_checksum(&mut p, 20, 10_000).is_err());
    }

    #[test]
    fn malformed_input_is_refused_not_panicking() {
        let mut scratch = vec![0u8; 2000];
        for len in 0..80 {
            let p = vec![0x45u8; len];
            let _ = segment(&p, GsoType::TcpV4, 1000, &mut scratch, |_| {});
            let _ = segment(&p, GsoType::Udp, 1000, &mut scratch, |_| {});
        }
        let big = tcp_v4(5000, 0x10);
        assert_eq!(
            segment(&big, GsoType::TcpV4, 0, &mut scratch, |_| {}),
            Err(OffloadError::BadSize)
        );
        assert_eq!(
            segment(&big, GsoType::TcpV4, 1400, &mut scratch[..100], |_| {}),
            Err(OffloadError::BadSize)
        );
        assert_eq!(
            segment(&big, GsoType::Udp, 1400, &mut scratch, |_| {}),
            Err(OffloadError::Malformed)
        );
    }

    #[test]
    fn coalescer_merges_a_burst_and_resegments_to_the_same_bytes() {
        let big = tcp_v4(10_000, 0x18);
        let mut scratch = vec![0u8; 2000];
        let mut segs: Vec<Vec<u8>> = Vec::new();
        segment(&big, GsoType::TcpV4, 1388, &mut scratch, |s| {
            segs.push(s.to_vec())
        })
        .unwrap();
        let mut c = Coalescer::new();
        let mut out: Vec<(Vec<u8>, Coalesced)> = Vec::new();
        for s in &segs {
            c.push(s, |p, info| out.push((p.to_vec(), info)));
        }
        c.finish(&mut |p: &[u8], info| out.push((p.to_vec(), info)));
        assert_eq!(out.len(), 1, "one super-packet");
        let (p, info) = &out[0];
        assert_eq!(info.gso, GsoType::TcpV4);
        assert_eq!(info.gso_size, 1388);
        assert_eq!(p.len(), big.len());
        assert_eq!(p[52..], big[52..]);
        assert_eq!(p[33], 0x18, "PSH of the last segment kept");
        // Segmenting it again gives the original segments.
        let mut again: Vec<Vec<u8>> = Vec::new();
        let mut p2 = p.clone();
        p2[36..38].copy_from_slice(&[0, 0]);
        segment(&p2, GsoType::TcpV4, 1388, &mut scratch, |s| {
            again.push(s.to_vec())
        })
        .unwrap();
        assert_eq!(again.len(), segs.len());
        for (a, b) in again.iter().zip(&segs) {
            assert_eq!(a[20..], b[20..]);
        }
    }

    fn udp_v4(payload: usize, dport: u16) -> Vec<u8> {
        let mut p = vec![0u8; 28 + payload];
        p[0] = 0x45;
        let total = p.len() as u16;
        p[2..4].copy_from_slice(&total.to_be_bytes());
        p[4..6].copy_from_slice(&0x4321u16.to_be_bytes());
        p[6] = 0x40; // DF
        p[8] = 64;
        p[9] = 17;
        p[12..16].copy_from_slice(&[10, 0, 0, 1]);
        p[16..20].copy_from_slice(&[10, 0, 0, 2]);
        p[20..22].copy_from_slice(&5001u16.to_be_bytes());
        p[22..24].copy_from_slice(&dport.to_be_bytes());
        p[24..26].copy_from_slice(&((8 + payload) as u16).to_be_bytes());
        for (i, b) in p[28..].iter_mut().enumerate() {
            *b = (i * 7) as u8;
        }
        let c = !fold(sum(&p[..20], 0));
        p[10..12].copy_from_slice(&c.to_be_bytes());
        let c = !fold(sum(
            &p[20..],
            pseudo(
                IpAddr::from([10, 0, 0, 1]),
                IpAddr::from([10, 0, 0, 2]),
                17,
                8 + payload,
            ),
        ));
        p[26..28].copy_from_slice(&c.to_be_bytes());
        p
    }

    /// `segment` into owned packets.
    fn segments(pkt: &[u8], kind: GsoType, mss: usize) -> Vec<Vec<u8>> {
        let mut scratch = vec![0u8; 2000];
        let mut out = Vec::new();
        segment(pkt, kind, mss, &mut scratch, |s| out.push(s.to_vec())).unwrap();
        out
    }

    fn coalesce(pkts: &[Vec<u8>]) -> Vec<(Vec<u8>, Coalesced)> {
        let mut c = Coalescer::new();
        let mut out: Vec<(Vec<u8>, Coalesced)> = Vec::new();
        for p in pkts {
            c.push(p, |p, info| out.push((p.to_vec(), info)));
        }
        c.finish(&mut |p: &[u8], info| out.push((p.to_vec(), info)));
        out
    }

    #[test]
    fn coalescer_merges_udp_datagrams_into_uso_and_resegments_to_the_same_bytes() {
        // 10 datagrams of 64 payload bytes and a shorter last one, as a USO send would make them.
        let big = udp_v4(64 * 10 + 20, 9);
        let dgrams = segments(&big, GsoType::Udp, 64);
        assert_eq!(dgrams.len(), 11);
        assert!(dgrams.iter().all(|d| transport_checksum_ok(d)));
        let out = coalesce(&dgrams);
        assert_eq!(out.len(), 1, "one super-packet");
        let (p, info) = &out[0];
        assert_eq!(info.gso, GsoType::Udp);
        assert_eq!(
            (
                info.gso_size,
                info.hdr_len,
                info.csum_start,
                info.csum_offset
            ),
            (64, 28, 20, 6)
        );
        assert_eq!(p.len(), big.len());
        assert_eq!(
            u16::from_be_bytes([p[2], p[3]]) as usize,
            p.len(),
            "IP length"
        );
        assert_eq!(
            u16::from_be_bytes([p[24], p[25]]) as usize,
            p.len() - 20,
            "UDP length"
        );
        assert_eq!(fold(sum(&p[..20], 0)), 0xffff, "IPv4 header checksum");
        assert_eq!(p[28..], big[28..], "payloads in order");
        // The checksum field holds the pseudo-header sum (NEEDS_CSUM); completing it must give
        // a valid checksum over the whole super-packet.
        let mut whole = p.clone();
        complete_checksum(&mut whole, 20, 6).unwrap();
        assert!(transport_checksum_ok(&whole));
        // What the kernel does with it: the same datagrams again.
        let again = segments(p, GsoType::Udp, 64);
        assert_eq!(again.len(), dgrams.len());
        for (a, b) in again.iter().zip(&dgrams) {
            assert_eq!(a[6..], b[6..], "same datagram but for the IPv4 id");
        }
    }

    #[test]
    fn coalescer_udp_runs_stop_at_flow_size_and_count_boundaries() {
        // Another destination port: another flow.
        let out = coalesce(&[udp_v4(64, 9), udp_v4(64, 9), udp_v4(64, 10)]);
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].1.gso, out[1].1.gso), (GsoType::Udp, GsoType::None));
        assert_eq!(out[1].0, udp_v4(64, 10));
        // A larger datagram after a smaller one starts a new run; so does anything after a short one.
        let out = coalesce(&[
            udp_v4(64, 9),
            udp_v4(100, 9),
            udp_v4(100, 9),
            udp_v4(50, 9),
            udp_v4(50, 9),
        ]);
        let sizes: Vec<(usize, GsoType)> = out.iter().map(|(p, i)| (p.len(), i.gso)).collect();
        assert_eq!(
            sizes,
            vec![
                (92, GsoType::None),
                (28 + 250, GsoType::Udp),
                (78, GsoType::None)
            ]
        );
        // At most MAX_UDP_SEGMENTS per super-packet.
        let many: Vec<Vec<u8>> = (0..100).map(|_| udp_v4(64, 9)).collect();
        let mut c = Coalescer::new();
        let mut out: Vec<(Vec<u8>, Coalesced)> = Vec::new();
        for p in &many {
            c.push(p, |p, info| out.push((p.to_vec(), info)));
        }
        c.finish(&mut |p: &[u8], info| out.push((p.to_vec(), info)));
        assert_eq!(
            c.stats(),
            CoalescerStats {
                udp_super_packets: 2,
                udp_datagrams: 100,
                ..Default::default()
            }
        );
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].0.len(), 28 + 64 * Coalescer::MAX_UDP_SEGMENTS);
        assert_eq!(
            out[1].0.len(),
            28 + 64 * (100 - Coalescer::MAX_UDP_SEGMENTS)
        );
        // Not when the TUN cannot take USO packets.
        let mut c = Coalescer::new();
        c.set_merge_udp(false);
        let mut n = 0;
        for p in &many[..3] {
            c.push(p, |_, info| {
                assert_eq!(info.gso, GsoType::None);
                n += 1;
            });
        }
        c.finish(&mut |_: &[u8], _| n += 1);
        assert_eq!(n, 3);
        // TCP then UDP then TCP: nothing merges across protocols.
        let out = coalesce(&[tcp_v4(100, 0x10), udp_v4(100, 9), tcp_v4(100, 0x10)]);
        assert_eq!(out.len(), 3);
        assert!(out.iter().all(|(_, i)| i.gso == GsoType::None));
    }

    #[test]
    fn coalescer_merges_udp_over_ipv6() {
        let mut p = vec![0u8; 40 + 8 + 64];
        p[0] = 0x60;
        p[4..6].copy_from_slice(&(8u16 + 64).to_be_bytes());
        p[6] = 17;
        p[7] = 64;
        p[8..24].copy_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        p[24..40].copy_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        p[40..42].copy_from_slice(&1000u16.to_be_bytes());
        p[42..44].copy_from_slice(&2000u16.to_be_bytes());
        p[44..46].copy_from_slice(&(8u16 + 64).to_be_bytes());
        let out = coalesce(&[p.clone(), p.clone(), p.clone()]);
        assert_eq!(out.len(), 1);
        let (q, info) = &out[0];
        assert_eq!(info.gso, GsoType::Udp);
        assert_eq!((info.hdr_len, info.csum_start, info.gso_size), (48, 40, 64));
        assert_eq!(u16::from_be_bytes([q[4], q[5]]) as usize, q.len() - 40);
        assert_eq!(u16::from_be_bytes([q[44], q[45]]) as usize, q.len() - 40);
    }

    #[test]
    fn coalescer_passes_through_a_jumbo_ipv6_packet_larger_than_its_buffer() {
        // IPv6 payload length 65,535 + 40 header bytes: more than `Coalescer::MAX`.
        let mut p = vec![0u8; 40 + 65_535];
        p[0] = 0x60;
        p[4..6].copy_from_slice(&65_535u16.to_be_bytes());
        p[6] = 17;
        p[44..46].copy_from_slice(&65_535u16.to_be_bytes());
        let out = coalesce(&[p.clone(), p.clone()]);
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(|(q, i)| i.gso == GsoType::None && *q == p));
    }

    #[test]
    fn coalescer_passes_through_what_it_must_not_merge() {
        let mut c = Coalescer::new();
        let mut out: Vec<(Vec<u8>, Coalesced)> = Vec::new();
        let a = tcp_v4(100, 0x10);
        let mut gap = tcp_v4(100, 0x10);
        gap[24..28].copy_from_slice(&5000u32.to_be_bytes()); // not contiguous
        let syn = tcp_v4(0, 0x02);
        let udp = {
            let mut u = vec![0u8; 40];
            u[0] = 0x45;
            u[3] = 40;
            u[9] = 17;
            u
        };
        for p in [&a, &gap, &syn, &udp] {
            c.push(p, |p, info| out.push((p.to_vec(), info)));
        }
        c.finish(&mut |p: &[u8], info| out.push((p.to_vec(), info)));
        assert_eq!(out.len(), 4);
        assert!(out.iter().all(|(_, i)| i.gso == GsoType::None));
        assert_eq!(out[0].0, a);
        assert_eq!(out[1].0, gap);
        assert_eq!(out[2].0, syn);
        assert_eq!(out[3].0, udp);
    }
}
