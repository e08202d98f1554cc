//! What every backend built on `object_store` (S3, ABS; later GCS) has in common.
//!
//! Owns: [`ObjectStoreReplica`], which implements the [`ReplicaStore`] calls once over any
//! `object_store` client: object paths under the key prefix (spelled by the backend's
//! [`Layout`]), listing a level, HEAD-per-file exact timestamps from the backend's metadata
//! key, ranged gets (whole, or streamed as the body arrives), single and multipart puts,
//! batched deletes, unconditional and create-only writes and named objects (get, HEAD,
//! delete) outside the levels, the
//! conditional writes leases need (create-only LTX puts, `If-None-Match: *` creates and
//! `If-Match: <etag>` replaces of named objects, tags from the server's ETag), reading
//! Litestream 0.3's `generations/` (one recursive listing, whole-object gets; key spelling
//! from `layout::v3`); the timestamp format ([`format_timestamp`],
//! Go's RFC3339Nano as Litestream writes it); and the client settings every backend uses
//! (timeouts, retry budget, prefix and endpoint checks), and [`SharedHttp`]: one HTTP
//! client (connection pool, TLS roots) per distinct client setting for every replica of
//! the process, instead of one per replica.
//!
//! Does not: build clients or read credentials (each backend's `config`), know a
//! service's error codes (each backend's `error` supplies a [`Dialect`] to the shared
//! classification in `objstore_error`), or decide what a backend does beyond the common
//! calls (S3's probe for servers that ignore conditional writes stays in `s3`).

use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, StreamExt, TryStreamExt};
use ltx::Level;
use object_store::path::Path;
use object_store::{
    Attribute, Attributes, BackoffConfig, ClientOptions, GetOptions, GetRange, GetResult,
    ObjectStore, PutMode, PutMultipartOptions, PutOptions, PutPayload, RetryConfig, UpdateVersion,
    WriteMultipart,
};

use super::layout::v3::{self, V3File};
use super::layout::{Layout, LtxInfo, LtxKey};
use super::objstore_error::{classify, Dialect};
use super::{ByteStream, ETag, NamedObject, NamedStore, ReplicaStore, StorageError, V3Store};

/// HEAD requests in flight while reading exact timestamps.
const HEAD_CONCURRENCY: usize = 16;

/// A replica in a bucket or container reached through an `object_store` client.
/// `Debug` is written by hand: it shows where the replica is, never `secrets`, and not the
/// client either (its settings hold the credentials and SSE-C key headers).
pub struct ObjectStoreReplica {
    pub(crate) store: Arc<dyn ObjectStore>,
    /// The bucket or container, for messages.
    pub(crate) container: String,
    /// `None` for an empty prefix.
    pub(crate) prefix: Option<Path>,
    /// Where the replica lives, for logs and errors; never a secret.
    pub(crate) location: String,
    /// Values scrubbed from every error text, should a server echo one back.
    pub(crate) secrets: Vec<String>,
    pub(crate) layout: Layout,
    /// The metadata key holding a file's creation time, as [`format_timestamp`] writes it.
    pub(crate) timestamp_key: &'static str,
    /// The service's error replies.
    pub(crate) dialect: &'static Dialect,
    /// Files larger than this go up in parts of this size.
    pub(crate) part_size_bytes: usize,
    /// Parts of one file in flight at once.
    pub(crate) part_concurrency: usize,
    /// Sent with every write (e.g. a storage class), beside the timestamp on LTX files.
    pub(crate) base_attributes: Attributes,
    /// Check every ranged get's bounds with a HEAD first (Azure answers a range past the
    /// end with 416); otherwise only empty ranges need one (no service has an empty range).
    pub(crate) head_before_range: bool,
}

impl std::fmt::Debug for ObjectStoreReplica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectStoreReplica")
            .field("store", &format_args!("{}", self.store))
            .field("container", &self.container)
            .field("prefix", &self.prefix)
            .field("location", &self.location)
            .field(
                "secrets",
                &format_args!("[{} redacted]", self.secrets.len()),
            )
            .field("layout", &self.layout)
            .field("dialect", &self.dialect.object_noun)
            .field("part_size_bytes", &self.part_size_bytes)
            .field("part_concurrency", &self.part_concurrency)
            .finish_non_exhaustive()
    }
}

impl ObjectStoreReplica {
    /// The object path of `rel` (a path relative to the replica root).
    pub fn path(&self, rel: &str) -> Path {
        match &self.prefix {
            Some(p) => rel.split('/').fold(p.clone(), |acc, part| acc.join(part)),
            None => Path::from_iter(rel.split('/')),
        }
    }

    pub fn key_path(&self, key: &LtxKey) -> Path {
        self.path(&self.layout.key_path(key))
    }

