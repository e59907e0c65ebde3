//! `tun.mode = "userspace"`: a network served by the library's embedded stack
//! (`privnet_core::io::embedded`) instead of a TUN device — no root, no capabilities. What the
//! host sees of the network is what `[userspace]` configures:
//!
//! - **forwards**: a local TCP or UDP port whose connections or datagrams go to an overlay
//!   endpoint (`127.0.0.1:5432` → `db:5432`);
//! - **published services**: an overlay port whose connections or datagrams go to a local
//!   service (overlay port 80 → `127.0.0.1:8080`), optionally only for callers in given groups
//!   (from their verified certificates);
//! - a **SOCKS5 proxy** on loopback: CONNECT and UDP ASSOCIATE (RFC 1928, no authentication:
//!   loopback only), destinations by overlay address or member name.
//!
//! One supervising task per network owns the embedded node and these servers; it ends when the
//! node's driver stops (`privnet up` stops it on SIGTERM like a TUN driver).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use privnet_core::io::embedded::{EmbeddedNode, StackConfig, UdpSocket as OverlayUdp};
use privnet_core::io::expose::Dialer;
use privnet_core::io::{DriverConfig, DriverHandle, Identity};
use privnet_core::Node;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::{JoinHandle, JoinSet};

use crate::config::{Forward, Protocol, Publish, UserspaceSettings};

/// A UDP flow (a local client of a forward, an overlay sender to a published service) is
/// forgotten after this long without a datagram.
const UDP_IDLE: Duration = Duration::from_secs(120);
/// UDP flows per forward or published service at most.
const UDP_FLOWS: usize = 1024;
/// Largest datagram relayed.
const UDP_MAX: usize = 65_535;

/// Start the embedded node of one network and its servers; returns the driver's handle, the
/// supervising task (done when the driver stops) and a dialer into the network through the
/// embedded stack (for `[[expose]]`).
///
/// # Errors
/// The node does not start, or a local address cannot be bound.
pub async fn start(
    node: Node,
    driver: DriverConfig,
    identity: Identity,
    settings: &UserspaceSettings,
) -> anyhow::Result<(DriverHandle, JoinHandle<io::Result<()>>, Dialer)> {
    let network = driver.network.clone();
    let embedded =
        EmbeddedNode::from_node(node, driver, Some(identity), StackConfig::default()).await?;
    let node = Arc::new(embedded);
    let mut servers = JoinSet::new();
    for f in &settings.forwards {
        match f.protocol {
            Protocol::Tcp => {
                let l = TcpListener::bind(f.listen).await.map_err(|e| {
                    anyhow::anyhow!(
                        "forward {} -> {}: binding {}: {e}",
                        f.listen,
                        f.to,
                        f.listen
                    )
                })?;
                servers.spawn(forward_tcp(node.clone(), l, f.clone()));
            }
            Protocol::Udp => {
                let s = UdpSocket::bind(f.listen).await.map_err(|e| {
                    anyhow::anyhow!("forward {} -> {} (udp): binding: {e}", f.listen, f.to)
                })?;
                servers.spawn(forward_udp(node.clone(), s, f.clone()));
            }
        }
        tracing::info!(network = %network, listen = %f.listen, to = %f.to, protocol = ?f.protocol, "forwarding");
    }
    for p in &settings.publish {
        match p.protocol {
            Protocol::Tcp => {
                let l = node
                    .tcp_listen(p.port)
                    .map_err(|e| anyhow::anyhow!("publish overlay port {}: {e}", p.port))?;
                servers.spawn(publish_tcp(l, p.clone()));
            }
            Protocol::Udp => {
                let s = node
                    .udp_bind(p.port)
                    .map_err(|e| anyhow::anyhow!("publish overlay port {} (udp): {e}", p.port))?;
                servers.spawn(publish_udp(node.clone(), s, p.clone()));
            }
        }
        tracing::info!(network = %network, port = p.port, to = %p.to, protocol = ?p.protocol,
            groups = ?p.groups, "publishing");
    }
    if let Some(addr) = settings.socks {
        let l = TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("SOCKS5 proxy: binding {addr}: {e}"))?;
        servers.spawn(socks(node.clone(), l));
        tracing::info!(network = %network, listen = %addr, "SOCKS5 proxy (CONNECT, UDP ASSOCIATE)");
    }
    let handle = node.handle().clone();
    let dialer = Dialer::Embedded(node.clone());
    let mut watch = handle.clone();
    let task = tokio::spawn(async move {
        // Until the driver stops (its snapshots end).
        while watch.snapshot_changed().await.is_ok() {}
        servers.abort_all();
        drop(node);
        Ok(())
    });
    Ok((handle, task, dialer))
}

