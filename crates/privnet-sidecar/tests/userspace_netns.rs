//! Interop of the embedded stack with a TUN-mode member, in network namespaces (issue 16): two
//! namespaces `pnu-<pid>-a` and `pnu-<pid>-b` joined by a veth pair (underlay 10.234.0.1 and
//! 10.234.0.2, nothing else). In B a real `privnet up` in TUN mode (member "tun", 10.77.0.2)
//! with kernel sockets behind its TUN: a TCP echo on 7000, a UDP echo on 7001. In A:
//!
//! 1. an embedded node (the library's `EmbeddedNode`, built from a sidecar configuration file
//!    with `up::driver_config` / `up::node_config`, member "emb", 10.77.0.3) connects by name
//!    to `tun:7000` and exchanges 2 MiB (compared byte for byte), sends UDP datagrams to the
//!    echo, and accepts a connection from B's kernel, seeing the caller's verified identity;
//! 2. a real `privnet up` in userspace mode (member "user", 10.77.0.4): its TCP and UDP port
//!    forwards and its SOCKS5 proxy (CONNECT by name, UDP ASSOCIATE) reach B's services.
//!
//! Needs root (reported as skipped otherwise; `PRIVNET_REQUIRE_PRIVILEGED_TESTS=1` makes that a
//! failure). Every wait is bounded; the sidecars, the service threads and the namespaces are
//! removed by guards, also when an assertion fails.
// A test: it reads the real clock or opens sockets (see clippy.toml).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]
#![allow(clippy::unwrap_used)]
#![cfg(target_os = "linux")]

#[path = "../../privnet-core/tests/support/privileged.rs"]
mod privileged;
mod support;

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use privnet_core::io::embedded::EmbeddedNode;
use privnet_core::io::sys::netns;
use privnet_core::io::Identity;
use privnet_core::PeerConfig;
use privnet_sidecar::up;
use support::{Member, Net};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TEST: &str = "userspace_netns";
/// Bound on every step that waits for something.
const STEP: Duration = Duration::from_secs(15);
/// Bound on the work done inside one namespace thread.
const PHASE: Duration = Duration::from_secs(90);
const UNDERLAY_A: Ipv4Addr = Ipv4Addr::new(10, 234, 0, 1);
const UNDERLAY_B: Ipv4Addr = Ipv4Addr::new(10, 234, 0, 2);
const PORT_TUN: u16 = 51820;
const PORT_EMB: u16 = 51821;
const PORT_USER: u16 = 51822;
const TCP_ECHO: u16 = 7000;
const UDP_ECHO: u16 = 7001;
const EMB_LISTEN: u16 = 8000;
const FWD_TCP: u16 = 15432;
const FWD_UDP: u16 = 15353;
const SOCKS: u16 = 11080;
const TUN_DEV: &str = "pnu0";

/// The two namespaces and their veth pair; deleted (with anything left running in them) on drop.
struct Namespaces {
    a: String,
    b: String,
}

