//! The checks: ranges, names, peers, the identity files against each other, and the agreement of
//! several files. Pure: reads no file and no clock (`now` is passed in); the loader reads the files
//! and hands over what they held as [`IdentityFiles`].
//!
//! Every check reports into [`Problems`] and carries on, so one run finds every problem. A value is
//! still built when a check fails (so that later checks, and the checks across files, have
//! something to look at), but [`load`](crate::config::load) hands nothing out unless no problem was
//! found at all. The checks of `[[peer]]` entries are in `validate/peers.rs`.

mod conntrack;
mod directory;
mod dns;
mod expose;
mod peers;
mod policy;
mod userspace;

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use privnet_core::identity::{
    is_valid_name, CaCertificate, CertError, MemberCertificate, NoiseKeyPair, RevocationList,
    TrustStore, TrustStoreError,
};
use zeroize::Zeroizing;

use super::schema::{
    FileConfig, LogSection, MetricsSection, NodeSection, PeerSection, StatusSection, TunMode,
    TunSection,
};
use super::spans::Problems;
use super::types::{IdentityPaths, NetworkConfig, NodeIdentity, PolicySettings, TunSettings};
use super::userspace::UserspaceSettings;
pub(super) use conntrack::conntrack_settings;
pub use conntrack::{MAX_CONNTRACK_FLOWS, MAX_NEW_FLOWS, MIN_CONNTRACK_FLOWS};
pub(super) use directory::{directory_settings, password_path};
pub use directory::{MAX_LEASE_TTL_S, MIN_LEASE_TTL_S};
pub(super) use dns::dns_settings;
pub use dns::MAX_DNS_TTL_S;
pub(super) use expose::exposures;
use peers::check_peers;
pub use peers::{parse_endpoint, MAX_KEEPALIVE_SECS};
pub(super) use policy::policy;
pub(super) use userspace::userspace_settings;

/// Worst-case bytes added per packet: IPv6 (40) + UDP (8) + data header (16) + AEAD tag (16).
pub const TUNNEL_OVERHEAD: u16 = 80;
/// Bytes added per packet on an IPv4 underlay: IPv4 (20) + UDP (8) + 32.
pub const TUNNEL_OVERHEAD_V4: u16 = 60;
/// Smallest inner MTU (IPv6 minimum link MTU, RFC 8200).
pub const MIN_MTU: u16 = 1280;
/// Largest inner MTU.
pub const MAX_MTU: u16 = 9000;
/// Largest underlay MTU (jumbo frames).
pub const MAX_UNDERLAY_MTU: u16 = 9216;
/// Longest Linux interface name (IFNAMSIZ - 1).
pub const MAX_TUN_NAME_LEN: usize = 15;
/// Longest unix socket path (sun_path - 1).
pub const MAX_SOCKET_PATH_LEN: usize = 107;
/// Largest hold accepted, in microseconds.
pub const MAX_BATCH_HOLD_US: u32 = 1_000;
/// Largest busy-poll window accepted, in microseconds.
pub const MAX_BUSY_POLL_US: u32 = 10_000;

/// `p` resolved against the directory of the configuration file `file` (relative paths in a file
/// are relative to that file's directory).
pub(super) fn resolve(file: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_owned()
    } else {
        file.parent().unwrap_or_else(|| Path::new(".")).join(p)
    }
}

// ------------------------------------------------------------------------------------------------
// Process-wide sections

/// The process-wide sections seen so far, each with the first file that had it.
#[derive(Default)]
pub(super) struct ProcessWide {
    metrics: Option<(PathBuf, MetricsSection)>,
    status: Option<(PathBuf, StatusSection)>,
    log: Option<(PathBuf, LogSection)>,
}

impl ProcessWide {
    /// Check the process-wide sections of one more file, and that they agree with earlier files.
    pub(super) fn add(&mut self, p: &mut Problems<'_>, raw: &FileConfig) {
        merge(p, "metrics", raw.metrics.as_ref(), &mut self.metrics);
        // A relative socket path is relative to the file's directory (as `privnet status
        // --config` reads it), not to the working directory of `privnet up`.
        let status = raw.status.as_ref().map(|s| StatusSection {
            socket: s.socket.as_ref().map(|x| resolve(p.file(), x)),
        });
        merge(p, "status", status.as_ref(), &mut self.status);
        merge(p, "log", raw.log.as_ref(), &mut self.log);
        if let Some(m) = &raw.metrics {
            check_metrics(p, m);
        }
        if let Some(s) = &raw.status {
            check_status(p, s);
        }
        if let Some(audit) = raw.log.as_ref().and_then(|l| l.audit.as_ref()) {
            if !audit.is_absolute() || audit.file_name().is_none() {
                p.report(
                    "log.audit",
                    format!(
                        "an absolute file path such as /var/log/privnet/audit.jsonl; found {:?}",
                        audit.display().to_string()
                    ),
                );
            }
        }
    }

