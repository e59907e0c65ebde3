//! The binary certificate envelope, fingerprints and the compact wire forms of addresses.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use blake2::{Blake2s256, Digest};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use ipnetwork::IpNetwork;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::armor::ArmorError;
use super::{hex_decode_into, hex_encode, FORMAT_VERSION, MAX_CERT_LEN};

/// Domain separation for signatures: signed message = `SIGNING_CONTEXT || tbs`.
const SIGNING_CONTEXT: &[u8] = b"privnet certificate signature v1\0";
/// Domain separation for fingerprints: fingerprint = BLAKE2s-256(`FINGERPRINT_CONTEXT || tbs`).
const FINGERPRINT_CONTEXT: &[u8] = b"privnet certificate fingerprint v1\0";
/// Ed25519 signature length.
pub(crate) const SIGNATURE_LEN: usize = 64;
/// Version and kind bytes.
const HEADER_LEN: usize = 2;

/// Kind byte of a CA certificate.
pub(crate) const KIND_CA: u8 = 1;
/// Kind byte of a member certificate.
pub(crate) const KIND_MEMBER: u8 = 2;
/// Kind byte of a signer certificate (a key the CA lets sign directory bundles).
pub(crate) const KIND_SIGNER: u8 = 3;
/// Kind byte of a signed directory bundle (policy, revocations).
pub(crate) const KIND_BUNDLE: u8 = 4;

/// Why certificate bytes (or armoured text) do not decode.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Longer than [`MAX_CERT_LEN`].
    #[error("certificate is {len} bytes, more than the {max} allowed")]
    TooLarge {
        /// Length of the input.
        len: usize,
        /// Maximum accepted.
        max: usize,
    },
    /// Too short to hold a header and a signature, or the body ends early.
    #[error("certificate is truncated")]
    Truncated,
    /// The format version byte is not one this build understands.
    #[error("unsupported certificate format version {0} (this build reads version 1)")]
    UnsupportedVersion(u8),
    /// A CA certificate where a member certificate was expected, or the other way round.
    #[error("wrong certificate kind {found} (expected {expected})")]
    WrongKind {
        /// Kind byte expected.
        expected: u8,
        /// Kind byte found.
        found: u8,
    },
    /// The body does not decode.
    #[error("certificate body does not decode")]
    Malformed,
    /// Bytes left between the body and the signature.
    #[error("trailing bytes after the certificate body")]
    TrailingBytes,
    /// The body decodes but is not in canonical form.
    #[error("certificate body is not canonically encoded")]
    NonCanonical,
    /// A field has a value that is never valid.
    #[error("invalid field `{field}`: {reason}")]
    InvalidField {
        /// Field name.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A CA certificate whose self-signature does not verify.
    #[error("CA certificate self-signature does not verify")]
    BadSelfSignature,
    /// The text armour is wrong.
    #[error("armour: {0}")]
    Armor(#[from] ArmorError),
}

/// The fingerprint of a certificate: BLAKE2s-256 of its to-be-signed bytes (see the module docs).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// Lower-case hex (64 characters).
    pub fn to_hex(&self) -> String {
        hex_encode(&self.0)
    }

    /// Parse 64 hex digits (either case).
    pub fn from_hex(s: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        hex_decode_into(s, &mut out).then_some(Self(out))
    }

    pub(crate) fn of_tbs(tbs: &[u8]) -> Self {
        let mut h = Blake2s256::new();
        h.update(FINGERPRINT_CONTEXT);
        h.update(tbs);
        Self(h.finalize().into())
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({})", self.to_hex())
    }
}

/// Compact wire form of an IP address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum WireAddr {
    V4([u8; 4]),
    V6([u8; 16]),
}

impl From<IpAddr> for WireAddr {
    fn from(a: IpAddr) -> Self {
        match a {
            IpAddr::V4(a) => Self::V4(a.octets()),
            IpAddr::V6(a) => Self::V6(a.octets()),
        }
    }
}

impl From<WireAddr> for IpAddr {
    fn from(a: WireAddr) -> Self {
        match a {
            WireAddr::V4(o) => IpAddr::V4(Ipv4Addr::from(o)),
            WireAddr::V6(o) => IpAddr::V6(Ipv6Addr::from(o)),
        }
    }
}

/// Compact wire form of a prefix. Only valid prefixes (length in range, host bits clear) convert.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct WireNet {
    addr: WireAddr,
    len: u8,
}

impl WireNet {
    /// The wire form of `net`, if it is a normalised prefix (no host bits set).
    pub(crate) fn from_net(net: &IpNetwork) -> Option<Self> {
        (net.network() == net.ip()).then(|| Self {
            addr: net.ip().into(),
            len: net.prefix(),
        })
    }

    pub(crate) fn to_net(self) -> Option<IpNetwork> {
        let net = IpNetwork::new(self.addr.into(), self.len).ok()?;
        (net.network() == net.ip()).then_some(net)
    }
}

/// Whether two prefixes share any address.
pub(crate) fn overlaps(a: &IpNetwork, b: &IpNetwork) -> bool {
    a.contains(b.network()) || b.contains(a.network())
}

/// Whether `net` is a default route (`0.0.0.0/0` or `::/0`): egress to the outside.
pub(crate) fn is_default(net: &IpNetwork) -> bool {
    net.prefix() == 0
}

/// Whether `inner` lies entirely inside `outer`.
pub(crate) fn net_within(inner: &IpNetwork, outer: &IpNetwork) -> bool {
    inner.prefix() >= outer.prefix() && outer.contains(inner.network())
}

/// A decoded envelope: the body, the to-be-signed bytes and the signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Envelope<B> {
    pub(crate) body: B,
    pub(crate) tbs: Vec<u8>,
    pub(crate) signature: [u8; SIGNATURE_LEN],
}

