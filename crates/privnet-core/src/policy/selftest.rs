//! The embedded `[[test]]` entries of a policy: each builds a flow, explains it end to end (the
//! sending member's check, then the receiving member's) and compares the verdict, and the deciding
//! rule if the test names one.
//!
//! Addresses: a test end's `address`, else (with `--members`) the certificate's first address, else
//! `192.0.2.1` for `from` and `192.0.2.2` for `to` (`2001:db8::1` / `2001:db8::2` when the other
//! end is IPv6). Groups: the test's, else the certificate's of a member with that name. TCP, UDP
//! and SCTP flows come from port 40000; ICMP without a type is an echo request.

use std::fmt;
use std::net::IpAddr;

use super::compile::CompiledPolicy;
use super::error::Location;
use super::explain::PathExplanation;
use super::flow::{tcp_flags, Flow, MemberRef, Protocol};
use super::spec::{TestEnd, TestSpec};

/// A member known from its certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KnownMember {
    /// Name and groups.
    pub member: MemberRef,
    /// Its first overlay address.
    pub address: Option<IpAddr>,
}

/// The result of one embedded test.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestOutcome {
    /// Position in the file's `[[test]]` list.
    pub index: usize,
    /// Its name (or `test[i]`).
    pub name: String,
    /// Where it is.
    pub location: Option<Location>,
    /// Whether the policy did what the test expects.
    pub passed: bool,
    /// What was expected and what happened.
    pub message: String,
    /// The evaluation at both ends.
    pub explanation: PathExplanation,
}

impl fmt::Display for TestOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = self
            .location
            .map_or(String::new(), |l| format!("line {}: ", l.line));
        let status = if self.passed { "ok" } else { "FAILED" };
        write!(f, "{at}{} ... {status}: {}", self.name, self.message)
    }
}

fn resolve<'a>(end: &'a TestEnd, known: &'a [KnownMember]) -> (Option<MemberRef>, Option<IpAddr>) {
    match end {
        TestEnd::Address(a) => (None, Some(*a)),
        TestEnd::Member { member, address } => {
            let k = known.iter().find(|k| k.member.name == member.name);
            let mut m = member.clone();
            if m.groups.is_empty() {
                if let Some(k) = k {
                    m.groups = k.member.groups.clone();
                }
            }
            (Some(m), address.or_else(|| k.and_then(|k| k.address)))
        }
    }
}

fn default_addr(v6: bool, from: bool) -> IpAddr {
    match (v6, from) {
        (false, true) => IpAddr::from([192, 0, 2, 1]),
        (false, false) => IpAddr::from([192, 0, 2, 2]),
        (true, true) => IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, 1]),
        (true, false) => IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, 2]),
    }
}

/// The flow a test describes, and its two ends.
pub fn test_flow(
    t: &TestSpec,
    known: &[KnownMember],
) -> (Flow, Option<MemberRef>, Option<MemberRef>) {
    let (from, fa) = resolve(&t.from, known);
    let (to, ta) = resolve(&t.to, known);
    let v6 = fa.or(ta).is_some_and(|a| a.is_ipv6());
    let src = fa.unwrap_or_else(|| default_addr(v6, true));
    let dst = ta.unwrap_or_else(|| default_addr(v6, false));
    let flow = if t.proto.has_ports() {
        let mut f = Flow::tcp(src, 40000, dst, t.port.unwrap_or(0), tcp_flags::SYN);
        f.proto = t.proto;
        if t.proto != Protocol::TCP {
            f.tcp_flags = 0;
        }
        if t.port.is_none() {
            f.dst_port = None;
        }
        f
    } else if t.proto.is_icmp() {
        let request = if t.proto == Protocol::ICMP { 8 } else { 128 };
        let (ty, code) = t.icmp.unwrap_or((request, 0));
        let mut f = Flow::icmp(src, dst, ty, code, Some(1));
        f.proto = t.proto;
        f
    } else {
        Flow::other(src, dst, t.proto)
    };
    (flow, from, to)
}

