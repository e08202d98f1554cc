//! Who uses a database's meta directory, and clearing its local replication state.
//!
//! Owns: the advisory lock `<meta>/replicate.lock` and [`reset`] (the `reset` command).
//! A replicator holds a *shared* `flock` on the lock file for as long as it uses the
//! directory ([`MetaLock::shared`], taken by `LocalDir::open`), so replicators behave as
//! before; `reset` takes it *exclusively* without waiting, so it refuses while any
//! replicator of this database runs, and a replicator starting meanwhile waits for it.
//!
//! [`reset`] removes `<meta>/ltx` (the local L0 files: the captured position), as
//! Litestream's `reset` removes its `ltx/` directory: the next start finds no local
//! position and writes a full image at one past the replicas' newest TXID (no TXID gap,
//! `capture.rs`). It never removes the lock file, the meta directory itself (which a
//! `meta-path` may point at a directory the user shares), or anything outside it, and
//! refuses a meta directory or `ltx` that is a symlink. Does not: open the database,
//! talk to a replica.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::fsutil::{self, FileMode};
use crate::storage::layout::Layout;
use ltx::Level;

/// The lock file's name inside the meta directory.
pub const LOCK_FILE: &str = "replicate.lock";

/// How long a replicator starting waits for a `reset` holding the lock (it holds it for
/// the few milliseconds a delete takes).
const SHARED_WAIT: Duration = Duration::from_secs(5);

/// A held `flock` on `<meta>/replicate.lock`; released when dropped.
#[derive(Debug)]
pub struct MetaLock {
    _file: File,
}

impl MetaLock {
    /// Takes the shared lock a replicator holds while it uses `meta` (which must exist),
    /// creating the lock file (never through a symlink) if needed. Waits up to
    /// `SHARED_WAIT` (5 s) for a `reset` in progress, then fails with `WouldBlock`.
    pub fn shared(meta: &Path, mode: FileMode) -> io::Result<MetaLock> {
        let file = open_lock_file(&meta.join(LOCK_FILE), mode)?;
        let start = Instant::now();
        loop {
            match file.try_lock_shared() {
                Ok(()) => return Ok(MetaLock { _file: file }),
                Err(fs::TryLockError::WouldBlock) if start.elapsed() < SHARED_WAIT => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(fs::TryLockError::WouldBlock) => {
                    return Err(io::Error::new(
                        io::ErrorKind::WouldBlock,
                        format!(
                            "{} is locked exclusively (a reset in progress?)",
                            meta.join(LOCK_FILE).display()
                        ),
                    ))
                }
                Err(fs::TryLockError::Error(e)) => return Err(e),
            }
        }
    }
}

/// Opens (creating if needed, never through a symlink) a lock file.
fn open_lock_file(path: &Path, mode: FileMode) -> io::Result<File> {
    match fsutil::create_exclusive(path, mode) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => fsutil::open_existing_for_write(path),
        r => r,
    }
}

/// Why [`reset`] did not (or could not) clear the local state.
#[derive(Debug, thiserror::Error)]
pub enum ResetError {
    #[error(
        "{path} is a symlink: refusing to reset through it (point meta-path at the real directory)"
    )]
    Symlink { path: PathBuf },
    #[error("{path} is not a directory")]
    NotADirectory { path: PathBuf },
    #[error("a replicator is running for this database (it holds {lock}): stop it first")]
    InUse { lock: PathBuf },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

impl ResetError {
    fn io(path: &Path) -> impl FnOnce(io::Error) -> ResetError + '_ {
        move |source| ResetError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// One file of the local state, as [`reset`] lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResetEntry {
    pub path: PathBuf,
    pub size_bytes: u64,
}

/// What [`reset`] removed (or, in a dry run, would remove).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResetReport {
    /// The directory removed as a whole (`<meta>/ltx`); `None` when there was none.
    pub removed_dir: Option<PathBuf>,
    /// Every file under it, sorted by path.
    pub files: Vec<ResetEntry>,
}

impl ResetReport {
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size_bytes).sum()
    }
}

