//! Longest-prefix-match table from overlay addresses to values (peer ids), with explicit route
//! ownership.
//!
//! One hash map per prefix length in use, probed from the longest length down: a lookup costs one
//! hash probe per distinct prefix length (typically one or two), independent of the number of peers.
//!
//! **Ownership.** A prefix may be claimed by several values (two gateways granted the same subnet,
//! or a configured peer whose configured prefix a verified member's certificate also grants). The
//! most specific prefix wins, as always; among the owners of one prefix, a *granted* claim (from a
//! verified credential, so the CA granted it) ranks before a merely configured one, and among
//! equals the earliest claim wins. Removing an owner hands the prefix to the next one instead of
//! deleting it, and re-stating an owner's prefixes ([`Router::set_routes`]) keeps the claims that
//! remain, so a rekey or a certificate renewal does not move a shared route.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnetwork::IpNetwork;

/// The owners of one prefix: the active one inline (what a lookup reads), the others in rank order.
#[derive(Clone, Debug)]
struct Owners<T> {
    active: T,
    active_rank: Rank,
    others: Vec<(T, Rank)>,
}

/// How a claim ranks: granted before configured, then first come.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Rank {
    configured_only: bool,
    seq: u64,
}

impl<T: Clone + PartialEq> Owners<T> {
    fn new(value: T, rank: Rank) -> Self {
        Self {
            active: value,
            active_rank: rank,
            others: Vec::new(),
        }
    }

    /// Add or re-rank `value`'s claim (keeping its place in the claim order).
    fn claim(&mut self, value: T, granted: bool, seq: u64) {
        if self.active == value {
            self.active_rank.configured_only = !granted;
        } else if let Some(o) = self.others.iter_mut().find(|(v, _)| *v == value) {
            o.1.configured_only = !granted;
        } else {
            self.others.push((
                value,
                Rank {
                    configured_only: !granted,
                    seq,
                },
            ));
        }
        self.promote();
    }

    /// Drop `value`'s claim; `false` when no owner is left.
    fn release(&mut self, value: &T) -> bool {
        self.others.retain(|(v, _)| v != value);
        if self.active == *value {
            if self.others.is_empty() {
                return false;
            }
            let (v, r) = self.others.remove(0);
            self.active = v;
            self.active_rank = r;
        }
        self.promote();
        true
    }

    /// Make the best-ranked claim the active one.
    fn promote(&mut self) {
        self.others.sort_by_key(|(_, r)| *r);
        if let Some(first) = self.others.first() {
            if first.1 < self.active_rank {
                let (v, r) = self.others.remove(0);
                let old = std::mem::replace(&mut self.active, v);
                let old_rank = std::mem::replace(&mut self.active_rank, r);
                self.others.push((old, old_rank));
                self.others.sort_by_key(|(_, r)| *r);
            }
        }
    }

    fn holds(&self, value: &T) -> bool {
        self.active == *value || self.others.iter().any(|(v, _)| v == value)
    }
}

/// A longest-prefix-match table.
#[derive(Clone, Debug)]
pub struct Router<T> {
    v4: Vec<(u8, HashMap<u32, Owners<T>>)>,
    v6: Vec<(u8, HashMap<u128, Owners<T>>)>,
    seq: u64,
}

