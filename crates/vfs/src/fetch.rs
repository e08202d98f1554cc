//! Ranged GETs with retries, on the extension's own runtime, through the disk cache.
//!
//! Owns: the tokio runtime that every store call of the extension runs on (SQLite calls
//! the VFS from its own threads, synchronously); the retry rule: a transient error is
//! retried with backoff (0.1 s, 0.2 s, 0.4 s), anything else fails at once, naming the
//! object; and [`Source`], where a byte range of an LTX file comes from: the disk cache's
//! blocks when there is one (the blocks it lacks fetched, a run of neighbours in one GET,
//! the runs concurrently, and stored), else one GET.

use std::future::Future;
use std::ops::Range;
use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use engine::storage::{LtxKey, ReplicaStore};

use crate::disk::{DiskCache, FileId, Lookup, BLOCK_BYTES};
use crate::error::VfsError;
use engine::storage::LtxInfo;
use std::sync::Arc;

const ATTEMPTS: u32 = 4;

/// Runs `f` to completion on the extension's runtime (two worker threads, started on first
/// use and kept for the life of the process, as the extension is).
pub fn block_on<F: Future>(f: F) -> F::Output {
    runtime().block_on(f)
}

/// Runs `f` in the background on the extension's runtime (prefetch, hydration).
pub fn spawn_task<F>(f: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    runtime().spawn(f)
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("sqlite-replicate-vfs")
            .enable_all()
            .build()
            .expect("starting the VFS's runtime")
    })
}

/// `store.get(key, range)`, retried while the error is transient.
pub async fn get_with_retry(
    store: &dyn ReplicaStore,
    key: &LtxKey,
    range: Option<Range<u64>>,
) -> Result<Bytes, VfsError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match store.get(key, range.clone()).await {
            Ok(b) => {
                if let Some(r) = &range {
                    if b.len() as u64 != r.end - r.start {
                        return Err(VfsError::bad_file(
                            store,
                            key,
                            format!(
                                "bytes {}..{} came back as {} bytes (truncated?)",
                                r.start,
                                r.end,
                                b.len()
                            ),
                        ));
                    }
                }
                return Ok(b);
            }
            Err(e) if e.is_retryable() && attempt < ATTEMPTS => {
                tokio::time::sleep(Duration::from_millis(100 << (attempt - 1))).await;
            }
            Err(e) => return Err(VfsError::storage(store, key, e)),
        }
    }
}

/// Where the bytes of LTX files come from: the store, through the disk cache if any.
#[derive(Clone)]
pub struct Source {
    pub store: Arc<dyn ReplicaStore>,
    pub disk: Option<Arc<DiskCache>>,
}

/// Bytes read, and what reading them cost.
#[derive(Default)]
pub struct Fetched {
    pub bytes: Bytes,
    pub cost: Cost,
}

/// What reads cost.
#[derive(Clone, Copy, Debug, Default)]
pub struct Cost {
    /// GETs sent to the store, and the bytes they returned.
    pub gets: u64,
    pub bytes_fetched: u64,
    /// Blocks served by the disk cache, and entries found damaged (fetched again).
    pub disk_hits: u64,
    pub disk_bad: u64,
}

impl std::ops::AddAssign for Cost {
    fn add_assign(&mut self, o: Cost) {
        self.gets += o.gets;
        self.bytes_fetched += o.bytes_fetched;
        self.disk_hits += o.disk_hits;
        self.disk_bad += o.disk_bad;
    }
}

impl Source {
    /// Bytes `range` of the file `info` (within its listed size).
    pub async fn read(&self, info: &LtxInfo, range: Range<u64>) -> Result<Fetched, VfsError> {
        let Some(disk) = &self.disk else {
            let bytes = get_with_retry(self.store.as_ref(), &info.key, Some(range)).await?;
            let cost = Cost {
                gets: 1,
                bytes_fetched: bytes.len() as u64,
                ..Cost::default()
            };
            return Ok(Fetched { bytes, cost });
        };
        let id = FileId::new(self.store.location(), info);
        let blocks = range.start / BLOCK_BYTES..range.end.div_ceil(BLOCK_BYTES);
        let mut out = Fetched::default();
        let mut have: Vec<Option<Bytes>> = Vec::with_capacity(blocks.clone().count());
        for b in blocks.clone() {
            have.push(match disk.get(&id, b) {
                Lookup::Hit(d) => {
                    out.cost.disk_hits += 1;
                    Some(d)
                }
                Lookup::Bad => {
                    out.cost.disk_bad += 1;
                    None
                }
                Lookup::Miss => None,
            });
        }
        // Runs of missing blocks: one GET each, all at once.
        let mut runs = Vec::new();
        let mut i = 0;
        while i < have.len() {
            if have[i].is_some() {
                i += 1;
                continue;
            }
            let from = i;
            while i < have.len() && have[i].is_none() {
                i += 1;
            }
            let start = (blocks.start + from as u64) * BLOCK_BYTES;
            let end = ((blocks.start + i as u64) * BLOCK_BYTES).min(info.size_bytes);
            runs.push((from, start..end));
        }
        let gets = runs
            .iter()
            .map(|(_, r)| get_with_retry(self.store.as_ref(), &info.key, Some(r.clone())));
        let fetched = futures::future::try_join_all(gets).await?;
        for ((from, r), bytes) in runs.into_iter().zip(fetched) {
            out.cost.gets += 1;
            out.cost.bytes_fetched += bytes.len() as u64;
            for (n, chunk) in bytes.chunks(BLOCK_BYTES as usize).enumerate() {
                let b = r.start / BLOCK_BYTES + n as u64;
                disk.put(&id, b, chunk);
                have[from + n] = Some(bytes.slice_ref(chunk));
            }
        }
        let mut joined = Vec::with_capacity((range.end - range.start) as usize);
        for (n, block) in have.into_iter().enumerate() {
            let block = block.expect("every block found or fetched");
            let at = (blocks.start + n as u64) * BLOCK_BYTES;
            let from = range.start.saturating_sub(at) as usize;
            let to = ((range.end - at) as usize).min(block.len());
            if from > to {
                return Err(VfsError::bad_file(
                    self.store.as_ref(),
                    &info.key,
                    format!("bytes {}..{} lie past its end", range.start, range.end),
                ));
            }
            joined.extend_from_slice(&block[from..to]);
        }
        if joined.len() as u64 != range.end - range.start {
            return Err(VfsError::bad_file(
                self.store.as_ref(),
                &info.key,
                format!(
                    "bytes {}..{} came back as {} bytes (truncated?)",
                    range.start,
                    range.end,
                    joined.len()
                ),
            ));
        }
        out.bytes = Bytes::from(joined);
        Ok(out)
    }
}
