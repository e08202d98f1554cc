//! The control socket's server: binds the socket file (on Windows, creates the named
//! pipe), routes the endpoints, answers in Litestream's JSON.
//!
//! Owns: the socket file's life (an old socket at the path is replaced, anything else
//! there is refused and left alone; created with `permissions` and never more open;
//! removed at exit if it is still ours), the limits (concurrent connections, header
//! and request time, body size), and the mapping of engine outcomes to HTTP statuses.
//! On Windows the transport is a local named pipe (`super::pipe_name`) that only
//! SYSTEM, Administrators and our own account may open
//! (`engine::platform::pipe`); `permissions` does not apply there.
//! Does not: decide what a sync means (`DbHandle::sync` does).

use std::convert::Infallible;
#[cfg(unix)]
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

#[cfg(unix)]
use anyhow::bail;
use anyhow::Context;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{debug, info, warn};

use engine::replicate::handle::{DbHandle, RunState, SyncError, Toggle};
use engine::replicate::progress::raw;
use engine::runtime::{RegistryError, Runtime};

use super::{
    ErrorResponse, InfoResponse, ListEntry, ListResponse, PathRequest, RegisterRequest,
    RegisterResponse, SyncRequest, SyncResponse, ToggleResponse, TxidResponse, UnregisterResponse,
    DEFAULT_WAIT_TIMEOUT_SECS, MAX_TIMEOUT_SECS,
};
use crate::config::SocketConfig;

/// Connections served at once; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 32;
/// Largest request body accepted.
const MAX_BODY_BYTES: usize = 64 * 1024;
/// Time to send the request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest life of one connection: the longest timeout a request may ask for, plus slack.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(MAX_TIMEOUT_SECS + 60);

/// What the server answers about.
struct Control {
    runtime: Runtime,
    started_at: jiff::Timestamp,
    started: std::time::Instant,
}

