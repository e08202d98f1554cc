//! The operating system, behind one interface.
//!
//! Owns: every call that differs between Unix and Windows. This module (and its children)
//! is the only place in the workspace's engine that names `std::os::unix`,
//! `std::os::windows`, `std::os::fd`, `libc` or `windows-sys`; everything else calls the
//! functions and types here, which have the same signatures on both (checked by
//! `tests/layering.rs`). `unix.rs` is the Unix implementation, `windows/` the Windows one
//! (a folder: the Windows service, Event Log and job object pieces live beside it), and
//! `inotify.rs` Linux's change notifications.
//!
//! What each item means on each system:
//! - Positional I/O ([`FileExt`]): `pread`/`pwrite` on Unix; `ReadFile`/`WriteFile` with an
//!   offset on Windows (`seek_read`/`seek_write`), which also move the handle's cursor, so
//!   a handle used positionally is never also read sequentially.
//! - File identity ([`FileId`]): device and inode on Unix; volume serial number and file
//!   index on Windows (`GetFileInformationByHandle`).
//! - Durable replace ([`replace_durable`], [`Dir`]): `rename` then an fsync of the
//!   directory on Unix; `MoveFileExW(MOVEFILE_REPLACE_EXISTING | MOVEFILE_WRITE_THROUGH)`
//!   on Windows, which cannot fsync a directory (NTFS journals the rename itself).
//! - Exclusive creation ([`create_new`]): `O_CREAT|O_EXCL|O_NOFOLLOW` on Unix;
//!   `CREATE_NEW` with `FILE_FLAG_OPEN_REPARSE_POINT` on Windows. Either fails on any name
//!   already there, a symlink included, and never writes through one.
//! - Sharing: Windows files are opened with `FILE_SHARE_READ | FILE_SHARE_WRITE |
//!   FILE_SHARE_DELETE` (Rust's default there), so SQLite can still delete and recreate its
//!   `-wal` while we hold it open, as on Unix.
//! - Permissions ([`mode_of`], [`create_dir`], [`narrow_dir`]): on Unix a copy gets the
//!   database's mode bits (see `fsutil::FileMode`); on Windows files and directories we
//!   create inherit their directory's ACL, and mode bits are ignored: nothing we write is
//!   more readable than the directory we write it into.
//! - Process liveness ([`process_exists`]): `kill(pid, 0)` on Unix; `OpenProcess` and
//!   `GetExitCodeProcess` on Windows.
//! - Disk full ([`is_disk_full`]): `ENOSPC`/`EDQUOT`; `ERROR_DISK_FULL`/
//!   `ERROR_HANDLE_DISK_FULL` (and `ERROR_DISK_QUOTA_EXCEEDED`).
//! - Access checks ([`check_access`]): `faccessat(AT_EACCESS)` on Unix; on Windows an open
//!   with the access asked for (a directory: creating and removing a probe file), which is
//!   what the ACL allows.
//! - Memory ([`page_size`], [`discard_shared_pages`]): `sysconf`/`madvise` on Unix; on
//!   Windows `GetSystemInfo` and nothing (SQLite's `win32` VFS maps the wal-index itself).

use std::fs::{File, Metadata};
use std::io;
use std::path::Path;

#[cfg(target_os = "linux")]
pub mod inotify;
#[cfg(unix)]
mod unix;
#[cfg(unix)]
use unix as imp;
#[cfg(windows)]
mod windows;
#[cfg(windows)]
use windows as imp;

// Process-level calls for the CLI (WC): signals, child exit status, host name, tunables;
// the control socket's transport; the Windows service, Event Log and job object.
#[cfg(unix)]
#[path = "unix_process.rs"]
pub mod process;
#[cfg(unix)]
pub mod unix_socket;
#[cfg(windows)]
pub use windows::{eventlog, job, pipe, process, service};

pub use imp::Dir;

/// Reads and writes at an offset, without a shared cursor in between.
///
/// On Windows the handle's cursor moves (to the end of what was read or written); nothing
/// of ours reads a positionally used handle sequentially.
pub trait FileExt {
    /// Reads up to `buf.len()` bytes at `offset`; `Ok(0)` at end of file.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Writes up to `buf.len()` bytes at `offset`.
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize>;

