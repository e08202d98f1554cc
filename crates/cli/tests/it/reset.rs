//! `reset`: clearing a database's local state lists (dry run) or removes only `<meta>/ltx`,
//! is refused while a replicator runs, and the next start continues the replica's TXIDs
//! with a full image that restores equal to the source.

use std::path::Path;
use std::time::Duration;

use crate::harness::*;

/// The files under the database's local `ltx` directory, sorted.
fn local_files(meta: &Path) -> Vec<String> {
    let mut v = Vec::new();
    if let Ok(rd) = std::fs::read_dir(meta.join("ltx/0")) {
        for e in rd {
            v.push(e.unwrap().file_name().to_string_lossy().into_owned());
        }
    }
    v.sort();
    v
}

/// Pages in a file replica's L0 file of `txid`, and its header's commit (database size).
fn l0_pages_and_commit(replica: &Path, txid: u64) -> (u32, u32) {
    let f = replica.join(format!("ltx/0/{txid:016x}-{txid:016x}.ltx"));
    let data = std::fs::read(&f).unwrap();
    let mut dec = ltx::Decoder::new(&data[..]).unwrap();
    let commit = dec.header().commit;
    let mut buf = vec![0u8; dec.header().page_size.bytes()];
    let mut pages = 0;
    while dec.next_page(&mut buf).unwrap().is_some() {
        pages += 1;
    }
    dec.finish().unwrap();
    (pages, commit)
}

#[test]
fn reset_dry_run_lists_reset_removes_and_next_start_writes_a_full_image_without_gap() {
    let w = Work::new();
    let db = w.path("app.db");
    let replica = w.path("replica");
    let meta = w.path(".app.db-sqlite-replicate");
    let cfg = w.file_config(&db, &replica, "");
    let (cfg_s, db_s) = (cfg.to_str().unwrap(), db.to_str().unwrap());
    let app = app_db(&db);
    insert_rows(&app, 30, 500);
    run_ok(&["replicate", "-once", "-config", cfg_s]);

    // A running replicator holds the meta directory: reset is refused and touches nothing.
    insert_rows(&app, 1, 10);
    let r = Replicator::start(&w, &["-config", cfg_s]);
    eventually(
        Duration::from_secs(20),
        "the replicator captures txid 2",
        || replica_max_txid(&replica) >= 2,
    );
    let held = local_files(&meta);
    assert!(!held.is_empty(), "the replicator keeps local files");
    for dry in [true, false] {
        let mut args = vec!["reset", "-config", cfg_s];
        if dry {
            args.push("-dry-run");
        }
        args.push(db_s);
        let o = run(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success(),
            "reset (dry run {dry}) while replicating must fail"
        );
        assert!(
            err.contains("a replicator is running"),
            "error says why: {err}"
        );
        assert_eq!(local_files(&meta), held, "a refused reset touches nothing");
    }
    assert_eq!(r.stop(), 0);
    let before = local_files(&meta);
    assert!(!before.is_empty());

    // Dry run: every file listed with its size, nothing removed.
    let o = run_ok(&["reset", "-config", cfg_s, "-dry-run", db_s]);
    let out = String::from_utf8_lossy(&o.stdout);
    for name in &before {
        let size = std::fs::metadata(meta.join("ltx/0").join(name))
            .unwrap()
            .len();
        assert!(
            out.contains(&format!(
                "would remove {} ({size} bytes)",
                meta.join("ltx/0").join(name).display()
            )),
            "dry run lists {name} with its size: {out}"
        );
    }
    assert_eq!(local_files(&meta), before, "a dry run removes nothing");

    // Reset: the local `ltx` goes, the database and the replica stay.
    let replica_before = replica_l0_txids(&replica);
    let o = run_ok(&["reset", "-config", cfg_s, db_s]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("removed"), "{out}");
    assert!(!meta.join("ltx").exists(), "the local state is gone");
    assert!(meta.is_dir(), "the meta directory itself stays");
    assert_eq!(replica_l0_txids(&replica), replica_before);

    // The next start: a full image at the next TXID, no gap, restores equal.
    insert_rows(&app, 1, 10);
    run_ok(&["replicate", "-once", "-config", cfg_s]);
    let l0 = replica_l0_txids(&replica);
    let next = replica_before.last().unwrap() + 1;
    assert_eq!(
        l0.last(),
        Some(&next),
        "one past the replica's newest: {l0:?}"
    );
    for pair in l0.windows(2) {
        assert_eq!(pair[1], pair[0] + 1, "L0 TXIDs contiguous: {l0:?}");
    }
    let (pages, commit) = l0_pages_and_commit(&replica, next);
    assert!(commit > 3, "the database spans several pages ({commit})");
    assert_eq!(
        pages, commit,
        "the first file after a reset is a full image"
    );
    let want = pages_of_live(&db);
    restore_and_compare(&cfg, &db, &w.path("restored.db"), &want, &[]);
}

#[test]
fn reset_refuses_a_symlinked_meta_dir_and_an_unknown_database() {
    let w = Work::new();
    let db = w.path("app.db");
    let replica = w.path("replica");
    let real = w.path("real-meta");
    let link = w.path("meta-link");
    let cfg = w.file_config(
        &db,
        &replica,
        &format!("    meta-path: {}\n", link.display()),
    );
    let app = app_db(&db);
    insert_rows(&app, 5, 100);
    std::fs::create_dir(&real).unwrap();
    std::fs::create_dir_all(real.join("ltx/0")).unwrap();
    std::fs::write(real.join("ltx/0/keep"), b"x").unwrap();
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let (cfg_s, db_s) = (cfg.to_str().unwrap(), db.to_str().unwrap());
    let o = run(&["reset", "-config", cfg_s, db_s]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("symlink"), "{err}");
    assert!(
        real.join("ltx/0/keep").exists(),
        "nothing removed through the link"
    );
    let o = run(&[
        "reset",
        "-config",
        cfg_s,
        w.path("other.db").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("not in the config"));
}
