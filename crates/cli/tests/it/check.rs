//! `check`: passes on a good setup (a file replica and a Garage S3 replica), and for each
//! broken setting it checks, fails with a message that names the problem.
//!
//! Permission failures need a user the kernel refuses: when the tests run as root (who
//! may write anywhere), `check` runs as `nobody` through `setpriv`.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use rusqlite::Connection;
use serde_json::Value;

use crate::garage::{Garage, REGION};
use crate::harness::*;

/// `check -json` output: (exit success, findings).
fn check_json(args: &[&str]) -> (bool, Vec<Value>, Output) {
    let mut full = vec!["check", "-json"];
    full.extend_from_slice(args);
    let out = run(&full);
    parse(out)
}

fn parse(out: Output) -> (bool, Vec<Value>, Output) {
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "check -json printed no JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let findings = v["findings"].as_array().unwrap().clone();
    assert_eq!(
        v["ok"].as_bool().unwrap(),
        out.status.success(),
        "exit status agrees with ok"
    );
    (out.status.success(), findings, out)
}

/// The findings of one check (and replica, when given).
fn of<'a>(findings: &'a [Value], check: &str) -> Vec<&'a Value> {
    findings.iter().filter(|f| f["check"] == check).collect()
}

fn level(f: &Value) -> &str {
    f["level"].as_str().unwrap()
}

fn fails(findings: &[Value]) -> Vec<String> {
    findings
        .iter()
        .filter(|f| level(f) == "fail")
        .map(|f| format!("{}: {}", f["check"], f["message"]))
        .collect()
}

/// A WAL database with some rows, replicated once to `replica` (a file replica), its
/// application connection kept open (so the WAL stays).
fn good_setup(w: &Work) -> (std::path::PathBuf, std::path::PathBuf, Connection) {
    let db = w.path("app.db");
    let replica = w.path("replica");
    let app = app_db(&db);
    insert_rows(&app, 20, 500);
    let url = format!("file://{}", replica.display());
    run_ok(&["replicate", "-once", db.to_str().unwrap(), &url]);
    (db, replica, app)
}

fn s3_replica_entry(g: &Garage, path: &str, secret: &str, endpoint: &str) -> String {
    format!(
        "      - name: s3\n        type: s3\n        bucket: {}\n        path: {path}\n        endpoint: {endpoint}\n        region: {REGION}\n        force-path-style: true\n        access-key-id: {}\n        secret-access-key: {secret}\n",
        g.bucket, g.key_id
    )
}

#[test]
fn check_passes_on_a_good_setup_with_file_and_s3_replicas() {
    let g = Garage::start();
    let w = Work::new();
    let (db, replica, _app) = good_setup(&w);
    let cfg = w.config(&format!(
        "dbs:\n  - path: {}\n    replicas:\n      - name: file\n        type: file\n        path: {}\n{}",
        db.display(),
        replica.display(),
        s3_replica_entry(&g, "app", &g.secret, &g.endpoint())
    ));
    run_ok(&["replicate", "-once", "-config", cfg.to_str().unwrap()]);
    let (ok, findings, out) = check_json(&["-config", cfg.to_str().unwrap()]);
    assert!(ok, "{}", String::from_utf8_lossy(&out.stdout));
    assert!(fails(&findings).is_empty());
    for check in [
        "permissions",
        "journal-mode",
        "synchronous",
        "wal-autocheckpoint",
        "page-size",
        "quick-check",
        "wal-size",
    ] {
        let f = of(&findings, check);
        assert_eq!(f.len(), 1, "{check}: {findings:?}");
        assert_eq!(level(f[0]), "ok", "{check}: {}", f[0]);
    }
    for check in ["replica-contents", "replica-round-trip", "clock-skew"] {
        let f = of(&findings, check);
        assert_eq!(f.len(), 2, "{check} for both replicas: {findings:?}");
        assert!(f.iter().all(|f| level(f) == "ok"), "{check}: {f:?}");
    }
    // Garage ignores If-None-Match: reported, not a failure; the file replica honours it.
    let cond = of(&findings, "replica-conditional-create");
    assert!(cond.iter().all(|f| level(f) == "ok"), "{cond:?}");
    // The scratch object is gone from the file replica: only the level tree remains.
    let left: Vec<String> = std::fs::read_dir(&replica)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["ltx"], "scratch objects left behind");
    // Text output: one line per finding, a summary, exit 0.
    let text = run_ok(&["check", "-config", cfg.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("0 failure(s)"), "{text}");
    assert!(text.contains("replica s3 (s3://"), "{text}");
}

