//! Bad input: damaged replicas (a flipped byte, a truncated, misnamed or missing LTX file),
//! names that try to leave the replica, a restore killed half way, and databases the
//! replicator cannot follow (not SQLite, not in WAL mode). Each gets one clear error naming
//! what is wrong and where, and never a database at the output path.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::harness::*;

/// A file replica with L0 files 1..=4 (one `replicate -once` each) and the source's pages.
fn four_txids(w: &Work) -> (PathBuf, Vec<Vec<u8>>) {
    let db = w.path("app.db");
    let replica = w.path("replica");
    let url = format!("file://{}", replica.display());
    let app = app_db(&db);
    for _ in 0..4 {
        insert_rows(&app, 20, 700);
        run_ok(&["replicate", "-once", db.to_str().unwrap(), &url]);
    }
    assert_eq!(replica_l0_txids(&replica), vec![1, 2, 3, 4]);
    (replica, pages_of_live(&db))
}

fn l0(replica: &Path, t: u64) -> PathBuf {
    replica.join(format!("ltx/0/{t:016x}-{t:016x}.ltx"))
}

/// Copies a replica directory tree (two levels of directories is all a file replica has).
fn copy_replica(from: &Path, to: &Path) {
    for entry in walk(from) {
        let rel = entry.strip_prefix(from).unwrap();
        let dst = to.join(rel);
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        std::fs::copy(&entry, &dst).unwrap();
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Restores from `replica` and expects failure; returns stderr. The output must not exist,
/// nor any temp file beside it.
fn restore_fails(w: &Work, replica: &Path, what: &str) -> String {
    let out = w.path(&format!("{what}.db"));
    let o = run(&[
        "restore",
        "-o",
        out.to_str().unwrap(),
        &format!("file://{}", replica.display()),
    ]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success(), "{what}: restore succeeded");
    assert!(!out.exists(), "{what}: a database was produced");
    let leftovers: Vec<_> = std::fs::read_dir(w.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&format!("{what}.db")))
        .collect();
    assert!(leftovers.is_empty(), "{what}: left behind {leftovers:?}");
    assert_eq!(
        err.lines().filter(|l| l.starts_with("error:")).count(),
        1,
        "{what}: one error line:\n{err}"
    );
    err
}

#[test]
fn damaged_replica_files_fail_naming_file_txid_and_offset() {
    let w = Work::new();
    let (good, want) = four_txids(&w);

    // A flipped byte in the middle of TXID 3's page data.
    let flipped = w.path("flipped");
    copy_replica(&good, &flipped);
    let f = l0(&flipped, 3);
    let mut data = std::fs::read(&f).unwrap();
    let at = data.len() / 2;
    data[at] ^= 0x40;
    std::fs::write(&f, &data).unwrap();
    let err = restore_fails(&w, &flipped, "flipped");
    assert!(
        err.contains("L0/0000000000000003-0000000000000003.ltx") && err.contains("at byte"),
        "flipped byte: file, TXID and offset named:\n{err}"
    );

    // TXID 2 cut in half (a torn upload by some other tool, a truncated copy).
    let truncated = w.path("truncated");
    copy_replica(&good, &truncated);
    let f = l0(&truncated, 2);
    let data = std::fs::read(&f).unwrap();
    std::fs::write(&f, &data[..data.len() / 2]).unwrap();
    let err = restore_fails(&w, &truncated, "truncated");
    assert!(
        err.contains("L0/0000000000000002-0000000000000002.ltx")
            && err.contains("at byte")
            && err.contains("unexpected end of file"),
        "truncated: file, TXID and offset named:\n{err}"
    );

    // TXID 3's file copied over TXID 4's name: its header disagrees with the name.
    let misnamed = w.path("misnamed");
    copy_replica(&good, &misnamed);
    std::fs::copy(l0(&misnamed, 3), l0(&misnamed, 4)).unwrap();
    let err = restore_fails(&w, &misnamed, "misnamed");
    assert!(
        err.contains("L0/0000000000000004-0000000000000004.ltx")
            && err.contains("0000000000000003-0000000000000003")
            && err.contains("at byte 16")
            && err.contains("misnamed"),
        "misnamed: file, TXIDs and offset named:\n{err}"
    );

    // TXID 2 missing: a gap, named by TXID range and the files around it.
    let missing = w.path("missing");
    copy_replica(&good, &missing);
    std::fs::remove_file(l0(&missing, 2)).unwrap();
    let err = restore_fails(&w, &missing, "missing");
    assert!(
        err.contains("gap")
            && err.contains("0000000000000002..=0000000000000002")
            && err.contains("0000000000000001")
            && err.contains("0000000000000003"),
        "missing: the gap named:\n{err}"
    );

    // Not an LTX file at all under a valid name.
    let junk = w.path("junk");
    copy_replica(&good, &junk);
    std::fs::write(l0(&junk, 4), b"<html>503 Service Unavailable</html>").unwrap();
    let err = restore_fails(&w, &junk, "junk");
    assert!(
        err.contains("L0/0000000000000004-0000000000000004.ltx")
            && err.contains("at byte 36: bad header"),
        "junk: named:\n{err}"
    );

    // The undamaged replica still restores to the source.
    let out = w.path("good.db");
    run_ok(&[
        "restore",
        "-integrity-check",
        "full",
        "-o",
        out.to_str().unwrap(),
        &format!("file://{}", good.display()),
    ]);
    assert_same_pages(&want, &pages_of_file(&out), "undamaged replica");
}

/// Names in a replica never become paths outside the output: LTX and Litestream 0.3 names
/// are parsed strictly (16 hex digits), so `..`, slashes or other names are ignored, and a
/// `-generation` that is not a generation name is refused.
#[test]
fn names_that_try_to_escape_are_refused() {
    let w = Work::new();
    let (good, want) = four_txids(&w);
    // Decoys: names with `..`, a level directory that is a symlink out of the replica, a
    // name that is almost an LTX name.
    let outside = w.path("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::copy(
        l0(&good, 4),
        outside.join("0000000000000005-0000000000000005.ltx"),
    )
    .unwrap();
    std::os::unix::fs::symlink(&outside, good.join("ltx/0/..%2f..%2foutside")).unwrap();
    std::fs::write(good.join("ltx/0/..-0000000000000009.ltx"), b"x").unwrap();
    std::fs::write(
        good.join("ltx/0/0000000000000009-0000000000000009.ltx.tmp"),
        b"x",
    )
    .unwrap();
    std::fs::create_dir_all(good.join("generations/../../escape")).unwrap();
    let out = w.path("out.db");
    run_ok(&[
        "restore",
        "-o",
        out.to_str().unwrap(),
        &format!("file://{}", good.display()),
    ]);
    assert_same_pages(&want, &pages_of_file(&out), "decoys ignored");
    assert!(!w.path("escape").join("out.db").exists());

    // A Litestream 0.3 replica with a decoy generation; -generation with a path is refused.
    let v3 = w.path("v3");
    std::fs::create_dir_all(v3.join("generations/0123456789abcdef/snapshots")).unwrap();
    std::fs::write(
        v3.join("generations/0123456789abcdef/snapshots/00000000.snapshot.lz4"),
        b"not reached",
    )
    .unwrap();
    for generation in ["../../../tmp", "..%2f..", "0123456789ABCDEF"] {
        let o = run(&[
            "restore",
            "-generation",
            generation,
            "-o",
            w.path("v3.db").to_str().unwrap(),
            &format!("file://{}", v3.display()),
        ]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "-generation {generation} accepted");
        assert!(!w.path("v3.db").exists());
        assert!(
            err.contains(generation),
            "-generation {generation}: the error names it:\n{err}"
        );
    }
}

/// `kill -9` of a restore half way leaves the output path untouched; the next restore
/// removes the dead one's temp file and succeeds.
#[test]
fn restore_killed_half_way_leaves_output_untouched() {
    let w = Work::new();
    let db = w.path("app.db");
    let replica = w.path("replica");
    let url = format!("file://{}", replica.display());
    let app = app_db(&db);
    app.execute_batch("PRAGMA cache_size=-100000").unwrap();
    let tx = app.unchecked_transaction().unwrap();
    insert_rows(&tx, 12_000, 4000); // about 50 MiB
    tx.commit().unwrap();
    run_ok(&["replicate", "-once", db.to_str().unwrap(), &url]);
    let want = pages_of_live(&db);
    let out = w.path("out.db");
    let mut killed_mid_write = 0;
    for delay_ms in [0u64, 0, 20, 80] {
        let mut child = std::process::Command::new(bin())
            .args(["restore", "-o", out.to_str().unwrap(), &url])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // The temp file is `out.db.<pid>.<random>.tmp` (security issue 17: not guessable).
        let prefix = format!("out.db.{}.", child.id());
        let tmp_exists = || {
            std::fs::read_dir(w.dir.path()).unwrap().flatten().any(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                n.starts_with(&prefix) && n.ends_with(".tmp")
            })
        };
        eventually(Duration::from_secs(60), "the restore's temp file", || {
            tmp_exists() || child.try_wait().unwrap().is_some()
        });
        // Not a wait for a state: the kill lands at a chosen moment of the write.
        std::thread::sleep(Duration::from_millis(delay_ms));
        child.kill().unwrap();
        let status = child.wait().unwrap();
        if status.code().is_none() && tmp_exists() {
            killed_mid_write += 1;
        }
        // The kill may land after the restore finished (or after its final rename): the
        // output path is then allowed to exist, but only whole and verified.
        if out.exists() {
            assert_same_pages(
                &want,
                &pages_of_file(&out),
                "a restore the kill came too late for",
            );
            std::fs::remove_file(&out).unwrap();
        }
    }
    assert!(killed_mid_write > 0, "no restore was killed mid-write");
    let o = run_ok(&[
        "restore",
        "-integrity-check",
        "full",
        "-o",
        out.to_str().unwrap(),
        &url,
    ]);
    let _ = o;
    assert_same_pages(&want, &pages_of_file(&out), "restore after killed restores");
    let left: Vec<_> = std::fs::read_dir(w.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("out.db."))
        .collect();
    assert!(
        left.is_empty(),
        "dead restores' temp files removed: {left:?}"
    );
}

