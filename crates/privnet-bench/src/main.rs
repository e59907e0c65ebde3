//! privnet-bench: in-process benchmark scenarios of the sans-IO core that need no root.
//!
//! ```text
//! cargo run --release -p privnet-bench -- [all|seal|sim|udp|workers|handshake|memory|stack|directory] [--json] [--secs S] [--sweep]
//! ```
//!
//! * `seal`: seal and open of 1,420-byte and 64-byte inner packets through `privnet_core::Node`
//!   (ns/packet, Gbit/s of inner bytes).
//! * `sim`: node-to-node packet rate over the deterministic simulator (`privnet_core::testing`).
//! * `udp`: node-to-node packet rate over real loopback UDP sockets: two library drivers
//!   (`privnet_core::io::Driver`, the sidecar's loop) on 127.0.0.1 with in-memory inner sides, 64 B
//!   and 1,400 B inner packets, everything on one thread.
//! * `workers`: the `udp` case with 1 and 2 crypto threads per driver (`DriverConfig::workers`),
//!   interleaved; pin it with `taskset` to say how many cores it may use.
//! * `handshake`: complete handshakes per second, both ends on this thread, next to the X25519
//!   Diffie-Hellman and public-key derivation rates measured the same way.
//! * `memory`: process RSS growth (VmRSS) of a Node with 1, 1,000 and 10,000 configured peers, and with
//!   sessions established for 1,000 peers. Every case runs in a fresh child process (this binary with
//!   the hidden `memory-case` command) so that freed heap of earlier work does not hide growth.
//! * `stack`: the embedded userspace stack (`privnet_core::io::embedded`, see `stack.rs`): TCP on one
//!   stream over loopback on one thread and on two workers (`--sweep`: congestion control,
//!   segmentation offload, Nagle, buffer sizes, delayed ACKs, `max_burst_size`), the round trip of a
//!   64 B request/response next to the channel path's, and the RSS of idle embedded nodes and of 100
//!   open idle streams (fresh child process, hidden `stack-memory` command).
//! * `directory` (not in `all`; needs the `etcd` binary, Debian's etcd-server): 1,000 members
//!   registered under leases in a real etcd on loopback, the time a change of one record takes to
//!   reach 1,000 watchers (decoded and verified as a member does; p50/p99/max), the etcd load of a
//!   member at steady state, and the memory per directory entry (`directory.rs`).
//!
//! Every loop is bounded by a packet or iteration count and by wall time (`--secs`, default 2 s per
//! measurement). Only ratios within one run on one machine mean anything.
// An I/O program, not sans-IO code: it reads clocks and opens sockets (see clippy.toml).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnetwork::IpNetwork;
use privnet_core::credential::{PeerIdentity, StandInCredential, StaticKeyVerifier};
use privnet_core::crypto::{x25519, CipherSuite, StaticSecret};
use privnet_core::io::{ChannelEnd, ChannelInner, Driver, DriverConfig};
use privnet_core::testing::{ipv4_udp, LinkConfig, TestNetwork};
use privnet_core::{
    CredentialVerifier, Decapsulated, Encapsulated, Node, NodeConfig, PeerConfig, PeerId,
};
use serde_json::{json, Value};

mod directory;
mod stack;

