//! The replicator's own connections to a live database, and the locking protocol that
//! guarantees no committed WAL frame is overwritten before it has been captured.
//!
//! Owns: opening the database (checks: SQLite file, WAL mode, page size), the *pin*
//! (a read transaction that stops SQLite from restarting the WAL over frames we have not
//! read yet), the *barrier* (a short write lock used to seal the WAL), our own PASSIVE
//! checkpoints, consistent whole-database page images through `sqlite_dbpage`, and the
//! wal-index (`-shm`) figures used to decide when a pin must move.
//!
//! Why a pin is enough (see docs/design.md, invariant W1): SQLite restarts the WAL only
//! when every frame is backfilled and no reader holds a read mark >= 1; a reader holding
//! read mark 0 blocks backfilling altogether. So while we hold *some* read transaction
//! that began at or before our captured position, frames after that position can be
//! neither backfilled-and-restarted over nor lost. We move the pin by starting a new read
//! transaction on the second connection, capturing up to the WAL end, and only then
//! ending the old one.
//!
//! Memory (thousands of databases share a process): only the connection holding the pin
//! stays open while a database is quiet. The second pin connection and the barrier are
//! opened when needed; the barrier is closed when released and [`DbConns::trim`] closes
//! the idle pin. Pins start their read transaction with `PRAGMA schema_version`, which
//! reads the header only, so a pin never parses the schema (which for a large application
//! schema would cost more than everything else we keep per database). Trimming, and the
//! end of a whole-database image, also unmap the pin's wal-index pages (`unmap_shm_pages`):
//! 32 KiB per database that nothing reads while it is quiet.
//!
//! Does not: parse the WAL (see `wal`), decide what to capture (see `replicate`).

use crate::platform::{self, FileExt, FileId};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ltx::{PageNo, PageSize};
use rusqlite::{Connection, OpenFlags};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum DbError {
    #[error("{path}: database file does not exist")]
    Missing { path: PathBuf },
    #[error("{path}: not a SQLite database (bad header)")]
    NotSqlite { path: PathBuf },
    #[error("{path}: journal mode is {mode:?}, not WAL; set `PRAGMA journal_mode=WAL` in the application")]
    NotWal { path: PathBuf, mode: String },
    #[error("{path}: {op}: {source}")]
    Sqlite {
        path: PathBuf,
        op: &'static str,
        source: rusqlite::Error,
    },
    #[error("{path}: {op}: {source}")]
    Io {
        path: PathBuf,
        op: &'static str,
        source: std::io::Error,
    },
    #[error("{path}: page size {size} is not valid")]
    BadPageSize { path: PathBuf, size: u32 },
}

/// Paths of a database and its sidecar files.
#[derive(Clone, Debug)]
pub struct DbPaths {
    pub db: PathBuf,
    pub wal: PathBuf,
    pub shm: PathBuf,
}

impl DbPaths {
    pub fn new(db: &Path) -> DbPaths {
        let mut wal = db.as_os_str().to_os_string();
        wal.push("-wal");
        let mut shm = db.as_os_str().to_os_string();
        shm.push("-shm");
        DbPaths {
            db: db.to_path_buf(),
            wal: wal.into(),
            shm: shm.into(),
        }
    }
}

/// How many bytes at the start of the `-shm` we ever read raw: the two header copies and
/// `nBackfill` (bytes 0..100). Never the lock bytes at 120..129 (the eight WAL locks and
/// the dead-man switch, `UNIX_SHM_BASE`/`WIN_SHM_BASE` in SQLite): SQLite's Windows VFS
/// takes them with `LockFileEx`, which is mandatory, and a read of an exclusively locked
/// byte through another handle fails with `ERROR_LOCK_VIOLATION`.
pub const SHM_RAW_READ: usize = 100;

/// Figures read from the wal-index (`-shm`) without taking any lock. They are a hint
/// (a racing writer may change them a moment later), never a proof.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShmInfo {
    pub mx_frame: u32,
    pub n_backfill: u32,
}

impl ShmInfo {
    /// Reads the first copy of the wal-index header and the checkpoint info from a
    /// `-shm` path. Opens and closes the file, which drops every POSIX lock this process
    /// holds on it: never call it while a connection of this process has the database
    /// open (use [`DbConns::shm_info`]).
    pub fn read(shm: &Path) -> Option<ShmInfo> {
        ShmInfo::read_from(&File::open(shm).ok()?)
    }

    fn read_from(f: &File) -> Option<ShmInfo> {
        let mut buf = [0u8; SHM_RAW_READ];
        f.read_exact_at(&mut buf, 0).ok()?;
        // The wal-index is in native byte order; offsets from SQLite's file format doc:
        // mxFrame at 16 of WalIndexHdr, nBackfill at 96 (after two 48-byte header copies).
        let u32_at = |o: usize| u32::from_ne_bytes(buf[o..o + 4].try_into().unwrap());
        if buf[12] == 0 {
            return None; // isInit == 0: not initialised
        }
        Some(ShmInfo {
            mx_frame: u32_at(16),
            n_backfill: u32_at(96),
        })
    }

    pub fn fully_backfilled(&self) -> bool {
        self.mx_frame == self.n_backfill
    }
}

/// The replicator's connections to one database, each opened when first needed.
pub struct DbConns {
    paths: DbPaths,
    page_size: PageSize,
    pins: [Option<Connection>; 2],
    /// Which of `pins` holds the current read transaction (always an open connection).
    active: Option<usize>,
    /// Pins that loaded the schema (a whole-database read or `page_count`): the first to
    /// close when quiet, see [`DbConns::pin_is_heavy`].
    heavy: [bool; 2],
    /// Open only while the write lock is held.
    barrier: Option<Connection>,
    in_barrier: bool,
    /// Identity of the database file when opened (device and inode; Windows: volume and
    /// file index): a different one at the same path means the file was replaced
    /// (restored, copied over) and these connections read a file nobody writes any more.
    identity: FileId,
    busy: Duration,
    /// Our own descriptors on the database file and its `-shm`, opened once and closed
    /// only after the connections (fields drop in order). POSIX advisory locks belong to
    /// the process, and closing *any* descriptor of a file drops every lock the process
    /// holds on it, SQLite's included: a `-shm` opened and closed to read the wal-index
    /// header dropped our pin's read mark, and the application's checkpoint then
    /// restarted the WAL over frames we had not captured (found by the RPO benchmark).
    db_file: File,
    shm_file: std::sync::Mutex<Option<File>>,
}

