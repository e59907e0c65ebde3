//! The `privnet` command line.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context as _, Result};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use clap::{Args, Parser, Subcommand};
use ipnetwork::IpNetwork;
use privnet_core::identity::{
    armor, CaCertificate, CaKey, CaParams, MemberCertificate, MemberParams, NetworkId,
    NoiseKeyPair, TrustStore,
};
use ring::rand::{SecureRandom as _, SystemRandom};
use zeroize::Zeroizing;

pub mod directory;
pub mod member;
mod show;

pub(crate) use show::{cert_show, describe_ca, describe_member};

use crate::config;
use crate::files;
pub use crate::timefmt::utc;

const DAY: u64 = 86_400;
/// Certificates start this many seconds in the past, to tolerate clock skew between members.
const CLOCK_SKEW_ALLOWANCE: u64 = 300;

/// What `privnet --version` prints after the name: the crate version and the wire protocol.
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (protocol v1)");

/// Private encrypted overlay networks for containers.
#[derive(Debug, Parser)]
#[command(name = "privnet", version = VERSION)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands. `up`, `status` and `health` (running the node) are served by `up.rs` and `status.rs`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate a Noise static key pair (X25519).
    Keygen(KeygenArgs),
    /// Manage the network CA.
    #[command(subcommand)]
    Ca(CaCommand),
    /// Issue and inspect member certificates.
    #[command(subcommand)]
    Cert(CertCommand),
    /// Validate configuration files and every file they name; print every problem.
    Check(CheckArgs),
    /// Join the private network(s): TUN device, encrypted sessions, status socket, metrics.
    /// Runs until SIGTERM/SIGINT (exit 1 if a network's driver dies); SIGHUP applies what can
    /// change live and names the keys that need a restart (docs/CONFIG.md).
    Up(RunArgs),
    /// Show a running sidecar's peers, endpoints, handshakes, traffic and drops.
    Status(StatusArgs),
    /// Exit 0 if a running sidecar answers on its status socket and every network's driver runs
    /// (liveness/readiness probe).
    Health(HealthArgs),
    /// Add a member: key pair, certificate and a configuration that lists every member added
    /// before as a peer (and is added as a peer to theirs).
    #[command(subcommand)]
    Member(member::MemberCommand),
    /// Print a shell completion script (generated from this command line).
    Completions(CompletionsArgs),
    /// Print the man page privnet(1), or write it and one page per subcommand into a directory.
    Man(ManArgs),
    /// The network's directory on etcd: list its members, publish a signed policy or revocation
    /// list (docs/DIRECTORY.md).
    #[command(subcommand)]
    Directory(directory::DirectoryCommand),
    /// Check and explain access policies offline (docs/POLICY.md).
    #[command(subcommand)]
    Policy(crate::policy_cli::PolicyCommand),
    /// A live demonstration in this process, no root and no configuration: a small network of
    /// embedded members on loopback UDP with a throwaway CA, real TCP and UDP traffic, a member of
    /// another network refused at the handshake, and a status table.
    Demo(crate::demo::DemoArgs),
}

/// `privnet up`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Configuration file (repeat for each network); defaults to $PRIVNET_CONFIG.
    #[arg(
        long = "config",
        value_name = "FILE",
        env = "PRIVNET_CONFIG",
        value_delimiter = ','
    )]
    pub configs: Vec<PathBuf>,
}

/// Where `privnet status` and `privnet health` find the status socket.
#[derive(Debug, Args)]
pub struct SocketArgs {
    /// The sidecar's configuration (its `[status] socket`, or the default socket of its network);
    /// defaults to $PRIVNET_CONFIG. Without it and --socket, the only socket in the default
    /// directory (/run/privnet as root, else $XDG_RUNTIME_DIR/privnet) is used.
    #[arg(long = "config", value_name = "FILE", env = "PRIVNET_CONFIG")]
    pub config: Option<PathBuf>,
    /// The status socket, instead of reading it from the configuration.
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
}

/// `privnet status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Where the status socket is.
    #[command(flatten)]
    pub socket: SocketArgs,
    /// Print JSON.
    #[arg(long, conflicts_with = "watch")]
    pub json: bool,
    /// Redraw every second, with rates (bytes/s, packets/s) per network and peer.
    #[arg(long)]
    pub watch: bool,
    /// With --watch: stop after this many redraws (default: until interrupted).
    #[arg(long, value_name = "N", requires = "watch")]
    pub count: Option<u64>,
}

