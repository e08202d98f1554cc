//! Restoring a replica that Litestream 0.3 wrote (`generations/` layout): plan, then apply.
//!
//! Owns: choosing what rebuilds a 0.3 generation ([`plan_v3`], pure: the generation, its
//! newest snapshot, every WAL index from the snapshot's on, each index's segments in offset
//! order, or a precise error naming what is missing) and applying it ([`apply_v3`]): the
//! snapshot decompressed into a temp file beside the output; then, index by index, the
//! segments decompressed into a temp WAL, checked to be contiguous, and that WAL's committed
//! frames copied in (salts, checksum chain and commit boundaries are `sqlite::wal::scan`'s),
//! the file truncated to each index's last commit size.
//!
//! Does not: write this layout, restore to a point in time (LTX history only), follow, or
//! put the result in place itself: the integrity check and the fsync → rename → directory
//! fsync are `output`'s, shared with `apply`, so P1 holds here too (the output path is not touched until
//! everything is verified).
//!
//! What 0.3.13 does, checked against the real binary (`litestream restore`, `generations`):
//! - By default the generation whose newest file (snapshot or WAL segment) has the latest
//!   modification time wins, to the nanosecond; on a tie the first in name order wins (a
//!   higher WAL index does not break ties). If that generation has no snapshot, 0.3 fails
//!   rather than fall back to an older generation, and so do we: falling back would quietly
//!   restore older data.
//! - A snapshot taken at index N is the raw database file; restore lays all of WAL index N
//!   from offset 0 over it, then N+1, and so on. Frames the snapshot already holds are
//!   page images, so laying them again is harmless.
//! - 0.3 does not notice a missing segment: SQLite reports "database disk image is
//!   malformed" halfway through and leaves temp files behind. Here a missing index or byte
//!   range is an error naming the generation, index and offsets, before the output exists.
//!
//! A hostile or damaged replica cannot exhaust memory or disk: every file is read in
//! ranged pieces of the store's restore chunk size as it is decompressed (the fetcher runs
//! ahead with each file's first piece only), and each LZ4 frame's output is bounded by
//! what the format allows, the restore stopping with an error naming the file as soon as
//! it is exceeded: a snapshot by its SQLite header (the in-header page count when valid,
//! as SQLite itself reads it, else SQLite's largest page count) times its page size; a
//! WAL segment by the next segment's offset, and the last one of an index by 4 GiB (0.3
//! names offsets with 8 hex digits).
//!
//! Fed by `storage` (`V3Store::list_v3`, `get_v3_range`); feeds the CLI's `restore`.

use crate::platform::FileExt;
use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use futures::StreamExt;
use ltx::PageSize;

use super::output::{
    check_output, install, output_mode, verify_integrity, ApplyError, ApplyOptions, ApplyReport,
    IntegrityCheck, V3ApplyError,
};
use crate::fsutil;
use crate::sqlite::wal::{self, Outcome, ScanFrom, WalHeader};
use crate::storage::layout::v3::{GenerationId, V3File, V3Kind};
use crate::storage::{ReplicaStore, StorageError};

/// One WAL index to apply: its segments in offset order, the first at offset 0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct V3WalIndex {
    pub index: u32,
    pub segments: Vec<V3File>,
}

impl V3WalIndex {
    pub fn size_bytes(&self) -> u64 {
        self.segments
            .iter()
            .fold(0u64, |a, f| a.saturating_add(f.size_bytes))
    }
}

/// What rebuilds one generation: its newest snapshot, then every WAL index from the
/// snapshot's index on, ascending.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct V3Plan {
    pub generation: GenerationId,
    pub snapshot: V3File,
    pub wal: Vec<V3WalIndex>,
}

impl V3Plan {
    /// Files to fetch: the snapshot and every segment.
    pub fn file_count(&self) -> usize {
        1 + self.wal.iter().map(|w| w.segments.len()).sum::<usize>()
    }

    /// Compressed bytes to fetch.
    pub fn total_bytes(&self) -> u64 {
        self.wal.iter().fold(self.snapshot.size_bytes, |a, w| {
            a.saturating_add(w.size_bytes())
        })
    }

    /// The WAL index the restored database reaches.
    pub fn last_index(&self) -> u32 {
        self.wal
            .last()
            .map(|w| w.index)
            .unwrap_or(self.snapshot.index())
    }

    /// Every file in apply order.
    fn files(&self) -> impl Iterator<Item = &V3File> {
        std::iter::once(&self.snapshot).chain(self.wal.iter().flat_map(|w| &w.segments))
    }

    /// The plan as JSON, for `restore -dry-run -json`.
    pub fn to_json(&self) -> serde_json::Value {
        let wal: Vec<_> = self
            .wal
            .iter()
            .map(|w| {
                serde_json::json!({
                    "index": format!("{:08x}", w.index),
                    "segments": w.segments.iter().map(|s| match s.kind {
                        V3Kind::Wal { offset, .. } => serde_json::json!({ "offset": offset, "size": s.size_bytes }),
                        V3Kind::Snapshot { .. } => serde_json::Value::Null,
                    }).collect::<Vec<_>>(),
                    "size": w.size_bytes(),
                })
            })
            .collect();
        serde_json::json!({
            "format": "litestream-0.3",
            "generation": self.generation.as_str(),
            "snapshot": { "index": format!("{:08x}", self.snapshot.index()), "size": self.snapshot.size_bytes },
            "wal": wal,
            "files": self.file_count(),
            "bytes": self.total_bytes(),
        })
    }
}

