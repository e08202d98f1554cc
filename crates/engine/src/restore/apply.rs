//! Executing a restore plan: fetch the planned files, merge them newest-page-wins into a
//! temp file next to the output, verify, and only then put the result in place.
//!
//! Owns: the fetch pipeline (ranged reads, several in flight, memory bounded by
//! `parallelism` chunks), the page merge (newest file first, a bitmap of pages already
//! written, so each page is written once), verification (every file's CRC, every page
//! present, optional `PRAGMA quick_check`/`integrity_check`), and the final
//! fsync → rename → directory fsync. The output path is not touched before everything
//! is verified. Planning is not done here (see `plan`).

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures::StreamExt;
use ltx::{Decoder, PageNo, PageSize};

use super::plan::Plan;
use crate::fsutil;
use crate::storage::layout::{LtxInfo, LtxKey};
use crate::storage::{ReplicaStore, StorageError};

/// Bytes fetched per ranged read.
const CHUNK_BYTES: u64 = 8 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum IntegrityCheck {
    #[default]
    None,
    Quick,
    Full,
}

#[derive(Clone, Debug)]
pub struct ApplyOptions {
    pub parallelism: usize,
    pub integrity: IntegrityCheck,
    /// Replace an existing output (and remove its stale `-wal`/`-shm`).
    pub force: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{path} already exists (use -force to replace it)")]
    OutputExists { path: PathBuf },
    #[error("{file}: {source}")]
    Fetch { file: String, source: StorageError },
    #[error("{file}: {source}")]
    Decode {
        file: String,
        source: ltx::DecodeError,
    },
    /// The header's TXIDs are not the ones the file's name promises: a file renamed or
    /// copied over another; applying it would put the wrong history under that TXID.
    #[error("{file}: at byte 16: the header holds TXIDs {header_min}-{header_max}, not the ones its name says (misnamed or replaced file)")]
    NameMismatch {
        file: String,
        header_min: ltx::TxId,
        header_max: ltx::TxId,
    },
    #[error("{file}: page size {got} differs from the plan's {want}")]
    PageSizeMismatch { file: String, got: u32, want: u32 },
    #[error(
        "restored database is missing page {pgno} of {commit}: the snapshot {file} is incomplete"
    )]
    MissingPage {
        pgno: u32,
        commit: u32,
        file: String,
    },
    #[error("{path}: {op}: {source}")]
    Io {
        path: PathBuf,
        op: &'static str,
        source: io::Error,
    },
    #[error("integrity check failed on the restored database: {detail}")]
    Integrity { detail: String },
    #[error("empty plan")]
    EmptyPlan,
    /// Restoring a Litestream 0.3 generation failed (`restore::v3`).
    #[error(transparent)]
    V3(#[from] super::v3::V3ApplyError),
}

/// What a restore did, for the CLI and drills.
#[derive(Clone, Debug)]
pub struct ApplyReport {
    pub files: usize,
    pub bytes_fetched: u64,
    pub pages: u32,
    pub page_size: u32,
    pub seconds: f64,
}

/// Refuses to proceed if the output or its sidecars exist, unless `force`.
pub fn check_output(out: &Path, force: bool) -> Result<(), ApplyError> {
    if force {
        return Ok(());
    }
    for p in sidecars(out)
        .into_iter()
        .chain(std::iter::once(out.to_path_buf()))
    {
        if p.exists() {
            return Err(ApplyError::OutputExists { path: p });
        }
    }
    Ok(())
}

fn sidecars(out: &Path) -> Vec<PathBuf> {
    ["-wal", "-shm", "-journal"]
        .iter()
        .map(|s| {
            let mut p = out.as_os_str().to_os_string();
            p.push(s);
            PathBuf::from(p)
        })
        .collect()
}