/// One output row: scenario, case, and named figures.
struct Row {
    scenario: &'static str,
    case: String,
    figures: Vec<(&'static str, f64)>,
    note: String,
}

struct Opts {
    secs: f64,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("memory-case") {
        memory_case_child(&args[1..]);
        return;
    }
    if args.first().map(String::as_str) == Some("directory-memory") {
        directory::memory_child(args.get(1).map_or("10000", String::as_str));
        return;
    }
    if args.first().map(String::as_str) == Some("stack-memory") {
        stack::memory_child(args.get(1).map_or("streams", String::as_str));
        return;
    }
    let mut json_out = false;
    let mut sweep = false;
    let mut secs = 2.0;
    let mut scenario = "all".to_string();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--json" => json_out = true,
            "--sweep" => sweep = true,
            "--secs" => {
                secs = it
                    .next()
                    .and_then(|s| s.parse().ok())
                    .filter(|s: &f64| *s > 0.0 && *s <= 60.0)
                    .unwrap_or_else(|| usage("--secs takes a number of seconds in (0, 60]"));
            }
            "-h" | "--help" => usage(""),
            s if !s.starts_with('-') => scenario = s.to_string(),
            s => usage(&format!("unknown option {s}")),
        }
    }
    let opts = Opts { secs };
    let mut rows = Vec::new();
    let all = scenario == "all";
    let known = [
        "all",
        "seal",
        "sim",
        "udp",
        "workers",
        "handshake",
        "memory",
        "stack",
        "directory",
    ];
    if !known.contains(&scenario.as_str()) {
        usage(&format!("unknown scenario {scenario}"));
    }
    // memory first: it runs in child processes, but keep the parent small while they run anyway
    if all || scenario == "memory" {
        rows.extend(scenario_memory());
    }
    if all || scenario == "seal" {
        rows.extend(scenario_seal(&opts));
    }
    if all || scenario == "sim" {
        rows.extend(scenario_sim(&opts));
    }
    if all || scenario == "udp" {
        rows.extend(scenario_udp(&opts));
    }
    if all || scenario == "workers" {
        rows.extend(scenario_workers(&opts));
    }
    if all || scenario == "handshake" {
        rows.extend(scenario_handshake(&opts));
    }
    if all || scenario == "stack" {
        let cases = stack::memory().into_iter().map(|c| ("memory", c)).chain(
            stack::scenario(opts.secs, sweep)
                .into_iter()
                .map(|c| ("stack", c)),
        );
        for (name, (case, figures, note)) in cases {
            rows.push(Row {
                scenario: name,
                case,
                figures,
                note,
            });
        }
        // The channel path's throughput in the same run, for comparison.
        if scenario != "all" {
            rows.extend(scenario_udp(&opts));
        }
    }
    // Not part of `all`: it needs the etcd binary (Debian's etcd-server) and a minute.
    if scenario == "directory" {
        for (case, figures, note) in directory::scenario(1_000, 1_000, 20) {
            rows.push(Row {
                scenario: "directory",
                case,
                figures,
                note,
            });
        }
    }
    if json_out {
        let v: Vec<Value> = rows
            .iter()
            .map(|r| {
                let mut m = serde_json::Map::new();
                m.insert("scenario".into(), json!(r.scenario));
                m.insert("case".into(), json!(r.case));
                for (k, v) in &r.figures {
                    m.insert((*k).into(), json!(v));
                }
                if !r.note.is_empty() {
                    m.insert("note".into(), json!(r.note));
                }
                Value::Object(m)
            })
            .collect();
        let doc = json!({
            "machine": machine(),
            "note": "only ratios within one run on one machine count",
            "secs_per_measurement": opts.secs,
            "rows": v,
        });
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else {
        print_table(&rows, &opts);
    }
}

fn usage(err: &str) -> ! {
    if !err.is_empty() {
        eprintln!("error: {err}");
    }
    eprintln!(
        "usage: privnet-bench [all|seal|sim|udp|workers|handshake|memory|stack|directory] [--json] [--secs S] [--sweep]"
    );
    std::process::exit(if err.is_empty() { 0 } else { 2 });
}

fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    json!({ "cpu": cpu, "kernel": kernel, "nproc": nproc })
}

fn print_table(rows: &[Row], opts: &Opts) {
    let m = machine();
    println!(
        "privnet-bench: {} ×{} (nproc), kernel {}, {:.1} s per measurement. Only ratios within one run count.",
        m["cpu"].as_str().unwrap_or("?"),
        m["nproc"],
        m["kernel"].as_str().unwrap_or("?"),
        opts.secs
    );
    println!();
    println!("| scenario | case | figures | note |");
    println!("|---|---|---|---|");
    for r in rows {
        let mut f = String::new();
        for (i, (k, v)) in r.figures.iter().enumerate() {
            if i > 0 {
                f.push_str(", ");
            }
            let _ = write!(f, "{k} {}", human(*v));
        }
        println!("| {} | {} | {} | {} |", r.scenario, r.case, f, r.note);
    }
}

fn human(v: f64) -> String {
    let a = v.abs();
    if a >= 100.0 {
        format!("{:.0}", v)
    } else if a >= 10.0 {
        format!("{:.1}", v)
    } else {
        format!("{:.2}", v)
    }
}

// ---------------------------------------------------------------------------------------------------
// helpers

/// Raise the handshake limits so that a benchmark never trips the rate limiter or cookies.
fn unlimited(cfg: &mut NodeConfig) {
    cfg.handshake_rate_per_source = 1_000_000;
    cfg.handshake_burst_per_source = 1_000_000;
    cfg.under_load_handshakes_per_sec = 1_000_000;
}

/// Deliver everything `from` has to send to `to` (in memory); returns how many datagrams moved.
fn shuttle(
    from: &mut Node,
    from_addr: SocketAddr,
    to: &mut Node,
    now: Instant,
    buf: &mut [u8],
    out: &mut [u8],
) -> usize {
    let mut n = 0;
    while let Some(t) = from.poll_transmit(buf, now) {
        let _ = to.decapsulate(from_addr, &buf[..t.len], out, now);
        n += 1;
        if n > 10_000 {
            break;
        }
    }
    n
}

