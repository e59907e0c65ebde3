//! TCP MSS clamping: a SYN (or SYN-ACK) announcing a maximum segment size larger than the overlay
//! MTU allows gets its MSS option lowered in place, and the TCP checksum fixed incrementally
//! (RFC 1624), so the other end never sends segments the tunnel would have to refuse as
//! `too_big` (hosts behind a gateway see their LAN's MTU, not the overlay's; path MTU discovery
//! through the gateway is often broken by filtered ICMP).
//!
//! The packet goes through the checked view first ([`IpPacket::new_checked`]): only a packet with
//! a complete TCP header inside its length is touched; the option walk is bounded by the header
//! length; a malformed option list is left alone. No input panics.

use super::{IpPacket, IpVersion, TcpFlags, Transport};
use crate::checksum;

/// TCP option kinds.
const OPT_END: u8 = 0;
const OPT_NOP: u8 = 1;
const OPT_MSS: u8 = 2;

/// The largest MSS a TCP segment over IP `version` can announce when packets are at most `mtu`
/// bytes: `mtu` minus the IP (20 or 40) and TCP (20) headers without options.
pub fn mss_limit(version: IpVersion, mtu: usize) -> u16 {
    let headers = match version {
        IpVersion::V4 => 40,
        IpVersion::V6 => 60,
    };
    u16::try_from(mtu.saturating_sub(headers)).unwrap_or(u16::MAX)
}

/// Whether `packet` may be a TCP SYN: a cheap look at the IP version, the protocol and the flags
/// byte, for the data path to skip [`clamp_mss`] on every other packet. An IPv6 packet with
/// extension headers in front of its transport header may be one: [`clamp_mss`] walks the chain
/// (through the checked view) and decides.
#[inline]
pub fn maybe_syn(packet: &[u8]) -> bool {
    let Some(&first) = packet.first() else {
        return false;
    };
    let l4 = match first >> 4 {
        4 => {
            let ihl = usize::from(first & 0x0f) * 4;
            if packet.get(9) != Some(&6) {
                return false;
            }
            ihl
        }
        6 => match packet.get(6) {
            Some(6) => 40,
            Some(&next) => return super::is_extension_header(next),
            None => return false,
        },
        _ => return false,
    };
    packet
        .get(l4 + 13)
        .is_some_and(|f| f & TcpFlags::SYN.0 != 0)
}

/// Lower the MSS option of a TCP SYN in `packet` to at most `max`, fixing the TCP checksum.
/// Returns the MSS it announced when it was lowered; `None` when nothing changed (not a SYN, no
/// MSS option, already small enough, a truncated or malformed header).
pub fn clamp_mss(packet: &mut [u8], max: u16) -> Option<u16> {
    let (off, len) = {
        let p = IpPacket::new_checked(&*packet).ok()?;
        let Transport::Tcp(t) = p.transport() else {
            return None;
        };
        if t.flags.0 & TcpFlags::SYN.0 == 0 {
            return None;
        }
        (p.transport_offset(), usize::from(t.header_len))
    };
    let tcp = packet.get_mut(off..off.checked_add(len)?)?;
    let mut i = 20;
    while i < len {
        let kind = *tcp.get(i)?;
        match kind {
            OPT_END => return None,
            OPT_NOP => {
                i += 1;
                continue;
            }
            _ => {}
        }
        let olen = usize::from(*tcp.get(i + 1)?);
        if olen < 2 || i + olen > len {
            return None;
        }
        if kind == OPT_MSS {
            if olen != 4 {
                return None;
            }
            let old = u16::from_be_bytes([*tcp.get(i + 2)?, *tcp.get(i + 3)?]);
            if old <= max {
                return None;
            }
            rewrite(tcp, i + 2, max.to_be_bytes());
            return Some(old);
        }
        i += olen;
    }
    None
}

