//! Names of members: `"db:5432"` resolves through the members the node knows. A leaf of
//! `embedded`.
//!
//! The directory is rebuilt from the node whenever its peers change (a session up or down, a
//! trust-store reload): a member's **verified** name (the one in its certificate) and its host
//! addresses; for a peer not verified yet, the name the configuration gives it
//! (`DriverConfig::peer_names`). A connection opened by name is checked once established: the
//! verified name of the peer that answered must be the one asked for, or the connection is
//! aborted ([`super::NetError::NameMismatch`]). So a name from the configuration only says where
//! to knock; the certificate decides.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use super::error::NetError;
use crate::credential::PeerIdentity;
use crate::node::Node;

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

#[derive(Clone, Debug, Default)]
struct Entry {
    addresses: Vec<IpAddr>,
    /// From a verified credential (else from the configuration).
    verified: bool,
}

/// Names and identities of the members a node knows.
#[derive(Clone, Debug, Default)]
pub(crate) struct Directory {
    names: HashMap<String, Entry>,
    identities: HashMap<IpAddr, Arc<PeerIdentity>>,
}

impl Directory {
    /// Rebuild from `node`: verified names first, then configured ones (`configured`: static
    /// public key → name) for peers not verified yet.
    pub(crate) fn from_node(node: &Node, configured: &HashMap<[u8; 32], String>) -> Self {
        let mut d = Self::default();
        for s in node.peer_status() {
            let hosts: Vec<IpAddr> = s
                .addresses
                .iter()
                .filter(|n| n.prefix() == if n.is_ipv4() { 32 } else { 128 })
                .map(ipnetwork::IpNetwork::ip)
                .collect();
            if let Some(identity) = node.peer_identity(s.id) {
                let identity = Arc::new(identity.clone());
                for a in &hosts {
                    d.identities.insert(*a, identity.clone());
                }
                let e = d.names.entry(identity.name.clone()).or_default();
                if !e.verified {
                    *e = Entry::default();
                    e.verified = true;
                }
                e.addresses.extend(&hosts);
            } else if let Some(name) = configured.get(&s.static_public) {
                let e = d.names.entry(name.clone()).or_default();
                if !e.verified {
                    e.addresses.extend(&hosts);
                }
            }
        }
        d
    }

    /// The address of `name` (exact, else ignoring ASCII case), preferring `v4` or not.
    pub(crate) fn lookup(&self, name: &str, prefer_v4: bool) -> Option<IpAddr> {
        let e = self.names.get(name).or_else(|| {
            self.names
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, e)| e)
        })?;
        e.addresses
            .iter()
            .find(|a| a.is_ipv4() == prefer_v4)
            .or_else(|| e.addresses.first())
            .copied()
    }

    /// The verified identity of the member owning overlay address `ip`.
    pub(crate) fn identity(&self, ip: IpAddr) -> Option<Arc<PeerIdentity>> {
        self.identities.get(&ip).cloned()
    }

    /// Every known name with its addresses and whether it was verified.
    pub(crate) fn names(&self) -> Vec<(String, Vec<IpAddr>, bool)> {
        let mut v: Vec<_> = self
            .names
            .iter()
            .map(|(n, e)| (n.clone(), e.addresses.clone(), e.verified))
            .collect();
        v.sort();
        v
    }
}

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
