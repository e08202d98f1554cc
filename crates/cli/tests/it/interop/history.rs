//! A replication history that exercises everything a replica goes through, written by
//! either program, and the restores that must reproduce it.
//!
//! [`write_history`]: an application writes (inserts, deletes, its own PASSIVE and
//! TRUNCATE checkpoints) while a replicator runs on short intervals (levels 1-3 every
//! 1/2/3 s, a snapshot every 3.5 s kept 3 s, L0 kept 1 s), until a sampler listing the
//! replica has seen it compacted, snapshotted and pruned; the replicator stops, the application writes and truncates its
//! WAL, and the replicator restarts with retention that keeps everything (so the points
//! checked afterwards stay restorable). Two points are recorded once the replica holds
//! them ([`settle`]): a past one, and the last one once the replicator has stopped. [`check_restores`] then restores the
//! latest state, the past TXID and the past timestamp with a given program, each compared
//! page for page with the live database at that point.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, UNIX_EPOCH};

use engine::storage::LtxKey;
use ltx::Level;
use rusqlite::Connection;

use super::dest::Dest;
use super::programs::{log_tails, Program};
use crate::harness::*;

/// Retention settings of a config, in Litestream's keys.
#[derive(Clone, Copy)]
pub struct Retention {
    pub snapshot: &'static str,
    pub l0: &'static str,
}

/// Old snapshots, the levels below them and compacted L0 files go within seconds.
pub const CHURN: Retention = Retention {
    snapshot: "3s",
    l0: "1s",
};

/// Nothing is deleted during a test.
pub const KEEP: Retention = Retention {
    snapshot: "1h",
    l0: "1h",
};

/// A config both programs read: one database, one replica, short housekeeping intervals.
/// The snapshot interval (3.5 s) is out of step with the levels: with snapshots every 2 s,
/// level 2's newest file and the newest snapshot often covered the same TXIDs when level 3
/// was due, our compaction rightly skips a merge that adds nothing past the newest
/// snapshot, and under load a whole 8 s run could end with no level-3 file (full run,
/// 2026-12-07). The churn phase now writes until those files are seen, not for 8 s.
/// `replica_extra`: more lines for the replica mapping, indented six spaces.
pub fn config(
    w: &Work,
    name: &str,
    db: &Path,
    dest: &Dest,
    retention: Retention,
    replica_extra: &str,
) -> PathBuf {
    let p = w.path(&format!("{name}.yml"));
    std::fs::write(
        &p,
        format!(
            "levels:\n  - interval: 1s\n  - interval: 2s\n  - interval: 3s\n\
             snapshot:\n  interval: 3500ms\n  retention: {}\n\
             l0-retention: {}\nl0-retention-check-interval: 1s\n\
             dbs:\n  - path: {}\n    monitor-interval: 100ms\n    checkpoint-interval: 2s\n\
             \x20   min-checkpoint-page-count: 200\n    replica:\n      sync-interval: 100ms\n{}{replica_extra}",
            retention.snapshot,
            retention.l0,
            db.display(),
            dest.yaml
        ),
    )
    .unwrap();
    p
}

/// A point of the history the replica holds: the newest TXID, the live pages it restores
/// to, and that TXID's L0 creation time.
#[derive(Clone)]
pub struct Marker {
    pub txid: u64,
    pub pages: Vec<Vec<u8>>,
    pub created_ms: i64,
}

