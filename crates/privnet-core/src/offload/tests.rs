//! The tests of segmentation and coalescing (unchanged by the move onto `crate::packet` /
//! `crate::checksum`: they pin the output bytes). The checksum's own test moved to `checksum.rs`.

use std::net::IpAddr;

use super::*;
use crate::packet::Addresses;

/// The pseudo-header sum for `proto` with `len` bytes of transport data.
fn pseudo(src: IpAddr, dst: IpAddr, proto: u8, len: usize) -> u64 {
    match (src, dst) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => Addresses::V4 { src, dst }.pseudo_header(proto, len),
        (IpAddr::V6(src), IpAddr::V6(dst)) => Addresses::V6 { src, dst }.pseudo_header(proto, len),
        _ => panic!("mixed families"),
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
