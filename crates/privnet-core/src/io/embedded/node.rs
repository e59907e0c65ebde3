//! [`EmbeddedNode`]: one membership of one network with its own userspace TCP/IP stack, and its
//! builder.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnetwork::IpNetwork;
use tokio::task::JoinHandle;

use super::error::{NetError, StartError};
use super::inner::StackInner;
use super::names::{Directory, OverlayAddr};
use super::shared::Shared;
use super::tcp::{Connecting, TcpListener, TcpStream};
use super::udp::UdpSocket;
use crate::config::{NodeConfig, PeerConfig};
use crate::credential::PeerIdentity;
use crate::io::clock::Clock;
use crate::io::config::{DriverConfig, Identity};
use crate::io::driver::{random_seed, Driver};
use crate::io::handle::DriverHandle;
use crate::io::snapshot::NetworkSnapshot;
use crate::node::Node;
use crate::stack::{Stack, StackConfig, StackError, StackSetup};

/// Default time a [`EmbeddedNode::tcp_connect`] waits for the connection (the handshake with a
/// peer not met yet included).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// A member the node knows, as [`EmbeddedNode::members`] lists them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KnownMember {
    /// Its name: from its certificate once a handshake verified it, else from the configuration.
    pub name: String,
    /// Its host addresses in the overlay.
    pub addresses: Vec<IpAddr>,
    /// Whether the name comes from a verified certificate.
    pub verified: bool,
}

/// One member of one private network inside the process: the core's node, the I/O driver on a
/// UDP socket, and a userspace TCP/IP stack as its inner side — no TUN device, no privileges.
/// Any number of them (of one network or several) can run in one process.
///
/// Build it from the same configuration as a sidecar (a [`NodeConfig`] and a [`DriverConfig`],
/// whose `addresses` are the member's overlay addresses), start it on a tokio runtime, then open
/// sockets: [`Self::tcp_connect`], [`Self::tcp_listen`], [`Self::udp_bind`]. Peers' names
/// resolve (`"db:5432"`), accepted connections carry the caller's verified identity, and
/// everything the core does for a TUN (handshakes, anti-spoofing, the destination check, rate
/// limits) applies unchanged: the stack only ever sees packets the core accepted.
///
/// Dropping the node stops its driver; its sockets then fail with [`NetError::Stopped`].
///
/// A runnable example on a throwaway network ([`super::LocalNetwork`] makes the CA, the
/// certificates and the configuration):
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use privnet_core::io::embedded::LocalNetwork;
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
///
/// let net = LocalNetwork::builder("docnet")
///     .member("db", &["servers"])
///     .member("app", &["clients"])
///     .start()
///     .await?;
/// let (db, app) = (net.node("db").unwrap(), net.node("app").unwrap());
///
/// let listener = db.tcp_listen(5432)?;
/// let server = tokio::spawn(async move {
///     let (mut stream, peer) = listener.accept().await?;
///     assert_eq!(peer.name, "app"); // from app's certificate
///     let mut buf = [0u8; 5];
///     stream.read_exact(&mut buf).await?;
///     stream.write_all(&buf).await?;
///     Ok::<_, std::io::Error>(())
/// });
/// let mut stream = app.tcp_connect("db:5432").await?;
/// assert_eq!(stream.peer().groups, ["servers"]);
/// stream.write_all(b"hello").await?;
/// let mut echo = [0u8; 5];
/// stream.read_exact(&mut echo).await?;
/// assert_eq!(&echo, b"hello");
/// server.await??;
/// # Ok(()) }
/// ```
pub struct EmbeddedNode {
    shared: Arc<Shared>,
    handle: DriverHandle,
    task: Option<JoinHandle<std::io::Result<()>>>,
    local: SocketAddr,
    addresses: Vec<IpNetwork>,
    network: String,
    connect_timeout: Duration,
}

impl std::fmt::Debug for EmbeddedNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedNode")
            .field("network", &self.network)
            .field("listen", &self.local)
            .field("addresses", &self.addresses)
            .finish_non_exhaustive()
    }
}

/// Builds an [`EmbeddedNode`]: [`EmbeddedNode::builder`].
#[derive(Debug)]
#[must_use]
pub struct EmbeddedBuilder {
    node: NodeConfig,
    driver: DriverConfig,
    peers: Vec<PeerConfig>,
    identity: Option<Identity>,
    stack: StackConfig,
    connect_timeout: Duration,
}

