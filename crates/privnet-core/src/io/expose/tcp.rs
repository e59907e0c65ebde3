//! TCP: accept, admit, dial the chosen target, write the PROXY v2 header, relay both ways within the
//! source's byte budget.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::state::{Dialer, Shared};
use crate::expose::proxy::{self, Transport};
use crate::expose::Refusal;

/// Relay chunk; at most one byte-budget check per chunk.
const CHUNK: usize = 16 * 1024;

/// Accept connections until the task is aborted.
pub(super) async fn serve(shared: Arc<Shared>, listener: TcpListener) {
    loop {
        let (client, from) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of descriptors and the like: back off instead of spinning.
                tracing::warn!(exposure = %shared.spec.name, "accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Refused: the stream is dropped here, which closes the connection.
        let Ok(target) = shared.admit(from, "tcp") else {
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let local = client.local_addr().unwrap_or(shared.spec.listen);
            connection(&shared, client, from, local, target).await;
            shared.release(from.ip(), target);
        });
    }
}

async fn connection(
    shared: &Shared,
    client: TcpStream,
    from: SocketAddr,
    local: SocketAddr,
    target: usize,
) {
    let Some(&to) = shared.spec.targets.get(target) else {
        return;
    };
    let _ = client.set_nodelay(true);
    let timeout = shared.spec.connect_timeout;
    match &shared.dialer {
        Dialer::Kernel => match tokio::time::timeout(timeout, TcpStream::connect(to)).await {
            Ok(Ok(backend)) => {
                let _ = backend.set_nodelay(true);
                relay(shared, client, backend, from, local).await;
            }
            Ok(Err(e)) => unreachable_target(shared, from, to, &e.to_string()),
            Err(_) => unreachable_target(shared, from, to, "connect timed out"),
        },
        #[cfg(feature = "stack")]
        Dialer::Embedded(node) => match tokio::time::timeout(timeout, node.tcp_connect(to)).await {
            Ok(Ok(backend)) => relay(shared, client, backend, from, local).await,
            Ok(Err(e)) => unreachable_target(shared, from, to, &e.to_string()),
            Err(_) => unreachable_target(shared, from, to, "connect timed out"),
        },
    }
}

fn unreachable_target(shared: &Shared, from: SocketAddr, to: SocketAddr, why: &str) {
    tracing::debug!(exposure = %shared.spec.name, client = %from, target = %to, "target: {why}");
    shared.refuse(from, "tcp", Refusal::TargetUnreachable);
}

async fn relay<B>(
    shared: &Shared,
    client: TcpStream,
    backend: B,
    from: SocketAddr,
    local: SocketAddr,
) where
    B: AsyncRead + AsyncWrite + Unpin,
{
    let (mut cr, mut cw) = client.into_split();
    let (mut br, mut bw) = tokio::io::split(backend);
    if shared.spec.proxy_v2 {
        let mut header = Vec::with_capacity(proxy::MAX_HEADER);
        proxy::encode(&mut header, Transport::Tcp, from, local);
        if bw.write_all(&header).await.is_err() {
            return;
        }
    }
    let up = pump(shared, &mut cr, &mut bw, from, &shared.bytes_in);
    let down = pump(shared, &mut br, &mut cw, from, &shared.bytes_out);
    // Both directions until each ends (a half-close is passed on by the pump's shutdown); an error
    // either way ends both.
    tokio::pin!(up, down);
    let (mut up_done, mut down_done) = (false, false);
    while !(up_done && down_done) {
        let failed = tokio::select! {
            r = &mut up, if !up_done => { up_done = true; r.is_err() }
            r = &mut down, if !down_done => { down_done = true; r.is_err() }
        };
        if failed {
            break;
        }
    }
}

/// Copy `r` to `w` chunk by chunk, each within the source's byte budget; shut `w` down at the end.
async fn pump<R, W>(
    shared: &Shared,
    r: &mut R,
    w: &mut W,
    from: SocketAddr,
    count: &AtomicU64,
) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            return w.shutdown().await;
        }
        shared.throttle(from.ip(), n).await;
        w.write_all(&buf[..n]).await?;
        count.fetch_add(n as u64, Ordering::Relaxed);
    }
}
