//! The DNS responder of TUN mode (feature `dns`): answers `NAME.NETWORK.` (A and AAAA) for the
//! members the driver knows, over UDP and TCP, on one address (the sidecar's default: this
//! member's own overlay address, port 53). The zone is the network's name; names are the
//! driver's [`NameTable`] ([`super::DriverHandle::names`]), republished whenever the peers change,
//! so a member that joins or leaves through the directory resolves (or stops resolving) at once.
//!
//! No recursion and no forwarding: a name outside the zone is REFUSED. A message that is not one
//! query (unparseable, a response, not exactly one question) is dropped and counted. The
//! decision is the socket-free [`answer()`] (bytes in, bytes out); this module is its tokio shell.
//!
//! Policy: a query from another member arrives through the TUN device, so it passed the access
//! policy of the network (inbound UDP or TCP to port 53 of this member) before it reaches the
//! responder; a query from this member's own namespace (the application's container) does not
//! cross the overlay and is not subject to it.

mod answer;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{watch, Semaphore};

pub use answer::{answer, Answered, Outcome, Transport, Zone};

use crate::names::NameTable;

/// The TTL of the answers, seconds: short, since members come and go through the directory.
pub const DEFAULT_TTL: u32 = 5;
/// The DNS port.
pub const DNS_PORT: u16 = 53;
/// TCP connections served at once; more are closed at once (counted).
pub const MAX_TCP_CONNECTIONS: usize = 64;
/// A TCP connection idle (no complete query) this long is closed.
pub const TCP_IDLE: Duration = Duration::from_secs(10);
/// Largest DNS message read over UDP.
const UDP_BUF: usize = 4096;

/// Where and for which zone a responder answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsConfig {
    /// The address to listen on (UDP and TCP).
    pub listen: SocketAddr,
    /// The zone: the network's name.
    pub zone: Zone,
}

/// A responder's counters (the status document's `dns`, the metrics'
/// `privnet_dns_queries_total{outcome}`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DnsStats {
    /// Messages received (every outcome below, each counted once).
    pub queries: u64,
    /// Answered with records.
    pub answers: u64,
    /// Known names (or the apex) without records of the type asked.
    pub nodata: u64,
    /// Names in the zone no member has.
    pub nxdomain: u64,
    /// Names outside the zone, or a class other than IN.
    pub refused: u64,
    /// Opcodes other than QUERY.
    pub notimp: u64,
    /// Dropped: not one DNS query.
    pub malformed: u64,
    /// TCP connections closed at once because `MAX_TCP_CONNECTIONS` were open.
    pub tcp_refused: u64,
    /// Answers that could not be sent (socket errors).
    pub send_errors: u64,
}

/// The live counters behind [`DnsStats`], shared with the status socket.
#[derive(Debug, Default)]
pub struct DnsCounters {
    queries: AtomicU64,
    answers: AtomicU64,
    nodata: AtomicU64,
    nxdomain: AtomicU64,
    refused: AtomicU64,
    notimp: AtomicU64,
    malformed: AtomicU64,
    tcp_refused: AtomicU64,
    send_errors: AtomicU64,
}

impl DnsCounters {
    /// Their values now.
    pub fn stats(&self) -> DnsStats {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        DnsStats {
            queries: r(&self.queries),
            answers: r(&self.answers),
            nodata: r(&self.nodata),
            nxdomain: r(&self.nxdomain),
            refused: r(&self.refused),
            notimp: r(&self.notimp),
            malformed: r(&self.malformed),
            tcp_refused: r(&self.tcp_refused),
            send_errors: r(&self.send_errors),
        }
    }

