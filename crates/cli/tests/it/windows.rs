//! The Windows end-to-end tests: `sqlite-replicate.exe` (cross-built for
//! x86_64-pc-windows-gnu) runs under Wine beside `winwriter.exe` (crates/winwriter, a
//! Windows SQLite application), against a file replica on the prefix's `C:` drive and a real
//! Garage server on loopback (a Linux process; Wine programs reach 127.0.0.1 as usual).
//! Each ends with a kill of the replicator, restores by the exe, and a page-for-page
//! comparison with the source as the Windows writer last committed it; the VFS test
//! queries the replicas through the extension's DLL loaded by the Windows writer instead.
//!
//! They need the Windows build and a prepared Wine prefix, so a plain `cargo test` lists
//! them as ignored; scripts/windows/test.sh (called by scripts/test.sh) builds the exes, runs
//! scripts/windows/setup.sh and runs them with `--ignored`, with `$WINEPREFIX` and
//! `$SQLITE_REPLICATE_WINDOWS_BIN` (the directory of the `.exe`s) set by
//! scripts/windows/env.sh. Run with `--ignored` without those, they fail and say so.
//!
//! Paths handed to the Windows programs are Windows paths (`C:\sr-it\...` in the config,
//! `-o C:\...`, `file:///C:/...` URLs); the test reads the same files through the prefix's
//! `drive_c` directory. The probes that wait for the replicas to catch up use the Linux
//! binary (faster under a busy machine); every restore that is compared is the exe's.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use crate::garage::{Garage, REGION};
use crate::harness::*;

const NEEDS: &str = "needs the Windows build under Wine: scripts/windows/test.sh";

/// How long a step under Wine may take on a loaded 2-core machine before the test fails.
pub(crate) const WINE_DEADLINE: Duration = Duration::from_secs(180);

/// The Windows exes and the prefix they run in, from the environment the suite script sets.
pub(crate) struct Win {
    bin: PathBuf,
    drive_c: PathBuf,
}

pub(crate) fn win() -> Win {
    let var = |name: &str| {
        std::env::var_os(name).unwrap_or_else(|| {
            panic!("${name} is not set: these tests {NEEDS} (it sets it through scripts/windows/env.sh)")
        })
    };
    let bin = PathBuf::from(var("SQLITE_REPLICATE_WINDOWS_BIN"));
    let prefix = PathBuf::from(var("WINEPREFIX"));
    for exe in ["sqlite-replicate.exe", "winwriter.exe"] {
        assert!(
            bin.join(exe).is_file(),
            "{} is missing: these tests {NEEDS}",
            bin.join(exe).display()
        );
    }
    let drive_c = prefix.join("drive_c");
    assert!(
        drive_c
            .join("windows/system32/bcryptprimitives.dll")
            .is_file(),
        "{} is not a prepared Wine prefix: these tests {NEEDS}",
        prefix.display()
    );
    Win { bin, drive_c }
}

impl Win {
    /// The directory of the Windows exes.
    pub(crate) fn bin(&self) -> &std::path::Path {
        &self.bin
    }

    /// The prefix's `C:` drive, as the Linux side sees it.
    pub(crate) fn drive_c(&self) -> &std::path::Path {
        &self.drive_c
    }

    /// `wine EXE ARGS` for one of the suite's exes.
    pub(crate) fn cmd(&self, exe: &str, args: &[&str]) -> Command {
        let mut c = Command::new("wine");
        c.arg(self.bin.join(exe)).args(args);
        // No config from the environment of whoever runs the suite.
        c.env_remove("SQLITE_REPLICATE_CONFIG")
            .env_remove("LITESTREAM_CONFIG");
        // A Linux CA bundle path means nothing to a Windows program (it reads as a missing
        // file, and the S3 client fails to build); the endpoints here are plain HTTP.
        c.env_remove("AWS_CA_BUNDLE");
        c
    }

    /// Runs `winwriter ARGS` to completion and returns its stdout, which must be success.
    pub(crate) fn writer(&self, args: &[&str]) -> String {
        let out = self.cmd("winwriter.exe", args).output().unwrap();
        ok_output("winwriter.exe", args, &out)
    }