/// `privnet health`.
#[derive(Debug, Args)]
pub struct HealthArgs {
    /// Where the status socket is.
    #[command(flatten)]
    pub socket: SocketArgs,
    /// Also require at least one peer with an established session.
    #[arg(long)]
    pub require_peer: bool,
}

/// `privnet completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// `privnet man`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write privnet.1 and privnet-SUBCOMMAND.1 into this directory (created if missing) instead
    /// of printing privnet.1.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}

/// `privnet keygen`.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Private key file to write (mode 0600); the public key goes to FILE.pub and stdout.
    #[arg(long, value_name = "KEY_FILE")]
    pub out: PathBuf,
    /// Overwrite existing files.
    #[arg(long)]
    pub force: bool,
}

/// `privnet ca ...`.
#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Create a new network: CA key, CA certificate and network pre-shared key.
    Init(CaInitArgs),
    /// Create a new CA for an existing network (same name, id, prefixes and PSK; new key).
    Rollover(CaRolloverArgs),
    /// Start a network PSK rotation: write a new PSK next to the current one and print the
    /// three steps that switch every member to it without an outage.
    RotatePsk(CaRotatePskArgs),
}

/// `privnet ca rotate-psk`.
#[derive(Debug, Args)]
pub struct CaRotatePskArgs {
    /// Directory of the CA (ca.crt and network.psk); the new PSK is written there as
    /// network.next.psk (mode 0600).
    #[arg(long, value_name = "DIR")]
    pub ca_dir: PathBuf,
    /// Overwrite an existing network.next.psk (a rotation already started).
    #[arg(long)]
    pub force: bool,
}

/// `privnet ca init`.
#[derive(Debug, Args)]
pub struct CaInitArgs {
    /// Network name.
    #[arg(long)]
    pub name: String,
    /// Overlay prefix (repeat for IPv4 and IPv6), e.g. 10.77.0.0/16 and fd77::/48.
    #[arg(long = "prefix", value_name = "CIDR", required = true)]
    pub prefixes: Vec<IpNetwork>,
    /// Subnet that members may be granted as gateway routes (repeatable). 0.0.0.0/0 or ::/0, only
    /// when given explicitly, lets members be granted the default route: exits (docs/CONFIG.md,
    /// "Default route: egress through an exit").
    #[arg(long = "route", value_name = "CIDR")]
    pub routes: Vec<IpNetwork>,
    /// Directory for ca.key, ca.crt and network.psk (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out_dir: PathBuf,
    /// Validity in days.
    #[arg(long, default_value_t = 730)]
    pub days: u64,
    /// Overwrite existing files.
    #[arg(long)]
    pub force: bool,
}

/// `privnet ca rollover`.
#[derive(Debug, Args)]
pub struct CaRolloverArgs {
    /// Directory of the current CA (ca.crt and network.psk are read).
    #[arg(long, value_name = "DIR")]
    pub ca_dir: PathBuf,
    /// Directory for the new ca.key, ca.crt and a copy of network.psk.
    #[arg(long, value_name = "DIR")]
    pub out_dir: PathBuf,
    /// Validity in days.
    #[arg(long, default_value_t = 730)]
    pub days: u64,
    /// Overwrite existing files.
    #[arg(long)]
    pub force: bool,
}

/// `privnet cert ...`.
#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// Issue a member certificate.
    Issue(CertIssueArgs),
    /// Show a member or CA certificate.
    Show(CertShowArgs),
}

