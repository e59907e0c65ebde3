//! Checks of `[userspace]`: only with `tun.mode = "userspace"`; the SOCKS proxy on loopback (an
//! open proxy into the network otherwise); forward destinations of the form `name:port` or
//! `address:port`; no port listened on twice; published ports 1-65535; group names.

use std::collections::HashSet;

use privnet_core::identity::is_valid_name;

use super::super::schema::TunMode;
use super::super::spans::Problems;
use super::super::userspace::{Forward, Publish, UserspaceSection, UserspaceSettings};

/// Check `[userspace]` and convert it; empty settings when absent.
pub(in crate::config) fn userspace_settings(
    p: &mut Problems<'_>,
    raw: Option<&UserspaceSection>,
    mode: TunMode,
) -> UserspaceSettings {
    let Some(raw) = raw else {
        return UserspaceSettings::default();
    };
    if mode != TunMode::Userspace {
        p.report(
            "userspace",
            "no [userspace] section unless tun.mode = \"userspace\" (forwards, published services and \
             the SOCKS proxy are served by the embedded stack)",
        );
    }
    if let Some(s) = raw.socks {
        if !s.ip().is_loopback() {
            p.report(
                "userspace.socks",
                format!("a loopback address such as 127.0.0.1:1080 (anyone who reaches the proxy reaches the network); found {s}"),
            );
        }
        if s.port() == 0 {
            p.report("userspace.socks", "a port between 1 and 65535; found 0");
        }
    }
    let mut listens = HashSet::new();
    if let Some(s) = raw.socks {
        listens.insert((s, true));
    }
    let mut forwards = Vec::new();
    for (i, f) in raw.forward.iter().enumerate() {
        let key = format!("userspace.forward[{i}]");
        if f.listen.port() == 0 {
            p.report(
                format!("{key}.listen"),
                "a port between 1 and 65535; found 0",
            );
        }
        let tcp = f.protocol == super::super::userspace::Protocol::Tcp;
        if !listens.insert((f.listen, tcp)) {
            p.report(
                format!("{key}.listen"),
                format!(
                    "a local address not used by another forward or the proxy; {} is",
                    f.listen
                ),
            );
        }
        if !valid_target(&f.to) {
            p.report(
                format!("{key}.to"),
                format!("an overlay destination \"name:port\" or \"address:port\" (IPv6 in brackets); found {:?}", f.to),
            );
        }
        forwards.push(Forward {
            listen: f.listen,
            to: f.to.clone(),
            protocol: f.protocol,
        });
    }
    let mut ports = HashSet::new();
    let mut publish = Vec::new();
    for (i, e) in raw.publish.iter().enumerate() {
        let key = format!("userspace.publish[{i}]");
        if e.port == 0 {
            p.report(format!("{key}.port"), "a port between 1 and 65535; found 0");
        }
        if !ports.insert((e.port, e.protocol)) {
            p.report(
                format!("{key}.port"),
                format!(
                    "a port published once per protocol; {} is published twice",
                    e.port
                ),
            );
        }
        if e.to.port() == 0 {
            p.report(
                format!("{key}.to"),
                "a local service address with a port; found port 0",
            );
        }
        for g in &e.groups {
            if !is_valid_name(g) {
                p.report(
                    format!("{key}.groups"),
                    format!("group names: 1-64 letters, digits, '.', '_', '-'; found {g:?}"),
                );
            }
        }
        publish.push(Publish {
            port: e.port,
            to: e.to,
            protocol: e.protocol,
            groups: e.groups.clone(),
        });
    }
    UserspaceSettings {
        socks: raw.socks,
        forwards,
        publish,
    }
}

/// `name:port`, `a.b.c.d:port` or `[v6]:port`, with a port of 1-65535.
fn valid_target(s: &str) -> bool {
    if let Ok(a) = s.parse::<std::net::SocketAddr>() {
        return a.port() != 0;
    }
    let Some((host, port)) = s.rsplit_once(':') else {
        return false;
    };
    let port_ok = port.parse::<u16>().is_ok_and(|p| p != 0);
    port_ok
        && !host.is_empty()
        && !host.contains([':', '[', ']'])
        && !host.chars().any(char::is_whitespace)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        for ok in ["db:5432", "10.77.0.3:80", "[fd77::3]:80", "web-1.prod:443"] {
            assert!(valid_target(ok), "{ok}");
        }
        for bad in [
            "db",
            "db:0",
            "db:x",
            ":80",
            "fd77::3:80",
            "a b:1",
            "[db]:80",
        ] {
            assert!(!valid_target(bad), "{bad}");
        }
    }
}
