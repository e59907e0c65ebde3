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
//! give bit-identical outputs, which is what the simulator ([`testing`], feature `test-util`) and the
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

pub mod config;
pub mod credential;
pub mod crypto;
pub mod error;
pub mod icmp;
pub mod identity;
#[cfg(all(feature = "driver", target_os = "linux"))]
pub mod io;
pub mod node;
pub mod offload;
pub mod ratelimit;
pub mod replay;
pub mod router;
pub mod tai64n;
pub mod wire;

mod handshake;
mod peer;
mod session;

#[cfg(feature = "test-util")]
pub mod testing;

pub use config::{NodeConfig, PeerConfig};
pub use credential::{CredentialError, CredentialVerifier, PeerIdentity};
pub use error::{DropReason, Stats};
pub use node::{Decapsulated, Encapsulated, Event, Node, PeerId, Transmit};
