//! The filter: what the node calls for every inner packet, on both ends (before encryption and
//! after authentication). It holds the policy in force (`Arc<CompiledPolicy>`, swapped whole),
//! this member's identity and its peers', the identity bit sets cached per identity class, the
//! connection tracker and the counters.
//!
//! Per packet (`check`): a later fragment follows its first fragment; a packet of a tracked flow
//! passes (the hot path: one hash lookup, no allocation); an ICMP error related to a tracked flow
//! passes; anything else is a new flow for the policy, tracked when allowed.
//!
//! **Re-checks.** Every tracked flow carries the epoch at which it was last allowed. Installing a
//! policy, or changing this member's identity, starts a new policy epoch; changing a peer's
//! identity starts a new epoch for that peer's flows only. A packet of a flow older than its epoch
//! is re-evaluated first (lazily, on the data path); [`Filter::recheck`] and
//! [`Filter::recheck_peer`] do it eagerly and report the flows to cut. Sessions are never touched.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Instant;

use super::compile::CompiledPolicy;
use super::conntrack::{Conntrack, ConntrackConfig, FlowId, FlowMeta, Refused, TrackedFlow};
use super::counters::{CountersSnapshot, PolicyCounters};
use super::eval::{End, IdentityClass, PartyBits, Verdict};
use super::explain::Explanation;
use super::flow::{Direction, EndKind, Flow, FlowPath, Fragment, MemberRef};
use super::spec::Action;

/// What to do with a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Disposition {
    /// Let it through.
    Pass,
    /// Drop it silently.
    Drop,
    /// Drop it and answer the sender: TCP RST for TCP, ICMP administratively prohibited otherwise.
    Reject,
}

/// Why.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// No policy is installed: members talk freely.
    NoPolicy,
    /// A packet of a tracked flow.
    Established,
    /// An ICMP error about a tracked flow.
    Related,
    /// A later fragment of an allowed first fragment.
    Fragment,
    /// A later fragment whose first fragment was not seen or not allowed.
    FragmentWithoutFirst,
    /// A new flow, decided by the policy.
    Policy(Verdict),
    /// A new flow the policy allowed but the tracker refused (a bound; counted).
    Refused(Refused),
    /// A tracked flow the current policy no longer allows (now removed); `Reject` if the policy
    /// rejects it now.
    Cut(Verdict),
    /// The peer has no registered identity ([`Filter::set_peer`] was not called).
    UnknownPeer,
}

/// The filter's answer for one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Decision {
    /// What to do.
    pub disposition: Disposition,
    /// Why.
    pub reason: Reason,
    /// A packet of a flow the policy allowed with `priority = "high"` (the fairness gates
    /// admit it first): the deciding rule's class for a new flow, the allowing rule's for a
    /// tracked one; `false` for everything else.
    pub high: bool,
}

impl Decision {
    const fn pass(reason: Reason) -> Self {
        Self {
            disposition: Disposition::Pass,
            reason,
            high: false,
        }
    }

    const fn drop(reason: Reason) -> Self {
        Self {
            disposition: Disposition::Drop,
            reason,
            high: false,
        }
    }

    fn of(v: Verdict, policy: &CompiledPolicy) -> Self {
        Self {
            disposition: match v.action {
                Action::Allow => Disposition::Pass,
                Action::Reject => Disposition::Reject,
                _ => Disposition::Drop,
            },
            reason: Reason::Policy(v),
            high: v.is_allow() && v.rule().is_some_and(|r| policy.rule_is_high(r.0)),
        }
    }
}

/// A tracked flow a re-check cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cut<P> {
    /// The flow (gone from the tracker).
    pub id: FlowId,
    /// Its peer.
    pub peer: P,
    /// As first seen (initiator → responder).
    pub flow: Flow,
    /// How it crossed this member.
    pub path: FlowPath,
    /// What the policy says about it now (`Reject`: the caller may reset the connection).
    pub verdict: Verdict,
}

#[derive(Clone, Debug)]
struct Peer {
    member: MemberRef,
    bits: Option<Arc<PartyBits>>,
}

