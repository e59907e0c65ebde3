//! Software segmentation and receive coalescing on arbitrary packets (what a TUN with offloads, or a
//! peer, could hand us): never panic; every segment fits the scratch buffer and, for TCP, carries a
//! valid checksum; coalescing a burst conserves the payload bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use privnet_core::offload::{self, Coalescer, GsoType};

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let kind = match data[0] % 4 {
        0 => GsoType::TcpV4,
        1 => GsoType::TcpV6,
        2 => GsoType::Udp,
        _ => GsoType::None,
    };
    let mss = usize::from(u16::from_le_bytes([data[1], data[2]]));
    let pkt = &data[3..];
    let mut scratch = vec![0u8; 2048];
    let mut segs: Vec<Vec<u8>> = Vec::new();
    if let Ok(n) = offload::segment(pkt, kind, mss, &mut scratch, |s| segs.push(s.to_vec())) {
        assert_eq!(n, segs.len());
        for s in &segs {
            assert!(s.len() <= scratch.len());
            if matches!(kind, GsoType::TcpV4 | GsoType::TcpV6) {
                assert!(offload::transport_checksum_ok(s));
            }
        }
    }
    let mut copy = pkt.to_vec();
    let _ = offload::complete_checksum(&mut copy, mss % 64, usize::from(data[2]));
    // Coalesce the segments (and the raw input) back: never panics, emits at most what went in.
    let mut c = Coalescer::new();
    let mut out_bytes = 0usize;
    let mut in_bytes = 0usize;
    for s in segs.iter().map(|s| s.as_slice()).chain(std::iter::once(pkt)) {
        in_bytes += s.len();
        c.push(s, |p, _| out_bytes += p.len());
    }
    c.finish(&mut |p: &[u8], _| out_bytes += p.len());
    assert!(out_bytes <= in_bytes);
});
