//! Configuration loading: a valid configuration, a table of invalid ones (each must name the
//! offending key), and several networks in one process.
#![allow(clippy::unwrap_used)]

use privnet_core::crypto::CipherSuite;
use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use privnet_core::identity::{
    CaCertificate, CaKey, CaParams, MemberCertificate, MemberParams, NetworkId, NoiseKeyPair,
};
use privnet_sidecar::config::{self, LogLevel, Problem, TunMode};
use privnet_sidecar::files;

const NOW: u64 = 1_767_225_600;

/// The fixture's `node.policy`.
const POLICY: &str = r#"# web may reach db on 5432
name = "demo"

[[application]]
id = "web-to-db"
action = "allow"
from = { groups = { any = ["web"] } }
to = { groups = { any = ["db"] } }
proto = "tcp"
ports = [5432]
"#;
const DAY: u64 = 86_400;

/// A directory holding one network's CA, two members' keys and certificates, and member-a's config.
struct Fx {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    text: String,
    b_pub: String,
    c_pub: String,
    ca_key: CaKey,
    ca: CaCertificate,
    a_cert: MemberCertificate,
    now: u64,
}

fn ca_for(seed: u8, name: &str) -> (CaKey, CaCertificate) {
    let key = CaKey::from_seed([seed; 32]);
    let ca = CaCertificate::self_signed(
        &key,
        &CaParams {
            name: name.into(),
            network_id: NetworkId([seed; 16]),
            prefixes: vec![
                "10.77.0.0/16".parse().unwrap(),
                "fd77::/48".parse().unwrap(),
            ],
            routes: vec!["10.88.0.0/16".parse().unwrap()],
            not_before: NOW - DAY,
            not_after: NOW + 365 * DAY,
        },
    )
    .unwrap();
    (key, ca)
}

fn issue(
    ca: &CaCertificate,
    key: &CaKey,
    name: &str,
    addr: &[&str],
    pk: [u8; 32],
) -> MemberCertificate {
    MemberCertificate::issue(
        ca,
        key,
        &MemberParams {
            name: name.into(),
            addresses: addr.iter().map(|a| a.parse().unwrap()).collect(),
            routes: vec![],
            groups: vec!["web".into()],
            public_key: pk,
            not_before: NOW - DAY,
            not_after: NOW + 30 * DAY,
        },
    )
    .unwrap()
}

/// Write member `name`'s files for network `net` into `dir` and return its config text.
fn member_files(
    dir: &Path,
    seed: u8,
    net: &str,
) -> (
    String,
    String,
    String,
    CaKey,
    CaCertificate,
    MemberCertificate,
) {
    let (ca_key, ca) = ca_for(seed, net);
    let a = NoiseKeyPair::from_random([seed.wrapping_add(1); 32]);
    let b = NoiseKeyPair::from_random([seed.wrapping_add(2); 32]);
    let c = NoiseKeyPair::from_random([seed.wrapping_add(3); 32]);
    let a_cert = issue(
        &ca,
        &ca_key,
        "member-a",
        &["10.77.0.2", "fd77::2"],
        a.public(),
    );
    files::write_public(&dir.join("ca.crt"), &ca.to_pem(), true).unwrap();
    files::write_secret(&dir.join("network.psk"), &STANDARD.encode([7u8; 32]), true).unwrap();
    files::write_secret(&dir.join("member-a.key"), &a.to_pem(), true).unwrap();
    files::write_public(&dir.join("member-a.crt"), &a_cert.to_pem(), true).unwrap();
    files::write_public(&dir.join("revoked.txt"), "# nothing revoked\n", true).unwrap();
    files::write_public(&dir.join("policy.toml"), POLICY, true).unwrap();
    let b_pub = STANDARD.encode(b.public());
    let c_pub = STANDARD.encode(c.public());
    let text = format!(
        r#"# member-a of {net}
[node]
network = "{net}"
private_key = "member-a.key"
certificate = "member-a.crt"
ca_certificates = ["ca.crt"]
network_psk = "network.psk"
revocation_list = "revoked.txt"
listen = "0.0.0.0:51820"
policy = "policy.toml"
cipher = "chacha20-poly1305"

[tun]
mode = "tun"
name = "privnet0"
mtu = 1420
underlay_mtu = 1500
busy_poll_us = 200
batch_hold_us = 20

[[peer]]
name = "member-b"
public_key = "{b_pub}"
addresses = ["10.77.0.3", "fd77::3"]
endpoint = "member-b.example:51820"
persistent_keepalive = 25

[[peer]]
name = "member-c"
public_key = "{c_pub}"
addresses = ["10.77.0.4/32", "10.88.1.0/24"]

[metrics]
listen = "127.0.0.1:9477"

[status]
socket = "/run/privnet/status.sock"

[log]
level = "debug"
format = "json"
"#
    );
    (text, b_pub, c_pub, ca_key, ca, a_cert)
}