    /// The sections, defaults where no file had one.
    pub(super) fn into_sections(self) -> (MetricsSection, StatusSection, LogSection) {
        (
            self.metrics.map(|(_, m)| m).unwrap_or_default(),
            self.status.map(|(_, s)| s).unwrap_or_default(),
            self.log.map(|(_, l)| l).unwrap_or_default(),
        )
    }
}

fn merge<T: PartialEq + Clone>(
    p: &mut Problems<'_>,
    key: &str,
    new: Option<&T>,
    cur: &mut Option<(PathBuf, T)>,
) {
    let Some(new) = new else { return };
    if p.has(key) {
        // A key of the section was dropped by the parser: the section is not what the file says.
        return;
    }
    match cur {
        Some((first, old)) if old != new => {
            let msg = format!(
                "the same [{key}] section as in {} (process-wide settings must agree), or none",
                first.display()
            );
            p.report(key, msg);
        }
        Some(_) => {}
        None => *cur = Some((p.file().to_owned(), new.clone())),
    }
}

fn check_metrics(p: &mut Problems<'_>, m: &MetricsSection) {
    if let Some(addr) = m.listen {
        if !addr.ip().is_loopback() {
            p.report(
                "metrics.listen",
                format!("a loopback address such as 127.0.0.1:9477 or [::1]:9477; found {addr}"),
            );
        }
        if addr.port() == 0 {
            p.report("metrics.listen", "a port between 1 and 65535; found 0");
        }
    }
}

fn check_status(p: &mut Problems<'_>, s: &StatusSection) {
    if let Some(path) = &s.socket {
        let len = resolve(p.file(), path).as_os_str().len();
        if path.as_os_str().is_empty() {
            p.report("status.socket", "a unix socket path; found an empty string");
        } else if len > MAX_SOCKET_PATH_LEN {
            p.report(
                "status.socket",
                format!("a unix socket path of at most {MAX_SOCKET_PATH_LEN} bytes; found {len}"),
            );
        }
    }
}

// ------------------------------------------------------------------------------------------------
// One network

/// What the identity files of one network held, as read by the loader. `None` where a file could
/// not be read or parsed; its problem is already reported.
pub(super) struct IdentityFiles {
    /// The resolved paths.
    pub(super) paths: IdentityPaths,
    /// `node.policy`, compiled (`None` also when it failed; its problems are reported).
    pub(super) policy: Option<PolicySettings>,
    /// `node.private_key`.
    pub(super) keypair: Option<NoiseKeyPair>,
    /// `node.network_psk`.
    pub(super) psk: Option<Zeroizing<[u8; 32]>>,
    /// `node.network_psk_accept`; `None` if one of them failed.
    pub(super) accepted_psks: Option<Vec<Zeroizing<[u8; 32]>>>,
    /// `node.certificate`.
    pub(super) certificate: Option<MemberCertificate>,
    /// Every file of `node.ca_certificates`; `None` if one failed or none is configured.
    pub(super) cas: Option<Vec<CaCertificate>>,
    /// `node.revocation_list` (empty when not configured).
    pub(super) revocations: Option<RevocationList>,
}

