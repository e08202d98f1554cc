//! Durable local file writes, in helpers that cannot be half-used.
//!
//! Owns: the temp file → fsync → rename → directory fsync sequence. Every local write
//! that must survive a crash (replica files, local L0 files, position files, restored
//! databases) goes through here, so no caller can forget a step.

use std::ffi::{CStr, CString, OsStr};
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Suffix of in-progress files; they are ignored by listings and removed on startup.
pub const TMP_SUFFIX: &str = ".tmp";

/// Writes `data` to `path` atomically and durably, optionally setting its mtime.
///
/// The file appears at `path` complete or not at all, and survives power loss once
/// this returns.
pub fn write_durable(path: &Path, data: &[u8], mtime: Option<SystemTime>) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    write_durable_in(&File::open(dir)?, name, data, mtime)
}

/// [`write_durable`] relative to an open directory `dir`: temp file `<name>.<pid>.tmp`
/// there, write, mtime, fsync, rename to `name`, fsync `dir`. A caller that writes often
/// into one directory (a file replica's puts) keeps it open: no path walk, and no open
/// and close of the directory per write.
pub fn write_durable_in(
    dir: &File,
    name: &OsStr,
    data: &[u8],
    mtime: Option<SystemTime>,
) -> io::Result<()> {
    let mut tmp = name.to_os_string();
    tmp.push(format!(".{}{}", process_id(), TMP_SUFFIX));
    let (name_c, tmp_c) = (c_name(name)?, c_name(&tmp)?);
    let mut f = open_at(dir, &tmp_c)?;
    let r = (|| {
        f.write_all(data)?;
        // The mtime is set before the fsync, so it is as durable as the content.
        if let Some(t) = mtime {
            filetime::set_file_handle_times(
                &f,
                None,
                Some(filetime::FileTime::from_system_time(t)),
            )?;
        }
        f.sync_all()?;
        rename_at(dir, &tmp_c, &name_c)
    })();
    drop(f);
    if let Err(e) = r {
        // SAFETY: a valid directory descriptor and a NUL-terminated name.
        unsafe { libc::unlinkat(dir.as_raw_fd(), tmp_c.as_ptr(), 0) };
        return Err(e);
    }
    dir.sync_all()
}

fn c_name(name: &OsStr) -> io::Result<CString> {
    CString::new(name.as_bytes()).map_err(io::Error::other)
}

/// Creates (or truncates) `name` in `dir` for writing.
fn open_at(dir: &File, name: &CStr) -> io::Result<File> {
    // SAFETY: openat with a valid directory descriptor and a NUL-terminated name; the
    // returned descriptor is owned by the File from here on.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC,
            0o666,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nothing else owns.
    Ok(unsafe { File::from_raw_fd(fd) })
}

fn rename_at(dir: &File, from: &CStr, to: &CStr) -> io::Result<()> {
    // SAFETY: both names NUL-terminated, both relative to the same open directory.
    let r = unsafe { libc::renameat(dir.as_raw_fd(), from.as_ptr(), dir.as_raw_fd(), to.as_ptr()) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// This process's id, asked of the kernel once.
pub fn process_id() -> u32 {
    static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *PID.get_or_init(std::process::id)
}

/// Finishes a file that was written at `tmp` by the caller: fsync, rename, dir fsync.
///
/// Used when the content is streamed (a restored database) rather than held in memory.
pub fn commit_tmp(tmp: &Path, file: &File, path: &Path) -> io::Result<()> {
    file.sync_all()?;
    fs::rename(tmp, path)?;
    sync_parent_dir(path)
}

/// The temp name used next to `path` (same directory, so rename is atomic).
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(format!(".{}{}", process_id(), TMP_SUFFIX));
    path.with_file_name(name)
}

/// Removes temp files next to `path` (`<name>.<pid>.tmp`, see [`tmp_path`]) whose process
/// no longer runs: what a writer killed mid-write (a restore under `kill -9`) left behind.
/// A temp file of a live process, another restore running now, is left alone.
pub fn remove_stale_tmp_of(path: &Path) -> io::Result<usize> {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return Ok(0);
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let prefix = format!("{name}.");
    let mut n = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let file_name = entry.file_name();
        let Some(pid) = file_name
            .to_str()
            .and_then(|f| f.strip_prefix(&prefix))
            .and_then(|f| f.strip_suffix(TMP_SUFFIX))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !process_exists(pid) {
            match fs::remove_file(entry.path()) {
                Ok(()) => n += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(n)
}

fn process_exists(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    // SAFETY: kill(2) with signal 0 sends nothing; it only checks that the pid exists.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Fsyncs the directory holding `path`, making a rename or create durable.
pub fn sync_parent_dir(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    sync_dir(dir)
}

pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates a directory and its parents, fsyncing each newly created one's parent.
pub fn create_dir_all_durable(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        if !parent.as_os_str().is_empty() {
            create_dir_all_durable(parent)?;
        }
    }
    match fs::create_dir(dir) {
        Ok(()) => sync_parent_dir(dir),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Removes leftover temp files in a directory (from a crash mid-write).
pub fn remove_tmp_files(dir: &Path) -> io::Result<usize> {
    let mut n = 0;
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        if entry.file_name().to_string_lossy().ends_with(TMP_SUFFIX) {
            fs::remove_file(entry.path())?;
            n += 1;
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn write_durable_replaces_atomically_and_sets_mtime() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.ltx");
        let t = UNIX_EPOCH + Duration::from_millis(1_795_380_029_979);
        write_durable(&p, b"one", None).unwrap();
        write_durable(&p, b"two", Some(t)).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(fs::metadata(&p).unwrap().modified().unwrap(), t);
        let names: Vec<_> = fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "no temp file left behind: {names:?}");
    }

    #[test]
    fn stale_temp_files_of_dead_processes_are_removed() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("app.db");
        // pid 2^31-2 cannot be running (above pid_max); our own pid is alive.
        let dead = d.path().join("app.db.2147483646.tmp");
        let live = tmp_path(&out);
        fs::write(&dead, b"half a restore").unwrap();
        fs::write(&live, b"ours").unwrap();
        fs::write(d.path().join("other.db.2147483646.tmp"), b"x").unwrap();
        assert_eq!(remove_stale_tmp_of(&out).unwrap(), 1);
        assert!(!dead.exists() && live.exists());
        assert!(d.path().join("other.db.2147483646.tmp").exists());
    }

    #[test]
    fn leftovers_are_removed() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("x.ltx.123.tmp"), b"partial").unwrap();
        fs::write(d.path().join("keep.ltx"), b"whole").unwrap();
        assert_eq!(remove_tmp_files(d.path()).unwrap(), 1);
        assert!(d.path().join("keep.ltx").exists());
    }
}
