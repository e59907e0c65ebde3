//! What the policy engine is asked about: one packet's flow (a small `Copy` value the caller builds
//! from its checked inner-packet view), who the two ends are, and the identity of a member.
//!
//! The engine never parses packets. The caller classifies a packet once (addresses, protocol after a
//! bounded IPv6 extension-header walk, ports, ICMP type/code and the quoted header of an ICMP error,
//! fragment position, TCP flags) and hands the result here; anything it could not classify it
//! reports as [`Protocol::Unknown`], which the policy treats fail-closed (docs/POLICY.md §4).

use std::net::IpAddr;

use crate::credential::PeerIdentity;

/// An IP protocol number, or the class of packets whose protocol the classifier could not establish
/// (an IPv6 extension-header chain longer than its walk, an unknown extension header, a first
/// fragment too short to hold the transport header, a port-carrying protocol without its ports).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// IANA protocol number (6 = TCP, 17 = UDP, 1 = ICMP, 58 = ICMPv6, 132 = SCTP, ...).
    Number(u8),
    /// Not established: matched only by rules that name `unknown`, and denied when no tier
    /// decides, whatever the policy's `default` (fail closed).
    Unknown,
}

impl Protocol {
    /// ICMP (IPv4).
    pub const ICMP: Self = Self::Number(1);
    /// TCP.
    pub const TCP: Self = Self::Number(6);
    /// UDP.
    pub const UDP: Self = Self::Number(17);
    /// ICMPv6.
    pub const ICMPV6: Self = Self::Number(58);
    /// SCTP.
    pub const SCTP: Self = Self::Number(132);

    /// Whether the protocol carries 16-bit ports that rules may select (TCP, UDP, SCTP).
    pub fn has_ports(self) -> bool {
        matches!(self, Self::TCP | Self::UDP | Self::SCTP)
    }

    /// Whether the protocol is ICMP or ICMPv6 (rules select type and code).
    pub fn is_icmp(self) -> bool {
        matches!(self, Self::ICMP | Self::ICMPV6)
    }

    /// Index in a 257-entry table: the protocol number, or 256 for `Unknown`.
    pub(crate) fn table_index(self) -> usize {
        match self {
            Self::Number(n) => usize::from(n),
            Self::Unknown => 256,
        }
    }

    /// The policy-language name (`tcp`, `udp`, `icmp`, `icmpv6`, `sctp`, `unknown`) or the number.
    pub fn name(self) -> String {
        match self {
            Self::TCP => "tcp".into(),
            Self::UDP => "udp".into(),
            Self::ICMP => "icmp".into(),
            Self::ICMPV6 => "icmpv6".into(),
            Self::SCTP => "sctp".into(),
            Self::Number(n) => n.to_string(),
            Self::Unknown => "unknown".into(),
        }
    }
}

/// Where a packet stands with respect to IP fragmentation (the same three cases as the inner-packet
/// view's `Fragment`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Fragment {
    /// Not a fragment (for IPv6 also an atomic fragment).
    #[default]
    Unfragmented,
    /// The first fragment: it carries the transport header and is decided like a whole packet;
    /// when it is allowed, the later fragments of the same datagram follow it.
    First {
        /// IP identification (16 bits for IPv4, 32 for IPv6).
        ident: u32,
    },
    /// A later fragment: no transport header. It passes only if the first fragment of the same
    /// datagram (same addresses, protocol and identification) was allowed within the fragment
    /// timeout; otherwise it is dropped (fail closed, docs/POLICY.md §4.1).
    NonFirst {
        /// IP identification.
        ident: u32,
    },
}

/// The header quoted inside an ICMP error (destination unreachable, packet too big, time exceeded,
/// parameter problem): the packet that caused the error, as it was sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct QuotedFlow {
    /// Source of the quoted packet (normally the destination of the error).
    pub src: IpAddr,
    /// Destination of the quoted packet.
    pub dst: IpAddr,
    /// Protocol of the quoted packet.
    pub proto: Protocol,
    /// Its source port (for a quoted ICMP echo, the echo identifier).
    pub src_port: Option<u16>,
    /// Its destination port (for a quoted ICMP echo, the echo identifier).
    pub dst_port: Option<u16>,
}