    /// Reads exactly `buf.len()` bytes at `offset`; `UnexpectedEof` if the file is shorter.
    fn read_exact_at(&self, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
        while !buf.is_empty() {
            match self.read_at(buf, offset) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "failed to fill whole buffer",
                    ))
                }
                Ok(n) => {
                    buf = &mut buf[n..];
                    offset += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Writes all of `buf` at `offset`.
    fn write_all_at(&self, mut buf: &[u8], mut offset: u64) -> io::Result<()> {
        while !buf.is_empty() {
            match self.write_at(buf, offset) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "failed to write whole buffer",
                    ))
                }
                Ok(n) => {
                    buf = &buf[n..];
                    offset += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl FileExt for File {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        imp::read_at(self, buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        imp::write_at(self, buf, offset)
    }
}

/// Which file this is, whatever its name: (device, inode) on Unix, (volume serial number,
/// file index) on Windows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FileId {
    pub volume: u64,
    pub index: u64,
}

/// The identity of the file at `path` (following symlinks).
pub fn file_id(path: &Path) -> io::Result<FileId> {
    imp::file_id(path)
}

/// The identity of an open file.
pub fn file_id_of(file: &File) -> io::Result<FileId> {
    imp::file_id_of(file)
}

/// How many names an open file has; 0 once it was deleted (Unix, and Windows when the
/// deletion used POSIX semantics, the default on NTFS since Windows 10 1809).
pub fn link_count(file: &File) -> io::Result<u64> {
    imp::link_count(file)
}

/// The size of an open file while it still has a name, `None` once it was deleted (as
/// [`link_count`] sees it): one `fstat` on Unix, for callers that look at every capture.
pub fn size_if_linked(file: &File) -> io::Result<Option<u64>> {
    imp::size_if_linked(file)
}

/// What a change detector compares between two looks at a file: identity, size, and
/// modification and status-change (Windows: creation) times in nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChangeStamp {
    pub index: u64,
    pub size: u64,
    pub modified_ns: i128,
    pub changed_ns: i128,
}

/// The [`ChangeStamp`] of the file at `path`; `None` when it cannot be read.
pub fn change_stamp(path: &Path) -> Option<ChangeStamp> {
    imp::change_stamp(path)
}

/// Renames `from` over `to` (same directory) and makes the rename durable: an fsync of
/// the directory on Unix, `MOVEFILE_WRITE_THROUGH` on Windows. Replaces whatever is at
/// `to`, a symlink included, and never follows it.
pub fn replace_durable(from: &Path, to: &Path) -> io::Result<()> {
    imp::replace_durable(from, to)
}

/// Flushes the file at `path` to disk (fsync). Opened for reading on Unix; for writing on
/// Windows, where `FlushFileBuffers` needs write access.
pub fn sync_file(path: &Path) -> io::Result<()> {
    imp::sync_file(path)
}

/// Makes the entries of directory `dir` durable (created, renamed or removed names): an
/// fsync on Unix; nothing on Windows, where a directory cannot be flushed and NTFS
/// journals its metadata.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    imp::sync_dir(dir)
}

/// Creates `path` for reading and writing: a new file or `AlreadyExists` (any existing
/// name, a dangling symlink included), never through a symlink, with permission bits
/// `mode` on Unix (narrowed by the umask); on Windows the directory's ACL is inherited.
pub fn create_new(path: &Path, mode: u32) -> io::Result<File> {
    imp::create_new(path, mode)
}

/// Opens an existing regular file for writing, refusing a symlink at `path`.
pub fn open_write_nofollow(path: &Path) -> io::Result<File> {
    imp::open_write_nofollow(path)
}

/// Creates one directory with permission bits `mode` (Unix; narrowed by the umask);
/// Windows: the parent's ACL is inherited.
pub fn create_dir(path: &Path, mode: u32) -> io::Result<()> {
    imp::create_dir(path, mode)
}

/// Takes away from an existing directory every permission bit outside `keep` (and the
/// setuid, setgid and sticky bits), never adding one. Nothing on Windows (ACLs).
pub fn narrow_dir(path: &Path, keep: u32) -> io::Result<()> {
    imp::narrow_dir(path, keep)
}

/// The permission bits of a file as `fsutil::FileMode` takes them: `st_mode` on Unix;
/// on Windows `0o600` (owner only), since copies there inherit their directory's ACL.
pub fn mode_of(meta: &Metadata) -> u32 {
    imp::mode_of(meta)
}

/// Whether a process with this pid runs on this host.
pub fn process_exists(pid: u32) -> bool {
    imp::process_exists(pid)
}

