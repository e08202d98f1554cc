//! Live figures about a database and its replicas, shared between the replication tasks
//! and whoever reports them (logs, `/metrics`, `/status`, `status`).
//!
//! Owns: lock-free counters, the last error text, and the last restore drill's and
//! validation's outcomes ([`DrillStatus`], [`ValidationStatus`], filled by whoever runs
//! them). Holds no policy: the TXID positions that steer replication live in
//! `progress` (a field here, so reporters find them), with the rules that read them. A
//! plain copy for reporting is taken by `report`.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ltx::TxId;

use super::progress::{DbProgress, ReplicaProgress};
use crate::storage::metered::StoreOps;

/// Figures for one database.
#[derive(Debug, Default)]
pub struct DbStatus {
    /// Where local captures stand (last TXID captured, the replicas' floor): read
    /// through its methods.
    pub progress: DbProgress,
    /// Unix ms of the last capture.
    pub last_capture_ms: AtomicI64,
    pub wal_size_bytes: AtomicU64,
    pub captures: AtomicU64,
    pub snapshots_full: AtomicU64,
    pub checkpoints: AtomicU64,
    pub checkpoint_errors: AtomicU64,
    pub sync_errors: AtomicU64,
    pub last_error: Mutex<Option<String>>,
    /// Database size at the last capture (commit page count x page size).
    pub db_size_bytes: AtomicU64,
    /// WAL bytes captured since start (Litestream's `total_wal_bytes`).
    pub wal_bytes_captured: AtomicU64,
    /// Capture cycles (looks at the WAL, whether or not anything was new).
    pub syncs: AtomicU64,
    /// Time spent in capture cycles, in microseconds.
    pub sync_micros: AtomicU64,
    /// Time spent in our checkpoints, in microseconds.
    pub checkpoint_micros: AtomicU64,
    /// Unix ms of our last successful checkpoint (0 before the first).
    pub last_checkpoint_ms: AtomicI64,
    /// Unix ms since when captures have been failing, or replication of this database
    /// stopped on an error (0 when healthy).
    pub failing_since_ms: AtomicI64,
    /// The last capture cycle failed because a local write found no space (ENOSPC or
    /// EDQUOT): Litestream's `litestream_disk_full`. Cleared by the next cycle that does
    /// not fail so.
    pub disk_full: AtomicBool,
    /// Woken at every [`DbStatus::record_failure`] (what the runtime waits on to learn
    /// that a run fails for want of descriptors, without a timer per database).
    pub failed: tokio::sync::Notify,
}

/// Figures for one replica of one database.
#[derive(Debug, Default)]
pub struct ReplicaStatus {
    /// Where the replica stands (TXID held, level 1's reach, uploading or not): read
    /// through its methods.
    pub progress: ReplicaProgress,
    /// Unix ms of the last successful upload.
    pub last_upload_ms: AtomicI64,
    /// Unix ms since when uploads have been failing (0 when healthy).
    pub failing_since_ms: AtomicI64,
    pub uploads: AtomicU64,
    pub upload_bytes: AtomicU64,
    pub upload_errors: AtomicU64,
    pub compactions: AtomicU64,
    pub deletes: AtomicU64,
    pub last_error: Mutex<Option<String>>,
    /// Bytes of compacted and snapshot files written.
    pub compaction_bytes: AtomicU64,
    /// Compaction, snapshot or retention runs that failed.
    pub maintenance_errors: AtomicU64,
    /// Merged files that failed `verify-compaction`'s check (each is deleted and the
    /// merge done again; its inputs stay).
    pub compaction_verify_failures: AtomicU64,
    /// The last restore drill against this replica, once one has run.
    pub drill: Mutex<Option<DrillStatus>>,
    /// The drills scheduled for this replica (`drill-interval`), from when they were.
    pub drill_schedule: Mutex<Option<DrillSchedule>>,
    /// The last validation of this replica's LTX history (`validation-interval`), once
    /// one has run.
    pub validation: Mutex<Option<ValidationStatus>>,
    /// Every request to the replica's store, per operation (filled by the
    /// [`crate::storage::metered::MeteredStore`] the replica's store is wrapped in).
    pub ops: Arc<StoreOps>,
    /// How the last L0 retention run classified the replica's L0 files.
    pub l0_retention: L0RetentionStatus,
    /// The request budget the replica runs under (`None`: unlimited), for reports.
    pub budget: Mutex<Option<super::budget::UploadBudget>>,
}

