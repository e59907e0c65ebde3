//! The responder side of the handshake. The target writes a correct mac1 into the input (when it is
//! long enough to be an initiation) so the fuzzer gets past the cheap check and into Noise
//! processing, credential verification and timestamp logic. Invariant: no panic, every refusal is
//! counted, and a refused message never creates a session. Both cipher suites are covered.
#![no_main]
use libfuzzer_sys::fuzz_target;
use privnet_core::crypto;
use privnet_core::testing::{LinkConfig, TestNetwork};
use privnet_core::{Decapsulated, Node};

fuzz_target!(|data: &[u8]| {
    let net = TestNetwork::new(2, 200);
    let mut cfg = net.config(0, 1);
    cfg.eager_handshakes = false;
    // Byte 2 of the input picks the cipher suite of the node and of the message alike, so both
    // suites' Noise processing is reached (the raw input fed below covers the mismatch path).
    let suite = if data.get(2).is_some_and(|b| b & 1 == 1) {
        crypto::CipherSuite::ChaCha20Poly1305
    } else {
        crypto::CipherSuite::Aes256Gcm
    };
    cfg.cipher = suite;
    let now = std::time::Instant::now();
    let mut node: Node = net.node(0, cfg, now, net.unix_start);
    let mut msg = data.to_vec();
    if msg.len() >= 4 {
        msg[0] = 1;
        msg[1] = 1;
        msg[2] = suite.wire_id();
        msg[3] = 0;
    }
    let len = msg.len();
    if len >= 32 {
        let key = crypto::mac1_key(&net.psk, &net.public(0));
        let mac1 = crypto::mac16(&key, &msg[..len - 32]);
        msg[len - 32..len - 16].copy_from_slice(&mac1);
    }
    let mut out = vec![0u8; 2048];
    let from = net.underlay[1];
    let before = node.stats().total_drops();
    match node.decapsulate(from, &msg, &mut out, now) {
        Ok(Decapsulated::Control) => {}
        Ok(other) => panic!("initiation produced {other:?}"),
        Err(_) => assert_eq!(node.stats().total_drops(), before + 1),
    }
    // Also feed the raw input unchanged.
    let _ = node.decapsulate(from, data, &mut out, now);
    let _ = LinkConfig::default();
});
