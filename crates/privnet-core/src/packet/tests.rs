//! Targeted tests of the view, the fast path and the repr (the smoltcp oracle is in `oracle.rs`).
//! The first four are the tests of the former `icmp::IpPeek`, on the view that replaced it.

use super::*;

const A4: Ipv4Addr = Ipv4Addr::new(10, 201, 0, 1);
const B4: Ipv4Addr = Ipv4Addr::new(10, 201, 1, 5);
const A6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x201, 0, 0, 0, 0, 0, 1);
const B6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x201, 1, 0, 0, 0, 0, 5);

fn parse(b: &[u8]) -> Result<IpPacket<&[u8]>, Error> {
    IpPacket::new_checked(b)
}

fn owned(b: Vec<u8>) -> Result<IpPacket<Vec<u8>>, Error> {
    IpPacket::new_checked(b)
}

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
    let cs = checksum::checksum(&p[..20]);
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

/// A 20-byte TCP header (plus `options` 4-byte words) from port 5201 to 40000, then `data`.
fn tcp_segment(flags: u8, options: usize, data: &[u8]) -> Vec<u8> {
    let mut t = vec![0u8; 20 + 4 * options];
    t[0..2].copy_from_slice(&5201u16.to_be_bytes());
    t[2..4].copy_from_slice(&40000u16.to_be_bytes());
    t[4..8].copy_from_slice(&1000u32.to_be_bytes());
    t[8..12].copy_from_slice(&77u32.to_be_bytes());
    t[12] = ((5 + options) as u8) << 4;
    t[13] = flags;
    t.extend_from_slice(data);
    t
}

/// Set the IPv4 flags/fragment word and recompute the header checksum.
fn set_v4_fragment(p: &mut [u8], word: u16) {
    p[6..8].copy_from_slice(&word.to_be_bytes());
    p[10..12].copy_from_slice(&[0, 0]);
    let cs = checksum::checksum(&p[..20]);
    p[10..12].copy_from_slice(&cs.to_be_bytes());
}

#[test]
fn peek_v4() {
    let p = v4_packet(A4, B4, PROTO_UDP, &udp_payload(100));
    let k = parse(&p).unwrap();
    assert_eq!(k.version().number(), 4);
    assert_eq!(k.src_addr(), IpAddr::V4(A4));
    assert_eq!(k.dst_addr(), IpAddr::V4(B4));
    assert_eq!(k.total_len(), 120);
    assert_eq!(k.protocol(), PROTO_UDP);
    assert_eq!(k.transport_offset(), 20);
    assert!(!k.fragment().is_fragment());
    assert_eq!(k.payload().unwrap().len(), 100);
    // Trailing bytes beyond total length are tolerated and ignored.
    let mut padded = p.clone();
    padded.extend_from_slice(&[0xaa; 7]);
    assert_eq!(parse(&padded).unwrap().total_len(), 120);
}

#[test]
fn peek_rejects_malformed() {
    assert_eq!(parse(&[]).err(), Some(Error::Truncated));
    assert_eq!(parse(&[0x45; 19]).err(), Some(Error::Truncated));
    assert_eq!(parse(&[0x50; 40]).err(), Some(Error::BadVersion(5)));
    let p = v4_packet(A4, B4, PROTO_UDP, &udp_payload(8));
    // Total length larger than the buffer.
    assert_eq!(parse(&p[..27]).err(), Some(Error::BadTotalLength));
    // IHL < 5 and IHL past the buffer.
    let mut q = p.clone();
    q[0] = 0x44;
    assert_eq!(parse(&q).err(), Some(Error::BadHeaderLength));
    q[0] = 0x4f;
    assert_eq!(parse(&q).err(), Some(Error::BadHeaderLength));
    // Total length shorter than the header.
    let mut q = p.clone();
    q[2..4].copy_from_slice(&10u16.to_be_bytes());
    assert_eq!(parse(&q).err(), Some(Error::BadTotalLength));
    // IPv6 payload length past the buffer.
    let p6 = v6_packet(A6, B6, PROTO_UDP, &udp_payload(8));
    assert_eq!(parse(&p6[..47]).err(), Some(Error::BadTotalLength));
    assert_eq!(parse(&p6[..39]).err(), Some(Error::Truncated));
}

