//! The Litestream keys that were refused until acted on (parity issue 18), and replica
//! durations from the environment: each against the real binary, each observed through
//! what it changes (where logs go, how files are cut and paced, the WAL file's size, the
//! final sync's retries, the requests an S3 server receives), ending in a restore
//! compared page for page where data moved.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::garage::Garage;
use crate::harness::*;

/// `logging.stderr: false` sends `replicate`'s log lines to stdout (Litestream's default
/// output); `logging.source: true` adds the source file and line.
#[test]
fn logging_stderr_false_and_source_true() {
    let w = Work::new();
    let db = w.path("app.db");
    let c = app_db(&db);
    insert_rows(&c, 5, 100);
    let cfg = w.config(&format!(
        "logging:\n  stderr: false\n  source: true\ndbs:\n  - path: {}\n    replica:\n      path: {}\n",
        db.display(),
        w.path("replica").display()
    ));
    let (out, err) = (w.path("stdout.log"), w.path("stderr.log"));
    let mut child = Command::new(bin())
        .args(["replicate", "-config", cfg.to_str().unwrap()])
        .stdout(Stdio::from(std::fs::File::create(&out).unwrap()))
        .stderr(Stdio::from(std::fs::File::create(&err).unwrap()))
        .spawn()
        .unwrap();
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    eventually(
        Duration::from_secs(20),
        "the replica position on stdout",
        || read(&out).contains("replica position"),
    );
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let st = wait_timeout(&mut child, Duration::from_secs(30)).expect("exit");
    assert!(st.success(), "{}", read(&out));
    let (out, err) = (read(&out), read(&err));
    assert!(
        !err.contains("replica position"),
        "log lines on stderr:\n{err}"
    );
    let line = out
        .lines()
        .find(|l| l.contains("replica position"))
        .unwrap();
    assert!(
        line.contains("upload.rs:"),
        "no source location in {line:?}"
    );
}

