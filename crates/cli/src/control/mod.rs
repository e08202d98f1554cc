//! The control socket: HTTP/1 over a Unix socket (`socket:` in the config), Litestream
//! 0.5's control plane, so scripts written for `litestream sync -wait` keep working. On
//! Windows the same protocol runs over a local named pipe ([`pipe_name`]).
//!
//! Owns: the wire format (request and response bodies, spelled as Litestream spells
//! them, in this file), the server started by `replicate` (`server.rs`: binding the
//! socket file with its permissions, routing, limits) and the client side used by the
//! `sync`, `info`, `list`, `start`, `stop`, `register` and `unregister` commands
//! (`client.rs`).
//!
//! Does not: capture or upload anything. A sync is asked of the engine through each
//! database's `engine::replicate::handle::DbHandle`, which owns the sync rule (the
//! capture answering a request starts after it; `wait` waits for every replica).
//! `start` and `stop` end and restart one database's run (`DbHandle::stop`/`start`);
//! `register` and `unregister` add a database to, or take one out of, the running set
//! (`engine::runtime::Runtime`; `unregister` waits for the final sync).

pub mod client;
pub mod server;

use serde::{Deserialize, Serialize};

/// Litestream's default socket path.
pub const DEFAULT_SOCKET_PATH: &str = "/var/run/litestream.sock";

/// The default control pipe on Windows.
pub const DEFAULT_PIPE_NAME: &str = r"\\.\pipe\sqlite-replicate";

/// The named pipe a `socket.path` (or `-socket`) stands for on Windows: a pipe name
/// (`\\.\pipe\NAME`, or with forward slashes) as given; Litestream's default socket
/// path, [`DEFAULT_SOCKET_PATH`], is [`DEFAULT_PIPE_NAME`]; any other path is the pipe
/// named after its last component (`C:\run\app.sock` is `\\.\pipe\app.sock`).
#[cfg_attr(not(windows), allow(dead_code))]
pub fn pipe_name(path: &std::path::Path) -> String {
    let s = path.to_string_lossy().replace('/', "\\");
    if s.len() > 9
        && s.get(..9)
            .is_some_and(|p| p.eq_ignore_ascii_case(r"\\.\pipe\"))
    {
        return s;
    }
    if path == std::path::Path::new(DEFAULT_SOCKET_PATH) {
        return DEFAULT_PIPE_NAME.to_string();
    }
    let last = s
        .rsplit(['\\', ':'])
        .find(|c| !c.is_empty())
        .unwrap_or("sqlite-replicate");
    format!(r"\\.\pipe\{last}")
}

/// Seconds a `sync -wait` waits when the request says 0.
pub const DEFAULT_WAIT_TIMEOUT_SECS: u64 = 30;

/// Longest timeout a request may ask for: bounds how long a connection is held.
pub const MAX_TIMEOUT_SECS: u64 = 3600;

/// `POST /sync`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SyncRequest {
    pub path: String,
    #[serde(default)]
    pub wait: bool,
    /// Seconds; 0 means the default.
    #[serde(default)]
    pub timeout: u64,
}

/// Answer to `POST /sync`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SyncResponse {
    /// `no_change`, `synced` (with wait) or `synced_local`.
    pub status: String,
    pub path: String,
    pub txid: u64,
    pub replicated_txid: u64,
}

/// `POST /start`, `POST /stop`, `POST /unregister`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PathRequest {
    pub path: String,
    #[serde(default)]
    pub timeout: u64,
}

/// Answer to `POST /start` (`started`, `already_running`) and `POST /stop` (`stopped`,
/// `already_stopped`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ToggleResponse {
    pub status: String,
    pub path: String,
    pub txid: u64,
}

/// `POST /register`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct RegisterRequest {
    pub path: String,
    pub replica_url: String,
}

/// Answer to `POST /register`: `registered` or `already_registered`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RegisterResponse {
    pub status: String,
    pub path: String,
}

/// Answer to `POST /unregister`: `unregistered` (with the database's TXID after its
/// final sync) or `already_unregistered`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct UnregisterResponse {
    pub status: String,
    pub path: String,
    pub txid: u64,
}

/// `GET /txid?path=DB`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct TxidResponse {
    pub txid: u64,
}

/// `GET /list`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ListResponse {
    pub databases: Vec<ListEntry>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ListEntry {
    pub path: String,
    /// `replicating`, `open` (known, not replicating yet: listing its replicas or
    /// waiting for the file) or `stopped`.
    pub status: String,
    /// RFC 3339 time of the last capture, absent before the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_at: Option<String>,
}

/// `GET /info`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct InfoResponse {
    pub version: String,
    pub pid: u32,
    pub uptime_seconds: u64,
    /// RFC 3339.
    pub started_at: String,
    pub database_count: usize,
}

/// Every non-200 answer.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorResponse {
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn socket_paths_map_to_pipe_names() {
        assert_eq!(pipe_name(Path::new(DEFAULT_SOCKET_PATH)), DEFAULT_PIPE_NAME);
        assert_eq!(
            pipe_name(Path::new(r"\\.\pipe\my-replicator")),
            r"\\.\pipe\my-replicator"
        );
        assert_eq!(pipe_name(Path::new("//./pipe/x")), r"\\.\pipe\x");
        assert_eq!(
            pipe_name(Path::new(r"C:\ProgramData\app.sock")),
            r"\\.\pipe\app.sock"
        );
        assert_eq!(pipe_name(Path::new("/run/app.sock")), r"\\.\pipe\app.sock");
    }
}
