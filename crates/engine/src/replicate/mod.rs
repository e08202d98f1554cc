//! Replication of one database: detect commits, capture them as L0 files, upload them
//! to every replica, keep each replica compacted and pruned.
//!
//! Data flow: `detect` (WAL change notifications) → `capture` (WAL frames → local L0
//! file, on a blocking thread) → `upload` (one task per replica, each at its own
//! position) → `maintain` (compaction, snapshots, retention per replica).
//!
//! This module owns the per-database loop ([`run_database`]) that ties them together
//! and its shutdown: a final capture, then uploads until caught up or out of time.
//!
//! Pacing: captures are at least `DEFAULT_PACE` (the smallest `sync-interval`) apart, and
//! while a replica is still uploading earlier files the next capture waits for it (at
//! most `MAX_HOLD`): a replica slower than the pace gets fewer, larger files, so its lag
//! stays about two uploads instead of growing with a queue. Each replica still makes one
//! request at a time, so the replica holds a contiguous TXID prefix at every instant.
//! Every step feeds `status` (live figures); `report` copies them out for reporters.

pub mod capture;
pub mod compaction_check;
pub mod detect;
pub mod handle;
pub mod local;
pub mod maintain;
pub mod meta;
pub mod recover;
pub mod report;
pub mod status;
pub mod upload;

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use ltx::PageEncoding;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{error, info, warn};

use crate::sqlite::db::DbConns;
use crate::storage::ReplicaStore;
use capture::{Capture, CaptureOptions};
use handle::{DbHandle, StopOnDrop};
use local::LocalDir;
use maintain::ReplicaView;
use status::ReplicaStatus;
use upload::{Head, Uploader};

/// Settings of one replica of one database.
#[derive(Clone, Debug)]
pub struct ReplicaOptions {
    pub name: String,
    /// Minimum time between two uploads: the pace that bounds requests per database.
    pub min_upload_interval: Duration,
    /// Compaction intervals of levels 1..=n.
    pub levels: Vec<Duration>,
    pub snapshot_interval: Duration,
    pub snapshot_retention: Duration,
    pub l0_retention: Duration,
    pub l0_retention_check_interval: Duration,
    pub retention_enabled: bool,
    pub encoding: PageEncoding,
    /// `verify-compaction`: read each merged file back and check it against its inputs
    /// before recording it (`compaction_check`).
    pub verify_compaction: bool,
    /// `auto-recover`: a replica whose history cannot be trusted restarts it from a new
    /// snapshot (`recover`) instead of failing.
    pub auto_recover: bool,
    /// `max-sync-ltx-files`: at most this many files back to back, then a pause of
    /// `min_upload_interval` (a catch-up after an outage is a paced series of bursts).
    /// `None`: no limit.
    pub max_batch: Option<u32>,
}

impl ReplicaOptions {
    /// Litestream's defaults for housekeeping; our default pace.
    pub fn with_defaults(name: impl Into<String>) -> ReplicaOptions {
        ReplicaOptions {
            name: name.into(),
            min_upload_interval: DEFAULT_PACE,
            levels: vec![
                Duration::from_secs(30),
                Duration::from_secs(300),
                Duration::from_secs(3600),
            ],
            snapshot_interval: Duration::from_secs(24 * 3600),
            snapshot_retention: Duration::from_secs(24 * 3600),
            l0_retention: Duration::from_secs(300),
            l0_retention_check_interval: Duration::from_secs(15),
            retention_enabled: true,
            encoding: PageEncoding::Block,
            verify_compaction: false,
            auto_recover: false,
            max_batch: None,
        }
    }
}

/// Default minimum interval between two captures (and so between two uploads) of one
/// database: at most 50 L0 files per second under continuous writes, while a commit
/// after a quiet spell is captured at once.
pub const DEFAULT_PACE: Duration = Duration::from_millis(20);

/// Settings of one database.
#[derive(Clone, Debug)]
pub struct DbOptions {
    pub path: PathBuf,
    pub meta_dir: PathBuf,
    pub busy_timeout: Duration,
    pub min_checkpoint_pages: u32,
    /// Emergency TRUNCATE checkpoint once the WAL file holds this many pages
    /// (`capture::CaptureOptions::truncate_pages`).
    pub truncate_pages: u32,
    /// One L0 file covers at most about this many WAL bytes; `None`: no limit
    /// (`capture::CaptureOptions::max_wal_bytes`).
    pub max_capture_wal_bytes: Option<u64>,
    pub checkpoint_interval: Duration,
    /// Safety poll of the WAL in case a file-system notification is missed (one shared
    /// poll for every database, `detect::SafetyPoll`: a `stat`, no SQLite, per tick).
    pub poll_interval: Duration,
    pub encoding: PageEncoding,
    pub shutdown_sync_timeout: Duration,
    /// During the final sync, the pause between a replica's retries after a failed upload
    /// (instead of its growing backoff). Default 500 ms, as Litestream's.
    pub shutdown_sync_interval: Duration,
}

