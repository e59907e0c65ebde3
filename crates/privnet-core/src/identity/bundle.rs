//! Signed bundles: how policies and revocation lists travel through an untrusted directory.
//!
//! A directory (etcd) may carry a network's policy and revocation list to every member, but it is
//! not trusted: whoever controls it must be unable to let anyone in or to change a policy. So every
//! such value travels as a **bundle** signed by the network CA key — or by a **signer key** that the
//! CA certified for that purpose with a [`SignerCertificate`] — with a version number that must
//! grow: a member accepts a bundle only if its signature chain ends at a CA it trusts, the signer
//! holds the role for the bundle's kind, everything is valid now, and the version is greater than
//! the one it holds. A directory can therefore only withhold or delay bundles, or serve old ones
//! that are refused.
//!
//! Encoding: the certificate envelope (`codec.rs`) with kind 3 (signer certificate, at most
//! [`MAX_CERT_LEN`](super::MAX_CERT_LEN) bytes) or 4 (bundle, at most [`MAX_BUNDLE_LEN`]).
//! A bundle signed by a signer key carries that key's certificate.

use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::ca::{CaCertificate, CaKey};
use super::codec::{self, DecodeError, Envelope, Fingerprint, KIND_BUNDLE, KIND_SIGNER};
use super::verifier::TrustStore;
use super::{armor, is_valid_name, NetworkId};

/// Largest encoded bundle.
pub const MAX_BUNDLE_LEN: usize = 16 << 20;

/// What a bundle carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BundleKind {
    /// An access policy (the policy file's text).
    Policy,
    /// A revocation list (its text form).
    Revocations,
}

impl BundleKind {
    fn role(self) -> u8 {
        match self {
            Self::Policy => ROLE_POLICY,
            Self::Revocations => ROLE_REVOCATIONS,
        }
    }
}

const ROLE_POLICY: u8 = 1;
const ROLE_REVOCATIONS: u8 = 2;

/// The Ed25519 key of a signer (zeroised on drop; `Debug` hides it).
#[derive(Clone)]
pub struct SignerKey {
    key: SigningKey,
}

impl SignerKey {
    /// The key derived from 32 caller-provided random bytes.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self {
            key: SigningKey::from_bytes(&seed),
        }
    }

    /// The public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// The armoured private key, for a 0600 file.
    pub fn to_pem(&self) -> Zeroizing<String> {
        let seed = Zeroizing::new(self.key.to_bytes());
        Zeroizing::new(armor::encode(armor::SIGNER_PRIVATE_KEY, seed.as_slice()))
    }

    /// Parse an armoured private key.
    ///
    /// # Errors
    /// [`DecodeError::Armor`] for bad armour, [`DecodeError::InvalidField`] if not 32 bytes.
    pub fn from_pem(text: &str) -> Result<Self, DecodeError> {
        let bytes = Zeroizing::new(armor::decode(armor::SIGNER_PRIVATE_KEY, text)?);
        let seed: Zeroizing<[u8; 32]> = Zeroizing::new(bytes.as_slice().try_into().map_err(
            |_| DecodeError::InvalidField {
                field: "signer_key",
                reason: "must be 32 bytes",
            },
        )?);
        Ok(Self::from_seed(*seed))
    }
}

impl std::fmt::Debug for SignerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignerKey")
            .field("public_key", &super::hex_encode(&self.public_key()))
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct SignerBody {
    network_id: [u8; 16],
    ca: [u8; 32],
    name: String,
    public_key: [u8; 32],
    roles: u8,
    not_before: u64,
    not_after: u64,
}

/// A key the network CA lets sign bundles of the kinds in `roles` (so that the CA key itself can
/// stay offline).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignerCertificate {
    env: Envelope<SignerBody>,
}

