//! A fault-injecting wrapper around a real replica store, for reliability tests.
//!
//! Owns: making a working backend slow (latency on every call), failing (every n-th call,
//! or every call while "down", answered as `Transient` like a timeout or a 503) and
//! dishonest (ranged and whole `get`s cut short, as a proxy that drops a connection
//! mid-body without an error would; streamed gets reset mid-body; listings that misreport
//! sizes, as a hostile or broken store might). Faults can be switched while a replicator runs. It
//! never changes what the wrapped store holds; it only lies about it or refuses to talk.
//!
//! Does not: decide anything about retries; callers must cope through the contract alone.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, StreamExt, TryStreamExt};
use ltx::Level;

use super::layout::v3::V3File;
use super::{ByteStream, LtxInfo, LtxKey, ReplicaStore, StorageError, V3Store};

/// Which faults are on; each can be changed at any time.
#[derive(Debug, Default)]
pub struct Faults {
    /// Added before every call, in milliseconds.
    pub latency_ms: AtomicU64,
    /// Every n-th call fails with `Transient` (0: never).
    pub fail_every: AtomicU32,
    /// While set, every call fails with `Transient` (the object store is down).
    pub down: AtomicBool,
    /// While set, `get` returns only the first half of the bytes asked for.
    pub truncate_gets: AtomicBool,
    /// The next this many streamed gets deliver the first half of their range, then fail
    /// `Transient` (a connection reset mid-body).
    pub cut_streams: AtomicU32,
    /// While non-zero, listings report every file as this many bytes.
    pub listed_size: AtomicU64,
}

/// A [`ReplicaStore`] that injects [`Faults`] in front of `inner`.
pub struct FaultyStore {
    inner: Arc<dyn ReplicaStore>,
    pub faults: Arc<Faults>,
    calls: AtomicU64,
    injected: AtomicU64,
}

impl FaultyStore {
    pub fn new(inner: Arc<dyn ReplicaStore>) -> FaultyStore {
        FaultyStore {
            inner,
            faults: Arc::new(Faults::default()),
            calls: AtomicU64::new(0),
            injected: AtomicU64::new(0),
        }
    }

    /// How many calls failed or were cut short on purpose so far.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::Relaxed)
    }

    /// `files` with their sizes misreported if that fault is on.
    fn misreport(&self, mut files: Vec<LtxInfo>) -> Vec<LtxInfo> {
        let size = self.faults.listed_size.load(Ordering::Relaxed);
        if size > 0 {
            self.injected.fetch_add(1, Ordering::Relaxed);
            files.iter_mut().for_each(|f| f.size_bytes = size);
        }
        files
    }

    /// Latency, then a failure if one is due.
    async fn before(&self, what: &str) -> Result<(), StorageError> {
        let ms = self.faults.latency_ms.load(Ordering::Relaxed);
        if ms > 0 {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        let n = self.calls.fetch_add(1, Ordering::Relaxed) + 1;
        let every = self.faults.fail_every.load(Ordering::Relaxed) as u64;
        let down = self.faults.down.load(Ordering::Relaxed);
        if down || (every > 0 && n.is_multiple_of(every)) {
            self.injected.fetch_add(1, Ordering::Relaxed);
            return Err(StorageError::transient(
                self.inner.location().to_string(),
                what.to_string(),
                if down {
                    "injected: store down".into()
                } else {
                    format!("injected: call {n} failed")
                },
            ));
        }
        Ok(())
    }
}

#[async_trait]
impl ReplicaStore for FaultyStore {
    fn location(&self) -> &str {
        self.inner.location()
    }

    fn set_file_mode(&self, mode: crate::fsutil::FileMode) {
        self.inner.set_file_mode(mode);
    }

    async fn list(&self, level: Level) -> Result<Vec<LtxInfo>, StorageError> {
        self.before(&format!("listing level {level}")).await?;
        Ok(self.misreport(self.inner.list(level).await?))
    }

    async fn get(&self, key: &LtxKey, range: Option<Range<u64>>) -> Result<Bytes, StorageError> {
        self.before(&key.to_string()).await?;
        let b = self.inner.get(key, range).await?;
        if self.faults.truncate_gets.load(Ordering::Relaxed) && b.len() > 1 {
            self.injected.fetch_add(1, Ordering::Relaxed);
            return Ok(b.slice(..b.len() / 2));
        }
        Ok(b)
    }

    fn restore_chunk_bytes(&self) -> u64 {
        self.inner.restore_chunk_bytes()
    }

    async fn get_stream(
        &self,
        key: &LtxKey,
        range: Range<u64>,
    ) -> Result<ByteStream, StorageError> {
        if self.faults.truncate_gets.load(Ordering::Relaxed) {
            let b = self.get(key, Some(range)).await?;
            return Ok(Box::pin(stream::once(async move { Ok(b) })));
        }
        self.before(&key.to_string()).await?;
        let body = self.inner.get_stream(key, range.clone()).await?;
        let cut = &self.faults.cut_streams;
        if cut
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_err()
        {
            return Ok(body);
        }
        self.injected.fetch_add(1, Ordering::Relaxed);
        let mut left = (range.end - range.start) / 2;
        let reset = StorageError::transient(
            self.inner.location().to_string(),
            key.to_string(),
            "injected: connection reset mid-body",
        );
        let head = body
            .map_ok(move |mut b| {
                let n = left.min(b.len() as u64) as usize;
                left -= n as u64;
                b.truncate(n);
                b
            })
            .try_take_while(|b| std::future::ready(Ok(!b.is_empty())));
        Ok(Box::pin(
            head.chain(stream::once(async move { Err(reset) })),
        ))
    }

    async fn put(
        &self,
        key: &LtxKey,
        data: Bytes,
        created: SystemTime,
    ) -> Result<(), StorageError> {
        self.before(&key.to_string()).await?;
        self.inner.put(key, data, created).await
    }

    async fn delete(&self, keys: &[LtxKey]) -> Result<(), StorageError> {
        self.before("delete").await?;
        self.inner.delete(keys).await
    }

    async fn list_exact_times(&self, level: Level) -> Result<Vec<LtxInfo>, StorageError> {
        self.before(&format!("listing level {level}")).await?;
        Ok(self.misreport(self.inner.list_exact_times(level).await?))
    }

    fn v3(&self) -> Result<&dyn V3Store, StorageError> {
        self.inner.v3()?;
        Ok(self)
    }
}

/// Litestream 0.3 reads, with the same faults. No named objects: the faults are for the
/// replication and restore paths.
#[async_trait]
impl V3Store for FaultyStore {
    async fn list_v3(&self) -> Result<Vec<V3File>, StorageError> {
        self.before("listing generations").await?;
        self.inner.v3()?.list_v3().await
    }

    async fn get_v3(&self, file: &V3File) -> Result<Bytes, StorageError> {
        self.before(&file.path()).await?;
        self.inner.v3()?.get_v3(file).await
    }

    async fn get_v3_range(&self, file: &V3File, range: Range<u64>) -> Result<Bytes, StorageError> {
        self.before(&file.path()).await?;
        self.inner.v3()?.get_v3_range(file, range).await
    }
}
