//! Crash tests: `kill -9` of the replicator at random moments and at chosen ones (mid-upload,
//! mid-compaction, mid-snapshot, mid-retention), beside a writer that also runs application
//! checkpoints of every mode; `kill -9` of the application inside a big transaction.
//!
//! After every kill the replica must restore to a consistent committed prefix of what the
//! writer committed (never a torn or invented state, never older than the previous round's),
//! and at the end, after a clean catch-up, to the source page for page, with TXIDs that have
//! no gap and no duplicate across everything the replica ever listed.
//!
//! Seeded: the seed is printed and `CRASH_SEED=<n>` replays a run; `CRASH_ROUNDS=<n>` sets the
//! number of kills (the default keeps each test within about a minute on a 2-core machine).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use crate::harness::*;

/// SplitMix64: a small, well-known generator, so a seed replays exactly (no dependency).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `lo..hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo).max(1)
    }
}

/// The seed for this run: `CRASH_SEED`, or the clock. Printed so a failure can be replayed.
pub fn seed(test: &str) -> u64 {
    let s = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("{test}: CRASH_SEED={s}");
    s
}

pub fn rounds(default: usize) -> usize {
    std::env::var("CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

// ---- The writer's model: transaction k is fully determined by k. -------------------------
//
// Table `c(n INTEGER PRIMARY KEY, u INTEGER, v BLOB)`. Transaction k inserts row k with a blob
// of `blob_len(k)` bytes and sets `u = k` on row k/2; every 50th transaction also rewrites a
// tenth of the blobs (same lengths) so many pages change at once. So the state after N
// transactions is: rows 1..=N, row n has `u` = the largest k <= N with k/2 = n (or NULL), and
// blob length `blob_len(n)`. Any other state is torn or invented.

pub fn blob_len(k: u64) -> u64 {
    60 + (k * 7919) % 2500
}

pub fn create_model_table(c: &Connection) {
    c.execute_batch(
        "PRAGMA journal_mode=WAL; CREATE TABLE IF NOT EXISTS c(n INTEGER PRIMARY KEY, u INTEGER, v BLOB);",
    )
    .unwrap();
}

pub fn model_txn(c: &Connection, k: u64) {
    let tx = c.unchecked_transaction().unwrap();
    tx.execute(
        "INSERT INTO c(n, u, v) VALUES (?1, NULL, randomblob(?2))",
        [k as i64, blob_len(k) as i64],
    )
    .unwrap();
    tx.execute("UPDATE c SET u = ?1 WHERE n = ?1 / 2", [k as i64])
        .unwrap();
    if k.is_multiple_of(50) {
        tx.execute(
            "UPDATE c SET v = randomblob(length(v)) WHERE n % 10 = ?1 % 10",
            [k as i64],
        )
        .unwrap();
    }
    tx.commit().unwrap();
}

/// The committed prefix a kill round's restore at `out` holds, checked against the rounds
/// before it (never older than `last_n`) and the writer (never past the transaction it has
/// `begun` to commit); removes the restore.
fn round_prefix(out: &Path, what: &str, last_n: u64, begun: u64) -> u64 {
    let n = model_prefix(out, what);
    assert!(
        n >= last_n,
        "{what}: restore went back from {last_n} to {n} transactions"
    );
    assert!(
        n <= begun,
        "{what}: restore has {n} transactions, only {begun} begun"
    );
    std::fs::remove_file(out).unwrap();
    n
}

/// Checks that the database at `path` is exactly the model's state after some N transactions
/// and returns N; panics naming the first row that disagrees.
pub fn model_prefix(path: &Path, what: &str) -> u64 {
    let c = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let mut st = c
        .prepare("SELECT n, u, length(v) FROM c ORDER BY n")
        .unwrap();
    let rows: Vec<(u64, Option<u64>, u64)> = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    let n_max = rows.len() as u64;
    for (i, (n, u, len)) in rows.into_iter().enumerate() {
        let want_n = i as u64 + 1;
        assert_eq!(n, want_n, "{what}: row {want_n} missing (found {n})");
        let want_u = [2 * n + 1, 2 * n].into_iter().find(|&k| k <= n_max);
        assert_eq!(
            u, want_u,
            "{what}: row {n} has u={u:?}, the prefix of {n_max} transactions says {want_u:?}"
        );
        assert_eq!(len, blob_len(n), "{what}: row {n} blob length");
    }
    n_max
}

/// A writer thread committing model transactions with pauses from `rng`, running an
/// application checkpoint of a random mode every few transactions.
pub struct Writer {
    pub committed: Arc<AtomicU64>,
    /// The newest transaction the writer has begun to commit: stored before the commit,
    /// so a restore may hold up to this many (a capture can ship a commit before the
    /// writer's thread gets to store it in `committed`).
    pub begun: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    pub fn start(db: &Path, mut rng: Rng, checkpoints: bool) -> Writer {
        let committed = Arc::new(AtomicU64::new(0));
        let begun = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (c2, b2, s2, db) = (
            committed.clone(),
            begun.clone(),
            stop.clone(),
            db.to_path_buf(),
        );
        let handle = std::thread::spawn(move || {
            let c = Connection::open(&db).unwrap();
            c.busy_timeout(Duration::from_secs(10)).unwrap();
            create_model_table(&c);
            let mut k = c
                .query_row("SELECT count(*) FROM c", [], |r| r.get::<_, i64>(0))
                .unwrap() as u64;
            c2.store(k, Ordering::SeqCst);
            b2.store(k, Ordering::SeqCst);
            while !s2.load(Ordering::SeqCst) {
                k += 1;
                b2.store(k, Ordering::SeqCst);
                model_txn(&c, k);
                c2.store(k, Ordering::SeqCst);
                if checkpoints && rng.range(0, 40) == 0 {
                    let mode = ["PASSIVE", "FULL", "RESTART", "TRUNCATE"][rng.range(0, 4) as usize];
                    // Busy is a fine answer while the replicator pins the WAL; a lost commit is not.
                    c.busy_timeout(Duration::from_millis(300)).unwrap();
                    let _: (i64, i64, i64) = c
                        .query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
                            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                        })
                        .unwrap();
                    c.busy_timeout(Duration::from_secs(10)).unwrap();
                }
                // Paces the writer at a random rate.
                std::thread::sleep(Duration::from_micros(rng.range(500, 8000)));
            }
        });
        Writer {
            committed,
            begun,
            stop,
            handle: Some(handle),
        }
    }

    pub fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.take().unwrap().join().unwrap();
        self.committed.load(Ordering::SeqCst)
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

// ---- What the replica has ever listed: TXID history checks. ------------------------------

/// Every LTX file a file replica has listed over the test, with its trailer checksum: the
/// same key must always hold the same file, each level's files must never overlap, and at
/// the end the L0 history (with L1 covering what L0 retention removed) must have no gap.
#[derive(Default)]
pub struct History {
    /// (level, min, max) -> file checksum (the trailer's last 8 bytes).
    seen: BTreeMap<(u8, u64, u64), [u8; 8]>,
    /// Files of levels 1-8 that are a prefix of another file of their level.
    pub orphans: std::collections::BTreeSet<(u8, u64, u64)>,
}

impl History {
    pub fn observe(&mut self, replica: &Path, what: &str) {
        let mut files = Vec::new();
        for level in 0..=9u8 {
            let Ok(rd) = std::fs::read_dir(replica.join(format!("ltx/{level}"))) else {
                continue;
            };
            for e in rd {
                let e = e.unwrap();
                let name = e.file_name().to_string_lossy().into_owned();
                let Some((a, b)) = name.strip_suffix(".ltx").and_then(|s| s.split_once('-')) else {
                    continue;
                };
                let (min, max) = (
                    u64::from_str_radix(a, 16).unwrap(),
                    u64::from_str_radix(b, 16).unwrap(),
                );
                let Ok(data) = std::fs::read(e.path()) else {
                    continue; // removed by retention meanwhile
                };
                let sum: [u8; 8] = data[data.len().saturating_sub(8)..].try_into().unwrap();
                // The file's own header must agree with its name.
                let h = ltx::Header::from_bytes(&data)
                    .unwrap_or_else(|e| panic!("{what}: L{level}/{name}: bad header: {e}"));
                assert_eq!(
                    (h.min_txid.get(), h.max_txid.get()),
                    (min, max),
                    "{what}: L{level}/{name}: header TXIDs differ from the name"
                );
                files.push((level, min, max, sum));
            }
        }
        self.observe_files(files, what);
    }

    /// Records one listing of any replica: (level, min, max, fingerprint), where the
    /// fingerprint is whatever the caller can learn of the content (a file replica's
    /// checksum, an object's size): the same key must keep the same fingerprint, L0 files
    /// hold one TXID each, and files of one level never overlap.
    pub fn observe_files(&mut self, files: Vec<(u8, u64, u64, [u8; 8])>, what: &str) {
        let mut by_level: BTreeMap<u8, Vec<(u64, u64)>> = BTreeMap::new();
        for (level, min, max, sum) in files {
            if let Some(prev) = self.seen.insert((level, min, max), sum) {
                assert_eq!(
                    prev, sum,
                    "{what}: L{level} {min:#x}-{max:#x} changed content: the TXID was reused"
                );
            }
            by_level.entry(level).or_default().push((min, max));
        }
        for (level, mut keys) in by_level {
            keys.sort();
            if level == 0 {
                assert!(
                    keys.iter().all(|(a, b)| a == b),
                    "{what}: L0 file spanning several TXIDs: {keys:?}"
                );
            }
            if level != 9 {
                for w in keys.windows(2) {
                    // One exception: a compaction whose PUT was stored but reported failed
                    // (the response lost: an ambiguous outcome on S3) is redone from the
                    // same TXID, longer; the shorter file stays as a prefix of the longer.
                    // Compaction and restore accept such overlaps (newest pages win).
                    let orphan_prefix = level != 0 && w[1].0 == w[0].0 && w[1].1 > w[0].1;
                    assert!(
                        w[1].0 > w[0].1 || orphan_prefix,
                        "{what}: level {level} files overlap: {:?} and {:?}",
                        w[0],
                        w[1]
                    );
                    if orphan_prefix && self.orphans.insert((level, w[0].0, w[0].1)) {
                        eprintln!(
                            "{what}: L{level} {:#x}-{:#x} is a prefix of {:#x}-{:#x} (a compaction redone after an ambiguous PUT)",
                            w[0].0, w[0].1, w[1].0, w[1].1
                        );
                    }
                }
            }
        }
    }

    /// Records the listing of the replica `db` has in `cfg` (any replica type), through
    /// `sqlite-replicate ltx -json`; object sizes stand in for checksums.
    pub fn observe_listing(&mut self, cfg: &Path, db: &Path, what: &str) {
        let out = run_ok(&[
            "ltx",
            "-config",
            cfg.to_str().unwrap(),
            "-json",
            db.to_str().unwrap(),
        ]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let hex = |x: &serde_json::Value| u64::from_str_radix(x.as_str().unwrap(), 16).unwrap();
        let files = v
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["level"].as_u64().unwrap() as u8,
                    hex(&f["min_txid"]),
                    hex(&f["max_txid"]),
                    f["size"].as_u64().unwrap().to_be_bytes(),
                )
            })
            .collect();
        self.observe_files(files, what);
    }

    /// The highest TXID in any file seen so far.
    pub fn max_txid(&self) -> u64 {
        self.seen.keys().map(|k| k.2).max().unwrap_or(0)
    }

    /// Every TXID 1..=max is an L0 file ever seen, or inside an L1 file ever seen.
    pub fn assert_no_gap(&self, what: &str) -> u64 {
        let max = self.seen.keys().map(|k| k.2).max().unwrap_or(0);
        let l0: std::collections::BTreeSet<u64> =
            self.seen.keys().filter(|k| k.0 == 0).map(|k| k.1).collect();
        let l1: Vec<(u64, u64)> = self
            .seen
            .keys()
            .filter(|k| k.0 == 1)
            .map(|k| (k.1, k.2))
            .collect();
        for t in 1..=max {
            assert!(
                l0.contains(&t) || l1.iter().any(|&(a, b)| a <= t && t <= b),
                "{what}: TXID {t:#x} never appeared in L0 nor inside an L1 file (gap); max {max:#x}"
            );
        }
        max
    }
}

