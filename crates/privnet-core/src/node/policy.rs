//! The access policy at the node (docs/POLICY.md, "Enforcement"): the node's [`Filter`] decides
//! every inner packet on both ends — at the sender before encryption (after the routing decision
//! named the peer) and at the receiver after authentication and the source and destination checks
//! (the authoritative end: a sender may ignore its own policy). The peer is always the session's
//! authenticated member, never an address in the packet.
//!
//! Without a policy nothing here runs per packet (one branch). The filter, and with it the
//! connection tracker's memory, exists from the first policy on; peers' identities are registered
//! with it whenever they change (and a change re-checks that peer's flows).
//!
//! `reject` is answered from the refused packet's destination (`reject.rs`): at the sender the
//! answer goes back to the local side (the driver asks [`Node::reject_reply`]); at the receiver it
//! is sealed back to the sending member. Both are bounded to [`REJECT_REPLIES_PER_SEC`]; refused
//! flows are reported as [`Event::PolicyDenied`], at most [`DENIED_EVENTS_PER_SEC`] (the rest are
//! counted in the next event's `suppressed`).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnetwork::IpNetwork;

use super::{Node, PeerId};
use crate::classify;
use crate::error::{DropReason, EncapsulateError};
use crate::event::{Event, Pending};
use crate::packet::IpPacket;
use crate::policy::{
    CompiledPolicy, ConntrackConfig, CountersSnapshot, Decision, Direction, Disposition, EndKind,
    Filter, Flow, FlowPath, LiveExplanation, MemberRef, Reason,
};
use crate::reject;

/// Answers to `reject` verdicts built per second, both ends together (a policy must not turn this
/// member into a packet generator; beyond it a rejected packet is dropped silently, still counted
/// as `policy_rejected`).
pub const REJECT_REPLIES_PER_SEC: u32 = 200;

/// [`Event::PolicyDenied`] events per second at most (the audit log's rate limit).
pub const DENIED_EVENTS_PER_SEC: u32 = 50;

/// Largest answer built for an inbound `reject` (an ICMP error quotes as much as fits).
const REPLY_MAX: usize = 576;

/// A budget of `rate` per one-second window.
#[derive(Debug)]
struct Budget {
    rate: u32,
    used: u32,
    window: Instant,
}

impl Budget {
    fn new(rate: u32, now: Instant) -> Self {
        Self {
            rate,
            used: 0,
            window: now,
        }
    }

    fn take(&mut self, now: Instant) -> bool {
        if now.saturating_duration_since(self.window) >= Duration::from_secs(1) {
            self.window = now;
            self.used = 0;
        }
        if self.used < self.rate {
            self.used += 1;
            true
        } else {
            false
        }
    }
}

/// The node's policy state.
pub(super) struct Enforcer {
    /// From the first policy on.
    filter: Option<Filter<PeerId>>,
    conntrack: ConntrackConfig,
    /// This member as the policy sees it (from its own credential).
    local: MemberRef,
    /// This member's own overlay addresses (host prefixes of `local_addresses`): the `Member`
    /// end; anything else on our side is `Routed`.
    own_hosts: Vec<IpAddr>,
    seed: [u8; 32],
    rejects: Budget,
    events: Budget,
    suppressed: u64,
}

impl Enforcer {
    pub(super) fn new(
        conntrack: ConntrackConfig,
        local: MemberRef,
        local_addresses: &[IpNetwork],
        seed: [u8; 32],
        now: Instant,
    ) -> Self {
        Self {
            filter: None,
            conntrack,
            local,
            own_hosts: hosts(local_addresses).collect(),
            seed,
            rejects: Budget::new(REJECT_REPLIES_PER_SEC, now),
            events: Budget::new(DENIED_EVENTS_PER_SEC, now),
            suppressed: 0,
        }
    }

    /// Whether a policy is in force (the per-packet branch).
    #[inline]
    pub(super) fn active(&self) -> bool {
        self.filter.as_ref().is_some_and(|f| f.policy().is_some())
    }

    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        self.filter.as_ref().and_then(Filter::poll_timeout)
    }

    pub(super) fn handle_timeout(&mut self, now: Instant) {
        if let Some(f) = self.filter.as_mut() {
            f.handle_timeout(now);
        }
    }
}

