//! What a running driver shows the outside: one [`NetworkSnapshot`] (with a [`PeerSnapshot`] per
//! peer), rebuilt at most once a second off the packet path and published through the driver's
//! [`super::DriverHandle`]. The fields and their names are the status socket's JSON document, so
//! they only ever grow.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::identity::{expiry_report, ExpirySubject};
use crate::node::{GatewayHealth, HandshakePhase, Node, PeerStatus, UNANSWERED_AFTER};
use crate::policy::conntrack::ConntrackStats;
use crate::policy::counters::Totals;
use crate::policy::{LimitCount, Tier};

use super::config::Identity;

/// Certificates expiring within this horizon are reported as needing attention.
const EXPIRY_HORIZON: Duration = Duration::from_secs(30 * 86_400);
/// A certificate that needs attention is warned about at most this often.
const EXPIRY_WARN_EVERY: Duration = Duration::from_secs(3600);

/// One network as the status socket and the metrics endpoint show it.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct NetworkSnapshot {
    /// Network name.
    pub network: String,
    /// Our member name.
    pub member: String,
    /// Our Noise public key (base64).
    pub public_key: String,
    /// Underlay listen address.
    pub listen: String,
    /// The network's cipher suite.
    pub cipher: String,
    /// The inner side: the TUN device's name, or the name of another inner side.
    pub device: String,
    /// Our overlay addresses.
    pub addresses: Vec<String>,
    /// Seconds since start.
    pub uptime_secs: u64,
    /// Node-wide counters.
    pub tx_packets: u64,
    /// Inner bytes sent.
    pub tx_bytes: u64,
    /// Packets received and delivered.
    pub rx_packets: u64,
    /// Inner bytes delivered.
    pub rx_bytes: u64,
    /// Handshakes initiated.
    pub handshakes_initiated: u64,
    /// Handshakes completed.
    pub handshakes_completed: u64,
    /// Cookie replies sent.
    pub cookies_sent: u64,
    /// Drops by reason (non-zero only).
    pub drops: Vec<(String, u64)>,
    /// Driver-level drops (I/O errors, ICMP generated...) and busy-poll counts (non-zero only).
    pub driver: HashMap<String, u64>,
    /// Microseconds spent busy polling.
    pub busy_poll_us: u64,
    /// Peers.
    pub peers: Vec<PeerSnapshot>,
    /// Certificate expiry notices (subject, seconds left).
    pub expiry: Vec<(String, i64)>,
    /// The access policy in force and its counters (`None` until a policy was first installed).
    pub policy: Option<PolicySnapshot>,
    /// The policy's routing entries that apply to this member: candidates, health, the active
    /// gateway (docs/POLICY.md, "Routing policies").
    pub gateway_routes: Vec<GatewayRouteSnapshot>,
    /// Gateway probes, downs, failovers and fail-backs over the driver's life.
    pub gateways: GatewayCountersSnapshot,
    /// TCP SYNs whose MSS was clamped to the overlay MTU.
    pub mss_clamped: u64,
    /// Data packets sent marked high-priority (docs/POLICY.md §19).
    pub priority_sent: u64,
    /// Marked data packets received whose flow our policy classes high too.
    pub priority_received: u64,
    /// Marked data packets received whose flow our policy does not class high.
    pub priority_unconfirmed: u64,
}

/// One routing entry in a snapshot.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct GatewayRouteSnapshot {
    /// The entry's id (`route/N` when the file gave none).
    pub id: String,
    /// Its prefix.
    pub prefix: String,
    /// The gateway names the entry lists, in priority order.
    pub via: Vec<String>,
    /// The peers that may serve it, in the order they are tried.
    pub candidates: Vec<GatewayCandidateSnapshot>,
    /// The name of the gateway serving it (`None`: no candidate; the router's owner serves).
    pub active: Option<String>,
    /// Failovers since the entry was installed.
    pub failovers: u64,
    /// Fail-backs since the entry was installed.
    pub failbacks: u64,
}

/// One candidate gateway of a routing entry.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct GatewayCandidateSnapshot {
    /// Its name.
    pub name: String,
    /// `up`, `down` or `recovering`.
    pub health: String,
    /// Seconds in that state (`down` and `recovering` only).
    pub for_secs: Option<u64>,
}

/// The node's gateway counters.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct GatewayCountersSnapshot {
    /// Probes sent (handshake initiations to a gateway owing an answer, or down).
    pub probes: u64,
    /// Gateways declared down.
    pub downs: u64,
    /// Entries moved off a gateway that stopped answering.
    pub failovers: u64,
    /// Entries moved back to a preferred gateway.
    pub failbacks: u64,
}

