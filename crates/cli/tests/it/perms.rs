//! File modes and temp-file safety (security issue 17), part of the hostile-replica set:
//! copies of a database are never readable by more users than the database; a symlink
//! planted at a temp name we would use, in a file replica or beside a restore's output, is
//! never written through; a symlink at the output path is refused; and an output path
//! with `?`, `#` or `%` is checked as itself, not as another file.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::harness::*;

/// Every test here runs the binary under the usual umask, whatever the environment's.
fn umask_022() {
    // SAFETY: umask(2) cannot fail; the children inherit it.
    unsafe { libc::umask(0o022) };
}

fn mode_of(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

/// `root` and everything under it: (path, is a directory, permission bits).
fn tree(root: &Path) -> Vec<(PathBuf, bool, u32)> {
    let mut out = vec![(root.to_path_buf(), true, mode_of(root))];
    for e in std::fs::read_dir(root).unwrap() {
        let p = e.unwrap().path();
        let m = std::fs::symlink_metadata(&p).unwrap();
        if m.is_dir() {
            out.extend(tree(&p));
        } else {
            out.push((p, false, m.permissions().mode() & 0o7777));
        }
    }
    out
}

/// A database with some rows and the given mode, and its replica URL (not yet written).
fn db_with_mode(w: &Work, mode: u32) -> (PathBuf, PathBuf, String) {
    let db = w.path("app.db");
    let app = app_db(&db);
    insert_rows(&app, 50, 3000);
    drop(app);
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(mode)).unwrap();
    let replica = w.path("replica");
    let url = format!("file://{}", replica.display());
    (db, replica, url)
}

/// Runs the binary with `args` and a pid known before it starts: a shell waits for a line
/// on stdin, `before` gets its pid, then it `exec`s the binary under the same pid. So a
/// test can plant names an attacker would guess from the pid.
fn run_with_pid(args: &[&str], before: impl FnOnce(u32)) -> Output {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(r#"read -r _ && exec "$0" "$@""#)
        .arg(bin())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    before(child.id());
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    child.wait_with_output().unwrap()
}

fn assert_ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn assert_tree_modes(root: &Path, file: u32, dir: u32) {
    let t = tree(root);
    assert!(t.iter().any(|(_, d, _)| !d), "{}: no file", root.display());
    for (p, is_dir, m) in t {
        let want = if is_dir { dir } else { file };
        assert_eq!(m, want, "{} is {m:o}, want {want:o}", p.display());
    }
}

#[test]
fn copies_of_a_0600_database_are_owner_only() {
    umask_022();
    let w = Work::new();
    let (db, replica, url) = db_with_mode(&w, 0o600);
    run_ok(&["replicate", "-once", db.to_str().unwrap(), &url]);
    assert_tree_modes(&w.path(".app.db-sqlite-replicate"), 0o600, 0o700);
    assert_tree_modes(&replica, 0o600, 0o700);
}

#[test]
fn copies_of_a_0640_database_are_at_most_0640() {
    umask_022();
    let w = Work::new();
    let (db, replica, url) = db_with_mode(&w, 0o640);
    run_ok(&["replicate", "-once", db.to_str().unwrap(), &url]);
    assert_tree_modes(&w.path(".app.db-sqlite-replicate"), 0o640, 0o750);
    assert_tree_modes(&replica, 0o640, 0o750);
}

#[test]
fn a_restored_database_is_owner_only_or_keeps_the_mode_it_replaces() {
    umask_022();
    let w = Work::new();
    let (db, _replica, url) = db_with_mode(&w, 0o644);
    run_ok(&["replicate", "-once", db.to_str().unwrap(), &url]);
    let out = w.path("out.db");
    run_ok(&["restore", "-o", out.to_str().unwrap(), &url]);
    assert_eq!(mode_of(&out), 0o600, "LTX records no mode: owner only");
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o640)).unwrap();
    run_ok(&["restore", "-force", "-o", out.to_str().unwrap(), &url]);
    assert_eq!(
        mode_of(&out),
        0o640,
        "-force keeps the replaced database's mode"
    );
    assert_same_pages(&pages_of_live(&db), &pages_of_file(&out), "restore");
}