/// The host addresses (/32, /128) among `nets`.
fn hosts(nets: &[IpNetwork]) -> impl Iterator<Item = IpAddr> + '_ {
    nets.iter()
        .filter(|n| n.prefix() == if n.is_ipv4() { 32 } else { 128 })
        .map(IpNetwork::ip)
}

impl Node {
    /// Install an access policy (or none: members talk freely), atomically: the next packet is
    /// decided by it. Tracked flows it no longer allows are cut now (their next packets are
    /// dropped, or rejected if the policy rejects them); sessions are never touched. Returns the
    /// number of flows cut.
    pub fn set_policy(&mut self, policy: Option<Arc<CompiledPolicy>>, now: Instant) -> usize {
        self.last_now = self.last_now.max(now);
        if self.enforcer.filter.is_none() {
            if policy.is_none() {
                return 0;
            }
            let e = &self.enforcer;
            let mut filter = Filter::new(e.conntrack, e.local.clone(), now, e.seed);
            for (id, peer) in self.peers.iter() {
                if let Some(identity) = peer.identity() {
                    filter.set_peer(id, MemberRef::from(identity), now);
                }
            }
            self.enforcer.filter = Some(filter);
        }
        let Some(filter) = self.enforcer.filter.as_mut() else {
            return 0;
        };
        filter.set_policy(policy);
        filter.recheck(now).count()
    }

    /// The access policy in force.
    pub fn policy(&self) -> Option<&Arc<CompiledPolicy>> {
        self.enforcer.filter.as_ref().and_then(Filter::policy)
    }

    /// The policy's counters (per rule, per tier, the tracker's), once a policy was installed.
    pub fn policy_counters(&self) -> Option<CountersSnapshot> {
        self.enforcer.filter.as_ref().map(Filter::counters)
    }

    /// Flows the connection tracker holds (0 without a policy).
    pub fn tracked_flows(&self) -> usize {
        self.enforcer
            .filter
            .as_ref()
            .map_or(0, |f| f.conntrack().len())
    }

    /// Bytes the connection tracker has reserved (0 before the first policy).
    pub fn conntrack_bytes(&self) -> usize {
        self.enforcer
            .filter
            .as_ref()
            .map_or(0, |f| f.conntrack().memory_bytes())
    }

    /// Most flows the connection tracker holds ([`ConntrackConfig::max_flows`]).
    pub fn conntrack_capacity(&self) -> usize {
        self.enforcer.conntrack.max_flows
    }

    /// What the policy in force says about `flow` crossing this member in `direction`, and
    /// whether a tracked flow carries it: the peer is the member the routing table gives for the
    /// remote address (the destination outbound, the source inbound). `None` without a policy
    /// or when no member owns the remote address. Changes no state.
    pub fn explain_flow(
        &self,
        flow: &Flow,
        direction: Direction,
    ) -> Option<(PeerId, LiveExplanation<PeerId>)> {
        let filter = self.enforcer.filter.as_ref()?;
        filter.policy()?;
        let remote = match direction {
            Direction::Outbound => flow.dst,
            Direction::Inbound => flow.src,
        };
        let id = *self.router.lookup(remote)?;
        let path = self.path_of(id, direction, flow.src, flow.dst);
        Some((id, filter.explain(&id, path, flow, self.last_now)))
    }

    /// Build the answer to an outbound packet refused as [`EncapsulateError::PolicyRejected`]
    /// into `out` (a TCP RST or an ICMP administratively-prohibited error, from the packet's
    /// destination), for the driver to deliver back to the local side. `None` when nothing may
    /// answer it or the reply budget is spent.
    pub fn reject_reply(&mut self, packet: &[u8], out: &mut [u8], now: Instant) -> Option<usize> {
        if !self.enforcer.rejects.take(now) {
            return None;
        }
        reject::build(packet, out).map(|(n, _)| n)
    }

    pub(super) fn register_policy_peer(&mut self, id: PeerId, now: Instant) {
        let Some(filter) = self.enforcer.filter.as_mut() else {
            return;
        };
        match self.peers.get(id).and_then(|p| p.identity()) {
            Some(identity) => {
                filter.set_peer(id, MemberRef::from(identity), now);
                let _cut = filter.recheck_peer(&id, now).count();
            }
            None => filter.remove_peer(&id),
        }
    }

