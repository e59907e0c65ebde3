//! The sans-IO rule, checked twice by a machine: clippy's `disallowed-methods` /
//! `disallowed-types` (root `clippy.toml`, run by CI with `-D warnings`) refuse clocks, sockets,
//! threads and OS randomness in every crate unless an item opts out with an `#[allow]`; this test
//! makes sure that the configuration is there and that no file of the protocol core opts out. The
//! I/O shell (`src/io.rs`, `src/io/`, feature `driver`) and the simulator (`src/testing.rs`, which
//! takes its virtual clock's origin once) are the only exemptions.

use std::path::{Path, PathBuf};

const FORBIDDEN: &[&str] = &[
    "Instant::now",
    "SystemTime::now",
    "thread::spawn",
    "UdpSocket",
    "TcpStream",
    "TcpListener",
    "OsRng",
    "SystemRandom",
    "getrandom",
    "tokio::",
];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("reading the source tree") {
        let path = entry.expect("reading the source tree").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without its comments and without its `#[cfg(test)]` modules (unit tests
/// may take a real clock's origin; they are not the product).
fn product_code(text: &str) -> String {
    let mut code = String::new();
    let mut skip_depth: Option<i32> = None;
    let mut depth = 0i32;
    let mut pending_test = false;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("//") {
            continue;
        }
        if trimmed.starts_with("#[cfg(test)]") {
            pending_test = true;
            continue;
        }
        let opens = line.matches('{').count() as i32;
        let closes = line.matches('}').count() as i32;
        if pending_test && skip_depth.is_none() && opens > 0 {
            skip_depth = Some(depth);
        }
        if trimmed.starts_with("#[") {
            if pending_test {
                continue; // attributes of the test module
            }
        } else {
            pending_test = false;
        }
        depth += opens - closes;
        if let Some(d) = skip_depth {
            if depth <= d {
                skip_depth = None;
            }
            continue;
        }
        code.push_str(line.split("//").next().unwrap_or(""));
        code.push('\n');
    }
    code
}

#[test]
fn protocol_code_reads_no_clock_opens_no_socket_spawns_no_thread() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &mut files);
    let mut problems = Vec::new();
    for f in &files {
        let rel = f
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        let unit_tests = rel.ends_with("/tests.rs");
        if rel == "io.rs" || rel.starts_with("io/") || rel == "testing.rs" || unit_tests {
            continue;
        }
        let code = product_code(&std::fs::read_to_string(f).unwrap());
        for word in FORBIDDEN {
            if code.contains(word) {
                problems.push(format!("src/{rel}: {word}"));
            }
        }
        if code.contains("disallowed_methods") || code.contains("disallowed_types") {
            problems.push(format!("src/{rel}: opts out of the sans-IO lints"));
        }
    }
    assert!(
        problems.is_empty(),
        "sans-IO rule broken:\n{}",
        problems.join("\n")
    );
    assert!(files.len() > 20, "scanned only {} files", files.len());
}

#[test]
fn clippy_config_denies_clocks_sockets_threads_and_os_randomness() {
    let cfg =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../clippy.toml"))
            .unwrap();
    for path in [
        "std::time::Instant::now",
        "std::time::SystemTime::now",
        "std::thread::spawn",
        "std::net::UdpSocket",
        "ring::rand::SystemRandom",
    ] {
        assert!(
            cfg.contains(&format!("\"{path}\"")),
            "clippy.toml lacks {path}"
        );
    }
}

#[test]
fn the_scanner_sees_what_it_must() {
    let code = product_code(
        "fn a() { x(); } // Instant::now\n#[cfg(test)]\n#[allow(clippy::disallowed_methods)]\nmod tests {\n  fn t() { Instant::now(); }\n}\nfn b() { SystemTime::now(); }\n",
    );
    assert!(!code.contains("Instant::now"));
    assert!(code.contains("SystemTime::now"));
    assert!(code.contains("fn b()"));
    assert!(!code.contains("disallowed_methods"));
}