fn fixture() -> Fx {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_owned();
    let (text, b_pub, c_pub, ca_key, ca, a_cert) = member_files(&dir, 1, "demo");
    Fx {
        _tmp: tmp,
        dir,
        text,
        b_pub,
        c_pub,
        ca_key,
        ca,
        a_cert,
        now: NOW,
    }
}

impl Fx {
    fn load(&self) -> Result<config::Config, Vec<Problem>> {
        let path = self.dir.join("member-a.toml");
        fs::write(&path, &self.text).unwrap();
        config::load(&[path], self.now)
    }

    fn replace(&mut self, from: &str, to: &str) {
        assert!(self.text.contains(from), "fixture lacks {from:?}");
        self.text = self.text.replacen(from, to, 1);
    }

    fn insert_after(&mut self, anchor: &str, line: &str) {
        self.replace(anchor, &format!("{anchor}\n{line}"));
    }

    fn chmod(&self, file: &str, mode: u32) {
        fs::set_permissions(self.dir.join(file), fs::Permissions::from_mode(mode)).unwrap();
    }

    fn write(&self, file: &str, contents: &str) {
        fs::write(self.dir.join(file), contents).unwrap();
    }
}

#[test]
fn valid_config_loads() {
    let fx = fixture();
    let cfg = fx.load().unwrap();
    assert_eq!(cfg.networks.len(), 1);
    let n = &cfg.networks[0];
    assert_eq!(n.network, "demo");
    assert_eq!(n.network_id, fx.ca.network_id());
    assert_eq!(n.listen, "0.0.0.0:51820".parse().unwrap());
    assert_eq!(n.identity.certificate, fx.a_cert);
    assert_eq!(*n.identity.psk, [7u8; 32]);
    assert_eq!(n.identity.trust.cas(), std::slice::from_ref(&fx.ca));
    assert_eq!(n.peers.len(), 2);
    assert_eq!(n.peers[0].name, "member-b");
    assert_eq!(STANDARD.encode(n.peers[0].public_key), fx.b_pub);
    assert_eq!(
        n.peers[0].endpoint.as_ref().unwrap().to_string(),
        "member-b.example:51820"
    );
    assert_eq!(
        n.peers[0].persistent_keepalive,
        Some(std::time::Duration::from_secs(25))
    );
    assert_eq!(n.peers[1].addresses[1], "10.88.1.0/24".parse().unwrap());
    assert_eq!(n.peers[1].endpoint, None);
    assert_eq!(n.tun.mode, TunMode::Tun);
    assert_eq!(n.cipher, CipherSuite::ChaCha20Poly1305);
    assert_eq!(n.paths.private_key, fx.dir.join("member-a.key"));
    let policy = n.policy.as_ref().unwrap();
    assert_eq!(policy.file, fx.dir.join("policy.toml"));
    assert_eq!(policy.rule_count(), 1);
    assert_eq!(policy.compiled.rules()[0].id, "web-to-db");
    assert!(
        policy.describe().contains("(policy `demo`): 1 rules"),
        "{}",
        policy.describe()
    );
    assert_eq!(cfg.metrics.listen, Some("127.0.0.1:9477".parse().unwrap()));
    assert_eq!(cfg.log.level, LogLevel::Debug);
}

#[test]
fn dns_section_defaults_to_the_own_overlay_address_and_takes_a_listen() {
    let mut fx = fixture();
    assert!(fx.load().unwrap().networks[0].dns.is_none());
    fx.text.push_str("\n[dns]\n");
    let cfg = fx.load().unwrap();
    let d = cfg.networks[0].dns.as_ref().unwrap();
    // member-a is 10.77.0.2 and fd77::2: the IPv4 address first, port 53.
    assert_eq!(d.listen, "10.77.0.2:53".parse().unwrap());
    assert_eq!(d.zone.apex().to_ascii(), "demo.");
    assert_eq!(d.zone.ttl(), privnet_core::io::dns::DEFAULT_TTL);
    fx.text
        .push_str("listen = \"[fd77::2]:5353\"\nttl_s = 30\n");
    let cfg = fx.load().unwrap();
    let d = cfg.networks[0].dns.as_ref().unwrap();
    assert_eq!(d.listen, "[fd77::2]:5353".parse().unwrap());
    assert_eq!(d.zone.ttl(), 30);
    fx.text.push_str("enable = false\n");
    assert!(fx.load().unwrap().networks[0].dns.is_none());
}

