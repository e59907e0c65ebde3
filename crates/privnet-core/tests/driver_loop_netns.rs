//! The routing loop through roaming (issue 13 item 2, the nebula#741 class), with the kernel in the
//! loop: member A is a TUN driver listening on 0.0.0.0:51820 in a network namespace of its own,
//! member B a driver with an in-memory inner side on 127.0.0.1 in the same namespace. B sends,
//! *inside the tunnel*, a valid handshake initiation (made by a second node holding B's keys) from
//! its overlay address to A's overlay address and port 51820: A's driver delivers it to the TUN,
//! the kernel hands it to A's own underlay socket, and A must refuse it as `endpoint_in_overlay`
//! without moving B's endpoint to B's overlay address (which would send every packet for B through
//! A's own TUN, growing by 60 bytes a pass). Traffic keeps flowing both ways afterwards. Needs root
//! (reported as skipped otherwise, see `support/privileged.rs`); only addresses inside the
//! namespace the test creates are used, and the namespace is removed even on failure.
// A test: it reads the real clock or opens sockets (see clippy.toml).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]
#![cfg(all(target_os = "linux", feature = "driver"))]
#![allow(clippy::unwrap_used)]

#[path = "support/netns.rs"]
mod netns_harness;
#[path = "support/privileged.rs"]
mod privileged;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
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
use privnet_core::io::{ChannelEnd, ChannelInner, Driver, DriverConfig, Identity, TunOptions};
use privnet_core::{CredentialVerifier, Node, NodeConfig, PeerConfig};
use tokio::net::UdpSocket;

const DAY: u64 = 86_400;
const PSK: [u8; 32] = [0x6e; 32];
const A: Ipv4Addr = Ipv4Addr::new(10, 203, 0, 1);
const B: Ipv4Addr = Ipv4Addr::new(10, 203, 0, 2);
const PORT_A: u16 = 51820;

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
    let ca_key = CaKey::from_seed([0x51; 32]);
    let ca = CaCertificate::self_signed(
        &ca_key,
        &CaParams {
            name: "loopnet".into(),
            network_id: NetworkId([0x52; 16]),
            prefixes: vec!["10.203.0.0/16".parse().unwrap()],
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
    (member("a", A, 11), member("b", B, 12), ca.network_id().0)
}

/// `me`'s node knowing `peer` at `endpoint`, with the overlay prefixes `privnet up` sets.
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
    nc.overlay_prefixes = vec!["10.203.0.0/16".parse().unwrap()];
    let mut node = cfg.new_node(nc).unwrap();
    let mut pc = PeerConfig::new(peer.keys.public())
        .allowed_ip(IpNetwork::new(IpAddr::V4(peer_ip), 32).unwrap());
    pc.endpoint = endpoint;
    node.add_peer(pc, Instant::now()).unwrap();
    node
}

