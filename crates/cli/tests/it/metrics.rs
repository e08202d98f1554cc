//! Operator visibility: `addr`'s `/metrics`, `/healthz` and `/status` scraped while
//! `replicate` runs beside a writer, through an object-store outage (Garage killed and
//! restarted), the `status` command live and offline, and JSON logs. Each ends in a
//! restore equal to the source page for page.

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::garage::Garage;
use crate::harness::*;

/// A loopback port nobody listens on now.
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` over HTTP/1.0: (status code, body); `None` while nothing answers.
pub(crate) fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    let code = resp.split(' ').nth(1)?.parse().ok()?;
    let body = resp.split_once("\r\n\r\n")?.1.to_string();
    Some((code, body))
}

/// The value of the sample whose name and labels are `series` (`name{labels}`).
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// One scrape of a running replicator's `/metrics` and `/status`.
pub(crate) struct Scrape {
    pub(crate) metrics: String,
    pub(crate) status: serde_json::Value,
}

impl Scrape {
    pub(crate) fn take(port: u16) -> Option<Scrape> {
        let (c1, metrics) = http_get(port, "/metrics")?;
        let (c2, status) = http_get(port, "/status")?;
        assert_eq!((c1, c2), (200, 200), "{metrics}\n{status}");
        Some(Scrape {
            metrics,
            status: serde_json::from_str(&status).unwrap(),
        })
    }

    fn db(&self) -> &serde_json::Value {
        &self.status["databases"][0]
    }

    /// The value of one series of this scrape, spelled in full.
    pub(crate) fn sample(&self, series: &str) -> Option<f64> {
        sample(&self.metrics, series)
    }

    pub(crate) fn replica(&self) -> &serde_json::Value {
        &self.db()["replicas"][0]
    }

    /// `/status`'s local TXID (a hex string).
    pub(crate) fn local_txid(&self) -> u64 {
        hex(&self.db()["local_txid"])
    }

    /// `/status`'s replicated TXID; 0 while it is `null` (the replica's position not
    /// known yet: a wait for "at least N" must not fail on an early scrape).
    pub(crate) fn replicated_txid(&self) -> u64 {
        let v = &self.replica()["replicated_txid"];
        if v.is_null() {
            return 0;
        }
        hex(v)
    }

    /// When the server built the report this scrape got (Unix ms; it serves one report
    /// for up to a second).
    pub(crate) fn taken_unix_ms(&self) -> i64 {
        self.status["taken_unix_ms"].as_i64().unwrap_or(0)
    }

    pub(crate) fn lag(&self) -> u64 {
        self.replica()["lag_txids"].as_u64().unwrap()
    }

    /// A sample of this scrape, the series spelled with `$db` and `$replica` standing
    /// for those labels.
    pub(crate) fn m(&self, series: &str, db: &Path, replica: &str) -> f64 {
        let s = series
            .replace("$db", &format!("db=\"{}\"", db.display()))
            .replace("$replica", &format!("replica=\"{replica}\""));
        sample(&self.metrics, &s).unwrap_or_else(|| panic!("no {s} in:\n{}", self.metrics))
    }
}

fn hex(v: &serde_json::Value) -> u64 {
    u64::from_str_radix(v.as_str().unwrap_or_else(|| panic!("{v}")), 16).unwrap()
}

/// Waits for a scrape that satisfies `f`, returning it.
pub(crate) fn scrape_until(port: u16, what: &str, mut f: impl FnMut(&Scrape) -> bool) -> Scrape {
    let mut got = None;
    eventually(Duration::from_secs(120), what, || {
        match Scrape::take(port) {
            Some(s) if f(&s) => got = Some(s),
            _ => {}
        }
        got.is_some()
    });
    got.unwrap()
}

/// Waits until the replica is caught up and settled, and `f` holds, returning that
/// scrape. The writer's last commits may still be captured after a first caught-up
/// scrape (a new local TXID), so two reports in a row must show the same caught-up
/// position; the server serves one report for up to a second, and `taken_unix_ms` tells
/// them apart. A scrape reads /metrics, then /status: the settled one has both current.
pub(crate) fn scrape_settled(port: u16, what: &str, mut f: impl FnMut(&Scrape) -> bool) -> Scrape {
    let mut last = None;
    scrape_until(port, what, |s| {
        let now = (s.lag(), s.replicated_txid(), s.local_txid());
        let taken = s.status["taken_unix_ms"].as_i64();
        let settled = now.0 == 0
            && now.1 == now.2
            && last.is_some_and(|(n, t)| n == now && t != taken)
            && f(s);
        last = Some((now, taken));
        if !settled {
            // Spaces the scrapes of this wait.
            std::thread::sleep(Duration::from_millis(250));
        }
        settled
    })
}

/// A writer committing small transactions until stopped.
struct Writer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<u64>>,
}

impl Writer {
    fn start(db: &Path) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let (db, s) = (db.to_path_buf(), stop.clone());
        let thread = std::thread::spawn(move || {
            let c = app_db(&db);
            let mut n = 0;
            while !s.load(Ordering::Relaxed) {
                insert_rows(&c, 2, 300);
                n += 1;
                // Paces the writer.
                std::thread::sleep(Duration::from_millis(20));
            }
            n
        });
        Writer {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops and returns the number of commits made.
    fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

/// Litestream's duration histogram buckets (`le` labels), in seconds.
const LE: [&str; 10] = [
    "0.01", "0.05", "0.1", "0.5", "1", "5", "10", "30", "60", "+Inf",
];

/// `litestream_replica_operation_duration_seconds` for (`ty`, `op`) is a well-formed
/// histogram (every bucket, cumulative, `+Inf` = `_count`, a positive `_sum`) whose count
/// covers `litestream_replica_operation_total` and the errors (a DELETE request counts
/// once per batch, its operations once per file); returns (count, total, errors).
fn check_duration_histogram(s: &Scrape, ty: &str, op: &str) -> (f64, f64, f64) {
    const H: &str = "litestream_replica_operation_duration_seconds";
    let l = format!("replica_type=\"{ty}\",operation=\"{op}\"");
    let get = |series: String| {
        s.sample(&series)
            .unwrap_or_else(|| panic!("no {series} in:\n{}", s.metrics))
    };
    let mut prev = 0.0;
    for le in LE {
        let n = get(format!("{H}_bucket{{{l},le=\"{le}\"}}"));
        assert!(n >= prev, "{op}: buckets not cumulative at {le}");
        prev = n;
    }
    let count = get(format!("{H}_count{{{l}}}"));
    assert_eq!(prev, count, "{op}: +Inf bucket and count");
    assert!(get(format!("{H}_sum{{{l}}}")) > 0.0, "{op}: no time spent");
    let total = get(format!("litestream_replica_operation_total{{{l}}}"));
    let errors: f64 = s
        .metrics
        .lines()
        .filter(|line| {
            line.starts_with(&format!(
                "litestream_replica_operation_errors_total{{{l},code="
            ))
        })
        .map(|line| line.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert!(total >= 1.0 || errors >= 1.0, "{op}: nothing counted");
    if op == "DELETE" {
        // One request deletes a batch; `operation_total` counts files, as Litestream.
        assert!(
            count <= total + errors,
            "{op}: {count} timed requests > {total} files + {errors} errors"
        );
    } else {
        assert!(
            count >= total + errors,
            "{op}: {count} timed requests < {total} operations + {errors} errors"
        );
    }
    (count, total, errors)
}

fn status_json(cfg: &Path) -> serde_json::Value {
    let out = run_ok(&["status", "-config", cfg.to_str().unwrap(), "-json"]);
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn metrics_and_status_follow_replication_to_a_file_replica() {
    let w = Work::new();
    let db = w.path("app.db");
    let replica = w.path("replica");
    let app = app_db(&db);
    insert_rows(&app, 20, 100);
    let port = free_port();
    // L1 every second and a 1 s L0 retention, so L0 retention runs while we watch.
    let cfg = w.config(&format!(
        "addr: 127.0.0.1:{port}\nlevels:\n  - interval: 1s\nl0-retention: 1s\nl0-retention-check-interval: 1s\ndbs:\n  - path: {}\n    checkpoint-interval: 1s\n    replica:\n      type: file\n      path: {}\n",
        db.display(),
        replica.display()
    ));
    let r = Replicator::start(&w, &["-config", cfg.to_str().unwrap()]);
    let first = scrape_until(port, "a first capture", |s| s.local_txid() >= 1);
    assert_eq!(first.status["source"], "daemon");
    assert_eq!(http_get(port, "/healthz"), Some((200, "ok\n".into())));
    let (code, _) = http_get(port, "/nothing").unwrap();
    assert_eq!(code, 404);

    let writer = Writer::start(&db);
    // The local TXID moves and the replica follows it.
    let moving = scrape_until(port, "local TXID to increase", |s| {
        s.local_txid() >= first.local_txid() + 5
    });
    let t = moving.local_txid();
    // /metrics is read just before /status.
    let m = moving.m("litestream_txid{$db}", &db, "");
    assert!(
        m <= t as f64 && m >= first.local_txid() as f64,
        "{m} vs {t}"
    );
    scrape_until(port, "the replica to pass the earlier local TXID", |s| {
        s.replicated_txid() >= t
    });
    // L0 retention classifies the replica's L0 files as Litestream does, labelled with
    // the database's file name; with a writer going, some are old and covered by L1.
    let l0 = |s: &Scrape, status: &str| {
        s.sample(&format!(
            "litestream_l0_retention_files_total{{db=\"app.db\",status=\"{status}\"}}"
        ))
    };
    let ran = scrape_until(port, "an L0 retention run to find eligible files", |s| {
        l0(s, "eligible").is_some_and(|n| n >= 1.0)
    });
    assert!(l0(&ran, "not_compacted").is_some() && l0(&ran, "too_recent").is_some());
    // Live `status` reads the daemon.
    let live = status_json(&cfg);
    assert_eq!(live["source"], "daemon", "{live}");
    assert!(hex(&live["databases"][0]["local_txid"]) >= t, "{live}");
    writer.stop();

    // Quiet again: caught up, lag 0 everywhere, our checkpoint ran.
    let s = scrape_settled(port, "the replica to catch up with a checkpoint", |s| {
        !s.db()["last_checkpoint_unix_ms"].is_null()
            // /metrics is read before /status: a checkpoint may land between the two.
            && s.m("litestream_checkpoint_count{$db,mode=\"PASSIVE\"}", &db, "") >= 1.0
    });
    let final_txid = s.local_txid();
    assert_eq!(
        s.m("sqlite_replicate_replica_txid{$db,$replica}", &db, "file"),
        final_txid as f64
    );
    assert_eq!(
        s.m(
            "sqlite_replicate_replica_lag_txids{$db,$replica}",
            &db,
            "file"
        ),
        0.0
    );
    assert_eq!(
        s.m(
            "sqlite_replicate_replica_pending_bytes{$db,$replica}",
            &db,
            "file"
        ),
        0.0
    );
    assert_eq!(
        s.m(
            "sqlite_replicate_replica_lag_seconds{$db,$replica}",
            &db,
            "file"
        ),
        0.0
    );
    assert_eq!(
        s.m(
            "sqlite_replicate_replica_failing{$db,$replica}",
            &db,
            "file"
        ),
        0.0
    );
    assert!(
        s.m(
            "sqlite_replicate_replica_uploads_total{$db,$replica}",
            &db,
            "file"
        ) >= final_txid as f64
    );
    assert!(s.m("litestream_checkpoint_count{$db,mode=\"PASSIVE\"}", &db, "") >= 1.0);
    assert!(s.m("litestream_sync_count{$db}", &db, "") >= 1.0);
    assert!(s.m("litestream_db_size{$db}", &db, "") > 0.0);
    assert!(
        sample(
            &s.metrics,
            "litestream_replica_operation_total{replica_type=\"file\",operation=\"PUT\"}"
        )
        .unwrap()
            >= final_txid as f64,
        "{}",
        s.metrics
    );
    assert_eq!(s.m("litestream_disk_full{$db}", &db, ""), 0.0);
    assert!(
        s.m(
            "sqlite_replicate_replica_deletes_total{$db,$replica}",
            &db,
            "file"
        ) >= 1.0
    );
    // Every request to the replica is timed: a histogram with Litestream's buckets per
    // operation, counting at least the operations `operation_total` counts (failed
    // requests are timed too; none failed here).
    for op in ["PUT", "LIST", "DELETE"] {
        check_duration_histogram(&s, "file", op);
    }
    assert!(
        !s.metrics
            .contains("litestream_replica_operation_errors_total"),
        "no request failed:\n{}",
        s.metrics
    );
    let want = pages_of_live(&db);
    drop(app);
    assert_eq!(r.stop(), 0);

    // Offline `status` agrees: from the local state and a listing of the replica.
    let off = status_json(&cfg);
    assert_eq!(off["source"], "offline", "{off}");
    let d = &off["databases"][0];
    assert_eq!(hex(&d["local_txid"]), final_txid, "{off}");
    assert_eq!(
        hex(&d["replicas"][0]["replicated_txid"]),
        final_txid,
        "{off}"
    );
    assert_eq!(d["replicas"][0]["lag_txids"], 0, "{off}");
    assert!(d["wal_size_bytes"].is_u64(), "{off}");
    assert!(
        d["last_checkpoint_unix_ms"].is_null(),
        "not knowable offline: {off}"
    );
    let text = run_ok(&[
        "status",
        "-config",
        cfg.to_str().unwrap(),
        db.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.lines()
            .nth(1)
            .is_some_and(|l| l.contains(" ok ") && l.contains(&format!("{final_txid:016x}"))),
        "{text}"
    );
    restore_and_compare(&cfg, &db, &w.path("restored.db"), &want, &[]);
}

/// A file replica whose directory is replaced by a regular file: its PUTs fail, and each
/// failure is counted in `litestream_replica_operation_errors_total` under a bounded code
/// (never the error text) and timed like any request.
#[test]
fn failing_replica_requests_are_counted_by_code_and_timed() {
    let w = Work::new();
    let db = w.path("app.db");
    let replica = w.path("replica");
    let app = app_db(&db);
    insert_rows(&app, 20, 100);
    let port = free_port();
    let cfg = w.config(&format!(
        "addr: 127.0.0.1:{port}\ndbs:\n  - path: {}\n    replica:\n      type: file\n      path: {}\n",
        db.display(),
        replica.display()
    ));
    let r = Replicator::start(&w, &["-config", cfg.to_str().unwrap()]);
    let up = scrape_until(port, "a first upload", |s| s.replicated_txid() >= 1);
    let (_, _, before) = check_duration_histogram(&up, "file", "PUT");
    assert_eq!(before, 0.0, "no failure yet");

    // The replicator may still be writing into it (a snapshot, a compaction): a removal
    // that meets a file created meanwhile fails with "not empty", and is tried again.
    eventually(
        Duration::from_secs(10),
        "the replica directory removed",
        || std::fs::remove_dir_all(&replica).is_ok() || !replica.exists(),
    );
    std::fs::write(&replica, b"not a directory").unwrap();
    insert_rows(&app, 5, 100);
    let s = scrape_until(port, "failed PUTs to be counted", |s| {
        s.m("sqlite_replicate_replica_failing{$db,$replica}", &db, "file") == 1.0
            && s.metrics
                .contains("litestream_replica_operation_errors_total{replica_type=\"file\",operation=\"PUT\",code=\"")
    });
    let (count, total, errors) = check_duration_histogram(&s, "file", "PUT");
    assert!(errors >= 1.0 && count > total, "{}", s.metrics);
    for line in s
        .metrics
        .lines()
        .filter(|l| l.starts_with("litestream_replica_operation_errors_total"))
    {
        let code = line
            .split("code=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        assert!(
            ["AccessDenied", "NoSpace", "Transient", "Permanent"].contains(&code),
            "{line}"
        );
    }
    assert!(
        !s.metrics.contains(&replica.display().to_string()),
        "no error text or path in a label:\n{}",
        s.metrics
    );
    drop(r);
}

#[test]
fn object_store_outage_shows_in_metrics_and_healthz_then_recovers() {
    let mut g = Garage::start();
    let w = Work::new();
    let db = w.path("app.db");
    let app = app_db(&db);
    insert_rows(&app, 20, 100);
    let port = free_port();
    let cfg = w.config(&format!(
        "addr: 127.0.0.1:{port}\nhealth-failing-after: 2s\nlogging:\n  type: json\ndbs:\n  - path: {}\n    replica:\n      name: garage\n{}",
        db.display(),
        g.replica_yaml("outage/app.db")
    ));
    let r = Replicator::start(&w, &["-config", cfg.to_str().unwrap()]);
    let writer = Writer::start(&db);
    let up = scrape_until(port, "the S3 replica to receive files", |s| {
        s.replicated_txid() >= 3
    });
    assert_eq!(http_get(port, "/healthz").unwrap().0, 200);
    assert_eq!(
        up.m(
            "sqlite_replicate_replica_failing{$db,$replica}",
            &db,
            "garage"
        ),
        0.0
    );

    // Outage: uploads fail while the writer goes on.
    g.stop();
    let down = scrape_until(port, "uploads to fail", |s| {
        s.m(
            "sqlite_replicate_replica_failing{$db,$replica}",
            &db,
            "garage",
        ) == 1.0
            && s.m(
                "sqlite_replicate_replica_upload_errors_total{$db,$replica}",
                &db,
                "garage",
            ) >= 1.0
    });
    assert!(!down.replica()["last_error"].is_null(), "{}", down.status);
    let (_, _, errors) = check_duration_histogram(&down, "s3", "PUT");
    assert!(errors >= 1.0, "{}", down.metrics);
    let lag1 = down.lag();
    let grown = scrape_until(port, "the lag to grow", |s| {
        s.lag() > lag1
            && s.m(
                "sqlite_replicate_replica_pending_bytes{$db,$replica}",
                &db,
                "garage",
            ) > 0.0
            && s.m(
                "sqlite_replicate_replica_lag_seconds{$db,$replica}",
                &db,
                "garage",
            ) > 0.0
    });
    assert!(
        grown.m(
            "sqlite_replicate_replica_failing_seconds{$db,$replica}",
            &db,
            "garage"
        ) > 0.0
    );
    let mut why = String::new();
    eventually(
        Duration::from_secs(120),
        "/healthz to turn 503",
        || match http_get(port, "/healthz") {
            Some((503, body)) => {
                why = body;
                true
            }
            _ => false,
        },
    );
    assert!(why.contains("replica garage: uploads failing for"), "{why}");

    // Recovery: the same server back on the same data; the replica catches up.
    g.restart();
    let commits = writer.stop();
    assert!(commits > 0);
    eventually(Duration::from_secs(120), "/healthz back to 200", || {
        http_get(port, "/healthz").is_some_and(|(c, _)| c == 200)
    });
    let s = scrape_settled(port, "the replica to catch up and stay caught up", |_| true);
    assert_eq!((s.lag(), s.replicated_txid()), (0, s.local_txid()));
    assert_eq!(
        s.m(
            "sqlite_replicate_replica_failing{$db,$replica}",
            &db,
            "garage"
        ),
        0.0
    );
    assert_eq!(
        s.m(
            "sqlite_replicate_replica_pending_bytes{$db,$replica}",
            &db,
            "garage"
        ),
        0.0
    );
    assert!(s.replica()["last_error"].is_null(), "{}", s.status);
    let want = pages_of_live(&db);
    drop(app);
    let log = r.log.clone();
    assert_eq!(r.stop(), 0);
    restore_and_compare(&cfg, &db, &w.path("restored.db"), &want, &[]);

    // JSON logs: one event per line; events about the replica name it and the database;
    // the secret key never appears.
    let text = std::fs::read_to_string(log).unwrap();
    assert!(!text.contains(&g.secret), "secret in the logs");
    let mut failures = 0;
    for line in text.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        if v["message"] == "replica write failed" {
            failures += 1;
            assert_eq!(v["db"], db.display().to_string(), "{line}");
            assert_eq!(v["replica"], "garage", "{line}");
        }
        if v["message"] == "replicating" || v["message"] == "replicas in sync" {
            assert_eq!(v["db"], db.display().to_string(), "{line}");
        }
    }
    assert!(failures >= 1, "no failed-write event in:\n{text}");
}

/// `drill-interval` runs restore drills inside the daemon: a good replica's drill succeeds
/// and says so in `/metrics` and `/status`; after a replica file is damaged the next drill
/// fails, and the last success time is kept.
#[test]
fn scheduled_restore_drills_report_success_then_catch_a_damaged_file() {
    let w = Work::new();
    let db = w.path("app.db");
    let replica = w.path("replica");
    let app = app_db(&db);
    insert_rows(&app, 20, 100);
    let port = free_port();
    let cfg = w.config(&format!(
        "addr: 127.0.0.1:{port}\ndrill-interval: 300ms\ndbs:\n  - path: {}\n    replica:\n      type: file\n      path: {}\n",
        db.display(),
        replica.display()
    ));
    let r = Replicator::start(&w, &["-config", cfg.to_str().unwrap()]);
    for _ in 0..5 {
        insert_rows(&app, 3, 200);
        // Paces the writer: a few capture cycles.
        std::thread::sleep(Duration::from_millis(30));
    }
    let ok = scrape_until(port, "a successful drill of the caught-up replica", |s| {
        // A scrape reads /metrics before /status: wait until both show the drill.
        s.lag() == 0
            && s.replica()["drill"]["ok"] == true
            && s.replica()["drill"]["last_run_unix_ms"]
                .as_i64()
                .unwrap_or(0)
                > 0
            && s.metrics.contains("sqlite_replicate_drill_ok{")
    });
    assert_eq!(
        ok.m("sqlite_replicate_drill_ok{$db,$replica}", &db, "file"),
        1.0
    );
    let success = ok.m(
        "sqlite_replicate_drill_last_success_timestamp_seconds{$db,$replica}",
        &db,
        "file",
    );
    assert!(success > 1.7e9, "{success}");
    // The schedule, which the drill-staleness alert compares against.
    assert_eq!(
        ok.m(
            "sqlite_replicate_drill_interval_seconds{$db,$replica}",
            &db,
            "file"
        ),
        0.3
    );
    let scheduled = ok.m(
        "sqlite_replicate_drill_scheduled_timestamp_seconds{$db,$replica}",
        &db,
        "file",
    );
    assert!(
        scheduled > 1.7e9 && scheduled <= success,
        "{scheduled} {success}"
    );
    assert_eq!(ok.replica()["drill_schedule"]["interval_ms"], 300);

    // Damage a middle L0 file's page data: the next drill must fail and say which file.
    let l0 = replica.join("ltx/0");
    let mut files: Vec<_> = std::fs::read_dir(&l0)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 3, "{files:?}");
    let victim = &files[files.len() / 2];
    let mut bytes = std::fs::read(victim).unwrap();
    let at = ltx::HEADER_SIZE + 20;
    bytes[at] ^= 0xff;
    std::fs::write(victim, &bytes).unwrap();
    let failed = scrape_until(port, "a failed drill", |s| {
        s.replica()["drill"]["ok"] == false
            && s.metrics
                .lines()
                .any(|l| l.starts_with("sqlite_replicate_drill_ok{") && l.ends_with(" 0"))
    });
    let err = failed.replica()["drill"]["error"]
        .as_str()
        .unwrap()
        .to_string();
    let name = victim.file_name().unwrap().to_str().unwrap();
    assert!(err.contains(name), "{err}");
    assert_eq!(
        failed.m("sqlite_replicate_drill_ok{$db,$replica}", &db, "file"),
        0.0
    );
    assert_eq!(
        failed.m(
            "sqlite_replicate_drill_last_success_timestamp_seconds{$db,$replica}",
            &db,
            "file"
        ),
        success
    );
    assert!(
        r.log_text().contains("restore drill failed"),
        "{}",
        r.log_text()
    );
    assert_eq!(r.stop(), 0);
}
