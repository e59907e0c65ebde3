//! # privnet-testapp
//!
//! A tiny, std-only echo/transfer service used as the *application* container in privnet's pod tests
//! (`tests/container/pods.sh`). It is built as a static binary and shipped in a `FROM scratch` image.
//!
//! Protocols (both deliberately trivial so a failure always points at the network, not at the app):
//!
//! * **TCP transfer**: the client sends N bytes and half-closes its side (`shutdown(Write)`). The server hashes
//!   everything until EOF and answers one line, `sha256=<64 hex chars> bytes=<N>\n`, then closes. The client
//!   compares that line with its own digest of what it sent.
//! * **UDP echo**: the server sends every datagram back to its sender unchanged. The client sends numbered
//!   probes and waits (bounded) for each echo.
//!
//! Every network wait on the client side, and every per-connection wait on the server side, is bounded by a
//! timeout: nothing here can hang a test forever.
// An I/O program, not sans-IO code: it reads clocks and opens sockets (see clippy.toml).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

pub mod cli;

/// Size of the chunks the client writes and the server reads.
const CHUNK: usize = 64 * 1024;
/// Longest reply line the client accepts from the server.
const MAX_REPLY: usize = 256;
/// The server refuses connections beyond this many concurrent ones (each costs a thread).
const MAX_CONCURRENT_CONNECTIONS: usize = 64;
/// Marker at the start of every UDP probe.
const PING_MAGIC: &[u8; 8] = b"PNTPING1";

/// Errors of the client and server operations.
#[derive(Debug)]
pub enum Error {
    /// An I/O error, with what was being done.
    Io {
        /// What was being done when the error happened.
        context: String,
        /// The underlying error.
        source: io::Error,
    },
    /// The server's digest or byte count differs from what the client sent.
    Mismatch {
        /// What the client computed over the bytes it sent.
        expected: TransferReport,
        /// What the server said it received.
        got: TransferReport,
    },
    /// The peer said something that is not the protocol.
    Protocol(String),
    /// An overall deadline passed.
    Timeout(String),
    /// Some UDP probes never came back.
    Lost {
        /// Probes sent.
        sent: u32,
        /// Probes whose echo came back.
        received: u32,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { context, source } => write!(f, "{context}: {source}"),
            Error::Mismatch { expected, got } => {
                write!(f, "digest mismatch: sent {expected}, server received {got}")
            }
            Error::Protocol(msg) => write!(f, "protocol error: {msg}"),
            Error::Timeout(msg) => write!(f, "timed out: {msg}"),
            Error::Lost { sent, received } => {
                write!(f, "udp echo: {received}/{sent} probes came back")
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
    let context = context.into();
    move |source| Error::Io { context, source }
}

/// Deterministic pseudo-random byte stream (SplitMix64). Not cryptographic: it only has to make the
/// transferred bytes reproducible from a seed and not trivially compressible.
#[derive(Debug, Clone)]
pub struct PseudoRandom {
    state: u64,
}

impl PseudoRandom {
    /// A stream determined by `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next 64 pseudo-random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Fills `buf` with the next bytes of the stream.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// The SHA-256 (hex) and length of a byte stream: what the server reports and the client checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferReport {
    /// Lower-case hex SHA-256 of the bytes.
    pub sha256_hex: String,
    /// Number of bytes.
    pub bytes: u64,
}

impl fmt::Display for TransferReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256={} bytes={}", self.sha256_hex, self.bytes)
    }
}

impl TransferReport {
    /// The report of a finished digest.
    fn from_digest(digest: ring::digest::Digest, bytes: u64) -> Self {
        Self {
            sha256_hex: hex(digest.as_ref()),
            bytes,
        }
    }

    /// Parses the server's reply line `sha256=<hex> bytes=<n>` (trailing newline optional).
    pub fn parse(line: &str) -> Result<Self, Error> {
        let line = line.trim_end_matches(['\r', '\n']);
        let mut parts = line.split(' ');
        let (Some(sha), Some(bytes), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(Error::Protocol(format!("malformed reply {line:?}")));
        };
        let sha = sha
            .strip_prefix("sha256=")
            .ok_or_else(|| Error::Protocol(format!("reply lacks sha256=: {line:?}")))?;
        if sha.len() != 64 || !sha.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(Error::Protocol(format!("bad sha256 in reply {line:?}")));
        }
        let bytes = bytes
            .strip_prefix("bytes=")
            .and_then(|n| n.parse::<u64>().ok())
            .ok_or_else(|| Error::Protocol(format!("bad bytes= in reply {line:?}")))?;
        Ok(Self {
            sha256_hex: sha.to_owned(),
            bytes,
        })
    }
}

