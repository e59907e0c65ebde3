//! The status socket of a running sidecar (a Unix socket, mode 0600 in a directory only its owner
//! may enter, one JSON document per connection) used by `privnet status` and `privnet health`:
//! the server, the client and the human-readable format. The document is the list of the
//! networks' [`NetworkStatus`]: each driver's latest snapshot
//! ([`privnet_core::io::NetworkSnapshot`]) with whether its driver still runs and which changed
//! keys wait for a restart. The server runs on the [`ServerThread`], never on a driver's
//! (see `server.rs` for the limits).

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::os::unix::fs::{
    DirBuilderExt as _, FileTypeExt as _, MetadataExt as _, PermissionsExt as _,
};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use privnet_core::io::directory::DirectoryStatus;
use privnet_core::io::dns::{DnsCounters, DnsStats};
use privnet_core::io::expose::{ExposureSnapshot, ExposureView};
use privnet_core::io::{DriverHandle, NetworkSnapshot};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;

use crate::explain_live;
use crate::server::{bounded, Gate, Rendered, ServerThread, WRITE_TIMEOUT};

/// Largest request read from a status or metrics client.
pub(crate) const MAX_REQUEST: usize = 4096;
/// How long the status server waits for the request line (`status`).
pub const STATUS_READ_TIMEOUT: Duration = Duration::from_millis(200);

/// The configuration keys of one network that changed in the files but take effect only after a
/// restart (shared by `privnet up`'s reload and the status socket).
pub type RestartNeeded = Arc<Mutex<Vec<String>>>;

/// What the sidecar knows about a network's access policy beyond the driver's snapshot: the file
/// in force and the problems of the last policy refused (empty once a policy is applied).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicyShown {
    /// The policy file in force (`None`: no policy).
    pub file: Option<PathBuf>,
    /// Why the last new version of the policy was refused (file, line, what was expected).
    pub refused: Vec<String>,
}

/// [`PolicyShown`], shared by `privnet up`'s reloads and the status socket.
pub type SharedPolicy = Arc<Mutex<PolicyShown>>;

/// A network's running exposures (`[[expose]]`), and the last block-list refused for each, shared
/// with the status socket and the metrics endpoint.
pub type SharedExposures = Arc<Mutex<Vec<ExposureShown>>>;

/// One exposure as the status shows it: its view and why its last new block-list was refused.
#[derive(Clone, Debug)]
pub struct ExposureShown {
    /// The running exposure.
    pub view: ExposureView,
    /// The problem of the last block-list version refused (empty once a version is applied).
    pub refused: Vec<String>,
}

/// One network as `privnet up` serves it: its driver's handle and its keys waiting for a restart.
#[derive(Clone, Debug)]
pub struct Served {
    /// The driver.
    pub handle: DriverHandle,
    /// Keys changed in the files that need a restart.
    pub restart_needed: RestartNeeded,
    /// The policy file and the last refused policy.
    pub policy: SharedPolicy,
    /// Its exposures.
    pub exposures: SharedExposures,
    /// The directory client's status (`[directory]`).
    pub directory: Option<tokio::sync::watch::Receiver<Arc<DirectoryStatus>>>,
    /// The DNS responder (`[dns]`).
    pub dns: Option<DnsServed>,
}

/// A network's DNS responder as `privnet up` runs it (`[dns]`).
#[derive(Clone, Debug)]
pub struct DnsServed {
    /// Where it answers (UDP and TCP).
    pub listen: std::net::SocketAddr,
    /// Its zone (`neta.`).
    pub zone: String,
    /// The TTL of its answers, seconds.
    pub ttl_s: u32,
    /// Its live counters.
    pub counters: Arc<DnsCounters>,
}

/// The DNS responder of a network as the status document shows it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DnsShown {
    /// Where it answers (UDP and TCP).
    pub listen: String,
    /// Its zone.
    pub zone: String,
    /// The TTL of its answers, seconds.
    pub ttl_s: u32,
    /// Its counters.
    #[serde(flatten)]
    pub stats: DnsStats,
}

impl DnsShown {
    fn of(d: &DnsServed) -> Self {
        Self {
            listen: d.listen.to_string(),
            zone: d.zone.clone(),
            ttl_s: d.ttl_s,
            stats: d.counters.stats(),
        }
    }
}

