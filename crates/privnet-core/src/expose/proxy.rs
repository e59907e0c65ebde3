//! PROXY protocol version 2 headers (HAProxy's `proxy-protocol.txt`, section 2.2), so that a backend
//! behind an exposure sees the client's address. Binary format: the 12-byte signature, the
//! version/command byte (`0x21`: version 2, PROXY), the family/transport byte (`0x11` TCP over
//! IPv4, `0x12` UDP over IPv4, `0x21` TCP over IPv6, `0x22` UDP over IPv6), the length of the
//! address block (big-endian), then source address, destination address, source port, destination
//! port. No TLVs are sent. For TCP the header precedes the first byte of the stream; for UDP every
//! datagram carries one (the specification's rule for datagrams). When the client and the local
//! address are of different families, the IPv4 one is written as IPv4-mapped IPv6.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

/// The signature that starts every version 2 header.
pub const SIGNATURE: [u8; 12] = [
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
];
/// Longest header written (IPv6): 16 fixed bytes and 36 of addresses.
pub const MAX_HEADER: usize = 52;

/// The transport a header describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// A TCP connection.
    Tcp,
    /// UDP datagrams.
    Udp,
}

fn v6(a: IpAddr) -> Ipv6Addr {
    match a {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => a,
    }
}

/// Append the header for a connection from `client` to `local` (the address the client reached)
/// to `out`; returns its length.
pub fn encode(
    out: &mut Vec<u8>,
    transport: Transport,
    client: SocketAddr,
    local: SocketAddr,
) -> usize {
    let start = out.len();
    out.extend_from_slice(&SIGNATURE);
    out.push(0x21);
    let udp = transport == Transport::Udp;
    match (client.ip(), local.ip()) {
        (IpAddr::V4(c), IpAddr::V4(l)) => {
            out.push(if udp { 0x12 } else { 0x11 });
            out.extend_from_slice(&12u16.to_be_bytes());
            out.extend_from_slice(&c.octets());
            out.extend_from_slice(&l.octets());
        }
        (c, l) => {
            out.push(if udp { 0x22 } else { 0x21 });
            out.extend_from_slice(&36u16.to_be_bytes());
            out.extend_from_slice(&v6(c).octets());
            out.extend_from_slice(&v6(l).octets());
        }
    }
    out.extend_from_slice(&client.port().to_be_bytes());
    out.extend_from_slice(&local.port().to_be_bytes());
    out.len() - start
}

/// A parsed header: transport, source, destination and the header's length (TLVs skipped).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// TCP or UDP (`None` for a LOCAL command or an unspecified family).
    pub transport: Option<Transport>,
    /// Source (the client) and destination, for PROXY over IPv4 or IPv6.
    pub addresses: Option<(SocketAddr, SocketAddr)>,
    /// Bytes of the header, TLVs included.
    pub len: usize,
}

/// Parse a version 2 header at the start of `b` (for tests and for backends written in Rust).
/// `None` when `b` does not start with a complete, well-formed header.
pub fn decode(b: &[u8]) -> Option<Header> {
    let fixed = b.get(..16)?;
    if fixed[..12] != SIGNATURE || fixed[12] >> 4 != 2 {
        return None;
    }
    let cmd = fixed[12] & 0x0F;
    let len = usize::from(u16::from_be_bytes([fixed[14], fixed[15]]));
    let body = b.get(16..16 + len)?;
    let transport = match fixed[13] & 0x0F {
        1 => Some(Transport::Tcp),
        2 => Some(Transport::Udp),
        _ => None,
    };
    let port = |x: &[u8]| u16::from_be_bytes([x[0], x[1]]);
    let addresses = match (cmd, fixed[13] >> 4) {
        (1, 1) if len >= 12 => {
            let s: [u8; 4] = body[0..4].try_into().ok()?;
            let d: [u8; 4] = body[4..8].try_into().ok()?;
            Some((
                SocketAddr::from((s, port(&body[8..10]))),
                SocketAddr::from((d, port(&body[10..12]))),
            ))
        }
        (1, 2) if len >= 36 => {
            let s: [u8; 16] = body[0..16].try_into().ok()?;
            let d: [u8; 16] = body[16..32].try_into().ok()?;
            Some((
                SocketAddr::from((s, port(&body[32..34]))),
                SocketAddr::from((d, port(&body[34..36]))),
            ))
        }
        (0, _) => None,
        (1, 0) => None,
        _ => return None,
    };
    Some(Header {
        transport,
        addresses,
        len: 16 + len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn tcp_over_ipv4_matches_the_specification_bytes() {
        let mut out = Vec::new();
        let n = encode(
            &mut out,
            Transport::Tcp,
            "192.0.2.1:56324".parse().unwrap(),
            "198.51.100.2:443".parse().unwrap(),
        );
        assert_eq!(n, 28);
        let want: Vec<u8> = [
            &SIGNATURE[..],
            &[0x21, 0x11, 0x00, 0x0C],
            &[192, 0, 2, 1, 198, 51, 100, 2],
            &[0xDC, 0x04, 0x01, 0xBB],
        ]
        .concat();
        assert_eq!(out, want);
    }

    #[test]
    fn udp_over_ipv6_and_mixed_families() {
        let mut out = vec![0xAA];
        let n = encode(
            &mut out,
            Transport::Udp,
            "[2001:db8::1]:5000".parse().unwrap(),
            "192.0.2.9:53".parse().unwrap(),
        );
        assert_eq!((n, out.len()), (MAX_HEADER, MAX_HEADER + 1));
        assert_eq!(&out[13..17], &[0x21, 0x22, 0x00, 0x24]);
        let h = decode(&out[1..]).unwrap();
        assert_eq!(h.transport, Some(Transport::Udp));
        let (s, d) = h.addresses.unwrap();
        assert_eq!(s, "[2001:db8::1]:5000".parse().unwrap());
        assert_eq!(d, "[::ffff:192.0.2.9]:53".parse().unwrap());
    }

    #[test]
    fn decode_refuses_what_is_not_a_header() {
        assert_eq!(decode(b"GET / HTTP/1.1\r\n\r\n"), None);
        let mut out = Vec::new();
        encode(
            &mut out,
            Transport::Tcp,
            "1.2.3.4:1".parse().unwrap(),
            "5.6.7.8:2".parse().unwrap(),
        );
        assert_eq!(decode(&out[..out.len() - 1]), None);
        out[12] = 0x11;
        assert_eq!(decode(&out), None);
    }

    proptest! {
        #[test]
        fn encode_then_decode_round_trips(
            c in any::<SocketAddr>(), l in any::<SocketAddr>(), udp in any::<bool>(),
            tail in prop::collection::vec(any::<u8>(), 0..8),
        ) {
            let t = if udp { Transport::Udp } else { Transport::Tcp };
            let mut out = Vec::new();
            let n = encode(&mut out, t, c, l);
            out.extend_from_slice(&tail);
            let h = decode(&out).unwrap();
            prop_assert_eq!(h.len, n);
            prop_assert_eq!(h.transport, Some(t));
            let (s, d) = h.addresses.unwrap();
            let same = c.is_ipv4() == l.is_ipv4();
            let norm = |a: SocketAddr| SocketAddr::from((if same { a.ip() } else { IpAddr::V6(v6(a.ip())) }, a.port()));
            prop_assert_eq!((s, d), (norm(c), norm(l)));
        }

        #[test]
        fn decode_never_panics(b in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode(&b);
        }
    }
}
