//! Lints for `privnet policy check`: mistakes that are not errors (the policy compiles and means
//! something) but almost certainly not what its author meant.
//!
//! | code | what |
//! |---|---|
//! | `shadowed` | a rule that can never match: an earlier terminal rule of its tier covers every flow it selects |
//! | `any-override` | an unconditional terminal rule (`any` → `any`, every protocol): what follows it is dead |
//! | `matches-nothing` | a selector no member of the given certificates satisfies, or an address set that is empty |
//! | `self-half-rule` | an `allow` whose `from` or `to` is only `self`: it can match at one end only (docs/POLICY.md §6) |
//! | `allows-nothing` | `default = "deny"` and no `allow` rule |
//!
//! Duplicate rule ids are errors, not lints (`compile` refuses them). The shadowing test is sound
//! (a reported rule really is dead) but not complete: it compares selectors atom by atom and does
//! not find a rule covered only by the union of several earlier ones.

use std::collections::HashSet;

use super::cidr::{IpSet, RangeSet};
use super::compile::CompiledPolicy;
use super::error::Location;
use super::flow::{MemberRef, Protocol};
use super::spec::{Action, Atom, DefaultAction, MatchAtom, ProtoSpec, RuleSpec, Selector, Tier};

/// Most rule pairs compared by the shadowing test (it is quadratic in a tier's length).
const MAX_PAIRS: usize = 20_000_000;

/// One finding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lint {
    /// Short code (see the module docs).
    pub code: &'static str,
    /// The rule concerned, by id.
    pub rule: Option<String>,
    /// Where.
    pub location: Option<Location>,
    /// What is wrong and what to do.
    pub message: String,
}

fn address_set(m: &MatchAtom) -> IpSet {
    if m.has_address() {
        IpSet::from_cidr_except(&m.cidr, &m.except)
    } else {
        IpSet::full()
    }
}

fn subset(a: &[String], b: &[String]) -> bool {
    a.iter().all(|x| b.contains(x))
}

/// Whether atom `b` selects every party atom `a` selects.
fn covers_atom(b: &Atom, a: &Atom) -> bool {
    match (b, a) {
        (Atom::Any, _) => true,
        (Atom::Network, Atom::Network | Atom::Local) => true,
        (Atom::Network, Atom::Match(m)) => m.has_identity(),
        (Atom::Network, Atom::Any) => false,
        (Atom::Local, Atom::Local) => true,
        (Atom::Local, _) => false,
        (Atom::Match(bm), Atom::Any) => !bm.has_identity() && address_set(bm).is_full(),
        (Atom::Match(bm), Atom::Network | Atom::Local) => {
            !bm.has_identity() && address_set(bm).is_full()
        }
        (Atom::Match(bm), Atom::Match(am)) => {
            if bm.has_identity() {
                if !am.has_identity() {
                    return false;
                }
                if !bm.members.is_empty()
                    && (am.members.is_empty() || !subset(&am.members, &bm.members))
                {
                    return false;
                }
                if !bm.groups_any.is_empty() {
                    let via_all = am.groups_all.iter().any(|g| bm.groups_any.contains(g));
                    let via_any =
                        !am.groups_any.is_empty() && subset(&am.groups_any, &bm.groups_any);
                    if !via_all && !via_any {
                        return false;
                    }
                }
                if !subset(&bm.groups_all, &am.groups_all) {
                    return false;
                }
            }
            address_set(am).is_subset(&address_set(bm))
        }
    }
}

fn covers_selector(b: &Selector, a: &Selector) -> bool {
    a.0.iter().all(|x| b.0.iter().any(|y| covers_atom(y, x)))
}