/// The same config without the keys: the log is on stderr, without source locations.
#[test]
fn logging_defaults_to_stderr_without_source() {
    let w = Work::new();
    let db = w.path("app.db");
    let c = app_db(&db);
    insert_rows(&c, 5, 100);
    let cfg = w.file_config(&db, &w.path("replica"), "");
    let out = Command::new(bin())
        .args(["replicate", "-once", "-config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(e.contains("replica position") && !o.contains("replica position"));
    assert!(!e.contains("upload.rs:"), "{e}");
}

/// Writes `n` commits while no replicator runs, holding the connection open so SQLite
/// keeps them in the WAL (a last close would checkpoint them away).
fn backlog(c: &rusqlite::Connection, n: usize) {
    insert_rows(c, n, 3000);
}

/// `max-sync-wal-bytes`: a WAL holding many commits is captured as several L0 files, each
/// cut at the first commit past the limit (with 1 byte: one file per commit), instead of
/// one file. The restore equals the source.
#[test]
fn max_sync_wal_bytes_cuts_a_backlog_into_files() {
    let w = Work::new();
    let db = w.path("app.db");
    let replica = w.path("replica");
    let c = app_db(&db);
    insert_rows(&c, 5, 100);
    let cfg = w.file_config(&db, &replica, "    max-sync-wal-bytes: 1\n");
    run_ok(&["replicate", "-once", "-config", cfg.to_str().unwrap()]);
    let before = replica_l0_txids(&replica).len();
    backlog(&c, 12);
    run_ok(&["replicate", "-once", "-config", cfg.to_str().unwrap()]);
    let after = replica_l0_txids(&replica).len();
    assert_eq!(
        after - before,
        12,
        "one L0 file per commit of the backlog (before {before}, after {after})"
    );
    let want = pages_of_live(&db);
    restore_and_compare(&cfg, &db, &w.path("restored.db"), &want, &[]);
}

/// `max-sync-ltx-files`: a backlog is uploaded in bursts of at most that many files, a
/// `sync-interval` apart (the change times of the replica's files show the bursts).
#[test]
fn max_sync_ltx_files_uploads_a_backlog_in_bursts() {
    let w = Work::new();
    let db = w.path("app.db");
    let replica = w.path("replica");
    let c = app_db(&db);
    insert_rows(&c, 5, 100);
    let cfg = w.config(&format!(
        "dbs:\n  - path: {}\n    max-sync-wal-bytes: 1\n    replica:\n      path: {}\n      sync-interval: 600ms\n      max-sync-ltx-files: 4\n",
        db.display(),
        replica.display()
    ));
    run_ok(&["replicate", "-once", "-config", cfg.to_str().unwrap()]);
    let before = replica_l0_txids(&replica);
    backlog(&c, 16);
    run_ok(&["replicate", "-once", "-config", cfg.to_str().unwrap()]);
    let new: Vec<u64> = replica_l0_txids(&replica)
        .into_iter()
        .filter(|t| !before.contains(t))
        .collect();
    assert_eq!(new.len(), 16, "{new:?}");
    // Change times in TXID order; a gap of 300 ms or more separates two bursts (uploads
    // within a burst follow each other at once; a loaded machine only adds gaps).
    let ctime_ns = |t: u64| {
        let m = std::fs::metadata(replica.join(format!("ltx/0/{t:016x}-{t:016x}.ltx"))).unwrap();
        m.ctime() as i128 * 1_000_000_000 + m.ctime_nsec() as i128
    };
    let times: Vec<i128> = new.iter().map(|&t| ctime_ns(t)).collect();
    let mut runs = vec![1];
    for pair in times.windows(2) {
        if pair[1] - pair[0] >= 300_000_000 {
            runs.push(1);
        } else {
            *runs.last_mut().unwrap() += 1;
        }
    }
    assert!(
        runs.iter().all(|&n| n <= 4) && runs.len() >= 4,
        "bursts of uploads: {runs:?}"
    );
    let want = pages_of_live(&db);
    restore_and_compare(&cfg, &db, &w.path("restored.db"), &want, &[]);
}

/// `truncate-page-n`: once the WAL file holds that many pages, the replicator's emergency
/// TRUNCATE checkpoint shrinks it to zero bytes (our PASSIVE checkpoints never shrink
/// it), then captures a full image; later commits replicate on, and the restore equals
/// the source.
#[test]
fn truncate_page_n_shrinks_a_grown_wal() {
    let w = Work::new();
    let db = w.path("app.db");
    let replica = w.path("replica");
    let c = app_db(&db);
    insert_rows(&c, 5, 100);
    let cfg = w.file_config(&db, &replica, "    truncate-page-n: 64\n");
    let r = Replicator::start(&w, &["-config", cfg.to_str().unwrap()]);
    eventually(Duration::from_secs(20), "the first upload", || {
        replica_max_txid(&replica) > 0
    });
    // One transaction of about 100 pages: the WAL file passes 64 pages.
    c.execute_batch("BEGIN").unwrap();
    insert_rows(&c, 100, 4000);
    c.execute_batch("COMMIT").unwrap();
    let wal = w.path("app.db-wal");
    let wal_len = || std::fs::metadata(&wal).map_or(0, |m| m.len());
    eventually(
        Duration::from_secs(20),
        "the WAL truncated to 0 bytes, and the log saying so",
        || wal_len() == 0 && r.log_text().contains("emergency TRUNCATE checkpoint done"),
    );
    insert_rows(&c, 10, 500);
    let want = pages_of_live(&db);
    assert_eq!(r.stop(), 0);
    restore_and_compare(&cfg, &db, &w.path("restored.db"), &want, &[]);
}

/// Without the key, a WAL of 100 pages stays that size on disk (the default threshold is
/// 121359 pages): the shrink above is the key's doing.
#[test]
fn without_truncate_page_n_the_wal_file_keeps_its_size() {
    let w = Work::new();
    let db = w.path("app.db");
    let replica = w.path("replica");
    let c = app_db(&db);
    insert_rows(&c, 5, 100);
    let cfg = w.file_config(&db, &replica, "");
    c.execute_batch("BEGIN").unwrap();
    insert_rows(&c, 100, 4000);
    c.execute_batch("COMMIT").unwrap();
    run_ok(&["replicate", "-once", "-config", cfg.to_str().unwrap()]);
    let len = std::fs::metadata(w.path("app.db-wal")).unwrap().len();
    assert!(len > 64 * 4096, "WAL is {len} bytes");
}

/// `shutdown-sync-interval`: while the final sync waits for a failing replica, it retries
/// at that interval (not at the growing backoff of normal operation).
#[test]
fn shutdown_sync_interval_paces_final_sync_retries() {
    let w = Work::new();
    let db = w.path("app.db");
    let replica = w.path("replica");
    let c = app_db(&db);
    insert_rows(&c, 5, 100);
    let cfg = w.config(&format!(
        "shutdown-sync-timeout: 4s\nshutdown-sync-interval: 100ms\ndbs:\n  - path: {}\n    replica:\n      path: {}\n",
        db.display(),
        replica.display()
    ));
    let r = Replicator::start(&w, &["-config", cfg.to_str().unwrap()]);
    eventually(Duration::from_secs(20), "the first upload", || {
        replica_max_txid(&replica) > 0
    });
    // A directory (not empty) where the next L0 file goes: its upload fails every time.
    let next = replica_max_txid(&replica) + 1;
    let blocker = replica.join(format!("ltx/0/{next:016x}-{next:016x}.ltx"));
    std::fs::create_dir_all(&blocker).unwrap();
    std::fs::write(blocker.join("x"), b"x").unwrap();
    insert_rows(&c, 1, 100);
    let failures = |log: &str| log.matches("replica write failed").count();
    eventually(Duration::from_secs(20), "a failed upload", || {
        failures(&r.log_text()) > 0
    });
    let log = r.log.clone();
    let code = r.stop();
    assert_ne!(code, 0, "the replica cannot be in sync");
    let text = std::fs::read_to_string(&log).unwrap();
    let after_stop = text
        .split_once("replicas not in sync")
        .map(|(before, _)| before)
        .unwrap_or(&text);
    // 4 s at 100 ms is about 40 attempts; the normal backoff (100 ms doubling) makes 5.
    let n = failures(after_stop);
    assert!(n >= 15, "{n} failed uploads during the final sync:\n{text}");
}

/// A TCP proxy in front of a server that keeps every byte the client sent, to see the
/// requests' headers.
struct Recorder {
    port: u16,
    sent: Arc<Mutex<Vec<u8>>>,
}

impl Recorder {
    fn start(upstream: u16) -> Recorder {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let sent = Arc::new(Mutex::new(Vec::new()));
        let keep = sent.clone();
        std::thread::spawn(move || {
            for client in l.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let keep = keep.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16384];
                    let mut client = client;
                    let mut server = server;
                    while let Ok(n) = client.read(&mut buf) {
                        if n == 0 || server.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        keep.lock().unwrap().extend_from_slice(&buf[..n]);
                    }
                    let _ = server.shutdown(std::net::Shutdown::Write);
                });
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut s2, &mut c2);
                    let _ = c2.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        Recorder { port, sent }
    }

    /// The request lines and headers sent so far, lowercased (bodies included: only
    /// searched, never parsed).
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.sent.lock().unwrap()).to_ascii_lowercase()
    }
}

