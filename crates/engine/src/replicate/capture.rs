//! Turning committed WAL frames into L0 files, one TXID per capture.
//!
//! Owns: the captured position (TXID, database size, WAL cursor), the decision between
//! an incremental file (the frames since the cursor) and a full-database file (when
//! continuity cannot be proven), our own checkpoints, and writing each L0 file durably
//! into the local meta directory. Runs on a blocking thread; the async loop in
//! `replicate/mod.rs` (`run_database`) drives it.
//!
//! Invariants (docs/design.md):
//! - C1: a TXID is never reused or lowered: the next TXID is max(local, every replica) + 1.
//! - C2: an incremental file is written only when every frame between the cursor and the
//!   WAL end is known to be unbroken: same salts and a valid checksum chain, or exactly one
//!   WAL restart observed while our pin was held without a break (W1 in `sqlite::db`).
//! - C3: otherwise the next TXID is a full-database image read through a read transaction
//!   that began while we held the write lock, so it is exactly the committed state.

use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ltx::{Encoder, Header, PageEncoding, PageNo, TxId};
use tracing::{debug, info, warn};

use super::local::{now_ms, LocalDir, LocalPosition};
use super::status::DbStatus;
use crate::fsutil;
use crate::sqlite::db::{DbConns, DbError};
use crate::sqlite::wal::{self as walscan, ScanFrom, WalCursor};

/// Largest capture (pages times page size) encoded in memory rather than streamed to a
/// temp file.
const MEMORY_CAPTURE_MAX: u64 = 16 << 20;

/// The WAL as one capture reads it: the descriptor [`Capture`] keeps open between captures
/// and the size its `fstat` found.
struct WalView {
    file: Arc<File>,
    size: u64,
}

impl walscan::ReadAt for WalView {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        crate::platform::FileExt::read_exact_at(&*self.file, buf, offset)
    }
    fn size(&self) -> std::io::Result<u64> {
        Ok(self.size)
    }
}

/// Where an L0 file is encoded: memory (small captures) or a temp file (large ones).
enum Sink {
    Memory(Vec<u8>),
    File(BufWriter<File>),
}

impl std::io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Sink::Memory(v) => v.write(buf),
            Sink::File(f) => f.write(buf),
        }
    }
    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::Memory(v) => v.write_all(buf),
            Sink::File(f) => f.write_all(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::Memory(_) => Ok(()),
            Sink::File(f) => f.flush(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("{db}: reading WAL: {source}")]
    Wal { db: String, source: std::io::Error },
    #[error("{db}: writing local file for TXID {txid}: {source}")]
    Local {
        db: String,
        txid: TxId,
        source: std::io::Error,
    },
    #[error("{db}: making local captures durable before a checkpoint: {source}")]
    SyncPending { db: String, source: std::io::Error },
    #[error("{db}: encoding TXID {txid}: {source}")]
    Encode {
        db: String,
        txid: TxId,
        source: ltx::EncodeError,
    },
    #[error("{db}: TXID counter exhausted")]
    TxIdOverflow { db: String },
}

impl CaptureError {
    /// The capture failed for lack of local disk space (ENOSPC, or EDQUOT on a quota;
    /// SQLite's SQLITE_FULL): Litestream's `litestream_disk_full`.
    pub fn is_disk_full(&self) -> bool {
        let mut e: Option<&(dyn std::error::Error + 'static)> = Some(self);
        while let Some(err) = e {
            if let Some(io) = err.downcast_ref::<std::io::Error>() {
                if matches!(
                    io.kind(),
                    std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
                ) {
                    return true;
                }
            }
            if let Some(rusqlite::Error::SqliteFailure(f, _)) = err.downcast_ref() {
                if f.code == rusqlite::ErrorCode::DiskFull {
                    return true;
                }
            }
            e = err.source();
        }
        false
    }
}

impl CaptureError {
    /// The capture failed because this process ran out of file descriptors (EMFILE,
    /// or SQLite's "unable to open database file" while at the limit).
    pub fn is_out_of_descriptors(&self) -> bool {
        crate::platform::descriptors_exhausted(&crate::storage::objstore_error::chain_text(self))
    }
}

/// How long our checkpoint may be put off while an application holds the write lock
/// back to back (each attempt polls for ~20 ms); after that an attempt waits for the lock
/// with the connection's busy timeout, as before.
pub const MAX_CHECKPOINT_DEFERRAL: Duration = Duration::from_secs(10);

/// Settings the capture needs.
#[derive(Clone, Debug)]
pub struct CaptureOptions {
    pub encoding: PageEncoding,
    /// Run our PASSIVE checkpoint once the WAL holds this many pages.
    pub min_checkpoint_pages: u32,
    /// Also checkpoint after this long if anything was captured since the last one.
    pub checkpoint_interval: Duration,
    /// Litestream's `truncate-page-n`: once the WAL file holds this many pages, an
    /// emergency TRUNCATE checkpoint shrinks it to nothing (`Capture::truncate_wal`).
    pub truncate_pages: u32,
    /// Litestream's `max-sync-wal-bytes`: one L0 file covers at most about this many WAL
    /// bytes (cut at the first commit past it, so a larger transaction stays whole); one
    /// capture then writes several files. `None`: no limit.
    pub max_wal_bytes: Option<u64>,
}

/// Litestream's `truncate-page-n` default: about 500 MB of WAL at 4 KiB pages.
pub const DEFAULT_TRUNCATE_PAGES: u32 = crate::defaults::TRUNCATE_PAGES;

/// After an emergency TRUNCATE checkpoint (done or refused by a busy reader), the next
/// is not tried for this long: each costs a full-database file.
const TRUNCATE_RETRY_AFTER: Duration = Duration::from_secs(60);

/// How often [`Capture::yield_to_checkpointer`] looks at the wal-index while an
/// application's blocking checkpoint runs, and for how long at most before it hands back
/// to the loop (which looks again soon, see [`Checkpointer::Running`]).
const YIELD_POLL: Duration = Duration::from_millis(1);
const YIELD_FOLLOW_MAX: Duration = Duration::from_millis(100);

/// What [`Capture::yield_to_checkpointer`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Checkpointer {
    /// No checkpoint of another process is running (or none can be seen).
    Idle,
    /// One is running still, or the pin was just moved for one: look again soon.
    Running,
}

