//! The policy language as typed values: what the TOML front end produces and what an embedder may
//! build directly. A `PolicySpec` is only syntax; [`compile`](super::compile::compile) checks its
//! meaning and turns it into the lookup structure the data path uses.

use std::net::IpAddr;

use ipnetwork::IpNetwork;

use super::error::Location;
use super::flow::{MemberRef, Protocol};

/// The three tiers, in evaluation order. A decision taken in a tier is final: a lower tier can
/// never override a higher one (Kubernetes AdminNetworkPolicy's model).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Tier {
    /// Organisation-wide rules: block-lists, denies nobody may undo, must-allow monitoring.
    Platform,
    /// The application's own rules.
    Application,
    /// Catch-alls evaluated last (e.g. allow ICMP inside the network).
    Baseline,
}

impl Tier {
    /// Every tier, in evaluation order.
    pub const ALL: [Self; 3] = [Self::Platform, Self::Application, Self::Baseline];

    /// Position in [`Tier::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The TOML array name (`platform`, `application`, `baseline`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Platform => "platform",
            Self::Application => "application",
            Self::Baseline => "baseline",
        }
    }
}

/// What a rule does with a flow it matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Let the flow through (and track it, so its replies pass).
    Allow,
    /// Drop silently.
    Deny,
    /// Drop and tell the sender: the caller answers TCP with RST and other protocols with ICMP
    /// administratively prohibited.
    Reject,
    /// Stop evaluating this tier; the next tier decides.
    Pass,
    /// Record the match and continue with the next rule of the tier.
    Log,
}

impl Action {
    /// The policy-language name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::Reject => "reject",
            Self::Pass => "pass",
            Self::Log => "log",
        }
    }

    /// Whether the action ends the evaluation of the tier (everything but `log`).
    pub fn is_terminal(self) -> bool {
        self != Self::Log
    }
}

/// What happens to a new flow that no tier decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum DefaultAction {
    /// Let it through: the policy is a block-list.
    Allow,
    /// Drop it: the policy lists what is allowed (the default; docs/POLICY.md §3 says why).
    #[default]
    Deny,
}

impl DefaultAction {
    /// The action a defaulted flow gets.
    pub fn action(self) -> Action {
        match self {
            Self::Allow => Action::Allow,
            Self::Deny => Action::Deny,
        }
    }
}

/// A whole policy: one file per network.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct PolicySpec {
    /// An optional name (shown by status and the audit log; not part of the hash).
    pub name: Option<String>,
    /// What a flow that no tier decides gets.
    pub default: DefaultAction,
    /// The rules of each tier, in order (indexed by [`Tier::index`]).
    pub tiers: [Vec<RuleSpec>; 3],
    /// Embedded tests (`[[test]]`): not enforced, run by `privnet policy check`.
    pub tests: Vec<TestSpec>,
    /// Per-member rate limits (`[[limits]]`), enforced on both ends (docs/POLICY.md §17).
    pub limits: Vec<LimitSpec>,
    /// Routing entries (`[[route]]`): which gateways serve a prefix, in priority order
    /// (docs/POLICY.md, "Routing policies"). They order gateways; they never grant a route.
    pub routes: Vec<RouteSpec>,
}

impl PolicySpec {
    /// An empty policy with `default`.
    pub fn new(default: DefaultAction) -> Self {
        Self {
            default,
            ..Self::default()
        }
    }

    /// Append `rule` to `tier`.
    pub fn rule(&mut self, tier: Tier, rule: RuleSpec) -> &mut Self {
        self.tiers[tier.index()].push(rule);
        self
    }

    /// Append a test.
    pub fn test(&mut self, test: TestSpec) -> &mut Self {
        self.tests.push(test);
        self
    }

    /// Append a rate limit.
    pub fn limit(&mut self, limit: LimitSpec) -> &mut Self {
        self.limits.push(limit);
        self
    }

