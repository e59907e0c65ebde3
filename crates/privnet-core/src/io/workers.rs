//! The crypto workers (`DriverConfig::workers`, `[tun] workers`): the opt-in multi-core data path.
//!
//! The node's state machine stays on the driver's task: one thread decides, in order, everything a
//! packet changes (routes, policy, counters, the replay window, timers). Only the AEAD, the part
//! that costs, is split off: the node hands out a [`SealJob`] per sealed packet (the counter and
//! header already spent and written) and an [`OpenJob`] per received data message that passed
//! the checks before decryption (nothing committed). The jobs of one batch are cut into chunks of
//! [`CHUNK`]; the driver's thread and the helper threads take chunks from one cursor until none is
//! left, and the batch goes on only when every chunk is done. So nothing is reordered: datagrams
//! leave in the order they were sealed, decrypted packets are handled and delivered in the order
//! they arrived. This is wireguard-go's split (parallel encryption, in-order hand-off) without its
//! per-packet queues; it also sidesteps the reordering that per-flow steering needs a hash to
//! avoid.
//!
//! A batch of fewer than [`MIN_SPLIT`] jobs or [`MIN_SPLIT_BYTES`] runs on the driver's thread
//! alone: handing it out costs more than sealing it. The driver never waits for a helper that has
//! not started (`sys/crew.rs`: it takes the work back), so a batch costs at most what it costs on
//! one thread, plus a few atomic operations.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::session::{OpenJob, Opened, SealJob};
use crate::wire::{DATA_HEADER_LEN, TAG_LEN};

use super::config::MAX_WORKERS;
use super::error::DriverError;
use super::sys::crew::Crew;

/// Fewest jobs in a batch for it to be split between threads.
pub(crate) const MIN_SPLIT: usize = 8;
/// Jobs per chunk of a split batch (the unit the threads take in turn).
pub(crate) const CHUNK: usize = 8;
/// Fewest bytes of plaintext in a batch for it to be split: below, handing the data to another
/// core (its cache lines travel there and back) costs more than the encryption it saves
/// (`privnet-bench workers`: 64-byte packets were 15-20 % slower when split).
pub(crate) const MIN_SPLIT_BYTES: usize = 16 * 1024;

/// What one batch's crypto did: whether it was split, and how many parts helper threads ran (the
/// rest were taken back by the driver's thread, the helpers being busy or asleep).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Split {
    pub(crate) split: bool,
    pub(crate) helped: usize,
}

/// The crew of a driver's crypto workers (`sys/crew.rs`); `None` with one worker (everything on
/// the driver's thread, as without this module).
#[derive(Default)]
pub(crate) struct Workers {
    crew: Option<Crew>,
}

impl Workers {
    /// `n` threads in all: the driver's and `n − 1` helpers named `privnet-crypto-<i>`.
    ///
    /// # Errors
    /// [`DriverError::Workers`] if the threads cannot be started.
    pub(crate) fn new(n: usize) -> Result<Self, DriverError> {
        let n = n.clamp(1, MAX_WORKERS);
        if n == 1 {
            return Ok(Self { crew: None });
        }
        let crew =
            Crew::new(n - 1, "privnet-crypto").map_err(|e| DriverError::Workers(e.to_string()))?;
        Ok(Self { crew: Some(crew) })
    }

    /// Threads in all.
    pub(crate) fn count(&self) -> usize {
        1 + self.crew.as_ref().map_or(0, Crew::helpers)
    }

    /// Whether jobs are made at all (more than one thread).
    pub(crate) fn enabled(&self) -> bool {
        self.crew.is_some()
    }

