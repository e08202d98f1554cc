//! Validation of a replica's LTX history: the cheap, listing-only check that
//! `validation-interval` schedules (Litestream 0.5's periodic validation).
//!
//! Owns: one validation ([`validate`]): list level 0 and the compaction levels in use,
//! and within each level check that the files, in TXID order, follow one another with
//! neither a gap (a missing TXID range: the history cannot be restored across it) nor an
//! overlap; the [`ValidationReport`] naming every file pair at fault; and
//! [`validate_loop`], which repeats it on an interval for a long-running process.
//!
//! Cost: one listing per level checked (level 0 and levels 1..=n, the snapshot level is
//! not contiguous by design and is not checked), no download; the same requests as
//! Litestream's validation of the same levels, plus one re-listing of a level whose
//! first listing shows a fault (to rule out files deleted by retention mid-listing). Contents (checksums, pages) are what the
//! restore drill ([`super::drill`], `drill-interval`) proves, at the price of a restore.
//!
//! Does not: read file contents, nor decide what to do about a fault (the caller logs
//! and reports it).

use std::sync::Arc;
use std::time::{Duration, Instant};

use ltx::Level;
use tokio::sync::watch;

use crate::storage::layout::{LtxInfo, LtxKey};
use crate::storage::{ReplicaStore, StorageError};

/// What is wrong between two files of one level that follow each other in TXID order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// TXIDs between the two files are in no file of the level.
    Gap,
    /// The second file starts at or before the end of the first.
    Overlap,
}

/// One fault: `prev` and `next` are neighbours in TXID order within their level.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    pub kind: FaultKind,
    pub prev: LtxKey,
    pub next: LtxKey,
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let level = self.prev.level.get();
        let (a, b) = (self.prev.file_name(), self.next.file_name());
        match self.kind {
            FaultKind::Gap => write!(
                f,
                "level {level}: TXID gap between {a} and {b}: TXIDs {:016x}..={:016x} are missing",
                // A gap lies strictly between the two: neither end overflows.
                self.prev.max.get().saturating_add(1),
                self.next.min.get().saturating_sub(1),
            ),
            FaultKind::Overlap => write!(
                f,
                "level {level}: TXID overlap between {a} and {b}: {b} starts at {:016x}, not after {:016x}",
                self.next.min.get(),
                self.prev.max.get(),
            ),
        }
    }
}

/// The faults of one level's files (any order; a file listed twice is counted once).
pub fn check_level(files: &[LtxInfo]) -> Vec<Fault> {
    let mut keys: Vec<LtxKey> = files.iter().map(|f| f.key).collect();
    keys.sort_by_key(|k| (k.min, k.max));
    keys.dedup();
    keys.windows(2)
        .filter_map(|w| {
            let (prev, next) = (w[0], w[1]);
            // The TXID that continues `prev`; none after the last TXID there is.
            let kind = match prev.max.next().ok() {
                Some(expected) if next.min == expected => return None,
                Some(expected) if next.min > expected => FaultKind::Gap,
                _ => FaultKind::Overlap,
            };
            Some(Fault { kind, prev, next })
        })
        .collect()
}

/// What one validation found. `ok` is false when a fault was found or a listing failed.
#[derive(Clone, Debug)]
pub struct ValidationReport {
    pub ok: bool,
    /// Levels listed (each one listing request, more when the store pages).
    pub levels: usize,
    /// LTX files seen in those levels.
    pub files: usize,
    pub faults: Vec<Fault>,
    /// A listing that failed, with the level.
    pub error: Option<String>,
    pub duration: Duration,
}

impl ValidationReport {
    /// One line saying what is wrong (`None` when ok): the listing error, else the first
    /// fault and how many more there are.
    pub fn problem(&self) -> Option<String> {
        if let Some(e) = &self.error {
            return Some(e.clone());
        }
        let first = self.faults.first()?;
        Some(match self.faults.len() {
            1 => first.to_string(),
            n => format!("{first} (and {} more fault(s))", n - 1),
        })
    }
}

/// Validates levels 0..=`top_level` of `store` (`top_level` is the highest compaction
/// level in use; the snapshot level is never checked).
pub async fn validate(store: &dyn ReplicaStore, top_level: u8) -> ValidationReport {
    let started = Instant::now();
    let mut report = ValidationReport {
        ok: true,
        levels: 0,
        files: 0,
        faults: Vec::new(),
        error: None,
        duration: Duration::ZERO,
    };
    for level in Level::all().filter(|l| l.get() <= top_level && *l != Level::SNAPSHOT) {
        report.levels += 1;
        match list_faults(store, level).await {
            Ok((files, faults)) => {
                report.files += files;
                report.faults.extend(faults);
            }
            Err(e) => {
                report.error = Some(format!("listing level {}: {e}", level.get()));
                break;
            }
        }
    }
    report.ok = report.error.is_none() && report.faults.is_empty();
    report.duration = started.elapsed();
    report
}

/// Files and faults of one level. A listing is not a snapshot: files that retention
/// deletes while it runs can be missing from it, which looks like a gap. So a fault is
/// confirmed by a second listing of that level, and only faults seen in both count (one
/// more request, only when the first listing shows a fault).
async fn list_faults(
    store: &dyn ReplicaStore,
    level: Level,
) -> Result<(usize, Vec<Fault>), StorageError> {
    let files = store.list(level).await?;
    let faults = check_level(&files);
    if faults.is_empty() {
        return Ok((files.len(), faults));
    }
    let again = store.list(level).await?;
    let confirmed = check_level(&again)
        .into_iter()
        .filter(|f| faults.contains(f))
        .collect();
    Ok((again.len(), confirmed))
}