/// Two established nodes of a `TestNetwork`, handshaken by direct shuttling.
struct Pair {
    a: Node,
    b: Node,
    a_to_b: PeerId,
    addr_a: SocketAddr,
    addr_b: SocketAddr,
    now: Instant,
    net: TestNetwork,
}

fn pair(suite: CipherSuite) -> Pair {
    let net = TestNetwork::new(2, 91);
    let now = Instant::now();
    let mut ca = net.config(0, 7);
    unlimited(&mut ca);
    ca.cipher = suite;
    let mut cb = net.config(1, 7);
    unlimited(&mut cb);
    cb.cipher = suite;
    cb.eager_handshakes = false;
    let mut a = net.node(0, ca, now, net.unix_start);
    let mut b = net.node(1, cb, now, net.unix_start);
    let (mut buf, mut out) = (vec![0u8; 2048], vec![0u8; 2048]);
    for _ in 0..4 {
        shuttle(&mut a, net.underlay[0], &mut b, now, &mut buf, &mut out);
        shuttle(&mut b, net.underlay[1], &mut a, now, &mut buf, &mut out);
    }
    let a_to_b = a
        .peer_by_key(&net.public(1))
        .expect("peer b configured on a");
    assert!(a.is_established(a_to_b), "pair: handshake did not complete");
    Pair {
        a,
        b,
        a_to_b,
        addr_a: net.underlay[0],
        addr_b: net.underlay[1],
        now,
        net,
    }
}

fn inner_packet(net: &TestNetwork, from: usize, to: usize, len: usize) -> Vec<u8> {
    let p = ipv4_udp(net.overlay[from], net.overlay[to], &vec![0x5a; len - 28]);
    assert_eq!(p.len(), len);
    p
}

fn gbps(bytes: f64, secs: f64) -> f64 {
    bytes * 8.0 / secs / 1e9
}

// ---------------------------------------------------------------------------------------------------
// (a) seal / open

fn scenario_seal(o: &Opts) -> Vec<Row> {
    let mut rows = Vec::new();
    for (suite, len) in [
        (CipherSuite::Aes256Gcm, 1420usize),
        (CipherSuite::Aes256Gcm, 64),
        (CipherSuite::ChaCha20Poly1305, 1420),
        (CipherSuite::ChaCha20Poly1305, 64),
    ] {
        let mut p = pair(suite);
        let packet = inner_packet(&p.net, 0, 1, len);
        let mut out = vec![0u8; 2048];
        // seal: time-bounded loop in chunks of 1024
        let budget = Duration::from_secs_f64(o.secs);
        let t0 = Instant::now();
        let mut n = 0u64;
        while t0.elapsed() < budget {
            for _ in 0..1024 {
                let r = p.a.encapsulate(&packet, &mut out, p.now);
                assert!(matches!(r, Ok(Encapsulated::Send(_))), "seal failed: {r:?}");
                std::hint::black_box(&out);
            }
            n += 1024;
        }
        let seal_s = t0.elapsed().as_secs_f64();
        let seal_ns = seal_s * 1e9 / n as f64;

        // open: seal a batch (untimed), then open it in order (timed)
        let mut p = pair(suite);
        let batch = 1024;
        let mut sealed: Vec<Vec<u8>> = Vec::with_capacity(batch);
        let mut opened = vec![0u8; 2048];
        let mut open_time = Duration::ZERO;
        let mut m = 0u64;
        let wall = Instant::now();
        while open_time < budget && wall.elapsed() < budget * 4 {
            sealed.clear();
            for _ in 0..batch {
                match p.a.encapsulate(&packet, &mut out, p.now) {
                    Ok(Encapsulated::Send(t)) => sealed.push(out[..t.len].to_vec()),
                    other => panic!("seal failed: {other:?}"),
                }
            }
            let t = Instant::now();
            for d in &sealed {
                let r = p.b.decapsulate(p.addr_a, d, &mut opened, p.now);
                assert!(
                    matches!(r, Ok(Decapsulated::Packet { .. })),
                    "open failed: {r:?}"
                );
            }
            open_time += t.elapsed();
            m += batch as u64;
        }
        let open_ns = open_time.as_secs_f64() * 1e9 / m as f64;
        rows.push(Row {
            scenario: "seal/open",
            case: format!("{len} B inner packet, {suite}"),
            figures: vec![
                ("seal_ns_per_pkt", seal_ns),
                ("seal_gbit_s", gbps(len as f64, seal_ns / 1e9)),
                ("open_ns_per_pkt", open_ns),
                ("open_gbit_s", gbps(len as f64, open_ns / 1e9)),
                ("packets_sealed", n as f64),
                ("packets_opened", m as f64),
            ],
            note: "Node::encapsulate / Node::decapsulate, one core, Gbit/s of inner bytes".into(),
        });
    }
    rows
}

