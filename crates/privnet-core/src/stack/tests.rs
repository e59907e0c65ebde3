//! Two stacks wired back to back (what one sends, the other receives, in order), on a virtual
//! clock: handshakes, identities, data both ways, backpressure, the backlog, refusals, UDP.
// The virtual clock takes its origin from the real one once.
#![allow(clippy::disallowed_methods, clippy::field_reassign_with_default)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use super::*;
use crate::offload::{self, GsoType};

const A: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
const B: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 3);

fn identity(name: &str, tag: u8) -> Arc<PeerIdentity> {
    Arc::new(PeerIdentity {
        name: name.into(),
        addresses: vec![],
        groups: vec!["ops".into()],
        not_after: u64::MAX,
        fingerprint: [tag; 32],
    })
}

fn stack(addr: Ipv4Addr, cfg: StackConfig, now: Instant) -> Stack {
    let setup = StackSetup {
        addresses: vec![ipnetwork::IpNetwork::new(IpAddr::V4(addr), 16).unwrap()],
        mtu: 1420,
        seed: u64::from(addr.octets()[3]),
    };
    Stack::new(cfg, &setup, now).unwrap()
}

/// Two stacks and a clock; `a` is known to `b` as "alice", `b` to `a` as "bob".
struct Pair {
    a: Stack,
    b: Stack,
    now: Instant,
    alice: Arc<PeerIdentity>,
    bob: Arc<PeerIdentity>,
    /// Packets A sent (segmented as the driver would), for inspection.
    a_sent: Vec<Vec<u8>>,
    /// Drop every packet from A whose index is in here.
    drop_from_a: Vec<usize>,
    scratch: Vec<u8>,
}

impl Pair {
    fn new(cfg: StackConfig) -> Self {
        let now = Instant::now();
        Self {
            a: stack(A, cfg.clone(), now),
            b: stack(B, cfg, now),
            now,
            alice: identity("alice", 1),
            bob: identity("bob", 2),
            a_sent: Vec::new(),
            drop_from_a: Vec::new(),
            scratch: vec![0u8; SUPER_PACKET],
        }
    }

    /// Move every outbound packet of `from` into `to` (cutting super-packets, completing
    /// checksums), as the driver and the core would; returns how many moved.
    fn pump(&mut self, a_to_b: bool) -> usize {
        let now = self.now;
        let (from, to, sender) = if a_to_b {
            (&mut self.a, &mut self.b, self.alice.clone())
        } else {
            (&mut self.b, &mut self.a, self.bob.clone())
        };
        from.poll(now);
        let mut packets = Vec::new();
        while let Some(mut out) = from.poll_outbound() {
            let len = out.len;
            let pkt = &mut out.buf[..len];
            match out.segment {
                Some(mss) => {
                    let kind = if pkt[0] >> 4 == 4 {
                        GsoType::TcpV4
                    } else {
                        GsoType::TcpV6
                    };
                    offload::segment(pkt, kind, usize::from(mss.get()), &mut self.scratch, |s| {
                        packets.push(s.to_vec())
                    })
                    .unwrap();
                }
                None => {
                    if from.config().segmentation_offload {
                        fill_tcp_checksum(pkt);
                    }
                    packets.push(pkt.to_vec());
                }
            }
            from.recycle(out);
        }
        let n = packets.len();
        for p in packets {
            assert!(
                offload::transport_checksum_ok(&p) || p[9] == 1,
                "a packet leaves with a correct checksum"
            );
            if a_to_b {
                let i = self.a_sent.len();
                self.a_sent.push(p.clone());
                if self.drop_from_a.contains(&i) {
                    continue;
                }
            }
            to.handle_inbound(&p, Some(&sender), now);
        }
        n
    }

    /// Pump both ways until quiet, advancing the clock to the next timer when nothing moves;
    /// at most `rounds` rounds.
    fn run(&mut self, rounds: usize) {
        for _ in 0..rounds {
            let moved = self.pump(true) + self.pump(false);
            if moved == 0 {
                let next = [self.a.poll_timeout(self.now), self.b.poll_timeout(self.now)]
                    .into_iter()
                    .flatten()
                    .min();
                match next {
                    Some(t) if t > self.now => self.now = t,
                    Some(_) => self.now += Duration::from_millis(1),
                    None => return,
                }
            }
        }
    }

    fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.run(8);
            self.now += Duration::from_millis(5);
        }
    }
}

fn noop_cx() -> Context<'static> {
    Context::from_waker(Waker::noop())
}

fn accept(s: &mut Stack, port: u16) -> Option<Accepted> {
    match s.poll_accept(port, &mut noop_cx()) {
        Poll::Ready(a) => a,
        Poll::Pending => None,
    }
}

/// Connect A → B:port and accept it on B: (A's handle, B's accepted connection).
fn connected(p: &mut Pair, port: u16) -> (Handle, Accepted) {
    p.b.tcp_listen(port).unwrap();
    let h = p.a.tcp_connect(SocketAddr::new(B.into(), port)).unwrap();
    p.run(50);
    let acc = accept(&mut p.b, port).expect("an accepted connection");
    assert_eq!(p.a.tcp(h).unwrap().state(), tcp_socket::State::Established);
    (h, acc)
}

