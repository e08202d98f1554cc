//! The C ABI of SQLite that a loadable extension sees: the VFS and file structs, the
//! constants this crate uses, and the few routines it calls through the table SQLite
//! hands to the entry point (`sqlite3_api_routines`).
//!
//! Owns: the layout of those structs, written from `sqlite3.h`/`sqlite3ext.h` (stable ABI
//! since SQLite 3.7). It does not call anything itself.
//!
//! Why not `libsqlite3-sys` with its `loadable_extension` feature: Cargo unifies features
//! across the workspace, so that feature would switch the replicator's own bundled SQLite
//! (through `rusqlite` in `engine`) to the extension API table too, and break it. An
//! extension only needs these few definitions.

use std::ffi::{c_char, c_int, c_void};

pub const SQLITE_OK: c_int = 0;
pub const SQLITE_ERROR: c_int = 1;
pub const SQLITE_READONLY: c_int = 8;
pub const SQLITE_IOERR: c_int = 10;
pub const SQLITE_NOTFOUND: c_int = 12;
pub const SQLITE_CANTOPEN: c_int = 14;
pub const SQLITE_OK_LOAD_PERMANENTLY: c_int = 256;
pub const SQLITE_IOERR_READ: c_int = SQLITE_IOERR | (1 << 8);
pub const SQLITE_IOERR_SHORT_READ: c_int = SQLITE_IOERR | (2 << 8);
pub const SQLITE_IOERR_LOCK: c_int = SQLITE_IOERR | (15 << 8);

pub const SQLITE_OPEN_READONLY: c_int = 0x0000_0001;
pub const SQLITE_OPEN_READWRITE: c_int = 0x0000_0002;
pub const SQLITE_OPEN_CREATE: c_int = 0x0000_0004;
pub const SQLITE_OPEN_MAIN_DB: c_int = 0x0000_0100;
pub const SQLITE_OPEN_MAIN_JOURNAL: c_int = 0x0000_0800;
pub const SQLITE_OPEN_SUPER_JOURNAL: c_int = 0x0000_4000;
pub const SQLITE_OPEN_WAL: c_int = 0x0008_0000;

pub const SQLITE_LOCK_NONE: c_int = 0;
pub const SQLITE_LOCK_SHARED: c_int = 1;

pub const SQLITE_FCNTL_VFSNAME: c_int = 12;
pub const SQLITE_FCNTL_PRAGMA: c_int = 14;

pub type Int64 = i64;

#[repr(C)]
pub struct Sqlite3File {
    pub methods: *const IoMethods,
}

type FileFn<A> = Option<unsafe extern "C" fn(*mut Sqlite3File, A) -> c_int>;

#[repr(C)]
pub struct IoMethods {
    pub version: c_int,
    pub close: Option<unsafe extern "C" fn(*mut Sqlite3File) -> c_int>,
    pub read: Option<unsafe extern "C" fn(*mut Sqlite3File, *mut c_void, c_int, Int64) -> c_int>,
    pub write: Option<unsafe extern "C" fn(*mut Sqlite3File, *const c_void, c_int, Int64) -> c_int>,
    pub truncate: FileFn<Int64>,
    pub sync: FileFn<c_int>,
    pub file_size: FileFn<*mut Int64>,
    pub lock: FileFn<c_int>,
    pub unlock: FileFn<c_int>,
    pub check_reserved_lock: FileFn<*mut c_int>,
    pub file_control: Option<unsafe extern "C" fn(*mut Sqlite3File, c_int, *mut c_void) -> c_int>,
    pub sector_size: Option<unsafe extern "C" fn(*mut Sqlite3File) -> c_int>,
    pub device_characteristics: Option<unsafe extern "C" fn(*mut Sqlite3File) -> c_int>,
}

