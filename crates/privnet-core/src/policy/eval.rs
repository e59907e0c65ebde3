//! Evaluation of a [`CompiledPolicy`]: identities are resolved once into bit sets
//! ([`PartyBits`], cached by the caller per identity class), then each new flow costs one slot
//! lookup, three binary searches and an AND over the entry words of each tier until the first
//! match (see `compile.rs`). Nothing here allocates except [`CompiledPolicy::party_bits`].

use super::bitset::Bitset;
use super::compile::{CompiledPolicy, Entry, PartyKind, Resolved, RuleIdx, TierIndex};
use super::flow::{Flow, Fragment, MemberRef, Protocol};
use super::spec::{Action, Tier};

/// What decided a verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Decider {
    /// A rule (its tier is in [`Verdict::tier`]).
    Rule(RuleIdx),
    /// No tier decided: the policy's `default`.
    Default,
    /// No tier decided a packet of the `unknown` protocol class: denied whatever the default.
    UnknownProtocol,
    /// A later fragment is never decided by rules (the filter lets it follow its first fragment).
    NonFirstFragment,
}

/// The policy's answer for one new flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Verdict {
    /// `Allow`, `Deny` or `Reject` (never `Pass` or `Log`).
    pub action: Action,
    /// The tier of the deciding rule, `None` for the default.
    pub tier: Option<Tier>,
    /// What decided.
    pub decided_by: Decider,
    /// The first `log` rule that matched on the way, if any.
    pub logged: Option<RuleIdx>,
}

impl Verdict {
    /// The deciding rule, if a rule decided.
    pub fn rule(&self) -> Option<RuleIdx> {
        match self.decided_by {
            Decider::Rule(r) => Some(r),
            _ => None,
        }
    }

    /// Whether the flow may pass.
    pub fn is_allow(&self) -> bool {
        self.action == Action::Allow
    }
}

/// One end of a flow, for evaluation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End<'a> {
    /// The enforcing member (matches `self`, `network`, its name and groups).
    Local(&'a MemberRef),
    /// Another member (matches `network`, its name and groups).
    Member(&'a MemberRef),
    /// A non-member address: only `any` and address selectors.
    External,
}

/// An identity as a policy sees it: the interned name (if the policy names it), the policy's
/// groups it has, and whether it is the enforcing member, a member or neither. Identities with the
/// same class share their [`PartyBits`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct IdentityClass(pub(crate) Resolved);

/// Which entries of each tier an identity satisfies, as initiator (`from`) and as responder (`to`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartyBits {
    pub(crate) policy: [u8; 32],
    pub(crate) from: [Bitset; 3],
    pub(crate) to: [Bitset; 3],
    /// The same bits as a sorted list, when there are few (an identity named by few rules): a
    /// packet can then visit just those entries.
    pub(crate) from_list: [Option<Box<[u32]>>; 3],
    pub(crate) to_list: [Option<Box<[u32]>>; 3],
}

impl PartyBits {
    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.from.iter().chain(&self.to).map(Bitset::bytes).sum()
    }

    /// The hash of the policy these bits were computed for.
    pub fn policy_hash(&self) -> [u8; 32] {
        self.policy
    }
}

impl CompiledPolicy {
    /// The identity class of `end`.
    pub fn identity_class(&self, end: End<'_>) -> IdentityClass {
        let (kind, m) = match end {
            End::Local(m) => (PartyKind::Local, Some(m)),
            End::Member(m) => (PartyKind::Member, Some(m)),
            End::External => (PartyKind::External, None),
        };
        let mut groups = vec![0u64; self.group_words];
        let mut name = None;
        if let Some(m) = m {
            name = self.names.get(&m.name).copied();
            for g in &m.groups {
                if let Some(&i) = self.groups.get(g) {
                    if let Some(w) = groups.get_mut(i as usize / 64) {
                        *w |= 1 << (i % 64);
                    }
                }
            }
        }
        IdentityClass(Resolved {
            kind,
            name,
            groups: groups.into_boxed_slice(),
        })
    }

