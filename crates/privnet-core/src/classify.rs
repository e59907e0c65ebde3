//! From the checked inner-packet view to the policy engine's flow: the one place that decides what
//! the policy sees of a packet (docs/POLICY.md §4). Pure; called per packet only when a policy is
//! installed.
//!
//! - TCP and UDP: ports and (TCP) flags from the view; SCTP: its ports from the first four bytes.
//! - ICMP / ICMPv6: type and code; the echo identifier of echo requests and replies; for an error
//!   message the quoted header (addresses, protocol, ports) of the packet it reports on, read
//!   leniently since quotes are truncated by design.
//! - A later fragment: its protocol and fragment position only (it follows its first fragment).
//! - A header the view found truncated (a tiny first fragment, RFC 1858): the `unknown` class,
//!   which the policy treats fail-closed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::packet::{self, IpPacket, Transport};
use crate::policy::{Flow, Fragment, Protocol, QuotedFlow};

const SCTP: u8 = 132;

/// The flow of a checked packet.
pub(crate) fn flow_of<T: AsRef<[u8]>>(p: &IpPacket<T>) -> Flow {
    let (src, dst) = (p.src_addr(), p.dst_addr());
    let fragment = match p.fragment() {
        packet::Fragment::Unfragmented => Fragment::Unfragmented,
        packet::Fragment::First { ident } => Fragment::First { ident },
        packet::Fragment::NonFirst { ident, .. } => Fragment::NonFirst { ident },
    };
    let number = Protocol::Number(p.protocol());
    let flow = match p.transport() {
        Transport::Tcp(t) => Flow::tcp(src, t.src_port, dst, t.dst_port, t.flags.bits()),
        Transport::Udp(u) => Flow::udp(src, u.src_port, dst, u.dst_port),
        Transport::Icmpv4(h) | Transport::Icmpv6(h) => {
            let v6 = matches!(p.transport(), Transport::Icmpv6(_));
            let body = p.payload().unwrap_or_default();
            let mut f = Flow::icmp(src, dst, h.ty, h.code, echo_ident(v6, h.ty, body));
            if let Some(i) = f.icmp.as_mut() {
                i.quoted = if is_error(v6, h.ty) {
                    body.get(8..).and_then(quoted)
                } else {
                    None
                };
            }
            f
        }
        Transport::Fragment => Flow::other(src, dst, number),
        Transport::Truncated => Flow::other(src, dst, Protocol::Unknown),
        Transport::Unknown if p.protocol() == SCTP => match p.payload().and_then(ports) {
            Some((s, d)) => Flow {
                proto: Protocol::SCTP,
                src_port: Some(s),
                dst_port: Some(d),
                ..Flow::other(src, dst, Protocol::SCTP)
            },
            None => Flow::other(src, dst, Protocol::Unknown),
        },
        Transport::Unknown => Flow::other(src, dst, number),
    };
    flow.with_fragment(fragment)
}

/// The first two 16-bit words (ports) of a transport header.
fn ports(b: &[u8]) -> Option<(u16, u16)> {
    let h = b.get(..4)?;
    Some((
        u16::from_be_bytes([h[0], h[1]]),
        u16::from_be_bytes([h[2], h[3]]),
    ))
}

