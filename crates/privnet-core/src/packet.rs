//! The inner-packet layer: one checked view of the IPv4 / IPv6 packets that travel inside the
//! tunnel, in smoltcp's `wire` style.
//!
//! - [`IpPacket`] is the checked view. [`IpPacket::new_checked`] validates the IP header(s) once
//!   and walks the IPv6 extension headers; after it has succeeded **no accessor can panic**,
//!   whatever the bytes. Accessors are cheap: the results of the walk are cached in the view,
//!   addresses and the upper-layer header ([`IpPacket::transport`] → [`Transport`]: ports, TCP
//!   flags, ICMP type/code) are read on demand from the bytes the check proved to be there.
//! - [`IpRepr`] is the fixed IP header as plain values, with a parse/emit pair:
//!   [`IpRepr::parse`] reads a checked view, [`IpRepr::emit`] writes a header (IPv4 with its
//!   checksum) into a caller buffer, and `parse(emit(r)) == r`.
//! - [`addresses`] is the data-plane fast path: source and destination only, after the same
//!   fixed-header checks, no walk, no allocation. The node calls it on every packet in both
//!   directions.
//!
//! Checksums live in [`crate::checksum`]; this module does not import the other packet users
//! (`icmp`, `offload`, `node`): they import it.
//!
//! # Invariants
//!
//! `IpPacket::new_checked(buf)` succeeds exactly when:
//! - the version nibble is 4 and: `buf` holds 20 bytes, `20 <= IHL * 4 <= total length <=
//!   buf.len()`; or
//! - the version nibble is 6 and: `buf` holds 40 bytes, `40 + payload length <= buf.len()`, and
//!   the chain of extension headers (hop-by-hop, routing, fragment, destination options, AH,
//!   and the RFC 7045 ones with the same layout: mobility, HIP, shim6, experimental) lies inside
//!   the packet and has at most [`MAX_EXTENSION_HEADERS`] links. The walk stops at the first
//!   other next-header value (TCP, UDP, ICMPv6, ESP, "no next header", anything unknown) and
//!   after a non-first fragment header (what follows it is not a header).
//!
//! After success:
//! - the packet is `buf[..total_len()]` (bytes beyond its own length field are ignored) and
//!   `transport_offset() <= total_len()`;
//! - [`Transport`] carries ports (TCP, UDP), TCP flags or ICMP type/code only when that header
//!   lies wholly inside the packet and the packet is not a non-first fragment; a first fragment
//!   has them if it holds the whole header;
//! - [`Fragment`] tells unfragmented, first and non-first fragments apart (an IPv6 "atomic
//!   fragment", offset 0 without more fragments, counts as unfragmented: RFC 6946);
//! - [`addresses`] returns the same addresses as the view. It accepts a superset: it does not walk
//!   IPv6 extension headers, so a packet with a broken chain passes it but not `new_checked`.
//!
//! Deliberately not checked: the IPv4 header checksum (an inner packet comes from the local
//! kernel or from an authenticated peer, and the kernel verifies it again when the packet is
//! written to the TUN), the UDP length field (in a first fragment it covers the whole datagram; it
//! is reported), and IPv6 jumbograms (payload length 0 means a 40-byte packet here). The oracle
//! tests (`packet/oracle.rs`) list where this differs from smoltcp's parsers.

mod mss;
mod repr;
mod transport;

#[cfg(test)]
mod oracle;
#[cfg(test)]
mod tests;

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::checksum;

pub use mss::{clamp_mss, maybe_syn, mss_limit};
pub use repr::{EmitError, IpRepr, Ipv4Repr, Ipv6Repr, IPV4_HEADER_LEN, IPV6_HEADER_LEN};
pub use transport::{
    IcmpHeader, TcpFlags, TcpHeader, Transport, UdpHeader, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP,
    PROTO_UDP,
};