// ---------------------------------------------------------------------------------------------------
// (b) node to node: simulator and loopback UDP

const SIM_PACKETS: u64 = 500_000;
const UDP_PACKETS: u64 = 5_000_000;

fn scenario_sim(o: &Opts) -> Vec<Row> {
    let net = TestNetwork::new(2, 92);
    let link = LinkConfig {
        latency: Duration::ZERO,
        mtu: 1500,
        ..LinkConfig::default()
    };
    let mut sim = net.sim(5, link);
    let ok = sim.run_until_cond(Duration::from_secs(10), |s| {
        s.nodes[0]
            .node
            .peer_by_key(&net.public(1))
            .is_some_and(|p| s.nodes[0].node.is_established(p))
    });
    assert!(ok.is_some(), "simulator: handshake did not complete");
    let packet = inner_packet(&net, 0, 1, 1400);
    let budget = Duration::from_secs_f64(o.secs);
    let t0 = Instant::now();
    let mut delivered = 0u64;
    let mut sent = 0u64;
    while sent < SIM_PACKETS && t0.elapsed() < budget {
        for _ in 0..256 {
            let r = sim.send_packet(0, &packet);
            assert!(matches!(r, Ok(Encapsulated::Send(_))), "sim send: {r:?}");
        }
        sent += 256;
        let now = sim.now;
        sim.run_until(now);
        delivered += sim.nodes[1].inbox.len() as u64;
        sim.nodes[1].inbox.clear();
    }
    let s = t0.elapsed().as_secs_f64();
    vec![Row {
        scenario: "node→node",
        case: "simulator, 1400 B inner".into(),
        figures: vec![
            ("packets_per_s", delivered as f64 / s),
            ("gbit_s", gbps(delivered as f64 * 1400.0, s)),
            ("sent", sent as f64),
            ("delivered", delivered as f64),
        ],
        note: "privnet_core::testing::Sim, zero latency; includes the simulator's copies and queue"
            .into(),
    }]
}

/// A library driver for member `i` of `net` on 127.0.0.1 with an in-memory inner side, knowing
/// member `peer` (at `peer_addr`, if known: the other side learns it from the handshake).
async fn loopback_driver(
    net: &TestNetwork,
    i: usize,
    peer: usize,
    peer_addr: Option<SocketAddr>,
    workers: usize,
    cipher: CipherSuite,
) -> (Driver<ChannelInner>, ChannelEnd) {
    let mut cfg = net.config(i, 11);
    unlimited(&mut cfg);
    cfg.cipher = cipher;
    let mut dcfg = DriverConfig::new("bench", SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
    // Throughput, not latency: no spinning between batches (the other tasks share this thread).
    dcfg.busy_poll = Duration::ZERO;
    dcfg.workers = workers;
    dcfg.addresses = vec![IpNetwork::new(net.overlay[i], 32).expect("prefix")];
    let mut node = dcfg.new_node(cfg).expect("node config");
    let mut pc = PeerConfig::new(net.public(peer))
        .allowed_ip(IpNetwork::new(net.overlay[peer], 32).expect("prefix"));
    pc.endpoint = peer_addr;
    node.add_peer(pc, Instant::now()).expect("add peer");
    let (inner, app) = ChannelInner::new(format!("mem{i}"), UDP_QUEUE);
    let driver = Driver::new(node, dcfg, None, inner)
        .await
        .expect("driver on 127.0.0.1");
    (driver, app)
}

/// Packets each in-memory queue holds (application -> driver, driver -> application).
const UDP_QUEUE: usize = 1024;

fn scenario_udp(o: &Opts) -> Vec<Row> {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("udp: cannot start a tokio runtime: {e}");
            return Vec::new();
        }
    };
    [64usize, 1400]
        .into_iter()
        .map(|len| rt.block_on(udp_case(o, len, 1, CipherSuite::default())))
        .collect()
}