    /// The bit sets of an identity class (O(entries); cache the result per class).
    pub fn party_bits(&self, class: &IdentityClass) -> PartyBits {
        let one = |t: &TierIndex, side: fn(&Entry) -> &super::compile::IdPred| {
            let mut b = Bitset::new(t.entries.len());
            for (i, e) in t.entries.iter().enumerate() {
                if side(e).matches(&class.0) {
                    b.set(i);
                }
            }
            b
        };
        let from = self.tiers.each_ref().map(|t| one(t, |e| &e.from));
        let to = self.tiers.each_ref().map(|t| one(t, |e| &e.to));
        let sparse = |b: &Bitset| {
            let ones = b.ones();
            (ones.len() <= b.words.len()).then(|| ones.into_boxed_slice())
        };
        PartyBits {
            policy: self.hash,
            from_list: from.each_ref().map(sparse),
            to_list: to.each_ref().map(sparse),
            from,
            to,
        }
    }

    /// The bit sets of `end` (identity class, then bits).
    pub fn end_bits(&self, end: End<'_>) -> PartyBits {
        self.party_bits(&self.identity_class(end))
    }

    /// Decide a new flow from the initiator `src` to the responder `dst` (their bits from
    /// [`CompiledPolicy::party_bits`] of this policy; bits of another policy match nothing).
    pub fn evaluate(&self, flow: &Flow, src: &PartyBits, dst: &PartyBits) -> Verdict {
        let mut logged = None;
        if let Fragment::NonFirst { .. } = flow.fragment {
            return Verdict {
                action: Action::Deny,
                tier: None,
                decided_by: Decider::NonFirstFragment,
                logged,
            };
        }
        let proto = flow.effective_proto();
        let value = if proto == Protocol::Unknown {
            None
        } else {
            flow.selector_value()
        };
        for tier in Tier::ALL {
            let t = tier.index();
            let index = &self.tiers[t];
            let ends = Ends {
                src: &src.from[t],
                dst: &dst.to[t],
                src_list: src.from_list[t].as_deref(),
                dst_list: dst.to_list[t].as_deref(),
            };
            match self.eval_tier(index, flow, proto, value, &ends, &mut logged) {
                Some(e) if e.action == Action::Pass => continue,
                Some(e) => {
                    return Verdict {
                        action: e.action,
                        tier: Some(tier),
                        decided_by: Decider::Rule(RuleIdx(e.rule)),
                        logged,
                    }
                }
                None => continue,
            }
        }
        if proto == Protocol::Unknown {
            return Verdict {
                action: Action::Deny,
                tier: None,
                decided_by: Decider::UnknownProtocol,
                logged,
            };
        }
        Verdict {
            action: self.spec.default.action(),
            tier: None,
            decided_by: Decider::Default,
            logged,
        }
    }

    /// Convenience for tools and tests: resolve both ends and evaluate (allocates).
    pub fn evaluate_ends(&self, flow: &Flow, src: End<'_>, dst: End<'_>) -> Verdict {
        self.evaluate(flow, &self.end_bits(src), &self.end_bits(dst))
    }

