//! Hostile inputs against a live pair of nodes: replays, bit flips, truncations and extensions of
//! every message type, forged responses, low-order keys, bad timestamps, junk, floods, roaming.
//! The invariant after each: the right drop reason is counted and the established sessions are
//! untouched (traffic still flows on the same session).
#![allow(clippy::unwrap_used)]

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use privnet_core::crypto;
use privnet_core::node::SessionInfo;
use privnet_core::testing::{ipv4_udp, Datagram, LinkConfig, Sim, TestNetwork, Verdict};
use privnet_core::wire::{TYPE_DATA, TYPE_INITIATION, TYPE_RESPONSE};
use privnet_core::{Decapsulated, DropReason, Event};

fn attacker() -> SocketAddr {
    "203.0.113.66:4444".parse().unwrap()
}

fn sessions(sim: &Sim, net: &TestNetwork) -> (SessionInfo, SessionInfo) {
    let pa = sim.nodes[0].node.peer_by_key(&net.public(1)).unwrap();
    let pb = sim.nodes[1].node.peer_by_key(&net.public(0)).unwrap();
    (
        sim.nodes[0].node.current_session(pa).unwrap(),
        sim.nodes[1].node.current_session(pb).unwrap(),
    )
}

fn same_session(a: (SessionInfo, SessionInfo), b: (SessionInfo, SessionInfo)) -> bool {
    a.0.local_index == b.0.local_index
        && a.0.remote_index == b.0.remote_index
        && a.1.local_index == b.1.local_index
}

/// Two established members with captured traffic, and a withheld (never delivered) data packet
/// from 0 to 1.
fn setup(tag: u8) -> (TestNetwork, Sim, Vec<Datagram>, Datagram) {
    let net = TestNetwork::new(2, tag);
    let mut sim = Sim::new(u64::from(tag), LinkConfig::default());
    let now = sim.now;
    for i in 0..2 {
        let mut cfg = net.config(i, u64::from(tag));
        cfg.eager_handshakes = false;
        let n = net.node(i, cfg, now, net.unix_start);
        sim.add_node(n, net.underlay[i]);
    }
    // Capture from the first handshake on (both nodes exist, so everything captured is delivered).
    sim.capture = Some(Vec::new());
    for i in 0..5u8 {
        sim.send_packet(0, &ipv4_udp(net.overlay[0], net.overlay[1], &[i]))
            .unwrap();
        sim.send_packet(1, &ipv4_udp(net.overlay[1], net.overlay[0], &[i]))
            .unwrap();
    }
    sim.run_for(Duration::from_millis(100));
    let captured = sim.capture.take().unwrap();
    let withheld: Rc<RefCell<Option<Datagram>>> = Rc::default();
    let w = withheld.clone();
    sim.tamper = Some(Box::new(move |d: &mut Datagram| {
        if d.bytes[0] == TYPE_DATA && w.borrow().is_none() {
            *w.borrow_mut() = Some(d.clone());
            Verdict::Drop
        } else {
            Verdict::Deliver
        }
    }));
    sim.send_packet(0, &ipv4_udp(net.overlay[0], net.overlay[1], b"withheld"))
        .unwrap();
    sim.tamper = None;
    let withheld = withheld.borrow_mut().take().unwrap();
    (net, sim, captured, withheld)
}

fn node_of(sim: &Sim, addr: SocketAddr) -> usize {
    sim.nodes.iter().position(|n| n.addr == addr).unwrap()
}

