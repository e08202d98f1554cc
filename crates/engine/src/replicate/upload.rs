//! One task per replica: ship local L0 files in TXID order, then run that replica's
//! compaction, snapshot and retention on their schedules (a timer only while one of
//! them has work waiting: a quiet replica waits for the next capture alone).
//!
//! Owns: the replica's position (known from one listing at start, then kept in memory:
//! no listing while idle), retry with backoff and jitter on transient errors, and the
//! final sync at shutdown. Fed by the capture loop through a `watch` channel carrying
//! the newest local TXID; feeds `ReplicaStatus`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ltx::{Level, TxId};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::local::{ms_to_time, now_ms, LocalDir};
use super::maintain::{Maintenance, ReplicaView};
use super::recover::{self, Reset};
use super::status::ReplicaStatus;
use super::ReplicaOptions;
use crate::storage::layout::LtxKey;
use crate::storage::{ReplicaStore, StorageError};

/// What the capture loop tells replicas: the newest local TXID, and the first TXID of
/// the current unbroken local run (a full-image file starts a new run).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Head {
    /// The newest local TXID (`None` before the first of the history).
    pub txid: Option<TxId>,
    /// TXID of the newest full-database L0 file (`None` if none since start).
    pub full_image_txid: Option<TxId>,
    /// Set once the final sync has begun: the pause between retries of a failed upload
    /// from then on (`shutdown-sync-interval`), instead of the growing backoff.
    pub final_sync_retry: Option<Duration>,
}

pub struct Uploader {
    pub db_name: String,
    pub opts: ReplicaOptions,
    pub store: Arc<dyn ReplicaStore>,
    pub local: Arc<LocalDir>,
    pub status: Arc<ReplicaStatus>,
    pub head: watch::Receiver<Head>,
    pub shutdown: watch::Receiver<bool>,
    /// Asks the capture loop for a full-database file (when this replica cannot be
    /// brought up to date from local files).
    pub need_full_image: tokio::sync::mpsc::UnboundedSender<()>,
    /// The capture loop's minimum interval between two L0 files.
    pub capture_pace: Duration,
    /// Woken after every upload attempt (the capture loop waits on it while this replica
    /// is uploading, see `ReplicaProgress::holds_capture`).
    pub uploaded: Arc<tokio::sync::Notify>,
    /// Told of every upload, so `sync -wait` callers re-check their replicas.
    pub handle: Arc<super::handle::DbHandle>,
}

impl Uploader {
    fn name(&self) -> &str {
        &self.opts.name
    }