impl SignerCertificate {
    /// Certify `key` as signer `name` for `kinds`, valid in `[not_before, not_after)`.
    ///
    /// # Errors
    /// [`DecodeError::InvalidField`] for a bad name, no kinds, an empty or inverted validity
    /// window, or a window beyond the CA's.
    pub fn issue(
        ca: &CaCertificate,
        ca_key: &CaKey,
        name: &str,
        key: &SignerKey,
        kinds: &[BundleKind],
        (not_before, not_after): (u64, u64),
    ) -> Result<Self, DecodeError> {
        let invalid = |field, reason| DecodeError::InvalidField { field, reason };
        if !is_valid_name(name) {
            return Err(invalid("name", "not a valid name"));
        }
        let roles = kinds.iter().fold(0, |r, k| r | k.role());
        if roles == 0 {
            return Err(invalid("roles", "a signer needs at least one bundle kind"));
        }
        if not_before >= not_after || not_after > ca.not_after() {
            return Err(invalid(
                "not_after",
                "must be later than not_before and not later than the CA's",
            ));
        }
        if !ca.matches_key(ca_key) {
            return Err(invalid("ca_key", "not the key of this CA certificate"));
        }
        let body = SignerBody {
            network_id: ca.network_id().0,
            ca: ca.fingerprint().0,
            name: name.to_owned(),
            public_key: key.public_key(),
            roles,
            not_before,
            not_after,
        };
        let env = codec::seal(KIND_SIGNER, body, ca_key.signing_key())
            .ok_or(invalid("signer", "does not fit in a certificate"))?;
        Ok(Self { env })
    }

    /// Decode (not verify) a signer certificate.
    ///
    /// # Errors
    /// Any [`DecodeError`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let env: Envelope<SignerBody> = codec::open(KIND_SIGNER, bytes)?;
        if !is_valid_name(&env.body.name) {
            return Err(DecodeError::InvalidField {
                field: "name",
                reason: "not a valid name",
            });
        }
        Ok(Self { env })
    }

    /// The binary encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.env.to_bytes()
    }

    /// The armoured form.
    pub fn to_pem(&self) -> String {
        armor::encode(armor::SIGNER_CERTIFICATE, &self.to_bytes())
    }

    /// Parse the armoured form.
    ///
    /// # Errors
    /// Any [`DecodeError`].
    pub fn from_pem(text: &str) -> Result<Self, DecodeError> {
        Self::from_bytes(&armor::decode(armor::SIGNER_CERTIFICATE, text)?)
    }

    /// The signer's name.
    pub fn name(&self) -> &str {
        &self.env.body.name
    }

    /// The fingerprint (for revocation lists).
    pub fn fingerprint(&self) -> Fingerprint {
        self.env.fingerprint()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct BundleBody {
    network_id: [u8; 16],
    kind: BundleKind,
    version: u64,
    issued_at: u64,
    /// The signer's certificate, or empty when a CA key signed.
    signer: Vec<u8>,
    /// The CA whose key signed, when `signer` is empty.
    ca: [u8; 32],
    payload: Vec<u8>,
}

/// A signed bundle, decoded but not verified (see [`TrustStore::verify_bundle`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bundle {
    env: Envelope<BundleBody>,
}

/// A bundle that verified: its contents can be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedBundle {
    /// What it carries.
    pub kind: BundleKind,
    /// Its version (greater than the last one accepted).
    pub version: u64,
    /// When it was signed (Unix seconds).
    pub issued_at: u64,
    /// Who signed it: `ca:NAME` or `signer:NAME`.
    pub signed_by: String,
    /// The contents (a policy file's text, a revocation list's text).
    pub payload: Vec<u8>,
    /// BLAKE2s fingerprint of the signed bytes (to log and to compare).
    pub fingerprint: Fingerprint,
}

