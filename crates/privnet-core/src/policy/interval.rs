//! An index from a point (a port, an address) to the entries whose range set contains it.
//!
//! The domain is cut into elementary intervals at every range boundary; each interval lists, in
//! increasing order, the entries that cover it (compressed sparse rows). A lookup is one binary
//! search and returns a slice. The total size is bounded by a budget: when the coverage of all
//! entries would exceed it, the entries covering the most intervals are left out and reported as
//! *residual* (the caller checks those one by one), so nested or overlapping ranges cannot blow the
//! index up quadratically.

use super::cidr::{Point, RangeSet};

/// Point → entries containing it.
#[derive(Clone, Debug)]
pub(crate) struct IntervalIndex<K: Point> {
    /// Start of each elementary interval, sorted; the first is `K::MIN` when not empty.
    starts: Vec<K>,
    /// `members[offsets[i]..offsets[i + 1]]` are the entries of interval `i`.
    offsets: Vec<u32>,
    members: Vec<u32>,
}

impl<K: Point> Default for IntervalIndex<K> {
    fn default() -> Self {
        Self {
            starts: Vec::new(),
            offsets: Vec::new(),
            members: Vec::new(),
        }
    }
}

impl<K: Point> IntervalIndex<K> {
    /// Index `items` (entry, its set), entries in increasing order. Returns the index and the
    /// entries left out to respect `budget` (the number of (interval, entry) pairs stored).
    pub(crate) fn build(items: &[(u32, &RangeSet<K>)], budget: usize) -> (Self, Vec<u32>) {
        if items.is_empty() {
            return (Self::default(), Vec::new());
        }
        let mut starts = vec![K::MIN];
        for (_, set) in items {
            for &(lo, hi) in &set.ranges {
                starts.push(lo);
                if let Some(n) = hi.succ() {
                    starts.push(n);
                }
            }
        }
        starts.sort_unstable();
        starts.dedup();
        let pos = |x: K| starts.partition_point(|&s| s < x);
        // Coverage of each item: the intervals its ranges span.
        let spans: Vec<Vec<(usize, usize)>> = items
            .iter()
            .map(|(_, set)| {
                set.ranges
                    .iter()
                    .map(|&(lo, hi)| (pos(lo), hi.succ().map_or(starts.len(), pos)))
                    .collect()
            })
            .collect();
        let coverage: Vec<usize> = spans
            .iter()
            .map(|s| s.iter().map(|(a, b)| b - a).sum())
            .collect();
        let mut total: usize = coverage.iter().sum();
        let mut residual = vec![false; items.len()];
        if total > budget {
            let mut order: Vec<usize> = (0..items.len()).collect();
            order.sort_unstable_by_key(|&i| std::cmp::Reverse(coverage[i]));
            for i in order {
                if total <= budget {
                    break;
                }
                residual[i] = true;
                total -= coverage[i];
            }
        }
        let n = starts.len();
        let mut counts = vec![0u32; n + 1];
        for (i, s) in spans.iter().enumerate() {
            if residual[i] {
                continue;
            }
            for &(a, b) in s {
                for c in &mut counts[a..b] {
                    *c += 1;
                }
            }
        }
        let mut offsets = Vec::with_capacity(n + 1);
        let mut acc = 0u32;
        for c in &counts[..n] {
            offsets.push(acc);
            acc += c;
        }
        offsets.push(acc);
        let mut fill: Vec<u32> = offsets[..n].to_vec();
        let mut members = vec![0u32; acc as usize];
        for (i, s) in spans.iter().enumerate() {
            if residual[i] {
                continue;
            }
            for &(a, b) in s {
                for slot in &mut fill[a..b] {
                    members[*slot as usize] = items[i].0;
                    *slot += 1;
                }
            }
        }
        let left_out = items
            .iter()
            .zip(&residual)
            .filter(|(_, r)| **r)
            .map(|((e, _), _)| *e)
            .collect();
        (
            Self {
                starts,
                offsets,
                members,
            },
            left_out,
        )
    }

    /// The entries (increasing) whose set contains `x`.
    #[inline]
    pub(crate) fn lookup(&self, x: K) -> &[u32] {
        let i = self.starts.partition_point(|&s| s <= x);
        if i == 0 {
            return &[];
        }
        match (self.offsets.get(i - 1), self.offsets.get(i)) {
            (Some(&a), Some(&b)) => self.members.get(a as usize..b as usize).unwrap_or(&[]),
            _ => &[],
        }
    }

    /// Bytes held.
    pub(crate) fn bytes(&self) -> usize {
        self.starts.len() * std::mem::size_of::<K>() + (self.offsets.len() + self.members.len()) * 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_lists_covering_entries_in_order() {
        let a = RangeSet::<u16>::from_ranges(vec![(80, 80), (443, 443)]);
        let b = RangeSet::<u16>::from_ranges(vec![(1, 1024)]);
        let c = RangeSet::<u16>::from_ranges(vec![(65000, 65535)]);
        let (idx, left) = IntervalIndex::build(&[(0, &a), (3, &b), (7, &c)], 1000);
        assert!(left.is_empty());
        assert_eq!(idx.lookup(0), &[] as &[u32]);
        assert_eq!(idx.lookup(80), &[0, 3]);
        assert_eq!(idx.lookup(81), &[3]);
        assert_eq!(idx.lookup(443), &[0, 3]);
        assert_eq!(idx.lookup(1025), &[] as &[u32]);
        assert_eq!(idx.lookup(65535), &[7]);
    }

    #[test]
    fn budget_leaves_out_the_widest() {
        // Nested ranges: entry i covers [i, 100 - i].
        let sets: Vec<RangeSet<u16>> = (0..50u16)
            .map(|i| RangeSet::from_ranges(vec![(i, 100 - i)]))
            .collect();
        let items: Vec<(u32, &RangeSet<u16>)> = sets
            .iter()
            .enumerate()
            .map(|(i, s)| (i as u32, s))
            .collect();
        let (idx, left) = IntervalIndex::build(&items, 200);
        assert!(!left.is_empty());
        assert!(left.contains(&0), "the widest goes first: {left:?}");
        assert!(idx.members.len() <= 200);
        // What is indexed is still exact.
        for x in 0..=110u16 {
            let got = idx.lookup(x);
            for (i, s) in sets.iter().enumerate() {
                let i = i as u32;
                if !left.contains(&i) {
                    assert_eq!(got.contains(&i), s.contains(x), "x={x} i={i}");
                }
            }
        }
    }
}
