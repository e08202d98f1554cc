//! The restore drill: prove a replica can be restored, and measure what it costs.
//!
//! Owns: one drill ([`drill`]): list the replica, plan (the latest TXID, or a random
//! restorable TXID), restore through `apply` into a scratch directory with SQLite's full
//! `integrity_check`, time it (the RTO), note the replica's RPO (now minus the header
//! timestamp of the newest file), optionally compare the result page for page with the
//! live source, and remove the scratch directory (made `0700`, the copy in it `0600`); the
//! [`DrillReport`]; and [`drill_loop`],
//! which repeats drills on an interval for a long-running process.
//!
//! Comparing with the source is only meaningful at the same TXID. The replicator's local
//! state (`replicate::local`: the newest L0 file's header) says which TXID was captured last
//! and where in the WAL it ended; a read transaction on the source whose view ends at
//! exactly that WAL position ([`SourceSnapshot`]) *is* that TXID. So: when the restored
//! TXID is the captured TXID and the source's view ends where the capture did, any
//! differing page is a failure naming the page. Otherwise (the source moved on, the
//! replica is behind, no local state here) the pages are still compared, and equal pages
//! are reported as a match; differing pages are reported as "skipped" with the reason,
//! never as a failure, because nothing proves they should be equal.
//!
//! Does not: list, plan or fetch itself: it runs the steps every restore runs
//! (`restore::run`: pick, plan, apply), with its own choice of a random TXID; nor restore
//! Litestream 0.3 generations (the drill needs TXIDs).

use crate::platform::FileExt;
use std::fmt::Write as _;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ltx::TxId;
use rand::seq::SliceRandom;
use tokio::sync::watch;

use super::output::{ApplyError, ApplyOptions, IntegrityCheck};
use super::run::{self, Found, Planned, RestoreError, RestoreOptions};
use crate::history::plan::{self, Listing, PlanError, Target};
use crate::history::Times;
use crate::replicate::local;
use crate::sqlite::inspect::SourceSnapshot;
use crate::storage::{ReplicaStore, StorageError};

/// Which state a drill restores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DrillTarget {
    /// The newest TXID the replica holds.
    Latest,
    /// A TXID drawn at random among those the replica can restore, other than the newest
    /// (the newest when there is no other).
    RandomPoint,
}

impl DrillTarget {
    pub fn name(self) -> &'static str {
        match self {
            DrillTarget::Latest => "latest",
            DrillTarget::RandomPoint => "random-point",
        }
    }
}

/// The live database a drill compares its result with.
#[derive(Clone, Debug)]
pub struct DrillSource {
    pub db: PathBuf,
    /// The replicator's local state directory for `db` (its captured position).
    pub meta_dir: PathBuf,
}

#[derive(Clone, Debug)]
pub struct DrillOptions {
    /// The scratch directory is created inside this one and removed afterwards.
    pub scratch_parent: PathBuf,
    /// Ranged reads in flight.
    pub parallelism: usize,
    /// Compare pages with this source (only meaningful for [`DrillTarget::Latest`]).
    pub source: Option<DrillSource>,
    /// Told of each phase: listing, fetch and apply, verify, install.
    pub progress: crate::progress::Progress,
}

/// The outcome of comparing the restored pages with the source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PageCompare {
    /// No source given, or the drill failed before it.
    NotRun,
    /// Every page equal. `proven`: the source was exactly at the restored TXID.
    Matched { pages: u32, proven: bool },
    /// Pages differ but nothing says they should be equal: why.
    Skipped { reason: String },
    /// The source was exactly at the restored TXID and page `pgno` differs: a failure.
    Mismatch { pgno: u32, detail: String },
}

/// What one drill found. `ok` is false exactly when `error` is set.
#[derive(Clone, Debug)]
pub struct DrillReport {
    pub ok: bool,
    pub target: DrillTarget,
    /// The TXID restored (or attempted), when planning got that far.
    pub txid: Option<TxId>,
    /// The newest TXID the replica holds.
    pub newest_txid: Option<TxId>,
    /// Listing, planning, fetching, applying and the integrity check: the RTO measured.
    pub restore_duration: Duration,
    pub files: usize,
    pub bytes: u64,
    pub pages: u32,
    /// Age of the newest replicated transaction when the drill ran: now minus the header
    /// timestamp of the replica's newest file (the replicator's clock at capture). An idle
    /// database's RPO grows although nothing is lost: compare with `caught_up`.
    pub rpo: Option<Duration>,
    /// Whether the replica's newest TXID is the last one the replicator captured from the
    /// source here (`None`: no source). Commits not yet captured are not counted.
    pub caught_up: Option<bool>,
    pub compare: PageCompare,
    pub error: Option<String>,
    /// What to do about `error`, when there is something to say.
    pub hint: Option<String>,
}

