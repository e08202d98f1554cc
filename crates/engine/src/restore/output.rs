//! The restored file's life outside the fetch: what a restore is asked for
//! ([`ApplyOptions`], [`IntegrityCheck`]) and reports ([`ApplyReport`]), how it fails
//! ([`ApplyError`], with Litestream 0.3's own cases in [`V3ApplyError`]), the checks before
//! the output is touched ([`check_output`], [`output_mode`]), SQLite's check of the temp
//! file ([`verify_integrity`]), and putting it in place (`install`: fsync'd temp file →
//! rename → directory fsync).
//!
//! Shared by `apply` (LTX) and `v3` (Litestream 0.3 generations), so neither imports the
//! other. Does not fetch or merge pages.

use std::io;
use std::path::{Path, PathBuf};

use crate::fsutil::FileMode;
use crate::storage::layout::v3::GenerationId;
use crate::storage::StorageError;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum IntegrityCheck {
    #[default]
    None,
    Quick,
    Full,
}

#[derive(Clone, Debug)]
pub struct ApplyOptions {
    pub parallelism: usize,
    pub integrity: IntegrityCheck,
    /// Replace an existing output (and remove its stale `-wal`/`-shm`).
    pub force: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{path} already exists (use -force to replace it)")]
    OutputExists { path: PathBuf },
    /// The output path is a symbolic link: a restore neither writes through it (into a
    /// file someone else chose) nor replaces it.
    #[error("{path} is a symbolic link; restore does not follow or replace it (give the path of a regular file)")]
    OutputSymlink { path: PathBuf },
    #[error("{file}: {source}")]
    Fetch { file: String, source: StorageError },
    #[error("{file}: {source}")]
    Decode {
        file: String,
        source: ltx::DecodeError,
    },
    /// The header's TXIDs are not the ones the file's name promises: a file renamed or
    /// copied over another; applying it would put the wrong history under that TXID.
    #[error("{file}: at byte 16: the header holds TXIDs {header_min}-{header_max}, not the ones its name says (misnamed or replaced file)")]
    NameMismatch {
        file: String,
        header_min: ltx::TxId,
        header_max: ltx::TxId,
    },
    /// A listed size that no LTX file can have, or more than the file's own header
    /// allows: a damaged or lying store. Refused before any read is sized by it.
    #[error(
        "{file}: the store lists it as {listed} bytes, more than {limit} allows ({max} bytes)"
    )]
    ListedSizeTooLarge {
        file: String,
        listed: u64,
        max: u64,
        limit: &'static str,
    },
    /// The newest file's header promises more pages than the planned files could hold
    /// even if every page took the fewest bytes a page can: refused before the output is
    /// sized for them.
    #[error("{file}: at byte 12: the header says the database has {commit} pages, but the planned files total {bytes} bytes, room for at most {max} pages")]
    TooManyPages {
        file: String,
        commit: u32,
        bytes: u64,
        max: u64,
    },
    #[error("{file}: page size {got} differs from the plan's {want}")]
    PageSizeMismatch { file: String, got: u32, want: u32 },
    #[error(
        "restored database is missing page {pgno} of {commit}: the snapshot {file} is incomplete"
    )]
    MissingPage {
        pgno: u32,
        commit: u32,
        file: String,
    },
    #[error("{path}: {op}: {source}")]
    Io {
        path: PathBuf,
        op: &'static str,
        source: io::Error,
    },
    #[error("integrity check failed on the restored database: {detail}")]
    Integrity { detail: String },
    #[error("empty plan")]
    EmptyPlan,
    /// Restoring a Litestream 0.3 generation failed (`restore::v3`).
    #[error(transparent)]
    V3(#[from] V3ApplyError),
}

/// What a restore did, for the CLI and drills.
#[derive(Clone, Debug)]
pub struct ApplyReport {
    pub files: usize,
    pub bytes_fetched: u64,
    pub pages: u32,
    pub page_size: u32,
    pub seconds: f64,
}

/// Refuses to proceed if the output is a symlink (even with `force`), or if the output or
/// its sidecars exist (a dangling symlink counts), unless `force`.
pub fn check_output(out: &Path, force: bool) -> Result<(), ApplyError> {
    if std::fs::symlink_metadata(out).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(ApplyError::OutputSymlink {
            path: out.to_path_buf(),
        });
    }
    if force {
        return Ok(());
    }
    for p in sidecars(out)
        .into_iter()
        .chain(std::iter::once(out.to_path_buf()))
    {
        if std::fs::symlink_metadata(&p).is_ok() {
            return Err(ApplyError::OutputExists { path: p });
        }
    }
    Ok(())
}

/// The mode of a restored database: that of the regular file it replaces (`-force`),
/// else [`FileMode::PRIVATE`]: LTX files record no mode, and a restore must not make a
/// copy readable by more users than the owner chose.
pub fn output_mode(out: &Path) -> FileMode {
    match std::fs::symlink_metadata(out) {
        Ok(m) if m.is_file() => FileMode::of_db_mode(crate::platform::mode_of(&m)),
        _ => FileMode::PRIVATE,
    }
}

