//! The member record a directory holds for each member: its certificate, underlay endpoints and
//! capabilities. A record is only a **hint**: it tells a member whom to try and where; the peer is
//! still admitted by the certificate it presents in the handshake, exactly as a statically
//! configured one. A record whose certificate does not verify against the member's trust store is
//! not even turned into a peer ([`super::peers`]).
//!
//! # Encoding
//!
//! ```text
//! byte 0     RECORD_VERSION (1); another version is refused
//! bytes 1..  postcard encoding of the body: certificate (bytes), endpoints (socket addresses),
//!            capabilities (strings), persistent keepalive (optional u16 seconds)
//! ```
//!
//! At most [`MAX_RECORD_LEN`] bytes, no trailing bytes, canonical (the body re-encodes to the
//! input bit for bit), at most [`MAX_ENDPOINTS`] endpoints and [`MAX_CAPABILITIES`] capabilities
//! of [`MAX_CAPABILITY_LEN`] bytes each. Decoding never panics.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::identity::{MemberCertificate, MAX_CERT_LEN};

/// The record format version.
pub const RECORD_VERSION: u8 = 1;
/// Largest encoded record.
pub const MAX_RECORD_LEN: usize = 4096;
/// Most underlay endpoints in a record.
pub const MAX_ENDPOINTS: usize = 8;
/// Most capabilities in a record.
pub const MAX_CAPABILITIES: usize = 16;
/// Longest capability, in bytes.
pub const MAX_CAPABILITY_LEN: usize = 64;

/// A member's directory record, decoded and bounded (not verified: see
/// [`MemberRecord::certificate`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecord {
    /// The member certificate, binary encoding.
    pub certificate: Vec<u8>,
    /// Underlay endpoints to try, the preferred first.
    pub endpoints: Vec<SocketAddr>,
    /// Free-form capabilities (`userspace`, `gateway`, …) for operators and tools.
    pub capabilities: Vec<String>,
    /// Persistent keepalive the member asks its peers for, seconds.
    pub persistent_keepalive: Option<u16>,
}

/// Why a record does not decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// Empty, or over [`MAX_RECORD_LEN`].
    #[error("record empty or larger than {MAX_RECORD_LEN} bytes")]
    Length,
    /// An unknown format version.
    #[error("unknown record format version")]
    Version,
    /// The body does not decode, has trailing bytes or is not canonical.
    #[error("record body does not decode (or has trailing bytes)")]
    Body,
    /// A field over its bound (endpoints, capabilities, certificate length).
    #[error("record field out of bounds")]
    Bounds,
    /// The certificate bytes do not decode.
    #[error("record certificate does not decode")]
    Certificate,
}

impl RecordError {
    /// A short label for counters and logs.
    pub fn label(self) -> &'static str {
        match self {
            Self::Length => "record_length",
            Self::Version => "record_version",
            Self::Body => "record_body",
            Self::Bounds => "record_bounds",
            Self::Certificate => "record_certificate",
        }
    }
}

impl MemberRecord {
    /// A record for `certificate` reachable at `endpoints`.
    pub fn new(certificate: &MemberCertificate, endpoints: Vec<SocketAddr>) -> Self {
        Self {
            certificate: certificate.to_bytes(),
            endpoints,
            capabilities: Vec::new(),
            persistent_keepalive: None,
        }
    }

    /// The encoding.
    ///
    /// # Errors
    /// [`RecordError::Bounds`] if a field is over its bound, [`RecordError::Length`] if the
    /// encoding is over [`MAX_RECORD_LEN`].
    pub fn to_bytes(&self) -> Result<Vec<u8>, RecordError> {
        self.check_bounds()?;
        let mut out = vec![RECORD_VERSION];
        let body = postcard::to_stdvec(self).map_err(|_| RecordError::Body)?;
        out.extend_from_slice(&body);
        if out.len() > MAX_RECORD_LEN {
            return Err(RecordError::Length);
        }
        Ok(out)
    }

