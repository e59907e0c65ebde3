//! Routing policies: the `[[route]]` entries of a policy, checked and compiled into a
//! [`RouteTable`] the node's gateway selection reads (docs/POLICY.md, "Routing policies").
//!
//! An entry orders gateways; it never grants anything. A gateway serves an entry only while its
//! verified certificate grants a prefix containing the entry's prefix (the node checks that
//! against its router, which holds exactly the granted claims once a peer's certificate is
//! known). Who may *use* a route is the access policy's business: a flow to a routed prefix is
//! decided by the tiers like any other (and refused with the same `deny`/`reject`).

use ipnetwork::IpNetwork;

use super::error::{Location, Problems};
use super::flow::MemberRef;
use super::spec::{Atom, RouteSpec, Selector};

/// Most `[[route]]` entries in one policy.
pub const MAX_ROUTES: usize = 1024;
/// Most gateways in one entry's `via`.
pub const MAX_VIA: usize = 16;

/// One compiled entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteEntry {
    /// The entry's id (`route/N` when the file gave none).
    pub id: String,
    /// The destinations, host bits cleared.
    pub prefix: IpNetwork,
    /// Gateway names, in priority order.
    pub via: Vec<String>,
    /// Which sending members it applies to (`None`: every member).
    pub from: Option<Selector>,
    /// Where it starts in its file.
    pub location: Option<Location>,
}

impl RouteEntry {
    /// Whether the entry applies to traffic sent by `member` (the enforcing node itself).
    pub fn applies_to(&self, member: &MemberRef) -> bool {
        let Some(sel) = &self.from else {
            return true;
        };
        sel.0.iter().any(|a| match a {
            Atom::Any | Atom::Network | Atom::Local => true,
            Atom::Match(m) => {
                (m.members.is_empty() || m.members.contains(&member.name))
                    && (m.groups_any.is_empty()
                        || m.groups_any.iter().any(|g| member.groups.contains(g)))
                    && m.groups_all.iter().all(|g| member.groups.contains(g))
            }
        })
    }

    /// The position of `name` in `via` (lower is preferred).
    pub fn rank_of(&self, name: &str) -> Option<usize> {
        self.via.iter().position(|v| v == name)
    }
}

/// The compiled `[[route]]` entries, in file order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteTable {
    entries: Vec<RouteEntry>,
}

impl RouteTable {
    /// Every entry, in file order.
    pub fn entries(&self) -> &[RouteEntry] {
        &self.entries
    }

    /// Whether the policy has no routing entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// `net` with its host bits cleared.
fn canonical(net: IpNetwork) -> IpNetwork {
    IpNetwork::new(net.network(), net.prefix()).unwrap_or(net)
}

/// Check `specs` (problems go to `problems`) and compile them.
pub(crate) fn compile(specs: &[RouteSpec], problems: &mut Problems) -> RouteTable {
    if specs.len() > MAX_ROUTES {
        problems.push(
            None,
            "route",
            format!(
                "at most {MAX_ROUTES} `[[route]]` entries; this policy has {}",
                specs.len()
            ),
        );
    }
    let mut entries: Vec<RouteEntry> = Vec::with_capacity(specs.len().min(MAX_ROUTES));
    for (i, r) in specs.iter().enumerate().take(MAX_ROUTES) {
        let key = format!("route[{i}]");
        let at = r.location;
        if r.prefix != canonical(r.prefix) {
            problems.push(
                at,
                format!("{key}.prefix"),
                format!(
                    "a prefix without host bits (`{}`, not `{}`)",
                    canonical(r.prefix),
                    r.prefix
                ),
            );
        }
        if r.via.is_empty() || r.via.len() > MAX_VIA {
            problems.push(
                at,
                format!("{key}.via"),
                format!("1 to {MAX_VIA} gateway member names, in priority order"),
            );
        }
        for (j, name) in r.via.iter().enumerate() {
            if name.is_empty() {
                problems.push(at, format!("{key}.via[{j}]"), "a member name, not empty");
            } else if r.via[..j].contains(name) {
                problems.push(
                    at,
                    format!("{key}.via[{j}]"),
                    format!("each gateway once: `{name}` is already listed"),
                );
            }
        }
        if let Some(sel) = &r.from {
            if sel.0.is_empty() {
                problems.push(
                    at,
                    format!("{key}.from"),
                    "a selector of the sending members (an empty list would match nobody)",
                );
            }
            let has_address = sel.0.iter().any(|a| match a {
                Atom::Match(m) => m.has_address(),
                _ => false,
            });
            if has_address {
                problems.push(
                    at,
                    format!("{key}.from"),
                    "members or groups of the sending members (`cidr`/`except` are not used for routing: the sender is the member itself)",
                );
            }
        }
        let id = match &r.id {
            Some(id) => {
                if entries.iter().any(|e| e.id == *id) {
                    problems.push(
                        at,
                        format!("{key}.id"),
                        format!("a unique route id: `{id}` is already used"),
                    );
                }
                id.clone()
            }
            None => format!("route/{i}"),
        };
        let prefix = canonical(r.prefix);
        if let Some(e) = entries
            .iter()
            .find(|e| e.prefix == prefix && e.from == r.from)
        {
            problems.push(
                at,
                format!("{key}.prefix"),
                format!(
                    "one entry per prefix and `from`: `{prefix}` is already routed by `{}`",
                    e.id
                ),
            );
        }
        entries.push(RouteEntry {
            id,
            prefix,
            via: r.via.clone(),
            from: r.from.clone(),
            location: at,
        });
    }
    RouteTable { entries }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNetwork {
        s.parse().unwrap()
    }

    #[test]
    fn entries_are_checked() {
        let mut p = Problems::default();
        let mut bad = RouteSpec::new(net("10.9.0.1/24"), &["a", "a"]);
        bad.from = Some(Selector::cidr(&[net("10.0.0.0/8")], &[]));
        let t = compile(
            &[
                RouteSpec::new(net("10.9.0.0/24"), &["gw-a", "gw-b"]),
                bad,
                RouteSpec::new(net("10.9.0.0/24"), &[]),
            ],
            &mut p,
        );
        let text = p.into_error("p.toml").to_string();
        assert!(text.contains("route[1].prefix"), "{text}");
        assert!(text.contains("route[1].via[1]"), "{text}");
        assert!(text.contains("route[1].from"), "{text}");
        assert!(text.contains("route[2].via"), "{text}");
        assert!(text.contains("already routed by `route/0`"), "{text}");
        assert_eq!(t.entries()[0].id, "route/0");
        assert_eq!(t.entries()[0].rank_of("gw-b"), Some(1));
    }

    #[test]
    fn from_selects_the_sending_member() {
        let mut e = RouteSpec::new(net("0.0.0.0/0"), &["exit"]);
        let mut p = Problems::default();
        assert!(compile(&[e.clone()], &mut p).entries()[0].applies_to(&MemberRef::new("x", &[])));
        e.from = Some(Selector::groups_any(&["staff"]).or(Selector::members(&["ops-1"])));
        let t = compile(&[e], &mut p);
        assert!(p.is_empty());
        let e = &t.entries()[0];
        assert!(e.applies_to(&MemberRef::new("web", &["staff"])));
        assert!(e.applies_to(&MemberRef::new("ops-1", &[])));
        assert!(!e.applies_to(&MemberRef::new("web", &["guest"])));
    }
}
