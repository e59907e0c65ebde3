//! UDP: one socket on the public address, a table of flows keyed by the client's address, one
//! socket towards the target per flow. A flow is admitted like a TCP connection (it counts against
//! the caps and the connection rate) and forgotten after the idle timeout. Datagrams beyond the
//! source's byte budget are dropped (counted as `byte_rate`), and so are datagrams of a flow whose
//! source a reloaded block-list now names.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;

use super::state::{Dialer, Shared};
use crate::expose::proxy::{self, Transport};
use crate::expose::Refusal;

/// Largest datagram relayed.
const MAX_DATAGRAM: usize = 65_535;

/// The socket of one flow towards its target.
enum Backend {
    Kernel(UdpSocket),
    #[cfg(feature = "stack")]
    Embedded(crate::io::embedded::UdpSocket, SocketAddr),
}

impl Backend {
    async fn open(dialer: &Dialer, to: SocketAddr) -> io::Result<Self> {
        match dialer {
            Dialer::Kernel => {
                let any: SocketAddr = if to.is_ipv4() {
                    (Ipv4Addr::UNSPECIFIED, 0).into()
                } else {
                    (Ipv6Addr::UNSPECIFIED, 0).into()
                };
                let s = UdpSocket::bind(any).await?;
                s.connect(to).await?;
                Ok(Self::Kernel(s))
            }
            #[cfg(feature = "stack")]
            Dialer::Embedded(node) => {
                let s = node.udp_bind(0).map_err(io::Error::other)?;
                Ok(Self::Embedded(s, to))
            }
        }
    }

    async fn send(&self, b: &[u8]) -> io::Result<()> {
        match self {
            Self::Kernel(s) => s.send(b).await.map(drop),
            #[cfg(feature = "stack")]
            Self::Embedded(s, to) => s.send_to(b, *to).await.map(drop).map_err(io::Error::other),
        }
    }

    async fn recv(&self, b: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Kernel(s) => s.recv(b).await,
            #[cfg(feature = "stack")]
            Self::Embedded(s, _) => s
                .recv_from(b)
                .await
                .map(|(n, _)| n)
                .map_err(io::Error::other),
        }
    }
}

struct Flow {
    backend: Arc<Backend>,
    /// Last datagram either way, in milliseconds since `Clock::start`.
    last: Arc<AtomicU64>,
}

/// Milliseconds since the exposure's UDP listener started, for the flows' idle times.
#[derive(Clone, Copy)]
struct Clock {
    start: Instant,
}

impl Clock {
    fn ms(self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

type Flows = Arc<Mutex<HashMap<SocketAddr, Flow>>>;

fn lock(f: &Flows) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, Flow>> {
    f.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Serve datagrams until the task is aborted.
pub(super) async fn serve(shared: Arc<Shared>, socket: UdpSocket) {
    let socket = Arc::new(socket);
    let local = socket.local_addr().unwrap_or(shared.spec.listen);
    let flows: Flows = Arc::default();
    let clock = Clock {
        start: Instant::now(),
    };
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut out = Vec::with_capacity(MAX_DATAGRAM + proxy::MAX_HEADER);
    loop {
        let (n, client) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            // ICMP errors surface here on some kernels: nothing to do for the flow table.
            Err(_) => continue,
        };
        let existing = lock(&flows)
            .get(&client)
            .map(|f| (f.backend.clone(), f.last.clone()));
        let backend = match existing {
            Some((b, last)) => {
                last.store(clock.ms(), Ordering::Relaxed);
                if let Some(r) = shared.lock().admission.listed(client.ip()) {
                    shared.refuse(client, "udp", r);
                    continue;
                }
                b
            }
            None => match open_flow(&shared, &socket, &flows, client, clock).await {
                Some(b) => b,
                None => continue,
            },
        };
        if !within_budget(&shared, client, n) {
            continue;
        }
        let payload: &[u8] = if shared.spec.proxy_v2 {
            out.clear();
            proxy::encode(&mut out, Transport::Udp, client, local);
            out.extend_from_slice(&buf[..n]);
            &out
        } else {
            &buf[..n]
        };
        match backend.send(payload).await {
            Ok(()) => {
                shared.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(e) => tracing::debug!(exposure = %shared.spec.name, %client, "udp to target: {e}"),
        }
    }
}

fn within_budget(shared: &Shared, client: SocketAddr, n: usize) -> bool {
    let over = shared
        .lock()
        .admission
        .bytes(client.ip(), n, Instant::now())
        .is_some();
    if over {
        shared.refuse(client, "udp", Refusal::ByteRate);
    }
    !over
}

/// Admit a new flow from `client` and start its return path; `None` if refused (counted).
async fn open_flow(
    shared: &Arc<Shared>,
    socket: &Arc<UdpSocket>,
    flows: &Flows,
    client: SocketAddr,
    clock: Clock,
) -> Option<Arc<Backend>> {
    if lock(flows).len() >= super::state::MAX_UDP_FLOWS {
        shared.refuse(client, "udp", Refusal::TooManySources);
        return None;
    }
    let target = shared.admit(client, "udp").ok()?;
    let to = *shared.spec.targets.get(target)?;
    let backend = match Backend::open(&shared.dialer, to).await {
        Ok(b) => Arc::new(b),
        Err(e) => {
            tracing::debug!(exposure = %shared.spec.name, %client, target = %to, "udp socket: {e}");
            shared.release(client.ip(), target);
            shared.refuse(client, "udp", Refusal::TargetUnreachable);
            return None;
        }
    };
    let last = Arc::new(AtomicU64::new(clock.ms()));
    lock(flows).insert(
        client,
        Flow {
            backend: backend.clone(),
            last: last.clone(),
        },
    );
    let (shared2, socket2, flows2, backend2) = (
        shared.clone(),
        socket.clone(),
        flows.clone(),
        backend.clone(),
    );
    tokio::spawn(async move {
        replies(&shared2, &socket2, &backend2, client, &last, clock).await;
        lock(&flows2).remove(&client);
        shared2.release(client.ip(), target);
    });
    Some(backend)
}

/// Target → client until the flow has been idle (no datagram either way) for the idle timeout.
async fn replies(
    shared: &Shared,
    socket: &UdpSocket,
    backend: &Backend,
    client: SocketAddr,
    last: &AtomicU64,
    clock: Clock,
) {
    let mut b = vec![0u8; MAX_DATAGRAM];
    let idle = shared.spec.udp_idle;
    let idle_ms = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX);
    loop {
        let quiet = clock.ms().saturating_sub(last.load(Ordering::Relaxed));
        if quiet >= idle_ms {
            return;
        }
        let left = Duration::from_millis(idle_ms - quiet);
        match tokio::time::timeout(left, backend.recv(&mut b)).await {
            Ok(Ok(n)) => {
                last.store(clock.ms(), Ordering::Relaxed);
                if within_budget(shared, client, n) && socket.send_to(&b[..n], client).await.is_ok()
                {
                    shared.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
                }
            }
            // An ICMP error from the target (port unreachable) and the like: try again shortly.
            Ok(Err(_)) => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(_) => {}
        }
    }
}
