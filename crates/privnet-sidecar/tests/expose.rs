//! `[[expose]]` in the member configuration: a valid entry loads with its block-lists parsed and
//! its targets resolved; every malformed value is a problem at its key, a bad list line a problem
//! at the list's file and line; then an exposure started from the loaded settings forwards to a
//! local backend and refuses a block-listed source, and a changed list file is followed. Every
//! wait is bounded.
// A test: it reads the real clock or opens sockets (see clippy.toml).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]
#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use privnet_sidecar::config::{self, ExposeProtocol};
use support::{load, now, Net};

#[test]
fn a_valid_exposure_loads_with_its_lists_and_targets() {
    let net = Net::new("exn");
    let a = net.member("a", 1);
    let b = net.member("b", 2);
    let c = net.member("c", 3);
    std::fs::write(
        net.dir().join("drop.txt"),
        "; Spamhaus DROP\n203.0.113.0/24 ; SBL1\n2001:db8:bad::/48 ; SBL2\n",
    )
    .unwrap();
    std::fs::write(
        net.dir().join("level1.netset"),
        "# firehol\n198.18.0.0/15\n192.0.2.66\n",
    )
    .unwrap();
    let path = net.config(
        &a,
        &[&b, &c],
        "",
        "[[expose]]\nname = \"web\"\nlisten = \"0.0.0.0:8443\"\nprotocol = \"both\"\n\
         to = [\"b:8080\", \"10.77.0.3:8080\"]\nproxy_protocol = \"v2\"\n\
         allow = [\"0.0.0.0/0\", \"::/0\"]\nblock_lists = [\"drop.txt\", \"level1.netset\"]\n\
         connections_per_second = 20\nbytes_per_second = 1000000\nbytes_burst = 2000000\n\
         max_connections_per_source = 16\nmax_connections = 1024\nudp_idle_secs = 30\n\n\
         [[expose]]\nlisten = \"0.0.0.0:5432\"\nto = \"b:5432\"\n",
    );
    let cfg = load(&path);
    let e = &cfg.networks[0].exposures;
    assert_eq!(e.len(), 2);
    assert_eq!(e[0].name, "web");
    assert_eq!(e[0].protocol, ExposeProtocol::Both);
    let t: Vec<SocketAddr> = vec![
        "10.77.0.2:8080".parse().unwrap(),
        "10.77.0.3:8080".parse().unwrap(),
    ];
    assert_eq!(e[0].targets, t);
    assert!(e[0].proxy_v2);
    assert_eq!(e[0].block_lists.len(), 2);
    assert_eq!(e[0].block_lists[0].set.entries(), 2);
    assert!(e[0].block_lists[1]
        .set
        .contains("198.19.1.1".parse().unwrap()));
    let r = e[0].connection_rate.unwrap();
    assert_eq!((r.per_second, r.burst), (20, 20));
    let r = e[0].byte_rate.unwrap();
    assert_eq!((r.per_second, r.burst), (1_000_000, 2_000_000));
    assert_eq!(
        (e[0].max_per_source, e[0].max_total),
        (Some(16), Some(1024))
    );
    assert_eq!(e[0].udp_idle, Duration::from_secs(30));
    assert!(e[0]
        .describe()
        .contains("tcp+udp 0.0.0.0:8443 -> b:8080, 10.77.0.3:8080 (PROXY v2)"));
    // Defaults.
    assert_eq!(e[1].name, "expose[1]");
    assert_eq!(e[1].protocol, ExposeProtocol::Tcp);
    assert!(!e[1].proxy_v2 && e[1].allow.is_none() && e[1].connection_rate.is_none());
}

