//! Address sets: CIDR prefixes with `except`, as sorted disjoint ranges (IPv4 and IPv6 apart).
//!
//! Invariant: the ranges of a [`RangeSet`] are inclusive, sorted, non-empty, disjoint and not
//! adjacent (merged), so equality of sets is equality of vectors and `contains` is one binary search.

use std::net::IpAddr;

use ipnetwork::IpNetwork;

/// An unsigned integer domain for ranges.
pub(crate) trait Point: Copy + Ord + std::fmt::Debug {
    const MIN: Self;
    const MAX: Self;
    fn succ(self) -> Option<Self>;
    fn pred(self) -> Option<Self>;
}

macro_rules! point {
    ($t:ty) => {
        impl Point for $t {
            const MIN: Self = <$t>::MIN;
            const MAX: Self = <$t>::MAX;
            fn succ(self) -> Option<Self> {
                self.checked_add(1)
            }
            fn pred(self) -> Option<Self> {
                self.checked_sub(1)
            }
        }
    };
}
point!(u16);
point!(u32);
point!(u128);

/// A set of points as sorted, disjoint, merged inclusive ranges.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub(crate) struct RangeSet<K: Point> {
    pub(crate) ranges: Vec<(K, K)>,
}

impl<K: Point> RangeSet<K> {
    /// The whole domain.
    pub(crate) fn full() -> Self {
        Self {
            ranges: vec![(K::MIN, K::MAX)],
        }
    }

    /// The union of arbitrary inclusive ranges (`lo > hi` ranges are ignored).
    pub(crate) fn from_ranges(mut v: Vec<(K, K)>) -> Self {
        v.retain(|(lo, hi)| lo <= hi);
        v.sort_unstable();
        let mut out: Vec<(K, K)> = Vec::with_capacity(v.len());
        for (lo, hi) in v {
            if let Some(last) = out.last_mut() {
                // Overlapping or adjacent: merge.
                if last.1.succ().is_none_or(|next| lo <= next) {
                    if hi > last.1 {
                        last.1 = hi;
                    }
                    continue;
                }
            }
            out.push((lo, hi));
        }
        Self { ranges: out }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    pub(crate) fn is_full(&self) -> bool {
        self.ranges == [(K::MIN, K::MAX)]
    }

    /// Whether `x` is in the set.
    pub(crate) fn contains(&self, x: K) -> bool {
        let i = self.ranges.partition_point(|&(lo, _)| lo <= x);
        i > 0 && self.ranges[i - 1].1 >= x
    }

    /// The union.
    pub(crate) fn union(&self, other: &Self) -> Self {
        let mut v = self.ranges.clone();
        v.extend_from_slice(&other.ranges);
        Self::from_ranges(v)
    }

    /// The complement within the domain.
    pub(crate) fn complement(&self) -> Self {
        let mut out = Vec::with_capacity(self.ranges.len() + 1);
        let mut next = Some(K::MIN);
        for &(lo, hi) in &self.ranges {
            if let Some(n) = next {
                if n < lo {
                    if let Some(p) = lo.pred() {
                        out.push((n, p));
                    }
                }
            }
            next = hi.succ();
        }
        if let Some(n) = next {
            out.push((n, K::MAX));
        }
        Self { ranges: out }
    }

    /// The intersection.
    pub(crate) fn intersect(&self, other: &Self) -> Self {
        let (mut i, mut j) = (0, 0);
        let mut out = Vec::new();
        while i < self.ranges.len() && j < other.ranges.len() {
            let (a_lo, a_hi) = self.ranges[i];
            let (b_lo, b_hi) = other.ranges[j];
            let lo = a_lo.max(b_lo);
            let hi = a_hi.min(b_hi);
            if lo <= hi {
                out.push((lo, hi));
            }
            if a_hi < b_hi {
                i += 1;
            } else {
                j += 1;
            }
        }
        Self { ranges: out }
    }

    /// `self` minus `other`.
    pub(crate) fn subtract(&self, other: &Self) -> Self {
        self.intersect(&other.complement())
    }

    /// Whether every point of `self` is in `other`.
    pub(crate) fn is_subset(&self, other: &Self) -> bool {
        self.subtract(other).is_empty()
    }
}

/// A set of IP addresses (both families).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub(crate) struct IpSet {
    pub(crate) v4: RangeSet<u32>,
    pub(crate) v6: RangeSet<u128>,
}

impl IpSet {
    /// Every address of both families.
    pub(crate) fn full() -> Self {
        Self {
            v4: RangeSet::full(),
            v6: RangeSet::full(),
        }
    }

