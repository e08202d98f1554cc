//! One database opened through the VFS: which TXID it serves, where each page of that
//! state lives, and reading pages on demand.
//!
//! Owns: the state a read transaction sees ([`Snapshot`]: the TXID, the page size, the
//! page count and, per page, the file and index entry holding its newest version), when it
//! changes (only at the start of a read transaction, [`Reader::begin_read`], and only if
//! the last look at the replica is older than the poll interval), and page reads: the
//! memory cache first, then the hydrated copy (`hydrate`) for the pages it holds, else
//! one ranged read (through the disk cache, `fetch::Source`) of the page and the
//! neighbours that follow it in the same file (128 KiB, doubling up to 1/16 of the memory
//! cache, at least 1 MiB and at most 8 MiB, while reads stay sequential), and, once a
//! sequential stream reaches that bound, three more runs prefetched in the background.
//! What is on its way counts against the memory cache's bound (`PageCache::reserve`): a
//! fetch reserves its bytes before it starts and releases them once its pages are in, and
//! a prefetch that would take reservations past half the bound is not started.
//!
//! Which replica and which files: `restore`'s own steps (`restore::run::pick` and
//! `restore::run::plan`), so a state served here is the state `restore` (with `-txid` or
//! `-timestamp`) writes. Does not: parse parameters (`options`), talk C (`vfs`, `file`).
//!
//! Requests: opening, one LIST per level (concurrent) and the plan's indexes (`index`,
//! concurrent), the newest snapshot's (with one replica and no timestamp target) fetched
//! during the listing, after a LIST of level 9 of its own; a poll, one
//! LIST of level 0, and only when it shows a newer TXID the full listing and the new
//! files' indexes; a page miss, one ranged GET (off a stream, of at least 512 KiB), or
//! the wait for a prefetched one.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use engine::history::plan::Target;
use engine::history::Times;
use engine::restore::output::IntegrityCheck;
use engine::restore::run::{self, Candidate, Found, RestoreOptions};
use engine::storage::{LtxKey, ReplicaStore};
use ltx::{Level, PageSize, TxId};

use crate::cache::PageCache;
use crate::disk::DiskCache;
use crate::error::VfsError;
use crate::fetch::{block_on, Cost, Source};
use crate::hydrate::Hydration;
use crate::index::{self, FileIndex};

/// The first readahead, and its bound while reads stay sequential (at most a sixteenth
/// of the memory cache: what is in flight counts against its bound). A 64th with six
/// runs in flight was tried: 128 MiB/s against 183 before this bound counted fetches,
/// and no lower peak RSS.
const READAHEAD_MIN_BYTES: u64 = 128 << 10;
/// The least a GET of page data off a sequential stream asks for (a shorter run's GET
/// goes on past it, the extra bytes dropped). Issue 22: from Garage on loopback, our client's ranged GETs of 64 and
/// 128 KiB mostly took 45-55 ms (a delayed-ACK stall: the response's last segment waits
/// for our ACK), while GETs of 512 KiB took 2-9 ms; a point lookup's three dependent page
/// reads paid the stall each. Over a real network (1.5 KB segments) a larger GET only
/// costs its transfer time (512 KiB: about 5 ms at 100 MB/s).
const MIN_GET_BYTES: u64 = 512 << 10;
const READAHEAD_MAX_BYTES: u64 = 8 << 20;
/// The bound's least value, whatever the cache: runs of 256 KiB made a scan crawl
/// (24 MiB/s), 1 MiB ones did 75 MiB/s (16 MiB cache, loaded machine).
const READAHEAD_FLOOR_BYTES: u64 = 1 << 20;
/// Runs fetched ahead of a sequential reader, each of the readahead's bound.
const PREFETCH_RUNS: usize = 3;
/// A read this many pages past the stream's last one still continues it.
const STREAM_GAP_PAGES: u32 = 16;
/// Reads off the stream in a row that end it.
const OFF_STREAM_READS: u32 = 4;

/// A run of frames fetched in the background: entries `first..=last` of `file`.
struct Prefetch {
    file: LtxKey,
    first: usize,
    last: usize,
    /// Its frames' bytes, reserved in the cache until its pages are in.
    bytes: u64,
    task: tokio::task::JoinHandle<Result<crate::fetch::Fetched, VfsError>>,
}

