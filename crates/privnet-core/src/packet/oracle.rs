//! The view against smoltcp's parsers as an oracle (property tests).
//!
//! Packets are built with smoltcp's `Repr::emit` (IPv4 / IPv6 headers, TCP, UDP, ICMP and ICMPv6
//! echo, or an opaque protocol), optionally with IPv4 options and fragment fields or IPv6
//! extension headers, then mutated (byte flips, truncation) or replaced by raw random bytes. The
//! oracle parses them with smoltcp's packet types; its answers and the view's must agree.
//!
//! smoltcp has no extension-header *chain* walker at the `wire` layer (its interface does that),
//! so the oracle composes smoltcp's `Ipv6ExtHeader` / `Ipv6FragmentHeader` itself, with the same
//! stop set and bound as the view; AH is read by hand (smoltcp's `proto-ipsec-ah` is off).
//!
//! Deliberate differences, where the oracle adapts (each is a documented choice of the view):
//! - IPv4 header checksum: not verified by the view (smoltcp's `Ipv4Packet::check_len` does not
//!   either; its `Ipv4Repr::parse` does, and refuses fragments: compared only when it accepts);
//! - UDP: the view needs the 8 header bytes only, smoltcp also checks the length field (which in a
//!   first fragment covers the whole datagram): where smoltcp refuses on that ground alone, the
//!   ports are still read with smoltcp's accessors;
//! - ICMPv6: the view needs the 4-byte header, smoltcp also the per-type body of known types;
//!   same adaptation;
//! - a non-first fragment has no transport header (smoltcp would read whatever bytes are there).

use proptest::prelude::*;
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    Icmpv4Packet, Icmpv4Repr, Icmpv6Packet, Icmpv6Repr, IpAddress, IpProtocol, Ipv4Packet,
    Ipv6ExtHeader, Ipv6FragmentHeader, Ipv6Packet, TcpControl, TcpPacket, TcpRepr, TcpSeqNumber,
    UdpPacket, UdpRepr,
};

use super::*;

/// What smoltcp says about a buffer.
#[derive(Debug, PartialEq)]
enum Oracle {
    /// The fixed header is refused (`Ipv4Packet`/`Ipv6Packet::new_checked`, or bad version).
    Fixed,
    /// The IPv6 extension-header chain is refused.
    Chain,
    /// Accepted, with these facts.
    Ok(Facts),
}

#[derive(Debug, PartialEq)]
struct Facts {
    src: IpAddr,
    dst: IpAddr,
    protocol: u8,
    transport_offset: usize,
    total_len: usize,
    hop_limit: u8,
    fragment: Fragment,
    transport: Transport,
}

fn oracle(b: &[u8]) -> Oracle {
    match b.first().map(|v| v >> 4) {
        Some(4) => oracle_v4(b),
        Some(6) => oracle_v6(b),
        _ => Oracle::Fixed,
    }
}

fn oracle_v4(b: &[u8]) -> Oracle {
    let Ok(p) = Ipv4Packet::new_checked(b) else {
        return Oracle::Fixed;
    };
    let fragment = Fragment::from_fields(p.frag_offset(), p.more_frags(), p.ident().into());
    let protocol = u8::from(p.next_header());
    Oracle::Ok(Facts {
        src: p.src_addr().into(),
        dst: p.dst_addr().into(),
        protocol,
        transport_offset: p.header_len().into(),
        total_len: p.total_len().into(),
        hop_limit: p.hop_limit(),
        fragment,
        transport: oracle_transport(p.payload(), protocol, fragment, false),
    })
}

