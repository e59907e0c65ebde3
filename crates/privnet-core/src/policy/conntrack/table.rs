//! The flow table: a slab of fixed 64-byte entries and an open-addressing index over them.
//!
//! Invariants:
//! - the slab never grows past the capacity reserved at construction (no allocation after it);
//! - the index has at least twice as many slots as the slab (load <= 0.5), linear probing, and no
//!   entry sits more than [`MAX_PROBE`] slots from its home: an insert that would go further is
//!   refused, and deletion shifts entries back (never further from home), so a lookup stops after
//!   at most `MAX_PROBE` slots even when a peer crafts colliding keys;
//! - the hash is keyed with a seed from the caller (the node's seeded RNG), so collisions cannot be
//!   computed offline.

/// Longest probe sequence, in slots.
pub(crate) const MAX_PROBE: usize = 64;
/// "No entry" in links.
pub(crate) const NONE: u32 = u32::MAX;

/// Flags byte: the key's `a` end is the initiator.
pub(crate) const F_ORIG_IS_A: u8 = 1;
/// A packet was seen in the reply direction.
pub(crate) const F_ASSURED: u8 = 2;
/// TCP: the first FIN came from the responder.
pub(crate) const F_FIN_BY_REPLY: u8 = 4;
/// The caller's 3-bit tag lives in bits 3-5.
pub(crate) const TAG_SHIFT: u8 = 3;

/// The canonical key of a flow: the two ends ordered so both directions share it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) struct Key {
    pub(crate) a: [u64; 2],
    pub(crate) b: [u64; 2],
    /// `a`'s port << 16 | `b`'s port (for an ICMP echo, the identifier twice).
    pub(crate) ports: u32,
    pub(crate) proto: u8,
    pub(crate) v6: bool,
}

/// One tracked flow: exactly 64 bytes (one cache line).
#[derive(Clone, Copy, Debug, Default)]
#[repr(C, align(64))]
pub(crate) struct Entry {
    pub(crate) a: [u64; 2],
    pub(crate) b: [u64; 2],
    pub(crate) ports: u32,
    pub(crate) proto: u8,
    pub(crate) v6: bool,
    /// 0: free slot; see `conntrack.rs` for the codes.
    pub(crate) state: u8,
    pub(crate) flags: u8,
    /// Seconds since the tracker's origin after which the entry is dead.
    pub(crate) expires: u32,
    pub(crate) epoch: u32,
    pub(crate) rule: u32,
    pub(crate) peer: u32,
    /// Links in the peer's list (or the free list, through `next`).
    pub(crate) prev: u32,
    pub(crate) next: u32,
}

const _: () = assert!(std::mem::size_of::<Entry>() == 64);

impl Entry {
    pub(crate) fn key(&self) -> Key {
        Key {
            a: self.a,
            b: self.b,
            ports: self.ports,
            proto: self.proto,
            v6: self.v6,
        }
    }

    #[inline]
    pub(crate) fn has_key(&self, k: &Key) -> bool {
        self.a == k.a
            && self.b == k.b
            && self.ports == k.ports
            && self.proto == k.proto
            && self.v6 == k.v6
    }

    pub(crate) fn is_live(&self) -> bool {
        self.state != 0
    }
}

#[inline]
fn fold(a: u64, b: u64) -> u64 {
    let p = u128::from(a).wrapping_mul(u128::from(b));
    (p as u64) ^ ((p >> 64) as u64)
}