/// `privnet cert issue`.
#[derive(Debug, Args)]
pub struct CertIssueArgs {
    /// Directory holding ca.key and ca.crt.
    #[arg(long, value_name = "DIR")]
    pub ca_dir: PathBuf,
    /// Member name.
    #[arg(long)]
    pub name: String,
    /// Overlay address (repeat for IPv4 and IPv6).
    #[arg(long = "address", value_name = "IP", required = true)]
    pub addresses: Vec<std::net::IpAddr>,
    /// Subnet route the member may act as gateway for (must be inside a CA route; repeatable).
    /// 0.0.0.0/0 or ::/0 makes the member an exit (the CA must list it).
    #[arg(long = "route", value_name = "CIDR")]
    pub routes: Vec<IpNetwork>,
    /// Group (repeatable).
    #[arg(long = "group", value_name = "NAME")]
    pub groups: Vec<String>,
    /// The member's public key: base64, or a file holding it (KEY.pub from `privnet keygen`).
    #[arg(long, value_name = "BASE64_OR_KEYFILE")]
    pub public_key: String,
    /// Validity in days (capped at the CA's expiry).
    #[arg(long, default_value_t = 365)]
    pub days: u64,
    /// Certificate file to write.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// `privnet cert show`.
#[derive(Debug, Args)]
pub struct CertShowArgs {
    /// Certificate file (member or CA).
    pub file: PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Also verify a member certificate against these CA certificates (repeatable).
    #[arg(long = "ca", value_name = "CA_FILE")]
    pub cas: Vec<PathBuf>,
}

/// `privnet check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Configuration file (repeat for each network this process joins).
    #[arg(long = "config", value_name = "FILE", required = true)]
    pub configs: Vec<PathBuf>,
}

/// Parse the process arguments and run; errors are printed to stderr.
pub fn main() -> ExitCode {
    run(Cli::parse())
}

/// Run a parsed command line.
pub fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Keygen(a) => keygen(&a),
        Command::Ca(CaCommand::Init(a)) => ca_init(&a),
        Command::Ca(CaCommand::Rollover(a)) => ca_rollover(&a),
        Command::Ca(CaCommand::RotatePsk(a)) => ca_rotate_psk(&a),
        Command::Cert(CertCommand::Issue(a)) => cert_issue(&a),
        Command::Cert(CertCommand::Show(a)) => cert_show(&a),
        Command::Check(a) => return check(&a),
        Command::Up(a) => up(&a),
        Command::Status(a) => status(&a),
        Command::Health(a) => health(&a),
        Command::Member(c) => member::run(&c),
        Command::Directory(c) => directory::run(&c),
        Command::Completions(a) => completions(&a),
        Command::Man(a) => man(&a),
        Command::Policy(c) => return crate::policy_cli::run(&c),
        Command::Demo(a) => crate::demo::demo(&a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn up(a: &RunArgs) -> Result<()> {
    if a.configs.is_empty() {
        bail!("no configuration: pass --config FILE or set PRIVNET_CONFIG");
    }
    let cfg = match config::load(&a.configs, now_unix()) {
        Ok(c) => c,
        Err(problems) => {
            for p in &problems {
                eprintln!("{p}");
            }
            bail!(
                "{} problem(s) in the configuration; nothing started",
                problems.len()
            );
        }
    };
    let audit = match &cfg.log.audit {
        Some(path) => Some(crate::audit::AuditLog::open(path)?),
        None => None,
    };
    let log = crate::logging::init(&cfg.log, audit);
    crate::up::up(cfg, a.configs.clone(), log)
}

fn status_socket(a: &SocketArgs) -> Result<PathBuf> {
    if let Some(s) = &a.socket {
        return Ok(s.clone());
    }
    let Some(path) = &a.config else {
        return crate::status::find_default_socket();
    };
    crate::status::socket_of_config(path)
}

fn status(a: &StatusArgs) -> Result<()> {
    let socket = status_socket(&a.socket)?;
    if a.watch {
        return crate::status::watch(&socket, a.count);
    }
    let nets = crate::status::query_status(&socket)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&nets)?);
    } else {
        print!("{}", crate::status::format_status(&nets));
    }
    Ok(())
}

fn health(a: &HealthArgs) -> Result<()> {
    let nets = crate::status::query_status(&status_socket(&a.socket)?)?;
    crate::status::check_health(&nets, a.require_peer)?;
    println!("ok");
    Ok(())
}

fn completions(a: &CompletionsArgs) -> Result<()> {
    use clap::CommandFactory as _;
    let mut cmd = Cli::command();
    clap_complete::generate(a.shell, &mut cmd, "privnet", &mut std::io::stdout());
    Ok(())
}

