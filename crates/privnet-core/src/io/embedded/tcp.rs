//! TCP over the overlay: [`TcpStream`] (tokio `AsyncRead` + `AsyncWrite`) and [`TcpListener`].
//!
//! Reads and writes copy straight between the caller's buffer and the connection's smoltcp
//! buffers under the stack's lock. A write that finds the send buffer full returns `Pending`
//! and is woken when acknowledgements free room (backpressure end to end: a slow reader's
//! window closes, the writer's buffer fills, the writer waits; nothing is dropped). A read that
//! finds nothing is woken when data, a FIN or a reset arrives.

use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::error::NetError;
use super::shared::Shared;
use crate::credential::PeerIdentity;
use crate::stack::tcp_socket::State;
use crate::stack::{Handle, StackError};

/// A TCP connection over the overlay, with the verified identity of the member at the other
/// end. Made by [`super::EmbeddedNode::tcp_connect`] and [`TcpListener::accept`].
///
/// Dropping the stream closes it gracefully: data still queued is sent, then a FIN (as
/// `close(2)` does). Use [`tokio::io::AsyncWriteExt::shutdown`] to send the FIN and keep
/// reading.
///
/// ```no_run
/// # async fn f(node: &privnet_core::io::embedded::EmbeddedNode) -> Result<(), Box<dyn std::error::Error>> {
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
/// let mut stream = node.tcp_connect("db:5432").await?;
/// println!("connected to {} ({:?})", stream.peer().name, stream.peer().groups);
/// stream.write_all(b"hello").await?;
/// let mut answer = Vec::new();
/// stream.read_to_end(&mut answer).await?;
/// # Ok(()) }
/// ```
pub struct TcpStream {
    shared: Arc<Shared>,
    handle: Handle,
    peer: Arc<PeerIdentity>,
    local: SocketAddr,
    remote: SocketAddr,
    /// The peer's FIN was seen (a later CLOSED state is the end of a clean close, not a reset).
    fin: bool,
}

impl std::fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpStream")
            .field("local", &self.local)
            .field("remote", &self.remote)
            .field("peer", &self.peer.name)
            .finish_non_exhaustive()
    }
}

/// Whether the state means the peer's FIN came.
fn fin_received(s: State) -> bool {
    matches!(
        s,
        State::CloseWait | State::LastAck | State::Closing | State::TimeWait
    )
}

impl TcpStream {
    pub(crate) fn new(
        shared: Arc<Shared>,
        handle: Handle,
        peer: Arc<PeerIdentity>,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> Self {
        Self {
            shared,
            handle,
            peer,
            local,
            remote,
            fin: false,
        }
    }

    /// The verified identity of the member at the other end (from its certificate: name,
    /// addresses, groups, fingerprint).
    pub fn peer(&self) -> &Arc<PeerIdentity> {
        &self.peer
    }

    /// The other end's overlay address and port.
    pub fn peer_addr(&self) -> SocketAddr {
        self.remote
    }

    /// Our overlay address and port.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Turn Nagle's algorithm off (`true`: small writes leave at once) or on.
    ///
    /// # Errors
    /// [`NetError::Stopped`] if the node stopped.
    pub fn set_nodelay(&self, nodelay: bool) -> Result<(), NetError> {
        let mut st = self.shared.lock();
        let s = st.stack.tcp(self.handle).ok_or(NetError::Stopped)?;
        s.set_nagle_enabled(!nodelay);
        Ok(())
    }

    /// Whether Nagle's algorithm is off.
    pub fn nodelay(&self) -> bool {
        let mut st = self.shared.lock();
        st.stack
            .tcp(self.handle)
            .is_some_and(|s| !s.nagle_enabled())
    }

    /// Bytes written but not yet acknowledged by the peer, and bytes received but not yet read.
    pub fn queued(&self) -> (usize, usize) {
        let mut st = self.shared.lock();
        st.stack
            .tcp(self.handle)
            .map_or((0, 0), |s| (s.send_queue(), s.recv_queue()))
    }

    fn gone(&self) -> io::Error {
        let e = if self.shared.is_stopped() {
            NetError::Stopped
        } else {
            NetError::Reset
        };
        e.into()
    }
}

impl AsyncRead for TcpStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let mut st = this.shared.lock();
        let Some(s) = st.stack.tcp(this.handle) else {
            return Poll::Ready(Err(this.gone()));
        };
        if s.can_recv() {
            let cap = s.recv_capacity();
            let free_before = cap - s.recv_queue();
            let n = match s.recv_slice(buf.initialize_unfilled()) {
                Ok(n) => n,
                Err(_) => return Poll::Ready(Err(this.gone())),
            };
            buf.advance(n);
            drop(st);
            // A window that was less than half open has grown: the peer may be waiting for us
            // to say so.
            if free_before < cap / 2 {
                this.shared.kick();
            }
            return Poll::Ready(Ok(()));
        }
        let state = s.state();
        if fin_received(state) {
            this.fin = true;
        }
        if !s.may_recv() {
            return Poll::Ready(match state {
                State::Closed if !this.fin => Err(this.gone()),
                // EOF: the peer's FIN (or our own close after it).
                _ => Ok(()),
            });
        }
        s.register_recv_waker(cx.waker());
        Poll::Pending
    }
}

