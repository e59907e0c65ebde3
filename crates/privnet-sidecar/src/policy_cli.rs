//! `privnet policy check` and `privnet policy explain`: the policy engine offline, from the files
//! (docs/POLICY.md §9–§10). Member identities come from a directory of member certificates
//! (`--members DIR`); their signatures are not verified here (this is a design tool, not the
//! enforcement point). `explain` without `--policy` asks a running sidecar instead (through its
//! status socket, `explain_live.rs`): the policy in force, the tracked flow and the session.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context as _, Result};
use clap::{Args, Subcommand};
use privnet_core::identity::{armor, MemberCertificate};
use privnet_core::policy::lint::lint;
use privnet_core::policy::selftest::{run_tests, KnownMember};
use privnet_core::policy::{compile, parse_policy, CompiledPolicy, MemberRef, Protocol, Tier};

use crate::explain_live::{flow_for, Answer, Request, VERB};
use crate::{files, status};

/// `privnet policy ...`.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Check a policy file: syntax and meaning (every problem with its line), the embedded
    /// `[[test]]` entries, and lints (shadowed rules, `any` overrides, selectors that match no
    /// member). Exits non-zero on an error or a failed test (and on a lint with --strict).
    Check(PolicyCheckArgs),
    /// Explain what a policy decides for one flow, at the sending member and at the receiving
    /// member, rule by rule: "why can't A reach B". With --policy from the files; with --socket or
    /// --config from a running sidecar (the policy in force, whether a session and a tracked flow
    /// exist).
    Explain(PolicyExplainArgs),
}

/// `privnet policy check`.
#[derive(Debug, Args)]
pub struct PolicyCheckArgs {
    /// The policy file.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// A directory of member certificates (`*.crt`/PEM): their names, groups and addresses fill
    /// in the embedded tests and let lints find selectors that match no member.
    #[arg(long, value_name = "DIR")]
    pub members: Option<PathBuf>,
    /// Treat lints as errors.
    #[arg(long)]
    pub strict: bool,
}

/// `privnet policy explain`.
#[derive(Debug, Args)]
pub struct PolicyExplainArgs {
    /// The policy file (offline). Without it, a running sidecar is asked (--socket or --config).
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// The running sidecar's status socket.
    #[arg(long, value_name = "PATH", conflicts_with = "policy")]
    pub socket: Option<PathBuf>,
    /// The running sidecar's configuration file (for its `[status] socket`).
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "policy",
        env = "PRIVNET_CONFIG"
    )]
    pub config: Option<PathBuf>,
    /// The network to ask about (a sidecar running several); default: the one where --from or
    /// --to is the sidecar's own member.
    #[arg(long, value_name = "NAME")]
    pub network: Option<String>,
    /// The initiator: a member name (see --members) or an IP address (a non-member).
    #[arg(long, value_name = "MEMBER|ADDRESS")]
    pub from: String,
    /// The responder and service: `NAME:PORT/PROTO` (`db-1:5432/tcp`), `NAME/icmp`,
    /// `NAME/icmp:TYPE[:CODE]`, `NAME/PROTO` for other protocols; NAME may be an address
    /// (`[2001:db8::1]:443/tcp`).
    #[arg(long, value_name = "TARGET")]
    pub to: String,
    /// A directory of member certificates (names, groups, addresses).
    #[arg(long, value_name = "DIR")]
    pub members: Option<PathBuf>,
    /// Groups of the initiator, when it is not in --members (`--from-groups web,prod`).
    #[arg(long, value_name = "GROUPS", value_delimiter = ',')]
    pub from_groups: Vec<String>,
    /// Groups of the responder, when it is not in --members.
    #[arg(long, value_name = "GROUPS", value_delimiter = ',')]
    pub to_groups: Vec<String>,
}

