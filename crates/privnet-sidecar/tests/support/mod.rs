//! A network on disk for the sidecar's runtime tests: one CA, a PSK, members with keys and
//! certificates, and member configuration files that `privnet up`'s code loads, with drivers on
//! in-memory inner sides (no TUN, no privileges) talking over UDP on 127.0.0.1.
#![allow(dead_code, clippy::unwrap_used, unreachable_pub)]

use std::fmt::Write as _;
use std::net::{Ipv4Addr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use privnet_core::identity::{
    CaCertificate, CaKey, CaParams, MemberCertificate, MemberParams, NetworkId, NoiseKeyPair,
};
use privnet_core::io::{ChannelEnd, ChannelInner, DriverHandle, NetworkSnapshot};
use privnet_sidecar::config::{self, Config};
use privnet_sidecar::files;

pub const DAY: u64 = 86_400;
pub const STEP: Duration = Duration::from_secs(15);

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A free UDP port on 127.0.0.1 (bound and released; good enough for tests).
pub fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Member {
    pub name: String,
    pub keys: NoiseKeyPair,
    pub addr: Ipv4Addr,
    pub port: u16,
}

impl Member {
    pub fn public_b64(&self) -> String {
        STANDARD.encode(self.keys.public())
    }
}

/// One network in a temporary directory.
pub struct Net {
    pub tmp: tempfile::TempDir,
    pub ca_key: CaKey,
    pub ca: CaCertificate,
}

impl Net {
    pub fn new(name: &str) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let ca_key = CaKey::from_seed([0x41; 32]);
        let now = now();
        let ca = CaCertificate::self_signed(
            &ca_key,
            &CaParams {
                name: name.into(),
                network_id: NetworkId([0x42; 16]),
                prefixes: vec!["10.77.0.0/16".parse().unwrap()],
                routes: vec!["10.88.0.0/16".parse().unwrap()],
                not_before: now - DAY,
                not_after: now + 365 * DAY,
            },
        )
        .unwrap();
        files::write_public(&tmp.path().join("ca.crt"), &ca.to_pem(), true).unwrap();
        let net = Self { tmp, ca_key, ca };
        net.write_psk("network.psk", [0x5c; 32]);
        net
    }

    pub fn dir(&self) -> &Path {
        self.tmp.path()
    }

    pub fn write_psk(&self, file: &str, psk: [u8; 32]) {
        files::write_secret(&self.dir().join(file), &STANDARD.encode(psk), true).unwrap();
    }

    /// Member `host` (10.77.0.host) with its key and certificate on disk.
    pub fn member(&self, name: &str, host: u8) -> Member {
        self.member_in(name, host, &[])
    }

    /// [`Net::member`] in `groups` (its certificate's groups, for policies).
    pub fn member_in(&self, name: &str, host: u8, groups: &[&str]) -> Member {
        let keys = NoiseKeyPair::from_random([host; 32]);
        let addr = Ipv4Addr::new(10, 77, 0, host);
        let now = now();
        let cert = MemberCertificate::issue(
            &self.ca,
            &self.ca_key,
            &MemberParams {
                name: name.into(),
                addresses: vec![addr.into()],
                routes: vec![],
                groups: groups.iter().map(|g| (*g).to_owned()).collect(),
                public_key: keys.public(),
                not_before: now - DAY,
                not_after: now + 30 * DAY,
            },
        )
        .unwrap();
        files::write_secret(
            &self.dir().join(format!("{name}.key")),
            &keys.to_pem(),
            true,
        )
        .unwrap();
        files::write_public(
            &self.dir().join(format!("{name}.crt")),
            &cert.to_pem(),
            true,
        )
        .unwrap();
        Member {
            name: name.into(),
            keys,
            addr,
            port: free_port(),
        }
    }

    /// `me`'s configuration knowing `peers` (with endpoints on 127.0.0.1), plus `extra` TOML
    /// lines in `[node]` and `tail` after everything. Returns its path.
    pub fn config(&self, me: &Member, peers: &[&Member], node_extra: &str, tail: &str) -> PathBuf {
        let mut t = format!(
            "[node]\nnetwork = \"{}\"\nprivate_key = \"{n}.key\"\ncertificate = \"{n}.crt\"\n\
             ca_certificates = [\"ca.crt\"]\nnetwork_psk = \"network.psk\"\nlisten = \"127.0.0.1:{}\"\n{node_extra}\n\
             [tun]\nbusy_poll_us = 0\n\n",
            self.ca.name(),
            me.port,
            n = me.name,
        );
        for p in peers {
            let _ = write!(
                t,
                "[[peer]]\nname = \"{}\"\npublic_key = \"{}\"\naddresses = [\"{}\"]\nendpoint = \"127.0.0.1:{}\"\n\n",
                p.name,
                p.public_b64(),
                p.addr,
                p.port
            );
        }
        t.push_str(tail);
        let path = self.dir().join(format!("{}.toml", me.name));
        std::fs::write(&path, t).unwrap();
        path
    }
}

