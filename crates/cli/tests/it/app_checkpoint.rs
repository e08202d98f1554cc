//! The application's own checkpoints beside a running replicator (issue 26): every mode
//! succeeds (SQLite never reports it busy), RESTART and TRUNCATE do not wait for the
//! replicator's read-transaction pin to be moved at its leisure, and nothing is lost: the
//! restore equals the source page for page.
//!
//! The application does what the issue measured: with `busy_timeout = 5000`, it commits
//! 200 rows one per transaction, pauses 300 ms (the replicator has captured everything by
//! then) and runs `PRAGMA wal_checkpoint(MODE)`; first with no other writer, then while a
//! second connection commits about 200 transactions a second.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use crate::harness::*;

const MODES: [&str; 4] = ["PASSIVE", "FULL", "RESTART", "TRUNCATE"];
const TRIES: usize = 5;

/// Median RESTART and TRUNCATE wait allowed. Before issue 26 the pin let go only at the
/// replicator's next settle, 500 ms after its last capture: with the 300 ms pause, about
/// 230 ms idle (SQLite's busy handler retries at ... 178, 228 ms). Now about 5 ms idle and
/// 30 ms under writes; the bound leaves room for a loaded machine and a debug build.
const RESTART_MEDIAN_MAX: Duration = Duration::from_millis(150);

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// One timed application checkpoint: its wait and SQLite's busy flag.
fn checkpoint(app: &Connection, mode: &str) -> (Duration, i64) {
    let t = Instant::now();
    let (busy, _, _): (i64, i64, i64) = app
        .query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap();
    (t.elapsed(), busy)
}

/// Runs every mode `TRIES` times; returns the waits per mode, asserting none was busy
/// (the replicator's log in the message).
fn every_mode(app: &Connection, phase: &str, r: &Replicator) -> Vec<(&'static str, Vec<Duration>)> {
    let mut out = Vec::new();
    for mode in MODES {
        let mut waits = Vec::new();
        for i in 0..TRIES {
            insert_rows(app, 200, 100);
            // The application's pause before it checkpoints (the scenario measured).
            std::thread::sleep(Duration::from_millis(300));
            let (wait, busy) = checkpoint(app, mode);
            assert_eq!(
                busy,
                0,
                "{phase}: {mode} try {i} reported busy after {wait:?}; replicator log:\n{}",
                r.log_tail(8000)
            );
            waits.push(wait);
        }
        out.push((mode, waits));
    }
    out
}

#[test]
fn application_checkpoints_never_wait_long_on_the_pin() {
    let w = Work::new();
    let db = w.path("app.db");
    let replica = w.path("replica");
    let app = app_db(&db);
    app.execute_batch("PRAGMA busy_timeout=5000; PRAGMA synchronous=NORMAL;")
        .unwrap();
    app.execute_batch("CREATE TABLE load(id INTEGER PRIMARY KEY, v BLOB)")
        .unwrap();
    let cfg = w.file_config(&db, &replica, "");
    let args = ["-config", cfg.to_str().unwrap(), "-log-level", "debug"];
    let r = Replicator::start_ready(&w, &args, 1);
    eventually(Duration::from_secs(60), "the first upload", || {
        !replica_l0_txids(&replica).is_empty()
    });

    let idle = every_mode(&app, "idle", &r);

    // A second application connection commits about 200 transactions a second.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (db, stop) = (db.clone(), stop.clone());
        std::thread::spawn(move || {
            let c = Connection::open(&db).unwrap();
            // No automatic checkpoints of its own: one running when the application's
            // starts makes SQLite answer busy at once, whoever else runs.
            c.execute_batch(
                "PRAGMA busy_timeout=5000; PRAGMA synchronous=NORMAL; PRAGMA wal_autocheckpoint=0;",
            )
            .unwrap();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if let Err(e) = c.execute("INSERT INTO load(v) VALUES (randomblob(100))", []) {
                    return Err(format!("commit {n} failed: {e}"));
                }
                n += 1;
                // Paces the writer at about 200 transactions a second.
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(n)
        })
    };
    let loaded = every_mode(&app, "under writes", &r);
    stop.store(true, Ordering::Relaxed);
    let written = writer
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("the writer: {e}; replicator log:\n{}", r.log_tail(8000)));
    assert!(written > 100, "the writer committed {written} transactions");

    let mut report = String::new();
    for (phase, results) in [("idle", idle), ("under writes", loaded)] {
        for (mode, mut waits) in results {
            let m = median(&mut waits);
            report.push_str(&format!("{phase} {mode}: median {m:?}, all {waits:?}\n"));
            if mode == "RESTART" || mode == "TRUNCATE" {
                assert!(
                    m <= RESTART_MEDIAN_MAX,
                    "{phase}: {mode} waited {m:?} (median) on the replicator\n{report}"
                );
            }
        }
    }
    eprintln!("{report}");

    let want = pages_of_live(&db);
    assert_eq!(r.stop(), 0);
    restore_and_compare(&cfg, &db, &w.path("restored.db"), &want, &[]);
}