/// The access policy of a network: which one, and its counters (cardinality bounded by the
/// rules: ids, never flows or addresses).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct PolicySnapshot {
    /// The policy in force (lower-case hex of its hash); `None` after a policy was removed.
    pub hash: Option<String>,
    /// Its `name`, if the file gives one.
    pub name: Option<String>,
    /// Rules per tier: platform, application, baseline.
    pub rules_per_tier: [usize; 3],
    /// Per rule, in policy order: its new-flow decisions.
    pub rules: Vec<RuleHits>,
    /// Drops (deny and reject decisions of new flows) by tier, and by the default.
    pub drops_by_tier: TierDrops,
    /// Totals over all rules.
    pub totals: Totals,
    /// The connection tracker's counters (`flows`: tracked now).
    pub conntrack: ConntrackStats,
    /// Bytes the connection tracker has reserved.
    pub conntrack_bytes: u64,
    /// Most flows the tracker holds (`max_flows`).
    pub conntrack_capacity: u64,
    /// Per rate limit (`[[limits]]`), in policy order: packets passed and dropped.
    pub limits: Vec<LimitCount>,
}

/// One rule's counter.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct RuleHits {
    /// Its stable id.
    pub id: String,
    /// `platform`, `application` or `baseline`.
    pub tier: String,
    /// `allow`, `deny`, `reject`, `pass` or `log`.
    pub action: String,
    /// New-flow decisions it took (for `log`: flows logged; for `pass`: flows passed on).
    pub hits: u64,
}

/// Drops by the tier that decided them.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct TierDrops {
    /// The platform tier.
    pub platform: u64,
    /// The application tier.
    pub application: u64,
    /// The baseline tier.
    pub baseline: u64,
    /// The policy's default (and the `unknown` class).
    pub default: u64,
}

/// The policy part of a snapshot of `node`.
fn policy_snapshot(node: &Node) -> Option<PolicySnapshot> {
    let c = node.policy_counters()?;
    let policy = node.policy();
    let spec = policy.map(|p| p.spec());
    let count = |t: Tier| spec.map_or(0, |s| s.tiers[t.index()].len());
    Some(PolicySnapshot {
        hash: c.policy_hash,
        name: spec.and_then(|s| s.name.clone()),
        rules_per_tier: [
            count(Tier::Platform),
            count(Tier::Application),
            count(Tier::Baseline),
        ],
        rules: c
            .rules
            .into_iter()
            .map(|r| RuleHits {
                id: r.id,
                tier: r.tier.name().to_owned(),
                action: r.action.name().to_owned(),
                hits: r.hits,
            })
            .collect(),
        drops_by_tier: TierDrops {
            platform: c.drops_by_tier[0],
            application: c.drops_by_tier[1],
            baseline: c.drops_by_tier[2],
            default: c.drops_by_tier[3],
        },
        totals: c.totals,
        conntrack: c.conntrack,
        conntrack_bytes: node.conntrack_bytes() as u64,
        conntrack_capacity: node.conntrack_capacity() as u64,
        limits: node.limit_counters(),
    })
}

/// One peer in a snapshot.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct PeerSnapshot {
    /// Name from its certificate (or the config).
    pub name: String,
    /// Noise public key (base64).
    pub public_key: String,
    /// Underlay endpoint.
    pub endpoint: Option<String>,
    /// Overlay prefixes.
    pub addresses: Vec<String>,
    /// Seconds since the last completed handshake.
    pub last_handshake_secs_ago: Option<u64>,
    /// Whether a session is up.
    pub established: bool,
    /// Where the handshake stands: `up`, `idle`, `connecting` (initiations out, not yet
    /// unanswered long), or `no answer` (at least `UNANSWERED_AFTER` initiations unanswered).
    pub state: String,
    /// Seconds since our current handshake attempt began, while one runs.
    pub handshaking_for_secs: Option<u64>,
    /// Initiations sent in the current attempt.
    pub handshake_attempts: u32,
    /// Inner bytes received.
    pub rx_bytes: u64,
    /// Inner bytes sent.
    pub tx_bytes: u64,
    /// Packets received.
    pub rx_packets: u64,
    /// Packets sent.
    pub tx_packets: u64,
    /// Handshakes completed with it.
    pub handshakes: u64,
    /// Packets from it dropped for a spoofed inner source.
    pub spoofed: u64,
    /// Datagrams from it the fairness stage dropped before decryption (its excess over a fair
    /// share while this member was overloaded).
    pub fair_dropped: u64,
    /// Their bytes.
    pub fair_dropped_bytes: u64,
    /// Inner packets to it the fairness stage dropped before encryption (its excess over a fair
    /// share while this member's inner side was backlogged).
    pub fair_tx_dropped: u64,
}