fn man(a: &ManArgs) -> Result<()> {
    use clap::CommandFactory as _;
    let cmd = Cli::command();
    match &a.out_dir {
        None => {
            let mut out = Vec::new();
            clap_mangen::Man::new(cmd)
                .render(&mut out)
                .context("rendering the man page")?;
            std::io::Write::write_all(&mut std::io::stdout(), &out)
                .context("writing the man page to stdout")?;
        }
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("{}: cannot create directory", dir.display()))?;
            clap_mangen::generate_to(cmd, dir)
                .with_context(|| format!("writing the man pages into {}", dir.display()))?;
            eprintln!("wrote the man pages into {}", dir.display());
        }
    }
    Ok(())
}

pub(crate) fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub(crate) fn random<const N: usize>() -> Result<Zeroizing<[u8; N]>> {
    let mut buf = Zeroizing::new([0u8; N]);
    SystemRandom::new()
        .fill(buf.as_mut())
        .map_err(|_| anyhow!("the operating system's random number generator failed"))?;
    Ok(buf)
}

fn days_to_secs(days: u64, flag: &str) -> Result<u64> {
    if days == 0 || days > 36_500 {
        bail!("{flag}: expected a number of days between 1 and 36500; found {days}");
    }
    Ok(days * DAY)
}

fn keygen(a: &KeygenArgs) -> Result<()> {
    let pair = NoiseKeyPair::from_random(*random::<32>()?);
    let public = STANDARD.encode(pair.public());
    let pub_path = with_suffix(&a.out, ".pub");
    files::write_secret(&a.out, &pair.to_pem(), a.force)?;
    files::write_public(&pub_path, &format!("{public}\n"), a.force)?;
    eprintln!(
        "wrote private key {} (mode 0600) and public key {}",
        a.out.display(),
        pub_path.display()
    );
    println!("{public}");
    Ok(())
}

pub(crate) fn with_suffix(p: &Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn write_ca(
    dir: &Path,
    key: &CaKey,
    cert: &CaCertificate,
    psk_b64: &str,
    force: bool,
) -> Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("{}: cannot create directory", dir.display()))?;
    files::write_secret(&dir.join("ca.key"), &key.to_pem(), force)?;
    files::write_public(&dir.join("ca.crt"), &cert.to_pem(), force)?;
    files::write_secret(&dir.join("network.psk"), &format!("{psk_b64}\n"), force)?;
    Ok(())
}

fn ca_init(a: &CaInitArgs) -> Result<()> {
    let now = now_unix();
    let validity = days_to_secs(a.days, "--days")?;
    let key = CaKey::from_seed(*random::<32>()?);
    let id = random::<16>()?;
    let params = CaParams {
        name: a.name.clone(),
        network_id: NetworkId(*id),
        prefixes: a.prefixes.clone(),
        routes: a.routes.clone(),
        not_before: now.saturating_sub(CLOCK_SKEW_ALLOWANCE),
        not_after: now + validity,
    };
    let cert = CaCertificate::self_signed(&key, &params)
        .map_err(|e| anyhow!("{}", flag_for(&e.to_string())))?;
    let psk = Zeroizing::new(STANDARD.encode(*random::<32>()?));
    write_ca(&a.out_dir, &key, &cert, &psk, a.force)?;
    print!("{}", describe_ca(&cert));
    println!(
        "wrote {0}/ca.key (mode 0600, keep offline), {0}/ca.crt, {0}/network.psk (mode 0600)",
        a.out_dir.display()
    );
    Ok(())
}

/// Map core parameter names to the command-line flags that set them.
fn flag_for(msg: &str) -> String {
    msg.replace("invalid name", "--name: invalid")
        .replace("invalid prefixes", "--prefix: invalid")
        .replace("invalid routes", "--route: invalid")
        .replace("invalid groups", "--group: invalid")
        .replace("invalid addresses", "--address: invalid")
        .replace("invalid not_after", "--days: invalid")
        .replace("invalid public_key", "--public-key: invalid")
}

fn read_ca_cert(path: &Path) -> Result<CaCertificate> {
    let text = files::read_text(path)?;
    CaCertificate::from_pem(&text)
        .with_context(|| format!("{}: not a CA certificate", path.display()))
}