async fn forward_tcp(node: Arc<EmbeddedNode>, listener: TcpListener, f: Forward) {
    loop {
        let Ok((mut local, from)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let node = node.clone();
        let to = f.to.clone();
        tokio::spawn(async move {
            match node.tcp_connect(to.as_str()).await {
                Ok(mut overlay) => {
                    let _ = local.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut local, &mut overlay).await;
                }
                Err(e) => tracing::warn!(%from, %to, "forward: {e}"),
            }
        });
    }
}

/// UDP flows keyed by a remote address, each with the socket that carries it on the other side.
type Flows<S> = Arc<Mutex<HashMap<SocketAddr, Arc<S>>>>;

fn flows_get<S>(flows: &Flows<S>, k: &SocketAddr) -> Option<Arc<S>> {
    flows
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(k)
        .cloned()
}

async fn forward_udp(node: Arc<EmbeddedNode>, local: UdpSocket, f: Forward) {
    let local = Arc::new(local);
    let flows: Flows<OverlayUdp> = Arc::default();
    let mut buf = vec![0u8; UDP_MAX];
    loop {
        let Ok((n, client)) = local.recv_from(&mut buf).await else {
            continue;
        };
        let overlay = match flows_get(&flows, &client) {
            Some(o) => o,
            None => {
                if flows.lock().unwrap_or_else(PoisonError::into_inner).len() >= UDP_FLOWS {
                    tracing::debug!(%client, "forward udp: too many flows; datagram dropped");
                    continue;
                }
                let Ok(o) = node.udp_bind(0) else {
                    continue;
                };
                let o = Arc::new(o);
                flows
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(client, o.clone());
                // Replies from the overlay back to this client, until the flow is idle.
                let (o2, local2, flows2) = (o.clone(), local.clone(), flows.clone());
                tokio::spawn(async move {
                    let mut b = vec![0u8; UDP_MAX];
                    while let Ok(Ok((n, _))) =
                        tokio::time::timeout(UDP_IDLE, o2.recv_from(&mut b)).await
                    {
                        let _ = local2.send_to(&b[..n], client).await;
                    }
                    flows2
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .remove(&client);
                });
                o
            }
        };
        if let Err(e) = overlay.send_to(&buf[..n], f.to.as_str()).await {
            tracing::debug!(%client, to = %f.to, "forward udp: {e}");
        }
    }
}

fn allowed(groups: &[String], peer_groups: &[String]) -> bool {
    groups.is_empty() || peer_groups.iter().any(|g| groups.contains(g))
}

async fn publish_tcp(listener: privnet_core::io::embedded::TcpListener, p: Publish) {
    while let Ok((mut overlay, peer)) = listener.accept().await {
        if !allowed(&p.groups, &peer.groups) {
            tracing::info!(port = p.port, caller = %peer.name, groups = ?peer.groups,
                "published service: caller not in an allowed group; connection closed");
            continue;
        }
        let to = p.to;
        tokio::spawn(async move {
            match TcpStream::connect(to).await {
                Ok(mut local) => {
                    let _ = local.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut overlay, &mut local).await;
                }
                Err(e) => {
                    tracing::warn!(%to, caller = %peer.name, "published service unreachable: {e}")
                }
            }
        });
    }
}

async fn publish_udp(node: Arc<EmbeddedNode>, overlay: OverlayUdp, p: Publish) {
    let overlay = Arc::new(overlay);
    let flows: Flows<UdpSocket> = Arc::default();
    let mut buf = vec![0u8; UDP_MAX];
    while let Ok((n, sender)) = overlay.recv_from(&mut buf).await {
        let groups = node
            .peer_identity(sender.ip())
            .map(|i| i.groups.clone())
            .unwrap_or_default();
        if node.peer_identity(sender.ip()).is_none() || !allowed(&p.groups, &groups) {
            tracing::debug!(port = p.port, %sender, "published udp service: sender not allowed");
            continue;
        }
        let local = match flows_get(&flows, &sender) {
            Some(l) => l,
            None => {
                if flows.lock().unwrap_or_else(PoisonError::into_inner).len() >= UDP_FLOWS {
                    continue;
                }
                let bind = if p.to.is_ipv4() {
                    SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
                } else {
                    SocketAddr::from((Ipv6Addr::LOCALHOST, 0))
                };
                let Ok(l) = UdpSocket::bind(bind).await else {
                    continue;
                };
                if l.connect(p.to).await.is_err() {
                    continue;
                }
                let l = Arc::new(l);
                flows
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(sender, l.clone());
                let (l2, o2, flows2) = (l.clone(), overlay.clone(), flows.clone());
                tokio::spawn(async move {
                    let mut b = vec![0u8; UDP_MAX];
                    while let Ok(Ok(n)) = tokio::time::timeout(UDP_IDLE, l2.recv(&mut b)).await {
                        let _ = o2.send_to(&b[..n], sender).await;
                    }
                    flows2
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .remove(&sender);
                });
                l
            }
        };
        let _ = local.send(&buf[..n]).await;
    }
}

