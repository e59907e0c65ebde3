//! Exposure (ingress): the sans-IO decisions behind an `[[expose]]` entry, which makes one service
//! of the private network reachable from outside it through one member.
//!
//! - [`list`]: the allow- and block-list parser (FireHOL netset, Spamhaus DROP, one CIDR or address
//!   per line) and the compiled [`PrefixSet`];
//! - [`admit`]: the [`Admission`] of a new outside connection or UDP flow (allow-list, block-lists,
//!   caps on concurrent connections per source and in total, per-source rate of new connections,
//!   per-source bytes per second), with a [`Refusal`] reason and counters;
//! - [`target`]: the choice of a member of a group target ([`choose`]: established sessions first,
//!   then least connections, ties by a rendezvous hash of the source);
//! - [`proxy`]: PROXY protocol v2 headers (TCP and UDP, IPv4 and IPv6).
//!
//! Time comes in as `now`; nothing here opens a socket. The listeners that use these decisions are
//! in `io::expose` (feature `driver`). Docs: `docs/EXPOSURE.md`.

pub mod admit;
pub mod list;
pub mod proxy;
pub mod target;

pub use admit::{Admission, AdmissionConfig, AdmissionCounters, Rate, Refusal};
pub use list::{parse_list, ListError, PrefixSet};
pub use target::{choose, Candidate};

#[cfg(test)]
mod tests;
