//! The policy hash: BLAKE2s-256 over a canonical encoding of what the policy enforces.
//!
//! Canonical means: comments, formatting, key order inside a table, `description`s, the policy
//! `name` and the embedded tests do not change it; rule order, ids, actions and every selector do.
//! Sets inside a rule (member names, groups, prefixes, ports, ICMP matches, protocols) are sorted and
//! de-duplicated first, and prefixes are reduced to the address ranges they denote, so two files
//! that enforce the same rules with the same ids hash the same. Every field is length- or
//! tag-prefixed, so no two different policies share an encoding.

use blake2::{Blake2s256, Digest};

use super::cidr::IpSet;
use super::flow::Protocol;
use super::spec::{
    Action, Atom, DefaultAction, LimitDirection, LimitSpec, PolicySpec, Priority, ProtoSpec,
    RuleSpec, Selector,
};

/// Encoding version: bump when the encoding changes.
const VERSION: u8 = 1;

struct Enc(Blake2s256);

impl Enc {
    fn u8(&mut self, v: u8) {
        self.0.update([v]);
    }
    fn u32(&mut self, v: u32) {
        self.0.update(v.to_le_bytes());
    }
    fn len(&mut self, n: usize) {
        self.u32(u32::try_from(n).unwrap_or(u32::MAX));
    }
    fn str(&mut self, s: &str) {
        self.len(s.len());
        self.0.update(s.as_bytes());
    }
    fn strs(&mut self, v: &[String]) {
        let mut v: Vec<&str> = v.iter().map(String::as_str).collect();
        v.sort_unstable();
        v.dedup();
        self.len(v.len());
        for s in v {
            self.str(s);
        }
    }
    fn set(&mut self, s: &IpSet) {
        self.len(s.v4.ranges.len());
        for (lo, hi) in &s.v4.ranges {
            self.u32(*lo);
            self.u32(*hi);
        }
        self.len(s.v6.ranges.len());
        for (lo, hi) in &s.v6.ranges {
            self.0.update(lo.to_le_bytes());
            self.0.update(hi.to_le_bytes());
        }
    }
    fn selector(&mut self, s: &Selector) {
        self.len(s.0.len());
        for a in &s.0 {
            match a {
                Atom::Any => self.u8(0),
                Atom::Network => self.u8(1),
                Atom::Local => self.u8(2),
                Atom::Match(m) => {
                    self.u8(3);
                    self.strs(&m.members);
                    self.strs(&m.groups_any);
                    self.strs(&m.groups_all);
                    self.u8(u8::from(m.has_address()));
                    if m.has_address() {
                        self.set(&IpSet::from_cidr_except(&m.cidr, &m.except));
                    }
                }
            }
        }
    }
    fn opt(&mut self, v: Option<u64>) {
        match v {
            Some(v) => {
                self.u8(1);
                self.0.update(v.to_le_bytes());
            }
            None => self.u8(0),
        }
    }
    fn limit(&mut self, l: &LimitSpec) {
        match &l.id {
            Some(id) => {
                self.u8(1);
                self.str(id);
            }
            None => self.u8(0),
        }
        self.selector(&l.members);
        self.u8(match l.direction {
            LimitDirection::Out => 0,
            LimitDirection::In => 1,
            LimitDirection::Both => 2,
        });
        self.opt(l.packets_per_sec);
        self.opt(l.bytes_per_sec);
        self.opt(l.burst_ms);
        self.u8(u8::from(l.shared));
    }
    fn rule(&mut self, r: &RuleSpec) {
        match &r.id {
            Some(id) => {
                self.u8(1);
                self.str(id);
            }
            None => self.u8(0),
        }
        // A high-priority allow is its own action code, so the hashes of policies without priority
        // classes are those from before the classes existed.
        self.u8(match r.action {
            Action::Allow if r.priority == Priority::High => 5,
            Action::Allow => 0,
            Action::Deny => 1,
            Action::Reject => 2,
            Action::Pass => 3,
            Action::Log => 4,
        });
        self.selector(&r.from);
        self.selector(&r.to);
        match &r.proto {
            ProtoSpec::Any => self.u8(0),
            ProtoSpec::List(l) => {
                self.u8(1);
                let mut l: Vec<u32> = l.iter().map(|p| proto_code(*p)).collect();
                l.sort_unstable();
                l.dedup();
                self.len(l.len());
                for p in l {
                    self.u32(p);
                }
            }
        }
        let mut ports: Vec<(u16, u16)> = r.ports.iter().map(|p| (p.lo, p.hi)).collect();
        ports.sort_unstable();
        ports.dedup();
        self.len(ports.len());
        for (lo, hi) in ports {
            self.u32(u32::from(lo) << 16 | u32::from(hi));
        }
        let mut icmp: Vec<(u16, u16)> = r.icmp.iter().map(|m| m.range()).collect();
        icmp.sort_unstable();
        icmp.dedup();
        self.len(icmp.len());
        for (lo, hi) in icmp {
            self.u32(u32::from(lo) << 16 | u32::from(hi));
        }
    }
}

