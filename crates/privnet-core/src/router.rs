//! Longest-prefix-match table from overlay addresses to values (peer ids).
//!
//! One hash map per prefix length in use, probed from the longest length down: a lookup costs one
//! hash probe per distinct prefix length (typically one or two), independent of the number of peers.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnetwork::IpNetwork;

/// A longest-prefix-match table.
#[derive(Clone, Debug)]
pub struct Router<T> {
    v4: Vec<(u8, HashMap<u32, T>)>,
    v6: Vec<(u8, HashMap<u128, T>)>,
}

impl<T> Default for Router<T> {
    fn default() -> Self {
        Self {
            v4: Vec::new(),
            v6: Vec::new(),
        }
    }
}

fn mask4(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len.min(32)))
    }
}

fn mask6(len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len.min(128)))
    }
}

impl<T: Clone + PartialEq> Router<T> {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Insert or replace the route for `net`.
    pub fn insert(&mut self, net: IpNetwork, value: T) {
        match net {
            IpNetwork::V4(n) => {
                let len = n.prefix();
                let key = u32::from(n.network()) & mask4(len);
                let pos = self.v4.iter().position(|(l, _)| *l == len);
                let map = match pos {
                    Some(p) => &mut self.v4[p].1,
                    None => {
                        self.v4.push((len, HashMap::new()));
                        self.v4.sort_by_key(|e| std::cmp::Reverse(e.0));
                        let p = self.v4.iter().position(|(l, _)| *l == len).unwrap_or(0);
                        &mut self.v4[p].1
                    }
                };
                map.insert(key, value);
            }
            IpNetwork::V6(n) => {
                let len = n.prefix();
                let key = u128::from(n.network()) & mask6(len);
                let pos = self.v6.iter().position(|(l, _)| *l == len);
                let map = match pos {
                    Some(p) => &mut self.v6[p].1,
                    None => {
                        self.v6.push((len, HashMap::new()));
                        self.v6.sort_by_key(|e| std::cmp::Reverse(e.0));
                        let p = self.v6.iter().position(|(l, _)| *l == len).unwrap_or(0);
                        &mut self.v6[p].1
                    }
                };
                map.insert(key, value);
            }
        }
    }

    /// Remove every route whose value equals `value`.
    pub fn remove_value(&mut self, value: &T) {
        for (_, m) in &mut self.v4 {
            m.retain(|_, v| v != value);
        }
        for (_, m) in &mut self.v6 {
            m.retain(|_, v| v != value);
        }
        self.v4.retain(|(_, m)| !m.is_empty());
        self.v6.retain(|(_, m)| !m.is_empty());
    }

    /// The value of the longest prefix containing `addr`.
    #[inline]
    pub fn lookup(&self, addr: IpAddr) -> Option<&T> {
        match addr {
            IpAddr::V4(a) => {
                let a = u32::from(a);
                self.v4
                    .iter()
                    .find_map(|(len, m)| m.get(&(a & mask4(*len))))
            }
            IpAddr::V6(a) => {
                let a = u128::from(a);
                self.v6
                    .iter()
                    .find_map(|(len, m)| m.get(&(a & mask6(*len))))
            }
        }
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        self.v4.iter().map(|(_, m)| m.len()).sum::<usize>()
            + self.v6.iter().map(|(_, m)| m.len()).sum::<usize>()
    }

    /// True if there are no routes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// True if `addr` lies inside one of `nets`.
#[inline]
pub fn contains_any(nets: &[IpNetwork], addr: IpAddr) -> bool {
    nets.iter().any(|n| n.contains(addr))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn net(s: &str) -> IpNetwork {
        s.parse().unwrap()
    }

    #[test]
    fn longest_prefix_wins() {
        let mut r = Router::new();
        r.insert(net("10.0.0.0/8"), 1);
        r.insert(net("10.1.0.0/16"), 2);
        r.insert(net("10.1.2.3/32"), 3);
        r.insert(net("fd00::/8"), 4);
        r.insert(net("fd00::1/128"), 5);
        assert_eq!(r.lookup("10.1.2.3".parse().unwrap()), Some(&3));
        assert_eq!(r.lookup("10.1.9.9".parse().unwrap()), Some(&2));
        assert_eq!(r.lookup("10.9.9.9".parse().unwrap()), Some(&1));
        assert_eq!(r.lookup("11.0.0.1".parse().unwrap()), None);
        assert_eq!(r.lookup("fd00::1".parse().unwrap()), Some(&5));
        assert_eq!(r.lookup("fd00::2".parse().unwrap()), Some(&4));
        r.remove_value(&3);
        assert_eq!(r.lookup("10.1.2.3".parse().unwrap()), Some(&2));
        assert_eq!(r.len(), 4);
    }

    proptest! {
        #[test]
        fn agrees_with_linear_scan(
            routes in proptest::collection::vec((any::<u32>(), 0u8..=32, 0u32..50), 0..60),
            probes in proptest::collection::vec(any::<u32>(), 1..60),
        ) {
            let mut r = Router::new();
            let mut model: Vec<(IpNetwork, u32)> = Vec::new();
            for (a, len, v) in routes {
                let n = ipnetwork::Ipv4Network::new(std::net::Ipv4Addr::from(a & mask4(len)), len).unwrap();
                let n = IpNetwork::V4(n);
                r.insert(n, v);
                model.retain(|(m, _)| *m != n);
                model.push((n, v));
            }
            for p in probes {
                let addr = IpAddr::V4(std::net::Ipv4Addr::from(p));
                let want = model.iter().filter(|(n, _)| n.contains(addr)).max_by_key(|(n, _)| n.prefix()).map(|(_, v)| v);
                prop_assert_eq!(r.lookup(addr), want);
            }
        }
    }
}
