//! The process-wide runtime: many databases in one process, one change watcher, one
//! shutdown signal.
//!
//! Owns: starting a replication task per database, sharing the file-system watcher and
//! the safety poll (one timer for all databases), and collecting their outcomes. Per-database behaviour lives in `replicate`.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tracing::{error, info, warn};

use crate::replicate::handle::DbHandle;
use crate::replicate::status::DbStatus;
use crate::replicate::{
    self,
    detect::{ChangeWatcher, SafetyPoll},
    DbOptions, ReplicaSpec, ReplicateError, RunMode,
};

/// Runs `job` every `interval` (the first time after a full interval) until `shutdown`
/// turns true, handing each outcome to `on_report`. A job still running when shutdown
/// comes is dropped. The one schedule for periodic checks of a replica (restore drills,
/// validation).
pub async fn every<T, Fut>(
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
    mut job: impl FnMut() -> Fut,
    mut on_report: impl FnMut(T),
) where
    Fut: std::future::Future<Output = T>,
{
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
        let report = tokio::select! {
            r = job() => r,
            _ = shutdown.changed() => return,
        };
        on_report(report);
    }
}

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

/// Runs one database until `shutdown`, ending and restarting its run as its handle's
/// `stop` and `start` ask (the control socket): a stopped run does its final sync; a
/// start runs it again with the same replicas, from what they hold.
async fn run_db(
    db: DbRun,
    notify: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
    mode: RunMode,
) -> Result<(), ReplicateError> {
    let name = db.opts.path.display().to_string();
    let mut wanted = db.handle.wanted();
    loop {
        if !*wanted.borrow_and_update() {
            // Stopped by request: wait for a start or the end.
            let start = tokio::select! {
                r = wanted.changed() => r.is_ok(),
                r = shutdown.wait_for(|s| *s) => { drop(r); false }
            };
            if !start {
                return Ok(());
            }
            continue;
        }
        if *shutdown.borrow() {
            return Ok(());
        }
        let replicas = db
            .replicas
            .iter()
            .map(|r| replicate::ReplicaSpec {
                opts: r.opts.clone(),
                store: r.store.clone(),
                status: r.status.clone(),
            })
            .collect();
        // The run's own stop signal: the process's shutdown, or a stop request.
        let (stop_tx, stop_rx) = watch::channel(false);
        let run = replicate::run_database(
            db.opts.clone(),
            replicas,
            db.handle.clone(),
            notify.clone(),
            stop_rx,
            mode,
        );
        tokio::pin!(run);
        let ended = tokio::select! {
            r = &mut run => Some(r),
            r = shutdown.wait_for(|s| *s) => { drop(r); None }
            r = wanted.wait_for(|w| !*w) => { drop(r); None }
        };
        let r = match ended {
            Some(r) => r,
            None => {
                stop_tx.send_replace(true);
                run.await
            }
        };
        if mode.once || *shutdown.borrow() || *wanted.borrow() {
            return r;
        }
        match r {
            Ok(()) => info!(db = %name, "replication stopped on request"),
            Err(e) => {
                warn!(db = %name, error = %e, "replication stopped on request, final sync incomplete")
            }
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
        let run = Box::pin(run_db(db, notify, sd, mode));
        tasks.push((
            name,
            tokio::spawn(async move {
                let r = run.await;
                // Reporters (/healthz, /status) see a stopped database at once, not when
                // every other database has finished.
                if let Err(e) = &r {
                    status.record_failure(
                        format!("replication stopped: {e}"),
                        crate::clock::now_ms(),
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
