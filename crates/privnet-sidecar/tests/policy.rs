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
