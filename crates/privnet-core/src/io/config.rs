//! What a driver is told at start: the typed, validated [`DriverConfig`] (with [`TunOptions`] for
//! the TUN inner side) and the optional [`Identity`] it needs for trust-store reloads and
//! certificate-expiry reports.
//!
//! Durations are real [`Duration`]s and every bound is checked once, by [`DriverConfig::validate`]
//! (called by the driver's constructors), so the loop never re-interprets configuration.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ipnetwork::IpNetwork;

use super::sys::ifname::MAX_NAME_LEN;
use crate::identity::{CertVerifier, MemberCertificate};
use crate::node::Node;

/// Most threads a driver's data-path crypto may use ([`DriverConfig::workers`]; the driver's own
/// included).
pub const MAX_WORKERS: usize = 64;
/// IPv4 + UDP header bytes the underlay adds to every datagram.
pub const UNDERLAY_V4_OVERHEAD: usize = 28;
/// IPv6 + UDP header bytes the underlay adds to every datagram.
pub const UNDERLAY_V6_OVERHEAD: usize = 48;
/// Smallest inner or underlay MTU (the IPv6 minimum link MTU, RFC 8200).
pub const MIN_MTU: u16 = 1280;
/// Largest inner (TUN) MTU.
pub const MAX_MTU: u16 = 9000;
/// Largest underlay MTU (jumbo frames).
pub const MAX_UNDERLAY_MTU: u16 = 9216;
/// Smallest path MTU the core is given, whatever the underlay says (the IPv4 minimum datagram
/// every host must accept).
const MIN_PATH_MTU: usize = 576;
/// Default underlay socket send and receive buffer.
pub const DEFAULT_SOCKET_BUFFER: usize = 8 << 20;
/// Largest underlay socket buffer accepted.
pub const MAX_SOCKET_BUFFER: usize = 1 << 30;
/// Default busy-poll window after a packet (see [`DriverConfig::busy_poll`]).
pub const DEFAULT_BUSY_POLL: Duration = Duration::from_micros(200);
/// Largest busy-poll window accepted.
pub const MAX_BUSY_POLL: Duration = Duration::from_millis(10);
/// Default batch hold (see [`DriverConfig::batch_hold`]).
pub const DEFAULT_BATCH_HOLD: Duration = Duration::from_micros(20);
/// Largest batch hold accepted.
pub const MAX_BATCH_HOLD: Duration = Duration::from_millis(1);
/// Default TUN device name.
pub const DEFAULT_TUN_NAME: &str = "privnet0";
/// Default TUN (inner) MTU.
pub const DEFAULT_TUN_MTU: u16 = 1420;
/// Default underlay MTU.
pub const DEFAULT_UNDERLAY_MTU: u16 = 1500;
/// Default firewall mark of the underlay socket when a default route is installed (`0x7077`,
/// "pw"; see [`DefaultRoute`]).
pub const DEFAULT_FWMARK: u32 = 0x7077;
/// Default routing table of the default route (see [`DefaultRoute`]).
pub const DEFAULT_ROUTE_TABLE: u32 = 7077;

