//! The watch state machine: the key set under a network's prefix as a member knows it, and the
//! revision up to which it has seen every change.
//!
//! etcd numbers every change of its key space with a growing **revision**. A member reads the
//! whole prefix once (a snapshot at revision R), then watches it from R + 1; each watch event
//! carries the revision of its change. After a disconnect it resumes from the last revision it
//! applied + 1, so nothing is missed; events at or below that revision (a resumed watch may send
//! some again) are dropped as duplicates, so nothing is applied twice. When the revision it would
//! resume from was compacted away, etcd cancels the watch: [`WatchState::compacted`] marks the
//! state unsynced, and the next step is a full read whose snapshot is diffed against what the
//! member had — so a member that missed changes during a compaction still ends with the right key
//! set, and only real differences come out.
//!
//! Pure: no clock, no I/O. The I/O shell asks [`WatchState::next_step`] what to do, does it,
//! and feeds the result back; each call returns the [`KeyChange`]s to apply, with no change for a
//! value rewritten unchanged (a member's lease refresh, a duplicate).

use std::collections::BTreeMap;

/// An etcd revision.
pub type Revision = i64;

/// One key-value pair as read or watched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    /// The key.
    pub key: String,
    /// The value.
    pub value: Vec<u8>,
    /// The revision of its last change.
    pub mod_revision: Revision,
}

/// A key as etcd stores it (bytes) as the state machine keeps it. A key that is not UTF-8 is kept
/// under its lossy form (U+FFFD for each bad sequence) rather than dropped: its revision still
/// counts (a response made only of such events is not mistaken for a progress notification, which
/// would move the revision past events still to come), and the record under it is then refused by
/// name like any other wrong key (a member's name has no U+FFFD).
pub fn key_from_raw(key: &[u8]) -> String {
    String::from_utf8_lossy(key).into_owned()
}

/// One watch event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchEvent {
    /// A key was written.
    Put(KeyValue),
    /// A key was deleted (or its lease expired).
    Delete {
        /// The key.
        key: String,
        /// The revision of the deletion.
        mod_revision: Revision,
    },
}

/// A change of the key set, to apply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyChange {
    /// A key appeared or its value changed.
    Set {
        /// The key.
        key: String,
        /// Its new value.
        value: Vec<u8>,
    },
    /// A key is gone.
    Removed {
        /// The key.
        key: String,
    },
}

/// What the I/O shell must do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Read the whole prefix and give the result to [`WatchState::apply_snapshot`].
    Resync,
    /// Watch the prefix from this revision on and give each response to
    /// [`WatchState::apply_events`].
    Watch {
        /// The first revision to watch.
        from: Revision,
    },
}

/// Counters of the watch state machine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WatchCounters {
    /// Events applied.
    pub events: u64,
    /// Events dropped because their revision was already applied.
    pub duplicates: u64,
    /// Full reads applied.
    pub resyncs: u64,
    /// Watches cancelled because their revision was compacted.
    pub compactions: u64,
}

/// The key set a member knows and the revision it is complete up to.
#[derive(Clone, Debug, Default)]
pub struct WatchState {
    entries: BTreeMap<String, (Revision, Vec<u8>)>,
    revision: Revision,
    synced: bool,
    counters: WatchCounters,
}

impl WatchState {
    /// Nothing known yet: the first step is a full read.
    pub fn new() -> Self {
        Self::default()
    }

    /// Start from a cached key set (read from disk) taken at `revision`: its keys are applied at
    /// once (returned as changes) so that a member restarting while the directory is unreachable
    /// comes up with the last known members; the first step is still a full read, which corrects
    /// whatever changed meanwhile.
    pub fn restore(&mut self, revision: Revision, kvs: Vec<KeyValue>) -> Vec<KeyChange> {
        let changes = self.apply_snapshot(revision, kvs);
        self.synced = false;
        self.counters.resyncs = self.counters.resyncs.saturating_sub(1);
        changes
    }

    /// What to do next.
    pub fn next_step(&self) -> Step {
        if self.synced {
            Step::Watch {
                from: self.revision.saturating_add(1),
            }
        } else {
            Step::Resync
        }
    }

    /// The revision every known change is applied up to (0 before the first read).
    pub fn revision(&self) -> Revision {
        self.revision
    }

    /// Whether the state follows the directory (a full read was applied since the last
    /// compaction).
    pub fn is_synced(&self) -> bool {
        self.synced
    }

