//! # privnet-core (bootstrap: the protocol modules are being written and land shortly)
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod credential;
pub mod icmp;
pub mod identity;

pub use credential::{CredentialError, CredentialVerifier, PeerIdentity};
