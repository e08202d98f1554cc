//! The commands that talk to a running `replicate` over its control socket: `sync`,
//! `info`, `list`, `start`, `stop`, `register`, `unregister` (Litestream 0.5's flags).
//!
//! Each parses its flags, sends one request (`control::client`) and prints the answer;
//! a non-200 answer prints `<command> failed: <error>` and exits non-zero.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use hyper::Method;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::control::client::{call, Answer};
use crate::control::{
    InfoResponse, ListResponse, PathRequest, RegisterRequest, SyncRequest, SyncResponse,
    DEFAULT_SOCKET_PATH,
};
use crate::setup;

/// Where the socket is.
#[derive(clap::Args)]
pub struct SocketArgs {
    /// Control socket path (default: the config's socket.path with -config, else /var/run/litestream.sock).
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Config file to read socket.path from.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

impl SocketArgs {
    fn path(&self) -> anyhow::Result<PathBuf> {
        if let Some(s) = &self.socket {
            return Ok(s.clone());
        }
        if let Some(c) = &self.config {
            return Ok(setup::load_config(Some(c), true)?.socket.path);
        }
        Ok(PathBuf::from(DEFAULT_SOCKET_PATH))
    }
}

#[derive(clap::Args)]
pub struct SyncArgs {
    /// Wait until every replica holds the database's current TXID.
    #[arg(long)]
    wait: bool,
    /// Seconds to wait.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
    #[command(flatten)]
    socket: SocketArgs,
    /// Database path.
    db: PathBuf,
}

#[derive(clap::Args)]
pub struct PathArgs {
    /// Seconds to wait.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
    /// Show what would be done (unregister).
    #[arg(long = "dry-run")]
    dry_run: bool,
    #[command(flatten)]
    socket: SocketArgs,
    /// Database path.
    db: PathBuf,
}

#[derive(clap::Args)]
pub struct RegisterArgs {
    /// Replica URL.
    #[arg(long)]
    replica: String,
    /// Seconds to wait.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
    #[command(flatten)]
    socket: SocketArgs,
    /// Database path.
    db: PathBuf,
}

#[derive(clap::Args)]
pub struct QueryArgs {
    /// Seconds to wait.
    #[arg(long, default_value_t = 10)]
    timeout: u64,
    #[command(flatten)]
    socket: SocketArgs,
}

/// Runs one request on a small runtime; prints `<what> failed: ...` on failure.
fn request<B: Serialize, T: DeserializeOwned>(
    what: &str,
    socket: &Path,
    method: Method,
    uri: &str,
    body: Option<&B>,
    timeout: Duration,
) -> anyhow::Result<Result<T, ExitCode>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match rt.block_on(call::<B, T>(socket, method, uri, body, timeout)) {
        Ok(Answer::Ok(v)) => Ok(Ok(v)),
        Ok(Answer::Failed(e)) => {
            eprintln!("{what} failed: {}", e.error);
            if let Some(d) = e.details {
                eprintln!("details: {d}");
            }
            Ok(Err(ExitCode::FAILURE))
        }
        Err(e) => {
            eprintln!("{what} failed: {}", crate::error_text(&e));
            Ok(Err(ExitCode::FAILURE))
        }
    }
}

fn absolute(p: &Path) -> String {
    std::path::absolute(p)
        .unwrap_or_else(|_| p.to_path_buf())
        .display()
        .to_string()
}

/// Time the client waits beyond the server's own timeout for the answer.
const ANSWER_SLACK: Duration = Duration::from_secs(5);

