//! The answer to a packet a policy `reject`s (docs/POLICY.md): a TCP RST for TCP, an ICMP
//! "administratively prohibited" error for everything else (ICMPv4 type 3 code 13, ICMPv6 type 1
//! code 1). Pure; writes into a buffer the caller lends.
//!
//! The answer comes **from the refused packet's destination**, as if that host had refused it:
//! the sender's stack matches a RST to its connection by addresses and ports, and on the receiving
//! end the answer's source is one of our own addresses (or routes), so the peer's anti-spoofing
//! check accepts it. Nothing answers a RST, an ICMP error, a later fragment or a packet from an
//! address that cannot be answered (the ICMP builders' rules, RFC 1122 §3.2.2).

use std::net::IpAddr;

use crate::checksum;
use crate::icmp::{self, V4Error, V6Error};
use crate::packet::{IpPacket, Ipv4Repr, Ipv6Repr, Transport, IPV4_HEADER_LEN, IPV6_HEADER_LEN};

const TCP: u8 = 6;
const TCP_HEADER_LEN: usize = 20;
const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const ACK: u8 = 0x10;
const HOP_LIMIT: u8 = 64;

/// Which answer was built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RejectKind {
    /// A TCP RST.
    TcpReset,
    /// An ICMP / ICMPv6 administratively-prohibited error.
    IcmpProhibited,
}

/// Build the answer to `original` into `out`: its length and kind, or `None` when nothing must
/// answer it (see the module docs) or `out` is too small.
pub(crate) fn build(original: &[u8], out: &mut [u8]) -> Option<(usize, RejectKind)> {
    let p = IpPacket::new_checked(original).ok()?;
    if p.fragment().is_non_first() {
        return None;
    }
    match p.transport() {
        Transport::Tcp(t) if t.flags.bits() & RST != 0 => None,
        Transport::Tcp(_) => tcp_reset(&p, out).map(|n| (n, RejectKind::TcpReset)),
        _ => {
            let n = match p.dst_addr() {
                IpAddr::V4(from) => {
                    icmp::build_v4_error(out, from, original, V4Error::AdminProhibited)
                }
                IpAddr::V6(from) => {
                    icmp::build_v6_error(out, from, original, V6Error::AdminProhibited)
                }
            }?;
            Some((n, RejectKind::IcmpProhibited))
        }
    }
}

