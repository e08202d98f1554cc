//! The `addr` HTTP server: `GET /metrics`, `/healthz`, `/status`, on hyper's HTTP/1
//! server. Each request takes a fresh report on a blocking thread; nothing is cached, so
//! a scrape always sees the figures of that moment.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tracing::{debug, warn};

use super::{health, metrics, Watched};

/// What the server needs besides the figures.
#[derive(Clone, Copy, Debug)]
pub struct ServeOptions {
    /// `health-failing-after`.
    pub failing_after: Duration,
}

/// Serves until the task is dropped. Accept errors (out of file descriptors) are
/// logged and retried after a pause; a broken connection only ends that connection.
pub async fn serve(listener: TcpListener, watched: Arc<Watched>, opts: ServeOptions) {
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                warn!(error = %e, "metrics server: accept failed");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let w = watched.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| handle(req, w.clone(), opts));
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), svc);
            if let Err(e) = conn.await {
                debug!(error = %e, "metrics server: connection ended");
            }
        });
    }
}

async fn handle(
    req: Request<Incoming>,
    watched: Arc<Watched>,
    opts: ServeOptions,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Ok(reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "GET only\n".into(),
        ));
    }
    let path = req.uri().path().to_string();
    if !matches!(path.as_str(), "/metrics" | "/healthz" | "/status") {
        return Ok(reply(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found: try /metrics, /healthz or /status\n".into(),
        ));
    }
    let leases = watched.lease_views();
    let report = match tokio::task::spawn_blocking(move || watched.report()).await {
        Ok(r) => r,
        Err(e) => {
            return Ok(reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain; charset=utf-8",
                format!("taking the report failed: {e}\n"),
            ))
        }
    };
    Ok(match path.as_str() {
        "/metrics" => reply(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            metrics::render(&report) + &metrics::render_leases(&leases),
        ),
        "/healthz" => match health::check(&report, opts.failing_after) {
            Ok(()) => reply(StatusCode::OK, "text/plain; charset=utf-8", "ok\n".into()),
            Err(why) => reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain; charset=utf-8",
                format!("{why}\n"),
            ),
        },
        _ => match serde_json::to_string_pretty(&report) {
            Ok(j) => reply(StatusCode::OK, "application/json", j + "\n"),
            Err(e) => reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain; charset=utf-8",
                format!("{e}\n"),
            ),
        },
    })
}

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}
