//! Checks of `[dns]`: TUN mode only (userspace mode resolves names itself), the listen address
//! (`IP:PORT` or `IP`, port 53; default this member's first overlay IPv4 address, else its first
//! IPv6 one), the TTL, and the zone (the network's name must be a DNS name).

use std::net::{IpAddr, SocketAddr};

use privnet_core::io::dns::{Zone, DNS_PORT};

use super::super::schema::{DnsSection, TunMode};
use super::super::spans::Problems;
use super::super::types::{DnsSettings, NetworkConfig};

/// Longest TTL accepted, seconds.
pub const MAX_DNS_TTL_S: u32 = 3600;

/// Check `[dns]` and convert it (`None`: no section, `enable = false`, or a problem reported).
pub(in crate::config) fn dns_settings(
    p: &mut Problems<'_>,
    raw: Option<&DnsSection>,
    mode: TunMode,
    net: &NetworkConfig,
) -> Option<DnsSettings> {
    let raw = raw.filter(|d| d.enable)?;
    if mode != TunMode::Tun {
        p.report(
            "dns",
            "no [dns] section unless tun.mode = \"tun\" (in userspace mode the embedded stack \
             resolves members' names itself)",
        );
        return None;
    }
    if raw.ttl_s > MAX_DNS_TTL_S {
        p.report(
            "dns.ttl_s",
            format!(
                "a TTL between 0 and {MAX_DNS_TTL_S} seconds; found {}",
                raw.ttl_s
            ),
        );
    }
    let own = net.identity.certificate.addresses();
    let listen = match &raw.listen {
        None => {
            let ip = own
                .iter()
                .find(|a| a.is_ipv4())
                .or_else(|| own.first())
                .copied();
            let Some(ip) = ip else {
                p.report(
                    "dns.listen",
                    "an address to answer on: this member's certificate holds no overlay address",
                );
                return None;
            };
            SocketAddr::new(ip, DNS_PORT)
        }
        Some(s) => match parse_listen(s) {
            Some(a) => a,
            None => {
                p.report(
                    "dns.listen",
                    format!(
                        "an address and port such as \"10.77.0.3:53\", \"[fd77::3]:53\" or \
                         \"127.0.0.53\" (port 53); not port 0, and not 0.0.0.0 or :: (that \
                         would answer on the underlay too); found {s:?}"
                    ),
                );
                return None;
            }
        },
    };
    let zone = match Zone::new(&net.network, raw.ttl_s) {
        Ok(z) => z,
        Err(e) => {
            p.report("dns", format!("a network name usable as the DNS zone: {e}"));
            return None;
        }
    };
    Some(DnsSettings { listen, zone })
}

/// `IP:PORT`, `[IPv6]:PORT` or a bare `IP` (port 53); never port 0 or an unspecified address.
fn parse_listen(s: &str) -> Option<SocketAddr> {
    let a = s.parse::<SocketAddr>().ok().or_else(|| {
        s.trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, DNS_PORT))
    })?;
    (a.port() != 0 && !a.ip().is_unspecified()).then_some(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_listen_forms() {
        assert_eq!(
            parse_listen("10.77.0.3:5353"),
            Some("10.77.0.3:5353".parse().unwrap())
        );
        assert_eq!(
            parse_listen("10.77.0.3"),
            Some("10.77.0.3:53".parse().unwrap())
        );
        assert_eq!(
            parse_listen("fd77::3"),
            Some("[fd77::3]:53".parse().unwrap())
        );
        assert_eq!(
            parse_listen("[fd77::3]"),
            Some("[fd77::3]:53".parse().unwrap())
        );
        for bad in [
            "",
            "db:53",
            "10.77.0.3:0",
            "0.0.0.0:53",
            "[::]:53",
            "10.77.0.3:99999",
        ] {
            assert_eq!(parse_listen(bad), None, "{bad}");
        }
    }
}
