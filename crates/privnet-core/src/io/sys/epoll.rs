//! A level-triggered `epoll` set for the driver's per-peer receive sockets (`lanes.rs`): the set
//! is itself a descriptor, readable while any member is, so the runtime (and the batch hold's
//! `ppoll`) waits on one descriptor for all of them, and a zero-timeout wait lists the ready ones
//! in O(ready), not O(members).

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use super::cvt;

/// Most ready members one [`Epoll::ready`] call reports (the rest stay ready for the next).
pub const MAX_EVENTS: usize = 256;

/// An owned epoll descriptor (closed on drop).
#[derive(Debug)]
pub struct Epoll(OwnedFd);

impl Epoll {
    /// A new, empty set (close-on-exec).
    ///
    /// # Errors
    /// The kernel refusing a new descriptor (`EMFILE`, `ENOMEM`).
    pub fn new() -> io::Result<Self> {
        // SAFETY: epoll_create1 takes no pointers; a non-negative return is a new descriptor that
        // nothing else owns, so `OwnedFd` may take it.
        let fd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: as above: `fd` is open and owned by no one else.
        Ok(Self(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Watch `fd` for input, reported with `token`. The caller keeps `fd` open while it is a
    /// member (closing it removes it from the set).
    ///
    /// # Errors
    /// `fd` already a member, not pollable, or the kernel out of memory.
    pub fn add(&self, fd: RawFd, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: both descriptors are open for the call; `ev` is a live, initialised event the
        // kernel only reads.
        cvt(unsafe { libc::epoll_ctl(self.0.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) })
            .map(|_| ())
    }

    /// Stop watching `fd`.
    ///
    /// # Errors
    /// `fd` not a member.
    pub fn delete(&self, fd: RawFd) -> io::Result<()> {
        let mut ev = libc::epoll_event { events: 0, u64: 0 };
        // SAFETY: as in `add`; the event is ignored by EPOLL_CTL_DEL (non-null for old kernels).
        cvt(unsafe { libc::epoll_ctl(self.0.as_raw_fd(), libc::EPOLL_CTL_DEL, fd, &mut ev) })
            .map(|_| ())
    }

    /// The tokens of the members readable now (or in error), without waiting: at most
    /// [`MAX_EVENTS`] are appended to `out`. Returns how many; `WouldBlock` when none is, so that
    /// a caller under the runtime's `try_io` clears the set's readiness.
    ///
    /// # Errors
    /// `WouldBlock` as said; anything else from `epoll_wait` (an interrupted wait reads as none).
    pub fn ready(&self, out: &mut Vec<u64>) -> io::Result<usize> {
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; MAX_EVENTS];
        // SAFETY: `events` is a live array of exactly MAX_EVENTS entries the kernel may write; a
        // zero timeout never blocks.
        let r = unsafe {
            libc::epoll_wait(
                self.0.as_raw_fd(),
                events.as_mut_ptr(),
                MAX_EVENTS as libc::c_int,
                0,
            )
        };
        let n = match cvt(r) {
            Ok(n) => usize::try_from(n).unwrap_or(0),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => 0,
            Err(e) => return Err(e),
        };
        if n == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        out.extend(events.iter().take(n).map(|e| e.u64));
        Ok(n)
    }
}

impl Epoll {
    /// Register the set with the current tokio runtime (readable interest): the runtime wakes
    /// the task when any member turns readable. Must be called in a runtime.
    ///
    /// # Errors
    /// The runtime refusing the registration.
    pub fn register(self) -> io::Result<tokio::io::unix::AsyncFd<Self>> {
        // SAFETY: the `AsyncFd` takes ownership of the `Epoll`, whose `OwnedFd` stays open and
        // refers to the same epoll instance until the `AsyncFd` is dropped, and `as_raw_fd`
        // always returns that same descriptor.
        unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(self, tokio::io::Interest::READABLE)
        }
        .map_err(io::Error::from)
    }
}

impl AsFd for Epoll {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl AsRawFd for Epoll {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_set_lists_exactly_its_readable_members() {
        let ok = |r: io::Result<std::net::UdpSocket>| r.unwrap_or_else(|e| panic!("{e}"));
        let a = ok(std::net::UdpSocket::bind("127.0.0.1:0"));
        let b = ok(std::net::UdpSocket::bind("127.0.0.1:0"));
        let set = Epoll::new().unwrap_or_else(|e| panic!("{e}"));
        assert!(set.add(a.as_raw_fd(), 7).is_ok());
        assert!(set.add(b.as_raw_fd(), 9).is_ok());
        assert!(set.add(b.as_raw_fd(), 9).is_err(), "a member twice");
        let mut out = Vec::new();
        let none = set.ready(&mut out);
        assert!(matches!(none, Err(ref e) if e.kind() == io::ErrorKind::WouldBlock));
        let sender = ok(std::net::UdpSocket::bind("127.0.0.1:0"));
        let to = b.local_addr().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(sender.send_to(b"x", to).ok(), Some(1));
        // Loopback delivers synchronously: the datagram is queued when send_to returns.
        assert_eq!(set.ready(&mut out).ok(), Some(1));
        assert_eq!(out, vec![9]);
        // Level-triggered: still listed until read.
        out.clear();
        assert_eq!(set.ready(&mut out).ok(), Some(1));
        let mut buf = [0u8; 8];
        assert_eq!(b.recv(&mut buf).ok(), Some(1));
        out.clear();
        assert!(set.ready(&mut out).is_err());
        assert!(set.delete(a.as_raw_fd()).is_ok());
        assert!(set.delete(a.as_raw_fd()).is_err(), "no longer a member");
    }
}