    /// The first terminal entry of `t` matching (recording the first `log` entry on the way).
    ///
    /// Two strategies, same result. When some dimension has no wildcard entries (every entry of
    /// the tier has a port condition for this protocol, or an address condition, or the identity is
    /// named by few rules), its sparse list holds every candidate: the shortest such list is walked
    /// in order and each candidate is checked in the other dimensions (bit tests, and merge walks
    /// of the other sorted lists). Otherwise the dimensions are ANDed word by word.
    #[inline]
    fn eval_tier<'p>(
        &'p self,
        t: &'p TierIndex,
        flow: &Flow,
        proto: Protocol,
        value: Option<u16>,
        ends: &Ends<'_>,
        logged: &mut Option<RuleIdx>,
    ) -> Option<&'p Entry> {
        let n = t.words();
        if n == 0 {
            return None;
        }
        let slot = usize::from(t.proto_slot[proto.table_index()]);
        let pi = t.protos.get(slot)?;
        let vlist = value.map_or(&[][..], |v| pi.values.lookup(v));
        let slist = t.src.lookup(flow.src);
        let dlist = t.dst.lookup(flow.dst);
        // Candidate lists: a dimension without wildcards lists all its candidates.
        let mut driver: Option<&[u32]> = None;
        for (complete, list) in [
            (!pi.wild.nonempty, Some(vlist)),
            (!t.src.none.nonempty, Some(slist)),
            (!t.dst.none.nonempty, Some(dlist)),
            (true, ends.src_list),
            (true, ends.dst_list),
        ] {
            if let (true, Some(l)) = (complete, list) {
                if driver.is_none_or(|d| l.len() < d.len()) {
                    driver = Some(l);
                }
            }
        }
        let dims = Dims {
            t,
            pi,
            ends,
            vlist,
            slist,
            dlist,
        };
        match (driver, self.force_sparse) {
            (Some(d), Some(true)) => self.sparse(&dims, d, flow, logged),
            (Some(d), None) if d.len() <= n => self.sparse(&dims, d, flow, logged),
            _ => self.dense(&dims, n, flow, logged),
        }
    }

    /// Walk the candidates `driver` (sorted) and check each in every dimension.
    #[inline]
    fn sparse<'p>(
        &'p self,
        d: &Dims<'p, '_>,
        driver: &[u32],
        flow: &Flow,
        logged: &mut Option<RuleIdx>,
    ) -> Option<&'p Entry> {
        let (mut vi, mut si, mut di) = (0usize, 0usize, 0usize);
        for &e in driver {
            let i = e as usize;
            if !(d.ends.src.get(i) && d.ends.dst.get(i)) {
                continue;
            }
            if !(d.pi.wild.get(i) || contains(d.vlist, &mut vi, e))
                || !(d.t.src.none.get(i) || contains(d.slist, &mut si, e))
                || !(d.t.dst.none.get(i) || contains(d.dlist, &mut di, e))
            {
                continue;
            }
            if let Some(entry) = self.decide(d.t, i, flow, logged) {
                return Some(entry);
            }
        }
        None
    }

    /// AND the dimensions word by word.
    #[inline]
    fn dense<'p>(
        &'p self,
        d: &Dims<'p, '_>,
        n: usize,
        flow: &Flow,
        logged: &mut Option<RuleIdx>,
    ) -> Option<&'p Entry> {
        let (Some(wild), Some(snone), Some(dnone), Some(sb), Some(db)) = (
            d.pi.wild.words.get(..n),
            d.t.src.none.words.get(..n),
            d.t.dst.none.words.get(..n),
            d.ends.src.words.get(..n),
            d.ends.dst.words.get(..n),
        ) else {
            return None;
        };
        // The list cursors catch up lazily in `merge`, so a word can be skipped at any step.
        let (mut vi, mut si, mut di) = (0usize, 0usize, 0usize);
        for w in 0..n {
            let base = (w as u32) * 64;
            let mut acc = sb[w] & db[w];
            if acc == 0 {
                continue;
            }
            acc &= wild[w] | merge(d.vlist, &mut vi, base);
            if acc == 0 {
                continue;
            }
            acc &= snone[w] | merge(d.slist, &mut si, base);
            if acc == 0 {
                continue;
            }
            acc &= dnone[w] | merge(d.dlist, &mut di, base);
            while acc != 0 {
                let bit = acc.trailing_zeros();
                acc &= acc - 1;
                if let Some(entry) = self.decide(d.t, (base + bit) as usize, flow, logged) {
                    return Some(entry);
                }
            }
        }
        None
    }

    /// Entry `i` matched the indexes: check it exactly if it is residual, record it if it is a
    /// `log`, else it decides.
    #[inline]
    fn decide<'p>(
        &'p self,
        t: &'p TierIndex,
        i: usize,
        flow: &Flow,
        logged: &mut Option<RuleIdx>,
    ) -> Option<&'p Entry> {
        let e = t.entries.get(i)?;
        if t.residual.get(i) && e.check_packet(&self.sets, flow).is_err() {
            return None;
        }
        if e.action == Action::Log {
            if logged.is_none() {
                *logged = Some(RuleIdx(e.rule));
            }
            return None;
        }
        Some(e)
    }
}

