//! Node-level behaviour: the peer table (remove and re-add), the index map invariant, timers.
// A test: it reads the real clock or opens sockets (see clippy.toml).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::time::{Duration, Instant};

use crate::config::PeerConfig;
use crate::event::{DownReason, Event};
use crate::testing::TestNetwork;
use crate::{Decapsulated, EncapsulateError, Encapsulated, Node, NodeError};

fn shuttle(from: &mut Node, from_addr: std::net::SocketAddr, to: &mut Node, now: Instant) {
    let mut buf = vec![0u8; 2048];
    let mut out = vec![0u8; 2048];
    while let Some(t) = from.poll_transmit(&mut buf, now) {
        let _ = to.decapsulate(from_addr, &buf[..t.len], &mut out, now);
    }
}

fn pair(net: &TestNetwork, now: Instant, accept_unknown: bool) -> (Node, Node) {
    let mut ca = net.config(0, 1);
    let mut cb = net.config(1, 1);
    ca.accept_unknown_peers = accept_unknown;
    cb.accept_unknown_peers = accept_unknown;
    (
        net.node(0, ca, now, net.unix_start),
        net.node(1, cb, now, net.unix_start),
    )
}

fn connect(a: &mut Node, b: &mut Node, net: &TestNetwork, now: Instant) {
    for _ in 0..4 {
        shuttle(a, net.underlay[0], b, now);
        shuttle(b, net.underlay[1], a, now);
    }
}

#[test]
fn removed_peer_is_forgotten_and_can_be_added_again() {
    let net = TestNetwork::new(2, 31);
    let now = Instant::now();
    let (mut a, mut b) = pair(&net, now, false);
    connect(&mut a, &mut b, &net, now);
    let id = a.peer_by_key(&net.public(1)).unwrap();
    assert!(a.is_established(id));
    a.check_invariants();

    assert!(a.remove_peer(id));
    assert!(!a.remove_peer(id), "a removed id names nothing");
    a.check_invariants();
    assert_eq!(a.peer_by_key(&net.public(1)), None);
    assert_eq!(a.peer_count(), 0);
    assert!(matches!(
        a.poll_event(),
        Some(Event::PeerUp { .. }) | Some(Event::PeerDown { .. })
    ));
    while let Some(e) = a.poll_event() {
        if let Event::PeerDown { peer, reason } = e {
            assert_eq!((peer, reason), (id, DownReason::Removed));
        }
    }
    // Its traffic is no longer routed, and the stale id addresses nothing.
    let pkt = crate::testing::ipv4_udp(net.overlay[0], net.overlay[1], b"x");
    let mut out = vec![0u8; 2048];
    assert_eq!(
        a.encapsulate(&pkt, &mut out, now),
        Err(EncapsulateError::NoRoute)
    );
    assert_eq!(
        a.encapsulate_to(id, &pkt, &mut out, now),
        Err(EncapsulateError::UnknownPeer)
    );
    // With accept_unknown_peers = false, the removed key can no longer handshake.
    let t1 = now + Duration::from_secs(1);
    let b_id = b.peer_by_key(&net.public(0)).unwrap();
    b.initiate_handshake(b_id, t1);
    let before = a.stats().dropped(crate::DropReason::BadCredential);
    shuttle(&mut b, net.underlay[1], &mut a, t1);
    assert_eq!(
        a.stats().dropped(crate::DropReason::BadCredential),
        before + 1
    );
    assert_eq!(a.peer_count(), 0);

    // Added again: a new id, and the handshake works.
    let pc = PeerConfig::new(net.public(1))
        .endpoint(net.underlay[1])
        .allowed_ip(ipnetwork::IpNetwork::new(net.overlay[1], 32).unwrap());
    let t2 = now + Duration::from_secs(2);
    let again = a.add_peer(pc.clone(), t2).unwrap();
    assert_ne!(again, id);
    assert_eq!(a.add_peer(pc, t2), Err(NodeError::DuplicatePeer));
    connect(&mut a, &mut b, &net, t2);
    assert!(a.is_established(again));
    a.check_invariants();
    let sent = a.encapsulate(&pkt, &mut out, t2).unwrap();
    let Encapsulated::Send(t) = sent else {
        panic!("no session after re-add");
    };
    let mut inner = vec![0u8; 2048];
    assert!(matches!(
        b.decapsulate(net.underlay[0], &out[..t.len], &mut inner, t2),
        Ok(Decapsulated::Packet { .. })
    ));
}

#[test]
fn persistent_keepalive_zero_is_off_and_sub_second_is_refused() {
    let net = TestNetwork::new(3, 32);
    let now = Instant::now();
    let mut cfg = net.config(0, 1);
    cfg.eager_handshakes = false;
    let mut a = Node::new(cfg, now, net.unix_start).unwrap();
    let zero = PeerConfig::new(net.public(1)).persistent_keepalive(Duration::ZERO);
    a.add_peer(zero, now).unwrap();
    assert_eq!(a.poll_timeout(), None, "no timer for a keepalive of zero");
    a.handle_timeout(now + Duration::from_secs(3600));
    let short = PeerConfig::new(net.public(2)).persistent_keepalive(Duration::from_millis(10));
    assert!(matches!(
        a.add_peer(short, now),
        Err(NodeError::KeepaliveTooShort(_))
    ));
}

