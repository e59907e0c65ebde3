//! Gateway selection and failover (docs/POLICY.md, "Routing policies").
//!
//! The policy's `[[route]]` entries that apply to this member name, per prefix, the gateways in
//! priority order. The candidates of an entry are the router's owners of a prefix containing the
//! entry's prefix — exactly the granted claims once a peer's certificate is verified, so a
//! gateway whose certificate does not grant the prefix never attracts its traffic — ordered by
//! their position in `via` (verified members not listed are not candidates; peers not verified
//! yet follow the listed ones, so the first handshake can happen). The active gateway is the
//! first candidate that is up; with none up, the first candidate (traffic keeps trying it). A
//! packet uses an entry when the entry is the longest one containing its destination and at
//! least as specific as the router's match (a member's own address inside a routed prefix stays
//! the member's).
//!
//! Health, from the peer's traffic (`peer/liveness.rs`): a gateway owes us an answer from the
//! first data packet or initiation we send it after we last heard from it. After
//! [`GATEWAY_PROBE_AFTER`] without one we send a handshake initiation as a probe (a live gateway
//! answers within a round trip, even when the flows through it are one-way); after
//! [`GATEWAY_DOWN_AFTER`] it is **down** and the entry fails over to the next candidate that is
//! up. So traffic moves within `GATEWAY_DOWN_AFTER + GATEWAY_TICK` (3.25 s) of the first
//! unanswered packet, plus one handshake round trip if the next gateway had no session. A down
//! gateway is probed every [`GATEWAY_PROBE_INTERVAL`]; when it answers it is **recovering**, and
//! after [`GATEWAY_FAILBACK_AFTER`] of answered probes it is up again and takes its entries back
//! (fail-back with a hold-down: a gateway that flaps moves traffic at most once per
//! `GATEWAY_FAILBACK_AFTER`). Every change is an [`Event::GatewayChanged`] and counted.
//!
//! An idle candidate (a standby nothing is sent to) would owe nothing and stay "up" however dead
//! it is, so a failover could land on a dead gateway and wait out another `GATEWAY_DOWN_AFTER`.
//! A candidate not heard from for [`GATEWAY_IDLE_PROBE_AFTER`] is therefore probed too (one
//! handshake per interval per idle standby): unanswered, it is down before it is needed, and the
//! entry skips it; answered, it also holds a fresh session for the failover.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use ipnetwork::IpNetwork;

use super::{Node, PeerId};
use crate::error::EncapsulateError;
use crate::event::{Event, GatewayChange};
use crate::policy::routes::RouteEntry;
use crate::policy::{CompiledPolicy, MemberRef};

/// Unanswered this long, a gateway is sent a probe (a handshake initiation).
pub const GATEWAY_PROBE_AFTER: Duration = Duration::from_secs(1);
/// Unanswered this long, a gateway is down and its entries fail over.
pub const GATEWAY_DOWN_AFTER: Duration = Duration::from_secs(3);
/// A candidate not heard from this long (an idle standby) is sent a probe.
pub const GATEWAY_IDLE_PROBE_AFTER: Duration = Duration::from_secs(15);
/// A down or recovering gateway is probed this often.
pub const GATEWAY_PROBE_INTERVAL: Duration = Duration::from_secs(2);
/// A gateway that answers again is used again after answering this long (the fail-back hold).
pub const GATEWAY_FAILBACK_AFTER: Duration = Duration::from_secs(10);
/// How often the health of gateways is evaluated while the policy has routing entries.
pub const GATEWAY_TICK: Duration = Duration::from_millis(250);

/// A gateway's health as the selection sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GatewayHealth {
    /// Answering (or not asked yet).
    Up,
    /// Stopped answering at `since`.
    Down {
        /// When it was declared down.
        since: Instant,
    },
    /// Answering again since `since`; up after [`GATEWAY_FAILBACK_AFTER`].
    Recovering {
        /// When it answered again.
        since: Instant,
    },
}

impl GatewayHealth {
    /// `up`, `down`, `recovering`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Up => "up",
            Self::Down { .. } => "down",
            Self::Recovering { .. } => "recovering",
        }
    }
}