/// Run a `privnet policy` subcommand.
pub fn run(cmd: &PolicyCommand) -> ExitCode {
    let result = match cmd {
        PolicyCommand::Check(a) => check(a),
        PolicyCommand::Explain(a) => explain(a).map(|()| true),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Read and compile a policy file; problems are printed one per line (`FILE:LINE:COL: ...`).
pub fn load(path: &Path) -> Result<CompiledPolicy> {
    let text = files::read_policy(path).map_err(|e| anyhow!("{e}"))?;
    let name = path.display().to_string();
    let spec = parse_policy(&text, &name).map_err(|e| anyhow!("{e}"))?;
    compile(&spec, &name).map_err(|e| anyhow!("{e}"))
}

/// The member certificates in `dir` (files that are not member certificates are skipped).
pub fn read_members(dir: &Path) -> Result<Vec<KnownMember>> {
    let mut out = Vec::new();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("{}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    for p in paths {
        let Ok(text) = files::read_text(&p) else {
            continue;
        };
        if armor::label(&text) != Some(armor::CERTIFICATE) {
            continue;
        }
        let cert =
            MemberCertificate::from_pem(&text).with_context(|| format!("{}", p.display()))?;
        out.push(KnownMember {
            member: MemberRef {
                name: cert.name().to_owned(),
                groups: cert.groups().to_vec(),
            },
            address: cert.addresses().first().copied(),
        });
    }
    Ok(out)
}

fn check(a: &PolicyCheckArgs) -> Result<bool> {
    let policy = match load(&a.file) {
        Ok(p) => p,
        Err(e) => {
            for line in format!("{e:#}").lines() {
                eprintln!("error: {line}");
            }
            return Ok(false);
        }
    };
    let known = match &a.members {
        Some(d) => read_members(d)?,
        None => Vec::new(),
    };
    let spec = policy.spec();
    let count = |t: Tier| spec.tiers[t.index()].len();
    println!(
        "ok: {}: {}{} rules (platform {}, application {}, baseline {}), default {}, hash {}",
        a.file.display(),
        spec.name
            .as_ref()
            .map_or(String::new(), |n| format!("policy `{n}`, ")),
        spec.rule_count(),
        count(Tier::Platform),
        count(Tier::Application),
        count(Tier::Baseline),
        spec.default.action().name(),
        policy.hash_hex()
    );
    for l in policy.limits() {
        let rates: Vec<String> = [(l.packets_per_sec, "packets"), (l.bytes_per_sec, "bytes")]
            .iter()
            .filter_map(|(v, unit)| v.map(|v| format!("{v} {unit}/s")))
            .collect();
        println!(
            "limit {}: direction {}, {}, burst {} ms{}",
            l.id,
            l.direction.name(),
            rates.join(", "),
            l.burst_ms,
            if l.shared { ", shared" } else { "" }
        );
    }
    let mut ok = true;
    let outcomes = run_tests(&policy, &known);
    for o in &outcomes {
        println!("test {o}");
        ok &= o.passed;
        if !o.passed {
            for line in o.explanation.to_string().lines() {
                println!("    {line}");
            }
        }
    }
    let members: Vec<MemberRef> = known.iter().map(|k| k.member.clone()).collect();
    let lints = lint(&policy, a.members.as_ref().map(|_| members.as_slice()));
    for l in &lints {
        let at = l
            .location
            .map_or(String::new(), |p| format!("{}:{}: ", p.line, p.column));
        eprintln!(
            "warning: {}:{at}[{}] {}",
            a.file.display(),
            l.code,
            l.message
        );
    }
    let failed = outcomes.iter().filter(|o| !o.passed).count();
    println!(
        "{} test(s), {failed} failed; {} lint warning(s)",
        outcomes.len(),
        lints.len()
    );
    Ok(ok && (lints.is_empty() || !a.strict))
}

/// A parsed `--to` target.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    host: String,
    port: Option<u16>,
    proto: Protocol,
    icmp: Option<(u8, u8)>,
}

fn parse_proto(s: &str) -> Result<Protocol> {
    Ok(match s {
        "tcp" => Protocol::TCP,
        "udp" => Protocol::UDP,
        "sctp" => Protocol::SCTP,
        "icmp" => Protocol::ICMP,
        "icmpv6" => Protocol::ICMPV6,
        n => Protocol::Number(
            n.parse()
                .map_err(|_| anyhow!("`{n}`: expected tcp, udp, sctp, icmp, icmpv6 or 0-255"))?,
        ),
    })
}

fn parse_target(s: &str) -> Result<Target> {
    let (left, proto) = s
        .rsplit_once('/')
        .ok_or_else(|| anyhow!("`{s}`: expected NAME:PORT/PROTO, e.g. db-1:5432/tcp"))?;
    let (proto, icmp) = match proto.split_once(':') {
        Some((p, rest)) => {
            let mut it = rest.split(':');
            let ty = it
                .next()
                .unwrap_or("")
                .parse::<u8>()
                .map_err(|_| anyhow!("`{rest}`: ICMP TYPE[:CODE]"))?;
            let code = it
                .next()
                .map_or(Ok(0), str::parse::<u8>)
                .map_err(|_| anyhow!("`{rest}`: ICMP TYPE[:CODE]"))?;
            (parse_proto(p)?, Some((ty, code)))
        }
        None => (parse_proto(proto)?, None),
    };
    if icmp.is_some() && !proto.is_icmp() {
        bail!("`{s}`: a type and code only with icmp or icmpv6");
    }
    let (host, port) = if let Some(rest) = left.strip_prefix('[') {
        let (h, after) = rest
            .split_once(']')
            .ok_or_else(|| anyhow!("`{s}`: unclosed `[`"))?;
        (h.to_owned(), after.strip_prefix(':'))
    } else if left.parse::<IpAddr>().is_ok() {
        (left.to_owned(), None)
    } else {
        match left.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (left.to_owned(), None),
        }
    };
    let port = port
        .map(|p| {
            p.parse::<u16>()
                .map_err(|_| anyhow!("`{p}`: a port 0-65535"))
        })
        .transpose()?;
    if proto.has_ports() && port.is_none() {
        bail!(
            "`{s}`: {} needs a port (NAME:PORT/{})",
            proto.name(),
            proto.name()
        );
    }
    if !proto.has_ports() && port.is_some() {
        bail!("`{s}`: {} has no ports", proto.name());
    }
    Ok(Target {
        host,
        port,
        proto,
        icmp,
    })
}

