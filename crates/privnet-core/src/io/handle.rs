//! The outside's grip on a running driver: a [`DriverHandle`] reads the latest
//! [`NetworkSnapshot`] and sends typed control messages (reload, a new access policy, a live
//! explanation, shutdown) over a bounded channel that the driver's loop serves between batches.
//! Nothing here is on the packet path.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use zeroize::Zeroizing;

use super::config::validate_windows;
use super::error::ControlError;
use super::snapshot::NetworkSnapshot;
use crate::identity::{RevocationList, TrustStore};
use crate::names::NameTable;
use crate::policy::{CompiledPolicy, Direction, Flow, LiveExplanation};
use crate::{PeerConfig, PeerId};

/// Control messages waiting for the driver at most (senders wait when it is full).
const CONTROL_QUEUE: usize = 8;

/// What a reload changes; `None` fields (and empty lists) leave things as they are. Applied in
/// this order: windows, PSKs, removed peers, added peers, trust store and revocations.
#[derive(Clone, Debug, Default)]
pub struct Reload {
    /// A new trust store (CAs and revocation list) for the driver's [`super::Identity`]
    /// verifier; every session is revalidated against it at once.
    pub trust: Option<TrustStore>,
    /// The revocations a directory's signed bundle adds to the trust store, replacing the ones
    /// the directory sent before. The driver keeps them apart from [`Self::trust`], so that a
    /// new trust store (a SIGHUP re-reading the files) does not drop them, and applies the union
    /// of both; every session is revalidated against it at once.
    pub directory_revocations: Option<RevocationList>,
    /// A new busy-poll window.
    pub busy_poll: Option<Duration>,
    /// A new batch hold.
    pub batch_hold: Option<Duration>,
    /// New network PSKs, a step of a PSK rotation ([`Node::set_psks`](crate::Node::set_psks)):
    /// sessions are kept, the next handshakes use the new keys.
    pub psks: Option<Psks>,
    /// Peers to remove, by Noise static public key: their sessions end, their routes go.
    pub remove_peers: Vec<[u8; 32]>,
    /// Peers to add, each with the name logs and snapshots show for it. A key the node already
    /// has is removed first (its sessions end) and added again with this configuration.
    pub add_peers: Vec<(PeerConfig, String)>,
}

/// The network PSKs of a [`Reload`]: the one sent with, and the ones also accepted during a
/// rotation. Wiped on drop; `Debug` shows only how many there are.
#[derive(Clone)]
pub struct Psks {
    /// The primary PSK: our initiations, their mac1 and the Noise `psk2`.
    pub primary: Zeroizing<[u8; 32]>,
    /// PSKs also accepted (an initiation is answered under the one its mac1 matched).
    pub accepted: Zeroizing<Vec<[u8; 32]>>,
}

impl std::fmt::Debug for Psks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Psks")
            .field("accepted", &self.accepted.len())
            .finish_non_exhaustive()
    }
}

/// A message from a handle to its driver.
pub(crate) enum Control {
    /// Apply `Reload` and answer how it went (boxed: a reload is rare and large).
    Reload(Box<Reload>, oneshot::Sender<Result<(), ControlError>>),
    /// Install an access policy (or none) and answer the number of tracked flows it cut.
    SetPolicy(Option<Arc<CompiledPolicy>>, oneshot::Sender<usize>),
    /// Explain a flow against the policy in force and the tracker.
    Explain(
        Box<(Flow, Direction)>,
        oneshot::Sender<Option<FlowExplanation>>,
    ),
    /// Stop the loop (after publishing a last snapshot).
    Shutdown,
}

/// What a running driver says about one flow ([`DriverHandle::explain`]): the member the routing
/// table gives for the remote address, its session, and the policy's and the tracker's view.
#[derive(Clone, Debug)]
pub struct FlowExplanation {
    /// The peer's name (as snapshots show it).
    pub peer: String,
    /// Whether a session with it is up.
    pub session: bool,
    /// The policy's explanation (as a new flow) and the tracked flow carrying the packet, if any.
    pub live: LiveExplanation<PeerId>,
    /// The policy in force (its rule ids name the steps).
    pub policy: Arc<CompiledPolicy>,
}

/// A cloneable handle on one driver: its snapshots and its control channel. Outlives the driver
/// safely: requests then fail with [`ControlError::Stopped`] and the last snapshot stays readable.
#[derive(Clone, Debug)]
pub struct DriverHandle {
    control: mpsc::Sender<Control>,
    snapshots: watch::Receiver<Arc<NetworkSnapshot>>,
    names: watch::Receiver<Arc<NameTable>>,
}

