//! The DNS responder's answer to one message from the overlay (`privnet_core::io::dns::answer`,
//! hickory-proto underneath), over UDP and TCP, from a fixed name table. Never panics; a message
//! is answered unless it is malformed; an answer is a response with the query's id, fits the
//! transport's limit (512 bytes over UDP without EDNS, 1,232 with, 65,535 over TCP), and only
//! ever carries the addresses of the table.
#![no_main]

use std::net::IpAddr;
use std::sync::OnceLock;

use hickory_proto::op::{Message, MessageType};
use hickory_proto::rr::RData;
use libfuzzer_sys::fuzz_target;
use privnet_core::io::dns::{answer, Outcome, Transport, Zone};
use privnet_core::names::NameTable;

fn setup() -> &'static (Zone, NameTable, Vec<IpAddr>) {
    static S: OnceLock<(Zone, NameTable, Vec<IpAddr>)> = OnceLock::new();
    S.get_or_init(|| {
        let addrs: Vec<IpAddr> = ["10.77.0.3", "fd77::3", "10.77.0.4"]
            .iter()
            .map(|a| a.parse().expect("address"))
            .collect();
        let table = NameTable::default()
            .with_member("db", &addrs[..2])
            .with_member("web.eu", &addrs[2..]);
        (Zone::new("neta", 5).expect("zone"), table, addrs)
    })
}

fuzz_target!(|data: &[u8]| {
    let (zone, table, addrs) = setup();
    for transport in [Transport::Udp, Transport::Tcp] {
        let a = answer(zone, table, data, transport);
        let Some(reply) = a.reply else {
            assert_eq!(a.outcome, Outcome::Malformed);
            continue;
        };
        assert_ne!(a.outcome, Outcome::Malformed);
        let query = Message::from_vec(data).expect("an answered message parses");
        let limit = match transport {
            Transport::Tcp => 65_535,
            Transport::Udp if query.edns.is_some() => 1232,
            Transport::Udp => 512,
        };
        assert!(reply.len() <= limit, "{} bytes over {limit}", reply.len());
        let m = Message::from_vec(&reply).expect("our answer parses");
        assert_eq!(m.metadata.message_type, MessageType::Response);
        assert_eq!(m.metadata.id, query.metadata.id);
        assert_eq!(m.queries, query.queries);
        for r in &m.answers {
            let ip = match &r.data {
                RData::A(a) => IpAddr::V4(a.0),
                RData::AAAA(a) => IpAddr::V6(a.0),
                other => panic!("an answer of another type: {other:?}"),
            };
            assert!(addrs.contains(&ip), "{ip} is no member's");
        }
        if a.outcome != Outcome::Answer {
            assert!(m.answers.is_empty());
        }
    }
});
