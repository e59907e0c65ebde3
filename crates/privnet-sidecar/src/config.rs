//! The member configuration file: schema, loader and validation.
//!
//! One TOML file describes this process's membership of **one network** (see `docs/CONFIG.md` for
//! the reference). A process that is a member of several networks is given several files
//! (`privnet check --config a.toml --config b.toml`); overlay addresses may overlap between
//! networks, but network names and ids, listen addresses and TUN device names may not. The
//! process-wide sections `[metrics]`, `[status]` and `[log]` may appear in any of the files; if they
//! appear in more than one, they must be identical.
//!
//! Loading never stops at the first problem: [`load`] returns either a validated [`Config`] or every
//! [`Problem`] found, each naming the file, the key path (`peer[1].public_key`), the line when known,
//! and what was expected. Relative paths in a file are relative to that file's directory. Only a
//! TOML syntax error ends the reading of a file early (one problem for that file; other files are
//! still read).
//!
//! # Layout
//!
//! This file only declares the modules and re-exports their public items. The modules import each
//! other one way only (each imports only modules further down this list):
//!
//! - `load`: reads the configuration and identity files (through `crate::files`), then validates
//!   ([`load`]).
//! - `validate`: the checks (pure: no file, no clock), and the conversion of raw sections into the
//!   validated types; `validate/peers.rs` checks the `[[peer]]` entries ([`parse_endpoint`]),
//!   `validate/policy.rs` compiles `node.policy` with the core's policy engine.
//! - `spans`: TOML text to [`FileConfig`] ([`parse_str`]), lenient so that every schema problem is
//!   reported, each with its line; the list of problems of one file.
//! - `types`: the validated configuration ([`Config`], [`NetworkConfig`], [`TunSettings`], ...) and
//!   [`Problem`].
//! - `schema`: the serde structs of the file ([`FileConfig`] and its sections) and their defaults.
//! - `expose`: `[[expose]]` (public addresses forwarded into the network), raw and validated;
//!   its checks are `validate/expose.rs`.
//! - `validate/directory.rs`: `[directory]` (etcd endpoints, prefix, lease, cache, credentials).
//! - `validate/dns.rs`: `[dns]` (TUN mode only; the listen address, the TTL, the zone).
//! - `validate/conntrack.rs`: `[conntrack]` (the connection tracker's size and per-peer quotas).
//! - `userspace`: `[userspace]` (forwards, published services, SOCKS proxy of a member in
//!   `tun.mode = "userspace"`), raw and validated; its checks are `validate/userspace.rs`.

mod expose;
mod load;
mod schema;
mod spans;
mod types;
mod userspace;
mod validate;

pub use expose::{
    BlockList, ExposeEntry, ExposeProtocol, ExposeSettings, ProxyProtocol, Targets,
    DEFAULT_UDP_IDLE_SECS, MAX_UDP_IDLE_SECS,
};
pub use load::{compile_policy_text, load, load_block_list, load_policy};
pub use schema::{
    CipherName, ConntrackSection, DirectorySection, DnsSection, FileConfig, LogFormat, LogLevel,
    LogSection, MetricsSection, NodeSection, PeerSection, StatusSection, TunMode, TunSection,
    DEFAULT_BATCH_HOLD_US, DEFAULT_BUSY_POLL_US, DEFAULT_LEASE_TTL_S, DEFAULT_LISTEN, DEFAULT_MTU,
    DEFAULT_TUN_NAME, DEFAULT_UNDERLAY_MTU,
};
pub use spans::parse_str;
pub use types::{
    Config, DirectorySettings, DnsSettings, Endpoint, IdentityPaths, NetworkConfig, NodeIdentity,
    PeerConfig, PolicySettings, Problem, TunSettings,
};
pub use userspace::{
    Forward, ForwardEntry, Protocol, Publish, PublishEntry, UserspaceSection, UserspaceSettings,
};
pub use validate::{
    parse_endpoint, MAX_BATCH_HOLD_US, MAX_BUSY_POLL_US, MAX_CONNTRACK_FLOWS, MAX_DNS_TTL_S,
    MAX_KEEPALIVE_SECS, MAX_LEASE_TTL_S, MAX_MTU, MAX_NEW_FLOWS, MAX_SOCKET_PATH_LEN,
    MAX_TUN_NAME_LEN, MAX_UNDERLAY_MTU, MIN_CONNTRACK_FLOWS, MIN_LEASE_TTL_S, MIN_MTU,
    TUNNEL_OVERHEAD, TUNNEL_OVERHEAD_V4,
};
