//! ICMP error generation and a checked peek into inner IP packets.
//!
//! The overlay answers packets it cannot deliver (no peer for the destination, or a packet larger
//! than the tunnel MTU) with an ICMP error written back into the TUN device, so the local sender
//! learns quickly instead of timing out. Everything here is pure: no I/O and no allocation. The
//! builders write a complete IP packet (outer IP header + ICMP message + quote of the offending
//! packet) into a caller buffer and return its length.
//!
//! Rules applied (RFC 792, RFC 1122 §3.2.2, RFC 1812 §4.3.2, RFC 4443 §2.4):
//! - never answer an ICMP error message, a non-first fragment, or a packet whose source is not a
//!   unique unicast host (unspecified, loopback, multicast, IPv4 limited broadcast or class E);
//! - never answer a packet sent to a multicast or broadcast destination, except that ICMPv6
//!   "packet too big" may answer a multicast destination (RFC 4443 §2.4 (e.3));
//! - quote as much of the original packet as fits in 576 bytes (IPv4) or 1280 bytes (IPv6) of
//!   error packet, and at least the IPv4 header plus 8 bytes.
//!
//! [`IpPeek`] is the bounds-checked header reader used for those decisions; the driver can use it
//! on its own to route packets read from the TUN.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// IP protocol number of ICMP (IPv4).
pub const PROTO_ICMP: u8 = 1;
/// IP protocol number of TCP.
pub const PROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const PROTO_UDP: u8 = 17;
/// IP protocol number of ICMPv6.
pub const PROTO_ICMPV6: u8 = 58;

/// Largest IPv4 ICMP error packet we emit (RFC 1812 §4.3.2.3).
pub const V4_ERROR_MAX: usize = 576;
/// Largest ICMPv6 error packet we emit (RFC 4443 §2.4 (c): the IPv6 minimum MTU).
pub const V6_ERROR_MAX: usize = 1280;

const IPV4_HEADER_LEN: usize = 20;
const IPV6_HEADER_LEN: usize = 40;
const ICMP_HEADER_LEN: usize = 8;
/// Hop limit / TTL of the error packets we originate.
const ERROR_HOP_LIMIT: u8 = 64;
/// Upper bound on IPv6 extension headers walked before giving up.
const MAX_EXTENSION_HEADERS: usize = 16;

/// Why [`IpPeek::parse`] rejected a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeekError {
    /// The buffer is empty or shorter than the fixed IP header.
    Truncated,
    /// The version nibble is neither 4 nor 6.
    BadVersion(u8),
    /// The IPv4 IHL is below 5 or extends past the buffer or the total length.
    BadHeaderLength,
    /// The total (IPv4) or payload (IPv6) length is inconsistent with the buffer.
    BadTotalLength,
    /// An IPv6 extension header runs past the packet, or there are too many of them.
    BadExtensionHeader,
}

impl core::fmt::Display for PeekError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Truncated => f.write_str("truncated IP header"),
            Self::BadVersion(v) => write!(f, "bad IP version {v}"),
            Self::BadHeaderLength => f.write_str("bad IPv4 header length"),
            Self::BadTotalLength => f.write_str("IP length field inconsistent with buffer"),
            Self::BadExtensionHeader => f.write_str("malformed IPv6 extension header chain"),
        }
    }
}

impl std::error::Error for PeekError {}

/// The validated headline facts of an IPv4 or IPv6 packet.
///
/// Parsing never reads past the buffer; `total_len` is the packet length according to its own
/// header and is at most the buffer length (trailing bytes beyond it are ignored).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpPeek {
    /// Source address (its variant gives the IP version).
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Packet length per the IP header (IPv4 total length, or 40 + IPv6 payload length).
    pub total_len: usize,
    /// Upper-layer protocol: IPv4 protocol field, or for IPv6 the next header after the
    /// extension header chain (for a non-first fragment, the fragment header's next header).
    pub protocol: u8,
    /// Offset of the upper-layer header from the start of the packet (after IPv4 options or
    /// IPv6 extension headers). Meaningful only if [`IpPeek::is_non_first_fragment`] is false.
    pub payload_offset: usize,
    /// Fragment offset in bytes (0 for unfragmented packets and first fragments).
    pub fragment_offset: u32,
    /// The "more fragments" flag.
    pub more_fragments: bool,
    /// IPv4 TTL or IPv6 hop limit.
    pub hop_limit: u8,
}

impl IpPeek {
    /// Parse and validate the IP header(s) at the start of `packet`.
    pub fn parse(packet: &[u8]) -> Result<Self, PeekError> {
        let first = *packet.first().ok_or(PeekError::Truncated)?;
        match first >> 4 {
            4 => Self::parse_v4(packet),
            6 => Self::parse_v6(packet),
            v => Err(PeekError::BadVersion(v)),
        }
    }

