//! The operator's artefacts (issue 23), each checked with the tool an operator would use:
//! the Prometheus alert rules with `promtool test rules`, the Grafana dashboard against
//! the metrics we export, the status page at `/` in headless Chromium while replication
//! runs and while the object store is down, and the Debian package installed with
//! `dpkg -i`, its unit checked by `systemd-analyze verify` and its binary run.
//!
//! These need promtool (Debian's `prometheus`), Chromium (`chromium`) and root for
//! `dpkg -i`: scripts/test.sh installs them. A missing tool fails its test, naming it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use crate::garage::Garage;
use crate::harness::*;
use crate::metrics::{free_port, http_get};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `cmd`, failing the test with a hint when the program is not installed.
fn tool(cmd: &mut Command) -> Output {
    let program = cmd.get_program().to_string_lossy().into_owned();
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e} (scripts/test.sh installs it)"))
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Every metric name `/metrics` can serve, from the pinned expositions in
/// `observe/testdata` (which the metrics unit tests keep equal to the renderer's output):
/// each `# TYPE` family, with a histogram's `_bucket`, `_sum` and `_count` series.
fn exported_metrics() -> BTreeSet<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/observe/testdata");
    let mut names = BTreeSet::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_none_or(|x| x != "prom") {
            continue;
        }
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            let Some(rest) = line.strip_prefix("# TYPE ") else {
                continue;
            };
            let (name, kind) = rest.split_once(' ').unwrap();
            if kind == "histogram" {
                for s in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{s}"));
                }
            } else {
                names.insert(name.to_string());
            }
        }
    }
    assert!(names.len() > 40, "{names:?}");
    names
}

/// The metric names a PromQL expression mentions: our two prefixes, outside quoted label
/// values.
fn metric_names(expr: &str) -> Vec<String> {
    let mut unquoted = String::new();
    let mut quoted = false;
    for c in expr.chars() {
        if c == '"' {
            quoted = !quoted;
        } else if !quoted {
            unquoted.push(c);
        }
    }
    unquoted
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| w.starts_with("litestream_") || w.starts_with("sqlite_replicate_"))
        .map(str::to_string)
        .collect()
}

/// Checks that every expression names at least one metric, and only exported ones.
fn check_expressions(what: &str, exprs: &[String]) {
    let exported = exported_metrics();
    assert!(!exprs.is_empty(), "{what}: no expressions found");
    for e in exprs {
        let names = metric_names(e);
        assert!(!names.is_empty(), "{what}: {e:?} names no metric of ours");
        for n in names {
            assert!(
                exported.contains(&n),
                "{what}: {e:?} names {n}, which /metrics does not serve"
            );
        }
    }
}