    /// Runs until shutdown. `view` is the replica's listing taken at start.
    pub async fn run(mut self, mut view: ReplicaView) {
        // Invariant R1: this listing is the only one; from here on `view` changes only by
        // our own puts and deletes, so an idle replica costs no requests.
        self.status.progress.set_replicated(view.position());
        info!(db = %self.db_name, replica = %self.name(), location = %self.store.location(),
              txid = %hex(super::progress::raw(view.position())), "replica position");
        let mut maint = Maintenance::new(&self.opts);
        self.note_compacted(&view);
        // `auto-recover`: a history that cannot be trusted restarts from a new snapshot.
        let mut reset = None;
        if self.opts.auto_recover {
            if let Some(reason) =
                recover::check_at_start(self.store.as_ref(), &self.local, &view).await
            {
                reset = Some(self.begin_reset(reason));
            }
        }
        let mut backoff = Backoff::new();
        let mut last_upload = Instant::now() - Duration::from_secs(3600);
        loop {
            let head = *self.head.borrow_and_update();
            let done = self
                .catch_up(&mut view, head, &mut backoff, &mut last_upload, &mut reset)
                .await;
            // During the final sync only uploads run: compaction and retention wait for
            // the next start rather than hold the shutdown up.
            if done && head.final_sync_retry.is_none() {
                if let Err(e) = maint
                    .run_due(
                        self.store.as_ref(),
                        &self.local,
                        &mut view,
                        &self.status,
                        &self.db_name,
                    )
                    .await
                {
                    warn!(db = %self.db_name, replica = %self.name(), error = %e, "maintenance failed");
                    self.status
                        .maintenance_errors
                        .fetch_add(1, Ordering::Relaxed);
                    self.status.set_error(Some(e.to_string()));
                    if let Some(reason) = recover::untrusted(&e).filter(|_| self.opts.auto_recover)
                    {
                        // Listed again: compaction and retention must see what it holds.
                        match ReplicaView::load(self.store.as_ref()).await {
                            Ok(v) => {
                                view = v;
                                reset = Some(self.begin_reset(reason));
                            }
                            Err(le) => {
                                warn!(db = %self.db_name, replica = %self.name(), error = %le, "auto-recover: cannot list the replica; trying again after the next failure")
                            }
                        }
                    }
                }
                self.note_compacted(&view);
            }
            if *self.shutdown.borrow() {
                return;
            }
            // Caught up, the replica waits for its next maintenance with work waiting, or
            // (nothing waiting: a quiet replica) only for the next capture or shutdown.
            let wait = match head.final_sync_retry {
                _ if done => maint.next_due_for(&view),
                Some(pause) => Some(Instant::now() + pause),
                None => Some(Instant::now() + backoff.current()),
            };
            let timer = async {
                match wait {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = self.head.changed() => { if r.is_err() { return; } }
                _ = timer => {}
                _ = self.shutdown.changed() => {}
            }
            if done {
                maint.pass_idle_slots(&view, Instant::now());
            }
        }
    }

    /// Logs why the replica's history restarts, and says from above which TXID.
    fn begin_reset(&self, reason: String) -> Reset {
        let above = self.head.borrow().txid;
        warn!(db = %self.db_name, replica = %self.name(), reason = %reason,
              above = %hex(super::progress::raw(above)),
              "auto-recover: the replica's history cannot be trusted; restarting it from a new snapshot");
        // Unknown until the snapshot is stored: nothing (local pruning, the final sync)
        // counts on what the replica held.
        self.status.progress.set_replicated(None);
        Reset { above, reason }
    }

    /// Uploads every local file the replica lacks. Returns true when caught up.
    async fn catch_up(
        &mut self,
        view: &mut ReplicaView,
        head: Head,
        backoff: &mut Backoff,
        last_upload: &mut Instant,
        reset: &mut Option<Reset>,
    ) -> bool {
        self.status.progress.begin_catch_up(head.txid);
        let done = self
            .upload_missing(view, head, backoff, last_upload, reset)
            .await;
        self.status.progress.end_catch_up();
        self.uploaded.notify_one();
        self.handle.upload_done();
        done
    }

    async fn upload_missing(
        &mut self,
        view: &mut ReplicaView,
        head: Head,
        backoff: &mut Backoff,
        last_upload: &mut Instant,
        reset: &mut Option<Reset>,
    ) -> bool {
        let mut batch = 0u32;
        while view.position() < head.txid || reset.is_some() {
            let Ok(next) = view.position().map_or(Ok(TxId::ONE), TxId::next) else {
                return true;
            };
            // A replica with a hole it cannot fill from local files restarts its history
            // from the newest full-database file, uploaded as a snapshot (min TXID 1).
            let (key, txid) = if let Some(r) = reset.as_ref() {
                // Restarting: nothing but a snapshot of a full image newer than the reset.
                let Some(t) = head.full_image_txid.filter(|&t| Some(t) > r.above) else {
                    let _ = self.need_full_image.send(());
                    return false;
                };
                (LtxKey::new(Level::SNAPSHOT, TxId::ONE, t), t)
            } else if self.local.has(next) {
                (LtxKey::new(Level::L0, next, next), next)
            } else if let Some(t) = head.full_image_txid.filter(|&t| Some(t) > view.position()) {
                (LtxKey::new(Level::SNAPSHOT, TxId::ONE, t), t)
            } else {
                let _ = self.need_full_image.send(());
                return true;
            };
            let Some(payload) = self.payload(key, txid).await else {
                return true;
            };
            // Pace: a busy database does not make one request per commit. A replica at the
            // capture pace needs no pacing of its own (files arrive no faster than that),
            // and waiting here would only add to the lost window.
            let since = last_upload.elapsed();
            if self.opts.min_upload_interval > self.capture_pace
                && since < self.opts.min_upload_interval
            {
                tokio::time::sleep(self.opts.min_upload_interval - since).await;
            }
            self.pause_after_batch(&mut batch).await;
            *last_upload = Instant::now();
            let (len, created, put) = match payload {
                Payload::Memory(data) => {
                    let created = created_of(&data);
                    let len = data.len() as u64;
                    (len, created, self.store.put(&key, data, created).await)
                }
                Payload::File(f, len) => {
                    let created = created_of_file(&f);
                    let put = self.store.put_file(&key, &f, len, created).await;
                    (len, created, put)
                }
            };
            match put {
                Ok(()) => {
                    backoff.reset();
                    view.record_put(key, len, created);
                    self.status.progress.set_replicated(Some(txid));
                    self.status
                        .last_upload_ms
                        .store(now_ms(), Ordering::Release);
                    self.status.failing_since_ms.store(0, Ordering::Release);
                    self.status.uploads.fetch_add(1, Ordering::Relaxed);
                    self.status.upload_bytes.fetch_add(len, Ordering::Relaxed);
                    self.status.set_error(None);
                    self.uploaded.notify_one();
                    self.handle.upload_done();
                    debug!(db = %self.db_name, replica = %self.name(), file = %key, bytes = len, "uploaded");
                    if let Some(r) = reset.take() {
                        info!(db = %self.db_name, replica = %self.name(), snapshot = %key, reason = %r.reason,
                              "auto-recover: the replica's history restarts from this snapshot");
                    }
                }
                Err(e) => {
                    self.fail(&e);
                    if !e.is_retryable() {
                        backoff.bump_permanent();
                    }
                    return false;
                }
            }
        }
        true
    }

    /// What to upload as `key` for local file `txid`: its bytes (a full image re-encoded
    /// as a snapshot for the snapshot level), in memory when small, else a file on disk
    /// ([`super::stream_above_bytes`], issue 27). `None` when it cannot be had (logged;
    /// an unreadable local file also asks the capture loop for a full image).
    async fn payload(&self, key: LtxKey, txid: TxId) -> Option<Payload> {
        let unreadable = |e: std::io::Error| -> Option<Payload> {
            warn!(db = %self.db_name, replica = %self.name(), txid = %txid, error = %e, "local file unreadable");
            let _ = self.need_full_image.send(());
            None
        };
        let large = match self.local.open_large(txid, super::stream_above_bytes()) {
            Ok(l) => l,
            Err(e) => return unreadable(e),
        };
        if let Some((f, len)) = large {
            debug!(db = %self.db_name, replica = %self.name(), file = %key, bytes = len,
                   "uploading from the local file in pieces");
            if !key.level.is_snapshot() {
                return Some(Payload::File(f, len));
            }
            let dir = self.local.meta_dir().to_path_buf();
            let encoding = self.opts.encoding;
            let snap = tokio::task::spawn_blocking(move || {
                super::maintain::as_snapshot_file(f, &dir, encoding)
            })
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)));
            return match snap {
                Ok((f, len)) => Some(Payload::File(f, len)),
                Err(e) => {
                    warn!(db = %self.db_name, error = %e, "cannot re-encode full image as snapshot");
                    None
                }
            };
        }
        let data = match self.local.read(txid) {
            Ok(d) => d,
            Err(e) => return unreadable(e),
        };
        if !key.level.is_snapshot() {
            return Some(Payload::Memory(data));
        }
        match super::maintain::as_snapshot(&data, self.opts.encoding) {
            Ok(d) => Some(Payload::Memory(d)),
            Err(e) => {
                warn!(db = %self.db_name, error = %e, "cannot re-encode full image as snapshot");
                None
            }
        }
    }

    /// `max-sync-ltx-files`: after that many uploads back to back in one catch-up, waits
    /// one `sync-interval` (`min_upload_interval`) before the next. Counts this upload.
    async fn pause_after_batch(&self, batch: &mut u32) {
        let Some(max) = self.opts.max_batch.filter(|m| *m > 0) else {
            return;
        };
        if *batch >= max {
            debug!(db = %self.db_name, replica = %self.name(), files = *batch,
                   pause = ?self.opts.min_upload_interval, "upload batch limit reached; pausing");
            tokio::time::sleep(self.opts.min_upload_interval).await;
            *batch = 0;
        }
        *batch += 1;
    }

    /// Publishes how far level 1 reaches (what local L0 files are still needed for).
    fn note_compacted(&self, view: &ReplicaView) {
        if self.opts.levels.is_empty() {
            self.status.progress.set_no_levels();
        } else {
            let l1 = view.files(Level::L1).last().map(|f| f.key.max);
            self.status.progress.set_compacted(l1);
        }
    }

    fn fail(&self, e: &StorageError) {
        self.status.upload_errors.fetch_add(1, Ordering::Relaxed);
        let _ = self.status.failing_since_ms.compare_exchange(
            0,
            now_ms(),
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        self.status.set_error(Some(e.to_string()));
        warn!(db = %self.db_name, replica = %self.name(), error = %e, "replica write failed");
    }
}

