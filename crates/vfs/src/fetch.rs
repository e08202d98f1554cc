//! Ranged GETs with retries, on the extension's own runtime.
//!
//! Owns: the tokio runtime that every store call of the extension runs on (SQLite calls
//! the VFS from its own threads, synchronously), and the retry rule: a transient error is
//! retried with backoff (0.1 s, 0.2 s, 0.4 s), anything else fails at once, naming the
//! object.

use std::future::Future;
use std::ops::Range;
use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use engine::storage::{LtxKey, ReplicaStore};

use crate::error::VfsError;

const ATTEMPTS: u32 = 4;

/// Runs `f` to completion on the extension's runtime (two worker threads, started on first
/// use and kept for the life of the process, as the extension is).
pub fn block_on<F: Future>(f: F) -> F::Output {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("sqlite-replicate-vfs")
            .enable_all()
            .build()
            .expect("starting the VFS's runtime")
    })
    .block_on(f)
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
