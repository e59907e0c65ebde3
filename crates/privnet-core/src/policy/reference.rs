//! A naive reference evaluator and a generator of random policies, flows and identities, for the
//! property tests and the `policy_eval` fuzz target (feature `test-util`; not the product).
//!
//! The reference reads the `PolicySpec` directly and scans rules one by one with plain
//! `IpNetwork::contains` and string comparisons: it shares nothing with the compiled form but the
//! input types, so the two agreeing on random inputs is evidence that the compiler and the indexes
//! are right.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnetwork::IpNetwork;

use super::eval::End;
use super::flow::{Flow, Fragment, Icmp, MemberRef, Protocol};
use super::spec::{
    Action, Atom, DefaultAction, IcmpMatch, MatchAtom, PolicySpec, PortRange, ProtoSpec, RuleSpec,
    Selector, Tier,
};

/// What the reference decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefDecider {
    /// Rule `(tier, position)`.
    Rule(Tier, usize),
    /// The default.
    Default,
    /// `unknown` protocol class, undecided.
    Unknown,
    /// A later fragment.
    NonFirst,
}

/// The reference verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RefVerdict {
    /// `Allow`, `Deny` or `Reject`.
    pub action: Action,
    /// What decided.
    pub decided_by: RefDecider,
    /// The first `log` rule matched on the way.
    pub logged: Option<(Tier, usize)>,
}

fn is_member<'a>(e: &End<'a>) -> Option<&'a MemberRef> {
    match e {
        End::Local(m) | End::Member(m) => Some(*m),
        End::External => None,
    }
}

fn atom_matches(a: &Atom, end: &End<'_>, addr: IpAddr) -> bool {
    match a {
        Atom::Any => true,
        Atom::Network => is_member(end).is_some(),
        Atom::Local => matches!(end, End::Local(_)),
        Atom::Match(m) => {
            if m.has_identity() {
                let Some(mem) = is_member(end) else {
                    return false;
                };
                if !m.members.is_empty() && !m.members.contains(&mem.name) {
                    return false;
                }
                if !m.groups_any.is_empty() && !m.groups_any.iter().any(|g| mem.groups.contains(g))
                {
                    return false;
                }
                if !m.groups_all.iter().all(|g| mem.groups.contains(g)) {
                    return false;
                }
            }
            if m.has_address() {
                if !m.cidr.is_empty() && !m.cidr.iter().any(|n| n.contains(addr)) {
                    return false;
                }
                if m.except.iter().any(|n| n.contains(addr)) {
                    return false;
                }
            }
            true
        }
    }
}

fn selector_matches(s: &Selector, end: &End<'_>, addr: IpAddr) -> bool {
    s.0.iter().any(|a| atom_matches(a, end, addr))
}

fn rule_matches(r: &RuleSpec, flow: &Flow, proto: Protocol, src: &End<'_>, dst: &End<'_>) -> bool {
    if !selector_matches(&r.from, src, flow.src) || !selector_matches(&r.to, dst, flow.dst) {
        return false;
    }
    let proto_ok = match &r.proto {
        ProtoSpec::Any => proto != Protocol::Unknown,
        ProtoSpec::List(l) => l.contains(&proto),
    };
    if !proto_ok {
        return false;
    }
    if !r.ports.is_empty() {
        let Some(p) = flow.dst_port.filter(|_| proto.has_ports()) else {
            return false;
        };
        if !r.ports.iter().any(|x| x.lo <= p && p <= x.hi) {
            return false;
        }
    }
    if !r.icmp.is_empty() {
        let Some(i) = flow.icmp.filter(|_| proto.is_icmp()) else {
            return false;
        };
        if !r
            .icmp
            .iter()
            .any(|m| m.ty == i.ty && m.code.is_none_or(|c| c == i.code))
        {
            return false;
        }
    }
    true
}

