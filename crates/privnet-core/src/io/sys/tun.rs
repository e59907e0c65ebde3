//! Linux TUN device (`IFF_TUN | IFF_NO_PI`), non-blocking and driven by tokio's [`AsyncFd`].
//!
//! # Why not the `tun-tap` crate
//!
//! The brief suggested `tun-tap` plus a few extra ioctls. It cannot do the job: its
//! `Iface::new` issues `TUNSETIFF` from a bundled C helper that only ever passes
//! `IFF_TUN`/`IFF_TAP` and `IFF_NO_PI`, and `IFF_VNET_HDR` and `IFF_MULTI_QUEUE` must be given in
//! that same `TUNSETIFF` call (the kernel rejects turning them on later, and re-attaching a
//! multi-queue queue must repeat the flags). Its default features also pull in tokio-core 0.1,
//! mio 0.6 and futures 0.1 and it needs a C compiler at build time. Opening `/dev/net/tun` with
//! one `TUNSETIFF` ioctl is about 30 lines, so this module does that directly with `libc`.
//!
//! # Offloads
//!
//! With [`TunConfig::vnet_hdr`] every packet read or written is prefixed by a
//! [`VirtioNetHdr`] ([`VNET_HDR_LEN`] bytes) and the kernel is told (`TUNSETOFFLOAD`) that we
//! accept checksum offload, TCP segmentation offload and, on kernels ≥ 6.2, UDP segmentation
//! offload. Reads may then return up to 64 KiB "superpackets" that the driver must segment (or
//! pass on whole); writes may carry a GSO header. This is off by default: the plain mode reads one
//! IP packet per `read(2)`, already checksummed.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use super::{cvt, cvt_size, SysError};

/// Size of the virtio-net header used with `IFF_VNET_HDR` (`struct virtio_net_hdr`, without the
/// `num_buffers` field of the mergeable-buffers variant), as wireguard-go and nebula use.
pub const VNET_HDR_LEN: usize = 10;

pub use super::ifname::MAX_NAME_LEN;

/// How to create a TUN device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TunConfig {
    /// Interface name (at most 15 bytes). Empty lets the kernel choose (`tun%d`).
    pub name: String,
    /// MTU to set right after creation; `None` keeps the kernel default (1500).
    pub mtu: Option<u32>,
    /// Open with `IFF_VNET_HDR` and enable checksum/TSO/USO offloads (see the module docs).
    pub vnet_hdr: bool,
    /// Open with `IFF_MULTI_QUEUE`; more queues come from [`TunDevice::clone_queue`].
    pub multi_queue: bool,
}

impl TunConfig {
    /// A plain TUN (no offloads, single queue, default MTU) with the given name.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }
}

/// Which offloads the kernel accepted via `TUNSETOFFLOAD` (all false without `vnet_hdr`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Offloads {
    /// `TUN_F_CSUM`: packets may carry a partial checksum (`VIRTIO_NET_HDR_F_NEEDS_CSUM`).
    pub csum: bool,
    /// `TUN_F_TSO4`: TCP/IPv4 superpackets.
    pub tso4: bool,
    /// `TUN_F_TSO6`: TCP/IPv6 superpackets.
    pub tso6: bool,
    /// `TUN_F_USO4 | TUN_F_USO6`: UDP superpackets (Linux ≥ 6.2).
    pub uso: bool,
}

/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the checksum at `csum_start + csum_offset` must be completed.
pub const VIRTIO_NET_HDR_F_NEEDS_CSUM: u8 = 1;
/// `VIRTIO_NET_HDR_F_DATA_VALID`: the checksum was already verified.
pub const VIRTIO_NET_HDR_F_DATA_VALID: u8 = 2;
/// `VIRTIO_NET_HDR_GSO_NONE`.
pub const VIRTIO_NET_HDR_GSO_NONE: u8 = 0;
/// `VIRTIO_NET_HDR_GSO_TCPV4`.
pub const VIRTIO_NET_HDR_GSO_TCPV4: u8 = 1;
/// `VIRTIO_NET_HDR_GSO_TCPV6`.
pub const VIRTIO_NET_HDR_GSO_TCPV6: u8 = 4;
/// `VIRTIO_NET_HDR_GSO_UDP_L4` (USO).
pub const VIRTIO_NET_HDR_GSO_UDP_L4: u8 = 5;

/// The `struct virtio_net_hdr` prefix of every packet on an `IFF_VNET_HDR` device.
///
/// Multi-byte fields are in native byte order (the TUN default; we never call `TUNSETVNETLE`/`BE`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VirtioNetHdr {
    /// `VIRTIO_NET_HDR_F_*` flags.
    pub flags: u8,
    /// `VIRTIO_NET_HDR_GSO_*` type.
    pub gso_type: u8,
    /// Length of the headers to replicate per segment.
    pub hdr_len: u16,
    /// Segment payload size.
    pub gso_size: u16,
    /// Where checksumming starts.
    pub csum_start: u16,
    /// Offset of the checksum field from `csum_start`.
    pub csum_offset: u16,
}