impl DbOptions {
    pub fn with_defaults(path: PathBuf) -> DbOptions {
        DbOptions {
            meta_dir: local::default_meta_dir(&path),
            path,
            busy_timeout: Duration::from_secs(1),
            min_checkpoint_pages: 1000,
            truncate_pages: capture::DEFAULT_TRUNCATE_PAGES,
            max_capture_wal_bytes: None,
            checkpoint_interval: Duration::from_secs(60),
            poll_interval: Duration::from_secs(1),
            encoding: PageEncoding::Block,
            shutdown_sync_timeout: Duration::from_secs(30),
            shutdown_sync_interval: Duration::from_millis(500),
        }
    }
}

/// One replica ready to run.
pub struct ReplicaSpec {
    pub opts: ReplicaOptions,
    pub store: Arc<dyn ReplicaStore>,
    pub status: Arc<ReplicaStatus>,
}

/// How a database run should behave.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunMode {
    /// Capture and upload once, then return (`replicate -once`).
    pub once: bool,
    /// Start with a full-database file (`-force-snapshot`).
    pub force_full_image: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplicateError {
    #[error(transparent)]
    Capture(#[from] capture::CaptureError),
    #[error("{db}: local meta directory {dir}: {source}")]
    Local {
        db: String,
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("{db}: reading the database's permission bits: {source}")]
    DbMode { db: String, source: std::io::Error },
    #[error("{db}: replica {replica}: {source}")]
    Storage {
        db: String,
        replica: String,
        source: crate::storage::StorageError,
    },
    #[error("{db}: replicas did not catch up within {timeout:?} at shutdown")]
    ShutdownTimeout { db: String, timeout: Duration },
}

/// How often local L0 files that every replica holds are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(1);

/// Longest a capture waits for a replica that is still uploading (see `run_database`).
const MAX_HOLD: Duration = Duration::from_secs(1);

/// Shortest wait before retrying an interval checkpoint that did not happen.
const CHECKPOINT_RETRY: Duration = Duration::from_secs(10);

/// Deletes the local L0 files every replica already holds and has compacted into level 1
/// (never the newest): compaction then reads its inputs locally. In `once` mode, where no
/// compaction may come, holding is enough.
fn prune_replicated(local: &LocalDir, replicas: &[ReplicaSpec], once: bool) {
    let min_replicated = replicas
        .iter()
        .map(|r| {
            let held = r.status.replicated();
            if once {
                held
            } else {
                held.min(r.status.compacted())
            }
        })
        .min()
        .unwrap_or(0);
    if let Ok(t) = ltx::TxId::new(min_replicated) {
        let _ = local.prune(t);
    }
}

/// Hands the files `cap` wrote since the last call to the uploaders (a new `head`).
/// Returns whether there were any.
fn publish(cap: &mut Capture, head: &mut Head, tx: &watch::Sender<Head>) -> bool {
    let produced = cap.take_produced();
    for p in &produced {
        head.txid = p.txid.get();
        if p.full_image {
            head.full_image_txid = p.txid.get();
        }
    }
    if !produced.is_empty() {
        tx.send_replace(*head);
    }
    !produced.is_empty()
}

/// Replicates one database until `shutdown` turns true (or once, in `once` mode).
/// `handle` carries sync requests in and progress out (see `handle`); it is marked
/// stopped when this returns.
pub async fn run_database(
    opts: DbOptions,
    replicas: Vec<ReplicaSpec>,
    handle: Arc<DbHandle>,
    changes: Arc<tokio::sync::Notify>,
    mut shutdown: watch::Receiver<bool>,
    mode: RunMode,
) -> Result<(), ReplicateError> {
    let name = opts.path.display().to_string();
    let status = handle.status().clone();
    handle.set_starting();
    let _stopped = StopOnDrop(handle.clone());
    // One listing per replica at start; positions are kept in memory afterwards.
    let mut remote_max = 0;
    let mut views = Vec::new();
    for r in &replicas {
        // A replica unreachable at start (store down, network) is listed again with backoff:
        // the next TXID depends on what it holds (C1), so capture waits for the listing.
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
                        _ = shutdown.changed() => return Ok(()),
                    }
                    delay = (delay * 2).min(Duration::from_secs(30));
                }
                Err(source) => {
                    return Err(ReplicateError::Storage {
                        db: name.clone(),
                        replica: r.opts.name.clone(),
                        source,
                    })
                }
            }
        };
        r.status.set_error(None);
        remote_max = remote_max.max(view.max_txid());
        views.push(view);
    }
    // Wait for the database to exist (an application may create it after we start).
    let conns = loop {
        let (path, busy) = (opts.path.clone(), opts.busy_timeout);
        match tokio::task::spawn_blocking(move || DbConns::open(&path, busy))
            .await
            .expect("open task")
        {
            Ok(c) => break c,
            Err(crate::sqlite::db::DbError::Missing { .. }) if !mode.once => {
                tokio::select! {
                    _ = tokio::time::sleep(opts.poll_interval) => {}
                    _ = shutdown.changed() => return Ok(()),
                }
            }
            Err(e) => return Err(capture::CaptureError::Db(e).into()),
        }
    };
    // Every copy we write gets the database's mode, so none is readable by more users
    // than the database (security issue 17): the meta directory, made only now that the
    // database exists, and the replicas' local files.
    let file_mode =
        crate::fsutil::FileMode::of_db(&opts.path).map_err(|source| ReplicateError::DbMode {
            db: name.clone(),
            source,
        })?;
    for r in &replicas {
        r.store.set_file_mode(file_mode);
    }
    let local = Arc::new(LocalDir::open(&opts.meta_dir, file_mode).map_err(|source| {
        ReplicateError::Local {
            db: name.clone(),
            dir: opts.meta_dir.clone(),
            source,
        }
    })?);
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
    handle.set_running(
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

    let (head_tx, head_rx) = watch::channel(Head {
        txid: cap.txid(),
        full_image_txid: 0,
        final_sync_retry: None,
    });
    let head_tx = Arc::new(head_tx);
    let (up_shutdown_tx, up_shutdown_rx) = watch::channel(false);
    let (full_tx, mut full_rx) = mpsc::unbounded_channel();
    let uploaded = Arc::new(tokio::sync::Notify::new());
    let mut uploaders = Vec::new();
    for (r, view) in replicas.iter().zip(views) {
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
            handle: handle.clone(),
        };
        uploaders.push(tokio::spawn(u.run(view)));
    }

    let mut head = *head_rx.borrow();
    let mut last_capture = Instant::now() - pace;
    let mut settle_at: Option<Instant> = None;
    let mut stopping = false;
    let mut last_prune = Instant::now();
    loop {
        // One capture cycle on a blocking thread.
        // A sync request (control socket) is answered at once: its caller asked for
        // this capture and waits for it. At most one capture per request, and a capture
        // that finds nothing new writes no file.
        let since = last_capture.elapsed();
        if since < pace && !handle.sync_pending() {
            tokio::select! {
                _ = tokio::time::sleep(pace - since) => {}
                _ = handle.sync_requested() => {}
            }
        }
        // Batch while a replica is still uploading: the next capture waits (at most
        // MAX_HOLD) until it has caught up, so a replica slower than the pace receives
        // fewer, larger files rather than a queue that grows without bound. A replica
        // backing off after errors holds nothing: captures go on so the WAL can be
        // checkpointed. A pending sync request does not wait: its caller is waiting.
        if !stopping && !mode.once && !handle.sync_pending() {
            let hold_until = Instant::now() + MAX_HOLD;
            while replicas.iter().any(|r| {
                r.status.uploading.load(Ordering::Acquire) && r.status.replicated() < head.txid
            }) {
                tokio::select! {
                    _ = uploaded.notified() => {}
                    _ = tokio::time::sleep_until(hold_until) => break,
                    _ = shutdown.changed() => { stopping = true; break; }
                }
            }
        }
        last_capture = Instant::now();
        // Every sync request counted by now is answered by this cycle: it starts after them.
        let serving = handle.requests_now();
        let settle_due = settle_at.is_some_and(|t| t <= Instant::now());
        let cycle_started = Instant::now();
        let cycle_tx = head_tx.clone();
        let (c, cycle_head, produced_any, result) = tokio::task::spawn_blocking(move || {
            let mut produced_any = false;
            let r = (|| -> Result<bool, capture::CaptureError> {
                let mut needs_settle = false;
                cap.step()?;
                // Hand the capture to the uploaders now, not after the rest of the cycle:
                // a checkpoint may take a while, and this file need not wait for it.
                produced_any |= publish(&mut cap, &mut head, &cycle_tx);
                if settle_due {
                    needs_settle = cap.settle()?;
                }
                cap.checkpoint_if_needed()?;
                Ok(needs_settle)
            })();
            // Whatever the cycle wrote goes to the uploaders, even when a later step of the
            // same cycle failed: those files are on local disk and are the new head.
            produced_any |= publish(&mut cap, &mut head, &cycle_tx);
            (cap, head, produced_any, r)
        })
        .await
        .expect("capture task");
        cap = c;
        head = cycle_head;
        handle.cycle_done(
            serving,
            head.txid,
            result.as_ref().err().map(|e| e.to_string()),
        );
        status.syncs.fetch_add(1, Ordering::Relaxed);
        status.sync_micros.fetch_add(
            cycle_started.elapsed().as_micros() as u64,
            Ordering::Relaxed,
        );
        match result {
            Ok(needs_settle) => {
                status.disk_full.store(false, Ordering::Relaxed);
                status.record_ok();
                if produced_any {
                    // Re-check the pin shortly in case an application checkpoint waits on it.
                    settle_at = Some(Instant::now() + Duration::from_millis(500));
                } else if settle_due {
                    settle_at = needs_settle.then(|| Instant::now() + Duration::from_millis(500));
                }
            }
            Err(e) => {
                status.sync_errors.fetch_add(1, Ordering::Relaxed);
                status.disk_full.store(e.is_disk_full(), Ordering::Relaxed);
                status.record_failure(e.to_string(), local::now_ms());
                error!(db = %name, error = %e, "capture failed");
                let _ = local.clear_tmp();
                if mode.once {
                    return Err(e.into());
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        // The interval checkpoint is due only once something was captured since the last
        // one; a failed attempt is retried no sooner than CHECKPOINT_RETRY.
        let next_checkpoint_check = cap.checkpoint_deadline().map(|d| {
            Instant::from_std(d)
                .max(Instant::now() + CHECKPOINT_RETRY.min(opts.checkpoint_interval))
        });
        // Local files every replica holds and has compacted are no longer needed (the
        // newest stays). Pruned in batches, at most once a second, not one unlink per capture.
        let floor = replicas
            .iter()
            .map(|r| r.status.replicated())
            .min()
            .unwrap_or(0);
        status.replicated_floor.store(floor, Ordering::Release);
        local.forget_cached(floor);
        if last_prune.elapsed() >= PRUNE_EVERY || stopping || mode.once {
            last_prune = Instant::now();
            prune_replicated(&local, &replicas, mode.once);
        }
        if stopping || mode.once {
            break;
        }
        // Wait for the next reason to look at the WAL: a change notification (from the
        // file-system watcher or the shared safety poll in `detect`), a checkpoint or pin
        // re-check falling due, a replica asking for a full image, or shutdown. An idle
        // database has no timer at all.
        let wake = match (next_checkpoint_check, settle_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let timer = async {
            match wake {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = changes.notified() => {}
            _ = handle.sync_requested() => {}
            _ = timer => {}
            Some(()) = full_rx.recv() => {
                while full_rx.try_recv().is_ok() {}
                cap.request_full_image();
            }
            _ = shutdown.changed() => { stopping = true; }
        }
    }

    // Final sync: let every replica catch up with the last capture, within the timeout.
    // Uploaders now retry at the shutdown sync interval, starting at once.
    head.final_sync_retry = Some(opts.shutdown_sync_interval);
    head_tx.send_replace(head);
    let final_txid = head.txid;
    let deadline = Instant::now() + opts.shutdown_sync_timeout;
    let mut caught_up = false;
    while Instant::now() < deadline {
        if replicas.iter().all(|r| r.status.replicated() >= final_txid) {
            caught_up = true;
            break;
        }
        if let Ok(Some(())) = tokio::time::timeout(Duration::from_millis(10), full_rx.recv()).await
        {
            // A replica needs a full image to catch up: give it one.
            let (c, r) = tokio::task::spawn_blocking(move || {
                let r = cap.full_image();
                (cap, r)
            })
            .await
            .expect("capture task");
            cap = c;
            cap.take_produced();
            let p = r?;
            head.txid = p.txid.get();
            head.full_image_txid = p.txid.get();
            head_tx.send_replace(head);
        }
    }
    let final_txid = head.txid;
    if !caught_up {
        caught_up = replicas.iter().all(|r| r.status.replicated() >= final_txid);
    }
    up_shutdown_tx.send_replace(true);
    for u in uploaders {
        let _ = u.await;
    }
    tokio::task::spawn_blocking(move || cap.close())
        .await
        .expect("close task");
    if caught_up {
        info!(db = %name, txid = %format!("{final_txid:016x}"), "replicas in sync");
        Ok(())
    } else {
        warn!(db = %name, "replicas not in sync at shutdown");
        Err(ReplicateError::ShutdownTimeout {
            db: name,
            timeout: opts.shutdown_sync_timeout,
        })
    }
}
