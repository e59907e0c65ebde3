//! The operator's path without root: every subcommand's help lists only its own flags, the
//! version line, completions and man pages, `privnet member add` writing configurations with the
//! right peer keys, two members (userspace mode, loopback UDP) coming up with the default status
//! socket, and a member with a wrong peer key saying so in its log and its status. Every wait is
//! bounded; sidecars are killed on drop.
// A test: it reads the real clock or opens sockets (see clippy.toml).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use clap::CommandFactory as _;

fn privnet(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_privnet"))
        .current_dir(dir)
        .args(args)
        .env_remove("PRIVNET_CONFIG")
        .output()
        .unwrap()
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = privnet(dir, args);
    assert!(
        out.status.success(),
        "privnet {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The long flags a help text lists.
fn listed_flags(help: &str) -> BTreeSet<String> {
    help.lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with('-'))
        .filter_map(|l| {
            l.split([' ', ',', '='])
                .find(|w| w.starts_with("--"))
                .map(|w| w.trim_end_matches(['<', '>']).to_owned())
        })
        .collect()
}

fn walk(cmd: &clap::Command, path: &mut Vec<String>, seen: &mut usize) {
    let dir = std::env::temp_dir();
    let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
    args.push("--help");
    let help = ok(&dir, &args);
    let mut own: BTreeSet<String> = cmd
        .get_arguments()
        .filter_map(|a| a.get_long().map(|l| format!("--{l}")))
        .collect();
    own.insert("--help".to_owned());
    if path.is_empty() {
        own.insert("--version".to_owned());
    }
    let listed = listed_flags(&help);
    assert_eq!(
        listed, own,
        "privnet {path:?} --help lists other flags:\n{help}"
    );
    for leak in ["(status only)", "Health only", "status only"] {
        assert!(
            !help.contains(leak),
            "privnet {path:?} --help: {leak}\n{help}"
        );
    }
    *seen += 1;
    for sub in cmd.get_subcommands() {
        if sub.get_name() == "help" {
            continue;
        }
        path.push(sub.get_name().to_owned());
        walk(sub, path, seen);
        path.pop();
    }
}

#[test]
fn every_subcommand_help_lists_only_its_own_flags() {
    let mut cmd = privnet_sidecar::cli::Cli::command();
    cmd.build();
    let mut seen = 0;
    walk(&cmd, &mut Vec::new(), &mut seen);
    assert!(seen >= 20, "walked only {seen} commands");
    let dir = std::env::temp_dir();
    let status = ok(&dir, &["status", "--help"]);
    assert!(status.contains("--json") && status.contains("--watch"));
    assert!(!status.contains("--require-peer"), "{status}");
    let health = ok(&dir, &["health", "--help"]);
    assert!(health.contains("--require-peer"));
    assert!(!health.contains("--json"), "{health}");
}

#[test]
fn version_completions_and_man_pages() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let v = ok(d, &["--version"]);
    assert_eq!(
        v,
        format!("privnet {} (protocol v1)\n", env!("CARGO_PKG_VERSION"))
    );
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let c = ok(d, &["completions", shell]);
        assert!(
            c.len() > 1000 && c.contains("privnet") && c.contains("require-peer"),
            "{shell}"
        );
    }
    let bash = ok(d, &["completions", "bash"]);
    assert!(bash.contains("complete -F") && bash.contains("member"));
    let man = ok(d, &["man"]);
    assert!(
        man.starts_with(".ie") || man.contains(".TH privnet"),
        "{}",
        &man[..200.min(man.len())]
    );
    assert!(man.contains("completions") && man.contains("member"));
    ok(d, &["man", "--out-dir", "man1"]);
    for page in [
        "privnet.1",
        "privnet-status.1",
        "privnet-member-add.1",
        "privnet-ca-init.1",
    ] {
        let text = fs::read_to_string(d.join("man1").join(page)).unwrap();
        assert!(text.contains(".TH"), "{page}");
    }
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `privnet up`, killed on drop; its stderr goes to a file.
struct Sidecar {
    child: Child,
    log: PathBuf,
}

