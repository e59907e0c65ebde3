//! Minimal rtnetlink client over a raw `NETLINK_ROUTE` socket: link lookup, up/down, MTU,
//! addresses, device routes (in the main table or another) and the two policy routing rules of
//! a default route (what wg-quick sets up with `ip rule`).
//!
//! Hand-written on `libc` rather than the `rtnetlink`/`netlink-packet-route` crates: we need nine
//! fixed message shapes, and those crates bring an async runtime adapter, `futures` and a large
//! generated type tree. Requests are built as byte vectors with explicit layouts (no `unsafe`
//! struct casts); replies are parsed with bounds checks on every length field.
//!
//! Every request asks for an ACK, and a negative ACK becomes an [`io::Error`] whose kind follows
//! the errno and whose payload is a [`SysError`] naming the operation, the errno and, when the
//! kernel supports extended ACKs, the kernel's explanation. The socket belongs to the network
//! namespace of the thread that called [`Netlink::new`]. Calls are blocking (bounded by a 5 s
//! receive timeout) and meant for setup, not the packet path.

use std::fmt::Display;
use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use super::ifname::MAX_NAME_LEN;
use super::{cvt, cvt_size, SysError};

// Values from <linux/netlink.h>, <linux/rtnetlink.h>, <linux/if_link.h>, <linux/if_addr.h>.
// They are kernel ABI; unit tests compare them with the `libc` crate's definitions.
const NLMSG_HDRLEN: usize = 16;
const NLMSG_NOOP: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_CAPPED: u16 = 0x100;
const NLM_F_ACK_TLVS: u16 = 0x200;
const NLMSGERR_ATTR_MSG: u16 = 1;
const SOL_NETLINK: libc::c_int = 270;
const NETLINK_CAP_ACK: libc::c_int = 10;
const NETLINK_EXT_ACK: libc::c_int = 11;

const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;
const RTM_NEWROUTE: u16 = 24;
const RTM_DELROUTE: u16 = 25;
const RTM_GETROUTE: u16 = 26;
const RTM_NEWRULE: u16 = 32;
const RTM_DELRULE: u16 = 33;

const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_F_NODAD: u8 = 0x02;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_TABLE: u16 = 15;
// <linux/fib_rules.h>: the `libc` crate does not define these; `ip rule show` in
// tests/netns/routes.sh (R4) checks what the kernel made of them.
const FRA_FWMARK: u16 = 10;
const FRA_SUPPRESS_PREFIXLEN: u16 = 14;
const FRA_TABLE: u16 = 15;
const FRA_FWMASK: u16 = 16;
const FR_ACT_TO_TBL: u8 = 1;
const FIB_RULE_INVERT: u32 = 0x2;
const RT_TABLE_COMPAT: u8 = 252;

const RT_TABLE_MAIN: u8 = 254;
const RTPROT_STATIC: u8 = 4;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RT_SCOPE_LINK: u8 = 253;
const RT_SCOPE_NOWHERE: u8 = 255;
const RTN_UNICAST: u8 = 1;
const RTN_LOCAL: u8 = 2;

const IFF_UP: u32 = 0x1;

const RECV_BUF: usize = 32 * 1024;
const RECV_TIMEOUT_SECS: libc::time_t = 5;

/// An rtnetlink socket in the calling thread's network namespace.
#[derive(Debug)]
pub struct Netlink {
    fd: OwnedFd,
    seq: u32,
    buf: Vec<u8>,
}

impl Netlink {
    /// Open and bind a `NETLINK_ROUTE` socket (in the calling thread's network namespace).
    pub fn new() -> io::Result<Self> {
        // SAFETY: plain syscall with integer arguments; the result is checked before use.
        let raw = cvt(unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        })
        .map_err(|e| SysError::wrap("netlink socket", e))?;
        // SAFETY: `raw` is a freshly created socket that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };

