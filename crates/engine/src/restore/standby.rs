//! The promotion protocol of a warm standby, and the start of a lease holder's epoch.
//!
//! Owns: the standby copy's first restore ([`restore_copy`]), the `<db>-promote` file that
//! asks a standby to take over ([`promote_path`]), fencing a run's replicas by a lease
//! ([`fence_run`]), beginning an epoch ([`begin_epoch`]: wait out a forced takeover's old
//! holder, record the epoch's first TXID, one past everything visible, then look again),
//! and finishing a promotion ([`finish_promotion`]: fresh local state, the epoch begun,
//! everything before it applied, the copy switched back to WAL mode). The order is what
//! makes a takeover safe: `docs/design.md`, invariants E1-E7.
//!
//! Does not: decide when to promote or report the standby's lag (the CLI's `standby`
//! watches the lease and the `-promote` file and logs), take or renew the lease itself
//! (`lease`), or replicate afterwards (`runtime`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ltx::TxId;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::info;

use super::follow::{self, FollowError};
use super::output::IntegrityCheck;
use super::run::{self, Outcome, RestoreError, RestoreOptions};
use crate::history::{list_all, plan::latest_txid, Times};
use crate::lease::fence::FencedStore;
use crate::lease::{Lease, LeaseError};
use crate::replicate::local::LocalDir;
use crate::runtime::DbRun;
use crate::storage::{ReplicaStore, StorageError};

