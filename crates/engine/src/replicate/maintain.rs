//! A replica's housekeeping: level compaction, snapshots (level 9) and retention, on
//! Litestream's default schedule, against an in-memory view of the replica's files.
//!
//! Owns: [`ReplicaView`] (one listing at start, then updated by our own puts and
//! deletes, so an idle replica costs no requests), the compaction and snapshot
//! schedule (boundary-aligned intervals), and the retention rules that keep every
//! restore possible (always keep the newest snapshot and each level's newest file,
//! delete L0 only once L1 covers it, never open a gap between a snapshot and the head).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Cursor, Read, Seek, SeekFrom, Write};
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use ltx::{Decoder, Level, TxId};
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use super::compaction_check;
use super::local::{ms_to_time, LocalDir};
use super::status::ReplicaStatus;
use super::ReplicaOptions;
use crate::history::plan::{plan, Listing, Target};
use crate::progress::{Logged, Phase, Progress};
use crate::storage::layout::{LtxInfo, LtxKey};
use crate::storage::{ReplicaStore, StorageError};

/// Read and write buffer of each file of a merge ([`Maintenance::merge_and_put`]).
const MERGE_BUF: usize = 64 * 1024;

/// What we know a replica holds, per level, kept current by our own writes.
#[derive(Debug, Default, Clone)]
pub struct ReplicaView {
    levels: BTreeMap<u8, Vec<LtxInfo>>,
}

/// `call`, tried up to four times while it fails with a retryable error, 50 ms more
/// between each try.
async fn with_tries<T, F, Fut>(mut call: F) -> Result<T, StorageError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StorageError>>,
{
    let mut tries = 0;
    loop {
        tries += 1;
        match call().await {
            Err(e) if e.is_retryable() && tries < 4 => {
                tokio::time::sleep(Duration::from_millis(50 * tries)).await;
            }
            r => return r,
        }
    }
}

impl ReplicaView {
    pub async fn load(store: &dyn ReplicaStore) -> Result<ReplicaView, StorageError> {
        let mut levels = BTreeMap::new();
        // A flaky store (one call in a few failing) must not keep the start from ever
        // completing its listings: each gets a few quick tries.
        let present = with_tries(|| store.levels_present()).await?;
        // Only the levels that exist, when the store can tell in one request (issue 27:
        // 10,000 replicas starting made 100,000 LISTs).
        let present = present.unwrap_or_else(|| Level::all().collect());
        for level in present {
            let files = with_tries(|| store.list(level)).await?;
            if !files.is_empty() {
                levels.insert(level.get(), files);
            }
        }
        Ok(ReplicaView { levels })
    }

    pub fn files(&self, level: Level) -> &[LtxInfo] {
        self.levels
            .get(&level.get())
            .map(|v| v.as_slice())
            .unwrap_or(&[])
    }

    /// Highest TXID held at any level (`None` when empty).
    pub fn position(&self) -> Option<TxId> {
        self.levels
            .values()
            .filter_map(|v| v.iter().map(|i| i.key.max).max())
            .max()
    }

    pub fn record_put(&mut self, key: LtxKey, size_bytes: u64, created: SystemTime) {
        let v = self.levels.entry(key.level.get()).or_default();
        v.retain(|i| i.key != key);
        v.push(LtxInfo {
            key,
            size_bytes,
            created,
        });
        v.sort_by_key(|i| (i.key.min, i.key.max));
    }

    pub fn record_delete(&mut self, keys: &[LtxKey]) {
        for k in keys {
            if let Some(v) = self.levels.get_mut(&k.level.get()) {
                v.retain(|i| i.key != *k);
            }
        }
    }

    pub fn all(&self) -> Vec<LtxInfo> {
        self.levels.values().flatten().cloned().collect()
    }
}

/// Re-encodes a full-database file (every page 1..commit) as a snapshot: same pages,
/// min TXID 1, WAL fields cleared, pages in the replica's `encoding` (a replica written
/// for Litestream <= 0.5.15 must never receive a block-encoded file).
pub fn as_snapshot(full: &[u8], encoding: ltx::PageEncoding) -> Result<Bytes, ltx::CompactError> {
    let dec = Decoder::new(Cursor::new(full)).map_err(ltx::CompactError::from)?;
    let (out, _) = ltx::compact_as_snapshot(vec![dec], Vec::new(), encoding)?;
    Ok(Bytes::from(out))
}

/// [`as_snapshot`] of a full-database file on disk, streamed into an unnamed temp file in
/// `dir` (gone when closed): that file and its length. Memory does not follow the
/// database's size (issue 27).
pub fn as_snapshot_file(
    full: File,
    dir: &std::path::Path,
    encoding: ltx::PageEncoding,
) -> std::io::Result<(File, u64)> {
    let dec = Decoder::new(BufReader::with_capacity(MERGE_BUF, full))
        .map_err(|e| std::io::Error::other(ltx::CompactError::from(e)))?;
    let out = BufWriter::with_capacity(MERGE_BUF, tempfile::tempfile_in(dir)?);
    let (out, _) =
        ltx::compact_as_snapshot(vec![dec], out, encoding).map_err(std::io::Error::other)?;
    let mut f = out.into_inner().map_err(|e| e.into_error())?;
    let len = f.seek(SeekFrom::End(0))?;
    Ok((f, len))
}

/// Bytes per ranged GET when a replica's file is copied to a local temp file (a merge's
/// input, a merged file read back for `verify-compaction`), unless the store asks for
/// larger ones ([`ReplicaStore::restore_chunk_bytes`]).
const FETCH_CHUNK_BYTES: u64 = 8 << 20;