    pub fn err(&self, what: impl Into<String>, e: object_store::Error) -> StorageError {
        classify(
            self.dialect,
            &self.location,
            &self.container,
            what.into(),
            &e,
            &self.secrets,
        )
    }

    /// `Permanent` unless `rel` is a non-empty relative path without `.`/`..` segments.
    pub fn check_relative(&self, rel: &str) -> Result<(), StorageError> {
        if !rel.is_empty()
            && rel
                .split('/')
                .all(|s| !s.is_empty() && s != "." && s != "..")
        {
            return Ok(());
        }
        Err(StorageError::permanent(
            self.location.clone(),
            format!("{rel:?}"),
            format!("not a relative {} path", self.dialect.object_noun),
        ))
    }

    /// Stores `data` at `rel` (relative to the prefix, outside the level directories),
    /// replacing what is there, with no timestamp metadata.
    pub async fn put_object(&self, rel: &str, data: Bytes) -> Result<(), StorageError> {
        self.check_relative(rel)?;
        self.put_at(rel, data, PutMode::Overwrite).await
    }

    /// Creates `rel` unless something is there: `Precondition` then (`If-None-Match: *`).
    /// Only atomic where the server honours that header.
    pub async fn create_object(&self, rel: &str, data: Bytes) -> Result<(), StorageError> {
        self.check_relative(rel)?;
        self.put_at(rel, data, PutMode::Create).await
    }

    async fn put_at(&self, rel: &str, data: Bytes, mode: PutMode) -> Result<(), StorageError> {
        let opts = PutOptions {
            mode,
            attributes: self.base_attributes.clone(),
            ..Default::default()
        };
        self.store
            .put_opts(&self.path(rel), PutPayload::from(data), opts)
            .await
            .map_err(|e| self.err(rel, e))?;
        Ok(())
    }

    async fn created_of(&self, key: &LtxKey) -> Result<Option<SystemTime>, StorageError> {
        let head = GetOptions {
            head: true,
            ..Default::default()
        };
        let r = self
            .store
            .get_opts(&self.key_path(key), head)
            .await
            .map_err(|e| self.err(format!("reading the timestamp of {key}"), e))?;
        Ok(r.attributes
            .get(&Attribute::Metadata(self.timestamp_key.into()))
            .and_then(|v| parse_timestamp(v.as_ref())))
    }

    async fn put_multipart(
        &self,
        path: &Path,
        mut data: Bytes,
        attributes: Attributes,
    ) -> object_store::Result<()> {
        let upload = self
            .store
            .put_multipart_opts(
                path,
                PutMultipartOptions {
                    attributes,
                    ..Default::default()
                },
            )
            .await?;
        let part = self.part_size_bytes;
        let mut w = WriteMultipart::new_with_chunk_size(upload, part);
        while !data.is_empty() {
            if let Err(e) = w.wait_for_capacity(self.part_concurrency).await {
                let _ = w.abort().await;
                return Err(e);
            }
            w.put(data.split_to(part.min(data.len())));
        }
        // `finish` aborts the upload itself when a part or the completion fails; parts
        // left behind anyway are dropped by the service's own lifecycle (Azure: a week).
        w.finish().await?;
        Ok(())
    }

