//! The member's Noise static key pair (X25519).

use std::fmt;

use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use super::armor;
use super::codec::DecodeError;

/// An X25519 static key pair for the Noise handshake. The secret is stored clamped and zeroised on
/// drop; `Debug` shows only the public key.
#[derive(Clone)]
pub struct NoiseKeyPair {
    secret: Zeroizing<[u8; 32]>,
    public: [u8; 32],
}

impl NoiseKeyPair {
    /// The key pair for 32 caller-provided random bytes, clamped as X25519 requires (RFC 7748 §5).
    pub fn from_random(mut bytes: [u8; 32]) -> Self {
        bytes[0] &= 248;
        bytes[31] &= 127;
        bytes[31] |= 64;
        let pair = Self::from_secret(bytes);
        zeroize::Zeroize::zeroize(&mut bytes);
        pair
    }

    /// The key pair for an existing secret (used as stored; X25519 clamps on use anyway).
    pub fn from_secret(secret: [u8; 32]) -> Self {
        let public = PublicKey::from(&StaticSecret::from(secret)).to_bytes();
        Self {
            secret: Zeroizing::new(secret),
            public,
        }
    }

    /// The secret key bytes.
    pub fn secret(&self) -> &[u8; 32] {
        &self.secret
    }

    /// The public key.
    pub fn public(&self) -> [u8; 32] {
        self.public
    }

    /// Armoured secret key (label [`armor::PRIVATE_KEY`]) for a 0600 file.
    pub fn to_pem(&self) -> Zeroizing<String> {
        Zeroizing::new(armor::encode(armor::PRIVATE_KEY, self.secret.as_slice()))
    }

    /// Parse an armoured secret key.
    ///
    /// # Errors
    /// [`DecodeError::Armor`] for bad armour, [`DecodeError::InvalidField`] if not 32 bytes.
    pub fn from_pem(text: &str) -> Result<Self, DecodeError> {
        let bytes = Zeroizing::new(armor::decode(armor::PRIVATE_KEY, text)?);
        let secret: [u8; 32] =
            bytes
                .as_slice()
                .try_into()
                .map_err(|_| DecodeError::InvalidField {
                    field: "private_key",
                    reason: "must be 32 bytes",
                })?;
        Ok(Self::from_secret(secret))
    }
}

impl fmt::Debug for NoiseKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NoiseKeyPair")
            .field("public", &super::hex_encode(&self.public))
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn keygen_clamps_and_round_trips() {
        let k = NoiseKeyPair::from_random([0xff; 32]);
        assert_eq!(k.secret()[0] & 7, 0);
        assert_eq!(k.secret()[31] & 0xc0, 0x40);
        let again = NoiseKeyPair::from_pem(&k.to_pem()).unwrap();
        assert_eq!(again.public(), k.public());
        assert_ne!(k.public(), [0; 32]);
        assert!(!format!("{k:?}").contains(&super::super::hex_encode(k.secret())));
    }

    #[test]
    fn public_key_matches_x25519_dh() {
        let a = NoiseKeyPair::from_random([1; 32]);
        let b = NoiseKeyPair::from_random([2; 32]);
        let ab = StaticSecret::from(*a.secret()).diffie_hellman(&PublicKey::from(b.public()));
        let ba = StaticSecret::from(*b.secret()).diffie_hellman(&PublicKey::from(a.public()));
        assert_eq!(ab.as_bytes(), ba.as_bytes());
    }
}