fn oracle_v6(b: &[u8]) -> Oracle {
    let Ok(p) = Ipv6Packet::new_checked(b) else {
        return Oracle::Fixed;
    };
    let total_len = p.total_len();
    let packet = &b[..total_len];
    let mut next = u8::from(p.next_header());
    let mut at = 40;
    let mut links = 0;
    let mut fragment = Fragment::Unfragmented;
    loop {
        let len;
        let nh;
        match next {
            0 | 43 | 60 | 135 | 139 | 140 | 253 | 254 => {
                let Ok(h) = Ipv6ExtHeader::new_checked(&packet[at..]) else {
                    return Oracle::Chain;
                };
                len = (usize::from(h.header_len()) + 1) * 8;
                nh = u8::from(h.next_header());
            }
            44 => {
                if packet.len() < at + 8 {
                    return Oracle::Chain;
                }
                let Ok(f) = Ipv6FragmentHeader::new_checked(&packet[at + 2..at + 8]) else {
                    return Oracle::Chain;
                };
                let this = Fragment::from_fields(f.frag_offset() * 8, f.more_frags(), f.ident());
                len = 8;
                nh = packet[at];
                if this.is_non_first() {
                    links += 1;
                    if links > MAX_EXTENSION_HEADERS {
                        return Oracle::Chain;
                    }
                    fragment = this;
                    at += 8;
                    next = nh;
                    break;
                }
                if fragment == Fragment::Unfragmented {
                    fragment = this;
                }
            }
            51 => {
                let Some(&l) = packet.get(at + 1) else {
                    return Oracle::Chain;
                };
                len = (usize::from(l) + 2) * 4;
                if packet.len() < at + len {
                    return Oracle::Chain;
                }
                nh = packet[at];
            }
            _ => break,
        }
        links += 1;
        if links > MAX_EXTENSION_HEADERS {
            return Oracle::Chain;
        }
        at += len;
        next = nh;
    }
    Oracle::Ok(Facts {
        src: p.src_addr().into(),
        dst: p.dst_addr().into(),
        protocol: next,
        transport_offset: at,
        total_len,
        hop_limit: p.hop_limit(),
        fragment,
        transport: oracle_transport(&packet[at..], next, fragment, true),
    })
}

fn oracle_transport(l4: &[u8], protocol: u8, fragment: Fragment, v6: bool) -> Transport {
    if fragment.is_non_first() {
        return Transport::Fragment;
    }
    match (protocol, v6) {
        (6, _) => match TcpPacket::new_checked(l4) {
            Ok(t) => {
                let flags = [
                    t.fin(),
                    t.syn(),
                    t.rst(),
                    t.psh(),
                    t.ack(),
                    t.urg(),
                    t.ece(),
                    t.cwr(),
                ]
                .iter()
                .enumerate()
                .fold(0u8, |f, (i, &on)| f | (u8::from(on) << i));
                Transport::Tcp(TcpHeader {
                    src_port: t.src_port(),
                    dst_port: t.dst_port(),
                    seq: t.seq_number().0 as u32,
                    ack: t.ack_number().0 as u32,
                    flags: TcpFlags(flags),
                    header_len: t.header_len(),
                })
            }
            Err(_) => Transport::Truncated,
        },
        (17, _) => {
            // Difference: the length field is not checked by the view (see the module docs).
            if UdpPacket::new_checked(l4).is_err() && l4.len() < 8 {
                return Transport::Truncated;
            }
            let u = UdpPacket::new_unchecked(l4);
            Transport::Udp(UdpHeader {
                src_port: u.src_port(),
                dst_port: u.dst_port(),
                length: u.len(),
            })
        }
        (1, false) => match Icmpv4Packet::new_checked(l4) {
            Ok(i) => Transport::Icmpv4(IcmpHeader {
                ty: u8::from(i.msg_type()),
                code: i.msg_code(),
            }),
            Err(_) => Transport::Truncated,
        },
        (58, true) => {
            // Difference: 4 bytes suffice for the view (see the module docs).
            if Icmpv6Packet::new_checked(l4).is_err() && l4.len() < 4 {
                return Transport::Truncated;
            }
            let i = Icmpv6Packet::new_unchecked(l4);
            Transport::Icmpv6(IcmpHeader {
                ty: u8::from(i.msg_type()),
                code: i.msg_code(),
            })
        }
        _ => Transport::Unknown,
    }
}

