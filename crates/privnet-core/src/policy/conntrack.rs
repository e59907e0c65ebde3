//! Connection tracking: replies to an allowed flow pass without a policy lookup.
//!
//! - **Keys**: (addresses, ports, protocol) with the two ends ordered, so both directions find the
//!   same entry; an ICMP echo is keyed on its identifier; other protocols without ports on the
//!   address pair. The `unknown` class and ICMP messages other than echoes are never tracked.
//! - **States**: TCP follows `tcp.rs` (Linux's states and timeouts); UDP is *unreplied* (30 s) until
//!   a reply is seen, then *assured* (120 s); ICMP echo 30 s; other protocols 600 s. Every packet
//!   refreshes the timeout of the state it leaves the flow in. Resolution is 1 s: an entry lives at
//!   least its timeout and at most one second more.
//! - **Bounds**: at most `max_flows` in total and `max_flows_per_peer` per peer; at most
//!   `new_flows_per_sec` new flows per peer (token bucket with `new_flow_burst`). A new flow over a
//!   bound is refused and counted; existing flows are never evicted to make room. All memory is
//!   reserved at construction (64-byte entries + an index of at least twice as many 8-byte slots),
//!   so the hot path (a packet of a tracked flow) allocates nothing.
//! - **Time** is an input: expired entries are dropped when a lookup meets them and by a bounded
//!   sweep from [`Conntrack::handle_timeout`], due at [`Conntrack::poll_timeout`]. No clock inside.
//!
//! The tracker knows nothing about policies: an entry carries an opaque `epoch`, the `rule` that
//! allowed it and a 3-bit `tag`, which the filter uses to re-check flows after a reload.

mod frag;
mod key;
mod table;
mod tcp;
mod types;

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

use super::flow::{Flow, Icmp, Protocol};
use frag::Fragments;
use key::{addr_of, frag_key, key_of, quoted_key};
use table::{Entry, Table, F_ASSURED, F_FIN_BY_REPLY, F_ORIG_IS_A, NONE, TAG_SHIFT};
pub use tcp::{Side, TcpState, TcpTimeouts};
pub use types::{
    ConntrackConfig, ConntrackStats, FlowId, FlowMeta, FlowState, Hit, Refused, TrackedFlow,
};

const ST_UDP: u8 = 16;
const ST_ICMP: u8 = 17;
const ST_OTHER: u8 = 18;

#[derive(Clone, Debug)]
struct PeerSlot<P> {
    key: P,
    flows: u32,
    head: u32,
    /// Milli-flows.
    tokens: u64,
    last_ms: u64,
    last_reclaim_s: u32,
    epoch: u32,
}

/// The connection tracker, generic over the caller's peer handle `P`.
#[derive(Debug)]
pub struct Conntrack<P> {
    cfg: ConntrackConfig,
    origin: Instant,
    table: Table,
    frags: Fragments,
    peers: Vec<Option<PeerSlot<P>>>,
    peer_ids: HashMap<P, u32>,
    free_peers: Vec<u32>,
    sweep_cursor: usize,
    next_sweep_ms: u64,
    stats: ConntrackStats,
    /// Seconds per state code, [unassured, assured].
    timeouts: [[u32; 2]; 19],
    last_now: Option<Instant>,
    last_secs: u32,
}

impl<P: Copy + Eq + Hash> Conntrack<P> {
    /// A tracker whose time starts at `origin`, with `seed` keying its hash (take it from the
    /// node's seeded RNG: it must be secret for the collision bound to mean anything).
    pub fn new(cfg: ConntrackConfig, origin: Instant, seed: [u8; 32]) -> Self {
        let s = table::keys(&seed);
        let mut timeouts = [[0u32; 2]; 19];
        for (code, t) in timeouts.iter_mut().enumerate() {
            for (assured, slot) in t.iter_mut().enumerate() {
                let e = Entry {
                    state: code as u8,
                    flags: if assured == 1 { F_ASSURED } else { 0 },
                    ..Entry::default()
                };
                *slot = u32::try_from(Self::timeout_of(&cfg, &e).as_secs()).unwrap_or(u32::MAX);
            }
        }
        Self {
            table: Table::new(cfg.max_flows, s),
            frags: Fragments::new(cfg.fragment_slots),
            cfg,
            origin,
            peers: Vec::new(),
            peer_ids: HashMap::new(),
            free_peers: Vec::new(),
            sweep_cursor: 0,
            next_sweep_ms: 0,
            stats: ConntrackStats::default(),
            timeouts,
            last_now: None,
            last_secs: 0,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ConntrackConfig {
        &self.cfg
    }

    fn secs(&self, now: Instant) -> u32 {
        u32::try_from(now.saturating_duration_since(self.origin).as_secs()).unwrap_or(u32::MAX)
    }

    /// [`Conntrack::secs`], remembering the last answer: a driver hands a whole batch of packets
    /// the same `now`, and `Instant` subtraction is not free.
    #[inline]
    fn secs_cached(&mut self, now: Instant) -> u32 {
        if self.last_now != Some(now) {
            self.last_now = Some(now);
            self.last_secs = self.secs(now);
        }
        self.last_secs
    }

    fn millis(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.origin).as_millis()).unwrap_or(u64::MAX)
    }

