//! [`FencedStore`]: a replica store whose writes happen only while our lease allows them,
//! and whose history from our epoch's first TXID on holds only our files.
//!
//! Owns: the check before every LTX write and delete (`Lease::writable`), create-only
//! writes of every file that reaches into our epoch (so no file of ours is ever replaced,
//! and a late file of an older epoch at the same key is found), and the removal of files
//! of other epochs at or after our first TXID wherever a listing meets them (invariants
//! E3, E5 and E6 in `docs/design.md`). Reads and named objects pass through.
//!
//! Fed by the CLI, which wraps each replica's store of a database with a lease; feeds the
//! uploader and maintenance, which see an ordinary [`ReplicaStore`].

use std::collections::HashSet;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use ltx::{Level, TxId};
use tracing::warn;

use super::Lease;
use crate::storage::{
    ETag, ErrorKind, LtxInfo, LtxKey, NamedObject, NamedStore, ReplicaStore, StorageError, V3Store,
};

/// A store whose writes are fenced by a lease.
pub struct FencedStore {
    inner: Arc<dyn ReplicaStore>,
    lease: Arc<Lease>,
    /// Files at or after our epoch's first TXID that we wrote (and so may replace).
    written: Mutex<HashSet<LtxKey>>,
}

impl FencedStore {
    pub fn new(inner: Arc<dyn ReplicaStore>, lease: Arc<Lease>) -> FencedStore {
        FencedStore {
            inner,
            lease,
            written: Mutex::new(HashSet::new()),
        }
    }

    /// Our epoch's first TXID while we may write, else a `Transient` error (the uploader
    /// retries, and the lease task renews or reports the loss).
    fn fence(&self, what: &str) -> Result<TxId, StorageError> {
        // Invariant E3: checked immediately before every LTX write and delete.
        match self.lease.writable() {
            Some((_, Some(start))) => Ok(start),
            _ => Err(StorageError::transient(
                self.inner.location().to_string(),
                what.to_string(),
                "not holding the lease: write fenced",
            )),
        }
    }

    fn ours(&self, key: &LtxKey) -> bool {
        self.written.lock().expect("fence").contains(key)
    }

    /// Drops (and, while we may write, deletes) the files of other epochs that reach into
    /// ours: written by an old holder after we took over.
    async fn without_foreign(&self, files: Vec<LtxInfo>) -> Result<Vec<LtxInfo>, StorageError> {
        let Some((epoch, Some(start))) = self.lease.writable() else {
            return Ok(files);
        };
        let (foreign, keep): (Vec<LtxInfo>, Vec<LtxInfo>) = files
            .into_iter()
            .partition(|f| f.key.max >= start && !self.ours(&f.key));
        if !foreign.is_empty() {
            let keys: Vec<LtxKey> = foreign.iter().map(|f| f.key).collect();
            for k in &keys {
                warn!(replica = %self.inner.location(), file = %k, epoch,
                      "removing a late write of an older lease epoch");
            }
            self.inner.delete(&keys).await?;
        }
        Ok(keep)
    }

    /// Creates `key` (already marked ours); a different file there is a late write of an
    /// older epoch, deleted before we try again. Invariant E5: create-only, never a blind
    /// overwrite.
    async fn create_ours(
        &self,
        key: &LtxKey,
        data: Bytes,
        created: SystemTime,
    ) -> Result<(), StorageError> {
        for _ in 0..3 {
            match self
                .inner
                .named()?
                .put_if_absent(key, data.clone(), created)
                .await
            {
                Ok(()) => return Ok(()),
                Err(e) if matches!(e.kind(), ErrorKind::Precondition) => {
                    let there = self.inner.get(key, None).await?;
                    if there == data {
                        return Ok(());
                    }
                    self.fence(&key.to_string())?;
                    if !self.ours(key) {
                        warn!(replica = %self.inner.location(), file = %key,
                              "removing a late write of an older lease epoch at our key");
                    }
                    self.inner.delete(&[*key]).await?;
                }
                Err(e) => return Err(e),
            }
        }
        Err(StorageError::transient(
            self.inner.location().to_string(),
            key.to_string(),
            "another writer keeps creating this file",
        ))
    }

