//! The userspace stack as the driver's inner side ([`StackInner`]).
//!
//! - **Out** (stack → peers): `readable` waits for a socket's kick or smoltcp's next timer;
//!   `try_read` takes the lock once, runs the stack's egress and takes up to 64 KiB of packets
//!   as one unit; `seal_read` seals them outside the lock, cutting segmentation-offload
//!   super-packets into MTU-sized segments (`offload::segment`, as for a TUN's TSO packets) and
//!   completing TCP checksums. The stack's queue is bounded: when the driver falls behind (the
//!   UDP socket is full), smoltcp keeps the data in its socket buffers and the writers wait.
//! - **In** (peers → stack): `deliver_from` copies each decrypted packet into a recycled buffer
//!   (and for a SYN looks up its sender's verified identity in the node, once per peer);
//!   `flush`, after each receive call on the underlay, takes the lock once and feeds the batch
//!   to smoltcp, which wakes the readers.
//!
//! No allocation per packet once the buffer pools are warm; smoltcp allocates only per socket
//! (its buffers) and the identity cache per peer.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::names::Directory;
use super::shared::Shared;
use crate::credential::PeerIdentity;
use crate::error::EncapsulateError;
use crate::io::inner::{InnerSide, ReadStatus, Seal};
use crate::node::{Node, PeerId};
use crate::offload::{self, GsoType};
use crate::stack::{self, Outbound, SUPER_PACKET};

/// Inner bytes taken from the stack per unit: the driver keeps 80 KiB of room in its send stage
/// per unit, and 66 KiB of inner packets seal into less than that.
const UNIT_BYTES: usize = 66 * 1024;
/// Inbound packets held before they are fed to the stack even without a flush.
const INBOUND_MAX: usize = 256;
/// Inbound buffers kept for reuse.
const POOL_MAX: usize = 256;
/// When the stack said "now" but its poll sent nothing, wait at least this long before asking
/// again (a guard against spinning on a socket smoltcp keeps wanting to poll). New input (packets
/// from the network, a socket's kick) ends the guard at once.
const IDLE_GUARD: Duration = Duration::from_millis(1);

/// The driver's inner side for an embedded node. Made by [`super::EmbeddedNode`].
pub struct StackInner {
    shared: Arc<Shared>,
    name: String,
    /// Packets of the unit being sealed.
    unit: Vec<Outbound>,
    /// Sealed packets whose buffers go back to the stack at the next lock.
    used: Vec<Outbound>,
    /// Copies of SYNs the core refused (rare), for the stack at the next lock.
    refused: Vec<Vec<u8>>,
    /// Decrypted packets since the last flush, with the sender of a SYN.
    inbound: Vec<(Vec<u8>, Option<Arc<PeerIdentity>>)>,
    pool: Vec<Vec<u8>>,
    /// Verified identities by peer, cleared when peers change.
    identities: HashMap<PeerId, Option<Arc<PeerIdentity>>>,
    /// Names of configured peers (for the directory).
    configured: HashMap<[u8; 32], String>,
    scratch: Vec<u8>,
    sleep: Pin<Box<tokio::time::Sleep>>,
    armed: Option<Instant>,
    /// The last `try_read` found nothing although `readable` said "now": until this time a "now"
    /// of the stack's is not believed. Set once per empty read (a fixed deadline, not one that
    /// every new `readable` future pushes back) and cleared by new input.
    idle_until: Option<Instant>,
    segments: u64,
    super_packets: u64,
}

impl std::fmt::Debug for StackInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StackInner")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl StackInner {
    pub(crate) fn new(
        shared: Arc<Shared>,
        name: String,
        configured: HashMap<[u8; 32], String>,
    ) -> Self {
        Self {
            shared,
            name,
            unit: Vec::new(),
            used: Vec::new(),
            refused: Vec::new(),
            inbound: Vec::with_capacity(INBOUND_MAX),
            pool: Vec::new(),
            identities: HashMap::new(),
            configured,
            scratch: vec![0u8; SUPER_PACKET],
            sleep: Box::pin(tokio::time::sleep(Duration::from_secs(86_400))),
            armed: None,
            idle_until: None,
            segments: 0,
            super_packets: 0,
        }
    }

    fn identity(&mut self, peer: PeerId, node: &Node) -> Option<Arc<PeerIdentity>> {
        self.identities
            .entry(peer)
            .or_insert_with(|| node.peer_identity(peer).map(|i| Arc::new(i.clone())))
            .clone()
    }

    fn queue(&mut self, packet: &[u8], sender: Option<Arc<PeerIdentity>>) {
        let mut buf = self.pool.pop().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(packet);
        self.inbound.push((buf, sender));
        if self.inbound.len() >= INBOUND_MAX {
            self.flush();
        }
    }

    /// A packet the core refused: a connect's SYN fails its connect at once.
    fn note_refused(&mut self, packet: &[u8]) {
        if stack::wants_sender(packet) && self.refused.len() < 64 {
            self.refused.push(packet.to_vec());
        }
    }
}

