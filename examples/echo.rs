//! Echo over an overlay network, with no root and no TUN: two members run embedded in this
//! process (each with its own userspace TCP/IP stack) on loopback UDP, with a throwaway CA. The
//! server echoes every connection and prints who opened it — the caller's verified name from
//! its certificate, not an address.
//!
//! Run: `cargo run --example echo`
use privnet::io::embedded::LocalNetwork;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let net = LocalNetwork::builder("echo-demo")
        .member("echo", &["servers"])
        .member("client", &["clients"])
        .start()
        .await?;
    let server = net.node("echo").ok_or("no member echo")?;
    let client = net.node("client").ok_or("no member client")?;

    // The server: port 7 on every overlay address of member "echo".
    let listener = server.tcp_listen(7)?;
    tokio::spawn(async move {
        while let Ok((stream, peer)) = listener.accept().await {
            println!(
                "echo: connection from {} (groups {:?}) at {}",
                peer.name,
                peer.groups,
                stream.peer_addr()
            );
            tokio::spawn(async move {
                let (mut r, mut w) = tokio::io::split(stream);
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });

    // The client reaches the server by its member name.
    let stream = client.tcp_connect("echo:7").await?;
    println!(
        "client: connected to {} at {}",
        stream.peer().name,
        stream.peer_addr()
    );
    let (r, mut w) = tokio::io::split(stream);
    let mut lines = BufReader::new(r).lines();
    for line in [
        "hello",
        "over an encrypted overlay",
        "from a userspace stack",
    ] {
        w.write_all(format!("{line}\n").as_bytes()).await?;
        let echoed = lines.next_line().await?.ok_or("connection closed")?;
        println!("client: sent {line:?}, got {echoed:?}");
    }
    w.shutdown().await?;
    net.shutdown().await;
    Ok(())
}