        // SAFETY: `sockaddr_nl` is a plain C struct for which all-zero bytes are valid.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: `addr` is a valid `sockaddr_nl` and the length passed is its exact size.
        cvt(unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        })
        .map_err(|e| SysError::wrap("netlink bind", e))?;

        // Best effort: extended ACK messages and capped ACKs (errors without the echoed request)
        // exist since Linux 4.12 / 4.3; older kernels just give plain errnos.
        let _ = setsockopt_int(&fd, SOL_NETLINK, NETLINK_EXT_ACK, 1);
        let _ = setsockopt_int(&fd, SOL_NETLINK, NETLINK_CAP_ACK, 1);

        let tv = libc::timeval {
            tv_sec: RECV_TIMEOUT_SECS,
            tv_usec: 0,
        };
        // SAFETY: SO_RCVTIMEO reads a `timeval` of the given size from a live local.
        cvt(unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        })
        .map_err(|e| SysError::wrap("netlink SO_RCVTIMEO", e))?;

        Ok(Self {
            fd,
            seq: 0,
            buf: vec![0; RECV_BUF],
        })
    }

    /// Interface index of the link called `name`.
    pub fn link_index(&mut self, name: &str) -> io::Result<u32> {
        let op = format!("netlink get link {name:?}");
        if name.is_empty() || name.len() > MAX_NAME_LEN || name.contains('\0') {
            return Err(SysError::other(
                op,
                io::ErrorKind::InvalidInput,
                "invalid interface name",
            ));
        }
        let mut req = Request::new(RTM_GETLINK, NLM_F_REQUEST | NLM_F_ACK);
        req.push(&ifinfomsg(0, 0, 0));
        let mut cname = name.as_bytes().to_vec();
        cname.push(0);
        req.attr(IFLA_IFNAME, &cname);
        let reply = self.transact(&op, req)?;
        let reply = reply.ok_or_else(|| {
            SysError::other(&op, io::ErrorKind::InvalidData, "no RTM_NEWLINK in reply")
        })?;
        // struct ifinfomsg: family u8, pad u8, type u16, index i32, ...
        let idx = reply
            .get(4..8)
            .and_then(|b| b.try_into().ok())
            .map(i32::from_ne_bytes)
            .and_then(|i| u32::try_from(i).ok())
            .filter(|&i| i != 0);
        idx.ok_or_else(|| {
            SysError::other(&op, io::ErrorKind::InvalidData, "short RTM_NEWLINK reply")
        })
    }

    /// Set the link administratively up.
    pub fn link_set_up(&mut self, ifindex: u32) -> io::Result<()> {
        self.link_set_flags(ifindex, true)
    }

    /// Set the link administratively down.
    pub fn link_set_down(&mut self, ifindex: u32) -> io::Result<()> {
        self.link_set_flags(ifindex, false)
    }

    fn link_set_flags(&mut self, ifindex: u32, up: bool) -> io::Result<()> {
        let op = format!(
            "netlink set link ifindex {ifindex} {}",
            if up { "up" } else { "down" }
        );
        let mut req = Request::new(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK);
        req.push(&ifinfomsg(
            ifindex_i32(&op, ifindex)?,
            if up { IFF_UP } else { 0 },
            IFF_UP,
        ));
        self.transact(&op, req).map(drop)
    }

    /// Set the link MTU.
    pub fn set_mtu(&mut self, ifindex: u32, mtu: u32) -> io::Result<()> {
        let op = format!("netlink set mtu {mtu} on ifindex {ifindex}");
        let mut req = Request::new(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK);
        req.push(&ifinfomsg(ifindex_i32(&op, ifindex)?, 0, 0));
        req.attr(IFLA_MTU, &mtu.to_ne_bytes());
        self.transact(&op, req).map(drop)
    }

    /// Add `addr/prefix_len` to the link (fails with `AlreadyExists` if present). IPv6 addresses
    /// are added with `IFA_F_NODAD` so they are usable at once.
    pub fn add_address(&mut self, ifindex: u32, addr: IpAddr, prefix_len: u8) -> io::Result<()> {
        let op = format!("netlink add address {addr}/{prefix_len} on ifindex {ifindex}");
        self.address(
            &op,
            RTM_NEWADDR,
            NLM_F_CREATE | NLM_F_EXCL,
            ifindex,
            addr,
            prefix_len,
        )
    }

    /// Remove `addr/prefix_len` from the link.
    pub fn del_address(&mut self, ifindex: u32, addr: IpAddr, prefix_len: u8) -> io::Result<()> {
        let op = format!("netlink delete address {addr}/{prefix_len} on ifindex {ifindex}");
        self.address(&op, RTM_DELADDR, 0, ifindex, addr, prefix_len)
    }

    fn address(
        &mut self,
        op: &str,
        ty: u16,
        extra_flags: u16,
        ifindex: u32,
        addr: IpAddr,
        prefix_len: u8,
    ) -> io::Result<()> {
        check_prefix(op, addr, prefix_len)?;
        let (family, bytes, flags) = match addr {
            IpAddr::V4(a) => (libc::AF_INET as u8, a.octets().to_vec(), 0),
            IpAddr::V6(a) => (libc::AF_INET6 as u8, a.octets().to_vec(), IFA_F_NODAD),
        };
        let mut req = Request::new(ty, NLM_F_REQUEST | NLM_F_ACK | extra_flags);
        // struct ifaddrmsg: family, prefixlen, flags, scope (u8 each), index u32.
        req.push(&[family, prefix_len, flags, RT_SCOPE_UNIVERSE]);
        req.push(&ifindex.to_ne_bytes());
        req.attr(IFA_LOCAL, &bytes);
        req.attr(IFA_ADDRESS, &bytes);
        self.transact(op, req).map(drop)
    }

    /// Add a route to `dst/prefix_len` out of the link, in the main table (fails with
    /// `AlreadyExists` if present). `dst` must have no host bits set beyond `prefix_len`.
    pub fn add_route(&mut self, ifindex: u32, dst: IpAddr, prefix_len: u8) -> io::Result<()> {
        self.add_route_in(ifindex, dst, prefix_len, u32::from(RT_TABLE_MAIN))
    }

    /// [`Self::add_route`] into routing table `table` (`ip route add ... table T`).
    pub fn add_route_in(
        &mut self,
        ifindex: u32,
        dst: IpAddr,
        prefix_len: u8,
        table: u32,
    ) -> io::Result<()> {
        let op =
            format!("netlink add route {dst}/{prefix_len} dev ifindex {ifindex} table {table}");
        let scope = if dst.is_ipv4() {
            RT_SCOPE_LINK
        } else {
            RT_SCOPE_UNIVERSE
        };
        let flags = NLM_F_CREATE | NLM_F_EXCL;
        self.route(
            &op,
            RTM_NEWROUTE,
            flags,
            (RTPROT_STATIC, scope, table),
            ifindex,
            dst,
            prefix_len,
        )
    }

    /// Delete the route to `dst/prefix_len` out of the link from the main table.
    pub fn del_route(&mut self, ifindex: u32, dst: IpAddr, prefix_len: u8) -> io::Result<()> {
        let op = format!("netlink delete route {dst}/{prefix_len} dev ifindex {ifindex}");
        // Protocol 0 and scope NOWHERE are wildcards for deletion.
        self.route(
            &op,
            RTM_DELROUTE,
            0,
            (0, RT_SCOPE_NOWHERE, u32::from(RT_TABLE_MAIN)),
            ifindex,
            dst,
            prefix_len,
        )
    }

    /// Add a policy routing rule of `family` (IPv6 when `v6`); fails with `AlreadyExists` when an
    /// identical rule exists. The kernel gives it the priority just before the existing rules
    /// (after `local`), as `ip rule add` without a priority does: add the rule to be consulted
    /// first last.
    pub fn add_rule(&mut self, v6: bool, rule: Rule) -> io::Result<()> {
        let op = format!("netlink add rule {rule} ({})", family_name(v6));
        self.rule(&op, RTM_NEWRULE, NLM_F_CREATE | NLM_F_EXCL, v6, rule)
    }

    /// Delete the policy routing rule `rule` of `family`.
    pub fn del_rule(&mut self, v6: bool, rule: Rule) -> io::Result<()> {
        let op = format!("netlink delete rule {rule} ({})", family_name(v6));
        self.rule(&op, RTM_DELRULE, 0, v6, rule)
    }

    fn rule(
        &mut self,
        op: &str,
        ty: u16,
        extra_flags: u16,
        v6: bool,
        rule: Rule,
    ) -> io::Result<()> {
        let mut req = Request::new(ty, NLM_F_REQUEST | NLM_F_ACK | extra_flags);
        req.push(&rule_request(v6, rule));
        for (attr, value) in rule_attrs(rule) {
            req.attr(attr, &value.to_ne_bytes());
        }
        self.transact(op, req).map(drop)
    }

    /// Whether the kernel currently treats `addr` as one of this host's addresses, i.e. a route
    /// lookup (`RTM_GETROUTE`, like `ip route get`) gives a `local` route.
    pub fn is_local(&mut self, addr: IpAddr) -> io::Result<bool> {
        let op = format!("netlink get route to {addr}");
        let (family, bytes, len) = match addr {
            IpAddr::V4(a) => (libc::AF_INET as u8, a.octets().to_vec(), 32),
            IpAddr::V6(a) => (libc::AF_INET6 as u8, a.octets().to_vec(), 128),
        };
        let mut req = Request::new(RTM_GETROUTE, NLM_F_REQUEST | NLM_F_ACK);
        req.push(&[family, len, 0, 0, 0, 0, 0, 0]);
        req.push(&0u32.to_ne_bytes());
        req.attr(RTA_DST, &bytes);
        match self.transact(&op, req) {
            // struct rtmsg: ..., rtm_type is byte 7.
            Ok(Some(reply)) => Ok(reply.get(7) == Some(&RTN_LOCAL)),
            Ok(None) => Err(SysError::other(
                op,
                io::ErrorKind::InvalidData,
                "no route in reply",
            )),
            Err(e)
                if matches!(
                    SysError::errno_of(&e),
                    Some(libc::ENETUNREACH | libc::EHOSTUNREACH)
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Block until `addr` is usable as a local address, polling every 5 ms for up to `timeout`.
    ///
    /// IPv4 addresses are usable as soon as [`Self::add_address`] returns. IPv6 addresses become
    /// usable asynchronously: the kernel installs their local route from its DAD work item (even
    /// with `IFA_F_NODAD`) and only once the link is up, so packets to a fresh IPv6 address can
    /// be dropped for a few milliseconds. Call this after [`Self::link_set_up`].
    pub fn wait_local(&mut self, addr: IpAddr, timeout: Duration) -> io::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.is_local(addr)? {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(SysError::other(
                    format!("wait for local address {addr}"),
                    io::ErrorKind::TimedOut,
                    format!("not usable after {timeout:?} (is the link up?)"),
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// `(protocol, scope, table)` of the route message in `kind`.
    #[allow(clippy::too_many_arguments)]
    fn route(
        &mut self,
        op: &str,
        ty: u16,
        extra_flags: u16,
        kind: (u8, u8, u32),
        ifindex: u32,
        dst: IpAddr,
        prefix_len: u8,
    ) -> io::Result<()> {
        let (protocol, scope, table) = kind;
        check_prefix(op, dst, prefix_len)?;
        let (family, bytes) = match dst {
            IpAddr::V4(a) => (libc::AF_INET as u8, a.octets().to_vec()),
            IpAddr::V6(a) => (libc::AF_INET6 as u8, a.octets().to_vec()),
        };
        let mut req = Request::new(ty, NLM_F_REQUEST | NLM_F_ACK | extra_flags);
        // struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type (u8), flags u32.
        req.push(&[
            family,
            prefix_len,
            0,
            0,
            table_byte(table),
            protocol,
            scope,
            RTN_UNICAST,
        ]);
        req.push(&0u32.to_ne_bytes());
        if prefix_len > 0 {
            req.attr(RTA_DST, &bytes);
        }
        req.attr(RTA_OIF, &ifindex.to_ne_bytes());
        req.attr(RTA_TABLE, &table.to_ne_bytes());
        self.transact(op, req).map(drop)
    }

    /// Send `req` and read replies until its ACK. Returns the payload of the first non-control
    /// reply message (for GET requests), or `None`.
    fn transact(&mut self, op: &str, req: Request) -> io::Result<Option<Vec<u8>>> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let msg = req.finish(seq);
        // SAFETY: `msg` is a valid readable buffer of `msg.len()` bytes for the whole call.
        let sent =
            cvt_size(unsafe { libc::send(self.fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) })
                .map_err(|e| SysError::wrap(format!("{op}: send"), e))?;
        if sent != msg.len() {
            return Err(SysError::other(
                op,
                io::ErrorKind::WriteZero,
                "short netlink send",
            ));
        }

        let mut reply = None;
        loop {
            let n = self.recv(op)?;
            let mut data = &self.buf[..n];
            while !data.is_empty() {
                let msg = NlMsg::parse(data).ok_or_else(|| {
                    SysError::other(op, io::ErrorKind::InvalidData, "malformed netlink message")
                })?;
                data = data.get(msg.advance..).unwrap_or(&[]);
                if msg.seq != seq {
                    continue; // A stale reply to an earlier (timed-out) request.
                }
                match msg.ty {
                    NLMSG_ERROR => return parse_ack(op, msg.flags, msg.payload).map(|()| reply),
                    NLMSG_DONE => return Ok(reply),
                    NLMSG_NOOP => {}
                    _ => {
                        if reply.is_none() {
                            reply = Some(msg.payload.to_vec());
                        }
                    }
                }
            }
        }
    }

    /// Receive one datagram from the kernel into `self.buf`, returning its length.
    fn recv(&mut self, op: &str) -> io::Result<usize> {
        loop {
            // SAFETY: `sockaddr_nl` is a plain C struct for which all-zero bytes are valid.
            let mut from: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
            let mut from_len = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
            // SAFETY: `self.buf` is writable for `self.buf.len()` bytes; `from`/`from_len` are
            // live locals of the advertised size. MSG_TRUNC makes the kernel report the real
            // datagram length so truncation is detected below.
            let ret = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    self.buf.as_mut_ptr().cast(),
                    self.buf.len(),
                    libc::MSG_TRUNC,
                    (&mut from as *mut libc::sockaddr_nl).cast(),
                    &mut from_len,
                )
            };
            let n = match cvt_size(ret) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Err(SysError::other(
                        op,
                        io::ErrorKind::TimedOut,
                        format!("no netlink reply within {RECV_TIMEOUT_SECS} s"),
                    ))
                }
                Err(e) => return Err(SysError::wrap(format!("{op}: recv"), e)),
            };
            if n > self.buf.len() {
                return Err(SysError::other(
                    op,
                    io::ErrorKind::InvalidData,
                    "netlink reply truncated",
                ));
            }
            if from.nl_pid != 0 {
                continue; // Not from the kernel.
            }
            return Ok(n);
        }
    }
}

