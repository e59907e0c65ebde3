//! Embedded nodes (`io::embedded`: the userspace stack as the driver's inner side) over real UDP
//! sockets on 127.0.0.1, with a throwaway CA: a 50 MB stream verified by SHA-256, 100 concurrent
//! streams, UDP datagrams, refused and unreachable connections, the caller's identity on accept
//! equal to its certificate's, and a slow reader that never causes loss. Needs no privileges;
//! every wait is bounded.
// A test: it reads the real clock or opens sockets (see clippy.toml).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]
#![cfg(all(target_os = "linux", feature = "driver", feature = "stack"))]
#![allow(clippy::unwrap_used)]

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use privnet_core::io::embedded::{LocalNetwork, NetError, StackConfig};
use ring::digest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Bound of every scenario.
const LIMIT: Duration = Duration::from_secs(120);

async fn bounded<T>(what: &str, f: impl Future<Output = T>) -> T {
    match tokio::time::timeout(LIMIT, f).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: not done within {LIMIT:?}"),
    }
}

async fn pair(name: &str) -> LocalNetwork {
    LocalNetwork::builder(name)
        .member("server", &["servers", "db"])
        .member("client", &["clients"])
        .start()
        .await
        .unwrap()
}

/// Deterministic bytes: block `i` of a stream.
fn block(i: u64, len: usize) -> Vec<u8> {
    let mut x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[tokio::test]
async fn a_50_mb_stream_arrives_intact_and_the_caller_is_who_its_certificate_says() {
    bounded("50 MB", async {
        let net = pair("bulk").await;
        let (server, client) = (net.node("server").unwrap(), net.node("client").unwrap());
        let listener = server.tcp_listen(9000).unwrap();
        const TOTAL: usize = 50 * 1000 * 1000;
        const CHUNK: usize = 64 * 1024;
        let receiver = tokio::spawn(async move {
            let (mut stream, peer) = listener.accept().await.unwrap();
            let mut ctx = digest::Context::new(&digest::SHA256);
            let mut buf = vec![0u8; CHUNK];
            let mut got = 0usize;
            loop {
                let n = stream.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                ctx.update(&buf[..n]);
                got += n;
            }
            (got, ctx.finish(), peer, stream.peer_addr())
        });
        let start = Instant::now();
        let mut stream = client.tcp_connect("server:9000").await.unwrap();
        assert_eq!(stream.peer().name, "server");
        let mut ctx = digest::Context::new(&digest::SHA256);
        let mut sent = 0usize;
        let mut i = 0;
        while sent < TOTAL {
            let len = CHUNK.min(TOTAL - sent);
            let b = block(i, len);
            ctx.update(&b);
            stream.write_all(&b).await.unwrap();
            sent += len;
            i += 1;
        }
        stream.shutdown().await.unwrap();
        let want = ctx.finish();
        let (got, digest, peer, from) = receiver.await.unwrap();
        let secs = start.elapsed().as_secs_f64();
        eprintln!(
            "50 MB in {secs:.2} s: {:.0} Mbit/s (debug build)",
            TOTAL as f64 * 8.0 / secs / 1e6
        );
        assert_eq!(got, TOTAL);
        assert_eq!(digest.as_ref(), want.as_ref(), "SHA-256 of the stream");
        // The caller's identity is the one in its certificate, found through the session that
        // carried its SYN.
        let cert = net.certificate("client").unwrap();
        assert_eq!(*peer, cert.peer_identity(net.ca()));
        assert_eq!(peer.groups, ["clients"]);
        assert_eq!(from.ip(), IpAddr::V4(Ipv4Addr::new(10, 77, 0, 3)));
        // Nothing was dropped on the way for want of room.
        let snap = client.snapshot();
        assert!(
            !snap.drops.iter().any(|(r, _)| r == "buffer_too_small"),
            "{:?}",
            snap.drops
        );
        net.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_hundred_concurrent_streams() {
    bounded("100 streams", async {
        let net = pair("many").await;
        let (server, client) = (net.node("server").unwrap(), net.node("client").unwrap());
        let listener = server.tcp_listen(7).unwrap();
        // An echo server: one task per connection.
        let echo = tokio::spawn(async move {
            for _ in 0..100 {
                let (mut s, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        let n = s.read(&mut buf).await.unwrap();
                        if n == 0 {
                            break;
                        }
                        s.write_all(&buf[..n]).await.unwrap();
                    }
                    s.shutdown().await.unwrap();
                });
            }
        });
        let mut tasks = Vec::new();
        for i in 0..100u64 {
            let stream = client.tcp_connect("server:7");
            let data = block(i, 20_000 + i as usize * 100);
            tasks.push(async move {
                let mut stream = stream.await.unwrap();
                let (mut r, mut w) = tokio::io::split(&mut stream);
                let want = data.clone();
                let writer = async move {
                    w.write_all(&data).await.unwrap();
                    w.shutdown().await.unwrap();
                };
                let reader = async move {
                    let mut got = Vec::new();
                    r.read_to_end(&mut got).await.unwrap();
                    got
                };
                let ((), got) = tokio::join!(writer, reader);
                assert!(got == want, "stream {i} echoed intact");
            });
        }
        futures_join_all(tasks).await;
        echo.await.unwrap();
        net.shutdown().await;
    })
    .await;
}

/// Run futures concurrently on this task (no extra dependency).
async fn futures_join_all<F: Future<Output = ()>>(futs: Vec<F>) {
    let mut set = Vec::new();
    for f in futs {
        set.push(Box::pin(f));
    }
    std::future::poll_fn(|cx| {
        set.retain_mut(|f| f.as_mut().poll(cx).is_pending());
        if set.is_empty() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
}

#[tokio::test]
async fn udp_datagrams_both_ways_with_the_senders_identity() {
    bounded("UDP", async {
        let net = pair("dgram").await;
        let (server, client) = (net.node("server").unwrap(), net.node("client").unwrap());
        let s = server.udp_bind(5353).unwrap();
        let c = client.udp_bind(0).unwrap();
        // Ping-pong: request/response, 50 times.
        for i in 0..50u64 {
            let msg = block(i, 100 + i as usize * 20);
            c.send_to(&msg, "server:5353").await.unwrap();
            let mut buf = vec![0u8; 2048];
            let (n, from) = s.recv_from(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], &msg[..]);
            assert_eq!(from, c.local_addr());
            assert_eq!(server.peer_identity(from.ip()).unwrap().name, "client");
            s.send_to(&buf[..n], from).await.unwrap();
            let (n, back) = c.recv_from(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], &msg[..]);
            assert_eq!(back.port(), 5353);
        }
        // A burst that fits the receive buffer: every datagram arrives, in order.
        for i in 0..100u64 {
            c.send_to(&block(1000 + i, 1000), "server:5353")
                .await
                .unwrap();
        }
        let mut buf = vec![0u8; 2048];
        for i in 0..100u64 {
            let (n, _) = s.recv_from(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], &block(1000 + i, 1000)[..], "datagram {i}");
        }
        // Too big for one packet of the tunnel: refused, not fragmented.
        let big = vec![0u8; 1500];
        assert!(matches!(
            c.send_to(&big, "server:5353").await,
            Err(NetError::TooBig { .. })
        ));
        net.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn refused_unreachable_and_unknown_connections_fail_fast() {
    bounded("refusals", async {
        let net = pair("refuse").await;
        let client = net.node("client").unwrap();
        // Nothing listens on the port: the server's stack answers with a reset.
        let t = Instant::now();
        let r = client.tcp_connect("server:81").await;
        assert!(matches!(r, Err(NetError::Refused)), "{r:?}");
        // No member owns the address: the core has no route, the connect fails at once.
        let r = client
            .tcp_connect(SocketAddr::new(Ipv4Addr::new(10, 77, 0, 99).into(), 80))
            .await;
        assert!(matches!(r, Err(NetError::Unreachable)), "{r:?}");
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
        // Names only the members have.
        assert!(matches!(
            client.tcp_connect("nobody:80").await,
            Err(NetError::UnknownName(_))
        ));
        assert!(matches!(
            client.tcp_connect("server").await,
            Err(NetError::BadAddress(_))
        ));
        let members = client.members();
        assert_eq!(members.len(), 1);
        assert_eq!(members[0].name, "server");
        assert!(members[0].verified, "{members:?}");
        // A port can be listened on once.
        let l = client.tcp_listen(80).unwrap();
        assert!(matches!(client.tcp_listen(80), Err(NetError::AddrInUse)));
        drop(l);
        assert!(client.tcp_listen(80).is_ok());
        net.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_slow_reader_slows_the_writer_and_loses_nothing() {
    bounded("slow reader", async {
        let mut cfg = StackConfig::default();
        cfg.tcp_rx_buffer = 64 << 10;
        cfg.tcp_tx_buffer = 64 << 10;
        let net = LocalNetwork::builder("slow")
            .member("server", &[])
            .member("client", &[])
            .stack(cfg)
            .start()
            .await
            .unwrap();
        let (server, client) = (net.node("server").unwrap(), net.node("client").unwrap());
        let listener = server.tcp_listen(9).unwrap();
        const TOTAL: usize = 4 << 20;
        let reader = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut ctx = digest::Context::new(&digest::SHA256);
            let mut buf = vec![0u8; 8192];
            let mut got = 0;
            let start = Instant::now();
            // 4 MiB at about 8 KiB per 2 ms ≈ 4 MB/s: a second or so.
            loop {
                let n = s.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                ctx.update(&buf[..n]);
                got += n;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            (got, ctx.finish(), start.elapsed())
        });
        let mut stream = client.tcp_connect("server:9").await.unwrap();
        let mut ctx = digest::Context::new(&digest::SHA256);
        let mut written = 0;
        let mut max_queued = 0;
        let mut i = 0;
        while written < TOTAL {
            let b = block(i, 32 * 1024);
            ctx.update(&b);
            stream.write_all(&b).await.unwrap();
            written += b.len();
            // The writer can be ahead of the reader by at most both buffers (plus one write).
            let (unacked, _) = stream.queued();
            max_queued = max_queued.max(unacked);
            i += 1;
        }
        stream.shutdown().await.unwrap();
        let (got, digest, took) = reader.await.unwrap();
        assert_eq!(got, TOTAL);
        assert_eq!(digest.as_ref(), ctx.finish().as_ref());
        assert!(max_queued <= 64 << 10, "{max_queued}");
        assert!(
            took > Duration::from_millis(500),
            "the reader set the pace: {took:?}"
        );
        for node in [server, client] {
            let snap = node.snapshot();
            // Handshake races (both sides initiate at once) are not data; these would be.
            let lost = [
                "queue_full",
                "buffer_too_small",
                "too_big",
                "no_route",
                "no_endpoint",
            ];
            assert!(
                !snap.drops.iter().any(|(r, _)| lost.contains(&r.as_str())),
                "{:?}",
                snap.drops
            );
            assert!(
                !snap
                    .driver
                    .keys()
                    .any(|k| k.ends_with("_error") || k == "stack_udp_rx_full"),
                "{:?}",
                snap.driver
            );
        }
        net.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn two_networks_in_one_process_do_not_mix() {
    bounded("two networks", async {
        let a = pair("neta").await;
        let b = LocalNetwork::builder("netb")
            .prefix(Ipv4Addr::new(10, 78, 0, 0))
            .member("server", &[])
            .member("client", &[])
            .start()
            .await
            .unwrap();
        let la = a.node("server").unwrap().tcp_listen(80).unwrap();
        let lb = b.node("server").unwrap().tcp_listen(80).unwrap();
        let ta = tokio::spawn(async move { la.accept().await.map(|(_, p)| p.name.clone()) });
        let tb = tokio::spawn(async move { lb.accept().await.map(|(_, p)| p.fingerprint) });
        let sa = a
            .node("client")
            .unwrap()
            .tcp_connect("server:80")
            .await
            .unwrap();
        let sb = b
            .node("client")
            .unwrap()
            .tcp_connect("server:80")
            .await
            .unwrap();
        assert_eq!(sa.peer_addr().ip(), IpAddr::V4(Ipv4Addr::new(10, 77, 0, 2)));
        assert_eq!(sb.peer_addr().ip(), IpAddr::V4(Ipv4Addr::new(10, 78, 0, 2)));
        assert_eq!(ta.await.unwrap().unwrap(), "client");
        assert_eq!(
            tb.await.unwrap().unwrap(),
            b.certificate("client").unwrap().fingerprint().0
        );
        // Network A's client cannot reach network B's addresses.
        let r = a.node("client").unwrap().tcp_connect("10.78.0.2:80").await;
        assert!(matches!(r, Err(NetError::Unreachable)), "{r:?}");
        a.shutdown().await;
        b.shutdown().await;
    })
    .await;
}

/// The access policy applies to the embedded stack as to a TUN: `reject` answers the SYN with a
/// reset (the connect fails at once with "refused"), `deny` drops it (no connection, the listener
/// never sees a caller), and a port no rule refuses still connects.
#[cfg(feature = "policy-toml")]
#[tokio::test]
async fn the_policy_refuses_connections_over_the_embedded_stack() {
    use std::sync::Arc;

    use privnet_core::policy::{compile, parse_policy};

    const POLICY: &str = r#"
default = "allow"

[[platform]]
id = "no-telnet"
action = "reject"
from = "any"
to = "any"
proto = "tcp"
ports = [23]

[[application]]
id = "clients-not-to-admin"
action = "reject"
from = { groups = { any = ["clients"] } }
to = { groups = { any = ["servers"] } }
proto = "tcp"
ports = [2345]

[[application]]
id = "db-for-servers-only"
action = "deny"
from = { groups = { any = ["clients"] } }
to = "any"
proto = "tcp"
ports = [5432]
"#;
    let policy = compile(&parse_policy(POLICY, "policy.toml").unwrap(), "policy.toml").unwrap();
    bounded("policy", async {
        let net = LocalNetwork::builder("policynet")
            .member("server", &["servers", "db"])
            .member("client", &["clients"])
            .policy(Arc::new(policy))
            .start()
            .await
            .unwrap();
        let (server, client) = (net.node("server").unwrap(), net.node("client").unwrap());
        // Sessions first: before its handshake a peer has no verified identity for the policy
        // to match (the sender drops such packets as unknown_peer; TCP would retry).
        let deadline = Instant::now() + Duration::from_secs(10);
        let up = |n: &privnet_core::io::embedded::EmbeddedNode| {
            let s = n.snapshot();
            !s.peers.is_empty() && s.peers.iter().all(|p| p.established)
        };
        while !(up(client) && up(server)) {
            assert!(Instant::now() < deadline, "sessions not established");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let telnet = server.tcp_listen(23).unwrap();
        let db = server.tcp_listen(5432).unwrap();
        let web = server.tcp_listen(80).unwrap();

        // Allowed: the session comes up and a connection works (so what follows is the policy).
        let mut ok = client.tcp_connect("server:80").await.unwrap();
        let (mut accepted, who) = web.accept().await.unwrap();
        assert_eq!(who.name, "client");
        ok.write_all(b"allowed").await.unwrap();
        let mut b = [0u8; 7];
        accepted.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"allowed");

        // reject: refused, fast (a reset, not the 15 s connect timeout).
        let t0 = Instant::now();
        let r = client.tcp_connect("server:23").await;
        assert!(matches!(r, Err(NetError::Refused)), "{r:?}");
        assert!(
            t0.elapsed() < Duration::from_secs(2),
            "refused after {:?}",
            t0.elapsed()
        );

        // reject by a group rule (the caller's and the callee's certificates).
        let admin = server.tcp_listen(2345).unwrap();
        let t0 = Instant::now();
        let r = client.tcp_connect("server:2345").await;
        assert!(matches!(r, Err(NetError::Refused)), "{r:?}");
        assert!(
            t0.elapsed() < Duration::from_secs(2),
            "refused after {:?}",
            t0.elapsed()
        );
        drop(admin);

        // deny: no connection within 3 s, and the listener never sees a caller.
        let r =
            tokio::time::timeout(Duration::from_secs(3), client.tcp_connect("server:5432")).await;
        assert!(
            matches!(r, Err(_) | Ok(Err(NetError::TimedOut))),
            "a denied connect must not succeed: {r:?}"
        );
        let r = tokio::time::timeout(Duration::from_millis(300), db.accept()).await;
        assert!(r.is_err(), "the denied caller reached the listener");
        let r = tokio::time::timeout(Duration::from_millis(100), telnet.accept()).await;
        assert!(r.is_err(), "the rejected caller reached the listener");

        // The refusals are counted by the members that enforce the rules.
        let denied = |n: &privnet_core::io::embedded::EmbeddedNode| {
            let s = n.snapshot();
            let count = |reason: &str| {
                s.drops
                    .iter()
                    .find(|(r, _)| r == reason)
                    .map_or(0, |(_, n)| *n)
            };
            (count("policy_rejected"), count("policy_denied"))
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let (rc, dc) = denied(client);
            let (rs, ds) = denied(server);
            if rc + rs > 0 && dc + ds > 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no policy drops counted: client {:?} server {:?}",
                denied(client),
                denied(server)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        net.shutdown().await;
    })
    .await;
}
