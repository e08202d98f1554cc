//! The Windows service, its Event Log and its MSI, under Wine (Wine's service manager;
//! run by scripts/windows/test.sh like `it::windows`, ignored otherwise):
//! - `service install`, `sc start`, writes from the Windows writer, `sc stop`: the replica
//!   holds the last write (its `sync-interval` is an hour, so only the final sync, which
//!   runs before the service reports stopped, can have uploaded it); then `sc start` again
//!   (Restart-Service is a stop and a start) resumes and a second stop syncs again;
//!   `service uninstall`;
//! - a config that went bad after the install: the start fails (never RUNNING), the SCM
//!   shows our exit code, the Event Log gets the config error;
//! - a replica that fails: an error event with the replica error's ID;
//! - the MSI (wixl, packaging/windows) installs with `msiexec /i /qn`, registers the
//!   service and the event source, drops the example config; its service starts;
//!   `msiexec /x` removes the service and keeps the config;
//! - the reference user's flow: `C:\Litestream\litestream.yml` with top-level keys and an
//!   S3 endpoint (Garage standing in for MinIO), the service started without `-config`
//!   (the lookup order finds it), then `restore -o app-data.db s3://BUCKET/database`.
//!
//! The Event Log: Wine 8 has no event log storage (`ReadEventLogW` always reports the
//! end of the log, no `wevtutil`; `eventvwr` is a stub), but its `ReportEventW` prints
//! each call to debug channels: `fixme:advapi` the event type and ID, `eventlog` the
//! strings (trace, warn or err by type), and `RegisterEventSourceW` its source name.
//! scripts/windows/test.sh starts Wine's service manager with those channels on and its
//! stderr (which services inherit) in `$SQLITE_REPLICATE_WINE_SERVICES_LOG`; [`events`]
//! reads the calls back from there. What stays untested here: the log's storage and
//! Event Viewer's display (the message table lookup), which only real Windows has.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::Duration;

use crate::garage::{Garage, REGION};
use crate::harness::*;
use crate::windows::{
    exe_restore_equals, ok_output, source_pages, win, Win, WinWork, WINE_DEADLINE,
};

const NEEDS: &str = "needs the Windows build under Wine: scripts/windows/test.sh";

/// Held by the tests that use the machine-wide config locations (`%ProgramData%`'s and
/// `C:\Litestream`'s) and the service name `sqlite-replicate`: one at a time.
static MACHINE_CONFIG: Mutex<()> = Mutex::new(());

/// `wine PROGRAM ARGS` (a Wine builtin such as `sc` or `msiexec`).
fn wine(program: &str, args: &[&str]) -> Output {
    Command::new("wine")
        .arg(program)
        .args(args)
        .output()
        .unwrap()
}

/// `sc query NAME`'s text, or `None` when the service does not exist.
fn service_query(name: &str) -> Option<String> {
    let out = wine("sc", &["query", name]);
    let text = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    text.contains("STATE").then_some(text)
}

/// The value after `KEY :` in `sc query`'s text, up to the first space.
fn query_field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .find(|l| l.trim_start().starts_with(key))
        .and_then(|l| l.split_once(':'))
        .and_then(|(_, v)| v.split_whitespace().next())
}

/// The state `sc query NAME` reports (`RUNNING`, `STOPPED`, ...), or `None` when the
/// service does not exist.
fn service_state(name: &str) -> Option<String> {
    let text = service_query(name)?;
    text.lines()
        .find(|l| l.trim_start().starts_with("STATE"))
        .and_then(|l| l.split_whitespace().last())
        .map(str::to_string)
}

fn wait_state(name: &str, want: &str) {
    wait_for(
        &format!("service {name} to be {want}"),
        WINE_DEADLINE,
        || (service_state(name).as_deref() == Some(want)).then_some(()),
    );
}

fn sc(verb: &str, name: &str) {
    let out = wine("sc", &[verb, name]);
    assert!(out.status.success(), "sc {verb} {name}: {out:?}");
}

/// Waits until the replica directory `dir` has LTX files: the service replicates.
fn wait_replicating(dir: &Path) {
    wait_for(
        &format!("{} to get LTX files", dir.display()),
        WINE_DEADLINE,
        || {
            std::fs::read_dir(dir.join("ltx"))
                .ok()
                .and_then(|mut d| d.next())
                .map(|_| ())
        },
    );
}