impl DrillReport {
    fn new(target: DrillTarget) -> DrillReport {
        DrillReport {
            ok: false,
            target,
            txid: None,
            newest_txid: None,
            restore_duration: Duration::ZERO,
            files: 0,
            bytes: 0,
            pages: 0,
            rpo: None,
            caught_up: None,
            compare: PageCompare::NotRun,
            error: None,
            hint: None,
        }
    }

    pub fn restore_ms(&self) -> u64 {
        self.restore_duration.as_millis() as u64
    }

    pub fn rpo_ms(&self) -> Option<u64> {
        self.rpo.map(|d| d.as_millis() as u64)
    }

    /// The report as JSON, for `verify -json` (TXIDs as 16 hex digits).
    pub fn to_json(&self) -> serde_json::Value {
        let compare = match &self.compare {
            PageCompare::NotRun => serde_json::json!({"result": "not-run"}),
            PageCompare::Matched { pages, proven } => {
                serde_json::json!({"result": "matched", "pages": pages, "same_txid_proven": proven})
            }
            PageCompare::Skipped { reason } => {
                serde_json::json!({"result": "skipped", "reason": reason})
            }
            PageCompare::Mismatch { pgno, detail } => {
                serde_json::json!({"result": "mismatch", "page": pgno, "detail": detail})
            }
        };
        serde_json::json!({
            "ok": self.ok,
            "target": self.target.name(),
            "txid": self.txid.map(|t| t.to_string()),
            "newest_txid": self.newest_txid.map(|t| t.to_string()),
            "restore_ms": self.restore_ms(),
            "files": self.files,
            "bytes": self.bytes,
            "pages": self.pages,
            "rpo_ms": self.rpo_ms(),
            "caught_up": self.caught_up,
            "page_compare": compare,
            "error": self.error,
            "hint": self.hint,
        })
    }

    /// One line for people.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let txid = self
            .txid
            .map(|t| t.to_string())
            .unwrap_or_else(|| "-".into());
        let _ = write!(
            s,
            "{}: {} TXID {txid}",
            self.target.name(),
            if self.ok { "ok" } else { "FAILED" }
        );
        if self.ok {
            let _ = write!(
                s,
                ", restored and integrity-checked in {} ms from {} file(s), {} bytes, {} pages",
                self.restore_ms(),
                self.files,
                self.bytes,
                self.pages
            );
        }
        if let Some(rpo) = self.rpo_ms() {
            let _ = write!(s, "; RPO {rpo} ms (newest TXID ");
            let _ = write!(
                s,
                "{}",
                self.newest_txid
                    .map(|t| t.to_string())
                    .unwrap_or_else(|| "-".into())
            );
            match self.caught_up {
                Some(true) => s.push_str(", the last TXID captured here)"),
                Some(false) => s.push_str(", not the last TXID captured here)"),
                None => s.push(')'),
            }
        }
        match &self.compare {
            PageCompare::NotRun => {}
            PageCompare::Matched { pages, proven } => {
                let _ = write!(
                    s,
                    "; {pages} pages equal to the source{}",
                    if *proven { " at the same TXID" } else { "" }
                );
            }
            PageCompare::Skipped { reason } => {
                let _ = write!(s, "; page compare skipped: {reason}");
            }
            PageCompare::Mismatch { detail, .. } => {
                let _ = write!(s, "; {detail}");
            }
        }
        if let Some(e) = &self.error {
            let _ = write!(s, ": {e}");
        }
        s
    }
}

