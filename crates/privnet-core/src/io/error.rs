//! Errors of the I/O shell: a configuration out of range ([`ConfigError`]), a driver that cannot
//! start ([`DriverError`]), a handle whose driver is gone or whose reload was refused
//! ([`ControlError`]).

use std::net::SocketAddr;
use std::time::Duration;

use ipnetwork::IpNetwork;

use super::config::{
    MAX_BATCH_HOLD, MAX_BUSY_POLL, MAX_MTU, MAX_SOCKET_BUFFER, MAX_UNDERLAY_MTU, MIN_MTU,
};
use crate::identity::TrustStoreError;
use crate::node::NodeError;

/// A [`super::DriverConfig`] or [`super::TunOptions`] value out of range.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The underlay MTU is outside [`MIN_MTU`]..=[`MAX_UNDERLAY_MTU`].
    #[error("underlay MTU {0} is outside {MIN_MTU}-{MAX_UNDERLAY_MTU}")]
    UnderlayMtu(u16),
    /// The socket buffer is over [`MAX_SOCKET_BUFFER`].
    #[error("underlay socket buffer of {0} bytes is over the maximum of {MAX_SOCKET_BUFFER}")]
    SocketBuffer(usize),
    /// The busy-poll window is over [`MAX_BUSY_POLL`].
    #[error("busy-poll window {0:?} is over the maximum of {MAX_BUSY_POLL:?}")]
    BusyPoll(Duration),
    /// The batch hold is over [`MAX_BATCH_HOLD`].
    #[error("batch hold {0:?} is over the maximum of {MAX_BATCH_HOLD:?}")]
    BatchHold(Duration),
    /// The TUN name is too long or has a NUL, `/` or white space.
    #[error("invalid TUN device name {0:?} (at most 15 bytes, no NUL, '/' or space)")]
    TunName(String),
    /// The TUN MTU is outside [`MIN_MTU`]..=[`MAX_MTU`] or above the path MTU.
    #[error("TUN MTU {mtu} is outside {MIN_MTU}-{MAX_MTU} or above the path MTU {path_mtu}")]
    TunMtu {
        /// The MTU asked for.
        mtu: u16,
        /// The largest inner packet the underlay carries.
        path_mtu: usize,
    },
}

/// Why a driver could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DriverError {
    /// The configuration is out of range.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The operating system's random number generator failed.
    #[error("the OS random number generator failed")]
    Random,
    /// The core refused its configuration.
    #[error("node: {0}")]
    Node(#[from] NodeError),
    /// The underlay socket could not be bound.
    #[error("binding the underlay socket {addr}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The bound underlay socket could not be set up (non-blocking mode, runtime registration).
    #[error("setting up the underlay socket {addr}")]
    Socket {
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The TUN device could not be created.
    #[error("creating TUN device {name:?}")]
    Tun {
        /// The name asked for.
        name: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// No rtnetlink socket.
    #[error("opening rtnetlink")]
    Netlink(#[source] std::io::Error),
    /// An overlay address could not be put on the device.
    #[error("adding {address} to {device}")]
    Address {
        /// The address and prefix length.
        address: IpNetwork,
        /// The device.
        device: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The device could not be brought up.
    #[error("bringing {device} up")]
    LinkUp {
        /// The device.
        device: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Why a [`super::DriverHandle`] request failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// The driver has stopped (it returned, failed or was dropped).
    #[error("the driver has stopped")]
    Stopped,
    /// The new latency windows are out of range; nothing was changed.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The driver has no [`super::Identity`], so there is no trust store to replace.
    #[error("the driver has no certificate identity; no trust store to replace")]
    NoIdentity,
    /// The verifier refused the new trust store; the old one stays (the windows, if any, were
    /// applied).
    #[error("reload refused, keeping the old trust store: {0}")]
    TrustStore(#[from] TrustStoreError),
}