/// A member (from the certificates, or with the given groups) or an address.
fn end(
    name: &str,
    groups: &[String],
    known: &[KnownMember],
    from: bool,
) -> Result<(Option<MemberRef>, IpAddr)> {
    if let Ok(a) = name.parse::<IpAddr>() {
        return Ok((None, a));
    }
    let k = known.iter().find(|k| k.member.name == name);
    let mut m = k.map_or_else(
        || MemberRef {
            name: name.to_owned(),
            groups: Vec::new(),
        },
        |k| k.member.clone(),
    );
    if !groups.is_empty() {
        m.groups = groups.to_vec();
    }
    if k.is_none() && groups.is_empty() {
        eprintln!("note: `{name}` is not in --members; it has no groups (give them with --from-groups/--to-groups)");
    }
    let addr = k
        .and_then(|k| k.address)
        .unwrap_or_else(|| IpAddr::from(if from { [192, 0, 2, 1] } else { [192, 0, 2, 2] }));
    Ok((Some(m), addr))
}

fn explain(a: &PolicyExplainArgs) -> Result<()> {
    let Some(policy_file) = &a.policy else {
        return explain_running(a);
    };
    let policy = load(policy_file)?;
    let known = match &a.members {
        Some(d) => read_members(d)?,
        None => Vec::new(),
    };
    let t = parse_target(&a.to)?;
    let (from, src) = end(&a.from, &a.from_groups, &known, true)?;
    let (to, dst) = end(&t.host, &a.to_groups, &known, false)?;
    if src.is_ipv6() != dst.is_ipv6() {
        bail!("{src} and {dst} are not of the same IP version");
    }
    let flow = flow_for(src, dst, t.proto, t.port, t.icmp);
    let path = policy.explain_path(&flow, from.as_ref(), to.as_ref());
    println!("{path}");
    Ok(())
}

/// An end of `--from`/`--to` in a running network's status: an address as given, this member's
/// first address, or a peer's; and whether it is this member.
fn resolve_end(name: &str, net: &serde_json::Value) -> Option<(IpAddr, bool)> {
    let first = |v: &serde_json::Value| -> Option<IpAddr> {
        let a = v.as_array()?.first()?.as_str()?;
        a.parse::<ipnetwork::IpNetwork>().ok().map(|n| n.ip())
    };
    let own: Vec<IpAddr> = net["addresses"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str()?.parse::<ipnetwork::IpNetwork>().ok())
        .map(|n| n.ip())
        .collect();
    if let Ok(a) = name.parse::<IpAddr>() {
        return Some((a, own.contains(&a)));
    }
    if net["member"].as_str() == Some(name) {
        return first(&net["addresses"]).map(|a| (a, true));
    }
    net["peers"]
        .as_array()?
        .iter()
        .find(|p| p["name"].as_str() == Some(name))
        .and_then(|p| first(&p["addresses"]))
        .map(|a| (a, false))
}

