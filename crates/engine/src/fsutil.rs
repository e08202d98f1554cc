//! Durable local file writes, in helpers that cannot be half-used.
//!
//! Owns: the temp file → fsync → rename → directory fsync sequence. Every local write
//! that must survive a crash (replica files, local L0 files, restored databases) goes
//! through here, so no caller can forget a step.
//!
//! Also owns how those files are created (security issue 17): every temp file is a fresh
//! name, `<name>.<pid>.<16 hex random>.tmp`, created with `O_CREAT|O_EXCL|O_NOFOLLOW|
//! O_CLOEXEC` ([`create_tmp`], [`write_durable_in`]), so a symlink or file planted in a
//! shared directory (a file replica's root, a restore's `-o /tmp/...`) makes the write
//! fail instead of writing through it, and the name cannot be guessed ahead of time. The
//! pid stays in the name so [`remove_stale_tmp_of`] can tell a dead writer's leftovers.
//! Files and directories get an explicit [`FileMode`] in `open`/`mkdir`: the umask can
//! only narrow it, never widen it. The OS calls themselves are `crate::platform`'s (on
//! Windows: `CREATE_NEW` without following reparse points, `MoveFileExW` with write-through
//! instead of a directory fsync, and the directory's ACL instead of mode bits).

use crate::platform::{self, Dir};
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Suffix of in-progress files; they are ignored by listings and removed on startup.
pub const TMP_SUFFIX: &str = ".tmp";

/// The permission bits of files we write that hold database pages, and of the directories
/// holding them.
///
/// The rule: a file gets the database's permission bits (never more than `0o666`: no
/// execute, setuid, setgid or sticky bits), plus owner read and write, which we need to
/// rewrite our own files; a directory gets the same bits with search (`x`) added wherever
/// read is (`0600` → `0700`, `0640` → `0750`). So no copy is readable by anyone who cannot
/// read the database. Files are created with these bits in `open`/`mkdir`, where the
/// process umask still applies on top: it can narrow them, never widen them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileMode(u32);

impl FileMode {
    /// Owner only: `0600` files, `0700` directories. For files whose database is unknown
    /// (a restore's output, a drill's scratch copy, a replica written before its database
    /// was opened).
    pub const PRIVATE: FileMode = FileMode(0o600);

    /// The mode for copies of a database whose `st_mode` is `db_mode`.
    pub fn of_db_mode(db_mode: u32) -> FileMode {
        FileMode((db_mode & 0o666) | 0o600)
    }

    /// The mode for copies of the database file at `db` (following symlinks, as SQLite
    /// opens it).
    pub fn of_db(db: &Path) -> io::Result<FileMode> {
        Ok(FileMode::of_db_mode(platform::mode_of(&fs::metadata(db)?)))
    }

    /// Permission bits for files.
    pub fn file(self) -> u32 {
        self.0
    }

    /// Permission bits for directories: the file bits with `x` wherever `r` is.
    pub fn dir(self) -> u32 {
        self.0 | ((self.0 & 0o444) >> 2)
    }
}

impl Default for FileMode {
    fn default() -> FileMode {
        FileMode::PRIVATE
    }
}

/// Writes `data` to `path` atomically and durably, optionally setting its mtime; the file
/// is private to its owner ([`FileMode::PRIVATE`]).
///
/// The file appears at `path` complete or not at all, and survives power loss once
/// this returns.
pub fn write_durable(path: &Path, data: &[u8], mtime: Option<SystemTime>) -> io::Result<()> {
    write_durable_mode(path, data, mtime, FileMode::PRIVATE)
}

/// [`write_durable`] with the file's permission bits given.
pub fn write_durable_mode(
    path: &Path,
    data: &[u8],
    mtime: Option<SystemTime>,
    mode: FileMode,
) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    write_durable_in(&Dir::open(dir)?, name, data, mtime, mode)
}

