//! HTTP over an overlay network with hyper: member "web" serves HTTP/1.1 on overlay port 80,
//! member "app" requests it by name. The handler answers with the caller's verified identity,
//! which the listener hands over with each connection. Both members run embedded in this
//! process on loopback UDP with a throwaway CA: no root, no TUN.
//!
//! Run: `cargo run --example http`
use std::convert::Infallible;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use privnet::io::embedded::LocalNetwork;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let net = LocalNetwork::builder("http-demo")
        .member("web", &["servers"])
        .member("app", &["frontend", "clients"])
        .start()
        .await?;
    let web = net.node("web").ok_or("no member web")?;
    let app = net.node("app").ok_or("no member app")?;

    // The server: one hyper connection per accepted overlay stream.
    let listener = web.tcp_listen(80)?;
    tokio::spawn(async move {
        while let Ok((stream, peer)) = listener.accept().await {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let peer = peer.clone();
                async move {
                    let body = format!(
                        "hello {} (groups {:?}, certificate {}), you asked for {}\n",
                        peer.name,
                        peer.groups,
                        hex(&peer.fingerprint[..8]),
                        req.uri()
                    );
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body))))
                }
            });
            tokio::spawn(async move {
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service);
                if let Err(e) = conn.await {
                    eprintln!("web: connection error: {e}");
                }
            });
        }
    });

    // The client: an HTTP/1.1 connection over an overlay stream to "web:80".
    let stream = app.tcp_connect("web:80").await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    for path in ["/hello", "/status"] {
        let req = Request::get(path)
            .header("host", "web")
            .body(Full::new(Bytes::new()))?;
        let res = sender.send_request(req).await?;
        let status = res.status();
        let body = res.into_body().collect().await?.to_bytes();
        print!("GET {path} -> {status}: {}", String::from_utf8_lossy(&body));
    }
    net.shutdown().await;
    Ok(())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
