//! The local meta directory of one database: durable L0 files waiting for upload.
//!
//! Owns: `<meta>/ltx/0/<txid>-<txid>.ltx` (the same layout as a file replica), finding the
//! last captured position after a restart (the newest local L0's header: TXID, WAL
//! offset/size, salts), and deleting files every replica already holds. Reporters read it
//! through [`LocalDir::existing`] and [`LocalDir::files`], which never create or change
//! anything. [`LocalDir::open`] takes the directory's shared lock ([`MetaLock`]) for as long
//! as the `LocalDir` lives, so `reset` refuses while a replicator uses it.
//!
//! The newest local L0 file is never deleted: it *is* the durable position. There is no
//! separate position file to get out of step with the data.
//!
//! Captures are written without an fsync each ([`LocalDir::write_capture`]): until our
//! checkpoint lets SQLite restart the WAL, the WAL itself still holds every captured frame,
//! so a capture lost to a power cut is captured again (or, if the WAL moved on, replaced by
//! a full image: C3). Durability is bought in batches instead: [`LocalDir::sync_pending`]
//! fsyncs the files no replica holds yet, the newest among them, and the directory, and the
//! capture calls it before its checkpoint lets the WAL go and at shutdown. A power cut can
//! therefore leave a torn file; [`LocalDir::open`] checks every file's LTX checksum and
//! deletes the ones that fail, so a torn file is never uploaded, compacted or taken as the
//! position (the position falls back to the newest intact file: L1 in docs/design.md).
//!
//! Modes (security issue 17): the meta directory, its subdirectories and every file in
//! them get the database's [`FileMode`] (a `0600` database gives `0700` directories and
//! `0600` files); an `ltx` directory an older version left wider is narrowed on open.
//!
//! Recent captures are also kept in memory (bounded, [`CACHE_MAX_BYTES`]) so uploaders do
//! not read back what was just written; they are dropped once every replica holds them.
//!
//! Inodes are reused: a busy database captures up to 50 files a second, and creating a file
//! costs far more than rewriting one (on an ext4 group with many recently deleted inodes,
//! 0.4-0.8 ms of CPU each against 0.05 ms). So once more than [`KEEP_ON_DISK`] files wait
//! for level 1, a file every replica holds leaves the disk early ([`LocalDir::forget_cached`])
//! and its bytes stay in memory until level 1 covers it (compaction reads them from there);
//! its inode goes to a small pool that the next captures rewrite. A database writing about
//! once a second never gets there and keeps its files on disk, not in memory.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::UNIX_EPOCH;

use bytes::Bytes;
use ltx::{Header, Level, TxId};

// The clock helpers moved to `crate::clock`; re-exported for the replicator's modules.
pub use crate::clock::{ms_to_time, now_ms};
use crate::fsutil::{self, FileMode};
use crate::replicate::meta::MetaLock;
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

/// Bytes of recent captures kept in memory for the uploaders, per database. Beyond it the
/// oldest are dropped from memory (they stay on disk).
pub const CACHE_MAX_BYTES: usize = 32 << 20;

#[derive(Debug, Default)]
struct Recent {
    /// Recent captures by TXID, as written.
    files: BTreeMap<u64, bytes::Bytes>,
    bytes: usize,
    /// Captures written since the last [`LocalDir::sync_pending`], not yet fsynced.
    unsynced: Vec<TxId>,
    /// Pruned files kept for reuse (temp names): a new capture rewrites one of them
    /// rather than allocating an inode, which costs more than the write on a busy
    /// file system (up to 50 captures a second).
    free: Vec<PathBuf>,
    /// Names handed out for `free` so far.
    free_seq: u64,
    /// Local files on disk, by TXID (what [`LocalDir::txids`] would list, kept in step).
    on_disk: std::collections::BTreeSet<u64>,
    /// Cached captures whose file already left the disk: kept in `files` until level 1
    /// covers them (the next [`LocalDir::prune`] at or above them).
    early: std::collections::BTreeSet<u64>,
    /// Highest TXID [`LocalDir::forget_cached`] has handled.
    forgot_upto: u64,
}

/// Most pruned files kept for reuse per database.
const FREE_MAX: usize = 64;

/// Files waiting for level 1 beyond which replicated ones leave the disk early (module docs).
pub const KEEP_ON_DISK: usize = 40;

