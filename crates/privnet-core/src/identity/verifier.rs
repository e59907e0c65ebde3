//! The trust store (trusted CAs + revocation list) and the handshake credential verifier.

use std::net::IpAddr;
use std::sync::{PoisonError, RwLock};

use ipnetwork::IpNetwork;

use super::ca::CaCertificate;
use super::codec::{DecodeError, Fingerprint};
use super::member::MemberCertificate;
use super::revocation::RevocationList;
use super::NetworkId;
use crate::credential::{CredentialError, CredentialVerifier, PeerIdentity};

/// Why a member certificate was refused. [`CertError::to_credential_error`] gives the coarse
/// [`CredentialError`] the core counts.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// The bytes do not decode.
    #[error("certificate does not decode: {0}")]
    Decode(#[from] DecodeError),
    /// The certificate is for another network.
    #[error("certificate is for network {found}, expected {expected}")]
    WrongNetwork {
        /// This node's network.
        expected: NetworkId,
        /// The certificate's network.
        found: NetworkId,
    },
    /// The issuing CA is not in the trusted set.
    #[error("issuing CA {0} is not trusted")]
    UnknownCa(Fingerprint),
    /// The issuing CA's fingerprint is on the revocation list.
    #[error("issuing CA {0} is revoked")]
    CaRevoked(Fingerprint),
    /// The signature does not verify with the issuing CA's key.
    #[error("signature does not verify")]
    BadSignature,
    /// The certificate's fingerprint is on the revocation list.
    #[error("certificate {0} is revoked")]
    Revoked(Fingerprint),
    /// The CA is not valid yet.
    #[error("CA certificate not valid before {not_before}")]
    CaNotYetValid {
        /// CA's not_before.
        not_before: u64,
    },
    /// The CA has expired.
    #[error("CA certificate expired at {not_after}")]
    CaExpired {
        /// CA's not_after.
        not_after: u64,
    },
    /// The certificate is not valid yet.
    #[error("certificate not valid before {not_before}")]
    NotYetValid {
        /// Certificate's not_before.
        not_before: u64,
    },
    /// The certificate has expired.
    #[error("certificate expired at {not_after}")]
    Expired {
        /// Certificate's not_after.
        not_after: u64,
    },
    /// The Noise static key is not the one in the certificate.
    #[error("the handshake static key is not the certificate's key")]
    KeyMismatch,
    /// An address lies outside the CA's overlay prefixes.
    #[error("address {0} is outside the CA's overlay prefixes")]
    AddressOutsidePrefixes(IpAddr),
    /// A route is not allowed by the CA.
    #[error("route {0} is not allowed by the CA")]
    RouteNotAllowed(IpNetwork),
}

impl CertError {
    /// The coarse error for the core's counters. Constraint violations (addresses or routes the CA
    /// does not allow) map to [`CredentialError::WrongNetwork`]: the certificate claims space that is
    /// not this network's.
    pub fn to_credential_error(&self) -> CredentialError {
        match self {
            Self::Decode(_) => CredentialError::Malformed,
            Self::WrongNetwork { .. }
            | Self::AddressOutsidePrefixes(_)
            | Self::RouteNotAllowed(_) => CredentialError::WrongNetwork,
            Self::UnknownCa(_) | Self::BadSignature => CredentialError::BadSignature,
            Self::Revoked(_) | Self::CaRevoked(_) => CredentialError::Revoked,
            Self::CaNotYetValid { .. } | Self::NotYetValid { .. } => CredentialError::NotYetValid,
            Self::CaExpired { .. } | Self::Expired { .. } => CredentialError::Expired,
            Self::KeyMismatch => CredentialError::KeyMismatch,
        }
    }
}

/// Why a trust store could not be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TrustStoreError {
    /// No CA certificate given.
    #[error("no trusted CA certificate")]
    Empty,
    /// A CA certificate is for another network than the others.
    #[error("CA {fingerprint} is for network {found}, expected {expected}")]
    MixedNetworks {
        /// The network of the store.
        expected: NetworkId,
        /// The CA's network.
        found: NetworkId,
        /// The offending CA.
        fingerprint: Fingerprint,
    },
}

/// The set of CA certificates a node trusts for one network, and its revocation list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustStore {
    network_id: NetworkId,
    cas: Vec<CaCertificate>,
    revoked: RevocationList,
}

