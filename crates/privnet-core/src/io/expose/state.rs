//! What an exposure is ([`ExposeSpec`]), the state its listeners share, and what it shows
//! ([`ExposureSnapshot`]).

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use ipnetwork::IpNetwork;

use crate::expose::{
    choose, Admission, AdmissionConfig, AdmissionCounters, Candidate, PrefixSet, Refusal,
};
use crate::io::report::Repeats;
use crate::io::DriverHandle;

/// A UDP flow is forgotten after this long without a datagram either way.
pub const DEFAULT_UDP_IDLE: Duration = Duration::from_secs(60);
/// A target that does not accept a TCP connection within this time counts as unreachable.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// UDP flows of one exposure at most (beyond: new flows are refused as `too_many_sources`).
pub const MAX_UDP_FLOWS: usize = 16_384;

/// How targets are dialled.
#[derive(Clone)]
pub enum Dialer {
    /// Kernel sockets: the overlay address is routed into the TUN device.
    Kernel,
    /// The embedded stack of a userspace member.
    #[cfg(feature = "stack")]
    Embedded(Arc<crate::io::embedded::EmbeddedNode>),
}

impl std::fmt::Debug for Dialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dialer::Kernel => f.write_str("Kernel"),
            #[cfg(feature = "stack")]
            Dialer::Embedded(_) => f.write_str("Embedded"),
        }
    }
}

/// One exposure, validated by the caller.
#[derive(Clone, Debug)]
pub struct ExposeSpec {
    /// Name (for logs, status and metrics).
    pub name: String,
    /// Public listen address.
    pub listen: SocketAddr,
    /// Accept TCP connections.
    pub tcp: bool,
    /// Accept UDP datagrams.
    pub udp: bool,
    /// Overlay targets (one, or the members of a group); the port is the service's.
    pub targets: Vec<SocketAddr>,
    /// Send a PROXY v2 header to the target (TCP: before the stream; UDP: on every datagram).
    pub proxy_v2: bool,
    /// Allow-list, rates and caps.
    pub admission: AdmissionConfig,
    /// Block-lists, each with its name (the file).
    pub block_lists: Vec<(String, Arc<PrefixSet>)>,
    /// Idle timeout of a UDP flow.
    pub udp_idle: Duration,
    /// TCP connect timeout towards a target.
    pub connect_timeout: Duration,
}

/// One target as `privnet status` shows it.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct TargetSnapshot {
    /// Overlay address and port.
    pub address: String,
    /// Whether its member has an established session.
    pub healthy: bool,
    /// Connections and flows of this exposure to it now.
    pub active: u32,
}

/// One exposure as `privnet status` and `/metrics` show it.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ExposureSnapshot {
    /// Name.
    pub name: String,
    /// Public listen address.
    pub listen: String,
    /// `tcp`, `udp` or `tcp+udp`.
    pub protocols: String,
    /// PROXY v2 header on.
    pub proxy_v2: bool,
    /// Targets.
    pub targets: Vec<TargetSnapshot>,
    /// Connections (TCP) and flows (UDP) admitted.
    pub admitted: u64,
    /// Open now.
    pub active: u32,
    /// Refusals per reason (every reason, zeros included).
    pub refused: Vec<(String, u64)>,
    /// Block-lists: file, entries, refusals.
    pub block_lists: Vec<(String, usize, u64)>,
    /// Times a TCP flow waited for its source's byte budget.
    pub throttled: u64,
    /// Bytes from clients to targets.
    pub bytes_in: u64,
    /// Bytes from targets to clients.
    pub bytes_out: u64,
}

/// The mutable part, under one lock (held for a few hundred nanoseconds per decision).
pub(super) struct Locked {
    pub(super) admission: Admission,
    pub(super) lists: Vec<(String, usize)>,
    pub(super) target_active: Vec<u32>,
    repeats: Repeats<Refusal>,
}

/// What the listeners of one exposure share.
pub(super) struct Shared {
    pub(super) spec: ExposeSpec,
    pub(super) dialer: Dialer,
    pub(super) driver: Option<DriverHandle>,
    locked: Mutex<Locked>,
    pub(super) bytes_in: AtomicU64,
    pub(super) bytes_out: AtomicU64,
}