/// The running server; dropping it stops serving and removes the socket file (if the
/// file at the path is still the one we bound).
pub struct SocketGuard {
    #[cfg(unix)]
    path: PathBuf,
    #[cfg(unix)]
    identity: (u64, u64),
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SocketGuard {
    fn drop(&mut self) {
        self.task.abort();
        #[cfg(unix)]
        if let Ok(Some(id)) = engine::platform::unix_socket::socket_identity(&self.path) {
            if id == self.identity {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

/// Binds `cfg.path` and serves the databases of `runtime` until the guard is dropped.
/// Call before databases are added to the runtime, and before other tasks create files
/// (see `bind`).
#[cfg(unix)]
pub fn start(cfg: &SocketConfig, runtime: Runtime) -> anyhow::Result<SocketGuard> {
    let std_listener = bind(&cfg.path, cfg.permissions)?;
    let identity = engine::platform::unix_socket::socket_identity(&cfg.path)
        .ok()
        .flatten()
        .with_context(|| format!("socket {}: reading it back", cfg.path.display()))?;
    let listener = tokio::net::UnixListener::from_std(std_listener)
        .with_context(|| format!("socket {}", cfg.path.display()))?;
    info!(path = %cfg.path.display(), permissions = %format!("{:04o}", cfg.permissions), "control socket listening");
    Ok(SocketGuard {
        path: cfg.path.clone(),
        identity,
        task: tokio::spawn(serve(listener, new_control(runtime))),
    })
}

/// Creates the named pipe `cfg.path` names (`super::pipe_name`) and serves the databases
/// of `runtime` until the guard is dropped. Fails if another process holds the name.
#[cfg(windows)]
pub fn start(cfg: &SocketConfig, runtime: Runtime) -> anyhow::Result<SocketGuard> {
    let name = super::pipe_name(&cfg.path);
    let first = engine::platform::pipe::create_private_pipe(&name, true).with_context(|| {
        format!("control pipe {name}: cannot create it (is another replicator running?)")
    })?;
    info!(pipe = %name, "control socket listening");
    Ok(SocketGuard {
        task: tokio::spawn(serve_pipe(name, first, new_control(runtime))),
    })
}

fn new_control(runtime: Runtime) -> Arc<Control> {
    Arc::new(Control {
        runtime,
        started_at: jiff::Timestamp::now(),
        started: std::time::Instant::now(),
    })
}

/// Creates the listening socket at `path` with mode `permissions`.
///
/// An existing socket there (left by a process that died) is replaced; any other file
/// is refused and left alone. The mode is set through the umask while binding, so the
/// file is never more open than asked, not even between bind and chmod; the umask is
/// process-wide, which is why this runs before replication tasks create files (a file
/// created meanwhile would only get a stricter mode). The directory is not touched.
#[cfg(unix)]
fn bind(path: &Path, permissions: u32) -> anyhow::Result<std::os::unix::net::UnixListener> {
    match engine::platform::unix_socket::socket_identity(path) {
        Ok(Some(_)) => std::fs::remove_file(path)
            .with_context(|| format!("socket {}: removing the old socket", path.display()))?,
        Ok(None) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => bail!(
            "socket {}: the path exists and is not a socket; refusing to replace it",
            path.display()
        ),
        Err(e) => {
            return Err(e).with_context(|| format!("socket {}: cannot inspect", path.display()))
        }
    }
    let mode = permissions & 0o777;
    let listener =
        engine::platform::unix_socket::bind_with_mode(path, mode).with_context(|| {
            format!(
                "socket {}: cannot listen with mode {mode:04o}",
                path.display()
            )
        })?;
    listener
        .set_nonblocking(true)
        .with_context(|| format!("socket {}", path.display()))?;
    Ok(listener)
}

#[cfg(unix)]
async fn serve(listener: tokio::net::UnixListener, control: Arc<Control>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                warn!(error = %e, "control socket: accept failed");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        tokio::spawn(serve_connection(stream, control.clone(), permit));
    }
}

/// Accepts clients on the pipe `name`: each connected instance is served, and a new
/// instance is created for the next client.
#[cfg(windows)]
async fn serve_pipe(
    name: String,
    mut server: tokio::net::windows::named_pipe::NamedPipeServer,
    control: Arc<Control>,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        if let Err(e) = server.connect().await {
            warn!(error = %e, "control pipe: connect failed");
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        let next = loop {
            match engine::platform::pipe::create_private_pipe(&name, false) {
                Ok(n) => break n,
                Err(e) => {
                    warn!(error = %e, "control pipe: cannot create the next instance");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        };
        let connected = std::mem::replace(&mut server, next);
        tokio::spawn(serve_connection(connected, control.clone(), permit));
    }
}

/// Serves one connection's HTTP/1 requests until it closes or times out.
async fn serve_connection<S>(stream: S, control: Arc<Control>, permit: OwnedSemaphorePermit)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let _permit = permit;
    let svc = hyper::service::service_fn(move |req| handle(req, control.clone()));
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(stream), svc);
    match tokio::time::timeout(CONNECTION_TIMEOUT, conn).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => debug!(error = %e, "control socket: connection ended"),
        Err(_) => debug!("control socket: connection timed out"),
    }
}

type Reply = Response<Full<Bytes>>;

/// An error answer: status, `error` line, optional details.
struct Failure(StatusCode, String, Option<String>);

impl Failure {
    fn bad(error: impl Into<String>, details: Option<String>) -> Failure {
        Failure(StatusCode::BAD_REQUEST, error.into(), details)
    }
}

async fn handle(req: Request<Incoming>, control: Arc<Control>) -> Result<Reply, Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let result = match (method, path.as_str()) {
        (Method::POST, "/sync") => match body::<SyncRequest>(req).await {
            Ok(r) => sync(&control, r).await,
            Err(f) => Err(f),
        },
        (Method::GET, "/txid") => txid(&control, &query),
        (Method::GET, "/list") => json(&list(&control)),
        (Method::GET, "/info") => json(&info(&control)),
        (Method::POST, "/start" | "/stop") => match body::<PathRequest>(req).await {
            Ok(r) => toggle(&control, path == "/start", r).await,
            Err(f) => Err(f),
        },
        (Method::POST, "/unregister") => match body::<PathRequest>(req).await {
            Ok(r) => unregister(&control, r).await,
            Err(f) => Err(f),
        },
        (Method::POST, "/register") => match body::<RegisterRequest>(req).await {
            Ok(r) => register(&control, r),
            Err(f) => Err(f),
        },
        (_, "/sync" | "/start" | "/stop" | "/register" | "/unregister") => Err(Failure(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed: use POST".into(),
            None,
        )),
        (_, "/txid" | "/list" | "/info") => Err(Failure(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed: use GET".into(),
            None,
        )),
        _ => Err(Failure(
            StatusCode::NOT_FOUND,
            format!("not found: {path}"),
            None,
        )),
    };
    Ok(match result {
        Ok(r) => r,
        Err(Failure(status, error, details)) => reply(status, &ErrorResponse { error, details }),
    })
}

async fn body<T: DeserializeOwned>(req: Request<Incoming>) -> Result<T, Failure> {
    let bytes = Limited::new(req.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
        .map_err(|e| Failure::bad("cannot read request body", Some(e.to_string())))?
        .to_bytes();
    serde_json::from_slice(&bytes)
        .map_err(|e| Failure::bad("invalid request body", Some(e.to_string())))
}

/// The database a request names: by its path as configured, or made absolute against
/// our working directory.
fn find(control: &Control, path: &str) -> Result<Arc<DbHandle>, Failure> {
    if path.is_empty() {
        return Err(Failure::bad("path required", None));
    }
    control.runtime.find(path).ok_or_else(|| {
        Failure(
            StatusCode::NOT_FOUND,
            format!("database not found: {path}"),
            None,
        )
    })
}

fn timeout_of(secs: u64) -> Result<Duration, Failure> {
    match secs {
        0 => Ok(Duration::from_secs(DEFAULT_WAIT_TIMEOUT_SECS)),
        s if s > MAX_TIMEOUT_SECS => Err(Failure::bad(
            format!("timeout {s} is above the maximum of {MAX_TIMEOUT_SECS} seconds"),
            None,
        )),
        s => Ok(Duration::from_secs(s)),
    }
}

async fn sync(control: &Control, r: SyncRequest) -> Result<Reply, Failure> {
    let handle = find(control, &r.path)?;
    let timeout = timeout_of(r.timeout)?;
    match handle.sync(r.wait, timeout).await {
        Ok(out) => json(&SyncResponse {
            status: if r.wait {
                "synced"
            } else if out.captured_new {
                "synced_local"
            } else {
                "no_change"
            }
            .into(),
            path: r.path,
            txid: out.txid,
            replicated_txid: out.replicated_txid,
        }),
        Err(e) => {
            let status = match e {
                SyncError::NotOpen { .. } | SyncError::Stopped { .. } => StatusCode::CONFLICT,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            warn!(error = %e, "control socket: sync failed");
            Err(Failure(status, e.to_string(), None))
        }
    }
}

/// `start` or `stop` one database; the others are unaffected.
async fn toggle(control: &Control, start: bool, r: PathRequest) -> Result<Reply, Failure> {
    let handle = find(control, &r.path)?;
    let timeout = timeout_of(r.timeout)?;
    let outcome = if start {
        handle.start(timeout).await
    } else {
        handle.stop(timeout).await
    };
    let status = match (start, outcome) {
        (true, Ok(Toggle::Done)) => "started",
        (true, Ok(Toggle::Already)) => "already_running",
        (false, Ok(Toggle::Done)) => "stopped",
        (false, Ok(Toggle::Already)) => "already_stopped",
        (_, Err(e)) => {
            warn!(error = %e, "control socket: {} failed", if start { "start" } else { "stop" });
            return Err(Failure(
                StatusCode::INTERNAL_SERVER_ERROR,
                e.to_string(),
                None,
            ));
        }
    };
    info!(db = %r.path, status, "control socket");
    json(&ToggleResponse {
        status: status.into(),
        txid: raw(handle.status().local_txid()),
        path: r.path,
    })
}

fn txid(control: &Control, query: &str) -> Result<Reply, Failure> {
    let path = query_param(query, "path").unwrap_or_default();
    let handle = find(control, &path)?;
    json(&TxidResponse {
        txid: raw(handle.status().local_txid()),
    })
}

fn list(control: &Control) -> ListResponse {
    ListResponse {
        databases: control
            .runtime
            .list()
            .into_iter()
            .map(|(path, h)| {
                let ms = h
                    .status()
                    .last_capture_ms
                    .load(std::sync::atomic::Ordering::Acquire);
                ListEntry {
                    path,
                    status: match h.state() {
                        RunState::Running => "replicating",
                        RunState::Starting => "open",
                        RunState::Stopped => "stopped",
                    }
                    .into(),
                    last_sync_at: (ms > 0)
                        .then(|| jiff::Timestamp::from_millisecond(ms).ok())
                        .flatten()
                        .map(|t| t.to_string()),
                }
            })
            .collect(),
    }
}

fn info(control: &Control) -> InfoResponse {
    InfoResponse {
        version: env!("CARGO_PKG_VERSION").into(),
        pid: std::process::id(),
        uptime_seconds: control.started.elapsed().as_secs(),
        started_at: control.started_at.to_string(),
        database_count: control.runtime.list().len(),
    }
}

/// `register`: replicates `path` to `replica_url` from now on, with the settings a
/// `replicate DB_PATH REPLICA_URL` run would use. Already replicating is not an error
/// (`already_registered`, as Litestream answers).
fn register(control: &Control, r: RegisterRequest) -> Result<Reply, Failure> {
    if r.path.is_empty() {
        return Err(Failure::bad("path required", None));
    }
    if r.replica_url.is_empty() {
        return Err(Failure::bad("replica_url required", None));
    }
    let path = std::path::absolute(&r.path)
        .map_err(|e| Failure::bad(format!("invalid path: {e}"), None))?;
    let name = path.display().to_string();
    let answer = |status: &str| {
        json(&RegisterResponse {
            status: status.into(),
            path: name.clone(),
        })
    };
    if control.runtime.contains(&name) {
        return answer("already_registered");
    }
    let run = crate::setup::config_for_url(&name, &r.replica_url)
        .and_then(|cfg| crate::setup::db_runs(&cfg))
        .map_err(|e| {
            // The URL's own text is not repeated: it may carry credentials.
            Failure::bad(
                format!("invalid replica url: {}", crate::error_text(&e)),
                None,
            )
        })?
        .pop()
        .ok_or_else(|| Failure::bad("invalid replica url: no replica", None))?;
    match control.runtime.add(run) {
        Ok(()) => {
            info!(db = %name, "control socket: registered");
            answer("registered")
        }
        Err(RegistryError::AlreadyRegistered { .. }) => answer("already_registered"),
        Err(e) => Err(Failure(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("failed to register database: {e}"),
            None,
        )),
    }
}

/// `unregister`: stops replicating `path` after its final sync, as at shutdown. An
/// unknown path is `already_unregistered`, as Litestream answers.
async fn unregister(control: &Control, r: PathRequest) -> Result<Reply, Failure> {
    if r.path.is_empty() {
        return Err(Failure::bad("path required", None));
    }
    let timeout = timeout_of(r.timeout)?;
    let name = std::path::absolute(&r.path)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| r.path.clone());
    let detached = match control.runtime.detach(&r.path) {
        Ok(d) => d,
        Err(RegistryError::NotRegistered { .. }) => {
            return json(&UnregisterResponse {
                status: "already_unregistered".into(),
                path: name,
                txid: 0,
            })
        }
        Err(e) => {
            return Err(Failure(
                StatusCode::SERVICE_UNAVAILABLE,
                e.to_string(),
                None,
            ))
        }
    };
    let removed = match tokio::time::timeout(timeout, detached.finish()).await {
        Ok(Ok(removed)) => removed,
        Ok(Err(e)) => {
            return Err(Failure(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("failed to unregister database: {e}"),
                None,
            ))
        }
        Err(_) => {
            return Err(Failure(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!(
                    "{name}: unregistered, but its final sync did not finish within {timeout:?}"
                ),
                Some("the final sync goes on in the background".into()),
            ))
        }
    };
    if let Err(e) = removed.outcome {
        warn!(db = %name, error = %e, "control socket: unregistered; final sync incomplete");
        return Err(Failure(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{name}: unregistered, but its final sync failed: {e}"),
            None,
        ));
    }
    info!(db = %name, "control socket: unregistered");
    json(&UnregisterResponse {
        status: "unregistered".into(),
        path: name,
        txid: raw(removed.handle.status().local_txid()),
    })
}

/// One `application/x-www-form-urlencoded` query parameter, percent-decoded.
fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex_digit(b[i + 1]), hex_digit(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_digit(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

fn json<T: Serialize>(v: &T) -> Result<Reply, Failure> {
    Ok(reply(StatusCode::OK, v))
}

fn reply<T: Serialize>(status: StatusCode, v: &T) -> Reply {
    let body = serde_json::to_string(v).unwrap_or_else(|_| "{}".into()) + "\n";
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params_are_decoded() {
        assert_eq!(
            query_param("path=%2Fdata%2Fa+b.db&x=1", "path").as_deref(),
            Some("/data/a b.db")
        );
        assert_eq!(query_param("x=1", "path"), None);
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }

    #[test]
    fn timeouts() {
        assert_eq!(timeout_of(0).ok(), Some(Duration::from_secs(30)));
        assert_eq!(timeout_of(5).ok(), Some(Duration::from_secs(5)));
        assert!(timeout_of(MAX_TIMEOUT_SECS + 1).is_err());
    }
}