/// The driver's ends of a handle's channels.
pub(crate) struct DriverEnds {
    pub(crate) control: mpsc::Receiver<Control>,
    pub(crate) snapshots: watch::Sender<Arc<NetworkSnapshot>>,
    /// The members' names, republished whenever the peers change.
    pub(crate) names: watch::Sender<Arc<NameTable>>,
}

impl DriverHandle {
    /// A handle and the driver's ends of its channels, starting from `first`.
    pub(crate) fn channel(first: NetworkSnapshot) -> (Self, DriverEnds) {
        let (control_tx, control_rx) = mpsc::channel(CONTROL_QUEUE);
        let (snap_tx, snap_rx) = watch::channel(Arc::new(first));
        let (names_tx, names_rx) = watch::channel(Arc::new(NameTable::default()));
        (
            Self {
                control: control_tx,
                snapshots: snap_rx,
                names: names_rx,
            },
            DriverEnds {
                control: control_rx,
                snapshots: snap_tx,
                names: names_tx,
            },
        )
    }

    /// The latest snapshot (published at most once a second, and once more when the driver stops).
    pub fn snapshot(&self) -> Arc<NetworkSnapshot> {
        self.snapshots.borrow().clone()
    }

    /// The names of the members the driver knows (this member's own included), republished at
    /// once whenever its peers change (a session up or down, a peer added or removed, a
    /// trust-store reload): what the DNS responder of TUN mode answers from.
    pub fn names(&self) -> watch::Receiver<Arc<NameTable>> {
        self.names.clone()
    }

    /// Wait until a snapshot newer than the last one this handle saw is published.
    ///
    /// # Errors
    /// [`ControlError::Stopped`] once the driver is gone and no newer snapshot will come.
    pub async fn snapshot_changed(&mut self) -> Result<(), ControlError> {
        self.snapshots
            .changed()
            .await
            .map_err(|_| ControlError::Stopped)
    }

    /// Whether the driver is still running.
    pub fn is_running(&self) -> bool {
        !self.control.is_closed()
    }

    /// Apply `reload` in the driver and wait for the outcome. The windows are checked first
    /// (nothing is sent if they are out of range); then, in the driver, the windows are applied and
    /// the trust store replaced (`CertVerifier::set_store`) and every session revalidated.
    ///
    /// # Errors
    /// [`ControlError::Config`] for a window out of range, [`ControlError::NoIdentity`] or
    /// [`ControlError::TrustStore`] if the trust store was not replaced (the windows were),
    /// [`ControlError::Stopped`] if the driver is gone.
    pub async fn reload(&self, reload: Reload) -> Result<(), ControlError> {
        validate_windows(
            reload.busy_poll.unwrap_or_default(),
            reload.batch_hold.unwrap_or_default(),
        )?;
        let (tx, rx) = oneshot::channel();
        self.control
            .send(Control::Reload(Box::new(reload), tx))
            .await
            .map_err(|_| ControlError::Stopped)?;
        rx.await.map_err(|_| ControlError::Stopped)?
    }

    /// Install `policy` in the driver's node ([`Node::set_policy`](crate::Node::set_policy); `None`:
    /// members talk freely), atomically between two batches. Tracked flows it no longer allows
    /// are cut; sessions are kept. Returns the number of flows cut.
    ///
    /// # Errors
    /// [`ControlError::Stopped`] if the driver is gone.
    pub async fn set_policy(
        &self,
        policy: Option<Arc<CompiledPolicy>>,
    ) -> Result<usize, ControlError> {
        let (tx, rx) = oneshot::channel();
        self.control
            .send(Control::SetPolicy(policy, tx))
            .await
            .map_err(|_| ControlError::Stopped)?;
        rx.await.map_err(|_| ControlError::Stopped)
    }

    /// What the policy in force says about `flow` crossing this member in `direction`
    /// ([`Node::explain_flow`](crate::Node::explain_flow)), with the peer's session: `None`
    /// without a policy or when no member owns the remote address. Changes no state.
    ///
    /// # Errors
    /// [`ControlError::Stopped`] if the driver is gone.
    pub async fn explain(
        &self,
        flow: Flow,
        direction: Direction,
    ) -> Result<Option<FlowExplanation>, ControlError> {
        let (tx, rx) = oneshot::channel();
        self.control
            .send(Control::Explain(Box::new((flow, direction)), tx))
            .await
            .map_err(|_| ControlError::Stopped)?;
        rx.await.map_err(|_| ControlError::Stopped)
    }

    /// Ask the driver to stop; [`super::Driver::run`] then returns `Ok(())`. Returns once the
    /// request is queued, not when the driver has stopped (await its task for that).
    ///
    /// # Errors
    /// [`ControlError::Stopped`] if the driver is already gone.
    pub async fn shutdown(&self) -> Result<(), ControlError> {
        self.control
            .send(Control::Shutdown)
            .await
            .map_err(|_| ControlError::Stopped)
    }
}
