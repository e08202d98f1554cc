//! The control socket (`socket:`) and the commands that use it: `info`, `list`, `sync
//! [-wait]`, `stop`/`start`, `register`/`unregister`.
//!
//! The promise under test: `sync -wait` returns only once every replica durably holds
//! the database's TXID as of the request; a replica that cannot get there makes it time
//! out naming that replica.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::harness::*;

struct Daemon {
    r: Replicator,
    cfg: PathBuf,
    db: PathBuf,
    replica: PathBuf,
    sock: PathBuf,
}

impl Daemon {
    fn sock(&self) -> &str {
        self.sock.to_str().unwrap()
    }
    fn cli(&self, args: &[&str]) -> std::process::Output {
        let mut v = args.to_vec();
        v.insert(1, "-socket");
        v.insert(2, self.sock());
        run(&v)
    }
    fn log(&self) -> String {
        self.r.log_text()
    }
}

/// A replicator on `app.db` → file replica `replica` with the socket at `ctl.sock`,
/// once `list` shows the database replicating.
fn start(w: &Work, replica_yaml: Option<&str>, socket_extra: &str) -> Daemon {
    let db = w.path("app.db");
    let replica = w.path("replica");
    let sock = w.path("ctl.sock");
    let replica_yaml = replica_yaml
        .map(str::to_string)
        .unwrap_or_else(|| format!("      type: file\n      path: {}\n", replica.display()));
    let cfg = w.config(&format!(
        "socket:\n  enabled: true\n  path: {}\n{socket_extra}dbs:\n  - path: {}\n    replica:\n{replica_yaml}",
        sock.display(),
        db.display(),
    ));
    let r = Replicator::start(w, &["-config", cfg.to_str().unwrap()]);
    let d = Daemon {
        r,
        cfg,
        db,
        replica,
        sock,
    };
    eventually(Duration::from_secs(30), "the database replicating", || {
        let (code, body) = request(&d.sock, "GET", "/list", "");
        code == 200 && body.contains("\"replicating\"")
    });
    d
}

