//! The Unix implementation of [`super`]: `libc` and `std::os::unix`.

use super::{Access, ChangeStamp, FileId};
use std::ffi::{CString, OsStr};
use std::fs::{self, File, Metadata};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

pub(super) fn read_at(f: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    FileExt::read_at(f, buf, offset)
}

pub(super) fn write_at(f: &File, buf: &[u8], offset: u64) -> io::Result<usize> {
    FileExt::write_at(f, buf, offset)
}

fn id_of(m: &Metadata) -> FileId {
    FileId {
        volume: m.dev(),
        index: m.ino(),
    }
}

pub(super) fn file_id(path: &Path) -> io::Result<FileId> {
    fs::metadata(path).map(|m| id_of(&m))
}

pub(super) fn file_id_of(file: &File) -> io::Result<FileId> {
    file.metadata().map(|m| id_of(&m))
}

pub(super) fn link_count(file: &File) -> io::Result<u64> {
    file.metadata().map(|m| m.nlink())
}

pub(super) fn size_if_linked(file: &File) -> io::Result<Option<u64>> {
    let m = file.metadata()?;
    Ok((m.nlink() > 0).then_some(m.len()))
}

pub(super) fn change_stamp(path: &Path) -> Option<ChangeStamp> {
    let m = fs::metadata(path).ok()?;
    let ns = |s: i64, n: i64| s as i128 * 1_000_000_000 + n as i128;
    Some(ChangeStamp {
        index: m.ino(),
        size: m.size(),
        modified_ns: ns(m.mtime(), m.mtime_nsec()),
        changed_ns: ns(m.ctime(), m.ctime_nsec()),
    })
}

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

pub(super) fn replace_durable(from: &Path, to: &Path) -> io::Result<()> {
    fs::rename(from, to)?;
    sync_dir(parent_of(to))
}

pub(super) fn sync_file(path: &Path) -> io::Result<()> {
    File::open(path)?.sync_all()
}

pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

pub(super) fn create_new(path: &Path, mode: u32) -> io::Result<File> {
    fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .mode(mode)
        .open(path)
}

