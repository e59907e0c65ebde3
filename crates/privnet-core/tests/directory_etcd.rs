//! The directory client against a real etcd on loopback: members that start with no peers find
//! each other through their records and talk; a newcomer is added live; a clean stop deletes the
//! record at once, a member that dies disappears when its lease expires; signed policy bundles
//! come out, stale and forged ones are refused and counted; a signed revocation list cuts a
//! member off; etcd stopped and restarted — the data plane keeps flowing, the client reconnects
//! and resumes, nothing changes for unchanged peers; a member restarts from its on-disk cache
//! while etcd is down; a reload's trust store (a CA rollover) reaches the client. Every wait is
//! bounded.
// A test: it reads the real clock or opens sockets (see clippy.toml).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]
#![cfg(all(target_os = "linux", feature = "directory"))]
#![allow(clippy::unwrap_used)]

#[path = "support/etcd.rs"]
mod etcd;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use etcd::Etcd;
use ipnetwork::IpNetwork;
use privnet_core::crypto::StaticSecret;
use privnet_core::directory::{Layout, MemberRecord};
use privnet_core::identity::{
    Bundle, BundleKind, CaCertificate, CaKey, CaParams, CertVerifier, MemberCertificate,
    MemberParams, NetworkId, NoiseKeyPair, RevocationList, TrustStore, VerifiedBundle,
};
use privnet_core::io::directory::{DirectoryClient, DirectoryConfig, DirectoryStatus};
use privnet_core::io::{ChannelEnd, ChannelInner, Driver, DriverConfig, DriverHandle, Identity};
use privnet_core::{CredentialVerifier, NodeConfig};
use tokio::sync::mpsc;

const TEST_TIMEOUT: Duration = Duration::from_secs(120);
const STEP_TIMEOUT: Duration = Duration::from_secs(10);
const DAY: u64 = 86_400;
const PSK: [u8; 32] = [0x5d; 32];
const TTL: Duration = Duration::from_secs(2);

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

struct Ca {
    key: CaKey,
    cert: CaCertificate,
}

impl Ca {
    fn new(seed: u8) -> Self {
        let key = CaKey::from_seed([seed; 32]);
        let now = unix_now();
        let params = CaParams {
            name: "dirnet".into(),
            network_id: NetworkId([0x42; 16]),
            prefixes: vec!["10.78.0.0/16".parse().unwrap()],
            routes: vec![],
            not_before: now - DAY,
            not_after: now + 365 * DAY,
        };
        let cert = CaCertificate::self_signed(&key, &params).unwrap();
        Self { key, cert }
    }

    fn store(&self) -> TrustStore {
        TrustStore::new(vec![self.cert.clone()]).unwrap()
    }
}

struct Member {
    keys: NoiseKeyPair,
    cert: MemberCertificate,
    addr: Ipv4Addr,
}

impl Member {
    fn new(ca: &Ca, name: &str, host: u8) -> Self {
        let keys = NoiseKeyPair::from_random([host; 32]);
        let addr = Ipv4Addr::new(10, 78, 0, host);
        let now = unix_now();
        let params = MemberParams {
            name: name.into(),
            addresses: vec![IpAddr::V4(addr)],
            routes: vec![],
            groups: vec![],
            public_key: keys.public(),
            not_before: now - DAY,
            not_after: now + 30 * DAY,
        };
        let cert = MemberCertificate::issue(&ca.cert, &ca.key, &params).unwrap();
        Self { keys, cert, addr }
    }
}

