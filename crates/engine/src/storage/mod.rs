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
//! - `put_file` is `put` of a local file's first `len_bytes`, read at offsets in pieces
//!   (memory does not follow the file's size; a failed call may be repeated with the same
//!   handle); a file shorter than that fails, not retryable, and stores nothing.
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
//!    [`ReplicaStore::v3`]. Spell keys only through [`layout`]. Write `put` and
//!    [`ReplicaStore::put_file`] as one path over a body that is bytes or a local file
//!    read in pieces (`PutBody`, `LocalFile`), so large uploads keep `put`'s contract.
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
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
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
    /// only what cannot stream keeps it (the lease wrapper for a file of its own epoch, a
    /// conditional create). Every backend streams: `file` through a temp file beside the
    /// destination; the object stores upload parts of their part size from the file, a
    /// bounded number in flight; `sftp` writes its temp file in requests of the server's
    /// write size, each read from the file as it goes; `webdav` sends its `PUT` body and
    /// `nats` its object's chunks from 1 MiB pieces read as they go (`LocalFile`); `age`
    /// seals into a temp file in `TMPDIR` and hands that on.
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

/// A local read of a file being uploaded failed: not the store's fault, not retryable.
pub(crate) fn local_read_error(location: &str, key: &LtxKey, e: std::io::Error) -> StorageError {
    StorageError::permanent(
        location.to_string(),
        key.to_string(),
        "reading the local file",
    )
    .with_source(e)
}

/// Bytes `at..at + len` of `file`, read on a blocking thread at their offset (the file's
/// cursor is not used, so a failed upload can start again with the same handle; on Unix
/// it is not moved either, while Windows' positional read moves it). Every backend's [`ReplicaStore::put_file`] reads through here.
pub(crate) async fn read_at(
    file: &Arc<std::fs::File>,
    at: u64,
    len: usize,
) -> std::io::Result<Bytes> {
    let f = file.clone();
    tokio::task::spawn_blocking(move || {
        use crate::platform::FileExt;
        let mut b = vec![0u8; len];
        f.read_exact_at(&mut b, at)?;
        Ok(Bytes::from(b))
    })
    .await
    .map_err(std::io::Error::other)?
}

/// The first `len_bytes` bytes of `file`: the fallback of [`ReplicaStore::put_file`] for
/// backends that need the whole file in memory, and the object stores' single PUT.
pub(crate) async fn read_whole(
    location: &str,
    key: &LtxKey,
    file: &std::fs::File,
    len_bytes: u64,
) -> Result<Bytes, StorageError> {
    let f = file
        .try_clone()
        .map_err(|e| local_read_error(location, key, e))?;
    read_at(&Arc::new(f), 0, len_bytes as usize)
        .await
        .map_err(|e| local_read_error(location, key, e))
}

/// Bytes a streamed upload reads from its local file at a time ([`LocalFile::io_pieces`]:
/// webdav, nats): one piece per upload is in memory, plus what the backend has in flight.
pub(crate) const FILE_PIECE_BYTES: usize = 1 << 20;

/// The first `len_bytes` bytes of a local file, to upload in [`FILE_PIECE_BYTES`] pieces
/// read at their offsets as the upload asks for them (nothing is read ahead), for the
/// [`ReplicaStore::put_file`] of backends that send a body as a stream of bytes. Each
/// stream starts from the beginning, so an upload can be tried again.
pub(crate) struct LocalFile {
    file: Arc<std::fs::File>,
    len_bytes: u64,
    location: String,
    key: LtxKey,
    /// The read that ended a [`LocalFile::io_pieces`] stream, for the caller's error.
    failure: Arc<std::sync::Mutex<Option<StorageError>>>,
}

impl LocalFile {
    /// `file`'s first `len_bytes` bytes, to be uploaded as `key` to `location`.
    pub(crate) fn new(
        location: &str,
        key: &LtxKey,
        file: &std::fs::File,
        len_bytes: u64,
    ) -> Result<LocalFile, StorageError> {
        let f = file
            .try_clone()
            .map_err(|e| local_read_error(location, key, e))?;
        Ok(LocalFile {
            file: Arc::new(f),
            len_bytes,
            location: location.to_string(),
            key: *key,
            failure: Default::default(),
        })
    }

    pub(crate) fn len_bytes(&self) -> u64 {
        self.len_bytes
    }

