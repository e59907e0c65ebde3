//! The key layout of a network in the directory (docs/DIRECTORY.md):
//!
//! ```text
//! PREFIX/members/NAME       a member's record (under the member's lease)
//! PREFIX/bundles/policy     the signed policy bundle
//! PREFIX/bundles/revocations the signed revocation bundle
//! ```
//!
//! `PREFIX` defaults to `/privnet/NETWORK`.

use crate::identity::BundleKind;

/// The keys of one network under its prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    prefix: String,
}

impl Layout {
    /// The layout under `prefix` (a trailing `/` is dropped).
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.trim_end_matches('/').to_owned(),
        }
    }

    /// The default prefix of `network`: `/privnet/NETWORK`.
    pub fn default_prefix(network: &str) -> String {
        format!("/privnet/{network}")
    }

    /// The prefix every key of the network starts with (ends with `/`): what a member watches.
    pub fn watch_prefix(&self) -> String {
        format!("{}/", self.prefix)
    }

    /// The prefix of the member records (ends with `/`).
    pub fn members(&self) -> String {
        format!("{}/members/", self.prefix)
    }

    /// The key of member `name`'s record.
    pub fn member(&self, name: &str) -> String {
        format!("{}/members/{name}", self.prefix)
    }

    /// The key of the bundle of `kind`.
    pub fn bundle(&self, kind: BundleKind) -> String {
        match kind {
            BundleKind::Policy => format!("{}/bundles/policy", self.prefix),
            BundleKind::Revocations => format!("{}/bundles/revocations", self.prefix),
        }
    }

    /// The bundle kind a key holds, if it is a bundle key.
    pub fn bundle_kind(&self, key: &str) -> Option<BundleKind> {
        [BundleKind::Policy, BundleKind::Revocations]
            .into_iter()
            .find(|k| self.bundle(*k) == key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_nest_under_the_prefix() {
        let l = Layout::new("/privnet/net/");
        assert_eq!(l.watch_prefix(), "/privnet/net/");
        assert_eq!(l.member("a"), "/privnet/net/members/a");
        assert!(l.member("a").starts_with(&l.members()));
        assert_eq!(
            l.bundle_kind("/privnet/net/bundles/policy"),
            Some(BundleKind::Policy)
        );
        assert_eq!(l.bundle_kind("/privnet/net/members/a"), None);
        assert_eq!(Layout::default_prefix("net"), "/privnet/net");
    }
}
