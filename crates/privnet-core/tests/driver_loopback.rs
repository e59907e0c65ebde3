//! Two library drivers (`privnet_core::io::Driver`) with in-memory inner sides, talking over real UDP
//! sockets on 127.0.0.1: handshake, packets both ways, an ICMP answer to an unroutable packet,
//! published snapshots, reloads (windows, a trust store that revokes the peer, a refused one) and a
//! clean shutdown. Needs no privileges; every wait is bounded.
// A test: it reads the real clock or opens sockets (see clippy.toml).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]
#![cfg(all(target_os = "linux", feature = "driver"))]
#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ipnetwork::IpNetwork;
use privnet_core::crypto::StaticSecret;
use privnet_core::identity::{
    CaCertificate, CaKey, CaParams, CertVerifier, MemberCertificate, MemberParams, NetworkId,
    NoiseKeyPair, RevocationList, TrustStore,
};
use privnet_core::io::{
    ChannelEnd, ChannelInner, ControlError, Driver, DriverConfig, DriverHandle, Identity,
    NetworkSnapshot, Psks, Reload,
};
use privnet_core::{CredentialVerifier, NodeConfig, PeerConfig};
use zeroize::Zeroizing;

const TEST_TIMEOUT: Duration = Duration::from_secs(30);
const STEP_TIMEOUT: Duration = Duration::from_secs(10);
const DAY: u64 = 86_400;
const PSK: [u8; 32] = [0x5c; 32];

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

struct Ca {
    key: CaKey,
    cert: CaCertificate,
}

impl Ca {
    fn new() -> Self {
        let key = CaKey::from_seed([0x31; 32]);
        let now = unix_now();
        let params = CaParams {
            name: "loopnet".into(),
            network_id: NetworkId([0x32; 16]),
            prefixes: vec!["10.77.0.0/16".parse().unwrap()],
            routes: vec![],
            not_before: now - DAY,
            not_after: now + 365 * DAY,
        };
        let cert = CaCertificate::self_signed(&key, &params).unwrap();
        Self { key, cert }
    }

    fn store(&self, revoked: &[&MemberCertificate]) -> TrustStore {
        let mut list = RevocationList::new();
        for c in revoked {
            list.insert(c.fingerprint());
        }
        TrustStore::new(vec![self.cert.clone()])
            .unwrap()
            .with_revocations(list)
    }
}

struct Member {
    keys: NoiseKeyPair,
    cert: MemberCertificate,
    addr: Ipv4Addr,
}

impl Member {
    fn new(ca: &Ca, name: &str, host: u8) -> Self {
        let keys = NoiseKeyPair::from_random([host; 32]);
        let addr = Ipv4Addr::new(10, 77, 0, host);
        let now = unix_now();
        let params = MemberParams {
            name: name.into(),
            addresses: vec![IpAddr::V4(addr)],
            routes: vec![],
            groups: vec![],
            public_key: keys.public(),
            not_before: now - DAY,
            not_after: now + 30 * DAY,
        };
        let cert = MemberCertificate::issue(&ca.cert, &ca.key, &params).unwrap();
        Self { keys, cert, addr }
    }
}

/// A driver for `me` knowing `peer` (at `peer_endpoint`, if known), with an in-memory inner side.
async fn start(
    ca: &Ca,
    me: &Member,
    peer: &Member,
    peer_endpoint: Option<SocketAddr>,
) -> (Driver<ChannelInner>, ChannelEnd, Arc<CertVerifier>) {
    start_with(ca, me, peer, peer_endpoint, None).await
}

/// As [`start`], with an underlay MTU (default: the library's).
async fn start_with(
    ca: &Ca,
    me: &Member,
    peer: &Member,
    peer_endpoint: Option<SocketAddr>,
    underlay_mtu: Option<u16>,
) -> (Driver<ChannelInner>, ChannelEnd, Arc<CertVerifier>) {
    start_full(ca, me, peer, peer_endpoint, underlay_mtu, PSK, true, 1).await
}