/// How one driver runs one network membership: its underlay socket, the labels of its snapshots,
/// its overlay addresses, the latency knobs and (for [`super::Driver::tun`]) the TUN device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DriverConfig {
    /// Network name: a label for logs and snapshots.
    pub network: String,
    /// UDP address of the underlay socket (port 0: any free port).
    pub listen: SocketAddr,
    /// MTU of the underlay path; with [`Self::listen`]'s address family it gives the inner path
    /// MTU ([`Self::path_mtu`]).
    pub underlay_mtu: u16,
    /// Send and receive buffer asked for on the underlay socket (the kernel caps it unless the
    /// process has `CAP_NET_ADMIN`); 0 keeps the kernel's default.
    pub socket_buffer: usize,
    /// Busy polling: after handling packets, keep polling the socket and the inner side this long
    /// (yielding the CPU between polls) before sleeping, so that an answer arriving meanwhile is
    /// picked up without a wake-up. Bounded to a tenth of a core per second; zero turns it off.
    pub busy_poll: Duration,
    /// Batch hold: when a send batch is dense (4+ units read since the wake-up) and the inner side
    /// runs dry, wait up to this long (in `ppoll`, no CPU) for more before sending, at most 4
    /// times per batch; packets on the underlay socket end the wait at once. Zero turns it off;
    /// inner sides that cannot wait outside the runtime never hold.
    pub batch_hold: Duration,
    /// Our overlay addresses with the prefix length of the network they are in (the TUN gets them
    /// and their routes; ICMP errors use the first IPv4 and IPv6 ones as sources).
    pub addresses: Vec<IpNetwork>,
    /// Names of configured peers by Noise static public key, for logs and snapshots of peers
    /// whose credential carries no name.
    pub peer_names: HashMap<[u8; 32], String>,
    /// The TUN device ([`super::Driver::tun`] only; other inner sides ignore it).
    pub tun: TunOptions,
    /// Per-peer fairness at the receive stage (`fair.rs`): while this member cannot keep up with
    /// what arrives and two or more peers send, the heaviest senders' excess over their max-min
    /// fair share is dropped before decryption. On by default; off only to compare.
    pub fairness: bool,
    /// Threads for the data path's encryption and decryption (`workers.rs`): 1, the default, keeps
    /// everything on the driver's thread; `n` adds `n − 1` threads that take their share of
    /// each large batch of seals and opens. Order is kept (a batch goes on only when all of it is
    /// done), and the state machine stays on one thread. At most [`MAX_WORKERS`].
    pub workers: usize,
}

impl DriverConfig {
    /// A configuration with the defaults: no addresses, default MTUs, busy polling and batch hold.
    pub fn new(network: impl Into<String>, listen: SocketAddr) -> Self {
        Self {
            network: network.into(),
            listen,
            underlay_mtu: DEFAULT_UNDERLAY_MTU,
            socket_buffer: DEFAULT_SOCKET_BUFFER,
            busy_poll: DEFAULT_BUSY_POLL,
            batch_hold: DEFAULT_BATCH_HOLD,
            addresses: Vec::new(),
            peer_names: HashMap::new(),
            tun: TunOptions::default(),
            fairness: true,
            workers: 1,
        }
    }

    /// The largest inner packet that fits one underlay datagram: the underlay MTU less the IP and
    /// UDP headers of [`Self::listen`]'s family and the data message overhead, at least 576. Give
    /// it to the [`Node`] as [`NodeConfig::mtu`](crate::NodeConfig::mtu) ([`Self::new_node`] does), so that what the core
    /// refuses as too big and what the driver announces in ICMP agree.
    pub fn path_mtu(&self) -> usize {
        let overhead = if self.listen.is_ipv6() {
            UNDERLAY_V6_OVERHEAD
        } else {
            UNDERLAY_V4_OVERHEAD
        };
        usize::from(self.underlay_mtu)
            .saturating_sub(overhead + Node::OVERHEAD)
            .max(MIN_PATH_MTU)
    }

    /// Check every bound that does not depend on the inner side (the TUN options are checked by
    /// [`TunOptions::validate`]).
    ///
    /// # Errors
    /// The first value out of range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(MIN_MTU..=MAX_UNDERLAY_MTU).contains(&self.underlay_mtu) {
            return Err(ConfigError::UnderlayMtu(self.underlay_mtu));
        }
        if self.socket_buffer > MAX_SOCKET_BUFFER {
            return Err(ConfigError::SocketBuffer(self.socket_buffer));
        }
        if !(1..=MAX_WORKERS).contains(&self.workers) {
            return Err(ConfigError::Workers(self.workers));
        }
        validate_windows(self.busy_poll, self.batch_hold)
    }
}

/// Check the two latency windows (also done for a reload).
pub(crate) fn validate_windows(
    busy_poll: Duration,
    batch_hold: Duration,
) -> Result<(), ConfigError> {
    if busy_poll > MAX_BUSY_POLL {
        return Err(ConfigError::BusyPoll(busy_poll));
    }
    if batch_hold > MAX_BATCH_HOLD {
        return Err(ConfigError::BatchHold(batch_hold));
    }
    Ok(())
}

