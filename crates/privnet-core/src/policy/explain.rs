//! "Why can't A reach B" in one call: every rule considered, tier by tier, whether it matched and
//! which condition failed if not, and the verdict with the deciding rule. Also the end-to-end view
//! of a flow: the sending member's check and the receiving member's (both enforce, §6 of
//! docs/POLICY.md).
//!
//! This is a linear walk over the compiled entries, independent of the indexes `eval.rs` uses; the
//! tests check that both give the same verdict.

use std::fmt;

use super::compile::{CompiledPolicy, Mismatch, RuleIdx};
use super::eval::{Decider, End, Verdict};
use super::flow::{Flow, Fragment, MemberRef, Protocol};
use super::spec::{Action, Tier};

/// What happened to one rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It matched and decided (allow, deny, reject).
    Decided,
    /// It matched a `pass`: the tier stops, the next one decides.
    Passed,
    /// It matched a `log`: recorded, evaluation goes on.
    Logged,
    /// It did not match: the first condition that failed.
    NoMatch(Mismatch),
}

/// One rule considered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// The rule.
    pub rule: RuleIdx,
    /// Its stable id.
    pub id: String,
    /// Its tier.
    pub tier: Tier,
    /// Its action.
    pub action: Action,
    /// Its line in the file.
    pub line: Option<usize>,
    /// What happened.
    pub outcome: Outcome,
}

/// The explanation of one evaluation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explanation {
    /// The flow.
    pub flow: Flow,
    /// Every rule considered, in order (rules after a decision are not listed).
    pub steps: Vec<Step>,
    /// The verdict.
    pub verdict: Verdict,
    /// The id of the deciding rule, or `default`, `unknown-protocol`, `non-first-fragment`.
    pub decided_by: String,
    /// The flow is allowed with `priority = "high"` (docs/POLICY.md §19).
    pub high: bool,
}

impl Mismatch {
    /// A short sentence.
    pub fn describe(self) -> &'static str {
        match self {
            Self::From => "the initiator is not selected by `from`",
            Self::To => "the responder is not selected by `to`",
            Self::Proto => "the protocol is not one of the rule's",
            Self::Port => "the port (or ICMP type/code) is not one of the rule's",
            Self::SrcAddress => "the initiator's address is outside the rule's `from` prefixes",
            Self::DstAddress => "the responder's address is outside the rule's `to` prefixes",
        }
    }

    fn rank(self) -> u8 {
        self as u8
    }
}

impl CompiledPolicy {
    /// Explain the verdict for `flow` from `src` to `dst` (allocates; not for the data path).
    pub fn explain(&self, flow: &Flow, src: End<'_>, dst: End<'_>) -> Explanation {
        let s = self.identity_class(src).0;
        let d = self.identity_class(dst).0;
        let mut steps = Vec::new();
        let mut logged = None;
        let decided = |v: Verdict, steps: Vec<Step>, by: String| Explanation {
            flow: *flow,
            steps,
            high: v.is_allow() && v.rule().is_some_and(|r| self.rule_is_high(r.0)),
            verdict: v,
            decided_by: by,
        };
        if let Fragment::NonFirst { .. } = flow.fragment {
            let v = Verdict {
                action: Action::Deny,
                tier: None,
                decided_by: Decider::NonFirstFragment,
                logged,
            };
            return decided(v, steps, "non-first-fragment".into());
        }
        for tier in Tier::ALL {
            let t = &self.tiers[tier.index()];
            let first = self.tier_start[tier.index()];
            let count = self.spec.tiers[tier.index()].len() as u32;
            let mut next_entry = 0usize;
            for r in first..first + count {
                // The entries of rule r are contiguous, in order.
                let mut best: Option<Mismatch> = None;
                let mut matched = false;
                while let Some(e) = t.entries.get(next_entry) {
                    if e.rule != r {
                        break;
                    }
                    next_entry += 1;
                    match e.check(&self.sets, flow, &s, &d) {
                        Ok(()) => matched = true,
                        Err(m) => {
                            if best.is_none_or(|b| m.rank() > b.rank()) {
                                best = Some(m);
                            }
                        }
                    }
                }
                let Some(info) = self.rules.get(r as usize) else {
                    continue;
                };
                let outcome = match (matched, info.action) {
                    (false, _) => Outcome::NoMatch(best.unwrap_or(Mismatch::From)),
                    (true, Action::Log) => Outcome::Logged,
                    (true, Action::Pass) => Outcome::Passed,
                    (true, _) => Outcome::Decided,
                };
                steps.push(Step {
                    rule: RuleIdx(r),
                    id: info.id.clone(),
                    tier,
                    action: info.action,
                    line: info.location.map(|l| l.line),
                    outcome,
                });
                match outcome {
                    Outcome::Logged => {
                        if logged.is_none() {
                            logged = Some(RuleIdx(r));
                        }
                    }
                    Outcome::Passed => break,
                    Outcome::Decided => {
                        let v = Verdict {
                            action: info.action,
                            tier: Some(tier),
                            decided_by: Decider::Rule(RuleIdx(r)),
                            logged,
                        };
                        return decided(v, steps, info.id.clone());
                    }
                    Outcome::NoMatch(_) => {}
                }
            }
        }
        let unknown = flow.effective_proto() == Protocol::Unknown;
        let v = Verdict {
            action: if unknown {
                Action::Deny
            } else {
                self.spec.default.action()
            },
            tier: None,
            decided_by: if unknown {
                Decider::UnknownProtocol
            } else {
                Decider::Default
            },
            logged,
        };
        let by = if unknown {
            "unknown-protocol"
        } else {
            "default"
        };
        decided(v, steps, by.into())
    }