/// One HTTP/1.1 request over the socket: (status, body). (0, error) when it cannot connect.
fn request(sock: &Path, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = match UnixStream::connect(sock) {
        Ok(s) => s,
        Err(e) => return (0, e.to_string()),
    };
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let code = resp
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

fn json(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn ok(d: &Daemon, out: std::process::Output) -> std::process::Output {
    assert!(
        out.status.success(),
        "failed: {}\n{}\nlog:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        d.log()
    );
    out
}

fn sync_wait(d: &Daemon, timeout: &str) -> std::process::Output {
    d.cli(&[
        "sync",
        "-wait",
        "-timeout",
        timeout,
        "-json",
        d.db.to_str().unwrap(),
    ])
}

#[test]
fn info_and_list_answer_in_litestream_json() {
    let w = Work::new();
    let app = app_db(&w.path("app.db"));
    insert_rows(&app, 3, 100);
    let d = start(&w, None, "");
    let info = json(&ok(&d, d.cli(&["info", "-json"])));
    assert_eq!(info["pid"], d.r.child.id());
    assert_eq!(info["database_count"], 1);
    assert_eq!(info["version"], env!("CARGO_PKG_VERSION"));
    assert!(info["uptime_seconds"].is_u64(), "{info}");
    assert!(
        info["started_at"]
            .as_str()
            .is_some_and(|s| s.parse::<jiff::Timestamp>().is_ok()),
        "{info}"
    );
    // A capture has happened by the time a sync returns, so last_sync_at is set.
    ok(&d, sync_wait(&d, "30"));
    let list = json(&ok(&d, d.cli(&["list", "-json"])));
    let dbs = list["databases"].as_array().unwrap();
    assert_eq!(dbs.len(), 1, "{list}");
    assert_eq!(dbs[0]["path"], d.db.to_str().unwrap());
    assert_eq!(dbs[0]["status"], "replicating");
    assert!(
        dbs[0]["last_sync_at"]
            .as_str()
            .is_some_and(|s| s.parse::<jiff::Timestamp>().is_ok()),
        "{list}"
    );
    // The text forms name the same things.
    let text = String::from_utf8(ok(&d, d.cli(&["list"])).stdout).unwrap();
    assert!(
        text.contains(&format!("{}\treplicating\t", d.db.display())),
        "{text}"
    );
    let text = String::from_utf8(ok(&d, d.cli(&["info"])).stdout).unwrap();
    assert!(text.contains("database_count: 1"), "{text}");
}

#[test]
fn sync_wait_returns_once_the_replica_holds_the_commit() {
    let w = Work::new();
    let app = app_db(&w.path("app.db"));
    insert_rows(&app, 3, 100);
    let d = start(&w, None, "");
    let mut last = 0;
    for i in 0..10 {
        app.execute("INSERT INTO t(v) VALUES (?1)", [format!("row {i}")])
            .unwrap();
        let out = ok(&d, sync_wait(&d, "30"));
        // Checked before anything else can happen: the replica holds it already.
        let held = replica_max_txid(&d.replica);
        let v = json(&out);
        let txid = v["txid"].as_u64().unwrap();
        assert_eq!(v["replica_txid"].as_u64(), Some(txid), "{v}");
        // The answer covers the commit just made: a capture after the request saw it.
        assert!(
            txid > last,
            "round {i}: TXID {txid} after a commit, was {last}"
        );
        last = txid;
        assert_eq!(v["db_path"], d.db.to_str().unwrap());
        assert!(v["duration_ms"].is_u64(), "{v}");
        assert!(
            held >= txid,
            "sync -wait returned at TXID {txid} but the replica holds {held}"
        );
        let (code, body) = request(
            &d.sock,
            "GET",
            &format!("/txid?path={}", d.db.display()),
            "",
        );
        assert_eq!(code, 200, "{body}");
        let t: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(t["txid"].as_u64(), Some(txid), "{body}");
    }
    // Nothing new: a plain sync finds nothing and answers with the same TXID.
    let (code, body) = request(
        &d.sock,
        "POST",
        "/sync",
        &format!(r#"{{"path":"{}"}}"#, d.db.display()),
    );
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "no_change", "{v}");
    // The text form.
    app.execute("INSERT INTO t(v) VALUES ('last')", []).unwrap();
    let out = ok(&d, d.cli(&["sync", "-wait", d.db.to_str().unwrap()]));
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], format!("db_path: {}", d.db.display()), "{text}");
    assert!(lines[1].starts_with("txid: "), "{text}");
    assert_eq!(
        lines[2],
        lines[1].replace("txid: ", "replica_txid: "),
        "{text}"
    );
    assert!(lines[3].starts_with("duration_ms: "), "{text}");
    // Durable: killed at once, the replica restores with the last row.
    let (cfg, db) = (d.cfg.clone(), d.db.clone());
    d.r.kill9();
    let out = w.path("restored.db");
    run_ok(&[
        "restore",
        "-config",
        cfg.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        db.to_str().unwrap(),
    ]);
    let c = rusqlite::Connection::open(&out).unwrap();
    let n: i64 = c
        .query_row("SELECT count(*) FROM t WHERE v = 'last'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1, "the row synced with -wait is in the replica");
}

#[test]
fn socket_file_gets_the_configured_mode_and_is_removed_at_exit() {
    let w = Work::new();
    drop(app_db(&w.path("app.db")));
    let d = start(&w, None, "");
    let mode = std::fs::metadata(&d.sock).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o600, "default socket mode is {mode:04o}");
    let sock = d.sock.clone();
    let log = d.r.log.clone();
    assert_eq!(d.r.stop(), 0, "{}", std::fs::read_to_string(log).unwrap());
    assert!(!sock.exists(), "socket file left behind at exit");

    let w = Work::new();
    drop(app_db(&w.path("app.db")));
    let d = start(&w, None, "  permissions: \"0660\"\n");
    let mode = std::fs::metadata(&d.sock).unwrap().permissions().mode() & 0o7777;
    assert_eq!(
        mode, 0o660,
        "socket mode with permissions 0660 is {mode:04o}"
    );
}

