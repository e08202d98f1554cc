//! An idle database costs no object-store requests: once the replica has caught up (its
//! first L0 file and the startup snapshot), level boundaries, L0-retention checks and the
//! safety poll pass without a single list, get, put or delete.
//!
//! A counting wrapper around a real file replica sees every call the replication loop
//! makes. Short compaction intervals (1 s and 2 s, retention checks every second) make
//! several boundaries pass while the database is idle; no assertion depends on timing.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use engine::replicate::progress::raw;
use engine::replicate::status::ReplicaStatus;
use engine::replicate::{DbOptions, ReplicaOptions, ReplicaSpec, RunMode};
use engine::runtime::{replicate_all, DbRun};
use engine::storage::file::FileStore;
use engine::storage::layout::{LtxInfo, LtxKey};
use engine::storage::{ReplicaStore, StorageError};
use ltx::Level;

/// A file replica that records every call made to it.
struct Counting {
    inner: FileStore,
    calls: AtomicU64,
    log: Mutex<Vec<String>>,
}

impl Counting {
    fn note(&self, what: String) {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.log.lock().unwrap().push(what);
    }
    fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }
    fn snapshot_put(&self) -> bool {
        self.log
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.starts_with("put") && l.contains("level 9"))
    }
}

#[async_trait]
impl ReplicaStore for Counting {
    fn location(&self) -> &str {
        self.inner.location()
    }
    async fn list(&self, level: Level) -> Result<Vec<LtxInfo>, StorageError> {
        self.note(format!("list level {}", level.get()));
        self.inner.list(level).await
    }
    async fn get(&self, key: &LtxKey, range: Option<Range<u64>>) -> Result<Bytes, StorageError> {
        self.note(format!("get level {} {key}", key.level.get()));
        self.inner.get(key, range).await
    }
    async fn put(
        &self,
        key: &LtxKey,
        data: Bytes,
        created: SystemTime,
    ) -> Result<(), StorageError> {
        self.note(format!("put level {} {key}", key.level.get()));
        self.inner.put(key, data, created).await
    }
    async fn delete(&self, keys: &[LtxKey]) -> Result<(), StorageError> {
        self.note(format!("delete {keys:?}"));
        self.inner.delete(keys).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_database_makes_no_object_store_requests() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let app = rusqlite::Connection::open(&db).unwrap();
    app.execute_batch(
        "PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
         INSERT INTO t(v) VALUES ('x');",
    )
    .unwrap();

    let store = Arc::new(Counting {
        inner: FileStore::new(dir.path().join("replica")),
        calls: AtomicU64::new(0),
        log: Mutex::new(Vec::new()),
    });
    let mut ropts = ReplicaOptions::with_defaults("file");
    ropts.levels = vec![Duration::from_secs(1), Duration::from_secs(2)];
    ropts.l0_retention = Duration::from_secs(1);
    ropts.l0_retention_check_interval = Duration::from_secs(1);
    let rstatus = Arc::new(ReplicaStatus::default());
    let mut opts = DbOptions::with_defaults(db.clone());
    opts.poll_interval = Duration::from_millis(200);
    let run = DbRun::new(
        opts,
        vec![ReplicaSpec {
            opts: ropts,
            store: store.clone(),
            status: rstatus.clone(),
        }],
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(replicate_all(vec![run], stop_rx, RunMode::default()));

    // Caught up: the first L0 file is on the replica and the startup snapshot written.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while !(raw(rstatus.replicated()) >= 1 && store.snapshot_put()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "replica never caught up: {:?}",
            store.log.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let settled = store.calls();
    let settled_log = store.log.lock().unwrap().len();

    // Idle: several level-1 and level-2 boundaries and retention checks pass.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let idle_calls = store.calls() - settled;
    let idle_log = store.log.lock().unwrap()[settled_log..].to_vec();
    assert_eq!(idle_calls, 0, "requests while idle: {idle_log:?}");

    // The replica still follows a write, and the loop stops cleanly.
    app.execute("INSERT INTO t(v) VALUES ('y')", []).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while raw(rstatus.replicated()) < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "write not replicated"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop_tx.send_replace(true);
    let errors = task.await.unwrap();
    assert!(errors.is_empty(), "{errors:?}");
}
