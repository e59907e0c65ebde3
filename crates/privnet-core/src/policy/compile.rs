//! `PolicySpec` → [`CompiledPolicy`]: the meaning is checked, names and groups are interned, and
//! every tier becomes a lookup structure whose per-packet cost does not grow with a linear scan.
//!
//! ## The compiled form
//! Each rule is expanded into *entries*: one per combination of a `from` variant and a `to` variant
//! (identity-only atoms of a side fold into one variant, address-only atoms into another, an atom
//! with both is its own), so every entry is a plain conjunction over five dimensions:
//!
//! | dimension | how a packet finds the matching entries |
//! |---|---|
//! | initiator identity | a bit set per identity class, computed once when the identity is first seen |
//! | responder identity | the same |
//! | protocol + port / ICMP type-code | a 257-entry slot table, then per slot a wildcard bit set and an interval index over the 16-bit value |
//! | source address | entries without a condition in a bit set; the others in interval indexes (IPv4, IPv6) |
//! | destination address | the same |
//!
//! A packet ANDs these word by word, in entry order, and stops at the first word with a bit set:
//! first match wins without visiting rules one by one. Sparse lists (from the interval indexes) are
//! merged into the words on the fly, so evaluation allocates nothing. Entries that an index budget
//! left out are *residual*: they are in the wildcard sets and checked exactly when they come up.

use std::collections::HashMap;

use super::bitset::Bitset;
use super::cidr::{IpSet, RangeSet};
use super::error::{Location, PolicyError, Problems};
use super::flow::{Flow, Protocol};
use super::hash::policy_hash;
use super::interval::IntervalIndex;
use super::limits::{compile_limits, LimitInfo};
use super::spec::{
    Action, Atom, DefaultAction, MatchAtom, PolicySpec, Priority, ProtoSpec, RuleSpec, Selector,
    TestEnd, Tier,
};

/// At most this many entries (rules × selector variants) in one policy.
pub const MAX_ENTRIES: usize = 1 << 20;
/// Interval-index budget per index ((interval, entry) pairs); beyond it entries become residual.
const INDEX_BUDGET: usize = 1 << 22;
/// Longest rule id.
const MAX_ID_LEN: usize = 128;

/// A rule, by its position in the compiled policy (tier-major order). Cheap to copy and to count
/// with; [`CompiledPolicy::rule`] gives its stable id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleIdx(pub(crate) u32);

impl RuleIdx {
    /// Position in [`CompiledPolicy::rules`].
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// What the compiled policy keeps about a rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleInfo {
    /// The stable id: the file's `id`, else `tier/position` (e.g. `application/3`).
    pub id: String,
    /// Its tier.
    pub tier: Tier,
    /// Position in the tier, from 0.
    pub position: usize,
    /// Its action.
    pub action: Action,
    /// The class of the flows it allows ([`Priority::Normal`] for every rule but an `allow`).
    pub priority: Priority,
    /// Where it starts in the file.
    pub location: Option<Location>,
}

/// An identity predicate over one end of a flow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum IdPred {
    /// Anything, member or not.
    Any,
    /// Any member.
    Member,
    /// The enforcing member.
    Local,
    /// A member with one of `names` (if any), one of `any` (if any) and all of `all`.
    Match {
        names: Box<[u32]>,
        any: Box<[u64]>,
        all: Box<[u64]>,
    },
    /// One of these.
    Union(Box<[IdPred]>),
}

/// One end of a flow, resolved against a policy's interned names and groups.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Resolved {
    pub(crate) kind: PartyKind,
    pub(crate) name: Option<u32>,
    pub(crate) groups: Box<[u64]>,
}

/// What an end of a flow is, from the enforcing member's point of view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum PartyKind {
    Local,
    Member,
    External,
}