impl<T> Default for Router<T> {
    fn default() -> Self {
        Self {
            v4: Vec::new(),
            v6: Vec::new(),
            seq: 0,
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

/// The map of prefix length `len` in `tables` (created, in longest-first order, when missing).
fn table<K, O>(tables: &mut Vec<(u8, HashMap<K, O>)>, len: u8) -> &mut HashMap<K, O> {
    let pos = match tables.iter().position(|(l, _)| *l == len) {
        Some(p) => p,
        None => {
            tables.push((len, HashMap::new()));
            tables.sort_by_key(|e| std::cmp::Reverse(e.0));
            tables.iter().position(|(l, _)| *l == len).unwrap_or(0)
        }
    };
    &mut tables[pos].1
}

impl<T: Clone + PartialEq> Router<T> {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Claim `net` for `value`; `granted` when a verified credential grants it (see the module
    /// docs for how claims rank).
    pub fn insert(&mut self, net: IpNetwork, value: T, granted: bool) {
        self.seq += 1;
        let seq = self.seq;
        let rank = Rank {
            configured_only: !granted,
            seq,
        };
        match net {
            IpNetwork::V4(n) => {
                let len = n.prefix();
                let key = u32::from(n.network()) & mask4(len);
                let map = table(&mut self.v4, len);
                match map.get_mut(&key) {
                    Some(o) => o.claim(value, granted, seq),
                    None => {
                        map.insert(key, Owners::new(value, rank));
                    }
                }
            }
            IpNetwork::V6(n) => {
                let len = n.prefix();
                let key = u128::from(n.network()) & mask6(len);
                let map = table(&mut self.v6, len);
                match map.get_mut(&key) {
                    Some(o) => o.claim(value, granted, seq),
                    None => {
                        map.insert(key, Owners::new(value, rank));
                    }
                }
            }
        }
    }

    /// Make `nets` exactly `value`'s claims: claims it keeps stay where they are in the order,
    /// the others are released, new ones are added.
    pub fn set_routes(&mut self, value: &T, nets: &[IpNetwork], granted: bool) {
        let nets: Vec<IpNetwork> = nets.iter().map(|n| canonical(*n)).collect();
        for (len, m) in &mut self.v4 {
            m.retain(|k, o| {
                let n = ipnetwork::Ipv4Network::new(std::net::Ipv4Addr::from(*k), *len)
                    .map(IpNetwork::V4);
                if o.holds(value) && !n.is_ok_and(|n| nets.contains(&n)) {
                    o.release(value)
                } else {
                    true
                }
            });
        }
        for (len, m) in &mut self.v6 {
            m.retain(|k, o| {
                let n = ipnetwork::Ipv6Network::new(std::net::Ipv6Addr::from(*k), *len)
                    .map(IpNetwork::V6);
                if o.holds(value) && !n.is_ok_and(|n| nets.contains(&n)) {
                    o.release(value)
                } else {
                    true
                }
            });
        }
        self.v4.retain(|(_, m)| !m.is_empty());
        self.v6.retain(|(_, m)| !m.is_empty());
        for n in nets {
            self.insert(n, value.clone(), granted);
        }
    }

    /// Release every claim of `value`; the next owner of a shared prefix takes it over.
    pub fn remove_value(&mut self, value: &T) {
        for (_, m) in &mut self.v4 {
            m.retain(|_, o| o.release(value));
        }
        for (_, m) in &mut self.v6 {
            m.retain(|_, o| o.release(value));
        }
        self.v4.retain(|(_, m)| !m.is_empty());
        self.v6.retain(|(_, m)| !m.is_empty());
    }

    /// The active owner of the longest prefix containing `addr`.
    #[inline]
    pub fn lookup(&self, addr: IpAddr) -> Option<&T> {
        match addr {
            IpAddr::V4(a) => {
                let a = u32::from(a);
                self.v4
                    .iter()
                    .find_map(|(len, m)| m.get(&(a & mask4(*len))))
                    .map(|o| &o.active)
            }
            IpAddr::V6(a) => {
                let a = u128::from(a);
                self.v6
                    .iter()
                    .find_map(|(len, m)| m.get(&(a & mask6(*len))))
                    .map(|o| &o.active)
            }
        }
    }

    /// [`Router::lookup`] with the length of the prefix that matched.
    #[inline]
    pub fn lookup_len(&self, addr: IpAddr) -> Option<(&T, u8)> {
        match addr {
            IpAddr::V4(a) => {
                let a = u32::from(a);
                self.v4
                    .iter()
                    .find_map(|(len, m)| m.get(&(a & mask4(*len))).map(|o| (&o.active, *len)))
            }
            IpAddr::V6(a) => {
                let a = u128::from(a);
                self.v6
                    .iter()
                    .find_map(|(len, m)| m.get(&(a & mask6(*len))).map(|o| (&o.active, *len)))
            }
        }
    }

    /// Every owner of a prefix containing all of `net` (the prefix itself or a shorter one),
    /// longest prefix first, each prefix's owners in rank order; an owner appears once.
    pub fn covering(&self, net: IpNetwork) -> Vec<T> {
        let mut out: Vec<T> = Vec::new();
        let mut add = |o: &Owners<T>| {
            for v in o.owners() {
                if !out.contains(&v) {
                    out.push(v);
                }
            }
        };
        match net {
            IpNetwork::V4(n) => {
                let a = u32::from(n.network());
                for (len, m) in self.v4.iter().filter(|(l, _)| *l <= n.prefix()) {
                    if let Some(o) = m.get(&(a & mask4(*len))) {
                        add(o);
                    }
                }
            }
            IpNetwork::V6(n) => {
                let a = u128::from(n.network());
                for (len, m) in self.v6.iter().filter(|(l, _)| *l <= n.prefix()) {
                    if let Some(o) = m.get(&(a & mask6(*len))) {
                        add(o);
                    }
                }
            }
        }
        out
    }

    /// Every prefix with its owners, the active one first (for status).
    pub fn routes(&self) -> Vec<(IpNetwork, Vec<T>)> {
        let mut out = Vec::new();
        for (len, m) in &self.v4 {
            for (k, o) in m {
                if let Ok(n) = ipnetwork::Ipv4Network::new(std::net::Ipv4Addr::from(*k), *len) {
                    out.push((IpNetwork::V4(n), o.owners()));
                }
            }
        }
        for (len, m) in &self.v6 {
            for (k, o) in m {
                if let Ok(n) = ipnetwork::Ipv6Network::new(std::net::Ipv6Addr::from(*k), *len) {
                    out.push((IpNetwork::V6(n), o.owners()));
                }
            }
        }
        out.sort_by_key(|(n, _)| *n);
        out
    }

    /// Number of routes (prefixes).
    pub fn len(&self) -> usize {
        self.v4.iter().map(|(_, m)| m.len()).sum::<usize>()
            + self.v6.iter().map(|(_, m)| m.len()).sum::<usize>()
    }

    /// True if there are no routes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T: Clone> Owners<T> {
    fn owners(&self) -> Vec<T> {
        std::iter::once(self.active.clone())
            .chain(self.others.iter().map(|(v, _)| v.clone()))
            .collect()
    }
}

/// `net` with its host bits cleared (the key the table stores it under).
fn canonical(net: IpNetwork) -> IpNetwork {
    match net {
        IpNetwork::V4(n) => ipnetwork::Ipv4Network::new(n.network(), n.prefix())
            .map(IpNetwork::V4)
            .unwrap_or(net),
        IpNetwork::V6(n) => ipnetwork::Ipv6Network::new(n.network(), n.prefix())
            .map(IpNetwork::V6)
            .unwrap_or(net),
    }
}

/// Whether `ip` lies inside the overlay: in one of the fixed prefix `lists` (the network's
/// prefixes, our own addresses) or in any prefix routed to a peer (docs/PROTOCOL.md §6).
///
/// A default route (`0.0.0.0/0`, `::/0`, an exit's grant) does not count: it holds the whole
/// underlay, which lies outside the overlay by definition. An endpoint that falls only inside a
/// default route is an ordinary endpoint; what keeps the tunnel out of the tunnel there is the
/// I/O shell's marked underlay socket and separate routing table (docs/CONFIG.md, "Default
/// route"). Every more specific prefix keeps its guard.
#[inline]
pub(crate) fn overlay_contains<T: Clone + PartialEq>(
    router: &Router<T>,
    lists: [&[IpNetwork]; 2],
    ip: IpAddr,
) -> bool {
    lists.iter().any(|l| contains_specific(l, ip))
        || router.lookup_len(ip).is_some_and(|(_, len)| len > 0)
}

/// True if `addr` lies inside one of `nets` other than a default route.
#[inline]
fn contains_specific(nets: &[IpNetwork], addr: IpAddr) -> bool {
    nets.iter().any(|n| n.prefix() > 0 && n.contains(addr))
}

/// The anti-spoofing check of an inner source: `src` lies in one of the peer's `allowed`
/// prefixes, and when only a default route of the peer (an exit) covers it, it lies outside the
/// network's `overlay` prefixes: an exit forwards the outside world, never the addresses of
/// other members.
#[inline]
pub(crate) fn source_allowed(allowed: &[IpNetwork], overlay: &[IpNetwork], src: IpAddr) -> bool {
    let mut by_default = false;
    for n in allowed {
        if n.contains(src) {
            if n.prefix() > 0 {
                return true;
            }
            by_default = true;
        }
    }
    by_default && !contains_specific(overlay, src)
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

    fn at(r: &Router<u32>, a: &str) -> Option<u32> {
        r.lookup(a.parse().unwrap()).copied()
    }

    #[test]
    fn a_default_route_is_not_inside_the_overlay() {
        let mut r = Router::new();
        r.insert(net("0.0.0.0/0"), 7, true);
        r.insert(net("::/0"), 7, true);
        r.insert(net("10.237.5.0/24"), 8, true);
        let overlay = [net("10.79.0.0/16"), net("0.0.0.0/0"), net("fd79::/48")];
        let own = [net("10.79.0.11/32"), net("::/0")];
        let inside = |a: &str| overlay_contains(&r, [&overlay[..], &own[..]], a.parse().unwrap());
        // Only a default route covers them: the underlay, allowed as an endpoint.
        assert!(!inside("198.51.100.7"));
        assert!(!inside("10.236.0.21"));
        assert!(!inside("2001:db8::1"));
        // Every more specific prefix keeps the routing-loop guard.
        assert!(inside("10.79.0.22"));
        assert!(inside("10.79.0.11"));
        assert!(inside("10.237.5.10"));
        assert!(inside("fd79::5"));
        // The router still routes there (the exit): only the guard ignores the default.
        assert_eq!(at(&r, "198.51.100.7"), Some(7));
    }

    #[test]
    fn an_exit_is_no_source_of_overlay_addresses() {
        let overlay = [net("10.79.0.0/16"), net("fd79::/48"), net("0.0.0.0/0")];
        let exit = [net("10.79.0.31/32"), net("0.0.0.0/0"), net("10.237.5.0/24")];
        let ok = |a: &str| source_allowed(&exit, &overlay, a.parse().unwrap());
        assert!(ok("10.79.0.31"));
        assert!(ok("10.237.5.10"));
        assert!(ok("203.0.113.10"));
        assert!(!ok("10.79.0.12"), "another member's address through the exit");
        assert!(!ok("10.79.9.9"), "an unassigned overlay address");
        assert!(!ok("2001:db8::1"), "no IPv6 default route");
        // Without a default route, the check is the plain one.
        let member = [net("10.79.0.12/32")];
        assert!(source_allowed(&member, &overlay, "10.79.0.12".parse().unwrap()));
        assert!(!source_allowed(&member, &overlay, "203.0.113.10".parse().unwrap()));
    }

    #[test]
    fn longest_prefix_wins() {
        let mut r = Router::new();
        r.insert(net("10.0.0.0/8"), 1, true);
        r.insert(net("10.1.0.0/16"), 2, true);
        r.insert(net("10.1.2.3/32"), 3, true);
        r.insert(net("fd00::/8"), 4, true);
        r.insert(net("fd00::1/128"), 5, true);
        assert_eq!(at(&r, "10.1.2.3"), Some(3));
        assert_eq!(at(&r, "10.1.9.9"), Some(2));
        assert_eq!(at(&r, "10.9.9.9"), Some(1));
        assert_eq!(at(&r, "11.0.0.1"), None);
        assert_eq!(at(&r, "fd00::1"), Some(5));
        assert_eq!(at(&r, "fd00::2"), Some(4));
        r.remove_value(&3);
        assert_eq!(at(&r, "10.1.2.3"), Some(2));
        assert_eq!(r.len(), 4);
    }

    #[test]
    fn a_later_claim_does_not_take_a_shared_prefix_and_removal_keeps_the_other_owner() {
        let mut r = Router::new();
        r.insert(net("10.9.0.0/24"), 1, true);
        r.insert(net("10.9.0.0/24"), 2, true); // a second gateway granted the same subnet
        assert_eq!(at(&r, "10.9.0.7"), Some(1), "first claim keeps it");
        // Re-stating owner 1's routes (a rekey, a renewed certificate) keeps its place.
        r.set_routes(&1, &[net("10.9.0.0/24"), net("10.0.0.1/32")], true);
        assert_eq!(at(&r, "10.9.0.7"), Some(1));
        assert_eq!(r.routes()[1], (net("10.9.0.0/24"), vec![1, 2]));
        // Owner 1 revoked: owner 2 serves the subnet at once.
        r.remove_value(&1);
        assert_eq!(at(&r, "10.9.0.7"), Some(2));
        assert_eq!(at(&r, "10.0.0.1"), None);
    }

    #[test]
    fn a_granted_claim_ranks_before_a_configured_one() {
        let mut r = Router::new();
        // Peer 1 was configured with 10.0.0.5/32, but the CA granted it to member 2.
        r.insert(net("10.0.0.5/32"), 1, false);
        r.insert(net("10.0.0.5/32"), 2, true);
        assert_eq!(at(&r, "10.0.0.5"), Some(2));
        // Once peer 1's certificate is verified its routes are what the CA granted it.
        r.set_routes(&1, &[net("10.0.0.1/32")], true);
        assert_eq!(at(&r, "10.0.0.5"), Some(2));
        assert_eq!(at(&r, "10.0.0.1"), Some(1));
        // A configured claim only takes a prefix nobody was granted.
        r.insert(net("10.0.0.9/32"), 3, false);
        assert_eq!(at(&r, "10.0.0.9"), Some(3));
        r.insert(net("10.0.0.9/32"), 4, true);
        assert_eq!(at(&r, "10.0.0.9"), Some(4));
        r.remove_value(&4);
        assert_eq!(at(&r, "10.0.0.9"), Some(3));
    }

    #[test]
    fn covering_lists_the_owners_of_every_enclosing_prefix() {
        let mut r = Router::new();
        r.insert(net("10.9.0.0/24"), 1, true);
        r.insert(net("10.9.0.0/24"), 2, true);
        r.insert(net("10.0.0.0/8"), 3, true);
        r.insert(net("10.9.0.0/25"), 4, true);
        r.insert(net("10.9.0.7/32"), 1, true);
        assert_eq!(r.covering(net("10.9.0.0/24")), vec![1, 2, 3]);
        assert_eq!(r.covering(net("0.0.0.0/0")), Vec::<u32>::new());
        assert_eq!(r.lookup_len("10.9.0.200".parse().unwrap()), Some((&1, 24)));
        assert_eq!(r.lookup_len("10.9.0.7".parse().unwrap()), Some((&1, 32)));
        assert_eq!(r.lookup_len("10.1.0.7".parse().unwrap()), Some((&3, 8)));
    }

    #[derive(Clone, Debug)]
    enum Op {
        Claim(u32, u8, u32, bool),
        Remove(u32),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (any::<u32>(), 0u8..=32, 0u32..8, any::<bool>()).prop_map(|(a, l, v, g)| Op::Claim(a, l, v, g)),
            1 => (0u32..8).prop_map(Op::Remove),
        ]
    }

    /// The naive model: prefixes with their (owner, granted, first claim) lists.
    type Model = Vec<(IpNetwork, Vec<(u32, bool, usize)>)>;

    proptest! {
        /// Against a naive model: a list of (prefix, [(owner, granted, first claim)]), scanned.
        #[test]
        fn agrees_with_a_linear_scan_of_claims(
            ops in proptest::collection::vec(op(), 0..80),
            probes in proptest::collection::vec(any::<u32>(), 1..60),
        ) {
            let mut r = Router::new();
            let mut model: Model = Vec::new();
            for (seq, o) in ops.into_iter().enumerate() {
                match o {
                    Op::Claim(a, len, v, granted) => {
                        let n = ipnetwork::Ipv4Network::new(std::net::Ipv4Addr::from(a & mask4(len)), len).unwrap();
                        let n = IpNetwork::V4(n);
                        r.insert(n, v, granted);
                        match model.iter_mut().find(|(m, _)| *m == n) {
                            Some((_, owners)) => match owners.iter_mut().find(|(o, _, _)| *o == v) {
                                Some(o) => o.1 = granted,
                                None => owners.push((v, granted, seq)),
                            },
                            None => model.push((n, vec![(v, granted, seq)])),
                        }
                    }
                    Op::Remove(v) => {
                        r.remove_value(&v);
                        for (_, owners) in &mut model {
                            owners.retain(|(o, _, _)| *o != v);
                        }
                        model.retain(|(_, owners)| !owners.is_empty());
                    }
                }
            }
            for p in probes {
                let addr = IpAddr::V4(std::net::Ipv4Addr::from(p));
                let want = model
                    .iter()
                    .filter(|(n, _)| n.contains(addr))
                    .max_by_key(|(n, _)| n.prefix())
                    .and_then(|(_, owners)| owners.iter().min_by_key(|(_, g, seq)| (!*g, *seq)))
                    .map(|(v, _, _)| v);
                prop_assert_eq!(r.lookup(addr), want);
                prop_assert_eq!(r.lookup_len(addr).map(|(v, _)| v), want);
            }
            prop_assert_eq!(r.len(), model.len());
        }
    }
}
