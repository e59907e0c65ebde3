//! Network identity: the network CA, member certificates, revocation and the certificate verifier.
//!
//! # Trust model
//!
//! Each private network has its own **network CA**: an Ed25519 key pair plus a self-signed
//! [`CaCertificate`] that names the network, carries a random 16-byte **network id**, the overlay
//! prefixes (IPv4 and IPv6) member addresses must lie in, the subnets members may be granted as
//! gateway routes, and a validity window. The CA signs one [`MemberCertificate`] per member; it binds
//! the member name, overlay addresses, granted routes, groups, the member's Noise static public key
//! (X25519), a validity window, the network id and the fingerprint of the issuing CA certificate.
//!
//! A node trusts a **set** of CA certificates at once ([`TrustStore`]), so a CA can be rolled over
//! without an outage: issue the new CA with the same network id, distribute it next to the old one,
//! re-issue member certificates, then drop the old CA.
//!
//! During the Noise handshake each side sends its member certificate's binary encoding as the
//! credential; [`CertVerifier`] (the [`crate::credential::CredentialVerifier`] of this module) checks,
//! in this order: the encoding, the network id, that the issuing CA is trusted and not revoked, the
//! signature, that the certificate is not revoked, the validity of the CA and of the certificate at
//! `now`, that the Noise static key authenticated by the handshake is the one in the certificate,
//! and that the addresses and routes are allowed by the CA.
//!
//! # Encoding
//!
//! Certificates have a canonical, versioned, length-checked binary encoding:
//!
//! ```text
//! byte 0        format version (FORMAT_VERSION = 1); unknown versions are refused
//! byte 1        kind: 1 = CA certificate, 2 = member certificate
//! bytes 2..n-64 postcard encoding of the body (the "to-be-signed" bytes are bytes 0..n-64)
//! bytes n-64..n Ed25519 signature over SIGNING_CONTEXT || bytes 0..n-64
//! ```
//!
//! The whole encoding is at most [`MAX_CERT_LEN`] bytes (a member certificate travels inside a
//! handshake payload). Decoding refuses oversize input, trailing bytes and non-canonical encodings
//! (the body is re-encoded and must reproduce the input bit for bit), validates every field, and never
//! panics. The **fingerprint** of a certificate is BLAKE2s-256 over a domain-separation string and the
//! to-be-signed bytes; it does not cover the signature, so a certificate cannot dodge the revocation
//! list by carrying a different signature encoding (the Nebula blocklist lesson).
//!
//! Files use a PEM-like text armour ([`armor`]):
//!
//! ```text
//! -----BEGIN PRIVNET CERTIFICATE-----
//! <base64, 64 characters a line>
//! -----END PRIVNET CERTIFICATE-----
//! ```
//!
//! # Routes
//!
//! A member certificate may grant subnet routes (the member acts as a gateway for them). A route is
//! valid only if it lies inside one of the **routes of the CA certificate** (`privnet ca init
//! --route`). CA routes may not overlap the CA's overlay prefixes, so a route can never be used to
//! claim another member's overlay address.
//!
//! # Purity
//!
//! Nothing here reads the clock, the OS random number generator or the file system: `now` is passed
//! in as Unix seconds and key generation takes caller-provided random bytes.
//!
//! # Validity windows
//!
//! A certificate is valid at `now` iff `not_before <= now < not_after` (all Unix seconds).

mod armor_impl;
mod bundle;
mod ca;
mod codec;
mod expiry;
mod issue;
mod keys;
mod member;
mod revocation;
mod verifier;

use std::fmt;

pub use bundle::{
    Bundle, BundleError, BundleKind, SignerCertificate, SignerKey, VerifiedBundle, MAX_BUNDLE_LEN,
};
pub use ca::{CaCertificate, CaKey, CaParams};
pub use codec::{DecodeError, Fingerprint};
pub use expiry::{expiry_report, ExpiryNotice, ExpiryState, ExpirySubject};
pub use issue::IssueError;
pub use keys::NoiseKeyPair;
pub use member::{MemberCertificate, MemberParams};
pub use revocation::{RevocationList, RevocationParseError};
pub use verifier::{CertError, CertVerifier, TrustStore, TrustStoreError};

/// PEM-like text armour used for certificate and key files.
pub mod armor {
    pub use super::armor_impl::{decode, encode, label, ArmorError, MAX_ARMOR_LEN};