/// Longest IPv6 extension-header chain [`IpPacket::new_checked`] walks; a longer one is refused
/// ([`Error::BadExtensionHeader`]). Real packets carry at most a handful.
pub const MAX_EXTENSION_HEADERS: usize = 16;

// IPv6 extension header types (RFC 8200 §4, RFC 7045).
const HOP_BY_HOP: u8 = 0;
const ROUTING: u8 = 43;
const FRAGMENT: u8 = 44;
const AUTHENTICATION: u8 = 51;
const DESTINATION_OPTIONS: u8 = 60;
const MOBILITY: u8 = 135;
const HIP: u8 = 139;
const SHIM6: u8 = 140;
const EXPERIMENT_1: u8 = 253;
const EXPERIMENT_2: u8 = 254;

/// Why [`IpPacket::new_checked`] refused a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The buffer is empty or shorter than the fixed IP header.
    #[error("truncated IP header")]
    Truncated,
    /// The version nibble is neither 4 nor 6.
    #[error("bad IP version {0}")]
    BadVersion(u8),
    /// The IPv4 IHL is below 5 or extends past the buffer.
    #[error("bad IPv4 header length")]
    BadHeaderLength,
    /// The total (IPv4) or payload (IPv6) length is inconsistent with the header or the buffer.
    #[error("IP length field inconsistent with buffer")]
    BadTotalLength,
    /// An IPv6 extension header runs past the packet, or there are too many of them.
    #[error("malformed IPv6 extension header chain")]
    BadExtensionHeader,
}

/// IP version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpVersion {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl IpVersion {
    /// 4 or 6.
    #[inline]
    pub fn number(self) -> u8 {
        match self {
            Self::V4 => 4,
            Self::V6 => 6,
        }
    }
}

/// Source and destination of one packet: both of one family, by construction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Addresses {
    /// IPv4.
    V4 {
        /// Source address.
        src: Ipv4Addr,
        /// Destination address.
        dst: Ipv4Addr,
    },
    /// IPv6.
    V6 {
        /// Source address.
        src: Ipv6Addr,
        /// Destination address.
        dst: Ipv6Addr,
    },
}

impl Addresses {
    /// Source address.
    #[inline]
    pub fn src(&self) -> IpAddr {
        match *self {
            Self::V4 { src, .. } => IpAddr::V4(src),
            Self::V6 { src, .. } => IpAddr::V6(src),
        }
    }

    /// Destination address.
    #[inline]
    pub fn dst(&self) -> IpAddr {
        match *self {
            Self::V4 { dst, .. } => IpAddr::V4(dst),
            Self::V6 { dst, .. } => IpAddr::V6(dst),
        }
    }

    /// The version both addresses belong to.
    #[inline]
    pub fn version(&self) -> IpVersion {
        match self {
            Self::V4 { .. } => IpVersion::V4,
            Self::V6 { .. } => IpVersion::V6,
        }
    }

    /// The pseudo-header sum (not folded) for `protocol` carrying `len` bytes between these
    /// addresses: see [`checksum::pseudo_header_v4`] / [`checksum::pseudo_header_v6`].
    #[inline]
    pub fn pseudo_header(&self, protocol: u8, len: usize) -> u64 {
        match *self {
            Self::V4 { src, dst } => checksum::pseudo_header_v4(src, dst, protocol, len),
            Self::V6 { src, dst } => checksum::pseudo_header_v6(src, dst, protocol, len),
        }
    }
}

/// Where a packet stands with respect to fragmentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fragment {
    /// Not a fragment (for IPv6 also an atomic fragment: offset 0, no more fragments).
    Unfragmented,
    /// The first fragment (offset 0, more to come): the transport header is here, if it fits.
    First {
        /// Identification (16 bits for IPv4, 32 for IPv6).
        ident: u32,
    },
    /// A later fragment: no transport header.
    NonFirst {
        /// Identification (16 bits for IPv4, 32 for IPv6).
        ident: u32,
        /// Offset of this fragment's data in the original payload, in bytes (non-zero).
        offset: u16,
        /// More fragments follow.
        more: bool,
    },
}

