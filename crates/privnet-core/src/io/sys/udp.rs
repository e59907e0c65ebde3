//! Batched UDP I/O with generic segmentation offload: one `sendmsg` with `UDP_SEGMENT` sends many
//! equal-sized datagrams to one destination, and with `UDP_GRO` one `recvmsg` returns many datagrams
//! of one flow coalesced, with their segment size in a control message (Linux 4.18 / 5.0+).

use std::io;
use std::mem::{size_of, zeroed, MaybeUninit};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

use super::cvt;

/// Most segments the kernel accepts in one `UDP_SEGMENT` send.
pub const MAX_GSO_SEGMENTS: usize = 64;
/// Largest payload of one GSO send (the IP total length limit, less headers).
pub const MAX_GSO_BYTES: usize = 65_000;

fn set_int(fd: RawFd, level: libc::c_int, opt: libc::c_int, val: libc::c_int) -> io::Result<()> {
    // SAFETY: `fd` is an open socket owned by the caller for the duration of the call; the option
    // value is a live local whose exact size is passed.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            std::ptr::addr_of!(val).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
    .map(|_| ())
}

/// Set the socket's firewall mark (`SO_MARK`; needs `CAP_NET_ADMIN`).
pub fn set_mark(fd: RawFd, mark: u32) -> io::Result<()> {
    // The kernel reads the option as a u32; c_int has its size and the bits pass unchanged.
    set_int(
        fd,
        libc::SOL_SOCKET,
        libc::SO_MARK,
        i32::from_ne_bytes(mark.to_ne_bytes()),
    )
}

/// Turn on UDP GRO for `fd`. Returns false if the kernel does not support it.
pub fn enable_gro(fd: RawFd) -> bool {
    set_int(fd, libc::SOL_UDP, libc::UDP_GRO, 1).is_ok()
}

/// Whether the kernel accepts `UDP_SEGMENT` on this socket (probed with a harmless setsockopt of
/// segment size 0, which means "off").
pub fn gso_supported(fd: RawFd) -> bool {
    set_int(fd, libc::SOL_UDP, libc::UDP_SEGMENT, 0).is_ok()
}

fn to_raw(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: an all-zero `sockaddr_storage` is a valid value of this plain C struct.
    let mut ss: libc::sockaddr_storage = unsafe { zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: `sockaddr_storage` is larger than and suitably aligned for `sockaddr_in`.
            unsafe { std::ptr::write(std::ptr::addr_of_mut!(ss).cast(), sin) };
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: `sockaddr_storage` is larger than and suitably aligned for `sockaddr_in6`.
            unsafe { std::ptr::write(std::ptr::addr_of_mut!(ss).cast(), sin6) };
            size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as libc::socklen_t)
}

fn from_raw(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match libc::c_int::from(ss.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a `sockaddr_in`, which it can contain.
            let sin: libc::sockaddr_in = unsafe { std::ptr::read(std::ptr::addr_of!(*ss).cast()) };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes()),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a `sockaddr_in6`, which it can contain.
            let sin6: libc::sockaddr_in6 =
                unsafe { std::ptr::read(std::ptr::addr_of!(*ss).cast()) };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Control buffer, aligned for `cmsghdr`.
#[repr(C, align(8))]
struct Cmsg([u8; 64]);

/// Send `buf` to `dst` as datagrams of `segment` bytes each (the last may be shorter) in one
/// syscall. `segment == buf.len()` (or 0) sends a single datagram without the control message.
pub fn send_segments(fd: RawFd, buf: &[u8], segment: usize, dst: &SocketAddr) -> io::Result<usize> {
    let (mut name, name_len) = to_raw(dst);
    let mut iov = libc::iovec {
        iov_base: buf.as_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    let mut cmsg = Cmsg([0; 64]);
    // SAFETY: an all-zero `msghdr` is valid; every pointer set below refers to a live local or to
    // `buf`, which outlive the `sendmsg` call, and lengths match the referenced memory.
    let mut msg: libc::msghdr = unsafe { zeroed() };
    msg.msg_name = std::ptr::addr_of_mut!(name).cast();
    msg.msg_namelen = name_len;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if segment > 0 && segment < buf.len() {
        let seg = u16::try_from(segment)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "segment too large"))?;
        // SAFETY: CMSG_SPACE is a pure computation on a size.
        let space = unsafe { libc::CMSG_SPACE(size_of::<u16>() as u32) } as usize;
        msg.msg_control = cmsg.0.as_mut_ptr().cast();
        msg.msg_controllen = space;
        // SAFETY: `msg_control` points to `cmsg`, which is aligned and at least `space` bytes, so
        // CMSG_FIRSTHDR returns a pointer inside it with room for one header and a u16.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_UDP;
            (*c).cmsg_type = libc::UDP_SEGMENT;
            (*c).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as usize;
            std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), seg);
        }
    }
    // SAFETY: `msg` is fully initialised above and its buffers are live for the call.
    let r = unsafe { libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT) };
    super::cvt_size(r)
}