    pub(super) fn forget_policy_peer(&mut self, id: PeerId) {
        if let Some(filter) = self.enforcer.filter.as_mut() {
            filter.remove_peer(&id);
        }
    }

    /// Which ends of a packet are members themselves.
    fn path_of(&self, id: PeerId, direction: Direction, src: IpAddr, dst: IpAddr) -> FlowPath {
        let (ours, theirs) = match direction {
            Direction::Outbound => (src, dst),
            Direction::Inbound => (dst, src),
        };
        let local = if self.enforcer.own_hosts.contains(&ours) {
            EndKind::Member
        } else {
            EndKind::Routed
        };
        let remote = match self.peers.get(id) {
            Some(p) if hosts(p.allowed_sources()).any(|a| a == theirs) => EndKind::Member,
            _ => EndKind::Routed,
        };
        FlowPath {
            direction,
            local,
            remote,
        }
    }

    /// Decide one packet; `None` to let it through, else why it is refused.
    fn decide(
        &mut self,
        id: PeerId,
        direction: Direction,
        packet: &[u8],
        now: Instant,
    ) -> Result<Option<(Disposition, Flow, Decision)>, ()> {
        let Ok(view) = IpPacket::new_checked(packet) else {
            return Err(());
        };
        let flow = classify::flow_of(&view);
        let path = self.path_of(id, direction, flow.src, flow.dst);
        let Some(filter) = self.enforcer.filter.as_mut() else {
            return Ok(None);
        };
        let d = filter.check(id, path, &flow, now);
        Ok(match d.disposition {
            Disposition::Pass => None,
            other => Some((other, flow, d)),
        })
    }

    /// The sender's check, before sealing a packet for `id`.
    pub(super) fn enforce_outbound(
        &mut self,
        id: PeerId,
        packet: &[u8],
        now: Instant,
    ) -> Result<(), EncapsulateError> {
        match self.decide(id, Direction::Outbound, packet, now) {
            Err(()) => Err(EncapsulateError::Malformed),
            Ok(None) => Ok(()),
            Ok(Some((disposition, flow, d))) => {
                self.report_denied(id, Direction::Outbound, flow, d, now);
                Err(match disposition {
                    Disposition::Reject => EncapsulateError::PolicyRejected,
                    _ => EncapsulateError::PolicyDenied,
                })
            }
        }
    }

    /// The receiver's check, on an authenticated packet from `id` (source and destination
    /// checked). A `reject` queues the answer back to the sender.
    pub(super) fn enforce_inbound(
        &mut self,
        id: PeerId,
        packet: &[u8],
        now: Instant,
    ) -> Result<(), DropReason> {
        match self.decide(id, Direction::Inbound, packet, now) {
            Err(()) => Err(DropReason::MalformedInner),
            Ok(None) => Ok(()),
            Ok(Some((disposition, flow, d))) => {
                self.report_denied(id, Direction::Inbound, flow, d, now);
                if disposition != Disposition::Reject {
                    return Err(DropReason::PolicyDenied);
                }
                if self.enforcer.rejects.take(now) {
                    let mut buf = vec![0u8; REPLY_MAX];
                    if let Some((n, _)) = reject::build(packet, &mut buf) {
                        buf.truncate(n);
                        self.out.transmits.push_back(Pending::Data {
                            peer: id,
                            packet: buf,
                        });
                    }
                }
                Err(DropReason::PolicyRejected)
            }
        }
    }

    fn report_denied(
        &mut self,
        id: PeerId,
        direction: Direction,
        flow: Flow,
        d: Decision,
        now: Instant,
    ) {
        // Only decisions of the policy are worth an audit line; a refused later fragment or a
        // full tracker is in the counters.
        let verdict = match d.reason {
            Reason::Policy(v) | Reason::Cut(v) => Some(v),
            _ => None,
        };
        if !self.enforcer.events.take(now) {
            self.enforcer.suppressed += 1;
            return;
        }
        let suppressed = std::mem::take(&mut self.enforcer.suppressed);
        self.out.event(Event::PolicyDenied {
            peer: id,
            direction,
            flow,
            rejected: d.disposition == Disposition::Reject,
            verdict,
            reason: d.reason,
            suppressed,
        });
    }
}
