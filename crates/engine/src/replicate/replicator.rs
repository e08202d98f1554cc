//! [`DbReplicator`]: the replication of one database from start to shutdown, in steps.
//!
//! Owns the per-database loop and its shutdown: [`DbReplicator::start`] (list every
//! replica, wait for the database, recover the capture position, spawn one uploader per
//! replica), then [`DbReplicator::run`], whose cycle is: pace (the smallest
//! `sync-interval`, and the hold while a replica is still uploading), one capture cycle on
//! a blocking thread, pruning, and a wait for the next reason to look at the WAL. At
//! shutdown (or after one cycle in `once` mode) the final sync waits for upload
//! notifications until every replica holds the last capture, or the time is up.
//!
//! Decisions read from replication progress (hold, prune, floor) are made by
//! `progress`'s methods; this module only calls them at the right moment.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{error, info, warn};

use super::budget::Bucket;
use super::capture::{self, Capture, CaptureError, CaptureOptions, Checkpointer};
use super::handle::DbHandle;
use super::local::{self, LocalDir};
use super::maintain::ReplicaView;
use super::progress::raw;
use super::status::DbStatus;
use super::upload::{Head, Uploader};
use super::{DbOptions, ReplicaSpec, ReplicateError, RunMode, DEFAULT_PACE};
use crate::sqlite::db::{DbConns, DbError};

/// How often local L0 files that every replica holds are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(1);

/// Longest a capture waits for a replica that is still uploading (see
/// [`DbReplicator::pace`]).
const MAX_HOLD: Duration = Duration::from_secs(1);

/// Shortest wait before retrying an interval checkpoint that did not happen.
const CHECKPOINT_RETRY: Duration = Duration::from_secs(10);

/// How soon the pin is re-checked after a capture, in case an application checkpoint
/// waits on it.
const SETTLE_AFTER: Duration = Duration::from_millis(500);

/// How soon the pin is looked at again while an application's checkpoint runs, or just
/// after it was moved for one (`Capture::yield_to_checkpointer`).
const CHECKPOINTER_RECHECK: Duration = Duration::from_millis(5);

/// Wait after a failed capture cycle before the next.
const CAPTURE_RETRY: Duration = Duration::from_secs(1);

/// Longest wait between two listings of a replica unreachable at start.
const MAX_LIST_RETRY: Duration = Duration::from_secs(30);

/// How a run talks to the rest of the process.
pub struct Wiring {
    /// Sync requests in, progress out (see `handle`).
    pub handle: Arc<DbHandle>,
    /// Woken on a WAL change (file-system watcher or the shared safety poll).
    pub changes: Arc<super::detect::Changes>,
    /// Turns true at shutdown.
    pub shutdown: watch::Receiver<bool>,
}

/// One database's replication once started: the capture, the uploaders, and the loop's
/// state between cycles.
pub struct DbReplicator {
    name: String,
    opts: DbOptions,
    mode: RunMode,
    replicas: Vec<ReplicaSpec>,
    io: Wiring,
    status: Arc<DbStatus>,
    local: Arc<LocalDir>,
    /// Away on a blocking thread during a capture step ([`DbReplicator::on_capture`]).
    cap: Option<Capture>,
    /// What the uploaders were last told.
    head: Head,
    head_tx: Arc<watch::Sender<Head>>,
    up_shutdown: watch::Sender<bool>,
    /// Requests for a full-database file from uploaders that cannot catch up otherwise.
    full_rx: mpsc::UnboundedReceiver<()>,
    /// Woken after every upload attempt.
    uploaded: Arc<Notify>,
    uploaders: Vec<JoinHandle<()>>,
    /// Minimum interval between two captures: the smallest `sync-interval`.
    pace: Duration,
    last_capture: Instant,
    /// When the pin is due for a re-check.
    settle_at: Option<Instant>,
    stopping: bool,
    last_prune: Instant,
    /// The request budgets of the replicas that have one (`budget`).
    buckets: Vec<Bucket>,
}

/// Why the loop woke up while waiting for work.
enum Wake {
    Work,
    FullImage,
    Shutdown,
}

