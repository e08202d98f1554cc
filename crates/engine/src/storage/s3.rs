//! The S3 backend: a replica in an S3-compatible bucket (AWS S3, Garage, MinIO, R2, ...).
//!
//! Owns: what is S3's own among the object-store backends: Litestream's S3 layout
//! `<prefix>/<level %04x>/<min>-<max>.ltx` ([`Layout::HexLevel`](super::Layout::HexLevel)),
//! the `litestream-timestamp` metadata key, the part size and concurrency of multipart
//! uploads, storage classes, and conditional creates guarded by a probe for servers that
//! ignore `If-None-Match`. `config` turns [`S3Options`] into the shared
//! `ObjectStoreReplica` (`objstore`, which does the [`ReplicaStore`](super::ReplicaStore)
//! calls); `error` is S3's dialect for the shared classification of `object_store`
//! failures into [`StorageError`] kinds, so callers decide retries from the kind
//! alone.
//!
//! `Content-MD5` goes on DeleteObjects only (S3 requires it there), as with Litestream's
//! default `require-content-md5: true`; with false ([`S3Options::require_content_md5`])
//! deletes go one object per DELETE request, and no request carries one.
//!
//! Does not: retry for long (the client retries a few times within seconds; the uploader
//! owns backoff), or discover a bucket's region (give `region`; AWS answers a wrong one
//! with an error naming the right one, which we pass on).
//!
//! Fed by replicate/restore through `dyn ReplicaStore`; feeds Apache Arrow's `object_store`
//! S3 client, which signs requests (SigV4) from explicit keys, `AWS_*`/`LITESTREAM_*`
//! variables, web identity, container or instance credentials.

mod config;
mod error;

use async_trait::async_trait;
use bytes::Bytes;
use ltx::Level;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};

use super::layout::LtxInfo;
pub use super::objstore::{format_timestamp, parse_timestamp};
use super::objstore::{ObjectStoreBackend, ObjectStoreReplica};
use super::StorageError;
pub use config::{
    sse_customer_key_base64, S3Options, DEFAULT_CONCURRENCY, DEFAULT_PART_SIZE_BYTES,
};

/// The object metadata key holding a file's creation time (Litestream's name), as
/// RFC 3339 with up to nanoseconds, UTC.
pub const TIMESTAMP_METADATA: &str = "litestream-timestamp";

/// A replica in an S3 bucket.
#[derive(Debug)]
pub struct S3Store {
    replica: ObjectStoreReplica,
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
            replica: config::build(opts, env)?,
            conditional_put: tokio::sync::OnceCell::new(),
        })
    }

    /// [`ReplicaStore::list`](super::ReplicaStore::list) with `created` from each file's
    /// `litestream-timestamp` metadata, one HEAD per file, where `list` reports the
    /// object's LastModified (S3 listings carry no user metadata). Files without the
    /// metadata keep LastModified; files deleted between the LIST and their HEAD are left
    /// out.
    pub async fn list_with_timestamps(&self, level: Level) -> Result<Vec<LtxInfo>, StorageError> {
        self.replica.list_exact_times(level).await
    }

    /// Stores `data` at `key_path` (relative to the prefix, outside the level directories:
    /// markers, lease files), replacing what is there, with no timestamp metadata.
    pub async fn put_object(&self, key_path: &str, data: Bytes) -> Result<(), StorageError> {
        self.replica.put_object(key_path, data).await
    }

    /// Whether the server honours `If-None-Match: *` on PUT: creates a probe object twice
    /// and expects the second create to fail. Asked once per store.
    async fn supports_conditional_put(&self) -> Result<bool, StorageError> {
        let r = &self.replica;
        let probe = || async {
            let name = format!(".sqlite-replicate-probe-{:016x}", rand::random::<u64>());
            let path = r.path(&name);
            let create = || PutOptions {
                mode: PutMode::Create,
                ..Default::default()
            };
            let what = "probing for conditional writes";
            r.store
                .put_opts(&path, PutPayload::from_static(b"1"), create())
                .await
                .map_err(|e| r.err(what, e))?;
            let second = r
                .store
                .put_opts(&path, PutPayload::from_static(b"2"), create())
                .await;
            let _ = r.store.delete(&path).await;
            match second {
                Ok(_) => Ok(false),
                Err(
                    object_store::Error::Precondition { .. }
                    | object_store::Error::AlreadyExists { .. },
                ) => Ok(true),
                Err(e) => Err(r.err(what, e)),
            }
        };
        self.conditional_put.get_or_try_init(probe).await.copied()
    }
}

/// The shared object-store calls, with the conditional create guarded by the probe.
#[async_trait]
impl ObjectStoreBackend for S3Store {
    fn replica(&self) -> &ObjectStoreReplica {
        &self.replica
    }

    /// Conditional creates and leases need `If-None-Match` and `If-Match`; a server that
    /// ignores the first (Garage 2.x) would silently overwrite, so the first call probes for
    /// support and, without it, every conditional call fails `Permanent`.
    async fn check_conditional(&self, what: &str) -> Result<(), StorageError> {
        if self.supports_conditional_put().await? {
            return Ok(());
        }
        Err(StorageError::permanent(self.replica.location.clone(), what.to_string(), "this S3 server ignores conditional writes (If-None-Match / If-Match on PUT), \
                     so neither an atomic create-if-absent nor a lease is possible here (AWS S3, MinIO, R2 and Tigris support them)"
                ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::LtxKey;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn timestamps_match_go_rfc3339nano() {
        let cases: &[(u64, u32, &str)] = &[
            (1_700_000_000, 123_000_000, "2023-11-14T22:13:20.123Z"),
            (1_700_000_000, 0, "2023-11-14T22:13:20Z"),
            (1_700_000_000, 100, "2023-11-14T22:13:20.0000001Z"),
            // Windows's SystemTime counts 100 ns ticks: it cannot hold 1 ns.
            #[cfg(not(windows))]
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
            s.replica.key_path(&k).as_ref(),
            "db/x/0009/0000000000000001-0000000000000006.ltx"
        );
        assert_eq!(s.replica.path("lock.json").as_ref(), "db/x/lock.json");
        let s = S3Store::with_env(
            S3Options {
                prefix: String::new(),
                ..opts
            },
            &|_| None,
        )
        .unwrap();
        assert_eq!(
            s.replica.key_path(&k).as_ref(),
            "0009/0000000000000001-0000000000000006.ltx"
        );
    }
}