#[test]
fn alert_rules_pass_their_promtool_tests_and_name_exported_metrics() {
    let dir = repo_root().join("deploy/prometheus");
    let check = tool(
        Command::new("promtool")
            .args(["check", "rules", "alerts.yml"])
            .current_dir(&dir),
    );
    assert!(check.status.success(), "{}", text(&check));
    let test = tool(
        Command::new("promtool")
            .args(["test", "rules", "alerts.test.yml"])
            .current_dir(&dir),
    );
    assert!(test.status.success(), "{}", text(&test));

    let rules: serde_json::Value =
        serde_norway::from_str(&std::fs::read_to_string(dir.join("alerts.yml")).unwrap()).unwrap();
    let rules: Vec<&serde_json::Value> = rules["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .collect();
    let exprs: Vec<String> = rules
        .iter()
        .map(|r| r["expr"].as_str().unwrap().to_string())
        .collect();
    check_expressions("alerts.yml", &exprs);

    // Each rule is tested firing: its name appears in an expected alert of the tests.
    let tests = std::fs::read_to_string(dir.join("alerts.test.yml")).unwrap();
    for r in &rules {
        let name = r["alert"].as_str().unwrap();
        assert!(
            tests.contains(&format!(
                "alertname: {name}\n        exp_alerts:\n          - "
            )),
            "alerts.test.yml does not show {name} firing"
        );
    }
}

#[test]
fn dashboard_names_only_exported_metrics() {
    let path = repo_root().join("deploy/grafana/sqlite-replicate.json");
    let dash: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut exprs = Vec::new();
    let mut titles = Vec::new();
    for p in dash["panels"].as_array().unwrap() {
        if p["type"] == "row" {
            continue;
        }
        titles.push(p["title"].as_str().unwrap().to_string());
        let targets = p["targets"].as_array().unwrap_or_else(|| panic!("{p}"));
        assert!(!targets.is_empty(), "panel {} has no query", p["title"]);
        for t in targets {
            exprs.push(t["expr"].as_str().unwrap().to_string());
        }
    }
    for v in dash["templating"]["list"].as_array().unwrap() {
        if v["type"] == "query" {
            exprs.push(v["query"]["query"].as_str().unwrap().to_string());
        }
    }
    check_expressions("sqlite-replicate.json", &exprs);
    // What the issue asks the dashboard to show, by the metric that shows it.
    for wanted in [
        "sqlite_replicate_replica_lag_txids",
        "sqlite_replicate_replica_pending_bytes",
        "sqlite_replicate_replica_lag_seconds",
        "sqlite_replicate_replica_upload_bytes_total",
        "sqlite_replicate_replica_upload_errors_total",
        "litestream_replica_operation_total[1h])) * 86400 * 30",
        "sqlite_replicate_wal_size_bytes",
        "sqlite_replicate_checkpoints_total",
        "sqlite_replicate_drill_restore_seconds",
        "sqlite_replicate_drill_rpo_seconds",
        "sqlite_replicate_lease_epoch",
    ] {
        assert!(
            exprs.iter().any(|e| e.contains(wanted)),
            "no panel shows {wanted}: {titles:?}"
        );
    }
}

/// Where the page's screenshots are kept after a run.
fn artefacts() -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Headless Chromium on `url` with `args` (`--dump-dom`, `--screenshot=...`), in a fresh
/// profile, with nothing fetched but the page; returns its standard output.
fn chromium(url: &str, args: &[&str]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut cmd = Command::new("chromium");
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1400,1000",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .args(args)
    .arg(url)
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run chromium: {e} (scripts/test.sh installs it)"));
    if wait_timeout(&mut child, Duration::from_secs(90)).is_none() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("chromium did not finish within 90 s on {url}");
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "chromium on {url}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `<tr>` of one replica in the page's DOM.
fn replica_row<'a>(dom: &'a str, replica: &str) -> Option<&'a str> {
    let start = dom.find(&format!("data-replica=\"{replica}\""))?;
    let end = dom[start..].find("</tr>")? + start;
    Some(&dom[start..end])
}

fn state_of(dom: &str, replica: &str) -> Option<String> {
    let row = replica_row(dom, replica)?;
    let s = row.split("data-state=\"").nth(1)?;
    Some(s[..s.find('"')?].to_string())
}

