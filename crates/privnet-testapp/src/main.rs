//! `privnet-testapp`: the application side of privnet's pod tests. See the library docs and `--help`.
// An I/O program, not sans-IO code: it reads clocks and opens sockets (see clippy.toml).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::process::ExitCode;
use std::thread;

use privnet_testapp::cli::{self, Command, USAGE};
use privnet_testapp::{send_tcp, serve_tcp, serve_udp, udp_ping, SelfCheck};

fn run(cmd: Command) -> Result<(), String> {
    match cmd {
        Command::Serve {
            bind,
            tcp,
            udp,
            config,
        } => {
            let tcp_addr = SocketAddr::new(bind, tcp);
            let udp_addr = SocketAddr::new(bind, udp);
            let listener =
                TcpListener::bind(tcp_addr).map_err(|e| format!("bind tcp {tcp_addr}: {e}"))?;
            let socket =
                UdpSocket::bind(udp_addr).map_err(|e| format!("bind udp {udp_addr}: {e}"))?;
            println!("privnet-testapp serving tcp={tcp_addr} udp={udp_addr}");
            let udp_thread = thread::Builder::new()
                .name("udp-echo".into())
                .spawn(move || serve_udp(socket))
                .map_err(|e| format!("spawn udp thread: {e}"))?;
            let tcp_result = serve_tcp(listener, config);
            // serve_tcp only returns on a fatal error.
            drop(udp_thread);
            tcp_result.map_err(|e| e.to_string())
        }
        Command::SendTcp {
            addr,
            bytes,
            seed,
            config,
        } => {
            let out =
                send_tcp(addr, bytes, seed, config).map_err(|e| format!("send-tcp {addr}: {e}"))?;
            println!(
                "send-tcp {addr}: OK {} in {:.3}s",
                out.report,
                out.elapsed.as_secs_f64()
            );
            Ok(())
        }
        Command::UdpPing { addr, config } => {
            let r = udp_ping(addr, config).map_err(|e| format!("udp-ping {addr}: {e}"))?;
            println!(
                "udp-ping {addr}: OK {}/{} echoed, max rtt {:.3}ms",
                r.received,
                r.sent,
                r.max_rtt.as_secs_f64() * 1e3
            );
            Ok(())
        }
        Command::SelfCheck { device } => {
            let c = SelfCheck::collect(device.as_deref());
            println!("uid: {}", c.uid.as_deref().unwrap_or("?"));
            println!("capeff: {}", c.cap_eff.as_deref().unwrap_or("?"));
            match c.device {
                None => Ok(()),
                Some((path, Ok(()))) => {
                    println!("device {path}: opened read-write");
                    Ok(())
                }
                Some((path, Err(e))) => Err(format!("device {path}: {e}")),
            }
        }
        Command::Version => {
            println!("privnet-testapp {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::Help => {
            println!("{USAGE}");
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cmd = match cli::parse(args.iter().map(String::as_str)) {
        Ok(cmd) => cmd,
        Err(e) => {
            eprintln!("privnet-testapp: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(cmd) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("privnet-testapp: {e}");
            ExitCode::from(1)
        }
    }
}