/// Bytes of a download gathered before they are written to the temp file.
const FETCH_WRITE_BYTES: usize = 1 << 20;

/// Copies `info`'s file from the replica into an unnamed temp file in `dir`, rewound: in
/// ranged reads of [`FETCH_CHUNK_BYTES`] or the store's restore size where larger, each
/// written as it arrives ([`ReplicaStore::get_stream`]), so memory holds a piece, never a
/// range. A NATS object store reads any range from the object's start and asks for one
/// range per file: in 8 MiB ranges an 8 GiB file would cost 1,024 reads of up to 8 GiB,
/// and the skipped chunks the server pushed piled up in the client (issue 27). Opening a
/// range is tried again on a retryable error, and a body cut off part-way resumes from
/// the first byte not yet received, while each try brings bytes.
async fn download_to_file(
    store: &dyn ReplicaStore,
    info: &LtxInfo,
    dir: &std::path::Path,
) -> Result<File, MaintainError> {
    use futures::StreamExt;
    let dir = dir.to_path_buf();
    let mut file = tokio::task::spawn_blocking(move || tempfile::tempfile_in(&dir))
        .await
        .map_err(|e| MaintainError::Plan(e.to_string()))??;
    let step = FETCH_CHUNK_BYTES.max(store.restore_chunk_bytes());
    let mut buf: Vec<u8> = Vec::with_capacity(FETCH_WRITE_BYTES);
    let (mut at, mut cuts) = (0u64, 0u64);
    'ranges: while at < info.size_bytes {
        let range = at..at.saturating_add(step).min(info.size_bytes);
        let mut body = with_tries(|| store.get_stream(&info.key, range.clone())).await?;
        while let Some(piece) = body.next().await {
            let piece = match piece {
                Ok(p) => p,
                Err(e) if e.is_retryable() && cuts < 3 => {
                    cuts += 1;
                    tokio::time::sleep(Duration::from_millis(50 * cuts)).await;
                    continue 'ranges;
                }
                Err(e) => return Err(e.into()),
            };
            if at + piece.len() as u64 > range.end {
                return Err(MaintainError::Plan(format!(
                    "{}: a ranged read of bytes {range:?} returned more",
                    info.key
                )));
            }
            cuts = 0;
            at += piece.len() as u64;
            buf.extend_from_slice(&piece);
            if buf.len() >= FETCH_WRITE_BYTES {
                (file, buf) = write_out(file, buf).await?;
            }
        }
        if at != range.end {
            return Err(MaintainError::Plan(format!(
                "{}: a ranged read of bytes {range:?} ended at byte {at}",
                info.key
            )));
        }
    }
    (file, _) = write_out(file, buf).await?;
    file.seek(SeekFrom::Start(0))?;
    Ok(file)
}

/// Appends `buf` to `file` on a blocking thread; returns both, `buf` emptied.
async fn write_out(mut file: File, mut buf: Vec<u8>) -> Result<(File, Vec<u8>), MaintainError> {
    tokio::task::spawn_blocking(move || -> std::io::Result<(File, Vec<u8>)> {
        file.write_all(&buf)?;
        buf.clear();
        Ok((file, buf))
    })
    .await
    .map_err(|e| MaintainError::Plan(e.to_string()))?
    .map_err(MaintainError::from)
}

/// One input of a merge: a file on disk, or a recent capture's bytes in memory.
enum MergeInput {
    File(File),
    Memory(Cursor<Bytes>),
}

impl MergeInput {
    /// A second handle for reading the input again (`verify-compaction`): a file's shares
    /// its offset (rewound before use), the bytes are shared.
    fn second(&self) -> std::io::Result<MergeInput> {
        Ok(match self {
            MergeInput::File(f) => MergeInput::File(f.try_clone()?),
            MergeInput::Memory(c) => MergeInput::Memory(Cursor::new(c.get_ref().clone())),
        })
    }
}

impl Read for MergeInput {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            MergeInput::File(f) => f.read(buf),
            MergeInput::Memory(c) => c.read(buf),
        }
    }
}

