//! The responder's decision, without sockets: one DNS message in (bytes), the answer out (bytes)
//! and what it was, given the zone and the name table. hickory-proto reads and writes the
//! messages; nothing here parses DNS by hand. A leaf of `dns`.

use std::net::IpAddr;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, SOA};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use crate::names::NameTable;

/// Largest UDP answer without EDNS (RFC 1035 §4.2.1).
const PLAIN_UDP_MAX: usize = 512;
/// Largest UDP answer we send with EDNS, whatever the client offers (the DNS flag day 2020
/// figure: no IP fragmentation on common paths).
const EDNS_UDP_MAX: u16 = 1232;

/// The zone a responder is authoritative for: the network's name as a DNS name (`neta.`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Zone {
    apex: Name,
    ttl: u32,
}

impl Zone {
    /// The zone of network `network` (`"neta"` → `neta.`), answers valid `ttl` seconds.
    ///
    /// # Errors
    /// A message saying why `network` is not a DNS name.
    pub fn new(network: &str, ttl: u32) -> Result<Self, String> {
        let mut apex = Name::from_ascii(network)
            .map_err(|e| format!("the network name {network:?} is not a DNS name: {e}"))?;
        if apex.num_labels() == 0 {
            return Err(format!("the network name {network:?} is not a DNS name"));
        }
        apex.set_fqdn(true);
        Ok(Self {
            apex: apex.to_lowercase(),
            ttl,
        })
    }

    /// The zone's apex (`neta.`).
    pub fn apex(&self) -> &Name {
        &self.apex
    }

    /// The TTL of the answers, seconds.
    pub fn ttl(&self) -> u32 {
        self.ttl
    }

    /// The member name `name` asks for: its labels below the apex, joined with dots (`None`:
    /// the apex itself, or a label that is not UTF-8).
    fn member<'a>(&self, name: &'a Name) -> Option<String> {
        let below = usize::from(name.num_labels()) - usize::from(self.apex.num_labels());
        let labels: Vec<&'a [u8]> = name.iter().take(below).collect();
        if labels.is_empty() {
            return None;
        }
        let mut out = String::new();
        for (i, l) in labels.iter().enumerate() {
            if i > 0 {
                out.push('.');
            }
            out.push_str(std::str::from_utf8(l).ok()?);
        }
        Some(out)
    }

    /// The zone's SOA record, for the authority section of negative answers (RFC 2308: its
    /// minimum and TTL bound how long a resolver caches the "no").
    fn soa(&self) -> Record {
        let host = Name::from_labels([b"ns".as_slice()])
            .and_then(|n| n.append_domain(&self.apex))
            .unwrap_or_else(|_| self.apex.clone());
        let mail = Name::from_labels([b"hostmaster".as_slice()])
            .and_then(|n| n.append_domain(&self.apex))
            .unwrap_or_else(|_| self.apex.clone());
        let ttl = i32::try_from(self.ttl).unwrap_or(i32::MAX);
        Record::from_rdata(
            self.apex.clone(),
            self.ttl,
            RData::SOA(SOA::new(host, mail, 1, ttl, ttl, ttl, self.ttl)),
        )
    }
}

/// What a message was, one counter each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// `NAME.ZONE.` A or AAAA of a known member with such addresses: answered.
    Answer,
    /// A known name (or the apex) without records of the type asked: NOERROR, no answer.
    NoData,
    /// A name in the zone no member has: NXDOMAIN.
    NxDomain,
    /// A name outside the zone, or a class other than IN: REFUSED (no recursion, no forwarding).
    Refused,
    /// An opcode other than QUERY: NOTIMP.
    NotImp,
    /// Not a DNS query we can answer (unparseable, a response, not exactly one question): dropped
    /// without an answer.
    Malformed,
}

impl Outcome {
    /// The counter's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Answer => "answers",
            Self::NoData => "nodata",
            Self::NxDomain => "nxdomain",
            Self::Refused => "refused",
            Self::NotImp => "notimp",
            Self::Malformed => "malformed",
        }
    }
}

/// The answer to one message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answered {
    /// The message to send back (`None`: drop the query).
    pub reply: Option<Vec<u8>>,
    /// What the query was.
    pub outcome: Outcome,
}

/// The transport a query came over: it bounds the answer's size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// UDP: at most 512 bytes, or what EDNS offers up to 1,232; larger answers are truncated
    /// (TC set) so that the client retries over TCP.
    Udp,
    /// TCP: up to 65,535 bytes.
    Tcp,
}

