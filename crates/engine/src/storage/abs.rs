//! The Azure Blob Storage backend: a replica in a container (Azure, or Azurite in tests).
//!
//! Owns: what is Azure's own among the object-store backends: Litestream's ABS layout
//! `<prefix>/ltx/<level>/<min>-<max>.ltx` ([`Layout::LtxDir`](super::Layout::LtxDir)); the
//! `litestreamtimestamp` metadata key (Azure metadata names must be C# identifiers, hence
//! no dash, unlike S3); the block size of large uploads; a HEAD before every ranged get
//! (Azure answers a range past the end with 416). Conditional writes are plain
//! `If-None-Match: *` and `If-Match: <etag>`, which Azure and Azurite honour. `config` turns [`AbsOptions`] into
//! the shared `ObjectStoreReplica` (`objstore`, which does the
//! [`ReplicaStore`](super::ReplicaStore) calls); `error` is Azure's dialect for the shared
//! classification of `object_store` failures into [`StorageError`] kinds.
//!
//! Does not: create the container (Litestream does not either) or retry for long (the
//! client retries a few times within seconds; the uploader owns backoff). Litestream 0.3
//! `generations/` are read by the shared object-store code, as on S3.
//!
//! Fed by replicate/restore through `dyn ReplicaStore`; feeds Apache Arrow's
//! `object_store` Azure client, which signs requests with the shared key or a SAS token.

mod config;
mod error;

use bytes::Bytes;

use super::objstore::{ObjectStoreBackend, ObjectStoreReplica};
use super::StorageError;
pub use config::AbsOptions;

/// The blob metadata key holding a file's creation time (Litestream's name on ABS), as
/// RFC 3339 with up to nanoseconds, UTC.
pub const TIMESTAMP_METADATA: &str = "litestreamtimestamp";

/// A replica in an Azure Blob Storage container.
#[derive(Debug)]
pub struct AbsStore {
    replica: ObjectStoreReplica,
}

impl AbsStore {
    /// Builds the client; no request is made. Errors are `Permanent` and name the replica.
    pub fn new(opts: AbsOptions) -> Result<AbsStore, StorageError> {
        Ok(AbsStore {
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
/// creates trust `If-None-Match: *`, which Azure and Azurite honour.
impl ObjectStoreBackend for AbsStore {
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
            s.replica.key_path(&k).as_ref(),
            "db/x/ltx/9/0000000000000001-0000000000000006.ltx"
        );
        assert_eq!(s.replica.path("lock.json").as_ref(), "db/x/lock.json");
        let s = AbsStore::new(AbsOptions {
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
