//! `heartbeat-url` (parity issue 18): the replicator GETs the URL once every database has
//! synced, and never while a replica is failing; the URL's token never reaches the log
//! or `/status`. The monitor is a loopback HTTP server written here.
//!
//! Timing: as in Litestream, the decision is taken every 15 s, the first time 15 s after
//! start, and a first ping is due at once (no earlier attempt). So each test needs one
//! check, about 15 s, whatever `heartbeat-interval` (1m, the least Litestream allows).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::harness::*;
use crate::metrics::{free_port, http_get};

/// One request the monitor received: its request line and when it came.
#[derive(Clone, Debug)]
struct Seen {
    line: String,
    at: Instant,
}

/// A monitor on loopback answering `200 OK` to anything, recording each request.
pub(crate) struct Monitor {
    pub(crate) port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Monitor {
    pub(crate) fn start() -> Monitor {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(mut c) = conn else { continue };
                let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match c.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&buf);
                let line = text.lines().next().unwrap_or("").to_string();
                s.lock().unwrap().push(Seen {
                    line,
                    at: Instant::now(),
                });
                let _ = c.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\nconnection: close\r\n\r\nOK\n",
                );
            }
        });
        Monitor { port, seen }
    }

    /// How many requests came so far.
    pub(crate) fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn config(w: &Work, monitor: u16, addr: u16) -> std::path::PathBuf {
    let (db, replica) = (w.path("app.db"), w.path("replica"));
    w.config(&format!(
        "addr: 127.0.0.1:{addr}\nheartbeat-url: http://127.0.0.1:{monitor}/ping/secret-token\nheartbeat-interval: 1m\ndbs:\n  - path: {}\n    replica:\n      type: file\n      path: {}\n",
        db.display(),
        replica.display()
    ))
}

/// Every database synced: one GET of the URL at the first check (15 s after start), the
/// token only in the request, `/status` showing the success under the host alone.
#[test]
fn pings_once_every_database_has_synced() {
    let w = Work::new();
    let monitor = Monitor::start();
    let app = app_db(&w.path("app.db"));
    insert_rows(&app, 20, 100);
    let addr = free_port();
    let cfg = config(&w, monitor.port, addr);
    let started = Instant::now();
    let r = Replicator::start(
        &w,
        &["-config", cfg.to_str().unwrap(), "-log-level", "debug"],
    );

    eventually(Duration::from_secs(40), "a heartbeat ping", || {
        !monitor.seen().is_empty()
    });
    let seen = monitor.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].line, "GET /ping/secret-token HTTP/1.1");
    let after = seen[0].at - started;
    assert!(
        after >= Duration::from_secs(14),
        "pinged {after:?} after start: before the first check"
    );
    assert!(
        replica_max_txid(&w.path("replica")) >= 1,
        "pinged before any upload"
    );

    // `/status` shows the success, naming the host only.
    let mut status = String::new();
    eventually(
        Duration::from_secs(10),
        "/status with the heartbeat",
        || {
            status = http_get(addr, "/status")
                .map(|(_, b)| b)
                .unwrap_or_default();
            status.contains("\"last_success_unix_ms\": 1")
        },
    );
    let v: serde_json::Value = serde_json::from_str(&status).unwrap();
    let hb = &v["heartbeat"];
    assert_eq!(hb["target"], format!("http://127.0.0.1:{}", monitor.port));
    assert_eq!(hb["interval_seconds"], 60);
    assert_eq!(hb["last_error"], serde_json::Value::Null);
    assert_eq!(hb["last_attempt_unix_ms"], hb["last_success_unix_ms"]);
    assert!(!status.contains("secret-token"), "{status}");
    // `status` still reads the daemon's report back.
    let out = run_ok(&["status", "-config", cfg.to_str().unwrap()]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("secret-token"));

    let log_path = r.log.clone();
    assert_eq!(r.stop(), 0);
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("heartbeat ping sent"), "{log}");
    assert!(
        !log.contains("secret-token"),
        "the token reached the log:\n{log}"
    );
}

/// A replica whose uploads fail (its directory replaced by a regular file): the check
/// that would otherwise send the first ping withholds it.
#[test]
fn no_ping_while_a_replica_is_failing() {
    let w = Work::new();
    let monitor = Monitor::start();
    let app = app_db(&w.path("app.db"));
    insert_rows(&app, 20, 100);
    let cfg = config(&w, monitor.port, free_port());
    let started = Instant::now();
    let r = Replicator::start(
        &w,
        &["-config", cfg.to_str().unwrap(), "-log-level", "debug"],
    );
    let replica = w.path("replica");
    eventually(Duration::from_secs(10), "a first upload", || {
        replica_max_txid(&replica) >= 1
    });
    // The replicator may still be writing into it (a snapshot, a compaction): a removal
    // that meets a file created meanwhile fails with "not empty", and is tried again.
    eventually(
        Duration::from_secs(10),
        "the replica directory removed",
        || std::fs::remove_dir_all(&replica).is_ok() || !replica.exists(),
    );
    std::fs::write(&replica, b"not a directory").unwrap();
    insert_rows(&app, 5, 100);
    eventually(Duration::from_secs(10), "a failed upload", || {
        r.log_text().contains("replica write failed")
    });
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "the replica failed too late for the first check to see it"
    );

    eventually(Duration::from_secs(40), "the first heartbeat check", || {
        r.log_text().contains("heartbeat withheld")
    });
    assert!(
        monitor.seen().is_empty(),
        "pinged while failing: {:?}",
        monitor.seen()
    );
    let log = r.log_text();
    assert!(!log.contains("heartbeat ping sent"), "{log}");
    assert!(
        !log.contains("secret-token"),
        "the token reached the log:\n{log}"
    );
}
