//! `privnet policy explain` against a running sidecar: the request a client sends on the status
//! socket (`explain {JSON}` on one line: the flow, already resolved to addresses, and which way it
//! crosses the member), and the sidecar's answer, built by the network's driver from the policy in
//! force, the connection tracker and the peer's session ([`DriverHandle::explain`]). The client
//! side is in `policy_cli.rs`, the socket in `status.rs`.

use std::net::IpAddr;

use privnet_core::io::DriverHandle;
use privnet_core::policy::conntrack::FlowState;
use privnet_core::policy::{tcp_flags, Decider, Direction, Flow, Protocol};
use serde::{Deserialize, Serialize};

/// The request line's first word.
pub const VERB: &str = "explain ";

/// A flow to explain.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Request {
    /// The network (by name); `None`: the one that has `src` or `dst` among its own addresses.
    pub network: Option<String>,
    /// The initiator's address.
    pub src: IpAddr,
    /// The responder's address.
    pub dst: IpAddr,
    /// IANA protocol number.
    pub proto: u8,
    /// The responder's port (TCP, UDP, SCTP).
    pub port: Option<u16>,
    /// ICMP type and code (default: echo request).
    pub icmp: Option<(u8, u8)>,
    /// The flow leaves this member (it is the initiator); else it arrives (the responder).
    pub outbound: bool,
}

/// What the sidecar answers.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Answer {
    /// The network.
    pub network: String,
    /// This member.
    pub member: String,
    /// Why there is no explanation (no such network, no policy, no member owns the address).
    pub error: Option<String>,
    /// The peer the routing table gives for the remote end.
    pub peer: Option<String>,
    /// Whether a session with it is up.
    pub session: bool,
    /// The tracked flow carrying these packets, if any (state, whether a reply was seen, time
    /// left).
    pub tracked: Option<String>,
    /// `allow`, `deny` or `reject`: what the policy decides for it as a new flow.
    pub verdict: Option<String>,
    /// The tier of the deciding rule (`None`: the default).
    pub tier: Option<String>,
    /// The deciding rule's id, or `default`, `unknown-protocol`, `non-first-fragment`.
    pub rule: Option<String>,
    /// The deciding rule's line in the policy file.
    pub line: Option<usize>,
    /// The policy's hash.
    pub policy_hash: Option<String>,
    /// Every rule considered, tier by tier (the policy's explanation).
    pub explanation: Option<String>,
}

/// The flow of a request: a TCP SYN (or a UDP datagram) from port 40000, an ICMP echo request
/// (or the given type and code), or a packet of another protocol.
pub fn flow_for(
    src: IpAddr,
    dst: IpAddr,
    proto: Protocol,
    port: Option<u16>,
    icmp: Option<(u8, u8)>,
) -> Flow {
    if proto.has_ports() {
        let mut f = Flow::tcp(src, 40000, dst, port.unwrap_or(0), tcp_flags::SYN);
        f.proto = proto;
        f
    } else if proto.is_icmp() {
        let echo = if proto == Protocol::ICMP { 8 } else { 128 };
        let (ty, code) = icmp.unwrap_or((echo, 0));
        let mut f = Flow::icmp(src, dst, ty, code, Some(1));
        f.proto = proto;
        f
    } else {
        Flow::other(src, dst, proto)
    }
}

/// Parse a request line; `None` if it is not an `explain` request.
pub fn parse(line: &[u8]) -> Option<Result<Request, String>> {
    let text = std::str::from_utf8(line).ok()?;
    let json = text.strip_prefix(VERB)?;
    Some(serde_json::from_str(json.trim()).map_err(|e| format!("a bad explain request: {e}")))
}

/// Ask `handle`'s driver (network `network`, member `member`) about `req`.
pub async fn answer(handle: &DriverHandle, network: &str, member: &str, req: &Request) -> Answer {
    let mut a = Answer {
        network: network.to_owned(),
        member: member.to_owned(),
        ..Answer::default()
    };
    let flow = flow_for(
        req.src,
        req.dst,
        Protocol::Number(req.proto),
        req.port,
        req.icmp,
    );
    let direction = if req.outbound {
        Direction::Outbound
    } else {
        Direction::Inbound
    };
    let e = match handle.explain(flow, direction).await {
        Ok(Some(e)) => e,
        Ok(None) => {
            a.error = Some(
                if handle
                    .snapshot()
                    .policy
                    .as_ref()
                    .and_then(|p| p.hash.as_ref())
                    .is_none()
                {
                    "this network has no access policy: members talk freely".to_owned()
                } else {
                    let remote = if req.outbound { req.dst } else { req.src };
                    format!("no member of the network owns {remote} (no route to a peer)")
                },
            );
            return a;
        }
        Err(e) => {
            a.error = Some(format!("the network's driver: {e}"));
            return a;
        }
    };
    a.peer = Some(e.peer);
    a.session = e.session;
    a.policy_hash = Some(e.policy.hash_hex());
    a.tracked = e.live.tracked.map(|t| {
        let state = match t.state {
            FlowState::Tcp(s) => format!("tcp {s:?}"),
            FlowState::Udp => "udp".to_owned(),
            FlowState::IcmpEcho => "icmp echo".to_owned(),
            FlowState::Other => "other".to_owned(),
        };
        format!(
            "{state}{}, expires in {} s",
            if t.assured {
                ", reply seen"
            } else {
                ", no reply yet"
            },
            t.expires_in.as_secs()
        )
    });
    if let Some(x) = e.live.policy {
        a.verdict = Some(x.verdict.action.name().to_owned());
        a.tier = x.verdict.tier.map(|t| t.name().to_owned());
        a.line = match x.verdict.decided_by {
            Decider::Rule(r) => e.policy.rule(r).and_then(|i| i.location).map(|l| l.line),
            _ => None,
        };
        a.rule = Some(x.decided_by.clone());
        a.explanation = Some(x.to_string());
    }
    a
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_others_are_not_requests() {
        let r = Request {
            network: None,
            src: "10.0.0.1".parse().unwrap(),
            dst: "10.0.0.2".parse().unwrap(),
            proto: 6,
            port: Some(5432),
            icmp: None,
            outbound: false,
        };
        let line = format!("{VERB}{}\n", serde_json::to_string(&r).unwrap());
        assert_eq!(parse(line.as_bytes()), Some(Ok(r)));
        assert_eq!(parse(b"status\n"), None);
        assert!(matches!(parse(b"explain {\"src\": 1}"), Some(Err(_))));
        let f = flow_for(
            "10.0.0.1".parse().unwrap(),
            "10.0.0.2".parse().unwrap(),
            Protocol::UDP,
            Some(53),
            None,
        );
        assert_eq!((f.proto, f.dst_port), (Protocol::UDP, Some(53)));
    }
}
