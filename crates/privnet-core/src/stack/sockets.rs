//! The stack's socket API for the embedded node: TCP connect / listen / accept / release, UDP
//! bind / release, the verified identity of a connection's peer, and shutdown.

use super::*;

impl Stack {
    pub(super) fn new_tcp(&self) -> tcp::Socket<'static> {
        let rx = tcp::SocketBuffer::new(vec![0u8; self.cfg.tcp_rx_buffer]);
        let tx = tcp::SocketBuffer::new(vec![0u8; self.cfg.tcp_tx_buffer]);
        let mut s = tcp::Socket::new(rx, tx);
        s.set_nagle_enabled(!self.cfg.nodelay);
        s.set_ack_delay(self.cfg.ack_delay.map(smol_duration));
        s.set_keep_alive(self.cfg.keep_alive.map(smol_duration));
        s.set_timeout(self.cfg.tcp_timeout.map(smol_duration));
        s.set_congestion_control(match self.cfg.congestion {
            Congestion::None => tcp::CongestionControl::None,
            Congestion::Reno => tcp::CongestionControl::Reno,
            Congestion::Cubic => tcp::CongestionControl::Cubic,
        });
        s
    }

    pub(super) fn ephemeral_port(&mut self) -> Result<u16, StackError> {
        for _ in EPHEMERAL {
            let p = self.next_port;
            self.next_port = if p == *EPHEMERAL.end() {
                *EPHEMERAL.start()
            } else {
                p + 1
            };
            if !self.ports.contains(&p) && !self.listeners.contains_key(&p) {
                return Ok(p);
            }
        }
        Err(StackError::PortsExhausted)
    }

    pub(super) fn has_family(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(_) => self.v4.is_some(),
            IpAddr::V6(_) => self.v6.is_some(),
        }
    }

    /// Start a connection to `remote` from an ephemeral port. The socket is the caller's; it is
    /// established once its state is `Established` (then [`Self::tcp_peer`] names the server).
    ///
    /// # Errors
    /// [`StackError::InvalidAddress`], [`StackError::Unreachable`] (no address of its family),
    /// [`StackError::PortsExhausted`], [`StackError::TooManySockets`].
    pub fn tcp_connect(&mut self, remote: SocketAddr) -> Result<SocketHandle, StackError> {
        if remote.port() == 0 || remote.ip().is_unspecified() {
            return Err(StackError::InvalidAddress);
        }
        if !self.has_family(remote.ip()) {
            return Err(StackError::Unreachable);
        }
        if self.slots.len() >= self.cfg.max_sockets {
            return Err(StackError::TooManySockets);
        }
        let port = self.ephemeral_port()?;
        let mut s = self.new_tcp();
        s.connect(self.iface.context(), remote, port)
            .map_err(|_| StackError::InvalidAddress)?;
        let h = self.sockets.add(s);
        self.ports.insert(port);
        self.slots.insert(
            h,
            Slot {
                owner: Owner::App,
                udp: false,
                port,
                own_port: true,
                peer: None,
                error: None,
            },
        );
        Ok(h)
    }

    /// Listen on `port` (any of our addresses).
    ///
    /// # Errors
    /// [`StackError::InvalidAddress`] for port 0, [`StackError::AddrInUse`].
    pub fn tcp_listen(&mut self, port: u16) -> Result<(), StackError> {
        if port == 0 {
            return Err(StackError::InvalidAddress);
        }
        if self.listeners.contains_key(&port) {
            return Err(StackError::AddrInUse);
        }
        self.listeners.insert(port, Listener::default());
        Ok(())
    }

    /// Stop listening on `port`: half-open connections are reset, established ones not yet
    /// accepted are closed.
    pub fn tcp_unlisten(&mut self, port: u16) {
        let Some(l) = self.listeners.remove(&port) else {
            return;
        };
        for h in l.spare {
            self.remove(h);
        }
        for h in l.half_open.into_iter().chain(l.ready.into_iter().map(|a| a.handle)) {
            self.sockets.get_mut::<tcp::Socket<'_>>(h).abort();
            if let Some(slot) = self.slots.get_mut(&h) {
                slot.owner = Owner::Orphan(self.last_sweep);
            }
            self.orphans.push(h);
        }
        for w in l.wakers {
            w.wake();
        }
    }

    /// The next established connection on `port`, or `Pending` (the task is woken when one is
    /// ready). `Ready(None)` if nothing listens on `port`.
    pub fn poll_accept(&mut self, port: u16, cx: &mut Context<'_>) -> Poll<Option<Accepted>> {
        let Some(l) = self.listeners.get_mut(&port) else {
            return Poll::Ready(None);
        };
        match l.ready.pop_front() {
            Some(a) => {
                if let Some(slot) = self.slots.get_mut(&a.handle) {
                    slot.owner = Owner::App;
                }
                Poll::Ready(Some(a))
            }
            None => {
                if !l.wakers.iter().any(|w| w.will_wake(cx.waker())) {
                    l.wakers.push(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }

    pub(super) fn owned(&self, h: SocketHandle, udp: bool) -> bool {
        self.slots
            .get(&h)
            .is_some_and(|s| s.owner == Owner::App && s.udp == udp)
    }

    /// The TCP socket behind `h`, if the caller owns it.
    pub fn tcp(&mut self, h: SocketHandle) -> Option<&mut tcp::Socket<'static>> {
        if !self.owned(h, false) {
            return None;
        }
        Some(self.sockets.get_mut::<tcp::Socket<'static>>(h))
    }

    /// The peer of a connection: for an accepted one its caller, for a connect the server once
    /// the SYN|ACK came (looked up then, so call it when the connection is established).
    pub fn tcp_peer(&mut self, h: SocketHandle) -> Option<Arc<PeerIdentity>> {
        let slot = self.slots.get(&h)?;
        if let Some(p) = &slot.peer {
            return Some(p.clone());
        }
        let port = slot.port;
        let remote = SocketAddr::from(self.sockets.get::<tcp::Socket<'_>>(h).remote_endpoint()?);
        let peer = self.syns.remove(&(remote, port))?.peer?;
        if let Some(slot) = self.slots.get_mut(&h) {
            slot.peer = Some(peer.clone());
        }
        Some(peer)
    }

    /// Why the stack aborted the connection, if it did.
    pub fn tcp_error(&self, h: SocketHandle) -> Option<StackError> {
        self.slots.get(&h).and_then(|s| s.error)
    }

    /// Abort a connection the caller owns (an RST goes out) and record `error` as the reason.
    pub fn tcp_abort(&mut self, h: SocketHandle, error: StackError) {
        if !self.owned(h, false) {
            return;
        }
        self.sockets.get_mut::<tcp::Socket<'_>>(h).abort();
        if let Some(slot) = self.slots.get_mut(&h) {
            slot.error = Some(error);
        }
    }

    /// The caller is done with the connection: it is closed gracefully (queued data and a FIN
    /// still go out) and removed once finished, or aborted after [`ORPHAN_LINGER`].
    pub fn tcp_release(&mut self, h: SocketHandle, now: Instant) {
        if !self.owned(h, false) {
            return;
        }
        let s = self.sockets.get_mut::<tcp::Socket<'_>>(h);
        s.close();
        if let Some(slot) = self.slots.get_mut(&h) {
            slot.owner = Owner::Orphan(now);
        }
        self.orphans.push(h);
    }

    // -----------------------------------------------------------------------------------------
    // UDP

    /// Bind a UDP socket to `port` (0: an ephemeral port) on any of our addresses; returns the
    /// socket and its port.
    ///
    /// # Errors
    /// [`StackError::AddrInUse`], [`StackError::PortsExhausted`], [`StackError::TooManySockets`].
    pub fn udp_bind(&mut self, port: u16) -> Result<(SocketHandle, u16), StackError> {
        if self.slots.len() >= self.cfg.max_sockets {
            return Err(StackError::TooManySockets);
        }
        let port = if port == 0 {
            loop {
                let p = self.ephemeral_port()?;
                if !self.udp_ports.contains_key(&p) {
                    break p;
                }
            }
        } else if self.udp_ports.contains_key(&port) {
            return Err(StackError::AddrInUse);
        } else {
            port
        };
        // Room for datagrams of at least 64 bytes on average.
        let slots = (self.cfg.udp_buffer / 64).max(16);
        let buffer = || {
            udp::PacketBuffer::new(
                vec![udp::PacketMetadata::EMPTY; slots],
                vec![0u8; self.cfg.udp_buffer],
            )
        };
        let mut s = udp::Socket::new(buffer(), buffer());
        s.bind(port).map_err(|_| StackError::InvalidAddress)?;
        let h = self.sockets.add(s);
        self.udp_ports.insert(port, h);
        self.ports.insert(port);
        self.slots.insert(
            h,
            Slot {
                owner: Owner::App,
                udp: true,
                port,
                own_port: true,
                peer: None,
                error: None,
            },
        );
        Ok((h, port))
    }

    /// The UDP socket behind `h`, if the caller owns it.
    pub fn udp(&mut self, h: SocketHandle) -> Option<&mut udp::Socket<'static>> {
        if !self.owned(h, true) {
            return None;
        }
        Some(self.sockets.get_mut::<udp::Socket<'static>>(h))
    }

    /// The largest UDP payload one datagram to `ip` can carry (no IP fragmentation).
    pub fn udp_max_payload(&self, ip: IpAddr) -> usize {
        let header = if ip.is_ipv4() { 20 + 8 } else { 40 + 8 };
        self.caps.max_transmission_unit.saturating_sub(header)
    }

    /// The caller is done with a UDP socket (datagrams still queued are dropped).
    pub fn udp_release(&mut self, h: SocketHandle) {
        if self.owned(h, true) {
            self.sockets.get_mut::<udp::Socket<'_>>(h).close();
            self.remove(h);
        }
    }

    /// Stop everything: abort every connection and close every UDP socket, so that every task
    /// waiting on one is woken (and then finds the stack stopped).
    pub fn shutdown(&mut self) {
        let handles: Vec<(SocketHandle, bool)> =
            self.slots.iter().map(|(h, s)| (*h, s.udp)).collect();
        for (h, udp) in handles {
            if udp {
                self.sockets.get_mut::<udp::Socket<'_>>(h).close();
            } else {
                self.sockets.get_mut::<tcp::Socket<'_>>(h).abort();
            }
        }
        for l in self.listeners.values_mut() {
            for w in l.wakers.drain(..) {
                w.wake();
            }
        }
    }
}
