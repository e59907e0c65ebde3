//! A deterministic, seeded in-memory network for simulation tests, benchmarks and the demo.
//!
//! [`Sim`] holds N [`Node`]s, each with an underlay address, and a queue of datagrams in flight.
//! Links have latency, jitter (which reorders), loss, duplication and an MTU, all drawn from one
//! seeded ChaCha20 RNG; the virtual clock jumps straight to the next event (a delivery or a node
//! timer), so minutes of protocol time run in milliseconds and every run with the same seed is
//! bit-identical.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnetwork::IpNetwork;
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

use crate::config::{NodeConfig, PeerConfig};
use crate::credential::{CredentialVerifier, PeerIdentity, StandInCredential, StaticKeyVerifier};
use crate::crypto::{PublicKey, StaticSecret};
use crate::node::{Decapsulated, Encapsulated, Node, PeerId};

/// Properties of a simulated link.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinkConfig {
    /// One-way base latency.
    pub latency: Duration,
    /// Extra uniformly random delay in `[0, jitter)`; reorders packets.
    pub jitter: Duration,
    /// Probability a datagram is lost.
    pub loss: f64,
    /// Probability a datagram is delivered twice.
    pub duplicate: f64,
    /// Largest datagram carried; larger ones are dropped.
    pub mtu: usize,
}

impl Default for LinkConfig {
    fn default() -> Self {
        Self {
            latency: Duration::from_millis(5),
            jitter: Duration::ZERO,
            loss: 0.0,
            duplicate: 0.0,
            mtu: 1472,
        }
    }
}

/// A datagram on the simulated underlay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Datagram {
    /// Sender address.
    pub src: SocketAddr,
    /// Receiver address.
    pub dst: SocketAddr,
    /// UDP payload.
    pub bytes: Vec<u8>,
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct InFlight {
    at: Instant,
    seq: u64,
    dst: usize,
    src: SocketAddr,
    bytes: Vec<u8>,
}

/// What the tamper hook decides for a datagram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Deliver (possibly modified).
    Deliver,
    /// Drop it.
    Drop,
}

type Tamper = Box<dyn FnMut(&mut Datagram) -> Verdict>;

/// One simulated member.
pub struct SimNode {
    /// The protocol node.
    pub node: Node,
    /// Its underlay address.
    pub addr: SocketAddr,
    /// Inner packets delivered to it, with the peer they came from.
    pub inbox: Vec<(PeerId, Vec<u8>)>,
    /// Whether the node is running (a stopped node drops everything sent to it).
    pub up: bool,
}

/// Counters kept by the simulator itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Datagrams handed to the network.
    pub sent: u64,
    /// Lost on purpose.
    pub lost: u64,
    /// Duplicated on purpose.
    pub duplicated: u64,
    /// Dropped because larger than the link MTU.
    pub too_big: u64,
    /// Delivered to a node.
    pub delivered: u64,
}

/// The simulated network.
pub struct Sim {
    /// Virtual time now.
    pub now: Instant,
    /// Virtual time at creation.
    pub start: Instant,
    /// The nodes.
    pub nodes: Vec<SimNode>,
    /// Default link properties.
    pub link: LinkConfig,
    links: HashMap<(usize, usize), LinkConfig>,
    by_addr: HashMap<SocketAddr, usize>,
    queue: BinaryHeap<Reverse<InFlight>>,
    seq: u64,
    rng: ChaCha20Rng,
    /// Called on every datagram as it is sent.
    pub tamper: Option<Tamper>,
    /// When set, every datagram sent is recorded here.
    pub capture: Option<Vec<Datagram>>,
    /// Simulator counters.
    pub stats: SimStats,
    buf: Vec<u8>,
}

impl Sim {
    /// An empty network with RNG `seed`.
    pub fn new(seed: u64, link: LinkConfig) -> Self {
        // The virtual clock's origin: read once, then only ever advanced by the simulation.
        #[allow(clippy::disallowed_methods)]
        let start = Instant::now();
        Self {
            now: start,
            start,
            nodes: Vec::new(),
            link,
            links: HashMap::new(),
            by_addr: HashMap::new(),
            queue: BinaryHeap::new(),
            seq: 0,
            rng: ChaCha20Rng::seed_from_u64(seed),
            tamper: None,
            capture: None,
            stats: SimStats::default(),
            buf: vec![0u8; 70_000],
        }
    }