/// Uninstalls the service when the test ends, passed or failed.
struct Installed<'a> {
    w: &'a Win,
    name: String,
}

impl Drop for Installed<'_> {
    fn drop(&mut self) {
        if service_state(&self.name).is_some() {
            let _ = self
                .w
                .exe(&["service", "uninstall", "-name", &self.name], &[]);
        }
    }
}

fn unique_name(what: &str) -> String {
    format!("sr-it-{what}-{}", std::process::id())
}

/// `service install -config CFG -name NAME`, checked; uninstalled when dropped.
fn install<'a>(w: &'a Win, cfg: &str, name: &str) -> Installed<'a> {
    let out = w.exe(&["service", "install", "-config", cfg, "-name", name], &[]);
    ok_output("sqlite-replicate.exe service install", &[], &out);
    assert_eq!(service_state(name).as_deref(), Some("STOPPED"));
    Installed {
        w,
        name: name.to_string(),
    }
}

/// One `ReportEventW` call as Wine's debug channels show it.
#[derive(Debug, Clone)]
struct Event {
    /// `EVENTLOG_*_TYPE`: 1 error, 2 warning, 4 information.
    kind: u16,
    id: u32,
    /// The channel class Wine printed the strings with: `trace`, `warn` or `err`.
    class: String,
    text: String,
}

/// The services' debug log (scripts/windows/test.sh).
fn services_log() -> PathBuf {
    let p = std::env::var_os("SQLITE_REPLICATE_WINE_SERVICES_LOG").unwrap_or_else(|| {
        panic!("$SQLITE_REPLICATE_WINE_SERVICES_LOG is not set: these tests {NEEDS} (it starts Wine's services with the eventlog channel on)")
    });
    PathBuf::from(p)
}