impl fmt::Display for V3Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "restore Litestream 0.3 generation {} to WAL index {:08x} from {} file(s), {} bytes:",
            self.generation,
            self.last_index(),
            self.file_count(),
            self.total_bytes()
        )?;
        writeln!(
            f,
            "{:<9} {:<8} {:>8} {:>12}",
            "kind", "index", "files", "size"
        )?;
        writeln!(
            f,
            "{:<9} {:08x} {:>8} {:>12}",
            "snapshot",
            self.snapshot.index(),
            1,
            self.snapshot.size_bytes
        )?;
        for w in &self.wal {
            writeln!(
                f,
                "{:<9} {:08x} {:>8} {:>12}",
                "wal",
                w.index,
                w.segments.len(),
                w.size_bytes()
            )?;
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum V3PlanError {
    #[error("the replica holds no Litestream 0.3 generations")]
    Empty,
    #[error("generation {generation} not found (the replica holds: {available})")]
    GenerationNotFound {
        generation: String,
        available: String,
    },
    #[error("generation {generation} has no snapshot, so it cannot be restored")]
    NoSnapshot { generation: GenerationId },
    #[error("generation {generation}: WAL indexes {missing_from:08x}..={missing_to:08x} are missing, between {before} and {after}")]
    MissingWalIndexes {
        generation: GenerationId,
        missing_from: u32,
        missing_to: u32,
        before: String,
        after: String,
    },
    #[error("generation {generation}, WAL index {index:08x}: bytes 0..{first_offset} are missing: its first segment is {first}")]
    MissingWalStart {
        generation: GenerationId,
        index: u32,
        first_offset: u32,
        first: String,
    },
}

impl V3PlanError {
    /// A hint for the operator, printed by the CLI beside the error.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            V3PlanError::NoSnapshot { .. } | V3PlanError::MissingWalIndexes { .. } => {
                Some("restore an older generation with -generation")
            }
            _ => None,
        }
    }
}

/// The generation 0.3 would restore by default: the newest file modification time wins,
/// ties to the first name (see the module docs).
pub fn newest_generation(files: &[V3File]) -> Option<&GenerationId> {
    let mut newest: BTreeMap<&GenerationId, SystemTime> = BTreeMap::new();
    for f in files {
        let t = newest.entry(&f.generation).or_insert(f.modified);
        *t = (*t).max(f.modified);
    }
    // BTreeMap iterates in name order; keeping only strictly newer ones keeps the first tie.
    let mut best: Option<(&GenerationId, SystemTime)> = None;
    for (g, t) in newest {
        if best.is_none_or(|(_, b)| t > b) {
            best = Some((g, t));
        }
    }
    best.map(|(g, _)| g)
}

/// Plans the restore of `generation` (default: [`newest_generation`]) to its newest state.
pub fn plan_v3(files: &[V3File], generation: Option<&str>) -> Result<V3Plan, V3PlanError> {
    let generation = match generation {
        Some(name) => files
            .iter()
            .map(|f| &f.generation)
            .find(|g| g.as_str() == name)
            .ok_or_else(|| {
                let mut names: Vec<&str> = files.iter().map(|f| f.generation.as_str()).collect();
                names.sort_unstable();
                names.dedup();
                V3PlanError::GenerationNotFound {
                    generation: name.to_string(),
                    available: if names.is_empty() {
                        "none".into()
                    } else {
                        names.join(", ")
                    },
                }
            })?,
        None => newest_generation(files).ok_or(V3PlanError::Empty)?,
    }
    .clone();
    let mine = files.iter().filter(|f| f.generation == generation);
    let snapshot = mine
        .clone()
        .filter(|f| matches!(f.kind, V3Kind::Snapshot { .. }))
        .max_by_key(|f| f.index())
        .ok_or_else(|| V3PlanError::NoSnapshot {
            generation: generation.clone(),
        })?
        .clone();
    let mut by_index: BTreeMap<u32, Vec<V3File>> = BTreeMap::new();
    for f in mine {
        if let V3Kind::Wal { index, .. } = f.kind {
            // Older indexes are already in the snapshot (0.3's retention deletes them too).
            if index >= snapshot.index() {
                by_index.entry(index).or_default().push(f.clone());
            }
        }
    }
    let mut wal = Vec::with_capacity(by_index.len());
    let mut expect = snapshot.index();
    for (index, mut segments) in by_index {
        if index != expect {
            // An index has no segment at all: the frames between are gone.
            return Err(V3PlanError::MissingWalIndexes {
                generation,
                missing_from: expect,
                missing_to: index - 1,
                before: wal
                    .last()
                    .and_then(|w: &V3WalIndex| w.segments.last())
                    .unwrap_or(&snapshot)
                    .path(),
                after: segments
                    .iter()
                    .min_by_key(|s| s.kind)
                    .expect("an index has a segment")
                    .path(),
            });
        }
        segments.sort_by_key(|s| s.kind);
        let first = &segments[0];
        if let V3Kind::Wal { offset, .. } = first.kind {
            if offset != 0 {
                return Err(V3PlanError::MissingWalStart {
                    generation,
                    index,
                    first_offset: offset,
                    first: first.path(),
                });
            }
        }
        // Contiguity past the first segment needs the decompressed sizes, which no listing
        // records: `apply_v3` checks it as it decompresses.
        wal.push(V3WalIndex { index, segments });
        expect = index.saturating_add(1);
    }
    Ok(V3Plan {
        generation,
        snapshot,
        wal,
    })
}

/// A file and its first piece (up to the store's restore chunk size), or the error.
type Fetched = (V3File, Result<Bytes, StorageError>);

/// SQLite's largest page count (`SQLITE_MAX_PAGE_COUNT`): no database file is longer than
/// this many pages.
const SQLITE_MAX_PAGES: u64 = 4_294_967_294;

/// The end of a WAL index's last segment: 0.3 names segment offsets with 8 hex digits.
const WAL_INDEX_MAX_BYTES: u64 = 1 << 32;