/// A live explanation: the policy's view and the tracker's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveExplanation<P> {
    /// What the filter would decide for this packet now (without changing any state).
    pub tracked: Option<TrackedFlow<P>>,
    /// The policy's explanation of the flow as a new flow (`None` without a policy).
    pub policy: Option<Explanation>,
}

/// The enforcing member's filter, generic over the node's peer handle.
#[derive(Debug)]
pub struct Filter<P> {
    policy: Option<Arc<CompiledPolicy>>,
    local: MemberRef,
    local_bits: Option<Arc<PartyBits>>,
    external_bits: Option<Arc<PartyBits>>,
    peers: HashMap<P, Peer>,
    classes: HashMap<IdentityClass, Arc<PartyBits>>,
    conntrack: Conntrack<P>,
    counters: PolicyCounters,
    epoch: u32,
    policy_epoch: u32,
}

impl<P: Copy + Eq + Hash> Filter<P> {
    /// A filter for member `local`, without a policy (everything passes until
    /// [`Filter::set_policy`]), whose tracker's time starts at `origin` and whose hash is keyed
    /// with `seed` (from the node's seeded RNG).
    pub fn new(cfg: ConntrackConfig, local: MemberRef, origin: Instant, seed: [u8; 32]) -> Self {
        Self {
            policy: None,
            local,
            local_bits: None,
            external_bits: None,
            peers: HashMap::new(),
            classes: HashMap::new(),
            conntrack: Conntrack::new(cfg, origin, seed),
            counters: PolicyCounters::default(),
            epoch: 1,
            policy_epoch: 1,
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> Option<&Arc<CompiledPolicy>> {
        self.policy.as_ref()
    }

    /// Install `policy` (or none: free talk) atomically: the next packet is decided by it.
    /// Tracked flows are re-checked lazily; call [`Filter::recheck`] to cut them now. Counters of
    /// rules whose id survives carry over.
    pub fn set_policy(&mut self, policy: Option<Arc<CompiledPolicy>>) {
        self.counters
            .rebase(self.policy.as_deref(), policy.as_deref());
        self.policy = policy;
        self.invalidate_bits();
        self.bump_policy_epoch();
    }

    /// This member's identity changed (a renewed certificate with other groups): every flow is
    /// re-checked.
    pub fn set_local(&mut self, local: MemberRef) {
        if local != self.local {
            self.local = local;
            self.invalidate_bits();
            self.bump_policy_epoch();
        }
    }

    /// Register (or update) `peer`'s identity, from its authenticated certificate. A change
    /// re-checks that peer's flows only.
    pub fn set_peer(&mut self, peer: P, member: MemberRef, now: Instant) {
        if self.peers.get(&peer).is_some_and(|p| p.member == member) {
            return;
        }
        self.epoch = self.epoch.saturating_add(1);
        self.peers.insert(peer, Peer { member, bits: None });
        self.conntrack.set_peer_epoch(peer, self.epoch, now);
    }

    /// `peer` is gone: forget it and its flows.
    pub fn remove_peer(&mut self, peer: &P) {
        self.peers.remove(peer);
        self.conntrack.remove_peer(peer);
    }

    fn bump_policy_epoch(&mut self) {
        self.epoch = self.epoch.saturating_add(1);
        self.policy_epoch = self.epoch;
    }

    fn invalidate_bits(&mut self) {
        self.local_bits = None;
        self.external_bits = None;
        self.classes.clear();
        for p in self.peers.values_mut() {
            p.bits = None;
        }
    }

    /// The bits of one end (computed once per identity class and policy).
    fn bits(
        &mut self,
        policy: &CompiledPolicy,
        peer: &P,
        kind: EndKind,
        local: bool,
    ) -> Option<Arc<PartyBits>> {
        if kind == EndKind::Routed {
            if self.external_bits.is_none() {
                self.external_bits = Some(Arc::new(policy.end_bits(End::External)));
            }
            return self.external_bits.clone();
        }
        if local {
            if self.local_bits.is_none() {
                self.local_bits = Some(Arc::new(policy.end_bits(End::Local(&self.local))));
            }
            return self.local_bits.clone();
        }
        let p = self.peers.get_mut(peer)?;
        if p.bits.is_none() {
            let class = policy.identity_class(End::Member(&p.member));
            let bits = self
                .classes
                .entry(class)
                .or_insert_with_key(|c| Arc::new(policy.party_bits(c)))
                .clone();
            p.bits = Some(bits);
        }
        p.bits.clone()
    }

    /// Evaluate `flow` as a new flow on `path` for `peer`.
    fn evaluate(
        &mut self,
        policy: &CompiledPolicy,
        peer: &P,
        path: FlowPath,
        flow: &Flow,
    ) -> Option<Verdict> {
        let (src_local, src_kind, dst_kind) = match path.direction {
            Direction::Outbound => (true, path.local, path.remote),
            Direction::Inbound => (false, path.remote, path.local),
        };
        let src = self.bits(policy, peer, src_kind, src_local)?;
        let dst = self.bits(policy, peer, dst_kind, !src_local)?;
        Some(policy.evaluate(flow, &src, &dst))
    }

    /// Decide one packet crossing this member for `peer` (the session's authenticated peer).
    pub fn check(&mut self, peer: P, path: FlowPath, flow: &Flow, now: Instant) -> Decision {
        if self.policy.is_none() {
            return Decision::pass(Reason::NoPolicy);
        }
        if let Fragment::NonFirst { ident } = flow.fragment {
            return if self.conntrack.fragment_follows(flow, ident, now) {
                self.counters.totals.fragments_passed += 1;
                Decision::pass(Reason::Fragment)
            } else {
                self.counters.totals.fragments_dropped += 1;
                Decision::drop(Reason::FragmentWithoutFirst)
            };
        }
        if let Some(hit) = self.conntrack.lookup(&peer, flow, now) {
            if hit.epoch >= self.policy_epoch && hit.epoch >= hit.peer_epoch {
                self.counters.totals.established += 1;
                let mut d = Decision::pass(Reason::Established);
                d.high = self
                    .policy
                    .as_ref()
                    .is_some_and(|p| p.rule_is_high(hit.rule));
                return d;
            }
            let Some(policy) = self.policy.clone() else {
                return Decision::pass(Reason::NoPolicy);
            };
            return match self.recheck_one(&policy, hit.id, now) {
                None => {
                    self.counters.totals.established += 1;
                    Decision::pass(Reason::Established)
                }
                Some(cut) => Decision {
                    high: false,
                    // A rejected flow is answered (TCP RST), so its ends learn at once.
                    disposition: if cut.verdict.action == Action::Reject {
                        Disposition::Reject
                    } else {
                        Disposition::Drop
                    },
                    reason: Reason::Cut(cut.verdict),
                },
            };
        }
        if flow.icmp.is_some_and(|i| i.quoted.is_some())
            && self.conntrack.related(&peer, flow, now).is_some()
        {
            self.counters.totals.related += 1;
            return Decision::pass(Reason::Related);
        }
        // A new flow (the slow path: the Arc is cloned so the caches can be borrowed mutably).
        let Some(policy) = self.policy.clone() else {
            return Decision::pass(Reason::NoPolicy);
        };
        let Some(v) = self.evaluate(&policy, &peer, path, flow) else {
            self.counters.totals.unknown_peer += 1;
            return Decision::drop(Reason::UnknownPeer);
        };
        self.counters.record(&v);
        if !v.is_allow() {
            return Decision::of(v, &policy);
        }
        if let Fragment::First { ident } = flow.fragment {
            self.conntrack.remember_fragment(flow, ident, now);
        }
        if Conntrack::<P>::trackable(flow) {
            let meta = FlowMeta {
                epoch: self.epoch,
                rule: v.rule().map_or(u32::MAX, |r| r.0),
                tag: path.to_bits(),
            };
            if let Err(why) = self.conntrack.insert(peer, flow, meta, now) {
                self.counters.refused(why);
                return Decision::drop(Reason::Refused(why));
            }
        }
        Decision::of(v, &policy)
    }

    /// Re-evaluate tracked flow `id` if it is older than its epoch; keep it (refreshing its epoch
    /// and rule) or remove it and report it.
    fn recheck_one(&mut self, policy: &CompiledPolicy, id: FlowId, now: Instant) -> Option<Cut<P>> {
        let t = self.conntrack.get(id, now)?;
        let peer_epoch = self.peer_epoch(&t.peer);
        if t.epoch >= self.policy_epoch && t.epoch >= peer_epoch {
            return None;
        }
        let path = FlowPath::from_bits(t.tag);
        match self.evaluate(policy, &t.peer, path, &t.flow) {
            Some(v) if v.is_allow() => {
                self.conntrack
                    .update(id, self.epoch, v.rule().map_or(u32::MAX, |r| r.0));
                None
            }
            v => {
                self.conntrack.remove(id);
                self.counters.totals.cut += 1;
                let verdict = v.unwrap_or(Verdict {
                    action: Action::Deny,
                    tier: None,
                    decided_by: super::eval::Decider::Default,
                    logged: None,
                });
                Some(Cut {
                    id,
                    peer: t.peer,
                    flow: t.flow,
                    path,
                    verdict,
                })
            }
        }
    }

    fn peer_epoch(&self, peer: &P) -> u32 {
        // The tracker holds it; a flow's peer always has a slot there.
        self.conntrack.peer_epoch(peer).unwrap_or(0)
    }

    /// Re-check every tracked flow against the policy in force now, removing and yielding those it
    /// no longer allows. Lazy: stop early and the rest is re-checked when its next packet comes.
    /// Without a policy nothing is cut.
    pub fn recheck(&mut self, now: Instant) -> impl Iterator<Item = Cut<P>> + '_ {
        let mut cursor = 0usize;
        std::iter::from_fn(move || {
            let policy = self.policy.clone()?;
            loop {
                let (id, next) = self.conntrack.next_flow(cursor)?;
                cursor = next;
                if let Some(cut) = self.recheck_one(&policy, id, now) {
                    return Some(cut);
                }
            }
        })
    }

    /// Re-check the flows of `peer` only (after [`Filter::set_peer`] changed its identity).
    pub fn recheck_peer(&mut self, peer: &P, now: Instant) -> impl Iterator<Item = Cut<P>> + '_ {
        let mut ids = self.conntrack.peer_flows(peer).into_iter();
        std::iter::from_fn(move || {
            let policy = self.policy.clone()?;
            for id in ids.by_ref() {
                if let Some(cut) = self.recheck_one(&policy, id, now) {
                    return Some(cut);
                }
            }
            None
        })
    }