/// One parsed netlink message header with its payload.
struct NlMsg<'a> {
    ty: u16,
    flags: u16,
    seq: u32,
    payload: &'a [u8],
    /// Bytes to skip to reach the next message (aligned length, clamped to the buffer).
    advance: usize,
}

impl<'a> NlMsg<'a> {
    fn parse(data: &'a [u8]) -> Option<Self> {
        let h = data.get(..NLMSG_HDRLEN)?;
        let len = usize::try_from(u32::from_ne_bytes(h[0..4].try_into().ok()?)).ok()?;
        if len < NLMSG_HDRLEN || len > data.len() {
            return None;
        }
        Some(Self {
            ty: u16::from_ne_bytes([h[4], h[5]]),
            flags: u16::from_ne_bytes([h[6], h[7]]),
            seq: u32::from_ne_bytes(h[8..12].try_into().ok()?),
            payload: &data[NLMSG_HDRLEN..len],
            advance: align4(len).min(data.len()),
        })
    }
}

/// Interpret an `NLMSG_ERROR` payload: `Ok` for an ACK (error 0), else the errno as an error
/// naming `op`, with the kernel's extended-ACK message if present.
fn parse_ack(op: &str, flags: u16, payload: &[u8]) -> io::Result<()> {
    let malformed = || SysError::other(op, io::ErrorKind::InvalidData, "malformed NLMSG_ERROR");
    let err = i32::from_ne_bytes(
        payload
            .get(0..4)
            .ok_or_else(malformed)?
            .try_into()
            .map_err(|_| malformed())?,
    );
    if err == 0 {
        return Ok(());
    }
    let errno = err.checked_neg().filter(|e| *e > 0).ok_or_else(malformed)?;
    let mut detail = None;
    if flags & NLM_F_ACK_TLVS != 0 {
        // struct nlmsgerr { int error; struct nlmsghdr msg; } followed by the echoed request
        // payload unless capped, then the TLVs.
        let echoed_len = if flags & NLM_F_CAPPED != 0 {
            NLMSG_HDRLEN
        } else {
            payload
                .get(4..8)
                .and_then(|b| b.try_into().ok())
                .map(u32::from_ne_bytes)
                .and_then(|l| usize::try_from(l).ok())
                .unwrap_or(NLMSG_HDRLEN)
        };
        let tlvs = payload.get(4 + align4(echoed_len)..).unwrap_or(&[]);
        detail = ext_ack_message(tlvs);
    }
    Err(SysError::from_errno(op, errno, detail))
}