/// Answer `query` (one DNS message) for `zone` from `names`.
pub fn answer(zone: &Zone, names: &NameTable, query: &[u8], transport: Transport) -> Answered {
    let drop = Answered {
        reply: None,
        outcome: Outcome::Malformed,
    };
    let Ok(msg) = Message::from_vec(query) else {
        return drop;
    };
    if msg.metadata.message_type != MessageType::Query || msg.queries.len() != 1 {
        return drop;
    }
    let mut reply = Message::response(msg.metadata.id, msg.metadata.op_code);
    reply.metadata.recursion_desired = msg.metadata.recursion_desired;
    reply.metadata.recursion_available = false;
    reply.add_queries(msg.queries.iter().cloned());
    let limit = match (&msg.edns, transport) {
        (_, Transport::Tcp) => usize::from(u16::MAX),
        (Some(e), Transport::Udp) => usize::from(e.max_payload().clamp(512, EDNS_UDP_MAX)),
        (None, Transport::Udp) => PLAIN_UDP_MAX,
    };
    if msg.edns.is_some() {
        let mut e = Edns::new();
        e.set_max_payload(EDNS_UDP_MAX);
        reply.set_edns(e);
    }
    let outcome = if msg.metadata.op_code == OpCode::Query {
        decide(zone, names, &msg.queries[0], &mut reply)
    } else {
        Outcome::NotImp
    };
    reply.metadata.response_code = match outcome {
        Outcome::Answer | Outcome::NoData => ResponseCode::NoError,
        Outcome::NxDomain => ResponseCode::NXDomain,
        Outcome::Refused => ResponseCode::Refused,
        Outcome::NotImp => ResponseCode::NotImp,
        Outcome::Malformed => ResponseCode::FormErr,
    };
    let Ok(mut bytes) = reply.to_vec() else {
        return drop;
    };
    if bytes.len() > limit {
        match reply.truncate().to_vec() {
            Ok(b) if b.len() <= limit => bytes = b,
            _ => return drop,
        }
    }
    Answered {
        reply: Some(bytes),
        outcome,
    }
}

