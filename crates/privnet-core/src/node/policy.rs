//! The access policy at the node (docs/POLICY.md, "Enforcement"): the node's [`Filter`] decides
//! every inner packet on both ends — at the sender before encryption (after the routing decision
//! named the peer) and at the receiver after authentication and the source and destination checks
//! (the authoritative end: a sender may ignore its own policy). The peer is always the session's
//! authenticated member, never an address in the packet.
//!
//! Before a peer's first handshake its identity is unknown: the sender lets packets for it through
//! (to the handshake queue) and the receiver, which knows the sender from the session, decides
//! them; a peer that never presents a verified credential is refused at the receiver (fail closed).
//!
//! Without a policy nothing here runs per packet (one branch). The filter, and with it the
//! connection tracker's memory, exists from the first policy on; peers' identities are registered
//! with it whenever they change (and a change re-checks that peer's flows).
//!
//! `reject` is answered from the refused packet's destination (`reject.rs`): at the sender the
//! answer goes back to the local side (the driver asks [`Node::reject_reply`]); at the receiver it
//! is sealed back to the sending member. Both are bounded to [`REJECT_REPLIES_PER_SEC`]; refused
//! flows are reported as [`Event::PolicyDenied`] and new flows a `log` rule matched as
//! [`Event::PolicyLogged`], together at most [`DENIED_EVENTS_PER_SEC`] (the rest are counted in the
//! next event's `suppressed`).

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
    Filter, Flow, FlowPath, LimitCount, Limiter, LiveExplanation, MemberRef, Reason,
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

/// The 5-tuple of a plain TCP or UDP packet read straight from its header (no fragments, no IPv6
/// extension headers): what the per-direction fast path compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Tuple {
    proto: u8,
    v6: bool,
    addrs: [u8; 32],
    ports: [u8; 4],
}

const TCP: u8 = 6;
const UDP: u8 = 17;
/// SYN, FIN, RST: segments that change a connection's state always take the full check.
const TCP_STATE_FLAGS: u8 = 0x07;

impl Tuple {
    /// The tuple of `p`, if it may use the fast path.
    #[inline]
    fn of(p: &[u8]) -> Option<Self> {
        let mut addrs = [0u8; 32];
        let (proto, v6, l4) = match p.first()? >> 4 {
            4 => {
                let ihl = usize::from(p.first()? & 0x0f) * 4;
                let frag = u16::from_be_bytes([*p.get(6)?, *p.get(7)?]);
                if ihl < 20 || frag & 0x3fff != 0 {
                    return None;
                }
                addrs[..8].copy_from_slice(p.get(12..20)?);
                (*p.get(9)?, false, ihl)
            }
            6 => {
                addrs.copy_from_slice(p.get(8..40)?);
                (*p.get(6)?, true, 40)
            }
            _ => return None,
        };
        match proto {
            TCP if p.get(l4 + 13)? & TCP_STATE_FLAGS != 0 => return None,
            TCP | UDP => {}
            _ => return None,
        }
        let ports: [u8; 4] = p.get(l4..l4 + 4)?.try_into().ok()?;
        Some(Self {
            proto,
            v6,
            addrs,
            ports,
        })
    }

    /// Whether `p` is a packet of this tuple that may use the fast path: the same answer as
    /// `Tuple::of(p) == Some(*self)`, compared in place (no tuple built, no copy) — this runs
    /// for every packet of an established flow.
    #[inline]
    fn matches(&self, p: &[u8]) -> bool {
        let l4 = if self.v6 {
            let Some(h) = p.get(..40).and_then(|h| <&[u8; 40]>::try_from(h).ok()) else {
                return false;
            };
            if h[0] >> 4 != 6 || h[6] != self.proto || h[8..40] != self.addrs {
                return false;
            }
            40
        } else {
            let Some(h) = p.get(..20).and_then(|h| <&[u8; 20]>::try_from(h).ok()) else {
                return false;
            };
            let ihl = usize::from(h[0] & 0x0f) * 4;
            if h[0] >> 4 != 4
                || ihl < 20
                || h[9] != self.proto
                || u16::from_be_bytes([h[6], h[7]]) & 0x3fff != 0
                || h[12..20] != self.addrs[..8]
            {
                return false;
            }
            ihl
        };
        let Some(ports) = p.get(l4..l4 + 4) else {
            return false;
        };
        if ports != self.ports {
            return false;
        }
        // SYN, FIN and RST take the full check (UDP: `proto` was compared above).
        self.proto != TCP || p.get(l4 + 13).is_some_and(|f| f & TCP_STATE_FLAGS == 0)
    }
}

/// The last packet of a tracked flow that passed in one direction: the next packets of the same
/// flow (the segments of a super-packet, a bulk transfer) pass on a header compare alone, for at
/// most [`FAST_PATH_FOR`] after the full check (so the tracker still sees every flow at least once
/// a second and its timeouts and TCP states stay current). Anything that changes what the filter
/// would say — a policy, a peer's identity, a peer removed — clears it; SYN, FIN and RST segments,
/// fragments, other protocols and extension headers never use it.
#[derive(Clone, Copy, Debug)]
struct Fast {
    peer: PeerId,
    tuple: Tuple,
    until: Instant,
    /// The flow's priority class (`Decision::high`).
    high: bool,
}

