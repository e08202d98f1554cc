//! The Azure Blob Storage backend: a replica in a container (Azure, or Azurite in tests).
//!
//! Owns: mapping [`ReplicaStore`] calls onto `<prefix>/ltx/<level>/<min>-<max>.ltx` blobs
//! (Litestream's ABS layout, spelled only by [`Layout::LtxDir`]); the `litestreamtimestamp`
//! blob metadata that carries each file's creation time (Azure metadata names must be C#
//! identifiers, hence no dash, unlike S3); block uploads of large files; conditional
//! creates (`If-None-Match: *`, which Azure and Azurite honour). `config` turns
//! [`AbsOptions`] into a client; `error` is the edge where `object_store` failures become
//! [`StorageError`] variants.
//!
//! Does not: create the container (Litestream does not either), read Litestream 0.3
//! generations, or retry for long (the client retries a few times within seconds; the
//! uploader owns backoff).
//!
//! Fed by replicate/restore through `dyn ReplicaStore`; feeds Apache Arrow's
//! `object_store` Azure client, which signs requests with the shared key or a SAS token.

mod config;
mod error;

use std::ops::Range;
use std::time::SystemTime;

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
use super::s3::{format_timestamp, parse_timestamp};
use super::{ReplicaStore, StorageError};
pub use config::AbsOptions;
use config::Client;

/// The blob metadata key holding a file's creation time (Litestream's name on ABS), as
/// RFC 3339 with up to nanoseconds, UTC.
pub const TIMESTAMP_METADATA: &str = "litestreamtimestamp";

/// Files larger than this go up as blocks of this size (one Put Blob is limited, and a
/// failed block is cheaper to resend than a whole file).
const BLOCK_SIZE_BYTES: usize = 16 * 1024 * 1024;

/// Blocks of one file in flight at once.
const BLOCK_CONCURRENCY: usize = 4;

/// HEAD requests in flight while reading exact timestamps.
const HEAD_CONCURRENCY: usize = 16;

/// A replica in an Azure Blob Storage container.
#[derive(Debug)]
pub struct AbsStore {
    client: Client,
}

impl AbsStore {
    /// Builds the client; no request is made. Errors are `Permanent` and name the replica.
    pub fn new(opts: AbsOptions) -> Result<AbsStore, StorageError> {
        Ok(AbsStore {
            client: config::build(opts)?,
        })
    }

    /// The blob path of `rel` (a path relative to the replica root).
    fn path(&self, rel: &str) -> Path {
        match &self.client.prefix {
            Some(p) => rel.split('/').fold(p.clone(), |acc, part| acc.join(part)),
            None => Path::from_iter(rel.split('/')),
        }
    }

    fn key_path(&self, key: &LtxKey) -> Path {
        self.path(&Layout::LtxDir.key_path(key))
    }

    fn err(&self, what: impl Into<String>, e: object_store::Error) -> StorageError {
        error::classify(
            &self.client.location,
            &self.client.container,
            what.into(),
            &e,
            &self.client.secrets,
        )
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
            detail: "not a relative blob path".into(),
        })
    }

    /// Stores `data` at `key_path` (relative to the prefix, outside the level directories:
    /// markers, test fixtures), replacing what is there, with no timestamp metadata.
    pub async fn put_object(&self, key_path: &str, data: Bytes) -> Result<(), StorageError> {
        self.check_relative(key_path)?;
        self.client
            .store
            .put(&self.path(key_path), PutPayload::from(data))
            .await
            .map_err(|e| self.err(key_path, e))?;
        Ok(())
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

    async fn put_blocks(
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
        let mut w = WriteMultipart::new_with_chunk_size(upload, BLOCK_SIZE_BYTES);
        while !data.is_empty() {
            if let Err(e) = w.wait_for_capacity(BLOCK_CONCURRENCY).await {
                let _ = w.abort().await;
                return Err(e);
            }
            w.put(data.split_to(BLOCK_SIZE_BYTES.min(data.len())));
        }
        // Uncommitted blocks are dropped by Azure after a week; `finish` aborts on failure.
        w.finish().await?;
        Ok(())
    }
}

