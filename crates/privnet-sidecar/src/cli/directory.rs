//! `privnet directory members | publish-policy | revoke`: look at a network's directory on etcd,
//! and publish signed bundles to it (docs/DIRECTORY.md). The bundles are signed here with the
//! network CA key (the CA directory of `privnet ca init`); members take a bundle only if it
//! verifies against their CA and is newer than the one they hold, so the version is the one
//! found in the directory + 1 unless `--version` says otherwise.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use clap::{Args, Subcommand};
use privnet_core::directory::{Layout, MemberRecord};
use privnet_core::identity::{
    Bundle, BundleKind, CaCertificate, CaKey, MemberCertificate, RevocationList, TrustStore,
};
use privnet_core::io::directory::DirectoryAccess;

use crate::{config, files};

/// `privnet directory ...`.
#[derive(Debug, Subcommand)]
pub enum DirectoryCommand {
    /// List the members registered in the network's directory: name, overlay addresses,
    /// underlay endpoints, capabilities, whether the certificate verifies.
    Members(MembersArgs),
    /// Sign a policy file with the network CA key and publish it: every member enforces it
    /// within seconds (after checking the signature and that the version is newer).
    PublishPolicy(PublishPolicyArgs),
    /// Add certificates to the network's signed revocation list and publish it: every member
    /// cuts them off (sessions end, records are ignored).
    Revoke(RevokeArgs),
}

/// Where the directory is.
#[derive(Debug, Args)]
pub struct Where {
    /// A member configuration with a `[directory]` section (its endpoints, prefix and
    /// credentials are used).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["endpoint", "network"])]
    pub config: Option<PathBuf>,
    /// etcd endpoint HOST:PORT (repeat for several), instead of --config.
    #[arg(long, value_name = "HOST:PORT")]
    pub endpoint: Vec<String>,
    /// Network name (the default prefix is /privnet/NETWORK), instead of --config.
    #[arg(long)]
    pub network: Option<String>,
    /// Key prefix, instead of the default /privnet/NETWORK.
    #[arg(long)]
    pub prefix: Option<String>,
}

/// `privnet directory members`.
#[derive(Debug, Args)]
pub struct MembersArgs {
    /// Where the directory is.
    #[command(flatten)]
    pub place: Where,
    /// CA certificate to verify the records' certificates with (default: the configuration's).
    #[arg(long, value_name = "FILE")]
    pub ca_certificate: Vec<PathBuf>,
    /// JSON output.
    #[arg(long)]
    pub json: bool,
}

/// `privnet directory publish-policy`.
#[derive(Debug, Args)]
pub struct PublishPolicyArgs {
    /// Where the directory is.
    #[command(flatten)]
    pub place: Where,
    /// Directory of the CA (ca.key, ca.crt).
    #[arg(long, value_name = "DIR")]
    pub ca_dir: PathBuf,
    /// The policy file (checked before it is signed).
    #[arg(long, value_name = "FILE")]
    pub policy: PathBuf,
    /// Bundle version (default: the published one + 1).
    #[arg(long)]
    pub version: Option<u64>,
}

/// `privnet directory revoke`.
#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// Where the directory is.
    #[command(flatten)]
    pub place: Where,
    /// Directory of the CA (ca.key, ca.crt).
    #[arg(long, value_name = "DIR")]
    pub ca_dir: PathBuf,
    /// Certificate file to revoke (repeat for several).
    #[arg(long, value_name = "FILE")]
    pub certificate: Vec<PathBuf>,
    /// Bundle version (default: the published one + 1).
    #[arg(long)]
    pub version: Option<u64>,
}

/// Run a `privnet directory` command.
///
/// # Errors
/// Any failure, in words.
pub fn run(c: &DirectoryCommand) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    match c {
        DirectoryCommand::Members(a) => rt.block_on(members(a)),
        DirectoryCommand::PublishPolicy(a) => rt.block_on(publish_policy(a)),
        DirectoryCommand::Revoke(a) => rt.block_on(revoke(a)),
    }
}