#[test]
fn a_regular_file_at_the_socket_path_is_refused_and_kept() {
    let w = Work::new();
    let db = w.path("app.db");
    drop(app_db(&db));
    let sock = w.path("ctl.sock");
    std::fs::write(&sock, "precious").unwrap();
    let cfg = w.config(&format!(
        "socket:\n  enabled: true\n  path: {}\ndbs:\n  - path: {}\n    replica:\n      path: {}\n",
        sock.display(),
        db.display(),
        w.path("replica").display()
    ));
    let mut r = Replicator::start(&w, &["-config", cfg.to_str().unwrap()]);
    let st = wait_timeout(&mut r.child, Duration::from_secs(30)).expect("replicator exits");
    assert!(!st.success());
    let log = r.log_text();
    assert!(
        log.contains(&format!(
            "socket {}: the path exists and is not a socket; refusing to replace it",
            sock.display()
        )),
        "{log}"
    );
    assert_eq!(std::fs::read_to_string(&sock).unwrap(), "precious");
}

#[test]
fn sync_of_an_unknown_database_is_404() {
    let w = Work::new();
    drop(app_db(&w.path("app.db")));
    let d = start(&w, None, "");
    let out = d.cli(&["sync", "/no/such.db"]);
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).lines().next(),
        Some("sync failed: database not found: /no/such.db")
    );
    let (code, body) = request(&d.sock, "POST", "/sync", r#"{"path":"/no/such.db"}"#);
    assert_eq!(code, 404, "{body}");
    let (code, body) = request(&d.sock, "POST", "/sync", "not json");
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("invalid request body"), "{body}");
}