/// Why a standby could not start or promote.
#[derive(Debug, thiserror::Error)]
pub enum PromoteError {
    #[error(transparent)]
    Restore(Box<RestoreError>),
    #[error("replica {location} holds no backup yet: start the primary first")]
    NoBackup { location: String },
    #[error("{op} {}", dir.display())]
    LocalState {
        op: &'static str,
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    List(#[from] StorageError),
    #[error("recording the epoch's first TXID in the lease")]
    Lease(#[source] LeaseError),
    #[error("replica changed while taking the lease (TXID {} -> {})", show(*before), show(*after))]
    ReplicaChanged {
        before: Option<TxId>,
        after: Option<TxId>,
    },
    #[error("the replicas reach the last TXID there is: no epoch can begin after it")]
    NoTxidLeft,
    #[error("reading the applied TXID of {}: no {}", db.display(), follow::txid_path(db).display())]
    NoAppliedTxid { db: PathBuf },
    #[error(transparent)]
    Follow(#[from] FollowError),
    #[error("{}: applied TXID {applied} but the replicas end at {}: not promoting", db.display(), show(*end))]
    NotCaughtUp {
        db: PathBuf,
        applied: TxId,
        end: Option<TxId>,
    },
    #[error("switching {} to WAL mode", db.display())]
    SwitchToWal {
        db: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl From<RestoreError> for PromoteError {
    fn from(e: RestoreError) -> PromoteError {
        PromoteError::Restore(Box::new(e))
    }
}

/// A TXID for a message: 16 hex digits, or `none`.
fn show(t: Option<TxId>) -> String {
    t.map_or_else(|| "none".into(), |t| t.to_string())
}

/// The file `promote` creates beside the database, `<db>-promote`, polled by its standby.
pub fn promote_path(db: &Path) -> PathBuf {
    let mut p = db.as_os_str().to_os_string();
    p.push("-promote");
    PathBuf::from(p)
}

/// Restores the newest state of `store` into `db` (a standby copy that does not exist
/// yet), as every restore does (`restore::run`), with SQLite's quick check. Returns the
/// TXID restored, the one following continues from.
pub async fn restore_copy(
    store: Arc<dyn ReplicaStore>,
    db: &Path,
    progress: crate::progress::Progress,
) -> Result<TxId, PromoteError> {
    let location = store.location().to_string();
    let candidates = [(location.clone(), store)];
    let mut opts = RestoreOptions::latest(IntegrityCheck::Quick);
    opts.apply.progress = progress;
    match run::restore(&candidates, db, &opts).await? {
        Outcome::Restored(r) => r.txid().ok_or(PromoteError::NoBackup { location }),
        Outcome::NoBackup { .. } | Outcome::DryRun { .. } => {
            Err(PromoteError::NoBackup { location })
        }
    }
}

/// Wraps the replicas of `run` in stores fenced by `lease`; returns them, in order.
pub fn fence_run(run: &mut DbRun, lease: &Arc<Lease>) -> Vec<Arc<FencedStore>> {
    let mut out = Vec::new();
    for r in &mut run.replicas {
        let f = Arc::new(FencedStore::new(r.store.clone(), lease.clone()));
        r.store = f.clone();
        out.push(f);
    }
    out
}

/// Forgets the replicator's local state of `run`'s database: the next capture is a full
/// image (a new holder's local state may predate the history another holder wrote).
pub fn reset_local_state(run: &DbRun) -> Result<(), PromoteError> {
    let dir = &run.opts.meta_dir;
    let err = |op| {
        move |source| PromoteError::LocalState {
            op,
            dir: dir.clone(),
            source,
        }
    };
    let mode = crate::fsutil::FileMode::of_db(&run.opts.path).unwrap_or_default();
    let local = LocalDir::open(dir, mode).map_err(err("opening"))?;
    local.reset().map_err(err("resetting"))
}

/// The highest TXID over every replica (through the fenced stores, which drop other
/// epochs' late writes once our epoch has begun); `None` when they are all empty.
async fn replicas_max(stores: &[Arc<FencedStore>]) -> Result<Option<TxId>, StorageError> {
    let mut max = None;
    for s in stores {
        let listing = list_all(s.as_ref(), Times::Listed).await?;
        max = max.max(latest_txid(&listing));
    }
    Ok(max)
}

/// After taking the lease: waits out a forced takeover's old holder, then records the
/// epoch's first TXID (one past everything visible now) in the lease. Returns it.
pub async fn begin_epoch(lease: &Lease, stores: &[Arc<FencedStore>]) -> Result<TxId, PromoteError> {
    if let Some(t) = lease.not_before() {
        if t > Instant::now() {
            info!(
                wait_ms = (t - Instant::now()).as_millis() as u64,
                "lease taken from a live holder: waiting out its TTL before writing"
            );
            tokio::time::sleep_until(t).await;
        }
    }
    // Invariant E4: the epoch starts one past everything any replica holds now.
    let max = replicas_max(stores).await?;
    let start = max
        .map_or(Ok(TxId::ONE), TxId::next)
        .map_err(|_| PromoteError::NoTxidLeft)?;
    lease
        .set_start_txid(start)
        .await
        .map_err(PromoteError::Lease)?;
    // Now that the epoch has begun, a second look drops any late write that landed since.
    let after = replicas_max(stores).await?;
    if after != max {
        return Err(PromoteError::ReplicaChanged { before: max, after });
    }
    Ok(start)
}

/// Finishes a promotion once the lease is ours and following has stopped: fences `run`'s
/// replicas, resets the local state, begins the epoch, applies everything before its first
/// TXID to `db` from the first replica, refuses unless the copy then ends exactly before
/// it, switches the copy to WAL mode and removes the `-txid` and `-promote` files. Returns
/// the fenced stores and the epoch's first TXID; `run` then replicates as the primary.
pub async fn finish_promotion(
    run: &mut DbRun,
    lease: &Arc<Lease>,
    db: &Path,
    interval: Duration,
) -> Result<(Vec<Arc<FencedStore>>, TxId), PromoteError> {
    let fenced = fence_run(run, lease);
    reset_local_state(run)?;
    let start = begin_epoch(lease, &fenced).await?;
    let no_txid = || PromoteError::NoAppliedTxid {
        db: db.to_path_buf(),
    };
    let applied = follow::read_applied_txid(db).ok_or_else(no_txid)?;
    // One pass: `stop` has changed to true before follow starts, so it applies what is
    // there and returns (follow waits for a change, not for the value).
    let (stop_tx, stop) = watch::channel(false);
    stop_tx.send_replace(true);
    let first: Arc<dyn ReplicaStore> = fenced[0].clone();
    follow::follow(first, db, applied, interval, stop).await?;
    let applied = follow::read_applied_txid(db).ok_or_else(no_txid)?;
    if applied.next().ok() != Some(start) {
        let end = TxId::new(start.get() - 1).ok();
        return Err(PromoteError::NotCaughtUp {
            db: db.to_path_buf(),
            applied,
            end,
        });
    }
    let path = db.to_path_buf();
    let switched = tokio::task::spawn_blocking(move || crate::sqlite::db::switch_to_wal(&path))
        .await
        .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
        .and_then(|r| r.map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>));
    switched.map_err(|source| PromoteError::SwitchToWal {
        db: db.to_path_buf(),
        source,
    })?;
    let _ = std::fs::remove_file(follow::txid_path(db));
    let _ = std::fs::remove_file(promote_path(db));
    Ok((fenced, start))
}