impl Namespaces {
    fn create() -> Self {
        let base = format!("pnu-{}", std::process::id());
        let ns = Self {
            a: format!("{base}-a"),
            b: format!("{base}-b"),
        };
        for n in [&ns.a, &ns.b] {
            run("ip", &["netns", "add", n]);
            run("ip", &["-n", n, "link", "set", "lo", "up"]);
        }
        run(
            "ip",
            &[
                "link", "add", "ul0", "netns", &ns.a, "type", "veth", "peer", "name", "ul0",
                "netns", &ns.b,
            ],
        );
        for (n, addr) in [(&ns.a, UNDERLAY_A), (&ns.b, UNDERLAY_B)] {
            run(
                "ip",
                &["-n", n, "addr", "add", &format!("{addr}/24"), "dev", "ul0"],
            );
            run("ip", &["-n", n, "link", "set", "ul0", "up"]);
        }
        ns
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for n in [&self.a, &self.b] {
            if let Ok(out) = Command::new("ip").args(["netns", "pids", n]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    // Only processes inside this test's own namespaces.
                    let _ = Command::new("kill").args(["-KILL", pid]).status();
                }
            }
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A `privnet up` in a namespace, killed on drop; its output goes to `log`.
struct Sidecar {
    child: Child,
    log: PathBuf,
}

impl Sidecar {
    fn start(ns: &str, config: &Path) -> Self {
        let log = config.with_extension("log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                ns,
                env!("CARGO_BIN_EXE_privnet"),
                "up",
                "--config",
            ])
            .arg(config)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        Self { child, log }
    }

    /// Panics (with the sidecar's log) if it has exited.
    fn check_running(&mut self, what: &str) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "{what}: the sidecar exited ({status}); its log:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- {}:\n{}",
                self.log.display(),
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

/// Run `f` on a fresh thread inside namespace `ns` on a current-thread runtime, bounded by
/// [`PHASE`]; panics in `f` are re-raised here.
fn in_ns<F, Fut, T>(ns: &str, f: F) -> T
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T>,
    T: Send + 'static,
{
    let ns = ns.to_owned();
    let thread = std::thread::spawn(move || {
        netns::enter_named(&ns).expect("enter the test namespace");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            tokio::time::timeout(PHASE, f())
                .await
                .expect("the phase finished within its time limit")
        })
    });
    match thread.join() {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

async fn step<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(STEP, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {STEP:?}: {what}"),
    }
}

/// B's kernel services: a TCP echo and a UDP echo on every address (the overlay one included),
/// on their own thread in namespace B until `stop` is sent or dropped.
fn start_services(
    ns: &str,
) -> (
    std::thread::JoinHandle<()>,
    tokio::sync::oneshot::Sender<()>,
) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let ns = ns.to_owned();
    let thread = std::thread::spawn(move || {
        netns::enter_named(&ns).expect("enter namespace B");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::bind(("0.0.0.0", TCP_ECHO))
                .await
                .unwrap();
            let u = tokio::net::UdpSocket::bind(("0.0.0.0", UDP_ECHO))
                .await
                .unwrap();
            ready_tx.send(()).unwrap();
            let tcp = async move {
                while let Ok((mut s, _)) = l.accept().await {
                    tokio::spawn(async move {
                        let (mut r, mut w) = s.split();
                        let _ = tokio::io::copy(&mut r, &mut w).await;
                        let _ = w.shutdown().await;
                    });
                }
            };
            let udp = async move {
                let mut b = vec![0u8; 65_536];
                while let Ok((n, from)) = u.recv_from(&mut b).await {
                    let _ = u.send_to(&b[..n], from).await;
                }
            };
            tokio::select! {
                () = tcp => {}
                () = udp => {}
                _ = stopped => {}
            }
        });
    });
    ready_rx
        .recv_timeout(STEP)
        .expect("B's services are listening");
    (thread, stop)
}

fn peer(m: &Member, endpoint: SocketAddr) -> String {
    format!(
        "[[peer]]\nname = \"{}\"\npublic_key = \"{}\"\naddresses = [\"{}\"]\nendpoint = \"{endpoint}\"\n\n",
        m.name,
        m.public_b64(),
        m.addr
    )
}

fn config(net: &Net, me: &Member, listen: SocketAddr, tun: &str, tail: &str) -> PathBuf {
    let text = format!(
        "[node]\nnetwork = \"{}\"\nprivate_key = \"{n}.key\"\ncertificate = \"{n}.crt\"\n\
         ca_certificates = [\"ca.crt\"]\nnetwork_psk = \"network.psk\"\nlisten = \"{listen}\"\n\n\
         [tun]\n{tun}\n\n[log]\nlevel = \"info\"\n\n{tail}",
        net.ca.name(),
        n = me.name,
    );
    let path = net.dir().join(format!("{}.toml", me.name));
    std::fs::write(&path, text).unwrap();
    path
}