#[test]
fn peek_v6_walks_extension_headers() {
    // Hop-by-hop (8 bytes) -> destination options (16 bytes) -> fragment (first) -> UDP.
    let mut payload = vec![60, 0, 1, 4, 0, 0, 0, 0];
    payload.extend_from_slice(&[44, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    payload.extend_from_slice(&[PROTO_UDP, 0, 0x00, 0x01, 0xde, 0xad, 0xbe, 0xef]);
    payload.extend_from_slice(&udp_payload(16));
    let p = v6_packet(A6, B6, 0, &payload);
    let k = parse(&p).unwrap();
    assert_eq!(k.version().number(), 6);
    assert_eq!(k.protocol(), PROTO_UDP);
    assert_eq!(k.transport_offset(), 40 + 8 + 16 + 8);
    assert!(k.fragment().is_fragment());
    assert_eq!(k.fragment(), Fragment::First { ident: 0xdead_beef });
    assert!(!k.fragment().is_non_first());
    // A first fragment holding the whole UDP header has ports.
    assert_eq!(k.ports(), Some((4000, 53)));

    // Non-first fragment: offset 8 * 185.
    let frag = [
        [PROTO_UDP, 0].as_slice(),
        &((185u16 << 3).to_be_bytes()),
        &[1, 2, 3, 4],
    ]
    .concat();
    let p = v6_packet(A6, B6, 44, &[frag, vec![0; 24]].concat());
    let k = parse(&p).unwrap();
    assert!(k.fragment().is_non_first());
    assert_eq!(
        k.fragment(),
        Fragment::NonFirst {
            ident: 0x0102_0304,
            offset: 1480,
            more: false
        }
    );
    assert_eq!(k.payload(), None);
    assert_eq!(k.transport(), Transport::Fragment);
    assert_eq!(k.ports(), None);
    assert_eq!((k.protocol(), k.transport_offset()), (PROTO_UDP, 48));

    // An extension header whose length runs past the packet.
    let p = v6_packet(A6, B6, 0, &[PROTO_UDP, 5, 0, 0, 0, 0, 0, 0]);
    assert_eq!(parse(&p).err(), Some(Error::BadExtensionHeader));
    // An extension header cut after the next-header byte.
    let p = v6_packet(A6, B6, 60, &[PROTO_UDP]);
    assert_eq!(parse(&p).err(), Some(Error::BadExtensionHeader));
    // An endless chain of destination options.
    let p = v6_packet(A6, B6, 60, &[60, 0, 0, 0, 0, 0, 0, 0].repeat(40));
    assert_eq!(parse(&p).err(), Some(Error::BadExtensionHeader));
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
            let _ = parse(&q);
        }
    }
    let k = parse(&p6).unwrap();
    assert_eq!(k.protocol(), PROTO_TCP);
    assert_eq!(k.transport_offset(), 40 + 8 + 8 + 12);
}

/// Every prefix of a valid packet is refused (its length field says more), and with the length
/// field rewritten to the prefix, ports appear exactly when the whole header fits.
#[test]
fn every_truncation_is_refused_or_loses_its_ports_cleanly() {
    let tcp = tcp_segment(0x18, 2, b"hello");
    let hbh_tcp = [&[PROTO_TCP, 0, 1, 4, 0, 0, 0, 0][..], &tcp].concat();
    let cases: [(Vec<u8>, usize); 4] = [
        (v4_packet(A4, B4, PROTO_TCP, &tcp), 20 + 28),
        (v4_packet(A4, B4, PROTO_UDP, &udp_payload(30)), 20 + 8),
        (v6_packet(A6, B6, PROTO_UDP, &udp_payload(30)), 40 + 8),
        (v6_packet(A6, B6, 0, &hbh_tcp), 48 + 28),
    ];
    for (p, header_end) in &cases {
        let full = parse(p).unwrap();
        assert!(full.ports().is_some());
        let fixed = if p[0] >> 4 == 4 { 20 } else { 40 };
        for cut in 0..p.len() {
            let err = parse(&p[..cut]).err();
            if cut < fixed {
                assert_eq!(err, Some(Error::Truncated), "cut {cut}");
            } else {
                assert_eq!(err, Some(Error::BadTotalLength), "cut {cut}");
            }
            if cut < fixed {
                continue;
            }
            let mut q = p[..cut].to_vec();
            if fixed == 20 {
                q[2..4].copy_from_slice(&(cut as u16).to_be_bytes());
            } else {
                q[4..6].copy_from_slice(&((cut - 40) as u16).to_be_bytes());
            }
            match parse(&q) {
                Ok(k) => {
                    assert!(k.transport_offset() <= k.total_len());
                    assert_eq!(k.ports().is_some(), cut >= *header_end, "cut {cut}");
                    if cut < *header_end {
                        assert_eq!(k.transport(), Transport::Truncated, "cut {cut}");
                    }
                }
                // Only the IPv6 hop-by-hop header itself can be cut.
                Err(e) => {
                    assert_eq!(e, Error::BadExtensionHeader, "cut {cut}");
                    assert!(fixed == 40 && cut < 48, "cut {cut}");
                }
            }
        }
    }
}