/// As [`start_with`], with a network PSK, fairness (and so per-peer receive sockets) on or off,
/// and `workers` crypto threads.
#[allow(clippy::too_many_arguments)]
async fn start_full(
    ca: &Ca,
    me: &Member,
    peer: &Member,
    peer_endpoint: Option<SocketAddr>,
    underlay_mtu: Option<u16>,
    psk: [u8; 32],
    fairness: bool,
    workers: usize,
) -> (Driver<ChannelInner>, ChannelEnd, Arc<CertVerifier>) {
    let verifier = Arc::new(CertVerifier::new(ca.store(&[])));
    let dyn_verifier: Arc<dyn CredentialVerifier> = verifier.clone();
    let mut node_cfg = NodeConfig::new(
        StaticSecret::from_bytes(*me.keys.secret()),
        psk,
        ca.cert.network_id().0,
        dyn_verifier,
    );
    node_cfg.credential(me.cert.to_bytes());
    let mut cfg = DriverConfig::new("loopnet", "127.0.0.1:0".parse().unwrap());
    cfg.addresses = vec![IpNetwork::new(IpAddr::V4(me.addr), 16).unwrap()];
    if let Some(mtu) = underlay_mtu {
        cfg.underlay_mtu = mtu;
    }
    cfg.fairness = fairness;
    cfg.workers = workers;
    let mut node = cfg.new_node(node_cfg).unwrap();
    let mut pc = PeerConfig::new(peer.keys.public())
        .allowed_ip(IpNetwork::new(IpAddr::V4(peer.addr), 32).unwrap());
    pc.endpoint = peer_endpoint;
    node.add_peer(pc, Instant::now()).unwrap();
    let (inner, app) = ChannelInner::new(format!("mem-{}", me.cert.name()), 64);
    let identity = Identity {
        verifier: verifier.clone(),
        certificate: me.cert.clone(),
    };
    let driver = Driver::new(node, cfg, Some(identity), inner).await.unwrap();
    (driver, app, verifier)
}