impl Sidecar {
    fn start(dir: &Path, config: &Path, log: &str) -> Self {
        let log = dir.join(log);
        let child = Command::new(env!("CARGO_BIN_EXE_privnet"))
            .current_dir(dir)
            .args(["up", "--config"])
            .arg(config)
            .env_remove("PRIVNET_CONFIG")
            .env("PRIVNET_LOG", "info")
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Self { child, log }
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Sidecar {
    /// SIGTERM (so that it removes its status socket), then SIGKILL after 5 s.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Poll `privnet status --config CONFIG` until `pred` holds on its output, at most `limit`.
fn status_until(dir: &Path, config: &Path, limit: Duration, pred: impl Fn(&str) -> bool) -> String {
    let start = Instant::now();
    let mut last = String::new();
    while start.elapsed() < limit {
        let out = privnet(dir, &["status", "--config", config.to_str().unwrap()]);
        last = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if out.status.success() && pred(&last) {
            return last;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("status did not get there within {limit:?}; last:\n{last}");
}

/// A network with a unique name (the default status socket is named after it), members a and b
/// added with `member add` on loopback ports, in userspace mode.
fn network(d: &Path, tag: &str) -> (String, PathBuf, PathBuf) {
    let net = format!("op{tag}{}", std::process::id());
    ok(
        d,
        &[
            "ca",
            "init",
            "--name",
            &net,
            "--prefix",
            "10.79.0.0/16",
            "--out-dir",
            "ca",
        ],
    );
    let (pa, pb) = (free_udp_port(), free_udp_port());
    let out = ok(
        d,
        &[
            "member",
            "add",
            "--ca-dir",
            "ca",
            "--name",
            "a",
            "--address",
            "10.79.0.1",
            "--endpoint",
            &format!("127.0.0.1:{pa}"),
            "--listen",
            &format!("127.0.0.1:{pa}"),
        ],
    );
    assert!(out.contains("(0 peer(s))"), "{out}");
    let out = ok(
        d,
        &[
            "member",
            "add",
            "--ca-dir",
            "ca",
            "--name",
            "b",
            "--address",
            "10.79.0.2",
            "--endpoint",
            &format!("127.0.0.1:{pb}"),
            "--listen",
            &format!("127.0.0.1:{pb}"),
        ],
    );
    assert!(
        out.contains("(1 peer(s))") && out.contains("added b as a peer to"),
        "{out}"
    );
    let (a, b) = (d.join("a/a.toml"), d.join("b/b.toml"));
    let key = |m: &str| fs::read_to_string(d.join(m).join("private.key.pub")).unwrap();
    let (ta, tb) = (
        fs::read_to_string(&a).unwrap(),
        fs::read_to_string(&b).unwrap(),
    );
    assert!(
        ta.contains(key("b").trim()) && !ta.contains(key("a").trim()),
        "{ta}"
    );
    assert!(
        tb.contains(key("a").trim()) && !tb.contains(key("b").trim()),
        "{tb}"
    );
    // Both pass `privnet check` as written.
    for c in [&a, &b] {
        let out = ok(d, &["check", "--config", c.to_str().unwrap()]);
        assert!(
            out.starts_with("ok: ") && out.contains("1 peer(s)"),
            "{out}"
        );
    }
    // Userspace mode (no root); b's status socket is set, as two members of one network on one
    // host must (the default socket is per network).
    let metrics = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    fs::write(
        &a,
        format!("{ta}\n[tun]\nmode = \"userspace\"\n\n[metrics]\nlisten = \"{metrics}\"\n"),
    )
    .unwrap();
    fs::write(
        &b,
        format!("{tb}\n[tun]\nmode = \"userspace\"\n\n[status]\nsocket = \"b.sock\"\n"),
    )
    .unwrap();
    (net, a, b)
}

#[test]
fn member_add_then_two_members_up_with_the_default_status_socket() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let (net, a, b) = network(d, "up");
    let sa = Sidecar::start(d, &a, "a.log");
    let sb = Sidecar::start(d, &b, "b.log");
    let limit = Duration::from_secs(20);
    let up = |s: &str| s.contains(" — up,");
    let st = status_until(d, &a, limit, up);
    assert!(
        st.contains(&format!("network {net}")) && st.contains("peer b"),
        "{st}"
    );
    status_until(d, &b, limit, up);
    // The default socket is where the docs say, and health finds it through the config.
    let sock = privnet_sidecar::status::default_status_socket(&net);
    assert!(
        sa.log().contains(&sock.display().to_string()),
        "{}",
        sa.log()
    );
    let out = ok(
        d,
        &["health", "--config", a.to_str().unwrap(), "--require-peer"],
    );
    assert_eq!(out, "ok\n");
    // --watch redraws with rates.
    let w = ok(
        d,
        &[
            "status",
            "--config",
            a.to_str().unwrap(),
            "--watch",
            "--count",
            "2",
        ],
    );
    assert!(
        w.matches("\x1b[H\x1b[2J").count() == 2 && w.contains("rates: rx "),
        "{w}"
    );
    // The Grafana dashboard uses only metric names this sidecar exports.
    let ta = fs::read_to_string(&a).unwrap();
    let addr = ta
        .rsplit("listen = \"")
        .next()
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let exported = exported_metrics(addr);
    assert!(exported.len() > 15, "{exported:?}");
    let dashboard = fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/grafana/privnet-dashboard.json"),
    )
    .unwrap();
    let json: serde_json::Value = serde_json::from_str(&dashboard).unwrap();
    let mut used = BTreeSet::new();
    for panel in json["panels"].as_array().unwrap() {
        for t in panel["targets"].as_array().unwrap() {
            let expr = t["expr"].as_str().unwrap();
            used.extend(metric_names(expr));
        }
    }
    assert!(used.len() >= 15, "{used:?}");
    let unknown: Vec<_> = used.difference(&exported).collect();
    assert!(
        unknown.is_empty(),
        "the dashboard uses metrics the sidecar does not export: {unknown:?}"
    );
    drop(sb);
    drop(sa);
}

/// `privnet_...` names in a PromQL expression.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = expr;
    while let Some(i) = rest.find("privnet_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    out
}

/// The metric families a live `/metrics` lists (`# TYPE name ...`).
fn exported_metrics(addr: &str) -> BTreeSet<String> {
    use std::io::{Read as _, Write as _};
    let start = Instant::now();
    loop {
        if let Ok(mut s) = std::net::TcpStream::connect(addr) {
            s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .unwrap();
            let mut body = String::new();
            let _ = s.read_to_string(&mut body);
            let names: BTreeSet<String> = body
                .lines()
                .filter_map(|l| l.strip_prefix("# TYPE "))
                .filter_map(|l| l.split(' ').next())
                .map(str::to_owned)
                .collect();
            if !names.is_empty() {
                return names;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no /metrics at {addr}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_wrong_peer_key_is_named_in_the_log_and_the_status_within_20_s() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let (_net, a, b) = network(d, "key");
    // a's entry for b carries another key (a copied doc's key, say).
    let kb = fs::read_to_string(d.join("b/private.key.pub")).unwrap();
    let wrong = ok(d, &["keygen", "--out", "other.key"]);
    let ta = fs::read_to_string(&a)
        .unwrap()
        .replace(kb.trim(), wrong.trim());
    fs::write(&a, ta).unwrap();
    ok(d, &["check", "--config", a.to_str().unwrap()]);
    let start = Instant::now();
    let sa = Sidecar::start(d, &a, "a.log");
    let _sb = Sidecar::start(d, &b, "b.log");
    let st = status_until(d, &a, Duration::from_secs(20), |s| {
        s.contains("NO ANSWER since")
    });
    assert!(
        st.contains("peer b") && st.contains("wrong public key"),
        "{st}"
    );
    let deadline = Duration::from_secs(20);
    loop {
        let log = sa.log();
        if log.contains("WARN") && log.contains("peer=b") && log.contains("no answer to") {
            break;
        }
        assert!(
            start.elapsed() < deadline,
            "no warning naming b within 20 s:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