    /// Run `work` on every one of `parts` (contiguous chunks of a batch): this thread and the
    /// helpers take chunks in turn from a shared cursor until none is left, so a thread that is
    /// late or slower (a helper still waking, data in the other core's cache) simply takes fewer,
    /// and no thread waits for more than one chunk at the end. Returns when all are done. Without
    /// a crew (or with one part), in turn on this thread.
    fn run<P: Send>(&self, parts: Vec<P>, work: impl Fn(P) + Sync) -> Split {
        match &self.crew {
            Some(crew) if parts.len() > 1 => {
                let n = parts.len();
                // Each chunk is taken once, by whoever draws its index (a lock per chunk and
                // batch, never contended: the cursor hands every index out once).
                let slots: Vec<Mutex<Option<P>>> =
                    parts.into_iter().map(|p| Mutex::new(Some(p))).collect();
                let cursor = AtomicUsize::new(0);
                let helped = AtomicUsize::new(0);
                let threads = self.count().min(n);
                let _ = crew.run(threads, &|me| loop {
                    let i = cursor.fetch_add(1, Ordering::Relaxed);
                    let Some(slot) = slots.get(i) else {
                        break;
                    };
                    if let Some(p) = slot.lock().ok().and_then(|mut g| g.take()) {
                        work(p);
                        if me != 0 {
                            helped.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
                Split {
                    split: true,
                    helped: helped.into_inner(),
                }
            }
            _ => {
                parts.into_iter().for_each(work);
                Split::default()
            }
        }
    }

    /// How many chunks a batch of `jobs` with `bytes` of plaintext in all is cut into: one if it
    /// is too small to split, else chunks of [`CHUNK`] jobs (at least two).
    fn parts_for(&self, jobs: usize, bytes: usize) -> usize {
        if !self.enabled() || jobs < MIN_SPLIT || bytes < MIN_SPLIT_BYTES {
            1
        } else {
            jobs.div_ceil(CHUNK).max(2)
        }
    }

    /// Seal the staged jobs: each encrypts `plain[plain_at..plain_at + len]` into `buf[at..]`
    /// (`at`: the message after its header) and records in its `ok` whether it could.
    pub(crate) fn seal(&self, jobs: &mut [StagedSeal], buf: &mut [u8], plain: &[u8]) -> Split {
        let parts = self.parts_for(jobs.len(), plain.len());
        if parts <= 1 {
            for j in jobs.iter_mut() {
                j.run(buf, 0, plain);
            }
            return Split::default();
        }
        // Contiguous parts of the jobs, and of `buf` from each part's first body on: the jobs'
        // bodies lie in `buf` in increasing order, so the parts' regions are disjoint.
        let per = jobs.len().div_ceil(parts);
        let mut cut: Vec<(&mut [StagedSeal], &mut [u8], usize)> = Vec::with_capacity(parts);
        let mut jobs_rest = jobs;
        let mut buf_rest = buf;
        let mut base = 0;
        while !jobs_rest.is_empty() {
            let take = per.min(jobs_rest.len());
            let (mine, later) = std::mem::take(&mut jobs_rest).split_at_mut(take);
            jobs_rest = later;
            let end = jobs_rest.first().map_or(base + buf_rest.len(), |j| j.at);
            let (region, after) = std::mem::take(&mut buf_rest).split_at_mut(end - base);
            cut.push((mine, region, base));
            buf_rest = after;
            base = end;
        }
        self.run(cut, |(mine, region, base)| {
            for j in mine.iter_mut() {
                j.run(region, base, plain);
            }
        })
    }

    /// Decrypt the received datagrams ahead: slot `i` of `slots` belongs to `bytes`' `i`-th
    /// `seg`-byte datagram and `out`'s `i`-th `seg`-byte region, where its plaintext goes.
    pub(crate) fn open(
        &self,
        slots: &mut [Slot],
        bytes: &[u8],
        seg: usize,
        out: &mut [u8],
    ) -> Split {
        let parts = self.parts_for(slots.len(), bytes.len());
        let per = slots.len().div_ceil(parts).max(1);
        let mut cut = Vec::with_capacity(parts);
        let mut first = 0;
        for (mine, region) in slots.chunks_mut(per).zip(out.chunks_mut(per * seg)) {
            cut.push((mine, region, first));
            first += per;
        }
        self.run(cut, |(mine, region, first)| {
            for (k, (slot, out)) in mine.iter_mut().zip(region.chunks_mut(seg)).enumerate() {
                let start = (first + k) * seg;
                let end = (start + seg).min(bytes.len());
                if let Some(d) = bytes.get(start..end) {
                    slot.open(d, out);
                }
            }
        })
    }
}

/// A seal left for later in the send stage: the job, where its message goes in the stage's
/// buffer (`at`, after the header) and where its plaintext waits (`plain_at`, `len` bytes).
pub(crate) struct StagedSeal {
    pub(crate) job: SealJob,
    pub(crate) at: usize,
    pub(crate) plain_at: usize,
    pub(crate) len: usize,
    pub(crate) ok: bool,
}

impl StagedSeal {
    /// Seal into `region`, which starts at offset `base` of the stage's buffer.
    fn run(&mut self, region: &mut [u8], base: usize, plain: &[u8]) {
        let out = self
            .at
            .checked_sub(base)
            .and_then(|o| region.get_mut(o..o + self.len + TAG_LEN));
        let pt = plain.get(self.plain_at..self.plain_at + self.len);
        self.ok = match (pt, out) {
            (Some(pt), Some(out)) => self.job.seal(pt, out),
            _ => false,
        };
    }
}

/// One received datagram of a batch decrypted ahead: what the driver decided for it before the
/// crypto, then what the crypto gave.
#[derive(Default)]
pub(crate) enum Slot {
    /// Refused before decryption (the fairness gate): not handed to the node.
    #[default]
    Skip,
    /// Not decrypted ahead: the node judges it as usual ([`crate::Node::decapsulate`]).
    Plain,
    /// To decrypt ahead.
    Open(OpenJob),
    /// Decrypted ahead; its plaintext is in its region of the batch's buffer.
    Opened(Opened),
}

impl Slot {
    fn open(&mut self, datagram: &[u8], out: &mut [u8]) {
        if let Slot::Open(_) = self {
            if let Slot::Open(job) = std::mem::take(self) {
                let ct = datagram.get(DATA_HEADER_LEN..).unwrap_or_default();
                *self = Slot::Opened(job.open(ct, out));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_worker_has_no_pool_and_more_are_clamped() {
        let one = Workers::new(1).unwrap();
        assert!(!one.enabled());
        assert_eq!(one.count(), 1);
        assert_eq!(Workers::new(0).unwrap().count(), 1);
        assert_eq!(Workers::default().count(), 1);
        let two = Workers::new(2).unwrap();
        assert!(two.enabled());
        assert_eq!(two.count(), 2);
        assert_eq!(two.parts_for(MIN_SPLIT - 1, 1 << 20), 1);
        assert_eq!(two.parts_for(MIN_SPLIT, MIN_SPLIT_BYTES - 1), 1);
        assert_eq!(two.parts_for(MIN_SPLIT, MIN_SPLIT_BYTES), 2);
        assert_eq!(two.parts_for(128, 1 << 20), 128 / CHUNK);
        assert_eq!(one.parts_for(128, 1 << 20), 1);
        assert_eq!(Workers::new(1000).unwrap().count(), MAX_WORKERS);
    }

    #[test]
    fn every_part_runs_once_and_the_call_waits_for_all() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let w = Workers::new(3).unwrap();
        let done = AtomicUsize::new(0);
        let threads = Mutex::new(std::collections::HashSet::new());
        let _ = w.run((0..3).collect(), |i: usize| {
            threads.lock().unwrap().insert(std::thread::current().id());
            done.fetch_add(1 << (i * 8), Ordering::SeqCst);
        });
        assert_eq!(done.load(Ordering::SeqCst), 0x01_01_01);
        // The first part ran on the calling thread.
        assert!(threads
            .lock()
            .unwrap()
            .contains(&std::thread::current().id()));
    }
}