/// An IPv4/UDP packet (header checksum set, UDP checksum 0 = none).
fn udp4(src: Ipv4Addr, dst: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
    let total = (20 + 8 + payload.len()) as u16;
    let mut p = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0];
    p[2..4].copy_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    let mut sum: u32 = p
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    p[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    p.extend_from_slice(&40000u16.to_be_bytes());
    p.extend_from_slice(&7u16.to_be_bytes());
    p.extend_from_slice(&(8 + payload.len() as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(payload);
    p
}

async fn recv(app: &mut ChannelEnd, what: &str) -> Vec<u8> {
    match tokio::time::timeout(STEP_TIMEOUT, app.recv()).await {
        Ok(Some(p)) => p,
        Ok(None) => panic!("{what}: the driver is gone"),
        Err(_) => panic!("{what}: nothing within {STEP_TIMEOUT:?}"),
    }
}

/// Wait for a snapshot satisfying `pred` (snapshots come once a second).
async fn snapshot_where(
    handle: &mut DriverHandle,
    what: &str,
    pred: impl Fn(&NetworkSnapshot) -> bool,
) -> Arc<NetworkSnapshot> {
    let wait = async {
        loop {
            let s = handle.snapshot();
            if pred(&s) {
                return s;
            }
            handle.snapshot_changed().await.unwrap();
        }
    };
    match tokio::time::timeout(STEP_TIMEOUT, wait).await {
        Ok(s) => s,
        Err(_) => panic!(
            "{what}: no such snapshot within {STEP_TIMEOUT:?}: {:?}",
            handle.snapshot()
        ),
    }
}

#[tokio::test]
async fn two_drivers_over_loopback_udp() {
    tokio::time::timeout(TEST_TIMEOUT, scenario())
        .await
        .expect("the test did not finish within its time limit");
}

async fn scenario() {
    let ca = Ca::new();
    let a = Member::new(&ca, "a", 2);
    let b = Member::new(&ca, "b", 3);
    // A learns B's endpoint from B's handshake; B knows A's bound address.
    let (driver_a, mut app_a, _verifier_a) = start(&ca, &a, &b, None).await;
    let addr_a = driver_a.local_addr();
    let (driver_b, mut app_b, _verifier_b) = start(&ca, &b, &a, Some(addr_a)).await;
    let mut handle_a = driver_a.handle();
    let handle_b = driver_b.handle();
    let first = handle_a.snapshot();
    assert_eq!(first.network, "loopnet");
    assert_eq!(first.member, "a");
    assert_eq!(first.device, "mem-a");
    assert_eq!(first.addresses, ["10.77.0.2/16"]);
    assert_eq!(first.listen, addr_a.to_string());
    let task_a = tokio::spawn(driver_a.run());
    let task_b = tokio::spawn(driver_b.run());

    // B -> A: queued by B's node until the handshake it starts completes, then delivered.
    let hello = udp4(b.addr, a.addr, b"hello from b");
    app_b.send(&hello).await.unwrap();
    assert_eq!(recv(&mut app_a, "B -> A").await, hello);
    // A -> B over the session, in a burst (one GSO send where the kernel has it).
    for i in 0..20u8 {
        app_a.send(&udp4(a.addr, b.addr, &[i; 100])).await.unwrap();
    }
    for i in 0..20u8 {
        let got = recv(&mut app_b, "A -> B").await;
        assert_eq!(got, udp4(a.addr, b.addr, &[i; 100]));
        app_b.recycle(got);
    }
    // No peer owns 10.77.0.99: A's application gets ICMP host unreachable from it.
    let lost = Ipv4Addr::new(10, 77, 0, 99);
    app_a.send(&udp4(a.addr, lost, b"anyone?")).await.unwrap();
    let icmp = recv(&mut app_a, "ICMP answer").await;
    assert_eq!(icmp[9], 1, "ICMP");
    assert_eq!(
        &icmp[12..16],
        &lost.octets(),
        "from the unreachable destination"
    );
    assert_eq!(&icmp[16..20], &a.addr.octets(), "to the sender");
    assert_eq!((icmp[20], icmp[21]), (3, 1), "host unreachable");

    let snap = snapshot_where(&mut handle_a, "A established with traffic", |s| {
        s.peers.len() == 1
            && s.peers[0].established
            && s.peers[0].rx_packets >= 1
            && s.tx_packets >= 20
            && s.driver.get("icmp_unreachable_sent") == Some(&1)
    })
    .await;
    assert_eq!(snap.peers[0].name, "b");
    assert_eq!(snap.handshakes_completed, 1);
    assert!(
        snap.drops.iter().any(|(r, n)| r == "no_route" && *n == 1),
        "{:?}",
        snap.drops
    );
    assert!(
        !snap.expiry.is_empty(),
        "expiry of our certificate and the CA"
    );
    let snap_b = handle_b.snapshot();
    assert_eq!(snap_b.member, "b");

    // Reloads: a window out of range is refused before anything is sent; new windows and a trust
    // store revoking B are applied, and B's session goes down at once.
    let err = handle_a
        .reload(Reload {
            busy_poll: Some(Duration::from_secs(1)),
            ..Reload::default()
        })
        .await;
    assert!(matches!(err, Err(ControlError::Config(_))), "{err:?}");
    let other_ca = Ca {
        key: CaKey::from_seed([0x77; 32]),
        cert: {
            let now = unix_now();
            let p = CaParams {
                name: "othernet".into(),
                network_id: NetworkId([0x78; 16]),
                prefixes: vec!["10.78.0.0/16".parse().unwrap()],
                routes: vec![],
                not_before: now - DAY,
                not_after: now + DAY,
            };
            CaCertificate::self_signed(&CaKey::from_seed([0x77; 32]), &p).unwrap()
        },
    };
    let refused = handle_a
        .reload(Reload {
            trust: Some(other_ca.store(&[])),
            ..Reload::default()
        })
        .await;
    assert!(
        matches!(refused, Err(ControlError::TrustStore(_))),
        "another network's CA must be refused: {refused:?}"
    );
    handle_a
        .reload(Reload {
            trust: Some(ca.store(&[&b.cert])),
            busy_poll: Some(Duration::ZERO),
            batch_hold: Some(Duration::ZERO),
            ..Reload::default()
        })
        .await
        .unwrap();
    snapshot_where(&mut handle_a, "B's session revoked", |s| {
        s.peers.len() == 1 && !s.peers[0].established
    })
    .await;

    // Clean shutdown: both loops return Ok, the handles notice, the last snapshot stays.
    handle_a.shutdown().await.unwrap();
    handle_b.shutdown().await.unwrap();
    for task in [task_a, task_b] {
        let r = tokio::time::timeout(STEP_TIMEOUT, task).await;
        assert!(
            matches!(r, Ok(Ok(Ok(())))),
            "driver did not stop cleanly: {r:?}"
        );
    }
    assert!(!handle_a.is_running());
    assert_eq!(
        handle_a.reload(Reload::default()).await,
        Err(ControlError::Stopped)
    );
    assert_eq!(handle_a.snapshot().peers.len(), 1);
    assert!(
        app_a.recv().await.is_none(),
        "the inner channel closes with its driver"
    );
}

/// Jumbo frames (issue 13, item 7): with a 9,000-byte tunnel MTU, packets queued during a handshake
/// are sealed into the driver's control buffer when it completes — it used to hold 2,048 bytes, so
/// every one of them was dropped as `buffer_too_small`. And a zero-length datagram to the listen
/// port is counted (`too_short`), like every refused datagram (item 15).
#[tokio::test]
async fn jumbo_packets_queued_during_a_handshake_and_empty_datagrams() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let ca = Ca::new();
        let a = Member::new(&ca, "a", 4);
        let b = Member::new(&ca, "b", 5);
        let (driver_a, mut app_a, _) = start_with(&ca, &a, &b, None, Some(9060)).await;
        let addr_a = driver_a.local_addr();
        let (driver_b, mut app_b, _) = start_with(&ca, &b, &a, Some(addr_a), Some(9060)).await;
        let mut handle_a = driver_a.handle();
        let handle_b = driver_b.handle();
        let task_a = tokio::spawn(driver_a.run());
        let task_b = tokio::spawn(driver_b.run());
        // Five 8,000-byte packets before any session exists: queued, then flushed.
        let packets: Vec<Vec<u8>> = (0..5u8)
            .map(|i| udp4(b.addr, a.addr, &vec![i; 8_000 - 28]))
            .collect();
        for p in &packets {
            app_b.send(p).await.unwrap();
        }
        for p in &packets {
            assert_eq!(&recv(&mut app_a, "a queued jumbo packet").await, p);
        }
        assert!(
            !handle_b
                .snapshot()
                .drops
                .iter()
                .any(|(r, _)| r == "buffer_too_small"),
            "{:?}",
            handle_b.snapshot().drops
        );
        // An empty datagram from an outsider.
        let outsider = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        outsider.send_to(&[], addr_a).unwrap();
        snapshot_where(&mut handle_a, "the empty datagram counted", |s| {
            s.drops.iter().any(|(r, n)| r == "too_short" && *n >= 1)
        })
        .await;
        stop(&[&handle_a, &handle_b], [task_a, task_b]).await;
    })
    .await
    .expect("the test did not finish within its time limit");
}