/// The directory of a network as the status document shows it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DirectoryShown {
    /// etcd endpoints.
    pub endpoints: Vec<String>,
    /// The network's key prefix.
    pub prefix: String,
    /// Connected to etcd and watching.
    pub connected: bool,
    /// This member's record is registered under a live lease.
    pub registered: bool,
    /// The etcd revision every change is applied up to.
    pub revision: i64,
    /// Seconds since the last change was applied (`None`: none yet).
    pub last_update_age_s: Option<u64>,
    /// Running from the on-disk cache, not yet resynced with etcd.
    pub from_cache: bool,
    /// Members known from the directory: name, addresses, endpoints.
    pub members: Vec<serde_json::Value>,
    /// Records skipped, by reason.
    pub skipped: std::collections::BTreeMap<String, u64>,
    /// Connections lost or failed.
    pub reconnects: u64,
    /// Full reads and compactions seen.
    pub resyncs: u64,
    /// Watches cancelled by a compaction.
    pub compactions: u64,
    /// Watch events dropped as duplicates.
    pub duplicate_events: u64,
    /// The last connection error (while not connected).
    pub last_error: Option<String>,
    /// Policy bundle version held.
    pub policy_version: u64,
    /// Revocation bundle version held.
    pub revocations_version: u64,
    /// Bundles refused, by `kind/reason`.
    pub bundles_refused: std::collections::BTreeMap<String, u64>,
}

impl DirectoryShown {
    fn of(d: &DirectoryStatus) -> Self {
        Self {
            endpoints: d.endpoints.clone(),
            prefix: d.prefix.clone(),
            connected: d.connected,
            registered: d.registered,
            revision: d.revision,
            last_update_age_s: d.last_update.map(|t| t.elapsed().as_secs()),
            from_cache: d.from_cache,
            members: d
                .members
                .iter()
                .map(|m| {
                    serde_json::json!({
                        "name": m.name,
                        "addresses": m.addresses,
                        "endpoints": m.endpoints,
                        "capabilities": m.capabilities,
                    })
                })
                .collect(),
            skipped: d
                .skipped
                .iter()
                .map(|(k, v)| ((*k).to_owned(), *v))
                .collect(),
            reconnects: d.reconnects,
            resyncs: d.watch.resyncs,
            compactions: d.watch.compactions,
            duplicate_events: d.watch.duplicates,
            last_error: d.last_error.clone(),
            policy_version: d.policy_version,
            revocations_version: d.revocations_version,
            bundles_refused: d.bundles_refused.clone(),
        }
    }
}

/// One network in the status document and the metrics.
#[derive(Clone, Debug, serde::Serialize)]
pub struct NetworkStatus {
    /// The driver's latest snapshot.
    #[serde(flatten)]
    pub snapshot: NetworkSnapshot,
    /// Whether the driver still runs (`false` once its task ended, failed or panicked: the
    /// snapshot is then its last one).
    pub running: bool,
    /// Configuration keys changed since start that take effect only after a restart.
    pub restart_needed: Vec<String>,
    /// The access policy file in force (its hash, rules and counters are in `policy`).
    pub policy_file: Option<String>,
    /// Why the last new version of the policy was refused; the running policy stayed (empty when
    /// the last version was applied).
    pub policy_refused: Vec<String>,
    /// The directory (`None` without `[directory]`).
    pub directory: Option<DirectoryShown>,
    /// The DNS responder (`None` without `[dns]`).
    pub dns: Option<DnsShown>,
    /// The exposures of this member (`[[expose]]`) and their counters.
    pub exposures: Vec<ExposureStatus>,
}

/// One exposure in the status document.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ExposureStatus {
    /// Counters, targets and lists.
    #[serde(flatten)]
    pub snapshot: ExposureSnapshot,
    /// Why the last new version of a block-list was refused (the running list stayed).
    pub lists_refused: Vec<String>,
}

/// The snapshots of every running network, in configuration order, shared by the status socket
/// and the metrics endpoint. Reading them takes the drivers' latest published snapshots; nothing
/// waits for a driver.
#[derive(Clone, Debug, Default)]
pub struct Snapshots(Arc<Vec<Served>>);

mod format;
mod routes;

pub use format::{format_status, format_status_with_rates, watch};

impl Snapshots {
    /// The snapshots of the drivers behind `handles` (nothing waiting for a restart).
    pub fn new(handles: Vec<DriverHandle>) -> Self {
        Self::served(
            handles
                .into_iter()
                .map(|handle| Served {
                    handle,
                    restart_needed: RestartNeeded::default(),
                    policy: SharedPolicy::default(),
                    exposures: SharedExposures::default(),
                    directory: None,
                    dns: None,
                })
                .collect(),
        )
    }

    /// The networks `served`.
    pub fn served(served: Vec<Served>) -> Self {
        Self(Arc::new(served))
    }

