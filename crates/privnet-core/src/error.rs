//! Drop reasons, counters and the error type of each fallible operation.
//!
//! Every packet the core refuses maps to exactly one [`DropReason`], and every reason has a counter in
//! [`Stats`]. Hot-path reasons are a small `Copy` enum so counting costs one array increment.
//!
//! Each operation has its own error type, so that a caller can only be handed the failures that
//! operation can have: [`EncapsulateError`] (outbound packets), [`DecapsulateError`] (datagrams from
//! the underlay; it carries the [`DropReason`] counted for it) and [`NodeError`] (configuration).

use std::fmt;

macro_rules! drop_reasons {
    ($($(#[$doc:meta])* $name:ident => $label:literal,)*) => {
        /// Why a packet (or a handshake message) was dropped.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum DropReason {
            $($(#[$doc])* $name,)*
        }

        impl DropReason {
            /// All reasons, in counter order.
            pub const ALL: &'static [DropReason] = &[$(DropReason::$name,)*];

            /// Stable snake_case label, used in metrics and logs.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(DropReason::$name => $label,)*
                }
            }
        }
    };
}

drop_reasons! {
    /// Datagram shorter than the 4-byte common header.
    TooShort => "too_short",
    /// Unknown message type, version or non-zero reserved bytes.
    BadType => "bad_type",
    /// Length not valid for the message type.
    BadLength => "bad_length",
    /// mac1 does not verify (not for us, or not from our network).
    BadMac1 => "bad_mac1",
    /// Under load and mac2 missing or invalid: answered with a cookie reply.
    CookieRequired => "cookie_required",
    /// Handshake source exceeded its rate limit.
    RateLimited => "rate_limited",
    /// Handshake limiter table is full (too many distinct sources).
    LimiterFull => "limiter_full",
    /// The node-wide handshake work budget is spent and the message is not on the priority lane.
    HandshakeBudget => "handshake_budget",
    /// Noise handshake message failed to decrypt or authenticate.
    HandshakeFailed => "handshake_failed",
    /// Low-order public key or all-zero Diffie-Hellman result.
    BadKey => "bad_key",
    /// Credential refused by the verifier.
    BadCredential => "bad_credential",
    /// Initiation timestamp not newer than the last one from that peer (replayed initiation).
    ReplayedInitiation => "replayed_initiation",
    /// Initiation timestamp too far in the future.
    FutureTimestamp => "future_timestamp",
    /// Initiation less than the flood interval after the previous one from that peer.
    InitiationFlood => "initiation_flood",
    /// The peer table is full (`max_peers`): a valid member could not be added.
    TooManyPeers => "too_many_peers",
    /// Response or cookie reply that matches no handshake in progress.
    UnexpectedHandshake => "unexpected_handshake",
    /// Cookie reply that does not decrypt.
    BadCookie => "bad_cookie",
    /// Data packet with an unknown receiver index.
    UnknownIndex => "unknown_index",
    /// Data packet counter already seen.
    Duplicate => "duplicate",
    /// Data packet counter older than the replay window.
    TooOld => "too_old",
    /// Data packet counter at or beyond the reject limit.
    CounterLimit => "counter_limit",
    /// Data packet failed authentication.
    BadTag => "bad_tag",
    /// Session older than the reject-after time.
    SessionExpired => "session_expired",
    /// Decrypted packet whose inner source address the sending member does not own.
    SpoofedSource => "spoofed_source",
    /// Inner packet is not a well-formed IPv4/IPv6 packet.
    MalformedInner => "malformed_inner",
    /// No peer owns the inner destination address.
    NoRoute => "no_route",
    /// Peer has no known underlay endpoint.
    NoEndpoint => "no_endpoint",
    /// Packet queue of a peer waiting for its handshake is full (oldest packet dropped).
    QueueFull => "queue_full",
    /// Handshake attempts for a peer gave up; its queued packets were dropped.
    HandshakeTimeout => "handshake_timeout",
    /// Caller buffer too small for the output.
    BufferTooSmall => "buffer_too_small",
    /// Inner packet larger than the tunnel MTU.
    TooBig => "too_big",
    /// Handshake message (valid mac1) from a member configured with another cipher suite.
    CipherMismatch => "cipher_mismatch",
    /// Decrypted inner packet whose destination is none of this member's addresses or routes.
    BadDestination => "bad_destination",
    /// Authenticated packet whose underlay source lies inside the overlay (a routing loop:
    /// the endpoint is never moved there).
    EndpointInOverlay => "endpoint_in_overlay",
    /// Inner packet the access policy drops (a `deny`, a flow no rule allows, a later fragment
    /// without its first, a full connection tracker), at the sender or the receiver.
    PolicyDenied => "policy_denied",
    /// Inner packet the access policy rejects (answered with a TCP RST or an ICMP
    /// administratively-prohibited error, within the reply budget).
    PolicyRejected => "policy_rejected",
    /// Inner packet over a per-member rate limit of the policy (`[[limits]]`), at the sender
    /// before encryption or at the receiver after decryption.
    MemberRateLimited => "member_rate_limited",
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for DropReason {}

/// Number of drop reasons.
pub const DROP_REASONS: usize = DropReason::ALL.len();

/// Node-wide counters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stats {
    /// Drops by reason, indexed by `DropReason as usize`.
    pub drops: [u64; DROP_REASONS],
    /// Data packets sealed and handed out for sending.
    pub tx_packets: u64,
    /// Inner bytes sealed.
    pub tx_bytes: u64,
    /// Data packets authenticated and delivered.
    pub rx_packets: u64,
    /// Inner bytes delivered.
    pub rx_bytes: u64,
    /// Handshake initiations sent.
    pub handshakes_initiated: u64,
    /// Handshakes completed (either role).
    pub handshakes_completed: u64,
    /// Cookie replies sent.
    pub cookies_sent: u64,
    /// Keepalives sent.
    pub keepalives_sent: u64,
    /// Sessions torn down because the peer's credential expired or was revoked.
    pub credential_teardowns: u64,
    /// Handshake messages admitted to Diffie-Hellman work (initiations and responses).
    pub handshake_work: u64,
    /// Of those, admitted through the priority lane.
    pub handshake_work_priority: u64,
    /// TCP SYNs whose MSS option was lowered to fit the overlay MTU (`packet/mss.rs`).
    pub mss_clamped: u64,
    /// Data packets sent marked high-priority (the policy's `priority = "high"`).
    pub priority_sent: u64,
    /// Data packets received marked high-priority whose flow our own policy classes high too.
    pub priority_received: u64,
    /// Data packets received marked high-priority whose flow our policy does not class high (a
    /// sender on another policy, or a forged mark: delivered as normal traffic, counted).
    pub priority_unconfirmed: u64,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            drops: [0; DROP_REASONS],
            tx_packets: 0,
            tx_bytes: 0,
            rx_packets: 0,
            rx_bytes: 0,
            handshakes_initiated: 0,
            handshakes_completed: 0,
            cookies_sent: 0,
            keepalives_sent: 0,
            credential_teardowns: 0,
            handshake_work: 0,
            handshake_work_priority: 0,
            mss_clamped: 0,
            priority_sent: 0,
            priority_received: 0,
            priority_unconfirmed: 0,
        }
    }
}