    fn parse_v4(p: &[u8]) -> Result<Self, PeekError> {
        let h: &[u8; IPV4_HEADER_LEN] = p
            .get(..IPV4_HEADER_LEN)
            .and_then(|s| s.try_into().ok())
            .ok_or(PeekError::Truncated)?;
        let ihl = usize::from(h[0] & 0x0f) * 4;
        let total_len = usize::from(u16::from_be_bytes([h[2], h[3]]));
        if ihl < IPV4_HEADER_LEN || ihl > p.len() {
            return Err(PeekError::BadHeaderLength);
        }
        if total_len < ihl || total_len > p.len() {
            return Err(PeekError::BadTotalLength);
        }
        let frag = u16::from_be_bytes([h[6], h[7]]);
        Ok(Self {
            src: IpAddr::V4(Ipv4Addr::new(h[12], h[13], h[14], h[15])),
            dst: IpAddr::V4(Ipv4Addr::new(h[16], h[17], h[18], h[19])),
            total_len,
            protocol: h[9],
            payload_offset: ihl,
            fragment_offset: u32::from(frag & 0x1fff) * 8,
            more_fragments: frag & 0x2000 != 0,
            hop_limit: h[8],
        })
    }

    fn parse_v6(p: &[u8]) -> Result<Self, PeekError> {
        let h: &[u8; IPV6_HEADER_LEN] = p
            .get(..IPV6_HEADER_LEN)
            .and_then(|s| s.try_into().ok())
            .ok_or(PeekError::Truncated)?;
        let total_len = IPV6_HEADER_LEN + usize::from(u16::from_be_bytes([h[4], h[5]]));
        if total_len > p.len() {
            return Err(PeekError::BadTotalLength);
        }
        let pkt = &p[..total_len];
        let mut src = [0u8; 16];
        src.copy_from_slice(&h[8..24]);
        let mut dst = [0u8; 16];
        dst.copy_from_slice(&h[24..40]);

        let mut next = h[6];
        let mut off = IPV6_HEADER_LEN;
        let mut fragment_offset = 0u32;
        let mut more_fragments = false;
        for _ in 0..MAX_EXTENSION_HEADERS {
            let len = match next {
                // Hop-by-hop, routing, destination options, mobility, HIP, shim6, experimental.
                0 | 43 | 60 | 135 | 139 | 140 | 253 | 254 => {
                    let l = *pkt.get(off + 1).ok_or(PeekError::BadExtensionHeader)?;
                    (usize::from(l) + 1) * 8
                }
                // Fragment header: fixed 8 bytes.
                44 => {
                    let f = pkt.get(off..off + 8).ok_or(PeekError::BadExtensionHeader)?;
                    let word = u16::from_be_bytes([f[2], f[3]]);
                    fragment_offset = u32::from(word >> 3) * 8;
                    more_fragments = word & 1 != 0;
                    if fragment_offset != 0 {
                        // The bytes after a non-first fragment header are not a header.
                        return Ok(Self {
                            src: IpAddr::V6(Ipv6Addr::from(src)),
                            dst: IpAddr::V6(Ipv6Addr::from(dst)),
                            total_len,
                            protocol: f[0],
                            payload_offset: off + 8,
                            fragment_offset,
                            more_fragments,
                            hop_limit: h[7],
                        });
                    }
                    8
                }
                // Authentication header: length in 4-octet units, minus 2.
                51 => {
                    let l = *pkt.get(off + 1).ok_or(PeekError::BadExtensionHeader)?;
                    (usize::from(l) + 2) * 4
                }
                // Anything else (TCP, UDP, ICMPv6, ESP, no-next-header, unknown) ends the walk.
                _ => {
                    return Ok(Self {
                        src: IpAddr::V6(Ipv6Addr::from(src)),
                        dst: IpAddr::V6(Ipv6Addr::from(dst)),
                        total_len,
                        protocol: next,
                        payload_offset: off,
                        fragment_offset,
                        more_fragments,
                        hop_limit: h[7],
                    });
                }
            };
            let nh = *pkt.get(off).ok_or(PeekError::BadExtensionHeader)?;
            if off + len > total_len {
                return Err(PeekError::BadExtensionHeader);
            }
            next = nh;
            off += len;
        }
        Err(PeekError::BadExtensionHeader)
    }

    /// 4 or 6.
    pub fn version(&self) -> u8 {
        match self.src {
            IpAddr::V4(_) => 4,
            IpAddr::V6(_) => 6,
        }
    }

    /// True for any fragment (first, middle or last).
    pub fn is_fragment(&self) -> bool {
        self.more_fragments || self.fragment_offset != 0
    }

