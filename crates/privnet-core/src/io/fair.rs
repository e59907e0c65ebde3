//! Per-peer fairness at the receive stage: the decision logic, pure (no clock, no I/O, no
//! allocation per packet once a peer has a slot).
//!
//! ## Where the shared queue is
//! The driver runs to completion: a datagram read from the underlay socket is decrypted, checked
//! and written to the inner side before the next is read, so the decrypt, inner-write and (for
//! answers) send stages hold no queue of their own. The one queue every sender shares is the
//! kernel's receive buffer of the underlay socket. When one member sends faster than this member
//! can decrypt, that buffer stays full: every other member's packets wait behind the flood (their
//! latency becomes the buffer's drain time) and are tail-dropped by the kernel in proportion to
//! arrivals, the flood's included. The only way to shorten that queue is to drain it faster than
//! it fills, and the cheap way is to drop the heaviest senders' excess **before** decryption: the
//! peer of a data message is known from its receiver index (a hash lookup), while opening it costs
//! an AEAD pass and an inner write, one to two orders of magnitude more.
//!
//! ## The rule: water-level shares of an adaptive per-batch budget
//! The driver reads in batches (at most `BATCH` receive calls, each up to a GRO train). A batch is
//! *overloaded* when it ends with the socket still readable, or when it found at least
//! [`BACKLOG`] datagrams waiting: that many had queued in front of the socket while the driver was
//! busy with the previous batch (a standing queue of about 360 KB of full-size datagrams, 1.5 ms at
//! 2 Gbit/s, which every other member's packets wait behind). With GRO one receive call can bring 64
//! datagrams, so the first condition alone would see overload only after thousands of them. While
//! batches are overloaded and at least two peers send, the gate polices:
//!
//! * Each batch may admit about `budget` bytes. The budget adapts like AIMD: the first full batch
//!   sets it to half of what that batch read, every further full batch takes a quarter off (never
//!   below `min_share` per active peer), every batch that runs dry but still had to drop adds an
//!   eighth back (up to [`MAX_BUDGET`]); policing ends with the first batch that runs dry without
//!   a drop (the budget no longer binds), or when fewer than two peers send. So the admitted work
//!   settles just below what this member can process and the socket keeps running dry, which is
//!   what bounds the other members' latency; the hysteresis keeps a flood from refilling the
//!   socket every other batch.
//! * The budget is split max-min fairly over the peers' demands of the previous batch (water
//!   filling): `level` solves Σ min(demandᵢ, level) = budget. Every peer may then take up to
//!   `max(level, min_share)` bytes in the batch, a peer seen for the first time too. A light peer
//!   (a ping, an interactive session, a TCP flow that is growing) is below the level and loses
//!   nothing; the heaviest lose what is above it.
//! * Within a batch a datagram passes while its peer's deficit covers it (DRR's test): two
//!   backlogged peers' admitted bytes differ by less than one datagram, every peer gets at least
//!   `min(demand, min_share − datagram)` per batch (no starvation), whatever the others send.
//!
//! With one sender only, or with the gate off, or when batches run dry, everything passes: the
//! gate is work-conserving and costs one hash lookup per datagram. Datagrams that are not data
//! messages of a known peer (handshakes, cookies, junk) bypass it: handshakes have their own
//! limiter, junk is cheap to refuse. The table holds at most [`MAX_SLOTS`] peers (then the rest
//! share one overflow slot), and idle peers leave it.
//!
//! ## Priority classes
//! A packet of a flow the policy allows with `priority = "high"` (health checks, control
//! traffic; docs/POLICY.md) passes a policed batch even when its peer's deficit is spent, up to
//! [`PRIORITY_SHARE`] bytes per peer and batch, and without spending the deficit; beyond that it
//! is ordinary traffic again. The bound keeps the class from being a way around fairness: a peer
//! that marks everything gets at most `PRIORITY_SHARE` more than its fair share per batch. At the
//! send stage the class is the local policy's verdict; at the receive stage, which runs before
//! decryption, it is the sender's hint in the data message's flags byte (`wire::priority_hint`),
//! which the node checks against its own policy after decryption (`Stats::priority_unconfirmed`).
//!
//! ## The send stage
//! The same gate, a second instance keyed by the destination peer, sits between the inner side's
//! read and the encryption (`seal.rs`): at a gateway or any member that many local senders share,
//! the shared queue is the TUN device's (or the channel's) read queue, and a batch of inner reads
//! that did not run dry or found [`BACKLOG`] units waiting is overloaded. The heaviest destinations'
//! excess is then dropped before it costs an encryption and a send, and the other destinations'
//! packets stop waiting behind it. The inner write (after decryption) and the underlay send (after
//! encryption) have no queue of their own in front of them: they run in the order the gates
//! admitted.
//!
//! This is deficit round robin without its per-peer queues: the driver has no queue to reorder
//! (the kernel's FIFO is the queue), so a round is a batch and the quantum is the water level.