/// [`write_durable`] relative to an open directory `dir`: a fresh temp file
/// `<name>.<pid>.<random>.tmp` there (created exclusively, as [`create_exclusive`] does),
/// write, mtime, fsync, rename to `name`, fsync `dir`. A caller that writes often into one directory (a
/// file replica's puts) keeps it open: no path walk, and no open and close of the
/// directory per write.
pub fn write_durable_in(
    dir: &Dir,
    name: &OsStr,
    data: &[u8],
    mtime: Option<SystemTime>,
    mode: FileMode,
) -> io::Result<()> {
    place_durable_in(
        dir,
        name,
        &mut |f| f.write_all(data),
        mtime,
        mode,
        Place::Replace,
    )
}

/// [`write_durable_in`] of the first `len_bytes` bytes of `src`, copied in pieces read at
/// their offsets (the handle's cursor is neither used nor moved on Unix), so memory does
/// not follow the size: a file replica's put of a large LTX file spilled to disk.
pub fn copy_durable_in(
    dir: &Dir,
    name: &OsStr,
    src: &File,
    len_bytes: u64,
    mtime: Option<SystemTime>,
    mode: FileMode,
) -> io::Result<()> {
    let mut copy = |f: &mut File| -> io::Result<()> {
        use crate::platform::FileExt;
        let mut buf = vec![0u8; COPY_CHUNK_BYTES.min(len_bytes as usize)];
        let mut at = 0u64;
        while at < len_bytes {
            let n = buf.len().min((len_bytes - at) as usize);
            src.read_exact_at(&mut buf[..n], at)?;
            f.write_all(&buf[..n])?;
            at += n as u64;
        }
        Ok(())
    };
    place_durable_in(dir, name, &mut copy, mtime, mode, Place::Replace)
}

/// Bytes [`copy_durable_in`] moves per read and write.
const COPY_CHUNK_BYTES: usize = 1 << 20;

/// Creates `path` holding `data` unless a file (or anything) is there: `AlreadyExists`
/// then, and what is there is untouched. Atomic and durable like [`write_durable`]: the
/// same temp file, written, its mtime set to `mtime` when given, fsynced, then hard-linked
/// to `path` (which fails rather than replaces) and removed; then the directory is fsynced.
pub fn create_durable(
    path: &Path,
    data: &[u8],
    mtime: Option<SystemTime>,
    mode: FileMode,
) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    place_durable_in(
        &Dir::open(dir)?,
        name,
        &mut |f| f.write_all(data),
        mtime,
        mode,
        Place::CreateNew,
    )
}

/// How [`place_durable_in`] puts the finished temp file at its name.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Place {
    /// A rename that replaces what is there.
    Replace,
    /// A rename that fails with `AlreadyExists` instead (`linkat` then the temp name
    /// removed on Unix; `MoveFileExW` without `MOVEFILE_REPLACE_EXISTING` on Windows).
    CreateNew,
}

/// The one durable write: a fresh temp file in `dir` (created exclusively, never through a
/// symlink), filled by `write`, mtime, fsync, placed at `name` ([`Place`]), fsync `dir`. The mtime is
/// set before the fsync, so it is as durable as the content (it is a point-in-time restore
/// timestamp).
fn place_durable_in(
    dir: &Dir,
    name: &OsStr,
    write: &mut dyn FnMut(&mut File) -> io::Result<()>,
    mtime: Option<SystemTime>,
    mode: FileMode,
    place: Place,
) -> io::Result<()> {
    let (mut f, tmp) = create_tmp_at(dir, name, mode)?;
    let r = (|| {
        write(&mut f)?;
        if let Some(t) = mtime {
            filetime::set_file_handle_times(
                &f,
                None,
                Some(filetime::FileTime::from_system_time(t)),
            )?;
        }
        f.sync_all()?;
        match place {
            Place::Replace => dir.rename(&tmp, name),
            Place::CreateNew => dir.rename_noreplace(&tmp, name),
        }
    })();
    drop(f);
    if r.is_err() {
        let _ = dir.remove(&tmp);
    }
    r?;
    dir.sync()
}

/// How many random names [`create_tmp`] tries before giving up: a collision of 64 random
/// bits means someone is planting names, not bad luck.
const TMP_TRIES: usize = 4;

