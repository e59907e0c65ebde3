//! The watch state machine against a naive model of an etcd key space: revisions, transactions,
//! deletions, compaction, watches that deliver events in arbitrary chunks, again after a
//! disconnect, or not at all.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

/// A tiny etcd: the current key set, the history of events, the compacted revision.
#[derive(Default)]
struct Store {
    kv: BTreeMap<String, (Revision, Vec<u8>)>,
    rev: Revision,
    history: Vec<WatchEvent>,
    compacted: Revision,
}

impl Store {
    fn txn(&mut self, ops: &[(u8, Option<u8>)]) {
        self.rev += 1;
        for (k, v) in ops {
            let key = format!("/p/members/k{k}");
            match v {
                Some(v) => {
                    self.kv.insert(key.clone(), (self.rev, vec![*v]));
                    self.history.push(WatchEvent::Put(KeyValue {
                        key,
                        value: vec![*v],
                        mod_revision: self.rev,
                    }));
                }
                None => {
                    if self.kv.remove(&key).is_some() {
                        self.history.push(WatchEvent::Delete {
                            key,
                            mod_revision: self.rev,
                        });
                    }
                }
            }
        }
    }

    fn snapshot(&self) -> Vec<KeyValue> {
        self.kv
            .iter()
            .map(|(k, (r, v))| KeyValue {
                key: k.clone(),
                value: v.clone(),
                mod_revision: *r,
            })
            .collect()
    }

    /// The events a watch from `from` gets, or `None` when `from` was compacted.
    fn watch(&self, from: Revision) -> Option<Vec<WatchEvent>> {
        if from <= self.compacted {
            return None;
        }
        Some(
            self.history
                .iter()
                .filter(|e| rev_of(e) >= from)
                .cloned()
                .collect(),
        )
    }
}

fn rev_of(e: &WatchEvent) -> Revision {
    match e {
        WatchEvent::Put(kv) => kv.mod_revision,
        WatchEvent::Delete { mod_revision, .. } => *mod_revision,
    }
}

#[derive(Clone, Debug)]
enum Op {
    /// A transaction of puts (`Some`) and deletes (`None`) on a few keys.
    Txn(Vec<(u8, Option<u8>)>),
    /// The member's connection: what it does next, delivering at most this many revisions.
    Deliver(usize),
    /// The member delivers the same chunk twice (a resumed watch that overlaps).
    DeliverTwice(usize),
    /// The store compacts everything it has.
    Compact,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => proptest::collection::vec((0u8..6, proptest::option::of(0u8..3)), 1..4).prop_map(Op::Txn),
        3 => (1usize..5).prop_map(Op::Deliver),
        1 => (1usize..5).prop_map(Op::DeliverTwice),
        1 => Just(Op::Compact),
    ]
}

/// Run one step of the member: resync or deliver up to `revs` revisions of events (split at a
/// revision boundary, as etcd sends them). Returns the changes.
fn step(store: &Store, sm: &mut WatchState, revs: usize, twice: bool) -> Vec<KeyChange> {
    match sm.next_step() {
        Step::Resync => sm.apply_snapshot(store.rev, store.snapshot()),
        Step::Watch { from } => match store.watch(from) {
            None => {
                sm.compacted();
                Vec::new()
            }
            Some(events) => {
                let revisions: Vec<Revision> = events
                    .iter()
                    .map(rev_of)
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect();
                let last = revisions
                    .get(revs.min(revisions.len()).saturating_sub(1))
                    .copied();
                let chunk: Vec<WatchEvent> = events
                    .into_iter()
                    .filter(|e| last.is_some_and(|l| rev_of(e) <= l))
                    .collect();
                // Each delivery is a new watch, as after a reconnect: etcd confirms it first,
                // with the store's current revision in the header, then sends the events.
                assert!(sm.on_response(true, Some(store.rev), Vec::new()).is_empty());
                let out = sm.on_response(false, Some(store.rev), chunk.clone());
                if twice {
                    // Nothing applies twice.
                    assert!(sm.on_response(false, Some(store.rev), chunk).is_empty());
                }
                if last.is_none() {
                    // Caught up: a progress notification.
                    assert!(sm
                        .on_response(false, Some(store.rev), Vec::new())
                        .is_empty());
                }
                out
            }
        },
    }
}

fn apply(mirror: &mut BTreeMap<String, Vec<u8>>, changes: Vec<KeyChange>) {
    for c in changes {
        match c {
            KeyChange::Set { key, value } => {
                // A change is never a no-op.
                assert_ne!(mirror.get(&key), Some(&value), "a Set that changes nothing");
                mirror.insert(key, value);
            }
            KeyChange::Removed { key } => {
                assert!(mirror.remove(&key).is_some(), "a Removed of an unknown key");
            }
        }
    }
}

fn known(sm: &WatchState) -> BTreeMap<String, Vec<u8>> {
    sm.entries().map(|kv| (kv.key, kv.value)).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever happens, the changes handed out rebuild exactly the state machine's key set, no
    /// change is a no-op, and once the member caught up its key set is the store's.
    #[test]
    fn the_changes_rebuild_the_store(ops in proptest::collection::vec(op(), 1..60)) {
        let mut store = Store::default();
        let mut sm = WatchState::new();
        let mut mirror = BTreeMap::new();
        for op in ops {
            match op {
                Op::Txn(t) => store.txn(&t),
                Op::Deliver(n) => apply(&mut mirror, step(&store, &mut sm, n, false)),
                Op::DeliverTwice(n) => apply(&mut mirror, step(&store, &mut sm, n, true)),
                Op::Compact => store.compacted = store.rev,
            }
            prop_assert_eq!(&mirror, &known(&sm));
            prop_assert!(sm.revision() <= store.rev);
        }
        // Catch up: at most a compaction, a resync and one full delivery.
        for _ in 0..4 {
            apply(&mut mirror, step(&store, &mut sm, usize::MAX, false));
        }
        let want: BTreeMap<String, Vec<u8>> =
            store.kv.iter().map(|(k, (_, v))| (k.clone(), v.clone())).collect();
        prop_assert_eq!(&known(&sm), &want);
        prop_assert_eq!(&mirror, &want);
        prop_assert_eq!(sm.next_step(), Step::Watch { from: store.rev + 1 });
    }
}