/// Find `NLMSGERR_ATTR_MSG` in extended-ACK attributes.
fn ext_ack_message(mut tlvs: &[u8]) -> Option<String> {
    while tlvs.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([tlvs[0], tlvs[1]]));
        let ty = u16::from_ne_bytes([tlvs[2], tlvs[3]]) & 0x3fff;
        if len < 4 || len > tlvs.len() {
            return None;
        }
        if ty == NLMSGERR_ATTR_MSG {
            let s = &tlvs[4..len];
            let s = s.split(|&b| b == 0).next().unwrap_or(s);
            return Some(String::from_utf8_lossy(s).into_owned());
        }
        tlvs = tlvs.get(align4(len)..).unwrap_or(&[]);
    }
    None
}

/// One policy routing rule of a default route (docs/CONFIG.md, "Default route").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// `not fwmark MARK table TABLE`: every packet but those of the marked underlay socket looks
    /// up TABLE (which holds the default route into the TUN device).
    UnmarkedToTable {
        /// The underlay socket's `SO_MARK`.
        mark: u32,
        /// The routing table of the default route.
        table: u32,
    },
    /// `table main suppress_prefixlength 0`: the main table first, minus its default routes, so
    /// its more specific routes (the LAN, the underlay) keep winning.
    MainWithoutDefault,
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::UnmarkedToTable { mark, table } => {
                write!(f, "not fwmark {mark:#x} table {table}")
            }
            Self::MainWithoutDefault => f.write_str("table main suppress_prefixlength 0"),
        }
    }
}

