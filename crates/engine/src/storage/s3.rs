//! The S3 backend: a replica in an S3-compatible bucket (AWS S3, Garage, MinIO, R2, ...).
//!
//! Owns: mapping [`ReplicaStore`] calls onto `<prefix>/<level %04x>/<min>-<max>.ltx` objects
//! (Litestream's S3 layout, spelled only by [`Layout::HexLevel`]); the `litestream-timestamp`
//! object metadata that carries each file's creation time; multipart uploads of large files;
//! conditional creates. `config` turns [`S3Options`] into a client; `error` is the edge
//! where `object_store` failures become [`StorageError`] variants, so callers decide
//! retries from the variant alone.
//!
//! Does not: retry for long (the client retries a few times within seconds; the uploader
//! owns backoff), discover a bucket's region (give `region`; AWS answers a wrong one with
//! an error naming the right one, which we pass on), or send `Content-MD5` (the client signs
//! the payload's SHA-256 instead).
//!
//! Fed by replicate/restore through `dyn ReplicaStore`; feeds Apache Arrow's `object_store`
//! S3 client, which signs requests (SigV4) from explicit keys, `AWS_*`/`LITESTREAM_*`
//! variables, web identity, container or instance credentials.

mod config;
mod error;

use std::ops::Range;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, StreamExt, TryStreamExt};
use ltx::Level;
use object_store::path::Path;
use object_store::{
    Attribute, Attributes, GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutMode,
    PutMultipartOptions, PutOptions, PutPayload, WriteMultipart,
};

use super::layout::{Layout, LtxInfo, LtxKey};
use super::{ReplicaStore, StorageError};
use config::Client;
pub use config::{
    sse_customer_key_base64, S3Options, DEFAULT_CONCURRENCY, DEFAULT_PART_SIZE_BYTES,
};

/// The object metadata key holding a file's creation time (Litestream's name), as
/// RFC 3339 with up to nanoseconds, UTC.
pub const TIMESTAMP_METADATA: &str = "litestream-timestamp";

/// HEAD requests in flight while reading exact timestamps.
const HEAD_CONCURRENCY: usize = 16;

/// A replica in an S3 bucket.
#[derive(Debug)]
pub struct S3Store {
    client: Client,
    /// Whether the server honours conditional PUTs; probed on first use.
    conditional_put: tokio::sync::OnceCell<bool>,
}

