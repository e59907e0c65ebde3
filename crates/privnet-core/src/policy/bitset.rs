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
        assert_eq!(b.bytes(), 24);
    }
}
