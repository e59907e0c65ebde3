//! `[[expose]]` at run time: start each exposure of a network next to its driver
//! ([`privnet_core::io::expose::Exposure`]: kernel sockets in TUN mode, the embedded stack in
//! userspace mode), and keep its block-lists current: `privnet up` looks at the list files every
//! [`POLL_EVERY`](crate::policy_watch::POLL_EVERY) on the blocking pool and reads a version once
//! it has settled (as for policy files, [`crate::policy_watch`]); SIGHUP re-reads them with the
//! configuration. A list that does not parse is refused (logged at error with its file and line,
//! shown in `privnet status`), and the running list stays.

use std::path::PathBuf;
use std::sync::{Arc, PoisonError};

use privnet_core::io::expose::{Dialer, Exposure};
use privnet_core::io::DriverHandle;

use crate::config::{self, BlockList, ExposeSettings, Problem};
use crate::policy_watch::{stamp, FileStamp};
use crate::status::{ExposureShown, SharedExposures};

/// One list file as the poll follows it.
#[derive(Clone, Debug)]
struct ListWatch {
    path: PathBuf,
    checked: Option<FileStamp>,
    seen: Option<FileStamp>,
}

/// The running exposures of one network.
#[derive(Debug, Default)]
pub struct Exposures {
    running: Vec<Running>,
    shown: SharedExposures,
}

#[derive(Debug)]
struct Running {
    exposure: Exposure,
    /// The lists in force, in `block_lists` order.
    lists: Vec<BlockList>,
    watches: Vec<ListWatch>,
}

impl Exposures {
    /// Start `exposures` (on the current runtime) with `dialer`; `driver` gives the targets'
    /// health (without it, every target counts as without a session).
    ///
    /// # Errors
    /// A listen address cannot be bound.
    pub async fn start(
        network: &str,
        exposures: &[ExposeSettings],
        dialer: &Dialer,
        driver: Option<&DriverHandle>,
    ) -> anyhow::Result<Self> {
        let mut running = Vec::new();
        for e in exposures {
            let exposure = Exposure::start(e.spec(), dialer.clone(), driver.cloned()).await?;
            tracing::info!(network = %network, exposure = %e.name, "{}", e.describe());
            running.push(Running {
                exposure,
                lists: e.block_lists.clone(),
                watches: e
                    .block_lists
                    .iter()
                    .map(|b| ListWatch {
                        path: b.path.clone(),
                        checked: stamp(&b.path),
                        seen: None,
                    })
                    .collect(),
            });
        }
        let shown = SharedExposures::default();
        *shown.lock().unwrap_or_else(PoisonError::into_inner) = running
            .iter()
            .map(|r| ExposureShown {
                view: r.exposure.view(),
                refused: Vec::new(),
            })
            .collect();
        Ok(Self { running, shown })
    }

    /// What the status socket and the metrics show.
    pub fn shown(&self) -> SharedExposures {
        self.shown.clone()
    }

    /// A validated configuration was reloaded: install the block-lists it read for the exposures
    /// of the same name (other changes of `[[expose]]` need a restart, reported by the caller).
    pub fn reloaded(&mut self, network: &str, new: &[ExposeSettings]) {
        for (i, r) in self.running.iter_mut().enumerate() {
            let Some(e) = new.iter().find(|e| e.name == r.exposure.name()) else {
                continue;
            };
            if e.block_lists != r.lists {
                tracing::info!(network = %network, exposure = %e.name,
                    "reload: block-lists replaced ({} entries)",
                    e.block_lists.iter().map(|b| b.set.entries()).sum::<usize>());
                r.lists = e.block_lists.clone();
                r.exposure.set_block_lists(named(&r.lists));
            }
            r.watches = e
                .block_lists
                .iter()
                .map(|b| ListWatch {
                    path: b.path.clone(),
                    checked: stamp(&b.path),
                    seen: None,
                })
                .collect();
            set_refused(&self.shown, i, Vec::new());
        }
    }

    fn refused(&self, i: usize, why: Vec<String>) {
        set_refused(&self.shown, i, why);
    }