fn family_name(v6: bool) -> &'static str {
    if v6 {
        "IPv6"
    } else {
        "IPv4"
    }
}

/// The `rtm_table` byte for `table`: itself below 256, `RT_TABLE_COMPAT` with the full number in
/// the table attribute otherwise.
fn table_byte(table: u32) -> u8 {
    u8::try_from(table).unwrap_or(RT_TABLE_COMPAT)
}

/// `struct fib_rule_hdr` of `rule`: family, dst_len, src_len, tos, table, res1, res2, action (u8
/// each), flags (u32).
fn rule_request(v6: bool, rule: Rule) -> [u8; 12] {
    let family = if v6 { libc::AF_INET6 } else { libc::AF_INET } as u8;
    let (table, flags) = match rule {
        Rule::UnmarkedToTable { table, .. } => (table, FIB_RULE_INVERT),
        Rule::MainWithoutDefault => (u32::from(RT_TABLE_MAIN), 0),
    };
    let mut h = [0u8; 12];
    h[0] = family;
    h[4] = table_byte(table);
    h[7] = FR_ACT_TO_TBL;
    h[8..12].copy_from_slice(&flags.to_ne_bytes());
    h
}

/// The `u32` attributes of `rule`.
fn rule_attrs(rule: Rule) -> Vec<(u16, u32)> {
    match rule {
        Rule::UnmarkedToTable { mark, table } => vec![
            (FRA_TABLE, table),
            (FRA_FWMARK, mark),
            (FRA_FWMASK, u32::MAX),
        ],
        Rule::MainWithoutDefault => vec![
            (FRA_TABLE, u32::from(RT_TABLE_MAIN)),
            (FRA_SUPPRESS_PREFIXLEN, 0),
        ],
    }
}

