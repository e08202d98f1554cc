//! A handle on one running database for callers outside the replication loop: the
//! control socket's `sync [-wait]`, `txid` and `list`.
//!
//! Owns: the sync protocol between a caller and `run_database` — a request counter the
//! caller bumps, a wake-up the capture loop listens to, and a `watch` channel the loop
//! and the uploaders publish progress on (a capture cycle finished, an upload finished,
//! the run stopped). Waiters are woken by those events, never by polling.
//!
//! Does not: capture or upload anything itself, or decide pacing. Fed by
//! `run_database` (cycle outcomes, run state) and `upload::Uploader` (uploads); read by
//! the CLI's control server.
//!
//! The rule of a sync: the capture that answers a request is the first capture cycle
//! that *starts* after the request was counted, so it sees every commit made before the
//! request. Its head TXID is the target; with `wait`, the sync returns once every
//! replica's durably stored TXID has reached that target. An upload already in flight
//! is waited for, not duplicated.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Notify};

use ltx::TxId;

use super::progress::raw;
use super::status::{DbStatus, ReplicaStatus};

/// Where a database's run is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunState {
    /// Listing replicas or waiting for the database file: nothing captured yet.
    Starting,
    /// Capturing and uploading.
    Running,
    /// The run ended (shutdown or error).
    Stopped,
}

const STARTING: u8 = 0;
const RUNNING: u8 = 1;
const STOPPED: u8 = 2;

/// What a sync found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncOutcome {
    /// The capture found commits that were not captured when the request arrived.
    pub captured_new: bool,
    /// The database's TXID as of the request (the head after the answering capture).
    pub txid: u64,
    /// The lowest TXID every replica durably holds at the answer (>= `txid` with wait).
    pub replicated_txid: u64,
}

/// Why a sync did not complete.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SyncError {
    #[error("{db}: database is not open for replication yet")]
    NotOpen { db: String },
    #[error("{db}: replication of this database has stopped")]
    Stopped { db: String },
    #[error("{db}: capture failed: {error}")]
    Capture { db: String, error: String },
    #[error("{db}: not {want} within {timeout:?}")]
    StateTimeout {
        db: String,
        want: String,
        timeout: Duration,
    },
    #[error("{db}: no capture within {timeout:?}")]
    CaptureTimeout { db: String, timeout: Duration },
    /// Replicas that had not reached `txid` when the time ran out.
    #[error("{db}: timed out after {timeout:?} waiting for TXID {txid:016x}: {}", lagging_text(.lagging))]
    ReplicaTimeout {
        db: String,
        timeout: Duration,
        txid: u64,
        lagging: Vec<Lagging>,
    },
}

/// A replica behind the sync target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lagging {
    pub replica: String,
    pub replicated_txid: u64,
    pub last_error: Option<String>,
}