impl DbReplicator {
    /// Lists the replicas, waits for the database, recovers the capture position and
    /// spawns the uploaders. `None` when shutdown came first.
    pub async fn start(
        opts: DbOptions,
        replicas: Vec<ReplicaSpec>,
        mut io: Wiring,
        mode: RunMode,
    ) -> Result<Option<DbReplicator>, ReplicateError> {
        let name = opts.path.display().to_string();
        let Some(views) = list_replicas(&name, &replicas, mode, &mut io.shutdown).await? else {
            return Ok(None);
        };
        let Some(conns) = open_db(&opts, mode, &mut io.shutdown).await? else {
            return Ok(None);
        };
        let local = open_local(&name, &opts, &replicas)?;
        let status = io.handle.status().clone();
        let remote_max = views.iter().map(ReplicaView::position).max().flatten();
        let copts = CaptureOptions {
            encoding: opts.encoding,
            min_checkpoint_pages: opts.min_checkpoint_pages,
            checkpoint_interval: opts.checkpoint_interval,
            truncate_pages: opts.truncate_pages,
            max_wal_bytes: opts.max_capture_wal_bytes,
        };
        let (cap_local, cap_status, cap_name) = (local.clone(), status.clone(), name.clone());
        let mut cap = tokio::task::spawn_blocking(move || {
            Capture::open(cap_name, conns, cap_local, cap_status, copts, remote_max)
        })
        .await
        .expect("capture open task")?;
        if mode.force_full_image {
            cap.request_full_image();
        }
        io.handle.set_running(
            replicas
                .iter()
                .map(|r| (r.opts.name.clone(), r.status.clone()))
                .collect(),
        );
        let pace = replicas
            .iter()
            .map(|r| r.opts.min_upload_interval)
            .min()
            .unwrap_or(DEFAULT_PACE);
        let head = Head {
            txid: cap.txid(),
            full_image_txid: None,
            final_sync_retry: None,
        };
        let (head_tx, head_rx) = watch::channel(head);
        let (up_shutdown, up_shutdown_rx) = watch::channel(false);
        let (full_tx, full_rx) = mpsc::unbounded_channel();
        let uploaded = Arc::new(Notify::new());
        let uploaders = replicas
            .iter()
            .zip(views)
            .map(|(r, view)| {
                let u = Uploader {
                    db_name: name.clone(),
                    opts: r.opts.clone(),
                    store: r.store.clone(),
                    local: local.clone(),
                    status: r.status.clone(),
                    head: head_rx.clone(),
                    shutdown: up_shutdown_rx.clone(),
                    need_full_image: full_tx.clone(),
                    capture_pace: pace,
                    uploaded: uploaded.clone(),
                    handle: io.handle.clone(),
                };
                tokio::spawn(u.run(view))
            })
            .collect();
        for r in &replicas {
            r.status.set_budget(r.opts.budget);
        }
        let buckets = replicas
            .iter()
            .filter_map(|r| r.opts.budget)
            .map(|b| Bucket::new(b, Instant::now()))
            .collect();
        Ok(Some(DbReplicator {
            name,
            opts,
            mode,
            replicas,
            io,
            status,
            local,
            cap: Some(cap),
            head,
            head_tx: Arc::new(head_tx),
            up_shutdown,
            full_rx,
            uploaded,
            uploaders,
            pace,
            last_capture: Instant::now() - pace,
            settle_at: None,
            stopping: false,
            last_prune: Instant::now(),
            buckets,
        }))
    }

    /// Cycles until shutdown (one cycle in `once` mode), then the final sync.
    pub async fn run(mut self) -> Result<(), ReplicateError> {
        loop {
            self.pace().await;
            self.cycle().await?;
            self.prune();
            if self.stopping || self.mode.once {
                break;
            }
            self.wait_for_work().await;
        }
        self.final_sync().await
    }

    /// Waits until the next capture may start. Captures are at least `pace` apart, but a
    /// sync request (control socket) is answered at once: its caller waits for it.
    ///
    /// Then, while a replica is still uploading, the capture waits (at most `MAX_HOLD`)
    /// until it has caught up, so a replica slower than the pace receives fewer, larger
    /// files rather than a queue that grows without bound. A replica backing off after
    /// errors holds nothing: captures go on so the WAL can be checkpointed. A pending
    /// sync request does not wait.
    ///
    /// Before that, the request budget: the capture waits until every budgeted replica
    /// has a token (`budget`), so commits made meanwhile wait in the WAL and the next
    /// capture, one upload, carries them all. A sync request, `once` mode and shutdown
    /// do not wait for it.
    async fn pace(&mut self) {
        // Nothing here looks at WAL changes: the capture after takes what the WAL holds.
        // Said while waiting, so the watcher need not read events for us meanwhile.
        let mut not_listening = None;
        let since = self.last_capture.elapsed();
        if since < self.pace && !self.stopping && !self.io.handle.sync_pending() {
            not_listening.get_or_insert_with(|| self.io.changes.not_listening());
            // Shutdown ends the wait too: with a long `sync-interval` (an hour) the final
            // capture would otherwise come up to an interval after the stop request.
            tokio::select! {
                _ = tokio::time::sleep(self.pace - since) => {}
                _ = self.io.handle.sync_requested() => {}
                _ = self.io.shutdown.changed() => self.stopping = true,
            }
        }
        if !self.stopping && !self.mode.once && !self.io.handle.sync_pending() {
            let now = Instant::now();
            let ready = self.buckets.iter_mut().map(|b| b.ready_at(now)).max();
            if let Some(at) = ready.filter(|at| *at > now) {
                not_listening.get_or_insert_with(|| self.io.changes.not_listening());
                tokio::select! {
                    _ = tokio::time::sleep_until(at) => {}
                    _ = self.io.handle.sync_requested() => {}
                    _ = self.io.shutdown.changed() => self.stopping = true,
                }
            }
        }
        if !self.stopping && !self.mode.once && !self.io.handle.sync_pending() {
            let hold_until = Instant::now() + MAX_HOLD;
            while self
                .replicas
                .iter()
                .any(|r| r.status.progress.holds_capture(self.head.txid))
            {
                not_listening.get_or_insert_with(|| self.io.changes.not_listening());
                tokio::select! {
                    _ = self.uploaded.notified() => {}
                    _ = tokio::time::sleep_until(hold_until) => break,
                    _ = self.io.shutdown.changed() => { self.stopping = true; break; }
                }
            }
        }
        self.last_capture = Instant::now();
    }