    /// Number of rules over all tiers.
    pub fn rule_count(&self) -> usize {
        self.tiers.iter().map(Vec::len).sum()
    }
}

/// One rule: the flows it matches (initiator `from`, responder `to`, protocol, ports or ICMP
/// type/code; every given condition must hold) and what to do with them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleSpec {
    /// Stable identifier (counters, logs, explain); `tier/index` when absent.
    pub id: Option<String>,
    /// What to do.
    pub action: Action,
    /// Who initiates the flow.
    pub from: Selector,
    /// Who responds.
    pub to: Selector,
    /// Protocols (any when `Any`; `any` does not include `unknown`).
    pub proto: ProtoSpec,
    /// Destination port ranges (TCP, UDP, SCTP only); empty: any port.
    pub ports: Vec<PortRange>,
    /// ICMP type/code matches (ICMP, ICMPv6 only); empty: any type.
    pub icmp: Vec<IcmpMatch>,
    /// The traffic class of the flows this rule allows (`allow` rules only): [`Priority::High`]
    /// flows pass the fairness gates first (docs/POLICY.md, "Priority classes").
    pub priority: Priority,
    /// Free text (not part of the hash).
    pub description: Option<String>,
    /// Where the rule starts in its file.
    pub location: Option<Location>,
}

impl RuleSpec {
    /// A rule matching every protocol and port from `from` to `to`.
    pub fn new(action: Action, from: Selector, to: Selector) -> Self {
        Self {
            id: None,
            action,
            from,
            to,
            proto: ProtoSpec::Any,
            ports: Vec::new(),
            icmp: Vec::new(),
            priority: Priority::Normal,
            description: None,
            location: None,
        }
    }

    /// Set the traffic class of the flows it allows.
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }

    /// Set the id.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Restrict to these protocols.
    pub fn proto(mut self, protos: &[Protocol]) -> Self {
        self.proto = ProtoSpec::List(protos.to_vec());
        self
    }

    /// Restrict to these destination port ranges.
    pub fn ports(mut self, ports: &[(u16, u16)]) -> Self {
        self.ports = ports.iter().map(|&(lo, hi)| PortRange { lo, hi }).collect();
        self
    }

    /// Restrict to these ICMP types (and codes).
    pub fn icmp(mut self, m: &[IcmpMatch]) -> Self {
        self.icmp = m.to_vec();
        self
    }
}

/// The traffic class of an allowed flow.
///
/// While a shared stage of the data path is overloaded, the fairness gates drop the heaviest
/// peers' excess; packets of a `High` flow are admitted first, up to a bounded share per peer and
/// batch (`io::fair::PRIORITY_SHARE`), so health checks and control traffic get through a flood.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Priority {
    /// Ordinary traffic (the default).
    #[default]
    Normal,
    /// Health checks, control traffic: admitted first under overload.
    High,
}

/// The protocols of a rule.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum ProtoSpec {
    /// Every established protocol (not `unknown`).
    #[default]
    Any,
    /// These protocols (may include [`Protocol::Unknown`]).
    List(Vec<Protocol>),
}

impl ProtoSpec {
    /// Whether `p` is selected.
    pub fn contains(&self, p: Protocol) -> bool {
        match self {
            Self::Any => p != Protocol::Unknown,
            Self::List(l) => l.contains(&p),
        }
    }
}

/// An inclusive port range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortRange {
    /// First port.
    pub lo: u16,
    /// Last port (inclusive).
    pub hi: u16,
}

/// An ICMP type, with one code or all codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IcmpMatch {
    /// ICMP type.
    pub ty: u8,
    /// One code, or every code of the type.
    pub code: Option<u8>,
}

impl IcmpMatch {
    /// The inclusive range of `type << 8 | code` values it selects.
    pub fn range(self) -> (u16, u16) {
        let base = u16::from(self.ty) << 8;
        match self.code {
            Some(c) => (base | u16::from(c), base | u16::from(c)),
            None => (base, base | 0xff),
        }
    }
}