#[test]
fn check_fails_on_a_rollback_journal_database() {
    let w = Work::new();
    let db = w.path("app.db");
    Connection::open(&db)
        .unwrap()
        .execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
        .unwrap();
    let cfg = w.file_config(&db, &w.path("replica"), "");
    let (ok, findings, _) = check_json(&["-config", cfg.to_str().unwrap()]);
    assert!(!ok);
    let f = of(&findings, "journal-mode");
    assert_eq!(level(f[0]), "fail");
    assert!(
        f[0]["message"]
            .as_str()
            .unwrap()
            .contains("journal mode is \"delete\", not WAL"),
        "{}",
        f[0]
    );
    assert!(
        f[0]["action"]
            .as_str()
            .unwrap()
            .contains("PRAGMA journal_mode=WAL"),
        "{}",
        f[0]
    );
    assert_eq!(fails(&findings).len(), 1, "{:?}", fails(&findings));
}

#[test]
fn check_warns_then_fails_on_a_large_wal() {
    let w = Work::new();
    let (db, replica, app) = good_setup(&w);
    app.execute_batch("PRAGMA wal_autocheckpoint=0").unwrap();
    insert_rows(&app, 20, 2000);
    let wal = std::fs::metadata(w.path("app.db-wal")).unwrap().len();
    assert!(wal > 8 << 10, "WAL is {wal} bytes");
    let cfg = w.file_config(&db, &replica, "");
    let cfg = cfg.to_str().unwrap();
    // Above the warning threshold only: a warning, exit 0.
    let (ok, findings, _) = check_json(&["-config", cfg, "-wal-warn-size", "4KiB"]);
    assert!(ok, "{:?}", fails(&findings));
    let f = of(&findings, "wal-size");
    assert_eq!(level(f[0]), "warn", "{}", f[0]);
    assert!(
        f[0]["message"]
            .as_str()
            .unwrap()
            .contains("above the warning threshold of 4.0 KiB"),
        "{}",
        f[0]
    );
    // Above the failure threshold: a failure naming it.
    let (ok, findings, _) = check_json(&[
        "-config",
        cfg,
        "-wal-warn-size",
        "4KiB",
        "-wal-fail-size",
        "8KiB",
    ]);
    assert!(!ok);
    let f = of(&findings, "wal-size");
    assert_eq!(level(f[0]), "fail");
    assert!(
        f[0]["message"]
            .as_str()
            .unwrap()
            .contains("above the failure threshold of 8.0 KiB"),
        "{}",
        f[0]
    );
    assert_eq!(fails(&findings).len(), 1, "{:?}", fails(&findings));
}

#[test]
fn check_fails_on_a_corrupt_database() {
    let w = Work::new();
    let db = w.path("app.db");
    let root: u32 = {
        let c = app_db(&db);
        insert_rows(&c, 200, 300);
        c.execute_batch("CREATE INDEX i ON t(v); PRAGMA wal_checkpoint(TRUNCATE);")
            .unwrap();
        c.query_row(
            "SELECT rootpage FROM sqlite_schema WHERE name = 'i'",
            [],
            |r| r.get(0),
        )
        .unwrap()
    };
    assert!(root > 1);
    // Overwrite the index's root page with garbage: a b-tree page SQLite cannot parse.
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(&db).unwrap();
        f.write_all_at(&[0xEE; 4096], (root as u64 - 1) * 4096)
            .unwrap();
        f.sync_all().unwrap();
    }
    let cfg = w.file_config(&db, &w.path("replica"), "");
    let (ok, findings, _) = check_json(&["-config", cfg.to_str().unwrap()]);
    assert!(!ok);
    let f = of(&findings, "quick-check");
    assert_eq!(level(f[0]), "fail", "{}", f[0]);
    assert!(
        f[0]["message"]
            .as_str()
            .unwrap()
            .contains("PRAGMA quick_check found damage"),
        "{}",
        f[0]
    );
    assert!(
        f[0]["action"].as_str().unwrap().contains("restore"),
        "{}",
        f[0]
    );
}

