//! An in-memory inner side: inner IP packets come from and go to bounded channels instead of a
//! TUN device. For benchmarks, tests and in-process IP stacks; needs no privileges.
//!
//! [`ChannelInner`] is the driver's end, [`ChannelEnd`] the application's. Both directions are
//! bounded (the capacity given to [`ChannelInner::new`]):
//! - towards the driver, [`ChannelEnd::send`] waits for room (backpressure) and
//!   [`ChannelEnd::try_send`] says when there is none;
//! - towards the application the driver never waits: when the application's queue is full a
//!   delivered packet is dropped and counted (`channel_deliver_full`), as a full TUN does
//!   (`channel_closed` once the application's end is gone).
//!
//! Packets travel as `Vec<u8>` buffers that are recycled in both directions (sealed packets'
//! buffers go back to the sender; [`ChannelEnd::recycle`] gives delivered ones back to the driver),
//! so a steady stream allocates nothing.

use std::io;

use tokio::sync::mpsc::{self, error::TryRecvError, error::TrySendError};

use super::counters::{Counters, DriverEvent};
use super::inner::{InnerSide, ReadStatus, Seal};

/// The driver's end of an in-memory inner side. Create with [`ChannelInner::new`] and give it to
/// [`super::Driver::new`].
#[derive(Debug)]
pub struct ChannelInner {
    name: String,
    /// Packets from the application, to seal.
    from_app: mpsc::Receiver<Vec<u8>>,
    /// A packet [`InnerSide::readable`] took off the queue, not yet read.
    pending: Option<Vec<u8>>,
    /// The unit [`InnerSide::try_read`] read, until it is sealed.
    current: Option<Vec<u8>>,
    /// Emptied buffers of sealed packets, back to the application.
    used_to_app: mpsc::Sender<Vec<u8>>,
    /// Delivered packets, to the application.
    to_app: mpsc::Sender<Vec<u8>>,
    /// Buffers the application gave back for delivery.
    free_from_app: mpsc::Receiver<Vec<u8>>,
    /// A buffer kept from a delivery that found the queue full.
    spare: Option<Vec<u8>>,
    counters: Counters,
}

/// The application's end of an in-memory inner side: send inner IP packets into the network,
/// receive the ones peers sent.
#[derive(Debug)]
pub struct ChannelEnd {
    to_driver: mpsc::Sender<Vec<u8>>,
    used_from_driver: mpsc::Receiver<Vec<u8>>,
    from_driver: mpsc::Receiver<Vec<u8>>,
    free_to_driver: mpsc::Sender<Vec<u8>>,
}

/// Why a [`ChannelEnd::try_send`] did not queue the packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChannelSendError {
    /// The queue towards the driver is full (try again after the driver read some).
    #[error("the channel to the driver is full")]
    Full,
    /// The driver is gone.
    #[error("the driver has stopped")]
    Closed,
}

impl ChannelInner {
    /// A pair of ends whose queues hold `capacity` packets each way (at least 1); `name` labels the
    /// inner side in logs and snapshots.
    pub fn new(name: impl Into<String>, capacity: usize) -> (Self, ChannelEnd) {
        let capacity = capacity.max(1);
        let (to_driver, from_app) = mpsc::channel(capacity);
        let (used_to_app, used_from_driver) = mpsc::channel(capacity);
        let (to_app, from_driver) = mpsc::channel(capacity);
        let (free_to_driver, free_from_app) = mpsc::channel(capacity);
        (
            Self {
                name: name.into(),
                from_app,
                pending: None,
                current: None,
                used_to_app,
                to_app,
                free_from_app,
                spare: None,
                counters: Counters::default(),
            },
            ChannelEnd {
                to_driver,
                used_from_driver,
                from_driver,
                free_to_driver,
            },
        )
    }

    /// Queue `packet` to the application, or drop and count it when the queue is full.
    fn push(&mut self, packet: &[u8]) {
        let mut buf = self
            .spare
            .take()
            .or_else(|| self.free_from_app.try_recv().ok())
            .unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(packet);
        match self.to_app.try_send(buf) {
            Ok(()) => {}
            Err(TrySendError::Full(buf)) => {
                self.counters.bump(DriverEvent::ChannelDeliverFull);
                self.spare = Some(buf);
            }
            // Nobody listens any more (the driver stops at its next look at the inner side).
            Err(TrySendError::Closed(buf)) => {
                self.counters.bump(DriverEvent::ChannelClosed);
                self.spare = Some(buf);
            }
        }
    }
}

impl InnerSide for ChannelInner {
    const KIND: &'static str = "inner channel";

    fn name(&self) -> &str {
        &self.name
    }

    async fn readable(&mut self) -> io::Result<()> {
        if self.pending.is_some() {
            return Ok(());
        }
        // Cancel-safe: `recv` loses nothing when dropped, and what it returns is stored in the
        // same poll.
        match self.from_app.recv().await {
            Some(p) => {
                self.pending = Some(p);
                Ok(())
            }
            None => Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the application's end of the inner channel was dropped",
            )),
        }
    }

    fn try_read(&mut self, _buf: &mut [u8]) -> ReadStatus {
        let next = match self.pending.take() {
            Some(p) => p,
            None => match self.from_app.try_recv() {
                Ok(p) => p,
                // A closed queue is reported by `readable`.
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return ReadStatus::Empty,
            },
        };
        self.current = Some(next);
        ReadStatus::Unit(0)
    }

    fn seal_read<S: Seal>(&mut self, _buf: &mut [u8], sink: &mut S) {
        let Some(pkt) = self.current.take() else {
            return;
        };
        if let Err(r) = sink.seal(&pkt) {
            if let Some(reply) = sink.answer(r, &pkt) {
                self.push(reply);
            }
        }
        // The buffer goes back to the sender for its next packet; if it has enough, it is freed.
        let _ = self.used_to_app.try_send(pkt);
    }

    fn deliver(&mut self, packet: &[u8]) {
        self.push(packet);
    }

    fn report(&self, out: &mut dyn FnMut(&'static str, u64)) {
        self.counters.report(out);
    }
}

