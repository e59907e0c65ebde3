//! Certificate decoding: never panics, and whatever decodes is canonical (re-encodes to the input)
//! and is refused by a trust store that does not hold its CA's key.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use privnet_core::credential::CredentialVerifier as _;
use privnet_core::identity::{
    armor, CaCertificate, CaKey, CaParams, CertVerifier, MemberCertificate, NetworkId, TrustStore,
};

fn verifier() -> &'static CertVerifier {
    static V: OnceLock<CertVerifier> = OnceLock::new();
    V.get_or_init(|| {
        let key = CaKey::from_seed([1; 32]);
        let ca = CaCertificate::self_signed(
            &key,
            &CaParams {
                name: "fuzz".into(),
                network_id: NetworkId([0; 16]),
                prefixes: vec!["10.0.0.0/8".parse().expect("prefix")],
                routes: vec![],
                not_before: 0,
                not_after: u64::MAX,
            },
        )
        .expect("CA");
        CertVerifier::new(TrustStore::new(vec![ca]).expect("store"))
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(cert) = MemberCertificate::from_bytes(data) {
        assert_eq!(cert.to_bytes(), data, "member certificate decoding is not canonical");
        let again = MemberCertificate::from_bytes(&cert.to_bytes()).ok();
        assert_eq!(again.as_ref(), Some(&cert));
    }
    if let Ok(ca) = CaCertificate::from_bytes(data) {
        assert_eq!(ca.to_bytes(), data, "CA certificate decoding is not canonical");
    }
    // The verifier path: a fixed CA whose key the fuzzer cannot know; nothing may verify.
    assert!(verifier().verify(data, &[9; 32], 1_000).is_err());
    // Armour parsing on arbitrary text.
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = armor::decode(armor::CERTIFICATE, text);
        let _ = MemberCertificate::from_pem(text);
        let _ = CaCertificate::from_pem(text);
    }
});