/// Runs `check -json` as a user the kernel holds to permissions (`nobody` when root).
fn check_unprivileged(args: &[&str]) -> (bool, Vec<Value>, Output) {
    // SAFETY: geteuid(2) takes no arguments and cannot fail.
    let mut cmd = if unsafe { libc::geteuid() } == 0 {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(bin());
        c
    } else {
        Command::new(bin())
    };
    cmd.args(["check", "-json"]).args(args);
    parse(cmd.output().expect("run setpriv (util-linux)"))
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A database the unprivileged user may read and write in `dir` (mode `dir_mode`), a
/// replica directory with mode `replica_mode`, and a config.
fn permission_setup(
    w: &Work,
    dir_mode: u32,
    replica_mode: u32,
) -> (std::path::PathBuf, std::path::PathBuf, Connection) {
    chmod(w.dir.path(), 0o755);
    let dbdir = w.path("data");
    std::fs::create_dir(&dbdir).unwrap();
    let db = dbdir.join("app.db");
    let app = app_db(&db);
    insert_rows(&app, 5, 100);
    for f in ["app.db", "app.db-wal", "app.db-shm"] {
        chmod(&dbdir.join(f), 0o666);
    }
    chmod(&dbdir, dir_mode);
    let replica = w.path("replica");
    std::fs::create_dir(&replica).unwrap();
    chmod(&replica, replica_mode);
    let cfg = w.file_config(&db, &replica, "");
    chmod(&cfg, 0o644);
    (cfg, db, app)
}

#[test]
fn check_fails_when_the_database_directory_is_not_writable() {
    let w = Work::new();
    let (cfg, db, _app) = permission_setup(&w, 0o755, 0o777);
    let (ok, findings, _) = check_unprivileged(&["-config", cfg.to_str().unwrap()]);
    assert!(!ok);
    let dir = db.parent().unwrap().display().to_string();
    let perms = of(&findings, "permissions");
    assert!(
        perms.iter().any(|f| level(f) == "fail"
            && f["message"]
                .as_str()
                .unwrap()
                .contains(&format!("database directory {dir} is not writable by uid"))
            && f["message"].as_str().unwrap().contains("-wal and -shm")),
        "{perms:?}"
    );
    // The local state directory would be created there too: said as well.
    assert!(
        perms.iter().any(|f| f["message"]
            .as_str()
            .unwrap()
            .contains("local state directory")),
        "{perms:?}"
    );
    // The replica itself is fine.
    let rt = of(&findings, "replica-round-trip");
    assert_eq!(level(rt[0]), "ok", "{}", rt[0]);
}

#[test]
fn check_fails_when_the_replica_directory_is_not_writable() {
    let w = Work::new();
    let (cfg, _db, _app) = permission_setup(&w, 0o777, 0o755);
    let (ok, findings, _) = check_unprivileged(&["-config", cfg.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        of(&findings, "permissions")
            .iter()
            .all(|f| level(f) == "ok"),
        "{findings:?}"
    );
    let rt = of(&findings, "replica-round-trip");
    assert_eq!(level(rt[0]), "fail", "{}", rt[0]);
    let msg = rt[0]["message"].as_str().unwrap();
    assert!(
        msg.contains("writing the scratch object .sqlite-replicate-check-")
            && msg.contains("permission denied"),
        "{msg}"
    );
    assert!(
        rt[0]["action"]
            .as_str()
            .unwrap()
            .contains("permissions on the replica location"),
        "{}",
        rt[0]
    );
}

#[test]
fn check_fails_when_the_s3_endpoint_is_down_or_the_credentials_are_wrong() {
    let w = Work::new();
    let (db, _replica, _app) = good_setup(&w);
    let g = Garage::start();
    // Wrong secret: permission denied, with the credentials hint.
    let cfg = w.config(&format!(
        "dbs:\n  - path: {}\n    replicas:\n{}",
        db.display(),
        s3_replica_entry(&g, "app", &"0".repeat(64), &g.endpoint())
    ));
    let (ok, findings, _) = check_json(&["-config", cfg.to_str().unwrap()]);
    assert!(!ok);
    let f = of(&findings, "replica-list");
    assert_eq!(level(f[0]), "fail", "{findings:?}");
    let msg = f[0]["message"].as_str().unwrap();
    assert!(
        msg.starts_with("listing the replica failed:") && msg.contains("permission denied"),
        "{msg}"
    );
    assert!(!msg.contains(&"0".repeat(64)), "secret in message: {msg}");
    assert!(
        f[0]["action"].as_str().unwrap().contains("credentials"),
        "{}",
        f[0]
    );
    // Garage stopped: the endpoint does not answer.
    let endpoint = g.endpoint();
    let cfg = w.config(&format!(
        "dbs:\n  - path: {}\n    replicas:\n{}",
        db.display(),
        s3_replica_entry(&g, "app", &g.secret, &endpoint)
    ));
    drop(g);
    let (ok, findings, _) = check_json(&["-config", cfg.to_str().unwrap()]);
    assert!(!ok);
    let f = of(&findings, "replica-list");
    assert_eq!(level(f[0]), "fail", "{findings:?}");
    let msg = f[0]["message"].as_str().unwrap();
    assert!(msg.contains("cannot connect to the endpoint"), "{msg}");
    assert!(
        f[0]["action"].as_str().unwrap().contains("reachable"),
        "{}",
        f[0]
    );
    // The database's own checks still ran and passed.
    assert_eq!(level(of(&findings, "journal-mode")[0]), "ok");
}

#[test]
fn check_warns_about_a_readable_config_holding_secrets_inline() {
    let w = Work::new();
    let (db, _replica, _app) = good_setup(&w);
    let config = |key_id: &str, secret: &str| {
        w.config(&format!(
            "dbs:\n  - path: {}\n    replicas:\n      - type: s3\n        bucket: b\n        endpoint: http://127.0.0.1:1\n        access-key-id: {key_id}\n        secret-access-key: {secret}\n",
            db.display()
        ))
    };
    // `-replica none` skips the (unreachable) replica: only the file is looked at.
    let check = |cfg: &Path| check_json(&["-config", cfg.to_str().unwrap(), "-replica", "none"]);

    let cfg = config("GK1", "hunter2");
    chmod(&cfg, 0o644);
    let (ok, findings, out) = check(&cfg);
    let f = of(&findings, "config-secrets");
    assert_eq!(f.len(), 1, "{findings:?}");
    let msg = f[0]["message"].as_str().unwrap();
    let action = f[0]["action"].as_str().unwrap();
    assert_eq!(level(f[0]), "warn");
    assert!(ok, "a warning does not fail the check: {findings:?}");
    assert!(
        msg.contains("dbs[0].replicas[0].secret-access-key")
            && msg.contains("access-key-id")
            && msg.contains("0644"),
        "{msg}"
    );
    assert!(
        action.contains(&format!("chmod 600 {}", cfg.display())),
        "{action}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("hunter2"), "secret printed: {stdout}");

    // Private: nothing to say.
    chmod(&cfg, 0o600);
    let (_, findings, _) = check(&cfg);
    assert!(of(&findings, "config-secrets").is_empty(), "{findings:?}");

    // Readable, but the secrets come from the environment.
    let cfg = config("$SR_TEST_UNSET_KEY_ID", "${SR_TEST_UNSET_SECRET}");
    chmod(&cfg, 0o644);
    let (_, findings, _) = check(&cfg);
    assert!(of(&findings, "config-secrets").is_empty(), "{findings:?}");
}

#[test]
fn skip_verify_is_warned_about_on_every_start_naming_the_replica() {
    let w = Work::new();
    let (db, _replica, _app) = good_setup(&w);
    let cfg = w.config(&format!(
        "dbs:\n  - path: {}\n    replicas:\n      - type: s3\n        bucket: tls-off\n        path: app\n        endpoint: http://127.0.0.1:1\n        access-key-id: GK1\n        secret-access-key: hunter2\n        skip-verify: true\n",
        db.display()
    ));
    let (_, _, out) = check_json(&["-config", cfg.to_str().unwrap(), "-replica", "s3"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let warning = stderr
        .lines()
        .find(|l| l.contains("skip-verify is set"))
        .unwrap_or_else(|| panic!("no skip-verify warning:\n{stderr}"));
    assert!(
        warning.contains("WARN") && warning.contains("s3://tls-off/app"),
        "{warning}"
    );
    assert!(warning.contains("SSL_CERT_FILE"), "{warning}");
    assert!(!stderr.contains("hunter2"), "secret printed: {stderr}");
}