/// Every event reported so far, and the event sources registered (names), from the log.
/// A `fixme:advapi:ReportEventW (handle,0xTYPE,0xCATEGORY,0xID,...)` line is followed, on
/// the same thread, by one `eventlog:ReportEventW L"..."` line per string.
fn events() -> (Vec<Event>, Vec<String>) {
    let text = std::fs::read(services_log()).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let mut pending: std::collections::HashMap<&str, (u16, u32)> = Default::default();
    let (mut events, mut sources) = (Vec::new(), Vec::new());
    for line in text.lines() {
        let mut parts = line.splitn(4, ':');
        let (Some(tid), Some(class), Some(channel), Some(rest)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if channel == "advapi" && rest.starts_with("RegisterEventSourceW") {
            if let Some(name) = rest.split("L\"").nth(1).and_then(|r| r.split('"').next()) {
                sources.push(name.to_string());
            }
        } else if channel == "advapi" && rest.starts_with("ReportEventW (") {
            let args: Vec<&str> = rest["ReportEventW (".len()..].split(',').collect();
            let hex = |s: &str| u32::from_str_radix(s.trim_start_matches("0x"), 16).ok();
            if let (Some(kind), Some(id)) = (
                args.get(1).and_then(|a| hex(a)),
                args.get(3).and_then(|a| hex(a)),
            ) {
                pending.insert(tid, (kind as u16, id));
            }
        } else if channel == "eventlog" && rest.starts_with("ReportEventW L\"") {
            if let Some((kind, id)) = pending.remove(tid) {
                let body = &rest["ReportEventW L\"".len()..];
                let body = body.strip_suffix('"').unwrap_or(body);
                events.push(Event {
                    kind,
                    id,
                    class: class.to_string(),
                    text: body.replace("\\\\", "\\"),
                });
            }
        }
    }
    (events, sources)
}

/// Waits until an event whose text contains `needle` and satisfies `want` was reported.
fn wait_event(needle: &str, want: impl Fn(&Event) -> bool) -> Event {
    wait_for(
        &format!("an Event Log event with {needle:?}"),
        WINE_DEADLINE,
        || {
            events()
                .0
                .into_iter()
                .find(|e| e.text.contains(needle) && want(e))
        },
    )
}

/// The events whose text contains `needle`.
fn events_with(needle: &str) -> Vec<Event> {
    events()
        .0
        .into_iter()
        .filter(|e| e.text.contains(needle))
        .collect()
}

const ERROR: u16 = 1;
const INFORMATION: u16 = 4;

#[test]
#[ignore = "needs the Windows build under Wine: scripts/windows/test.sh"]
fn service_stop_runs_the_final_sync_and_a_restart_resumes() {
    let w = win();
    let work = WinWork::new(&w);
    let name = unique_name("svc");
    let db = work.win("app.db");
    w.writer(&["write", &db, "10", "300"]);
    let cfg = work.config(&format!(
        "dbs:\n  - path: {db}\n    replicas:\n      - type: file\n        path: {}\n        sync-interval: 1h\n",
        work.win("replica")
    ));
    let _installed = install(&w, &cfg, &name);

    for round in 0..2 {
        // Round 1 is Restart-Service's second half: a start after a clean stop.
        sc("start", &name);
        wait_state(&name, "RUNNING");
        wait_replicating(&work.linux("replica"));
        // The last writes, while the service runs; nothing uploads them before the stop.
        w.writer(&["write", &db, "25", "2000"]);
        w.writer(&["write", &db, "3", "100"]);
        let want = source_pages(&w, &work, &db);

        sc("stop", &name);
        wait_state(&name, "STOPPED");
        let q = service_query(&name).unwrap();
        assert_eq!(query_field(&q, "WIN32_EXIT_CODE"), Some("0"), "{q}");
        // The replica holds the last write: the final sync ran before STOPPED.
        exe_restore_equals(
            &w,
            &work,
            &format!("after-stop-{round}.db"),
            &[&work.url("replica")],
            &[],
            &want,
        );
    }

    // The Event Log got, from our source, each start and stop as information with their
    // IDs (1000, 1001), the final syncs (1003) and the database replicating (1002).
    let (_, sources) = events();
    assert!(
        sources.contains(&name),
        "no RegisterEventSourceW for {name}"
    );
    let ours = events_with(&format!("service {name} "));
    let count = |id: u32| {
        ours.iter()
            .filter(|e| e.id == id && e.kind == INFORMATION)
            .count()
    };
    assert_eq!(count(1000), 2, "two starts: {ours:#?}");
    assert_eq!(count(1001), 2, "two clean stops: {ours:#?}");
    assert!(ours.iter().all(|e| e.class == "trace"), "{ours:#?}");
    let db_events = events_with(&db);
    assert!(
        db_events
            .iter()
            .any(|e| e.id == 1002 && e.kind == INFORMATION),
        "{db_events:#?}"
    );

    let out = w.exe(&["service", "uninstall", "-name", &name], &[]);
    ok_output("sqlite-replicate.exe service uninstall", &[], &out);
    assert_eq!(service_state(&name), None, "the service is gone");
}

#[test]
#[ignore = "needs the Windows build under Wine: scripts/windows/test.sh"]
fn service_with_a_bad_config_fails_to_start_and_says_why() {
    let w = win();
    let work = WinWork::new(&w);
    let name = unique_name("badcfg");
    let db = work.win("app.db");
    w.writer(&["write", &db, "3", "100"]);
    let cfg = work.config(&format!(
        "dbs:\n  - path: {db}\n    replicas:\n      - type: file\n        path: {}\n",
        work.win("replica")
    ));
    let _installed = install(&w, &cfg, &name);
    // The config goes bad after the install (install checks it).
    std::fs::write(
        work.linux("sr.yml"),
        format!("dbs:\n  - path: {db}\n    replicas:\n      - type: file\n        pathh: C:\\x\n"),
    )
    .unwrap();

    let _ = wine("sc", &["start", &name]);
    let error = wait_event(&format!("service {name} stopped with an error"), |e| {
        e.kind == ERROR
    });
    assert_eq!(error.id, 2003, "{error:?}");
    assert_eq!(error.class, "err", "{error:?}");
    assert!(
        error.text.contains("pathh"),
        "the config error names the key: {error:?}"
    );
    wait_state(&name, "STOPPED");
    // The SCM shows a service-specific exit code (1066, ERROR_SERVICE_SPECIFIC_ERROR) of 1.
    let q = service_query(&name).unwrap();
    assert_eq!(query_field(&q, "WIN32_EXIT_CODE"), Some("1066"), "{q}");
    assert_eq!(query_field(&q, "SERVICE_EXIT_CODE"), Some("1"), "{q}");
    // It never reported RUNNING: no "started" event (sent after the config check).
    let started = events_with(&format!("service {name} started"));
    assert!(started.is_empty(), "{started:#?}");
    assert!(!work.linux("replica").exists(), "nothing replicated");
}

#[test]
#[ignore = "needs the Windows build under Wine: scripts/windows/test.sh"]
fn service_replica_error_reaches_the_event_log_as_an_error() {
    let w = win();
    let work = WinWork::new(&w);
    let name = unique_name("replerr");
    let db = work.win("app.db");
    w.writer(&["write", &db, "3", "100"]);
    // The second replica's directory is under a regular file: every write to it fails.
    std::fs::write(work.linux("not-a-dir"), "x").unwrap();
    let cfg = work.config(&format!(
        "shutdown-sync-timeout: 1s\ndbs:\n  - path: {db}\n    replicas:\n      - name: good\n        type: file\n        path: {}\n      - name: broken\n        type: file\n        path: {}\n",
        work.win("replica"),
        work.win(r"not-a-dir\replica"),
    ));
    let _installed = install(&w, &cfg, &name);
    sc("start", &name);
    wait_state(&name, "RUNNING");
    wait_replicating(&work.linux("replica"));
    let e = wait_event(r"not-a-dir\replica", |e| e.kind == ERROR);
    assert_eq!(e.id, 2000, "a replica error's ID: {e:?}");
    assert_eq!(e.class, "err", "{e:?}");
    assert!(e.text.contains("replica=broken"), "{e:?}");
    sc("stop", &name);
    wait_state(&name, "STOPPED");
}

/// Builds the MSI of the debug exe (stripped: wixl compresses 80 MB of debug info slowly)
/// as scripts/build-windows.sh builds the release one; returns its Windows path.
fn build_msi(w: &Win, work: &WinWork) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let stage = work.linux("msi");
    std::fs::create_dir_all(&stage).unwrap();
    for f in ["sqlite-replicate.wxs", "sqlite-replicate.yml"] {
        std::fs::copy(root.join("packaging/windows").join(f), stage.join(f)).unwrap();
    }
    let strip = Command::new("x86_64-w64-mingw32-strip")
        .arg("-o")
        .arg(stage.join("sqlite-replicate.exe"))
        .arg(w.bin().join("sqlite-replicate.exe"))
        .output()
        .unwrap();
    assert!(
        strip.status.success(),
        "x86_64-w64-mingw32-strip: {strip:?}"
    );
    let built = Command::new("wixl")
        .current_dir(&stage)
        .args([
            "-a",
            "x64",
            "-D",
            "Version=0.1.0",
            "-o",
            "sr.msi",
            "sqlite-replicate.wxs",
        ])
        .output()
        .unwrap();
    assert!(built.status.success(), "wixl: {built:?}");
    work.win(r"msi\sr.msi")
}

