//! The driver's [`Seal`] sink: inner packets from the inner side are sealed by the [`Node`] straight
//! into the send stage, and a refused one is answered with an ICMP error built here (host
//! unreachable for no route, fragmentation needed / packet too big for an oversized packet).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use ipnetwork::IpNetwork;

use super::counters::{Counters, DriverEvent};
use super::fair::FairGate;
use super::inner::{Refused, Seal};
use super::underlay::Stage;
use super::workers::StagedSeal;
use crate::error::EncapsulateError;
use crate::icmp::{self, V4Error, V6Error};
use crate::node::{Encapsulated, Node, Outbound};
use crate::session::Later;
use crate::wire::{DATA_HEADER_LEN, TAG_LEN};
use crate::PeerId;

/// Largest ICMP error built (the builders quote as much of the original as fits).
const ICMP_BUF: usize = 1400;

#[derive(Clone, Copy)]
enum IcmpKind {
    Unreachable,
    TooBig,
}

/// What ICMP answers need: our addresses (sources of IPv6 errors, and of IPv4 errors when the
/// original destination is unreadable), the path MTU to announce, and a buffer to build in.
pub(crate) struct IcmpAnswers {
    our_v4: Option<Ipv4Addr>,
    our_v6: Option<Ipv6Addr>,
    path_mtu: usize,
    buf: [u8; ICMP_BUF],
}

impl IcmpAnswers {
    /// Answers from the first IPv4 and IPv6 address of `addresses`, announcing `path_mtu`.
    pub(crate) fn new(addresses: &[IpNetwork], path_mtu: usize) -> Self {
        let our_v4 = addresses.iter().find_map(|a| match a.ip() {
            IpAddr::V4(v4) => Some(v4),
            IpAddr::V6(_) => None,
        });
        let our_v6 = addresses.iter().find_map(|a| match a.ip() {
            IpAddr::V6(v6) => Some(v6),
            IpAddr::V4(_) => None,
        });
        Self {
            our_v4,
            our_v6,
            path_mtu,
            buf: [0u8; ICMP_BUF],
        }
    }

    /// Build the ICMP error answering `original`; its length in `self.buf`.
    fn icmp_reply(&mut self, original: &[u8], kind: IcmpKind) -> Option<usize> {
        // A clean buffer for every answer, as if fresh (the builders need not clear what they skip).
        self.buf = [0u8; ICMP_BUF];
        let buf = &mut self.buf;
        let mtu = u32::try_from(self.path_mtu).unwrap_or(1280);
        // IPv4 errors come from the original destination, as if from the path towards it: Linux
        // drops an IPv4 packet arriving on the TUN whose source is one of its own addresses (a
        // "martian" unless accept_local=1), so an error sent from `our_v4` never reached the app.
        let v4_from = match crate::packet::IpPacket::new_checked(original).map(|p| p.dst_addr()) {
            Ok(IpAddr::V4(dst)) => Some(dst),
            _ => self.our_v4,
        };
        match (original.first().map(|b| b >> 4), kind) {
            (Some(4), IcmpKind::Unreachable) => v4_from
                .and_then(|a| icmp::build_v4_error(buf, a, original, V4Error::HostUnreachable)),
            (Some(4), IcmpKind::TooBig) => v4_from.and_then(|a| {
                icmp::build_v4_error(
                    buf,
                    a,
                    original,
                    V4Error::FragmentationNeeded {
                        next_hop_mtu: u16::try_from(mtu).unwrap_or(1280),
                    },
                )
            }),
            (Some(6), IcmpKind::Unreachable) => self
                .our_v6
                .and_then(|a| icmp::build_v6_error(buf, a, original, V6Error::AddressUnreachable)),
            (Some(6), IcmpKind::TooBig) => self.our_v6.and_then(|a| {
                icmp::build_v6_error(buf, a, original, V6Error::PacketTooBig { mtu })
            }),
            _ => None,
        }
    }
}

/// Seals into the stage with one clock reading (`now`) for the whole unit.
pub(crate) struct Sealer<'a> {
    pub(crate) node: &'a mut Node,
    pub(crate) stage: &'a mut Stage,
    pub(crate) answers: &'a mut IcmpAnswers,
    pub(crate) counters: &'a mut Counters,
    /// The send stage's fairness gate (`fair.rs`), keyed by the destination peer.
    pub(crate) fair: &'a mut FairGate<PeerId>,
    pub(crate) now: Instant,
}

