//! A fixed-size dense bit set over entry indices (one bit per rule entry of a tier).

/// Dense bits; the length is fixed at construction.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub(crate) struct Bitset {
    pub(crate) words: Box<[u64]>,
    /// Whether any bit was set (so a packet can tell an empty set without scanning it).
    pub(crate) nonempty: bool,
}

impl Bitset {
    /// `n` bits, all clear.
    pub(crate) fn new(n: usize) -> Self {
        Self {
            words: vec![0; n.div_ceil(64)].into_boxed_slice(),
            nonempty: false,
        }
    }

    /// Set bit `i` (ignored when out of range).
    pub(crate) fn set(&mut self, i: usize) {
        if let Some(w) = self.words.get_mut(i / 64) {
            *w |= 1 << (i % 64);
            self.nonempty = true;
        }
    }

    /// Bit `i` (false when out of range).
    #[inline]
    pub(crate) fn get(&self, i: usize) -> bool {
        self.words
            .get(i / 64)
            .is_some_and(|w| w >> (i % 64) & 1 != 0)
    }

    /// The set bits, in order.
    pub(crate) fn ones(&self) -> Vec<u32> {
        let mut out = Vec::new();
        for (i, &w) in self.words.iter().enumerate() {
            let mut w = w;
            while w != 0 {
                out.push(i as u32 * 64 + w.trailing_zeros());
                w &= w - 1;
            }
        }
        out
    }

    /// Bytes held.
    pub(crate) fn bytes(&self) -> usize {
        self.words.len() * 8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_within_range_only() {
        let mut b = Bitset::new(130);
        assert_eq!(b.words.len(), 3);
        b.set(0);
        b.set(129);
        b.set(5000); // out of range: ignored
        assert_eq!(&*b.words, &[1, 0, 2]);
        assert!(b.nonempty && b.get(129) && !b.get(1) && !b.get(5000));
        assert_eq!(b.ones(), [0, 129]);
        assert_eq!(b.bytes(), 24);
    }
}