fn lagging_text(l: &[Lagging]) -> String {
    l.iter()
        .map(|r| {
            let mut s = format!(
                "replica {} holds TXID {:016x}",
                r.replica, r.replicated_txid
            );
            if let Some(e) = &r.last_error {
                s.push_str(&format!(" (last error: {e})"));
            }
            s
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Progress published by the loop and the uploaders; each change wakes the waiters.
#[derive(Clone, Debug, Default)]
struct Progress {
    /// Highest request number a finished capture cycle answers.
    served: u64,
    /// Head TXID after that cycle.
    head_txid: Option<TxId>,
    /// The cycle's error, if it failed.
    error: Option<String>,
    /// Bumped on every upload, so replica waiters wake.
    uploads: u64,
}

/// The handle on one database (see the module docs). Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct DbHandle {
    db: String,
    status: Arc<DbStatus>,
    replicas: Mutex<Vec<(String, Arc<ReplicaStatus>)>>,
    state: AtomicU8,
    requested: AtomicU64,
    wake: Notify,
    progress: watch::Sender<Progress>,
    /// Whether the database should replicate (`stop` and `start` set it; the runtime
    /// stops and restarts the run to match).
    wanted: watch::Sender<bool>,
}

/// What `start` and `stop` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Toggle {
    /// The state changed as asked.
    Done,
    /// It already was in that state.
    Already,
}

impl DbHandle {
    pub fn new(db: impl Into<String>, status: Arc<DbStatus>) -> DbHandle {
        DbHandle {
            db: db.into(),
            status,
            replicas: Mutex::new(Vec::new()),
            state: AtomicU8::new(STARTING),
            requested: AtomicU64::new(0),
            wake: Notify::new(),
            progress: watch::Sender::new(Progress::default()),
            wanted: watch::Sender::new(true),
        }
    }

    pub fn status(&self) -> &Arc<DbStatus> {
        &self.status
    }

    pub fn state(&self) -> RunState {
        match self.state.load(Ordering::Acquire) {
            STARTING => RunState::Starting,
            RUNNING => RunState::Running,
            _ => RunState::Stopped,
        }
    }

    /// Asks for a capture now, and returns once it ran (and, with `wait`, once every
    /// replica holds its TXID), or after `timeout`.
    pub async fn sync(&self, wait: bool, timeout: Duration) -> Result<SyncOutcome, SyncError> {
        let deadline = tokio::time::Instant::now() + timeout;
        match self.state() {
            RunState::Starting => {
                return Err(SyncError::NotOpen {
                    db: self.db.clone(),
                })
            }
            RunState::Stopped => {
                return Err(SyncError::Stopped {
                    db: self.db.clone(),
                })
            }
            RunState::Running => {}
        }
        let mut rx = self.progress.subscribe();
        let before = self.status.local_txid();
        // SeqCst pairs with the loop's load at the start of a cycle: a cycle that sees
        // this number started after it was counted (see the module docs).
        let ticket = self.requested.fetch_add(1, Ordering::SeqCst) + 1;
        self.wake.notify_one();
        let txid = loop {
            {
                let p = rx.borrow_and_update();
                if p.served >= ticket {
                    if let Some(error) = &p.error {
                        return Err(SyncError::Capture {
                            db: self.db.clone(),
                            error: error.clone(),
                        });
                    }
                    break p.head_txid;
                }
            }
            self.next_progress(&mut rx, deadline, || SyncError::CaptureTimeout {
                db: self.db.clone(),
                timeout,
            })
            .await?;
        };
        let captured_new = txid > before;
        let outcome = || SyncOutcome {
            captured_new,
            txid: raw(txid),
            replicated_txid: raw(self.replicated_floor()),
        };
        if !wait {
            return Ok(outcome());
        }
        loop {
            let lagging = self.lagging(txid);
            if lagging.is_empty() {
                return Ok(outcome());
            }
            self.next_progress(&mut rx, deadline, || SyncError::ReplicaTimeout {
                db: self.db.clone(),
                timeout,
                txid: raw(txid),
                lagging: self.lagging(txid),
            })
            .await?;
        }
    }

    /// Waits for the next progress event, failing when the run has stopped (or stops
    /// meanwhile) and with `on_timeout`'s error at `deadline`.
    async fn next_progress(
        &self,
        rx: &mut watch::Receiver<Progress>,
        deadline: tokio::time::Instant,
        on_timeout: impl FnOnce() -> SyncError,
    ) -> Result<(), SyncError> {
        let stopped = || SyncError::Stopped {
            db: self.db.clone(),
        };
        if self.state() == RunState::Stopped {
            return Err(stopped());
        }
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(stopped()),
            Err(_) => Err(on_timeout()),
        }
    }

    /// Stops replicating this database: its run does a final sync and ends. Returns once
    /// it has ended (or `timeout`; the stop still goes on). The other databases go on.
    pub async fn stop(&self, timeout: Duration) -> Result<Toggle, SyncError> {
        let changed = self.wanted.send_replace(false);
        if !changed && self.state() == RunState::Stopped {
            return Ok(Toggle::Already);
        }
        self.wait_state(RunState::Stopped, timeout).await?;
        Ok(if changed {
            Toggle::Done
        } else {
            Toggle::Already
        })
    }

    /// Starts replicating this database again after `stop`. Returns once it runs (or
    /// `timeout`; the start still goes on).
    pub async fn start(&self, timeout: Duration) -> Result<Toggle, SyncError> {
        let changed = !self.wanted.send_replace(true);
        if !changed {
            return Ok(Toggle::Already);
        }
        self.wait_state(RunState::Running, timeout).await?;
        Ok(Toggle::Done)
    }

    async fn wait_state(&self, want: RunState, timeout: Duration) -> Result<(), SyncError> {
        let mut rx = self.progress.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            rx.borrow_and_update();
            if self.state() == want {
                return Ok(());
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => {
                    return Err(SyncError::StateTimeout {
                        db: self.db.clone(),
                        want: format!("{want:?}").to_lowercase(),
                        timeout,
                    })
                }
            }
        }
    }

    /// Whether the database should replicate (read by the runtime).
    pub fn wanted(&self) -> watch::Receiver<bool> {
        self.wanted.subscribe()
    }

    /// The lowest TXID every replica durably holds (`None` without replicas, or when
    /// one holds nothing).
    pub fn replicated_floor(&self) -> Option<TxId> {
        self.replicas()
            .iter()
            .map(|(_, s)| s.replicated())
            .min()
            .flatten()
    }

    fn replicas(&self) -> std::sync::MutexGuard<'_, Vec<(String, Arc<ReplicaStatus>)>> {
        self.replicas.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lagging(&self, txid: Option<TxId>) -> Vec<Lagging> {
        self.replicas()
            .iter()
            .filter(|(_, s)| !s.progress.holds(txid))
            .map(|(name, s)| Lagging {
                replica: name.clone(),
                replicated_txid: raw(s.replicated()),
                last_error: s.last_error(),
            })
            .collect()
    }

    // --- The loop's side (crate-private). ---

    /// A run begins (listing replicas, waiting for the file).
    pub(crate) fn set_starting(&self) {
        self.state.store(STARTING, Ordering::Release);
        self.progress.send_modify(|_| {});
    }

    /// The run opened the database; `replicas` are the statuses a `wait` checks.
    pub(crate) fn set_running(&self, replicas: Vec<(String, Arc<ReplicaStatus>)>) {
        *self.replicas() = replicas;
        self.state.store(RUNNING, Ordering::Release);
        self.progress.send_modify(|_| {});
    }

    /// The run ended: every waiter gets an answer now.
    pub(crate) fn set_stopped(&self) {
        self.state.store(STOPPED, Ordering::Release);
        self.progress.send_modify(|_| {});
    }

    /// Read at the start of a capture cycle: the requests that cycle answers.
    pub(crate) fn requests_now(&self) -> u64 {
        self.requested.load(Ordering::SeqCst)
    }

    /// Whether a request is waiting for a capture.
    pub(crate) fn sync_pending(&self) -> bool {
        self.requested.load(Ordering::SeqCst) > self.progress.borrow().served
    }

    /// Resolves when a sync is requested (a stored permit if one came meanwhile).
    pub(crate) async fn sync_requested(&self) {
        self.wake.notified().await
    }

    /// A capture cycle that started when `requests_now` was `served` finished.
    pub(crate) fn cycle_done(&self, served: u64, head_txid: Option<TxId>, error: Option<String>) {
        self.progress.send_modify(|p| {
            p.served = p.served.max(served);
            p.head_txid = head_txid;
            p.error = error;
        });
    }

    /// A replica finished an upload (or gave up on one): waiters re-check.
    pub(crate) fn upload_done(&self) {
        self.progress
            .send_modify(|p| p.uploads = p.uploads.wrapping_add(1));
    }
}