#[test]
fn ihl_below_five_and_lengths_beyond_the_buffer_are_refused() {
    let p = v4_packet(A4, B4, PROTO_UDP, &udp_payload(8));
    for ihl in 0..5u8 {
        let mut q = p.clone();
        q[0] = 0x40 | ihl;
        assert_eq!(parse(&q).err(), Some(Error::BadHeaderLength), "ihl {ihl}");
        assert_eq!(addresses(&q), None, "ihl {ihl}");
    }
    let mut q = p.clone();
    q[2..4].copy_from_slice(&(p.len() as u16 + 1).to_be_bytes());
    assert_eq!(parse(&q).err(), Some(Error::BadTotalLength));
    assert_eq!(addresses(&q), None);
    let p6 = v6_packet(A6, B6, PROTO_UDP, &udp_payload(8));
    let mut q = p6.clone();
    q[4..6].copy_from_slice(&17u16.to_be_bytes());
    assert_eq!(parse(&q).err(), Some(Error::BadTotalLength));
    assert_eq!(addresses(&q), None);
    // Options: IHL 6, transport after them.
    let mut o = vec![0x46, 0, 0, 0, 0, 0, 0, 0, 64, PROTO_UDP];
    o.resize(24, 1); // NOP options
    o[10..12].copy_from_slice(&[0, 0]);
    o[12..20].copy_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
    o.extend_from_slice(&udp_payload(8));
    let total = o.len() as u16;
    o[2..4].copy_from_slice(&total.to_be_bytes());
    let k = parse(&o).unwrap();
    assert_eq!((k.transport_offset(), k.ports()), (24, Some((4000, 53))));
}

#[test]
fn extension_header_chain_is_bounded() {
    for n in [MAX_EXTENSION_HEADERS, MAX_EXTENSION_HEADERS + 1] {
        let mut payload = [60, 0, 0, 0, 0, 0, 0, 0].repeat(n);
        payload[(n - 1) * 8] = PROTO_UDP;
        payload.extend_from_slice(&udp_payload(8));
        let p = v6_packet(A6, B6, 60, &payload);
        let r = parse(&p);
        if n <= MAX_EXTENSION_HEADERS {
            let k = r.unwrap();
            assert_eq!(k.transport_offset(), 40 + 8 * n);
            assert_eq!(k.ports(), Some((4000, 53)));
        } else {
            assert_eq!(r.err(), Some(Error::BadExtensionHeader));
        }
        // The fast path does not walk.
        assert!(addresses(&p).is_some());
    }
}