/// A netlink request under construction (header first, length and sequence filled at the end).
struct Request {
    buf: Vec<u8>,
}

impl Request {
    fn new(ty: u16, flags: u16) -> Self {
        let mut buf = Vec::with_capacity(128);
        buf.extend_from_slice(&[0; 4]); // nlmsg_len, filled in by finish()
        buf.extend_from_slice(&ty.to_ne_bytes());
        buf.extend_from_slice(&flags.to_ne_bytes());
        buf.extend_from_slice(&[0; 8]); // nlmsg_seq, nlmsg_pid
        Self { buf }
    }

    /// Append a fixed family header (`ifinfomsg`, `ifaddrmsg`, `rtmsg`), keeping 4-byte alignment.
    fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        self.pad();
    }

    /// Append an `rtattr` (length, type, payload, padding).
    fn attr(&mut self, ty: u16, payload: &[u8]) {
        let len = u16::try_from(4 + payload.len()).unwrap_or(u16::MAX);
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(payload);
        self.pad();
    }

    fn pad(&mut self) {
        self.buf.resize(align4(self.buf.len()), 0);
    }

    fn finish(mut self, seq: u32) -> Vec<u8> {
        let len = u32::try_from(self.buf.len()).unwrap_or(u32::MAX);
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf[8..12].copy_from_slice(&seq.to_ne_bytes());
        self.buf
    }
}

