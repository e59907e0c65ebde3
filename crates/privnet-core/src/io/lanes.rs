//! Per-peer receive lanes: one connected UDP socket per established peer, next to the main
//! underlay socket, read round robin.
//!
//! ## Why
//! Before decryption the one queue every sender shares is the kernel's receive buffer of the
//! underlay socket (`fair.rs`): while one member floods, every other member's packets wait behind
//! the flood's backlog, a drain time of milliseconds, whatever the gate drops after the read. A
//! *connected* UDP socket bound to the same address and port (`SO_REUSEPORT`) wins the kernel's
//! socket lookup for datagrams from its remote address and port (an exact 4-tuple scores above
//! the wildcard), so each peer's datagrams queue in their own kernel buffer, and the kernel's
//! tail drops hit the peer that overflows its own. The driver reads the ready sockets round
//! robin, one receive call (a datagram or a GRO train of up to 64) per socket per round: a ping
//! from a quiet member waits behind at most one train of the flood, not its whole backlog.
//!
//! ## How
//! * Lanes are opened for the peers the node reports with a session and an endpoint
//!   ([`Node::established_endpoints`](crate::node::Node::established_endpoints)), at most
//!   [`MAX_LANES`] (descriptors are a budget; the rest share the main socket), on every sync
//!   (the driver syncs when a session comes up or goes down, when a peer's endpoint changes,
//!   and every 10 s for anything no event announced; a sync walks every peer). A lane whose peer
//!   lost its session is closed; a moved peer's lane is reconnected to its new address (until
//!   then its datagrams arrive on the main socket, whose roaming rules see them as before).
//! * Everything else (handshakes from new peers, junk, peers without a lane) arrives on the
//!   main socket, which is a member of the same epoll set: the driver waits on the set alone.
//! * Every datagram is handled with the source address its receive reported, whichever socket it
//!   came from: which socket the kernel chose is a matter of queueing, never of trust.
//! * Sends stay on the main socket (one send path, one GSO state; the source port is the same).
//! * The main socket is bound without `SO_REUSEPORT` (so a second daemon on the same port fails
//!   with "address in use", as before) and gets the option after the bind, which lets the lanes
//!   join it. A process of the same user could join too; it could also read our memory.
//! * A lane takes the main socket's buffer size and firewall mark (so that its `connect` routes
//!   past a default route into the tunnel) and UDP GRO.
//!
//! `[tun] fairness = false` turns lanes off together with the fairness gate (the comparison runs of
//! `benches/lab/noisy.sh`).

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, SocketAddrV6};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use super::counters::{Counters, DriverEvent};
use super::sys;
use super::sys::epoll::Epoll;
use super::sys::udp as udpx;
use crate::PeerId;

/// Most per-peer receive sockets of one network.
pub(crate) const MAX_LANES: usize = 256;
/// The epoll token of the main socket (lanes use their slot index).
const MAIN: u64 = u64::MAX;

struct Lane {
    peer: PeerId,
    remote: SocketAddr,
    sock: std::net::UdpSocket,
    /// The sync that last wanted it.
    seen: u64,
}

/// The lanes of one driver, and the epoll set that holds them and the main socket.
pub(crate) struct Lanes {
    /// `None`: lanes are off (configured off, or the set could not be made).
    set: Option<AsyncFd<Epoll>>,
    main: RawFd,
    local: SocketAddr,
    socket_buffer: usize,
    mark: Option<u32>,
    slots: Vec<Option<Lane>>,
    free: Vec<usize>,
    by_peer: HashMap<PeerId, usize>,
    generation: u64,
    /// Tokens found ready and not yet read dry (kept between calls for its allocation).
    ready: Vec<u64>,
    warned: bool,
}