/// The verdict of `spec` for `flow` from `src` to `dst`, by a linear scan.
pub fn reference_verdict(spec: &PolicySpec, flow: &Flow, src: End<'_>, dst: End<'_>) -> RefVerdict {
    let mut logged = None;
    if matches!(flow.fragment, Fragment::NonFirst { .. }) {
        return RefVerdict {
            action: Action::Deny,
            decided_by: RefDecider::NonFirst,
            logged,
        };
    }
    let proto = if flow.proto.has_ports() && flow.dst_port.is_none() {
        Protocol::Unknown
    } else {
        flow.proto
    };
    'tiers: for tier in Tier::ALL {
        for (i, r) in spec.tiers[tier.index()].iter().enumerate() {
            if !rule_matches(r, flow, proto, &src, &dst) {
                continue;
            }
            match r.action {
                Action::Log => {
                    if logged.is_none() {
                        logged = Some((tier, i));
                    }
                }
                Action::Pass => continue 'tiers,
                a => {
                    return RefVerdict {
                        action: a,
                        decided_by: RefDecider::Rule(tier, i),
                        logged,
                    }
                }
            }
        }
    }
    if proto == Protocol::Unknown {
        return RefVerdict {
            action: Action::Deny,
            decided_by: RefDecider::Unknown,
            logged,
        };
    }
    RefVerdict {
        action: match spec.default {
            DefaultAction::Allow => Action::Allow,
            DefaultAction::Deny => Action::Deny,
        },
        decided_by: RefDecider::Default,
        logged,
    }
}

/// Reads choices from bytes, so that the fuzzer and proptest can drive the same generators; once
/// the bytes are exhausted it goes on with a xorshift stream seeded from them (deterministic).
#[derive(Debug)]
pub struct ByteSource<'a> {
    data: &'a [u8],
    pos: usize,
    state: u64,
}

impl<'a> ByteSource<'a> {
    /// Over `data`.
    pub fn new(data: &'a [u8]) -> Self {
        let state = data.iter().fold(0x9e37_79b9_7f4a_7c15_u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        }) | 1;
        Self {
            data,
            pos: 0,
            state,
        }
    }

    /// The next byte.
    pub fn byte(&mut self) -> u8 {
        let b = match self.data.get(self.pos) {
            Some(&b) => b,
            None => {
                self.state ^= self.state << 13;
                self.state ^= self.state >> 7;
                self.state ^= self.state << 17;
                (self.state >> 24) as u8
            }
        };
        self.pos = self.pos.saturating_add(1);
        b
    }

    /// A value below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        let v = usize::from(self.byte()) << 8 | usize::from(self.byte());
        v % n
    }

    /// True with probability about `percent` %.
    pub fn chance(&mut self, percent: u8) -> bool {
        self.byte() % 100 < percent
    }

    /// Whether bytes remain.
    pub fn has_more(&self) -> bool {
        self.pos < self.data.len()
    }
}

const NAMES: [&str; 5] = ["a", "b", "c", "d", "e"];
const GROUPS: [&str; 4] = ["g1", "g2", "g3", "g4"];
const PORTS: [u16; 8] = [0, 22, 53, 80, 443, 5432, 8080, 65535];

/// A random member identity from a small universe (so that selectors hit).
pub fn gen_member(u: &mut ByteSource<'_>) -> MemberRef {
    let name = NAMES[u.below(NAMES.len())].to_owned();
    let groups = GROUPS
        .iter()
        .filter(|_| u.chance(40))
        .map(|g| (*g).to_owned())
        .collect();
    MemberRef { name, groups }
}

/// A random address: mostly within 10.0.0.0/28 and 2001:db8::/124, sometimes anywhere.
pub fn gen_addr(u: &mut ByteSource<'_>, v6: bool) -> IpAddr {
    let wide = u.chance(10);
    if v6 {
        let low = if wide {
            u128::from(u.byte()) << 100 | u128::from(u.byte())
        } else {
            u128::from(u.byte() % 16)
        };
        IpAddr::V6(Ipv6Addr::from(0x2001_0db8_u128 << 96 | low))
    } else if wide {
        IpAddr::V4(Ipv4Addr::new(u.byte(), u.byte(), u.byte(), u.byte()))
    } else {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, u.byte() % 16))
    }
}

fn gen_net(u: &mut ByteSource<'_>) -> IpNetwork {
    let v6 = u.chance(30);
    let a = gen_addr(u, v6);
    let max = if v6 { 128 } else { 32 };
    let len = match u.below(5) {
        0 => 0,
        1 => max,
        2 => max - 2,
        3 => max - 4,
        _ => max - (u.byte() % (max + 1)),
    };
    IpNetwork::new(a, len).unwrap_or_else(|_| IpNetwork::from(a))
}

fn gen_atom(u: &mut ByteSource<'_>) -> Atom {
    match u.below(8) {
        0 => Atom::Any,
        1 => Atom::Network,
        2 => Atom::Local,
        _ => {
            let mut m = MatchAtom::default();
            let pick = |u: &mut ByteSource<'_>, list: &[&str]| -> Vec<String> {
                (0..1 + u.below(2))
                    .map(|_| list[u.below(list.len())].to_owned())
                    .collect()
            };
            if u.chance(35) {
                m.members = pick(u, &NAMES);
            }
            if u.chance(35) {
                m.groups_any = pick(u, &GROUPS);
            }
            if u.chance(20) {
                m.groups_all = pick(u, &GROUPS);
            }
            if u.chance(40) {
                m.cidr = (0..1 + u.below(3)).map(|_| gen_net(u)).collect();
            }
            if u.chance(20) {
                m.except = (0..1 + u.below(2)).map(|_| gen_net(u)).collect();
            }
            if !m.has_identity() && !m.has_address() {
                m.members = vec![NAMES[u.below(NAMES.len())].to_owned()];
            }
            Atom::Match(m)
        }
    }
}