/// Validate one network: its `[node]`, `[tun]` and `[[peer]]` sections and its identity files.
/// `None` when the identity is incomplete (a problem is reported then); a returned value may still
/// come with problems in `p`.
pub(super) fn network(
    p: &mut Problems<'_>,
    node: &NodeSection,
    tun: Option<&TunSection>,
    peers: &[Option<PeerSection>],
    mut files: IdentityFiles,
    now: u64,
) -> Option<NetworkConfig> {
    let tun = tun_settings(p, tun, node.listen.is_ipv4());
    check_node(p, node);
    let trust = trust_store(p, files.cas.take(), files.revocations.as_ref());
    if let Some(trust) = &trust {
        check_network_name(p, trust, &node.network);
    }
    check_own_identity(p, &files, trust.as_ref(), now);
    let own_key = files.keypair.as_ref().map(NoiseKeyPair::public);
    let own_prefixes = files
        .certificate
        .as_ref()
        .map(MemberCertificate::overlay_prefixes)
        .unwrap_or_default();
    let peers = check_peers(p, peers, trust.as_ref(), own_key, &own_prefixes);

    let (Some(keypair), Some(certificate), Some(trust), Some(psk), Some(accepted), Some(_)) = (
        files.keypair,
        files.certificate,
        trust,
        files.psk,
        files.accepted_psks,
        files.revocations,
    ) else {
        return None;
    };
    // The same key twice (or the primary listed as accepted) changes nothing: keep one.
    let mut accepted_psks: Vec<Zeroizing<[u8; 32]>> = Vec::new();
    for k in accepted {
        if *k != *psk && !accepted_psks.iter().any(|a| **a == *k) {
            accepted_psks.push(k);
        }
    }
    Some(NetworkConfig {
        file: p.file().to_owned(),
        network: node.network.clone(),
        network_id: trust.network_id(),
        identity: NodeIdentity {
            keypair,
            certificate,
            trust,
            psk,
            accepted_psks,
        },
        paths: files.paths,
        listen: node.listen,
        cipher: node.cipher.into(),
        peers,
        tun,
        policy: files.policy,
        userspace: UserspaceSettings::default(),
        exposures: Vec::new(),
        directory: None,
        dns: None,
        conntrack: privnet_core::policy::ConntrackConfig::default(),
    })
}

/// `[node]` values that need no file: the network name, the listen port, a CA list.
fn check_node(p: &mut Problems<'_>, node: &NodeSection) {
    if !is_valid_name(&node.network) {
        p.report(
            "node.network",
            "a network name: 1-64 letters, digits, '.', '_', '-', starting with a letter or digit",
        );
    }
    if node.listen.port() == 0 {
        p.report("node.listen", "a port between 1 and 65535; found 0");
    }
    if node.ca_certificates.is_empty() {
        p.report(
            "node.ca_certificates",
            "at least one CA certificate file (the ca.crt written by `privnet ca init`)",
        );
    }
}

/// Check `[tun]` (defaults when absent) and convert it to what the driver reads.
/// `ipv4_underlay`: the node listens on IPv4 only, so the per-packet overhead is 60 bytes, not 80.
fn tun_settings(
    p: &mut Problems<'_>,
    raw: Option<&TunSection>,
    ipv4_underlay: bool,
) -> TunSettings {
    let default = TunSection::default();
    let tun = raw.unwrap_or(&default);
    check_tun_name(p, &tun.name);
    check_mtus(p, tun.mtu, tun.underlay_mtu, ipv4_underlay);
    let busy_poll = micros(
        p,
        "tun.busy_poll_us",
        tun.busy_poll_us,
        MAX_BUSY_POLL_US,
        "a busy-poll window",
    );
    let batch_hold = micros(
        p,
        "tun.batch_hold_us",
        tun.batch_hold_us,
        MAX_BATCH_HOLD_US,
        "a batch hold",
    );
    if !(1..=privnet_core::io::MAX_WORKERS).contains(&tun.workers) {
        p.report(
            "tun.workers",
            format!(
                "a number of threads from 1 to {}; found {}",
                privnet_core::io::MAX_WORKERS,
                tun.workers
            ),
        );
    }
    let dr = privnet_core::io::DefaultRoute {
        ipv4: true,
        fwmark: tun.fwmark,
        table: tun.route_table,
        ..privnet_core::io::DefaultRoute::new()
    };
    if dr.fwmark == 0 {
        p.report("tun.fwmark", "a non-zero firewall mark; found 0");
    }
    if dr.validate().is_err() && dr.fwmark != 0 {
        p.report(
            "tun.route_table",
            format!(
                "a routing table other than 0, 253 (default), 254 (main) and 255 (local); found {}",
                dr.table
            ),
        );
    }
    TunSettings {
        mode: tun.mode,
        name: tun.name.clone(),
        mtu: tun.mtu,
        underlay_mtu: tun.underlay_mtu,
        offload: tun.offload,
        busy_poll,
        batch_hold,
        fairness: tun.fairness,
        workers: tun.workers,
        fwmark: tun.fwmark,
        route_table: tun.route_table,
    }
}

fn check_tun_name(p: &mut Problems<'_>, name: &str) {
    let ok = !name.is_empty()
        && name.len() <= MAX_TUN_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && name != "."
        && name != "..";
    if !ok {
        p.report(
            "tun.name",
            format!(
                "an interface name of 1-{MAX_TUN_NAME_LEN} letters, digits, '-', '_', '.'; found {name:?}"
            ),
        );
    }
}

