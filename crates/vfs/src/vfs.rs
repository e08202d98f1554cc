//! The `sqlite-replicate` VFS object: registration, and the VFS-level callbacks.
//!
//! Owns: `xOpen` (a main database becomes a [`crate::file`] reading a replica; the
//! temporary files SQLite makes for sorting and the like go to the default VFS; a journal
//! or WAL of a replica database cannot be opened: it is read-only), and the answers that
//! keep SQLite from looking for a journal or WAL on disk (`xAccess`: nothing exists). The
//! rest (randomness, time, sleep, dynamic loading) is the default VFS's.
//!
//! Every callback catches panics (`host::guard`): none crosses into SQLite.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};

use crate::ffi::*;
use crate::file::{self, Handle, VfsFile};
use crate::host::{api, guard, report, API, VFS_NAME};
use crate::options::Options;
use crate::reader::Reader;

static DEFAULT: AtomicPtr<Sqlite3Vfs> = AtomicPtr::new(ptr::null_mut());

/// Registers the VFS (once per process; later loads find it registered).
///
/// # Safety
/// `table` is the API table SQLite passed to the entry point.
pub unsafe fn register(table: *const c_void) -> Result<(), String> {
    // SAFETY: per this function's contract.
    let api = unsafe { Api::from_table(table) }
        .ok_or("this SQLite is too old for the sqlite-replicate VFS (needs 3.7.7 or later)")?;
    let api = *API.get_or_init(|| api);
    // SAFETY: vfs_find takes a NUL-terminated name or null (the default VFS).
    unsafe {
        if !(api.vfs_find)(VFS_NAME.as_ptr()).is_null() {
            return Ok(());
        }
        let default = (api.vfs_find)(ptr::null());
        if default.is_null() {
            return Err("SQLite has no default VFS to delegate temporary files to".into());
        }
        DEFAULT.store(default, Ordering::Release);
        let vfs = Box::leak(Box::new(Sqlite3Vfs {
            version: 2,
            sz_os_file: (std::mem::size_of::<VfsFile>() as c_int).max((*default).sz_os_file),
            mx_pathname: 1024,
            next: ptr::null_mut(),
            name: VFS_NAME.as_ptr(),
            app_data: ptr::null_mut(),
            open: Some(x_open),
            delete: Some(x_delete),
            access: Some(x_access),
            full_pathname: Some(x_full_pathname),
            dl_open: (*default).dl_open.map(|_| x_dl_open as _),
            dl_error: (*default).dl_error.map(|_| x_dl_error as _),
            dl_sym: (*default).dl_sym.map(|_| x_dl_sym as _),
            dl_close: (*default).dl_close.map(|_| x_dl_close as _),
            randomness: Some(x_randomness),
            sleep: Some(x_sleep),
            current_time: Some(x_current_time),
            get_last_error: Some(x_get_last_error),
            current_time_int64: Some(x_current_time_int64),
        }));
        match (api.vfs_register)(vfs, 0) {
            SQLITE_OK => Ok(()),
            rc => Err(format!(
                "registering the sqlite-replicate VFS failed ({rc})"
            )),
        }
    }
}

fn default() -> *mut Sqlite3Vfs {
    DEFAULT.load(Ordering::Acquire)
}

unsafe extern "C" fn x_open(
    _vfs: *mut Sqlite3Vfs,
    name: *const c_char,
    f: *mut Sqlite3File,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    guard(SQLITE_CANTOPEN, || {
        // SAFETY: f points to sz_os_file bytes; methods null until opened.
        unsafe { (*f).methods = ptr::null() };
        if flags & SQLITE_OPEN_MAIN_DB == 0 {
            if flags & (SQLITE_OPEN_MAIN_JOURNAL | SQLITE_OPEN_WAL | SQLITE_OPEN_SUPER_JOURNAL) != 0
            {
                return SQLITE_CANTOPEN;
            }
            let d = default();
            // SAFETY: the default VFS opens its own files in the same memory (sz_os_file
            // is at least its size); SQLite then calls its methods directly.
            return unsafe { ((*d).open.expect("xOpen"))(d, name, f, flags, out_flags) };
        }
        if name.is_null() {
            return SQLITE_CANTOPEN;
        }
        // SAFETY: SQLite passes a NUL-terminated file name (its URI parameters follow it).
        let db_name = unsafe { CStr::from_ptr(name) }
            .to_string_lossy()
            .into_owned();
        let uri = |k: &str| {
            let k = CString::new(k).ok()?;
            // SAFETY: name is the file name SQLite gave xOpen, as uri_parameter requires.
            let v = unsafe { (api().uri_parameter)(name, k.as_ptr()) };
            // SAFETY: a non-null result is a NUL-terminated string owned by SQLite.
            (!v.is_null()).then(|| unsafe { CStr::from_ptr(v) }.to_string_lossy().into_owned())
        };
        let opened = Options::parse(&uri, &|k| std::env::var(k).ok())
            .map_err(crate::error::VfsError::from)
            .and_then(|o| {
                let c = crate::replica::candidates(&db_name, &o)?;
                let disk = match &o.cache_dir {
                    Some((dir, bound)) => Some(std::sync::Arc::new(crate::disk::DiskCache::open(
                        dir, *bound,
                    )?)),
                    None => None,
                };
                Ok(Reader::new(
                    c,
                    o.target,
                    o.poll,
                    o.cache_bytes,
                    disk,
                    o.hydrate,
                ))
            });
        let reader = match opened {
            Ok(r) => r,
            Err(e) => {
                report(&e);
                return SQLITE_CANTOPEN;
            }
        };
        let handle = Box::new(Handle::new(reader));
        // SAFETY: f has room for a VfsFile (sz_os_file).
        unsafe {
            let vf = f as *mut VfsFile;
            (*vf).handle = Box::into_raw(handle);
            (*vf).base.methods = &file::METHODS;
            if !out_flags.is_null() {
                *out_flags =
                    (flags & !(SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE)) | SQLITE_OPEN_READONLY;
            }
        }
        SQLITE_OK
    })
}