/// The identity of a file (device and inode; Windows: volume and file index), `None` when
/// it does not exist.
fn file_identity(path: &Path) -> Option<FileId> {
    platform::file_id(path).ok()
}

impl std::fmt::Debug for DbConns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbConns")
            .field("db", &self.paths.db)
            .field("active", &self.active)
            .finish()
    }
}

/// Switches a database (a promoted standby copy, kept in rollback-journal mode while it
/// followed its replica) to WAL mode, so the application can write and we can capture.
pub fn switch_to_wal(path: &Path) -> Result<(), DbError> {
    let sq = |op, source| DbError::Sqlite {
        path: path.to_path_buf(),
        op,
        source,
    };
    let c = Connection::open(path).map_err(|e| sq("open", e))?;
    c.busy_timeout(std::time::Duration::from_secs(30))
        .map_err(|e| sq("busy_timeout", e))?;
    let mode: String = c
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .map_err(|e| sq("journal_mode=WAL", e))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(DbError::NotWal {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

/// A descriptor on `path` that this process keeps open for good, one per file (device and
/// inode). Raw reads of a database file or its `-shm` beside live SQLite connections of
/// this process must use it: POSIX advisory locks belong to the process, and closing any
/// descriptor of a file drops every lock the process holds on it, SQLite's included (our
/// pin's read mark; the database file's shared lock that stops a closing application
/// from checkpointing in exclusive mode and deleting the WAL).
pub fn kept_open(path: &Path) -> std::io::Result<std::sync::Arc<File>> {
    let key = platform::file_id(path)?;
    let mut kept = kept_files();
    if let Some(f) = kept.get(&key) {
        return Ok(f.clone());
    }
    let f = File::open(path)?;
    let id = platform::file_id_of(&f)?;
    let f = std::sync::Arc::new(f);
    // Replaced between the stat and the open: keep it under its own identity.
    kept.insert(id, f.clone());
    Ok(f)
}

type KeptByIdentity = std::collections::HashMap<FileId, std::sync::Arc<File>>;

fn kept_files() -> std::sync::MutexGuard<'static, KeptByIdentity> {
    static KEPT: std::sync::OnceLock<std::sync::Mutex<KeptByIdentity>> = std::sync::OnceLock::new();
    KEPT.get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

/// Closes the [`kept_open`] descriptors of files that were deleted (no link left) and
/// that nothing else holds: a database deleted from a watched directory would otherwise
/// keep its descriptor, and its disk space, for the life of the process. Called when a
/// database's run has ended (its SQLite connections are closed, so no lock of ours on
/// the file is left to lose).
pub fn close_kept_of_deleted_files() {
    kept_files().retain(|_, f| {
        std::sync::Arc::strong_count(f) > 1
            || platform::link_count(f).map(|n| n > 0).unwrap_or(true)
    });
}

/// Checks the first 100 bytes of a database file: SQLite magic and page size. For a file
/// no connection of this process may have open (a restore's output); a live database is
/// read with [`read_live_db_header`].
pub fn read_db_header(path: &Path) -> Result<PageSize, DbError> {
    header_of(path, File::open(path).map(std::sync::Arc::new)).map(|(size, _)| size)
}

/// [`read_db_header`] for a database this process may hold connections to (replicated,
/// drilled, checked): through [`kept_open`], so SQLite's locks stay.
pub fn read_live_db_header(path: &Path) -> Result<PageSize, DbError> {
    header_of(path, kept_open(path)).map(|(size, _)| size)
}

/// Page size, and whether the header's file format versions (bytes 18 and 19) say WAL,
/// which is what SQLite itself reads to put a new connection in WAL mode.
fn header_of(
    path: &Path,
    f: std::io::Result<std::sync::Arc<File>>,
) -> Result<(PageSize, bool), DbError> {
    let f = f.map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            DbError::Missing {
                path: path.to_path_buf(),
            }
        } else {
            DbError::Io {
                path: path.to_path_buf(),
                op: "open",
                source: e,
            }
        }
    })?;
    let mut hdr = [0u8; 100];
    f.read_exact_at(&mut hdr, 0)
        .map_err(|_| DbError::NotSqlite {
            path: path.to_path_buf(),
        })?;
    if &hdr[..16] != b"SQLite format 3\0" {
        return Err(DbError::NotSqlite {
            path: path.to_path_buf(),
        });
    }
    let raw = u16::from_be_bytes([hdr[16], hdr[17]]) as u32;
    let size = PageSize::from_sqlite_header(raw).map_err(|_| DbError::BadPageSize {
        path: path.to_path_buf(),
        size: raw,
    })?;
    Ok((size, hdr[18] == 2 && hdr[19] == 2))
}

fn open_conn(paths: &DbPaths, busy: Duration) -> Result<Connection, DbError> {
    let sq = |op| {
        let path = paths.db.clone();
        move |source| DbError::Sqlite { path, op, source }
    };
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let c = Connection::open_with_flags(&paths.db, flags).map_err(sq("open"))?;
    // Our connections must never checkpoint-and-delete the WAL on close: if we are the
    // last connection, the next start would find the WAL gone and have to resnapshot.
    c.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
        true,
    )
    .map_err(sq("disable checkpoint on close"))?;
    c.busy_timeout(busy).map_err(sq("set busy timeout"))?;
    // Thousands of databases share a process and we read pages once: no lookaside slab
    // (about 50 KiB per connection otherwise). `PRAGMA cache_size` would parse the schema;
    // the page cache is bounded where pages are read in bulk ([`DbConns::for_each_page`]).
    disable_lookaside(&c);
    c.execute_batch("PRAGMA wal_autocheckpoint=0;")
        .map_err(sq("configure"))?;
    Ok(c)
}