/// The view's answer in the oracle's terms.
fn view(b: &[u8]) -> Result<Facts, Error> {
    let k = IpPacket::new_checked(b)?;
    Ok(Facts {
        src: k.src_addr(),
        dst: k.dst_addr(),
        protocol: k.protocol(),
        transport_offset: k.transport_offset(),
        total_len: k.total_len(),
        hop_limit: k.hop_limit(),
        fragment: k.fragment(),
        transport: k.transport(),
    })
}

/// The property: view, fast path and repr agree with smoltcp on `b`.
fn agree(b: &[u8]) -> Result<(), TestCaseError> {
    let expected = oracle(b);
    let got = view(b);
    match (&expected, &got) {
        (Oracle::Ok(e), Ok(g)) => prop_assert_eq!(e, g),
        (Oracle::Chain, Err(Error::BadExtensionHeader)) => {}
        (Oracle::Fixed, Err(e)) => prop_assert_ne!(*e, Error::BadExtensionHeader),
        _ => prop_assert!(false, "oracle {:?} view {:?}", expected, got),
    }
    // The fast path checks exactly the fixed header.
    let fast = addresses(b);
    match &expected {
        Oracle::Fixed => prop_assert_eq!(fast, None),
        Oracle::Chain => prop_assert!(fast.is_some()),
        Oracle::Ok(e) => prop_assert_eq!(fast, Some((e.src, e.dst))),
    }
    let Ok(k) = IpPacket::new_checked(b) else {
        return Ok(());
    };
    let repr = IpRepr::parse(&k);
    // smoltcp's Repr, where it accepts (it verifies the IPv4 checksum and refuses fragments).
    match repr {
        IpRepr::V4(r) => {
            let p = Ipv4Packet::new_unchecked(b);
            if let Ok(s) = smoltcp::wire::Ipv4Repr::parse(&p, &ChecksumCapabilities::default()) {
                prop_assert_eq!(
                    (r.src, r.dst, r.protocol, r.payload_len, r.hop_limit),
                    (
                        s.src_addr,
                        s.dst_addr,
                        u8::from(s.next_header),
                        s.payload_len,
                        s.hop_limit
                    )
                );
            }
        }
        IpRepr::V6(r) => {
            let s = smoltcp::wire::Ipv6Repr::parse(&Ipv6Packet::new_unchecked(b));
            let s = s.map_err(|e| TestCaseError::fail(format!("{e}")))?;
            prop_assert_eq!(
                (r.src, r.dst, r.next_header, r.payload_len, r.hop_limit),
                (
                    s.src_addr,
                    s.dst_addr,
                    u8::from(s.next_header),
                    s.payload_len,
                    s.hop_limit
                )
            );
        }
    }
    // emit -> parse round trip, and smoltcp accepts what we emit (checksum included). The
    // payload is copied so an IPv6 extension-header chain walks as before (IPv4 options are not
    // represented: the payload starts after them).
    let mut out = vec![0u8; repr.total_len()];
    let n = repr
        .emit(&mut out)
        .map_err(|e| TestCaseError::fail(format!("{e}")))?;
    let from = if n == 20 { k.transport_offset() } else { 40 };
    out[n..].copy_from_slice(&k.as_bytes()[from..]);
    let emitted =
        IpPacket::new_checked(&out[..]).map_err(|e| TestCaseError::fail(format!("{e}")))?;
    prop_assert_eq!(IpRepr::parse(&emitted), repr);
    if n == 20 {
        prop_assert!(Ipv4Packet::new_checked(&out[..]).is_ok_and(|p| p.verify_checksum()));
    }
    Ok(())
}

#[derive(Debug, Clone)]
enum L4 {
    Tcp {
        ports: (u16, u16),
        seq: u32,
        ack: Option<u32>,
        control: u8,
        mss: Option<u16>,
        data: Vec<u8>,
    },
    Udp {
        ports: (u16, u16),
        data: Vec<u8>,
    },
    Echo {
        ident: u16,
        seq: u16,
        data: Vec<u8>,
    },
    Raw {
        protocol: u8,
        data: Vec<u8>,
    },
}

