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
/// again (a guard against spinning on a socket smoltcp keeps wanting to poll).
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
    /// The last `try_read` found nothing although `readable` said "now".
    idle: bool,
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
            idle: false,
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
        let deadline = match deadline {
            Some(d) if d <= now && !self.idle => return Ok(()),
            Some(d) if d <= now => Some(now + IDLE_GUARD),
            d => d,
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
        self.idle = false;
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
            self.idle = true;
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
        // What the stack answered at once (ACKs, an ICMP echo reply) is sent now: without this
        // an idle stack's next `readable` would wait out IDLE_GUARD first (a millisecond of
        // latency on every ping and every ACK of a receiving stream).
        if st.stack.has_outbound() {
            self.idle = false;
        }
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
