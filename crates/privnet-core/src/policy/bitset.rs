//! A fixed-size dense bit set over entry indices (one bit per rule entry of a tier).

/// Dense bits; the length is fixed at construction.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub(crate) struct Bitset {
    pub(crate) words: Box<[u64]>,
}

impl Bitset {
    /// `n` bits, all clear.
    pub(crate) fn new(n: usize) -> Self {
        Self {
            words: vec![0; n.div_ceil(64)].into_boxed_slice(),
        }
    }

    /// Set bit `i` (ignored when out of range).
    pub(crate) fn set(&mut self, i: usize) {
        if let Some(w) = self.words.get_mut(i / 64) {
            *w |= 1 << (i % 64);
        }
    }

    /// Clear bit `i`.
    pub(crate) fn clear(&mut self, i: usize) {
        if let Some(w) = self.words.get_mut(i / 64) {
            *w &= !(1 << (i % 64));
        }
    }

    /// Bit `i` (false when out of range).
    pub(crate) fn get(&self, i: usize) -> bool {
        self.words
            .get(i / 64)
            .is_some_and(|w| w >> (i % 64) & 1 != 0)
    }

    /// Bitwise OR with `o` (same length).
    pub(crate) fn or_with(&mut self, o: &Self) {
        for (a, b) in self.words.iter_mut().zip(o.words.iter()) {
            *a |= *b;
        }
    }

    /// Number of set bits.
    pub(crate) fn count(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
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
    fn set_get_clear() {
        let mut b = Bitset::new(130);
        assert_eq!(b.words.len(), 3);
        b.set(0);
        b.set(129);
        b.set(5000); // out of range: ignored
        assert!(b.get(0) && b.get(129) && !b.get(64) && !b.get(5000));
        assert_eq!(b.count(), 2);
        b.clear(0);
        assert!(!b.get(0));
        let mut c = Bitset::new(130);
        c.set(64);
        c.or_with(&b);
        assert_eq!(c.count(), 2);
    }
}