/// A deterministic, non-repeating-looking payload.
fn payload(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

#[test]
fn embedded_node_and_userspace_sidecar_interoperate_with_a_tun_member() {
    if !privileged::privileged(TEST) {
        return;
    }
    let ns = Namespaces::create();
    // The namespaces see each other on the underlay.
    let deadline = Instant::now() + STEP;
    while !Command::new("ip")
        .args(["netns", "exec", &ns.a, "ping", "-n", "-c1", "-W1", "-q"])
        .arg(UNDERLAY_B.to_string())
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        assert!(Instant::now() < deadline, "underlay: A cannot reach B");
        std::thread::sleep(Duration::from_millis(50));
    }

    let net = Net::new("usnet");
    let tun = net.member("tun", 2);
    let emb = net.member("emb", 3);
    let user = net.member("user", 4);
    let ep = |ip: Ipv4Addr, port: u16| SocketAddr::from((ip, port));
    let tun_cfg = config(
        &net,
        &tun,
        ep(UNDERLAY_B, PORT_TUN),
        &format!("mode = \"tun\"\nname = \"{TUN_DEV}\"\nmtu = 1420\nunderlay_mtu = 1500"),
        &(peer(&emb, ep(UNDERLAY_A, PORT_EMB)) + &peer(&user, ep(UNDERLAY_A, PORT_USER))),
    );
    let emb_cfg = config(
        &net,
        &emb,
        ep(UNDERLAY_A, PORT_EMB),
        "mode = \"userspace\"",
        &peer(&tun, ep(UNDERLAY_B, PORT_TUN)),
    );
    let user_cfg = config(
        &net,
        &user,
        ep(UNDERLAY_A, PORT_USER),
        "mode = \"userspace\"",
        &format!(
            "[userspace]\nsocks = \"127.0.0.1:{SOCKS}\"\n\n\
             [[userspace.forward]]\nlisten = \"127.0.0.1:{FWD_TCP}\"\nto = \"tun:{TCP_ECHO}\"\n\n\
             [[userspace.forward]]\nlisten = \"127.0.0.1:{FWD_UDP}\"\nto = \"{}:{UDP_ECHO}\"\nprotocol = \"udp\"\n\n{}",
            tun.addr,
            peer(&tun, ep(UNDERLAY_B, PORT_TUN))
        ),
    );

    // B: services, then the TUN-mode sidecar; wait for its overlay address on the device.
    let (services, stop_services) = start_services(&ns.b);
    let mut tun_side = Sidecar::start(&ns.b, &tun_cfg);
    let deadline = Instant::now() + STEP;
    loop {
        tun_side.check_running("TUN member");
        let out = Command::new("ip")
            .args(["-n", &ns.b, "-4", "addr", "show", "dev", TUN_DEV])
            .output()
            .unwrap();
        if String::from_utf8_lossy(&out.stdout).contains(&format!("{}/", tun.addr)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no {TUN_DEV} with {} in B",
            tun.addr
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // 1. The embedded node in A, from its configuration file.
    let loaded = support::load(&emb_cfg);
    let emb_net = loaded.networks.into_iter().next().unwrap();
    let (tun_addr, tun_pub) = (tun.addr, tun.keys.public());
    let tun_dev_ns = ns.b.clone();
    in_ns(&ns.a, move || async move {
        let dcfg = up::driver_config(&emb_net);
        let (node_cfg, verifier) = up::node_config(&emb_net);
        let node = EmbeddedNode::builder(node_cfg, dcfg)
            .peer(
                PeerConfig::new(tun_pub)
                    .endpoint(ep(UNDERLAY_B, PORT_TUN))
                    .allowed_ip(format!("{tun_addr}/32").parse().unwrap()),
            )
            .identity(Identity {
                verifier,
                certificate: emb_net.identity.certificate.clone(),
            })
            .start()
            .await
            .unwrap();

        // TCP by name to the kernel's echo behind B's TUN, 2 MiB both ways.
        let mut s = step(
            "tcp_connect tun:7000",
            node.tcp_connect(format!("tun:{TCP_ECHO}")),
        )
        .await
        .unwrap();
        assert_eq!(s.peer().name, "tun", "the verified peer");
        let data = payload(2 << 20);
        let (mut r, mut w) = tokio::io::split(&mut s);
        let sent = data.clone();
        let (wr, back) = step("2 MiB echoed", async {
            tokio::join!(
                async move {
                    w.write_all(&sent).await?;
                    w.shutdown().await
                },
                async move {
                    let mut back = Vec::new();
                    r.read_to_end(&mut back).await.map(|_| back)
                }
            )
        })
        .await;
        wr.unwrap();
        assert!(back.unwrap() == data, "the echo differs from what was sent");
        drop(s);

        // UDP to the kernel's echo (retried: a datagram may be lost on a fresh path).
        let u = node.udp_bind(0).unwrap();
        let mut got = 0;
        let mut b = vec![0u8; 2048];
        for i in 0..20u8 {
            let msg = [b"embedded udp ".as_slice(), &[i; 1000]].concat();
            u.send_to(&msg, SocketAddr::from((tun_addr, UDP_ECHO)))
                .await
                .unwrap();
            if let Ok(r) =
                tokio::time::timeout(Duration::from_millis(500), u.recv_from(&mut b)).await
            {
                let (n, from) = r.unwrap();
                assert_eq!(from, SocketAddr::from((tun_addr, UDP_ECHO)));
                assert_eq!(&b[..n], &msg[..], "the UDP echo differs");
                got += 1;
                if got == 10 {
                    break;
                }
            }
        }
        assert_eq!(got, 10, "10 UDP datagrams echoed by the TUN member");

        // B's kernel connects to the embedded node's listener; accept names the caller.
        let l = node.tcp_listen(EMB_LISTEN).unwrap();
        let emb_addr = node.addresses()[0].ip();
        let client = std::thread::spawn(move || {
            netns::enter_named(&tun_dev_ns).expect("enter namespace B");
            let mut c =
                std::net::TcpStream::connect_timeout(&SocketAddr::new(emb_addr, EMB_LISTEN), STEP)
                    .expect("B's kernel connects to the embedded listener");
            c.set_read_timeout(Some(STEP)).unwrap();
            std::io::Write::write_all(&mut c, b"from the kernel").unwrap();
            let mut b = [0u8; 15];
            std::io::Read::read_exact(&mut c, &mut b).unwrap();
            b
        });
        let (mut a, who) = step("accept", l.accept()).await.unwrap();
        assert_eq!(
            who.name, "tun",
            "accept yields the caller's certificate name"
        );
        let mut b = [0u8; 15];
        step("read", a.read_exact(&mut b)).await.unwrap();
        assert_eq!(&b, b"from the kernel");
        a.write_all(&b.to_ascii_uppercase()).await.unwrap();
        a.flush().await.unwrap();
        let echoed = step("client thread", async {
            while !client.is_finished() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            client.join().unwrap()
        })
        .await;
        assert_eq!(&echoed, b"FROM THE KERNEL");
        node.shutdown().await.unwrap();
    });
    tun_side.check_running("TUN member after the embedded node");

    // 2. The userspace-mode sidecar in A: forwards and SOCKS5 to B's services.
    let mut user_side = Sidecar::start(&ns.a, &user_cfg);
    let octets = tun.addr.octets();
    in_ns(&ns.a, move || async move {
        // TCP forward (retried until the sidecar listens), 1 MiB echoed.
        let deadline = tokio::time::Instant::now() + STEP;
        let mut s = loop {
            match tokio::net::TcpStream::connect(("127.0.0.1", FWD_TCP)).await {
                Ok(s) => break s,
                Err(e) => {
                    assert!(tokio::time::Instant::now() < deadline, "forward: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        let data = payload(1 << 20);
        let (mut r, mut w) = s.split();
        let sent = data.clone();
        let (wr, back) = step("1 MiB through the forward", async {
            tokio::join!(
                async move {
                    w.write_all(&sent).await?;
                    w.shutdown().await
                },
                async move {
                    let mut back = Vec::new();
                    r.read_to_end(&mut back).await.map(|_| back)
                }
            )
        })
        .await;
        wr.unwrap();
        assert!(back.unwrap() == data, "the forward's echo differs");

        // UDP forward.
        let c = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut b = [0u8; 256];
        let mut ok = false;
        for _ in 0..20 {
            c.send_to(b"udp via the forward", ("127.0.0.1", FWD_UDP))
                .await
                .unwrap();
            if let Ok(r) =
                tokio::time::timeout(Duration::from_millis(500), c.recv_from(&mut b)).await
            {
                let (n, _) = r.unwrap();
                assert_eq!(&b[..n], b"udp via the forward");
                ok = true;
                break;
            }
        }
        assert!(ok, "no answer through the UDP forward");

        // SOCKS5 CONNECT by member name.
        let mut p = step(
            "socks",
            tokio::net::TcpStream::connect(("127.0.0.1", SOCKS)),
        )
        .await
        .unwrap();
        p.write_all(&[5, 1, 0]).await.unwrap();
        let mut m = [0u8; 2];
        step("socks method", p.read_exact(&mut m)).await.unwrap();
        assert_eq!(m, [5, 0]);
        let mut req = vec![5, 1, 0, 3, 3];
        req.extend_from_slice(b"tun");
        req.extend_from_slice(&TCP_ECHO.to_be_bytes());
        p.write_all(&req).await.unwrap();
        let mut rep = [0u8; 10];
        step("socks reply", p.read_exact(&mut rep)).await.unwrap();
        assert_eq!(rep[1], 0, "CONNECT tun:7000 succeeded: {rep:?}");
        p.write_all(b"socks to the kernel").await.unwrap();
        let mut b = [0u8; 19];
        step("socks echo", p.read_exact(&mut b)).await.unwrap();
        assert_eq!(&b, b"socks to the kernel");
        drop(p);

        // SOCKS5 UDP ASSOCIATE to the UDP echo.
        let mut p = tokio::net::TcpStream::connect(("127.0.0.1", SOCKS))
            .await
            .unwrap();
        p.write_all(&[5, 1, 0]).await.unwrap();
        step("socks method", p.read_exact(&mut m)).await.unwrap();
        p.write_all(&[5, 3, 0, 1, 0, 0, 0, 0, 0, 0]).await.unwrap();
        step("associate reply", p.read_exact(&mut rep))
            .await
            .unwrap();
        assert_eq!(rep[1], 0, "UDP ASSOCIATE: {rep:?}");
        let relay = SocketAddr::from((
            Ipv4Addr::new(rep[4], rep[5], rep[6], rep[7]),
            u16::from_be_bytes([rep[8], rep[9]]),
        ));
        let u = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut d = vec![0, 0, 0, 1];
        d.extend_from_slice(&octets);
        d.extend_from_slice(&UDP_ECHO.to_be_bytes());
        d.extend_from_slice(b"udp via socks");
        let mut b = [0u8; 256];
        let mut ok = false;
        for _ in 0..20 {
            u.send_to(&d, relay).await.unwrap();
            if let Ok(r) =
                tokio::time::timeout(Duration::from_millis(500), u.recv_from(&mut b)).await
            {
                let (n, _) = r.unwrap();
                assert_eq!(&b[4..8], &octets, "from the TUN member");
                assert_eq!(&b[10..n], b"udp via socks");
                ok = true;
                break;
            }
        }
        assert!(ok, "no answer through SOCKS5 UDP ASSOCIATE");
        drop(p);
    });
    user_side.check_running("userspace member");
    tun_side.check_running("TUN member at the end");
    drop(user_side);
    drop(tun_side);
    let _ = stop_services.send(());
    services.join().unwrap();
}
