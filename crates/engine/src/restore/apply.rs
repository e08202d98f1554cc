//! Executing a restore plan: fetch the planned files, merge them newest-page-wins into a
//! temp file next to the output, verify, and only then put the result in place.
//!
//! Owns: the fetch pipeline (ranged reads, several in flight, memory bounded by
//! `parallelism` chunks), the page merge (newest file first, a bitmap of pages already
//! written, so each page is written once), verification (every file's CRC, every page
//! present, optional `PRAGMA quick_check`/`integrity_check`), and the final
//! fsync → rename → directory fsync (`output`, shared with `v3`). The output path is not
//! touched before everything is verified. Planning is not done here (see `history::plan`).
//!
//! The output (security issue 17): the temp file is a fresh random name created
//! exclusively (`fsutil::create_tmp`), so nothing planted in a shared output directory is
//! written through; a symlink at the output path is refused, never followed nor replaced
//! ([`check_output`]); the restored file is `0600` ([`output_mode`]: LTX records no mode),
//! or keeps the mode of the database it replaces under `-force`.
//!
//! Nothing the store says sizes memory or disk unchecked (issue 17): a listed size must be
//! one an LTX file can have, then no more than its header allows ([`ltx::max_file_bytes`]);
//! byte ranges are made one at a time as downloads start; the newest header's page count
//! must fit the planned bytes ([`ltx::MIN_PAGE_BYTES`] a page) before the temp file is
//! sized; the bitmap of written pages grows with the pages written, not the count claimed;
//! and every file's header TXIDs must be the ones its name says.

use crate::platform::FileExt;
use std::fs::File;
use std::io::{self, Read};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures::StreamExt;
use ltx::{Decoder, PageSize};

use super::output::{
    check_output, install, output_mode, verify_integrity, ApplyError, ApplyOptions, ApplyReport,
};
use crate::fsutil;
use crate::history::plan::Plan;
use crate::storage::layout::{LtxInfo, LtxKey};
use crate::storage::{ReplicaStore, StorageError};