pub(super) fn open_write_nofollow(path: &Path) -> io::Result<File> {
    fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

pub(super) fn create_dir(path: &Path, mode: u32) -> io::Result<()> {
    fs::DirBuilder::new().mode(mode).create(path)
}

pub(super) fn narrow_dir(path: &Path, keep: u32) -> io::Result<()> {
    let have = fs::symlink_metadata(path)?.permissions().mode() & 0o7777;
    let want = have & (keep | 0o7000);
    if want != have {
        fs::set_permissions(path, fs::Permissions::from_mode(want))?;
    }
    Ok(())
}

pub(super) fn mode_of(meta: &Metadata) -> u32 {
    meta.permissions().mode()
}

pub(super) fn process_exists(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    // SAFETY: kill(2) with signal 0 sends nothing; it only checks that the pid exists.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

pub(super) fn is_disk_full(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
}

pub(super) fn check_access(path: &Path, access: Access) -> io::Result<()> {
    let mode = match access {
        Access::ReadWrite => libc::R_OK | libc::W_OK,
        Access::CreateIn => libc::W_OK | libc::X_OK,
    };
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?;
    // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
    let r = unsafe { libc::faccessat(libc::AT_FDCWD, c.as_ptr(), mode, libc::AT_EACCESS) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

pub(super) fn user_description() -> String {
    // SAFETY: geteuid has no preconditions and cannot fail.
    format!("uid {}", unsafe { libc::geteuid() })
}

pub(super) fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(page).unwrap_or(4096).max(1)
}

pub(super) unsafe fn discard_shared_pages(addr: *mut std::ffi::c_void, len: usize) {
    // SAFETY: per the caller's contract, a page-aligned live shared file mapping; for
    // such a mapping MADV_DONTNEED only unmaps, it loses nothing.
    unsafe { libc::madvise(addr, len, libc::MADV_DONTNEED) };
}

pub(super) fn start_writeback(file: &File) {
    #[cfg(target_os = "linux")]
    // SAFETY: a valid descriptor; the call only starts write-out of dirty pages.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = file;
}

pub(super) fn uri_path_bytes(path: &Path) -> (Vec<u8>, &'static [u8]) {
    (path.as_os_str().as_bytes().to_vec(), b"")
}

pub(super) fn symlink_dir(target: &Path, link: &Path) -> io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

pub(super) fn symlink_file(target: &Path, link: &Path) -> io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

pub(super) fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

pub(super) fn set_umask(mask: u32) {
    // SAFETY: umask(2) cannot fail.
    unsafe { libc::umask(mask as libc::mode_t) };
}

fn c_name(name: &OsStr) -> io::Result<CString> {
    CString::new(name.as_bytes()).map_err(io::Error::other)
}

/// An open directory, names in it resolved relative to it (`openat`, `renameat`, ...):
/// no path walk per call, and a directory renamed away keeps being the one written.
#[derive(Debug)]
pub struct Dir(File);

impl Dir {
    /// Opens the directory at `path`.
    pub fn open(path: &Path) -> io::Result<Dir> {
        File::open(path).map(Dir)
    }

    /// Creates `name` for reading and writing exclusively (see [`super::create_new`]).
    pub fn create_new(&self, name: &OsStr, mode: u32) -> io::Result<File> {
        let name = c_name(name)?;
        // SAFETY: openat with a valid directory descriptor and a NUL-terminated name; the
        // returned descriptor is owned by the File from here on.
        let fd = unsafe {
            libc::openat(
                self.0.as_raw_fd(),
                name.as_ptr(),
                libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                mode as libc::c_uint,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor nothing else owns.
        Ok(unsafe { File::from_raw_fd(fd) })
    }

    /// Renames `from` to `to` in this directory, replacing what is at `to`.
    pub fn rename(&self, from: &OsStr, to: &OsStr) -> io::Result<()> {
        let (from, to) = (c_name(from)?, c_name(to)?);
        let d = self.0.as_raw_fd();
        // SAFETY: both names NUL-terminated, both relative to the same open directory.
        if unsafe { libc::renameat(d, from.as_ptr(), d, to.as_ptr()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Renames `from` to `to` unless `to` exists (`AlreadyExists` then): a hard link
    /// (which fails rather than replaces), then `from` removed.
    pub fn rename_noreplace(&self, from: &OsStr, to: &OsStr) -> io::Result<()> {
        let (from_c, to_c) = (c_name(from)?, c_name(to)?);
        let d = self.0.as_raw_fd();
        // SAFETY: both names NUL-terminated, both relative to the same open directory; no
        // flags, so a symlink at `from` is not followed.
        if unsafe { libc::linkat(d, from_c.as_ptr(), d, to_c.as_ptr(), 0) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // The file is in place; a temp name left behind is removed at the next start.
        let _ = self.remove(from);
        Ok(())
    }

    /// Removes the name `name` (not a directory).
    pub fn remove(&self, name: &OsStr) -> io::Result<()> {
        let name = c_name(name)?;
        // SAFETY: a valid directory descriptor and a NUL-terminated name.
        if unsafe { libc::unlinkat(self.0.as_raw_fd(), name.as_ptr(), 0) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Makes this directory's entries durable (fsync).
    pub fn sync(&self) -> io::Result<()> {
        self.0.sync_all()
    }
}

pub(super) fn foreign_lock_held(f: &File, at: u64) -> Option<bool> {
    use std::os::fd::AsRawFd;
    // SAFETY: an all-zero `flock` is a valid value of this plain C struct.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = libc::off_t::try_from(at).ok()?;
    fl.l_len = 1;
    // SAFETY: a valid descriptor for the life of `f`, and a pointer to a live `flock`.
    let rc = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GETLK, &mut fl) };
    (rc == 0).then_some(fl.l_type != libc::F_UNLCK as libc::c_short)
}

pub(super) fn open_file_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0
        || lim.rlim_cur == libc::RLIM_INFINITY
    {
        return None;
    }
    Some(lim.rlim_cur)
}
