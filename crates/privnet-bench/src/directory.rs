//! The `directory` scenario: the directory on a real etcd (Debian's `etcd` binary on loopback, data
//! in a temporary directory, killed at the end): 1,000 members registered under leases, 1,000
//! watchers of the prefix (on 10 connections, as 10 hosts of 100 members would), and the time a
//! change of one record takes to reach every watcher — decoded and its certificate verified, as a
//! member does before it touches its driver. Also the steady-state load a member puts on etcd
//! (lease keepalives measured from etcd's own counters) and the memory of a member's directory state
//! per entry (a child process, hidden `directory-memory` command).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use etcd_client::{Client, EventType, PutOptions, WatchOptions};
use privnet_core::directory::{Layout, MemberRecord, PeerSet, WatchState};
use privnet_core::identity::{
    CaCertificate, CaKey, CaParams, MemberCertificate, MemberParams, NetworkId, TrustStore,
};
use tokio::sync::mpsc;

/// Figures of one case: name, figures, note.
pub(crate) type Case = (String, Vec<(&'static str, f64)>, String);

struct Etcd {
    child: Child,
    dir: std::path::PathBuf,
    client: u16,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_or(0, |a| a.port())
}

impl Etcd {
    fn start() -> Result<Self, String> {
        let dir = std::env::temp_dir().join(format!("privnet-bench-etcd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let (client, peer) = (free_port(), free_port());
        let c = format!("http://127.0.0.1:{client}");
        let p = format!("http://127.0.0.1:{peer}");
        let child = Command::new("etcd")
            .args(["--name", "b", "--data-dir"])
            .arg(dir.join("data"))
            .args(["--listen-client-urls", &c, "--advertise-client-urls", &c])
            .args([
                "--listen-peer-urls",
                &p,
                "--initial-advertise-peer-urls",
                &p,
            ])
            .args(["--initial-cluster", &format!("b={p}")])
            .args(["--quota-backend-bytes", "1073741824"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!("etcd does not start ({e}); Debian: apt-get install etcd-server")
            })?;
        let e = Self { child, dir, client };
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", client)).is_err() {
            if Instant::now() > deadline {
                return Err("etcd did not listen within 15 s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(e)
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client)
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

struct Net {
    trust: TrustStore,
    certs: Vec<MemberCertificate>,
}

fn network(n: usize) -> Net {
    let key = CaKey::from_seed([0x51; 32]);
    let now = unix_now();
    let ca = CaCertificate::self_signed(
        &key,
        &CaParams {
            name: "benchnet".into(),
            network_id: NetworkId([0x52; 16]),
            prefixes: vec!["10.80.0.0/16".parse().expect("prefix")],
            routes: vec![],
            not_before: now - 86_400,
            not_after: now + 86_400 * 30,
        },
    )
    .expect("CA");
    let certs = (0..n)
        .map(|i| {
            let i = u32::try_from(i).expect("fits");
            let mut pk = [0u8; 32];
            pk[..4].copy_from_slice(&i.to_be_bytes());
            pk[31] = 1;
            MemberCertificate::issue(
                &ca,
                &key,
                &MemberParams {
                    name: format!("m{i}"),
                    addresses: vec![std::net::IpAddr::V4(std::net::Ipv4Addr::new(
                        10,
                        80,
                        (i >> 8) as u8,
                        (i & 0xff) as u8 | 1,
                    ))],
                    routes: vec![],
                    groups: vec![],
                    public_key: pk,
                    not_before: now - 86_400,
                    not_after: now + 86_400 * 29,
                },
            )
            .expect("member")
        })
        .collect();
    Net {
        trust: TrustStore::new(vec![ca]).expect("store"),
        certs,
    }
}

fn record(cert: &MemberCertificate, i: usize, change: Option<usize>) -> Vec<u8> {
    let port = 40_000 + u16::try_from(i % 20_000).unwrap_or(0);
    let mut r = MemberRecord::new(
        cert,
        vec![format!("192.0.2.1:{port}").parse().expect("addr")],
    );
    if let Some(c) = change {
        r.capabilities.push(format!("change-{c}"));
    }
    r.to_bytes().expect("record")
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// The scenario; `members` registered, `watchers` watching, `changes` changes timed.
pub(crate) fn scenario(members: usize, watchers: usize, changes: usize) -> Vec<Case> {
    let etcd = match Etcd::start() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("directory scenario not run: {e}");
            return Vec::new();
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut out = rt.block_on(run(&etcd.endpoint(), members, watchers, changes));
    out.extend(memory());
    out
}

async fn run(endpoint: &str, members: usize, watchers: usize, changes: usize) -> Vec<Case> {
    let net = network(members);
    let layout = Layout::new("/privnet/benchnet");
    // Registration: 10 connections, each member its own lease and put.
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    let conns = 10;
    for c in 0..conns {
        let endpoint = endpoint.to_owned();
        let mine: Vec<(usize, String, Vec<u8>)> = (c..members)
            .step_by(conns)
            .map(|i| {
                (
                    i,
                    layout.member(net.certs[i].name()),
                    record(&net.certs[i], i, None),
                )
            })
            .collect();
        tasks.push(tokio::spawn(async move {
            let mut client = Client::connect([endpoint], None).await.expect("connect");
            for (_, key, value) in mine {
                let lease = client.lease_grant(300, None).await.expect("lease").id();
                client
                    .put(key, value, Some(PutOptions::new().with_lease(lease)))
                    .await
                    .expect("put");
            }
        }));
    }
    for t in tasks {
        t.await.expect("register");
    }
    let registered = t0.elapsed();
    let mut client = Client::connect([endpoint.to_owned()], None)
        .await
        .expect("connect");
    let start = client
        .get(
            layout.watch_prefix(),
            Some(
                etcd_client::GetOptions::new()
                    .with_prefix()
                    .with_keys_only(),
            ),
        )
        .await
        .expect("get");
    let revision = start.header().map_or(0, |h| h.revision());
    let count = start.kvs().len();

    // Watchers: `watchers` streams over 10 connections; each keeps a member's state (watch state
    // machine and peer set) and reports when it applied change N.
    let (tx, mut rx) = mpsc::unbounded_channel::<(usize, Instant)>();
    let mut ready = Vec::new();
    for c in 0..conns {
        let client = Client::connect([endpoint.to_owned()], None)
            .await
            .expect("connect");
        for w in (c..watchers).step_by(conns) {
            let mut client = client.clone();
            let tx = tx.clone();
            let trust = net.trust.clone();
            let layout = layout.clone();
            let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
            ready.push(ready_rx);
            tokio::spawn(async move {
                let mut stream = client
                    .watch(
                        layout.watch_prefix(),
                        Some(
                            WatchOptions::new()
                                .with_prefix()
                                .with_start_revision(revision + 1),
                        ),
                    )
                    .await
                    .expect("watch");
                let _ = ready_tx.send(());
                let mut state = WatchState::new();
                let _ = state.apply_snapshot(revision, Vec::new());
                let mut own = [0u8; 32];
                own[..8].copy_from_slice(&(w as u64).to_be_bytes());
                let mut peers = PeerSet::new(&layout.members(), own, vec![]);
                let now = unix_now();
                while let Ok(Some(resp)) = stream.message().await {
                    let events: Vec<_> = resp
                        .events()
                        .iter()
                        .filter_map(|ev| {
                            let kv = ev.kv()?;
                            let key = kv.key_str().ok()?.to_owned();
                            (ev.event_type() == EventType::Put).then(|| {
                                privnet_core::directory::WatchEvent::Put(
                                    privnet_core::directory::KeyValue {
                                        key,
                                        value: kv.value().to_vec(),
                                        mod_revision: kv.mod_revision(),
                                    },
                                )
                            })
                        })
                        .collect();
                    for change in state.apply_events(events) {
                        let (applied, _) = peers.apply(change, &trust, now);
                        for p in applied {
                            let (privnet_core::directory::PeerChange::Add(p)
                            | privnet_core::directory::PeerChange::Update(p)) = p
                            else {
                                continue;
                            };
                            if let Some(n) = p
                                .capabilities
                                .iter()
                                .find_map(|c| c.strip_prefix("change-")?.parse().ok())
                            {
                                let _ = tx.send((n, Instant::now()));
                            }
                        }
                    }
                }
            });
        }
    }
    drop(tx);
    for r in ready {
        let _ = r.await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Changes: one record rewritten with a marker; every watcher must apply it.
    let mut latencies: Vec<f64> = Vec::new();
    let mut missing = 0usize;
    for n in 0..changes {
        let i = (n * 37) % members;
        let key = layout.member(net.certs[i].name());
        let t0 = Instant::now();
        client
            .put(key, record(&net.certs[i], i, Some(n)), None)
            .await
            .expect("change");
        let mut seen = 0;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while seen < watchers {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some((m, t))) if m == n => {
                    latencies.push(t.duration_since(t0).as_secs_f64() * 1e3);
                    seen += 1;
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        missing += watchers - seen;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    latencies.sort_by(f64::total_cmp);
    let mut cases = vec![
        (
            format!("{members} members registered"),
            vec![
                ("members", count as f64),
                ("register_s", registered.as_secs_f64()),
                (
                    "registrations_per_s",
                    members as f64 / registered.as_secs_f64(),
                ),
            ],
            "each a lease grant and a put under it, over 10 connections".to_owned(),
        ),
        (
            format!("a change reaching {watchers} watchers"),
            vec![
                ("changes", changes as f64),
                ("p50_ms", percentile(&latencies, 0.5)),
                ("p99_ms", percentile(&latencies, 0.99)),
                ("max_ms", latencies.last().copied().unwrap_or(0.0)),
                ("missed", missing as f64),
            ],
            "put of one record -> every watcher has decoded it and verified its certificate"
                .to_owned(),
        ),
    ];
    cases.push(keepalive_load(endpoint).await);
    cases
}

/// The steady-state etcd load of members: `n` lease keepalive loops at TTL/3 (what a member
/// sends; its watch costs nothing while nothing changes), measured from etcd's counters.
async fn keepalive_load(endpoint: &str) -> Case {
    let n = 50;
    let ttl = 3i64;
    let window = Duration::from_secs(6);
    let metrics = |endpoint: String| async move {
        let url = format!("{endpoint}/metrics");
        tokio::task::spawn_blocking(move || received_total(&url))
            .await
            .unwrap_or(0.0)
    };
    let mut client = Client::connect([endpoint.to_owned()], None)
        .await
        .expect("connect");
    let mut loops = Vec::new();
    for _ in 0..n {
        let lease = client.lease_grant(ttl, None).await.expect("lease").id();
        let (mut keeper, mut stream) = client.lease_keep_alive(lease).await.expect("keepalive");
        loops.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs_f64(ttl as f64 / 3.0));
            loop {
                tick.tick().await;
                if keeper.keep_alive().await.is_err() || stream.message().await.is_err() {
                    break;
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = metrics(endpoint.to_owned()).await;
    tokio::time::sleep(window).await;
    let after = metrics(endpoint.to_owned()).await;
    for l in loops {
        l.abort();
    }
    let per_member = (after - before) / window.as_secs_f64() / f64::from(n);
    (
        format!("steady state, lease TTL {ttl} s"),
        vec![
            ("members", f64::from(n)),
            ("etcd_requests_per_s_per_member", per_member),
            ("at_ttl_10s_requests_per_s", per_member * ttl as f64 / 10.0),
        ],
        "gRPC messages etcd received (grpc_server_msg_received_total) from keepalive loops at TTL/3"
            .to_owned(),
    )
}

/// The sum of etcd's `grpc_server_msg_received_total` (plain HTTP/1.0 GET on its client port).
fn received_total(url: &str) -> f64 {
    use std::io::{Read as _, Write as _};
    let Some(rest) = url.strip_prefix("http://") else {
        return 0.0;
    };
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let Ok(mut s) = std::net::TcpStream::connect(host) else {
        return 0.0;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = write!(s, "GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n");
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body.lines()
        .filter(|l| l.starts_with("grpc_server_msg_received_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Memory of a member's directory state per entry, in a fresh child process.
fn memory() -> Vec<Case> {
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(_) => return Vec::new(),
    };
    let n = 10_000;
    let out = Command::new(exe)
        .args(["directory-memory", &n.to_string()])
        .output();
    let Ok(out) = out else { return Vec::new() };
    let text = String::from_utf8_lossy(&out.stdout);
    let Some(bytes) = text.trim().parse::<f64>().ok() else {
        return Vec::new();
    };
    vec![(
        format!("member state, {n} directory entries"),
        vec![("bytes_per_entry", bytes / n as f64)],
        "VmRSS growth of the watch state and peer set (raw records kept for revalidation)"
            .to_owned(),
    )]
}

fn rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// The hidden `directory-memory N` command: print the RSS growth of holding N entries.
pub(crate) fn memory_child(n: &str) {
    let n: usize = n.parse().unwrap_or(10_000);
    let net = network(n);
    let layout = Layout::new("/privnet/benchnet");
    let values: Vec<(String, Vec<u8>)> = (0..n)
        .map(|i| {
            (
                layout.member(net.certs[i].name()),
                record(&net.certs[i], i, None),
            )
        })
        .collect();
    let kvs: Vec<privnet_core::directory::KeyValue> = values
        .iter()
        .map(|(k, v)| privnet_core::directory::KeyValue {
            key: k.clone(),
            value: v.clone(),
            mod_revision: 1,
        })
        .collect();
    drop(net.certs);
    let before = rss();
    let mut state = WatchState::new();
    let changes = state.apply_snapshot(1, kvs);
    let mut peers = PeerSet::new(&layout.members(), [0; 32], vec![]);
    let now = unix_now();
    for c in changes {
        let _ = peers.apply(c, &net.trust, now);
    }
    let after = rss();
    assert_eq!(peers.len(), n);
    drop(values);
    println!("{}", after.saturating_sub(before));
    std::hint::black_box((&state, &peers));
}