/// Uninstalls every installed `sqlite-replicate` product (`wine uninstaller --list`): a
/// run that failed halfway leaves one, and two products sharing the components keep the
/// service and the exe when one of them is removed.
fn remove_installed_products() {
    let out = wine("uninstaller", &["--list"]);
    let list = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    for code in list
        .lines()
        .filter(|l| l.ends_with("|||sqlite-replicate"))
        .filter_map(|l| l.split('|').next())
    {
        let out = wine("msiexec", &["/x", code, "/qn"]);
        assert!(out.status.success(), "msiexec /x {code}: {out:?}");
    }
}

#[test]
#[ignore = "needs the Windows build under Wine: scripts/windows/test.sh"]
fn msi_installs_the_service_and_its_config_and_uninstalls() {
    let _machine = MACHINE_CONFIG.lock().unwrap_or_else(|e| e.into_inner());
    let w = win();
    let work = WinWork::new(&w);
    let msi = build_msi(&w, &work);
    let program_data = w.drive_c().join("ProgramData/sqlite-replicate");
    let _ = std::fs::remove_file(program_data.join("sqlite-replicate.yml"));
    remove_installed_products();
    let install = wine("msiexec", &["/i", &msi, "/qn"]);
    assert!(install.status.success(), "msiexec /i: {install:?}");
    let _installed = Installed {
        w: &w,
        name: "sqlite-replicate".into(),
    };
    assert!(w
        .drive_c()
        .join("Program Files/sqlite-replicate/sqlite-replicate.exe")
        .is_file());
    let example = std::fs::read_to_string(program_data.join("sqlite-replicate.yml")).unwrap();
    assert!(example.contains("# dbs:"), "the example config: {example}");
    assert_eq!(
        service_state("sqlite-replicate").as_deref(),
        Some("STOPPED")
    );

    // The user's config replaces the example; the service finds it by the lookup order.
    let db = work.win("app.db");
    w.writer(&["write", &db, "5", "100"]);
    std::fs::write(
        program_data.join("sqlite-replicate.yml"),
        format!(
            "dbs:\n  - path: {db}\n    replicas:\n      - type: file\n        path: {}\n",
            work.win("replica")
        ),
    )
    .unwrap();
    sc("start", "sqlite-replicate");
    wait_state("sqlite-replicate", "RUNNING");
    wait_replicating(&work.linux("replica"));
    let want = source_pages(&w, &work, &db);
    sc("stop", "sqlite-replicate");
    wait_state("sqlite-replicate", "STOPPED");
    exe_restore_equals(&w, &work, "msi.db", &[&work.url("replica")], &[], &want);

    let remove = wine("msiexec", &["/x", &msi, "/qn"]);
    assert!(remove.status.success(), "msiexec /x: {remove:?}");
    assert!(
        !w.drive_c()
            .join("Program Files/sqlite-replicate/sqlite-replicate.exe")
            .exists(),
        "the exe is removed"
    );
    wait_for(
        "the MSI's service to be removed",
        Duration::from_secs(60),
        || service_state("sqlite-replicate").is_none().then_some(()),
    );
    assert!(
        program_data.join("sqlite-replicate.yml").is_file(),
        "the user's config survives the uninstall"
    );
    let _ = std::fs::remove_file(program_data.join("sqlite-replicate.yml"));
}