    /// One capture cycle, and its outcome recorded. An error is returned in `once` mode
    /// and when descriptors ran out; otherwise it is recorded and the next cycle comes
    /// after `CAPTURE_RETRY`.
    async fn cycle(&mut self) -> Result<(), ReplicateError> {
        // Every sync request counted by now is answered by this cycle: it starts after them.
        let serving = self.io.handle.requests_now();
        let settle_due = self.settle_at.is_some_and(|t| t <= Instant::now());
        let started = Instant::now();
        let (produced, result) = self.capture(settle_due).await;
        let produced_any = produced > 0;
        if produced_any {
            let now = Instant::now();
            self.buckets.iter_mut().for_each(|b| b.take(now, produced));
        }
        let error = result.as_ref().err().map(|e| e.to_string());
        self.io.handle.cycle_done(serving, self.head.txid, error);
        let status = &self.status;
        status.syncs.fetch_add(1, Ordering::Relaxed);
        status
            .sync_micros
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        match result {
            Ok((needs_settle, checkpointer)) => {
                status.disk_full.store(false, Ordering::Relaxed);
                status.record_ok();
                if produced_any {
                    self.settle_at = Some(Instant::now() + SETTLE_AFTER);
                } else if settle_due {
                    self.settle_at = needs_settle.then(|| Instant::now() + SETTLE_AFTER);
                }
                if checkpointer == Checkpointer::Running {
                    let soon = Instant::now() + CHECKPOINTER_RECHECK;
                    self.settle_at = Some(self.settle_at.map_or(soon, |t| t.min(soon)));
                }
            }
            Err(e) => {
                status.sync_errors.fetch_add(1, Ordering::Relaxed);
                status.disk_full.store(e.is_disk_full(), Ordering::Relaxed);
                status.record_failure(e.to_string(), local::now_ms());
                let _ = self.local.clear_tmp();
                // Out of descriptors, the run ends and the runtime retries it with a
                // backoff and one line; retrying here would log a line a second.
                if self.mode.once || e.is_out_of_descriptors() {
                    return Err(e.into());
                }
                error!(db = %self.name, error = %e, "capture failed");
                tokio::time::sleep(CAPTURE_RETRY).await;
            }
        }
        Ok(())
    }

    /// Captures what is new, settles the pin when due, checkpoints when needed, on a
    /// blocking thread. Every file written goes to the uploaders as soon as it exists,
    /// even when a later step of the cycle fails. Returns how many files were written,
    /// whether the pin needs another look, and whether an application's checkpoint runs.
    async fn capture(
        &mut self,
        settle_due: bool,
    ) -> (u32, Result<(bool, Checkpointer), CaptureError>) {
        let mut head = self.head;
        let tx = self.head_tx.clone();
        let (head, produced, result) = self
            .on_capture(move |cap| {
                let mut produced = 0;
                let r = (|| -> Result<(bool, Checkpointer), CaptureError> {
                    let mut needs_settle = false;
                    cap.step()?;
                    // Hand the capture to the uploaders now, not after the rest of the
                    // cycle: a checkpoint may take a while, and this file need not wait.
                    produced += publish(cap, &mut head, &tx);
                    // An application's checkpoint may wait on our pin: not for long.
                    let checkpointer = cap.yield_to_checkpointer()?;
                    produced += publish(cap, &mut head, &tx);
                    if settle_due {
                        needs_settle = cap.settle()?;
                    }
                    cap.checkpoint_if_needed()?;
                    Ok((needs_settle, checkpointer))
                })();
                produced += publish(cap, &mut head, &tx);
                (head, produced, r)
            })
            .await;
        self.head = head;
        (produced, result)
    }

