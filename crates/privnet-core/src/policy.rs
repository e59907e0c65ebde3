//! The access policy engine: a tiered, ordered rule language with real deny, compiled to a lookup
//! structure, with connection tracking, counters, explanations and lints. Pure and sans-IO: time is
//! an input, nothing here reads a clock, a file or a socket. The language and its precise
//! semantics are in `docs/POLICY.md`.
//!
//! ```text
//!   TOML text ──parse_policy──► PolicySpec ──compile──► Arc<CompiledPolicy> (hashed, immutable)
//!                               (typed API)                    │ swapped whole on reload
//!                                                              ▼
//!   packet → Flow + FlowPath ──► Filter::check ──► fragments → ICMP related → conntrack hit
//!                                                 → (new flow) evaluate tiers → track → Decision
//! ```
//!
//! Module map (each imports only the ones above it in this list):
//! `flow`, `error`, `cidr`, `bitset` (leaves) → `spec` → `interval` → `hash` → `limits` → `compile` → `eval`
//! → `explain`, `lint`, `selftest`, `counters` → `conntrack` (depends on `flow` only) → `filter`.
//! `parse` (feature `policy-toml`) depends on `spec` and `error`.

mod bitset;
mod cidr;
pub mod compile;
pub mod conntrack;
pub mod counters;
pub mod error;
pub mod eval;
pub mod explain;
pub mod filter;
pub mod flow;
#[cfg(any(test, feature = "test-util"))]
#[doc(hidden)]
pub mod fuzzing;
mod hash;
mod interval;
pub mod limits;
pub mod lint;
#[cfg(feature = "policy-toml")]
pub mod parse;
#[cfg(any(test, feature = "test-util"))]
#[doc(hidden)]
pub mod reference;
pub mod routes;
pub mod selftest;
pub mod spec;

#[cfg(test)]
mod tests;

pub use compile::{compile, CompiledPolicy, Mismatch, RuleIdx, RuleInfo};
pub use conntrack::ConntrackConfig;
pub use counters::CountersSnapshot;
pub use error::{Location, PolicyError, PolicyProblem};
pub use eval::{Decider, End, IdentityClass, PartyBits, Verdict};
pub use filter::{Cut, Decision, Disposition, Filter, LiveExplanation, Reason};
pub use flow::{
    tcp_flags, Direction, EndKind, Flow, FlowPath, Fragment, Icmp, MemberRef, Protocol, QuotedFlow,
};
pub use limits::{LimitCount, LimitInfo, Limiter, TokenBucket};
#[cfg(feature = "policy-toml")]
pub use parse::parse_policy;
pub use spec::{
    Action, Atom, DefaultAction, IcmpMatch, LimitDirection, LimitSpec, MatchAtom, PolicySpec,
    PortRange, Priority, ProtoSpec, RouteSpec, RuleSpec, Selector, TestEnd, TestSpec, Tier,
};
