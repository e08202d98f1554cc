//! The Windows implementation of [`super`]: `windows-sys` and `std::os::windows`.
//!
//! Files are opened with `FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE` (Rust's
//! default share mode on Windows), so a handle of ours never stops SQLite (or anyone)
//! from deleting, renaming over or recreating the file, as on Unix. Directories cannot be
//! fsynced on Windows; renames are made durable with `MOVEFILE_WRITE_THROUGH` instead.

pub mod eventlog;
pub mod job;
pub mod pipe;
pub mod process;
pub mod service;

use super::{Access, ChangeStamp, FileId};
use std::ffi::OsStr;
use std::fs::{self, File, Metadata};
use std::io;
use std::os::windows::ffi::OsStrExt;
use std::os::windows::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::os::windows::io::AsRawHandle;
use std::path::{Path, PathBuf};

use windows_sys::Win32::Foundation::{
    CloseHandle, ERROR_ACCESS_DENIED, ERROR_DISK_FULL, ERROR_DISK_QUOTA_EXCEEDED,
    ERROR_HANDLE_DISK_FULL, FILETIME, STILL_ACTIVE,
};
use windows_sys::Win32::Storage::FileSystem::{
    FileStandardInfo, GetFileInformationByHandle, GetFileInformationByHandleEx, MoveFileExW,
    BY_HANDLE_FILE_INFORMATION, FILE_ATTRIBUTE_REPARSE_POINT, FILE_FLAG_BACKUP_SEMANTICS,
    FILE_FLAG_OPEN_REPARSE_POINT, FILE_STANDARD_INFO, MOVEFILE_REPLACE_EXISTING,
    MOVEFILE_WRITE_THROUGH,
};
use windows_sys::Win32::System::SystemInformation::{GetSystemInfo, SYSTEM_INFO};
use windows_sys::Win32::System::Threading::{
    GetExitCodeProcess, OpenProcess, PROCESS_QUERY_LIMITED_INFORMATION,
};

/// `seek_read`: `ReadFile` with an offset (moves the handle's cursor).
pub(super) fn read_at(f: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    f.seek_read(buf, offset)
}

/// `seek_write`: `WriteFile` with an offset (moves the handle's cursor).
pub(super) fn write_at(f: &File, buf: &[u8], offset: u64) -> io::Result<usize> {
    f.seek_write(buf, offset)
}

/// Opens `path` for its attributes only (no read or write access, so no share conflict
/// with anyone), a directory too, following symlinks as `stat` does.
fn open_for_info(path: &Path) -> io::Result<File> {
    fs::OpenOptions::new()
        .access_mode(0)
        .custom_flags(FILE_FLAG_BACKUP_SEMANTICS)
        .open(path)
}

fn info_of(file: &File) -> io::Result<BY_HANDLE_FILE_INFORMATION> {
    // SAFETY: a zeroed plain-data struct the call fills; the handle is valid while `file`
    // lives.
    unsafe {
        let mut info: BY_HANDLE_FILE_INFORMATION = std::mem::zeroed();
        if GetFileInformationByHandle(file.as_raw_handle(), &mut info) == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(info)
    }
}

pub(super) fn file_id(path: &Path) -> io::Result<FileId> {
    file_id_of(&open_for_info(path)?)
}

pub(super) fn file_id_of(file: &File) -> io::Result<FileId> {
    let info = info_of(file)?;
    Ok(FileId {
        volume: u64::from(info.dwVolumeSerialNumber),
        index: (u64::from(info.nFileIndexHigh) << 32) | u64::from(info.nFileIndexLow),
    })
}

pub(super) fn size_if_linked(file: &File) -> io::Result<Option<u64>> {
    if link_count(file)? == 0 {
        return Ok(None);
    }
    file.metadata().map(|m| Some(m.len()))
}

