//! The newcomer's path, extracted from the documents so that they cannot drift: the install line
//! of README.md and docs/CONFIG.md, and every `$ privnet ...` line of the CONFIG.md walkthrough, run
//! as written in a clean temporary directory. The walkthrough's members run on two hosts with TUN
//! devices; here they run side by side on loopback without root: before the `privnet up` lines, the
//! two generated configurations get `[tun] mode = "userspace"`, loopback endpoints and listen ports
//! and their own `[status] socket` (two members of one network on one host). Then the walkthrough's
//! `privnet status` line must show the peer up, on both members. Every wait is bounded.
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

#[test]
fn the_config_walkthrough_as_written_reaches_two_peers_up() {
    let cmds = walkthrough_commands();
    let verbs: Vec<&str> = cmds.iter().map(|c| c[0].as_str()).collect();
    assert_eq!(
        verbs,
        ["ca", "member", "member", "check", "check", "up", "status"],
        "the walkthrough's commands changed; update this test's expectations"
    );
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    // Steps 1-3 as written.
    for c in &cmds[..5] {
        let out = run(d, c);
        if c[0] == "check" {
            assert!(
                out.starts_with("ok: ") && out.contains("1 peer(s)"),
                "{out}"
            );
        }
    }
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
    let up_a = &cmds[5];
    assert_eq!(up_a[1..], ["--config", "member-a/member-a.toml"]);
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
    let _a = start(up_a);
    let up_b: Vec<String> = up_a
        .iter()
        .map(|a| a.replace("member-a", "member-b"))
        .collect();
    let _b = start(&up_b);
    let status_a = cmds[6].clone();
    let status_b: Vec<String> = status_a
        .iter()
        .map(|a| a.replace("member-a", "member-b"))
        .collect();
    for (status, peer) in [(status_a, "member-b"), (status_b, "member-a")] {
        let begin = Instant::now();
        loop {
            let out = Command::new(env!("CARGO_BIN_EXE_privnet"))
                .current_dir(d)
                .args(&status)
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            if text.contains(&format!("peer {peer} ")) && text.contains(" — up,") {
                break;
            }
            assert!(
                begin.elapsed() < Duration::from_secs(20),
                "privnet {status:?} never showed {peer} up:\n{text}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
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
        "README.md should say {quoted} (run scripts/build-image.sh sidecar, which writes both)"
    );
}