/// Waits, with the application idle, until a restore at the replica's newest TXID equals
/// the live database (the replicator has shipped everything, including any writes of its
/// own), and returns that point. The probe is our restore; the checks that matter come
/// later, with whichever program is under test. A replicator still running may move past
/// the point without any application write (Litestream's checkpoints bump
/// `_litestream_seq`): settle again after stopping it for the final state.
pub fn settle(w: &Work, cfg: &Path, db: &Path, dest: &Dest, logs: &[PathBuf]) -> Marker {
    let probe = w.path("probe.db");
    let deadline = Instant::now() + Duration::from_secs(90);
    while Instant::now() < deadline {
        let txid = dest.max_txid();
        if txid > 0 {
            let live = pages_of_live(db);
            let hex = format!("{txid:016x}");
            let r = run(&[
                "restore",
                "-config",
                cfg.to_str().unwrap(),
                "-o",
                probe.to_str().unwrap(),
                "-force",
                "-txid",
                &hex,
                db.to_str().unwrap(),
            ]);
            if r.status.success() && pages_of_file(&probe) == live && dest.max_txid() == txid {
                let created = dest
                    .list_all(true)
                    .into_iter()
                    .find(|i| i.key.level == Level::L0 && i.key.max.get() == txid)
                    .unwrap_or_else(|| panic!("{}: no L0 file for TXID {hex}", dest.name))
                    .created;
                let created_ms = created.duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
                return Marker {
                    txid,
                    pages: live,
                    created_ms,
                };
            }
        }
        // Spaces the polls of this wait loop.
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!(
        "{}: the replica never caught up with the live database\n{}",
        dest.name,
        log_tails(logs, 4000)
    );
}

pub struct History {
    /// The config of the last run (retention that keeps everything): restores read it.
    pub cfg: PathBuf,
    pub db: PathBuf,
    pub past: Marker,
    pub last: Marker,
}

/// Writes the history described in the module docs with `program` replicating `db` to
/// `dest`, checks that it covered levels 1-3 and 9 and that retention deleted files, and
/// returns the recorded points.
pub fn write_history(w: &Work, dest: &Dest, program: &Program, replica_extra: &str) -> History {
    let db = w.path("app.db");
    let app = app_db(&db);
    insert_rows(&app, 30, 300);
    let churn = config(w, "churn", &db, dest, CHURN, replica_extra);
    let keep = config(w, "keep", &db, dest, KEEP, replica_extra);
    let mut logs = Vec::new();
    let stop = AtomicBool::new(false);
    let sampled = Mutex::new(Sampled::default());
    std::thread::scope(|s| {
        let sampler = s.spawn(|| sample_keys(dest, &stop, &sampled));
        // The sampler ends even when an assertion below unwinds (the scope joins it).
        let _stop_sampler = SetOnDrop(&stop);
        let d = program.replicate(w, &churn);
        logs.push(d.log_path().to_path_buf());
        // The application writes until the replica has gone through everything this
        // history is for (every level written, retention at L0, L9 and a level below a
        // deleted snapshot), however long that takes on a busy machine.
        let t = Instant::now();
        write_until(&app, &db, true, |i| {
            let (churned, state) = {
                let s = sampled.lock().unwrap();
                (s.churned(), s.describe())
            };
            if churned && i > TRUNCATE_AT {
                return true;
            }
            assert!(
                t.elapsed() < CHURN_DEADLINE,
                "{} on {}: the replica did not go through compaction and retention within {CHURN_DEADLINE:?}: {state}\n{}",
                program.name(),
                dest.name,
                log_tails(&logs, 3000)
            );
            false
        });
        d.stop_ok();

        // While nobody replicates: writes, then the application truncates the WAL, so the
        // restarted replicator cannot continue where it stopped.
        insert_rows(&app, 10, 500);
        let (busy, log): (i64, i64) = app
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!((busy, log), (0, 0), "the WAL was truncated");
        insert_rows(&app, 10, 700);

        let d = program.replicate(w, &keep);
        logs.push(d.log_path().to_path_buf());
        write_for(&app, &db, Duration::from_secs(2), false);
        let past = settle(w, &keep, &db, dest, &logs);
        insert_rows(&app, 20, 900);
        app.execute("DELETE FROM t WHERE id % 3 = 0", []).unwrap();
        app.execute("UPDATE t SET v = randomblob(100) WHERE id % 7 = 1", [])
            .unwrap();
        let running = settle(w, &keep, &db, dest, &logs);
        d.stop_ok();
        // The point "latest" restores must reproduce is taken once the replicator has
        // stopped: after `running` Litestream may still checkpoint and bump its
        // `_litestream_seq` row (a new L0 file and a changed page with no application
        // write), so the live database and the replica can both move past `running`.
        let last = settle(w, &keep, &db, dest, &logs);
        stop.store(true, Ordering::Relaxed);
        sampler.join().unwrap();
        let sampled = std::mem::take(&mut *sampled.lock().unwrap());

        assert!(last.txid >= running.txid && running.txid > past.txid);
        let now: BTreeSet<LtxKey> = dest.list_all(false).iter().map(|i| i.key).collect();
        let seen: BTreeSet<LtxKey> = sampled.seen.union(&now).copied().collect();
        let levels: BTreeSet<u8> = seen.iter().map(|k| k.level.get()).collect();
        let mut deleted: BTreeSet<u8> = seen.difference(&now).map(|k| k.level.get()).collect();
        deleted.extend(&sampled.deleted);
        let what = format!(
            "{} on {}: levels seen {levels:?}, levels with deletions {deleted:?}\n{}",
            program.name(),
            dest.name,
            log_tails(&logs, 3000)
        );
        for l in [0, 1, 2, 3, 9] {
            assert!(levels.contains(&l), "no level-{l} file: {what}");
        }
        assert!(
            deleted.contains(&0) && deleted.contains(&9),
            "retention deleted no L0 or no snapshot: {what}"
        );
        assert!(
            (1..=3).any(|l| deleted.contains(&l)),
            "retention pruned no level below a deleted snapshot: {what}"
        );
        History {
            cfg: keep.clone(),
            db: db.clone(),
            past,
            last,
        }
    })
}

/// The longest the churn phase may take to show compaction and retention.
const CHURN_DEADLINE: Duration = Duration::from_secs(120);

/// The write (loop iteration) after which the application truncates the WAL.
const TRUNCATE_AT: usize = 60;

/// Application writes for `d`; see [`write_until`].
fn write_for(app: &Connection, db: &Path, d: Duration, truncate: bool) {
    let t = Instant::now();
    write_until(app, db, truncate, |_| t.elapsed() >= d);
}

/// Application writes until `done(writes so far)`: inserts of varying size, a delete now
/// and then, PASSIVE checkpoints, and (with `truncate`) one TRUNCATE checkpoint from a
/// connection that gives up after 1.5 s (Litestream's read lock makes it fail; ours lets
/// it through).
fn write_until(app: &Connection, db: &Path, truncate: bool, mut done: impl FnMut(usize) -> bool) {
    let mut i = 0;
    while !done(i) {
        i += 1;
        insert_rows(app, 3, 200 + 50 * (i % 7));
        if i % 30 == 29 {
            app.execute("DELETE FROM t WHERE id % 4 = 0", []).unwrap();
        }
        if i % 20 == 10 {
            app.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                .unwrap();
        }
        if truncate && i == TRUNCATE_AT {
            let c = Connection::open(db).unwrap();
            c.busy_timeout(Duration::from_millis(1500)).unwrap();
            c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
                .unwrap();
        }
        // Paces the writer: commits spread over many syncs and level intervals.
        std::thread::sleep(Duration::from_millis(40));
    }
}

struct SetOnDrop<'a>(&'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// What the sampler has seen of the replica so far.
#[derive(Default)]
struct Sampled {
    /// Every key any listing showed.
    seen: BTreeSet<LtxKey>,
    /// Levels where a key listed before was missing from a later listing (deleted).
    deleted: BTreeSet<u8>,
}

impl Sampled {
    fn levels(&self) -> BTreeSet<u8> {
        self.seen.iter().map(|k| k.level.get()).collect()
    }

    /// Every level written, and retention seen at L0, at the snapshot level and at a
    /// level below a deleted snapshot.
    fn churned(&self) -> bool {
        let levels = self.levels();
        [0, 1, 2, 3, 9].iter().all(|l| levels.contains(l))
            && self.deleted.contains(&0)
            && self.deleted.contains(&9)
            && (1..=3).any(|l| self.deleted.contains(&l))
    }

    fn describe(&self) -> String {
        format!(
            "levels seen {:?}, levels with deletions {:?}",
            self.levels(),
            self.deleted
        )
    }
}

/// Lists the replica every 300 ms until `stop` into `out` (errors are skipped: files come
/// and go under a listing; a listing that succeeds is whole).
fn sample_keys(dest: &Dest, stop: &AtomicBool, out: &Mutex<Sampled>) {
    while !stop.load(Ordering::Relaxed) {
        for level in [0u8, 1, 2, 3, 9] {
            if let Ok(files) = dest.block_on(dest.store().list(Level::new(level).unwrap())) {
                let now: BTreeSet<LtxKey> = files.iter().map(|i| i.key).collect();
                let mut s = out.lock().unwrap();
                if s.seen
                    .iter()
                    .any(|k| k.level.get() == level && !now.contains(k))
                {
                    s.deleted.insert(level);
                }
                s.seen.extend(now);
            }
        }
        // Spaces the samples (every 300 ms, as documented above).
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// RFC 3339 with milliseconds.
pub fn rfc3339_ms(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).unwrap().to_string()
}

/// Restores the latest state, the past TXID and the past timestamp (1 ms after the past
/// TXID's file was created) with `program`, each with `-integrity-check full`, and
/// compares them page for page with the live database at those points.
pub fn check_restores(w: &Work, program: &Program, h: &History, dest: &Dest) {
    let txid = format!("{:016x}", h.past.txid);
    let ts = rfc3339_ms(h.past.created_ms + 1);
    let cases: [(&str, Vec<&str>, &Marker); 3] = [
        ("latest", vec![], &h.last),
        ("txid", vec!["-txid", &txid], &h.past),
        ("timestamp", vec!["-timestamp", &ts], &h.past),
    ];
    for (what, extra, want) in cases {
        let out = w.path(&format!("{}-{what}.db", program.name().replace(' ', "-")));
        let r = program.restore(&h.cfg, &h.db, &out, &extra);
        assert!(
            r.status.success(),
            "{} restore {what} {extra:?} from {}: {}{}",
            program.name(),
            dest.name,
            String::from_utf8_lossy(&r.stdout),
            String::from_utf8_lossy(&r.stderr)
        );
        assert_same_pages(
            &want.pages,
            &pages_of_file(&out),
            &format!(
                "{} restore {what} {extra:?} from {}",
                program.name(),
                dest.name
            ),
        );
    }
}

/// Runs `f` for a file replica and for a Garage replica at once, each in its own work
/// directory; a failure in either fails the test.
pub fn on_file_and_garage(f: impl Fn(&Work, &Dest) + Sync) {
    use super::dest::Kind;
    std::thread::scope(|s| {
        let runs: Vec<_> = [Kind::File, Kind::Garage]
            .into_iter()
            .map(|kind| {
                let f = &f;
                s.spawn(move || {
                    let w = Work::new();
                    let t = Instant::now();
                    let dest = Dest::new(kind, &w);
                    f(&w, &dest);
                    eprintln!("{}: {:.1}s", dest.name, t.elapsed().as_secs_f64());
                })
            })
            .collect();
        let results: Vec<_> = runs.into_iter().map(|h| h.join()).collect();
        for r in results {
            if let Err(p) = r {
                std::panic::resume_unwind(p);
            }
        }
    });
}