impl Lanes {
    /// Lanes next to the main socket `main` bound at `local` (which must already allow
    /// `SO_REUSEPORT`; see [`allow_lanes`]), or none when `enabled` is false or the epoll set
    /// cannot be made (logged). Needs the tokio runtime.
    pub(crate) fn new(enabled: bool, main: RawFd, local: SocketAddr, socket_buffer: usize) -> Self {
        let set = enabled
            .then(|| {
                let set = Epoll::new()?;
                set.add(main, MAIN)?;
                set.register()
            })
            .and_then(|r| {
                r.map_err(|e| {
                    tracing::warn!(
                        "per-peer receive sockets are off: cannot make their epoll set ({e}); \
                         all peers share one receive queue"
                    );
                })
                .ok()
            });
        Self {
            set,
            main,
            local,
            socket_buffer,
            mark: None,
            slots: Vec::new(),
            free: Vec::new(),
            by_peer: HashMap::new(),
            generation: 0,
            ready: Vec::with_capacity(sys::epoll::MAX_EVENTS),
            warned: false,
        }
    }

    /// Whether lanes are on (the driver then waits on [`Self::readable`], not the main socket).
    pub(crate) fn enabled(&self) -> bool {
        self.set.is_some()
    }

    /// Lanes open now.
    #[cfg(test)]
    pub(crate) fn open(&self) -> usize {
        self.by_peer.len()
    }

    /// Mark new lanes' datagrams with `mark` (the main socket's `SO_MARK`).
    pub(crate) fn set_mark(&mut self, mark: u32) {
        self.mark = Some(mark);
    }