    /// The networks, in configuration order.
    pub fn networks(&self) -> &[Served] {
        &self.0
    }

    /// Every network's latest snapshot, whether its driver runs, and its keys waiting for a
    /// restart.
    pub fn collect(&self) -> Vec<NetworkStatus> {
        self.0
            .iter()
            .map(|s| {
                let policy = s.policy.lock().map(|p| p.clone()).unwrap_or_default();
                NetworkStatus {
                    snapshot: (*s.handle.snapshot()).clone(),
                    running: s.handle.is_running(),
                    restart_needed: s
                        .restart_needed
                        .lock()
                        .map(|k| k.clone())
                        .unwrap_or_default(),
                    policy_file: policy.file.map(|f| f.display().to_string()),
                    policy_refused: policy.refused,
                    exposures: s
                        .exposures
                        .lock()
                        .map(|e| {
                            e.iter()
                                .map(|x| ExposureStatus {
                                    snapshot: x.view.snapshot(),
                                    lists_refused: x.refused.clone(),
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                    directory: s
                        .directory
                        .as_ref()
                        .map(|d| DirectoryShown::of(&d.borrow())),
                    dns: s.dns.as_ref().map(DnsShown::of),
                }
            })
            .collect()
    }
}

fn snapshot_json(snapshots: &Snapshots) -> String {
    let all = snapshots.collect();
    serde_json::to_string_pretty(&all).unwrap_or_else(|_| "[]".to_owned())
}

/// The bound status socket; [`StatusSocket::remove`] deletes it at shutdown (only if the path
/// still is this socket).
#[derive(Debug)]
pub struct StatusSocket {
    path: PathBuf,
    id: (u64, u64),
}

impl StatusSocket {
    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Remove the socket file, unless something else has replaced it meanwhile.
    pub fn remove(self) {
        if let Ok(m) = std::fs::symlink_metadata(&self.path) {
            if m.file_type().is_socket() && (m.dev(), m.ino()) == self.id {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

/// The directory of the status socket: created with mode 0700 (with any missing parents), or,
/// if it exists, a directory owned by us or root that no one else may write to (unless sticky,
/// like /tmp), so that no other user can replace the socket.
fn private_dir(dir: &Path) -> anyhow::Result<()> {
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| {
                format!(
                    "creating the status socket directory {} (mode 0700)",
                    dir.display()
                )
            }),
        Err(e) => Err(e).with_context(|| format!("status socket directory {}", dir.display())),
        Ok(_) => {
            // Follow a link here: /run may be one; what counts is the directory it names.
            let m = std::fs::metadata(dir)
                .with_context(|| format!("status socket directory {}", dir.display()))?;
            if !m.is_dir() {
                bail!("status socket directory {}: not a directory", dir.display());
            }
            let ours = crate::files::running_uid();
            if m.uid() != 0 && m.uid() != ours {
                bail!(
                    "status socket directory {}: owned by uid {}, not by the running user (uid {ours}) or root",
                    dir.display(),
                    m.uid()
                );
            }
            let mode = m.mode() & 0o7777;
            if mode & 0o022 != 0 && mode & 0o1000 == 0 {
                bail!(
                    "status socket directory {}: mode {mode:04o} lets other users replace the socket; \
                     use a directory only its owner can write to (e.g. `chmod 700 {}`)",
                    dir.display(),
                    dir.display()
                );
            }
            Ok(())
        }
    }
}

/// Bind the status socket at `path`, never reachable by anyone but us: in a private directory
/// (see [`private_dir`]), bound inside a fresh mode-0700 directory next to it, chmod'ed 0600 there
/// and only then renamed into place. A stale socket of a stopped sidecar is replaced; a live one,
/// or anything that is not a socket, is refused.
///
/// # Errors
/// What went wrong, naming the path.
pub fn bind_status_socket(
    path: &Path,
) -> anyhow::Result<(std::os::unix::net::UnixListener, StatusSocket)> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    private_dir(&dir)?;
    match std::fs::symlink_metadata(path) {
        Ok(m) if !m.file_type().is_socket() => bail!(
            "status socket {}: exists and is not a socket; refusing to replace it",
            path.display()
        ),
        Ok(_) => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                bail!(
                    "status socket {} is in use: another privnet is running with this configuration",
                    path.display()
                );
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("status socket {}", path.display())),
    }
    let staging = dir.join(format!(".{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&staging)
        .with_context(|| {
            format!(
                "creating {} (mode 0700) to bind the status socket in",
                staging.display()
            )
        })?;
    let bound = (|| {
        let tmp = staging.join("s");
        let listener = std::os::unix::net::UnixListener::bind(&tmp).with_context(|| {
            format!(
                "binding the status socket {} (in {})",
                path.display(),
                staging.display()
            )
        })?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("chmod 0600 {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| {
            format!("moving the status socket into place at {}", path.display())
        })?;
        listener
            .set_nonblocking(true)
            .with_context(|| format!("status socket {}", path.display()))?;
        let m = std::fs::symlink_metadata(path)
            .with_context(|| format!("status socket {}", path.display()))?;
        anyhow::Ok((
            listener,
            StatusSocket {
                path: path.to_owned(),
                id: (m.dev(), m.ino()),
            },
        ))
    })();
    let _ = std::fs::remove_dir_all(&staging);
    bound
}

/// Bind the status socket at `path` (see [`bind_status_socket`]) and serve snapshots on it from
/// the servers' thread.
///
/// # Errors
/// The socket could not be bound.
pub fn serve_status(
    path: &Path,
    snapshots: Snapshots,
    servers: &ServerThread,
) -> anyhow::Result<StatusSocket> {
    let (listener, socket) = bind_status_socket(path)?;
    let shown = path.display().to_string();
    servers.spawn(async move {
        let listener = match UnixListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!("status socket {shown}: {e}; `privnet status` will not answer");
                return;
            }
        };
        let nets = snapshots.clone();
        let body = Arc::new(Rendered::new(move || snapshot_json(&snapshots)));
        let mut gate = Gate::new("status socket");
        loop {
            let mut conn = match listener.accept().await {
                Ok((conn, _)) => conn,
                Err(e) => {
                    gate.failed(e).await;
                    continue;
                }
            };
            let Some(permit) = gate.admit() else {
                drop(conn);
                continue;
            };
            let body = body.clone();
            let nets = nets.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let mut req = [0u8; MAX_REQUEST];
                // The request is a single line ("status", or "explain {...}"); read what is
                // there, bounded in time.
                let n = bounded(STATUS_READ_TIMEOUT, conn.read(&mut req))
                    .await
                    .and_then(Result::ok)
                    .unwrap_or(0);
                let doc = match explain_live::parse(&req[..n]) {
                    None => body.get(),
                    Some(r) => Arc::new(explain(&nets, r).await),
                };
                let _ = bounded(WRITE_TIMEOUT, async {
                    let _ = conn.write_all(doc.as_bytes()).await;
                    let _ = conn.shutdown().await;
                })
                .await;
            });
        }
    });
    Ok(socket)
}

/// The answer to an `explain` request, as JSON (bounded in time: the driver answers between two
/// batches).
async fn explain(nets: &Snapshots, req: Result<explain_live::Request, String>) -> String {
    let answer = match req {
        Err(e) => explain_live::Answer {
            error: Some(e),
            ..Default::default()
        },
        Ok(req) => {
            let own = |s: &NetworkSnapshot, a: std::net::IpAddr| {
                s.addresses
                    .iter()
                    .filter_map(|x| x.parse::<ipnetwork::IpNetwork>().ok())
                    .any(|n| n.ip() == a)
            };
            let chosen = nets.networks().iter().find(|n| {
                let s = n.handle.snapshot();
                match &req.network {
                    Some(name) => &s.network == name,
                    None => own(&s, if req.outbound { req.src } else { req.dst }),
                }
            });
            match chosen {
                Some(n) => {
                    let s = n.handle.snapshot();
                    let work = explain_live::answer(&n.handle, &s.network, &s.member, &req);
                    bounded(Duration::from_secs(2), work)
                        .await
                        .unwrap_or_else(|| explain_live::Answer {
                            error: Some("the network's driver did not answer within 2 s".into()),
                            ..Default::default()
                        })
                }
                None => explain_live::Answer {
                    error: Some(match &req.network {
                        Some(name) => format!("this sidecar runs no network {name:?}"),
                        None => "no network of this sidecar has that address as its own".into(),
                    }),
                    ..Default::default()
                },
            }
        }
    };
    serde_json::to_string(&answer).unwrap_or_else(|_| "{}".to_owned())
}

/// Send one request line to a running sidecar's status socket and return its answer.
///
/// # Errors
/// The socket does not answer (in 3 s) or answers too much.
pub fn query_line(socket: &Path, line: &str) -> anyhow::Result<String> {
    let mut s = std::os::unix::net::UnixStream::connect(socket).with_context(|| {
        format!(
            "connecting to the status socket {} (is `privnet up` running?)",
            socket.display()
        )
    })?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    s.write_all(line.as_bytes())?;
    let mut body = String::new();
    s.take(16 << 20).read_to_string(&mut body)?;
    Ok(body)
}

/// The status socket a configuration file names (`[status] socket`, relative to the file), else
/// its network's default socket ([`default_status_socket`]).
///
/// # Errors
/// The file cannot be read or parsed, or sets no status socket.
pub fn socket_of_config(path: &Path) -> anyhow::Result<PathBuf> {
    let text = crate::files::read_text(path)?;
    let (file, problems) = crate::config::parse_str(&text, path);
    if let Some(p) = problems.first() {
        bail!("{p}");
    }
    let configured = file.status.and_then(|s| s.socket);
    let Some(socket) = configured else {
        let Some(node) = file.node else {
            bail!(
                "{}: no [node] section, so no network and no default status socket; pass --socket PATH",
                path.display()
            );
        };
        return Ok(default_status_socket(&node.network));
    };
    Ok(match path.parent() {
        Some(dir) if socket.is_relative() => dir.join(socket),
        _ => socket,
    })
}

/// The directory of the default status sockets: `/run/privnet` when running as root or when it
/// is a directory owned by the running user (a container's tmpfs), else `$XDG_RUNTIME_DIR/privnet`,
/// else `/tmp/privnet-UID` (created mode 0700; see [`private_dir`]).
pub fn default_status_dir() -> PathBuf {
    let uid = crate::files::running_uid();
    let run = Path::new("/run/privnet");
    if uid == 0 || std::fs::metadata(run).is_ok_and(|m| m.is_dir() && m.uid() == uid) {
        return run.to_owned();
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) if !d.is_empty() && Path::new(&d).is_absolute() => Path::new(&d).join("privnet"),
        _ => PathBuf::from(format!("/tmp/privnet-{uid}")),
    }
}

