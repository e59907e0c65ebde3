//! Keyed BLAKE2s MACs (mac1, mac2, cookies), the prologue and the cookie AEAD
//! (XChaCha20-Poly1305): the cheap checks that run before any Diffie-Hellman work.

use blake2::digest::{FixedOutput, KeyInit, Update};
use blake2::{Blake2s256, Blake2sMac, Digest};
use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::XChaCha20Poly1305;

use super::{PublicKey, LABEL_COOKIE, LABEL_MAC1, PROLOGUE_PREFIX};

/// BLAKE2s-256 over the concatenation of `parts`.
pub fn hash(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Blake2s256::new();
    for p in parts {
        Digest::update(&mut h, p);
    }
    h.finalize().into()
}

/// Keyed BLAKE2s with a 16-byte output (WireGuard's `MAC`).
pub fn mac16(key: &[u8], data: &[u8]) -> [u8; 16] {
    match <Blake2sMac<blake2::digest::consts::U16> as KeyInit>::new_from_slice(key) {
        Ok(mut m) => {
            Update::update(&mut m, data);
            m.finalize_fixed().into()
        }
        // Keys are 16 or 32 bytes, always within BLAKE2s' 32-byte limit.
        Err(_) => [0; 16],
    }
}

/// Constant-time equality of two byte strings of equal length.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut acc = 0u8;
    for (x, y) in a.iter().zip(b) {
        acc |= x ^ y;
    }
    // Keep the compiler from short-circuiting on acc.
    std::hint::black_box(acc) == 0
}

/// The Noise prologue for a network.
pub fn prologue(network_id: &[u8; 16]) -> [u8; 26] {
    let mut p = [0u8; 26];
    p[..10].copy_from_slice(PROLOGUE_PREFIX);
    p[10..].copy_from_slice(network_id);
    p
}

/// mac1 key for messages sent to the holder of `static_public` in the network with `psk`.
pub fn mac1_key(psk: &[u8; 32], static_public: &PublicKey) -> [u8; 32] {
    hash(&[LABEL_MAC1, psk, static_public])
}

/// Cookie-reply encryption key for replies sent by the holder of `static_public`.
pub fn cookie_key(psk: &[u8; 32], static_public: &PublicKey) -> [u8; 32] {
    hash(&[LABEL_COOKIE, psk, static_public])
}

/// Encrypt a 16-byte cookie into `out` (32 bytes: ciphertext + tag) with XChaCha20-Poly1305.
pub fn seal_cookie(
    key: &[u8; 32],
    nonce: &[u8; 24],
    cookie: &[u8; 16],
    ad: &[u8],
) -> Option<[u8; 32]> {
    let aead = XChaCha20Poly1305::new(key.into());
    let mut buf = *cookie;
    let tag = aead
        .encrypt_in_place_detached(nonce.into(), ad, &mut buf)
        .ok()?;
    let mut out = [0u8; 32];
    out[..16].copy_from_slice(&buf);
    out[16..].copy_from_slice(&tag);
    Some(out)
}

/// Decrypt a cookie sealed by [`seal_cookie`].
pub fn open_cookie(key: &[u8; 32], nonce: &[u8], sealed: &[u8], ad: &[u8]) -> Option<[u8; 16]> {
    if nonce.len() != 24 || sealed.len() != 32 {
        return None;
    }
    let aead = XChaCha20Poly1305::new(key.into());
    let mut buf = [0u8; 16];
    buf.copy_from_slice(&sealed[..16]);
    let tag = chacha20poly1305::Tag::from_slice(&sealed[16..]);
    aead.decrypt_in_place_detached(nonce.into(), ad, &mut buf, tag)
        .ok()?;
    Some(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_roundtrip_and_tamper() {
        let key = [3u8; 32];
        let nonce = [9u8; 24];
        let sealed = seal_cookie(&key, &nonce, &[1; 16], b"ad").unwrap();
        assert_eq!(open_cookie(&key, &nonce, &sealed, b"ad"), Some([1; 16]));
        assert_eq!(open_cookie(&key, &nonce, &sealed, b"other"), None);
        let mut bad = sealed;
        bad[0] ^= 1;
        assert_eq!(open_cookie(&key, &nonce, &bad, b"ad"), None);
    }
}
