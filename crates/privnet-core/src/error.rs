//! Drop reasons and counters.
//!
//! Every packet the core refuses maps to exactly one [`DropReason`], and every reason has a counter in
//! [`Stats`]. Hot-path reasons are a small `Copy` enum so counting costs one array increment.

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
#[derive(Clone, Debug, Default, PartialEq, Eq)]
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