    /// Removes other epochs' late writes from the levels where one can land (L0, and the
    /// snapshot level); the lease task calls it after each renewal early in an epoch.
    pub async fn sweep(&self) -> Result<(), StorageError> {
        for level in [Level::L0, Level::SNAPSHOT] {
            let files = self.inner.list(level).await?;
            self.without_foreign(files).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl ReplicaStore for FencedStore {
    fn location(&self) -> &str {
        self.inner.location()
    }

    fn set_file_mode(&self, mode: crate::fsutil::FileMode) {
        self.inner.set_file_mode(mode);
    }

    fn close_idle(&self) {
        self.inner.close_idle();
    }

    async fn list(&self, level: Level) -> Result<Vec<LtxInfo>, StorageError> {
        let files = self.inner.list(level).await?;
        self.without_foreign(files).await
    }

    async fn levels_present(&self) -> Result<Option<Vec<Level>>, StorageError> {
        self.inner.levels_present().await
    }

    async fn list_exact_times(&self, level: Level) -> Result<Vec<LtxInfo>, StorageError> {
        let files = self.inner.list_exact_times(level).await?;
        self.without_foreign(files).await
    }

    async fn get(&self, key: &LtxKey, range: Option<Range<u64>>) -> Result<Bytes, StorageError> {
        self.inner.get(key, range).await
    }

    /// Files wholly before our epoch are replaced as usual (their content is derived from
    /// the history: compactions, snapshots). A file reaching into our epoch is only ever
    /// created, never overwritten blindly, not even a retry of our own: a plain overwrite
    /// delayed past a takeover could replace the next holder's file. If the key is taken,
    /// equal bytes mean done; different bytes (an older epoch's late write, or our own
    /// earlier version of a rewritten file) are deleted, fenced, and the create retried.
    async fn put(
        &self,
        key: &LtxKey,
        data: Bytes,
        created: SystemTime,
    ) -> Result<(), StorageError> {
        let start = self.fence(&key.to_string())?;
        if key.max < start {
            return self.inner.put(key, data, created).await;
        }
        // Ours from before the create, so a concurrent sweep never takes it for foreign;
        // and ours after a failed attempt too (it may have landed): a retry then replaces
        // whatever is there.
        self.written.lock().expect("fence").insert(*key);
        self.create_ours(key, data, created).await
    }

    /// Streams only a file wholly before our epoch (a plain replace, as in `put`); one
    /// reaching into it is read whole for the conditional create (no portable conditional
    /// multipart upload), costing its size in memory.
    async fn put_file(
        &self,
        key: &LtxKey,
        file: &std::fs::File,
        len_bytes: u64,
        created: SystemTime,
    ) -> Result<(), StorageError> {
        let start = self.fence(&key.to_string())?;
        if key.max < start {
            return self.inner.put_file(key, file, len_bytes, created).await;
        }
        let data = crate::storage::read_whole(self.location(), key, file, len_bytes).await?;
        self.put(key, data, created).await
    }

    async fn delete(&self, keys: &[LtxKey]) -> Result<(), StorageError> {
        self.fence("deleting files")?;
        self.inner.delete(keys).await?;
        let mut w = self.written.lock().expect("fence");
        for k in keys {
            w.remove(k);
        }
        Ok(())
    }

    fn named(&self) -> Result<&dyn NamedStore, StorageError> {
        self.inner.named()?;
        Ok(self)
    }

    fn v3(&self) -> Result<&dyn V3Store, StorageError> {
        self.inner.v3()
    }
}

/// The inner store's named objects, with [`NamedStore::put_if_absent`] fenced like `put`.
#[async_trait]
impl NamedStore for FencedStore {
    async fn put_if_absent(
        &self,
        key: &LtxKey,
        data: Bytes,
        created: SystemTime,
    ) -> Result<(), StorageError> {
        self.fence(&key.to_string())?;
        self.written.lock().expect("fence").insert(*key);
        self.inner.named()?.put_if_absent(key, data, created).await
    }

    async fn create_name(&self, name: &str, data: Bytes) -> Result<ETag, StorageError> {
        self.inner.named()?.create_name(name, data).await
    }

    async fn get_name_versioned(&self, name: &str) -> Result<(Bytes, ETag), StorageError> {
        self.inner.named()?.get_name_versioned(name).await
    }

    async fn put_name_if_match(
        &self,
        name: &str,
        data: Bytes,
        etag: &ETag,
    ) -> Result<ETag, StorageError> {
        self.inner
            .named()?
            .put_name_if_match(name, data, etag)
            .await
    }

    async fn put_name(&self, name: &str, data: Bytes) -> Result<(), StorageError> {
        self.inner.named()?.put_name(name, data).await
    }

    async fn get_name(&self, name: &str, range: Option<Range<u64>>) -> Result<Bytes, StorageError> {
        self.inner.named()?.get_name(name, range).await
    }

    async fn head_name(&self, name: &str) -> Result<NamedObject, StorageError> {
        self.inner.named()?.head_name(name).await
    }

    async fn delete_name(&self, name: &str) -> Result<(), StorageError> {
        self.inner.named()?.delete_name(name).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::{LeaseOptions, Observer};
    use crate::storage::file::FileStore;
    use ltx::TxId;
    use std::time::Duration;

    fn k(level: u8, a: u64, b: u64) -> LtxKey {
        LtxKey::new(
            Level::new(level).unwrap(),
            TxId::new(a).unwrap(),
            TxId::new(b).unwrap(),
        )
    }

    #[tokio::test]
    async fn late_writes_of_an_old_epoch_never_stay() {
        let d = tempfile::tempdir().unwrap();
        let raw: Arc<dyn ReplicaStore> = Arc::new(FileStore::new(d.path()));
        let t = SystemTime::now();
        for i in 1..=4 {
            raw.put(&k(0, i, i), Bytes::from(vec![i as u8]), t)
                .await
                .unwrap();
        }
        let lease = Arc::new(Lease::new(
            raw.clone(),
            LeaseOptions::new("new", Duration::from_secs(60)),
        ));
        lease
            .try_acquire(&mut Observer::default(), false)
            .await
            .unwrap();
        let fenced = FencedStore::new(raw.clone(), lease.clone());
        // Not writable until the epoch's first TXID is known.
        assert!(fenced
            .put(&k(0, 5, 5), Bytes::from_static(b"x"), t)
            .await
            .is_err());
        lease.set_start_txid(TxId::new(5).unwrap()).await.unwrap();
        // The old holder's late write lands first at our first key: it is replaced.
        raw.put(&k(0, 5, 5), Bytes::from_static(b"old"), t)
            .await
            .unwrap();
        fenced
            .put(&k(0, 5, 5), Bytes::from_static(b"new"), t)
            .await
            .unwrap();
        assert_eq!(&raw.get(&k(0, 5, 5), None).await.unwrap()[..], b"new");
        // A late write after ours cannot replace it (create-only on the old side too).
        assert!(matches!(
            raw.named().unwrap().put_if_absent(&k(0, 5, 5), Bytes::from_static(b"old"), t)
                .await,
            Err(e) if e.kind() == ErrorKind::Precondition
        ));
        // A late full snapshot of the old epoch reaching into ours is removed on listing.
        raw.put(&k(9, 1, 6), Bytes::from_static(b"old"), t)
            .await
            .unwrap();
        raw.put(&k(9, 1, 4), Bytes::from_static(b"old history"), t)
            .await
            .unwrap();
        let snaps = fenced.list(Level::SNAPSHOT).await.unwrap();
        assert_eq!(
            snaps.iter().map(|f| f.key).collect::<Vec<_>>(),
            vec![k(9, 1, 4)]
        );
        assert_eq!(raw.list(Level::SNAPSHOT).await.unwrap().len(), 1);
        // Our own files are kept, and rewriting our own is allowed.
        fenced
            .put(&k(9, 1, 5), Bytes::from_static(b"ours"), t)
            .await
            .unwrap();
        fenced
            .put(&k(9, 1, 5), Bytes::from_static(b"ours2"), t)
            .await
            .unwrap();
        assert_eq!(fenced.list(Level::SNAPSHOT).await.unwrap().len(), 2);
        assert_eq!(fenced.list(Level::L0).await.unwrap().len(), 5);
    }
}