    /// [`ReplicaStore::put_file`]: one PUT when the file fits one part, else a multipart
    /// upload whose parts are read from the file as they go, at most `part_concurrency`
    /// in flight, so memory stays near `part_size * (part_concurrency + 1)`. Parts grow for
    /// a file that would need more than S3's 10,000.
    pub async fn put_file(
        &self,
        key: &LtxKey,
        file: &std::fs::File,
        len_bytes: u64,
        created: SystemTime,
    ) -> Result<(), StorageError> {
        if len_bytes <= self.part_size_bytes as u64 {
            let data = super::read_whole(&self.location, key, file, len_bytes).await?;
            return self.put(key, data, created).await;
        }
        let src = file
            .try_clone()
            .map_err(|e| super::local_read_error(&self.location, key, e))?;
        let path = self.key_path(key);
        let mut attributes = self.base_attributes.clone();
        attributes.insert(
            Attribute::Metadata(self.timestamp_key.into()),
            format_timestamp(created).into(),
        );
        let upload = self
            .store
            .put_multipart_opts(
                &path,
                PutMultipartOptions {
                    attributes,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| self.err(key.to_string(), e))?;
        let part = (self.part_size_bytes as u64).max(len_bytes.div_ceil(MAX_PARTS));
        let mut w = WriteMultipart::new_with_chunk_size(upload, part as usize);
        let src = Arc::new(src);
        let mut at = 0u64;
        while at < len_bytes {
            if let Err(e) = w.wait_for_capacity(self.part_concurrency).await {
                let _ = w.abort().await;
                return Err(self.err(key.to_string(), e));
            }
            let n = part.min(len_bytes - at);
            match super::read_at(&src, at, n as usize).await {
                Ok(b) => w.put(b),
                Err(e) => {
                    let _ = w.abort().await;
                    return Err(super::local_read_error(&self.location, key, e));
                }
            }
            at += n;
        }
        // `finish` aborts the upload itself when a part or the completion fails.
        w.finish().await.map_err(|e| self.err(key.to_string(), e))?;
        Ok(())
    }

    /// [`ReplicaStore::list`]: `created` is each object's LastModified.
    pub async fn list(&self, level: Level) -> Result<Vec<LtxInfo>, StorageError> {
        let dir = self.path(&self.layout.level_dir(level));
        let listing = self
            .store
            .list_with_delimiter(Some(&dir))
            .await
            .map_err(|e| self.list_err(&dir, e))?;
        let mut out: Vec<LtxInfo> = listing
            .objects
            .into_iter()
            .filter_map(|meta| {
                let key = LtxKey::parse_file_name(level, meta.location.filename()?)?;
                Some(LtxInfo {
                    key,
                    size_bytes: meta.size,
                    created: SystemTime::from(meta.last_modified),
                })
            })
            .collect();
        out.sort_by_key(|i| (i.key.min, i.key.max));
        Ok(out)
    }

    /// [`ReplicaStore::levels_present`]: the level directories that exist, from one
    /// listing with a delimiter of the directory holding them (the prefix for
    /// [`Layout::HexLevel`], `ltx/` for [`Layout::LtxDir`]); names that are not a level
    /// as this layout writes it are ignored.
    pub async fn levels_present(&self) -> Result<Vec<Level>, StorageError> {
        let dir = match self.layout {
            Layout::HexLevel => self.prefix.clone().unwrap_or_default(),
            Layout::LtxDir => self.path("ltx"),
        };
        // The root is `None`: an empty prefix would be sent as "/".
        let at = (!dir.as_ref().is_empty()).then_some(&dir);
        let listing = self
            .store
            .list_with_delimiter(at)
            .await
            .map_err(|e| self.list_err(&dir, e))?;
        let mut levels: Vec<Level> = Level::all()
            .filter(|l| {
                let name = self.layout.level_dir(*l);
                let name = name.rsplit('/').next().unwrap_or_default();
                listing
                    .common_prefixes
                    .iter()
                    .any(|p| p.filename() == Some(name))
            })
            .collect();
        levels.sort();
        Ok(levels)
    }

    /// A failed listing of `dir`. A listing finds no object to miss: `NotFound` means the
    /// bucket or container is missing (or the endpoint is not the service).
    fn list_err(&self, dir: &Path, e: object_store::Error) -> StorageError {
        let e = self.err(format!("listing {dir}/"), e);
        if !e.is_not_found() {
            return e;
        }
        let what = format!("{} {:?}", self.dialect.container_noun, self.container);
        StorageError::not_found(e.location(), what)
    }

    /// [`V3Store::list_v3`]: one recursive listing of `generations/` under the prefix
    /// (0.3 wrote the same paths under an S3 prefix as under a file root); `modified` is
    /// each object's LastModified, which 0.3 also compares to pick a generation.
    pub async fn list_v3(&self) -> Result<Vec<V3File>, StorageError> {
        let dir = self.path(v3::GENERATIONS_DIR);
        let mut listing = self.store.list(Some(&dir));
        let mut out = Vec::new();
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(|e| self.list_err(&dir, e))?;
            let rel: Vec<String> = match &self.prefix {
                Some(p) => match meta.location.prefix_match(p) {
                    Some(parts) => parts.map(|p| p.as_ref().to_string()).collect(),
                    None => continue,
                },
                None => meta
                    .location
                    .parts()
                    .map(|p| p.as_ref().to_string())
                    .collect(),
            };
            let Some((generation, kind)) = v3::parse_path(&rel.join("/")) else {
                continue;
            };
            out.push(V3File {
                generation,
                kind,
                size_bytes: meta.size,
                modified: SystemTime::from(meta.last_modified),
            });
        }
        Ok(out)
    }

    /// [`V3Store::get_v3_range`]: one range of the object.
    pub async fn get_v3_range(
        &self,
        file: &V3File,
        range: Range<u64>,
    ) -> Result<Bytes, StorageError> {
        let rel = file.path();
        self.get_path(&self.path(&rel), rel, Some(range)).await
    }

    /// [`V3Store::get_v3`]: the whole object.
    pub async fn get_v3(&self, file: &V3File) -> Result<Bytes, StorageError> {
        let rel = file.path();
        let result = self
            .store
            .get_opts(&self.path(&rel), GetOptions::default())
            .await
            .map_err(|e| self.err(&rel, e))?;
        let size = result.meta.size;
        let data = result.bytes().await.map_err(|e| self.err(&rel, e))?;
        if data.len() as u64 != size {
            return Err(StorageError::transient(
                self.location.clone(),
                rel,
                format!("short read: {} of {size} bytes", data.len()),
            ));
        }
        Ok(data)
    }