impl Fragment {
    /// From the fragment fields (offset in bytes).
    #[inline]
    fn from_fields(offset: u16, more: bool, ident: u32) -> Self {
        if offset != 0 {
            Self::NonFirst {
                ident,
                offset,
                more,
            }
        } else if more {
            Self::First { ident }
        } else {
            Self::Unfragmented
        }
    }

    /// True for any fragment, first or not.
    #[inline]
    pub fn is_fragment(&self) -> bool {
        !matches!(self, Self::Unfragmented)
    }

    /// True for a fragment other than the first (its upper-layer header is elsewhere).
    #[inline]
    pub fn is_non_first(&self) -> bool {
        matches!(self, Self::NonFirst { .. })
    }
}

/// What `new_checked` established: the results of the header walk, so accessors need not
/// repeat it. Kept small (it is built for every packet the coalescer sees, and moving a larger
/// one showed up in its instruction count); the transport header is classified on demand, from
/// the bytes this proves to be inside the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Meta {
    /// At most `total_len`.
    transport_offset: u32,
    /// At most the buffer length (and 65,575).
    total_len: u32,
    fragment: Fragment,
    version: IpVersion,
    protocol: u8,
}

impl Meta {
    #[inline]
    fn transport_offset(&self) -> usize {
        self.transport_offset as usize
    }

    #[inline]
    fn total_len(&self) -> usize {
        self.total_len as usize
    }
}

/// A checked view of an IPv4 or IPv6 packet at the start of a buffer (see the module docs for
/// what "checked" means). Construct it with [`IpPacket::new_checked`]; there is no unchecked
/// constructor because the view caches the result of the header walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpPacket<T: AsRef<[u8]>> {
    buffer: T,
    meta: Meta,
}

