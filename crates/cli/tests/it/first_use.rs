//! What a new user trips on first (issue 25), each a regression test against the real
//! binary: a replica URL with a malformed scheme (`gs:/bad`), `-once -enforce-retention`
//! (Litestream enforces snapshot retention then), a database that does not exist yet
//! (wait, say so once, create nothing), and `-help` showing the single-dash flags users
//! type.

use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::harness::*;

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn a_url_with_a_malformed_scheme_is_an_error_showing_the_intended_form() {
    let w = Work::new();
    let db = w.path("app.db");
    insert_rows(&app_db(&db), 10, 100);
    for (url, intended) in [
        ("gs:/bad", "gs://bad"),
        ("s3:/bucket/db", "s3://bucket/db"),
        ("S3:bucket/db", "S3://bucket/db"),
        ("sftp:/user@host/p", "sftp://user@host/p"),
        ("file:/abs/dir", "file:///abs/dir"),
    ] {
        let o = std::process::Command::new(bin())
            .current_dir(w.dir.path())
            .args(["replicate", "-once", db.to_str().unwrap(), url])
            .output()
            .unwrap();
        let err = stderr(&o);
        assert!(!o.status.success(), "{url} was accepted:\n{err}");
        assert!(
            err.contains(&format!("write {intended}")) && err.contains(&format!("./{url}")),
            "{url}: the error does not show the intended form:\n{err}"
        );
    }
    // Nothing was replicated into a directory named after the scheme.
    let made = entries(w.dir.path());
    assert!(
        !made.iter().any(|e| e.ends_with(':')),
        "a directory named after a scheme: {made:?}"
    );

    // A path that says it is one is still a directory, scheme-like name or not.
    let o = std::process::Command::new(bin())
        .current_dir(w.dir.path())
        .args(["replicate", "-once", db.to_str().unwrap(), "./gs:/x"])
        .output()
        .unwrap();
    assert!(o.status.success(), "./gs:/x refused:\n{}", stderr(&o));
    assert!(
        replica_max_txid(&w.path("gs:/x")) >= 1,
        "nothing in ./gs:/x"
    );

    // restore takes the same argument: the same error, not a database lookup.
    let o = run(&[
        "restore",
        "-o",
        w.path("out.db").to_str().unwrap(),
        "gs:/bad",
    ]);
    assert!(
        !o.status.success() && stderr(&o).contains("write gs://bad"),
        "restore gs:/bad: {}",
        stderr(&o)
    );
}

/// `replicate -once -enforce-retention` deletes snapshots past `snapshot.retention`
/// (keeping the newest) and the files of levels 1.. that end below them, as Litestream's
/// `Store.EnforceSnapshotRetention` does after its one sync.
#[test]
fn once_with_enforce_retention_deletes_expired_snapshots() {
    let w = Work::new();
    let (db, replica) = (w.path("app.db"), w.path("replica"));
    let c = app_db(&db);
    insert_rows(&c, 50, 1000);
    let config = |interval: &str, retention: &str| {
        w.config(&format!(
            "snapshot:\n  interval: {interval}\n  retention: {retention}\ndbs:\n  - path: {}\n    replicas:\n      - type: file\n        path: {}\n",
            db.display(),
            replica.display()
        ))
    };
    // A replicator taking a snapshot every second while the data changes; a retention of
    // 1 h keeps them all.
    let cfg = config("1s", "1h");
    // LTX files only: a put in progress shows as a `.tmp` file beside them (seen under
    // load: taken for the first snapshot, then gone).
    let snapshots = || -> Vec<String> {
        entries(&replica.join("ltx/9"))
            .into_iter()
            .filter(|n| n.ends_with(".ltx"))
            .collect()
    };
    let r = Replicator::start(&w, &["-config", cfg.to_str().unwrap()]);
    eventually(Duration::from_secs(30), "a first snapshot", || {
        !snapshots().is_empty()
    });
    let first = snapshots()[0].clone();
    insert_rows(&c, 50, 1000);
    eventually(Duration::from_secs(30), "a second snapshot", || {
        snapshots().len() >= 2
    });
    assert_eq!(r.stop(), 0);
    let age = |name: &str| {
        let m = std::fs::metadata(replica.join("ltx/9").join(name)).unwrap();
        SystemTime::now()
            .duration_since(m.modified().unwrap())
            .unwrap_or_default()
    };
    // Now the interval is long (no new snapshot at start, so the schedule's retention does
    // not run) and the retention short: only -enforce-retention can delete the first.
    let newest = snapshots().last().unwrap().clone();
    let cfg = config("1h", "1s");
    let cfg_s = cfg.to_str().unwrap();
    eventually(
        Duration::from_secs(10),
        "the first snapshot older than 1s",
        || age(&first) > Duration::from_millis(1100),
    );
    insert_rows(&c, 10, 1000);
    let want = pages_of_live(&db);
    let o = run_ok(&["replicate", "-config", cfg_s, "-once", "-enforce-retention"]);
    let remaining = snapshots();
    assert!(
        !remaining.contains(&first),
        "the expired snapshot is still there: {remaining:?}\n{}",
        stderr(&o)
    );
    assert!(
        remaining.contains(&newest),
        "the newest snapshot was deleted"
    );
    assert!(
        stderr(&o).contains("enforcing retention"),
        "not said: {}",
        stderr(&o)
    );
    // What is left still restores to the source.
    restore_and_compare(&cfg, &db, &w.path("restored.db"), &want, &[]);
}

