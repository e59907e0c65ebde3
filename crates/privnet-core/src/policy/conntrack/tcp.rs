//! The TCP state machine of the connection tracker: Linux conntrack's states and default timeouts
//! (`net/netfilter/nf_conntrack_proto_tcp.c`), without its sequence-window check (see the notes in
//! docs/POLICY.md §5: a peer is authenticated and can only disturb its own flows).
//!
//! `Original` is the initiator's direction, `Reply` the responder's.

use std::time::Duration;

/// A tracked TCP connection's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum TcpState {
    /// SYN seen from the initiator.
    SynSent = 1,
    /// SYN+ACK seen from the responder (or a simultaneous open).
    SynRecv = 2,
    /// The handshake completed (or the flow was picked up mid-stream).
    Established = 3,
    /// A FIN was seen from one side.
    FinWait = 4,
    /// The other side acknowledged that FIN.
    CloseWait = 5,
    /// The other side sent its FIN too.
    LastAck = 6,
    /// The last FIN was acknowledged.
    TimeWait = 7,
    /// Reset.
    Close = 8,
}

impl TcpState {
    pub(crate) fn from_code(c: u8) -> Option<Self> {
        Some(match c {
            1 => Self::SynSent,
            2 => Self::SynRecv,
            3 => Self::Established,
            4 => Self::FinWait,
            5 => Self::CloseWait,
            6 => Self::LastAck,
            7 => Self::TimeWait,
            8 => Self::Close,
            _ => return None,
        })
    }
}

/// Which way a packet goes, relative to its flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// Initiator → responder.
    Original,
    /// Responder → initiator.
    Reply,
}

/// Idle timeouts per TCP state (Linux's defaults, `nf_conntrack_tcp_timeout_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpTimeouts {
    /// 120 s.
    pub syn_sent: Duration,
    /// 60 s.
    pub syn_recv: Duration,
    /// 5 days (432,000 s), once a reply was seen.
    pub established: Duration,
    /// 300 s: an established connection that has not seen a reply yet (picked up mid-stream);
    /// Linux's `unacknowledged` timeout.
    pub unacknowledged: Duration,
    /// 120 s.
    pub fin_wait: Duration,
    /// 60 s.
    pub close_wait: Duration,
    /// 30 s.
    pub last_ack: Duration,
    /// 120 s.
    pub time_wait: Duration,
    /// 10 s.
    pub close: Duration,
}

impl Default for TcpTimeouts {
    fn default() -> Self {
        let s = Duration::from_secs;
        Self {
            syn_sent: s(120),
            syn_recv: s(60),
            established: s(432_000),
            unacknowledged: s(300),
            fin_wait: s(120),
            close_wait: s(60),
            last_ack: s(30),
            time_wait: s(120),
            close: s(10),
        }
    }
}

impl TcpTimeouts {
    /// The timeout of `state` (`assured`: a reply was seen).
    pub fn of(&self, state: TcpState, assured: bool) -> Duration {
        match state {
            TcpState::SynSent => self.syn_sent,
            TcpState::SynRecv => self.syn_recv,
            TcpState::Established if assured => self.established,
            TcpState::Established => self.unacknowledged,
            TcpState::FinWait => self.fin_wait,
            TcpState::CloseWait => self.close_wait,
            TcpState::LastAck => self.last_ack,
            TcpState::TimeWait => self.time_wait,
            TcpState::Close => self.close,
        }
    }
}

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const ACK: u8 = 0x10;

/// The state a flow starts in from its first packet (sent by the initiator), or `None` when that
/// packet does not open a flow (a RST). A segment other than a SYN is picked up mid-stream, as
/// Linux does with `nf_conntrack_tcp_loose = 1` (the default): the flow was allowed by the policy
/// anyway, and a restarted member keeps its running connections.
pub(crate) fn initial(flags: u8) -> Option<TcpState> {
    if flags & RST != 0 {
        None
    } else if flags & SYN != 0 && flags & ACK == 0 {
        Some(TcpState::SynSent)
    } else if flags & SYN != 0 {
        Some(TcpState::SynRecv)
    } else if flags & FIN != 0 {
        Some(TcpState::FinWait)
    } else {
        Some(TcpState::Established)
    }
}

