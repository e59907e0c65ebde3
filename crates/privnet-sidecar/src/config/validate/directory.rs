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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn raw(endpoints: &[&str], advertise: &[&str]) -> DirectorySection {
        DirectorySection {
            endpoints: endpoints.iter().map(|s| (*s).to_owned()).collect(),
            prefix: None,
            lease_ttl_s: 10,
            advertise: advertise.iter().map(|s| (*s).to_owned()).collect(),
            cache: Some("dir.cache".into()),
            user: None,
            password_file: None,
            capabilities: vec![],
        }
    }

    fn check(
        r: &DirectorySection,
        listen: &str,
        password: Option<&str>,
    ) -> (DirectorySettings, Vec<(String, String)>) {
        let mut p = Problems::new(Path::new("/etc/privnet/a.toml"), "");
        let d = directory_settings(
            &mut p,
            r,
            "neta",
            listen.parse().unwrap(),
            password.map(|s| Zeroizing::new(s.to_owned())),
        );
        let problems = p
            .into_sorted()
            .into_iter()
            .map(|p| (p.key, p.expected))
            .collect();
        (d, problems)
    }

    #[test]
    fn a_valid_section_is_normalised() {
        let (d, problems) = check(
            &raw(&["10.0.0.1:2379", "http://etcd.example:2379"], &[]),
            "192.0.2.10:51820",
            None,
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            d.endpoints,
            ["http://10.0.0.1:2379", "http://etcd.example:2379"]
        );
        assert_eq!(d.prefix, "/privnet/neta");
        assert_eq!(d.advertise, ["192.0.2.10:51820".parse().unwrap()]);
        assert_eq!(d.cache.unwrap(), Path::new("/etc/privnet/dir.cache"));
        assert_eq!(d.lease_ttl, Duration::from_secs(10));
    }

    #[test]
    fn every_problem_names_its_key() {
        let mut r = raw(&["https://10.0.0.1:2379", "nohost"], &["0.0.0.0:1"]);
        r.lease_ttl_s = 1;
        r.prefix = Some("privnet".into());
        r.user = Some("u".into());
        let (_, problems) = check(&r, "0.0.0.0:51820", None);
        let keys: Vec<&str> = problems.iter().map(|(k, _)| k.as_str()).collect();
        for k in [
            "directory.endpoints[0]",
            "directory.endpoints[1]",
            "directory.lease_ttl_s",
            "directory.prefix",
            "directory.advertise[0]",
            "directory.password_file",
        ] {
            assert!(keys.contains(&k), "{k} missing from {problems:?}");
        }
        assert!(problems.iter().any(|(_, e)| e.contains("no TLS for etcd")));
        // A wildcard listen address needs `advertise`.
        let (_, problems) = check(&raw(&["10.0.0.1:2379"], &[]), "0.0.0.0:51820", None);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].0, "directory.advertise");
        // A password without a user.
        let (_, problems) = check(&raw(&["10.0.0.1:2379"], &[]), "192.0.2.1:1", Some("pw"));
        assert_eq!(problems[0].0, "directory.user");
    }
}
