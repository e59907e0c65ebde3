//! TOML text → [`PolicySpec`] (feature `policy-toml`), every problem located by line and column.
//!
//! The document is parsed into `toml`'s spanned tree (`DeTable`) and walked by hand rather than
//! through serde, so that every value keeps its position and one run reports every problem of a
//! file (up to 100): an unknown key (with the nearest known key as a hint), a value of the wrong
//! type or out of range, a missing required key. Only a TOML syntax error stops the walk. The
//! meaning (duplicate ids, ports on a protocol without ports, ...) is checked by `compile`, which
//! names the rule's line.

use std::net::IpAddr;
use std::ops::Range;

use ipnetwork::IpNetwork;
use toml::de::{DeTable, DeValue};

use super::error::{Location, PolicyError, Problems};
use super::flow::{MemberRef, Protocol};
use super::spec::{
    Action, Atom, DefaultAction, IcmpMatch, MatchAtom, PolicySpec, PortRange, Priority, ProtoSpec,
    RuleSpec, Selector, TestEnd, TestSpec, Tier,
};
use reader::{join, parse_port_range, parse_prefix, safe, Parser, Val};

/// Longest policy text accepted (a policy is configuration, not data).
pub const MAX_POLICY_BYTES: usize = 8 << 20;

const TOP_KEYS: &[&str] = &[
    "version",
    "name",
    "default",
    "platform",
    "application",
    "baseline",
    "test",
    "limits",
    "route",
];
const RULE_KEYS: &[&str] = &[
    "id",
    "action",
    "from",
    "to",
    "proto",
    "ports",
    "icmp",
    "priority",
    "description",
];
const SELECTOR_KEYS: &[&str] = &["members", "groups", "cidr", "except"];
const GROUP_KEYS: &[&str] = &["any", "all"];
const TEST_KEYS: &[&str] = &[
    "name", "from", "to", "proto", "port", "icmp", "expect", "rule",
];
const TEST_END_KEYS: &[&str] = &["member", "groups", "address"];

/// Parse the text of a policy file named `file` (a label for errors; nothing is opened).
///
/// # Errors
/// Every syntax and schema problem, in file order, each with its line and column.
pub fn parse_policy(text: &str, file: &str) -> Result<PolicySpec, PolicyError> {
    if text.len() > MAX_POLICY_BYTES {
        return Err(PolicyError::one(
            file,
            Some(Location { line: 1, column: 1 }),
            "",
            format!(
                "a policy of at most {MAX_POLICY_BYTES} bytes (this one has {})",
                text.len()
            ),
        ));
    }
    let doc = match DeTable::parse(text) {
        Ok(d) => d,
        Err(e) => {
            let at = Location::of_offset(text, e.span().map_or(0, |s| s.start));
            return Err(PolicyError::one(
                file,
                Some(at),
                "",
                format!("valid TOML ({})", e.message().trim()),
            ));
        }
    };
    let mut p = Parser {
        text,
        problems: Problems::default(),
    };
    let spec = p.document(doc.get_ref());
    if p.problems.is_empty() {
        Ok(spec)
    } else {
        Err(p.problems.into_error(file))
    }
}