fn transfer(cfg: StackConfig, total: usize) {
    let mut p = Pair::new(cfg);
    let (h, acc) = connected(&mut p, 80);
    let data: Vec<u8> = (0..total).map(|i| (i * 7 + i / 251) as u8).collect();
    let mut sent = 0;
    let mut got = Vec::with_capacity(total);
    let mut buf = vec![0u8; 70_000];
    for _ in 0..200_000 {
        if sent < total {
            sent += p.a.tcp(h).unwrap().send_slice(&data[sent..]).unwrap();
        }
        p.run(4);
        let s = p.b.tcp(acc.handle).unwrap();
        while s.can_recv() {
            let n = s.recv_slice(&mut buf).unwrap();
            got.extend_from_slice(&buf[..n]);
        }
        if got.len() == total {
            break;
        }
    }
    assert_eq!(got.len(), total, "everything arrived");
    assert!(got == data, "in order and intact");
}

#[test]
fn connect_accept_and_identities_both_ways() {
    let mut p = Pair::new(StackConfig::default());
    let (h, acc) = connected(&mut p, 80);
    assert_eq!(acc.peer.name, "alice", "the SYN's sender");
    assert_eq!(acc.remote.ip(), IpAddr::V4(A));
    assert_eq!(p.a.tcp_peer(h).map(|i| i.name.clone()).as_deref(), Some("bob"));
    assert_eq!(p.b.tcp_peer(acc.handle).unwrap().fingerprint, [1; 32]);
    assert_eq!(p.b.counters().accepted, 1);
}

#[test]
fn a_stream_arrives_intact_with_and_without_offload() {
    transfer(StackConfig::default(), 3 << 20);
    let mut cfg = StackConfig::default();
    cfg.segmentation_offload = false;
    cfg.congestion = Congestion::Reno;
    cfg.nodelay = false;
    transfer(cfg, 1 << 20);
}

#[test]
fn a_stream_recovers_from_lost_segments() {
    let mut p = Pair::new(StackConfig::default());
    let (h, acc) = connected(&mut p, 80);
    let first = p.a_sent.len();
    p.drop_from_a = vec![first + 3, first + 10, first + 11, first + 40];
    let data = vec![0x5au8; 300_000];
    let mut sent = 0;
    let mut got = 0;
    let mut buf = vec![0u8; 65_536];
    for _ in 0..20_000 {
        if sent < data.len() {
            sent += p.a.tcp(h).unwrap().send_slice(&data[sent..]).unwrap();
        }
        p.run(4);
        let s = p.b.tcp(acc.handle).unwrap();
        while s.can_recv() {
            got += s.recv_slice(&mut buf).unwrap();
        }
        if got == data.len() {
            break;
        }
        p.now += Duration::from_millis(20);
    }
    assert_eq!(got, data.len());
}

#[test]
fn a_reader_that_does_not_read_stops_the_writer_and_loses_nothing() {
    let mut cfg = StackConfig::default();
    cfg.tcp_rx_buffer = 64 << 10;
    cfg.tcp_tx_buffer = 64 << 10;
    let mut p = Pair::new(cfg);
    let (h, acc) = connected(&mut p, 80);
    let mut written = 0;
    for _ in 0..100 {
        written += p.a.tcp(h).unwrap().send_slice(&[7u8; 16_384]).unwrap();
        p.advance(Duration::from_millis(50));
    }
    // Both buffers are full and the writer is told so (send_slice takes nothing more).
    assert!(written <= (128 << 10), "{written}");
    assert!(written >= (100 << 10), "{written}");
    assert_eq!(p.a.tcp(h).unwrap().send_slice(&[7u8; 100]).unwrap(), 0);
    // Then the reader reads everything: all of it, nothing lost.
    let mut got = 0;
    let mut buf = vec![0u8; 65_536];
    for _ in 0..2_000 {
        let s = p.b.tcp(acc.handle).unwrap();
        while s.can_recv() {
            got += s.recv_slice(&mut buf).unwrap();
        }
        if got == written {
            break;
        }
        p.advance(Duration::from_millis(20));
    }
    assert_eq!(got, written);
}

#[test]
fn no_listener_means_a_reset_and_a_closed_connect() {
    let mut p = Pair::new(StackConfig::default());
    let h = p.a.tcp_connect(SocketAddr::new(B.into(), 81)).unwrap();
    p.run(20);
    assert_eq!(p.a.tcp(h).unwrap().state(), tcp_socket::State::Closed);
    assert_eq!(p.a.tcp_error(h), None, "refused by the peer, not by the stack");
}

