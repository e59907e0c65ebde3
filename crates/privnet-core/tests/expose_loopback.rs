//! Exposures (`privnet_core::io::expose`) on 127.0.0.1 with kernel sockets, the target a local
//! backend (in a network, the overlay address the kernel routes into the TUN device): TCP and UDP
//! forwarding with the PROXY v2 header, refusals by block-list, allow-list, caps and the
//! connection rate, the byte budget, a reload of the block-lists, counters. Needs no privileges;
//! every wait is bounded.
// A test: it reads the real clock and opens sockets (see clippy.toml).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]
#![cfg(all(target_os = "linux", feature = "driver"))]
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use privnet_core::expose::proxy::{decode, Transport};
use privnet_core::expose::{parse_list, AdmissionConfig, Rate};
use privnet_core::io::expose::{Dialer, ExposeSpec, Exposure, ExposureSnapshot};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

const STEP: Duration = Duration::from_secs(5);

fn spec(listen: SocketAddr, target: SocketAddr) -> ExposeSpec {
    ExposeSpec {
        name: "web".into(),
        listen,
        tcp: true,
        udp: true,
        targets: vec![target],
        proxy_v2: true,
        admission: AdmissionConfig::default(),
        block_lists: Vec::new(),
        udp_idle: Duration::from_secs(5),
        connect_timeout: STEP,
    }
}

