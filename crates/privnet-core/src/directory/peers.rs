//! From the directory's key set to the peers of a member: each member record under the members
//! prefix is decoded, its certificate verified against the member's trust store, and turned into
//! a [`DirectoryPeer`]; a change of the key set becomes a [`PeerChange`] (add, update, remove),
//! and nothing at all when the peer the record describes did not change.
//!
//! A record is skipped — counted by reason, and reported with its key so that the I/O shell can
//! log it — when it does not decode, when its certificate is not one the trust store accepts
//! (another network, an unknown or revoked CA, expired, revoked), when the key's name is not the
//! certificate's, when it is this member's own record, or when another key or a static peer
//! already holds its Noise key. A skipped record that replaces a valid one removes that peer.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use ipnetwork::IpNetwork;

use super::record::{MemberRecord, RecordError};
use super::watch::KeyChange;
use crate::identity::TrustStore;

/// A peer as the directory describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectoryPeer {
    /// The directory key of its record.
    pub key: String,
    /// Its name (from its certificate).
    pub name: String,
    /// Its Noise static public key (from its certificate).
    pub public_key: [u8; 32],
    /// The first endpoint of its record.
    pub endpoint: Option<SocketAddr>,
    /// All endpoints of its record.
    pub endpoints: Vec<SocketAddr>,
    /// Its overlay prefixes (from its certificate).
    pub allowed_ips: Vec<IpNetwork>,
    /// The keepalive its record asks for.
    pub persistent_keepalive: Option<Duration>,
    /// The capabilities of its record.
    pub capabilities: Vec<String>,
}

/// What changes in the member's peers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerChange {
    /// A new peer.
    Add(DirectoryPeer),
    /// A known peer whose record changed (same Noise key).
    Update(DirectoryPeer),
    /// A peer that is gone.
    Remove(DirectoryPeer),
}

/// Why a record was skipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Skip {
    /// It does not decode.
    Record(RecordError),
    /// Its certificate is not accepted by the trust store.
    Certificate,
    /// Its key does not end in the certificate's name.
    NameMismatch,
    /// This member's own record.
    Own,
    /// Its Noise key is a static peer's or another record's.
    DuplicateKey,
}

impl Skip {
    /// The counter label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Record(e) => e.label(),
            Self::Certificate => "bad_certificate",
            Self::NameMismatch => "name_mismatch",
            Self::Own => "own_record",
            Self::DuplicateKey => "duplicate_key",
        }
    }
}

/// The peers a member learned from the directory.
#[derive(Clone, Debug)]
pub struct PeerSet {
    members_prefix: String,
    own_key: [u8; 32],
    reserved: Vec<[u8; 32]>,
    /// Every record value by key, valid or not (to re-evaluate them when the trust changes).
    raw: BTreeMap<String, Vec<u8>>,
    peers: BTreeMap<String, DirectoryPeer>,
    skipped: BTreeMap<&'static str, u64>,
}

impl PeerSet {
    /// Peers from records under `members_prefix` (keys outside it are ignored); `own_key` is this
    /// member's Noise key, `reserved` the keys of statically configured peers.
    pub fn new(members_prefix: &str, own_key: [u8; 32], reserved: Vec<[u8; 32]>) -> Self {
        Self {
            members_prefix: members_prefix.to_owned(),
            own_key,
            reserved,
            raw: BTreeMap::new(),
            peers: BTreeMap::new(),
            skipped: BTreeMap::new(),
        }
    }

