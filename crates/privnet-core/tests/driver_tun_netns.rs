//! The library driver on a real TUN device (`Driver::tun`), in a network namespace of its own:
//! member A is a TUN driver, member B a driver with an in-memory inner side, both on 127.0.0.1 in
//! the namespace. Sockets in the namespace talk to B through A's TUN: UDP both ways (a UDP GSO
//! send becomes a USO super-packet that A segments; B's burst comes back through A's coalescer),
//! ICMP host unreachable (a failed TCP connect) for an address no peer owns, snapshots, and the device gone after
//! shutdown. Needs root (reported as skipped otherwise, see `support/privileged.rs`).
// A test: it reads the real clock or opens sockets (see clippy.toml).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]
#![cfg(all(target_os = "linux", feature = "driver"))]
#![allow(clippy::unwrap_used)]

#[path = "support/netns.rs"]
mod netns_harness;
#[path = "support/privileged.rs"]
mod privileged;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ipnetwork::IpNetwork;
use netns_harness::{step, Netns};
use privnet_core::crypto::StaticSecret;
use privnet_core::identity::{
    CaCertificate, CaKey, CaParams, CertVerifier, MemberCertificate, MemberParams, NetworkId,
    NoiseKeyPair, TrustStore,
};
use privnet_core::io::sys::netlink::Netlink;
use privnet_core::io::sys::udp::send_segments;
use privnet_core::io::{ChannelEnd, ChannelInner, Driver, DriverConfig, Identity, TunOptions};
use privnet_core::{CredentialVerifier, Node, NodeConfig, PeerConfig};
use tokio::net::UdpSocket;

const DAY: u64 = 86_400;
const PSK: [u8; 32] = [0x6d; 32];
const A: Ipv4Addr = Ipv4Addr::new(10, 202, 0, 1);
const B: Ipv4Addr = Ipv4Addr::new(10, 202, 0, 2);
const NOBODY: Ipv4Addr = Ipv4Addr::new(10, 202, 0, 99);

struct Member {
    keys: NoiseKeyPair,
    cert: MemberCertificate,
    verifier: Arc<CertVerifier>,
}

fn members() -> (Member, Member, [u8; 16]) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let ca_key = CaKey::from_seed([0x41; 32]);
    let ca = CaCertificate::self_signed(
        &ca_key,
        &CaParams {
            name: "tunnet".into(),
            network_id: NetworkId([0x42; 16]),
            prefixes: vec!["10.202.0.0/16".parse().unwrap()],
            routes: vec![],
            not_before: now - DAY,
            not_after: now + 365 * DAY,
        },
    )
    .unwrap();
    let member = |name: &str, addr: Ipv4Addr, seed: u8| {
        let keys = NoiseKeyPair::from_random([seed; 32]);
        let params = MemberParams {
            name: name.into(),
            addresses: vec![IpAddr::V4(addr)],
            routes: vec![],
            groups: vec![],
            public_key: keys.public(),
            not_before: now - DAY,
            not_after: now + 30 * DAY,
        };
        let cert = MemberCertificate::issue(&ca, &ca_key, &params).unwrap();
        let store = TrustStore::new(vec![ca.clone()]).unwrap();
        Member {
            keys,
            cert,
            verifier: Arc::new(CertVerifier::new(store)),
        }
    };
    (member("a", A, 1), member("b", B, 2), ca.network_id().0)
}

fn node(
    cfg: &DriverConfig,
    me: &Member,
    network_id: [u8; 16],
    peer: &Member,
    peer_ip: Ipv4Addr,
    endpoint: Option<SocketAddr>,
) -> Node {
    let verifier: Arc<dyn CredentialVerifier> = me.verifier.clone();
    let mut nc = NodeConfig::new(
        StaticSecret::from_bytes(*me.keys.secret()),
        PSK,
        network_id,
        verifier,
    );
    nc.credential(me.cert.to_bytes());
    let mut node = cfg.new_node(nc).unwrap();
    let mut pc = PeerConfig::new(peer.keys.public())
        .allowed_ip(IpNetwork::new(IpAddr::V4(peer_ip), 32).unwrap());
    pc.endpoint = endpoint;
    node.add_peer(pc, Instant::now()).unwrap();
    node
}