// ---------------------------------------------------------------------------------------------
// SOCKS5 (RFC 1928)

const SOCKS_VERSION: u8 = 5;
const REP_OK: u8 = 0;
const REP_FAILURE: u8 = 1;
const REP_NET_UNREACHABLE: u8 = 3;
const REP_HOST_UNREACHABLE: u8 = 4;
const REP_REFUSED: u8 = 5;
const REP_TTL: u8 = 6;
const REP_COMMAND: u8 = 7;
const REP_ADDRESS_TYPE: u8 = 8;

/// A destination of a SOCKS request.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Dest {
    Addr(SocketAddr),
    Name(String, u16),
}

impl Dest {
    fn target(&self) -> String {
        match self {
            Self::Addr(a) => a.to_string(),
            Self::Name(n, p) => format!("{n}:{p}"),
        }
    }
}

async fn socks(node: Arc<EmbeddedNode>, listener: TcpListener) {
    loop {
        let Ok((stream, from)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let node = node.clone();
        tokio::spawn(async move {
            if let Err(e) = socks_session(node, stream).await {
                tracing::debug!(%from, "socks: {e}");
            }
        });
    }
}

/// Read a SOCKS address (ATYP, address, port) from `r`.
async fn read_dest<R: AsyncReadExt + Unpin>(r: &mut R, atyp: u8) -> io::Result<Option<Dest>> {
    Ok(Some(match atyp {
        1 => {
            let mut a = [0u8; 6];
            r.read_exact(&mut a).await?;
            let ip = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
            Dest::Addr(SocketAddr::new(
                IpAddr::V4(ip),
                u16::from_be_bytes([a[4], a[5]]),
            ))
        }
        3 => {
            let len = usize::from(r.read_u8().await?);
            let mut name = vec![0u8; len + 2];
            r.read_exact(&mut name).await?;
            let port = u16::from_be_bytes([name[len], name[len + 1]]);
            let name = String::from_utf8_lossy(&name[..len]).into_owned();
            Dest::Name(name, port)
        }
        4 => {
            let mut a = [0u8; 18];
            r.read_exact(&mut a).await?;
            let mut ip = [0u8; 16];
            ip.copy_from_slice(&a[..16]);
            Dest::Addr(SocketAddr::new(
                IpAddr::V6(Ipv6Addr::from(ip)),
                u16::from_be_bytes([a[16], a[17]]),
            ))
        }
        _ => return Ok(None),
    }))
}

/// A SOCKS address (ATYP, address, port) for a socket address.
fn encode_addr(out: &mut Vec<u8>, a: SocketAddr) {
    match a.ip() {
        IpAddr::V4(v4) => {
            out.push(1);
            out.extend_from_slice(&v4.octets());
        }
        IpAddr::V6(v6) => {
            out.push(4);
            out.extend_from_slice(&v6.octets());
        }
    }
    out.extend_from_slice(&a.port().to_be_bytes());
}

async fn reply(stream: &mut TcpStream, rep: u8, bound: SocketAddr) -> io::Result<()> {
    let mut r = vec![SOCKS_VERSION, rep, 0];
    encode_addr(&mut r, bound);
    stream.write_all(&r).await
}

fn rep_for(e: &privnet_core::io::embedded::NetError) -> u8 {
    use privnet_core::io::embedded::NetError as E;
    match e {
        E::Refused => REP_REFUSED,
        E::Unreachable => REP_NET_UNREACHABLE,
        E::UnknownName(_) | E::NameMismatch { .. } | E::NoIdentity => REP_HOST_UNREACHABLE,
        E::TimedOut => REP_TTL,
        _ => REP_FAILURE,
    }
}

async fn socks_session(node: Arc<EmbeddedNode>, mut stream: TcpStream) -> io::Result<()> {
    let unspecified = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0));
    // Greeting: version, methods; only "no authentication" (the proxy is on loopback).
    let mut head = [0u8; 2];
    stream.read_exact(&mut head).await?;
    if head[0] != SOCKS_VERSION {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "not SOCKS5"));
    }
    let mut methods = vec![0u8; usize::from(head[1])];
    stream.read_exact(&mut methods).await?;
    if !methods.contains(&0) {
        stream.write_all(&[SOCKS_VERSION, 0xff]).await?;
        return Ok(());
    }
    stream.write_all(&[SOCKS_VERSION, 0]).await?;
    // Request: version, command, reserved, address.
    let mut req = [0u8; 4];
    stream.read_exact(&mut req).await?;
    let Some(dest) = read_dest(&mut stream, req[3]).await? else {
        return reply(&mut stream, REP_ADDRESS_TYPE, unspecified).await;
    };
    match req[1] {
        1 => {
            let overlay = match node.tcp_connect(dest.target()).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(dest = %dest.target(), "socks connect: {e}");
                    return reply(&mut stream, rep_for(&e), unspecified).await;
                }
            };
            let mut overlay = overlay;
            reply(&mut stream, REP_OK, overlay.local_addr()).await?;
            let _ = stream.set_nodelay(true);
            let _ = tokio::io::copy_bidirectional(&mut stream, &mut overlay).await;
            Ok(())
        }
        3 => udp_associate(node, stream).await,
        _ => reply(&mut stream, REP_COMMAND, unspecified).await,
    }
}