/// Restores `plan` from `store` into `out`: fetches run `opts.parallelism` files ahead of
/// a blocking thread that decompresses and applies them in plan order.
pub async fn apply_v3(
    store: Arc<dyn ReplicaStore>,
    plan: &V3Plan,
    out: &Path,
    opts: &ApplyOptions,
) -> Result<ApplyReport, ApplyError> {
    let started = Instant::now();
    check_output(out, opts.force)?;
    // Temp files a killed restore left behind (see `apply`).
    let _ = fsutil::remove_stale_tmp_of(out);
    let _ = fsutil::remove_stale_tmp_of(&sibling(out, "-v3wal"));
    let (out_file, tmp) = fsutil::create_tmp(out, output_mode(out))
        .map_err(io_err(out, "create temp file beside"))?;
    let wal_name = sibling(out, "-v3wal");
    let (wal_file, wal_tmp) =
        fsutil::create_tmp(&wal_name, fsutil::FileMode::PRIVATE).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io_err(&wal_name, "create temp file beside")(e)
        })?;
    let depth = opts.parallelism.max(1);
    let (tx, rx) = tokio::sync::mpsc::channel::<Fetched>(depth);
    let files: Vec<V3File> = plan.files().cloned().collect();
    let chunk = store.restore_chunk_bytes().max(1);
    let reads = Reads {
        rt: tokio::runtime::Handle::current(),
        store: store.clone(),
        chunk,
    };
    let fetcher = tokio::spawn(async move {
        // Only each file's first piece runs ahead: most segments are that small, and the
        // rest of a large file is read as it is decompressed.
        let mut fetches = futures::stream::iter(files)
            .map(|f| {
                let store = store.clone();
                async move {
                    let r = match store.v3() {
                        Ok(v3) => v3.get_v3_range(&f, 0..f.size_bytes.min(chunk)).await,
                        Err(e) => Err(e),
                    };
                    (f, r)
                }
            })
            .buffered(depth);
        while let Some(item) = fetches.next().await {
            let stop = item.1.is_err();
            if tx.send(item).await.is_err() || stop {
                break;
            }
        }
    });
    let job = Job {
        reads,
        plan: plan.clone(),
        tmp: tmp.clone(),
        wal_tmp: wal_tmp.clone(),
        out: out_file,
        wal: wal_file,
        integrity: opts.integrity,
    };
    let joined = tokio::task::spawn_blocking(move || job.run(rx)).await;
    fetcher.abort();
    let _ = std::fs::remove_file(&wal_tmp);
    let result = match joined {
        Ok(r) => r.and_then(|(pages, page_size)| {
            install(&tmp, out, opts.force)?;
            Ok(ApplyReport {
                files: plan.file_count(),
                bytes_fetched: plan.total_bytes(),
                pages,
                page_size: page_size.get(),
                seconds: started.elapsed().as_secs_f64(),
            })
        }),
        Err(e) => Err(ApplyError::Io {
            path: tmp.clone(),
            op: "restore task",
            source: io::Error::other(e.to_string()),
        }),
    };
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// `out` with `suffix` appended to its file name.
fn sibling(out: &Path, suffix: &str) -> PathBuf {
    let mut p = out.as_os_str().to_os_string();
    p.push(suffix);
    PathBuf::from(p)
}

/// What the blocking half needs to read the rest of a file after its first piece.
struct Reads {
    rt: tokio::runtime::Handle,
    store: Arc<dyn ReplicaStore>,
    chunk: u64,
}

/// One file read front to back: its first piece (fetched ahead), then ranged reads of
/// `chunk` bytes up to the listed size. A storage error is kept in `error` (the LZ4
/// decoder only sees an I/O error) so it is reported as a fetch error naming the file.
struct PieceReader<'a> {
    reads: &'a Reads,
    file: &'a V3File,
    at: u64,
    cur: Bytes,
    error: Option<StorageError>,
}

impl PieceReader<'_> {
    fn fill(&mut self) -> Result<(), StorageError> {
        let size = self.file.size_bytes;
        let end = self.at + (size - self.at).min(self.reads.chunk);
        let b = self.reads.rt.block_on(async {
            self.reads
                .store
                .v3()?
                .get_v3_range(self.file, self.at..end)
                .await
        })?;
        if b.len() as u64 != end - self.at {
            return Err(StorageError::permanent(
                self.reads.store.location().to_string(),
                self.file.path(),
                format!("asked for bytes {}..{end}, got {} bytes", self.at, b.len()),
            ));
        }
        self.at = end;
        self.cur = b;
        Ok(())
    }
}

impl io::Read for PieceReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.cur.is_empty() && self.at < self.file.size_bytes {
            if let Err(e) = self.fill() {
                let msg = e.to_string();
                self.error = Some(e);
                return Err(io::Error::other(msg));
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        bytes::Buf::advance(&mut self.cur, n);
        Ok(n)
    }
}

/// The next fetched file, which must be `want`, as a reader of all its bytes.
fn next_file<'a>(
    rx: &mut tokio::sync::mpsc::Receiver<Fetched>,
    reads: &'a Reads,
    want: &'a V3File,
) -> Result<PieceReader<'a>, ApplyError> {
    match rx.blocking_recv() {
        Some((f, Ok(first))) if f == *want => Ok(PieceReader {
            reads,
            file: want,
            at: first.len() as u64,
            cur: first,
            error: None,
        }),
        Some((f, Err(source))) => Err(ApplyError::Fetch {
            file: f.path(),
            source,
        }),
        // The fetcher sends in plan order and stops only after an error it sent, so this
        // is a panicked or cancelled fetch task.
        _ => Err(ApplyError::Io {
            path: PathBuf::from(want.path()),
            op: "fetch",
            source: io::Error::other("the fetch task ended before this file arrived"),
        }),
    }
}

/// The blocking half of [`apply_v3`]: everything that reads or writes local files.
struct Job {
    reads: Reads,
    plan: V3Plan,
    tmp: PathBuf,
    wal_tmp: PathBuf,
    /// The temp database at `tmp` and WAL at `wal_tmp`, created exclusively.
    out: File,
    wal: File,
    integrity: IntegrityCheck,
}

impl Job {
    /// Builds, fsyncs and verifies the temp database; returns (pages, page size).
    fn run(
        self,
        mut rx: tokio::sync::mpsc::Receiver<Fetched>,
    ) -> Result<(u32, PageSize), ApplyError> {
        let mut next = |want| next_file(&mut rx, &self.reads, want);
        let out = &self.out;
        let snapshot = &self.plan.snapshot;
        decompress_into(next(snapshot)?, out, &self.tmp, Bound::Snapshot)?;
        let page_size = self.snapshot_page_size(out)?;
        for w in &self.plan.wal {
            let wal = self.emptied_wal()?;
            let mut end = 0u64;
            let mut before: Option<&V3File> = None;
            for (i, seg) in w.segments.iter().enumerate() {
                let V3Kind::Wal { offset, .. } = seg.kind else {
                    unreachable!("plan_v3 puts only WAL segments in an index")
                };
                let offset = u64::from(offset);
                if offset != end {
                    let (before, after) =
                        (before.map(V3File::path).unwrap_or_default(), seg.path());
                    let (generation, index) = (self.plan.generation.clone(), w.index);
                    // Past `end` is stopped while decompressing (below); two segments
                    // at one offset cannot be listed.
                    return Err(V3ApplyError::SegmentGap {
                        generation,
                        index,
                        from: end,
                        to: offset,
                        before,
                        after,
                    }
                    .into());
                }
                let bound = match w.segments.get(i + 1) {
                    Some(after) => Bound::Segment {
                        ends_by: wal_offset(after),
                        after,
                        generation: &self.plan.generation,
                        index: w.index,
                    },
                    None => Bound::LastSegment {
                        ends_by: WAL_INDEX_MAX_BYTES,
                    },
                };
                end += decompress_into(next(seg)?, wal, &self.wal_tmp, bound.from(offset))?;
                before = Some(seg);
            }
            self.apply_wal(w, wal, out, page_size)?;
        }
        out.sync_all().map_err(io_err(&self.tmp, "fsync"))?;
        let len = out.metadata().map_err(io_err(&self.tmp, "stat"))?.len();
        verify_integrity(&self.tmp, self.integrity)?;
        let pages = u32::try_from(len / u64::from(page_size.get())).unwrap_or(u32::MAX);
        Ok((pages, page_size))
    }