#[derive(Debug)]
pub struct LocalDir {
    meta: PathBuf,
    l0: PathBuf,
    /// The mode of the files and directories written here: the database's.
    mode: FileMode,
    recent: Mutex<Recent>,
    /// The shared lock on `<meta>/replicate.lock` a writer holds while it uses the
    /// directory, so `reset` refuses meanwhile (`meta.rs`); `None` for readers.
    _lock: Option<MetaLock>,
}

impl LocalDir {
    /// Opens (creating if needed, with `mode`: the database's) the meta directory, narrows
    /// its mode if an older version left it wider, clears temp leftovers and deletes every
    /// L0 file whose LTX checksum fails (torn by a power cut: captures are not fsynced one
    /// by one, see the module docs).
    pub fn open(meta: &Path, mode: FileMode) -> io::Result<LocalDir> {
        let l0 = meta.join(Layout::LtxDir.level_dir(Level::L0));
        // The lock before `ltx`: a `reset` holding it exclusively is removing `ltx`.
        fsutil::create_dir_all_durable(meta, mode)?;
        let lock = MetaLock::shared(meta, mode)?;
        fsutil::create_dir_all_durable(&l0, mode)?;
        // `<meta>/ltx` guards every copy inside: nobody it keeps out can reach the files,
        // whatever their own mode. (The meta directory itself may be one the user
        // configured and shares; `ltx` is ours.)
        fsutil::narrow_dir(l0.parent().unwrap_or(&l0), mode)?;
        fsutil::remove_tmp_files(&l0)?;
        let dir = LocalDir {
            meta: meta.to_path_buf(),
            l0,
            mode,
            recent: Mutex::new(Recent::default()),
            _lock: Some(lock),
        };
        let mut removed = 0;
        for t in dir.txids()? {
            let path = dir.path_of(t);
            // Read through a buffer, never whole: a big database's full image is as large
            // as the database (issue 27).
            let file = match fs::File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            dir.recent().on_disk.insert(t.get());
            // The name must match the header too: a pruned file is renamed and reused for
            // a later capture, and a power cut may lose the renames but not the rewrite.
            let named_right = intact_header(io::BufReader::with_capacity(1 << 20, file))
                .is_some_and(|h| h.min_txid == t && h.max_txid == t);
            if !named_right {
                tracing::warn!(file = %path.display(), "local L0 file is torn (power cut before it was synced); deleting it");
                fs::remove_file(&path)?;
                dir.recent().on_disk.remove(&t.get());
                removed += 1;
            }
        }
        if removed > 0 {
            fsutil::sync_dir(&dir.l0)?;
        }
        Ok(dir)
    }