/// Run every embedded test of `policy` (members from certificates, if any, fill in groups and
/// addresses).
pub fn run_tests(policy: &CompiledPolicy, known: &[KnownMember]) -> Vec<TestOutcome> {
    policy
        .spec()
        .tests
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let (flow, from, to) = test_flow(t, known);
            let path = policy.explain_path(&flow, from.as_ref(), to.as_ref());
            let (passed, message) = match path.verdict() {
                None => (false, "no member end to check".to_owned()),
                Some(e) => {
                    let action_ok = e.verdict.action == t.expect;
                    let rule_ok = t.rule.as_ref().is_none_or(|r| *r == e.decided_by);
                    let got = format!("{} by `{}`", e.verdict.action.name(), e.decided_by);
                    let want = match &t.rule {
                        Some(r) => format!("{} by `{r}`", t.expect.name()),
                        None => t.expect.name().to_owned(),
                    };
                    if action_ok && rule_ok {
                        (true, got)
                    } else {
                        (false, format!("expected {want}, got {got}"))
                    }
                }
            };
            TestOutcome {
                index: i,
                name: t.name.clone().unwrap_or_else(|| format!("test[{i}]")),
                location: t.location,
                passed,
                message,
                explanation: path,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::compile::compile;
    use crate::policy::parse::parse_policy;

    const P: &str = r#"
[[application]]
id = "web-to-db"
action = "allow"
from = { groups = { any = ["web"] } }
to = { groups = { any = ["db"] } }
proto = "tcp"
ports = [5432]

[[application]]
id = "ssh-in"
action = "allow"
from = "network"
to = "self"
proto = "tcp"
ports = [22]

[[test]]
name = "web reaches db"
from = { member = "web-1", groups = ["web"] }
to = { member = "db-1", groups = ["db"] }
proto = "tcp"
port = 5432
expect = "allow"
rule = "web-to-db"

[[test]]
name = "db does not open connections to web"
from = { member = "db-1", groups = ["db"] }
to = { member = "web-1", groups = ["web"] }
proto = "tcp"
port = 5432
expect = "deny"
rule = "default"

[[test]]
name = "ssh with self is a half rule: the sender's own check denies"
from = "web-1"
to = "db-1"
proto = "tcp"
port = 22
expect = "deny"

[[test]]
name = "wrong on purpose"
from = "web-1"
to = "db-1"
proto = "tcp"
port = 5432
expect = "allow"
"#;

    #[test]
    fn embedded_tests_run_and_report() {
        let c = compile(&parse_policy(P, "p.toml").unwrap(), "p.toml").unwrap();
        let out = run_tests(&c, &[]);
        assert_eq!(out.len(), 4);
        assert!(out[0].passed, "{}", out[0]);
        assert!(out[1].passed, "{}", out[1]);
        assert!(out[2].passed, "{}", out[2]);
        // Without groups (and no certificates), web-1 is not in `web`.
        assert!(!out[3].passed);
        assert_eq!(out[3].message, "expected allow, got deny by `default`");
        assert_eq!(out[3].location.map(|l| l.line), Some(44));
        assert!(out[3].to_string().contains("FAILED"));
        // With the certificates, the groups come from them and the test passes.
        let known = [
            KnownMember {
                member: MemberRef::new("web-1", &["web"]),
                address: Some("10.0.0.1".parse().unwrap()),
            },
            KnownMember {
                member: MemberRef::new("db-1", &["db"]),
                address: None,
            },
        ];
        let out = run_tests(&c, &known);
        assert!(out.iter().all(|o| o.passed), "{out:#?}");
        assert_eq!(
            out[3].explanation.at_sender.as_ref().unwrap().flow.src,
            "10.0.0.1".parse::<IpAddr>().unwrap()
        );
    }
}
