//! Why a certificate could not be issued: the one error type shared by CA self-signing
//! ([`super::CaCertificate::self_signed`]) and member issuing ([`super::MemberCertificate::issue`]).
//!
//! It lives in its own leaf module so that `ca.rs` and `member.rs` both import it from here and the
//! imports between the two run one way only (`member` uses `ca`, never the reverse).

use std::net::IpAddr;

use ipnetwork::IpNetwork;

/// Why a certificate could not be issued.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IssueError {
    /// A parameter is invalid whatever the CA.
    #[error("invalid {field}: {reason}")]
    InvalidField {
        /// Parameter name.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The signing key is not the key of the CA certificate.
    #[error("the CA key does not match the CA certificate")]
    KeyMismatch,
    /// An address lies outside every overlay prefix of the CA.
    #[error("address {0} is outside the network's overlay prefixes")]
    AddressOutsidePrefixes(IpAddr),
    /// A route is not inside any of the CA's routes.
    #[error("route {0} is not inside any route the CA allows")]
    RouteNotAllowed(IpNetwork),
    /// The validity window ends after the CA's.
    #[error("certificate would outlive its CA (CA not_after {ca_not_after})")]
    OutlivesCa {
        /// End of the CA's validity.
        ca_not_after: u64,
    },
    /// The encoding would exceed [`super::MAX_CERT_LEN`].
    #[error("certificate would exceed {} bytes", super::MAX_CERT_LEN)]
    TooLarge,
}