/// Replicates to Garage through `rec` with quick compaction and L0 retention, until
/// some L0 files were deleted; returns what was sent.
fn replicate_until_deletes(g: &Garage, rec: &Recorder, extra: &str, prefix: &str) -> String {
    let w = Work::new();
    let db = w.path("app.db");
    let c = app_db(&db);
    insert_rows(&c, 5, 100);
    let replica = g
        .replica_yaml(prefix)
        .replace(&g.endpoint(), &format!("http://127.0.0.1:{}", rec.port));
    let cfg = w.config(&format!(
        "levels:\n  - interval: 1s\nl0-retention: 1s\nl0-retention-check-interval: 1s\ndbs:\n  - path: {}\n    replica:\n{replica}{extra}",
        db.display()
    ));
    let r = Replicator::start(&w, &["-config", cfg.to_str().unwrap()]);
    let deleted = |t: &str| t.contains("delete /") || t.contains("?delete");
    eventually(Duration::from_secs(60), "a delete request", || {
        insert_rows(&c, 1, 100);
        std::thread::sleep(Duration::from_millis(100));
        deleted(&rec.text())
    });
    let want = pages_of_live(&db);
    assert_eq!(r.stop(), 0);
    restore_and_compare(&cfg, &db, &w.path("restored.db"), &want, &[]);
    rec.text()
}