impl VirtioNetHdr {
    /// Parse the header at the start of `buf`; `None` if `buf` is shorter than [`VNET_HDR_LEN`].
    pub fn decode(buf: &[u8]) -> Option<Self> {
        let b: &[u8; VNET_HDR_LEN] = buf.get(..VNET_HDR_LEN)?.try_into().ok()?;
        Some(Self {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u16::from_ne_bytes([b[2], b[3]]),
            gso_size: u16::from_ne_bytes([b[4], b[5]]),
            csum_start: u16::from_ne_bytes([b[6], b[7]]),
            csum_offset: u16::from_ne_bytes([b[8], b[9]]),
        })
    }

    /// Write the header to the start of `buf`; `None` if `buf` is shorter than [`VNET_HDR_LEN`].
    pub fn encode(&self, buf: &mut [u8]) -> Option<()> {
        let b = buf.get_mut(..VNET_HDR_LEN)?;
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_ne_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_ne_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_ne_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_ne_bytes());
        Some(())
    }
}

/// One queue of a TUN device, registered with the current tokio runtime.
///
/// Reads return one IP packet (prefixed by a [`VirtioNetHdr`] if [`Self::vnet_hdr`]); use a
/// buffer of at least MTU bytes (plus [`VNET_HDR_LEN`], or 65 535 + [`VNET_HDR_LEN`] with
/// offloads) or the packet is truncated. Writes take one whole packet.
///
/// The interface is removed by the kernel when its last queue is closed (dropped).
#[derive(Debug)]
pub struct TunDevice {
    fd: AsyncFd<OwnedFd>,
    name: String,
    ifindex: u32,
    flags: libc::c_short,
    offloads: Offloads,
}