impl<T: AsRef<[u8]>> IpPacket<T> {
    /// Validate the IP header(s) at the start of `buffer` and find the upper-layer header.
    ///
    /// Always inlined: it runs for every packet the coalescer sees, and inlined into a caller
    /// that reads a few facts the compiler drops the rest (measured with callgrind: out of line
    /// it cost the coalescer ~100 instructions per packet more than the hand-written checks it
    /// replaced, inlined 6 to 20). The IPv6 extension-header walk stays out of line.
    ///
    /// # Errors
    /// [`Error`] says which check failed (see the module docs for the rules).
    #[inline(always)]
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let b = buffer.as_ref();
        let first = *b.first().ok_or(Error::Truncated)?;
        let meta = match first >> 4 {
            4 => parse_v4(b)?,
            6 => parse_v6(b)?,
            v => return Err(Error::BadVersion(v)),
        };
        Ok(Self { buffer, meta })
    }

    /// The buffer the view was made from (trailing bytes included).
    #[inline]
    pub fn buffer(&self) -> &T {
        &self.buffer
    }

    /// Give the buffer back.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The packet: the buffer up to the packet's own length.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        b.get(..self.meta.total_len()).unwrap_or(b)
    }

    /// IP version.
    #[inline]
    pub fn version(&self) -> IpVersion {
        self.meta.version
    }

    /// Source and destination, as a pair of one family.
    #[inline]
    pub fn addresses(&self) -> Addresses {
        let b = self.buffer.as_ref();
        match self.meta.version {
            IpVersion::V4 => Addresses::V4 {
                src: Ipv4Addr::from(array::<4>(b, 12)),
                dst: Ipv4Addr::from(array::<4>(b, 16)),
            },
            IpVersion::V6 => Addresses::V6 {
                src: Ipv6Addr::from(array::<16>(b, 8)),
                dst: Ipv6Addr::from(array::<16>(b, 24)),
            },
        }
    }

    /// Source address.
    #[inline]
    pub fn src_addr(&self) -> IpAddr {
        self.addresses().src()
    }

    /// Destination address.
    #[inline]
    pub fn dst_addr(&self) -> IpAddr {
        self.addresses().dst()
    }

    /// Upper-layer protocol: the IPv4 protocol field, or for IPv6 the next header that ended the
    /// extension-header walk (for a non-first fragment, the fragment header's next header).
    #[inline]
    pub fn protocol(&self) -> u8 {
        self.meta.protocol
    }

    /// Offset of the upper-layer header from the start of the packet: after IPv4 options or the
    /// IPv6 extension headers walked (for a non-first fragment, after the fragment header).
    #[inline]
    pub fn transport_offset(&self) -> usize {
        self.meta.transport_offset()
    }

    /// Packet length per its header: IPv4 total length, or 40 + IPv6 payload length.
    #[inline]
    pub fn total_len(&self) -> usize {
        self.meta.total_len()
    }

    /// IPv4 TTL or IPv6 hop limit.
    #[inline]
    pub fn hop_limit(&self) -> u8 {
        let at = match self.meta.version {
            IpVersion::V4 => 8,
            IpVersion::V6 => 7,
        };
        self.buffer.as_ref().get(at).copied().unwrap_or(0)
    }

    /// Fragmentation state.
    #[inline]
    pub fn fragment(&self) -> Fragment {
        self.meta.fragment
    }

    /// The upper-layer header, as far as this packet shows it (classified from the bytes at
    /// [`IpPacket::transport_offset`] on each call: a few loads and compares).
    #[inline]
    pub fn transport(&self) -> Transport {
        if self.meta.fragment.is_non_first() {
            return Transport::Fragment;
        }
        let l4 = self
            .buffer
            .as_ref()
            .get(self.meta.transport_offset()..self.meta.total_len())
            .unwrap_or(&[]);
        transport::parse(l4, self.meta.protocol, self.meta.version == IpVersion::V6)
    }

    /// TCP or UDP source and destination port (see [`Transport`] for when they exist).
    #[inline]
    pub fn ports(&self) -> Option<(u16, u16)> {
        self.transport().ports()
    }

    /// TCP flags of a TCP packet with a complete header.
    #[inline]
    pub fn tcp_flags(&self) -> Option<TcpFlags> {
        match self.transport() {
            Transport::Tcp(t) => Some(t.flags),
            _ => None,
        }
    }

    /// ICMP (in IPv4) or ICMPv6 (in IPv6) type and code.
    #[inline]
    pub fn icmp(&self) -> Option<IcmpHeader> {
        self.transport().icmp()
    }

    /// The upper-layer bytes (`transport_offset()..total_len()`: transport header and data), or
    /// `None` for a non-first fragment.
    #[inline]
    pub fn payload(&self) -> Option<&[u8]> {
        if self.meta.fragment.is_non_first() {
            return None;
        }
        self.buffer
            .as_ref()
            .get(self.meta.transport_offset()..self.meta.total_len())
    }
}

impl IpRepr {
    /// The fixed header of a checked packet. IPv4 options are not represented (`payload_len` is
    /// what follows them); IPv6 extension headers are part of `payload_len`.
    pub fn parse<T: AsRef<[u8]>>(packet: &IpPacket<T>) -> Self {
        let b = packet.buffer.as_ref();
        let h = array::<40>(b, 0);
        match packet.meta.version {
            IpVersion::V4 => {
                let flags = u16::from_be_bytes([h[6], h[7]]);
                Self::V4(Ipv4Repr {
                    src: Ipv4Addr::new(h[12], h[13], h[14], h[15]),
                    dst: Ipv4Addr::new(h[16], h[17], h[18], h[19]),
                    protocol: h[9],
                    payload_len: packet.meta.total_len() - packet.meta.transport_offset(),
                    hop_limit: h[8],
                    dscp_ecn: h[1],
                    ident: u16::from_be_bytes([h[4], h[5]]),
                    dont_frag: flags & 0x4000 != 0,
                    more_frags: flags & 0x2000 != 0,
                    frag_offset: (flags & 0x1fff) << 3,
                })
            }
            IpVersion::V6 => {
                let word = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
                let mut src = [0u8; 16];
                src.copy_from_slice(&h[8..24]);
                let mut dst = [0u8; 16];
                dst.copy_from_slice(&h[24..40]);
                Self::V6(Ipv6Repr {
                    src: Ipv6Addr::from(src),
                    dst: Ipv6Addr::from(dst),
                    next_header: h[6],
                    payload_len: packet.meta.total_len() - IPV6_HEADER_LEN,
                    hop_limit: h[7],
                    traffic_class: (word >> 20) as u8,
                    flow_label: word & 0xf_ffff,
                })
            }
        }
    }
}