impl InnerSide for StackInner {
    const KIND: &'static str = "userspace stack";

    fn name(&self) -> &str {
        &self.name
    }

    async fn readable(&mut self) -> io::Result<()> {
        let now = self.shared.now();
        let deadline = {
            let mut st = self.shared.lock();
            st.stack.poll_timeout(now)
        };
        let deadline = match (deadline, self.idle_until) {
            (Some(d), Some(until)) if d <= now && until > now => Some(until),
            (Some(d), _) if d <= now => return Ok(()),
            (d, _) => d,
        };
        if deadline != self.armed {
            let at = deadline.map_or_else(
                || tokio::time::Instant::now() + Duration::from_secs(86_400),
                |d| tokio::time::Instant::now() + d.saturating_duration_since(now),
            );
            self.sleep.as_mut().reset(at);
            self.armed = deadline;
        }
        // Cancel-safe: a notification taken by a dropped `notified()` is passed on, and the
        // sleep is kept in `self`.
        tokio::select! {
            () = self.shared.driver.notified() => {}
            () = self.sleep.as_mut(), if deadline.is_some() => self.armed = None,
        }
        self.idle_until = None;
        Ok(())
    }

    fn try_read(&mut self, _buf: &mut [u8]) -> ReadStatus {
        let now = self.shared.now();
        let mut st = self.shared.lock();
        for p in self.used.drain(..) {
            st.stack.recycle(p);
        }
        for r in self.refused.drain(..) {
            st.stack.refused(&r);
        }
        st.stack.poll(now);
        let mut bytes = 0;
        while let Some(n) = st.stack.peek_outbound() {
            if bytes + n > UNIT_BYTES && !self.unit.is_empty() {
                break;
            }
            let Some(p) = st.stack.poll_outbound() else {
                break;
            };
            bytes += n;
            self.unit.push(p);
        }
        drop(st);
        if self.unit.is_empty() {
            self.idle_until = Some(now + IDLE_GUARD);
            ReadStatus::Empty
        } else {
            ReadStatus::Unit(0)
        }
    }

    fn seal_read<S: Seal>(&mut self, _buf: &mut [u8], sink: &mut S) {
        let mut unit = std::mem::take(&mut self.unit);
        let mut answered = false;
        for mut out in unit.drain(..) {
            let len = out.len;
            let Some(pkt) = out.buf.get_mut(..len) else {
                continue;
            };
            match out.segment {
                Some(mss) => {
                    let kind = if pkt.first().map(|b| b >> 4) == Some(6) {
                        GsoType::TcpV6
                    } else {
                        GsoType::TcpV4
                    };
                    // Data segments: a refused one is retransmitted by TCP (and counted by the
                    // core); only SYNs fail a connect early.
                    let r = offload::segment(
                        pkt,
                        kind,
                        usize::from(mss.get()),
                        &mut self.scratch,
                        |seg| {
                            let _ = sink.seal(seg);
                        },
                    );
                    match r {
                        Ok(n) => {
                            self.super_packets += 1;
                            self.segments += n as u64;
                        }
                        Err(_) => tracing::debug!("stack: a super-packet could not be segmented"),
                    }
                }
                None => {
                    // With segmentation offload smoltcp leaves every TCP checksum to us.
                    stack::fill_tcp_checksum(pkt);
                    if let Err(refused) = sink.seal(pkt) {
                        match refused.error() {
                            // The access policy's `reject`: its answer (a TCP RST, an ICMP
                            // administratively prohibited) goes back into the stack, as from
                            // the peer, so a connect fails at once with "refused".
                            EncapsulateError::PolicyRejected => {
                                if let Some(answer) = sink.answer(refused, pkt) {
                                    self.queue(answer, None);
                                    answered = true;
                                }
                            }
                            // `deny` is silence, as on a TUN: TCP retransmits, a connect
                            // times out.
                            EncapsulateError::PolicyDenied => {}
                            _ => self.note_refused(pkt),
                        }
                    }
                }
            }
            self.used.push(out);
        }
        self.unit = unit;
        if answered {
            // Answers are handed to the stack now, not with the next packet from the network
            // (there may be none for a while); the driver then polls the stack again.
            self.flush();
            self.shared.kick();
        }
    }

    fn deliver(&mut self, packet: &[u8]) {
        self.queue(packet, None);
    }

    fn deliver_from(&mut self, packet: &[u8], peer: PeerId, node: &Node) {
        let sender = if stack::wants_sender(packet) {
            self.identity(peer, node)
        } else {
            None
        };
        self.queue(packet, sender);
    }

