//! Reads a running daemon's `/status` (for the `status` command), over hyper's HTTP/1
//! client. Any failure (nothing listening, timeout, not our JSON) is an error the caller
//! treats as "no daemon".

use std::time::Duration;

use anyhow::{bail, Context};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::header::HOST;
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use engine::replicate::report::Report;

/// `GET /status` from the daemon serving `addr` (a config's `addr` value).
pub async fn daemon_status(addr: &str, timeout: Duration) -> anyhow::Result<Report> {
    let target = super::connect_addr(addr);
    tokio::time::timeout(timeout, async {
        let stream = TcpStream::connect(&target)
            .await
            .with_context(|| format!("connecting to {target}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("HTTP handshake")?;
        tokio::spawn(conn);
        let req = Request::get("/status")
            .header(HOST, target.as_str())
            .body(Empty::<Bytes>::new())?;
        let resp = sender.send_request(req).await.context("GET /status")?;
        if !resp.status().is_success() {
            bail!("GET /status answered {}", resp.status());
        }
        let body = resp.into_body().collect().await?.to_bytes();
        serde_json::from_slice::<Report>(&body).context("reading /status JSON")
    })
    .await
    .with_context(|| format!("{target}: no answer within {timeout:?}"))?
}