#[test]
fn replayed_bit_flipped_truncated_and_extended_messages() {
    let (net, mut sim, captured, withheld) = setup(31);
    let before = sessions(&sim, &net);
    let mut checked = 0;
    for d in captured.iter().chain(std::iter::once(&withheld)) {
        let dst = node_of(&sim, d.dst);
        let is_withheld = d == &withheld;
        let t = d.bytes[0];
        // Exact replay.
        if !is_withheld {
            let r = sim.deliver_now(d.src, dst, &d.bytes);
            let want: &[DropReason] = match t {
                TYPE_INITIATION => &[DropReason::ReplayedInitiation],
                TYPE_RESPONSE => &[DropReason::UnexpectedHandshake],
                TYPE_DATA => &[DropReason::Duplicate],
                _ => &[],
            };
            assert!(
                matches!(r, Err(e) if want.contains(&e)),
                "replay of type {t}: {r:?}"
            );
        }
        // Every single-bit flip of every byte.
        for pos in 0..d.bytes.len() {
            for bit in [0u8, 3, 7] {
                let mut b = d.bytes.clone();
                b[pos] ^= 1 << bit;
                let r = sim.deliver_now(attacker(), dst, &b);
                let Err(e) = r else {
                    panic!("flip type {t} pos {pos} bit {bit} accepted: {r:?}")
                };
                let len = d.bytes.len();
                let ok = match (t, pos) {
                    // Bit 0 of a data message's byte 3 is its priority flag, bound to the message
                    // by the nonce: flipped, the tag fails (or a replay is refused first).
                    (TYPE_DATA, 3) if bit == 0 => matches!(
                        e,
                        DropReason::BadTag | DropReason::Duplicate | DropReason::TooOld
                    ),
                    (_, 0..=3) => matches!(
                        e,
                        DropReason::BadType
                            | DropReason::BadLength
                            | DropReason::BadMac1
                            | DropReason::UnknownIndex
                            | DropReason::UnexpectedHandshake
                    ),
                    (TYPE_DATA, 4..=7) => e == DropReason::UnknownIndex,
                    // The counter's top bit: at or above REJECT_AFTER_MESSAGES.
                    (TYPE_DATA, 15) if bit == 7 => e == DropReason::CounterLimit,
                    (TYPE_DATA, _) if is_withheld => matches!(
                        e,
                        DropReason::BadTag | DropReason::Duplicate | DropReason::TooOld
                    ),
                    (TYPE_DATA, _) => matches!(
                        e,
                        DropReason::Duplicate | DropReason::BadTag | DropReason::TooOld
                    ),
                    // mac2 is not checked when not under load: the message is then a replay, or
                    // the attacker's address hits its handshake rate limit first.
                    (TYPE_INITIATION, p) if p >= len - 16 => {
                        matches!(e, DropReason::ReplayedInitiation | DropReason::RateLimited)
                    }
                    (TYPE_RESPONSE, p) if p >= len - 16 => {
                        matches!(e, DropReason::UnexpectedHandshake | DropReason::RateLimited)
                    }
                    (TYPE_INITIATION | TYPE_RESPONSE, _) => e == DropReason::BadMac1,
                    _ => false,
                };
                assert!(ok, "flip type {t} pos {pos}: {e:?}");
                checked += 1;
            }
        }
        // Truncation at every length, and extension by 1 and 1000 bytes.
        for len in 0..d.bytes.len() {
            let r = sim.deliver_now(attacker(), dst, &d.bytes[..len]);
            assert!(r.is_err(), "truncation of type {t} to {len} accepted");
            if t != TYPE_DATA || len < 32 {
                // Handshakes carry a variable-length credential, so a truncation can land on a
                // valid length: mac1 then fails.
                assert!(
                    matches!(
                        r,
                        Err(DropReason::TooShort | DropReason::BadLength | DropReason::BadMac1)
                    ),
                    "type {t} len {len}: {r:?}"
                );
            }
        }
        for extra in [1usize, 1000] {
            let mut b = d.bytes.clone();
            b.extend(std::iter::repeat_n(0u8, extra));
            let r = sim.deliver_now(attacker(), dst, &b);
            assert!(r.is_err(), "extension of type {t} by {extra} accepted");
        }
    }
    assert!(checked > 1000);
    // State untouched: same sessions, the withheld packet is still accepted, traffic flows.
    assert!(same_session(before, sessions(&sim, &net)));
    let dst = node_of(&sim, withheld.dst);
    let r = sim.deliver_now(withheld.src, dst, &withheld.bytes);
    assert!(matches!(r, Ok(Decapsulated::Packet { .. })), "{r:?}");
    let n0 = sim.nodes[1].inbox.len();
    sim.send_packet(0, &ipv4_udp(net.overlay[0], net.overlay[1], b"after"))
        .unwrap();
    sim.run_for(Duration::from_millis(50));
    assert_eq!(sim.nodes[1].inbox.len(), n0 + 1);
    // The attacker never moved an endpoint.
    for n in &mut sim.nodes {
        while let Some(ev) = n.node.poll_event() {
            if let Event::EndpointChanged { endpoint, .. } = ev {
                assert_ne!(endpoint, attacker());
            }
        }
    }
}

