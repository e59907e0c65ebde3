//! The connection tracker's public types: configuration, ids, hits, refusals, snapshots.

use std::time::Duration;

use super::tcp::{Side, TcpState, TcpTimeouts};
use crate::policy::flow::Flow;

/// Sizing and timeouts of a [`Conntrack`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConntrackConfig {
    /// Flows in total (memory: 64 bytes per flow for the slab plus 16 for the index; reserved at
    /// construction). Default 262,144 (about 21 MB).
    pub max_flows: usize,
    /// Flows per peer. Default 16,384: one member cannot take more than 1/16 of the default table.
    pub max_flows_per_peer: usize,
    /// New flows per second per peer (sustained). Default 1,000.
    pub new_flows_per_sec: u32,
    /// New flows per peer in a burst. Default 2,000.
    pub new_flow_burst: u32,
    /// TCP timeouts (Linux's defaults).
    pub tcp: TcpTimeouts,
    /// UDP before a reply: 30 s (Linux `nf_conntrack_udp_timeout`).
    pub udp_unreplied: Duration,
    /// UDP after a reply: 120 s (Linux `nf_conntrack_udp_timeout_stream`).
    pub udp_assured: Duration,
    /// ICMP echo: 30 s (Linux `nf_conntrack_icmp_timeout`).
    pub icmp: Duration,
    /// Other protocols (and SCTP): 600 s (Linux `nf_conntrack_generic_timeout`).
    pub other: Duration,
    /// How long an allowed first fragment lets later fragments through: 30 s (Linux
    /// `ipfrag_time`).
    pub fragment_timeout: Duration,
    /// Datagrams remembered for their later fragments (rounded up to a power of two). Default 1,024.
    pub fragment_slots: usize,
    /// Interval of the expiry sweep. Default 1 s.
    pub sweep_interval: Duration,
    /// Entries visited per sweep at least (and at least a tenth of the table, so every entry is
    /// visited within ten intervals). Default 4,096.
    pub sweep_batch: usize,
}

impl Default for ConntrackConfig {
    fn default() -> Self {
        Self {
            max_flows: 262_144,
            max_flows_per_peer: 16_384,
            new_flows_per_sec: 1_000,
            new_flow_burst: 2_000,
            tcp: TcpTimeouts::default(),
            udp_unreplied: Duration::from_secs(30),
            udp_assured: Duration::from_secs(120),
            icmp: Duration::from_secs(30),
            other: Duration::from_secs(600),
            fragment_timeout: Duration::from_secs(30),
            fragment_slots: 1024,
            sweep_interval: Duration::from_secs(1),
            sweep_batch: 4096,
        }
    }
}

/// A tracked flow, by slot (with a check value so that a stale id does not name a reused slot).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowId {
    pub(crate) index: u32,
    pub(crate) check: u32,
}

/// What state a tracked flow is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FlowState {
    /// TCP.
    Tcp(TcpState),
    /// UDP (see `assured`).
    Udp,
    /// ICMP echo.
    IcmpEcho,
    /// Another protocol.
    Other,
}

/// A packet of a tracked flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hit {
    /// The flow.
    pub id: FlowId,
    /// Which way the packet goes.
    pub side: Side,
    /// The epoch stored with the flow.
    pub epoch: u32,
    /// The rule stored with the flow.
    pub rule: u32,
    /// The tag stored with the flow.
    pub tag: u8,
    /// The epoch of the flow's peer (see [`Conntrack::set_peer_epoch`]).
    pub peer_epoch: u32,
}

/// What is stored with a new flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FlowMeta {
    /// An epoch (the filter's policy/identity generation when the flow was allowed).
    pub epoch: u32,
    /// The rule that allowed it.
    pub rule: u32,
    /// 3 bits of caller data.
    pub tag: u8,
}

/// Why a new flow was not tracked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Refused {
    /// The packet does not open a flow (a TCP RST, an ICMP message other than an echo request,
    /// the `unknown` class, a port-carrying protocol without ports).
    NotTrackable,
    /// The table holds `max_flows` flows.
    TableFull,
    /// The peer holds `max_flows_per_peer` flows.
    PeerQuota,
    /// The peer opened flows faster than `new_flows_per_sec` allows.
    NewFlowRate,
}

/// A tracked flow, as first seen (initiator → responder).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrackedFlow<P> {
    /// Its id.
    pub id: FlowId,
    /// The peer it belongs to.
    pub peer: P,
    /// The flow in the initiator's direction (TCP flags: SYN; ICMP: an echo request).
    pub flow: Flow,
    /// Its state.
    pub state: FlowState,
    /// Whether a reply was seen.
    pub assured: bool,
    /// Stored epoch.
    pub epoch: u32,
    /// Stored rule.
    pub rule: u32,
    /// Stored tag.
    pub tag: u8,
    /// Time left before it expires.
    pub expires_in: Duration,
}

/// Counters (monotonic, except `flows`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ConntrackStats {
    /// Flows tracked now.
    pub flows: u64,
    /// Flows created.
    pub created: u64,
    /// Flows that expired.
    pub expired: u64,
    /// Flows removed by the caller (cut on reload, peer gone).
    pub removed: u64,
    /// New flows refused: table full.
    pub refused_table_full: u64,
    /// New flows refused: peer quota.
    pub refused_peer_quota: u64,
    /// New flows refused: peer's new-flow rate.
    pub refused_rate: u64,
    /// First fragments remembered.
    pub fragments_remembered: u64,
    /// Remembered datagrams evicted by newer ones before their timeout.
    pub fragments_evicted: u64,
}
