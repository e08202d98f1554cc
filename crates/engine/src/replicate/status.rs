//! Live figures about a database and its replicas, shared between the replication tasks
//! and whoever reports them (logs, `/metrics`, `status`).
//!
//! Owns: lock-free counters and the last error text. Holds no policy.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;

/// Figures for one database.
#[derive(Debug, Default)]
pub struct DbStatus {
    /// Last TXID captured locally (0 before the first).
    pub local_txid: AtomicU64,
    /// Unix ms of the last capture.
    pub last_capture_ms: AtomicI64,
    pub wal_size_bytes: AtomicU64,
    pub captures: AtomicU64,
    pub snapshots_full: AtomicU64,
    pub checkpoints: AtomicU64,
    pub checkpoint_errors: AtomicU64,
    pub sync_errors: AtomicU64,
    pub last_error: Mutex<Option<String>>,
}

/// Figures for one replica of one database.
#[derive(Debug, Default)]
pub struct ReplicaStatus {
    /// Highest TXID durably stored on the replica (0 when unknown or none).
    pub replicated_txid: AtomicU64,
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
}

impl DbStatus {
    pub fn set_error(&self, e: Option<String>) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = e;
    }
}

impl ReplicaStatus {
    pub fn set_error(&self, e: Option<String>) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = e;
    }

    pub fn replicated(&self) -> u64 {
        self.replicated_txid.load(Ordering::Acquire)
    }
}