#[test]
fn forged_far_future_counter_does_not_move_the_window() {
    let (net, mut sim, _, withheld) = setup(32);
    let mut b = withheld.bytes.clone();
    // Far ahead but below REJECT_AFTER_MESSAGES (2^63 − 2^13 − 1): the tag decides.
    b[8..16].copy_from_slice(&(u64::MAX / 4).to_le_bytes());
    assert_eq!(
        sim.deliver_now(withheld.src, 1, &b),
        Err(DropReason::BadTag)
    );
    b[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    assert_eq!(
        sim.deliver_now(withheld.src, 1, &b),
        Err(DropReason::CounterLimit)
    );
    assert!(matches!(
        sim.deliver_now(withheld.src, 1, &withheld.bytes),
        Ok(Decapsulated::Packet { .. })
    ));
    let _ = net;
}

#[test]
fn junk_with_random_indices_is_dropped_cheaply() {
    let (net, mut sim, _, _) = setup(33);
    let before = sessions(&sim, &net);
    let mut x = 0x1234_5678_u64;
    for _ in 0..10_000 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let mut b = vec![0u8; 64 + (x as usize % 1000)];
        b[..4].copy_from_slice(&[TYPE_DATA, 1, 0, 0]);
        b[4..12].copy_from_slice(&x.to_le_bytes());
        assert_eq!(
            sim.deliver_now(attacker(), 0, &b),
            Err(DropReason::UnknownIndex)
        );
    }
    assert!(same_session(before, sessions(&sim, &net)));
    assert_eq!(
        sim.nodes[0].node.stats().dropped(DropReason::UnknownIndex),
        10_000
    );
}

#[test]
fn garbage_response_raced_ahead_of_the_real_one_is_ignored() {
    let net = TestNetwork::new(2, 34);
    let mut sim = privnet_core::testing::Sim::new(34, LinkConfig::default());
    let now = sim.now;
    // Node 1 does not initiate; node 0 does once node 1 exists.
    let mut cfg1 = net.config(1, 1);
    cfg1.eager_handshakes = false;
    let mut cfg0 = net.config(0, 1);
    cfg0.eager_handshakes = false;
    let n0 = net.node(0, cfg0, now, net.unix_start);
    let n1 = net.node(1, cfg1, now, net.unix_start);
    sim.add_node(n0, net.underlay[0]);
    sim.add_node(n1, net.underlay[1]);
    let held: Rc<RefCell<Option<Datagram>>> = Rc::default();
    let h = held.clone();
    sim.tamper = Some(Box::new(move |d: &mut Datagram| {
        if d.bytes[0] == TYPE_RESPONSE {
            *h.borrow_mut() = Some(d.clone());
            Verdict::Drop
        } else {
            Verdict::Deliver
        }
    }));
    sim.send_packet(0, &ipv4_udp(net.overlay[0], net.overlay[1], b"q"))
        .unwrap();
    sim.run_for(Duration::from_millis(20));
    let real = held.borrow_mut().take().expect("response");
    // Forge: corrupt the Noise part and recompute a valid mac1 (an insider who knows the PSK).
    let mut forged = real.bytes.clone();
    forged[20] ^= 0xff;
    let len = forged.len();
    let key = crypto::mac1_key(&net.psk, &net.public(0));
    let mac1 = crypto::mac16(&key, &forged[..len - 32]);
    forged[len - 32..len - 16].copy_from_slice(&mac1);
    assert_eq!(
        sim.deliver_now(real.src, 0, &forged),
        Err(DropReason::HandshakeFailed)
    );
    // Low-order ephemeral in a response with a valid mac1.
    let mut low = real.bytes.clone();
    low[12..44].fill(0);
    let mac1 = crypto::mac16(&key, &low[..len - 32]);
    low[len - 32..len - 16].copy_from_slice(&mac1);
    assert_eq!(sim.deliver_now(real.src, 0, &low), Err(DropReason::BadKey));
    // The genuine response still completes the handshake and the queued packet flows.
    sim.tamper = None;
    assert_eq!(
        sim.deliver_now(real.src, 0, &real.bytes),
        Ok(Decapsulated::Control)
    );
    sim.run_for(Duration::from_millis(20));
    assert_eq!(sim.nodes[1].inbox.len(), 1);
}