#[derive(Debug, Clone)]
enum Ext {
    /// Hop-by-hop, routing or destination options (type), with `len` 8-octet units beyond 8.
    Options { ty: u8, len: u8 },
    /// Fragment header: offset in 8-octet units, M flag, identification.
    Fragment { units: u16, more: bool, ident: u32 },
    /// Authentication header with `len` (4-octet units minus 2).
    Ah { len: u8 },
}

#[derive(Debug, Clone)]
struct Spec {
    v6: bool,
    src: [u8; 16],
    dst: [u8; 16],
    hop_limit: u8,
    l4: L4,
    /// IPv4: option words and the flags/fragment word; IPv6: extension headers.
    v4_options: u8,
    v4_fragment: (bool, u16),
    exts: Vec<Ext>,
}

fn data() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..48)
}

fn l4() -> impl Strategy<Value = L4> {
    prop_oneof![
        (
            any::<(u16, u16)>(),
            any::<u32>(),
            any::<Option<u32>>(),
            0u8..5,
            any::<Option<u16>>(),
            data()
        )
            .prop_map(|(ports, seq, ack, control, mss, data)| L4::Tcp {
                ports,
                seq,
                ack,
                control,
                mss,
                data
            }),
        (any::<(u16, u16)>(), data()).prop_map(|(ports, data)| L4::Udp { ports, data }),
        (any::<u16>(), any::<u16>(), data()).prop_map(|(ident, seq, data)| L4::Echo {
            ident,
            seq,
            data
        }),
        (
            prop_oneof![
                Just(50u8),
                Just(59),
                Just(132),
                // Opaque: not an extension header (built by `Ext`) nor a parsed protocol.
                any::<u8>().prop_filter("parsed protocol", |p| {
                    ![0, 1, 6, 17, 43, 44, 51, 58, 60, 135, 139, 140, 253, 254].contains(p)
                })
            ],
            data()
        )
            .prop_map(|(protocol, data)| L4::Raw { protocol, data }),
    ]
}

fn ext() -> impl Strategy<Value = Ext> {
    prop_oneof![
        (
            prop_oneof![Just(0u8), Just(43), Just(60), Just(135)],
            0u8..3
        )
            .prop_map(|(ty, len)| Ext::Options { ty, len }),
        (
            prop_oneof![3 => Just(0u16), 1 => 1u16..0x2000],
            any::<bool>(),
            any::<u32>()
        )
            .prop_map(|(units, more, ident)| Ext::Fragment { units, more, ident }),
        (1u8..5).prop_map(|len| Ext::Ah { len }),
    ]
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        any::<bool>(),
        any::<[u8; 16]>(),
        any::<[u8; 16]>(),
        any::<u8>(),
        l4(),
        0u8..3,
        (
            any::<bool>(),
            prop_oneof![3 => Just(0u16), 1 => 1u16..0x2000],
        ),
        proptest::collection::vec(ext(), 0..4),
    )
        .prop_map(
            |(v6, src, dst, hop_limit, l4, v4_options, v4_fragment, exts)| Spec {
                v6,
                src,
                dst,
                hop_limit,
                l4,
                v4_options,
                v4_fragment,
                exts,
            },
        )
}

