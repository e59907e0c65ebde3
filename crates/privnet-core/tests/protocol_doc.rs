//! Keeps `docs/PROTOCOL.md` in step with the code.
//!
//! * The constants table (the markdown table whose header is `| name | value | meaning |`) must list
//!   every `pub const` of `config.rs`, `wire.rs` and `replay.rs`, each with the value the code has.
//!   The set of names is read from the source files themselves, so a constant added to the code
//!   without a row in the document (or without a value check below) fails this test.
//! * The defaults table (header `| field | default | meaning |`) must give the defaults of
//!   `NodeConfig::new`.
//! * The document must quote the Noise protocol name, the prologue prefix and the mac1/cookie labels
//!   exactly as `privnet_core::crypto` defines them.
//!
//! Value syntax in the tables: an integer (`_` and `,` separators allowed), a duration `N s` or
//! `N ms`, or `true`/`false`. A cell may show an expression first and the value last, after `=`
//! (`2^60 = 1152921504606846976`); only the part after the last `=` is compared. Backticks are
//! ignored.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use privnet_core::credential::StaticKeyVerifier;
use privnet_core::crypto::{self, StaticSecret};
use privnet_core::{config, replay, wire, NodeConfig};

const DOC: &str = include_str!("../../../docs/PROTOCOL.md");
const CONFIG_RS: &str = include_str!("../src/config.rs");
const WIRE_RS: &str = include_str!("../src/wire.rs");
const REPLAY_RS: &str = include_str!("../src/replay.rs");

/// A value as the document states it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Value {
    Int(u128),
    Dur(Duration),
    Bool(bool),
}

fn int(v: impl Into<u128>) -> Value {
    Value::Int(v.into())
}

fn usize_(v: usize) -> Value {
    Value::Int(v as u128)
}

fn parse_value(cell: &str) -> Result<Value, String> {
    let cell = cell.replace('`', "");
    let v = cell.rsplit('=').next().unwrap_or("").trim();
    match v {
        "true" => return Ok(Value::Bool(true)),
        "false" => return Ok(Value::Bool(false)),
        _ => {}
    }
    let (num, unit) = match v.split_once(' ') {
        Some((n, u)) => (n, u.trim()),
        None => (v, ""),
    };
    let digits: String = num.chars().filter(|c| *c != '_' && *c != ',').collect();
    let n: u128 = digits
        .parse()
        .map_err(|e| format!("`{cell}`: `{digits}` is not an integer ({e})"))?;
    match unit {
        "" => Ok(Value::Int(n)),
        "s" => u64::try_from(n)
            .map(|s| Value::Dur(Duration::from_secs(s)))
            .map_err(|_| format!("`{cell}`: too many seconds")),
        "ms" => u64::try_from(n)
            .map(|ms| Value::Dur(Duration::from_millis(ms)))
            .map_err(|_| format!("`{cell}`: too many milliseconds")),
        other => Err(format!(
            "`{cell}`: unknown unit `{other}` (use `s` or `ms`)"
        )),
    }
}

fn cells(line: &str) -> Vec<String> {
    let t = line.trim();
    let t = t.strip_prefix('|').unwrap_or(t);
    let t = t.strip_suffix('|').unwrap_or(t);
    t.split('|').map(|c| c.trim().to_owned()).collect()
}

/// The rows of the table whose header cells are `header`, keyed by the backticked identifier in the
/// first cell, with the second cell as value. Panics if the table is missing, appears twice, or
/// lists a name twice.
fn table(header: &[&str]) -> BTreeMap<String, String> {
    let lines: Vec<&str> = DOC.lines().collect();
    let starts: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.trim_start().starts_with('|') && cells(l) == header)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        starts.len(),
        1,
        "docs/PROTOCOL.md must contain exactly one table with header {header:?}"
    );
    let mut rows = BTreeMap::new();
    for line in lines[starts[0] + 1..]
        .iter()
        .take_while(|l| l.trim_start().starts_with('|'))
    {
        let c = cells(line);
        let Some(first) = c.first() else { continue };
        let Some(name) = first
            .strip_prefix('`')
            .and_then(|s| s.strip_suffix('`'))
            .filter(|s| {
                !s.is_empty() && s.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
            })
        else {
            continue; // separator row or a row without an identifier
        };
        let value = c.get(1).cloned().unwrap_or_default();
        assert!(
            rows.insert(name.to_owned(), value).is_none(),
            "`{name}` is listed twice in the table {header:?}"
        );
    }
    rows
}

