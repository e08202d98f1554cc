//! Operator visibility of a running `replicate`: the `addr` HTTP endpoint (`/metrics` in
//! Prometheus text, `/healthz`, `/status` as JSON, the status page at `/`), and reading `/status` back for the
//! `status` command.
//!
//! Data flow: the engine's live `status` atomics → [`Watched::report`] (a plain
//! `Report`, plus the local meta directories for pending bytes and lag age) →
//! `metrics::render` / `health::check` / JSON / `page::render` (pure; the page with the
//! last hour kept by `history`) → `snapshot` (the rendered bodies,
//! shared by every request for up to a second) → `server` (HTTP, on a thread of its own,
//! with bounded connections and request time). The engine knows nothing of HTTP; this
//! module holds no replication state of its own.

pub mod client;
pub mod health;
pub mod history;
pub mod metrics;
pub mod page;
pub mod server;
pub mod snapshot;

use std::path::PathBuf;
use std::sync::Arc;

use engine::clock::now_ms;
use engine::replicate::report::{DbReport, LiveReplica, Report};
use engine::replicate::status::{DbStatus, ReplicaStatus};
use engine::runtime::DbRun;

/// The live figures of every database a `replicate` process runs.
pub struct Watched {
    dbs: Vec<WatchedDb>,
    /// The running set, read at each report, so databases added while running (a
    /// watched directory, `register`) are reported and removed ones are not.
    live: Option<engine::runtime::Runtime>,
    /// The lease of each database that has one (`lease:`), by database path.
    leases: Vec<(String, Arc<engine::lease::LeaseStatus>)>,
    /// The `heartbeat-url` pings' outcomes, when configured.
    heartbeat: Option<Arc<crate::heartbeat::HeartbeatStatus>>,
}

struct WatchedDb {
    db: String,
    meta_dir: PathBuf,
    status: Arc<DbStatus>,
    replicas: Vec<WatchedReplica>,
}

struct WatchedReplica {
    name: String,
    replica_type: String,
    status: Arc<ReplicaStatus>,
}

impl Watched {
    /// Handles on the figures of `runs`, taken before they are handed to the engine.
    pub fn of(runs: &[DbRun]) -> Watched {
        Watched {
            dbs: runs
                .iter()
                .map(|r| WatchedDb {
                    db: r.opts.path.display().to_string(),
                    meta_dir: r.opts.meta_dir.clone(),
                    status: r.status.clone(),
                    replicas: r
                        .replicas
                        .iter()
                        .map(|s| WatchedReplica {
                            name: s.opts.name.clone(),
                            replica_type: replica_type(s.store.location()).to_string(),
                            status: s.status.clone(),
                        })
                        .collect(),
                })
                .collect(),
            live: None,
            leases: Vec::new(),
            heartbeat: None,
        }
    }

    /// Handles on the figures of whatever databases `runtime` runs at each report.
    pub fn live(runtime: engine::runtime::Runtime) -> Watched {
        Watched {
            dbs: Vec::new(),
            live: Some(runtime),
            leases: Vec::new(),
            heartbeat: None,
        }
    }

    /// Adds the heartbeat's outcomes, shown in `/status` as `heartbeat`.
    pub fn with_heartbeat(
        mut self,
        heartbeat: Option<Arc<crate::heartbeat::HeartbeatStatus>>,
    ) -> Watched {
        self.heartbeat = heartbeat;
        self
    }

    /// The heartbeat's last outcome, when `heartbeat-url` is set.
    pub fn heartbeat_view(&self) -> Option<crate::heartbeat::HeartbeatView> {
        self.heartbeat.as_ref().map(|h| h.get())
    }

    /// Adds the live lease figures of databases with a lease (primary or standby).
    pub fn with_leases(
        mut self,
        leases: Vec<(String, Arc<engine::lease::LeaseStatus>)>,
    ) -> Watched {
        self.leases = leases;
        self
    }

    /// The lease of each database that has one, now.
    pub fn lease_views(&self) -> Vec<(String, engine::lease::LeaseView)> {
        self.leases
            .iter()
            .map(|(db, s)| (db.clone(), s.get()))
            .collect()
    }

    /// A report of every database now. Lists each local meta directory: call it where
    /// blocking is allowed (the server's own thread).
    pub fn report(&self) -> Report {
        let now = now_ms();
        Report {
            taken_unix_ms: now,
            source: "daemon".into(),
            databases: self
                .dbs
                .iter()
                .map(|d| {
                    let replicas: Vec<LiveReplica<'_>> = d
                        .replicas
                        .iter()
                        .map(|r| LiveReplica {
                            name: &r.name,
                            replica_type: &r.replica_type,
                            status: &r.status,
                        })
                        .collect();
                    DbReport::live(&d.db, &d.meta_dir, &d.status, &replicas, now)
                })
                .chain(self.live.iter().flat_map(|rt| rt.views()).map(|d| {
                    let replicas: Vec<LiveReplica<'_>> = d
                        .replicas
                        .iter()
                        .map(|r| LiveReplica {
                            name: &r.name,
                            replica_type: replica_type(&r.location),
                            status: &r.status,
                        })
                        .collect();
                    DbReport::live(&d.path, &d.meta_dir, &d.status, &replicas, now)
                }))
                .collect(),
        }
    }
}

/// Litestream's `replica_type` label: the scheme of a store's location (`file`, `s3`,
/// `abs`).
pub fn replica_type(location: &str) -> &str {
    location.split_once("://").map_or("unknown", |(s, _)| s)
}

/// The socket address to listen on for `addr`: `:9090` is every interface (as Go's
/// `net/http` reads it), `host:port` that host.
pub fn bind_addr(addr: &str) -> String {
    match addr.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => addr.to_string(),
    }
}

/// The socket address a local client reaches a daemon at for `addr`: wildcard hosts
/// become loopback.
pub fn connect_addr(addr: &str) -> String {
    let bind = bind_addr(addr);
    if let Some(port) = bind.strip_prefix("0.0.0.0:") {
        format!("127.0.0.1:{port}")
    } else if let Some(port) = bind.strip_prefix("[::]:") {
        format!("[::1]:{port}")
    } else {
        bind
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        let cases = [
            (":9090", "0.0.0.0:9090", "127.0.0.1:9090"),
            ("127.0.0.1:9091", "127.0.0.1:9091", "127.0.0.1:9091"),
            ("0.0.0.0:80", "0.0.0.0:80", "127.0.0.1:80"),
            ("[::]:9090", "[::]:9090", "[::1]:9090"),
            ("host.local:9", "host.local:9", "host.local:9"),
        ];
        for (addr, bind, connect) in cases {
            assert_eq!(
                (bind_addr(addr), connect_addr(addr)),
                (bind.to_string(), connect.to_string()),
                "{addr}"
            );
        }
        assert_eq!(replica_type("s3://b/p (endpoint http://x)"), "s3");
        assert_eq!(replica_type("file:///backups/a"), "file");
    }
}
