//! The methods of one database file opened through the VFS.
//!
//! Owns: the C side of a [`Reader`]: reads, the lock calls that mark transactions (a
//! SHARED lock taken from no lock is the start of a read transaction, the one point where
//! the TXID served may move), refusing every write with `SQLITE_READONLY`, and the
//! pragmas (`SQLITE_FCNTL_PRAGMA`):
//!
//! | pragma | answers |
//! |---|---|
//! | `sqlite_replicate_txid` | the TXID served (16 hex digits) |
//! | `sqlite_replicate_txid = X` | from the next transaction on, serve TXID `X` (or `latest`) |
//! | `sqlite_replicate_timestamp` | when the TXID served was written (RFC 3339, ms; empty if the writer did not record it) |
//! | `sqlite_replicate_timestamp = T` | from the next transaction on, serve the state `restore -timestamp T` writes (or `latest`) |
//! | `sqlite_replicate_stats` | JSON: page GETs and bytes, header/index GETs and bytes, polls, the last load's time and its parts (`load_ms`, `list_ms`, `index_ms`, `map_ms`), time waited for page data (`page_wait_ms`), memory cache bytes, disk cache hits, damaged entries refetched, bytes; hydration: state (`running`, `done`, `failed`), TXID, bytes done and total, pages read from the copy |
//! | `sqlite_replicate_error` | the last error, naming the object (SQLite's own message is only "disk I/O error") |
//!
//! Every method catches panics (`host::guard`).

use std::ffi::{c_char, c_int, c_void, CStr};
use std::ptr;

use engine::history::plan::Target;
use ltx::TxId;

use crate::error::VfsError;
use crate::ffi::*;
use crate::host::{api, guard, report, VFS_NAME};
use crate::reader::Reader;

/// What SQLite allocates per open file (`szOsFile`): the base struct, then ours.
#[repr(C)]
pub struct VfsFile {
    pub base: Sqlite3File,
    pub handle: *mut Handle,
}

pub struct Handle {
    reader: Reader,
    lock: c_int,
    last_error: Option<String>,
}

impl Handle {
    pub fn new(reader: Reader) -> Handle {
        Handle {
            reader,
            lock: SQLITE_LOCK_NONE,
            last_error: None,
        }
    }

    /// Remembers and reports `e`; returns `rc` for SQLite.
    fn fail(&mut self, e: VfsError, rc: c_int) -> c_int {
        let text = e.to_string();
        if self.last_error.as_deref() != Some(&text) {
            report(&e);
        }
        self.last_error = Some(text);
        rc
    }
}

pub static METHODS: IoMethods = IoMethods {
    version: 1,
    close: Some(x_close),
    read: Some(x_read),
    write: Some(x_write),
    truncate: Some(x_truncate),
    sync: Some(x_sync),
    file_size: Some(x_file_size),
    lock: Some(x_lock),
    unlock: Some(x_unlock),
    check_reserved_lock: Some(x_check_reserved_lock),
    file_control: Some(x_file_control),
    sector_size: Some(x_sector_size),
    device_characteristics: Some(x_device_characteristics),
};

/// The handle behind `f`.
///
/// # Safety
/// `f` is a file this VFS opened (its methods are [`METHODS`]), not yet closed.
unsafe fn handle<'a>(f: *mut Sqlite3File) -> &'a mut Handle {
    // SAFETY: per the contract; SQLite calls one file's methods one at a time.
    unsafe { &mut *(*(f as *mut VfsFile)).handle }
}

unsafe extern "C" fn x_close(f: *mut Sqlite3File) -> c_int {
    guard(SQLITE_OK, || {
        // SAFETY: closing a file this VFS opened; the handle is dropped once.
        unsafe {
            let vf = f as *mut VfsFile;
            if !(*vf).handle.is_null() {
                drop(Box::from_raw((*vf).handle));
                (*vf).handle = ptr::null_mut();
            }
        }
        SQLITE_OK
    })
}