    fn timeout_of(cfg: &ConntrackConfig, e: &Entry) -> Duration {
        let assured = e.flags & F_ASSURED != 0;
        match e.state {
            ST_UDP if assured => cfg.udp_assured,
            ST_UDP => cfg.udp_unreplied,
            ST_ICMP => cfg.icmp,
            ST_OTHER => cfg.other,
            s => TcpState::from_code(s).map_or(cfg.other, |t| cfg.tcp.of(t, assured)),
        }
    }

    fn expiry(&self, now_s: u32, e: &Entry) -> u32 {
        now_s.saturating_add(self.timeout_secs(e.state, e.flags))
    }

    /// The timeout of a state, in seconds, from the table built at construction.
    #[inline]
    fn timeout_secs(&self, state: u8, flags: u8) -> u32 {
        let assured = usize::from(flags & F_ASSURED != 0);
        self.timeouts
            .get(usize::from(state))
            .map_or(0, |t| t[assured])
    }

    fn check_of(&self, e: &Entry) -> u32 {
        table::hash(&self.table.seed, &e.key()) as u32
    }

    fn entry(&self, id: FlowId) -> Option<&Entry> {
        self.table
            .entries
            .get(id.index as usize)
            .filter(|e| e.is_live() && self.check_of(e) == id.check)
    }

    /// Whether `flow` can be tracked at all.
    pub fn trackable(flow: &Flow) -> bool {
        let opens = if flow.proto == Protocol::TCP {
            tcp::initial(flow.tcp_flags).is_some()
        } else if flow.proto.is_icmp() {
            flow.icmp.is_some_and(|i| i.is_echo_request(flow.proto))
        } else {
            true
        };
        opens && key_of(flow).is_some()
    }

    /// The packet `flow` from `peer`'s side or to it, if it belongs to a tracked flow of `peer`:
    /// advances the flow's state, refreshes its timeout and says which way the packet goes. An
    /// expired entry met here is dropped. The hot path: no allocation, one hash, at most
    /// `MAX_PROBE` (64) index slots.
    pub fn lookup(&mut self, peer: &P, flow: &Flow, now: Instant) -> Option<Hit> {
        let (key, src_is_a) = key_of(flow)?;
        let (i, check) = self.table.find_tagged(&key)?;
        let now_s = self.secs_cached(now);
        let e = self.table.entries.get(i as usize)?;
        let (expires, state, flags) = (e.expires, e.state, e.flags);
        if now_s > expires {
            self.drop_entry(i);
            self.stats.expired += 1;
            return None;
        }
        let owner = self.peers.get(e.peer as usize)?.as_ref()?;
        if owner.key != *peer {
            return None;
        }
        let peer_epoch = owner.epoch;
        let side = if src_is_a == (flags & F_ORIG_IS_A != 0) {
            Side::Original
        } else {
            Side::Reply
        };
        let (mut state, mut flags) = (state, flags);
        if let Some(st) = TcpState::from_code(state) {
            let syn_only = flow.tcp_flags & 0x12 == 0x02;
            if side == Side::Reply && syn_only && matches!(st, TcpState::Close | TcpState::TimeWait)
            {
                // The old connection is over and the responder opens one the other way: a new
                // flow, for the policy to decide.
                self.drop_entry(i);
                self.stats.expired += 1;
                return None;
            }
            let mut fin = flags & F_FIN_BY_REPLY != 0;
            state = tcp::next(st, side, flow.tcp_flags, &mut fin) as u8;
            flags = if fin {
                flags | F_FIN_BY_REPLY
            } else {
                flags & !F_FIN_BY_REPLY
            };
        } else if state == ST_ICMP {
            let icmp = flow.icmp?;
            let ok = match side {
                Side::Original => icmp.is_echo_request(flow.proto),
                Side::Reply => icmp.is_echo_reply(flow.proto),
            };
            if !ok {
                return None;
            }
        }
        if side == Side::Reply {
            flags |= F_ASSURED;
        }
        let expires = now_s.saturating_add(self.timeout_secs(state, flags));
        let e = self.table.entries.get_mut(i as usize)?;
        e.state = state;
        e.flags = flags;
        e.expires = expires;
        Some(Hit {
            id: FlowId { index: i, check },
            side,
            epoch: e.epoch,
            rule: e.rule,
            tag: flags >> TAG_SHIFT & 7,
            peer_epoch,
        })
    }