// ---- Kill points ------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum KillAt {
    /// After a random delay.
    Random,
    /// While an L0 upload's temp file exists on the replica.
    Upload,
    /// While a level 1-3 (compaction) temp file exists.
    Compaction,
    /// While a level-9 (snapshot) temp file exists.
    Snapshot,
    /// Right after L0 retention removed a file (possibly mid-batch).
    Retention,
}

/// Files ending in `.tmp` in a replica level directory, and the number of `.ltx` files.
fn scan_level(replica: &Path, level: u8) -> (bool, usize) {
    let mut tmp = false;
    let mut n = 0;
    if let Ok(rd) = std::fs::read_dir(replica.join(format!("ltx/{level}"))) {
        for e in rd.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.ends_with(".tmp") {
                tmp = true;
            } else if name.ends_with(".ltx") {
                n += 1;
            }
        }
    }
    (tmp, n)
}

/// Waits until the chosen moment (or `max_wait`), then kills the replicator with SIGKILL.
/// Returns whether the chosen moment was hit (false: killed at the deadline instead).
fn kill_at(r: Replicator, replica: &Path, at: KillAt, delay: Duration, max_wait: Duration) -> bool {
    let start = Instant::now();
    let hit = match at {
        KillAt::Random => {
            // Not a wait for a state: the kill lands at a random moment by design.
            std::thread::sleep(delay);
            true
        }
        _ => {
            let mut l0_count = scan_level(replica, 0).1;
            loop {
                if start.elapsed() > max_wait {
                    break false;
                }
                let found = match at {
                    KillAt::Upload => scan_level(replica, 0).0,
                    KillAt::Compaction => (1..=3).any(|l| scan_level(replica, l).0),
                    KillAt::Snapshot => scan_level(replica, 9).0,
                    KillAt::Retention => {
                        let n = scan_level(replica, 0).1;
                        let dropped = n < l0_count;
                        l0_count = n;
                        dropped
                    }
                    KillAt::Random => unreachable!(),
                };
                if found {
                    break true;
                }
                // Spaces the polls of this wait loop (short: the moments are brief).
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    };
    r.kill9();
    hit
}

/// Restores the file replica at `url` to `out` (fresh path) with a full integrity check.
/// On failure, the panic carries what is needed to find the cause from a CI log alone:
/// the replica's files and the first of their end TXIDs whose restore fails, with its plan.
fn restore_url(url: &str, out: &Path) {
    let args = [
        "restore",
        "-integrity-check",
        "full",
        "-o",
        out.to_str().unwrap(),
        url,
    ];
    let r = run(&args);
    if !r.status.success() {
        panic!(
            "{args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&r.stderr),
            diagnose_replica(url, out)
        );
    }
}

/// The file replica at `url`: every LTX file (level, range, size), then a restore at each
/// file's end TXID that can still be planned until the first that fails, with that
/// restore's plan and error.
fn diagnose_replica(url: &str, out: &Path) -> String {
    let root = Path::new(url.trim_start_matches("file://")).join("ltx");
    let mut files = Vec::new();
    for level in 0..=9 {
        let Ok(rd) = std::fs::read_dir(root.join(level.to_string())) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let size = e.metadata().map(|m| m.len()).unwrap_or(0);
            files.push((level, name, size));
        }
    }
    files.sort();
    let mut text = String::from("replica files (level name size):\n");
    let mut ends = std::collections::BTreeSet::new();
    for (level, name, size) in &files {
        text += &format!("  {level} {name} {size}\n");
        if let Some(max) = name.strip_suffix(".ltx").and_then(|n| n.split('-').nth(1)) {
            ends.insert(max.to_string());
        }
    }
    let probe = out.with_extension("probe");
    for txid in ends {
        let _ = std::fs::remove_file(&probe);
        let p = probe.to_str().unwrap();
        // TXIDs retention has taken the files of are no restore target any more.
        let plan = run(&["restore", "-dry-run", "-txid", &txid, "-o", p, url]);
        if !plan.status.success() {
            continue;
        }
        let r = run(&[
            "restore",
            "-integrity-check",
            "full",
            "-txid",
            &txid,
            "-o",
            p,
            url,
        ]);
        if !r.status.success() {
            text += &format!(
                "first failing TXID {txid}:\n{}plan:\n{}",
                String::from_utf8_lossy(&r.stderr),
                String::from_utf8_lossy(&plan.stdout)
            );
            return text;
        }
    }
    let _ = std::fs::remove_file(&probe);
    text + "every file's end TXID restores\n"
}

/// A config with short housekeeping intervals so kills land inside compaction, snapshots,
/// retention and the replicator's own checkpoints.
pub fn busy_config(w: &Work, db: &Path, replica_yaml: &str) -> PathBuf {
    w.config(&format!(
        "levels:\n  - interval: 1s\n  - interval: 2s\n  - interval: 4s\nsnapshot:\n  interval: 3s\n  retention: 4s\nl0-retention: 1s\nl0-retention-check-interval: 1s\ndbs:\n  - path: {}\n    checkpoint-interval: 1s\n    min-checkpoint-page-count: 20\n    replicas:\n{replica_yaml}",
        db.display()
    ))
}

#[test]
fn kill9_replicator_at_random_and_chosen_moments() {
    let seed = seed("kill9_replicator_at_random_and_chosen_moments");
    let rounds = rounds(50);
    let mut rng = Rng::new(seed);
    let w = Work::new();
    let db = w.path("app.db");
    let replica = w.path("replica");
    let url = format!("file://{}", replica.display());
    create_model_table(&Connection::open(&db).unwrap());
    let cfg = busy_config(
        &w,
        &db,
        &format!("      - type: file\n        path: {}\n", replica.display()),
    );
    let writer = Writer::start(&db, Rng::new(rng.next()), true);
    let mut history = History::default();
    let mut last_n = 0;
    let mut hits: BTreeMap<KillAt, (usize, usize)> = BTreeMap::new();
    let started = Instant::now();
    let mut restarts_caught = 0;
    for round in 0..rounds {
        let what = format!("seed {seed} round {round}");
        let at = [
            KillAt::Random,
            KillAt::Random,
            KillAt::Upload,
            KillAt::Compaction,
            KillAt::Snapshot,
            KillAt::Retention,
        ][rng.range(0, 6) as usize];
        let delay = Duration::from_millis(rng.range(30, 1500));
        let mut r = Replicator::start(&w, &["-config", cfg.to_str().unwrap()]);
        // Let it get going (list, open, first capture) before watching for a chosen moment.
        if at != KillAt::Random {
            r.wait_ready(1);
        }
        let log = r.log.clone();
        let hit = kill_at(r, &replica, at, delay, Duration::from_secs(5));
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        restarts_caught += text.matches("WAL restarted before the first scan").count();
        let e = hits.entry(at).or_default();
        e.0 += 1;
        e.1 += hit as usize;
        if (0..=9).all(|l| scan_level(&replica, l).1 == 0) {
            continue; // killed before the first upload finished (its temp file may be there)
        }
        history.observe(&replica, &what);
        let begun = writer.begun.load(Ordering::SeqCst);
        let out = w.path(&format!("round-{round}.db"));
        restore_url(&url, &out);
        last_n = round_prefix(&out, &what, last_n, begun);
    }
    // A final clean run: catch up, then stop with SIGTERM (final sync) after the writer.
    let r = Replicator::start_ready(&w, &["-config", cfg.to_str().unwrap()], 1);
    let committed = writer.stop();
    let want = pages_of_live(&db);
    let log = r.log.clone();
    assert_eq!(
        r.stop(),
        0,
        "final replicator run; log:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
    history.observe(&replica, "final");
    let max = history.assert_no_gap(&format!("seed {seed}"));
    let out = w.path("final.db");
    restore_url(&url, &out);
    assert_eq!(model_prefix(&out, "final"), committed, "final restore");
    assert_same_pages(&want, &pages_of_file(&out), "final restore");
    eprintln!(
        "seed {seed}: {rounds} kill rounds in {:.1}s; {committed} transactions, {max} TXIDs; kills (tried, hit): {hits:?}; WAL restarts before the first scan after start: {restarts_caught}",
        started.elapsed().as_secs_f64()
    );
}

/// The application dies (`kill -9`) inside a big uncommitted transaction, possibly after
/// SQLite spilled some of its pages into the WAL; replication continues and the restore
/// equals the source, which SQLite recovered without the dead transaction.
#[test]
fn kill9_application_mid_transaction() {
    let seed = seed("kill9_application_mid_transaction");
    let mut rng = Rng::new(seed);
    let w = Work::new();
    let db = w.path("app.db");
    let replica = w.path("replica");
    let url = format!("file://{}", replica.display());
    create_model_table(&Connection::open(&db).unwrap());
    let cfg = w.file_config(&db, &replica, "");
    let r = Replicator::start_ready(&w, &["-config", cfg.to_str().unwrap()], 1);
    let mut committed = 0;
    for round in 0..rounds(4) {
        // A few committed transactions, then a big one a separate process never commits.
        {
            let c = Connection::open(&db).unwrap();
            c.busy_timeout(Duration::from_secs(10)).unwrap();
            for _ in 0..rng.range(5, 30) {
                committed += 1;
                model_txn(&c, committed);
            }
        }
        // A small cache makes SQLite spill dirty pages into the WAL before the commit.
        let script = format!(
            "import sqlite3, sys, time\n\
             c = sqlite3.connect({db:?}, isolation_level=None)\n\
             c.execute('PRAGMA cache_size=10')\n\
             c.execute('BEGIN')\n\
             for i in range({n}):\n    c.execute('INSERT INTO c(n, u, v) VALUES (?, 0, randomblob(3000))', (10**9 + i,))\n\
             print('in-txn', flush=True)\n\
             time.sleep(60)\n",
            db = db.display().to_string(),
            n = rng.range(200, 2000),
        );
        let mut app = std::process::Command::new("python3")
            .arg("-c")
            .arg(&script)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 (scripts/test.sh installs it)");
        let mut line = String::new();
        use std::io::BufRead;
        std::io::BufReader::new(app.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "in-txn", "round {round}: app did not start");
        // Not a wait for a state: the app dies at a random moment inside its transaction.
        std::thread::sleep(Duration::from_millis(rng.range(0, 300)));
        app.kill().unwrap();
        app.wait().unwrap();
    }
    // The next writer recovers the WAL (the dead transaction's frames have no commit).
    let c = Connection::open(&db).unwrap();
    c.busy_timeout(Duration::from_secs(10)).unwrap();
    for _ in 0..10 {
        committed += 1;
        model_txn(&c, committed);
    }
    let want = pages_of_live(&db);
    assert_eq!(r.stop(), 0);
    let out = w.path("restored.db");
    restore_url(&url, &out);
    assert_eq!(model_prefix(&out, &format!("seed {seed}")), committed);
    assert_same_pages(&want, &pages_of_file(&out), "restore after app kill -9");
    let l0 = replica_l0_txids(&replica);
    for pair in l0.windows(2) {
        assert_eq!(pair[1], pair[0] + 1, "TXIDs contiguous: {l0:?}");
    }
}

/// `kill -9` of the replicator with an S3 replica (real Garage), half the rounds while a
/// PUT is provably in flight (the fault proxy holds it part way through its body), the
/// others at a random moment. After each kill the replica restores to a consistent
/// committed prefix no older than the last; at the end, TXIDs have no gap and no reuse
/// across every listing, and the restore equals the source page for page.
#[test]
fn kill9_replicator_mid_upload_to_s3() {
    use crate::faultproxy::{FaultProxy, Faults};
    use crate::garage::Garage;
    use crate::netfault::{plain_config, s3_entry};

    let seed = seed("kill9_replicator_mid_upload_to_s3");
    let rounds = rounds(20);
    let mut rng = Rng::new(seed);
    let g = Garage::start();
    let proxy = FaultProxy::start(g.s3_port, rng.next(), Faults::none());
    let w = Work::new();
    let db = w.path("app.db");
    create_model_table(&Connection::open(&db).unwrap());
    let cfg = busy_config(&w, &db, &s3_entry(&g, "crash/app.db", &proxy.endpoint()));
    let direct = plain_config(
        &w,
        "direct.yml",
        &db,
        &s3_entry(&g, "crash/app.db", &g.endpoint()),
    );
    let writer = Writer::start(&db, Rng::new(rng.next()), true);
    let mut history = History::default();
    let mut last_n = 0;
    let (mut mid_put, mut random, mut restores) = (0, 0, 0);
    let started = Instant::now();
    for round in 0..rounds {
        let what = format!("seed {seed} round {round}");
        let r = Replicator::start_ready(&w, &["-config", cfg.to_str().unwrap()], 1);
        // Not a wait for a state: the round goes on for a random while before its kill.
        std::thread::sleep(Duration::from_millis(rng.range(0, 600)));
        if rng.range(0, 2) == 0 {
            // Hold the next PUT part way, kill while it hangs, then let the proxy go on.
            proxy.stall_puts(true);
            let t = Instant::now();
            while proxy.stats().stalled.load(Ordering::SeqCst) == 0
                && t.elapsed() < Duration::from_secs(10)
            {
                // Spaces the polls of this wait loop.
                std::thread::sleep(Duration::from_millis(2));
            }
            let held = proxy.stats().stalled.load(Ordering::SeqCst) > 0;
            r.kill9();
            proxy.stall_puts(false);
            if held {
                mid_put += 1;
            } else {
                random += 1; // no PUT within the wait: the kill was at its deadline
            }
        } else {
            // Not a wait for a state: the kill lands at a random moment by design.
            std::thread::sleep(Duration::from_millis(rng.range(0, 1500)));
            r.kill9();
            random += 1;
        }
        history.observe_listing(&direct, &db, &what);
        if history.max_txid() == 0 {
            continue; // killed before the first upload
        }
        let begun = writer.begun.load(Ordering::SeqCst);
        let out = w.path(&format!("round-{round}.db"));
        run_ok(&[
            "restore",
            "-config",
            direct.to_str().unwrap(),
            "-integrity-check",
            "full",
            "-o",
            out.to_str().unwrap(),
            db.to_str().unwrap(),
        ]);
        restores += 1;
        last_n = round_prefix(&out, &what, last_n, begun);
    }
    let r = Replicator::start_ready(&w, &["-config", cfg.to_str().unwrap()], 1);
    let committed = writer.stop();
    let want = pages_of_live(&db);
    let log = r.log.clone();
    assert_eq!(
        r.stop(),
        0,
        "final replicator run; log:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
    history.observe_listing(&direct, &db, "final");
    let max = history.assert_no_gap(&format!("seed {seed}"));
    let out = w.path("final.db");
    restore_and_compare(&direct, &db, &out, &want, &[]);
    assert_eq!(model_prefix(&out, "final"), committed, "final restore");
    assert!(mid_put > 0, "seed {seed}: no kill landed during a PUT");
    eprintln!(
        "seed {seed}: {rounds} kill rounds against Garage in {:.1}s ({mid_put} mid-PUT, {random} at random, {restores} restores checked); {committed} transactions, {max} TXIDs; proxy: {}",
        started.elapsed().as_secs_f64(),
        proxy.stats().summary()
    );
}

/// A replicator killed while writing a file replica's L0 file leaves the temp file behind.
/// It is harmless (our restore and Litestream's ignore it), and the next replicator's
/// first upload into that directory removes it, while files of other names stay.
#[test]
fn kill9_mid_upload_leaves_no_stale_temp_files_on_file_replica() {
    let seed = seed("kill9_mid_upload_leaves_no_stale_temp_files_on_file_replica");
    let mut rng = Rng::new(seed);
    let w = Work::new();
    let db = w.path("app.db");
    let replica = w.path("replica");
    let l0 = replica.join("ltx/0");
    let url = format!("file://{}", replica.display());
    create_model_table(&Connection::open(&db).unwrap());
    let cfg = w.file_config(&db, &replica, "");
    // The replica holds a complete first file before any kill: a kill during the very
    // first upload (likely on a loaded machine) would leave nothing to restore.
    run_ok(&["replicate", "-once", "-config", cfg.to_str().unwrap()]);
    let writer = Writer::start(&db, Rng::new(rng.next()), false);
    let tmp_files = || -> Vec<String> {
        std::fs::read_dir(&l0)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.ends_with(".tmp"))
                    .collect()
            })
            .unwrap_or_default()
    };
    // Kill while an L0 temp file exists until one survives the kill (the window is the
    // write and fsync of a small file, so it may take a few tries).
    let mut tries = 0;
    let left = loop {
        tries += 1;
        assert!(
            tries <= 200,
            "seed {seed}: no temp file survived {tries} kills mid-upload"
        );
        let r = Replicator::start(&w, &["-config", cfg.to_str().unwrap()]);
        // Not a wait for a state: a random moment in the first uploads, to leave a temp file.
        std::thread::sleep(Duration::from_millis(rng.range(50, 300)));
        kill_at(
            r,
            &replica,
            KillAt::Upload,
            Duration::ZERO,
            Duration::from_secs(5),
        );
        let left = tmp_files();
        if !left.is_empty() {
            break left;
        }
    };
    // Harmless meanwhile: both restores list past it.
    let foreign = ["notes.tmp", "0000000000000001-0000000000000001.ltx.tmp"];
    for f in foreign {
        std::fs::write(l0.join(f), b"not ours").unwrap();
    }
    let out = w.path("with-tmp.db");
    restore_url(&url, &out);
    let n = model_prefix(&out, "restore beside a stale temp file");
    let ls_out = w.path("litestream-with-tmp.db");
    let ls = std::process::Command::new("litestream")
        .args(["restore", "-o", ls_out.to_str().unwrap(), &url])
        .output()
        .expect("litestream (scripts/test.sh installs it)");
    assert!(
        ls.status.success(),
        "litestream restore beside {left:?}: {}",
        String::from_utf8_lossy(&ls.stderr)
    );
    assert_eq!(
        model_prefix(&ls_out, "litestream restore beside a stale temp file"),
        n
    );
    // The next start removes ours (once it uploads), never the others.
    let r = Replicator::start(&w, &["-config", cfg.to_str().unwrap()]);
    let before = replica_max_txid(&replica);
    eventually(
        Duration::from_secs(60),
        "an upload after the restart",
        || replica_max_txid(&replica) > before,
    );
    let committed = writer.stop();
    let want = pages_of_live(&db);
    assert_eq!(r.stop(), 0);
    let mut after = tmp_files();
    after.sort();
    let mut want_left: Vec<String> = foreign.iter().map(|s| s.to_string()).collect();
    want_left.sort();
    assert_eq!(
        after, want_left,
        "seed {seed}: stale temp files {left:?} after the restart"
    );
    let out = w.path("final.db");
    restore_url(&url, &out);
    assert_eq!(model_prefix(&out, "final"), committed);
    assert_same_pages(&want, &pages_of_file(&out), "final restore");
    eprintln!("seed {seed}: a temp file survived kill #{tries}: {left:?}; removed on restart");
}