/// The crypto workers (`[tun] workers`): the `udp` case at 1,400 and 64 bytes with 1 and 2
/// threads for the drivers' crypto, interleaved (1, 2, 1, 2). With 1, everything runs on this
/// one thread; with 2, each driver's large seal and open batches are split with a pool thread,
/// so the run can use a second core. Pin it (`taskset -c 0,1`) to say how many it may use.
fn scenario_workers(o: &Opts) -> Vec<Row> {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("workers: cannot start a tokio runtime: {e}");
            return Vec::new();
        }
    };
    let mut rows = Vec::new();
    let cases = [
        (1400usize, CipherSuite::Aes256Gcm),
        (1400, CipherSuite::ChaCha20Poly1305),
        (64, CipherSuite::Aes256Gcm),
    ];
    for (len, cipher) in [
        (1400usize, CipherSuite::Aes256Gcm),
        (1400, CipherSuite::ChaCha20Poly1305),
    ] {
        for _rep in 0..2 {
            for workers in [1usize, 2] {
                rows.push(rt.block_on(seal_bound_case(o, len, workers, cipher)));
            }
        }
    }
    for (len, cipher) in cases {
        for _rep in 0..2 {
            for workers in [1usize, 2] {
                let mut row = rt.block_on(udp_case(o, len, workers, cipher));
                row.scenario = "workers";
                row.case = format!(
                    "loopback UDP, {len} B inner, {}, {workers} crypto thread(s) per driver",
                    cipher.name()
                );
                rows.push(row);
            }
        }
    }
    rows
}

/// Two loopback drivers of `net` (A with `workers[0]` crypto threads, B with `workers[1]`),
/// running, with a session: B's first `len`-byte packet (which starts the handshake) has
/// reached A's application.
struct LoopbackPair {
    app_a: ChannelEnd,
    app_b: ChannelEnd,
    handle_a: privnet_core::io::DriverHandle,
    handle_b: privnet_core::io::DriverHandle,
    task_a: tokio::task::JoinHandle<std::io::Result<()>>,
    task_b: tokio::task::JoinHandle<std::io::Result<()>>,
    /// From B's first packet to its arrival at A: the handshake over the sockets.
    hs_ms: f64,
}

async fn loopback_pair(
    net: &TestNetwork,
    len: usize,
    workers: [usize; 2],
    cipher: CipherSuite,
) -> LoopbackPair {
    let (driver_a, mut app_a) = loopback_driver(net, 0, 1, None, workers[0], cipher).await;
    let addr_a = driver_a.local_addr();
    let (driver_b, mut app_b) = loopback_driver(net, 1, 0, Some(addr_a), workers[1], cipher).await;
    let (handle_a, handle_b) = (driver_a.handle(), driver_b.handle());
    let task_a = tokio::spawn(driver_a.run());
    let task_b = tokio::spawn(driver_b.run());
    // B starts the handshake for its first packet, queued meanwhile: the time until it arrives.
    let t_hs = Instant::now();
    app_b
        .send(&inner_packet(net, 1, 0, len))
        .await
        .expect("B's driver runs");
    let first = tokio::time::timeout(Duration::from_secs(3), app_a.recv()).await;
    assert!(
        matches!(first, Ok(Some(_))),
        "loopback: handshake did not complete"
    );
    LoopbackPair {
        app_a,
        app_b,
        handle_a,
        handle_b,
        task_a,
        task_b,
        hs_ms: t_hs.elapsed().as_secs_f64() * 1e3,
    }
}

/// Send `packet` into `app` as fast as its queue takes it, for `secs` (at most `UDP_PACKETS`);
/// the packets sent and the seconds taken.
async fn feed(app: &mut ChannelEnd, packet: &[u8], secs: f64) -> (u64, f64) {
    let budget = Duration::from_secs_f64(secs);
    let t0 = Instant::now();
    let mut sent = 0u64;
    while sent < UDP_PACKETS && t0.elapsed() < budget {
        for _ in 0..64 {
            if app.send(packet).await.is_err() {
                break;
            }
            sent += 1;
        }
    }
    (sent, t0.elapsed().as_secs_f64())
}

/// One driver's sending side alone: A and B make a session, B stops, and A's application sends
/// as fast as A's queue takes packets for `o.secs`; A seals and sends them to B's address, where
/// nobody reads. What a gateway's encrypting half does, without a receiver on this thread.
async fn seal_bound_case(o: &Opts, len: usize, workers: usize, cipher: CipherSuite) -> Row {
    let net = TestNetwork::new(2, 94);
    // B's application end is kept until B has stopped (a closed channel would end B first).
    let LoopbackPair {
        mut app_a,
        app_b: _app_b,
        handle_a,
        handle_b,
        task_a,
        task_b,
        ..
    } = loopback_pair(&net, len, [workers, 1], cipher).await;
    let _ = handle_b.shutdown().await;
    let r = tokio::time::timeout(Duration::from_secs(5), task_b).await;
    assert!(matches!(r, Ok(Ok(Ok(())))), "loopback driver B: {r:?}");
    let before = handle_a.snapshot().tx_packets;
    let (sent, s) = feed(&mut app_a, &inner_packet(&net, 0, 1, len), o.secs).await;
    let _ = handle_a.shutdown().await;
    let r = tokio::time::timeout(Duration::from_secs(5), task_a).await;
    assert!(matches!(r, Ok(Ok(Ok(())))), "loopback driver A: {r:?}");
    let snap = handle_a.snapshot();
    let sealed = snap.tx_packets.saturating_sub(before) as f64;
    let event = |k: &str| snap.driver.get(k).copied().unwrap_or(0) as f64;
    Row {
        scenario: "workers",
        case: format!(
            "one driver sealing, {len} B inner, {}, {workers} crypto thread(s)",
            cipher.name()
        ),
        figures: vec![
            ("sealed_per_s", sealed / s),
            ("gbit_s", gbps(sealed * len as f64, s)),
            ("sent", sent as f64),
            ("batches_split", event("crypto_batches_split")),
            ("parts_helped", event("crypto_parts_helped")),
        ],
        note: "privnet_core::io::Driver sealing to a stopped peer on 127.0.0.1 (nobody reads); \
               feeder and driver on one thread, helpers on their own"
            .into(),
    }
}