    /// Store an epoch with `peer` (returned with every [`Hit`] of its flows, so the filter sees a
    /// peer's identity change without a lookup of its own). Creates the peer if needed.
    pub fn set_peer_epoch(&mut self, peer: P, epoch: u32, now: Instant) {
        let now_ms = self.millis(now);
        let p = self.peer_slot(peer, now_ms);
        if let Some(s) = self.peers.get_mut(p as usize).and_then(Option::as_mut) {
            s.epoch = epoch;
        }
    }

    /// The epoch stored with `peer`.
    pub fn peer_epoch(&self, peer: &P) -> Option<u32> {
        let p = *self.peer_ids.get(peer)?;
        self.peers.get(p as usize)?.as_ref().map(|s| s.epoch)
    }

    /// The tracked flow `flow` belongs to, without changing anything (for explanations).
    pub fn find(&self, flow: &Flow) -> Option<FlowId> {
        let (key, _) = key_of(flow)?;
        let (index, check) = self.table.find_tagged(&key)?;
        Some(FlowId { index, check })
    }

    /// Whether the ICMP error `flow` (with its quoted header) belongs to a tracked flow of `peer`
    /// and goes back to the sender of the quoted packet.
    pub fn related(&self, peer: &P, flow: &Flow, now: Instant) -> Option<FlowId> {
        let q = flow.icmp.and_then(|i: Icmp| i.quoted)?;
        if flow.dst != q.src {
            return None;
        }
        let (key, _) = quoted_key(&q)?;
        let i = self.table.find(&key)?;
        let e = self.table.entries.get(i as usize)?;
        let owner = self.peers.get(e.peer as usize)?.as_ref()?;
        (self.secs(now) <= e.expires && owner.key == *peer).then(|| FlowId {
            index: i,
            check: self.check_of(e),
        })
    }

    fn peer_slot(&mut self, peer: P, now_ms: u64) -> u32 {
        if let Some(&p) = self.peer_ids.get(&peer) {
            return p;
        }
        let slot = PeerSlot {
            key: peer,
            flows: 0,
            head: NONE,
            tokens: u64::from(self.cfg.new_flow_burst) * 1000,
            last_ms: now_ms,
            last_reclaim_s: 0,
            epoch: 0,
        };
        let p = match self.free_peers.pop() {
            Some(p) => {
                if let Some(s) = self.peers.get_mut(p as usize) {
                    *s = Some(slot);
                }
                p
            }
            None => {
                self.peers.push(Some(slot));
                (self.peers.len() - 1) as u32
            }
        };
        self.peer_ids.insert(peer, p);
        p
    }

