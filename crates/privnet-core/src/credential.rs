//! The member credential carried inside handshake payloads, and the single trait through which the
//! core validates it.
//!
//! The core never interprets credential bytes itself: it hands them, together with the Noise static
//! key that the handshake authenticated, to a [`CredentialVerifier`]. The real verifier checks a
//! CA-signed member certificate ([`crate::identity`]); tests may use [`StaticKeyVerifier`].

use std::collections::HashMap;
use std::fmt;

use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};

/// What a verified credential tells the core about a peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerIdentity {
    /// Human-readable member name (for logs, status and metrics).
    pub name: String,
    /// Overlay prefixes this member may use as inner source address (anti-spoofing) and that are routed
    /// to it: its own addresses (/32, /128) plus any subnet routes its certificate grants.
    pub addresses: Vec<IpNetwork>,
    /// Groups the member belongs to (for policy).
    pub groups: Vec<String>,
    /// Unix time (seconds) after which the credential is no longer valid; sessions are torn down then.
    pub not_after: u64,
    /// Fingerprint of the credential (for revocation and logs).
    pub fingerprint: [u8; 32],
}

/// Why a credential was refused. Small and `Copy` so it can be counted on the handshake path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CredentialError {
    /// The bytes do not decode as a credential.
    Malformed,
    /// The credential was not issued by a trusted CA, or its signature does not verify.
    BadSignature,
    /// The credential belongs to another network.
    WrongNetwork,
    /// `now` is past the credential's validity window.
    Expired,
    /// `now` is before the credential's validity window.
    NotYetValid,
    /// The Noise static key authenticated by the handshake is not the one in the credential.
    KeyMismatch,
    /// The credential's fingerprint is on the revocation list.
    Revoked,
    /// The static key is not one this node accepts.
    UnknownPeer,
}

impl fmt::Display for CredentialError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Self::Malformed => "credential does not decode",
            Self::BadSignature => "credential not signed by a trusted CA",
            Self::WrongNetwork => "credential belongs to another network",
            Self::Expired => "credential expired",
            Self::NotYetValid => "credential not yet valid",
            Self::KeyMismatch => "handshake static key does not match the credential",
            Self::Revoked => "credential revoked",
            Self::UnknownPeer => "static key not accepted by this node",
        };
        f.write_str(s)
    }
}

impl std::error::Error for CredentialError {}

/// Validates the credential a peer presents in a handshake.
///
/// Called on every handshake (both directions) and again whenever the node is asked to revalidate its
/// sessions (revocation list reload, CA rollover). Must be cheap enough for the handshake path and must
/// never panic on any input bytes.
pub trait CredentialVerifier: Send + Sync + fmt::Debug {
    /// Verify `credential`, presented by the holder of Noise static key `noise_static`, at Unix time
    /// `unix_now` (seconds).
    fn verify(
        &self,
        credential: &[u8],
        noise_static: &[u8; 32],
        unix_now: u64,
    ) -> Result<PeerIdentity, CredentialError>;
}

/// Stand-in credential: an unsigned name and address list. Only meaningful together with
/// [`StaticKeyVerifier`], which trusts static keys, not credential contents.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct StandInCredential {
    /// Member name.
    pub name: String,
    /// Member addresses.
    pub addresses: Vec<IpNetwork>,
}

impl StandInCredential {
    /// Encode with postcard.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).unwrap_or_default()
    }
}

/// A verifier that accepts exactly a configured set of static keys, each with a fixed identity
/// (WireGuard-style configuration). The credential bytes must decode as a [`StandInCredential`], but
/// the identity returned is the configured one.
#[derive(Clone, Debug, Default)]
pub struct StaticKeyVerifier {
    allowed: HashMap<[u8; 32], PeerIdentity>,
}

impl StaticKeyVerifier {
    /// An empty verifier (accepts nobody).
    pub fn new() -> Self {
        Self::default()
    }

    /// Accept `static_key` with `identity`.
    pub fn allow(&mut self, static_key: [u8; 32], identity: PeerIdentity) -> &mut Self {
        self.allowed.insert(static_key, identity);
        self
    }

    /// Stop accepting `static_key`.
    pub fn revoke(&mut self, static_key: &[u8; 32]) -> &mut Self {
        self.allowed.remove(static_key);
        self
    }
}

impl CredentialVerifier for StaticKeyVerifier {
    fn verify(
        &self,
        credential: &[u8],
        noise_static: &[u8; 32],
        unix_now: u64,
    ) -> Result<PeerIdentity, CredentialError> {
        postcard::from_bytes::<StandInCredential>(credential)
            .map_err(|_| CredentialError::Malformed)?;
        let id = self
            .allowed
            .get(noise_static)
            .ok_or(CredentialError::UnknownPeer)?;
        if unix_now >= id.not_after {
            return Err(CredentialError::Expired);
        }
        Ok(id.clone())
    }
}