    /// The epoll set, readable while the main socket or any lane is (for the batch hold).
    pub(crate) fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.set.as_ref().map(|s| s.get_ref().as_fd())
    }

    /// Wait until the main socket or a lane is readable (never, when lanes are off).
    pub(crate) async fn readable(&self) -> io::Result<()> {
        match &self.set {
            // The guard is dropped without clearing: `take_ready` clears through `try_io`
            // when the set turns out empty.
            Some(set) => set.readable().await.map(|_| ()),
            None => std::future::pending().await,
        }
    }

    /// The tokens ready now, in a vector lent to the caller (give it back with
    /// [`Self::give_back`]); empty when none is, which also clears the runtime's readiness.
    pub(crate) fn take_ready(&mut self) -> Vec<u64> {
        let mut out = std::mem::take(&mut self.ready);
        out.clear();
        self.refill(&mut out);
        out
    }

    /// Append the tokens ready now to `out`; false when none is (readiness cleared).
    fn refill(&self, out: &mut Vec<u64>) -> bool {
        let Some(set) = &self.set else {
            return false;
        };
        match set.try_io(Interest::READABLE, |s| s.ready(out)) {
            Ok(_) => true,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => false,
            Err(e) => {
                tracing::debug!("per-peer receive sockets: epoll_wait: {e}");
                false
            }
        }
    }

    /// Every socket found ready was read dry: clear the runtime's readiness of the set without
    /// asking the kernel again. Safe against lost wake-ups: every datagram that arrives on a member
    /// wakes the set's waiters (the runtime's epoll, edge-triggered, holds an event for it until
    /// the runtime next polls), and the runtime only clears the readiness it reported before that
    /// event. A datagram that came before the last read was read; one after it wakes the loop.
    pub(crate) fn clear(&self) {
        if let Some(set) = &self.set {
            let _ = set.try_io(Interest::READABLE, |_| {
                Err::<(), _>(io::Error::from(io::ErrorKind::WouldBlock))
            });
        }
    }

    /// Return the vector of [`Self::take_ready`].
    pub(crate) fn give_back(&mut self, v: Vec<u64>) {
        self.ready = v;
    }

    /// One receive call on the socket of `token` (see [`udpx::recv_segments`]). `WouldBlock`
    /// when it is dry; a token whose lane was closed meanwhile reads as dry.
    pub(crate) fn recv(
        &self,
        token: u64,
        buf: &mut [u8],
    ) -> io::Result<(usize, SocketAddr, usize)> {
        let fd = if token == MAIN {
            self.main
        } else {
            match usize::try_from(token)
                .ok()
                .and_then(|i| self.slots.get(i))
                .and_then(Option::as_ref)
            {
                Some(lane) => lane.sock.as_raw_fd(),
                None => return Err(io::ErrorKind::WouldBlock.into()),
            }
        };
        udpx::recv_segments(fd, buf)
    }

    /// Make the lanes those of `wanted` (peer, endpoint): open the missing ones (up to
    /// [`MAX_LANES`]), reconnect moved ones, close the rest.
    pub(crate) fn sync(
        &mut self,
        wanted: impl Iterator<Item = (PeerId, SocketAddr)>,
        counters: &mut Counters,
    ) {
        if self.set.is_none() {
            return;
        }
        self.generation += 1;
        let generation = self.generation;
        for (peer, endpoint) in wanted {
            let Some(remote) = connect_addr(self.local, endpoint) else {
                continue;
            };
            if let Some(&slot) = self.by_peer.get(&peer) {
                if let Some(lane) = self.slots.get_mut(slot).and_then(Option::as_mut) {
                    if lane.remote == remote {
                        lane.seen = generation;
                        continue;
                    }
                }
                self.close(slot);
            }
            if self.by_peer.len() >= MAX_LANES {
                continue;
            }
            let slot = self.free.last().copied().unwrap_or(self.slots.len());
            match self.open_lane(remote, slot) {
                Ok(sock) => {
                    if self.free.last() == Some(&slot) {
                        self.free.pop();
                    }
                    let lane = Lane {
                        peer,
                        remote,
                        sock,
                        seen: generation,
                    };
                    if slot == self.slots.len() {
                        self.slots.push(Some(lane));
                    } else {
                        self.slots[slot] = Some(lane);
                    }
                    self.by_peer.insert(peer, slot);
                    counters.bump(DriverEvent::PeerSocketOpened);
                }
                Err(e) => self.failed(remote, &e, counters),
            }
        }
        for slot in 0..self.slots.len() {
            if self.slots[slot]
                .as_ref()
                .is_some_and(|l| l.seen != generation)
            {
                self.close(slot);
            }
        }
    }

    fn failed(&mut self, remote: SocketAddr, e: &io::Error, counters: &mut Counters) {
        counters.bump(DriverEvent::PeerSocketOpenFailed);
        if self.warned {
            tracing::debug!(%remote, "per-peer receive socket not opened: {e}");
        } else {
            self.warned = true;
            tracing::warn!(
                %remote,
                "per-peer receive socket not opened ({e}); this peer's datagrams share the main \
                 socket's queue (counted as peer_socket_open_failed; logged once)"
            );
        }
    }

    fn close(&mut self, slot: usize) {
        let Some(lane) = self.slots.get_mut(slot).and_then(Option::take) else {
            return;
        };
        if let Some(set) = &self.set {
            let _ = set.get_ref().delete(lane.sock.as_raw_fd());
        }
        if self.by_peer.get(&lane.peer) == Some(&slot) {
            self.by_peer.remove(&lane.peer);
        }
        self.free.push(slot);
    }

    /// A socket connected to `remote` on our address and port, in the set with `slot` as token.
    fn open_lane(&self, remote: SocketAddr, slot: usize) -> io::Result<std::net::UdpSocket> {
        use socket2::{Domain, Protocol, Socket, Type};
        let sock = Socket::new(
            Domain::for_address(self.local),
            Type::DGRAM.nonblocking().cloexec(),
            Some(Protocol::UDP),
        )?;
        sock.set_reuse_port(true)?;
        if let Some(mark) = self.mark {
            sock.set_mark(mark)?;
        }
        sock.bind(&self.local.into())?;
        let sock = std::net::UdpSocket::from(sock);
        if self.socket_buffer > 0 {
            sys::set_socket_buffers(&sock, self.socket_buffer);
        }
        // The mark is set before the connect: its route lookup then sees what the main socket's
        // sends see, so the lane's local address is the one the peer's datagrams come to.
        sock.connect(remote)?;
        udpx::enable_gro(sock.as_raw_fd());
        if let Some(set) = &self.set {
            set.get_ref()
                .add(sock.as_raw_fd(), u64::try_from(slot).unwrap_or(MAIN))?;
        }
        Ok(sock)
    }
}