#[test]
fn a_refused_syn_fails_the_connect_at_once() {
    let mut p = Pair::new(StackConfig::default());
    let h = p.a.tcp_connect(SocketAddr::new(B.into(), 80)).unwrap();
    p.a.poll(p.now);
    let syn = p.a.poll_outbound().unwrap();
    p.a.refused(syn.packet());
    assert_eq!(p.a.tcp_error(h), Some(StackError::Unreachable));
    assert_eq!(p.a.tcp(h).unwrap().state(), tcp_socket::State::Closed);
    assert_eq!(p.a.counters().unreachable, 1);
}

#[test]
fn the_backlog_holds_many_connections_and_drops_beyond_it() {
    let mut cfg = StackConfig::default();
    cfg.backlog = 8;
    cfg.tcp_rx_buffer = 8192;
    cfg.tcp_tx_buffer = 8192;
    let mut p = Pair::new(cfg);
    p.b.tcp_listen(80).unwrap();
    let handles: Vec<_> = (0..20)
        .map(|_| p.a.tcp_connect(SocketAddr::new(B.into(), 80)).unwrap())
        .collect();
    p.run(100);
    let mut accepted = 0;
    while accept(&mut p.b, 80).is_some() {
        accepted += 1;
    }
    assert_eq!(accepted, 8, "the backlog");
    assert!(p.b.counters().syn_backlog_full > 0);
    // The others retry their SYN and get in once there is room.
    for _ in 0..30 {
        p.advance(Duration::from_millis(500));
        while accept(&mut p.b, 80).is_some() {
            accepted += 1;
        }
    }
    assert_eq!(accepted, 20);
    for h in handles {
        assert_eq!(p.a.tcp(h).unwrap().state(), tcp_socket::State::Established);
    }
}

#[test]
fn a_connection_without_an_identity_is_never_accepted() {
    let mut p = Pair::new(StackConfig::default());
    p.b.tcp_listen(80).unwrap();
    let h = p.a.tcp_connect(SocketAddr::new(B.into(), 80)).unwrap();
    p.a.poll(p.now);
    while let Some(out) = p.a.poll_outbound() {
        p.b.handle_inbound(out.packet(), None, p.now);
        p.a.recycle(out);
    }
    p.run(50);
    assert!(accept(&mut p.b, 80).is_none());
    assert_eq!(p.b.counters().no_identity, 1);
    assert_ne!(p.a.tcp(h).unwrap().state(), tcp_socket::State::Established);
}

#[test]
fn released_connections_finish_and_are_reaped() {
    let mut p = Pair::new(StackConfig::default());
    let (h, acc) = connected(&mut p, 80);
    p.a.tcp(h).unwrap().send_slice(b"bye").unwrap();
    p.a.tcp_release(h, p.now);
    p.run(50);
    let s = p.b.tcp(acc.handle).unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(s.recv_slice(&mut buf).unwrap(), 3);
    assert!(!s.may_recv(), "the FIN came after the data");
    p.b.tcp_release(acc.handle, p.now);
    p.advance(Duration::from_secs(3));
    assert_eq!(p.a.socket_count(), 0);
    assert_eq!(p.b.socket_count(), 0, "a spare is made only for the next SYN");
}

#[test]
fn udp_datagrams_both_ways_and_a_full_buffer_is_counted() {
    let mut cfg = StackConfig::default();
    cfg.udp_buffer = 4096;
    let mut p = Pair::new(cfg);
    let (ha, pa) = p.a.udp_bind(0).unwrap();
    let (hb, pb) = p.b.udp_bind(5353).unwrap();
    assert_eq!(pb, 5353);
    assert_eq!(p.b.udp_bind(5353), Err(StackError::AddrInUse));
    let to_b = SocketAddr::new(B.into(), pb);
    p.a.udp(ha).unwrap().send_slice(b"ping", to_b).unwrap();
    p.run(10);
    let (data, meta) = p.b.udp(hb).unwrap().recv().unwrap();
    assert_eq!(data, b"ping");
    assert_eq!(SocketAddr::from(meta.endpoint), SocketAddr::new(A.into(), pa));
    // Eight 1 KiB datagrams into a 4 KiB buffer nobody reads: some are dropped, and counted.
    for _ in 0..8 {
        p.a.udp(ha).unwrap().send_slice(&[1u8; 1024], to_b).unwrap();
        p.run(4);
    }
    assert!(p.b.counters().udp_rx_full >= 3, "{:?}", p.b.counters());
}

#[test]
fn timeouts_are_in_the_future_and_nothing_is_pending_when_idle() {
    let mut p = Pair::new(StackConfig::default());
    assert_eq!(p.a.poll_timeout(p.now), None);
    let _ = p.a.tcp_connect(SocketAddr::new(B.into(), 80)).unwrap();
    assert!(p.a.poll_timeout(p.now).is_some_and(|t| t <= p.now), "a SYN to send");
    p.a.poll(p.now);
    let syn = p.a.poll_outbound().unwrap();
    p.a.recycle(syn);
    let t = p.a.poll_timeout(p.now).unwrap();
    assert!(t > p.now, "the SYN's retransmission timer");
}