    /// The union of `prefixes`.
    pub(crate) fn from_prefixes(prefixes: &[IpNetwork]) -> Self {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for p in prefixes {
            match p {
                IpNetwork::V4(n) => {
                    let lo = u32::from(n.network());
                    let bits = u32::from(n.prefix());
                    let hi = if bits == 0 {
                        u32::MAX
                    } else if bits >= 32 {
                        lo
                    } else {
                        lo | (u32::MAX >> bits)
                    };
                    v4.push((lo, hi));
                }
                IpNetwork::V6(n) => {
                    let lo = u128::from(n.network());
                    let bits = u32::from(n.prefix());
                    let hi = if bits == 0 {
                        u128::MAX
                    } else if bits >= 128 {
                        lo
                    } else {
                        lo | (u128::MAX >> bits)
                    };
                    v6.push((lo, hi));
                }
            }
        }
        Self {
            v4: RangeSet::from_ranges(v4),
            v6: RangeSet::from_ranges(v6),
        }
    }

    /// `cidr` minus `except`; an empty `cidr` means every address.
    pub(crate) fn from_cidr_except(cidr: &[IpNetwork], except: &[IpNetwork]) -> Self {
        let base = if cidr.is_empty() {
            Self::full()
        } else {
            Self::from_prefixes(cidr)
        };
        base.subtract(&Self::from_prefixes(except))
    }

    pub(crate) fn contains(&self, a: IpAddr) -> bool {
        match a {
            IpAddr::V4(a) => self.v4.contains(u32::from(a)),
            IpAddr::V6(a) => self.v6.contains(u128::from(a)),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    pub(crate) fn is_full(&self) -> bool {
        self.v4.is_full() && self.v6.is_full()
    }

    pub(crate) fn union(&self, o: &Self) -> Self {
        Self {
            v4: self.v4.union(&o.v4),
            v6: self.v6.union(&o.v6),
        }
    }

    pub(crate) fn subtract(&self, o: &Self) -> Self {
        Self {
            v4: self.v4.subtract(&o.v4),
            v6: self.v6.subtract(&o.v6),
        }
    }

    pub(crate) fn is_subset(&self, o: &Self) -> bool {
        self.v4.is_subset(&o.v4) && self.v6.is_subset(&o.v6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(v: &[&str]) -> Vec<IpNetwork> {
        v.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn prefixes_become_ranges() {
        let s = IpSet::from_prefixes(&nets(&["10.0.0.0/8", "10.1.0.0/16", "0.0.0.0/32"]));
        assert_eq!(s.v4.ranges, vec![(0, 0), (0x0a00_0000, 0x0aff_ffff)]);
        let all = IpSet::from_prefixes(&nets(&["0.0.0.0/0", "::/0"]));
        assert!(all.is_full());
        let one = IpSet::from_prefixes(&nets(&["2001:db8::1/128"]));
        assert!(one.contains("2001:db8::1".parse().unwrap()));
        assert!(!one.contains("2001:db8::2".parse().unwrap()));
    }

    #[test]
    fn except_subtracts() {
        let s = IpSet::from_cidr_except(&nets(&["10.0.0.0/8"]), &nets(&["10.1.0.0/16"]));
        assert!(s.contains("10.0.255.255".parse().unwrap()));
        assert!(!s.contains("10.1.2.3".parse().unwrap()));
        assert!(s.contains("10.2.0.0".parse().unwrap()));
        assert!(!s.contains("11.0.0.0".parse().unwrap()));
        assert!(s.v6.is_empty());
        // No cidr: everything but the exception.
        let w = IpSet::from_cidr_except(&[], &nets(&["192.168.0.0/16"]));
        assert!(w.contains("8.8.8.8".parse().unwrap()));
        assert!(w.contains("::1".parse().unwrap()));
        assert!(!w.contains("192.168.1.1".parse().unwrap()));
    }

    #[test]
    fn range_set_algebra() {
        let a = RangeSet::<u16>::from_ranges(vec![(10, 20), (21, 30), (50, 60), (5, 1)]);
        assert_eq!(a.ranges, vec![(10, 30), (50, 60)]);
        let c = a.complement();
        assert_eq!(c.ranges, vec![(0, 9), (31, 49), (61, u16::MAX)]);
        assert_eq!(c.complement(), a);
        let b = RangeSet::from_ranges(vec![(25, 55)]);
        assert_eq!(a.intersect(&b).ranges, vec![(25, 30), (50, 55)]);
        assert_eq!(a.subtract(&b).ranges, vec![(10, 24), (56, 60)]);
        assert!(RangeSet::from_ranges(vec![(12, 13)]).is_subset(&a));
        assert!(!b.is_subset(&a));
        assert!(RangeSet::<u16>::full().complement().is_empty());
        assert!(RangeSet::<u16>::from_ranges(vec![(0, 65535)]).is_full());
    }
}
