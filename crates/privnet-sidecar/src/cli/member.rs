//! `privnet member add`: a new member's key pair, certificate and configuration in one step, with
//! the right peer keys. The members added so far are recorded in the CA directory
//! (`CA_DIR/members/NAME.toml`: name, public key, addresses, endpoint, configuration file), so that
//! the new member's configuration lists every earlier member as a peer and each earlier member's
//! configuration gets the new one appended as a `[[peer]]`: no key is ever copied by hand.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use clap::{Args, Subcommand};
use ipnetwork::IpNetwork;
use privnet_core::identity::{CaCertificate, NoiseKeyPair};

use super::{describe_member, issue_member, random, with_suffix, MemberSpec};
use crate::files;

/// Directory inside the CA directory where `member add` records the members.
pub const MEMBERS_DIR: &str = "members";

/// `privnet member ...`.
#[derive(Debug, Subcommand)]
pub enum MemberCommand {
    /// Create a member: key pair, certificate and configuration (peers: every member added
    /// before); append it as a peer to the configuration of every member added before.
    Add(MemberAddArgs),
}

/// `privnet member add`.
#[derive(Debug, Args)]
pub struct MemberAddArgs {
    /// Directory of the CA (ca.key, ca.crt, network.psk); members are recorded in DIR/members/.
    #[arg(long, value_name = "DIR")]
    pub ca_dir: PathBuf,
    /// Member name.
    #[arg(long)]
    pub name: String,
    /// Overlay address (repeat for IPv4 and IPv6).
    #[arg(long = "address", value_name = "IP", required = true)]
    pub addresses: Vec<IpAddr>,
    /// Subnet route the member may act as gateway for (must be inside a CA route; repeatable).
    /// 0.0.0.0/0 or ::/0 makes the member an exit (the CA must list it).
    #[arg(long = "route", value_name = "CIDR")]
    pub routes: Vec<IpNetwork>,
    /// Group (repeatable).
    #[arg(long = "group", value_name = "NAME")]
    pub groups: Vec<String>,
    /// Where the other members reach this one on the underlay (host:port, IP or DNS name).
    /// Without it, the others wait to be contacted by it.
    #[arg(long, value_name = "HOST:PORT")]
    pub endpoint: Option<String>,
    /// UDP listen address (default 0.0.0.0 and the port of --endpoint, else 0.0.0.0:51820).
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<std::net::SocketAddr>,
    /// Directory for private.key, private.key.pub, member.crt and NAME.toml (default: ./NAME).
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
    /// Certificate validity in days (capped at the CA's expiry).
    #[arg(long, default_value_t = 365)]
    pub days: u64,
}

/// A member as recorded in `CA_DIR/members/NAME.toml`.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Recorded {
    name: String,
    public_key: String,
    /// Overlay addresses and routes (the peer's `addresses`).
    addresses: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    endpoint: Option<String>,
    /// The member's configuration file (absolute).
    config: PathBuf,
}

/// Run a `privnet member` command.
///
/// # Errors
/// What went wrong, naming the file or flag.
pub fn run(c: &MemberCommand) -> Result<()> {
    match c {
        MemberCommand::Add(a) => add(a),
    }
}

fn add(a: &MemberAddArgs) -> Result<()> {
    if let Some(e) = &a.endpoint {
        check_endpoint(e)?;
    }
    let ca_text = files::read_text(&a.ca_dir.join("ca.crt"))?;
    let ca = CaCertificate::from_pem(&ca_text)
        .with_context(|| format!("{}/ca.crt: not a CA certificate", a.ca_dir.display()))?;
    // The PSK must be there: the configuration names it.
    files::read_secret(&a.ca_dir.join("network.psk"))?;
    let members_dir = a.ca_dir.join(MEMBERS_DIR);
    let earlier = recorded_members(&members_dir)?;
    let record_path = members_dir.join(format!("{}.toml", a.name));
    if record_path.exists() || earlier.iter().any(|m| m.name == a.name) {
        bail!(
            "--name {}: already a member ({}); choose another name",
            a.name,
            record_path.display()
        );
    }

    let out_dir = a.out_dir.clone().unwrap_or_else(|| PathBuf::from(&a.name));
    std::fs::create_dir_all(&out_dir)
        .with_context(|| format!("{}: cannot create directory", out_dir.display()))?;
    let key_path = out_dir.join("private.key");
    let config_path = out_dir.join(format!("{}.toml", a.name));
    for p in [&key_path, &config_path] {
        if p.exists() {
            bail!(
                "{}: exists; `member add` never overwrites a member's files",
                p.display()
            );
        }
    }

    let pair = NoiseKeyPair::from_random(*random::<32>()?);
    let cert = issue_member(&MemberSpec {
        ca_dir: &a.ca_dir,
        name: &a.name,
        addresses: &a.addresses,
        routes: &a.routes,
        groups: &a.groups,
        public_key: pair.public(),
        days: a.days,
    })?;
    let public = STANDARD.encode(pair.public());
    files::write_secret(&key_path, &pair.to_pem(), false)?;
    files::write_public(
        &with_suffix(&key_path, ".pub"),
        &format!("{public}\n"),
        false,
    )?;
    files::write_public(&out_dir.join("member.crt"), &cert.to_pem(), false)?;

    let abs_out = std::fs::canonicalize(&out_dir)
        .with_context(|| format!("{}: cannot resolve", out_dir.display()))?;
    let abs_ca = std::fs::canonicalize(&a.ca_dir)
        .with_context(|| format!("{}: cannot resolve", a.ca_dir.display()))?;
    let to_ca = relative(&abs_out, &abs_ca);
    let listen = a.listen.map(|l| l.to_string()).unwrap_or_else(|| {
        let port = a
            .endpoint
            .as_deref()
            .and_then(|e| e.rsplit_once(':'))
            .map_or("51820", |(_, p)| p);
        format!("0.0.0.0:{port}")
    });
    let me = Recorded {
        name: a.name.clone(),
        public_key: public,
        addresses: a
            .addresses
            .iter()
            .map(ToString::to_string)
            .chain(a.routes.iter().map(ToString::to_string))
            .collect(),
        endpoint: a.endpoint.clone(),
        config: abs_out.join(format!("{}.toml", a.name)),
    };

    let mut text = format!(
        "# privnet configuration of {name} in network {net}, written by `privnet member add`
# (docs/CONFIG.md). Relative paths are relative to this file's directory. Each later
# `privnet member add` with the same CA directory appends its member as a [[peer]] below.

[node]
network = {net}
private_key = \"private.key\"
certificate = \"member.crt\"
ca_certificates = [{ca}]
network_psk = {psk}
listen = {listen}
",
        name = a.name,
        net = quoted(ca.name()),
        ca = quoted(&path_str(&to_ca.join("ca.crt"))),
        psk = quoted(&path_str(&to_ca.join("network.psk"))),
        listen = quoted(&listen),
    );
    for m in &earlier {
        text.push_str(&peer_block(m));
    }
    files::write_public(&config_path, &text, false)?;

    std::fs::create_dir_all(&members_dir)
        .with_context(|| format!("{}: cannot create directory", members_dir.display()))?;
    let record = toml::to_string(&me).context("encoding the member record")?;
    files::write_public(&record_path, &record, false)?;

    print!("{}", describe_member(&cert));
    println!(
        "wrote {0}/private.key (mode 0600), {0}/private.key.pub, {0}/member.crt, {1} ({2} peer(s)), {3}",
        out_dir.display(),
        config_path.display(),
        earlier.len(),
        record_path.display()
    );
    for m in &earlier {
        match append_peer(&m.config, &me) {
            Ok(true) => println!("added {} as a peer to {}", a.name, m.config.display()),
            Ok(false) => {}
            Err(e) => eprintln!(
                "warning: {e:#}; add this to {}'s configuration by hand:\n{}",
                m.name,
                peer_block(&me)
            ),
        }
    }
    Ok(())
}

