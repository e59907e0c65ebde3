//! Command-line parsing (hand-rolled: the binary is std-only apart from `ring`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::{ServerConfig, TcpClientConfig, UdpPingConfig};

/// Usage text.
pub const USAGE: &str = "\
usage:
  privnet-testapp serve --tcp PORT --udp PORT [--bind IP] [--idle-timeout-secs N]
  privnet-testapp send-tcp IP:PORT --bytes N --seed S [--connect-timeout-ms MS] [--io-timeout-ms MS] [--deadline-secs N]
  privnet-testapp udp-ping IP:PORT --count N [--timeout-ms MS] [--retries N]
  privnet-testapp selfcheck [--device PATH]
  privnet-testapp version

Addresses are numeric (IPv4 or [IPv6]:port): the scratch image has no resolver.
Exit status: 0 success, 1 check failed, 2 usage error.";

/// A parsed command line.
#[derive(Debug, Clone)]
pub enum Command {
    /// Run the TCP transfer server and the UDP echo server.
    Serve {
        /// Address both listeners bind to.
        bind: IpAddr,
        /// TCP port.
        tcp: u16,
        /// UDP port.
        udp: u16,
        /// Server timeouts.
        config: ServerConfig,
    },
    /// Send bytes and verify the digest the server returns.
    SendTcp {
        /// Server address.
        addr: SocketAddr,
        /// Number of bytes.
        bytes: u64,
        /// Seed of the pseudo-random bytes.
        seed: u64,
        /// Client timeouts.
        config: TcpClientConfig,
    },
    /// UDP echo check.
    UdpPing {
        /// Echo server address.
        addr: SocketAddr,
        /// Settings.
        config: UdpPingConfig,
    },
    /// Print uid/capabilities and optionally check a device opens.
    SelfCheck {
        /// Device to open read-write.
        device: Option<String>,
    },
    /// Print the version.
    Version,
    /// Print usage.
    Help,
}

fn value<'a>(flag: &str, it: &mut impl Iterator<Item = &'a str>) -> Result<&'a str, String> {
    it.next().ok_or_else(|| format!("{flag} needs a value"))
}

fn number<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, String> {
    v.parse::<T>()
        .map_err(|_| format!("{flag}: not a valid number: {v:?}"))
}

fn addr(v: &str) -> Result<SocketAddr, String> {
    v.parse::<SocketAddr>()
        .map_err(|_| format!("not a numeric IP:PORT address: {v:?}"))
}

