//! The TOML front end: a full example, and a table of malformed policies, each of which must be
//! refused with the line (and column) of the problem and what was expected there.

use super::*;
use crate::policy::compile::compile;

const EXAMPLE: &str = r#"
# The worked example of docs/POLICY.md.
version = 1
name = "shop"
default = "deny"

[[platform]]
id = "blocklist"
action = "deny"
from = { cidr = ["198.51.100.0/24", "2001:db8:bad::/48"] }
to = "any"

[[platform]]
id = "no-telnet"
action = "reject"
from = "any"
to = "network"
proto = "tcp"
ports = [23]

[[application]]
id = "web-to-db"
action = "allow"
from = { groups = { any = ["web"] } }
to = { groups = { all = ["db", "prod"] } }
proto = "tcp"
ports = [5432, "6000-6010"]

[[application]]
action = "pass"
from = ["self", { members = ["ops-1"], cidr = "10.0.0.0/8", except = ["10.9.0.0/16"] }]
to = "network"

[[baseline]]
id = "ping"
action = "allow"
from = "network"
to = "network"
proto = ["icmp", "icmpv6"]
icmp = ["echo-request", { type = 3, code = 4 }, 11]

[[test]]
name = "web reaches db"
from = { member = "web-1", groups = ["web"] }
to = { member = "db-1", groups = ["db", "prod"], address = "10.0.0.2" }
proto = "tcp"
port = 5432
expect = "allow"
rule = "web-to-db"

[[test]]
from = "203.0.113.9"
to = "db-1"
proto = "udp"
port = 53
expect = "deny"
"#;

#[test]
fn the_example_parses_and_compiles() {
    let spec = parse_policy(EXAMPLE, "shop.toml").unwrap();
    assert_eq!(spec.name.as_deref(), Some("shop"));
    assert_eq!(spec.default, DefaultAction::Deny);
    assert_eq!(spec.tiers.each_ref().map(|t| t.len()), [2, 2, 1]);
    let db = &spec.tiers[1][0];
    assert_eq!(db.id.as_deref(), Some("web-to-db"));
    assert_eq!(
        db.ports,
        vec![
            PortRange { lo: 5432, hi: 5432 },
            PortRange { lo: 6000, hi: 6010 }
        ]
    );
    assert_eq!(db.location.map(|l| l.line), Some(21));
    let Atom::Match(m) = &db.to.0[0] else {
        panic!("a table")
    };
    assert_eq!(m.groups_all, ["db", "prod"]);
    let pass = &spec.tiers[1][1];
    assert_eq!(pass.from.0.len(), 2);
    assert_eq!(pass.from.0[0], Atom::Local);
    let ping = &spec.tiers[2][0];
    assert_eq!(
        ping.icmp,
        vec![
            IcmpMatch { ty: 8, code: None },
            IcmpMatch {
                ty: 128,
                code: None
            },
            IcmpMatch {
                ty: 3,
                code: Some(4)
            },
            IcmpMatch { ty: 11, code: None },
        ]
    );
    assert_eq!(spec.tests.len(), 2);
    assert!(matches!(spec.tests[1].from, TestEnd::Address(_)));
    let c = compile(&spec, "shop.toml").unwrap();
    assert_eq!(c.rules().len(), 5);
    assert_eq!(c.rules()[3].id, "application/1");
}