/// Why a bundle was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// The bytes do not decode.
    #[error("bundle does not decode: {0}")]
    Decode(#[from] DecodeError),
    /// A bundle of another network.
    #[error("bundle of another network")]
    WrongNetwork,
    /// A bundle of another kind than expected.
    #[error("bundle carries {found:?}, expected {expected:?}")]
    WrongKind {
        /// Kind expected.
        expected: BundleKind,
        /// Kind found.
        found: BundleKind,
    },
    /// The signature chain does not end at a trusted, valid, unrevoked CA.
    #[error("bundle signature does not verify against a trusted CA ({0})")]
    BadSignature(&'static str),
    /// The signer may not sign this kind.
    #[error("signer {0:?} may not sign this kind of bundle")]
    NotAuthorised(String),
    /// The signer's certificate is outside its validity window, or revoked.
    #[error("signer {0:?} is not valid now (expired, not yet valid, or revoked)")]
    SignerInvalid(String),
    /// Not newer than the bundle held (a replay, or an old bundle).
    #[error("bundle version {version} is not newer than the version {held} held")]
    Stale {
        /// The bundle's version.
        version: u64,
        /// The version held.
        held: u64,
    },
}

impl Bundle {
    /// Sign `payload` as version `version` of `kind`, with the CA key.
    ///
    /// # Errors
    /// [`DecodeError::TooLarge`] for a payload over [`MAX_BUNDLE_LEN`].
    pub fn sign_with_ca(
        ca: &CaCertificate,
        ca_key: &CaKey,
        kind: BundleKind,
        version: u64,
        issued_at: u64,
        payload: Vec<u8>,
    ) -> Result<Self, DecodeError> {
        let body = BundleBody {
            network_id: ca.network_id().0,
            kind,
            version,
            issued_at,
            signer: Vec::new(),
            ca: ca.fingerprint().0,
            payload,
        };
        Self::seal(body, ca_key.signing_key())
    }

    /// Sign `payload` with a signer key and its certificate.
    ///
    /// # Errors
    /// [`DecodeError::TooLarge`] for a payload over [`MAX_BUNDLE_LEN`].
    pub fn sign_with_signer(
        signer: &SignerCertificate,
        key: &SignerKey,
        kind: BundleKind,
        version: u64,
        issued_at: u64,
        payload: Vec<u8>,
    ) -> Result<Self, DecodeError> {
        let body = BundleBody {
            network_id: signer.env.body.network_id,
            kind,
            version,
            issued_at,
            signer: signer.to_bytes(),
            ca: signer.env.body.ca,
            payload,
        };
        Self::seal(body, &key.key)
    }

    fn seal(body: BundleBody, key: &SigningKey) -> Result<Self, DecodeError> {
        let len = body.payload.len();
        codec::seal_max(KIND_BUNDLE, body, key, MAX_BUNDLE_LEN)
            .map(|env| Self { env })
            .ok_or(DecodeError::TooLarge {
                len,
                max: MAX_BUNDLE_LEN,
            })
    }

    /// Decode (not verify) a bundle.
    ///
    /// # Errors
    /// Any [`DecodeError`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        Ok(Self {
            env: codec::open_max(KIND_BUNDLE, bytes, MAX_BUNDLE_LEN)?,
        })
    }

    /// The binary encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.env.to_bytes()
    }

    /// The claimed version (unverified).
    pub fn version(&self) -> u64 {
        self.env.body.version
    }
}