#[test]
fn conntrack_section_sizes_the_tracker() {
    let mut fx = fixture();
    let default = privnet_core::policy::ConntrackConfig::default();
    assert_eq!(fx.load().unwrap().networks[0].conntrack, default);
    fx.text.push_str(
        "\n[conntrack]\nmax_flows = 1048576\nmax_flows_per_peer = 65536\n\
         new_flows_per_sec = 5000\nnew_flow_burst = 10000\n",
    );
    let cfg = fx.load().unwrap();
    let c = cfg.networks[0].conntrack;
    assert_eq!(
        privnet_sidecar::up::node_config(&cfg.networks[0])
            .0
            .conntrack,
        c,
        "the node is built with it"
    );
    assert_eq!(
        (
            c.max_flows,
            c.max_flows_per_peer,
            c.new_flows_per_sec,
            c.new_flow_burst
        ),
        (1_048_576, 65_536, 5_000, 10_000)
    );
    assert_eq!(c.tcp, default.tcp, "the timeouts stay Linux's");
    // A small table without a per-peer quota: the quota is the table.
    let mut fx = fixture();
    fx.text.push_str("\n[conntrack]\nmax_flows = 4096\n");
    let c = fx.load().unwrap().networks[0].conntrack;
    assert_eq!((c.max_flows, c.max_flows_per_peer), (4096, 4096));
    assert_eq!(
        (
            config::MIN_CONNTRACK_FLOWS,
            config::MAX_CONNTRACK_FLOWS,
            config::MAX_NEW_FLOWS
        ),
        (1024, 1 << 24, 10_000_000)
    );
}

#[test]
fn minimal_config_uses_defaults() {
    let mut fx = fixture();
    let cut = fx.text.find("\n[tun]").unwrap();
    fx.text.truncate(cut);
    fx.replace("listen = \"0.0.0.0:51820\"\n", "");
    fx.replace("revocation_list = \"revoked.txt\"\n", "");
    fx.replace("policy = \"policy.toml\"\n", "");
    fx.replace("cipher = \"chacha20-poly1305\"\n", "");
    let cfg = fx.load().unwrap();
    let n = &cfg.networks[0];
    assert_eq!(n.listen.port(), 51820);
    assert!(n.peers.is_empty());
    assert_eq!(n.tun.mtu, config::DEFAULT_MTU);
    assert_eq!(n.tun.name, config::DEFAULT_TUN_NAME);
    assert_eq!(
        n.tun.busy_poll,
        Duration::from_micros(config::DEFAULT_BUSY_POLL_US.into())
    );
    assert_eq!(
        n.tun.batch_hold,
        Duration::from_micros(config::DEFAULT_BATCH_HOLD_US.into())
    );
    assert_eq!(n.cipher, CipherSuite::Aes256Gcm);
    assert_eq!(cfg.metrics.listen, None);
    assert_eq!(cfg.status.socket, None);
    assert_eq!(cfg.log.level, LogLevel::Info);
}

type Edit = fn(&mut Fx);

struct Case {
    what: &'static str,
    edit: Edit,
    key: &'static str,
}

const fn case(what: &'static str, key: &'static str, edit: Edit) -> Case {
    Case { what, edit, key }
}

