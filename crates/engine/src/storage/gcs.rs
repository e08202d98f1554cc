//! The Google Cloud Storage backend: a replica in a GCS bucket.
//!
//! Owns: what is GCS's own among the object-store backends: Litestream's GCS layout
//! `<path>/ltx/<level>/<min>-<max>.ltx` ([`Layout::LtxDir`](super::Layout::LtxDir)), the
//! `litestream-timestamp` metadata key (sent as `x-goog-meta-litestream-timestamp`), the
//! part size of large uploads, and a HEAD before every ranged get (GCS answers a range
//! that starts past the end with 416 and one that ends past it with fewer bytes).
//! Conditional creates are the client's `x-goog-if-generation-match: 0`, which GCS
//! honours. `config` turns [`GcsOptions`] into the shared `ObjectStoreReplica`
//! (`objstore`, which does the [`ReplicaStore`](super::ReplicaStore) calls); `error` is
//! GCS's dialect for the shared classification of `object_store` failures into
//! [`StorageError`] kinds.
//!
//! Status: reads (listing, HEAD, whole and ranged gets, deletes) run against a real
//! fake-gcs-server in the CLI's integration tests (`tests/it/gcs.rs`), which restore what
//! Litestream wrote there; uploads (timestamp metadata, conditional creates, multipart) are
//! unit-tested only: that emulator refuses the XML API's object PUT this client sends.
//!
//! Does not: create the bucket (Litestream does not either), read Litestream 0.3
//! generations, or retry for long (the client retries a few times within seconds; the
//! uploader owns backoff).
//!
//! Fed by replicate/restore through `dyn ReplicaStore`; feeds Apache Arrow's
//! `object_store` GCS client, which authenticates with Google's application default
//! credentials (a service account or user credentials file, or the metadata server).

mod config;
mod error;

use bytes::Bytes;

use super::objstore::{ObjectStoreBackend, ObjectStoreReplica};
use super::StorageError;
pub use config::{emulator_endpoint, GcsOptions};

/// The object metadata key holding a file's creation time (Litestream's name), as
/// RFC 3339 with up to nanoseconds, UTC.
pub const TIMESTAMP_METADATA: &str = "litestream-timestamp";

/// A replica in a Google Cloud Storage bucket.
#[derive(Debug)]
pub struct GcsStore {
    replica: ObjectStoreReplica,
}

impl GcsStore {
    /// Builds the client; no request is made (a credentials file given is read now).
    /// Errors are `Permanent` and name the replica.
    pub fn new(opts: GcsOptions) -> Result<GcsStore, StorageError> {
        Ok(GcsStore {
            replica: config::build(opts)?,
        })
    }

    /// Stores `data` at `key_path` (relative to the prefix, outside the level directories:
    /// markers, test fixtures), replacing what is there, with no timestamp metadata.
    pub async fn put_object(&self, key_path: &str, data: Bytes) -> Result<(), StorageError> {
        self.replica.put_object(key_path, data).await
    }
}

/// All of [`ReplicaStore`](super::ReplicaStore) is the shared object-store code; conditional
/// creates trust `x-goog-if-generation-match: 0`, which GCS honours.
impl ObjectStoreBackend for GcsStore {
    fn replica(&self) -> &ObjectStoreReplica {
        &self.replica
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::LtxKey;
    use ltx::Level;

    #[test]
    fn keys_are_spelled_by_the_layout_under_the_prefix() {
        let opts = GcsOptions {
            bucket: "b".into(),
            prefix: "/db/x/".into(),
            endpoint: Some("http://127.0.0.1:4443".into()),
            ..Default::default()
        };
        let k = LtxKey::new(
            Level::SNAPSHOT,
            ltx::TxId::new(1).unwrap(),
            ltx::TxId::new(6).unwrap(),
        );
        let s = GcsStore::new(opts.clone()).unwrap();
        assert_eq!(
            s.replica.key_path(&k).as_ref(),
            "db/x/ltx/9/0000000000000001-0000000000000006.ltx"
        );
        assert_eq!(s.replica.path("lock.json").as_ref(), "db/x/lock.json");
        assert_eq!(s.replica.timestamp_key, "litestream-timestamp");
        let s = GcsStore::new(GcsOptions {
            prefix: String::new(),
            ..opts
        })
        .unwrap();
        assert_eq!(
            s.replica.key_path(&k).as_ref(),
            "ltx/9/0000000000000001-0000000000000006.ltx"
        );
    }
}
