//! `restore`: point-in-time at every TXID of a recorded history, each flag, and the
//! refusals and errors that protect an existing database.

use std::time::Duration;

use crate::harness::*;

/// Builds a history with `replicate -once` after each batch, recording the source pages at
/// each TXID. Returns (work, db, replica url, pages per TXID starting at TXID 1).
fn recorded_history(batches: usize) -> (Work, std::path::PathBuf, String, Vec<Vec<Vec<u8>>>) {
    let w = Work::new();
    let db = w.path("app.db");
    let replica = w.path("replica");
    let url = format!("file://{}", replica.display());
    let app = app_db(&db);
    // Day-long level and snapshot intervals: a `-once` run compacts what crossed a level's
    // boundary while it ran (30 s by default), and these tests name L0 files. Only a run
    // crossing midnight UTC would compact.
    let cfg = w.config(&format!(
        "levels:\n  - interval: 24h\nsnapshot:\n  interval: 24h\ndbs:\n  - path: {}\n    replicas:\n      - type: file\n        path: {}\n",
        db.display(),
        replica.display()
    ));
    let mut states = Vec::new();
    for i in 0..batches {
        insert_rows(&app, 1 + i % 4, 200 + 300 * (i % 5));
        if i % 3 == 2 {
            app.execute("DELETE FROM t WHERE id % 3 = 0", []).unwrap();
        }
        run_ok(&["replicate", "-once", "-config", cfg.to_str().unwrap()]);
        states.push(pages_of_live(&db));
    }
    (w, db, url, states)
}

#[test]
fn restore_at_every_txid_equals_the_source_then() {
    let (w, _db, url, states) = recorded_history(12);
    for (i, want) in states.iter().enumerate() {
        let txid = format!("{:016x}", i + 1);
        let out = w.path(&format!("at-{txid}.db"));
        run_ok(&[
            "restore",
            "-txid",
            &txid,
            "-o",
            out.to_str().unwrap(),
            "-integrity-check",
            "quick",
            &url,
        ]);
        assert_same_pages(
            want,
            &pages_of_file(&out),
            &format!("restore at TXID {txid}"),
        );
    }
}

#[test]
fn refuses_to_overwrite_unless_forced() {
    let (w, _db, url, states) = recorded_history(3);
    let out = w.path("out.db");
    std::fs::write(&out, b"precious").unwrap();
    let r = run(&["restore", "-o", out.to_str().unwrap(), &url]);
    assert!(!r.status.success());
    assert!(
        String::from_utf8_lossy(&r.stderr).contains("already exists"),
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );
    assert_eq!(
        std::fs::read(&out).unwrap(),
        b"precious",
        "existing file untouched"
    );
    // A stale -wal beside the output is refused too, and removed by -force.
    let stale = w.path("out2.db-wal");
    std::fs::write(&stale, b"stale").unwrap();
    let out2 = w.path("out2.db");
    assert!(!run(&["restore", "-o", out2.to_str().unwrap(), &url])
        .status
        .success());
    run_ok(&["restore", "-force", "-o", out2.to_str().unwrap(), &url]);
    assert!(!stale.exists(), "stale -wal removed");
    run_ok(&["restore", "-force", "-o", out.to_str().unwrap(), &url]);
    assert_same_pages(
        states.last().unwrap(),
        &pages_of_file(&out),
        "forced restore",
    );
    // -if-db-not-exists: exit 0 and leave it.
    std::fs::write(&out, b"keep").unwrap();
    run_ok(&[
        "restore",
        "-if-db-not-exists",
        "-o",
        out.to_str().unwrap(),
        &url,
    ]);
    assert_eq!(std::fs::read(&out).unwrap(), b"keep");
}

#[test]
fn empty_replica_fails_unless_if_replica_exists() {
    let w = Work::new();
    let url = format!("file://{}", w.path("nothing").display());
    let out = w.path("out.db");
    let r = run(&["restore", "-o", out.to_str().unwrap(), &url]);
    assert!(!r.status.success());
    run_ok(&[
        "restore",
        "-if-replica-exists",
        "-o",
        out.to_str().unwrap(),
        &url,
    ]);
    assert!(!out.exists());
}

#[test]
fn dry_run_prints_plan_and_writes_nothing() {
    let (w, _db, url, _) = recorded_history(4);
    let out = w.path("out.db");
    let r = run_ok(&["restore", "-dry-run", "-o", out.to_str().unwrap(), &url]);
    let text = String::from_utf8_lossy(&r.stdout);
    assert!(
        text.contains("0000000000000004"),
        "plan names the target TXID: {text}"
    );
    assert!(!out.exists());
    let r = run_ok(&[
        "restore",
        "-dry-run",
        "-json",
        "-o",
        out.to_str().unwrap(),
        &url,
    ]);
    let v: serde_json::Value = serde_json::from_slice(&r.stdout).expect("dry-run -json is JSON");
    assert!(v.is_object(), "{v}");
}