    /// Add a node at `addr`; returns its index.
    pub fn add_node(&mut self, node: Node, addr: SocketAddr) -> usize {
        let i = self.nodes.len();
        self.nodes.push(SimNode {
            node,
            addr,
            inbox: Vec::new(),
            up: true,
        });
        self.by_addr.insert(addr, i);
        self.flush(i);
        i
    }

    /// Replace node `i` (a restart: same address, fresh state).
    pub fn replace_node(&mut self, i: usize, node: Node) {
        if let Some(n) = self.nodes.get_mut(i) {
            n.node = node;
            n.up = true;
            n.inbox.clear();
        }
        self.flush(i);
    }

    /// Move node `i` to a new underlay address (NAT rebinding / roaming).
    pub fn set_addr(&mut self, i: usize, addr: SocketAddr) {
        if let Some(n) = self.nodes.get_mut(i) {
            self.by_addr.remove(&n.addr);
            n.addr = addr;
            self.by_addr.insert(addr, i);
        }
    }

    /// Deliver a datagram to node `dst` now, synchronously, and return what the node made of it.
    pub fn deliver_now(
        &mut self,
        src: SocketAddr,
        dst: usize,
        bytes: &[u8],
    ) -> Result<Decapsulated, crate::DropReason> {
        let now = self.now;
        let mut buf = std::mem::take(&mut self.buf);
        let r = match self.nodes.get_mut(dst) {
            Some(n) => n
                .node
                .decapsulate(src, bytes, &mut buf, now)
                .map_err(|e| e.reason()),
            None => Err(crate::DropReason::NoRoute),
        };
        if let Ok(Decapsulated::Packet { peer, len }) = r {
            self.nodes[dst].inbox.push((peer, buf[..len].to_vec()));
        }
        self.buf = buf;
        self.flush(dst);
        r
    }

    /// Set the link from `a` to `b` (one direction).
    pub fn set_link(&mut self, a: usize, b: usize, link: LinkConfig) {
        self.links.insert((a, b), link);
    }

    /// Stop or start node `i`.
    pub fn set_up(&mut self, i: usize, up: bool) {
        if let Some(n) = self.nodes.get_mut(i) {
            n.up = up;
        }
    }