    /// True for a fragment other than the first (its upper-layer header is elsewhere).
    pub fn is_non_first_fragment(&self) -> bool {
        self.fragment_offset != 0
    }

    /// The upper-layer bytes of `packet` (the buffer this peek was parsed from), or `None` for a
    /// non-first fragment.
    pub fn payload<'a>(&self, packet: &'a [u8]) -> Option<&'a [u8]> {
        if self.is_non_first_fragment() {
            return None;
        }
        packet.get(self.payload_offset..self.total_len)
    }

    /// True if the packet is an ICMP (v4) or ICMPv6 *error* message, or looks like one but is
    /// too short to tell. Such packets must never be answered with an ICMP error.
    pub fn is_icmp_error(&self, packet: &[u8]) -> bool {
        let is_icmp = match self.src {
            IpAddr::V4(_) => self.protocol == PROTO_ICMP,
            IpAddr::V6(_) => self.protocol == PROTO_ICMPV6,
        };
        if !is_icmp {
            return false;
        }
        if self.is_non_first_fragment() {
            // Cannot see the type; err on the side of silence.
            return true;
        }
        let Some(&ty) = packet
            .get(self.payload_offset)
            .filter(|_| self.payload_offset < self.total_len)
        else {
            return true;
        };
        match self.src {
            // Destination unreachable, source quench, redirect, time exceeded, parameter problem.
            IpAddr::V4(_) => matches!(ty, 3 | 4 | 5 | 11 | 12),
            // RFC 4443 §2.1: types 0-127 are errors.
            IpAddr::V6(_) => ty < 128,
        }
    }
}

/// The ICMPv4 errors privnet originates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum V4Error {
    /// Type 3 code 1: no peer/route for the destination host.
    HostUnreachable,
    /// Type 3 code 4: fragmentation needed and DF set, with the next-hop MTU (RFC 1191).
    FragmentationNeeded {
        /// MTU the sender should use.
        next_hop_mtu: u16,
    },
}

/// The ICMPv6 errors privnet originates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum V6Error {
    /// Type 1 code 0: no route to destination.
    NoRoute,
    /// Type 1 code 3: address unreachable.
    AddressUnreachable,
    /// Type 2: packet too big, with the MTU of the next hop.
    PacketTooBig {
        /// MTU the sender should use.
        mtu: u32,
    },
}

fn v4_source_is_answerable(a: Ipv4Addr) -> bool {
    !(a.is_unspecified()
        || a.is_loopback()
        || a.is_multicast()
        || a.is_broadcast()
        || a.octets()[0] >= 240)
}

fn v6_source_is_answerable(a: Ipv6Addr) -> bool {
    !(a.is_unspecified() || a.is_loopback() || a.is_multicast())
}

/// Build an ICMPv4 error answering `original`, sent from `from`, into `out`.
///
/// Returns the length of the complete IPv4 packet written at the start of `out`, or `None` if
/// the original must not be answered (see the module docs), is not a valid IPv4 packet, or `out`
/// cannot hold the error with at least the original IP header plus 8 bytes.
pub fn build_v4_error(
    out: &mut [u8],
    from: Ipv4Addr,
    original: &[u8],
    kind: V4Error,
) -> Option<usize> {
    let peek = IpPeek::parse(original).ok()?;
    let (IpAddr::V4(orig_src), IpAddr::V4(orig_dst)) = (peek.src, peek.dst) else {
        return None;
    };
    if !v4_source_is_answerable(orig_src)
        || orig_dst.is_multicast()
        || orig_dst.is_broadcast()
        || peek.is_non_first_fragment()
        || peek.is_icmp_error(original)
    {
        return None;
    }
    let min_quote = (peek.payload_offset + 8).min(peek.total_len);
    let room = out
        .len()
        .min(V4_ERROR_MAX)
        .checked_sub(IPV4_HEADER_LEN + ICMP_HEADER_LEN)?;
    if room < min_quote {
        return None;
    }
    let quote = peek.total_len.min(room);
    let total = IPV4_HEADER_LEN + ICMP_HEADER_LEN + quote;
    let out = &mut out[..total];

    // IPv4 header.
    let total_u16 = u16::try_from(total).ok()?;
    out[..IPV4_HEADER_LEN].copy_from_slice(&[0; IPV4_HEADER_LEN]);
    out[0] = 0x45;
    out[1] = 0xc0; // DSCP CS6 (network control), as Linux does for ICMP errors.
    out[2..4].copy_from_slice(&total_u16.to_be_bytes());
    out[8] = ERROR_HOP_LIMIT;
    out[9] = PROTO_ICMP;
    out[12..16].copy_from_slice(&from.octets());
    out[16..20].copy_from_slice(&orig_src.octets());
    let hcs = checksum(&out[..IPV4_HEADER_LEN], 0);
    out[10..12].copy_from_slice(&hcs.to_be_bytes());

    // ICMP header + quote.
    let (code, rest) = match kind {
        V4Error::HostUnreachable => (1, [0u8; 4]),
        V4Error::FragmentationNeeded { next_hop_mtu } => {
            let m = next_hop_mtu.to_be_bytes();
            (4, [0, 0, m[0], m[1]])
        }
    };
    let icmp = &mut out[IPV4_HEADER_LEN..];
    icmp[0] = 3;
    icmp[1] = code;
    icmp[2] = 0;
    icmp[3] = 0;
    icmp[4..8].copy_from_slice(&rest);
    icmp[ICMP_HEADER_LEN..].copy_from_slice(&original[..quote]);
    let cs = checksum(icmp, 0);
    icmp[2..4].copy_from_slice(&cs.to_be_bytes());
    Some(total)
}