/// Names of the `pub const` items declared at the top level of a source file.
fn pub_consts(src: &str) -> BTreeSet<String> {
    src.lines()
        .filter_map(|l| l.strip_prefix("pub const "))
        .filter_map(|rest| rest.split(':').next())
        .map(|n| n.trim().to_owned())
        .collect()
}

/// Every constant the table must hold, with the code's value.
fn code_constants() -> BTreeMap<&'static str, Value> {
    use Value::Dur;
    let c: &[(&str, Value)] = &[
        // config
        ("REKEY_AFTER_MESSAGES", int(config::REKEY_AFTER_MESSAGES)),
        ("REJECT_AFTER_MESSAGES", int(config::REJECT_AFTER_MESSAGES)),
        ("REKEY_AFTER_TIME", Dur(config::REKEY_AFTER_TIME)),
        ("REJECT_AFTER_TIME", Dur(config::REJECT_AFTER_TIME)),
        (
            "STOP_SENDING_AFTER_TIME",
            Dur(config::STOP_SENDING_AFTER_TIME),
        ),
        ("REKEY_ATTEMPT_TIME", Dur(config::REKEY_ATTEMPT_TIME)),
        ("REKEY_TIMEOUT", Dur(config::REKEY_TIMEOUT)),
        ("REKEY_TIMEOUT_JITTER", Dur(config::REKEY_TIMEOUT_JITTER)),
        ("KEEPALIVE_TIMEOUT", Dur(config::KEEPALIVE_TIMEOUT)),
        ("ZERO_KEYS_AFTER", Dur(config::ZERO_KEYS_AFTER)),
        (
            "INITIATION_MIN_INTERVAL",
            Dur(config::INITIATION_MIN_INTERVAL),
        ),
        ("COOKIE_SECRET_MAX_AGE", Dur(config::COOKIE_SECRET_MAX_AGE)),
        ("UNDER_LOAD_AFTER", Dur(config::UNDER_LOAD_AFTER)),
        ("MAX_TIMESTAMP_SKEW", Dur(config::MAX_TIMESTAMP_SKEW)),
        (
            "PRIORITY_HANDSHAKES_PER_SEC",
            int(config::PRIORITY_HANDSHAKES_PER_SEC),
        ),
        (
            "PRIORITY_HANDSHAKE_BURST",
            int(config::PRIORITY_HANDSHAKE_BURST),
        ),
        (
            "PRIORITY_RESPONSES_PER_INITIATION",
            int(config::PRIORITY_RESPONSES_PER_INITIATION),
        ),
        // wire
        ("VERSION", int(wire::VERSION)),
        ("TYPE_INITIATION", int(wire::TYPE_INITIATION)),
        ("TYPE_RESPONSE", int(wire::TYPE_RESPONSE)),
        ("TYPE_COOKIE_REPLY", int(wire::TYPE_COOKIE_REPLY)),
        ("TYPE_DATA", int(wire::TYPE_DATA)),
        ("HEADER_LEN", usize_(wire::HEADER_LEN)),
        ("MAC_LEN", usize_(wire::MAC_LEN)),
        ("TAG_LEN", usize_(wire::TAG_LEN)),
        ("KEY_LEN", usize_(wire::KEY_LEN)),
        ("MAX_CREDENTIAL_LEN", usize_(wire::MAX_CREDENTIAL_LEN)),
        (
            "INITIATION_PAYLOAD_FIXED",
            usize_(wire::INITIATION_PAYLOAD_FIXED),
        ),
        ("INITIATION_MIN_LEN", usize_(wire::INITIATION_MIN_LEN)),
        ("INITIATION_MAX_LEN", usize_(wire::INITIATION_MAX_LEN)),
        ("RESPONSE_MIN_LEN", usize_(wire::RESPONSE_MIN_LEN)),
        ("RESPONSE_MAX_LEN", usize_(wire::RESPONSE_MAX_LEN)),
        ("COOKIE_REPLY_LEN", usize_(wire::COOKIE_REPLY_LEN)),
        ("DATA_FLAG_PRIORITY", int(wire::DATA_FLAG_PRIORITY)),
        ("DATA_FLAGS", int(wire::DATA_FLAGS)),
        ("DATA_HEADER_LEN", usize_(wire::DATA_HEADER_LEN)),
        ("DATA_MIN_LEN", usize_(wire::DATA_MIN_LEN)),
        ("DATA_OVERHEAD", usize_(wire::DATA_OVERHEAD)),
        ("MAX_DATAGRAM", usize_(wire::MAX_DATAGRAM)),
        (
            "INITIATION_NOISE_OFFSET",
            usize_(wire::INITIATION_NOISE_OFFSET),
        ),
        ("RESPONSE_NOISE_OFFSET", usize_(wire::RESPONSE_NOISE_OFFSET)),
        // replay
        ("WINDOW", int(replay::WINDOW)),
    ];
    let map: BTreeMap<_, _> = c.iter().copied().collect();
    assert_eq!(
        map.len(),
        c.len(),
        "a constant is listed twice in this test"
    );
    map
}

