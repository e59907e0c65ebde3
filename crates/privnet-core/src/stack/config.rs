//! How the embedded stack is tuned ([`StackConfig`]) and what it is told about its interface
//! ([`StackSetup`]). A leaf: the stack, its device and its listeners read it.

use std::time::Duration;

use ipnetwork::IpNetwork;

/// Default TCP receive buffer per connection. With window scaling (shift 4 for 1 MiB) the window
/// covers the bandwidth-delay product of a 1 Gbit/s path with an 8 ms RTT; only the pages that
/// data has passed through are resident.
pub const DEFAULT_TCP_RX_BUFFER: usize = 1 << 20;
/// Default TCP send buffer per connection.
pub const DEFAULT_TCP_TX_BUFFER: usize = 1 << 20;
/// Largest TCP buffer accepted (smoltcp refuses receive buffers over 1 GiB; far less is useful).
pub const MAX_TCP_BUFFER: usize = 64 << 20;
/// Smallest TCP buffer accepted (a few segments).
pub const MIN_TCP_BUFFER: usize = 4096;
/// Default UDP buffer per socket and direction (payload bytes).
pub const DEFAULT_UDP_BUFFER: usize = 256 << 10;
/// Default number of connections a listener holds between the handshake and `accept`.
pub const DEFAULT_BACKLOG: usize = 128;
/// Default limit on open sockets (connections, listeners' spare sockets, UDP sockets).
pub const DEFAULT_MAX_SOCKETS: usize = 4096;
/// Default delayed-ACK timeout (smoltcp's default; an ACK still goes out at once for every full
/// segment of new data).
pub const DEFAULT_ACK_DELAY: Duration = Duration::from_millis(10);

/// TCP congestion control (smoltcp 0.14 gates sending on the congestion window).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Congestion {
    /// No congestion window: only the peer's receive window limits sending. Fastest where the
    /// path does not lose packets to congestion (loopback, a LAN), hostile to a shared bottleneck.
    None,
    /// Reno (RFC 5681): halves the window on loss, grows it by one segment per RTT.
    Reno,
    /// CUBIC (RFC 9438), the default of Linux: recovers the window faster after a loss on paths
    /// with a large bandwidth-delay product.
    #[default]
    Cubic,
}

/// Tuning of the embedded TCP/IP stack. `Default` gives the values documented on each field.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StackConfig {
    /// TCP receive buffer per connection, in bytes (its size sets the window scale); default
    /// [`DEFAULT_TCP_RX_BUFFER`], [`MIN_TCP_BUFFER`]..=[`MAX_TCP_BUFFER`].
    pub tcp_rx_buffer: usize,
    /// TCP send buffer per connection, in bytes: what a writer may queue before it waits
    /// (backpressure); default [`DEFAULT_TCP_TX_BUFFER`], same bounds.
    pub tcp_tx_buffer: usize,
    /// UDP buffer per socket and direction, in payload bytes; default [`DEFAULT_UDP_BUFFER`]. A
    /// sender waits while its buffer is full; a datagram arriving at a full receive buffer is
    /// dropped and counted (`stack_udp_rx_full`), as a kernel socket drops it.
    pub udp_buffer: usize,
    /// Congestion control of new connections; default [`Congestion::Cubic`].
    pub congestion: Congestion,
    /// Turn Nagle's algorithm off on new connections (`TCP_NODELAY`), so that small writes leave
    /// at once (request/response latency); default `true`, per stream with
    /// `TcpStream::set_nodelay`.
    pub nodelay: bool,
    /// Delayed-ACK timeout; `None` acknowledges every segment at once. Default
    /// [`DEFAULT_ACK_DELAY`].
    pub ack_delay: Option<Duration>,
    /// TCP keep-alive interval of new connections; default `None` (off).
    pub keep_alive: Option<Duration>,
    /// Abort a connection whose sent data goes unacknowledged this long; default `None` (smoltcp
    /// retransmits with a back-off up to one minute, for ever).
    pub tcp_timeout: Option<Duration>,
    /// Connections a listener holds between the handshake and `accept` (more SYNs are dropped, so
    /// the client retries); default [`DEFAULT_BACKLOG`].
    pub backlog: usize,
    /// Open sockets at most; default [`DEFAULT_MAX_SOCKETS`].
    pub max_sockets: usize,
    /// smoltcp's `max_burst_size` (in MTUs): caps the receive window it advertises, for devices
    /// that drop what overflows a small queue. The embedded device never drops (it stops the
    /// stack instead), so the default is `None`.
    pub max_burst: Option<usize>,
    /// Segmentation offload: a connection emits up to 64 KiB per packet and the driver cuts it
    /// into MTU-sized segments (one pass through smoltcp per 64 KiB instead of per segment).
    /// Default `true`.
    pub segmentation_offload: bool,
}