/// One size: A's application sends as fast as A's queue takes packets for `o.secs`; B's
/// application counts what arrives.
async fn udp_case(o: &Opts, len: usize, workers: usize, cipher: CipherSuite) -> Row {
    let net = TestNetwork::new(2, 93);
    let LoopbackPair {
        mut app_a,
        mut app_b,
        handle_a,
        handle_b,
        task_a,
        task_b,
        hs_ms,
    } = loopback_pair(&net, len, [workers, workers], cipher).await;

    let receiver = tokio::spawn(async move {
        let (mut got, mut bytes) = (0u64, 0u64);
        while let Some(p) = app_b.recv().await {
            got += 1;
            bytes += p.len() as u64;
            app_b.recycle(p);
        }
        (got, bytes)
    });
    let (sent, s) = feed(&mut app_a, &inner_packet(&net, 0, 1, len), o.secs).await;
    // What is in flight lands (or is counted as dropped) before the drivers stop.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let _ = handle_a.shutdown().await;
    let _ = handle_b.shutdown().await;
    for t in [task_a, task_b] {
        let r = tokio::time::timeout(Duration::from_secs(5), t).await;
        assert!(matches!(r, Ok(Ok(Ok(())))), "loopback driver: {r:?}");
    }
    let (got, _bytes) = tokio::time::timeout(Duration::from_secs(5), receiver)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let (snap_a, snap_b) = (handle_a.snapshot(), handle_b.snapshot());
    let event = |snap: &privnet_core::io::NetworkSnapshot, k: &str| {
        snap.driver.get(k).copied().unwrap_or(0) as f64
    };
    Row {
        scenario: "node→node",
        case: format!("loopback UDP, {len} B inner, library drivers"),
        figures: vec![
            ("packets_per_s", got as f64 / s),
            ("gbit_s", gbps(got as f64 * len as f64, s)),
            ("sent", sent as f64),
            ("delivered", got as f64),
            ("sealed", snap_a.tx_packets as f64),
            ("opened", snap_b.rx_packets as f64),
            ("dropped_queue_full", event(&snap_b, "channel_deliver_full")),
            ("udp_batches_full", event(&snap_b, "udp_batch_full")),
            (
                "batches_split",
                event(&snap_a, "crypto_batches_split") + event(&snap_b, "crypto_batches_split"),
            ),
            (
                "parts_helped",
                event(&snap_a, "crypto_parts_helped") + event(&snap_b, "crypto_parts_helped"),
            ),
            ("handshake_ms", hs_ms),
        ],
        note: format!(
            "two privnet_core::io::Driver on 127.0.0.1 (GSO/GRO where the kernel has them) with in-memory inner sides \
             (queues of {UDP_QUEUE}), one thread: feeder, both drivers, receiver; handshake_ms until B's first packet arrived"
        ),
    }
}

// ---------------------------------------------------------------------------------------------------
// (c) handshakes per second vs X25519