#[test]
fn register_and_unregister_a_database_while_the_other_replicates() {
    let w = Work::new();
    drop(app_db(&w.path("app.db")));
    let d = start(&w, None, "");
    let other = w.path("other.db");
    let other_replica = w.path("replica-other");
    let app = app_db(&other);
    insert_rows(&app, 20, 300);
    let db = other.to_str().unwrap().to_string();
    let url = format!("file://{}", other_replica.display());

    let out = ok(&d, d.cli(&["register", "-json", "-replica", &url, &db]));
    let v = json(&out);
    assert_eq!(v["status"], "registered", "{v}");
    assert_eq!(v["path"], db.as_str());
    let out = ok(&d, d.cli(&["register", "-json", "-replica", &url, &db]));
    assert_eq!(json(&out)["status"], "already_registered");
    // Clear refusals: a bad URL, no path, no URL.
    let out = d.cli(&[
        "register",
        "-replica",
        "bogus://x/y",
        w.path("third.db").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("register failed: invalid replica url: "),
        "{err}"
    );
    for (body, want) in [
        (r#"{"path":"","replica_url":"file:///x"}"#, "path required"),
        (
            r#"{"path":"/x.db","replica_url":""}"#,
            "replica_url required",
        ),
    ] {
        let (code, resp) = request(&d.sock, "POST", "/register", body);
        assert_eq!(code, 400, "{resp}");
        assert!(resp.contains(want), "{resp}");
    }

    eventually(Duration::from_secs(20), "other.db replicating", || {
        let (_, body) = request(&d.sock, "GET", "/list", "");
        body.contains(&format!(r#""path":"{db}","status":"replicating""#))
    });
    insert_rows(&app, 10, 3000);
    ok(&d, d.cli(&["sync", "-wait", &db]));
    let want = pages_of_live(&other);
    let out_db = w.path("other-restored.db");
    run_ok(&["restore", "-o", out_db.to_str().unwrap(), &url]);
    assert_same_pages(
        &want,
        &pages_of_file(&out_db),
        "restore of a registered database",
    );

    // Unregister: a final sync, then the database is gone from the set.
    insert_rows(&app, 5, 100);
    let dry = ok(&d, d.cli(&["unregister", "-dry-run", &db]));
    assert!(String::from_utf8_lossy(&dry.stdout).contains("No unregister request was sent"));
    let out = ok(&d, d.cli(&["unregister", "-json", &db]));
    let v = json(&out);
    assert_eq!(v["status"], "unregistered", "{v}");
    let txid = v["txid"].as_u64().unwrap();
    assert!(txid > 0, "{v}");
    assert_eq!(
        replica_max_txid(&other_replica),
        txid,
        "the final sync uploaded everything up to the answer's TXID"
    );
    let (_, body) = request(&d.sock, "GET", "/list", "");
    assert!(!body.contains(&db), "{body}");
    let out = ok(&d, d.cli(&["unregister", "-json", &db]));
    assert_eq!(json(&out)["status"], "already_unregistered");
    let out = d.cli(&["sync", &db]);
    assert!(
        !out.status.success(),
        "an unregistered database is not known"
    );

    // The configured database was never disturbed.
    ok(&d, sync_wait(&d, "30"));
    // Registered again, it goes on from what its replica holds.
    ok(&d, d.cli(&["register", "-replica", &url, &db]));
    insert_rows(&app, 5, 100);
    eventually(
        Duration::from_secs(20),
        "other.db replicating again",
        || {
            let (_, body) = request(&d.sock, "GET", "/list", "");
            body.contains(&format!(r#""path":"{db}","status":"replicating""#))
        },
    );
    ok(&d, d.cli(&["sync", "-wait", &db]));
    let want = pages_of_live(&other);
    let out_db = w.path("other-restored-2.db");
    run_ok(&["restore", "-o", out_db.to_str().unwrap(), &url]);
    assert_same_pages(
        &want,
        &pages_of_file(&out_db),
        "restore after re-registering",
    );
}

#[test]
fn stop_and_start_one_database_while_the_other_replicates() {
    let w = Work::new();
    let (a, b) = (w.path("a.db"), w.path("b.db"));
    let (ra, rb) = (w.path("replica-a"), w.path("replica-b"));
    let app_a = app_db(&a);
    let app_b = app_db(&b);
    insert_rows(&app_a, 3, 100);
    insert_rows(&app_b, 3, 100);
    let sock = w.path("ctl.sock");
    let cfg = w.config(&format!(
        "socket:\n  enabled: true\n  path: {}\ndbs:\n  - path: {}\n    replica:\n      path: {}\n  - path: {}\n    replica:\n      path: {}\n",
        sock.display(), a.display(), ra.display(), b.display(), rb.display()
    ));
    let r = Replicator::start(&w, &["-config", cfg.to_str().unwrap()]);
    let d = Daemon {
        r,
        cfg,
        db: a.clone(),
        replica: ra.clone(),
        sock,
    };
    eventually(
        Duration::from_secs(30),
        "both databases replicating",
        || {
            let (code, body) = request(&d.sock, "GET", "/list", "");
            code == 200 && body.matches("\"replicating\"").count() == 2
        },
    );
    let (sa, sb) = (a.to_str().unwrap(), b.to_str().unwrap());
    let before = json(&ok(&d, d.cli(&["sync", "-wait", "-json", sa])))["txid"]
        .as_u64()
        .unwrap();

    let v = json(&ok(&d, d.cli(&["stop", "-json", sa])));
    assert_eq!(v["status"], "stopped", "{v}");
    assert_eq!(v["path"], sa);
    assert_eq!(v["txid"].as_u64(), Some(before), "{v}");
    assert_eq!(
        json(&ok(&d, d.cli(&["stop", "-json", sa])))["status"],
        "already_stopped"
    );
    let list = json(&ok(&d, d.cli(&["list", "-json"])));
    let status = |p: &str| {
        list["databases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["path"] == p)
            .map(|e| e["status"].clone())
    };
    assert_eq!(status(sa), Some("stopped".into()), "{list}");
    assert_eq!(status(sb), Some("replicating".into()), "{list}");

    // Stopped: a commit is not replicated, and a sync says why.
    app_a
        .execute("INSERT INTO t(v) VALUES ('while stopped')", [])
        .unwrap();
    let out = d.cli(&["sync", "-wait", sa]);
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).lines().next(),
        Some(format!("sync failed: {sa}: replication of this database has stopped").as_str())
    );
    assert_eq!(replica_max_txid(&ra), before);
    // The other database goes on.
    app_b
        .execute("INSERT INTO t(v) VALUES ('b goes on')", [])
        .unwrap();
    let vb = json(&ok(&d, d.cli(&["sync", "-wait", "-json", sb])));
    assert!(replica_max_txid(&rb) >= vb["txid"].as_u64().unwrap());

    let v = json(&ok(&d, d.cli(&["start", "-json", sa])));
    assert_eq!(v["status"], "started", "{v}");
    assert_eq!(
        json(&ok(&d, d.cli(&["start", "-json", sa])))["status"],
        "already_running"
    );
    // The commit made while stopped reaches the replica.
    let after = json(&ok(&d, d.cli(&["sync", "-wait", "-json", sa])));
    let t = after["txid"].as_u64().unwrap();
    assert!(t > before, "{after}");
    assert!(replica_max_txid(&ra) >= t);
    let log = d.r.log.clone();
    assert_eq!(d.r.stop(), 0, "{}", std::fs::read_to_string(log).unwrap());
}

#[test]
fn sync_wait_times_out_naming_the_failing_replica() {
    let mut g = crate::garage::Garage::start();
    let w = Work::new();
    let app = app_db(&w.path("app.db"));
    insert_rows(&app, 3, 100);
    let d = start(&w, Some(&g.replica_yaml("ctl")), "");
    ok(&d, sync_wait(&d, "30"));
    // The object store goes down: the next commit cannot reach the replica.
    g.stop();
    app.execute("INSERT INTO t(v) VALUES ('not yet')", [])
        .unwrap();
    let t = Instant::now();
    let out = sync_wait(&d, "2");
    let took = t.elapsed();
    assert!(
        !out.status.success(),
        "sync -wait succeeded with the store down"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("sync failed: ") && err.contains("timed out after 2s waiting for TXID"),
        "{err}"
    );
    assert!(err.contains("replica s3 holds TXID"), "{err}");
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(20),
        "{took:?}"
    );
    // Once the store is back, the same request succeeds.
    g.restart();
    ok(&d, sync_wait(&d, "60"));
}

/// `sync -wait` latency right after a commit, over the socket (not counting the CLI's
/// start): median and max over 50 commits, printed; bounds are generous.
fn measure(d: &Daemon, app: &rusqlite::Connection, what: &str) -> (Duration, Duration) {
    let body = format!(
        r#"{{"path":"{}","wait":true,"timeout":30}}"#,
        d.db.display()
    );
    let mut times = Vec::new();
    for i in 0..50 {
        app.execute("INSERT INTO t(v) VALUES (?1)", [format!("m{i}")])
            .unwrap();
        let t = Instant::now();
        let (code, resp) = request(&d.sock, "POST", "/sync", &body);
        times.push(t.elapsed());
        assert_eq!(code, 200, "{resp}\n{}", d.log());
    }
    times.sort();
    let (median, max) = (times[times.len() / 2], times[times.len() - 1]);
    println!(
        "sync -wait latency after a commit ({what}, 50 commits): median {median:?}, max {max:?}"
    );
    // For comparison: a plain sync (capture only) after a commit.
    let body = format!(r#"{{"path":"{}","timeout":30}}"#, d.db.display());
    let mut local = Vec::new();
    for i in 0..50 {
        app.execute("INSERT INTO t(v) VALUES (?1)", [format!("l{i}")])
            .unwrap();
        let t = Instant::now();
        let (code, resp) = request(&d.sock, "POST", "/sync", &body);
        local.push(t.elapsed());
        assert_eq!(code, 200, "{resp}");
    }
    local.sort();
    println!(
        "sync (no -wait) latency after a commit ({what}): median {:?}, max {:?}",
        local[local.len() / 2],
        local[local.len() - 1]
    );
    (median, max)
}

#[test]
fn sync_wait_latency_file_replica() {
    let w = Work::new();
    let app = app_db(&w.path("app.db"));
    let d = start(&w, None, "");
    let (median, max) = measure(&d, &app, "file replica, defaults");
    assert!(median < Duration::from_secs(2) && max < Duration::from_secs(10));
}

#[test]
fn sync_wait_latency_garage() {
    let g = crate::garage::Garage::start();
    let w = Work::new();
    let app = app_db(&w.path("app.db"));
    let d = start(&w, Some(&g.replica_yaml("ctl")), "");
    let (median, max) = measure(&d, &app, "Garage S3, defaults");
    assert!(median < Duration::from_secs(5) && max < Duration::from_secs(30));
}

/// With Litestream's `sync-interval: 1s` the capture pace is 1 s, but a sync is not
/// paced: it is answered at once.
#[test]
fn sync_wait_is_not_held_by_a_long_sync_interval() {
    let w = Work::new();
    let app = app_db(&w.path("app.db"));
    let yaml = format!(
        "      type: file\n      path: {}\n      sync-interval: 1s\n",
        w.path("replica").display()
    );
    let d = start(&w, Some(&yaml), "");
    let (median, max) = measure(&d, &app, "file replica, sync-interval 1s");
    assert!(median < Duration::from_millis(500), "median {median:?}");
    assert!(max < Duration::from_secs(10));
}