#[test]
fn low_order_ephemeral_in_initiation_is_rejected_before_dh() {
    let (net, mut sim, captured, _) = setup(35);
    let init = captured
        .iter()
        .find(|d| d.bytes[0] == TYPE_INITIATION)
        .unwrap();
    let dst = node_of(&sim, init.dst);
    let dst_key = sim.nodes[dst].node.public_key();
    let key = crypto::mac1_key(&net.psk, &dst_key);
    let mut one = [0u8; 32];
    one[0] = 1;
    for point in [[0u8; 32], one] {
        let mut b = init.bytes.clone();
        b[8..40].copy_from_slice(&point);
        let len = b.len();
        let mac1 = crypto::mac16(&key, &b[..len - 32]);
        b[len - 32..len - 16].copy_from_slice(&mac1);
        assert_eq!(sim.deliver_now(init.src, dst, &b), Err(DropReason::BadKey));
    }
}

#[test]
fn far_future_timestamps_are_refused_and_clock_rollback_recovers() {
    let net = TestNetwork::new(2, 36);
    let mut sim = privnet_core::testing::Sim::new(36, LinkConfig::default());
    let now = sim.now;
    let mut cfg0 = net.config(0, 1);
    cfg0.eager_handshakes = false;
    let n0 = net.node(0, cfg0, now, net.unix_start);
    sim.add_node(n0, net.underlay[0]);
    // Node 1's clock is a day ahead: its initiations are refused and nothing is recorded.
    let day = Duration::from_secs(86_400);
    let n1 = net.node(1, net.config(1, 1), now, net.unix_start + day);
    sim.add_node(n1, net.underlay[1]);
    sim.run_for(Duration::from_secs(1));
    assert!(
        sim.nodes[0]
            .node
            .stats()
            .dropped(DropReason::FutureTimestamp)
            >= 1
    );
    assert_eq!(sim.nodes[0].node.stats().handshakes_completed, 0);
    // NTP fixes node 1's clock (it restarts): it connects at once.
    let unix = net.unix_start + (sim.now - sim.start);
    let fixed = net.node(1, net.config(1, 2), sim.now, unix);
    sim.replace_node(1, fixed);
    sim.run_for(Duration::from_secs(1));
    assert!(sim.nodes[1].node.stats().handshakes_completed >= 1);

    // Within the allowed skew (5 min ahead) node 1 is accepted; if its clock is then set back,
    // its own initiations look replayed until its clock passes the recorded stamp, but node 0
    // can still reach it, and node 1's traffic flows over that session.
    let unix = net.unix_start + (sim.now - sim.start);
    let ahead = net.node(
        1,
        net.config(1, 3),
        sim.now,
        unix + Duration::from_secs(300),
    );
    sim.replace_node(1, ahead);
    sim.run_for(Duration::from_secs(1));
    let unix = net.unix_start + (sim.now - sim.start);
    let back = net.node(1, net.config(1, 4), sim.now, unix);
    sim.replace_node(1, back);
    sim.run_for(Duration::from_secs(1));
    assert!(
        sim.nodes[0]
            .node
            .stats()
            .dropped(DropReason::ReplayedInitiation)
            >= 1
    );
    // Node 0 still holds its session with the previous incarnation; with data sent and nothing
    // received it starts a new handshake after 15 s, which node 1 accepts.
    for _ in 0..20 {
        sim.send_packet(0, &ipv4_udp(net.overlay[0], net.overlay[1], b"hi"))
            .unwrap();
        sim.run_for(Duration::from_secs(1));
        if !sim.nodes[1].inbox.is_empty() {
            break;
        }
    }
    assert!(!sim.nodes[1].inbox.is_empty());
    sim.send_packet(1, &ipv4_udp(net.overlay[1], net.overlay[0], b"ho"))
        .unwrap();
    sim.run_for(Duration::from_millis(100));
    assert_eq!(sim.nodes[0].inbox.len(), 1);
}