/// `struct ifinfomsg` for `AF_UNSPEC` with the given index, flags and change mask.
fn ifinfomsg(index: i32, flags: u32, change: u32) -> [u8; 16] {
    let mut m = [0u8; 16];
    m[4..8].copy_from_slice(&index.to_ne_bytes());
    m[8..12].copy_from_slice(&flags.to_ne_bytes());
    m[12..16].copy_from_slice(&change.to_ne_bytes());
    m
}

fn ifindex_i32(op: &str, ifindex: u32) -> io::Result<i32> {
    i32::try_from(ifindex)
        .ok()
        .filter(|&i| i > 0)
        .ok_or_else(|| SysError::other(op, io::ErrorKind::InvalidInput, "invalid ifindex"))
}

fn check_prefix(op: impl Display, addr: IpAddr, prefix_len: u8) -> io::Result<()> {
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if prefix_len > max {
        return Err(SysError::other(
            op.to_string(),
            io::ErrorKind::InvalidInput,
            format!("prefix length {prefix_len} > {max}"),
        ));
    }
    Ok(())
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

fn setsockopt_int(
    fd: &OwnedFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: the option value is a live `c_int` local and the length passed is its size.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
    .map(drop)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn constants_match_libc() {
        assert_eq!(NLMSG_ERROR, libc::NLMSG_ERROR as u16);
        assert_eq!(NLMSG_DONE, libc::NLMSG_DONE as u16);
        assert_eq!(NLM_F_ACK, libc::NLM_F_ACK as u16);
        assert_eq!(NLM_F_CREATE, libc::NLM_F_CREATE as u16);
        assert_eq!(NLM_F_EXCL, libc::NLM_F_EXCL as u16);
        assert_eq!(NLM_F_ACK_TLVS, libc::NLM_F_ACK_TLVS as u16);
        assert_eq!(NLM_F_CAPPED, libc::NLM_F_CAPPED as u16);
        assert_eq!(NETLINK_EXT_ACK, libc::NETLINK_EXT_ACK);
        assert_eq!(NETLINK_CAP_ACK, libc::NETLINK_CAP_ACK);
        assert_eq!(SOL_NETLINK, libc::SOL_NETLINK);
        assert_eq!(RTM_NEWLINK, libc::RTM_NEWLINK);
        assert_eq!(RTM_GETLINK, libc::RTM_GETLINK);
        assert_eq!(RTM_NEWADDR, libc::RTM_NEWADDR);
        assert_eq!(RTM_DELADDR, libc::RTM_DELADDR);
        assert_eq!(RTM_NEWROUTE, libc::RTM_NEWROUTE);
        assert_eq!(RTM_DELROUTE, libc::RTM_DELROUTE);
        assert_eq!(RTM_GETROUTE, libc::RTM_GETROUTE);
        assert_eq!(RTM_NEWRULE, libc::RTM_NEWRULE);
        assert_eq!(RTM_DELRULE, libc::RTM_DELRULE);
        assert_eq!(RTA_TABLE, libc::RTA_TABLE);
        assert_eq!(RT_TABLE_COMPAT, libc::RT_TABLE_COMPAT);
        assert_eq!(RTN_LOCAL, libc::RTN_LOCAL);
        assert_eq!(IFLA_IFNAME, libc::IFLA_IFNAME);
        assert_eq!(IFLA_MTU, libc::IFLA_MTU);
        assert_eq!(IFA_ADDRESS, libc::IFA_ADDRESS);
        assert_eq!(IFA_LOCAL, libc::IFA_LOCAL);
        assert_eq!(u32::from(IFA_F_NODAD), libc::IFA_F_NODAD);
        assert_eq!(RTA_DST, libc::RTA_DST);
        assert_eq!(RTA_OIF, libc::RTA_OIF);
        assert_eq!(RT_TABLE_MAIN, libc::RT_TABLE_MAIN);
        assert_eq!(RTPROT_STATIC, libc::RTPROT_STATIC);
        assert_eq!(RT_SCOPE_LINK, libc::RT_SCOPE_LINK);
        assert_eq!(RT_SCOPE_NOWHERE, libc::RT_SCOPE_NOWHERE);
        assert_eq!(RTN_UNICAST, libc::RTN_UNICAST);
        assert_eq!(IFF_UP, libc::IFF_UP as u32);
    }

    #[test]
    fn request_layout() {
        let mut r = Request::new(RTM_NEWADDR, NLM_F_REQUEST | NLM_F_ACK);
        r.push(&[2, 24, 0, 0, 7, 0, 0, 0]);
        r.attr(IFA_LOCAL, &[10, 201, 0, 1]);
        r.attr(IFLA_IFNAME, b"abcde\0"); // 10 bytes -> padded to 12
        let m = r.finish(42);
        assert_eq!(m.len(), 16 + 8 + 8 + 12);
        assert_eq!(
            u32::from_ne_bytes(m[0..4].try_into().unwrap()) as usize,
            m.len()
        );
        assert_eq!(u32::from_ne_bytes(m[8..12].try_into().unwrap()), 42);
        assert_eq!(u16::from_ne_bytes([m[32], m[33]]), 10);
    }

    #[test]
    fn rule_layout() {
        let r = Rule::UnmarkedToTable {
            mark: 0x7077,
            table: 7077,
        };
        let h = rule_request(false, r);
        assert_eq!(h[0], libc::AF_INET as u8);
        assert_eq!(
            h[4], RT_TABLE_COMPAT,
            "tables past 255 go in FRA_TABLE only"
        );
        assert_eq!(h[7], FR_ACT_TO_TBL);
        assert_eq!(
            u32::from_ne_bytes(h[8..12].try_into().unwrap()),
            FIB_RULE_INVERT
        );
        assert_eq!(
            rule_attrs(r),
            vec![
                (FRA_TABLE, 7077),
                (FRA_FWMARK, 0x7077),
                (FRA_FWMASK, u32::MAX)
            ]
        );
        assert_eq!(r.to_string(), "not fwmark 0x7077 table 7077");
        let m = rule_request(true, Rule::MainWithoutDefault);
        assert_eq!(m[0], libc::AF_INET6 as u8);
        assert_eq!(m[4], RT_TABLE_MAIN);
        assert_eq!(u32::from_ne_bytes(m[8..12].try_into().unwrap()), 0);
        assert!(rule_attrs(Rule::MainWithoutDefault).contains(&(FRA_SUPPRESS_PREFIXLEN, 0)));
        assert_eq!(table_byte(100), 100);
    }

    fn nlmsg(ty: u16, flags: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let mut r = Request::new(ty, flags);
        r.buf.extend_from_slice(payload);
        r.finish(seq)
    }

    #[test]
    fn parses_acks_and_errors() {
        assert!(parse_ack("op", 0, &0i32.to_ne_bytes()).is_ok());
        let e = parse_ack("netlink add x", 0, &(-libc::EEXIST).to_ne_bytes()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(SysError::errno_of(&e), Some(libc::EEXIST));
        assert!(e.to_string().starts_with("netlink add x: "), "{e}");
        assert!(parse_ack("op", 0, &[0, 0]).is_err());

        // Capped error with an extended-ACK message.
        let mut p = (-libc::EINVAL).to_ne_bytes().to_vec();
        p.extend_from_slice(&[0; 16]);
        p.extend_from_slice(&8u16.to_ne_bytes());
        p.extend_from_slice(&NLMSGERR_ATTR_MSG.to_ne_bytes());
        p.extend_from_slice(b"bad\0");
        let e = parse_ack("op", NLM_F_ACK_TLVS | NLM_F_CAPPED, &p).unwrap_err();
        let se = e.get_ref().unwrap().downcast_ref::<SysError>().unwrap();
        assert_eq!(se.errno(), Some(libc::EINVAL));
        assert_eq!(se.detail(), Some("bad"));
        // TLV length past the end is ignored, not a panic.
        let mut p2 = p.clone();
        p2[20] = 200;
        assert!(parse_ack("op", NLM_F_ACK_TLVS | NLM_F_CAPPED, &p2).is_err());
    }

    #[test]
    fn message_parser_is_bounded() {
        let m = nlmsg(NLMSG_ERROR, 0, 7, &0i32.to_ne_bytes());
        let p = NlMsg::parse(&m).unwrap();
        assert_eq!(
            (p.ty, p.seq, p.payload.len(), p.advance),
            (NLMSG_ERROR, 7, 4, 20)
        );
        for cut in 0..m.len() {
            assert!(NlMsg::parse(&m[..cut]).is_none());
        }
        let mut bad = m.clone();
        bad[0..4].copy_from_slice(&8u32.to_ne_bytes());
        assert!(NlMsg::parse(&bad).is_none());
    }
}