/// The answer to the one question `q`, written into `reply`.
fn decide(zone: &Zone, names: &NameTable, q: &Query, reply: &mut Message) -> Outcome {
    let name = q.name();
    if q.query_class() != DNSClass::IN || !zone.apex.zone_of(name) {
        return Outcome::Refused;
    }
    reply.metadata.authoritative = true;
    let Some(member) = zone.member(name) else {
        if name.num_labels() == zone.apex.num_labels() {
            // The apex: it exists, it has no address.
            reply.add_authority(zone.soa());
            return Outcome::NoData;
        }
        reply.add_authority(zone.soa());
        return Outcome::NxDomain;
    };
    let Some(addresses) = names.addresses(&member) else {
        reply.add_authority(zone.soa());
        return Outcome::NxDomain;
    };
    let mut owner = name.clone();
    owner.set_fqdn(true);
    let records: Vec<Record> = addresses
        .iter()
        .filter_map(|a| match (q.query_type(), a) {
            (RecordType::A | RecordType::ANY, IpAddr::V4(v4)) => Some(RData::A(A(*v4))),
            (RecordType::AAAA | RecordType::ANY, IpAddr::V6(v6)) => Some(RData::AAAA(AAAA(*v6))),
            _ => None,
        })
        .map(|rdata| Record::from_rdata(owner.clone(), zone.ttl, rdata))
        .collect();
    if records.is_empty() {
        reply.add_authority(zone.soa());
        return Outcome::NoData;
    }
    reply.add_answers(records);
    Outcome::Answer
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone() -> Zone {
        Zone::new("NetA", 5).unwrap()
    }

    fn names() -> NameTable {
        NameTable::default()
            .with_member(
                "db",
                &["10.77.0.3".parse().unwrap(), "fd77::3".parse().unwrap()],
            )
            .with_member("web-1", &["10.77.0.4".parse().unwrap()])
    }

    fn query(name: &str, rtype: RecordType) -> Vec<u8> {
        let mut m = Message::new(0x1234, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
        m.to_vec().unwrap()
    }

    fn ask(name: &str, rtype: RecordType) -> (Message, Outcome) {
        let a = answer(&zone(), &names(), &query(name, rtype), Transport::Udp);
        (Message::from_vec(&a.reply.unwrap()).unwrap(), a.outcome)
    }

    fn ips(m: &Message) -> Vec<IpAddr> {
        m.answers
            .iter()
            .filter_map(|r| match r.data {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn test_a_and_aaaa_of_a_member() {
        let (m, o) = ask("db.neta.", RecordType::A);
        assert_eq!(o, Outcome::Answer);
        assert_eq!(m.metadata.id, 0x1234);
        assert_eq!(m.metadata.message_type, MessageType::Response);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.metadata.authoritative);
        assert!(m.metadata.recursion_desired);
        assert!(!m.metadata.recursion_available);
        assert_eq!(m.queries.len(), 1);
        assert_eq!(ips(&m), ["10.77.0.3".parse::<IpAddr>().unwrap()]);
        assert_eq!(m.answers[0].ttl, 5);
        let (m, o) = ask("db.neta.", RecordType::AAAA);
        assert_eq!(o, Outcome::Answer);
        assert_eq!(ips(&m), ["fd77::3".parse::<IpAddr>().unwrap()]);
    }

    #[test]
    fn test_case_insensitive_and_without_trailing_dot() {
        for name in ["DB.NETA.", "Db.nEtA", "db.neta"] {
            let (m, o) = ask(name, RecordType::A);
            assert_eq!(o, Outcome::Answer, "{name}");
            assert_eq!(ips(&m), ["10.77.0.3".parse::<IpAddr>().unwrap()], "{name}");
        }
        let (m, o) = ask("WEB-1.neta.", RecordType::A);
        assert_eq!(o, Outcome::Answer);
        assert_eq!(ips(&m), ["10.77.0.4".parse::<IpAddr>().unwrap()]);
    }

    #[test]
    fn test_unknown_name_in_the_zone_is_nxdomain() {
        for name in ["nope.neta.", "x.db.neta."] {
            let (m, o) = ask(name, RecordType::A);
            assert_eq!(o, Outcome::NxDomain, "{name}");
            assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
            assert!(m.metadata.authoritative);
            assert!(m.answers.is_empty());
            assert!(matches!(m.authorities[0].data, RData::SOA(_)));
        }
    }

    #[test]
    fn test_known_name_without_that_type_and_the_apex_are_nodata() {
        let (m, o) = ask("web-1.neta.", RecordType::AAAA);
        assert_eq!(o, Outcome::NoData);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.answers.is_empty());
        let (_, o) = ask("db.neta.", RecordType::MX);
        assert_eq!(o, Outcome::NoData);
        let (_, o) = ask("neta.", RecordType::A);
        assert_eq!(o, Outcome::NoData);
    }

    #[test]
    fn test_other_zones_and_classes_are_refused() {
        for name in ["db.netb.", "example.com.", "db.neta.example.", "."] {
            let (m, o) = ask(name, RecordType::A);
            assert_eq!(o, Outcome::Refused, "{name}");
            assert_eq!(m.metadata.response_code, ResponseCode::Refused);
            assert!(!m.metadata.authoritative);
            assert!(m.answers.is_empty());
        }
        let mut m = Message::new(7, MessageType::Query, OpCode::Query);
        let mut q = Query::query(Name::from_ascii("db.neta.").unwrap(), RecordType::A);
        q.set_query_class(DNSClass::CH);
        m.add_query(q);
        let a = answer(&zone(), &names(), &m.to_vec().unwrap(), Transport::Udp);
        assert_eq!(a.outcome, Outcome::Refused);
    }

    #[test]
    fn test_malformed_input_is_dropped() {
        let good = query("db.neta.", RecordType::A);
        let mut response = Message::from_vec(&good).unwrap();
        response.metadata.message_type = MessageType::Response;
        let mut two = Message::from_vec(&good).unwrap();
        two.add_query(Query::query(
            Name::from_ascii("web-1.neta.").unwrap(),
            RecordType::A,
        ));
        let none = Message::new(1, MessageType::Query, OpCode::Query);
        let bad: Vec<Vec<u8>> = vec![
            Vec::new(),
            vec![0; 5],
            good[..good.len() - 3].to_vec(),
            vec![0xff; 64],
            response.to_vec().unwrap(),
            two.to_vec().unwrap(),
            none.to_vec().unwrap(),
        ];
        for b in bad {
            let a = answer(&zone(), &names(), &b, Transport::Udp);
            assert_eq!(a.outcome, Outcome::Malformed, "{b:?}");
            assert_eq!(a.reply, None);
        }
    }

    #[test]
    fn test_other_opcodes_are_notimp() {
        let mut m = Message::from_vec(&query("db.neta.", RecordType::A)).unwrap();
        m.metadata.op_code = OpCode::Status;
        let a = answer(&zone(), &names(), &m.to_vec().unwrap(), Transport::Udp);
        assert_eq!(a.outcome, Outcome::NotImp);
        let r = Message::from_vec(&a.reply.unwrap()).unwrap();
        assert_eq!(r.metadata.response_code, ResponseCode::NotImp);
    }

    #[test]
    fn test_large_answers_are_truncated_over_udp_only() {
        let many: Vec<IpAddr> = (0..60u8)
            .map(|i| {
                IpAddr::V6(std::net::Ipv6Addr::new(
                    0xfd77,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    u16::from(i),
                ))
            })
            .collect();
        let t = NameTable::default().with_member("big", &many);
        let q = query("big.neta.", RecordType::AAAA);
        let udp = answer(&zone(), &t, &q, Transport::Udp);
        let bytes = udp.reply.unwrap();
        assert!(bytes.len() <= PLAIN_UDP_MAX);
        let m = Message::from_vec(&bytes).unwrap();
        assert!(m.metadata.truncation);
        assert!(m.answers.is_empty());
        let tcp = answer(&zone(), &t, &q, Transport::Tcp);
        let m = Message::from_vec(&tcp.reply.unwrap()).unwrap();
        assert!(!m.metadata.truncation);
        assert_eq!(m.answers.len(), 60);
    }

    #[test]
    fn test_bad_zone_names_are_refused() {
        assert!(Zone::new("", 5).is_err());
        assert!(Zone::new("a..b", 5).is_err());
        assert_eq!(
            Zone::new("prod.eu", 5).unwrap().apex().to_ascii(),
            "prod.eu."
        );
    }
}