fn scenario_handshake(o: &Opts) -> Vec<Row> {
    let budget = Duration::from_secs_f64(o.secs);
    let mut p = pair(CipherSuite::default());
    let (mut buf, mut out) = (vec![0u8; 2048], vec![0u8; 2048]);
    let t0 = Instant::now();
    let mut n = 0u64;
    while t0.elapsed() < budget && n < 1_000_000 {
        // 25 ms of virtual time per handshake keeps clear of the per-peer initiation interval
        p.now += Duration::from_millis(25);
        let before = p.b.stats().handshakes_completed;
        p.a.initiate_handshake(p.a_to_b, p.now);
        shuttle(&mut p.a, p.addr_a, &mut p.b, p.now, &mut buf, &mut out); // initiation
        shuttle(&mut p.b, p.addr_b, &mut p.a, p.now, &mut buf, &mut out); // response
        shuttle(&mut p.a, p.addr_a, &mut p.b, p.now, &mut buf, &mut out); // confirmation
        assert_eq!(
            p.b.stats().handshakes_completed,
            before + 1,
            "handshake did not complete"
        );
        n += 1;
    }
    let hs = n as f64 / t0.elapsed().as_secs_f64();

    let secret = StaticSecret::from_bytes([7; 32]);
    let other = StaticSecret::from_bytes([9; 32]).public_key();
    let t0 = Instant::now();
    let mut d = 0u64;
    while t0.elapsed() < budget {
        for _ in 0..64 {
            std::hint::black_box(x25519(
                std::hint::black_box(&secret),
                std::hint::black_box(&other),
            ));
        }
        d += 64;
    }
    let dh = d as f64 / t0.elapsed().as_secs_f64();
    let t0 = Instant::now();
    let mut k = 0u64;
    while t0.elapsed() < budget {
        for _ in 0..64 {
            std::hint::black_box(std::hint::black_box(&secret).public_key());
        }
        k += 64;
    }
    let pk = k as f64 / t0.elapsed().as_secs_f64();
    vec![Row {
        scenario: "handshake",
        case: "complete handshake, both ends on one core".into(),
        figures: vec![
            ("handshakes_per_s", hs),
            ("x25519_dh_per_s", dh),
            ("x25519_pubkey_per_s", pk),
            ("dh_equivalents_per_handshake", dh / hs),
            ("us_per_handshake", 1e6 / hs),
        ],
        note: "initiation+response+confirming keepalive via direct shuttling; x25519 = privnet_core::crypto::x25519, \
               pubkey = StaticSecret::public_key"
            .into(),
    }]
}

// ---------------------------------------------------------------------------------------------------
// (d) per-peer memory

fn vm_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn key_for(i: u64) -> StaticSecret {
    let mut k = [0u8; 32];
    k[..8].copy_from_slice(&i.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_le_bytes());
    k[8..16].copy_from_slice(&i.to_le_bytes());
    k[31] = 0x42;
    StaticSecret::from_bytes(k)
}

fn overlay_ip(i: u32) -> IpAddr {
    // 10.64.0.0/10: member i at 10.64.0.0 + i + 2 (the hub is .1)
    IpAddr::V4(Ipv4Addr::from((10u32 << 24 | 64 << 16) + i + 2))
}

fn underlay(i: u32) -> SocketAddr {
    SocketAddr::new(
        IpAddr::V4(Ipv4Addr::from((172u32 << 24 | 16 << 16) + i + 2)),
        51820,
    )
}

/// Network-wide pre-shared key and network id of the memory scenario.
const MEMORY_PSK: [u8; 32] = [3; 32];
const MEMORY_NETWORK: [u8; 16] = [4; 16];

/// Configuration of one node of the memory scenario: a stand-in credential named `name`, a fixed
/// RNG seed, no rate limits, no handshakes started on configuration.
fn memory_node_config(
    key: StaticSecret,
    name: String,
    seed: u8,
    verifier: &Arc<dyn CredentialVerifier>,
) -> NodeConfig {
    let mut cfg = NodeConfig::new(key, MEMORY_PSK, MEMORY_NETWORK, verifier.clone());
    cfg.credential(
        StandInCredential {
            name,
            addresses: vec![],
        }
        .encode(),
    )
    .rng_seed([seed; 32]);
    unlimited(&mut cfg);
    cfg.eager_handshakes = false;
    cfg
}