fn values(r: &RuleSpec) -> Option<RangeSet<u16>> {
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

/// Whether every flow `r` matches is matched by `q` too.
fn covers_rule(q: &RuleSpec, r: &RuleSpec) -> bool {
    let proto = match (&q.proto, &r.proto) {
        (ProtoSpec::Any, ProtoSpec::Any) => true,
        (ProtoSpec::Any, ProtoSpec::List(l)) => !l.contains(&Protocol::Unknown),
        (ProtoSpec::List(_), ProtoSpec::Any) => false,
        (ProtoSpec::List(a), ProtoSpec::List(b)) => b.iter().all(|p| a.contains(p)),
    };
    let vals = match (values(q), values(r)) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(a), Some(b)) => b.is_subset(&a),
    };
    proto && vals && covers_selector(&q.from, &r.from) && covers_selector(&q.to, &r.to)
}

fn is_unconditional(r: &RuleSpec) -> bool {
    let all = Selector::any();
    r.proto == ProtoSpec::Any
        && values(r).is_none()
        && covers_selector(&r.from, &all)
        && covers_selector(&r.to, &all)
}

/// Every lint of `policy`; with `members` (the network's certificates), also the selectors that
/// match none of them.
pub fn lint(policy: &CompiledPolicy, members: Option<&[MemberRef]>) -> Vec<Lint> {
    let spec = policy.spec();
    let mut out = Vec::new();
    let id_of = |tier: Tier, pos: usize| {
        policy
            .rules()
            .iter()
            .find(|r| r.tier == tier && r.position == pos)
            .map(|r| r.id.clone())
    };
    let mut pairs = 0usize;
    let mut truncated = false;
    for tier in Tier::ALL {
        let rules = &spec.tiers[tier.index()];
        for (j, r) in rules.iter().enumerate() {
            let id = id_of(tier, j);
            for (i, q) in rules.iter().enumerate().take(j) {
                pairs += 1;
                if pairs > MAX_PAIRS {
                    truncated = true;
                    break;
                }
                if q.action != Action::Log && covers_rule(q, r) {
                    let qid = id_of(tier, i).unwrap_or_default();
                    let at = q
                        .location
                        .map_or(String::new(), |l| format!(" (line {})", l.line));
                    let how = if q.action == r.action {
                        "redundant".to_owned()
                    } else {
                        format!(
                            "it would {} but `{qid}` {}s them first",
                            r.action.name(),
                            q.action.name()
                        )
                    };
                    out.push(Lint {
                        code: "shadowed",
                        rule: id.clone(),
                        location: r.location,
                        message: format!(
                            "rule `{}` can never match: every flow it selects is decided earlier by `{qid}`{at}; {how}",
                            id.clone().unwrap_or_default()
                        ),
                    });
                    break;
                }
            }
            if r.action != Action::Log && is_unconditional(r) {
                let later = rules.len() - j - 1;
                let passes_before = rules.iter().take(j).any(|x| x.action == Action::Pass);
                let lower: usize = Tier::ALL
                    .iter()
                    .filter(|t| **t > tier)
                    .map(|t| spec.tiers[t.index()].len())
                    .sum();
                let mut msg = format!(
                    "rule `{}` ({} any → any, every protocol) decides every flow that reaches it",
                    id.clone().unwrap_or_default(),
                    r.action.name()
                );
                if later > 0 {
                    msg.push_str(&format!(
                        "; the {later} rule(s) after it in `{}` never match",
                        tier.name()
                    ));
                }
                if r.action != Action::Pass && !passes_before {
                    if lower > 0 {
                        msg.push_str(&format!(
                            "; the {lower} rule(s) of lower tiers are never reached"
                        ));
                    }
                    msg.push_str("; the default never applies");
                }
                out.push(Lint {
                    code: "any-override",
                    rule: id.clone(),
                    location: r.location,
                    message: msg,
                });
            }
            if r.action == Action::Allow {
                for (side, sel, other) in [("to", &r.to, "sending"), ("from", &r.from, "receiving")]
                {
                    if !sel.0.is_empty() && sel.0.iter().all(|a| *a == Atom::Local) {
                        out.push(Lint {
                            code: "self-half-rule",
                            rule: id.clone(),
                            location: r.location,
                            message: format!(
                                "rule `{}` has `{side} = \"self\"`: it can only match at one end, and the {other} member's own check needs another rule to allow the flow; use `\"network\"` or name the members",
                                id.clone().unwrap_or_default()
                            ),
                        });
                    }
                }
            }
            for (side, sel) in [("from", &r.from), ("to", &r.to)] {
                for (k, a) in sel.0.iter().enumerate() {
                    let Atom::Match(m) = a else { continue };
                    if m.has_address() && address_set(m).is_empty() {
                        out.push(Lint {
                            code: "matches-nothing",
                            rule: id.clone(),
                            location: r.location,
                            message: format!(
                                "`{side}[{k}]` of rule `{}` matches no address: its `except` covers its `cidr`",
                                id.clone().unwrap_or_default()
                            ),
                        });
                    }
                    if let (Some(ms), true) = (members, m.has_identity()) {
                        if let Some(why) = matches_no_member(m, ms) {
                            out.push(Lint {
                                code: "matches-nothing",
                                rule: id.clone(),
                                location: r.location,
                                message: format!(
                                    "`{side}[{k}]` of rule `{}` matches none of the {} members given: {why}",
                                    id.clone().unwrap_or_default(),
                                    ms.len()
                                ),
                            });
                        }
                    }
                }
            }
        }
    }
    if truncated {
        out.push(Lint {
            code: "shadowed",
            rule: None,
            location: None,
            message: format!("the shadowing check stopped after {MAX_PAIRS} rule pairs"),
        });
    }
    let any_allow = spec
        .tiers
        .iter()
        .flatten()
        .any(|r| r.action == Action::Allow);
    if spec.default == DefaultAction::Deny && !any_allow {
        out.push(Lint {
            code: "allows-nothing",
            rule: None,
            location: None,
            message: "`default = \"deny\"` and no rule allows anything: every new flow is denied (for a block-list, write `default = \"allow\"`)".into(),
        });
    }
    out.sort_by_key(|l| l.location.map_or((usize::MAX, 0), |l| (l.line, l.column)));
    out
}