use std::collections::HashMap;
use std::hash::Hash;

/// Most peers with a slot of their own; more share [`Key::Overflow`].
pub const MAX_SLOTS: usize = 1024;
/// Highest per-batch budget (bytes).
pub const MAX_BUDGET: u64 = 64 << 20;
/// Default least share of a batch every peer gets while policing (bytes).
pub const MIN_SHARE: u64 = 64 * 1024;
/// A batch that found this many datagrams waiting is overloaded (see the module docs).
pub const BACKLOG: usize = 256;
/// Bytes of high-priority packets a peer may pass per policed batch beyond its deficit.
pub const PRIORITY_SHARE: u64 = 16 * 1024;
/// Batches without a datagram after which a peer's slot is freed.
const IDLE_BATCHES: u32 = 256;

/// The slot key: a peer, or the shared overflow slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Key<K> {
    /// A peer with its own slot.
    Peer(K),
    /// Every peer beyond [`MAX_SLOTS`].
    Overflow,
}

#[derive(Clone, Copy, Debug, Default)]
struct Slot {
    /// Bytes that arrived in this batch (admitted or not).
    demand: u64,
    /// ... in the previous batch.
    last_demand: u64,
    /// Bytes it may still take in this batch (while policing).
    deficit: u64,
    /// Bytes of high-priority packets it may still take beyond the deficit in this batch.
    priority_left: u64,
    /// Consecutive batches without a datagram.
    idle: u32,
}

/// Per-peer drop counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FairDrops {
    /// Datagrams dropped before decryption.
    pub packets: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// The gate. `K` identifies a peer.
#[derive(Debug)]
pub struct FairGate<K> {
    enabled: bool,
    min_share: u64,
    budget: u64,
    /// Policing in this batch (the previous one was full with two or more peers).
    policing: bool,
    /// The level of this batch.
    level: u64,
    slots: HashMap<Key<K>, Slot>,
    /// Scratch for the water filling (capacity `MAX_SLOTS + 1`, never grows).
    scratch: Vec<u64>,
    /// Bytes that arrived in this batch.
    batch_bytes: u64,
    /// Whether this batch dropped anything.
    batch_dropped: bool,
    /// Drops per peer, kept when its slot is freed (at most `MAX_SLOTS` peers, then
    /// [`Key::Overflow`]); [`FairGate::forget`] removes a peer's.
    dropped: HashMap<Key<K>, FairDrops>,
    /// Drops of peers forgotten.
    forgotten: FairDrops,
    /// Batches that were policed.
    policed_batches: u64,
    /// High-priority packets admitted beyond their peer's deficit while policing.
    priority_admitted: u64,
}

impl<K: Copy + Eq + Hash> FairGate<K> {
    /// A gate (`enabled: false` admits everything and keeps no state), with the default least
    /// share.
    pub fn new(enabled: bool) -> Self {
        Self::with_min_share(enabled, MIN_SHARE)
    }

    /// A gate with another least share per peer and batch.
    pub fn with_min_share(enabled: bool, min_share: u64) -> Self {
        Self {
            enabled,
            min_share: min_share.max(1),
            budget: MAX_BUDGET,
            policing: false,
            level: u64::MAX,
            slots: HashMap::with_capacity(if enabled { MAX_SLOTS + 1 } else { 0 }),
            scratch: Vec::with_capacity(if enabled { MAX_SLOTS + 1 } else { 0 }),
            batch_bytes: 0,
            batch_dropped: false,
            dropped: HashMap::with_capacity(if enabled { MAX_SLOTS + 1 } else { 0 }),
            forgotten: FairDrops::default(),
            policed_batches: 0,
            priority_admitted: 0,
        }
    }

    /// Whether the gate is on.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Whether the current batch is policed.
    pub fn policing(&self) -> bool {
        self.policing
    }

    /// Bytes each peer may take in the current batch while policing.
    pub fn level(&self) -> u64 {
        self.level
    }

    /// The current budget (bytes per policed batch).
    pub fn budget(&self) -> u64 {
        self.budget
    }

    /// Peers with a slot.
    pub fn slots(&self) -> usize {
        self.slots.len()
    }

    /// Batches policed so far.
    pub fn policed_batches(&self) -> u64 {
        self.policed_batches
    }

    /// High-priority packets that passed a policed batch beyond their peer's deficit, ever.
    pub fn priority_admitted(&self) -> u64 {
        self.priority_admitted
    }

