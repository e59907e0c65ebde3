//! The node's tables: peers by [`PeerId`] (a slab with generations) and by static key, and the
//! receiver indices of every session and handshake in progress.
//!
//! Invariants:
//! - A [`PeerId`] names one peer for its whole life: removing a peer bumps its slot's generation,
//!   so a stale id held by the caller addresses nothing, not the slot's next occupant.
//! - `by_static` holds exactly the static keys of the peers in the slab.
//! - [`IndexMap`] holds exactly the local indices of every live session and pending initiation,
//!   each mapped to its peer. Indices leave it only through [`IndexMap::retire`], which takes the
//!   `#[must_use]` [`Retired`] list that every session replacement returns, so a displaced
//!   session cannot keep its index by oversight. `Node::check_invariants` (tests) verifies it.

use std::collections::HashMap;
use std::fmt;

use rand_chacha::ChaCha20Rng;
use rand_core::RngCore;

use crate::crypto::PublicKey;

/// Identifies a peer within one [`Node`](crate::Node). Opaque: only the node hands them out, and
/// an id of a removed peer never matches a later one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId {
    slot: u32,
    generation: u32,
}

impl PeerId {
    /// An id for unit tests of code that only keys by peer.
    #[cfg(test)]
    pub(crate) fn for_test(slot: u32) -> Self {
        Self {
            slot,
            generation: 0,
        }
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}.{}", self.slot, self.generation)
    }
}

struct Slot<P> {
    generation: u32,
    peer: Option<P>,
}

/// Peers by id and by static key.
pub(crate) struct PeerTable<P> {
    slots: Vec<Slot<P>>,
    free: Vec<u32>,
    by_static: HashMap<PublicKey, PeerId>,
}

impl<P> Default for PeerTable<P> {
    fn default() -> Self {
        Self {
            slots: Vec::new(),
            free: Vec::new(),
            by_static: HashMap::new(),
        }
    }
}

impl<P> PeerTable<P> {
    /// Number of peers.
    pub(crate) fn len(&self) -> usize {
        self.by_static.len()
    }

    /// Insert a peer with static key `key`; `None` if the key is present already or the table
    /// cannot grow.
    pub(crate) fn insert(&mut self, key: PublicKey, peer: P) -> Option<PeerId> {
        if self.by_static.contains_key(&key) {
            return None;
        }
        let id = match self.free.pop() {
            Some(slot) => {
                let s = self.slots.get_mut(slot as usize)?;
                s.peer = Some(peer);
                PeerId {
                    slot,
                    generation: s.generation,
                }
            }
            None => {
                let slot = u32::try_from(self.slots.len()).ok()?;
                self.slots.push(Slot {
                    generation: 0,
                    peer: Some(peer),
                });
                PeerId {
                    slot,
                    generation: 0,
                }
            }
        };
        self.by_static.insert(key, id);
        Some(id)
    }

    /// Remove the peer `id` (with static key `key`); its slot's generation moves on.
    pub(crate) fn remove(&mut self, id: PeerId, key: &PublicKey) -> Option<P> {
        let s = self.slots.get_mut(id.slot as usize)?;
        if s.generation != id.generation {
            return None;
        }
        let peer = s.peer.take()?;
        s.generation = s.generation.wrapping_add(1);
        self.free.push(id.slot);
        if self.by_static.get(key) == Some(&id) {
            self.by_static.remove(key);
        }
        Some(peer)
    }

    #[inline]
    pub(crate) fn get(&self, id: PeerId) -> Option<&P> {
        let s = self.slots.get(id.slot as usize)?;
        (s.generation == id.generation)
            .then_some(s.peer.as_ref())
            .flatten()
    }

    #[inline]
    pub(crate) fn get_mut(&mut self, id: PeerId) -> Option<&mut P> {
        let s = self.slots.get_mut(id.slot as usize)?;
        if s.generation == id.generation {
            s.peer.as_mut()
        } else {
            None
        }
    }

    /// The peer holding static key `key`.
    pub(crate) fn by_key(&self, key: &PublicKey) -> Option<PeerId> {
        self.by_static.get(key).copied()
    }