/// `explain` against a running sidecar.
fn explain_running(a: &PolicyExplainArgs) -> Result<()> {
    let socket = match (&a.socket, &a.config) {
        (Some(s), _) => s.clone(),
        (None, Some(c)) => status::socket_of_config(c)?,
        (None, None) => bail!(
            "pass --policy FILE (offline) or --socket PATH / --config FILE (a running sidecar)"
        ),
    };
    let t = parse_target(&a.to)?;
    let Protocol::Number(proto) = t.proto else {
        bail!("`{}`: a protocol number", a.to);
    };
    let nets = status::query_status(&socket)?;
    let mut found = None;
    for n in &nets {
        if a.network
            .as_deref()
            .is_some_and(|w| n["network"].as_str() != Some(w))
        {
            continue;
        }
        if let (Some(src), Some(dst)) = (resolve_end(&a.from, n), resolve_end(&t.host, n)) {
            found = Some((n, src, dst));
            break;
        }
    }
    let Some((net, (src, src_own), (dst, dst_own))) = found else {
        bail!(
            "`{}` or `{}` is not this sidecar's member or one of its peers (in {}); give addresses or --network",
            a.from,
            t.host,
            socket.display()
        );
    };
    if !src_own && !dst_own {
        bail!(
            "neither `{}` nor `{}` is this sidecar's member ({}): ask the sidecar of one of them",
            a.from,
            t.host,
            net["member"].as_str().unwrap_or("?")
        );
    }
    let req = Request {
        network: net["network"].as_str().map(str::to_owned),
        src,
        dst,
        proto,
        port: t.port,
        icmp: t.icmp,
        outbound: src_own,
    };
    let line = format!("{VERB}{}\n", serde_json::to_string(&req)?);
    let answer: Answer = serde_json::from_str(&status::query_line(&socket, &line)?)
        .context("the sidecar's answer")?;
    print!("{}", format_answer(&answer, &a.from, &a.to, src_own));
    if let Some(e) = &answer.error {
        bail!("{e}");
    }
    Ok(())
}

/// A live answer in words.
fn format_answer(x: &Answer, from: &str, to: &str, outbound: bool) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{from} -> {to}, network {}, at member {} ({}){}",
        x.network,
        x.member,
        if outbound {
            "the initiator: its check before encryption"
        } else {
            "the responder: its check after authentication"
        },
        x.policy_hash
            .as_ref()
            .map_or(String::new(), |h| format!(", policy {h}"))
    );
    if x.error.is_some() {
        return o;
    }
    let _ = writeln!(
        o,
        "peer {}: {}",
        x.peer.as_deref().unwrap_or("?"),
        if x.session {
            "session up"
        } else {
            "no session"
        }
    );
    let _ = writeln!(
        o,
        "tracked flow: {}",
        x.tracked
            .as_deref()
            .unwrap_or("none (the next packet is a new flow for the policy)")
    );
    let rule = match (x.rule.as_deref(), &x.tier) {
        (Some(r), Some(t)) => format!(
            "rule `{r}` (tier {t}{})",
            x.line.map_or(String::new(), |l| format!(", line {l}"))
        ),
        (Some(r), None) => format!("the {r}"),
        (None, _) => "?".to_owned(),
    };
    let _ = writeln!(
        o,
        "verdict for a new flow: {} by {rule}",
        x.verdict.as_deref().unwrap_or("?").to_uppercase()
    );
    if let Some(e) = &x.explanation {
        for l in e.lines() {
            let _ = writeln!(o, "  {l}");
        }
    }
    let _ = writeln!(
        o,
        "(both ends enforce the policy: the other member's sidecar makes its own check)"
    );
    o
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use privnet_core::identity::{CaCertificate, CaKey, CaParams, MemberParams, NetworkId};

    /// A directory with two member certificates (`web-1` in `web`, `db-1` in `db`).
    fn members() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let key = CaKey::from_seed([3; 32]);
        let ca = CaCertificate::self_signed(
            &key,
            &CaParams {
                name: "shop".into(),
                network_id: NetworkId([1; 16]),
                prefixes: vec!["10.7.0.0/16".parse().unwrap()],
                routes: vec![],
                not_before: 1_000,
                not_after: 10_000_000_000,
            },
        )
        .unwrap();
        for (i, (name, group)) in [("web-1", "web"), ("db-1", "db")].iter().enumerate() {
            let cert = MemberCertificate::issue(
                &ca,
                &key,
                &MemberParams {
                    name: (*name).into(),
                    addresses: vec![format!("10.7.0.{}", i + 1).parse().unwrap()],
                    routes: vec![],
                    groups: vec![(*group).into()],
                    public_key: [i as u8 + 1; 32],
                    not_before: 2_000,
                    not_after: 9_000_000_000,
                },
            )
            .unwrap();
            std::fs::write(dir.path().join(format!("{name}.crt")), cert.to_pem()).unwrap();
        }
        std::fs::write(dir.path().join("ca.crt"), ca.to_pem()).unwrap();
        dir
    }

    const POLICY: &str = r#"