    /// Track the new flow opened by `flow` for `peer`. Call it only for a packet the policy
    /// allowed and [`Conntrack::lookup`] did not find.
    ///
    /// # Errors
    /// [`Refused`]: the packet opens no flow, or a bound is reached (counted).
    pub fn insert(
        &mut self,
        peer: P,
        flow: &Flow,
        meta: FlowMeta,
        now: Instant,
    ) -> Result<FlowId, Refused> {
        let (key, src_is_a) = key_of(flow).ok_or(Refused::NotTrackable)?;
        let state = match flow.proto {
            Protocol::TCP => tcp::initial(flow.tcp_flags).ok_or(Refused::NotTrackable)? as u8,
            Protocol::UDP => ST_UDP,
            p if p.is_icmp() => {
                if !flow.icmp.is_some_and(|i| i.is_echo_request(p)) {
                    return Err(Refused::NotTrackable);
                }
                ST_ICMP
            }
            _ => ST_OTHER,
        };
        let now_s = self.secs(now);
        let now_ms = self.millis(now);
        let p = self.peer_slot(peer, now_ms);
        let h = table::hash(&self.table.seed, &key);
        if let Some((old, _)) = self.table.find_hashed(&key, h) {
            // Another peer's entry for the same addresses (an address moved) or a closed one.
            self.drop_entry(old);
            self.stats.removed += 1;
        }
        let (rate, burst) = (
            u64::from(self.cfg.new_flows_per_sec),
            u64::from(self.cfg.new_flow_burst) * 1000,
        );
        let quota = self.cfg.max_flows_per_peer;
        let Some(slot) = self.peers.get_mut(p as usize).and_then(Option::as_mut) else {
            return Err(Refused::TableFull);
        };
        let elapsed = now_ms.saturating_sub(slot.last_ms);
        slot.tokens = slot
            .tokens
            .saturating_add(elapsed.saturating_mul(rate))
            .min(burst);
        slot.last_ms = slot.last_ms.max(now_ms);
        if slot.tokens < 1000 {
            self.stats.refused_rate += 1;
            return Err(Refused::NewFlowRate);
        }
        if slot.flows as usize >= quota {
            let may_reclaim = slot.last_reclaim_s != now_s.max(1);
            if may_reclaim {
                slot.last_reclaim_s = now_s.max(1);
                self.reclaim_peer(p, now_s);
            }
            let flows = self
                .peers
                .get(p as usize)
                .and_then(Option::as_ref)
                .map_or(0, |s| s.flows);
            if flows as usize >= quota {
                self.stats.refused_peer_quota += 1;
                return Err(Refused::PeerQuota);
            }
        }
        if self.table.is_full() {
            self.sweep(now_s, 256);
            if self.table.is_full() {
                self.stats.refused_table_full += 1;
                return Err(Refused::TableFull);
            }
        }
        let head = self
            .peers
            .get(p as usize)
            .and_then(Option::as_ref)
            .map_or(NONE, |s| s.head);
        let mut e = Entry {
            a: key.a,
            b: key.b,
            ports: key.ports,
            proto: key.proto,
            v6: key.v6,
            state,
            flags: if src_is_a { F_ORIG_IS_A } else { 0 } | (meta.tag & 7) << TAG_SHIFT,
            expires: 0,
            epoch: meta.epoch,
            rule: meta.rule,
            peer: p,
            prev: NONE,
            next: head,
        };
        e.expires = self.expiry(now_s, &e);
        let check = h as u32;
        let was_empty = self.table.live == 0;
        let i = match self.table.insert_hashed(e, h) {
            Ok(i) => i,
            Err(_) => {
                self.stats.refused_table_full += 1;
                return Err(Refused::TableFull);
            }
        };
        if let Some(h) = self.table.entries.get_mut(head as usize) {
            h.prev = i;
        }
        if let Some(s) = self.peers.get_mut(p as usize).and_then(Option::as_mut) {
            s.head = i;
            s.flows += 1;
            s.tokens -= 1000;
        }
        self.stats.created += 1;
        self.stats.flows = self.table.live as u64;
        if was_empty {
            self.next_sweep_ms = now_ms.saturating_add(duration_ms(self.cfg.sweep_interval));
        }
        Ok(FlowId { index: i, check })
    }

    /// Unlink entry `i` from its peer and free it.
    fn drop_entry(&mut self, i: u32) {
        let Some(e) = self.table.entries.get(i as usize).copied() else {
            return;
        };
        if !e.is_live() {
            return;
        }
        if let Some(prev) = self.table.entries.get_mut(e.prev as usize) {
            prev.next = e.next;
        }
        if let Some(next) = self.table.entries.get_mut(e.next as usize) {
            next.prev = e.prev;
        }
        if let Some(s) = self.peers.get_mut(e.peer as usize).and_then(Option::as_mut) {
            if s.head == i {
                s.head = e.next;
            }
            s.flows = s.flows.saturating_sub(1);
        }
        self.table.remove(i);
        self.stats.flows = self.table.live as u64;
    }