/// ICMP / ICMPv6 details of a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Icmp {
    /// ICMP type.
    pub ty: u8,
    /// ICMP code.
    pub code: u8,
    /// Echo identifier, for echo requests and replies (the connection tracker keys echoes on it).
    pub ident: Option<u16>,
    /// For an error message, the quoted header of the packet it reports on: an error that belongs
    /// to a tracked flow is `related` and passes (docs/POLICY.md §4.4).
    pub quoted: Option<QuotedFlow>,
}

impl Icmp {
    /// Whether this is an echo request (ICMP type 8, ICMPv6 type 128), which opens a tracked flow.
    pub fn is_echo_request(&self, proto: Protocol) -> bool {
        matches!(
            (proto, self.ty),
            (Protocol::ICMP, 8) | (Protocol::ICMPV6, 128)
        )
    }

    /// Whether this is an echo reply (ICMP type 0, ICMPv6 type 129).
    pub fn is_echo_reply(&self, proto: Protocol) -> bool {
        matches!(
            (proto, self.ty),
            (Protocol::ICMP, 0) | (Protocol::ICMPV6, 129)
        )
    }
}

/// TCP flag bits as they appear in the header's flags byte.
pub mod tcp_flags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// PSH.
    pub const PSH: u8 = 0x08;
    /// ACK.
    pub const ACK: u8 = 0x10;
}

/// One packet, as the policy and the connection tracker see it.
///
/// The caller fills it from its checked inner-packet view. `src_port`/`dst_port` are the transport
/// ports for TCP, UDP and SCTP (for an ICMP echo, leave them `None` and set [`Icmp::ident`]); a
/// port-carrying protocol without its ports must be reported as [`Protocol::Unknown`] unless the
/// packet is a later fragment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Flow {
    /// Inner source address.
    pub src: IpAddr,
    /// Inner destination address.
    pub dst: IpAddr,
    /// Upper-layer protocol after the extension-header walk.
    pub proto: Protocol,
    /// Source port (TCP, UDP, SCTP).
    pub src_port: Option<u16>,
    /// Destination port (TCP, UDP, SCTP).
    pub dst_port: Option<u16>,
    /// TCP flags (see [`tcp_flags`]); 0 for other protocols.
    pub tcp_flags: u8,
    /// ICMP / ICMPv6 type, code, echo identifier and quoted header.
    pub icmp: Option<Icmp>,
    /// Fragment position.
    pub fragment: Fragment,
}

impl Flow {
    /// A TCP segment with the given flags.
    pub fn tcp(src: IpAddr, src_port: u16, dst: IpAddr, dst_port: u16, flags: u8) -> Self {
        Self {
            src,
            dst,
            proto: Protocol::TCP,
            src_port: Some(src_port),
            dst_port: Some(dst_port),
            tcp_flags: flags,
            icmp: None,
            fragment: Fragment::Unfragmented,
        }
    }

    /// A UDP datagram.
    pub fn udp(src: IpAddr, src_port: u16, dst: IpAddr, dst_port: u16) -> Self {
        Self {
            proto: Protocol::UDP,
            tcp_flags: 0,
            ..Self::tcp(src, src_port, dst, dst_port, 0)
        }
    }

    /// An ICMP (for IPv4 addresses) or ICMPv6 (for IPv6 addresses) message without a quoted header.
    pub fn icmp(src: IpAddr, dst: IpAddr, ty: u8, code: u8, ident: Option<u16>) -> Self {
        let proto = if src.is_ipv6() {
            Protocol::ICMPV6
        } else {
            Protocol::ICMP
        };
        Self {
            src,
            dst,
            proto,
            src_port: None,
            dst_port: None,
            tcp_flags: 0,
            icmp: Some(Icmp {
                ty,
                code,
                ident,
                quoted: None,
            }),
            fragment: Fragment::Unfragmented,
        }
    }

    /// A packet of any other protocol (no ports).
    pub fn other(src: IpAddr, dst: IpAddr, proto: Protocol) -> Self {
        Self {
            src,
            dst,
            proto,
            src_port: None,
            dst_port: None,
            tcp_flags: 0,
            icmp: None,
            fragment: Fragment::Unfragmented,
        }
    }

    /// The same flow with another fragment position.
    pub fn with_fragment(mut self, fragment: Fragment) -> Self {
        self.fragment = fragment;
        self
    }