    /// Page size from the snapshot's database header (bytes 16-17, 1 meaning 65536).
    fn snapshot_page_size(&self, out: &File) -> Result<PageSize, ApplyError> {
        let file = self.plan.snapshot.path();
        let page_size = crate::sqlite::db::read_db_header(&self.tmp).map_err(|e| {
            V3ApplyError::BadSnapshot {
                file: file.clone(),
                detail: e.to_string(),
            }
        })?;
        let len = out.metadata().map_err(io_err(&self.tmp, "stat"))?.len();
        if len % u64::from(page_size.get()) != 0 {
            return Err(V3ApplyError::BadSnapshot {
                file,
                detail: format!("{len} bytes is not a whole number of {page_size}-byte pages"),
            }
            .into());
        }
        Ok(page_size)
    }

    /// Lays the committed frames of one WAL index over the database and truncates it to
    /// the last commit's size.
    fn apply_wal(
        &self,
        w: &V3WalIndex,
        wal: &File,
        out: &File,
        page_size: PageSize,
    ) -> Result<(), ApplyError> {
        let (generation, index) = (self.plan.generation.clone(), w.index);
        let scan = wal::scan(wal, page_size, &ScanFrom::Start)
            .map_err(io_err(&self.wal_tmp, "scan WAL"))?;
        let frames = match scan.outcome {
            Outcome::Frames(f) => f,
            Outcome::NoHeader => {
                return Err(V3ApplyError::BadWalHeader {
                    generation,
                    index,
                    file: w.segments[0].path(),
                }
                .into())
            }
            // From the start, a valid header is unrelated only by its page size.
            Outcome::Unrelated => {
                let mut h = [0u8; wal::WAL_HEADER_SIZE as usize];
                wal.read_exact_at(&mut h, 0)
                    .map_err(io_err(&self.wal_tmp, "read WAL header"))?;
                return Err(V3ApplyError::PageSizeMismatch {
                    generation,
                    index,
                    got: WalHeader::parse(&h).map_or(0, |h| h.page_size.get()),
                    want: page_size.get(),
                }
                .into());
            }
        };
        if let Some(detail) = frames.corruption {
            return Err(V3ApplyError::CorruptWal {
                generation,
                index,
                detail,
            }
            .into());
        }
        // No commit: only the header or an unfinished transaction, nothing to lay down.
        let Some(commit) = frames.commit else {
            return Ok(());
        };
        let mut buf = vec![0u8; page_size.bytes()];
        for (pgno, data_offset) in frames.pages {
            if pgno.get() > commit {
                continue;
            }
            wal::read_page(wal, data_offset, &mut buf)
                .map_err(io_err(&self.wal_tmp, "read WAL frame"))?;
            out.write_all_at(&buf, page_size.offset_of(pgno))
                .map_err(io_err(&self.tmp, "write page"))?;
        }
        out.set_len(u64::from(commit) * u64::from(page_size.get()))
            .map_err(io_err(&self.tmp, "truncate to commit size"))
    }
}

impl Job {
    /// The WAL temp file, emptied and rewound for the next index.
    fn emptied_wal(&self) -> Result<&File, ApplyError> {
        use std::io::Seek;
        self.wal
            .set_len(0)
            .map_err(io_err(&self.wal_tmp, "truncate"))?;
        (&self.wal)
            .seek(io::SeekFrom::Start(0))
            .map_err(io_err(&self.wal_tmp, "seek"))?;
        Ok(&self.wal)
    }
}

fn io_err(path: &Path, op: &'static str) -> impl FnOnce(io::Error) -> ApplyError {
    let path = path.to_path_buf();
    move |source| ApplyError::Io { path, op, source }
}

fn wal_offset(f: &V3File) -> u64 {
    match f.kind {
        V3Kind::Wal { offset, .. } => u64::from(offset),
        V3Kind::Snapshot { .. } => 0,
    }
}

/// How far one file may decompress.
#[derive(Clone, Copy)]
enum Bound<'a> {
    /// A snapshot: as far as its SQLite header allows (see [`snapshot_limit`]).
    Snapshot,
    /// A WAL segment with a next one: to the byte where `after` starts.
    Segment {
        ends_by: u64,
        after: &'a V3File,
        generation: &'a GenerationId,
        index: u32,
    },
    /// The last segment of an index.
    LastSegment { ends_by: u64 },
}

impl Bound<'_> {
    /// The bound for a segment that starts at WAL byte `offset`: a length.
    fn from(self, offset: u64) -> Self {
        match self {
            Bound::Segment {
                ends_by,
                after,
                generation,
                index,
            } => Bound::Segment {
                ends_by: ends_by.saturating_sub(offset),
                after,
                generation,
                index,
            },
            Bound::LastSegment { ends_by } => Bound::LastSegment {
                ends_by: ends_by.saturating_sub(offset),
            },
            b => b,
        }
    }
}

