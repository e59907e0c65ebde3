//! Reloading a network's access policy when its file changes on disk (docs/CONFIG.md, "Reloading
//! the access policy"): `privnet up` polls every [`POLL_EVERY`] on the blocking pool, never on
//! the drivers' thread. A change is applied only once the file has **settled** (the same size,
//! times and inode at two polls in a row), so a file caught half-written by an editor that writes
//! in place is not compiled (a half-written policy may be valid and allow more than intended).
//! The new text is compiled first; a policy that does not compile is refused with its file, line
//! and what was expected, and the running policy stays. Only a policy whose hash differs from the
//! running one is installed (a comment edit changes nothing).

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{self, PolicySettings, Problem};

/// How often policy files are looked at.
pub const POLL_EVERY: Duration = Duration::from_secs(2);

/// What identifies a version of a file without reading it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileStamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

/// The stamp of the file at `path` (following links: a Kubernetes ConfigMap is a link that is
/// switched to a new file); `None` if it cannot be looked at.
pub fn stamp(path: &Path) -> Option<FileStamp> {
    let m = std::fs::metadata(path).ok()?;
    Some(FileStamp {
        dev: m.dev(),
        ino: m.ino(),
        len: m.len(),
        mtime: (m.mtime(), m.mtime_nsec()),
        ctime: (m.ctime(), m.ctime_nsec()),
    })
}

/// One network's policy file as the poll follows it.
#[derive(Clone, Debug, Default)]
pub struct Watch {
    /// The policy file in force (`None`: no `node.policy`, nothing to watch).
    pub file: Option<PathBuf>,
    /// The hash of the policy in force.
    pub hash: Option<[u8; 32]>,
    /// The stamp of the version last looked at (applied, unchanged or refused).
    pub checked: Option<FileStamp>,
    /// The stamp seen at the previous poll, while a change settles.
    pub seen: Option<FileStamp>,
}

/// What one poll found.
#[derive(Debug)]
pub enum Found {
    /// Nothing new (or the file is still changing, or it cannot be looked at).
    Nothing,
    /// The file settled on a new version: the policy compiled from it, or its problems.
    Changed(Result<PolicySettings, Vec<Problem>>),
}

impl Watch {
    /// A watch of the policy in force at start (its file is looked at again at the next polls).
    pub fn of(policy: Option<&PolicySettings>) -> Self {
        Self {
            file: policy.map(|p| p.file.clone()),
            hash: policy.map(|p| p.compiled.hash()),
            checked: None,
            seen: None,
        }
    }

    /// Look at the file (blocking: call it on the blocking pool); reads and compiles it only when
    /// a new version has settled.
    pub fn poll(&mut self) -> Found {
        let Some(file) = &self.file else {
            return Found::Nothing;
        };
        let now = stamp(file);
        if now.is_none() || now == self.checked {
            // Gone or unreadable: the running policy stays; a reload (SIGHUP) reports why.
            self.seen = None;
            return Found::Nothing;
        }
        if now != self.seen {
            self.seen = now;
            return Found::Nothing;
        }
        self.checked = now;
        self.seen = None;
        Found::Changed(config::load_policy(file))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const ALLOW: &str =
        "[[application]]\nid = \"a\"\nfrom = \"network\"\nto = \"network\"\naction = \"allow\"\n";

    #[test]
    fn a_change_is_read_once_it_has_settled() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p.toml");
        std::fs::write(&file, ALLOW).unwrap();
        let mut w = Watch {
            file: Some(file.clone()),
            ..Watch::default()
        };
        // First sight: settling; then the same version: read.
        assert!(matches!(w.poll(), Found::Nothing));
        match w.poll() {
            Found::Changed(Ok(p)) => assert_eq!(p.rule_count(), 1),
            other => panic!("{other:?}"),
        }
        // Unchanged: nothing, however often.
        assert!(matches!(w.poll(), Found::Nothing));
        assert!(matches!(w.poll(), Found::Nothing));
        // A change that keeps changing is not read until it stops.
        std::fs::write(&file, format!("{ALLOW}# 1\n")).unwrap();
        assert!(matches!(w.poll(), Found::Nothing));
        std::fs::write(&file, "[[application]]\naction = \"perm").unwrap();
        assert!(matches!(w.poll(), Found::Nothing));
        // It settled on a broken version: its problems, once.
        match w.poll() {
            Found::Changed(Err(problems)) => {
                assert_eq!(problems[0].file, file);
                assert!(problems[0].line.is_some(), "{problems:?}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(w.poll(), Found::Nothing));
        // A file that disappears leaves things as they are.
        std::fs::remove_file(&file).unwrap();
        assert!(matches!(w.poll(), Found::Nothing));
        assert!(matches!(w.poll(), Found::Nothing));
        // No file configured: nothing to do.
        assert!(matches!(Watch::default().poll(), Found::Nothing));
    }
}
