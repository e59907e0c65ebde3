//! Loading: read each configuration file and the identity files it names (keys, certificates, the
//! PSK, CAs, the revocation list, the policy file), then have them validated.
//!
//! Every file is read through `files.rs`, which bounds its size, refuses what is not a regular file
//! owned by the running user or root, and refuses secret files (private key, PSKs) that group or
//! others may read. A file that cannot be read or parsed is one problem at
//! the key that names it; the other files are still read, so one run reports them all.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use privnet_core::identity::{CaCertificate, MemberCertificate, NoiseKeyPair, RevocationList};
use zeroize::Zeroizing;

use privnet_core::expose::parse_list;

use super::expose::{BlockList, ExposeEntry};
use super::schema::NodeSection;
use super::spans::{parse_str, Problems};
use super::types::{Config, IdentityPaths, NetworkConfig, PolicySettings, Problem};
use super::validate::{self, resolve, IdentityFiles, ProcessWide};
use crate::files::{self, FileError};

/// Load and validate the configuration files at `paths` (one per network) at Unix time `now`.
///
/// # Errors
/// Every problem found, across all files: per file in line order, files in the order given.
pub fn load(paths: &[PathBuf], now: u64) -> Result<Config, Vec<Problem>> {
    let mut problems = Vec::new();
    let mut networks = Vec::new();
    let mut process = ProcessWide::default();
    if paths.is_empty() {
        problems.push(Problem {
            file: PathBuf::new(),
            key: String::new(),
            line: None,
            expected: "at least one configuration file (--config FILE)".into(),
        });
    }
    for path in paths {
        match files::read_text(path) {
            Ok(text) => problems.extend(load_file(path, &text, now, &mut process, &mut networks)),
            Err(e) => problems.push(Problem {
                file: path.clone(),
                key: String::new(),
                line: None,
                expected: file_problem(&e),
            }),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let (metrics, status, log) = process.into_sections();
    Ok(Config {
        networks,
        metrics,
        status,
        log,
    })
}

/// One configuration file (`text`, read from `path`): its problems; its network, if its identity
/// loaded, is added to `networks`.
fn load_file(
    path: &Path,
    text: &str,
    now: u64,
    process: &mut ProcessWide,
    networks: &mut Vec<NetworkConfig>,
) -> Vec<Problem> {
    let (raw, parsed) = parse_str(text, path);
    let mut p = Problems::new(path, text);
    p.extend(parsed);
    process.add(&mut p, &raw);
    if let Some(node) = &raw.node {
        let files = read_identity(&mut p, node);
        let net = validate::network(&mut p, node, raw.tun.as_ref(), &raw.peers, files, now);
        let mode = raw.tun.as_ref().map(|t| t.mode).unwrap_or_default();
        let userspace = validate::userspace_settings(&mut p, raw.userspace.as_ref(), mode);
        let lists = read_block_lists(&mut p, &raw.expose);
        let directory = raw.directory.as_ref().map(|d| {
            let password = validate::password_path(path, d)
                .and_then(|f| read_secret(&mut p, "directory.password_file", &f));
            validate::directory_settings(&mut p, d, &node.network, node.listen, password)
        });
        if let Some(mut net) = net {
            net.userspace = userspace;
            net.exposures = validate::exposures(&mut p, &raw.expose, lists, &net.peers, net.listen);
            net.directory = directory;
            net.dns = validate::dns_settings(&mut p, raw.dns.as_ref(), mode, &net);
            net.conntrack = validate::conntrack_settings(&mut p, raw.conntrack.as_ref());
            validate::cross_check(&mut p, networks, &net);
            networks.push(net);
        }
    }
    p.into_sorted()
}

/// Read and parse the block-lists of every `[[expose]]` (`lists[i][j]` is
/// `expose[i].block_lists[j]`, `None` when it could not be used: a file problem at that key, or the
/// list's own problem at its file and line).
fn read_block_lists(
    p: &mut Problems<'_>,
    raw: &[Option<ExposeEntry>],
) -> Vec<Vec<Option<BlockList>>> {
    let file = p.file().to_owned();
    raw.iter()
        .enumerate()
        .map(|(i, e)| {
            let Some(e) = e else { return Vec::new() };
            e.block_lists
                .iter()
                .enumerate()
                .map(|(j, path)| {
                    let path = resolve(&file, path);
                    match load_block_list(&path) {
                        Ok(b) => Some(b),
                        Err(problem) if problem.line.is_some() => {
                            p.extend_elsewhere(vec![problem]);
                            None
                        }
                        Err(problem) => {
                            p.report(format!("expose[{i}].block_lists[{j}]"), problem.expected);
                            None
                        }
                    }
                })
                .collect()
        })
        .collect()
}

/// Read and parse one block-list (at start, on SIGHUP and when the file changes).
///
/// # Errors
/// A [`Problem`] at the list file: with its line for a bad entry, without for a file that cannot be
/// read (then `expected` says why, naming the file).
pub fn load_block_list(path: &Path) -> Result<BlockList, Problem> {
    let bytes = files::read_list(path).map_err(|e| Problem {
        file: path.to_owned(),
        key: String::new(),
        line: None,
        expected: file_problem(&e),
    })?;
    let name = path.display().to_string();
    match parse_list(&name, &bytes) {
        Ok(set) => Ok(BlockList {
            path: path.to_owned(),
            set: Arc::new(set),
        }),
        Err(e) => Err(Problem {
            file: path.to_owned(),
            key: String::new(),
            line: Some(e.line),
            expected: e.expected,
        }),
    }
}

/// Read every file `[node]` names, relative to the configuration file.
fn read_identity(p: &mut Problems<'_>, node: &NodeSection) -> IdentityFiles {
    let file = p.file();
    let paths = IdentityPaths {
        private_key: resolve(file, &node.private_key),
        certificate: resolve(file, &node.certificate),
        ca_certificates: node
            .ca_certificates
            .iter()
            .map(|c| resolve(file, c))
            .collect(),
        network_psk: resolve(file, &node.network_psk),
        network_psk_accept: node
            .network_psk_accept
            .iter()
            .map(|c| resolve(file, c))
            .collect(),
        revocation_list: node.revocation_list.as_ref().map(|r| resolve(file, r)),
    };
    let policy = node
        .policy
        .as_ref()
        .and_then(|r| read_policy(p, &resolve(file, r)));
    let keypair = read_keypair(p, &paths.private_key);
    let psk = read_psk(p, "node.network_psk", &paths.network_psk);
    // Each file is read (and each problem reported) before any is given up on.
    let accepted_psks: Vec<_> = paths
        .network_psk_accept
        .iter()
        .enumerate()
        .map(|(i, path)| read_psk(p, &format!("node.network_psk_accept[{i}]"), path))
        .collect();
    let accepted_psks = accepted_psks.into_iter().collect::<Option<Vec<_>>>();
    let certificate = read_certificate(p, &paths.certificate);
    let cas = read_cas(p, &paths.ca_certificates);
    let revocations = read_revocations(p, paths.revocation_list.as_deref());
    IdentityFiles {
        paths,
        policy,
        keypair,
        psk,
        accepted_psks,
        certificate,
        cas,
        revocations,
    }
}

/// Read and compile `node.policy`: a file that cannot be read is a problem at `node.policy`; the
/// policy's own problems are the policy file's (with their lines), listed after the configuration
/// file's.
fn read_policy(p: &mut Problems<'_>, path: &Path) -> Option<PolicySettings> {
    let text = files::read_policy(path)
        .map_err(|e| p.report("node.policy", file_problem(&e)))
        .ok()?;
    validate::policy(path, &text)
        .map_err(|problems| p.extend_elsewhere(problems))
        .ok()
}

/// Compile a policy's text that did not come from a file (a directory bundle); `label` names
/// it in problems.
///
/// # Errors
/// Every problem of the policy, each with its line.
pub fn compile_policy_text(label: &Path, text: &str) -> Result<PolicySettings, Vec<Problem>> {
    validate::policy(label, text)
}

/// Read and compile the policy file at `path` (as `node.policy` names it): for reloading a
/// policy on its own, when its file changed.
///
/// # Errors
/// The file cannot be read (one problem), or every problem of the policy, each with its line.
pub fn load_policy(path: &Path) -> Result<PolicySettings, Vec<Problem>> {
    let text = files::read_policy(path).map_err(|e| {
        vec![Problem {
            file: path.to_owned(),
            key: String::new(),
            line: None,
            expected: file_problem(&e),
        }]
    })?;
    validate::policy(path, &text)
}

fn read_keypair(p: &mut Problems<'_>, path: &Path) -> Option<NoiseKeyPair> {
    let text = read_secret(p, "node.private_key", path)?;
    NoiseKeyPair::from_pem(&text)
        .map_err(|e| {
            p.report(
                "node.private_key",
                format!(
                    "a private key written by `privnet keygen`; {}: {e}",
                    path.display()
                ),
            );
        })
        .ok()
}

fn read_psk(p: &mut Problems<'_>, key: &str, path: &Path) -> Option<Zeroizing<[u8; 32]>> {
    let text = read_secret(p, key, path)?;
    let decoded = Zeroizing::new(STANDARD.decode(text.trim().as_bytes()).unwrap_or_default());
    match <[u8; 32]>::try_from(decoded.as_slice()) {
        Ok(k) => Some(Zeroizing::new(k)),
        Err(_) => {
            p.report(
                key,
                format!(
                    "base64 of 32 bytes (a PSK written by `privnet ca init` or `privnet ca rotate-psk`) in {}",
                    path.display()
                ),
            );
            None
        }
    }
}

fn read_certificate(p: &mut Problems<'_>, path: &Path) -> Option<MemberCertificate> {
    let text = read_public(p, "node.certificate", path)?;
    MemberCertificate::from_pem(&text)
        .map_err(|e| {
            p.report(
                "node.certificate",
                format!(
                    "a member certificate written by `privnet cert issue`; {}: {e}",
                    path.display()
                ),
            );
        })
        .ok()
}

/// Every CA file, each reported on its own (`node.ca_certificates[i]`); `None` unless all loaded.
/// An empty list is reported by the validator.
fn read_cas(p: &mut Problems<'_>, paths: &[PathBuf]) -> Option<Vec<CaCertificate>> {
    let mut cas = Vec::new();
    for (i, path) in paths.iter().enumerate() {
        let key = format!("node.ca_certificates[{i}]");
        let Some(text) = read_public(p, &key, path) else {
            continue;
        };
        match CaCertificate::from_pem(&text) {
            Ok(ca) => cas.push(ca),
            Err(e) => p.report(
                key,
                format!("a CA certificate (ca.crt); {}: {e}", path.display()),
            ),
        }
    }
    (!cas.is_empty() && cas.len() == paths.len()).then_some(cas)
}

/// The revocation list; an empty one when none is configured.
fn read_revocations(p: &mut Problems<'_>, path: Option<&Path>) -> Option<RevocationList> {
    let Some(path) = path else {
        return Some(RevocationList::new());
    };
    let text = read_public(p, "node.revocation_list", path)?;
    RevocationList::parse(&text)
        .map_err(|e| {
            p.report(
                "node.revocation_list",
                format!(
                    "one fingerprint (64 hex digits) per line, `#` comments; {}: {e}",
                    path.display()
                ),
            );
        })
        .ok()
}

fn read_secret(p: &mut Problems<'_>, key: &str, path: &Path) -> Option<Zeroizing<String>> {
    files::read_secret(path)
        .map_err(|e| p.report(key, file_problem(&e)))
        .ok()
}

fn read_public(p: &mut Problems<'_>, key: &str, path: &Path) -> Option<String> {
    files::read_text(path)
        .map_err(|e| p.report(key, file_problem(&e)))
        .ok()
}

fn file_problem(e: &FileError) -> String {
    match e {
        FileError::NotFound(p) => format!("an existing file; {} does not exist", p.display()),
        FileError::LoosePermissions { path, mode } => format!(
            "a file readable only by its owner (mode 0600); {} has mode {mode:04o} (run `chmod 600 {}`)",
            path.display(),
            path.display()
        ),
        other => format!("a readable file; {other}"),
    }
}