impl IdPred {
    pub(crate) fn matches(&self, p: &Resolved) -> bool {
        match self {
            Self::Any => true,
            Self::Member => p.kind != PartyKind::External,
            Self::Local => p.kind == PartyKind::Local,
            Self::Match { names, any, all } => {
                p.kind != PartyKind::External
                    && (names.is_empty() || p.name.is_some_and(|n| names.contains(&n)))
                    && (any.iter().all(|w| *w == 0)
                        || any.iter().zip(p.groups.iter()).any(|(a, g)| a & g != 0))
                    && all
                        .iter()
                        .enumerate()
                        .all(|(i, a)| a & !p.groups.get(i).copied().unwrap_or(0) == 0)
            }
            Self::Union(v) => v.iter().any(|x| x.matches(p)),
        }
    }
}

/// One conjunction: a rule's (from variant × to variant).
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub(crate) rule: u32,
    pub(crate) action: Action,
    pub(crate) from: IdPred,
    pub(crate) to: IdPred,
    /// Index into `CompiledPolicy::sets`, or no address condition.
    pub(crate) src: Option<u32>,
    pub(crate) dst: Option<u32>,
    pub(crate) protos: ProtoSpec,
    /// Port or ICMP `type << 8 | code` values; `None`: any.
    pub(crate) values: Option<RangeSet<u16>>,
}

/// Why an entry does not match a flow (the first condition that fails, in this order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mismatch {
    /// The initiator is not selected by `from`.
    From,
    /// The responder is not selected by `to`.
    To,
    /// The protocol is not one of the rule's.
    Proto,
    /// The port or ICMP type/code is not one of the rule's.
    Port,
    /// The initiator's address is outside the rule's `from` prefixes.
    SrcAddress,
    /// The responder's address is outside the rule's `to` prefixes.
    DstAddress,
}

impl Entry {
    /// The packet dimensions (protocol, value, addresses), exactly.
    pub(crate) fn check_packet(&self, sets: &[IpSet], flow: &Flow) -> Result<(), Mismatch> {
        let proto = flow.effective_proto();
        if !self.protos.contains(proto) {
            return Err(Mismatch::Proto);
        }
        if let Some(v) = &self.values {
            if !flow.selector_value().is_some_and(|x| v.contains(x)) {
                return Err(Mismatch::Port);
            }
        }
        let within = |set: Option<u32>, a| {
            set.is_none_or(|i| sets.get(i as usize).is_some_and(|s| s.contains(a)))
        };
        if !within(self.src, flow.src) {
            return Err(Mismatch::SrcAddress);
        }
        if !within(self.dst, flow.dst) {
            return Err(Mismatch::DstAddress);
        }
        Ok(())
    }

    /// Every dimension, exactly.
    pub(crate) fn check(
        &self,
        sets: &[IpSet],
        flow: &Flow,
        src: &Resolved,
        dst: &Resolved,
    ) -> Result<(), Mismatch> {
        if !self.from.matches(src) {
            return Err(Mismatch::From);
        }
        if !self.to.matches(dst) {
            return Err(Mismatch::To);
        }
        self.check_packet(sets, flow)
    }
}

/// Per protocol slot: entries matching with any value, and an index over the values.
#[derive(Clone, Debug, Default)]
pub(crate) struct ProtoIndex {
    pub(crate) wild: Bitset,
    pub(crate) values: IntervalIndex<u16>,
}

/// Per address end: entries without a condition, and indexes over the others.
#[derive(Clone, Debug, Default)]
pub(crate) struct AddrIndex {
    pub(crate) none: Bitset,
    pub(crate) v4: IntervalIndex<u32>,
    pub(crate) v6: IntervalIndex<u128>,
}

impl AddrIndex {
    #[inline]
    pub(crate) fn lookup(&self, a: std::net::IpAddr) -> &[u32] {
        match a {
            std::net::IpAddr::V4(a) => self.v4.lookup(u32::from(a)),
            std::net::IpAddr::V6(a) => self.v6.lookup(u128::from(a)),
        }
    }
}

