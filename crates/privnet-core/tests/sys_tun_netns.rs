//! Real-OS tests of `privnet_core::io::sys` (TUN, rtnetlink, netns) and of the ICMP builders in
//! `privnet_core::icmp` against the Linux stack.
//!
//! Each test creates its own network namespace `pnt-<pid>-<n>` (removed by a guard even on
//! failure), enters it from a dedicated thread and uses only 10.201.0.0/16 and fd00:201::/48
//! inside it. They need root, `/dev/net/tun` and iproute2 (`ip` is used only to *check* state);
//! without root they are reported as skipped (`support/privileged.rs`), except where
//! `PRIVNET_REQUIRE_PRIVILEGED_TESTS=1` (CI) makes that a failure.
// A test: it reads the real clock or opens sockets (see clippy.toml).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]
#![cfg(all(target_os = "linux", feature = "driver"))]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::Command;
use std::time::Duration;

use privnet_core::icmp::{self, V4Error, V6Error};
use privnet_core::io::sys::netlink::Netlink;
use privnet_core::io::sys::tun::{TunConfig, TunDevice, VirtioNetHdr, VNET_HDR_LEN};
use privnet_core::io::sys::SysError;
use privnet_core::packet::IpPacket;
use tokio::net::{TcpSocket, UdpSocket};

#[path = "support/netns.rs"]
mod netns_harness;
#[path = "support/privileged.rs"]
mod privileged;

use netns_harness::{step, Netns, STEP_TIMEOUT};

const A4: Ipv4Addr = Ipv4Addr::new(10, 201, 0, 1); // our address on the TUN
const GW4: Ipv4Addr = Ipv4Addr::new(10, 201, 0, 254); // where ICMP errors come from
const A6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x201, 0, 0, 0, 0, 0, 1);
const GW6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x201, 0, 0, 0, 0, 0, 0xfe);
/// Routed to the TUN: 10.201.1.0/24 and fd00:201:1::/64.
const R4: Ipv4Addr = Ipv4Addr::new(10, 201, 1, 0);
const R6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x201, 1, 0, 0, 0, 0, 0);

fn remote4(host: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 201, 1, host)
}

fn remote6(host: u16) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, 0x201, 1, 0, 0, 0, 0, host)
}

/// Create TUN `name` with `cfg`, MTU 1380, addresses A4/24 and A6/64 (or the given ones), link
/// up and routes to R4/24 and R6/64 (or the given ones).
fn setup_tun(
    nl: &mut Netlink,
    cfg: TunConfig,
    v4: (Ipv4Addr, Ipv4Addr),
    v6: (Ipv6Addr, Ipv6Addr),
) -> TunDevice {
    let tun = TunDevice::create(&cfg).expect("create TUN");
    assert_eq!(tun.name(), cfg.name);
    let idx = nl.link_index(&cfg.name).expect("link_index");
    assert_eq!(idx, tun.ifindex());
    nl.set_mtu(idx, 1380).expect("set_mtu");
    nl.add_address(idx, IpAddr::V4(v4.0), 24)
        .expect("add v4 address");
    nl.add_address(idx, IpAddr::V6(v6.0), 64)
        .expect("add v6 address");
    nl.link_set_up(idx).expect("link up");
    nl.add_route(idx, IpAddr::V4(v4.1), 24)
        .expect("add v4 route");
    nl.add_route(idx, IpAddr::V6(v6.1), 64)
        .expect("add v6 route");
    assert!(
        nl.is_local(IpAddr::V4(v4.0)).expect("is_local v4"),
        "IPv4 address is usable at once"
    );
    nl.wait_local(IpAddr::V6(v6.0), STEP_TIMEOUT)
        .expect("IPv6 address becomes usable");
    tun
}

