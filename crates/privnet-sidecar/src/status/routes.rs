//! The route table lines of `privnet status`: each routing entry of the policy (`[[route]]`)
//! with its prefix, the gateways it lists, the candidates with their health, the active gateway
//! and the entry that chose it, and its failovers.

use std::fmt::Write as _;

/// The routing lines of one network (nothing when its policy has no entry for this member).
pub(super) fn format_routes(o: &mut String, n: &serde_json::Value) {
    let Some(routes) = n.get("gateway_routes").and_then(|r| r.as_array()) else {
        return;
    };
    for r in routes {
        let s = |k: &str| r.get(k).and_then(|v| v.as_str()).unwrap_or("-").to_owned();
        let candidates: Vec<String> = r
            .get("candidates")
            .and_then(|c| c.as_array())
            .into_iter()
            .flatten()
            .map(|c| {
                let name = c.get("name").and_then(|v| v.as_str()).unwrap_or("?");
                let health = c.get("health").and_then(|v| v.as_str()).unwrap_or("?");
                match c.get("for_secs").and_then(serde_json::Value::as_u64) {
                    Some(secs) => format!("{name} {health} {secs} s"),
                    None => format!("{name} {health}"),
                }
            })
            .collect();
        let via: Vec<&str> = r
            .get("via")
            .and_then(|v| v.as_array())
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str())
            .collect();
        let active = match r.get("active").and_then(|v| v.as_str()) {
            Some(a) => format!("via {a}"),
            None => "no listed gateway holds the route (the router's owner serves it)".to_owned(),
        };
        let _ =
            writeln!(
            o,
            "  route {} {} (policy entry {}, via {}): candidates {}; failovers {}, fail-backs {}",
            s("prefix"),
            active,
            s("id"),
            if via.is_empty() { "-".to_owned() } else { via.join(" > ") },
            if candidates.is_empty() { "none".to_owned() } else { candidates.join(", ") },
            r.get("failovers").and_then(serde_json::Value::as_u64).unwrap_or(0),
            r.get("failbacks").and_then(serde_json::Value::as_u64).unwrap_or(0),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_route_line_names_prefix_active_gateway_entry_and_health() {
        let n = serde_json::json!({
            "gateway_routes": [{
                "id": "lan", "prefix": "10.9.0.0/24", "via": ["gwa", "gwb"],
                "candidates": [
                    {"name": "gwa", "health": "down", "for_secs": 4},
                    {"name": "gwb", "health": "up", "for_secs": null}
                ],
                "active": "gwb", "failovers": 1, "failbacks": 0
            }, {
                "id": "route/1", "prefix": "0.0.0.0/0", "via": ["exit"], "candidates": [],
                "active": null, "failovers": 0, "failbacks": 0
            }]
        });
        let mut o = String::new();
        format_routes(&mut o, &n);
        assert_eq!(
            o.lines().next().unwrap(),
            "  route 10.9.0.0/24 via gwb (policy entry lan, via gwa > gwb): candidates gwa down 4 s, gwb up; failovers 1, fail-backs 0"
        );
        assert!(o
            .lines()
            .nth(1)
            .unwrap()
            .contains("no listed gateway holds the route"));
    }
}