fn proto_code(p: Protocol) -> u32 {
    match p {
        Protocol::Number(n) => u32::from(n),
        Protocol::Unknown => 256,
    }
}

/// The hash of `spec`.
pub(crate) fn policy_hash(spec: &PolicySpec) -> [u8; 32] {
    let mut e = Enc(Blake2s256::new());
    e.str("privnet-policy");
    e.u8(VERSION);
    e.u8(match spec.default {
        DefaultAction::Allow => 0,
        DefaultAction::Deny => 1,
    });
    for tier in &spec.tiers {
        e.len(tier.len());
        for r in tier {
            e.rule(r);
        }
    }
    // Only a policy with limits encodes them, so the hashes of policies without limits are those
    // of encoding version 1 before limits existed.
    if !spec.limits.is_empty() {
        e.str("limits");
        e.len(spec.limits.len());
        for l in &spec.limits {
            e.limit(l);
        }
    }
    // Routing entries (absent from the encoding when there are none, so the hashes of policies
    // without them did not change when they were added). Order matters: `via` is a priority list.
    if !spec.routes.is_empty() {
        e.str("route");
        e.len(spec.routes.len());
        for r in &spec.routes {
            match &r.id {
                Some(id) => {
                    e.u8(1);
                    e.str(id);
                }
                None => e.u8(0),
            }
            e.str(&r.prefix.to_string());
            e.len(r.via.len());
            for v in &r.via {
                e.str(v);
            }
            match &r.from {
                Some(sel) => {
                    e.u8(1);
                    e.selector(sel);
                }
                None => e.u8(0),
            }
        }
    }
    e.0.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::spec::{RuleSpec, Tier};

    fn base() -> PolicySpec {
        let mut p = PolicySpec::new(DefaultAction::Deny);
        p.rule(
            Tier::Application,
            RuleSpec::new(
                Action::Allow,
                Selector::members(&["a", "b"]),
                Selector::cidr(&["10.0.0.0/8".parse().unwrap()], &[]),
            )
            .proto(&[Protocol::TCP])
            .ports(&[(80, 80), (443, 443)]),
        );
        p
    }

    #[test]
    fn same_meaning_same_hash() {
        let a = base();
        let mut b = base();
        b.name = Some("renamed".into());
        b.tiers[1][0].description = Some("text".into());
        b.tiers[1][0].ports.reverse();
        b.tiers[1][0].from = Selector::members(&["b", "a", "a"]);
        b.tiers[1][0].to = Selector::cidr(
            &[
                "10.0.0.0/9".parse().unwrap(),
                "10.128.0.0/9".parse().unwrap(),
            ],
            &[],
        );
        assert_eq!(policy_hash(&a), policy_hash(&b));
    }

    #[test]
    fn different_meaning_different_hash() {
        let a = policy_hash(&base());
        let mut b = base();
        b.tiers[1][0].action = Action::Deny;
        assert_ne!(a, policy_hash(&b));
        let mut c = base();
        c.default = DefaultAction::Allow;
        assert_ne!(a, policy_hash(&c));
        let mut d = base();
        let r = d.tiers[1].remove(0);
        d.tiers[0].push(r);
        assert_ne!(a, policy_hash(&d));
        let mut e = base();
        e.tiers[1][0].id = Some("x".into());
        assert_ne!(a, policy_hash(&e));
    }
}