impl S3Store {
    /// Builds the client; no request is made. Errors are `Permanent` and name the replica.
    pub fn new(opts: S3Options) -> Result<S3Store, StorageError> {
        S3Store::with_env(opts, &|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    fn with_env(
        opts: S3Options,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<S3Store, StorageError> {
        Ok(S3Store {
            client: config::build(opts, env)?,
            conditional_put: tokio::sync::OnceCell::new(),
        })
    }

    /// The object path of `rel` (a path relative to the replica root).
    fn path(&self, rel: &str) -> Path {
        match &self.client.prefix {
            Some(p) => rel.split('/').fold(p.clone(), |acc, part| acc.join(part)),
            None => Path::from_iter(rel.split('/')),
        }
    }

    fn key_path(&self, key: &LtxKey) -> Path {
        self.path(&Layout::HexLevel.key_path(key))
    }

    fn attributes(&self, created: Option<SystemTime>) -> Attributes {
        let mut a = Attributes::new();
        if let Some(t) = created {
            a.insert(
                Attribute::Metadata(TIMESTAMP_METADATA.into()),
                format_timestamp(t).into(),
            );
        }
        if let Some(c) = &self.client.storage_class {
            a.insert(Attribute::StorageClass, c.clone().into());
        }
        a
    }

    fn err(&self, what: impl Into<String>, e: object_store::Error) -> StorageError {
        error::classify(
            &self.client.location,
            &self.client.bucket,
            what.into(),
            &e,
            &self.client.secrets,
        )
    }

    /// [`ReplicaStore::list`] with `created` from each file's `litestream-timestamp`
    /// metadata, one HEAD per file, where `list` reports the object's LastModified (S3
    /// listings carry no user metadata). Files without the metadata keep LastModified;
    /// files deleted between the LIST and their HEAD are left out.
    pub async fn list_with_timestamps(&self, level: Level) -> Result<Vec<LtxInfo>, StorageError> {
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

    async fn created_of(&self, key: &LtxKey) -> Result<Option<SystemTime>, StorageError> {
        let head = GetOptions {
            head: true,
            ..Default::default()
        };
        let r = self
            .client
            .store
            .get_opts(&self.key_path(key), head)
            .await
            .map_err(|e| self.err(format!("reading the timestamp of {key}"), e))?;
        Ok(r.attributes
            .get(&Attribute::Metadata(TIMESTAMP_METADATA.into()))
            .and_then(|v| parse_timestamp(v.as_ref())))
    }

    /// Stores `data` at `key_path` (relative to the prefix, outside the level directories:
    /// markers, lease files), replacing what is there, with no timestamp metadata.
    pub async fn put_object(&self, key_path: &str, data: Bytes) -> Result<(), StorageError> {
        self.check_relative(key_path)?;
        let opts = PutOptions {
            attributes: self.attributes(None),
            ..Default::default()
        };
        self.client
            .store
            .put_opts(&self.path(key_path), PutPayload::from(data), opts)
            .await
            .map_err(|e| self.err(key_path, e))?;
        Ok(())
    }

    fn check_relative(&self, key_path: &str) -> Result<(), StorageError> {
        if !key_path.is_empty()
            && key_path
                .split('/')
                .all(|s| !s.is_empty() && s != "." && s != "..")
        {
            return Ok(());
        }
        Err(StorageError::Permanent {
            location: self.client.location.clone(),
            what: format!("{key_path:?}"),
            detail: "not a relative object path".into(),
        })
    }

    /// Creates `key_path` (relative to the prefix) unless an object is there already:
    /// `Precondition` then, and the existing object is untouched (`If-None-Match: *`).
    ///
    /// Servers that ignore `If-None-Match` on PUT (Garage 2.x) would silently overwrite, so
    /// the first call probes for support and, without it, every call fails `Permanent`.
    pub async fn put_if_absent(&self, key_path: &str, data: Bytes) -> Result<(), StorageError> {
        self.check_relative(key_path)?;
        if !self.supports_conditional_put().await? {
            return Err(StorageError::Permanent {
                location: self.client.location.clone(),
                what: key_path.to_string(),
                detail: "this S3 server ignores conditional writes (If-None-Match on PUT), so an atomic \
                         create-if-absent is impossible here (AWS S3, MinIO, R2 and Tigris support it)"
                    .into(),
            });
        }
        let opts = PutOptions {
            mode: PutMode::Create,
            attributes: self.attributes(None),
            ..Default::default()
        };
        self.client
            .store
            .put_opts(&self.path(key_path), PutPayload::from(data), opts)
            .await
            .map_err(|e| self.err(key_path, e))?;
        Ok(())
    }

    /// Whether the server honours `If-None-Match: *` on PUT: creates a probe object twice
    /// and expects the second create to fail. Asked once per store.
    async fn supports_conditional_put(&self) -> Result<bool, StorageError> {
        let probe = || async {
            let name = format!(".sqlite-replicate-probe-{:016x}", rand::random::<u64>());
            let path = self.path(&name);
            let create = || PutOptions {
                mode: PutMode::Create,
                ..Default::default()
            };
            let what = "probing for conditional writes";
            self.client
                .store
                .put_opts(&path, PutPayload::from_static(b"1"), create())
                .await
                .map_err(|e| self.err(what, e))?;
            let second = self
                .client
                .store
                .put_opts(&path, PutPayload::from_static(b"2"), create())
                .await;
            let _ = self.client.store.delete(&path).await;
            match second {
                Ok(_) => Ok(false),
                Err(
                    object_store::Error::Precondition { .. }
                    | object_store::Error::AlreadyExists { .. },
                ) => Ok(true),
                Err(e) => Err(self.err(what, e)),
            }
        };
        self.conditional_put.get_or_try_init(probe).await.copied()
    }

    async fn put_multipart(
        &self,
        path: &Path,
        mut data: Bytes,
        attributes: Attributes,
    ) -> object_store::Result<()> {
        let upload = self
            .client
            .store
            .put_multipart_opts(
                path,
                PutMultipartOptions {
                    attributes,
                    ..Default::default()
                },
            )
            .await?;
        let part = self.client.part_size_bytes as usize;
        let mut w = WriteMultipart::new_with_chunk_size(upload, part);
        while !data.is_empty() {
            if let Err(e) = w.wait_for_capacity(self.client.concurrency).await {
                let _ = w.abort().await;
                return Err(e);
            }
            w.put(data.split_to(part.min(data.len())));
        }
        // `finish` aborts the upload itself when a part or the completion fails.
        w.finish().await?;
        Ok(())
    }
}

#[async_trait]
impl ReplicaStore for S3Store {
    fn location(&self) -> &str {
        &self.client.location
    }

    async fn list(&self, level: Level) -> Result<Vec<LtxInfo>, StorageError> {
        let dir = self.path(&Layout::HexLevel.level_dir(level));
        let listing = self
            .client
            .store
            .list_with_delimiter(Some(&dir))
            .await
            .map_err(|e| match self.err(format!("listing {dir}/"), e) {
                // A LIST finds no object to miss: the bucket is (or the endpoint is not S3).
                StorageError::NotFound { location, .. } => StorageError::NotFound {
                    location,
                    what: format!("bucket {:?}", self.client.bucket),
                },
                other => other,
            })?;
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

    async fn list_exact_times(&self, level: Level) -> Result<Vec<LtxInfo>, StorageError> {
        self.list_with_timestamps(level).await
    }

    async fn get(&self, key: &LtxKey, range: Option<Range<u64>>) -> Result<Bytes, StorageError> {
        let path = self.key_path(key);
        let what = key.to_string();
        let out_of_range = |r: &Range<u64>, size: u64| StorageError::Permanent {
            location: self.client.location.clone(),
            what: what.clone(),
            detail: format!(
                "range {}..{} outside object of {size} bytes",
                r.start, r.end
            ),
        };
        let opts = match &range {
            None => GetOptions::default(),
            // S3 has no empty range; a HEAD checks the object and the bounds.
            Some(r) if r.start >= r.end => {
                let head = self
                    .client
                    .store
                    .get_opts(
                        &path,
                        GetOptions {
                            head: true,
                            ..Default::default()
                        },
                    )
                    .await;
                let size = head.map_err(|e| self.err(&what, e))?.meta.size;
                if r.start > r.end || r.end > size {
                    return Err(out_of_range(r, size));
                }
                return Ok(Bytes::new());
            }
            Some(r) => GetOptions {
                range: Some(GetRange::Bounded(r.clone())),
                ..Default::default()
            },
        };
        let result = self
            .client
            .store
            .get_opts(&path, opts)
            .await
            .map_err(|e| self.err(&what, e))?;
        let size = result.meta.size;
        if let Some(r) = &range {
            if r.end > size {
                return Err(out_of_range(r, size));
            }
        }
        let data = result.bytes().await.map_err(|e| self.err(&what, e))?;
        let want = range.as_ref().map_or(size, |r| r.end - r.start);
        if data.len() as u64 != want {
            return Err(StorageError::Transient {
                location: self.client.location.clone(),
                what,
                detail: format!("short read: {} of {want} bytes", data.len()),
            });
        }
        Ok(data)
    }

    async fn put(
        &self,
        key: &LtxKey,
        data: Bytes,
        created: SystemTime,
    ) -> Result<(), StorageError> {
        let path = self.key_path(key);
        let attributes = self.attributes(Some(created));
        let r = if data.len() as u64 <= self.client.part_size_bytes {
            let opts = PutOptions {
                mode: PutMode::Overwrite,
                attributes,
                ..Default::default()
            };
            self.client
                .store
                .put_opts(&path, PutPayload::from(data), opts)
                .await
                .map(|_| ())
        } else {
            self.put_multipart(&path, data, attributes).await
        };
        r.map_err(|e| self.err(key.to_string(), e))
    }

    async fn delete(&self, keys: &[LtxKey]) -> Result<(), StorageError> {
        if keys.is_empty() {
            return Ok(());
        }
        let paths: Vec<object_store::Result<Path>> =
            keys.iter().map(|k| Ok(self.key_path(k))).collect();
        // The client batches these into DeleteObjects requests of up to 1000 keys.
        let mut results = self.client.store.delete_stream(stream::iter(paths).boxed());
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

    async fn put_if_not_exists(&self, name: &str, data: Bytes) -> Result<(), StorageError> {
        self.put_if_absent(name, data).await
    }
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

/// Reads a `litestream-timestamp` value (any RFC 3339 form).
pub fn parse_timestamp(s: &str) -> Option<SystemTime> {
    s.trim()
        .parse::<jiff::Timestamp>()
        .ok()
        .map(SystemTime::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_match_go_rfc3339nano() {
        let cases: &[(u64, u32, &str)] = &[
            (1_700_000_000, 123_000_000, "2023-11-14T22:13:20.123Z"),
            (1_700_000_000, 0, "2023-11-14T22:13:20Z"),
            (1_700_000_000, 1, "2023-11-14T22:13:20.000000001Z"),
            (0, 120_000, "1970-01-01T00:00:00.00012Z"),
        ];
        for &(s, n, want) in cases {
            let t = UNIX_EPOCH + Duration::new(s, n);
            assert_eq!(format_timestamp(t), want);
            assert_eq!(parse_timestamp(want), Some(t), "{want}");
        }
        assert_eq!(
            parse_timestamp("2023-11-14T23:13:20.123+01:00"),
            Some(UNIX_EPOCH + Duration::new(1_700_000_000, 123_000_000))
        );
        assert_eq!(parse_timestamp("yesterday"), None);
    }

    #[test]
    fn keys_are_spelled_by_the_layout_under_the_prefix() {
        let opts = S3Options {
            bucket: "b".into(),
            prefix: "/db/x/".into(),
            endpoint: Some("http://127.0.0.1:3900".into()),
            access_key_id: Some("GK1".into()),
            secret_access_key: Some("hunter2".into()),
            force_path_style: true,
            ..Default::default()
        };
        let k = LtxKey::new(
            Level::SNAPSHOT,
            ltx::TxId::new(1).unwrap(),
            ltx::TxId::new(6).unwrap(),
        );
        let s = S3Store::with_env(opts.clone(), &|_| None).unwrap();
        assert_eq!(
            s.key_path(&k).as_ref(),
            "db/x/0009/0000000000000001-0000000000000006.ltx"
        );
        assert_eq!(s.path("lock.json").as_ref(), "db/x/lock.json");
        let s = S3Store::with_env(
            S3Options {
                prefix: String::new(),
                ..opts
            },
            &|_| None,
        )
        .unwrap();
        assert_eq!(
            s.key_path(&k).as_ref(),
            "0009/0000000000000001-0000000000000006.ltx"
        );
    }
}