/// Runs a validation every `interval` (the first one after a full interval) until
/// `shutdown` turns true, handing each report to `on_report` (logs, metrics).
pub async fn validate_loop(
    store: Arc<dyn ReplicaStore>,
    top_level: u8,
    interval: Duration,
    shutdown: watch::Receiver<bool>,
    on_report: impl FnMut(ValidationReport) + Send,
) {
    let job = || validate(store.as_ref(), top_level);
    crate::runtime::every(interval, shutdown, job, on_report).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::file::FileStore;
    use async_trait::async_trait;
    use bytes::Bytes;
    use ltx::TxId;
    use std::ops::Range;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{SystemTime, UNIX_EPOCH};

    fn key(level: u8, min: u64, max: u64) -> LtxKey {
        LtxKey::new(
            Level::new(level).unwrap(),
            TxId::new(min).unwrap(),
            TxId::new(max).unwrap(),
        )
    }

    fn info(level: u8, min: u64, max: u64) -> LtxInfo {
        LtxInfo {
            key: key(level, min, max),
            size_bytes: 100,
            created: UNIX_EPOCH,
        }
    }

    #[test]
    fn contiguous_levels_have_no_fault_in_any_order() {
        assert!(check_level(&[]).is_empty());
        assert!(check_level(&[info(0, 5, 5)]).is_empty());
        assert!(check_level(&[info(1, 4, 9), info(1, 1, 3), info(1, 10, 10)]).is_empty());
        assert!(check_level(&[info(0, 2, 2), info(0, 2, 2), info(0, 3, 3)]).is_empty());
    }

    #[test]
    fn gaps_and_overlaps_name_both_files_and_the_range() {
        let f = check_level(&[info(0, 1, 1), info(0, 2, 2), info(0, 5, 6), info(0, 6, 7)]);
        assert_eq!(
            f,
            vec![
                Fault {
                    kind: FaultKind::Gap,
                    prev: key(0, 2, 2),
                    next: key(0, 5, 6)
                },
                Fault {
                    kind: FaultKind::Overlap,
                    prev: key(0, 5, 6),
                    next: key(0, 6, 7)
                },
            ]
        );
        assert_eq!(
            f[0].to_string(),
            "level 0: TXID gap between 0000000000000002-0000000000000002.ltx and \
             0000000000000005-0000000000000006.ltx: TXIDs 0000000000000003..=0000000000000004 are missing"
        );
        assert!(f[1].to_string().contains("overlap"), "{}", f[1]);
    }

    /// A file replica that counts listings: the requests a validation costs.
    struct Counting {
        inner: FileStore,
        lists: AtomicUsize,
    }

    #[async_trait]
    impl ReplicaStore for Counting {
        fn location(&self) -> &str {
            self.inner.location()
        }
        async fn list(&self, level: Level) -> Result<Vec<LtxInfo>, StorageError> {
            self.lists.fetch_add(1, Ordering::Relaxed);
            self.inner.list(level).await
        }
        async fn get(&self, _: &LtxKey, _: Option<Range<u64>>) -> Result<Bytes, StorageError> {
            panic!("a validation downloads nothing")
        }
        async fn put(&self, key: &LtxKey, data: Bytes, t: SystemTime) -> Result<(), StorageError> {
            self.inner.put(key, data, t).await
        }
        async fn delete(&self, keys: &[LtxKey]) -> Result<(), StorageError> {
            self.inner.delete(keys).await
        }
    }

    #[tokio::test]
    async fn validate_lists_only_the_levels_in_use_and_skips_snapshots() {
        let d = tempfile::tempdir().unwrap();
        let store = Counting {
            inner: FileStore::new(d.path()),
            lists: AtomicUsize::new(0),
        };
        let lists = || store.lists.swap(0, Ordering::Relaxed);
        let put = |k: LtxKey| {
            let store = &store;
            async move {
                store
                    .put(&k, Bytes::from_static(b"x"), SystemTime::now())
                    .await
                    .unwrap()
            }
        };
        put(key(0, 1, 1)).await;
        put(key(0, 2, 2)).await;
        put(key(1, 1, 2)).await;
        // Snapshots are not contiguous with each other: never a fault.
        put(key(9, 1, 1)).await;
        put(key(9, 1, 2)).await;
        // Level 5 is beyond the levels in use: not listed.
        put(key(5, 1, 1)).await;
        put(key(5, 3, 3)).await;
        lists();
        let r = validate(&store, 3).await;
        assert!(r.ok, "{:?}", r.problem());
        assert_eq!((r.levels, r.files), (4, 3));
        // One listing per level 0..=3, as Litestream with its default levels.
        assert_eq!(lists(), 4);
        put(key(0, 4, 4)).await;
        let r = validate(&store, 3).await;
        assert!(!r.ok);
        assert_eq!(r.faults.len(), 1);
        // The faulty level is listed once more to confirm the fault.
        assert_eq!(lists(), 5);
        assert!(
            r.problem().unwrap().contains(
                "level 0: TXID gap between 0000000000000002-0000000000000002.ltx and 0000000000000004-0000000000000004.ltx"
            ),
            "{:?}",
            r.problem()
        );
    }
}