    /// Whether a datagram of `len` bytes for `peer` is decrypted (`true`) or dropped now
    /// (`false`, counted for the peer); `high`: it belongs to a high-priority flow (see the
    /// module docs).
    #[inline]
    pub fn admit(&mut self, peer: K, len: usize, high: bool) -> bool {
        if !self.enabled {
            return true;
        }
        let len = len as u64;
        self.batch_bytes = self.batch_bytes.saturating_add(len);
        let key = if self.slots.contains_key(&Key::Peer(peer)) || self.slots.len() < MAX_SLOTS {
            Key::Peer(peer)
        } else {
            Key::Overflow
        };
        let fresh = self.level.max(self.min_share);
        let slot = self.slots.entry(key).or_insert(Slot {
            deficit: fresh,
            priority_left: PRIORITY_SHARE,
            ..Slot::default()
        });
        slot.demand = slot.demand.saturating_add(len);
        if !self.policing || slot.deficit >= len {
            slot.deficit = slot.deficit.saturating_sub(len);
            return true;
        }
        if high && slot.priority_left >= len {
            slot.priority_left -= len;
            self.priority_admitted += 1;
            return true;
        }
        let key = if self.dropped.contains_key(&key) || self.dropped.len() < MAX_SLOTS {
            key
        } else {
            Key::Overflow
        };
        self.batch_dropped = true;
        let d = self.dropped.entry(key).or_default();
        d.packets += 1;
        d.bytes += len;
        false
    }

    /// End a batch: `overloaded` when the socket was still readable after it or it read at least
    /// [`BACKLOG`] datagrams. Sets up the next batch.
    pub fn end_batch(&mut self, overloaded: bool) {
        let full = overloaded;
        if !self.enabled {
            return;
        }
        // The batch that ends was policed.
        self.policed_batches += u64::from(self.policing);
        let active = self.slots.values().filter(|s| s.demand > 0).count() as u64;
        let floor = self.min_share.saturating_mul(active.max(1)).min(MAX_BUDGET);
        if active < 2 {
            // One sender (or none): nobody to be fair to.
            self.policing = false;
        } else if full {
            self.budget = if self.policing {
                self.budget - self.budget / 4
            } else {
                (self.batch_bytes / 2).min(self.budget)
            }
            .clamp(floor, MAX_BUDGET);
            self.policing = true;
        } else if self.policing && self.batch_dropped {
            // Caught up, but only by dropping: stay, with a larger budget (the additive increase).
            self.budget = self
                .budget
                .saturating_add(self.budget / 8 + self.min_share)
                .min(MAX_BUDGET);
        } else {
            // Caught up without dropping anything: the budget no longer binds.
            self.policing = false;
        }
        self.batch_dropped = false;
        // Roll the demands, free idle slots.
        self.slots.retain(|_, s| {
            s.last_demand = s.demand;
            s.idle = if s.demand == 0 { s.idle + 1 } else { 0 };
            s.demand = 0;
            s.idle < IDLE_BATCHES
        });
        self.level = if self.policing {
            self.scratch.clear();
            self.scratch
                .extend(self.slots.values().map(|s| s.last_demand));
            water_level(&mut self.scratch, self.budget)
        } else {
            u64::MAX
        };
        let quantum = self.level.max(self.min_share);
        for s in self.slots.values_mut() {
            s.deficit = quantum;
            s.priority_left = PRIORITY_SHARE;
        }
        self.batch_bytes = 0;
    }

    /// What was dropped for `peer` (the overflow slot's drops are not included).
    pub fn drops(&self, peer: K) -> FairDrops {
        self.dropped
            .get(&Key::Peer(peer))
            .copied()
            .unwrap_or_default()
    }

    /// Every peer's drops (`None`: the peers beyond [`MAX_SLOTS`], together).
    pub fn all_drops(&self) -> impl Iterator<Item = (Option<K>, FairDrops)> + '_ {
        self.dropped.iter().map(|(k, d)| {
            let k = match k {
                Key::Peer(p) => Some(*p),
                Key::Overflow => None,
            };
            (k, *d)
        })
    }

    /// Forget a removed peer's slot and drop counters (its drops stay in [`Self::total_drops`]).
    pub fn forget(&mut self, peer: K) {
        self.slots.remove(&Key::Peer(peer));
        if let Some(d) = self.dropped.remove(&Key::Peer(peer)) {
            self.forgotten.packets += d.packets;
            self.forgotten.bytes += d.bytes;
        }
    }

    /// Drops over all peers, ever.
    pub fn total_drops(&self) -> FairDrops {
        let mut t = self.forgotten;
        for d in self.dropped.values() {
            t.packets += d.packets;
            t.bytes += d.bytes;
        }
        t
    }
}

/// The max-min fair level: the `level` with Σ min(dᵢ, level) = `budget` (`u64::MAX` if the
/// demands fit the budget). Sorts `demands`.
pub fn water_level(demands: &mut [u64], budget: u64) -> u64 {
    demands.sort_unstable();
    let mut left = budget;
    let mut n = demands.len() as u64;
    for &d in demands.iter() {
        if d.saturating_mul(n) <= left {
            left -= d;
            n -= 1;
        } else {
            return left / n;
        }
    }
    u64::MAX
}

#[cfg(test)]
#[path = "fair/tests.rs"]
mod tests;