/// Write `new` at `at` in the TCP header `tcp` and update its checksum (bytes 16..18) word by
/// word: the field may start at an odd offset, spanning two checksum words.
fn rewrite(tcp: &mut [u8], at: usize, new: [u8; 2]) {
    let word = |b: &[u8], w: usize| u16::from_be_bytes([b[w], b[w + 1]]);
    let first = at & !1;
    let last = (at + 1) & !1;
    // `at + 1 < tcp.len()` and `tcp.len()` is even (a multiple of 4): every word is inside.
    if last + 1 >= tcp.len() || tcp.len() < 20 {
        return;
    }
    let old: [u16; 2] = [word(tcp, first), word(tcp, last)];
    tcp[at] = new[0];
    tcp[at + 1] = new[1];
    let mut check = word(tcp, 16);
    check = checksum::update(check, old[0], word(tcp, first));
    if last != first {
        check = checksum::update(check, old[1], word(tcp, last));
    }
    tcp[16..18].copy_from_slice(&check.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    /// An IPv4 TCP segment with `options` (padded to a multiple of 4) and a correct checksum.
    fn segment(flags: u8, options: &[u8], payload: &[u8]) -> Vec<u8> {
        let mut opts = options.to_vec();
        while !opts.len().is_multiple_of(4) {
            opts.push(OPT_END);
        }
        let hlen = 20 + opts.len();
        let total = 20 + hlen + payload.len();
        let mut p = vec![0u8; total];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        p[8] = 64;
        p[9] = 6;
        p[12..16].copy_from_slice(&[10, 9, 0, 7]);
        p[16..20].copy_from_slice(&[10, 77, 0, 1]);
        let ip_check = checksum::checksum(&p[..20]);
        p[10..12].copy_from_slice(&ip_check.to_be_bytes());
        let t = &mut p[20..];
        t[0..2].copy_from_slice(&443u16.to_be_bytes());
        t[2..4].copy_from_slice(&50000u16.to_be_bytes());
        t[12] = ((hlen / 4) as u8) << 4;
        t[13] = flags;
        t[20..hlen].copy_from_slice(&opts);
        t[hlen..].copy_from_slice(payload);
        let check = tcp_checksum(&p);
        p[36..38].copy_from_slice(&check.to_be_bytes());
        p
    }

    /// The naive model: the checksum recomputed over pseudo-header and segment (field zeroed).
    fn tcp_checksum(p: &[u8]) -> u16 {
        let mut seg = p[20..].to_vec();
        seg[16] = 0;
        seg[17] = 0;
        let ph = checksum::pseudo_header_v4(
            Ipv4Addr::new(p[12], p[13], p[14], p[15]),
            Ipv4Addr::new(p[16], p[17], p[18], p[19]),
            6,
            seg.len(),
        );
        !checksum::fold(checksum::sum(&seg, ph))
    }

    /// The naive model of the MSS: the first MSS option in the option list, scanned.
    fn mss_of(p: &[u8]) -> Option<u16> {
        let hlen = usize::from(p[32] >> 4) * 4;
        let opts = &p[40..20 + hlen];
        let mut i = 0;
        while i < opts.len() {
            match opts[i] {
                0 => return None,
                1 => i += 1,
                2 => {
                    let v = opts.get(i + 2..i + 4)?;
                    return Some(u16::from_be_bytes([v[0], v[1]]));
                }
                _ => i += usize::from(*opts.get(i + 1)?).max(2),
            }
        }
        None
    }

    #[test]
    fn a_syn_is_clamped_and_its_checksum_stays_right() {
        let mut p = segment(0x02, &[2, 4, 0x05, 0xb4, 1, 1, 4, 2], b"");
        assert!(maybe_syn(&p));
        assert_eq!(clamp_mss(&mut p, 1380), Some(1460));
        assert_eq!(mss_of(&p), Some(1380));
        assert_eq!(u16::from_be_bytes([p[36], p[37]]), tcp_checksum(&p));
        // Once clamped, nothing more to do; a smaller MSS is left alone.
        assert_eq!(clamp_mss(&mut p, 1380), None);
        assert_eq!(clamp_mss(&mut p, 1400), None);
        // Not a SYN: untouched.
        let mut ack = segment(0x10, &[2, 4, 0x05, 0xb4], b"");
        assert!(!maybe_syn(&ack));
        assert_eq!(clamp_mss(&mut ack, 1000), None);
        assert_eq!(mss_limit(IpVersion::V4, 1420), 1380);
        assert_eq!(mss_limit(IpVersion::V6, 1420), 1360);
    }

    /// An IPv6 SYN behind a hop-by-hop options header (8 bytes of PadN): `maybe_syn` lets it
    /// through to `clamp_mss`, which walks the chain, lowers the MSS and keeps the checksum right.
    #[test]
    fn an_ipv6_syn_behind_extension_headers_is_clamped() {
        use std::net::Ipv6Addr;
        let (src, dst) = (
            Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, 2),
            Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, 3),
        );
        let opts = [2u8, 4, 0x05, 0xa0, 1, 1, 4, 2]; // MSS 1440, NOP, NOP, SACK permitted
        let mut tcp = vec![0u8; 20];
        tcp[0..2].copy_from_slice(&50000u16.to_be_bytes());
        tcp[2..4].copy_from_slice(&443u16.to_be_bytes());
        tcp[12] = 7 << 4;
        tcp[13] = 0x02;
        tcp.extend_from_slice(&opts);
        let checksum_of = |seg: &[u8]| {
            let mut seg = seg.to_vec();
            seg[16] = 0;
            seg[17] = 0;
            !checksum::fold(checksum::sum(
                &seg,
                checksum::pseudo_header_v6(src, dst, 6, seg.len()),
            ))
        };
        let c = checksum_of(&tcp);
        tcp[16..18].copy_from_slice(&c.to_be_bytes());
        let hop_by_hop = [6u8, 0, 1, 4, 0, 0, 0, 0];
        let mut p = vec![0x60, 0, 0, 0];
        p.extend_from_slice(&((hop_by_hop.len() + tcp.len()) as u16).to_be_bytes());
        p.extend_from_slice(&[0, 64]); // next header: hop-by-hop; hop limit
        p.extend_from_slice(&src.octets());
        p.extend_from_slice(&dst.octets());
        p.extend_from_slice(&hop_by_hop);
        p.extend_from_slice(&tcp);

        assert!(maybe_syn(&p), "an extension header may hide a SYN");
        assert_eq!(clamp_mss(&mut p, 1360), Some(1440));
        let seg = &p[48..];
        assert_eq!(u16::from_be_bytes([seg[22], seg[23]]), 1360);
        assert_eq!(u16::from_be_bytes([seg[16], seg[17]]), checksum_of(seg));
        // Without extension headers, a non-TCP IPv6 packet is still skipped at once.
        let mut udp = p.clone();
        udp[6] = 17;
        assert!(!maybe_syn(&udp));
    }

    #[test]
    fn an_mss_at_an_odd_offset_is_fixed_across_two_checksum_words() {
        // One NOP first: the MSS value sits at TCP offset 23, spanning words 22 and 24.
        let mut p = segment(0x12, &[1, 2, 4, 0x23, 0x28, 1, 1, 1], b"data");
        assert_eq!(clamp_mss(&mut p, 1200), Some(9000));
        assert_eq!(mss_of(&p), Some(1200));
        assert_eq!(u16::from_be_bytes([p[36], p[37]]), tcp_checksum(&p));
    }

    #[test]
    fn malformed_option_lists_are_left_alone() {
        for opts in [&[3u8, 0, 2, 4][..], &[3, 9, 2, 4], &[2, 3, 5, 0xb4]] {
            let mut p = segment(0x02, opts, b"");
            let before = p.clone();
            assert_eq!(clamp_mss(&mut p, 500), None);
            assert_eq!(p, before);
        }
    }

    fn option() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            Just(vec![OPT_NOP]),
            any::<u16>().prop_map(|m| vec![OPT_MSS, 4, (m >> 8) as u8, m as u8]),
            (3u8..=8).prop_map(|w| vec![3, 3, w]),
            Just(vec![4, 2]),
            (0u8..4).prop_map(|n| {
                let mut v = vec![8, 10];
                v.extend([n; 8]);
                v
            }),
        ]
    }

    proptest! {
        /// Against the naive model: the MSS becomes min(old, max), the recomputed checksum matches
        /// the incrementally fixed one, and no other byte changes.
        #[test]
        fn agrees_with_recomputation(
            opts in proptest::collection::vec(option(), 0..8),
            flags in any::<u8>(),
            payload in proptest::collection::vec(any::<u8>(), 0..40),
            max in 0u16..=u16::MAX,
        ) {
            let opts: Vec<u8> = opts.concat().into_iter().take(40).collect();
            let mut p = segment(flags, &opts, &payload);
            let before = p.clone();
            let old = mss_of(&p);
            let r = clamp_mss(&mut p, max);
            let syn = flags & 0x02 != 0;
            // The model only parses what it can: options cut at 40 bytes may end mid-option.
            let walkable = {
                let hlen = usize::from(p[32] >> 4) * 4;
                let o = &before[40..20 + hlen];
                let mut i = 0;
                let mut ok = true;
                while i < o.len() {
                    match o[i] {
                        0 => break,
                        1 => i += 1,
                        k => {
                            let l = o.get(i + 1).map_or(0, |l| usize::from(*l));
                            if l < 2 || i + l > o.len() || (k == 2 && l != 4) { ok = false; break; }
                            if k == 2 { break; }
                            i += l;
                        }
                    }
                }
                ok
            };
            if syn && walkable && old.is_some_and(|m| m > max) {
                prop_assert_eq!(r, old);
                prop_assert_eq!(mss_of(&p), Some(max));
                prop_assert_eq!(u16::from_be_bytes([p[36], p[37]]), tcp_checksum(&p));
                let changed: Vec<usize> = (0..p.len()).filter(|&i| p[i] != before[i]).collect();
                prop_assert!(changed.iter().all(|&i| (36..38).contains(&i) || i >= 40), "{:?}", changed);
            } else {
                prop_assert_eq!(r, None);
                prop_assert_eq!(&p, &before);
            }
        }

        /// No input panics, and only SYNs are touched.
        #[test]
        fn never_panics(mut bytes in proptest::collection::vec(any::<u8>(), 0..120), max in any::<u16>()) {
            let _ = maybe_syn(&bytes);
            let before = bytes.clone();
            if clamp_mss(&mut bytes, max).is_some() {
                let p = IpPacket::new_checked(&bytes[..]).unwrap();
                prop_assert!(p.tcp_flags().is_some_and(|f| f.0 & TcpFlags::SYN.0 != 0));
            } else {
                prop_assert_eq!(bytes, before);
            }
        }
    }
}