/// UDP ASSOCIATE: a relay socket next to the proxy's address; datagrams from the client (its
/// TCP peer's address) carry a SOCKS header naming the overlay destination; answers come back
/// with the overlay sender in the header. The association ends with the TCP connection.
async fn udp_associate(node: Arc<EmbeddedNode>, mut stream: TcpStream) -> io::Result<()> {
    let client_ip = stream.peer_addr()?.ip();
    let bind_ip = stream.local_addr()?.ip();
    let relay = Arc::new(UdpSocket::bind(SocketAddr::new(bind_ip, 0)).await?);
    let overlay = match node.udp_bind(0) {
        Ok(s) => Arc::new(s),
        Err(_) => {
            return reply(
                &mut stream,
                REP_FAILURE,
                SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
            )
            .await
        }
    };
    reply(&mut stream, REP_OK, relay.local_addr()?).await?;
    let client: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
    // Overlay → client.
    let (relay2, overlay2, client2) = (relay.clone(), overlay.clone(), client.clone());
    let back = tokio::spawn(async move {
        let mut b = vec![0u8; UDP_MAX];
        while let Ok((n, from)) = overlay2.recv_from(&mut b).await {
            let to = *client2.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(to) = to {
                let mut d = vec![0, 0, 0];
                encode_addr(&mut d, from);
                d.extend_from_slice(&b[..n]);
                let _ = relay2.send_to(&d, to).await;
            }
        }
    });
    // Client → overlay, until the control connection closes.
    let forward = async {
        let mut b = vec![0u8; UDP_MAX];
        loop {
            let Ok((n, from)) = relay.recv_from(&mut b).await else {
                continue;
            };
            if from.ip() != client_ip {
                continue;
            }
            *client.lock().unwrap_or_else(PoisonError::into_inner) = Some(from);
            // RSV RSV FRAG ATYP ...: fragments are not supported (dropped).
            if n < 4 || b[2] != 0 {
                continue;
            }
            let atyp = b[3];
            let mut cur = io::Cursor::new(&b[4..n]);
            let Ok(Some(dest)) = read_dest(&mut cur, atyp).await else {
                continue;
            };
            let at = 4 + usize::try_from(cur.position()).unwrap_or(n);
            if let Some(data) = b.get(at..n) {
                let _ = overlay.send_to(data, dest.target()).await;
            }
        }
    };
    let mut sink = [0u8; 64];
    tokio::select! {
        () = forward => {}
        // The association lives as long as the control connection.
        _ = async { while stream.read(&mut sink).await.is_ok_and(|n| n > 0) {} } => {}
    }
    back.abort();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_allow_everyone_or_members_of_one() {
        assert!(allowed(&[], &[]));
        assert!(allowed(&["db".into()], &["x".into(), "db".into()]));
        assert!(!allowed(&["db".into()], &["web".into()]));
    }

    #[tokio::test]
    async fn socks_addresses_round_trip() {
        for a in ["10.77.0.3:5432", "[fd77::3]:80"] {
            let a: SocketAddr = a.parse().unwrap_or_else(|e| panic!("{e}"));
            let mut b = Vec::new();
            encode_addr(&mut b, a);
            let mut c = io::Cursor::new(&b[1..]);
            let d = read_dest(&mut c, b[0])
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(d, Some(Dest::Addr(a)));
        }
        let mut name = [2u8, b'd', b'b', 0x15, 0x38];
        let mut c = io::Cursor::new(&mut name[..]);
        let atyp = 3;
        assert_eq!(
            read_dest(&mut c, atyp)
                .await
                .unwrap_or_else(|e| panic!("{e}")),
            Some(Dest::Name("db".into(), 5432))
        );
    }
}