/// What one capture produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Produced {
    pub txid: TxId,
    pub full_image: bool,
}

/// Where the WAL stood after our last capture, as far as we can prove.
#[derive(Clone, Copy, Debug)]
enum Cursor {
    /// Unknown: the next capture must be a full image (C3).
    Unknown,
    /// There was no WAL content when we captured; anything that appears later is new.
    Empty,
    At(WalCursor),
}

pub struct Capture {
    name: String,
    conns: DbConns,
    local: Arc<LocalDir>,
    status: Arc<DbStatus>,
    opts: CaptureOptions,
    /// Last TXID written (`None` before the first of the history).
    txid: Option<TxId>,
    commit: u32,
    cursor: Cursor,
    last_checkpoint: Instant,
    captured_since_checkpoint: bool,
    /// When checkpoints started being put off because the write lock stayed busy.
    deferred_since: Option<Instant>,
    /// The cursor was recovered from the local position at start and the live WAL has not
    /// been scanned in that generation since our pin began. Until it has, a WAL restart
    /// proves nothing: frames written while we were stopped may have been checkpointed and
    /// the WAL restarted over them before our first scan (found by the crash tests: a
    /// restore missing one transaction's page). So a restart seen first is a full image.
    resumed: bool,
    /// The active pin's read transaction began at the cursor: a capture that moved it found
    /// nothing new after it. Moving it again before anything new is captured would change
    /// nothing but keep a second connection open (see [`Capture::step`]).
    pin_at_cursor: bool,
    /// Every file written since the driver last asked ([`Capture::take_produced`]), so that
    /// a cycle failing after a capture (say, the checkpoint that follows it) still hands
    /// what it wrote to the uploaders.
    produced: Vec<Produced>,
    /// The WAL, kept open while the database is busy (an open and close per capture cost
    /// two path lookups and wake the change watcher twice). SQLite takes no locks on the
    /// WAL file itself (its locks live on the database and `-shm` files), so closing this
    /// descriptor drops none of them. Dropped when the file is unlinked (a new WAL then
    /// lives at the path) and while the database is quiet.
    wal: Option<Arc<File>>,
    /// When the last emergency TRUNCATE checkpoint was tried ([`Capture::truncate_wal`]).
    last_truncate: Option<Instant>,
    /// The last incremental capture stopped at `max_wal_bytes` with more frames after it.
    cut_short: bool,
    /// Tests: runs between an incremental capture's scan and its page reads.
    #[cfg(test)]
    after_scan: Option<Box<dyn FnMut() + Send>>,
}

impl Capture {
    /// Opens the database and recovers the position: from the newest local file when its
    /// WAL coordinates still match the live WAL, else a full image at the next TXID.
    /// `remote_max` is the highest TXID any replica holds.
    pub fn open(
        name: String,
        conns: DbConns,
        local: Arc<LocalDir>,
        status: Arc<DbStatus>,
        opts: CaptureOptions,
        remote_max: Option<TxId>,
    ) -> Result<Capture, CaptureError> {
        let pos = local.position().map_err(|source| CaptureError::Wal {
            db: name.clone(),
            source,
        })?;
        let mut c = Capture {
            name,
            conns,
            local,
            status,
            opts,
            txid: None,
            commit: 0,
            cursor: Cursor::Unknown,
            last_checkpoint: Instant::now(),
            captured_since_checkpoint: false,
            deferred_since: None,
            resumed: false,
            pin_at_cursor: false,
            produced: Vec::new(),
            wal: None,
            last_truncate: None,
            cut_short: false,
            #[cfg(test)]
            after_scan: None,
        };
        match pos {
            Some(LocalPosition { txid, commit, wal }) if Some(txid) >= remote_max => {
                c.txid = Some(txid);
                c.commit = commit;
                c.conns.begin_pin()?;
                c.conns.release_old_pin()?;
                if let Some(w) = wal {
                    let f = c.open_wal()?;
                    match f.as_ref().map(|f| {
                        walscan::verify_prefix(f, c.conns.page_size(), w.salt1, w.salt2, w.offset)
                    }) {
                        Some(Ok(Some(cur))) => {
                            c.cursor = Cursor::At(cur);
                            c.resumed = true;
                        }
                        Some(Err(source)) => {
                            return Err(CaptureError::Wal {
                                db: c.name.clone(),
                                source,
                            })
                        }
                        _ => {
                            info!(db = %c.name, "WAL changed while the replicator was stopped; next TXID is a full image")
                        }
                    }
                }
            }
            Some(p) => {
                info!(db = %c.name, local = %p.txid, remote = %format!("{:016x}", super::progress::raw(remote_max)),
                      "a replica is ahead of local state (database restored or meta dir lost); next TXID is a full image");
                c.txid = remote_max;
                c.local.reset().map_err(|source| CaptureError::Local {
                    db: c.name.clone(),
                    txid: p.txid,
                    source,
                })?;
            }
            None => c.txid = remote_max,
        }
        c.status.progress.set_local(c.txid);
        Ok(c)
    }

