//! Config keys that act through `replicate`: the per-database `restore-if-db-not-exists`
//! (not only the command-line flag) and the warnings for keys accepted without effect.

use crate::harness::*;

#[test]
fn per_database_restore_if_db_not_exists_restores_without_the_flag() {
    let w = Work::new();
    let db = w.path("app.db");
    let replica = w.path("replica");
    let app = app_db(&db);
    insert_rows(&app, 20, 300);
    let cfg = w.file_config(&db, &replica, "    restore-if-db-not-exists: true\n");
    let cfg_s = cfg.to_str().unwrap();
    run_ok(&["replicate", "-once", "-config", cfg_s]);
    let want = pages_of_live(&db);
    drop(app);
    for f in ["app.db", "app.db-wal", "app.db-shm"] {
        let _ = std::fs::remove_file(w.path(f));
    }
    let o = run_ok(&["replicate", "-once", "-config", cfg_s]);
    assert_same_pages(
        &want,
        &pages_of_file(&db),
        &format!(
            "database restored by its config key: {}",
            String::from_utf8_lossy(&o.stderr)
        ),
    );
    // Without the key (nor the flag), a missing database is an error, not restored.
    let other = w.path("other.db");
    let cfg2 = w.file_config(&other, &replica, "");
    let o = run(&["replicate", "-once", "-config", cfg2.to_str().unwrap()]);
    assert!(
        !o.status.success(),
        "a database without the key is not restored"
    );
    assert!(!other.exists());
}

#[test]
fn keys_accepted_without_effect_are_logged() {
    let w = Work::new();
    let db = w.path("app.db");
    let replica = w.path("replica");
    let app = app_db(&db);
    insert_rows(&app, 2, 10);
    let cfg = w.config(&format!(
        "dbs:\n  - path: {}\n    shadow-retention-count: 2\n    replica:\n      type: file\n      path: {}\n",
        db.display(),
        replica.display()
    ));
    let o = run_ok(&["replicate", "-once", "-config", cfg.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("dbs[0].shadow-retention-count: Litestream 0.3 key; ignored"),
        "the config warning reaches the log: {err}"
    );
}

#[test]
fn config_errors_print_their_hint() {
    let w = Work::new();
    let cfg = w.config(&format!(
        "dbs:\n  - path: {}\n    monitor-interval: 10 seconds\n    replica:\n      type: file\n      path: {}\n",
        w.path("app.db").display(),
        w.path("replica").display()
    ));
    let o = run(&["replicate", "-once", "-config", cfg.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("hint: durations use Go syntax"),
        "the config error's hint is printed: {err}"
    );
}
