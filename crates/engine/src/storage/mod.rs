//! Replica storage: one narrow trait every backend implements, with semantic errors.
//!
//! Owns: the [`ReplicaStore`] contract, the [`StorageError`] classification (callers decide
//! retries from the variant, never the message), and the backends: `file` (a local
//! directory), `sftp` (a directory on an SSH server), and `s3`, `abs`, `gcs` (object
//! stores); `metered`, the wrapper that counts and times every request per operation (for
//! metrics); and `faulty`, a fault-injecting wrapper for reliability tests. Key spelling
//! lives only in [`layout`]. What the backends built on
//! `object_store` share (the calls themselves, client settings, error classification)
//! lives in `objstore` and `objstore_error`; each such backend keeps only its own
//! settings, client building and error dialect. Only this module talks to a backend.
//!
//! Where `created` lives: file mtime (`file`, to the nanosecond; `sftp`, to the second,
//! with `list_exact_times` reading the LTX header's milliseconds), or object metadata
//! (`litestream-timestamp` on S3 and GCS, `litestreamtimestamp` on ABS).
//!
//! Contract, for every backend:
//! - `put` is atomic: a reader sees the whole object or nothing, never a prefix.
//! - `put` records `created` so a later `list` reports it (file mtime or object metadata).
//! - `list` returns a level's files sorted by (min, max) TXID, ignoring names that are not LTX.
//! - `get` with a range returns exactly those bytes, or `NotFound`.
//! - `delete` of a missing key is not an error.
//! - `list_exact_times` reports `created` exactly as `put` recorded it, even where `list`
//!   only approximates it (S3 listings carry LastModified, not metadata).
//! - `put_if_not_exists` creates an object atomically or fails with `Precondition`,
//!   leaving the existing one untouched (file and sftp: a fully written temp file
//!   hard-linked into place; object stores: a conditional PUT).
//! - `put_name`, `get_name`, `head_name`, `delete_name` act on one object named by a
//!   path relative to the root that [`layout::is_aux_name`] accepts: never inside a level
//!   directory or `generations/`, so no listing (and so no restore) can ever see it. For
//!   scratch objects (`check`'s round trip) and markers. `head_name` reports the
//!   storage's own modification time (file mtime, object Last-Modified); `delete_name`
//!   of a missing object is not an error.
//! - `put_if_absent` stores an LTX file like `put` but only if no file has that key: else
//!   `Precondition`, and the existing file is untouched (for fenced uploads under a lease).
//! - `create_name`, `get_name_versioned`, `put_name_if_match` are a compare-and-swap on one
//!   named object: `create_name` creates it only if absent, each returns the object's
//!   [`ETag`], and `put_name_if_match` replaces it only if its current tag is the one given,
//!   else `Precondition`. A tag names one version of the object: a replaced object never
//!   gets a tag it had before while anyone could hold that tag (for leases). Backends
//!   without conditional writes answer `Permanent`, saying so.
//! - `list_v3` returns every snapshot and WAL segment of every Litestream 0.3 generation
//!   (`generations/`), ignoring other names; `get_v3` returns one of them whole. Read-only:
//!   nothing here writes that layout. Every backend but GCS has them. `get_v3_range`
//!   returns exactly the given bytes of one of them, or `NotFound`; a range past its end
//!   is `Permanent` (restores read large files in pieces, never whole).

pub mod abs;
pub mod faulty;
pub mod file;
pub mod gcs;
pub mod layout;
pub mod metered;
mod objstore;
mod objstore_error;
pub mod s3;
pub mod sftp;

use std::ops::Range;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use ltx::Level;
use thiserror::Error;

pub use layout::{Layout, LtxInfo, LtxKey};

/// Bytes of one ranged read as they arrive ([`ReplicaStore::get_stream`]).
pub type ByteStream = futures::stream::BoxStream<'static, Result<Bytes, StorageError>>;

/// What went wrong talking to a replica, classified for retry decisions.
#[derive(Debug, Error)]
pub enum StorageError {
    #[error("{location}: {what} not found")]
    NotFound { location: String, what: String },
    #[error("{location}: precondition failed for {what}")]
    Precondition { location: String, what: String },
    #[error("{location}: permission denied for {what}: {detail}")]
    PermissionDenied {
        location: String,
        what: String,
        detail: String,
    },
    #[error("{location}: no space left writing {what}")]
    NoSpace { location: String, what: String },
    /// Worth retrying: timeouts, connection resets, 5xx, throttling.
    #[error("{location}: transient error on {what}: {detail}")]
    Transient {
        location: String,
        what: String,
        detail: String,
    },
    /// Retrying will not help until someone changes something.
    #[error("{location}: {what}: {detail}")]
    Permanent {
        location: String,
        what: String,
        detail: String,
    },
}