#[test]
fn handshake_flood_switches_to_cookies_and_data_keeps_flowing() {
    // Members 0 and 1 talk; member 2 joins during the flood; the flood replays a captured
    // initiation of a non-member (who holds the PSK) from 20,000 spoofed sources.
    let net = TestNetwork::new(3, 37);
    let mut sim = privnet_core::testing::Sim::new(37, LinkConfig::default());
    let now = sim.now;
    for i in 0..3 {
        let mut cfg = net.config(i, 1);
        cfg.eager_handshakes = i != 2;
        let n = net.node(i, cfg, now, net.unix_start);
        sim.add_node(n, net.underlay[i]);
    }
    sim.run_for(Duration::from_millis(200));
    // The outsider's initiation.
    let outsider = TestNetwork::new(1, 38);
    let mut ocfg = outsider.config(0, 1);
    ocfg.network_psk = net.psk;
    ocfg.network_id = net.network_id;
    let mut onode = privnet_core::Node::new(ocfg, sim.now, net.unix_start).unwrap();
    onode
        .add_peer(
            privnet_core::PeerConfig::new(net.public(0)).endpoint(net.underlay[0]),
            sim.now,
        )
        .unwrap();
    let mut buf = vec![0u8; 2000];
    let t = onode.poll_transmit(&mut buf, sim.now).unwrap();
    let flood_msg = buf[..t.len].to_vec();

    let flood = 20_000u32;
    let mut delivered_before = sim.nodes[1].inbox.len();
    let mut sent = 0usize;
    let mut joined_at = None;
    let start = sim.now;
    for k in 0..flood {
        let src: SocketAddr = SocketAddr::new(
            std::net::IpAddr::V4(std::net::Ipv4Addr::from(0x6400_0000u32 + k)),
            1000 + (k % 5000) as u16,
        );
        sim.inject(src, 0, flood_msg.clone());
        sim.run_for(Duration::from_micros(50));
        if k % 20 == 0 {
            sim.send_packet(0, &ipv4_udp(net.overlay[0], net.overlay[1], b"d"))
                .unwrap();
            sent += 1;
        }
        if k == flood / 2 {
            // A legitimate member joins in the middle of the flood.
            sim.send_packet(2, &ipv4_udp(net.overlay[2], net.overlay[0], b"join"))
                .unwrap();
        }
        if joined_at.is_none() && !sim.nodes[0].inbox.is_empty() {
            joined_at = Some(sim.now);
        }
    }
    sim.run_for(Duration::from_millis(100));
    let st = sim.nodes[0].node.stats();
    // Data between 0 and 1 never stopped.
    delivered_before = sim.nodes[1].inbox.len() - delivered_before;
    assert_eq!(delivered_before, sent);
    // The flood was answered with cookies, and expensive work stayed bounded: ~1 s of flood at
    // 20 k/s, threshold 128/s.
    assert!(st.cookies_sent > 15_000, "{st:?}");
    let dh_work = st.dropped(DropReason::BadCredential)
        + st.dropped(DropReason::RateLimited)
        + st.dropped(DropReason::ReplayedInitiation);
    assert!(dh_work < 1_000, "expensive handshake work {dh_work}");
    // The new member got in during the flood.
    let joined = joined_at.expect("member 2 joined during the flood");
    assert!(joined - start < Duration::from_millis(900));
    assert!(sim.nodes[2].node.stats().handshakes_completed >= 1);
    assert!(sim.nodes[0].node.limiter_sources() <= 65_536);
}

