//! Fixtures shared by the identity unit tests.
#![allow(clippy::unwrap_used)]

use super::{CaCertificate, CaKey, CaParams, MemberCertificate, MemberParams, NetworkId};

/// A fixed "now" for tests (2026-01-01T00:00:00Z).
pub(crate) const NOW: u64 = 1_767_225_600;
pub(crate) const DAY: u64 = 86_400;

pub(crate) fn ca_params() -> CaParams {
    CaParams {
        name: "testnet".into(),
        network_id: NetworkId([0x11; 16]),
        prefixes: vec![
            "10.77.0.0/16".parse().unwrap(),
            "fd77::/48".parse().unwrap(),
        ],
        routes: vec!["10.88.0.0/16".parse().unwrap()],
        not_before: NOW - DAY,
        not_after: NOW + 365 * DAY,
    }
}

/// CA number `n`: n = 1 is the standard CA; other values give another key and another network id.
pub(crate) fn ca_fixture(n: u8) -> (CaKey, CaCertificate) {
    let key = CaKey::from_seed([n; 32]);
    let mut p = ca_params();
    if n != 1 {
        p.network_id = NetworkId([n; 16]);
        p.name = format!("net{n}");
    }
    let ca = CaCertificate::self_signed(&key, &p).unwrap();
    (key, ca)
}

pub(crate) fn member_params(public_key: [u8; 32]) -> MemberParams {
    MemberParams {
        name: "member-a".into(),
        addresses: vec!["10.77.0.2".parse().unwrap(), "fd77::2".parse().unwrap()],
        routes: vec!["10.88.0.0/24".parse().unwrap()],
        groups: vec!["web".into(), "db".into()],
        public_key,
        not_before: NOW - DAY,
        not_after: NOW + 30 * DAY,
    }
}

pub(crate) fn member_fixture(n: u8) -> (CaKey, CaCertificate, MemberCertificate) {
    let (key, ca) = ca_fixture(n);
    let cert = MemberCertificate::issue(&ca, &key, &member_params([9; 32])).unwrap();
    (key, ca, cert)
}

/// A named change to a parameter struct, for table-driven tests.
pub(crate) type Mutation<T> = Box<dyn Fn(&mut T)>;