impl Default for StackConfig {
    fn default() -> Self {
        Self {
            tcp_rx_buffer: DEFAULT_TCP_RX_BUFFER,
            tcp_tx_buffer: DEFAULT_TCP_TX_BUFFER,
            udp_buffer: DEFAULT_UDP_BUFFER,
            congestion: Congestion::default(),
            nodelay: true,
            ack_delay: Some(DEFAULT_ACK_DELAY),
            keep_alive: None,
            tcp_timeout: None,
            backlog: DEFAULT_BACKLOG,
            max_sockets: DEFAULT_MAX_SOCKETS,
            max_burst: None,
            segmentation_offload: true,
        }
    }
}

/// A [`StackConfig`] value out of range.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StackConfigError {
    /// A TCP buffer outside [`MIN_TCP_BUFFER`]..=[`MAX_TCP_BUFFER`].
    #[error("TCP buffer of {0} bytes is outside {MIN_TCP_BUFFER}-{MAX_TCP_BUFFER}")]
    TcpBuffer(usize),
    /// A UDP buffer smaller than one datagram of the MTU, or over [`MAX_TCP_BUFFER`].
    #[error("UDP buffer of {0} bytes is outside the MTU-{MAX_TCP_BUFFER}")]
    UdpBuffer(usize),
    /// A zero backlog, socket limit or burst size.
    #[error("{0} must be at least 1")]
    Zero(&'static str),
    /// No overlay address to give the interface.
    #[error("the stack needs at least one overlay address")]
    NoAddress,
}

impl StackConfig {
    /// Check every bound against the interface's MTU.
    ///
    /// # Errors
    /// The first value out of range.
    pub fn validate(&self, mtu: usize) -> Result<(), StackConfigError> {
        for b in [self.tcp_rx_buffer, self.tcp_tx_buffer] {
            if !(MIN_TCP_BUFFER..=MAX_TCP_BUFFER).contains(&b) {
                return Err(StackConfigError::TcpBuffer(b));
            }
        }
        if self.udp_buffer < mtu || self.udp_buffer > MAX_TCP_BUFFER {
            return Err(StackConfigError::UdpBuffer(self.udp_buffer));
        }
        if self.backlog == 0 {
            return Err(StackConfigError::Zero("backlog"));
        }
        if self.max_sockets == 0 {
            return Err(StackConfigError::Zero("max_sockets"));
        }
        if self.max_burst == Some(0) {
            return Err(StackConfigError::Zero("max_burst"));
        }
        Ok(())
    }
}

/// What the stack's interface is: our overlay addresses (their prefixes give the on-link
/// networks), the MTU of inner packets, and the seed of its randomness (initial sequence numbers,
/// ephemeral ports).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StackSetup {
    /// Our overlay addresses; the first IPv4 and the first IPv6 one are used.
    pub addresses: Vec<IpNetwork>,
    /// Largest inner packet (the node's MTU).
    pub mtu: usize,
    /// Seed of smoltcp's random numbers.
    pub seed: u64,
}
