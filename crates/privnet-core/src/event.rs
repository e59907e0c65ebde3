//! What the node hands out: transmit descriptors, outcomes, events and status types, and the
//! [`Outbox`] in which a peer's state machine leaves the actions it decided on (datagrams to send,
//! events, counts) for the node to hand out through `poll_transmit` / `poll_event` / `stats`.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

use ipnetwork::IpNetwork;

use crate::crypto::PublicKey;
use crate::error::{DropReason, Stats};
use crate::peers::PeerId;

/// A datagram to send: `len` bytes at the start of the caller's buffer, to `dst`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Underlay destination.
    pub dst: SocketAddr,
    /// Length of the datagram in the caller's buffer.
    pub len: usize,
}

/// Outcome of [`Node::encapsulate`](crate::Node::encapsulate).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encapsulated {
    /// The sealed datagram is in the output buffer.
    Send(Transmit),
    /// No session yet: the packet is queued and a handshake is under way; `poll_transmit` yields it.
    Queued,
}

/// An inner packet routed and judged by the policy, not yet sealed
/// ([`Node::prepare`](crate::Node::prepare), then
/// [`Node::seal_prepared`](crate::Node::seal_prepared)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outbound {
    /// The peer it goes to (the owner of its destination, or the gateway chosen for it).
    pub peer: PeerId,
    /// It belongs to a flow the policy allowed with `priority = "high"`: the send stage's
    /// fairness gate admits it first, and the sealed message carries the priority hint.
    pub high: bool,
}

/// Outcome of [`Node::decapsulate`](crate::Node::decapsulate).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decapsulated {
    /// An authenticated inner packet of `len` bytes is in the output buffer.
    Packet {
        /// The sending peer.
        peer: PeerId,
        /// Length of the inner packet.
        len: usize,
    },
    /// A keepalive: authenticated, nothing to deliver.
    Keepalive,
    /// A handshake or cookie message was consumed; drain `poll_transmit`.
    Control,
}

/// Why a peer's sessions went away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DownReason {
    /// Handshake attempts gave up after `REKEY_ATTEMPT_TIME`.
    HandshakeTimeout,
    /// Key material erased after long inactivity.
    Idle,
    /// The peer's credential expired.
    CredentialExpired,
    /// The peer's credential was refused on revalidation (revoked, CA removed, ...).
    CredentialRevoked,
    /// The peer was removed.
    Removed,
}

/// Something the driver may want to log or act on.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A session with the peer is established (either role).
    PeerUp {
        /// The peer.
        peer: PeerId,
        /// Its verified name.
        name: String,
    },
    /// The peer's sessions were torn down.
    PeerDown {
        /// The peer.
        peer: PeerId,
        /// Why.
        reason: DownReason,
    },
    /// The peer's underlay endpoint changed (roaming).
    EndpointChanged {
        /// The peer.
        peer: PeerId,
        /// The new endpoint.
        endpoint: SocketAddr,
    },
    /// Our initiations to the peer have gone unanswered [`UNANSWERED_AFTER`] times in a row
    /// (about 10 s): a wrong public key, another network PSK, an unreachable endpoint or a peer
    /// that is down. Emitted once per handshake attempt.
    HandshakeUnanswered {
        /// The peer.
        peer: PeerId,
        /// Where the initiations went.
        endpoint: SocketAddr,
        /// Initiations sent in this attempt so far.
        attempts: u32,
        /// When the attempt started.
        since: Instant,
    },
    /// A new flow the access policy allowed after a `log` rule matched it (the audit trail; the
    /// same rate limit as [`Event::PolicyDenied`]).
    PolicyLogged {
        /// The member the flow came from or goes to.
        peer: PeerId,
        /// Outbound or inbound.
        direction: crate::policy::Direction,
        /// The flow's first packet.
        flow: crate::policy::Flow,
        /// The verdict (`logged` names the `log` rule, `decided_by` the allow).
        verdict: crate::policy::Verdict,
        /// Events not emitted since the last one (the rate limit).
        suppressed: u64,
    },
    /// The access policy refused a packet (the audit trail; at most
    /// [`DENIED_EVENTS_PER_SEC`](crate::node::DENIED_EVENTS_PER_SEC) per second, the rest counted
    /// in the next event's `suppressed`).
    PolicyDenied {
        /// The member the packet came from or was going to (the session's authenticated peer).
        peer: PeerId,
        /// Outbound (refused before encryption) or inbound (after authentication).
        direction: crate::policy::Direction,
        /// The packet's flow (addresses, protocol, ports).
        flow: crate::policy::Flow,
        /// Whether it was rejected (answered) rather than dropped silently.
        rejected: bool,
        /// The policy's verdict (tier, deciding rule), when the policy decided.
        verdict: Option<crate::policy::Verdict>,
        /// The filter's reason.
        reason: crate::policy::Reason,
        /// Events not emitted since the last one (the rate limit).
        suppressed: u64,
    },
    /// The gateway serving a routing entry (`[[route]]`) changed: a failover (the active one is
    /// down), a fail-back (a preferred one is healthy again) or a new policy or route grant.
    GatewayChanged {
        /// The entry's id.
        route: String,
        /// Its prefix.
        prefix: IpNetwork,
        /// The gateway that served it (`None`: none did).
        from: Option<PeerId>,
        /// The gateway that serves it now (`None`: no listed gateway holds the prefix; the
        /// router's own choice applies).
        to: Option<PeerId>,
        /// Why.
        reason: GatewayChange,
    },
}

