//! `libsqlite_replicate_vfs`: a SQLite loadable extension registering the read-only VFS
//! `sqlite-replicate`, which queries a replica in place: pages are fetched on demand with
//! ranged reads from the LTX files `restore` would use, cached in memory, and new files
//! are picked up between transactions.
//!
//! ```text
//! sqlite> .load ./libsqlite_replicate_vfs
//! sqlite> .open 'file:app.db?vfs=sqlite-replicate&replica=s3://bucket/app'
//! ```
//!
//! Map of the crate, from SQLite inwards:
//! - [`ffi`]: the C structs and the extension API table (no `libsqlite3-sys`: see there).
//! - `host`: the API table, the panic guard and the error report every callback shares.
//! - `vfs`: registration and the VFS callbacks (`xOpen`, delegation to the default VFS).
//! - `file`: one open database's methods: reads, locks as transaction boundaries,
//!   read-only refusals, pragmas.
//! - [`options`]: URI parameters and their environment defaults.
//! - `replica`: the replicas to read, resolved as `restore` resolves them (the CLI's
//!   `config` and `stores` modules, compiled here from the same files).
//! - [`reader`]: the TXID served, the page map, page reads with readahead and
//!   sequential prefetch.
//! - [`index`]: one LTX file's header and page index, fetched and checked.
//! - [`cache`]: the bounded memory cache of pages.
//! - `fetch`: the runtime every store call runs on, retries, and where a byte range
//!   comes from (the disk cache's blocks, else ranged GETs).
//! - [`disk`]: the disk cache (`cache_dir=`): verified blocks of LTX files in files,
//!   shared between processes, bounded.
//! - `hydrate`: `hydrate=1`, the whole database downloaded in the background (restore's
//!   own apply) into a local copy that then serves the pages it holds.
//!
//! Entry point: `sqlite3_sqlitereplicatevfs_init`, the name SQLite derives from the file
//! name, so `.load` and `load_extension` need no entry point argument.

pub mod cache;
pub mod disk;
pub mod error;
mod fetch;
pub mod ffi;
mod file;
mod host;
mod hydrate;
pub mod index;
pub mod options;
pub mod reader;
mod replica;
mod vfs;

// The CLI's config module, its mapping from a replica's config to a store and its age
// keys, compiled here from the same files, so the VFS resolves endpoints, credentials and
// encryption keys as `restore`.
#[allow(dead_code, unused_imports)]
#[path = "../../cli/src/config/mod.rs"]
mod config;
#[path = "../../cli/src/encryption.rs"]
mod encryption;
#[allow(dead_code)]
#[path = "../../cli/src/stores.rs"]
mod stores;

use std::ffi::{c_char, c_int, c_void};

/// The extension's entry point: registers the VFS and keeps the library loaded.
///
/// # Safety
/// Called by SQLite's extension loader with its API table.
#[no_mangle]
pub unsafe extern "C" fn sqlite3_sqlitereplicatevfs_init(
    _db: *mut c_void,
    err: *mut *mut c_char,
    api: *const c_void,
) -> c_int {
    host::guard(ffi::SQLITE_ERROR, || {
        // SAFETY: api is the table SQLite passed.
        match unsafe { vfs::register(api) } {
            Ok(()) => ffi::SQLITE_OK_LOAD_PERMANENTLY,
            Err(msg) => {
                if !err.is_null() {
                    if let Some(a) = unsafe { ffi::Api::from_table(api) } {
                        // SAFETY: SQLite frees *err with sqlite3_free.
                        unsafe { *err = a.sqlite_string(&msg) };
                    }
                }
                ffi::SQLITE_ERROR
            }
        }
    })
}
