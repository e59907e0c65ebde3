//! The I/O shell around the sans-IO core (feature `driver`, Linux): a tokio driver that moves
//! packets between an underlay UDP socket (with GSO/GRO) and an *inner side* — a kernel TUN device
//! ([`TunInner`]), an in-memory channel ([`ChannelInner`]), or anything implementing
//! [`InnerSide`], such as the userspace IP stack of `embedded` (feature `stack`).
//!
//! ```no_run
//! # async fn example(node_cfg: privnet_core::NodeConfig, peer: privnet_core::PeerConfig)
//! # -> Result<(), Box<dyn std::error::Error>> {
//! use privnet_core::io::{Driver, DriverConfig, Reload};
//! use std::time::{Duration, Instant};
//!
//! let mut cfg = DriverConfig::new("neta", "0.0.0.0:51820".parse()?);
//! cfg.addresses = vec!["10.77.0.2/16".parse()?];
//! let mut node = cfg.new_node(node_cfg)?; // MTU from the underlay, seed from the OS
//! node.add_peer(peer, Instant::now())?;
//! let driver = Driver::tun(node, cfg, None).await?; // needs CAP_NET_ADMIN
//! let handle = driver.handle();
//! let task = tokio::spawn(driver.run());
//! println!("{} peers", handle.snapshot().peers.len());
//! handle.reload(Reload { busy_poll: Some(Duration::ZERO), ..Reload::default() }).await?;
//! handle.shutdown().await?;
//! task.await??;
//! # Ok(()) }
//! ```
//!
//! The driver knows nothing of files, command lines or status sockets: it takes a typed
//! [`DriverConfig`] (validated once), a [`Node`](crate::Node) built by the caller, and optionally
//! the [`Identity`] that trust-store reloads and expiry reports need. It publishes a
//! [`NetworkSnapshot`] at most once a second through its [`DriverHandle`], which also carries typed
//! control messages ([`Reload`], shutdown).
//!
//! This module is the only part of the crate that touches the operating system: it reads clocks
//! and the OS random number generator, opens sockets and devices and, in [`sys`], calls `libc`
//! with `unsafe` (each block with a `// SAFETY:` comment).
//!
//! Layout: `driver.rs` the loop; `underlay.rs` the socket and the GSO send stage; `seal.rs` the
//! sink that seals inner packets and answers refused ones with ICMP; `inner.rs` the inner-side
//! trait, `tun_side.rs` and `channel.rs` its implementations; `busypoll.rs`, `turns.rs`, `hold.rs`,
//! `fair.rs` pure state machines of the loop's latency and fairness policies; `config.rs`, `error.rs`,
//! `handle.rs`, `snapshot.rs`, `counters.rs` what goes in and out; `embedded.rs` (+ `embedded/`,
//! feature `stack`) the userspace stack's inner side and the overlay sockets built on it; `expose.rs`
//! (+ `expose/`) the listeners of exposures to the outside (`crate::expose` decides).
// The I/O shell: the one place of privnet-core that reads clocks, draws OS randomness and opens sockets (clippy.toml's sans-IO lints are off here, and tests/sans_io.rs skips it).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod busypoll;
mod channel;
mod clock;
mod config;
mod counters;
#[cfg(feature = "directory")]
pub mod directory;
#[cfg(feature = "dns")]
pub mod dns;
mod driver;
#[cfg(feature = "stack")]
pub mod embedded;
mod error;
pub mod expose;
pub mod fair;
mod handle;
mod hold;
mod inner;
mod lanes;
mod report;
mod seal;
pub mod snapshot;
pub mod sys;
mod tun_side;
mod turns;
mod underlay;
mod workers;

pub use channel::{ChannelEnd, ChannelInner, ChannelSendError};
pub use config::{
    ConfigError, DefaultRoute, DriverConfig, Identity, TunOptions, DEFAULT_BATCH_HOLD,
    DEFAULT_BUSY_POLL, DEFAULT_FWMARK, DEFAULT_ROUTE_TABLE, DEFAULT_SOCKET_BUFFER, DEFAULT_TUN_MTU,
    DEFAULT_TUN_NAME, DEFAULT_UNDERLAY_MTU, MAX_BATCH_HOLD, MAX_BUSY_POLL, MAX_MTU,
    MAX_SOCKET_BUFFER, MAX_UNDERLAY_MTU, MAX_WORKERS, MIN_MTU, UNDERLAY_V4_OVERHEAD,
    UNDERLAY_V6_OVERHEAD,
};
pub use driver::{random_seed, Driver, BATCH};
pub use error::{ControlError, DriverError};
pub use handle::{DriverHandle, FlowExplanation, Psks, Reload};
pub use inner::{HoldWake, InnerSide, ReadStatus, Refused, Seal, READ_BUF_LEN};
pub use snapshot::{
    GatewayCandidateSnapshot, GatewayCountersSnapshot, GatewayRouteSnapshot, NetworkSnapshot,
    PeerSnapshot, PolicySnapshot, RuleHits, TierDrops,
};
pub use tun_side::TunInner;