/// Slot of protocols that no rule of the tier names.
pub(crate) const SLOT_OTHER: u8 = 0;
/// Slot of the `unknown` class.
pub(crate) const SLOT_UNKNOWN: u8 = 1;

/// One tier's lookup structure.
#[derive(Clone, Debug)]
pub(crate) struct TierIndex {
    pub(crate) entries: Vec<Entry>,
    pub(crate) proto_slot: Box<[u8; 257]>,
    pub(crate) protos: Vec<ProtoIndex>,
    pub(crate) src: AddrIndex,
    pub(crate) dst: AddrIndex,
    /// Entries to check exactly when they come up (left out of an index by its budget).
    pub(crate) residual: Bitset,
}

impl TierIndex {
    pub(crate) fn words(&self) -> usize {
        self.entries.len().div_ceil(64)
    }
}

/// A checked, indexed, hashed policy: immutable, shared as `Arc<CompiledPolicy>`, swapped whole.
#[derive(Clone, Debug)]
pub struct CompiledPolicy {
    pub(crate) spec: PolicySpec,
    pub(crate) hash: [u8; 32],
    pub(crate) rules: Vec<RuleInfo>,
    /// Global index of each tier's first rule.
    pub(crate) tier_start: [u32; 3],
    pub(crate) tiers: [TierIndex; 3],
    pub(crate) names: HashMap<String, u32>,
    pub(crate) groups: HashMap<String, u32>,
    pub(crate) group_words: usize,
    pub(crate) sets: Vec<IpSet>,
    /// The rate limits, in file order.
    pub(crate) limits: Vec<LimitInfo>,
    /// Tests force one evaluation strategy: `Some(true)` sparse whenever a candidate list
    /// exists, `Some(false)` always dense; `None` picks the cheaper.
    pub(crate) force_sparse: Option<bool>,
    /// The `[[route]]` entries (`routes.rs`).
    pub(crate) routes: super::routes::RouteTable,
}

impl CompiledPolicy {
    /// The BLAKE2s-256 hash of the canonical encoding (see `hash.rs`): equal for policies that
    /// enforce the same rules with the same ids.
    pub fn hash(&self) -> [u8; 32] {
        self.hash
    }

