//! Certificate decoding: never panics, and whatever decodes is canonical (re-encodes to the input)
//! and is refused by a verifier that trusts a CA the fuzzer cannot sign for (`common::fuzz_ca`:
//! the seeds are real certificates of that CA, so verification gets as far as the signature,
//! validity, static-key and address checks; none binds the probe key).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use privnet_core::credential::CredentialVerifier as _;
use privnet_core::identity::{armor, CaCertificate, CertVerifier, MemberCertificate, TrustStore};

mod common;

fn verifier() -> &'static CertVerifier {
    static V: OnceLock<CertVerifier> = OnceLock::new();
    V.get_or_init(|| {
        let (_, ca) = common::fuzz_ca();
        CertVerifier::new(TrustStore::new(vec![ca]).expect("store"))
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(cert) = MemberCertificate::from_bytes(data) {
        assert_eq!(
            cert.to_bytes(),
            data,
            "member certificate decoding is not canonical"
        );
        let again = MemberCertificate::from_bytes(&cert.to_bytes()).ok();
        assert_eq!(again.as_ref(), Some(&cert));
    }
    if let Ok(ca) = CaCertificate::from_bytes(data) {
        assert_eq!(
            ca.to_bytes(),
            data,
            "CA certificate decoding is not canonical"
        );
    }
    // The verifier path: nothing the fuzzer makes binds the probe key under the trusted CA.
    let v = verifier().verify(data, &common::CERT_PROBE_KEY, common::CERT_PROBE_TIME);
    assert!(v.is_err(), "verified: {v:?}");
    // Armour parsing on arbitrary text.
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = armor::decode(armor::CERTIFICATE, text);
        let _ = MemberCertificate::from_pem(text);
        let _ = CaCertificate::from_pem(text);
    }
});