/// Lower-case hex of `data`.
pub fn hex(data: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(data.len() * 2);
    for b in data {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

/// SHA-256 report of the `n` bytes that `send_tcp` sends for `seed`, computed without a network.
pub fn expected_report(n: u64, seed: u64) -> TransferReport {
    let mut rng = PseudoRandom::new(seed);
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; CHUNK];
    let mut left = n;
    while left > 0 {
        let len = usize::try_from(left.min(CHUNK as u64)).unwrap_or(CHUNK);
        rng.fill(&mut buf[..len]);
        ctx.update(&buf[..len]);
        left -= len as u64;
    }
    TransferReport::from_digest(ctx.finish(), n)
}

// ---------------------------------------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------------------------------------

/// Server-side timeouts.
#[derive(Debug, Clone, Copy)]
pub struct ServerConfig {
    /// A connection that sends nothing for this long is dropped.
    pub idle_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(30),
        }
    }
}

/// Serves one TCP transfer connection: reads to EOF (each read bounded by `idle_timeout`), replies with the
/// digest line and closes. Returns what was received.
pub fn handle_tcp_connection(
    mut stream: TcpStream,
    config: ServerConfig,
) -> Result<TransferReport, Error> {
    stream
        .set_read_timeout(Some(config.idle_timeout))
        .map_err(io_err("set read timeout"))?;
    stream
        .set_write_timeout(Some(config.idle_timeout))
        .map_err(io_err("set write timeout"))?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; CHUNK];
    let mut total: u64 = 0;
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                ctx.update(&buf[..n]);
                total += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err("read transfer")(e)),
        }
    }
    let report = TransferReport::from_digest(ctx.finish(), total);
    stream
        .write_all(format!("{report}\n").as_bytes())
        .map_err(io_err("write reply"))?;
    stream.flush().map_err(io_err("flush reply"))?;
    // The peer may already be gone; the reply was written, so this is best effort.
    let _ = stream.shutdown(Shutdown::Both);
    Ok(report)
}

