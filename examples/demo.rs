//! In-memory demo of the protocol core: three members of one private network handshake over a
//! simulated lossy underlay, exchange packets, and print their counters. No root, no config.
//!
//! Run: `cargo run --release --example demo`
use std::time::Duration;

use privnet::testing::{ipv4_udp, LinkConfig, TestNetwork};

fn main() {
    let net = TestNetwork::new(3, 1);
    let link = LinkConfig {
        latency: Duration::from_millis(2),
        jitter: Duration::from_millis(1),
        loss: 0.02,
        duplicate: 0.01,
        mtu: 1472,
    };
    let mut sim = net.sim(42, link);
    println!("privnet demo: 3 members, simulated underlay with 2% loss, 1% duplication, jitter");
    for i in 0..3 {
        println!(
            "  member {i}: overlay {} underlay {} key {}",
            net.overlay[i],
            net.underlay[i],
            hex(&net.public(i)[..8])
        );
    }
    sim.run_for(Duration::from_millis(200));
    let mut sent = 0u64;
    for round in 0..2_000u32 {
        for from in 0..3 {
            let to = (from + 1 + (round as usize % 2)) % 3;
            let payload = format!("round {round} from {from} to {to}");
            let pkt = ipv4_udp(net.overlay[from], net.overlay[to], payload.as_bytes());
            if sim.send_packet(from, &pkt).is_ok() {
                sent += 1;
            }
        }
        sim.run_for(Duration::from_millis(1));
    }
    sim.run_for(Duration::from_millis(100));
    let delivered: usize = sim.nodes.iter().map(|n| n.inbox.len()).sum();
    println!(
        "\nsent {sent} packets, delivered {delivered} ({:.1}% — the rest lost on the lossy link)",
        100.0 * delivered as f64 / sent as f64
    );
    println!(
        "virtual time {:?}, underlay: {:?}\n",
        sim.now - sim.start,
        sim.stats
    );
    for (i, n) in sim.nodes.iter().enumerate() {
        let s = n.node.stats();
        println!(
            "member {i}: tx {} pkts / {} B, rx {} pkts / {} B, handshakes {} initiated / {} completed, keepalives {}",
            s.tx_packets,
            s.tx_bytes,
            s.rx_packets,
            s.rx_bytes,
            s.handshakes_initiated,
            s.handshakes_completed,
            s.keepalives_sent
        );
        for (reason, count) in s.nonzero_drops() {
            println!("    dropped {count} × {reason}");
        }
        for p in n.node.peer_status() {
            println!(
                "    peer {} at {:?}: established {}, rx {} B, tx {} B",
                hex(&p.static_public[..8]),
                p.endpoint,
                p.established,
                p.counters.rx_bytes,
                p.counters.tx_bytes
            );
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
