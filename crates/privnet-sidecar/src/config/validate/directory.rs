//! Checks of `[directory]`: endpoints (`HOST:PORT` or `http://HOST:PORT`; TLS is not built in),
//! the prefix, the lease TTL, the advertised endpoints (needed when `node.listen` is a wildcard
//! address), the capabilities, and user and password together.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use privnet_core::directory::{Layout, MAX_CAPABILITIES, MAX_CAPABILITY_LEN, MAX_ENDPOINTS};
use zeroize::Zeroizing;

use super::super::schema::DirectorySection;
use super::super::spans::Problems;
use super::super::types::DirectorySettings;
use super::resolve;

/// Shortest lease TTL accepted, seconds.
pub const MIN_LEASE_TTL_S: u32 = 2;
/// Longest lease TTL accepted, seconds.
pub const MAX_LEASE_TTL_S: u32 = 3600;

/// Check `[directory]` and convert it. `password` is the content of `password_file`, read by
/// the loader (`None` when absent or unreadable, reported there).
pub(in crate::config) fn directory_settings(
    p: &mut Problems<'_>,
    raw: &DirectorySection,
    network: &str,
    listen: SocketAddr,
    password: Option<Zeroizing<String>>,
) -> DirectorySettings {
    if raw.endpoints.is_empty() {
        p.report(
            "directory.endpoints",
            "at least one etcd endpoint such as \"127.0.0.1:2379\"",
        );
    }
    let endpoints = raw
        .endpoints
        .iter()
        .enumerate()
        .filter_map(|(i, e)| endpoint(p, i, e))
        .collect();
    let prefix = match &raw.prefix {
        None => Layout::default_prefix(network),
        Some(pre) => {
            let trimmed = pre.trim_end_matches('/');
            if !trimmed.starts_with('/')
                || trimmed.len() < 2
                || pre.chars().any(char::is_whitespace)
            {
                p.report(
                    "directory.prefix",
                    format!("a key prefix starting with '/' such as \"/privnet/{network}\", without spaces; found {pre:?}"),
                );
            }
            trimmed.to_owned()
        }
    };
    if !(MIN_LEASE_TTL_S..=MAX_LEASE_TTL_S).contains(&raw.lease_ttl_s) {
        p.report(
            "directory.lease_ttl_s",
            format!(
                "a lease TTL between {MIN_LEASE_TTL_S} and {MAX_LEASE_TTL_S} seconds; found {}",
                raw.lease_ttl_s
            ),
        );
    }
    let mut advertise = Vec::new();
    for (i, a) in raw.advertise.iter().enumerate() {
        match a.parse::<SocketAddr>() {
            Ok(addr) if addr.port() != 0 && !addr.ip().is_unspecified() => advertise.push(addr),
            _ => p.report(
                format!("directory.advertise[{i}]"),
                format!("an underlay address and port other members reach this one at, such as \"192.0.2.10:51820\"; found {a:?}"),
            ),
        }
    }
    if raw.advertise.len() > MAX_ENDPOINTS {
        p.report(
            "directory.advertise",
            format!("at most {MAX_ENDPOINTS} endpoints"),
        );
    }
    if raw.advertise.is_empty() {
        if listen.ip().is_unspecified() {
            p.report(
                "directory.advertise",
                format!("the endpoints other members reach this one at (node.listen is the wildcard {listen}), such as [\"192.0.2.10:{}\"]", listen.port()),
            );
        } else {
            advertise.push(listen);
        }
    }
    if raw.capabilities.len() > MAX_CAPABILITIES
        || raw
            .capabilities
            .iter()
            .any(|c| c.is_empty() || c.len() > MAX_CAPABILITY_LEN)
    {
        p.report(
            "directory.capabilities",
            format!("at most {MAX_CAPABILITIES} non-empty capabilities of at most {MAX_CAPABILITY_LEN} bytes each"),
        );
    }
    let credentials = match (&raw.user, password) {
        (Some(user), Some(pw)) => Some((user.clone(), Zeroizing::new(pw.trim_end().to_owned()))),
        (None, None) => None,
        (Some(_), None) => {
            if raw.password_file.is_none() {
                p.report(
                    "directory.password_file",
                    "a password file (mode 0600) for directory.user",
                );
            }
            None
        }
        (None, Some(_)) => {
            p.report("directory.user", "an etcd user for directory.password_file");
            None
        }
    };
    DirectorySettings {
        endpoints,
        prefix,
        lease_ttl: Duration::from_secs(u64::from(raw.lease_ttl_s)),
        advertise,
        cache: raw.cache.as_ref().map(|c| resolve(p.file(), c)),
        credentials,
        capabilities: raw.capabilities.clone(),
    }
}

/// The password file path, resolved against the configuration file.
pub(in crate::config) fn password_path(
    file: &Path,
    raw: &DirectorySection,
) -> Option<std::path::PathBuf> {
    raw.password_file.as_ref().map(|f| resolve(file, f))
}

fn endpoint(p: &mut Problems<'_>, i: usize, e: &str) -> Option<String> {
    let key = format!("directory.endpoints[{i}]");
    if e.starts_with("https://") {
        p.report(
            &key,
            "a plain http:// endpoint: this build has no TLS for etcd (run etcd on loopback or a private link, see docs/DIRECTORY.md)",
        );
        return None;
    }
    let hostport = e.strip_prefix("http://").unwrap_or(e);
    let ok = hostport
        .rsplit_once(':')
        .is_some_and(|(h, port)| !h.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0));
    if !ok || hostport.contains('/') {
        p.report(
            &key,
            format!("an etcd endpoint HOST:PORT or http://HOST:PORT such as \"127.0.0.1:2379\"; found {e:?}"),
        );
        return None;
    }
    Some(format!("http://{hostport}"))
}