/// A fresh temp name for `name`: `<name>.<pid>.<16 hex random>.tmp`.
fn tmp_name(name: &OsStr) -> std::ffi::OsString {
    let mut tmp = name.to_os_string();
    tmp.push(format!(
        ".{}.{:016x}{}",
        process_id(),
        rand::random::<u64>(),
        TMP_SUFFIX
    ));
    tmp
}

/// Creates a fresh temp file for `name` in `dir` (see [`tmp_name`]), exclusively: a new
/// file or nothing, failing on any existing name, a (dangling) symlink included, so a
/// name planted by someone else is never written through.
fn create_tmp_at(
    dir: &Dir,
    name: &OsStr,
    mode: FileMode,
) -> io::Result<(File, std::ffi::OsString)> {
    let mut last = None;
    for _ in 0..TMP_TRIES {
        let tmp = tmp_name(name);
        match dir.create_new(&tmp, mode.file()) {
            Ok(f) => return Ok((f, tmp)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.expect("TMP_TRIES > 0"))
}

/// This process's id, asked of the kernel once.
pub fn process_id() -> u32 {
    static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *PID.get_or_init(std::process::id)
}

/// Finishes a file that was written at `tmp` by the caller: fsync, rename, dir fsync.
///
/// Used when the content is streamed (a restored database) rather than held in memory.
/// The rename replaces whatever is at `path`, a symlink included, and never follows it.
pub fn commit_tmp(tmp: &Path, file: &File, path: &Path) -> io::Result<()> {
    file.sync_all()?;
    platform::replace_durable(tmp, path)
}

/// Creates a fresh temp file next to `path` (same directory, so the final rename is
/// atomic): `<name>.<pid>.<16 hex random>.tmp`, created exclusively and never through a
/// symlink, with permission bits `mode`. Returns it open for reading and writing, and its
/// path. Every temp file of the crate is made here or by [`write_durable_in`].
pub fn create_tmp(path: &Path, mode: FileMode) -> io::Result<(File, PathBuf)> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let mut last = None;
    for _ in 0..TMP_TRIES {
        let tmp = path.with_file_name(tmp_name(name));
        match create_exclusive(&tmp, mode) {
            Ok(f) => return Ok((f, tmp)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.expect("TMP_TRIES > 0"))
}

/// Creates the file `path` for reading and writing: a new file or an error
/// (`AlreadyExists` for any existing name, a symlink included), with permission bits
/// `mode` narrowed by the umask. For a temp name of the caller's own, already random
/// (see [`create_tmp`]), that is made again after removing it.
pub fn create_exclusive(path: &Path, mode: FileMode) -> io::Result<File> {
    platform::create_new(path, mode.file())
}

/// Opens an existing regular file of ours for writing, refusing a symlink at `path`.
pub fn open_existing_for_write(path: &Path) -> io::Result<File> {
    platform::open_write_nofollow(path)
}

/// Removes temp files next to `path` (`<name>.<pid>.<random>.tmp`, see [`create_tmp`], or
/// the older `<name>.<pid>.tmp`) whose process no longer runs: what a writer killed
/// mid-write (a restore under `kill -9`) left behind. A temp file of a live process,
/// another restore running now, is left alone.
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
            .and_then(tmp_pid)
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

/// The pid in what follows `<name>.` in a temp name: `<pid>.tmp`, `<pid>.<seq>.tmp` or
/// `<pid>.<random hex>.tmp`; `None` for anything else.
pub fn tmp_pid(tail: &str) -> Option<u32> {
    let rest = tail.strip_suffix(TMP_SUFFIX)?;
    let mut parts = rest.split('.');
    let pid = parts.next()?;
    let unique = parts.next();
    if parts.next().is_some() || pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let hex = |s: &str| {
        !s.is_empty()
            && s.len() <= 16
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if unique.is_some_and(|u| !hex(u)) {
        return None;
    }
    pid.parse().ok()
}

/// Whether a process with this pid runs on this host.
pub fn process_exists(pid: u32) -> bool {
    platform::process_exists(pid)
}

/// Fsyncs the directory holding `path`, making a rename or create durable.
pub fn sync_parent_dir(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    sync_dir(dir)
}

/// Fsyncs a directory, making the names created, renamed or removed in it durable
/// (nothing on Windows, see `platform::sync_dir`).
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    platform::sync_dir(dir)
}

/// Creates a directory and its parents, each new one with [`FileMode::dir`] bits of
/// `mode` (narrowed by the umask), fsyncing each newly created one's parent. Existing
/// directories keep their mode.
pub fn create_dir_all_durable(dir: &Path, mode: FileMode) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        if !parent.as_os_str().is_empty() {
            create_dir_all_durable(parent, mode)?;
        }
    }
    match create_dir(dir, mode) {
        Ok(()) => sync_parent_dir(dir),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Creates one directory with [`FileMode::dir`] bits of `mode` (narrowed by the umask);
/// `AlreadyExists` when anything is at `dir`.
pub fn create_dir(dir: &Path, mode: FileMode) -> io::Result<()> {
    platform::create_dir(dir, mode.dir())
}

/// Takes away from an existing directory of ours every permission bit `mode`'s
/// directories would not have (a meta directory an older version made `0755` for a `0600`
/// database). Never adds a bit.
pub fn narrow_dir(dir: &Path, mode: FileMode) -> io::Result<()> {
    platform::narrow_dir(dir, mode.dir())
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
    fn create_durable_never_replaces_sets_mtime_and_leaves_no_temp_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("lock.json");
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::new(1_700_000_000, 123_456_789);
        create_durable(&p, b"one", Some(t), FileMode::PRIVATE).unwrap();
        let e = create_durable(&p, b"two", None, FileMode::PRIVATE).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&p).unwrap(), b"one");
        assert_eq!(fs::metadata(&p).unwrap().modified().unwrap(), t);
        assert_eq!(
            fs::read_dir(d.path()).unwrap().count(),
            1,
            "no temp file left"
        );
    }

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
        let dead_random = d.path().join("app.db.2147483646.0123456789abcdef.tmp");
        let (_f, live) = create_tmp(&out, FileMode::PRIVATE).unwrap();
        fs::write(&dead, b"half a restore").unwrap();
        fs::write(&dead_random, b"half a restore").unwrap();
        fs::write(&live, b"ours").unwrap();
        let kept = [
            "other.db.2147483646.tmp",              // another file's
            "app.db.2147483646.not-hex.tmp",        // not our pattern
            "app.db.2147483646.0123456789abcdef.x", // not a temp file
        ];
        for k in kept {
            fs::write(d.path().join(k), b"x").unwrap();
        }
        assert_eq!(remove_stale_tmp_of(&out).unwrap(), 2);
        assert!(!dead.exists() && !dead_random.exists() && live.exists());
        for k in kept {
            assert!(d.path().join(k).exists(), "{k} kept");
        }
    }

    #[cfg(unix)]
    fn mode_of(p: &Path) -> u32 {
        platform::mode_of(&fs::symlink_metadata(p).unwrap()) & 0o7777
    }

    /// Security issue 17: `0600` → `0600`/`0700`, never more than `0666`, owner rw kept.
    #[test]
    fn copies_get_the_database_mode_and_dirs_get_x_where_r_is() {
        for (db, file, dir) in [
            (0o100600, 0o600, 0o700),
            (0o100640, 0o640, 0o750),
            (0o100644, 0o644, 0o755),
            (0o100660, 0o660, 0o770),
            (0o104755, 0o644, 0o755),
            (0o100400, 0o600, 0o700),
            (0o100604, 0o604, 0o705),
        ] {
            let m = FileMode::of_db_mode(db);
            assert_eq!((m.file(), m.dir()), (file, dir), "db mode {db:o}");
        }
    }

    // Unix mode bits; Windows copies inherit their directory's ACL instead.
    #[cfg(unix)]
    #[test]
    fn files_and_dirs_are_created_with_the_mode_asked_under_umask_022() {
        // 022 is the common default, set so the test does not depend on the environment's.
        platform::set_umask(0o022);
        let d = tempfile::tempdir().unwrap();
        let private = d.path().join("a/b");
        create_dir_all_durable(&private, FileMode::PRIVATE).unwrap();
        assert_eq!(mode_of(&d.path().join("a")), 0o700);
        assert_eq!(mode_of(&private), 0o700);
        write_durable(&private.join("x"), b"pages", None).unwrap();
        assert_eq!(mode_of(&private.join("x")), 0o600);
        let group = FileMode::of_db_mode(0o640);
        let g = d.path().join("g");
        create_dir_all_durable(&g, group).unwrap();
        assert_eq!(mode_of(&g), 0o750);
        write_durable_mode(&g.join("x"), b"pages", None, group).unwrap();
        assert_eq!(mode_of(&g.join("x")), 0o640);
        let (_f, tmp) = create_tmp(&g.join("y"), group).unwrap();
        assert_eq!(mode_of(&tmp), 0o640);
        // The umask still narrows: `0660` under 022 is `0640`.
        write_durable_mode(&g.join("z"), b"pages", None, FileMode::of_db_mode(0o660)).unwrap();
        assert_eq!(mode_of(&g.join("z")), 0o640);
    }

    // Unix mode bits; Windows copies inherit their directory's ACL instead.
    #[cfg(unix)]
    #[test]
    fn narrowing_a_directory_only_takes_bits_away() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("ltx");
        fs::create_dir(&p).unwrap();
        platform::set_mode(&p, 0o755).unwrap();
        narrow_dir(&p, FileMode::of_db_mode(0o660)).unwrap();
        assert_eq!(mode_of(&p), 0o750, "group w not added, other r and x taken");
        narrow_dir(&p, FileMode::PRIVATE).unwrap();
        assert_eq!(mode_of(&p), 0o700);
    }

    /// Security issue 17: a symlink planted at the temp name the old code used
    /// (`<name>.<pid>.tmp`, predictable) must not be written through.
    // Symlinks: creating one on Windows needs SeCreateSymbolicLinkPrivilege, and Wine
    // makes Unix symlinks, which do not behave as NTFS reparse points.
    #[cfg(unix)]
    #[test]
    fn a_symlink_at_a_guessable_temp_name_is_not_followed() {
        let d = tempfile::tempdir().unwrap();
        let victim = d.path().join("victim");
        fs::write(&victim, b"precious").unwrap();
        let out = d.path().join("a.ltx");
        let guessed = d.path().join(format!("a.ltx.{}.tmp", std::process::id()));
        platform::symlink_file(&victim, &guessed).unwrap();
        write_durable(&out, b"new content", None).unwrap();
        let dir = Dir::open(d.path()).unwrap();
        write_durable_in(&dir, OsStr::new("b.ltx"), b"more", None, FileMode::PRIVATE).unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"precious", "victim untouched");
        assert_eq!(fs::read(&out).unwrap(), b"new content");
        assert!(!fs::symlink_metadata(&out).unwrap().file_type().is_symlink());
    }

    // Symlinks: creating one on Windows needs SeCreateSymbolicLinkPrivilege, and Wine
    // makes Unix symlinks, which do not behave as NTFS reparse points.
    #[cfg(unix)]
    #[test]
    fn exclusive_creation_refuses_any_existing_name_even_a_dangling_symlink() {
        let d = tempfile::tempdir().unwrap();
        let victim = d.path().join("victim");
        let link = d.path().join("link");
        platform::symlink_file(&victim, &link).unwrap();
        let e = create_exclusive(&link, FileMode::PRIVATE).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert!(!victim.exists(), "nothing created through the link");
        fs::write(&victim, b"precious").unwrap();
        let e = create_exclusive(&link, FileMode::PRIVATE).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert!(
            open_existing_for_write(&link).is_err(),
            "no write through a link"
        );
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
    }

    #[test]
    fn temp_names_are_fresh_and_carry_the_pid() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("app.db");
        let (_a, a) = create_tmp(&out, FileMode::PRIVATE).unwrap();
        let (_b, b) = create_tmp(&out, FileMode::PRIVATE).unwrap();
        assert_ne!(a, b);
        for p in [a, b] {
            let name = p.file_name().unwrap().to_str().unwrap();
            let tail = name.strip_prefix("app.db.").unwrap();
            assert_eq!(tmp_pid(tail), Some(std::process::id()), "{name}");
            assert_eq!(
                tail.len(),
                std::process::id().to_string().len() + 1 + 16 + 4
            );
        }
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