/// The directory's access, layout and (with --config) trust store.
fn place(w: &Where) -> Result<(DirectoryAccess, Layout, Option<TrustStore>)> {
    if let Some(path) = &w.config {
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let cfg = config::load(std::slice::from_ref(path), unix).map_err(|problems| {
            let all: Vec<String> = problems.iter().map(ToString::to_string).collect();
            anyhow::anyhow!("{}", all.join("\n"))
        })?;
        let net = cfg.networks.into_iter().next().context("no network")?;
        let d = net
            .directory
            .with_context(|| format!("{}: no [directory] section", path.display()))?;
        return Ok((
            DirectoryAccess {
                endpoints: d.endpoints,
                credentials: d.credentials,
            },
            Layout::new(&d.prefix),
            Some(net.identity.trust),
        ));
    }
    if w.endpoint.is_empty() {
        bail!(
            "say where the directory is: --config FILE, or --endpoint HOST:PORT and --network NAME"
        );
    }
    let prefix = match (&w.prefix, &w.network) {
        (Some(p), _) => p.clone(),
        (None, Some(n)) => Layout::default_prefix(n),
        (None, None) => bail!("--network NAME (or --prefix PREFIX) with --endpoint"),
    };
    let endpoints = w
        .endpoint
        .iter()
        .map(|e| {
            if e.starts_with("http://") {
                e.clone()
            } else {
                format!("http://{e}")
            }
        })
        .collect();
    Ok((
        DirectoryAccess {
            endpoints,
            credentials: None,
        },
        Layout::new(&prefix),
        None,
    ))
}