/// Why a drill failed.
#[derive(Debug, thiserror::Error)]
pub enum DrillError {
    #[error("listing the replica: {0}")]
    List(#[source] StorageError),
    #[error("the replica holds no LTX files: nothing to restore")]
    Empty,
    #[error("planning the restore: {0}")]
    Plan(#[from] PlanError),
    #[error("reading the header of {file}: {detail}")]
    NewestHeader { file: String, detail: String },
    #[error("restoring: {0}")]
    Apply(#[from] ApplyError),
    /// A restore step failed in a way a drill does not expect (a 0.3 replica).
    #[error(transparent)]
    Restore(Box<RestoreError>),
    #[error("scratch directory {path}: {source}")]
    Scratch {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the restored database differs from the source at TXID {txid}: {detail}")]
    Mismatch { txid: TxId, detail: String },
}

impl From<RestoreError> for DrillError {
    /// The drill's own wording for the steps it shares with every restore.
    fn from(e: RestoreError) -> DrillError {
        match e {
            RestoreError::List { source, .. } => DrillError::List(source),
            RestoreError::NoReplica | RestoreError::NoBackup { .. } => DrillError::Empty,
            RestoreError::Plan { source, .. } => DrillError::Plan(source),
            RestoreError::Apply { source, .. } => DrillError::Apply(*source),
            other => DrillError::Restore(Box::new(other)),
        }
    }
}

impl DrillError {
    pub fn hint(&self) -> Option<String> {
        match self {
            DrillError::List(e) => e.hint().map(str::to_string),
            DrillError::Empty => Some(
                "start `sqlite-replicate replicate` for this database, or check the replica's path or prefix"
                    .into(),
            ),
            DrillError::Plan(PlanError::Gap { .. }) => Some(
                "a file the history needs is missing from the replica: restart replication with \
                 `replicate -force-snapshot` so the replica gets a complete image again"
                    .into(),
            ),
            DrillError::Apply(ApplyError::Decode { .. }) => Some(
                "a file on the replica is damaged: restart replication with `replicate -force-snapshot` \
                 so newer restores do not need it, and check the storage"
                    .into(),
            ),
            DrillError::Apply(ApplyError::Fetch { source, .. }) => source.hint().map(str::to_string),
            DrillError::Scratch { .. } => Some("pass -scratch DIR on a file system with room".into()),
            _ => None,
        }
    }
}

/// Runs one drill against `store`. Never panics on a bad replica: every failure ends up in
/// the report's `error`.
pub async fn drill(
    store: Arc<dyn ReplicaStore>,
    target: DrillTarget,
    opts: &DrillOptions,
) -> DrillReport {
    let mut report = DrillReport::new(target);
    let started = Instant::now();
    let scratch = scratch_dir(&opts.scratch_parent);
    let result = run(store, target, opts, &scratch, &mut report, started).await;
    let _ = std::fs::remove_dir_all(&scratch);
    if let Err(e) = result {
        report.hint = e.hint();
        report.error = Some(e.to_string());
        report.ok = false;
    } else {
        report.ok = true;
    }
    report
}

fn scratch_dir(parent: &Path) -> PathBuf {
    parent.join(format!(
        ".sqlite-replicate-drill-{}-{:016x}",
        std::process::id(),
        rand::random::<u64>()
    ))
}

/// Creates the scratch directory `0700` (its parents as usual): the drill restores a full
/// copy of the database into it, which no other local user may read (security issue 17;
/// the restored file itself is `0600`, see `apply::output_mode`). The name is random, so
/// anything already there is someone else's: an error, not a directory to reuse.
fn create_scratch(scratch: &Path) -> std::io::Result<()> {
    if let Some(parent) = scratch.parent() {
        std::fs::create_dir_all(parent)?;
    }
    crate::fsutil::create_dir(scratch, crate::fsutil::FileMode::PRIVATE)
}

async fn run(
    store: Arc<dyn ReplicaStore>,
    target: DrillTarget,
    opts: &DrillOptions,
    scratch: &Path,
    report: &mut DrillReport,
    started: Instant,
) -> Result<(), DrillError> {
    let candidates = [(store.location().to_string(), store.clone())];
    opts.progress.start(crate::progress::Phase::Listing, None);
    let picked = run::pick(&candidates, Times::Listed, false).await?;
    opts.progress.finish(crate::progress::Phase::Listing);
    let Found::Ltx { listing, newest } = &picked.found else {
        return Err(DrillError::Empty);
    };
    let newest = *newest;
    report.newest_txid = Some(newest);
    report.rpo = Some(rpo(store.as_ref(), listing, newest).await?);
    let position = opts
        .source
        .as_ref()
        .and_then(|s| local::read_position(&s.meta_dir).ok().flatten());
    if opts.source.is_some() {
        report.caught_up = Some(position.as_ref().is_some_and(|p| p.txid == newest));
    }
    let apply_opts = ApplyOptions {
        parallelism: opts.parallelism.max(1),
        integrity: IntegrityCheck::Full,
        force: false,
        progress: opts.progress.clone(),
    };
    let plan = match target {
        DrillTarget::Latest => {
            report.txid = Some(newest);
            match run::plan(&picked, &RestoreOptions::latest(IntegrityCheck::Full))? {
                Planned::Ltx(p) => p,
                Planned::V3(_) => return Err(DrillError::Empty),
            }
        }
        DrillTarget::RandomPoint => random_point(listing, newest)?,
    };
    report.txid = Some(plan.target_txid);
    create_scratch(scratch).map_err(|source| DrillError::Scratch {
        path: scratch.to_path_buf(),
        source,
    })?;
    let out = scratch.join("restored.db");
    let txid = plan.target_txid;
    let restored = run::apply(&picked, &Planned::Ltx(plan), &out, &apply_opts).await?;
    let applied = restored.report;
    report.restore_duration = started.elapsed();
    report.files = applied.files;
    report.bytes = applied.bytes_fetched;
    report.pages = applied.pages;
    if let (Some(source), DrillTarget::Latest) = (opts.source.clone(), target) {
        let cmp = tokio::task::spawn_blocking(move || compare(&source, &out, txid))
            .await
            .unwrap_or_else(|e| PageCompare::Skipped {
                reason: format!("compare task failed: {e}"),
            });
        if let PageCompare::Mismatch { detail, .. } = &cmp {
            let detail = detail.clone();
            report.compare = cmp;
            return Err(DrillError::Mismatch { txid, detail });
        }
        report.compare = cmp;
    }
    Ok(())
}

/// Now minus the header timestamp of the file reaching `newest` (one ranged read).
async fn rpo(
    store: &dyn ReplicaStore,
    listing: &Listing,
    newest: TxId,
) -> Result<Duration, DrillError> {
    let file = listing
        .files()
        .filter(|f| f.key.max == newest)
        // The smallest file reaching the newest TXID: an L0 rather than a snapshot.
        .min_by_key(|f| f.size_bytes)
        .expect("newest comes from the listing");
    let head = store
        .get(&file.key, Some(0..ltx::HEADER_SIZE as u64))
        .await
        .map_err(|e| DrillError::NewestHeader {
            file: file.key.to_string(),
            detail: e.to_string(),
        })?;
    let header = ltx::Header::from_bytes(&head).map_err(|e| DrillError::NewestHeader {
        file: file.key.to_string(),
        detail: e.to_string(),
    })?;
    let at = crate::clock::ms_to_time(header.timestamp_ms);
    Ok(SystemTime::now()
        .duration_since(at)
        .unwrap_or(Duration::ZERO))
}

/// A plan for a random restorable TXID other than `newest`: candidates are the TXIDs at
/// which some file ends (a restore can only stop where a file ends), tried in random order
/// until the planner accepts one. With no other restorable TXID, the newest.
fn random_point(listing: &Listing, newest: TxId) -> Result<plan::Plan, DrillError> {
    let mut candidates: Vec<TxId> = listing
        .files()
        .map(|f| f.key.max)
        .filter(|&t| t < newest)
        .collect();
    candidates.sort();
    candidates.dedup();
    candidates.shuffle(&mut rand::rng());
    candidates
        .into_iter()
        .take(256)
        .find_map(|t| plan::plan(listing, Target::TxId(t)).ok())
        .map_or_else(|| Ok(plan::plan(listing, Target::TxId(newest))?), Ok)
}

/// Compares the restored file with the source's pages (see the module docs for when a
/// difference is a failure).
fn compare(source: &DrillSource, restored: &Path, txid: TxId) -> PageCompare {
    let position = match local::read_position(&source.meta_dir) {
        Ok(p) => p,
        Err(e) => {
            return PageCompare::Skipped {
                reason: format!(
                    "cannot read the local state {}: {e}",
                    source.meta_dir.display()
                ),
            }
        }
    };
    let snap = match SourceSnapshot::open(&source.db, Duration::from_secs(5)) {
        Ok(s) => s,
        Err(e) => {
            return PageCompare::Skipped {
                reason: format!("cannot read the source: {e}"),
            }
        }
    };
    let unproven = match (&position, snap.wal_end) {
        (None, _) => Some(format!(
            "no local replication state in {} to tell the source's TXID",
            source.meta_dir.display()
        )),
        (Some(p), _) if p.txid != txid => Some(format!(
            "the source's last captured TXID is {}, the replica's newest is {txid}",
            p.txid
        )),
        (Some(p), Some(end))
            if p.wal.is_some_and(|w| {
                (w.salt1, w.salt2, w.offset) == (end.salt1, end.salt2, end.offset)
            }) =>
        {
            None
        }
        (Some(p), _) => Some(format!(
            "the source has moved on since TXID {} was captured (commits not yet captured, or a WAL restart)",
            p.txid
        )),
    };
    let diff = match first_difference(&snap, restored) {
        Ok(d) => d,
        Err(e) => {
            return PageCompare::Skipped {
                reason: format!("cannot compare: {e}"),
            }
        }
    };
    match (diff, unproven) {
        (Ok(pages), unproven) => PageCompare::Matched {
            pages,
            proven: unproven.is_none(),
        },
        (Err((pgno, detail)), None) => PageCompare::Mismatch { pgno, detail },
        (Err(_), Some(reason)) => PageCompare::Skipped { reason },
    }
}

/// `Ok(Ok(pages))` when every page is equal, `Ok(Err((page, detail)))` at the first
/// difference; `Err` when either side cannot be read.
#[allow(clippy::type_complexity)]
fn first_difference(
    snap: &SourceSnapshot,
    restored: &Path,
) -> Result<Result<u32, (u32, String)>, String> {
    let file = File::open(restored).map_err(|e| format!("{}: {e}", restored.display()))?;
    let len = file
        .metadata()
        .map_err(|e| format!("{}: {e}", restored.display()))?
        .len();
    let page_size = snap.page_size();
    let restored_pages = (len / page_size.get() as u64) as u32;
    let mut buf = vec![0u8; page_size.bytes()];
    let mut first: Option<(u32, String)> = None;
    let count = snap
        .for_each_page(|pgno, data| {
            if first.is_some() {
                return Ok(());
            }
            if pgno.get() > restored_pages {
                return Ok(());
            }
            if data.len() != buf.len() {
                first = Some((pgno.get(), "page sizes differ".into()));
                return Ok(());
            }
            file.read_exact_at(&mut buf, page_size.offset_of(pgno))
                .map_err(|source| crate::sqlite::db::DbError::Io {
                    path: restored.to_path_buf(),
                    op: "read restored page",
                    source,
                })?;
            if buf != data {
                first = Some((pgno.get(), format!("page {pgno} differs from the source")));
            }
            Ok(())
        })
        .map_err(|e| e.to_string())?;
    if let Some(d) = first {
        return Ok(Err(d));
    }
    if count != restored_pages {
        let pgno = count.min(restored_pages) + 1;
        return Ok(Err((
            pgno,
            format!("the source has {count} pages, the restored database {restored_pages}"),
        )));
    }
    Ok(Ok(count))
}

/// Runs a drill of `target` every `interval` (the first one after a full interval) until
/// `shutdown` turns true, handing each report to `on_report` (metrics, logs). For a
/// long-running process; `replicate` spawns one per replica when `drill-interval` is set.
pub async fn drill_loop(
    store: Arc<dyn ReplicaStore>,
    target: DrillTarget,
    opts: DrillOptions,
    interval: Duration,
    shutdown: watch::Receiver<bool>,
    on_report: impl FnMut(DrillReport) + Send,
) {
    let job = || drill(store.clone(), target, &opts);
    crate::runtime::every(interval, shutdown, job, on_report).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::layout::{LtxInfo, LtxKey};
    use ltx::Level;
    use std::time::UNIX_EPOCH;

    fn info(level: u8, min: u64, max: u64) -> LtxInfo {
        LtxInfo {
            key: LtxKey::new(
                Level::new(level).unwrap(),
                TxId::new(min).unwrap(),
                TxId::new(max).unwrap(),
            ),
            size_bytes: 100,
            created: UNIX_EPOCH,
        }
    }

    #[test]
    fn random_points_are_restorable_and_not_the_newest() {
        let t = |v| TxId::new(v).unwrap();
        // A snapshot at 4 and L0 files 5..=8; L0 1..=3 gone to retention.
        let listing = Listing::new(vec![
            info(9, 1, 4),
            info(0, 5, 5),
            info(0, 6, 6),
            info(0, 7, 7),
            info(0, 8, 8),
        ]);
        for _ in 0..50 {
            let p = random_point(&listing, t(8)).unwrap();
            assert!((4..8).contains(&p.target_txid.get()), "{p:?}");
        }
        let only = Listing::new(vec![info(0, 1, 1)]);
        assert_eq!(random_point(&only, t(1)).unwrap().target_txid, t(1));
    }
}

/// Security issue 17: the drill's full copy of the database is for our eyes only.
// Unix mode bits; on Windows the scratch copy inherits its directory's ACL.
#[cfg(all(test, unix))]
mod scratch_mode_tests {
    use super::*;
    use crate::replicate::status::{DbStatus, ReplicaStatus};
    use crate::replicate::{run_database, DbOptions, ReplicaOptions, ReplicaSpec, RunMode};
    use crate::storage::file::FileStore;
    use crate::storage::layout::{LtxInfo, LtxKey};
    use async_trait::async_trait;
    use bytes::Bytes;
    use ltx::Level;
    use std::ops::Range;
    use std::sync::Mutex;

    /// A file replica that, at every read, notes the mode of everything under the drill's
    /// scratch parent: what another local user could have read while the drill ran.
    struct Watching {
        inner: FileStore,
        scratch_parent: PathBuf,
        seen: Mutex<Vec<(PathBuf, bool, u32)>>,
    }

    impl Watching {
        fn look(&self) {
            fn walk(dir: &Path, out: &mut Vec<(PathBuf, bool, u32)>) {
                for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                    let Ok(m) = e.path().symlink_metadata() else {
                        continue;
                    };
                    out.push((e.path(), m.is_dir(), crate::platform::mode_of(&m) & 0o7777));
                    if m.is_dir() {
                        walk(&e.path(), out);
                    }
                }
            }
            walk(&self.scratch_parent, &mut self.seen.lock().unwrap());
        }
    }

    #[async_trait]
    impl ReplicaStore for Watching {
        fn location(&self) -> &str {
            self.inner.location()
        }
        async fn list(&self, level: Level) -> Result<Vec<LtxInfo>, StorageError> {
            self.inner.list(level).await
        }
        async fn get(
            &self,
            key: &LtxKey,
            range: Option<Range<u64>>,
        ) -> Result<Bytes, StorageError> {
            self.look();
            self.inner.get(key, range).await
        }
        async fn put(
            &self,
            key: &LtxKey,
            data: Bytes,
            created: SystemTime,
        ) -> Result<(), StorageError> {
            self.inner.put(key, data, created).await
        }
        async fn delete(&self, keys: &[LtxKey]) -> Result<(), StorageError> {
            self.inner.delete(keys).await
        }
    }

    #[tokio::test]
    async fn drill_scratch_is_private_while_the_drill_runs() {
        // 022 is the usual default, set so the test does not depend on the environment's.
        crate::platform::set_umask(0o022);
        let d = tempfile::tempdir().unwrap();
        let db = d.path().join("app.db");
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute_batch(
            "PRAGMA journal_mode=WAL; CREATE TABLE t(v BLOB);
             WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 400)
             INSERT INTO t SELECT randomblob(3000) FROM n;",
        )
        .unwrap();
        let replica = d.path().join("replica");
        let (_tx, rx) = watch::channel(false);
        run_database(
            DbOptions::with_defaults(db.clone()),
            vec![ReplicaSpec {
                opts: ReplicaOptions::with_defaults("file"),
                store: Arc::new(FileStore::new(&replica)),
                status: Arc::new(ReplicaStatus::default()),
            }],
            Arc::new(crate::replicate::handle::DbHandle::new(
                db.display().to_string(),
                Arc::new(DbStatus::default()),
            )),
            Arc::new(crate::replicate::detect::Changes::new()),
            rx,
            RunMode {
                once: true,
                force_full_image: false,
            },
        )
        .await
        .unwrap();
        let scratch_parent = d.path().join("scratch");
        std::fs::create_dir(&scratch_parent).unwrap();
        crate::platform::set_mode(&scratch_parent, 0o755).unwrap();
        let store = Arc::new(Watching {
            inner: FileStore::new(&replica),
            scratch_parent: scratch_parent.clone(),
            seen: Mutex::default(),
        });
        let opts = DrillOptions {
            scratch_parent: scratch_parent.clone(),
            parallelism: 1,
            source: None,
            progress: Default::default(),
        };
        let report = drill(store.clone(), DrillTarget::Latest, &opts).await;
        assert!(report.ok, "{:?}", report.error);
        let seen = store.seen.lock().unwrap().clone();
        assert!(
            seen.iter().any(|(_, dir, _)| *dir),
            "the scratch directory existed during a read: {seen:?}"
        );
        for (path, dir, mode) in &seen {
            let want = if *dir { 0o700 } else { 0o600 };
            assert_eq!(
                *mode,
                want,
                "{} is {mode:o} while the drill runs",
                path.display()
            );
        }
    }
}