#[test]
fn wake_queue_stays_small_under_steady_traffic() {
    let net = TestNetwork::new(2, 33);
    let now = Instant::now();
    let (mut a, mut b) = pair(&net, now, true);
    connect(&mut a, &mut b, &net, now);
    let pkt = crate::testing::ipv4_udp(net.overlay[0], net.overlay[1], &[0; 64]);
    let back = crate::testing::ipv4_udp(net.overlay[1], net.overlay[0], &[0; 64]);
    let (mut out, mut inner) = (vec![0u8; 2048], vec![0u8; 2048]);
    for i in 0..10_000u64 {
        let t = now + Duration::from_micros(i * 50);
        if let Ok(Encapsulated::Send(x)) = a.encapsulate(&pkt, &mut out, t) {
            let _ = b.decapsulate(net.underlay[0], &out[..x.len], &mut inner, t);
        }
        if let Ok(Encapsulated::Send(x)) = b.encapsulate(&back, &mut out, t) {
            let _ = a.decapsulate(net.underlay[1], &out[..x.len], &mut inner, t);
        }
    }
    // The data path moves deadlines later, which needs no new hint.
    assert!(a.wake.len() < 10, "{} hints", a.wake.len());
    a.check_invariants();
    b.check_invariants();
}

#[test]
fn the_all_zero_seed_is_refused() {
    let net = TestNetwork::new(1, 34);
    let mut cfg = net.config(0, 1);
    cfg.rng_seed = [0; 32];
    assert!(matches!(
        Node::new(cfg, Instant::now(), net.unix_start),
        Err(NodeError::MissingSeed)
    ));
}

#[test]
fn a_clone_holding_our_own_key_is_never_learned_as_a_peer() {
    // Two machines started from one image share a static key: the clone's initiation to us must
    // not make it a peer (it would be routed our own addresses), although its credential verifies.
    let net = TestNetwork::new(2, 35);
    let now = Instant::now();
    let mut us = net.node(0, net.config(0, 1), now, net.unix_start);
    let clone = crate::testing::HandshakeKit::new(
        crate::crypto::CipherSuite::default(),
        net.keys[0].clone(),
        net.psk,
        net.network_id,
    )
    .unwrap();
    let stamp = crate::tai64n::Tai64N::from_unix(net.unix_start).to_bytes();
    let credential = crate::credential::StandInCredential {
        name: "m0".into(),
        addresses: vec![],
    }
    .encode();
    let msg = clone
        .initiation(&net.public(0), 7, stamp, &credential, None, [9; 32])
        .unwrap();
    let peers = us.peer_count();
    let before = us.stats().dropped(crate::DropReason::BadCredential);
    let r = us.decapsulate(net.underlay[1], &msg, &mut vec![0u8; 2048], now);
    assert_eq!(
        r.map_err(|e| e.reason()),
        Err(crate::DropReason::BadCredential)
    );
    assert_eq!(
        us.stats().dropped(crate::DropReason::BadCredential),
        before + 1
    );
    assert_eq!(us.peer_count(), peers, "no peer learned");
    us.check_invariants();
}

/// Seal `pkt` at `a` with the encryption left to a job, run the job; the datagram.
fn seal_split(a: &mut Node, pkt: &[u8], now: Instant) -> Vec<u8> {
    let mut out = vec![0u8; 2048];
    let mut plain = vec![0u8; 2048];
    let o = a.prepare(pkt, now).unwrap();
    let mut later = crate::session::Later {
        plain: &mut plain,
        job: None,
    };
    let Ok(Encapsulated::Send(t)) = a.seal_prepared_later(o, pkt, &mut out, &mut later, now) else {
        panic!("no session");
    };
    let job = later.job.expect("a job for a sealed packet");
    let body = crate::wire::DATA_HEADER_LEN;
    assert!(job.seal(&plain[..pkt.len()], &mut out[body..t.len]));
    out.truncate(t.len);
    out
}

