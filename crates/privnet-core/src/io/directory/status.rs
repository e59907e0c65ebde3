//! What a running directory client shows: connection, revision, last update, members and the
//! counters of skipped records and refused bundles (for `privnet status` and `/metrics`).

use std::collections::BTreeMap;
use std::time::Instant;

use crate::directory::WatchCounters;

/// The directory client's state, published on every change.
#[derive(Clone, Debug, Default)]
pub struct DirectoryStatus {
    /// The etcd endpoints.
    pub endpoints: Vec<String>,
    /// The key prefix of the network.
    pub prefix: String,
    /// Connected to etcd, registered and watching.
    pub connected: bool,
    /// Our record is registered under a live lease.
    pub registered: bool,
    /// The revision every change is applied up to.
    pub revision: i64,
    /// When the last change from the directory (or the cache) was applied.
    pub last_update: Option<Instant>,
    /// Members learned from the directory (valid records, ourselves excluded).
    pub members: Vec<DirectoryMember>,
    /// Skipped records by reason.
    pub skipped: BTreeMap<&'static str, u64>,
    /// The watch state machine's counters.
    pub watch: WatchCounters,
    /// Connections lost (or attempts failed) since the start.
    pub reconnects: u64,
    /// The last connection error, while not connected.
    pub last_error: Option<String>,
    /// The policy bundle version held (0: none).
    pub policy_version: u64,
    /// The revocation bundle version held (0: none).
    pub revocations_version: u64,
    /// Bundles accepted.
    pub bundles_accepted: u64,
    /// Refused bundles by reason (`policy/stale_version`, …).
    pub bundles_refused: BTreeMap<String, u64>,
    /// Started from the on-disk cache (and not yet resynced with etcd).
    pub from_cache: bool,
}

/// One member as the directory describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectoryMember {
    /// Its name.
    pub name: String,
    /// Its overlay addresses.
    pub addresses: Vec<String>,
    /// Its underlay endpoints.
    pub endpoints: Vec<String>,
    /// Its capabilities.
    pub capabilities: Vec<String>,
}