/// With fairness on, each peer with a session gets its own connected receive socket (a "lane",
/// `io/lanes.rs`): both ends open one once the session is up, and traffic keeps flowing both
/// ways through it, bursts included. With fairness off, none is opened and traffic flows on the
/// main socket as before.
#[tokio::test]
async fn a_peer_with_a_session_gets_its_own_receive_socket() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        for fairness in [true, false] {
            let ca = Ca::new();
            let a = Member::new(&ca, "a", 2);
            let b = Member::new(&ca, "b", 3);
            let (driver_a, mut app_a, _) =
                start_full(&ca, &a, &b, None, None, PSK, fairness, 1).await;
            let addr_a = driver_a.local_addr();
            let (driver_b, mut app_b, _) =
                start_full(&ca, &b, &a, Some(addr_a), None, PSK, fairness, 1).await;
            let (mut handle_a, mut handle_b) = (driver_a.handle(), driver_b.handle());
            let task_a = tokio::spawn(driver_a.run());
            let task_b = tokio::spawn(driver_b.run());
            pass(&mut app_b, &mut app_a, &b, &a, "b to a, the first packet").await;
            let lanes =
                |s: &NetworkSnapshot| s.driver.get("peer_socket_opened").copied().unwrap_or(0);
            if fairness {
                snapshot_where(&mut handle_a, "a opened a lane for b", |s| lanes(s) == 1).await;
                snapshot_where(&mut handle_b, "b opened a lane for a", |s| lanes(s) == 1).await;
            }
            for round in 0..3 {
                for i in 0..50u8 {
                    app_a.send(&udp4(a.addr, b.addr, &[i; 1200])).await.unwrap();
                }
                for i in 0..50u8 {
                    let got = recv(&mut app_b, "a to b, a burst").await;
                    assert_eq!(got, udp4(a.addr, b.addr, &[i; 1200]), "round {round}");
                    app_b.recycle(got);
                }
                pass(&mut app_b, &mut app_a, &b, &a, "b to a, an answer").await;
            }
            let snap = snapshot_where(&mut handle_b, "b's counters", |s| s.rx_packets >= 150).await;
            assert_eq!(lanes(&snap), u64::from(fairness), "fairness {fairness}");
            assert_eq!(snap.driver.get("peer_socket_open_failed"), None);
            assert_eq!(lanes(&handle_a.snapshot()), u64::from(fairness));
            stop(&[&handle_a, &handle_b], [task_a, task_b]).await;
        }
    })
    .await
    .expect("the test did not finish within its time limit");
}