    fn recent(&self) -> std::sync::MutexGuard<'_, Recent> {
        self.recent.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores a freshly captured L0 file: temp file, rename, no fsync (see the module
    /// docs: [`LocalDir::sync_pending`] makes it durable when that matters). Keeps the
    /// bytes in memory for the uploaders.
    pub fn write_capture(&self, txid: TxId, data: bytes::Bytes) -> io::Result<()> {
        let path = self.path_of(txid);
        let reuse = self.recent().free.pop();
        // A spare file is overwritten in place and then cut to length, not truncated first:
        // truncating a file to zero makes ext4 write its old dirty pages out (its
        // replace-by-truncate heuristic), a disk write per capture.
        let reused = reuse.and_then(|p| {
            fsutil::open_existing_for_write(&p)
                .ok()
                .map(|f| (f, p, true))
        });
        let (mut f, tmp, spare) = match reused {
            Some(r) => r,
            None => {
                let (f, tmp) = fsutil::create_tmp(&path, self.mode)?;
                (f, tmp, false)
            }
        };
        let r = (|| {
            f.write_all(&data)?;
            if spare {
                f.set_len(data.len() as u64)?;
            }
            drop(f);
            fs::rename(&tmp, &path)
        })();
        if r.is_err() {
            let _ = fs::remove_file(&tmp);
            return r;
        }
        let mut recent = self.recent();
        recent.unsynced.push(txid);
        recent.on_disk.insert(txid.get());
        recent.bytes += data.len();
        if let Some(old) = recent.files.insert(txid.get(), data) {
            recent.bytes -= old.len();
        }
        while recent.bytes > CACHE_MAX_BYTES {
            // An early-pruned file dropped here is read from a replica by compaction.
            let Some((t, d)) = recent.files.pop_first() else {
                break;
            };
            recent.early.remove(&t);
            recent.bytes -= d.len();
        }
        Ok(())
    }

    /// Notes a file written durably by other means (a full image): nothing to sync.
    pub fn note_synced(&self, txid: TxId) {
        let mut recent = self.recent();
        recent.unsynced.retain(|&t| t != txid);
        recent.on_disk.insert(txid.get());
    }

    /// Every replica holds the captures with TXID <= `upto`: drops them from memory, or,
    /// while more than [`KEEP_ON_DISK`] files wait for level 1, keeps them in memory and
    /// takes their files off the disk for reuse (module docs). Never the newest file.
    pub fn forget_cached(&self, upto: Option<TxId>) {
        let upto = upto.map_or(0, TxId::get);
        let mut recent = self.recent();
        let from = recent.forgot_upto;
        if upto <= from {
            return;
        }
        recent.forgot_upto = upto;
        let newest = recent.on_disk.last().copied().unwrap_or(0);
        let txids: Vec<u64> = recent
            .files
            .range(from.saturating_add(1)..=upto)
            .map(|(&t, _)| t)
            .collect();
        for t in txids {
            let early = t != newest
                && recent.on_disk.len() > KEEP_ON_DISK
                && recent.bytes <= CACHE_MAX_BYTES / 2
                && recent.on_disk.contains(&t)
                && self.take_off_disk(&mut recent, TxId::new(t).expect("cached TXIDs are >= 1"));
            if early {
                recent.early.insert(t);
            } else if let Some(d) = recent.files.remove(&t) {
                recent.bytes -= d.len();
            }
        }
    }

    /// Renames the file of `t` into the reuse pool (or deletes it when the pool is full).
    /// False when neither worked (the file stays where it is).
    fn take_off_disk(&self, recent: &mut Recent, t: TxId) -> bool {
        let path = self.path_of(t);
        let done = if recent.free.len() < FREE_MAX {
            recent.free_seq += 1;
            let spare = self.l0.join(format!(
                "free-{}-{}{}",
                fsutil::process_id(),
                recent.free_seq,
                fsutil::TMP_SUFFIX
            ));
            let ok = fs::rename(&path, &spare).is_ok();
            if ok {
                recent.free.push(spare);
            }
            ok
        } else {
            fs::remove_file(&path).is_ok()
        };
        if done {
            recent.on_disk.remove(&t.get());
        }
        done
    }

    /// Makes the captured position durable: fsyncs every capture written since the last
    /// call that is newer than `replicated` (no replica may hold it yet) and the newest
    /// one, then the directory. Files pruned meanwhile are skipped.
    pub fn sync_pending(&self, replicated: Option<TxId>) -> io::Result<()> {
        let pending = std::mem::take(&mut self.recent().unsynced);
        let Some(&newest) = pending.iter().max() else {
            return Ok(());
        };
        let r = (|| {
            for &t in &pending {
                if Some(t) <= replicated && t != newest {
                    continue;
                }
                match crate::platform::sync_file(&self.path_of(t)) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
            fsutil::sync_dir(&self.l0)
        })();
        if r.is_err() {
            // Try again next time.
            let mut recent = self.recent();
            let mut all = pending;
            all.append(&mut recent.unsynced);
            recent.unsynced = all;
        }
        r
    }

    /// The meta directory of a database that has been replicated before, for reading
    /// only (`status`); `None` when it has no local state. Creates nothing.
    pub fn existing(meta: &Path) -> Option<LocalDir> {
        let l0 = meta.join(Layout::LtxDir.level_dir(Level::L0));
        l0.is_dir().then(|| LocalDir {
            meta: meta.to_path_buf(),
            l0,
            mode: FileMode::PRIVATE,
            recent: Mutex::new(Recent::default()),
            _lock: None,
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
        self.recent().free.clear();
        fsutil::remove_tmp_files(&self.l0)
    }

    pub fn meta_dir(&self) -> &Path {
        &self.meta
    }

    /// The mode of files written here (the database's).
    pub fn mode(&self) -> FileMode {
        self.mode
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

    /// The captured position after a restart, from the newest local file. [`LocalDir::open`]
    /// already deleted torn files; a newest file that still fails to decode (a disk
    /// rotting since) is reported as an error rather than skipped.
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
        fsutil::write_durable_mode(
            &self.path_of(txid),
            data,
            Some(ms_to_time(timestamp_ms)),
            self.mode,
        )
    }

    /// Whether the capture of `txid` can be read: in memory (no `stat` for a recent
    /// capture, the usual case) or on disk.
    pub fn has(&self, txid: TxId) -> bool {
        self.recent().files.contains_key(&txid.get()) || self.path_of(txid).exists()
    }

    /// A local L0 file's bytes: from memory when it is a recent capture, else from disk.
    pub fn read(&self, txid: TxId) -> io::Result<Bytes> {
        if let Some(d) = self.recent().files.get(&txid.get()) {
            return Ok(d.clone());
        }
        fs::read(self.path_of(txid)).map(Bytes::from)
    }

    /// A local L0 file to upload from disk in pieces ([`crate::storage::ReplicaStore::put_file`]):
    /// open, with its size, when it is not a recent capture held in memory and is larger
    /// than `above_bytes`; `None` for the in-memory path ([`LocalDir::read`]). The open
    /// handle keeps the content readable even if the file is pruned meanwhile.
    pub fn open_large(&self, txid: TxId, above_bytes: u64) -> io::Result<Option<(fs::File, u64)>> {
        if self.recent().files.contains_key(&txid.get()) {
            return Ok(None);
        }
        let f = fs::File::open(self.path_of(txid))?;
        let len = f.metadata()?.len();
        Ok((len > above_bytes).then_some((f, len)))
    }

    /// Deletes local files with TXID <= `upto`, always keeping the newest one. Up to
    /// `FREE_MAX` of them are renamed to temp names and reused by later captures instead.
    /// Early-pruned captures (module docs) up to `upto` leave memory.
    pub fn prune(&self, upto: TxId) -> io::Result<usize> {
        let txids = self.txids()?;
        {
            let mut recent = self.recent();
            recent.on_disk = txids.iter().map(|t| t.get()).collect();
            let covered: Vec<u64> = recent.early.range(..=upto.get()).copied().collect();
            for t in covered {
                recent.early.remove(&t);
                if let Some(d) = recent.files.remove(&t) {
                    recent.bytes -= d.len();
                }
            }
        }
        let Some(&newest) = txids.last() else {
            return Ok(0);
        };
        let mut n = 0;
        for t in txids {
            if t <= upto && t != newest {
                let mut recent = self.recent();
                if self.take_off_disk(&mut recent, t) {
                    n += 1;
                    continue;
                }
                drop(recent);
                match fs::remove_file(self.path_of(t)) {
                    Ok(()) => n += 1,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
                self.recent().on_disk.remove(&t.get());
            }
        }
        // No directory fsync: a deleted file that reappears after a power cut is older than
        // the newest one, which alone decides the position, and every replica holds it.
        Ok(n)
    }

    /// Forgets every local file (used when the database was replaced under us and the
    /// local history no longer describes it).
    pub fn reset(&self) -> io::Result<()> {
        *self.recent() = Recent::default();
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

/// True when `data` is a whole LTX file: it decodes to the end and its file checksum
/// matches. A file torn by a power cut (zeros, or cut short) fails.
pub fn is_intact(data: &[u8]) -> bool {
    intact_header(data).is_some()
}

/// The header of the LTX file `r` reads when the file is whole ([`is_intact`]), read to
/// the end as it streams; `None` when it is torn.
pub fn intact_header<R: io::Read>(r: R) -> Option<Header> {
    let mut dec = ltx::Decoder::new(r).ok()?;
    let header = dec.header().clone();
    let mut buf = vec![0u8; header.page_size.bytes()];
    loop {
        match dec.next_page(&mut buf) {
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(_) => return None,
        }
    }
    dec.finish().ok().map(|_| header)
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

#[cfg(test)]
mod tests {
    use super::*;
    use ltx::{Encoder, PageEncoding, PageNo, PageSize};

    /// A valid one-page L0 file for `txid`.
    fn l0(txid: u64, fill: u8) -> Bytes {
        let t = TxId::new(txid).unwrap();
        let h = Header::new(PageSize::new(4096).unwrap(), 1, t, t, 1_700_000_000_000);
        let mut enc = Encoder::new(Vec::new(), &h, PageEncoding::Block).unwrap();
        enc.write_page(PageNo::new(1).unwrap(), &[fill; 4096])
            .unwrap();
        Bytes::from(enc.finish().unwrap().0)
    }

    fn tx(t: u64) -> TxId {
        TxId::new(t).unwrap()
    }

    #[test]
    fn torn_and_misnamed_files_are_deleted_at_open() {
        let d = tempfile::tempdir().unwrap();
        let local = LocalDir::open(d.path(), FileMode::PRIVATE).unwrap();
        for t in 1..=3 {
            local.write_capture(tx(t), l0(t, t as u8)).unwrap();
        }
        // What a power cut can leave: a file whose tail never reached the disk, and a
        // reused file whose rename was lost (right bytes, wrong name).
        let mut torn = fs::read(local.path_of(tx(2))).unwrap();
        let n = torn.len();
        torn[n - 40..].fill(0);
        fs::write(local.path_of(tx(2)), &torn).unwrap();
        fs::write(local.path_of(tx(4)), l0(3, 9)).unwrap();
        drop(local);

        let local = LocalDir::open(d.path(), FileMode::PRIVATE).unwrap();
        assert_eq!(local.txids().unwrap(), vec![tx(1), tx(3)]);
        assert_eq!(local.position().unwrap().unwrap().txid, tx(3));
        assert!(is_intact(&l0(5, 1)));
        assert!(!is_intact(&torn));
        assert!(!is_intact(&[]));
    }

    #[test]
    fn captures_come_from_memory_and_pruned_files_are_reused() {
        let d = tempfile::tempdir().unwrap();
        let local = LocalDir::open(d.path(), FileMode::PRIVATE).unwrap();
        for t in 1..=5 {
            local.write_capture(tx(t), l0(t, t as u8)).unwrap();
        }
        // Served from memory while cached, from disk once forgotten: the same bytes.
        local.forget_cached(TxId::new(2).ok());
        for t in 1..=5 {
            assert_eq!(local.read(tx(t)).unwrap(), l0(t, t as u8), "txid {t}");
        }
        assert_eq!(local.prune(tx(3)).unwrap(), 3);
        assert_eq!(local.txids().unwrap(), vec![tx(4), tx(5)]);
        let spare = local.recent().free.len();
        assert_eq!(spare, 3);
        // The next capture rewrites a pruned file: no new inode, and no leftover.
        local.write_capture(tx(6), l0(6, 6)).unwrap();
        assert_eq!(local.recent().free.len(), spare - 1);
        local.forget_cached(TxId::new(6).ok());
        assert_eq!(local.read(tx(6)).unwrap(), l0(6, 6));
        assert_eq!(local.txids().unwrap(), vec![tx(4), tx(5), tx(6)]);
        // Syncing skips what is gone and keeps the position.
        local.prune(tx(5)).unwrap();
        local.sync_pending(TxId::new(5).ok()).unwrap();
        assert!(local.recent().unsynced.is_empty());
        drop(local);
        // A restart sweeps the spare files away and finds the newest capture.
        let local = LocalDir::open(d.path(), FileMode::PRIVATE).unwrap();
        assert_eq!(local.txids().unwrap(), vec![tx(6)]);
        let names = fs::read_dir(&local.l0).unwrap().count();
        assert_eq!(names, 1, "only the newest file is left");
    }

    #[test]
    fn busy_databases_take_replicated_files_off_disk_and_keep_them_in_memory() {
        let d = tempfile::tempdir().unwrap();
        let local = LocalDir::open(d.path(), FileMode::PRIVATE).unwrap();
        let n = KEEP_ON_DISK as u64 + 10;
        for t in 1..=n {
            local.write_capture(tx(t), l0(t, t as u8)).unwrap();
        }
        // Every replica holds all but the newest: the oldest ten leave the disk, their
        // bytes stay for compaction; the rest stay on disk and leave memory.
        local.forget_cached(TxId::new(n - 1).ok());
        let on_disk = local.txids().unwrap();
        assert_eq!(on_disk.len(), KEEP_ON_DISK);
        assert_eq!(on_disk[0], tx(11));
        assert_eq!(local.recent().free.len(), 10);
        for t in 1..=n {
            assert_eq!(local.read(tx(t)).unwrap(), l0(t, t as u8), "txid {t}");
        }
        // Level 1 covers them: gone from memory too.
        local.prune(tx(10)).unwrap();
        assert!(local.read(tx(5)).is_err());
        assert_eq!(local.read(tx(11)).unwrap(), l0(11, 11));
        // The next captures rewrite the spare files: no new inode.
        local.write_capture(tx(n + 1), l0(n + 1, 1)).unwrap();
        assert_eq!(local.recent().free.len(), 9);
        assert_eq!(local.position().unwrap().unwrap().txid, tx(n + 1));
        drop(local);
        let local = LocalDir::open(d.path(), FileMode::PRIVATE).unwrap();
        assert_eq!(local.txids().unwrap().len(), KEEP_ON_DISK + 1);
    }
}
