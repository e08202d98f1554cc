//! Follow mode: keep a restored copy current with its replica, as a read-only replica
//! that other processes can query while it updates.
//!
//! Owns: polling the replica for files after the applied TXID, applying each file's
//! pages inside one SQLite transaction through the writable `sqlite_dbpage` table (so
//! SQLite's own rollback journal and locks make every TXID appear atomically to readers:
//! nobody sees half a transaction), persisting the applied TXID in `<out>-txid`
//! (resumable after restart), and reporting lag.
//!
//! The copy is switched to rollback-journal mode (page 1 bytes 18-19 = 1) when first
//! restored, as Litestream's follow mode does, so readers need no `-shm`.

use std::fs::File;
use std::io::Cursor;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ltx::{Decoder, Level, TxId};
use rusqlite::{params, Connection};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::fsutil;
use crate::storage::layout::LtxInfo;
use crate::storage::{ReplicaStore, StorageError};

#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    #[error("{0}")]
    Storage(#[from] StorageError),
    #[error("{file}: {source}")]
    Decode {
        file: String,
        source: ltx::DecodeError,
    },
    #[error("{path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "replica history has a gap after TXID {applied}: restart the follower with a fresh restore"
    )]
    Gap { applied: TxId },
}

/// Path of the file recording the applied TXID: `<out>-txid`.
pub fn txid_path(out: &Path) -> PathBuf {
    let mut p = out.as_os_str().to_os_string();
    p.push("-txid");
    PathBuf::from(p)
}

/// Reads `<out>-txid` (16 hex digits and a newline).
pub fn read_applied_txid(out: &Path) -> Option<TxId> {
    let s = std::fs::read_to_string(txid_path(out)).ok()?;
    TxId::parse_hex16(s.trim()).ok()
}

pub fn write_applied_txid(out: &Path, txid: TxId) -> std::io::Result<()> {
    fsutil::write_durable(&txid_path(out), format!("{txid}\n").as_bytes(), None)
}

/// Sets page 1's read/write format bytes to rollback-journal mode.
pub fn set_rollback_mode(file: &File) -> std::io::Result<()> {
    file.write_all_at(&[1, 1], 18)
}

/// Picks the next file to apply after `applied`: contiguous, largest max, levels 0..=8.
pub fn next_file(files: &[LtxInfo], applied: TxId) -> Option<&LtxInfo> {
    let next = applied.get() + 1;
    files
        .iter()
        .filter(|f| {
            f.key.level != Level::SNAPSHOT && f.key.min.get() <= next && f.key.max.get() >= next
        })
        .max_by_key(|f| (f.key.max, std::cmp::Reverse(f.key.min), f.key.level))
}

/// Polls the replica every `interval` and applies new files until `stop` turns true.
pub async fn follow(
    store: Arc<dyn ReplicaStore>,
    out: &Path,
    mut applied: TxId,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) -> Result<(), FollowError> {
    write_applied_txid(out, applied).map_err(|source| FollowError::Io {
        path: txid_path(out),
        source,
    })?;
    info!(db = %out.display(), txid = %applied, "following replica");
    loop {
        let mut files = Vec::new();
        for level in (0..=8).map(|l| Level::new(l).expect("valid")) {
            files.extend(store.list(level).await?);
        }
        let newest = files.iter().map(|f| f.key.max).max();
        while let Some(f) = next_file(&files, applied) {
            let data = store.get(&f.key, None).await?;
            let (out_path, name, data) = (out.to_path_buf(), f.key.to_string(), data);
            let header_max =
                tokio::task::spawn_blocking(move || apply_one(&out_path, &name, &data))
                    .await
                    .map_err(|e| FollowError::Io {
                        path: out.to_path_buf(),
                        source: std::io::Error::other(e.to_string()),
                    })??;
            applied = header_max;
            write_applied_txid(out, applied).map_err(|source| FollowError::Io {
                path: txid_path(out),
                source,
            })?;
            let lag = f.created.elapsed().unwrap_or_default();
            info!(db = %out.display(), txid = %applied, lag_ms = lag.as_millis() as u64, "applied");
        }
        if let Some(n) = newest {
            if n > applied {
                warn!(db = %out.display(), applied = %applied, newest = %n, "replica has files beyond a gap");
                return Err(FollowError::Gap { applied });
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return Ok(()),
        }
    }
}

/// Applies one LTX file to the copy in a single SQLite transaction.
fn apply_one(out: &Path, name: &str, data: &[u8]) -> Result<TxId, FollowError> {
    let sq = |source| FollowError::Sqlite {
        path: out.to_path_buf(),
        source,
    };
    let mut dec = Decoder::new(Cursor::new(data)).map_err(|source| FollowError::Decode {
        file: name.to_string(),
        source,
    })?;
    let header = dec.header().clone();
    let mut conn = Connection::open(out).map_err(sq)?;
    conn.busy_timeout(Duration::from_secs(30)).map_err(sq)?;
    let counter = {
        let f = File::open(out).map_err(|source| FollowError::Io {
            path: out.to_path_buf(),
            source,
        })?;
        let mut b = [0u8; 4];
        f.read_exact_at(&mut b, 24)
            .map_err(|source| FollowError::Io {
                path: out.to_path_buf(),
                source,
            })?;
        b
    };
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Exclusive)
        .map_err(sq)?;
    {
        let mut ins = tx
            .prepare("INSERT INTO sqlite_dbpage(pgno, data) VALUES (?1, ?2)")
            .map_err(sq)?;
        let mut buf = vec![0u8; header.page_size.bytes()];
        while let Some(pgno) = dec
            .next_page(&mut buf)
            .map_err(|source| FollowError::Decode {
                file: name.to_string(),
                source,
            })?
        {
            if pgno.get() > header.commit {
                continue;
            }
            if pgno.get() == 1 {
                buf[18] = 1;
                buf[19] = 1;
                // Keep the change counter moving forward for readers' caches; SQLite adds one at commit.
                buf[24..28].copy_from_slice(&counter);
            }
            ins.execute(params![pgno.get() as i64, &buf[..]])
                .map_err(sq)?;
        }
        dec.finish().map_err(|source| FollowError::Decode {
            file: name.to_string(),
            source,
        })?;
        // Shrink to the file's commit size (must be the last write of the transaction).
        let pages: i64 = tx
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .map_err(sq)?;
        if pages > header.commit as i64 {
            ins.execute(params![header.commit as i64 + 1, rusqlite::types::Null])
                .map_err(sq)?;
        }
    }
    tx.commit().map_err(sq)?;
    Ok(header.max_txid)
}

/// Seconds since the replica's newest file was created, for lag reports.
pub fn lag_of(created: SystemTime) -> Duration {
    created.elapsed().unwrap_or_default()
}