/// A UDP relay between B and A that can change the address A sees B at: B sends to `addr`; the
/// relay forwards from `outs[current]` to A and sends A's answers back to B from `addr`.
struct Relay {
    addr: SocketAddr,
    current: Arc<std::sync::atomic::AtomicUsize>,
    outs: [SocketAddr; 2],
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Relay {
    async fn start(a: SocketAddr) -> Self {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let inside = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let outs = [
            Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap()),
            Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap()),
        ];
        let current = Arc::new(AtomicUsize::new(0));
        let b_at = Arc::new(std::sync::Mutex::new(None::<SocketAddr>));
        let mut tasks = Vec::new();
        {
            let (inside, outs, current, b_at) =
                (inside.clone(), outs.clone(), current.clone(), b_at.clone());
            tasks.push(tokio::spawn(async move {
                let mut buf = vec![0u8; 65_536];
                while let Ok((n, from)) = inside.recv_from(&mut buf).await {
                    *b_at.lock().unwrap() = Some(from);
                    let out = &outs[current.load(Ordering::Relaxed) % 2];
                    let _ = out.send_to(&buf[..n], a).await;
                }
            }));
        }
        for out in &outs {
            let (inside, out, b_at) = (inside.clone(), out.clone(), b_at.clone());
            tasks.push(tokio::spawn(async move {
                let mut buf = vec![0u8; 65_536];
                while let Ok((n, _)) = out.recv_from(&mut buf).await {
                    let to = *b_at.lock().unwrap();
                    if let Some(to) = to {
                        let _ = inside.send_to(&buf[..n], to).await;
                    }
                }
            }));
        }
        Self {
            addr: inside.local_addr().unwrap(),
            current,
            outs: [outs[0].local_addr().unwrap(), outs[1].local_addr().unwrap()],
            tasks,
        }
    }

    fn switch(&self) {
        self.current
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// A peer that moves gets its receive socket reconnected at once (on the node's
/// `EndpointChanged`, not at the driver's periodic resync): B reaches A through a relay whose
/// outgoing address changes mid-session; A opens a second socket for B's new address within a
/// few seconds, and traffic keeps flowing both ways.
#[tokio::test]
async fn a_moved_peer_gets_its_receive_socket_reconnected() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let ca = Ca::new();
        let a = Member::new(&ca, "a", 2);
        let b = Member::new(&ca, "b", 3);
        let (driver_a, mut app_a, _) = start(&ca, &a, &b, None).await;
        let relay = Relay::start(driver_a.local_addr()).await;
        let (driver_b, mut app_b, _) = start(&ca, &b, &a, Some(relay.addr)).await;
        let (mut handle_a, handle_b) = (driver_a.handle(), driver_b.handle());
        let task_a = tokio::spawn(driver_a.run());
        let task_b = tokio::spawn(driver_b.run());
        pass(&mut app_b, &mut app_a, &b, &a, "b to a through the relay").await;
        let opened = |s: &NetworkSnapshot| s.driver.get("peer_socket_opened").copied().unwrap_or(0);
        let at = |s: &NetworkSnapshot| s.peers.first().and_then(|p| p.endpoint.clone());
        let first = relay.outs[0].to_string();
        snapshot_where(
            &mut handle_a,
            "a's socket for b at the first address",
            |s| opened(s) == 1 && at(s).as_deref() == Some(first.as_str()),
        )
        .await;
        relay.switch();
        let moved = Instant::now();
        pass(
            &mut app_b,
            &mut app_a,
            &b,
            &a,
            "b to a from the new address",
        )
        .await;
        let second = relay.outs[1].to_string();
        snapshot_where(
            &mut handle_a,
            "a reconnects b's socket to the new address",
            |s| opened(s) == 2 && at(s).as_deref() == Some(second.as_str()),
        )
        .await;
        let took = moved.elapsed();
        // Snapshots come once a second; the periodic resync would take up to 10 s.
        assert!(took < Duration::from_secs(5), "reconnected after {took:?}");
        pass(&mut app_a, &mut app_b, &a, &b, "a to b after the move").await;
        pass(&mut app_b, &mut app_a, &b, &a, "b to a after the move").await;
        stop(&[&handle_a, &handle_b], [task_a, task_b]).await;
    })
    .await
    .expect("the test did not finish within its time limit");
}

