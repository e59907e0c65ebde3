//! Names of members: `"db:5432"` resolves through the members the node knows. A leaf of
//! `embedded`.
//!
//! The directory ([`crate::names::NameTable`]) is rebuilt from the node whenever its peers change (a session up or down, a
//! trust-store reload): a member's **verified** name (the one in its certificate) and its host
//! addresses; for a peer not verified yet, the name the configuration gives it
//! (`DriverConfig::peer_names`). A connection opened by name is checked once established: the
//! verified name of the peer that answered must be the one asked for, or the connection is
//! aborted ([`super::NetError::NameMismatch`]). So a name from the configuration only says where
//! to knock; the certificate decides.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::error::NetError;

/// Something that names an overlay endpoint: a [`SocketAddr`], an `(IpAddr, u16)`, or a string
/// `"10.77.0.3:5432"`, `"[fd77::3]:5432"` or `"db:5432"` (a member's name and a port).
pub trait OverlayAddr {
    /// The endpoint, or the name and port to resolve.
    ///
    /// # Errors
    /// [`NetError::BadAddress`] when it is none of the above.
    fn target(&self) -> Result<Target, NetError>;
}

/// An endpoint to reach: an address, or a member's name to resolve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// An overlay address and port.
    Addr(SocketAddr),
    /// A member's name and a port.
    Name(String, u16),
}

impl OverlayAddr for SocketAddr {
    fn target(&self) -> Result<Target, NetError> {
        Ok(Target::Addr(*self))
    }
}

impl OverlayAddr for (IpAddr, u16) {
    fn target(&self) -> Result<Target, NetError> {
        Ok(Target::Addr(SocketAddr::new(self.0, self.1)))
    }
}

impl OverlayAddr for (Ipv4Addr, u16) {
    fn target(&self) -> Result<Target, NetError> {
        Ok(Target::Addr(SocketAddr::new(self.0.into(), self.1)))
    }
}

impl OverlayAddr for (Ipv6Addr, u16) {
    fn target(&self) -> Result<Target, NetError> {
        Ok(Target::Addr(SocketAddr::new(self.0.into(), self.1)))
    }
}

impl OverlayAddr for (&str, u16) {
    fn target(&self) -> Result<Target, NetError> {
        let host = self.0.trim_start_matches('[').trim_end_matches(']');
        Ok(match host.parse::<IpAddr>() {
            Ok(ip) => Target::Addr(SocketAddr::new(ip, self.1)),
            Err(_) if valid_name(host) => Target::Name(host.to_owned(), self.1),
            Err(_) => return Err(NetError::BadAddress(self.0.to_owned())),
        })
    }
}

impl OverlayAddr for str {
    fn target(&self) -> Result<Target, NetError> {
        if let Ok(a) = self.parse::<SocketAddr>() {
            return Ok(Target::Addr(a));
        }
        let (host, port) = self
            .rsplit_once(':')
            .ok_or_else(|| NetError::BadAddress(self.to_owned()))?;
        let port: u16 = port
            .parse()
            .map_err(|_| NetError::BadAddress(self.to_owned()))?;
        if host.contains(':') && !host.starts_with('[') {
            return Err(NetError::BadAddress(self.to_owned()));
        }
        (host, port).target()
    }
}

impl OverlayAddr for &str {
    fn target(&self) -> Result<Target, NetError> {
        (**self).target()
    }
}

impl OverlayAddr for String {
    fn target(&self) -> Result<Target, NetError> {
        self.as_str().target()
    }
}

impl OverlayAddr for &String {
    fn target(&self) -> Result<Target, NetError> {
        self.as_str().target()
    }
}

impl<T: OverlayAddr + ?Sized> OverlayAddr for &&T {
    fn target(&self) -> Result<Target, NetError> {
        (**self).target()
    }
}

/// Member names: printable, no white space, colon or brackets.
fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && s.chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && !matches!(c, ':' | '[' | ']'))
}

/// The names table is the core's ([`crate::names`]), shared with the DNS responder of TUN mode.
pub(crate) use crate::names::NameTable as Directory;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_addresses_and_names() {
        let a: SocketAddr = "10.77.0.3:80".parse().unwrap();
        assert_eq!("10.77.0.3:80".target(), Ok(Target::Addr(a)));
        assert_eq!(a.target(), Ok(Target::Addr(a)));
        assert_eq!("db:5432".target(), Ok(Target::Name("db".into(), 5432)));
        assert_eq!(("db", 5432).target(), Ok(Target::Name("db".into(), 5432)));
        assert_eq!(
            "[fd77::3]:80".target(),
            Ok(Target::Addr("[fd77::3]:80".parse().unwrap()))
        );
        assert_eq!(
            ("fd77::3", 80).target(),
            Ok(Target::Addr("[fd77::3]:80".parse().unwrap()))
        );
        for bad in ["db", "db:", "db:99999", "fd77::3:80", "a b:1", ":80"] {
            assert!(
                matches!(bad.target(), Err(NetError::BadAddress(_))),
                "{bad:?}"
            );
        }
    }
}