    /// Drop the expired flows of peer slot `p` (its list is at most its quota long).
    fn reclaim_peer(&mut self, p: u32, now_s: u32) {
        let mut i = self
            .peers
            .get(p as usize)
            .and_then(Option::as_ref)
            .map_or(NONE, |s| s.head);
        let mut budget = self.cfg.max_flows_per_peer.saturating_add(1);
        while i != NONE && budget > 0 {
            budget -= 1;
            let Some(e) = self.table.entries.get(i as usize).copied() else {
                break;
            };
            if now_s > e.expires {
                self.drop_entry(i);
                self.stats.expired += 1;
            }
            i = e.next;
        }
    }

    /// Visit up to `budget` slab slots from the sweep cursor, dropping expired entries.
    fn sweep(&mut self, now_s: u32, budget: usize) {
        let n = self.table.entries.len();
        if n == 0 {
            return;
        }
        for _ in 0..budget.min(n) {
            self.sweep_cursor = (self.sweep_cursor + 1) % n;
            let i = self.sweep_cursor;
            if let Some(e) = self.table.entries.get(i) {
                if e.is_live() && now_s > e.expires {
                    self.drop_entry(i as u32);
                    self.stats.expired += 1;
                }
            }
        }
    }

    /// When [`Conntrack::handle_timeout`] wants to run (nothing while the table is empty).
    pub fn poll_timeout(&self) -> Option<Instant> {
        (self.table.live > 0).then(|| self.origin + Duration::from_millis(self.next_sweep_ms))
    }

    /// Run the expiry sweep if it is due (bounded: see [`ConntrackConfig::sweep_batch`]).
    pub fn handle_timeout(&mut self, now: Instant) {
        let now_ms = self.millis(now);
        if now_ms < self.next_sweep_ms {
            return;
        }
        let budget = self.cfg.sweep_batch.max(self.table.entries.len() / 10);
        self.sweep(self.secs(now), budget);
        self.next_sweep_ms = now_ms.saturating_add(duration_ms(self.cfg.sweep_interval).max(1));
    }

    /// Remember the allowed first fragment `flow` (identification `ident`) for its later
    /// fragments.
    pub fn remember_fragment(&mut self, flow: &Flow, ident: u32, now: Instant) {
        let key = frag_key(flow);
        let now_s = self.secs(now);
        let t = u32::try_from(self.cfg.fragment_timeout.as_secs()).unwrap_or(u32::MAX);
        self.stats.fragments_remembered += 1;
        if self
            .frags
            .remember(&self.table.seed, key, ident, now_s, now_s.saturating_add(t))
        {
            self.stats.fragments_evicted += 1;
        }
    }

    /// Whether the later fragment `flow` belongs to a datagram whose first fragment was allowed.
    pub fn fragment_follows(&self, flow: &Flow, ident: u32, now: Instant) -> bool {
        self.frags
            .contains(&self.table.seed, &frag_key(flow), ident, self.secs(now))
    }

    /// A tracked flow.
    pub fn get(&self, id: FlowId, now: Instant) -> Option<TrackedFlow<P>> {
        let e = self.entry(id)?;
        let peer = self.peers.get(e.peer as usize)?.as_ref()?.key;
        let (ea, eb) = (addr_of(e.a, e.v6), addr_of(e.b, e.v6));
        let (pa, pb) = ((e.ports >> 16) as u16, e.ports as u16);
        let ((src, sp), (dst, dp)) = if e.flags & F_ORIG_IS_A != 0 {
            ((ea, pa), (eb, pb))
        } else {
            ((eb, pb), (ea, pa))
        };
        let proto = Protocol::Number(e.proto);
        let mut flow = Flow::other(src, dst, proto);
        let state = match e.state {
            ST_UDP => FlowState::Udp,
            ST_ICMP => FlowState::IcmpEcho,
            ST_OTHER => FlowState::Other,
            s => FlowState::Tcp(TcpState::from_code(s)?),
        };
        if proto.has_ports() {
            flow.src_port = Some(sp);
            flow.dst_port = Some(dp);
            if proto == Protocol::TCP {
                flow.tcp_flags = 0x02;
            }
        } else if proto.is_icmp() {
            flow.icmp = Some(Icmp {
                ty: if proto == Protocol::ICMP { 8 } else { 128 },
                code: 0,
                ident: Some(sp),
                quoted: None,
            });
        }
        let left = u64::from(e.expires.saturating_sub(self.secs(now)));
        Some(TrackedFlow {
            id,
            peer,
            flow,
            state,
            assured: e.flags & F_ASSURED != 0,
            epoch: e.epoch,
            rule: e.rule,
            tag: e.flags >> TAG_SHIFT & 7,
            expires_in: Duration::from_secs(left),
        })
    }