/// Who may be at one end of a flow: a union of atoms (a list in the file: any atom may match).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Selector(pub Vec<Atom>);

impl Selector {
    /// Anything: every member and every non-member address.
    pub fn any() -> Self {
        Self(vec![Atom::Any])
    }

    /// Every member of the network (not the hosts routed through members).
    pub fn network() -> Self {
        Self(vec![Atom::Network])
    }

    /// The enforcing member (`self`).
    pub fn local() -> Self {
        Self(vec![Atom::Local])
    }

    /// The members with these names.
    pub fn members(names: &[&str]) -> Self {
        Self(vec![Atom::Match(MatchAtom {
            members: names.iter().map(|s| (*s).to_owned()).collect(),
            ..MatchAtom::default()
        })])
    }

    /// The members in at least one of these groups.
    pub fn groups_any(groups: &[&str]) -> Self {
        Self(vec![Atom::Match(MatchAtom {
            groups_any: groups.iter().map(|s| (*s).to_owned()).collect(),
            ..MatchAtom::default()
        })])
    }

    /// The members in all of these groups.
    pub fn groups_all(groups: &[&str]) -> Self {
        Self(vec![Atom::Match(MatchAtom {
            groups_all: groups.iter().map(|s| (*s).to_owned()).collect(),
            ..MatchAtom::default()
        })])
    }

    /// Any party (member or not) whose address is in `cidr` and not in `except`.
    pub fn cidr(cidr: &[IpNetwork], except: &[IpNetwork]) -> Self {
        Self(vec![Atom::Match(MatchAtom {
            cidr: cidr.to_vec(),
            except: except.to_vec(),
            ..MatchAtom::default()
        })])
    }

    /// The union of `self` and `other`.
    pub fn or(mut self, other: Self) -> Self {
        self.0.extend(other.0);
        self
    }
}

/// One alternative of a selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Atom {
    /// Anything (`"any"`).
    Any,
    /// Any member (`"network"`).
    Network,
    /// The enforcing member (`"self"`).
    Local,
    /// A table: every condition given must hold.
    Match(MatchAtom),
}

/// A selector table (`{ members = [...], groups = { any = [...] }, cidr = [...], except = [...] }`):
/// every condition given must hold (AND); a condition not given does not constrain. Identity
/// conditions (`members`, `groups`) require the party to be a member; address conditions (`cidr`,
/// `except`) look at the flow's address at that end, for members and non-members alike.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct MatchAtom {
    /// The member's name is one of these.
    pub members: Vec<String>,
    /// The member has at least one of these groups.
    pub groups_any: Vec<String>,
    /// The member has all of these groups.
    pub groups_all: Vec<String>,
    /// The address is in one of these prefixes (empty: any address, if `except` is given).
    pub cidr: Vec<IpNetwork>,
    /// ... and in none of these.
    pub except: Vec<IpNetwork>,
}

impl MatchAtom {
    /// Whether the atom has an identity condition (and so matches members only).
    pub fn has_identity(&self) -> bool {
        !(self.members.is_empty() && self.groups_any.is_empty() && self.groups_all.is_empty())
    }

    /// Whether the atom has an address condition.
    pub fn has_address(&self) -> bool {
        !(self.cidr.is_empty() && self.except.is_empty())
    }
}

/// One end of an embedded test's flow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TestEnd {
    /// A member (its address defaults to a documentation address when not given; with
    /// `privnet policy check --members`, the certificate's first address).
    Member {
        /// Name and groups.
        member: MemberRef,
        /// Its address in the flow.
        address: Option<IpAddr>,
    },
    /// A non-member address (behind a gateway, the outside world).
    Address(IpAddr),
}

