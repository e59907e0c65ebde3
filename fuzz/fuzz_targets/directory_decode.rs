//! What a member takes from the directory (docs/DIRECTORY.md): member records and signed
//! bundles, as raw bytes from an untrusted etcd. Never panics; a record that decodes is canonical
//! (re-encodes to the input) and turns into at most one peer whose key is its certificate's; a
//! bundle is taken at most once (the same bytes again are stale), and one that is taken verifies
//! under the trusted CA (`common::fuzz_ca`; the seeds are genuine bundles and records of it).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use privnet_core::directory::{BundleSlot, KeyChange, MemberRecord, PeerChange, PeerSet};
use privnet_core::identity::{BundleKind, TrustStore};

mod common;

fn trust() -> &'static TrustStore {
    static T: OnceLock<TrustStore> = OnceLock::new();
    T.get_or_init(|| {
        let (_, ca) = common::fuzz_ca();
        TrustStore::new(vec![ca]).expect("store")
    })
}

fuzz_target!(|data: &[u8]| {
    let now = common::CERT_PROBE_TIME;
    if let Ok((record, cert)) = MemberRecord::from_bytes(data) {
        assert_eq!(record.to_bytes().ok().as_deref(), Some(data), "record decoding is not canonical");
        let key = format!("/privnet/fuzz/members/{}", cert.name());
        let mut set = PeerSet::new("/privnet/fuzz/members/", [0; 32], vec![]);
        let (changes, _) = set.apply(KeyChange::Set { key, value: data.to_vec() }, trust(), now);
        assert!(changes.len() <= 1);
        if let Some(PeerChange::Add(p)) = changes.first() {
            assert_eq!(p.public_key, cert.public_key());
            assert_eq!(p.allowed_ips, cert.overlay_prefixes());
        }
    }
    for kind in [BundleKind::Policy, BundleKind::Revocations] {
        let mut slot = BundleSlot::new(kind, 0);
        if let Ok(v) = slot.offer(data, trust(), now) {
            assert_eq!(v.kind, kind);
            assert!(v.version > 0 && slot.held() == v.version);
            assert!(slot.offer(data, trust(), now).is_err(), "a bundle was taken twice");
        }
    }
});