#[async_trait]
impl ReplicaStore for AbsStore {
    fn location(&self) -> &str {
        &self.client.location
    }

    async fn list(&self, level: Level) -> Result<Vec<LtxInfo>, StorageError> {
        let dir = self.path(&Layout::LtxDir.level_dir(level));
        let listing = self
            .client
            .store
            .list_with_delimiter(Some(&dir))
            .await
            .map_err(|e| match self.err(format!("listing {dir}/"), e) {
                // A listing finds no blob to miss: the container is.
                StorageError::NotFound { location, .. } => StorageError::NotFound {
                    location,
                    what: format!("container {:?}", self.client.container),
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

    /// `created` from each blob's `litestreamtimestamp` metadata, one HEAD per file (the
    /// client's listings do not ask for metadata). Files without it keep LastModified;
    /// files deleted between the listing and their HEAD are left out.
    async fn list_exact_times(&self, level: Level) -> Result<Vec<LtxInfo>, StorageError> {
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

    async fn get(&self, key: &LtxKey, range: Option<Range<u64>>) -> Result<Bytes, StorageError> {
        let path = self.key_path(key);
        let what = key.to_string();
        let out_of_range = |r: &Range<u64>, size: u64| StorageError::Permanent {
            location: self.client.location.clone(),
            what: what.clone(),
            detail: format!("range {}..{} outside blob of {size} bytes", r.start, r.end),
        };
        // A HEAD first checks the bounds: Azure answers a range past the end with 416,
        // and has no empty range.
        if let Some(r) = &range {
            let head = GetOptions {
                head: true,
                ..Default::default()
            };
            let size = self
                .client
                .store
                .get_opts(&path, head)
                .await
                .map_err(|e| self.err(&what, e))?
                .meta
                .size;
            if r.start > r.end || r.end > size {
                return Err(out_of_range(r, size));
            }
            if r.start == r.end {
                return Ok(Bytes::new());
            }
        }
        let opts = GetOptions {
            range: range.clone().map(GetRange::Bounded),
            ..Default::default()
        };
        let result = self
            .client
            .store
            .get_opts(&path, opts)
            .await
            .map_err(|e| self.err(&what, e))?;
        let size = result.meta.size;
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
        let mut attributes = Attributes::new();
        attributes.insert(
            Attribute::Metadata(TIMESTAMP_METADATA.into()),
            format_timestamp(created).into(),
        );
        let r = if data.len() <= BLOCK_SIZE_BYTES {
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
            self.put_blocks(&path, data, attributes).await
        };
        r.map_err(|e| self.err(key.to_string(), e))
    }

    async fn delete(&self, keys: &[LtxKey]) -> Result<(), StorageError> {
        if keys.is_empty() {
            return Ok(());
        }
        let paths: Vec<object_store::Result<Path>> =
            keys.iter().map(|k| Ok(self.key_path(k))).collect();
        // The client sends these as Blob Batch requests of up to 256 deletes.
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
        self.check_relative(name)?;
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        self.client
            .store
            .put_opts(&self.path(name), PutPayload::from(data), opts)
            .await
            .map_err(|e| self.err(name, e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_spelled_by_the_layout_under_the_prefix() {
        let opts = AbsOptions {
            account_name: "devstoreaccount1".into(),
            account_key: Some("a2V5".into()),
            container: "c".into(),
            prefix: "/db/x/".into(),
            endpoint: Some("http://127.0.0.1:10000/devstoreaccount1".into()),
            ..Default::default()
        };
        let k = LtxKey::new(
            Level::SNAPSHOT,
            ltx::TxId::new(1).unwrap(),
            ltx::TxId::new(6).unwrap(),
        );
        let s = AbsStore::new(opts.clone()).unwrap();
        assert_eq!(
            s.key_path(&k).as_ref(),
            "db/x/ltx/9/0000000000000001-0000000000000006.ltx"
        );
        assert_eq!(s.path("lock.json").as_ref(), "db/x/lock.json");
        let s = AbsStore::new(AbsOptions {
            prefix: String::new(),
            ..opts
        })
        .unwrap();
        assert_eq!(
            s.key_path(&k).as_ref(),
            "ltx/9/0000000000000001-0000000000000006.ltx"
        );
    }
}