/// `N` bytes of `b` from `at`, or zeros where `b` is shorter (never, for a checked view: this only
/// keeps the accessors free of panics without trusting that `AsRef` returns the same slice twice).
#[inline]
fn array<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(s) = b.get(at..) {
        let n = s.len().min(N);
        out[..n].copy_from_slice(&s[..n]);
    }
    out
}

#[inline(always)]
fn parse_v4(b: &[u8]) -> Result<Meta, Error> {
    let h: &[u8; IPV4_HEADER_LEN] = b.first_chunk().ok_or(Error::Truncated)?;
    let ihl = usize::from(h[0] & 0x0f) * 4;
    let total_len = usize::from(u16::from_be_bytes([h[2], h[3]]));
    if ihl < IPV4_HEADER_LEN {
        return Err(Error::BadHeaderLength);
    }
    // `ihl <= total_len <= b.len()`; which of the two failed only matters for the error.
    if total_len < ihl || total_len > b.len() {
        return Err(if ihl > b.len() {
            Error::BadHeaderLength
        } else {
            Error::BadTotalLength
        });
    }
    let word = u16::from_be_bytes([h[6], h[7]]);
    let fragment = Fragment::from_fields(
        (word & 0x1fff) << 3,
        word & 0x2000 != 0,
        u32::from(u16::from_be_bytes([h[4], h[5]])),
    );
    Ok(Meta {
        transport_offset: ihl as u32,
        total_len: total_len as u32,
        fragment,
        version: IpVersion::V4,
        protocol: h[9],
    })
}

#[inline(always)]
fn parse_v6(b: &[u8]) -> Result<Meta, Error> {
    let h: &[u8; IPV6_HEADER_LEN] = b.first_chunk().ok_or(Error::Truncated)?;
    let total_len = IPV6_HEADER_LEN + usize::from(u16::from_be_bytes([h[4], h[5]]));
    let packet = b.get(..total_len).ok_or(Error::BadTotalLength)?;
    let (protocol, transport_offset, fragment) = if is_extension_header(h[6]) {
        walk_v6(packet, h[6])?
    } else {
        // The common case, kept apart so that `new_checked` stays small enough to inline.
        (h[6], IPV6_HEADER_LEN, Fragment::Unfragmented)
    };
    Ok(Meta {
        transport_offset: transport_offset as u32,
        total_len: total_len as u32,
        fragment,
        version: IpVersion::V6,
        protocol,
    })
}

/// Whether the walk goes on past next-header value `next` (a table: one load on the hot path).
#[inline]
fn is_extension_header(next: u8) -> bool {
    const TABLE: [bool; 256] = {
        let mut t = [false; 256];
        let ext = [
            HOP_BY_HOP,
            ROUTING,
            FRAGMENT,
            AUTHENTICATION,
            DESTINATION_OPTIONS,
            MOBILITY,
            HIP,
            SHIM6,
            EXPERIMENT_1,
            EXPERIMENT_2,
        ];
        let mut i = 0;
        while i < ext.len() {
            t[ext[i] as usize] = true;
            i += 1;
        }
        t
    };
    TABLE[usize::from(next)]
}