fn ca_rollover(a: &CaRolloverArgs) -> Result<()> {
    let now = now_unix();
    let validity = days_to_secs(a.days, "--days")?;
    let old = read_ca_cert(&a.ca_dir.join("ca.crt"))?;
    let psk_path = a.ca_dir.join("network.psk");
    let psk = files::read_secret(&psk_path)?;
    let key = CaKey::from_seed(*random::<32>()?);
    let params = CaParams {
        name: old.name().to_owned(),
        network_id: old.network_id(),
        prefixes: old.prefixes().to_vec(),
        routes: old.routes().to_vec(),
        not_before: now.saturating_sub(CLOCK_SKEW_ALLOWANCE),
        not_after: now + validity,
    };
    let cert = CaCertificate::self_signed(&key, &params).map_err(|e| anyhow!("{e}"))?;
    write_ca(&a.out_dir, &key, &cert, psk.trim(), a.force)?;
    print!("{}", describe_ca(&cert));
    println!(
        "wrote {}/ca.key, ca.crt, network.psk. Next: add {}/ca.crt to every member's \
         node.ca_certificates (keep the old one), re-issue member certificates with the new CA, \
         then remove the old CA.",
        a.out_dir.display(),
        a.out_dir.display()
    );
    Ok(())
}

/// File name of the next PSK that `ca rotate-psk` writes into the CA directory.
pub const NEXT_PSK_FILE: &str = "network.next.psk";

fn ca_rotate_psk(a: &CaRotatePskArgs) -> Result<()> {
    let ca = read_ca_cert(&a.ca_dir.join("ca.crt"))?;
    let current = a.ca_dir.join("network.psk");
    // The current PSK must be there and readable: the procedure below keeps accepting it.
    files::read_secret(&current)?;
    let next = a.ca_dir.join(NEXT_PSK_FILE);
    let psk = Zeroizing::new(STANDARD.encode(*random::<32>()?));
    files::write_secret(&next, &format!("{}\n", psk.as_str()), a.force)?;
    let (cur, new) = (current.display(), next.display());
    println!(
        "wrote {new} (mode 0600): the next PSK of network `{}`.

Rotate it member by member, reloading each (SIGHUP) after each step; handshakes keep working
throughout (docs/CONFIG.md, \"Rotating the network PSK\"):

1. Accept the new PSK: copy {new} to every member (mode 0600) and add it to
   `[node] network_psk_accept = [\"network.next.psk\"]`; reload. Wait until every member has it.
2. Send with the new PSK, accept the old: on every member set `network_psk = \"network.next.psk\"`
   and `network_psk_accept = [\"network.psk\"]` (the old file); reload. Wait until every member has it.
3. Drop the old PSK: remove `network_psk_accept` on every member; reload. Then replace {cur} with
   {new} here (`mv {new} {cur}`), so that `privnet ca rollover` and new members get the new one.

Why: every member, past ones included, holds the old PSK and can compute mac1 and earn cookies
(revoked members too); after step 3 their handshakes are dropped as bad_mac1 before any work.",
        ca.name()
    );
    Ok(())
}

fn parse_public_key(arg: &str) -> Result<[u8; 32]> {
    const EXPECTED: &str =
        "--public-key: expected base64 of a 32-byte X25519 public key, or a file \
                            holding one (KEY.pub written by `privnet keygen`)";
    if let Some(k) = STANDARD
        .decode(arg.trim().as_bytes())
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
    {
        return Ok(k);
    }
    let path = Path::new(arg);
    if !path.exists() {
        bail!("{EXPECTED}; `{arg}` is neither");
    }
    let text = files::read_text(path)?;
    if armor::label(&text) == Some(armor::PRIVATE_KEY) {
        bail!(
            "{}: this is a private key; pass the public key file ({}) instead",
            path.display(),
            with_suffix(path, ".pub").display()
        );
    }
    STANDARD
        .decode(text.trim().as_bytes())
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
        .ok_or_else(|| anyhow!("{}: {EXPECTED}", path.display()))
}

fn cert_issue(a: &CertIssueArgs) -> Result<()> {
    let public_key = parse_public_key(&a.public_key)?;
    let cert = issue_member(&MemberSpec {
        ca_dir: &a.ca_dir,
        name: &a.name,
        addresses: &a.addresses,
        routes: &a.routes,
        groups: &a.groups,
        public_key,
        days: a.days,
    })?;
    files::write_public(&a.out, &cert.to_pem(), true)?;
    print!("{}", describe_member(&cert));
    println!("wrote {}", a.out.display());
    Ok(())
}

/// What a member certificate is issued for (`cert issue`, `member add`).
pub(crate) struct MemberSpec<'a> {
    pub ca_dir: &'a Path,
    pub name: &'a str,
    pub addresses: &'a [std::net::IpAddr],
    pub routes: &'a [IpNetwork],
    pub groups: &'a [String],
    pub public_key: [u8; 32],
    pub days: u64,
}