impl AsyncWrite for TcpStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let mut st = self.shared.lock();
        let Some(s) = st.stack.tcp(self.handle) else {
            return Poll::Ready(Err(self.gone()));
        };
        if !s.may_send() {
            return Poll::Ready(Err(match s.state() {
                State::Closed | State::TimeWait => self.gone(),
                _ => io::Error::new(io::ErrorKind::BrokenPipe, "the stream was shut down"),
            }));
        }
        match s.send_slice(data) {
            Ok(0) => {
                s.register_send_waker(cx.waker());
                Poll::Pending
            }
            Ok(n) => {
                drop(st);
                self.shared.kick();
                Poll::Ready(Ok(n))
            }
            Err(_) => Poll::Ready(Err(self.gone())),
        }
    }

    /// Data written is in the stack already (as for a kernel socket, flushing waits for nothing).
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// Send a FIN after the queued data (reading stays possible).
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut st = self.shared.lock();
        if let Some(s) = st.stack.tcp(self.handle) {
            s.close();
        }
        drop(st);
        self.shared.kick();
        Poll::Ready(Ok(()))
    }
}

impl Drop for TcpStream {
    fn drop(&mut self) {
        let now = self.shared.now();
        self.shared.lock().stack.tcp_release(self.handle, now);
        self.shared.kick();
    }
}

/// A connection being opened: released (aborted) if the caller gives up before it is
/// established.
pub(crate) struct Connecting {
    pub(crate) shared: Arc<Shared>,
    pub(crate) handle: Option<Handle>,
}

impl Connecting {
    /// Wait until the connection is established (`Ok`), refused or failed.
    pub(crate) async fn established(&mut self) -> Result<(), NetError> {
        let Some(h) = self.handle else {
            return Err(NetError::Stopped);
        };
        poll_fn(|cx| {
            let mut st = self.shared.lock();
            let error = st.stack.tcp_error(h);
            let Some(s) = st.stack.tcp(h) else {
                return Poll::Ready(Err(NetError::Stopped));
            };
            match s.state() {
                State::Established | State::CloseWait => Poll::Ready(Ok(())),
                State::SynSent | State::SynReceived => {
                    s.register_send_waker(cx.waker());
                    Poll::Pending
                }
                State::Closed if self.shared.is_stopped() => Poll::Ready(Err(NetError::Stopped)),
                State::Closed => Poll::Ready(Err(match error {
                    Some(StackError::Unreachable) => NetError::Unreachable,
                    Some(e) => e.into(),
                    None => NetError::Refused,
                })),
                _ => Poll::Ready(Err(NetError::Reset)),
            }
        })
        .await
    }

    /// Hand the socket over to a stream.
    pub(crate) fn finish(
        mut self,
        peer: Arc<PeerIdentity>,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> Option<TcpStream> {
        let h = self.handle.take()?;
        Some(TcpStream::new(self.shared.clone(), h, peer, local, remote))
    }

    /// Abort with `error` as the reason.
    pub(crate) fn abort(&mut self, error: StackError) {
        if let Some(h) = self.handle {
            self.shared.lock().stack.tcp_abort(h, error);
        }
    }
}

impl Drop for Connecting {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            let now = self.shared.now();
            let mut st = self.shared.lock();
            st.stack.tcp_abort(h, StackError::NoIdentity);
            st.stack.tcp_release(h, now);
            drop(st);
            self.shared.kick();
        }
    }
}

/// A TCP listener on one overlay port (all of the node's overlay addresses). Made by
/// [`super::EmbeddedNode::tcp_listen`]; dropping it stops listening.
///
/// Each accepted connection comes with the verified identity of the member that opened it —
/// the peer whose session carried its SYN, not whatever the packet's source address claims.
///
/// ```no_run
/// # async fn f(node: &privnet_core::io::embedded::EmbeddedNode) -> Result<(), Box<dyn std::error::Error>> {
/// let listener = node.tcp_listen(5432)?;
/// loop {
///     let (stream, peer) = listener.accept().await?;
///     if !peer.groups.iter().any(|g| g == "db-clients") {
///         continue; // dropped: closed at once
///     }
///     tokio::spawn(async move { let _ = stream; /* serve */ });
/// }
/// # }
/// ```
pub struct TcpListener {
    shared: Arc<Shared>,
    port: u16,
}

impl std::fmt::Debug for TcpListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpListener")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl TcpListener {
    pub(crate) fn new(shared: Arc<Shared>, port: u16) -> Self {
        Self { shared, port }
    }

    /// The port listened on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The next established connection and its caller's verified identity. Cancel-safe.
    ///
    /// # Errors
    /// [`NetError::Stopped`] once the node has stopped.
    pub async fn accept(&self) -> Result<(TcpStream, Arc<PeerIdentity>), NetError> {
        poll_fn(|cx| self.poll_accept(cx)).await
    }

    /// Poll for the next connection (see [`Self::accept`]).
    ///
    /// # Errors
    /// [`NetError::Stopped`] once the node has stopped.
    pub fn poll_accept(
        &self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(TcpStream, Arc<PeerIdentity>), NetError>> {
        if self.shared.is_stopped() {
            return Poll::Ready(Err(NetError::Stopped));
        }
        let mut st = self.shared.lock();
        match st.stack.poll_accept(self.port, cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => Poll::Ready(Err(NetError::Stopped)),
            Poll::Ready(Some(a)) => {
                let local = st
                    .stack
                    .tcp(a.handle)
                    .and_then(|s| s.local_endpoint())
                    .map_or_else(
                        || SocketAddr::new(a.remote.ip(), self.port),
                        SocketAddr::from,
                    );
                drop(st);
                let stream = TcpStream::new(
                    self.shared.clone(),
                    a.handle,
                    a.peer.clone(),
                    local,
                    a.remote,
                );
                Poll::Ready(Ok((stream, a.peer)))
            }
        }
    }
}

impl Drop for TcpListener {
    fn drop(&mut self) {
        self.shared.lock().stack.tcp_unlisten(self.port);
        self.shared.kick();
    }
}