/// Walk the extension headers of `packet` (exactly the IPv6 packet, per its payload length)
/// starting with next header `next`: `(upper-layer protocol, its offset, fragment state)`.
#[inline(never)]
fn walk_v6(packet: &[u8], mut next: u8) -> Result<(u8, usize, Fragment), Error> {
    let mut at = IPV6_HEADER_LEN;
    let mut fragment = Fragment::Unfragmented;
    let mut links = 0;
    loop {
        let len = match next {
            HOP_BY_HOP | ROUTING | DESTINATION_OPTIONS | MOBILITY | HIP | SHIM6 | EXPERIMENT_1
            | EXPERIMENT_2 => {
                // Length in 8-octet units, not counting the first 8 octets.
                let l = packet.get(at + 1).ok_or(Error::BadExtensionHeader)?;
                (usize::from(*l) + 1) * 8
            }
            FRAGMENT => 8,
            AUTHENTICATION => {
                // Length in 4-octet units, minus 2 (RFC 4302 §2.2).
                let l = packet.get(at + 1).ok_or(Error::BadExtensionHeader)?;
                (usize::from(*l) + 2) * 4
            }
            _ => return Ok((next, at, fragment)),
        };
        links += 1;
        if links > MAX_EXTENSION_HEADERS {
            return Err(Error::BadExtensionHeader);
        }
        let header = packet.get(at..at + len).ok_or(Error::BadExtensionHeader)?;
        let Some(&[nh, _, w0, w1, i0, i1, i2, i3]) = header.first_chunk::<8>() else {
            return Err(Error::BadExtensionHeader); // every extension header is at least 8 bytes
        };
        if next == FRAGMENT {
            let word = u16::from_be_bytes([w0, w1]);
            let this = Fragment::from_fields(
                word & !0x7,
                word & 1 != 0,
                u32::from_be_bytes([i0, i1, i2, i3]),
            );
            if this.is_non_first() {
                // The bytes after a non-first fragment header continue some earlier header.
                return Ok((nh, at + len, this));
            }
            // A second fragment header cannot make a fragment look whole again.
            if fragment == Fragment::Unfragmented {
                fragment = this;
            }
        }
        next = nh;
        at += len;
    }
}

/// Source and destination of an IPv4 or IPv6 packet, after the fixed-header checks of
/// [`IpPacket::new_checked`] (version, header length, length field within the buffer) but without
/// the IPv6 extension-header walk or the transport classification: the per-packet fast path of
/// the data plane (branch-light, no allocation). `None` if the checks fail.
///
/// Whenever `IpPacket::new_checked(packet)` succeeds this returns its addresses.
#[inline]
pub fn addresses(packet: &[u8]) -> Option<(IpAddr, IpAddr)> {
    let first = *packet.first()?;
    match first >> 4 {
        4 => {
            let h: &[u8; IPV4_HEADER_LEN] = packet.first_chunk()?;
            let ihl = usize::from(first & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
            if ihl < IPV4_HEADER_LEN || total < ihl || total > packet.len() {
                return None;
            }
            let src = Ipv4Addr::new(h[12], h[13], h[14], h[15]);
            let dst = Ipv4Addr::new(h[16], h[17], h[18], h[19]);
            Some((IpAddr::V4(src), IpAddr::V4(dst)))
        }
        6 => {
            let h: &[u8; IPV6_HEADER_LEN] = packet.first_chunk()?;
            let payload = usize::from(u16::from_be_bytes([h[4], h[5]]));
            if IPV6_HEADER_LEN + payload > packet.len() {
                return None;
            }
            let mut s = [0u8; 16];
            s.copy_from_slice(&h[8..24]);
            let mut d = [0u8; 16];
            d.copy_from_slice(&h[24..40]);
            Some((IpAddr::V6(Ipv6Addr::from(s)), IpAddr::V6(Ipv6Addr::from(d))))
        }
        _ => None,
    }
}