    /// [`ReplicaStore::list_exact_times`]: `created` from each file's timestamp metadata,
    /// one HEAD per file (listings carry no user metadata). Files without the metadata
    /// keep LastModified; files deleted between the listing and their HEAD are left out.
    pub async fn list_exact_times(&self, level: Level) -> Result<Vec<LtxInfo>, StorageError> {
        let files = self.list(level).await?;
        let exact: Vec<Option<LtxInfo>> = stream::iter(files)
            .map(|info| async move {
                match self.created_of(&info.key).await {
                    Ok(Some(created)) => Ok(Some(LtxInfo { created, ..info })),
                    Ok(None) => Ok(Some(info)),
                    Err(e) if e.is_not_found() => Ok(None),
                    Err(e) => Err(e),
                }
            })
            .buffered(HEAD_CONCURRENCY)
            .try_collect()
            .await?;
        Ok(exact.into_iter().flatten().collect())
    }

    /// [`ReplicaStore::get`].
    pub async fn get(
        &self,
        key: &LtxKey,
        range: Option<Range<u64>>,
    ) -> Result<Bytes, StorageError> {
        self.get_path(&self.key_path(key), key.to_string(), range)
            .await
    }

    /// [`ReplicaStore::get_stream`]: the response body as it arrives, no buffer of the
    /// range's size. The caller counts the bytes (a connection cut mid-body ends the stream
    /// early or with a `Transient` error).
    pub async fn get_stream(
        &self,
        key: &LtxKey,
        range: Range<u64>,
    ) -> Result<ByteStream, StorageError> {
        let what = key.to_string();
        let Some(result) = self
            .open_path(&self.key_path(key), &what, Some(range))
            .await?
        else {
            return Ok(Box::pin(stream::empty()));
        };
        let (dialect, location, container, secrets) = (
            self.dialect,
            self.location.clone(),
            self.container.clone(),
            self.secrets.clone(),
        );
        Ok(Box::pin(result.into_stream().map_err(move |e| {
            classify(dialect, &location, &container, what.clone(), &e, &secrets)
        })))
    }

    /// The whole object at `path`, or a byte range of it; `what` names it in errors.
    async fn get_path(
        &self,
        path: &Path,
        what: String,
        range: Option<Range<u64>>,
    ) -> Result<Bytes, StorageError> {
        let Some(result) = self.open_path(path, &what, range.clone()).await? else {
            return Ok(Bytes::new());
        };
        let size = result.meta.size;
        let data = result.bytes().await.map_err(|e| self.err(&what, e))?;
        let want = range.as_ref().map_or(size, |r| r.end - r.start);
        if data.len() as u64 != want {
            return Err(StorageError::transient(
                self.location.clone(),
                what,
                format!("short read: {} of {want} bytes", data.len()),
            ));
        }
        Ok(data)
    }

    /// Starts a GET of the object at `path`, or of a byte range of it, with the range
    /// checked against the object's size; `None` for an empty range (no GET is made).
    async fn open_path(
        &self,
        path: &Path,
        what: &str,
        range: Option<Range<u64>>,
    ) -> Result<Option<GetResult>, StorageError> {
        let out_of_range = |r: &Range<u64>, size: u64| {
            StorageError::permanent(
                self.location.clone(),
                what.to_string(),
                format!(
                    "range {}..{} outside {} of {size} bytes",
                    r.start, r.end, self.dialect.object_noun
                ),
            )
        };
        // A HEAD checks the object and the bounds where the GET cannot.
        let headed = match &range {
            Some(r) if self.head_before_range || r.start >= r.end => {
                let head = GetOptions {
                    head: true,
                    ..Default::default()
                };
                let size = self
                    .store
                    .get_opts(path, head)
                    .await
                    .map_err(|e| self.err(what, e))?
                    .meta
                    .size;
                if r.start > r.end || r.end > size {
                    return Err(out_of_range(r, size));
                }
                if r.start == r.end {
                    return Ok(None);
                }
                true
            }
            _ => false,
        };
        let opts = GetOptions {
            range: range.clone().map(GetRange::Bounded),
            ..Default::default()
        };
        let result = self
            .store
            .get_opts(path, opts)
            .await
            .map_err(|e| self.err(what, e))?;
        if let Some(r) = range.as_ref().filter(|_| !headed) {
            if r.end > result.meta.size {
                return Err(out_of_range(r, result.meta.size));
            }
        }
        Ok(Some(result))
    }