impl Shared {
    pub(super) fn new(spec: ExposeSpec, dialer: Dialer, driver: Option<DriverHandle>) -> Self {
        let mut admission = Admission::new(spec.admission.clone(), Instant::now());
        admission.set_block_lists(spec.block_lists.iter().map(|(_, l)| l.clone()).collect());
        let lists = spec
            .block_lists
            .iter()
            .map(|(n, l)| (n.clone(), l.entries()))
            .collect();
        let target_active = vec![0; spec.targets.len()];
        Self {
            spec,
            dialer,
            driver,
            locked: Mutex::new(Locked {
                admission,
                lists,
                target_active,
                repeats: Repeats::default(),
            }),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Locked> {
        self.locked.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Health of each target from the driver's latest snapshot (all unhealthy without a driver).
    fn health(&self) -> Vec<bool> {
        let Some(d) = &self.driver else {
            return vec![false; self.spec.targets.len()];
        };
        let snap = d.snapshot();
        self.spec
            .targets
            .iter()
            .map(|t| {
                snap.peers.iter().any(|p| {
                    p.established
                        && p.addresses
                            .iter()
                            .filter_map(|a| a.parse::<IpNetwork>().ok())
                            .any(|n| n.contains(t.ip()))
                })
            })
            .collect()
    }

    /// Admit a new connection (flow) from `src` and choose its target: the target's index, or the
    /// refusal (counted and logged).
    pub(super) fn admit(&self, src: SocketAddr, proto: &'static str) -> Result<usize, Refusal> {
        let health = self.health();
        let now = Instant::now();
        let mut l = self.lock();
        if let Err(r) = l.admission.admit(src.ip(), now) {
            drop(l);
            self.log_refusal(src, proto, r);
            return Err(r);
        }
        let cands: Vec<Candidate> = health
            .iter()
            .zip(&l.target_active)
            .map(|(&healthy, &active)| Candidate { healthy, active })
            .collect();
        match choose(&cands, src.ip()) {
            Some(i) => {
                if let Some(a) = l.target_active.get_mut(i) {
                    *a += 1;
                }
                Ok(i)
            }
            None => {
                l.admission.release(src.ip());
                l.admission.count(Refusal::NoTarget);
                drop(l);
                self.log_refusal(src, proto, Refusal::NoTarget);
                Err(Refusal::NoTarget)
            }
        }
    }

    /// A connection (flow) admitted by [`Shared::admit`] to target `i` ended.
    pub(super) fn release(&self, src: IpAddr, i: usize) {
        let mut l = self.lock();
        l.admission.release(src);
        if let Some(a) = l.target_active.get_mut(i) {
            *a = a.saturating_sub(1);
        }
    }

    /// Count (and log) a refusal decided by a listener.
    pub(super) fn refuse(&self, src: SocketAddr, proto: &'static str, r: Refusal) {
        self.lock().admission.count(r);
        self.log_refusal(src, proto, r);
    }

    /// Log a refusal, at most once per reason and 10 s (with the number held back).
    pub(super) fn log_refusal(&self, src: SocketAddr, proto: &'static str, r: Refusal) {
        let held = self.lock().repeats.allow(r, Instant::now());
        if let Some(held) = held {
            tracing::info!(exposure = %self.spec.name, client = %src, protocol = proto,
                reason = r.name(), held_back = held,
                "exposure {}: refused {proto} from {src}: {}{}", self.spec.name, r.name(),
                if held > 0 { format!(" ({held} more refused for this reason not logged)") } else { String::new() });
        }
    }

    /// Wait until `n` bytes of `src` fit its byte budget (no byte rate: at once).
    pub(super) async fn throttle(&self, src: IpAddr, n: usize) {
        // Bounded: each wait is the limiter's own estimate, and a chunk is at most one burst.
        for _ in 0..10_000 {
            let wait = self.lock().admission.bytes(src, n, Instant::now());
            match wait {
                None => return,
                Some(w) => tokio::time::sleep(w).await,
            }
        }
    }

    pub(super) fn set_block_lists(&self, lists: Vec<(String, Arc<PrefixSet>)>) {
        let mut l = self.lock();
        l.admission
            .set_block_lists(lists.iter().map(|(_, s)| s.clone()).collect());
        l.lists = lists
            .iter()
            .map(|(n, s)| (n.clone(), s.entries()))
            .collect();
    }

    pub(super) fn snapshot(&self) -> ExposureSnapshot {
        let health = self.health();
        let l = self.lock();
        let c: AdmissionCounters = l.admission.counters();
        let s = &self.spec;
        ExposureSnapshot {
            name: s.name.clone(),
            listen: s.listen.to_string(),
            protocols: match (s.tcp, s.udp) {
                (true, true) => "tcp+udp",
                (false, true) => "udp",
                _ => "tcp",
            }
            .to_owned(),
            proxy_v2: s.proxy_v2,
            targets: s
                .targets
                .iter()
                .zip(health)
                .zip(&l.target_active)
                .map(|((t, healthy), &active)| TargetSnapshot {
                    address: t.to_string(),
                    healthy,
                    active,
                })
                .collect(),
            admitted: c.admitted,
            active: c.active,
            refused: Refusal::ALL
                .iter()
                .map(|r| (r.name().to_owned(), c.refused(*r)))
                .collect(),
            block_lists: l
                .lists
                .iter()
                .zip(c.blocked_by.iter().chain(std::iter::repeat(&0)))
                .map(|((n, e), &b)| (n.clone(), *e, b))
                .collect(),
            throttled: c.throttled,
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
        }
    }
}
