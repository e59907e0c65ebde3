//! The `privnet` binary end to end: the docs/CONFIG.md walkthrough and its failure modes.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Output};

fn privnet(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_privnet"))
        .current_dir(dir)
        .args(args)
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

fn fails(dir: &Path, args: &[&str]) -> String {
    let out = privnet(dir, args);
    assert_eq!(out.status.code(), Some(1), "privnet {args:?} should fail");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn walkthrough_from_nothing_to_two_members() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let out = ok(
        d,
        &[
            "ca",
            "init",
            "--name",
            "demo",
            "--prefix",
            "10.77.0.0/16",
            "--prefix",
            "fd77::/48",
            "--route",
            "10.88.0.0/16",
            "--out-dir",
            "ca",
        ],
    );
    assert!(out.contains("network:      demo"));
    assert_eq!(mode(&d.join("ca/ca.key")), 0o600);
    assert_eq!(mode(&d.join("ca/network.psk")), 0o600);
    let key_text = fs::read_to_string(d.join("ca/ca.key")).unwrap();
    assert!(
        !out.contains(key_text.lines().nth(1).unwrap()),
        "CA key printed"
    );

    fs::create_dir(d.join("a")).unwrap();
    fs::create_dir(d.join("b")).unwrap();
    let a_pub = ok(d, &["keygen", "--out", "a/private.key"])
        .trim()
        .to_owned();
    let b_pub = ok(d, &["keygen", "--out", "b/private.key"])
        .trim()
        .to_owned();
    assert_eq!(mode(&d.join("a/private.key")), 0o600);
    assert_eq!(
        fs::read_to_string(d.join("a/private.key.pub"))
            .unwrap()
            .trim(),
        a_pub
    );

    ok(
        d,
        &[
            "cert",
            "issue",
            "--ca-dir",
            "ca",
            "--name",
            "member-a",
            "--address",
            "10.77.0.2",
            "--address",
            "fd77::2",
            "--group",
            "web",
            "--public-key",
            "a/private.key.pub",
            "--out",
            "a/member.crt",
        ],
    );
    ok(
        d,
        &[
            "cert",
            "issue",
            "--ca-dir",
            "ca",
            "--name",
            "member-b",
            "--address",
            "10.77.0.3",
            "--route",
            "10.88.1.0/24",
            "--public-key",
            &b_pub,
            "--days",
            "90",
            "--out",
            "b/member.crt",
        ],
    );

    let json: serde_json::Value = serde_json::from_str(&ok(
        d,
        &[
            "cert",
            "show",
            "b/member.crt",
            "--json",
            "--ca",
            "ca/ca.crt",
        ],
    ))
    .unwrap();
    assert_eq!(json["name"], "member-b");
    assert_eq!(json["routes"][0], "10.88.1.0/24");
    assert_eq!(json["public_key"], b_pub.as_str());
    assert_eq!(json["verified"], true);
    let ca_json: serde_json::Value =
        serde_json::from_str(&ok(d, &["cert", "show", "ca/ca.crt", "--json"])).unwrap();
    assert_eq!(ca_json["kind"], "ca");
    assert_eq!(json["ca_fingerprint"], ca_json["fingerprint"]);

    let config = |me: &str, peer: &str, peer_pub: &str, peer_addr: &str| {
        format!(
            "[node]\nnetwork = \"demo\"\nprivate_key = \"private.key\"\ncertificate = \"member.crt\"\n\
             ca_certificates = [\"../ca/ca.crt\"]\nnetwork_psk = \"../ca/network.psk\"\n\n\
             [tun]\nmode = \"userspace\"\n\n[[peer]]\nname = \"{peer}\"\npublic_key = \"{peer_pub}\"\n\
             addresses = [{peer_addr}]\nendpoint = \"{peer}:51820\"\n# {me}\n"
        )
    };
    fs::write(
        d.join("a/a.toml"),
        config("a", "member-b", &b_pub, "\"10.77.0.3\", \"10.88.1.0/24\""),
    )
    .unwrap();
    fs::write(
        d.join("b/b.toml"),
        config("b", "member-a", &a_pub, "\"10.77.0.2\", \"fd77::2\""),
    )
    .unwrap();
    assert!(ok(d, &["check", "--config", "a/a.toml"]).starts_with("ok: a/a.toml"));
    let out = ok(d, &["check", "--config", "b/b.toml"]);
    assert!(
        out.contains("no policy: members of the network talk freely"),
        "{out}"
    );

    // A policy: `check` names it (rules, hash); a broken one is refused by `check` and by `up`
    // with the policy file's line and what was expected, every problem of it.
    let policy = "[[application]]\nid = \"ssh\"\nfrom = \"network\"\nto = \"self\"\n\
                  action = \"allow\"\nproto = \"tcp\"\nports = [22]\n";
    fs::write(d.join("b/policy.toml"), policy).unwrap();
    let with_policy = fs::read_to_string(d.join("b/b.toml"))
        .unwrap()
        .replace("[tun]\n", "policy = \"policy.toml\"\n\n[tun]\n");
    fs::write(d.join("b/b.toml"), &with_policy).unwrap();
    let out = ok(d, &["check", "--config", "b/b.toml"]);
    assert!(
        out.contains("policy b/policy.toml: 1 rules (platform 0, application 1, baseline 0), default deny, hash "),
        "{out}"
    );
    fs::write(
        d.join("b/policy.toml"),
        policy
            .replace("ports = [22]", "ports = [22, \"ssh\"]")
            .replace("\"self\"", "\"me\""),
    )
    .unwrap();
    for cmd in ["check", "up"] {
        let err = fails(d, &[cmd, "--config", "b/b.toml"]);
        assert!(
            err.contains("b/policy.toml:4: application[0].to: (column 6) expected"),
            "{cmd}: {err}"
        );
        assert!(
            err.contains("b/policy.toml:7: application[0].ports: (column 14) expected a port"),
            "{cmd}: {err}"
        );
        assert!(err.contains("2 problem(s)"), "{cmd}: {err}");
    }
    fs::write(d.join("b/policy.toml"), policy).unwrap();

    // Loose permissions and an unknown key: both reported, non-zero exit.
    fs::set_permissions(d.join("a/private.key"), fs::Permissions::from_mode(0o644)).unwrap();
    let mut text = fs::read_to_string(d.join("a/a.toml")).unwrap();
    text = text.replace("[tun]\n", "[tun]\nqueues = 2\n");
    fs::write(d.join("a/a.toml"), text).unwrap();
    let err = fails(d, &["check", "--config", "a/a.toml"]);
    assert!(
        err.contains("a/a.toml:3: node.private_key: a file readable only by its owner"),
        "{err}"
    );
    assert!(err.contains("tun.queues: no such key"), "{err}");
    assert!(err.contains("2 problem(s) found"), "{err}");

    // Issuing refuses a loose CA key, addresses outside the prefixes and routes the CA does not allow.
    fs::set_permissions(d.join("ca/ca.key"), fs::Permissions::from_mode(0o644)).unwrap();
    let err = fails(
        d,
        &[
            "cert",
            "issue",
            "--ca-dir",
            "ca",
            "--name",
            "x",
            "--address",
            "10.77.0.9",
            "--public-key",
            &a_pub,
            "--out",
            "x.crt",
        ],
    );
    assert!(
        err.contains("ca/ca.key: permissions 0644 are too open"),
        "{err}"
    );
    fs::set_permissions(d.join("ca/ca.key"), fs::Permissions::from_mode(0o600)).unwrap();
    let err = fails(
        d,
        &[
            "cert",
            "issue",
            "--ca-dir",
            "ca",
            "--name",
            "x",
            "--address",
            "10.99.0.9",
            "--public-key",
            &a_pub,
            "--out",
            "x.crt",
        ],
    );
    assert!(err.contains("--address 10.99.0.9"), "{err}");
    let err = fails(
        d,
        &[
            "cert",
            "issue",
            "--ca-dir",
            "ca",
            "--name",
            "x",
            "--address",
            "10.77.0.9",
            "--route",
            "10.99.0.0/24",
            "--public-key",
            &a_pub,
            "--out",
            "x.crt",
        ],
    );
    assert!(err.contains("--route 10.99.0.0/24"), "{err}");
    let err = fails(
        d,
        &[
            "cert",
            "issue",
            "--ca-dir",
            "ca",
            "--name",
            "x",
            "--address",
            "10.77.0.9",
            "--public-key",
            "a/private.key",
            "--out",
            "x.crt",
        ],
    );
    assert!(err.contains("this is a private key"), "{err}");

    // Keys are never overwritten by accident.
    let err = fails(d, &["keygen", "--out", "a/private.key"]);
    assert!(err.contains("already exists"), "{err}");
}

#[test]
fn cert_show_rejects_tampered_and_wrong_armour() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    ok(
        d,
        &[
            "ca",
            "init",
            "--name",
            "n",
            "--prefix",
            "10.0.0.0/8",
            "--out-dir",
            "ca",
        ],
    );
    let other = tempfile::tempdir().unwrap();
    ok(
        other.path(),
        &[
            "ca",
            "init",
            "--name",
            "n",
            "--prefix",
            "10.0.0.0/8",
            "--out-dir",
            "ca",
        ],
    );
    let pubkey = ok(d, &["keygen", "--out", "k"]).trim().to_owned();
    ok(
        d,
        &[
            "cert",
            "issue",
            "--ca-dir",
            "ca",
            "--name",
            "m",
            "--address",
            "10.0.0.1",
            "--public-key",
            &pubkey,
            "--out",
            "m.crt",
        ],
    );

    let err = fails(d, &["cert", "show", "ca/ca.key"]);
    assert!(err.contains("PRIVNET CA PRIVATE KEY"), "{err}");
    let err = fails(d, &["cert", "show", "k.pub"]);
    assert!(err.contains("expected a certificate"), "{err}");
    let other_ca = other.path().join("ca/ca.crt");
    let err = fails(
        d,
        &["cert", "show", "m.crt", "--ca", other_ca.to_str().unwrap()],
    );
    assert!(err.contains("verification failed"), "{err}");

    // Flip one base64 character in the body.
    let pem = fs::read_to_string(d.join("m.crt")).unwrap();
    let mut lines: Vec<String> = pem.lines().map(str::to_owned).collect();
    let c = lines[1].remove(10);
    lines[1].insert(10, if c == 'A' { 'B' } else { 'A' });
    fs::write(d.join("bad.crt"), lines.join("\n")).unwrap();
    let out = privnet(d, &["cert", "show", "bad.crt", "--ca", "ca/ca.crt"]);
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!text.contains("panicked"), "{text}");

    // Truncated file.
    fs::write(d.join("cut.crt"), &pem[..pem.len() / 2]).unwrap();
    let err = fails(d, &["cert", "show", "cut.crt"]);
    assert!(err.contains("cut.crt"), "{err}");
}