/// Build an ICMPv6 error answering `original`, sent from `from`, into `out`.
///
/// Returns the length of the complete IPv6 packet written at the start of `out`, or `None` if
/// the original must not be answered (see the module docs), is not a valid IPv6 packet, or `out`
/// is shorter than the 48-byte headers plus the original's 40-byte IPv6 header.
pub fn build_v6_error(
    out: &mut [u8],
    from: Ipv6Addr,
    original: &[u8],
    kind: V6Error,
) -> Option<usize> {
    let peek = IpPeek::parse(original).ok()?;
    let (IpAddr::V6(orig_src), IpAddr::V6(orig_dst)) = (peek.src, peek.dst) else {
        return None;
    };
    let too_big = matches!(kind, V6Error::PacketTooBig { .. });
    if !v6_source_is_answerable(orig_src)
        || (orig_dst.is_multicast() && !too_big)
        || peek.is_non_first_fragment()
        || peek.is_icmp_error(original)
    {
        return None;
    }
    let room = out
        .len()
        .min(V6_ERROR_MAX)
        .checked_sub(IPV6_HEADER_LEN + ICMP_HEADER_LEN)?;
    if room < IPV6_HEADER_LEN {
        return None;
    }
    let quote = peek.total_len.min(room);
    let icmp_len = ICMP_HEADER_LEN + quote;
    let total = IPV6_HEADER_LEN + icmp_len;
    let icmp_len_u16 = u16::try_from(icmp_len).ok()?;
    let out = &mut out[..total];

    out[..IPV6_HEADER_LEN].copy_from_slice(&[0; IPV6_HEADER_LEN]);
    out[0] = 0x60;
    out[4..6].copy_from_slice(&icmp_len_u16.to_be_bytes());
    out[6] = PROTO_ICMPV6;
    out[7] = ERROR_HOP_LIMIT;
    out[8..24].copy_from_slice(&from.octets());
    out[24..40].copy_from_slice(&orig_src.octets());

    let (ty, code, rest) = match kind {
        V6Error::NoRoute => (1, 0, [0u8; 4]),
        V6Error::AddressUnreachable => (1, 3, [0u8; 4]),
        V6Error::PacketTooBig { mtu } => (2, 0, mtu.to_be_bytes()),
    };
    let icmp = &mut out[IPV6_HEADER_LEN..];
    icmp[0] = ty;
    icmp[1] = code;
    icmp[2] = 0;
    icmp[3] = 0;
    icmp[4..8].copy_from_slice(&rest);
    icmp[ICMP_HEADER_LEN..].copy_from_slice(&original[..quote]);
    let pseudo = pseudo_header_sum_v6(from, orig_src, icmp_len_u16.into(), PROTO_ICMPV6);
    let cs = checksum(icmp, pseudo);
    icmp[2..4].copy_from_slice(&cs.to_be_bytes());
    Some(total)
}

/// One's-complement sum of the IPv6 pseudo-header (RFC 8200 §8.1), not yet folded.
fn pseudo_header_sum_v6(src: Ipv6Addr, dst: Ipv6Addr, upper_len: u32, next_header: u8) -> u32 {
    let mut sum = sum_be_words(&src.octets()) + sum_be_words(&dst.octets());
    sum += upper_len >> 16;
    sum += upper_len & 0xffff;
    sum += u32::from(next_header);
    sum
}

/// Sum of big-endian 16-bit words (odd trailing byte padded with zero), unfolded.
fn sum_be_words(data: &[u8]) -> u32 {
    let mut sum: u64 = 0;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u64::from(*last) << 8;
    }
    // Fold to 32 bits; the inputs here are at most a few KiB so this never loses carries.
    while sum >> 32 != 0 {
        sum = (sum & 0xffff_ffff) + (sum >> 32);
    }
    sum as u32
}

