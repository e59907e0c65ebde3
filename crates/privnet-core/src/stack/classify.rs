//! What the stack must know about an inbound packet before smoltcp sees it: a TCP segment that
//! opens a connection (SYN, for the listener's spare sockets and the sender's identity) or a UDP
//! datagram (to count the ones a full socket drops). Read through the core's checked view.

use std::net::SocketAddr;

use crate::packet::{IpPacket, TcpFlags, Transport};

/// The kind of an inbound packet, as far as the stack cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Inbound {
    /// A TCP segment with SYN: a connection request (`ack == false`) or the answer to ours.
    Syn {
        /// The sender's address and port.
        remote: SocketAddr,
        /// Our port.
        local_port: u16,
        /// SYN|ACK.
        ack: bool,
    },
    /// A UDP datagram to `local_port` with `len` payload bytes.
    Udp { local_port: u16, len: usize },
    /// Anything else.
    Other,
}

/// Classify `packet`; malformed packets are `Other` (smoltcp drops them).
pub(crate) fn classify(packet: &[u8]) -> Inbound {
    let Ok(p) = IpPacket::new_checked(packet) else {
        return Inbound::Other;
    };
    match p.transport() {
        Transport::Tcp(t) if t.flags.contains(TcpFlags::SYN) && !t.flags.contains(TcpFlags::RST) => {
            Inbound::Syn {
                remote: SocketAddr::new(p.src_addr(), t.src_port),
                local_port: t.dst_port,
                ack: t.flags.contains(TcpFlags::ACK),
            }
        }
        Transport::Udp(u) => Inbound::Udp {
            local_port: u.dst_port,
            len: usize::from(u.length).saturating_sub(8),
        },
        _ => Inbound::Other,
    }
}

/// Whether the stack wants the sender's identity with `packet` (a SYN or SYN|ACK): the driver
/// looks it up only then.
pub fn wants_sender(packet: &[u8]) -> bool {
    matches!(classify(packet), Inbound::Syn { .. })
}
