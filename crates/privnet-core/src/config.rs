//! Node configuration and the protocol constants.
//!
//! The timer and counter constants are WireGuard's (whitepaper §6, `messages.h`), which privnet keeps
//! so that its behaviour under loss, rekey and restart is the well-studied one. `docs/PROTOCOL.md`
//! lists them; a unit test there keeps the document and these values in step.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ipnetwork::IpNetwork;

use crate::credential::CredentialVerifier;
use crate::crypto::{PublicKey, StaticSecret};

/// Initiate a new handshake after this many messages on a session.
pub const REKEY_AFTER_MESSAGES: u64 = 1 << 60;
/// Never send or accept a counter at or above this value. Half of WireGuard's
/// (`2^64 − 2^13 − 1`): bit 63 of the AEAD nonce carries a data message's priority flag
/// (docs/PROTOCOL.md §3.7), so no counter may use it. Sessions rekey after 2^60 messages anyway.
pub const REJECT_AFTER_MESSAGES: u64 = (1 << 63) - (1 << 13) - 1;
/// The initiator of a session starts a new handshake when the session is this old.
pub const REKEY_AFTER_TIME: Duration = Duration::from_secs(120);
/// A session is unusable once this old.
pub const REJECT_AFTER_TIME: Duration = Duration::from_secs(180);
/// A session stops *sending* this long before it stops receiving (`REJECT_AFTER_TIME`), so that a
/// packet sealed just before the limit does not arrive after it. The responder's session is older
/// than the initiator's by up to one round trip (it starts when the initiation arrives, the
/// initiator's when the response does), so the margin must cover a round trip plus jitter; it is
/// `REKEY_TIMEOUT` (5 s), the longest round trip at which a handshake can complete at all.
pub const STOP_SENDING_AFTER_TIME: Duration = Duration::from_secs(175);
/// Give up on a handshake (drop queued packets) after trying for this long.
pub const REKEY_ATTEMPT_TIME: Duration = Duration::from_secs(90);
/// Retransmit an unanswered initiation after this long (plus jitter).
pub const REKEY_TIMEOUT: Duration = Duration::from_secs(5);
/// Upper bound of the random jitter added to [`REKEY_TIMEOUT`].
pub const REKEY_TIMEOUT_JITTER: Duration = Duration::from_millis(333);
/// Send a keepalive if data was received but nothing sent for this long.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Key material is erased this long after the last handshake.
pub const ZERO_KEYS_AFTER: Duration = Duration::from_secs(3 * 180);
/// Minimum interval between two consumed initiations from one peer (50 per second).
pub const INITIATION_MIN_INTERVAL: Duration = Duration::from_millis(20);
/// Cookie secrets rotate this often; a received cookie is used for this long minus 5 s of latency.
pub const COOKIE_SECRET_MAX_AGE: Duration = Duration::from_secs(120);
/// How long a node stays "under load" after the handshake rate fell below the threshold.
pub const UNDER_LOAD_AFTER: Duration = Duration::from_secs(1);
/// Handshake messages per second a known peer may have admitted through the priority lane (from
/// its own endpoint, or answering our initiation), past the per-source limiter and the node-wide
/// work budget.
pub const PRIORITY_HANDSHAKES_PER_SEC: u32 = 2;
/// Burst of the priority lane per peer.
pub const PRIORITY_HANDSHAKE_BURST: u32 = 10;
/// Responses to one pending initiation admitted through the priority lane (a forged or replayed
/// response costs two Diffie-Hellman operations before it fails).
pub const PRIORITY_RESPONSES_PER_INITIATION: u32 = 4;
/// Initiation timestamps further than this ahead of our wall clock are refused (see PROTOCOL.md
/// "Far-future timestamps").
pub const MAX_TIMESTAMP_SKEW: Duration = Duration::from_secs(600);