/// Internet checksum (RFC 1071) of `data` with an initial unfolded sum.
fn checksum(data: &[u8], initial: u32) -> u16 {
    let mut sum = u64::from(initial) + u64::from(sum_be_words(data));
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use smoltcp::wire::{
        Icmpv4Message, Icmpv4Packet, Icmpv6Message, Icmpv6Packet, Ipv4Packet, Ipv6Packet,
    };

    const A4: Ipv4Addr = Ipv4Addr::new(10, 201, 0, 1);
    const B4: Ipv4Addr = Ipv4Addr::new(10, 201, 1, 5);
    const GW4: Ipv4Addr = Ipv4Addr::new(10, 201, 0, 254);
    const A6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x201, 0, 0, 0, 0, 0, 1);
    const B6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x201, 1, 0, 0, 0, 0, 5);
    const GW6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x201, 0, 0, 0, 0, 0, 0xfe);

    fn v4_packet(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, payload: &[u8]) -> Vec<u8> {
        let total = 20 + payload.len();
        let mut p = vec![0u8; total];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        p[6] = 0x40; // DF
        p[8] = 64;
        p[9] = proto;
        p[12..16].copy_from_slice(&src.octets());
        p[16..20].copy_from_slice(&dst.octets());
        let cs = checksum(&p[..20], 0);
        p[10..12].copy_from_slice(&cs.to_be_bytes());
        p[20..].copy_from_slice(payload);
        p
    }

    fn v6_packet(src: Ipv6Addr, dst: Ipv6Addr, next: u8, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; 40 + payload.len()];
        p[0] = 0x60;
        p[4..6].copy_from_slice(&(payload.len() as u16).to_be_bytes());
        p[6] = next;
        p[7] = 64;
        p[8..24].copy_from_slice(&src.octets());
        p[24..40].copy_from_slice(&dst.octets());
        p[40..].copy_from_slice(payload);
        p
    }

    fn udp_payload(len: usize) -> Vec<u8> {
        let mut u = vec![0u8; len.max(8)];
        u[0..2].copy_from_slice(&4000u16.to_be_bytes());
        u[2..4].copy_from_slice(&53u16.to_be_bytes());
        u[4..6].copy_from_slice(&(len.max(8) as u16).to_be_bytes());
        for (i, b) in u.iter_mut().enumerate().skip(8) {
            *b = i as u8;
        }
        u
    }

    #[test]
    fn checksum_matches_rfc1071_example() {
        // RFC 1071 §3 example: sum of 0001 f203 f4f5 f6f7 is 0xddf2 -> checksum 0x220d.
        assert_eq!(
            checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7], 0),
            0x220d
        );
        // Odd length pads with zero.
        assert_eq!(checksum(&[0xff], 0), !0xff00);
    }

    #[test]
    fn peek_v4() {
        let p = v4_packet(A4, B4, PROTO_UDP, &udp_payload(100));
        let k = IpPeek::parse(&p).unwrap();
        assert_eq!(k.version(), 4);
        assert_eq!(k.src, IpAddr::V4(A4));
        assert_eq!(k.dst, IpAddr::V4(B4));
        assert_eq!(k.total_len, 120);
        assert_eq!(k.protocol, PROTO_UDP);
        assert_eq!(k.payload_offset, 20);
        assert!(!k.is_fragment());
        assert_eq!(k.payload(&p).unwrap().len(), 100);
        // Trailing bytes beyond total length are tolerated and ignored.
        let mut padded = p.clone();
        padded.extend_from_slice(&[0xaa; 7]);
        assert_eq!(IpPeek::parse(&padded).unwrap().total_len, 120);
    }

    #[test]
    fn peek_rejects_malformed() {
        assert_eq!(IpPeek::parse(&[]), Err(PeekError::Truncated));
        assert_eq!(IpPeek::parse(&[0x45; 19]), Err(PeekError::Truncated));
        assert_eq!(IpPeek::parse(&[0x50; 40]), Err(PeekError::BadVersion(5)));
        let p = v4_packet(A4, B4, PROTO_UDP, &udp_payload(8));
        // Total length larger than the buffer.
        assert_eq!(IpPeek::parse(&p[..27]), Err(PeekError::BadTotalLength));
        // IHL < 5 and IHL past the buffer.
        let mut q = p.clone();
        q[0] = 0x44;
        assert_eq!(IpPeek::parse(&q), Err(PeekError::BadHeaderLength));
        q[0] = 0x4f;
        assert_eq!(IpPeek::parse(&q), Err(PeekError::BadHeaderLength));
        // Total length shorter than the header.
        let mut q = p.clone();
        q[2..4].copy_from_slice(&10u16.to_be_bytes());
        assert_eq!(IpPeek::parse(&q), Err(PeekError::BadTotalLength));
        // IPv6 payload length past the buffer.
        let p6 = v6_packet(A6, B6, PROTO_UDP, &udp_payload(8));
        assert_eq!(IpPeek::parse(&p6[..47]), Err(PeekError::BadTotalLength));
        assert_eq!(IpPeek::parse(&p6[..39]), Err(PeekError::Truncated));
    }

    #[test]
    fn peek_v6_walks_extension_headers() {
        // Hop-by-hop (8 bytes) -> destination options (16 bytes) -> fragment (first) -> UDP.
        let mut payload = vec![60, 0, 1, 4, 0, 0, 0, 0];
        payload.extend_from_slice(&[44, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        payload.extend_from_slice(&[PROTO_UDP, 0, 0x00, 0x01, 0xde, 0xad, 0xbe, 0xef]);
        payload.extend_from_slice(&udp_payload(16));
        let p = v6_packet(A6, B6, 0, &payload);
        let k = IpPeek::parse(&p).unwrap();
        assert_eq!(k.version(), 6);
        assert_eq!(k.protocol, PROTO_UDP);
        assert_eq!(k.payload_offset, 40 + 8 + 16 + 8);
        assert!(k.is_fragment());
        assert!(k.more_fragments);
        assert!(!k.is_non_first_fragment());

        // Non-first fragment: offset 8 * 185.
        let frag = [
            [PROTO_UDP, 0].as_slice(),
            &((185u16 << 3).to_be_bytes()),
            &[1, 2, 3, 4],
        ]
        .concat();
        let p = v6_packet(A6, B6, 44, &[frag, vec![0; 24]].concat());
        let k = IpPeek::parse(&p).unwrap();
        assert!(k.is_non_first_fragment());
        assert_eq!(k.fragment_offset, 1480);
        assert_eq!(k.payload(&p), None);

        // An extension header whose length runs past the packet.
        let p = v6_packet(A6, B6, 0, &[PROTO_UDP, 5, 0, 0, 0, 0, 0, 0]);
        assert_eq!(IpPeek::parse(&p), Err(PeekError::BadExtensionHeader));
        // An extension header cut after the next-header byte.
        let p = v6_packet(A6, B6, 60, &[PROTO_UDP]);
        assert_eq!(IpPeek::parse(&p), Err(PeekError::BadExtensionHeader));
        // An endless chain of destination options.
        let p = v6_packet(A6, B6, 60, &[60, 0, 0, 0, 0, 0, 0, 0].repeat(40));
        assert_eq!(IpPeek::parse(&p), Err(PeekError::BadExtensionHeader));
    }

    #[test]
    fn peek_never_panics_on_truncations() {
        let mut payload = vec![60, 0, 1, 4, 0, 0, 0, 0];
        payload.extend_from_slice(&[51, 0, 0, 0, 0, 0, 0, 0]);
        payload.extend_from_slice(&[PROTO_TCP, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        payload.extend_from_slice(&[0; 20]);
        let p6 = v6_packet(A6, B6, 0, &payload);
        let p4 = v4_packet(A4, B4, PROTO_TCP, &[0; 20]);
        for p in [&p6, &p4] {
            for cut in 0..=p.len() {
                let mut q = p[..cut].to_vec();
                if q.len() >= 6 && q[0] >> 4 == 6 {
                    // Keep the length field consistent so the walk itself is exercised.
                    q[4..6].copy_from_slice(&((cut.saturating_sub(40)) as u16).to_be_bytes());
                }
                let _ = IpPeek::parse(&q);
            }
        }
        let k = IpPeek::parse(&p6).unwrap();
        assert_eq!(k.protocol, PROTO_TCP);
        assert_eq!(k.payload_offset, 40 + 8 + 8 + 12);
    }

    fn check_v4(out: &[u8], kind: V4Error, original: &[u8]) {
        let ip = Ipv4Packet::new_checked(out).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!(ip.src_addr(), GW4);
        assert_eq!(ip.dst_addr(), A4);
        assert_eq!(usize::from(ip.total_len()), out.len());
        let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
        assert!(icmp.verify_checksum());
        // Independent recomputation: the whole ICMP message sums to 0xffff.
        assert_eq!(checksum(ip.payload(), 0), 0);
        assert_eq!(checksum(&out[..20], 0), 0);
        assert_eq!(icmp.msg_type(), Icmpv4Message::DstUnreachable);
        match kind {
            V4Error::HostUnreachable => assert_eq!(icmp.msg_code(), 1),
            V4Error::FragmentationNeeded { next_hop_mtu } => {
                assert_eq!(icmp.msg_code(), 4);
                assert_eq!(
                    u16::from_be_bytes([ip.payload()[6], ip.payload()[7]]),
                    next_hop_mtu
                );
            }
        }
        let quote = &ip.payload()[8..];
        assert_eq!(quote, &original[..quote.len()]);
    }

    #[test]
    fn v4_host_unreachable_small_packet_quoted_whole() {
        let orig = v4_packet(A4, B4, PROTO_UDP, &udp_payload(30));
        let mut out = [0u8; 1500];
        let n = build_v4_error(&mut out, GW4, &orig, V4Error::HostUnreachable).unwrap();
        assert_eq!(n, 20 + 8 + orig.len());
        check_v4(&out[..n], V4Error::HostUnreachable, &orig);
    }

    #[test]
    fn v4_frag_needed_large_packet_capped_at_576() {
        let orig = v4_packet(A4, B4, PROTO_UDP, &udp_payload(1400));
        let mut out = [0u8; 2000];
        let kind = V4Error::FragmentationNeeded { next_hop_mtu: 1380 };
        let n = build_v4_error(&mut out, GW4, &orig, kind).unwrap();
        assert_eq!(n, V4_ERROR_MAX);
        check_v4(&out[..n], kind, &orig);
        // A small output buffer still gets header + 8 bytes, and no less.
        let mut small = [0u8; 20 + 8 + 28];
        let n = build_v4_error(&mut small, GW4, &orig, kind).unwrap();
        check_v4(&small[..n], kind, &orig);
        let mut tiny = [0u8; 20 + 8 + 27];
        assert_eq!(build_v4_error(&mut tiny, GW4, &orig, kind), None);
    }

    #[test]
    fn v4_refusals() {
        let mut out = [0u8; 1500];
        let hu = V4Error::HostUnreachable;
        let udp = udp_payload(20);
        for src in [
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::BROADCAST,
            Ipv4Addr::new(224, 0, 0, 1),
            Ipv4Addr::new(127, 0, 0, 1),
            Ipv4Addr::new(250, 1, 1, 1),
        ] {
            let p = v4_packet(src, B4, PROTO_UDP, &udp);
            assert_eq!(build_v4_error(&mut out, GW4, &p, hu), None, "src {src}");
        }
        for dst in [Ipv4Addr::BROADCAST, Ipv4Addr::new(239, 1, 2, 3)] {
            let p = v4_packet(A4, dst, PROTO_UDP, &udp);
            assert_eq!(build_v4_error(&mut out, GW4, &p, hu), None, "dst {dst}");
        }
        // ICMP errors are never answered; echo requests are.
        let err = v4_packet(A4, B4, PROTO_ICMP, &[3, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(build_v4_error(&mut out, GW4, &err, hu), None);
        let echo = v4_packet(A4, B4, PROTO_ICMP, &[8, 0, 0, 0, 0, 1, 0, 1]);
        assert!(build_v4_error(&mut out, GW4, &echo, hu).is_some());
        // Truncated ICMP (type unreadable) is not answered.
        let empty_icmp = v4_packet(A4, B4, PROTO_ICMP, &[]);
        assert_eq!(build_v4_error(&mut out, GW4, &empty_icmp, hu), None);
        // Non-first fragment is not answered; first fragment is.
        let mut frag = v4_packet(A4, B4, PROTO_UDP, &udp);
        frag[6..8].copy_from_slice(&(0x2000u16 | 185).to_be_bytes());
        assert_eq!(build_v4_error(&mut out, GW4, &frag, hu), None);
        let mut first = v4_packet(A4, B4, PROTO_UDP, &udp);
        first[6..8].copy_from_slice(&0x2000u16.to_be_bytes());
        assert!(build_v4_error(&mut out, GW4, &first, hu).is_some());
        // Wrong version and garbage.
        let p6 = v6_packet(A6, B6, PROTO_UDP, &udp);
        assert_eq!(build_v4_error(&mut out, GW4, &p6, hu), None);
        assert_eq!(build_v4_error(&mut out, GW4, &[0x45, 0, 0], hu), None);
    }

    fn check_v6(out: &[u8], kind: V6Error, original: &[u8]) {
        let ip = Ipv6Packet::new_checked(out).unwrap();
        assert_eq!(ip.src_addr(), GW6);
        assert_eq!(ip.dst_addr(), A6);
        assert_eq!(usize::from(ip.payload_len()) + 40, out.len());
        let icmp = Icmpv6Packet::new_checked(ip.payload()).unwrap();
        assert!(icmp.verify_checksum(&ip.src_addr(), &ip.dst_addr()));
        // Independent recomputation with the pseudo-header.
        let ps = pseudo_header_sum_v6(GW6, A6, ip.payload().len() as u32, PROTO_ICMPV6);
        assert_eq!(checksum(ip.payload(), ps), 0);
        match kind {
            V6Error::NoRoute => {
                assert_eq!(icmp.msg_type(), Icmpv6Message::DstUnreachable);
                assert_eq!(icmp.msg_code(), 0);
            }
            V6Error::AddressUnreachable => {
                assert_eq!(icmp.msg_type(), Icmpv6Message::DstUnreachable);
                assert_eq!(icmp.msg_code(), 3);
            }
            V6Error::PacketTooBig { mtu } => {
                assert_eq!(icmp.msg_type(), Icmpv6Message::PktTooBig);
                assert_eq!(icmp.pkt_too_big_mtu(), mtu);
            }
        }
        let quote = &ip.payload()[8..];
        assert_eq!(quote, &original[..quote.len()]);
    }

    #[test]
    fn v6_errors() {
        let mut out = [0u8; 2000];
        let small = v6_packet(A6, B6, PROTO_UDP, &udp_payload(50));
        for kind in [V6Error::NoRoute, V6Error::AddressUnreachable] {
            let n = build_v6_error(&mut out, GW6, &small, kind).unwrap();
            assert_eq!(n, 48 + small.len());
            check_v6(&out[..n], kind, &small);
        }
        let big = v6_packet(A6, B6, PROTO_UDP, &udp_payload(1400));
        let kind = V6Error::PacketTooBig { mtu: 1380 };
        let n = build_v6_error(&mut out, GW6, &big, kind).unwrap();
        assert_eq!(n, V6_ERROR_MAX);
        check_v6(&out[..n], kind, &big);
        // Odd quote length exercises checksum padding.
        let odd = v6_packet(A6, B6, PROTO_UDP, &udp_payload(51));
        let n = build_v6_error(&mut out, GW6, &odd, V6Error::NoRoute).unwrap();
        assert_eq!(n % 2, 1);
        check_v6(&out[..n], V6Error::NoRoute, &odd);
        // Small output buffer: quote truncated but valid.
        let mut buf = [0u8; 100];
        let n = build_v6_error(&mut buf, GW6, &big, kind).unwrap();
        assert_eq!(n, 100);
        check_v6(&buf[..n], kind, &big);
        assert_eq!(build_v6_error(&mut buf[..87], GW6, &big, kind), None);
    }

    #[test]
    fn v6_refusals() {
        let mut out = [0u8; 1500];
        let nr = V6Error::NoRoute;
        let ptb = V6Error::PacketTooBig { mtu: 1280 };
        let udp = udp_payload(20);
        for src in [
            Ipv6Addr::UNSPECIFIED,
            Ipv6Addr::LOCALHOST,
            "ff02::1".parse().unwrap(),
        ] {
            let p = v6_packet(src, B6, PROTO_UDP, &udp);
            assert_eq!(build_v6_error(&mut out, GW6, &p, nr), None);
            assert_eq!(build_v6_error(&mut out, GW6, &p, ptb), None);
        }
        // Multicast destination: only packet-too-big is allowed.
        let mc = v6_packet(A6, "ff0e::1".parse().unwrap(), PROTO_UDP, &udp);
        assert_eq!(build_v6_error(&mut out, GW6, &mc, nr), None);
        assert!(build_v6_error(&mut out, GW6, &mc, ptb).is_some());
        // ICMPv6 errors (type < 128) are not answered, echo requests (128) are.
        let err = v6_packet(A6, B6, PROTO_ICMPV6, &[1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(build_v6_error(&mut out, GW6, &err, ptb), None);
        let echo = v6_packet(A6, B6, PROTO_ICMPV6, &[128, 0, 0, 0, 0, 1, 0, 1]);
        assert!(build_v6_error(&mut out, GW6, &echo, ptb).is_some());
        // ICMPv6 error behind a destination-options header is still recognised.
        let hidden = v6_packet(
            A6,
            B6,
            60,
            &[PROTO_ICMPV6, 0, 1, 4, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0],
        );
        assert_eq!(build_v6_error(&mut out, GW6, &hidden, nr), None);
        // Non-first fragment.
        let frag = [
            [PROTO_UDP, 0].as_slice(),
            &((10u16 << 3) | 1).to_be_bytes(),
            &[0; 4],
            &udp,
        ]
        .concat();
        let p = v6_packet(A6, B6, 44, &frag);
        assert_eq!(build_v6_error(&mut out, GW6, &p, nr), None);
        // IPv4 input.
        let p4 = v4_packet(A4, B4, PROTO_UDP, &udp);
        assert_eq!(build_v6_error(&mut out, GW6, &p4, nr), None);
    }
}