impl Seek for MergeInput {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        match self {
            MergeInput::File(f) => f.seek(pos),
            MergeInput::Memory(c) => c.seek(pos),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MaintainError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("compacting into level {level}: {source}")]
    Compact {
        level: u8,
        source: ltx::CompactError,
    },
    #[error("building snapshot: {0}")]
    Plan(String),
    #[error("local file: {0}")]
    Local(#[from] std::io::Error),
    #[error("verify-compaction: {key} does not match its inputs after {attempts} tries: {source}")]
    Verify {
        key: LtxKey,
        attempts: u32,
        source: super::compaction_check::CheckError,
    },
}

/// Merges tried per compaction when `verify-compaction` finds the result wrong.
const VERIFY_ATTEMPTS: u32 = 3;

pub struct Maintenance {
    /// Compaction interval of levels 1..=n.
    levels: Vec<Duration>,
    snapshot_interval: Duration,
    snapshot_retention: Duration,
    l0_retention: Duration,
    l0_check: Duration,
    retention_enabled: bool,
    encoding: ltx::PageEncoding,
    /// `verify-compaction`: merged files are read back and checked before being recorded.
    verify: bool,
    next_level: Vec<Instant>,
    next_snapshot: Instant,
    next_l0_check: Instant,
    snapshot_checked_at_start: bool,
    /// The replica's name, for progress logs.
    replica: String,
}

/// Which scheduled tasks of [`Maintenance::run_due`] have work waiting in a view, or may
/// have (in doubt, a task counts as waiting and keeps its timer). Cheap: each level's
/// newest file and count, never a walk of the files, as it is looked at after every
/// upload.
struct Waiting {
    /// Compaction into level i+1: its source level holds files past both its newest
    /// and the newest snapshot, or the level below has work (it feeds the source). Level
    /// 1's run also applies L0 retention.
    levels: Vec<bool>,
    /// A snapshot would add to the newest, or older snapshots may expire.
    snapshot: bool,
    /// L0 retention may delete: L1 exists and L0 holds more than its newest file.
    l0: bool,
}

impl Waiting {
    fn of(m: &Maintenance, view: &ReplicaView) -> Waiting {
        let newest = |l: Level| view.files(l).last().map_or(0, |f| f.key.max.get());
        let snapshots = view.files(Level::SNAPSHOT);
        let snapshot_max = snapshots.iter().map(|s| s.key.max.get()).max().unwrap_or(0);
        let head = Level::all().map(newest).max().unwrap_or(0);
        let l0 = m.retention_enabled
            && !view.files(Level::L1).is_empty()
            && view.files(Level::L0).len() > 1;
        let mut levels = Vec::with_capacity(m.levels.len());
        let mut below = false;
        for i in 0..m.levels.len() {
            let (src, dst) = (Level::new(i as u8).expect("0..=7"), Level::new(i as u8 + 1));
            let dst_max = dst.map_or(0, newest);
            let own = newest(src) > dst_max.max(snapshot_max);
            below |= own || (i == 0 && l0);
            levels.push(below);
        }
        Waiting {
            levels,
            snapshot: head > snapshot_max || (m.retention_enabled && snapshots.len() > 1),
            l0,
        }
    }
}

/// The next multiple of `interval` since the Unix epoch, as an `Instant`.
fn next_boundary(interval: Duration) -> Instant {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let iv = interval.as_millis().max(1);
    let next = (now.as_millis() / iv + 1) * iv;
    Instant::now() + Duration::from_millis((next - now.as_millis()) as u64)
}

impl Maintenance {
    pub fn new(o: &ReplicaOptions) -> Maintenance {
        Maintenance {
            next_level: o.levels.iter().map(|d| next_boundary(*d)).collect(),
            levels: o.levels.clone(),
            snapshot_interval: o.snapshot_interval,
            snapshot_retention: o.snapshot_retention,
            l0_retention: o.l0_retention,
            l0_check: o.l0_retention_check_interval,
            retention_enabled: o.retention_enabled,
            encoding: o.encoding,
            verify: o.verify_compaction,
            next_snapshot: next_boundary(o.snapshot_interval),
            next_l0_check: Instant::now() + o.l0_retention_check_interval,
            snapshot_checked_at_start: false,
            replica: o.name.clone(),
        }
    }

    /// When maintenance must next run for a replica that stays as `view` shows it (no
    /// upload meanwhile): the earliest due time of a task with work waiting, `None` when
    /// no task has any. A quiet replica whose files are compacted, snapshotted and
    /// retained (the usual state of a database nobody writes) so waits only for its
    /// next upload: no timer. See `Waiting` for what counts as work (in doubt, it does).
    pub fn next_due_for(&self, view: &ReplicaView) -> Option<Instant> {
        let w = Waiting::of(self, view);
        let levels = (self.next_level.iter().zip(&w.levels)).filter(|(_, w)| **w);
        let mut due = levels.map(|(t, _)| *t).min();
        for (t, waiting) in [(self.next_snapshot, w.snapshot), (self.next_l0_check, w.l0)] {
            if waiting {
                due = Some(due.map_or(t, |d| d.min(t)));
            }
        }
        due
    }

    /// After a wait planned by [`Maintenance::next_due_for`] on the same `view`: every
    /// task that had no work and whose time passed moves to its next slot, exactly as a
    /// run at its time would have moved it after finding nothing to do (so the first
    /// upload after a quiet spell does not set off overdue compactions).
    pub fn pass_idle_slots(&mut self, view: &ReplicaView, now: Instant) {
        let w = Waiting::of(self, view);
        for (i, waiting) in w.levels.iter().enumerate() {
            if !waiting && self.next_level[i] <= now {
                self.next_level[i] = next_boundary(self.levels[i]);
            }
        }
        if !w.snapshot && self.next_snapshot <= now {
            self.next_snapshot = next_boundary(self.snapshot_interval);
        }
        if !w.l0 && self.next_l0_check <= now {
            self.next_l0_check = now + self.l0_check;
        }
    }

    /// Runs whatever is due. Called only when the replica is caught up.
    pub async fn run_due(
        &mut self,
        store: &dyn ReplicaStore,
        local: &LocalDir,
        view: &mut ReplicaView,
        status: &ReplicaStatus,
        db: &str,
    ) -> Result<(), MaintainError> {
        let now = Instant::now();
        for i in 0..self.levels.len() {
            if self.next_level[i] <= now {
                self.next_level[i] = next_boundary(self.levels[i]);
                let level = Level::new(i as u8 + 1).expect("levels 1..=8");
                self.compact(store, local, view, status, db, level).await?;
                if level == Level::L1 && self.retention_enabled {
                    self.l0_retention(store, view, status).await?;
                }
            }
        }
        let snapshot_due = self.next_snapshot <= now;
        // The startup check waits for the replica's first file (a fresh replica gets its
        // snapshot right after it, so later compactions have nothing to add: see
        // `compact`). The uploader calls us after every upload, so no timer is needed.
        let startup_pending = !self.snapshot_checked_at_start && view.position().is_some();
        if snapshot_due || startup_pending {
            let startup = !self.snapshot_checked_at_start;
            self.snapshot_checked_at_start = true;
            // At startup, snapshot only if none was taken since the last boundary.
            let recent = view.files(Level::SNAPSHOT).last().is_some_and(|s| {
                s.created
                    .elapsed()
                    .map(|age| age < self.snapshot_interval)
                    .unwrap_or(true)
            });
            if snapshot_due || (startup && !recent && view.position().is_some()) {
                if snapshot_due {
                    self.next_snapshot = next_boundary(self.snapshot_interval);
                }
                self.snapshot(store, local, view, status, db).await?;
                if self.retention_enabled {
                    self.snapshot_retention(store, view, status).await?;
                }
            }
        }
        if self.next_l0_check <= now {
            self.next_l0_check = now + self.l0_check;
            if self.retention_enabled {
                self.l0_retention(store, view, status).await?;
            }
        }
        Ok(())
    }