#[test]
fn ca_rotate_psk_writes_a_new_psk_once_and_prints_the_three_steps() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    ok(
        dir,
        &[
            "ca",
            "init",
            "--name",
            "rot",
            "--prefix",
            "10.77.0.0/16",
            "--out-dir",
            "ca",
        ],
    );
    let out = ok(dir, &["ca", "rotate-psk", "--ca-dir", "ca"]);
    let next = dir.join("ca/network.next.psk");
    assert_eq!(mode(&next), 0o600);
    let new = fs::read_to_string(&next).unwrap();
    let old = fs::read_to_string(dir.join("ca/network.psk")).unwrap();
    assert_ne!(new, old);
    assert_eq!(new.trim().len(), 44, "base64 of 32 bytes: {new:?}");
    for step in [
        "1. Accept the new PSK",
        "2. Send with the new PSK, accept the old",
        "3. Drop the old PSK",
        "network_psk_accept",
        "past ones included",
    ] {
        assert!(out.contains(step), "{step}: {out}");
    }
    // Never over a rotation already started, unless --force.
    let err = fails(dir, &["ca", "rotate-psk", "--ca-dir", "ca"]);
    assert!(
        err.contains("network.next.psk") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(fs::read_to_string(&next).unwrap(), new);
    ok(dir, &["ca", "rotate-psk", "--ca-dir", "ca", "--force"]);
    assert_ne!(fs::read_to_string(&next).unwrap(), new);
    assert_eq!(mode(&next), 0o600);
    // The current PSK is left alone.
    assert_eq!(fs::read_to_string(dir.join("ca/network.psk")).unwrap(), old);
}