/// `require-content-md5`: by default (true, Litestream's default) deletes go as
/// DeleteObjects with `Content-MD5`; with false no request carries `Content-MD5` (deletes
/// go one object per DELETE request).
#[test]
fn require_content_md5_on_garage() {
    let g = Garage::start();
    let rec = Recorder::start(g.endpoint().rsplit(':').next().unwrap().parse().unwrap());
    let sent = replicate_until_deletes(&g, &rec, "      require-content-md5: true\n", "md5-on");
    assert!(
        sent.contains("?delete") && sent.contains("content-md5:"),
        "no DeleteObjects with Content-MD5"
    );

    let rec = Recorder::start(g.endpoint().rsplit(':').next().unwrap().parse().unwrap());
    let sent = replicate_until_deletes(&g, &rec, "      require-content-md5: false\n", "md5-off");
    let md5: Vec<&str> = sent
        .split("\r\n\r\n")
        .filter(|h| h.contains("content-md5:"))
        .map(|h| &h[h.len().saturating_sub(700)..])
        .collect();
    assert!(md5.is_empty(), "requests with Content-MD5: {md5:?}");
    assert!(
        !sent.contains("?delete"),
        "a DeleteObjects request was sent"
    );
    assert!(sent.contains("delete /"), "no DELETE request");
}

/// Replica durations from the environment: a command-line replica paced by
/// `SQLITE_REPLICATE_SYNC_INTERVAL` (few files for steady writes); a bad value fails
/// naming the variable, before anything starts.
#[test]
fn sync_interval_from_the_environment() {
    let w = Work::new();
    let db = w.path("app.db");
    let replica = w.path("replica");
    let c = app_db(&db);
    insert_rows(&c, 5, 100);
    let url = format!("file://{}", replica.display());

    let bad = Command::new(bin())
        .args(["replicate", "-once", db.to_str().unwrap(), &url])
        .env("SQLITE_REPLICATE_SYNC_INTERVAL", "fast")
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success());
    assert!(
        e.contains("$SQLITE_REPLICATE_SYNC_INTERVAL: \"fast\" is not a duration"),
        "{e}"
    );
    assert!(!replica.exists(), "nothing may start on a bad value");

    let log = w.path("env.log");
    let f = std::fs::File::create(&log).unwrap();
    let mut child = Command::new(bin())
        .args(["replicate", db.to_str().unwrap(), &url])
        .env("SQLITE_REPLICATE_SYNC_INTERVAL", "1500ms")
        .stdout(Stdio::from(f.try_clone().unwrap()))
        .stderr(Stdio::from(f))
        .spawn()
        .unwrap();
    eventually(Duration::from_secs(20), "the first upload", || {
        replica_max_txid(&replica) > 0
    });
    let first = replica_l0_txids(&replica).len();
    // A commit every 50 ms for 3 s: at the default pace (20 ms) about 60 files; at 1.5 s
    // about 2.
    for _ in 0..60 {
        insert_rows(&c, 1, 100);
        std::thread::sleep(Duration::from_millis(50));
    }
    let want = pages_of_live(&db);
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(wait_timeout(&mut child, Duration::from_secs(30))
        .expect("exit")
        .success());
    let files = replica_l0_txids(&replica).len() - first;
    assert!(
        files <= 5,
        "{files} files for 3 s of writes at a 1.5 s pace"
    );
    let out = w.path("restored.db");
    run_ok(&["restore", "-o", out.to_str().unwrap(), &url]);
    assert_same_pages(&want, &pages_of_file(&out), "restore");
}
