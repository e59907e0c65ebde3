//! The status socket and the metrics endpoint (issue 13 item 10): the socket is private from the
//! moment it exists, the servers run off the drivers' thread, a flood of connections is bounded,
//! and a client that never reads cannot hold a slot for longer than the write timeout.
// A test: it reads the real clock or opens sockets (see clippy.toml).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]
#![allow(clippy::unwrap_used)]

mod support;

use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use privnet_core::identity::NoiseKeyPair;
use privnet_sidecar::metrics::serve_metrics;
use privnet_sidecar::server::{ServerThread, MAX_CONNECTIONS, WRITE_TIMEOUT};
use privnet_sidecar::status::{query_status, serve_status, Snapshots};
use privnet_sidecar::up::Supervisor;
use support::*;

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

#[test]
fn status_socket_is_private_from_the_start_and_replaces_only_stale_sockets() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run").join("privnet");
    let path = dir.join("status.sock");
    let servers = ServerThread::start().unwrap();
    let socket = serve_status(&path, Snapshots::default(), &servers).unwrap();
    // The directories it created: 0700 (they were created with the umask's 0755 before).
    assert_eq!(mode(&tmp.path().join("run")), 0o700);
    assert_eq!(mode(&dir), 0o700);
    // The socket: 0600, bound in a private staging directory that is gone again.
    assert_eq!(mode(&path), 0o600);
    let entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(entries, ["status.sock"]);
    assert!(query_status(&path).unwrap().is_empty());

    // In use: refused.
    let err = serve_status(&path, Snapshots::default(), &servers).unwrap_err();
    assert!(format!("{err:#}").contains("in use"), "{err:#}");
    // Not a socket: refused and left alone.
    let file = dir.join("not-a-socket");
    std::fs::write(&file, "keep").unwrap();
    let err = serve_status(&file, Snapshots::default(), &servers).unwrap_err();
    assert!(format!("{err:#}").contains("not a socket"), "{err:#}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep");
    // A directory others may write to (not sticky): refused; sticky like /tmp: accepted.
    let open = tmp.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let err = serve_status(&open.join("s.sock"), Snapshots::default(), &servers).unwrap_err();
    assert!(format!("{err:#}").contains("0777"), "{err:#}");
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
    serve_status(&open.join("s.sock"), Snapshots::default(), &servers)
        .unwrap()
        .remove();

    // A stale socket (its server gone) is replaced.
    servers.stop();
    assert!(path.exists());
    let servers = ServerThread::start().unwrap();
    let socket2 = serve_status(&path, Snapshots::default(), &servers).unwrap();
    assert!(query_status(&path).unwrap().is_empty());
    // The first handle's removal leaves the new socket alone; the second removes it.
    socket.remove();
    assert!(path.exists());
    socket2.remove();
    assert!(!path.exists());
}

fn http_get(addr: SocketAddr) -> std::io::Result<String> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")?;
    let mut body = String::new();
    s.read_to_string(&mut body)?;
    Ok(body)
}

/// A network of one member that knows `peers` peers (no endpoints: nothing but snapshots).
async fn network_with_peers(peers: u16) -> (Net, Supervisor, privnet_core::io::ChannelEnd) {
    let net = Net::new("servnet");
    let me = net.member("m1", 2);
    let mut tail = String::new();
    for i in 0..peers {
        let mut seed = [7u8; 32];
        seed[1..3].copy_from_slice(&i.to_be_bytes());
        let key = NoiseKeyPair::from_random(seed).public();
        let _ = write!(
            tail,
            "[[peer]]\nname = \"peer-{i}\"\npublic_key = \"{}\"\naddresses = [\"10.77.{}.{}\"]\n\n",
            STANDARD.encode(key),
            10 + i / 200,
            1 + i % 200
        );
    }
    let path = net.config(&me, &[], "", &tail);
    let cfg = load(&path);
    let mut sup = Supervisor::new(cfg.metrics, cfg.status, cfg.log, None);
    let (inner, app) = channel("m1");
    let mut networks = cfg.networks;
    sup.start_channel(networks.remove(0), inner).await.unwrap();
    (net, sup, app)
}

