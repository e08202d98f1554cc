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
use std::time::Duration;

use engine::sqlite::db::DbConns;
use rusqlite::Connection;

/// In the child: one row more, then a PASSIVE checkpoint; prints "frames backfilled".
#[test]
fn app_process() {
    let Ok(db) = std::env::var("PIN_LOCKS_APP") else {
        return;
    };
    let c = Connection::open(db).unwrap();
    c.busy_timeout(Duration::from_secs(5)).unwrap();
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