impl TunDevice {
    /// Create (or attach to) the TUN device described by `cfg` in the calling thread's network
    /// namespace and register it with the current tokio runtime.
    ///
    /// Must be called from within a tokio runtime that has IO enabled. Needs `CAP_NET_ADMIN`.
    pub fn create(cfg: &TunConfig) -> io::Result<Self> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(SysError::other(
                "create TUN",
                io::ErrorKind::Other,
                "TunDevice::create must be called inside a tokio runtime",
            ));
        }
        let mut flags = (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short;
        if cfg.vnet_hdr {
            flags |= libc::IFF_VNET_HDR as libc::c_short;
        }
        if cfg.multi_queue {
            flags |= libc::IFF_MULTI_QUEUE as libc::c_short;
        }
        let (fd, name) = open_tun(&cfg.name, flags)?;
        let offloads = if cfg.vnet_hdr {
            enable_offloads(&fd, &name)?
        } else {
            Offloads::default()
        };
        let ifindex = if_index(&name)?;
        if let Some(mtu) = cfg.mtu {
            super::netlink::Netlink::new()?.set_mtu(ifindex, mtu)?;
        }
        Self::register(fd, name, ifindex, flags, offloads)
    }

    /// Open another queue of this multi-queue device (`IFF_MULTI_QUEUE` must have been set).
    ///
    /// Each queue is an independent fd; the kernel spreads flows over queues by hash, and a
    /// packet written to a queue is sent as if it came from the device.
    pub fn clone_queue(&self) -> io::Result<Self> {
        if self.flags & libc::IFF_MULTI_QUEUE as libc::c_short == 0 {
            return Err(SysError::other(
                format!("clone TUN queue of {}", self.name),
                io::ErrorKind::InvalidInput,
                "device was not created with multi_queue",
            ));
        }
        let (fd, name) = open_tun(&self.name, self.flags)?;
        Self::register(fd, name, self.ifindex, self.flags, self.offloads)
    }

    fn register(
        fd: OwnedFd,
        name: String,
        ifindex: u32,
        flags: libc::c_short,
        offloads: Offloads,
    ) -> io::Result<Self> {
        // SAFETY: the `AsyncFd` takes ownership of the `OwnedFd`, so the descriptor stays open
        // and refers to the same file description until the `AsyncFd` is dropped, and
        // `OwnedFd::as_raw_fd` always returns that same descriptor.
        let fd =
            unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE | Interest::WRITABLE) }
                .map_err(|e| {
                    SysError::wrap(
                        format!("register TUN {name} with tokio"),
                        io::Error::from(e),
                    )
                })?;
        Ok(Self {
            fd,
            name,
            ifindex,
            flags,
            offloads,
        })
    }

    /// Interface name as assigned by the kernel.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Interface index (for [`super::netlink::Netlink`] calls).
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Whether packets carry a [`VirtioNetHdr`] prefix.
    pub fn vnet_hdr(&self) -> bool {
        self.flags & libc::IFF_VNET_HDR as libc::c_short != 0
    }

    /// Whether the device is multi-queue.
    pub fn multi_queue(&self) -> bool {
        self.flags & libc::IFF_MULTI_QUEUE as libc::c_short != 0
    }

    /// The offloads the kernel accepted.
    pub fn offloads(&self) -> Offloads {
        self.offloads
    }

    /// Receive one packet, waiting until one is available.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|fd| read_fd(fd.as_raw_fd(), buf)) {
                Ok(res) => return res,
                Err(_would_block) => continue,
            }
        }
    }

    /// Send one packet, waiting while the device is not writable.
    pub async fn send(&self, buf: &[u8]) -> io::Result<usize> {
        loop {
            let mut guard = self.fd.writable().await?;
            match guard.try_io(|fd| write_fd(fd.as_raw_fd(), buf)) {
                Ok(res) => return res,
                Err(_would_block) => continue,
            }
        }
    }

    /// Receive one packet without waiting, for draining a batch after [`Self::recv`] or
    /// [`Self::readable`]. Returns [`io::ErrorKind::WouldBlock`] when the queue is empty (or
    /// tokio has not yet seen it become readable), which also re-arms readiness for `recv`.
    pub fn try_recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.fd
            .try_io(Interest::READABLE, |fd| read_fd(fd.as_raw_fd(), buf))
    }

    /// Read one packet straight from the kernel, bypassing tokio's readiness cache (which says
    /// "not readable" after one `EAGAIN` until the reactor runs again); `WouldBlock` when empty.
    pub fn recv_now(&self, buf: &mut [u8]) -> io::Result<usize> {
        read_fd(self.fd.get_ref().as_raw_fd(), buf)
    }

    /// Send one packet given as two pieces (a virtio-net header, possibly empty, and the packet)
    /// in one `writev`, without copying them together and without waiting. This goes to the
    /// kernel every time rather than through tokio's readiness cache, so one `EAGAIN` does not
    /// turn the following writes into drops. A TUN write only fails with `EAGAIN` when the
    /// device's send buffer (unlimited unless `TUNSETSNDBUF` lowered it) is exhausted.
    pub fn send_now(&self, head: &[u8], body: &[u8]) -> io::Result<usize> {
        writev2_fd(self.fd.get_ref().as_raw_fd(), head, body)
    }

    /// Wait until the device is readable, without reading (then drain with [`Self::try_recv`]).
    pub async fn readable(&self) -> io::Result<()> {
        self.fd.readable().await.map(|mut g| g.retain_ready())
    }
}

impl AsRawFd for TunDevice {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.get_ref().as_raw_fd()
    }
}

impl AsFd for TunDevice {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.get_ref().as_fd()
    }
}

/// Open `/dev/net/tun` non-blocking and bind it to interface `name` with `flags` (`TUNSETIFF`).
/// Returns the fd and the name the kernel assigned.
fn open_tun(name: &str, flags: libc::c_short) -> io::Result<(OwnedFd, String)> {
    if name.len() > MAX_NAME_LEN
        || name
            .bytes()
            .any(|b| b == 0 || b == b'/' || b.is_ascii_whitespace())
    {
        return Err(SysError::other(
            "create TUN",
            io::ErrorKind::InvalidInput,
            format!("invalid interface name {name:?} (at most {MAX_NAME_LEN} bytes, no NUL, '/' or space)"),
        ));
    }
    // SAFETY: the path is a valid NUL-terminated C string literal; `open` has no other
    // preconditions and we check the result before wrapping it.
    let raw = cvt(unsafe {
        libc::open(
            c"/dev/net/tun".as_ptr(),
            libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    })
    .map_err(|e| SysError::wrap("open /dev/net/tun", e))?;
    // SAFETY: `raw` is a freshly opened fd that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };

    // SAFETY: `ifreq` is a plain C struct (byte array + union of integers/sockaddrs) for which
    // all-zero bytes are a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    ifr.ifr_ifru.ifru_flags = flags;
    // SAFETY: TUNSETIFF reads and writes a `struct ifreq`; `ifr` is a valid, exclusively
    // borrowed `ifreq` that lives for the duration of the call, and `fd` is open.
    cvt(unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::TUNSETIFF,
            &mut ifr as *mut libc::ifreq,
        )
    })
    .map_err(|e| SysError::wrap(format!("TUNSETIFF {name:?} (flags {flags:#x})"), e))?;

    // The kernel wrote back the final name (NUL-terminated within IFNAMSIZ since the name is at
    // most 15 bytes); stop at the first NUL and never read past the array.
    let assigned: Vec<u8> = ifr
        .ifr_name
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    let assigned = String::from_utf8(assigned).map_err(|_| {
        SysError::other(
            "TUNSETIFF",
            io::ErrorKind::InvalidData,
            "kernel returned a non-UTF-8 name",
        )
    })?;
    Ok((fd, assigned))
}