    /// Decode a record (see the module docs); the certificate is decoded too (not verified).
    ///
    /// # Errors
    /// The first [`RecordError`] found.
    pub fn from_bytes(bytes: &[u8]) -> Result<(Self, MemberCertificate), RecordError> {
        if bytes.is_empty() || bytes.len() > MAX_RECORD_LEN {
            return Err(RecordError::Length);
        }
        if bytes[0] != RECORD_VERSION {
            return Err(RecordError::Version);
        }
        let body = &bytes[1..];
        let (record, rest): (Self, &[u8]) =
            postcard::take_from_bytes(body).map_err(|_| RecordError::Body)?;
        if !rest.is_empty() {
            return Err(RecordError::Body);
        }
        record.check_bounds()?;
        let again = postcard::to_stdvec(&record).map_err(|_| RecordError::Body)?;
        if again != body {
            return Err(RecordError::Body);
        }
        let cert = MemberCertificate::from_bytes(&record.certificate)
            .map_err(|_| RecordError::Certificate)?;
        Ok((record, cert))
    }

    fn check_bounds(&self) -> Result<(), RecordError> {
        if self.certificate.len() > MAX_CERT_LEN
            || self.endpoints.len() > MAX_ENDPOINTS
            || self.capabilities.len() > MAX_CAPABILITIES
            || self
                .capabilities
                .iter()
                .any(|c| c.is_empty() || c.len() > MAX_CAPABILITY_LEN)
        {
            return Err(RecordError::Bounds);
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::test_support::member;
    use super::*;

    #[test]
    fn a_record_round_trips_and_every_truncation_is_refused() {
        let (_, cert) = member("a", "10.77.0.1", 3);
        let mut r = MemberRecord::new(&cert, vec!["192.0.2.1:51820".parse().unwrap()]);
        r.capabilities.push("tun".into());
        r.persistent_keepalive = Some(25);
        let bytes = r.to_bytes().unwrap();
        let (back, c) = MemberRecord::from_bytes(&bytes).unwrap();
        assert_eq!(back, r);
        assert_eq!(c.name(), "a");
        for len in 0..bytes.len() {
            assert!(MemberRecord::from_bytes(&bytes[..len]).is_err(), "{len}");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(MemberRecord::from_bytes(&long), Err(RecordError::Body));
        let mut v2 = bytes;
        v2[0] = 2;
        assert_eq!(MemberRecord::from_bytes(&v2), Err(RecordError::Version));
    }

    #[test]
    fn bounds_are_enforced_both_ways() {
        let (_, cert) = member("a", "10.77.0.1", 3);
        let mut r = MemberRecord::new(&cert, vec!["192.0.2.1:1".parse().unwrap(); 9]);
        assert_eq!(r.to_bytes(), Err(RecordError::Bounds));
        r.endpoints.truncate(1);
        r.capabilities = vec![String::new()];
        assert_eq!(r.to_bytes(), Err(RecordError::Bounds));
        // A record with too many endpoints built by hand (not by to_bytes) is refused on decode.
        r.capabilities.clear();
        r.endpoints = vec!["192.0.2.1:1".parse().unwrap(); 9];
        let mut raw = vec![RECORD_VERSION];
        raw.extend(postcard::to_stdvec(&r).unwrap());
        assert_eq!(MemberRecord::from_bytes(&raw), Err(RecordError::Bounds));
        // Garbage certificate bytes.
        r.endpoints.clear();
        r.certificate = vec![1, 2, 3];
        let raw = r.to_bytes().unwrap();
        assert_eq!(
            MemberRecord::from_bytes(&raw),
            Err(RecordError::Certificate)
        );
        assert_eq!(MemberRecord::from_bytes(&[]), Err(RecordError::Length));
        assert_eq!(
            MemberRecord::from_bytes(&vec![1; MAX_RECORD_LEN + 1]),
            Err(RecordError::Length)
        );
    }
}