fn check_mtus(p: &mut Problems<'_>, mtu: u16, underlay_mtu: u16, ipv4_underlay: bool) {
    // A value the parser dropped is a default here: comparing the two would mislead.
    let both_from_file = !p.has("tun.mtu") && !p.has("tun.underlay_mtu");
    let overhead = if ipv4_underlay {
        TUNNEL_OVERHEAD_V4
    } else {
        TUNNEL_OVERHEAD
    };
    if !(MIN_MTU..=MAX_MTU).contains(&mtu) {
        p.report(
            "tun.mtu",
            format!("an MTU between {MIN_MTU} and {MAX_MTU}; found {mtu}"),
        );
    }
    if !(MIN_MTU..=MAX_UNDERLAY_MTU).contains(&underlay_mtu) {
        p.report(
            "tun.underlay_mtu",
            format!("an MTU between {MIN_MTU} and {MAX_UNDERLAY_MTU}; found {underlay_mtu}"),
        );
    } else if both_from_file && u32::from(mtu) + u32::from(overhead) > u32::from(underlay_mtu) {
        p.report(
            "tun.mtu",
            format!(
                "at most underlay_mtu - {overhead} = {} (tunnel overhead on an IPv{} underlay); found {mtu}",
                underlay_mtu.saturating_sub(overhead),
                if ipv4_underlay { 4 } else { 6 },
            ),
        );
    }
}

/// A window of `us` microseconds, at most `max`; `what` names it in the problem.
fn micros(p: &mut Problems<'_>, key: &str, us: u32, max: u32, what: &str) -> Duration {
    if us > max {
        p.report(
            key,
            format!("{what} of 0 (off) to {max} microseconds; found {us}"),
        );
    }
    Duration::from_micros(u64::from(us))
}

/// The trust store from every CA file and the revocation list; `None` if a CA file could not be
/// loaded (already reported) or the CAs do not form one network.
fn trust_store(
    p: &mut Problems<'_>,
    cas: Option<Vec<CaCertificate>>,
    revocations: Option<&RevocationList>,
) -> Option<TrustStore> {
    let cas = cas?;
    let fingerprints: Vec<_> = cas.iter().map(CaCertificate::fingerprint).collect();
    match TrustStore::new(cas) {
        Ok(t) => Some(t.with_revocations(revocations.cloned().unwrap_or_default())),
        Err(TrustStoreError::MixedNetworks { fingerprint, .. }) => {
            let i = fingerprints
                .iter()
                .position(|f| *f == fingerprint)
                .unwrap_or_default();
            p.report(
                format!("node.ca_certificates[{i}]"),
                format!(
                    "CA certificates of one network only; CA {fingerprint} is for another network"
                ),
            );
            None
        }
        Err(e) => {
            p.report("node.ca_certificates", e.to_string());
            None
        }
    }
}

fn check_network_name(p: &mut Problems<'_>, trust: &TrustStore, network: &str) {
    let Some(ca) = trust.cas().first() else {
        return;
    };
    if ca.name() != network {
        p.report(
            "node.network",
            format!("`{}`, the network named in the CA certificate", ca.name()),
        );
    }
}

/// The own certificate against the private key and the CAs, at `now`.
fn check_own_identity(
    p: &mut Problems<'_>,
    files: &IdentityFiles,
    trust: Option<&TrustStore>,
    now: u64,
) {
    let Some(cert) = &files.certificate else {
        return;
    };
    if let Some(kp) = &files.keypair {
        if cert.public_key() != kp.public() {
            p.report(
                "node.private_key",
                format!(
                    "the private key for the public key in node.certificate ({}); this key's public key is {}",
                    STANDARD.encode(cert.public_key()),
                    STANDARD.encode(kp.public())
                ),
            );
        }
    }
    let Some(trust) = trust else {
        return;
    };
    if let Err(e) = trust.verify_certificate(cert, None, now) {
        let key = match e {
            CertError::CaExpired { .. } | CertError::CaNotYetValid { .. } => "node.ca_certificates",
            _ => "node.certificate",
        };
        p.report(
            key,
            format!(
                "a certificate issued by one of node.ca_certificates, valid now and not revoked; {}: {e}",
                files.paths.certificate.display()
            ),
        );
    }
}

// ------------------------------------------------------------------------------------------------
// Across files