#[test]
fn corrupted_file_fails_naming_it_and_leaves_no_output() {
    let (w, _db, url, _) = recorded_history(3);
    // The plan's newest file: usually L0 3-3, but a `-once` run that crossed a level's
    // interval boundary compacts, and then the plan reads an L1 file instead.
    let plan = run_ok(&["restore", "-dry-run", "-json", "-o", "unused.db", &url]);
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    let last = plan["files"].as_array().unwrap().last().unwrap().clone();
    let name = format!(
        "{}-{}.ltx",
        last["min_txid"].as_str().unwrap(),
        last["max_txid"].as_str().unwrap()
    );
    let f = w.path(&format!("replica/ltx/{}/{name}", last["level"]));
    let mut data = std::fs::read(&f).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0xff;
    std::fs::write(&f, &data).unwrap();
    let out = w.path("out.db");
    let r = run(&["restore", "-o", out.to_str().unwrap(), &url]);
    assert!(!r.status.success());
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains(&name), "error names the file: {err}");
    assert!(err.contains("byte"), "error names the offset: {err}");
    assert!(!out.exists(), "no database produced");
    let leftovers: Vec<_> = std::fs::read_dir(w.dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temp file cleaned up");
}

#[test]
fn missing_file_is_a_gap_error_naming_the_range() {
    let (w, _db, url, _) = recorded_history(5);
    std::fs::remove_file(w.path("replica/ltx/0/0000000000000003-0000000000000003.ltx")).unwrap();
    let r = run(&["restore", "-o", w.path("out.db").to_str().unwrap(), &url]);
    assert!(!r.status.success());
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        err.contains("0000000000000003"),
        "gap names the missing TXID: {err}"
    );
}

#[test]
fn timestamp_restore_uses_files_created_before_it() {
    let (w, _db, url, states) = recorded_history(2);
    // Files get their header timestamp as mtime; a time between the two captures
    // restores the first state.
    let first = w.path("replica/ltx/0/0000000000000001-0000000000000001.ltx");
    let t1 = std::fs::metadata(&first).unwrap().modified().unwrap();
    let second = w.path("replica/ltx/0/0000000000000002-0000000000000002.ltx");
    let t2 = t1 + Duration::from_secs(60);
    filetime_set(&second, t2);
    let ts = jiff::Timestamp::try_from(t1 + Duration::from_secs(1))
        .unwrap()
        .to_string();
    let out = w.path("out.db");
    run_ok(&[
        "restore",
        "-timestamp",
        &ts,
        "-o",
        out.to_str().unwrap(),
        &url,
    ]);
    assert_same_pages(&states[0], &pages_of_file(&out), "restore at timestamp");
}

fn filetime_set(p: &std::path::Path, t: std::time::SystemTime) {
    let f = std::fs::File::options().write(true).open(p).unwrap();
    f.set_modified(t).unwrap();
}

#[test]
fn follow_mode_keeps_a_readable_copy_current() {
    let w = Work::new();
    let db = w.path("app.db");
    let replica = w.path("replica");
    let url = format!("file://{}", replica.display());
    let app = app_db(&db);
    insert_rows(&app, 10, 100);
    run_ok(&["replicate", "-once", db.to_str().unwrap(), &url]);
    let out = w.path("follower.db");
    let mut f = std::process::Command::new(bin())
        .args([
            "restore",
            "-f",
            "-follow-interval",
            "50ms",
            "-o",
            out.to_str().unwrap(),
            &url,
        ])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    eventually(Duration::from_secs(20), "initial follow restore", || {
        out.exists()
    });
    for round in 0..3 {
        insert_rows(&app, 7, 300);
        run_ok(&["replicate", "-once", db.to_str().unwrap(), &url]);
        let want: i64 = app
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        eventually(
            Duration::from_secs(20),
            &format!("follower round {round}"),
            || {
                let c = rusqlite::Connection::open_with_flags(
                    &out,
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
                )
                .unwrap();
                c.busy_timeout(Duration::from_secs(5)).unwrap();
                c.query_row("SELECT count(*) FROM t", [], |r| r.get::<_, i64>(0))
                    .map(|n| n == want)
                    .unwrap_or(false)
            },
        );
    }
    let _ = f.kill();
    let _ = f.wait();
    let c = rusqlite::Connection::open_with_flags(&out, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap();
    let ok: String = c
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
}