#[test]
fn ipv4_fragments_first_has_ports_non_first_has_none() {
    let udp = udp_payload(20);
    let mut first = v4_packet(A4, B4, PROTO_UDP, &udp);
    first[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
    set_v4_fragment(&mut first, 0x2000);
    let k = parse(&first).unwrap();
    assert_eq!(k.fragment(), Fragment::First { ident: 0x1234 });
    assert_eq!(k.ports(), Some((4000, 53)));

    let mut later = first.clone();
    set_v4_fragment(&mut later, 0x2000 | 185);
    let k = parse(&later).unwrap();
    assert_eq!(
        k.fragment(),
        Fragment::NonFirst {
            ident: 0x1234,
            offset: 1480,
            more: true
        }
    );
    assert_eq!(
        (k.transport(), k.ports(), k.payload()),
        (Transport::Fragment, None, None)
    );
    assert_eq!(k.protocol(), PROTO_UDP);

    // The last fragment: offset without more fragments.
    set_v4_fragment(&mut later, 185);
    assert!(parse(&later).unwrap().fragment().is_non_first());
    // DF alone is not a fragment.
    set_v4_fragment(&mut later, 0x4000);
    assert_eq!(parse(&later).unwrap().fragment(), Fragment::Unfragmented);

    // A first fragment too small for the TCP header (RFC 1858 tiny fragment): no ports.
    let tcp = tcp_segment(0x02, 0, &[]);
    let mut tiny = v4_packet(A4, B4, PROTO_TCP, &tcp[..12]);
    set_v4_fragment(&mut tiny, 0x2000);
    let k = parse(&tiny).unwrap();
    assert_eq!((k.transport(), k.ports()), (Transport::Truncated, None));
}

#[test]
fn ipv6_atomic_and_repeated_fragment_headers() {
    // Atomic fragment (offset 0, M = 0): unfragmented (RFC 6946), ports visible.
    let mut payload = vec![PROTO_UDP, 0, 0, 0, 0, 0, 0, 9];
    payload.extend_from_slice(&udp_payload(8));
    let k = owned(v6_packet(A6, B6, 44, &payload)).unwrap();
    assert_eq!(k.fragment(), Fragment::Unfragmented);
    assert_eq!(k.ports(), Some((4000, 53)));
    // A first fragment header followed by an atomic one is still a first fragment.
    let mut payload = vec![44, 0, 0, 1, 0, 0, 0, 7, PROTO_UDP, 0, 0, 0, 0, 0, 0, 8];
    payload.extend_from_slice(&udp_payload(8));
    let k = owned(v6_packet(A6, B6, 44, &payload)).unwrap();
    assert_eq!(k.fragment(), Fragment::First { ident: 7 });
    assert_eq!(k.transport_offset(), 56);
}

#[test]
fn tcp_header_facts_and_malformed_data_offsets() {
    let seg = tcp_segment(0x12, 3, b"xyz"); // SYN | ACK, 12 bytes of options
    let k = owned(v4_packet(A4, B4, PROTO_TCP, &seg)).unwrap();
    let Transport::Tcp(t) = k.transport() else {
        panic!("{:?}", k.transport())
    };
    assert_eq!(
        (t.src_port, t.dst_port, t.seq, t.ack),
        (5201, 40000, 1000, 77)
    );
    assert_eq!(t.header_len, 32);
    assert!(t.flags.contains(TcpFlags::SYN) && t.flags.contains(TcpFlags::ACK));
    assert!(!t.flags.contains(TcpFlags::FIN));
    assert_eq!(k.tcp_flags(), Some(TcpFlags(0x12)));
    assert_eq!(k.icmp(), None);
    // Data offset below 5, and past the packet.
    for off in [0u8, 4, 9] {
        let mut s = seg.clone();
        s[12] = off << 4;
        let k = owned(v4_packet(A4, B4, PROTO_TCP, &s)).unwrap();
        assert_eq!(k.transport(), Transport::Truncated, "data offset {off}");
        assert_eq!(k.ports(), None);
    }
}

#[test]
fn icmp_type_and_code() {
    let k = owned(v4_packet(A4, B4, PROTO_ICMP, &[3, 1, 0, 0, 0, 0, 0, 0])).unwrap();
    assert_eq!(k.icmp(), Some(IcmpHeader { ty: 3, code: 1 }));
    assert_eq!(k.ports(), None);
    // ICMPv4 needs its 8-byte header; ICMPv6 its 4 bytes.
    let k = owned(v4_packet(A4, B4, PROTO_ICMP, &[8, 0, 0, 0, 0, 0, 0])).unwrap();
    assert_eq!(k.transport(), Transport::Truncated);
    let k = owned(v6_packet(A6, B6, PROTO_ICMPV6, &[128, 0, 0, 0])).unwrap();
    assert_eq!(
        k.transport(),
        Transport::Icmpv6(IcmpHeader { ty: 128, code: 0 })
    );
    let k = owned(v6_packet(A6, B6, PROTO_ICMPV6, &[128, 0, 0])).unwrap();
    assert_eq!(k.transport(), Transport::Truncated);
    // Each family's ICMP only.
    let k = owned(v6_packet(A6, B6, PROTO_ICMP, &[8, 0, 0, 0, 0, 0, 0, 0])).unwrap();
    assert_eq!(k.transport(), Transport::Unknown);
    let k = owned(v4_packet(A4, B4, PROTO_ICMPV6, &[128, 0, 0, 0])).unwrap();
    assert_eq!(k.transport(), Transport::Unknown);
}

#[test]
fn esp_no_next_header_and_unknown_stop_the_walk() {
    for proto in [50u8, 59, 132, 255] {
        let payload = [&[proto, 0, 0, 0, 0, 0, 0, 0][..], &[0xee; 16]].concat();
        let k = owned(v6_packet(A6, B6, 0, &payload)).unwrap();
        assert_eq!(k.protocol(), proto);
        assert_eq!(k.transport_offset(), 48);
        assert_eq!(k.transport(), Transport::Unknown);
        let k = owned(v4_packet(A4, B4, proto, &[0xee; 16])).unwrap();
        assert_eq!((k.protocol(), k.transport()), (proto, Transport::Unknown));
    }
    // AH: length in 4-octet units minus 2 (here 4 units = 16 bytes).
    let mut payload = vec![
        PROTO_UDP, 2, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0xaa, 0xaa, 0xaa, 0xaa,
    ];
    payload.extend_from_slice(&udp_payload(8));
    let k = owned(v6_packet(A6, B6, 51, &payload)).unwrap();
    assert_eq!((k.transport_offset(), k.ports()), (56, Some((4000, 53))));
}

#[test]
fn fast_path_agrees_with_the_view() {
    let packets = [
        v4_packet(A4, B4, PROTO_UDP, &udp_payload(30)),
        v6_packet(A6, B6, PROTO_TCP, &tcp_segment(0x10, 0, b"abc")),
        v6_packet(A6, B6, 0, &[PROTO_UDP, 5, 0, 0, 0, 0, 0, 0]), // broken chain
    ];
    for p in &packets {
        let fast = addresses(p).unwrap();
        if let Ok(k) = parse(p) {
            assert_eq!(fast, (k.src_addr(), k.dst_addr()));
            let a = k.addresses();
            assert_eq!((a.src(), a.dst()), fast);
        } else {
            assert_eq!(parse(p).err(), Some(Error::BadExtensionHeader));
        }
    }
    assert_eq!(addresses(&[]), None);
    assert_eq!(addresses(&[0x60; 39]), None);
    assert_eq!(addresses(&[0x70; 60]), None);
}

#[test]
fn accessors_ignore_trailing_bytes() {
    let mut p = v4_packet(A4, B4, PROTO_UDP, &udp_payload(8));
    let len = p.len();
    p.extend_from_slice(&[0xff; 9]);
    let k = parse(&p).unwrap();
    assert_eq!(k.as_bytes().len(), len);
    assert_eq!(k.payload().unwrap().len(), 8);
    assert_eq!(k.hop_limit(), 64);
    assert_eq!(k.buffer().len(), len + 9);
    assert_eq!(k.into_inner().len(), len + 9);
}

#[test]
fn repr_round_trips_and_emits_exact_headers() {
    let p = v4_packet(A4, B4, PROTO_UDP, &udp_payload(30));
    let r = IpRepr::parse(&parse(&p).unwrap());
    let mut out = vec![0u8; r.total_len()];
    assert_eq!(r.emit(&mut out), Ok(20));
    assert_eq!(out[..20], p[..20], "same header, same checksum");
    assert_eq!(checksum::checksum(&out[..20]), 0);
    out[20..].copy_from_slice(&p[20..]);
    assert_eq!(IpRepr::parse(&parse(&out).unwrap()), r);

    let mut p6 = v6_packet(A6, B6, PROTO_TCP, &tcp_segment(0x10, 0, b"abc"));
    p6[0..4].copy_from_slice(&0x6abc_def1u32.to_be_bytes());
    let r6 = IpRepr::parse(&parse(&p6).unwrap());
    let IpRepr::V6(v6) = r6 else { panic!() };
    assert_eq!((v6.traffic_class, v6.flow_label), (0xab, 0xc_def1));
    let mut out = vec![0u8; r6.total_len()];
    assert_eq!(r6.emit(&mut out), Ok(40));
    assert_eq!(out[..40], p6[..40]);

    // Fragment fields survive the round trip.
    let frag = Ipv4Repr {
        src: A4,
        dst: B4,
        protocol: PROTO_UDP,
        payload_len: 16,
        hop_limit: 3,
        dscp_ecn: 0x2e,
        ident: 9,
        dont_frag: false,
        more_frags: true,
        frag_offset: 1480,
    };
    let mut out = vec![0u8; 36];
    IpRepr::V4(frag).emit(&mut out).unwrap();
    assert_eq!(IpRepr::parse(&parse(&out).unwrap()), IpRepr::V4(frag));
}

#[test]
fn emit_refuses_what_does_not_fit() {
    let ok = Ipv4Repr {
        src: A4,
        dst: B4,
        protocol: PROTO_UDP,
        payload_len: 8,
        hop_limit: 64,
        dscp_ecn: 0,
        ident: 0,
        dont_frag: true,
        more_frags: false,
        frag_offset: 0,
    };
    let mut buf = [0u8; 40];
    assert_eq!(ok.emit(&mut buf[..19]), Err(EmitError::BufferTooSmall));
    let long = Ipv4Repr {
        payload_len: 65_516,
        ..ok
    };
    assert_eq!(long.emit(&mut buf), Err(EmitError::PayloadTooLong));
    let odd = Ipv4Repr {
        frag_offset: 7,
        ..ok
    };
    assert_eq!(odd.emit(&mut buf), Err(EmitError::BadFragmentOffset));
    let v6 = Ipv6Repr {
        src: A6,
        dst: B6,
        next_header: PROTO_UDP,
        payload_len: 65_535,
        hop_limit: 1,
        traffic_class: 0,
        flow_label: 0x10_0000,
    };
    assert_eq!(v6.emit(&mut buf), Err(EmitError::BadFlowLabel));
    assert_eq!(v6.emit(&mut buf[..39]), Err(EmitError::BadFlowLabel));
    let v6 = Ipv6Repr {
        flow_label: 1,
        ..v6
    };
    assert_eq!(v6.emit(&mut buf[..39]), Err(EmitError::BufferTooSmall));
    assert_eq!(v6.emit(&mut buf), Ok(40));
    let v6 = Ipv6Repr {
        payload_len: 65_536,
        ..v6
    };
    assert_eq!(v6.emit(&mut buf), Err(EmitError::PayloadTooLong));
}

#[test]
fn pseudo_header_follows_the_family() {
    let a = Addresses::V4 { src: A4, dst: B4 };
    assert_eq!(
        a.pseudo_header(6, 100),
        checksum::pseudo_header_v4(A4, B4, 6, 100)
    );
    assert_eq!(a.version(), IpVersion::V4);
    let a = Addresses::V6 { src: A6, dst: B6 };
    assert_eq!(
        a.pseudo_header(17, 9),
        checksum::pseudo_header_v6(A6, B6, 17, 9)
    );
    assert_eq!(a.version().number(), 6);
}

/// Moved from `wire.rs` with the function it tested (`wire::inner_addresses`, now this fast path).
#[test]
fn inner_address_checks() {
    let mut p = [0u8; 28];
    p[0] = 0x45;
    p[3] = 28;
    p[12..16].copy_from_slice(&[10, 0, 0, 1]);
    p[16..20].copy_from_slice(&[10, 0, 0, 2]);
    let (s, d) = addresses(&p).unwrap();
    assert_eq!(s.to_string(), "10.0.0.1");
    assert_eq!(d.to_string(), "10.0.0.2");
    p[3] = 29;
    assert_eq!(addresses(&p), None);
    p[3] = 28;
    p[0] = 0x44;
    assert_eq!(addresses(&p), None);
    assert!(addresses(&[0x60; 39]).is_none());
    assert!(addresses(&[]).is_none());
    assert!(addresses(&[0x70; 60]).is_none());
}