#[test]
#[ignore = "needs the Windows build under Wine: scripts/windows/test.sh"]
fn reference_flow_litestream_config_service_and_restore_by_url() {
    let _machine = MACHINE_CONFIG.lock().unwrap_or_else(|e| e.into_inner());
    let w = win();
    let work = WinWork::new(&w);
    let g = Garage::start_with_bucket("clojure-db-replica");
    let name = unique_name("ref");
    // No config at %ProgramData%: C:\Litestream\litestream.yml is the one found.
    let _ = std::fs::remove_file(
        w.drive_c()
            .join("ProgramData/sqlite-replicate/sqlite-replicate.yml"),
    );
    let dir = w.drive_c().join("Litestream");
    std::fs::create_dir_all(&dir).unwrap();
    let db = work.win("app-data.db");
    w.writer(&["write", &db, "20", "300"]);
    std::fs::write(
        dir.join("litestream.yml"),
        format!(
            "access-key-id: {}\nsecret-access-key: {}\ndbs:\n  - path: {db}\n    replicas:\n      - url: s3://clojure-db-replica/database\n        endpoint: {}\n        region: {REGION}\n        force-path-style: true\n",
            g.key_id,
            g.secret,
            g.endpoint()
        ),
    )
    .unwrap();
    struct RemoveConfig(PathBuf);
    impl Drop for RemoveConfig {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    let _config = RemoveConfig(dir.join("litestream.yml"));
    // Installed as the README says: no -config, the service looks it up at each start.
    let out = w.exe(&["service", "install", "-name", &name], &[]);
    ok_output("sqlite-replicate.exe service install", &[], &out);
    let _installed = Installed {
        w: &w,
        name: name.clone(),
    };
    sc("start", &name);
    wait_state(&name, "RUNNING");
    w.writer(&["write", &db, "10", "1500"]);
    let want = source_pages(&w, &work, &db);
    sc("stop", &name);
    wait_state(&name, "STOPPED");
    // The user's restore: by URL, no -config (found by the lookup order), relative -o
    // from the work directory.
    let mut c = w.cmd(
        "sqlite-replicate.exe",
        &[
            "restore",
            "-o",
            "app-data-restored.db",
            "s3://clojure-db-replica/database",
        ],
    );
    c.current_dir(work.linux(""));
    let out = c.output().unwrap();
    ok_output("sqlite-replicate.exe restore", &[], &out);
    assert_same_pages(
        &want,
        &pages_of_file(&work.linux("app-data-restored.db")),
        "restore -o app-data-restored.db s3://clojure-db-replica/database",
    );
}
