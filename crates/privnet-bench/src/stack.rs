//! The `stack` scenario: the embedded userspace TCP/IP stack (`privnet_core::io::embedded`) over
//! real loopback UDP, next to the in-memory channel path (raw IP packets, no TCP) measured the
//! same way in the same run:
//!
//! * TCP throughput of one stream (64 KiB writes, the reader discards), on one thread and on a
//!   two-worker runtime, with the default stack and the tuning variants (`--sweep`);
//! * latency: round trip of a 64-byte request/response over an embedded TCP stream, and of a
//!   64-byte packet through two drivers with channel inner sides;
//! * memory (`stack-memory`, fresh child process): RSS of the process before and with one idle
//!   embedded node, with two, and what 100 open idle streams between them add.
//!
//! Returns rows as (case, figures, note) so that this module needs nothing from `main.rs`.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use ipnetwork::IpNetwork;
use privnet_core::io::embedded::{Congestion, LocalNetwork, StackConfig};
use privnet_core::io::{ChannelEnd, ChannelInner, Driver, DriverConfig};
use privnet_core::offload::{self, GsoType};
use privnet_core::stack::{Stack, StackSetup};
use privnet_core::testing::{ipv4_udp, LinkConfig, TestNetwork};
use privnet_core::PeerConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One result: case, named figures, note.
pub(crate) type Case = (String, Vec<(&'static str, f64)>, String);

/// Largest number of round trips per latency case.
const RTT_MAX: usize = 20_000;

fn runtime(threads: usize) -> Option<tokio::runtime::Runtime> {
    let rt = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    };
    match rt {
        Ok(rt) => Some(rt),
        Err(e) => {
            eprintln!("stack: cannot start a tokio runtime: {e}");
            None
        }
    }
}

/// The scenario: throughput (default stack, and with `sweep` the tuning variants), latency.
pub(crate) fn scenario(secs: f64, sweep: bool) -> Vec<Case> {
    let mut rows = Vec::new();
    let mut variants: Vec<(&str, StackConfig)> = vec![("default", StackConfig::default())];
    if sweep {
        let v = |f: fn(&mut StackConfig)| {
            let mut c = StackConfig::default();
            f(&mut c);
            c
        };
        variants.extend([
            ("congestion none", v(|c| c.congestion = Congestion::None)),
            ("congestion reno", v(|c| c.congestion = Congestion::Reno)),
            (
                "no segmentation offload",
                v(|c| c.segmentation_offload = false),
            ),
            ("Nagle on", v(|c| c.nodelay = false)),
            (
                "buffers 256 KiB",
                v(|c| {
                    c.tcp_rx_buffer = 256 << 10;
                    c.tcp_tx_buffer = 256 << 10;
                }),
            ),
            (
                "buffers 4 MiB",
                v(|c| {
                    c.tcp_rx_buffer = 4 << 20;
                    c.tcp_tx_buffer = 4 << 20;
                }),
            ),
            ("ack delay off", v(|c| c.ack_delay = None)),
            ("max_burst 32", v(|c| c.max_burst = Some(32))),
        ]);
    }
    for threads in [1usize, 2] {
        for (name, cfg) in &variants {
            if threads == 2 && *name != "default" {
                continue;
            }
            if let Some(rt) = runtime(threads) {
                rows.push(rt.block_on(tcp_case(secs, threads, name, cfg.clone(), None)));
            }
        }
    }
    if let Some(rt) = runtime(1) {
        rows.push(rt.block_on(tcp_case(
            secs,
            1,
            "default, 9000-byte underlay MTU",
            StackConfig::default(),
            Some(9000),
        )));
        rows.push(rt.block_on(rtt_stack(secs)));
        rows.push(rt.block_on(rtt_channel(secs)));
    }
    for (loss, jitter_us) in [
        (0.0, 0),
        (0.001, 0),
        (0.01, 0),
        (0.02, 0),
        (0.0, 200),
        (0.0, 2000),
        (0.01, 200),
    ] {
        for cc in [Congestion::Cubic, Congestion::Reno] {
            if cc == Congestion::Reno && jitter_us > 0 {
                continue;
            }
            rows.push(sim_case(loss, Duration::from_micros(jitter_us), cc));
        }
    }
    rows
}

/// One 8 MiB transfer between two sans-IO stacks over the deterministic simulator
/// (`privnet_core::testing::Sim`: 5 ms one way, `jitter` of extra random delay, which reorders,
/// and `loss`): throughput in virtual time. What smoltcp's recovery (no SACK-based retransmission,
/// a one-second minimum RTO, 32 reassembly gaps) costs under loss and reordering.
fn sim_case(loss: f64, jitter: Duration, cc: Congestion) -> Case {
    const TOTAL: usize = 8 << 20;
    let net = TestNetwork::new(2, 97);
    let link = LinkConfig {
        latency: Duration::from_millis(5),
        jitter,
        loss,
        ..LinkConfig::default()
    };
    let mut sim = net.sim(5, link);
    let mut cfg = StackConfig::default();
    cfg.congestion = cc;
    let mk = |i: usize, now| {
        Stack::new(
            cfg.clone(),
            &StackSetup {
                addresses: vec![IpNetwork::new(net.overlay[i], 16).expect("prefix")],
                mtu: 1440,
                seed: 3 + i as u64,
            },
            now,
        )
        .expect("stack")
    };
    let (mut a, mut b) = (mk(0, sim.now), mk(1, sim.now));
    // The peer's verified identity, which the stack needs with a SYN (accept hands it out): known
    // once the session is up, so asked again until it is.
    let identity = |sim: &privnet_core::testing::Sim, i: usize| {
        let id = sim.nodes[i].node.peer_by_key(&net.public(1 - i));
        id.and_then(|id| sim.nodes[i].node.peer_identity(id).cloned())
            .map(std::sync::Arc::new)
    };
    let mut ids: Vec<_> = (0..2).map(|i| identity(&sim, i)).collect();
    if b.tcp_listen(80).is_err() {
        return failed("sim", "listen");
    }
    let Ok(h) = a.tcp_connect(SocketAddr::new(net.overlay[1], 80)) else {
        return failed("sim", "connect");
    };
    let data = vec![0x33u8; 64 * 1024];
    let (mut sent, mut got) = (0usize, 0usize);
    let mut conn = None;
    let mut scratch = vec![0u8; privnet_core::stack::SUPER_PACKET];
    let mut buf = vec![0u8; 256 * 1024];
    let start = sim.now;
    let limit = start + Duration::from_secs(300);
    let mut retransmit_stalls = 0u32;
    let mut last_progress = sim.now;
    while got < TOTAL && sim.now < limit {
        if sent < TOTAL {
            if let Some(s) = a.tcp(h) {
                sent += s
                    .send_slice(&data[..data.len().min(TOTAL - sent)])
                    .unwrap_or(0);
            }
        }
        for (i, st) in [(0usize, &mut a), (1, &mut b)] {
            st.poll(sim.now);
            while let Some(mut out) = st.poll_outbound() {
                let len = out.len;
                let pkt = &mut out.buf[..len];
                let mut segs = Vec::new();
                match out.segment {
                    Some(mss) => {
                        let kind = if pkt[0] >> 4 == 6 {
                            GsoType::TcpV6
                        } else {
                            GsoType::TcpV4
                        };
                        let _ = offload::segment(
                            pkt,
                            kind,
                            usize::from(mss.get()),
                            &mut scratch,
                            |x| {
                                segs.push(x.to_vec());
                            },
                        );
                    }
                    None => {
                        privnet_core::stack::fill_tcp_checksum(pkt);
                        segs.push(pkt.to_vec());
                    }
                }
                st.recycle(out);
                for seg in segs {
                    let _ = sim.send_packet(i, &seg);
                }
            }
        }
        let next = [a.poll_timeout(sim.now), b.poll_timeout(sim.now)]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(sim.now + Duration::from_millis(1))
            .min(sim.now + Duration::from_millis(1))
            .max(sim.now + Duration::from_micros(50));
        sim.run_until(next);
        let now = sim.now;
        for (i, id) in ids.iter_mut().enumerate() {
            if id.is_none() {
                *id = identity(&sim, i);
            }
        }
        for (i, st) in [(0usize, &mut a), (1, &mut b)] {
            for (_, p) in std::mem::take(&mut sim.nodes[i].inbox) {
                st.handle_inbound(&p, ids[i].as_ref(), now);
            }
        }
        if conn.is_none() {
            let waker = std::task::Waker::noop();
            let mut cx = std::task::Context::from_waker(waker);
            if let std::task::Poll::Ready(Some(acc)) = b.poll_accept(80, &mut cx) {
                conn = Some(acc.handle);
            }
        }
        if let Some(c) = conn.and_then(|c| b.tcp(c)) {
            let before = got;
            while c.can_recv() {
                got += c.recv_slice(&mut buf).unwrap_or(0);
            }
            if got > before {
                if now.saturating_duration_since(last_progress) > Duration::from_millis(500) {
                    retransmit_stalls += 1;
                }
                last_progress = now;
            }
        }
    }
    let secs = sim
        .now
        .saturating_duration_since(start)
        .as_secs_f64()
        .max(1e-9);
    (
        format!(
            "sans-IO stack over the simulator, {:?}, loss {:.1}%, jitter {} µs",
            cc,
            loss * 100.0,
            jitter.as_micros()
        ),
        vec![
            ("mbit_s_virtual", got as f64 * 8.0 / secs / 1e6),
            ("virtual_secs", secs),
            ("stalls_over_500ms", f64::from(retransmit_stalls)),
            ("complete", if got >= TOTAL { 1.0 } else { 0.0 }),
        ],
        "8 MiB, 5 ms one way (10 ms RTT, window-limited at ~840 Mbit/s), no bandwidth limit; \
         jitter = uniform extra delay, reorders; virtual time, deterministic"
            .into(),
    )
}

/// One TCP stream for `secs`: client → server, 64 KiB writes.
async fn tcp_case(
    secs: f64,
    threads: usize,
    name: &str,
    cfg: StackConfig,
    mtu: Option<u16>,
) -> Case {
    let mut b = LocalNetwork::builder("bench")
        .member("server", &[])
        .member("client", &[])
        .stack(cfg);
    if let Some(mtu) = mtu {
        b = b.underlay_mtu(mtu);
    }
    let net = match b.start().await {
        Ok(n) => n,
        Err(e) => return failed(name, &e.to_string()),
    };
    let (Some(server), Some(client)) = (net.node("server"), net.node("client")) else {
        return failed(name, "members missing");
    };
    let Ok(listener) = server.tcp_listen(5001) else {
        return failed(name, "listen");
    };
    let reader = tokio::spawn(async move {
        let Ok((mut s, _)) = listener.accept().await else {
            return (0u64, Duration::ZERO);
        };
        let mut buf = vec![0u8; 256 * 1024];
        let mut got = 0u64;
        let mut first: Option<Instant> = None;
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    first.get_or_insert_with(Instant::now);
                    got += n as u64;
                }
            }
        }
        (got, first.map_or(Duration::ZERO, |t| t.elapsed()))
    });
    let t_connect = Instant::now();
    let mut stream = match client.tcp_connect("server:5001").await {
        Ok(s) => s,
        Err(e) => return failed(name, &e.to_string()),
    };
    let connect_ms = t_connect.elapsed().as_secs_f64() * 1e3;
    let chunk = vec![0x5au8; 64 * 1024];
    let budget = Duration::from_secs_f64(secs);
    let t0 = Instant::now();
    let mut sent = 0u64;
    // Bounded by time and by 64 GiB.
    while t0.elapsed() < budget && sent < (64 << 30) {
        if stream.write_all(&chunk).await.is_err() {
            break;
        }
        sent += chunk.len() as u64;
    }
    let _ = stream.shutdown().await;
    let (got, took) = tokio::time::timeout(Duration::from_secs(30), reader)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let s = took.as_secs_f64().max(1e-9);
    let snap = server.snapshot();
    let csnap = client.snapshot();
    let ev = |k: &str| csnap.driver.get(k).copied().unwrap_or(0) as f64;
    let drops: u64 = snap
        .drops
        .iter()
        .chain(csnap.drops.iter())
        .map(|(_, n)| n)
        .sum();
    drop(stream);
    net.shutdown().await;
    (
        format!(
            "embedded stack, TCP 1 stream, {name}, {}",
            if threads <= 1 {
                "1 thread".to_string()
            } else {
                format!("{threads} worker threads")
            }
        ),
        vec![
            ("gbit_s", got as f64 * 8.0 / s / 1e9),
            ("mbyte_s", got as f64 / s / 1e6),
            ("bytes", got as f64),
            ("connect_ms", connect_ms),
            ("tso_segments", ev("stack_tso_segments")),
            ("tso_super_packets", ev("stack_tso_super_packets")),
            ("core_drops", drops as f64),
        ],
        "two embedded nodes (LocalNetwork) on 127.0.0.1, both in this process; 64 KiB writes; \
         rate from the reader's first byte to EOF"
            .into(),
    )
}