    /// A uniformly random f64 in [0, 1) from the simulation RNG.
    pub fn random(&mut self) -> f64 {
        (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Put a datagram on the wire from `src` to the node at `dst`, subject to link effects.
    pub fn send_datagram(&mut self, src: SocketAddr, dst: SocketAddr, bytes: Vec<u8>) {
        let mut d = Datagram { src, dst, bytes };
        if let Some(t) = self.tamper.as_mut() {
            if t(&mut d) == Verdict::Drop {
                return;
            }
        }
        if let Some(c) = self.capture.as_mut() {
            c.push(d.clone());
        }
        self.stats.sent += 1;
        let Some(&dst_i) = self.by_addr.get(&d.dst) else {
            return;
        };
        let src_i = self.by_addr.get(&d.src).copied().unwrap_or(usize::MAX);
        let link = self
            .links
            .get(&(src_i, dst_i))
            .copied()
            .unwrap_or(self.link);
        if d.bytes.len() > link.mtu {
            self.stats.too_big += 1;
            return;
        }
        if self.random() < link.loss {
            self.stats.lost += 1;
            return;
        }
        let copies = if self.random() < link.duplicate {
            self.stats.duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            let jitter = if link.jitter.is_zero() {
                Duration::ZERO
            } else {
                link.jitter.mul_f64(self.random())
            };
            self.seq += 1;
            self.queue.push(Reverse(InFlight {
                at: self.now + link.latency + jitter,
                seq: self.seq,
                dst: dst_i,
                src: d.src,
                bytes: d.bytes.clone(),
            }));
        }
    }

    /// Inject a raw datagram to node `dst` as if sent from `src` (bypasses tamper and capture).
    pub fn inject(&mut self, src: SocketAddr, dst: usize, bytes: Vec<u8>) {
        self.seq += 1;
        self.queue.push(Reverse(InFlight {
            at: self.now,
            seq: self.seq,
            dst,
            src,
            bytes,
        }));
    }

    /// Hand an inner packet to node `i` as if written by an application.
    pub fn send_packet(
        &mut self,
        i: usize,
        packet: &[u8],
    ) -> Result<Encapsulated, crate::DropReason> {
        let now = self.now;
        let mut buf = std::mem::take(&mut self.buf);
        let r = match self.nodes.get_mut(i) {
            Some(n) => n
                .node
                .encapsulate(packet, &mut buf, now)
                .map_err(|e| e.reason()),
            None => Err(crate::DropReason::NoRoute),
        };
        if let Ok(Encapsulated::Send(t)) = r {
            let src = self.nodes[i].addr;
            self.send_datagram(src, t.dst, buf[..t.len].to_vec());
        }
        self.buf = buf;
        self.flush(i);
        r
    }

    /// Drain node `i`'s transmits onto the network.
    pub fn flush(&mut self, i: usize) {
        let now = self.now;
        let mut buf = std::mem::take(&mut self.buf);
        while let Some(n) = self.nodes.get_mut(i) {
            let Some(t) = n.node.poll_transmit(&mut buf, now) else {
                break;
            };
            let src = n.addr;
            self.send_datagram(src, t.dst, buf[..t.len].to_vec());
        }
        self.buf = buf;
    }

    fn next_event(&self) -> Option<Instant> {
        let q = self.queue.peek().map(|Reverse(f)| f.at);
        let t = self
            .nodes
            .iter()
            .filter(|n| n.up)
            .filter_map(|n| n.node.poll_timeout())
            .min();
        match (q, t) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Process everything due at the next event time, if it is not after `limit`. Returns false when
    /// nothing is due by `limit`.
    pub fn step(&mut self, limit: Instant) -> bool {
        let Some(t) = self.next_event() else {
            return false;
        };
        if t > limit {
            return false;
        }
        self.now = self.now.max(t);
        let now = self.now;
        while self.queue.peek().is_some_and(|Reverse(f)| f.at <= now) {
            let Some(Reverse(f)) = self.queue.pop() else {
                break;
            };
            self.deliver(f.dst, f.src, &f.bytes);
        }
        for i in 0..self.nodes.len() {
            let due =
                self.nodes[i].up && self.nodes[i].node.poll_timeout().is_some_and(|t| t <= now);
            if due {
                self.nodes[i].node.handle_timeout(now);
                self.flush(i);
                // Every timer pass of every simulation checks the node's table invariants.
                self.nodes[i].node.check_invariants();
            }
        }
        true
    }

    fn deliver(&mut self, dst: usize, src: SocketAddr, bytes: &[u8]) {
        if !self.nodes.get(dst).is_some_and(|n| n.up) {
            return;
        }
        self.stats.delivered += 1;
        let now = self.now;
        let mut buf = std::mem::take(&mut self.buf);
        let r = self.nodes[dst].node.decapsulate(src, bytes, &mut buf, now);
        if let Ok(Decapsulated::Packet { peer, len }) = r {
            self.nodes[dst].inbox.push((peer, buf[..len].to_vec()));
        }
        self.buf = buf;
        self.flush(dst);
    }

    /// Run until virtual time `t`.
    pub fn run_until(&mut self, t: Instant) {
        let mut steps = 0u64;
        while self.step(t) {
            steps += 1;
            assert!(steps < 50_000_000, "simulation livelock");
        }
        self.now = self.now.max(t);
    }

    /// Run for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let t = self.now + d;
        self.run_until(t);
    }

    /// Run until `cond` holds or `max` virtual time passed; returns the time it took, if it held.
    pub fn run_until_cond(
        &mut self,
        max: Duration,
        mut cond: impl FnMut(&Sim) -> bool,
    ) -> Option<Duration> {
        let t0 = self.now;
        let limit = t0 + max;
        loop {
            if cond(self) {
                return Some(self.now - t0);
            }
            if !self.step(limit) {
                self.now = self.now.max(limit);
                return cond(self).then(|| self.now - t0);
            }
        }
    }
}

/// A network of members with stand-in credentials, fully meshed with static endpoints.
pub struct TestNetwork {
    /// Static keys of the members.
    pub keys: Vec<StaticSecret>,
    /// Overlay address of each member (10.77.0.x).
    pub overlay: Vec<IpAddr>,
    /// Underlay address of each member.
    pub underlay: Vec<SocketAddr>,
    /// Network PSK.
    pub psk: [u8; 32],
    /// Network id.
    pub network_id: [u8; 16],
    /// Unix time at simulation start.
    pub unix_start: Duration,
    /// The verifier every member uses.
    pub verifier: Arc<StaticKeyVerifier>,
}

impl TestNetwork {
    /// `n` members of one network; `tag` varies keys and addresses between networks.
    pub fn new(n: usize, tag: u8) -> Self {
        let mut rng = ChaCha20Rng::seed_from_u64(u64::from(tag) + 1000);
        let mut keys = Vec::new();
        let mut overlay = Vec::new();
        let mut underlay = Vec::new();
        let mut verifier = StaticKeyVerifier::new();
        for i in 0..n {
            let mut k = [0u8; 32];
            rng.fill_bytes(&mut k);
            let key = StaticSecret::from_bytes(k);
            let ip = IpAddr::V4(Ipv4Addr::new(10, 77, tag, (i + 1) as u8));
            verifier.allow(
                key.public_key(),
                PeerIdentity {
                    name: format!("m{tag}-{i}"),
                    addresses: vec![IpNetwork::new(ip, 32).unwrap_or_else(|_| unreachable!())],
                    groups: vec![],
                    not_after: u64::MAX,
                    fingerprint: [i as u8; 32],
                },
            );
            keys.push(key);
            overlay.push(ip);
            underlay.push(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::new(192, 0, tag, (i + 1) as u8)),
                51820,
            ));
        }
        let mut psk = [0u8; 32];
        rng.fill_bytes(&mut psk);
        let mut network_id = [0u8; 16];
        rng.fill_bytes(&mut network_id);
        Self {
            keys,
            overlay,
            underlay,
            psk,
            network_id,
            unix_start: Duration::from_secs(1_800_000_000),
            verifier: Arc::new(verifier),
        }
    }