    /// One input of a merge, rewound: the local L0 file itself when it is on disk (opened,
    /// never copied), a recent capture's bytes held in memory (no temp file: a busy
    /// database's level-1 merge has one such input per capture, and creating a file each
    /// cost more CPU than the capture itself), else the replica's copy downloaded in
    /// ranged reads into a temp file. Memory never holds a large input whole (issue 27:
    /// large captures go to disk, not to the memory cache).
    async fn fetch(
        &self,
        store: &dyn ReplicaStore,
        local: &LocalDir,
        info: &LtxInfo,
    ) -> Result<MergeInput, MaintainError> {
        if info.key.level == Level::L0 {
            if let Ok(Some((f, _))) = local.open_large(info.key.max, 0) {
                return Ok(MergeInput::File(f));
            }
            if let Ok(data) = local.read(info.key.max) {
                return Ok(MergeInput::Memory(Cursor::new(data)));
            }
        }
        let dir = local.meta_dir().to_path_buf();
        Ok(MergeInput::File(download_to_file(store, info, &dir).await?))
    }

    /// Merges the new files of level-1 into one file at `level`, covering
    /// `[level's max + 1 ..= newest source max]`.
    async fn compact(
        &self,
        store: &dyn ReplicaStore,
        local: &LocalDir,
        view: &mut ReplicaView,
        status: &ReplicaStatus,
        db: &str,
        level: Level,
    ) -> Result<(), MaintainError> {
        let src_level = Level::new(level.get() - 1).expect("level >= 1");
        let dst_max = view
            .files(level)
            .last()
            .map(|i| i.key.max.get())
            .unwrap_or(0);
        // The contiguous run of source files just after the destination's max.
        let mut run: Vec<LtxInfo> = Vec::new();
        let mut cur = dst_max;
        for f in view.files(src_level) {
            if f.key.max.get() <= cur {
                continue;
            }
            // A hole below the first file (a replica restarted from a snapshot) starts a
            // new run here; restores bridge it with the snapshot. A hole later ends the run.
            if f.key.min.get() > cur + 1 && !run.is_empty() {
                break;
            }
            cur = f.key.max.get();
            run.push(f.clone());
        }
        if run.is_empty() {
            return Ok(());
        }
        // Nothing past the newest snapshot: the merge would only repeat it (typically the
        // first L0 files, covered by the snapshot taken at startup). Wait until there is
        // news; the run then starts at the same TXID, so the level keeps no hole. This is
        // what keeps an idle replica at zero requests after its first minute.
        let snapshot_max = view
            .files(Level::SNAPSHOT)
            .iter()
            .map(|s| s.key.max.get())
            .max()
            .unwrap_or(0);
        if cur <= snapshot_max {
            return Ok(());
        }
        let (key, _) = self
            .merge_and_put(store, local, view, (status, db), &run, level)
            .await?;
        debug!(db, file = %key, inputs = run.len(), "compacted");
        Ok(())
    }

    /// Writes a full snapshot `1..=max` at level 9, merged from the replica's own files.
    async fn snapshot(
        &self,
        store: &dyn ReplicaStore,
        local: &LocalDir,
        view: &mut ReplicaView,
        status: &ReplicaStatus,
        db: &str,
    ) -> Result<(), MaintainError> {
        let listing = Listing::new(view.all());
        let p = match plan(&listing, Target::Latest) {
            Ok(p) => p,
            Err(e) => return Err(MaintainError::Plan(e.to_string())),
        };
        if p.files.len() == 1 && p.files[0].key.level == Level::SNAPSHOT {
            return Ok(()); // the newest snapshot is already the head
        }
        let (key, len) = self
            .merge_and_put(store, local, view, (status, db), &p.files, Level::SNAPSHOT)
            .await?;
        info!(db, file = %key, bytes = len, "snapshot written");
        Ok(())
    }