    /// The peers, by record key.
    pub fn peers(&self) -> impl Iterator<Item = &DirectoryPeer> + '_ {
        self.peers.values()
    }

    /// The number of peers.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// Skipped records by reason label, since the start.
    pub fn skipped(&self) -> &BTreeMap<&'static str, u64> {
        &self.skipped
    }

    /// Apply a change of the key set at Unix time `now`: the peer changes, and the skipped record
    /// (its key and why), if any.
    pub fn apply(
        &mut self,
        change: KeyChange,
        trust: &TrustStore,
        now: u64,
    ) -> (Vec<PeerChange>, Option<(String, Skip)>) {
        let (key, value) = match change {
            KeyChange::Set { key, value } => (key, Some(value)),
            KeyChange::Removed { key } => (key, None),
        };
        let Some(name) = key.strip_prefix(&self.members_prefix) else {
            return (Vec::new(), None);
        };
        let name = name.to_owned();
        let Some(value) = value else {
            self.raw.remove(&key);
            let out = self.peers.remove(&key).map(PeerChange::Remove);
            return (out.into_iter().collect(), None);
        };
        self.raw.insert(key.clone(), value.clone());
        let evaluated = self.evaluate(&key, &name, &value, trust, now);
        let mut out = Vec::new();
        let skipped = match evaluated {
            Ok(peer) => {
                match self.peers.get(&key) {
                    Some(old) if *old == peer => {}
                    Some(old) if old.public_key == peer.public_key => {
                        out.push(PeerChange::Update(peer.clone()));
                    }
                    Some(old) => {
                        out.push(PeerChange::Remove(old.clone()));
                        out.push(PeerChange::Add(peer.clone()));
                    }
                    None => out.push(PeerChange::Add(peer.clone())),
                }
                self.peers.insert(key, peer);
                None
            }
            Err(skip) => {
                // Our own record is expected under the prefix: not a problem to count.
                if skip != Skip::Own {
                    *self.skipped.entry(skip.label()).or_default() += 1;
                }
                if let Some(old) = self.peers.remove(&key) {
                    out.push(PeerChange::Remove(old));
                }
                Some((key, skip))
            }
        };
        (out, skipped)
    }

    /// Re-evaluate every record against a new trust store (a revocation list arrived, a CA
    /// changed): peers whose certificate is no longer accepted are removed, records that now
    /// verify are added.
    pub fn revalidate(
        &mut self,
        trust: &TrustStore,
        now: u64,
    ) -> (Vec<PeerChange>, Vec<(String, Skip)>) {
        let raw: Vec<(String, Vec<u8>)> = self
            .raw
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut changes = Vec::new();
        let mut skips = Vec::new();
        for (key, value) in raw {
            let was_skipped = !self.peers.contains_key(&key);
            let (mut c, s) = self.apply(KeyChange::Set { key, value }, trust, now);
            changes.append(&mut c);
            // A record that was already skipped is not counted again.
            if let Some(s) = s.filter(|s| s.1 != Skip::Own) {
                if was_skipped {
                    if let Some(n) = self.skipped.get_mut(s.1.label()) {
                        *n = n.saturating_sub(1);
                    }
                } else {
                    skips.push(s);
                }
            }
        }
        (changes, skips)
    }

    fn evaluate(
        &self,
        key: &str,
        name: &str,
        value: &[u8],
        trust: &TrustStore,
        now: u64,
    ) -> Result<DirectoryPeer, Skip> {
        let (record, cert) = MemberRecord::from_bytes(value).map_err(Skip::Record)?;
        trust
            .verify_certificate(&cert, None, now)
            .map_err(|_| Skip::Certificate)?;
        if cert.name() != name {
            return Err(Skip::NameMismatch);
        }
        let public_key = cert.public_key();
        if public_key == self.own_key {
            return Err(Skip::Own);
        }
        if self.reserved.contains(&public_key)
            || self
                .peers
                .iter()
                .any(|(k, p)| k != key && p.public_key == public_key)
        {
            return Err(Skip::DuplicateKey);
        }
        Ok(DirectoryPeer {
            key: key.to_owned(),
            name: name.to_owned(),
            public_key,
            endpoint: record.endpoints.first().copied(),
            endpoints: record.endpoints,
            allowed_ips: cert.overlay_prefixes(),
            persistent_keepalive: record
                .persistent_keepalive
                .map(|s| Duration::from_secs(u64::from(s))),
            capabilities: record.capabilities,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::test_support::member;
    use super::*;
    use crate::identity::test_support::NOW;
    use crate::identity::RevocationList;

    const P: &str = "/privnet/testnet/members/";

    fn record(name: &str, addr: &str, key: u8, port: u16) -> (TrustStore, Vec<u8>) {
        let (trust, cert) = member(name, addr, key);
        let ep = format!("192.0.2.1:{port}").parse().unwrap();
        (
            trust,
            MemberRecord::new(&cert, vec![ep]).to_bytes().unwrap(),
        )
    }

    fn set(name: &str, value: Vec<u8>) -> KeyChange {
        KeyChange::Set {
            key: format!("{P}{name}"),
            value,
        }
    }

    #[test]
    fn records_become_peers_and_unchanged_ones_change_nothing() {
        let (trust, a) = record("a", "10.77.0.1", 1, 1000);
        let mut set_ = PeerSet::new(P, [9; 32], vec![]);
        let (c, s) = set_.apply(set("a", a.clone()), &trust, NOW);
        assert!(s.is_none());
        let [PeerChange::Add(p)] = c.as_slice() else {
            panic!("{c:?}")
        };
        assert_eq!(p.name, "a");
        assert_eq!(p.public_key, [1; 32]);
        assert_eq!(p.allowed_ips, vec!["10.77.0.1/32".parse().unwrap()]);
        // The same record again: nothing.
        assert!(set_.apply(set("a", a), &trust, NOW).0.is_empty());
        // A new endpoint: an update.
        let (_, a2) = record("a", "10.77.0.1", 1, 2000);
        let (c, _) = set_.apply(set("a", a2), &trust, NOW);
        assert!(
            matches!(c.as_slice(), [PeerChange::Update(p)] if p.endpoint.unwrap().port() == 2000)
        );
        // Deleted: removed.
        let (c, _) = set_.apply(
            KeyChange::Removed {
                key: format!("{P}a"),
            },
            &trust,
            NOW,
        );
        assert!(matches!(c.as_slice(), [PeerChange::Remove(p)] if p.name == "a"));
        assert!(set_.is_empty());
    }

    #[test]
    fn bad_records_are_skipped_and_counted_and_replace_a_good_one() {
        let (trust, a) = record("a", "10.77.0.1", 1, 1000);
        let mut s = PeerSet::new(P, [9; 32], vec![[5; 32]]);
        s.apply(set("a", a.clone()), &trust, NOW);
        // Garbage under a's key: a is removed, the skip is reported with its key.
        let (c, skip) = s.apply(set("a", vec![1, 2, 3]), &trust, NOW);
        assert!(matches!(c.as_slice(), [PeerChange::Remove(_)]));
        assert_eq!(skip.unwrap().0, format!("{P}a"));
        // A's record under b's name.
        let (_, skip) = s.apply(set("b", a), &trust, NOW);
        assert_eq!(skip.unwrap().1, Skip::NameMismatch);
        // Our own record, and a static peer's key.
        let (_, own) = record("me", "10.77.0.9", 9, 1);
        assert_eq!(s.apply(set("me", own), &trust, NOW).1.unwrap().1, Skip::Own);
        assert_eq!(
            s.skipped().get("own_record"),
            None,
            "our own record is not counted"
        );
        let (_, st) = record("st", "10.77.0.5", 5, 1);
        assert_eq!(
            s.apply(set("st", st), &trust, NOW).1.unwrap().1,
            Skip::DuplicateKey
        );
        // Another network's certificate.
        let other = {
            use crate::identity::test_support::{ca_fixture, member_params};
            let (k, ca) = ca_fixture(2);
            let mut p = member_params([7; 32]);
            p.name = "x".into();
            let cert = crate::identity::MemberCertificate::issue(&ca, &k, &p).unwrap();
            MemberRecord::new(&cert, vec![]).to_bytes().unwrap()
        };
        assert_eq!(
            s.apply(set("x", other), &trust, NOW).1.unwrap().1,
            Skip::Certificate
        );
        assert_eq!(s.skipped().get("record_body"), Some(&1));
        assert_eq!(s.skipped().get("name_mismatch"), Some(&1));
        assert_eq!(s.skipped().get("bad_certificate"), Some(&1));
        // Keys outside the members prefix are not ours.
        assert_eq!(
            s.apply(
                KeyChange::Set {
                    key: "/privnet/testnet/bundles/policy".into(),
                    value: vec![]
                },
                &trust,
                NOW
            ),
            (vec![], None)
        );
    }

    #[test]
    fn a_revoked_member_is_removed_on_revalidation() {
        let (trust, cert) = member("a", "10.77.0.1", 1);
        let a = MemberRecord::new(&cert, vec![]).to_bytes().unwrap();
        let mut s = PeerSet::new(P, [9; 32], vec![]);
        s.apply(set("a", a), &trust, NOW);
        let mut list = RevocationList::new();
        list.insert(cert.fingerprint());
        let revoked = trust.clone().with_revocations(list);
        let (c, skips) = s.revalidate(&revoked, NOW);
        assert!(matches!(c.as_slice(), [PeerChange::Remove(p)] if p.name == "a"));
        assert_eq!(skips.len(), 1);
        // Revalidating again skips nothing new, counts nothing twice.
        let (c, skips) = s.revalidate(&revoked, NOW);
        assert!(c.is_empty() && skips.is_empty());
        assert_eq!(s.skipped().get("bad_certificate"), Some(&1));
        // Un-revoked: back.
        let (c, _) = s.revalidate(&trust, NOW);
        assert!(matches!(c.as_slice(), [PeerChange::Add(_)]));
    }
}