impl ChannelEnd {
    /// A buffer holding a copy of `packet`, recycled if the driver gave one back.
    fn buffer(&mut self, packet: &[u8]) -> Vec<u8> {
        let mut buf = self.used_from_driver.try_recv().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(packet);
        buf
    }

    /// Send one inner IP packet into the network, waiting while the queue to the driver is full.
    ///
    /// # Errors
    /// [`ChannelSendError::Closed`] if the driver is gone.
    pub async fn send(&mut self, packet: &[u8]) -> Result<(), ChannelSendError> {
        let buf = self.buffer(packet);
        self.to_driver
            .send(buf)
            .await
            .map_err(|_| ChannelSendError::Closed)
    }

    /// Send one inner IP packet without waiting.
    ///
    /// # Errors
    /// [`ChannelSendError::Full`] when the queue to the driver is full (the packet was not
    /// queued), [`ChannelSendError::Closed`] if the driver is gone.
    pub fn try_send(&mut self, packet: &[u8]) -> Result<(), ChannelSendError> {
        let buf = self.buffer(packet);
        self.to_driver.try_send(buf).map_err(|e| match e {
            TrySendError::Full(_) => ChannelSendError::Full,
            TrySendError::Closed(_) => ChannelSendError::Closed,
        })
    }

    /// The next inner packet from a peer (decrypted and checked), waiting for one; `None` once the
    /// driver is gone and everything queued was received.
    pub async fn recv(&mut self) -> Option<Vec<u8>> {
        self.from_driver.recv().await
    }

    /// The next inner packet from a peer if one is queued.
    pub fn try_recv(&mut self) -> Option<Vec<u8>> {
        self.from_driver.try_recv().ok()
    }

    /// Give a received packet's buffer back to the driver for a later delivery (optional: saves an
    /// allocation per packet).
    pub fn recycle(&mut self, buf: Vec<u8>) {
        let _ = self.free_to_driver.try_send(buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::inner::Refused;

    /// Seals into a list; refuses packets starting with 0xff (no route) and answers them.
    #[derive(Default)]
    struct Sink {
        sealed: Vec<Vec<u8>>,
        answer: Vec<u8>,
    }

    impl Seal for Sink {
        fn seal(&mut self, packet: &[u8]) -> Result<(), Refused> {
            if packet.first() == Some(&0xff) {
                return Err(Refused(crate::EncapsulateError::NoRoute));
            }
            self.sealed.push(packet.to_vec());
            Ok(())
        }
        fn answer(&mut self, _: Refused, packet: &[u8]) -> Option<&[u8]> {
            self.answer = [b"icmp:".as_slice(), packet].concat();
            Some(&self.answer)
        }
    }

    #[tokio::test]
    async fn packets_flow_both_ways_with_recycled_buffers() {
        let (mut inner, mut app) = ChannelInner::new("mem", 4);
        app.send(b"one").await.unwrap_or_else(|e| panic!("{e}"));
        app.send(&[0xff, 1]).await.unwrap_or_else(|e| panic!("{e}"));
        inner.readable().await.unwrap_or_else(|e| panic!("{e}"));
        let mut sink = Sink::default();
        let mut buf = [0u8; 8];
        while let ReadStatus::Unit(n) = inner.try_read(&mut buf) {
            inner.seal_read(&mut buf[..n], &mut sink);
        }
        assert_eq!(sink.sealed, [b"one".to_vec()]);
        assert_eq!(
            app.try_recv().as_deref(),
            Some(&b"icmp:\xff\x01"[..]),
            "refusal answered"
        );
        inner.deliver(b"from a peer");
        let got = app.recv().await.unwrap_or_default();
        assert_eq!(got, b"from a peer");
        app.recycle(got);
        inner.deliver(b"again");
        assert_eq!(app.try_recv().as_deref(), Some(&b"again"[..]));
        // The sealed packets' buffers came back to the application.
        assert!(app.used_from_driver.try_recv().is_ok());
    }

    #[tokio::test]
    async fn a_full_application_queue_counts_drops_and_a_full_driver_queue_pushes_back() {
        let (mut inner, mut app) = ChannelInner::new("mem", 2);
        for _ in 0..5 {
            inner.deliver(b"x");
        }
        let mut seen = Vec::new();
        inner.report(&mut |k, v| seen.push((k, v)));
        assert_eq!(seen, [("channel_deliver_full", 3)]);
        assert_eq!(app.try_send(b"a"), Ok(()));
        assert_eq!(app.try_send(b"b"), Ok(()));
        assert_eq!(app.try_send(b"c"), Err(ChannelSendError::Full));
        drop(inner);
        assert_eq!(app.try_send(b"d"), Err(ChannelSendError::Closed));
        assert_eq!(app.recv().await.as_deref(), Some(&b"x"[..]));
    }

    #[tokio::test]
    async fn readable_fails_once_the_application_is_gone() {
        let (mut inner, app) = ChannelInner::new("mem", 2);
        drop(app);
        assert!(inner.readable().await.is_err());
        assert_eq!(inner.try_read(&mut []), ReadStatus::Empty);
    }
}