/// Configuration of one member of one network.
///
/// Its `Debug` output leaves out the secrets (static key, network PSK, RNG seed).
#[derive(Clone)]
#[non_exhaustive]
pub struct NodeConfig {
    /// Our Noise static private key.
    pub static_secret: StaticSecret,
    /// The network's pre-shared key (mixed into every handshake and the mac1/cookie keys). Our
    /// handshakes use it.
    pub network_psk: [u8; 32],
    /// Other network PSKs accepted from peers during a PSK rotation (handshakes under them are
    /// answered under the same PSK). Empty outside a rotation; see docs/CONFIG.md "Rotating the
    /// network PSK".
    pub accepted_psks: Vec<[u8; 32]>,
    /// The network id (bound into the Noise prologue).
    pub network_id: [u8; 16],
    /// The network's AEAD (every member of a network must use the same).
    pub cipher: crate::crypto::CipherSuite,
    /// Our credential (member certificate bytes) sent inside handshakes.
    pub credential: Vec<u8>,
    /// Validates credentials presented by peers.
    pub verifier: Arc<dyn CredentialVerifier>,
    /// Seed for all randomness (indices, ephemeral keys, jitter, cookie secrets). Required:
    /// `Node::new` refuses the all-zero default (`NodeError::MissingSeed`). Draw it from the OS
    /// for every start (the I/O driver does); two nodes with one seed would reuse ephemeral keys.
    pub rng_seed: [u8; 32],
    /// Handshake messages per second above which the node is "under load" and demands cookies.
    pub under_load_handshakes_per_sec: u32,
    /// Node-wide budget of handshake messages per second that may cost Diffie-Hellman work (burst:
    /// one second's worth). Beyond it only the priority lane — known peers' own endpoints and
    /// responses to our initiations — gets DH work; everything else is `handshake_budget`.
    pub handshake_budget_per_sec: u32,
    /// Per-source handshake rate (IPv4 address or IPv6 /64): sustained per second.
    pub handshake_rate_per_source: u32,
    /// Per-source handshake burst.
    pub handshake_burst_per_source: u32,
    /// Most distinct sources tracked by the handshake limiter; beyond it new sources are refused.
    pub limiter_max_sources: usize,
    /// Packets queued per peer while its handshake is in progress (oldest dropped beyond it).
    pub max_queued_per_peer: usize,
    /// Most peers (configured plus learned from valid credentials).
    pub max_peers: usize,
    /// Accept handshakes from members not in the peer list when their credential verifies.
    pub accept_unknown_peers: bool,
    /// Start handshakes to every peer with a known endpoint as soon as the node starts.
    pub eager_handshakes: bool,
    /// Largest inner packet accepted by `encapsulate` (the tunnel MTU).
    pub mtu: usize,
    /// Our overlay addresses and the routes we serve: a packet from a peer must be addressed to
    /// one of them (`bad_destination` otherwise). `None`: the addresses our own credential grants
    /// (`Node::new` verifies it).
    pub local_addresses: Option<Vec<IpNetwork>>,
    /// The network's overlay prefixes and granted routes (the CA's): an underlay endpoint inside
    /// them, or inside any prefix routed to a peer or our own, is a routing loop and refused
    /// (`endpoint_in_overlay`).
    pub overlay_prefixes: Vec<IpNetwork>,
    /// The access policy to enforce from the start (docs/POLICY.md); `None` (the default): members
    /// talk freely. Change it later with [`Node::set_policy`](crate::Node::set_policy).
    pub policy: Option<Arc<crate::policy::CompiledPolicy>>,
    /// Sizing and timeouts of the connection tracker that a policy uses (its memory is taken
    /// only once a policy is installed).
    pub conntrack: crate::policy::ConntrackConfig,
}

impl std::fmt::Debug for NodeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeConfig")
            .field("static_public", &self.static_secret.public_key())
            .field("network_id", &self.network_id)
            .field("accepted_psks", &self.accepted_psks.len())
            .field("cipher", &self.cipher)
            .field("credential_len", &self.credential.len())
            .field("verifier", &self.verifier)
            .field(
                "under_load_handshakes_per_sec",
                &self.under_load_handshakes_per_sec,
            )
            .field("handshake_budget_per_sec", &self.handshake_budget_per_sec)
            .field("handshake_rate_per_source", &self.handshake_rate_per_source)
            .field(
                "handshake_burst_per_source",
                &self.handshake_burst_per_source,
            )
            .field("limiter_max_sources", &self.limiter_max_sources)
            .field("max_queued_per_peer", &self.max_queued_per_peer)
            .field("max_peers", &self.max_peers)
            .field("accept_unknown_peers", &self.accept_unknown_peers)
            .field("eager_handshakes", &self.eager_handshakes)
            .field("mtu", &self.mtu)
            .field("local_addresses", &self.local_addresses)
            .field("overlay_prefixes", &self.overlay_prefixes)
            .field("policy", &self.policy.as_ref().map(|p| p.hash_hex()))
            .field("conntrack", &self.conntrack)
            .finish_non_exhaustive()
    }
}

/// The node's settings once its secrets went into its keys (`handshake::LocalKeys`).
pub(crate) struct Settings {
    pub(crate) cipher: crate::crypto::CipherSuite,
    pub(crate) credential: Vec<u8>,
    pub(crate) verifier: Arc<dyn CredentialVerifier>,
    pub(crate) under_load_handshakes_per_sec: u32,
    pub(crate) handshake_budget_per_sec: u32,
    pub(crate) handshake_rate_per_source: u32,
    pub(crate) handshake_burst_per_source: u32,
    pub(crate) limiter_max_sources: usize,
    pub(crate) max_queued_per_peer: usize,
    pub(crate) max_peers: usize,
    pub(crate) accept_unknown_peers: bool,
    pub(crate) eager_handshakes: bool,
    pub(crate) mtu: usize,
    /// Resolved by `Node::new` (from our credential when not configured).
    pub(crate) local_addresses: Vec<IpNetwork>,
    pub(crate) overlay_prefixes: Vec<IpNetwork>,
}