/// The most bytes a snapshot may decompress to, from its first 100 bytes (the SQLite
/// header): the in-header page count when SQLite would trust it (non-zero, and the
/// version-valid-for number equal to the change counter), else SQLite's largest page
/// count, times the page size.
fn snapshot_limit(head: &[u8]) -> Result<(u64, String), String> {
    if head.len() < 100 || &head[..16] != b"SQLite format 3\0" {
        return Err("no SQLite header in its first 100 bytes".into());
    }
    let be32 = |at: usize| u32::from_be_bytes(head[at..at + 4].try_into().expect("4 bytes"));
    let page_size = match u16::from_be_bytes([head[16], head[17]]) {
        1 => 65536,
        n => u64::from(n),
    };
    if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
        return Err(format!("page size {page_size} in its header is not valid"));
    }
    let pages = u64::from(be32(28));
    Ok(if pages > 0 && be32(24) == be32(92) {
        (
            pages * page_size,
            format!("the {pages} pages of {page_size} bytes its SQLite header says"),
        )
    } else {
        (
            SQLITE_MAX_PAGES * page_size,
            format!("a SQLite database of {page_size}-byte pages can hold"),
        )
    })
}

/// Decompresses one LZ4 frame read from `src`, appending to `dst` at its current position;
/// returns the decompressed length. The frame's content checksum (0.3 writes one) is
/// verified. Stops with an error naming the file as soon as the output passes `bound`.
fn decompress_into(
    mut src: PieceReader<'_>,
    dst: &File,
    dst_path: &Path,
    bound: Bound<'_>,
) -> Result<u64, ApplyError> {
    let file = src.file;
    let mut w = WriteSide {
        inner: BufWriter::with_capacity(1 << 20, dst),
        failed: false,
    };
    let mut dec = lz4_flex::frame::FrameDecoder::new(&mut src);
    let copied = (|| -> io::Result<Result<u64, ApplyError>> {
        let ((limit, what), head) = match bound {
            Bound::Snapshot => {
                let mut head = Vec::with_capacity(100);
                (&mut dec).take(100).read_to_end(&mut head)?;
                match snapshot_limit(&head) {
                    Ok(limit) => (limit, head),
                    Err(detail) => {
                        return Ok(Err(V3ApplyError::BadSnapshot {
                            file: file.path(),
                            detail,
                        }
                        .into()))
                    }
                }
            }
            Bound::Segment { ends_by, .. } | Bound::LastSegment { ends_by } => {
                ((ends_by, String::new()), Vec::new())
            }
        };
        w.write_all(&head)?;
        let rest = limit.saturating_sub(head.len() as u64);
        let n = head.len() as u64 + io::copy(&mut (&mut dec).take(rest), &mut w)?;
        // One byte more would pass the bound; reading to the end also checks the frame's
        // content checksum.
        if n == limit && dec.read(&mut [0u8])? > 0 {
            return Ok(Err(match bound {
                Bound::Segment {
                    after,
                    generation,
                    index,
                    ..
                } => V3ApplyError::SegmentOverlap {
                    generation: generation.clone(),
                    index,
                    to: wal_offset(after),
                    before: file.path(),
                    after: after.path(),
                },
                Bound::LastSegment { .. } => V3ApplyError::TooLarge {
                    file: file.path(),
                    limit: WAL_INDEX_MAX_BYTES,
                    what: "a 0.3 WAL index can hold (offsets have 8 hex digits)".into(),
                },
                Bound::Snapshot => V3ApplyError::TooLarge {
                    file: file.path(),
                    limit,
                    what,
                },
            }
            .into()));
        }
        w.flush()?;
        Ok(Ok(n))
    })();
    drop(dec);
    // 0.3 writes one frame per file: bytes after it are damage (or a file inflated to
    // look like more), refused without being read.
    let trailing = (src.file.size_bytes - src.at) + src.cur.len() as u64;
    let copied = match copied {
        Ok(Ok(_)) if trailing > 0 => Err(io::Error::other(format!(
            "{trailing} bytes follow the end of the frame"
        ))),
        r => r,
    };
    match copied {
        Ok(r) => r,
        Err(source) if w.failed => Err(ApplyError::Io {
            path: dst_path.to_path_buf(),
            op: "write",
            source,
        }),
        Err(source) => Err(match src.error.take() {
            Some(source) => ApplyError::Fetch {
                file: file.path(),
                source,
            },
            None => V3ApplyError::Decompress {
                file: file.path(),
                source,
            }
            .into(),
        }),
    }
}

/// A writer that remembers whether it failed, so an error out of `io::copy` can be told
/// apart: local disk (write side) or a damaged replica file (read side).
struct WriteSide<'a> {
    inner: BufWriter<&'a File>,
    failed: bool,
}