/// `net` (from `p`'s file) against the networks of earlier files: distinct names and ids, listen
/// addresses and TUN device names. A key that already has a problem in this file is not compared.
pub(super) fn cross_check(p: &mut Problems<'_>, earlier: &[NetworkConfig], net: &NetworkConfig) {
    for other in earlier {
        let other_file = other.file.display();
        if !p.has("node.network")
            && (other.network == net.network || other.network_id == net.network_id)
        {
            p.report(
                "node.network",
                format!(
                    "a network not already configured; {other_file} is also a member of `{}`",
                    other.network
                ),
            );
        }
        if !p.has("node.listen") && other.listen == net.listen {
            p.report(
                "node.listen",
                format!(
                    "a listen address not used by another network; {other_file} also listens on {}",
                    net.listen
                ),
            );
        }
        if !p.has("tun.name")
            && !p.has("tun.mode")
            && other.tun.mode == TunMode::Tun
            && net.tun.mode == TunMode::Tun
            && other.tun.name == net.tun.name
        {
            p.report(
                "tun.name",
                format!(
                    "a device name not used by another network; {other_file} also uses `{}`",
                    net.tun.name
                ),
            );
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn problems_of(text: &str, check: impl FnOnce(&mut Problems<'_>)) -> Vec<String> {
        let mut p = Problems::new(Path::new("x.toml"), text);
        check(&mut p);
        p.into_sorted().into_iter().map(|p| p.key).collect()
    }

    #[test]
    fn tun_settings_are_converted_once_and_bounded() {
        let raw = TunSection {
            busy_poll_us: 150,
            batch_hold_us: 0,
            ..TunSection::default()
        };
        let mut p = Problems::new(Path::new("x.toml"), "");
        let t = tun_settings(&mut p, Some(&raw), true);
        assert!(p.into_sorted().is_empty());
        assert_eq!(t.busy_poll, Duration::from_micros(150));
        assert!(t.batch_hold.is_zero());
        assert_eq!((t.mtu, t.underlay_mtu, t.offload), (1420, 1500, true));
        assert!(t.fairness, "fairness is on by default");
        assert_eq!(t.workers, 1, "one thread by default");

        let raw = TunSection {
            name: "a/b".into(),
            mtu: 1480,
            busy_poll_us: MAX_BUSY_POLL_US + 1,
            batch_hold_us: MAX_BATCH_HOLD_US + 1,
            workers: 0,
            ..TunSection::default()
        };
        let keys = problems_of("", |p| {
            tun_settings(p, Some(&raw), false);
        });
        assert_eq!(
            keys,
            [
                "tun.name",
                "tun.mtu",
                "tun.busy_poll_us",
                "tun.batch_hold_us",
                "tun.workers"
            ]
        );
        let raw = TunSection {
            workers: privnet_core::io::MAX_WORKERS + 1,
            ..TunSection::default()
        };
        assert_eq!(
            problems_of("", |p| {
                tun_settings(p, Some(&raw), true);
            }),
            ["tun.workers"]
        );
        // On an IPv4 underlay 1480 + 60 > 1500 too; 1440 fits there but not on IPv6.
        let raw = TunSection {
            mtu: 1440,
            ..TunSection::default()
        };
        assert!(problems_of("", |p| {
            tun_settings(p, Some(&raw), true);
        })
        .is_empty());
        assert_eq!(
            problems_of("", |p| {
                tun_settings(p, Some(&raw), false);
            }),
            ["tun.mtu"]
        );
    }

    #[test]
    fn the_default_route_mark_and_table_are_checked() {
        let t = tun_settings(&mut Problems::new(Path::new("x.toml"), ""), None, true);
        assert_eq!(
            (t.fwmark, t.route_table),
            (
                privnet_core::io::DEFAULT_FWMARK,
                privnet_core::io::DEFAULT_ROUTE_TABLE
            )
        );
        for (fwmark, route_table, key) in [(0, 100, "tun.fwmark"), (1, 254, "tun.route_table")] {
            let raw = TunSection {
                fwmark,
                route_table,
                ..TunSection::default()
            };
            let keys = problems_of("", |p| {
                tun_settings(p, Some(&raw), true);
            });
            assert_eq!(keys, [key]);
        }
    }

    #[test]
    fn mtu_relation_is_not_checked_against_a_dropped_value() {
        let raw = TunSection {
            underlay_mtu: 1300,
            ..TunSection::default()
        };
        let keys = problems_of("", |p| {
            p.at("tun.mtu", Some(3), "an integer (the parser dropped it)");
            tun_settings(p, Some(&raw), false);
        });
        assert_eq!(keys, ["tun.mtu"]);
    }
}