#[test]
fn every_public_constant_is_covered_by_this_test() {
    let checked: BTreeSet<String> = code_constants().keys().map(ToString::to_string).collect();
    let mut declared = BTreeSet::new();
    for (file, src) in [
        ("config.rs", CONFIG_RS),
        ("wire.rs", WIRE_RS),
        ("replay.rs", REPLAY_RS),
    ] {
        let names = pub_consts(src);
        assert!(!names.is_empty(), "no `pub const` found in {file}");
        declared.extend(names);
    }
    let unchecked: Vec<_> = declared.difference(&checked).collect();
    assert!(
        unchecked.is_empty(),
        "public constants without a value check in tests/protocol_doc.rs (and probably without a \
         row in docs/PROTOCOL.md): {unchecked:?}"
    );
    let gone: Vec<_> = checked.difference(&declared).collect();
    assert!(
        gone.is_empty(),
        "constants checked here but no longer declared: {gone:?}"
    );
}

#[test]
fn constants_table_matches_the_code() {
    let doc = table(&["name", "value", "meaning"]);
    let code = code_constants();
    let mut errors = Vec::new();
    for (name, want) in &code {
        match doc.get(*name) {
            None => errors.push(format!("`{name}` is missing from the constants table")),
            Some(cell) => match parse_value(cell) {
                Ok(got) if got == *want => {}
                Ok(got) => errors.push(format!(
                    "`{name}`: the document says {got:?} (`{cell}`), the code has {want:?}"
                )),
                Err(e) => errors.push(format!("`{name}`: cannot parse the value: {e}")),
            },
        }
    }
    for name in doc.keys() {
        if !code.contains_key(name.as_str()) {
            errors.push(format!(
                "`{name}` is in the constants table but is not a constant of config/wire/replay"
            ));
        }
    }
    assert!(
        errors.is_empty(),
        "docs/PROTOCOL.md is out of step:\n{}",
        errors.join("\n")
    );
}

#[test]
fn defaults_table_matches_node_config() {
    let doc = table(&["field", "default", "meaning"]);
    let cfg = NodeConfig::new(
        StaticSecret::from_bytes([7; 32]),
        [0; 32],
        [0; 16],
        Arc::new(StaticKeyVerifier::new()),
    );
    let code: BTreeMap<&str, Value> = [
        (
            "under_load_handshakes_per_sec",
            int(cfg.under_load_handshakes_per_sec),
        ),
        (
            "handshake_budget_per_sec",
            int(cfg.handshake_budget_per_sec),
        ),
        (
            "handshake_rate_per_source",
            int(cfg.handshake_rate_per_source),
        ),
        (
            "handshake_burst_per_source",
            int(cfg.handshake_burst_per_source),
        ),
        ("limiter_max_sources", usize_(cfg.limiter_max_sources)),
        ("max_queued_per_peer", usize_(cfg.max_queued_per_peer)),
        ("max_peers", usize_(cfg.max_peers)),
        (
            "accept_unknown_peers",
            Value::Bool(cfg.accept_unknown_peers),
        ),
        ("eager_handshakes", Value::Bool(cfg.eager_handshakes)),
        ("mtu", usize_(cfg.mtu)),
    ]
    .into_iter()
    .collect();
    let mut errors = Vec::new();
    for (name, want) in &code {
        match doc.get(*name).map(|c| (c, parse_value(c))) {
            None => errors.push(format!("`{name}` is missing from the defaults table")),
            Some((_, Ok(got))) if got == *want => {}
            Some((cell, got)) => errors.push(format!(
                "`{name}`: the document says `{cell}` ({got:?}), the code has {want:?}"
            )),
        }
    }
    for name in doc.keys() {
        if !code.contains_key(name.as_str()) {
            errors.push(format!(
                "`{name}` in the defaults table is not checked here"
            ));
        }
    }
    assert!(
        errors.is_empty(),
        "docs/PROTOCOL.md is out of step:\n{}",
        errors.join("\n")
    );
}