/// Parses the arguments after the program name.
pub fn parse<'a>(args: impl IntoIterator<Item = &'a str>) -> Result<Command, String> {
    let mut it = args.into_iter();
    let Some(cmd) = it.next() else {
        return Ok(Command::Help);
    };
    match cmd {
        "serve" => {
            let mut bind = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
            let (mut tcp, mut udp) = (None, None);
            let mut config = ServerConfig::default();
            while let Some(flag) = it.next() {
                let v = value(flag, &mut it)?;
                match flag {
                    "--tcp" => tcp = Some(number::<u16>(flag, v)?),
                    "--udp" => udp = Some(number::<u16>(flag, v)?),
                    "--bind" => {
                        bind = v
                            .parse()
                            .map_err(|_| format!("--bind: not an IP address: {v:?}"))?
                    }
                    "--idle-timeout-secs" => {
                        config.idle_timeout = Duration::from_secs(number(flag, v)?)
                    }
                    _ => return Err(format!("serve: unknown flag {flag:?}")),
                }
            }
            Ok(Command::Serve {
                bind,
                tcp: tcp.ok_or("serve: --tcp PORT is required")?,
                udp: udp.ok_or("serve: --udp PORT is required")?,
                config,
            })
        }
        "send-tcp" => {
            let target = addr(it.next().ok_or("send-tcp: IP:PORT is required")?)?;
            let (mut bytes, mut seed) = (None, None);
            let mut config = TcpClientConfig::default();
            while let Some(flag) = it.next() {
                let v = value(flag, &mut it)?;
                match flag {
                    "--bytes" => bytes = Some(number::<u64>(flag, v)?),
                    "--seed" => seed = Some(number::<u64>(flag, v)?),
                    "--connect-timeout-ms" => {
                        config.connect_timeout = Duration::from_millis(number(flag, v)?)
                    }
                    "--io-timeout-ms" => {
                        config.io_timeout = Duration::from_millis(number(flag, v)?)
                    }
                    "--deadline-secs" => config.deadline = Duration::from_secs(number(flag, v)?),
                    _ => return Err(format!("send-tcp: unknown flag {flag:?}")),
                }
            }
            if config.connect_timeout.is_zero() || config.io_timeout.is_zero() {
                return Err("send-tcp: timeouts must be positive".to_owned());
            }
            Ok(Command::SendTcp {
                addr: target,
                bytes: bytes.ok_or("send-tcp: --bytes N is required")?,
                seed: seed.ok_or("send-tcp: --seed S is required")?,
                config,
            })
        }
        "udp-ping" => {
            let target = addr(it.next().ok_or("udp-ping: IP:PORT is required")?)?;
            let mut config = UdpPingConfig::default();
            let mut count = None;
            while let Some(flag) = it.next() {
                let v = value(flag, &mut it)?;
                match flag {
                    "--count" => count = Some(number::<u32>(flag, v)?),
                    "--timeout-ms" => config.timeout = Duration::from_millis(number(flag, v)?),
                    "--retries" => config.retries = number(flag, v)?,
                    _ => return Err(format!("udp-ping: unknown flag {flag:?}")),
                }
            }
            config.count = count.ok_or("udp-ping: --count N is required")?;
            if config.count == 0 || config.timeout.is_zero() {
                return Err("udp-ping: --count and --timeout-ms must be positive".to_owned());
            }
            Ok(Command::UdpPing {
                addr: target,
                config,
            })
        }
        "selfcheck" => {
            let mut device = None;
            while let Some(flag) = it.next() {
                let v = value(flag, &mut it)?;
                match flag {
                    "--device" => device = Some(v.to_owned()),
                    _ => return Err(format!("selfcheck: unknown flag {flag:?}")),
                }
            }
            Ok(Command::SelfCheck { device })
        }
        "version" | "--version" => Ok(Command::Version),
        "help" | "--help" | "-h" => Ok(Command::Help),
        other => Err(format!("unknown command {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Command, String> {
        parse(s.split_whitespace())
    }

    #[test]
    fn parses_serve() {
        match p("serve --tcp 7000 --udp 7001 --bind 127.0.0.1").expect("parse") {
            Command::Serve { bind, tcp, udp, .. } => {
                assert_eq!(
                    (bind.to_string(), tcp, udp),
                    ("127.0.0.1".into(), 7000, 7001)
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(p("serve --tcp 7000").is_err());
        assert!(p("serve --tcp 70000 --udp 1").is_err());
        assert!(p("serve --tcp").is_err());
    }

    #[test]
    fn parses_clients() {
        match p("send-tcp 10.77.0.3:7000 --bytes 1048576 --seed 42 --deadline-secs 5")
            .expect("parse")
        {
            Command::SendTcp {
                addr,
                bytes,
                seed,
                config,
            } => {
                assert_eq!(addr.to_string(), "10.77.0.3:7000");
                assert_eq!((bytes, seed), (1 << 20, 42));
                assert_eq!(config.deadline, Duration::from_secs(5));
            }
            other => panic!("{other:?}"),
        }
        match p("udp-ping [::1]:7001 --count 3 --timeout-ms 250 --retries 0").expect("parse") {
            Command::UdpPing { addr, config } => {
                assert!(addr.is_ipv6());
                assert_eq!((config.count, config.retries), (3, 0));
            }
            other => panic!("{other:?}"),
        }
        assert!(p("send-tcp host.example:7000 --bytes 1 --seed 1").is_err());
        assert!(p("send-tcp 10.0.0.1:1 --bytes x --seed 1").is_err());
        assert!(p("udp-ping 10.0.0.1:1 --count 0").is_err());
        assert!(p("udp-ping 10.0.0.1:1").is_err());
        assert!(p("frobnicate").is_err());
        assert!(matches!(p(""), Ok(Command::Help)));
    }
}