    /// The hash in lower-case hex.
    pub fn hash_hex(&self) -> String {
        self.hash.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Whether rule `rule` (a global index, as kept by the connection tracker) allows flows of
    /// the high priority class. `false` for an index out of range (`u32::MAX`: the default).
    #[inline]
    pub fn rule_is_high(&self, rule: u32) -> bool {
        self.rules
            .get(rule as usize)
            .is_some_and(|r| r.priority == Priority::High)
    }

    /// What no tier deciding means.
    pub fn default_action(&self) -> DefaultAction {
        self.spec.default
    }

    /// The source it was compiled from.
    pub fn spec(&self) -> &PolicySpec {
        &self.spec
    }

    /// The routing entries (`[[route]]`).
    pub fn routes(&self) -> &super::routes::RouteTable {
        &self.routes
    }

    /// Every rule, tier-major.
    pub fn rules(&self) -> &[RuleInfo] {
        &self.rules
    }

    /// One rule (`None` for an index of another policy).
    pub fn rule(&self, r: RuleIdx) -> Option<&RuleInfo> {
        self.rules.get(r.index())
    }

    /// The rule with stable id `id`.
    pub fn find_rule(&self, id: &str) -> Option<RuleIdx> {
        self.rules
            .iter()
            .position(|r| r.id == id)
            .and_then(|i| u32::try_from(i).ok())
            .map(RuleIdx)
    }

    /// The rate limits (`[[limits]]`), in file order.
    pub fn limits(&self) -> &[LimitInfo] {
        &self.limits
    }

    /// Number of entries (rules × selector variants) over all tiers.
    pub fn entry_count(&self) -> usize {
        self.tiers.iter().map(|t| t.entries.len()).sum()
    }

    /// Bytes held by the lookup structure (indexes and bit sets; not the source).
    pub fn index_bytes(&self) -> usize {
        self.tiers
            .iter()
            .map(|t| {
                t.protos
                    .iter()
                    .map(|p| p.wild.bytes() + p.values.bytes())
                    .sum::<usize>()
                    + t.src.none.bytes()
                    + t.src.v4.bytes()
                    + t.src.v6.bytes()
                    + t.dst.none.bytes()
                    + t.dst.v4.bytes()
                    + t.dst.v6.bytes()
                    + t.residual.bytes()
                    + t.entries.len() * std::mem::size_of::<Entry>()
            })
            .sum()
    }
}

/// Compile `spec`; `file` names it in errors. Every problem is reported, in file order.
///
/// # Errors
/// A [`PolicyError`] listing every problem: an empty selector, ports on a protocol without ports,
/// ICMP types on another protocol, an inverted port range, a duplicate or malformed id, an embedded
/// test that names an unknown rule or expects `pass`/`log`, a policy too large.
pub fn compile(spec: &PolicySpec, file: &str) -> Result<CompiledPolicy, PolicyError> {
    compile_with_budget(spec, file, INDEX_BUDGET)
}

/// [`compile`] with another interval-index budget (tests force residual entries with a small one).
pub(crate) fn compile_with_budget(
    spec: &PolicySpec,
    file: &str,
    budget: usize,
) -> Result<CompiledPolicy, PolicyError> {
    let mut c = Compiler {
        problems: Problems::default(),
        names: HashMap::new(),
        groups: HashMap::new(),
        sets: Vec::new(),
        set_ids: HashMap::new(),
    };
    let mut rules = Vec::new();
    let mut tier_start = [0u32; 3];
    let mut ids: HashMap<&str, Option<Location>> = HashMap::new();
    for tier in Tier::ALL {
        tier_start[tier.index()] = u32::try_from(rules.len()).unwrap_or(u32::MAX);
        for (pos, r) in spec.tiers[tier.index()].iter().enumerate() {
            let key = format!("{}[{pos}]", tier.name());
            let id = match &r.id {
                Some(id) => {
                    c.check_id(&key, id, r.location);
                    if let Some(first) = ids.insert(id.as_str(), r.location) {
                        let at = first.map_or(String::new(), |l| format!(" (line {})", l.line));
                        c.problems.push(
                            r.location,
                            format!("{key}.id"),
                            format!("a unique id: `{id}` is already used{at}"),
                        );
                    }
                    id.clone()
                }
                None => format!("{}/{pos}", tier.name()),
            };
            c.check_rule(&key, r);
            rules.push(RuleInfo {
                id,
                tier,
                position: pos,
                action: r.action,
                priority: if r.action == Action::Allow {
                    r.priority
                } else {
                    Priority::Normal
                },
                location: r.location,
            });
        }
    }
    // Intern every name and group first, so group masks have their final width.
    for r in spec.tiers.iter().flatten() {
        for a in r.from.0.iter().chain(&r.to.0) {
            if let Atom::Match(m) = a {
                for n in &m.members {
                    let next = c.names.len() as u32;
                    c.names.entry(n.clone()).or_insert(next);
                }
                for g in m.groups_any.iter().chain(&m.groups_all) {
                    let next = c.groups.len() as u32;
                    c.groups.entry(g.clone()).or_insert(next);
                }
            }
        }
    }
    let group_words = c.groups.len().div_ceil(64);
    let mut tiers = Vec::with_capacity(3);
    let mut total = 0usize;
    for tier in Tier::ALL {
        let mut entries = Vec::new();
        for (pos, r) in spec.tiers[tier.index()].iter().enumerate() {
            let rule = tier_start[tier.index()] + pos as u32;
            let from = c.variants(&r.from, group_words);
            let to = c.variants(&r.to, group_words);
            total = total.saturating_add(from.len() * to.len());
            if total > MAX_ENTRIES {
                continue;
            }
            let values = rule_values(r);
            for (fp, fs) in &from {
                for (tp, ts) in &to {
                    entries.push(Entry {
                        rule,
                        action: r.action,
                        from: fp.clone(),
                        to: tp.clone(),
                        src: *fs,
                        dst: *ts,
                        protos: r.proto.clone(),
                        values: values.clone(),
                    });
                }
            }
        }
        tiers.push(index_tier(entries, &c.sets, budget));
    }
    if total > MAX_ENTRIES {
        c.problems.push(
            None,
            "",
            format!(
                "at most {MAX_ENTRIES} rule entries (rules times selector alternatives); this policy has {total}"
            ),
        );
    }
    check_tests(spec, &rules, &mut c.problems);
    let limits = compile_limits(&spec.limits, &mut c.problems);
    let routes = super::routes::compile(&spec.routes, &mut c.problems);
    if !c.problems.is_empty() {
        return Err(c.problems.into_error(file));
    }
    let tiers: [TierIndex; 3] = match tiers.try_into() {
        Ok(t) => t,
        Err(_) => return Err(PolicyError::one(file, None, "", "three tiers (internal)")),
    };
    Ok(CompiledPolicy {
        hash: policy_hash(spec),
        spec: spec.clone(),
        rules,
        tier_start,
        tiers,
        names: c.names,
        groups: c.groups,
        group_words,
        sets: c.sets,
        limits,
        force_sparse: None,
        routes,
    })
}

struct Compiler {
    problems: Problems,
    names: HashMap<String, u32>,
    groups: HashMap<String, u32>,
    sets: Vec<IpSet>,
    set_ids: HashMap<IpSet, u32>,
}

impl Compiler {
    fn check_id(&mut self, key: &str, id: &str, at: Option<Location>) {
        let ok = !id.is_empty()
            && id.len() <= MAX_ID_LEN
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
            && id != "default";
        if !ok {
            self.problems.push(
                at,
                format!("{key}.id"),
                format!(
                    "an id of 1 to {MAX_ID_LEN} letters, digits, `-`, `_`, `.` or `:` other than `default` (ids with `/` are the generated `tier/index` ones)"
                ),
            );
        }
    }

