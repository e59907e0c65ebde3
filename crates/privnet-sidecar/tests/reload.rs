//! `privnet up` at run time, with drivers on in-memory inner sides over UDP on 127.0.0.1 (issue 13
//! items 3, 5, 12, 2): a SIGHUP reload applies what can change live (peers added, removed and
//! changed without touching the others' sessions; PSKs) and reports the keys that need a restart;
//! a broken reload keeps the running configuration; a network whose driver dies fails health and
//! ends `privnet up` with an error; PSKs accepted during a rotation and peer endpoints are
//! validated.
// A test: it reads the real clock or opens sockets (see clippy.toml).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]
#![allow(clippy::unwrap_used)]

mod support;

use std::os::unix::fs::PermissionsExt as _;
use std::time::Duration;

use privnet_sidecar::config;
use privnet_sidecar::metrics::render_status;
use privnet_sidecar::status::{check_health, query_status};
use privnet_sidecar::up::{self, Supervisor};
use support::*;

/// A supervisor running `path`'s network on a channel.
async fn start(path: &std::path::Path) -> (Supervisor, privnet_core::io::ChannelEnd) {
    let cfg = load(path);
    let mut sup = Supervisor::new(cfg.metrics, cfg.status, cfg.log, None);
    let (inner, app) = channel("m");
    let mut nets = cfg.networks;
    sup.start_channel(nets.remove(0), inner).await.unwrap();
    (sup, app)
}

fn peer_names(s: &privnet_core::io::NetworkSnapshot) -> Vec<String> {
    let mut n: Vec<String> = s.peers.iter().map(|p| p.name.clone()).collect();
    n.sort();
    n
}

