//! Unit tests of `up.rs`: which endpoints are re-resolved and when a peer is reconfigured.

use super::*;

#[test]
fn only_dns_names_are_re_resolved() {
    assert!(is_dns_name("member-b.example"));
    assert!(is_dns_name("localhost"));
    assert!(!is_dns_name("192.0.2.7"));
    assert!(!is_dns_name("fd00::7"));
}

#[test]
fn a_re_resolved_peer_is_reconfigured_only_when_its_address_changed() {
    let peer = |key: u8, ep: Option<&str>| {
        let mut pc = privnet_core::PeerConfig::new([key; 32]);
        pc.endpoint = ep.map(|e| e.parse().unwrap());
        (pc, format!("p{key}"))
    };
    let changed = changed_endpoints(
        vec![
            peer(1, Some("192.0.2.1:51820")),
            peer(2, Some("192.0.2.9:51820")),
            peer(3, None),
            peer(4, Some("192.0.2.4:51820")),
        ],
        vec![
            Some("192.0.2.1:51820".into()),
            Some("192.0.2.2:51820".into()),
            Some("192.0.2.3:51820".into()),
            None,
        ],
    );
    let names: Vec<&str> = changed.iter().map(|(_, n)| n.as_str()).collect();
    // Same address: kept; moved: reconfigured; no longer resolves: kept; first address: used.
    assert_eq!(names, ["p2", "p4"]);
}