    /// Runs `f` on the capture on a blocking thread.
    async fn on_capture<R: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut Capture) -> R + Send + 'static,
    ) -> R {
        let mut cap = self
            .cap
            .take()
            .expect("the capture is back after every step");
        let (cap, r) = tokio::task::spawn_blocking(move || {
            let r = f(&mut cap);
            (cap, r)
        })
        .await
        .expect("capture task");
        self.cap = Some(cap);
        r
    }

    /// Publishes the replicas' floor (what local captures need no fsync for), and drops
    /// local files every replica holds: from memory at once, from disk in batches at most
    /// once every `PRUNE_EVERY` (not one unlink per capture). The newest file stays.
    fn prune(&mut self) {
        let floor = self
            .status
            .progress
            .update_floor(self.replicas.iter().map(|r| &r.status.progress));
        self.local.forget_cached(floor);
        if self.last_prune.elapsed() >= PRUNE_EVERY || self.stopping || self.mode.once {
            self.last_prune = Instant::now();
            let upto = self
                .replicas
                .iter()
                .map(|r| r.status.progress.prunable(self.mode.once))
                .min()
                .flatten();
            if let Some(t) = upto {
                let _ = self.local.prune(t);
            }
        }
    }

    /// Waits for the next reason to look at the WAL: a change notification, a sync
    /// request, a checkpoint or pin re-check falling due, a replica asking for a full
    /// image, or shutdown. An idle database has no timer at all.
    async fn wait_for_work(&mut self) {
        // The interval checkpoint is due only once something was captured since the last
        // one; a failed attempt is retried no sooner than CHECKPOINT_RETRY.
        let retry = Instant::now() + CHECKPOINT_RETRY.min(self.opts.checkpoint_interval);
        let checkpoint = self
            .capture_ref()
            .checkpoint_deadline()
            .map(|d| Instant::from_std(d).max(retry));
        let wake = match (checkpoint, self.settle_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let timer = async {
            match wake {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        let woke = tokio::select! {
            _ = self.io.changes.notified() => Wake::Work,
            _ = self.io.handle.sync_requested() => Wake::Work,
            _ = timer => Wake::Work,
            Some(()) = self.full_rx.recv() => Wake::FullImage,
            _ = self.io.shutdown.changed() => Wake::Shutdown,
        };
        match woke {
            Wake::Work => {}
            Wake::FullImage => {
                while self.full_rx.try_recv().is_ok() {}
                self.capture_mut().request_full_image();
            }
            Wake::Shutdown => self.stopping = true,
        }
    }

    /// Lets every replica catch up with the last capture within the shutdown timeout,
    /// stops the uploaders and closes the capture.
    async fn final_sync(mut self) -> Result<(), ReplicateError> {
        // Uploaders now retry at the shutdown sync interval, starting at once.
        self.head.final_sync_retry = Some(self.opts.shutdown_sync_interval);
        self.head_tx.send_replace(self.head);
        let deadline = Instant::now() + self.opts.shutdown_sync_timeout;
        let caught_up = self.await_replicas(deadline).await?;
        self.up_shutdown.send_replace(true);
        for u in std::mem::take(&mut self.uploaders) {
            let _ = u.await;
        }
        let mut cap = self.cap.take().expect("capture present at shutdown");
        tokio::task::spawn_blocking(move || cap.close())
            .await
            .expect("close task");
        if caught_up {
            info!(db = %self.name, txid = %format!("{:016x}", raw(self.head.txid)), "replicas in sync");
            Ok(())
        } else {
            warn!(db = %self.name, "replicas not in sync at shutdown");
            Err(ReplicateError::ShutdownTimeout {
                db: self.name,
                timeout: self.opts.shutdown_sync_timeout,
            })
        }
    }

    /// Waits on upload notifications until every replica holds the head (true) or
    /// `deadline` passes (false). A replica that needs a full image to catch up gets one.
    async fn await_replicas(&mut self, deadline: Instant) -> Result<bool, ReplicateError> {
        loop {
            if self.in_sync() {
                return Ok(true);
            }
            let woke = tokio::select! {
                _ = self.uploaded.notified() => Wake::Work,
                Some(()) = self.full_rx.recv() => Wake::FullImage,
                _ = tokio::time::sleep_until(deadline) => Wake::Shutdown,
            };
            match woke {
                Wake::Work => {}
                Wake::FullImage => self.full_image().await?,
                Wake::Shutdown => return Ok(self.in_sync()),
            }
        }
    }

    /// Whether every replica holds the head.
    fn in_sync(&self) -> bool {
        self.replicas
            .iter()
            .all(|r| r.status.progress.holds(self.head.txid))
    }

    /// Writes a full-database file and hands it to the uploaders.
    async fn full_image(&mut self) -> Result<(), ReplicateError> {
        let p = self
            .on_capture(|cap| {
                let r = cap.full_image();
                cap.take_produced();
                r
            })
            .await?;
        self.head.txid = Some(p.txid);
        self.head.full_image_txid = Some(p.txid);
        self.head_tx.send_replace(self.head);
        Ok(())
    }

    fn capture_ref(&self) -> &Capture {
        self.cap
            .as_ref()
            .expect("the capture is back after every step")
    }

    fn capture_mut(&mut self) -> &mut Capture {
        self.cap
            .as_mut()
            .expect("the capture is back after every step")
    }
}

/// Lists every replica once (positions are kept in memory afterwards). A replica
/// unreachable at start (store down, network) is listed again with backoff: the next
/// TXID depends on what it holds (C1), so capture waits for the listing. `None` when
/// shutdown came first.
async fn list_replicas(
    name: &str,
    replicas: &[ReplicaSpec],
    mode: RunMode,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Option<Vec<ReplicaView>>, ReplicateError> {
    let mut views = Vec::with_capacity(replicas.len());
    for r in replicas {
        let mut delay = Duration::from_millis(200);
        let view = loop {
            match ReplicaView::load(r.store.as_ref()).await {
                Ok(v) => break v,
                Err(e) if e.is_retryable() && !mode.once => {
                    warn!(db = %name, replica = %r.opts.name, error = %e, retry_in = ?delay, "cannot list replica at start");
                    r.status.set_error(Some(e.to_string()));
                    r.status.upload_errors.fetch_add(1, Ordering::Relaxed);
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = shutdown.changed() => return Ok(None),
                    }
                    delay = (delay * 2).min(MAX_LIST_RETRY);
                }
                Err(source) => {
                    return Err(ReplicateError::Storage {
                        db: name.to_string(),
                        replica: r.opts.name.clone(),
                        source: Box::new(source),
                    })
                }
            }
        };
        r.status.set_error(None);
        views.push(view);
    }
    Ok(Some(views))
}

/// Opens the database, waiting for it to exist (an application may create it after we
/// start; not in `once` mode), which is said once, naming the file and its directory
/// (issue 25: a typo in the path used to wait in silence). Nothing is created meanwhile:
/// the meta directory comes after the database (`open_local`). `None` when shutdown
/// came first.
async fn open_db(
    opts: &DbOptions,
    mode: RunMode,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Option<DbConns>, ReplicateError> {
    let mut said = false;
    loop {
        let (path, busy) = (opts.path.clone(), opts.busy_timeout);
        match tokio::task::spawn_blocking(move || DbConns::open(&path, busy))
            .await
            .expect("open task")
        {
            Ok(c) => return Ok(Some(c)),
            Err(DbError::Missing { .. }) if !mode.once => {
                if !std::mem::replace(&mut said, true) {
                    let dir = opts.path.parent().unwrap_or(std::path::Path::new("."));
                    info!(db = %opts.path.display(), dir = %dir.display(),
                          dir_exists = dir.is_dir(), every = ?opts.poll_interval,
                          "database does not exist yet; waiting for the database to appear");
                }
                tokio::select! {
                    _ = tokio::time::sleep(opts.poll_interval) => {}
                    _ = shutdown.changed() => return Ok(None),
                }
            }
            Err(e) => return Err(capture::CaptureError::Db(e).into()),
        }
    }
}

/// Opens the local meta directory. Every copy we write gets the database's mode, so
/// none is readable by more users than the database (security issue 17): the meta
/// directory, made only now that the database exists, and the replicas' local files.
fn open_local(
    name: &str,
    opts: &DbOptions,
    replicas: &[ReplicaSpec],
) -> Result<Arc<LocalDir>, ReplicateError> {
    let file_mode =
        crate::fsutil::FileMode::of_db(&opts.path).map_err(|source| ReplicateError::DbMode {
            db: name.to_string(),
            source,
        })?;
    for r in replicas {
        r.store.set_file_mode(file_mode);
    }
    let local =
        LocalDir::open(&opts.meta_dir, file_mode).map_err(|source| ReplicateError::Local {
            db: name.to_string(),
            dir: opts.meta_dir.clone(),
            source,
        })?;
    Ok(Arc::new(local))
}

/// Hands the files `cap` wrote since the last call to the uploaders (a new `head`).
/// Returns how many there were.
fn publish(cap: &mut Capture, head: &mut Head, tx: &watch::Sender<Head>) -> u32 {
    let produced = cap.take_produced();
    for p in &produced {
        head.txid = Some(p.txid);
        if p.full_image {
            head.full_image_txid = Some(p.txid);
        }
    }
    if !produced.is_empty() {
        tx.send_replace(*head);
    }
    produced.len() as u32
}

#[cfg(test)]
mod tests {
    //! The loop driven with tokio's paused clock: time moves only when every task waits
    //! (and not while a blocking capture or file write runs), so pacing and shutdown are
    //! checked in virtual time, exactly, without waiting for real seconds.

    use std::ops::Range;
    use std::time::SystemTime;

    use async_trait::async_trait;
    use bytes::Bytes;
    use ltx::{Level, TxId};

    use super::*;
    use crate::replicate::budget::UploadBudget;
    use crate::replicate::status::ReplicaStatus;
    use crate::replicate::{run_database, ReplicaOptions};
    use crate::storage::file::FileStore;
    use crate::storage::{LtxInfo, LtxKey, ReplicaStore, StorageError};

    /// A file store whose every upload takes `delay` (of the paused clock), and whose
    /// next `failures` uploads fail (a transient error).
    struct SlowStore {
        inner: FileStore,
        delay: Duration,
        failures: std::sync::atomic::AtomicU64,
    }

    #[async_trait]
    impl ReplicaStore for SlowStore {
        fn location(&self) -> &str {
            self.inner.location()
        }
        async fn list(&self, level: Level) -> Result<Vec<LtxInfo>, StorageError> {
            self.inner.list(level).await
        }
        async fn get(
            &self,
            key: &LtxKey,
            range: Option<Range<u64>>,
        ) -> Result<Bytes, StorageError> {
            self.inner.get(key, range).await
        }
        async fn put(
            &self,
            key: &LtxKey,
            data: Bytes,
            created: SystemTime,
        ) -> Result<(), StorageError> {
            tokio::time::sleep(self.delay).await;
            let fail = self
                .failures
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
            if fail.is_ok() {
                return Err(StorageError::transient(
                    self.location().to_string(),
                    key.to_string(),
                    "injected failure",
                ));
            }
            self.inner.put(key, data, created).await
        }
        async fn delete(&self, keys: &[LtxKey]) -> Result<(), StorageError> {
            self.inner.delete(keys).await
        }
    }

    /// One database in a temp dir, replicated to one file replica.
    struct Rig {
        _dir: tempfile::TempDir,
        app: rusqlite::Connection,
        status: Arc<DbStatus>,
        replica: Arc<ReplicaStatus>,
        changes: Arc<crate::replicate::detect::Changes>,
        stop: watch::Sender<bool>,
        run: Option<JoinHandle<Result<(), ReplicateError>>>,
        store: Arc<SlowStore>,
        handle: Arc<DbHandle>,
    }

    impl Rig {
        /// Starts replication with the replica's `sync-interval` at `pace`, each upload
        /// taking `upload_delay`.
        fn start(pace: Duration, upload_delay: Duration, shutdown_timeout: Duration) -> Rig {
            Rig::start_with(pace, upload_delay, shutdown_timeout, None)
        }

        /// As [`Rig::start`], with the replica's request budget.
        fn start_with(
            pace: Duration,
            upload_delay: Duration,
            shutdown_timeout: Duration,
            budget: Option<UploadBudget>,
        ) -> Rig {
            let dir = tempfile::tempdir().unwrap();
            let db = dir.path().join("app.db");
            let app = rusqlite::Connection::open(&db).unwrap();
            app.execute_batch(
                "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0;
                 CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);",
            )
            .unwrap();
            let store = Arc::new(SlowStore {
                inner: FileStore::new(dir.path().join("replica")),
                delay: upload_delay,
                failures: Default::default(),
            });
            let mut ropts = ReplicaOptions::with_defaults("file");
            ropts.min_upload_interval = pace;
            ropts.budget = budget;
            let replica = Arc::new(ReplicaStatus::default());
            let spec = ReplicaSpec {
                opts: ropts,
                store: store.clone(),
                status: replica.clone(),
            };
            let mut opts = DbOptions::with_defaults(db.clone());
            opts.shutdown_sync_timeout = shutdown_timeout;
            let status = Arc::new(DbStatus::default());
            let handle = Arc::new(DbHandle::new(db.display().to_string(), status.clone()));
            let changes = Arc::new(crate::replicate::detect::Changes::new());
            let (stop, stop_rx) = watch::channel(false);
            let run = tokio::spawn(run_database(
                opts,
                vec![spec],
                handle.clone(),
                changes.clone(),
                stop_rx,
                RunMode::default(),
            ));
            Rig {
                _dir: dir,
                app,
                status,
                replica,
                changes,
                stop,
                run: Some(run),
                store,
                handle,
            }
        }

        /// Commits one row and tells the loop, as the WAL watcher would.
        fn commit(&self, v: &str) {
            self.app
                .execute("INSERT INTO t(v) VALUES (?1)", [v])
                .unwrap();
            self.changes.notify_one();
        }

        /// Asks the loop to stop and returns how its run ended.
        async fn stop(&mut self) -> Result<(), ReplicateError> {
            self.stop.send_replace(true);
            self.run.take().expect("running").await.unwrap()
        }

        fn local(&self) -> Option<TxId> {
            self.status.local_txid()
        }

        fn replicated(&self) -> Option<TxId> {
            self.replica.replicated()
        }

        fn uploads(&self) -> u64 {
            self.replica.uploads.load(Ordering::Relaxed)
        }

        /// Waits (in virtual time, at most a minute) until `cond` holds.
        async fn until(&self, what: &str, cond: impl Fn(&Rig) -> bool) {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !cond(self) {
                assert!(
                    Instant::now() < deadline,
                    "timed out waiting for {what}: local {:?}, replicated {:?}",
                    self.local(),
                    self.replicated()
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }

        /// The newest L0 file on the replica, read back from the store itself.
        async fn replica_head(&self) -> Option<TxId> {
            let store = FileStore::new(self._dir.path().join("replica"));
            let files = store.list(Level::L0).await.unwrap();
            files.iter().map(|f| f.key.max).max()
        }
    }

    fn caught_up(r: &Rig) -> bool {
        r.local().is_some() && r.replica.progress.holds(r.local())
    }

    #[tokio::test(start_paused = true)]
    async fn commits_within_one_sync_interval_give_one_upload() {
        let pace = Duration::from_secs(1);
        let mut r = Rig::start(pace, Duration::ZERO, Duration::from_secs(30));
        r.until("the first capture uploaded", caught_up).await;
        r.commit("a");
        r.until("the commit uploaded", |r| caught_up(r) && r.uploads() >= 2)
            .await;
        let (txid, uploads, captured_at) = (r.local(), r.uploads(), Instant::now());

        // Two commits 100 ms apart, both within the interval since the last capture.
        r.commit("b");
        tokio::time::sleep(Duration::from_millis(100)).await;
        r.commit("c");
        r.until("the next upload", |r| r.uploads() > uploads).await;
        r.until("the replica caught up", caught_up).await;
        assert_eq!(r.uploads(), uploads + 1, "one upload for both commits");
        assert_eq!(r.local(), txid.unwrap().next().ok(), "one capture for both");
        assert!(
            captured_at.elapsed() <= pace + Duration::from_millis(50),
            "no later than one interval after the last capture: {:?}",
            captured_at.elapsed()
        );
        assert_eq!(r.replica_head().await, r.local());

        r.stop().await.unwrap();
    }

    /// Commits every `every` for `window`; returns how many.
    async fn write_for(r: &Rig, every: Duration, window: Duration) -> u32 {
        let end = Instant::now() + window;
        let mut n = 0;
        while Instant::now() < end {
            r.commit(&format!("row {n}"));
            n += 1;
            tokio::time::sleep(every).await;
        }
        n
    }

    #[tokio::test(start_paused = true)]
    async fn sustained_writes_upload_within_the_budget_and_each_upload_carries_all() {
        let budget = UploadBudget {
            per_sec: 2.0,
            burst: 4,
        };
        let pace = Duration::from_millis(20);
        let mut r = Rig::start_with(pace, Duration::ZERO, Duration::from_secs(30), Some(budget));
        r.until("the first capture uploaded", caught_up).await;
        let before = r.uploads();
        // 200 tx/s for 10 s: without the budget, one upload per 20 ms capture (500).
        let window = Duration::from_secs(10);
        let commits = write_for(&r, Duration::from_millis(5), window).await;
        r.until("the replica caught up", caught_up).await;
        let uploads = r.uploads() - before;
        // The first capture took one token; then rate x window + what is left of the
        // burst, and one more for the capture that was waiting at the end.
        assert!(
            uploads <= 2 * 10 + 4 + 1,
            "{uploads} uploads for {commits} commits in {window:?}"
        );
        assert!(uploads >= 2 * 10, "{uploads}: the budget was used");
        // Everything shipped: the replica's newest file is the last capture, and every
        // commit is in a capture (no commit left behind by a waiting capture).
        assert_eq!(r.replica_head().await, r.local());
        let rows: u32 = r
            .app
            .query_row("SELECT count(*) FROM t", [], |row| row.get(0))
            .unwrap();
        assert_eq!(rows, commits);
        r.stop().await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_sparse_writer_has_each_commit_shipped_at_the_sync_interval_pace() {
        let pace = Duration::from_millis(20);
        let budget = UploadBudget {
            per_sec: 1.0,
            burst: 20,
        };
        let mut r = Rig::start_with(pace, Duration::ZERO, Duration::from_secs(30), Some(budget));
        r.until("the first capture uploaded", caught_up).await;
        // One commit every 1.5 s, then a burst of 10 commits 30 ms apart: each is on the
        // replica within one sync-interval (and a poll of the test's 5 ms).
        for i in 0..10 {
            let at = Instant::now();
            r.commit(&format!("sparse {i}"));
            r.until("the commit uploaded", |r| {
                caught_up(r) && r.local().is_some()
            })
            .await;
            assert!(
                at.elapsed() <= pace + Duration::from_millis(10),
                "{:?}",
                at.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
        for i in 0..10 {
            let at = Instant::now();
            r.commit(&format!("burst {i}"));
            let want = r.local();
            r.until("the commit captured", |r| r.local() > want).await;
            r.until("the commit uploaded", caught_up).await;
            assert!(
                at.elapsed() <= pace + Duration::from_millis(10),
                "{:?}",
                at.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        assert_eq!(r.replica_head().await, r.local());
        r.stop().await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_sync_request_does_not_wait_for_the_budget() {
        let budget = UploadBudget {
            per_sec: 0.01,
            burst: 1,
        };
        let mut r = Rig::start_with(
            DEFAULT_PACE,
            Duration::ZERO,
            Duration::from_secs(30),
            Some(budget),
        );
        r.until("the first capture uploaded", caught_up).await;
        // The bucket is empty for 100 s now; a commit waits, a sync request does not.
        r.commit("a");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(r.local() == r.replicated(), "the commit waits for a token");
        let handle = r.handle.clone();
        let out = handle.sync(true, Duration::from_secs(5)).await.unwrap();
        assert!(out.captured_new);
        assert!(caught_up(&r));
        // And the final sync at shutdown does not wait either.
        r.commit("b");
        tokio::time::sleep(Duration::from_secs(2)).await;
        let before = r.local();
        r.stop().await.unwrap();
        assert!(r.local() > before, "captured at shutdown");
        assert_eq!(r.replica_head().await, r.local());
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_within_a_long_sync_interval_captures_and_uploads_at_once() {
        let mut r = Rig::start(
            Duration::from_secs(3600),
            Duration::ZERO,
            Duration::from_secs(30),
        );
        r.until("the first capture uploaded", caught_up).await;
        // A commit within the hour: its capture waits for the interval, not the stop.
        r.commit("a");
        tokio::time::sleep(Duration::from_secs(2)).await;
        let before = r.local();
        let stopped_at = Instant::now();
        r.stop().await.unwrap();
        let took = stopped_at.elapsed();
        assert!(r.local() > before, "captured at shutdown");
        assert!(caught_up(&r), "the replica holds the last capture");
        assert_eq!(r.replica_head().await, r.local());
        // Virtual time: without the stop in the pace wait, this is the rest of the hour.
        assert!(took < Duration::from_secs(5), "the stop took {took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn final_sync_waits_for_the_upload_in_flight() {
        let upload = Duration::from_secs(5);
        let mut r = Rig::start(DEFAULT_PACE, upload, Duration::from_secs(30));
        r.until("the first capture uploaded", caught_up).await;
        r.commit("a");
        r.until("the commit captured, its upload in flight", |r| {
            r.local() > r.replicated() && r.replica.progress.is_uploading()
        })
        .await;
        // When the upload lands, seen from outside the loop.
        let (replica, last) = (r.replica.clone(), r.local());
        let landed = tokio::spawn(async move {
            while !replica.progress.holds(last) {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Instant::now()
        });
        let stopped_at = Instant::now();
        r.stop().await.unwrap();
        let (returned, landed) = (Instant::now(), landed.await.unwrap());
        assert!(caught_up(&r), "the replica holds the last capture");
        assert_eq!(r.replica_head().await, r.local());
        // In flight at the stop; held by the replica when the run returned (checked
        // above), seen by the watcher within its 1 ms poll.
        assert!(
            landed > stopped_at && landed <= returned + Duration::from_millis(1),
            "stopped at {stopped_at:?}, upload landed at {landed:?}, returned at {returned:?}"
        );
        // Well within the shutdown timeout: it waited for the upload, not the deadline
        // (the uploader may finish its maintenance, one more 5 s put, before it stops).
        assert!(
            returned - stopped_at <= 2 * upload,
            "{:?}",
            returned - stopped_at
        );
    }

    #[tokio::test(start_paused = true)]
    async fn final_sync_waits_for_a_replica_retrying_after_an_error() {
        let mut r = Rig::start(DEFAULT_PACE, Duration::ZERO, Duration::from_secs(30));
        r.until("the first capture uploaded", caught_up).await;
        // Two failures: the uploader's own last attempt at shutdown fails too, so only
        // the final sync's wait lets the retry after it land.
        r.store.failures.store(2, Ordering::SeqCst);
        r.commit("a");
        r.until("a failed upload, the uploader backing off", |r| {
            r.replica.upload_errors.load(Ordering::Relaxed) >= 1
        })
        .await;
        assert!(!caught_up(&r));
        // Stopping now must not cut the retry short: the final sync waits for it.
        r.stop().await.unwrap();
        assert!(caught_up(&r), "the replica holds the last capture");
        assert_eq!(r.replica_head().await, r.local());
    }

    #[tokio::test(start_paused = true)]
    async fn final_sync_gives_up_at_the_shutdown_timeout() {
        let timeout = Duration::from_secs(2);
        let mut r = Rig::start(DEFAULT_PACE, Duration::from_secs(10), timeout);
        r.until("the first capture uploaded", caught_up).await;
        r.commit("a");
        r.until("the commit captured", |r| r.local() > r.replicated())
            .await;
        let stopped_at = Instant::now();
        let e = r.stop().await.unwrap_err();
        assert!(matches!(e, ReplicateError::ShutdownTimeout { .. }), "{e}");
        // The deadline, then the uploader's own stop after its put.
        assert!(
            stopped_at.elapsed() >= timeout,
            "{:?}",
            stopped_at.elapsed()
        );
    }
}