    /// The public key of member `i`.
    pub fn public(&self, i: usize) -> PublicKey {
        self.keys[i].public_key()
    }

    /// The node config of member `i` (credential and seed set; verifier shared).
    pub fn config(&self, i: usize, seed: u64) -> NodeConfig {
        let verifier: Arc<dyn CredentialVerifier> = self.verifier.clone();
        let mut cfg = NodeConfig::new(self.keys[i].clone(), self.psk, self.network_id, verifier);
        let cred = StandInCredential {
            name: format!("m{i}"),
            addresses: vec![],
        };
        let mut s = [0u8; 32];
        s[..8].copy_from_slice(&seed.to_le_bytes());
        s[8] = i as u8;
        s[31] = 1; // never the all-zero seed that Node::new refuses
        cfg.credential(cred.encode()).rng_seed(s);
        cfg
    }

    /// Build member `i` as a node that knows every other member.
    pub fn node(&self, i: usize, cfg: NodeConfig, now: Instant, unix: Duration) -> Node {
        let mut node = match Node::new(cfg, now, unix) {
            Ok(n) => n,
            Err(e) => panic!("node config: {e}"),
        };
        for j in 0..self.keys.len() {
            if j == i {
                continue;
            }
            let pc = PeerConfig::new(self.public(j))
                .endpoint(self.underlay[j])
                .allowed_ip(IpNetwork::new(self.overlay[j], 32).unwrap_or_else(|_| unreachable!()));
            if let Err(e) = node.add_peer(pc, now) {
                panic!("add peer: {e}");
            }
        }
        node
    }

    /// A simulator with every member added.
    pub fn sim(&self, seed: u64, link: LinkConfig) -> Sim {
        let mut sim = Sim::new(seed, link);
        let now = sim.now;
        for i in 0..self.keys.len() {
            let node = self.node(i, self.config(i, seed), now, self.unix_start);
            sim.add_node(node, self.underlay[i]);
        }
        sim
    }

    /// Add this network's members to an existing simulator (another network sharing the underlay).
    pub fn add_to(&self, sim: &mut Sim, seed: u64) -> Vec<usize> {
        let now = sim.now;
        let unix = self.unix_start + (sim.now - sim.start);
        (0..self.keys.len())
            .map(|i| {
                let node = self.node(i, self.config(i, seed), now, unix);
                sim.add_node(node, self.underlay[i])
            })
            .collect()
    }
}

