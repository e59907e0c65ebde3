//! The directory: how members of a network find each other, and receive signed policies and
//! revocation lists, through an etcd key space (docs/DIRECTORY.md). This is the sans-IO half —
//! the record format, the key layout, the watch state machine, the diff of records into peer
//! changes and the bundle slots; the etcd client that drives it is `io::directory` (feature
//! `directory`).
//!
//! The directory is not trusted: a record is only a hint of whom to try and where (a peer is
//! admitted by the certificate it presents in the handshake), and a policy or revocation list is
//! taken only as a bundle signed by the network CA (or a signer it certified) with a version
//! newer than the one held. Whoever controls the directory can withhold or delay changes, or
//! point members at wrong endpoints; they cannot let anyone in or change a policy.

mod bundles;
mod layout;
mod peers;
mod record;
#[cfg(test)]
mod test_support;
mod watch;

pub use bundles::{refusal_label, BundleSlot};
pub use layout::Layout;
pub use peers::{DirectoryPeer, PeerChange, PeerSet, Skip};
pub use record::{
    MemberRecord, RecordError, MAX_CAPABILITIES, MAX_CAPABILITY_LEN, MAX_ENDPOINTS, MAX_RECORD_LEN,
    RECORD_VERSION,
};
pub use watch::{
    key_from_raw, KeyChange, KeyValue, Revision, Step, WatchCounters, WatchEvent, WatchState,
};