impl EmbeddedBuilder {
    /// Add a statically configured peer.
    pub fn peer(mut self, peer: PeerConfig) -> Self {
        self.peers.push(peer);
        self
    }

    /// The certificate identity (enables trust-store reloads and expiry reports, as for a
    /// sidecar).
    pub fn identity(mut self, identity: Identity) -> Self {
        self.identity = Some(identity);
        self
    }

    /// Tune the stack (buffers, congestion control, Nagle, backlog...).
    pub fn stack(mut self, stack: StackConfig) -> Self {
        self.stack = stack;
        self
    }

    /// How long `tcp_connect` waits (default [`DEFAULT_CONNECT_TIMEOUT`]).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Build the node ([`DriverConfig::new_node`]: MTU from the underlay, seed from the OS),
    /// add the peers, bind the underlay socket and start the driver as a tokio task.
    ///
    /// # Errors
    /// [`StartError`]: the driver, a peer or the stack configuration refused.
    pub async fn start(self) -> Result<EmbeddedNode, StartError> {
        let mut node = self.driver.new_node(self.node)?;
        for p in self.peers {
            node.add_peer(p, Instant::now())?;
        }
        let mut e = EmbeddedNode::from_node(node, self.driver, self.identity, self.stack).await?;
        e.connect_timeout = self.connect_timeout;
        Ok(e)
    }
}

