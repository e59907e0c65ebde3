//! Checks of `[conntrack]`: the connection tracker's size and per-peer quotas (the timeouts stay
//! Linux's defaults). Without the section, the core's defaults.

use privnet_core::policy::ConntrackConfig;

use super::super::schema::ConntrackSection;
use super::super::spans::Problems;

/// Most flows `conntrack.max_flows` accepts: 16 Mi flows, about 1.3 GB of table at most.
pub const MAX_CONNTRACK_FLOWS: u32 = 1 << 24;
/// Fewest flows `conntrack.max_flows` accepts.
pub const MIN_CONNTRACK_FLOWS: u32 = 1024;
/// Largest new-flow rate or burst per peer accepted.
pub const MAX_NEW_FLOWS: u32 = 10_000_000;

/// Check `[conntrack]` and convert it (the defaults for what is absent or refused; every refusal
/// is reported, so the configuration does not load).
pub(in crate::config) fn conntrack_settings(
    p: &mut Problems<'_>,
    raw: Option<&ConntrackSection>,
) -> ConntrackConfig {
    let mut cfg = ConntrackConfig::default();
    let Some(raw) = raw else {
        return cfg;
    };
    if (MIN_CONNTRACK_FLOWS..=MAX_CONNTRACK_FLOWS).contains(&raw.max_flows) {
        cfg.max_flows = raw.max_flows as usize;
    } else {
        p.report(
            "conntrack.max_flows",
            format!(
                "a number of flows between {MIN_CONNTRACK_FLOWS} and {MAX_CONNTRACK_FLOWS} \
                 (80 bytes each at most); found {}",
                raw.max_flows
            ),
        );
    }
    match raw.max_flows_per_peer {
        // Not given: the default, within the table.
        None => cfg.max_flows_per_peer = cfg.max_flows_per_peer.min(cfg.max_flows),
        Some(n) if n >= 1 && n as usize <= cfg.max_flows => cfg.max_flows_per_peer = n as usize,
        Some(n) => p.report(
            "conntrack.max_flows_per_peer",
            format!(
                "a number of flows between 1 and conntrack.max_flows ({}); found {n}",
                cfg.max_flows
            ),
        ),
    }
    for (key, value, slot) in [
        (
            "conntrack.new_flows_per_sec",
            raw.new_flows_per_sec,
            &mut cfg.new_flows_per_sec,
        ),
        (
            "conntrack.new_flow_burst",
            raw.new_flow_burst,
            &mut cfg.new_flow_burst,
        ),
    ] {
        if (1..=MAX_NEW_FLOWS).contains(&value) {
            *slot = value;
        } else {
            p.report(
                key,
                format!("a number of new flows between 1 and {MAX_NEW_FLOWS}; found {value}"),
            );
        }
    }
    cfg
}
