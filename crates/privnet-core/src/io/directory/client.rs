//! The etcd side of the directory: one task per network that registers this member's record
//! under a lease it keeps alive, reads and watches the network's prefix through the sans-IO
//! [`WatchState`], turns record changes into peer changes ([`PeerSet`]) sent to the driver as
//! typed [`Reload`]s, takes signed bundles ([`BundleSlot`]) — revocation lists applied to the
//! driver's trust store here, policies handed to the embedder — and keeps the on-disk cache.
//!
//! When etcd is unreachable the driver keeps the peers it has; the task retries with
//! exponential backoff (0.5 s doubling to 10 s) and logs each state change once (warn when lost,
//! info when back). A watch resumes from the last applied revision; a compacted one resyncs.
//! [`DirectoryClient::stop`] revokes the lease, so the record disappears at once; a member that
//! dies disappears when its lease expires.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    Client, ConnectOptions, EventType, GetOptions, PutOptions, WatchOptions, WatchResponse,
};
use tokio::sync::{mpsc, oneshot, watch};
use zeroize::Zeroizing;

use super::cache;
use super::status::{DirectoryMember, DirectoryStatus};
use crate::directory::{
    key_from_raw, BundleSlot, KeyChange, KeyValue, Layout, PeerChange, PeerSet, Skip, Step,
    WatchEvent, WatchState,
};
use crate::identity::{BundleKind, RevocationList, TrustStore, VerifiedBundle};
use crate::io::clock::Clock;
use crate::io::{DriverHandle, Reload};
use crate::PeerConfig;

/// First retry delay after a failure; doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(500);
/// Longest retry delay.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Longest wait for one etcd request (not the watch stream).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// What the directory client of one network needs.
#[derive(Clone, Debug)]
pub struct DirectoryConfig {
    /// etcd endpoints (`http://HOST:PORT`).
    pub endpoints: Vec<String>,
    /// The network's key layout.
    pub layout: Layout,
    /// This member's name (its record's key).
    pub name: String,
    /// This member's encoded record ([`crate::directory::MemberRecord::to_bytes`]).
    pub record: Vec<u8>,
    /// The lease TTL: a member that dies disappears this long after its last keepalive.
    pub lease_ttl: Duration,
    /// etcd user and password (etcd's own authentication).
    pub credentials: Option<(String, Zeroizing<String>)>,
    /// The on-disk cache file.
    pub cache: Option<std::path::PathBuf>,
    /// The trust store records and bundles are verified against (the configured CAs and
    /// revocation list; revocation bundles add to it).
    pub trust: TrustStore,
    /// This member's Noise key (its own record is not a peer).
    pub own_key: [u8; 32],
    /// Noise keys of statically configured peers (the static entry wins).
    pub reserved: Vec<[u8; 32]>,
}

/// A running directory client.
#[derive(Debug)]
pub struct DirectoryClient {
    status: watch::Receiver<Arc<DirectoryStatus>>,
    trust: watch::Sender<TrustStore>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl DirectoryClient {
    /// Start the client of one network on the current tokio runtime, feeding `driver`. Policy
    /// bundles that verify come out of the returned receiver (the embedder compiles and installs
    /// them; a receiver that is dropped just ignores them).
    pub fn start(
        cfg: DirectoryConfig,
        driver: DriverHandle,
    ) -> (Self, mpsc::Receiver<VerifiedBundle>) {
        let (status_tx, status_rx) = watch::channel(Arc::new(DirectoryStatus {
            endpoints: cfg.endpoints.clone(),
            prefix: cfg.layout.watch_prefix(),
            ..DirectoryStatus::default()
        }));
        let (policy_tx, policy_rx) = mpsc::channel(4);
        let (stop_tx, stop_rx) = oneshot::channel();
        let (trust_tx, trust_rx) = watch::channel(cfg.trust.clone());
        let task = Task {
            peers: PeerSet::new(&cfg.layout.members(), cfg.own_key, cfg.reserved.clone()),
            base_trust: cfg.trust.clone(),
            trust: cfg.trust.clone(),
            cfg,
            driver,
            state: WatchState::new(),
            policy: BundleSlot::new(BundleKind::Policy, 0),
            revocations: BundleSlot::new(BundleKind::Revocations, 0),
            directory_revoked: RevocationList::new(),
            status: status_tx,
            policy_tx,
            shown: DirectoryStatus::default(),
        };
        let task = tokio::spawn(task.run(stop_rx, trust_rx));
        (
            Self {
                status: status_rx,
                trust: trust_tx,
                stop: Some(stop_tx),
                task,
            },
            policy_rx,
        )
    }

    /// Replace the configured trust store (a reload re-read the CA and revocation files): every
    /// record is checked again against it, plus the directory's revocations, and bundles are
    /// verified against it from now on. Members whose records now verify (a CA added for a
    /// rollover) are added as peers; members no longer accepted are removed. The driver's own
    /// trust store is the caller's to replace ([`super::super::Reload::trust`]).
    pub fn set_trust(&self, trust: TrustStore) {
        self.trust.send_replace(trust);
    }

    /// The latest status.
    pub fn status(&self) -> Arc<DirectoryStatus> {
        self.status.borrow().clone()
    }

    /// A receiver of the status (for status servers on other threads).
    pub fn status_receiver(&self) -> watch::Receiver<Arc<DirectoryStatus>> {
        self.status.clone()
    }

    /// Stop: revoke the lease (the record disappears at once, if etcd is reachable) and end the
    /// task. The driver keeps its peers.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ =
            tokio::time::timeout(REQUEST_TIMEOUT + Duration::from_secs(1), &mut self.task).await;
        self.task.abort();
    }
}