/// Shut the drivers of `handles` down and wait (bounded) for their tasks.
async fn stop(handles: &[&DriverHandle], tasks: [tokio::task::JoinHandle<std::io::Result<()>>; 2]) {
    for h in handles {
        h.shutdown().await.unwrap();
    }
    for task in tasks {
        let _ = tokio::time::timeout(STEP_TIMEOUT, task).await;
    }
}

/// `src -> dst` through `from` arrives at `to`.
async fn pass(from: &mut ChannelEnd, to: &mut ChannelEnd, src: &Member, dst: &Member, what: &str) {
    let p = udp4(src.addr, dst.addr, what.as_bytes());
    from.send(&p).await.unwrap();
    assert_eq!(recv(to, what).await, p, "{what}");
}

fn psks(primary: [u8; 32], accepted: &[[u8; 32]]) -> Reload {
    Reload {
        psks: Some(Psks {
            primary: Zeroizing::new(primary),
            accepted: Zeroizing::new(accepted.to_vec()),
        }),
        ..Reload::default()
    }
}

/// PSK rotation through reloads (issue 13 item 3, the operator procedure of docs/CONFIG.md): the
/// three steps (accept the new; send with the new, accept the old; drop the old), each applied to
/// both members live, keep the session and its traffic without a new handshake; afterwards a
/// member restarted with only the new PSK handshakes at once, and one holding only the old PSK
/// (an ex-member) is refused at mac1.
#[tokio::test]
async fn psk_rotation_by_reload_keeps_sessions_and_locks_out_the_old_psk() {
    tokio::time::timeout(TEST_TIMEOUT * 2, async {
        let (old, new) = (PSK, [0xa7; 32]);
        let ca = Ca::new();
        let a = Member::new(&ca, "a", 6);
        let b = Member::new(&ca, "b", 7);
        let (driver_a, mut app_a, _) = start_full(&ca, &a, &b, None, None, old, true, 1).await;
        let addr_a = driver_a.local_addr();
        let (driver_b, mut app_b, _) =
            start_full(&ca, &b, &a, Some(addr_a), None, old, true, 1).await;
        let mut handle_a = driver_a.handle();
        let handle_b = driver_b.handle();
        let task_a = tokio::spawn(driver_a.run());
        let task_b = tokio::spawn(driver_b.run());
        pass(&mut app_b, &mut app_a, &b, &a, "before the rotation").await;
        let before = snapshot_where(&mut handle_a, "A established", |s| {
            s.peers.len() == 1 && s.peers[0].established
        })
        .await
        .handshakes_completed;

        for (step, (primary, accepted)) in [(old, vec![new]), (new, vec![old]), (new, vec![])]
            .into_iter()
            .enumerate()
        {
            // Member by member, as an operator reloads them one after the other.
            for h in [&handle_a, &handle_b] {
                h.reload(psks(primary, &accepted)).await.unwrap();
                pass(
                    &mut app_a,
                    &mut app_b,
                    &a,
                    &b,
                    &format!("step {} A -> B", step + 1),
                )
                .await;
                pass(
                    &mut app_b,
                    &mut app_a,
                    &b,
                    &a,
                    &format!("step {} B -> A", step + 1),
                )
                .await;
            }
        }
        let after = snapshot_where(&mut handle_a, "A after the rotation", |s| {
            s.peers[0].rx_packets >= 7
        })
        .await;
        assert!(after.peers[0].established);
        assert_eq!(
            after.handshakes_completed, before,
            "the rotation restarted the session"
        );

        // B restarts knowing only the new PSK: the handshake with A works.
        handle_b.shutdown().await.unwrap();
        let _ = tokio::time::timeout(STEP_TIMEOUT, task_b).await;
        let (driver_b, mut app_b, _) =
            start_full(&ca, &b, &a, Some(addr_a), None, new, true, 1).await;
        let handle_b = driver_b.handle();
        let task_b = tokio::spawn(driver_b.run());
        pass(&mut app_b, &mut app_a, &b, &a, "B with only the new PSK").await;
        snapshot_where(&mut handle_a, "a new handshake under the new PSK", |s| {
            s.handshakes_completed > before
        })
        .await;
        handle_b.shutdown().await.unwrap();
        let _ = tokio::time::timeout(STEP_TIMEOUT, task_b).await;

        // An ex-member holding only the old PSK: refused at mac1, nothing delivered.
        let bad_mac1 = |s: &NetworkSnapshot| {
            s.drops
                .iter()
                .find(|(r, _)| r == "bad_mac1")
                .map_or(0, |(_, n)| *n)
        };
        let refused_before = bad_mac1(&handle_a.snapshot());
        let (driver_x, mut app_x, _) =
            start_full(&ca, &b, &a, Some(addr_a), None, old, true, 1).await;
        let handle_x = driver_x.handle();
        let task_x = tokio::spawn(driver_x.run());
        app_x
            .send(&udp4(b.addr, a.addr, b"only the old PSK"))
            .await
            .unwrap();
        snapshot_where(&mut handle_a, "the old PSK refused at mac1", |s| {
            bad_mac1(s) > refused_before
        })
        .await;
        assert!(
            tokio::time::timeout(Duration::from_secs(2), app_a.recv())
                .await
                .is_err(),
            "a packet of the old PSK's holder was delivered"
        );
        stop(&[&handle_x, &handle_a], [task_a, task_x]).await;
    })
    .await
    .expect("the test did not finish within its time limit");
}

