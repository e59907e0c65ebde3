//! UDP over the overlay: [`UdpSocket`].
//!
//! A send waits while the socket's send buffer is full (backpressure, nothing dropped on the way
//! to the network). A datagram arriving at a full receive buffer is dropped, as a kernel socket
//! drops it, and counted (`stack_udp_rx_full` in the driver's counters).

use std::future::poll_fn;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use super::error::NetError;
use super::names::OverlayAddr;
use super::shared::Shared;
use crate::credential::PeerIdentity;
use crate::stack::udp_socket::{RecvError, SendError};
use crate::stack::Handle;

/// A UDP socket on one overlay port. Made by [`super::EmbeddedNode::udp_bind`]; dropping it
/// closes it.
///
/// One task may wait in `recv_from` and one in `send_to` at a time (a second waiter of the same
/// direction replaces the first one's wake-up).
///
/// ```no_run
/// # async fn f(node: &privnet_core::io::embedded::EmbeddedNode) -> Result<(), Box<dyn std::error::Error>> {
/// let socket = node.udp_bind(0)?;
/// socket.send_to(b"ping", "metrics:8125").await?;
/// let mut buf = [0u8; 1500];
/// let (n, from) = socket.recv_from(&mut buf).await?;
/// println!("{n} bytes from {from} ({:?})", node.peer_identity(from.ip()).map(|p| p.name.clone()));
/// # Ok(()) }
/// ```
pub struct UdpSocket {
    shared: Arc<Shared>,
    handle: Handle,
    local: SocketAddr,
}

impl std::fmt::Debug for UdpSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdpSocket")
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

impl UdpSocket {
    pub(crate) fn new(shared: Arc<Shared>, handle: Handle, local: SocketAddr) -> Self {
        Self {
            shared,
            handle,
            local,
        }
    }

    /// Our overlay address (the first one of the node) and port.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Send one datagram to `target` (an address or `"name:port"`), waiting while the send
    /// buffer is full. Cancel-safe: a datagram is either queued whole or not at all.
    ///
    /// # Errors
    /// [`NetError::TooBig`] for more than one packet of the tunnel MTU holds (no IP
    /// fragmentation), a resolution error, [`NetError::Stopped`].
    pub async fn send_to(&self, data: &[u8], target: impl OverlayAddr) -> Result<usize, NetError> {
        let (to, _) = self.shared.resolve(&target.target()?)?;
        poll_fn(|cx| self.poll_send_to(cx, data, to)).await
    }

    /// Poll to send one datagram to an address (see [`Self::send_to`]).
    ///
    /// # Errors
    /// As [`Self::send_to`].
    pub fn poll_send_to(
        &self,
        cx: &mut Context<'_>,
        data: &[u8],
        to: SocketAddr,
    ) -> Poll<Result<usize, NetError>> {
        if self.shared.is_stopped() {
            return Poll::Ready(Err(NetError::Stopped));
        }
        let mut st = self.shared.lock();
        let max = st.stack.udp_max_payload(to.ip());
        if data.len() > max {
            return Poll::Ready(Err(NetError::TooBig {
                len: data.len(),
                max,
            }));
        }
        let Some(s) = st.stack.udp(self.handle) else {
            return Poll::Ready(Err(NetError::Stopped));
        };
        match s.send_slice(data, to) {
            Ok(()) => {
                drop(st);
                self.shared.kick();
                Poll::Ready(Ok(data.len()))
            }
            Err(SendError::BufferFull) => {
                s.register_send_waker(cx.waker());
                Poll::Pending
            }
            Err(SendError::Unaddressable) => Poll::Ready(Err(NetError::Unreachable)),
        }
    }

    /// Receive one datagram: its length (cut to `buf`, the rest of a longer datagram is lost, as
    /// with `recv(2)`) and its sender. Cancel-safe.
    ///
    /// # Errors
    /// [`NetError::Stopped`].
    pub async fn recv_from(&self, buf: &mut [u8]) -> Result<(usize, SocketAddr), NetError> {
        poll_fn(|cx| self.poll_recv_from(cx, buf)).await
    }

    /// Poll to receive one datagram (see [`Self::recv_from`]).
    ///
    /// # Errors
    /// As [`Self::recv_from`].
    pub fn poll_recv_from(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<Result<(usize, SocketAddr), NetError>> {
        if self.shared.is_stopped() {
            return Poll::Ready(Err(NetError::Stopped));
        }
        let mut st = self.shared.lock();
        let Some(s) = st.stack.udp(self.handle) else {
            return Poll::Ready(Err(NetError::Stopped));
        };
        match s.recv() {
            Ok((data, meta)) => {
                let n = data.len().min(buf.len());
                buf[..n].copy_from_slice(&data[..n]);
                Poll::Ready(Ok((n, SocketAddr::from(meta.endpoint))))
            }
            Err(RecvError::Exhausted | RecvError::Truncated) => {
                s.register_recv_waker(cx.waker());
                Poll::Pending
            }
        }
    }

    /// The verified identity of the member owning overlay address `from` (e.g. a datagram's
    /// sender): the node's directory, as [`super::EmbeddedNode::peer_identity`].
    pub fn peer_identity(&self, from: SocketAddr) -> Option<Arc<PeerIdentity>> {
        self.shared.names().identity(from.ip())
    }
}

impl Drop for UdpSocket {
    fn drop(&mut self) {
        self.shared.lock().stack.udp_release(self.handle);
    }
}
