//! A crew of helper threads that run parts of a batch which borrow the caller's buffers, with
//! *help-first* claiming: the caller never waits for a helper that has not started.
//!
//! [`Crew::run`] offers parts `1..n` to the helpers, runs part 0 itself, then takes back every
//! part no helper has claimed yet and runs it too; it waits only for parts a helper is running.
//! A helper that was asleep when its part was offered (a wake-up across cores costs tens of
//! microseconds in a VM) finds it taken and goes back to waiting, so a batch never costs more
//! than the caller doing it all alone plus a few atomic operations. Helpers spin for
//! [`SPIN`] after their last part (so the parts of back-to-back batches are claimed at once),
//! then park. This is why it is not rayon: a rayon scope waits for every job it spawned, started
//! or not, which made two threads 2.4× slower than one in `privnet-bench workers`.
//!
//! The only `unsafe` here gives a helper a pointer to a closure on the caller's stack; the
//! protocol of [`Hand::state`] guarantees the closure outlives every use (see the SAFETY
//! comments).

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a helper spins for the next part before it parks.
pub const SPIN: Duration = Duration::from_micros(50);

/// No part offered (or the last one is finished and collected).
const IDLE: u8 = 0;
/// A part is offered: the helper or the caller may claim it.
const OFFERED: u8 = 1;
/// The helper claimed the part and runs it.
const RUNNING: u8 = 2;
/// The helper finished the part.
const DONE: u8 = 3;

/// The work of one batch: called with the index of a part.
type Work<'a> = dyn Fn(usize) + Sync + 'a;

/// The part offered to one helper: the batch's work (a pointer to the caller's closure, its
/// lifetime erased) and the part's index.
#[derive(Clone, Copy)]
struct Offer {
    work: *const Work<'static>,
    index: usize,
}

/// One helper's mailbox.
struct Hand {
    /// IDLE → OFFERED (caller) → RUNNING (helper) → DONE (helper) → IDLE (caller); or
    /// OFFERED → IDLE when the caller takes the part back.
    state: AtomicU8,
    /// Written by the caller only while `state` is IDLE; read by the helper only after it moved
    /// `state` from OFFERED to RUNNING.
    offer: UnsafeCell<Option<Offer>>,
    parked: AtomicBool,
    stop: AtomicBool,
}

// SAFETY: `offer` is accessed under the protocol of `state` (one writer while IDLE, one reader
// while RUNNING, with Release/Acquire edges between them), and the closure it points to is `Sync`.
unsafe impl Sync for Hand {}
// SAFETY: as above; the raw pointer is only dereferenced under that protocol.
unsafe impl Send for Hand {}

/// The helper threads of one driver. `Send` (it moves with its driver) but not `Sync`: one
/// thread at a time calls [`Crew::run`], which the protocol of [`Hand::state`] relies on.
pub struct Crew {
    hands: Vec<(Arc<Hand>, Option<JoinHandle<()>>)>,
    _not_sync: std::marker::PhantomData<std::cell::Cell<()>>,
}

impl Crew {
    /// `helpers` threads named `{name}-{i}`.
    ///
    /// # Errors
    /// The OS error if a thread cannot be started.
    pub fn new(helpers: usize, name: &str) -> std::io::Result<Self> {
        let mut hands = Vec::with_capacity(helpers);
        for i in 0..helpers {
            let hand = Arc::new(Hand {
                state: AtomicU8::new(IDLE),
                offer: UnsafeCell::new(None),
                parked: AtomicBool::new(false),
                stop: AtomicBool::new(false),
            });
            let h = Arc::clone(&hand);
            let thread = std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || helper(&h))?;
            hands.push((hand, Some(thread)));
        }
        Ok(Self {
            hands,
            _not_sync: std::marker::PhantomData,
        })
    }

    /// Helper threads.
    pub fn helpers(&self) -> usize {
        self.hands.len()
    }

    /// Run `work(i)` for every `i` in `0..parts` (at most one more than the helpers) and return
    /// when all have run: part 0 on this thread, the others offered to the helpers and run here
    /// too if no helper has claimed them by the time this thread is free. Returns how many parts
    /// helpers ran.
    pub fn run(&self, parts: usize, work: &(dyn Fn(usize) + Sync)) -> usize {
        let offered = parts.saturating_sub(1).min(self.hands.len());
        // SAFETY: only the lifetime is erased. The pointer is stored in the hands below and
        // dereferenced by a helper only between its OFFERED → RUNNING and its DONE store; this
        // function returns only after every hand it offered to is back to IDLE (taken back by
        // us, or DONE and collected), so `work` outlives every use.
        let erased: *const Work<'static> =
            unsafe { std::mem::transmute::<*const Work<'_>, *const Work<'static>>(work) };
        for (k, (hand, thread)) in self.hands.iter().take(offered).enumerate() {
            // SAFETY: the state is IDLE (every earlier `run` collected its hands before it
            // returned, and `Crew` is not `Sync`, so no other thread is in `run`), so no
            // helper reads `offer` now.
            unsafe {
                *hand.offer.get() = Some(Offer {
                    work: erased,
                    index: k + 1,
                });
            }
            hand.state.store(OFFERED, Ordering::SeqCst);
            if hand.parked.load(Ordering::SeqCst) {
                if let Some(t) = thread {
                    t.thread().unpark();
                }
            }
        }
        // A panic in a part must not end this call before every helper let go of `work`: it
        // is caught, the hands are collected, then it goes on.
        let mut panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(0))).err();
        let mut helped = 0;
        for (k, (hand, _)) in self.hands.iter().take(offered).enumerate() {
            if hand
                .state
                .compare_exchange(OFFERED, IDLE, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                // Not claimed: ours. The helper will find IDLE and not look at the offer.
                if panic.is_none() {
                    panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(k + 1)))
                        .err();
                }
                continue;
            }
            // Claimed: the helper is running it (a part the size of ours) or has finished.
            let mut spins = 0u32;
            while hand.state.load(Ordering::Acquire) != DONE {
                spins = spins.saturating_add(1);
                if spins < 10_000 {
                    std::hint::spin_loop();
                } else {
                    std::thread::yield_now();
                }
            }
            hand.state.store(IDLE, Ordering::Release);
            helped += 1;
        }
        if let Some(p) = panic {
            std::panic::resume_unwind(p);
        }
        helped
    }
}