/// The link count, 0 for a file whose deletion is pending (deleted without POSIX
/// semantics while handles are open: its name stays until the last one closes).
pub(super) fn link_count(file: &File) -> io::Result<u64> {
    // SAFETY: a zeroed plain-data struct of the size passed; valid handle.
    unsafe {
        let mut info: FILE_STANDARD_INFO = std::mem::zeroed();
        if GetFileInformationByHandleEx(
            file.as_raw_handle(),
            FileStandardInfo,
            (&mut info as *mut FILE_STANDARD_INFO).cast(),
            std::mem::size_of::<FILE_STANDARD_INFO>() as u32,
        ) == 0
        {
            return Err(io::Error::last_os_error());
        }
        Ok(if info.DeletePending {
            0
        } else {
            u64::from(info.NumberOfLinks)
        })
    }
}

/// A `FILETIME` (100 ns ticks) in nanoseconds.
fn ns_of(t: FILETIME) -> i128 {
    ((i128::from(t.dwHighDateTime) << 32) | i128::from(t.dwLowDateTime)) * 100
}

pub(super) fn change_stamp(path: &Path) -> Option<ChangeStamp> {
    let info = info_of(&open_for_info(path).ok()?).ok()?;
    Some(ChangeStamp {
        index: (u64::from(info.nFileIndexHigh) << 32) | u64::from(info.nFileIndexLow),
        size: (u64::from(info.nFileSizeHigh) << 32) | u64::from(info.nFileSizeLow),
        modified_ns: ns_of(info.ftLastWriteTime),
        changed_ns: ns_of(info.ftCreationTime),
    })
}

fn wide(p: &Path) -> Vec<u16> {
    p.as_os_str().encode_wide().chain(Some(0)).collect()
}

fn move_file(from: &Path, to: &Path, flags: u32) -> io::Result<()> {
    let (from, to) = (wide(from), wide(to));
    // SAFETY: two NUL-terminated wide strings that outlive the call.
    if unsafe { MoveFileExW(from.as_ptr(), to.as_ptr(), flags) } == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

pub(super) fn replace_durable(from: &Path, to: &Path) -> io::Result<()> {
    move_file(from, to, MOVEFILE_REPLACE_EXISTING | MOVEFILE_WRITE_THROUGH)
}

pub(super) fn sync_file(path: &Path) -> io::Result<()> {
    fs::OpenOptions::new().write(true).open(path)?.sync_all()
}

pub(super) fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

pub(super) fn create_new(path: &Path, _mode: u32) -> io::Result<File> {
    fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .custom_flags(FILE_FLAG_OPEN_REPARSE_POINT)
        .open(path)
}

pub(super) fn open_write_nofollow(path: &Path) -> io::Result<File> {
    let f = fs::OpenOptions::new()
        .write(true)
        .custom_flags(FILE_FLAG_OPEN_REPARSE_POINT)
        .open(path)?;
    if f.metadata()?.file_attributes() & FILE_ATTRIBUTE_REPARSE_POINT != 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "refusing to write through a symbolic link or reparse point",
        ));
    }
    Ok(f)
}

pub(super) fn create_dir(path: &Path, _mode: u32) -> io::Result<()> {
    fs::create_dir(path)
}

pub(super) fn narrow_dir(_path: &Path, _keep: u32) -> io::Result<()> {
    Ok(())
}

pub(super) fn mode_of(_meta: &Metadata) -> u32 {
    0o600
}

pub(super) fn process_exists(pid: u32) -> bool {
    // SAFETY: OpenProcess returns a handle we close, or null; GetExitCodeProcess writes
    // one u32.
    unsafe {
        let h = OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid);
        if h.is_null() {
            // Exists but is not ours to query (another user's, a protected process).
            return io::Error::last_os_error().raw_os_error() == Some(ERROR_ACCESS_DENIED as i32);
        }
        let mut code = 0u32;
        let ok = GetExitCodeProcess(h, &mut code) != 0;
        CloseHandle(h);
        ok && code == STILL_ACTIVE as u32
    }
}

pub(super) fn is_disk_full(e: &io::Error) -> bool {
    e.raw_os_error().is_some_and(|c| {
        [
            ERROR_DISK_FULL,
            ERROR_HANDLE_DISK_FULL,
            ERROR_DISK_QUOTA_EXCEEDED,
        ]
        .contains(&(c as u32))
    })
}