/// (policy text, line of the first problem, a fragment of what it must say)
const MALFORMED: &[(&str, usize, &str)] = &[
    ("default = \"allow\"\n[[application]\n", 2, "valid TOML"),
    ("default = \"maybe\"\n", 1, "`\"allow\"` or `\"deny\"`"),
    ("defualt = \"deny\"\n", 1, "did you mean `default`?"),
    ("version = 2\n", 1, "an integer from 1 to 1"),
    ("application = 3\n", 1, "an array of tables"),
    ("[application]\naction = \"allow\"\n", 1, "an array of tables"),
    ("[[application]]\nfrom = \"any\"\nto = \"any\"\n", 1, "`action`"),
    ("[[application]]\naction = \"permit\"\nfrom = \"any\"\nto = \"any\"\n", 2, "one of `allow`, `deny`, `reject`, `pass`, `log`"),
    ("[[application]]\naction = \"allow\"\nto = \"any\"\n", 1, "a `from` selector"),
    ("[[application]]\naction = \"allow\"\nfrom = \"web\"\nto = \"any\"\n", 3, "{ members = [\"web\"] }"),
    ("[[application]]\naction = \"allow\"\nfrom = []\nto = \"any\"\n", 3, "at least one selector"),
    ("[[application]]\naction = \"allow\"\nfrom = { groups = [\"web\", \"db\"] }\nto = \"any\"\n", 3, "not implicitly AND or OR"),
    ("[[application]]\naction = \"allow\"\nfrom = { groups = { some = [\"web\"] } }\nto = \"any\"\n", 3, "one of `any`, `all`"),
    ("[[application]]\naction = \"allow\"\nfrom = { hosts = [\"a\"] }\nto = \"any\"\n", 3, "`members`"),
    ("[[application]]\naction = \"allow\"\nfrom = {}\nto = \"any\"\n", 3, "at least one of `members`"),
    ("[[application]]\naction = \"allow\"\nfrom = { cidr = [\"10.0.0.0/33\"] }\nto = \"any\"\n", 3, "an IP prefix"),
    ("[[application]]\naction = \"allow\"\nfrom = { cidr = [\"10.0.0.300\"] }\nto = \"any\"\n", 3, "not `10.0.0.300`"),
    ("[[application]]\naction = \"allow\"\nfrom = { cidr = [10] }\nto = \"any\"\n", 3, "a prefix as a string"),
    ("[[application]]\naction = \"allow\"\nfrom = \"any\"\nto = \"any\"\nproto = \"tcpp\"\n", 5, "`tcp`, `udp`"),
    ("[[application]]\naction = \"allow\"\nfrom = \"any\"\nto = \"any\"\nproto = 256\n", 5, "from 0 to 255"),
    ("[[application]]\naction = \"allow\"\nfrom = \"any\"\nto = \"any\"\nproto = [\"any\", \"tcp\"]\n", 5, "`any` alone"),
    ("[[application]]\naction = \"allow\"\nfrom = \"any\"\nto = \"any\"\nproto = \"tcp\"\nports = [70000]\n", 6, "from 0 to 65535"),
    ("[[application]]\naction = \"allow\"\nfrom = \"any\"\nto = \"any\"\nproto = \"tcp\"\nports = [\"90-80\"]\n", 6, "low <= high"),
    ("[[application]]\naction = \"allow\"\nfrom = \"any\"\nto = \"any\"\nproto = \"tcp\"\nports = [\"http\"]\n", 6, "a port 0-65535"),
    ("[[application]]\naction = \"allow\"\nfrom = \"any\"\nto = \"any\"\nproto = \"tcp\"\nports = []\n", 6, "at least one port"),
    ("[[application]]\naction = \"allow\"\nfrom = \"any\"\nto = \"any\"\nproto = \"icmp\"\nicmp = [\"ping\"]\n", 6, "an ICMP type number"),
    ("[[application]]\naction = \"allow\"\nfrom = \"any\"\nto = \"any\"\nproto = \"icmp\"\nicmp = [{ code = 1 }]\n", 6, "an ICMP `type`"),
    ("[[application]]\naction = \"allow\"\nfrom = \"any\"\nto = \"any\"\nproto = \"icmp\"\nicmp = [{ type = 300 }]\n", 6, "from 0 to 255"),
    ("[[application]]\naction = \"allow\"\nfrom = \"any\"\nto = \"any\"\nid = 5\n", 5, "a string, not integer"),
    ("[[application]]\naction = \"allow\"\nfrom = \"any\"\nto = \"any\"\nport = 80\n", 5, "did you mean `ports`?"),
    ("[[test]]\nfrom = \"a\"\nto = \"b\"\nproto = \"tcp\"\nexpect = \"maybe\"\n", 5, "`allow`, `deny` or `reject`"),
    ("[[test]]\nfrom = \"a\"\nto = \"b\"\nexpect = \"allow\"\n", 1, "a `proto`"),
    ("[[test]]\nfrom = { address = \"x\" }\nto = \"b\"\nproto = \"tcp\"\nexpect = \"allow\"\n", 2, "an IP address"),
    ("[[test]]\nfrom = { groups = [\"g\"] }\nto = \"b\"\nproto = \"tcp\"\nexpect = \"allow\"\n", 2, "`member = \"name\"`"),
    // Meaning, found by the compiler (the rule's line).
    ("[[application]]\naction = \"allow\"\nfrom = \"any\"\nto = \"any\"\nports = [80]\n", 1, "a `proto` (`tcp`, `udp` or `sctp`) with `ports`"),
    ("[[application]]\naction = \"allow\"\nfrom = \"any\"\nto = \"any\"\nproto = [\"tcp\", \"icmp\"]\nports = [80]\n", 1, "split the rule"),
    ("[[application]]\naction = \"allow\"\nfrom = \"any\"\nto = \"any\"\nproto = \"udp\"\nicmp = [8]\n", 1, "ICMP types only with"),
    ("[[platform]]\nid = \"x\"\naction = \"deny\"\nfrom = \"any\"\nto = \"any\"\n\n[[baseline]]\nid = \"x\"\naction = \"allow\"\nfrom = \"any\"\nto = \"any\"\n", 7, "already used (line 1)"),
    ("[[platform]]\nid = \"a/b\"\naction = \"deny\"\nfrom = \"any\"\nto = \"any\"\n", 1, "an id of 1 to 128"),
    ("[[platform]]\nid = \"default\"\naction = \"deny\"\nfrom = \"any\"\nto = \"any\"\n", 1, "other than `default`"),
    ("[[test]]\nfrom = \"a\"\nto = \"b\"\nproto = \"tcp\"\nport = 1\nexpect = \"allow\"\nrule = \"nope\"\n", 1, "there is no rule `nope`"),
    ("[[test]]\nfrom = \"10.0.0.1\"\nto = \"10.0.0.2\"\nproto = \"tcp\"\nport = 1\nexpect = \"allow\"\n", 1, "at least one member end"),
];