/// The status page, loaded by Chromium: both replicas `current` with their plots and the
/// file replica's passed drill while replication runs; with the S3 store down, the S3
/// replica `failing` with its error while the file replica stays `current`. Screenshots
/// of both are kept under target/tmp/status-page/. The page costs no object-store
/// request, and the run ends with a restore equal to the source.
#[test]
fn status_page_in_chromium_shows_replication_and_a_failing_store() {
    let mut g = Garage::start();
    let w = Work::new();
    let db = w.path("app.db");
    let file_replica = w.path("replica");
    let app = app_db(&db);
    insert_rows(&app, 20, 100);
    let port = free_port();
    let garage_entry: String = g
        .replica_yaml("page/app.db")
        .lines()
        .map(|l| format!("  {l}\n"))
        .collect();
    let cfg = w.config(&format!(
        "addr: 127.0.0.1:{port}\ndrill-interval: 1s\ndbs:\n  - path: {}\n    replicas:\n      - name: file\n        type: file\n        path: {}\n      - name: garage\n{}",
        db.display(),
        file_replica.display(),
        garage_entry
    ));
    let r = Replicator::start(&w, &["-config", cfg.to_str().unwrap()]);
    let url = format!("http://127.0.0.1:{port}/");

    // Replicating: both replicas current, a passed drill, plots drawn.
    let mut dom = String::new();
    eventually(
        Duration::from_secs(120),
        "the page to show both replicas current and a passed drill",
        || {
            insert_rows(&app, 1, 100);
            let Some((200, page)) = http_get(port, "/") else {
                return false;
            };
            if !(page.contains("data-replica=\"garage\" data-state=\"current\"")
                && page.contains("data-replica=\"file\" data-state=\"current\"")
                && replica_row(&page, "file").is_some_and(|r| r.contains("passed")))
            {
                // Spaces the polls of this wait: the server serves one snapshot a second.
                std::thread::sleep(Duration::from_millis(500));
                return false;
            }
            dom = chromium(&url, &["--dump-dom"]);
            state_of(&dom, "garage").as_deref() == Some("current")
                && state_of(&dom, "file").as_deref() == Some("current")
        },
    );
    assert!(dom.contains("<body data-state=\"current\">"), "{dom}");
    assert_eq!(dom.matches("<svg class=\"plot\"").count(), 4, "{dom}");
    assert!(
        dom.contains(&format!("data-db=\"{}\"", db.display())),
        "{dom}"
    );
    assert!(dom.contains("Lease: none configured."), "{dom}");
    assert!(
        !dom.contains("<script") && !dom.contains(" src="),
        "no external asset: {dom}"
    );
    let shots = artefacts();
    let running = shots.join("replicating.png");
    let _ = std::fs::remove_file(&running);
    chromium(&url, &[&format!("--screenshot={}", running.display())]);
    assert!(std::fs::metadata(&running).unwrap().len() > 10_000);

    // The store down: the S3 replica turns failing, with its error; the file one does not.
    g.stop();
    eventually(
        Duration::from_secs(120),
        "the page to show the S3 replica failing",
        || {
            insert_rows(&app, 1, 100);
            let Some((200, page)) = http_get(port, "/") else {
                return false;
            };
            if !page.contains("data-replica=\"garage\" data-state=\"failing\"") {
                // Spaces the polls of this wait.
                std::thread::sleep(Duration::from_millis(500));
                return false;
            }
            dom = chromium(&url, &["--dump-dom"]);
            state_of(&dom, "garage").as_deref() == Some("failing")
        },
    );
    let row = replica_row(&dom, "garage").unwrap();
    assert!(row.contains("failing since"), "{row}");
    assert_eq!(state_of(&dom, "file").as_deref(), Some("current"), "{dom}");
    assert!(dom.contains("<body data-state=\"failing\">"), "{dom}");
    assert!(dom.contains("1 failing"), "{dom}");
    // No secret reaches the page.
    assert!(!dom.contains(&g.secret), "secret on the page");
    let down = shots.join("store-down.png");
    let _ = std::fs::remove_file(&down);
    chromium(&url, &[&format!("--screenshot={}", down.display())]);
    assert!(std::fs::metadata(&down).unwrap().len() > 10_000);

    // Back up: the page turns current again, and both replicas restore to the source.
    g.restart();
    eventually(
        Duration::from_secs(120),
        "the S3 replica current again",
        || {
            http_get(port, "/")
                .is_some_and(|(_, p)| p.contains("data-replica=\"garage\" data-state=\"current\""))
                || {
                    // Spaces the polls of this wait.
                    std::thread::sleep(Duration::from_millis(250));
                    false
                }
        },
    );
    assert_eq!(r.stop(), 0);
    let want = pages_of_live(&db);
    for replica in ["file", "garage"] {
        restore_and_compare(
            &cfg,
            &db,
            &w.path(&format!("restored-{replica}.db")),
            &want,
            &["-replica", replica],
        );
    }
}

fn dpkg(args: &[&str]) -> Output {
    let out = tool(Command::new("dpkg").args(args));
    assert!(out.status.success(), "dpkg {args:?}: {}", text(&out));
    out
}