#[test]
fn malformed_exposures_name_the_key_and_a_bad_list_its_file_and_line() {
    let net = Net::new("exn");
    let a = net.member("a", 1);
    let b = net.member("b", 2);
    std::fs::write(
        net.dir().join("bad.netset"),
        "# ok\n10.0.0.0/8\n10.0.0.0/33\n",
    )
    .unwrap();
    let path = net.config(
        &a,
        &[&b],
        "",
        "[[expose]]\nname = \"x\"\nlisten = \"0.0.0.0:0\"\nto = [\"nobody:80\", \"192.0.2.1:80\", \"b:0\", \"b\"]\n\
         allow = [\"10.0.0.0/40\"]\nblock_lists = [\"bad.netset\", \"missing.netset\"]\n\
         connections_per_second = 0\nbytes_burst = 10\nmax_connections = 0\nudp_idle_secs = 0\n\
         proxy_protocol = \"v1\"\n\n\
         [[expose]]\nname = \"x\"\nlisten = \"127.0.0.1:9000\"\nto = []\nsurplus = 1\n\n\
         [[expose]]\nlisten = \"127.0.0.1:9000\"\nto = \"b:1\"\n",
    );
    let problems = config::load(std::slice::from_ref(&path), now()).unwrap_err();
    let shown: Vec<String> = problems.iter().map(ToString::to_string).collect();
    let has = |key: &str, needle: &str| {
        assert!(
            problems
                .iter()
                .any(|p| p.key == key && p.expected.contains(needle)),
            "no problem at {key} saying {needle:?}: {shown:#?}"
        );
    };
    // proxy_protocol "v1" is a schema problem, so expose[0] is checked without it.
    has("expose[0].proxy_protocol", "v2");
    has("expose[1].surplus", "");
    has("expose[1].to", "at least one target");
    has("expose[1].name", "taken");
    has("expose[2].listen", "not exposed by another");
    // The list's own problem names its file and line.
    let list = problems
        .iter()
        .find(|p| p.file.ends_with("bad.netset"))
        .unwrap_or_else(|| panic!("{shown:#?}"));
    assert_eq!(list.line, Some(3));
    assert!(
        list.expected.contains("prefix length from 0 to 32"),
        "{}",
        list.expected
    );
    assert!(list.to_string().contains("bad.netset:3: "), "{list}");
    assert!(
        problems.iter().any(|p| p.key == "expose[0].block_lists[1]"),
        "{shown:#?}"
    );

    // Without the schema problems, the value checks of expose[0].
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("proxy_protocol = \"v1\"\n", "")
        .replace("surplus = 1\n", "");
    std::fs::write(&path, text).unwrap();
    let problems = config::load(&[path], now()).unwrap_err();
    let shown: Vec<String> = problems.iter().map(ToString::to_string).collect();
    let has = |key: &str, needle: &str| {
        assert!(
            problems
                .iter()
                .any(|p| p.key == key && p.expected.contains(needle)),
            "no problem at {key} saying {needle:?}: {shown:#?}"
        );
    };
    has("expose[0].listen", "a port between 1 and 65535");
    has("expose[0].to[0]", "no peer is called \"nobody\"");
    has("expose[0].to[1]", "member of the network");
    has("expose[0].to[2]", "a port between 1 and 65535");
    has("expose[0].to[3]", "\"name:port\"");
    has("expose[0].allow[0]", "prefix length from 0 to 32");
    has("expose[0].connections_per_second", "at least 1");
    has("expose[0].bytes_burst", "bytes_per_second as well");
    has("expose[0].max_connections", "at least 1");
    has("expose[0].udp_idle_secs", "1 to 3600");
}

#[tokio::test]
async fn an_exposure_from_the_configuration_forwards_and_follows_its_list() {
    use privnet_core::io::expose::Dialer;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let net = Net::new("exn");
    let a = net.member("a", 1);
    let b = net.member("b", 2);
    let list = net.dir().join("block.netset");
    std::fs::write(&list, "# nothing yet\n").unwrap();
    let port = support::free_port();
    let path = net.config(
        &a,
        &[&b],
        "",
        &format!("[[expose]]\nname = \"echo\"\nlisten = \"127.0.0.1:{port}\"\nto = \"b:7\"\nblock_lists = [\"block.netset\"]\n"),
    );
    let mut cfg = load(&path);
    let mut settings = cfg.networks.remove(0).exposures;
    // The target: a local echo standing in for b's service (the kernel would route 10.77.0.2).
    let backend = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    settings[0].targets = vec![backend.local_addr().unwrap()];
    tokio::spawn(async move {
        while let Ok((mut s, _)) = backend.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    let mut exposures =
        privnet_sidecar::exposures::Exposures::start("exn", &settings, &Dialer::Kernel, None)
            .await
            .unwrap();
    let through = |from: &'static str| async move {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind(format!("{from}:0").parse().unwrap()).unwrap();
        let mut s = sock
            .connect(SocketAddr::from(([127, 0, 0, 1], port)))
            .await
            .unwrap();
        let _ = s.write_all(b"hi").await;
        let mut b = [0u8; 2];
        matches!(
            tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut b)).await,
            Ok(Ok(_))
        )
    };
    assert!(through("127.0.0.5").await);
    // The list file changes: the poll reads it once it has settled (two polls), then 127.0.0.5
    // is refused and 127.0.0.6 still gets through.
    std::fs::write(&list, "127.0.0.5\n").unwrap();
    for _ in 0..3 {
        exposures.poll("exn").await;
    }
    assert!(!through("127.0.0.5").await);
    assert!(through("127.0.0.6").await);
    // A broken version is refused; the running list stays and the status says why.
    std::fs::write(&list, "127.0.0.5\nnot an address\n").unwrap();
    for _ in 0..3 {
        exposures.poll("exn").await;
    }
    assert!(!through("127.0.0.5").await);
    let shown = exposures.shown();
    let shown = shown.lock().unwrap();
    assert_eq!(shown[0].refused.len(), 1, "{:?}", shown[0].refused);
    assert!(
        shown[0].refused[0].contains("block.netset:2"),
        "{:?}",
        shown[0].refused
    );
    let snap = shown[0].view.snapshot();
    assert_eq!(snap.block_lists[0].1, 1);
    assert!(snap
        .refused
        .iter()
        .any(|(r, n)| r == "block_listed" && *n == 2));
}
