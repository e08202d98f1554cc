//! Errors of the VFS, each naming what failed: the replica and the object (level and file
//! name), or the parameter, or the page.

use engine::restore::run::RestoreError;
use engine::storage::{LtxKey, ReplicaStore, StorageError};

#[derive(Debug, thiserror::Error)]
pub enum VfsError {
    #[error(transparent)]
    Options(#[from] crate::options::OptionsError),
    #[error("sqlite-replicate VFS: {0}")]
    Setup(String),
    #[error("sqlite-replicate VFS: reading {object} of replica {location}: {source}")]
    Storage {
        location: String,
        object: String,
        #[source]
        source: StorageError,
    },
    #[error("sqlite-replicate VFS: {object} of replica {location} is damaged: {reason}")]
    BadFile {
        location: String,
        object: String,
        reason: String,
    },
    #[error("sqlite-replicate VFS: {0:#}")]
    Restore(anyhow::Error),
    #[error("sqlite-replicate VFS: page {pgno} is in no file of the plan to TXID {txid} (replica {location})")]
    MissingPage {
        location: String,
        pgno: u32,
        txid: String,
    },
    #[error("sqlite-replicate VFS: internal error: {0}")]
    Panic(String),
}

impl VfsError {
    pub fn storage(store: &dyn ReplicaStore, key: &LtxKey, source: StorageError) -> VfsError {
        VfsError::Storage {
            location: store.location().to_string(),
            object: object_name(key),
            source,
        }
    }

    pub fn bad_file(store: &dyn ReplicaStore, key: &LtxKey, reason: String) -> VfsError {
        VfsError::BadFile {
            location: store.location().to_string(),
            object: object_name(key),
            reason,
        }
    }

    pub fn decode(store: &dyn ReplicaStore, key: &LtxKey, e: ltx::DecodeError) -> VfsError {
        VfsError::bad_file(store, key, e.to_string())
    }

    pub fn restore(e: RestoreError) -> VfsError {
        VfsError::Restore(anyhow::Error::new(e))
    }

    /// Whether the object is gone (compacted away, retention): the caller may re-plan.
    pub fn is_not_found(&self) -> bool {
        matches!(self, VfsError::Storage { source, .. } if source.is_not_found())
    }
}

/// How errors name an LTX object: its level directory and file name, as the replica
/// spells them (`ltx/0/0000000000000001-0000000000000001.ltx`).
pub fn object_name(key: &LtxKey) -> String {
    format!("ltx/{}/{}", key.level.get(), key.file_name())
}