/// A running member: its driver (no configured peer), its application end, its directory.
struct Running {
    handle: DriverHandle,
    app: ChannelEnd,
    local: SocketAddr,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn driver(ca: &Ca, me: &Member) -> Running {
    let verifier = Arc::new(CertVerifier::new(ca.store()));
    let dyn_verifier: Arc<dyn CredentialVerifier> = verifier.clone();
    let mut node_cfg = NodeConfig::new(
        StaticSecret::from_bytes(*me.keys.secret()),
        PSK,
        ca.cert.network_id().0,
        dyn_verifier,
    );
    node_cfg.credential(me.cert.to_bytes());
    let mut cfg = DriverConfig::new("dirnet", "127.0.0.1:0".parse().unwrap());
    cfg.addresses = vec![IpNetwork::new(IpAddr::V4(me.addr), 16).unwrap()];
    let node = cfg.new_node(node_cfg).unwrap();
    let (inner, app) = ChannelInner::new(format!("mem-{}", me.cert.name()), 64);
    let identity = Identity {
        verifier,
        certificate: me.cert.clone(),
    };
    let driver = Driver::new(node, cfg, Some(identity), inner).await.unwrap();
    let local = driver.local_addr();
    let handle = driver.handle();
    let task = tokio::spawn(driver.run());
    Running {
        handle,
        app,
        local,
        task,
    }
}

fn directory(
    etcd: &Etcd,
    ca: &Ca,
    me: &Member,
    run: &Running,
    cache: Option<std::path::PathBuf>,
) -> (DirectoryClient, mpsc::Receiver<VerifiedBundle>) {
    directory_trusting(etcd, ca.store(), me, run, cache)
}

/// As [`directory`], with the trust store the client checks records against.
fn directory_trusting(
    etcd: &Etcd,
    trust: TrustStore,
    me: &Member,
    run: &Running,
    cache: Option<std::path::PathBuf>,
) -> (DirectoryClient, mpsc::Receiver<VerifiedBundle>) {
    let record = MemberRecord::new(&me.cert, vec![run.local])
        .to_bytes()
        .unwrap();
    let cfg = DirectoryConfig {
        endpoints: vec![etcd.endpoint()],
        layout: Layout::new("/privnet/dirnet"),
        name: me.cert.name().to_owned(),
        record,
        lease_ttl: TTL,
        credentials: None,
        cache,
        trust,
        own_key: me.keys.public(),
        reserved: vec![],
    };
    DirectoryClient::start(cfg, run.handle.clone())
}

/// Wait (bounded) until `pred` holds for the directory's status; returns how long it took.
async fn status_where(
    dir: &DirectoryClient,
    what: &str,
    pred: impl Fn(&DirectoryStatus) -> bool,
) -> Duration {
    status_within(dir, what, STEP_TIMEOUT, pred).await
}

/// [`status_where`] with its own bound (a reconnection waits out the client's backoff, up to 10 s).
async fn status_within(
    dir: &DirectoryClient,
    what: &str,
    bound: Duration,
    pred: impl Fn(&DirectoryStatus) -> bool,
) -> Duration {
    let t0 = Instant::now();
    let mut rx = dir.status_receiver();
    let wait = async {
        loop {
            if pred(&rx.borrow_and_update()) {
                return;
            }
            rx.changed().await.unwrap();
        }
    };
    if tokio::time::timeout(bound, wait).await.is_err() {
        panic!("{what}: not within {bound:?}: {:?}", dir.status());
    }
    t0.elapsed()
}

fn knows(s: &DirectoryStatus, name: &str) -> bool {
    s.members.iter().any(|m| m.name == name)
}

/// Wait (bounded) until the driver's snapshot has (or has not) a peer named `name`.
async fn driver_peer(handle: &mut DriverHandle, name: &str, present: bool) {
    let wait = async {
        loop {
            if handle.snapshot().peers.iter().any(|p| p.name == name) == present {
                return;
            }
            handle.snapshot_changed().await.unwrap();
        }
    };
    if tokio::time::timeout(STEP_TIMEOUT, wait).await.is_err() {
        panic!(
            "peer {name} present={present}: not within {STEP_TIMEOUT:?}: {:?}",
            handle.snapshot().peers
        );
    }
}

/// An IPv4/UDP packet (header checksum set, UDP checksum 0 = none).
fn udp4(src: Ipv4Addr, dst: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
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
    p.extend_from_slice(&7u16.to_be_bytes());
    p.extend_from_slice(&(8 + payload.len() as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(payload);
    p
}

/// `from` sends to `to` until one packet arrives (the first may wait for a handshake).
async fn reach(from: &mut Running, fa: Ipv4Addr, to: &mut Running, ta: Ipv4Addr, what: &str) {
    let pkt = udp4(fa, ta, what.as_bytes());
    let wait = async {
        loop {
            from.app.send(&pkt).await.unwrap();
            if let Ok(Some(got)) =
                tokio::time::timeout(Duration::from_millis(300), to.app.recv()).await
            {
                if got == pkt {
                    return;
                }
            }
        }
    };
    if tokio::time::timeout(STEP_TIMEOUT, wait).await.is_err() {
        panic!("{what}: nothing arrived within {STEP_TIMEOUT:?}");
    }
}

async fn put(etcd: &Etcd, key: &str, value: Vec<u8>) {
    let mut c = etcd_client::Client::connect([etcd.endpoint()], None)
        .await
        .unwrap();
    c.put(key, value, None).await.unwrap();
}

#[tokio::test]
async fn members_meet_through_etcd() {
    let Some(mut etcd) = Etcd::start("members_meet_through_etcd") else {
        return;
    };
    tokio::time::timeout(TEST_TIMEOUT, scenario(&mut etcd))
        .await
        .expect("the test did not finish within its time limit");
}

async fn scenario(etcd: &mut Etcd) {
    let ca = Ca::new(0x41);
    let layout = Layout::new("/privnet/dirnet");
    let (a, b, c) = (
        Member::new(&ca, "a", 2),
        Member::new(&ca, "b", 3),
        Member::new(&ca, "c", 4),
    );
    let mut ra = driver(&ca, &a).await;
    let mut rb = driver(&ca, &b).await;
    let cache_dir = std::env::temp_dir().join(format!("privnet-dircache-{}", std::process::id()));
    std::fs::create_dir_all(&cache_dir).unwrap();
    let cache_a = cache_dir.join("a.cache");
    let (dir_a, mut policies_a) = directory(etcd, &ca, &a, &ra, Some(cache_a.clone()));
    let (dir_b, _pb) = directory(etcd, &ca, &b, &rb, None);

    // Two members with no peers find each other and talk.
    status_where(&dir_a, "a learns b", |s| s.connected && knows(s, "b")).await;
    status_where(&dir_b, "b learns a", |s| s.connected && knows(s, "a")).await;
    driver_peer(&mut ra.handle, "b", true).await;
    reach(&mut ra, a.addr, &mut rb, b.addr, "a -> b").await;
    reach(&mut rb, b.addr, &mut ra, a.addr, "b -> a").await;

    // A newcomer: added live on both, reachable.
    let mut rc = driver(&ca, &c).await;
    let t0 = Instant::now();
    let (dir_c, _pc) = directory(etcd, &ca, &c, &rc, None);
    status_where(&dir_a, "a learns c", |s| knows(s, "c")).await;
    status_where(&dir_b, "b learns c", |s| knows(s, "c")).await;
    let joined = t0.elapsed();
    eprintln!("figure: a newcomer reached both members' directories in {joined:?}");
    reach(&mut ra, a.addr, &mut rc, c.addr, "a -> c").await;
    let hs_before = ra
        .handle
        .snapshot()
        .peers
        .iter()
        .find(|p| p.name == "b")
        .unwrap()
        .handshakes;

    // A clean stop deletes c's record at once (not after its lease).
    let t0 = Instant::now();
    dir_c.stop().await;
    status_where(&dir_a, "a forgets c", |s| !knows(s, "c")).await;
    assert!(
        t0.elapsed() < TTL,
        "a clean stop waited for the lease: {:?}",
        t0.elapsed()
    );
    driver_peer(&mut ra.handle, "c", false).await;

    // A malformed record is skipped and counted, nothing else changes.
    put(etcd, &layout.member("junk"), vec![1, 0xff, 0xff]).await;
    status_where(&dir_a, "junk counted", |s| {
        s.skipped.get("record_body") == Some(&1)
    })
    .await;

    // Policy bundles: a CA-signed one comes out; the same version again, an older one and one
    // signed by another key are refused and counted; the held version stays.
    let sign = |ca: &Ca, v: u64, text: &str| {
        Bundle::sign_with_ca(
            &ca.cert,
            &ca.key,
            BundleKind::Policy,
            v,
            unix_now(),
            text.into(),
        )
        .unwrap()
        .to_bytes()
    };
    put(
        etcd,
        &layout.bundle(BundleKind::Policy),
        sign(&ca, 2, "policy v2"),
    )
    .await;
    let got = tokio::time::timeout(STEP_TIMEOUT, policies_a.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (got.version, got.payload.as_slice()),
        (2, &b"policy v2"[..])
    );
    put(
        etcd,
        &layout.bundle(BundleKind::Policy),
        sign(&ca, 1, "policy v1"),
    )
    .await;
    let rogue = Ca {
        key: CaKey::from_seed([0x66; 32]),
        cert: ca.cert.clone(),
    };
    put(
        etcd,
        &layout.bundle(BundleKind::Policy),
        sign(&rogue, 9, "forged"),
    )
    .await;
    status_where(&dir_a, "bad bundles counted", |s| {
        s.bundles_refused.get("policy/stale_version") == Some(&1)
            && s.bundles_refused.get("policy/bad_signature") == Some(&1)
            && s.policy_version == 2
    })
    .await;
    assert!(policies_a.try_recv().is_err(), "a refused bundle came out");

    // etcd goes away: the data plane keeps flowing; the client says so and reconnects after.
    etcd.kill();
    status_where(&dir_a, "a sees etcd gone", |s| !s.connected).await;
    reach(&mut ra, a.addr, &mut rb, b.addr, "a -> b during the outage").await;
    // A member restarting during the outage comes up from its cache.
    let mut ra2 = driver(&ca, &Member::new(&ca, "a", 2)).await;
    let (dir_a2, _pa2) = directory(etcd, &ca, &a, &ra2, Some(cache_a.clone()));
    status_where(&dir_a2, "a2 from the cache", |s| {
        s.from_cache && knows(s, "b")
    })
    .await;
    driver_peer(&mut ra2.handle, "b", true).await;
    drop(dir_a2);
    ra2.handle.shutdown().await.unwrap();
    let _ = ra2.task.await;
    etcd.run();
    let backoff = Duration::from_secs(25);
    status_within(&dir_a, "a reconnects", backoff, |s| {
        s.connected && s.registered && knows(s, "b")
    })
    .await;
    status_within(&dir_b, "b reconnects", backoff, |s| {
        s.connected && knows(s, "a")
    })
    .await;
    reach(&mut ra, a.addr, &mut rb, b.addr, "a -> b after the outage").await;
    // Unchanged peers kept their sessions: no re-add, no new handshake.
    let hs_after = ra
        .handle
        .snapshot()
        .peers
        .iter()
        .find(|p| p.name == "b")
        .unwrap()
        .handshakes;
    assert_eq!(hs_before, hs_after, "b was re-added or re-handshaked");

    // A member that dies (no lease revoke) disappears when its lease expires.
    let (dir_c2, _pc2) = directory(etcd, &ca, &c, &rc, None);
    status_where(&dir_a, "a learns c again", |s| knows(s, "c")).await;
    let t0 = Instant::now();
    drop(dir_c2);
    status_where(&dir_a, "c expires", |s| !knows(s, "c")).await;
    let gone = t0.elapsed();
    eprintln!(
        "figure: a dead member left the directory {gone:?} after its last keepalive (TTL {TTL:?})"
    );
    assert!(
        gone >= TTL / 2,
        "gone before its lease could expire: {gone:?}"
    );

    // A signed revocation list cuts b off: removed from a's peers and its trust store.
    let mut list = RevocationList::new();
    list.insert(b.cert.fingerprint());
    let rev = Bundle::sign_with_ca(
        &ca.cert,
        &ca.key,
        BundleKind::Revocations,
        1,
        unix_now(),
        list.to_text().into_bytes(),
    )
    .unwrap()
    .to_bytes();
    put(etcd, &layout.bundle(BundleKind::Revocations), rev).await;
    status_where(&dir_a, "b revoked", |s| {
        s.revocations_version == 1 && !knows(s, "b")
    })
    .await;
    driver_peer(&mut ra.handle, "b", false).await;

    dir_a.stop().await;
    dir_b.stop().await;
    for r in [ra, rb, rc] {
        r.handle.shutdown().await.unwrap();
        let _ = r.task.await;
    }
    let _ = std::fs::remove_dir_all(&cache_dir);
}

/// A reload reaches the directory client (`DirectoryClient::set_trust`): during a CA rollover a
/// member issued by the new CA is skipped by a member that trusts only the old one, and learned as
/// a peer once that member's trust store holds both, without a restart; a trust store that no
/// longer holds the new CA removes it again.
#[tokio::test]
async fn a_trust_reload_reaches_the_directory_client() {
    let Some(etcd) = Etcd::start("a_trust_reload_reaches_the_directory_client") else {
        return;
    };
    tokio::time::timeout(TEST_TIMEOUT, async {
        let (old, new) = (Ca::new(0x51), Ca::new(0x52));
        let both = TrustStore::new(vec![old.cert.clone(), new.cert.clone()]).unwrap();
        let a = Member::new(&old, "a", 12);
        let b = Member::new(&new, "b", 13);
        let mut ra = driver(&old, &a).await;
        let rb = driver(&new, &b).await;
        let (dir_a, _pa) = directory_trusting(&etcd, old.store(), &a, &ra, None);
        let (dir_b, _pb) = directory_trusting(&etcd, both.clone(), &b, &rb, None);
        status_where(&dir_b, "b (both CAs) learns a", |s| {
            s.connected && knows(s, "a")
        })
        .await;
        status_where(&dir_a, "a skips b's record (unknown CA)", |s| {
            s.connected && s.skipped.get("bad_certificate").copied().unwrap_or(0) >= 1
        })
        .await;
        assert!(!knows(&dir_a.status(), "b"));

        dir_a.set_trust(both);
        status_where(&dir_a, "a learns b after the reload", |s| knows(s, "b")).await;
        driver_peer(&mut ra.handle, "b", true).await;

        dir_a.set_trust(old.store());
        status_where(&dir_a, "b removed when the new CA is dropped", |s| {
            !knows(s, "b")
        })
        .await;
        driver_peer(&mut ra.handle, "b", false).await;

        dir_a.stop().await;
        dir_b.stop().await;
    })
    .await
    .expect("the test did not finish within its time limit");
}