unsafe extern "C" fn x_delete(_vfs: *mut Sqlite3Vfs, _name: *const c_char, _sync: c_int) -> c_int {
    SQLITE_READONLY
}

unsafe extern "C" fn x_access(
    _vfs: *mut Sqlite3Vfs,
    _name: *const c_char,
    _flags: c_int,
    out: *mut c_int,
) -> c_int {
    // No journal, WAL or -shm of a replica database exists anywhere.
    // SAFETY: out is a valid int pointer.
    unsafe { *out = 0 };
    SQLITE_OK
}

unsafe extern "C" fn x_full_pathname(
    _vfs: *mut Sqlite3Vfs,
    name: *const c_char,
    n_out: c_int,
    out: *mut c_char,
) -> c_int {
    guard(SQLITE_CANTOPEN, || {
        // A replica database's name is a name, not a local path: kept as written.
        // SAFETY: name is NUL-terminated; out has n_out bytes.
        unsafe {
            let src = CStr::from_ptr(name).to_bytes();
            if src.len() + 1 > n_out as usize {
                return SQLITE_CANTOPEN;
            }
            ptr::copy_nonoverlapping(src.as_ptr() as *const c_char, out, src.len());
            *out.add(src.len()) = 0;
        }
        SQLITE_OK
    })
}

// The rest: the default VFS's.
unsafe extern "C" fn x_dl_open(_v: *mut Sqlite3Vfs, p: *const c_char) -> *mut c_void {
    let d = default();
    // SAFETY: delegated with the default VFS's own pointer; only set when it has one.
    unsafe { ((*d).dl_open.expect("xDlOpen"))(d, p) }
}
unsafe extern "C" fn x_dl_error(_v: *mut Sqlite3Vfs, n: c_int, m: *mut c_char) {
    let d = default();
    // SAFETY: as above.
    unsafe { ((*d).dl_error.expect("xDlError"))(d, n, m) }
}
unsafe extern "C" fn x_dl_sym(
    _v: *mut Sqlite3Vfs,
    h: *mut c_void,
    s: *const c_char,
) -> Option<unsafe extern "C" fn()> {
    let d = default();
    // SAFETY: as above.
    unsafe { ((*d).dl_sym.expect("xDlSym"))(d, h, s) }
}
unsafe extern "C" fn x_dl_close(_v: *mut Sqlite3Vfs, h: *mut c_void) {
    let d = default();
    // SAFETY: as above.
    unsafe { ((*d).dl_close.expect("xDlClose"))(d, h) }
}
unsafe extern "C" fn x_randomness(_v: *mut Sqlite3Vfs, n: c_int, out: *mut c_char) -> c_int {
    let d = default();
    // SAFETY: as above; every VFS has xRandomness.
    unsafe { ((*d).randomness.expect("xRandomness"))(d, n, out) }
}
unsafe extern "C" fn x_sleep(_v: *mut Sqlite3Vfs, us: c_int) -> c_int {
    let d = default();
    // SAFETY: as above.
    unsafe { ((*d).sleep.expect("xSleep"))(d, us) }
}
unsafe extern "C" fn x_current_time(_v: *mut Sqlite3Vfs, t: *mut f64) -> c_int {
    let d = default();
    // SAFETY: as above.
    unsafe { ((*d).current_time.expect("xCurrentTime"))(d, t) }
}
unsafe extern "C" fn x_get_last_error(_v: *mut Sqlite3Vfs, n: c_int, m: *mut c_char) -> c_int {
    let d = default();
    // SAFETY: as above.
    unsafe {
        match (*d).get_last_error {
            Some(f) => f(d, n, m),
            None => 0,
        }
    }
}
unsafe extern "C" fn x_current_time_int64(_v: *mut Sqlite3Vfs, t: *mut Int64) -> c_int {
    let d = default();
    // SAFETY: as above; version >= 2 VFSes have it, else derive it from xCurrentTime.
    unsafe {
        if (*d).version >= 2 {
            if let Some(f) = (*d).current_time_int64 {
                return f(d, t);
            }
        }
        let mut days = 0f64;
        let rc = ((*d).current_time.expect("xCurrentTime"))(d, &mut days);
        *t = (days * 86_400_000.0) as Int64;
        rc
    }
}
