//! Replica storage: narrow traits the backends implement, with semantic errors.
//!
//! Owns: the storage contract, split by what a caller needs:
//! - [`ReplicaStore`], the core every backend implements: LTX files by level (list, ranged
//!   get, atomic put, delete), plus [`ReplicaStore::named`] and [`ReplicaStore::v3`], which
//!   hand out the optional parts where the backend has them;
//! - [`NamedStore`]: objects outside the level directories, named by path (check's scratch
//!   object, the lease), with conditional create, read-with-tag and replace-if-tag-matches,
//!   and the fenced LTX put ([`NamedStore::put_if_absent`]);
//! - [`V3Store`]: reading Litestream 0.3 replicas (`generations/`), read-only.
//!
//! Also owns the [`StorageError`] type (an [`ErrorKind`] callers decide retries from, never
//! the message; the location, the key, the operation where known, and the cause as its
//! `source`), and the backends: `file` (a local directory), `sftp` (a directory on an SSH
//! server), `webdav` (a collection on a WebDAV server), `nats` (a NATS JetStream object
//! store), and `s3`, `abs`, `gcs` (object
//! stores); `metered`, the wrapper that counts and times every request per operation (for
//! metrics); `age`, the wrapper that encrypts a replica's LTX files with age (issue 24);
//! and `faulty`, a fault-injecting wrapper
//! for reliability tests. Key spelling lives only in [`layout`]. What the backends built on
//! `object_store` share (the calls themselves, client settings, error classification)
//! lives in `objstore` and `objstore_error`; each such backend keeps only its own
//! settings, client building and error dialect. Only this module talks to a backend.
//!
//! Where `created` lives: file mtime (`file`, to the nanosecond; `sftp`, to the second,
//! with `list_exact_times` reading the LTX header's milliseconds), the LTX header alone
//! (`webdav`, whose listing reports the server's upload time), or object metadata
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
//!
//! And for a backend's [`NamedStore`] (every backend has one):
//! - `put_name`, `get_name`, `head_name`, `delete_name` act on one object named by a
//!   path relative to the root that [`layout::is_aux_name`] accepts: never inside a level
//!   directory or `generations/`, so no listing (and so no restore) can ever see it. For
//!   scratch objects (`check`'s round trip) and markers. `head_name` reports the
//!   storage's own modification time (file mtime, object Last-Modified); `delete_name`
//!   of a missing object is not an error.
//! - `create_name` creates an object atomically or fails with `Precondition`, leaving the
//!   existing one untouched (file and sftp: a fully written temp file hard-linked into
//!   place; object stores: a conditional PUT).
//! - `create_name`, `get_name_versioned`, `put_name_if_match` are a compare-and-swap on one
//!   named object: each returns the object's [`ETag`], and `put_name_if_match` replaces it
//!   only if its current tag is the one given, else `Precondition`. A tag names one version
//!   of the object: a replaced object never gets a tag it had before while anyone could
//!   hold that tag (for leases). A backend without conditional replace (sftp) answers
//!   `Permanent`, saying so
//!   ([`StorageError::unsupported`]).
//! - `put_if_absent` stores an LTX file like `put` but only if no file has that key: else
//!   `Precondition`, and the existing file is untouched (for fenced uploads under a lease).
//!
//! And for a backend's [`V3Store`] (every backend has one): `list_v3` returns every
//! snapshot and WAL segment of every Litestream 0.3 generation (`generations/`), ignoring
//! other names; `get_v3` returns one of them whole; `get_v3_range` returns exactly the
//! given bytes of one of them, or `NotFound`; a range past its end is `Permanent`
//! (restores read large files in pieces, never whole).
//!
//! # Adding a backend
//!
//! 1. A module here with the backend's settings and client, and an error dialect mapping
//!    its failures to an [`ErrorKind`], keeping the cause as the error's source (scrubbed
//!    of secrets first where its text can carry one, as `objstore_error` does). A backend
//!    built on `object_store` implements only `objstore::ObjectStoreBackend` and gets all
//!    three traits from it.
//! 2. Implement [`ReplicaStore`]; if it can hold named objects, [`NamedStore`] and return
//!    it from [`ReplicaStore::named`] (conditional calls it cannot do atomically answer
//!    [`StorageError::unsupported`], never a best effort); if it can read 0.3 replicas, [`V3Store`] and
//!    [`ReplicaStore::v3`]. Spell keys only through [`layout`].
//! 3. Wire it in the CLI (`config` for its URL and keys, `setup::build_store`).
//! 4. Run the conformance suite against a real server: `crates/cli/tests/it/s3.rs` has
//!    `conformance` (the contract above, every method of the three traits, with
//!    `ConditionalCreate` saying whether conditional creates must be atomic or refused),
//!    `object_store_conformance` (prefixes, a missing bucket, 0.3 reads) and
//!    `assert_created_is_header_timestamp`; the `file`, `s3` (Garage), `abs` (Azurite),
//!    `gcs` and `sftp` (OpenSSH) modules call them
//!    (`cargo test -p sqlite-replicate --test it sftp::`). Then `lease::` and `check::`
//!    if it has named objects, and `v3::` for 0.3 reads. This crate's `file` unit tests
//!    are the reference behaviour.