/// RFC 9293 §3.10.7.1: to a segment with ACK, a RST with `seq = SEG.ACK`; otherwise a RST|ACK
/// with `seq = 0`, `ack = SEG.SEQ + SEG.LEN`.
fn tcp_reset<T: AsRef<[u8]>>(p: &IpPacket<T>, out: &mut [u8]) -> Option<usize> {
    let (src, dst) = (p.src_addr(), p.dst_addr());
    if src.is_multicast() || dst.is_multicast() || src.is_unspecified() {
        return None;
    }
    let bytes = p.as_bytes();
    let at = p.transport_offset();
    let h: &[u8; TCP_HEADER_LEN] = bytes.get(at..)?.first_chunk()?;
    let (src_port, dst_port) = (
        u16::from_be_bytes([h[0], h[1]]),
        u16::from_be_bytes([h[2], h[3]]),
    );
    let seq = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
    let ack = u32::from_be_bytes([h[8], h[9], h[10], h[11]]);
    let data_offset = usize::from(h[12] >> 4) * 4;
    let flags = h[13];
    let payload = p
        .total_len()
        .checked_sub(at + data_offset.max(TCP_HEADER_LEN))?;
    let seg_len =
        u32::try_from(payload).ok()? + u32::from(flags & SYN != 0) + u32::from(flags & FIN != 0);
    let (rst_seq, rst_ack, rst_flags) = if flags & ACK != 0 {
        (ack, 0, RST)
    } else {
        (0, seq.wrapping_add(seg_len), RST | ACK)
    };

    let ip_len = match dst {
        IpAddr::V4(_) => IPV4_HEADER_LEN,
        IpAddr::V6(_) => IPV6_HEADER_LEN,
    };
    let total = ip_len + TCP_HEADER_LEN;
    let out = out.get_mut(..total)?;
    out.fill(0);
    let pseudo = match (dst, src) {
        (IpAddr::V4(from), IpAddr::V4(to)) => {
            Ipv4Repr {
                src: from,
                dst: to,
                protocol: TCP,
                payload_len: TCP_HEADER_LEN,
                hop_limit: HOP_LIMIT,
                dscp_ecn: 0,
                ident: 0,
                dont_frag: true,
                more_frags: false,
                frag_offset: 0,
            }
            .emit(out)
            .ok()?;
            checksum::pseudo_header_v4(from, to, TCP, TCP_HEADER_LEN)
        }
        (IpAddr::V6(from), IpAddr::V6(to)) => {
            Ipv6Repr {
                src: from,
                dst: to,
                next_header: TCP,
                payload_len: TCP_HEADER_LEN,
                hop_limit: HOP_LIMIT,
                traffic_class: 0,
                flow_label: 0,
            }
            .emit(out)
            .ok()?;
            checksum::pseudo_header_v6(from, to, TCP, TCP_HEADER_LEN)
        }
        _ => return None,
    };
    let tcp = out.get_mut(ip_len..)?;
    tcp[0..2].copy_from_slice(&dst_port.to_be_bytes());
    tcp[2..4].copy_from_slice(&src_port.to_be_bytes());
    tcp[4..8].copy_from_slice(&rst_seq.to_be_bytes());
    tcp[8..12].copy_from_slice(&rst_ack.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = rst_flags;
    let cs = !checksum::fold(checksum::sum(tcp, pseudo));
    tcp[16..18].copy_from_slice(&cs.to_be_bytes());
    Some(total)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use smoltcp::wire::{
        Icmpv4Message, Icmpv4Packet, Icmpv6Message, Icmpv6Packet, IpAddress, Ipv4Packet,
        Ipv6Packet, TcpPacket,
    };
    use std::net::{Ipv4Addr, Ipv6Addr};

    const A4: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 1);
    const B4: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 2);
    const A6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
    const B6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);

    fn tcp_segment(flags: u8, seq: u32, ack: u32, payload: &[u8]) -> Vec<u8> {
        let mut t = vec![0u8; 20];
        t[0..2].copy_from_slice(&40000u16.to_be_bytes());
        t[2..4].copy_from_slice(&443u16.to_be_bytes());
        t[4..8].copy_from_slice(&seq.to_be_bytes());
        t[8..12].copy_from_slice(&ack.to_be_bytes());
        t[12] = 5 << 4;
        t[13] = flags;
        t.extend_from_slice(payload);
        t
    }

    fn v4(proto: u8, body: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; 20];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&u16::try_from(20 + body.len()).unwrap().to_be_bytes());
        p[8] = 64;
        p[9] = proto;
        p[12..16].copy_from_slice(&A4.octets());
        p[16..20].copy_from_slice(&B4.octets());
        let cs = checksum::checksum(&p);
        p[10..12].copy_from_slice(&cs.to_be_bytes());
        p.extend_from_slice(body);
        p
    }

    fn v6(next: u8, body: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; 40];
        p[0] = 0x60;
        p[4..6].copy_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
        p[6] = next;
        p[7] = 64;
        p[8..24].copy_from_slice(&A6.octets());
        p[24..40].copy_from_slice(&B6.octets());
        p.extend_from_slice(body);
        p
    }

    #[test]
    fn a_syn_gets_a_reset_from_its_destination_acknowledging_it() {
        let syn = v4(TCP, &tcp_segment(SYN, 1000, 0, &[]));
        let mut out = [0u8; 128];
        let (n, kind) = build(&syn, &mut out).unwrap();
        assert_eq!(kind, RejectKind::TcpReset);
        let ip = Ipv4Packet::new_checked(&out[..n]).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!(ip.src_addr(), B4);
        assert_eq!(ip.dst_addr(), A4);
        let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
        assert!(tcp.verify_checksum(&IpAddress::Ipv4(B4), &IpAddress::Ipv4(A4)));
        assert_eq!((tcp.src_port(), tcp.dst_port()), (443, 40000));
        assert!(tcp.rst() && tcp.ack() && !tcp.syn());
        assert_eq!(tcp.seq_number().0, 0);
        assert_eq!(tcp.ack_number().0, 1001, "SYN counts one");
    }

    #[test]
    fn a_segment_with_ack_gets_a_reset_at_its_ack_number() {
        let seg = v6(TCP, &tcp_segment(ACK | 0x08, 7, 5555, b"hello"));
        let mut out = [0u8; 128];
        let (n, kind) = build(&seg, &mut out).unwrap();
        assert_eq!(kind, RejectKind::TcpReset);
        let ip = Ipv6Packet::new_checked(&out[..n]).unwrap();
        assert_eq!(ip.src_addr(), B6);
        assert_eq!(ip.dst_addr(), A6);
        let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
        assert!(tcp.verify_checksum(&IpAddress::Ipv6(B6), &IpAddress::Ipv6(A6)));
        assert!(tcp.rst() && !tcp.ack());
        assert_eq!(tcp.seq_number().0, 5555);
    }

    #[test]
    fn data_without_ack_is_acknowledged_with_its_length() {
        let seg = v4(TCP, &tcp_segment(FIN, 10, 0, b"abc"));
        let mut out = [0u8; 128];
        let (n, _) = build(&seg, &mut out).unwrap();
        let ip = Ipv4Packet::new_checked(&out[..n]).unwrap();
        let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
        assert_eq!(tcp.ack_number().0, 14, "3 bytes and the FIN");
    }

    #[test]
    fn a_reset_is_never_answered() {
        let rst = v4(TCP, &tcp_segment(RST, 1, 0, &[]));
        assert_eq!(build(&rst, &mut [0u8; 128]), None);
    }

    #[test]
    fn udp_gets_admin_prohibited_from_its_destination() {
        let udp = v4(17, &[0x9c, 0x40, 0, 53, 0, 12, 0, 0, 1, 2, 3, 4]);
        let mut out = [0u8; 256];
        let (n, kind) = build(&udp, &mut out).unwrap();
        assert_eq!(kind, RejectKind::IcmpProhibited);
        let ip = Ipv4Packet::new_checked(&out[..n]).unwrap();
        assert_eq!(ip.src_addr(), B4);
        let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
        assert_eq!(icmp.msg_type(), Icmpv4Message::DstUnreachable);
        assert_eq!(icmp.msg_code(), 13);

        let udp6 = v6(17, &[0x9c, 0x40, 0, 53, 0, 12, 0, 0, 1, 2, 3, 4]);
        let (n, kind) = build(&udp6, &mut out).unwrap();
        assert_eq!(kind, RejectKind::IcmpProhibited);
        let ip = Ipv6Packet::new_checked(&out[..n]).unwrap();
        assert_eq!(ip.src_addr(), B6);
        let icmp = Icmpv6Packet::new_checked(ip.payload()).unwrap();
        assert_eq!(icmp.msg_type(), Icmpv6Message::DstUnreachable);
        assert_eq!(icmp.msg_code(), 1);
    }

    #[test]
    fn short_buffers_and_garbage_give_nothing() {
        let syn = v4(TCP, &tcp_segment(SYN, 1, 0, &[]));
        assert_eq!(build(&syn, &mut [0u8; 39]), None);
        assert_eq!(build(&[0x45, 0, 0], &mut [0u8; 128]), None);
        // A TCP header cut short cannot be reset (no sequence numbers): ICMP answers it.
        let truncated_tcp = v4(TCP, &[0u8; 8]);
        assert_eq!(
            build(&truncated_tcp, &mut [0u8; 128]).map(|(_, k)| k),
            Some(RejectKind::IcmpProhibited)
        );
    }
}