fn cases() -> Vec<Case> {
    vec![
        case("unknown top-level key", "colour", |f| {
            f.text.insert_str(0, "colour = \"blue\"\n")
        }),
        case("unknown key in [node]", "node.lisen", |f| {
            f.insert_after("[node]", "lisen = \"0.0.0.0:1\"")
        }),
        case("unknown key in [[peer]]", "peer[1].allowed_ips", |f| {
            f.insert_after("name = \"member-c\"", "allowed_ips = []")
        }),
        case("unknown key in [tun]", "tun.queue", |f| {
            f.insert_after("[tun]", "queue = 4")
        }),
        case("unknown key in [metrics]", "metrics.path", |f| {
            f.insert_after("[metrics]", "path = \"/m\"")
        }),
        case("unknown key in [log]", "log.colour", |f| {
            f.insert_after("[log]", "colour = true")
        }),
        case("missing [node]", "node", |f| {
            let start = f.text.find("[node]").unwrap();
            let end = f.text.find("[tun]").unwrap();
            f.text.replace_range(start..end, "");
        }),
        case("missing node.private_key", "node.private_key", |f| {
            f.replace("private_key = \"member-a.key\"\n", "")
        }),
        case("tun.mtu wrong type", "tun.mtu", |f| {
            f.replace("mtu = 1420", "mtu = \"big\"")
        }),
        case("tun.mtu out of u16 range", "tun.mtu", |f| {
            f.replace("mtu = 1420", "mtu = 70000")
        }),
        case("tun.mtu below minimum", "tun.mtu", |f| {
            f.replace("mtu = 1420", "mtu = 1000")
        }),
        case("tun.mtu leaves no room for overhead", "tun.mtu", |f| {
            f.replace("mtu = 1420", "mtu = 1480")
        }),
        case("tun.underlay_mtu too large", "tun.underlay_mtu", |f| {
            f.replace("underlay_mtu = 1500", "underlay_mtu = 20000")
        }),
        case("tun.busy_poll_us too large", "tun.busy_poll_us", |f| {
            f.replace("busy_poll_us = 200", "busy_poll_us = 20000")
        }),
        case("tun.busy_poll_us negative", "tun.busy_poll_us", |f| {
            f.replace("busy_poll_us = 200", "busy_poll_us = -1")
        }),
        case("tun.batch_hold_us too large", "tun.batch_hold_us", |f| {
            f.replace("batch_hold_us = 20", "batch_hold_us = 5000")
        }),
        case("node.cipher unknown", "node.cipher", |f| {
            f.replace("cipher = \"chacha20-poly1305\"", "cipher = \"aes\"")
        }),
        case("tun.mode unknown", "tun.mode", |f| {
            f.replace("mode = \"tun\"", "mode = \"tap\"")
        }),
        case("tun.name too long", "tun.name", |f| {
            f.replace("name = \"privnet0\"", "name = \"privnet0123456789\"")
        }),
        case("node.listen port 0", "node.listen", |f| {
            f.replace("listen = \"0.0.0.0:51820\"", "listen = \"0.0.0.0:0\"")
        }),
        case("node.listen not an address", "node.listen", |f| {
            f.replace("listen = \"0.0.0.0:51820\"", "listen = \"everywhere\"")
        }),
        case("node.network differs from the CA", "node.network", |f| {
            f.replace("network = \"demo\"", "network = \"other\"")
        }),
        case("private key file missing", "node.private_key", |f| {
            f.replace("\"member-a.key\"", "\"missing.key\"")
        }),
        case("private key readable by others", "node.private_key", |f| {
            f.chmod("member-a.key", 0o644)
        }),
        case(
            "private key does not match the certificate",
            "node.private_key",
            |f| {
                f.write(
                    "member-a.key",
                    &NoiseKeyPair::from_random([99; 32]).to_pem(),
                );
                f.chmod("member-a.key", 0o600);
            },
        ),
        case("private key is not a key", "node.private_key", |f| {
            f.write("member-a.key", "hello\n");
            f.chmod("member-a.key", 0o600);
        }),
        case("certificate is garbage", "node.certificate", |f| {
            f.write("member-a.crt", "garbage")
        }),
        case("certificate tampered", "node.certificate", |f| {
            let mut b = f.a_cert.to_bytes();
            b[10] ^= 1;
            let pem = privnet_core::identity::armor::encode(
                privnet_core::identity::armor::CERTIFICATE,
                &b,
            );
            f.write("member-a.crt", &pem);
        }),
        case("certificate expired", "node.certificate", |f| {
            f.now = NOW + 31 * DAY
        }),
        case("certificate not yet valid", "node.certificate", |f| {
            let cert_params = MemberParams {
                name: "member-a".into(),
                addresses: f.a_cert.addresses().to_vec(),
                routes: vec![],
                groups: vec![],
                public_key: f.a_cert.public_key(),
                not_before: NOW + DAY,
                not_after: NOW + 2 * DAY,
            };
            let cert = MemberCertificate::issue(&f.ca, &f.ca_key, &cert_params).unwrap();
            f.write("member-a.crt", &cert.to_pem());
        }),
        case("certificate revoked", "node.certificate", |f| {
            f.write("revoked.txt", &format!("{}\n", f.a_cert.fingerprint()))
        }),
        case("no CA certificates", "node.ca_certificates", |f| {
            f.replace("ca_certificates = [\"ca.crt\"]", "ca_certificates = []")
        }),
        case("ca_certificates not a list", "node.ca_certificates", |f| {
            f.replace(
                "ca_certificates = [\"ca.crt\"]",
                "ca_certificates = \"ca.crt\"",
            )
        }),
        case(
            "CA file holds a member certificate",
            "node.ca_certificates[0]",
            |f| {
                f.replace(
                    "ca_certificates = [\"ca.crt\"]",
                    "ca_certificates = [\"member-a.crt\"]",
                )
            },
        ),
        case("CA of another network", "node.certificate", |f| {
            let (_, other) = ca_for(5, "demo");
            f.write("ca.crt", &other.to_pem());
        }),
        case("CAs of two networks", "node.ca_certificates[1]", |f| {
            let (_, other) = ca_for(5, "demo");
            f.write("other-ca.crt", &other.to_pem());
            f.replace(
                "ca_certificates = [\"ca.crt\"]",
                "ca_certificates = [\"ca.crt\", \"other-ca.crt\"]",
            );
        }),
        case("PSK of the wrong length", "node.network_psk", |f| {
            f.write("network.psk", &STANDARD.encode([1u8; 16]));
        }),
        case("PSK readable by group", "node.network_psk", |f| {
            f.chmod("network.psk", 0o640)
        }),
        case("revocation list malformed", "node.revocation_list", |f| {
            f.write("revoked.txt", "not-hex\n")
        }),
        case("policy file missing", "node.policy", |f| {
            f.replace("\"policy.toml\"", "\"nope.toml\"")
        }),
        case("policy file a directory", "node.policy", |f| {
            fs::create_dir(f.dir.join("policy.d")).unwrap();
            f.replace("\"policy.toml\"", "\"policy.d\"")
        }),
        case("peer public key not base64", "peer[0].public_key", |f| {
            let k = f.b_pub.clone();
            f.replace(&k, "not base64!");
        }),
        case("peer public key too short", "peer[0].public_key", |f| {
            let k = f.b_pub.clone();
            f.replace(&k, &STANDARD.encode([1u8; 31]));
        }),
        case("peer has this node's key", "peer[0].public_key", |f| {
            let k = f.b_pub.clone();
            f.replace(&k, &STANDARD.encode(f.a_cert.public_key()));
        }),
        case("two peers with one key", "peer[1].public_key", |f| {
            let (b, c) = (f.b_pub.clone(), f.c_pub.clone());
            f.replace(&c, &b);
        }),
        case("two peers with one name", "peer[1].name", |f| {
            f.replace("name = \"member-c\"", "name = \"member-b\"")
        }),
        case("peer without name", "peer[1].name", |f| {
            f.replace("name = \"member-c\"\n", "")
        }),
        case("peer name invalid", "peer[0].name", |f| {
            f.replace("name = \"member-b\"", "name = \"b b\"")
        }),
        case(
            "peer address outside the prefixes",
            "peer[0].addresses[0]",
            |f| f.replace("\"10.77.0.3\"", "\"192.168.0.3\""),
        ),
        case(
            "peer address overlaps another peer",
            "peer[1].addresses[0]",
            |f| f.replace("\"10.77.0.4/32\"", "\"10.77.0.3\""),
        ),
        case(
            "peer address overlaps this node",
            "peer[0].addresses[1]",
            |f| f.replace("\"fd77::3\"", "\"fd77::2\""),
        ),
        case("peer address with host bits", "peer[1].addresses[1]", |f| {
            f.replace("\"10.88.1.0/24\"", "\"10.88.1.9/24\"")
        }),
        case("peer address not an address", "peer[0].addresses[1]", |f| {
            f.replace("\"fd77::3\"", "\"fd77::zz\"")
        }),
        case("peer without addresses", "peer[0].addresses", |f| {
            f.replace("addresses = [\"10.77.0.3\", \"fd77::3\"]", "addresses = []")
        }),
        case("peer endpoint without port", "peer[0].endpoint", |f| {
            f.replace("\"member-b.example:51820\"", "\"member-b.example\"")
        }),
        case("peer endpoint port out of range", "peer[0].endpoint", |f| {
            f.replace("\"member-b.example:51820\"", "\"member-b.example:70000\"")
        }),
        case("peer keepalive zero", "peer[0].persistent_keepalive", |f| {
            f.replace("persistent_keepalive = 25", "persistent_keepalive = 0")
        }),
        case(
            "peer keepalive negative",
            "peer[0].persistent_keepalive",
            |f| f.replace("persistent_keepalive = 25", "persistent_keepalive = -5"),
        ),
        case(
            "peer keepalive too long",
            "peer[0].persistent_keepalive",
            |f| f.replace("persistent_keepalive = 25", "persistent_keepalive = 86400"),
        ),
        case("peer is not an array of tables", "peer", |f| {
            let start = f.text.find("[[peer]]").unwrap();
            let end = f.text.find("[metrics]").unwrap();
            f.text.replace_range(start..end, "");
            f.text.insert_str(0, "peer = 5\n");
        }),
        case("metrics on a public address", "metrics.listen", |f| {
            f.replace("\"127.0.0.1:9477\"", "\"0.0.0.0:9477\"")
        }),
        case("log level unknown", "log.level", |f| {
            f.replace("level = \"debug\"", "level = \"loud\"")
        }),
        case("log format unknown", "log.format", |f| {
            f.replace("format = \"json\"", "format = \"xml\"")
        }),
        case("status socket path too long", "status.socket", |f| {
            let long = format!("socket = \"/run/{}.sock\"", "s".repeat(120));
            f.replace("socket = \"/run/privnet/status.sock\"", &long);
        }),
        case("node is not a table", "node", |f| {
            f.text = f.text.replacen("[node]", "node = 1\n[node_]", 1);
        }),
        case("[dns] in userspace mode", "dns", |f| {
            f.replace("mode = \"tun\"", "mode = \"userspace\"");
            f.text.push_str("\n[dns]\n");
        }),
        case("dns listen not an address", "dns.listen", |f| {
            f.text.push_str("\n[dns]\nlisten = \"db:53\"\n")
        }),
        case("dns listen unspecified", "dns.listen", |f| {
            f.text.push_str("\n[dns]\nlisten = \"0.0.0.0:53\"\n")
        }),
        case("dns ttl too long", "dns.ttl_s", |f| {
            f.text.push_str("\n[dns]\nttl_s = 86400\n")
        }),
        case("unknown key in [dns]", "dns.port", |f| {
            f.text.push_str("\n[dns]\nport = 53\n")
        }),
        case("conntrack table too small", "conntrack.max_flows", |f| {
            f.text.push_str("\n[conntrack]\nmax_flows = 10\n")
        }),
        case("conntrack table too large", "conntrack.max_flows", |f| {
            f.text.push_str("\n[conntrack]\nmax_flows = 100000000\n")
        }),
        case(
            "conntrack per-peer quota over the table",
            "conntrack.max_flows_per_peer",
            |f| {
                f.text
                    .push_str("\n[conntrack]\nmax_flows = 4096\nmax_flows_per_peer = 5000\n")
            },
        ),
        case(
            "conntrack new-flow rate zero",
            "conntrack.new_flows_per_sec",
            |f| f.text.push_str("\n[conntrack]\nnew_flows_per_sec = 0\n"),
        ),
        case(
            "conntrack negative burst",
            "conntrack.new_flow_burst",
            |f| f.text.push_str("\n[conntrack]\nnew_flow_burst = -1\n"),
        ),
        case("TOML syntax error", "", |f| {
            f.replace("mtu = 1420", "mtu = ")
        }),
    ]
}