#[test]
fn crypto_strings_are_quoted_exactly() {
    let quoted = |bytes: &[u8]| format!("\"{}\"", String::from_utf8_lossy(bytes));
    for (what, s) in [
        ("Noise protocol name", crypto::NOISE_PARAMS.to_owned()),
        ("prologue prefix", quoted(crypto::PROLOGUE_PREFIX)),
        ("mac1 label", quoted(crypto::LABEL_MAC1)),
        ("cookie label", quoted(crypto::LABEL_COOKIE)),
    ] {
        assert!(
            DOC.contains(&s),
            "docs/PROTOCOL.md does not quote the {what} {s}"
        );
    }
}

#[test]
fn value_parser() {
    assert_eq!(
        parse_value("120 s"),
        Ok(Value::Dur(Duration::from_secs(120)))
    );
    assert_eq!(
        parse_value("`20 ms`"),
        Ok(Value::Dur(Duration::from_millis(20)))
    );
    assert_eq!(parse_value("65_535"), Ok(Value::Int(65_535)));
    assert_eq!(
        parse_value("2^60 = 1152921504606846976"),
        Ok(Value::Int(1 << 60))
    );
    assert_eq!(parse_value("true"), Ok(Value::Bool(true)));
    assert!(parse_value("2^60").is_err());
    assert!(parse_value("5 min").is_err());
    assert!(parse_value("").is_err());
}

#[test]
fn every_drop_reason_is_in_the_drop_reasons_table() {
    let doc = table(&["label", "counted when"]);
    for r in privnet_core::DropReason::ALL {
        assert!(
            doc.contains_key(r.as_str()),
            "docs/PROTOCOL.md §9 lacks the drop reason `{}`",
            r.as_str()
        );
    }
    assert_eq!(
        doc.len(),
        privnet_core::DropReason::ALL.len(),
        "the table lists a reason the code does not have"
    );
}

#[test]
fn the_fuzz_target_list_names_every_target() {
    let cargo = include_str!("../../../fuzz/Cargo.toml");
    let targets: BTreeSet<&str> = cargo
        .lines()
        .filter_map(|l| l.trim().strip_prefix("name = \""))
        .filter_map(|l| l.strip_suffix('"'))
        .filter(|n| *n != "privnet-fuzz")
        .collect();
    assert!(targets.len() >= 6, "{targets:?}");
    let line = DOC
        .split("- Fuzz targets (`fuzz/fuzz_targets/`")
        .nth(1)
        .and_then(|rest| rest.split("\n\n").next())
        .expect("docs/PROTOCOL.md §11 lists the fuzz targets");
    for t in &targets {
        assert!(
            line.contains(&format!("`{t}`")),
            "docs/PROTOCOL.md §11 does not list the fuzz target `{t}`"
        );
    }
}

#[test]
fn every_simulation_test_is_in_the_test_references() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let section = DOC
        .split("## 11. Test references")
        .nth(1)
        .expect("docs/PROTOCOL.md has §11");
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("tests/") {
        let path = entry.expect("tests/ entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !(name.starts_with("sim_") && name.ends_with(".rs")) {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("test source");
        let mut lines = text.lines();
        while let Some(l) = lines.next() {
            if l.trim() == "#[test]" {
                let f = lines.next().unwrap_or("");
                if let Some(n) = f
                    .trim()
                    .strip_prefix("fn ")
                    .and_then(|r| r.split('(').next())
                {
                    if !section.contains(&format!("`{n}`")) {
                        missing.push(format!("{name}: {n}"));
                    }
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "docs/PROTOCOL.md §11 does not list: {missing:?}"
    );
}