/// How the last L0 retention run classified a replica's L0 files, in Litestream's terms
/// (`litestream_l0_retention_files_total` {status}): `eligible` (covered by L1 and older
/// than the L0 retention: deleted by that run), `not_compacted` (old enough but not yet
/// covered by L1), `too_recent` (younger than the retention, and every file after the
/// first such one). The newest L0 file is always kept and, when it would otherwise be
/// eligible, counted in none (as Litestream). Unset until a run has happened.
#[derive(Debug, Default)]
pub struct L0RetentionStatus {
    pub ran: AtomicBool,
    pub eligible: AtomicU64,
    pub not_compacted: AtomicU64,
    pub too_recent: AtomicU64,
}

impl L0RetentionStatus {
    /// Records one run's counts.
    pub fn set(&self, eligible: u64, not_compacted: u64, too_recent: u64) {
        self.eligible.store(eligible, Ordering::Relaxed);
        self.not_compacted.store(not_compacted, Ordering::Relaxed);
        self.too_recent.store(too_recent, Ordering::Relaxed);
        self.ran.store(true, Ordering::Release);
    }

    /// (eligible, not compacted, too recent) of the last run, if one has run.
    pub fn get(&self) -> Option<(u64, u64, u64)> {
        self.ran.load(Ordering::Acquire).then(|| {
            (
                self.eligible.load(Ordering::Relaxed),
                self.not_compacted.load(Ordering::Relaxed),
                self.too_recent.load(Ordering::Relaxed),
            )
        })
    }
}

/// The outcome of one restore drill (a restore of the replica into a scratch file,
/// checked): filled by the `verify` command's drill, exported as
/// `sqlite_replicate_drill_*` metrics and in `/status`.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DrillStatus {
    /// Unix ms when the drill finished.
    pub last_run_unix_ms: i64,
    pub ok: bool,
    /// How long the restore took.
    pub restore_duration_ms: u64,
    /// LTX files and bytes the restore read.
    pub files: u64,
    pub bytes: u64,
    /// Recovery point: how far the restored state was behind the source, in ms.
    pub rpo_ms: u64,
    /// Why the drill failed (`None` when ok).
    pub error: Option<String>,
    /// Unix ms when a drill last succeeded (kept across failed runs by
    /// [`ReplicaStatus::set_drill`]).
    pub last_success_unix_ms: Option<i64>,
}

/// When restore drills of a replica run: an alert can then tell a drill that is overdue
/// (none for twice the interval, counting from when drills were scheduled) from one that
/// is merely not due yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DrillSchedule {
    /// `drill-interval`, in ms.
    pub interval_ms: u64,
    /// Unix ms when the drills were scheduled (the replicator's start, or the database's
    /// addition).
    pub since_unix_ms: i64,
}

/// The outcome of one validation (a listing of the replica's levels checked for TXID
/// gaps and overlaps, `validation-interval`): exported as `sqlite_replicate_validation_*`
/// metrics and in `/status`.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ValidationStatus {
    /// Unix ms when the validation finished.
    pub last_run_unix_ms: i64,
    pub ok: bool,
    /// Levels listed and LTX files seen.
    pub levels: u64,
    pub files: u64,
    /// Gaps and overlaps found.
    pub faults: u64,
    /// What is wrong (`None` when ok): the first fault, naming the files and the TXID
    /// range, or the listing error.
    pub error: Option<String>,
    /// Unix ms when a validation last succeeded (kept across failed runs by
    /// [`ReplicaStatus::set_validation`]).
    pub last_success_unix_ms: Option<i64>,
    /// Validations run and validations that failed since the daemon started.
    pub runs: u64,
    pub failures: u64,
}

