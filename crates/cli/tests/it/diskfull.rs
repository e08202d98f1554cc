//! Disk full, on real small tmpfs mounts (the tests run as root, as CI does): the local meta
//! directory full, then the file replica's disk full. Each time the replicator says so
//! clearly, leaves no half-written file behind, keeps running, and once space returns
//! (the mount grows) catches up; the restore equals the source page for page. Metrics say
//! so too: `litestream_disk_full` is 1 while the local disk is full and 0 once space
//! returns; a full replica disk counts PUT errors with code `NoSpace` instead.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::harness::*;
use crate::metrics::{free_port, scrape_until};

/// A tmpfs of a given size mounted on a fresh directory; unmounted on drop.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(dir: PathBuf, size: &str) -> Tmpfs {
        std::fs::create_dir_all(&dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .output()
            .expect("mount(8)");
        assert!(
            out.status.success(),
            "mounting a tmpfs failed (these tests need root, as in CI; run them with sudo): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { dir }
    }
    fn grow(&self, size: &str) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

fn tmp_files(dir: &Path) -> Vec<String> {
    let mut v = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                v.extend(tmp_files(&p));
            } else if p.to_string_lossy().ends_with(".tmp") {
                v.push(p.display().to_string());
            }
        }
    }
    v
}

/// A config with `/metrics` on `port` and one file replica at `replica`.
fn config(w: &Work, port: u16, db: &Path, replica: &Path, extra_db: &str) -> PathBuf {
    w.config(&format!(
        "addr: 127.0.0.1:{port}\ndbs:\n  - path: {}\n{extra_db}    replicas:\n      - type: file\n        path: {}\n",
        db.display(),
        replica.display()
    ))
}

/// Which disk fills up.
#[derive(PartialEq)]
enum Full {
    Local,
    Replica,
}

/// Writes a transaction bigger than the full disk, checks the replicator reports `what`
/// and keeps no temp file under `full_dir`, and what `/metrics` on `port` shows; grows the
/// disk, and checks the catch-up.
fn fill_then_grow(
    w: &Work,
    db: &Path,
    cfg: &Path,
    port: u16,
    fs: &Tmpfs,
    full_dir: &Path,
    full: Full,
) {
    let app = app_db(db);
    insert_rows(&app, 20, 500);
    let mut r = Replicator::start_ready(w, &["-config", cfg.to_str().unwrap()], 1);
    // About 6 MiB in one transaction: more than the 2 MiB disk.
    let tx = app.unchecked_transaction().unwrap();
    insert_rows(&tx, 1500, 4000);
    tx.commit().unwrap();
    eventually(
        Duration::from_secs(30),
        "a no-space error in the log",
        || {
            r.log_text().contains("No space left on device")
                || r.log_text().contains("no space left")
        },
    );
    let put_no_space = "litestream_replica_operation_errors_total{replica_type=\"file\",operation=\"PUT\",code=\"NoSpace\"}";
    if full == Full::Local {
        scrape_until(port, "litestream_disk_full to turn 1", |s| {
            s.m("litestream_disk_full{$db}", db, "") == 1.0
        });
    } else {
        let s = scrape_until(port, "PUT errors with code NoSpace", |s| {
            s.sample(put_no_space).is_some_and(|n| n >= 1.0)
        });
        assert_eq!(
            s.m("litestream_disk_full{$db}", db, ""),
            0.0,
            "the local disk is not full"
        );
    }
    let full_name = full_dir.display().to_string();
    r.wait_for_log(
        "an error naming where the disk is full",
        Duration::from_secs(60),
        |log| log.contains(&full_name) || log.contains("file://"),
    );
    assert!(
        tmp_files(full_dir).is_empty(),
        "half-written files left on the full disk: {:?}",
        tmp_files(full_dir)
    );
    // Space returns: replication resumes by itself.
    fs.grow("64m");
    insert_rows(&app, 5, 100);
    let want = pages_of_live(db);
    scrape_until(port, "litestream_disk_full back to 0", |s| {
        s.m("litestream_disk_full{$db}", db, "") == 0.0 && s.local_txid() >= 1
    });
    // Past the replica's 5 s backoff, the replica catches up.
    wait_replica_has(w, cfg, db, &want, &[], Duration::from_secs(60));
    let log = r.log.clone();
    assert_eq!(
        r.stop(),
        0,
        "caught up after space returned; log:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
    restore_and_compare(cfg, db, &w.path("restored.db"), &want, &[]);
}

#[test]
fn local_disk_full_then_space_returns() {
    let w = Work::new();
    let db = w.path("app.db");
    let meta = Tmpfs::mount(w.path("meta"), "2m");
    let replica = w.path("replica");
    let port = free_port();
    let cfg = config(
        &w,
        port,
        &db,
        &replica,
        &format!("    meta-path: {}\n", meta.dir.display()),
    );
    fill_then_grow(&w, &db, &cfg, port, &meta, &meta.dir, Full::Local);
}

#[test]
fn replica_disk_full_then_space_returns() {
    let w = Work::new();
    let db = w.path("app.db");
    let fs = Tmpfs::mount(w.path("replica-disk"), "2m");
    let replica = fs.dir.join("replica");
    let port = free_port();
    let cfg = config(&w, port, &db, &replica, "");
    fill_then_grow(&w, &db, &cfg, port, &fs, &fs.dir, Full::Replica);
}