/// A TCP backend that answers each connection with the PROXY header's source address, then echoes.
async fn tcp_backend() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut have = 0;
                // Read until a whole header is in (bounded by the buffer).
                let h = loop {
                    let n = s.read(&mut buf[have..]).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    have += n;
                    if let Some(h) = decode(&buf[..have]) {
                        break h;
                    }
                    if have >= 64 {
                        let _ = s.write_all(b"no header\n").await;
                        return;
                    }
                };
                let (src, _) = h.addresses.unwrap();
                let _ = s.write_all(format!("{src}\n").as_bytes()).await;
                let _ = s.write_all(&buf[h.len..have]).await;
                let mut b = vec![0u8; 65536];
                while let Ok(n) = s.read(&mut b).await {
                    if n == 0 || s.write_all(&b[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// A UDP backend that answers each datagram with its PROXY header's transport and source.
async fn udp_backend() -> SocketAddr {
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = s.local_addr().unwrap();
    tokio::spawn(async move {
        let mut b = vec![0u8; 65536];
        while let Ok((n, from)) = s.recv_from(&mut b).await {
            let reply = match decode(&b[..n]) {
                Some(h) if h.transport == Some(Transport::Udp) => {
                    format!(
                        "{} {}",
                        h.addresses.unwrap().0,
                        String::from_utf8_lossy(&b[h.len..n])
                    )
                }
                _ => "no header".to_owned(),
            };
            let _ = s.send_to(reply.as_bytes(), from).await;
        }
    });
    addr
}

async fn free_port() -> SocketAddr {
    // A port free for TCP and UDP at once (the exposure binds both).
    for _ in 0..50 {
        let t = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = t.local_addr().unwrap();
        if UdpSocket::bind(a).await.is_ok() {
            return a;
        }
    }
    panic!("no port free for both TCP and UDP");
}

/// Connect and read the first line (the backend's view of the client), or `None` if the
/// connection is closed without one.
async fn first_line(to: SocketAddr, from: Option<SocketAddr>) -> Option<(String, TcpStream)> {
    let mut s = match from {
        None => TcpStream::connect(to).await.unwrap(),
        Some(f) => {
            let sock = tokio::net::TcpSocket::new_v4().unwrap();
            sock.bind(f).unwrap();
            sock.connect(to).await.unwrap()
        }
    };
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    loop {
        match tokio::time::timeout(STEP, s.read(&mut b))
            .await
            .expect("no answer in time")
        {
            Ok(1) if b[0] == b'\n' => return Some((String::from_utf8(line).unwrap(), s)),
            Ok(1) => line.push(b[0]),
            _ => return None,
        }
    }
}

fn refused(s: &ExposureSnapshot, reason: &str) -> u64 {
    s.refused.iter().find(|(r, _)| r == reason).unwrap().1
}

#[tokio::test]
async fn tcp_with_proxy_header_block_list_reload_and_caps() {
    let backend = tcp_backend().await;
    let listen = free_port().await;
    let mut sp = spec(listen, backend);
    sp.admission.max_per_source = Some(2);
    let e = Exposure::start(sp, Dialer::Kernel, None).await.unwrap();

    // Through, and the backend sees the client's address and port.
    let (line, mut s) = first_line(listen, None).await.unwrap();
    let local = s.local_addr().unwrap();
    assert_eq!(line, local.to_string());
    s.write_all(b"ping").await.unwrap();
    let mut b = [0u8; 4];
    tokio::time::timeout(STEP, s.read_exact(&mut b))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&b, b"ping");

    // A second connection fits the per-source cap of 2, a third does not.
    let (_, s2) = first_line(listen, None).await.unwrap();
    assert!(first_line(listen, None).await.is_none());
    assert_eq!(refused(&e.snapshot(), "source_cap"), 1);
    drop((s, s2));

    // Block 127.0.0.2 by reloading the lists: it is closed at once, 127.0.0.1 still gets in.
    let list = Arc::new(parse_list("block.netset", b"127.0.0.2 ; test\n").unwrap());
    e.set_block_lists(vec![("block.netset".into(), list)]);
    let from2: SocketAddr = "127.0.0.2:0".parse().unwrap();
    assert!(first_line(listen, Some(from2)).await.is_none());
    let deadline = Instant::now() + STEP;
    let (line, _s) = loop {
        // The two dropped connections are released when the relay notices: retry until then.
        if let Some(ok) = first_line(listen, None).await {
            break ok;
        }
        assert!(Instant::now() < deadline, "127.0.0.1 still refused");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(line.starts_with("127.0.0.1:"));
    let snap = e.snapshot();
    assert_eq!(refused(&snap, "block_listed"), 1);
    assert_eq!(snap.block_lists, vec![("block.netset".to_owned(), 1, 1)]);
    assert!(snap.admitted >= 3);
    assert!(snap.bytes_in >= 4 && snap.bytes_out >= 4);
    assert_eq!(snap.targets.len(), 1);
    assert!(!snap.targets[0].healthy, "no driver: no health");
}

#[tokio::test]
async fn allow_list_and_connection_rate() {
    let backend = tcp_backend().await;
    let listen = free_port().await;
    let mut sp = spec(listen, backend);
    sp.admission.allow = Some(Arc::new(
        parse_list("allow", b"127.0.0.1\n127.0.0.3\n").unwrap(),
    ));
    sp.admission.connection_rate = Some(Rate {
        per_second: 1,
        burst: 2,
    });
    let e = Exposure::start(sp, Dialer::Kernel, None).await.unwrap();
    let from4: SocketAddr = "127.0.0.4:0".parse().unwrap();
    assert!(first_line(listen, Some(from4)).await.is_none());
    assert_eq!(refused(&e.snapshot(), "not_allowed"), 1);
    // 127.0.0.1: a burst of 2, then refused; 127.0.0.3 is not affected.
    let mut ok = 0;
    for _ in 0..4 {
        ok += usize::from(first_line(listen, None).await.is_some());
    }
    assert!((2..=3).contains(&ok), "{ok} of 4 through at 1/s, burst 2");
    let from3: SocketAddr = "127.0.0.3:0".parse().unwrap();
    assert!(first_line(listen, Some(from3)).await.is_some());
    assert!(refused(&e.snapshot(), "connection_rate") >= 1);
}

#[tokio::test]
async fn tcp_byte_budget_slows_a_transfer_down() {
    let backend = tcp_backend().await;
    let listen = free_port().await;
    let mut sp = spec(listen, backend);
    sp.admission.byte_rate = Some(Rate {
        per_second: 100_000,
        burst: 20_000,
    });
    let e = Exposure::start(sp, Dialer::Kernel, None).await.unwrap();
    let (_, s) = first_line(listen, None).await.unwrap();
    let (mut r, mut w) = s.into_split();
    let t = Instant::now();
    // 60 kB up and 60 kB back: 120 kB against 100 kB/s with 20 kB of burst: at least ~0.9 s.
    let send = tokio::spawn(async move {
        w.write_all(&vec![7u8; 60_000]).await.unwrap();
        w
    });
    let mut got = vec![0u8; 60_000];
    tokio::time::timeout(Duration::from_secs(10), r.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    let _w = send.await.unwrap();
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(800), "{took:?}");
    assert!(e.snapshot().throttled > 0);
}

#[tokio::test]
async fn udp_flows_carry_the_header_and_block_lists_drop() {
    let backend = udp_backend().await;
    let listen = free_port().await;
    let mut sp = spec(listen, backend);
    sp.block_lists = vec![(
        "drop.txt".into(),
        Arc::new(parse_list("drop.txt", b"127.0.0.2/32 ; SBL1\n").unwrap()),
    )];
    let e = Exposure::start(sp, Dialer::Kernel, None).await.unwrap();
    let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    c.connect(listen).await.unwrap();
    let mut b = vec![0u8; 1500];
    for i in 0..3 {
        c.send(format!("hello{i}").as_bytes()).await.unwrap();
        let n = tokio::time::timeout(STEP, c.recv(&mut b))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&b[..n]),
            format!("{} hello{i}", c.local_addr().unwrap())
        );
    }
    let blocked = UdpSocket::bind("127.0.0.2:0").await.unwrap();
    blocked.send_to(b"x", listen).await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(500), blocked.recv(&mut b))
            .await
            .is_err()
    );
    let snap = e.snapshot();
    assert_eq!(snap.admitted, 1, "one flow for three datagrams");
    assert_eq!(snap.active, 1);
    assert_eq!(refused(&snap, "block_listed"), 1);
    assert_eq!(snap.protocols, "tcp+udp");
}