pub fn sync(a: SyncArgs) -> anyhow::Result<ExitCode> {
    let db = absolute(&a.db);
    let body = SyncRequest {
        path: db.clone(),
        wait: a.wait,
        timeout: a.timeout,
    };
    let started = Instant::now();
    let r: SyncResponse = match request(
        "sync",
        &a.socket.path()?,
        Method::POST,
        "/sync",
        Some(&body),
        Duration::from_secs(a.timeout) + ANSWER_SLACK,
    )? {
        Ok(r) => r,
        Err(code) => return Ok(code),
    };
    let duration_ms = started.elapsed().as_millis() as u64;
    if a.socket.json {
        let mut v = serde_json::json!({ "db_path": db, "txid": r.txid });
        if a.wait {
            v["replica_txid"] = r.replicated_txid.into();
        }
        v["duration_ms"] = duration_ms.into();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("db_path: {db}");
        println!("txid: {}", r.txid);
        if a.wait {
            println!("replica_txid: {}", r.replicated_txid);
        }
        println!("duration_ms: {duration_ms}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `GET /<what>` (no body), for `info` and `list`.
fn get<T: DeserializeOwned>(what: &str, a: &QueryArgs) -> anyhow::Result<Result<T, ExitCode>> {
    request::<(), _>(
        what,
        &a.socket.path()?,
        Method::GET,
        &format!("/{what}"),
        None,
        Duration::from_secs(a.timeout),
    )
}

pub fn info(a: QueryArgs) -> anyhow::Result<ExitCode> {
    let r: InfoResponse = match get("info", &a)? {
        Ok(r) => r,
        Err(code) => return Ok(code),
    };
    if a.socket.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        println!("version: {}", r.version);
        println!("pid: {}", r.pid);
        println!("uptime_seconds: {}", r.uptime_seconds);
        println!("started_at: {}", r.started_at);
        println!("database_count: {}", r.database_count);
    }
    Ok(ExitCode::SUCCESS)
}

pub fn list(a: QueryArgs) -> anyhow::Result<ExitCode> {
    let r: ListResponse = match get("list", &a)? {
        Ok(r) => r,
        Err(code) => return Ok(code),
    };
    if a.socket.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        println!("path\tstatus\tlast_sync_at");
        for d in &r.databases {
            println!(
                "{}\t{}\t{}",
                d.path,
                d.status,
                d.last_sync_at.as_deref().unwrap_or("-")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `start`, `stop`, `unregister` (which waits for the database's final sync); a non-200
/// answer is never taken for success. `unregister -dry-run` sends nothing.
pub fn path_command(what: &str, a: PathArgs) -> anyhow::Result<ExitCode> {
    if a.dry_run && what != "unregister" {
        anyhow::bail!("-dry-run applies to unregister only");
    }
    if a.dry_run {
        println!("Dry run: unregister request preview");
        println!("  database: {}", absolute(&a.db));
        println!("  socket: {}", a.socket.path()?.display());
        println!("  final sync: the replicator syncs the database to its replicas before it stops");
        println!("  timeout: {}s", a.timeout);
        println!("No unregister request was sent.");
        return Ok(ExitCode::SUCCESS);
    }
    let body = PathRequest {
        path: absolute(&a.db),
        timeout: a.timeout,
    };
    let r: serde_json::Value = match request(
        what,
        &a.socket.path()?,
        Method::POST,
        &format!("/{what}"),
        Some(&body),
        Duration::from_secs(a.timeout) + ANSWER_SLACK,
    )? {
        Ok(r) => r,
        Err(code) => return Ok(code),
    };
    print_value(&r, a.socket.json)
}

pub fn register(a: RegisterArgs) -> anyhow::Result<ExitCode> {
    let body = RegisterRequest {
        path: absolute(&a.db),
        replica_url: a.replica.clone(),
    };
    let r: serde_json::Value = match request(
        "register",
        &a.socket.path()?,
        Method::POST,
        "/register",
        Some(&body),
        Duration::from_secs(a.timeout) + ANSWER_SLACK,
    )? {
        Ok(r) => r,
        Err(code) => return Ok(code),
    };
    print_value(&r, a.socket.json)
}

fn print_value(v: &serde_json::Value, json: bool) -> anyhow::Result<ExitCode> {
    if json {
        println!("{}", serde_json::to_string_pretty(v)?);
    } else if let Some(m) = v.as_object() {
        for (k, v) in m {
            match v {
                serde_json::Value::String(s) => println!("{k}: {s}"),
                other => println!("{k}: {other}"),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