/// The upper-layer bytes of `l4`, emitted by smoltcp (checksums over the given addresses).
fn emit_l4(l4: &L4, src: IpAddress, dst: IpAddress) -> (u8, Vec<u8>) {
    let caps = ChecksumCapabilities::default();
    match l4 {
        L4::Tcp {
            ports,
            seq,
            ack,
            control,
            mss,
            data,
        } => {
            let repr = TcpRepr {
                src_port: ports.0,
                dst_port: ports.1,
                control: [
                    TcpControl::None,
                    TcpControl::Psh,
                    TcpControl::Syn,
                    TcpControl::Fin,
                    TcpControl::Rst,
                ][usize::from(*control)],
                seq_number: TcpSeqNumber(*seq as i32),
                ack_number: ack.map(|a| TcpSeqNumber(a as i32)),
                window_len: 1000,
                window_scale: None,
                max_seg_size: *mss,
                sack_permitted: false,
                sack_ranges: [None; 3],
                timestamp: None,
                payload: data,
            };
            let mut b = vec![0u8; repr.buffer_len()];
            repr.emit(&mut TcpPacket::new_unchecked(&mut b[..]), &src, &dst, &caps);
            (PROTO_TCP, b)
        }
        L4::Udp { ports, data } => {
            let repr = UdpRepr {
                src_port: ports.0,
                dst_port: ports.1,
            };
            let mut b = vec![0u8; 8 + data.len()];
            repr.emit(
                &mut UdpPacket::new_unchecked(&mut b[..]),
                &src,
                &dst,
                data.len(),
                |p| p.copy_from_slice(data),
                &caps,
            );
            (PROTO_UDP, b)
        }
        L4::Echo { ident, seq, data } => match (src, dst) {
            (IpAddress::Ipv6(s), IpAddress::Ipv6(d)) => {
                let repr = Icmpv6Repr::EchoRequest {
                    ident: *ident,
                    seq_no: *seq,
                    data,
                };
                let mut b = vec![0u8; repr.buffer_len()];
                repr.emit(&s, &d, &mut Icmpv6Packet::new_unchecked(&mut b[..]), &caps);
                (PROTO_ICMPV6, b)
            }
            _ => {
                let repr = Icmpv4Repr::EchoRequest {
                    ident: *ident,
                    seq_no: *seq,
                    data,
                };
                let mut b = vec![0u8; repr.buffer_len()];
                repr.emit(&mut Icmpv4Packet::new_unchecked(&mut b[..]), &caps);
                (PROTO_ICMP, b)
            }
        },
        L4::Raw { protocol, data } => (*protocol, data.clone()),
    }
}

fn build(s: &Spec) -> Vec<u8> {
    let caps = ChecksumCapabilities::default();
    if s.v6 {
        let (src, dst) = (Ipv6Addr::from(s.src), Ipv6Addr::from(s.dst));
        let (proto, l4) = emit_l4(&s.l4, IpAddress::Ipv6(src), IpAddress::Ipv6(dst));
        // Extension headers, innermost last: each names the next.
        let mut exts = Vec::new();
        let types: Vec<u8> = s
            .exts
            .iter()
            .map(|e| match e {
                Ext::Options { ty, .. } => *ty,
                Ext::Fragment { .. } => 44,
                Ext::Ah { .. } => 51,
            })
            .chain([proto])
            .collect();
        for (i, e) in s.exts.iter().enumerate() {
            let nh = types[i + 1];
            match e {
                Ext::Options { len, .. } => {
                    let mut h = vec![0u8; (usize::from(*len) + 1) * 8];
                    h[0] = nh;
                    h[1] = *len;
                    h[2] = 1; // PadN
                    h[3] = h.len() as u8 - 4;
                    exts.extend_from_slice(&h);
                }
                Ext::Fragment { units, more, ident } => {
                    exts.extend_from_slice(&[nh, 0]);
                    exts.extend_from_slice(&((units << 3) | u16::from(*more)).to_be_bytes());
                    exts.extend_from_slice(&ident.to_be_bytes());
                }
                Ext::Ah { len } => {
                    let mut h = vec![0u8; (usize::from(*len) + 2) * 4];
                    h[0] = nh;
                    h[1] = *len;
                    exts.extend_from_slice(&h);
                }
            }
        }
        let repr = smoltcp::wire::Ipv6Repr {
            src_addr: src,
            dst_addr: dst,
            next_header: IpProtocol::from(types[0]),
            payload_len: exts.len() + l4.len(),
            hop_limit: s.hop_limit,
        };
        let mut b = vec![0u8; 40];
        repr.emit(&mut Ipv6Packet::new_unchecked(&mut b[..]));
        b.extend_from_slice(&exts);
        b.extend_from_slice(&l4);
        b
    } else {
        let src = Ipv4Addr::new(s.src[0], s.src[1], s.src[2], s.src[3]);
        let dst = Ipv4Addr::new(s.dst[0], s.dst[1], s.dst[2], s.dst[3]);
        let (proto, l4) = emit_l4(&s.l4, IpAddress::Ipv4(src), IpAddress::Ipv4(dst));
        let repr = smoltcp::wire::Ipv4Repr {
            src_addr: src,
            dst_addr: dst,
            next_header: IpProtocol::from(proto),
            payload_len: l4.len(),
            hop_limit: s.hop_limit,
        };
        let options = usize::from(s.v4_options) * 4;
        let mut b = vec![0u8; 20 + options + l4.len()];
        repr.emit(&mut Ipv4Packet::new_unchecked(&mut b[..20]), &caps);
        b[20..20 + options].fill(1); // NOP options
        b[20 + options..].copy_from_slice(&l4);
        let mut p = Ipv4Packet::new_unchecked(&mut b[..]);
        p.set_header_len(20 + options as u8);
        p.set_total_len((20 + options + l4.len()) as u16);
        p.set_more_frags(s.v4_fragment.0);
        p.set_frag_offset(s.v4_fragment.1 << 3);
        p.fill_checksum();
        b
    }
}