/// Keyed hash of a key (folded multiplies, then a final avalanche so that the low bits used
/// for the home slot depend on every input bit; the seed is secret).
#[inline]
pub(crate) fn hash(seed: &[u64; 4], k: &Key) -> u64 {
    let x = fold(k.a[0] ^ seed[0], k.a[1] ^ seed[1]);
    let y = fold(k.b[0] ^ seed[2], k.b[1] ^ seed[3]);
    let z = u64::from(k.ports) | u64::from(k.proto) << 32 | u64::from(k.v6) << 40;
    let h = fold(
        x ^ z ^ seed[1],
        y ^ seed[2].rotate_left(17) ^ 0x9e37_79b9_7f4a_7c15,
    );
    let h = (h ^ (h >> 31)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^ (h >> 29)
}

/// Hash keys from 32 seed bytes: each word is put through splitmix64 (with its position), so
/// that even a weak seed (all bytes equal) gives four unrelated keys.
pub(crate) fn keys(seed: &[u8; 32]) -> [u64; 4] {
    let mut out = [0u64; 4];
    for (i, w) in out.iter_mut().enumerate() {
        let mut b = [0u8; 8];
        b.copy_from_slice(&seed[i * 8..i * 8 + 8]);
        let mut z =
            u64::from_le_bytes(b).wrapping_add((i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        *w = z ^ (z >> 31);
    }
    out
}

/// Why an insert failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Full {
    /// Every slab slot is in use.
    Slab,
    /// The probe sequence is too long (collisions).
    Probe,
}

/// Slab + index.
#[derive(Debug)]
pub(crate) struct Table {
    pub(crate) seed: [u64; 4],
    /// `(hash as u32) << 32 | (entry + 1)`, 0 = empty. The low half of the hash gives the home
    /// slot (so deletion needs no rehash) and serves as a tag against needless key compares.
    index: Box<[u64]>,
    mask: usize,
    pub(crate) entries: Vec<Entry>,
    capacity: usize,
    free: u32,
    pub(crate) live: usize,
}

impl Table {
    pub(crate) fn new(capacity: usize, seed: [u64; 4]) -> Self {
        let capacity = capacity.clamp(1, (u32::MAX / 4) as usize);
        let slots = (capacity * 2).next_power_of_two().max(MAX_PROBE);
        Self {
            seed,
            index: vec![0u64; slots].into_boxed_slice(),
            mask: slots - 1,
            entries: Vec::with_capacity(capacity),
            capacity,
            free: NONE,
            live: 0,
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    pub(crate) fn is_full(&self) -> bool {
        self.live >= self.capacity
    }

    /// The entry holding `k`.
    #[inline]
    pub(crate) fn find(&self, k: &Key) -> Option<u32> {
        self.find_tagged(k).map(|(i, _)| i)
    }

    /// The entry holding `k` and its tag (the low half of its hash).
    #[inline]
    pub(crate) fn find_tagged(&self, k: &Key) -> Option<(u32, u32)> {
        self.find_hashed(k, hash(&self.seed, k))
    }

    /// [`Table::find_tagged`] with the key's hash already computed.
    #[inline]
    pub(crate) fn find_hashed(&self, k: &Key, h: u64) -> Option<(u32, u32)> {
        let tag = u64::from(h as u32);
        let mut slot = h as usize & self.mask;
        for _ in 0..MAX_PROBE {
            let s = *self.index.get(slot)?;
            if s == 0 {
                return None;
            }
            if s >> 32 == tag {
                let i = (s as u32).wrapping_sub(1);
                if self.entries.get(i as usize).is_some_and(|e| e.has_key(k)) {
                    return Some((i, tag as u32));
                }
            }
            slot = (slot + 1) & self.mask;
        }
        None
    }

    /// Store `e` (whose key is not in the table) and index it.
    #[cfg(test)]
    pub(crate) fn insert(&mut self, e: Entry) -> Result<u32, Full> {
        let h = hash(&self.seed, &e.key());
        self.insert_hashed(e, h)
    }

    /// [`Table::insert`] with the key's hash `h` already computed.
    pub(crate) fn insert_hashed(&mut self, e: Entry, h: u64) -> Result<u32, Full> {
        if self.is_full() {
            return Err(Full::Slab);
        }
        let mut slot = h as usize & self.mask;
        let mut found = None;
        for _ in 0..MAX_PROBE {
            if self.index.get(slot) == Some(&0) {
                found = Some(slot);
                break;
            }
            slot = (slot + 1) & self.mask;
        }
        let slot = found.ok_or(Full::Probe)?;
        let i = if self.free != NONE {
            let i = self.free;
            let Some(dst) = self.entries.get_mut(i as usize) else {
                return Err(Full::Slab);
            };
            self.free = dst.next;
            *dst = e;
            i
        } else {
            if self.entries.len() >= self.capacity {
                return Err(Full::Slab);
            }
            self.entries.push(e);
            (self.entries.len() - 1) as u32
        };
        if let Some(s) = self.index.get_mut(slot) {
            *s = u64::from(h as u32) << 32 | u64::from(i + 1);
        }
        self.live += 1;
        Ok(i)
    }

    /// Unindex and free entry `i` (no-op if it is not live).
    pub(crate) fn remove(&mut self, i: u32) {
        let Some(e) = self.entries.get(i as usize).copied() else {
            return;
        };
        if !e.is_live() {
            return;
        }
        let h = hash(&self.seed, &e.key());
        let mut slot = h as usize & self.mask;
        let mut hole = None;
        for _ in 0..MAX_PROBE {
            match self.index.get(slot) {
                Some(&s) if s != 0 && (s as u32).wrapping_sub(1) == i => {
                    hole = Some(slot);
                    break;
                }
                Some(&0) | None => break,
                _ => {}
            }
            slot = (slot + 1) & self.mask;
        }
        if let Some(mut hole) = hole {
            // Backward-shift deletion: pull later members of the cluster into the hole when
            // their home is at or before it.
            let mut j = (hole + 1) & self.mask;
            loop {
                let s = self.index[j];
                if s == 0 {
                    break;
                }
                let home = (s >> 32) as usize & self.mask;
                // Distance from home to j and from home to the hole, cyclically.
                let dj = j.wrapping_sub(home) & self.mask;
                let dh = hole.wrapping_sub(home) & self.mask;
                if dh < dj {
                    self.index[hole] = s;
                    hole = j;
                }
                j = (j + 1) & self.mask;
                if j == hole {
                    break;
                }
            }
            self.index[hole] = 0;
        }
        if let Some(x) = self.entries.get_mut(i as usize) {
            *x = Entry {
                next: self.free,
                ..Entry::default()
            };
        }
        self.free = i;
        self.live = self.live.saturating_sub(1);
    }

    /// Bytes reserved (slab capacity and index).
    pub(crate) fn bytes(&self) -> usize {
        self.capacity * std::mem::size_of::<Entry>() + self.index.len() * 8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u64) -> Key {
        Key {
            a: [i, 0],
            b: [0, i.wrapping_mul(7)],
            ports: i as u32,
            proto: 6,
            v6: false,
        }
    }

    fn entry(k: Key) -> Entry {
        Entry {
            a: k.a,
            b: k.b,
            ports: k.ports,
            proto: k.proto,
            v6: k.v6,
            state: 1,
            ..Entry::default()
        }
    }

    #[test]
    fn insert_find_remove_against_a_model() {
        let mut t = Table::new(500, [1, 2, 3, 4]);
        let mut model = std::collections::HashMap::new();
        let mut x: u64 = 1;
        for step in 0..20_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let k = key(x % 800);
            match (model.get(&(x % 800)), x % 3) {
                (None, _) => {
                    if let Ok(i) = t.insert(entry(k)) {
                        model.insert(x % 800, i);
                    } else {
                        assert!(t.is_full(), "step {step}");
                    }
                }
                (Some(&i), 0) => {
                    t.remove(i);
                    model.remove(&(x % 800));
                }
                (Some(&i), _) => assert_eq!(t.find(&k), Some(i)),
            }
            assert_eq!(t.live, model.len());
        }
        for (k, i) in &model {
            assert_eq!(t.find(&key(*k)), Some(*i));
        }
        assert!(t.entries.len() <= 500);
    }

    #[test]
    fn colliding_keys_are_refused_not_probed_forever() {
        // Keys that all share home slot 0 (found by brute force, as an attacker who knew the seed
        // would): MAX_PROBE of them fit, the rest are refused, lookups stay bounded.
        let mut t = Table::new(16_384, [5, 6, 7, 8]);
        let mask = t.mask;
        let mut colliding = Vec::new();
        let mut i = 0u64;
        while colliding.len() < MAX_PROBE + 20 && i < 50_000_000 {
            let k = key(i);
            if hash(&t.seed, &k) as usize & mask == 0 {
                colliding.push(k);
            }
            i += 1;
        }
        assert_eq!(colliding.len(), MAX_PROBE + 20);
        let mut ok = Vec::new();
        for k in &colliding {
            match t.insert(entry(*k)) {
                Ok(i) => ok.push(i),
                Err(e) => assert_eq!(e, Full::Probe),
            }
        }
        assert_eq!(ok.len(), MAX_PROBE);
        assert_eq!(t.find(&colliding[MAX_PROBE + 5]), None);
        // Removing one makes room for exactly one more, and every survivor is still found.
        t.remove(ok[3]);
        assert!(t.insert(entry(colliding[MAX_PROBE])).is_ok());
        assert!(t.insert(entry(colliding[MAX_PROBE + 1])).is_err());
        for (n, k) in colliding.iter().enumerate().take(MAX_PROBE + 1) {
            if n != 3 {
                assert!(t.find(k).is_some(), "{n}");
            }
        }
    }

    #[test]
    fn structured_keys_stay_near_home_even_with_a_weak_seed() {
        // 1 M flows from 20 addresses with sequential ports, the seed all ones: every entry
        // within 40 slots of its home (the bound is 64).
        let mut t = Table::new(1_000_000, keys(&[1; 32]));
        let mut worst = 0;
        for i in 0..1_000_000u32 {
            let a = 0xffff_0a10_0000u64 + u64::from(i / 50_000);
            let k = Key {
                a: [0, a],
                b: [0, 0xffff_0a00_0002],
                ports: ((i % 50_000 + 1) << 16) | 443,
                proto: 6,
                v6: false,
            };
            let home = hash(&t.seed, &k) as usize & t.mask;
            let idx = t.insert(entry(k)).expect("room");
            let mut d = 0;
            while d < MAX_PROBE && (t.index[(home + d) & t.mask] as u32).wrapping_sub(1) != idx {
                d += 1;
            }
            worst = worst.max(d);
        }
        assert!(worst < 40, "worst displacement {worst}");
    }
}
