//! What the driver's inner side and the application's sockets share: the stack behind one lock,
//! the driver's wake-up, the clock and the directory of names. A leaf of `embedded`.
//!
//! The lock is taken once per batch by the driver (not per packet) and once per call by a socket
//! (a read or write copies straight between the caller's buffer and smoltcp's); it is never held
//! across an `.await`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Instant;

use tokio::sync::Notify;

use std::net::SocketAddr;

use super::error::NetError;
use super::names::{Directory, Target};
use crate::io::clock::Clock;
use crate::stack::Stack;

/// The state behind the lock.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) stack: Stack,
}

/// Shared by the inner side and every socket of one embedded node.
#[derive(Debug)]
pub(crate) struct Shared {
    state: Mutex<State>,
    /// Wakes the driver's inner side: a socket queued data, read enough to open its window,
    /// opened or closed a connection.
    pub(crate) driver: Notify,
    stopped: AtomicBool,
    clock: Clock,
    names: RwLock<Directory>,
}

impl Shared {
    pub(crate) fn new(stack: Stack, clock: Clock) -> Self {
        Self {
            state: Mutex::new(State { stack }),
            driver: Notify::new(),
            stopped: AtomicBool::new(false),
            clock,
            names: RwLock::new(Directory::default()),
        }
    }

    /// The stack (a panic elsewhere while it was held does not make it unusable: the stack's
    /// state stays consistent between calls).
    #[inline]
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Tell the driver the stack has work.
    #[inline]
    pub(crate) fn kick(&self) {
        self.driver.notify_one();
    }

    /// The core's `now` (the driver's clock).
    #[inline]
    pub(crate) fn now(&self) -> Instant {
        self.clock.now()
    }

    /// Whether the driver has stopped (every socket operation then fails).
    #[inline]
    pub(crate) fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    pub(crate) fn set_stopped(&self) {
        self.stopped.store(true, Ordering::Release);
    }

    pub(crate) fn names(&self) -> RwLockReadGuard<'_, Directory> {
        self.names.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Where `target` is, and the name it was given by (to check against the certificate of
    /// whoever answers).
    ///
    /// # Errors
    /// [`NetError::UnknownName`].
    pub(crate) fn resolve(
        &self,
        target: &Target,
    ) -> Result<(SocketAddr, Option<String>), NetError> {
        match target {
            Target::Addr(a) => Ok((*a, None)),
            Target::Name(name, port) => {
                let prefer_v4 = self.lock().stack.addresses().0.is_some();
                let ip = self
                    .names()
                    .lookup(name, prefer_v4)
                    .ok_or_else(|| NetError::UnknownName(name.clone()))?;
                Ok((SocketAddr::new(ip, *port), Some(name.clone())))
            }
        }
    }

    pub(crate) fn names_mut(&self) -> RwLockWriteGuard<'_, Directory> {
        self.names.write().unwrap_or_else(PoisonError::into_inner)
    }
}
