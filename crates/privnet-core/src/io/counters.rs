//! Counters of driver events: I/O errors, drops outside the core, ICMP errors generated, full
//! batches. A fixed array indexed by [`DriverEvent`], so that counting a drop on the packet path is
//! one add (no map lookup, no allocation); names are only attached when a snapshot is published.

/// Something the driver counts. The names are the `event` labels of
/// `privnet_driver_events_total` and the keys of a snapshot's `driver` map, so they never change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DriverEvent {
    /// A UDP batch ended at its size limit (see `turns.rs`).
    UdpBatchFull,
    /// A batch from the inner side ended at its size limit (named after the TUN, the first inner
    /// side, so that dashboards keep working).
    TunBatchFull,
    /// A receive on the underlay socket failed.
    UdpRecvError,
    /// A send on the underlay socket failed; the datagrams are dropped.
    UdpSendError,
    /// The batch hold's `ppoll` failed.
    BatchHoldPollError,
    /// ICMP host/address unreachable answers written inside.
    IcmpUnreachableSent,
    /// ICMP fragmentation-needed / packet-too-big answers written inside.
    IcmpTooBigSent,
    /// TCP RST / ICMP administratively-prohibited answers to packets a policy `reject`s, written
    /// inside.
    PolicyRejectSent,
    /// A TUN read failed.
    TunRecvError,
    /// A TUN read shorter than its virtio-net header.
    TunShortRead,
    /// A TUN packet whose checksum offsets point outside it.
    TunBadChecksumOffset,
    /// A TUN super-packet that could not be segmented.
    TunBadGsoPacket,
    /// A TUN packet with a GSO type we do not know.
    TunUnknownGsoType,
    /// A TUN write found the device's send buffer full; the packet is dropped.
    TunWriteFull,
    /// A TUN write failed; the packet is dropped.
    TunWriteError,
    /// The in-memory inner side's delivery queue was full; the packet is dropped.
    ChannelDeliverFull,
    /// The application's end of the in-memory inner side is gone; the packet is dropped.
    ChannelClosed,
    /// A per-peer receive socket was opened (`lanes.rs`).
    PeerSocketOpened,
    /// A per-peer receive socket could not be opened; that peer's datagrams share the main
    /// socket.
    PeerSocketOpenFailed,
    /// A seal left to the crypto workers failed (never expected: the node reserved the room);
    /// the datagram was not sent.
    SealFailed,
    /// A batch of seals or opens was split between the crypto workers.
    CryptoSplit,
    /// A part of a split batch was run by a helper thread (the others were taken back by the
    /// driver's thread: the helpers were busy or asleep).
    CryptoHelped,
}

impl DriverEvent {
    /// Every event, in the order of the counter array.
    const ALL: [Self; 22] = [
        Self::UdpBatchFull,
        Self::TunBatchFull,
        Self::UdpRecvError,
        Self::UdpSendError,
        Self::BatchHoldPollError,
        Self::IcmpUnreachableSent,
        Self::IcmpTooBigSent,
        Self::PolicyRejectSent,
        Self::TunRecvError,
        Self::TunShortRead,
        Self::TunBadChecksumOffset,
        Self::TunBadGsoPacket,
        Self::TunUnknownGsoType,
        Self::TunWriteFull,
        Self::TunWriteError,
        Self::ChannelDeliverFull,
        Self::ChannelClosed,
        Self::PeerSocketOpened,
        Self::PeerSocketOpenFailed,
        Self::SealFailed,
        Self::CryptoSplit,
        Self::CryptoHelped,
    ];

    /// The counter's name.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::UdpBatchFull => "udp_batch_full",
            Self::TunBatchFull => "tun_batch_full",
            Self::UdpRecvError => "udp_recv_error",
            Self::UdpSendError => "udp_send_error",
            Self::BatchHoldPollError => "batch_hold_poll_error",
            Self::IcmpUnreachableSent => "icmp_unreachable_sent",
            Self::IcmpTooBigSent => "icmp_too_big_sent",
            Self::PolicyRejectSent => "policy_reject_sent",
            Self::TunRecvError => "tun_recv_error",
            Self::TunShortRead => "tun_short_read",
            Self::TunBadChecksumOffset => "tun_bad_checksum_offset",
            Self::TunBadGsoPacket => "tun_bad_gso_packet",
            Self::TunUnknownGsoType => "tun_unknown_gso_type",
            Self::TunWriteFull => "tun_write_full",
            Self::TunWriteError => "tun_write_error",
            Self::ChannelDeliverFull => "channel_deliver_full",
            Self::ChannelClosed => "channel_closed",
            Self::PeerSocketOpened => "peer_socket_opened",
            Self::PeerSocketOpenFailed => "peer_socket_open_failed",
            Self::SealFailed => "seal_failed",
            Self::CryptoSplit => "crypto_batches_split",
            Self::CryptoHelped => "crypto_parts_helped",
        }
    }
}

/// One count per [`DriverEvent`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counters([u64; DriverEvent::ALL.len()]);

impl Counters {
    /// Count one `event`.
    #[inline]
    pub(crate) fn bump(&mut self, event: DriverEvent) {
        let slot = &mut self.0[event as usize];
        *slot = slot.saturating_add(1);
    }

    /// Count what a batch's crypto did (`workers.rs`).
    pub(crate) fn split(&mut self, s: super::workers::Split) {
        if s.split {
            self.bump(DriverEvent::CryptoSplit);
            let slot = &mut self.0[DriverEvent::CryptoHelped as usize];
            *slot = slot.saturating_add(s.helped as u64);
        }
    }

    /// The count of `event`.
    #[cfg(test)]
    pub(crate) fn get(&self, event: DriverEvent) -> u64 {
        self.0[event as usize]
    }

    /// Hand every non-zero count to `out` with its name.
    pub(crate) fn report(&self, out: &mut dyn FnMut(&'static str, u64)) {
        for event in DriverEvent::ALL {
            let n = self.0[event as usize];
            if n > 0 {
                out(event.as_str(), n);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_in_discriminant_order_and_names_are_unique() {
        for (i, e) in DriverEvent::ALL.iter().enumerate() {
            assert_eq!(*e as usize, i, "{e:?}");
        }
        let mut names: Vec<_> = DriverEvent::ALL.iter().map(|e| e.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DriverEvent::ALL.len());
    }

    #[test]
    fn only_non_zero_counts_are_reported() {
        let mut c = Counters::default();
        c.bump(DriverEvent::TunWriteFull);
        c.bump(DriverEvent::TunWriteFull);
        c.bump(DriverEvent::UdpBatchFull);
        let mut seen = Vec::new();
        c.report(&mut |k, v| seen.push((k, v)));
        assert_eq!(seen, [("udp_batch_full", 1), ("tun_write_full", 2)]);
        assert_eq!(c.get(DriverEvent::TunWriteFull), 2);
    }
}
