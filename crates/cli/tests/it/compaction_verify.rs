//! `verify-compaction: true` through the real binary: every merged file is read back from
//! the replica and checked against its inputs before it counts (one GET per merged file);
//! true merges pass, L0 retention goes on, and the replica restores to the source. The
//! failing side (a store that corrupts merged files) is
//! `engine::replicate::maintain::tests::verify_compaction_keeps_inputs_of_a_bad_merge`.

use crate::harness::*;
use crate::metrics::{free_port, scrape_until};

#[test]
fn merged_files_are_read_back_and_pass() {
    let w = Work::new();
    let db = w.path("app.db");
    let replica = w.path("replica");
    let app = app_db(&db);
    insert_rows(&app, 20, 100);
    let port = free_port();
    // L1 every second, L0 retention after a second: merges and deletions while we watch;
    // no other level, and the snapshot (at start) reads local L0 files: without the
    // check, nothing would GET from the replica.
    let cfg = w.config(&format!(
        "addr: 127.0.0.1:{port}\nverify-compaction: true\nlevels:\n  - interval: 1s\nl0-retention: 1s\nl0-retention-check-interval: 1s\ndbs:\n  - path: {}\n    replica:\n      type: file\n      path: {}\n",
        db.display(),
        replica.display()
    ));
    let r = Replicator::start(&w, &["-config", cfg.to_str().unwrap()]);
    let gets = "litestream_replica_operation_total{replica_type=\"file\",operation=\"GET\"}";
    let compactions = format!(
        "sqlite_replicate_replica_compactions_total{{db=\"{}\",replica=\"file\"}}",
        db.display()
    );
    let failures = format!(
        "sqlite_replicate_replica_compaction_verify_failures_total{{db=\"{}\",replica=\"file\"}}",
        db.display()
    );
    let s = scrape_until(port, "three compactions and an L0 deletion", |s| {
        insert_rows(&app, 2, 100);
        s.sample(&compactions).is_some_and(|n| n >= 3.0)
            && s.sample(&format!(
                "sqlite_replicate_replica_deletes_total{{db=\"{}\",replica=\"file\"}}",
                db.display()
            ))
            .is_some_and(|n| n >= 1.0)
    });
    let merged = s.sample(&compactions).unwrap();
    assert!(
        s.sample(gets).unwrap_or(0.0) >= merged,
        "fewer GETs than merged files: {}",
        s.metrics
    );
    assert_eq!(s.sample(&failures), Some(0.0), "{}", s.metrics);
    assert!(
        !r.log_text().contains("verify-compaction"),
        "{}",
        r.log_text()
    );
    assert_eq!(r.stop(), 0);
    let want = pages_of_live(&db);
    restore_and_compare(&cfg, &db, &w.path("restored.db"), &want, &[]);
}
