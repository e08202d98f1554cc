//! A database that goes quiet between bursts of writes: once nothing is left to watch (the
//! WAL backfilled, here by our own checkpoint every second) the replicator closes every
//! connection but the pin's (`DbConns::trim`), and the next burst reopens what it needs.
//! Between bursts the application checkpoints with
//! TRUNCATE and RESTART (which restart the WAL whenever our pin allows). Nothing may be
//! lost: the restore equals the source page for page.
//!
//! The pauses only give the quiet-time trim a chance to run; no assertion depends on
//! timing (a slow machine exercises fewer trims, never fails).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use engine::history::plan::{plan, Listing, Target};
use engine::replicate::status::{DbStatus, ReplicaStatus};
use engine::replicate::{DbOptions, ReplicaOptions, ReplicaSpec, RunMode};
use engine::restore::apply::apply;
use engine::restore::output::{ApplyOptions, IntegrityCheck};
use engine::runtime::{replicate_all, DbRun};
use engine::storage::file::FileStore;
use engine::storage::ReplicaStore;
use ltx::Level;
use rusqlite::Connection;

fn pages_of_live(path: &Path) -> Vec<Vec<u8>> {
    let c = Connection::open(path).unwrap();
    let mut st = c
        .prepare("SELECT data FROM sqlite_dbpage ORDER BY pgno")
        .unwrap();
    let v = st
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    v
}

fn pages_of_file(path: &Path) -> Vec<Vec<u8>> {
    let data = std::fs::read(path).unwrap();
    let ps = u16::from_be_bytes([data[16], data[17]]) as usize;
    data.chunks(ps).map(|c| c.to_vec()).collect()
}

async fn wait_replicated(db: &DbStatus, replica: &ReplicaStatus) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let local = db.local_txid();
        if local.is_some() && replica.progress.holds(local) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "replica stuck at {:?} (local {local:?})",
            replica.replicated()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_spells_between_bursts_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let app = Connection::open(&db).unwrap();
    app.busy_timeout(Duration::from_secs(10)).unwrap();
    app.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0;
         CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);",
    )
    .unwrap();

    let store = Arc::new(FileStore::new(dir.path().join("replica")));
    let rstatus = Arc::new(ReplicaStatus::default());
    let mut opts = DbOptions::with_defaults(db.clone());
    opts.poll_interval = Duration::from_millis(200);
    // Interval checkpoints of our own between bursts, too.
    opts.checkpoint_interval = Duration::from_secs(1);
    let run = DbRun::new(
        opts,
        vec![ReplicaSpec {
            opts: ReplicaOptions::with_defaults("file"),
            store: store.clone(),
            status: rstatus.clone(),
        }],
    );
    let status = run.status.clone();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(replicate_all(vec![run], stop_rx, RunMode::default()));

    for round in 0..6 {
        for _ in 0..20 {
            app.execute("INSERT INTO t(v) VALUES (randomblob(900))", [])
                .unwrap();
        }
        if round % 2 == 1 {
            app.execute("DELETE FROM t WHERE id % 3 = 0", []).unwrap();
        }
        wait_replicated(&status, &rstatus).await;
        // Quiet: our interval checkpoint backfills the WAL, and the connections are trimmed.
        tokio::time::sleep(Duration::from_millis(1200)).await;
        // The application's own checkpoints; a restart happens whenever our pin allows.
        let mode = if round % 2 == 0 {
            "TRUNCATE"
        } else {
            "RESTART"
        };
        let _: i64 = app
            .query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| r.get(0))
            .unwrap();
        app.execute("INSERT INTO t(v) VALUES (randomblob(100))", [])
            .unwrap();
    }
    wait_replicated(&status, &rstatus).await;
    stop_tx.send_replace(true);
    let errors = task.await.unwrap();
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(
        status
            .snapshots_full
            .load(std::sync::atomic::Ordering::Relaxed),
        1,
        "only the first capture may be a full image: every later one follows the WAL"
    );

    let mut files = Vec::new();
    for level in Level::all() {
        files.extend(store.list(level).await.unwrap());
    }
    let p = plan(&Listing::new(files), Target::Latest).unwrap();
    let out = dir.path().join("restored.db");
    let opts = ApplyOptions {
        parallelism: 4,
        integrity: IntegrityCheck::Full,
        force: false,
        progress: Default::default(),
    };
    let store: Arc<dyn ReplicaStore> = store;
    apply(store, &p, &out, &opts).await.unwrap();
    assert_eq!(pages_of_file(&out), pages_of_live(&db));
}
