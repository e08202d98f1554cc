//! The pin (W1) against an application in *another process*: POSIX advisory locks belong
//! to the process, so a lock our process drops is invisible to connections inside it but
//! not to the application. Reading the wal-index header through `DbConns::shm_info` (as
//! the capture's settle step does) must keep SQLite's locks, our read mark included:
//! the application's checkpoint then backfills no frame after the pin, so it can never
//! restart the WAL over frames we have not captured.
//!
//! The application is this test binary run again with `PIN_LOCKS_APP` set.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use engine::sqlite::db::DbConns;
use rusqlite::Connection;

/// In the child: one row more, then a PASSIVE checkpoint; prints "frames backfilled".
/// With `PIN_LOCKS_CKPT=MODE`: only that checkpoint, printing "busy frames backfilled ms".
#[test]
fn app_process() {
    let Ok(db) = std::env::var("PIN_LOCKS_APP") else {
        return;
    };
    let c = Connection::open(db).unwrap();
    c.busy_timeout(Duration::from_secs(5)).unwrap();
    if let Ok(mode) = std::env::var("PIN_LOCKS_CKPT") {
        let t = Instant::now();
        let (busy, log, done): (i64, i64, i64) = c
            .query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap();
        println!("CKPT {busy} {log} {done} {}", t.elapsed().as_millis());
        return;
    }
    c.execute("INSERT INTO t(v) VALUES (randomblob(100))", [])
        .unwrap();
    let (_, log, done): (i64, i64, i64) = c
        .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap();
    println!("CKPT {log} {done}");
}

fn app_checkpoint(db: &Path) -> (i64, i64) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "app_process", "--nocapture", "--test-threads=1"])
        .env("PIN_LOCKS_APP", db)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .split_once("CKPT ")
        .and_then(|(_, rest)| rest.lines().next())
        .unwrap_or_else(|| panic!("no checkpoint report from the app: {text}"));
    let mut f = line.split_whitespace().map(|x| x.parse::<i64>().unwrap());
    (f.next().unwrap(), f.next().unwrap())
}

#[test]
fn reading_the_wal_index_keeps_our_read_mark() {
    if std::env::var("PIN_LOCKS_APP").is_ok() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let db = d.path().join("app.db");
    let app = Connection::open(&db).unwrap();
    // Closed before our connections open (a descriptor closed beside them would drop
    // their locks), leaving its frames in the WAL: our pin then holds a read mark >= 1.
    app.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
        true,
    )
    .unwrap();
    app.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0;
         CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);
         INSERT INTO t(v) VALUES (randomblob(100));",
    )
    .unwrap();
    drop(app);
    let mut conns = DbConns::open(&db, Duration::from_secs(1)).unwrap();
    conns.begin_pin().unwrap();
    conns.release_old_pin().unwrap();
    let pinned = conns.shm_info().unwrap();
    assert!(pinned.mx_frame > 0);
    for round in 0..3 {
        // What the capture does between two captures: look at the wal-index header.
        assert!(conns.shm_info().is_some());
        if std::env::var("PIN_LOCKS_SHOW_HAZARD").is_ok() {
            // The old way: a descriptor opened and closed beside the connections.
            let _ = engine::sqlite::db::ShmInfo::read(&conns.paths().shm);
        }
        let (log, backfilled) = app_checkpoint(&db);
        assert!(
            log > pinned.mx_frame as i64,
            "round {round}: the app appended ({log} frames, pin at {})",
            pinned.mx_frame
        );
        assert!(
            backfilled <= pinned.mx_frame as i64,
            "round {round}: the app's checkpoint backfilled frame {backfilled}, past our pin at {}",
            pinned.mx_frame
        );
    }
}

/// The moves `Capture::yield_to_checkpointer` makes, against an application process's
/// RESTART checkpoint: our pin's read mark (>= 1) holds the checkpoint once it has
/// backfilled everything; `foreign_locks` sees it running with the write lock; a pin
/// moved then begins on a fully backfilled WAL, takes read mark 0, and the checkpoint
/// restarts the WAL at once (long before its 5 s busy timeout). The new pin still blocks
/// the backfilling of what the application writes next (W1).
// Unix only: `foreign_locks` reads POSIX locks (`F_GETLK`); SQLite's Windows locks
// (`LockFileEx`) cannot be queried without taking them, so there it answers `None` and
// the 500 ms settle applies (docs/design.md, W1a).
#[cfg(unix)]
#[test]
fn a_pin_moved_onto_a_backfilled_wal_lets_a_restart_through() {
    use engine::sqlite::db::ForeignLocks;
    use std::process::Stdio;
    if std::env::var("PIN_LOCKS_APP").is_ok() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let db = d.path().join("app.db");
    let app = Connection::open(&db).unwrap();
    app.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
        true,
    )
    .unwrap();
    app.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0;
         CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);
         INSERT INTO t(v) VALUES (randomblob(100));",
    )
    .unwrap();
    drop(app);
    let mut conns = DbConns::open(&db, Duration::from_secs(1)).unwrap();
    conns.begin_pin().unwrap();
    conns.release_old_pin().unwrap();
    let pinned = conns.shm_info().unwrap();
    assert!(pinned.mx_frame > 0 && !pinned.fully_backfilled());
    assert!(!conns.pin_began_at().unwrap().fully_backfilled());
    let idle = ForeignLocks {
        checkpoint: false,
        write: false,
    };
    assert_eq!(conns.foreign_locks(), Some(idle), "nothing runs yet");
    // Our own write lock is not another process's.
    conns.begin_barrier().unwrap();
    assert_eq!(conns.foreign_locks(), Some(idle));
    conns.end_barrier().unwrap();

    let child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "app_process", "--nocapture", "--test-threads=1"])
        .env("PIN_LOCKS_APP", &db)
        .env("PIN_LOCKS_CKPT", "RESTART")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // The checkpoint backfills everything, then waits for our read mark.
    let deadline = Instant::now() + Duration::from_secs(4);
    loop {
        let locks = conns.foreign_locks().unwrap();
        let info = conns.shm_info().unwrap();
        if locks.blocking_checkpoint() && info.fully_backfilled() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the application's RESTART never waited on us: {locks:?} {info:?}"
        );
        // Spaces the polls of this wait loop.
        std::thread::sleep(Duration::from_millis(1));
    }
    conns.begin_pin().unwrap();
    conns.release_old_pin().unwrap();
    let began = conns.pin_began_at().unwrap();
    assert!(began.fully_backfilled(), "{began:?}");
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .split_once("CKPT ")
        .and_then(|(_, rest)| rest.lines().next())
        .unwrap_or_else(|| panic!("no checkpoint report from the app: {text}"));
    let f: Vec<i64> = line
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect();
    assert_eq!(f[0], 0, "RESTART reported busy: {line}");
    assert!(f[3] < 2000, "RESTART waited {} ms", f[3]);

    // The application's next commit restarts the WAL (RESTART leaves that to it), and
    // what it writes is protected by the pin on read mark 0: no backfill.
    let (log, backfilled) = app_checkpoint(&db);
    let after = conns.shm_info().unwrap();
    assert_eq!(
        after.salt1,
        pinned.salt1.wrapping_add(1),
        "one restart: {pinned:?} -> {after:?}"
    );
    assert!(log > 0 && log < pinned.mx_frame as i64 + 1, "log {log}");
    assert_eq!(backfilled, 0, "backfill passed our read mark 0");
}