/// Where a page's newest version is: `files[file].entries[entry]`.
#[derive(Clone, Copy)]
struct Loc {
    file: u32,
    entry: u32,
}

const NOWHERE: Loc = Loc {
    file: u32::MAX,
    entry: 0,
};

/// The database as of one TXID.
pub struct Snapshot {
    pub txid: TxId,
    pub page_size: PageSize,
    /// Pages in the database.
    pub commit: u32,
    /// When the TXID served was written (the newest planned file's header timestamp,
    /// what `restore -timestamp` compares against), if the writer recorded it.
    pub timestamp: Option<jiff::Timestamp>,
    files: Vec<Arc<FileIndex>>,
    /// Indexed by page number - 1.
    map: Vec<Loc>,
}

impl Snapshot {
    pub fn size_bytes(&self) -> u64 {
        u64::from(self.commit) * self.page_size.bytes() as u64
    }
}

/// Counters for `PRAGMA sqlite_replicate_stats`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    /// GETs of page data, and their bytes.
    pub gets: u64,
    pub bytes_fetched: u64,
    /// GETs of headers and indexes (small files: the whole file), and their bytes.
    pub index_gets: u64,
    pub index_bytes: u64,
    /// Disk cache blocks served, and entries found damaged and fetched again.
    pub disk_hits: u64,
    pub disk_bad: u64,
    /// Pages read from the hydrated local copy.
    pub hydrated_reads: u64,
    pub polls: u64,
    /// How long the last load of a state took (listing, planning, headers and indexes),
    /// and its parts: the listing and planning (with the early snapshot's index fetched
    /// meanwhile), the other headers' and indexes' GETs and checks, the page map.
    pub load_ms: f64,
    pub list_ms: f64,
    pub index_ms: f64,
    pub map_ms: f64,
    /// Time spent waiting for page data (GETs, or prefetched runs still on their way).
    pub page_wait_ms: f64,
}

impl Stats {
    fn add_page_cost(&mut self, c: Cost) {
        self.gets += c.gets;
        self.bytes_fetched += c.bytes_fetched;
        self.disk_hits += c.disk_hits;
        self.disk_bad += c.disk_bad;
    }

    fn add_index_cost(&mut self, c: Cost) {
        self.index_gets += c.gets;
        self.index_bytes += c.bytes_fetched;
        self.disk_hits += c.disk_hits;
        self.disk_bad += c.disk_bad;
    }
}

pub struct Reader {
    candidates: Vec<Candidate>,
    store: Option<Arc<dyn ReplicaStore>>,
    disk: Option<Arc<DiskCache>>,
    /// `hydrate=1`: start a download of the first state loaded.
    hydrate: bool,
    hydration: Option<Hydration>,
    target: Target,
    /// A target set by pragma, applied at the next transaction start.
    pending_target: Option<Target>,
    poll: Duration,
    snap: Option<Snapshot>,
    indexes: HashMap<LtxKey, Arc<FileIndex>>,
    cache: PageCache,
    last_look: Option<Instant>,
    /// The last page of the sequential stream, and reads off it since.
    last_pgno: u32,
    off_stream: u32,
    readahead_bytes: u64,
    readahead_max: u64,
    prefetch: std::collections::VecDeque<Prefetch>,
    pub stats: Stats,
}

impl Reader {
    pub fn new(
        candidates: Vec<Candidate>,
        target: Target,
        poll: Duration,
        cache_bytes: u64,
        disk: Option<Arc<DiskCache>>,
        hydrate: bool,
    ) -> Reader {
        Reader {
            candidates,
            store: None,
            disk,
            hydrate,
            hydration: None,
            target,
            pending_target: None,
            poll,
            snap: None,
            indexes: HashMap::new(),
            cache: PageCache::new(cache_bytes),
            last_look: None,
            last_pgno: 0,
            off_stream: 0,
            readahead_bytes: READAHEAD_MIN_BYTES,
            readahead_max: (cache_bytes / 16).clamp(READAHEAD_FLOOR_BYTES, READAHEAD_MAX_BYTES),
            prefetch: Default::default(),
            stats: Stats::default(),
        }
    }