fn load(text: &str) -> Result<(), PolicyError> {
    let spec = parse_policy(text, "p.toml")?;
    compile(&spec, "p.toml").map(|_| ())
}

#[test]
fn every_malformed_policy_names_its_line_and_what_was_expected() {
    for (text, line, fragment) in MALFORMED {
        let err = match load(text) {
            Ok(()) => panic!("accepted:\n{text}"),
            Err(e) => e,
        };
        let first = &err.problems[0];
        let shown = err.to_string();
        assert_eq!(
            first.location.map(|l| l.line),
            Some(*line),
            "wrong line for:\n{text}\n→ {shown}"
        );
        assert!(first.location.is_some_and(|l| l.column >= 1));
        assert!(
            shown.contains(fragment),
            "`{fragment}` missing for:\n{text}\n→ {shown}"
        );
        assert!(shown.starts_with(&format!("p.toml:{line}:")), "{shown}");
    }
}

#[test]
fn every_problem_of_a_file_is_reported_in_one_run() {
    let text = "defualt = \"deny\"\n[[application]]\naction = \"permit\"\nfrom = \"x\"\nto = \"any\"\nproto = \"tcp\"\nports = [70000]\n";
    let err = parse_policy(text, "p.toml").unwrap_err();
    let lines: Vec<usize> = err
        .problems
        .iter()
        .map(|p| p.location.unwrap().line)
        .collect();
    assert_eq!(lines, [1, 3, 4, 7], "{err}");
    assert!(err.problems[3].key == "application[0].ports", "{err}");
}

#[test]
fn columns_point_at_the_value() {
    let err = parse_policy(
        "[[application]]\naction = \"allow\"\nfrom = \"any\"\nto = { cidr = [\"bad\"] }\n",
        "p.toml",
    )
    .unwrap_err();
    let l = err.problems[0].location.unwrap();
    assert_eq!((l.line, l.column), (4, 16), "{err}");
}

#[test]
fn hostile_inputs_are_bounded() {
    let big = "#".repeat(MAX_POLICY_BYTES + 1);
    assert!(parse_policy(&big, "p").is_err());
    let many = format!(
        "[[application]]\naction = \"allow\"\nfrom = {{ members = [{}] }}\nto = \"any\"\n",
        vec!["\"m\""; reader::MAX_LIST + 1].join(",")
    );
    assert!(parse_policy(&many, "p").is_err());
    // Problems are capped.
    let text: String = (0..500).map(|i| format!("k{i} = 1\n")).collect();
    let err = parse_policy(&text, "p").unwrap_err();
    assert_eq!(err.problems.len(), crate::policy::error::MAX_PROBLEMS);
}

#[test]
fn proto_any_and_bare_addresses() {
    let spec = parse_policy(
        "[[application]]\naction = \"allow\"\nfrom = { cidr = \"10.0.0.1\" }\nto = \"any\"\nproto = \"any\"\n",
        "p",
    )
    .unwrap();
    assert_eq!(spec.tiers[1][0].proto, ProtoSpec::Any);
    let Atom::Match(m) = &spec.tiers[1][0].from.0[0] else {
        panic!()
    };
    assert_eq!(m.cidr, vec!["10.0.0.1/32".parse::<IpNetwork>().unwrap()]);
}

#[test]
fn the_examples_embedded_tests_pass() {
    let spec = parse_policy(EXAMPLE, "shop.toml").unwrap();
    let c = compile(&spec, "shop.toml").unwrap();
    let out = crate::policy::selftest::run_tests(&c, &[]);
    assert_eq!(out.len(), 2);
    for o in &out {
        assert!(o.passed, "{o}\n{}", o.explanation);
    }
}

#[test]
fn the_fuzz_seeds_are_valid_policies_whose_tests_pass() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/policy_parse");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let name = path.display().to_string();
        let c = compile(&parse_policy(&text, &name).unwrap(), &name).unwrap();
        for o in crate::policy::selftest::run_tests(&c, &[]) {
            assert!(o.passed, "{name}: {o}");
        }
        n += 1;
    }
    assert!(n >= 3);
}