/// How often, and how many times, [`DbConns::try_begin_barrier`] retries the write lock.
pub const BARRIER_TRY_POLL: Duration = Duration::from_micros(200);
pub const BARRIER_TRY_POLLS: i32 = 100;

/// SQLite busy handler of [`DbConns::try_begin_barrier`]: retry every `BARRIER_TRY_POLL`,
/// `BARRIER_TRY_POLLS` times.
fn poll_write_lock(prior_calls: i32) -> bool {
    if prior_calls >= BARRIER_TRY_POLLS {
        return false;
    }
    std::thread::sleep(BARRIER_TRY_POLL);
    true
}

/// Process-wide SQLite settings for a process holding thousands of connections: no
/// lookaside slab per connection (allocated at open, about 50 KiB, even when the
/// connection turns it off afterwards) and no bulk page-cache allocation per connection
/// (20 KiB at the first page read, for a cache our pins never fill). Takes effect only
/// before SQLite initialises, that is before the process opens its first connection.
/// Returns whether SQLite accepted it.
///
/// # Safety
///
/// `sqlite3_config` is not thread-safe: no other thread may call into SQLite (through
/// rusqlite or otherwise) while this runs. Call it at process start, before any other
/// thread that could use SQLite is started.
pub unsafe fn configure_sqlite_for_many_connections() -> bool {
    use rusqlite::ffi;
    use std::ffi::{c_int, c_void};
    // SAFETY: both options take the documented argument types; the caller guarantees no
    // other thread uses SQLite yet (after initialisation SQLite answers SQLITE_MISUSE).
    unsafe {
        let lookaside = ffi::sqlite3_config(ffi::SQLITE_CONFIG_LOOKASIDE, 0 as c_int, 0 as c_int);
        let pagecache = ffi::sqlite3_config(
            ffi::SQLITE_CONFIG_PAGECACHE,
            std::ptr::null_mut::<c_void>(),
            0 as c_int,
            0 as c_int,
        );
        lookaside == ffi::SQLITE_OK && pagecache == ffi::SQLITE_OK
    }
}

/// Runs a statement without results (`BEGIN`, `ROLLBACK`) through the connection's
/// statement cache rather than parsing it again.
fn run_cached(c: &Connection, sql: &str) -> rusqlite::Result<()> {
    c.prepare_cached(sql)?.execute([]).map(|_| ())
}

/// Frees a connection's unused cached pages and its cached statements.
fn release_memory(c: &Connection) {
    c.flush_prepared_statement_cache();
    // SAFETY: the handle is valid for the life of `c`; the call only frees cache memory.
    unsafe {
        rusqlite::ffi::sqlite3_db_release_memory(c.handle());
    }
}

/// Size of one wal-index region, as SQLite maps it (`WALINDEX_PGSZ`).
const SHM_REGION: usize = 32 * 1024;

/// Drops this process's page-table entries for the wal-index (`-shm`) of `c`'s database,
/// which its WAL reads map shared from the file. The pages stay in the page cache (the
/// application maps the same ones) and SQLite finds them again at its next access, with
/// whatever content the file has then: for a shared file mapping `MADV_DONTNEED` only
/// unmaps, it loses nothing (a dirty page stays dirty in the page cache). But a quiet
/// database's pin never touches its mapping, so without this the 32 KiB each database
/// maps once stays counted in our RSS (64 MiB at 2,000 databases).
///
/// Only for a connection of the default `unix` VFS holding a read transaction in WAL mode:
/// then SQLite has the wal-index open and mapped with `mmap(MAP_SHARED)` (the heap copy
/// is used only by `unix-excl` and exclusive locking mode, neither of which we use), and
/// `xShmMap` without extending merely returns the addresses of the regions it mapped. No
/// lock is taken or released, so the pin's read mark (W1) is untouched.
fn unmap_shm_pages(c: &Connection, shm: &Path) {
    use rusqlite::ffi;
    use std::ffi::{c_int, c_void, CStr};
    let page = platform::page_size();
    if !SHM_REGION.is_multiple_of(page) || c.is_autocommit() {
        return;
    }
    // Regions that exist in the file (a `stat`: opening and closing the file would drop
    // this process's locks on it); SQLite maps no others.
    let Ok(len) = std::fs::metadata(shm).map(|m| m.len()) else {
        return;
    };
    let regions = (len / SHM_REGION as u64).min(1024) as c_int;
    // SAFETY: `c` is a live connection used only by this thread; the file-control opcodes
    // write one pointer each; `xShmMap` is called as SQLite calls it (region, size,
    // no extend, out-pointer) on the main database file of that connection, whose WAL
    // is open (checked by the caller: a read transaction in WAL mode).
    unsafe {
        let db = c.handle();
        let mut vfs: *mut ffi::sqlite3_vfs = std::ptr::null_mut();
        let rc = ffi::sqlite3_file_control(
            db,
            c"main".as_ptr(),
            ffi::SQLITE_FCNTL_VFS_POINTER,
            (&mut vfs as *mut *mut ffi::sqlite3_vfs).cast::<c_void>(),
        );
        if rc != ffi::SQLITE_OK || vfs.is_null() || (*vfs).zName.is_null() {
            return;
        }
        if CStr::from_ptr((*vfs).zName).to_bytes() != b"unix" {
            return;
        }
        let mut file: *mut ffi::sqlite3_file = std::ptr::null_mut();
        let rc = ffi::sqlite3_file_control(
            db,
            c"main".as_ptr(),
            ffi::SQLITE_FCNTL_FILE_POINTER,
            (&mut file as *mut *mut ffi::sqlite3_file).cast::<c_void>(),
        );
        if rc != ffi::SQLITE_OK || file.is_null() || (*file).pMethods.is_null() {
            return;
        }
        let methods = &*(*file).pMethods;
        let Some(shm_map) = methods.xShmMap.filter(|_| methods.iVersion >= 2) else {
            return;
        };
        for region in 0..regions {
            let mut p: *mut c_void = std::ptr::null_mut();
            if shm_map(file, region, SHM_REGION as c_int, 0, &mut p) != ffi::SQLITE_OK
                || p.is_null()
            {
                break;
            }
            if (p as usize).is_multiple_of(page) {
                platform::discard_shared_pages(p, SHM_REGION);
            }
        }
    }
}

