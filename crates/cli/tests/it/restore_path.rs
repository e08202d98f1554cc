//! Every command restores through the one engine path (`engine::restore::run`):
//! `replicate -restore-if-db-not-exists` finds what `restore` finds, a replica that only
//! Litestream 0.3.13 wrote (`generations/`) included (issue 19: it used to see LTX files
//! only, and started an empty database beside a 0.3 backup).
//!
//! Fails, never skips, when the 0.3.13 binary is missing (see `v3`).

use std::time::Duration;

use crate::harness::*;
use crate::v3::{v3_files, Litestream03};

#[test]
fn restore_if_db_not_exists_restores_a_litestream_03_replica() {
    let w = Work::new();
    let db = w.path("app.db");
    let replica = w.path("replica");
    let app = app_db(&db);
    insert_rows(&app, 20, 300);
    let ls = Litestream03::start(&w, &db, &replica, "");
    eventually(Duration::from_secs(30), "a 0.3 snapshot", || {
        v3_files(&replica).iter().any(|f| f.1 == "snapshots")
    });
    // Commits after the snapshot, shipped as WAL segments (at the latest by the final sync).
    insert_rows(&app, 5, 700);
    app.execute("DELETE FROM t WHERE id % 3 = 0", []).unwrap();
    ls.stop();
    let want = pages_of_live(&db);
    drop(app);
    for f in ["app.db", "app.db-wal", "app.db-shm"] {
        let _ = std::fs::remove_file(w.path(f));
    }
    assert!(
        !replica.join("ltx").exists(),
        "the replica holds 0.3 generations only"
    );

    let cfg = w.file_config(&db, &replica, "");
    let out = run_ok(&[
        "replicate",
        "-once",
        "-restore-if-db-not-exists",
        "-config",
        cfg.to_str().unwrap(),
    ]);
    assert_same_pages(
        &want,
        &pages_of_file(&db),
        &format!(
            "database restored from the 0.3 replica before replicating\n{}",
            String::from_utf8_lossy(&out.stderr)
        ),
    );
    // Replication then starts its LTX history from that database: a restore of it (the
    // LTX history now wins over the 0.3 generations) is the same database again.
    let now = pages_of_live(&db);
    restore_and_compare(&cfg, &db, &w.path("restored.db"), &now, &[]);
}
