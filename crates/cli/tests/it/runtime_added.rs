//! Databases added while `replicate` runs (issue 18): found in a `watch: true`
//! directory or registered over the control socket, they are in `/metrics` and
//! `/status`, count for the heartbeat, get restore drills and validations exactly as a
//! configured database does, and leave all of these when they are deleted or
//! unregistered. A registered database gets the config file's defaults (here the
//! top-level `drill-interval` and `validation-interval`), not the built-in ones.

use std::path::Path;
use std::time::Duration;

use crate::harness::*;
use crate::metrics::{free_port, http_get, Scrape};

/// The database entry of `/status` for `db`, if it is listed.
fn status_of(s: &Scrape, db: &Path) -> Option<serde_json::Value> {
    s.status["databases"]
        .as_array()?
        .iter()
        .find(|d| d["db"].as_str() == Some(&*db.display().to_string()))
        .cloned()
}

/// Whether the database is listed with its replica's drill and validation both run
/// and good, and `/metrics` carries its drill series.
fn checked(s: &Scrape, db: &Path) -> bool {
    let Some(d) = status_of(s, db) else {
        return false;
    };
    let r = &d["replicas"][0];
    r["drill"]["ok"] == true
        && r["validation"]["ok"] == true
        && s.metrics.lines().any(|l| {
            l.starts_with("sqlite_replicate_drill_ok{")
                && l.contains(&format!("db=\"{}\"", db.display()))
                && l.ends_with(" 1")
        })
}

fn mentioned(s: &Scrape, db: &Path) -> bool {
    status_of(s, db).is_some() || s.metrics.contains(&format!("db=\"{}\"", db.display()))
}

fn scrape_until(port: u16, what: &str, mut f: impl FnMut(&Scrape) -> bool) -> Scrape {
    wait_for(what, Duration::from_secs(60), || {
        Scrape::take(port).filter(|s| f(s))
    })
}

#[test]
fn watched_and_registered_databases_are_reported_checked_and_dropped() {
    let w = Work::new();
    let dir = w.path("data");
    std::fs::create_dir_all(&dir).unwrap();
    let replica = w.path("replica");
    let sock = w.path("ctl.sock");
    let port = free_port();
    // The defaults a registered database must get too: top-level drill and validation
    // intervals (neither is on by default).
    let cfg = w.config(&format!(
        "addr: 127.0.0.1:{port}\ndrill-interval: 300ms\nvalidation-interval: 300ms\nsocket:\n  enabled: true\n  path: {}\ndbs:\n  - dir: {}\n    pattern: '*.db'\n    watch: true\n    replica:\n      type: file\n      path: {}\n",
        sock.display(),
        dir.display(),
        replica.display()
    ));
    let r = Replicator::start(&w, &["-config", cfg.to_str().unwrap()]);
    wait_for("the addr server", Duration::from_secs(30), || {
        http_get(port, "/status")
    });

    // A database appearing in the watched directory.
    let found = dir.join("found.db");
    insert_rows(&app_db(&found), 10, 100);
    scrape_until(
        port,
        "the watched database in /status and /metrics with a good drill and validation",
        |s| checked(s, &found),
    );

    // A database registered over the control socket, outside the directory.
    let reg = w.path("registered.db");
    insert_rows(&app_db(&reg), 10, 100);
    let url = format!("file://{}", w.path("replica-registered").display());
    let sock_s = sock.to_str().unwrap();
    let out = run(&[
        "register",
        "-socket",
        sock_s,
        "-replica",
        &url,
        reg.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let both = scrape_until(
        port,
        "the registered database drilled and validated (the config's top-level intervals)",
        |s| checked(s, &reg) && checked(s, &found),
    );
    assert_eq!(
        both.status["databases"].as_array().unwrap().len(),
        2,
        "{}",
        both.status
    );
    let log = r.log_text();
    for db in [&found, &reg] {
        for what in ["restore drills scheduled", "replica validation scheduled"] {
            assert!(
                log.lines()
                    .any(|l| l.contains(what) && l.contains(&*db.display().to_string())),
                "no '{what}' for {}:\n{log}",
                db.display()
            );
        }
    }

    // Unregistered: gone from both at once; the watched one stays.
    let out = run(&["unregister", "-socket", sock_s, reg.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    scrape_until(port, "the unregistered database gone", |s| {
        !mentioned(s, &reg) && status_of(s, &found).is_some()
    });

    // Deleted from the watched directory: gone too.
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", found.display()));
    }
    let none = scrape_until(port, "the deleted database gone", |s| !mentioned(s, &found));
    assert_eq!(
        none.status["databases"].as_array().map(Vec::len),
        Some(0),
        "{}",
        none.status
    );
    // Their drill and validation loops ended with them: no report after the removal.
    let quiet_from = r.log_text().len();
    let marker = w.path("marker.db");
    insert_rows(&app_db(&marker), 1, 10);
    let out = run(&[
        "register",
        "-socket",
        sock_s,
        "-replica",
        &format!("file://{}", w.path("replica-marker").display()),
        marker.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    scrape_until(port, "the marker database drilled", |s| checked(s, &marker));
    let after = r.log_text()[quiet_from..].to_string();
    for db in [&found, &reg] {
        assert!(
            !after.lines().any(|l| (l.contains("restore drill")
                || l.contains("replica validation"))
                && l.contains(&*db.display().to_string())),
            "checks of {} still running after its removal:\n{after}",
            db.display()
        );
    }
    assert_eq!(r.stop(), 0);
}

/// The heartbeat counts databases found while running: with none at start there is
/// nothing to vouch for (no ping); once a database appears in the watched directory and
/// has synced, the next check (every 15 s) pings.
#[test]
fn heartbeat_vouches_for_a_database_found_while_running() {
    let w = Work::new();
    let dir = w.path("data");
    std::fs::create_dir_all(&dir).unwrap();
    let monitor = crate::heartbeat::Monitor::start();
    let mon = monitor.port;
    let cfg = w.config(&format!(
        "heartbeat-url: http://127.0.0.1:{mon}/ping\nheartbeat-interval: 1m\ndbs:\n  - dir: {}\n    pattern: '*.db'\n    watch: true\n    replica:\n      type: file\n      path: {}\n",
        dir.display(),
        w.path("replica").display()
    ));
    let mut r = Replicator::start(&w, &["-config", cfg.to_str().unwrap()]);
    // After the start-up scan, so the database is found by the watcher (created before,
    // it would be a start-up database and never logged as new).
    r.wait_for_line("watching directory for databases", Duration::from_secs(30));
    let db = dir.join("late.db");
    insert_rows(&app_db(&db), 5, 100);
    r.wait_for_line(
        "new database in a watched directory; replicating",
        Duration::from_secs(30),
    );
    eventually(Duration::from_secs(45), "a heartbeat ping", || {
        monitor.count() > 0
    });
    assert_eq!(r.stop(), 0);
}