#[test]
fn roaming_follows_authenticated_packets_only() {
    let (net, mut sim, captured, _) = setup(39);
    // A replayed data packet from another address does not move the endpoint.
    let data = captured
        .iter()
        .find(|d| d.bytes[0] == TYPE_DATA && d.dst == net.underlay[0])
        .unwrap();
    assert_eq!(
        sim.deliver_now(attacker(), 0, &data.bytes),
        Err(DropReason::Duplicate)
    );
    while sim.nodes[0].node.poll_event().is_some() {}
    // Node 1 moves (NAT rebinding); its next packet moves the endpoint, replies follow it.
    let moved: SocketAddr = "198.51.100.9:60000".parse().unwrap();
    sim.set_addr(1, moved);
    sim.send_packet(
        1,
        &ipv4_udp(net.overlay[1], net.overlay[0], b"from new place"),
    )
    .unwrap();
    sim.run_for(Duration::from_millis(50));
    let mut saw = false;
    while let Some(ev) = sim.nodes[0].node.poll_event() {
        if let Event::EndpointChanged { endpoint, .. } = ev {
            assert_eq!(endpoint, moved);
            saw = true;
        }
    }
    assert!(saw);
    let before = sim.nodes[1].inbox.len();
    sim.send_packet(0, &ipv4_udp(net.overlay[0], net.overlay[1], b"reply"))
        .unwrap();
    sim.run_for(Duration::from_millis(50));
    assert_eq!(sim.nodes[1].inbox.len(), before + 1);
}

/// A member that addresses a packet to something that is not ours (another network's address, the
/// host's other interfaces) through its authenticated session: dropped as `bad_destination`, the
/// session stays (issue 13, item 4).
#[test]
fn a_packet_for_an_address_that_is_not_ours_is_dropped() {
    let (net, mut sim, _, _) = setup(70);
    let before = sessions(&sim, &net);
    let p0 = sim.nodes[1].node.peer_by_key(&net.public(0)).unwrap();
    let mut out = vec![0u8; 2048];
    for dst in ["10.77.99.1", "192.168.1.1", "127.0.0.1"] {
        let pkt = ipv4_udp(net.overlay[1], dst.parse().unwrap(), b"not for you");
        let now = sim.now;
        // encapsulate_to skips our own routing decision, as a hostile member's code would.
        let sent = sim.nodes[1]
            .node
            .encapsulate_to(p0, &pkt, &mut out, now)
            .unwrap();
        let privnet_core::Encapsulated::Send(t) = sent else {
            panic!("no session")
        };
        let r = sim.deliver_now(net.underlay[1], 0, &out[..t.len]);
        assert_eq!(r, Err(DropReason::BadDestination), "to {dst}");
    }
    assert_eq!(
        sim.nodes[0]
            .node
            .stats()
            .dropped(DropReason::BadDestination),
        3
    );
    assert!(sim.nodes[0]
        .inbox
        .iter()
        .all(|(_, p)| p.get(16..20) == Some(&[10, 77, 70, 1][..])));
    assert!(same_session(before, sessions(&sim, &net)));
}