#[test]
fn a_symlink_at_a_guessable_temp_name_in_a_file_replica_is_not_followed() {
    umask_022();
    let w = Work::new();
    let (db, replica, url) = db_with_mode(&w, 0o600);
    let victim = w.path("victim");
    std::fs::write(&victim, b"precious").unwrap();
    let name = "0000000000000001-0000000000000001.ltx";
    let out = run_with_pid(&["replicate", "-once", db.to_str().unwrap(), &url], |pid| {
        for level in ["0", "9"] {
            let dir = replica.join("ltx").join(level);
            std::fs::create_dir_all(&dir).unwrap();
            // What the old code named its temp files: `<name>.<pid>.tmp`.
            std::os::unix::fs::symlink(&victim, dir.join(format!("{name}.{pid}.tmp"))).unwrap();
        }
    });
    assert_ok(&out, "replicate");
    assert_eq!(
        std::fs::read(&victim).unwrap(),
        b"precious",
        "victim untouched"
    );
    let l0 = replica.join("ltx/0").join(name);
    assert!(
        std::fs::symlink_metadata(&l0).unwrap().is_file(),
        "a regular file"
    );
    let restored = w.path("restored.db");
    run_ok(&["restore", "-o", restored.to_str().unwrap(), &url]);
    assert_same_pages(&pages_of_live(&db), &pages_of_file(&restored), "restore");
}

#[test]
fn a_symlink_at_a_guessable_temp_name_beside_the_output_is_not_followed() {
    umask_022();
    let w = Work::new();
    let (db, _replica, url) = db_with_mode(&w, 0o600);
    run_ok(&["replicate", "-once", db.to_str().unwrap(), &url]);
    let victim = w.path("victim");
    std::fs::write(&victim, b"precious").unwrap();
    let out = w.path("out.db");
    let r = run_with_pid(&["restore", "-o", out.to_str().unwrap(), &url], |pid| {
        std::os::unix::fs::symlink(&victim, w.path(&format!("out.db.{pid}.tmp"))).unwrap();
    });
    assert_ok(&r, "restore");
    assert_eq!(
        std::fs::read(&victim).unwrap(),
        b"precious",
        "victim untouched"
    );
    assert!(
        std::fs::symlink_metadata(&out).unwrap().is_file(),
        "a regular file"
    );
    assert_same_pages(&pages_of_live(&db), &pages_of_file(&out), "restore");
}

#[test]
fn a_symlink_at_the_output_path_is_refused_not_followed_nor_replaced() {
    umask_022();
    let w = Work::new();
    let (db, _replica, url) = db_with_mode(&w, 0o600);
    run_ok(&["replicate", "-once", db.to_str().unwrap(), &url]);
    let victim = w.path("victim");
    std::fs::write(&victim, b"precious").unwrap();
    let out = w.path("out.db");
    std::os::unix::fs::symlink(&victim, &out).unwrap();
    let r = run(&["restore", "-force", "-o", out.to_str().unwrap(), &url]);
    assert!(!r.status.success(), "restore through a symlink must fail");
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert!(stderr.contains("symbolic link"), "{stderr}");
    assert_eq!(
        std::fs::read(&victim).unwrap(),
        b"precious",
        "victim untouched"
    );
    assert!(std::fs::symlink_metadata(&out)
        .unwrap()
        .file_type()
        .is_symlink());
    // A dangling link, where the restore would create the file: refused too.
    let absent = w.path("absent");
    let dangling = w.path("dangling.db");
    std::os::unix::fs::symlink(&absent, &dangling).unwrap();
    let r = run(&["restore", "-o", dangling.to_str().unwrap(), &url]);
    assert!(!r.status.success());
    assert!(!absent.exists(), "nothing created through the link");
}

#[test]
fn an_output_path_with_uri_characters_is_checked_as_itself() {
    umask_022();
    let w = Work::new();
    let (db, _replica, url) = db_with_mode(&w, 0o600);
    run_ok(&["replicate", "-once", db.to_str().unwrap(), &url]);
    for check in ["quick", "full"] {
        let out = w.path(&format!("out?x=1#y%20-{check}.db"));
        let o = out.to_str().unwrap();
        run_ok(&["restore", "-integrity-check", check, "-o", o, &url]);
        assert_same_pages(&pages_of_live(&db), &pages_of_file(&out), o);
    }
}
