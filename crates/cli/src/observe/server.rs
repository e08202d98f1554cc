//! The `addr` HTTP server: `GET /metrics`, `/healthz`, `/status` and the status page `/`,
//! on hyper's HTTP/1 server.
//!
//! Kept off the capture path (issue 17: a flood of requests used to stall captures):
//! - it runs on its own thread with its own single-threaded runtime, so requests neither
//!   queue on the replicator's runtime nor take the blocking threads captures use;
//! - every request is answered from a [`Snapshot`] shared for up to [`snapshot::MAX_AGE`]
//!   (one report build at a time, on this thread), so a scrape can be up to a second old;
//! - a report is also taken every [`history::SAMPLE_EVERY`] when nobody asks, so the
//!   status page's plots of the last hour have no holes (local figures only: no
//!   object-store request); only its plotted figures are kept, nothing is rendered (with
//!   10,000 databases the rendered bodies are tens of MiB);
//! - at most [`MAX_CONNECTIONS`] connections are served at once; one more is answered
//!   `503` and closed at once;
//! - a client has [`HEADER_TIMEOUT`] to send its request headers, and a connection is
//!   closed after [`CONNECTION_TIMEOUT`] whatever it is doing.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tracing::{debug, warn};

use super::history::{self, History};
use super::snapshot::{self, Snapshot, Snapshots};
use super::Watched;

/// Connections served at once; more are refused with a `503`.
pub const MAX_CONNECTIONS: usize = 64;
/// Time a client has to send a request's headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a connection may stay open, however busy.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);
/// Refusals are logged at most this often (a flood would otherwise flood the log too).
const SAY_REFUSALS_EVERY: Duration = Duration::from_secs(60);

/// What the server needs besides the figures.
#[derive(Clone, Copy, Debug)]
pub struct ServeOptions {
    /// `health-failing-after`.
    pub failing_after: Duration,
}

/// Serves on `listener` for the life of the process, on a thread of its own (see the
/// module docs). Fails only when the thread or its runtime cannot be started.
pub fn spawn(
    listener: std::net::TcpListener,
    watched: Arc<Watched>,
    opts: ServeOptions,
) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("observe-http".into())
        .spawn(move || {
            rt.block_on(async move {
                match TcpListener::from_std(listener) {
                    Ok(l) => serve(l, watched, opts).await,
                    Err(e) => warn!(error = %e, "metrics server: cannot use the listener"),
                }
            })
        })?;
    Ok(())
}

/// Accepts until the runtime ends. Accept errors (out of file descriptors) are logged
/// and retried after a pause; a broken connection only ends that connection.
async fn serve(listener: TcpListener, watched: Arc<Watched>, opts: ServeOptions) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let snapshots = Arc::new(Snapshots::new(snapshot::MAX_AGE));
    let history = Arc::new(History::new());
    {
        let (w, h) = (watched.clone(), history.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(history::SAMPLE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                h.record(&w.report());
            }
        });
    }
    let (mut refused, mut last_said) = (0u64, None);
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                warn!(error = %e, "metrics server: accept failed");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            refuse(stream);
            refused += 1;
            if last_said.is_none_or(|t: Instant| t.elapsed() >= SAY_REFUSALS_EVERY) {
                warn!(
                    refused,
                    max_connections = MAX_CONNECTIONS,
                    "metrics server: too many connections: refusing some"
                );
                (refused, last_said) = (0, Some(Instant::now()));
            }
            continue;
        };
        let (w, snaps, h) = (watched.clone(), snapshots.clone(), history.clone());
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let snapshot = || snaps.get(|| Snapshot::build(&w, opts.failing_after, &h));
                std::future::ready(Ok::<_, Infallible>(answer(&req, snapshot)))
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), svc);
            match tokio::time::timeout(CONNECTION_TIMEOUT, conn).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => debug!(error = %e, "metrics server: connection ended"),
                Err(_) => debug!("metrics server: connection open too long: closed"),
            }
            drop(slot);
        });
    }
}

/// Answers a connection past the bound with a `503`, as far as the socket takes it
/// without waiting, and closes it.
fn refuse(stream: TcpStream) {
    const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 18\r\nconnection: close\r\n\r\ntoo many requests\n";
    let _ = stream.try_write(BUSY);
}

/// The response to `req`, from the snapshot `snapshot` gives (only taken for an
/// endpoint that needs it).
fn answer<B>(req: &Request<B>, snapshot: impl FnOnce() -> Arc<Snapshot>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "GET only\n".into(),
        );
    }
    let path = req.uri().path();
    if !matches!(path, "/" | "/metrics" | "/healthz" | "/status") {
        return reply(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found: try /, /metrics, /healthz or /status\n".into(),
        );
    }
    let s = snapshot();
    match path {
        "/" => reply(StatusCode::OK, "text/html; charset=utf-8", s.page()),
        "/metrics" => reply(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            s.metrics(),
        ),
        "/healthz" => match s.health() {
            Ok(()) => reply(StatusCode::OK, "text/plain; charset=utf-8", "ok\n".into()),
            Err(why) => reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain; charset=utf-8",
                format!("{why}\n").into(),
            ),
        },
        _ => match s.status() {
            Ok(j) => reply(StatusCode::OK, "application/json", j),
            Err(e) => reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain; charset=utf-8",
                format!("{e}\n").into(),
            ),
        },
    }
}

fn reply(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}