impl Sealer<'_> {
    /// [`Seal::seal`] with crypto workers (`workers.rs`): the node decides and writes the
    /// header now; the encryption is staged, to run (split between the workers) when the stage
    /// is flushed.
    fn seal_later(&mut self, o: Outbound, packet: &[u8], at: usize) -> Result<(), Refused> {
        let stage = &mut *self.stage;
        let plain_at = stage.plain_used;
        // The plaintexts never outgrow the stage (each is shorter than its datagram), so this
        // room is there; without it the node refuses the seal (`buffer_too_small`), no panic.
        let mut later = Later {
            plain: stage.plain.get_mut(plain_at..).unwrap_or_default(),
            job: None,
        };
        match self
            .node
            .seal_prepared_later(o, packet, &mut stage.buf[at..], &mut later, self.now)
        {
            Ok(Encapsulated::Send(t)) => {
                stage.items.push((at, t.len, t.dst));
                stage.used += t.len;
                if let Some(job) = later.job {
                    let len = t.len - DATA_HEADER_LEN - TAG_LEN;
                    stage.seals.push(StagedSeal {
                        job,
                        at: at + DATA_HEADER_LEN,
                        plain_at,
                        len,
                        ok: false,
                    });
                    stage.plain_used += len;
                }
                Ok(())
            }
            Ok(Encapsulated::Queued) => Ok(()),
            Err(e) => Err(Refused(e)),
        }
    }
}