#[tokio::test]
async fn reload_adds_and_removes_peers_without_touching_others_and_reports_restart_keys() {
    tokio::time::timeout(Duration::from_secs(90), async {
        let net = Net::new("relnet");
        let (a, b, c, d) = (
            net.member("a", 2),
            net.member("b", 3),
            net.member("c", 4),
            net.member("d", 5),
        );
        let path_a = net.config(&a, &[&b, &c], "", "");
        let (mut sup_a, mut app_a) = start(&path_a).await;
        let (sup_b, mut app_b) = start(&net.config(&b, &[&a], "", "")).await;
        let (sup_c, mut app_c) = start(&net.config(&c, &[&a], "", "")).await;
        // D knows A but not where it is: it waits until A (after its reload) reaches it.
        let d_conf = {
            let p = net.config(&d, &[&a], "", "");
            let t = std::fs::read_to_string(&p)
                .unwrap()
                .replace(&format!("endpoint = \"127.0.0.1:{}\"\n", a.port), "");
            std::fs::write(&p, t).unwrap();
            p
        };
        let (sup_d, mut app_d) = start(&d_conf).await;
        ping(&mut app_b, &mut app_a, &b, &a, "b -> a").await;
        ping(&mut app_c, &mut app_a, &c, &a, "c -> a").await;
        let handle_a = sup_a.handles()[0].clone();
        let before = snapshot_where(&handle_a, "a with b and c up", |s| {
            s.peers.len() == 2 && s.peers.iter().all(|p| p.established)
        })
        .await;
        let b_handshakes = before
            .peers
            .iter()
            .find(|p| p.name == "b")
            .unwrap()
            .handshakes;

        // A's file now: c removed, d added, a new listen port, and a PSK accepted for a rotation.
        net.write_psk("network.next.psk", [0x77; 32]);
        // (The same key and certificate files: only the port differs.)
        let moved = Member {
            name: a.name.clone(),
            keys: privnet_core::identity::NoiseKeyPair::from_random([2; 32]),
            addr: a.addr,
            port: free_port(),
        };
        net.config(
            &moved,
            &[&b, &d],
            "network_psk_accept = [\"network.next.psk\"]\n",
            "",
        );
        let report = sup_a.reload(std::slice::from_ref(&path_a)).await.unwrap();
        assert_eq!(
            report.restart_needed.get("relnet").map(Vec::as_slice),
            Some(&["node.listen".to_owned()][..]),
            "{report:?}"
        );
        let applied = report.applied.get("relnet").unwrap().join("; ");
        for want in [
            "peer c removed",
            "peer d added",
            "network PSKs (1 sent with, 1 more accepted)",
        ] {
            assert!(applied.contains(want), "{want}: {applied}");
        }
        assert!(report.refused.is_empty(), "{report:?}");
        // The status document says so too.
        let status = sup_a.snapshots().collect();
        assert_eq!(status[0].restart_needed, ["node.listen"]);
        assert!(status[0].running);

        // D comes up (A reaches it), C is gone, B's session was not touched.
        ping(&mut app_a, &mut app_d, &a, &d, "a -> d").await;
        let after = snapshot_where(&handle_a, "a with b and d", |s| {
            peer_names(s) == ["b", "d"] && s.peers.iter().all(|p| p.established)
        })
        .await;
        let b_after = after.peers.iter().find(|p| p.name == "b").unwrap();
        assert_eq!(
            b_after.handshakes, b_handshakes,
            "b's session was restarted"
        );
        // Still on the old port (a restart would move it): b reaches a where it was.
        ping(&mut app_b, &mut app_a, &b, &a, "b -> a after the reload").await;
        assert_eq!(after.listen, format!("127.0.0.1:{}", a.port));

        // A broken file: refused with its file, key and line; the running configuration stays.
        std::fs::write(
            &path_a,
            std::fs::read_to_string(&path_a)
                .unwrap()
                .replace("[tun]\n", "[tun]\nmtuu = 1400\n"),
        )
        .unwrap();
        let problems = sup_a
            .reload(std::slice::from_ref(&path_a))
            .await
            .unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].key, "tun.mtuu");
        assert!(problems[0].line.is_some() && problems[0].file == path_a);
        assert_eq!(
            sup_a.snapshots().collect()[0].restart_needed,
            ["node.listen"]
        );
        ping(
            &mut app_a,
            &mut app_d,
            &a,
            &d,
            "a -> d after the broken reload",
        )
        .await;
        assert_eq!(peer_names(&handle_a.snapshot()), ["b", "d"]);

        // C's packets are no longer accepted by A.
        let stray = udp4(c.addr, a.addr, b"c after its removal");
        app_c.send(&stray).await.unwrap();
        assert!(
            tokio::time::timeout(Duration::from_secs(2), async {
                loop {
                    if app_a.recv().await.as_ref() == Some(&stray) {
                        break;
                    }
                }
            })
            .await
            .is_err(),
            "a removed peer's packet was delivered"
        );
        for sup in [sup_a, sup_b, sup_c, sup_d] {
            sup.shutdown().await;
        }
    })
    .await
    .expect("the test did not finish within its time limit");
}