    /// Explain a flow end to end: at the sending member (when `from` is a member) and at the
    /// receiving member (when `to` is one). `None` is a non-member address.
    pub fn explain_path(
        &self,
        flow: &Flow,
        from: Option<&MemberRef>,
        to: Option<&MemberRef>,
    ) -> PathExplanation {
        fn remote(m: Option<&MemberRef>) -> End<'_> {
            m.map_or(End::External, End::Member)
        }
        PathExplanation {
            at_sender: from.map(|f| self.explain(flow, End::Local(f), remote(to))),
            at_receiver: to.map(|t| self.explain(flow, remote(from), End::Local(t))),
        }
    }
}

/// A flow explained at both enforcing ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathExplanation {
    /// The sending member's check (`self` = the sender), if the initiator is a member.
    pub at_sender: Option<Explanation>,
    /// The receiving member's check (`self` = the receiver), if the responder is a member.
    pub at_receiver: Option<Explanation>,
}

impl PathExplanation {
    /// The end-to-end verdict: the sender's if it does not allow, else the receiver's (the
    /// authoritative one); `None` when neither end is a member.
    pub fn verdict(&self) -> Option<&Explanation> {
        match (&self.at_sender, &self.at_receiver) {
            (Some(s), _) if !s.verdict.is_allow() => Some(s),
            (_, Some(r)) => Some(r),
            (s, None) => s.as_ref(),
        }
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fl = &self.flow;
        let port = |p: Option<u16>| p.map_or(String::new(), |p| format!(":{p}"));
        write!(
            f,
            "flow {} {}{} -> {}{}",
            fl.proto.name(),
            fl.src,
            port(fl.src_port),
            fl.dst,
            port(fl.dst_port)
        )?;
        if let Some(i) = fl.icmp {
            write!(f, " type {} code {}", i.ty, i.code)?;
        }
        writeln!(f)?;
        for s in &self.steps {
            let what = match s.outcome {
                Outcome::Decided => format!("MATCH: {}", s.action.name()),
                Outcome::Passed => "MATCH: pass to the next tier".into(),
                Outcome::Logged => "MATCH: logged, continue".into(),
                Outcome::NoMatch(m) => format!("no: {}", m.describe()),
            };
            let line = s.line.map_or(String::new(), |l| format!(" (line {l})"));
            writeln!(
                f,
                "  {:<11} {:<24} {:<6} {what}{line}",
                s.tier.name(),
                s.id,
                s.action.name()
            )?;
        }
        let tier = self
            .verdict
            .tier
            .map_or(String::new(), |t| format!("{} ", t.name()));
        write!(
            f,
            "verdict: {} (decided by {tier}{})",
            self.verdict.action.name(),
            self.decided_by
        )?;
        if self.high {
            write!(f, ", priority high")?;
        }
        Ok(())
    }
}

