//! The names of the members a node knows, sans-IO: one table, rebuilt from the node whenever its
//! peers change, that both the embedded stack's resolver (`io::embedded`, `"db:5432"`) and the
//! DNS responder of TUN mode (`io::dns`, `db.NETWORK.`) read.
//!
//! A member's **verified** name (the one in its certificate) wins; for a peer not verified yet,
//! the name the configuration or the directory gives it (`DriverConfig::peer_names`, a directory
//! record's name) is used, so a name from there only says where to knock: the certificate decides
//! once a session is up. Each entry holds the member's host addresses (its `/32` and `/128`
//! overlay prefixes). Lookups match the exact name first, then ignoring ASCII case.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use crate::credential::PeerIdentity;
use crate::node::Node;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Entry {
    addresses: Vec<IpAddr>,
    /// From a verified credential (else from the configuration).
    verified: bool,
}

/// Names and identities of the members a node knows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NameTable {
    names: HashMap<String, Entry>,
    identities: HashMap<IpAddr, Arc<PeerIdentity>>,
}

impl NameTable {
    /// Rebuild from `node`: verified names first, then configured ones (`configured`: static
    /// public key → name) for peers not verified yet.
    pub fn from_node(node: &Node, configured: &HashMap<[u8; 32], String>) -> Self {
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

    /// Add this member itself (`name`, its own certificate's, with its host addresses), so that
    /// its own name resolves too. It replaces a peer claiming the same name.
    #[must_use]
    pub fn with_member(mut self, name: &str, addresses: &[IpAddr]) -> Self {
        if !name.is_empty() {
            self.names.insert(
                name.to_owned(),
                Entry {
                    addresses: addresses.to_vec(),
                    verified: true,
                },
            );
        }
        self
    }

    /// The entry of `name`: exact, else ignoring ASCII case.
    fn entry(&self, name: &str) -> Option<&Entry> {
        self.names.get(name).or_else(|| {
            self.names
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, e)| e)
        })
    }

    /// Every address of `name` (exact, else ignoring ASCII case); `None` for an unknown name.
    pub fn addresses(&self, name: &str) -> Option<&[IpAddr]> {
        self.entry(name).map(|e| e.addresses.as_slice())
    }

    /// The address of `name` (exact, else ignoring ASCII case), preferring `v4` or not.
    pub fn lookup(&self, name: &str, prefer_v4: bool) -> Option<IpAddr> {
        let e = self.entry(name)?;
        e.addresses
            .iter()
            .find(|a| a.is_ipv4() == prefer_v4)
            .or_else(|| e.addresses.first())
            .copied()
    }

    /// The verified identity of the member owning overlay address `ip`.
    pub fn identity(&self, ip: IpAddr) -> Option<Arc<PeerIdentity>> {
        self.identities.get(&ip).cloned()
    }

    /// Every known name with its addresses and whether it was verified, sorted by name.
    pub fn names(&self) -> Vec<(String, Vec<IpAddr>, bool)> {
        let mut v: Vec<_> = self
            .names
            .iter()
            .map(|(n, e)| (n.clone(), e.addresses.clone(), e.verified))
            .collect();
        v.sort();
        v
    }

    /// How many names the table holds.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether the table holds no name.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> NameTable {
        NameTable::default().with_member(
            "Db",
            &["10.77.0.3".parse().unwrap(), "fd77::3".parse().unwrap()],
        )
    }

    #[test]
    fn test_lookup_exact_then_case_insensitive() {
        let t = table();
        assert_eq!(t.addresses("Db").map(<[IpAddr]>::len), Some(2));
        assert_eq!(t.addresses("dB").map(<[IpAddr]>::len), Some(2));
        assert_eq!(t.lookup("db", true), Some("10.77.0.3".parse().unwrap()));
        assert_eq!(t.lookup("DB", false), Some("fd77::3".parse().unwrap()));
        assert_eq!(t.addresses("web"), None);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn test_member_replaces_a_peer_of_the_same_name_and_empty_is_ignored() {
        let t = table().with_member("Db", &["10.77.0.9".parse().unwrap()]);
        assert_eq!(t.addresses("db"), Some(&["10.77.0.9".parse().unwrap()][..]));
        assert!(NameTable::default().with_member("", &[]).is_empty());
    }
}