#[test]
fn a_missing_database_is_awaited_saying_so_once_and_creating_nothing() {
    let w = Work::new();
    let dir = w.path("data");
    std::fs::create_dir(&dir).unwrap();
    let (db, replica) = (dir.join("app.db"), w.path("replica"));
    let url = format!("file://{}", replica.display());
    let mut r = Replicator::start(&w, &[db.to_str().unwrap(), &url]);
    let log = r.wait_for_line(
        "waiting for the database to appear",
        Duration::from_secs(30),
    );
    assert!(
        log.contains(&format!("{}", db.display())) && log.contains(&format!("{}", dir.display())),
        "the line does not say where: {log}"
    );
    // The replicator looks for the file every second: let a few looks pass, then check
    // that they neither repeated the message nor made anything.
    std::thread::sleep(Duration::from_millis(3500));
    assert!(entries(&dir).is_empty(), "created: {:?}", entries(&dir));
    assert!(!replica.exists(), "the replica was created");
    assert_eq!(
        r.log_text()
            .matches("waiting for the database to appear")
            .count(),
        1,
        "said more than once:\n{}",
        r.log_text()
    );
    // Once the database appears it is replicated.
    insert_rows(&app_db(&db), 10, 100);
    eventually(
        Duration::from_secs(30),
        "the replica holds the database",
        || replica_max_txid(&replica) >= 1,
    );
    assert_eq!(r.stop(), 0);
}

#[test]
fn help_shows_the_single_dash_flags_users_type_and_both_forms_work() {
    let o = run_ok(&["restore", "-help"]);
    let help = String::from_utf8_lossy(&o.stdout).into_owned();
    for flag in [
        "-config",
        "-txid",
        "-if-replica-exists",
        "-integrity-check",
        "-help",
    ] {
        assert!(
            help.lines()
                .any(|l| l.trim_start().starts_with(flag) || l.contains(&format!(", {flag}"))),
            "{flag} not shown:\n{help}"
        );
    }
    assert!(
        !help.contains("--"),
        "double-dash flags still shown:\n{help}"
    );
    let o = run_ok(&["replicate", "--help"]);
    let help = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        help.contains("-enforce-retention") && !help.contains("--once"),
        "{help}"
    );
    let top = String::from_utf8_lossy(&run_ok(&["-help"]).stdout).into_owned();
    assert!(top.contains("-version") && !top.contains("--"), "{top}");

    // Both spellings parse.
    let w = Work::new();
    let (db, replica) = (w.path("app.db"), w.path("replica"));
    insert_rows(&app_db(&db), 5, 100);
    let cfg = w.file_config(&db, &replica, "");
    run_ok(&["replicate", "-config", cfg.to_str().unwrap(), "-once"]);
    run_ok(&["replicate", "--config", cfg.to_str().unwrap(), "--once"]);
    let want = pages_of_live(&db);
    restore_and_compare(&cfg, &db, &w.path("r1.db"), &want, &[]);
}