/// Accepts transfer connections forever, one thread per connection (at most
/// `MAX_CONCURRENT_CONNECTIONS` at a time). Logs one line per connection to stdout.
pub fn serve_tcp(listener: TcpListener, config: ServerConfig) -> Result<(), Error> {
    let active = Arc::new(AtomicUsize::new(0));
    loop {
        let (stream, peer) = match listener.accept() {
            Ok(x) => x,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                // Transient accept errors (EMFILE, ECONNABORTED) must not kill the server.
                eprintln!("tcp accept: {e}");
                thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        if active.load(Ordering::SeqCst) >= MAX_CONCURRENT_CONNECTIONS {
            eprintln!("tcp {peer}: too many connections, dropped");
            continue;
        }
        active.fetch_add(1, Ordering::SeqCst);
        let active = Arc::clone(&active);
        let spawned = thread::Builder::new()
            .name(format!("tcp-{peer}"))
            .spawn(move || {
                match handle_tcp_connection(stream, config) {
                    Ok(report) => println!("tcp {peer}: {report}"),
                    Err(e) => eprintln!("tcp {peer}: {e}"),
                }
                active.fetch_sub(1, Ordering::SeqCst);
            });
        if let Err(e) = spawned {
            eprintln!("tcp {peer}: cannot spawn handler: {e}");
        }
    }
}

/// Echoes every datagram back to its sender, forever.
pub fn serve_udp(socket: UdpSocket) -> Result<(), Error> {
    let mut buf = vec![0u8; 65536];
    loop {
        match socket.recv_from(&mut buf) {
            Ok((n, peer)) => {
                if let Err(e) = socket.send_to(&buf[..n], peer) {
                    eprintln!("udp {peer}: echo failed: {e}");
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                // ICMP errors from earlier sends surface here on Linux; they are not fatal.
                eprintln!("udp recv: {e}");
                thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------------------------------------

/// Client-side timeouts of a TCP transfer.
#[derive(Debug, Clone, Copy)]
pub struct TcpClientConfig {
    /// Bound on the TCP connect.
    pub connect_timeout: Duration,
    /// Bound on each read and write.
    pub io_timeout: Duration,
    /// Bound on the whole transfer, connect to reply.
    pub deadline: Duration,
}

impl Default for TcpClientConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            io_timeout: Duration::from_secs(10),
            deadline: Duration::from_secs(60),
        }
    }
}

/// Result of a verified TCP transfer.
#[derive(Debug, Clone)]
pub struct TransferOutcome {
    /// What both sides agreed on.
    pub report: TransferReport,
    /// Wall time of the whole transfer.
    pub elapsed: Duration,
}

/// Sends `bytes` pseudo-random bytes (from `seed`) to a transfer server at `addr`, and checks the digest it
/// returns against the digest of what was sent. `Ok` only if they are equal.
pub fn send_tcp(
    addr: SocketAddr,
    bytes: u64,
    seed: u64,
    config: TcpClientConfig,
) -> Result<TransferOutcome, Error> {
    let start = Instant::now();
    let mut stream = TcpStream::connect_timeout(&addr, config.connect_timeout)
        .map_err(io_err(format!("connect to {addr}")))?;
    stream
        .set_read_timeout(Some(config.io_timeout))
        .map_err(io_err("set read timeout"))?;
    stream
        .set_write_timeout(Some(config.io_timeout))
        .map_err(io_err("set write timeout"))?;
    // Nagle is irrelevant for bulk writes; the small reply comes after shutdown.
    let mut rng = PseudoRandom::new(seed);
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; CHUNK];
    let mut left = bytes;
    while left > 0 {
        if start.elapsed() > config.deadline {
            return Err(Error::Timeout(format!(
                "sent {} of {bytes} bytes within {:?}",
                bytes - left,
                config.deadline
            )));
        }
        let len = usize::try_from(left.min(CHUNK as u64)).unwrap_or(CHUNK);
        rng.fill(&mut buf[..len]);
        ctx.update(&buf[..len]);
        stream
            .write_all(&buf[..len])
            .map_err(io_err(format!("send to {addr}")))?;
        left -= len as u64;
    }
    stream
        .shutdown(Shutdown::Write)
        .map_err(io_err("half-close"))?;
    let expected = TransferReport::from_digest(ctx.finish(), bytes);

    let mut reply = Vec::with_capacity(MAX_REPLY);
    let mut chunk = [0u8; MAX_REPLY];
    loop {
        if start.elapsed() > config.deadline {
            return Err(Error::Timeout(format!(
                "no reply from {addr} within {:?}",
                config.deadline
            )));
        }
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                reply.extend_from_slice(&chunk[..n]);
                if reply.len() > MAX_REPLY {
                    return Err(Error::Protocol(format!(
                        "reply longer than {MAX_REPLY} bytes"
                    )));
                }
                if reply.contains(&b'\n') {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err(format!("read reply from {addr}"))(e)),
        }
    }
    let line = std::str::from_utf8(&reply)
        .map_err(|_| Error::Protocol("reply is not UTF-8".to_owned()))?;
    if line.is_empty() {
        return Err(Error::Protocol(format!("{addr} closed without a reply")));
    }
    let got = TransferReport::parse(line)?;
    if got != expected {
        return Err(Error::Mismatch { expected, got });
    }
    Ok(TransferOutcome {
        report: expected,
        elapsed: start.elapsed(),
    })
}

/// Settings of a UDP echo check.
#[derive(Debug, Clone, Copy)]
pub struct UdpPingConfig {
    /// Number of probes; every one must come back.
    pub count: u32,
    /// How long to wait for each echo before re-sending the probe.
    pub timeout: Duration,
    /// Re-sends of a probe whose echo did not come back in time (UDP may drop a packet).
    pub retries: u32,
}

impl Default for UdpPingConfig {
    fn default() -> Self {
        Self {
            count: 5,
            timeout: Duration::from_secs(1),
            retries: 2,
        }
    }
}

/// Result of a UDP echo check.
#[derive(Debug, Clone)]
pub struct PingReport {
    /// Probes sent (not counting re-sends).
    pub sent: u32,
    /// Probes whose echo came back.
    pub received: u32,
    /// Slowest round trip seen.
    pub max_rtt: Duration,
}

fn probe_payload(seq: u32, nonce: u64) -> [u8; 20] {
    let mut p = [0u8; 20];
    p[..8].copy_from_slice(PING_MAGIC);
    p[8..12].copy_from_slice(&seq.to_be_bytes());
    p[12..].copy_from_slice(&nonce.to_be_bytes());
    p
}

/// Sends `config.count` probes to a UDP echo server at `addr`, one after another, and waits for each echo (at
/// most `timeout * (retries + 1)` per probe). Returns `Ok` only if every probe came back.
pub fn udp_ping(addr: SocketAddr, config: UdpPingConfig) -> Result<PingReport, Error> {
    let bind: SocketAddr = if addr.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from(([0u16; 8], 0))
    };
    let socket = UdpSocket::bind(bind).map_err(io_err("bind udp socket"))?;
    socket
        .connect(addr)
        .map_err(io_err(format!("udp connect {addr}")))?;
    // A per-process nonce so a stale echo from an earlier run is never mistaken for ours.
    let nonce = {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        PseudoRandom::new(t ^ u64::from(std::process::id())).next_u64()
    };
    let mut report = PingReport {
        sent: 0,
        received: 0,
        max_rtt: Duration::ZERO,
    };
    let mut buf = [0u8; 64];
    for seq in 0..config.count {
        let payload = probe_payload(seq, nonce);
        report.sent += 1;
        'attempts: for _attempt in 0..=config.retries {
            let sent_at = Instant::now();
            if let Err(e) = socket.send(&payload) {
                // ECONNREFUSED from an earlier ICMP error, or no route yet: count as a lost attempt.
                eprintln!("udp {addr} seq {seq}: send: {e}");
                thread::sleep(config.timeout.min(Duration::from_millis(200)));
                continue;
            }
            let deadline = sent_at + config.timeout;
            loop {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                socket
                    .set_read_timeout(Some(deadline - now))
                    .map_err(io_err("set read timeout"))?;
                match socket.recv(&mut buf) {
                    Ok(n) if buf[..n] == payload => {
                        let rtt = sent_at.elapsed();
                        report.max_rtt = report.max_rtt.max(rtt);
                        report.received += 1;
                        break 'attempts;
                    }
                    // A late echo of an earlier attempt or probe: ignore and keep waiting.
                    Ok(_) => continue,
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock
                                | io::ErrorKind::TimedOut
                                | io::ErrorKind::Interrupted
                        ) =>
                    {
                        continue
                    }
                    Err(e) => {
                        eprintln!("udp {addr} seq {seq}: recv: {e}");
                        // Do not spin on a repeated ICMP error: wait out the rest of this attempt.
                        thread::sleep(deadline.saturating_duration_since(Instant::now()));
                        break;
                    }
                }
            }
        }
    }
    if report.received == report.sent {
        Ok(report)
    } else {
        Err(Error::Lost {
            sent: report.sent,
            received: report.received,
        })
    }
}

