//! The routing families: gateway counters per network and, per routing entry, the active
//! gateway and its failovers (labels are entry ids, prefixes and member names: bounded by the
//! policy, never flows).

use std::fmt::Write as _;

use privnet_core::io::NetworkSnapshot;

use super::label;

pub(super) fn render_routes(o: &mut String, snaps: &[NetworkSnapshot]) {
    let family = |o: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
    family(
        o,
        "privnet_gateway_events_total",
        "counter",
        "Gateway health events: probes sent, gateways declared down, failovers, fail-backs.",
    );
    for s in snaps {
        let g = s.gateways;
        for (k, v) in [
            ("probe", g.probes),
            ("down", g.downs),
            ("failover", g.failovers),
            ("failback", g.failbacks),
        ] {
            let _ = writeln!(
                o,
                "privnet_gateway_events_total{{network=\"{}\",event=\"{k}\"}} {v}",
                label(&s.network)
            );
        }
    }
    family(
        o,
        "privnet_route_failovers_total",
        "counter",
        "Failovers of each routing entry since its policy was installed.",
    );
    for s in snaps {
        for r in &s.gateway_routes {
            let _ = writeln!(
                o,
                "privnet_route_failovers_total{{network=\"{}\",route=\"{}\",prefix=\"{}\"}} {}",
                label(&s.network),
                label(&r.id),
                label(&r.prefix),
                r.failovers
            );
        }
    }
    family(
        o,
        "privnet_route_active_gateway",
        "gauge",
        "1 for the gateway serving each routing entry; no series while none does.",
    );
    for s in snaps {
        for r in &s.gateway_routes {
            if let Some(a) = &r.active {
                let _ = writeln!(
                    o,
                    "privnet_route_active_gateway{{network=\"{}\",route=\"{}\",prefix=\"{}\",gateway=\"{}\"}} 1",
                    label(&s.network),
                    label(&r.id),
                    label(&r.prefix),
                    label(a)
                );
            }
        }
    }
    family(
        o,
        "privnet_mss_clamped_total",
        "counter",
        "TCP SYNs whose MSS option was lowered to fit the overlay MTU.",
    );
    for s in snaps {
        let _ = writeln!(
            o,
            "privnet_mss_clamped_total{{network=\"{}\"}} {}",
            label(&s.network),
            s.mss_clamped
        );
    }
    family(
        o,
        "privnet_priority_packets_total",
        "counter",
        "Data packets of high-priority flows (docs/POLICY.md §19): sent marked, received marked and \
         confirmed by this member's policy, received marked but not high here.",
    );
    for s in snaps {
        for (kind, n) in [
            ("sent", s.priority_sent),
            ("received", s.priority_received),
            ("unconfirmed", s.priority_unconfirmed),
        ] {
            let _ = writeln!(
                o,
                "privnet_priority_packets_total{{network=\"{}\",kind=\"{kind}\"}} {n}",
                label(&s.network),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use privnet_core::io::GatewayRouteSnapshot;

    #[test]
    fn routing_families_render() {
        let mut snap = NetworkSnapshot {
            network: "demo".into(),
            mss_clamped: 4,
            priority_unconfirmed: 2,
            gateway_routes: vec![GatewayRouteSnapshot {
                id: "lan".into(),
                prefix: "10.9.0.0/24".into(),
                active: Some("gwb".into()),
                failovers: 1,
                ..Default::default()
            }],
            ..Default::default()
        };
        snap.gateways.failovers = 1;
        let mut o = String::new();
        render_routes(&mut o, &[snap]);
        for line in [
            "privnet_gateway_events_total{network=\"demo\",event=\"failover\"} 1",
            "privnet_route_failovers_total{network=\"demo\",route=\"lan\",prefix=\"10.9.0.0/24\"} 1",
            "privnet_route_active_gateway{network=\"demo\",route=\"lan\",prefix=\"10.9.0.0/24\",gateway=\"gwb\"} 1",
            "privnet_mss_clamped_total{network=\"demo\"} 4",
            "privnet_priority_packets_total{network=\"demo\",kind=\"unconfirmed\"} 2",
            "privnet_priority_packets_total{network=\"demo\",kind=\"sent\"} 0",
        ] {
            assert!(o.lines().any(|l| l == line), "{line} missing in\n{o}");
        }
    }
}