impl Drop for Crew {
    fn drop(&mut self) {
        for (hand, thread) in &mut self.hands {
            hand.stop.store(true, Ordering::SeqCst);
            if let Some(t) = thread.take() {
                t.thread().unpark();
                let _ = t.join();
            }
        }
    }
}

/// A helper's loop: wait for an offer (spinning for [`SPIN`] after the last part, then parked),
/// claim it, run it, report it done.
fn helper(hand: &Hand) {
    let mut last = Instant::now();
    loop {
        if hand.stop.load(Ordering::Acquire) {
            return;
        }
        if hand.state.load(Ordering::Acquire) != OFFERED {
            if last.elapsed() < SPIN {
                std::hint::spin_loop();
                continue;
            }
            hand.parked.store(true, Ordering::SeqCst);
            // Re-check after announcing the park: an offer made before `parked` was visible
            // did not unpark us.
            if hand.state.load(Ordering::SeqCst) != OFFERED && !hand.stop.load(Ordering::SeqCst) {
                std::thread::park();
            }
            hand.parked.store(false, Ordering::SeqCst);
            last = Instant::now();
            continue;
        }
        if hand
            .state
            .compare_exchange(OFFERED, RUNNING, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            continue; // taken back by the caller
        }
        // SAFETY: we moved the state from OFFERED to RUNNING, so the caller wrote this offer
        // before its OFFERED store (Release; our CAS is Acquire) and will not return from `run`
        // (the closure stays alive) until it sees our DONE.
        let offer = unsafe { *hand.offer.get() };
        if let Some(o) = offer {
            // SAFETY: see above: the closure is alive and `Sync`.
            let work = unsafe { &*o.work };
            // A panic in a part must not leave the caller waiting for ever.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(o.index)));
        }
        hand.state.store(DONE, Ordering::Release);
        last = Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn every_part_runs_exactly_once_whoever_takes_it() {
        let crew = Crew::new(3, "test-crew").unwrap();
        assert_eq!(crew.helpers(), 3);
        for round in 0..2000usize {
            let parts = 1 + round % 4;
            let counts: Vec<AtomicUsize> = (0..4).map(|_| AtomicUsize::new(0)).collect();
            let helped = crew.run(parts, &|i| {
                counts[i].fetch_add(1, Ordering::SeqCst);
            });
            assert!(helped < parts.max(1));
            for (i, c) in counts.iter().enumerate() {
                let want = usize::from(i < parts);
                assert_eq!(c.load(Ordering::SeqCst), want, "round {round} part {i}");
            }
            if round % 500 == 0 {
                // Let the helpers park, so that offers to parked helpers are covered too.
                std::thread::sleep(SPIN * 4);
            }
        }
    }

    #[test]
    fn parts_borrow_the_callers_buffer_disjointly() {
        let crew = Crew::new(1, "test-crew").unwrap();
        let mut buf = vec![0u8; 1000];
        for pass in 1..=50u8 {
            let (a, b) = buf.split_at_mut(500);
            let halves = [std::sync::Mutex::new(a), std::sync::Mutex::new(b)];
            let _ = crew.run(2, &|i| {
                for x in halves[i].lock().unwrap().iter_mut() {
                    *x = pass;
                }
            });
            assert!(buf.iter().all(|&x| x == pass));
        }
    }

    #[test]
    fn a_panicking_part_does_not_hang_the_caller() {
        let crew = Crew::new(1, "test-crew").unwrap();
        let ran = AtomicUsize::new(0);
        // Whoever runs part 1 panics; if it is this thread, the panic propagates here.
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = crew.run(2, &|i| {
                ran.fetch_add(1, Ordering::SeqCst);
                assert!(i != 1, "part 1 fails");
            });
        }));
        let _ = r;
        assert!(ran.load(Ordering::SeqCst) >= 1);
        // The crew still works afterwards.
        let n = AtomicUsize::new(0);
        let _ = crew.run(2, &|_| {
            n.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(n.load(Ordering::SeqCst), 2);
    }
}