/// Child process: build a hub Node with `peers` configured peers, establish sessions with the first
/// `sessions` of them, print "rss_base rss_configured rss_sessions established elapsed_ms".
fn memory_case_child(args: &[String]) {
    let peers: u32 = args.first().and_then(|s| s.parse().ok()).unwrap_or(1);
    let sessions: u32 = args
        .get(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
        .min(peers);
    let t_start = Instant::now();
    let hub_key = key_for(u64::MAX);
    let hub_pub = hub_key.public_key();
    let hub_ip = IpAddr::V4(Ipv4Addr::new(10, 64, 0, 1));
    let hub_addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 51820);
    // inputs prepared before the first measurement: keys, verifier
    let keys: Vec<StaticSecret> = (0..peers).map(|i| key_for(u64::from(i))).collect();
    let pubs: Vec<[u8; 32]> = keys.iter().map(StaticSecret::public_key).collect();
    let mut verifier = StaticKeyVerifier::new();
    let ident = |name: String, ip: IpAddr| PeerIdentity {
        name,
        addresses: vec![IpNetwork::new(ip, 32).expect("prefix")],
        groups: vec![],
        not_after: u64::MAX,
        fingerprint: [0; 32],
    };
    verifier.allow(hub_pub, ident("hub".into(), hub_ip));
    for i in 0..sessions {
        verifier.allow(pubs[i as usize], ident(format!("m{i}"), overlay_ip(i)));
    }
    let verifier: Arc<dyn CredentialVerifier> = Arc::new(verifier);
    let unix = Duration::from_secs(1_800_000_000);
    let mut now = Instant::now();

    let rss_base = vm_kb("VmRSS:");
    // at rest: no handshakes started on configuration (the sidecar starts them eagerly; that is
    // handshake state, measured by the sessions case)
    let cfg = memory_node_config(hub_key, "hub".into(), 1, &verifier);
    let mut hub = Node::new(cfg, now, unix).expect("hub node");
    for i in 0..peers {
        let pc = PeerConfig::new(pubs[i as usize])
            .endpoint(underlay(i))
            .allowed_ip(IpNetwork::new(overlay_ip(i), 32).expect("prefix"));
        hub.add_peer(pc, now).expect("add peer");
    }
    let rss_conf = vm_kb("VmRSS:");

    let (mut buf, mut out) = (vec![0u8; 2048], vec![0u8; 2048]);
    let mut established = 0u32;
    let deadline = Instant::now() + Duration::from_secs(60);
    for i in 0..sessions {
        if Instant::now() > deadline {
            break;
        }
        now += Duration::from_millis(1);
        let cfg = memory_node_config(keys[i as usize].clone(), format!("m{i}"), 2, &verifier);
        let mut spoke = Node::new(cfg, now, unix).expect("spoke node");
        let to_hub = spoke
            .add_peer(
                PeerConfig::new(hub_pub)
                    .endpoint(hub_addr)
                    .allowed_ip(IpNetwork::new(hub_ip, 32).expect("prefix")),
                now,
            )
            .expect("spoke peer");
        spoke.initiate_handshake(to_hub, now);
        for _ in 0..3 {
            shuttle(&mut spoke, underlay(i), &mut hub, now, &mut buf, &mut out);
            shuttle(&mut hub, hub_addr, &mut spoke, now, &mut buf, &mut out);
        }
        let on_hub = hub.peer_by_key(&pubs[i as usize]).expect("hub peer");
        if hub.is_established(on_hub) {
            established += 1;
        }
        drop(spoke);
    }
    let rss_sess = vm_kb("VmRSS:");
    std::hint::black_box(&hub);
    println!(
        "{rss_base} {rss_conf} {rss_sess} {established} {}",
        t_start.elapsed().as_millis()
    );
}

fn scenario_memory() -> Vec<Row> {
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("memory: cannot find own executable: {e}");
            return Vec::new();
        }
    };
    let mut rows = Vec::new();
    for (peers, sessions) in [
        (1u32, 0u32),
        (1_000, 0),
        (10_000, 0),
        (1_000, 1_000),
        (1, 1),
    ] {
        let outp = std::process::Command::new(&exe)
            .args(["memory-case", &peers.to_string(), &sessions.to_string()])
            .output();
        let line = match outp {
            Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
            Ok(o) => {
                eprintln!(
                    "memory-case {peers} {sessions} failed: {}",
                    String::from_utf8_lossy(&o.stderr)
                );
                continue;
            }
            Err(e) => {
                eprintln!("memory-case {peers} {sessions}: {e}");
                continue;
            }
        };
        let v: Vec<f64> = line
            .split_whitespace()
            .filter_map(|s| s.parse().ok())
            .collect();
        if v.len() < 5 {
            eprintln!("memory-case {peers} {sessions}: unexpected output {line:?}");
            continue;
        }
        let (base, conf, sess, est, ms) = (v[0], v[1], v[2], v[3], v[4]);
        let mut figures = vec![
            ("rss_before_kib", base),
            ("rss_configured_kib", conf),
            ("growth_configured_kib", conf - base),
            (
                "bytes_per_configured_peer",
                (conf - base) * 1024.0 / f64::from(peers),
            ),
        ];
        let case = if sessions > 0 {
            figures.push(("rss_with_sessions_kib", sess));
            figures.push(("growth_sessions_kib", sess - conf));
            figures.push(("bytes_per_session", (sess - conf) * 1024.0 / est.max(1.0)));
            figures.push(("sessions_established", est));
            format!("{peers} peers, {sessions} sessions")
        } else {
            format!("{peers} configured peers")
        };
        figures.push(("case_ms", ms));
        rows.push(Row {
            scenario: "memory",
            case,
            figures,
            note: "fresh process per case; VmRSS growth (page granularity: tiny cases read as 0 or 4 KiB steps)".into(),
        });
    }
    rows
}