impl fmt::Display for PathExplanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(s) = &self.at_sender {
            writeln!(f, "at the sending member:\n{s}")?;
        }
        if let Some(r) = &self.at_receiver {
            writeln!(f, "at the receiving member:\n{r}")?;
        }
        match self.verdict() {
            Some(v) => write!(f, "end to end: {}", v.verdict.action.name()),
            None => write!(f, "end to end: no member end, nothing to check"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::compile::compile;
    use crate::policy::reference::{gen_flow, gen_member, gen_spec, ByteSource};
    use crate::policy::spec::{DefaultAction, PolicySpec, RuleSpec, Selector};

    #[test]
    fn explain_agrees_with_evaluate() {
        let mut x: u64 = 77;
        for _ in 0..150 {
            let bytes: Vec<u8> = (0..1500)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let mut u = ByteSource::new(&bytes);
            let spec = gen_spec(&mut u, 8);
            let c = compile(&spec, "gen").unwrap();
            for _ in 0..40 {
                let flow = gen_flow(&mut u);
                let (a, b) = (gen_member(&mut u), gen_member(&mut u));
                let (src, dst) = match u.below(3) {
                    0 => (End::Local(&a), End::Member(&b)),
                    1 => (End::Member(&a), End::Local(&b)),
                    _ => (End::External, End::Local(&b)),
                };
                let e = c.explain(&flow, src, dst);
                assert_eq!(e.verdict, c.evaluate_ends(&flow, src, dst), "{e}");
            }
        }
    }

    #[test]
    fn explanation_names_the_failing_condition() {
        let mut p = PolicySpec::new(DefaultAction::Deny);
        p.rule(
            Tier::Application,
            RuleSpec::new(
                Action::Allow,
                Selector::groups_any(&["web"]),
                Selector::members(&["db"]),
            )
            .proto(&[Protocol::TCP])
            .ports(&[(5432, 5432)])
            .id("web-to-db"),
        );
        let c = compile(&p, "t").unwrap();
        let web = MemberRef::new("w", &["web"]);
        let db = MemberRef::new("db", &[]);
        let f = Flow::tcp(
            "10.0.0.1".parse().unwrap(),
            1,
            "10.0.0.2".parse().unwrap(),
            22,
            2,
        );
        let e = c.explain(&f, End::Local(&web), End::Member(&db));
        assert_eq!(e.steps[0].outcome, Outcome::NoMatch(Mismatch::Port));
        assert_eq!(e.decided_by, "default");
        let text = e.to_string();
        assert!(text.contains("web-to-db"), "{text}");
        assert!(text.contains("the port"), "{text}");
        assert!(
            text.ends_with("verdict: deny (decided by default)"),
            "{text}"
        );
        // End to end, the other way round: db may not open connections to web.
        let back = Flow::tcp(
            "10.0.0.2".parse().unwrap(),
            5432,
            "10.0.0.1".parse().unwrap(),
            40000,
            2,
        );
        let path = c.explain_path(&back, Some(&db), Some(&web));
        let v = path.verdict().unwrap();
        assert_eq!(v.verdict.action, Action::Deny);
        assert_eq!(v.steps[0].outcome, Outcome::NoMatch(Mismatch::From));
        assert!(path.to_string().contains("at the sending member"));
    }

    #[test]
    fn explain_names_the_priority_class_of_an_allow() {
        let mut p = PolicySpec::new(DefaultAction::Deny);
        p.tiers[1].push(
            RuleSpec::new(Action::Allow, Selector::any(), Selector::any())
                .proto(&[Protocol::TCP])
                .ports(&[(8081, 8081)])
                .priority(crate::policy::spec::Priority::High)
                .id("health"),
        );
        let c = compile(&p, "t").unwrap();
        let (a, b) = (MemberRef::new("a", &[]), MemberRef::new("b", &[]));
        let flow = |port| {
            Flow::tcp(
                "10.0.0.1".parse().unwrap(),
                1,
                "10.0.0.2".parse().unwrap(),
                port,
                2,
            )
        };
        let e = c.explain(&flow(8081), End::Local(&a), End::Member(&b));
        assert!(e.high);
        assert!(
            e.to_string()
                .ends_with("verdict: allow (decided by application health), priority high"),
            "{e}"
        );
        let e = c.explain(&flow(22), End::Local(&a), End::Member(&b));
        assert!(!e.high && !e.to_string().contains("priority"), "{e}");
    }
}
