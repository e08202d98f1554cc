//! `verify`, the restore drill: passes on a good replica with RTO, RPO and a page compare
//! against the live source at the same TXID; fails, naming the file or TXIDs, on a
//! replica with a damaged LTX file or a missing one.

use serde_json::Value;

use crate::harness::*;

/// A history of `batches` commits, each replicated with `replicate -once` to a file
/// replica, the application connection still open. Returns (work, db, replica, config, app).
fn history(
    batches: usize,
) -> (
    Work,
    std::path::PathBuf,
    std::path::PathBuf,
    std::path::PathBuf,
    rusqlite::Connection,
) {
    let w = Work::new();
    let db = w.path("app.db");
    let replica = w.path("replica");
    let cfg = w.file_config(&db, &replica, "");
    let app = app_db(&db);
    for i in 0..batches {
        insert_rows(&app, 3, 1500 + 100 * i);
        run_ok(&["replicate", "-once", "-config", cfg.to_str().unwrap()]);
    }
    (w, db, replica, cfg, app)
}

fn verify_json(args: &[&str]) -> (bool, Value) {
    let mut full = vec!["verify", "-json"];
    full.extend_from_slice(args);
    let out = run(&full);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "verify -json printed no JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(v["ok"].as_bool().unwrap(), out.status.success());
    (out.status.success(), v)
}

fn l0_path(replica: &std::path::Path, txid: u64) -> std::path::PathBuf {
    replica.join(format!("ltx/0/{txid:016x}-{txid:016x}.ltx"))
}

#[test]
fn verify_passes_on_a_good_replica_and_reports_rto_and_rpo() {
    let (w, db, replica, cfg, _app) = history(6);
    let newest = replica_max_txid(&replica);
    assert_eq!(replica_l0_txids(&replica).len(), 6);
    let scratch = w.path("scratch");
    std::fs::create_dir(&scratch).unwrap();
    let (ok, v) = verify_json(&[
        "-config",
        cfg.to_str().unwrap(),
        "-random-point",
        "-scratch",
        scratch.to_str().unwrap(),
    ]);
    assert!(ok, "{v:#}");
    let drills = v["drills"].as_array().unwrap();
    assert_eq!(drills.len(), 2, "{v:#}");
    let latest = &drills[0];
    assert_eq!(latest["target"], "latest");
    assert_eq!(latest["txid"], format!("{newest:016x}"));
    assert_eq!(latest["db"], db.to_str().unwrap());
    assert!(latest["restore_ms"].is_u64(), "{latest}");
    assert!(latest["rpo_ms"].is_u64(), "{latest}");
    // The newest snapshot, then every L0 file after it. Which `-once` run wrote the
    // snapshot depends on timing (the first one, usually).
    let snapshot = std::fs::read_dir(replica.join("ltx/9"))
        .map(|rd| {
            rd.filter_map(|e| {
                let n = e.ok()?.file_name().to_string_lossy().into_owned();
                u64::from_str_radix(n.strip_suffix(".ltx")?.split('-').nth(1)?, 16).ok()
            })
            .max()
        })
        .ok()
        .flatten();
    let after = |s: u64| {
        replica_l0_txids(&replica)
            .iter()
            .filter(|&&t| t > s)
            .count()
    };
    let expected = snapshot.map_or(6, |s| 1 + after(s));
    assert_eq!(latest["files"], expected as u64, "{v:#}");
    assert!(latest["bytes"].as_u64().unwrap() > 0);
    assert_eq!(latest["caught_up"], true);
    // The app's connection is open and idle: the source is exactly at the newest TXID,
    // and every page matches.
    assert_eq!(latest["page_compare"]["result"], "matched", "{latest}");
    assert_eq!(latest["page_compare"]["same_txid_proven"], true, "{latest}");
    assert_eq!(
        latest["page_compare"]["pages"].as_u64().unwrap() as usize,
        pages_of_live(&db).len()
    );
    let random = &drills[1];
    assert_eq!(random["target"], "random-point");
    assert_eq!(random["ok"], true);
    let t = u64::from_str_radix(random["txid"].as_str().unwrap(), 16).unwrap();
    assert!((1..newest).contains(&t), "random point {t} of {newest}");
    // The scratch directory is cleaned up.
    assert_eq!(std::fs::read_dir(&scratch).unwrap().count(), 0);
    // Text output names RTO and RPO.
    let out = run_ok(&["verify", "-config", cfg.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("restored and integrity-checked in") && text.contains("RPO"),
        "{text}"
    );
    assert!(
        text.contains("equal to the source at the same TXID"),
        "{text}"
    );
}

#[test]
fn verify_skips_the_page_compare_honestly_when_the_source_moved_on() {
    let (_w, _db, _replica, cfg, app) = history(3);
    insert_rows(&app, 2, 100);
    let (ok, v) = verify_json(&["-config", cfg.to_str().unwrap()]);
    assert!(ok, "{v:#}");
    let c = &v["drills"][0]["page_compare"];
    assert_eq!(c["result"], "skipped", "{c}");
    assert!(
        c["reason"]
            .as_str()
            .unwrap()
            .contains("moved on since TXID"),
        "{c}"
    );
}

#[test]
fn verify_fails_on_a_corrupted_ltx_file_naming_it() {
    let (_w, _db, replica, cfg, _app) = history(5);
    let victim = l0_path(&replica, 3);
    let mut data = std::fs::read(&victim).unwrap();
    // Inside the first page frame's compressed data (header 100 B, frame header 10 B).
    assert!(data.len() > 200);
    data[140] ^= 0x5a;
    std::fs::write(&victim, &data).unwrap();
    let (ok, v) = verify_json(&["-config", cfg.to_str().unwrap()]);
    assert!(!ok, "{v:#}");
    let d = &v["drills"][0];
    let err = d["error"].as_str().unwrap();
    assert!(
        err.contains("L0/0000000000000003-0000000000000003.ltx"),
        "{err}"
    );
    assert!(d["hint"].as_str().unwrap().contains("damaged"), "{d}");
    // The text form says the same and exits non-zero.
    let out = run(&["verify", "-config", cfg.to_str().unwrap()]);
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("FAILED") && text.contains("0000000000000003-0000000000000003.ltx"),
        "{text}"
    );
}

#[test]
fn verify_fails_on_a_missing_ltx_file_naming_the_txids() {
    let (_w, _db, replica, cfg, _app) = history(5);
    std::fs::remove_file(l0_path(&replica, 3)).unwrap();
    let (ok, v) = verify_json(&["-config", cfg.to_str().unwrap()]);
    assert!(!ok, "{v:#}");
    let err = v["drills"][0]["error"].as_str().unwrap();
    assert!(
        err.contains("TXIDs 0000000000000003..=0000000000000003 are missing"),
        "{err}"
    );
    assert!(
        v["drills"][0]["hint"]
            .as_str()
            .unwrap()
            .contains("force-snapshot"),
        "{v:#}"
    );
}

#[test]
fn verify_by_url_compares_with_a_named_source() {
    let (_w, db, replica, _cfg, _app) = history(2);
    let url = format!("file://{}", replica.display());
    let (ok, v) = verify_json(&[&url, "-source", db.to_str().unwrap()]);
    assert!(ok, "{v:#}");
    assert_eq!(
        v["drills"][0]["page_compare"]["same_txid_proven"], true,
        "{v:#}"
    );
}