    /// Merges `files` (oldest first, contiguous) newest-page-wins into one file at `level`
    /// (a complete snapshot `1..=max` at level 9), uploads it and records it in the view.
    /// Returns its key and size.
    ///
    /// Memory does not follow the size of the files (issue 27: an 8 GiB database in
    /// 100 MiB): each input is a local file (a local L0 file opened as it is, or one
    /// downloaded in ranged reads to an unnamed temporary file beside the local L0 files),
    /// the merge streams page by page from those files into another one, and the output
    /// is uploaded from there in pieces ([`ReplicaStore::put_file`]); `verify-compaction`
    /// downloads it the same way to check it. Unnamed files vanish when closed, so nothing
    /// is left behind by an error or a crash.
    async fn merge_and_put(
        &self,
        store: &dyn ReplicaStore,
        local: &LocalDir,
        view: &mut ReplicaView,
        (status, db): (&ReplicaStatus, &str),
        files: &[LtxInfo],
        level: Level,
    ) -> Result<(LtxKey, u64), MaintainError> {
        let mut attempt = 0;
        // A large compaction or snapshot takes minutes: logged every few seconds.
        let (work, phase) = if level.is_snapshot() {
            ("snapshot", Phase::Snapshot)
        } else {
            ("compaction", Phase::Compaction)
        };
        let progress = Logged::progress(work, db, Some(&self.replica));
        loop {
            attempt += 1;
            let (key, len, created, want) = self
                .merge_once_and_put(store, local, files, level, (&progress, phase))
                .await?;
            if let Some(want) = want {
                // One GET of what was just written: the store's copy is what restores
                // and retention will rely on.
                // A large one is read back in ranged reads into a temp file (issue 27).
                let back: Box<dyn Read + Send> = if len <= super::stream_above_bytes() {
                    Box::new(Cursor::new(store.get(&key, None).await?))
                } else {
                    let info = LtxInfo {
                        key,
                        size_bytes: len,
                        created,
                    };
                    let f = download_to_file(store, &info, local.meta_dir()).await?;
                    Box::new(BufReader::with_capacity(MERGE_BUF, f))
                };
                let checked =
                    tokio::task::spawn_blocking(move || compaction_check::check(back, &want))
                        .await
                        .map_err(|e| MaintainError::Plan(e.to_string()))?;
                if let Err(e) = checked {
                    status
                        .compaction_verify_failures
                        .fetch_add(1, Ordering::Relaxed);
                    error!(file = %key, attempt, inputs = files.len(), error = %e, "verify-compaction: the merged file does not match its inputs; deleting it, keeping the inputs");
                    // Not recorded in the view, so nothing (L0 retention, the next
                    // compaction) counts on it; deleted so no restore reads it.
                    if let Err(d) = store.delete(&[key]).await {
                        warn!(file = %key, error = %d, "verify-compaction: cannot delete the bad merged file");
                    }
                    if attempt < VERIFY_ATTEMPTS {
                        continue;
                    }
                    return Err(MaintainError::Verify {
                        key,
                        attempts: attempt,
                        source: e,
                    });
                }
            }
            view.record_put(key, len, created);
            status.compactions.fetch_add(1, Ordering::Relaxed);
            status.compaction_bytes.fetch_add(len, Ordering::Relaxed);
            return Ok((key, len));
        }
    }

    /// One merge of `files` into `level`, uploaded; with `verify`, also what the inputs
    /// add up to (read from the spilled inputs again, independently of the merge).
    async fn merge_once_and_put(
        &self,
        store: &dyn ReplicaStore,
        local: &LocalDir,
        files: &[LtxInfo],
        level: Level,
        (progress, phase): (&Progress, Phase),
    ) -> Result<(LtxKey, u64, SystemTime, Option<compaction_check::Expected>), MaintainError> {
        let dir = local.meta_dir().to_path_buf();
        let mut inputs = Vec::with_capacity(files.len());
        // The inputs' bytes, fetched then merged; the merge and the upload report no bytes.
        progress.start(phase, Some(files.iter().map(|f| f.size_bytes).sum()));
        for f in files {
            inputs.push(self.fetch(store, local, f).await?);
            progress.advance(f.size_bytes);
        }
        let encoding = self.encoding;
        let verify = self.verify;
        let merged = tokio::task::spawn_blocking(move || -> Result<_, MaintainError> {
            let compact_err = |source| MaintainError::Compact {
                level: level.get(),
                source,
            };
            // Second handles on the spilled inputs, read again after the merge.
            let copies = if verify {
                inputs
                    .iter()
                    .map(MergeInput::second)
                    .collect::<std::io::Result<Vec<_>>>()?
            } else {
                Vec::new()
            };
            let decs = inputs
                .into_iter()
                .map(|f| Decoder::new(BufReader::with_capacity(MERGE_BUF, f)))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| compact_err(ltx::CompactError::from(e)))?;
            let out = BufWriter::with_capacity(MERGE_BUF, tempfile::tempfile_in(&dir)?);
            let (out, header) = if level.is_snapshot() {
                ltx::compact_as_snapshot(decs, out, encoding)
            } else {
                ltx::compact(decs, out, encoding)
            }
            .map_err(compact_err)?;
            let want = if verify {
                let mut readers = Vec::with_capacity(copies.len());
                for mut f in copies {
                    f.seek(SeekFrom::Start(0))?;
                    readers.push(BufReader::with_capacity(MERGE_BUF, f));
                }
                Some(
                    compaction_check::expected(readers, level.is_snapshot()).map_err(|e| {
                        MaintainError::Plan(format!("verify-compaction: reading the inputs: {e}"))
                    })?,
                )
            } else {
                None
            };
            // The inputs' files are closed (and gone) by now: only the output remains,
            // uploaded from disk in pieces, never read back whole (issue 27).
            let mut out = out.into_inner().map_err(|e| e.into_error())?;
            let len = out.seek(SeekFrom::End(0))?;
            Ok((out, len, header, want))
        })
        .await
        .map_err(|e| MaintainError::Plan(e.to_string()))?;
        let (out, len, header, want) = merged?;
        let key = LtxKey::new(level, header.min_txid, header.max_txid);
        let created = ms_to_time(header.timestamp_ms);
        store.put_file(&key, &out, len, created).await?;
        progress.finish(phase);
        Ok((key, len, created, want))
    }

