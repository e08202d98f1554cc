//! Replication of one database: detect commits, capture them as L0 files, upload them
//! to every replica, keep each replica compacted and pruned.
//!
//! Data flow: `detect` (WAL change notifications) → `capture` (WAL frames → local L0
//! file, on a blocking thread) → `upload` (one task per replica, each at its own
//! position) → `maintain` (compaction, snapshots, retention per replica).
//!
//! This module owns the settings of a database and its replicas and [`run_database`],
//! the entry point of one database's replication; its steps (start, one cycle, wait for
//! work, final sync) are [`replicator::DbReplicator`]'s. The TXID positions that steer it
//! live in `progress`, with the rules that read them.
//!
//! Pacing: captures are at least `DEFAULT_PACE` (the smallest `sync-interval`) apart, and
//! while a replica is still uploading earlier files the next capture waits for it (at
//! most `MAX_HOLD`): a replica slower than the pace gets fewer, larger files, so its lag
//! stays about two uploads instead of growing with a queue. Each replica still makes one
//! request at a time, so the replica holds a contiguous TXID prefix at every instant.
//! Every step feeds `status` (live figures, `progress` among them); `report` copies them
//! out for reporters.

pub mod budget;
pub mod capture;
pub mod compaction_check;
pub mod detect;
pub mod handle;
pub mod local;
pub mod maintain;
pub mod meta;
pub mod progress;
pub mod recover;
pub mod replicator;
pub mod report;
pub mod status;
pub mod upload;

use crate::defaults;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ltx::PageEncoding;
use tokio::sync::watch;

use crate::storage::ReplicaStore;
use handle::{DbHandle, StopOnDrop};
use status::ReplicaStatus;

/// LTX files larger than this (a big database's full image, its snapshots and large
/// compactions) are uploaded from a local file in pieces ([`ReplicaStore::put_file`]),
/// never held whole in memory (issue 27: an 8 GiB database replicates in 100 MiB); smaller
/// ones take the in-memory path.
pub const STREAM_ABOVE_BYTES: u64 = 32 << 20;

/// The variable that overrides [`STREAM_ABOVE_BYTES`]: an internal knob, so tests take the
/// streaming path with a small database. Not a setting: nothing a user needs to tune.
pub const STREAM_ABOVE_ENV: &str = "SQLITE_REPLICATE_STREAM_ABOVE_BYTES";

/// [`STREAM_ABOVE_BYTES`], or [`STREAM_ABOVE_ENV`] when set to a number (read once).
pub fn stream_above_bytes() -> u64 {
    static V: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *V.get_or_init(|| {
        std::env::var(STREAM_ABOVE_ENV)
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(STREAM_ABOVE_BYTES)
    })
}

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
    /// `upload-rate` and `upload-burst`: the replica's request budget, a token bucket
    /// the capture loop asks before each capture (`budget`). `None`: unlimited.
    pub budget: Option<budget::UploadBudget>,
}

impl ReplicaOptions {
    /// Litestream's defaults for housekeeping; our default pace.
    pub fn with_defaults(name: impl Into<String>) -> ReplicaOptions {
        ReplicaOptions {
            name: name.into(),
            min_upload_interval: DEFAULT_PACE,
            levels: defaults::LEVEL_INTERVALS.to_vec(),
            snapshot_interval: defaults::SNAPSHOT_INTERVAL,
            snapshot_retention: defaults::SNAPSHOT_RETENTION,
            l0_retention: defaults::L0_RETENTION,
            l0_retention_check_interval: defaults::L0_RETENTION_CHECK_INTERVAL,
            retention_enabled: true,
            encoding: PageEncoding::Block,
            verify_compaction: false,
            auto_recover: false,
            max_batch: None,
            budget: None,
        }
    }
}

/// Default minimum interval between two captures (and so between two uploads) of one
/// database: at most 50 L0 files per second under continuous writes, while a commit
/// after a quiet spell is captured at once.
pub const DEFAULT_PACE: Duration = crate::defaults::SYNC_INTERVAL;

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
            busy_timeout: defaults::BUSY_TIMEOUT,
            min_checkpoint_pages: defaults::MIN_CHECKPOINT_PAGES,
            truncate_pages: defaults::TRUNCATE_PAGES,
            max_capture_wal_bytes: None,
            checkpoint_interval: defaults::CHECKPOINT_INTERVAL,
            poll_interval: defaults::POLL_INTERVAL,
            encoding: PageEncoding::Block,
            shutdown_sync_timeout: defaults::SHUTDOWN_SYNC_TIMEOUT,
            shutdown_sync_interval: defaults::SHUTDOWN_SYNC_INTERVAL,
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
        /// Boxed: a storage error is large, and this enum travels in every `Result`.
        source: Box<crate::storage::StorageError>,
    },
    #[error("{db}: replicas did not catch up within {timeout:?} at shutdown")]
    ShutdownTimeout { db: String, timeout: Duration },
}

/// Replicates one database until `shutdown` turns true (or once, in `once` mode).
/// `handle` carries sync requests in and progress out (see `handle`); it is marked
/// stopped when this returns. The steps are [`replicator::DbReplicator`]'s.
pub async fn run_database(
    opts: DbOptions,
    replicas: Vec<ReplicaSpec>,
    handle: Arc<DbHandle>,
    changes: Arc<detect::Changes>,
    shutdown: watch::Receiver<bool>,
    mode: RunMode,
) -> Result<(), ReplicateError> {
    handle.set_starting();
    let _stopped = StopOnDrop(handle.clone());
    let wiring = replicator::Wiring {
        handle,
        changes,
        shutdown,
    };
    match replicator::DbReplicator::start(opts, replicas, wiring, mode).await? {
        Some(r) => r.run().await,
        None => Ok(()),
    }
}