/// A fresh, valid handshake initiation from B to A: made by a second node holding B's keys (as a
/// member could, with its own keys), so that A's mac1 check passes.
fn crafted_initiation(mb: &Member, ma: &Member, network_id: [u8; 16]) -> Vec<u8> {
    let cfg = DriverConfig::new("loopnet", "127.0.0.1:0".parse().unwrap());
    let verifier: Arc<dyn CredentialVerifier> = mb.verifier.clone();
    let mut nc = NodeConfig::new(
        StaticSecret::from_bytes(*mb.keys.secret()),
        PSK,
        network_id,
        verifier,
    );
    nc.credential(mb.cert.to_bytes());
    let mut forger = cfg.new_node(nc).unwrap();
    let now = Instant::now();
    let pc = PeerConfig::new(ma.keys.public()).endpoint("127.0.0.1:9".parse().unwrap());
    let id = forger.add_peer(pc, now).unwrap();
    forger.initiate_handshake(id, now);
    let mut buf = vec![0u8; 2048];
    let t = forger
        .poll_transmit(&mut buf, now)
        .expect("the forger's initiation");
    buf.truncate(t.len);
    assert_eq!(buf[0], 1, "a handshake initiation");
    buf
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

/// The next IPv4/UDP packet B's application receives to `port`: its payload.
async fn recv_udp(app: &mut ChannelEnd, port: u16, what: &str) -> Vec<u8> {
    step(what, async {
        loop {
            let p = app.recv().await.expect("B's driver runs");
            if p.len() >= 28
                && p[0] == 0x45
                && p[9] == 17
                && u16::from_be_bytes([p[22], p[23]]) == port
            {
                return p[28..].to_vec();
            }
        }
    })
    .await
}

#[test]
fn an_initiation_through_the_tunnel_does_not_move_the_endpoint_into_the_overlay() {
    let Some(ns) = Netns::create("an_initiation_through_the_tunnel_does_not_move_the_endpoint")
    else {
        return;
    };
    ns.run(|_ns_name| async move {
        let mut nl = Netlink::new().unwrap();
        let lo = nl.link_index("lo").unwrap();
        nl.link_set_up(lo).unwrap();
        let (ma, mb, network_id) = members();

        // A: TUN pnl0 with 10.203.0.1/16, underlay socket on 0.0.0.0:51820 (as by default).
        let mut cfg_a = DriverConfig::new(
            "loopnet",
            SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), PORT_A),
        );
        cfg_a.addresses = vec!["10.203.0.1/16".parse().unwrap()];
        cfg_a.tun = TunOptions {
            name: "pnl0".into(),
            ..TunOptions::default()
        };
        let node_a = node(&cfg_a, &ma, network_id, &mb, B, None);
        let identity = Identity {
            verifier: ma.verifier.clone(),
            certificate: ma.cert.clone(),
        };
        let driver_a = Driver::tun(node_a, cfg_a, Some(identity)).await.unwrap();

        // B: in-memory inner side, underlay on 127.0.0.1, knows A at 127.0.0.1:51820.
        let cfg_b = {
            let mut c = DriverConfig::new("loopnet", "127.0.0.1:0".parse().unwrap());
            c.addresses = vec!["10.203.0.2/16".parse().unwrap()];
            c
        };
        let a_underlay = SocketAddr::new(Ipv4Addr::LOCALHOST.into(), PORT_A);
        let node_b = node(&cfg_b, &mb, network_id, &ma, A, Some(a_underlay));
        let (inner_b, mut app_b) = ChannelInner::new("mem-b", 256);
        let driver_b = Driver::new(node_b, cfg_b, None, inner_b).await.unwrap();
        let b_underlay = driver_b.local_addr();
        let (mut handle_a, handle_b) = (driver_a.handle(), driver_b.handle());
        let task_a = tokio::spawn(driver_a.run());
        let task_b = tokio::spawn(driver_b.run());

        // A session, and B's endpoint as A knows it: B's underlay address.
        let sock_a = UdpSocket::bind(SocketAddr::new(A.into(), 7000))
            .await
            .unwrap();
        let b_app = SocketAddr::new(B.into(), 7);
        step("A -> B", sock_a.send_to(b"hello b", b_app))
            .await
            .unwrap();
        assert_eq!(recv_udp(&mut app_b, 7, "A -> B").await, b"hello b");

        // B, inside the tunnel: 10.203.0.2:51820 -> 10.203.0.1:51820, a valid initiation. A's
        // TUN hands it to the kernel, which delivers it to A's own underlay socket.
        let crafted = crafted_initiation(&mb, &ma, network_id);
        let inner = udp4(
            SocketAddr::new(B.into(), PORT_A),
            SocketAddr::new(A.into(), PORT_A),
            &crafted,
        );
        let refused = |s: &privnet_core::io::NetworkSnapshot| {
            s.drops
                .iter()
                .find(|(r, _)| r == "endpoint_in_overlay")
                .map_or(0, |(_, n)| *n)
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            app_b.send(&inner).await.unwrap();
            if step("snapshot", handle_a.snapshot_changed()).await.is_ok()
                && refused(&handle_a.snapshot()) > 0
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "A never counted endpoint_in_overlay: {:?}",
                handle_a.snapshot()
            );
        }

        // B's endpoint did not move into the overlay, and traffic flows both ways.
        let snap = handle_a.snapshot();
        assert_eq!(
            snap.peers[0].endpoint.as_deref(),
            Some(b_underlay.to_string().as_str()),
            "{snap:?}"
        );
        step("A -> B again", sock_a.send_to(b"still here", b_app))
            .await
            .unwrap();
        assert_eq!(recv_udp(&mut app_b, 7, "A -> B after").await, b"still here");
        let local_a = sock_a.local_addr().unwrap();
        app_b
            .send(&udp4(b_app, local_a, b"and back"))
            .await
            .unwrap();
        let mut buf = [0u8; 2048];
        let (n, from) = step("B -> A after", sock_a.recv_from(&mut buf))
            .await
            .unwrap();
        assert_eq!((from, &buf[..n]), (b_app, &b"and back"[..]));
        let snap = handle_a.snapshot();
        assert_eq!(
            snap.peers[0].endpoint.as_deref(),
            Some(b_underlay.to_string().as_str())
        );

        handle_a.shutdown().await.unwrap();
        handle_b.shutdown().await.unwrap();
        for t in [task_a, task_b] {
            let r = step("drivers stop", t).await;
            assert!(matches!(r, Ok(Ok(()))), "{r:?}");
        }
    });
}
