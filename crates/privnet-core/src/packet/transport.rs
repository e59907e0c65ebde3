//! The upper-layer header facts the view exposes: TCP and UDP ports (and TCP flags), ICMP and
//! ICMPv6 type and code. A leaf module: it sees only the transport bytes, never the IP header.

/// IP protocol number of ICMP (IPv4).
pub const PROTO_ICMP: u8 = 1;
/// IP protocol number of TCP.
pub const PROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const PROTO_UDP: u8 = 17;
/// IP protocol number of ICMPv6.
pub const PROTO_ICMPV6: u8 = 58;

const TCP_HEADER_LEN: usize = 20;
const UDP_HEADER_LEN: usize = 8;
/// ICMPv4 messages all start with 8 bytes (type, code, checksum, 4 bytes of rest-of-header).
const ICMPV4_HEADER_LEN: usize = 8;
/// ICMPv6 messages start with type, code, checksum; the rest is per message (RFC 4443 §2.1).
const ICMPV6_HEADER_LEN: usize = 4;

/// What the view knows about the upper-layer header of a packet.
///
/// Ports, TCP flags and ICMP type/code exist only in the variants that carry them, and the parser
/// builds those only when the whole header lies inside the packet (its IP length, not the
/// buffer) and the packet is not a non-first fragment. Everything else is one of the last three
/// variants, so a consumer that needs ports (the policy engine) must decide explicitly what to do
/// with a packet that has none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// A complete TCP header (data offset at least 5, options included).
    Tcp(TcpHeader),
    /// A complete 8-byte UDP header. Its length field is reported, not checked: in a first
    /// fragment it covers the whole datagram.
    Udp(UdpHeader),
    /// ICMP inside IPv4, with its complete 8-byte header.
    Icmpv4(IcmpHeader),
    /// ICMPv6 inside IPv6, with at least its 4-byte header.
    Icmpv6(IcmpHeader),
    /// A non-first fragment: its bytes continue a transport header sent in an earlier fragment.
    Fragment,
    /// TCP, UDP, ICMP or ICMPv6 whose header is not wholly inside the packet (a truncated packet,
    /// or a first fragment too small to hold it: the "tiny fragment" attack, RFC 1858), or a TCP
    /// header whose data offset is below 5.
    Truncated,
    /// Any other protocol (ESP, "no next header", SCTP, ICMP over IPv6, ...): not looked into.
    Unknown,
}

impl Transport {
    /// Source and destination port of a TCP or UDP packet.
    #[inline]
    pub fn ports(&self) -> Option<(u16, u16)> {
        match self {
            Self::Tcp(t) => Some((t.src_port, t.dst_port)),
            Self::Udp(u) => Some((u.src_port, u.dst_port)),
            _ => None,
        }
    }

    /// The ICMP or ICMPv6 header (type and code).
    #[inline]
    pub fn icmp(&self) -> Option<IcmpHeader> {
        match self {
            Self::Icmpv4(i) | Self::Icmpv6(i) => Some(*i),
            _ => None,
        }
    }
}

/// The fixed fields of a TCP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpHeader {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number.
    pub ack: u32,
    /// The eight flag bits (byte 13).
    pub flags: TcpFlags,
    /// Header length in bytes, options included: 20 to 60, and inside the packet.
    pub header_len: u8,
}

/// The fields of a UDP header the view reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpHeader {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// The length field (header + data), as sent; not checked against the packet.
    pub length: u16,
}

/// Type and code of an ICMP or ICMPv6 message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IcmpHeader {
    /// Message type.
    pub ty: u8,
    /// Message code.
    pub code: u8,
}

/// The TCP flag bits (byte 13 of the header: CWR ECE URG ACK PSH RST SYN FIN).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    /// No more data from the sender.
    pub const FIN: Self = Self(0x01);
    /// Synchronise sequence numbers.
    pub const SYN: Self = Self(0x02);
    /// Reset the connection.
    pub const RST: Self = Self(0x04);
    /// Push.
    pub const PSH: Self = Self(0x08);
    /// The acknowledgment field is significant.
    pub const ACK: Self = Self(0x10);
    /// The urgent pointer is significant.
    pub const URG: Self = Self(0x20);
    /// ECN echo.
    pub const ECE: Self = Self(0x40);
    /// Congestion window reduced.
    pub const CWR: Self = Self(0x80);

    /// The raw byte.
    #[inline]
    pub fn bits(self) -> u8 {
        self.0
    }

    /// Whether every bit of `other` is set.
    #[inline]
    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
}

/// Classify the upper-layer bytes `l4` (from the transport offset to the end of the packet per
/// its IP length) of a packet that is not a non-first fragment. `v6` selects which ICMP protocol
/// number is ICMP.
#[inline]
pub(super) fn parse(l4: &[u8], protocol: u8, v6: bool) -> Transport {
    match protocol {
        PROTO_TCP => {
            let Some(h) = l4.first_chunk::<TCP_HEADER_LEN>() else {
                return Transport::Truncated;
            };
            let header_len = (h[12] >> 4) * 4;
            if usize::from(header_len) < TCP_HEADER_LEN || usize::from(header_len) > l4.len() {
                return Transport::Truncated;
            }
            Transport::Tcp(TcpHeader {
                src_port: u16::from_be_bytes([h[0], h[1]]),
                dst_port: u16::from_be_bytes([h[2], h[3]]),
                seq: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
                ack: u32::from_be_bytes([h[8], h[9], h[10], h[11]]),
                flags: TcpFlags(h[13]),
                header_len,
            })
        }
        PROTO_UDP => match l4.first_chunk::<UDP_HEADER_LEN>() {
            Some(h) => Transport::Udp(UdpHeader {
                src_port: u16::from_be_bytes([h[0], h[1]]),
                dst_port: u16::from_be_bytes([h[2], h[3]]),
                length: u16::from_be_bytes([h[4], h[5]]),
            }),
            None => Transport::Truncated,
        },
        PROTO_ICMP if !v6 => match l4.first_chunk::<ICMPV4_HEADER_LEN>() {
            Some(h) => Transport::Icmpv4(IcmpHeader {
                ty: h[0],
                code: h[1],
            }),
            None => Transport::Truncated,
        },
        PROTO_ICMPV6 if v6 => match l4.first_chunk::<ICMPV6_HEADER_LEN>() {
            Some(h) => Transport::Icmpv6(IcmpHeader {
                ty: h[0],
                code: h[1],
            }),
            None => Transport::Truncated,
        },
        _ => Transport::Unknown,
    }
}