impl TrustStore {
    /// A store trusting `cas` (at least one; all of the same network, whose id the store takes).
    ///
    /// # Errors
    /// [`TrustStoreError`] if `cas` is empty or mixes networks.
    pub fn new(cas: Vec<CaCertificate>) -> Result<Self, TrustStoreError> {
        let network_id = cas.first().ok_or(TrustStoreError::Empty)?.network_id();
        if let Some(ca) = cas.iter().find(|c| c.network_id() != network_id) {
            return Err(TrustStoreError::MixedNetworks {
                expected: network_id,
                found: ca.network_id(),
                fingerprint: ca.fingerprint(),
            });
        }
        Ok(Self {
            network_id,
            cas,
            revoked: RevocationList::new(),
        })
    }

    /// Replace the revocation list.
    pub fn with_revocations(mut self, revoked: RevocationList) -> Self {
        self.revoked = revoked;
        self
    }

    /// This store with `more` added to its revocation list (a directory's signed revocations
    /// on top of the configured file's).
    pub fn with_more_revocations(mut self, more: &RevocationList) -> Self {
        for fp in more.iter() {
            self.revoked.insert(*fp);
        }
        self
    }

    /// The network this store is for.
    pub fn network_id(&self) -> NetworkId {
        self.network_id
    }

    /// The trusted CA certificates.
    pub fn cas(&self) -> &[CaCertificate] {
        &self.cas
    }

    /// The revocation list.
    pub fn revocations(&self) -> &RevocationList {
        &self.revoked
    }

    /// Decode and verify credential bytes presented by the holder of `noise_static` at `now`.
    ///
    /// # Errors
    /// The first rule the certificate breaks (see the module docs for the order).
    pub fn verify(
        &self,
        credential: &[u8],
        noise_static: &[u8; 32],
        now: u64,
    ) -> Result<PeerIdentity, CertError> {
        let cert = MemberCertificate::from_bytes(credential)?;
        self.verify_certificate(&cert, Some(noise_static), now)
    }

    /// Verify a decoded certificate. With `noise_static` = `None` the key binding is not checked
    /// (e.g. when checking a node's own certificate against its private key separately).
    ///
    /// # Errors
    /// The first rule the certificate breaks.
    pub fn verify_certificate(
        &self,
        cert: &MemberCertificate,
        noise_static: Option<&[u8; 32]>,
        now: u64,
    ) -> Result<PeerIdentity, CertError> {
        if cert.network_id() != self.network_id {
            return Err(CertError::WrongNetwork {
                expected: self.network_id,
                found: cert.network_id(),
            });
        }
        let ca_fp = cert.ca_fingerprint();
        let ca = self
            .cas
            .iter()
            .find(|c| c.fingerprint() == ca_fp)
            .ok_or(CertError::UnknownCa(ca_fp))?;
        if self.revoked.contains(&ca_fp) {
            return Err(CertError::CaRevoked(ca_fp));
        }
        if !cert.verify_signature(ca) {
            return Err(CertError::BadSignature);
        }
        if self.revoked.contains(&cert.fingerprint()) {
            return Err(CertError::Revoked(cert.fingerprint()));
        }
        if now < ca.not_before() {
            return Err(CertError::CaNotYetValid {
                not_before: ca.not_before(),
            });
        }
        if now >= ca.not_after() {
            return Err(CertError::CaExpired {
                not_after: ca.not_after(),
            });
        }
        if now < cert.not_before() {
            return Err(CertError::NotYetValid {
                not_before: cert.not_before(),
            });
        }
        if now >= cert.not_after() {
            return Err(CertError::Expired {
                not_after: cert.not_after(),
            });
        }
        if let Some(key) = noise_static {
            if *key != cert.public_key() {
                return Err(CertError::KeyMismatch);
            }
        }
        if let Some(&a) = cert.addresses().iter().find(|&&a| !ca.allows_address(a)) {
            return Err(CertError::AddressOutsidePrefixes(a));
        }
        if let Some(r) = cert.routes().iter().find(|r| !ca.allows_route(r)) {
            return Err(CertError::RouteNotAllowed(*r));
        }
        Ok(cert.peer_identity(ca))
    }
}

/// The [`CredentialVerifier`] for CA-signed member certificates.
///
/// Holds a [`TrustStore`] behind a lock so the revocation list and the CA set can be replaced at run
/// time (reload without restart) through a shared reference; after replacing, ask the node to
/// revalidate its sessions.
#[derive(Debug)]
pub struct CertVerifier {
    store: RwLock<TrustStore>,
}

impl CertVerifier {
    /// A verifier for `store`.
    pub fn new(store: TrustStore) -> Self {
        Self {
            store: RwLock::new(store),
        }
    }