/// Set the vnet header size and ask for checksum + TSO (+ USO where supported) offloads.
fn enable_offloads(fd: &OwnedFd, name: &str) -> io::Result<Offloads> {
    let hdr_len = VNET_HDR_LEN as libc::c_int;
    // SAFETY: TUNSETVNETHDRSZ reads one `int` through the pointer, which points to a live local.
    cvt(unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::TUNSETVNETHDRSZ,
            &hdr_len as *const libc::c_int,
        )
    })
    .map_err(|e| SysError::wrap(format!("TUNSETVNETHDRSZ {name}"), e))?;

    let base = libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6;
    let with_uso = base | libc::TUN_F_USO4 | libc::TUN_F_USO6;
    let set = |bits: libc::c_uint| {
        // SAFETY: TUNSETOFFLOAD takes its argument by value (an unsigned long bit mask), so no
        // memory is accessed through it; `fd` is an open TUN fd.
        cvt(unsafe {
            libc::ioctl(
                fd.as_raw_fd(),
                libc::TUNSETOFFLOAD,
                libc::c_ulong::from(bits),
            )
        })
    };
    match set(with_uso) {
        Ok(_) => Ok(Offloads {
            csum: true,
            tso4: true,
            tso6: true,
            uso: true,
        }),
        // Kernels before 6.2 reject the USO bits with EINVAL; retry without them.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            set(base).map_err(|e| SysError::wrap(format!("TUNSETOFFLOAD {name}"), e))?;
            Ok(Offloads {
                csum: true,
                tso4: true,
                tso6: true,
                uso: false,
            })
        }
        Err(e) => Err(SysError::wrap(format!("TUNSETOFFLOAD {name}"), e)),
    }
}

/// Interface index by name, in the calling thread's network namespace.
pub(crate) fn if_index(name: &str) -> io::Result<u32> {
    let cname = std::ffi::CString::new(name).map_err(|_| {
        SysError::other(
            "if_nametoindex",
            io::ErrorKind::InvalidInput,
            "name contains NUL",
        )
    })?;
    // SAFETY: `cname` is a valid NUL-terminated string that outlives the call.
    let idx = unsafe { libc::if_nametoindex(cname.as_ptr()) };
    if idx == 0 {
        return Err(SysError::wrap(
            format!("if_nametoindex {name}"),
            io::Error::last_os_error(),
        ));
    }
    Ok(idx)
}

fn read_fd(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `buf` is a valid writable region of `buf.len()` bytes for the whole call.
        match cvt_size(unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) }) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

fn write_fd(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `buf` is a valid readable region of `buf.len()` bytes for the whole call.
        match cvt_size(unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) }) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

fn writev2_fd(fd: RawFd, head: &[u8], body: &[u8]) -> io::Result<usize> {
    let iov = [
        libc::iovec {
            iov_base: head.as_ptr() as *mut libc::c_void,
            iov_len: head.len(),
        },
        libc::iovec {
            iov_base: body.as_ptr() as *mut libc::c_void,
            iov_len: body.len(),
        },
    ];
    loop {
        // SAFETY: both iovecs describe live, readable slices for the whole call; `writev` only
        // reads through them despite the `*mut` in `iovec`.
        match cvt_size(unsafe { libc::writev(fd, iov.as_ptr(), 2) }) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vnet_hdr_roundtrip() {
        let h = VirtioNetHdr {
            flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
            gso_type: VIRTIO_NET_HDR_GSO_TCPV4,
            hdr_len: 54,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
        };
        let mut b = [0u8; VNET_HDR_LEN];
        assert_eq!(h.encode(&mut b), Some(()));
        assert_eq!(VirtioNetHdr::decode(&b), Some(h));
        assert_eq!(VirtioNetHdr::decode(&b[..9]), None);
        assert_eq!(h.encode(&mut [0u8; 9]), None);
    }

    #[test]
    fn rejects_bad_names() {
        for bad in ["0123456789abcdef", "a/b", "a b", "a\0b"] {
            let err = open_tun(bad, libc::IFF_TUN as libc::c_short).err();
            assert_eq!(
                err.map(|e| e.kind()),
                Some(io::ErrorKind::InvalidInput),
                "{bad:?}"
            );
        }
    }
}
