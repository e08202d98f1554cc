//! The built-in defaults, in one place: what a database or replica gets when neither the
//! config file, the environment nor the command line says otherwise.
//!
//! Owns: every default the engine and the config file share (Litestream's where it has
//! one, ours where noted). `DbOptions`/`ReplicaOptions::with_defaults` and the config
//! builder both read them, so a default changes here or nowhere. Depends on `std` only
//! (the config fuzz target compiles this file on its own).

use std::time::Duration;

const fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// `sync-interval`: the capture and upload pace (ours; Litestream's is 1 s).
pub const SYNC_INTERVAL: Duration = Duration::from_millis(20);
/// `levels[].interval`: compaction of L1, L2, L3 (Litestream's).
pub const LEVEL_INTERVALS: [Duration; 3] = [secs(30), secs(300), secs(3600)];
/// `snapshot.interval` and `snapshot.retention` (Litestream's).
pub const SNAPSHOT_INTERVAL: Duration = secs(24 * 3600);
pub const SNAPSHOT_RETENTION: Duration = secs(24 * 3600);
/// `l0-retention` and `l0-retention-check-interval` (Litestream's).
pub const L0_RETENTION: Duration = secs(300);
pub const L0_RETENTION_CHECK_INTERVAL: Duration = secs(15);
/// `busy-timeout` of the replicator's connections.
pub const BUSY_TIMEOUT: Duration = secs(1);
/// `min-checkpoint-page-count` (Litestream's).
pub const MIN_CHECKPOINT_PAGES: u32 = 1000;
/// `truncate-page-n`: the emergency TRUNCATE checkpoint's WAL size in pages (Litestream's).
pub const TRUNCATE_PAGES: u32 = 121_359;
/// `checkpoint-interval` (Litestream's).
pub const CHECKPOINT_INTERVAL: Duration = secs(60);
/// The safety poll of every WAL (a `stat` per database per tick), behind inotify.
pub const POLL_INTERVAL: Duration = secs(1);
/// `shutdown-sync-timeout` and `shutdown-sync-interval` (Litestream's).
pub const SHUTDOWN_SYNC_TIMEOUT: Duration = secs(30);
pub const SHUTDOWN_SYNC_INTERVAL: Duration = Duration::from_millis(500);
/// `lease.ttl` (ours: leases are ours).
pub const LEASE_TTL: Duration = secs(10);
/// `upload-rate` and `upload-burst` of object-store replicas (S3, GCS, Azure; ours):
/// sustained writes cost one upload a second, Litestream's own pace, so steady writes
/// cost no more requests than under Litestream; 20 uploads
/// (0.4 s of back-to-back captures at the 20 ms `sync-interval`) may go at the capture pace
/// after a quiet spell, and a quiet spell of 20 s refills them. So an application
/// committing less than once a second, or in bursts of up to 20 commits, has every
/// commit shipped within the `sync-interval`, and the worst minute costs at most 80 L0
/// uploads. File and SFTP replicas: unlimited. `UPLOAD_BURST` is also the burst of a
/// replica given an `upload-rate` without an `upload-burst`.
pub const OBJECT_STORE_UPLOAD_RATE: f64 = 1.0;
pub const UPLOAD_BURST: u32 = 20;
