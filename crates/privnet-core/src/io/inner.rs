//! The seam between the driver and wherever inner IP packets come from and go to: the
//! [`InnerSide`] trait. The TUN device ([`super::TunInner`]), an in-memory channel
//! ([`super::ChannelInner`]) and the userspace IP stack (`StackInner`, feature `stack`) implement
//! it.
//!
//! The driver is generic over it (monomorphized: no dynamic dispatch per packet). Reading is split
//! into "read one unit" ([`InnerSide::try_read`], non-blocking) and "seal what was read"
//! ([`InnerSide::seal_read`]), so that the driver can flush its send stage, take its clock and run
//! the batch hold between reads exactly as it does for the TUN. A unit may hold many inner packets
//! (a TUN super-packet); the inner side hands each to the driver's [`Seal`] sink, which seals it
//! into the send stage or says why it was refused. Delivery ([`InnerSide::deliver`]) borrows the
//! decrypted packet straight from the driver's decrypt buffer: an implementation copies at most
//! once, into wherever the packet goes.

use std::future::Future;
use std::os::fd::BorrowedFd;
use std::time::Duration;

use crate::error::{DropReason, EncapsulateError};
use crate::node::{Node, PeerId};

/// Largest unit [`InnerSide::try_read`] is given room for: a 64 KiB super-packet behind a virtio-net
/// header. The driver lends a buffer of this size.
pub const READ_BUF_LEN: usize = 65_536 + super::sys::tun::VNET_HDR_LEN;

/// What one [`InnerSide::try_read`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadStatus {
    /// One unit was read (`len` bytes of the lent buffer are used, or 0 if the inner side keeps
    /// the unit itself); seal it with [`InnerSide::seal_read`].
    Unit(usize),
    /// Nothing to read now.
    Empty,
    /// Reading failed; the inner side counted and logged it. The batch ends.
    Failed,
}

/// How [`InnerSide::hold`] ended.
#[derive(Debug)]
pub enum HoldWake {
    /// The inner side may have packets: read with [`InnerSide::read_now`].
    Inner,
    /// The underlay socket became readable first: send the batch and serve the socket.
    Socket,
    /// The window ran out.
    Timeout,
    /// Waiting failed.
    Failed(std::io::Error),
    /// This inner side cannot wait outside the runtime: the batch is sent without a hold.
    Unsupported,
}

/// An inner packet the core refused to seal, with the reason; [`Seal::answer`] turns it into an
/// ICMP error where that helps the sender.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refused(pub(crate) EncapsulateError);

impl Refused {
    /// Why the core refused the packet.
    pub fn error(&self) -> EncapsulateError {
        self.0
    }

    /// The drop counter it was counted under.
    pub fn reason(&self) -> DropReason {
        self.0.reason()
    }
}

/// The driver's sink for inner packets read by an [`InnerSide`]: each call seals one packet into
/// the send stage (no I/O happens here).
pub trait Seal {
    /// Seal one inner IP packet for sending.
    ///
    /// # Errors
    /// [`Refused`] when the core drops it (no route, too big, ...); it is already counted.
    fn seal(&mut self, packet: &[u8]) -> Result<(), Refused>;

    /// The ICMP error answering `packet` (refused as `refused`), if one helps its sender (no
    /// route: unreachable; too big: fragmentation needed / packet too big). Deliver it back inside
    /// at once; it is counted as sent.
    fn answer(&mut self, refused: Refused, packet: &[u8]) -> Option<&[u8]>;
}

/// Where inner IP packets come from (to be sealed and sent to peers) and where decrypted packets
/// from peers go. See the module documentation for the contract.
pub trait InnerSide {
    /// What this inner side is, for logs ("TUN device").
    const KIND: &'static str = "inner side";

    /// A short name for logs and snapshots (the TUN device's name).
    fn name(&self) -> &str;

    /// Wait until a read may find something. May complete spuriously; must be cancel-safe (it is
    /// polled in a `select!`).
    ///
    /// # Errors
    /// A failure of the inner side itself (the device or channel is gone); the driver stops
    /// with it.
    fn readable(&mut self) -> impl Future<Output = std::io::Result<()>> + Send;

    /// Read one unit without waiting. `buf` ([`READ_BUF_LEN`] bytes) is lent by the driver (it is
    /// also its receive buffer for datagrams); an inner side that keeps its own units may ignore
    /// it.
    fn try_read(&mut self, buf: &mut [u8]) -> ReadStatus;

    /// Hand every inner packet of the unit just read to `sink`; `buf` is the lent buffer cut to
    /// the length [`ReadStatus::Unit`] gave. A packet refused by the sink is answered with
    /// [`Seal::answer`] where it gives an answer (for a super-packet: only its first refused
    /// segment). Malformed units are dropped and counted.
    fn seal_read<S: Seal>(&mut self, buf: &mut [u8], sink: &mut S);

    /// The batch hold (see `hold.rs`): wait up to `window`, outside the async runtime, until this
    /// side or `socket` (the underlay) is readable. The default cannot.
    fn hold(&mut self, window: Duration, socket: BorrowedFd<'_>) -> HoldWake {
        let _ = (window, socket);
        HoldWake::Unsupported
    }

    /// Read one unit after [`Self::hold`] said [`HoldWake::Inner`], bypassing any readiness cache
    /// that has not seen the wake-up yet. The default is [`Self::try_read`].
    fn read_now(&mut self, buf: &mut [u8]) -> ReadStatus {
        self.try_read(buf)
    }

    /// Deliver one decrypted inner packet (authenticated, replay-checked, source-checked). It may
    /// be held back to be merged with the next ones until [`Self::flush`]; it must not wait: when
    /// there is no room it is dropped and counted.
    fn deliver(&mut self, packet: &[u8]);

    /// Deliver one decrypted inner packet that `peer` of `node` sent (what the driver calls).
    /// The default forgets the sender ([`Self::deliver`]); the userspace stack asks `node` for
    /// the verified identity of whoever opens a connection.
    #[inline]
    fn deliver_from(&mut self, packet: &[u8], peer: PeerId, node: &Node) {
        let _ = (peer, node);
        self.deliver(packet);
    }

    /// The node's peers may have changed: a session came up (or was rekeyed, possibly with a
    /// renewed credential) or went down, or the trust store was reloaded. Called before the loop
    /// starts and after such events; the default does nothing.
    fn peers_changed(&mut self, node: &Node) {
        let _ = node;
    }

    /// Deliver whatever [`Self::deliver`] held back. Called after each receive call on the
    /// underlay, before the next one.
    fn flush(&mut self) {}

    /// Hand this side's counters (drops, merges) to `out`, non-zero only. Called once per snapshot.
    fn report(&self, out: &mut dyn FnMut(&'static str, u64)) {
        let _ = out;
    }
}
