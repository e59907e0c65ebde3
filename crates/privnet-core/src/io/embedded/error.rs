//! Errors of the embedded node: starting it ([`StartError`]) and using its sockets
//! ([`NetError`], which converts into a `std::io::Error` of the matching kind). A leaf of
//! `embedded`.

use std::io;

use crate::error::NodeError;
use crate::io::error::DriverError;
use crate::stack::{StackConfigError, StackError};

/// Why an embedded node did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The driver did not start (configuration, socket, OS randomness).
    #[error(transparent)]
    Driver(#[from] DriverError),
    /// The core refused a peer.
    #[error("adding a peer: {0}")]
    Peer(#[from] NodeError),
    /// The stack's configuration is out of range (or the node has no overlay address).
    #[error("stack: {0}")]
    Stack(#[from] StackConfigError),
    /// A throwaway network's CA or certificates could not be made.
    #[error("setting up the local network: {0}")]
    Setup(String),
}

/// Why a socket operation of an embedded node failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// No member the node knows has this name.
    #[error("no member named {0:?} in this network")]
    UnknownName(String),
    /// Not `address:port`, `[v6]:port` or `name:port`.
    #[error("{0:?} is not an address or name with a port")]
    BadAddress(String),
    /// The peer answered the connection request with a reset (nothing listens on the port).
    #[error("connection refused")]
    Refused,
    /// The core has no route to the destination, or we have no address of its family.
    #[error("no route to the destination in the overlay")]
    Unreachable,
    /// No answer within the connect timeout.
    #[error("timed out")]
    TimedOut,
    /// The connection was reset.
    #[error("connection reset")]
    Reset,
    /// The server reached by name presented another verified name (the connection was aborted).
    #[error("asked for {expected:?}, the peer's certificate says {found:?}")]
    NameMismatch {
        /// The name asked for.
        expected: String,
        /// The verified name of the peer reached.
        found: String,
    },
    /// The connection came without a verified identity (it was aborted).
    #[error("no verified identity for the connection")]
    NoIdentity,
    /// The port is taken.
    #[error("port in use")]
    AddrInUse,
    /// A datagram larger than one packet of the tunnel MTU can carry.
    #[error("datagram of {len} bytes is over the maximum of {max}")]
    TooBig {
        /// Bytes given.
        len: usize,
        /// Largest payload.
        max: usize,
    },
    /// Another limit of the stack (ports, sockets).
    #[error(transparent)]
    Stack(StackError),
    /// The node's driver has stopped.
    #[error("the embedded node has stopped")]
    Stopped,
}

impl From<StackError> for NetError {
    fn from(e: StackError) -> Self {
        match e {
            StackError::Unreachable => Self::Unreachable,
            StackError::AddrInUse => Self::AddrInUse,
            StackError::NoIdentity => Self::NoIdentity,
            other => Self::Stack(other),
        }
    }
}

impl From<NetError> for io::Error {
    fn from(e: NetError) -> Self {
        let kind = match &e {
            NetError::UnknownName(_) => io::ErrorKind::NotFound,
            NetError::BadAddress(_) | NetError::TooBig { .. } => io::ErrorKind::InvalidInput,
            NetError::Refused => io::ErrorKind::ConnectionRefused,
            NetError::Unreachable => io::ErrorKind::HostUnreachable,
            NetError::TimedOut => io::ErrorKind::TimedOut,
            NetError::Reset => io::ErrorKind::ConnectionReset,
            NetError::NameMismatch { .. } | NetError::NoIdentity => io::ErrorKind::PermissionDenied,
            NetError::AddrInUse => io::ErrorKind::AddrInUse,
            NetError::Stack(_) => io::ErrorKind::Other,
            NetError::Stopped => io::ErrorKind::NotConnected,
        };
        io::Error::new(kind, e)
    }
}