#[tokio::test]
async fn a_dead_network_fails_health_and_ends_privnet_up() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let net = Net::new("deadnet");
        let (a, b) = (net.member("a", 2), net.member("b", 3));

        // The status document and the metrics of a network whose driver died.
        let (sup, app) = start(&net.config(&a, &[&b], "", "")).await;
        let status = serde_json::to_value(sup.snapshots().collect()).unwrap();
        check_health(status.as_array().unwrap(), false).unwrap();
        // The application end goes away: the driver's inner side fails and its task ends.
        drop(app);
        let handle = sup.handles()[0].clone();
        tokio::time::timeout(STEP, async {
            while handle.is_running() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .unwrap();
        let nets = sup.snapshots().collect();
        assert!(!nets[0].running);
        let doc = serde_json::to_value(&nets).unwrap();
        assert_eq!(doc[0]["running"], false);
        let err = check_health(doc.as_array().unwrap(), false).unwrap_err();
        assert!(err.to_string().contains("deadnet"), "{err}");
        assert!(render_status(&nets).contains("privnet_up{network=\"deadnet\"} 0"));
        sup.shutdown().await;

        // `privnet up` (its run loop) notices and ends with an error instead of running on.
        let socket = net.dir().join("run").join("status.sock");
        let path = net.config(
            &a,
            &[&b],
            "",
            &format!("[status]\nsocket = \"{}\"\n", socket.display()),
        );
        let (sup, app) = start(&path).await;
        let run = tokio::spawn(up::run(sup, vec![path.clone()]));
        let healthy = tokio::task::spawn_blocking({
            let socket = socket.clone();
            move || {
                for _ in 0..100 {
                    if let Ok(v) = query_status(&socket) {
                        return check_health(&v, false).is_ok();
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                false
            }
        })
        .await
        .unwrap();
        assert!(healthy, "privnet up never answered healthy");
        drop(app);
        let ended = tokio::time::timeout(STEP, run).await.unwrap().unwrap();
        let err = ended.unwrap_err();
        assert!(
            format!("{err:#}").contains("network \"deadnet\" stopped unexpectedly"),
            "{err:#}"
        );
        assert!(!socket.exists(), "the status socket was left behind");
    })
    .await
    .expect("the test did not finish within its time limit");
}

#[test]
fn accepted_psks_and_peer_endpoints_are_validated() {
    let net = Net::new("valnet");
    let (a, b) = (net.member("a", 2), net.member("b", 3));
    net.write_psk("next.psk", [0x99; 32]);
    std::fs::write(net.dir().join("short.psk"), "c2hvcnQ=\n").unwrap();
    std::fs::set_permissions(
        net.dir().join("short.psk"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let ok = net.config(
        &a,
        &[&b],
        "network_psk_accept = [\"next.psk\", \"network.psk\"]\n",
        "",
    );
    let cfg = load(&ok);
    // The primary listed again is dropped; the other one is kept.
    assert_eq!(cfg.networks[0].identity.accepted_psks.len(), 1);
    assert_eq!(*cfg.networks[0].identity.accepted_psks[0], [0x99; 32]);
    let (node_cfg, _) = up::node_config(&cfg.networks[0]);
    assert_eq!(node_cfg.accepted_psks, [[0x99; 32]]);

    std::fs::set_permissions(
        net.dir().join("next.psk"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    // B's endpoint inside the overlay (its own overlay address) and inside a CA route.
    let text = std::fs::read_to_string(net.config(
        &a,
        &[&b],
        "network_psk_accept = [\"next.psk\", \"short.psk\", \"missing.psk\"]\n",
        "",
    ))
    .unwrap()
    .replace(
        &format!("endpoint = \"127.0.0.1:{}\"", b.port),
        "endpoint = \"10.77.0.3:51820\"",
    );
    let text = format!(
        "{text}[[peer]]\nname = \"gw\"\npublic_key = \"{}\"\naddresses = [\"10.77.0.9\"]\nendpoint = \"[::ffff:10.88.1.1]:51820\"\n",
        net.member("gw", 9).public_b64()
    );
    let bad = net.dir().join("bad.toml");
    std::fs::write(&bad, &text).unwrap();
    let problems = config::load(std::slice::from_ref(&bad), now()).unwrap_err();
    let got: Vec<(&str, Option<usize>, &str)> = problems
        .iter()
        .map(|p| (p.key.as_str(), p.line, p.expected.as_str()))
        .collect();
    let line_of = |needle: &str| text.lines().position(|l| l.contains(needle)).map(|i| i + 1);
    let psk_line = line_of("network_psk_accept");
    assert_eq!(got.len(), 5, "{got:#?}");
    assert_eq!(got[0].0, "node.network_psk_accept[0]");
    assert!(got[0].2.contains("chmod 600"), "{got:?}");
    assert_eq!(got[1].0, "node.network_psk_accept[1]");
    assert!(got[1].2.contains("base64 of 32 bytes"), "{got:?}");
    assert_eq!(got[2].0, "node.network_psk_accept[2]");
    assert!(got[2].2.contains("does not exist"), "{got:?}");
    for g in &got[..3] {
        assert_eq!(g.1, psk_line, "{got:?}");
    }
    assert_eq!(got[3].0, "peer[0].endpoint");
    assert_eq!(got[3].1, line_of("10.77.0.3:51820"));
    assert!(
        got[3].2.contains("10.77.0.3 lies inside 10.77.0.0/16"),
        "{got:?}"
    );
    assert_eq!(got[4].0, "peer[1].endpoint");
    assert!(
        got[4].2.contains("10.88.1.1 lies inside 10.88.0.0/16"),
        "{got:?}"
    );
}