/// A valid data or handshake message arriving from an underlay address inside the overlay is a
/// packet that came back through our own TUN (nebula#741): the endpoint never moves there
/// (issue 13, item 2).
#[test]
fn an_authenticated_packet_from_inside_the_overlay_never_moves_the_endpoint() {
    let (net, mut sim, _, _) = setup(71);
    let p1 = sim.nodes[0].node.peer_by_key(&net.public(1)).unwrap();
    let endpoint = sim.nodes[0].node.peer(p1).unwrap().endpoint;
    // Node 1 seals a fresh packet; it reaches node 0 "from" node 1's overlay address.
    let looped_from = SocketAddr::new(net.overlay[1], 51820);
    let p0 = sim.nodes[1].node.peer_by_key(&net.public(0)).unwrap();
    let mut out = vec![0u8; 2048];
    let pkt = ipv4_udp(net.overlay[1], net.overlay[0], b"loop");
    let now = sim.now;
    let privnet_core::Encapsulated::Send(t) = sim.nodes[1]
        .node
        .encapsulate_to(p0, &pkt, &mut out, now)
        .unwrap()
    else {
        panic!("no session")
    };
    let r = sim.deliver_now(looped_from, 0, &out[..t.len]);
    assert_eq!(r, Err(DropReason::EndpointInOverlay));
    assert_eq!(sim.nodes[0].node.peer(p1).unwrap().endpoint, endpoint);
    // A handshake from there is refused before any Diffie-Hellman work.
    let now = sim.now;
    sim.nodes[1].node.initiate_handshake(p0, now);
    let mut buf = vec![0u8; 2048];
    let t = sim.nodes[1].node.poll_transmit(&mut buf, now).unwrap();
    let r = sim.deliver_now(looped_from, 0, &buf[..t.len]);
    assert_eq!(r, Err(DropReason::EndpointInOverlay));
    assert_eq!(sim.nodes[0].node.peer(p1).unwrap().endpoint, endpoint);
    assert_eq!(
        sim.nodes[0]
            .node
            .stats()
            .dropped(DropReason::EndpointInOverlay),
        2
    );
    // And a configured endpoint inside the network's prefixes is refused at once.
    let mut cfg = net.config(0, 71);
    cfg.overlay_prefixes = vec!["10.77.0.0/16".parse().unwrap()];
    let mut n = privnet_core::Node::new(cfg, now, net.unix_start).unwrap();
    let pc =
        privnet_core::PeerConfig::new(net.public(1)).endpoint("10.77.3.4:51820".parse().unwrap());
    assert!(matches!(
        n.add_peer(pc, now),
        Err(privnet_core::NodeError::EndpointInOverlay(_))
    ));
}

