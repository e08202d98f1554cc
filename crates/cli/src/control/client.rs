//! The client side of the control socket: one HTTP/1 request over the Unix socket (on
//! Windows the named pipe, `super::pipe_name`), answered by status and JSON body. Used by
//! the control commands.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::ErrorResponse;

/// A control socket answer.
pub enum Answer<T> {
    Ok(T),
    /// A non-200 answer, with the server's `error` and `details`.
    Failed(ErrorResponse),
}

/// Sends `method uri` with `body` (JSON, for POST) to the socket at `socket`, and reads
/// the answer within `timeout`. Connection and protocol failures are errors; a non-200
/// answer is [`Answer::Failed`].
pub async fn call<B: Serialize, T: DeserializeOwned>(
    socket: &Path,
    method: Method,
    uri: &str,
    body: Option<&B>,
    timeout: Duration,
) -> anyhow::Result<Answer<T>> {
    let work = async {
        let stream = connect(socket).await.with_context(|| {
            format!(
                "cannot connect to control socket {} (is `replicate` running with socket.enabled?)",
                socket.display()
            )
        })?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("control socket: HTTP handshake")?;
        tokio::spawn(conn);
        let bytes = match body {
            Some(b) => Bytes::from(serde_json::to_vec(b)?),
            None => Bytes::new(),
        };
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header(HOST, "localhost")
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(bytes))?;
        let resp = sender
            .send_request(req)
            .await
            .with_context(|| format!("control socket: {uri}"))?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        if status == StatusCode::OK {
            let v = serde_json::from_slice(&body)
                .with_context(|| format!("control socket: {uri}: unexpected answer"))?;
            return Ok(Answer::Ok(v));
        }
        let e = serde_json::from_slice::<ErrorResponse>(&body).unwrap_or_else(|_| ErrorResponse {
            error: format!("{status}: {}", String::from_utf8_lossy(&body).trim()),
            details: None,
        });
        Ok(Answer::Failed(e))
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => bail!(
            "control socket {}: no answer within {timeout:?}",
            socket.display()
        ),
    }
}

#[cfg(unix)]
async fn connect(socket: &Path) -> std::io::Result<tokio::net::UnixStream> {
    tokio::net::UnixStream::connect(socket).await
}

/// Opens the pipe `socket` names; while every instance is busy (ERROR_PIPE_BUSY), tries
/// again (the caller's timeout bounds the wait).
#[cfg(windows)]
async fn connect(
    socket: &Path,
) -> std::io::Result<tokio::net::windows::named_pipe::NamedPipeClient> {
    const ERROR_PIPE_BUSY: i32 = 231;
    let name = super::pipe_name(socket);
    loop {
        match tokio::net::windows::named_pipe::ClientOptions::new().open(&name) {
            Err(e) if e.raw_os_error() == Some(ERROR_PIPE_BUSY) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            r => return r,
        }
    }
}
