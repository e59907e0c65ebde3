//! Arbitrary inner packets into the embedded userspace stack, through the core: member 0 of a
//! simulated pair seals each packet (its addresses fixed up so that the core's anti-spoofing and
//! destination checks let it through), member 1 opens it, and what comes out of its node goes
//! into member 1's stack (`privnet_core::stack::Stack`, with a listener, a UDP socket and a
//! connect of its own) with the sender's verified identity, as the driver's `StackInner` does.
//! Whatever the stack answers goes back through member 1's node.
//!
//! Invariants: no panic; every packet the stack emits is a well-formed IP packet from our own
//! address; the stack's sockets stay within its backlog and limits.
//!
//! Input: a program of records `[op, len, bytes...]`; `op` picks the IP version and the transport
//! protocol to force, and how far to advance the clock.
#![no_main]
use std::cell::RefCell;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use privnet_core::packet::IpPacket;
use privnet_core::stack::{self, Stack, StackConfig, StackSetup};
use privnet_core::testing::{LinkConfig, Sim, TestNetwork};

struct Pair {
    net: TestNetwork,
    sim: Sim,
}

thread_local! {
    static PAIR: RefCell<Option<Pair>> = const { RefCell::new(None) };
}

/// Make `body` an IPv4 packet from `src` to `dst` carrying protocol `proto`: a 20-byte header
/// (its length fields true), then the fuzzer's bytes as the transport.
fn ipv4(src: IpAddr, dst: IpAddr, proto: u8, body: &[u8]) -> Vec<u8> {
    let (IpAddr::V4(s), IpAddr::V4(d)) = (src, dst) else {
        return Vec::new();
    };
    let total = (20 + body.len()).min(1400);
    let mut p = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, proto, 0, 0];
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p.extend_from_slice(&s.octets());
    p.extend_from_slice(&d.octets());
    p.extend_from_slice(&body[..total - 20]);
    p
}

fuzz_target!(|data: &[u8]| {
    PAIR.with(|p| {
        let mut p = p.borrow_mut();
        let pair = p.get_or_insert_with(|| {
            let net = TestNetwork::new(2, 211);
            let mut sim = net.sim(3, LinkConfig::default());
            sim.run_for(Duration::from_millis(50));
            Pair { net, sim }
        });
        let Pair { net, sim } = pair;
        let (peer_addr, our_addr) = (net.overlay[0], net.overlay[1]);
        let mut cfg = StackConfig::default();
        cfg.tcp_rx_buffer = 8192;
        cfg.tcp_tx_buffer = 8192;
        cfg.udp_buffer = 4096;
        cfg.backlog = 4;
        cfg.max_sockets = 16;
        cfg.segmentation_offload = data.first().is_some_and(|b| b & 1 == 1);
        let setup = StackSetup {
            addresses: vec![format!("{our_addr}/16").parse().unwrap()],
            mtu: 1420,
            seed: 7,
        };
        let mut st = Stack::new(cfg, &setup, sim.now).unwrap();
        st.tcp_listen(80).unwrap();
        let (_udp, _) = st.udp_bind(53).unwrap();
        let _conn = st.tcp_connect(SocketAddr::new(peer_addr, 8080)).unwrap();
        let mut scratch = vec![0u8; stack::SUPER_PACKET];
        let mut rest = data.get(1..).unwrap_or(&[]);
        let mut rounds = 0;
        while rest.len() >= 2 && rounds < 64 {
            rounds += 1;
            let (op, len) = (rest[0], usize::from(rest[1]) * 6);
            let body = &rest[2..(2 + len).min(rest.len())];
            rest = &rest[(2 + len).min(rest.len())..];
            let proto = match op & 3 {
                0 => 6,
                1 => 17,
                2 => 1,
                _ => body.first().copied().unwrap_or(6),
            };
            let pkt = if op & 4 == 0 {
                ipv4(peer_addr, our_addr, proto, body)
            } else {
                // Raw bytes, as the peer's application wrote them (mostly refused by the core).
                body.to_vec()
            };
            let _ = sim.send_packet(0, &pkt);
            sim.run_for(Duration::from_millis(u64::from(op >> 4)));
            let now = sim.now;
            let inbox = std::mem::take(&mut sim.nodes[1].inbox);
            for (peer, packet) in inbox {
                let sender = stack::wants_sender(&packet)
                    .then(|| sim.nodes[1].node.peer_identity(peer).cloned().map(Arc::new))
                    .flatten();
                st.handle_inbound(&packet, sender.as_ref(), now);
            }
            st.poll(now);
            while let Some(mut out) = st.poll_outbound() {
                let len = out.len;
                let mut packets = Vec::new();
                {
                    let pkt = &mut out.buf[..len];
                    match out.segment {
                        Some(mss) => {
                            let kind = if pkt[0] >> 4 == 6 {
                                privnet_core::offload::GsoType::TcpV6
                            } else {
                                privnet_core::offload::GsoType::TcpV4
                            };
                            let r = privnet_core::offload::segment(
                                pkt,
                                kind,
                                usize::from(mss.get()),
                                &mut scratch,
                                |s| packets.push(s.to_vec()),
                            );
                            assert!(r.is_ok(), "the stack's super-packets segment");
                        }
                        None => {
                            stack::fill_tcp_checksum(pkt);
                            packets.push(pkt.to_vec());
                        }
                    }
                }
                st.recycle(out);
                for pkt in packets {
                    let view = IpPacket::new_checked(&pkt[..]);
                    assert!(view.is_ok(), "the stack emits well-formed packets: {pkt:?}");
                    let view = view.unwrap();
                    assert_eq!(view.src_addr(), our_addr, "from our own address");
                    if sim.send_packet(1, &pkt).is_err() {
                        st.refused(&pkt);
                    }
                }
            }
            assert!(st.socket_count() <= 16, "within the socket limit");
            sim.nodes[0].inbox.clear();
        }
    });
});
