//! Anti-replay sliding window (RFC 6479 style bitmap).
//!
//! Two-phase use: [`ReplayWindow::check`] before the AEAD open (cheap, no state change), and
//! [`ReplayWindow::commit`] only after the packet authenticated. A forged packet with a far-future
//! counter therefore can never move the window.
//!
//! The bitmap is `WORDS` 64-bit words (8256 bits). Like RFC 6479, one word is kept as slack so the
//! window can advance a word at a time: every counter in `(max - WINDOW, max]` is tracked exactly,
//! where `WINDOW = 8256 - 64 = 8192` (WireGuard's is 8128).

/// 64-bit words in the bitmap.
const WORDS: usize = 129;
const BITS: u64 = (WORDS as u64) * 64;
/// Number of most-recent counters for which duplicates are detected exactly.
pub const WINDOW: u64 = BITS - 64;

/// Why a counter was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplayError {
    /// Counter already received.
    Duplicate,
    /// Counter older than the window.
    TooOld,
}

/// The receive-side replay window of one session.
#[derive(Clone)]
pub struct ReplayWindow {
    /// Highest counter committed so far + 1 (0 = nothing received yet).
    next: u64,
    bitmap: [u64; WORDS],
}

impl Default for ReplayWindow {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for ReplayWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayWindow")
            .field("next", &self.next)
            .finish()
    }
}

impl ReplayWindow {
    /// An empty window.
    pub const fn new() -> Self {
        Self {
            next: 0,
            bitmap: [0; WORDS],
        }
    }

    /// Highest committed counter, if any.
    pub fn max(&self) -> Option<u64> {
        self.next.checked_sub(1)
    }

    #[inline]
    fn locate(counter: u64) -> (usize, u64) {
        let word = ((counter / 64) % WORDS as u64) as usize;
        (word, 1u64 << (counter % 64))
    }

    /// Would `counter` be accepted? Does not change state.
    #[inline]
    pub fn check(&self, counter: u64) -> Result<(), ReplayError> {
        if counter >= self.next {
            return Ok(());
        }
        if self.next - counter > WINDOW {
            return Err(ReplayError::TooOld);
        }
        let (word, bit) = Self::locate(counter);
        if self.bitmap[word] & bit != 0 {
            Err(ReplayError::Duplicate)
        } else {
            Ok(())
        }
    }

    /// Record `counter` as received. Call only after the packet authenticated and `check` passed.
    /// Returns `true` if the window advanced (the counter is the newest seen so far).
    #[inline]
    pub fn commit(&mut self, counter: u64) -> bool {
        if self.check(counter).is_err() {
            return false;
        }
        let advanced = counter >= self.next;
        if advanced {
            // Clear the words between the old top and the new one.
            let old_top_word = self.next.saturating_sub(1) / 64;
            let new_top_word = counter / 64;
            let gap = new_top_word.saturating_sub(old_top_word);
            if self.next == 0 || gap >= WORDS as u64 {
                self.bitmap = [0; WORDS];
            } else {
                for w in 1..=gap {
                    let idx = ((old_top_word + w) % WORDS as u64) as usize;
                    self.bitmap[idx] = 0;
                }
            }
            self.next = counter.saturating_add(1);
        }
        let (word, bit) = Self::locate(counter);
        self.bitmap[word] |= bit;
        advanced
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[test]
    fn accepts_in_order_and_rejects_duplicates() {
        let mut w = ReplayWindow::new();
        for c in 0..20_000u64 {
            assert_eq!(w.check(c), Ok(()));
            assert!(w.commit(c));
            assert_eq!(w.check(c), Err(ReplayError::Duplicate));
        }
    }

    #[test]
    fn out_of_order_within_window() {
        let mut w = ReplayWindow::new();
        w.commit(WINDOW + 100);
        for c in 101..WINDOW + 100 {
            assert_eq!(w.check(c), Ok(()), "counter {c}");
        }
        assert_eq!(w.check(100), Err(ReplayError::TooOld));
        assert!(!w.commit(50));
        w.commit(5000);
        assert_eq!(w.check(5000), Err(ReplayError::Duplicate));
    }

    #[test]
    fn far_future_counter_is_only_a_check() {
        let w = ReplayWindow::new();
        assert_eq!(w.check(u64::MAX - 1), Ok(()));
        assert_eq!(w.max(), None);
    }

    #[test]
    fn huge_jump_clears_everything() {
        let mut w = ReplayWindow::new();
        for c in 0..100 {
            w.commit(c);
        }
        w.commit(1_000_000);
        assert_eq!(w.check(99), Err(ReplayError::TooOld));
        assert_eq!(w.check(1_000_000 - 1), Ok(()));
    }

    /// Naive model: a set of received counters and the max; anything more than WINDOW below the max
    /// is too old.
    fn model_check(set: &BTreeSet<u64>, counter: u64) -> Result<(), ReplayError> {
        match set.iter().next_back() {
            None => Ok(()),
            Some(&max) if counter > max => Ok(()),
            Some(&max) if max + 1 - counter > WINDOW => Err(ReplayError::TooOld),
            Some(_) if set.contains(&counter) => Err(ReplayError::Duplicate),
            Some(_) => Ok(()),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn agrees_with_set_model(
            start in 0u64..1_000_000,
            steps in proptest::collection::vec((-9000i64..9000, any::<bool>()), 1..400),
        ) {
            let mut w = ReplayWindow::new();
            let mut model = BTreeSet::new();
            let mut cur = start as i64;
            for (delta, do_commit) in steps {
                cur = (cur + delta).max(0);
                let c = cur as u64;
                let expected = model_check(&model, c);
                prop_assert_eq!(w.check(c), expected, "counter {}", c);
                if do_commit && expected.is_ok() {
                    w.commit(c);
                    model.insert(c);
                }
            }
        }

        #[test]
        fn agrees_with_set_model_dense(
            steps in proptest::collection::vec(0u64..20_000, 1..3000),
        ) {
            let mut w = ReplayWindow::new();
            let mut model = BTreeSet::new();
            for c in steps {
                let expected = model_check(&model, c);
                prop_assert_eq!(w.check(c), expected, "counter {}", c);
                if expected.is_ok() {
                    w.commit(c);
                    model.insert(c);
                }
            }
        }
    }
}