    /// Look at every list file (on the blocking pool) and install a new version that has settled
    /// and parses; refuse (log, show) one that does not.
    pub async fn poll(&mut self, network: &str) {
        let watches: Vec<Vec<ListWatch>> = self.running.iter().map(|r| r.watches.clone()).collect();
        if watches.iter().all(Vec::is_empty) {
            return;
        }
        let Ok(polled) = tokio::task::spawn_blocking(move || {
            watches
                .into_iter()
                .map(|ws| ws.into_iter().map(poll_one).collect::<Vec<_>>())
                .collect::<Vec<_>>()
        })
        .await
        else {
            return;
        };
        for (i, found) in polled.into_iter().enumerate() {
            let mut changed = false;
            let mut problems = Vec::new();
            let Some(r) = self.running.get_mut(i) else {
                break;
            };
            for (j, (watch, result)) in found.into_iter().enumerate() {
                if let Some(w) = r.watches.get_mut(j) {
                    *w = watch;
                }
                match result {
                    None => {}
                    Some(Ok(list)) => {
                        if let Some(slot) = r.lists.get_mut(j) {
                            if *slot != list {
                                tracing::info!(network = %network, exposure = %r.exposure.name(),
                                    list = %list.path.display(),
                                    "block-list changed: {} entries in force", list.set.entries());
                                *slot = list;
                                changed = true;
                            }
                        }
                    }
                    Some(Err(p)) => {
                        tracing::error!(network = %network, exposure = %r.exposure.name(),
                            "block-list refused, keeping the running one: {p}");
                        problems.push(p.to_string());
                    }
                }
            }
            if changed {
                r.exposure.set_block_lists(named(&r.lists));
            }
            if changed || !problems.is_empty() {
                self.refused(i, problems);
            }
        }
    }
}

/// `[[expose]]` without its block-lists' contents (reloaded live): what a restart changes.
pub fn fixed(exposures: &[ExposeSettings]) -> String {
    exposures
        .iter()
        .map(|e| {
            let paths: Vec<String> = e.block_lists.iter().map(|b| b.path.display().to_string()).collect();
            format!(
                "{} {} {:?} -> {} proxy_v2={} allow={} lists={} conn={:?} bytes={:?} caps={:?}/{:?} idle={}s",
                e.name,
                e.listen,
                e.protocol,
                e.targets.iter().map(ToString::to_string).collect::<Vec<_>>().join(","),
                e.proxy_v2,
                e.allow.as_ref().map_or(0, |a| a.entries()),
                paths.join(","),
                e.connection_rate.map(|r| (r.per_second, r.burst)),
                e.byte_rate.map(|r| (r.per_second, r.burst)),
                e.max_per_source,
                e.max_total,
                e.udp_idle.as_secs()
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn set_refused(shown: &SharedExposures, i: usize, why: Vec<String>) {
    if let Some(s) = shown
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get_mut(i)
    {
        s.refused = why;
    }
}

fn named(lists: &[BlockList]) -> Vec<(String, Arc<privnet_core::expose::PrefixSet>)> {
    lists
        .iter()
        .map(|b| (b.path.display().to_string(), b.set.clone()))
        .collect()
}

/// One poll of one file (blocking): the new state, and a new version read once it has settled.
fn poll_one(mut w: ListWatch) -> (ListWatch, Option<Result<BlockList, Problem>>) {
    let now = stamp(&w.path);
    if now.is_none() || now == w.checked {
        // Gone or unchanged: the running list stays (a SIGHUP reports a missing file).
        w.seen = None;
        return (w, None);
    }
    if now != w.seen {
        w.seen = now;
        return (w, None);
    }
    w.checked = now;
    w.seen = None;
    let found = config::load_block_list(&w.path);
    (w, Some(found))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_list_is_read_once_settled_and_a_bad_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("drop.txt");
        std::fs::write(&path, "192.0.2.0/24 ; SBL1\n").unwrap();
        let w = ListWatch {
            path: path.clone(),
            checked: stamp(&path),
            seen: None,
        };
        let (w, found) = poll_one(w);
        assert!(found.is_none(), "unchanged");
        std::fs::write(&path, "192.0.2.0/24 ; SBL1\n198.51.100.0/24\n# more\n").unwrap();
        let (w, found) = poll_one(w);
        assert!(found.is_none(), "settling");
        let (w, found) = poll_one(w);
        assert_eq!(found.unwrap().unwrap().set.entries(), 2);
        std::fs::write(&path, "192.0.2.0/24\nnot-an-address\n").unwrap();
        let (w, _) = poll_one(w);
        let (_, found) = poll_one(w);
        let p = found.unwrap().unwrap_err();
        assert_eq!((p.file, p.line), (path, Some(2)));
        assert!(
            p.expected.contains("IPv4 or IPv6 address"),
            "{}",
            p.expected
        );
    }
}