/// `sqlite3_vfs`, version 2 (the fields after `current_time_int64` are version 3's).
#[repr(C)]
pub struct Sqlite3Vfs {
    pub version: c_int,
    pub sz_os_file: c_int,
    pub mx_pathname: c_int,
    pub next: *mut Sqlite3Vfs,
    pub name: *const c_char,
    pub app_data: *mut c_void,
    pub open: Option<
        unsafe extern "C" fn(
            *mut Sqlite3Vfs,
            *const c_char,
            *mut Sqlite3File,
            c_int,
            *mut c_int,
        ) -> c_int,
    >,
    pub delete: Option<unsafe extern "C" fn(*mut Sqlite3Vfs, *const c_char, c_int) -> c_int>,
    pub access:
        Option<unsafe extern "C" fn(*mut Sqlite3Vfs, *const c_char, c_int, *mut c_int) -> c_int>,
    pub full_pathname:
        Option<unsafe extern "C" fn(*mut Sqlite3Vfs, *const c_char, c_int, *mut c_char) -> c_int>,
    pub dl_open: Option<unsafe extern "C" fn(*mut Sqlite3Vfs, *const c_char) -> *mut c_void>,
    pub dl_error: Option<unsafe extern "C" fn(*mut Sqlite3Vfs, c_int, *mut c_char)>,
    pub dl_sym: Option<
        unsafe extern "C" fn(
            *mut Sqlite3Vfs,
            *mut c_void,
            *const c_char,
        ) -> Option<unsafe extern "C" fn()>,
    >,
    pub dl_close: Option<unsafe extern "C" fn(*mut Sqlite3Vfs, *mut c_void)>,
    pub randomness: Option<unsafe extern "C" fn(*mut Sqlite3Vfs, c_int, *mut c_char) -> c_int>,
    pub sleep: Option<unsafe extern "C" fn(*mut Sqlite3Vfs, c_int) -> c_int>,
    pub current_time: Option<unsafe extern "C" fn(*mut Sqlite3Vfs, *mut f64) -> c_int>,
    pub get_last_error: Option<unsafe extern "C" fn(*mut Sqlite3Vfs, c_int, *mut c_char) -> c_int>,
    pub current_time_int64: Option<unsafe extern "C" fn(*mut Sqlite3Vfs, *mut Int64) -> c_int>,
}

// Slots of `struct sqlite3_api_routines` (sqlite3ext.h), counted from 0. The table only
// ever grows at its end, so these never move.
const API_FREE: usize = 58;
const API_MALLOC: usize = 68;
const API_VFS_FIND: usize = 141;
const API_VFS_REGISTER: usize = 142;
const API_URI_PARAMETER: usize = 189;

/// The routines of SQLite's extension table that this crate calls.
#[derive(Clone, Copy)]
pub struct Api {
    pub malloc: unsafe extern "C" fn(c_int) -> *mut c_void,
    pub free: unsafe extern "C" fn(*mut c_void),
    pub vfs_find: unsafe extern "C" fn(*const c_char) -> *mut Sqlite3Vfs,
    pub vfs_register: unsafe extern "C" fn(*mut Sqlite3Vfs, c_int) -> c_int,
    pub uri_parameter: unsafe extern "C" fn(*const c_char, *const c_char) -> *const c_char,
}

impl Api {
    /// Reads the routines from the table SQLite passed to the entry point; `None` if one is
    /// missing (a table from a SQLite older than 3.7.7, where `uri_parameter` appeared).
    ///
    /// # Safety
    /// `table` must be the `sqlite3_api_routines` pointer SQLite passed to the entry point.
    pub unsafe fn from_table(table: *const c_void) -> Option<Api> {
        if table.is_null() {
            return None;
        }
        let slots = table as *const *const c_void;
        // SAFETY: the table is at least API_URI_PARAMETER + 1 pointers long in every
        // SQLite that has uri_parameter; each slot is a function pointer or null.
        let slot = |i: usize| unsafe { *slots.add(i) };
        let p = [
            slot(API_MALLOC),
            slot(API_FREE),
            slot(API_VFS_FIND),
            slot(API_VFS_REGISTER),
            slot(API_URI_PARAMETER),
        ];
        if p.iter().any(|p| p.is_null()) {
            return None;
        }
        // SAFETY: non-null slots hold functions of exactly these signatures (sqlite3ext.h).
        unsafe {
            Some(Api {
                malloc: std::mem::transmute::<
                    *const c_void,
                    unsafe extern "C" fn(c_int) -> *mut c_void,
                >(p[0]),
                free: std::mem::transmute::<*const c_void, unsafe extern "C" fn(*mut c_void)>(p[1]),
                vfs_find: std::mem::transmute::<
                    *const c_void,
                    unsafe extern "C" fn(*const c_char) -> *mut Sqlite3Vfs,
                >(p[2]),
                vfs_register: std::mem::transmute::<
                    *const c_void,
                    unsafe extern "C" fn(*mut Sqlite3Vfs, c_int) -> c_int,
                >(p[3]),
                uri_parameter: std::mem::transmute::<
                    *const c_void,
                    unsafe extern "C" fn(*const c_char, *const c_char) -> *const c_char,
                >(p[4]),
            })
        }
    }

    /// `text` copied into memory from `sqlite3_malloc` (NUL-terminated), for strings
    /// SQLite frees itself (a pragma's result); null if out of memory.
    pub fn sqlite_string(&self, text: &str) -> *mut c_char {
        let bytes = text.as_bytes();
        let Ok(n) = c_int::try_from(bytes.len() + 1) else {
            return std::ptr::null_mut();
        };
        // SAFETY: malloc returns n writable bytes or null.
        unsafe {
            let p = (self.malloc)(n) as *mut u8;
            if p.is_null() {
                return std::ptr::null_mut();
            }
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), p, bytes.len());
            *p.add(bytes.len()) = 0;
            p as *mut c_char
        }
    }
}