    /// [`ReplicaStore::put`]: one PUT, or parts above the part size; `created` goes into
    /// the timestamp metadata.
    pub async fn put(
        &self,
        key: &LtxKey,
        data: Bytes,
        created: SystemTime,
    ) -> Result<(), StorageError> {
        let path = self.key_path(key);
        let mut attributes = self.base_attributes.clone();
        attributes.insert(
            Attribute::Metadata(self.timestamp_key.into()),
            format_timestamp(created).into(),
        );
        let r = if data.len() <= self.part_size_bytes {
            let opts = PutOptions {
                mode: PutMode::Overwrite,
                attributes,
                ..Default::default()
            };
            self.store
                .put_opts(&path, PutPayload::from(data), opts)
                .await
                .map(|_| ())
        } else {
            self.put_multipart(&path, data, attributes).await
        };
        r.map_err(|e| self.err(key.to_string(), e))
    }

    /// [`NamedStore::put_if_absent`]: one PUT with `If-None-Match: *`, whatever the size
    /// (a conditional multipart upload is not portable), `created` in the metadata.
    pub async fn put_ltx_if_absent(
        &self,
        key: &LtxKey,
        data: Bytes,
        created: SystemTime,
    ) -> Result<(), StorageError> {
        let mut attributes = self.base_attributes.clone();
        attributes.insert(
            Attribute::Metadata(self.timestamp_key.into()),
            format_timestamp(created).into(),
        );
        let opts = PutOptions {
            mode: PutMode::Create,
            attributes,
            ..Default::default()
        };
        self.store
            .put_opts(&self.key_path(key), PutPayload::from(data), opts)
            .await
            .map(|_| ())
            .map_err(|e| self.err(key.to_string(), e))
    }

    fn tag_of(&self, name: &str, e_tag: Option<String>) -> Result<ETag, StorageError> {
        e_tag.map(ETag).ok_or_else(|| {
            StorageError::permanent(
                self.location.clone(),
                name.to_string(),
                "the server returned no ETag, so compare-and-swap is impossible",
            )
        })
    }

    /// [`NamedStore::create_name`]: `If-None-Match: *`.
    pub async fn create_name(&self, name: &str, data: Bytes) -> Result<ETag, StorageError> {
        super::check_aux_name(&self.location, name)?;
        let opts = PutOptions {
            mode: PutMode::Create,
            attributes: self.base_attributes.clone(),
            ..Default::default()
        };
        let r = self
            .store
            .put_opts(&self.path(name), PutPayload::from(data), opts)
            .await
            .map_err(|e| self.err(name, e))?;
        self.tag_of(name, r.e_tag)
    }

    /// [`NamedStore::get_name_versioned`].
    pub async fn get_name_versioned(&self, name: &str) -> Result<(Bytes, ETag), StorageError> {
        super::check_aux_name(&self.location, name)?;
        let result = self
            .store
            .get_opts(&self.path(name), GetOptions::default())
            .await
            .map_err(|e| self.err(name, e))?;
        let tag = self.tag_of(name, result.meta.e_tag.clone())?;
        let data = result.bytes().await.map_err(|e| self.err(name, e))?;
        Ok((data, tag))
    }

    /// [`NamedStore::put_name_if_match`]: `If-Match: <etag>`.
    pub async fn put_name_if_match(
        &self,
        name: &str,
        data: Bytes,
        etag: &ETag,
    ) -> Result<ETag, StorageError> {
        super::check_aux_name(&self.location, name)?;
        let opts = PutOptions {
            mode: PutMode::Update(UpdateVersion {
                e_tag: Some(etag.0.clone()),
                version: None,
            }),
            attributes: self.base_attributes.clone(),
            ..Default::default()
        };
        let r = self
            .store
            .put_opts(&self.path(name), PutPayload::from(data), opts)
            .await
            .map_err(|e| self.err(name, e))?;
        self.tag_of(name, r.e_tag)
    }

    /// [`NamedStore::put_name`].
    pub async fn put_name(&self, name: &str, data: Bytes) -> Result<(), StorageError> {
        super::check_aux_name(&self.location, name)?;
        self.put_at(name, data, PutMode::Overwrite).await
    }

    /// [`NamedStore::get_name`].
    pub async fn get_name(
        &self,
        name: &str,
        range: Option<Range<u64>>,
    ) -> Result<Bytes, StorageError> {
        super::check_aux_name(&self.location, name)?;
        self.get_path(&self.path(name), name.to_string(), range)
            .await
    }

    /// [`NamedStore::head_name`]: the object's Last-Modified, as the server set it.
    pub async fn head_name(&self, name: &str) -> Result<NamedObject, StorageError> {
        super::check_aux_name(&self.location, name)?;
        let head = GetOptions {
            head: true,
            ..Default::default()
        };
        let meta = self
            .store
            .get_opts(&self.path(name), head)
            .await
            .map_err(|e| self.err(name, e))?
            .meta;
        Ok(NamedObject {
            size_bytes: meta.size,
            modified: SystemTime::from(meta.last_modified),
        })
    }

