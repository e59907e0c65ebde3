//! The Internet checksum (RFC 1071): the one implementation in privnet.
//!
//! Sums are kept unfolded in a `u64` accumulator so that pieces (pseudo-header, headers, payload)
//! can be added in any order and folded once: `!fold(sum(data, pseudo_header_v4(..)))` is the
//! checksum to store, and a received packet is intact when `fold(sum(..)) == 0xffff`.
//!
//! Every function is pure, allocation-free and branch-light; [`sum`] is what the segmentation
//! offload and the ICMP error builders spend their time in, so it is written for speed (see its
//! docs) and tested against the textbook definition.
//!
//! Invariants:
//! - `fold(sum(data, acc))` equals the textbook one's-complement sum of `data` as big-endian 16-bit
//!   words (odd last byte padded with zero) added to `acc`, for every `data` up to 16 GiB;
//! - a non-zero accumulator never folds to 0, so a checksum computed here is never the "negative
//!   zero" `0xffff` unless the data are all zero (the UDP rule "0 means none" is the caller's job).

use core::net::{Ipv4Addr, Ipv6Addr};

/// One's-complement sum of `data` (big-endian 16-bit words) added to `acc`, not folded.
///
/// The data is summed in native little-endian 32-bit words (no byte swaps, which lets the compiler
/// vectorise the loop), folded, and byte-swapped into the big-endian domain once at the end: the
/// one's-complement sum does not depend on byte order (RFC 1071 §2.B). The folded result is the
/// same as summing big-endian words one by one (checked against that in the tests).
#[inline]
pub fn sum(data: &[u8], acc: u64) -> u64 {
    let mut le: u64 = 0;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        le += u64::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]]));
    }
    let rest = chunks.remainder();
    let mut i = 0;
    while i + 2 <= rest.len() {
        le += u64::from(u16::from_le_bytes([rest[i], rest[i + 1]]));
        i += 2;
    }
    if let Some(&b) = rest.get(i) {
        // an odd last byte is the high byte of a big-endian word: the low byte here
        le += u64::from(b);
    }
    acc.wrapping_add(u64::from(fold(le).swap_bytes()))
}

/// Fold a sum to 16 bits (end-around carry).
#[inline]
pub fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The checksum of `data` alone: `!fold(sum(data, 0))`, ready to store (e.g. an IPv4 header
/// checksum, computed with the checksum field zeroed).
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    !fold(sum(data, 0))
}

/// The IPv4 pseudo-header sum (RFC 793 §3.1, RFC 768) for `protocol` carrying `len` bytes of
/// transport header and data, not folded.
#[inline]
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, len: usize) -> u64 {
    sum(&dst.octets(), sum(&src.octets(), 0)) + u64::from(protocol) + len as u64
}

/// The IPv6 pseudo-header sum (RFC 8200 §8.1) for upper-layer `protocol` carrying `len` bytes,
/// not folded. `len` is the upper-layer packet length (32 bits on the wire; added whole, which
/// folds to the same value as adding its two 16-bit halves).
#[inline]
pub fn pseudo_header_v6(src: Ipv6Addr, dst: Ipv6Addr, protocol: u8, len: usize) -> u64 {
    sum(&dst.octets(), sum(&src.octets(), 0)) + u64::from(protocol) + len as u64
}

/// Incremental update (RFC 1624 eqn. 3, `HC' = ~(~HC + ~m + m')`) of a stored checksum `check`
/// after one 16-bit word of the covered data changed from `old` to `new`.
///
/// Gives the same value as recomputing the checksum over the new data, unless the new data are
/// all zero (then a recomputation gives `0xffff` and this gives `0`; no real header is all zero).
/// Meant for rewriting a field in place (TCP MSS clamping, TTL, addresses) without re-summing.
#[inline]
pub fn update(check: u16, old: u16, new: u16) -> u16 {
    !fold(u64::from(!check) + u64::from(!old) + u64::from(new))
}