/// One candidate of a routing entry, for status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayCandidate {
    /// The peer.
    pub peer: PeerId,
    /// Its verified name (`None` before its first handshake).
    pub name: Option<String>,
    /// Its position in the entry's `via` (`None`: not verified yet).
    pub rank: Option<usize>,
    /// Its health.
    pub health: GatewayHealth,
}

/// One routing entry in force, for status and metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayRoute {
    /// The entry's id.
    pub id: String,
    /// Its prefix.
    pub prefix: IpNetwork,
    /// Its gateways, in priority order (names from the policy).
    pub via: Vec<String>,
    /// The peers that may serve it, in the order they are tried.
    pub candidates: Vec<GatewayCandidate>,
    /// The gateway serving it (`None`: no candidate; the router's choice applies).
    pub active: Option<PeerId>,
    /// Failovers since the entry was installed.
    pub failovers: u64,
    /// Fail-backs since the entry was installed.
    pub failbacks: u64,
}

/// Gateway counters of the node (over every policy installed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GatewayCounters {
    /// Probes sent (handshake initiations to a gateway that owed us an answer, was down, or was
    /// idle for [`GATEWAY_IDLE_PROBE_AFTER`]).
    pub probes: u64,
    /// Failovers: an entry moved off a gateway that stopped answering.
    pub failovers: u64,
    /// Fail-backs: an entry moved back to a preferred gateway after the hold.
    pub failbacks: u64,
    /// Gateways declared down.
    pub downs: u64,
}

struct Entry {
    route: RouteEntry,
    candidates: Vec<PeerId>,
    active: Option<PeerId>,
    failovers: u64,
    failbacks: u64,
}

struct Health {
    state: GatewayHealth,
    probed: Option<Instant>,
}

/// The node's gateway state: the entries that apply to us, longest prefix first, and the health
/// of every candidate.
pub(super) struct Gateways {
    local: MemberRef,
    entries: Vec<Entry>,
    health: HashMap<PeerId, Health>,
    next_tick: Option<Instant>,
    counters: GatewayCounters,
}

impl Gateways {
    pub(super) fn new(local: MemberRef) -> Self {
        Self {
            local,
            entries: Vec::new(),
            health: HashMap::new(),
            next_tick: None,
            counters: GatewayCounters::default(),
        }
    }

    /// Whether no routing entry applies (the per-packet branch).
    #[inline]
    pub(super) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        self.next_tick
    }

    /// The gateway for `dst`, when an entry covers it at least as specifically as the router's
    /// match of length `matched`.
    #[inline]
    fn pick(&self, dst: IpAddr, matched: u8) -> Option<PeerId> {
        let e = self.entries.iter().find(|e| e.route.prefix.contains(dst))?;
        if e.route.prefix.prefix() >= matched {
            e.active
        } else {
            None
        }
    }

    fn health_of(&self, id: PeerId) -> GatewayHealth {
        self.health.get(&id).map_or(GatewayHealth::Up, |h| h.state)
    }
}

impl Node {
    /// The peer a packet to `dst` goes to: the router's longest match, or the active gateway of
    /// the routing entry covering it.
    #[inline]
    pub(super) fn route_to(&self, dst: IpAddr) -> Result<PeerId, EncapsulateError> {
        if self.gateways.is_empty() {
            return self
                .router
                .lookup(dst)
                .copied()
                .ok_or(EncapsulateError::NoRoute);
        }
        let (owner, len) = self
            .router
            .lookup_len(dst)
            .ok_or(EncapsulateError::NoRoute)?;
        Ok(self.gateways.pick(dst, len).unwrap_or(*owner))
    }

    /// A copy of the TCP SYN `packet` with its MSS clamped to the overlay MTU, when it announced
    /// more (`packet/mss.rs`); `None` when it fits. Every SYN is looked at, not only routed ones: a
    /// member's own SYNs already fit (its TUN has the overlay MTU), so for them this is a no-op,
    /// and no host-address lookup is needed per SYN.
    pub(super) fn clamp_syn(&mut self, packet: &[u8]) -> Option<Vec<u8>> {
        let version = crate::packet::IpPacket::new_checked(packet).ok()?.version();
        let max = crate::packet::mss_limit(version, self.settings.mtu);
        let mut copy = packet.to_vec();
        crate::packet::clamp_mss(&mut copy, max)?;
        self.out.stats.mss_clamped += 1;
        Some(copy)
    }