impl Write for WriteSide<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let r = self.inner.write(buf);
        self.failed |= r.is_err();
        r
    }

    fn flush(&mut self) -> io::Result<()> {
        let r = self.inner.flush();
        self.failed |= r.is_err();
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::time::{Duration, UNIX_EPOCH};

    const G1: &str = "0000000000000001";
    const G2: &str = "d644f78ac6339b2c";

    fn gen(name: &str) -> GenerationId {
        GenerationId::parse(name).unwrap()
    }

    fn snap(g: &str, index: u32, secs: u64) -> V3File {
        V3File {
            generation: gen(g),
            kind: V3Kind::Snapshot { index },
            size_bytes: 1000,
            modified: UNIX_EPOCH + Duration::from_secs(secs),
        }
    }

    fn seg(g: &str, index: u32, offset: u32, secs: u64) -> V3File {
        V3File {
            generation: gen(g),
            kind: V3Kind::Wal { index, offset },
            size_bytes: 10,
            modified: UNIX_EPOCH + Duration::from_secs(secs),
        }
    }

    /// (generation, snapshot index, [(index, [offsets])]) of a plan.
    type Shape = (String, u32, Vec<(u32, Vec<u32>)>);

    /// (name, listing, `-generation`, the plan's shape or the error variant's name).
    type Case = (
        &'static str,
        Vec<V3File>,
        Option<&'static str>,
        Result<Shape, &'static str>,
    );

    fn shape(p: &V3Plan) -> Shape {
        let wal = p
            .wal
            .iter()
            .map(|w| {
                let offsets = w
                    .segments
                    .iter()
                    .map(|s| match s.kind {
                        V3Kind::Wal { offset, .. } => offset,
                        V3Kind::Snapshot { .. } => panic!("snapshot among segments"),
                    })
                    .collect();
                (w.index, offsets)
            })
            .collect();
        (p.generation.to_string(), p.snapshot.index(), wal)
    }

    /// G2 as 0.3.13 left it in the experiment: snapshots at 0 and 2, indexes 0..=3.
    fn typical() -> Vec<V3File> {
        vec![
            snap(G2, 0, 10),
            seg(G2, 0, 0, 10),
            seg(G2, 0, 0x4080, 11),
            seg(G2, 1, 0x1038, 13),
            seg(G2, 1, 0, 12),
            snap(G2, 2, 14),
            seg(G2, 2, 0, 14),
            seg(G2, 2, 0x1038, 15),
            seg(G2, 2, 0x58860, 16),
            seg(G2, 3, 0, 17),
        ]
    }

    #[test]
    fn table() {
        let with = |extra: Vec<V3File>| {
            let mut v = typical();
            v.extend(extra);
            v
        };
        let without = |drop: &[V3File]| {
            typical()
                .into_iter()
                .filter(|f| !drop.contains(f))
                .collect::<Vec<_>>()
        };
        let full = || {
            (
                G2.to_string(),
                2,
                vec![(2, vec![0, 0x1038, 0x58860]), (3, vec![0])],
            )
        };
        let cases: Vec<Case> = vec![
            (
                "newest snapshot, then its index and later ones, segments by offset",
                typical(),
                None,
                Ok(full()),
            ),
            (
                "a newer file elsewhere makes another generation the default",
                with(vec![snap(G1, 5, 100), seg(G1, 5, 0, 101)]),
                None,
                Ok((G1.into(), 5, vec![(5, vec![0])])),
            ),
            (
                "a tie goes to the first name, not the higher index",
                with(vec![snap(G1, 0, 17)]),
                None,
                Ok((G1.into(), 0, vec![])),
            ),
            (
                "an explicit generation wins over the newest",
                with(vec![snap(G1, 5, 100)]),
                Some(G2),
                Ok(full()),
            ),
            (
                "a snapshot alone restores",
                vec![snap(G2, 7, 1), seg(G2, 6, 0, 1)],
                None,
                Ok((G2.into(), 7, vec![])),
            ),
            ("empty", vec![], None, Err("Empty")),
            (
                "unknown generation",
                typical(),
                Some(G1),
                Err("GenerationNotFound"),
            ),
            (
                "the newest generation has no snapshot: no fallback",
                with(vec![seg(G1, 9, 0, 100)]),
                None,
                Err("NoSnapshot"),
            ),
            (
                "an index in the middle missing",
                without(&[seg(G2, 3, 0, 17)])
                    .into_iter()
                    .chain([seg(G2, 4, 0, 18)])
                    .collect(),
                None,
                Err("MissingWalIndexes"),
            ),
            (
                "the snapshot's own index missing",
                without(&[
                    seg(G2, 2, 0, 14),
                    seg(G2, 2, 0x1038, 15),
                    seg(G2, 2, 0x58860, 16),
                ]),
                None,
                Err("MissingWalIndexes"),
            ),
            (
                "an index without its offset-0 segment",
                without(&[seg(G2, 2, 0, 14)]),
                None,
                Err("MissingWalStart"),
            ),
        ];
        for (name, files, generation, want) in cases {
            let got = plan_v3(&files, generation);
            match (want, got) {
                (Ok(w), Ok(p)) => assert_eq!(shape(&p), w, "{name}"),
                (Err(w), Err(e)) => assert!(format!("{e:?}").starts_with(w), "{name}: got {e:?}"),
                (w, g) => panic!("{name}: want {w:?}, got {g:?}"),
            }
        }
    }

    #[test]
    fn errors_name_generation_index_and_files() {
        let files: Vec<_> = typical()
            .into_iter()
            .filter(|f| f.index() != 2 || f.kind == V3Kind::Snapshot { index: 2 })
            .collect();
        let e = plan_v3(&files, None).unwrap_err();
        assert_eq!(
            e,
            V3PlanError::MissingWalIndexes {
                generation: gen(G2),
                missing_from: 2,
                missing_to: 2,
                before: "generations/d644f78ac6339b2c/snapshots/00000002.snapshot.lz4".into(),
                after: "generations/d644f78ac6339b2c/wal/00000003_00000000.wal.lz4".into(),
            }
        );
        assert!(
            e.to_string()
                .contains("WAL indexes 00000002..=00000002 are missing"),
            "{e}"
        );
        let files: Vec<_> = typical()
            .into_iter()
            .filter(|f| *f != seg(G2, 2, 0, 14))
            .collect();
        let e = plan_v3(&files, None).unwrap_err().to_string();
        assert_eq!(
            e,
            "generation d644f78ac6339b2c, WAL index 00000002: bytes 0..4152 are missing: its \
             first segment is generations/d644f78ac6339b2c/wal/00000002_00001038.wal.lz4"
        );
        let e = plan_v3(&typical(), Some("0123")).unwrap_err().to_string();
        assert!(e.contains("holds: d644f78ac6339b2c"), "{e}");
    }

    /// An LZ4 frame with a content checksum, as 0.3 writes them (FLG byte 0x64).
    fn write_lz4(path: &Path, data: &[u8]) {
        let info = lz4_flex::frame::FrameInfo::new().content_checksum(true);
        let mut enc =
            lz4_flex::frame::FrameEncoder::with_frame_info(info, File::create(path).unwrap());
        enc.write_all(data).unwrap();
        enc.finish().unwrap();
    }

    /// A v3 replica made by real SQLite in a temp dir: the database file as the snapshot at
    /// index 0, WAL index 0 (written with the checkpointer off), then a TRUNCATE checkpoint and
    /// WAL index 1; each WAL cut into segments at `cuts` (byte offsets, not frame-aligned).
    struct Fixture {
        dir: tempfile::TempDir,
        want: Vec<Vec<u8>>,
    }

    impl Fixture {
        fn new(cuts: &[usize]) -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            let db = dir.path().join("src.db");
            let c = rusqlite::Connection::open(&db).unwrap();
            c.execute_batch(
                "PRAGMA page_size=1024; PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0;
                 CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);
                 PRAGMA wal_checkpoint(TRUNCATE);",
            )
            .unwrap();
            let root = dir.path().join("replica");
            let put = |rel: String, data: &[u8]| {
                let p = root.join(rel);
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                write_lz4(&p, data);
            };
            let g = gen(G2);
            put(
                crate::storage::layout::v3::snapshot_path(&g, 0),
                &std::fs::read(&db).unwrap(),
            );
            let wal_path = dir.path().join("src.db-wal");
            for index in 0..2u32 {
                for i in 0..40 {
                    c.execute(
                        "INSERT INTO t(v) VALUES (randomblob(?1))",
                        [300 + i * 7 + index as i64],
                    )
                    .unwrap();
                }
                // Shrink the database within the WAL too: commits truncate the output.
                c.execute("DELETE FROM t WHERE id % 3 = 0", []).unwrap();
                c.execute_batch("VACUUM").unwrap();
                let wal = std::fs::read(&wal_path).unwrap();
                let mut starts = vec![0];
                starts.extend(cuts.iter().copied().filter(|&c| c < wal.len()));
                starts.push(wal.len());
                for w in starts.windows(2) {
                    put(
                        crate::storage::layout::v3::wal_segment_path(&g, index, w[0] as u32),
                        &wal[w[0]..w[1]],
                    );
                }
                if index == 0 {
                    c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);").unwrap();
                }
            }
            let want = {
                let mut st = c
                    .prepare("SELECT data FROM sqlite_dbpage ORDER BY pgno")
                    .unwrap();
                let rows = st.query_map([], |r| r.get(0)).unwrap();
                rows.map(|r| r.unwrap()).collect()
            };
            // Keep `c` open until here: closing it would checkpoint and delete the WAL.
            drop(c);
            Fixture { dir, want }
        }

        fn store(&self) -> Arc<dyn ReplicaStore> {
            Arc::new(crate::storage::file::FileStore::new(
                self.dir.path().join("replica"),
            ))
        }

        fn segment(&self, index: u32, offset: u32) -> PathBuf {
            self.dir
                .path()
                .join("replica")
                .join(crate::storage::layout::v3::wal_segment_path(
                    &gen(G2),
                    index,
                    offset,
                ))
        }

        async fn restore(&self) -> (PathBuf, Result<ApplyReport, ApplyError>) {
            let store = self.store();
            let plan = plan_v3(&store.v3().unwrap().list_v3().await.unwrap(), None).unwrap();
            let out = self.dir.path().join("out.db");
            let opts = ApplyOptions {
                parallelism: 3,
                integrity: IntegrityCheck::Full,
                force: false,
            };
            let r = apply_v3(store, &plan, &out, &opts).await;
            (out, r)
        }

        /// Nothing but the source, the replica and (on success) the output remains.
        fn assert_no_temp_files(&self) {
            let names: Vec<_> = std::fs::read_dir(self.dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with("src.db") && n != "replica" && n != "out.db")
                .collect();
            assert!(names.is_empty(), "left behind: {names:?}");
        }
    }

    #[tokio::test]
    async fn applies_two_wal_indexes_cut_anywhere() {
        let fx = Fixture::new(&[1000, 5000, 5001, 20_000]);
        let (out, r) = fx.restore().await;
        let report = r.unwrap();
        let got = std::fs::read(&out).unwrap();
        let got: Vec<Vec<u8>> = got.chunks(1024).map(<[u8]>::to_vec).collect();
        assert_eq!(report.pages as usize, fx.want.len());
        assert_eq!(report.page_size, 1024);
        assert_eq!(got.len(), fx.want.len(), "page count");
        for (i, (a, b)) in fx.want.iter().zip(&got).enumerate() {
            assert!(a == b, "page {} differs", i + 1);
        }
        fx.assert_no_temp_files();
    }

    #[tokio::test]
    async fn missing_middle_segment_is_a_gap_and_output_untouched() {
        let fx = Fixture::new(&[1000, 5000, 20_000]);
        std::fs::remove_file(fx.segment(1, 5000)).unwrap();
        let (out, r) = fx.restore().await;
        let e = r.unwrap_err();
        assert!(
            matches!(
                &e,
                ApplyError::V3(V3ApplyError::SegmentGap {
                    index: 1,
                    from: 5000,
                    to: 20_000,
                    ..
                })
            ),
            "{e:?}"
        );
        let msg = e.to_string();
        assert!(
            msg.contains(
                "generation d644f78ac6339b2c, WAL index 00000001: bytes 5000..20000 are missing"
            ),
            "{msg}"
        );
        assert!(!out.exists());
        fx.assert_no_temp_files();
    }

    #[tokio::test]
    async fn overlapping_segment_is_refused() {
        let fx = Fixture::new(&[1000, 5000]);
        // A segment starting inside the previous one: bytes 1000..5000 cover 2000.
        std::fs::rename(fx.segment(0, 5000), fx.segment(0, 2000)).unwrap();
        let (_, r) = fx.restore().await;
        let e = r.unwrap_err();
        assert!(
            matches!(
                &e,
                ApplyError::V3(V3ApplyError::SegmentOverlap { to: 2000, .. })
            ),
            "{e:?}"
        );
        fx.assert_no_temp_files();
    }

    #[tokio::test]
    async fn damaged_frame_before_a_commit_is_corruption() {
        let fx = Fixture::new(&[]);
        // Flip a byte in the second frame's page of index 0: later commits still chain.
        let p = fx.segment(0, 0);
        let mut enc = Vec::new();
        lz4_flex::frame::FrameDecoder::new(&std::fs::read(&p).unwrap()[..])
            .read_to_end(&mut enc)
            .unwrap();
        enc[32 + (24 + 1024) + 24 + 100] ^= 0xff;
        write_lz4(&p, &enc);
        let (out, r) = fx.restore().await;
        let e = r.unwrap_err();
        assert!(
            matches!(
                &e,
                ApplyError::V3(V3ApplyError::CorruptWal { index: 0, .. })
            ),
            "{e:?}"
        );
        assert!(!out.exists());
    }

    #[tokio::test]
    async fn damaged_lz4_names_the_file() {
        let fx = Fixture::new(&[]);
        let p = fx.segment(1, 0);
        let mut b = std::fs::read(&p).unwrap();
        let n = b.len();
        b[n / 2] ^= 0xff;
        std::fs::write(&p, b).unwrap();
        let (_, r) = fx.restore().await;
        let e = r.unwrap_err().to_string();
        assert!(
            e.contains("00000001_00000000.wal.lz4: the LZ4 frame does not decompress"),
            "{e}"
        );
        fx.assert_no_temp_files();
    }

    fn snapshot_file(fx: &Fixture) -> PathBuf {
        fx.dir
            .path()
            .join("replica")
            .join(crate::storage::layout::v3::snapshot_path(&gen(G2), 0))
    }

    fn unlz4(p: &Path) -> Vec<u8> {
        let mut v = Vec::new();
        lz4_flex::frame::FrameDecoder::new(&std::fs::read(p).unwrap()[..])
            .read_to_end(&mut v)
            .unwrap();
        v
    }

    /// Issue 17: a snapshot whose frame goes on past the database its header describes
    /// (a decompression bomb) stops there, naming the file; it used to be written out whole.
    #[tokio::test]
    async fn snapshot_bomb_stops_at_its_header_size() {
        let fx = Fixture::new(&[]);
        let p = snapshot_file(&fx);
        let mut db = unlz4(&p);
        let size = db.len() as u64;
        db.resize(db.len() + (8 << 20), 0);
        write_lz4(&p, &db);
        let (out, r) = fx.restore().await;
        let e = r.unwrap_err();
        match &e {
            ApplyError::V3(V3ApplyError::TooLarge { file, limit, .. }) => {
                assert_eq!(*limit, size);
                assert!(file.ends_with("snapshots/00000000.snapshot.lz4"), "{file}");
            }
            e => panic!("want TooLarge, got {e:?}"),
        }
        assert!(
            e.to_string()
                .contains("pages of 1024 bytes its SQLite header says"),
            "{e}"
        );
        assert!(!out.exists());
        fx.assert_no_temp_files();
    }

    /// A segment that decompresses past the offset where the next one starts stops there.
    #[tokio::test]
    async fn segment_bomb_stops_at_the_next_segment() {
        let fx = Fixture::new(&[1000]);
        let p = fx.segment(1, 0);
        let mut wal = unlz4(&p);
        wal.resize(wal.len() + (8 << 20), 0);
        write_lz4(&p, &wal);
        let (_, r) = fx.restore().await;
        let e = r.unwrap_err();
        assert!(
            matches!(
                &e,
                ApplyError::V3(V3ApplyError::SegmentOverlap {
                    index: 1,
                    to: 1000,
                    ..
                })
            ),
            "{e:?}"
        );
        fx.assert_no_temp_files();
    }

    #[test]
    fn snapshot_limit_follows_sqlite_rules() {
        let mut h = vec![0u8; 100];
        h[..16].copy_from_slice(b"SQLite format 3\0");
        h[16..18].copy_from_slice(&4096u16.to_be_bytes());
        h[24..28].copy_from_slice(&7u32.to_be_bytes());
        h[28..32].copy_from_slice(&5u32.to_be_bytes());
        h[92..96].copy_from_slice(&7u32.to_be_bytes());
        assert_eq!(snapshot_limit(&h).unwrap().0, 5 * 4096);
        // A stale in-header size (version-valid-for behind the change counter): SQLite
        // ignores it, and so does the bound.
        h[92..96].copy_from_slice(&6u32.to_be_bytes());
        assert_eq!(snapshot_limit(&h).unwrap().0, SQLITE_MAX_PAGES * 4096);
        h[16..18].copy_from_slice(&1u16.to_be_bytes());
        assert_eq!(snapshot_limit(&h).unwrap().0, SQLITE_MAX_PAGES * 65536);
        h[16..18].copy_from_slice(&1000u16.to_be_bytes());
        assert!(snapshot_limit(&h).unwrap_err().contains("page size 1000"));
        assert!(snapshot_limit(&h[..50]).is_err());
        h[0] = b's';
        assert!(snapshot_limit(&h).is_err());
    }

    /// A snapshot larger than the store's restore chunk (1 MiB for a file replica) is read
    /// in pieces as it decompresses, and restores whole.
    #[tokio::test]
    async fn large_snapshot_is_read_in_pieces() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("src.db");
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute_batch("CREATE TABLE t(v); INSERT INTO t VALUES (randomblob(3000000));")
            .unwrap();
        drop(c);
        let want = std::fs::read(&db).unwrap();
        let snap = dir
            .path()
            .join("replica")
            .join(crate::storage::layout::v3::snapshot_path(&gen(G2), 0));
        std::fs::create_dir_all(snap.parent().unwrap()).unwrap();
        write_lz4(&snap, &want);
        assert!(std::fs::metadata(&snap).unwrap().len() > 2 << 20);
        let store: Arc<dyn ReplicaStore> = Arc::new(crate::storage::file::FileStore::new(
            dir.path().join("replica"),
        ));
        let plan = plan_v3(&store.v3().unwrap().list_v3().await.unwrap(), None).unwrap();
        let out = dir.path().join("out.db");
        let opts = ApplyOptions {
            parallelism: 2,
            integrity: IntegrityCheck::Full,
            force: false,
        };
        apply_v3(store, &plan, &out, &opts).await.unwrap();
        assert!(
            std::fs::read(&out).unwrap() == want,
            "restored bytes differ"
        );
    }

    #[test]
    fn plan_json_and_text() {
        let p = plan_v3(&typical(), None).unwrap();
        assert_eq!(p.file_count(), 5);
        assert_eq!(p.total_bytes(), 1000 + 4 * 10);
        assert_eq!(p.last_index(), 3);
        let j = p.to_json();
        assert_eq!(j["generation"], G2);
        assert_eq!(j["snapshot"]["index"], "00000002");
        assert_eq!(j["wal"].as_array().unwrap().len(), 2);
        assert_eq!(j["wal"][0]["segments"][1]["offset"], 0x1038);
        assert_eq!(j["bytes"].as_u64().unwrap(), p.total_bytes());
        let text = p.to_string();
        assert!(
            text.starts_with(
                "restore Litestream 0.3 generation d644f78ac6339b2c to WAL index 00000003 from 5 file(s), 1040 bytes:"
            ),
            "{text}"
        );
        assert!(text.contains("snapshot  00000002"), "{text}");
        assert!(text.contains("wal       00000003"), "{text}");
    }
}