    /// [`NamedStore::delete_name`]: a missing object is not an error.
    pub async fn delete_name(&self, name: &str) -> Result<(), StorageError> {
        super::check_aux_name(&self.location, name)?;
        match object_store::ObjectStoreExt::delete(self.store.as_ref(), &self.path(name)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err(format!("deleting {name}"), e)),
        }
    }

    /// [`ReplicaStore::delete`]: the client batches the deletes (S3 DeleteObjects of up to
    /// 1000 keys, Azure Blob Batch of up to 256); missing files are ignored.
    pub async fn delete(&self, keys: &[LtxKey]) -> Result<(), StorageError> {
        if keys.is_empty() {
            return Ok(());
        }
        let paths: Vec<object_store::Result<Path>> =
            keys.iter().map(|k| Ok(self.key_path(k))).collect();
        let mut results = self.store.delete_stream(stream::iter(paths).boxed());
        while let Some(r) = results.next().await {
            match r {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => {
                    let what = if keys.len() == 1 {
                        format!("deleting {}", keys[0])
                    } else {
                        format!("deleting {} files", keys.len())
                    };
                    return Err(self.err(what, e));
                }
            }
        }
        Ok(())
    }
}

/// Client options every object-store backend starts from: plain HTTP only where the
/// endpoint says so, and timeouts.
/// Hands every replica whose client settings are the same (and that is built on the same
/// runtime: pooled connections belong to it) one shared HTTP client. A thousand databases
/// on one bucket then cost one connection pool and one TLS root store, not a thousand.
/// Credentials and signing stay per replica; they live above the HTTP client.
#[derive(Debug)]
pub(crate) struct SharedHttp {
    key: String,
    /// Extra trusted roots, added when the shared client is built.
    roots: Option<Arc<Vec<object_store::Certificate>>>,
}

use object_store::client::HttpClient;

type ClientCache = std::sync::Mutex<std::collections::HashMap<String, HttpClient>>;

fn shared_clients() -> &'static ClientCache {
    static CLIENTS: std::sync::OnceLock<ClientCache> = std::sync::OnceLock::new();
    CLIENTS.get_or_init(Default::default)
}

impl SharedHttp {
    /// `settings` must spell every client option the caller sets (`client_options`'
    /// argument, certificate choices, where `roots` came from), so different settings
    /// never share a client.
    pub(crate) fn new(
        settings: String,
        roots: Option<Arc<Vec<object_store::Certificate>>>,
    ) -> SharedHttp {
        SharedHttp {
            key: settings,
            roots,
        }
    }

    fn build(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        use object_store::client::{HttpConnector, ReqwestConnector};
        let mut options = options.clone();
        for c in self.roots.iter().flat_map(|r| r.iter()) {
            options = options.with_root_certificate(c.clone());
        }
        ReqwestConnector::default().connect(&options)
    }
}

impl object_store::client::HttpConnector for SharedHttp {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        // Outside a runtime there is nothing to share safely: a client of its own.
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return self.build(options);
        };
        let key = format!("{}|{}", rt.id(), self.key);
        let mut clients = shared_clients().lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = clients.get(&key) {
            return Ok(c.clone());
        }
        let c = self.build(options)?;
        clients.insert(key, c.clone());
        Ok(c)
    }
}

/// Idle connections kept per host by the shared HTTP client.
const POOL_IDLE_PER_HOST: usize = 32;

pub(crate) fn client_options(allow_http: bool) -> ClientOptions {
    ClientOptions::new()
        .with_allow_http(allow_http)
        .with_connect_timeout(Duration::from_secs(5))
        // Per request: a whole part on a slow link must fit.
        .with_timeout(Duration::from_secs(120))
        // The client is shared by every replica (`SharedHttp`): a burst of uploads from
        // many databases opens many connections; keep a few idle ones, not all of them.
        .with_pool_max_idle_per_host(POOL_IDLE_PER_HOST)
}

/// A few quick attempts so a dead endpoint fails in seconds; the uploader retries with its
/// own backoff, and restore reports the error.
pub(crate) fn retry_config() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            base: 2.0,
        },
        max_retries: 3,
        retry_timeout: Duration::from_secs(10),
    }
}

/// A configured prefix as an object path: `None` when empty (`prefix` is already trimmed
/// of `/`), else the parsed path or the reason it is not one.
pub(crate) fn parse_prefix(prefix: &str) -> Result<Option<Path>, String> {
    match prefix {
        "" => Ok(None),
        p => Path::parse(p)
            .map(Some)
            .map_err(|e| format!("invalid path {p:?}: {e}")),
    }
}