    fn flush(&mut self) {
        if self.inbound.is_empty() {
            return;
        }
        let now = self.shared.now();
        let mut st = self.shared.lock();
        for (buf, sender) in self.inbound.drain(..) {
            st.stack.handle_inbound(&buf, sender.as_ref(), now);
            if self.pool.len() < POOL_MAX {
                self.pool.push(buf);
            }
        }
        drop(st);
        // New input ends the idle guard: what the stack answers (an ICMP echo reply queued at
        // once; the ACKs and window updates its next poll sends) goes out with this batch.
        // Without this, an idle stack's answers waited for the guard — and since the driver
        // polls the socket first, under a steady stream the guard's deadline was only reached
        // when the sender stopped: one ACK per receive window (a 12 ms RTT seen by the
        // sender, 0.65 Gbit/s from B's kernel into the stack).
        self.idle_until = None;
    }

    fn peers_changed(&mut self, node: &Node) {
        self.identities.clear();
        let d = Directory::from_node(node, &self.configured);
        *self.shared.names_mut() = d;
    }

    fn report(&self, out: &mut dyn FnMut(&'static str, u64)) {
        self.shared.lock().stack.counters().report(out);
        if self.super_packets > 0 {
            out("stack_tso_super_packets", self.super_packets);
            out("stack_tso_segments", self.segments);
        }
    }
}

impl Drop for StackInner {
    fn drop(&mut self) {
        // The driver is gone: every socket fails from now on, and every waiting task is woken.
        self.shared.set_stopped();
        self.shared.lock().stack.shutdown();
    }
}

#[cfg(test)]
mod tests {
    // The test drives the inner side with the driver's real clock (as the driver does).
    #![allow(clippy::disallowed_methods, clippy::unwrap_used)]

    use std::future::{poll_fn, Future};
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};
    use std::pin::pin;
    use std::task::Poll;

    use super::*;
    use crate::io::clock::Clock;
    use crate::stack::{Stack, StackConfig, StackSetup};

    const SERVER: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
    const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 3);

    fn stack(addr: Ipv4Addr, now: Instant) -> Stack {
        let setup = StackSetup {
            addresses: vec![ipnetwork::IpNetwork::new(IpAddr::V4(addr), 16).unwrap()],
            mtu: 1420,
            seed: u64::from(addr.octets()[3]),
        };
        Stack::new(StackConfig::default(), &setup, now).unwrap()
    }

    /// Whether `readable` is ready at once (one poll, no waiting).
    async fn ready_now(inner: &mut StackInner) -> bool {
        let mut fut = pin!(inner.readable());
        poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx).is_ready())).await
    }

    /// New packets from the network end the idle guard: what the stack answers in its next poll
    /// (here the SYN|ACK to a SYN; under a stream, its ACKs) goes out with the batch, not after
    /// the guard. Before, the guard kept an idle stack's answers back, and under a steady stream
    /// it was pushed back by every new `readable` — one ACK per receive window.
    #[tokio::test]
    async fn new_input_ends_the_idle_guard() {
        let clock = Clock::new();
        let now = clock.now();
        let mut client = stack(CLIENT, now);
        client
            .tcp_connect(SocketAddr::new(IpAddr::V4(SERVER), 9000))
            .unwrap();
        client.poll(now);
        let mut syn = client.poll_outbound().unwrap();
        let syn = &mut syn.buf[..syn.len];
        crate::stack::fill_tcp_checksum(syn);

        let mut server = stack(SERVER, now);
        server.tcp_listen(9000).unwrap();
        let shared = Arc::new(Shared::new(server, clock));
        let mut inner = StackInner::new(shared, "test".into(), HashMap::new());
        let mut buf = [0u8; 16];

        // Nothing to send: the guard starts.
        assert!(matches!(inner.try_read(&mut buf), ReadStatus::Empty));
        // A SYN arrives; the stack's answer is due now and is not held back by the guard.
        let sender = Arc::new(PeerIdentity {
            name: "client".into(),
            addresses: vec![],
            groups: vec![],
            not_after: u64::MAX,
            fingerprint: [3; 32],
        });
        inner.queue(syn, Some(sender));
        inner.flush();
        assert!(
            ready_now(&mut inner).await,
            "the SYN|ACK waited for the idle guard"
        );
        assert!(matches!(inner.try_read(&mut buf), ReadStatus::Unit(_)));
        // (As if sealed: the packets go back to the stack at the next lock.)
        let unit = std::mem::take(&mut inner.unit);
        inner.used.extend(unit);

        // Without new input, a stack that says "now" but sends nothing is asked again only
        // after the guard (no spinning).
        assert!(matches!(inner.try_read(&mut buf), ReadStatus::Empty));
        let due = inner.shared.lock().stack.poll_timeout(inner.shared.now());
        if due.is_some_and(|d| d <= inner.shared.now()) {
            assert!(
                !ready_now(&mut inner).await,
                "an idle stack was polled again at once"
            );
        }
    }
}
