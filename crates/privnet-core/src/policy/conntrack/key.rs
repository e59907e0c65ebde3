//! Flow keys: the two ends of a packet ordered so both directions share one key; IPv4 addresses
//! as IPv4-mapped IPv6 (the `v6` flag keeps the families apart).

use std::net::IpAddr;

use super::table::Key;
use crate::policy::flow::{Flow, Protocol, QuotedFlow};

#[inline]
pub(super) fn words(a: IpAddr) -> ([u64; 2], u128) {
    match a {
        // As the IPv4-mapped IPv6 address ::ffff:a.b.c.d (the `v6` flag keeps them apart).
        IpAddr::V4(v) => {
            let x = 0xffff_0000_0000_u64 | u64::from(u32::from(v));
            ([0, x], u128::from(x))
        }
        IpAddr::V6(v) => {
            let x = u128::from(v);
            ([(x >> 64) as u64, x as u64], x)
        }
    }
}

/// The canonical key of a packet between `src:sp` and `dst:dp`, and whether `src` is its `a` end.
pub(super) fn canonical(src: IpAddr, sp: u16, dst: IpAddr, dp: u16, proto: u8) -> (Key, bool) {
    let (sw, sx) = words(src);
    let (dw, dx) = words(dst);
    let v6 = src.is_ipv6();
    if (sx, sp) <= (dx, dp) {
        let ports = u32::from(sp) << 16 | u32::from(dp);
        (
            Key {
                a: sw,
                b: dw,
                ports,
                proto,
                v6,
            },
            true,
        )
    } else {
        let ports = u32::from(dp) << 16 | u32::from(sp);
        (
            Key {
                a: dw,
                b: sw,
                ports,
                proto,
                v6,
            },
            false,
        )
    }
}

/// The key of a trackable packet.
pub(super) fn key_of(flow: &Flow) -> Option<(Key, bool)> {
    let Protocol::Number(n) = flow.proto else {
        return None;
    };
    if flow.proto.has_ports() {
        let (sp, dp) = (flow.src_port?, flow.dst_port?);
        Some(canonical(flow.src, sp, flow.dst, dp, n))
    } else if flow.proto.is_icmp() {
        let icmp = flow.icmp?;
        if !(icmp.is_echo_request(flow.proto) || icmp.is_echo_reply(flow.proto)) {
            return None;
        }
        let id = icmp.ident?;
        Some(canonical(flow.src, id, flow.dst, id, n))
    } else {
        Some(canonical(flow.src, 0, flow.dst, 0, n))
    }
}

/// The key of the packet quoted in an ICMP error.
pub(super) fn quoted_key(q: &QuotedFlow) -> Option<(Key, bool)> {
    let Protocol::Number(n) = q.proto else {
        return None;
    };
    if q.proto.has_ports() || q.proto.is_icmp() {
        Some(canonical(q.src, q.src_port?, q.dst, q.dst_port?, n))
    } else {
        Some(canonical(q.src, 0, q.dst, 0, n))
    }
}

pub(super) fn addr_of(w: [u64; 2], v6: bool) -> IpAddr {
    let x = u128::from(w[0]) << 64 | u128::from(w[1]);
    let a = std::net::Ipv6Addr::from(x);
    match (v6, a.to_ipv4_mapped()) {
        (false, Some(v4)) => IpAddr::V4(v4),
        _ => IpAddr::V6(a),
    }
}

/// Directional key of a datagram for the fragment memory.
pub(super) fn frag_key(flow: &Flow) -> Key {
    let (a, _) = words(flow.src);
    let (b, _) = words(flow.dst);
    Key {
        a,
        b,
        ports: 0,
        proto: match flow.proto {
            Protocol::Number(n) => n,
            Protocol::Unknown => 255,
        },
        v6: flow.src.is_ipv6(),
    }
}