/// `endpoint` as a socket bound at `local` can connect to it: an IPv4 endpoint of an IPv6 socket
/// as its mapped address; `None` for an IPv6 endpoint of an IPv4 socket.
fn connect_addr(local: SocketAddr, endpoint: SocketAddr) -> Option<SocketAddr> {
    match (local, endpoint) {
        (SocketAddr::V4(_), SocketAddr::V4(_)) | (SocketAddr::V6(_), SocketAddr::V6(_)) => {
            Some(endpoint)
        }
        (SocketAddr::V6(_), SocketAddr::V4(v4)) => Some(SocketAddr::V6(SocketAddrV6::new(
            v4.ip().to_ipv6_mapped(),
            v4.port(),
            0,
            0,
        ))),
        (SocketAddr::V4(_), SocketAddr::V6(_)) => None,
    }
}

/// Let per-peer receive sockets join `sock` (`SO_REUSEPORT`, set after its bind; see the module
/// docs).
///
/// # Errors
/// The kernel refusing the option.
pub(crate) fn allow_lanes(sock: impl AsFd) -> io::Result<()> {
    socket2::SockRef::from(&sock).set_reuse_port(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    fn bind(addr: &str) -> UdpSocket {
        UdpSocket::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"))
    }

    fn peer(i: u32) -> PeerId {
        PeerId::for_test(i)
    }

    async fn wait(lanes: &Lanes) {
        let f = tokio::time::timeout(std::time::Duration::from_secs(5), lanes.readable());
        assert!(matches!(f.await, Ok(Ok(()))), "the set turns readable");
    }

    /// Which socket the kernel gave each sender's datagrams to: a peer with a lane lands there,
    /// anyone else on the main socket; the lanes follow `sync`; a second daemon cannot take the
    /// port.
    #[tokio::test]
    async fn each_peer_with_a_lane_queues_apart_and_the_rest_on_the_main_socket() {
        let main = bind("127.0.0.1:0");
        main.set_nonblocking(true).unwrap_or_else(|e| panic!("{e}"));
        allow_lanes(&main).unwrap_or_else(|e| panic!("{e}"));
        let local = main.local_addr().unwrap_or_else(|e| panic!("{e}"));
        assert!(
            UdpSocket::bind(local).is_err(),
            "a plain bind of the same port still fails"
        );
        let mut lanes = Lanes::new(true, main.as_raw_fd(), local, 0);
        assert!(lanes.enabled());
        let (a, b, c) = (
            bind("127.0.0.1:0"),
            bind("127.0.0.1:0"),
            bind("127.0.0.1:0"),
        );
        let addr = |s: &UdpSocket| s.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let mut counters = Counters::default();
        lanes.sync(
            [(peer(1), addr(&a)), (peer(2), addr(&b))].into_iter(),
            &mut counters,
        );
        assert_eq!(lanes.open(), 2);
        assert_eq!(counters.get(DriverEvent::PeerSocketOpened), 2);
        for s in [&a, &b, &c] {
            for _ in 0..20 {
                assert!(s.send_to(b"x", local).is_ok());
            }
        }
        // Read everything through the set: per token, the sources seen.
        let mut seen: HashMap<u64, Vec<SocketAddr>> = HashMap::new();
        let mut buf = [0u8; 64];
        wait(&lanes).await;
        let mut ready = lanes.take_ready();
        assert!(!ready.is_empty());
        while let Some(token) = ready.pop() {
            while let Ok((_, from, _)) = lanes.recv(token, &mut buf) {
                seen.entry(token).or_default().push(from);
            }
        }
        lanes.give_back(ready);
        assert!(lanes.take_ready().is_empty(), "all read");
        let only = |token: u64, who: &UdpSocket| {
            let got = seen.get(&token).cloned().unwrap_or_default();
            assert_eq!(got.len(), 20, "token {token}: {got:?}");
            assert!(
                got.iter().all(|f| *f == addr(who)),
                "token {token}: {got:?}"
            );
        };
        let slot = |lanes: &Lanes, p| u64::try_from(lanes.by_peer[&p]).unwrap_or(0);
        only(slot(&lanes, peer(1)), &a);
        only(slot(&lanes, peer(2)), &b);
        only(MAIN, &c);
        // Peer 2 lost its session, peer 1 moved to c's address: one lane, for 1 at c.
        lanes.sync([(peer(1), addr(&c))].into_iter(), &mut counters);
        assert_eq!(lanes.open(), 1);
        assert!(b.send_to(b"y", local).is_ok());
        assert!(c.send_to(b"z", local).is_ok());
        let one = slot(&lanes, peer(1));
        wait(&lanes).await;
        let mut ready = lanes.take_ready();
        ready.sort_unstable();
        assert_eq!(ready, vec![one, MAIN]);
        let got = lanes.recv(one, &mut buf).map(|(_, f, _)| f).ok();
        assert_eq!(got, Some(addr(&c)));
        let got = lanes.recv(MAIN, &mut buf).map(|(_, f, _)| f).ok();
        assert_eq!(got, Some(addr(&b)));
        lanes.give_back(ready);
        // Off: nothing opened, nothing waited on.
        let mut off = Lanes::new(false, main.as_raw_fd(), local, 0);
        off.sync([(peer(1), addr(&a))].into_iter(), &mut counters);
        assert!(!off.enabled());
        assert_eq!(off.open(), 0);
        assert!(off.fd().is_none());
    }

    /// A connected socket reports an ICMP port unreachable for its peer as one failed receive
    /// (`ECONNREFUSED`): hostile or not, it is one error, and the peer's next datagram is read.
    #[tokio::test]
    async fn an_icmp_error_on_a_lane_is_one_failed_receive_then_datagrams_again() {
        let main = bind("127.0.0.1:0");
        main.set_nonblocking(true).unwrap_or_else(|e| panic!("{e}"));
        allow_lanes(&main).unwrap_or_else(|e| panic!("{e}"));
        let local = main.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let mut lanes = Lanes::new(true, main.as_raw_fd(), local, 0);
        // The peer's port, closed for now: a send to it earns an ICMP port unreachable.
        let gone = bind("127.0.0.1:0");
        let remote = gone.local_addr().unwrap_or_else(|e| panic!("{e}"));
        drop(gone);
        let mut counters = Counters::default();
        lanes.sync([(peer(1), remote)].into_iter(), &mut counters);
        let token = u64::try_from(lanes.by_peer[&peer(1)]).unwrap_or(0);
        assert!(main.send_to(b"hello?", remote).is_ok());
        wait(&lanes).await;
        let mut buf = [0u8; 64];
        let ready = lanes.take_ready();
        assert_eq!(ready, vec![token], "the error makes the lane ready");
        let err = lanes.recv(token, &mut buf).err().map(|e| e.kind());
        assert_eq!(err, Some(io::ErrorKind::ConnectionRefused));
        let again = lanes.recv(token, &mut buf).err().map(|e| e.kind());
        assert_eq!(again, Some(io::ErrorKind::WouldBlock), "reported once");
        lanes.give_back(ready);
        // The peer is back on its port: its datagram arrives on the lane.
        let back = UdpSocket::bind(remote).unwrap_or_else(|e| panic!("rebind {remote}: {e}"));
        assert!(back.send_to(b"here", local).is_ok());
        wait(&lanes).await;
        let ready = lanes.take_ready();
        assert_eq!(ready, vec![token]);
        let got = lanes.recv(token, &mut buf).map(|(n, f, _)| (n, f)).ok();
        assert_eq!(got, Some((4, remote)));
        lanes.give_back(ready);
    }

    /// Over IPv6, and on a dual-stack socket for an IPv4 peer (its endpoint as configured, plain
    /// IPv4): the peer's datagrams land on its lane, reported from its mapped address as the main
    /// socket reports them, and an IPv6 stranger's on the main socket.
    #[tokio::test]
    async fn lanes_work_over_ipv6_and_for_ipv4_peers_of_a_dual_stack_socket() {
        let main = bind("[::]:0");
        main.set_nonblocking(true).unwrap_or_else(|e| panic!("{e}"));
        allow_lanes(&main).unwrap_or_else(|e| panic!("{e}"));
        let port = main.local_addr().map(|a| a.port()).unwrap_or(0);
        let mut lanes = Lanes::new(
            true,
            main.as_raw_fd(),
            SocketAddr::from(([0u16; 8], port)),
            0,
        );
        let (v6, v4, stranger) = (bind("[::1]:0"), bind("127.0.0.1:0"), bind("[::1]:0"));
        let addr = |s: &UdpSocket| s.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let mut counters = Counters::default();
        lanes.sync(
            [(peer(1), addr(&v6)), (peer(2), addr(&v4))].into_iter(),
            &mut counters,
        );
        assert_eq!(lanes.open(), 2, "{:?}", counters);
        assert!(v6
            .send_to(b"6", SocketAddr::from(([0, 0, 0, 0, 0, 0, 0, 1], port)))
            .is_ok());
        assert!(v4
            .send_to(b"4", SocketAddr::from(([127, 0, 0, 1], port)))
            .is_ok());
        assert!(stranger
            .send_to(b"s", SocketAddr::from(([0, 0, 0, 0, 0, 0, 0, 1], port)))
            .is_ok());
        wait(&lanes).await;
        let mut buf = [0u8; 8];
        let mut ready = lanes.take_ready();
        ready.sort_unstable();
        let slot = |p| u64::try_from(lanes.by_peer[&p]).unwrap_or(0);
        let mut want = vec![slot(peer(1)), slot(peer(2)), MAIN];
        want.sort_unstable();
        assert_eq!(ready, want);
        let from = |token| lanes.recv(token, &mut [0u8; 8]).map(|(_, f, _)| f).ok();
        assert_eq!(from(slot(peer(1))), Some(addr(&v6)));
        let mapped = match addr(&v4) {
            SocketAddr::V4(a) => SocketAddr::from((a.ip().to_ipv6_mapped(), a.port())),
            other => other,
        };
        assert_eq!(from(slot(peer(2))), Some(mapped));
        assert_eq!(from(MAIN), Some(addr(&stranger)));
        assert!(lanes.recv(MAIN, &mut buf).is_err(), "all read");
        lanes.give_back(ready);
    }

    #[test]
    fn an_ipv4_endpoint_of_an_ipv6_socket_is_connected_mapped() {
        let l = |local: &str| {
            let local: SocketAddr = local.parse().unwrap_or_else(|e| panic!("{e}"));
            move |endpoint| connect_addr(local, endpoint)
        };
        let v4: SocketAddr = "10.0.0.1:51820".parse().unwrap_or_else(|e| panic!("{e}"));
        let v6: SocketAddr = "[fd00::1]:51820".parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            l("[::]:1")(v4).map(|a| a.to_string()),
            Some("[::ffff:10.0.0.1]:51820".to_owned())
        );
        assert_eq!(l("[::]:1")(v6), Some(v6));
        assert_eq!(l("0.0.0.0:1")(v4), Some(v4));
        assert_eq!(l("0.0.0.0:1")(v6), None);
    }
}