unsafe extern "C" fn x_read(f: *mut Sqlite3File, buf: *mut c_void, n: c_int, off: Int64) -> c_int {
    guard(SQLITE_IOERR_READ, || {
        // SAFETY: SQLite passes n writable bytes at buf.
        let out = unsafe { std::slice::from_raw_parts_mut(buf as *mut u8, n.max(0) as usize) };
        // SAFETY: f is ours.
        let h = unsafe { handle(f) };
        match h.reader.read(out, off.max(0) as u64) {
            Ok(true) => SQLITE_OK,
            Ok(false) => SQLITE_IOERR_SHORT_READ,
            Err(e) => h.fail(e, SQLITE_IOERR_READ),
        }
    })
}

unsafe extern "C" fn x_write(
    _f: *mut Sqlite3File,
    _b: *const c_void,
    _n: c_int,
    _o: Int64,
) -> c_int {
    SQLITE_READONLY
}

unsafe extern "C" fn x_truncate(_f: *mut Sqlite3File, _size: Int64) -> c_int {
    SQLITE_READONLY
}

unsafe extern "C" fn x_sync(_f: *mut Sqlite3File, _flags: c_int) -> c_int {
    SQLITE_OK
}

unsafe extern "C" fn x_file_size(f: *mut Sqlite3File, out: *mut Int64) -> c_int {
    guard(SQLITE_IOERR, || {
        // SAFETY: f is ours.
        let h = unsafe { handle(f) };
        if h.reader.snapshot().is_none() {
            if let Err(e) = h.reader.begin_read() {
                return h.fail(e, SQLITE_IOERR);
            }
        }
        let size = h.reader.snapshot().map_or(0, |s| s.size_bytes());
        // SAFETY: out is a valid pointer.
        unsafe { *out = size as Int64 };
        SQLITE_OK
    })
}

unsafe extern "C" fn x_lock(f: *mut Sqlite3File, level: c_int) -> c_int {
    guard(SQLITE_IOERR_LOCK, || {
        // SAFETY: f is ours.
        let h = unsafe { handle(f) };
        if level > SQLITE_LOCK_SHARED {
            return SQLITE_READONLY;
        }
        if h.lock == SQLITE_LOCK_NONE && level == SQLITE_LOCK_SHARED {
            if let Err(e) = h.reader.begin_read() {
                return h.fail(e, SQLITE_IOERR_LOCK);
            }
        }
        h.lock = level;
        SQLITE_OK
    })
}

unsafe extern "C" fn x_unlock(f: *mut Sqlite3File, level: c_int) -> c_int {
    guard(SQLITE_OK, || {
        // SAFETY: f is ours.
        let h = unsafe { handle(f) };
        h.lock = level.min(h.lock);
        SQLITE_OK
    })
}

unsafe extern "C" fn x_check_reserved_lock(_f: *mut Sqlite3File, out: *mut c_int) -> c_int {
    // SAFETY: out is a valid pointer. Nobody writes through this VFS.
    unsafe { *out = 0 };
    SQLITE_OK
}

unsafe extern "C" fn x_file_control(f: *mut Sqlite3File, op: c_int, arg: *mut c_void) -> c_int {
    guard(SQLITE_ERROR, || match op {
        SQLITE_FCNTL_PRAGMA => {
            // SAFETY: for this op, arg is char*[3]: result out, pragma name, value or null.
            let args = arg as *mut *mut c_char;
            let (name, value) = unsafe {
                let name = CStr::from_ptr(*args.add(1))
                    .to_string_lossy()
                    .to_ascii_lowercase();
                let v = *args.add(2);
                let value =
                    (!v.is_null()).then(|| CStr::from_ptr(v).to_string_lossy().into_owned());
                (name, value)
            };
            // SAFETY: f is ours.
            let h = unsafe { handle(f) };
            let (rc, text) = match pragma(h, &name, value.as_deref()) {
                None => return SQLITE_NOTFOUND,
                Some(Ok(t)) => (SQLITE_OK, t),
                Some(Err(t)) => (SQLITE_ERROR, t),
            };
            // SAFETY: SQLite frees the result with sqlite3_free.
            unsafe { *args = api().sqlite_string(&text) };
            rc
        }
        SQLITE_FCNTL_VFSNAME => {
            // SAFETY: for this op, arg is a char** to receive a sqlite3_malloc'd name.
            unsafe {
                *(arg as *mut *mut c_char) = api().sqlite_string(VFS_NAME.to_str().expect("ASCII"));
            }
            SQLITE_OK
        }
        _ => SQLITE_NOTFOUND,
    })
}

