//! The access policy in `privnet up` (issue 14), with drivers on in-memory inner sides over UDP on
//! 127.0.0.1 (no TUN, no root): `node.policy` is enforced from the start, at the receiver and at
//! the sender.
// A test: it reads the real clock or opens sockets (see clippy.toml).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use privnet_core::io::{ChannelEnd, NetworkSnapshot};
use privnet_sidecar::up::{self, Supervisor};
use support::*;

/// UDP to port 7 between members; nothing else (default deny).
const ECHO_ONLY: &str = r#"name = "echo only"

[[application]]
id = "echo"
from = "network"
to = "network"
action = "allow"
proto = "udp"
ports = [7]
"#;

/// A supervisor running `path`'s network on a channel.
async fn start(path: &std::path::Path) -> (Supervisor, ChannelEnd) {
    let cfg = load(path);
    let mut sup = Supervisor::new(cfg.metrics, cfg.status, cfg.log, None);
    let (inner, app) = channel("m");
    let mut nets = cfg.networks;
    sup.start_channel(nets.remove(0), inner).await.unwrap();
    (sup, app)
}

fn drops(s: &NetworkSnapshot, reason: &str) -> u64 {
    s.drops
        .iter()
        .find(|(r, _)| r == reason)
        .map_or(0, |(_, n)| *n)
}

/// `packet` sent through `from` does not reach `to` within a second and a half.
async fn not_delivered(from: &mut ChannelEnd, to: &mut ChannelEnd, packet: &[u8], what: &str) {
    from.send(packet).await.unwrap();
    let got = tokio::time::timeout(Duration::from_millis(1500), async {
        loop {
            match to.recv().await {
                Some(p) if p == packet => break,
                Some(_) => {}
                None => std::future::pending::<()>().await,
            }
        }
    })
    .await;
    assert!(got.is_err(), "{what}: delivered");
}

#[tokio::test]
async fn the_configured_policy_is_enforced_from_the_start_on_both_ends() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let net = Net::new("polnet");
        let (a, b) = (
            net.member_in("a", 2, &["db"]),
            net.member_in("b", 3, &["web"]),
        );
        std::fs::write(net.dir().join("a-policy.toml"), ECHO_ONLY).unwrap();
        let path_a = net.config(&a, &[&b], "policy = \"a-policy.toml\"\n", "");
        let cfg = load(&path_a);
        let policy = cfg.networks[0].policy.clone().unwrap();
        assert_eq!(policy.rule_count(), 1);
        let (node_cfg, _) = up::node_config(&cfg.networks[0]);
        assert_eq!(
            node_cfg.policy.as_ref().map(|p| p.hash()),
            Some(policy.compiled.hash()),
            "the node is given the compiled policy"
        );

        let (sup_a, mut app_a) = start(&path_a).await;
        let (sup_b, mut app_b) = start(&net.config(&b, &[&a], "", "")).await;
        // Allowed: b -> a udp/7 (a, the receiver, checks it).
        ping(&mut app_b, &mut app_a, &b, &a, "b -> a udp/7").await;
        // Denied at the receiver: b (no policy) sends udp/9, a drops it.
        let to_9 = udp4_port(b.addr, a.addr, 9, b"b -> a udp/9");
        not_delivered(&mut app_b, &mut app_a, &to_9, "b -> a udp/9").await;
        let handle_a = sup_a.handles()[0].clone();
        snapshot_where(&handle_a, "a counts the inbound deny", |s| {
            drops(s, "policy_denied") >= 1
        })
        .await;
        // Denied at the sender: a's own packet to b udp/9 never leaves a.
        let before = drops(&handle_a.snapshot(), "policy_denied");
        let from_a = udp4_port(a.addr, b.addr, 9, b"a -> b udp/9");
        not_delivered(&mut app_a, &mut app_b, &from_a, "a -> b udp/9").await;
        snapshot_where(&handle_a, "a counts the outbound deny", |s| {
            drops(s, "policy_denied") > before
        })
        .await;
        // b has no policy: nothing refused there.
        assert_eq!(drops(&sup_b.handles()[0].snapshot(), "policy_denied"), 0);
        for sup in [sup_a, sup_b] {
            sup.shutdown().await;
        }
    })
    .await
    .expect("the test did not finish within its time limit");
}

/// `ECHO_ONLY` with port `port` instead of 7 (and another rule id).
fn only(port: u16) -> String {
    ECHO_ONLY
        .replace("ports = [7]", &format!("ports = [{port}]"))
        .replace("id = \"echo\"", &format!("id = \"udp-{port}\""))
}

