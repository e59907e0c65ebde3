//! Network-namespace entry for the calling thread (`setns(2)` with `CLONE_NEWNET`).
//!
//! A sidecar usually runs in (or is pointed at) the container's network namespace. Sockets,
//! netlink sockets and TUN devices belong to the namespace of the thread that *creates* them and
//! stay there afterwards, whatever thread uses them. So the usual pattern is: a dedicated thread
//! enters the namespace, creates the TUN/sockets (and runs a current-thread tokio runtime, or
//! hands the fds to another runtime). Only the calling thread changes namespace; threads of a
//! multi-threaded runtime do not follow it.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::Path;

use super::{cvt, SysError};

/// Directory where `ip netns add NAME` bind-mounts named namespaces.
pub const NETNS_RUN_DIR: &str = "/run/netns";

/// Move the calling thread into the network namespace at `path` (e.g. `/run/netns/NAME` or
/// `/proc/PID/ns/net`). Needs `CAP_SYS_ADMIN`.
pub fn enter_path(path: impl AsRef<Path>) -> io::Result<()> {
    let path = path.as_ref();
    let ns = File::open(path)
        .map_err(|e| SysError::wrap(format!("open netns {}", path.display()), e))?;
    enter_fd(ns.as_fd()).map_err(|e| SysError::wrap(format!("setns {}", path.display()), e))
}

/// Move the calling thread into the network namespace named `name` by `ip netns`.
pub fn enter_named(name: &str) -> io::Result<()> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(SysError::other(
            "enter netns",
            io::ErrorKind::InvalidInput,
            format!("invalid namespace name {name:?}"),
        ));
    }
    enter_path(Path::new(NETNS_RUN_DIR).join(name))
}

/// Move the calling thread into the network namespace referred to by `ns` (an open namespace
/// file, e.g. one returned by [`current`]).
pub fn enter_fd(ns: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: `setns` only reads its integer arguments; `ns` is a valid open fd for the call.
    cvt(unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) })?;
    Ok(())
}

/// Open the calling thread's current network namespace, so it can be re-entered later with
/// [`enter_fd`].
pub fn current() -> io::Result<File> {
    File::open("/proc/thread-self/ns/net")
        .map_err(|e| SysError::wrap("open /proc/thread-self/ns/net", e))
}