/// `host:port` with a port 1-65535.
fn check_endpoint(e: &str) -> Result<()> {
    let ok = e
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
    if !ok {
        bail!("--endpoint: expected host:port (an IP address, [IPv6] or DNS name, and a port 1-65535); found `{e}`");
    }
    Ok(())
}

fn recorded_members(dir: &Path) -> Result<Vec<Recorded>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("{}: cannot list", dir.display())),
    };
    let mut paths = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("{}: cannot list", dir.display()))?;
        let p = entry.path();
        if p.extension().is_some_and(|x| x == "toml") {
            paths.push(p);
        }
    }
    paths.sort();
    paths
        .iter()
        .map(|p| {
            let text = files::read_text(p)?;
            toml::from_str::<Recorded>(&text).with_context(|| {
                format!(
                    "{}: expected a member record written by `privnet member add`",
                    p.display()
                )
            })
        })
        .collect()
}

fn peer_block(m: &Recorded) -> String {
    let mut s = format!(
        "\n[[peer]]\nname = {}\npublic_key = {}\naddresses = [{}]\n",
        quoted(&m.name),
        quoted(&m.public_key),
        m.addresses
            .iter()
            .map(|a| quoted(a))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if let Some(e) = &m.endpoint {
        let _ = writeln!(s, "endpoint = {}", quoted(e));
    }
    s
}

/// Append `peer` to the configuration `file` unless its key is already there; `Ok(true)` if
/// appended.
fn append_peer(file: &Path, peer: &Recorded) -> Result<bool> {
    let text = files::read_text(file)?;
    if text.contains(&peer.public_key) {
        return Ok(false);
    }
    let mut new = text;
    if !new.ends_with('\n') {
        new.push('\n');
    }
    new.push_str(&peer_block(peer));
    files::write_public(file, &new, true)?;
    Ok(true)
}

/// A TOML basic string.
fn quoted(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// `to` relative to the directory `from` (both absolute and canonical).
fn relative(from: &Path, to: &Path) -> PathBuf {
    let f: Vec<Component<'_>> = from.components().collect();
    let t: Vec<Component<'_>> = to.components().collect();
    let common = f.iter().zip(&t).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..f.len() {
        out.push("..");
    }
    for c in &t[common..] {
        out.push(c);
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths() {
        assert_eq!(
            relative(Path::new("/a/b/m"), Path::new("/a/b/ca")),
            PathBuf::from("../ca")
        );
        assert_eq!(
            relative(Path::new("/a/b"), Path::new("/a/b/ca")),
            PathBuf::from("ca")
        );
        assert_eq!(
            relative(Path::new("/x/y"), Path::new("/a")),
            PathBuf::from("../../a")
        );
        assert_eq!(
            relative(Path::new("/a"), Path::new("/a")),
            PathBuf::from(".")
        );
    }

    #[test]
    fn endpoints_are_checked() {
        assert!(check_endpoint("member-b:51820").is_ok());
        assert!(check_endpoint("[fd00::1]:9").is_ok());
        assert!(check_endpoint("member-b").is_err());
        assert!(check_endpoint(":51820").is_err());
        assert!(check_endpoint("b:0").is_err());
        assert!(check_endpoint("b:70000").is_err());
    }
}
