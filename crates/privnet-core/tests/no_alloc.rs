//! The data path allocates nothing: sealing, opening, and dropping junk, once a session exists.
//! Checked with a counting global allocator (counts only on this test's thread while armed).
// A test: it reads the real clock or opens sockets (see clippy.toml).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]
#![allow(unsafe_code)] // a counting global allocator needs `unsafe impl GlobalAlloc`

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use privnet_core::testing::{ipv4_udp, TestNetwork};
use privnet_core::{Decapsulated, DropReason, Encapsulated, Node};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
}

// SAFETY: delegates to the system allocator unchanged; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if ARMED.with(|a| a.get()) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if ARMED.with(|a| a.get()) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn counted<R>(f: impl FnOnce() -> R) -> (R, u64) {
    let before = ALLOCS.load(Ordering::Relaxed);
    ARMED.with(|a| a.set(true));
    let r = f();
    ARMED.with(|a| a.set(false));
    (r, ALLOCS.load(Ordering::Relaxed) - before)
}

fn shuttle(from: &mut Node, addr: std::net::SocketAddr, to: &mut Node, now: Instant) {
    let mut buf = vec![0u8; 2048];
    let mut out = vec![0u8; 2048];
    while let Some(t) = from.poll_transmit(&mut buf, now) {
        let _ = to.decapsulate(addr, &buf[..t.len], &mut out, now);
    }
}

#[test]
fn seal_open_and_junk_drop_do_not_allocate() {
    let net = TestNetwork::new(2, 50);
    let now = Instant::now();
    let mut a = net.node(0, net.config(0, 1), now, net.unix_start);
    let mut b = net.node(1, net.config(1, 1), now, net.unix_start);
    for _ in 0..3 {
        shuttle(&mut a, net.underlay[0], &mut b, now);
        shuttle(&mut b, net.underlay[1], &mut a, now);
    }
    let packet = ipv4_udp(net.overlay[0], net.overlay[1], &[7u8; 1392]);
    let mut sealed = vec![0u8; 2048];
    let mut opened = vec![0u8; 2048];
    // Warm up (timers armed, queues sized).
    for _ in 0..10 {
        let Ok(Encapsulated::Send(t)) = a.encapsulate(&packet, &mut sealed, now) else {
            panic!("no session")
        };
        let r = b.decapsulate(net.underlay[0], &sealed[..t.len], &mut opened, now);
        assert!(matches!(r, Ok(Decapsulated::Packet { .. })));
    }
    let ((), n) = counted(|| {
        for _ in 0..10_000 {
            let Ok(Encapsulated::Send(t)) = a.encapsulate(&packet, &mut sealed, now) else {
                panic!("no session")
            };
            let r = b.decapsulate(net.underlay[0], &sealed[..t.len], &mut opened, now);
            assert!(matches!(r, Ok(Decapsulated::Packet { .. })));
        }
    });
    assert_eq!(n, 0, "seal + open allocated {n} times");

    let mut junk = vec![0u8; 1452];
    junk[..4].copy_from_slice(&[4, 1, 0, 0]);
    let mut init = vec![0u8; 300];
    init[..4].copy_from_slice(&[1, 1, 0, 0]);
    let ((), n) = counted(|| {
        for i in 0..10_000u32 {
            junk[4..8].copy_from_slice(&i.wrapping_mul(2_654_435_761).to_le_bytes());
            let r = b.decapsulate(net.underlay[0], &junk, &mut opened, now);
            assert!(matches!(
                r.map_err(|e| e.reason()),
                Err(DropReason::UnknownIndex | DropReason::BadTag)
            ));
        }
        for len in 0..64 {
            let _ = b.decapsulate(net.underlay[0], &junk[..len], &mut opened, now);
        }
        for _ in 0..100 {
            assert_eq!(
                b.decapsulate(net.underlay[0], &init, &mut opened, now)
                    .map_err(|e| e.reason()),
                Err(DropReason::BadMac1)
            );
        }
    });
    assert_eq!(n, 0, "dropping junk allocated {n} times");
}
