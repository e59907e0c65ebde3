//! Cryptographic building blocks: the snow resolver, key types, mac1/mac2 and cookies.
//!
//! The snow resolver is ours, not snow's default, for four reasons:
//! - **X25519 with a contributory check**: snow does not reject an all-zero Diffie-Hellman result;
//!   our [`Dh`](snow::types::Dh) returns an error for it, so low-order public keys (static or
//!   ephemeral) abort the handshake (`DropReason::BadKey`).
//! - **AES-256-GCM or ChaCha20-Poly1305 from `ring`** ([`CipherSuite`], one per network), the
//!   fastest implementations available here, with the expanded key wiped when the session is
//!   dropped (see `SessionKey`).
//! - **Injected randomness**: ephemeral keys come from a ChaCha20 DRBG seeded by the node, never from
//!   the OS, so runs are reproducible from the node's seed.
//! - BLAKE2s from the `blake2` crate.

use ring::aead;
use zeroize::Zeroizing;

/// The AEAD of a network: it seals the handshake's encrypted fields and every data message. All
/// members of a network must use the same one (a different one is a different Noise protocol
/// name, so the handshake cannot complete; initiations and responses name theirs in header byte 2
/// so that the mismatch is reported as such).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum CipherSuite {
    /// AES-256-GCM (the default): 2.4–2.8× ChaCha20-Poly1305's speed at 1,420 B on CPUs with AES and
    /// carry-less multiply instructions (x86-64 AES-NI + PCLMULQDQ, ARMv8 crypto extensions);
    /// constant-time but slow on CPUs without them.
    #[default]
    Aes256Gcm,
    /// ChaCha20-Poly1305 (WireGuard's AEAD): fast everywhere in software.
    ChaCha20Poly1305,
}

impl CipherSuite {
    /// Every suite, the default first.
    pub const ALL: [CipherSuite; 2] = [CipherSuite::Aes256Gcm, CipherSuite::ChaCha20Poly1305];

    /// The configuration name (`aes-256-gcm`, `chacha20-poly1305`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Aes256Gcm => "aes-256-gcm",
            Self::ChaCha20Poly1305 => "chacha20-poly1305",
        }
    }

    /// Parse a configuration name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }

    /// The id carried in byte 2 of initiations and responses.
    pub fn wire_id(self) -> u8 {
        match self {
            Self::ChaCha20Poly1305 => 0,
            Self::Aes256Gcm => 1,
        }
    }

    /// The suite with a wire id.
    pub fn from_wire_id(id: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.wire_id() == id)
    }

    /// The Noise protocol name of the handshake with this suite.
    pub fn noise_params(self) -> &'static str {
        match self {
            Self::Aes256Gcm => "Noise_IKpsk2_25519_AESGCM_BLAKE2s",
            Self::ChaCha20Poly1305 => "Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s",
        }
    }

    /// The cipher's name inside the Noise protocol name.
    fn noise_name(self) -> &'static str {
        match self {
            Self::Aes256Gcm => "AESGCM",
            Self::ChaCha20Poly1305 => "ChaChaPoly",
        }
    }

    fn ring_algorithm(self) -> &'static aead::Algorithm {
        match self {
            Self::Aes256Gcm => &aead::AES_256_GCM,
            Self::ChaCha20Poly1305 => &aead::CHACHA20_POLY1305,
        }
    }
}

impl std::fmt::Display for CipherSuite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The Noise protocol name with the default suite.
pub const NOISE_PARAMS: &str = "Noise_IKpsk2_25519_AESGCM_BLAKE2s";
/// Prologue prefix; the 16-byte network id follows it.
pub const PROLOGUE_PREFIX: &[u8] = b"privnet v1";
/// Label for the mac1 key: `BLAKE2s(LABEL_MAC1 ‖ psk ‖ responder static)`.
pub const LABEL_MAC1: &[u8] = b"mac1----";
/// Label for the cookie-reply key: `BLAKE2s(LABEL_COOKIE ‖ psk ‖ responder static)`.
pub const LABEL_COOKIE: &[u8] = b"cookie--";

/// A 32-byte X25519 public key.
pub type PublicKey = [u8; 32];

/// An X25519 private key, zeroized on drop.
#[derive(Clone)]
pub struct StaticSecret(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for StaticSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StaticSecret(..)")
    }
}

impl StaticSecret {
    /// From raw bytes (clamping happens inside X25519).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// Derive a key from 32 bytes of caller-provided randomness.
    pub fn from_random(random: [u8; 32]) -> Self {
        Self::from_bytes(random)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        let s = x25519_dalek::StaticSecret::from(*self.0);
        x25519_dalek::PublicKey::from(&s).to_bytes()
    }
}

/// X25519 Diffie-Hellman; `None` if the result is all-zero (low-order `public`).
pub fn x25519(secret: &StaticSecret, public: &PublicKey) -> Option<[u8; 32]> {
    let s = x25519_dalek::StaticSecret::from(*secret.0);
    let shared = s.diffie_hellman(&x25519_dalek::PublicKey::from(*public));
    shared.was_contributory().then(|| *shared.as_bytes())
}

/// True if `public` is a low-order point (any Diffie-Hellman with it yields all zeros).
pub fn is_low_order(public: &PublicKey) -> bool {
    let probe = x25519_dalek::StaticSecret::from([0x5a; 32]);
    !probe
        .diffie_hellman(&x25519_dalek::PublicKey::from(*public))
        .was_contributory()
}

// Without `test-util` these primitives are crate-internal; their `pub` is for the re-export below.
#[cfg_attr(not(feature = "test-util"), allow(unreachable_pub, dead_code))]
mod mac;
mod resolver;

// mac1/mac2 and cookie primitives: internal, public only to the fuzz targets and protocol tests
// (feature `test-util`).
#[cfg(feature = "test-util")]
pub use mac::{cookie_key, ct_eq, hash, mac16, mac1_key, open_cookie, prologue, seal_cookie};
#[cfg(not(feature = "test-util"))]
pub(crate) use mac::{cookie_key, ct_eq, mac16, mac1_key, open_cookie, prologue, seal_cookie};
pub(crate) use resolver::{Resolver, StaticDhCache};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn low_order_points_are_detected() {
        assert!(is_low_order(&[0u8; 32]));
        let mut one = [0u8; 32];
        one[0] = 1;
        assert!(is_low_order(&one));
        let k = StaticSecret::from_bytes([7u8; 32]);
        assert!(!is_low_order(&k.public_key()));
    }

    #[test]
    fn suite_names_and_wire_ids_round_trip() {
        for s in CipherSuite::ALL {
            assert_eq!(CipherSuite::from_name(s.name()), Some(s));
            assert_eq!(CipherSuite::from_wire_id(s.wire_id()), Some(s));
            let p: snow::params::NoiseParams = s.noise_params().parse().unwrap();
            assert_eq!(p.name, s.noise_params());
        }
        assert_eq!(CipherSuite::from_name("aes"), None);
        assert_eq!(CipherSuite::from_wire_id(2), None);
        assert_eq!(CipherSuite::default().noise_params(), NOISE_PARAMS);
    }
}