    /// Install the routing entries of `policy` that apply to us (a reload: counters restart,
    /// health is kept) and choose their gateways now.
    pub(super) fn install_routes(&mut self, policy: Option<&CompiledPolicy>, now: Instant) {
        let g = &mut self.gateways;
        let mut entries: Vec<Entry> = policy
            .map(|p| p.routes().entries())
            .unwrap_or_default()
            .iter()
            .filter(|r| r.applies_to(&g.local))
            .map(|r| {
                let old = g.entries.iter().find(|e| e.route.id == r.id);
                Entry {
                    route: r.clone(),
                    candidates: Vec::new(),
                    active: old.and_then(|e| e.active),
                    failovers: 0,
                    failbacks: 0,
                }
            })
            .collect();
        // Longest prefix first (what `pick` scans); file order among equal lengths.
        entries.sort_by_key(|e| std::cmp::Reverse(e.route.prefix.prefix()));
        // One entry per prefix: the first in the file that applies to us (the sort is stable).
        let mut seen: Vec<IpNetwork> = Vec::new();
        entries.retain(|e| {
            let first = !seen.contains(&e.route.prefix);
            seen.push(e.route.prefix);
            first
        });
        g.entries = entries;
        if g.entries.is_empty() {
            g.health.clear();
            g.next_tick = None;
        } else {
            self.refresh_gateways(now);
        }
    }

    /// Every routing entry in force with its candidates, their health and the active gateway.
    pub fn gateway_routes(&self) -> Vec<GatewayRoute> {
        self.gateways
            .entries
            .iter()
            .map(|e| GatewayRoute {
                id: e.route.id.clone(),
                prefix: e.route.prefix,
                via: e.route.via.clone(),
                candidates: e
                    .candidates
                    .iter()
                    .map(|&peer| {
                        let name = self
                            .peers
                            .get(peer)
                            .and_then(|p| p.verified_name())
                            .map(str::to_owned);
                        GatewayCandidate {
                            rank: name.as_deref().and_then(|n| e.route.rank_of(n)),
                            name,
                            peer,
                            health: self.gateways.health_of(peer),
                        }
                    })
                    .collect(),
                active: e.active,
                failovers: e.failovers,
                failbacks: e.failbacks,
            })
            .collect()
    }

    /// The gateway counters.
    pub fn gateway_counters(&self) -> GatewayCounters {
        self.gateways.counters
    }

    /// The gateway tick, when due.
    pub(super) fn gateways_timeout(&mut self, now: Instant) {
        if self.gateways.next_tick.is_some_and(|t| t <= now) {
            self.refresh_gateways(now);
        }
    }