    /// Armour label of a member certificate.
    pub const CERTIFICATE: &str = "PRIVNET CERTIFICATE";
    /// Armour label of a CA certificate.
    pub const CA_CERTIFICATE: &str = "PRIVNET CA CERTIFICATE";
    /// Armour label of a CA private (signing) key.
    pub const CA_PRIVATE_KEY: &str = "PRIVNET CA PRIVATE KEY";
    /// Armour label of a member's Noise static private key.
    pub const PRIVATE_KEY: &str = "PRIVNET PRIVATE KEY";
    /// Armour label of a signer certificate (a key the CA lets sign directory bundles).
    pub const SIGNER_CERTIFICATE: &str = "PRIVNET SIGNER CERTIFICATE";
    /// Armour label of a signer's private key.
    pub const SIGNER_PRIVATE_KEY: &str = "PRIVNET SIGNER PRIVATE KEY";
}

/// Version of the certificate binary format produced by this module.
pub const FORMAT_VERSION: u8 = 1;
/// Maximum length of an encoded certificate, in bytes.
pub const MAX_CERT_LEN: usize = 1024;
/// Maximum length of a member, network or group name, in bytes.
pub const MAX_NAME_LEN: usize = 64;
/// Maximum number of overlay addresses in a member certificate.
pub const MAX_ADDRESSES: usize = 8;
/// Maximum number of routes in a member or CA certificate.
pub const MAX_ROUTES: usize = 16;
/// Maximum number of groups in a member certificate.
pub const MAX_GROUPS: usize = 32;
/// Maximum number of overlay prefixes in a CA certificate.
pub const MAX_PREFIXES: usize = 8;

/// A 16-byte network id, chosen at random when the network CA is created.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NetworkId(pub [u8; 16]);

impl NetworkId {
    /// Lower-case hex form (32 characters).
    pub fn to_hex(&self) -> String {
        hex_encode(&self.0)
    }

    /// Parse the 32-character hex form.
    pub fn from_hex(s: &str) -> Option<Self> {
        let mut out = [0u8; 16];
        hex_decode_into(s, &mut out).then_some(Self(out))
    }
}

impl fmt::Display for NetworkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for NetworkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NetworkId({})", self.to_hex())
    }
}

/// Whether `name` is acceptable as a network, member or group name: 1 to [`MAX_NAME_LEN`] bytes of
/// ASCII letters, digits, `.`, `_` and `-`, starting with a letter or digit. Names end up in logs,
/// metrics labels and file names, so nothing else is allowed.
pub fn is_valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    match bytes.first() {
        Some(first) if first.is_ascii_alphanumeric() => {}
        _ => return false,
    }
    bytes.len() <= MAX_NAME_LEN
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

pub(crate) fn hex_encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

/// Decode exactly `out.len() * 2` hex digits (either case) into `out`.
pub(crate) fn hex_decode_into(s: &str, out: &mut [u8]) -> bool {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let bytes = s.as_bytes();
    if bytes.len() != out.len() * 2 {
        return false;
    }
    for (o, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        match (nibble(pair[0]), nibble(pair[1])) {
            (Some(h), Some(l)) => *o = (h << 4) | l,
            _ => return false,
        }
    }
    true
}

#[cfg(test)]
pub(crate) mod test_support;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn name_rules() {
        assert!(is_valid_name("a"));
        assert!(is_valid_name("web-1.prod_x"));
        assert!(!is_valid_name(""));
        assert!(!is_valid_name("-a"));
        assert!(!is_valid_name("a b"));
        assert!(!is_valid_name("a\n"));
        assert!(!is_valid_name("é"));
        assert!(is_valid_name(&"a".repeat(MAX_NAME_LEN)));
        assert!(!is_valid_name(&"a".repeat(MAX_NAME_LEN + 1)));
    }

    #[test]
    fn hex_round_trip() {
        let id = NetworkId([0xab; 16]);
        assert_eq!(NetworkId::from_hex(&id.to_hex()), Some(id));
        assert_eq!(NetworkId::from_hex(&id.to_hex().to_uppercase()), Some(id));
        assert_eq!(NetworkId::from_hex("ab"), None);
        assert_eq!(NetworkId::from_hex(&"zz".repeat(16)), None);
    }
}