fn read_ca(dir: &Path) -> Result<(CaCertificate, CaKey)> {
    let cert_path = dir.join("ca.crt");
    let ca = CaCertificate::from_pem(&files::read_text(&cert_path)?)
        .with_context(|| format!("{}: not a CA certificate", cert_path.display()))?;
    let key_path = dir.join("ca.key");
    let key = CaKey::from_pem(&files::read_secret(&key_path)?)
        .with_context(|| format!("{}: not a CA key", key_path.display()))?;
    if !ca.matches_key(&key) {
        bail!(
            "{}: this key does not belong to {}",
            key_path.display(),
            cert_path.display()
        );
    }
    Ok((ca, key))
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The version of the bundle published at `key` (0 if none or unreadable).
async fn published_version(access: &DirectoryAccess, key: &str) -> Result<u64> {
    Ok(access
        .read(key)
        .await
        .map_err(anyhow::Error::msg)?
        .and_then(|b| Bundle::from_bytes(&b).ok())
        .map_or(0, |b| b.version()))
}

async fn members(a: &MembersArgs) -> Result<()> {
    let (access, layout, trust) = place(&a.place)?;
    let trust = if a.ca_certificate.is_empty() {
        trust
    } else {
        let cas = a
            .ca_certificate
            .iter()
            .map(|p| {
                CaCertificate::from_pem(&files::read_text(p)?)
                    .with_context(|| format!("{}: not a CA certificate", p.display()))
            })
            .collect::<Result<Vec<_>>>()?;
        Some(TrustStore::new(cas).context("the CA certificates")?)
    };
    // The revocations published in the directory count too (if they verify).
    let trust = match (
        trust,
        access.read(&layout.bundle(BundleKind::Revocations)).await,
    ) {
        (Some(t), Ok(Some(bytes))) => {
            match t.verify_bundle(&bytes, BundleKind::Revocations, 0, unix_now()) {
                Ok(v) => match RevocationList::parse(&String::from_utf8_lossy(&v.payload)) {
                    Ok(list) => {
                        let mut all = t.revocations().clone();
                        for fp in list.iter() {
                            all.insert(*fp);
                        }
                        Some(t.with_revocations(all))
                    }
                    Err(_) => Some(t),
                },
                Err(e) => {
                    eprintln!("warning: the published revocation bundle is refused: {e}");
                    Some(t)
                }
            }
        }
        (t, _) => t,
    };
    let (revision, kvs) = access
        .read_prefix(&layout.members())
        .await
        .map_err(anyhow::Error::msg)?;
    let now = unix_now();
    let mut rows = Vec::new();
    for kv in &kvs {
        let name = kv.key.strip_prefix(&layout.members()).unwrap_or(&kv.key);
        let row = match MemberRecord::from_bytes(&kv.value) {
            Ok((record, cert)) => {
                let verified = trust.as_ref().map(|t| {
                    t.verify_certificate(&cert, None, now)
                        .map_or_else(|e| format!("REFUSED: {e}"), |_| "ok".to_owned())
                });
                serde_json::json!({
                    "name": name,
                    "certificate_name": cert.name(),
                    "addresses": cert.addresses().iter().map(ToString::to_string).collect::<Vec<_>>(),
                    "endpoints": record.endpoints.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    "capabilities": record.capabilities,
                    "certificate": verified.unwrap_or_else(|| "not checked (no CA given)".to_owned()),
                    "mod_revision": kv.mod_revision,
                })
            }
            Err(e) => serde_json::json!({
                "name": name,
                "error": format!("malformed record ({}): {e}", e.label()),
                "mod_revision": kv.mod_revision,
            }),
        };
        rows.push(row);
    }
    if a.json {
        let doc = serde_json::json!({
            "prefix": layout.members(),
            "revision": revision,
            "members": rows,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    println!(
        "{} member(s) under {} (etcd revision {revision})",
        rows.len(),
        layout.members()
    );
    for r in rows {
        let s = |k: &str| r.get(k).map(ToString::to_string).unwrap_or_default();
        if let Some(e) = r.get("error") {
            println!("  {} — {}", s("name"), e.as_str().unwrap_or_default());
        } else {
            println!(
                "  {} addresses {} endpoints {} capabilities {} certificate {}",
                r.get("name").and_then(|n| n.as_str()).unwrap_or("?"),
                s("addresses"),
                s("endpoints"),
                s("capabilities"),
                r.get("certificate").and_then(|n| n.as_str()).unwrap_or("?"),
            );
        }
    }
    Ok(())
}

async fn publish_policy(a: &PublishPolicyArgs) -> Result<()> {
    let (access, layout, _) = place(&a.place)?;
    let (ca, key) = read_ca(&a.ca_dir)?;
    // Check (compile) the policy first: a policy members would refuse is not published.
    let policy = config::load_policy(&a.policy).map_err(|problems| {
        let all: Vec<String> = problems.iter().map(ToString::to_string).collect();
        anyhow::anyhow!("the policy is not published:\n{}", all.join("\n"))
    })?;
    let text = files::read_policy(&a.policy)?;
    let bundle_key = layout.bundle(BundleKind::Policy);
    let version = match a.version {
        Some(v) => v,
        None => published_version(&access, &bundle_key).await? + 1,
    };
    let bundle = Bundle::sign_with_ca(
        &ca,
        &key,
        BundleKind::Policy,
        version,
        unix_now(),
        text.into_bytes(),
    )
    .context("signing the policy")?;
    let rev = access
        .write(&bundle_key, bundle.to_bytes())
        .await
        .map_err(anyhow::Error::msg)?;
    println!(
        "published policy {} (hash {}) as version {version} at {bundle_key} (etcd revision {rev}), signed by ca:{}",
        a.policy.display(),
        policy.hash(),
        ca.name()
    );
    Ok(())
}

async fn revoke(a: &RevokeArgs) -> Result<()> {
    if a.certificate.is_empty() {
        bail!("--certificate FILE: at least one certificate to revoke");
    }
    let (access, layout, _) = place(&a.place)?;
    let (ca, key) = read_ca(&a.ca_dir)?;
    let trust = TrustStore::new(vec![ca.clone()]).context("the CA certificate")?;
    let bundle_key = layout.bundle(BundleKind::Revocations);
    // Start from the list published (if it verifies), so that a revocation is never undone.
    let (mut list, published) = match access.read(&bundle_key).await.map_err(anyhow::Error::msg)? {
        Some(bytes) => {
            let v = trust
                .verify_bundle(&bytes, BundleKind::Revocations, 0, unix_now())
                .context("the published revocation bundle does not verify against this CA; refusing to replace it")?;
            let text = String::from_utf8_lossy(&v.payload).into_owned();
            (
                RevocationList::parse(&text).context("the published revocation list")?,
                v.version,
            )
        }
        None => (RevocationList::new(), 0),
    };
    for path in &a.certificate {
        let cert = MemberCertificate::from_pem(&files::read_text(path)?)
            .with_context(|| format!("{}: not a member certificate", path.display()))?;
        if list.insert(cert.fingerprint()) {
            println!("revoking {} ({})", cert.name(), cert.fingerprint().to_hex());
        } else {
            println!(
                "{} ({}) is already revoked",
                cert.name(),
                cert.fingerprint().to_hex()
            );
        }
    }
    let version = a.version.unwrap_or(published + 1);
    let bundle = Bundle::sign_with_ca(
        &ca,
        &key,
        BundleKind::Revocations,
        version,
        unix_now(),
        list.to_text().into_bytes(),
    )
    .context("signing the revocation list")?;
    let rev = access
        .write(&bundle_key, bundle.to_bytes())
        .await
        .map_err(anyhow::Error::msg)?;
    println!(
        "published the revocation list ({} certificate(s)) as version {version} at {bundle_key} (etcd revision {rev})",
        list.len()
    );
    Ok(())
}
