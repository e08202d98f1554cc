//! `replicate` against a file replica: every way an application can touch its WAL,
//! each ending in a restore that equals the source page for page.

use std::time::Duration;

use crate::harness::*;

/// Starts a replicator on `db` → `replica`, runs `scenario` with an app connection, stops
/// the replicator gracefully, and checks the restore equals the live database.
fn scenario(name: &str, scenario: impl FnOnce(&Work, &std::path::Path, &rusqlite::Connection)) {
    let w = Work::new();
    let db = w.path("app.db");
    let replica = w.path("replica");
    let app = app_db(&db);
    insert_rows(&app, 20, 100);
    let cfg = w.file_config(&db, &replica, "");
    let r = Replicator::start(&w, &["-config", cfg.to_str().unwrap()]);
    scenario(&w, &db, &app);
    let want = pages_of_live(&db);
    std::thread::sleep(Duration::from_millis(200));
    let log = r.log.clone();
    let code = r.stop();
    assert_eq!(
        code,
        0,
        "{name}: replicator exit status; log:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
    restore_and_compare(&cfg, &db, &w.path("restored.db"), &want, &[]);
    // TXIDs on the replica are contiguous from 1 (no gap, no duplicate).
    let l0 = replica_l0_txids(&replica);
    assert!(!l0.is_empty(), "{name}: no L0 files");
    for pair in l0.windows(2) {
        assert_eq!(
            pair[1],
            pair[0] + 1,
            "{name}: L0 TXIDs not contiguous: {l0:?}"
        );
    }
}

#[test]
fn streams_commits_and_restores_equal() {
    scenario("basic", |_, _, app| {
        for _ in 0..50 {
            insert_rows(app, 3, 500);
            std::thread::sleep(Duration::from_millis(5));
        }
    });
}

#[test]
fn autocheckpoint_off_and_big_wal() {
    scenario("autocheckpoint off", |_, _, app| {
        app.execute_batch("PRAGMA wal_autocheckpoint=0").unwrap();
        for _ in 0..30 {
            insert_rows(app, 20, 2000);
        }
    });
}

#[test]
fn application_checkpoints_of_every_mode() {
    scenario("app checkpoints", |_, _, app| {
        for mode in [
            "PASSIVE", "FULL", "RESTART", "TRUNCATE", "PASSIVE", "TRUNCATE",
        ] {
            insert_rows(app, 10, 3000);
            std::thread::sleep(Duration::from_millis(30));
            // The app's checkpoint may report busy while the replicator pins the WAL;
            // it must never lose a commit either way.
            let _: (i64, i64, i64) = app
                .query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .unwrap();
            insert_rows(app, 5, 100);
        }
    });
}

#[test]
fn app_closes_and_reopens_its_database() {
    scenario("reopen", |_, db, app| {
        insert_rows(app, 10, 100);
        for _ in 0..3 {
            let c = app_db(db);
            insert_rows(&c, 10, 1000);
            drop(c);
            std::thread::sleep(Duration::from_millis(50));
        }
    });
}

#[test]
fn vacuum_shrinks_the_database() {
    scenario("vacuum", |_, _, app| {
        insert_rows(app, 200, 2000);
        std::thread::sleep(Duration::from_millis(100));
        app.execute("DELETE FROM t WHERE id % 2 = 0", []).unwrap();
        app.execute_batch("VACUUM").unwrap();
        insert_rows(app, 5, 10);
    });
}

#[test]
fn kill9_and_restart_resumes_without_gap() {
    let w = Work::new();
    let db = w.path("app.db");
    let replica = w.path("replica");
    let app = app_db(&db);
    let cfg = w.file_config(&db, &replica, "");
    let r = Replicator::start(&w, &["-config", cfg.to_str().unwrap()]);
    for _ in 0..20 {
        insert_rows(&app, 5, 300);
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(300));
    r.kill9();
    let before = replica_l0_txids(&replica);
    insert_rows(&app, 30, 300);
    let r = Replicator::start(&w, &["-config", cfg.to_str().unwrap()]);
    for _ in 0..10 {
        insert_rows(&app, 5, 300);
        std::thread::sleep(Duration::from_millis(10));
    }
    let want = pages_of_live(&db);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(r.stop(), 0);
    let after = replica_l0_txids(&replica);
    assert!(after.len() > before.len(), "replication resumed");
    for pair in after.windows(2) {
        assert_eq!(
            pair[1],
            pair[0] + 1,
            "TXIDs contiguous after kill -9: {after:?}"
        );
    }
    restore_and_compare(&cfg, &db, &w.path("restored.db"), &want, &[]);
}

#[test]
fn once_mode_captures_and_exits() {
    let w = Work::new();
    let db = w.path("app.db");
    let replica = w.path("replica");
    let app = app_db(&db);
    insert_rows(&app, 10, 100);
    let url = format!("file://{}", replica.display());
    run_ok(&["replicate", "-once", db.to_str().unwrap(), &url]);
    insert_rows(&app, 10, 100);
    run_ok(&["replicate", "-once", db.to_str().unwrap(), &url]);
    assert_eq!(
        replica_l0_txids(&replica),
        vec![1, 2],
        "second -once resumed incrementally"
    );
    let want = pages_of_live(&db);
    let out = w.path("out.db");
    run_ok(&["restore", "-o", out.to_str().unwrap(), &url]);
    assert_same_pages(&want, &pages_of_file(&out), "restore after -once");
}

#[test]
fn several_replicas_each_complete() {
    let w = Work::new();
    let db = w.path("app.db");
    let (a, b) = (w.path("rep-a"), w.path("rep-b"));
    let app = app_db(&db);
    let cfg = w.config(&format!(
        "dbs:\n  - path: {}\n    replicas:\n      - name: near\n        type: file\n        path: {}\n      - name: far\n        url: file://{}\n        sync-interval: 200ms\n",
        db.display(),
        a.display(),
        b.display()
    ));
    let r = Replicator::start(&w, &["-config", cfg.to_str().unwrap()]);
    for _ in 0..20 {
        insert_rows(&app, 3, 700);
        std::thread::sleep(Duration::from_millis(10));
    }
    let want = pages_of_live(&db);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(r.stop(), 0);
    for name in ["near", "far"] {
        restore_and_compare(
            &cfg,
            &db,
            &w.path(&format!("{name}.db")),
            &want,
            &["-replica", name],
        );
    }
}

#[test]
fn exec_runs_child_and_exits_with_its_status() {
    let w = Work::new();
    let db = w.path("app.db");
    let replica = w.path("replica");
    let app = app_db(&db);
    insert_rows(&app, 5, 100);
    drop(app);
    let cfg = w.file_config(&db, &replica, "");
    let script = format!("import sqlite3, sys; c = sqlite3.connect('{}'); c.execute('INSERT INTO t(v) VALUES (42)'); c.commit(); sys.exit(3)", db.display());
    let out = run(&[
        "replicate",
        "-config",
        cfg.to_str().unwrap(),
        "-exec",
        &format!("python3 -c \"{script}\""),
    ]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want = pages_of_live(&db);
    restore_and_compare(&cfg, &db, &w.path("restored.db"), &want, &[]);
}

#[test]
fn database_replaced_on_disk_is_detected() {
    let w = Work::new();
    let db = w.path("app.db");
    let replica = w.path("replica");
    let app = app_db(&db);
    insert_rows(&app, 20, 300);
    let cfg = w.file_config(&db, &replica, "");
    let r = Replicator::start(&w, &["-config", cfg.to_str().unwrap()]);
    insert_rows(&app, 5, 300);
    std::thread::sleep(Duration::from_millis(300));
    drop(app);
    // Another database, built elsewhere, moved over the file as a restore would, with the
    // old WAL and wal-index removed.
    let other = w.path("other.db");
    let o = app_db(&other);
    insert_rows(&o, 50, 800);
    drop(o);
    for sidecar in ["app.db-wal", "app.db-shm"] {
        let _ = std::fs::remove_file(w.path(sidecar));
    }
    std::fs::rename(&other, &db).unwrap();
    let app = app_db(&db);
    insert_rows(&app, 5, 100);
    let want = pages_of_live(&db);
    std::thread::sleep(Duration::from_millis(1500));
    let log = r.log.clone();
    assert_eq!(r.stop(), 0);
    let text = std::fs::read_to_string(log).unwrap_or_default();
    assert!(text.contains("replaced"), "replacement logged:\n{text}");
    let l0 = replica_l0_txids(&replica);
    for pair in l0.windows(2) {
        assert_eq!(
            pair[1],
            pair[0] + 1,
            "TXIDs contiguous across the replacement: {l0:?}"
        );
    }
    restore_and_compare(&cfg, &db, &w.path("restored.db"), &want, &[]);
}