/// One of our pragmas: `None` if `name` is not ours.
fn pragma(h: &mut Handle, name: &str, value: Option<&str>) -> Option<Result<String, String>> {
    let value = value.map(|v| v.trim().trim_matches(['\'', '"']));
    Some(match (name, value) {
        ("sqlite_replicate_txid", None) => loaded(h).map(|s| s.txid.to_string()),
        ("sqlite_replicate_txid", Some(v)) => set_target(h, name, v, |v| {
            TxId::parse_hex16(v)
                .map(Target::TxId)
                .map_err(|e| format!("{e} (16 hex digits, or latest)"))
        }),
        ("sqlite_replicate_timestamp", None) => {
            loaded(h).map(|s| s.timestamp.map(|t| format!("{t:.3}")).unwrap_or_default())
        }
        ("sqlite_replicate_timestamp", Some(v)) => set_target(h, name, v, |v| {
            crate::options::parse_timestamp(v).map_err(|e| format!("{e}, or latest"))
        }),
        ("sqlite_replicate_stats", _) => Ok(stats_json(&h.reader)),
        ("sqlite_replicate_error", _) => Ok(h.last_error.clone().unwrap_or_default()),
        _ => return None,
    })
}

/// The state served, loading it first if no transaction has yet; an error is remembered
/// for `sqlite_replicate_error` and returned as the pragma's message.
fn loaded(h: &mut Handle) -> Result<&crate::reader::Snapshot, String> {
    if h.reader.snapshot().is_none() {
        if let Err(e) = h.reader.begin_read() {
            let t = e.to_string();
            h.fail(e, SQLITE_ERROR);
            return Err(t);
        }
    }
    h.reader
        .snapshot()
        .ok_or_else(|| "sqlite-replicate VFS: no state loaded".to_string())
}

/// `PRAGMA name = v`: `latest`, or what `parse` makes of `v`, served from the next
/// transaction on. Answers `v`.
fn set_target(
    h: &mut Handle,
    name: &str,
    v: &str,
    parse: impl Fn(&str) -> Result<Target, String>,
) -> Result<String, String> {
    let target = if v.eq_ignore_ascii_case("latest") {
        Target::Latest
    } else {
        parse(v).map_err(|e| format!("{name} = {v:?}: {e}"))?
    };
    h.reader.set_target(target);
    Ok(v.to_string())
}

/// Milliseconds to a tenth.
fn round(ms: f64) -> f64 {
    (ms * 10.0).round() / 10.0
}

fn stats_json(r: &Reader) -> String {
    let s = r.stats;
    serde_json::json!({
        "txid": r.snapshot().map(|s| s.txid.to_string()),
        "gets": s.gets,
        "bytes_fetched": s.bytes_fetched,
        "index_gets": s.index_gets,
        "index_bytes": s.index_bytes,
        "polls": s.polls,
        "load_ms": round(s.load_ms),
        "list_ms": round(s.list_ms),
        "index_ms": round(s.index_ms),
        "map_ms": round(s.map_ms),
        "page_wait_ms": round(s.page_wait_ms),
        "cache_bytes": r.cache_used_bytes(),
        "disk_hits": s.disk_hits,
        "disk_bad": s.disk_bad,
        "disk_bytes": r.disk_used_bytes(),
        "hydrated_reads": s.hydrated_reads,
        "hydrate": r.hydration(),
    })
    .to_string()
}

unsafe extern "C" fn x_sector_size(_f: *mut Sqlite3File) -> c_int {
    4096
}

unsafe extern "C" fn x_device_characteristics(_f: *mut Sqlite3File) -> c_int {
    0
}