    /// Deletes snapshots older than the retention (keeping the newest), then files at
    /// levels 1..=8 that end below the newest deleted snapshot (keeping each level's newest).
    /// Invariant K1, with [`plan_l0_retention`] for L0. Returns how many files went.
    async fn snapshot_retention(
        &self,
        store: &dyn ReplicaStore,
        view: &mut ReplicaView,
        status: &ReplicaStatus,
    ) -> Result<usize, MaintainError> {
        let snaps = view.files(Level::SNAPSHOT).to_vec();
        let Some((_newest, older)) = snaps.split_last() else {
            return Ok(0);
        };
        let expired: Vec<LtxKey> = older
            .iter()
            .filter(|s| {
                s.created
                    .elapsed()
                    .map(|a| a > self.snapshot_retention)
                    .unwrap_or(false)
            })
            .map(|s| s.key)
            .collect();
        if expired.is_empty() {
            return Ok(0);
        }
        let floor = expired.iter().map(|k| k.max).max().expect("nonempty");
        let mut doomed = expired;
        for level in 1..=8u8 {
            let level = Level::new(level).expect("valid");
            let files = view.files(level);
            if let Some((_, older)) = files.split_last() {
                doomed.extend(older.iter().filter(|f| f.key.max < floor).map(|f| f.key));
            }
        }
        store.delete(&doomed).await?;
        view.record_delete(&doomed);
        status
            .deletes
            .fetch_add(doomed.len() as u64, Ordering::Relaxed);
        Ok(doomed.len())
    }