impl Stats {
    /// Count one drop.
    #[inline]
    pub fn drop(&mut self, reason: DropReason) {
        if let Some(c) = self.drops.get_mut(reason as usize) {
            *c = c.saturating_add(1);
        }
    }

    /// The counter for `reason`.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.drops.get(reason as usize).copied().unwrap_or(0)
    }

    /// Sum of all drop counters.
    pub fn total_drops(&self) -> u64 {
        self.drops.iter().sum()
    }

    /// Non-zero drop counters with their labels.
    pub fn nonzero_drops(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL
            .iter()
            .map(|r| (*r, self.dropped(*r)))
            .filter(|(_, n)| *n > 0)
    }
}

/// Why [`Node::encapsulate`](crate::Node::encapsulate) or
/// [`Node::encapsulate_to`](crate::Node::encapsulate_to) refused an inner packet. Every refusal is
/// counted in [`Stats`] under [`EncapsulateError::reason`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum EncapsulateError {
    /// The packet is larger than the tunnel MTU (`NodeConfig::mtu`) or than a Noise message.
    #[error("inner packet larger than the tunnel MTU")]
    TooBig,
    /// Not a well-formed IPv4 or IPv6 packet.
    #[error("inner packet is not a well-formed IPv4/IPv6 packet")]
    Malformed,
    /// No peer owns the destination address.
    #[error("no member owns the destination address")]
    NoRoute,
    /// The peer has no known underlay endpoint.
    #[error("the peer has no known underlay endpoint")]
    NoEndpoint,
    /// The output buffer cannot hold the sealed datagram.
    #[error("output buffer too small for the sealed datagram")]
    BufferTooSmall,
    /// The session's send counter is exhausted (a new handshake is under way).
    #[error("session send counter exhausted")]
    CounterLimit,
    /// The peer id names no peer (it was removed).
    #[error("no such peer")]
    UnknownPeer,
    /// The access policy drops the packet (`deny`, or a flow it may not start).
    #[error("the access policy denies this packet")]
    PolicyDenied,
    /// The access policy rejects the packet: [`Node::reject_reply`](crate::Node::reject_reply)
    /// builds the answer (TCP RST or ICMP administratively prohibited) for the local side.
    #[error("the access policy rejects this packet")]
    PolicyRejected,
    /// A per-member rate limit of the policy (`[[limits]]`) has no room for the packet.
    #[error("a rate limit of the policy has no room for this packet")]
    RateLimited,
}

