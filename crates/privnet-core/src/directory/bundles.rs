//! The signed bundles a member takes from the directory (see [`crate::identity::Bundle`]): one
//! slot per kind holds the version in force; a bundle is taken only if it verifies against the
//! member's trust store and is newer. Every refusal is counted by reason and the bundle held
//! stays.

use std::collections::BTreeMap;

use crate::identity::{BundleError, BundleKind, TrustStore, VerifiedBundle};

/// The counter label of a refusal.
pub fn refusal_label(e: &BundleError) -> &'static str {
    match e {
        BundleError::Decode(_) => "malformed",
        BundleError::WrongNetwork => "wrong_network",
        BundleError::WrongKind { .. } => "wrong_kind",
        BundleError::BadSignature(_) => "bad_signature",
        BundleError::NotAuthorised(_) => "not_authorised",
        BundleError::SignerInvalid(_) => "signer_invalid",
        BundleError::Stale { .. } => "stale_version",
    }
}

/// The bundle of one kind a member holds.
#[derive(Clone, Debug)]
pub struct BundleSlot {
    kind: BundleKind,
    held: u64,
    accepted: u64,
    refused: BTreeMap<&'static str, u64>,
}

impl BundleSlot {
    /// A slot for `kind` holding version `held` (0: none; a restart starts from the version its
    /// cache held, so that the directory cannot replay an older one then).
    pub fn new(kind: BundleKind, held: u64) -> Self {
        Self {
            kind,
            held,
            accepted: 0,
            refused: BTreeMap::new(),
        }
    }

    /// The version held.
    pub fn held(&self) -> u64 {
        self.held
    }

    /// Bundles accepted.
    pub fn accepted(&self) -> u64 {
        self.accepted
    }

    /// Refusals by reason.
    pub fn refused(&self) -> &BTreeMap<&'static str, u64> {
        &self.refused
    }

    /// Offer `bytes` at Unix time `now`: the verified bundle if it is taken (then its version is
    /// held), or why not.
    ///
    /// # Errors
    /// The [`BundleError`] of a refusal (counted; the held version stays).
    pub fn offer(
        &mut self,
        bytes: &[u8],
        trust: &TrustStore,
        now: u64,
    ) -> Result<VerifiedBundle, BundleError> {
        match trust.verify_bundle(bytes, self.kind, self.held, now) {
            Ok(v) => {
                self.held = v.version;
                self.accepted += 1;
                Ok(v)
            }
            Err(e) => {
                *self.refused.entry(refusal_label(&e)).or_default() += 1;
                Err(e)
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::identity::test_support::{ca_fixture, NOW};
    use crate::identity::Bundle;

    #[test]
    fn only_newer_bundles_signed_by_the_ca_are_taken() {
        let (key, ca) = ca_fixture(1);
        let trust = TrustStore::new(vec![ca.clone()]).unwrap();
        let mut slot = BundleSlot::new(BundleKind::Policy, 0);
        let v2 = Bundle::sign_with_ca(&ca, &key, BundleKind::Policy, 2, NOW, b"p2".to_vec())
            .unwrap()
            .to_bytes();
        assert_eq!(slot.offer(&v2, &trust, NOW).unwrap().payload, b"p2");
        assert_eq!(slot.held(), 2);
        let v1 = Bundle::sign_with_ca(&ca, &key, BundleKind::Policy, 1, NOW, b"p1".to_vec())
            .unwrap()
            .to_bytes();
        assert!(slot.offer(&v1, &trust, NOW).is_err());
        assert!(slot.offer(&v2, &trust, NOW).is_err());
        let (other_key, other_ca) = ca_fixture(2);
        let foreign =
            Bundle::sign_with_ca(&other_ca, &other_key, BundleKind::Policy, 9, NOW, vec![])
                .unwrap()
                .to_bytes();
        assert!(slot.offer(&foreign, &trust, NOW).is_err());
        assert!(slot.offer(&[1, 2, 3], &trust, NOW).is_err());
        assert_eq!(slot.held(), 2);
        assert_eq!(slot.refused().get("stale_version"), Some(&2));
        assert_eq!(slot.refused().get("wrong_network"), Some(&1));
        assert_eq!(slot.refused().get("malformed"), Some(&1));
        assert_eq!(slot.accepted(), 1);
    }
}