[[application]]
id = "web-to-db"
action = "allow"
from = { groups = { any = ["web"] } }
to = { groups = { any = ["db"] } }
proto = "tcp"
ports = [5432]

[[test]]
from = "web-1"
to = "db-1"
proto = "tcp"
port = 5432
expect = "allow"
rule = "web-to-db"
"#;

    #[test]
    fn check_uses_the_certificates() {
        let m = members();
        let known = read_members(m.path()).unwrap();
        assert_eq!(known.len(), 2, "the CA certificate is skipped");
        let file = m.path().join("policy.toml");
        std::fs::write(&file, POLICY).unwrap();
        let args = |members: Option<PathBuf>, strict| PolicyCheckArgs {
            file: file.clone(),
            members,
            strict,
        };
        // The test needs the groups from the certificates.
        assert!(!check(&args(None, false)).unwrap());
        assert!(check(&args(Some(m.path().into()), false)).unwrap());
        // A selector no member satisfies is a lint; --strict fails on it.
        std::fs::write(
            &file,
            POLICY.replace("[\"db\"]", "[\"dbb\"]").replace(
                "expect = \"allow\"\nrule = \"web-to-db\"",
                "expect = \"deny\"",
            ),
        )
        .unwrap();
        assert!(check(&args(Some(m.path().into()), false)).unwrap());
        assert!(!check(&args(Some(m.path().into()), true)).unwrap());
        // A broken file fails with its line.
        std::fs::write(&file, "[[application]]\naction = \"permit\"\n").unwrap();
        assert!(!check(&args(None, false)).unwrap());
        assert!(format!("{:#}", load(&file).unwrap_err()).contains("policy.toml:2:"));
    }

    #[test]
    fn explain_runs_offline() {
        let m = members();
        let file = m.path().join("policy.toml");
        std::fs::write(&file, POLICY).unwrap();
        let a = PolicyExplainArgs {
            policy: Some(file),
            socket: None,
            config: None,
            network: None,
            from: "db-1".into(),
            to: "web-1:5432/tcp".into(),
            members: Some(m.path().into()),
            from_groups: vec![],
            to_groups: vec![],
        };
        explain(&a).unwrap();
        let bad = PolicyExplainArgs {
            to: "web-1/tcp".into(),
            ..a
        };
        assert!(explain(&bad).is_err());
    }

    #[test]
    fn targets() {
        let t = parse_target("db-1:5432/tcp").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.proto),
            ("db-1", Some(5432), Protocol::TCP)
        );
        let t = parse_target("[2001:db8::1]:443/tcp").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("2001:db8::1", Some(443)));
        let t = parse_target("db-1/icmp:3:4").unwrap();
        assert_eq!(
            (t.proto, t.icmp, t.port),
            (Protocol::ICMP, Some((3, 4)), None)
        );
        let t = parse_target("10.0.0.1/47").unwrap();
        assert_eq!(
            (t.host.as_str(), t.proto),
            ("10.0.0.1", Protocol::Number(47))
        );
        assert!(parse_target("db-1/tcp").is_err());
        assert!(parse_target("db-1:5432").is_err());
        assert!(parse_target("db-1:99999/udp").is_err());
        assert!(parse_target("db-1:53/icmp").is_err());
        assert!(parse_target("db-1/udp:3").is_err());
    }
}