/// Standard base64 of `k` (keys in logs and snapshots).
pub(crate) fn b64(k: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(k)
}

/// Builds a driver's snapshots: the labels fixed at start, the identity for expiry reports, and
/// when each certificate was last warned about.
pub(crate) struct Publisher {
    network: String,
    member: String,
    listen: String,
    device: String,
    addresses: Vec<String>,
    started: Instant,
    peer_names: HashMap<[u8; 32], String>,
    identity: Option<Identity>,
    expiry_warned: HashMap<String, Instant>,
}

/// What the driver adds to a snapshot besides the node's state.
pub(crate) struct DriverFigures {
    /// Driver events by name (non-zero only).
    pub(crate) events: HashMap<String, u64>,
    /// Microseconds spent busy polling.
    pub(crate) busy_poll_us: u64,
    /// Fairness drops by peer key: (datagrams, bytes), received from it and sent to it.
    pub(crate) fair: HashMap<[u8; 32], (u64, u64)>,
    pub(crate) fair_tx: HashMap<[u8; 32], (u64, u64)>,
}

impl Publisher {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        network: String,
        listen: String,
        device: String,
        addresses: Vec<String>,
        started: Instant,
        peer_names: HashMap<[u8; 32], String>,
        identity: Option<Identity>,
    ) -> Self {
        let member = identity
            .as_ref()
            .map(|i| i.certificate.name().to_owned())
            .unwrap_or_default();
        Self {
            network,
            member,
            listen,
            device,
            addresses,
            started,
            peer_names,
            identity,
            expiry_warned: HashMap::new(),
        }
    }

    /// The network's name.
    pub(crate) fn network(&self) -> &str {
        &self.network
    }

    /// Our member name (empty without an identity).
    pub(crate) fn member(&self) -> &str {
        &self.member
    }

    /// The identity, if the driver has one.
    pub(crate) fn identity(&self) -> Option<&Identity> {
        self.identity.as_ref()
    }

    /// The name to show for a peer: its verified name, else its configured one, else the start
    /// of its key.
    pub(crate) fn peer_name(&self, p: &PeerStatus) -> String {
        self.name_for(&p.static_public, p.name.as_deref())
    }

    /// The configured names of peers, by static public key.
    pub(crate) fn peer_names(&self) -> &HashMap<[u8; 32], String> {
        &self.peer_names
    }

    /// Set (or, with `None`, forget) the configured name of the peer holding `key`.
    pub(crate) fn set_peer_name(&mut self, key: &[u8; 32], name: Option<String>) {
        match name {
            Some(n) => {
                self.peer_names.insert(*key, n);
            }
            None => {
                self.peer_names.remove(key);
            }
        }
    }

    /// A peer's name: its verified name, else the configured one, else its key's first bytes.
    pub(crate) fn name_for(&self, key: &[u8; 32], verified: Option<&str>) -> String {
        verified
            .map(str::to_owned)
            .or_else(|| self.peer_names.get(key).cloned())
            .unwrap_or_else(|| b64(&key[..8]))
    }

    /// The routing entries of `node` with names for its peers.
    fn gateway_routes(&self, node: &Node, now: Instant) -> Vec<GatewayRouteSnapshot> {
        let label = |id| {
            node.peer_label(id)
                .map(|(key, verified)| self.name_for(&key, verified))
                .unwrap_or_default()
        };
        node.gateway_routes()
            .into_iter()
            .map(|r| GatewayRouteSnapshot {
                id: r.id,
                prefix: r.prefix.to_string(),
                via: r.via,
                candidates: r
                    .candidates
                    .iter()
                    .map(|c| GatewayCandidateSnapshot {
                        name: label(c.peer),
                        health: c.health.name().to_owned(),
                        for_secs: match c.health {
                            GatewayHealth::Up => None,
                            GatewayHealth::Down { since } | GatewayHealth::Recovering { since } => {
                                Some(now.saturating_duration_since(since).as_secs())
                            }
                        },
                    })
                    .collect(),
                active: r.active.map(label),
                failovers: r.failovers,
                failbacks: r.failbacks,
            })
            .collect()
    }

    /// The snapshot of `node` at `now` (`unix`: Unix seconds), warning (at most hourly per
    /// certificate) about certificates that need attention.
    pub(crate) fn snapshot(
        &mut self,
        node: &Node,
        now: Instant,
        unix: u64,
        figures: DriverFigures,
    ) -> NetworkSnapshot {
        let s = node.stats();
        let expiry = self.expiry(now, unix);
        let peers = node
            .peer_status()
            .iter()
            .map(|p| PeerSnapshot {
                name: self.peer_name(p),
                public_key: b64(&p.static_public),
                endpoint: p.endpoint.map(|e| e.to_string()),
                addresses: p.addresses.iter().map(|a| a.to_string()).collect(),
                last_handshake_secs_ago: p
                    .last_handshake
                    .map(|t| now.saturating_duration_since(t).as_secs()),
                established: p.established,
                state: match p.phase {
                    HandshakePhase::Established => "up",
                    HandshakePhase::Idle => "idle",
                    HandshakePhase::Initiating { attempts, .. } if attempts > UNANSWERED_AFTER => {
                        "no answer"
                    }
                    HandshakePhase::Initiating { .. } => "connecting",
                }
                .to_owned(),
                handshaking_for_secs: match p.phase {
                    HandshakePhase::Initiating { since, .. } => {
                        Some(now.saturating_duration_since(since).as_secs())
                    }
                    _ => None,
                },
                handshake_attempts: match p.phase {
                    HandshakePhase::Initiating { attempts, .. } => attempts,
                    _ => 0,
                },
                rx_bytes: p.counters.rx_bytes,
                tx_bytes: p.counters.tx_bytes,
                rx_packets: p.counters.rx_packets,
                tx_packets: p.counters.tx_packets,
                handshakes: p.counters.handshakes,
                spoofed: p.counters.spoofed,
                fair_dropped: figures.fair.get(&p.static_public).map_or(0, |f| f.0),
                fair_dropped_bytes: figures.fair.get(&p.static_public).map_or(0, |f| f.1),
                fair_tx_dropped: figures.fair_tx.get(&p.static_public).map_or(0, |f| f.0),
            })
            .collect();
        NetworkSnapshot {
            network: self.network.clone(),
            member: self.member.clone(),
            public_key: b64(&node.public_key()),
            listen: self.listen.clone(),
            cipher: node.cipher().to_string(),
            device: self.device.clone(),
            addresses: self.addresses.clone(),
            uptime_secs: now.saturating_duration_since(self.started).as_secs(),
            tx_packets: s.tx_packets,
            tx_bytes: s.tx_bytes,
            rx_packets: s.rx_packets,
            rx_bytes: s.rx_bytes,
            handshakes_initiated: s.handshakes_initiated,
            handshakes_completed: s.handshakes_completed,
            cookies_sent: s.cookies_sent,
            drops: s
                .nonzero_drops()
                .map(|(r, n)| (r.as_str().to_owned(), n))
                .collect(),
            driver: figures.events,
            peers,
            expiry,
            busy_poll_us: figures.busy_poll_us,
            policy: policy_snapshot(node),
            gateway_routes: self.gateway_routes(node, now),
            gateways: {
                let g = node.gateway_counters();
                GatewayCountersSnapshot {
                    probes: g.probes,
                    downs: g.downs,
                    failovers: g.failovers,
                    failbacks: g.failbacks,
                }
            },
            mss_clamped: s.mss_clamped,
            priority_sent: s.priority_sent,
            priority_received: s.priority_received,
            priority_unconfirmed: s.priority_unconfirmed,
        }
    }

    /// Expiry of our certificate and the CAs: (subject, seconds left).
    fn expiry(&mut self, now: Instant, unix: u64) -> Vec<(String, i64)> {
        let Some(identity) = &self.identity else {
            return Vec::new();
        };
        let cas = identity.verifier.store().cas().to_vec();
        expiry_report(
            Some(&identity.certificate),
            &cas,
            unix,
            EXPIRY_HORIZON.as_secs(),
        )
        .into_iter()
        .map(|n| {
            let subject = match &n.subject {
                ExpirySubject::Member { name, .. } => format!("member:{name}"),
                ExpirySubject::Ca { name, .. } => format!("ca:{name}"),
            };
            // Warn when a certificate needs attention, at most once an hour per certificate.
            let due = self
                .expiry_warned
                .get(&subject)
                .is_none_or(|t| now.saturating_duration_since(*t) >= EXPIRY_WARN_EVERY);
            if n.needs_attention() && due {
                tracing::warn!(%subject, seconds_left = n.seconds_left, state = ?n.state, "certificate needs attention");
                self.expiry_warned.insert(subject.clone(), now);
            }
            (subject, i64::try_from(n.seconds_left).unwrap_or(i64::MAX))
        })
        .collect()
    }
}