/// Why [`Event::GatewayChanged`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GatewayChange {
    /// The active gateway stopped answering.
    Failover,
    /// A gateway listed before the active one has been healthy for the fail-back hold.
    Failback,
    /// The candidates changed: a new policy, a gateway's certificate (its grants) came or went.
    Candidates,
}

/// After this many unanswered initiations of one attempt, [`Event::HandshakeUnanswered`].
pub const UNANSWERED_AFTER: u32 = 3;

/// Facts about a session, for status and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionInfo {
    /// Our index (the receiver index peers put in data packets to us).
    pub local_index: u32,
    /// The peer's index.
    pub remote_index: u32,
    /// Whether we initiated the handshake that made it.
    pub is_initiator: bool,
    /// Next send counter.
    pub send_counter: u64,
}

/// Per-peer traffic counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerCounters {
    /// Inner bytes received.
    pub rx_bytes: u64,
    /// Inner bytes sent.
    pub tx_bytes: u64,
    /// Data packets received (including keepalives).
    pub rx_packets: u64,
    /// Data packets sent (including keepalives).
    pub tx_packets: u64,
    /// Handshakes completed with this peer.
    pub handshakes: u64,
    /// Packets dropped because the inner source was not the peer's.
    pub spoofed: u64,
}

/// Where a peer's handshake stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandshakePhase {
    /// No session and no handshake in progress.
    Idle,
    /// An initiation is out and unanswered.
    Initiating {
        /// When the first initiation of this attempt was sent.
        since: Instant,
        /// Initiations sent in this attempt (the first and its retransmissions).
        attempts: u32,
    },
    /// A session can carry data.
    Established,
}

/// A snapshot of one peer for status and metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerStatus {
    /// The peer id.
    pub id: PeerId,
    /// Noise static public key.
    pub static_public: PublicKey,
    /// Verified name, once a handshake happened.
    pub name: Option<String>,
    /// Underlay endpoint.
    pub endpoint: Option<SocketAddr>,
    /// Prefixes routed to and accepted from the peer.
    pub addresses: Vec<IpNetwork>,
    /// When the last handshake completed.
    pub last_handshake: Option<Instant>,
    /// Whether a session can carry data now.
    pub established: bool,
    /// Where its handshake stands.
    pub phase: HandshakePhase,
    /// Traffic counters.
    pub counters: PeerCounters,
}

/// A datagram waiting in the outbox.
pub(crate) enum Pending {
    /// Ready bytes (handshake messages, cookie replies).
    Raw { dst: SocketAddr, bytes: Vec<u8> },
    /// A data packet queued during a handshake, sealed when polled.
    Data { peer: PeerId, packet: Vec<u8> },
    /// A keepalive, sealed when polled.
    Keepalive { peer: PeerId },
}

/// The node's output queues and counters, shared by every peer's state machine.
#[derive(Default)]
pub(crate) struct Outbox {
    pub(crate) transmits: VecDeque<Pending>,
    pub(crate) events: VecDeque<Event>,
    pub(crate) stats: Stats,
}

impl Outbox {
    #[inline]
    pub(crate) fn drop(&mut self, reason: DropReason) {
        self.stats.drop(reason);
    }

    pub(crate) fn send(&mut self, dst: SocketAddr, bytes: Vec<u8>) {
        self.transmits.push_back(Pending::Raw { dst, bytes });
    }

    pub(crate) fn keepalive(&mut self, peer: PeerId) {
        self.transmits.push_back(Pending::Keepalive { peer });
    }

    pub(crate) fn event(&mut self, event: Event) {
        self.events.push_back(event);
    }
}
