//! The process-wide runtime: many databases in one process, one change watcher, one
//! shutdown signal.
//!
//! Owns: the set of running databases ([`Runtime`]: added at start, by directory
//! discovery (`discover`) or the control socket's `register`; removed, after a final
//! sync, by discovery or `unregister`), starting a replication task per database,
//! sharing the file-system watcher and the safety poll (one timer for all the databases
//! events do not cover, none when there are none),
//! and collecting their outcomes. Per-database behaviour lives in `replicate`; which
//! files are databases of a watched directory is `discover`'s business.

pub mod budget;
pub mod discover;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tracing::{debug, error, info, warn};

use crate::replicate::handle::DbHandle;
use crate::replicate::status::{DbStatus, ReplicaStatus};
use crate::replicate::{
    self,
    detect::{ChangeWatcher, Changes, SafetyPoll},
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
    /// The periodic checks scheduled beside the run (started by the hook of
    /// [`Runtime::on_add`], however the database came).
    pub checks: Checks,
}

/// The schedules of the periodic checks of one database: restore drills of every
/// replica, and validation of the replicas that ask for it.
#[derive(Clone, Debug, Default)]
pub struct Checks {
    /// `drill-interval`: `None`, no drills.
    pub drill_interval: Option<Duration>,
    /// `validation-interval` of each replica that has one, by replica name.
    pub validation_intervals: Vec<(String, Duration)>,
}

/// A running database's live figures, for reporters (`/metrics`, `/status`, the
/// heartbeat): the same handles its run updates, whenever and however it was added.
pub struct DbView {
    /// As the runtime keys it (the configured or absolute path).
    pub path: String,
    pub meta_dir: PathBuf,
    pub status: Arc<DbStatus>,
    pub replicas: Vec<ReplicaView>,
}

/// One replica of a [`DbView`].
pub struct ReplicaView {
    pub name: String,
    /// The store's location (`s3://bucket/path ...`), whose scheme is the replica type.
    pub location: String,
    pub status: Arc<ReplicaStatus>,
}

impl DbView {
    fn of(db: &DbRun) -> DbView {
        DbView {
            path: db.opts.path.display().to_string(),
            meta_dir: db.opts.meta_dir.clone(),
            status: db.status.clone(),
            replicas: db
                .replicas
                .iter()
                .map(|r| ReplicaView {
                    name: r.opts.name.clone(),
                    location: r.store.location().to_string(),
                    status: r.status.clone(),
                })
                .collect(),
        }
    }
}

/// Called for every database added to a [`Runtime`], with the run and a receiver that
/// turns true when the database is removed or the runtime stops: starts what runs
/// beside it (drills, validations) for exactly its life.
pub type OnAdd = Arc<dyn Fn(&DbRun, watch::Receiver<bool>) + Send + Sync>;

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
            checks: Checks::default(),
        }
    }
}