/// One file to upload: in memory, or open on disk with its length.
enum Payload {
    Memory(bytes::Bytes),
    File(std::fs::File, u64),
}

/// [`created_of`] for a file on disk: its header, read at offset 0.
fn created_of_file(f: &std::fs::File) -> SystemTime {
    use crate::platform::FileExt;
    let mut head = [0u8; ltx::HEADER_SIZE];
    match f.read_exact_at(&mut head, 0) {
        Ok(()) => created_of(&head),
        Err(_) => SystemTime::now(),
    }
}

/// The created time recorded for an LTX file: its header timestamp.
fn created_of(data: &[u8]) -> SystemTime {
    ltx::Header::from_bytes(data)
        .map(|h| ms_to_time(h.timestamp_ms))
        .unwrap_or_else(|_| SystemTime::now())
}

pub(crate) fn hex(t: u64) -> String {
    format!("{t:016x}")
}

/// Exponential backoff with jitter, from 100 ms to 30 s.
struct Backoff {
    current: Duration,
}

impl Backoff {
    fn new() -> Backoff {
        Backoff {
            current: Duration::from_millis(100),
        }
    }
    fn reset(&mut self) {
        self.current = Duration::from_millis(100);
    }
    fn bump_permanent(&mut self) {
        self.current = self.current.max(Duration::from_secs(5));
    }
    fn current(&mut self) -> Duration {
        let base = self.current;
        self.current = (self.current * 2).min(Duration::from_secs(30));
        let jitter = rand::random::<f64>() * 0.5 + 0.75;
        base.mul_f64(jitter)
    }
}