/// [`update`] for a 32-bit field (an IPv4 address, a TCP sequence number) that changed from `old`
/// to `new`.
#[inline]
pub fn update_u32(check: u16, old: u32, new: u32) -> u16 {
    let acc = u64::from(!check)
        + u64::from(!(old >> 16) & 0xffff)
        + u64::from(!old & 0xffff)
        + u64::from(new >> 16)
        + u64::from(new & 0xffff);
    !fold(acc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The textbook sum: big-endian 16-bit words, one at a time.
    fn reference_sum(data: &[u8], mut acc: u64) -> u64 {
        for w in data.chunks(2) {
            let hi = u64::from(w[0]) << 8;
            acc += hi | w.get(1).map_or(0, |&b| u64::from(b));
        }
        acc
    }

    #[test]
    fn sum_equals_the_textbook_sum() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut data = vec![0u8; 1600];
        for round in 0..3000 {
            for b in data.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            if round % 7 == 0 {
                data.iter_mut().for_each(|b| *b = 0xff); // all-ones words: the two zeros
            }
            if round % 11 == 0 {
                data.iter_mut().for_each(|b| *b = 0);
            }
            let len = (x % 1600) as usize;
            let acc = if round % 3 == 0 { x >> 40 } else { 0 };
            assert_eq!(
                fold(sum(&data[..len], acc)),
                fold(reference_sum(&data[..len], acc)),
                "len {len} acc {acc}"
            );
        }
        for len in 0..9 {
            let d = [0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89, 0xfe];
            assert_eq!(fold(sum(&d[..len], 5)), fold(reference_sum(&d[..len], 5)));
        }
    }

    #[test]
    fn checksum_matches_rfc1071_example() {
        // RFC 1071 §3 example: sum of 0001 f203 f4f5 f6f7 is 0xddf2 -> checksum 0x220d.
        assert_eq!(
            checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            0x220d
        );
        // Odd length pads with zero.
        assert_eq!(checksum(&[0xff]), !0xff00);
    }

    #[test]
    fn pseudo_headers_match_the_textbook_layout() {
        let (s4, d4) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(192, 168, 7, 9));
        // RFC 768: src, dst, zero, protocol, UDP length.
        let mut ph = Vec::new();
        ph.extend_from_slice(&s4.octets());
        ph.extend_from_slice(&d4.octets());
        ph.extend_from_slice(&[0, 17, 0x05, 0xdc]);
        assert_eq!(
            fold(pseudo_header_v4(s4, d4, 17, 1500)),
            fold(reference_sum(&ph, 0))
        );
        let s6: Ipv6Addr = "fd00::1".parse().unwrap();
        let d6: Ipv6Addr = "fd00:1:2:3:4:5:6:7".parse().unwrap();
        // RFC 8200 §8.1: src, dst, 32-bit length, 3 zero bytes, next header.
        let len = 70_000usize;
        let mut ph = Vec::new();
        ph.extend_from_slice(&s6.octets());
        ph.extend_from_slice(&d6.octets());
        ph.extend_from_slice(&(len as u32).to_be_bytes());
        ph.extend_from_slice(&[0, 0, 0, 58]);
        assert_eq!(
            fold(pseudo_header_v6(s6, d6, 58, len)),
            fold(reference_sum(&ph, 0))
        );
    }

    proptest! {
        #[test]
        fn incremental_update_equals_recomputation(
            mut data in proptest::collection::vec(any::<u8>(), 2..64),
            at in any::<prop::sample::Index>(),
            new in any::<u16>(),
            new32 in any::<u32>(),
        ) {
            let words = data.len() / 2;
            let i = at.index(words) * 2;
            let before = checksum(&data);
            let old = u16::from_be_bytes([data[i], data[i + 1]]);
            data[i..i + 2].copy_from_slice(&new.to_be_bytes());
            if data.iter().any(|&b| b != 0) {
                prop_assert_eq!(update(before, old, new), checksum(&data));
            }
            if words >= 2 {
                let j = at.index(words - 1) * 2;
                let before = checksum(&data);
                let old = u32::from_be_bytes([data[j], data[j + 1], data[j + 2], data[j + 3]]);
                data[j..j + 4].copy_from_slice(&new32.to_be_bytes());
                if data.iter().any(|&b| b != 0) {
                    prop_assert_eq!(update_u32(before, old, new32), checksum(&data));
                }
            }
        }
    }
}
