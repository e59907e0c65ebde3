//! The newcomer's path, extracted from the documents so that they cannot drift: the install line
//! of README.md and docs/CONFIG.md, and every `$ privnet ...` line of the CONFIG.md walkthrough, run
//! as written in a clean temporary directory. The walkthrough's members run on two hosts with TUN
//! devices; here they run side by side on loopback without root: before the `privnet up` lines, the
//! two generated configurations get `[tun] mode = "userspace"`, loopback endpoints and listen ports
//! and their own `[status] socket` (two members of one network on one host). Then the walkthrough's
//! `privnet status` line must show the peer up, on both members. As root (what `scripts/test.sh`
//! requires), the walkthrough also runs as the document describes it: each member in a network
//! namespace of its own with its TUN device, joined by a veth pair; only the endpoints (DNS names
//! there) become the veth addresses and each member gets its own `[status] socket` (one host, one
//! /run). Every wait is bounded; namespaces are removed even on failure.
// A test: it reads the real clock or opens sockets (see clippy.toml).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]
#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn doc(name: &str) -> String {
    fs::read_to_string(repo().join(name)).unwrap()
}

/// The `$ privnet ...` lines of the walkthrough section of CONFIG.md, as argument lists.
fn walkthrough_commands() -> Vec<Vec<String>> {
    let text = doc("docs/CONFIG.md");
    let start = text
        .find("## Walkthrough")
        .expect("docs/CONFIG.md has a walkthrough");
    let section = &text[start..];
    let section = match section[3..].find("\n## ") {
        Some(end) => &section[..end + 3],
        None => section,
    };
    section
        .lines()
        .filter_map(|l| l.strip_prefix("$ privnet "))
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .collect()
}

fn run(dir: &Path, args: &[String]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_privnet"))
        .current_dir(dir)
        .args(args)
        .env_remove("PRIVNET_CONFIG")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "privnet {args:?} failed:\n{text}");
    text
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Sidecar(Child);

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn install_line_is_where_a_newcomer_looks_and_names_the_binary_crate() {
    let line = "cargo install --locked --path crates/privnet-sidecar";
    for name in ["README.md", "docs/CONFIG.md"] {
        let text = doc(name);
        let at = text
            .find(line)
            .unwrap_or_else(|| panic!("{name} lacks `{line}`"));
        // Before any reference material: in the first fifth of the document.
        assert!(
            at < text.len() / 5,
            "{name}: the install line is too far down ({at})"
        );
    }
    let manifest = fs::read_to_string(repo().join("crates/privnet-sidecar/Cargo.toml")).unwrap();
    assert!(
        manifest.contains("[[bin]]\nname = \"privnet\""),
        "{manifest}"
    );
}

/// The walkthrough's commands, checked to be the expected sequence.
fn commands() -> Vec<Vec<String>> {
    let cmds = walkthrough_commands();
    let verbs: Vec<&str> = cmds.iter().map(|c| c[0].as_str()).collect();
    assert_eq!(
        verbs,
        ["ca", "member", "member", "check", "check", "up", "status"],
        "the walkthrough's commands changed; update this test's expectations"
    );
    assert_eq!(cmds[5][1..], ["--config", "member-a/member-a.toml"]);
    cmds
}

/// CA, members and checks: the walkthrough's first five commands, as written.
fn steps_1_to_3(d: &Path, cmds: &[Vec<String>]) {
    for c in &cmds[..5] {
        let out = run(d, c);
        if c[0] == "check" {
            assert!(
                out.starts_with("ok: ") && out.contains("1 peer(s)"),
                "{out}"
            );
        }
    }
}