fn set(slot: &Mutex<Option<String>>, e: Option<String>) {
    *slot.lock().unwrap_or_else(|p| p.into_inner()) = e;
}

fn get(slot: &Mutex<Option<String>>) -> Option<String> {
    slot.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

impl DbStatus {
    /// The last TXID captured locally, `None` before the first.
    pub fn local_txid(&self) -> Option<TxId> {
        self.progress.local()
    }

    pub fn set_error(&self, e: Option<String>) {
        set(&self.last_error, e);
    }

    pub fn last_error(&self) -> Option<String> {
        get(&self.last_error)
    }

    /// Records a failure at `now_ms`: the error text, and the start of the failing spell
    /// unless one is already running.
    pub fn record_failure(&self, e: String, now_ms: i64) {
        self.set_error(Some(e));
        let _ =
            self.failing_since_ms
                .compare_exchange(0, now_ms, Ordering::AcqRel, Ordering::Acquire);
        self.failed.notify_waiters();
    }

    /// Ends a failing spell and clears the error.
    pub fn record_ok(&self) {
        self.failing_since_ms.store(0, Ordering::Release);
        self.set_error(None);
    }
}

impl ReplicaStatus {
    pub fn set_error(&self, e: Option<String>) {
        set(&self.last_error, e);
    }

    pub fn last_error(&self) -> Option<String> {
        get(&self.last_error)
    }

    /// Highest TXID durably stored on the replica, `None` when unknown or none.
    pub fn replicated(&self) -> Option<TxId> {
        self.progress.replicated()
    }

    /// Records a drill's outcome. A successful run is the new last success; a failed
    /// one keeps the previous last success.
    pub fn set_drill(&self, mut d: DrillStatus) {
        let mut slot = self.drill.lock().unwrap_or_else(|p| p.into_inner());
        d.last_success_unix_ms = if d.ok {
            Some(d.last_run_unix_ms)
        } else {
            slot.as_ref().and_then(|p| p.last_success_unix_ms)
        };
        *slot = Some(d);
    }

    /// The request budget the replica runs under (`None`: unlimited).
    pub fn budget(&self) -> Option<super::budget::UploadBudget> {
        *self.budget.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_budget(&self, b: Option<super::budget::UploadBudget>) {
        *self.budget.lock().unwrap_or_else(|p| p.into_inner()) = b;
    }

    pub fn drill(&self) -> Option<DrillStatus> {
        self.drill.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Records that drills run every `interval` from now on.
    pub fn schedule_drills(&self, interval: std::time::Duration) {
        *self
            .drill_schedule
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(DrillSchedule {
            interval_ms: interval.as_millis() as u64,
            since_unix_ms: crate::clock::now_ms(),
        });
    }

    /// The drills' schedule, when drills are scheduled.
    pub fn drill_schedule(&self) -> Option<DrillSchedule> {
        *self
            .drill_schedule
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Records a validation's outcome: a successful run is the new last success, a failed
    /// one keeps the previous; the run and failure counts carry on from the previous.
    pub fn set_validation(&self, mut v: ValidationStatus) {
        let mut slot = self.validation.lock().unwrap_or_else(|p| p.into_inner());
        let prev = slot.take().unwrap_or_default();
        v.last_success_unix_ms = if v.ok {
            Some(v.last_run_unix_ms)
        } else {
            prev.last_success_unix_ms
        };
        v.runs = prev.runs + 1;
        v.failures = prev.failures + u64::from(!v.ok);
        *slot = Some(v);
    }

    pub fn validation(&self) -> Option<ValidationStatus> {
        self.validation
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