    /// Explain what the policy says about `flow` on `path` for `peer` and whether a tracked flow
    /// carries it (changes no state).
    pub fn explain(
        &self,
        peer: &P,
        path: FlowPath,
        flow: &Flow,
        now: Instant,
    ) -> LiveExplanation<P> {
        let tracked = self
            .conntrack
            .find(flow)
            .and_then(|id| self.conntrack.get(id, now))
            .filter(|t| t.peer == *peer);
        let policy = self.policy.as_ref().map(|p| {
            let remote = |kind: EndKind| match (kind, self.peers.get(peer)) {
                (EndKind::Member, Some(m)) => End::Member(&m.member),
                _ => End::External,
            };
            let local = match path.local {
                EndKind::Member => End::Local(&self.local),
                EndKind::Routed => End::External,
            };
            match path.direction {
                Direction::Outbound => p.explain(flow, local, remote(path.remote)),
                Direction::Inbound => p.explain(flow, remote(path.remote), local),
            }
        });
        LiveExplanation { tracked, policy }
    }

    /// When [`Filter::handle_timeout`] wants to run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.conntrack.poll_timeout()
    }

    /// Expire tracked flows (bounded work).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.conntrack.handle_timeout(now);
    }

    /// The connection tracker (read-only: status, metrics, memory).
    pub fn conntrack(&self) -> &Conntrack<P> {
        &self.conntrack
    }

    /// A snapshot of the counters.
    pub fn counters(&self) -> CountersSnapshot {
        self.counters
            .snapshot(self.policy.as_deref(), self.conntrack.stats())
    }
}

#[cfg(test)]
mod tests;
