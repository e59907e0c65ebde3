//! `privnet demo`: a live demonstration that needs no root and no configuration. Three members
//! of one network run embedded in this process (the library's userspace stack, no TUN) on real
//! UDP sockets on 127.0.0.1 with a throwaway CA; they carry real TCP and UDP traffic (with a
//! progress display), a service checks its callers' groups, the network's access policy refuses a
//! flow, a member of another network is refused at the handshake, and a status table of every
//! member ends it.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context as _};
use privnet_core::crypto::StaticSecret;
use privnet_core::identity::{
    CaCertificate, CaKey, CaParams, CertVerifier, MemberCertificate, MemberParams, NetworkId,
    NoiseKeyPair, TrustStore,
};
use privnet_core::io::embedded::{EmbeddedNode, LocalNetwork, NetError};
use privnet_core::io::{random_seed, DriverConfig, NetworkSnapshot};
use privnet_core::{CredentialVerifier, NodeConfig, PeerConfig};
use ring::digest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `privnet demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Seconds of bulk TCP traffic (1-60).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=60))]
    pub secs: u64,
    /// Print progress as plain lines instead of redrawing one line.
    #[arg(long)]
    pub plain: bool,
}

/// Run the demonstration.
///
/// # Errors
/// A member that does not start (no free port on 127.0.0.1, no tokio runtime).
pub fn demo(a: &DemoArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    rt.block_on(run(a))
}

fn say(s: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{s}");
}

async fn run(a: &DemoArgs) -> anyhow::Result<()> {
    say("privnet demo: a private network of three members, all in this process.");
    say("Each member is a real privnet node (Noise handshakes, encrypted sessions, certificates)");
    say("with its own userspace TCP/IP stack on a real UDP socket on 127.0.0.1: no root, no TUN,");
    say("no configuration. The CA and the certificates are made now and die with the demo.");
    say(
        "Every member enforces the same access policy (docs/POLICY.md): anything is allowed except",
    );
    say("one rule, \"jobs-not-to-db\": group jobs may not open TCP connections to db's port 5432.\n");
    let policy = privnet_core::policy::parse_policy(POLICY, "demo policy")
        .and_then(|spec| privnet_core::policy::compile(&spec, "demo policy"))
        .map_err(|e| anyhow!("the demo's policy: {e}"))?;
    let net = LocalNetwork::builder("demo")
        .member("db", &["servers"])
        .member("web", &["frontend"])
        .member("batch", &["jobs"])
        .policy(Arc::new(policy))
        .start()
        .await
        .context("starting the members")?;
    // The members start their handshakes at once; the policy matches peers by their verified
    // certificates, which a peer has only once its handshake is done.
    sessions_up(&net).await;
    let mut t = Table::new(&[
        "member",
        "overlay address",
        "UDP socket",
        "groups (certificate)",
    ]);
    for (name, node) in net.nodes() {
        let groups = net
            .certificate(name)
            .map(|c| c.groups().join(", "))
            .unwrap_or_default();
        t.row(vec![
            name.to_owned(),
            addr_of(node),
            node.local_addr().to_string(),
            groups,
        ]);
    }
    say(&t.render());
    let (db, web, batch) = (
        net.node("db").ok_or_else(|| anyhow!("no member db"))?,
        net.node("web").ok_or_else(|| anyhow!("no member web"))?,
        net.node("batch")
            .ok_or_else(|| anyhow!("no member batch"))?,
    );

    // 1. Bulk TCP, web -> db, verified end to end.
    say(&format!("1. TCP: web streams to db:9000 for {} s", a.secs));
    let (mbps, bytes, verified) = bulk(web, db, a).await?;
    say(&format!(
        "   {} in {} s, {:.2} Gbit/s; SHA-256 of what db read {} what web wrote\n",
        human_bytes(bytes),
        a.secs,
        mbps / 1000.0,
        if verified { "equals" } else { "DIFFERS FROM" }
    ));

    // 2. UDP, batch -> db echo.
    say("2. UDP: batch sends 2,000 datagrams to db:5353, db echoes each one");
    let (answered, rtt) = udp_echo(batch, db).await?;
    say(&format!(
        "   {answered} of 2000 answered, round trip avg {rtt:.0} µs\n"
    ));

    // 3. A service that checks its caller's group (from the verified certificate).
    say("3. db runs a service on port 8200 for group \"frontend\" only; web and batch call it");
    for who in [web, batch] {
        let answer = group_call(db, who).await?;
        say(&format!("   {}: {answer}", member_of(who)));
    }
    say("");

    // 4. The access policy.
    say("4. db serves its database port 5432; web and batch connect to it");
    let listener = db.tcp_listen(5432)?;
    for who in [web, batch] {
        let t0 = Instant::now();
        let line = match who.tcp_connect("db:5432").await {
            Ok(_) => "connected (no rule refuses it)".to_owned(),
            Err(NetError::Refused) => format!(
                "refused by the access policy after {:.1} ms: rule jobs-not-to-db (reject) answered its SYN with a reset",
                t0.elapsed().as_secs_f64() * 1000.0
            ),
            Err(e) => format!("failed: {e}"),
        };
        say(&format!("   {}: {line}", member_of(who)));
    }
    drop(listener);
    say("   The policy is enforced by the node, on the sender's side before encryption and again");
    say("   by the receiver (policy_rejected below); `deny` instead of `reject` would drop silently.\n");

    // 5. A member of another network.
    say("5. \"intruder\", a member of another network (its own CA and pre-shared key), knows db's");
    say("   public key and address and tries to connect to db:9000");
    let (outcome, intruder) = intruder(&net).await?;
    say(&format!("   {outcome}"));
    say("   db refused its handshake before any Diffie-Hellman work: the handshake does not carry");
    say("   this network's key (mac1), so db never answers and counts it (bad_mac1 below).\n");

    // Status: wait for fresh snapshots (published once a second).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    say("Status of the network (what `privnet status` shows for a sidecar):");
    let mut t = Table::new(&[
        "member",
        "peers up",
        "handshakes",
        "sent",
        "received",
        "dropped (reason: count)",
    ]);
    for (name, node) in net.nodes() {
        let s = node.snapshot();
        t.row(vec![
            name.to_owned(),
            format!(
                "{}/{}",
                s.peers.iter().filter(|p| p.established).count(),
                s.peers.len()
            ),
            s.handshakes_completed.to_string(),
            format!("{} ({} pkts)", human_bytes(s.tx_bytes), s.tx_packets),
            format!("{} ({} pkts)", human_bytes(s.rx_bytes), s.rx_packets),
            drops(&s),
        ]);
    }
    say(&t.render());
    say(&format!(
        "TCP throughput web -> db: {:.2} Gbit/s on one stream (one thread runs all three members).\n",
        mbps / 1000.0
    ));
    say("Peers of db:");
    let mut t = Table::new(&["peer", "state", "last handshake", "sent", "received"]);
    for p in &db.snapshot().peers {
        t.row(vec![
            p.name.clone(),
            p.state.clone(),
            p.last_handshake_secs_ago
                .map_or_else(|| "never".to_owned(), |s| format!("{s} s ago")),
            human_bytes(p.tx_bytes),
            human_bytes(p.rx_bytes),
        ]);
    }
    say(&t.render());
    drop(intruder);
    net.shutdown().await;

    say("How to go on, with real sidecars (docs/CONFIG.md has the walkthrough):");
    say("  privnet ca init --name NET --prefix 10.77.0.0/16 --out-dir ca       # the network's CA and PSK");
    say("  privnet keygen --out member-a/private.key                           # per member");
    say("  privnet cert issue --ca-dir ca --name member-a --address 10.77.0.2 \\");
    say("      --group servers --public-key member-a/private.key.pub --out member-a/member.crt");
    say("  privnet check --config member-a/member-a.toml                       # every problem at once");
    say("  privnet up --config member-a/member-a.toml                          # TUN mode: CAP_NET_ADMIN");
    say("Without root or capabilities, set [tun] mode = \"userspace\" and use [userspace] forwards,");
    say("published services and the SOCKS5 proxy; in a Rust service, embed a member directly with");
    say(
        "privnet_core::io::embedded::EmbeddedNode (cargo run --example echo | http | group_check).",
    );
    Ok(())
}

fn addr_of(node: &EmbeddedNode) -> String {
    node.addresses()
        .first()
        .map(|a| a.ip().to_string())
        .unwrap_or_default()
}

fn member_of(node: &EmbeddedNode) -> String {
    node.snapshot().member.clone()
}

/// A progress line (redrawn in place unless `plain`).
fn progress(plain: bool, line: &str) {
    let mut out = std::io::stdout().lock();
    if plain {
        let _ = writeln!(out, "   {line}");
    } else {
        let _ = write!(out, "\r   {line:<70}");
        let _ = out.flush();
    }
}

async fn bulk(
    from: &EmbeddedNode,
    to: &EmbeddedNode,
    a: &DemoArgs,
) -> anyhow::Result<(f64, u64, bool)> {
    let listener = to.tcp_listen(9000)?;
    let received = Arc::new(AtomicU64::new(0));
    let r = received.clone();
    let reader = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await?;
        let mut ctx = digest::Context::new(&digest::SHA256);
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = s.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            ctx.update(&buf[..n]);
            r.fetch_add(n as u64, Ordering::Relaxed);
        }
        Ok::<_, std::io::Error>(ctx.finish())
    });
    let mut stream = from.tcp_connect("db:9000").await?;
    let mut ctx = digest::Context::new(&digest::SHA256);
    let mut block = vec![0u8; 64 * 1024];
    let budget = Duration::from_secs(a.secs);
    let start = Instant::now();
    let mut next = start + Duration::from_millis(250);
    let mut i = 0u64;
    while start.elapsed() < budget {
        // Content that changes with every block, so that the checksum means something.
        block[..8].copy_from_slice(&i.to_le_bytes());
        ctx.update(&block);
        stream.write_all(&block).await?;
        i += 1;
        if Instant::now() >= next {
            next += Duration::from_millis(250);
            let got = received.load(Ordering::Relaxed);
            let secs = start.elapsed().as_secs_f64();
            let frac = (secs / budget.as_secs_f64()).min(1.0);
            let bar: String = (0..30)
                .map(|k| if f64::from(k) < frac * 30.0 { '#' } else { '.' })
                .collect();
            progress(
                a.plain,
                &format!(
                    "[{bar}] {:>9}  {:.2} Gbit/s",
                    human_bytes(got),
                    got as f64 * 8.0 / secs / 1e9
                ),
            );
        }
    }
    stream.shutdown().await?;
    let want = ctx.finish();
    let got_digest = tokio::time::timeout(Duration::from_secs(30), reader)
        .await
        .context("the reader did not finish")?
        .context("the reader failed")??;
    let secs = start.elapsed().as_secs_f64();
    let bytes = received.load(Ordering::Relaxed);
    if !a.plain {
        say("");
    }
    Ok((
        bytes as f64 * 8.0 / secs / 1e6,
        bytes,
        got_digest.as_ref() == want.as_ref(),
    ))
}

async fn udp_echo(from: &EmbeddedNode, to: &EmbeddedNode) -> anyhow::Result<(u32, f64)> {
    let server = to.udp_bind(5353)?;
    let echo = tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        while let Ok((n, peer)) = server.recv_from(&mut buf).await {
            if server.send_to(&buf[..n], peer).await.is_err() {
                break;
            }
        }
    });
    let client = from.udp_bind(0)?;
    let mut answered = 0;
    let mut total = Duration::ZERO;
    let mut buf = vec![0u8; 2048];
    for i in 0..2000u32 {
        let msg = format!("datagram {i} from batch");
        let t = Instant::now();
        client.send_to(msg.as_bytes(), "db:5353").await?;
        if let Ok(Ok((n, _))) =
            tokio::time::timeout(Duration::from_secs(1), client.recv_from(&mut buf)).await
        {
            if buf.get(..n) == Some(msg.as_bytes()) {
                answered += 1;
                total += t.elapsed();
            }
        }
    }
    echo.abort();
    let avg = total.as_secs_f64() * 1e6 / f64::from(answered.max(1));
    Ok((answered, avg))
}

async fn group_call(db: &EmbeddedNode, who: &EmbeddedNode) -> anyhow::Result<String> {
    let listener = db.tcp_listen(8200)?;
    let server = tokio::spawn(async move {
        let (mut s, peer) = listener.accept().await?;
        let answer = if peer.groups.iter().any(|g| g == "frontend") {
            format!(
                "welcome, {} (groups: {})",
                peer.name,
                peer.groups.join(", ")
            )
        } else {
            format!(
                "refused by the service: {} is in {} and needs frontend",
                peer.name,
                peer.groups.join(", ")
            )
        };
        s.write_all(answer.as_bytes()).await?;
        s.shutdown().await?;
        Ok::<_, std::io::Error>(())
    });
    let mut s = who.tcp_connect("db:8200").await?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).await?;
    let _ = server.await;
    Ok(answer)
}

/// Start a member of another network (own CA, own PSK) that knows db, and let it try to connect.
async fn intruder(net: &LocalNetwork) -> anyhow::Result<(String, EmbeddedNode)> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let ca_key = CaKey::from_seed(random_seed()?);
    let prefix = "10.99.0.0/16".parse().context("prefix")?;
    let ca = CaCertificate::self_signed(
        &ca_key,
        &CaParams {
            name: "othernet".into(),
            network_id: NetworkId([0x99; 16]),
            prefixes: vec![prefix],
            routes: vec![],
            not_before: now.saturating_sub(60),
            not_after: now + 86_400,
        },
    )?;
    let keys = NoiseKeyPair::from_random(random_seed()?);
    let addr = Ipv4Addr::new(10, 99, 0, 9);
    let cert = MemberCertificate::issue(
        &ca,
        &ca_key,
        &MemberParams {
            name: "intruder".into(),
            addresses: vec![IpAddr::V4(addr)],
            routes: vec![],
            groups: vec!["servers".into()],
            public_key: keys.public(),
            not_before: now.saturating_sub(60),
            not_after: now + 86_400,
        },
    )?;
    let verifier: Arc<dyn CredentialVerifier> =
        Arc::new(CertVerifier::new(TrustStore::new(vec![ca.clone()])?));
    let mut node_cfg = NodeConfig::new(
        StaticSecret::from_bytes(*keys.secret()),
        random_seed()?,
        ca.network_id().0,
        verifier,
    );
    node_cfg.credential(cert.to_bytes());
    let mut cfg = DriverConfig::new("othernet", SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
    cfg.addresses = vec![ipnetwork::IpNetwork::new(IpAddr::V4(addr), 16)?];
    let db = net.node("db").ok_or_else(|| anyhow!("no member db"))?;
    let db_cert = net
        .certificate("db")
        .ok_or_else(|| anyhow!("no db certificate"))?;
    let db_ip = db_cert
        .addresses()
        .first()
        .copied()
        .ok_or_else(|| anyhow!("db has no address"))?;
    let peer = PeerConfig::new(db_cert.public_key())
        .endpoint(db.local_addr())
        .allowed_ip(ipnetwork::IpNetwork::new(db_ip, 32)?);
    let node = EmbeddedNode::builder(node_cfg, cfg)
        .peer(peer)
        .connect_timeout(Duration::from_secs(3))
        .start()
        .await?;
    let outcome = match node.tcp_connect(SocketAddr::new(db_ip, 9000)).await {
        Err(NetError::TimedOut) => {
            "intruder: connect to db:9000 timed out after 3 s: no session, no packet of it reached db's stack".to_owned()
        }
        Err(e) => format!("intruder: connect failed: {e}"),
        Ok(_) => "intruder: CONNECTED (this must not happen)".to_owned(),
    };
    Ok((outcome, node))
}

/// The demo network's access policy: everything but one flow.
const POLICY: &str = r#"
default = "allow"

[[application]]
id = "jobs-not-to-db"
action = "reject"
from = { groups = { any = ["jobs"] } }
to = { groups = { any = ["servers"] } }
proto = "tcp"
ports = [5432]
"#;

/// Wait (at most 10 s) until every member has a session with every other one.
async fn sessions_up(net: &LocalNetwork) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let up = net.nodes().all(|(_, n)| {
            let s = n.snapshot();
            !s.peers.is_empty() && s.peers.iter().all(|p| p.established)
        });
        if up {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn drops(s: &NetworkSnapshot) -> String {
    let mut v: Vec<String> = s
        .drops
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(r, n)| format!("{r}: {n}"))
        .collect();
    for (k, n) in &s.driver {
        if k.starts_with("stack_") && !k.starts_with("stack_tso") && k != "stack_accepted" {
            v.push(format!("{k}: {n}"));
        }
    }
    if v.is_empty() {
        "none".to_owned()
    } else {
        v.sort();
        v.join(", ")
    }
}

fn human_bytes(b: u64) -> String {
    let b = b as f64;
    if b >= 1e9 {
        format!("{:.2} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.1} MB", b / 1e6)
    } else if b >= 1e3 {
        format!("{:.1} kB", b / 1e3)
    } else {
        format!("{b:.0} B")
    }
}

/// A plain text table with aligned columns.
struct Table {
    head: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(head: &[&str]) -> Self {
        Self {
            head: head.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    fn row(&mut self, r: Vec<String>) {
        self.rows.push(r);
    }

    fn render(&self) -> String {
        let cols = self.head.len();
        let width = |i: usize| {
            std::iter::once(&self.head)
                .chain(&self.rows)
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        };
        let widths: Vec<usize> = (0..cols).map(width).collect();
        let mut out = String::new();
        let line = |out: &mut String, r: &[String]| {
            let mut l = String::from("  ");
            for (i, w) in widths.iter().enumerate() {
                let c = r.get(i).map_or("", String::as_str);
                let _ = write!(l, "{c:<w$}  ");
            }
            out.push_str(l.trim_end());
            out.push('\n');
        };
        line(&mut out, &self.head);
        let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
        line(&mut out, &rule);
        for r in &self.rows {
            line(&mut out, r);
        }
        out
    }
}