    fn check_rule(&mut self, key: &str, r: &RuleSpec) {
        for (side, sel) in [("from", &r.from), ("to", &r.to)] {
            if sel.0.is_empty() {
                self.problems.push(
                    r.location,
                    format!("{key}.{side}"),
                    "a selector: `\"any\"`, `\"network\"`, `\"self\"`, a table or a list of them (an empty list would match nothing)",
                );
            }
            for a in &sel.0 {
                if let Atom::Match(m) = a {
                    if !m.has_identity() && !m.has_address() {
                        self.problems.push(
                            r.location,
                            format!("{key}.{side}"),
                            "at least one of `members`, `groups`, `cidr`, `except` in a selector table (write `\"any\"` for anything)",
                        );
                    }
                }
            }
        }
        if let ProtoSpec::List(l) = &r.proto {
            if l.is_empty() {
                self.problems.push(
                    r.location,
                    format!("{key}.proto"),
                    "at least one protocol (omit `proto` for any)",
                );
            }
            if !r.ports.is_empty() && !l.iter().all(|p| p.has_ports()) {
                self.problems.push(
                    r.location,
                    format!("{key}.ports"),
                    "ports only with protocols that have ports (`tcp`, `udp`, `sctp`); split the rule",
                );
            }
            if !r.icmp.is_empty() && !l.iter().all(|p| p.is_icmp()) {
                self.problems.push(
                    r.location,
                    format!("{key}.icmp"),
                    "ICMP types only with `proto = \"icmp\"` or `\"icmpv6\"`; split the rule",
                );
            }
        } else {
            if !r.ports.is_empty() {
                self.problems.push(
                    r.location,
                    format!("{key}.ports"),
                    "a `proto` (`tcp`, `udp` or `sctp`) with `ports`",
                );
            }
            if !r.icmp.is_empty() {
                self.problems.push(
                    r.location,
                    format!("{key}.icmp"),
                    "a `proto` (`icmp` or `icmpv6`) with `icmp`",
                );
            }
        }
        for p in &r.ports {
            if p.lo > p.hi {
                self.problems.push(
                    r.location,
                    format!("{key}.ports"),
                    format!("a range low-high with low <= high, not {}-{}", p.lo, p.hi),
                );
            }
        }
    }