/// Turns off a fresh connection's lookaside allocator. Best effort: SQLite refuses
/// (SQLITE_BUSY) only while lookaside memory is in use, and then nothing is lost but memory.
fn disable_lookaside(c: &Connection) {
    // SAFETY: the handle is valid for the life of `c`, which we hold; LOOKASIDE with a
    // null buffer and zero sizes takes (void*, int, int) as documented.
    unsafe {
        rusqlite::ffi::sqlite3_db_config(
            c.handle(),
            rusqlite::ffi::SQLITE_DBCONFIG_LOOKASIDE,
            std::ptr::null_mut::<std::ffi::c_void>(),
            0 as std::ffi::c_int,
            0 as std::ffi::c_int,
        );
    }
}

impl DbConns {
    /// Checks the database is SQLite in WAL mode and opens the first connection; the
    /// others are opened when first needed.
    pub fn open(db: &Path, busy: Duration) -> Result<DbConns, DbError> {
        let paths = DbPaths::new(db);
        let (page_size, wal) = header_of(db, kept_open(db))?;
        if !wal {
            // Ask SQLite for the mode's name (and in case it disagrees with the header).
            let c = open_conn(&paths, busy)?;
            let mode: String = c
                .query_row("PRAGMA journal_mode", [], |r| r.get(0))
                .map_err(|source| DbError::Sqlite {
                    path: paths.db.clone(),
                    op: "read journal_mode",
                    source,
                })?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(DbError::NotWal {
                    path: paths.db.clone(),
                    mode,
                });
            }
        }
        let p0 = open_conn(&paths, busy)?;
        let identity = file_identity(db).ok_or_else(|| DbError::Missing {
            path: db.to_path_buf(),
        })?;
        let db_file = File::open(&paths.db).map_err(|source| DbError::Io {
            path: paths.db.clone(),
            op: "open database file",
            source,
        })?;
        Ok(DbConns {
            paths,
            page_size,
            pins: [Some(p0), None],
            active: None,
            heavy: [false; 2],
            barrier: None,
            in_barrier: false,
            identity,
            busy,
            db_file,
            shm_file: std::sync::Mutex::new(None),
        })
    }

    /// The wal-index figures, read through our long-lived `-shm` descriptor (opened on
    /// first use, never closed while the connections live: see `shm_file`).
    pub fn shm_info(&self) -> Option<ShmInfo> {
        let mut shm = self.shm_file.lock().unwrap_or_else(|p| p.into_inner());
        if shm.is_none() {
            *shm = Some(File::open(&self.paths.shm).ok()?);
        }
        ShmInfo::read_from(shm.as_ref().expect("just set"))
    }

    /// The pin connection `i`, opened now if it is not.
    /// The pin connection not holding the pin (opened if needed), with no read
    /// transaction of its own: where our checkpoints run. Returns its index and itself.
    fn idle_conn_outside_transaction(&mut self) -> Result<(usize, &Connection), DbError> {
        let idle = match self.active {
            Some(i) => 1 - i,
            None => 0,
        };
        let path = self.paths.db.clone();
        let c = self.pin_conn(idle)?;
        if !c.is_autocommit() {
            c.execute_batch("ROLLBACK")
                .map_err(|source| DbError::Sqlite {
                    path,
                    op: "end read transaction",
                    source,
                })?;
        }
        Ok((idle, c))
    }

    fn pin_conn(&mut self, i: usize) -> Result<&Connection, DbError> {
        if self.pins[i].is_none() {
            self.pins[i] = Some(open_conn(&self.paths, self.busy)?);
            self.heavy[i] = false;
        }
        Ok(self.pins[i].as_ref().expect("just opened"))
    }

    /// Closes what a quiet database does not need: the pin connection not holding the
    /// read transaction and the barrier (unless held). The active pin stays (W1) but gives
    /// back its cached pages and statements, and this process's mapping of the wal-index
    /// pages. The next capture reopens what it needs.
    pub fn trim(&mut self) {
        for i in 0..2 {
            if self.active == Some(i) {
                continue;
            }
            if let Some(c) = self.pins[i].take() {
                if !c.is_autocommit() {
                    let _ = c.execute_batch("ROLLBACK");
                }
                let _ = c.close();
            }
            self.heavy[i] = false;
        }
        if !self.in_barrier {
            self.barrier = None;
        }
        if let Some(c) = self.active.and_then(|i| self.pins[i].as_ref()) {
            release_memory(c);
            if !self.in_barrier && self.header_says_wal() {
                unmap_shm_pages(c, &self.paths.shm);
            }
        }
    }

    /// Whether the database header's file format versions say WAL, read through our
    /// long-lived descriptor. While a pin is held the mode cannot change (either switch
    /// needs the exclusive lock our read transaction blocks), so this tells whether the
    /// pin's transaction runs in WAL mode, with the wal-index mapped.
    fn header_says_wal(&self) -> bool {
        let mut b = [0u8; 2];
        self.db_file.read_exact_at(&mut b, 18).is_ok() && b == [2, 2]
    }

    /// True when the active pin loaded the schema (after a whole-database image): moving
    /// the pin to a fresh connection and trimming gives that memory back.
    pub fn pin_is_heavy(&self) -> bool {
        self.active.is_some_and(|i| self.heavy[i])
    }

    /// Connections open now (for tests and figures).
    pub fn open_connections(&self) -> usize {
        self.pins.iter().filter(|c| c.is_some()).count() + usize::from(self.barrier.is_some())
    }

    /// Bytes SQLite holds for these connections: page caches, schemas, statements.
    pub fn memory_used(&self) -> u64 {
        let mut total = 0;
        for c in self
            .pins
            .iter()
            .chain(std::iter::once(&self.barrier))
            .flatten()
        {
            for op in [
                rusqlite::ffi::SQLITE_DBSTATUS_CACHE_USED,
                rusqlite::ffi::SQLITE_DBSTATUS_SCHEMA_USED,
                rusqlite::ffi::SQLITE_DBSTATUS_STMT_USED,
            ] {
                let (mut cur, mut hi) = (0, 0);
                // SAFETY: valid handle while `c` lives; out-pointers to live c_ints.
                unsafe {
                    rusqlite::ffi::sqlite3_db_status(c.handle(), op, &mut cur, &mut hi, 0);
                }
                total += cur.max(0) as u64;
            }
        }
        total
    }

    /// True when the file at the database path is no longer the one these connections
    /// opened. One `stat`, cheap enough for every capture.
    pub fn replaced(&self) -> bool {
        file_identity(&self.paths.db).is_some_and(|id| id != self.identity)
    }

    /// Opens fresh connections to whatever file is at the path now.
    pub fn reopen(&mut self) -> Result<(), DbError> {
        self.release_all();
        let old = std::mem::replace(self, DbConns::open(&self.paths.db.clone(), self.busy)?);
        // The new connections may use the same `-shm` file: closing our old descriptor on
        // it would drop their locks, so it is left open (one descriptor per replacement).
        let DbConns { shm_file, .. } = old;
        if let Some(f) = shm_file.into_inner().unwrap_or_else(|p| p.into_inner()) {
            std::mem::forget(f);
        }
        Ok(())
    }

    pub fn paths(&self) -> &DbPaths {
        &self.paths
    }

    pub fn page_size(&self) -> PageSize {
        self.page_size
    }

    /// Starts a read transaction on the idle pin connection. The previous pin (if any)
    /// stays held until [`DbConns::release_old_pin`], so protection never lapses.
    pub fn begin_pin(&mut self) -> Result<(), DbError> {
        let next = match self.active {
            Some(i) => 1 - i,
            None => 0,
        };
        let path = self.paths.db.clone();
        let c = self.pin_conn(next)?;
        if !c.is_autocommit() {
            run_cached(c, "ROLLBACK").map_err(|source| DbError::Sqlite {
                path: path.clone(),
                op: "end stale read transaction",
                source,
            })?;
        }
        run_cached(c, "BEGIN").map_err(|source| DbError::Sqlite {
            path: path.clone(),
            op: "begin read transaction",
            source,
        })?;
        // A read transaction starts (and takes its read mark) at its first read. The
        // schema cookie is read from page 1's header without parsing the schema.
        // Statements cached: the pin moves at every capture (up to 50 a second).
        let first_read = c
            .prepare_cached("PRAGMA schema_version")
            .and_then(|mut s| s.query_row([], |r| r.get::<_, i64>(0)));
        if let Err(source) = first_read {
            let _ = c.execute_batch("ROLLBACK");
            return Err(DbError::Sqlite {
                path,
                op: "start read transaction",
                source,
            });
        }
        self.active = Some(next);
        Ok(())
    }

    /// Ends the read transaction on the connection that is not the active pin.
    pub fn release_old_pin(&mut self) -> Result<(), DbError> {
        let Some(active) = self.active else {
            return Ok(());
        };
        let Some(c) = &self.pins[1 - active] else {
            return Ok(());
        };
        if !c.is_autocommit() {
            run_cached(c, "ROLLBACK").map_err(|source| DbError::Sqlite {
                path: self.paths.db.clone(),
                op: "end read transaction",
                source,
            })?;
        }
        Ok(())
    }

    /// Moves the pin to the current end of the WAL. Only safe once everything up to the
    /// new pin's snapshot has been captured; the capture loop calls `begin_pin`, captures,
    /// then `release_old_pin` instead.
    pub fn has_pin(&self) -> bool {
        self.active.is_some()
    }

    /// Takes SQLite's write lock (`BEGIN IMMEDIATE`), so no commit can land until
    /// [`DbConns::end_barrier`]. Holders keep it for milliseconds: long enough to seal the
    /// WAL, never for a whole-database copy.
    pub fn begin_barrier(&mut self) -> Result<(), DbError> {
        if self.in_barrier {
            return Ok(());
        }
        if self.barrier.is_none() {
            self.barrier = Some(open_conn(&self.paths, self.busy)?);
        }
        let barrier = self.barrier.as_ref().expect("just opened");
        barrier
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(|source| DbError::Sqlite {
                path: self.paths.db.clone(),
                op: "take write lock",
                source,
            })?;
        self.in_barrier = true;
        Ok(())
    }

    /// Like [`DbConns::begin_barrier`], but waits at most about [`BARRIER_TRY_POLLS`] x
    /// [`BARRIER_TRY_POLL`] for the lock, polling it finely: an application committing
    /// back to back frees the lock for microseconds between transactions, which SQLite's
    /// default busy handler (sleeps of 1 to 100 ms) keeps missing, so a `busy_timeout`
    /// wait can run out after a second. Returns false (no lock, barrier connection closed)
    /// when the lock stayed taken: the caller tries again later.
    pub fn try_begin_barrier(&mut self) -> Result<bool, DbError> {
        if self.in_barrier {
            return Ok(true);
        }
        if self.barrier.is_none() {
            self.barrier = Some(open_conn(&self.paths, self.busy)?);
        }
        let barrier = self.barrier.as_ref().expect("just opened");
        let sq = |op, source| DbError::Sqlite {
            path: self.paths.db.clone(),
            op,
            source,
        };
        barrier
            .busy_handler(Some(poll_write_lock))
            .map_err(|e| sq("set busy handler", e))?;
        match barrier.execute_batch("BEGIN IMMEDIATE") {
            Ok(()) => {
                self.in_barrier = true;
                Ok(true)
            }
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy =>
            {
                if let Some(c) = self.barrier.take() {
                    let _ = c.close();
                }
                Ok(false)
            }
            Err(e) => Err(sq("take write lock", e)),
        }
    }

    /// Releases the write lock and closes the barrier connection: it is needed only for
    /// whole-database images and checkpoints.
    pub fn end_barrier(&mut self) -> Result<(), DbError> {
        if !self.in_barrier {
            return Ok(());
        }
        self.in_barrier = false;
        let Some(barrier) = self.barrier.take() else {
            return Ok(());
        };
        let r = barrier
            .execute_batch("ROLLBACK")
            .map_err(|source| DbError::Sqlite {
                path: self.paths.db.clone(),
                op: "release write lock",
                source,
            });
        // Closing ends any transaction left open, so the lock is gone either way.
        let _ = barrier.close();
        r
    }

    /// Runs `PRAGMA wal_checkpoint(PASSIVE)` on the idle pin connection. It backfills up
    /// to the oldest read mark (ours included) and never blocks the application.
    /// Returns (frames in WAL, frames backfilled), or None if SQLite reported busy.
    pub fn checkpoint_passive(&mut self) -> Result<Option<(i64, i64)>, DbError> {
        let path = self.paths.db.clone();
        let (_, c) = self.idle_conn_outside_transaction()?;
        // The C call, not `PRAGMA wal_checkpoint`: the pragma parses the schema first. A
        // connection opens the WAL at its first read, and the call does nothing before.
        c.query_row("PRAGMA schema_version", [], |r| r.get::<_, i64>(0))
            .map_err(|source| DbError::Sqlite {
                path: path.clone(),
                op: "open WAL",
                source,
            })?;
        let (mut log, mut ckpt) = (0, 0);
        // SAFETY: the handle is valid while `c` lives; "main" is a NUL-terminated literal
        // and both out-pointers point at live c_ints.
        let rc = unsafe {
            rusqlite::ffi::sqlite3_wal_checkpoint_v2(
                c.handle(),
                c"main".as_ptr(),
                rusqlite::ffi::SQLITE_CHECKPOINT_PASSIVE,
                &mut log,
                &mut ckpt,
            )
        };
        match rc {
            rusqlite::ffi::SQLITE_OK => Ok(Some((log as i64, ckpt as i64))),
            rusqlite::ffi::SQLITE_BUSY | rusqlite::ffi::SQLITE_LOCKED => Ok(None),
            code => Err(DbError::Sqlite {
                path,
                op: "checkpoint",
                source: rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None),
            }),
        }
    }

    /// Runs `PRAGMA wal_checkpoint(TRUNCATE)` on an idle pin connection (with the busy
    /// timeout: it waits for the application's readers and writer). The caller has ended
    /// our own read transactions first ([`DbConns::release_all`]), or it cannot finish.
    /// Returns whether the WAL was checkpointed completely and truncated to zero bytes.
    pub fn checkpoint_truncate(&mut self) -> Result<bool, DbError> {
        let path = self.paths.db.clone();
        let (idle, c) = self.idle_conn_outside_transaction()?;
        let r = c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        });
        // The pragma loaded the schema into this connection.
        self.heavy[idle] = true;
        match r {
            Ok((busy, log, ckpt)) => Ok(busy == 0 && log <= 0 && ckpt <= 0),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if matches!(
                    e.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) =>
            {
                Ok(false)
            }
            Err(source) => Err(DbError::Sqlite {
                path,
                op: "checkpoint (TRUNCATE)",
                source,
            }),
        }
    }

    /// Streams every page of the database as the active pin's snapshot sees it, in page
    /// order, through SQLite's own pager (`sqlite_dbpage`), so a concurrent checkpoint can
    /// never tear a page. The lock page is skipped.
    pub fn for_each_page(
        &mut self,
        mut f: impl FnMut(PageNo, &[u8]) -> Result<(), DbError>,
    ) -> Result<u32, DbError> {
        let Some(active) = self.active else {
            return Err(DbError::Io {
                path: self.paths.db.clone(),
                op: "read pages",
                source: std::io::Error::other("no read transaction held"),
            });
        };
        let sq = |op| {
            let path = self.paths.db.clone();
            move |source| DbError::Sqlite { path, op, source }
        };
        self.heavy[active] = true;
        let c = self.pins[active].as_ref().expect("the active pin is open");
        // Each page is read once: a page cache of a page or two (8 KiB), not the default
        // 2 MiB that would fill up and stay. Not cached: a whole-database image is rare.
        c.execute_batch("PRAGMA cache_size=-8")
            .map_err(sq("configure"))?;
        let mut stmt = c
            .prepare("SELECT pgno, data FROM sqlite_dbpage('main') ORDER BY pgno")
            .map_err(sq("read pages"))?;
        let mut rows = stmt.query([]).map_err(sq("read pages"))?;
        let lock = self.page_size.lock_page();
        let mut count = 0;
        while let Some(row) = rows.next().map_err(sq("read pages"))? {
            let pgno: i64 = row.get(0).map_err(sq("read pages"))?;
            let pgno = PageNo::new(pgno as u32).map_err(|_| DbError::Io {
                path: self.paths.db.clone(),
                op: "read pages",
                source: std::io::Error::other("page number 0"),
            })?;
            count = pgno.get();
            if pgno == lock {
                continue;
            }
            let data = row.get_ref(1).map_err(sq("read pages"))?;
            let bytes = data.as_blob().map_err(|e| sq("read pages")(e.into()))?;
            if bytes.len() != self.page_size.bytes() {
                return Err(DbError::BadPageSize {
                    path: self.paths.db.clone(),
                    size: bytes.len() as u32,
                });
            }
            f(pgno, bytes)?;
        }
        drop(rows);
        drop(stmt);
        // A whole-database image is taken at start for every database, and their pins are
        // trimmed only once the start-up burst has passed: give the wal-index pages back
        // now (see `unmap_shm_pages`), or the peak holds every database's 32 KiB.
        if self.header_says_wal() {
            unmap_shm_pages(c, &self.paths.shm);
        }
        Ok(count)
    }

    /// Reads a page straight from the database file (zeros past its end). Used only for
    /// pages that no committed WAL frame carries: growth pages SQLite never wrote.
    pub fn read_file_page(&self, pgno: PageNo, buf: &mut [u8]) -> Result<(), DbError> {
        let io = |source| DbError::Io {
            path: self.paths.db.clone(),
            op: "read page from database file",
            source,
        };
        // Through our long-lived descriptor: opening and closing one here would drop the
        // connections' locks on the database file (see `db_file`).
        let f = &self.db_file;
        buf.fill(0);
        if pgno == self.page_size.lock_page() {
            // Never read: SQLite's Windows VFS holds mandatory `LockFileEx` locks on its
            // first 512 bytes (a raw read there fails), and no LTX file stores it.
            return Ok(());
        }
        let off = self.page_size.offset_of(pgno);
        let len = f.metadata().map_err(io)?.len();
        if off < len {
            let n = ((len - off) as usize).min(buf.len());
            f.read_exact_at(&mut buf[..n], off).map_err(io)?;
        }
        Ok(())
    }

    /// The database size in pages as the active pin sees it.
    pub fn page_count(&mut self) -> Result<u32, DbError> {
        let i = self.active.unwrap_or(0);
        self.heavy[i] = true;
        let c = self.pin_conn(i)?;
        c.query_row("PRAGMA page_count", [], |r| r.get::<_, i64>(0))
            .map(|n| n as u32)
            .map_err(|source| DbError::Sqlite {
                path: self.paths.db.clone(),
                op: "page_count",
                source,
            })
    }

    /// Ends every transaction we hold (shutdown).
    pub fn release_all(&mut self) {
        let _ = self.end_barrier();
        for c in self.pins.iter().flatten() {
            if !c.is_autocommit() {
                let _ = c.execute_batch("ROLLBACK");
            }
        }
        self.active = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app_db(dir: &Path) -> (PathBuf, Connection) {
        let p = dir.join("app.db");
        let c = Connection::open(&p).unwrap();
        c.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES (1);")
            .unwrap();
        (p, c)
    }

    #[test]
    fn try_barrier_gives_up_on_a_held_write_lock_and_takes_a_free_one() {
        let d = tempfile::tempdir().unwrap();
        let (p, app) = app_db(d.path());
        let mut conns = DbConns::open(&p, Duration::from_secs(5)).unwrap();
        app.execute_batch("BEGIN IMMEDIATE").unwrap();
        // Held throughout: a short try, not the 5 s busy timeout, and no connection kept.
        assert!(!conns.try_begin_barrier().unwrap());
        assert!(conns.barrier.is_none() && !conns.in_barrier);
        app.execute_batch("INSERT INTO t VALUES (2); COMMIT")
            .unwrap();
        assert!(conns.try_begin_barrier().unwrap());
        // The barrier holds the lock: the application cannot commit until it ends.
        app.busy_timeout(Duration::ZERO).unwrap();
        assert!(app.execute_batch("INSERT INTO t VALUES (3)").is_err());
        conns.end_barrier().unwrap();
        app.execute_batch("INSERT INTO t VALUES (3)").unwrap();
    }

    #[test]
    fn rejects_non_wal_and_non_sqlite() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("rollback.db");
        let c = Connection::open(&p).unwrap();
        c.execute_batch("CREATE TABLE t(x)").unwrap();
        assert!(matches!(
            DbConns::open(&p, Duration::from_secs(1)),
            Err(DbError::NotWal { .. })
        ));
        let junk = d.path().join("junk.db");
        std::fs::write(&junk, vec![7u8; 4096]).unwrap();
        assert!(matches!(
            DbConns::open(&junk, Duration::from_secs(1)),
            Err(DbError::NotSqlite { .. })
        ));
        assert!(matches!(
            DbConns::open(&d.path().join("none.db"), Duration::from_secs(1)),
            Err(DbError::Missing { .. })
        ));
    }

    #[test]
    fn pin_blocks_wal_restart_until_moved() {
        let d = tempfile::tempdir().unwrap();
        let (p, app) = app_db(d.path());
        let mut conns = DbConns::open(&p, Duration::from_millis(100)).unwrap();
        app.execute("INSERT INTO t VALUES (2)", []).unwrap();
        conns.begin_pin().unwrap();
        app.execute("INSERT INTO t VALUES (3)", []).unwrap();
        // The app's TRUNCATE checkpoint cannot reset the WAL under our pin.
        let (busy, _, _): (i64, i64, i64) = app
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap();
        assert_eq!(busy, 1, "TRUNCATE must report busy while pinned");
        assert!(std::fs::metadata(conns.paths().wal.clone()).unwrap().len() > 32);
        // Whole-database image through the pin.
        let mut pages = 0;
        conns
            .for_each_page(|_, _| {
                pages += 1;
                Ok(())
            })
            .unwrap();
        assert_eq!(pages, conns.page_count().unwrap());
        conns.release_all();
        let (busy, _, _): (i64, i64, i64) = app
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap();
        assert_eq!(busy, 0);
    }

    /// Resident KiB of this process's mapping of `shm` (None when it is not mapped).
    fn shm_resident_kib(shm: &Path) -> Option<u64> {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let name = shm.to_str().unwrap();
        let mut total = None;
        let mut ours = false;
        for line in smaps.lines() {
            let first = line.split_whitespace().next().unwrap_or("");
            if first.contains('-') && !first.ends_with(':') {
                ours = line.ends_with(name);
            } else if ours && first == "Rss:" {
                let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
                total = Some(total.unwrap_or(0) + kib);
            }
        }
        total
    }

    fn truncate(app: &Connection) -> i64 {
        app.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn quiet_database_keeps_one_connection_and_its_pin() {
        let d = tempfile::tempdir().unwrap();
        let (p, app) = app_db(d.path());
        // A large application schema: a pin must not parse it.
        for i in 0..200 {
            app.execute_batch(&format!(
                "CREATE TABLE t{i}(a INTEGER PRIMARY KEY, b TEXT, c BLOB); CREATE INDEX i{i} ON t{i}(b);"
            ))
            .unwrap();
        }
        let mut conns = DbConns::open(&p, Duration::from_millis(100)).unwrap();
        assert_eq!(conns.open_connections(), 1);
        conns.begin_pin().unwrap();
        let pinned = conns.memory_used();
        assert!(
            pinned < 16 * 1024,
            "a pin holds {pinned} bytes of SQLite memory"
        );
        // Move the pin the way a capture does, with a barrier, then go quiet.
        for round in 0..3 {
            app.execute("INSERT INTO t VALUES (?1)", [round]).unwrap();
            conns.begin_barrier().unwrap();
            assert_eq!(conns.open_connections(), 2);
            conns.begin_pin().unwrap();
            conns.release_old_pin().unwrap();
            conns.end_barrier().unwrap();
            assert_eq!(conns.open_connections(), 2, "two pins, barrier closed");
            conns.trim();
            assert_eq!(conns.open_connections(), 1, "only the pin stays");
            assert!(conns.has_pin());
            assert_eq!(
                shm_resident_kib(&conns.paths().shm),
                Some(0),
                "wal-index unmapped"
            );
            // The remaining pin still stops the WAL from being restarted over new frames.
            app.execute("INSERT INTO t VALUES (?1)", [round + 100])
                .unwrap();
            assert_eq!(truncate(&app), 1, "TRUNCATE must report busy while pinned");
        }
        // A whole-database read loads the schema on its connection; trimming after the pin
        // moved off it gives that back.
        let mut pages = 0;
        conns
            .for_each_page(|_, _| {
                pages += 1;
                Ok(())
            })
            .unwrap();
        assert!(pages > 200);
        assert!(conns.pin_is_heavy());
        assert!(conns.memory_used() > pinned + 16 * 1024);
        conns.begin_pin().unwrap();
        conns.release_old_pin().unwrap();
        assert!(!conns.pin_is_heavy());
        conns.trim();
        assert_eq!(conns.open_connections(), 1);
        assert!(conns.memory_used() < 16 * 1024);
        // Checkpoints run on a connection opened for them.
        let (log, ckpt) = conns.checkpoint_passive().unwrap().unwrap();
        assert!(log > 0 && ckpt <= log, "log {log} ckpt {ckpt}");
        conns.release_all();
        assert_eq!(truncate(&app), 0);
    }

    #[test]
    fn a_pin_moved_many_times_still_holds_its_frames() {
        let d = tempfile::tempdir().unwrap();
        let (p, app) = app_db(d.path());
        app.execute_batch("PRAGMA wal_autocheckpoint=0").unwrap();
        let mut conns = DbConns::open(&p, Duration::from_millis(100)).unwrap();
        let ckpt = |mode: &str| -> (i64, i64, i64) {
            app.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap()
        };
        for i in 0..6 {
            app.execute("INSERT INTO t VALUES (?1)", [i + 10]).unwrap();
            conns.begin_pin().unwrap();
            conns.release_old_pin().unwrap();
            let (_, pinned_at, _) = ckpt("PASSIVE");
            app.execute("INSERT INTO t VALUES (?1)", [i + 100]).unwrap();
            // Frames after the pin are never backfilled, so the WAL cannot restart.
            let (_, log, backfilled) = ckpt("PASSIVE");
            assert!(log > pinned_at, "move {i}: the app appended");
            assert!(backfilled <= pinned_at, "move {i}: backfill passed the pin");
        }
    }

    #[test]
    fn shm_figures_follow_checkpoints() {
        let d = tempfile::tempdir().unwrap();
        let (p, app) = app_db(d.path());
        app.execute_batch("PRAGMA wal_autocheckpoint=0; INSERT INTO t VALUES (2);")
            .unwrap();
        let shm = DbPaths::new(&p).shm;
        let before = ShmInfo::read(&shm).unwrap(); // no connection of ours is open yet
        assert!(before.mx_frame > 0 && !before.fully_backfilled());
        let mut conns = DbConns::open(&p, Duration::from_millis(100)).unwrap();
        conns.checkpoint_passive().unwrap().unwrap();
        assert!(conns.shm_info().unwrap().fully_backfilled());
    }

    /// Issue 20: the raw `-shm` read stops before the lock bytes (120..129), which SQLite's
    /// Windows VFS locks with mandatory `LockFileEx`: the figures come from the first 100
    /// bytes alone, so a `-shm` holding only those still yields them.
    #[test]
    fn shm_figures_come_from_bytes_before_the_lock_bytes() {
        let d = tempfile::tempdir().unwrap();
        let (p, app) = app_db(d.path());
        app.execute_batch("PRAGMA wal_autocheckpoint=0; INSERT INTO t VALUES (2);")
            .unwrap();
        let shm = std::fs::read(DbPaths::new(&p).shm).unwrap();
        let head = d.path().join("head-shm");
        std::fs::write(&head, &shm[..SHM_RAW_READ]).unwrap();
        let got = ShmInfo::read(&head).expect("figures from the first 100 bytes");
        assert!(got.mx_frame > 0);
        assert_eq!(Some(got), ShmInfo::read(&DbPaths::new(&p).shm));
        assert!(SHM_RAW_READ <= 120, "clear of the WAL lock bytes");
    }
}