impl TrustStore {
    /// Verify a bundle of `kind` at Unix time `now`, given the version of the bundle of that kind
    /// already held (`held`: 0 if none): the network, the kind, the signature chain (a trusted CA
    /// valid now and not revoked, or a signer certificate it issued that is valid now, not revoked
    /// and holds the role), and that the version is greater than `held`.
    ///
    /// # Errors
    /// The first [`BundleError`] found.
    pub fn verify_bundle(
        &self,
        bytes: &[u8],
        kind: BundleKind,
        held: u64,
        now: u64,
    ) -> Result<VerifiedBundle, BundleError> {
        let bundle = Bundle::from_bytes(bytes)?;
        let b = &bundle.env.body;
        if NetworkId(b.network_id) != self.network_id() {
            return Err(BundleError::WrongNetwork);
        }
        if b.kind != kind {
            return Err(BundleError::WrongKind {
                expected: kind,
                found: b.kind,
            });
        }
        let ca = self
            .cas()
            .iter()
            .find(|c| c.fingerprint().0 == b.ca)
            .ok_or(BundleError::BadSignature("unknown CA"))?;
        if self.revocations().contains(&ca.fingerprint()) || !ca.is_valid_at(now) {
            return Err(BundleError::BadSignature("CA revoked or not valid now"));
        }
        let signed_by = if b.signer.is_empty() {
            if !bundle.env.verify(&ca.public_key()) {
                return Err(BundleError::BadSignature("not signed by the CA key"));
            }
            format!("ca:{}", ca.name())
        } else {
            let signer = SignerCertificate::from_bytes(&b.signer)?;
            let s = &signer.env.body;
            if s.ca != b.ca || s.network_id != b.network_id || !signer.env.verify(&ca.public_key())
            {
                return Err(BundleError::BadSignature("signer not certified by the CA"));
            }
            if s.roles & kind.role() == 0 {
                return Err(BundleError::NotAuthorised(s.name.clone()));
            }
            if now < s.not_before
                || now >= s.not_after
                || self.revocations().contains(&signer.fingerprint())
            {
                return Err(BundleError::SignerInvalid(s.name.clone()));
            }
            if !bundle.env.verify(&s.public_key) {
                return Err(BundleError::BadSignature("not signed by the signer key"));
            }
            format!("signer:{}", s.name)
        };
        if b.version <= held {
            return Err(BundleError::Stale {
                version: b.version,
                held,
            });
        }
        Ok(VerifiedBundle {
            kind: b.kind,
            version: b.version,
            issued_at: b.issued_at,
            signed_by,
            payload: b.payload.clone(),
            fingerprint: bundle.env.fingerprint(),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use crate::identity::RevocationList;

    fn setup() -> (CaCertificate, CaKey, TrustStore) {
        let (key, ca) = ca_fixture(1);
        let store = TrustStore::new(vec![ca.clone()]).unwrap();
        (ca, key, store)
    }

    #[test]
    fn a_ca_signed_bundle_verifies_once_per_version() {
        let (ca, key, store) = setup();
        let b = Bundle::sign_with_ca(&ca, &key, BundleKind::Policy, 7, NOW, b"policy".to_vec())
            .unwrap();
        let bytes = b.to_bytes();
        let v = store
            .verify_bundle(&bytes, BundleKind::Policy, 6, NOW)
            .unwrap();
        assert_eq!((v.version, v.payload.as_slice()), (7, &b"policy"[..]));
        assert!(v.signed_by.starts_with("ca:"));
        // The same bundle again (a replay), or an older one: refused.
        assert_eq!(
            store.verify_bundle(&bytes, BundleKind::Policy, 7, NOW),
            Err(BundleError::Stale {
                version: 7,
                held: 7
            })
        );
        // The wrong kind is refused before anything else is believed.
        assert!(matches!(
            store.verify_bundle(&bytes, BundleKind::Revocations, 0, NOW),
            Err(BundleError::WrongKind { .. })
        ));
    }

    #[test]
    fn every_tampered_byte_is_refused() {
        let (ca, key, store) = setup();
        let bytes = Bundle::sign_with_ca(&ca, &key, BundleKind::Policy, 1, NOW, vec![7; 40])
            .unwrap()
            .to_bytes();
        for i in 0..bytes.len() {
            let mut t = bytes.clone();
            t[i] ^= 0x01;
            assert!(
                store.verify_bundle(&t, BundleKind::Policy, 0, NOW).is_err(),
                "byte {i}"
            );
        }
        for len in 0..bytes.len() {
            assert!(store
                .verify_bundle(&bytes[..len], BundleKind::Policy, 0, NOW)
                .is_err());
        }
    }

    #[test]
    fn a_foreign_ca_or_a_directory_key_cannot_sign() {
        let (_, _, store) = setup();
        let (other_key, other_ca) = ca_fixture(2);
        let b = Bundle::sign_with_ca(&other_ca, &other_key, BundleKind::Policy, 9, NOW, vec![])
            .unwrap();
        assert!(store
            .verify_bundle(&b.to_bytes(), BundleKind::Policy, 0, NOW)
            .is_err());
        // A key of the same network id but not a trusted CA (the directory's own, say).
        let (ca, _, _) = setup();
        let rogue = CaKey::from_seed([0x66; 32]);
        let forged = Bundle::sign_with_ca(&ca, &rogue, BundleKind::Policy, 9, NOW, vec![]).unwrap();
        assert_eq!(
            store.verify_bundle(&forged.to_bytes(), BundleKind::Policy, 0, NOW),
            Err(BundleError::BadSignature("not signed by the CA key"))
        );
    }

    #[test]
    fn signers_need_the_role_a_valid_window_and_no_revocation() {
        let (ca, key, store) = setup();
        let sk = SignerKey::from_seed([9; 32]);
        let window = (NOW - 10, NOW + 1000);
        let cert =
            SignerCertificate::issue(&ca, &key, "policy-bot", &sk, &[BundleKind::Policy], window)
                .unwrap();
        let cert = SignerCertificate::from_pem(&cert.to_pem()).unwrap();
        let policy = Bundle::sign_with_signer(&cert, &sk, BundleKind::Policy, 3, NOW, vec![1])
            .unwrap()
            .to_bytes();
        let v = store
            .verify_bundle(&policy, BundleKind::Policy, 2, NOW)
            .unwrap();
        assert_eq!(v.signed_by, "signer:policy-bot");
        // No role for revocations.
        let rev = Bundle::sign_with_signer(&cert, &sk, BundleKind::Revocations, 3, NOW, vec![])
            .unwrap()
            .to_bytes();
        assert_eq!(
            store.verify_bundle(&rev, BundleKind::Revocations, 0, NOW),
            Err(BundleError::NotAuthorised("policy-bot".into()))
        );
        // Expired.
        assert!(matches!(
            store.verify_bundle(&policy, BundleKind::Policy, 0, NOW + 1000),
            Err(BundleError::SignerInvalid(_))
        ));
        // Revoked.
        let mut list = RevocationList::new();
        list.insert(cert.fingerprint());
        let revoked = store.clone().with_revocations(list);
        assert!(matches!(
            revoked.verify_bundle(&policy, BundleKind::Policy, 0, NOW),
            Err(BundleError::SignerInvalid(_))
        ));
        // A signer key that is not the certified one.
        let other = SignerKey::from_seed([10; 32]);
        let forged = Bundle::sign_with_signer(&cert, &other, BundleKind::Policy, 4, NOW, vec![])
            .unwrap()
            .to_bytes();
        assert_eq!(
            store.verify_bundle(&forged, BundleKind::Policy, 0, NOW),
            Err(BundleError::BadSignature("not signed by the signer key"))
        );
        // Issuing checks its inputs.
        assert!(SignerCertificate::issue(&ca, &key, "x", &sk, &[], window).is_err());
        assert!(SignerCertificate::issue(
            &ca,
            &key,
            "bad name",
            &sk,
            &[BundleKind::Policy],
            window
        )
        .is_err());
    }

    #[test]
    fn the_signer_key_armour_round_trips() {
        let k = SignerKey::from_seed([4; 32]);
        let back = SignerKey::from_pem(&k.to_pem()).unwrap();
        assert_eq!(back.public_key(), k.public_key());
        assert!(!format!("{k:?}").contains("04040404"));
    }
}
