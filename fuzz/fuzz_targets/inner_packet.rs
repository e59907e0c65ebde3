//! The inner-packet view (`privnet_core::packet`) on arbitrary bytes: never panics; the
//! data-plane fast path agrees with smoltcp's fixed-header parsers on validity and addresses, and
//! with the view (which refuses a superset: broken IPv6 extension-header chains); every transport
//! fact lies inside the packet and agrees with smoltcp's TCP/UDP accessors; the fixed header
//! round-trips through IpRepr emit -> parse, and the re-emitted packet parses to the same facts.
#![no_main]
use std::net::IpAddr;

use libfuzzer_sys::fuzz_target;
use privnet_core::packet::{self, Error, IpPacket, IpRepr, Transport};
use smoltcp::wire::{Ipv4Packet, Ipv6Packet, TcpPacket, UdpPacket};

fuzz_target!(|data: &[u8]| {
    let fast = packet::addresses(data);
    let smol = match data.first().map(|b| b >> 4) {
        Some(4) => Ipv4Packet::new_checked(data)
            .ok()
            .map(|p| (IpAddr::V4(p.src_addr()), IpAddr::V4(p.dst_addr()))),
        Some(6) => Ipv6Packet::new_checked(data)
            .ok()
            .map(|p| (IpAddr::V6(p.src_addr()), IpAddr::V6(p.dst_addr()))),
        _ => None,
    };
    assert_eq!(fast, smol, "fast path vs smoltcp");

    let p = match IpPacket::new_checked(data) {
        Ok(p) => p,
        Err(Error::BadExtensionHeader) => {
            assert!(
                fast.is_some(),
                "only the walk can refuse what the fast path takes"
            );
            return;
        }
        Err(_) => {
            assert!(fast.is_none(), "fixed-header refusals agree");
            return;
        }
    };
    assert_eq!(fast, Some((p.src_addr(), p.dst_addr())));
    assert!(p.transport_offset() <= p.total_len() && p.total_len() <= data.len());
    assert_eq!(p.as_bytes().len(), p.total_len());
    let _ = (
        p.version(),
        p.protocol(),
        p.hop_limit(),
        p.icmp(),
        p.tcp_flags(),
    );
    let payload = p.payload();
    assert_eq!(payload.is_none(), p.fragment().is_non_first());
    let transport = p.transport();
    match transport {
        Transport::Tcp(t) => {
            let l4 = payload.expect("TCP has a payload view");
            assert!(usize::from(t.header_len) >= 20 && usize::from(t.header_len) <= l4.len());
            let s = TcpPacket::new_checked(l4).expect("smoltcp accepts the TCP header");
            assert_eq!((s.src_port(), s.dst_port()), (t.src_port, t.dst_port));
            assert_eq!(s.header_len(), t.header_len);
            assert_eq!(p.ports(), Some((t.src_port, t.dst_port)));
        }
        Transport::Udp(u) => {
            let l4 = payload.expect("UDP has a payload view");
            assert!(l4.len() >= 8);
            let s = UdpPacket::new_unchecked(l4);
            assert_eq!(
                (s.src_port(), s.dst_port(), s.len()),
                (u.src_port, u.dst_port, u.length)
            );
        }
        Transport::Icmpv4(_) => assert!(payload.is_some_and(|l4| l4.len() >= 8)),
        Transport::Icmpv6(_) => assert!(payload.is_some_and(|l4| l4.len() >= 4)),
        Transport::Fragment => assert!(p.fragment().is_non_first()),
        Transport::Truncated | Transport::Unknown => assert_eq!(p.ports(), None),
    }

    // emit -> parse: the fixed header round-trips; with the payload copied (IPv4 options are not
    // represented, so it starts after them) the new packet has the same facts.
    let repr = IpRepr::parse(&p);
    let mut out = vec![0u8; repr.total_len()];
    let n = repr.emit(&mut out).expect("a parsed header emits");
    let from = if n == 20 { p.transport_offset() } else { 40 };
    out[n..].copy_from_slice(&p.as_bytes()[from..]);
    let q = IpPacket::new_checked(&out[..]).expect("the emitted packet parses");
    assert_eq!(IpRepr::parse(&q), repr);
    assert_eq!(
        (
            q.src_addr(),
            q.dst_addr(),
            q.protocol(),
            q.fragment(),
            q.transport()
        ),
        (
            p.src_addr(),
            p.dst_addr(),
            p.protocol(),
            p.fragment(),
            transport
        )
    );
    if n == 20 {
        assert!(Ipv4Packet::new_checked(&out[..]).is_ok_and(|h| h.verify_checksum()));
    }
});