/// Read packets from the TUN until one satisfies `pred` (skipping e.g. IPv6 router
/// solicitations and MLD reports the kernel sends on link up).
async fn recv_matching(
    tun: &TunDevice,
    what: &str,
    pred: impl Fn(&IpPacket<&[u8]>, &[u8]) -> bool,
) -> Vec<u8> {
    let off = if tun.vnet_hdr() { VNET_HDR_LEN } else { 0 };
    let mut buf = vec![0u8; 65_536 + VNET_HDR_LEN];
    step(what, async {
        loop {
            let n = tun.recv(&mut buf).await.expect("TUN recv");
            let Some(pkt) = buf.get(off..n) else { continue };
            if let Ok(peek) = IpPacket::new_checked(pkt) {
                if pred(&peek, pkt) {
                    return buf[..n].to_vec();
                }
            }
        }
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// Packet construction for injection (test-only, independent of the code under test)

fn csum_add(mut sum: u32, data: &[u8]) -> u32 {
    for c in data.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    sum
}

fn csum_fold(mut sum: u32) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn udp_header(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let len = (8 + payload.len()) as u16;
    [
        &sport.to_be_bytes()[..],
        &dport.to_be_bytes(),
        &len.to_be_bytes(),
        &[0, 0],
        payload,
    ]
    .concat()
}

fn udp4_packet(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let (IpAddr::V4(s), IpAddr::V4(d)) = (src.ip(), dst.ip()) else {
        panic!("v4 only")
    };
    let udp = udp_header(src.port(), dst.port(), payload); // checksum 0 = none (IPv4)
    let total = (20 + udp.len()) as u16;
    let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0];
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&s.octets());
    ip.extend_from_slice(&d.octets());
    let cs = csum_fold(csum_add(0, &ip));
    ip[10..12].copy_from_slice(&cs.to_be_bytes());
    [ip, udp].concat()
}

fn udp6_packet(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let (IpAddr::V6(s), IpAddr::V6(d)) = (src.ip(), dst.ip()) else {
        panic!("v6 only")
    };
    let mut udp = udp_header(src.port(), dst.port(), payload);
    let len = udp.len() as u16;
    let mut sum = csum_add(csum_add(0, &s.octets()), &d.octets());
    sum += u32::from(len) + 17;
    let cs = csum_fold(csum_add(sum, &udp));
    udp[6..8].copy_from_slice(&(if cs == 0 { 0xffff } else { cs }).to_be_bytes());
    let mut ip = vec![0x60, 0, 0, 0];
    ip.extend_from_slice(&len.to_be_bytes());
    ip.extend_from_slice(&[17, 64]);
    ip.extend_from_slice(&s.octets());
    ip.extend_from_slice(&d.octets());
    [ip, udp].concat()
}

fn udp_ports(peek: &IpPacket<&[u8]>, _pkt: &[u8]) -> Option<(u16, u16)> {
    peek.ports()
}

// ---------------------------------------------------------------------------------------------
// Tests

/// TUN + netlink configuration is visible to `ip`; UDP flows both ways through the TUN.
#[test]
fn tun_netlink_config_and_udp_both_ways() {
    let Some(ns) = Netns::create("tun_netlink_config_and_udp_both_ways") else {
        return;
    };
    ns.run(|ns_name| async move {
        let mut nl = Netlink::new().expect("netlink socket");
        let lo = nl.link_index("lo").expect("lo index");
        nl.link_set_up(lo).expect("lo up");
        let cfg = TunConfig { name: "pnt0".into(), mtu: Some(1400), ..TunConfig::default() };
        let tun = setup_tun(&mut nl, cfg, (A4, R4), (A6, R6));

        // Check the state with the `ip` tool.
        let ip = |args: &[&str]| {
            let out = Command::new("ip").arg("-n").arg(&ns_name).args(args).output().expect("ip");
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let link = ip(&["link", "show", "pnt0"]);
        let addrs = ip(&["addr", "show", "dev", "pnt0"]);
        let routes4 = ip(&["-4", "route", "show", "dev", "pnt0"]);
        let routes6 = ip(&["-6", "route", "show", "dev", "pnt0"]);
        println!("--- ip link ---\n{link}--- ip addr ---\n{addrs}--- ip -4 route ---\n{routes4}--- ip -6 route ---\n{routes6}");
        assert!(link.contains("mtu 1380"), "{link}");
        assert!(link.contains(",UP"), "{link}");
        assert!(addrs.contains("inet 10.201.0.1/24"), "{addrs}");
        assert!(addrs.contains("inet6 fd00:201::1/64"), "{addrs}");
        assert!(routes4.contains("10.201.1.0/24 proto static scope link"), "{routes4}");
        assert!(routes6.contains("fd00:201:1::/64 proto static"), "{routes6}");

        // Local socket -> routed address -> read from the TUN (IPv4 and IPv6).
        for (local, remote) in [
            (SocketAddr::new(A4.into(), 0), SocketAddr::new(remote4(5).into(), 9999)),
            (SocketAddr::new(A6.into(), 0), SocketAddr::new(remote6(5).into(), 9999)),
        ] {
            let sock = UdpSocket::bind(local).await.expect("bind UDP");
            let port = sock.local_addr().expect("local_addr").port();
            let payload = format!("hello via tun to {remote}");
            step("send UDP", sock.send_to(payload.as_bytes(), remote)).await.expect("send_to");
            let pkt = recv_matching(&tun, "UDP datagram on the TUN", |p, pkt| {
                p.dst_addr() == remote.ip() && p.protocol() == icmp::PROTO_UDP && udp_ports(p, pkt) == Some((port, 9999))
            })
            .await;
            let peek = IpPacket::new_checked(&pkt[..]).expect("parse");
            assert_eq!(peek.src_addr(), local.ip());
            assert_eq!(&peek.payload().expect("payload")[8..], payload.as_bytes());
            println!("read {} bytes from TUN: {} -> {} proto {}", pkt.len(), peek.src_addr(), peek.dst_addr(), peek.protocol());

            // TUN -> local socket: inject a reply from the remote.
            let from = remote;
            let to = SocketAddr::new(local.ip(), port);
            let reply = if from.is_ipv4() {
                udp4_packet(from, to, b"reply through the tun")
            } else {
                udp6_packet(from, to, b"reply through the tun")
            };
            let n = step("TUN send", tun.send(&reply)).await.expect("TUN send");
            assert_eq!(n, reply.len());
            let mut buf = [0u8; 256];
            let (n, src) = step("UDP recv of injected packet", sock.recv_from(&mut buf)).await.expect("recv_from");
            assert_eq!(&buf[..n], b"reply through the tun");
            assert_eq!(src, from);
            println!("socket {to} received {n} bytes from {src} injected into the TUN");
        }

        // try_recv never blocks: drain whatever is queued, then WouldBlock.
        let mut buf = [0u8; 2048];
        let mut drained = 0;
        loop {
            match tun.try_recv(&mut buf) {
                Ok(_) => drained += 1,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("try_recv: {e}"),
            }
            assert!(drained < 1000, "try_recv never reported WouldBlock");
        }

        // Route deletion and link down are visible too.
        nl.del_route(tun.ifindex(), IpAddr::V4(R4), 24).expect("del v4 route");
        nl.del_route(tun.ifindex(), IpAddr::V6(R6), 64).expect("del v6 route");
        let routes = ip(&["route", "show", "dev", "pnt0"]) + &ip(&["-6", "route", "show", "dev", "pnt0"]);
        assert!(!routes.contains("10.201.1.0/24") && !routes.contains("fd00:201:1::/64"), "{routes}");
        nl.link_set_down(tun.ifindex()).expect("link down");
        let link = ip(&["link", "show", "pnt0"]);
        assert!(!link.contains(",UP"), "{link}");
    });
    drop(ns);
}

/// ICMP errors built by `privnet_core::icmp` and written into the TUN are accepted by Linux:
/// unreachable errors abort TCP connects with EHOSTUNREACH, and "fragmentation needed" /
/// "packet too big" lower the path MTU.
#[test]
fn icmp_errors_are_honoured_by_the_kernel() {
    let Some(ns) = Netns::create("icmp_errors_are_honoured_by_the_kernel") else {
        return;
    };
    ns.run(|ns_name| async move {
        let mut nl = Netlink::new().expect("netlink socket");
        let lo = nl.link_index("lo").expect("lo index");
        nl.link_set_up(lo).expect("lo up");
        let tun = setup_tun(&mut nl, TunConfig::new("pnt0"), (A4, R4), (A6, R6));
        let mut out = [0u8; 1500];

        // TCP connect -> SYN on the TUN -> host/address unreachable -> connect fails.
        for (remote, from) in [
            (SocketAddr::new(remote4(7).into(), 80), IpAddr::V4(GW4)),
            (SocketAddr::new(remote6(7).into(), 80), IpAddr::V6(GW6)),
        ] {
            let sock = if remote.is_ipv4() {
                TcpSocket::new_v4()
            } else {
                TcpSocket::new_v6()
            };
            let sock = sock.expect("tcp socket");
            let connect = sock.connect(remote);
            let answer = async {
                let syn = recv_matching(&tun, "TCP SYN on the TUN", |p, _| {
                    p.dst_addr() == remote.ip() && p.protocol() == icmp::PROTO_TCP
                })
                .await;
                let n = match from {
                    IpAddr::V4(f) => {
                        icmp::build_v4_error(&mut out, f, &syn, V4Error::HostUnreachable)
                    }
                    IpAddr::V6(f) => {
                        icmp::build_v6_error(&mut out, f, &syn, V6Error::AddressUnreachable)
                    }
                };
                let n = n.expect("ICMP error for a SYN");
                step("TUN send ICMP", tun.send(&out[..n]))
                    .await
                    .expect("TUN send");
            };
            let (res, ()) = step("connect to fail", async { tokio::join!(connect, answer) }).await;
            let err = res.expect_err("connect must fail after the ICMP error");
            println!("connect {remote}: {err}");
            assert_eq!(err.raw_os_error(), Some(libc::EHOSTUNREACH), "{err}");
        }

        // UDP + fragmentation needed / packet too big -> route cache MTU.
        for (local, remote, from, mtu) in [
            (
                SocketAddr::new(A4.into(), 0),
                SocketAddr::new(remote4(6).into(), 9999),
                IpAddr::V4(GW4),
                1200u32,
            ),
            (
                SocketAddr::new(A6.into(), 0),
                SocketAddr::new(remote6(6).into(), 9999),
                IpAddr::V6(GW6),
                1300u32,
            ),
        ] {
            let sock = UdpSocket::bind(local).await.expect("bind UDP");
            step("send UDP", sock.send_to(&[0x5a; 1300], remote))
                .await
                .expect("send_to");
            let pkt = recv_matching(&tun, "big UDP datagram", |p, _| {
                p.dst_addr() == remote.ip() && p.protocol() == icmp::PROTO_UDP
            })
            .await;
            let n = match from {
                IpAddr::V4(f) => icmp::build_v4_error(
                    &mut out,
                    f,
                    &pkt,
                    V4Error::FragmentationNeeded {
                        next_hop_mtu: mtu as u16,
                    },
                ),
                IpAddr::V6(f) => {
                    icmp::build_v6_error(&mut out, f, &pkt, V6Error::PacketTooBig { mtu })
                }
            };
            let n = n.expect("ICMP error for a big datagram");
            step("TUN send ICMP", tun.send(&out[..n]))
                .await
                .expect("TUN send");
            let want = format!("mtu {mtu}");
            let mut got = String::new();
            for _ in 0..50 {
                let out = Command::new("ip")
                    .arg("-n")
                    .arg(&ns_name)
                    .args(["route", "get"])
                    .arg(remote.ip().to_string())
                    .output()
                    .expect("ip route get");
                got = String::from_utf8_lossy(&out.stdout).into_owned();
                if got.contains(&want) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            println!("ip route get {}: {}", remote.ip(), got.trim());
            assert!(got.contains(&want), "path MTU not lowered to {mtu}: {got}");
        }
    });
}

/// `vnet_hdr`: offloads are negotiated and every packet carries a virtio-net header.
/// `multi_queue`: a second queue attaches to the same interface.
#[test]
fn vnet_hdr_and_multi_queue() {
    let Some(ns) = Netns::create("vnet_hdr_and_multi_queue") else {
        return;
    };
    ns.run(|ns_name| async move {
        let mut nl = Netlink::new().expect("netlink socket");
        let cfg = TunConfig {
            name: "pnt1".into(),
            vnet_hdr: true,
            ..TunConfig::default()
        };
        let tun = setup_tun(&mut nl, cfg, (A4, R4), (A6, R6));
        assert!(tun.vnet_hdr());
        let off = tun.offloads();
        println!("offloads: {off:?}");
        assert!(off.csum && off.tso4 && off.tso6, "{off:?}");

        let sock = UdpSocket::bind(SocketAddr::new(A4.into(), 0))
            .await
            .expect("bind");
        let port = sock.local_addr().expect("local_addr").port();
        let remote = SocketAddr::new(remote4(5).into(), 9999);
        step("send", sock.send_to(b"vnet", remote))
            .await
            .expect("send_to");
        let frame = recv_matching(&tun, "UDP with vnet header", |p, _| {
            p.dst_addr() == remote.ip() && p.protocol() == icmp::PROTO_UDP
        })
        .await;
        let hdr = VirtioNetHdr::decode(&frame).expect("vnet header");
        println!("virtio_net_hdr on read: {hdr:?}");
        assert_eq!(hdr.gso_type, 0, "a 4-byte datagram is not a GSO packet");
        let peek = IpPacket::new_checked(&frame[VNET_HDR_LEN..]).expect("IP after the vnet header");
        assert_eq!(peek.src_addr(), IpAddr::V4(A4));

        // Write: zero header (no offload) + packet.
        let pkt = udp4_packet(remote, SocketAddr::new(A4.into(), port), b"vnet reply");
        let mut frame = vec![0u8; VNET_HDR_LEN];
        VirtioNetHdr::default().encode(&mut frame).expect("encode");
        frame.extend_from_slice(&pkt);
        step("TUN send", tun.send(&frame)).await.expect("TUN send");
        let mut buf = [0u8; 64];
        let (n, _) = step("recv", sock.recv_from(&mut buf))
            .await
            .expect("recv_from");
        assert_eq!(&buf[..n], b"vnet reply");

        let mq_cfg = TunConfig {
            name: "pnt2".into(),
            multi_queue: true,
            ..TunConfig::default()
        };
        let q0 = TunDevice::create(&mq_cfg).expect("multi-queue TUN");
        let q1 = q0.clone_queue().expect("second queue");
        assert!(q1.multi_queue());
        assert_eq!(q0.ifindex(), q1.ifindex());
        assert!(
            tun.clone_queue().is_err(),
            "single-queue device must refuse clone_queue"
        );

        // iproute2 shows the TUN flags the kernel recorded.
        let details = |dev: &str| {
            let out = Command::new("ip")
                .arg("-n")
                .arg(&ns_name)
                .args(["-d", "link", "show", dev])
                .output()
                .expect("ip -d link");
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let (d1, d2) = (details("pnt1"), details("pnt2"));
        println!("{d1}{d2}");
        assert!(
            d1.contains("pi off vnet_hdr on") && !d1.contains("multi_queue"),
            "{d1}"
        );
        assert!(d2.contains("vnet_hdr off multi_queue numqueues 2"), "{d2}");
    });
    // The devices go away with their last queue. Not instantly: a concurrent test thread's
    // fork() may briefly hold copies of the (close-on-exec) fds until its child execs.
    let mut links = String::new();
    for _ in 0..100 {
        links = ns.ip(&["link", "show"]);
        if !links.contains("pnt1") && !links.contains("pnt2") {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !links.contains("pnt1") && !links.contains("pnt2"),
        "{links}"
    );
}

/// Kernel errors come back as io::Errors naming the operation, with the errno.
#[test]
fn netlink_errors_name_the_operation() {
    let Some(ns) = Netns::create("netlink_errors_name_the_operation") else {
        return;
    };
    ns.run(|_| async move {
        let mut nl = Netlink::new().expect("netlink socket");
        let err = nl.link_index("nosuchdev0").expect_err("missing link");
        println!("{err}");
        assert_eq!(SysError::errno_of(&err), Some(libc::ENODEV), "{err}");
        assert!(err.to_string().contains("nosuchdev0"), "{err}");

        let tun = TunDevice::create(&TunConfig::new("pnt0")).expect("TUN");
        let idx = tun.ifindex();
        nl.add_address(idx, IpAddr::V4(A4), 24).expect("first add");
        let err = nl
            .add_address(idx, IpAddr::V4(A4), 24)
            .expect_err("duplicate add");
        println!("{err}");
        assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);
        assert!(
            err.to_string()
                .starts_with("netlink add address 10.201.0.1/24 on ifindex"),
            "{err}"
        );

        let err = nl.set_mtu(idx, 10).expect_err("MTU below minimum");
        println!("{err}");
        assert_eq!(SysError::errno_of(&err), Some(libc::EINVAL), "{err}");

        let err = nl
            .del_route(idx, IpAddr::V4(R4), 24)
            .expect_err("delete missing route");
        println!("{err}");
        assert_eq!(SysError::errno_of(&err), Some(libc::ESRCH), "{err}");

        let err = nl
            .add_route(idx, IpAddr::V4(remote4(5)), 24)
            .expect_err("host bits set");
        println!("{err}");
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{err}");

        let err = TunDevice::create(&TunConfig::new("way-too-long-name0")).expect_err("long name");
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    });
}