impl StorageError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, StorageError::Transient { .. })
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, StorageError::NotFound { .. })
    }

    /// A hint for the operator, printed by the CLI beside the error.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            StorageError::NotFound { .. } => Some("check the replica path, bucket and prefix"),
            StorageError::PermissionDenied { .. } => {
                Some("check the credentials and the permissions on the replica location")
            }
            StorageError::NoSpace { .. } => Some("free space on the replica's storage"),
            StorageError::Transient { .. } => Some("check that the endpoint is reachable"),
            _ => None,
        }
    }
}

/// One object outside the level directories, as [`ReplicaStore::head_name`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedObject {
    pub size_bytes: u64,
    /// When the storage says the object was last written, by the storage's clock (file
    /// mtime set by the file system, object Last-Modified set by the server).
    pub modified: SystemTime,
}

/// The version tag of one named object, as the storage reports it (an HTTP ETag on object
/// stores; a content hash on the file backend). Opaque: only compared for equality.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ETag(pub String);

impl std::fmt::Display for ETag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A replica location holding LTX files.
#[async_trait]
pub trait ReplicaStore: Send + Sync + 'static {
    /// Where this replica lives, for logs and errors; never contains a secret.
    fn location(&self) -> &str;

    /// The permission bits for local files and directories this store creates from now on:
    /// the replicator calls it with its database's mode once the database is open, so a
    /// copy is never readable by more users than the database (security issue 17).
    /// Backends that write no local files ignore it.
    fn set_file_mode(&self, mode: crate::fsutil::FileMode) {
        let _ = mode;
    }

    /// The files of one level, sorted by (min, max).
    async fn list(&self, level: Level) -> Result<Vec<LtxInfo>, StorageError>;

    /// The whole file, or the given byte range of it.
    async fn get(&self, key: &LtxKey, range: Option<Range<u64>>) -> Result<Bytes, StorageError>;

    /// The bytes of `range` of a file, in order, as they arrive: for restores, so a large
    /// range is decoded while it downloads and no buffer of its size is allocated. The
    /// stream may end early or fail mid-way (a cut connection): callers count the bytes.
    /// By default one [`ReplicaStore::get`]; object stores stream the response body.
    async fn get_stream(
        &self,
        key: &LtxKey,
        range: Range<u64>,
    ) -> Result<ByteStream, StorageError> {
        let b = self.get(key, Some(range)).await?;
        Ok(Box::pin(futures::stream::once(async move { Ok(b) })))
    }

    /// Bytes a restore asks for per ranged read, several in flight: large where each
    /// request costs a round trip (object stores); small where reads are local, so the
    /// chunks a restore holds stay in the CPU cache.
    fn restore_chunk_bytes(&self) -> u64 {
        8 << 20
    }

    /// Stores a whole file atomically, recording `created` as its timestamp.
    async fn put(&self, key: &LtxKey, data: Bytes, created: SystemTime)
        -> Result<(), StorageError>;

    /// Deletes files; missing ones are ignored.
    async fn delete(&self, keys: &[LtxKey]) -> Result<(), StorageError>;

    /// [`ReplicaStore::list`] with `created` exactly as `put` recorded it, for point-in-time
    /// restores. Backends whose listing already reports it keep this default; S3 reads each
    /// file's `litestream-timestamp` metadata (one HEAD per file, as Litestream does).
    async fn list_exact_times(&self, level: Level) -> Result<Vec<LtxInfo>, StorageError> {
        self.list(level).await
    }

    /// Creates `name` (a `/`-separated path under the replica root, outside the level
    /// directories, e.g. `lock.json`) holding `data`, atomically, unless it already exists:
    /// then `Precondition`, and the existing object is untouched. For leases.
    async fn put_if_not_exists(&self, name: &str, data: Bytes) -> Result<(), StorageError> {
        let _ = data;
        Err(StorageError::Permanent {
            location: self.location().to_string(),
            what: name.to_string(),
            detail: "conditional create is not supported by this backend".into(),
        })
    }

    /// Stores `data` at `name` (see [`layout::is_aux_name`]) atomically, replacing what is
    /// there, with no timestamp metadata: the storage records its own modification time.
    async fn put_name(&self, name: &str, data: Bytes) -> Result<(), StorageError> {
        let _ = data;
        Err(unsupported(self.location(), name, "named objects"))
    }

    /// The whole object at `name`, or the given byte range of it, or `NotFound`.
    async fn get_name(&self, name: &str, range: Option<Range<u64>>) -> Result<Bytes, StorageError> {
        let _ = range;
        Err(unsupported(self.location(), name, "named objects"))
    }

    /// Size and modification time of the object at `name`, or `NotFound`.
    async fn head_name(&self, name: &str) -> Result<NamedObject, StorageError> {
        Err(unsupported(self.location(), name, "named objects"))
    }

    /// Deletes the object at `name`; a missing one is not an error.
    async fn delete_name(&self, name: &str) -> Result<(), StorageError> {
        Err(unsupported(self.location(), name, "named objects"))
    }

    /// [`ReplicaStore::put`], but only if no file has `key`: else `Precondition`, and the
    /// existing file is untouched. Fenced uploads under a lease use it so that no file is
    /// ever replaced by a writer of another epoch.
    async fn put_if_absent(
        &self,
        key: &LtxKey,
        data: Bytes,
        created: SystemTime,
    ) -> Result<(), StorageError> {
        let _ = (data, created);
        Err(unsupported(
            self.location(),
            &key.to_string(),
            "conditional writes",
        ))
    }

    /// Creates `name` (see [`layout::is_aux_name`]) holding `data` unless it exists:
    /// `Precondition` then. Returns the new object's tag.
    async fn create_name(&self, name: &str, data: Bytes) -> Result<ETag, StorageError> {
        let _ = data;
        Err(unsupported(self.location(), name, "conditional writes"))
    }

    /// The whole object at `name` with its tag, or `NotFound`.
    async fn get_name_versioned(&self, name: &str) -> Result<(Bytes, ETag), StorageError> {
        Err(unsupported(self.location(), name, "conditional writes"))
    }

    /// Replaces the object at `name` with `data` only if its tag is still `etag`: else
    /// `Precondition` (or `NotFound` where it is gone). Returns the new tag.
    async fn put_name_if_match(
        &self,
        name: &str,
        data: Bytes,
        etag: &ETag,
    ) -> Result<ETag, StorageError> {
        let _ = (data, etag);
        Err(unsupported(self.location(), name, "conditional writes"))
    }

    /// Every snapshot and WAL segment of every Litestream 0.3 generation under the root
    /// (`generations/<gen>/{snapshots,wal}/`), in no particular order; other names are
    /// ignored and an absent `generations/` is an empty listing. For restoring replicas that
    /// 0.3 wrote.
    async fn list_v3(&self) -> Result<Vec<layout::v3::V3File>, StorageError> {
        Err(StorageError::Permanent {
            location: self.location().to_string(),
            what: layout::v3::GENERATIONS_DIR.to_string(),
            detail: "reading Litestream 0.3 generations is not supported by this backend".into(),
        })
    }

    /// One whole file of a [`ReplicaStore::list_v3`] listing, still LZ4-compressed.
    async fn get_v3(&self, file: &layout::v3::V3File) -> Result<Bytes, StorageError> {
        Err(StorageError::Permanent {
            location: self.location().to_string(),
            what: file.path(),
            detail: "reading Litestream 0.3 generations is not supported by this backend".into(),
        })
    }

    /// Bytes `range` of one file of a [`ReplicaStore::list_v3`] listing, still compressed:
    /// restores read a file in pieces so memory does not follow its size. By default the
    /// whole file, sliced (a backend that cannot read ranges).
    async fn get_v3_range(
        &self,
        file: &layout::v3::V3File,
        range: Range<u64>,
    ) -> Result<Bytes, StorageError> {
        let b = self.get_v3(file).await?;
        if range.start > range.end || range.end > b.len() as u64 {
            return Err(StorageError::Permanent {
                location: self.location().to_string(),
                what: file.path(),
                detail: format!(
                    "range {}..{} outside file of {} bytes",
                    range.start,
                    range.end,
                    b.len()
                ),
            });
        }
        Ok(b.slice(range.start as usize..range.end as usize))
    }
}

fn unsupported(location: &str, what: &str, feature: &str) -> StorageError {
    StorageError::Permanent {
        location: location.to_string(),
        what: what.to_string(),
        detail: format!("{feature} are not supported by this backend"),
    }
}

/// `Permanent` unless `name` is a name [`layout::is_aux_name`] accepts.
pub(crate) fn check_aux_name(location: &str, name: &str) -> Result<(), StorageError> {
    if layout::is_aux_name(name) {
        return Ok(());
    }
    Err(StorageError::Permanent {
        location: location.to_string(),
        what: format!("{name:?}"),
        detail: "not a relative path outside the level directories and generations/".into(),
    })
}