/// Issue a member certificate with the CA in `spec.ca_dir` (errors name the flags).
pub(crate) fn issue_member(a: &MemberSpec<'_>) -> Result<MemberCertificate> {
    let now = now_unix();
    let validity = days_to_secs(a.days, "--days")?;
    let ca = read_ca_cert(&a.ca_dir.join("ca.crt"))?;
    let key_path = a.ca_dir.join("ca.key");
    let key_text = files::read_secret(&key_path)?;
    let key = CaKey::from_pem(&key_text)
        .with_context(|| format!("{}: not a CA key", key_path.display()))?;
    if !ca.matches_key(&key) {
        bail!(
            "{}: this key does not belong to {}/ca.crt",
            key_path.display(),
            a.ca_dir.display()
        );
    }
    if !ca.is_valid_at(now) {
        bail!(
            "{}/ca.crt: the CA is not valid now (valid {} to {})",
            a.ca_dir.display(),
            utc(ca.not_before()),
            utc(ca.not_after())
        );
    }
    let public_key = a.public_key;
    let mut not_after = now + validity;
    if not_after > ca.not_after() {
        eprintln!(
            "warning: --days {} would outlive the CA; the certificate expires with the CA at {}",
            a.days,
            utc(ca.not_after())
        );
        not_after = ca.not_after();
    }
    let params = MemberParams {
        name: a.name.to_owned(),
        addresses: a.addresses.to_vec(),
        routes: a.routes.to_vec(),
        groups: a.groups.to_vec(),
        public_key,
        not_before: now
            .saturating_sub(CLOCK_SKEW_ALLOWANCE)
            .max(ca.not_before()),
        not_after,
    };
    let cert = MemberCertificate::issue(&ca, &key, &params).map_err(|e| {
        use privnet_core::identity::IssueError;
        match e {
            IssueError::AddressOutsidePrefixes(addr) => anyhow!(
                "--address {addr}: expected an address inside the network's prefixes ({})",
                join(ca.prefixes())
            ),
            IssueError::RouteNotAllowed(r) => anyhow!(
                "--route {r}: expected a subnet inside the CA's routes ({}); add routes with `privnet ca init --route`",
                if ca.routes().is_empty() { "none".to_owned() } else { join(ca.routes()) }
            ),
            other => anyhow!("{}", flag_for(&other.to_string())),
        }
    })?;
    Ok(cert)
}

fn join<T: ToString>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn check(a: &CheckArgs) -> ExitCode {
    match config::load(&a.configs, now_unix()) {
        Ok(cfg) => {
            for n in &cfg.networks {
                let c = &n.identity.certificate;
                println!(
                    "ok: {}: network `{}` ({}), member `{}` ({}), {} peer(s), listen {}, cipher {}, certificate expires {}",
                    n.file.display(),
                    n.network,
                    n.network_id,
                    c.name(),
                    join(c.addresses()),
                    n.peers.len(),
                    n.listen,
                    n.cipher,
                    utc(c.not_after().min(n.identity.trust.cas().iter().map(CaCertificate::not_after).max().unwrap_or(0)))
                );
                match &n.policy {
                    Some(p) => println!("    policy {}", p.describe()),
                    None => println!("    no policy: members of the network talk freely"),
                }
                for e in &n.exposures {
                    println!("    {}", e.describe());
                }
            }
            ExitCode::SUCCESS
        }
        Err(problems) => {
            for p in &problems {
                eprintln!("error: {p}");
            }
            eprintln!("{} problem(s) found", problems.len());
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_parses() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
    }
}