/// Poll the walkthrough's status command until it shows `peer` up (at most 20 s).
fn until_peer_up(d: &Path, status: &[String], peer: &str) {
    let begin = Instant::now();
    loop {
        let out = Command::new(env!("CARGO_BIN_EXE_privnet"))
            .current_dir(d)
            .args(status)
            .env_remove("PRIVNET_CONFIG")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if text.contains(&format!("peer {peer} ")) && text.contains(" — up,") {
            return;
        }
        assert!(
            begin.elapsed() < Duration::from_secs(20),
            "privnet {status:?} never showed {peer} up:\n{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The walkthrough's command for member-a, made member `member`'s.
fn for_member(args: &[String], member: &str) -> Vec<String> {
    args.iter().map(|a| a.replace("member-a", member)).collect()
}

#[test]
fn the_config_walkthrough_as_written_reaches_two_peers_up() {
    let cmds = commands();
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    steps_1_to_3(d, &cmds);
    // Step 4 on one host (see the module docs).
    let (pa, pb) = (free_udp_port(), free_udp_port());
    let local = |member: &str, port_me: u16, peer: &str, port_peer: u16| {
        let path = d.join(member).join(format!("{member}.toml"));
        let text = fs::read_to_string(&path)
            .unwrap()
            .replace("0.0.0.0:51820", &format!("127.0.0.1:{port_me}"))
            .replace(&format!("{peer}:51820"), &format!("127.0.0.1:{port_peer}"));
        fs::write(
            &path,
            format!("{text}\n[tun]\nmode = \"userspace\"\n\n[status]\nsocket = \"status.sock\"\n"),
        )
        .unwrap();
        run(
            d,
            &[
                "check".into(),
                "--config".into(),
                path.to_str().unwrap().into(),
            ],
        );
    };
    local("member-a", pa, "member-b", pb);
    local("member-b", pb, "member-a", pa);
    let start = |args: &[String]| {
        Sidecar(
            Command::new(env!("CARGO_BIN_EXE_privnet"))
                .current_dir(d)
                .args(args)
                .env_remove("PRIVNET_CONFIG")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    };
    let _a = start(&cmds[5]);
    let _b = start(&for_member(&cmds[5], "member-b"));
    until_peer_up(d, &cmds[6], "member-b");
    until_peer_up(d, &for_member(&cmds[6], "member-b"), "member-a");
}

/// Whether namespaces and TUN devices are available (root, /dev/net/tun); otherwise a skip on
/// stderr, or a failure under `PRIVNET_REQUIRE_PRIVILEGED_TESTS=1` (as `scripts/test.sh` runs).
fn privileged(test: &str) -> bool {
    use std::io::Write as _;
    use std::os::unix::fs::MetadataExt as _;
    let root = fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    let reason = if !root {
        "needs root (network namespaces, /dev/net/tun)"
    } else if !Path::new("/dev/net/tun").exists() {
        "needs /dev/net/tun"
    } else {
        return true;
    };
    if std::env::var("PRIVNET_REQUIRE_PRIVILEGED_TESTS").is_ok_and(|v| v == "1") {
        panic!("{test}: {reason}, and PRIVNET_REQUIRE_PRIVILEGED_TESTS=1 forbids skipping it");
    }
    let _ = writeln!(std::io::stderr(), "skipped: {test}: {reason}");
    false
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two network namespaces joined by a veth pair (192.168.77.1/24, .2/24); removed on drop.
struct Namespaces([String; 2]);

impl Namespaces {
    fn new() -> Self {
        let id = std::process::id();
        let me = Self([format!("pnnew{id}a"), format!("pnnew{id}b")]);
        for n in &me.0 {
            ip(&["netns", "add", n]);
        }
        let [a, b] = &me.0;
        ip(&[
            "link", "add", "veth-a", "netns", a, "type", "veth", "peer", "name", "veth-b", "netns",
            b,
        ]);
        for (n, dev, addr) in [
            (a, "veth-a", "192.168.77.1/24"),
            (b, "veth-b", "192.168.77.2/24"),
        ] {
            ip(&["-n", n, "addr", "add", addr, "dev", dev]);
            ip(&["-n", n, "link", "set", dev, "up"]);
            ip(&["-n", n, "link", "set", "lo", "up"]);
        }
        me
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

#[test]
fn the_config_walkthrough_in_network_namespaces_with_tun_devices() {
    if !privileged("the_config_walkthrough_in_network_namespaces_with_tun_devices") {
        return;
    }
    let cmds = commands();
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    steps_1_to_3(d, &cmds);
    for (member, peer, peer_addr) in [
        ("member-a", "member-b", "192.168.77.2"),
        ("member-b", "member-a", "192.168.77.1"),
    ] {
        let path = d.join(member).join(format!("{member}.toml"));
        let text = fs::read_to_string(&path)
            .unwrap()
            .replace(&format!("{peer}:51820"), &format!("{peer_addr}:51820"));
        fs::write(
            &path,
            format!("{text}\n[status]\nsocket = \"status.sock\"\n"),
        )
        .unwrap();
    }
    let ns = Namespaces::new();
    let mut sidecars = Vec::new();
    for (n, member) in ns.0.iter().zip(["member-a", "member-b"]) {
        let log = fs::File::create(d.join(format!("{member}.log"))).unwrap();
        sidecars.push(Sidecar(
            Command::new("ip")
                .current_dir(d)
                .args(["netns", "exec", n, env!("CARGO_BIN_EXE_privnet")])
                .args(for_member(&cmds[5], member))
                .env_remove("PRIVNET_CONFIG")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        ));
    }
    let logs = || {
        ["member-a", "member-b"]
            .map(|m| fs::read_to_string(d.join(format!("{m}.log"))).unwrap_or_default())
            .join("\n---\n")
    };
    let result = std::panic::catch_unwind(|| {
        until_peer_up(d, &cmds[6], "member-b");
        until_peer_up(d, &for_member(&cmds[6], "member-b"), "member-a");
    });
    drop(sidecars);
    drop(ns);
    assert!(result.is_ok(), "logs:\n{}", logs());
}

#[test]
fn the_example_set_is_generated_and_passes_check() {
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("set");
    let out = Command::new("bash")
        .arg(repo().join("examples/configs/generate.sh"))
        .arg(&out_dir)
        .env("PRIVNET", env!("CARGO_BIN_EXE_privnet"))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "generate.sh failed:\n{text}");
    assert_eq!(
        text.matches("\nok: ").count() + usize::from(text.starts_with("ok: ")),
        2,
        "{text}"
    );
    for f in [
        "ca/ca.crt",
        "member-a/private.key",
        "member-b/member.crt",
        "member-b/member-b.toml",
    ] {
        assert!(out_dir.join(f).is_file(), "{f} missing");
    }
    // The shipped annotated configurations are what was checked, with the real peer key.
    let shipped = doc("examples/configs/member-a.toml");
    let generated = fs::read_to_string(out_dir.join("member-a/member-a.toml")).unwrap();
    let key_b = fs::read_to_string(out_dir.join("member-b/private.key.pub")).unwrap();
    assert!(generated.contains(key_b.trim()));
    assert_eq!(shipped.lines().count(), generated.lines().count());
}

#[test]
fn readme_quotes_the_recorded_image_size() {
    let recorded = doc("docs/samples/image-size.txt");
    let get = |k: &str| {
        recorded
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("docs/samples/image-size.txt lacks {k}="))
            .to_owned()
    };
    let (mb, date) = (get("mb"), get("date"));
    let quoted = format!("**{mb} MB** (measured {date};");
    assert!(
        doc("README.md").contains(&quoted),
        "README.md should say {quoted} (run RECORD_SIZE=1 scripts/build-image.sh sidecar, which writes both)"
    );
}