#[test]
fn invalid_configs_name_the_offending_key() {
    let cases = cases();
    assert!(cases.len() >= 25);
    let mut failures = Vec::new();
    for c in &cases {
        let mut fx = fixture();
        (c.edit)(&mut fx);
        match fx.load() {
            Ok(_) => failures.push(format!("{}: accepted", c.what)),
            Err(problems) => {
                if std::env::var_os("PRIVNET_SHOW_PROBLEMS").is_some() {
                    eprintln!("== {}", c.what);
                    for p in &problems {
                        eprintln!("   {p}");
                    }
                }
                let hit = problems.iter().find(|p| p.key == c.key);
                match hit {
                    None => failures.push(format!(
                        "{}: no problem names `{}`; got: {:?}",
                        c.what,
                        c.key,
                        problems.iter().map(ToString::to_string).collect::<Vec<_>>()
                    )),
                    Some(p) => {
                        if p.expected.is_empty() {
                            failures.push(format!("{}: empty expectation", c.what));
                        }
                        if !p.file.ends_with("member-a.toml") {
                            failures.push(format!("{}: wrong file {}", c.what, p.file.display()));
                        }
                        // Every key present in the file is reported with its line.
                        let absent =
                            matches!(c.what, "missing [node]" | "missing node.private_key");
                        if !absent && p.line.is_none() {
                            failures.push(format!("{}: no line for {}", c.what, p));
                        }
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn every_problem_is_reported_not_just_the_first() {
    let mut fx = fixture();
    fx.replace("mtu = 1420", "mtu = 1000");
    fx.replace("\"10.77.0.3\"", "\"192.168.0.3\"");
    fx.replace("persistent_keepalive = 25", "persistent_keepalive = 0");
    fx.replace("\"127.0.0.1:9477\"", "\"0.0.0.0:9477\"");
    fx.chmod("member-a.key", 0o644);
    let problems = fx.load().unwrap_err();
    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    for k in [
        "tun.mtu",
        "peer[0].addresses[0]",
        "peer[0].persistent_keepalive",
        "metrics.listen",
        "node.private_key",
    ] {
        assert!(keys.contains(&k), "{k} missing from {keys:?}");
    }
    // Schema errors in different sections are all reported too.
    let mut fx = fixture();
    fx.insert_after("[tun]", "bogus = 1");
    fx.replace("level = \"debug\"", "level = 3");
    fx.insert_after("name = \"member-c\"", "extra = 1");
    let keys: Vec<String> = fx.load().unwrap_err().into_iter().map(|p| p.key).collect();
    assert!(keys.contains(&"tun.bogus".to_owned()), "{keys:?}");
    assert!(keys.contains(&"log.level".to_owned()), "{keys:?}");
    assert!(keys.contains(&"peer[1].extra".to_owned()), "{keys:?}");
}

/// A policy that does not compile: every problem of it, each with the policy file and its line,
/// after the configuration file's own problems; nothing is handed out.
#[test]
fn a_bad_policy_is_reported_with_the_policy_file_and_line() {
    let mut fx = fixture();
    fx.replace("mtu = 1420", "mtu = 1000");
    let bad = POLICY
        .replace("action = \"allow\"", "action = \"permit\"")
        .replace("ports = [5432]", "ports = [70000]");
    fx.write("policy.toml", &bad);
    let problems = fx.load().unwrap_err();
    let shown: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert_eq!(problems.len(), 3, "{shown:#?}");
    assert_eq!(problems[0].key, "tun.mtu");
    assert!(problems[0].file.ends_with("member-a.toml"));
    let line_of = |needle: &str| bad.lines().position(|l| l.contains(needle)).map(|i| i + 1);
    for (p, (key, needle)) in problems[1..].iter().zip([
        ("application[0].action", "permit"),
        ("application[0].ports", "70000"),
    ]) {
        assert_eq!(p.file, fx.dir.join("policy.toml"), "{p}");
        assert!(p.key.starts_with(key), "{p}");
        assert_eq!(p.line, line_of(needle), "{p}");
        assert!(p.expected.contains("expected"), "{p}");
    }
    assert!(
        shown[1]
            .contains("policy.toml:6: application[0].action: (column 10) expected one of `allow`"),
        "{shown:?}"
    );
    // On its own (the reload of a changed policy file), the same problems.
    let alone = config::load_policy(&fx.dir.join("policy.toml")).unwrap_err();
    assert_eq!(alone, problems[1..]);
    fx.write("policy.toml", POLICY);
    assert_eq!(
        config::load_policy(&fx.dir.join("policy.toml"))
            .unwrap()
            .rule_count(),
        1
    );
}

/// One file with problems of every kind at once: unknown keys, a wrong type, a missing required
/// key, out-of-range values and a file problem. Each is reported with the file, the key path and
/// its line, in file order; none hides another (an unknown key in `[node]` used to drop the whole
/// section, and with it every check of the identity files).
#[test]
fn several_problems_in_one_file_are_all_reported_with_file_key_and_line() {
    let mut fx = fixture();
    fx.insert_after("[node]", "listne = \"0.0.0.0:51821\"");
    fx.chmod("member-a.key", 0o644);
    fx.replace("mtu = 1420", "mtu = \"big\"");
    fx.replace("busy_poll_us = 200", "busy_poll_us = 20000");
    fx.insert_after("[tun]", "Offload = false");
    fx.replace("name = \"member-b\"\n", "");
    fx.replace("\"10.77.0.4/32\"", "\"192.168.0.4/32\"");
    fx.insert_after("[log]", "levle = \"info\"");
    let problems = fx.load().unwrap_err();

    let path = fx.dir.join("member-a.toml");
    let line = |needle: &str, nth: usize| {
        let found = fx
            .text
            .lines()
            .enumerate()
            .filter(|(_, l)| l.starts_with(needle));
        found.map(|(i, _)| i + 1).nth(nth)
    };
    let expected = [
        ("node.listne", line("listne =", 0), "did you mean `listen`?"),
        ("node.private_key", line("private_key =", 0), "chmod 600"),
        (
            "tun.Offload",
            line("Offload =", 0),
            "did you mean `offload`?",
        ),
        (
            "tun.mtu",
            line("mtu =", 0),
            "an integer between 0 and 65535",
        ),
        (
            "tun.busy_poll_us",
            line("busy_poll_us =", 0),
            "0 (off) to 10000",
        ),
        ("peer[0].name", line("[[peer]]", 0), "this key is required"),
        (
            "peer[1].addresses[0]",
            line("addresses =", 1),
            "inside the network's prefixes",
        ),
        ("log.levle", line("levle =", 0), "did you mean `level`?"),
    ];
    let mut failures = Vec::new();
    for (key, line, text) in expected {
        assert!(line.is_some(), "fixture lacks the line of {key}");
        match problems.iter().find(|p| p.key == key) {
            None => failures.push(format!("no problem names {key}")),
            Some(p) if p.file != path || p.line != line || !p.expected.contains(text) => {
                failures.push(format!(
                    "{key}: expected line {line:?} and {text:?}; got {p}"
                ));
            }
            Some(_) => {}
        }
    }
    assert!(
        failures.is_empty(),
        "{}\nall problems:\n{}",
        failures.join("\n"),
        problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(problems.len(), expected.len(), "{problems:#?}");
    // In file order, and printed as FILE:LINE: KEY: EXPECTED.
    let lines: Vec<usize> = problems.iter().filter_map(|p| p.line).collect();
    assert!(lines.windows(2).all(|w| w[0] <= w[1]), "{lines:?}");
    let first = problems[0].to_string();
    let prefix = format!("{}:{}: node.listne: no such key", path.display(), lines[0]);
    assert!(first.starts_with(&prefix), "{first}");
}

/// `privnet check` reads a file with `parse_str` first; an unknown key must not end the parse.
#[test]
fn parse_str_reports_every_schema_problem() {
    let text = "[node]\nnetwork = \"demo\"\nlistne = \"0.0.0.0:1\"\nprivate_key = 7\n\n[tun]\nmtu = \"big\"\nmdoe = \"tun\"\n\n[[peers]]\nname = \"x\"\n";
    let file = Path::new("bad.toml");
    let (cfg, problems) = config::parse_str(text, file);
    let got: Vec<(&str, Option<usize>)> =
        problems.iter().map(|p| (p.key.as_str(), p.line)).collect();
    assert_eq!(
        got,
        [
            ("node.certificate", Some(1)),
            ("node.ca_certificates", Some(1)),
            ("node.network_psk", Some(1)),
            ("node.listne", Some(3)),
            ("node.private_key", Some(4)),
            ("tun.mtu", Some(7)),
            ("tun.mdoe", Some(8)),
            ("peers", Some(10)),
        ],
        "{problems:#?}"
    );
    assert!(problems.iter().all(|p| p.file == file));
    assert!(problems[6].expected.contains("did you mean `mode`?"));
    assert!(problems[7].expected.contains("did you mean `peer`?"));
    assert!(cfg.node.is_none(), "required keys are missing");
    assert_eq!(cfg.tun.map(|t| t.mtu), Some(config::DEFAULT_MTU));
}

#[test]
fn ca_rollover_config_trusts_two_cas() {
    let mut fx = fixture();
    let new_key = CaKey::from_seed([50; 32]);
    let new_ca = CaCertificate::self_signed(
        &new_key,
        &CaParams {
            name: "demo".into(),
            network_id: fx.ca.network_id(),
            prefixes: fx.ca.prefixes().to_vec(),
            routes: fx.ca.routes().to_vec(),
            not_before: NOW - DAY,
            not_after: NOW + 700 * DAY,
        },
    )
    .unwrap();
    fx.write("new-ca.crt", &new_ca.to_pem());
    fx.replace(
        "ca_certificates = [\"ca.crt\"]",
        "ca_certificates = [\"ca.crt\", \"new-ca.crt\"]",
    );
    let cfg = fx.load().unwrap();
    assert_eq!(cfg.networks[0].identity.trust.cas().len(), 2);
    // Re-issued by the new CA, the member still loads while both are trusted.
    let kp_text = fs::read_to_string(fx.dir.join("member-a.key")).unwrap();
    let kp = NoiseKeyPair::from_pem(&kp_text).unwrap();
    let cert = issue(&new_ca, &new_key, "member-a", &["10.77.0.2"], kp.public());
    fx.write("member-a.crt", &cert.to_pem());
    assert!(fx.load().is_ok());
}

#[test]
fn several_networks_in_one_process() {
    let tmp = tempfile::tempdir().unwrap();
    let (da, db) = (tmp.path().join("a"), tmp.path().join("b"));
    fs::create_dir_all(&da).unwrap();
    fs::create_dir_all(&db).unwrap();
    let (ta, ..) = member_files(&da, 1, "alpha");
    let (tb, ..) = member_files(&db, 20, "beta");
    // Same overlay addresses in both networks are fine; listen address and TUN name must differ.
    let tb_ok = tb
        .replace("0.0.0.0:51820", "0.0.0.0:51821")
        .replace("privnet0", "privnet1");
    let (pa, pb) = (da.join("member.toml"), db.join("member.toml"));
    fs::write(&pa, &ta).unwrap();
    fs::write(&pb, &tb_ok).unwrap();
    let cfg = config::load(&[pa.clone(), pb.clone()], NOW).unwrap();
    assert_eq!(cfg.networks.len(), 2);
    assert_eq!(cfg.networks[0].network, "alpha");
    assert_eq!(cfg.networks[1].network, "beta");
    assert_eq!(
        cfg.networks[0].identity.certificate.addresses(),
        cfg.networks[1].identity.certificate.addresses()
    );

    // Clashes: same listen address and device name; different [log].
    let tb_bad = tb.replace("level = \"debug\"", "level = \"info\"");
    fs::write(&pb, &tb_bad).unwrap();
    let problems = config::load(&[pa.clone(), pb.clone()], NOW).unwrap_err();
    let keys: Vec<(&Path, &str)> = problems
        .iter()
        .map(|p| (p.file.as_path(), p.key.as_str()))
        .collect();
    assert!(keys.contains(&(pb.as_path(), "node.listen")), "{keys:?}");
    assert!(keys.contains(&(pb.as_path(), "tun.name")), "{keys:?}");
    assert!(keys.contains(&(pb.as_path(), "log")), "{keys:?}");

    // The same network twice.
    let problems = config::load(&[pa.clone(), pa.clone()], NOW).unwrap_err();
    assert!(
        problems.iter().any(|p| p.key == "node.network"),
        "{problems:?}"
    );

    // A member of network beta cannot use beta's certificate in alpha's configuration.
    fs::copy(db.join("member-a.crt"), da.join("member-a.crt")).unwrap();
    let problems = config::load(&[pa], NOW).unwrap_err();
    assert!(
        problems.iter().any(|p| p.key == "node.certificate"),
        "{problems:?}"
    );
}

#[test]
fn missing_config_file_is_a_problem() {
    let problems = config::load(&[PathBuf::from("/nonexistent/privnet.toml")], NOW).unwrap_err();
    assert_eq!(problems.len(), 1);
    assert!(problems[0].expected.contains("does not exist"));
}

#[test]
fn example_configs_parse() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/configs");
    for name in ["member-a.toml", "member-b.toml"] {
        let path = dir.join(name);
        let text = fs::read_to_string(&path).unwrap();
        let (cfg, problems) = config::parse_str(&text, &path);
        assert!(problems.is_empty(), "{name}: {problems:?}");
        assert!(cfg.node.is_some());
        assert_eq!(cfg.peers.len(), 1);
    }
}