/// Restores `plan` from `store` into `out`.
pub async fn apply(
    store: Arc<dyn ReplicaStore>,
    plan: &Plan,
    out: &Path,
    opts: &ApplyOptions,
) -> Result<ApplyReport, ApplyError> {
    let started = Instant::now();
    check_output(out, opts.force)?;
    if plan.files.is_empty() {
        return Err(ApplyError::EmptyPlan);
    }
    // A restore killed earlier (kill -9, power loss) left its temp file: not ours to keep.
    let _ = fsutil::remove_stale_tmp_of(out);
    let (file, tmp) =
        fsutil::create_tmp(out, output_mode(out)).map_err(|source| ApplyError::Io {
            path: out.to_path_buf(),
            op: "create temp file beside",
            source,
        })?;
    let io_err = |op| {
        let path = tmp.clone();
        move |source| ApplyError::Io { path, op, source }
    };
    let result = async {
        let bytes_fetched = plan.total_bytes();
        let merged = merge(store, plan, file, &tmp, opts.parallelism).await?;
        let (page_size, commit) = (merged.page_size, merged.commit);
        let lock = page_size.lock_page();
        if let Some(pgno) = merged.written.first_unset(commit, lock.get()) {
            return Err(ApplyError::MissingPage {
                pgno,
                commit,
                file: plan.files[0].key.to_string(),
            });
        }
        merged.file.sync_all().map_err(io_err("fsync"))?;
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

/// Attempts per ranged read before a transient error (timeout, 5xx, reset) fails a restore.
const FETCH_ATTEMPTS: u32 = 5;

/// The bytes of one chunk as they arrive, or the error that ended its download.
type ChunkRx = tokio::sync::mpsc::Receiver<Result<Bytes, StorageError>>;
type ChunkTx = tokio::sync::mpsc::Sender<Result<Bytes, StorageError>>;

/// Body pieces a download may hold before the decoder takes them. A download running
/// ahead of the decoder then waits with its bytes in the socket's receive buffer instead
/// of in freshly allocated memory: page-faulting tens of MiB of new buffers cost more
/// CPU than decoding them, and bytes read just before they are decoded are still in
/// the CPU cache. The HTTP client reuses its read buffer once the pieces are dropped.
const PIECES_PER_CHUNK: usize = 8;

/// Downloads `range` of `key` as a stream, forwarding the bytes as they arrive, retried
/// with backoff (0.2 s, 0.4 s, ...) while the error is transient. A cut connection (an
/// error mid-body, or a body shorter than asked for) resumes from the first byte not yet
/// forwarded, so the bytes sent are exactly the range, in order, or end with an error.
async fn fetch_chunk(store: Arc<dyn ReplicaStore>, key: LtxKey, range: Range<u64>, tx: ChunkTx) {
    let mut at = range.start;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let error = match store.get_stream(&key, at..range.end).await {
            Err(e) => e,
            Ok(mut body) => loop {
                match body.next().await {
                    Some(Ok(b)) if at + b.len() as u64 > range.end => {
                        break bad_length(store.as_ref(), &key, &range, at + b.len() as u64)
                    }
                    Some(Ok(b)) => {
                        at += b.len() as u64;
                        if !b.is_empty() && tx.send(Ok(b)).await.is_err() {
                            return; // the restore stopped
                        }
                    }
                    Some(Err(e)) => break e,
                    None if at == range.end => return,
                    None => break bad_length(store.as_ref(), &key, &range, at),
                }
            },
        };
        if error.is_retryable() && attempt < FETCH_ATTEMPTS {
            tracing::warn!(file = %key, attempt, error = %error, "fetch failed, retrying");
            tokio::time::sleep(std::time::Duration::from_millis(100 << attempt)).await;
            continue;
        }
        let _ = tx.send(Err(error)).await;
        return;
    }
}

/// A body that ended before `range.end` or ran past it (at `got`): retried like any
/// transient failure rather than decoded as a damaged file.
fn bad_length(
    store: &dyn ReplicaStore,
    key: &LtxKey,
    range: &Range<u64>,
    got: u64,
) -> StorageError {
    let how = if got < range.end { "short" } else { "long" };
    StorageError::transient(
        store.location().to_string(),
        key.to_string(),
        format!(
            "{how} read: asked for bytes {}..{}, the body ended at {got}",
            range.start, range.end
        ),
    )
}

/// Bytes of pages handed from the decoder to the writer at once.
const BATCH_BYTES: usize = 1 << 20;
/// Batches queued between the decoder and the writer.
const BATCHES_IN_FLIGHT: usize = 4;
/// The writer asks the kernel to start writeback after this many bytes, so the disk
/// works while later files decode and the final fsync has little left to do.
const WRITEBACK_EVERY: u64 = 16 << 20;
/// After this many bytes the writer asks a helper thread for an `fdatasync` of what is
/// written so far: starting writeback does not flush the disk's own cache, and on a
/// virtual disk that flush (the host persisting its cache) is most of the final fsync's
/// time. Flushing along the way overlaps it with the download.
const SYNC_EVERY: u64 = 64 << 20;

/// Consecutive pages decoded from the replica: `count` pages from `first` on, in `buf`.
struct Batch {
    first: u32,
    count: usize,
    buf: Vec<u8>,
}

/// The result of [`merge`]: the temp file, sized and written, not yet fsynced.
struct Merged {
    file: File,
    written: Bitmap,
    page_size: PageSize,
    commit: u32,
}

/// Merges the plan's files into `file`, the new temp file at `tmp`, newest first.
///
/// Three stages run at once, with bounded queues between them: ranged downloads across
/// all files (`parallelism` chunks in flight, running ahead into the next files, each
/// streamed as it arrives so the decoder starts on a chunk's first bytes), one decoder
/// (LZ4, page rules, file checksum) that decompresses each page straight from the
/// received body pieces into batches of consecutive pages, and one
/// writer that drops pages a newer file already wrote (a bitmap) and writes each run
/// of remaining pages with a single positioned write. The newest file's header, the
/// first bytes downloaded, gives the database's size and page size: the temp file is
/// sized once it has been read.
async fn merge(
    store: Arc<dyn ReplicaStore>,
    plan: &Plan,
    file: File,
    tmp: &Path,
    parallelism: usize,
) -> Result<Merged, ApplyError> {
    let files: Vec<LtxInfo> = plan.files.iter().rev().cloned().collect();
    // Listed sizes come from the store: bounded before they size any read, and the ranges
    // made from them one at a time, never all at once.
    let max = ltx::max_any_file_bytes();
    if let Some(f) = files.iter().find(|f| f.size_bytes > max) {
        return Err(ApplyError::ListedSizeTooLarge {
            file: f.key.to_string(),
            listed: f.size_bytes,
            max,
            limit: "any LTX file",
        });
    }
    let plan_bytes = files
        .iter()
        .fold(0u64, |a, f| a.saturating_add(f.size_bytes));
    let chunk = store.restore_chunk_bytes().max(1);
    let ranges = chunk_ranges(files.iter().map(|f| (f.key, f.size_bytes)).collect(), chunk);
    // The reader holds one chunk and the queue the others; a download starts only once
    // its chunk has a place in the queue, so at most `parallelism` are buffered.
    let (chunk_tx, chunk_rx) =
        tokio::sync::mpsc::channel::<(usize, u64, ChunkRx)>(parallelism.max(2) - 1);
    let fetcher = AbortOnDrop(tokio::spawn(async move {
        let mut downloads = tokio::task::JoinSet::new();
        for (i, key, r) in ranges {
            let (tx, rx) = tokio::sync::mpsc::channel(PIECES_PER_CHUNK);
            if chunk_tx.send((i, r.end - r.start, rx)).await.is_err() {
                break;
            }
            downloads.spawn(fetch_chunk(store.clone(), key, r, tx));
        }
        drop(chunk_tx);
        // Dropping the set would abort the downloads still running.
        while downloads.join_next().await.is_some() {}
    }));
    let (header_tx, header_rx) = tokio::sync::oneshot::channel::<(PageSize, u32)>();
    let (batch_tx, batch_rx) = std::sync::mpsc::sync_channel::<Batch>(BATCHES_IN_FLIGHT);
    let (free_tx, free_rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let keys: Vec<(LtxKey, u64)> = files.iter().map(|f| (f.key, f.size_bytes)).collect();
    let decoder = tokio::task::spawn_blocking(move || {
        let reader = ChunkReader {
            rx: chunk_rx,
            file: 0,
            cur: Bytes::new(),
            chunk: None,
            pending: None,
            fetch_error: None,
        };
        decode_all(reader, &keys, plan_bytes, header_tx, batch_tx, free_rx)
    });
    let join_err = |e: tokio::task::JoinError| ApplyError::Io {
        path: tmp.to_path_buf(),
        op: "restore task",
        source: io::Error::other(e.to_string()),
    };
    let Ok((page_size, commit)) = header_rx.await else {
        // The decoder stopped before the first header: its error says why.
        decoder.await.map_err(join_err)??;
        return Err(ApplyError::EmptyPlan);
    };
    let io_err = |op| {
        let path = tmp.to_path_buf();
        move |source| ApplyError::Io { path, op, source }
    };
    // Dropping `batch_rx` on failure stops the decoder.
    file.set_len(commit as u64 * page_size.get() as u64)
        .map_err(io_err("size"))?;
    let out = file.try_clone().map_err(io_err("dup"))?;
    let path = tmp.to_path_buf();
    let writer = tokio::task::spawn_blocking(move || {
        write_batches(&out, &path, batch_rx, free_tx, page_size, commit)
    });
    let decoded = decoder.await;
    let written = writer.await;
    drop(fetcher);
    match (decoded.map_err(join_err)?, written.map_err(join_err)?) {
        // A failed write stops the decoder too; the write error is the cause.
        (_, Err(e)) | (Err(e), Ok(_)) => Err(e),
        (Ok(()), Ok(written)) => Ok(Merged {
            file,
            written,
            page_size,
            commit,
        }),
    }
}

/// The ranged reads of every file in turn: (file index, key, byte range), at most `chunk`
/// bytes each, made lazily so that no listed size decides how much is allocated.
fn chunk_ranges(
    files: Vec<(LtxKey, u64)>,
    chunk: u64,
) -> impl Iterator<Item = (usize, LtxKey, Range<u64>)> + Send {
    files
        .into_iter()
        .enumerate()
        .flat_map(move |(i, (key, size))| {
            let mut at = 0u64;
            std::iter::from_fn(move || {
                (at < size).then(|| {
                    let start = at;
                    at += (size - start).min(chunk);
                    (i, key, start..at)
                })
            })
        })
}

/// Aborts the task (and so the downloads it owns) when the restore is done with it.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Why the decoder stopped early.
enum Stop {
    /// The writer hung up (it failed; its error is reported).
    WriterGone,
    Failed(ApplyError),
}

/// What the decoder writes pages into: nothing until the newest file's header has been
/// read and sent on (the database's page size and size), then batches for the writer.
enum Sink {
    Header {
        header_tx: tokio::sync::oneshot::Sender<(PageSize, u32)>,
        batch_tx: std::sync::mpsc::SyncSender<Batch>,
        free_rx: std::sync::mpsc::Receiver<Vec<u8>>,
    },
    Pages(Batcher),
    Taken,
}

impl Sink {
    /// The batcher, once `header` (the first file's) has been passed on; checks that the
    /// other files have its page size.
    fn batcher(&mut self, header: &ltx::Header, name: &str) -> Result<&mut Batcher, Stop> {
        if let Sink::Header { .. } = self {
            let Sink::Header {
                header_tx,
                batch_tx,
                free_rx,
            } = std::mem::replace(self, Sink::Taken)
            else {
                unreachable!()
            };
            if header_tx.send((header.page_size, header.commit)).is_err() {
                return Err(Stop::WriterGone);
            }
            *self = Sink::Pages(Batcher::new(header.page_size, batch_tx, free_rx));
        }
        let Sink::Pages(b) = self else {
            return Err(Stop::WriterGone);
        };
        if header.page_size != b.page_size {
            return Err(Stop::Failed(ApplyError::PageSizeMismatch {
                file: name.to_string(),
                got: header.page_size.get(),
                want: b.page_size.get(),
            }));
        }
        Ok(b)
    }
}

/// Decodes every file in turn (newest first) into batches for the writer, sending the
/// first file's page size and page count on `header_tx` before any page.
fn decode_all(
    mut reader: ChunkReader,
    keys: &[(LtxKey, u64)],
    plan_bytes: u64,
    header_tx: tokio::sync::oneshot::Sender<(PageSize, u32)>,
    batch_tx: std::sync::mpsc::SyncSender<Batch>,
    free_rx: std::sync::mpsc::Receiver<Vec<u8>>,
) -> Result<(), ApplyError> {
    let mut sink = Sink::Header {
        header_tx,
        batch_tx,
        free_rx,
    };
    for (i, (key, listed)) in keys.iter().enumerate() {
        reader.start_file(i);
        match decode_file(&mut reader, &mut sink, key, *listed, plan_bytes) {
            Ok(()) => {}
            Err(Stop::WriterGone) => return Ok(()),
            Err(Stop::Failed(e)) => return Err(e),
        }
    }
    if let Sink::Pages(b) = &mut sink {
        let _ = b.flush();
    }
    Ok(())
}

fn decode_file(
    reader: &mut ChunkReader,
    sink: &mut Sink,
    key: &LtxKey,
    listed: u64,
    plan_bytes: u64,
) -> Result<(), Stop> {
    let name = &key.to_string();
    let result = (|| -> Result<Result<(), Stop>, ltx::DecodeError> {
        // The header is read first on its own, so a file too short to hold one is
        // reported where it ends ("at byte 36: bad header"), not where the read began.
        let mut head = Vec::with_capacity(ltx::HEADER_SIZE);
        (&mut *reader)
            .take(ltx::HEADER_SIZE as u64)
            .read_to_end(&mut head)
            .map_err(|e| ltx::DecodeError::io(0, e))?;
        ltx::Header::from_bytes(&head)?;
        let mut dec = Decoder::new(io::Cursor::new(head).chain(&mut *reader))?;
        if let Err(e) = check_name(key, dec.header())
            .and_then(|()| check_listed_size(key, dec.header(), listed))
            .and_then(|()| match sink {
                // The first header sizes the output: its page count must be one the
                // planned files can hold.
                Sink::Header { .. } => check_page_count(key, dec.header(), plan_bytes),
                _ => Ok(()),
            })
        {
            return Ok(Err(Stop::Failed(e)));
        }
        let batcher = match sink.batcher(dec.header(), name) {
            Ok(b) => b,
            Err(stop) => return Ok(Err(stop)),
        };
        // Straight from the download's buffers: a page's LZ4 block is decompressed
        // where it arrived, not copied out first.
        while let Some(pgno) = dec.next_page_buffered(batcher.slot())? {
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

/// Refuses a file listed as larger than its header allows: the listing is what the
/// downloads were sized by, so a lie there is a damaged or hostile store.
fn check_listed_size(key: &LtxKey, h: &ltx::Header, listed: u64) -> Result<(), ApplyError> {
    let max = h.max_file_bytes();
    if listed <= max {
        return Ok(());
    }
    Err(ApplyError::ListedSizeTooLarge {
        file: key.to_string(),
        listed,
        max,
        limit: "its header",
    })
}

/// Refuses a database size (the newest file's `commit`) that the planned files cannot
/// fill: every page but the lock page must come from them, each taking at least
/// [`ltx::MIN_PAGE_BYTES`].
fn check_page_count(key: &LtxKey, h: &ltx::Header, plan_bytes: u64) -> Result<(), ApplyError> {
    let max = plan_bytes / ltx::MIN_PAGE_BYTES;
    let needed = u64::from(h.commit).saturating_sub(1);
    if needed <= max {
        return Ok(());
    }
    Err(ApplyError::TooManyPages {
        file: key.to_string(),
        commit: h.commit,
        bytes: plan_bytes,
        max,
    })
}

/// Groups consecutive decoded pages into batch buffers, recycling the writer's.
struct Batcher {
    page_size: PageSize,
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
            page_size,
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
    let mut since_sync = 0u64;
    let syncer = Syncer::start(out, path)?;
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
            since_sync += ((j - i) * ps) as u64;
            i = j;
        }
        if since_writeback >= WRITEBACK_EVERY {
            start_writeback(out);
            since_writeback = 0;
        }
        if since_sync >= SYNC_EVERY {
            syncer.request();
            since_sync = 0;
        }
        let _ = free.send(b.buf);
    }
    syncer.finish()?;
    Ok(written)
}

/// A thread that `fdatasync`s the temp file when asked, while the writer goes on. Only
/// to get the flushing done early: the fsync before the rename is still what makes the
/// file durable. A failed flush fails the restore (on Linux a reported write error may
/// not be reported again to the final fsync of the same open file).
struct Syncer {
    tx: Option<std::sync::mpsc::SyncSender<()>>,
    thread: Option<std::thread::JoinHandle<io::Result<()>>>,
    path: PathBuf,
}

impl Syncer {
    fn start(out: &File, path: &Path) -> Result<Syncer, ApplyError> {
        let io_err = |source| ApplyError::Io {
            path: path.to_path_buf(),
            op: "fsync",
            source,
        };
        let f = out.try_clone().map_err(io_err)?;
        // One pending request at most: asks made while a flush runs fold into the next.
        let (tx, rx) = std::sync::mpsc::sync_channel::<()>(1);
        let thread = std::thread::Builder::new()
            .name("restore-sync".into())
            .spawn(move || {
                for () in rx {
                    f.sync_data()?;
                }
                Ok(())
            })
            .map_err(io_err)?;
        Ok(Syncer {
            tx: Some(tx),
            thread: Some(thread),
            path: path.to_path_buf(),
        })
    }

    fn request(&self) {
        if let Some(tx) = &self.tx {
            let _ = tx.try_send(());
        }
    }

    /// Waits for the flush under way, reporting its error.
    fn finish(mut self) -> Result<(), ApplyError> {
        self.join()
    }

    fn join(&mut self) -> Result<(), ApplyError> {
        self.tx = None;
        let Some(t) = self.thread.take() else {
            return Ok(());
        };
        let r = t
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the flushing thread panicked")));
        r.map_err(|source| ApplyError::Io {
            path: self.path.clone(),
            op: "fsync",
            source,
        })
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        let _ = self.join();
    }
}

/// Asks the kernel to start writing the file's dirty pages now, without waiting for
/// them. Only a hint: durability still comes from the fsync before the rename.
fn start_writeback(f: &File) {
    crate::platform::start_writeback(f);
}

/// A `Read`/`BufRead` over one file's chunks as they arrive from the downloads, which
/// run ahead into later files: a chunk of a later file ends this one (kept for
/// `start_file`). `fill_buf` lends the body piece itself, so the decoder reads LZ4 blocks
/// without copying them out.
struct ChunkReader {
    /// Chunks in download order: the index of their file, their length, their bytes.
    rx: tokio::sync::mpsc::Receiver<(usize, u64, ChunkRx)>,
    file: usize,
    cur: Bytes,
    /// The chunk being read and the bytes it still owes.
    chunk: Option<(u64, ChunkRx)>,
    pending: Option<(usize, u64, ChunkRx)>,
    fetch_error: Option<StorageError>,
}

impl ChunkReader {
    /// Moves on to file `i`, dropping whatever the previous file left unread.
    fn start_file(&mut self, i: usize) {
        self.file = i;
        self.cur = Bytes::new();
        self.chunk = None;
    }

    fn fail(&mut self, e: StorageError) -> io::Error {
        let msg = e.to_string();
        self.fetch_error = Some(e);
        io::Error::other(msg)
    }
}

impl io::BufRead for ChunkReader {
    /// The rest of the piece being read, waiting for the next one when it is used up;
    /// empty at the end of this file's chunks.
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.cur.is_empty() {
            if let Some((owed, rx)) = &mut self.chunk {
                match rx.blocking_recv() {
                    Some(Ok(b)) => {
                        *owed = owed.saturating_sub(b.len() as u64);
                        self.cur = b;
                    }
                    Some(Err(e)) => return Err(self.fail(e)),
                    None if *owed == 0 => self.chunk = None,
                    // The download sends every byte or an error; not here if it panicked.
                    None => {
                        return Err(io::Error::other("a download stopped before its end"));
                    }
                }
                continue;
            }
            let (i, len, rx) = match self.pending.take() {
                Some(c) => c,
                None => match self.rx.blocking_recv() {
                    Some(c) => c,
                    None => return Ok(&[]),
                },
            };
            if i < self.file {
                continue;
            }
            if i > self.file {
                self.pending = Some((i, len, rx));
                return Ok(&[]);
            }
            self.chunk = Some((len, rx));
        }
        Ok(&self.cur)
    }

    fn consume(&mut self, n: usize) {
        bytes::Buf::advance(&mut self.cur, n);
    }
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let avail = io::BufRead::fill_buf(self)?;
        let n = buf.len().min(avail.len());
        buf[..n].copy_from_slice(&avail[..n]);
        io::BufRead::consume(self, n);
        Ok(n)
    }
}

/// Pages per [`Bitmap`] block: 64 Ki pages, 8 KiB of bits.
const BITMAP_BLOCK_PAGES: u32 = 1 << 16;

/// One bit per page, 1-based, in blocks made only when a page in them is written: the
/// page count comes from a file's header, so memory follows the pages actually restored,
/// not the count a header claims (at most 512 KiB of block pointers for 2^32 pages).
struct Bitmap {
    blocks: Vec<Option<Box<[u64]>>>,
}

impl Bitmap {
    fn new(pages: u32) -> Bitmap {
        let n = (pages / BITMAP_BLOCK_PAGES) as usize + 1;
        Bitmap {
            blocks: std::iter::repeat_with(|| None).take(n).collect(),
        }
    }

    fn get(&self, p: u32) -> bool {
        let (b, bit) = ((p / BITMAP_BLOCK_PAGES) as usize, p % BITMAP_BLOCK_PAGES);
        match self.blocks.get(b) {
            Some(Some(words)) => words[bit as usize / 64] & (1 << (bit % 64)) != 0,
            _ => false,
        }
    }

    /// Marks page `p`, which must be at most the `pages` the bitmap was made for.
    fn set(&mut self, p: u32) {
        let (b, bit) = ((p / BITMAP_BLOCK_PAGES) as usize, p % BITMAP_BLOCK_PAGES);
        let words = self.blocks[b]
            .get_or_insert_with(|| vec![0u64; (BITMAP_BLOCK_PAGES / 64) as usize].into());
        words[bit as usize / 64] |= 1 << (bit % 64);
    }

    /// The first page of `1..=pages` other than `skip` not marked: at once where its
    /// block was never made.
    fn first_unset(&self, pages: u32, skip: u32) -> Option<u32> {
        (1..=pages).find(|&p| p != skip && !self.get(p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::plan::{plan, Listing, Target};
    use crate::restore::output::IntegrityCheck;
    use crate::storage::faulty::FaultyStore;
    use crate::storage::file::FileStore;
    use ltx::{Encoder, Header, Level, PageEncoding, PageNo, TxId};
    use std::sync::atomic::Ordering;
    use std::time::SystemTime;

    /// A file replica holding one snapshot of `pages` pages (of 4096 bytes) whose header
    /// says the database has `commit` pages (the file checksum then fails, but only at the
    /// end of the file).
    async fn replica(dir: &Path, pages: u32, commit: u32) -> Arc<FileStore> {
        let ps = PageSize::new(4096).unwrap();
        let h = Header::new(ps, pages, TxId::ONE, TxId::new(3).unwrap(), 0);
        let mut enc = Encoder::new(Vec::new(), &h, PageEncoding::Block).unwrap();
        for p in 1..=pages {
            enc.write_page(PageNo::new(p).unwrap(), &vec![p as u8; 4096])
                .unwrap();
        }
        let (mut data, _) = enc.finish().unwrap();
        data[12..16].copy_from_slice(&commit.to_be_bytes());
        let store = Arc::new(FileStore::new(dir.join("replica")));
        let key = LtxKey {
            level: Level::SNAPSHOT,
            min: TxId::ONE,
            max: TxId::new(3).unwrap(),
        };
        store
            .put(&key, data.into(), SystemTime::now())
            .await
            .unwrap();
        store
    }

    async fn restore(store: Arc<dyn ReplicaStore>, out: &Path) -> Result<ApplyReport, ApplyError> {
        let files = store.list(Level::SNAPSHOT).await.unwrap();
        let p = plan(&Listing::new(files), Target::Latest).unwrap();
        let opts = ApplyOptions {
            parallelism: 4,
            integrity: IntegrityCheck::None,
            force: false,
        };
        apply(store, &p, out, &opts).await
    }

    /// Issue 17: a listing with a size near 2^64 made the restore build every byte range
    /// of it up front (and overflow): it aborted the process. Now it is an error naming
    /// the file, before any read; a size merely larger than the header allows (a sparse
    /// file of 64 GiB) is refused once the header is read.
    #[tokio::test]
    async fn absurd_listed_sizes_are_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let inner = replica(dir.path(), 3, 3).await;
        let path = dir
            .path()
            .join("replica/ltx/9/0000000000000001-0000000000000003.ltx");
        let honest = std::fs::metadata(&path).unwrap().len();
        for (listed, limit) in [
            (u64::MAX - 5, "any LTX file"),
            (ltx::max_any_file_bytes() + 1, "any LTX file"),
            (64 << 30, "its header"),
        ] {
            let store = Arc::new(FaultyStore::new(inner.clone()));
            if limit == "its header" {
                let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
                f.set_len(listed).unwrap();
            } else {
                store.faults.listed_size.store(listed, Ordering::Relaxed);
            }
            let out = dir.path().join("out.db");
            let e = restore(store, &out).await.unwrap_err();
            match &e {
                ApplyError::ListedSizeTooLarge {
                    file,
                    listed: l,
                    limit: got,
                    ..
                } => {
                    assert_eq!(file, "L9/0000000000000001-0000000000000003.ltx");
                    assert_eq!((*l, *got), (listed, limit));
                }
                e => panic!("{listed}: want ListedSizeTooLarge, got {e:?}"),
            }
            assert!(e.to_string().contains("the store lists it as"), "{e}");
            assert!(!out.exists());
        }
        // The same replica, listed honestly, restores.
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(honest).unwrap();
        let out = dir.path().join("out.db");
        let r = restore(inner, &out).await.unwrap();
        assert_eq!(r.pages, 3);
    }

    /// A header claiming a billion pages, in a file of a few KiB: refused before the
    /// output is sized for them (it was a 4 TB sparse file and a 120 MiB bitmap).
    #[tokio::test]
    async fn header_page_count_beyond_the_planned_bytes_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = replica(dir.path(), 3, 1_000_000_000).await;
        let out = dir.path().join("out.db");
        let e = restore(store, &out).await.unwrap_err();
        assert!(
            matches!(
                &e,
                ApplyError::TooManyPages {
                    commit: 1_000_000_000,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(
            e.to_string()
                .starts_with("L9/0000000000000001-0000000000000003.ltx: at byte 12:"),
            "{e}"
        );
        assert!(!out.exists());
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "only the replica"
        );
    }

    #[test]
    fn bitmap_makes_blocks_only_for_pages_written() {
        let mut b = Bitmap::new(u32::MAX);
        assert_eq!(b.blocks.len(), (u32::MAX / BITMAP_BLOCK_PAGES) as usize + 1);
        assert_eq!(b.first_unset(u32::MAX, 0), Some(1));
        for p in [1, 2, 3, u32::MAX] {
            b.set(p);
        }
        assert!(b.get(u32::MAX) && b.get(2) && !b.get(4) && !b.get(70_000));
        assert_eq!(b.blocks.iter().filter(|x| x.is_some()).count(), 2);
        assert_eq!(b.first_unset(3, 0), None);
        assert_eq!(b.first_unset(5, 4), Some(5));
        assert_eq!(b.first_unset(4, 4), None);
    }

    #[test]
    fn chunk_ranges_cover_each_file_exactly() {
        let k = |m| LtxKey {
            level: Level::L0,
            min: TxId::new(m).unwrap(),
            max: TxId::new(m).unwrap(),
        };
        let got: Vec<_> = chunk_ranges(vec![(k(1), 5), (k(2), 0), (k(3), 4)], 2).collect();
        assert_eq!(
            got,
            vec![
                (0, k(1), 0..2),
                (0, k(1), 2..4),
                (0, k(1), 4..5),
                (2, k(3), 0..2),
                (2, k(3), 2..4)
            ]
        );
        // Near 2^64 the ranges are still made one at a time, without overflow.
        let mut big = chunk_ranges(vec![(k(1), u64::MAX)], u64::MAX / 2 + 1);
        assert_eq!(big.next(), Some((0, k(1), 0..u64::MAX / 2 + 1)));
        assert_eq!(big.next(), Some((0, k(1), u64::MAX / 2 + 1..u64::MAX)));
        assert_eq!(big.next(), None);
    }
}