/// The status socket of a sidecar whose configuration has no `[status] socket`:
/// `DIR/NETWORK.sock` in [`default_status_dir`], named after its (first) network.
pub fn default_status_socket(network: &str) -> PathBuf {
    let name: String = network
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    default_status_dir().join(format!("{name}.sock"))
}

/// For `privnet status` without `--config` or `--socket`: the only socket in
/// [`default_status_dir`].
///
/// # Errors
/// None or several there (naming them).
pub fn find_default_socket() -> anyhow::Result<PathBuf> {
    let dir = default_status_dir();
    let mut found: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.extension().is_some_and(|x| x == "sock")
                    && std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_socket())
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    found.sort();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => bail!(
            "no status socket in {} (is `privnet up` running as this user?); pass --config FILE \
             (or set PRIVNET_CONFIG) or --socket PATH",
            dir.display()
        ),
        _ => bail!(
            "several status sockets in {}: {}; pass --config FILE or --socket PATH",
            dir.display(),
            found
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Ask a running sidecar for its status.
pub fn query_status(socket: &Path) -> anyhow::Result<Vec<serde_json::Value>> {
    let mut s = std::os::unix::net::UnixStream::connect(socket).with_context(|| {
        format!(
            "connecting to the status socket {} (is `privnet up` running?)",
            socket.display()
        )
    })?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    s.write_all(b"status\n")?;
    let mut body = String::new();
    s.take(16 << 20).read_to_string(&mut body)?;
    serde_json::from_str(&body).context("the status socket answered with invalid JSON")
}

/// What `privnet health` decides from a status document: at least one network, every network's
/// driver running (a document of a sidecar before `running` existed counts as running), and with
/// `require_peer` at least one established session.
///
/// # Errors
/// Why the sidecar is not healthy, naming the network.
pub fn check_health(nets: &[serde_json::Value], require_peer: bool) -> anyhow::Result<()> {
    if nets.is_empty() {
        bail!("the sidecar runs no network");
    }
    let dead: Vec<&str> = nets
        .iter()
        .filter(|n| n.get("running").and_then(serde_json::Value::as_bool) == Some(false))
        .map(|n| n.get("network").and_then(|v| v.as_str()).unwrap_or("?"))
        .collect();
    if !dead.is_empty() {
        bail!(
            "network(s) not running: {} (the driver stopped; see the sidecar's log)",
            dead.join(", ")
        );
    }
    if require_peer {
        let up = nets.iter().any(|n| {
            n.get("peers").and_then(|p| p.as_array()).is_some_and(|ps| {
                ps.iter()
                    .any(|p| p.get("established") == Some(&serde_json::Value::Bool(true)))
            })
        });
        if !up {
            bail!("no peer has an established session");
        }
    }
    Ok(())
}