/// Clears the local replication state in `meta` (module docs): refuses when a replicator
/// holds the directory's lock or when `meta` or `<meta>/ltx` is a symlink; with `dry_run`,
/// lists what would go and changes nothing (not even the lock file is created). Without,
/// removes `<meta>/ltx` and fsyncs `meta`, holding the lock exclusively meanwhile.
pub fn reset(meta: &Path, dry_run: bool) -> Result<ResetReport, ResetError> {
    match fs::symlink_metadata(meta) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(ResetReport::default()),
        Err(e) => return Err(ResetError::io(meta)(e)),
        Ok(m) if m.file_type().is_symlink() => {
            return Err(ResetError::Symlink {
                path: meta.to_path_buf(),
            })
        }
        Ok(m) if !m.is_dir() => {
            return Err(ResetError::NotADirectory {
                path: meta.to_path_buf(),
            })
        }
        Ok(_) => {}
    }
    let lock_path = meta.join(LOCK_FILE);
    let lock = if dry_run {
        // Probe only: a missing lock file means no replicator of ours uses the directory.
        match fsutil::open_existing_for_write(&lock_path) {
            Ok(f) => Some(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(ResetError::io(&lock_path)(e)),
        }
    } else {
        Some(open_lock_file(&lock_path, FileMode::PRIVATE).map_err(ResetError::io(&lock_path))?)
    };
    if let Some(f) = &lock {
        match f.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(ResetError::InUse { lock: lock_path }),
            Err(fs::TryLockError::Error(e)) => return Err(ResetError::io(&lock_path)(e)),
        }
    }
    // `<meta>/ltx`: the parent of the level directories, as `LocalDir` lays them out.
    let l0 = meta.join(Layout::LtxDir.level_dir(Level::L0));
    let ltx = l0.parent().unwrap_or(meta).to_path_buf();
    let mut report = ResetReport::default();
    match fs::symlink_metadata(&ltx) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(report),
        Err(e) => return Err(ResetError::io(&ltx)(e)),
        Ok(m) if m.file_type().is_symlink() => return Err(ResetError::Symlink { path: ltx }),
        Ok(m) if !m.is_dir() => return Err(ResetError::NotADirectory { path: ltx }),
        Ok(_) => {}
    }
    list_files(&ltx, &mut report.files)?;
    report.files.sort_by(|a, b| a.path.cmp(&b.path));
    if !dry_run {
        // std's remove_dir_all never follows a symlink inside the tree (it unlinks the
        // link), so nothing outside `ltx` can be reached.
        fs::remove_dir_all(&ltx).map_err(ResetError::io(&ltx))?;
        fsutil::sync_dir(meta).map_err(ResetError::io(meta))?;
    }
    report.removed_dir = Some(ltx);
    drop(lock);
    Ok(report)
}

/// Every entry under `dir` that is not a directory (symlinks as themselves), recursively,
/// without following symlinks.
fn list_files(dir: &Path, out: &mut Vec<ResetEntry>) -> Result<(), ResetError> {
    for entry in fs::read_dir(dir).map_err(ResetError::io(dir))? {
        let entry = entry.map_err(ResetError::io(dir))?;
        let path = entry.path();
        let m = fs::symlink_metadata(&path).map_err(ResetError::io(&path))?;
        if m.is_dir() {
            list_files(&path, out)?;
        } else {
            out.push(ResetEntry {
                path,
                size_bytes: m.len(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let meta = d.path().join(".db-sqlite-replicate");
        fs::create_dir_all(meta.join("ltx/0")).unwrap();
        fs::write(
            meta.join("ltx/0/0000000000000001-0000000000000001.ltx"),
            [1u8; 100],
        )
        .unwrap();
        fs::write(
            meta.join("ltx/0/0000000000000002-0000000000000002.ltx"),
            [2u8; 50],
        )
        .unwrap();
        (d, meta)
    }

    #[test]
    fn dry_run_lists_and_keeps_then_reset_removes_only_ltx() {
        let (d, meta) = setup();
        fs::write(meta.join("user-file"), b"keep").unwrap();
        let outside = d.path().join("outside");
        fs::write(&outside, b"keep").unwrap();
        crate::platform::symlink_file(&outside, &meta.join("ltx/0/link")).unwrap();

        let dry = reset(&meta, true).unwrap();
        assert_eq!(dry.files.len(), 3);
        assert_eq!(dry.files[0].size_bytes, 100);
        assert!(meta
            .join("ltx/0/0000000000000001-0000000000000001.ltx")
            .exists());
        assert!(!meta.join(LOCK_FILE).exists(), "a dry run creates nothing");

        let done = reset(&meta, false).unwrap();
        assert_eq!(done, dry);
        assert!(!meta.join("ltx").exists());
        assert_eq!(
            fs::read(&outside).unwrap(),
            b"keep",
            "a symlink is removed, not followed"
        );
        assert_eq!(fs::read(meta.join("user-file")).unwrap(), b"keep");
        assert_eq!(reset(&meta, false).unwrap(), ResetReport::default());
    }

    #[test]
    fn refused_while_a_replicator_holds_the_lock_or_through_a_symlink() {
        let (d, meta) = setup();
        let held = MetaLock::shared(&meta, FileMode::PRIVATE).unwrap();
        for dry in [true, false] {
            assert!(
                matches!(reset(&meta, dry), Err(ResetError::InUse { .. })),
                "dry {dry}"
            );
        }
        assert!(meta.join("ltx/0").exists());
        // Two replicators' shared locks do not clash.
        let _second = MetaLock::shared(&meta, FileMode::PRIVATE).unwrap();
        drop((held, _second));
        let link = d.path().join("link-meta");
        crate::platform::symlink_dir(&meta, &link).unwrap();
        assert!(matches!(
            reset(&link, false),
            Err(ResetError::Symlink { .. })
        ));
        assert!(meta.join("ltx/0").exists());
        assert_eq!(
            reset(&d.path().join("missing"), false).unwrap(),
            ResetReport::default()
        );
    }
}