/// Load one configuration file (panics with the problems).
pub fn load(path: &Path) -> Config {
    match config::load(&[path.to_owned()], now()) {
        Ok(c) => c,
        Err(p) => panic!("{p:#?}"),
    }
}

/// An in-memory inner side for a driver.
pub fn channel(name: &str) -> (ChannelInner, ChannelEnd) {
    ChannelInner::new(format!("mem-{name}"), 256)
}

/// An IPv4/UDP packet from port 40000 to port 7 (header checksum set, UDP checksum 0 = none).
pub fn udp4(src: Ipv4Addr, dst: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
    udp4_port(src, dst, 7, payload)
}

/// [`udp4`] to port `dport`.
pub fn udp4_port(src: Ipv4Addr, dst: Ipv4Addr, dport: u16, payload: &[u8]) -> Vec<u8> {
    let total = (20 + 8 + payload.len()) as u16;
    let mut p = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0];
    p[2..4].copy_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    let mut sum: u32 = p
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    p[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    p.extend_from_slice(&40000u16.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&(8 + payload.len() as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(payload);
    p
}

/// The next packet the application end receives, within [`STEP`].
pub async fn recv(app: &mut ChannelEnd, what: &str) -> Vec<u8> {
    match tokio::time::timeout(STEP, app.recv()).await {
        Ok(Some(p)) => p,
        Ok(None) => panic!("{what}: the driver is gone"),
        Err(_) => panic!("{what}: nothing within {STEP:?}"),
    }
}

/// Send `src -> dst` through `from` until `to` receives it (the first packets may wait for a
/// handshake), within [`STEP`].
pub async fn ping(
    from: &mut ChannelEnd,
    to: &mut ChannelEnd,
    src: &Member,
    dst: &Member,
    what: &str,
) {
    let deadline = tokio::time::Instant::now() + STEP;
    let packet = udp4(src.addr, dst.addr, what.as_bytes());
    loop {
        from.send(&packet).await.unwrap();
        match tokio::time::timeout(Duration::from_millis(500), to.recv()).await {
            Ok(Some(p)) if p == packet => return,
            Ok(Some(_)) | Err(_) => {}
            Ok(None) => panic!("{what}: the driver is gone"),
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not delivered within {STEP:?}"
        );
    }
}

/// Wait for a snapshot of `handle` satisfying `pred` (snapshots come once a second).
pub async fn snapshot_where(
    handle: &DriverHandle,
    what: &str,
    pred: impl Fn(&NetworkSnapshot) -> bool,
) -> Arc<NetworkSnapshot> {
    let deadline = tokio::time::Instant::now() + STEP;
    let mut handle = handle.clone();
    loop {
        let s = handle.snapshot();
        if pred(&s) {
            return s;
        }
        if tokio::time::timeout_at(deadline, handle.snapshot_changed())
            .await
            .is_err()
        {
            panic!(
                "{what}: no such snapshot within {STEP:?}: {:?}",
                handle.snapshot()
            );
        }
    }
}
