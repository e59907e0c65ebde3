//! `tun.mode = "userspace"` end to end, without root: a member started by `userspace::start` (the
//! code `privnet up` runs for such a network) joins a throwaway network whose other member, "db",
//! is an embedded node; through the sidecar's local port forward (TCP and UDP), its published
//! service (with a group check) and its SOCKS5 proxy (CONNECT by name, UDP ASSOCIATE) traffic
//! reaches db and comes back. Every wait is bounded.
// A test: it reads the real clock or opens sockets (see clippy.toml).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]
#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ipnetwork::IpNetwork;
use privnet_core::crypto::StaticSecret;
use privnet_core::identity::{CertVerifier, MemberCertificate, MemberParams, NoiseKeyPair};
use privnet_core::io::embedded::LocalNetwork;
use privnet_core::io::{DriverConfig, Identity};
use privnet_core::{CredentialVerifier, NodeConfig, PeerConfig};
use privnet_sidecar::config::{Forward, Protocol, Publish, UserspaceSettings};
use privnet_sidecar::userspace;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

const LIMIT: Duration = Duration::from_secs(60);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn forwards_published_services_and_the_socks_proxy() {
    tokio::time::timeout(LIMIT, scenario())
        .await
        .expect("bounded");
}

async fn scenario() {
    let net = LocalNetwork::builder("usnet")
        .member("db", &["servers"])
        .start()
        .await
        .unwrap();
    let db = net.node("db").unwrap();
    // db: a TCP echo on 5432, a UDP echo on 5353.
    let l = db.tcp_listen(5432).unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = tokio::io::split(&mut s);
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    let u = db.udp_bind(5353).unwrap();
    tokio::spawn(async move {
        let mut b = vec![0u8; 2048];
        while let Ok((n, from)) = u.recv_from(&mut b).await {
            let _ = u.send_to(&b[..n], from).await;
        }
    });

    // The sidecar member "side" (10.77.0.9, group "ops"), certified by the same CA.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let keys = NoiseKeyPair::from_random([0x42; 32]);
    let side_ip = Ipv4Addr::new(10, 77, 0, 9);
    let cert = MemberCertificate::issue(
        net.ca(),
        net.ca_key(),
        &MemberParams {
            name: "side".into(),
            addresses: vec![IpAddr::V4(side_ip)],
            routes: vec![],
            groups: vec!["ops".into()],
            public_key: keys.public(),
            not_before: now - 60,
            not_after: now + 86_400,
        },
    )
    .unwrap();
    let verifier = Arc::new(CertVerifier::new(
        privnet_core::identity::TrustStore::new(vec![net.ca().clone()]).unwrap(),
    ));
    let dyn_verifier: Arc<dyn CredentialVerifier> = verifier.clone();
    let mut node_cfg = NodeConfig::new(
        StaticSecret::from_bytes(*keys.secret()),
        net.psk(),
        net.ca().network_id().0,
        dyn_verifier,
    );
    node_cfg.credential(cert.to_bytes());
    let mut dcfg = DriverConfig::new("usnet", "127.0.0.1:0".parse().unwrap());
    dcfg.addresses = vec![IpNetwork::new(IpAddr::V4(side_ip), 16).unwrap()];
    let db_cert = net.certificate("db").unwrap();
    dcfg.peer_names.insert(db_cert.public_key(), "db".into());
    let mut node = dcfg.new_node(node_cfg).unwrap();
    node.add_peer(
        PeerConfig::new(db_cert.public_key())
            .endpoint(db.local_addr())
            .allowed_ip("10.77.0.2/32".parse().unwrap()),
        std::time::Instant::now(),
    )
    .unwrap();
    // A local service to publish: an uppercase echo.
    let service = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let service_addr = service.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = service.accept().await {
            tokio::spawn(async move {
                let mut b = vec![0u8; 1024];
                while let Ok(n) = s.read(&mut b).await {
                    if n == 0 {
                        break;
                    }
                    let up = b[..n].to_ascii_uppercase();
                    if s.write_all(&up).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    let (fwd_tcp, fwd_udp, socks) = (free_port(), free_udp_port(), free_port());
    let settings = UserspaceSettings {
        socks: Some(SocketAddr::from((Ipv4Addr::LOCALHOST, socks))),
        forwards: vec![
            Forward {
                listen: SocketAddr::from((Ipv4Addr::LOCALHOST, fwd_tcp)),
                to: "db:5432".into(),
                protocol: Protocol::Tcp,
            },
            Forward {
                listen: SocketAddr::from((Ipv4Addr::LOCALHOST, fwd_udp)),
                to: "10.77.0.2:5353".into(),
                protocol: Protocol::Udp,
            },
        ],
        publish: vec![
            Publish {
                port: 80,
                to: service_addr,
                protocol: Protocol::Tcp,
                groups: vec!["servers".into()],
            },
            Publish {
                port: 81,
                to: service_addr,
                protocol: Protocol::Tcp,
                groups: vec!["admins".into()],
            },
        ],
    };
    let identity = Identity {
        verifier,
        certificate: cert,
    };
    let (handle, task, dialer) = userspace::start(node, dcfg, identity, &settings)
        .await
        .unwrap();

    // 0. An exposure (`[[expose]]`) of this userspace member: outside TCP on a local port, dialled
    // through the embedded stack to db:5432.
    let expose_port = free_port();
    let spec = privnet_core::io::expose::ExposeSpec {
        name: "db".into(),
        listen: SocketAddr::from((Ipv4Addr::LOCALHOST, expose_port)),
        tcp: true,
        udp: false,
        targets: vec!["10.77.0.2:5432".parse().unwrap()],
        proxy_v2: false,
        admission: privnet_core::expose::AdmissionConfig::default(),
        block_lists: Vec::new(),
        udp_idle: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(10),
    };
    let exposure = privnet_core::io::expose::Exposure::start(spec, dialer, Some(handle.clone()))
        .await
        .unwrap();
    let mut s = TcpStream::connect(("127.0.0.1", expose_port))
        .await
        .unwrap();
    s.write_all(b"through the exposure").await.unwrap();
    let mut b = [0u8; 20];
    s.read_exact(&mut b).await.unwrap();
    assert_eq!(&b, b"through the exposure");
    drop(s);
    assert_eq!(exposure.snapshot().admitted, 1);
    // The driver publishes its peer states at most once a second: db's session shows within 3 s.
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while !exposure.snapshot().targets[0].healthy {
        assert!(
            std::time::Instant::now() < deadline,
            "db has a session: {:?}",
            exposure.snapshot()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // 1. Local TCP forward 127.0.0.1:fwd_tcp -> db:5432.
    let mut s = TcpStream::connect(("127.0.0.1", fwd_tcp)).await.unwrap();
    s.write_all(b"through the forward").await.unwrap();
    let mut b = [0u8; 19];
    s.read_exact(&mut b).await.unwrap();
    assert_eq!(&b, b"through the forward");
    drop(s);

    // 2. Local UDP forward -> 10.77.0.2:5353.
    let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    c.send_to(b"udp via forward", ("127.0.0.1", fwd_udp))
        .await
        .unwrap();
    let mut b = [0u8; 64];
    let (n, _) = c.recv_from(&mut b).await.unwrap();
    assert_eq!(&b[..n], b"udp via forward");

    // 3. The published service: db (group servers) is let in on port 80, not on port 81.
    let mut o = db
        .tcp_connect(SocketAddr::new(IpAddr::V4(side_ip), 80))
        .await
        .unwrap();
    assert_eq!(o.peer().name, "side");
    o.write_all(b"hello").await.unwrap();
    let mut b = [0u8; 5];
    o.read_exact(&mut b).await.unwrap();
    assert_eq!(&b, b"HELLO");
    let mut denied = db
        .tcp_connect(SocketAddr::new(IpAddr::V4(side_ip), 81))
        .await
        .unwrap();
    let mut rest = Vec::new();
    let r = denied.read_to_end(&mut rest).await;
    assert!(r.is_ok() && rest.is_empty(), "closed without an answer");

    // 4. SOCKS5 CONNECT to db:5432 by name.
    let mut p = TcpStream::connect(("127.0.0.1", socks)).await.unwrap();
    p.write_all(&[5, 1, 0]).await.unwrap();
    let mut m = [0u8; 2];
    p.read_exact(&mut m).await.unwrap();
    assert_eq!(m, [5, 0]);
    let mut req = vec![5, 1, 0, 3, 2];
    req.extend_from_slice(b"db");
    req.extend_from_slice(&5432u16.to_be_bytes());
    p.write_all(&req).await.unwrap();
    let mut rep = [0u8; 10];
    p.read_exact(&mut rep).await.unwrap();
    assert_eq!(rep[1], 0, "CONNECT succeeded: {rep:?}");
    p.write_all(b"socks!").await.unwrap();
    let mut b = [0u8; 6];
    p.read_exact(&mut b).await.unwrap();
    assert_eq!(&b, b"socks!");
    drop(p);
    // CONNECT to a port nothing listens on: refused (5).
    let mut p = TcpStream::connect(("127.0.0.1", socks)).await.unwrap();
    p.write_all(&[5, 1, 0]).await.unwrap();
    p.read_exact(&mut m).await.unwrap();
    p.write_all(&[5, 1, 0, 1, 10, 77, 0, 2, 0, 99])
        .await
        .unwrap();
    p.read_exact(&mut rep).await.unwrap();
    assert_eq!(rep[1], 5, "connection refused: {rep:?}");
    drop(p);

    // 5. SOCKS5 UDP ASSOCIATE to db:5353.
    let mut p = TcpStream::connect(("127.0.0.1", socks)).await.unwrap();
    p.write_all(&[5, 1, 0]).await.unwrap();
    p.read_exact(&mut m).await.unwrap();
    p.write_all(&[5, 3, 0, 1, 0, 0, 0, 0, 0, 0]).await.unwrap();
    p.read_exact(&mut rep).await.unwrap();
    assert_eq!(rep[1], 0, "UDP ASSOCIATE: {rep:?}");
    let relay = SocketAddr::from((
        Ipv4Addr::new(rep[4], rep[5], rep[6], rep[7]),
        u16::from_be_bytes([rep[8], rep[9]]),
    ));
    let u = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut d = vec![0, 0, 0, 1, 10, 77, 0, 2];
    d.extend_from_slice(&5353u16.to_be_bytes());
    d.extend_from_slice(b"udp via socks");
    u.send_to(&d, relay).await.unwrap();
    let mut b = [0u8; 128];
    let (n, _) = u.recv_from(&mut b).await.unwrap();
    assert_eq!(&b[..4], &[0, 0, 0, 1]);
    assert_eq!(&b[4..8], &[10, 77, 0, 2], "from db");
    assert_eq!(&b[10..n], b"udp via socks");
    drop(p);

    // The supervising task ends with the driver.
    handle.shutdown().await.unwrap();
    let r = tokio::time::timeout(Duration::from_secs(10), task).await;
    assert!(matches!(r, Ok(Ok(Ok(())))), "{r:?}");
    net.shutdown().await;
}

#[test]
fn the_userspace_section_parses_and_unknown_keys_are_named() {
    let text = r#"
[node]
network = "n"
private_key = "k"
certificate = "c"
ca_certificates = ["ca"]
network_psk = "p"

[tun]
mode = "userspace"

[userspace]
socks = "127.0.0.1:1080"

[[userspace.forward]]
listen = "127.0.0.1:5432"
to = "db:5432"

[[userspace.forward]]
listen = "127.0.0.1:8125"
to = "metrics:8125"
protocol = "udp"

[[userspace.publish]]
port = 80
to = "127.0.0.1:8080"
groups = ["web-clients"]
"#;
    let (cfg, problems) = privnet_sidecar::config::parse_str(text, std::path::Path::new("x.toml"));
    assert!(problems.is_empty(), "{problems:?}");
    let u = cfg.userspace.unwrap();
    assert_eq!(u.socks, Some("127.0.0.1:1080".parse().unwrap()));
    assert_eq!(u.forward.len(), 2);
    assert_eq!(u.forward[1].protocol, Protocol::Udp);
    assert_eq!(u.publish[0].groups, ["web-clients"]);
    let (_, problems) = privnet_sidecar::config::parse_str(
        &text.replace("socks =", "sox ="),
        std::path::Path::new("x.toml"),
    );
    assert!(
        problems.iter().any(|p| p.key == "userspace.sox"),
        "{problems:?}"
    );
}