/// A minimal IPv4/UDP packet from `src` to `dst` carrying `payload` (checksums zero; the core does
/// not check them).
pub fn ipv4_udp(src: IpAddr, dst: IpAddr, payload: &[u8]) -> Vec<u8> {
    let (IpAddr::V4(s), IpAddr::V4(d)) = (src, dst) else {
        return Vec::new();
    };
    let total = 20 + 8 + payload.len();
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&s.octets());
    p[16..20].copy_from_slice(&d.octets());
    p[20..22].copy_from_slice(&4000u16.to_be_bytes());
    p[22..24].copy_from_slice(&5000u16.to_be_bytes());
    p[24..26].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    p[28..].copy_from_slice(payload);
    p
}

/// The UDP payload of a packet built by [`ipv4_udp`].
pub fn udp_payload(packet: &[u8]) -> &[u8] {
    packet.get(28..).unwrap_or(&[])
}

/// Handshake messages with chosen contents, built and read by the node's own handshake code
/// outside a node: for the fuzz targets and the seed generator (`tests/fuzz_corpus.rs`), which need
/// valid Noise messages whose fields (timestamp, credential, indices, cookie) they pick. A kit holds
/// one member's keys; it keeps no state between messages.
pub struct HandshakeKit {
    keys: crate::handshake::LocalKeys,
}

impl HandshakeKit {
    /// The kit of the member holding `secret` in the network of `psk` and `network_id`.
    pub fn new(
        cipher: crate::crypto::CipherSuite,
        secret: StaticSecret,
        psk: [u8; 32],
        network_id: [u8; 16],
    ) -> Option<Self> {
        let params = cipher.noise_params().parse().ok()?;
        let keys = crate::handshake::LocalKeys::new(
            params,
            cipher.wire_id(),
            secret,
            psk,
            &[],
            &network_id,
        );
        Some(Self { keys })
    }

    /// Our static public key.
    pub fn public_key(&self) -> PublicKey {
        self.keys.static_public
    }

    /// A complete initiation to the holder of `remote`: `sender` is our index, `timestamp` the
    /// TAI64N label, `credential` ours; mac1 is keyed for `remote`, mac2 comes from `cookie` (zero
    /// without one); `seed` makes the ephemeral key. `None` for a credential over 1,024 bytes.
    pub fn initiation(
        &self,
        remote: &PublicKey,
        sender: u32,
        timestamp: [u8; 12],
        credential: &[u8],
        cookie: Option<&[u8; 16]>,
        seed: [u8; 32],
    ) -> Option<Vec<u8>> {
        let mac1_key = self.keys.mac1_key_for(remote);
        // As a node does for its peers: the static-static DH with `remote` is computed once.
        self.keys.static_dh.register(*remote);
        crate::handshake::build_initiation(
            &self.keys,
            remote,
            &mac1_key,
            sender,
            crate::tai64n::Tai64N::from_bytes(timestamp),
            credential,
            cookie,
            seed,
        )
        .ok()
        .map(|(_, msg)| msg)
    }

    /// Read `initiation` (sent to us; its macs are not checked) and build our response: `sender`
    /// is our index, `credential` ours, mac2 from `cookie`; `seed` makes the ephemeral key.
    /// Returns the initiator's static key and the response.
    ///
    /// # Errors
    /// The drop reason a node would count for the initiation (`bad_type` for another message).
    pub fn respond(
        &self,
        initiation: &[u8],
        sender: u32,
        credential: &[u8],
        cookie: Option<&[u8; 16]>,
        seed: [u8; 32],
    ) -> Result<(PublicKey, Vec<u8>), crate::DropReason> {
        let crate::wire::Message::Initiation(m) = crate::wire::parse(initiation)? else {
            return Err(crate::DropReason::BadType);
        };
        let rx = crate::handshake::read_initiation(&self.keys, &m, 0, seed)?;
        // Later initiations from the same key reuse the static-static DH.
        self.keys.static_dh.register(rx.remote_static);
        let mac1_key = self.keys.mac1_key_for(&rx.remote_static);
        let (_, msg) = crate::handshake::build_response(
            rx.state,
            self.keys.cipher_id,
            sender,
            m.sender(),
            credential,
            &mac1_key,
            cookie,
        )?;
        Ok((rx.remote_static, msg))
    }
}