/// The next state after a segment with `flags` going `side`; `fin_by_reply` says who sent the
/// first FIN (updated in place when this segment is that FIN).
pub(crate) fn next(state: TcpState, side: Side, flags: u8, fin_by_reply: &mut bool) -> TcpState {
    use TcpState::*;
    if flags & RST != 0 {
        return Close;
    }
    let first_fin_side = if *fin_by_reply {
        Side::Reply
    } else {
        Side::Original
    };
    let syn = flags & SYN != 0;
    let ack = flags & ACK != 0;
    let fin = flags & FIN != 0;
    match (syn, ack, fin) {
        (true, false, _) => match (state, side) {
            // A new connection on the same ports after the old one ended.
            (SynSent | Close | TimeWait, Side::Original) => SynSent,
            // Simultaneous open.
            (SynSent, Side::Reply) => SynRecv,
            (s, _) => s,
        },
        (true, true, _) => match (state, side) {
            (SynSent | SynRecv, Side::Reply) => SynRecv,
            (s, _) => s,
        },
        (false, _, true) => match state {
            SynRecv | Established => {
                *fin_by_reply = side == Side::Reply;
                FinWait
            }
            FinWait | CloseWait if side != first_fin_side => LastAck,
            s => s,
        },
        (false, _, false) => match (state, side) {
            (SynRecv, Side::Original) if ack => Established,
            (FinWait, s) if ack && s != first_fin_side => CloseWait,
            (LastAck, s) if ack && s == first_fin_side => TimeWait,
            (s, _) => s,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TcpState::*;

    fn run(start: TcpState, steps: &[(Side, u8, TcpState)]) {
        let mut s = start;
        let mut fin = false;
        for (i, (side, flags, want)) in steps.iter().enumerate() {
            s = next(s, *side, *flags, &mut fin);
            assert_eq!(s, *want, "step {i}");
        }
    }

    #[test]
    fn handshake_data_and_orderly_close_from_the_initiator() {
        use Side::*;
        assert_eq!(initial(SYN), Some(SynSent));
        run(
            SynSent,
            &[
                (Original, SYN, SynSent), // retransmitted SYN
                (Reply, SYN | ACK, SynRecv),
                (Reply, SYN | ACK, SynRecv), // retransmitted SYN+ACK
                (Original, ACK, Established),
                (Reply, ACK, Established),
                (Original, FIN | ACK, FinWait),
                (Original, ACK, FinWait), // the closer's own ACKs change nothing
                (Reply, ACK, CloseWait),
                (Reply, FIN | ACK, LastAck),
                (Original, ACK, TimeWait),
                (Original, SYN, SynSent), // port reuse
            ],
        );
    }

    #[test]
    fn close_from_the_responder_and_combined_fin_ack() {
        use Side::*;
        run(
            Established,
            &[
                (Reply, FIN | ACK, FinWait),
                (Original, FIN | ACK, LastAck),
                (Reply, ACK, TimeWait),
            ],
        );
    }

    #[test]
    fn rst_closes_from_any_state_and_rst_opens_nothing() {
        for s in [
            SynSent,
            SynRecv,
            Established,
            FinWait,
            CloseWait,
            LastAck,
            TimeWait,
        ] {
            run(s, &[(Side::Reply, RST, Close)]);
            run(s, &[(Side::Original, RST | ACK, Close)]);
        }
        assert_eq!(initial(RST), None);
        assert_eq!(initial(RST | ACK), None);
        run(Close, &[(Side::Original, SYN, SynSent)]);
    }

    #[test]
    fn simultaneous_open_and_mid_stream_pickup() {
        run(
            SynSent,
            &[
                (Side::Reply, SYN, SynRecv),
                (Side::Original, ACK, Established),
            ],
        );
        assert_eq!(initial(ACK), Some(Established));
        assert_eq!(initial(ACK | FIN), Some(FinWait));
        assert_eq!(initial(SYN | ACK), Some(SynRecv));
        // A SYN in the middle of a connection changes nothing.
        run(Established, &[(Side::Original, SYN, Established)]);
    }

    #[test]
    fn timeouts_are_linux_defaults() {
        let t = TcpTimeouts::default();
        assert_eq!(t.of(SynSent, false).as_secs(), 120);
        assert_eq!(t.of(SynRecv, false).as_secs(), 60);
        assert_eq!(t.of(Established, true).as_secs(), 432_000);
        assert_eq!(t.of(Established, false).as_secs(), 300);
        assert_eq!(t.of(FinWait, true).as_secs(), 120);
        assert_eq!(t.of(CloseWait, true).as_secs(), 60);
        assert_eq!(t.of(LastAck, true).as_secs(), 30);
        assert_eq!(t.of(TimeWait, true).as_secs(), 120);
        assert_eq!(t.of(Close, true).as_secs(), 10);
        for c in 1..=8 {
            assert_eq!(TcpState::from_code(c).map(|s| s as u8), Some(c));
        }
        assert_eq!(TcpState::from_code(0), None);
    }
}