/// An exit member (its credential grants `0.0.0.0/0`, the default route; docs/POLICY.md §18):
/// an underlay endpoint that falls only inside the default route is the underlay, not the overlay.
/// The session comes up, the endpoint may roam there, nothing is counted `endpoint_in_overlay`;
/// the guard stays for the overlay prefixes. The exit's inner sources may be any outside address,
/// never one of the overlay's.
#[test]
fn an_endpoint_only_inside_a_default_route_is_the_underlay() {
    use privnet_core::credential::StaticKeyVerifier;
    use privnet_core::PeerIdentity;
    let mut net = TestNetwork::new(2, 72);
    let default: ipnetwork::IpNetwork = "0.0.0.0/0".parse().unwrap();
    let mut verifier = StaticKeyVerifier::new();
    for i in 0..2 {
        let mut addresses = vec![ipnetwork::IpNetwork::new(net.overlay[i], 32).unwrap()];
        if i == 1 {
            addresses.push(default);
        }
        verifier.allow(
            net.public(i),
            PeerIdentity {
                name: format!("m{i}"),
                addresses,
                groups: vec![],
                not_after: u64::MAX,
                fingerprint: [i as u8; 32],
            },
        );
    }
    net.verifier = std::sync::Arc::new(verifier);
    let mut sim = Sim::new(72, LinkConfig::default());
    let now = sim.now;
    for i in 0..2 {
        let mut cfg = net.config(i, 72);
        // What `privnet up` gives a node of a network whose CA lists the default route.
        cfg.overlay_prefixes = vec!["10.77.0.0/16".parse().unwrap(), default];
        let n = net.node(i, cfg, now, net.unix_start);
        sim.add_node(n, net.underlay[i]);
    }
    sim.send_packet(0, &ipv4_udp(net.overlay[0], net.overlay[1], b"hello"))
        .unwrap();
    sim.run_for(Duration::from_millis(200));
    assert_eq!(sim.nodes[1].inbox.len(), 1, "the session came up");
    // Outbound to the outside world: routed to the exit, which takes it as its own.
    let outside = "198.51.100.7".parse().unwrap();
    sim.send_packet(0, &ipv4_udp(net.overlay[0], outside, b"egress"))
        .unwrap();
    sim.run_for(Duration::from_millis(50));
    assert_eq!(sim.nodes[1].inbox.len(), 2);

    // The exit roams to an address covered only by its own default route: accepted, moved.
    let p1 = sim.nodes[0].node.peer_by_key(&net.public(1)).unwrap();
    let p0 = sim.nodes[1].node.peer_by_key(&net.public(0)).unwrap();
    let roamed: SocketAddr = "203.0.113.50:51820".parse().unwrap();
    let mut out = vec![0u8; 2048];
    let mut seal = |sim: &mut Sim, src: &str| {
        let pkt = ipv4_udp(src.parse().unwrap(), net.overlay[0], b"reply");
        let now = sim.now;
        let privnet_core::Encapsulated::Send(t) = sim.nodes[1]
            .node
            .encapsulate_to(p0, &pkt, &mut out, now)
            .unwrap()
        else {
            panic!("no session")
        };
        out[..t.len].to_vec()
    };
    let d = seal(&mut sim, "198.51.100.7");
    assert!(matches!(
        sim.deliver_now(roamed, 0, &d),
        Ok(Decapsulated::Packet { .. })
    ));
    assert_eq!(sim.nodes[0].node.peer(p1).unwrap().endpoint, Some(roamed));
    // An exit forwards the outside, never the overlay: an unassigned overlay source is spoofed.
    let d = seal(&mut sim, "10.77.72.99");
    assert_eq!(
        sim.deliver_now(roamed, 0, &d),
        Err(DropReason::SpoofedSource)
    );
    // The overlay prefixes keep the routing-loop guard.
    let d = seal(&mut sim, "198.51.100.7");
    let looped = SocketAddr::new(net.overlay[1], 51820);
    assert_eq!(
        sim.deliver_now(looped, 0, &d),
        Err(DropReason::EndpointInOverlay)
    );
    assert_eq!(sim.nodes[0].node.peer(p1).unwrap().endpoint, Some(roamed));
    for i in 0..2 {
        let s = sim.nodes[i].node.stats();
        assert_eq!(
            s.dropped(DropReason::EndpointInOverlay),
            u64::from(i == 0),
            "node {i}"
        );
    }
    // A configured endpoint only inside the default route is accepted; one in the overlay is not.
    let mut cfg = net.config(0, 73);
    cfg.overlay_prefixes = vec!["10.77.0.0/16".parse().unwrap(), default];
    let mut n = privnet_core::Node::new(cfg, now, net.unix_start).unwrap();
    let pc = privnet_core::PeerConfig::new(net.public(1))
        .endpoint("198.51.100.9:51820".parse().unwrap());
    assert!(n.add_peer(pc, now).is_ok());
    let mut cfg = net.config(0, 74);
    cfg.overlay_prefixes = vec!["10.77.0.0/16".parse().unwrap(), default];
    let mut n = privnet_core::Node::new(cfg, now, net.unix_start).unwrap();
    let pc =
        privnet_core::PeerConfig::new(net.public(1)).endpoint("10.77.3.4:51820".parse().unwrap());
    assert!(matches!(
        n.add_peer(pc, now),
        Err(privnet_core::NodeError::EndpointInOverlay(_))
    ));
}
