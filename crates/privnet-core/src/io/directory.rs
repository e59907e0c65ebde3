//! The directory client (feature `directory`): registration under an etcd lease, the watch of
//! the network's prefix feeding the driver's peers, signed bundles, the on-disk cache. The
//! decisions are the sans-IO [`crate::directory`]; this is its etcd and file shell. Used by the
//! sidecar (`[directory]`) and usable by an embedded node on its [`super::DriverHandle`].

mod admin;
mod cache;
mod client;
mod status;

pub use admin::DirectoryAccess;
pub use client::{DirectoryClient, DirectoryConfig};
pub use status::{DirectoryMember, DirectoryStatus};
