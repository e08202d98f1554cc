//! A measuring wrapper around a replica store: every request counted, timed and, when it
//! fails, counted by error code, per operation (Litestream's `PUT`, `GET`, `DELETE`,
//! `LIST`).
//!
//! Owns: the mapping of [`ReplicaStore`] calls to operations, the lock-free figures
//! ([`StoreOps`]: atomics only, so a scrape never waits on a request) and their plain copy
//! ([`OperationFigures`]) for reports. The replicator wraps each replica's store once, so
//! every backend and every caller behind it (uploads, maintenance, leases, drills) is
//! measured in one place.
//!
//! Does not: change what a call does or returns, decide anything, or know the Prometheus
//! text format (the CLI renders the figures).
//!
//! What counts: a request that succeeds adds to `total` (a `delete` adds one per file, as
//! Litestream counts deletes) and, for `PUT` and `GET`, to `bytes`. A request that fails
//! adds to `errors` under a code named after the [`StorageError`] kind; `NotFound` and
//! `Precondition` are answers the contract defines (a missing lock file, a lost race),
//! not failures, and count in neither. Every request, whatever its outcome, is timed into
//! a histogram with Litestream's buckets ([`DURATION_BUCKETS_SECONDS`]). `head_name` is a
//! `GET` (Litestream has no HEAD operation); a streamed `get` is timed until its body
//! starts, and its bytes are counted as they arrive.

use std::collections::BTreeMap;
use std::future::Future;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures::TryStreamExt;
use ltx::Level;
use serde::{Deserialize, Serialize};

use super::layout::v3::V3File;
use super::{
    ByteStream, ETag, ErrorKind, LtxInfo, LtxKey, NamedObject, NamedStore, ReplicaStore,
    StorageError, V3Store,
};

/// A kind of storage request, named as Litestream's `operation` label names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Put,
    Get,
    Delete,
    List,
}

impl Operation {
    pub const ALL: [Operation; 4] = [
        Operation::Put,
        Operation::Get,
        Operation::Delete,
        Operation::List,
    ];

    /// The `operation` label value.
    pub fn label(self) -> &'static str {
        match self {
            Operation::Put => "PUT",
            Operation::Get => "GET",
            Operation::Delete => "DELETE",
            Operation::List => "LIST",
        }
    }
}

/// Upper bounds of the duration histogram's buckets, in seconds: Litestream's
/// `litestream_replica_operation_duration_seconds` buckets.
pub const DURATION_BUCKETS_SECONDS: [f64; 9] = [0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0];

/// The `code` label values of failed requests, one per failing [`StorageError`] kind.
pub const ERROR_CODES: [&str; 4] = ["AccessDenied", "NoSpace", "Transient", "Permanent"];

/// The code a failure is counted under; `None` for answers that are not failures.
fn error_code(e: &StorageError) -> Option<usize> {
    match e.kind() {
        ErrorKind::NotFound | ErrorKind::Precondition => None,
        ErrorKind::PermissionDenied => Some(0),
        ErrorKind::NoSpace => Some(1),
        ErrorKind::Transient => Some(2),
        ErrorKind::Permanent => Some(3),
    }
}

/// The figures of one operation.
#[derive(Debug, Default)]
struct Cells {
    total: AtomicU64,
    bytes: AtomicU64,
    /// Requests per bucket, not cumulative; the last one is above the highest bound.
    buckets: [AtomicU64; DURATION_BUCKETS_SECONDS.len() + 1],
    micros: AtomicU64,
    errors: [AtomicU64; ERROR_CODES.len()],
}

/// Live per-operation figures of one store, shared by the [`MeteredStore`] that fills
/// them and whoever reports them.
#[derive(Debug, Default)]
pub struct StoreOps {
    ops: [Cells; 4],
    /// Every request of the last minute, for the recent request rate.
    recent: RecentRequests,
}

/// The window of [`StoreOps::requests_per_second`].
pub const RATE_WINDOW_SECS: u64 = 60;