    /// Deletes L0 files covered by L1 and older than the L0 retention, oldest first,
    /// stopping at the first too-recent file and never deleting the newest L0; records
    /// how the files were classified ([`ReplicaStatus::l0_retention`]).
    async fn l0_retention(
        &self,
        store: &dyn ReplicaStore,
        view: &mut ReplicaView,
        status: &ReplicaStatus,
    ) -> Result<(), MaintainError> {
        let l1_max = view.files(Level::L1).last().map(|f| f.key.max);
        let Some(l1_max) = l1_max else {
            status.l0_retention.set(0, 0, 0);
            return Ok(());
        };
        let p = plan_l0_retention(
            view.files(Level::L0),
            l1_max,
            self.l0_retention,
            SystemTime::now(),
        );
        status
            .l0_retention
            .set(p.doomed.len() as u64, p.not_compacted, p.too_recent);
        if p.doomed.is_empty() {
            return Ok(());
        }
        store.delete(&p.doomed).await?;
        view.record_delete(&p.doomed);
        status
            .deletes
            .fetch_add(p.doomed.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

/// `replicate -once -enforce-retention`, as Litestream's `Store.EnforceSnapshotRetention`
/// after its one sync: lists the replica and applies the snapshot retention now, whatever
/// the snapshot schedule says (snapshots older than `snapshot.retention` deleted, the
/// newest kept; files of levels 1..=8 ending below the newest deleted snapshot deleted,
/// each level's newest kept; L0 keeps its own schedule, as in Litestream). Returns how
/// many files were deleted; none with `retention.enabled: false`.
///
/// Requests: one LIST per level, and one batched DELETE when something expired.
pub async fn enforce_snapshot_retention(
    store: &dyn ReplicaStore,
    opts: &ReplicaOptions,
    status: &ReplicaStatus,
) -> Result<usize, MaintainError> {
    if !opts.retention_enabled {
        return Ok(0);
    }
    let mut view = ReplicaView::load(store).await?;
    Maintenance::new(opts)
        .snapshot_retention(store, &mut view, status)
        .await
}

/// One L0 retention run's choice: the files to delete, and how the others were kept.
#[derive(Debug, PartialEq, Eq)]
pub struct L0RetentionPlan {
    /// Covered by L1 and older than the retention, oldest first (Litestream's `eligible`).
    pub doomed: Vec<LtxKey>,
    /// Old enough, but above what L1 covers.
    pub not_compacted: u64,
    /// Younger than the retention, and every file after the first such one (L0 files are
    /// deleted in order, so no gap opens).
    pub too_recent: u64,
}

/// Chooses which of `l0` (sorted, oldest first) to delete given the highest TXID level 1
/// covers: a prefix of files covered and older than `retention` at `now`, never the
/// newest file (which, if it would have been eligible, is counted nowhere, as Litestream
/// counts it). Pure. Invariant K1: L0 goes only once L1 covers it and it is old enough.
pub fn plan_l0_retention(
    l0: &[LtxInfo],
    l1_max: ltx::TxId,
    retention: Duration,
    now: SystemTime,
) -> L0RetentionPlan {
    let mut p = L0RetentionPlan {
        doomed: Vec::new(),
        not_compacted: 0,
        too_recent: 0,
    };
    let mut gap = false;
    for (i, f) in l0.iter().enumerate() {
        let old_enough = now
            .duration_since(f.created)
            .map(|a| a >= retention)
            .unwrap_or(false);
        if !old_enough {
            p.too_recent = (l0.len() - i) as u64;
            break;
        }
        if f.key.max > l1_max || gap {
            gap = true;
            p.not_compacted += 1;
        } else if i + 1 < l0.len() {
            p.doomed.push(f.key);
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use ltx::{Encoder, Header, PageEncoding, PageNo, PageSize, TxId};

    /// L0 retention as Litestream classifies it: (files as (txid, age in s), L1 max,
    /// doomed txids, not compacted, too recent), retention 10 s.
    #[test]
    fn l0_retention_deletes_an_old_covered_prefix_and_counts_the_rest() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        type Case = (&'static [(u64, u64)], u64, &'static [u64], u64, u64);
        let cases: &[Case] = &[
            // All old and covered: all but the newest go; the newest counts nowhere.
            (&[(1, 60), (2, 50), (3, 40)], 3, &[1, 2], 0, 0),
            // Above L1: kept as not compacted.
            (&[(1, 60), (2, 50), (3, 40)], 1, &[1], 2, 0),
            // Too recent stops the run; everything after counts as too recent.
            (&[(1, 60), (2, 5), (3, 40)], 3, &[1], 0, 2),
            (&[(1, 5), (2, 5)], 2, &[], 0, 2),
            (&[], 9, &[], 0, 0),
            // The newest alone, old and covered: kept.
            (&[(4, 60)], 4, &[], 0, 0),
        ];
        for (files, l1, doomed, not_compacted, too_recent) in cases {
            let l0: Vec<LtxInfo> = files
                .iter()
                .map(|&(t, age)| {
                    let t = TxId::new(t).unwrap();
                    LtxInfo {
                        key: LtxKey::new(Level::L0, t, t),
                        size_bytes: 1,
                        created: now - Duration::from_secs(age),
                    }
                })
                .collect();
            let p = plan_l0_retention(&l0, TxId::new(*l1).unwrap(), Duration::from_secs(10), now);
            let got: Vec<u64> = p.doomed.iter().map(|k| k.max.get()).collect();
            assert_eq!(
                (got.as_slice(), p.not_compacted, p.too_recent),
                (*doomed, *not_compacted, *too_recent),
                "{files:?} l1 {l1}"
            );
        }
    }

    /// A full image at TXID 7 (pages 1..=3) in `encoding`.
    fn full_image(encoding: PageEncoding) -> Vec<u8> {
        let ps = PageSize::new(512).unwrap();
        let t = TxId::new(7).unwrap();
        let mut h = Header::new(ps, 3, t, t, 1_700_000_000_000);
        h.wal_offset = 32;
        let mut enc = Encoder::new(Vec::new(), &h, encoding).unwrap();
        for p in 1..=3u32 {
            enc.write_page(PageNo::new(p).unwrap(), &[p as u8; 512])
                .unwrap();
        }
        enc.finish().unwrap().0
    }

    #[test]
    fn a_hole_filling_snapshot_keeps_the_replicas_page_encoding() {
        for (encoding, flags) in [(PageEncoding::LegacyFrame, 0u16), (PageEncoding::Block, 1)] {
            let snap = as_snapshot(&full_image(PageEncoding::Block), encoding).unwrap();
            let h = Header::from_bytes(&snap).unwrap();
            assert_eq!((h.min_txid.get(), h.max_txid.get()), (1, 7));
            // The first page frame's header follows the 100-byte file header.
            assert_eq!(
                u16::from_be_bytes([snap[104], snap[105]]),
                flags,
                "{encoding:?}"
            );
        }
    }

    /// What the corrupting store does to merged files (levels 1..=9) it is given.
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Corrupt {
        Off,
        /// One byte flipped: the file checksum fails.
        FlipByte,
        /// Re-encoded with its last page changed: well formed, but not the merge.
        ChangePage,
    }

    /// A file store that corrupts merged files on their way in, as a broken store or a
    /// broken merge would.
    struct Corrupting {
        inner: std::sync::Arc<dyn ReplicaStore>,
        mode: std::sync::Mutex<Corrupt>,
    }

    fn change_last_page(data: &[u8]) -> Vec<u8> {
        let mut dec = Decoder::new(data).unwrap();
        let h = dec.header().clone();
        let mut buf = vec![0u8; h.page_size.bytes()];
        let mut pages = Vec::new();
        while let Some(p) = dec.next_page(&mut buf).unwrap() {
            pages.push((p, buf.clone()));
        }
        pages.last_mut().unwrap().1[100] ^= 0xff;
        let mut enc = Encoder::new(Vec::new(), &h, PageEncoding::Block).unwrap();
        for (p, b) in pages {
            enc.write_page(p, &b).unwrap();
        }
        enc.finish().unwrap().0
    }

    #[async_trait::async_trait]
    impl ReplicaStore for Corrupting {
        fn location(&self) -> &str {
            self.inner.location()
        }
        async fn list(&self, level: Level) -> Result<Vec<LtxInfo>, StorageError> {
            self.inner.list(level).await
        }
        async fn get(
            &self,
            key: &LtxKey,
            range: Option<std::ops::Range<u64>>,
        ) -> Result<Bytes, StorageError> {
            self.inner.get(key, range).await
        }
        async fn put(
            &self,
            key: &LtxKey,
            data: Bytes,
            created: SystemTime,
        ) -> Result<(), StorageError> {
            let mode = *self.mode.lock().unwrap();
            let data = match mode {
                _ if key.level == Level::L0 => data,
                Corrupt::Off => data,
                Corrupt::FlipByte => {
                    let mut v = data.to_vec();
                    let mid = v.len() / 2;
                    v[mid] ^= 0x20;
                    Bytes::from(v)
                }
                Corrupt::ChangePage => Bytes::from(change_last_page(&data)),
            };
            self.inner.put(key, data, created).await
        }
        async fn delete(&self, keys: &[LtxKey]) -> Result<(), StorageError> {
            self.inner.delete(keys).await
        }
    }

    /// L0 file `t` (pages as (pgno, fill byte), commit 4), created an hour ago.
    fn l0(t: u64, pages: &[(u32, u8)]) -> Vec<u8> {
        let ps = PageSize::new(512).unwrap();
        let tx = TxId::new(t).unwrap();
        let h = Header::new(ps, 4, tx, tx, 1_700_000_000_000 + t as i64);
        let mut enc = Encoder::new(Vec::new(), &h, PageEncoding::Block).unwrap();
        for &(p, b) in pages {
            enc.write_page(PageNo::new(p).unwrap(), &[b; 512]).unwrap();
        }
        enc.finish().unwrap().0
    }

    /// `verify-compaction`: a merged file that is not what its inputs add up to (checksum
    /// broken, or well formed with a page changed) is counted, logged, deleted and merged
    /// again; it is never recorded, so L0 retention keeps every input. Once the store
    /// behaves, the merge passes and the inputs may go. Without the key, nothing is read
    /// back and the bad file counts as today.
    #[tokio::test]
    async fn verify_compaction_keeps_inputs_of_a_bad_merge() {
        let dir = tempfile::tempdir().unwrap();
        let local =
            LocalDir::open(&dir.path().join("meta"), crate::fsutil::FileMode::PRIVATE).unwrap();
        let files = crate::storage::file::FileStore::new(dir.path().join("replica"));
        let store = Corrupting {
            inner: std::sync::Arc::new(files),
            mode: std::sync::Mutex::new(Corrupt::Off),
        };
        let hour_ago = SystemTime::now() - Duration::from_secs(3600);
        let l0_files = [
            l0(1, &[(1, 1), (2, 1), (3, 1), (4, 1)]),
            l0(2, &[(2, 2)]),
            l0(3, &[(3, 3), (4, 3)]),
        ];
        for (i, data) in l0_files.iter().enumerate() {
            let t = TxId::new(i as u64 + 1).unwrap();
            store
                .inner
                .put(
                    &LtxKey::new(Level::L0, t, t),
                    Bytes::from(data.clone()),
                    hour_ago,
                )
                .await
                .unwrap();
        }
        let l1 = Level::new(1).unwrap();
        let mut opts = ReplicaOptions::with_defaults("r");
        opts.l0_retention = Duration::ZERO;
        opts.verify_compaction = true;
        let m = Maintenance::new(&opts);
        let status = ReplicaStatus::default();

        for (mode, err) in [
            (Corrupt::FlipByte, "does not decode"),
            (Corrupt::ChangePage, "page 4 of the merged file differs"),
        ] {
            *store.mode.lock().unwrap() = mode;
            let before = status.compaction_verify_failures.load(Ordering::Relaxed);
            let mut view = ReplicaView::load(&store).await.unwrap();
            let e = m
                .compact(&store, &local, &mut view, &status, "db", l1)
                .await
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("verify-compaction: "), "{e}");
            assert!(e.contains(err), "{e}");
            assert_eq!(
                status.compaction_verify_failures.load(Ordering::Relaxed) - before,
                u64::from(VERIFY_ATTEMPTS),
                "every attempt checked and counted"
            );
            // Not recorded, deleted from the store, and the inputs stay.
            assert!(view.files(l1).is_empty());
            assert!(store.list(l1).await.unwrap().is_empty());
            m.l0_retention(&store, &mut view, &status).await.unwrap();
            assert_eq!(store.list(Level::L0).await.unwrap().len(), 3);
        }
        assert_eq!(status.compactions.load(Ordering::Relaxed), 0);

        // A store that behaves: the merge passes, is recorded, and L0 may go.
        *store.mode.lock().unwrap() = Corrupt::Off;
        let failures = status.compaction_verify_failures.load(Ordering::Relaxed);
        let mut view = ReplicaView::load(&store).await.unwrap();
        m.compact(&store, &local, &mut view, &status, "db", l1)
            .await
            .unwrap();
        assert_eq!(
            status.compaction_verify_failures.load(Ordering::Relaxed),
            failures
        );
        assert_eq!(store.list(l1).await.unwrap().len(), 1);
        m.l0_retention(&store, &mut view, &status).await.unwrap();
        assert_eq!(
            store.list(Level::L0).await.unwrap().len(),
            1,
            "the newest L0 stays"
        );

        // Without the key: nothing is read back, a bad merge counts as today.
        store.inner.delete(&[view.files(l1)[0].key]).await.unwrap();
        *store.mode.lock().unwrap() = Corrupt::ChangePage;
        opts.verify_compaction = false;
        let m = Maintenance::new(&opts);
        let status = ReplicaStatus::default();
        let mut view = ReplicaView::load(&store).await.unwrap();
        m.compact(&store, &local, &mut view, &status, "db", l1)
            .await
            .unwrap();
        assert_eq!(status.compaction_verify_failures.load(Ordering::Relaxed), 0);
        assert_eq!(view.files(l1).len(), 1);
    }

    /// A replica's file copied to a temp file arrives whole across ranges of the fetch
    /// size, streams cut mid-body resume where they stopped, and a range that comes back
    /// short (a proxy dropping the connection without an error) is an error, not a
    /// truncated input.
    #[tokio::test]
    async fn a_download_to_a_temp_file_resumes_cut_streams_and_refuses_short_ranges() {
        use crate::storage::faulty::FaultyStore;
        use crate::storage::file::FileStore;
        use std::sync::Arc;
        let d = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..(FETCH_CHUNK_BYTES as usize) * 2 + 12_345)
            .map(|i| (i % 253) as u8)
            .collect();
        let key = LtxKey::new(Level::SNAPSHOT, TxId::ONE, TxId::new(3).unwrap());
        let store = FaultyStore::new(Arc::new(FileStore::new(d.path())));
        store
            .put(&key, Bytes::from(data.clone()), SystemTime::now())
            .await
            .unwrap();
        let info = LtxInfo {
            key,
            size_bytes: data.len() as u64,
            created: SystemTime::now(),
        };
        store.faults.cut_streams.store(2, Ordering::SeqCst);
        let mut f = download_to_file(&store, &info, d.path()).await.unwrap();
        let mut got = Vec::new();
        f.read_to_end(&mut got).unwrap();
        assert!(got == data, "the copy differs");
        assert_eq!(store.injected(), 2);

        store.faults.truncate_gets.store(true, Ordering::SeqCst);
        let e = download_to_file(&store, &info, d.path()).await.unwrap_err();
        assert!(e.to_string().contains("ended at byte"), "{e}");
    }
}