/// Marks the handle stopped when the run ends, on every return path.
pub(crate) struct StopOnDrop(pub Arc<DbHandle>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.set_stopped();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tx(v: u64) -> Option<TxId> {
        TxId::new(v).ok()
    }

    fn handle_with_replica() -> (Arc<DbHandle>, Arc<ReplicaStatus>) {
        let h = Arc::new(DbHandle::new("/db", Arc::new(DbStatus::default())));
        let r = Arc::new(ReplicaStatus::default());
        h.set_running(vec![("file".into(), r.clone())]);
        (h, r)
    }

    #[tokio::test]
    async fn sync_is_answered_by_a_cycle_that_starts_after_it() {
        let (h, _) = handle_with_replica();
        // A cycle that began before the request does not answer it.
        let before = h.requests_now();
        let h2 = h.clone();
        let t = tokio::spawn(async move { h2.sync(false, Duration::from_secs(5)).await });
        tokio::task::yield_now().await;
        h.cycle_done(before, tx(7), None);
        tokio::task::yield_now().await;
        assert!(!t.is_finished());
        h.sync_requested().await;
        let now = h.requests_now();
        h.status.progress.set_local(tx(8));
        h.cycle_done(now, tx(8), None);
        let out = t.await.unwrap().unwrap();
        assert_eq!(out.txid, 8);
        assert!(out.captured_new);
    }

    #[tokio::test]
    async fn wait_returns_when_every_replica_holds_the_txid() {
        let (h, r) = handle_with_replica();
        let h2 = h.clone();
        let t = tokio::spawn(async move { h2.sync(true, Duration::from_secs(5)).await });
        h.sync_requested().await;
        h.cycle_done(h.requests_now(), tx(3), None);
        tokio::task::yield_now().await;
        assert!(!t.is_finished(), "replica holds nothing yet");
        r.progress.set_replicated(tx(3));
        h.upload_done();
        let out = t.await.unwrap().unwrap();
        assert_eq!((out.txid, out.replicated_txid), (3, 3));
    }

    #[tokio::test]
    async fn wait_times_out_naming_the_lagging_replica() {
        let (h, r) = handle_with_replica();
        r.progress.set_replicated(tx(2));
        r.set_error(Some("connection refused".into()));
        let h2 = h.clone();
        let t = tokio::spawn(async move { h2.sync(true, Duration::from_millis(200)).await });
        h.sync_requested().await;
        h.cycle_done(h.requests_now(), tx(3), None);
        let e = t.await.unwrap().unwrap_err();
        assert_eq!(
            e.to_string(),
            "/db: timed out after 200ms waiting for TXID 0000000000000003: replica file holds \
             TXID 0000000000000002 (last error: connection refused)"
        );
    }

    #[tokio::test]
    async fn sync_refused_before_start_and_after_stop() {
        let h = DbHandle::new("/db", Arc::new(DbStatus::default()));
        assert!(matches!(
            h.sync(false, Duration::from_secs(1)).await,
            Err(SyncError::NotOpen { .. })
        ));
        h.set_stopped();
        assert!(matches!(
            h.sync(false, Duration::from_secs(1)).await,
            Err(SyncError::Stopped { .. })
        ));
    }

    #[tokio::test]
    async fn a_failed_capture_answers_with_its_error() {
        let (h, _) = handle_with_replica();
        let h2 = h.clone();
        let t = tokio::spawn(async move { h2.sync(false, Duration::from_secs(5)).await });
        h.sync_requested().await;
        h.cycle_done(h.requests_now(), None, Some("disk I/O error".into()));
        assert_eq!(
            t.await.unwrap().unwrap_err(),
            SyncError::Capture {
                db: "/db".into(),
                error: "disk I/O error".into()
            }
        );
    }
}