    fn count(&self, outcome: Outcome) {
        self.queries.fetch_add(1, Ordering::Relaxed);
        let c = match outcome {
            Outcome::Answer => &self.answers,
            Outcome::NoData => &self.nodata,
            Outcome::NxDomain => &self.nxdomain,
            Outcome::Refused => &self.refused,
            Outcome::NotImp => &self.notimp,
            Outcome::Malformed => &self.malformed,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// A bound responder; [`DnsResponder::run`] serves it.
#[derive(Debug)]
pub struct DnsResponder {
    udp: UdpSocket,
    tcp: TcpListener,
    zone: Arc<Zone>,
    names: watch::Receiver<Arc<NameTable>>,
    counters: Arc<DnsCounters>,
}

impl DnsResponder {
    /// Bind UDP and TCP on `config.listen`, answering from `names` (a driver's
    /// [`super::DriverHandle::names`]).
    ///
    /// # Errors
    /// Either socket could not be bound (the address is not ours yet, the port is taken, or a
    /// port under 1024 without `CAP_NET_BIND_SERVICE`).
    pub async fn bind(
        config: DnsConfig,
        names: watch::Receiver<Arc<NameTable>>,
    ) -> std::io::Result<Self> {
        let udp = UdpSocket::bind(config.listen).await?;
        // The same port for TCP (the UDP one when `listen` asked for port 0).
        let tcp = TcpListener::bind(udp.local_addr()?).await?;
        Ok(Self {
            udp,
            tcp,
            zone: Arc::new(config.zone),
            names,
            counters: Arc::default(),
        })
    }

    /// The address it answers on.
    ///
    /// # Errors
    /// The socket's address could not be read.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.udp.local_addr()
    }

    /// Its counters (shared: they keep counting while it runs).
    pub fn counters(&self) -> Arc<DnsCounters> {
        self.counters.clone()
    }

    /// Serve until the task is dropped or aborted. Socket errors on one message are counted and
    /// logged, never fatal.
    pub async fn run(self) {
        let Self {
            udp,
            tcp,
            zone,
            names,
            counters,
        } = self;
        let slots = Arc::new(Semaphore::new(MAX_TCP_CONNECTIONS));
        let mut buf = vec![0u8; UDP_BUF];
        loop {
            tokio::select! {
                r = udp.recv_from(&mut buf) => match r {
                    Ok((n, from)) => {
                        let table = names.borrow().clone();
                        let a = answer(&zone, &table, &buf[..n], Transport::Udp);
                        counters.count(a.outcome);
                        if a.outcome == Outcome::Malformed {
                            tracing::debug!(%from, bytes = n, "dns: malformed message dropped");
                        }
                        if let Some(reply) = a.reply {
                            if let Err(e) = udp.send_to(&reply, from).await {
                                counters.send_errors.fetch_add(1, Ordering::Relaxed);
                                tracing::debug!(%from, "dns: answer not sent: {e}");
                            }
                        }
                    }
                    Err(e) => {
                        // An ICMP error from an earlier answer, say: nothing to do but go on.
                        tracing::debug!("dns: udp receive: {e}");
                    }
                },
                r = tcp.accept() => match r {
                    Ok((stream, from)) => {
                        let Ok(permit) = slots.clone().try_acquire_owned() else {
                            counters.tcp_refused.fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(%from, "dns: tcp connection refused: {MAX_TCP_CONNECTIONS} open");
                            continue;
                        };
                        let (zone, names, counters) = (zone.clone(), names.clone(), counters.clone());
                        tokio::spawn(async move {
                            serve_tcp(stream, &zone, &names, &counters).await;
                            drop(permit);
                        });
                    }
                    Err(e) => {
                        tracing::warn!("dns: tcp accept: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }
    }
}

/// Serve one TCP connection: length-prefixed messages (RFC 1035 §4.2.2) until the client closes,
/// stays idle [`TCP_IDLE`], or sends a malformed message.
async fn serve_tcp(
    mut stream: TcpStream,
    zone: &Zone,
    names: &watch::Receiver<Arc<NameTable>>,
    counters: &DnsCounters,
) {
    let mut buf = Vec::new();
    loop {
        let mut len = [0u8; 2];
        let read = async {
            stream.read_exact(&mut len).await?;
            buf.resize(usize::from(u16::from_be_bytes(len)), 0);
            stream.read_exact(&mut buf).await
        };
        match tokio::time::timeout(TCP_IDLE, read).await {
            Ok(Ok(_)) => {}
            // Closed, reset, or idle: done.
            Ok(Err(_)) | Err(_) => return,
        }
        let table = names.borrow().clone();
        let a = answer(zone, &table, &buf, Transport::Tcp);
        counters.count(a.outcome);
        let Some(reply) = a.reply else {
            return;
        };
        let Ok(n) = u16::try_from(reply.len()) else {
            counters.send_errors.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let mut out = Vec::with_capacity(reply.len() + 2);
        out.extend_from_slice(&n.to_be_bytes());
        out.extend_from_slice(&reply);
        if stream.write_all(&out).await.is_err() {
            counters.send_errors.fetch_add(1, Ordering::Relaxed);
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
    use hickory_proto::rr::{Name, RecordType};

    fn query(name: &str) -> Vec<u8> {
        let mut m = Message::new(9, MessageType::Query, OpCode::Query);
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
        m.to_vec().unwrap()
    }

    #[tokio::test]
    async fn test_udp_and_tcp_answers_follow_the_names() {
        let (tx, rx) = watch::channel(Arc::new(NameTable::default()));
        let cfg = DnsConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            zone: Zone::new("neta", DEFAULT_TTL).unwrap(),
        };
        let r = DnsResponder::bind(cfg, rx).await.unwrap();
        let addr = r.local_addr().unwrap();
        let counters = r.counters();
        let task = tokio::spawn(r.run());
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut buf = [0u8; 1500];
        let mut ask = async |name: &str| {
            client.send_to(&query(name), addr).await.unwrap();
            let (n, _) = tokio::time::timeout(Duration::from_secs(5), client.recv_from(&mut buf))
                .await
                .unwrap()
                .unwrap();
            Message::from_vec(&buf[..n]).unwrap()
        };
        assert_eq!(
            ask("db.neta.").await.metadata.response_code,
            ResponseCode::NXDomain
        );
        // A member joins: it resolves from the next query on.
        tx.send_replace(Arc::new(
            NameTable::default().with_member("db", &["10.77.0.3".parse().unwrap()]),
        ));
        let m = ask("db.neta.").await;
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert_eq!(m.answers.len(), 1);
        assert_eq!(
            ask("db.example.").await.metadata.response_code,
            ResponseCode::Refused
        );
        // Garbage is dropped (no answer), then the next query still gets one.
        client.send_to(b"\x00\x01garbage", addr).await.unwrap();
        assert_eq!(ask("db.neta.").await.answers.len(), 1);

        // TCP: two queries on one connection.
        let mut s = TcpStream::connect(addr).await.unwrap();
        for _ in 0..2 {
            let q = query("DB.NETA.");
            let n = u16::try_from(q.len()).unwrap().to_be_bytes();
            s.write_all(&[&n[..], &q].concat()).await.unwrap();
            let mut len = [0u8; 2];
            s.read_exact(&mut len).await.unwrap();
            let mut r = vec![0u8; usize::from(u16::from_be_bytes(len))];
            s.read_exact(&mut r).await.unwrap();
            assert_eq!(Message::from_vec(&r).unwrap().answers.len(), 1);
        }
        let st = counters.stats();
        assert_eq!(st.queries, 7);
        assert_eq!(st.answers, 4);
        assert_eq!(st.nxdomain, 1);
        assert_eq!(st.refused, 1);
        assert_eq!(st.malformed, 1);
        task.abort();
    }
}