/// The warning for an endpoint that sends `sent` (e.g. "the SSE-C key") over plain
/// `http://` to another machine, or `None`: HTTPS, no endpoint, nothing secret sent, or a
/// loopback host (127.0.0.0/8, ::1, `localhost`), where nothing crosses a network.
pub(crate) fn plain_http_warning(endpoint: Option<&str>, sent: &[&str]) -> Option<String> {
    let rest = endpoint?.strip_prefix("http://")?;
    if sent.is_empty() || is_loopback_authority(rest) {
        return None;
    }
    Some(format!(
        "the endpoint is plain http:// to another machine: {} travel unencrypted, readable and replayable on the network; use https://",
        sent.join(" and ")
    ))
}

/// Whether the host of `authority[/path]` (`host[:port]`, `[v6][:port]`, maybe with user
/// info) is this machine.
fn is_loopback_authority(rest: &str) -> bool {
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match host_port.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host_port.split(':').next().unwrap_or_default(),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.to_canonical().is_loopback())
}

/// The warning for `skip-verify`: logged on every start, naming the replica (the caller
/// adds it), never a secret.
pub(crate) const SKIP_VERIFY_WARNING: &str = "skip-verify is set: TLS certificates are not checked, so anyone on the network path can pose as the endpoint and read or change the backups; trust the endpoint's CA instead (a PEM bundle in AWS_CA_BUNDLE or SSL_CERT_FILE, or the system trust store) and remove skip-verify";

/// A configured endpoint without trailing `/`, `None` when absent or empty.
pub(crate) fn trim_endpoint(endpoint: Option<&str>) -> Option<String> {
    endpoint
        .map(|e| e.trim_end_matches('/').to_string())
        .filter(|e| !e.is_empty())
}

/// Go's RFC3339Nano in UTC, as Litestream writes it: fraction trimmed of trailing zeros,
/// omitted when zero (`2026-01-02T03:04:05.123Z`, `2026-01-02T03:04:05Z`).
pub fn format_timestamp(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    let base = match jiff::Timestamp::from_second(secs) {
        Ok(ts) => ts.strftime("%Y-%m-%dT%H:%M:%S").to_string(),
        Err(_) => "9999-12-31T23:59:59".to_string(),
    };
    match d.subsec_nanos() {
        0 => format!("{base}Z"),
        n => format!("{base}.{}Z", format!("{n:09}").trim_end_matches('0')),
    }
}

/// Reads a timestamp metadata value (any RFC 3339 form).
pub fn parse_timestamp(s: &str) -> Option<SystemTime> {
    s.trim()
        .parse::<jiff::Timestamp>()
        .ok()
        .map(SystemTime::from)
}

/// A backend built on [`ObjectStoreReplica`]: it gets [`ReplicaStore`], [`NamedStore`] and
/// [`V3Store`] from it, and may refuse conditional writes its server does not honour.
#[async_trait]
pub trait ObjectStoreBackend: Send + Sync + 'static {
    fn replica(&self) -> &ObjectStoreReplica;

    /// `Ok` when the server honours conditional writes (`If-None-Match`, `If-Match`);
    /// else `Permanent`, naming `what`. By default trusts the server.
    async fn check_conditional(&self, what: &str) -> Result<(), StorageError> {
        let _ = what;
        Ok(())
    }
}

/// Most parts of one multipart upload (S3's limit; Azure allows 50,000, GCS's XML API
/// 10,000): [`ObjectStoreReplica::put_file`] grows its parts beyond it.
const MAX_PARTS: u64 = 10_000;

/// LTX calls (list, get, put, delete) in flight at once across every object-store replica
/// of the process. Each holds a connection and its buffers (tens of KiB); without a bound,
/// thousands of databases starting together (each listing its replica, then uploading its
/// first file) open thousands of connections at once, and the process keeps the peak.
/// Lease and other named-object calls do not wait for it.
const LTX_CALLS_IN_FLIGHT: usize = 64;

static LTX_CALLS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(LTX_CALLS_IN_FLIGHT);

async fn ltx_call_permit() -> tokio::sync::SemaphorePermit<'static> {
    LTX_CALLS
        .acquire()
        .await
        .expect("the semaphore is never closed")
}

#[async_trait]
impl<T: ObjectStoreBackend> ReplicaStore for T {
    fn location(&self) -> &str {
        &self.replica().location
    }

    async fn list(&self, level: Level) -> Result<Vec<LtxInfo>, StorageError> {
        let _permit = ltx_call_permit().await;
        self.replica().list(level).await
    }

    async fn levels_present(&self) -> Result<Option<Vec<Level>>, StorageError> {
        let _permit = ltx_call_permit().await;
        self.replica().levels_present().await.map(Some)
    }

    async fn get(&self, key: &LtxKey, range: Option<Range<u64>>) -> Result<Bytes, StorageError> {
        let _permit = ltx_call_permit().await;
        self.replica().get(key, range).await
    }