/// Runs `replicate DB URL` (the daemon, not -once) and returns its stderr once it exits,
/// failing if it keeps running.
fn replicate_exits(db: &Path, url: &str) -> (i32, String) {
    let mut child = std::process::Command::new(bin())
        .args(["replicate", db.to_str().unwrap(), url])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_timeout(&mut child, Duration::from_secs(30));
    let _ = child.kill();
    let mut err = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = status.unwrap_or_else(|| panic!("replicate kept running:\n{err}"));
    (status.code().unwrap_or(-1), err)
}

#[test]
fn databases_the_replicator_cannot_follow_get_one_clear_error() {
    let w = Work::new();
    let url = format!("file://{}", w.path("replica").display());
    // Not SQLite.
    let junk = w.path("junk.db");
    std::fs::write(&junk, vec![7u8; 8192]).unwrap();
    for once in [true, false] {
        let (code, err) = if once {
            let o = run(&["replicate", "-once", junk.to_str().unwrap(), &url]);
            (
                o.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&o.stderr).into_owned(),
            )
        } else {
            replicate_exits(&junk, &url)
        };
        assert_ne!(code, 0);
        assert!(
            err.contains("not a SQLite database") && err.contains("junk.db"),
            "not SQLite (once={once}):\n{err}"
        );
    }
    // SQLite in rollback-journal mode: refused, never switched to WAL behind the app's back.
    let rollback = w.path("rollback.db");
    let c = rusqlite::Connection::open(&rollback).unwrap();
    c.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
        .unwrap();
    drop(c);
    for once in [true, false] {
        let (code, err) = if once {
            let o = run(&["replicate", "-once", rollback.to_str().unwrap(), &url]);
            (
                o.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&o.stderr).into_owned(),
            )
        } else {
            replicate_exits(&rollback, &url)
        };
        assert_ne!(code, 0);
        assert!(
            err.contains("not WAL") && err.contains("journal_mode=WAL"),
            "rollback journal (once={once}):\n{err}"
        );
    }
    let c = rusqlite::Connection::open(&rollback).unwrap();
    let mode: String = c
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        mode, "delete",
        "the journal mode was left as the application set it"
    );
    assert!(!w.path("replica/ltx").exists(), "nothing was uploaded");
}