    /// The 16-bit value that port and ICMP selectors look at: the destination port for TCP, UDP
    /// and SCTP, `type << 8 | code` for ICMP and ICMPv6, nothing otherwise.
    pub(crate) fn selector_value(&self) -> Option<u16> {
        if self.proto.has_ports() {
            self.dst_port
        } else if self.proto.is_icmp() {
            self.icmp.map(|i| u16::from(i.ty) << 8 | u16::from(i.code))
        } else {
            None
        }
    }

    /// The protocol class the rules see: a port-carrying protocol without a destination port is
    /// `unknown` (its ports cannot be checked; fail closed).
    pub(crate) fn effective_proto(&self) -> Protocol {
        if self.proto.has_ports() && self.dst_port.is_none() {
            Protocol::Unknown
        } else {
            self.proto
        }
    }
}

/// The identity of a member, as its certificate states it: the only input to identity selectors.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct MemberRef {
    /// Member name (certificate name).
    pub name: String,
    /// Groups the certificate grants.
    pub groups: Vec<String>,
}

impl MemberRef {
    /// A member with `name` and `groups`.
    pub fn new(name: impl Into<String>, groups: &[&str]) -> Self {
        Self {
            name: name.into(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        }
    }
}

impl From<&PeerIdentity> for MemberRef {
    /// The policy's view of a verified credential: its name and groups.
    fn from(id: &PeerIdentity) -> Self {
        Self {
            name: id.name.clone(),
            groups: id.groups.clone(),
        }
    }
}

/// Which way a packet crosses the enforcing member.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From the local side (TUN) into the overlay, before encryption.
    Outbound,
    /// From the overlay (after authentication) to the local side.
    Inbound,
}

/// Whether an end of a packet is a member itself or an address routed through it (a gateway's
/// subnet, the outside world behind an exit member).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EndKind {
    /// The member's own overlay address: identity selectors apply (name, groups, `self`).
    Member,
    /// A non-member address behind the member: only CIDR selectors and `any` apply.
    Routed,
}

/// How a packet relates to the enforcing member: its direction, and what each end is. The caller
/// knows both from its routing decision (is the inner address the member's own, or a route).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowPath {
    /// Outbound (the source is on our side) or inbound (the source is the peer's side).
    pub direction: Direction,
    /// Our end: this member itself or a host routed behind it.
    pub local: EndKind,
    /// The peer's end: the peer itself or a host routed behind it.
    pub remote: EndKind,
}

impl FlowPath {
    /// Member to member, sent by us.
    pub const OUTBOUND: Self = Self {
        direction: Direction::Outbound,
        local: EndKind::Member,
        remote: EndKind::Member,
    };
    /// Member to member, received from the peer.
    pub const INBOUND: Self = Self {
        direction: Direction::Inbound,
        local: EndKind::Member,
        remote: EndKind::Member,
    };

    /// Packed into 3 bits (stored with a tracked flow).
    pub(crate) fn to_bits(self) -> u8 {
        u8::from(self.direction == Direction::Inbound)
            | u8::from(self.local == EndKind::Routed) << 1
            | u8::from(self.remote == EndKind::Routed) << 2
    }

    /// The inverse of [`FlowPath::to_bits`].
    pub(crate) fn from_bits(b: u8) -> Self {
        let kind = |routed: bool| {
            if routed {
                EndKind::Routed
            } else {
                EndKind::Member
            }
        };
        Self {
            direction: if b & 1 != 0 {
                Direction::Inbound
            } else {
                Direction::Outbound
            },
            local: kind(b & 2 != 0),
            remote: kind(b & 4 != 0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_bits_round_trip() {
        for b in 0..8u8 {
            assert_eq!(FlowPath::from_bits(b).to_bits(), b);
        }
        assert_eq!(
            FlowPath::from_bits(FlowPath::INBOUND.to_bits()),
            FlowPath::INBOUND
        );
    }

    #[test]
    fn selector_value_and_effective_proto() {
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        assert_eq!(Flow::tcp(a, 1, b, 22, 0).selector_value(), Some(22));
        assert_eq!(
            Flow::icmp(a, b, 8, 0, Some(1)).selector_value(),
            Some(0x0800)
        );
        assert_eq!(
            Flow::other(a, b, Protocol::Number(47)).selector_value(),
            None
        );
        let mut f = Flow::tcp(a, 1, b, 22, 0);
        f.dst_port = None;
        assert_eq!(f.effective_proto(), Protocol::Unknown);
    }
}