    pub fn snapshot(&self) -> Option<&Snapshot> {
        self.snap.as_ref()
    }

    pub fn cache_used_bytes(&self) -> u64 {
        self.cache.used_bytes()
    }

    /// The hydration's progress, if `hydrate=1`.
    pub fn hydration(&self) -> Option<crate::hydrate::Status> {
        self.hydration.as_ref().map(Hydration::progress)
    }

    /// The disk cache directory's bytes, if there is one.
    pub fn disk_used_bytes(&self) -> Option<u64> {
        self.disk.as_ref().map(|d| d.used_bytes())
    }

    fn source(&self, store: &Arc<dyn ReplicaStore>) -> Source {
        Source {
            store: store.clone(),
            disk: self.disk.clone(),
        }
    }

    /// Asks for another target from the next transaction on (`PRAGMA sqlite_replicate_txid
    /// = ...`, `PRAGMA sqlite_replicate_timestamp = ...`).
    pub fn set_target(&mut self, target: Target) {
        self.pending_target = Some(target);
    }

    /// The start of a read transaction: the one moment the state may change. Loads it the
    /// first time; afterwards, following the latest TXID, looks for new files when the
    /// last look is older than the poll interval.
    pub fn begin_read(&mut self) -> Result<(), VfsError> {
        if let Some(t) = self.pending_target.take() {
            self.target = t;
            return self.load(t);
        }
        let stale = self.last_look.is_none_or(|t| t.elapsed() >= self.poll);
        match (&self.snap, self.target) {
            (None, t) => self.load(t),
            (Some(s), Target::Latest) if stale => {
                let txid = s.txid;
                self.stats.polls += 1;
                self.last_look = Some(Instant::now());
                // A failed look (the store unreachable) is not a failed read: the state
                // known is still a consistent one. Said on stderr; the next poll retries.
                if let Err(e) = self.newer_in_l0(txid).and_then(|newer| match newer {
                    true => self.load(Target::Latest),
                    false => Ok(()),
                }) {
                    crate::host::report(&e);
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Whether level 0 holds a file past `txid` (every new transaction lands there first).
    fn newer_in_l0(&self, txid: TxId) -> Result<bool, VfsError> {
        let Some(store) = &self.store else {
            return Ok(true);
        };
        let files = block_on(store.list(Level::L0)).map_err(|source| VfsError::Storage {
            location: store.location().to_string(),
            object: "ltx/0/".into(),
            source,
        })?;
        Ok(files.iter().any(|f| f.key.max > txid))
    }

    /// Lists, picks, plans (as `restore` does) and builds the state for `target`.
    fn load(&mut self, target: Target) -> Result<(), VfsError> {
        let times = match target {
            Target::Timestamp(_) => Times::Exact,
            _ => Times::Listed,
        };
        let started = Instant::now();
        self.last_look = Some(started);
        // With one replica, the snapshot a plan starts from is fetched while the other
        // levels are listed (see `early_snapshot`).
        let early = match (self.candidates.as_slice(), target) {
            ([(_, store)], Target::Latest | Target::TxId(_)) => Some(self.source(store)),
            _ => None,
        };
        let known: Vec<LtxKey> = self.indexes.keys().copied().collect();
        let (picked, mut early) = block_on(async {
            let early = async {
                match &early {
                    Some(source) => early_snapshot(source, target, &known).await,
                    None => None,
                }
            };
            futures::join!(run::pick(&self.candidates, times, false), early)
        });
        let picked = picked.map_err(VfsError::restore)?;
        let listed = Instant::now();
        if matches!(picked.found, Found::Nothing) {
            return Err(VfsError::Setup(format!(
                "replica {} ({}) holds no backup",
                picked.name,
                picked.location()
            )));
        }
        let mut opts = RestoreOptions::latest(IntegrityCheck::None);
        opts.target = target;
        let run::Planned::Ltx(plan) = run::plan(&picked, &opts).map_err(VfsError::restore)? else {
            return Err(VfsError::Setup(
                "the replica holds only Litestream 0.3 generations".into(),
            ));
        };
        let store = picked.store.clone();
        let source = self.source(&store);
        let mut loaded = Vec::new();
        // The early snapshot's index, if planned (its error too: the plan needs it).
        if let Some((key, f)) = early.take() {
            if plan
                .files
                .iter()
                .any(|p| p.key == key && !self.indexes.contains_key(&key))
            {
                loaded.push(f?);
            }
        }
        let missing: Vec<_> = plan
            .files
            .iter()
            .filter(|f| !self.indexes.contains_key(&f.key))
            .filter(|f| !loaded.iter().any(|l| l.key == f.key))
            .cloned()
            .collect();
        loaded.extend(block_on(async {
            let loads = missing.iter().map(|f| index::load(&source, f));
            futures::future::try_join_all(loads).await
        })?);
        let indexed = Instant::now();
        for mut f in loaded {
            self.stats.add_index_cost(f.cost);
            for (pgno, page) in std::mem::take(&mut f.pages) {
                self.cache.insert((f.key, pgno), page);
            }
            self.indexes.insert(f.key, Arc::new(f));
        }
        let files: Vec<Arc<FileIndex>> = plan
            .files
            .iter()
            .map(|f| self.indexes[&f.key].clone())
            .collect();
        // Indexes of files no longer planned are dropped (the cache keeps their pages).
        self.indexes
            .retain(|k, _| plan.files.iter().any(|f| f.key == *k));
        let snap = build(&store, files, plan.target_txid)?;
        let mapped = Instant::now();
        if self.hydrate && self.hydration.is_none() {
            // Once, of the first state served; failing to start is said, not fatal.
            let page_bytes = snap.page_size.bytes() as u64;
            let dir = self.disk.as_ref().map(|d| d.dir());
            match Hydration::start(&picked, &plan, page_bytes, dir) {
                Ok(h) => self.hydration = Some(h),
                Err(e) => crate::host::report(&e),
            }
            self.hydrate = false;
        }
        self.snap = Some(snap);
        self.store = Some(store);
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        self.stats.load_ms = ms(started.elapsed());
        self.stats.list_ms = ms(listed - started);
        self.stats.index_ms = ms(indexed - listed);
        self.stats.map_ms = ms(mapped - indexed);
        Ok(())
    }

    /// Fills `out` with the bytes at `offset` of the database. `Ok(false)`: a short read
    /// (past the end, the rest zero-filled).
    pub fn read(&mut self, out: &mut [u8], offset: u64) -> Result<bool, VfsError> {
        if self.snap.is_none() {
            self.load(self.target)?;
        }
        let (page_bytes, size) = {
            let s = self.snap.as_ref().expect("loaded");
            (s.page_size.bytes() as u64, s.size_bytes())
        };
        let mut done = 0usize;
        while done < out.len() {
            let at = offset + done as u64;
            if at >= size {
                out[done..].fill(0);
                return Ok(false);
            }
            let pgno = (at / page_bytes + 1) as u32;
            let in_page = (at % page_bytes) as usize;
            let n = (out.len() - done).min(page_bytes as usize - in_page);
            let page = self.page(pgno)?;
            out[done..done + n].copy_from_slice(&page[in_page..in_page + n]);
            if pgno == 1 && in_page < 100 {
                let s = self.snap.as_ref().expect("loaded");
                patch_header(&mut out[done..done + n], in_page, s.txid, s.commit);
            }
            done += n;
        }
        Ok(true)
    }

    /// One page of the current state, from the cache or the replica. A file gone from
    /// the replica (compacted away) makes the same TXID be planned again, once.
    fn page(&mut self, pgno: u32) -> Result<Arc<[u8]>, VfsError> {
        match self.page_once(pgno) {
            Err(e) if e.is_not_found() => {
                let txid = self.snap.as_ref().expect("loaded").txid;
                self.load(Target::TxId(txid))?;
                self.page_once(pgno)
            }
            r => r,
        }
    }

    fn page_once(&mut self, pgno: u32) -> Result<Arc<[u8]>, VfsError> {
        let s = self.snap.as_ref().expect("loaded");
        let store = self.store.clone().expect("loaded");
        let loc = s.map[(pgno - 1) as usize];
        if loc.file == u32::MAX {
            if pgno == s.page_size.lock_page().get() {
                return Ok(Arc::from(vec![0u8; s.page_size.bytes()]));
            }
            return Err(VfsError::MissingPage {
                location: store.location().to_string(),
                pgno,
                txid: s.txid.to_string(),
            });
        }
        let file = s.files[loc.file as usize].clone();
        if let Some(p) = self.cache.get(&(file.key, pgno)) {
            if self.in_stream(pgno) {
                self.last_pgno = pgno;
            }
            return Ok(p);
        }
        // The hydrated copy holds this version when no file after it changed the page.
        if let Some(h) = &self.hydration {
            if s.txid >= h.txid
                && file.key.max <= h.txid
                && h.page_bytes == s.page_size.bytes() as u64
            {
                if let Some(page) = h.page(pgno) {
                    self.stats.hydrated_reads += 1;
                    return page;
                }
            }
        }
        // A scan reads leaves in order, with a B-tree's interior page (allocated later,
        // further on) now and then: such a read is fetched alone and leaves the stream's
        // readahead and prefetch as they are; a few in a row end the stream.
        let sequential = self.in_stream(pgno);
        if sequential {
            self.readahead_bytes = (self.readahead_bytes * 2).min(self.readahead_max);
            self.last_pgno = pgno;
            self.off_stream = 0;
        } else {
            self.off_stream += 1;
            if self.off_stream >= OFF_STREAM_READS {
                self.readahead_bytes = READAHEAD_MIN_BYTES;
                self.last_pgno = pgno;
                self.cancel_prefetch();
            }
        }
        let readahead = if sequential {
            self.readahead_bytes
        } else {
            READAHEAD_MIN_BYTES
        };
        let first = loc.entry as usize;
        let source = self.source(&store);
        let waited = Instant::now();
        // A run already on its way (sequential prefetch), else one GET of the run.
        // Its bytes are reserved in the cache (already, for a prefetched run) until its
        // pages are in.
        let (run, reserved, fetched) = match self.take_prefetch(&file.key, first) {
            Some(p) => {
                let fetched = block_on(p.task);
                (p.first..=p.last, p.bytes, fetched)
            }
            None => {
                let s = self.snap.as_ref().expect("loaded");
                let last = run_end(s, &file, loc.file, first, readahead, Some(&self.cache));
                let range = frames(&file, first, last);
                let run_bytes = range.end - range.start;
                // A sequential stream's runs are large already (and the bytes past them
                // would be fetched twice).
                let min = if sequential { 0 } else { MIN_GET_BYTES };
                let end = (range.start + min).min(file.info.size_bytes);
                let asked = range.start..range.end.max(end);
                let bytes = asked.end - asked.start;
                self.cache.reserve_anyway(bytes);
                let fetched = block_on(source.read(&file.info, asked)).map(|mut f| {
                    f.bytes.truncate(run_bytes as usize);
                    f
                });
                (first..=last, bytes, Ok(fetched))
            }
        };
        let fetched = match fetched {
            Ok(Ok(f)) => f,
            Ok(Err(e)) => {
                self.cache.release(reserved);
                return Err(e);
            }
            Err(e) => {
                self.cache.release(reserved);
                return Err(VfsError::Panic(format!("a prefetch task failed: {e}")));
            }
        };
        self.stats.add_page_cost(fetched.cost);
        self.stats.page_wait_ms += waited.elapsed().as_secs_f64() * 1000.0;
        let wanted = self.decode_run(&file, run.clone(), &fetched.bytes, pgno);
        drop(fetched);
        self.cache.release(reserved);
        let wanted = wanted?;
        if sequential && self.readahead_bytes == self.readahead_max {
            self.top_up_prefetch(&source, &file, loc.file, *run.end());
        }
        Ok(wanted.expect("the run holds the page asked for"))
    }

    /// Whether `pgno` continues the sequential stream: a little way past its last page.
    fn in_stream(&self, pgno: u32) -> bool {
        pgno > self.last_pgno && pgno - self.last_pgno <= STREAM_GAP_PAGES
    }

    /// Decodes entries `run` of `file` (their frames are `bytes`) into the cache; returns
    /// page `pgno` if among them.
    fn decode_run(
        &mut self,
        file: &FileIndex,
        run: std::ops::RangeInclusive<usize>,
        bytes: &[u8],
        pgno: u32,
    ) -> Result<Option<Arc<[u8]>>, VfsError> {
        let store = self.store.clone().expect("loaded");
        let entries = &file.entries[run];
        let base = entries[0].offset;
        let mut wanted = None;
        for e in entries {
            let at = (e.offset - base) as usize;
            let mut page = vec![0u8; file.header.page_size.bytes()];
            ltx::decode_page_frame(e, &bytes[at..at + e.size as usize], &mut page)
                .map_err(|err| VfsError::decode(store.as_ref(), &file.key, err))?;
            let page: Arc<[u8]> = Arc::from(page);
            if e.pgno.get() == pgno {
                wanted = Some(page.clone());
            }
            self.cache.insert((file.key, e.pgno.get()), page);
        }
        Ok(wanted)
    }

    /// The prefetched run of `key` holding entry `entry`, if any (runs before it in the
    /// queue are dropped: the reader has passed them).
    fn take_prefetch(&mut self, key: &LtxKey, entry: usize) -> Option<Prefetch> {
        let at = self
            .prefetch
            .iter()
            .position(|p| p.file == *key && (p.first..=p.last).contains(&entry))?;
        for p in self.prefetch.drain(..at) {
            p.task.abort();
            self.cache.release(p.bytes);
        }
        self.prefetch.pop_front()
    }

    fn cancel_prefetch(&mut self) {
        for p in self.prefetch.drain(..) {
            p.task.abort();
            self.cache.release(p.bytes);
        }
    }

    /// Keeps [`PREFETCH_RUNS`] runs of `file` in flight after entry `after`, while the
    /// frames that follow are their pages' newest versions.
    fn top_up_prefetch(&mut self, source: &Source, file: &Arc<FileIndex>, fi: u32, after: usize) {
        let mut next = self.prefetch.back().map_or(after, |p| p.last) + 1;
        while self.prefetch.len() < PREFETCH_RUNS && next < file.entries.len() {
            let s = self.snap.as_ref().expect("loaded");
            let pg = file.entries[next].pgno.get();
            let l = s.map.get((pg - 1) as usize);
            if !l.is_some_and(|l| l.file == fi && l.entry as usize == next) {
                break;
            }
            let last = run_end(s, file, fi, next, self.readahead_max, None);
            let (src, info, range) = (source.clone(), file.info.clone(), frames(file, next, last));
            let bytes = range.end - range.start;
            if !self.cache.reserve(bytes) {
                break;
            }
            let task = crate::fetch::spawn_task(async move { src.read(&info, range).await });
            self.prefetch.push_back(Prefetch {
                file: file.key,
                first: next,
                last,
                bytes,
                task,
            });
            next = last + 1;
        }
    }
}

/// The index of the snapshot (level 9) a plan for `target` starts from, the newest at or
/// below it, fetched while `run::pick` lists the replica (issue 22: a large snapshot's
/// index is most of the time to a first query, and needs only level 9's listing), unless
/// `known`. `None` when level 9 cannot be listed (the listing proper reports it) or holds
/// no such file; the plan decides whether the index is used.
async fn early_snapshot(
    source: &Source,
    target: Target,
    known: &[LtxKey],
) -> Option<(LtxKey, Result<FileIndex, VfsError>)> {
    let files = source.store.list(Level::SNAPSHOT).await.ok()?;
    let newest = files
        .iter()
        .filter(|f| match target {
            Target::TxId(t) => f.key.max <= t,
            _ => true,
        })
        .max_by_key(|f| f.key.max)?;
    if known.contains(&newest.key) {
        return None;
    }
    Some((newest.key, index::load(source, newest).await))
}

/// The byte range of entries `first..=last` of `file` (contiguous frames).
fn frames(file: &FileIndex, first: usize, last: usize) -> std::ops::Range<u64> {
    file.entries[first].offset..file.entries[last].offset + file.entries[last].size
}

/// The last entry of the run starting at entry `first` of `file` (the snapshot's file
/// `fi`): the frames right after it that are contiguous, still their page's newest
/// version and (with `cache`) not cached, up to `max_bytes`.
fn run_end(
    s: &Snapshot,
    file: &FileIndex,
    fi: u32,
    first: usize,
    max_bytes: u64,
    cache: Option<&PageCache>,
) -> usize {
    let entries = &file.entries;
    let mut last = first;
    while last + 1 < entries.len() {
        let (cur, next) = (&entries[last], &entries[last + 1]);
        let l = s.map.get((next.pgno.get() - 1) as usize);
        let same = l.is_some_and(|l| l.file == fi && l.entry as usize == last + 1);
        if !same
            || next.offset != cur.offset + cur.size
            || next.offset + next.size - entries[first].offset > max_bytes
            || cache.is_some_and(|c| c.contains(&(file.key, next.pgno.get())))
        {
            break;
        }
        last += 1;
    }
    last
}

/// The page map of `files` (oldest first): each page's newest version, up to the newest
/// file's commit. Every file must have the first file's page size.
fn build(
    store: &Arc<dyn ReplicaStore>,
    files: Vec<Arc<FileIndex>>,
    txid: TxId,
) -> Result<Snapshot, VfsError> {
    let last = files
        .last()
        .ok_or_else(|| VfsError::Setup("empty plan".into()))?;
    let (page_size, commit) = (last.header.page_size, last.header.commit);
    let timestamp = (last.header.timestamp_ms > 0)
        .then(|| jiff::Timestamp::from_millisecond(last.header.timestamp_ms).ok())
        .flatten();
    let mut map = vec![NOWHERE; commit as usize];
    for (fi, f) in files.iter().enumerate() {
        if f.header.page_size != page_size {
            return Err(VfsError::bad_file(
                store.as_ref(),
                &f.key,
                format!(
                    "page size {} differs from the newest file's {}",
                    f.header.page_size, page_size
                ),
            ));
        }
        for (ei, e) in f.entries.iter().enumerate() {
            if let Some(slot) = map.get_mut((e.pgno.get() - 1) as usize) {
                *slot = Loc {
                    file: fi as u32,
                    entry: ei as u32,
                };
            }
        }
    }
    Ok(Snapshot {
        txid,
        page_size,
        commit,
        timestamp,
        files,
        map,
    })
}

/// Rewrites the database header bytes of page 1 that fall in `buf` (which starts at byte
/// `at` of the page) so SQLite reads the replica as what it is to this VFS: a read-only
/// file in rollback-journal mode (bytes 18 and 19 = 1: no WAL, no -shm), whose change
/// counter (24..28) and version-valid-for (92..96) change with the TXID served, so
/// SQLite drops its page cache exactly when a new transaction sees a new TXID (a WAL
/// database does not bump the counter itself), and whose size in pages (28..32) is the
/// commit of that TXID.
fn patch_header(buf: &mut [u8], at: usize, txid: TxId, commit: u32) {
    let counter = (txid.get() as u32).to_be_bytes();
    let mut set = |off: usize, v: &[u8]| {
        for (i, b) in v.iter().enumerate() {
            if let Some(p) = (off + i).checked_sub(at) {
                if let Some(slot) = buf.get_mut(p) {
                    *slot = *b;
                }
            }
        }
    };
    set(18, &[1, 1]);
    set(24, &counter);
    set(28, &commit.to_be_bytes());
    set(92, &counter);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_patch_applies_to_any_slice_of_page_one() {
        let txid = TxId::new(0x1_0000_0005).unwrap();
        let mut whole = vec![0u8; 100];
        patch_header(&mut whole, 0, txid, 7);
        assert_eq!(&whole[18..20], &[1, 1]);
        assert_eq!(&whole[24..32], &[0, 0, 0, 5, 0, 0, 0, 7]);
        assert_eq!(&whole[92..96], &[0, 0, 0, 5]);
        // SQLite reads 16 bytes at 24 to see whether the database changed.
        let mut part = vec![0u8; 16];
        patch_header(&mut part, 24, txid, 7);
        assert_eq!(&part[..8], &whole[24..32]);
    }
}