#[test]
fn a_seal_split_from_its_encryption_is_the_same_message() {
    // The header, counter and nonce are decided by the node; the job only encrypts: the peer
    // opens it like any other, and the next counter follows on.
    let net = TestNetwork::new(2, 41);
    let now = Instant::now();
    let (mut a, mut b) = pair(&net, now, false);
    connect(&mut a, &mut b, &net, now);
    let mut inner = vec![0u8; 2048];
    for i in 0..3u8 {
        let pkt = crate::testing::ipv4_udp(net.overlay[0], net.overlay[1], &[i; 300]);
        let d = seal_split(&mut a, &pkt, now);
        assert_eq!(
            u64::from_le_bytes(d[8..16].try_into().unwrap()),
            u64::from(i)
        );
        let r = b.decapsulate(net.underlay[0], &d, &mut inner, now).unwrap();
        let Decapsulated::Packet { len, .. } = r else {
            panic!("{r:?}")
        };
        assert_eq!(&inner[..len], &pkt[..]);
    }
    // A plain seal after them takes the next counter.
    let pkt = crate::testing::ipv4_udp(net.overlay[0], net.overlay[1], b"after");
    let mut out = vec![0u8; 2048];
    let Ok(Encapsulated::Send(t)) = a.encapsulate(&pkt, &mut out, now) else {
        panic!()
    };
    assert_eq!(u64::from_le_bytes(out[8..16].try_into().unwrap()), 3);
    assert!(b
        .decapsulate(net.underlay[0], &out[..t.len], &mut inner, now)
        .is_ok());
}

#[test]
fn a_message_opened_ahead_is_committed_once_and_a_bad_one_commits_nothing() {
    let net = TestNetwork::new(2, 43);
    let now = Instant::now();
    let (mut a, mut b) = pair(&net, now, false);
    connect(&mut a, &mut b, &net, now);
    let pkt = crate::testing::ipv4_udp(net.overlay[0], net.overlay[1], &[7; 200]);
    let d1 = seal_split(&mut a, &pkt, now);
    let d2 = seal_split(&mut a, &pkt, now);
    let ct = |d: &[u8]| d[crate::wire::DATA_HEADER_LEN..].to_vec();

    // Two jobs for the same message before either is committed (a replay inside one batch):
    // the first is delivered, the second refused as a duplicate.
    let (mut o1, mut o2) = (vec![0u8; 2048], vec![0u8; 2048]);
    let j1 = b.open_job(&d1, 2048, now).expect("d1 passes the checks");
    let j1b = b.open_job(&d1, 2048, now).expect("not committed yet");
    let r1 = j1.open(&ct(&d1), &mut o1);
    let r1b = j1b.open(&ct(&d1), &mut o2);
    let first = b.decapsulate_ahead(net.underlay[0], &d1, &mut o1, now, Some(r1));
    assert!(matches!(first, Ok(Decapsulated::Packet { len, .. }) if o1[..len] == pkt[..]));
    let again = b.decapsulate_ahead(net.underlay[0], &d1, &mut o2, now, Some(r1b));
    assert_eq!(again.unwrap_err().reason(), crate::DropReason::Duplicate);
    // Committed now: no job for it any more.
    assert!(b.open_job(&d1, 2048, now).is_none());

    // A tampered copy of d2 fails its tag ahead and commits nothing: d2 itself still arrives.
    let mut bad = d2.clone();
    *bad.last_mut().unwrap() ^= 1;
    let jb = b.open_job(&bad, 2048, now).expect("the header is fine");
    let rb = jb.open(&ct(&bad), &mut o1);
    let tampered = b.decapsulate_ahead(net.underlay[0], &bad, &mut o1, now, Some(rb));
    assert_eq!(tampered.unwrap_err().reason(), crate::DropReason::BadTag);
    let ok = b.decapsulate(net.underlay[0], &d2, &mut o1, now);
    assert!(matches!(ok, Ok(Decapsulated::Packet { len, .. }) if o1[..len] == pkt[..]));
}

#[test]
fn a_result_opened_for_another_message_is_not_taken() {
    // d3's job result handed in with d4 (a driver bug, or a session replaced in between): the
    // nonce differs, so the node decrypts d4 itself and delivers d4, not d3's plaintext.
    let net = TestNetwork::new(2, 47);
    let now = Instant::now();
    let (mut a, mut b) = pair(&net, now, false);
    connect(&mut a, &mut b, &net, now);
    let p3 = crate::testing::ipv4_udp(net.overlay[0], net.overlay[1], b"three");
    let p4 = crate::testing::ipv4_udp(net.overlay[0], net.overlay[1], b"four!");
    let d3 = seal_split(&mut a, &p3, now);
    let d4 = seal_split(&mut a, &p4, now);
    let mut out = vec![0u8; 2048];
    let j3 = b.open_job(&d3, 2048, now).unwrap();
    let r3 = j3.open(&d3[crate::wire::DATA_HEADER_LEN..], &mut out);
    let r = b.decapsulate_ahead(net.underlay[0], &d4, &mut out, now, Some(r3));
    assert!(matches!(r, Ok(Decapsulated::Packet { len, .. }) if out[..len] == p4[..]));
    // And a job for a message no session would take is not made at all.
    assert!(b.open_job(&[1, 0, 0, 0], 2048, now).is_none());
    assert!(
        b.open_job(&d3, 10, now).is_none(),
        "no room for its plaintext"
    );
}