/// The identifier of an ICMP echo request or reply (bytes 4–5).
fn echo_ident(v6: bool, ty: u8, icmp: &[u8]) -> Option<u16> {
    let echo = if v6 {
        matches!(ty, 128 | 129)
    } else {
        matches!(ty, 0 | 8)
    };
    if !echo {
        return None;
    }
    let b = icmp.get(4..6)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

/// ICMP error messages (they quote the packet they report on).
fn is_error(v6: bool, ty: u8) -> bool {
    if v6 {
        matches!(ty, 1..=4)
    } else {
        matches!(ty, 3 | 4 | 5 | 11 | 12)
    }
}

/// The header quoted in an ICMP error: addresses, protocol and ports (or echo identifier) of the
/// offending packet. Lenient about lengths (a quote is cut short on purpose) but never reads past
/// the buffer.
fn quoted(b: &[u8]) -> Option<QuotedFlow> {
    let first = *b.first()?;
    let (src, dst, proto, transport) = match first >> 4 {
        4 => {
            let h = b.get(..20)?;
            let ihl = usize::from(first & 0x0f) * 4;
            if ihl < 20 {
                return None;
            }
            let src = IpAddr::V4(Ipv4Addr::new(h[12], h[13], h[14], h[15]));
            let dst = IpAddr::V4(Ipv4Addr::new(h[16], h[17], h[18], h[19]));
            (src, dst, h[9], b.get(ihl..).unwrap_or_default())
        }
        6 => {
            let h = b.get(..40)?;
            let mut s = [0u8; 16];
            s.copy_from_slice(&h[8..24]);
            let mut d = [0u8; 16];
            d.copy_from_slice(&h[24..40]);
            (
                IpAddr::V6(Ipv6Addr::from(s)),
                IpAddr::V6(Ipv6Addr::from(d)),
                h[6],
                b.get(40..).unwrap_or_default(),
            )
        }
        _ => return None,
    };
    let (src_port, dst_port) = match proto {
        6 | 17 | SCTP => match ports(transport) {
            Some((s, d)) => (Some(s), Some(d)),
            None => (None, None),
        },
        // A quoted echo: its identifier stands for both ports (the tracker keys echoes on it).
        1 | 58 => {
            let id = echo_ident(proto == 58, *transport.first()?, transport);
            (id, id)
        }
        _ => (None, None),
    };
    Some(QuotedFlow {
        src,
        dst,
        proto: Protocol::Number(proto),
        src_port,
        dst_port,
    })
}

/// The flow's ICMP fields (all 255 when it has none), for tests.
#[cfg(test)]
fn icmp_of(f: &Flow) -> crate::policy::Icmp {
    f.icmp.unwrap_or(crate::policy::Icmp {
        ty: 255,
        code: 255,
        ident: None,
        quoted: None,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::testing::ipv4_udp;

    fn v4(proto: u8, payload: &[u8]) -> Vec<u8> {
        let total = 20 + payload.len();
        let mut p = vec![0u8; total];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        p[8] = 64;
        p[9] = proto;
        p[12..16].copy_from_slice(&[10, 0, 0, 1]);
        p[16..20].copy_from_slice(&[10, 0, 0, 2]);
        p[20..].copy_from_slice(payload);
        p
    }

    #[test]
    fn tcp_udp_and_sctp_carry_their_ports() {
        let mut tcp = vec![0u8; 20];
        tcp[..4].copy_from_slice(&[0x9c, 0x40, 0x15, 0x38]); // 40000 -> 5432
        tcp[12] = 0x50;
        tcp[13] = 0x02; // SYN
        let f = flow_of(&IpPacket::new_checked(v4(6, &tcp)).unwrap());
        assert_eq!(
            (f.proto, f.src_port, f.dst_port, f.tcp_flags),
            (Protocol::TCP, Some(40000), Some(5432), 2)
        );
        let udp = ipv4_udp(
            "10.0.0.1".parse().unwrap(),
            "10.0.0.2".parse().unwrap(),
            b"x",
        );
        let f = flow_of(&IpPacket::new_checked(udp).unwrap());
        assert_eq!((f.proto, f.dst_port), (Protocol::UDP, Some(5000)));
        let f = flow_of(&IpPacket::new_checked(v4(132, &[0, 9, 0, 80, 1, 2, 3, 4])).unwrap());
        assert_eq!(
            (f.proto, f.src_port, f.dst_port),
            (Protocol::SCTP, Some(9), Some(80))
        );
        let f = flow_of(&IpPacket::new_checked(v4(132, &[0, 9])).unwrap());
        assert_eq!(f.proto, Protocol::Unknown, "SCTP without its ports");
        let f = flow_of(&IpPacket::new_checked(v4(47, &[0; 8])).unwrap());
        assert_eq!(f.proto, Protocol::Number(47));
    }

    #[test]
    fn icmp_echo_ident_and_the_quote_of_an_error() {
        let echo = [8, 0, 0, 0, 0x12, 0x34, 0, 1];
        let f = flow_of(&IpPacket::new_checked(v4(1, &echo)).unwrap());
        assert_eq!(icmp_of(&f).ident, Some(0x1234));
        // Destination unreachable quoting a UDP packet from 10.0.0.2:7 to 10.0.0.9:53.
        let mut quote = v4(17, &[0, 7, 0, 53, 0, 8, 0, 0]);
        quote[12..16].copy_from_slice(&[10, 0, 0, 2]);
        quote[16..20].copy_from_slice(&[10, 0, 0, 9]);
        let mut err = vec![3, 1, 0, 0, 0, 0, 0, 0];
        err.extend_from_slice(&quote[..28]);
        let f = flow_of(&IpPacket::new_checked(v4(1, &err)).unwrap());
        let q = icmp_of(&f).quoted.unwrap();
        assert_eq!(
            (q.proto, q.src_port, q.dst_port),
            (Protocol::UDP, Some(7), Some(53))
        );
        assert_eq!(q.dst, "10.0.0.9".parse::<IpAddr>().unwrap());
        // A quote cut inside the IP header is no quote; nothing panics.
        let f = flow_of(&IpPacket::new_checked(v4(1, &err[..8 + 10])).unwrap());
        assert_eq!(icmp_of(&f).quoted, None);
    }

    #[test]
    fn fragments_and_tiny_first_fragments() {
        // A non-first fragment: no ports, its position only.
        let mut p = v4(6, &[0; 16]);
        p[6] = 0x00;
        p[7] = 0x02; // offset 16 bytes
        p[4..6].copy_from_slice(&[0xab, 0xcd]);
        let f = flow_of(&IpPacket::new_checked(p).unwrap());
        assert_eq!(f.fragment, Fragment::NonFirst { ident: 0xabcd });
        assert_eq!(f.dst_port, None);
        // A first fragment too short for the TCP header: the unknown class.
        let mut p = v4(6, &[0; 8]);
        p[6] = 0x20; // more fragments
        let f = flow_of(&IpPacket::new_checked(p).unwrap());
        assert_eq!(f.proto, Protocol::Unknown);
        assert!(matches!(f.fragment, Fragment::First { .. }));
    }
}