/// What the node takes apart from a [`NodeConfig`].
pub(crate) struct Parts {
    pub(crate) static_secret: StaticSecret,
    pub(crate) network_psk: [u8; 32],
    pub(crate) accepted_psks: Vec<[u8; 32]>,
    pub(crate) network_id: [u8; 16],
    pub(crate) rng_seed: [u8; 32],
    pub(crate) policy: Option<Arc<crate::policy::CompiledPolicy>>,
    pub(crate) conntrack: crate::policy::ConntrackConfig,
    pub(crate) settings: Settings,
}

impl NodeConfig {
    /// Take the configuration apart: the secrets for the keys, the rest as settings.
    pub(crate) fn into_parts(self) -> Parts {
        Parts {
            static_secret: self.static_secret,
            network_psk: self.network_psk,
            accepted_psks: self.accepted_psks,
            network_id: self.network_id,
            rng_seed: self.rng_seed,
            policy: self.policy,
            conntrack: self.conntrack,
            settings: Settings {
                cipher: self.cipher,
                credential: self.credential,
                verifier: self.verifier,
                under_load_handshakes_per_sec: self.under_load_handshakes_per_sec,
                handshake_budget_per_sec: self.handshake_budget_per_sec,
                handshake_rate_per_source: self.handshake_rate_per_source,
                handshake_burst_per_source: self.handshake_burst_per_source,
                limiter_max_sources: self.limiter_max_sources,
                max_queued_per_peer: self.max_queued_per_peer,
                max_peers: self.max_peers,
                accept_unknown_peers: self.accept_unknown_peers,
                eager_handshakes: self.eager_handshakes,
                mtu: self.mtu,
                local_addresses: self.local_addresses.unwrap_or_default(),
                overlay_prefixes: self.overlay_prefixes,
            },
        }
    }

    /// A configuration with defaults for everything but the identity.
    pub fn new(
        static_secret: StaticSecret,
        network_psk: [u8; 32],
        network_id: [u8; 16],
        verifier: Arc<dyn CredentialVerifier>,
    ) -> Self {
        Self {
            static_secret,
            network_psk,
            accepted_psks: Vec::new(),
            network_id,
            cipher: crate::crypto::CipherSuite::default(),
            credential: Vec::new(),
            verifier,
            rng_seed: [0; 32],
            under_load_handshakes_per_sec: 128,
            handshake_budget_per_sec: 500,
            handshake_rate_per_source: 20,
            handshake_burst_per_source: 10,
            limiter_max_sources: 65_536,
            max_queued_per_peer: 128,
            max_peers: 1 << 20,
            accept_unknown_peers: true,
            eager_handshakes: true,
            mtu: 1440,
            local_addresses: None,
            overlay_prefixes: Vec::new(),
            policy: None,
            conntrack: crate::policy::ConntrackConfig::default(),
        }
    }

    /// Set our credential.
    pub fn credential(&mut self, credential: Vec<u8>) -> &mut Self {
        self.credential = credential;
        self
    }

    /// Set the RNG seed (the driver draws it from the OS; tests fix it).
    pub fn rng_seed(&mut self, seed: [u8; 32]) -> &mut Self {
        self.rng_seed = seed;
        self
    }
}

/// A statically configured peer.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerConfig {
    /// The peer's Noise static public key.
    pub static_public: PublicKey,
    /// Underlay endpoint, if known (learned from authenticated packets otherwise).
    pub endpoint: Option<SocketAddr>,
    /// Overlay prefixes routed to this peer before its credential is known. After a handshake the
    /// routes and the anti-spoofing check use the prefixes its verified credential grants.
    pub allowed_ips: Vec<IpNetwork>,
    /// Send a keepalive at least this often (for NAT mappings). `Duration::ZERO` means off (as in
    /// WireGuard); anything else below one second is refused by `Node::add_peer`.
    pub persistent_keepalive: Option<Duration>,
}

impl PeerConfig {
    /// A peer with a static key and nothing else.
    pub fn new(static_public: PublicKey) -> Self {
        Self {
            static_public,
            endpoint: None,
            allowed_ips: Vec::new(),
            persistent_keepalive: None,
        }
    }

    /// Set the endpoint.
    pub fn endpoint(mut self, endpoint: SocketAddr) -> Self {
        self.endpoint = Some(endpoint);
        self
    }

    /// Add an allowed prefix.
    pub fn allowed_ip(mut self, net: IpNetwork) -> Self {
        self.allowed_ips.push(net);
        self
    }

    /// Set the persistent keepalive interval.
    pub fn persistent_keepalive(mut self, every: Duration) -> Self {
        self.persistent_keepalive = Some(every);
        self
    }
}
