//! The process-wide runtime: many databases in one process, one change watcher, one
//! shutdown signal.
//!
//! Owns: starting a replication task per database, sharing the file-system watcher and
//! the safety poll (one timer for all databases), and collecting their outcomes. Per-database behaviour lives in `replicate`.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tracing::error;

use crate::replicate::handle::DbHandle;
use crate::replicate::status::DbStatus;
use crate::replicate::{
    self,
    detect::{ChangeWatcher, SafetyPoll},
    DbOptions, ReplicaSpec, ReplicateError, RunMode,
};

/// One database and its replicas, ready to run.
pub struct DbRun {
    pub opts: DbOptions,
    pub replicas: Vec<ReplicaSpec>,
    pub status: Arc<DbStatus>,
    /// Sync requests and run state, for the control socket (shares `status`).
    pub handle: Arc<DbHandle>,
}

impl DbRun {
    /// A run with fresh figures and a fresh handle.
    pub fn new(opts: DbOptions, replicas: Vec<ReplicaSpec>) -> DbRun {
        let status = Arc::new(DbStatus::default());
        let handle = Arc::new(DbHandle::new(
            opts.path.display().to_string(),
            status.clone(),
        ));
        DbRun {
            opts,
            replicas,
            status,
            handle,
        }
    }
}

/// Replicates every database until `shutdown` turns true (or once each, in `once` mode).
/// Returns the errors of the databases that failed; the others are unaffected by them.
pub async fn replicate_all(
    dbs: Vec<DbRun>,
    shutdown: watch::Receiver<bool>,
    mode: RunMode,
) -> Vec<ReplicateError> {
    let mut watcher = ChangeWatcher::new();
    let mut poll = SafetyPoll::new();
    let poll_interval = dbs
        .iter()
        .map(|d| d.opts.poll_interval)
        .min()
        .unwrap_or(Duration::from_secs(1));
    let mut tasks = Vec::new();
    for db in dbs {
        let notify = Arc::new(Notify::new());
        watcher.watch(&db.opts.path, notify.clone());
        poll.add(&db.opts.path, notify.clone());
        let sd = shutdown.clone();
        let status = db.status.clone();
        let name = db.opts.path.display().to_string();
        // Boxed: the task's future would otherwise hold this one (2.3 KiB) twice, as the
        // captured value and as the future being awaited.
        let run = Box::pin(replicate::run_database(
            db.opts,
            db.replicas,
            db.handle,
            notify,
            sd,
            mode,
        ));
        tasks.push((
            name,
            tokio::spawn(async move {
                let r = run.await;
                // Reporters (/healthz, /status) see a stopped database at once, not when
                // every other database has finished.
                if let Err(e) = &r {
                    status.record_failure(
                        format!("replication stopped: {e}"),
                        crate::replicate::local::now_ms(),
                    );
                }
                r
            }),
        ));
    }
    let poller = (!mode.once).then(|| tokio::spawn(poll.run(poll_interval, shutdown.clone())));
    let mut errors = Vec::new();
    for (db, t) in tasks {
        match t.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                error!(db = %db, error = %e, "database replication stopped");
                errors.push(e);
            }
            Err(e) => error!(db = %db, error = %e, "database task panicked"),
        }
    }
    drop(watcher);
    if let Some(p) = poller {
        p.abort();
    }
    errors
}