/// Wall-clock time since the Unix epoch (zero if the clock is before it).
pub(crate) fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
}

/// A [`DriverConfig`] or [`TunOptions`] value out of range.
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
    /// The crypto workers are not within 1..=[`MAX_WORKERS`].
    #[error("workers {0} is outside 1-{MAX_WORKERS}")]
    Workers(usize),
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
    /// The default route's mark is 0 or its table is one the kernel reserves.
    #[error(
        "default route: fwmark {fwmark:#x} must not be 0, and table {table} must not be \
         0, 253 (default), 254 (main) or 255 (local)"
    )]
    DefaultRoute {
        /// The mark asked for.
        fwmark: u32,
        /// The table asked for.
        table: u32,
    },
}

/// A default route into the TUN device (egress to the outside through an exit member; docs/CONFIG.md,
/// "Default route"), installed the way wg-quick does it: the route `0.0.0.0/0` (and/or `::/0`)
/// out of the device in routing table [`Self::table`], the rule `not fwmark MARK table TABLE`
/// (everything but the underlay socket, which carries `SO_MARK` [`Self::fwmark`], looks up that
/// table) and the rule `table main suppress_prefixlength 0` (the main table's specific routes
/// keep winning; only its default routes are skipped). The underlay traffic itself keeps the
/// main table and its default route, so the tunnel never runs through itself. The rules are
/// deleted when the device is dropped; the table's routes vanish with the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DefaultRoute {
    /// Install `0.0.0.0/0`.
    pub ipv4: bool,
    /// Install `::/0`.
    pub ipv6: bool,
    /// The underlay socket's firewall mark (non-zero).
    pub fwmark: u32,
    /// The routing table of the default route (not 0, 253, 254 or 255).
    pub table: u32,
}

impl DefaultRoute {
    /// Both families off, with the default mark and table.
    pub fn new() -> Self {
        Self {
            ipv4: false,
            ipv6: false,
            fwmark: DEFAULT_FWMARK,
            table: DEFAULT_ROUTE_TABLE,
        }
    }

    /// Whether a family is on.
    pub fn any(&self) -> bool {
        self.ipv4 || self.ipv6
    }

    /// Check the mark and the table.
    ///
    /// # Errors
    /// [`ConfigError::DefaultRoute`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.fwmark == 0 || matches!(self.table, 0 | 253..=255) {
            return Err(ConfigError::DefaultRoute {
                fwmark: self.fwmark,
                table: self.table,
            });
        }
        Ok(())
    }
}

impl Default for DefaultRoute {
    fn default() -> Self {
        Self::new()
    }
}

/// The TUN device of [`super::Driver::tun`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TunOptions {
    /// Interface name (at most 15 bytes, no NUL, `/` or white space); empty lets the kernel pick.
    pub name: String,
    /// Inner MTU of the device; at most [`DriverConfig::path_mtu`].
    pub mtu: u16,
    /// Ask for segmentation and checksum offloads (virtio-net headers with TSO/USO); the driver
    /// falls back to plain packets when the kernel refuses.
    pub offload: bool,
    /// Subnets routed into the device besides the networks of [`DriverConfig::addresses`] (e.g.
    /// gateway routes a CA allows), in the main table. A default route (`/0`) in here is skipped:
    /// it goes in [`Self::default_route`].
    pub routes: Vec<IpNetwork>,
    /// The default route into the device, with its mark and table (off by default).
    pub default_route: DefaultRoute,
}

impl Default for TunOptions {
    fn default() -> Self {
        Self {
            name: DEFAULT_TUN_NAME.to_owned(),
            mtu: DEFAULT_TUN_MTU,
            offload: true,
            routes: Vec::new(),
            default_route: DefaultRoute::new(),
        }
    }
}