pub mod abs;
pub mod age;
mod error;
pub mod faulty;
pub mod file;
pub mod gcs;
pub mod layout;
pub mod metered;
pub mod nats;
mod objstore;
pub(crate) mod objstore_error;
pub mod s3;
pub mod sftp;
pub mod webdav;

use std::ops::Range;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use ltx::Level;

pub use layout::{Layout, LtxInfo, LtxKey};

pub use error::{ErrorKind, StorageError};

/// Bytes of one ranged read as they arrive ([`ReplicaStore::get_stream`]).
pub type ByteStream = futures::stream::BoxStream<'static, Result<Bytes, StorageError>>;

/// One object outside the level directories, as [`NamedStore::head_name`] reports it.
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

impl ETag {
    /// A tag made of the content itself (64-bit FNV-1a, 16 hex digits), for backends whose
    /// storage keeps no version tag (file, sftp): it changes whenever the content does.
    pub fn of_content(data: &[u8]) -> ETag {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for &b in data {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        ETag(format!("{h:016x}"))
    }
}

impl std::fmt::Display for ETag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A replica location holding LTX files: the core every backend implements.
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

    /// Closes the descriptors the store keeps open between calls (a file replica's level
    /// directories), for a database going dormant (`runtime::budget`); the next call
    /// opens what it needs again. By default there are none.
    fn close_idle(&self) {}

    /// The files of one level, sorted by (min, max).
    async fn list(&self, level: Level) -> Result<Vec<LtxInfo>, StorageError>;

    /// The levels that may hold files, when one request can tell (object stores: one
    /// listing, with a delimiter, of the directory holding the level directories), so the
    /// start of a replication lists only those: one request instead of ten for a new
    /// replica. `None` (the default): every level must be listed.
    async fn levels_present(&self) -> Result<Option<Vec<Level>>, StorageError> {
        Ok(None)
    }

    /// [`ReplicaStore::list`] with `created` exactly as `put` recorded it, for point-in-time
    /// restores. Backends whose listing already reports it keep this default; S3 reads each
    /// file's `litestream-timestamp` metadata (one HEAD per file, as Litestream does).
    async fn list_exact_times(&self, level: Level) -> Result<Vec<LtxInfo>, StorageError> {
        self.list(level).await
    }

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

    /// [`ReplicaStore::put`] of the first `len_bytes` bytes of a local file: for large LTX
    /// files (a big database's first full image, its snapshots and compactions, issue 27),
    /// read from `file` in pieces at their offsets (its cursor is not used), so memory does
    /// not follow the file's size. Same contract as `put`; a failed call may be repeated
    /// with the same handle.
    ///
    /// By default the file is read whole and handed to `put`, costing its size in memory:
    /// backends that cannot stream keep it (sftp, webdav, nats; the lease wrapper for a
    /// file of its own epoch, a conditional create). `file` streams through a temp file
    /// beside the destination; the object stores upload parts of their part size from the
    /// file, a bounded number in flight; `age` seals into a temp file in `TMPDIR` and
    /// hands that on.
    async fn put_file(
        &self,
        key: &LtxKey,
        file: &std::fs::File,
        len_bytes: u64,
        created: SystemTime,
    ) -> Result<(), StorageError> {
        let data = read_whole(self.location(), key, file, len_bytes).await?;
        self.put(key, data, created).await
    }

    /// Deletes files; missing ones are ignored.
    async fn delete(&self, keys: &[LtxKey]) -> Result<(), StorageError>;

    /// The named objects of this replica (leases, check's scratch object, fenced puts), or
    /// `Permanent` ([`StorageError::unsupported`]) where the backend has none.
    fn named(&self) -> Result<&dyn NamedStore, StorageError> {
        Err(StorageError::unsupported(
            self.location(),
            "named objects",
            "named objects are not supported by this backend",
        ))
    }