    /// A copy of the current trust store.
    pub fn store(&self) -> TrustStore {
        self.store
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Replace the revocation list.
    pub fn set_revocations(&self, revoked: RevocationList) {
        self.store
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .revoked = revoked;
    }

    /// Replace the trust store (CA rollover). The network must stay the same.
    ///
    /// # Errors
    /// [`TrustStoreError::MixedNetworks`] if `store` is for another network; nothing is changed.
    pub fn set_store(&self, store: TrustStore) -> Result<(), TrustStoreError> {
        let mut cur = self.store.write().unwrap_or_else(PoisonError::into_inner);
        if store.network_id != cur.network_id {
            let fingerprint = store
                .cas
                .first()
                .map(CaCertificate::fingerprint)
                .unwrap_or(Fingerprint([0; 32]));
            return Err(TrustStoreError::MixedNetworks {
                expected: cur.network_id,
                found: store.network_id,
                fingerprint,
            });
        }
        *cur = store;
        Ok(())
    }

    /// Like [`CredentialVerifier::verify`], with the detailed reason.
    ///
    /// # Errors
    /// The first rule the certificate breaks.
    pub fn verify_detailed(
        &self,
        credential: &[u8],
        noise_static: &[u8; 32],
        unix_now: u64,
    ) -> Result<PeerIdentity, CertError> {
        self.store
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .verify(credential, noise_static, unix_now)
    }
}

impl CredentialVerifier for CertVerifier {
    fn verify(
        &self,
        credential: &[u8],
        noise_static: &[u8; 32],
        unix_now: u64,
    ) -> Result<PeerIdentity, CredentialError> {
        self.verify_detailed(credential, noise_static, unix_now)
            .map_err(|e| e.to_credential_error())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::test_support::*;
    use super::super::{CaCertificate, CaKey, MemberCertificate, MemberParams};
    use super::*;

    fn store(ca: &CaCertificate) -> TrustStore {
        TrustStore::new(vec![ca.clone()]).unwrap()
    }

    #[test]
    fn valid_certificate_is_accepted() {
        let (_, ca, cert) = member_fixture(1);
        let id = store(&ca)
            .verify(&cert.to_bytes(), &cert.public_key(), NOW)
            .unwrap();
        assert_eq!(id.name, "member-a");
        assert_eq!(id.groups, vec!["web".to_owned(), "db".to_owned()]);
        assert_eq!(id.fingerprint, cert.fingerprint().0);
        assert_eq!(id.not_after, cert.not_after());
        let v = CertVerifier::new(store(&ca));
        assert_eq!(
            CredentialVerifier::verify(&v, &cert.to_bytes(), &cert.public_key(), NOW),
            Ok(id)
        );
    }

    #[test]
    fn every_flipped_byte_is_refused() {
        let (_, ca, cert) = member_fixture(1);
        let s = store(&ca);
        let bytes = cert.to_bytes();
        for i in 0..bytes.len() {
            for bit in [0x01u8, 0x80] {
                let mut b = bytes.clone();
                b[i] ^= bit;
                assert!(
                    s.verify(&b, &cert.public_key(), NOW).is_err(),
                    "byte {i} bit {bit:#x} accepted"
                );
            }
        }
    }

    #[test]
    fn truncated_and_garbage_are_malformed() {
        let (_, ca, cert) = member_fixture(1);
        let v = CertVerifier::new(store(&ca));
        let bytes = cert.to_bytes();
        for len in 0..bytes.len() {
            assert_eq!(
                CredentialVerifier::verify(&v, &bytes[..len], &cert.public_key(), NOW),
                Err(CredentialError::Malformed),
                "len {len}"
            );
        }
        assert_eq!(
            CredentialVerifier::verify(&v, &[0xff; 300], &cert.public_key(), NOW),
            Err(CredentialError::Malformed)
        );
    }

    #[test]
    fn wrong_ca_is_refused() {
        let (_, _, cert) = member_fixture(1);
        // Same network id, different CA key: unknown issuer.
        let other_key = CaKey::from_seed([42; 32]);
        let other = CaCertificate::self_signed(&other_key, &ca_params()).unwrap();
        assert_eq!(
            store(&other).verify(&cert.to_bytes(), &cert.public_key(), NOW),
            Err(CertError::UnknownCa(cert.ca_fingerprint()))
        );
        // Another network entirely.
        let (_, other_net) = ca_fixture(2);
        assert!(matches!(
            store(&other_net).verify(&cert.to_bytes(), &cert.public_key(), NOW),
            Err(CertError::WrongNetwork { .. })
        ));
        assert_eq!(
            CertVerifier::new(store(&other_net)).verify(&cert.to_bytes(), &cert.public_key(), NOW),
            Err(CredentialError::WrongNetwork)
        );
    }

    #[test]
    fn forged_signature_with_trusted_fingerprint_is_refused() {
        // An attacker with their own key re-signs a body naming the trusted CA's fingerprint.
        let (_, ca) = ca_fixture(1);
        let forger = CaKey::from_seed([66; 32]);
        let mut forged_ca = ca_params();
        forged_ca.not_after = ca.not_after();
        let fake = CaCertificate::self_signed(&forger, &forged_ca).unwrap();
        let cert = MemberCertificate::issue(&fake, &forger, &member_params([9; 32])).unwrap();
        let mut bytes = cert.to_bytes();
        // Splice the trusted CA fingerprint into the body (offset: version, kind, name, network id).
        let off = 2 + 1 + "member-a".len() + 16;
        bytes[off..off + 32].copy_from_slice(&ca.fingerprint().0);
        assert_eq!(
            store(&ca).verify(&bytes, &cert.public_key(), NOW),
            Err(CertError::BadSignature)
        );
    }

    #[test]
    fn validity_window_is_enforced() {
        let (key, ca) = ca_fixture(1);
        let mp = MemberParams {
            not_before: NOW,
            ..member_params([9; 32])
        };
        let cert = MemberCertificate::issue(&ca, &key, &mp).unwrap();
        let s = store(&ca);
        let b = cert.to_bytes();
        let k = cert.public_key();
        assert!(s.verify(&b, &k, cert.not_before()).is_ok());
        assert!(s.verify(&b, &k, cert.not_after() - 1).is_ok());
        assert!(matches!(
            s.verify(&b, &k, cert.not_before() - 1),
            Err(CertError::NotYetValid { .. })
        ));
        assert!(matches!(
            s.verify(&b, &k, cert.not_after()),
            Err(CertError::Expired { .. })
        ));
        let v = CertVerifier::new(s);
        assert_eq!(
            CredentialVerifier::verify(&v, &b, &k, cert.not_after() + 10),
            Err(CredentialError::Expired)
        );
        assert_eq!(
            CredentialVerifier::verify(&v, &b, &k, 0),
            Err(CredentialError::NotYetValid)
        );
    }

    #[test]
    fn ca_validity_is_enforced() {
        let key = CaKey::from_seed([1; 32]);
        let mut p = ca_params();
        p.not_before = NOW - 100;
        p.not_after = NOW + 100;
        let ca = CaCertificate::self_signed(&key, &p).unwrap();
        let mut mp = member_params([9; 32]);
        mp.not_before = NOW - 1000; // starts before the CA: allowed, but the CA bounds it
        mp.not_after = NOW + 100;
        let cert = MemberCertificate::issue(&ca, &key, &mp).unwrap();
        let s = store(&ca);
        assert!(matches!(
            s.verify(&cert.to_bytes(), &cert.public_key(), NOW - 500),
            Err(CertError::CaNotYetValid { .. })
        ));
        assert!(s.verify(&cert.to_bytes(), &cert.public_key(), NOW).is_ok());
        assert_eq!(
            s.verify(&cert.to_bytes(), &cert.public_key(), NOW)
                .unwrap()
                .not_after,
            NOW + 100
        );
    }

    #[test]
    fn identity_not_after_is_min_of_cert_and_ca() {
        let key = CaKey::from_seed([1; 32]);
        let mut p = ca_params();
        p.not_after = NOW + 50;
        let ca = CaCertificate::self_signed(&key, &p).unwrap();
        let mut mp = member_params([9; 32]);
        mp.not_after = NOW + 50;
        let cert = MemberCertificate::issue(&ca, &key, &mp).unwrap();
        let id = store(&ca)
            .verify(&cert.to_bytes(), &cert.public_key(), NOW)
            .unwrap();
        assert_eq!(id.not_after, NOW + 50);
        assert!(matches!(
            store(&ca).verify(&cert.to_bytes(), &cert.public_key(), NOW + 50),
            Err(CertError::CaExpired { .. })
        ));
    }

    #[test]
    fn key_mismatch_is_refused() {
        let (_, ca, cert) = member_fixture(1);
        let mut other = cert.public_key();
        other[0] ^= 1;
        assert_eq!(
            store(&ca).verify(&cert.to_bytes(), &other, NOW),
            Err(CertError::KeyMismatch)
        );
        assert_eq!(
            CertVerifier::new(store(&ca)).verify(&cert.to_bytes(), &other, NOW),
            Err(CredentialError::KeyMismatch)
        );
    }

    #[test]
    fn revocation_of_cert_and_ca_and_reload() {
        let (_, ca, cert) = member_fixture(1);
        let v = CertVerifier::new(store(&ca));
        let (b, k) = (cert.to_bytes(), cert.public_key());
        assert!(v.verify_detailed(&b, &k, NOW).is_ok());
        let mut list = RevocationList::new();
        list.insert(cert.fingerprint());
        v.set_revocations(list);
        assert_eq!(
            v.verify_detailed(&b, &k, NOW),
            Err(CertError::Revoked(cert.fingerprint()))
        );
        assert_eq!(
            CredentialVerifier::verify(&v, &b, &k, NOW),
            Err(CredentialError::Revoked)
        );
        let text = format!("# whole CA\n{}\n", ca.fingerprint());
        v.set_revocations(RevocationList::parse(&text).unwrap());
        assert_eq!(
            v.verify_detailed(&b, &k, NOW),
            Err(CertError::CaRevoked(ca.fingerprint()))
        );
        v.set_revocations(RevocationList::new());
        assert!(v.verify_detailed(&b, &k, NOW).is_ok());
    }

    #[test]
    fn rollover_trusts_old_and_new_ca() {
        let (old_key, old_ca) = ca_fixture(1);
        let new_key = CaKey::from_seed([200; 32]);
        let mut p = ca_params();
        p.not_after += 1000;
        let new_ca = CaCertificate::self_signed(&new_key, &p).unwrap();
        assert_eq!(new_ca.network_id(), old_ca.network_id());
        let old_cert =
            MemberCertificate::issue(&old_ca, &old_key, &member_params([9; 32])).unwrap();
        let new_cert =
            MemberCertificate::issue(&new_ca, &new_key, &member_params([8; 32])).unwrap();

        let both = TrustStore::new(vec![old_ca.clone(), new_ca.clone()]).unwrap();
        assert!(both
            .verify(&old_cert.to_bytes(), &old_cert.public_key(), NOW)
            .is_ok());
        assert!(both
            .verify(&new_cert.to_bytes(), &new_cert.public_key(), NOW)
            .is_ok());

        // Before the transition only the old CA is trusted; after it, only the new one.
        let v = CertVerifier::new(store(&old_ca));
        assert!(v
            .verify_detailed(&new_cert.to_bytes(), &new_cert.public_key(), NOW)
            .is_err());
        v.set_store(both).unwrap();
        assert!(v
            .verify_detailed(&new_cert.to_bytes(), &new_cert.public_key(), NOW)
            .is_ok());
        v.set_store(store(&new_ca)).unwrap();
        assert!(matches!(
            v.verify_detailed(&old_cert.to_bytes(), &old_cert.public_key(), NOW),
            Err(CertError::UnknownCa(_))
        ));
        // A store for another network is refused and changes nothing.
        let (_, other_net) = ca_fixture(2);
        assert!(v.set_store(store(&other_net)).is_err());
        assert!(v
            .verify_detailed(&new_cert.to_bytes(), &new_cert.public_key(), NOW)
            .is_ok());
    }

    #[test]
    fn trust_store_rejects_empty_and_mixed() {
        assert_eq!(TrustStore::new(vec![]), Err(TrustStoreError::Empty));
        let (_, a) = ca_fixture(1);
        let (_, b) = ca_fixture(2);
        assert!(matches!(
            TrustStore::new(vec![a, b]),
            Err(TrustStoreError::MixedNetworks { .. })
        ));
    }

    #[test]
    fn addresses_and_routes_outside_the_ca_are_refused() {
        // A buggy or malicious issuer signs space the CA does not own.
        let (key, ca) = ca_fixture(1);
        let s = store(&ca);
        let mp = MemberParams {
            addresses: vec!["10.99.0.5".parse().unwrap()],
            ..member_params([9; 32])
        };
        let cert = MemberCertificate::issue_unchecked(&ca, &key, &mp);
        assert_eq!(
            s.verify(&cert.to_bytes(), &cert.public_key(), NOW),
            Err(CertError::AddressOutsidePrefixes(
                "10.99.0.5".parse().unwrap()
            ))
        );
        assert_eq!(
            CertVerifier::new(s.clone()).verify(&cert.to_bytes(), &cert.public_key(), NOW),
            Err(CredentialError::WrongNetwork)
        );
        for route in ["10.0.0.0/8", "10.77.5.0/24", "10.89.0.0/24"] {
            let mp = MemberParams {
                routes: vec![route.parse().unwrap()],
                ..member_params([9; 32])
            };
            let cert = MemberCertificate::issue_unchecked(&ca, &key, &mp);
            assert_eq!(
                s.verify(&cert.to_bytes(), &cert.public_key(), NOW),
                Err(CertError::RouteNotAllowed(route.parse().unwrap())),
                "{route}"
            );
        }
    }
}
