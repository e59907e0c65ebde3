//! ICMP error generation for inner IP packets.
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
//! The original is read through the checked view [`crate::packet::IpPacket`] and the error's IP
//! header is written by [`crate::packet::IpRepr`]; checksums come from [`crate::checksum`].

use core::net::{Ipv4Addr, Ipv6Addr};

use crate::checksum;
use crate::packet::{Addresses, IpPacket, IpVersion, Ipv4Repr, Ipv6Repr};

pub use crate::packet::{PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP};

/// Largest IPv4 ICMP error packet we emit (RFC 1812 §4.3.2.3).
pub const V4_ERROR_MAX: usize = 576;
/// Largest ICMPv6 error packet we emit (RFC 4443 §2.4 (c): the IPv6 minimum MTU).
pub const V6_ERROR_MAX: usize = 1280;

const IPV4_HEADER_LEN: usize = 20;
const IPV6_HEADER_LEN: usize = 40;
const ICMP_HEADER_LEN: usize = 8;
/// Hop limit / TTL of the error packets we originate.
const ERROR_HOP_LIMIT: u8 = 64;

/// True if the packet is an ICMP (v4) or ICMPv6 *error* message, or looks like one but is too
/// short to tell. Such packets must never be answered with an ICMP error.
fn is_icmp_error(packet: &IpPacket<&[u8]>) -> bool {
    let is_icmp = match packet.version() {
        IpVersion::V4 => packet.protocol() == PROTO_ICMP,
        IpVersion::V6 => packet.protocol() == PROTO_ICMPV6,
    };
    if !is_icmp {
        return false;
    }
    // A non-first fragment (no payload view) or an empty message: cannot see the type; err on
    // the side of silence. Only the type byte is needed, so a message shorter than its header
    // is still judged by it.
    let Some(&ty) = packet.payload().and_then(|p| p.first()) else {
        return true;
    };
    match packet.version() {
        // Destination unreachable, source quench, redirect, time exceeded, parameter problem.
        IpVersion::V4 => matches!(ty, 3 | 4 | 5 | 11 | 12),
        // RFC 4443 §2.1: types 0-127 are errors.
        IpVersion::V6 => ty < 128,
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
    /// Type 3 code 13: communication administratively prohibited (a policy `reject`, RFC 1812).
    AdminProhibited,
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
    /// Type 1 code 1: communication with destination administratively prohibited (a policy
    /// `reject`).
    AdminProhibited,
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
    let packet = IpPacket::new_checked(original).ok()?;
    let Addresses::V4 {
        src: orig_src,
        dst: orig_dst,
    } = packet.addresses()
    else {
        return None;
    };
    if !v4_source_is_answerable(orig_src)
        || orig_dst.is_multicast()
        || orig_dst.is_broadcast()
        || packet.fragment().is_non_first()
        || is_icmp_error(&packet)
    {
        return None;
    }
    let min_quote = (packet.transport_offset() + 8).min(packet.total_len());
    let room = out
        .len()
        .min(V4_ERROR_MAX)
        .checked_sub(IPV4_HEADER_LEN + ICMP_HEADER_LEN)?;
    if room < min_quote {
        return None;
    }
    let quote = packet.total_len().min(room);
    let total = IPV4_HEADER_LEN + ICMP_HEADER_LEN + quote;
    let out = &mut out[..total];

    // IPv4 header.
    Ipv4Repr {
        src: from,
        dst: orig_src,
        protocol: PROTO_ICMP,
        payload_len: ICMP_HEADER_LEN + quote,
        hop_limit: ERROR_HOP_LIMIT,
        dscp_ecn: 0xc0, // DSCP CS6 (network control), as Linux does for ICMP errors.
        ident: 0,
        dont_frag: false,
        more_frags: false,
        frag_offset: 0,
    }
    .emit(out)
    .ok()?;

    // ICMP header + quote.
    let (code, rest) = match kind {
        V4Error::HostUnreachable => (1, [0u8; 4]),
        V4Error::FragmentationNeeded { next_hop_mtu } => {
            let m = next_hop_mtu.to_be_bytes();
            (4, [0, 0, m[0], m[1]])
        }
        V4Error::AdminProhibited => (13, [0u8; 4]),
    };
    let icmp = &mut out[IPV4_HEADER_LEN..];
    icmp[0] = 3;
    icmp[1] = code;
    icmp[2] = 0;
    icmp[3] = 0;
    icmp[4..8].copy_from_slice(&rest);
    icmp[ICMP_HEADER_LEN..].copy_from_slice(&original[..quote]);
    let cs = checksum::checksum(icmp);
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
    let packet = IpPacket::new_checked(original).ok()?;
    let Addresses::V6 {
        src: orig_src,
        dst: orig_dst,
    } = packet.addresses()
    else {
        return None;
    };
    let too_big = matches!(kind, V6Error::PacketTooBig { .. });
    if !v6_source_is_answerable(orig_src)
        || (orig_dst.is_multicast() && !too_big)
        || packet.fragment().is_non_first()
        || is_icmp_error(&packet)
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
    let quote = packet.total_len().min(room);
    let icmp_len = ICMP_HEADER_LEN + quote;
    let total = IPV6_HEADER_LEN + icmp_len;
    let out = &mut out[..total];

    Ipv6Repr {
        src: from,
        dst: orig_src,
        next_header: PROTO_ICMPV6,
        payload_len: icmp_len,
        hop_limit: ERROR_HOP_LIMIT,
        traffic_class: 0,
        flow_label: 0,
    }
    .emit(out)
    .ok()?;

    let (ty, code, rest) = match kind {
        V6Error::NoRoute => (1, 0, [0u8; 4]),
        V6Error::AddressUnreachable => (1, 3, [0u8; 4]),
        V6Error::PacketTooBig { mtu } => (2, 0, mtu.to_be_bytes()),
        V6Error::AdminProhibited => (1, 1, [0u8; 4]),
    };
    let icmp = &mut out[IPV6_HEADER_LEN..];
    icmp[0] = ty;
    icmp[1] = code;
    icmp[2] = 0;
    icmp[3] = 0;
    icmp[4..8].copy_from_slice(&rest);
    icmp[ICMP_HEADER_LEN..].copy_from_slice(&original[..quote]);
    let pseudo = checksum::pseudo_header_v6(from, orig_src, PROTO_ICMPV6, icmp_len);
    let cs = !checksum::fold(checksum::sum(icmp, pseudo));
    icmp[2..4].copy_from_slice(&cs.to_be_bytes());
    Some(total)
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

    /// The checksum of `data` with an initial unfolded sum (test shorthand over
    /// [`crate::checksum`]).
    fn checksum(data: &[u8], initial: u32) -> u16 {
        !checksum::fold(checksum::sum(data, u64::from(initial)))
    }

    fn pseudo_header_sum_v6(src: Ipv6Addr, dst: Ipv6Addr, upper_len: u32, next_header: u8) -> u32 {
        u32::from(checksum::fold(checksum::pseudo_header_v6(
            src,
            dst,
            next_header,
            upper_len as usize,
        )))
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
            V4Error::AdminProhibited => assert_eq!(icmp.msg_code(), 13),
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
            V6Error::AdminProhibited => {
                assert_eq!(icmp.msg_type(), Icmpv6Message::DstUnreachable);
                assert_eq!(icmp.msg_code(), 1);
            }
        }
        let quote = &ip.payload()[8..];
        assert_eq!(quote, &original[..quote.len()]);
    }

    #[test]
    fn v6_errors() {
        let mut out = [0u8; 2000];
        let small = v6_packet(A6, B6, PROTO_UDP, &udp_payload(50));
        for kind in [
            V6Error::NoRoute,
            V6Error::AddressUnreachable,
            V6Error::AdminProhibited,
        ] {
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