    /// The pieces in order with their offsets, each at most `piece_bytes`; a failed read
    /// ends the stream with `Permanent` ("reading the local file").
    pub(crate) fn pieces(
        &self,
        piece_bytes: usize,
    ) -> BoxStream<'static, Result<(u64, Bytes), StorageError>> {
        let (file, len, location, key) = (
            self.file.clone(),
            self.len_bytes,
            self.location.clone(),
            self.key,
        );
        let piece = piece_bytes.max(1) as u64;
        futures::stream::try_unfold(0u64, move |at| {
            let (file, location) = (file.clone(), location.clone());
            async move {
                if at >= len {
                    return Ok(None);
                }
                let n = piece.min(len - at);
                let b = read_at(&file, at, n as usize)
                    .await
                    .map_err(|e| local_read_error(&location, &key, e))?;
                Ok(Some(((at, b), at + n)))
            }
        })
        .boxed()
    }

    /// [`LocalFile::pieces`] of [`FILE_PIECE_BYTES`] as I/O results, for an HTTP body or
    /// a reader. A failed read is kept for [`LocalFile::local_failure`]: the client
    /// reports it as its own (transport) failure, which would read as retryable.
    pub(crate) fn io_pieces(&self) -> BoxStream<'static, std::io::Result<Bytes>> {
        let failure = self.failure.clone();
        self.pieces(FILE_PIECE_BYTES)
            .map(move |r| match r {
                Ok((_, b)) => Ok(b),
                Err(e) => {
                    let io = std::io::Error::other(e.to_string());
                    *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                    Err(io)
                }
            })
            .boxed()
    }

    /// The local read that failed an upload fed by [`LocalFile::io_pieces`], if one did.
    pub(crate) fn local_failure(&self) -> Option<StorageError> {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }
}

/// What a backend's put writes: bytes in memory (`put`) or a local file read in pieces
/// (`put_file`). One write path for both keeps `put_file`'s contract `put`'s.
#[derive(Clone, Copy)]
pub(crate) enum PutBody<'a> {
    Bytes(&'a Bytes),
    File(&'a LocalFile),
}

impl PutBody<'_> {
    pub(crate) fn len_bytes(&self) -> u64 {
        match self {
            PutBody::Bytes(b) => b.len() as u64,
            PutBody::File(f) => f.len_bytes(),
        }
    }

    /// The error to report for a failed upload of this body: the local read that broke
    /// it where one did (`Permanent`), else `e`, the backend's own.
    pub(crate) fn failed(&self, e: StorageError) -> StorageError {
        match self {
            PutBody::File(f) => f.local_failure().unwrap_or(e),
            PutBody::Bytes(_) => e,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Seek, SeekFrom, Write};

    use futures::TryStreamExt;
    use ltx::{Level, TxId};

    use super::*;

    fn local(data: &[u8], len_bytes: u64) -> (std::fs::File, LocalFile) {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(data).unwrap();
        f.seek(SeekFrom::Start(1)).unwrap();
        let key = LtxKey::new(Level::SNAPSHOT, TxId::ONE, TxId::new(7).unwrap());
        let l = LocalFile::new("test://replica", &key, &f, len_bytes).unwrap();
        (f, l)
    }

    /// Pieces cover exactly the first `len_bytes`, in order, at their offsets, and a
    /// second stream starts again from the beginning; the file's cursor is not moved (Unix).
    #[tokio::test]
    async fn a_local_file_is_read_in_pieces_at_their_offsets() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let (mut f, l) = local(&data, 9_000);
        for _ in 0..2 {
            let pieces: Vec<(u64, Bytes)> = l.pieces(4096).try_collect().await.unwrap();
            let offsets: Vec<u64> = pieces.iter().map(|(at, _)| *at).collect();
            assert_eq!(offsets, [0, 4096, 8192]);
            let joined: Vec<u8> = pieces.iter().flat_map(|(_, b)| b.to_vec()).collect();
            assert_eq!(joined, data[..9_000]);
        }
        let whole: Vec<Bytes> = l.io_pieces().try_collect().await.unwrap();
        assert_eq!(whole.concat(), data[..9_000]);
        assert!(l.local_failure().is_none());
        // Positional reads leave the cursor where it was on Unix (`pread`); Windows'
        // `seek_read` moves it, which nothing here relies on.
        #[cfg(unix)]
        assert_eq!(f.stream_position().unwrap(), 1);
        #[cfg(not(unix))]
        let _ = &mut f;
        let (_, empty) = local(&data, 0);
        assert_eq!(
            empty.pieces(4096).try_collect::<Vec<_>>().await.unwrap(),
            []
        );
    }

    /// A file shorter than it is said to be ends the stream with `Permanent`, naming the
    /// replica and the key; through `io_pieces` that error is kept for the caller, once.
    #[tokio::test]
    async fn a_short_local_file_fails_permanently_and_the_failure_is_kept() {
        let (_f, l) = local(&[7u8; 100], 5000);
        let e = l.pieces(64).try_collect::<Vec<_>>().await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Permanent);
        assert!(
            e.to_string().contains("test://replica") && e.what().contains("0000000000000007"),
            "{e}"
        );
        assert!(l.io_pieces().try_collect::<Vec<_>>().await.is_err());
        let transport = StorageError::transient("test://replica", "x", "connection reset");
        let kept = PutBody::File(&l).failed(transport);
        assert_eq!(kept.kind(), ErrorKind::Permanent, "{kept}");
        let again = PutBody::File(&l).failed(StorageError::transient("r", "x", "reset"));
        assert_eq!(again.kind(), ErrorKind::Transient, "taken once");
    }
}
