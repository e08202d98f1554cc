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
    let mut r = Replicator::start(&w, &["-config", cfg.to_str().unwrap()]);
    scenario(&w, &db, &app);
    let want = pages_of_live(&db);
    // Replicating (and so handling SIGTERM with a final sync) before the stop.
    r.wait_ready(1);
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

/// Where a starting replicator is with SIGTERM, read from `/proc/PID/status`.
#[derive(PartialEq)]
enum TermState {
    /// Blocked by `main` while it starts: a SIGTERM now waits for the listener.
    Held,
    /// Caught: the listener is installed.
    Caught,
    /// Neither yet (before `main`), or the process is gone.
    Default,
}

fn term_state(pid: u32) -> TermState {
    // Between fork and exec the child still shows the test process's signal state.
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
    if exe.as_deref() != Some(bin().as_path()) {
        return TermState::Default;
    }
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return TermState::Default;
    };
    let term = 1u64 << (libc::SIGTERM - 1);
    let has = |field: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .is_some_and(|m| m & term != 0)
    };
    if has("SigBlk:") {
        TermState::Held
    } else if has("SigCgt:") {
        TermState::Caught
    } else {
        TermState::Default
    }
}

/// A SIGTERM that comes while the replicator is still starting (after `main` began, before
/// it has read its config, opened the database or listed the replica) is held until it
/// listens, never fatal: the process shuts down as it does for a later SIGTERM (final sync
/// of whatever it has captured, exit 0). It used to die of the signal (status 143) when it
/// came within the first ~16 ms. The test catches the start-up window by watching the
/// process's signal mask, so without the hold it never sees one and fails.
#[test]
fn sigterm_during_start_up_ends_with_a_final_sync() {
    for delay_ms in [0u64, 1, 3] {
        let mut caught = false;
        for _attempt in 0..20 {
            let w = Work::new();
            let db = w.path("app.db");
            let replica = w.path("replica");
            let app = app_db(&db);
            insert_rows(&app, 20, 100);
            let want = pages_of_live(&db);
            let cfg = w.file_config(&db, &replica, "");
            let r = Replicator::start(&w, &["-config", cfg.to_str().unwrap()]);
            let pid = r.id();
            // Polls without pause: the window lasts a few milliseconds.
            let start = std::time::Instant::now();
            let state = loop {
                match term_state(pid) {
                    TermState::Default => assert!(
                        start.elapsed() < Duration::from_secs(10),
                        "timed out waiting for the replicator to hold or catch SIGTERM"
                    ),
                    s => break s,
                }
            };
            if state == TermState::Held {
                caught = true;
                // The moment of the signal is the scenario, not a wait for a state.
                std::thread::sleep(Duration::from_millis(delay_ms));
            }
            let mut r = r;
            if !caught {
                // Missed the window: stop it as any other test does, once replicating.
                r.wait_ready(1);
            }
            let log = r.log_path().to_path_buf();
            let code = r.stop();
            assert_eq!(
                code,
                0,
                "SIGTERM {delay_ms} ms into start-up: exit status; log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
            if !caught {
                restore_and_compare(&cfg, &db, &w.path("restored.db"), &want, &[]);
            }
            if caught {
                break;
            }
        }
        assert!(
            caught,
            "SIGTERM was never held during start-up in 20 starts"
        );
    }
}

#[test]
fn streams_commits_and_restores_equal() {
    scenario("basic", |_, _, app| {
        for _ in 0..50 {
            insert_rows(app, 3, 500);
            // Paces the writer: commits spread over many capture cycles.
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
            // Paces the writer: some checkpoints come after a capture, some before.
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
            // Paces the writer: the replicator sees some of the closes.
            std::thread::sleep(Duration::from_millis(50));
        }
    });
}

#[test]
fn vacuum_shrinks_the_database() {
    scenario("vacuum", |_, _, app| {
        insert_rows(app, 200, 2000);
        // Paces the writer: the big insert is usually captured before the VACUUM.
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
        // Paces the writer: commits spread over many capture cycles.
        std::thread::sleep(Duration::from_millis(10));
    }
    eventually(Duration::from_secs(60), "an upload before the kill", || {
        !replica_l0_txids(&replica).is_empty()
    });
    r.kill9();
    let before = replica_l0_txids(&replica);
    insert_rows(&app, 30, 300);
    let mut r = Replicator::start(&w, &["-config", cfg.to_str().unwrap()]);
    for _ in 0..10 {
        insert_rows(&app, 5, 300);
        // Paces the writer: commits spread over many capture cycles.
        std::thread::sleep(Duration::from_millis(10));
    }
    let want = pages_of_live(&db);
    r.wait_ready(1);
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
    let mut r = Replicator::start(&w, &["-config", cfg.to_str().unwrap()]);
    for _ in 0..20 {
        insert_rows(&app, 3, 700);
        // Paces the writer: commits spread over many capture cycles.
        std::thread::sleep(Duration::from_millis(10));
    }
    let want = pages_of_live(&db);
    r.wait_ready(2);
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
    let mut r = Replicator::start(&w, &["-config", cfg.to_str().unwrap()]);
    insert_rows(&app, 5, 300);
    // The first database is on the replica before it is replaced.
    let first = pages_of_live(&db);
    wait_replica_has(&w, &cfg, &db, &first, &[], Duration::from_secs(60));
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
    r.wait_for_line("replaced", Duration::from_secs(60));
    assert_eq!(r.stop(), 0);
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

/// Level compaction, snapshots and retention on short intervals: L1 and L9 appear, old L0
/// files go, and the replica still restores to the source, also at a past TXID.
#[test]
fn compaction_snapshots_and_retention_keep_restores_whole() {
    let w = Work::new();
    let db = w.path("app.db");
    let replica = w.path("replica");
    let app = app_db(&db);
    insert_rows(&app, 10, 300);
    let cfg = w.config(&format!(
        "levels:\n  - interval: 1s\n  - interval: 2s\nsnapshot:\n  interval: 2s\n  retention: 3s\nl0-retention: 1s\nl0-retention-check-interval: 1s\ndbs:\n  - path: {}\n    replicas:\n      - type: file\n        path: {}\n",
        db.display(),
        replica.display()
    ));
    let r = Replicator::start(&w, &["-config", cfg.to_str().unwrap()]);
    for i in 0..60 {
        insert_rows(&app, 2, 200 + 40 * (i % 9));
        if i % 20 == 19 {
            app.execute("DELETE FROM t WHERE id % 5 = 0", []).unwrap();
        }
        // Paces the writer: 6 s of commits span several level and snapshot intervals.
        std::thread::sleep(Duration::from_millis(100));
    }
    let want = pages_of_live(&db);
    let level_files = |level: u8| {
        std::fs::read_dir(replica.join(format!("ltx/{level}")))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    eventually(
        Duration::from_secs(60),
        "files at levels 1, 2 and 9, and L0 retention to delete TXID 1",
        || {
            [1, 2, 9].iter().all(|&l| level_files(l) > 0)
                && replica_l0_txids(&replica).first().is_some_and(|&t| t > 1)
        },
    );
    assert_eq!(r.stop(), 0);
    restore_and_compare(&cfg, &db, &w.path("restored.db"), &want, &[]);
    // A past TXID still inside the retained history restores with integrity. Once L0 is
    // pruned, only TXIDs where a compacted file ends are reachable (as with Litestream),
    // and none older than the oldest snapshot kept: take the first level-1 end at or past
    // that snapshot, below the head.
    let ends = |level: u8| -> Vec<u64> {
        std::fs::read_dir(replica.join(format!("ltx/{level}")))
            .map(|d| {
                d.filter_map(|e| {
                    let n = e.ok()?.file_name().to_string_lossy().into_owned();
                    u64::from_str_radix(n.strip_suffix(".ltx")?.split('-').nth(1)?, 16).ok()
                })
                .collect()
            })
            .unwrap_or_default()
    };
    let head = replica_max_txid(&replica);
    let oldest_snapshot = ends(9).into_iter().min().expect("a snapshot");
    let past = ends(1)
        .into_iter()
        .filter(|&m| m >= oldest_snapshot && m < head)
        .min()
        .unwrap_or(oldest_snapshot);
    let past = format!("{past:016x}");
    let out = w.path("past.db");
    run_ok(&[
        "restore",
        "-config",
        cfg.to_str().unwrap(),
        "-txid",
        &past,
        "-integrity-check",
        "full",
        "-o",
        out.to_str().unwrap(),
        db.to_str().unwrap(),
    ]);
}

#[test]
fn force_snapshot_writes_a_full_image() {
    let w = Work::new();
    let db = w.path("app.db");
    let url = format!("file://{}", w.path("replica").display());
    let app = app_db(&db);
    insert_rows(&app, 30, 500);
    run_ok(&["replicate", "-once", db.to_str().unwrap(), &url]);
    insert_rows(&app, 1, 10);
    run_ok(&[
        "replicate",
        "-once",
        "-force-snapshot",
        db.to_str().unwrap(),
        &url,
    ]);
    let f = w.path("replica/ltx/0/0000000000000002-0000000000000002.ltx");
    let data = std::fs::read(&f).unwrap();
    let mut dec = ltx::Decoder::new(&data[..]).unwrap();
    let commit = dec.header().commit;
    let mut buf = vec![0u8; dec.header().page_size.bytes()];
    let mut pages = 0;
    while dec.next_page(&mut buf).unwrap().is_some() {
        pages += 1;
    }
    dec.finish().unwrap();
    assert_eq!(pages, commit, "-force-snapshot writes every page");
    // -force-snapshot without -once is refused, as Litestream does.
    assert!(
        !run(&["replicate", "-force-snapshot", db.to_str().unwrap(), &url])
            .status
            .success()
    );
}

#[test]
fn restore_if_db_not_exists_restores_then_replicates() {
    let w = Work::new();
    let db = w.path("app.db");
    let replica = w.path("replica");
    let app = app_db(&db);
    insert_rows(&app, 25, 400);
    let cfg = w.file_config(&db, &replica, "");
    run_ok(&["replicate", "-once", "-config", cfg.to_str().unwrap()]);
    let want = pages_of_live(&db);
    drop(app);
    for f in ["app.db", "app.db-wal", "app.db-shm"] {
        let _ = std::fs::remove_file(w.path(f));
    }
    run_ok(&[
        "replicate",
        "-once",
        "-restore-if-db-not-exists",
        "-config",
        cfg.to_str().unwrap(),
    ]);
    assert_same_pages(
        &want,
        &pages_of_file(&db),
        "database restored before replicating",
    );
    // Replication continues on top of the restored history without reusing a TXID.
    let app = app_db(&db);
    insert_rows(&app, 3, 100);
    run_ok(&["replicate", "-once", "-config", cfg.to_str().unwrap()]);
    let l0 = replica_l0_txids(&replica);
    for pair in l0.windows(2) {
        assert_eq!(
            pair[1],
            pair[0] + 1,
            "TXIDs contiguous after the restore: {l0:?}"
        );
    }
    let want = pages_of_live(&db);
    restore_and_compare(&cfg, &db, &w.path("restored.db"), &want, &[]);
}

#[test]
fn directory_of_databases_each_get_their_replica() {
    let w = Work::new();
    let dir = w.path("dbs");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    let replica = w.path("replica");
    let names = ["a.db", "b.db", "sub/c.db"];
    let mut wants = Vec::new();
    for (i, n) in names.iter().enumerate() {
        let c = app_db(&dir.join(n));
        insert_rows(&c, 5 + i, 300);
        wants.push(pages_of_live(&dir.join(n)));
    }
    std::fs::write(dir.join("notes.txt"), b"not a database").unwrap();
    let cfg = w.config(&format!(
        "dbs:\n  - dir: {}\n    pattern: \"*.db\"\n    recursive: true\n    replica:\n      type: file\n      path: {}\n",
        dir.display(),
        replica.display()
    ));
    run_ok(&["replicate", "-once", "-config", cfg.to_str().unwrap()]);
    for (n, want) in names.iter().zip(&wants) {
        let out = w.path(&format!("out-{}", n.replace('/', "-")));
        let url = format!("file://{}", replica.join(n).display());
        run_ok(&[
            "restore",
            "-integrity-check",
            "full",
            "-o",
            out.to_str().unwrap(),
            &url,
        ]);
        assert_same_pages(want, &pages_of_file(&out), n);
    }
}

/// Runs `script` in Python's sqlite3 (Debian's SQLite, built with FTS5 and R-tree, which
/// our bundled SQLite leaves out) with `db` bound to the database path; returns stdout.
fn python_sqlite(db: &std::path::Path, script: &str) -> String {
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(format!("import sqlite3, sys\ndb = sys.argv[1]\n{script}"))
        .arg(db)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "python3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn fts5_and_rtree_tables_replicate_and_restore_usable() {
    // The replicator's SQLite has no FTS5 or R-tree module; an application's database
    // that uses them still replicates, restores equal page for page, passes the full
    // integrity check, and answers the application's queries afterwards.
    let w = Work::new();
    let db = w.path("app.db");
    let replica = w.path("replica");
    let write = |first: usize| {
        python_sqlite(
            &db,
            &format!(
                "c = sqlite3.connect(db)\n\
                 c.execute('PRAGMA journal_mode=wal')\n\
                 c.execute('CREATE VIRTUAL TABLE IF NOT EXISTS docs USING fts5(body)')\n\
                 c.execute('CREATE VIRTUAL TABLE IF NOT EXISTS boxes USING rtree(id, x0, x1, y0, y1)')\n\
                 for i in range({first}, {first} + 200):\n\
                 \x20   c.execute('INSERT INTO docs VALUES (?)', ('row %d word%d common' % (i, i % 7),))\n\
                 \x20   c.execute('INSERT INTO boxes VALUES (?, ?, ?, ?, ?)', (i, i, i + 1, i, i + 1))\n\
                 \x20   c.commit()\n"
            ),
        );
    };
    write(0);
    let cfg = w.file_config(&db, &replica, "");
    run_ok(&["replicate", "-once", "-config", cfg.to_str().unwrap()]);
    write(200);
    run_ok(&["replicate", "-once", "-config", cfg.to_str().unwrap()]);
    let out = w.path("restored.db");
    restore_and_compare(&cfg, &db, &out, &pages_of_live(&db), &[]);
    let answers = python_sqlite(
        &out,
        "c = sqlite3.connect(db)\n\
         print(c.execute(\"SELECT count(*) FROM docs WHERE docs MATCH 'word3'\").fetchone()[0])\n\
         print(c.execute('SELECT count(*) FROM boxes WHERE x0 >= 100 AND x1 <= 150').fetchone()[0])\n\
         print(c.execute('PRAGMA integrity_check').fetchone()[0])\n",
    );
    // 400 rows, i % 7 == 3 for 57 of them; boxes 100..=149 lie within [100, 150].
    assert_eq!(answers, "57\n50\nok\n", "queries on the restored database");
}
