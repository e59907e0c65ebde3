//! Memory of allowed first fragments, so the later fragments of the same datagram follow them.
//!
//! A fixed direct-mapped array (no allocation after construction): a first fragment that was
//! allowed is remembered under (source, destination, protocol, identification) for the fragment
//! timeout; a later fragment passes only if its datagram is remembered. A newer datagram that maps
//! to the same slot evicts the older one, whose later fragments are then dropped: fail closed, and
//! bounded whatever the peers send.

use super::table::hash;
use super::table::Key;

#[derive(Clone, Copy, Debug, Default)]
struct Slot {
    key: Key,
    ident: u32,
    /// Seconds since the tracker's origin; 0 = empty.
    expires: u32,
}

/// The remembered datagrams.
#[derive(Debug)]
pub(crate) struct Fragments {
    slots: Box<[Slot]>,
    mask: usize,
}

impl Fragments {
    /// `slots` rounded up to a power of two (at least 16).
    pub(crate) fn new(slots: usize) -> Self {
        let n = slots.clamp(16, 1 << 24).next_power_of_two();
        Self {
            slots: vec![Slot::default(); n].into_boxed_slice(),
            mask: n - 1,
        }
    }

    fn slot(&self, seed: &[u64; 4], key: &Key, ident: u32) -> usize {
        let k = Key {
            ports: ident,
            ..*key
        };
        hash(seed, &k) as usize & self.mask
    }

    /// Remember datagram (`key`, `ident`) until `expires` (> `now_s`). Returns whether an unexpired
    /// other datagram was evicted.
    pub(crate) fn remember(
        &mut self,
        seed: &[u64; 4],
        key: Key,
        ident: u32,
        now_s: u32,
        expires: u32,
    ) -> bool {
        let i = self.slot(seed, &key, ident);
        let Some(s) = self.slots.get_mut(i) else {
            return false;
        };
        let evicted = s.expires > now_s && !(s.key == key && s.ident == ident);
        *s = Slot {
            key,
            ident,
            expires: expires.max(1),
        };
        evicted
    }

    /// Whether datagram (`key`, `ident`) is remembered at `now_s`.
    pub(crate) fn contains(&self, seed: &[u64; 4], key: &Key, ident: u32, now_s: u32) -> bool {
        let i = self.slot(seed, key, ident);
        self.slots.get(i).is_some_and(|s| {
            s.expires >= now_s && s.expires != 0 && s.key == *key && s.ident == ident
        })
    }

    /// Bytes held.
    pub(crate) fn bytes(&self) -> usize {
        self.slots.len() * std::mem::size_of::<Slot>()
    }
}