impl EmbeddedNode {
    /// A builder from the member's configuration.
    pub fn builder(node: NodeConfig, driver: DriverConfig) -> EmbeddedBuilder {
        EmbeddedBuilder {
            node,
            driver,
            peers: Vec::new(),
            identity: None,
            stack: StackConfig::default(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }

    /// Start an embedded node around a [`Node`] the caller built with its peers (its MTU should
    /// be [`DriverConfig::path_mtu`], as [`DriverConfig::new_node`] makes it). Must be called
    /// on a tokio runtime with I/O and timers enabled.
    ///
    /// # Errors
    /// [`StartError::Stack`] for a stack configuration out of range or no overlay address in
    /// `config.addresses`; [`StartError::Driver`] if the socket or the OS randomness fails.
    pub async fn from_node(
        node: Node,
        config: DriverConfig,
        identity: Option<Identity>,
        stack: StackConfig,
    ) -> Result<Self, StartError> {
        let clock = Clock::new();
        let seed = random_seed()?;
        let setup = StackSetup {
            addresses: config.addresses.clone(),
            mtu: node.mtu(),
            seed: u64::from_le_bytes([
                seed[0], seed[1], seed[2], seed[3], seed[4], seed[5], seed[6], seed[7],
            ]),
        };
        let stack = Stack::new(stack, &setup, clock.now())?;
        let shared = Arc::new(Shared::new(stack, clock));
        // Names resolve from the first call on (the driver refreshes them as peers change).
        *shared.names_mut() = Directory::from_node(&node, &config.peer_names);
        let inner = StackInner::new(
            shared.clone(),
            format!("stack-{}", config.network),
            config.peer_names.clone(),
        );
        let network = config.network.clone();
        let addresses = config.addresses.clone();
        let driver = Driver::new(node, config, identity, inner).await?;
        let handle = driver.handle();
        let local = driver.local_addr();
        let task = tokio::spawn(driver.run());
        Ok(Self {
            shared,
            handle,
            task: Some(task),
            local,
            addresses,
            network,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        })
    }

    /// Open a TCP connection to `target` — `"10.77.0.3:5432"`, `"db:5432"` or a `SocketAddr` —
    /// and wait until it is established (the handshake with the peer included). Reached by
    /// name, the peer's verified name must be the one asked for.
    ///
    /// # Errors
    /// [`NetError::Refused`] (nothing listens), [`NetError::Unreachable`] (no peer owns the
    /// address), [`NetError::TimedOut`], [`NetError::NameMismatch`], [`NetError::NoIdentity`],
    /// [`NetError::UnknownName`], [`NetError::BadAddress`], [`NetError::Stopped`].
    pub async fn tcp_connect(&self, target: impl OverlayAddr) -> Result<TcpStream, NetError> {
        if self.shared.is_stopped() {
            return Err(NetError::Stopped);
        }
        let (remote, name) = self.shared.resolve(&target.target()?)?;
        let h = self.shared.lock().stack.tcp_connect(remote)?;
        self.shared.kick();
        let mut c = Connecting {
            shared: self.shared.clone(),
            handle: Some(h),
        };
        match tokio::time::timeout(self.connect_timeout, c.established()).await {
            Err(_) => return Err(NetError::TimedOut),
            Ok(Err(e)) => return Err(e),
            Ok(Ok(())) => {}
        }
        let (peer, local) = {
            let mut st = self.shared.lock();
            let peer = st.stack.tcp_peer(h);
            let local = st.stack.tcp(h).and_then(|s| s.local_endpoint());
            (peer, local)
        };
        let (Some(peer), Some(local)) = (peer, local) else {
            c.abort(StackError::NoIdentity);
            return Err(NetError::NoIdentity);
        };
        if let Some(name) = name {
            if !peer.name.eq_ignore_ascii_case(&name) {
                c.abort(StackError::NoIdentity);
                return Err(NetError::NameMismatch {
                    expected: name,
                    found: peer.name.clone(),
                });
            }
        }
        c.finish(peer, SocketAddr::from(local), remote)
            .ok_or(NetError::Stopped)
    }

    /// Listen for TCP connections on `port` of every overlay address of the node.
    ///
    /// # Errors
    /// [`NetError::AddrInUse`], [`NetError::Stack`] for port 0, [`NetError::Stopped`].
    pub fn tcp_listen(&self, port: u16) -> Result<TcpListener, NetError> {
        if self.shared.is_stopped() {
            return Err(NetError::Stopped);
        }
        self.shared.lock().stack.tcp_listen(port)?;
        Ok(TcpListener::new(self.shared.clone(), port))
    }

    /// A UDP socket on `port` (0: an ephemeral port).
    ///
    /// # Errors
    /// [`NetError::AddrInUse`], [`NetError::Stack`] (no free port, too many sockets),
    /// [`NetError::Stopped`].
    pub fn udp_bind(&self, port: u16) -> Result<UdpSocket, NetError> {
        if self.shared.is_stopped() {
            return Err(NetError::Stopped);
        }
        let (h, port, ip) = {
            let mut st = self.shared.lock();
            let (h, port) = st.stack.udp_bind(port)?;
            let (v4, v6) = st.stack.addresses();
            let ip = v4
                .map(IpAddr::V4)
                .or(v6.map(IpAddr::V6))
                .ok_or(NetError::Unreachable)?;
            (h, port, ip)
        };
        Ok(UdpSocket::new(
            self.shared.clone(),
            h,
            SocketAddr::new(ip, port),
        ))
    }

    /// Where `target` is: an address as is, a name through the members the node knows.
    ///
    /// # Errors
    /// [`NetError::BadAddress`], [`NetError::UnknownName`].
    pub fn resolve(&self, target: impl OverlayAddr) -> Result<SocketAddr, NetError> {
        self.shared.resolve(&target.target()?).map(|(a, _)| a)
    }

    /// The verified identity of the member owning overlay address `ip` (for UDP senders; a TCP
    /// stream knows its peer already).
    pub fn peer_identity(&self, ip: IpAddr) -> Option<Arc<PeerIdentity>> {
        self.shared.names().identity(ip)
    }

    /// The members the node knows, by name.
    pub fn members(&self) -> Vec<KnownMember> {
        self.shared
            .names()
            .names()
            .into_iter()
            .map(|(name, addresses, verified)| KnownMember {
                name,
                addresses,
                verified,
            })
            .collect()
    }

    /// The handle of the node's driver: snapshots, reloads, shutdown.
    pub fn handle(&self) -> &DriverHandle {
        &self.handle
    }

    /// The latest snapshot of the node (peers, handshakes, bytes, drops; once a second).
    pub fn snapshot(&self) -> Arc<NetworkSnapshot> {
        self.handle.snapshot()
    }

    /// The underlay UDP address the node listens on (other members' endpoint for it).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The node's overlay addresses.
    pub fn addresses(&self) -> &[IpNetwork] {
        &self.addresses
    }

    /// The network's name (a label).
    pub fn network(&self) -> &str {
        &self.network
    }

    /// Stop the driver and wait for it.
    ///
    /// # Errors
    /// The I/O error that had stopped the driver, if one did.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        let _ = self.handle.shutdown().await;
        match self.task.take() {
            Some(t) => t.await.unwrap_or(Ok(())),
            None => Ok(()),
        }
    }
}

impl Drop for EmbeddedNode {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}