/// The Debian package, built by scripts/package-deb.sh from the binary under test and
/// installed with `dpkg -i`: the unit passes `systemd-analyze verify`, the config is a
/// conffile kept across a reinstall, the man pages and completions are in place, and the
/// installed binary replicates and restores a database equal to the source. Purged at
/// the end (the `sqlite-replicate` system user stays, as on any purge).
#[test]
fn debian_package_installs_verifies_and_runs() {
    let w = Work::new();
    let out = tool(
        Command::new(repo_root().join("scripts/package-deb.sh"))
            .arg(bin())
            .arg(w.path("deb")),
    );
    assert!(out.status.success(), "{}", text(&out));
    let deb = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(
        deb.ends_with("_amd64.deb") || deb.ends_with(".deb"),
        "{deb}"
    );

    // A clean start whatever an earlier run left, then the install.
    let _ = Command::new("dpkg")
        .args(["--purge", "sqlite-replicate"])
        .output();
    dpkg(&["-i", &deb]);
    let status = String::from_utf8(dpkg(&["-s", "sqlite-replicate"]).stdout).unwrap();
    assert!(status.contains("Status: install ok installed"), "{status}");
    assert!(
        status.contains("/etc/sqlite-replicate.yml"),
        "the config is a conffile: {status}"
    );

    // The installed binary, its user, its config's permissions (it may hold credentials).
    let installed = Path::new("/usr/bin/sqlite-replicate");
    let v = tool(Command::new(installed).arg("version"));
    assert!(v.status.success(), "{}", text(&v));
    assert!(text(&v).contains(env!("CARGO_PKG_VERSION")), "{}", text(&v));
    assert!(
        tool(Command::new("getent").args(["passwd", "sqlite-replicate"]))
            .status
            .success()
    );
    use std::os::unix::fs::MetadataExt;
    let conf = std::fs::metadata("/etc/sqlite-replicate.yml").unwrap();
    assert_eq!(conf.mode() & 0o777, 0o640);
    let dbs =
        tool(Command::new(installed).args(["databases", "-config", "/etc/sqlite-replicate.yml"]));
    assert!(
        dbs.status.success(),
        "the example config parses: {}",
        text(&dbs)
    );

    // The unit, as systemd reads it (offline: no systemd runs here).
    let unit = "/lib/systemd/system/sqlite-replicate.service";
    let verify = tool(Command::new("systemd-analyze").args(["verify", unit]));
    assert!(
        verify.status.success() && text(&verify).trim().is_empty(),
        "{}",
        text(&verify)
    );
    let unit_text = std::fs::read_to_string(unit).unwrap();
    for line in [
        "User=sqlite-replicate",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/sqlite-replicate",
        "NoNewPrivileges=yes",
        "ExecStart=/usr/bin/sqlite-replicate replicate -config /etc/sqlite-replicate.yml",
    ] {
        assert!(unit_text.lines().any(|l| l == line), "unit lacks {line}");
    }

    // Man pages and completions where man and the shells look.
    let man = tool(Command::new("man").args(["-w", "sqlite-replicate-restore"]));
    assert!(
        text(&man).trim() == "/usr/share/man/man1/sqlite-replicate-restore.1.gz",
        "{}",
        text(&man)
    );
    let bash = tool(Command::new("bash").args([
        "-c",
        "source /usr/share/bash-completion/completions/sqlite-replicate && complete -p sqlite-replicate",
    ]));
    assert!(bash.status.success(), "{}", text(&bash));
    for f in [
        "/usr/share/zsh/vendor-completions/_sqlite-replicate",
        "/usr/share/fish/vendor_completions.d/sqlite-replicate.fish",
    ] {
        assert!(Path::new(f).is_file(), "{f}");
    }

    // The operator's edit of the conffile survives a reinstall.
    let edited = std::fs::read_to_string("/etc/sqlite-replicate.yml").unwrap() + "# edited\n";
    std::fs::write("/etc/sqlite-replicate.yml", &edited).unwrap();
    dpkg(&["-i", "--force-confold", &deb]);
    assert_eq!(
        std::fs::read_to_string("/etc/sqlite-replicate.yml").unwrap(),
        edited
    );

    // The installed binary replicates once and restores what it replicated.
    let db = w.path("app.db");
    let app = app_db(&db);
    insert_rows(&app, 50, 300);
    let cfg = w.file_config(&db, &w.path("replica"), "");
    let once = tool(Command::new(installed).args([
        "replicate",
        "-config",
        cfg.to_str().unwrap(),
        "-once",
    ]));
    assert!(once.status.success(), "{}", text(&once));
    let out_db = w.path("restored.db");
    let restore = tool(Command::new(installed).args([
        "restore",
        "-config",
        cfg.to_str().unwrap(),
        "-o",
        out_db.to_str().unwrap(),
        db.to_str().unwrap(),
    ]));
    assert!(restore.status.success(), "{}", text(&restore));
    assert_same_pages(
        &pages_of_live(&db),
        &pages_of_file(&out_db),
        "restore by the installed binary",
    );

    dpkg(&["--purge", "sqlite-replicate"]);
    assert!(!installed.exists() && !Path::new("/etc/sqlite-replicate.yml").exists());
}