    /// The Litestream 0.3 generations of this replica, or `Permanent`
    /// ([`StorageError::unsupported`]) where the backend cannot read them.
    fn v3(&self) -> Result<&dyn V3Store, StorageError> {
        Err(StorageError::unsupported(
            self.location(),
            layout::v3::GENERATIONS_DIR,
            "reading Litestream 0.3 generations is not supported by this backend",
        ))
    }
}

/// Objects outside the level directories, named by a `/`-separated path under the replica
/// root that [`layout::is_aux_name`] accepts (e.g. `lock.json`); see the module docs.
#[async_trait]
pub trait NamedStore: Send + Sync {
    /// Stores `data` at `name` atomically, replacing what is there, with no timestamp
    /// metadata: the storage records its own modification time.
    async fn put_name(&self, name: &str, data: Bytes) -> Result<(), StorageError>;

    /// The whole object at `name`, or the given byte range of it, or `NotFound`.
    async fn get_name(&self, name: &str, range: Option<Range<u64>>) -> Result<Bytes, StorageError>;

    /// Size and modification time of the object at `name`, or `NotFound`.
    async fn head_name(&self, name: &str) -> Result<NamedObject, StorageError>;

    /// Deletes the object at `name`; a missing one is not an error.
    async fn delete_name(&self, name: &str) -> Result<(), StorageError>;

    /// Creates `name` holding `data`, atomically, unless it exists: `Precondition` then,
    /// and the existing object is untouched. Returns the new object's tag.
    async fn create_name(&self, name: &str, data: Bytes) -> Result<ETag, StorageError>;

    /// The whole object at `name` with its tag, or `NotFound`.
    async fn get_name_versioned(&self, name: &str) -> Result<(Bytes, ETag), StorageError>;

    /// Replaces the object at `name` with `data` only if its tag is still `etag`: else
    /// `Precondition` (or `NotFound` where it is gone). Returns the new tag.
    async fn put_name_if_match(
        &self,
        name: &str,
        data: Bytes,
        etag: &ETag,
    ) -> Result<ETag, StorageError>;

    /// [`ReplicaStore::put`], but only if no file has `key`: else `Precondition`, and the
    /// existing file is untouched. Fenced uploads under a lease use it so that no file is
    /// ever replaced by a writer of another epoch.
    async fn put_if_absent(
        &self,
        key: &LtxKey,
        data: Bytes,
        created: SystemTime,
    ) -> Result<(), StorageError>;
}

/// Reading the replicas Litestream 0.3 wrote (`generations/<gen>/{snapshots,wal}/`).
/// Read-only: nothing here writes that layout.
#[async_trait]
pub trait V3Store: Send + Sync {
    /// Every snapshot and WAL segment of every generation under the root, in no particular
    /// order; other names are ignored and an absent `generations/` is an empty listing.
    async fn list_v3(&self) -> Result<Vec<layout::v3::V3File>, StorageError>;

    /// One whole file of a [`V3Store::list_v3`] listing, still LZ4-compressed.
    async fn get_v3(&self, file: &layout::v3::V3File) -> Result<Bytes, StorageError>;

    /// Bytes `range` of one file of a [`V3Store::list_v3`] listing, still compressed:
    /// restores read a file in pieces so memory does not follow its size.
    async fn get_v3_range(
        &self,
        file: &layout::v3::V3File,
        range: Range<u64>,
    ) -> Result<Bytes, StorageError>;
}

/// `Permanent` unless `name` is a name [`layout::is_aux_name`] accepts.
pub(crate) fn check_aux_name(location: &str, name: &str) -> Result<(), StorageError> {
    if layout::is_aux_name(name) {
        return Ok(());
    }
    Err(StorageError::permanent(
        location,
        format!("{name:?}"),
        "not a relative path outside the level directories and generations/",
    ))
}

/// The first `len_bytes` bytes of `file`, read on a blocking thread: the fallback of
/// [`ReplicaStore::put_file`] for backends that need the whole file in memory.
pub(crate) async fn read_whole(
    location: &str,
    key: &LtxKey,
    file: &std::fs::File,
    len_bytes: u64,
) -> Result<Bytes, StorageError> {
    let local_err = |e: std::io::Error| {
        StorageError::permanent(
            location.to_string(),
            key.to_string(),
            "reading the local file",
        )
        .with_source(e)
    };
    let f = file.try_clone().map_err(local_err)?;
    let read = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
        use crate::platform::FileExt;
        let mut v = vec![0u8; len_bytes as usize];
        f.read_exact_at(&mut v, 0)?;
        Ok(v)
    })
    .await
    .map_err(|e| StorageError::permanent(location.to_string(), key.to_string(), e.to_string()))?;
    read.map(Bytes::from).map_err(local_err)
}
