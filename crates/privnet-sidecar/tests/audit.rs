//! The audit log of `privnet up` (`[log] audit`): JSON lines for each applied policy and each
//! refused flow, from drivers on in-memory inner sides over UDP on 127.0.0.1 (no root). Its own
//! test binary: it installs the process-wide log subscriber.
// A test: it reads the real clock or opens sockets (see clippy.toml).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use privnet_sidecar::audit::AuditLog;
use privnet_sidecar::up::Supervisor;
use support::*;

const POLICY: &str = r#"
[[platform]]
id = "no-9"
from = "any"
to = "any"
action = "deny"
proto = "udp"
ports = [9]

[[application]]
id = "echo"
from = "network"
to = "network"
action = "allow"
proto = "udp"
ports = [7]
"#;

fn lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Wait until a line satisfies `pred`.
async fn line_where(
    path: &std::path::Path,
    what: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    for _ in 0..150 {
        if let Some(l) = lines(path).into_iter().find(|l| pred(l)) {
            return l;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "{what}: no such line in {}: {:#?}",
        path.display(),
        lines(path)
    );
}

#[tokio::test]
async fn the_audit_log_has_applied_policies_and_refused_flows() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let net = Net::new("audnet");
        let (a, b) = (
            net.member_in("a", 2, &["db"]),
            net.member_in("b", 3, &["web", "prod"]),
        );
        let file = net.dir().join("a-policy.toml");
        std::fs::write(&file, POLICY).unwrap();
        let audit = net.dir().join("audit.jsonl");
        let path_a = net.config(
            &a,
            &[&b],
            "policy = \"a-policy.toml\"\n",
            &format!(
                "[log]\nlevel = \"error\"\naudit = \"{}\"\n",
                audit.display()
            ),
        );
        let cfg = load(&path_a);
        assert_eq!(cfg.log.audit.as_deref(), Some(audit.as_path()));
        // As `privnet up` does; the level (error) does not hold the audit lines back.
        let log = privnet_sidecar::logging::init(&cfg.log, Some(AuditLog::open(&audit).unwrap()));
        assert!(log.is_some());
        let mut sup = Supervisor::new(cfg.metrics, cfg.status, cfg.log, log);
        let (inner, mut app_a) = channel("a");
        sup.start_channel(cfg.networks.into_iter().next().unwrap(), inner)
            .await
            .unwrap();
        let hash = load(&path_a).networks[0].policy.as_ref().unwrap().hash();
        let start = line_where(&audit, "the policy applied at start", |l| {
            l["event"] == "policy_applied" && l["trigger"] == "start"
        })
        .await;
        assert_eq!(start["network"], "audnet");
        assert_eq!(start["hash"], hash.as_str());
        assert_eq!(start["file"], file.to_str().unwrap());
        assert_eq!(start["rules"], 2);

        let (inner_b, mut app_b) = channel("b");
        let cfg_b = load(&net.config(&b, &[&a], "", ""));
        let mut sup_b = Supervisor::new(cfg_b.metrics, cfg_b.status, cfg_b.log, None);
        sup_b
            .start_channel(cfg_b.networks.into_iter().next().unwrap(), inner_b)
            .await
            .unwrap();
        ping(&mut app_b, &mut app_a, &b, &a, "b -> a udp/7").await;
        // Denied by the platform rule at a (the receiver).
        app_b
            .send(&udp4_port(b.addr, a.addr, 9, b"udp/9"))
            .await
            .unwrap();
        let refused =
            line_where(&audit, "the refused flow", |l| l["event"] == "flow_refused").await;
        for (k, v) in [
            ("network", "audnet"),
            ("member", "a"),
            ("peer", "b"),
            ("peer_groups", "web,prod"),
            ("direction", "inbound"),
            ("action", "deny"),
            ("proto", "udp"),
            ("src", "10.77.0.3"),
            ("src_port", "40000"),
            ("dst", "10.77.0.2"),
            ("dst_port", "9"),
            ("rule", "no-9"),
            ("tier", "platform"),
        ] {
            assert_eq!(refused[k], v, "{k}: {refused}");
        }
        assert!(
            refused["time"].as_str().unwrap().ends_with('Z'),
            "{refused}"
        );

        // A reload that cuts the udp/7 flow: its own line, with the flows cut.
        std::fs::write(&file, POLICY.replace("ports = [7]", "ports = [8]")).unwrap();
        sup.reload(std::slice::from_ref(&path_a)).await.unwrap();
        let applied = line_where(&audit, "the reloaded policy", |l| {
            l["event"] == "policy_applied" && l["trigger"] == "reload"
        })
        .await;
        assert_eq!(applied["previous_hash"], hash.as_str());
        assert_ne!(applied["hash"], hash.as_str());
        assert_eq!(applied["flows_cut"], 1);
        for s in [sup, sup_b] {
            s.shutdown().await;
        }
    })
    .await
    .expect("the test did not finish within its time limit");
}