/// A directory's revocations survive a trust-store reload: B revoked by a directory bundle
/// (`Reload::directory_revocations`) stays revoked when A's trust store is replaced by the
/// configured one (what a SIGHUP re-reading the files sends; it used to drop the directory's list
/// and let B back in), a configured revocation adds to the directory's, and B is let in again only
/// once neither revokes it.
#[tokio::test]
async fn directory_revocations_survive_a_trust_reload() {
    tokio::time::timeout(TEST_TIMEOUT * 2, async {
        let ca = Ca::new();
        let a = Member::new(&ca, "a", 8);
        let b = Member::new(&ca, "b", 9);
        let c = Member::new(&ca, "c", 10);
        let (driver_a, mut app_a, verifier_a) = start(&ca, &a, &b, None).await;
        let addr_a = driver_a.local_addr();
        let (driver_b, mut app_b, _) = start(&ca, &b, &a, Some(addr_a)).await;
        let mut handle_a = driver_a.handle();
        let handle_b = driver_b.handle();
        let task_a = tokio::spawn(driver_a.run());
        let task_b = tokio::spawn(driver_b.run());
        pass(&mut app_b, &mut app_a, &b, &a, "before any revocation").await;
        snapshot_where(&mut handle_a, "A established", |s| {
            s.peers.len() == 1 && s.peers[0].established
        })
        .await;

        let mut by_directory = RevocationList::new();
        by_directory.insert(b.cert.fingerprint());
        handle_a
            .reload(Reload {
                directory_revocations: Some(by_directory),
                ..Reload::default()
            })
            .await
            .unwrap();
        snapshot_where(&mut handle_a, "B revoked by the directory", |s| {
            !s.peers[0].established
        })
        .await;

        // The configured trust store, re-read (revoking C, not B): B stays revoked.
        handle_a
            .reload(Reload {
                trust: Some(ca.store(&[&c.cert])),
                ..Reload::default()
            })
            .await
            .unwrap();
        let store = verifier_a.store();
        assert!(
            store.revocations().contains(&b.cert.fingerprint()),
            "the trust reload dropped the directory's revocation of B"
        );
        assert!(store.revocations().contains(&c.cert.fingerprint()));
        assert_eq!(store.revocations().len(), 2);

        // The directory's next bundle no longer revokes B: the configured list (C) stays, and A's
        // next packet to B handshakes again and arrives.
        handle_a
            .reload(Reload {
                directory_revocations: Some(RevocationList::new()),
                ..Reload::default()
            })
            .await
            .unwrap();
        let store = verifier_a.store();
        assert!(!store.revocations().contains(&b.cert.fingerprint()));
        assert!(store.revocations().contains(&c.cert.fingerprint()));
        pass(&mut app_a, &mut app_b, &a, &b, "B let in again").await;
        snapshot_where(&mut handle_a, "A established again", |s| {
            s.peers[0].established
        })
        .await;

        stop(&[&handle_a, &handle_b], [task_a, task_b]).await;
    })
    .await
    .expect("the test did not finish within its time limit");
}