/// Whether another process holds a lock on byte `at` of `f` (POSIX `F_GETLK`: a query
/// only, it takes and releases nothing, so none of this process's locks are touched).
/// `None` when the query failed, and always on Windows, where SQLite's `LockFileEx`
/// locks cannot be queried without taking them.
pub fn foreign_lock_held(f: &File, at: u64) -> Option<bool> {
    imp::foreign_lock_held(f, at)
}

/// The soft limit on open file descriptors of this process; `None` when there is none
/// (unlimited, or Windows, whose handle table has no such small limit).
pub fn open_file_limit() -> Option<u64> {
    imp::open_file_limit()
}

/// Whether `error` (a run's, as text with its causes) says descriptors ran out: the OS's
/// EMFILE/ENFILE, or SQLite's "unable to open database file" (which hides the errno)
/// while this process is at its limit.
pub fn descriptors_exhausted(error: &str) -> bool {
    if error.contains("Too many open files")
        || error.contains("os error 24")
        || error.contains("os error 23")
    {
        return true;
    }
    // The limit now: it may have been lowered since start (`prlimit --pid`).
    let limit = open_file_limit().unwrap_or(1 << 20);
    error.contains("unable to open database file")
        && open_descriptors().is_some_and(|n| n.saturating_add(32) >= limit)
}

/// Descriptors this process has open now (Linux), counted in `/proc/self/fd`; `u64::MAX`
/// when even that listing cannot be opened for want of a descriptor.
fn open_descriptors() -> Option<u64> {
    match std::fs::read_dir("/proc/self/fd") {
        Ok(rd) => Some(rd.count() as u64),
        Err(e) if matches!(e.raw_os_error(), Some(23 | 24)) => Some(u64::MAX),
        Err(_) => None,
    }
}

/// Whether `e` says the disk (or the user's quota on it) is full.
pub fn is_disk_full(e: &io::Error) -> bool {
    imp::is_disk_full(e)
}

/// What [`check_access`] asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Read and write an existing file.
    ReadWrite,
    /// Create files in a directory (and enter it).
    CreateIn,
}

/// May this process access `path` as `access` says? The error says why not.
pub fn check_access(path: &Path, access: Access) -> io::Result<()> {
    imp::check_access(path, access)
}

/// Who this process runs as, for messages: `uid 1000` on Unix, `user NAME` on Windows.
pub fn user_description() -> String {
    imp::user_description()
}

/// The size of a memory page.
pub fn page_size() -> usize {
    imp::page_size()
}

/// Tells the kernel it may drop the pages of a shared file mapping at `addr..addr+len`
/// from this process (they are re-read from the page cache on the next touch). Nothing
/// on Windows.
///
/// # Safety
/// `addr` must be page-aligned and `addr..addr+len` a live `MAP_SHARED` file mapping.
pub unsafe fn discard_shared_pages(addr: *mut std::ffi::c_void, len: usize) {
    // SAFETY: the caller's contract is the implementation's.
    unsafe { imp::discard_shared_pages(addr, len) }
}

/// Starts writing a file's dirty pages to disk without waiting (Linux
/// `sync_file_range(SYNC_FILE_RANGE_WRITE)`), so a later fsync has less to do. Nothing
/// elsewhere.
pub fn start_writeback(file: &File) {
    imp::start_writeback(file)
}

/// The bytes of `path` as SQLite's `file:` URI wants them before percent-encoding, and
/// which bytes besides unreserved ones and `/` may stay literal: on Unix the path's bytes;
/// on Windows the path with `\` as `/`, a drive-letter path given a leading `/`
/// (`/C:/data/app.db`), `:` kept.
pub fn uri_path_bytes(path: &Path) -> (Vec<u8>, &'static [u8]) {
    imp::uri_path_bytes(path)
}

/// Makes a symlink at `link` pointing to `target` (tests; Windows needs the privilege).
pub fn symlink_file(target: &Path, link: &Path) -> io::Result<()> {
    imp::symlink_file(target, link)
}

/// Makes a symlink to a directory at `link` (tests; Windows needs the privilege).
pub fn symlink_dir(target: &Path, link: &Path) -> io::Result<()> {
    imp::symlink_dir(target, link)
}

/// Sets a file's permission bits (tests of permission bits; Unix only).
#[cfg(unix)]
pub fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    imp::set_mode(path, mode)
}

/// Sets the process umask (tests of permission bits; Unix only).
#[cfg(unix)]
pub fn set_umask(mask: u32) {
    imp::set_umask(mask)
}