    /// Runs `sqlite-replicate.exe ARGS` (with extra environment) to completion.
    pub(crate) fn exe(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut c = self.cmd("sqlite-replicate.exe", args);
        c.envs(env.iter().copied());
        c.output().unwrap()
    }

    /// Starts `sqlite-replicate.exe replicate -config CFG` with `RUST_LOG=debug` and waits
    /// until its `replicas` replica tasks have started.
    pub(crate) fn replicator(&self, work: &WinWork, cfg: &str, replicas: usize) -> Proc {
        let mut c = self.cmd("sqlite-replicate.exe", &["replicate", "-config", cfg]);
        c.env("RUST_LOG", "debug");
        let mut p = Proc::spawn(
            "sqlite-replicate.exe replicate",
            c,
            work.linux("replicate.log"),
        );
        p.wait_for_lines(REPLICA_STARTED, replicas, WINE_DEADLINE);
        p
    }
}

pub(crate) fn ok_output(what: &str, args: &[&str], out: &Output) -> String {
    assert!(
        out.status.success(),
        "{what} {args:?} failed ({}): {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).replace('\r', "")
}

/// A fresh directory on the prefix's `C:` drive (`C:\sr-it\sr-win-XXXX`), removed on drop.
pub(crate) struct WinWork {
    dir: tempfile::TempDir,
    name: String,
}

impl WinWork {
    pub(crate) fn new(w: &Win) -> WinWork {
        let root = w.drive_c.join("sr-it");
        std::fs::create_dir_all(&root).unwrap();
        let dir = tempfile::Builder::new()
            .prefix("sr-win-")
            .tempdir_in(&root)
            .unwrap();
        let name = dir
            .path()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        WinWork { dir, name }
    }

    /// `name` in the directory, as the Linux side sees it.
    pub(crate) fn linux(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `name` in the directory, as a Windows path (`C:\sr-it\...\name`).
    pub(crate) fn win(&self, name: &str) -> String {
        format!(r"C:\sr-it\{}\{name}", self.name)
    }

    /// `name` in the directory as a `file:///C:/...` URL.
    pub(crate) fn url(&self, name: &str) -> String {
        format!("file:///C:/sr-it/{}/{name}", self.name)
    }

    /// Writes `body` to `sr.yml` and returns its Windows path.
    pub(crate) fn config(&self, body: &str) -> String {
        std::fs::write(self.linux("sr.yml"), body).unwrap();
        self.win("sr.yml")
    }
}

/// The committed pages of the source, read by the Windows writer (SQLite's Windows VFS and
/// its locks; the Linux side never opens a database a Windows process has open).
pub(crate) fn source_pages(w: &Win, work: &WinWork, db: &str) -> Vec<Vec<u8>> {
    let out = w.writer(&["dump", db, &work.win("source-pages.bin")]);
    assert!(out.starts_with("pages "), "winwriter dump: {out}");
    pages_of_file(&work.linux("source-pages.bin"))
}

/// Waits until the Linux binary restores `url` (env: `env`) to exactly `want`.
pub(crate) fn wait_url_has(work: &WinWork, url: &str, env: &[(&str, &str)], want: &[Vec<u8>]) {
    let mut n = 0;
    wait_for(
        &format!("{url} to restore to the source"),
        WINE_DEADLINE,
        || {
            n += 1;
            let out = work.linux(&format!("probe-{n}.db"));
            let r = Command::new(bin())
                .args(["restore", "-o", out.to_str().unwrap(), url])
                .envs(env.iter().copied())
                .output()
                .unwrap();
            let same = r.status.success() && pages_of_file(&out) == want;
            let _ = std::fs::remove_file(&out);
            same.then_some(())
        },
    );
}

/// Waits until the file replica in the work directory's `replica` and `s3_url` (read
/// with `keys`) both restore to exactly `want`, probed by the Linux binary.
fn wait_file_and_s3(work: &WinWork, s3_url: &str, keys: &[(&str, &str)], want: &[Vec<u8>]) {
    let replica_url = format!("file://{}", work.linux("replica").display());
    wait_url_has(work, &replica_url, &[], want);
    wait_url_has(work, s3_url, keys, want);
}

/// The `s3://` URL of `path` in Garage's bucket, and the keys that read it.
fn garage_url<'a>(g: &'a Garage, path: &str) -> (String, [(&'static str, &'a str); 2]) {
    let url = format!(
        "s3://{}/{path}?endpoint={}&region={REGION}&forcePathStyle=true",
        g.bucket,
        g.endpoint()
    );
    let keys = [
        ("AWS_ACCESS_KEY_ID", g.key_id.as_str()),
        ("AWS_SECRET_ACCESS_KEY", g.secret.as_str()),
    ];
    (url, keys)
}

/// `sqlite-replicate.exe restore -integrity-check full -o OUT ARGS...` into the work
/// directory's `out`, then the page-for-page comparison with `want`.
pub(crate) fn exe_restore_equals(
    w: &Win,
    work: &WinWork,
    out: &str,
    args: &[&str],
    env: &[(&str, &str)],
    want: &[Vec<u8>],
) {
    let o = work.win(out);
    let mut all = vec!["restore", "-integrity-check", "full", "-o", &o];
    all.extend_from_slice(args);
    let r = w.exe(&all, env);
    ok_output("sqlite-replicate.exe", &all, &r);
    assert_same_pages(
        want,
        &pages_of_file(&work.linux(out)),
        &format!("sqlite-replicate.exe {all:?}"),
    );
}

/// The `replicas:` entry of a config for Garage (list item at 6 spaces), `path` in the bucket.
pub(crate) fn garage_replica(g: &Garage, path: &str) -> String {
    format!(
        "      - name: s3\n        type: s3\n        bucket: {}\n        path: {path}\n        endpoint: {}\n        region: {REGION}\n        force-path-style: true\n        access-key-id: {}\n        secret-access-key: {}\n",
        g.bucket,
        g.endpoint(),
        g.key_id,
        g.secret
    )
}

#[test]
#[ignore = "needs the Windows build under Wine: scripts/windows/test.sh"]
fn windows_writer_and_exe_to_file_and_garage_then_kill_and_restore() {
    let w = win();
    let g = Garage::start();
    let work = WinWork::new(&w);
    let db = work.win("app.db");
    w.writer(&["write", &db, "20", "300"]);
    // Windows paths in the config: drive letter and backslashes, as a Windows user writes.
    let cfg = work.config(&format!(
        "dbs:\n  - path: {db}\n    replicas:\n      - name: file\n        type: file\n        path: {}\n{}",
        work.win("replica"),
        garage_replica(&g, "win/app")
    ));
    let mut r = w.replicator(&work, &cfg, 2);

    // The Windows application commits while the exe streams: small transactions, batches,
    // a growth of the file, deletes.
    for i in 0..12 {
        let size = (200 + 150 * (i % 7)).to_string();
        w.writer(&["write", &db, "6", &size]);
        if i % 4 == 3 {
            w.writer(&["write", &db, "60", "3000", "60"]);
        }
    }
    let want = source_pages(&w, &work, &db);
    assert!(want.len() > 40, "the source grew: {} pages", want.len());

    // Both replicas catch up (probed by the Linux binary), then the replicator is killed:
    // no final sync, so what restores below is what it had shipped while running.
    let (s3_url, keys) = garage_url(&g, "win/app");
    wait_file_and_s3(&work, &s3_url, &keys, &want);
    assert!(
        r.exited().is_none(),
        "the replicator is still running before the kill; log tail:\n{}",
        r.log_tail(4000)
    );
    r.kill9();

    // Restores by the exe: by config (Windows paths), by a file:///C:/ URL, by an S3 URL.
    exe_restore_equals(
        &w,
        &work,
        "by-config.db",
        &["-config", &cfg, &db],
        &[],
        &want,
    );
    exe_restore_equals(
        &w,
        &work,
        "by-file-url.db",
        &[&work.url("replica")],
        &[],
        &want,
    );
    exe_restore_equals(&w, &work, "by-s3-url.db", &[&s3_url], &keys, &want);
}

#[test]
#[ignore = "needs the Windows build under Wine: scripts/windows/test.sh"]
fn windows_application_checkpoints_of_every_mode() {
    let w = win();
    let work = WinWork::new(&w);
    let db = work.win("app.db");
    w.writer(&["write", &db, "10", "500"]);
    let cfg = work.config(&format!(
        "dbs:\n  - path: {db}\n    replicas:\n      - type: file\n        path: {}\n",
        work.win("replica")
    ));
    let mut r = w.replicator(&work, &cfg, 1);

    // Each checkpoint from the Windows application (its busy timeout is 5 s, as an
    // application's would be) completes: the replicator's read-transaction pin never makes
    // one report busy, and RESTART and TRUNCATE (which wait for every reader of the WAL)
    // still get through.
    let mut results = Vec::new();
    for mode in [
        "PASSIVE", "FULL", "RESTART", "TRUNCATE", "PASSIVE", "TRUNCATE",
    ] {
        w.writer(&["write", &db, "10", "3000"]);
        let line = w.writer(&["checkpoint", &db, mode]);
        results.push(line.trim().to_string());
        w.writer(&["write", &db, "5", "100"]);
    }
    let field = |line: &str, key: &str| -> i64 {
        line.split_whitespace()
            .find_map(|f| f.strip_prefix(key))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {key} in {line:?}"))
    };
    for line in &results {
        assert_eq!(
            field(line, "busy="),
            0,
            "a checkpoint reported busy: {results:#?}"
        );
        let (log, done) = (field(line, "log="), field(line, "checkpointed="));
        if line.contains(" TRUNCATE ") {
            assert_eq!(
                (log, done),
                (0, 0),
                "TRUNCATE emptied the WAL: {results:#?}"
            );
        } else if !line.contains(" PASSIVE ") {
            assert_eq!(log, done, "every frame checkpointed: {results:#?}");
        }
    }

    // Nothing lost: the replica catches up to the source, and after a kill the exe restores
    // it page for page.
    let want = source_pages(&w, &work, &db);
    let replica_url = format!("file://{}", work.linux("replica").display());
    wait_url_has(&work, &replica_url, &[], &want);
    r.kill9();
    exe_restore_equals(
        &w,
        &work,
        "restored.db",
        &["-config", &cfg, &db],
        &[],
        &want,
    );
}

#[test]
#[ignore = "needs the Windows build under Wine: scripts/windows/test.sh"]
fn windows_control_socket_is_a_named_pipe_and_sync_wait_works_through_it() {
    let w = win();
    let work = WinWork::new(&w);
    let db = work.win("app.db");
    w.writer(&["write", &db, "10", "300"]);
    let pipe = format!(r"\\.\pipe\sr-it-ctl-{}", std::process::id());
    // A sync-interval of an hour: after the first capture, only a sync request through
    // the pipe ships a commit while the replicator runs.
    let cfg = work.config(&format!(
        "socket:\n  enabled: true\n  path: {pipe}\ndbs:\n  - path: {db}\n    replicas:\n      - type: file\n        path: {}\n        sync-interval: 1h\n",
        work.win("replica")
    ));
    let mut r = w.replicator(&work, &cfg, 1);
    let list = wait_for(
        "the database listed through the pipe",
        WINE_DEADLINE,
        || {
            let out = w.exe(&["list", "-socket", &pipe, "-json"], &[]);
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            (out.status.success() && text.contains("replicating")).then_some(text)
        },
    );
    assert!(list.contains("app.db"), "{list}");

    w.writer(&["write", &db, "25", "2000"]);
    let want = source_pages(&w, &work, &db);
    let args = [
        "sync", "-socket", &pipe, "-wait", "-timeout", "60", "-json", &db,
    ];
    let out = w.exe(&args, &[]);
    let text = ok_output("sqlite-replicate.exe", &args, &out);
    let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap_or_else(|e| {
        panic!("sync -json answered {text:?}: {e}");
    });
    let txid = v["txid"].as_u64().unwrap_or_else(|| panic!("{v}"));
    assert_eq!(v["replica_txid"].as_u64(), Some(txid), "{v}");
    assert!(txid > 1, "the commit after the first capture: {v}");

    // Killed at once (no final sync): the replica holds the commit `sync -wait` shipped.
    assert!(r.exited().is_none(), "log tail:\n{}", r.log_tail(4000));
    r.kill9();
    exe_restore_equals(
        &w,
        &work,
        "restored.db",
        &[&work.url("replica")],
        &[],
        &want,
    );
}

/// The VFS extension as a Windows DLL (`sqlite_replicate_vfs.dll`), loaded by a Windows
/// SQLite application (winwriter, through `load_extension`) under Wine: a query through it
/// answers what the source holds, from a file replica (by a `C:\` path and by a
/// `file:///C:/` URL) and from Garage (an `s3://` URL); a damaged LTX file is an error
/// naming it.
#[test]
#[ignore = "needs the Windows build under Wine: scripts/windows/test.sh"]
fn windows_vfs_dll_queries_file_and_garage_replicas_as_the_source() {
    let w = win();
    let built = w.bin().join("sqlite_replicate_vfs.dll");
    assert!(built.is_file(), "{} is missing: {NEEDS}", built.display());
    let g = Garage::start();
    let work = WinWork::new(&w);
    // Beside the database on C:, so the application names it by a Windows path.
    std::fs::copy(&built, work.linux("sqlite_replicate_vfs.dll")).unwrap();
    let dll = work.win("sqlite_replicate_vfs.dll");
    let db = work.win("app.db");
    // About 700 KB: the snapshot is read by ranges (header, index, page runs), not whole.
    w.writer(&["write", &db, "600", "1000", "100"]);
    let cfg = work.config(&format!(
        "dbs:\n  - path: {db}\n    replicas:\n      - name: file\n        type: file\n        path: {}\n{}",
        work.win("replica"),
        garage_replica(&g, "win/vfs")
    ));
    let mut r = w.replicator(&work, &cfg, 2);
    // Later transactions, in level 0 over the snapshot.
    w.writer(&["write", &db, "5", "300"]);
    w.writer(&["write", &db, "20", "2000", "20"]);
    let pages = source_pages(&w, &work, &db);
    let (s3_url, keys) = garage_url(&g, "win/vfs");
    wait_file_and_s3(&work, &s3_url, &keys, &pages);
    r.kill9();

    let sql = "SELECT id, v FROM t ORDER BY id";
    let want = w.writer(&["query", &db, sql]);
    assert_eq!(want.lines().count(), 625, "the source's rows: {want:.200}");
    // The replica parameter as a URI query value: its `?`, `&` and `=` percent-encoded.
    let uri = |replica: &str| {
        let enc = replica
            .replace('%', "%25")
            .replace('?', "%3F")
            .replace('&', "%26")
            .replace('=', "%3D");
        format!("file:app.db?vfs=sqlite-replicate&replica={enc}")
    };
    let vfs_query = |replica: &str, env: &[(&str, &str)]| {
        let args = ["vfs-query", &dll, &uri(replica), sql];
        let mut c = w.cmd("winwriter.exe", &args);
        c.envs(env.iter().copied());
        (args.map(str::to_string), c.output().unwrap())
    };
    for (what, replica, env) in [
        ("a C:\\ path", work.win("replica"), &[][..]),
        ("a file:///C:/ URL", work.url("replica"), &[][..]),
        ("Garage", s3_url.clone(), &keys[..]),
    ] {
        let (args, out) = vfs_query(&replica, env);
        let got = ok_output("winwriter.exe", &args.each_ref().map(String::as_str), &out);
        assert!(
            got == want,
            "the DLL's answer from {what} differs from the source's ({} lines, {} expected)",
            got.lines().count(),
            want.lines().count()
        );
    }

    // A damaged page frame in the snapshot (the file the plan starts from): the query
    // fails and the error names the object.
    let level9 = work.linux("replica").join("ltx").join("9");
    let snapshot = std::fs::read_dir(&level9)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "ltx"))
        .unwrap_or_else(|| panic!("no snapshot in {}", level9.display()));
    let name = snapshot.file_name().unwrap().to_str().unwrap().to_string();
    let mut bytes = std::fs::read(&snapshot).unwrap();
    let index = ltx::parse_page_index(&bytes).unwrap();
    let e = index[index.len() / 2];
    bytes[e.offset as usize + 3] ^= 0x01; // the frame's page number
    std::fs::write(&snapshot, &bytes).unwrap();
    let (args, out) = vfs_query(&work.win("replica"), &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains(&name),
        "{args:?} on a damaged snapshot: {} and no error naming {name}:\n{err}",
        out.status
    );
}