/// Receive one datagram, or (with GRO) a run of datagrams of one flow coalesced into `buf`.
/// Returns `(bytes, source, segment size)`; without coalescing the segment size is the length.
pub fn recv_segments(fd: RawFd, buf: &mut [u8]) -> io::Result<(usize, SocketAddr, usize)> {
    let mut name = MaybeUninit::<libc::sockaddr_storage>::zeroed();
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut cmsg = Cmsg([0; 64]);
    // SAFETY: an all-zero `msghdr` is valid; pointers refer to live locals or `buf`, with matching
    // lengths, for the duration of the call.
    let mut msg: libc::msghdr = unsafe { zeroed() };
    msg.msg_name = name.as_mut_ptr().cast();
    msg.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cmsg.0.as_mut_ptr().cast();
    msg.msg_controllen = cmsg.0.len();
    // SAFETY: as above.
    let r = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT) };
    let n = super::cvt_size(r)?;
    // SAFETY: the kernel initialised the address (zeroed before, so an unknown family is harmless).
    let from = from_raw(unsafe { name.assume_init_ref() })
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unknown address family"))?;
    let mut segment = n;
    // SAFETY: walking the control messages the kernel wrote into `cmsg`, bounded by
    // `msg_controllen`, with the libc macros; the data read is an `int` as documented for UDP_GRO.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_UDP && (*c).cmsg_type == libc::UDP_GRO {
                let v = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>());
                if let Ok(v) = usize::try_from(v) {
                    if v > 0 {
                        segment = v;
                    }
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok((n, from, segment))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn gso_send_and_gro_receive_on_loopback() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let gro = enable_gro(rx.as_raw_fd());
        let dst = rx.local_addr().unwrap();
        let mut buf = vec![0u8; 1000 * 10 + 300];
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (i / 1000) as u8;
        }
        let gso = gso_supported(tx.as_raw_fd());
        let sent = if gso {
            send_segments(tx.as_raw_fd(), &buf, 1000, &dst).unwrap()
        } else {
            send_segments(tx.as_raw_fd(), &buf[..1000], 0, &dst).unwrap()
        };
        assert!(sent > 0);
        rx.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        let mut got = Vec::new();
        let mut rbuf = vec![0u8; 65_536];
        while got.len() < if gso { 11 } else { 1 } {
            // Blocking wait for data, then the non-blocking batched receive.
            let mut peek = [0u8; 1];
            let _ = rx.peek(&mut peek);
            let (n, from, seg) = recv_segments(rx.as_raw_fd(), &mut rbuf).unwrap();
            assert_eq!(from, tx.local_addr().unwrap());
            for chunk in rbuf[..n].chunks(seg) {
                got.push(chunk.to_vec());
            }
        }
        if gso {
            assert_eq!(got.len(), 11);
            assert!(got[..10].iter().all(|c| c.len() == 1000));
            assert_eq!(got[10].len(), 300);
            assert!(got[3].iter().all(|b| *b == 3));
        }
        let _ = gro;
    }
}