/// An open with the access asked for: what the file's or directory's ACL allows this
/// process (a directory: a probe file created and removed in it).
pub(super) fn check_access(path: &Path, access: Access) -> io::Result<()> {
    match access {
        Access::ReadWrite => fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map(drop),
        Access::CreateIn => {
            let probe = path.join(format!(
                ".sqlite-replicate-access.{}.{:016x}.tmp",
                std::process::id(),
                rand::random::<u64>()
            ));
            drop(create_new(&probe, 0o600)?);
            fs::remove_file(&probe)
        }
    }
}

pub(super) fn user_description() -> String {
    match std::env::var("USERNAME") {
        Ok(u) if !u.is_empty() => format!("user {u}"),
        _ => "this user".to_string(),
    }
}

pub(super) fn page_size() -> usize {
    // SAFETY: GetSystemInfo fills the plain-data struct and cannot fail.
    let info = unsafe {
        let mut info: SYSTEM_INFO = std::mem::zeroed();
        GetSystemInfo(&mut info);
        info
    };
    (info.dwPageSize as usize).max(1)
}

pub(super) unsafe fn discard_shared_pages(_addr: *mut std::ffi::c_void, _len: usize) {}

pub(super) fn start_writeback(_file: &File) {}

pub(super) fn uri_path_bytes(path: &Path) -> (Vec<u8>, &'static [u8]) {
    let s = path.to_string_lossy();
    let s = s.strip_prefix(r"\\?\").unwrap_or(&s);
    let mut out = s.replace('\\', "/");
    let b = out.as_bytes();
    if b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':' {
        out.insert(0, '/');
    }
    (out.into_bytes(), b":")
}

pub(super) fn symlink_dir(target: &Path, link: &Path) -> io::Result<()> {
    std::os::windows::fs::symlink_dir(target, link)
}

pub(super) fn symlink_file(target: &Path, link: &Path) -> io::Result<()> {
    std::os::windows::fs::symlink_file(target, link)
}

/// A directory our durable writes go into. Windows has no `openat`: names are joined to
/// the path, and a directory cannot be fsynced (renames use `MOVEFILE_WRITE_THROUGH`).
#[derive(Debug)]
pub struct Dir(PathBuf);

impl Dir {
    /// Checks that `path` is a directory, and keeps its path.
    pub fn open(path: &Path) -> io::Result<Dir> {
        let m = fs::metadata(path)?;
        if !m.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("{} is not a directory", path.display()),
            ));
        }
        Ok(Dir(path.to_path_buf()))
    }

    /// Creates `name` for reading and writing exclusively (see [`super::create_new`]).
    pub fn create_new(&self, name: &OsStr, mode: u32) -> io::Result<File> {
        create_new(&self.0.join(name), mode)
    }

    /// Renames `from` to `to` in this directory, replacing what is at `to`, durably.
    pub fn rename(&self, from: &OsStr, to: &OsStr) -> io::Result<()> {
        replace_durable(&self.0.join(from), &self.0.join(to))
    }

    /// Renames `from` to `to` unless `to` exists (`AlreadyExists` then), durably.
    pub fn rename_noreplace(&self, from: &OsStr, to: &OsStr) -> io::Result<()> {
        move_file(&self.0.join(from), &self.0.join(to), MOVEFILE_WRITE_THROUGH)
    }

    /// Removes the name `name` (not a directory).
    pub fn remove(&self, name: &OsStr) -> io::Result<()> {
        fs::remove_file(self.0.join(name))
    }

    /// Nothing: NTFS journals directory entries, and `MoveFileExW` wrote through.
    pub fn sync(&self) -> io::Result<()> {
        Ok(())
    }
}

pub(super) fn foreign_lock_held(_f: &File, _at: u64) -> Option<bool> {
    None
}

pub(super) fn open_file_limit() -> Option<u64> {
    None
}