    async fn get_stream(
        &self,
        key: &LtxKey,
        range: Range<u64>,
    ) -> Result<ByteStream, StorageError> {
        self.replica().get_stream(key, range).await
    }

    async fn put(
        &self,
        key: &LtxKey,
        data: Bytes,
        created: SystemTime,
    ) -> Result<(), StorageError> {
        let _permit = ltx_call_permit().await;
        self.replica().put(key, data, created).await
    }

    async fn put_file(
        &self,
        key: &LtxKey,
        file: &std::fs::File,
        len_bytes: u64,
        created: SystemTime,
    ) -> Result<(), StorageError> {
        let _permit = ltx_call_permit().await;
        self.replica().put_file(key, file, len_bytes, created).await
    }

    async fn delete(&self, keys: &[LtxKey]) -> Result<(), StorageError> {
        let _permit = ltx_call_permit().await;
        self.replica().delete(keys).await
    }

    async fn list_exact_times(&self, level: Level) -> Result<Vec<LtxInfo>, StorageError> {
        let _permit = ltx_call_permit().await;
        self.replica().list_exact_times(level).await
    }

    fn named(&self) -> Result<&dyn NamedStore, StorageError> {
        Ok(self)
    }

    fn v3(&self) -> Result<&dyn V3Store, StorageError> {
        Ok(self)
    }
}

/// Named objects; the conditional calls ask the backend first whether its server honours
/// conditional writes.
#[async_trait]
impl<T: ObjectStoreBackend> NamedStore for T {
    async fn put_name(&self, name: &str, data: Bytes) -> Result<(), StorageError> {
        self.replica().put_name(name, data).await
    }

    async fn put_if_absent(
        &self,
        key: &LtxKey,
        data: Bytes,
        created: SystemTime,
    ) -> Result<(), StorageError> {
        self.check_conditional(&key.to_string()).await?;
        let _permit = ltx_call_permit().await;
        self.replica().put_ltx_if_absent(key, data, created).await
    }

    async fn create_name(&self, name: &str, data: Bytes) -> Result<ETag, StorageError> {
        self.check_conditional(name).await?;
        self.replica().create_name(name, data).await
    }

    async fn get_name_versioned(&self, name: &str) -> Result<(Bytes, ETag), StorageError> {
        self.check_conditional(name).await?;
        self.replica().get_name_versioned(name).await
    }

    async fn put_name_if_match(
        &self,
        name: &str,
        data: Bytes,
        etag: &ETag,
    ) -> Result<ETag, StorageError> {
        self.check_conditional(name).await?;
        self.replica().put_name_if_match(name, data, etag).await
    }

    async fn get_name(&self, name: &str, range: Option<Range<u64>>) -> Result<Bytes, StorageError> {
        self.replica().get_name(name, range).await
    }

    async fn head_name(&self, name: &str) -> Result<NamedObject, StorageError> {
        self.replica().head_name(name).await
    }

    async fn delete_name(&self, name: &str) -> Result<(), StorageError> {
        self.replica().delete_name(name).await
    }
}

#[async_trait]
impl<T: ObjectStoreBackend> V3Store for T {
    async fn list_v3(&self) -> Result<Vec<V3File>, StorageError> {
        self.replica().list_v3().await
    }

    async fn get_v3(&self, file: &V3File) -> Result<Bytes, StorageError> {
        self.replica().get_v3(file).await
    }

    async fn get_v3_range(&self, file: &V3File, range: Range<u64>) -> Result<Bytes, StorageError> {
        self.replica().get_v3_range(file, range).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_warnings_spare_https_and_loopback() {
        let creds: &[&str] = &["request signatures"];
        let cases: &[(Option<&str>, &[&str], bool)] = &[
            (Some("http://s3.example.com:9000"), creds, true),
            (Some("http://10.0.0.5"), creds, true),
            (Some("http://[2001:db8::1]:9000/x"), creds, true),
            (Some("http://u:p@example.com/"), creds, true),
            // Not a loopback name, though it starts like one.
            (Some("http://localhost.example.com"), creds, true),
            (Some("http://127.0.0.1:3900"), creds, false),
            (Some("http://127.8.9.10"), creds, false),
            (Some("http://[::1]:9000"), creds, false),
            (Some("http://LOCALHOST:9000/p"), creds, false),
            (Some("http://[::ffff:127.0.0.1]:1"), creds, false),
            (Some("https://s3.example.com"), creds, false),
            (None, creds, false),
            (Some("http://s3.example.com"), &[], false),
        ];
        for (endpoint, sent, warn) in cases {
            let w = plain_http_warning(*endpoint, sent);
            assert_eq!(w.is_some(), *warn, "{endpoint:?} {w:?}");
        }
        let w = plain_http_warning(Some("http://h"), &["the SSE-C key", "x"]).unwrap();
        assert!(w.contains("the SSE-C key and x travel unencrypted"), "{w}");
    }
}
