//! `watch: true` on a directory entry: databases created under the directory (matching
//! the pattern, at any depth with `recursive`) start replicating without a restart, to
//! the replica path derived as at start-up; deleted ones stop; SQLite's side files,
//! hidden names and files that are not databases yet are left alone.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::harness::*;

fn list(sock: &Path) -> serde_json::Value {
    let out = run(&["list", "-json", "-socket", sock.to_str().unwrap()]);
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

/// The databases `list` shows replicating.
fn replicating(sock: &Path) -> Vec<String> {
    list(sock)["databases"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|d| d["status"] == "replicating")
                .filter_map(|d| d["path"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn listed(sock: &Path) -> Vec<String> {
    list(sock)["databases"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|d| d["path"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether process `pid` has a descriptor open on `path` (or its `-wal`/`-shm`).
fn held_open(pid: u32, path: &Path) -> bool {
    let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    rd.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .any(|t| t.to_string_lossy().starts_with(&*path.to_string_lossy()))
}

fn has_l0(replica_db: &Path) -> bool {
    std::fs::read_dir(replica_db.join("ltx/0"))
        .map(|rd| rd.count() > 0)
        .unwrap_or(false)
}

#[test]
fn watched_tree_starts_new_databases_and_stops_deleted_ones() {
    let w = Work::new();
    let root = w.path("data");
    let replica = w.path("replica");
    let sock = w.path("ctl.sock");
    for d in ["", "a", "a/b"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    let mut dbs: Vec<PathBuf> = Vec::new();
    for i in 0..50 {
        let sub = ["", "a", "a/b"][i % 3];
        let p = root.join(sub).join(format!("db{i}.db"));
        insert_rows(&app_db(&p), 1, 100);
        dbs.push(p);
    }
    // Not databases of the entry: another pattern, a hidden name.
    drop(app_db(&root.join("notes.sqlite")));
    drop(app_db(&root.join(".hidden.db")));
    let cfg = w.config(&format!(
        "socket:\n  enabled: true\n  path: {}\ndbs:\n  - dir: {}\n    pattern: '*.db'\n    recursive: true\n    watch: true\n    replica:\n      path: {}\n",
        sock.display(),
        root.display(),
        replica.display()
    ));
    let r = Replicator::start(&w, &["-config", cfg.to_str().unwrap()]);
    eventually(
        Duration::from_secs(60),
        "the 50 databases replicating",
        || replicating(&sock).len() == 50,
    );

    // A new database in a new subdirectory: replicating, to the derived replica path.
    std::fs::create_dir_all(root.join("new/deep")).unwrap();
    let fresh = root.join("new/deep/fresh.db");
    let started = Instant::now();
    let app = app_db(&fresh);
    insert_rows(&app, 20, 500);
    let fresh_replica = replica.join("new/deep/fresh.db");
    eventually(
        Duration::from_secs(20),
        "fresh.db's first LTX file in its replica",
        || has_l0(&fresh_replica),
    );
    eprintln!("first LTX of a new database after {:?}", started.elapsed());

    // A file being created is not a database yet: it waits, not fails.
    let slow = root.join("slow.db");
    std::fs::write(&slow, b"SQLite for").unwrap();
    let marker = root.join("marker.db");
    drop(app_db(&marker));
    eventually(Duration::from_secs(20), "marker.db replicating", || {
        replicating(&sock).contains(&marker.display().to_string())
    });
    assert!(
        !listed(&sock).contains(&slow.display().to_string()),
        "a half-written file was taken for a database"
    );
    std::fs::remove_file(&slow).unwrap();
    insert_rows(&app_db(&slow), 1, 10);
    eventually(
        Duration::from_secs(20),
        "slow.db replicating once it is a database",
        || replicating(&sock).contains(&slow.display().to_string()),
    );

    // A deleted database stops; the others go on.
    let gone = dbs[4].clone();
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", gone.display()));
    }
    eventually(
        Duration::from_secs(20),
        "the deleted database gone from list",
        || !listed(&sock).contains(&gone.display().to_string()),
    );
    // Nor does the process hold the deleted file open (its disk space would stay used).
    eventually(
        Duration::from_secs(20),
        "no descriptor on the deleted database",
        || !held_open(r.child.id(), &gone),
    );
    let names = listed(&sock);
    assert_eq!(names.len(), 50 - 1 + 3, "{names:#?}");
    for n in &names {
        assert!(
            n.ends_with(".db") && !n.contains("/.") && !n.ends_with("notes.sqlite"),
            "{n} should not replicate"
        );
    }

    // What the new database's replica holds is the database, page for page.
    insert_rows(&app, 10, 3000);
    let out = run(&[
        "sync",
        "-wait",
        "-socket",
        sock.to_str().unwrap(),
        fresh.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want = pages_of_live(&fresh);
    restore_and_compare(&cfg, &fresh, &w.path("fresh-restored.db"), &want, &[]);

    let log = r.log_text();
    assert!(
        log.contains("database deleted from a watched directory"),
        "{log}"
    );
    assert!(!log.contains("not SQLite"), "{log}");
    assert_eq!(r.stop(), 0);
}

/// A watched directory may start empty: the replicator waits for databases rather than
/// refusing to start.
#[test]
fn an_empty_watched_directory_is_not_an_error() {
    let w = Work::new();
    let root = w.path("data");
    std::fs::create_dir_all(&root).unwrap();
    let replica = w.path("replica");
    let cfg = w.config(&format!(
        "dbs:\n  - dir: {}\n    pattern: '*.db'\n    watch: true\n    replica:\n      path: {}\n",
        root.display(),
        replica.display()
    ));
    let r = Replicator::start(&w, &["-config", cfg.to_str().unwrap()]);
    let db = root.join("first.db");
    insert_rows(&app_db(&db), 5, 100);
    eventually(Duration::from_secs(20), "first.db's first LTX file", || {
        has_l0(&replica.join("first.db"))
    });
    assert_eq!(r.stop(), 0);
}
