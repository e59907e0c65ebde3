//! What the status socket and the metrics endpoint share: their own thread, bounded connections,
//! time-bounded I/O, and a back-off on accept errors.
//!
//! - **Off the data path.** The drivers run on `privnet up`'s runtime; the servers run on a
//!   [`ServerThread`], a thread of their own with its own current-thread runtime. Rendering a
//!   snapshot, a slow client or a flood of connections costs that thread, never a driver's: the
//!   servers only read the drivers' published snapshots (a `watch`), they never wait for a driver.
//! - **Bounded.** At most [`MAX_CONNECTIONS`] connections per server are served at once; a
//!   connection beyond that is accepted and closed at once (so the kernel's backlog keeps
//!   draining) and counted. Every read is bounded by the server's read timeout and every answer by
//!   [`WRITE_TIMEOUT`], so a client that never reads cannot hold a slot for longer than that.
//! - **Accept errors** (`EMFILE`, `ENFILE`, `ENOBUFS`...) back off from
//!   [`ACCEPT_BACKOFF_MIN`] to [`ACCEPT_BACKOFF_MAX`] instead of spinning. Refusals and errors are
//!   logged at warn, at most once per [`REPORT_EVERY`] per server, with counts.
//! - **One rendering per [`BODY_MAX_AGE`]**: every client of that window gets the same rendered
//!   document, so a stream of connections does not render a snapshot each.

use std::future::Future;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

/// Connections served at once, per server.
pub const MAX_CONNECTIONS: usize = 16;
/// Longest time an answer may take to write (the client must read it by then).
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// First back-off after an accept error.
pub const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
/// Longest back-off after repeated accept errors.
pub const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Refused connections and accept errors are logged at most this often, per server.
pub const REPORT_EVERY: Duration = Duration::from_secs(10);
/// A rendered document is reused for this long.
pub const BODY_MAX_AGE: Duration = Duration::from_millis(250);

/// The servers' thread: a current-thread tokio runtime of its own, named `privnet-servers`.
/// Dropping it (or [`ServerThread::stop`]) ends every server task and joins the thread.
#[derive(Debug)]
pub struct ServerThread {
    handle: tokio::runtime::Handle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ServerThread {
    /// Start the thread and its runtime.
    ///
    /// # Errors
    /// The runtime or the thread could not be created.
    pub fn start() -> anyhow::Result<Self> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the servers' runtime")?;
        let handle = rt.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("privnet-servers".into())
            .spawn(move || {
                // Runs the spawned server tasks until told to stop (or the sender is dropped).
                let _ = rt.block_on(stopped);
            })
            .context("starting the servers' thread")?;
        Ok(Self {
            handle,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Run `task` on the servers' thread.
    pub fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.handle.spawn(task);
    }

    /// Stop every server task and join the thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the servers' thread panicked");
            }
        }
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The accept loop's bookkeeping for one server: the connection limit, the back-off, and the
/// counts behind its rate-limited log lines.
pub(crate) struct Gate {
    name: &'static str,
    limit: Arc<Semaphore>,
    backoff: Duration,
    refused: u64,
    errors: u64,
    last_error: Option<io::Error>,
    last_report: Option<Instant>,
}

impl Gate {
    pub(crate) fn new(name: &'static str) -> Self {
        Self {
            name,
            limit: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
            backoff: ACCEPT_BACKOFF_MIN,
            refused: 0,
            errors: 0,
            last_error: None,
            last_report: None,
        }
    }

    /// A connection was accepted: a slot for it, or `None` (close it) when all are taken.
    pub(crate) fn admit(&mut self) -> Option<OwnedSemaphorePermit> {
        self.backoff = ACCEPT_BACKOFF_MIN;
        let permit = self.limit.clone().try_acquire_owned().ok();
        if permit.is_none() {
            self.refused += 1;
        }
        self.report();
        permit
    }

    /// `accept` failed: wait (doubling up to the maximum) before the next try.
    pub(crate) async fn failed(&mut self, e: io::Error) {
        self.errors += 1;
        self.last_error = Some(e);
        self.report();
        tokio::time::sleep(self.backoff).await;
        self.backoff = (self.backoff * 2).min(ACCEPT_BACKOFF_MAX);
    }

    fn report(&mut self) {
        if self.refused == 0 && self.errors == 0 {
            return;
        }
        let now = Instant::now();
        if self
            .last_report
            .is_some_and(|t| now.saturating_duration_since(t) < REPORT_EVERY)
        {
            return;
        }
        self.last_report = Some(now);
        if self.refused > 0 {
            tracing::warn!(
                server = self.name,
                refused = self.refused,
                "{}: {} connection(s) closed unanswered in the last {} s: {MAX_CONNECTIONS} are served at once",
                self.name,
                self.refused,
                REPORT_EVERY.as_secs()
            );
        }
        if let Some(e) = self.last_error.take() {
            tracing::warn!(
                server = self.name,
                errors = self.errors,
                "{}: accepting connections failed {} time(s) in the last {} s (last: {e}); backing off",
                self.name,
                self.errors,
                REPORT_EVERY.as_secs()
            );
        }
        self.refused = 0;
        self.errors = 0;
    }
}

/// A document rendered at most once per [`BODY_MAX_AGE`], shared by the clients of that window.
pub(crate) struct Rendered<F> {
    render: F,
    last: Mutex<Option<(Instant, Arc<String>)>>,
}

impl<F: Fn() -> String> Rendered<F> {
    pub(crate) fn new(render: F) -> Self {
        Self {
            render,
            last: Mutex::new(None),
        }
    }

    /// The current document.
    pub(crate) fn get(&self) -> Arc<String> {
        let now = Instant::now();
        let Ok(mut last) = self.last.lock() else {
            return Arc::new((self.render)());
        };
        if let Some((at, body)) = last.as_ref() {
            if now.saturating_duration_since(*at) < BODY_MAX_AGE {
                return body.clone();
            }
        }
        let body = Arc::new((self.render)());
        *last = Some((now, body.clone()));
        body
    }
}

/// Run `fut` for at most `limit`; `None` if it took longer.
pub(crate) async fn bounded<T>(limit: Duration, fut: impl Future<Output = T>) -> Option<T> {
    tokio::time::timeout(limit, fut).await.ok()
}