/// Restores `plan` from `store` into `out`.
pub async fn apply(
    store: Arc<dyn ReplicaStore>,
    plan: &Plan,
    out: &Path,
    opts: &ApplyOptions,
) -> Result<ApplyReport, ApplyError> {
    let started = Instant::now();
    check_output(out, opts.force)?;
    let newest = plan.files.last().ok_or(ApplyError::EmptyPlan)?.clone();
    // The newest file's header gives the final size and the page size.
    // A file shorter than a header is reported by the decoder (with its offset), not as a
    // range the store cannot serve.
    let head = get_retrying(
        store.as_ref(),
        &newest.key,
        0..newest.size_bytes.min(ltx::HEADER_SIZE as u64),
    )
    .await
    .map_err(|source| ApplyError::Fetch {
        file: newest.key.to_string(),
        source,
    })?;
    let header = ltx::Header::from_bytes(&head).map_err(|source| ApplyError::Decode {
        file: newest.key.to_string(),
        source,
    })?;
    check_name(&newest.key, &header)?;
    let page_size = header.page_size;
    let commit = header.commit;

    // A restore killed earlier (kill -9, power loss) left its temp file: not ours to keep.
    let _ = fsutil::remove_stale_tmp_of(out);
    let tmp = fsutil::tmp_path(out);
    let io_err = |op| {
        let path = tmp.clone();
        move |source| ApplyError::Io { path, op, source }
    };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(io_err("create"))?;
    let result = async {
        file.set_len(commit as u64 * page_size.get() as u64)
            .map_err(io_err("size"))?;
        let file = Arc::new(file);
        let mut written = Bitmap::new(commit);
        let mut bytes_fetched = 0;
        // Newest first: the first version of a page we meet is the one that wins.
        for info in plan.files.iter().rev() {
            bytes_fetched += info.size_bytes;
            let (w, res) = apply_file(
                store.clone(),
                info.clone(),
                file.clone(),
                written,
                page_size,
                commit,
                opts.parallelism,
            )
            .await;
            written = w;
            res?;
        }
        let lock = page_size.lock_page();
        if let Some(pgno) = (1..=commit).find(|&p| p != lock.get() && !written.get(p)) {
            return Err(ApplyError::MissingPage {
                pgno,
                commit,
                file: plan.files[0].key.to_string(),
            });
        }
        file.sync_all().map_err(io_err("fsync"))?;
        verify_integrity(&tmp, opts.integrity)?;
        install(&tmp, out, opts.force)?;
        Ok(ApplyReport {
            files: plan.files.len(),
            bytes_fetched,
            pages: commit,
            page_size: page_size.get(),
            seconds: started.elapsed().as_secs_f64(),
        })
    }
    .await;
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Puts a verified, fsynced temp file in place: with `force`, removes the output's stale
/// `-wal`/`-shm`/`-journal` first (SQLite would otherwise replay an old WAL over the
/// restored file), then renames and fsyncs the directory. The only step that touches the
/// output path, so it runs after every check has passed.
pub(super) fn install(tmp: &Path, out: &Path, force: bool) -> Result<(), ApplyError> {
    if force {
        for p in sidecars(out) {
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(ApplyError::Io {
                        path: p,
                        op: "remove stale sidecar",
                        source,
                    })
                }
            }
        }
    }
    std::fs::rename(tmp, out).map_err(|source| ApplyError::Io {
        path: out.to_path_buf(),
        op: "rename into place",
        source,
    })?;
    fsutil::sync_parent_dir(out).map_err(|source| ApplyError::Io {
        path: out.to_path_buf(),
        op: "fsync directory",
        source,
    })
}

/// Attempts per ranged read before a transient error (timeout, 5xx, reset) fails a restore.
const FETCH_ATTEMPTS: u32 = 5;

/// A ranged read, retried with backoff (0.2 s, 0.4 s, ...) while the error is transient.
/// A response shorter than the range asked for is refused here, so a connection cut
/// mid-body is retried like any transient failure rather than decoded as a damaged file.
async fn get_retrying(
    store: &dyn ReplicaStore,
    key: &LtxKey,
    range: std::ops::Range<u64>,
) -> Result<Bytes, StorageError> {
    let want = range.end - range.start;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let r = match store.get(key, Some(range.clone())).await {
            Ok(b) if b.len() as u64 != want => Err(StorageError::Transient {
                location: store.location().to_string(),
                what: key.to_string(),
                detail: format!(
                    "short read: asked for bytes {}..{}, got {}",
                    range.start,
                    range.end,
                    b.len()
                ),
            }),
            r => r,
        };
        match r {
            Err(e) if e.is_retryable() && attempt < FETCH_ATTEMPTS => {
                tracing::warn!(file = %key, attempt, error = %e, "fetch failed, retrying");
                tokio::time::sleep(std::time::Duration::from_millis(100 << attempt)).await;
            }
            r => return r,
        }
    }
}

/// Streams one file through the decoder on a blocking thread while ranged fetches run
/// ahead of it. Returns the bitmap back (it moves between threads).
async fn apply_file(
    store: Arc<dyn ReplicaStore>,
    info: LtxInfo,
    out: Arc<File>,
    mut written: Bitmap,
    page_size: PageSize,
    commit: u32,
    parallelism: usize,
) -> (Bitmap, Result<(), ApplyError>) {
    let name = info.key.to_string();
    let depth = parallelism.max(1);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, StorageError>>(depth);
    let size = info.size_bytes;
    let key = info.key;
    let fetcher = tokio::spawn(async move {
        let ranges: Vec<_> = (0..size.div_ceil(CHUNK_BYTES))
            .map(|i| i * CHUNK_BYTES..((i + 1) * CHUNK_BYTES).min(size))
            .collect();
        let mut chunks = futures::stream::iter(ranges)
            .map(|r| {
                let store = store.clone();
                async move { get_retrying(store.as_ref(), &key, r).await }
            })
            .buffered(depth);
        while let Some(c) = chunks.next().await {
            let stop = c.is_err();
            if tx.send(c).await.is_err() || stop {
                break;
            }
        }
    });
    let joined = tokio::task::spawn_blocking(move || {
        let reader = ChunkReader {
            rx,
            cur: Bytes::new(),
            fetch_error: None,
        };
        let r = decode_into(reader, &out, &mut written, page_size, commit, &key);
        (written, r)
    })
    .await;
    fetcher.abort();
    match joined {
        Ok((w, r)) => (w, r),
        Err(e) => (
            Bitmap::new(commit),
            Err(ApplyError::Io {
                path: PathBuf::from(name),
                op: "decode task",
                source: io::Error::other(e.to_string()),
            }),
        ),
    }
}