/// Runs one database until `shutdown`, ending and restarting its run as its handle's
/// `stop` and `start` ask (the control socket): a stopped run does its final sync; a
/// start runs it again with the same replicas, from what they hold.
///
/// Each run first waits for its descriptors ([`budget::Budget`]); while other runs wait,
/// an idle run ends (its final sync finds nothing to do) and the database goes dormant
/// until its files change or a sync is asked for. A run that fails because descriptors
/// ran out is retried with backoff.
async fn run_db(
    db: DbRun,
    notify: Arc<Changes>,
    mut shutdown: watch::Receiver<bool>,
    mode: RunMode,
    budget: Arc<budget::Budget>,
) -> Result<(), ReplicateError> {
    let name = db.opts.path.display().to_string();
    let mut wanted = db.handle.wanted();
    let mut backoff = budget::Backoff::default();
    // What stays open while dormant, held for the database's whole life.
    let _dormant_units = budget.hold_dormant(&db);
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
        // The run's descriptors: wait for them (first come, first served).
        let units = tokio::select! {
            p = budget.awake(&db) => p,
            r = shutdown.wait_for(|s| *s) => { drop(r); return Ok(()); }
            r = wanted.wait_for(|w| !*w) => { drop(r); continue; }
        };
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
        let mut dormant = false;
        let mut exhausted = false;
        let ended = tokio::select! {
            r = &mut run => Some(r),
            r = shutdown.wait_for(|s| *s) => { drop(r); None }
            r = wanted.wait_for(|w| !*w) => { drop(r); None }
            _ = idle_while_contended(&db, &budget), if !mode.once => { dormant = true; None }
            // The run retries a failed capture every cycle; out of descriptors, that
            // would be a line a second per database for as long as it lasts.
            _ = failing_for_descriptors(&db), if !mode.once => { exhausted = true; None }
        };
        let r = match ended {
            Some(r) => r,
            None => {
                stop_tx.send_replace(true);
                run.await
            }
        };
        drop(units);
        if mode.once || *shutdown.borrow() {
            return r;
        }
        let exhausted = exhausted
            || r.as_ref().err().is_some_and(|e| {
                crate::platform::descriptors_exhausted(&crate::storage::objstore_error::chain_text(
                    e,
                ))
            });
        {
            if exhausted {
                budget.say_exhausted();
                let wait = budget::jittered(backoff.step());
                warn!(db = %name, retry_in = ?wait, limit = budget.limit(), "database not replicating: out of file descriptors; retrying");
                db.status.record_failure(
                    format!(
                        "out of file descriptors (open-file limit {}); retrying in {wait:?}",
                        budget.limit()
                    ),
                    crate::clock::now_ms(),
                );
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    r = shutdown.wait_for(|s| *s) => { drop(r); return Ok(()); }
                }
                continue;
            }
        }
        if dormant && r.is_ok() && *wanted.borrow() {
            backoff = budget::Backoff::default();
            db.replicas.iter().for_each(|r| r.store.close_idle());
            if !sleep_dormant(&db, &notify, &mut shutdown, &mut wanted).await {
                return Ok(());
            }
            continue;
        }
        if *wanted.borrow() {
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

/// Resolves once the database's captures fail because descriptors ran out. Woken by
/// each recorded failure (no timer: a quiet database costs nothing here).
async fn failing_for_descriptors(db: &DbRun) {
    loop {
        let failed = db.status.failed.notified();
        tokio::pin!(failed);
        // Registered before the look, so a failure recorded in between is not missed.
        failed.as_mut().enable();
        if failing_for_want_of_descriptors(db) {
            return;
        }
        failed.await;
    }
}

fn failing_for_want_of_descriptors(db: &DbRun) -> bool {
    use std::sync::atomic::Ordering;
    db.status.failing_since_ms.load(Ordering::Acquire) != 0
        && (db.status.last_error()).is_some_and(|e| crate::platform::descriptors_exhausted(&e))
}

/// How often an awake database looks whether it may go dormant, while other runs wait
/// for descriptors (and only then: with none waiting it has no timer).
const DORMANT_CHECK: Duration = Duration::from_millis(500);

/// Resolves once other runs wait for descriptors and this database is idle: running,
/// no sync asked for, nothing captured for [`budget::DORMANT_AFTER`], and every replica
/// holding everything captured, with no upload in flight. Waits for contention to begin
/// without a timer; looks every [`DORMANT_CHECK`] while it lasts.
async fn idle_while_contended(db: &DbRun, budget: &budget::Budget) {
    loop {
        budget.until_contended().await;
        while budget.contended() {
            tokio::time::sleep(DORMANT_CHECK).await;
            if budget.contended() && may_go_dormant(db) {
                return;
            }
        }
    }
}

fn may_go_dormant(db: &DbRun) -> bool {
    use crate::replicate::handle::RunState;
    use std::sync::atomic::Ordering;
    if db.handle.state() != RunState::Running || db.handle.sync_pending() {
        return false;
    }
    let last = db.status.last_capture_ms.load(Ordering::Acquire);
    let quiet = crate::clock::now_ms().saturating_sub(last);
    if quiet < budget::DORMANT_AFTER.as_millis() as i64 {
        return false;
    }
    let local = db.status.local_txid();
    local.is_some()
        && db
            .replicas
            .iter()
            .all(|r| r.status.progress.holds(local) && !r.status.progress.is_uploading())
}

/// A dormant database: nothing open but what [`budget::dormant_cost`] counts, until its
/// files change ([`budget::Probe`], checked at each wake-up of the change watcher or the
/// safety poll) or a sync is asked for (true), or the process stops (false). It shows as
/// running meanwhile (`list`, `sync` answer for it).
async fn sleep_dormant(
    db: &DbRun,
    notify: &Notify,
    shutdown: &mut watch::Receiver<bool>,
    wanted: &mut watch::Receiver<bool>,
) -> bool {
    db.handle.set_running(
        db.replicas
            .iter()
            .map(|r| (r.opts.name.clone(), r.status.clone()))
            .collect(),
    );
    let (path, meta) = (db.opts.path.clone(), db.opts.meta_dir.clone());
    let probe = Arc::new(
        tokio::task::spawn_blocking(move || budget::Probe::take(&path, &meta))
            .await
            .expect("probe task"),
    );
    debug!(db = %db.opts.path.display(), "dormant: descriptors closed until the database changes");
    loop {
        tokio::select! {
            _ = notify.notified() => {
                let p = probe.clone();
                if tokio::task::spawn_blocking(move || p.changed()).await.unwrap_or(true) {
                    return true;
                }
            }
            _ = db.handle.sync_requested() => return true,
            _ = async { drop(shutdown.wait_for(|s| *s).await) } => return false,
            _ = async { drop(wanted.wait_for(|w| !*w).await) } => return true,
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
    let rt = Runtime::new(shutdown, mode);
    for db in dbs {
        if let Err(e) = rt.add(db) {
            error!(error = %e, "database not started");
        }
    }
    rt.wait().await
}

/// Why a database could not be added to or removed from a running [`Runtime`].
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{path}: already replicating")]
    AlreadyRegistered { path: String },
    #[error("{path}: not replicating (unknown database)")]
    NotRegistered { path: String },
    #[error("{path}: the replicator is shutting down")]
    ShuttingDown { path: String },
    #[error("{path}: the database's task panicked")]
    Panicked { path: String },
}

/// The databases of a running replicator: added at start, by directory discovery or
/// by the control socket's `register`; removed by discovery (the file was deleted) or
/// `unregister`. Clones share the set.
///
/// Each database runs in its own task with its own stop signal (the process's shutdown
/// reaches every one of them through it), so removing one ends only that run, after its
/// final sync, exactly as a shutdown would.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

struct Inner {
    mode: RunMode,
    shutdown: watch::Receiver<bool>,
    watcher: Mutex<ChangeWatcher>,
    poll: SafetyPoll,
    /// The descriptors databases may hold (see `budget`).
    budget: Arc<budget::Budget>,
    dbs: Mutex<Dbs>,
    /// See [`Runtime::on_add`].
    on_add: Mutex<Option<OnAdd>>,
    /// Woken when a database's task ends or the set changes, for [`Runtime::wait`].
    changed: Notify,
}

#[derive(Default)]
struct Dbs {
    by_path: BTreeMap<String, Entry>,
    /// Set when [`Runtime::wait`] winds down: nothing is added after.
    closed: bool,
    /// Stay up with no database running (a watched directory may get one).
    keep_open: bool,
}

struct Entry {
    path: PathBuf,
    handle: Arc<DbHandle>,
    view: Arc<DbView>,
    notify: Arc<Changes>,
    poll_interval: Duration,
    stop: watch::Sender<bool>,
    /// Set by the task itself before it wakes [`Runtime::wait`]: `JoinHandle::is_finished`
    /// may still be false at that moment, and the wake-up would be lost.
    finished: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<Result<(), ReplicateError>>,
}

/// A database taken out of a running [`Runtime`], with the outcome of its final sync.
pub struct Removed {
    pub path: PathBuf,
    pub handle: Arc<DbHandle>,
    pub outcome: Result<(), ReplicateError>,
}

/// A database taken out of the set, its run stopping (see [`Runtime::detach`]).
pub struct Detached(Entry);

impl Detached {
    /// The database's handle (its figures stay readable).
    pub fn handle(&self) -> &Arc<DbHandle> {
        &self.0.handle
    }

    /// Waits for the run's end (its final sync).
    pub async fn finish(self) -> Result<Removed, RegistryError> {
        let e = self.0;
        let outcome = e.task.await.map_err(|_| RegistryError::Panicked {
            path: e.path.display().to_string(),
        })?;
        // A deleted database's file is held open no longer (nor its disk space).
        crate::sqlite::db::close_kept_of_deleted_files();
        Ok(Removed {
            path: e.path,
            handle: e.handle,
            outcome,
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Runtime {
    /// An empty runtime; call inside the tokio runtime (the change watcher reads its
    /// events there).
    pub fn new(shutdown: watch::Receiver<bool>, mode: RunMode) -> Runtime {
        let poll = SafetyPoll::new();
        Runtime {
            inner: Arc::new(Inner {
                mode,
                shutdown,
                watcher: Mutex::new(ChangeWatcher::new(poll.clone())),
                poll,
                budget: Arc::new(budget::Budget::from_limit()),
                dbs: Mutex::default(),
                on_add: Mutex::new(None),
                changed: Notify::new(),
            }),
        }
    }

    /// Keeps [`Runtime::wait`] going while no database runs (until shutdown), because
    /// databases may still come (a watched directory).
    pub fn keep_open(&self) {
        lock(&self.inner.dbs).keep_open = true;
        self.inner.changed.notify_one();
    }

    /// Sets the hook called for every database added from now on (see [`OnAdd`]). Set
    /// it before the first `add`.
    pub fn on_add(&self, hook: OnAdd) {
        *lock(&self.inner.on_add) = Some(hook);
    }

    /// Starts replicating `db`.
    pub fn add(&self, db: DbRun) -> Result<(), RegistryError> {
        let inner = &self.inner;
        let path = db.opts.path.clone();
        let name = path.display().to_string();
        let mut dbs = lock(&inner.dbs);
        if dbs.closed || *inner.shutdown.borrow() {
            return Err(RegistryError::ShuttingDown { path: name });
        }
        if dbs.by_path.contains_key(&name) {
            return Err(RegistryError::AlreadyRegistered { path: name });
        }
        let notify = Arc::new(Changes::new());
        // Events, or the safety poll where events do not cover the database.
        let pace = db.replicas.iter().map(|r| r.opts.min_upload_interval).min();
        let mut watcher = lock(&inner.watcher);
        watcher.pace_of_watched(pace.unwrap_or(crate::replicate::DEFAULT_PACE));
        watcher.watch(&path, notify.clone());
        drop(watcher);
        let (stop, stop_rx) = watch::channel(false);
        let view = Arc::new(DbView::of(&db));
        if let Some(hook) = lock(&inner.on_add).clone() {
            hook(&db, stop_rx.clone());
        }
        let status = db.status.clone();
        let handle = db.handle.clone();
        let poll_interval = db.opts.poll_interval;
        let weak = Arc::downgrade(inner);
        let finished = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let task_finished = finished.clone();
        // Boxed: the task's future would otherwise hold this one (2.3 KiB) twice, as the
        // captured value and as the future being awaited.
        let run = Box::pin(run_db(
            db,
            notify.clone(),
            stop_rx,
            inner.mode,
            inner.budget.clone(),
        ));
        let task = tokio::spawn(async move {
            let r = run.await;
            // Reporters (/healthz, /status) see a stopped database at once, not when
            // every other database has finished.
            if let Err(e) = &r {
                status.record_failure(format!("replication stopped: {e}"), crate::clock::now_ms());
            }
            task_finished.store(true, std::sync::atomic::Ordering::Release);
            if let Some(inner) = weak.upgrade() {
                inner.changed.notify_one();
            }
            r
        });
        dbs.by_path.insert(
            name,
            Entry {
                path,
                handle,
                view,
                notify,
                poll_interval,
                stop,
                finished,
                task,
            },
        );
        drop(dbs);
        inner.changed.notify_one();
        Ok(())
    }

    /// Stops replicating the database at `path` (as configured, or absolute): its final
    /// sync runs first, as at shutdown.
    pub async fn remove(&self, path: &str) -> Result<Removed, RegistryError> {
        self.detach(path)?.finish().await
    }

    /// The first half of [`Runtime::remove`]: takes the database out of the set at once
    /// (the same path can be added again right away) and asks its run to stop; the
    /// returned [`Detached`] waits for its final sync.
    pub fn detach(&self, path: &str) -> Result<Detached, RegistryError> {
        let inner = &self.inner;
        let entry = {
            let mut dbs = lock(&inner.dbs);
            let key = Self::key_of(&dbs, path);
            key.and_then(|k| dbs.by_path.remove(&k))
        };
        let Some(e) = entry else {
            return Err(RegistryError::NotRegistered {
                path: path.to_string(),
            });
        };
        e.stop.send_replace(true);
        lock(&inner.watcher).unwatch(&e.path, &e.notify);
        inner.changed.notify_one();
        Ok(Detached(e))
    }

    fn key_of(dbs: &Dbs, path: &str) -> Option<String> {
        if dbs.by_path.contains_key(path) {
            return Some(path.to_string());
        }
        let abs = std::path::absolute(path).ok()?.display().to_string();
        dbs.by_path.contains_key(&abs).then_some(abs)
    }

    /// Whether `path` (as configured, or absolute) is replicating.
    pub fn contains(&self, path: &str) -> bool {
        Self::key_of(&lock(&self.inner.dbs), path).is_some()
    }

    /// The handle of the database at `path` (as configured, or absolute).
    pub fn find(&self, path: &str) -> Option<Arc<DbHandle>> {
        let dbs = lock(&self.inner.dbs);
        Self::key_of(&dbs, path).map(|k| dbs.by_path[&k].handle.clone())
    }

    /// Every database with its handle, by path.
    pub fn list(&self) -> Vec<(String, Arc<DbHandle>)> {
        lock(&self.inner.dbs)
            .by_path
            .iter()
            .map(|(p, e)| (p.clone(), e.handle.clone()))
            .collect()
    }

    /// The live figures of every database, by path: what reporters read, so a database
    /// added or removed while running is in them or gone from them at once.
    pub fn views(&self) -> Vec<Arc<DbView>> {
        lock(&self.inner.dbs)
            .by_path
            .values()
            .map(|e| e.view.clone())
            .collect()
    }

    /// Runs until `shutdown` turns true, or until every database has ended (failed, or
    /// done in `once` mode) and none can come; then stops every database (final sync)
    /// and returns the errors of those that failed.
    pub async fn wait(self) -> Vec<ReplicateError> {
        let inner = &self.inner;
        let poll_interval = lock(&inner.dbs)
            .by_path
            .values()
            .map(|e| e.poll_interval)
            .min()
            .unwrap_or(Duration::from_secs(1));
        let poller = (!inner.mode.once).then(|| {
            tokio::spawn(
                inner
                    .poll
                    .clone()
                    .run(poll_interval, inner.shutdown.clone()),
            )
        });
        let mut shutdown = inner.shutdown.clone();
        loop {
            {
                let dbs = lock(&inner.dbs);
                if !dbs.keep_open
                    && dbs
                        .by_path
                        .values()
                        .all(|e| e.finished.load(std::sync::atomic::Ordering::Acquire))
                {
                    break;
                }
            }
            tokio::select! {
                r = shutdown.wait_for(|s| *s) => { drop(r); break; }
                _ = inner.changed.notified() => {}
            }
        }
        let entries: Vec<Entry> = {
            let mut dbs = lock(&inner.dbs);
            dbs.closed = true;
            std::mem::take(&mut dbs.by_path).into_values().collect()
        };
        for e in &entries {
            e.stop.send_replace(true);
        }
        let mut errors = Vec::new();
        for e in entries {
            let db = e.path.display().to_string();
            match e.task.await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => {
                    error!(db = %db, error = %err, "database replication stopped");
                    errors.push(err);
                }
                Err(err) => error!(db = %db, error = %err, "database task panicked"),
            }
        }
        if let Some(p) = poller {
            p.abort();
        }
        errors
    }
}
