//! The decrypt + replay path of an established session. The input is a program: replay one of 64
//! genuine sealed packets, deliver a mutated one, or deliver raw bytes. Invariants: no panic, a
//! genuine packet is delivered at most once, a mutated packet is never delivered.
//!
//! The established pair is built once per fuzzing thread (two handshakes cost far more than an
//! input); every input gets 64 freshly sealed packets, so the invariants hold per input.
#![no_main]
use std::cell::RefCell;
use std::collections::HashSet;
use std::rc::Rc;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use privnet_core::testing::{ipv4_udp, udp_payload, LinkConfig, Sim, TestNetwork, Verdict};
use privnet_core::Decapsulated;

struct Pair {
    net: TestNetwork,
    sim: Sim,
    serial: u64,
}

thread_local! {
    static PAIR: RefCell<Option<Pair>> = const { RefCell::new(None) };
}

fn with_pair(f: impl FnOnce(&mut Pair)) {
    PAIR.with(|p| {
        let mut p = p.borrow_mut();
        let pair = p.get_or_insert_with(|| {
            let net = TestNetwork::new(2, 201);
            let mut sim = net.sim(1, LinkConfig::default());
            sim.run_for(Duration::from_millis(50));
            Pair { net, sim, serial: 0 }
        });
        f(pair);
    });
}

fuzz_target!(|data: &[u8]| {
    with_pair(|pair| {
        let Pair { net, sim, serial } = pair;
        let sealed = Rc::new(RefCell::new(Vec::new()));
        let s2 = sealed.clone();
        sim.tamper = Some(Box::new(move |d| {
            s2.borrow_mut().push(d.bytes.clone());
            Verdict::Drop
        }));
        for _ in 0..64 {
            *serial += 1;
            let _ = sim.send_packet(0, &ipv4_udp(net.overlay[0], net.overlay[1], &serial.to_le_bytes()));
        }
        sim.tamper = None;
        let sealed = sealed.borrow().clone();
        if sealed.is_empty() {
            return;
        }
        let mut delivered = HashSet::new();
        let from = net.underlay[0];
        let mut i = 0;
        while i + 2 <= data.len() {
            let (op, arg) = (data[i], data[i + 1]);
            i += 2;
            let pkt = &sealed[usize::from(arg) % sealed.len()];
            let r = match op % 3 {
                0 => sim.deliver_now(from, 1, pkt),
                1 => {
                    let mut m = pkt.clone();
                    let pos = usize::from(data.get(i).copied().unwrap_or(0)) % m.len();
                    m[pos] ^= data.get(i + 1).copied().unwrap_or(1) | 1;
                    i += 2;
                    let r = sim.deliver_now(from, 1, &m);
                    assert!(!matches!(r, Ok(Decapsulated::Packet { .. })), "mutation accepted");
                    r
                }
                _ => {
                    let n = usize::from(arg).min(data.len() - i);
                    let r = sim.deliver_now(from, 1, &data[i..i + n]);
                    i += n;
                    r
                }
            };
            if let Ok(Decapsulated::Packet { .. }) = r {
                let inbox = &sim.nodes[1].inbox;
                let last = udp_payload(&inbox[inbox.len() - 1].1).to_vec();
                assert!(delivered.insert(last), "delivered twice");
            }
        }
        sim.nodes[1].inbox.clear();
    });
});
