//! # privnet-core
//!
//! The sans-IO core of privnet: everything that decides what happens to a packet, with no I/O inside.
//!
//! ```text
//!   inner IP packet (TUN / smoltcp)                     UDP datagram (underlay)
//!          │  Node::encapsulate(pkt, out, now)                 │  Node::decapsulate(from, dgram, out, now)
//!          ▼                                                   ▼
//!   router (dst → peer) → session.seal ──► out      wire parse → index → replay.check → open
//!                                                    → replay.commit → anti-spoof (src ∈ peer) ──► out
//!   handshakes, cookies, keepalives, queued packets:  Node::poll_transmit(buf)
//!   timers:  Node::poll_timeout() / Node::handle_timeout(now)
//!   events (peer up/down, ...): Node::poll_event()
//! ```
//!
//! Nothing in this crate reads a clock, opens a socket, spawns a thread or draws from the OS random
//! number generator: time comes in as `now: Instant` (always the last argument), wall time once as a
//! Unix timestamp anchor, randomness from a seed in [`config::NodeConfig`]. The same inputs therefore
//! give bit-identical outputs, which is what the simulator (`testing`, feature `test-util`) and the
//! fuzz targets rely on.
//!
//! ## Event-loop contract
//! After any call to `encapsulate`, `decapsulate` or `handle_timeout`, the driver drains
//! `poll_transmit` until it returns `None`, drains `poll_event`, and re-arms its timer from
//! `poll_timeout`.
//!
//! The wire format and the handshake are specified in `docs/PROTOCOL.md`.
#![deny(unsafe_code)]
#![warn(missing_docs)]

/// Declares a module that is private to the crate, except with the `test-util` feature, where it
/// is public (and hidden from the docs) so that the fuzz targets, the benchmarks and the protocol
/// tests can reach internals. Without the feature its `pub` items are unreachable by design.
macro_rules! internal_mod {
    ($(#[$attr:meta])* $name:ident) => {
        $(#[$attr])*
        #[cfg(feature = "test-util")]
        #[doc(hidden)]
        pub mod $name;
        $(#[$attr])*
        #[cfg(not(feature = "test-util"))]
        #[allow(unreachable_pub, dead_code, unused_imports)]
        mod $name;
    };
}

pub mod config;
pub mod credential;
pub mod crypto;
pub mod directory;
pub mod error;
pub mod expose;
pub mod identity;
#[cfg(all(feature = "driver", target_os = "linux"))]
pub mod io;
pub mod names;
pub mod node;
pub mod policy;

internal_mod!(checksum);
internal_mod!(icmp);
internal_mod!(offload);
internal_mod!(packet);
internal_mod!(replay);
internal_mod!(
    #[cfg(feature = "stack")]
    stack
);
internal_mod!(router);
internal_mod!(ratelimit);
internal_mod!(tai64n);
internal_mod!(wire);

mod admission;
mod classify;
mod cookie;
mod event;
mod handshake;
mod peer;
mod peers;
mod reject;
mod session;
mod timers;

#[cfg(feature = "test-util")]
pub mod testing;

/// The README's examples, compiled and run as doctests so that they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;

pub use config::{NodeConfig, PeerConfig};
pub use credential::{CredentialError, CredentialVerifier, PeerIdentity};
pub use error::{DecapsulateError, DropReason, EncapsulateError, NodeError, Stats};
pub use node::{Decapsulated, Encapsulated, Event, Node, Outbound, PeerId, Transmit};
