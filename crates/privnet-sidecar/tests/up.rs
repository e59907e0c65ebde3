//! `privnet up`'s conversion of a validated file configuration into the library's typed
//! configurations (`up::driver_config`, `up::node_config`): what the driver is told must be what
//! the file says, with the defaults and derivations `privnet up` always had.
// A test: it reads the real clock or opens sockets (see clippy.toml).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]
#![allow(clippy::unwrap_used)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ipnetwork::IpNetwork;
use privnet_core::crypto::CipherSuite;
use privnet_core::identity::{
    CaCertificate, CaKey, CaParams, MemberCertificate, MemberParams, NetworkId, NoiseKeyPair,
};
use privnet_sidecar::{config, files, up};

const DAY: u64 = 86_400;

#[test]
fn network_config_becomes_driver_and_node_config() {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let ca_key = CaKey::from_seed([9; 32]);
    let ca = CaCertificate::self_signed(
        &ca_key,
        &CaParams {
            name: "upnet".into(),
            network_id: NetworkId([9; 16]),
            prefixes: vec![
                "10.77.0.0/16".parse().unwrap(),
                "fd77::/48".parse().unwrap(),
            ],
            routes: vec!["10.88.0.0/16".parse().unwrap()],
            not_before: now - DAY,
            not_after: now + 365 * DAY,
        },
    )
    .unwrap();
    let me = NoiseKeyPair::from_random([10; 32]);
    let peer = NoiseKeyPair::from_random([11; 32]);
    let cert = MemberCertificate::issue(
        &ca,
        &ca_key,
        &MemberParams {
            name: "m1".into(),
            addresses: vec!["10.77.0.2".parse().unwrap(), "fd77::2".parse().unwrap()],
            routes: vec![],
            groups: vec![],
            public_key: me.public(),
            not_before: now - DAY,
            not_after: now + 30 * DAY,
        },
    )
    .unwrap();
    files::write_public(&dir.join("ca.crt"), &ca.to_pem(), true).unwrap();
    files::write_secret(&dir.join("network.psk"), &STANDARD.encode([7u8; 32]), true).unwrap();
    files::write_secret(&dir.join("m1.key"), &me.to_pem(), true).unwrap();
    files::write_public(&dir.join("m1.crt"), &cert.to_pem(), true).unwrap();
    let text = format!(
        r#"[node]
network = "upnet"
private_key = "m1.key"
certificate = "m1.crt"
ca_certificates = ["ca.crt"]
network_psk = "network.psk"
listen = "0.0.0.0:51999"
cipher = "chacha20-poly1305"

[tun]
name = "pnup0"
mtu = 1400
underlay_mtu = 1480
offload = false
busy_poll_us = 150
batch_hold_us = 35

[[peer]]
name = "m2"
public_key = "{}"
addresses = ["10.77.0.3"]
"#,
        STANDARD.encode(peer.public())
    );
    let path = dir.join("m1.toml");
    std::fs::write(&path, text).unwrap();
    let cfg = config::load(&[path], now).unwrap();
    let net = &cfg.networks[0];

    let d = up::driver_config(net);
    assert_eq!(d.network, "upnet");
    assert_eq!(d.listen, "0.0.0.0:51999".parse().unwrap());
    assert_eq!(d.underlay_mtu, 1480);
    assert_eq!(d.busy_poll, Duration::from_micros(150));
    assert_eq!(d.batch_hold, Duration::from_micros(35));
    let want: Vec<IpNetwork> = vec![
        "10.77.0.2/16".parse().unwrap(),
        "fd77::2/48".parse().unwrap(),
    ];
    assert_eq!(
        d.addresses, want,
        "each address with its CA prefix's length"
    );
    assert_eq!(
        d.peer_names.get(&peer.public()).map(String::as_str),
        Some("m2")
    );
    assert_eq!(d.tun.name, "pnup0");
    assert_eq!(d.tun.mtu, 1400);
    assert!(!d.tun.offload);
    assert_eq!(
        d.tun.routes,
        vec!["10.88.0.0/16".parse::<IpNetwork>().unwrap()]
    );
    assert_eq!(d.validate(), Ok(()));
    assert_eq!(
        d.path_mtu(),
        1480 - 60,
        "IPv4 underlay: 28 + 32 bytes of overhead"
    );
    assert_eq!(d.tun.validate(d.path_mtu()), Ok(()));

    let (node_cfg, _verifier) = up::node_config(net);
    assert_eq!(node_cfg.cipher, CipherSuite::ChaCha20Poly1305);
    assert_eq!(node_cfg.credential, cert.to_bytes());
    assert_eq!(node_cfg.network_id, ca.network_id().0);
    let node = d.new_node(node_cfg).unwrap();
    assert_eq!(node.public_key(), me.public());
}