fn failed(name: &str, why: &str) -> Case {
    (
        format!("embedded stack, {name}"),
        vec![],
        format!("failed: {why}"),
    )
}

/// Round trips of a 64-byte request/response over an embedded TCP stream.
async fn rtt_stack(secs: f64) -> Case {
    let name = "RTT 64 B request/response";
    let net = match LocalNetwork::builder("rtt")
        .member("server", &[])
        .member("client", &[])
        .start()
        .await
    {
        Ok(n) => n,
        Err(e) => return failed(name, &e.to_string()),
    };
    let (Some(server), Some(client)) = (net.node("server"), net.node("client")) else {
        return failed(name, "members missing");
    };
    let Ok(listener) = server.tcp_listen(7) else {
        return failed(name, "listen");
    };
    tokio::spawn(async move {
        if let Ok((mut s, _)) = listener.accept().await {
            let mut buf = [0u8; 64];
            while s.read_exact(&mut buf).await.is_ok() {
                if s.write_all(&buf).await.is_err() {
                    break;
                }
            }
        }
    });
    let Ok(mut s) = client.tcp_connect("server:7").await else {
        return failed(name, "connect");
    };
    let mut buf = [7u8; 64];
    // Warm-up.
    for _ in 0..100 {
        if s.write_all(&buf).await.is_err() || s.read_exact(&mut buf).await.is_err() {
            return failed(name, "echo");
        }
    }
    let budget = Duration::from_secs_f64(secs);
    let t0 = Instant::now();
    let mut samples = Vec::with_capacity(RTT_MAX);
    while samples.len() < RTT_MAX && t0.elapsed() < budget {
        let t = Instant::now();
        if s.write_all(&buf).await.is_err() || s.read_exact(&mut buf).await.is_err() {
            break;
        }
        samples.push(t.elapsed());
    }
    drop(s);
    net.shutdown().await;
    rtt_row(
        format!("embedded stack, {name}, 1 thread"),
        samples,
        "TcpStream write 64 B, server echoes, read 64 B; Nagle off (default)",
    )
}