impl TunOptions {
    /// Check the name and the MTU against `path_mtu` (see [`DriverConfig::path_mtu`]).
    ///
    /// # Errors
    /// The first value out of range.
    pub fn validate(&self, path_mtu: usize) -> Result<(), ConfigError> {
        if self.name.len() > MAX_NAME_LEN
            || self
                .name
                .bytes()
                .any(|b| b == 0 || b == b'/' || b.is_ascii_whitespace())
        {
            return Err(ConfigError::TunName(self.name.clone()));
        }
        if !(MIN_MTU..=MAX_MTU).contains(&self.mtu) || usize::from(self.mtu) > path_mtu {
            return Err(ConfigError::TunMtu {
                mtu: self.mtu,
                path_mtu,
            });
        }
        if self.default_route.any() {
            self.default_route.validate()?;
        }
        Ok(())
    }
}

/// The member's certificate identity, for a driver whose [`Node`] verifies peers with a
/// [`CertVerifier`]: reloads replace the verifier's trust store, and snapshots report when the
/// certificate and the CAs expire.
#[derive(Clone, Debug)]
pub struct Identity {
    /// The verifier the node was built with (the same `Arc`).
    pub verifier: Arc<CertVerifier>,
    /// Our own member certificate.
    pub certificate: MemberCertificate,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(listen: &str) -> DriverConfig {
        DriverConfig::new("n", listen.parse().unwrap_or_else(|e| panic!("{e}")))
    }

    #[test]
    fn the_default_route_refuses_a_zero_mark_and_reserved_tables() {
        let mut t = TunOptions::default();
        t.default_route.fwmark = 0;
        assert!(t.validate(1420).is_ok(), "checked only when installed");
        t.default_route.ipv4 = true;
        assert!(matches!(
            t.validate(1420),
            Err(ConfigError::DefaultRoute { .. })
        ));
        t.default_route.fwmark = DEFAULT_FWMARK;
        for table in [0, 253, 254, 255] {
            t.default_route.table = table;
            assert!(t.validate(1420).is_err(), "table {table}");
        }
        t.default_route.table = DEFAULT_ROUTE_TABLE;
        assert!(t.validate(1420).is_ok());
    }

    #[test]
    fn path_mtu_follows_the_underlay_family() {
        assert_eq!(cfg("0.0.0.0:1").path_mtu(), 1500 - 28 - Node::OVERHEAD);
        assert_eq!(cfg("[::]:1").path_mtu(), 1500 - 48 - Node::OVERHEAD);
        let mut c = cfg("0.0.0.0:1");
        c.underlay_mtu = 600;
        assert_eq!(c.path_mtu(), 576, "never below 576");
    }

    #[test]
    fn defaults_are_valid_and_bounds_are_checked() {
        let c = cfg("0.0.0.0:1");
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.tun.validate(c.path_mtu()), Ok(()));
        let mut bad = c.clone();
        bad.busy_poll = MAX_BUSY_POLL + Duration::from_micros(1);
        assert!(matches!(bad.validate(), Err(ConfigError::BusyPoll(_))));
        let mut bad = c.clone();
        bad.batch_hold = Duration::from_secs(1);
        assert!(matches!(bad.validate(), Err(ConfigError::BatchHold(_))));
        let mut bad = c.clone();
        bad.underlay_mtu = 1000;
        assert_eq!(bad.validate(), Err(ConfigError::UnderlayMtu(1000)));
        let mut bad = c.clone();
        bad.socket_buffer = MAX_SOCKET_BUFFER + 1;
        assert!(matches!(bad.validate(), Err(ConfigError::SocketBuffer(_))));
        let mut t = c.tun.clone();
        t.mtu = 1441;
        assert!(matches!(t.validate(1440), Err(ConfigError::TunMtu { .. })));
        assert_eq!(t.validate(1441), Ok(()));
        for name in ["0123456789abcdef", "a/b", "a b", "a\0b"] {
            t.name = name.into();
            assert!(
                matches!(t.validate(9000), Err(ConfigError::TunName(_))),
                "{name:?}"
            );
        }
        t.name = String::new();
        assert_eq!(t.validate(9000), Ok(()), "empty: the kernel picks");
    }
}