fn sidecars(out: &Path) -> Vec<PathBuf> {
    ["-wal", "-shm", "-journal"]
        .iter()
        .map(|s| {
            let mut p = out.as_os_str().to_os_string();
            p.push(s);
            PathBuf::from(p)
        })
        .collect()
}

/// Puts a verified, fsynced temp file in place: with `force`, removes the output's stale
/// `-wal`/`-shm`/`-journal` first (SQLite would otherwise replay an old WAL over the
/// restored file), then renames durably (`platform::replace_durable`: the directory
/// fsynced on Unix, write-through on Windows). The only step that touches the
/// output path, so it runs after every check has passed.
pub(super) fn install(tmp: &Path, out: &Path, force: bool) -> Result<(), ApplyError> {
    if force {
        for p in sidecars(out) {
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(ApplyError::Io {
                        path: p,
                        op: "remove stale sidecar",
                        source,
                    })
                }
            }
        }
    }
    crate::platform::replace_durable(tmp, out).map_err(|source| ApplyError::Io {
        path: out.to_path_buf(),
        op: "rename into place",
        source,
    })
}

/// `path` as an SQLite `file:` URI without query: every byte but unreserved ones and `/`
/// percent-encoded, so a `?`, `#` or `%` in the path (an `-o` path) names the same file
/// rather than starting a query or fragment (security issue 17). An absolute path gets an
/// empty authority (`file:///...`), so one starting with `//` is not taken for a host.
/// On Windows `\` becomes `/` and a drive letter gets a leading `/` (`file:///C:/a.db`).
fn sqlite_file_uri(path: &Path) -> String {
    use std::fmt::Write as _;
    let (bytes, literal) = crate::platform::uri_path_bytes(path);
    let mut uri = String::from(if path.is_absolute() {
        "file://"
    } else {
        "file:"
    });
    for b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) || literal.contains(&b) {
            uri.push(b as char);
        } else {
            let _ = write!(uri, "%{b:02X}");
        }
    }
    uri
}

/// Runs SQLite's own check on the restored file before it is put in place.
pub fn verify_integrity(path: &Path, check: IntegrityCheck) -> Result<(), ApplyError> {
    let pragma = match check {
        IntegrityCheck::None => return Ok(()),
        IntegrityCheck::Quick => "PRAGMA quick_check",
        IntegrityCheck::Full => "PRAGMA integrity_check",
    };
    let uri = format!("{}?immutable=1", sqlite_file_uri(path));
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_URI;
    let conn =
        rusqlite::Connection::open_with_flags(&uri, flags).map_err(|e| ApplyError::Integrity {
            detail: e.to_string(),
        })?;
    let mut stmt = conn.prepare(pragma).map_err(|e| ApplyError::Integrity {
        detail: e.to_string(),
    })?;
    let rows: Vec<String> = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .and_then(|it| it.collect())
        .map_err(|e| ApplyError::Integrity {
            detail: e.to_string(),
        })?;
    if rows.len() == 1 && rows[0] == "ok" {
        Ok(())
    } else {
        Err(ApplyError::Integrity {
            detail: rows.into_iter().take(5).collect::<Vec<_>>().join("; "),
        })
    }
}

/// Why applying a v3 plan failed, beyond fetch and local I/O errors (those are
/// [`ApplyError::Fetch`] and [`ApplyError::Io`]).
#[derive(Debug, thiserror::Error)]
pub enum V3ApplyError {
    #[error("{file}: the LZ4 frame does not decompress: {source}")]
    Decompress { file: String, source: io::Error },
    #[error("{file}: not a SQLite database: {detail}")]
    BadSnapshot { file: String, detail: String },
    #[error("generation {generation}, WAL index {index:08x}: bytes {from}..{to} are missing: {before} ends at byte {from} but the next segment, {after}, starts at byte {to}")]
    SegmentGap {
        generation: GenerationId,
        index: u32,
        from: u64,
        to: u64,
        before: String,
        after: String,
    },
    #[error("generation {generation}, WAL index {index:08x}: {after} starts at byte {to}, inside {before}, which decompresses past it")]
    SegmentOverlap {
        generation: GenerationId,
        index: u32,
        to: u64,
        before: String,
        after: String,
    },
    /// An LZ4 frame decompresses to more than the format allows (a decompression bomb or
    /// a damaged file): stopped as soon as the bound was passed.
    #[error("{file}: decompresses to more than {limit} bytes, the most {what}")]
    TooLarge {
        file: String,
        limit: u64,
        what: String,
    },
    #[error("generation {generation}, WAL index {index:08x}: {file} does not start with a valid WAL header")]
    BadWalHeader {
        generation: GenerationId,
        index: u32,
        file: String,
    },
    #[error("generation {generation}, WAL index {index:08x}: WAL page size {got} differs from the snapshot's {want}")]
    PageSizeMismatch {
        generation: GenerationId,
        index: u32,
        got: u32,
        want: u32,
    },
    /// A frame fails its checksum although a committed transaction follows it. SQLite's
    /// recovery would stop there silently; a later index would then be laid over a database
    /// missing those commits, so this is refused instead.
    #[error("generation {generation}, WAL index {index:08x}: {detail}")]
    CorruptWal {
        generation: GenerationId,
        index: u32,
        detail: String,
    },
}