/// Round trips of a 64-byte packet through two drivers with channel inner sides (no TCP).
async fn rtt_channel(secs: f64) -> Case {
    let name = "channel path, RTT 64 B packet";
    let net = TestNetwork::new(2, 95);
    let (da, mut a) = channel_driver(&net, 0, 1, None).await;
    let addr_a = da.local_addr();
    let (db, mut b) = channel_driver(&net, 1, 0, Some(addr_a)).await;
    let (ha, hb) = (da.handle(), db.handle());
    let ta = tokio::spawn(da.run());
    let tb = tokio::spawn(db.run());
    let to_a = ipv4_udp(net.overlay[1], net.overlay[0], &[1u8; 36]);
    let to_b = ipv4_udp(net.overlay[0], net.overlay[1], &[2u8; 36]);
    // B echoes every packet back to A.
    let echo = tokio::spawn(async move {
        while let Some(p) = b.recv().await {
            b.recycle(p);
            if b.send(&to_a).await.is_err() {
                break;
            }
        }
    });
    let mut ok = true;
    for _ in 0..100 {
        ok &= a.send(&to_b).await.is_ok();
        ok &= tokio::time::timeout(Duration::from_secs(3), a.recv())
            .await
            .ok()
            .flatten()
            .is_some();
        if !ok {
            break;
        }
    }
    let mut samples = Vec::with_capacity(RTT_MAX);
    let budget = Duration::from_secs_f64(secs);
    let t0 = Instant::now();
    while ok && samples.len() < RTT_MAX && t0.elapsed() < budget {
        let t = Instant::now();
        if a.send(&to_b).await.is_err() {
            break;
        }
        match tokio::time::timeout(Duration::from_secs(3), a.recv()).await {
            Ok(Some(p)) => a.recycle(p),
            _ => break,
        }
        samples.push(t.elapsed());
    }
    let _ = ha.shutdown().await;
    let _ = hb.shutdown().await;
    for t in [ta, tb] {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    echo.abort();
    rtt_row(
        format!("{name}, 1 thread"),
        samples,
        "two privnet_core::io::Driver with ChannelInner on 127.0.0.1: the overlay alone, no TCP",
    )
}

fn rtt_row(case: String, mut samples: Vec<Duration>, note: &str) -> Case {
    if samples.is_empty() {
        return (case, vec![], "failed: no round trip".into());
    }
    samples.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let pick = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
    let avg = samples.iter().map(|d| us(*d)).sum::<f64>() / samples.len() as f64;
    (
        case,
        vec![
            ("rtt_avg_us", avg),
            ("rtt_p50_us", us(pick(0.5))),
            ("rtt_p99_us", us(pick(0.99))),
            ("round_trips", samples.len() as f64),
        ],
        note.into(),
    )
}

async fn channel_driver(
    net: &TestNetwork,
    i: usize,
    peer: usize,
    peer_addr: Option<SocketAddr>,
) -> (Driver<ChannelInner>, ChannelEnd) {
    let cfg = net.config(i, 12);
    let mut dcfg = DriverConfig::new("bench", SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
    dcfg.addresses = vec![IpNetwork::new(net.overlay[i], 32).expect("prefix")];
    let mut node = dcfg.new_node(cfg).expect("node config");
    let mut pc = PeerConfig::new(net.public(peer))
        .allowed_ip(IpNetwork::new(net.overlay[peer], 32).expect("prefix"));
    pc.endpoint = peer_addr;
    node.add_peer(pc, Instant::now()).expect("add peer");
    let (inner, app) = ChannelInner::new(format!("mem{i}"), 256);
    let driver = Driver::new(node, dcfg, None, inner)
        .await
        .expect("driver on 127.0.0.1");
    (driver, app)
}

fn vm_rss_kib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0.0)
}

