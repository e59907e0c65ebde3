//! The choice of a target among the members of a group target.
//!
//! **Rule**: the candidates are the targets whose member has an established session; when none
//! has, every target is a candidate (connecting to one starts a handshake, and a group that is all
//! down must not refuse connections that may succeed). Among the candidates, the one with the fewest
//! active connections through this exposure wins; a tie goes to the highest rendezvous hash of
//! (source, target index), so a source keeps reaching the same member while the load is even and
//! different sources spread over the members. Pure: the same inputs give the same choice.

use std::net::IpAddr;

use crate::ratelimit::SourceKey;

/// What the choice knows of one target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// The member has an established session.
    pub healthy: bool,
    /// Connections (flows) of this exposure to it now.
    pub active: u32,
}

/// The index of the target for a connection from `src`, or `None` when `targets` is empty.
pub fn choose(targets: &[Candidate], src: IpAddr) -> Option<usize> {
    let any_healthy = targets.iter().any(|c| c.healthy);
    let key = match SourceKey::of(src) {
        SourceKey::V4(a) => u64::from(a),
        SourceKey::V6(p) => p ^ 0x6000_0000_0000_0000,
    };
    targets
        .iter()
        .enumerate()
        .filter(|(_, c)| c.healthy || !any_healthy)
        .min_by_key(|(i, c)| (c.active, std::cmp::Reverse(rendezvous(key, *i as u64))))
        .map(|(i, _)| i)
}

/// splitmix64 of the pair: stable across runs and platforms.
fn rendezvous(src: u64, target: u64) -> u64 {
    let mut z = src
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(target.wrapping_mul(0xD6E8_FEB8_6659_FD93))
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn c(healthy: bool, active: u32) -> Candidate {
        Candidate { healthy, active }
    }

    #[test]
    fn healthy_members_first_then_least_connections() {
        let src: IpAddr = "198.51.100.7".parse().unwrap();
        assert_eq!(choose(&[], src), None);
        assert_eq!(choose(&[c(false, 0), c(true, 9)], src), Some(1));
        assert_eq!(choose(&[c(true, 3), c(true, 1), c(true, 2)], src), Some(1));
        // Nobody healthy: everybody is a candidate, the least loaded wins.
        assert_eq!(choose(&[c(false, 4), c(false, 1)], src), Some(1));
    }

    #[test]
    fn ties_spread_sources_and_stick_per_source() {
        let even = [c(true, 0), c(true, 0), c(true, 0)];
        let mut seen = [0usize; 3];
        for i in 0..300u32 {
            let src = IpAddr::from(std::net::Ipv4Addr::from(0xC633_6400 + i));
            let first = choose(&even, src).unwrap();
            assert_eq!(choose(&even, src), Some(first));
            seen[first] += 1;
        }
        assert!(seen.iter().all(|&n| n > 50), "{seen:?}");
        // One /64: one choice.
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        assert_eq!(choose(&even, a), choose(&even, b));
    }

    proptest! {
        #[test]
        fn the_choice_is_a_healthy_least_loaded_one(
            cands in prop::collection::vec((any::<bool>(), 0u32..5), 1..8),
            src in any::<u32>(),
        ) {
            let cands: Vec<Candidate> = cands.into_iter().map(|(h, a)| c(h, a)).collect();
            let i = choose(&cands, IpAddr::from(std::net::Ipv4Addr::from(src))).unwrap();
            let any_healthy = cands.iter().any(|c| c.healthy);
            prop_assert!(cands[i].healthy || !any_healthy);
            let pool = cands.iter().filter(|c| c.healthy || !any_healthy);
            prop_assert_eq!(Some(cands[i].active), pool.map(|c| c.active).min());
        }
    }
}