/// What the policy said about one packet (`Node::decide`).
pub(super) enum Judged {
    /// Let it through; `high`: a packet of a `priority = "high"` flow.
    Pass { high: bool },
    /// Refused.
    Refused(Disposition, Flow, Decision),
}

/// How long a fast-path entry stands in for the full check.
const FAST_PATH_FOR: Duration = Duration::from_secs(1);

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
    /// The fast path, outbound and inbound.
    fast: [Option<Fast>; 2],
    /// Packets the fast path passed (counted as established in the policy counters).
    fast_passed: u64,
    /// The policy's rate limits and their buckets (`policy/limits.rs`).
    limiter: Limiter<PeerId>,
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
            local: local.clone(),
            own_hosts: hosts(local_addresses).collect(),
            seed,
            rejects: Budget::new(REJECT_REPLIES_PER_SEC, now),
            events: Budget::new(DENIED_EVENTS_PER_SEC, now),
            suppressed: 0,
            fast: [None; 2],
            fast_passed: 0,
            limiter: Limiter::new(local.clone()),
        }
    }

    /// Whether `packet` for `peer` in `direction` passes on the fast path: `Some(high)` with its
    /// flow's priority class.
    #[inline]
    fn fast_hit(
        &mut self,
        peer: PeerId,
        direction: Direction,
        packet: &[u8],
        now: Instant,
    ) -> Option<bool> {
        let f = self.fast[dir_index(direction)].as_ref()?;
        if f.peer == peer && now < f.until && f.tuple.matches(packet) {
            self.fast_passed += 1;
            return Some(f.high);
        }
        None
    }

    /// Forget the fast path (the filter's answers may have changed).
    fn clear_fast(&mut self) {
        self.fast = [None; 2];
    }

    /// Whether the policy in force has rate limits (the per-packet branch).
    #[inline]
    pub(super) fn limited(&self) -> bool {
        self.limiter.active()
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

fn dir_index(d: Direction) -> usize {
    match d {
        Direction::Outbound => 0,
        Direction::Inbound => 1,
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
        self.install_routes(policy.as_deref(), now);
        if self.enforcer.filter.is_none() {
            if policy.is_none() {
                return 0;
            }
            let e = &self.enforcer;
            let mut filter = Filter::new(e.conntrack, e.local.clone(), now, e.seed);
            for (id, peer) in self.peers.iter() {
                if let Some(identity) = peer.identity() {
                    filter.set_peer(id, MemberRef::from(identity), now);
                    self.enforcer
                        .limiter
                        .set_peer(id, MemberRef::from(identity), now);
                }
            }
            self.enforcer.filter = Some(filter);
        }
        self.enforcer.clear_fast();
        let limits = policy.as_ref().map_or(&[][..], |p| p.limits());
        self.enforcer.limiter.set_limits(limits, now);
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
        let mut c = self.enforcer.filter.as_ref().map(Filter::counters)?;
        c.totals.established += self.enforcer.fast_passed;
        Some(c)
    }

    /// The rate limits' counters (per limit, in policy order; empty without limits).
    pub fn limit_counters(&self) -> Vec<LimitCount> {
        self.enforcer.limiter.counters()
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
        let id = match direction {
            Direction::Outbound => self.route_to(remote).ok()?,
            Direction::Inbound => *self.router.lookup(remote)?,
        };
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
        self.enforcer.clear_fast();
        let Some(filter) = self.enforcer.filter.as_mut() else {
            return;
        };
        match self.peers.get(id).and_then(|p| p.identity()) {
            Some(identity) => {
                filter.set_peer(id, MemberRef::from(identity), now);
                let _cut = filter.recheck_peer(&id, now).count();
                self.enforcer
                    .limiter
                    .set_peer(id, MemberRef::from(identity), now);
            }
            None => {
                filter.remove_peer(&id);
                self.enforcer.limiter.remove_peer(&id);
            }
        }
    }

    pub(super) fn forget_policy_peer(&mut self, id: PeerId) {
        self.enforcer.clear_fast();
        if let Some(filter) = self.enforcer.filter.as_mut() {
            filter.remove_peer(&id);
        }
        self.enforcer.limiter.remove_peer(&id);
    }

    /// The rate limits' check of a packet of `len` inner bytes to or from `id` (after the access
    /// policy passed it).
    #[inline]
    pub(super) fn enforce_limits(
        &mut self,
        id: PeerId,
        direction: Direction,
        len: usize,
        now: Instant,
    ) -> bool {
        self.enforcer
            .limiter
            .check(&id, direction, len, now)
            .is_ok()
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

    /// Decide one packet after the fast path missed; `None` to let it through, else why it is
    /// refused. Kept out of line: the fast path, inlined into the two checks, is what the
    /// packets of established flows run.
    #[inline(never)]
    fn decide(
        &mut self,
        id: PeerId,
        direction: Direction,
        packet: &[u8],
        now: Instant,
    ) -> Result<Judged, ()> {
        let Ok(view) = IpPacket::new_checked(packet) else {
            return Err(());
        };
        let flow = classify::flow_of(&view);
        let path = self.path_of(id, direction, flow.src, flow.dst);
        let Some(filter) = self.enforcer.filter.as_mut() else {
            return Ok(Judged::Pass { high: false });
        };
        let d = filter.check(id, path, &flow, now);
        if d.reason == Reason::UnknownPeer && direction == Direction::Outbound {
            // No handshake has told us who the peer is yet: the packet goes to the handshake
            // queue unjudged (refusing it would also never start the handshake), and the
            // receiver, which knows us from the session, decides it.
            return Ok(Judged::Pass { high: false });
        }
        // Only a packet of a tracked flow, or the first one of a flow just tracked, stands in for
        // its successors.
        let tracked = match d.reason {
            Reason::Established => true,
            Reason::Policy(v) => v.is_allow(),
            _ => false,
        };
        self.enforcer.fast[dir_index(direction)] = match (d.disposition, tracked) {
            (Disposition::Pass, true) => Tuple::of(packet).map(|tuple| Fast {
                peer: id,
                tuple,
                until: now + FAST_PATH_FOR,
                high: d.high,
            }),
            _ => None,
        };
        Ok(match d.disposition {
            Disposition::Pass => {
                // A new flow a `log` rule matched on its way to the allow: the audit trail.
                if let Reason::Policy(v) = d.reason {
                    if v.logged.is_some() {
                        self.report_logged(id, direction, flow, v, now);
                    }
                }
                Judged::Pass { high: d.high }
            }
            other => Judged::Refused(other, flow, d),
        })
    }

    /// The sender's check, before sealing a packet for `id`.
    pub(super) fn enforce_outbound(
        &mut self,
        id: PeerId,
        packet: &[u8],
        now: Instant,
    ) -> Result<bool, EncapsulateError> {
        if let Some(high) = self.enforcer.fast_hit(id, Direction::Outbound, packet, now) {
            return Ok(high);
        }
        match self.decide(id, Direction::Outbound, packet, now) {
            Err(()) => Err(EncapsulateError::Malformed),
            Ok(Judged::Pass { high }) => Ok(high),
            Ok(Judged::Refused(disposition, flow, d)) => {
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
    ) -> Result<bool, DropReason> {
        if let Some(high) = self.enforcer.fast_hit(id, Direction::Inbound, packet, now) {
            return Ok(high);
        }
        match self.decide(id, Direction::Inbound, packet, now) {
            Err(()) => Err(DropReason::MalformedInner),
            Ok(Judged::Pass { high }) => Ok(high),
            Ok(Judged::Refused(disposition, flow, d)) => {
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

    fn report_logged(
        &mut self,
        id: PeerId,
        direction: Direction,
        flow: Flow,
        verdict: crate::policy::Verdict,
        now: Instant,
    ) {
        if !self.enforcer.events.take(now) {
            self.enforcer.suppressed += 1;
            return;
        }
        let suppressed = std::mem::take(&mut self.enforcer.suppressed);
        self.out.event(Event::PolicyLogged {
            peer: id,
            direction,
            flow,
            verdict,
            suppressed,
        });
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::Tuple;

    /// Packets near the fast path's cases: IPv4 or IPv6 headers with TCP or UDP (or other
    /// protocols), random flags, fragments, options and truncations.
    fn packet() -> impl Strategy<Value = Vec<u8>> {
        (
            any::<bool>(),
            prop::sample::select(vec![6u8, 17, 1, 58, 0]),
            prop::collection::vec(any::<u8>(), 0..80),
            0usize..80,
            prop::sample::select(vec![0u8, 0x10, 0x18, 0x02, 0x01, 0x04, 0x12]),
            any::<bool>(),
        )
            .prop_map(|(v6, proto, mut p, cut, flags, frag)| {
                p.resize(80, 0);
                if v6 {
                    p[0] = 0x60;
                    p[6] = proto;
                    p[40 + 13] = flags;
                } else {
                    p[0] = 0x45;
                    p[9] = proto;
                    p[6] = if frag { 0x20 } else { 0x40 };
                    p[7] = 0;
                    p[20 + 13] = flags;
                }
                p.truncate(cut.max(1));
                p
            })
    }

    proptest! {
        /// The in-place compare says what building the tuple and comparing would say.
        #[test]
        fn matches_agrees_with_of(a in packet(), b in packet(), same in any::<bool>()) {
            let b = if same { a.clone() } else { b };
            if let Some(t) = Tuple::of(&a) {
                prop_assert_eq!(t.matches(&b), Tuple::of(&b) == Some(t));
                prop_assert!(t.matches(&a));
            }
        }
    }
}