#[test]
fn servers_answer_while_the_drivers_thread_is_blocked() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (net, sup, _app) = network_with_peers(3).await;
        let servers = ServerThread::start().unwrap();
        let path = net.dir().join("status.sock");
        let _socket = serve_status(&path, sup.snapshots(), &servers).unwrap();
        let addr =
            serve_metrics("127.0.0.1:0".parse().unwrap(), sup.snapshots(), &servers).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let client_path = path.clone();
        std::thread::spawn(move || {
            let start = Instant::now();
            let status = query_status(&client_path).map(|v| v.len());
            let metrics = http_get(addr);
            let _ = tx.send((start.elapsed(), status, metrics));
        });
        // Block the runtime the drivers run on (this thread) well past the clients' timeouts:
        // servers on that runtime (as before) could not answer until it is free again.
        std::thread::sleep(Duration::from_secs(4));
        let (took, status, metrics) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(status.unwrap(), 1);
        let metrics = metrics.unwrap();
        assert!(metrics.starts_with("HTTP/1.1 200 OK"), "{metrics}");
        assert!(
            metrics.contains("privnet_up{network=\"servnet\"} 1"),
            "{metrics}"
        );
        assert!(
            took < Duration::from_secs(2),
            "answers took {took:?} while the drivers' thread was blocked"
        );
        sup.shutdown().await;
    });
}

#[tokio::test]
async fn a_connection_flood_is_bounded_and_a_slow_reader_loses_its_slot() {
    // 2,000 peers: a status document far larger than a socket buffer, so a client that does not
    // read blocks the server's write.
    let (net, sup, _app) = network_with_peers(2000).await;
    let servers = ServerThread::start().unwrap();
    let path = net.dir().join("status.sock");
    let _socket = serve_status(&path, sup.snapshots(), &servers).unwrap();
    let addr = serve_metrics("127.0.0.1:0".parse().unwrap(), sup.snapshots(), &servers).unwrap();
    let full = tokio::task::spawn_blocking({
        let path = path.clone();
        move || {
            serde_json::to_vec(&query_status(&path).unwrap())
                .unwrap()
                .len()
        }
    })
    .await
    .unwrap();
    assert!(full > 400_000, "status document of {full} bytes");

    let (status_refused, status_cut, metrics_refused, after) =
        tokio::task::spawn_blocking(move || {
            // MAX_CONNECTIONS + 10 clients that ask and never read.
            let mut flood: Vec<UnixStream> = (0..MAX_CONNECTIONS + 10)
                .map(|_| {
                    let mut s = UnixStream::connect(&path).unwrap();
                    // A refused connection may be closed before the request is written.
                    let _ = s.write_all(b"status\n");
                    s
                })
                .collect();
            // The same against the metrics endpoint, with clients that send nothing.
            let mut tcp: Vec<TcpStream> = (0..MAX_CONNECTIONS + 10)
                .map(|_| TcpStream::connect(addr).unwrap())
                .collect();
            std::thread::sleep(Duration::from_millis(500));
            let refused = |closed: &mut dyn FnMut(usize) -> bool, n: usize| {
                (0..n).filter(|i| closed(*i)).count()
            };
            // Refused: closed at once, without a byte (a reset when the request was left unread).
            let closed_unanswered = |r: std::io::Result<usize>| match r {
                Ok(0) => true,
                Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
                Ok(_) => false,
            };
            let status_refused = refused(
                &mut |i| {
                    let s = &mut flood[i];
                    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
                    let mut b = [0u8; 1];
                    closed_unanswered(s.read(&mut b))
                },
                MAX_CONNECTIONS + 10,
            );
            let metrics_refused = refused(
                &mut |i| {
                    let s = &mut tcp[i];
                    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
                    let mut b = [0u8; 1];
                    closed_unanswered(s.read(&mut b))
                },
                MAX_CONNECTIONS + 10,
            );
            // The slots of clients that do not read free up after the write timeout: a client
            // that reads is answered again soon after.
            let start = Instant::now();
            let answered = loop {
                match query_status(&path) {
                    Ok(v) if v.len() == 1 => break start.elapsed(),
                    _ if start.elapsed() > Duration::from_secs(10) => break start.elapsed(),
                    _ => std::thread::sleep(Duration::from_millis(100)),
                }
            };
            // A client that did not read got a cut document and the connection closed.
            let s = &mut flood[0];
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut got = Vec::new();
            let _ = s.read_to_end(&mut got);
            (status_refused, got.len(), metrics_refused, answered)
        })
        .await
        .unwrap();
    assert!(
        status_refused >= 10,
        "{status_refused} status connections refused of {}",
        MAX_CONNECTIONS + 10
    );
    assert!(
        metrics_refused >= 10,
        "{metrics_refused} metrics connections refused of {}",
        MAX_CONNECTIONS + 10
    );
    assert!(
        status_cut < full,
        "a client that did not read still got the whole document ({status_cut} of {full} bytes)"
    );
    assert!(
        after < WRITE_TIMEOUT + Duration::from_secs(3),
        "a reading client waited {after:?} after the flood"
    );
    sup.shutdown().await;
}
