//! Fixtures shared by the directory unit tests.
#![allow(clippy::unwrap_used)]

use crate::identity::test_support::{ca_fixture, member_params};
use crate::identity::{MemberCertificate, TrustStore};

/// A trust store with the standard test CA and a member certificate it issued for `name` at
/// `addr` (inside 10.77.0.0/16) with Noise key `[key; 32]`.
pub(crate) fn member(name: &str, addr: &str, key: u8) -> (TrustStore, MemberCertificate) {
    let (ca_key, ca) = ca_fixture(1);
    let mut params = member_params([key; 32]);
    params.name = name.into();
    params.addresses = vec![addr.parse().unwrap()];
    params.routes = vec![];
    let cert = MemberCertificate::issue(&ca, &ca_key, &params).unwrap();
    (TrustStore::new(vec![ca]).unwrap(), cert)
}