/// Requests per second of wall-clock time over the last [`RATE_WINDOW_SECS`]: one
/// counter per second in a ring, each tagged with its second. No timer: a slot is
/// reused when its second comes round again, and reads skip stale ones.
#[derive(Debug)]
struct RecentRequests {
    /// (Unix second, requests in it) per slot.
    slots: std::sync::Mutex<[(u64, u64); RATE_WINDOW_SECS as usize]>,
    /// The Unix second of the first request (the window is shorter until a minute has
    /// passed since).
    first: AtomicU64,
}

impl Default for RecentRequests {
    fn default() -> RecentRequests {
        RecentRequests {
            slots: std::sync::Mutex::new([(0, 0); RATE_WINDOW_SECS as usize]),
            first: AtomicU64::new(0),
        }
    }
}

impl RecentRequests {
    fn record(&self, now_secs: u64) {
        let _ = self
            .first
            .compare_exchange(0, now_secs, Ordering::Relaxed, Ordering::Relaxed);
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let slot = &mut slots[(now_secs % RATE_WINDOW_SECS) as usize];
        if slot.0 != now_secs {
            *slot = (now_secs, 0);
        }
        slot.1 += 1;
    }

    /// Requests per second over the last window up to `now_secs` (the current second
    /// counts as a whole one).
    fn per_second(&self, now_secs: u64) -> f64 {
        let first = self.first.load(Ordering::Relaxed);
        if first == 0 {
            return 0.0;
        }
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let n: u64 = slots
            .iter()
            .filter(|(s, _)| *s + RATE_WINDOW_SECS > now_secs && *s <= now_secs)
            .map(|(_, n)| n)
            .sum();
        let window = (now_secs.saturating_sub(first) + 1).min(RATE_WINDOW_SECS);
        n as f64 / window as f64
    }
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl StoreOps {
    fn cells(&self, op: Operation) -> &Cells {
        &self.ops[op as usize]
    }

    /// Records one request of `op` that took `took`: on success `n` operations moving
    /// `bytes`; on failure its error.
    pub fn record(
        &self,
        op: Operation,
        took: Duration,
        outcome: Result<(u64, u64), &StorageError>,
    ) {
        self.recent.record(unix_secs());
        let c = self.cells(op);
        let secs = took.as_secs_f64();
        let i = DURATION_BUCKETS_SECONDS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(DURATION_BUCKETS_SECONDS.len());
        c.buckets[i].fetch_add(1, Ordering::Relaxed);
        c.micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        match outcome {
            Ok((n, bytes)) => {
                c.total.fetch_add(n, Ordering::Relaxed);
                c.bytes.fetch_add(bytes, Ordering::Relaxed);
            }
            Err(e) => {
                if let Some(code) = error_code(e) {
                    c.errors[code].fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Requests per second to the store over the last minute (every operation, whatever
    /// its outcome: each is a request the store bills).
    pub fn requests_per_second(&self) -> f64 {
        self.recent.per_second(unix_secs())
    }

    fn add_bytes(&self, op: Operation, bytes: u64) {
        self.cells(op).bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// A plain copy of every operation that has seen a request.
    pub fn figures(&self) -> Vec<OperationFigures> {
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Operation::ALL
            .iter()
            .filter_map(|op| {
                let c = self.cells(*op);
                // Cumulative from the per-bucket cells, so the copy is monotone and its
                // count is the +Inf bucket even while requests land during the copy.
                let mut acc = 0;
                let mut buckets: Vec<u64> = c
                    .buckets
                    .iter()
                    .map(|b| {
                        acc += n(b);
                        acc
                    })
                    .collect();
                let count = buckets.pop().unwrap_or(0);
                if count == 0 {
                    return None;
                }
                Some(OperationFigures {
                    operation: op.label().to_string(),
                    total: n(&c.total),
                    bytes: n(&c.bytes),
                    duration_count: count,
                    duration_seconds_sum: n(&c.micros) as f64 / 1e6,
                    duration_buckets: buckets,
                    errors: ERROR_CODES
                        .iter()
                        .zip(&c.errors)
                        .filter(|(_, e)| n(e) > 0)
                        .map(|(code, e)| (code.to_string(), n(e)))
                        .collect(),
                })
            })
            .collect()
    }
}

/// One operation's figures since the daemon started, as reports carry them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OperationFigures {
    /// `PUT`, `GET`, `DELETE` or `LIST`.
    pub operation: String,
    /// Successful operations (a multi-file delete counts each file).
    pub total: u64,
    /// Bytes written (`PUT`) or read (`GET`) by successful requests.
    pub bytes: u64,
    /// Requests timed, whatever their outcome.
    pub duration_count: u64,
    pub duration_seconds_sum: f64,
    /// Cumulative request counts at each of [`DURATION_BUCKETS_SECONDS`].
    pub duration_buckets: Vec<u64>,
    /// Failed requests by code ([`ERROR_CODES`]); codes never seen are absent.
    pub errors: BTreeMap<String, u64>,
}

/// A [`ReplicaStore`] that measures every request to `inner` into [`StoreOps`].
pub struct MeteredStore {
    inner: Arc<dyn ReplicaStore>,
    ops: Arc<StoreOps>,
}

impl MeteredStore {
    pub fn new(inner: Arc<dyn ReplicaStore>, ops: Arc<StoreOps>) -> MeteredStore {
        MeteredStore { inner, ops }
    }

    /// Runs one request of `op`, recording it; `size` says how many operations and bytes
    /// a success was.
    async fn timed<T>(
        &self,
        op: Operation,
        call: impl Future<Output = Result<T, StorageError>>,
        size: impl FnOnce(&T) -> (u64, u64),
    ) -> Result<T, StorageError> {
        let t = Instant::now();
        let r = call.await;
        self.ops.record(op, t.elapsed(), r.as_ref().map(size));
        r.map_err(|e| e.during(op.label()))
    }
}

fn one(_: &impl Sized) -> (u64, u64) {
    (1, 0)
}

fn read(b: &Bytes) -> (u64, u64) {
    (1, b.len() as u64)
}

#[async_trait]
impl ReplicaStore for MeteredStore {
    fn location(&self) -> &str {
        self.inner.location()
    }

    fn set_file_mode(&self, mode: crate::fsutil::FileMode) {
        self.inner.set_file_mode(mode)
    }

    fn close_idle(&self) {
        self.inner.close_idle()
    }

    fn restore_chunk_bytes(&self) -> u64 {
        self.inner.restore_chunk_bytes()
    }

    async fn list(&self, level: Level) -> Result<Vec<LtxInfo>, StorageError> {
        self.timed(Operation::List, self.inner.list(level), one)
            .await
    }

    async fn levels_present(&self) -> Result<Option<Vec<Level>>, StorageError> {
        // One LIST when the store answers; `Ok(None)` asked nothing of it.
        let t = Instant::now();
        let r = self.inner.levels_present().await;
        if !matches!(r, Ok(None)) {
            self.ops
                .record(Operation::List, t.elapsed(), r.as_ref().map(|_| (1, 0)));
        }
        r.map_err(|e| e.during(Operation::List.label()))
    }

    async fn get(&self, key: &LtxKey, range: Option<Range<u64>>) -> Result<Bytes, StorageError> {
        self.timed(Operation::Get, self.inner.get(key, range), read)
            .await
    }

    async fn get_stream(
        &self,
        key: &LtxKey,
        range: Range<u64>,
    ) -> Result<ByteStream, StorageError> {
        let s = self
            .timed(Operation::Get, self.inner.get_stream(key, range), one)
            .await?;
        let ops = self.ops.clone();
        Ok(Box::pin(s.inspect_ok(move |b| {
            ops.add_bytes(Operation::Get, b.len() as u64)
        })))
    }

    async fn put(
        &self,
        key: &LtxKey,
        data: Bytes,
        created: SystemTime,
    ) -> Result<(), StorageError> {
        let n = data.len() as u64;
        self.timed(Operation::Put, self.inner.put(key, data, created), |_| {
            (1, n)
        })
        .await
    }

    async fn put_file(
        &self,
        key: &LtxKey,
        file: &std::fs::File,
        len_bytes: u64,
        created: SystemTime,
    ) -> Result<(), StorageError> {
        self.timed(
            Operation::Put,
            self.inner.put_file(key, file, len_bytes, created),
            |_| (1, len_bytes),
        )
        .await
    }

    async fn delete(&self, keys: &[LtxKey]) -> Result<(), StorageError> {
        let n = keys.len() as u64;
        self.timed(Operation::Delete, self.inner.delete(keys), |_| (n, 0))
            .await
    }

    async fn list_exact_times(&self, level: Level) -> Result<Vec<LtxInfo>, StorageError> {
        self.timed(Operation::List, self.inner.list_exact_times(level), one)
            .await
    }

    fn named(&self) -> Result<&dyn NamedStore, StorageError> {
        self.inner.named()?;
        Ok(self)
    }

    fn v3(&self) -> Result<&dyn V3Store, StorageError> {
        self.inner.v3()?;
        Ok(self)
    }
}

#[async_trait]
impl NamedStore for MeteredStore {
    async fn put_name(&self, name: &str, data: Bytes) -> Result<(), StorageError> {
        let n = data.len() as u64;
        self.timed(
            Operation::Put,
            async { self.inner.named()?.put_name(name, data).await },
            |_| (1, n),
        )
        .await
    }

    async fn get_name(&self, name: &str, range: Option<Range<u64>>) -> Result<Bytes, StorageError> {
        self.timed(
            Operation::Get,
            async { self.inner.named()?.get_name(name, range).await },
            read,
        )
        .await
    }

    async fn head_name(&self, name: &str) -> Result<NamedObject, StorageError> {
        self.timed(
            Operation::Get,
            async { self.inner.named()?.head_name(name).await },
            one,
        )
        .await
    }

    async fn delete_name(&self, name: &str) -> Result<(), StorageError> {
        self.timed(
            Operation::Delete,
            async { self.inner.named()?.delete_name(name).await },
            one,
        )
        .await
    }

    async fn put_if_absent(
        &self,
        key: &LtxKey,
        data: Bytes,
        created: SystemTime,
    ) -> Result<(), StorageError> {
        let n = data.len() as u64;
        self.timed(
            Operation::Put,
            async { self.inner.named()?.put_if_absent(key, data, created).await },
            |_| (1, n),
        )
        .await
    }

    async fn create_name(&self, name: &str, data: Bytes) -> Result<ETag, StorageError> {
        let n = data.len() as u64;
        self.timed(
            Operation::Put,
            async { self.inner.named()?.create_name(name, data).await },
            |_| (1, n),
        )
        .await
    }

    async fn get_name_versioned(&self, name: &str) -> Result<(Bytes, ETag), StorageError> {
        self.timed(
            Operation::Get,
            async { self.inner.named()?.get_name_versioned(name).await },
            |(b, _)| (1, b.len() as u64),
        )
        .await
    }

    async fn put_name_if_match(
        &self,
        name: &str,
        data: Bytes,
        etag: &ETag,
    ) -> Result<ETag, StorageError> {
        let n = data.len() as u64;
        self.timed(
            Operation::Put,
            async {
                self.inner
                    .named()?
                    .put_name_if_match(name, data, etag)
                    .await
            },
            |_| (1, n),
        )
        .await
    }
}

#[async_trait]
impl V3Store for MeteredStore {
    async fn list_v3(&self) -> Result<Vec<V3File>, StorageError> {
        self.timed(
            Operation::List,
            async { self.inner.v3()?.list_v3().await },
            one,
        )
        .await
    }

    async fn get_v3(&self, file: &V3File) -> Result<Bytes, StorageError> {
        self.timed(
            Operation::Get,
            async { self.inner.v3()?.get_v3(file).await },
            read,
        )
        .await
    }

    async fn get_v3_range(&self, file: &V3File, range: Range<u64>) -> Result<Bytes, StorageError> {
        self.timed(
            Operation::Get,
            async { self.inner.v3()?.get_v3_range(file, range).await },
            read,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::file::FileStore;
    use ltx::TxId;

    fn key(t: u64) -> LtxKey {
        let t = TxId::new(t).unwrap();
        LtxKey::new(Level::L0, t, t)
    }

    #[test]
    fn recent_rate_counts_the_last_minute_only() {
        let r = RecentRequests::default();
        assert_eq!(r.per_second(1000), 0.0);
        // 2 requests a second for 10 s: 2/s over the 10 s seen so far.
        for s in 1000..1010 {
            r.record(s);
            r.record(s);
        }
        assert_eq!(r.per_second(1009), 2.0);
        // Then 1 a second for two minutes: the first burst has left the window.
        for s in 1010..1130 {
            r.record(s);
        }
        assert_eq!(r.per_second(1129), 1.0);
        // Quiet for 30 s: half the window is empty.
        assert_eq!(r.per_second(1159), 0.5);
        // Quiet for longer than the window: nothing left.
        assert_eq!(r.per_second(1200), 0.0);
    }

    #[test]
    fn durations_fall_in_litestreams_buckets_and_failures_by_code() {
        let ops = StoreOps::default();
        let ms = Duration::from_millis;
        ops.record(Operation::Put, ms(5), Ok((1, 100)));
        ops.record(Operation::Put, ms(70), Ok((1, 50)));
        ops.record(Operation::Put, ms(90_000), Ok((1, 1)));
        let transient = StorageError::transient("s3://b", "x", "503");
        ops.record(Operation::Put, ms(20), Err(&transient));
        let missing = StorageError::not_found("s3://b", "lock.json");
        ops.record(Operation::Get, ms(1), Err(&missing));
        let f = ops.figures();
        assert_eq!(f.len(), 2, "operations never requested are absent: {f:?}");
        let put = &f[0];
        assert_eq!(put.operation, "PUT");
        assert_eq!((put.total, put.bytes, put.duration_count), (3, 151, 4));
        assert_eq!(put.duration_buckets, vec![1, 2, 3, 3, 3, 3, 3, 3, 3]);
        assert!((put.duration_seconds_sum - 90.095).abs() < 1e-9, "{put:?}");
        assert_eq!(put.errors, BTreeMap::from([("Transient".to_string(), 1)]));
        let get = &f[1];
        assert_eq!((get.operation.as_str(), get.total), ("GET", 0));
        assert_eq!(get.duration_count, 1);
        assert!(get.errors.is_empty(), "NotFound is an answer: {get:?}");
    }

    #[tokio::test]
    async fn every_request_through_the_wrapper_is_measured() {
        let dir = tempfile::tempdir().unwrap();
        let ops = Arc::new(StoreOps::default());
        let s = MeteredStore::new(Arc::new(FileStore::new(dir.path())), ops.clone());
        let file = Bytes::from(vec![7u8; 100]);
        s.put(&key(1), file.clone(), SystemTime::now())
            .await
            .unwrap();
        assert_eq!(s.list(Level::L0).await.unwrap().len(), 1);
        assert_eq!(s.get(&key(1), None).await.unwrap(), file);
        let streamed: Vec<Bytes> = s
            .get_stream(&key(1), 0..10)
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        assert_eq!(streamed.concat().len(), 10);
        s.delete(&[key(1), key(2)]).await.unwrap();
        let by_op: BTreeMap<String, OperationFigures> = ops
            .figures()
            .into_iter()
            .map(|f| (f.operation.clone(), f))
            .collect();
        let f = |op: &str| by_op.get(op).unwrap_or_else(|| panic!("{op}: {by_op:?}"));
        assert_eq!((f("PUT").total, f("PUT").bytes), (1, file.len() as u64));
        assert_eq!(
            (f("GET").total, f("GET").bytes),
            (2, file.len() as u64 + 10)
        );
        assert_eq!((f("LIST").total, f("DELETE").total), (1, 2));
        for op in by_op.values() {
            assert!(op.duration_seconds_sum > 0.0, "{op:?}");
        }
    }
}
