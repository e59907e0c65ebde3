//! Overlay sockets for Rust services (features `driver` + `stack`): an [`EmbeddedNode`] is a
//! member of a private network inside the process, with its own userspace TCP/IP stack
//! (smoltcp) as the driver's inner side — no TUN device, no root, no capabilities.
//!
//! ```text
//!  TcpStream / TcpListener / UdpSocket  (tokio AsyncRead + AsyncWrite, send_to / recv_from)
//!        │ lock per call, copy straight into smoltcp's buffers, wakers from smoltcp
//!        ▼
//!  Shared { Mutex<Stack>, Notify, Clock, Directory }
//!        ▲ lock per batch (not per packet)
//!        │
//!  StackInner: InnerSide ── Driver<StackInner> ── Node (handshakes, sessions, anti-spoofing,
//!   readable: kick | smoltcp timer               destination check, rate limits)
//!   try_read/seal_read: egress ≤ 64 KiB per unit, TSO super-packets cut into segments
//!   deliver_from/flush: decrypted packets in, SYN senders' identities from the node
//! ```
//!
//! Time comes from the driver's clock (the core's `Instant`), converted for smoltcp through a
//! fixed epoch; the stack itself is sans-IO (`crate::stack`). Backpressure holds end to end: a
//! writer waits while its connection's send buffer is full; the stack's outbound queue is bounded
//! and never drops (smoltcp then keeps the data); a reader that does not read closes its window.
//!
//! Start with [`EmbeddedNode::builder`] (or [`LocalNetwork`] for a throwaway network on loopback:
//! examples, tests, demos).

mod error;
mod inner;
mod local;
mod names;
mod node;
mod shared;
mod tcp;
mod udp;

pub use error::{NetError, StartError};
pub use inner::StackInner;
pub use local::{LocalNetwork, LocalNetworkBuilder};
pub use names::{OverlayAddr, Target};
pub use node::{EmbeddedBuilder, EmbeddedNode, KnownMember, DEFAULT_CONNECT_TIMEOUT};
pub use tcp::{TcpListener, TcpStream};
pub use udp::UdpSocket;

pub use crate::credential::PeerIdentity;
pub use crate::stack::{
    Congestion, StackConfig, StackConfigError, StackCounters, DEFAULT_ACK_DELAY, DEFAULT_BACKLOG,
    DEFAULT_MAX_SOCKETS, DEFAULT_TCP_RX_BUFFER, DEFAULT_TCP_TX_BUFFER, DEFAULT_UDP_BUFFER,
    MAX_TCP_BUFFER, MIN_TCP_BUFFER,
};
