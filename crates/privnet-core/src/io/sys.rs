//! Low-level Linux OS interfaces used by the driver: the TUN device, rtnetlink configuration,
//! network-namespace entry and batched UDP with segmentation offload.
//!
//! This is the only place in privnet allowed to use `unsafe` (style rule 21; the crate root denies
//! it): raw `libc` calls for the few ioctls and sockets that no small maintained crate covers with
//! the flags we need, and the crypto workers' thread crew (`crew.rs`), which lends a closure on
//! the caller's stack to helper threads. Every `unsafe` block carries a `// SAFETY:` comment.
#![allow(unsafe_code)]

pub mod crew;
#[cfg(target_os = "linux")]
pub mod epoll;
#[cfg(target_os = "linux")]
pub mod ifname;
#[cfg(target_os = "linux")]
pub mod netlink;
#[cfg(target_os = "linux")]
pub mod netns;
#[cfg(target_os = "linux")]
pub mod tun;
#[cfg(target_os = "linux")]
pub mod udp;

use std::io;

#[cfg(target_os = "linux")]
/// Time since boot, counting suspended time (`CLOCK_BOOTTIME`); `CLOCK_MONOTONIC` if the kernel
/// refuses it (it does not on Linux ≥ 2.6.39).
pub fn boottime() -> std::time::Duration {
    let read = |clock| {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes one timespec into `ts`, which is valid, aligned and
        // exclusively borrowed for the call.
        let r = unsafe { libc::clock_gettime(clock, &mut ts) };
        (r == 0).then(|| {
            std::time::Duration::new(
                u64::try_from(ts.tv_sec).unwrap_or(0),
                u32::try_from(ts.tv_nsec).unwrap_or(0),
            )
        })
    };
    read(libc::CLOCK_BOOTTIME)
        .or_else(|| read(libc::CLOCK_MONOTONIC))
        .unwrap_or_default()
}

/// Ask for `bytes` of send and receive buffer on a UDP socket. With CAP_NET_ADMIN the kernel's
/// `rmem_max`/`wmem_max` caps are bypassed (`SO_*BUFFORCE`); otherwise it caps silently. Failures are
/// not fatal (the socket keeps its default buffers) and are logged by the caller's caller.
#[cfg(target_os = "linux")]
pub fn set_socket_buffers(sock: &std::net::UdpSocket, bytes: usize) {
    use std::os::fd::AsRawFd;
    let fd = sock.as_raw_fd();
    let val = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    for (force, plain) in [
        (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
        (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
    ] {
        for opt in [force, plain] {
            // SAFETY: `fd` is a valid open socket borrowed from `sock` for the duration of the call;
            // `val` lives on the stack and its exact size is passed.
            let r = unsafe {
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    opt,
                    std::ptr::addr_of!(val).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if r == 0 {
                break;
            }
        }
    }
}

/// Which of two descriptors [`poll_in`] found readable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Readable {
    /// The first descriptor.
    pub first: bool,
    /// The second descriptor.
    pub second: bool,
}

/// Wait up to `timeout` (nanosecond resolution, plus the kernel's timer slack) until `first` or
/// `second` is readable, without going through the async runtime; both `false` when the time ran
/// out. An interrupted wait counts as a timeout.
#[cfg(target_os = "linux")]
pub fn poll_in(
    first: std::os::fd::RawFd,
    second: std::os::fd::RawFd,
    timeout: std::time::Duration,
) -> io::Result<Readable> {
    let mut fds = [
        libc::pollfd {
            fd: first,
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: second,
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    let ts = libc::timespec {
        tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
        // Below 10^9: fits every `c_long`, 32-bit ones included.
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `fds` is a live array of exactly `fds.len()` initialized pollfd structs and `ts` a
    // live timespec, both borrowed for the duration of the call; a null signal mask leaves the
    // thread's mask unchanged. The descriptors are only polled, never closed or read here.
    let r = unsafe {
        libc::ppoll(
            fds.as_mut_ptr(),
            fds.len() as libc::nfds_t,
            &ts,
            std::ptr::null(),
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(Readable::default());
        }
        return Err(e);
    }
    let ready = |p: &libc::pollfd| p.revents & (libc::POLLIN | libc::POLLERR | libc::POLLHUP) != 0;
    Ok(Readable {
        first: ready(&fds[0]),
        second: ready(&fds[1]),
    })
}

/// Convert a `-1`-on-error libc return value into an `io::Result`, capturing `errno`.
#[cfg(target_os = "linux")]
fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Like [`cvt`] for `ssize_t` results (`read`, `write`, `send`, `recv`).
#[cfg(target_os = "linux")]
fn cvt_size(ret: libc::ssize_t) -> io::Result<usize> {
    usize::try_from(ret).map_err(|_| io::Error::last_os_error())
}

/// The error payload carried inside the [`io::Error`]s returned by this module: which operation
/// failed, the OS errno (if any) and any detail the kernel gave (netlink extended ACK message).
///
/// The `io::Error` keeps the errno's [`io::ErrorKind`]; use [`SysError::errno_of`] to get the errno
/// back, since wrapping hides [`io::Error::raw_os_error`].
#[derive(Debug)]
pub struct SysError {
    op: String,
    errno: Option<i32>,
    detail: Option<String>,
}

impl SysError {
    /// Wrap an OS error with the operation that failed.
    pub fn wrap(op: impl Into<String>, err: io::Error) -> io::Error {
        let errno = err.raw_os_error().or_else(|| Self::errno_of(&err));
        let detail = if errno.is_none() {
            Some(err.to_string())
        } else {
            None
        };
        Self::build(op, errno, detail, err.kind())
    }

    /// Build an error from an errno (positive) with optional kernel detail.
    pub(crate) fn from_errno(
        op: impl Into<String>,
        errno: i32,
        detail: Option<String>,
    ) -> io::Error {
        let kind = io::Error::from_raw_os_error(errno).kind();
        Self::build(op, Some(errno), detail, kind)
    }

    /// Build an error that has no errno (e.g. malformed kernel reply).
    pub(crate) fn other(
        op: impl Into<String>,
        kind: io::ErrorKind,
        detail: impl Into<String>,
    ) -> io::Error {
        Self::build(op, None, Some(detail.into()), kind)
    }

    fn build(
        op: impl Into<String>,
        errno: Option<i32>,
        detail: Option<String>,
        kind: io::ErrorKind,
    ) -> io::Error {
        io::Error::new(
            kind,
            Self {
                op: op.into(),
                errno,
                detail,
            },
        )
    }

    /// The operation that failed, e.g. `netlink add address 10.0.0.1/24 on ifindex 7`.
    pub fn op(&self) -> &str {
        &self.op
    }

    /// The OS errno, if the failure came from the kernel.
    pub fn errno(&self) -> Option<i32> {
        self.errno
    }

    /// Extra detail, e.g. the kernel's netlink extended-ACK message.
    pub fn detail(&self) -> Option<&str> {
        self.detail.as_deref()
    }

    /// The errno of `err`: its raw OS error, or that of a wrapped [`SysError`].
    pub fn errno_of(err: &io::Error) -> Option<i32> {
        err.raw_os_error()
            .or_else(|| err.get_ref()?.downcast_ref::<Self>()?.errno)
    }
}

impl std::fmt::Display for SysError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.op)?;
        if let Some(e) = self.errno {
            write!(f, ": {}", io::Error::from_raw_os_error(e))?;
        }
        if let Some(d) = &self.detail {
            write!(f, " ({d})")?;
        }
        Ok(())
    }
}

impl std::error::Error for SysError {}