/// Facts about the running process that the container tests check: its uid and effective capabilities (from
/// `/proc/self/status`) and whether a device (e.g. `/dev/net/tun`) can be opened read-write.
#[derive(Debug, Clone)]
pub struct SelfCheck {
    /// The `Uid:` line of /proc/self/status (real, effective, saved, fs), if readable.
    pub uid: Option<String>,
    /// The `CapEff:` line of /proc/self/status, if readable.
    pub cap_eff: Option<String>,
    /// Result of opening the device read-write, if one was asked for.
    pub device: Option<(String, Result<(), String>)>,
}

impl SelfCheck {
    /// Collects the facts; `device` is opened read-write and closed again.
    pub fn collect(device: Option<&str>) -> Self {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
        };
        let device = device.map(|path| {
            let r = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
                .map(drop)
                .map_err(|e| e.to_string());
            (path.to_owned(), r)
        });
        Self {
            uid: field("Uid:"),
            cap_eff: field("CapEff:"),
            device,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback_server(config: ServerConfig) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        thread::spawn(move || serve_tcp(listener, config));
        addr
    }

    fn loopback_udp_server() -> SocketAddr {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind loopback");
        let addr = socket.local_addr().expect("local addr");
        thread::spawn(move || serve_udp(socket));
        addr
    }

    #[test]
    fn prng_is_deterministic_and_seed_dependent() {
        let mut a = [0u8; 37];
        let mut b = [0u8; 37];
        PseudoRandom::new(7).fill(&mut a);
        PseudoRandom::new(7).fill(&mut b);
        assert_eq!(a, b);
        PseudoRandom::new(8).fill(&mut b);
        assert_ne!(a, b);
    }

