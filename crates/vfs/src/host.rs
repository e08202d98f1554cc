//! What every callback shares: the extension API table SQLite handed over, the VFS's
//! name, the panic guard and the error report. Fed by `vfs::register`; used by `vfs` and
//! `file`.

use std::ffi::CStr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::OnceLock;

use crate::error::VfsError;
use crate::ffi::Api;

pub const VFS_NAME: &CStr = c"sqlite-replicate";

pub static API: OnceLock<Api> = OnceLock::new();

pub fn api() -> &'static Api {
    API.get()
        .expect("the extension is initialised before any VFS call")
}

/// Runs `f`, turning a panic into `fallback` (and a line on stderr): no panic crosses
/// into SQLite.
pub fn guard<T>(fallback: T, f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(p) => {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            report(&VfsError::Panic(msg));
            fallback
        }
    }
}

/// Writes an error on stderr, the only place a host application shows it besides
/// `PRAGMA sqlite_replicate_error` (SQLite's message for a VFS error is generic).
/// `SQLITE_REPLICATE_VFS_QUIET=1` silences it.
pub fn report(e: &VfsError) {
    if std::env::var_os("SQLITE_REPLICATE_VFS_QUIET").is_none_or(|v| v != "1") {
        eprintln!("{e}");
    }
}
