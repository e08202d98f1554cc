//! The local meta directory of one database: durable L0 files waiting for upload.
//!
//! Owns: `<meta>/ltx/0/<txid>-<txid>.ltx` (the same layout as a file replica), finding the
//! last captured position after a restart (the newest local L0's header: TXID, WAL
//! offset/size, salts), and deleting files every replica already holds. Reporters read it
//! through [`LocalDir::existing`] and [`LocalDir::files`], which never create or change
//! anything.
//!
//! The newest local L0 file is never deleted: it *is* the durable position. There is no
//! separate position file to get out of step with the data.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use ltx::{Header, Level, TxId};

use crate::fsutil;
use crate::storage::layout::{Layout, LtxKey};

/// Default meta directory for a database: `<dir>/.<file>-sqlite-replicate`.
pub fn default_meta_dir(db: &Path) -> PathBuf {
    let name = db
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    db.with_file_name(format!(".{name}-sqlite-replicate"))
}

/// Where the WAL stood at the end of the last captured transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalPosition {
    pub salt1: u32,
    pub salt2: u32,
    /// Byte offset just past the last captured commit frame.
    pub offset: u64,
}

/// What the newest local L0 file says about the captured position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalPosition {
    pub txid: TxId,
    pub commit: u32,
    pub wal: Option<WalPosition>,
}

/// One local L0 file, as reporters see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalFile {
    pub txid: u64,
    pub size_bytes: u64,
    /// When it was written (about when the transaction was captured).
    pub modified_unix_ms: i64,
}

#[derive(Debug)]
pub struct LocalDir {
    meta: PathBuf,
    l0: PathBuf,
}

impl LocalDir {
    /// Opens (creating if needed) the meta directory and clears temp leftovers.
    pub fn open(meta: &Path) -> io::Result<LocalDir> {
        let l0 = meta.join(Layout::LtxDir.level_dir(Level::L0));
        fsutil::create_dir_all_durable(&l0)?;
        fsutil::remove_tmp_files(&l0)?;
        Ok(LocalDir {
            meta: meta.to_path_buf(),
            l0,
        })
    }

    /// The meta directory of a database that has been replicated before, for reading
    /// only (`status`); `None` when it has no local state. Creates nothing.
    pub fn existing(meta: &Path) -> Option<LocalDir> {
        let l0 = meta.join(Layout::LtxDir.level_dir(Level::L0));
        l0.is_dir().then(|| LocalDir {
            meta: meta.to_path_buf(),
            l0,
        })
    }

    /// Local L0 files with their sizes and times, ascending. Files pruned while listing
    /// are skipped.
    pub fn files(&self) -> io::Result<Vec<LocalFile>> {
        let mut out = Vec::new();
        for t in self.txids()? {
            match fs::metadata(self.path_of(t)) {
                Ok(m) => out.push(LocalFile {
                    txid: t.get(),
                    size_bytes: m.len(),
                    modified_unix_ms: m
                        .modified()
                        .ok()
                        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                        .map(|d| d.as_millis() as i64)
                        .unwrap_or(0),
                }),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Removes the temp file of a capture that failed half way (disk full, I/O error), so
    /// its space is free for the retry. Call only while no capture is running.
    pub fn clear_tmp(&self) -> io::Result<usize> {
        fsutil::remove_tmp_files(&self.l0)
    }

    pub fn meta_dir(&self) -> &Path {
        &self.meta
    }

    pub fn path_of(&self, txid: TxId) -> PathBuf {
        self.l0.join(LtxKey::new(Level::L0, txid, txid).file_name())
    }

    /// Local L0 TXIDs, ascending.
    pub fn txids(&self) -> io::Result<Vec<TxId>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.l0)? {
            let name = entry?.file_name();
            if let Some(k) = name
                .to_str()
                .and_then(|n| LtxKey::parse_file_name(Level::L0, n))
            {
                if k.min == k.max {
                    out.push(k.max);
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// The captured position after a restart, from the newest local file that decodes.
    /// A newest file that fails to decode (torn by a crash mid-write is impossible thanks
    /// to rename, but a disk may rot) is reported as an error rather than skipped.
    pub fn position(&self) -> io::Result<Option<LocalPosition>> {
        let Some(&txid) = self.txids()?.last() else {
            return Ok(None);
        };
        let data = fs::read(self.path_of(txid))?;
        let header = ltx::Header::from_bytes(&data).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", self.path_of(txid).display()),
            )
        })?;
        Ok(Some(position_of(&header)))
    }

    /// Stores a freshly encoded L0 file durably. The mtime is the header timestamp.
    pub fn write(&self, txid: TxId, data: &[u8], timestamp_ms: i64) -> io::Result<()> {
        fsutil::write_durable(&self.path_of(txid), data, Some(ms_to_time(timestamp_ms)))
    }

    pub fn read(&self, txid: TxId) -> io::Result<Bytes> {
        fs::read(self.path_of(txid)).map(Bytes::from)
    }

    /// Deletes local files with TXID <= `upto`, always keeping the newest one.
    pub fn prune(&self, upto: TxId) -> io::Result<usize> {
        let txids = self.txids()?;
        let Some(&newest) = txids.last() else {
            return Ok(0);
        };
        let mut n = 0;
        for t in txids {
            if t <= upto && t != newest {
                match fs::remove_file(self.path_of(t)) {
                    Ok(()) => n += 1,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        }
        // No directory fsync: a deleted file that reappears after a power cut is older than
        // the newest one, which alone decides the position, and every replica holds it.
        Ok(n)
    }

    /// Forgets every local file (used when the database was replaced under us and the
    /// local history no longer describes it).
    pub fn reset(&self) -> io::Result<()> {
        for t in self.txids()? {
            let _ = fs::remove_file(self.path_of(t));
        }
        fsutil::sync_dir(&self.l0)
    }
}

/// The captured position recorded in `meta` without opening it as a [`LocalDir`] (which
/// creates directories and clears temp files): for readers such as `verify` that may run
/// beside a live replicator. `None` when the directory holds no L0 file.
pub fn read_position(meta: &Path) -> io::Result<Option<LocalPosition>> {
    let l0 = meta.join(Layout::LtxDir.level_dir(Level::L0));
    let entries = match fs::read_dir(&l0) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut newest: Option<LtxKey> = None;
    for entry in entries {
        let name = entry?.file_name();
        if let Some(k) = name
            .to_str()
            .and_then(|n| LtxKey::parse_file_name(Level::L0, n))
        {
            if newest.is_none_or(|n| k.max > n.max) {
                newest = Some(k);
            }
        }
    }
    let Some(key) = newest else {
        return Ok(None);
    };
    let path = l0.join(key.file_name());
    let mut head = vec![0u8; ltx::HEADER_SIZE];
    {
        use std::io::Read;
        fs::File::open(&path)?.read_exact(&mut head)?;
    }
    let header = Header::from_bytes(&head).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {e}", path.display()),
        )
    })?;
    Ok(Some(position_of(&header)))
}

pub fn position_of(h: &Header) -> LocalPosition {
    let wal =
        (h.wal_offset >= 32 && (h.wal_salt1 != 0 || h.wal_salt2 != 0)).then_some(WalPosition {
            salt1: h.wal_salt1,
            salt2: h.wal_salt2,
            offset: h.wal_offset + h.wal_size,
        });
    LocalPosition {
        txid: h.max_txid,
        commit: h.commit,
        wal,
    }
}

pub fn ms_to_time(ms: i64) -> SystemTime {
    if ms >= 0 {
        UNIX_EPOCH + Duration::from_millis(ms as u64)
    } else {
        UNIX_EPOCH
    }
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