    /// Store a new epoch and rule with a flow (after a re-check kept it). False if it is gone.
    pub fn update(&mut self, id: FlowId, epoch: u32, rule: u32) -> bool {
        if self.entry(id).is_none() {
            return false;
        }
        match self.table.entries.get_mut(id.index as usize) {
            Some(e) => {
                e.epoch = epoch;
                e.rule = rule;
                true
            }
            None => false,
        }
    }

    /// Remove a flow (counted as removed). False if it was already gone.
    pub fn remove(&mut self, id: FlowId) -> bool {
        if self.entry(id).is_none() {
            return false;
        }
        self.drop_entry(id.index);
        self.stats.removed += 1;
        true
    }

    /// Remove every flow of `peer` and forget it (its session is gone). Returns how many.
    pub fn remove_peer(&mut self, peer: &P) -> usize {
        let Some(p) = self.peer_ids.remove(peer) else {
            return 0;
        };
        let mut n = 0;
        let mut guard = self.table.capacity() + 1;
        loop {
            let head = self
                .peers
                .get(p as usize)
                .and_then(Option::as_ref)
                .map_or(NONE, |s| s.head);
            if head == NONE || guard == 0 {
                break;
            }
            guard -= 1;
            self.drop_entry(head);
            self.stats.removed += 1;
            n += 1;
        }
        if let Some(s) = self.peers.get_mut(p as usize) {
            *s = None;
        }
        self.free_peers.push(p);
        n
    }

    /// The flows of `peer` (allocates; for re-checks and status, not the data path).
    pub fn peer_flows(&self, peer: &P) -> Vec<FlowId> {
        let Some(&p) = self.peer_ids.get(peer) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut i = self
            .peers
            .get(p as usize)
            .and_then(Option::as_ref)
            .map_or(NONE, |s| s.head);
        while let Some(e) = self.table.entries.get(i as usize) {
            if out.len() > self.cfg.max_flows_per_peer || !e.is_live() {
                break;
            }
            out.push(FlowId {
                index: i,
                check: self.check_of(e),
            });
            i = e.next;
        }
        out
    }

    /// Number of flows of `peer`.
    pub fn peer_flow_count(&self, peer: &P) -> usize {
        self.peer_ids
            .get(peer)
            .and_then(|&p| self.peers.get(p as usize))
            .and_then(Option::as_ref)
            .map_or(0, |s| s.flows as usize)
    }

    /// The first live flow at slab position `from` or after, and the position to continue from
    /// (a cursor over every flow that allocates nothing).
    pub fn next_flow(&self, from: usize) -> Option<(FlowId, usize)> {
        let rest = self.table.entries.get(from..)?;
        let off = rest.iter().position(Entry::is_live)?;
        let i = from + off;
        let e = self.table.entries.get(i)?;
        Some((
            FlowId {
                index: i as u32,
                check: self.check_of(e),
            },
            i + 1,
        ))
    }

    /// Flows tracked now.
    pub fn len(&self) -> usize {
        self.table.live
    }

    /// Whether no flow is tracked.
    pub fn is_empty(&self) -> bool {
        self.table.live == 0
    }

    /// Counters.
    pub fn stats(&self) -> ConntrackStats {
        self.stats
    }

    /// Bytes reserved: the flow slab and index (fixed at construction), the fragment memory and the
    /// peer table.
    pub fn memory_bytes(&self) -> usize {
        self.table.bytes()
            + self.frags.bytes()
            + self.peers.capacity() * std::mem::size_of::<Option<PeerSlot<P>>>()
            + self.peer_ids.capacity() * (std::mem::size_of::<P>() + 8)
    }

    /// Bytes per flow at full capacity (slab + index).
    pub fn bytes_per_flow(&self) -> usize {
        self.table.bytes() / self.table.capacity().max(1)
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