/// Child process of the memory case (`what`: `one` or `streams`). `one` prints "base one" (VmRSS
/// KiB): the process before any node and with one idle embedded node (a network of one member).
/// `streams` prints "base two streams": before, with a network of two idle members (their session
/// up), and with 100 open idle streams between them (each carried 64 bytes each way). Separate
/// processes, so that memory freed by one case does not serve the next.
pub(crate) fn memory_child(what: &str) {
    let Some(rt) = runtime(1) else {
        return;
    };
    let base = vm_rss_kib();
    if what == "one" {
        let one = rt.block_on(async {
            let net = LocalNetwork::builder("mem1")
                .member("solo", &[])
                .start()
                .await
                .ok()?;
            tokio::time::sleep(Duration::from_millis(1200)).await;
            let rss = vm_rss_kib();
            net.shutdown().await;
            Some(rss)
        });
        if let Some(one) = one {
            println!("{base} {one}");
        }
        return;
    }
    let v = rt.block_on(async {
        let two = LocalNetwork::builder("mem2")
            .member("server", &[])
            .member("client", &[])
            .start()
            .await
            .ok()?;
        let (server, client) = (two.node("server")?, two.node("client")?);
        // Handshake first, so that the sessions are in the "two members" figure.
        let l = server.tcp_listen(9).ok()?;
        let warm = client.tcp_connect("server:9").await.ok()?;
        let (warm_server, _) = l.accept().await.ok()?;
        let _keep = (warm, warm_server);
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let rss_two = vm_rss_kib();
        // 100 streams twice: first while the allocator hands out fresh zeroed pages, then after
        // those buffers were freed (glibc then raises its mmap threshold and zeroes reused heap
        // memory in calloc, so the buffers become resident: the long-running case).
        let mut figures = vec![rss_two];
        for round in 0..2 {
            let mut held = Vec::new();
            for _ in 0..100 {
                let mut c = client.tcp_connect("server:9").await.ok()?;
                let (mut s, _) = l.accept().await.ok()?;
                let mut b = [0u8; 64];
                c.write_all(&[1u8; 64]).await.ok()?;
                s.read_exact(&mut b).await.ok()?;
                s.write_all(&b).await.ok()?;
                c.read_exact(&mut b).await.ok()?;
                held.push((c, s));
            }
            tokio::time::sleep(Duration::from_millis(1200)).await;
            figures.push(vm_rss_kib());
            drop(held);
            if round == 0 {
                // Closed connections are reaped within a second or two.
                tokio::time::sleep(Duration::from_millis(2500)).await;
                figures.push(vm_rss_kib());
            }
        }
        two.shutdown().await;
        Some(figures)
    });
    if let Some(f) = v {
        let f: Vec<String> = f.iter().map(ToString::to_string).collect();
        println!("{base} {}", f.join(" "));
    }
}

