//! Counters of the filter, as plain data for `privnet status` and `/metrics`. Cardinality is
//! bounded by the number of rules (ids, never flows or addresses).

use super::compile::{CompiledPolicy, RuleIdx};
use super::conntrack::{ConntrackStats, Refused};
use super::eval::{Decider, Verdict};
use super::spec::{Action, Tier};

/// Totals over all rules.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Totals {
    /// New flows allowed (by a rule or the default).
    pub allowed: u64,
    /// New-flow decisions that denied (every packet of a denied flow is a new decision).
    pub denied: u64,
    /// New-flow decisions that rejected.
    pub rejected: u64,
    /// ... of which decided by the default (allowed or denied).
    pub defaulted: u64,
    /// ... of which were the `unknown` class, denied with no rule for it.
    pub unknown_denied: u64,
    /// Packets passed as part of a tracked flow.
    pub established: u64,
    /// ICMP errors passed as related to a tracked flow.
    pub related: u64,
    /// Later fragments passed after their allowed first fragment.
    pub fragments_passed: u64,
    /// Later fragments dropped: no allowed first fragment remembered.
    pub fragments_dropped: u64,
    /// Allowed new flows dropped because the tracker refused them (see the tracker's counters for
    /// why).
    pub refused: u64,
    /// Tracked flows cut by a re-check (reload, identity change).
    pub cut: u64,
    /// Packets of a peer with no registered identity (dropped).
    pub unknown_peer: u64,
}

/// One rule's counter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleCount {
    /// Stable id.
    pub id: String,
    /// Tier.
    pub tier: Tier,
    /// Action.
    pub action: Action,
    /// New-flow decisions it took (for `log`: flows it logged; for `pass`: flows it passed on).
    pub hits: u64,
}

/// A snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CountersSnapshot {
    /// The policy in force (lower-case hex hash), if any.
    pub policy_hash: Option<String>,
    /// Per rule, in policy order.
    pub rules: Vec<RuleCount>,
    /// Drops (deny and reject decisions) by tier, and by the default (index 3).
    pub drops_by_tier: [u64; 4],
    /// Totals.
    pub totals: Totals,
    /// The connection tracker's own counters.
    pub conntrack: ConntrackStats,
}

/// The live counters.
#[derive(Clone, Debug, Default)]
pub struct PolicyCounters {
    pub(crate) hits: Vec<u64>,
    pub(crate) totals: Totals,
    pub(crate) default_drops: u64,
}

impl PolicyCounters {
    /// Counters for `policy`, carrying over the hits of rules with the same id from `old`.
    pub(crate) fn rebase(&mut self, old: Option<&CompiledPolicy>, new: Option<&CompiledPolicy>) {
        let mut hits = vec![0u64; new.map_or(0, |p| p.rules().len())];
        if let (Some(old), Some(new)) = (old, new) {
            for (i, r) in old.rules().iter().enumerate() {
                if let Some(j) = new.find_rule(&r.id) {
                    if let (Some(dst), Some(src)) = (hits.get_mut(j.index()), self.hits.get(i)) {
                        *dst = *src;
                    }
                }
            }
        }
        self.hits = hits;
    }

    #[inline]
    fn hit(&mut self, r: RuleIdx) {
        if let Some(h) = self.hits.get_mut(r.index()) {
            *h += 1;
        }
    }

    /// Record a new-flow decision (including the rules it passed through: the deciding one and
    /// the first `log`).
    #[inline]
    pub(crate) fn record(&mut self, v: &Verdict) {
        if let Some(l) = v.logged {
            self.hit(l);
        }
        match v.decided_by {
            Decider::Rule(r) => self.hit(r),
            Decider::Default => self.totals.defaulted += 1,
            Decider::UnknownProtocol => self.totals.unknown_denied += 1,
            Decider::NonFirstFragment => {}
        }
        match v.action {
            Action::Allow => self.totals.allowed += 1,
            Action::Reject => self.totals.rejected += 1,
            _ => self.totals.denied += 1,
        }
        if !v.is_allow() && v.rule().is_none() {
            self.default_drops += 1;
        }
    }

    pub(crate) fn refused(&mut self, _why: Refused) {
        self.totals.refused += 1;
    }

    /// The snapshot for `policy` (the one these counters were rebased on).
    pub(crate) fn snapshot(
        &self,
        policy: Option<&CompiledPolicy>,
        ct: ConntrackStats,
    ) -> CountersSnapshot {
        let mut rules = Vec::new();
        let mut drops = [0u64; 4];
        if let Some(p) = policy {
            for (i, r) in p.rules().iter().enumerate() {
                let hits = self.hits.get(i).copied().unwrap_or(0);
                if matches!(r.action, Action::Deny | Action::Reject) {
                    drops[r.tier.index()] += hits;
                }
                rules.push(RuleCount {
                    id: r.id.clone(),
                    tier: r.tier,
                    action: r.action,
                    hits,
                });
            }
        }
        drops[3] = self.default_drops;
        CountersSnapshot {
            policy_hash: policy.map(CompiledPolicy::hash_hex),
            rules,
            drops_by_tier: drops,
            totals: self.totals,
            conntrack: ct,
        }
    }
}