fn decode_into(
    mut reader: ChunkReader,
    out: &File,
    written: &mut Bitmap,
    page_size: PageSize,
    commit: u32,
    key: &LtxKey,
) -> Result<(), ApplyError> {
    let name = &key.to_string();
    let map_dec =
        |reader: &mut ChunkReader, source: ltx::DecodeError| match reader.fetch_error.take() {
            Some(source) => ApplyError::Fetch {
                file: name.to_string(),
                source,
            },
            None => ApplyError::Decode {
                file: name.to_string(),
                source,
            },
        };
    let mut dec = match Decoder::new(&mut reader) {
        Ok(d) => d,
        Err(e) => return Err(map_dec(&mut reader, e)),
    };
    check_name(key, dec.header())?;
    if dec.header().page_size != page_size {
        return Err(ApplyError::PageSizeMismatch {
            file: name.to_string(),
            got: dec.header().page_size.get(),
            want: page_size.get(),
        });
    }
    let mut buf = vec![0u8; page_size.bytes()];
    let res = (|| -> Result<(), ltx::DecodeError> {
        while let Some(pgno) = dec.next_page(&mut buf)? {
            write_page(out, written, page_size, commit, pgno, &buf)
                .map_err(|e| ltx::DecodeError::io(0, e))?;
        }
        dec.finish().map(|_| ())
    })();
    res.map_err(|e| map_dec(&mut reader, e))
}

/// Refuses a file whose header TXIDs differ from its name's.
fn check_name(key: &LtxKey, h: &ltx::Header) -> Result<(), ApplyError> {
    if (h.min_txid, h.max_txid) == (key.min, key.max) {
        return Ok(());
    }
    Err(ApplyError::NameMismatch {
        file: key.to_string(),
        header_min: h.min_txid,
        header_max: h.max_txid,
    })
}

fn write_page(
    out: &File,
    written: &mut Bitmap,
    page_size: PageSize,
    commit: u32,
    pgno: PageNo,
    data: &[u8],
) -> io::Result<()> {
    let p = pgno.get();
    if p > commit || written.get(p) || pgno.is_lock_page(page_size) {
        return Ok(());
    }
    written.set(p);
    out.write_all_at(data, page_size.offset_of(pgno))
}

/// Runs SQLite's own check on the restored file before it is put in place.
pub fn verify_integrity(path: &Path, check: IntegrityCheck) -> Result<(), ApplyError> {
    let pragma = match check {
        IntegrityCheck::None => return Ok(()),
        IntegrityCheck::Quick => "PRAGMA quick_check",
        IntegrityCheck::Full => "PRAGMA integrity_check",
    };
    let uri = format!("file:{}?immutable=1", path.display());
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_URI;
    let conn =
        rusqlite::Connection::open_with_flags(&uri, flags).map_err(|e| ApplyError::Integrity {
            detail: e.to_string(),
        })?;
    let mut stmt = conn.prepare(pragma).map_err(|e| ApplyError::Integrity {
        detail: e.to_string(),
    })?;
    let rows: Vec<String> = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .and_then(|it| it.collect())
        .map_err(|e| ApplyError::Integrity {
            detail: e.to_string(),
        })?;
    if rows.len() == 1 && rows[0] == "ok" {
        Ok(())
    } else {
        Err(ApplyError::Integrity {
            detail: rows.into_iter().take(5).collect::<Vec<_>>().join("; "),
        })
    }
}

/// A `Read` over chunks arriving from the async fetcher.
struct ChunkReader {
    rx: tokio::sync::mpsc::Receiver<Result<Bytes, StorageError>>,
    cur: Bytes,
    fetch_error: Option<StorageError>,
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => {
                    let msg = e.to_string();
                    self.fetch_error = Some(e);
                    return Err(io::Error::other(msg));
                }
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        let _ = self.cur.split_to(n);
        Ok(n)
    }
}

/// One bit per page, 1-based.
struct Bitmap {
    bits: Vec<u64>,
}

impl Bitmap {
    fn new(pages: u32) -> Bitmap {
        Bitmap {
            bits: vec![0; (pages as usize + 64) / 64 + 1],
        }
    }
    fn get(&self, p: u32) -> bool {
        self.bits[p as usize / 64] & (1 << (p % 64)) != 0
    }
    fn set(&mut self, p: u32) {
        self.bits[p as usize / 64] |= 1 << (p % 64);
    }
}