impl Drop for DirectoryClient {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Why a session with etcd ended.
enum End {
    /// Asked to stop.
    Stopped,
    /// Lost or failed; retry after a backoff.
    Failed(String),
}

struct Task {
    cfg: DirectoryConfig,
    driver: DriverHandle,
    state: WatchState,
    peers: PeerSet,
    /// The configured trust store; revocation bundles add to its list.
    base_trust: TrustStore,
    /// The trust store in force: `base_trust` with `directory_revoked` added.
    trust: TrustStore,
    policy: BundleSlot,
    revocations: BundleSlot,
    /// The list of the last revocation bundle taken.
    directory_revoked: RevocationList,
    status: watch::Sender<Arc<DirectoryStatus>>,
    policy_tx: mpsc::Sender<VerifiedBundle>,
    shown: DirectoryStatus,
}

fn unix_now() -> u64 {
    Clock::unix().as_secs()
}

/// The next configured trust store ([`DirectoryClient::set_trust`]; pending forever once the
/// client is gone).
async fn next_trust(rx: &mut watch::Receiver<TrustStore>) -> TrustStore {
    if rx.changed().await.is_ok() {
        return rx.borrow_and_update().clone();
    }
    std::future::pending().await
}

async fn timed<T>(
    what: &str,
    fut: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, String> {
    match tokio::time::timeout(REQUEST_TIMEOUT, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Err(_) => Err(format!(
            "{what}: no answer within {} s",
            REQUEST_TIMEOUT.as_secs()
        )),
    }
}

impl Task {
    async fn run(
        mut self,
        mut stop: oneshot::Receiver<()>,
        mut trust_rx: watch::Receiver<TrustStore>,
    ) {
        self.shown.endpoints.clone_from(&self.cfg.endpoints);
        self.shown.prefix = self.cfg.layout.watch_prefix();
        self.restore_cache().await;
        let mut backoff = MIN_BACKOFF;
        let mut was_connected = true;
        loop {
            match self.session(&mut stop, &mut trust_rx).await {
                End::Stopped => return,
                End::Failed(e) => {
                    self.shown.connected = false;
                    self.shown.registered = false;
                    self.shown.reconnects += 1;
                    self.shown.last_error = Some(e.clone());
                    self.publish();
                    if was_connected || self.shown.reconnects == 1 {
                        tracing::warn!(network = %self.driver_name(), endpoints = %self.cfg.endpoints.join(","),
                            "directory unreachable: {e}; the data plane keeps the {} known peer(s); retrying with backoff",
                            self.peers.len());
                    } else {
                        tracing::debug!("directory still unreachable: {e}");
                    }
                    was_connected = false;
                }
            }
            let sleep = tokio::time::sleep(backoff);
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    _ = &mut stop => return,
                    () = &mut sleep => break,
                    t = next_trust(&mut trust_rx) => self.trust_changed(t).await,
                }
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
            if self.shown.connected {
                backoff = MIN_BACKOFF;
            }
        }
    }

    fn driver_name(&self) -> String {
        self.driver.snapshot().network.clone()
    }

    /// Apply the cached key set, if there is one.
    async fn restore_cache(&mut self) {
        let Some(path) = self.cfg.cache.clone() else {
            return;
        };
        match tokio::task::spawn_blocking(move || cache::read(&path)).await {
            Ok(Ok(Some((revision, kvs)))) => {
                let n = kvs.len();
                let changes = self.state.restore(revision, kvs);
                self.shown.from_cache = true;
                self.apply(changes).await;
                tracing::info!(
                    revision,
                    keys = n,
                    members = self.peers.len(),
                    "directory: started from the on-disk cache (until etcd answers)"
                );
            }
            Ok(Ok(None)) => {}
            Ok(Err(e)) => tracing::warn!(cache = ?self.cfg.cache,
                "directory cache not used: {e}; starting without it"),
            Err(e) => tracing::warn!("directory cache not read: {e}"),
        }
    }

    /// One connection: register, (re)sync, watch until it fails or we are stopped.
    async fn session(
        &mut self,
        stop: &mut oneshot::Receiver<()>,
        trust_rx: &mut watch::Receiver<TrustStore>,
    ) -> End {
        let mut opts = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(3))
            .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2));
        if let Some((user, password)) = &self.cfg.credentials {
            opts = opts.with_user(user.clone(), password.as_str());
        }
        let mut client = match timed(
            "connect",
            Client::connect(self.cfg.endpoints.clone(), Some(opts)),
        )
        .await
        {
            Ok(c) => c,
            Err(e) => return End::Failed(e),
        };
        let ttl = i64::try_from(self.cfg.lease_ttl.as_secs().max(1)).unwrap_or(i64::MAX);
        let lease = match timed("lease grant", client.lease_grant(ttl, None)).await {
            Ok(l) => l.id(),
            Err(e) => return End::Failed(e),
        };
        let key = self.cfg.layout.member(&self.cfg.name);
        if let Err(e) = timed(
            "register",
            client.put(
                key.clone(),
                self.cfg.record.clone(),
                Some(PutOptions::new().with_lease(lease)),
            ),
        )
        .await
        {
            return End::Failed(e);
        }
        let (mut keeper, mut keepalives) =
            match timed("lease keepalive", client.lease_keep_alive(lease)).await {
                Ok(k) => k,
                Err(e) => return End::Failed(e),
            };
        tracing::info!(key = %key, lease = format!("{lease:x}"), ttl_s = ttl,
            endpoints = %self.cfg.endpoints.join(","), "directory: connected; registered this member");
        self.shown.registered = true;
        self.shown.last_error = None;
        let mut keepalive = tokio::time::interval(self.cfg.lease_ttl / 3);
        keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // Sync: a full read when needed, then a watch from the next revision.
            let from = loop {
                match self.state.next_step() {
                    Step::Watch { from } => break from,
                    Step::Resync => {
                        if let Err(e) = self.resync(&mut client).await {
                            return End::Failed(e);
                        }
                    }
                }
            };
            self.shown.connected = true;
            self.publish();
            let opts = WatchOptions::new()
                .with_prefix()
                .with_start_revision(from)
                .with_progress_notify();
            let mut stream = match timed(
                "watch",
                client.watch(self.cfg.layout.watch_prefix(), Some(opts)),
            )
            .await
            {
                Ok(s) => s,
                Err(e) => return End::Failed(e),
            };
            tracing::debug!(from, "directory: watching");
            loop {
                tokio::select! {
                    _ = &mut *stop => {
                        match timed("lease revoke", client.lease_revoke(lease)).await {
                            Ok(_) => tracing::info!(key = %key, "directory: record deleted (lease revoked)"),
                            Err(e) => tracing::warn!(key = %key,
                                "directory: record not deleted ({e}); it expires with its lease"),
                        }
                        return End::Stopped;
                    }
                    t = next_trust(trust_rx) => self.trust_changed(t).await,
                    _ = keepalive.tick() => {
                        if let Err(e) = keeper.keep_alive().await {
                            return End::Failed(format!("lease keepalive: {e}"));
                        }
                    }
                    m = keepalives.message() => match m {
                        Ok(Some(r)) if r.ttl() <= 0 => {
                            return End::Failed("the lease expired; registering again".into());
                        }
                        Ok(Some(_)) => {}
                        Ok(None) => return End::Failed("lease keepalive stream closed".into()),
                        Err(e) => return End::Failed(format!("lease keepalive: {e}")),
                    },
                    m = stream.message() => match m {
                        Ok(Some(resp)) => {
                            if resp.compact_revision() > 0 {
                                tracing::warn!(from, compacted = resp.compact_revision(),
                                    "directory: the revision to resume from was compacted; full resync");
                                self.state.compacted();
                                break;
                            }
                            if resp.canceled() {
                                return End::Failed(format!("watch cancelled: {}", resp.cancel_reason()));
                            }
                            self.on_watch(resp).await;
                        }
                        Ok(None) => return End::Failed("watch stream closed".into()),
                        Err(e) => return End::Failed(format!("watch: {e}")),
                    },
                }
            }
        }
    }

    async fn resync(&mut self, client: &mut Client) -> Result<(), String> {
        let resp = timed(
            "read",
            client.get(
                self.cfg.layout.watch_prefix(),
                Some(GetOptions::new().with_prefix()),
            ),
        )
        .await?;
        let revision = resp.header().map_or(0, |h| h.revision());
        let kvs: Vec<KeyValue> = resp
            .kvs()
            .iter()
            .map(|kv| KeyValue {
                key: key_from_raw(kv.key()),
                value: kv.value().to_vec(),
                mod_revision: kv.mod_revision(),
            })
            .collect();
        let n = kvs.len();
        let changes = self.state.apply_snapshot(revision, kvs);
        let changed = changes.len();
        self.shown.from_cache = false;
        self.apply(changes).await;
        tracing::info!(
            revision,
            keys = n,
            changed,
            members = self.peers.len(),
            "directory: full read of the network's prefix"
        );
        Ok(())
    }

    async fn on_watch(&mut self, resp: WatchResponse) {
        let events: Vec<WatchEvent> = resp
            .events()
            .iter()
            .filter_map(|ev| {
                let kv = ev.kv()?;
                // Not dropped when it is not UTF-8: its revision counts (see key_from_raw).
                let key = key_from_raw(kv.key());
                Some(match ev.event_type() {
                    EventType::Put => WatchEvent::Put(KeyValue {
                        key,
                        value: kv.value().to_vec(),
                        mod_revision: kv.mod_revision(),
                    }),
                    EventType::Delete => WatchEvent::Delete {
                        key,
                        mod_revision: kv.mod_revision(),
                    },
                })
            })
            .collect();
        let changes =
            self.state
                .on_response(resp.created(), resp.header().map(|h| h.revision()), events);
        self.apply(changes).await;
    }

    /// Apply key changes: bundles first (a revocation changes which records are valid), then
    /// records; send the peer changes to the driver in one reload.
    async fn apply(&mut self, changes: Vec<KeyChange>) {
        if changes.is_empty() {
            self.publish();
            return;
        }
        let now = unix_now();
        let mut peer_changes = Vec::new();
        let mut new_revocations = None;
        let (bundles, records): (Vec<KeyChange>, Vec<KeyChange>) =
            changes.into_iter().partition(|c| {
                let key = match c {
                    KeyChange::Set { key, .. } | KeyChange::Removed { key } => key,
                };
                self.cfg.layout.bundle_kind(key).is_some()
            });
        for change in bundles {
            let KeyChange::Set { key, value } = change else {
                // A deleted bundle changes nothing: the member keeps the one it holds.
                continue;
            };
            let Some(kind) = self.cfg.layout.bundle_kind(&key) else {
                continue;
            };
            if let Some(list) = self.offer_bundle(kind, &key, &value, now) {
                new_revocations = Some(list);
            }
        }
        if let Some(list) = &new_revocations {
            self.directory_revoked.clone_from(list);
            peer_changes = self.revalidate(now);
        }
        for change in records {
            let (mut c, skip) = self.peers.apply(change, &self.trust, now);
            peer_changes.append(&mut c);
            match skip {
                Some((_, Skip::Own)) | None => {}
                Some((key, skip)) => {
                    tracing::warn!(key = %key, reason = skip.label(), "directory: record skipped");
                }
            }
        }
        self.send(peer_changes, new_revocations).await;
        self.shown.last_update = Some(std::time::Instant::now());
        self.publish();
        self.write_cache().await;
    }

    /// A new configured trust store: check every record again, send the peer changes.
    async fn trust_changed(&mut self, trust: TrustStore) {
        if trust == self.base_trust {
            return;
        }
        self.base_trust = trust;
        let changes = self.revalidate(unix_now());
        tracing::info!(
            network = %self.driver_name(),
            changes = changes.len(),
            members = self.peers.len(),
            "directory: trust store replaced (reload); every record checked again"
        );
        self.send(changes, None).await;
        self.publish();
    }

    /// Rebuild the trust store in force and re-check every record against it.
    fn revalidate(&mut self, now: u64) -> Vec<PeerChange> {
        self.trust = self
            .base_trust
            .clone()
            .with_more_revocations(&self.directory_revoked);
        let (changes, skips) = self.peers.revalidate(&self.trust, now);
        for (key, skip) in skips {
            tracing::warn!(key = %key, reason = skip.label(),
                "directory: record no longer accepted; peer removed");
        }
        changes
    }

    /// Send peer changes (and a new revocation list) to the driver in one reload.
    async fn send(
        &mut self,
        peer_changes: Vec<PeerChange>,
        directory_revocations: Option<RevocationList>,
    ) {
        let mut reload = Reload {
            directory_revocations,
            ..Reload::default()
        };
        for change in peer_changes {
            match change {
                PeerChange::Add(p) | PeerChange::Update(p) => {
                    tracing::info!(peer = %p.name, endpoint = ?p.endpoint,
                        addresses = ?p.allowed_ips, "directory: peer added or updated");
                    let mut pc = PeerConfig::new(p.public_key);
                    pc.endpoint = p.endpoint;
                    pc.allowed_ips = p.allowed_ips;
                    pc.persistent_keepalive = p.persistent_keepalive;
                    reload.remove_peers.retain(|k| *k != p.public_key);
                    reload.add_peers.push((pc, p.name));
                }
                PeerChange::Remove(p) => {
                    tracing::info!(peer = %p.name, "directory: peer removed");
                    reload
                        .add_peers
                        .retain(|(pc, _)| pc.static_public != p.public_key);
                    reload.remove_peers.push(p.public_key);
                }
            }
        }
        if reload.directory_revocations.is_some()
            || !reload.add_peers.is_empty()
            || !reload.remove_peers.is_empty()
        {
            if let Err(e) = self.driver.reload(reload).await {
                tracing::error!("directory: the driver refused the change: {e}");
            }
        }
    }

    /// Offer a bundle; a revocation bundle that is taken returns its list (the driver adds it to
    /// the configured trust store's, and keeps it across trust reloads).
    fn offer_bundle(
        &mut self,
        kind: BundleKind,
        key: &str,
        value: &[u8],
        now: u64,
    ) -> Option<RevocationList> {
        let slot = match kind {
            BundleKind::Policy => &mut self.policy,
            BundleKind::Revocations => &mut self.revocations,
        };
        let held = slot.held();
        let name = match kind {
            BundleKind::Policy => "policy",
            BundleKind::Revocations => "revocations",
        };
        let verified = match slot.offer(value, &self.trust, now) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(key = %key, held,
                    "directory: {name} bundle refused, keeping version {held}: {e}");
                *self
                    .shown
                    .bundles_refused
                    .entry(format!("{name}/{}", crate::directory::refusal_label(&e)))
                    .or_default() += 1;
                return None;
            }
        };
        tracing::info!(key = %key, version = verified.version, signed_by = %verified.signed_by,
            previous = held, "directory: {name} bundle accepted");
        self.shown.bundles_accepted += 1;
        match kind {
            BundleKind::Policy => {
                self.shown.policy_version = verified.version;
                if self.policy_tx.try_send(verified).is_err() {
                    tracing::warn!("directory: a policy bundle arrived while the previous one waits; it follows");
                }
                None
            }
            BundleKind::Revocations => {
                self.shown.revocations_version = verified.version;
                let text = String::from_utf8_lossy(&verified.payload);
                match RevocationList::parse(&text) {
                    Ok(list) => {
                        tracing::info!(
                            revoked = list.len(),
                            "directory: revocation list applied to the trust store"
                        );
                        Some(list)
                    }
                    Err(e) => {
                        tracing::warn!(key = %key, "directory: signed revocation list does not parse: {e}");
                        None
                    }
                }
            }
        }
    }

    async fn write_cache(&mut self) {
        let Some(path) = self.cfg.cache.clone() else {
            return;
        };
        let revision = self.state.revision();
        let kvs: Vec<KeyValue> = self.state.entries().collect();
        match tokio::task::spawn_blocking(move || cache::write(&path, revision, kvs)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(cache = ?self.cfg.cache, "directory cache not written: {e}")
            }
            Err(e) => tracing::warn!("directory cache not written: {e}"),
        }
    }

    fn publish(&mut self) {
        self.shown.revision = self.state.revision();
        self.shown.watch = self.state.counters();
        self.shown.skipped = self.peers.skipped().clone();
        self.shown.members = self
            .peers
            .peers()
            .map(|p| DirectoryMember {
                name: p.name.clone(),
                addresses: p.allowed_ips.iter().map(ToString::to_string).collect(),
                endpoints: p.endpoints.iter().map(ToString::to_string).collect(),
                capabilities: p.capabilities.clone(),
            })
            .collect();
        self.status.send_replace(Arc::new(self.shown.clone()));
    }
}
