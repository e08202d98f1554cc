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
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures::StreamExt;
use ltx::{Decoder, PageSize};

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
        let bytes_fetched = plan.total_bytes();
        let out_file = file.try_clone().map_err(io_err("dup"))?;
        let written = merge(
            store,
            plan,
            out_file,
            &tmp,
            page_size,
            commit,
            opts.parallelism,
        )
        .await?;
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

/// Bytes of pages handed from the decoder to the writer at once.
const BATCH_BYTES: usize = 1 << 20;
/// Batches queued between the decoder and the writer.
const BATCHES_IN_FLIGHT: usize = 4;
/// The writer asks the kernel to start writeback after this many bytes, so the disk
/// works while later files decode and the final fsync has little left to do.
const WRITEBACK_EVERY: u64 = 16 << 20;

/// A fetched chunk, tagged with the index of its file in newest-first order.
type Chunk = (usize, Result<Bytes, StorageError>);

/// Consecutive pages decoded from the replica: `count` pages from `first` on, in `buf`.
struct Batch {
    first: u32,
    count: usize,
    buf: Vec<u8>,
}

/// Merges the plan's files into `out`, newest first, and returns the pages written.
///
/// Three stages run at once, with bounded queues between them: ranged fetches across
/// all files (`parallelism` in flight, running ahead into the next file), one decoder
/// (LZ4, page rules, file checksum) that groups consecutive pages into batches, and one
/// writer that drops pages a newer file already wrote (a bitmap) and writes each run
/// of remaining pages with a single positioned write.
async fn merge(
    store: Arc<dyn ReplicaStore>,
    plan: &Plan,
    out: File,
    out_path: &Path,
    page_size: PageSize,
    commit: u32,
    parallelism: usize,
) -> Result<Bitmap, ApplyError> {
    let depth = parallelism.max(1);
    let files: Vec<LtxInfo> = plan.files.iter().rev().cloned().collect();
    let ranges: Vec<(usize, LtxKey, Range<u64>)> = files
        .iter()
        .enumerate()
        .flat_map(|(i, f)| {
            let size = f.size_bytes;
            (0..size.div_ceil(CHUNK_BYTES))
                .map(move |c| (i, f.key, c * CHUNK_BYTES..((c + 1) * CHUNK_BYTES).min(size)))
        })
        .collect();
    // Fetched chunks wait in the buffered stream; the channel adds one more.
    let (chunk_tx, chunk_rx) = tokio::sync::mpsc::channel::<Chunk>(1);
    let fetcher = tokio::spawn(async move {
        let mut chunks = futures::stream::iter(ranges)
            .map(|(i, key, r)| {
                let store = store.clone();
                async move { (i, get_retrying(store.as_ref(), &key, r).await) }
            })
            .buffered(depth);
        while let Some((i, c)) = chunks.next().await {
            let stop = c.is_err();
            if chunk_tx.send((i, c)).await.is_err() || stop {
                break;
            }
        }
    });
    let (batch_tx, batch_rx) = std::sync::mpsc::sync_channel::<Batch>(BATCHES_IN_FLIGHT);
    let (free_tx, free_rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let keys: Vec<LtxKey> = files.iter().map(|f| f.key).collect();
    let decoder = tokio::task::spawn_blocking(move || {
        let reader = ChunkReader {
            rx: chunk_rx,
            file: 0,
            cur: Bytes::new(),
            pending: None,
            fetch_error: None,
        };
        let batcher = Batcher::new(page_size, batch_tx, free_rx);
        decode_all(reader, batcher, &keys, page_size)
    });
    let path = out_path.to_path_buf();
    let writer = tokio::task::spawn_blocking(move || {
        write_batches(&out, &path, batch_rx, free_tx, page_size, commit)
    });
    let decoded = decoder.await;
    let written = writer.await;
    fetcher.abort();
    let join_err = |e: tokio::task::JoinError| ApplyError::Io {
        path: out_path.to_path_buf(),
        op: "restore task",
        source: io::Error::other(e.to_string()),
    };
    match (decoded.map_err(join_err)?, written.map_err(join_err)?) {
        // A failed write stops the decoder too; the write error is the cause.
        (_, Err(e)) | (Err(e), Ok(_)) => Err(e),
        (Ok(()), Ok(bitmap)) => Ok(bitmap),
    }
}

/// Why the decoder stopped early.
enum Stop {
    /// The writer hung up (it failed; its error is reported).
    WriterGone,
    Failed(ApplyError),
}

/// Decodes every file in turn (newest first) into batches for the writer.
fn decode_all(
    mut reader: ChunkReader,
    mut batcher: Batcher,
    keys: &[LtxKey],
    page_size: PageSize,
) -> Result<(), ApplyError> {
    for (i, key) in keys.iter().enumerate() {
        reader.start_file(i);
        match decode_file(&mut reader, &mut batcher, page_size, key) {
            Ok(()) => {}
            Err(Stop::WriterGone) => return Ok(()),
            Err(Stop::Failed(e)) => return Err(e),
        }
    }
    let _ = batcher.flush();
    Ok(())
}

fn decode_file(
    reader: &mut ChunkReader,
    batcher: &mut Batcher,
    page_size: PageSize,
    key: &LtxKey,
) -> Result<(), Stop> {
    let name = &key.to_string();
    let result = (|| -> Result<Result<(), Stop>, ltx::DecodeError> {
        let mut dec = Decoder::new(&mut *reader)?;
        if let Err(e) = check_name(key, dec.header()) {
            return Ok(Err(Stop::Failed(e)));
        }
        if dec.header().page_size != page_size {
            return Ok(Err(Stop::Failed(ApplyError::PageSizeMismatch {
                file: name.to_string(),
                got: dec.header().page_size.get(),
                want: page_size.get(),
            })));
        }
        while let Some(pgno) = dec.next_page(batcher.slot())? {
            if batcher.commit(pgno.get()).is_err() {
                return Ok(Err(Stop::WriterGone));
            }
        }
        dec.finish()?;
        Ok(Ok(()))
    })();
    match result {
        Ok(r) => r,
        Err(source) => Err(Stop::Failed(match reader.fetch_error.take() {
            Some(source) => ApplyError::Fetch {
                file: name.to_string(),
                source,
            },
            None => ApplyError::Decode {
                file: name.to_string(),
                source,
            },
        })),
    }
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

/// Groups consecutive decoded pages into batch buffers, recycling the writer's.
struct Batcher {
    tx: std::sync::mpsc::SyncSender<Batch>,
    free: std::sync::mpsc::Receiver<Vec<u8>>,
    page_bytes: usize,
    cap: usize,
    buf: Vec<u8>,
    first: u32,
    count: usize,
}

struct WriterGone;

impl Batcher {
    fn new(
        page_size: PageSize,
        tx: std::sync::mpsc::SyncSender<Batch>,
        free: std::sync::mpsc::Receiver<Vec<u8>>,
    ) -> Batcher {
        let page_bytes = page_size.bytes();
        Batcher {
            tx,
            free,
            page_bytes,
            cap: (BATCH_BYTES / page_bytes).max(1),
            buf: Vec::new(),
            first: 0,
            count: 0,
        }
    }

    fn fresh_buffer(&self) -> Vec<u8> {
        self.free
            .try_recv()
            .unwrap_or_else(|_| vec![0; self.cap * self.page_bytes])
    }

    /// Where the next page is decoded to.
    fn slot(&mut self) -> &mut [u8] {
        if self.buf.is_empty() {
            self.buf = self.fresh_buffer();
        }
        let at = self.count * self.page_bytes;
        &mut self.buf[at..at + self.page_bytes]
    }

    /// Takes the page just decoded into `slot()` as page `pgno`.
    fn commit(&mut self, pgno: u32) -> Result<(), WriterGone> {
        let ps = self.page_bytes;
        if self.count > 0 && pgno != self.first + self.count as u32 {
            // It starts a new run: move it to a buffer of its own, send the run before.
            let mut next = self.fresh_buffer();
            next[..ps].copy_from_slice(&self.buf[self.count * ps..(self.count + 1) * ps]);
            let done = std::mem::replace(&mut self.buf, next);
            self.send(done, self.count)?;
            self.first = pgno;
            self.count = 1;
        } else {
            if self.count == 0 {
                self.first = pgno;
            }
            self.count += 1;
        }
        if self.count == self.cap {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), WriterGone> {
        if self.count == 0 {
            return Ok(());
        }
        let buf = std::mem::take(&mut self.buf);
        let count = std::mem::replace(&mut self.count, 0);
        self.send(buf, count)
    }

    fn send(&self, buf: Vec<u8>, count: usize) -> Result<(), WriterGone> {
        self.tx
            .send(Batch {
                first: self.first,
                count,
                buf,
            })
            .map_err(|_| WriterGone)
    }
}

/// Writes each batch's pages that no newer file wrote, a run at a time.
fn write_batches(
    out: &File,
    path: &Path,
    rx: std::sync::mpsc::Receiver<Batch>,
    free: std::sync::mpsc::Sender<Vec<u8>>,
    page_size: PageSize,
    commit: u32,
) -> Result<Bitmap, ApplyError> {
    let ps = page_size.bytes();
    let lock = page_size.lock_page().get();
    let mut written = Bitmap::new(commit);
    let mut since_writeback = 0u64;
    let wins = |written: &Bitmap, p: u32| p <= commit && p != lock && !written.get(p);
    for b in rx {
        let mut i = 0;
        while i < b.count {
            let p = b.first + i as u32;
            if !wins(&written, p) {
                i += 1;
                continue;
            }
            let mut j = i;
            while j < b.count && wins(&written, b.first + j as u32) {
                written.set(b.first + j as u32);
                j += 1;
            }
            out.write_all_at(&b.buf[i * ps..j * ps], (p as u64 - 1) * ps as u64)
                .map_err(|source| ApplyError::Io {
                    path: path.to_path_buf(),
                    op: "write",
                    source,
                })?;
            since_writeback += ((j - i) * ps) as u64;
            i = j;
        }
        if since_writeback >= WRITEBACK_EVERY {
            start_writeback(out);
            since_writeback = 0;
        }
        let _ = free.send(b.buf);
    }
    Ok(written)
}

/// Asks the kernel to start writing the file's dirty pages now, without waiting for
/// them. Only a hint: durability still comes from the fsync before the rename.
fn start_writeback(f: &File) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: a plain syscall on a file descriptor `f` keeps open; no memory is passed.
        unsafe {
            libc::sync_file_range(f.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = f;
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

/// A `Read` over one file's chunks as they arrive from the fetcher, which runs ahead
/// into later files: a chunk of a later file ends this one (kept for `start_file`).
struct ChunkReader {
    rx: tokio::sync::mpsc::Receiver<Chunk>,
    file: usize,
    cur: Bytes,
    pending: Option<Chunk>,
    fetch_error: Option<StorageError>,
}

impl ChunkReader {
    /// Moves on to file `i`, dropping whatever the previous file left unread.
    fn start_file(&mut self, i: usize) {
        self.file = i;
        self.cur = Bytes::new();
    }
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.cur.is_empty() {
            let (i, chunk) = match self.pending.take() {
                Some(c) => c,
                None => match self.rx.blocking_recv() {
                    Some(c) => c,
                    None => return Ok(0),
                },
            };
            if i < self.file {
                continue;
            }
            if i > self.file {
                self.pending = Some((i, chunk));
                return Ok(0);
            }
            match chunk {
                Ok(b) => self.cur = b,
                Err(e) => {
                    let msg = e.to_string();
                    self.fetch_error = Some(e);
                    return Err(io::Error::other(msg));
                }
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
