//! The request budget (`upload-rate`, `upload-burst`) against the real binary: sustained
//! writes to a real S3 server (Garage) cost at most rate x seconds + burst uploads, each
//! carrying every commit since the last (the restore equals the source page for page);
//! `/metrics`, `/status` and `check` show the budget and the request rate; a sparse or
//! bursty writer under a budget has each commit shipped at the `sync-interval` pace.

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use crate::garage::Garage;
use crate::harness::*;
use crate::metrics::{free_port, scrape_settled, scrape_until, Scrape};

/// Commits one small row every `every` for `window` (the writer's pace, not a
/// synchronisation); returns how many.
fn write_for(c: &Connection, every: Duration, window: Duration) -> u64 {
    let end = Instant::now() + window;
    let mut n = 0;
    while Instant::now() < end {
        c.execute("INSERT INTO t(v) VALUES (?1)", [format!("row {n}")])
            .unwrap();
        n += 1;
        std::thread::sleep(every);
    }
    n
}

fn uploads(s: &Scrape, db: &Path) -> f64 {
    s.m(
        "sqlite_replicate_replica_uploads_total{$db,$replica}",
        db,
        "s3",
    )
}

/// 200 tx/s for 8 s to S3 with `upload-rate: 2`, `upload-burst: 3`: at most
/// 2 x seconds + 3 uploads (one more for the capture waiting when the window closes),
/// where without a budget there would be one per 20 ms capture (about 400).
#[test]
fn sustained_writes_to_s3_stay_within_the_upload_budget() {
    let g = Garage::start();
    let w = Work::new();
    let db = w.path("app.db");
    let app = app_db(&db);
    insert_rows(&app, 10, 100);
    let port = free_port();
    let cfg = w.config(&format!(
        "addr: 127.0.0.1:{port}\ndbs:\n  - path: {}\n    replica:\n      name: s3\n{}      upload-rate: 2/s\n      upload-burst: 3\n",
        db.display(),
        g.replica_yaml("budget/app.db")
    ));
    let r = Replicator::start(&w, &["-config", cfg.to_str().unwrap()]);
    let first = scrape_settled(port, "the first capture on S3", |s| uploads(s, &db) >= 1.0);
    assert_eq!(
        first.m(
            "sqlite_replicate_replica_upload_rate_limit{$db,$replica}",
            &db,
            "s3"
        ),
        2.0
    );
    assert_eq!(
        first.m(
            "sqlite_replicate_replica_upload_burst{$db,$replica}",
            &db,
            "s3"
        ),
        3.0
    );
    let before = uploads(&first, &db);

    let started = Instant::now();
    let commits = write_for(&app, Duration::from_millis(5), Duration::from_secs(8));
    let during = scrape_until(port, "the request rate while writing", |_| true);
    let settled = scrape_settled(port, "the replica caught up after the writes", |_| true);
    let secs = started.elapsed().as_secs_f64();
    let n = uploads(&settled, &db) - before;
    assert!(
        n <= (2.0 * secs).ceil() + 3.0 + 1.0,
        "{n} uploads in {secs:.1} s for {commits} commits: over the budget"
    );
    assert!(n >= 2.0 * 8.0 - 2.0, "{n} uploads: the budget was used");
    // The request rate: every request of the last minute (uploads, and the start's list),
    // and its month.
    let rps = during.m(
        "sqlite_replicate_replica_requests_per_second{$db,$replica}",
        &db,
        "s3",
    );
    assert!(rps > 0.0 && rps <= 2.0 + 3.0, "{rps} requests/s");
    let q = &during.replica()["requests"];
    assert_eq!(q["upload_rate"].as_f64(), Some(2.0), "{q}");
    let month = q["projected_per_month"].as_f64().unwrap();
    let per_second = q["per_second"].as_f64().unwrap();
    assert!(
        (month - per_second * 30.0 * 86_400.0).abs() <= 1.0,
        "{month} a month at {per_second}/s"
    );
    // `check` shows the budget and, from the running daemon, the rate now.
    let out = run(&[
        "check",
        "-json",
        "-no-quick-check",
        "-config",
        cfg.to_str().unwrap(),
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let f = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == "request-budget")
        .unwrap_or_else(|| panic!("no request-budget finding: {v}"))
        .clone();
    let msg = f["message"].as_str().unwrap();
    assert!(
        msg.contains("upload-rate 2/s, upload-burst 3") && msg.contains("requests/s"),
        "{msg}"
    );

    let want = pages_of_live(&db);
    drop(app);
    assert_eq!(r.stop(), 0);
    restore_and_compare(&cfg, &db, &w.path("restored.db"), &want, &[]);
}

/// `check` states each replica's budget: object stores 1 upload a second with a burst
/// of 20 by default, file replicas unlimited (no daemon: no rate now).
#[test]
fn check_states_the_default_budgets() {
    let g = Garage::start();
    let w = Work::new();
    let db = w.path("app.db");
    let app = app_db(&db);
    insert_rows(&app, 5, 100);
    let cfg = w.config(&format!(
        "dbs:\n  - path: {}\n    replicas:\n      - name: file\n        path: {}\n      - name: s3\n{}",
        db.display(),
        w.path("replica").display(),
        g.replica_yaml("defaults/app.db").replace("\n      ", "\n        ").replacen("      ", "        ", 1)
    ));
    let out = run(&[
        "check",
        "-json",
        "-no-quick-check",
        "-config",
        cfg.to_str().unwrap(),
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    let budget: Vec<(String, String, String)> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["check"] == "request-budget")
        .map(|f| {
            (
                f["replica"].as_str().unwrap().to_string(),
                f["level"].as_str().unwrap().to_string(),
                f["message"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(budget.len(), 2, "{budget:?}");
    assert!(
        budget[0].0.starts_with("file") && budget[0].1 == "ok",
        "{budget:?}"
    );
    assert!(budget[0].2.starts_with("no upload-rate"), "{budget:?}");
    assert!(
        budget[1].0.starts_with("s3") && budget[1].1 == "ok",
        "{budget:?}"
    );
    assert!(
        budget[1].2.starts_with("upload-rate 1/s, upload-burst 20: sustained writes cost at most 1 uploads/s (2.59M a month)"),
        "{budget:?}"
    );
}

/// A sparse writer (a commit every 1.2 s) and a short burst (10 commits 50 ms apart)
/// under `upload-rate: 1`: each commit is on the replica within the `sync-interval`
/// pace (20 ms, plus scheduling on a busy machine), not a token's second later.
#[test]
fn sparse_and_bursty_commits_ship_at_the_sync_interval_pace() {
    let w = Work::new();
    let db = w.path("app.db");
    let replica = w.path("replica");
    let app = app_db(&db);
    insert_rows(&app, 5, 100);
    let cfg = w.config(&format!(
        "dbs:\n  - path: {}\n    replica:\n      path: {}\n      upload-rate: 1\n",
        db.display(),
        replica.display()
    ));
    let r = Replicator::start_ready(&w, &["-config", cfg.to_str().unwrap()], 1);
    eventually(Duration::from_secs(30), "the first capture", || {
        replica_max_txid(&replica) >= 1
    });
    let mut worst = Duration::ZERO;
    let mut ship = |i: usize| {
        let before = replica_max_txid(&replica);
        let at = Instant::now();
        app.execute("INSERT INTO t(v) VALUES (?1)", [format!("commit {i}")])
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while replica_max_txid(&replica) <= before {
            assert!(
                Instant::now() < deadline,
                "commit {i} not on the replica (held {before}):\n{}",
                r.log_tail(40)
            );
            // Spaces the polls of this wait.
            std::thread::sleep(Duration::from_millis(2));
        }
        worst = worst.max(at.elapsed());
    };
    for i in 0..5 {
        ship(i);
        std::thread::sleep(Duration::from_millis(1200));
    }
    for i in 5..15 {
        ship(i);
        std::thread::sleep(Duration::from_millis(50));
    }
    // A token's wait would be 1 s; the pace plus the polls and a loaded machine, well
    // under that.
    assert!(
        worst <= Duration::from_millis(500),
        "slowest commit shipped after {worst:?}"
    );
    let want = pages_of_live(&db);
    drop(app);
    assert_eq!(r.stop(), 0);
    restore_and_compare(&cfg, &db, &w.path("restored.db"), &want, &[]);
}