    /// The counters.
    pub fn counters(&self) -> WatchCounters {
        self.counters
    }

    /// The keys known, with their values and revisions.
    pub fn entries(&self) -> impl Iterator<Item = KeyValue> + '_ {
        self.entries.iter().map(|(k, (rev, v))| KeyValue {
            key: k.clone(),
            value: v.clone(),
            mod_revision: *rev,
        })
    }

    /// The number of keys known.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no key is known.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Apply a full read of the prefix taken at `revision`: the differences to what was known.
    /// A read older than what is already applied is ignored (it would go back in time).
    pub fn apply_snapshot(&mut self, revision: Revision, kvs: Vec<KeyValue>) -> Vec<KeyChange> {
        if revision < self.revision {
            return Vec::new();
        }
        let mut new: BTreeMap<String, (Revision, Vec<u8>)> = BTreeMap::new();
        for kv in kvs {
            new.insert(kv.key, (kv.mod_revision, kv.value));
        }
        let mut changes = Vec::new();
        for key in self.entries.keys() {
            if !new.contains_key(key) {
                changes.push(KeyChange::Removed { key: key.clone() });
            }
        }
        for (key, (_, value)) in &new {
            if self.entries.get(key).is_none_or(|(_, old)| old != value) {
                changes.push(KeyChange::Set {
                    key: key.clone(),
                    value: value.clone(),
                });
            }
        }
        self.entries = new;
        self.revision = revision;
        self.synced = true;
        self.counters.resyncs += 1;
        changes
    }

    /// Apply one watch response (its events in order). Events at or below the revision already
    /// applied are duplicates and dropped; ignored entirely while unsynced (a full read comes
    /// first).
    pub fn apply_events(&mut self, events: Vec<WatchEvent>) -> Vec<KeyChange> {
        if !self.synced {
            return Vec::new();
        }
        // Events of one revision (one transaction) arrive in one response; compare with the
        // revision before the response so that all of them apply.
        let before = self.revision;
        let mut changes = Vec::new();
        for ev in events {
            let rev = match &ev {
                WatchEvent::Put(kv) => kv.mod_revision,
                WatchEvent::Delete { mod_revision, .. } => *mod_revision,
            };
            if rev <= before {
                self.counters.duplicates += 1;
                continue;
            }
            self.counters.events += 1;
            self.revision = self.revision.max(rev);
            match ev {
                WatchEvent::Put(kv) => {
                    let changed = self
                        .entries
                        .get(&kv.key)
                        .is_none_or(|(_, old)| *old != kv.value);
                    if changed {
                        changes.push(KeyChange::Set {
                            key: kv.key.clone(),
                            value: kv.value.clone(),
                        });
                    }
                    self.entries.insert(kv.key, (kv.mod_revision, kv.value));
                }
                WatchEvent::Delete { key, .. } => {
                    if self.entries.remove(&key).is_some() {
                        changes.push(KeyChange::Removed { key });
                    }
                }
            }
        }
        changes
    }

    /// One response of a watch, as etcd sends it: `created` for the response that confirms the
    /// watch, the revision of its header, and its events. Returns the changes to apply.
    ///
    /// Only a response with events moves the revision by its events. An empty response that is
    /// not the creation is a progress notification: etcd sends one only when the watch has caught
    /// up, so every change up to its header's revision has been delivered. The creation response
    /// is empty too, but its header carries the store's *current* revision while the events from
    /// the start revision on are still to come: taking it as progress would drop them as
    /// duplicates (a member that reconnects after an outage would miss the records that were
    /// written again meanwhile).
    pub fn on_response(
        &mut self,
        created: bool,
        header_revision: Option<Revision>,
        events: Vec<WatchEvent>,
    ) -> Vec<KeyChange> {
        if !events.is_empty() {
            return self.apply_events(events);
        }
        if let (false, Some(revision)) = (created, header_revision) {
            self.progress(revision);
        }
        Vec::new()
    }

    /// A progress notification: every change up to `revision` has been sent (there were none
    /// for the prefix), so a resume can start after it. Never the header of the response that
    /// creates a watch (see [`WatchState::on_response`]).
    pub fn progress(&mut self, revision: Revision) {
        if self.synced {
            self.revision = self.revision.max(revision);
        }
    }

    /// The watch was cancelled because the revision it started from was compacted: the next
    /// step is a full read.
    pub fn compacted(&mut self) {
        self.synced = false;
        self.counters.compactions += 1;
    }
}

#[cfg(test)]
mod tests;