/// [`ping`] to `port`.
async fn ping_port(
    from: &mut ChannelEnd,
    to: &mut ChannelEnd,
    src: &Member,
    dst: &Member,
    port: u16,
    what: &str,
) {
    let deadline = tokio::time::Instant::now() + STEP;
    let packet = udp4_port(src.addr, dst.addr, port, what.as_bytes());
    loop {
        from.send(&packet).await.unwrap();
        match tokio::time::timeout(Duration::from_millis(500), to.recv()).await {
            Ok(Some(p)) if p == packet => return,
            Ok(Some(_)) | Err(_) => {}
            Ok(None) => panic!("{what}: the driver is gone"),
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not delivered within {STEP:?}"
        );
    }
}

fn handshakes(s: &NetworkSnapshot) -> u64 {
    s.peers.iter().map(|p| p.handshakes).sum()
}

#[tokio::test]
async fn a_policy_reloads_on_sighup_and_on_file_change_cutting_flows_keeping_sessions() {
    tokio::time::timeout(Duration::from_secs(120), async {
        let net = Net::new("relpol");
        let (a, b) = (
            net.member_in("a", 2, &["db"]),
            net.member_in("b", 3, &["web"]),
        );
        let file = net.dir().join("a-policy.toml");
        std::fs::write(&file, ECHO_ONLY).unwrap();
        let path_a = net.config(&a, &[&b], "policy = \"a-policy.toml\"\n", "");
        let paths = std::slice::from_ref(&path_a);
        let (mut sup, mut app_a) = start(&path_a).await;
        let (sup_b, mut app_b) = start(&net.config(&b, &[&a], "", "")).await;
        let handle = sup.handles()[0].clone();
        ping_port(&mut app_b, &mut app_a, &b, &a, 7, "b -> a udp/7").await;
        let sessions = handshakes(
            &*snapshot_where(&handle, "a's session with b", |s| handshakes(s) >= 1).await,
        );

        // SIGHUP with a new policy: udp/8 only. The tracked udp/7 flow is cut; the session stays.
        std::fs::write(&file, only(8)).unwrap();
        let report = sup.reload(paths).await.unwrap();
        let applied = report.applied.get("relpol").unwrap().join("; ");
        assert!(
            applied.contains(&format!("policy {} (1 rules, hash ", file.display()))
                && applied.contains("): 1 flow(s) cut"),
            "{applied}"
        );
        assert!(
            report.restart_needed.is_empty(),
            "node.policy needs no restart: {report:?}"
        );
        let to_7 = udp4_port(b.addr, a.addr, 7, b"b -> a udp/7 after the reload");
        not_delivered(&mut app_b, &mut app_a, &to_7, "udp/7 after the reload").await;
        ping_port(&mut app_b, &mut app_a, &b, &a, 8, "b -> a udp/8").await;
        assert_eq!(
            handshakes(&handle.snapshot()),
            sessions,
            "the session was restarted"
        );
        // Reloading the same policy (a comment more) changes nothing.
        std::fs::write(&file, format!("# the same rules\n{}", only(8))).unwrap();
        let report = sup.reload(paths).await.unwrap();
        assert!(
            !report
                .applied
                .get("relpol")
                .unwrap()
                .join("; ")
                .contains("policy"),
            "{report:?}"
        );

        // A broken policy: the reload is refused with the policy file and line; the running
        // policy stays (udp/8 still passes) and the status says why.
        let broken = only(8).replace("proto = \"udp\"", "proto = \"udpp\"");
        std::fs::write(&file, &broken).unwrap();
        let problems = sup.reload(paths).await.unwrap_err();
        let line = broken.lines().position(|l| l.contains("udpp")).unwrap() + 1;
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(
            (problems[0].file.as_path(), problems[0].line),
            (file.as_path(), Some(line))
        );
        let status = sup.snapshots().collect();
        assert_eq!(
            status[0].policy_file.as_deref(),
            Some(file.to_str().unwrap())
        );
        assert!(
            status[0].policy_refused[0]
                .contains(&format!("a-policy.toml:{line}: application[0].proto")),
            "{:?}",
            status[0].policy_refused
        );
        ping_port(
            &mut app_b,
            &mut app_a,
            &b,
            &a,
            8,
            "udp/8 after the broken reload",
        )
        .await;

        // The file changes on disk (no SIGHUP): applied once it has settled (two polls).
        std::fs::write(&file, ECHO_ONLY).unwrap();
        let first = sup.poll_policies().await;
        assert!(
            first.applied.is_empty() && first.refused.is_empty(),
            "{first:?}"
        );
        let second = sup.poll_policies().await;
        let applied = second.applied.get("relpol").unwrap().join("; ");
        assert!(
            applied.contains("): 1 flow(s) cut"),
            "the udp/8 flow: {applied}"
        );
        assert!(sup.snapshots().collect()[0].policy_refused.is_empty());
        ping_port(
            &mut app_b,
            &mut app_a,
            &b,
            &a,
            7,
            "udp/7 after the file changed",
        )
        .await;
        // Nothing more to do at the next poll.
        let third = sup.poll_policies().await;
        assert!(
            third.applied.is_empty() && third.refused.is_empty(),
            "{third:?}"
        );

        // A broken file on disk: refused with its line, the running policy stays.
        std::fs::write(&file, &broken).unwrap();
        let _ = sup.poll_policies().await;
        let refused = sup.poll_policies().await.refused;
        assert_eq!(refused.len(), 1, "{refused:?}");
        assert!(
            refused[0].contains(&format!("a-policy.toml:{line}:")),
            "{refused:?}"
        );
        assert_eq!(sup.snapshots().collect()[0].policy_refused.len(), 1);
        ping_port(
            &mut app_b,
            &mut app_a,
            &b,
            &a,
            7,
            "udp/7 after the broken file",
        )
        .await;

        // node.policy removed from the configuration: members talk freely (udp/9 passes).
        net.config(&a, &[&b], "", "");
        let report = sup.reload(paths).await.unwrap();
        let applied = report.applied.get("relpol").unwrap().join("; ");
        assert!(applied.contains("policy removed"), "{applied}");
        assert_eq!(sup.snapshots().collect()[0].policy_file, None);
        ping_port(&mut app_b, &mut app_a, &b, &a, 9, "udp/9 without a policy").await;
        assert_eq!(
            handshakes(&handle.snapshot()),
            sessions,
            "the session was restarted"
        );
        for s in [sup, sup_b] {
            s.shutdown().await;
        }
    })
    .await
    .expect("the test did not finish within its time limit");
}