/// Why no member satisfies the identity part of `m`, if none does.
fn matches_no_member(m: &MatchAtom, members: &[MemberRef]) -> Option<String> {
    let ok = |x: &MemberRef| {
        (m.members.is_empty() || m.members.contains(&x.name))
            && (m.groups_any.is_empty() || m.groups_any.iter().any(|g| x.groups.contains(g)))
            && m.groups_all.iter().all(|g| x.groups.contains(g))
    };
    if members.iter().any(ok) {
        return None;
    }
    let names: HashSet<&str> = members.iter().map(|x| x.name.as_str()).collect();
    let groups: HashSet<&str> = members
        .iter()
        .flat_map(|x| x.groups.iter().map(String::as_str))
        .collect();
    let mut why: Vec<String> = m
        .members
        .iter()
        .filter(|n| !names.contains(n.as_str()))
        .map(|n| format!("no member is named `{n}`"))
        .collect();
    why.extend(
        m.groups_any
            .iter()
            .chain(&m.groups_all)
            .filter(|g| !groups.contains(g.as_str()))
            .map(|g| format!("no member has group `{g}`")),
    );
    if why.is_empty() {
        why.push("no member has that combination of name and groups".into());
    }
    Some(why.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::compile::compile;
    use crate::policy::parse::parse_policy;

    fn lints(text: &str, members: Option<&[MemberRef]>) -> Vec<Lint> {
        let c = compile(&parse_policy(text, "p").unwrap(), "p").unwrap();
        lint(&c, members)
    }

    fn codes(l: &[Lint]) -> Vec<&'static str> {
        l.iter().map(|x| x.code).collect()
    }

    #[test]
    fn shadowed_rules_are_found_and_partial_overlap_is_not() {
        let l = lints(
            r#"
[[application]]
id = "web-any-tcp"
action = "allow"
from = { groups = { any = ["web"] } }
to = "network"
proto = "tcp"

[[application]]
id = "web1-to-db"
action = "deny"
from = { members = ["w1"], groups = { all = ["web", "prod"] } }
to = { members = ["db"] }
proto = "tcp"
ports = [5432]

[[application]]
id = "web-udp"
action = "allow"
from = { groups = { any = ["web"] } }
to = "network"
proto = ["tcp", "udp"]
"#,
            None,
        );
        assert_eq!(codes(&l), ["shadowed"], "{l:#?}");
        assert_eq!(l[0].rule.as_deref(), Some("web1-to-db"));
        assert_eq!(l[0].location.map(|x| x.line), Some(9));
        assert!(
            l[0].message
                .contains("it would deny but `web-any-tcp` allows them first"),
            "{}",
            l[0].message
        );
    }

    #[test]
    fn cidr_containment_and_except() {
        let l = lints(
            r#"
[[platform]]
action = "deny"
from = { cidr = ["10.0.0.0/8"], except = ["10.1.0.0/16"] }
to = "any"

[[platform]]
action = "deny"
from = { cidr = ["10.2.0.0/16"] }
to = "any"

[[platform]]
action = "deny"
from = { cidr = ["10.1.2.0/24"] }
to = "any"

[[platform]]
action = "deny"
from = { cidr = ["10.3.0.0/16"], except = ["10.0.0.0/8"] }
to = "any"
"#,
            None,
        );
        let got: Vec<(&str, Option<&str>)> =
            l.iter().map(|x| (x.code, x.rule.as_deref())).collect();
        assert_eq!(
            got,
            [
                ("shadowed", Some("platform/1")),
                ("shadowed", Some("platform/3")),
                ("matches-nothing", Some("platform/3")),
                ("allows-nothing", None),
            ],
            "{l:#?}"
        );
    }

    #[test]
    fn any_override_and_self_half_rules() {
        let l = lints(
            r#"
default = "deny"

[[platform]]
id = "open"
action = "allow"
from = "any"
to = "any"

[[platform]]
action = "deny"
from = "network"
to = "network"
proto = "tcp"

[[application]]
id = "ssh-in"
action = "allow"
from = "network"
to = "self"
proto = "tcp"
ports = [22]
"#,
            None,
        );
        assert_eq!(
            codes(&l),
            ["any-override", "shadowed", "self-half-rule"],
            "{l:#?}"
        );
        assert!(
            l[0].message.contains("the 1 rule(s) after it"),
            "{}",
            l[0].message
        );
        assert!(l[0]
            .message
            .contains("the 1 rule(s) of lower tiers are never reached"));
        assert!(l[2].message.contains("`to = \"self\"`"));
    }

    #[test]
    fn selectors_that_match_no_member() {
        let members = [
            MemberRef::new("web-1", &["web"]),
            MemberRef::new("db-1", &["db"]),
        ];
        let l = lints(
            r#"
default = "allow"

[[application]]
action = "deny"
from = { members = ["dbb-1"] }
to = { groups = { all = ["db", "web"] } }

[[application]]
action = "deny"
from = { groups = { any = ["web", "nope"] } }
to = { groups = { any = ["ops"] } }
"#,
            Some(&members),
        );
        let msgs: Vec<&str> = l.iter().map(|x| x.message.as_str()).collect();
        assert_eq!(l.len(), 3, "{msgs:#?}");
        assert!(msgs[0].contains("no member is named `dbb-1`"));
        assert!(
            msgs[1].contains("`to[0]`") && msgs[1].contains("combination"),
            "{}",
            msgs[1]
        );
        assert!(msgs[2].contains("no member has group `ops`"));
        // Without the member list, nothing to say.
        assert!(lints("default = \"allow\"\n[[application]]\naction = \"deny\"\nfrom = { members = [\"x\"] }\nto = \"any\"\n", None).is_empty());
    }
}
