//! A real etcd for tests: Debian's `etcd` binary on loopback, data in a temporary directory, free
//! ports, killed (and its directory removed) when dropped, even when the test fails.
//!
//! A developer without etcd sees the test reported as skipped on stderr; CI (`scripts/test.sh`
//! installs etcd-server and sets `PRIVNET_REQUIRE_ETCD_TESTS=1`) turns a skip into a failure.

use std::io::Write as _;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Set to `1` to make a test that needs etcd fail instead of skip when there is none.
pub(crate) const REQUIRE_ENV: &str = "PRIVNET_REQUIRE_ETCD_TESTS";

/// One etcd member on loopback.
pub(crate) struct Etcd {
    child: Option<Child>,
    dir: PathBuf,
    client: u16,
    peer: u16,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl Etcd {
    /// Start etcd, or `None` (after printing why) when the binary is missing.
    pub(crate) fn start(test: &str) -> Option<Self> {
        if Command::new("etcd")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_err()
        {
            let reason = "needs the etcd binary (Debian: apt-get install etcd-server)";
            if std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "1") {
                panic!("{test}: {reason}, and {REQUIRE_ENV}=1 forbids skipping it");
            }
            let _ = writeln!(std::io::stderr(), "skipped: {test}: {reason}");
            return None;
        }
        let dir = std::env::temp_dir().join(format!(
            "privnet-etcd-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut e = Self {
            child: None,
            dir,
            client: free_port(),
            peer: free_port(),
        };
        e.run();
        Some(e)
    }

    /// The client endpoint, `http://127.0.0.1:PORT`.
    pub(crate) fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client)
    }

    /// Start (again) on the same data directory and ports; returns when it accepts connections.
    pub(crate) fn run(&mut self) {
        let peer = format!("http://127.0.0.1:{}", self.peer);
        let client = self.endpoint();
        let log = std::fs::File::create(self.dir.join("etcd.log")).unwrap();
        let child = Command::new("etcd")
            .args(["--name", "t", "--data-dir"])
            .arg(self.dir.join("data"))
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args(["--initial-cluster", &format!("t={peer}")])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("etcd starts");
        self.child = Some(child);
        let addr: SocketAddr = format!("127.0.0.1:{}", self.client).parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(Instant::now() < deadline, "etcd did not listen within 15 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kill it (SIGKILL) and wait; the data stays for [`Self::run`].
    pub(crate) fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