impl<B> Envelope<B> {
    pub(crate) fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of_tbs(&self.tbs)
    }

    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.tbs.len() + SIGNATURE_LEN);
        out.extend_from_slice(&self.tbs);
        out.extend_from_slice(&self.signature);
        out
    }

    /// Whether `key` signed this envelope (strict Ed25519: no malleable or small-order encodings).
    pub(crate) fn verify(&self, key: &[u8; 32]) -> bool {
        let Ok(vk) = VerifyingKey::from_bytes(key) else {
            return false;
        };
        let sig = Signature::from_bytes(&self.signature);
        vk.verify_strict(&signing_message(&self.tbs), &sig).is_ok()
    }
}

fn signing_message(tbs: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(SIGNING_CONTEXT.len() + tbs.len());
    msg.extend_from_slice(SIGNING_CONTEXT);
    msg.extend_from_slice(tbs);
    msg
}

/// Encode and sign `body`. Returns `None` if postcard fails (it cannot for our types) or the result
/// is longer than [`MAX_CERT_LEN`].
pub(crate) fn seal<B: Serialize>(kind: u8, body: B, key: &SigningKey) -> Option<Envelope<B>> {
    seal_max(kind, body, key, MAX_CERT_LEN)
}

/// [`seal`] with another length bound (bundles are larger than certificates).
pub(crate) fn seal_max<B: Serialize>(
    kind: u8,
    body: B,
    key: &SigningKey,
    max: usize,
) -> Option<Envelope<B>> {
    let mut tbs = vec![FORMAT_VERSION, kind];
    tbs.extend(postcard::to_stdvec(&body).ok()?);
    if tbs.len() + SIGNATURE_LEN > max {
        return None;
    }
    let signature = key.sign(&signing_message(&tbs)).to_bytes();
    Some(Envelope {
        body,
        tbs,
        signature,
    })
}

/// Decode an envelope of `kind` without checking its signature.
pub(crate) fn open<B: Serialize + DeserializeOwned>(
    kind: u8,
    bytes: &[u8],
) -> Result<Envelope<B>, DecodeError> {
    open_max(kind, bytes, MAX_CERT_LEN)
}

/// [`open`] with another length bound.
pub(crate) fn open_max<B: Serialize + DeserializeOwned>(
    kind: u8,
    bytes: &[u8],
    max: usize,
) -> Result<Envelope<B>, DecodeError> {
    if bytes.len() > max {
        return Err(DecodeError::TooLarge {
            len: bytes.len(),
            max,
        });
    }
    let body_end = bytes
        .len()
        .checked_sub(SIGNATURE_LEN)
        .filter(|&e| e > HEADER_LEN)
        .ok_or(DecodeError::Truncated)?;
    let (tbs, sig) = bytes.split_at(body_end);
    let (&version, rest) = tbs.split_first().ok_or(DecodeError::Truncated)?;
    if version != FORMAT_VERSION {
        return Err(DecodeError::UnsupportedVersion(version));
    }
    let (&found, body_bytes) = rest.split_first().ok_or(DecodeError::Truncated)?;
    if found != kind {
        return Err(DecodeError::WrongKind {
            expected: kind,
            found,
        });
    }
    let (body, trailing) = postcard::take_from_bytes::<B>(body_bytes).map_err(|e| match e {
        postcard::Error::DeserializeUnexpectedEnd => DecodeError::Truncated,
        _ => DecodeError::Malformed,
    })?;
    if !trailing.is_empty() {
        return Err(DecodeError::TrailingBytes);
    }
    // Canonical form: re-encoding must reproduce the input (rejects over-long varints and the like).
    if postcard::to_stdvec(&body).ok().as_deref() != Some(body_bytes) {
        return Err(DecodeError::NonCanonical);
    }
    let mut signature = [0u8; SIGNATURE_LEN];
    signature.copy_from_slice(sig);
    Ok(Envelope {
        body,
        tbs: tbs.to_vec(),
        signature,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn wire_net_requires_normalised_prefix() {
        let good: IpNetwork = "10.0.0.0/8".parse().unwrap();
        let host_bits: IpNetwork = "10.0.0.1/8".parse().unwrap();
        assert_eq!(
            WireNet::from_net(&good).and_then(WireNet::to_net),
            Some(good)
        );
        assert_eq!(WireNet::from_net(&host_bits), None);
        let bad = WireNet {
            addr: WireAddr::V4([10, 0, 0, 1]),
            len: 8,
        };
        assert_eq!(bad.to_net(), None);
        let too_long = WireNet {
            addr: WireAddr::V4([10, 0, 0, 0]),
            len: 33,
        };
        assert_eq!(too_long.to_net(), None);
    }

    #[test]
    fn overlap_and_within() {
        let n = |s: &str| s.parse::<IpNetwork>().unwrap();
        assert!(overlaps(&n("10.0.0.0/8"), &n("10.1.0.0/16")));
        assert!(overlaps(&n("10.1.0.0/16"), &n("10.0.0.0/8")));
        assert!(!overlaps(&n("10.1.0.0/16"), &n("10.2.0.0/16")));
        assert!(!overlaps(&n("10.0.0.0/8"), &n("fd00::/8")));
        assert!(net_within(&n("10.1.0.0/16"), &n("10.0.0.0/8")));
        assert!(!net_within(&n("10.0.0.0/8"), &n("10.1.0.0/16")));
        assert!(!net_within(&n("fd00::/16"), &n("10.0.0.0/8")));
    }

    #[test]
    fn fingerprint_hex_round_trip() {
        let f = Fingerprint::of_tbs(b"x");
        assert_eq!(Fingerprint::from_hex(&f.to_hex()), Some(f));
        assert_eq!(f.to_hex().len(), 64);
    }
}