fn child(exe: &std::path::Path, what: &str) -> Option<Vec<f64>> {
    match std::process::Command::new(exe)
        .args(["stack-memory", what])
        .output()
    {
        Ok(o) if o.status.success() => Some(
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .filter_map(|s| s.parse().ok())
                .collect(),
        ),
        Ok(o) => {
            eprintln!(
                "stack-memory {what} failed: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            None
        }
        Err(e) => {
            eprintln!("stack-memory {what}: {e}");
            None
        }
    }
}

/// The memory rows, from child processes (`exe stack-memory one|streams`).
pub(crate) fn memory() -> Vec<Case> {
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("stack memory: cannot find own executable: {e}");
            return Vec::new();
        }
    };
    let (Some(one), Some(streams)) = (child(&exe, "one"), child(&exe, "streams")) else {
        return Vec::new();
    };
    let (&[base1, one], &[base2, two, fresh, closed, churned]) = (&one[..], &streams[..]) else {
        eprintln!("stack-memory: unexpected output {one:?} {streams:?}");
        return Vec::new();
    };
    let mib = |k: f64| k / 1024.0;
    vec![(
        "embedded nodes, idle, and 100 open idle streams".into(),
        vec![
            ("rss_process_before_mib", mib(base1)),
            ("rss_one_idle_node_mib", mib(one)),
            ("one_node_adds_mib", mib(one - base1)),
            ("rss_two_idle_nodes_mib", mib(two)),
            ("two_nodes_add_mib", mib(two - base2)),
            ("rss_with_100_streams_mib", mib(fresh)),
            ("per_stream_both_ends_kib", (fresh - two) / 100.0),
            ("rss_after_closing_them_mib", mib(closed)),
            ("rss_with_100_more_mib", mib(churned)),
            ("per_stream_after_churn_kib", (churned - closed) / 100.0),
        ],
        "fresh process per case; VmRSS after 1.2 s idle; a stream = both ends in this process (2 sockets), \
         64 B exchanged each way; default buffers (1 MiB + 1 MiB per socket). First 100 from fresh \
         zero pages (resident only where data passed), then 100 more after the first were closed: \
         glibc's calloc then zeroes reused memory, so buffers become resident (bound: both buffers)"
            .into(),
    )]
}