fn gen_selector(u: &mut ByteSource<'_>) -> Selector {
    Selector((0..1 + u.below(3)).map(|_| gen_atom(u)).collect())
}

fn gen_rule(u: &mut ByteSource<'_>) -> RuleSpec {
    let action = match u.below(10) {
        0..=3 => Action::Allow,
        4 | 5 => Action::Deny,
        6 => Action::Reject,
        7 => Action::Pass,
        _ => Action::Log,
    };
    let mut r = RuleSpec::new(action, gen_selector(u), gen_selector(u));
    match u.below(6) {
        0 => {}
        1 => {
            r.proto = ProtoSpec::List(vec![Protocol::TCP]);
            r.ports = gen_ports(u);
        }
        2 => {
            r.proto = ProtoSpec::List(vec![Protocol::TCP, Protocol::UDP]);
            if u.chance(50) {
                r.ports = gen_ports(u);
            }
        }
        3 => {
            r.proto = ProtoSpec::List(vec![Protocol::ICMP, Protocol::ICMPV6]);
            if u.chance(60) {
                r.icmp = (0..1 + u.below(2))
                    .map(|_| IcmpMatch {
                        ty: [0u8, 3, 8, 128][u.below(4)],
                        code: u.chance(50).then(|| u.byte() % 2),
                    })
                    .collect();
            }
        }
        4 => r.proto = ProtoSpec::List(vec![Protocol::Number(47), Protocol::Unknown]),
        _ => r.proto = ProtoSpec::List(vec![Protocol::UDP]),
    }
    r
}

fn gen_ports(u: &mut ByteSource<'_>) -> Vec<PortRange> {
    (0..1 + u.below(3))
        .map(|_| {
            let a = PORTS[u.below(PORTS.len())];
            if u.chance(30) {
                let b = PORTS[u.below(PORTS.len())];
                PortRange {
                    lo: a.min(b),
                    hi: a.max(b),
                }
            } else {
                PortRange { lo: a, hi: a }
            }
        })
        .collect()
}

/// A random valid policy of up to `max_rules` rules per tier.
pub fn gen_spec(u: &mut ByteSource<'_>, max_rules: usize) -> PolicySpec {
    let mut p = PolicySpec::new(if u.chance(50) {
        DefaultAction::Allow
    } else {
        DefaultAction::Deny
    });
    for tier in Tier::ALL {
        for _ in 0..u.below(max_rules + 1) {
            p.rule(tier, gen_rule(u));
        }
    }
    p
}

/// A random flow (TCP, UDP, ICMP, GRE, unknown; sometimes fragmented or without ports).
pub fn gen_flow(u: &mut ByteSource<'_>) -> Flow {
    let v6 = u.chance(30);
    let src = gen_addr(u, v6);
    let dst = gen_addr(u, v6);
    let port = |u: &mut ByteSource<'_>| {
        if u.chance(70) {
            PORTS[u.below(PORTS.len())]
        } else {
            (u.below(65536)) as u16
        }
    };
    let mut f = match u.below(6) {
        0 | 1 => Flow::tcp(src, port(u), dst, port(u), u.byte() & 0x17),
        2 => Flow::udp(src, port(u), dst, port(u)),
        3 => {
            let ty = [0u8, 3, 8, 128, 129][u.below(5)];
            Flow::icmp(src, dst, ty, u.byte() % 3, Some(u16::from(u.byte())))
        }
        4 => Flow::other(src, dst, Protocol::Number(47)),
        _ => Flow::other(src, dst, Protocol::Unknown),
    };
    if u.chance(5) {
        f.dst_port = None;
    }
    if u.chance(5) {
        f.proto = Protocol::ICMP;
        f.icmp = Some(Icmp {
            ty: 8,
            code: 0,
            ident: None,
            quoted: None,
        });
    }
    f.fragment = match u.below(20) {
        0 => Fragment::First { ident: 7 },
        1 => Fragment::NonFirst { ident: 7 },
        _ => Fragment::Unfragmented,
    };
    f
}
