//! The responder side of the handshake on raw bytes. The target writes a correct mac1 into the
//! input (when it is long enough to be an initiation) so the fuzzer gets past the cheap check and
//! into Noise processing (and, from the seeds, which hold genuine initiations, into credential
//! verification and timestamp logic). Invariants: no panic; every refusal is counted exactly once
//! under its own reason; a refused message adds no peer and sends nothing (a cookie reply aside);
//! an accepted one sends exactly one response, to the sender; the node's tables stay consistent.
//! Both cipher suites are covered (the low bit of input byte 2 picks the node's suite).
//!
//! Speed: the keys, configurations and derived keys are built once per process (`common`); each
//! input gets a fresh node made from a prepared configuration, so inputs do not influence each other.
#![no_main]
use libfuzzer_sys::fuzz_target;
use privnet_core::crypto::CipherSuite;
use privnet_core::{Decapsulated, DropReason};

mod common;
use common::{fixture, Variant};

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    // Byte 2 of the input (the cipher byte of the header) picks the suite of the node and of the
    // message alike, by its lowest bit read as a wire id (1 AES-256-GCM, 0 ChaCha20-Poly1305),
    // so both suites' Noise processing is reached and a genuine initiation (the seeds) keeps its
    // own suite; the raw input fed below covers the mismatch path.
    let suite = CipherSuite::from_wire_id(data.get(2).map_or(1, |b| b & 1)).unwrap_or_default();
    let v = Variant {
        suite,
        low_load_threshold: false,
        closed: false,
    };
    let mut node = f.node(v);
    let now = f.now;
    let mut msg = data.to_vec();
    if msg.len() >= 4 {
        msg[0] = 1;
        msg[1] = 1;
        msg[2] = suite.wire_id();
        msg[3] = 0;
    }
    if msg.len() >= 32 {
        common::set_mac1(&mut msg, &f.mac1_key[0]);
    }
    let from = f.sources[common::SRC_MEMBER1];
    let mut out = vec![0u8; 2048];
    for (i, m) in [&msg[..], data].into_iter().enumerate() {
        let before = node.stats().total_drops();
        let peers = node.peer_count();
        let r = node.decapsulate(from, m, &mut out, now);
        let mut sent = Vec::new();
        while let Some(t) = node.poll_transmit(&mut out, now) {
            sent.push((t.dst, out[..t.len].to_vec()));
        }
        match r {
            Ok(Decapsulated::Control) => {
                assert_eq!(node.stats().total_drops(), before, "accepted and counted");
                assert_eq!(sent.len(), 1, "one response per accepted initiation");
                assert_eq!(sent[0].0, from, "the response goes to the sender");
                assert_eq!(sent[0].1[0], privnet_core::wire::TYPE_RESPONSE);
            }
            Ok(other) => panic!("initiation {i} produced {other:?}"),
            Err(e) => {
                assert_eq!(
                    node.stats().total_drops(),
                    before + 1,
                    "{e:?} not counted once"
                );
                assert!(node.stats().dropped(e.reason()) >= 1);
                assert_eq!(node.peer_count(), peers, "a refused message added a peer");
                let cookie = e.reason() == DropReason::CookieRequired;
                assert!(sent.len() <= usize::from(cookie), "a refusal sent {sent:?}");
            }
        }
        node.check_invariants();
    }
});
