//! Accept errors back off instead of spinning (issue 13 item 10). The process runs out of file
//! descriptors while a connection waits in the status socket's backlog: every `accept` fails with
//! `EMFILE` until a descriptor is free. The old accept loop retried at once, forever, at 100% of a
//! CPU; the server now backs off (10 ms doubling to 1 s), so its thread uses almost no CPU, and it
//! answers once descriptors are free again. Alone in its test binary: it lowers the process's
//! descriptor limit.
// A test: it reads the real clock or opens sockets (see clippy.toml).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]
#![allow(clippy::unwrap_used)]
#![allow(unsafe_code)]

use std::fs::File;
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use privnet_sidecar::server::ServerThread;
use privnet_sidecar::status::{serve_status, Snapshots};

/// The stat file of the servers' thread, opened now (no descriptor is free later).
fn servers_thread_stat() -> File {
    for entry in std::fs::read_dir("/proc/self/task").unwrap() {
        let dir = entry.unwrap().path();
        if std::fs::read_to_string(dir.join("comm")).unwrap().trim() == "privnet-servers" {
            return File::open(dir.join("stat")).unwrap();
        }
    }
    panic!("no privnet-servers thread");
}

/// CPU time of the thread behind `stat` (re-read from the start of the open file), in ticks of
/// 10 ms (USER_HZ).
fn cpu_ticks(stat: &mut File) -> u64 {
    let mut text = String::new();
    stat.seek(SeekFrom::Start(0)).unwrap();
    stat.read_to_string(&mut text).unwrap();
    let after = &text[text.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    // Fields 14 and 15 of stat(5) (utime, stime); `after` starts at field 3.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn nofile() -> libc::rlimit {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` into the valid, exclusively borrowed `lim`.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    lim
}

fn set_nofile(lim: &libc::rlimit) {
    // SAFETY: setrlimit reads one `rlimit` from the valid `lim`.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, lim) }, 0);
}

#[test]
fn accept_errors_back_off_instead_of_spinning() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("status.sock");
    let servers = ServerThread::start().unwrap();
    let _socket = serve_status(&path, Snapshots::default(), &servers).unwrap();
    let mut stat = servers_thread_stat();
    let before = cpu_ticks(&mut stat);

    // Use up every descriptor but one, under a low limit...
    let saved = nofile();
    let open_now = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
    set_nofile(&libc::rlimit {
        rlim_cur: open_now + 64,
        rlim_max: saved.rlim_max,
    });
    let mut filler = Vec::new();
    while let Ok(f) = File::open("/dev/null") {
        filler.push(f);
        assert!(filler.len() < 10_000, "the limit did not apply");
    }
    // ...the last one for a client: its connection waits in the backlog, and the server has no
    // descriptor to accept it with.
    filler.pop();
    let client = UnixStream::connect(&path);
    let start = cpu_ticks(&mut stat);
    std::thread::sleep(Duration::from_secs(3));
    let spent = cpu_ticks(&mut stat) - start;

    // Free the descriptors: the waiting client is answered.
    drop(filler);
    set_nofile(&saved);
    let mut client = client.expect("the client's connect");
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let _ = client.write_all(b"status\n");
    let mut body = String::new();
    client.read_to_string(&mut body).unwrap();
    assert_eq!(body.trim(), "[]", "the waiting client's answer");
    assert!(
        spent <= 10,
        "the servers' thread used {} ms of CPU in 3 s of EMFILE (since start: {} ms)",
        spent * 10,
        (cpu_ticks(&mut stat) - before) * 10
    );
}