/// An IPv4/UDP packet (header checksum set, UDP checksum 0 = none).
fn udp4(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let (IpAddr::V4(s), IpAddr::V4(d)) = (src.ip(), dst.ip()) else {
        panic!("v4 only")
    };
    let total = (20 + 8 + payload.len()) as u16;
    let mut p = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0];
    p[2..4].copy_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&s.octets());
    p.extend_from_slice(&d.octets());
    let mut sum: u32 = p
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    p[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    p.extend_from_slice(&src.port().to_be_bytes());
    p.extend_from_slice(&dst.port().to_be_bytes());
    p.extend_from_slice(&(8 + payload.len() as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(payload);
    p
}

/// The next IPv4/UDP packet B's application receives to `port` (skipping anything else the
/// kernel sends through the TUN): (source, payload).
async fn recv_udp(app: &mut ChannelEnd, port: u16, what: &str) -> (SocketAddr, Vec<u8>) {
    step(what, async {
        loop {
            let p = app.recv().await.expect("B's driver runs");
            if p.len() < 28 || p[0] != 0x45 || p[9] != 17 {
                continue;
            }
            if u16::from_be_bytes([p[22], p[23]]) != port {
                continue;
            }
            let src = SocketAddr::new(
                IpAddr::V4(Ipv4Addr::new(p[12], p[13], p[14], p[15])),
                u16::from_be_bytes([p[20], p[21]]),
            );
            return (src, p[28..].to_vec());
        }
    })
    .await
}

#[test]
fn tun_driver_talks_to_a_channel_driver() {
    let Some(ns) = Netns::create("tun_driver_talks_to_a_channel_driver") else {
        return;
    };
    ns.run(|ns_name| async move {
        let mut nl = Netlink::new().unwrap();
        let lo = nl.link_index("lo").unwrap();
        nl.link_set_up(lo).unwrap();
        let (ma, mb, network_id) = members();

        let mut cfg_a = DriverConfig::new("tunnet", "127.0.0.1:0".parse().unwrap());
        cfg_a.addresses = vec!["10.202.0.1/16".parse().unwrap()];
        cfg_a.tun = TunOptions {
            name: "pnd0".into(),
            ..TunOptions::default()
        };
        let node_a = node(&cfg_a, &ma, network_id, &mb, B, None);
        let identity = Identity {
            verifier: ma.verifier.clone(),
            certificate: ma.cert.clone(),
        };
        let driver_a = Driver::tun(node_a, cfg_a, Some(identity)).await.unwrap();
        assert!(driver_a.inner().offload(), "this kernel has TUN offloads");
        let addr_a = driver_a.local_addr();

        let mut cfg_b = DriverConfig::new("tunnet", "127.0.0.1:0".parse().unwrap());
        cfg_b.addresses = vec!["10.202.0.2/16".parse().unwrap()];
        let node_b = node(&cfg_b, &mb, network_id, &ma, A, Some(addr_a));
        let (inner_b, mut app_b) = ChannelInner::new("mem-b", 256);
        let driver_b = Driver::new(node_b, cfg_b, None, inner_b).await.unwrap();
        let (mut handle_a, handle_b) = (driver_a.handle(), driver_b.handle());
        let task_a = tokio::spawn(driver_a.run());
        let task_b = tokio::spawn(driver_b.run());

        // A's application -> TUN -> driver A -> (handshake) -> driver B -> B's application.
        let sock = UdpSocket::bind(SocketAddr::new(A.into(), 0)).await.unwrap();
        let local = sock.local_addr().unwrap();
        let remote = SocketAddr::new(B.into(), 7);
        step("send", sock.send_to(b"through the tun", remote))
            .await
            .unwrap();
        let (src, payload) = recv_udp(&mut app_b, 7, "A -> B").await;
        assert_eq!((src, payload.as_slice()), (local, &b"through the tun"[..]));

        // B -> A: one packet, then a burst of one flow (merged by A's coalescer where it can).
        app_b.send(&udp4(remote, local, b"reply")).await.unwrap();
        let mut buf = [0u8; 2048];
        let (n, from) = step("B -> A", sock.recv_from(&mut buf)).await.unwrap();
        assert_eq!((from, &buf[..n]), (remote, &b"reply"[..]));
        for i in 0..16u8 {
            app_b.send(&udp4(remote, local, &[i; 700])).await.unwrap();
        }
        for i in 0..16u8 {
            let (n, _) = step("B's burst", sock.recv_from(&mut buf)).await.unwrap();
            assert_eq!(&buf[..n], &[i; 700][..], "datagram {i} of the burst");
        }

        // A UDP GSO send of 6 segments: a USO super-packet on the TUN (or 6 packets), segmented
        // and sealed by driver A.
        let data: Vec<u8> = (0..3000u32).map(|i| (i / 500) as u8).collect();
        let sent = send_segments(sock.as_raw_fd(), &data, 500, &remote);
        assert_eq!(sent.ok(), Some(3000));
        for k in 0..6u8 {
            let (_, payload) = recv_udp(&mut app_b, 7, "segments at B").await;
            assert_eq!(payload, vec![k; 500], "segment {k}");
        }

        // Nobody owns 10.202.0.99: A answers with ICMP host unreachable through the TUN.
        // (A TCP connect: UDP sockets do not report a host-unreachable error.)
        let connect = tokio::net::TcpSocket::new_v4()
            .unwrap()
            .connect(SocketAddr::new(NOBODY.into(), 80));
        let err = step("ICMP error", connect).await.expect_err("unreachable");
        assert_eq!(err.raw_os_error(), Some(libc::EHOSTUNREACH), "{err}");

        let deadline = Instant::now() + Duration::from_secs(5);
        let snap = loop {
            let s = handle_a.snapshot();
            if s.driver.contains_key("icmp_unreachable_sent")
                && s.peers.first().is_some_and(|p| p.established)
            {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "no snapshot with the ICMP answer: {s:?}"
            );
            step("snapshot", handle_a.snapshot_changed()).await.unwrap();
        };
        assert_eq!(snap.device, "pnd0");
        assert_eq!(snap.member, "a");
        assert_eq!(snap.addresses, ["10.202.0.1/16"]);
        assert!(snap.rx_packets >= 17 && snap.tx_packets >= 7, "{snap:?}");

        handle_a.shutdown().await.unwrap();
        handle_b.shutdown().await.unwrap();
        for t in [task_a, task_b] {
            let r = step("drivers stop", t).await;
            assert!(matches!(r, Ok(Ok(()))), "{r:?}");
        }
        // The device goes with the driver (not instantly: a concurrent fork may hold the fd).
        let mut gone = false;
        for _ in 0..100 {
            let out = std::process::Command::new("ip")
                .args(["-n", &ns_name, "link", "show", "pnd0"])
                .output()
                .unwrap();
            if !out.status.success() {
                gone = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(gone, "pnd0 still exists after shutdown");
    });
}
