//! TAI64N timestamps for handshake-initiation replay protection.
//!
//! A 12-byte big-endian label: 8 bytes of seconds since 1970 TAI (offset `2^62 + 10`) and 4 bytes of
//! nanoseconds. As in WireGuard, the nanoseconds are rounded down (to a multiple of 2^24 ns ≈ 16.8 ms)
//! so the label does not leak a fine-grained clock.

use std::time::Duration;

/// Encoded length.
pub const LEN: usize = 12;
const TAI_OFFSET: u64 = (1u64 << 62) + 10;
const NANO_MASK: u32 = !0x00FF_FFFF;

/// A TAI64N timestamp. Ordered lexicographically, which equals time order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Tai64N([u8; LEN]);

impl Tai64N {
    /// The timestamp for `unix` (time since the Unix epoch).
    pub fn from_unix(unix: Duration) -> Self {
        let secs = TAI_OFFSET.saturating_add(unix.as_secs());
        let nanos = unix.subsec_nanos() & NANO_MASK;
        let mut b = [0u8; LEN];
        b[..8].copy_from_slice(&secs.to_be_bytes());
        b[8..].copy_from_slice(&nanos.to_be_bytes());
        Self(b)
    }

    /// Parse 12 bytes (any value is a valid label; absurd ones simply compare as far future or past).
    pub fn from_bytes(b: [u8; LEN]) -> Self {
        Self(b)
    }

    /// The encoded bytes.
    pub fn to_bytes(self) -> [u8; LEN] {
        self.0
    }

    /// `self` if it is later than `prev`, else the label one step (2^24 ns, the rounding unit)
    /// after `prev`: labels handed out in this order never go backwards, whatever the clock does.
    pub fn after(self, prev: Tai64N) -> Tai64N {
        if self > prev {
            return self;
        }
        let mut s = [0u8; 8];
        s.copy_from_slice(&prev.0[..8]);
        let mut n = [0u8; 4];
        n.copy_from_slice(&prev.0[8..]);
        let (mut secs, mut nanos) = (u64::from_be_bytes(s), u32::from_be_bytes(n));
        nanos = nanos.saturating_add(!NANO_MASK + 1);
        if nanos >= 1_000_000_000 {
            nanos = 0;
            secs = secs.saturating_add(1);
        }
        let mut b = [0u8; LEN];
        b[..8].copy_from_slice(&secs.to_be_bytes());
        b[8..].copy_from_slice(&nanos.to_be_bytes());
        Self(b)
    }

    /// Time since the Unix epoch, saturating at zero for labels before 1970.
    pub fn to_unix(self) -> Duration {
        let mut s = [0u8; 8];
        s.copy_from_slice(&self.0[..8]);
        let mut n = [0u8; 4];
        n.copy_from_slice(&self.0[8..]);
        let secs = u64::from_be_bytes(s).saturating_sub(TAI_OFFSET);
        let nanos = u32::from_be_bytes(n).min(999_999_999);
        Duration::new(secs, nanos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordering_follows_time_and_rounds_nanos() {
        let a = Tai64N::from_unix(Duration::new(1_700_000_000, 5));
        let b = Tai64N::from_unix(Duration::new(1_700_000_000, 10));
        assert_eq!(a, b, "sub-16ms differences are rounded away");
        let c = Tai64N::from_unix(Duration::new(1_700_000_001, 0));
        assert!(c > a);
        assert_eq!(c.to_unix(), Duration::new(1_700_000_001, 0));
        assert!(Tai64N::from_bytes([0xff; 12]) > c);
    }

    #[test]
    fn after_never_goes_backwards() {
        let t = Tai64N::from_unix(Duration::new(1_700_000_000, 990_000_000));
        let earlier = Tai64N::from_unix(Duration::new(1_699_996_400, 0));
        let next = earlier.after(t);
        assert!(next > t);
        assert!(next.to_unix() - t.to_unix() <= Duration::from_millis(17));
        let later = Tai64N::from_unix(Duration::new(1_700_000_100, 0));
        assert_eq!(later.after(t), later);
        // a carry into the next second
        let last = Tai64N::from_unix(Duration::new(5, 999_000_000));
        assert_eq!(last.after(last).to_unix(), Duration::new(6, 0));
    }
}