    /// Every peer, in slot order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (PeerId, &P)> + '_ {
        self.slots.iter().enumerate().filter_map(|(i, s)| {
            let p = s.peer.as_ref()?;
            Some((
                PeerId {
                    slot: u32::try_from(i).ok()?,
                    generation: s.generation,
                },
                p,
            ))
        })
    }
}

/// Local indices that a session change displaced; hand them to [`IndexMap::retire`].
#[must_use = "a displaced session's index must be retired from the index map"]
#[derive(Debug, Default)]
pub(crate) struct Retired {
    indices: [Option<u32>; 4],
}

impl Retired {
    /// Nothing displaced.
    pub(crate) const NONE: Self = Self { indices: [None; 4] };

    /// One index.
    pub(crate) fn one(index: Option<u32>) -> Self {
        let mut r = Self::NONE;
        r.indices[0] = index;
        r
    }

    /// Add `index` to the list.
    pub(crate) fn with(mut self, index: Option<u32>) -> Self {
        if let Some(i) = index {
            if let Some(slot) = self.indices.iter_mut().find(|s| s.is_none()) {
                *slot = Some(i);
            }
        }
        self
    }

    /// Both lists.
    pub(crate) fn and(mut self, other: Self) -> Self {
        for i in other.indices {
            self = self.with(i);
        }
        self
    }

    /// Whether nothing was displaced.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.indices.iter().all(Option::is_none)
    }
}

/// Receiver index → peer, for every live session and pending initiation.
#[derive(Debug, Default)]
pub(crate) struct IndexMap {
    map: HashMap<u32, PeerId>,
}

impl IndexMap {
    /// A fresh random non-zero index for `peer`.
    pub(crate) fn allocate(&mut self, rng: &mut ChaCha20Rng, peer: PeerId) -> u32 {
        loop {
            let i = rng.next_u32();
            if i != 0 && !self.map.contains_key(&i) {
                self.map.insert(i, peer);
                return i;
            }
        }
    }

    /// Give back the indices of displaced sessions.
    pub(crate) fn retire(&mut self, retired: Retired) {
        for i in retired.indices.into_iter().flatten() {
            self.map.remove(&i);
        }
    }

    #[inline]
    pub(crate) fn get(&self, index: u32) -> Option<PeerId> {
        self.map.get(&index).copied()
    }

    /// Number of live indices.
    #[cfg(any(test, feature = "test-util"))]
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Every (index, peer) pair (for invariant checks).
    #[cfg(any(test, feature = "test-util"))]
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, PeerId)> + '_ {
        self.map.iter().map(|(i, p)| (*i, *p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::SeedableRng;

    #[test]
    fn a_removed_peer_id_never_addresses_its_successor() {
        let mut t: PeerTable<&str> = PeerTable::default();
        let a = t.insert([1; 32], "a").unwrap();
        assert_eq!(t.insert([1; 32], "again"), None, "duplicate key refused");
        assert_eq!(t.remove(a, &[1; 32]), Some("a"));
        assert_eq!(t.by_key(&[1; 32]), None);
        let b = t.insert([2; 32], "b").unwrap();
        assert_ne!(a, b, "same slot, new generation");
        assert_eq!(t.get(a), None);
        assert_eq!(t.get(b), Some(&"b"));
        assert_eq!(t.remove(a, &[2; 32]), None, "stale id removes nothing");
        assert_eq!(t.by_key(&[2; 32]), Some(b));
        let a2 = t.insert([1; 32], "a2").unwrap();
        assert_eq!(t.len(), 2);
        let ids: Vec<PeerId> = t.iter().map(|(id, _)| id).collect();
        assert_eq!(ids, vec![b, a2]);
    }

    #[test]
    fn indices_are_unique_nonzero_and_retired_by_list() {
        let mut rng = ChaCha20Rng::from_seed([7; 32]);
        let mut t: PeerTable<()> = PeerTable::default();
        let p = t.insert([1; 32], ()).unwrap();
        let mut m = IndexMap::default();
        let a = m.allocate(&mut rng, p);
        let b = m.allocate(&mut rng, p);
        assert!(a != 0 && b != 0 && a != b);
        assert_eq!(m.get(a), Some(p));
        m.retire(Retired::one(Some(a)).with(None).and(Retired::NONE));
        assert_eq!(m.get(a), None);
        assert_eq!(m.len(), 1);
        assert!(Retired::NONE.is_empty());
    }
}