impl EncapsulateError {
    /// The drop counter this refusal is counted under.
    pub const fn reason(self) -> DropReason {
        match self {
            Self::TooBig => DropReason::TooBig,
            Self::Malformed => DropReason::MalformedInner,
            Self::NoRoute | Self::UnknownPeer => DropReason::NoRoute,
            Self::NoEndpoint => DropReason::NoEndpoint,
            Self::BufferTooSmall => DropReason::BufferTooSmall,
            Self::CounterLimit => DropReason::CounterLimit,
            Self::PolicyDenied => DropReason::PolicyDenied,
            Self::PolicyRejected => DropReason::PolicyRejected,
            Self::RateLimited => DropReason::MemberRateLimited,
        }
    }
}

/// Why [`Node::decapsulate`](crate::Node::decapsulate) refused a datagram: the reason it was
/// counted under in [`Stats`]. Only inbound reasons occur (never `NoRoute`, `TooBig`, `QueueFull`,
/// `HandshakeTimeout` or `NoEndpoint`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[error("datagram dropped: {reason}")]
pub struct DecapsulateError {
    reason: DropReason,
}

impl DecapsulateError {
    pub(crate) const fn new(reason: DropReason) -> Self {
        Self { reason }
    }

    /// The drop counter this datagram was counted under.
    pub const fn reason(self) -> DropReason {
        self.reason
    }
}

/// Errors from [`Node::new`](crate::Node::new) and [`Node::add_peer`](crate::Node::add_peer).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// A public key is a low-order point.
    #[error("public key is a low-order point")]
    LowOrderKey,
    /// The peer is ourselves.
    #[error("peer key is our own key")]
    OwnKey,
    /// The peer is already configured.
    #[error("peer already configured")]
    DuplicatePeer,
    /// Too many peers (`NodeConfig::max_peers`).
    #[error("too many peers")]
    TooManyPeers,
    /// Our credential is larger than a handshake can carry.
    #[error("credential of {len} bytes is larger than the {max} a handshake can carry")]
    CredentialTooLarge {
        /// The credential's length.
        len: usize,
        /// The largest a handshake carries.
        max: usize,
    },
    /// The Noise library does not support the configured cipher suite.
    #[error("the Noise library does not support cipher suite {0}")]
    UnsupportedCipher(crate::crypto::CipherSuite),
    /// `NodeConfig::rng_seed` was left all-zero: two nodes (or one node after a restart) would draw
    /// the same indices and ephemeral keys. The I/O layer must draw it from the OS.
    #[error("no RNG seed: set NodeConfig::rng_seed from the OS random number generator")]
    MissingSeed,
    /// Our own credential does not verify, so the node cannot learn which overlay addresses are
    /// its own (set `NodeConfig::local_addresses`, or fix the credential).
    #[error("our own credential does not verify ({0}); cannot tell which addresses are ours")]
    OwnCredential(crate::credential::CredentialError),
    /// A configured endpoint lies inside the overlay (it would route the tunnel into itself).
    #[error("endpoint {0} lies inside the overlay network")]
    EndpointInOverlay(std::net::SocketAddr),
    /// A persistent keepalive shorter than one second (zero means off).
    #[error("persistent keepalive of {0:?} is below the 1 s minimum (0 turns it off)")]
    KeepaliveTooShort(std::time::Duration),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_unique_and_counted() {
        let mut seen = std::collections::HashSet::new();
        for r in DropReason::ALL {
            assert!(seen.insert(r.as_str()), "duplicate label {}", r.as_str());
        }
        let mut s = Stats::default();
        s.drop(DropReason::BadTag);
        s.drop(DropReason::BadTag);
        assert_eq!(s.dropped(DropReason::BadTag), 2);
        assert_eq!(s.total_drops(), 2);
        assert_eq!(s.nonzero_drops().count(), 1);
    }
}