impl Parser<'_> {
    fn document(&mut self, doc: &DeTable<'_>) -> PolicySpec {
        self.unknown_keys(doc, "", TOP_KEYS);
        let mut spec = PolicySpec::default();
        if let Some(v) = doc.get("version") {
            if self.int(v, "version", 1, 1).is_none() {
                // reported by int()
            }
        }
        if let Some(v) = doc.get("name") {
            spec.name = self.string(v, "name");
        }
        if let Some(v) = doc.get("default") {
            match self.string(v, "default").as_deref() {
                Some("allow") => spec.default = DefaultAction::Allow,
                Some("deny") => spec.default = DefaultAction::Deny,
                Some(_) => self.err(
                    v.span(),
                    "default",
                    "`\"allow\"` or `\"deny\"`: what a flow that no tier decides gets",
                ),
                None => {}
            }
        }
        for tier in Tier::ALL {
            let Some(v) = doc.get(tier.name()) else {
                continue;
            };
            let Some(items) = self.tables(v, tier.name()) else {
                continue;
            };
            for (i, (span, t)) in items.into_iter().enumerate() {
                let key = format!("{}[{i}]", tier.name());
                if let Some(r) = self.rule(t, span, &key) {
                    spec.tiers[tier.index()].push(r);
                }
            }
        }
        if let Some(v) = doc.get("limits") {
            if let Some(items) = self.tables(v, "limits") {
                for (i, (span, t)) in items.into_iter().enumerate() {
                    if let Some(l) = self.limit(t, span, &format!("limits[{i}]")) {
                        spec.limits.push(l);
                    }
                }
            }
        }
        if let Some(v) = doc.get("route") {
            spec.routes = self.routes(v);
        }
        if let Some(v) = doc.get("test") {
            if let Some(items) = self.tables(v, "test") {
                for (i, (span, t)) in items.into_iter().enumerate() {
                    if let Some(t) = self.test(t, span, &format!("test[{i}]")) {
                        spec.tests.push(t);
                    }
                }
            }
        }
        spec
    }

    /// An array of tables (`[[tier]]`).
    fn tables<'a, 'i>(
        &mut self,
        v: &'a Val<'i>,
        key: &str,
    ) -> Option<Vec<(Range<usize>, &'a DeTable<'i>)>> {
        match v.get_ref() {
            DeValue::Array(a) => {
                let mut out = Vec::new();
                for (i, item) in a.iter().enumerate() {
                    match item.get_ref() {
                        DeValue::Table(t) => out.push((item.span(), t)),
                        _ => self.err(
                            item.span(),
                            &format!("{key}[{i}]"),
                            format!("a table (a `[[{key}]]` section)"),
                        ),
                    }
                }
                Some(out)
            }
            _ => {
                self.err(
                    v.span(),
                    key,
                    format!("an array of tables: one `[[{key}]]` section per entry"),
                );
                None
            }
        }
    }

    fn rule(&mut self, t: &DeTable<'_>, span: Range<usize>, key: &str) -> Option<RuleSpec> {
        self.unknown_keys(t, key, RULE_KEYS);
        let mut ok = true;
        let action = match t.get("action") {
            Some(v) => match self.string(v, &join(key, "action")).as_deref() {
                Some("allow") => Some(Action::Allow),
                Some("deny") => Some(Action::Deny),
                Some("reject") => Some(Action::Reject),
                Some("pass") => Some(Action::Pass),
                Some("log") => Some(Action::Log),
                Some(_) => {
                    self.err(
                        v.span(),
                        &join(key, "action"),
                        "one of `allow`, `deny`, `reject`, `pass`, `log`",
                    );
                    None
                }
                None => None,
            },
            None => {
                self.err(
                    span.clone(),
                    &join(key, "action"),
                    "an `action` (`allow`, `deny`, `reject`, `pass` or `log`): this key is required",
                );
                None
            }
        };
        let side = |p: &mut Self, name: &str| match t.get(name) {
            Some(v) => p.selector(v, &join(key, name)),
            None => {
                p.err(
                    span.clone(),
                    &join(key, name),
                    format!("a `{name}` selector (`\"any\"`, `\"network\"`, `\"self\"`, a table or a list): this key is required"),
                );
                None
            }
        };
        let from = side(self, "from");
        let to = side(self, "to");
        let id = t.get("id").and_then(|v| self.string(v, &join(key, "id")));
        let description = t
            .get("description")
            .and_then(|v| self.string(v, &join(key, "description")));
        let proto = match t.get("proto") {
            Some(v) => self.proto(v, &join(key, "proto")),
            None => Some(ProtoSpec::Any),
        };
        let ports = match t.get("ports") {
            Some(v) => self.ports(v, &join(key, "ports")),
            None => Some(Vec::new()),
        };
        let icmp_protos: Vec<Protocol> = match &proto {
            Some(ProtoSpec::List(l)) => l.clone(),
            _ => Vec::new(),
        };
        let icmp = match t.get("icmp") {
            Some(v) => self.icmp_list(v, &join(key, "icmp"), &icmp_protos),
            None => Some(Vec::new()),
        };
        let priority = match t.get("priority") {
            None => Some(Priority::Normal),
            Some(v) => match self.string(v, &join(key, "priority")).as_deref() {
                Some("normal") => Some(Priority::Normal),
                Some("high") => {
                    if action.is_some_and(|a| a != Action::Allow) {
                        self.err(
                            v.span(),
                            &join(key, "priority"),
                            "`priority` only on `allow` rules (it is the class of the flows a \
                             rule allows)",
                        );
                        None
                    } else {
                        Some(Priority::High)
                    }
                }
                Some(_) => {
                    self.err(v.span(), &join(key, "priority"), "`high` or `normal`");
                    None
                }
                None => None,
            },
        };
        ok &= action.is_some()
            && priority.is_some()
            && from.is_some()
            && to.is_some()
            && proto.is_some()
            && ports.is_some()
            && icmp.is_some();
        if !ok {
            return None;
        }
        Some(RuleSpec {
            id,
            action: action?,
            from: from?,
            to: to?,
            proto: proto?,
            ports: ports?,
            icmp: icmp?,
            priority: priority?,
            description,
            location: self.at(span),
        })
    }

    fn selector(&mut self, v: &Val<'_>, key: &str) -> Option<Selector> {
        match v.get_ref() {
            DeValue::Array(a) => {
                if a.is_empty() {
                    self.err(
                        v.span(),
                        key,
                        "at least one selector in the list (an empty list would match nothing)",
                    );
                    return None;
                }
                let mut atoms = Vec::new();
                let mut ok = true;
                for (i, item) in a.iter().enumerate() {
                    match self.atom(item, &format!("{key}[{i}]")) {
                        Some(at) => atoms.push(at),
                        None => ok = false,
                    }
                }
                ok.then_some(Selector(atoms))
            }
            _ => self.atom(v, key).map(|a| Selector(vec![a])),
        }
    }

    fn atom(&mut self, v: &Val<'_>, key: &str) -> Option<Atom> {
        match v.get_ref() {
            DeValue::String(s) => match s.as_ref() {
                "any" => Some(Atom::Any),
                "network" => Some(Atom::Network),
                "self" => Some(Atom::Local),
                other => {
                    self.err(
                        v.span(),
                        key,
                        format!(
                            "`\"any\"`, `\"network\"`, `\"self\"` or a table; for a member write `{{ members = [\"{}\"] }}`",
                            safe(other)
                        ),
                    );
                    None
                }
            },
            DeValue::Table(t) => self.match_atom(t, v.span(), key).map(Atom::Match),
            _ => {
                self.err(
                    v.span(),
                    key,
                    "a selector: `\"any\"`, `\"network\"`, `\"self\"` or a table such as `{ groups = { any = [\"web\"] } }`",
                );
                None
            }
        }
    }

    fn match_atom(&mut self, t: &DeTable<'_>, span: Range<usize>, key: &str) -> Option<MatchAtom> {
        self.unknown_keys(t, key, SELECTOR_KEYS);
        let mut m = MatchAtom::default();
        let mut ok = true;
        if let Some(v) = t.get("members") {
            match self.strings(v, &join(key, "members")) {
                Some(l) if !l.is_empty() => m.members = l,
                Some(_) => {
                    self.err(v.span(), &join(key, "members"), "at least one member name");
                    ok = false;
                }
                None => ok = false,
            }
        }
        if let Some(v) = t.get("groups") {
            let gkey = join(key, "groups");
            match v.get_ref() {
                DeValue::Table(g) => {
                    self.unknown_keys(g, &gkey, GROUP_KEYS);
                    if g.get("any").is_none() && g.get("all").is_none() {
                        self.err(v.span(), &gkey, "`{ any = [...] }` or `{ all = [...] }`");
                        ok = false;
                    }
                    for (name, dest) in [("any", &mut m.groups_any), ("all", &mut m.groups_all)] {
                        if let Some(l) = g.get(name) {
                            match self.strings(l, &join(&gkey, name)) {
                                Some(x) if !x.is_empty() => *dest = x,
                                Some(_) => {
                                    self.err(l.span(), &join(&gkey, name), "at least one group");
                                    ok = false;
                                }
                                None => ok = false,
                            }
                        }
                    }
                }
                _ => {
                    self.err(
                        v.span(),
                        &gkey,
                        "`{ any = [...] }` (a member in at least one of the groups) or `{ all = [...] }` (in every one): say which, groups lists are not implicitly AND or OR",
                    );
                    ok = false;
                }
            }
        }
        for (name, dest) in [("cidr", &mut m.cidr), ("except", &mut m.except)] {
            if let Some(v) = t.get(name) {
                match self.prefixes(v, &join(key, name)) {
                    Some(l) => *dest = l,
                    None => ok = false,
                }
            }
        }
        if ok && !m.has_identity() && !m.has_address() {
            self.err(
                span,
                key,
                "at least one of `members`, `groups`, `cidr`, `except` (write `\"any\"` for anything)",
            );
            ok = false;
        }
        ok.then_some(m)
    }

    fn prefixes(&mut self, v: &Val<'_>, key: &str) -> Option<Vec<IpNetwork>> {
        let items = self.list(v)?;
        let mut out = Vec::new();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let k = if matches!(v.get_ref(), DeValue::Array(_)) {
                format!("{key}[{i}]")
            } else {
                key.to_owned()
            };
            match item.get_ref() {
                DeValue::String(s) => match parse_prefix(s) {
                    Some(n) => out.push(n),
                    None => {
                        self.err(
                            item.span(),
                            &k,
                            format!(
                                "an IP prefix such as `10.0.0.0/8` or `2001:db8::/32`, or an address; not `{}`",
                                safe(s)
                            ),
                        );
                        ok = false;
                    }
                },
                _ => {
                    self.err(item.span(), &k, "a prefix as a string (`\"10.0.0.0/8\"`)");
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    fn proto(&mut self, v: &Val<'_>, key: &str) -> Option<ProtoSpec> {
        let items = self.list(v)?;
        let mut out = Vec::new();
        let mut ok = true;
        for item in &items {
            match item.get_ref() {
                DeValue::String(s) => match s.as_ref() {
                    "any" if items.len() > 1 => {
                        self.err(
                            item.span(),
                            key,
                            "`any` alone (it already includes every other protocol)",
                        );
                        ok = false;
                    }
                    "tcp" => out.push(Protocol::TCP),
                    "udp" => out.push(Protocol::UDP),
                    "icmp" => out.push(Protocol::ICMP),
                    "icmpv6" => out.push(Protocol::ICMPV6),
                    "sctp" => out.push(Protocol::SCTP),
                    "unknown" => out.push(Protocol::Unknown),
                    "any" if items.len() == 1 => return Some(ProtoSpec::Any),
                    other => {
                        self.err(
                            item.span(),
                            key,
                            format!(
                                "`tcp`, `udp`, `icmp`, `icmpv6`, `sctp`, `unknown`, `any` or a protocol number 0-255; not `{}`",
                                safe(other)
                            ),
                        );
                        ok = false;
                    }
                },
                DeValue::Integer(_) => match self.int(item, key, 0, 255) {
                    Some(n) => out.push(Protocol::Number(n as u8)),
                    None => ok = false,
                },
                _ => {
                    self.err(item.span(), key, "a protocol name or number");
                    ok = false;
                }
            }
        }
        if ok && out.is_empty() {
            self.err(
                v.span(),
                key,
                "at least one protocol (omit `proto` for any)",
            );
            return None;
        }
        ok.then_some(ProtoSpec::List(out))
    }

    fn ports(&mut self, v: &Val<'_>, key: &str) -> Option<Vec<PortRange>> {
        let items = self.list(v)?;
        let mut out = Vec::new();
        let mut ok = true;
        for item in &items {
            let r = match item.get_ref() {
                DeValue::Integer(_) => self.int(item, key, 0, 65535).map(|p| PortRange {
                    lo: p as u16,
                    hi: p as u16,
                }),
                DeValue::String(s) => {
                    let r = parse_port_range(s);
                    if r.is_none() {
                        self.err(
                            item.span(),
                            key,
                            format!(
                                "a port 0-65535 or a range `low-high` with low <= high; not `{}`",
                                safe(s)
                            ),
                        );
                    }
                    r
                }
                _ => {
                    self.err(item.span(), key, "a port number or a `\"low-high\"` range");
                    None
                }
            };
            match r {
                Some(r) => out.push(r),
                None => ok = false,
            }
        }
        if ok && out.is_empty() {
            self.err(
                v.span(),
                key,
                "at least one port (omit `ports` for any port)",
            );
            return None;
        }
        ok.then_some(out)
    }

    fn icmp_list(&mut self, v: &Val<'_>, key: &str, protos: &[Protocol]) -> Option<Vec<IcmpMatch>> {
        let items = self.list(v)?;
        let mut out = Vec::new();
        let mut ok = true;
        for item in &items {
            match item.get_ref() {
                DeValue::Integer(_) => match self.int(item, key, 0, 255) {
                    Some(t) => out.push(IcmpMatch {
                        ty: t as u8,
                        code: None,
                    }),
                    None => ok = false,
                },
                DeValue::String(s) => {
                    let types = icmp_names(s, protos);
                    if types.is_empty() {
                        self.err(
                            item.span(),
                            key,
                            format!(
                                "an ICMP type number, `{{ type = N, code = M }}` or a name ({}); not `{}`",
                                ICMP_NAMES.iter().map(|(n, _, _)| *n).collect::<Vec<_>>().join(", "),
                                safe(s)
                            ),
                        );
                        ok = false;
                    }
                    out.extend(types.into_iter().map(|ty| IcmpMatch { ty, code: None }));
                }
                DeValue::Table(t) => {
                    self.unknown_keys(t, key, &["type", "code"]);
                    let ty = match t.get("type") {
                        Some(x) => self.int(x, &join(key, "type"), 0, 255),
                        None => {
                            self.err(item.span(), &join(key, "type"), "an ICMP `type`");
                            None
                        }
                    };
                    let code = match t.get("code") {
                        Some(x) => self.int(x, &join(key, "code"), 0, 255).map(Some),
                        None => Some(None),
                    };
                    match (ty, code) {
                        (Some(ty), Some(code)) => out.push(IcmpMatch {
                            ty: ty as u8,
                            code: code.map(|c| c as u8),
                        }),
                        _ => ok = false,
                    }
                }
                _ => {
                    self.err(
                        item.span(),
                        key,
                        "an ICMP type, name or `{ type, code }` table",
                    );
                    ok = false;
                }
            }
        }
        if ok && out.is_empty() {
            self.err(
                v.span(),
                key,
                "at least one ICMP type (omit `icmp` for any)",
            );
            return None;
        }
        ok.then_some(out)
    }

    fn test(&mut self, t: &DeTable<'_>, span: Range<usize>, key: &str) -> Option<TestSpec> {
        self.unknown_keys(t, key, TEST_KEYS);
        let name = t
            .get("name")
            .and_then(|v| self.string(v, &join(key, "name")));
        let end = |p: &mut Self, side: &str| match t.get(side) {
            Some(v) => p.test_end(v, &join(key, side)),
            None => {
                p.err(
                    span.clone(),
                    &join(key, side),
                    format!("a `{side}` end: this key is required"),
                );
                None
            }
        };
        let from = end(self, "from");
        let to = end(self, "to");
        let proto = match t.get("proto") {
            Some(v) => match self.proto(v, &join(key, "proto")) {
                Some(ProtoSpec::List(l)) if l.len() == 1 => Some(l[0]),
                Some(_) => {
                    self.err(
                        v.span(),
                        &join(key, "proto"),
                        "exactly one protocol (not `any`)",
                    );
                    None
                }
                None => None,
            },
            None => {
                self.err(
                    span.clone(),
                    &join(key, "proto"),
                    "a `proto`: this key is required",
                );
                None
            }
        };
        let port = match t.get("port") {
            Some(v) => self
                .int(v, &join(key, "port"), 0, 65535)
                .map(|p| Some(p as u16)),
            None => Some(None),
        };
        let icmp = match t.get("icmp") {
            Some(v) => {
                let protos: Vec<Protocol> = proto.into_iter().collect();
                match self.icmp_list(v, &join(key, "icmp"), &protos) {
                    Some(l) if l.len() == 1 => Some(Some((l[0].ty, l[0].code.unwrap_or(0)))),
                    Some(_) => {
                        self.err(v.span(), &join(key, "icmp"), "exactly one ICMP type");
                        None
                    }
                    None => None,
                }
            }
            None => Some(None),
        };
        let expect = match t.get("expect") {
            Some(v) => match self.string(v, &join(key, "expect")).as_deref() {
                Some("allow") => Some(Action::Allow),
                Some("deny") => Some(Action::Deny),
                Some("reject") => Some(Action::Reject),
                Some(_) => {
                    self.err(
                        v.span(),
                        &join(key, "expect"),
                        "`allow`, `deny` or `reject`",
                    );
                    None
                }
                None => None,
            },
            None => {
                self.err(
                    span.clone(),
                    &join(key, "expect"),
                    "an `expect` verdict: this key is required",
                );
                None
            }
        };
        let rule = t
            .get("rule")
            .and_then(|v| self.string(v, &join(key, "rule")));
        Some(TestSpec {
            name,
            from: from?,
            to: to?,
            proto: proto?,
            port: port?,
            icmp: icmp?,
            expect: expect?,
            rule,
            location: self.at(span),
        })
    }

    fn test_end(&mut self, v: &Val<'_>, key: &str) -> Option<TestEnd> {
        match v.get_ref() {
            DeValue::String(s) => Some(match s.parse::<IpAddr>() {
                Ok(a) => TestEnd::Address(a),
                Err(_) => TestEnd::Member {
                    member: MemberRef {
                        name: s.to_string(),
                        groups: Vec::new(),
                    },
                    address: None,
                },
            }),
            DeValue::Table(t) => {
                self.unknown_keys(t, key, TEST_END_KEYS);
                let address = match t.get("address") {
                    Some(a) => match self.string(a, &join(key, "address")) {
                        Some(s) => match s.parse::<IpAddr>() {
                            Ok(ip) => Some(ip),
                            Err(_) => {
                                self.err(a.span(), &join(key, "address"), "an IP address");
                                return None;
                            }
                        },
                        None => return None,
                    },
                    None => None,
                };
                let groups = match t.get("groups") {
                    Some(g) => self.strings(g, &join(key, "groups"))?,
                    None => Vec::new(),
                };
                match t.get("member") {
                    Some(m) => {
                        let name = self.string(m, &join(key, "member"))?;
                        Some(TestEnd::Member {
                            member: MemberRef { name, groups },
                            address,
                        })
                    }
                    None => match address {
                        Some(a) if groups.is_empty() => Some(TestEnd::Address(a)),
                        _ => {
                            self.err(
                                v.span(),
                                key,
                                "`member = \"name\"` (with optional `groups`, `address`) or only `address` for a non-member",
                            );
                            None
                        }
                    },
                }
            }
            _ => {
                self.err(
                    v.span(),
                    key,
                    "a member name, an address, or `{ member, groups, address }`",
                );
                None
            }
        }
    }
}

/// ICMP type names: (name, ICMP type, ICMPv6 type).
const ICMP_NAMES: &[(&str, Option<u8>, Option<u8>)] = &[
    ("echo-reply", Some(0), Some(129)),
    ("destination-unreachable", Some(3), Some(1)),
    ("packet-too-big", None, Some(2)),
    ("redirect", Some(5), Some(137)),
    ("echo-request", Some(8), Some(128)),
    ("time-exceeded", Some(11), Some(3)),
    ("parameter-problem", Some(12), Some(4)),
];

/// The type numbers of name `s` for the rule's protocols (both families if neither is given).
fn icmp_names(s: &str, protos: &[Protocol]) -> Vec<u8> {
    let Some(&(_, v4, v6)) = ICMP_NAMES.iter().find(|(n, _, _)| *n == s) else {
        return Vec::new();
    };
    let both = !protos.contains(&Protocol::ICMP) && !protos.contains(&Protocol::ICMPV6);
    let mut out = Vec::new();
    if both || protos.contains(&Protocol::ICMP) {
        out.extend(v4);
    }
    if both || protos.contains(&Protocol::ICMPV6) {
        out.extend(v6);
    }
    out
}

mod limits;
mod reader;
mod route;
#[cfg(test)]
mod tests;