    fn set_id(&mut self, s: IpSet) -> u32 {
        if let Some(&i) = self.set_ids.get(&s) {
            return i;
        }
        let i = self.sets.len() as u32;
        self.sets.push(s.clone());
        self.set_ids.insert(s, i);
        i
    }

    fn pred(&self, m: &MatchAtom, words: usize) -> IdPred {
        let mask = |gs: &[String]| {
            let mut v = vec![0u64; words];
            for g in gs {
                if let Some(&i) = self.groups.get(g) {
                    if let Some(w) = v.get_mut(i as usize / 64) {
                        *w |= 1 << (i % 64);
                    }
                }
            }
            v.into_boxed_slice()
        };
        let mut names: Vec<u32> = m
            .members
            .iter()
            .filter_map(|n| self.names.get(n).copied())
            .collect();
        names.sort_unstable();
        names.dedup();
        IdPred::Match {
            names: names.into_boxed_slice(),
            any: mask(&m.groups_any),
            all: mask(&m.groups_all),
        }
    }

    /// The variants of one side (see the module docs): (identity predicate, address set).
    fn variants(&mut self, sel: &Selector, words: usize) -> Vec<(IdPred, Option<u32>)> {
        if sel.0.iter().any(|a| matches!(a, Atom::Any)) {
            return vec![(IdPred::Any, None)];
        }
        let mut ids = Vec::new();
        let mut addr: Option<IpSet> = None;
        let mut mixed = Vec::new();
        for a in &sel.0 {
            match a {
                Atom::Any => {}
                Atom::Network => ids.push(IdPred::Member),
                Atom::Local => ids.push(IdPred::Local),
                Atom::Match(m) => {
                    let set = m
                        .has_address()
                        .then(|| IpSet::from_cidr_except(&m.cidr, &m.except));
                    match (m.has_identity(), set) {
                        (true, None) => ids.push(self.pred(m, words)),
                        (false, Some(s)) => {
                            addr = Some(addr.map_or_else(|| s.clone(), |a| a.union(&s)));
                        }
                        (true, Some(s)) => mixed.push((self.pred(m, words), s)),
                        (false, None) => {} // reported by check_rule
                    }
                }
            }
        }
        let mut out = Vec::new();
        match ids.len() {
            0 => {}
            1 => out.extend(ids.pop().map(|p| (p, None))),
            _ => out.push((IdPred::Union(ids.into_boxed_slice()), None)),
        }
        if let Some(s) = addr {
            if s.is_full() {
                return vec![(IdPred::Any, None)];
            }
            let id = self.set_id(s);
            out.push((IdPred::Any, Some(id)));
        }
        for (p, s) in mixed {
            let id = (!s.is_full()).then(|| self.set_id(s));
            out.push((p, id));
        }
        out
    }
}

/// The 16-bit values a rule selects (ports or ICMP type/code), `None` for any.
fn rule_values(r: &RuleSpec) -> Option<RangeSet<u16>> {
    if !r.ports.is_empty() {
        Some(RangeSet::from_ranges(
            r.ports.iter().map(|p| (p.lo, p.hi)).collect(),
        ))
    } else if !r.icmp.is_empty() {
        Some(RangeSet::from_ranges(
            r.icmp.iter().map(|m| m.range()).collect(),
        ))
    } else {
        None
    }
}

fn index_tier(entries: Vec<Entry>, sets: &[IpSet], budget: usize) -> TierIndex {
    let n = entries.len();
    let mut residual = Bitset::new(n);
    // Protocol slots: other, unknown, then every number a rule of the tier names.
    let mut proto_slot = Box::new([SLOT_OTHER; 257]);
    proto_slot[256] = SLOT_UNKNOWN;
    let mut slot_proto: Vec<Option<Protocol>> = vec![None, Some(Protocol::Unknown)];
    for e in &entries {
        if let ProtoSpec::List(l) = &e.protos {
            for p in l {
                if let Protocol::Number(_) = p {
                    let i = p.table_index();
                    if proto_slot[i] == SLOT_OTHER && slot_proto.len() < 255 {
                        proto_slot[i] = slot_proto.len() as u8;
                        slot_proto.push(Some(*p));
                    }
                }
            }
        }
    }
    let mut protos = Vec::with_capacity(slot_proto.len());
    for sp in &slot_proto {
        let selects = |e: &Entry| match sp {
            None => e.protos == ProtoSpec::Any,
            Some(p) => e.protos.contains(*p),
        };
        let mut wild = Bitset::new(n);
        let mut items = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            if !selects(e) {
                continue;
            }
            match &e.values {
                None => wild.set(i),
                Some(v) => items.push((i as u32, v)),
            }
        }
        let (values, left) = IntervalIndex::build(&items, budget);
        for i in left {
            wild.set(i as usize);
            residual.set(i as usize);
        }
        protos.push(ProtoIndex { wild, values });
    }
    let src = addr_index(&entries, sets, |e| e.src, &mut residual, budget);
    let dst = addr_index(&entries, sets, |e| e.dst, &mut residual, budget);
    TierIndex {
        entries,
        proto_slot,
        protos,
        src,
        dst,
        residual,
    }
}

