//! [`Exposure`]: binds the listeners of one [`ExposeSpec`] and runs them until dropped.

use std::io;
use std::sync::Arc;

use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinSet;

use super::state::{Dialer, ExposeSpec, ExposureSnapshot, Shared};
use super::{tcp, udp};
use crate::expose::PrefixSet;
use crate::io::DriverHandle;

/// A running exposure. Its listeners stop when it is dropped.
pub struct Exposure {
    shared: Arc<Shared>,
    tasks: JoinSet<()>,
}

impl std::fmt::Debug for Exposure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exposure")
            .field("name", &self.shared.spec.name)
            .field("listen", &self.shared.spec.listen)
            .finish_non_exhaustive()
    }
}

impl Exposure {
    /// Bind `spec`'s listeners (on the current tokio runtime) and start serving. `driver`, the
    /// network's driver, gives the targets' health (without it every target counts as down, and
    /// the least loaded is chosen).
    ///
    /// # Errors
    /// A listen address cannot be bound (in use, not local, no permission).
    pub async fn start(
        spec: ExposeSpec,
        dialer: Dialer,
        driver: Option<DriverHandle>,
    ) -> io::Result<Self> {
        let tcp_listener = if spec.tcp {
            Some(TcpListener::bind(spec.listen).await.map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("exposure {}: tcp {}: {e}", spec.name, spec.listen),
                )
            })?)
        } else {
            None
        };
        let udp_socket = if spec.udp {
            Some(UdpSocket::bind(spec.listen).await.map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("exposure {}: udp {}: {e}", spec.name, spec.listen),
                )
            })?)
        } else {
            None
        };
        let shared = Arc::new(Shared::new(spec, dialer, driver));
        let mut tasks = JoinSet::new();
        if let Some(l) = tcp_listener {
            tasks.spawn(tcp::serve(shared.clone(), l));
        }
        if let Some(s) = udp_socket {
            tasks.spawn(udp::serve(shared.clone(), s));
        }
        Ok(Self { shared, tasks })
    }

    /// The exposure's name.
    pub fn name(&self) -> &str {
        &self.shared.spec.name
    }

    /// Its counters, targets and lists now.
    pub fn snapshot(&self) -> ExposureSnapshot {
        self.shared.snapshot()
    }

    /// A view for other threads (status, metrics): snapshots only; the listeners stay with the
    /// [`Exposure`].
    pub fn view(&self) -> ExposureView {
        ExposureView(self.shared.clone())
    }

    /// Replace the block-lists (a reload): new connections and UDP datagrams are checked against
    /// them at once; open TCP connections are left alone.
    pub fn set_block_lists(&self, lists: Vec<(String, Arc<PrefixSet>)>) {
        self.shared.set_block_lists(lists);
    }

    /// Stop the listeners (connections already open run to their end).
    pub fn stop(mut self) {
        self.tasks.abort_all();
    }
}

/// A read-only view of a running [`Exposure`] (cheap to clone, usable from any thread).
#[derive(Clone)]
pub struct ExposureView(Arc<Shared>);

impl ExposureView {
    /// The exposure's counters, targets and lists now.
    pub fn snapshot(&self) -> ExposureSnapshot {
        self.0.snapshot()
    }
}

impl std::fmt::Debug for ExposureView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ExposureView")
            .field(&self.0.spec.name)
            .finish()
    }
}