/// Byte flips (position, xor) and a truncation applied to a valid packet, and whether the IP
/// length field is then made to match the buffer again (so that the truncation reaches the
/// extension headers and the transport header instead of failing the length check).
#[derive(Debug, Clone)]
struct Mutation {
    flips: Vec<(prop::sample::Index, u8)>,
    cut: Option<prop::sample::Index>,
    fix_len: bool,
}

fn mutation() -> impl Strategy<Value = Mutation> {
    (
        proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 0..4),
        proptest::option::weighted(0.5, any::<prop::sample::Index>()),
        any::<bool>(),
    )
        .prop_map(|(flips, cut, fix_len)| Mutation {
            flips,
            cut,
            fix_len,
        })
}

/// Make the IP length field say "the whole buffer" (IPv4: and the header checksum valid).
fn fix_length(b: &mut [u8]) {
    match b.first().map(|v| v >> 4) {
        Some(4) if b.len() >= 20 => {
            let len = b.len().min(65_535) as u16;
            b[2..4].copy_from_slice(&len.to_be_bytes());
            let ihl = (usize::from(b[0] & 0x0f) * 4).clamp(20, b.len());
            b[10..12].copy_from_slice(&[0, 0]);
            let c = checksum::checksum(&b[..ihl]);
            b[10..12].copy_from_slice(&c.to_be_bytes());
        }
        Some(6) if b.len() >= 40 => {
            let len = (b.len() - 40).min(65_535) as u16;
            b[4..6].copy_from_slice(&len.to_be_bytes());
        }
        _ => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn valid_packets_agree_with_smoltcp(s in spec()) {
        let b = build(&s);
        // A packet smoltcp built is accepted by both.
        prop_assert!(matches!(oracle(&b), Oracle::Ok(_)), "{:?}", oracle(&b));
        agree(&b)?;
        let k = IpPacket::new_checked(&b[..]).map_err(|e| TestCaseError::fail(format!("{e}")))?;
        // Ports exactly for TCP/UDP not behind a non-first fragment.
        let non_first = k.fragment().is_non_first();
        let ported = matches!(s.l4, L4::Tcp { .. } | L4::Udp { .. });
        prop_assert_eq!(k.ports().is_some(), ported && !non_first);
    }

    #[test]
    fn mutated_packets_agree_with_smoltcp(s in spec(), m in mutation()) {
        let mut b = build(&s);
        for (at, x) in &m.flips {
            let i = at.index(b.len());
            b[i] ^= x;
        }
        if let Some(cut) = &m.cut {
            b.truncate(cut.index(b.len() + 1));
        }
        if m.fix_len {
            fix_length(&mut b);
        }
        agree(&b)?;
    }

    #[test]
    fn random_bytes_agree_with_smoltcp(
        first in prop_oneof![0x40u8..0x50, 0x60u8..0x70, any::<u8>()],
        rest in proptest::collection::vec(any::<u8>(), 0..120),
        fix_len in any::<bool>(),
    ) {
        let mut b = [&[first][..], &rest].concat();
        if fix_len {
            fix_length(&mut b);
        }
        agree(&b)?;
    }
}