    #[test]
    fn sha256_of_known_input() {
        let d = ring::digest::digest(&ring::digest::SHA256, b"abc");
        assert_eq!(
            hex(d.as_ref()),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            expected_report(0, 1).sha256_hex,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn report_round_trips_and_rejects_garbage() {
        let r = expected_report(1000, 3);
        assert_eq!(TransferReport::parse(&format!("{r}\n")).expect("parse"), r);
        for bad in [
            "",
            "hello",
            "sha256=abc bytes=1",
            "bytes=1 sha256=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sha256=E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855 bytes=1",
            "sha256=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 bytes=-1",
            "sha256=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 bytes=1 x",
        ] {
            assert!(TransferReport::parse(bad).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn tcp_transfer_on_loopback_verifies_digest() {
        let addr = loopback_server(ServerConfig::default());
        for (n, seed) in [(0u64, 1u64), (1, 2), (CHUNK as u64 + 3, 3), (3 << 20, 4)] {
            let out = send_tcp(addr, n, seed, TcpClientConfig::default()).expect("transfer");
            assert_eq!(out.report, expected_report(n, seed));
        }
    }

    #[test]
    fn tcp_client_detects_wrong_digest() {
        // A server that hashes nothing and always claims zero bytes.
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        thread::spawn(move || {
            if let Ok((mut s, _)) = listener.accept() {
                let mut sink = Vec::new();
                let _ = s.read_to_end(&mut sink);
                let _ = s.write_all(format!("{}\n", expected_report(0, 0)).as_bytes());
            }
        });
        match send_tcp(addr, 4096, 9, TcpClientConfig::default()) {
            Err(Error::Mismatch { expected, got }) => {
                assert_eq!(expected.bytes, 4096);
                assert_eq!(got.bytes, 0);
            }
            other => panic!("expected a mismatch, got {other:?}"),
        }
    }

    #[test]
    fn tcp_client_bounded_when_server_never_replies() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        // Accept and hold the connection open without ever replying.
        let holder = thread::spawn(move || listener.accept().map(|(s, _)| s));
        let config = TcpClientConfig {
            io_timeout: Duration::from_millis(300),
            ..TcpClientConfig::default()
        };
        let start = Instant::now();
        let r = send_tcp(addr, 10, 1, config);
        assert!(r.is_err(), "{r:?}");
        assert!(start.elapsed() < Duration::from_secs(5));
        drop(holder.join());
    }

    #[test]
    fn tcp_client_fails_fast_on_closed_port() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let start = Instant::now();
        assert!(matches!(
            send_tcp(addr, 10, 1, TcpClientConfig::default()),
            Err(Error::Io { .. })
        ));
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn server_drops_idle_connection() {
        let addr = loopback_server(ServerConfig {
            idle_timeout: Duration::from_millis(200),
        });
        let mut s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        s.write_all(b"partial").expect("write");
        // Never half-close: the server must give up on its own, closing without a reply.
        let mut buf = Vec::new();
        let start = Instant::now();
        let _ = s.read_to_end(&mut buf);
        assert!(start.elapsed() < Duration::from_secs(4));
        assert!(buf.is_empty(), "unexpected reply {buf:?}");
        // And it still serves others afterwards.
        send_tcp(addr, 100, 5, TcpClientConfig::default()).expect("transfer after idle drop");
    }

    #[test]
    fn udp_echo_on_loopback() {
        let addr = loopback_udp_server();
        let r = udp_ping(
            addr,
            UdpPingConfig {
                count: 20,
                ..UdpPingConfig::default()
            },
        )
        .expect("ping");
        assert_eq!((r.sent, r.received), (20, 20));
    }

    #[test]
    fn udp_ping_without_server_fails_in_bounded_time() {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let addr = socket.local_addr().expect("addr");
        drop(socket);
        let start = Instant::now();
        let r = udp_ping(
            addr,
            UdpPingConfig {
                count: 2,
                timeout: Duration::from_millis(100),
                retries: 1,
            },
        );
        assert!(
            matches!(
                r,
                Err(Error::Lost {
                    sent: 2,
                    received: 0
                })
            ),
            "{r:?}"
        );
        assert!(start.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn udp_ping_ignores_foreign_replies() {
        // A server that answers garbage first, then the real echo.
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let addr = socket.local_addr().expect("addr");
        thread::spawn(move || {
            let mut buf = [0u8; 64];
            while let Ok((n, peer)) = socket.recv_from(&mut buf) {
                let _ = socket.send_to(b"junk", peer);
                let _ = socket.send_to(&buf[..n], peer);
            }
        });
        let r = udp_ping(addr, UdpPingConfig::default()).expect("ping");
        assert_eq!(r.received, r.sent);
    }

    #[test]
    fn selfcheck_reads_proc_and_reports_missing_device() {
        let c = SelfCheck::collect(Some("/nonexistent/device"));
        assert!(c.uid.is_some());
        assert!(c.cap_eff.is_some());
        assert!(matches!(c.device, Some((_, Err(_)))));
    }
}
