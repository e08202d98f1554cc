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
//!
//! Each file is read as it is decoded, in ranged reads of the store's restore chunk size
//! (the listed size is bounded first: by any LTX file's largest, then by what the file's
//! own header allows), and its header's TXIDs must be the ones its name says: memory does
//! not follow a file's size, and a misnamed file cannot move the applied TXID.

use crate::platform::FileExt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use ltx::{Decoder, Level, TxId};
use rusqlite::{params, Connection};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::fsutil;
use crate::history::plan::continues;
use crate::history::{list_levels, Times};
use crate::storage::layout::{LtxInfo, LtxKey};
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
    /// The header's TXIDs are not the ones the file's name promises (see
    /// `ApplyError::NameMismatch`): applying it would record the wrong applied TXID.
    #[error("{file}: at byte 16: the header holds TXIDs {header_min}-{header_max}, not the ones its name says (misnamed or replaced file)")]
    NameMismatch {
        file: String,
        header_min: TxId,
        header_max: TxId,
    },
    /// A listed size no LTX file can have, or more than the file's header allows.
    #[error(
        "{file}: the store lists it as {listed} bytes, more than {limit} allows ({max} bytes)"
    )]
    ListedSizeTooLarge {
        file: String,
        listed: u64,
        max: u64,
        limit: &'static str,
    },
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
    files
        .iter()
        .filter(|f| !f.key.level.is_snapshot() && continues(&f.key, Some(applied)))
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
        let levels = Level::all().filter(|l| !l.is_snapshot());
        let files = list_levels(store.as_ref(), levels, Times::Listed).await?;
        let newest = files.iter().map(|f| f.key.max).max();
        while let Some(f) = next_file(&files, applied) {
            let max = ltx::max_any_file_bytes();
            if f.size_bytes > max {
                return Err(FollowError::ListedSizeTooLarge {
                    file: f.key.to_string(),
                    listed: f.size_bytes,
                    max,
                    limit: "any LTX file",
                });
            }
            let reader = RangedReader {
                rt: tokio::runtime::Handle::current(),
                store: store.clone(),
                key: f.key,
                size: f.size_bytes,
                at: 0,
                chunk: store.restore_chunk_bytes().max(1),
                cur: Bytes::new(),
                error: None,
            };
            let (out_path, info) = (out.to_path_buf(), f.clone());
            let header_max =
                tokio::task::spawn_blocking(move || apply_one(&out_path, &info, reader))
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

/// One file of the replica read front to back in ranged reads of `chunk` bytes, for a
/// blocking decoder: at most one chunk in memory. A storage error is kept in `error`
/// (the decoder sees an I/O error) so it is reported as what it is.
struct RangedReader {
    rt: tokio::runtime::Handle,
    store: Arc<dyn ReplicaStore>,
    key: LtxKey,
    /// The listed size: no byte past it is asked for.
    size: u64,
    at: u64,
    chunk: u64,
    cur: Bytes,
    error: Option<StorageError>,
}

impl RangedReader {
    fn fill(&mut self) -> Result<(), StorageError> {
        let end = self.at + (self.size - self.at).min(self.chunk);
        let b = self
            .rt
            .block_on(self.store.get(&self.key, Some(self.at..end)))?;
        if b.len() as u64 != end - self.at {
            return Err(StorageError::permanent(
                self.store.location().to_string(),
                self.key.to_string(),
                format!("asked for bytes {}..{end}, got {} bytes", self.at, b.len()),
            ));
        }
        self.at = end;
        self.cur = b;
        Ok(())
    }
}

impl Read for RangedReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.cur.is_empty() && self.at < self.size {
            if let Err(e) = self.fill() {
                let msg = e.to_string();
                self.error = Some(e);
                return Err(io::Error::other(msg));
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        bytes::Buf::advance(&mut self.cur, n);
        Ok(n)
    }
}

/// Applies one LTX file to the copy in a single SQLite transaction, reading it as it is
/// decoded; a failure part way rolls the transaction back. Invariant F1: readers see the
/// file applied whole or not at all.
fn apply_one(out: &Path, info: &LtxInfo, mut reader: RangedReader) -> Result<TxId, FollowError> {
    let result = apply_read(out, info, &mut reader);
    match (result, reader.error.take()) {
        (Err(FollowError::Decode { .. }), Some(e)) => Err(FollowError::Storage(e)),
        (r, _) => r,
    }
}

fn apply_read(out: &Path, info: &LtxInfo, reader: impl Read) -> Result<TxId, FollowError> {
    let name = &info.key.to_string();
    let sq = |source| FollowError::Sqlite {
        path: out.to_path_buf(),
        source,
    };
    let mut dec = Decoder::new(reader).map_err(|source| FollowError::Decode {
        file: name.to_string(),
        source,
    })?;
    let header = dec.header().clone();
    if (header.min_txid, header.max_txid) != (info.key.min, info.key.max) {
        return Err(FollowError::NameMismatch {
            file: name.to_string(),
            header_min: header.min_txid,
            header_max: header.max_txid,
        });
    }
    if info.size_bytes > header.max_file_bytes() {
        return Err(FollowError::ListedSizeTooLarge {
            file: name.to_string(),
            listed: info.size_bytes,
            max: header.max_file_bytes(),
            limit: "its header",
        });
    }
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
