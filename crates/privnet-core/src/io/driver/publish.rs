//! The driver's snapshots: the node's state, the loop's counters and the fairness stage's drops,
//! published to the handles once a second.

use std::collections::HashMap;
use std::sync::Arc;

use super::super::config::unix_now;
use super::super::inner::InnerSide;
use super::super::snapshot::DriverFigures;
use super::Driver;

impl<I: InnerSide> Driver<I> {
    /// Build a snapshot and publish it to the handles.
    pub(super) fn publish(&mut self) {
        let now = self.clock.now();
        let mut events: HashMap<String, u64> = HashMap::new();
        let mut add = |k: &'static str, v: u64| {
            events.insert(k.to_owned(), v);
        };
        self.counters.report(&mut add);
        self.inner.report(&mut add);
        let busy = self.busy.stats();
        let hold = self.hold.stats();
        for (k, v) in [
            ("busy_poll_windows", busy.windows),
            ("busy_poll_hits", busy.hits),
            ("busy_poll_over_budget", busy.over_budget),
            ("batch_holds", hold.holds),
            ("batch_hold_hits", hold.hits),
            ("batch_hold_misses", hold.misses),
            ("batch_hold_socket", hold.socket),
        ] {
            if v > 0 {
                add(k, v);
            }
        }
        let fair_total = self.fair.total_drops();
        let tx_total = self.fair_tx.total_drops();
        for (k, v) in [
            ("fair_dropped", fair_total.packets),
            ("fair_dropped_bytes", fair_total.bytes),
            ("fair_policed_batches", self.fair.policed_batches()),
            ("fair_tx_dropped", tx_total.packets),
            ("fair_tx_dropped_bytes", tx_total.bytes),
            ("fair_tx_policed_batches", self.fair_tx.policed_batches()),
        ] {
            if v > 0 {
                events.insert(k.to_owned(), v);
            }
        }
        let fair = self
            .fair
            .all_drops()
            .filter_map(|(id, d)| {
                let (key, _) = self.node.peer_label(id?)?;
                Some((key, (d.packets, d.bytes)))
            })
            .collect();
        let fair_tx = self
            .fair_tx
            .all_drops()
            .filter_map(|(id, d)| {
                let (key, _) = self.node.peer_label(id?)?;
                Some((key, (d.packets, d.bytes)))
            })
            .collect();
        let figures = DriverFigures {
            events,
            busy_poll_us: u64::try_from(busy.spun.as_micros()).unwrap_or(u64::MAX),
            fair,
            fair_tx,
        };
        let snap = self
            .publisher
            .snapshot(&self.node, now, unix_now().as_secs(), figures);
        self.ends.snapshots.send_replace(Arc::new(snap));
    }
}
