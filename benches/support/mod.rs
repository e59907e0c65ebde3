//! What the criterion benches share: two members of one network with a session, driven by hand
//! (no simulator), and `shuttle` to carry one node's datagrams to the other.
// A benchmark helper: it reads the real clock (see clippy.toml).
#![allow(clippy::disallowed_methods, clippy::disallowed_types, dead_code)]
use std::sync::Arc;
use std::time::Instant;

use privnet::policy::CompiledPolicy;
use privnet::testing::TestNetwork;
use privnet::{Node, PeerId};

pub struct Pair {
    pub a: Node,
    pub b: Node,
    pub a_to_b: PeerId,
    pub now: Instant,
    pub addr_a: std::net::SocketAddr,
    pub addr_b: std::net::SocketAddr,
}

pub fn shuttle(
    from: &mut Node,
    from_addr: std::net::SocketAddr,
    to: &mut Node,
    now: Instant,
) -> usize {
    let mut buf = vec![0u8; 2048];
    let mut out = vec![0u8; 2048];
    let mut n = 0;
    while let Some(t) = from.poll_transmit(&mut buf, now) {
        let _ = to.decapsulate(from_addr, &buf[..t.len], &mut out, now);
        n += 1;
    }
    n
}

/// Two members (0 sends, 1 answers) with a session, both enforcing `policy` if given.
pub fn pair(policy: Option<Arc<CompiledPolicy>>) -> Pair {
    let net = TestNetwork::new(2, 90);
    let now = Instant::now();
    let mut ca = net.config(0, 1);
    ca.handshake_rate_per_source = 1_000_000;
    ca.handshake_burst_per_source = 1_000_000;
    ca.under_load_handshakes_per_sec = 1_000_000;
    let mut cb = net.config(1, 1);
    cb.handshake_rate_per_source = 1_000_000;
    cb.handshake_burst_per_source = 1_000_000;
    cb.under_load_handshakes_per_sec = 1_000_000;
    cb.eager_handshakes = false;
    ca.policy = policy.clone();
    cb.policy = policy;
    let mut a = net.node(0, ca, now, net.unix_start);
    let mut b = net.node(1, cb, now, net.unix_start);
    for _ in 0..4 {
        shuttle(&mut a, net.underlay[0], &mut b, now);
        shuttle(&mut b, net.underlay[1], &mut a, now);
    }
    let a_to_b = a.peer_by_key(&net.public(1)).expect("peer");
    assert!(a.is_established(a_to_b));
    Pair {
        a,
        b,
        a_to_b,
        now,
        addr_a: net.underlay[0],
        addr_b: net.underlay[1],
    }
}