    /// The last TXID written, `None` before the first of the history.
    pub fn txid(&self) -> Option<TxId> {
        self.txid
    }

    fn next_txid(&self) -> Result<TxId, CaptureError> {
        self.txid
            .map_or(Ok(TxId::ONE), TxId::next)
            .map_err(|_| CaptureError::TxIdOverflow {
                db: self.name.clone(),
            })
    }

    fn open_wal(&mut self) -> Result<Option<WalView>, CaptureError> {
        let wal_err = |name: &str, source| CaptureError::Wal {
            db: name.to_string(),
            source,
        };
        if let Some(f) = &self.wal {
            match crate::platform::size_if_linked(f) {
                // Still linked: the WAL at the path (SQLite never renames over it).
                Ok(Some(size)) => {
                    return Ok(Some(WalView {
                        file: f.clone(),
                        size,
                    }))
                }
                _ => self.wal = None,
            }
        }
        let f = match File::open(&self.conns.paths().wal) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(wal_err(&self.name, source)),
        };
        let size = f.metadata().map_err(|e| wal_err(&self.name, e))?.len();
        let file = Arc::new(f);
        self.wal = Some(file.clone());
        Ok(Some(WalView { file, size }))
    }

    /// Forces the next capture to be a full image (a replica asked for one).
    pub fn request_full_image(&mut self) {
        self.cursor = Cursor::Unknown;
    }

    /// One capture: new committed frames become the next TXID. Returns None when there
    /// was nothing new.
    pub fn step(&mut self) -> Result<Option<Produced>, CaptureError> {
        if self.conns.replaced() {
            // Restored or copied over while we ran: nothing we know about the old file's
            // WAL applies; the new content goes out as the next TXID, complete (C3).
            warn!(db = %self.name, "database file was replaced; next TXID is a full image");
            self.wal = None;
            self.conns.reopen()?;
            self.cursor = Cursor::Unknown;
        }
        if matches!(self.cursor, Cursor::Unknown) {
            return self.full_image().map(Some);
        }
        // Move the pin first: it protects everything after the old cursor (W1). Not when
        // it already began at the cursor: it protects everything after the cursor as it
        // is, and a quiet database woken with nothing new (a change notification for an
        // application read or checkpoint) then keeps its single connection instead of
        // reopening the second one (`DbConns::trim`). A capture taken under that pin
        // leaves it behind the new cursor, and the next capture moves it.
        let move_pin = !self.pin_at_cursor || !self.conns.has_pin();
        self.pin_at_cursor = false;
        if move_pin {
            self.conns.begin_pin()?;
        }
        let mut r = self.capture_incremental();
        // `max-sync-wal-bytes`: the rest of the WAL goes into further files, under the
        // same pin; the driver hands every one to the uploaders (`take_produced`).
        while self.cut_short && matches!(r, Ok(Some(_))) {
            r = self.capture_incremental();
        }
        match &r {
            // Release the old pin only after the frames it protected are safely written.
            Ok(produced) => {
                if move_pin {
                    self.conns.release_old_pin()?;
                }
                // Nothing new after a move: the pin began at the cursor, or (a move that
                // found nothing) it stays there.
                self.pin_at_cursor = produced.is_none();
            }
            // The new pin may sit past frames we did not capture; nothing after the
            // cursor can be proven any more, so the next TXID is a full image (C3).
            Err(_) => self.cursor = Cursor::Unknown,
        }
        r
    }

    /// [`Capture::step`] that always moves the pin to the WAL end: for a pin that must
    /// leave its read mark (an application checkpoint waits on it) or its connection (one
    /// that loaded the schema).
    fn step_moving_pin(&mut self) -> Result<Option<Produced>, CaptureError> {
        self.pin_at_cursor = false;
        self.step()
    }

    fn capture_incremental(&mut self) -> Result<Option<Produced>, CaptureError> {
        let Some(wal) = self.open_wal()? else {
            return Ok(None);
        };
        let page_size = self.conns.page_size();
        let from = match self.cursor {
            Cursor::At(c) => ScanFrom::Cursor(c),
            _ => ScanFrom::Start,
        };
        self.cut_short = false;
        let scan = walscan::scan_limited(&wal, page_size, &from, self.opts.max_wal_bytes).map_err(
            |source| CaptureError::Wal {
                db: self.name.clone(),
                source,
            },
        )?;
        self.status
            .wal_size_bytes
            .store(scan.file_size, Ordering::Relaxed);
        let scan = match scan.outcome {
            walscan::Outcome::NoHeader => return Ok(None),
            walscan::Outcome::Unrelated => {
                // Salts changed in a way our pin cannot explain (more than one restart, or a
                // WAL replaced by another process): prove nothing, take a full image (C3).
                warn!(db = %self.name, "WAL was reset by another process; next TXID is a full image");
                return self.full_image().map(Some);
            }
            walscan::Outcome::Frames(s) => s,
        };
        if self.resumed {
            self.resumed = false;
            if let Cursor::At(c) = self.cursor {
                if (scan.end.salt1, scan.end.salt2) != (c.salt1, c.salt2) {
                    warn!(db = %self.name, "WAL restarted before the first scan after start; next TXID is a full image");
                    return self.full_image().map(Some);
                }
            }
        }
        if let Some(corrupt) = &scan.corruption {
            warn!(db = %self.name, detail = %corrupt, "WAL has a damaged frame; capturing up to the last good commit");
        }
        let Some(commit) = scan.commit else {
            return Ok(None); // no new commit yet (a writer is mid-transaction)
        };
        #[cfg(test)]
        if let Some(hook) = self.after_scan.as_mut() {
            hook();
        }
        let txid = self.next_txid()?;
        let mut header = Header::new(page_size, commit, txid, txid, now_ms());
        header.wal_offset = scan.start;
        header.wal_size = scan.end.offset - scan.start;
        header.wal_salt1 = scan.end.salt1;
        header.wal_salt2 = scan.end.salt2;
        // Small captures (all of them under a steady load) are encoded in memory and
        // written without an fsync (`LocalDir::write_capture`); a huge one streams to disk.
        let in_memory = (scan.pages.len() as u64)
            .saturating_add(commit.saturating_sub(self.commit) as u64)
            .saturating_mul(page_size.bytes() as u64)
            <= MEMORY_CAPTURE_MAX;
        let (tmp, mut enc) = self.start_file(&header, in_memory)?;
        self.write_pages(&wal, &scan, commit, &mut enc, txid)?;
        // W3: the pages just read are the scanned frames' only if the WAL was not
        // restarted meanwhile. Our pin holds a restart off only from read mark 1 up; a pin
        // begun on a fully backfilled WAL has mark 0, and after a restart of the
        // replicator the frames past the resumed cursor may be backfilled already (the
        // application checkpointed while we were stopped): the next writer may then
        // restart the WAL and write over them while we read (found by the crash tests: a
        // restore failing its integrity check from the first capture after a restart).
        let unchanged =
            walscan::still_generation_of(&wal, &scan.end).map_err(|source| CaptureError::Wal {
                db: self.name.clone(),
                source,
            })?;
        if !unchanged {
            drop(enc);
            if !tmp.as_os_str().is_empty() {
                let _ = std::fs::remove_file(&tmp);
            }
            warn!(db = %self.name, "WAL restarted while its frames were read; next TXID is a full image");
            return self.full_image().map(Some);
        }
        self.finish_file(enc, &tmp, txid)?;
        self.status
            .wal_bytes_captured
            .fetch_add(header.wal_size, Ordering::Relaxed);
        self.cursor = Cursor::At(scan.end);
        self.commit = commit;
        self.cut_short = scan.cut;
        self.after_write(txid, false);
        debug!(db = %self.name, txid = %txid, pages = scan.pages.len(), wal_offset = scan.start,
               wal_bytes = header.wal_size, "captured");
        Ok(Some(Produced {
            txid,
            full_image: false,
        }))
    }

    /// Encodes the pages of an incremental capture: each page's newest committed frame in
    /// `scan`, and the pages the database grew by up to `commit` that no frame carries
    /// (SQLite skips writing free-list leaves), read from the database file, so every file
    /// keeps every page up to its commit.
    fn write_pages(
        &self,
        wal: &WalView,
        scan: &walscan::Frames,
        commit: u32,
        enc: &mut Encoder<Sink>,
        txid: TxId,
    ) -> Result<(), CaptureError> {
        let page_size = self.conns.page_size();
        let lock = page_size.lock_page();
        let mut in_wal = scan.pages.iter().map(|&(p, _)| p.get()).peekable();
        let mut growth = Vec::new();
        for p in (self.commit + 1)..=commit {
            while in_wal.next_if(|&w| w < p).is_some() {}
            if in_wal.peek() != Some(&p) && p != lock.get() {
                growth.push(PageNo::new(p).expect("p >= 1"));
            }
        }
        let mut sources: Vec<(PageNo, Option<u64>)> =
            scan.pages.iter().map(|&(p, o)| (p, Some(o))).collect();
        sources.extend(growth.into_iter().map(|p| (p, None)));
        sources.sort_unstable_by_key(|&(p, _)| p);
        let mut buf = vec![0u8; page_size.bytes()];
        for (pgno, data_offset) in sources {
            if pgno.get() > commit || pgno == lock {
                continue;
            }
            match data_offset {
                Some(o) => {
                    walscan::read_page(wal, o, &mut buf).map_err(|source| CaptureError::Wal {
                        db: self.name.clone(),
                        source,
                    })?
                }
                None => self.conns.read_file_page(pgno, &mut buf)?,
            }
            enc.write_page(pgno, &buf)
                .map_err(|source| CaptureError::Encode {
                    db: self.name.clone(),
                    txid,
                    source,
                })?;
        }
        Ok(())
    }

    /// Starts the next local L0 file and writes its header: in memory, or in a fresh temp
    /// file on disk (its path returned; empty in memory); the caller adds pages and hands
    /// both to [`Capture::finish_file`].
    fn start_file(
        &self,
        header: &Header,
        in_memory: bool,
    ) -> Result<(PathBuf, Encoder<Sink>), CaptureError> {
        let txid = header.max_txid;
        let (tmp, sink) = if in_memory {
            (PathBuf::new(), Sink::Memory(Vec::new()))
        } else {
            let (file, tmp) = fsutil::create_tmp(&self.local.path_of(txid), self.local.mode())
                .map_err(|source| CaptureError::Local {
                    db: self.name.clone(),
                    txid,
                    source,
                })?;
            (tmp, Sink::File(BufWriter::new(file)))
        };
        let enc = Encoder::new(sink, header, self.opts.encoding).map_err(|source| {
            CaptureError::Encode {
                db: self.name.clone(),
                txid,
                source,
            }
        })?;
        Ok((tmp, enc))
    }

    /// Stores the finished file: an in-memory one through `LocalDir::write_capture` (no
    /// fsync), a streamed one durably (fsync, rename, directory fsync).
    fn finish_file(
        &self,
        enc: Encoder<Sink>,
        tmp: &std::path::Path,
        txid: TxId,
    ) -> Result<(), CaptureError> {
        let (w, _trailer) = enc.finish().map_err(|source| CaptureError::Encode {
            db: self.name.clone(),
            txid,
            source,
        })?;
        let local_err = |source| CaptureError::Local {
            db: self.name.clone(),
            txid,
            source,
        };
        match w {
            Sink::Memory(data) => self
                .local
                .write_capture(txid, bytes::Bytes::from(data))
                .map_err(local_err),
            Sink::File(w) => {
                let file = w.into_inner().map_err(|e| local_err(e.into_error()))?;
                fsutil::commit_tmp(tmp, &file, &self.local.path_of(txid)).map_err(local_err)?;
                self.local.note_synced(txid);
                Ok(())
            }
        }
    }

    fn after_write(&mut self, txid: TxId, full: bool) {
        self.txid = Some(txid);
        self.produced.push(Produced {
            txid,
            full_image: full,
        });
        self.captured_since_checkpoint = true;
        self.status.progress.set_local(self.txid);
        self.status
            .last_capture_ms
            .store(now_ms(), Ordering::Release);
        self.status.captures.fetch_add(1, Ordering::Relaxed);
        self.status.db_size_bytes.store(
            self.commit as u64 * self.conns.page_size().bytes() as u64,
            Ordering::Relaxed,
        );
        if full {
            self.status.snapshots_full.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Writes the whole database as the next TXID (C3). The write lock is held only while
    /// the read transaction starts and the WAL end is located, never during the copy.
    pub fn full_image(&mut self) -> Result<Produced, CaptureError> {
        let txid = self.next_txid()?;
        let page_size = self.conns.page_size();
        self.pin_at_cursor = false;
        self.conns.begin_barrier()?;
        let located = (|| -> Result<Cursor, CaptureError> {
            self.conns.begin_pin()?;
            self.conns.release_old_pin()?;
            let Some(wal) = self.open_wal()? else {
                return Ok(Cursor::Empty);
            };
            let scan = walscan::scan(&wal, page_size, &ScanFrom::Start).map_err(|source| {
                CaptureError::Wal {
                    db: self.name.clone(),
                    source,
                }
            })?;
            Ok(match scan.outcome {
                walscan::Outcome::Frames(s) if s.end.offset > 32 => Cursor::At(s.end),
                _ => Cursor::Empty,
            })
        })();
        self.conns.end_barrier()?;
        let cursor = located?;
        let commit = self.conns.page_count()?;
        let mut header = Header::new(page_size, commit, txid, txid, now_ms());
        match cursor {
            Cursor::At(c) => {
                header.wal_offset = c.offset;
                header.wal_salt1 = c.salt1;
                header.wal_salt2 = c.salt2;
            }
            // Invariant H1: Litestream needs WAL coordinates >= 32 on every L0 file to take
            // over.
            _ => header.wal_offset = 32,
        }
        let (tmp, mut enc) = self.start_file(&header, false)?;
        let name = self.name.clone();
        let mut enc_err = None;
        // A large database's first image takes minutes: logged every few seconds.
        let progress = crate::progress::Logged::progress("full image", &self.name, None);
        let phase = crate::progress::Phase::Snapshot;
        progress.start(phase, Some(commit as u64 * page_size.get() as u64));
        self.conns
            .for_each_page(|pgno: PageNo, data| {
                progress.advance(data.len() as u64);
                if let Err(e) = enc.write_page(pgno, data) {
                    enc_err = Some(e);
                    return Err(DbError::Io {
                        path: name.clone().into(),
                        op: "encode page",
                        source: std::io::Error::other("encoder failed"),
                    });
                }
                Ok(())
            })
            .map_err(|e| match enc_err.take() {
                Some(source) => CaptureError::Encode {
                    db: self.name.clone(),
                    txid,
                    source,
                },
                None => CaptureError::Db(e),
            })?;
        self.finish_file(enc, &tmp, txid)?;
        progress.finish(phase);
        self.cursor = cursor;
        // The pin began under the write lock, where the cursor was located.
        self.pin_at_cursor = true;
        self.commit = commit;
        self.after_write(txid, true);
        info!(db = %self.name, txid = %txid, pages = commit, "full database image captured");
        Ok(Produced {
            txid,
            full_image: true,
        })
    }

    /// Our checkpoint policy: PASSIVE once the WAL passes the page threshold, or on the
    /// interval if anything changed. Then, holding the write lock for milliseconds, move
    /// our pin to read mark 0 so the application's next commit can restart the WAL.
    /// Returns any file captured while sealing the WAL.
    pub fn checkpoint_if_needed(&mut self) -> Result<Option<Produced>, CaptureError> {
        let Cursor::At(cur) = self.cursor else {
            return Ok(None);
        };
        let frame = self.conns.page_size().bytes() as u64 + 24;
        let wal_pages = cur.offset.saturating_sub(32) / frame;
        let by_size = wal_pages >= self.opts.min_checkpoint_pages as u64;
        let by_time = self.captured_since_checkpoint
            && self.last_checkpoint.elapsed() >= self.opts.checkpoint_interval;
        if self.wal_needs_truncate(frame) {
            return self.truncate_wal();
        }
        if !by_size && !by_time {
            return Ok(None);
        }
        self.checkpoint()
    }

    /// Whether the WAL file (its size, not our position in it) holds `truncate_pages`
    /// pages or more, and no emergency checkpoint was tried in the last minute.
    fn wal_needs_truncate(&self, frame: u64) -> bool {
        let wal_pages = self
            .status
            .wal_size_bytes
            .load(Ordering::Relaxed)
            .saturating_sub(32)
            / frame;
        wal_pages >= self.opts.truncate_pages as u64
            && self
                .last_truncate
                .is_none_or(|t| t.elapsed() >= TRUNCATE_RETRY_AFTER)
    }

    /// Litestream's emergency TRUNCATE checkpoint (`truncate-page-n`), for a WAL file grown
    /// far past the usual checkpoints (a long reader held them off, or one huge
    /// transaction): our regular checkpoint first (everything captured, backfilled, made
    /// durable), then our read transactions end and `PRAGMA wal_checkpoint(TRUNCATE)`
    /// shrinks the WAL file to zero bytes. That waits up to the busy timeout for the
    /// application's readers and writers, which meanwhile cannot commit (Litestream's
    /// stall too). With no pin held, commits that raced it cannot be proven captured, so
    /// the next TXID is a full-database image at once (C3), as Litestream's "checkpoint
    /// boundary snapshot" is. Not tried again for [`TRUNCATE_RETRY_AFTER`].
    fn truncate_wal(&mut self) -> Result<Option<Produced>, CaptureError> {
        self.last_truncate = Some(Instant::now());
        let before = self.status.wal_size_bytes.load(Ordering::Relaxed);
        let produced = self.checkpoint()?;
        self.conns.release_all();
        self.cursor = Cursor::Unknown;
        self.wal = None;
        let done = self.conns.checkpoint_truncate()?;
        let after = std::fs::metadata(&self.conns.paths().wal).map_or(0, |m| m.len());
        self.status.wal_size_bytes.store(after, Ordering::Relaxed);
        if done {
            warn!(db = %self.name, wal_bytes_before = before, wal_bytes_after = after,
                  "WAL passed truncate-page-n: emergency TRUNCATE checkpoint done; next TXID is a full image");
        } else {
            warn!(db = %self.name, wal_bytes = before,
                  "WAL passed truncate-page-n, but the emergency TRUNCATE checkpoint found the database busy; next TXID is a full image, retry in 1m");
        }
        // Files the checkpoint captured are in `produced` already; the image comes after.
        let _ = produced;
        self.full_image().map(Some)
    }

    /// When the interval checkpoint falls due: only after something was captured since
    /// the last checkpoint (the size threshold is checked after every capture). `None`
    /// while idle, so an idle database needs no timer for it.
    pub fn checkpoint_deadline(&self) -> Option<Instant> {
        (self.captured_since_checkpoint && matches!(self.cursor, Cursor::At(_)))
            .then(|| self.last_checkpoint + self.opts.checkpoint_interval)
    }

    /// Takes the write lock for milliseconds, backfills the WAL and moves the pin (see
    /// `checkpoint_if_needed`). A busy write lock puts it off to a later cycle, for at
    /// most `MAX_CHECKPOINT_DEFERRAL`.
    pub fn checkpoint(&mut self) -> Result<Option<Produced>, CaptureError> {
        let started = Instant::now();
        // Backfill most of the WAL without any lock held by us.
        let _ = self.conns.checkpoint_passive();
        // An application committing back to back may hold the write lock throughout: then
        // skip this checkpoint (the WAL just grows) and try again after the next capture,
        // rather than stall captures for the whole busy timeout.
        // Put off for longer than `MAX_CHECKPOINT_DEFERRAL`, wait for the lock with the
        // full busy timeout instead, so the WAL cannot grow without bound.
        let patient = self
            .deferred_since
            .is_some_and(|t| t.elapsed() >= MAX_CHECKPOINT_DEFERRAL);
        if patient {
            self.conns.begin_barrier()?;
        } else if !self.conns.try_begin_barrier()? {
            debug!(db = %self.name, "write lock busy; checkpoint deferred");
            self.deferred_since.get_or_insert_with(Instant::now);
            return Ok(None);
        }
        self.deferred_since = None;
        let r = (|| -> Result<Option<Produced>, CaptureError> {
            let produced = self.step()?;
            let _ = self.conns.checkpoint_passive()?;
            // Before the WAL may restart over what we captured, make the captures no
            // replica holds yet, and the position, durable (local.rs module docs).
            self.local
                .sync_pending(self.status.progress.replicated_floor())
                .map_err(|source| CaptureError::SyncPending {
                    db: self.name.clone(),
                    source,
                })?;
            // All frames backfilled: a new read transaction takes read mark 0, which lets
            // the next writer restart the WAL while still protecting whatever it writes.
            self.conns.begin_pin()?;
            self.conns.release_old_pin()?;
            Ok(produced)
        })();
        let end = self.conns.end_barrier();
        self.conns.trim();
        self.status
            .checkpoint_micros
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        match &r {
            Ok(_) => {
                self.status.checkpoints.fetch_add(1, Ordering::Relaxed);
                self.status
                    .last_checkpoint_ms
                    .store(now_ms(), Ordering::Release);
                self.last_checkpoint = Instant::now();
                self.captured_since_checkpoint = false;
            }
            Err(e) => {
                self.status
                    .checkpoint_errors
                    .fetch_add(1, Ordering::Relaxed);
                warn!(db = %self.name, error = %e, "checkpoint failed");
            }
        }
        end?;
        r
    }

    /// The files written since the last call, oldest first, whatever the calls that wrote
    /// them returned afterwards. The driver hands these, and only these, to the uploaders.
    pub fn take_produced(&mut self) -> Vec<Produced> {
        std::mem::take(&mut self.produced)
    }

    /// Gets the pin out of the way of the application's own checkpoints, at once rather
    /// than at the next [`Capture::settle`] (issue 26). Called after every capture.
    ///
    /// A RESTART or TRUNCATE checkpoint, once it has backfilled every frame, waits (its
    /// busy handler retrying at 1, 3, 8, 18, 33, ... ms) for every reader on read marks
    /// 1..N to end, and a FULL one waits for readers whose mark is behind the WAL end, or
    /// on read mark 0 (which blocks all backfilling). So:
    /// - The WAL fully backfilled (by anyone): the pin moves. [`Capture::step`] captures
    ///   whatever is new first, under a new read transaction, and only then ends the old
    ///   one (W1); begun on a fully backfilled WAL, the new one takes read mark 0, which a
    ///   restart does not wait for and which still blocks the backfilling of any frame
    ///   written after the restart. The WAL was captured to its end, so exactly one
    ///   restart follows, as W2 needs.
    /// - Another process runs a checkpoint holding the write lock (FULL, RESTART,
    ///   TRUNCATE; no commit can land meanwhile): the pin moves at once whatever the
    ///   wal-index says (so the checkpoint waits on us for at most one capture), and
    ///   again whenever the wal-index changes, polling every millisecond for at most
    ///   100 ms while that checkpoint runs.
    ///
    /// Costs one `-shm` read and one or two `F_GETLK` queries when nothing runs. Blind to
    /// an application in this same process (POSIX locks of one process do not conflict):
    /// [`Capture::settle`] still moves the pin for it, later.
    pub fn yield_to_checkpointer(&mut self) -> Result<Checkpointer, CaptureError> {
        if matches!(self.cursor, Cursor::Unknown) || !self.conns.has_pin() {
            return Ok(Checkpointer::Idle);
        }
        let started = Instant::now();
        let mut moved = false;
        loop {
            let locks = self.conns.foreign_locks();
            let Some(info) = self.conns.shm_info() else {
                return Ok(Checkpointer::Idle);
            };
            let blocking = locks.is_some_and(|l| l.blocking_checkpoint());
            // A pin begun on a fully backfilled WAL holds read mark 0, which blocks every
            // backfill of the frames written since (captured by now, or by the move).
            let on_mark0_behind = !info.fully_backfilled()
                && self
                    .conns
                    .pin_began_at()
                    .is_some_and(|b| b.fully_backfilled());
            // A pin begun at this very state is what a move would give.
            if info.mx_frame > 0
                && (blocking || info.fully_backfilled() || on_mark0_behind)
                && self.conns.pin_began_at() != Some(info)
            {
                self.step_moving_pin()?;
                debug!(db = %self.name, mx_frame = info.mx_frame, backfilled = info.n_backfill,
                       checkpointer = blocking, "pin moved for a checkpoint");
                moved = true;
            }
            if !blocking {
                let running = moved || locks.is_some_and(|l| l.checkpoint);
                return Ok(if running {
                    Checkpointer::Running
                } else {
                    Checkpointer::Idle
                });
            }
            if started.elapsed() >= YIELD_FOLLOW_MAX {
                return Ok(Checkpointer::Running);
            }
            std::thread::sleep(YIELD_POLL);
        }
    }

    /// Moves the pin when the WAL has been fully backfilled by someone else (e.g. the
    /// application's own RESTART or TRUNCATE checkpoint, which waits for readers): a fresh
    /// read transaction then takes read mark 0 and stops blocking it. Cheap: one read of
    /// the `-shm` header. Returns true if the pin still needs watching.
    pub fn settle(&mut self) -> Result<bool, CaptureError> {
        let watch = match self.conns.shm_info() {
            // Begun there already (moved by `yield_to_checkpointer`, or by a capture).
            Some(info) if info.fully_backfilled() && self.conns.pin_began_at() == Some(info) => {
                false
            }
            Some(info) if info.fully_backfilled() => {
                // Anything new must be captured before the old pin goes.
                let produced = self.step_moving_pin()?;
                produced.is_some()
            }
            Some(_) => true,
            None => false,
        };
        if !watch {
            // Quiet, nothing left to watch: keep only the pin's connection
            // (`DbConns::trim`). A pin on the connection that read the whole database moves
            // to a fresh one first (a capture moves it), so the schema it loaded goes too.
            // Not while watching: every cycle then moves the pin, and reopening a
            // connection each time costs 80 times the move.
            if self.conns.pin_is_heavy() && !matches!(self.cursor, Cursor::Unknown) {
                self.step_moving_pin()?;
            }
            self.conns.trim();
            self.wal = None;
        }
        Ok(watch)
    }

    pub fn close(&mut self) {
        if let Err(e) = self
            .local
            .sync_pending(self.status.progress.replicated_floor())
        {
            warn!(db = %self.name, error = %e, "cannot sync local files at shutdown");
        }
        self.wal = None;
        self.conns.release_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_full_is_seen_through_the_error_chain() {
        let t = TxId::new(3).unwrap();
        let local = |e: std::io::Error| CaptureError::Local {
            db: "a.db".into(),
            txid: t,
            source: e,
        };
        assert!(local(std::io::Error::from(std::io::ErrorKind::StorageFull)).is_disk_full());
        assert!(local(std::io::Error::from(std::io::ErrorKind::QuotaExceeded)).is_disk_full());
        assert!(!local(std::io::Error::from(std::io::ErrorKind::PermissionDenied)).is_disk_full());
        let enc = CaptureError::Encode {
            db: "a.db".into(),
            txid: t,
            source: ltx::EncodeError::Io {
                offset: 9,
                source: std::io::Error::from(std::io::ErrorKind::StorageFull),
            },
        };
        assert!(enc.is_disk_full());
        assert!(!CaptureError::TxIdOverflow { db: "a.db".into() }.is_disk_full());
    }

    /// An application holding the write lock puts our checkpoint off (no error, no
    /// stall past the short poll); once it has been put off for longer than
    /// `MAX_CHECKPOINT_DEFERRAL`, the checkpoint waits the full busy timeout and fails
    /// busy instead of being put off again; with the lock free it runs.
    #[test]
    fn a_busy_write_lock_defers_the_checkpoint_for_a_bounded_time() {
        let d = tempfile::tempdir().unwrap();
        let db = d.path().join("app.db");
        let app = rusqlite::Connection::open(&db).unwrap();
        app.execute_batch(
            "PRAGMA journal_mode=WAL; CREATE TABLE t(v); INSERT INTO t VALUES (randomblob(5000));",
        )
        .unwrap();
        let conns = DbConns::open(&db, Duration::from_millis(300)).unwrap();
        let local = Arc::new(
            LocalDir::open(&d.path().join("meta"), crate::fsutil::FileMode::PRIVATE).unwrap(),
        );
        let opts = CaptureOptions {
            encoding: PageEncoding::Block,
            min_checkpoint_pages: 1,
            checkpoint_interval: Duration::from_secs(60),
            truncate_pages: DEFAULT_TRUNCATE_PAGES,
            max_wal_bytes: None,
        };
        let status = Arc::new(DbStatus::default());
        let mut cap = Capture::open("t".into(), conns, local, status.clone(), opts, None).unwrap();
        cap.step().unwrap();
        app.execute_batch("BEGIN IMMEDIATE; INSERT INTO t VALUES (1);")
            .unwrap();
        let t = Instant::now();
        assert!(cap.checkpoint().unwrap().is_none());
        assert!(cap.deferred_since.is_some(), "deferred");
        assert_eq!(status.checkpoints.load(Ordering::Relaxed), 0);
        assert!(
            t.elapsed() < Duration::from_millis(300),
            "{:?}",
            t.elapsed()
        );
        cap.deferred_since = Some(Instant::now() - MAX_CHECKPOINT_DEFERRAL);
        assert!(cap.checkpoint().is_err(), "waited for the lock, then busy");
        app.execute_batch("COMMIT").unwrap();
        cap.step().unwrap();
        cap.checkpoint().unwrap();
        assert!(cap.deferred_since.is_none());
        assert_eq!(status.checkpoints.load(Ordering::Relaxed), 1);
    }

    fn test_opts() -> CaptureOptions {
        CaptureOptions {
            encoding: PageEncoding::Block,
            min_checkpoint_pages: 1_000_000,
            checkpoint_interval: Duration::from_secs(3600),
            truncate_pages: DEFAULT_TRUNCATE_PAGES,
            max_wal_bytes: None,
        }
    }

    /// The pages of the database as SQLite sees them now.
    fn live_pages(db: &std::path::Path) -> Vec<(u32, Vec<u8>)> {
        let c = rusqlite::Connection::open(db).unwrap();
        let mut st = c
            .prepare("SELECT pgno, data FROM sqlite_dbpage('main') ORDER BY pgno")
            .unwrap();
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(|r| r.unwrap())
            .collect()
    }

    /// W3: the replicator restarts behind an application that wrote and then backfilled
    /// the whole WAL (a PASSIVE checkpoint with no reader). Its pin begins on read mark 0,
    /// which does not hold a WAL restart off; the application's next commit restarts the
    /// WAL and writes over the frames between the scan and the page reads of the first
    /// capture. That capture must not become an incremental file of the overwritten
    /// frames: it is discarded for a full image equal to the database.
    #[test]
    fn a_wal_restarted_while_the_first_capture_reads_gives_a_full_image() {
        let d = tempfile::tempdir().unwrap();
        let db = d.path().join("app.db");
        let app = rusqlite::Connection::open(&db).unwrap();
        app.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0; CREATE TABLE t(k INTEGER PRIMARY KEY, v BLOB); INSERT INTO t(v) VALUES (randomblob(3000));",
        )
        .unwrap();
        let meta = d.path().join("meta");
        let open = |remote| {
            let conns = DbConns::open(&db, Duration::from_secs(5)).unwrap();
            let local = Arc::new(LocalDir::open(&meta, crate::fsutil::FileMode::PRIVATE).unwrap());
            let status = Arc::new(DbStatus::default());
            Capture::open("t".into(), conns, local, status, test_opts(), remote).unwrap()
        };
        // A first run captures the start and stops (its pins end).
        let mut cap = open(None);
        assert!(cap.step().unwrap().is_some());
        let txid = cap.txid();
        cap.close();
        drop(cap);
        // Stopped: the application commits frames after the captured position and
        // backfills all of them; the WAL is not restarted (no commit since).
        for _ in 0..20 {
            app.execute("INSERT INTO t(v) VALUES (randomblob(3000))", [])
                .unwrap();
        }
        let (busy, log, done): (i64, i64, i64) = app
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap();
        assert_eq!((busy, log), (0, done), "the WAL is fully backfilled");
        // Restarted: the position resumes (same salts); the app's next commit, between the
        // first capture's scan and its reads, restarts the WAL over the frames it scanned.
        let mut cap = open(txid);
        let writer = std::sync::Mutex::new(rusqlite::Connection::open(&db).unwrap());
        cap.after_scan = Some(Box::new(move || {
            let w = writer.lock().unwrap();
            w.execute_batch(
                "UPDATE t SET v = randomblob(3000); INSERT INTO t(v) VALUES (randomblob(3000));",
            )
            .unwrap();
        }));
        let produced = cap.step().unwrap().expect("a capture");
        cap.after_scan = None;
        assert!(
            produced.full_image,
            "the capture whose frames were overwritten was discarded for a full image"
        );
        // The full image is the database as it is now (nothing committed since).
        let data = cap.local.read(produced.txid).unwrap();
        let mut dec = ltx::Decoder::new(&data[..]).unwrap();
        let mut buf = vec![0u8; dec.header().page_size.bytes()];
        let mut got = Vec::new();
        while let Some(p) = dec.next_page(&mut buf).unwrap() {
            got.push((p.get(), buf.clone()));
        }
        assert_eq!(got, live_pages(&db), "full image equals the database");
    }
}