/// Crypto workers (`[tun] workers`, `io/workers.rs`): with 2 threads at both ends, bursts of
/// numbered packets are sealed and opened in batches split between the threads, and every packet
/// arrives, in the order it was sent, intact, the same as with 1. The split is seen in the
/// counters (`crypto_batches_split`), so the test is not passing on the one-thread path.
#[tokio::test]
async fn crypto_workers_split_batches_and_keep_the_order() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        for workers in [2, 1] {
            let ca = Ca::new();
            let a = Member::new(&ca, "a", 2);
            let b = Member::new(&ca, "b", 3);
            let (driver_a, mut app_a, _) =
                start_full(&ca, &a, &b, None, None, PSK, true, workers).await;
            let addr_a = driver_a.local_addr();
            let (driver_b, mut app_b, _) =
                start_full(&ca, &b, &a, Some(addr_a), None, PSK, true, workers).await;
            let (mut handle_a, mut handle_b) = (driver_a.handle(), driver_b.handle());
            let task_a = tokio::spawn(driver_a.run());
            let task_b = tokio::spawn(driver_b.run());
            pass(&mut app_b, &mut app_a, &b, &a, "b to a, the first packet").await;
            let packet = |n: u32| {
                let mut payload = vec![(n % 251) as u8; 1200];
                payload[..4].copy_from_slice(&n.to_be_bytes());
                udp4(a.addr, b.addr, &payload)
            };
            let mut next = 0u32;
            for _round in 0..20 {
                // A burst of 60 fits the channels (64 deep) and the socket buffers: nothing is
                // lost, so every packet must arrive, in order.
                let first = next;
                for _ in 0..60 {
                    app_a.send(&packet(next)).await.unwrap();
                    next += 1;
                }
                for n in first..next {
                    let got = recv(&mut app_b, "a to b, a numbered burst").await;
                    assert_eq!(
                        got,
                        packet(n),
                        "workers {workers}: packet {n} (out of order or damaged)"
                    );
                    app_b.recycle(got);
                }
                pass(&mut app_b, &mut app_a, &b, &a, "b to a, an answer").await;
            }
            let split =
                |s: &NetworkSnapshot| s.driver.get("crypto_batches_split").copied().unwrap_or(0);
            let snap_a =
                snapshot_where(&mut handle_a, "a's counters", |s| s.tx_packets >= 1200).await;
            let snap_b =
                snapshot_where(&mut handle_b, "b's counters", |s| s.rx_packets >= 1200).await;
            assert_eq!(snap_a.driver.get("seal_failed"), None);
            if workers > 1 {
                assert!(
                    split(&snap_a) > 0,
                    "a split no seal batch: {:?}",
                    snap_a.driver
                );
                assert!(
                    split(&snap_b) > 0,
                    "b split no receive batch: {:?}",
                    snap_b.driver
                );
            } else {
                assert_eq!((split(&snap_a), split(&snap_b)), (0, 0));
            }
            stop(&[&handle_a, &handle_b], [task_a, task_b]).await;
        }
    })
    .await
    .expect("the test did not finish within its time limit");
}