    /// Re-evaluate candidates, health (sending the probes due) and the active gateway of every
    /// entry.
    pub(super) fn refresh_gateways(&mut self, now: Instant) {
        if self.gateways.entries.is_empty() {
            return;
        }
        // Candidates, from the router's claims.
        let mut all: Vec<PeerId> = Vec::new();
        for i in 0..self.gateways.entries.len() {
            let route = &self.gateways.entries[i].route;
            let mut listed: Vec<(usize, PeerId)> = Vec::new();
            let mut unverified: Vec<PeerId> = Vec::new();
            for id in self.router.covering(route.prefix) {
                let Some(p) = self.peers.get(id) else {
                    continue;
                };
                match p.verified_name() {
                    Some(name) => {
                        if let Some(rank) = route.rank_of(name) {
                            listed.push((rank, id));
                        }
                    }
                    None => unverified.push(id),
                }
            }
            listed.sort_by_key(|(rank, _)| *rank);
            let candidates: Vec<PeerId> = listed
                .into_iter()
                .map(|(_, id)| id)
                .chain(unverified)
                .collect();
            for id in &candidates {
                if !all.contains(id) {
                    all.push(*id);
                }
            }
            self.gateways.entries[i].candidates = candidates;
        }
        self.gateways.health.retain(|id, _| all.contains(id));
        for id in all {
            self.update_health(id, now);
        }
        // The active gateway of each entry.
        let mut events = Vec::new();
        let g = &mut self.gateways;
        for e in &mut g.entries {
            let health = |id: &PeerId| g.health.get(id).map_or(GatewayHealth::Up, |h| h.state);
            let next = e
                .candidates
                .iter()
                .find(|id| health(id) == GatewayHealth::Up)
                .or(e.candidates.first())
                .copied();
            if next == e.active {
                continue;
            }
            let pos =
                |id: Option<PeerId>| id.and_then(|id| e.candidates.iter().position(|c| *c == id));
            let reason = match e.active.map(|a| health(&a)) {
                Some(GatewayHealth::Down { .. }) => GatewayChange::Failover,
                Some(_) if pos(next) < pos(e.active) && pos(e.active).is_some() => {
                    GatewayChange::Failback
                }
                _ => GatewayChange::Candidates,
            };
            match reason {
                GatewayChange::Failover => {
                    e.failovers += 1;
                    g.counters.failovers += 1;
                }
                GatewayChange::Failback => {
                    e.failbacks += 1;
                    g.counters.failbacks += 1;
                }
                GatewayChange::Candidates => {}
            }
            events.push(Event::GatewayChanged {
                route: e.route.id.clone(),
                prefix: e.route.prefix,
                from: e.active,
                to: next,
                reason,
            });
            e.active = next;
        }
        for ev in events {
            self.out.event(ev);
        }
        self.gateways.next_tick = now.checked_add(GATEWAY_TICK);
    }

    /// Move one candidate's health on, and probe it when due.
    fn update_health(&mut self, id: PeerId, now: Instant) {
        let Some((live, name, reachable)) = self.peers.get(id).map(|p| {
            (
                p.liveness(),
                p.verified_name().unwrap_or("?").to_owned(),
                p.endpoint().is_some(),
            )
        }) else {
            return;
        };
        let h = self.gateways.health.entry(id).or_insert(Health {
            state: GatewayHealth::Up,
            probed: None,
        });
        let waited = live
            .waiting_since
            .map(|w| (w, now.saturating_duration_since(w)));
        let probe_due = h
            .probed
            .is_none_or(|p| now.saturating_duration_since(p) >= GATEWAY_PROBE_INTERVAL);
        let mut probe = false;
        match h.state {
            GatewayHealth::Up => {
                if let Some((since, waited)) = waited {
                    if waited >= GATEWAY_DOWN_AFTER {
                        h.state = GatewayHealth::Down { since: now };
                        self.gateways.counters.downs += 1;
                        tracing::warn!(peer = %name, waited_ms = waited.as_millis() as u64,
                            "gateway not answering; its routes fail over");
                    } else if waited >= GATEWAY_PROBE_AFTER && h.probed.is_none_or(|p| p < since) {
                        probe = true;
                    }
                } else {
                    // Idle: nothing owed. Probe a standby not heard from for a while.
                    let idle = |t: Option<Instant>| {
                        t.is_none_or(|t| {
                            now.saturating_duration_since(t) >= GATEWAY_IDLE_PROBE_AFTER
                        })
                    };
                    probe = reachable && idle(live.last_rx) && idle(h.probed);
                }
            }
            GatewayHealth::Down { since } => {
                if live.last_rx.is_some_and(|r| r > since) {
                    h.state = GatewayHealth::Recovering { since: now };
                    tracing::info!(peer = %name, "gateway answering again");
                } else if probe_due {
                    probe = true;
                }
            }
            GatewayHealth::Recovering { since } => {
                if waited.is_some_and(|(_, w)| w >= GATEWAY_DOWN_AFTER) {
                    h.state = GatewayHealth::Down { since: now };
                    self.gateways.counters.downs += 1;
                } else if now.saturating_duration_since(since) >= GATEWAY_FAILBACK_AFTER {
                    h.state = GatewayHealth::Up;
                } else if probe_due && waited.is_none() {
                    probe = true;
                }
            }
        }
        if probe {
            h.probed = Some(now);
            self.gateways.counters.probes += 1;
            self.with_peer(id, |p, ctx| p.initiate(now, true, ctx));
        }
    }
}