/// The identity bits of both ends for one tier.
pub(crate) struct Ends<'a> {
    src: &'a Bitset,
    dst: &'a Bitset,
    src_list: Option<&'a [u32]>,
    dst_list: Option<&'a [u32]>,
}

/// Everything a tier evaluation looks at.
struct Dims<'p, 'a> {
    t: &'p TierIndex,
    pi: &'p super::compile::ProtoIndex,
    ends: &'a Ends<'a>,
    vlist: &'p [u32],
    slist: &'p [u32],
    dlist: &'p [u32],
}

/// Whether sorted `list` holds `e`, advancing `*i` (callers ask in increasing `e`).
#[inline]
fn contains(list: &[u32], i: &mut usize, e: u32) -> bool {
    while let Some(&x) = list.get(*i) {
        if x >= e {
            return x == e;
        }
        *i += 1;
    }
    false
}

/// The bits of `list` (sorted entry indices) that fall in the word starting at entry `base`,
/// advancing `*i` past them.
#[inline]
fn merge(list: &[u32], i: &mut usize, base: u32) -> u64 {
    let mut w = 0u64;
    while let Some(&e) = list.get(*i) {
        if e >= base + 64 {
            break;
        }
        if e >= base {
            w |= 1 << (e - base);
        }
        *i += 1;
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::compile::compile;
    use crate::policy::spec::{DefaultAction, PolicySpec, RuleSpec, Selector};
    use std::net::IpAddr;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn first_match_wins_and_tiers_are_final() {
        let mut p = PolicySpec::new(DefaultAction::Deny);
        p.rule(
            Tier::Platform,
            RuleSpec::new(Action::Deny, Selector::any(), Selector::any())
                .proto(&[Protocol::TCP])
                .ports(&[(23, 23)])
                .id("no-telnet"),
        );
        p.rule(
            Tier::Application,
            RuleSpec::new(
                Action::Allow,
                Selector::groups_any(&["web"]),
                Selector::groups_any(&["db"]),
            )
            .proto(&[Protocol::TCP])
            .ports(&[(5432, 5432), (23, 23)]),
        );
        let c = compile(&p, "t").unwrap();
        let web = MemberRef::new("w1", &["web"]);
        let db = MemberRef::new("d1", &["db"]);
        let f = Flow::tcp(ip("10.0.0.1"), 40000, ip("10.0.0.2"), 5432, 2);
        let v = c.evaluate_ends(&f, End::Local(&web), End::Member(&db));
        assert_eq!(v.action, Action::Allow);
        assert_eq!(v.tier, Some(Tier::Application));
        assert_eq!(c.rule(v.rule().unwrap()).unwrap().id, "application/0");
        let telnet = Flow::tcp(ip("10.0.0.1"), 40000, ip("10.0.0.2"), 23, 2);
        let v = c.evaluate_ends(&telnet, End::Local(&web), End::Member(&db));
        assert_eq!(v.action, Action::Deny);
        assert_eq!(c.rule(v.rule().unwrap()).unwrap().id, "no-telnet");
        // db → web: nothing allows it.
        let back = Flow::tcp(ip("10.0.0.2"), 5432, ip("10.0.0.1"), 40000, 2);
        let v = c.evaluate_ends(&back, End::Local(&db), End::Member(&web));
        assert_eq!((v.action, v.decided_by), (Action::Deny, Decider::Default));
    }

    #[test]
    fn unknown_is_denied_even_with_default_allow() {
        let p = PolicySpec::new(DefaultAction::Allow);
        let c = compile(&p, "t").unwrap();
        let f = Flow::other(ip("10.0.0.1"), ip("10.0.0.2"), Protocol::Unknown);
        let v = c.evaluate_ends(&f, End::External, End::External);
        assert_eq!(v.decided_by, Decider::UnknownProtocol);
        assert_eq!(v.action, Action::Deny);
        let f = Flow::other(ip("10.0.0.1"), ip("10.0.0.2"), Protocol::Number(47));
        assert_eq!(
            c.evaluate_ends(&f, End::External, End::External).action,
            Action::Allow
        );
    }
}