impl Seal for Sealer<'_> {
    #[inline]
    fn seal(&mut self, packet: &[u8]) -> Result<(), Refused> {
        // One route lookup and one policy check per packet: the gate needs the destination peer
        // and the flow's priority class, and the seal takes them from the same judgement.
        let o = self.node.prepare(packet, self.now).map_err(Refused)?;
        if !self.fair.admit(o.peer, packet.len(), o.high) {
            // Over its share while the inner side is backlogged: dropped before it costs an
            // encryption (counted by the gate, per peer).
            return Ok(());
        }
        let at = self.stage.used;
        if self.stage.workers.enabled() {
            return self.seal_later(o, packet, at);
        }
        match self
            .node
            .seal_prepared(o, packet, &mut self.stage.buf[at..], self.now)
        {
            Ok(Encapsulated::Send(t)) => {
                self.stage.items.push((at, t.len, t.dst));
                self.stage.used += t.len;
                Ok(())
            }
            Ok(Encapsulated::Queued) => Ok(()),
            Err(e) => Err(Refused(e)),
        }
    }

    fn answer(&mut self, refused: Refused, packet: &[u8]) -> Option<&[u8]> {
        if refused.0 == EncapsulateError::PolicyRejected {
            // A TCP RST or ICMP administratively prohibited, within the node's reply budget.
            self.answers.buf = [0u8; ICMP_BUF];
            let n = self
                .node
                .reject_reply(packet, &mut self.answers.buf, self.now)?;
            self.counters.bump(DriverEvent::PolicyRejectSent);
            return self.answers.buf.get(..n);
        }
        let kind = match refused.0 {
            EncapsulateError::NoRoute => IcmpKind::Unreachable,
            EncapsulateError::TooBig => IcmpKind::TooBig,
            _ => return None,
        };
        let n = self.answers.icmp_reply(packet, kind)?;
        self.counters.bump(match kind {
            IcmpKind::Unreachable => DriverEvent::IcmpUnreachableSent,
            IcmpKind::TooBig => DriverEvent::IcmpTooBigSent,
        });
        self.answers.buf.get(..n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4_udp(src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 32, 0, 0, 0x40, 0, 64, 17, 0, 0];
        p.extend_from_slice(&src);
        p.extend_from_slice(&dst);
        p.extend_from_slice(&[0x30, 0x39, 0x00, 0x35, 0, 12, 0, 0, 1, 2, 3, 4]);
        p
    }

    #[test]
    fn v4_errors_come_from_the_original_destination() {
        let ours: Vec<IpNetwork> = vec!["10.77.0.2/16".parse().unwrap_or_else(|e| panic!("{e}"))];
        let mut a = IcmpAnswers::new(&ours, 1400);
        let orig = v4_udp([10, 77, 0, 2], [10, 77, 0, 9]);
        let n = a.icmp_reply(&orig, IcmpKind::Unreachable);
        let n = n.unwrap_or_else(|| panic!("an answer"));
        let reply = &a.buf[..n];
        assert_eq!(reply[9], icmp::PROTO_ICMP);
        assert_eq!(
            &reply[12..16],
            &[10, 77, 0, 9],
            "source: the original destination"
        );
        assert_eq!(&reply[16..20], &[10, 77, 0, 2], "back to the sender");
        assert_eq!((reply[20], reply[21]), (3, 1), "host unreachable");
        let n = a.icmp_reply(&orig, IcmpKind::TooBig).unwrap_or(0);
        assert_eq!((a.buf[20], a.buf[21]), (3, 4), "fragmentation needed");
        assert_eq!(u16::from_be_bytes([a.buf[26], a.buf[27]]), 1400);
        assert!(n > 20);
    }

    #[test]
    fn no_v6_answer_without_an_own_v6_address() {
        let ours: Vec<IpNetwork> = vec!["10.77.0.2/16".parse().unwrap_or_else(|e| panic!("{e}"))];
        let mut a = IcmpAnswers::new(&ours, 1400);
        let mut orig = vec![0x60, 0, 0, 0, 0, 8, 17, 64];
        orig.extend_from_slice(&[0xfd; 32]);
        orig.extend_from_slice(&[0; 8]);
        assert_eq!(a.icmp_reply(&orig, IcmpKind::Unreachable), None);
        assert_eq!(a.icmp_reply(&[], IcmpKind::Unreachable), None);
    }

    /// The send stage end to end: a [`Sealer`] over a real node with sessions to two peers, the
    /// gate between the node's judgement and its seal. While the inner side is backlogged the
    /// heavy destination's excess is dropped before encryption (counted for it), the light one
    /// loses nothing, and every admitted packet is sealed into the stage exactly once.
    #[cfg(feature = "test-util")]
    #[test]
    fn the_send_stage_gate_cuts_the_heavy_destination_before_encryption() {
        use crate::testing::{ipv4_udp, LinkConfig, TestNetwork};
        use std::time::Duration;

        let net = TestNetwork::new(3, 71);
        let mut sim = net.sim(71, LinkConfig::default());
        let keys = [net.public(1), net.public(2)];
        sim.run_until_cond(Duration::from_secs(7), |s| {
            keys.iter().all(|k| {
                s.nodes[0]
                    .node
                    .peer_by_key(k)
                    .is_some_and(|p| s.nodes[0].node.is_established(p))
            })
        })
        .unwrap_or_else(|| panic!("sessions"));
        let peer = |i: usize| {
            sim.nodes[0]
                .node
                .peer_by_key(&keys[i - 1])
                .unwrap_or_else(|| panic!("peer {i}"))
        };
        let (p1, p2) = (peer(1), peer(2));
        let now = sim.now;
        let (src, heavy_dst, light_dst) = (net.overlay[0], net.overlay[1], net.overlay[2]);
        let heavy = ipv4_udp(src, heavy_dst, &[7u8; 172]);
        let light = ipv4_udp(src, light_dst, &[9u8; 72]);
        let mut stage = Stage::new(crate::io::workers::Workers::default());
        let mut answers = IcmpAnswers::new(&[], 1400);
        let mut counters = Counters::default();
        let mut fair: FairGate<PeerId> = FairGate::with_min_share(true, 4_000);
        let node = &mut sim.nodes[0].node;
        let mut batch = |fair: &mut FairGate<PeerId>, stage: &mut Stage| {
            stage.used = 0;
            stage.items.clear();
            let mut sealer = Sealer {
                node: &mut *node,
                stage,
                answers: &mut answers,
                counters: &mut counters,
                fair: &mut *fair,
                now,
            };
            for i in 0..1_000 {
                assert!(sealer.seal(&heavy).is_ok());
                if i % 50 == 0 {
                    assert!(sealer.seal(&light).is_ok());
                }
            }
            fair.end_batch(true);
            let sent = |dst| stage.items.iter().filter(|it| it.2 == dst).count();
            (sent(net.underlay[1]), sent(net.underlay[2]))
        };
        // The first overloaded batch only detects the overload; the next ones are policed.
        assert_eq!(batch(&mut fair, &mut stage), (1_000, 20));
        assert!(fair.policing());
        for _ in 0..5 {
            let (h, l) = batch(&mut fair, &mut stage);
            assert_eq!(l, 20, "the light destination keeps every packet");
            assert!(h < 1_000, "the heavy destination is cut: {h}");
            assert!(h > 0, "but not starved");
        }
        assert!(fair.drops(p1).packets > 0);
        assert_eq!(fair.drops(p2).packets, 0);
        assert_eq!(fair.priority_admitted(), 0, "no policy, no priority class");
    }
}