/// A bad value of a Litestream key (`max-sync-ltx-files: lots`) is refused before
/// anything starts: a non-zero exit with one error naming the key's path and the value,
/// and nothing written (no meta directory, no replica, the database unchanged). (Every
/// Litestream key is acted on since parity issue 18, so none is refused for itself.)
#[test]
fn replicate_refuses_a_bad_value_touching_nothing() {
    let w = Work::new();
    let db = w.path("app.db");
    let app = app_db(&db);
    insert_rows(&app, 10, 100);
    drop(app);
    let before = std::fs::read(&db).unwrap();
    let replica = w.path("replica");
    let cfg = w.config(&format!(
        "dbs:\n  - path: {}\n    replica:\n      name: near\n      path: {}\n      max-sync-ltx-files: lots\n",
        db.display(),
        replica.display()
    ));
    let mut child = std::process::Command::new(bin())
        .args(["replicate", "-config", cfg.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_timeout(&mut child, Duration::from_secs(30));
    let _ = child.kill();
    let mut err = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = status.unwrap_or_else(|| panic!("replicate kept running:\n{err}"));
    assert_ne!(status.code(), Some(0), "{err}");
    assert!(
        err.contains("dbs[0].replica.max-sync-ltx-files:") && err.contains("\"lots\""),
        "{err}"
    );
    assert!(!replica.exists(), "a replica was written");
    let mut names: Vec<String> = std::fs::read_dir(w.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["app.db", "sr.yml"], "files beside the database");
    assert_eq!(std::fs::read(&db).unwrap(), before, "the database changed");
}