fn addr_index(
    entries: &[Entry],
    sets: &[IpSet],
    side: impl Fn(&Entry) -> Option<u32>,
    residual: &mut Bitset,
    budget: usize,
) -> AddrIndex {
    let n = entries.len();
    let mut none = Bitset::new(n);
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        match side(e).and_then(|s| sets.get(s as usize)) {
            None => none.set(i),
            Some(set) => {
                v4.push((i as u32, &set.v4));
                v6.push((i as u32, &set.v6));
            }
        }
    }
    let (v4, left4) = IntervalIndex::build(&v4, budget);
    let (v6, left6) = IntervalIndex::build(&v6, budget);
    for i in left4.into_iter().chain(left6) {
        none.set(i as usize);
        residual.set(i as usize);
    }
    AddrIndex { none, v4, v6 }
}

/// Embedded tests must name existing rules and expect a final action.
fn check_tests(spec: &PolicySpec, rules: &[RuleInfo], p: &mut Problems) {
    for (i, t) in spec.tests.iter().enumerate() {
        if !matches!(t.expect, Action::Allow | Action::Deny | Action::Reject) {
            p.push(
                t.location,
                format!("test[{i}].expect"),
                "`allow`, `deny` or `reject` (a flow's final verdict)",
            );
        }
        if let Some(r) = &t.rule {
            if r != "default" && !rules.iter().any(|x| &x.id == r) {
                p.push(
                    t.location,
                    format!("test[{i}].rule"),
                    format!("the id of a rule of this policy or `default`; there is no rule `{r}`"),
                );
            }
        }
        if matches!((&t.from, &t.to), (TestEnd::Address(_), TestEnd::Address(_))) {
            p.push(
                t.location,
                format!("test[{i}]"),
                "at least one member end (`from` or `to` with `member = ...`): an enforcing member must see the flow",
            );
        }
    }
}
