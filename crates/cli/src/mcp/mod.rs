//! The MCP server at `mcp-addr`: Model Context Protocol over Streamable HTTP, started by
//! `replicate`, with Litestream's tools (`litestream_info`, `_databases`, `_status`,
//! `_ltx`, `_restore`, `_reset`, `_version`; `tools.rs`), so an MCP client configured for
//! Litestream keeps working.
//!
//! Owns: the listener, the HTTP connections and rmcp's transport (stateless: no session is
//! kept between requests; answers are plain JSON). Does not: answer the tools itself,
//! beyond `litestream_version`: each tool runs this binary's own command (`restore`,
//! `ltx`, `status`, ...) in a child process, so a restore through MCP is the `restore`
//! command, verified the same way, and a large restore's memory is not the replicator's.
//!
//! Address: `HOST:PORT` listens there; `:PORT` listens on loopback only (Go, and so
//! Litestream, would take every interface: the server has no authentication and can
//! restore files, so reaching it from elsewhere takes an explicit `0.0.0.0:PORT`, which
//! is logged as a warning). The `Host` header is checked against the address (DNS
//! rebinding), except on a wildcard address, whose names are not known.
//!
//! Kept off the capture path like `addr` (`observe::server`): its own thread and
//! single-threaded runtime, at most [`MAX_CONNECTIONS`] connections, and at most
//! `tools::MAX_PROCESSES` tool commands running at once.

mod tools;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

/// Connections served at once; more are closed at once.
pub const MAX_CONNECTIONS: usize = 16;
/// Time a client has to send a request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// What the tools need from the replicator's command line.
#[derive(Clone, Debug)]
pub struct Options {
    /// The config file `replicate` read (absent for `replicate DB_PATH REPLICA_URL`):
    /// the tools' default `config`.
    pub config: Option<PathBuf>,
    /// False with `-no-expand-env`: the tools' commands read the config the same way.
    pub expand_env: bool,
}

/// Binds `addr` (failing the start when it cannot) and serves MCP on a thread of its own
/// for the life of the process. Returns the address listened on.
pub fn start(addr: &str, opts: Options) -> anyhow::Result<SocketAddr> {
    let bind = bind_addr(addr);
    let listener = std::net::TcpListener::bind(&bind)
        .with_context(|| format!("mcp-addr {addr}: cannot listen on {bind}"))?;
    let local = listener
        .local_addr()
        .with_context(|| format!("mcp-addr {addr}: reading the bound address"))?;
    listener
        .set_nonblocking(true)
        .with_context(|| format!("mcp-addr {addr}: setting up the listener"))?;
    let allowed = allowed_hosts(addr, local.ip());
    if allowed.is_empty() {
        warn!(addr = %local, "the MCP server listens on every interface and has no authentication: anyone who reaches it can list replicas and restore databases on this host");
    }
    let exe = std::env::current_exe().context("mcp-addr: locating this binary for the tools")?;
    let tools = tools::Tools::new(exe, opts);
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_sse_keep_alive(None)
        .with_allowed_hosts(allowed);
    let service = StreamableHttpService::new(
        move || Ok(tools.clone()),
        Arc::new(NeverSessionManager::default()),
        config,
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("mcp-addr: starting the server runtime")?;
    std::thread::Builder::new()
        .name("mcp-http".into())
        .spawn(move || {
            rt.block_on(async move {
                match TcpListener::from_std(listener) {
                    Ok(l) => serve(l, service).await,
                    Err(e) => warn!(error = %e, "MCP server: cannot use the listener"),
                }
            })
        })
        .context("mcp-addr: starting the server thread")?;
    info!(addr = %local, "serving MCP (Streamable HTTP) at http://{local}/mcp");
    Ok(local)
}

/// Accepts until the process ends. Accept errors (out of file descriptors) are logged and
/// retried after a pause; a broken connection only ends that connection.
async fn serve(
    listener: TcpListener,
    service: StreamableHttpService<tools::Tools, NeverSessionManager>,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                warn!(error = %e, "MCP server: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            debug!("MCP server: too many connections, closing one");
            continue;
        };
        let service = TowerToHyperService::new(service.clone());
        tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                debug!(error = %e, "MCP connection ended");
            }
            drop(slot);
        });
    }
}

/// The socket address to listen on: `:PORT` is loopback (see the module docs).
fn bind_addr(addr: &str) -> String {
    match addr.strip_prefix(':') {
        Some(port) => format!("127.0.0.1:{port}"),
        None => addr.to_string(),
    }
}

/// The `Host` values accepted: loopback names, and the configured host when it is another
/// one; none checked (empty) on a wildcard address.
fn allowed_hosts(addr: &str, bound: IpAddr) -> Vec<String> {
    if bound.is_unspecified() {
        return Vec::new();
    }
    let mut hosts: Vec<String> = ["localhost", "127.0.0.1", "::1"].map(String::from).into();
    let host = bind_addr(addr)
        .rsplit_once(':')
        .map(|(h, _)| h.trim_start_matches('[').trim_end_matches(']').to_string())
        .unwrap_or_default();
    if !host.is_empty() && !hosts.contains(&host) {
        hosts.push(host);
    }
    hosts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_hosts() {
        assert_eq!(bind_addr(":3001"), "127.0.0.1:3001");
        assert_eq!(bind_addr("0.0.0.0:3001"), "0.0.0.0:3001");
        assert_eq!(bind_addr("[::1]:3001"), "[::1]:3001");
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(
            allowed_hosts(":3001", lo),
            ["localhost", "127.0.0.1", "::1"]
        );
        assert_eq!(
            allowed_hosts("[::1]:3001", "::1".parse().unwrap()),
            ["localhost", "127.0.0.1", "::1"]
        );
        assert_eq!(
            allowed_hosts("10.0.0.5:3001", "10.0.0.5".parse().unwrap()),
            ["localhost", "127.0.0.1", "::1", "10.0.0.5"]
        );
        assert!(allowed_hosts("0.0.0.0:3001", "0.0.0.0".parse().unwrap()).is_empty());
        assert!(allowed_hosts("[::]:3001", "::".parse().unwrap()).is_empty());
    }
}
