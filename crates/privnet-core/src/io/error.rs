//! Errors of the I/O shell: a driver that cannot start ([`DriverError`]), a handle whose driver is
//! gone or whose reload was refused ([`ControlError`]). A configuration out of range is a
//! [`ConfigError`] (in `config.rs`, next to the bounds it names).

use std::net::SocketAddr;

use ipnetwork::IpNetwork;

use super::config::ConfigError;
use crate::error::NodeError;
use crate::identity::TrustStoreError;

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
    /// The crypto workers' threads could not be started.
    #[error("starting the crypto workers: {0}")]
    Workers(String),
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
    /// The default route (its table route or its rules) could not be installed.
    #[error("installing the default route via {device}")]
    DefaultRoute {
        /// The device.
        device: String,
        /// What the kernel said.
        #[source]
        source: std::io::Error,
    },
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
    /// The node refused a peer of the reload (the rest of the reload was applied).
    #[error("peer {name:?} refused: {reason}")]
    PeerRefused {
        /// The peer's name.
        name: String,
        /// Why the node refused it.
        reason: String,
    },
}
