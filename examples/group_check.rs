//! A service that checks the caller's group before answering: member "vault" answers only
//! members whose certificate puts them in group "admins". The group comes from the caller's
//! verified certificate (handed over with the connection by `accept`), never from an address
//! or anything the caller says. Everything runs embedded in this process on loopback UDP with a
//! throwaway CA: no root, no TUN.
//!
//! Run: `cargo run --example group_check`
use privnet::io::embedded::LocalNetwork;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const REQUIRED_GROUP: &str = "admins";

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let net = LocalNetwork::builder("vault-demo")
        .member("vault", &["servers"])
        .member("alice", &["admins", "staff"])
        .member("bob", &["staff"])
        .start()
        .await?;
    let vault = net.node("vault").ok_or("no member vault")?;

    let listener = vault.tcp_listen(8200)?;
    tokio::spawn(async move {
        while let Ok((mut stream, peer)) = listener.accept().await {
            let allowed = peer.groups.iter().any(|g| g == REQUIRED_GROUP);
            println!(
                "vault: {} (groups {:?}) -> {}",
                peer.name,
                peer.groups,
                if allowed { "allowed" } else { "denied" }
            );
            tokio::spawn(async move {
                let answer = if allowed {
                    format!("the secret is 42, {}\n", peer.name)
                } else {
                    format!("denied: {} is not in group {REQUIRED_GROUP}\n", peer.name)
                };
                let _ = stream.write_all(answer.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });

    for who in ["alice", "bob"] {
        let node = net.node(who).ok_or("no such member")?;
        let mut stream = node.tcp_connect("vault:8200").await?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await?;
        print!("{who}: {answer}");
    }
    net.shutdown().await;
    Ok(())
}