/// An embedded test: a flow and the verdict the policy must give it, end to end (the sending
/// member's check, then the receiving member's; see docs/POLICY.md §6).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestSpec {
    /// A label.
    pub name: Option<String>,
    /// Initiator.
    pub from: TestEnd,
    /// Responder.
    pub to: TestEnd,
    /// Protocol.
    pub proto: Protocol,
    /// Destination port (TCP, UDP, SCTP).
    pub port: Option<u16>,
    /// ICMP type and code.
    pub icmp: Option<(u8, u8)>,
    /// Expected action: `allow`, `deny` or `reject`.
    pub expect: Action,
    /// Expected deciding rule id (`default` for the default).
    pub rule: Option<String>,
    /// Where the test starts in its file.
    pub location: Option<Location>,
}

/// Which traffic of the selected members a limit counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum LimitDirection {
    /// What a selected member sends to another member.
    #[default]
    Out,
    /// What a selected member receives from another member.
    In,
    /// Both, each with its own bucket of the limit's rates.
    Both,
}

impl LimitDirection {
    /// The policy-language name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Out => "out",
            Self::In => "in",
            Self::Both => "both",
        }
    }
}

/// A rate limit on the overlay traffic of some members (`[[limits]]`): packets and/or bytes per
/// second, with a burst. The traffic between one selected member and one other member is limited
/// (each pair its own token bucket), at both ends: the sender before encryption and the receiver
/// after decryption and the source check. With `shared`, the pairs a limit covers at one
/// enforcing member share one bucket there (a group cap). Packets over the limit are dropped
/// and counted (`member_rate_limited`, and per limit).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitSpec {
    /// Stable identifier (counters, logs); `limits/index` when absent.
    pub id: Option<String>,
    /// The members limited (identity atoms only: `members`, `groups`, `"network"`, `"self"`).
    pub members: Selector,
    /// Which of their traffic.
    pub direction: LimitDirection,
    /// Inner packets per second.
    pub packets_per_sec: Option<u64>,
    /// Inner bytes per second.
    pub bytes_per_sec: Option<u64>,
    /// How long a full bucket lasts at its rate, in milliseconds (the burst); default 100.
    pub burst_ms: Option<u64>,
    /// One bucket for all covered pairs at an enforcing member (a group cap) instead of one per
    /// pair.
    pub shared: bool,
    /// Free text (not part of the hash).
    pub description: Option<String>,
    /// Where the limit starts in its file.
    pub location: Option<Location>,
}

impl LimitSpec {
    /// A limit on `members`' traffic in `direction`, with no rate yet.
    pub fn new(members: Selector, direction: LimitDirection) -> Self {
        Self {
            id: None,
            members,
            direction,
            packets_per_sec: None,
            bytes_per_sec: None,
            burst_ms: None,
            shared: false,
            description: None,
            location: None,
        }
    }

    /// Set the id.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Set the packet rate.
    pub fn packets(mut self, per_sec: u64) -> Self {
        self.packets_per_sec = Some(per_sec);
        self
    }

    /// Set the byte rate.
    pub fn bytes(mut self, per_sec: u64) -> Self {
        self.bytes_per_sec = Some(per_sec);
        self
    }
}

/// A routing entry (`[[route]]`): destinations in `prefix` leave through the first healthy member
/// of `via` that holds the prefix in its certificate, for the sending members `from` selects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteSpec {
    /// Stable identifier (status, events, metrics); `route/index` when absent.
    pub id: Option<String>,
    /// The destinations (`0.0.0.0/0` / `::/0`: the default route, egress through a member).
    pub prefix: IpNetwork,
    /// Gateway member names, in priority order (at least one).
    pub via: Vec<String>,
    /// Which sending members the entry applies to (every member when absent); identity atoms
    /// only (`members`, `groups`, `"any"`, `"network"`, `"self"`).
    pub from: Option<Selector>,
    /// Where the entry starts in its file.
    pub location: Option<Location>,
}

impl RouteSpec {
    /// An entry for `prefix` through `via`, for every member.
    pub fn new(prefix: IpNetwork, via: &[&str]) -> Self {
        Self {
            id: None,
            prefix,
            via: via.iter().map(|s| (*s).to_owned()).collect(),
            from: None,
            location: None,
        }
    }
}