#[tokio::test]
async fn status_and_metrics_show_the_policy_and_privnet_up_follows_its_file() {
    tokio::time::timeout(Duration::from_secs(90), async {
        use privnet_sidecar::metrics::render_status;
        use privnet_sidecar::status::{format_status, query_status};
        let net = Net::new("obspol");
        let (a, b) = (net.member_in("a", 2, &["db"]), net.member_in("b", 3, &["web"]));
        let file = net.dir().join("a-policy.toml");
        std::fs::write(&file, ECHO_ONLY).unwrap();
        let socket = net.dir().join("run").join("status.sock");
        let path_a = net.config(
            &a,
            &[&b],
            "policy = \"a-policy.toml\"\n",
            &format!("[status]\nsocket = \"{}\"\n", socket.display()),
        );
        let (sup, mut app_a) = start(&path_a).await;
        let (sup_b, mut app_b) = start(&net.config(&b, &[&a], "", "")).await;
        let handle = sup.handles()[0].clone();
        ping_port(&mut app_b, &mut app_a, &b, &a, 7, "b -> a udp/7").await;
        let to_9 = udp4_port(b.addr, a.addr, 9, b"udp/9");
        not_delivered(&mut app_b, &mut app_a, &to_9, "b -> a udp/9").await;
        let snap = snapshot_where(&handle, "the policy's counters", |s| {
            s.policy.as_ref().is_some_and(|p| {
                p.rules.first().is_some_and(|r| r.hits >= 1) && p.drops_by_tier.default >= 1
            })
        })
        .await;
        let p = snap.policy.as_ref().unwrap();
        let hash = load(&path_a).networks[0].policy.as_ref().unwrap().hash();
        assert_eq!(p.hash.as_deref(), Some(hash.as_str()));
        assert_eq!((p.rules[0].id.as_str(), p.rules_per_tier), ("echo", [0, 1, 0]));
        assert!(p.totals.allowed >= 1 && p.totals.denied >= 1, "{p:?}");
        assert!(p.conntrack.flows >= 1 && p.conntrack_bytes > 0, "{p:?}");

        let nets = sup.snapshots().collect();
        let doc = serde_json::to_value(&nets).unwrap();
        assert_eq!(doc[0]["policy"]["hash"], hash.as_str());
        assert_eq!(doc[0]["policy_file"], file.to_str().unwrap());
        let text = format_status(doc.as_array().unwrap());
        for want in [
            format!("policy {} (`echo only`), hash {hash}, 1 rules (platform 0, application 1, baseline 0)", file.display()),
            "rule hits: echo (application allow) ".to_owned(),
            "drops by tier: platform 0, application 0, baseline 0, default ".to_owned(),
            "conntrack: ".to_owned(),
        ] {
            assert!(text.contains(&want), "{want}\n{text}");
        }
        let metrics = render_status(&nets);
        for want in [
            format!("privnet_policy_info{{network=\"obspol\",hash=\"{hash}\"}} 1"),
            "privnet_policy_rule_hits_total{network=\"obspol\",rule=\"echo\",tier=\"application\",action=\"allow\"} ".to_owned(),
            "privnet_policy_refused{network=\"obspol\"} 0".to_owned(),
        ] {
            assert!(metrics.contains(&want), "{want}\n{metrics}");
        }

        // `privnet up` (its run loop) answers `privnet policy explain` on its status socket.
        let run = tokio::spawn(up::run(sup, vec![path_a.clone()]));
        let sock = socket.clone();
        let explain = move |from: &str, to: &str| {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_privnet"))
                .args(["policy", "explain", "--socket"])
                .arg(&sock)
                .args(["--from", from, "--to", to])
                .env_remove("PRIVNET_CONFIG")
                .output()
                .unwrap();
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).into_owned()
                    + &String::from_utf8_lossy(&out.stderr),
            )
        };
        let asked = tokio::task::spawn_blocking(move || {
            // The socket is bound once the run loop started.
            for _ in 0..100 {
                if explain("b", "a:7/udp").0 {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            [
                explain("b", "a:7/udp"),
                explain("b", "a:9/udp"),
                explain("a", "b:7/udp"),
                explain("10.77.0.3", "10.77.0.2:7/udp"),
                explain("nobody", "a:7/udp"),
            ]
        })
        .await
        .unwrap();
        let line = ECHO_ONLY.lines().position(|l| l == "[[application]]").unwrap() + 1;
        let (ok, out) = &asked[0];
        assert!(*ok, "{out}");
        for want in [
            "b -> a:7/udp, network obspol, at member a (the responder: its check after authentication), policy ",
            "peer b: session up",
            "tracked flow: udp, no reply yet, expires in ",
            &format!("verdict for a new flow: ALLOW by rule `echo` (tier application, line {line})"),
        ] {
            assert!(out.contains(want), "{want}\n{out}");
        }
        let (ok, out) = &asked[1];
        assert!(*ok, "{out}");
        assert!(out.contains("tracked flow: none"), "{out}");
        assert!(out.contains("verdict for a new flow: DENY by the default"), "{out}");
        let (ok, out) = &asked[2];
        assert!(*ok && out.contains("(the initiator: its check before encryption)"), "{out}");
        assert!(out.contains("ALLOW by rule `echo`"), "{out}");
        assert_eq!(asked[3].1.lines().nth(2), asked[0].1.lines().nth(2), "by address: the same flow");
        let (ok, out) = &asked[4];
        assert!(!*ok && out.contains("`nobody`"), "{out}");

        // `privnet up` (its run loop) applies a changed file by itself within a few seconds.
        std::fs::write(&file, only(8)).unwrap();
        let new_hash = config_hash(&path_a);
        assert_ne!(new_hash, hash);
        let socket2 = socket.clone();
        let seen = tokio::task::spawn_blocking(move || {
            let socket = socket2;
            for _ in 0..200 {
                if let Ok(v) = query_status(&socket) {
                    if v[0]["policy"]["hash"] == new_hash.as_str() {
                        return Some(v);
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            None
        })
        .await
        .unwrap();
        let v = seen.expect("the changed policy file was not applied within 10 s");
        assert_eq!(v[0]["policy"]["rules"][0]["id"], "udp-8");
        run.abort();
        sup_b.shutdown().await;
    })
    .await
    .expect("the test did not finish within its time limit");
}

/// The hash of the policy `path`'s configuration names, as it is on disk now.
fn config_hash(path: &std::path::Path) -> String {
    load(path).networks[0].policy.as_ref().unwrap().hash()
}
