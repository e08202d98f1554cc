//! `validation-interval` (parity issue 18): the replicator checks each replica's LTX
//! history on a schedule, by listing only. A healthy file replica validates OK in
//! `/status`, `/metrics` and the log; after a middle L0 file is deleted the next
//! validation fails, naming the files around the gap and the missing TXID range.

use std::time::Duration;

use crate::harness::*;
use crate::metrics::{free_port, scrape_until};

#[test]
fn scheduled_validation_reports_ok_then_names_a_gap() {
    let w = Work::new();
    let db = w.path("app.db");
    let replica = w.path("replica");
    let app = app_db(&db);
    insert_rows(&app, 20, 100);
    let port = free_port();
    let cfg = w.config(&format!(
        "addr: 127.0.0.1:{port}\ndbs:\n  - path: {}\n    replica:\n      type: file\n      path: {}\n      validation-interval: 300ms\n",
        db.display(),
        replica.display()
    ));
    let r = Replicator::start(&w, &["-config", cfg.to_str().unwrap()]);
    for _ in 0..5 {
        insert_rows(&app, 3, 200);
        // Paces the writer: a few capture cycles.
        std::thread::sleep(Duration::from_millis(30));
    }
    let ok = scrape_until(
        port,
        "a successful validation of the caught-up replica",
        |s| {
            s.lag() == 0
                && s.replica()["validation"]["ok"] == true
                && s.metrics
                    .lines()
                    .any(|l| l.starts_with("sqlite_replicate_validation_ok{") && l.ends_with(" 1"))
        },
    );
    let v = &ok.replica()["validation"];
    assert!(v["files"].as_u64().unwrap() >= 3, "{v}");
    // Level 0 and the three default compaction levels, one listing each.
    assert_eq!(v["levels"], 4, "{v}");
    assert!(v["error"].is_null(), "{v}");
    let success = ok.m(
        "sqlite_replicate_validation_last_success_timestamp_seconds{$db,$replica}",
        &db,
        "file",
    );
    assert!(success > 1.7e9, "{success}");
    assert!(
        r.log_text().contains("replica validation ok"),
        "{}",
        r.log_text()
    );
    // The replica validated is a good one: it restores to the source, page for page.
    let want = pages_of_live(&db);
    restore_and_compare(&cfg, &db, &w.path("restored.db"), &want, &[]);

    // Delete a middle L0 file: a TXID gap the next validation must name.
    let l0 = replica.join("ltx/0");
    let mut files: Vec<_> = std::fs::read_dir(&l0)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 3, "{files:?}");
    let i = files.len() / 2;
    let name = |p: &std::path::Path| p.file_name().unwrap().to_str().unwrap().to_string();
    let (prev, victim, next) = (name(&files[i - 1]), name(&files[i]), name(&files[i + 1]));
    std::fs::remove_file(&files[i]).unwrap();
    let failed = scrape_until(port, "a failed validation", |s| {
        s.replica()["validation"]["ok"] == false
            && s.metrics
                .lines()
                .any(|l| l.starts_with("sqlite_replicate_validation_ok{") && l.ends_with(" 0"))
    });
    let v = &failed.replica()["validation"];
    let err = v["error"].as_str().unwrap().to_string();
    let (vmin, vmax) = victim.trim_end_matches(".ltx").split_once('-').unwrap();
    assert!(
        err.contains(&format!(
            "level 0: TXID gap between {prev} and {next}: TXIDs {vmin}..={vmax} are missing"
        )),
        "{err}"
    );
    assert_eq!(v["faults"], 1, "{v}");
    assert_eq!(
        failed.m("sqlite_replicate_validation_ok{$db,$replica}", &db, "file"),
        0.0
    );
    assert!(
        failed.m(
            "sqlite_replicate_validation_failures_total{$db,$replica}",
            &db,
            "file"
        ) >= 1.0
    );
    // The last success is kept across the failure.
    assert!(
        failed.m(
            "sqlite_replicate_validation_last_success_timestamp_seconds{$db,$replica}",
            &db,
            "file"
        ) >= success
    );
    // Logged as an error naming the replica and what is wrong.
    let log = without_colors(&r.log_text());
    let line = log
        .lines()
        .find(|l| l.contains("replica validation failed"))
        .unwrap_or_else(|| panic!("no failure logged:\n{log}"));
    assert!(line.contains("ERROR"), "{line}");
    assert!(line.contains("replica=file"), "{line}");
    assert!(line.contains(&prev) && line.contains(&next), "{line}");
    assert_eq!(r.stop(), 0);
}

/// `s` without ANSI colour sequences (`ESC [ ... m`).
fn without_colors(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