#[test]
fn a_compacted_watch_resyncs_and_only_real_differences_come_out() {
    let mut store = Store::default();
    let mut sm = WatchState::new();
    store.txn(&[(1, Some(1)), (2, Some(1))]);
    assert_eq!(sm.next_step(), Step::Resync);
    assert_eq!(step(&store, &mut sm, 10, false).len(), 2);
    // Changes the member does not see, then a compaction.
    store.txn(&[(1, None)]);
    store.txn(&[(2, Some(1))]); // rewritten unchanged
    store.txn(&[(3, Some(2))]);
    store.compacted = store.rev;
    assert!(step(&store, &mut sm, 10, false).is_empty());
    assert_eq!(sm.counters().compactions, 1);
    assert_eq!(sm.next_step(), Step::Resync);
    let changes = step(&store, &mut sm, 10, false);
    assert_eq!(
        changes,
        vec![
            KeyChange::Removed {
                key: "/p/members/k1".into()
            },
            KeyChange::Set {
                key: "/p/members/k3".into(),
                value: vec![2]
            },
        ]
    );
    assert_eq!(sm.next_step(), Step::Watch { from: 5 });
}

#[test]
fn a_restored_cache_applies_at_once_and_still_resyncs() {
    let mut sm = WatchState::new();
    let cached = vec![KeyValue {
        key: "/p/members/a".into(),
        value: vec![1],
        mod_revision: 3,
    }];
    assert_eq!(sm.restore(3, cached).len(), 1);
    assert_eq!(sm.next_step(), Step::Resync);
    assert_eq!(sm.counters().resyncs, 0);
    // Events before the resync are ignored.
    assert!(sm
        .apply_events(vec![WatchEvent::Delete {
            key: "/p/members/a".into(),
            mod_revision: 4
        }])
        .is_empty());
    // The directory still has it: nothing changes.
    let same = vec![KeyValue {
        key: "/p/members/a".into(),
        value: vec![1],
        mod_revision: 3,
    }];
    assert!(sm.apply_snapshot(5, same).is_empty());
    assert_eq!(sm.next_step(), Step::Watch { from: 6 });
}

/// The stop-24 CI failure: after an outage a member resumed its watch, etcd's creation response
/// carried the current revision, and taking it as progress dropped the catch-up events (another
/// member's new registration) as duplicates.
#[test]
fn the_creation_response_of_a_resumed_watch_is_not_progress() {
    let mut store = Store::default();
    let mut sm = WatchState::new();
    store.txn(&[(1, Some(1)), (2, Some(1))]);
    step(&store, &mut sm, 10, false);
    // While the member is away, k2 is deleted (its lease expired) and written again.
    store.txn(&[(2, None)]);
    store.txn(&[(2, Some(2))]);
    let Step::Watch { from } = sm.next_step() else {
        panic!("synced");
    };
    assert!(sm.on_response(true, Some(store.rev), Vec::new()).is_empty());
    assert_eq!(sm.revision(), from - 1, "the creation moved the revision");
    let changes = sm.on_response(false, Some(store.rev), store.watch(from).unwrap());
    assert_eq!(
        changes,
        vec![
            KeyChange::Removed {
                key: "/p/members/k2".into()
            },
            KeyChange::Set {
                key: "/p/members/k2".into(),
                value: vec![2]
            },
        ]
    );
    assert_eq!(sm.revision(), store.rev);
    // A progress notification (not a creation) does move it.
    store.txn(&[(9, Some(1))]);
    store.history.clear();
    assert!(sm
        .on_response(false, Some(store.rev), Vec::new())
        .is_empty());
    assert_eq!(sm.revision(), store.rev);
}

#[test]
fn a_key_that_is_not_utf8_keeps_its_revision() {
    // etcd keys are bytes. A response whose only event has a key that is not UTF-8 must move
    // the revision by that event, not count as a progress notification (the header may be
    // ahead of events still to come).
    let mut sm = WatchState::new();
    assert!(sm.apply_snapshot(5, Vec::new()).is_empty());
    let key = key_from_raw(b"/p/members/k\xff");
    assert_eq!(key, "/p/members/k\u{fffd}");
    let changes = sm.on_response(
        false,
        Some(9),
        vec![WatchEvent::Put(KeyValue {
            key: key.clone(),
            value: vec![1],
            mod_revision: 6,
        })],
    );
    assert_eq!(
        changes,
        vec![KeyChange::Set {
            key,
            value: vec![1]
        }]
    );
    assert_eq!(
        sm.revision(),
        6,
        "the header's revision was taken as progress"
    );
    // The event at revision 7, still to come, is applied, not dropped as a duplicate.
    let later = sm.on_response(
        false,
        Some(9),
        vec![WatchEvent::Put(KeyValue {
            key: "/p/members/k2".into(),
            value: vec![2],
            mod_revision: 7,
        })],
    );
    assert_eq!(later.len(), 1);
    assert_eq!(sm.revision(), 7);
}
