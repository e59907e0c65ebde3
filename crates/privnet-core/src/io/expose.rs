//! Exposures: listeners on a public address whose TCP connections and UDP flows are admitted by
//! [`crate::expose::Admission`] and forwarded to a target in the overlay (one member's address and
//! port, or one of a group chosen by [`crate::expose::choose`]), optionally behind a PROXY v2
//! header.
//!
//! The target is dialled with a [`Dialer`]: kernel sockets (TUN mode: the kernel routes the overlay
//! address into the TUN device) or the embedded stack of a userspace member
//! ([`EmbeddedNode`](crate::io::embedded::EmbeddedNode), feature `stack`). A group member's health
//! is read from the driver's latest [`NetworkSnapshot`](crate::io::NetworkSnapshot): a target is
//! healthy when a peer whose addresses hold the target's address has an established session.
//!
//! Refused connections are closed at once (TCP) and refused datagrams dropped (UDP), counted per
//! reason, and logged at most once per reason and 10 s with the number held back.
//!
//! Layout: `state.rs` the specification, the shared state and the snapshot; `tcp.rs` the accept
//! loop and the relay; `udp.rs` the flow table; `start.rs` [`Exposure`], which starts them.

mod start;
mod state;
mod tcp;
mod udp;

pub use start::{Exposure, ExposureView};
pub use state::{
    Dialer, ExposeSpec, ExposureSnapshot, TargetSnapshot, DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_UDP_IDLE, MAX_UDP_FLOWS,
};
