//! The VFS extension (`crates/vfs`, `libsqlite_replicate_vfs.so`) loaded into real hosts:
//! Debian's `sqlite3` shell, Debian's Python `sqlite3` module and the JVM (sqlite-jdbc),
//! reading replicas that the real binary writes (file, Garage and Azurite; an
//! age-encrypted one too). Every answer is compared with the same query on a copy
//! `restore` wrote, at the latest TXID and at a past one; a long read transaction keeps
//! its TXID while the replicator writes, the next one sees the new rows within the poll
//! interval; damaged, truncated and missing objects give SQLite errors naming the object
//! while the host process lives on.
//!
//! Needs `sqlite3` and `/usr/bin/python3` (Debian's, built with loadable extensions):
//! scripts/test.sh installs them (apt-get install sqlite3 python3).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::garage::{Garage, REGION};
use crate::harness::*;

const NEEDS: &str = "need Debian's sqlite3 and python3 (scripts/test.sh installs them: apt-get install -y sqlite3 python3)";

/// The extension the test build made (the cli's dev-dependency on `sqlite-replicate-vfs`).
fn vfs_lib() -> PathBuf {
    let dir = bin().parent().unwrap().to_path_buf();
    for p in [
        dir.join("deps/libsqlite_replicate_vfs.so"),
        dir.join("libsqlite_replicate_vfs.so"),
    ] {
        if p.is_file() {
            return p;
        }
    }
    panic!("libsqlite_replicate_vfs.so is not beside {}: build it with cargo build -p sqlite-replicate-vfs", bin().display());
}

fn sqlite3_bin() -> PathBuf {
    let p = std::env::var_os("SQLITE3_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/usr/bin/sqlite3".into());
    assert!(
        p.is_file(),
        "{} is missing: these tests {NEEDS}",
        p.display()
    );
    p
}

fn python_bin() -> PathBuf {
    let p = std::env::var_os("SQLITE_REPLICATE_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/usr/bin/python3".into());
    let ok = Command::new(&p)
        .args([
            "-c",
            "import sqlite3; sqlite3.connect(':memory:').enable_load_extension(True)",
        ])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "{} cannot load SQLite extensions: these tests {NEEDS}",
        p.display()
    );
    p
}

/// Runs `script` in the sqlite3 shell after loading the extension; `env` is added.
fn sqlite3(script: &str, env: &[(&str, String)]) -> Output {
    // No -bail: later commands run after an error (the host lives on).
    let mut c = Command::new(sqlite3_bin());
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c.spawn().unwrap();
    let full = format!(".load {}\n{script}", vfs_lib().display());
    child
        .stdin
        .take()
        .unwrap()
        .write_all(full.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `.dump` and `PRAGMA integrity_check` of the database at `uri` through the VFS.
fn vfs_dump(uri: &str, env: &[(&str, String)]) -> String {
    let out = sqlite3(
        &format!(".open '{uri}'\n.dump\nPRAGMA integrity_check;\n"),
        env,
    );
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "sqlite3 through the VFS ({uri}): {}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// The same for a plain local file.
fn file_dump(path: &Path) -> String {
    let out = Command::new(sqlite3_bin())
        .arg(path)
        .args([".dump", "PRAGMA integrity_check;"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sqlite3 {}: {}",
        path.display(),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Python: every row of `t` and the integrity check, through the VFS at `uri` (or of a
/// plain file when `uri` is a path and `vfs` is false).
fn python_rows(uri: &str, vfs: bool, env: &[(&str, String)]) -> String {
    let script = format!(
        r#"
import sqlite3, sys, hashlib
if {vfs}:
    m = sqlite3.connect(':memory:')
    m.enable_load_extension(True)
    m.load_extension({lib:?})
c = sqlite3.connect({uri:?}, uri={vfs})
h = hashlib.sha256()
n = 0
for row in c.execute('SELECT id, v FROM t ORDER BY id'):
    h.update(repr(row).encode()); n += 1
print(n, h.hexdigest(), c.execute('PRAGMA integrity_check').fetchone()[0])
"#,
        vfs = if vfs { "True" } else { "False" },
        lib = vfs_lib().display().to_string(),
    );
    run_python(&script, uri, env)
}

/// Runs a Python script in a fresh process with `env` set; its stdout, which must
/// succeed (`uri` names it in the failure).
fn run_python(script: &str, uri: &str, env: &[(&str, String)]) -> String {
    let mut c = Command::new(python_bin());
    c.args(["-c", script]);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "python ({uri}): {}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// A database of about 1.5 MB written before replication starts (its first file is read
/// by ranged GETs: larger than the extension reads whole), then 20 small transactions
/// replicated one by one (files read whole, checksums verified). Returns the past TXID
/// (after the first 10), the latest, and a time (RFC 3339, whole milliseconds) taken
/// after the past TXID was replicated and before the next transaction: `restore
/// -timestamp` at it restores the past TXID.
fn write_history(
    w: &Work,
    db: &Path,
    replica_args: &[&str],
    has_txid: &dyn Fn() -> u64,
) -> (Replicator, u64, u64, String) {
    let c = app_db(db);
    c.execute_batch("CREATE TABLE u(k TEXT PRIMARY KEY, n INTEGER); CREATE INDEX t_v ON t(v);")
        .unwrap();
    insert_rows(&c, 3000, 500);
    let mut r = Replicator::start_ready(w, replica_args, 1);
    let (mut past, mut past_time) = (0, String::new());
    for i in 0..20 {
        let before = has_txid();
        c.execute_batch(&format!(
            "BEGIN; INSERT INTO u(k, n) VALUES ('k{i}', {i}); UPDATE t SET v = randomblob(300) WHERE id % 50 = {i}; COMMIT;"
        ))
        .unwrap();
        eventually(
            Duration::from_secs(30),
            "the replica to take the transaction",
            || has_txid() > before,
        );
        if i == 9 {
            past = has_txid();
            let now = jiff::Timestamp::now().as_millisecond();
            past_time = format!("{:.3}", jiff::Timestamp::from_millisecond(now).unwrap());
        }
    }
    let latest = has_txid();
    r.wait_ready(1);
    (r, past, latest, past_time)
}

/// The newest TXID the database's configured replica holds, as `ltx` lists it.
fn store_max_txid(cfg: &Path, db: &Path) -> u64 {
    let out = run(&[
        "ltx",
        "-config",
        cfg.to_str().unwrap(),
        db.to_str().unwrap(),
    ]);
    text(&out.stdout)
        .lines()
        .filter_map(|l| {
            l.split_whitespace()
                .nth(2)
                .and_then(|m| u64::from_str_radix(m, 16).ok())
        })
        .max()
        .unwrap_or(0)
}

/// The checks every replica type runs: sqlite3 and Python through the VFS answer what a
/// restored copy answers, at the latest and at `past`.
fn compare_with_restore(
    w: &Work,
    uri_base: &str,
    restore_src: &[&str],
    env: &[(&str, String)],
    past: u64,
    latest: u64,
) {
    for (txid, name) in [(None, "latest"), (Some(past), "past")] {
        let out = w.path(&format!("restored-{name}.db"));
        let mut args = vec![
            "restore".to_string(),
            "-o".into(),
            out.to_str().unwrap().into(),
        ];
        let hex = txid.map(|t| format!("{t:016x}"));
        if let Some(h) = &hex {
            args.extend(["-txid".to_string(), h.clone()]);
        }
        args.extend(restore_src.iter().map(|s| s.to_string()));
        let mut cmd = Command::new(bin());
        cmd.args(&args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let o = cmd.output().unwrap();
        assert!(o.status.success(), "restore {args:?}: {}", text(&o.stderr));
        let uri = match &hex {
            Some(h) => format!("{uri_base}&txid={h}"),
            None => uri_base.to_string(),
        };
        let want = file_dump(&out);
        assert!(want.ends_with("ok\n"), "restored copy: {want}");
        let got = vfs_dump(&uri, env);
        assert!(
            got == want,
            "{name}: sqlite3 through the VFS differs from the restored copy"
        );
        assert_eq!(
            python_rows(&uri, true, env),
            python_rows(out.to_str().unwrap(), false, &[]),
            "{name}: Python"
        );
        let t = sqlite3(
            &format!(".open '{uri}'\nPRAGMA sqlite_replicate_txid;\n"),
            env,
        );
        assert_eq!(
            text(&t.stdout).trim(),
            format!("{:016x}", txid.unwrap_or(latest)),
            "{}",
            text(&t.stderr)
        );
    }
}

/// Time travel by time: `timestamp=` in the URI, and `PRAGMA sqlite_replicate_timestamp
/// = T` between transactions, serve what `restore -timestamp T` writes (here the TXID
/// `past`, replicated just before `ts`); reading the pragma gives when the TXID served was
/// written (before `ts`).
fn at_a_timestamp_as_restore(w: &Work, base: &str, url: &str, ts: &str, past: u64) {
    let out = w.path("restored-timestamp.db");
    run_ok(&[
        "restore",
        "-o",
        out.to_str().unwrap(),
        "-timestamp",
        ts,
        url,
    ]);
    let want = file_dump(&out);
    assert!(want.ends_with("ok\n"), "restored copy: {want}");
    assert!(
        vfs_dump(&format!("{base}&timestamp={ts}"), &[]) == want,
        "timestamp= in the URI differs from restore -timestamp"
    );
    let o = sqlite3(
        &format!(
            ".open '{base}'\nSELECT count(*) FROM u;\nPRAGMA sqlite_replicate_timestamp = '{ts}';\n.dump\nPRAGMA integrity_check;\nPRAGMA sqlite_replicate_txid;\nPRAGMA sqlite_replicate_timestamp;\n"
        ),
        &[],
    );
    let (got, err) = (text(&o.stdout), text(&o.stderr));
    assert!(err.is_empty(), "{err}");
    let rest = got
        .strip_prefix(&format!("20\n{ts}\n"))
        .unwrap_or_else(|| panic!("the latest state, then the pragma's answer: {got}"));
    let rest = rest
        .strip_prefix(want.as_str())
        .unwrap_or_else(|| panic!("after the pragma: differs from restore -timestamp: {rest}"));
    let mut lines = rest.lines();
    assert_eq!(lines.next(), Some(format!("{past:016x}").as_str()));
    let served: jiff::Timestamp = lines.next().unwrap().parse().unwrap();
    assert!(served < ts.parse().unwrap(), "served {served}, asked {ts}");
    // A bad time is refused, naming the pragma; the state served stays.
    let o = sqlite3(
        &format!(".open '{base}&timestamp={ts}'\nPRAGMA sqlite_replicate_timestamp = 'yesterday';\nPRAGMA sqlite_replicate_txid;\n"),
        &[],
    );
    assert!(
        text(&o.stderr).contains("sqlite_replicate_timestamp = \"yesterday\": not RFC 3339"),
        "{}",
        text(&o.stderr)
    );
    assert_eq!(text(&o.stdout).trim(), format!("{past:016x}"));
}

#[test]
fn vfs_on_a_file_replica_answers_as_restore_at_latest_and_past_txids() {
    let (_, _) = (sqlite3_bin(), python_bin());
    let w = Work::new();
    let db = w.path("app.db");
    let rep = w.path("replica");
    let cfg = w.file_config(&db, &rep, "");
    let (r, past, latest, past_time) =
        write_history(&w, &db, &["-config", cfg.to_str().unwrap()], &|| {
            replica_max_txid(&rep)
        });
    assert_eq!(r.stop(), 0);
    assert!(past > 1 && latest > past);
    let url = format!("file://{}", rep.display());
    let base = format!("file:app.db?vfs=sqlite-replicate&replica={url}");
    compare_with_restore(&w, &base, &[&url], &[], past, latest);
    at_a_timestamp_as_restore(&w, &base, &url, &past_time, past);
    // config= with the database's own path: its replicas, as `restore DB_PATH`.
    let by_cfg = format!(
        "file:{}?vfs=sqlite-replicate&config={}",
        db.display(),
        cfg.display()
    );
    assert_eq!(
        vfs_dump(&by_cfg, &[]),
        file_dump(&w.path("restored-latest.db"))
    );
    // Writes are refused, saying so; the shell goes on.
    let o = sqlite3(
        &format!(".open '{base}'\nINSERT INTO u VALUES ('x', 1);\nSELECT count(*) FROM u;\n"),
        &[],
    );
    assert!(text(&o.stderr).contains("readonly"), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout).trim(), "20");
}

/// An age-encrypted replica (issue 24) reads through the VFS with the config's keys, by
/// the database's path and by URL, as `restore` reads it; without keys the query fails
/// and nothing is returned.
#[test]
#[allow(deprecated)] // X25519 keys, as Litestream 0.3 (age 0.13 prefers post-quantum ones)
fn vfs_reads_an_encrypted_replica_with_the_configs_keys() {
    use age::secrecy::ExposeSecret;
    let w = Work::new();
    let db = w.path("app.db");
    let rep = w.path("replica");
    let id = age::x25519::Identity::generate();
    let cfg = w.config(&format!(
        "dbs:\n  - path: {}\n    replica:\n      type: file\n      path: {}\n      age:\n        identities: [{}]\n",
        db.display(),
        rep.display(),
        id.to_string().expose_secret()
    ));
    let (r, _, _, _) = write_history(&w, &db, &["-config", cfg.to_str().unwrap()], &|| {
        replica_max_txid(&rep)
    });
    assert_eq!(r.stop(), 0);
    let out = w.path("restored.db");
    let c = cfg.to_str().unwrap();
    run_ok(&[
        "restore",
        "-config",
        c,
        "-o",
        out.to_str().unwrap(),
        db.to_str().unwrap(),
    ]);
    let want = file_dump(&out);
    assert!(want.ends_with("ok\n"), "restored copy: {want}");
    let by_path = format!("file:{}?vfs=sqlite-replicate&config={c}", db.display());
    assert!(
        vfs_dump(&by_path, &[]) == want,
        "by path: differs from restore"
    );
    let url = format!("file://{}", rep.display());
    let by_url = format!("file:app.db?vfs=sqlite-replicate&replica={url}&config={c}");
    assert!(
        vfs_dump(&by_url, &[]) == want,
        "by URL: differs from restore"
    );
    // No keys: an error, never ciphertext taken for pages.
    let o = sqlite3(
        &format!(".open 'file:app.db?vfs=sqlite-replicate&replica={url}'\nSELECT count(*) FROM t;\nSELECT 6*7;\n"),
        &[],
    );
    assert!(!text(&o.stderr).is_empty(), "no error without keys");
    assert_eq!(text(&o.stdout).trim(), "42", "{}", text(&o.stderr));
}

#[test]
fn vfs_on_garage_answers_as_restore_with_the_same_credentials() {
    let (_, _) = (sqlite3_bin(), python_bin());
    let g = Garage::start();
    let w = Work::new();
    let db = w.path("app.db");
    let cfg = w.config(&format!(
        "dbs:\n  - path: {}\n    replica:\n{}      upload-rate: 0\n",
        db.display(),
        g.replica_yaml("vfs/app")
    ));
    let store_txid = || store_max_txid(&cfg, &db);
    let (r, past, latest, _) =
        write_history(&w, &db, &["-config", cfg.to_str().unwrap()], &store_txid);
    assert_eq!(r.stop(), 0);
    // A bare URL: endpoint and region in it, keys from the environment, as `restore`.
    let url = format!(
        "s3://{}/vfs/app?endpoint={}&region={REGION}&forcePathStyle=true",
        g.bucket,
        g.endpoint()
    );
    let env = [
        ("AWS_ACCESS_KEY_ID", g.key_id.clone()),
        ("AWS_SECRET_ACCESS_KEY", g.secret.clone()),
    ];
    let enc = url
        .replace('&', "%26")
        .replace('?', "%3F")
        .replace('=', "%3D");
    let base = format!("file:app.db?vfs=sqlite-replicate&replica={enc}");
    compare_with_restore(&w, &base, &[&url], &env, past, latest);
    // The config's credentials for the same location, no environment.
    let by_cfg = format!(
        "file:{}?vfs=sqlite-replicate&config={}",
        db.display(),
        cfg.display()
    );
    assert_eq!(
        vfs_dump(&by_cfg, &[]),
        file_dump(&w.path("restored-latest.db"))
    );
}

/// Azure Blob Storage (Azurite): through the config (the database's path, and the
/// replica's URL with the config for its credentials), at the latest and a past TXID.
#[test]
fn vfs_on_azurite_answers_as_restore() {
    let (_, _) = (sqlite3_bin(), python_bin());
    let a = crate::azurite::Azurite::start();
    let w = Work::new();
    let db = w.path("app.db");
    let cfg = w.config(&format!(
        "dbs:\n  - path: {}\n    replica:\n{}      upload-rate: 0\n",
        db.display(),
        a.replica_yaml("vfs/app")
    ));
    let c = cfg.to_str().unwrap();
    let store_txid = || store_max_txid(&cfg, &db);
    let (r, past, latest, _) = write_history(&w, &db, &["-config", c], &store_txid);
    assert_eq!(r.stop(), 0);
    let by_cfg = format!("file:{}?vfs=sqlite-replicate&config={c}", db.display());
    compare_with_restore(
        &w,
        &by_cfg,
        &["-config", c, db.to_str().unwrap()],
        &[],
        past,
        latest,
    );
    let url = format!("abs://{}@{}/vfs/app", crate::azurite::ACCOUNT, a.container);
    let by_url = format!("file:app.db?vfs=sqlite-replicate&replica={url}&config={c}");
    assert_eq!(
        vfs_dump(&by_url, &[]),
        file_dump(&w.path("restored-latest.db"))
    );
}

#[test]
fn vfs_read_transaction_keeps_its_txid_and_the_next_sees_new_rows_within_the_poll() {
    let python = python_bin();
    let w = Work::new();
    let (c, rep, _r) = replicating(&w, 100, 100);
    let poll_ms = 300;
    let script = format!(
        r#"
import sqlite3, sys, time
m = sqlite3.connect(':memory:'); m.enable_load_extension(True); m.load_extension({lib:?})
c = sqlite3.connect('file:app.db?vfs=sqlite-replicate&poll={poll_ms}ms&replica={rep}', uri=True, isolation_level=None)
c.execute('BEGIN')
print(c.execute('SELECT count(*) FROM t').fetchone()[0], flush=True)
sys.stdin.readline()
print(c.execute('SELECT count(*) FROM t').fetchone()[0], flush=True)
c.execute('COMMIT')
sys.stdin.readline()
want = int(sys.stdin.readline())
t = time.monotonic()
while True:
    n = c.execute('SELECT count(*) FROM t').fetchone()[0]
    if n == want or time.monotonic() - t > 30:
        break
    time.sleep(0.02)
print(n, int((time.monotonic() - t) * 1000), flush=True)
"#,
        lib = vfs_lib().display().to_string(),
        rep = rep.display()
    );
    let mut child = Command::new(python)
        .args(["-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut line = || lines.next().expect("python ended").unwrap();
    let first: i64 = line().parse().unwrap();
    let rows = c
        .query_row("SELECT count(*) FROM t", [], |r| r.get::<_, i64>(0))
        .unwrap();
    assert_eq!(first, rows);
    // New rows, replicated, while the read transaction is open.
    let before = replica_max_txid(&rep);
    insert_rows(&c, 50, 100);
    eventually(Duration::from_secs(30), "the new rows replicated", || {
        replica_max_txid(&rep) > before
    });
    // Let a poll interval pass: the open transaction still must not move.
    let t = Instant::now();
    eventually(Duration::from_secs(5), "a poll interval to pass", || {
        t.elapsed() > Duration::from_millis(2 * poll_ms)
    });
    writeln!(stdin).unwrap();
    assert_eq!(
        line().parse::<i64>().unwrap(),
        first,
        "a read transaction saw another TXID"
    );
    writeln!(stdin).unwrap();
    writeln!(stdin, "{}", rows + 50).unwrap();
    let last = line();
    let mut it = last.split_whitespace().map(|v| v.parse::<u64>().unwrap());
    let (n, ms) = (it.next().unwrap(), it.next().unwrap());
    assert_eq!(
        n,
        rows as u64 + 50,
        "the next transactions never saw the new rows"
    );
    // Within the poll interval (plus scheduling slack on a busy machine).
    assert!(
        ms <= poll_ms + 1000,
        "new rows seen after {ms} ms, poll {poll_ms} ms"
    );
    assert!(child.wait().unwrap().success());
}

#[test]
fn vfs_damaged_truncated_and_missing_objects_are_sqlite_errors_naming_them() {
    let python = python_bin();
    let w = Work::new();
    let db = w.path("app.db");
    let rep = w.path("replica");
    let cfg = w.file_config(&db, &rep, "");
    let c = app_db(&db);
    insert_rows(&c, 2000, 500);
    let mut r = Replicator::start_ready(&w, &["-config", cfg.to_str().unwrap()], 1);
    for _ in 0..3 {
        let before = replica_max_txid(&rep);
        insert_rows(&c, 1, 100);
        eventually(Duration::from_secs(30), "a transaction replicated", || {
            replica_max_txid(&rep) > before
        });
    }
    r.wait_ready(1);
    assert_eq!(r.stop(), 0);
    // The snapshot the replicator wrote at start (level 9) is where a restore starts.
    let first = rep.join("ltx/9/0000000000000001-0000000000000001.ltx");
    let second = rep.join("ltx/0/0000000000000002-0000000000000002.ltx");
    assert!(
        first.metadata().unwrap().len() > 256 << 10,
        "the big file must be read by ranges"
    );
    let good = (
        std::fs::read(&first).unwrap(),
        std::fs::read(&second).unwrap(),
    );
    let restore = |f: &Path, b: &[u8]| std::fs::write(f, b).unwrap();
    let uri = format!("file:app.db?vfs=sqlite-replicate&replica={}", rep.display());
    // Each case: the query fails with an error naming the object, the shell carries on.
    let check = |case: &str, object: &str| {
        let o = sqlite3(
            &format!(".open '{uri}'\nSELECT count(*), sum(length(v)) FROM t;\nSELECT 6*7;\n"),
            &[],
        );
        let (out, err) = (text(&o.stdout), text(&o.stderr));
        assert!(
            err.contains(object),
            "{case}: the error does not name {object}: {err}\n{out}\nreplica: {:?}",
            std::fs::read_dir(rep.join("ltx/0"))
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect::<Vec<_>>()
        );
        assert!(
            out.trim_end().ends_with("42"),
            "{case}: the shell did not go on: {out}\n{err}"
        );
        assert!(
            o.status.code().is_some(),
            "{case}: sqlite3 died of a signal"
        );
        // Python: an exception (at connect or at the query), the object named on stderr
        // and, once connected, by the pragma; the interpreter lives on.
        let script = format!(
            "import sqlite3\nm = sqlite3.connect(':memory:'); m.enable_load_extension(True); m.load_extension({:?})\nc = None\ntry:\n    c = sqlite3.connect({uri:?}, uri=True)\n    c.execute('SELECT sum(length(v)) FROM t').fetchall(); print('no error')\nexcept sqlite3.Error as e:\n    print('error', e)\nif c is not None:\n    print(c.execute('PRAGMA sqlite_replicate_error').fetchone()[0])\nprint('alive')\n",
            vfs_lib().display().to_string()
        );
        let p = Command::new(&python)
            .args(["-c", &script])
            .output()
            .unwrap();
        let (out, err) = (text(&p.stdout), text(&p.stderr));
        assert!(
            p.status.success()
                && out.starts_with("error")
                && out.ends_with("alive\n")
                && err.contains(object),
            "{case}: python: {out}\n{err}"
        );
    };
    // A damaged page frame in the big file (read by ranges: the frame fails its checks;
    // damage inside an incompressible page's literals is beyond what a ranged read can
    // see: only the whole file's checksum covers it).
    let index = ltx::parse_page_index(&good.0).unwrap();
    let e = index[index.len() / 2];
    let mut bad = good.0.clone();
    bad[e.offset as usize + 3] ^= 0x01; // the frame's page number
    restore(&first, &bad);
    check(
        "damaged frame",
        "ltx/9/0000000000000001-0000000000000001.ltx",
    );
    restore(&first, &good.0);
    // A damaged small file (read whole: its checksum fails).
    let mut bad = good.1.clone();
    let n = bad.len();
    bad[n / 2] ^= 0xff;
    restore(&second, &bad);
    check(
        "damaged small file",
        "ltx/0/0000000000000002-0000000000000002.ltx",
    );
    // Truncated.
    restore(&second, &good.1[..good.1.len() - 40]);
    check("truncated", "ltx/0/0000000000000002-0000000000000002.ltx");
    restore(&second, &good.1);
    restore(&first, &good.0[..good.0.len() / 3]);
    check(
        "truncated big file",
        "ltx/9/0000000000000001-0000000000000001.ltx",
    );
    restore(&first, &good.0);
    restore(&second, &good.1);
    // Missing: history has a gap at TXID 2, named by the planner.
    std::fs::remove_file(&second).unwrap();
    check("missing", "0000000000000002");
}

const JDBC_JAR: &str = "/usr/share/java/xerial-sqlite-jdbc.jar";

#[test]
fn vfs_from_the_jvm_through_sqlite_jdbc_answers_as_restore() {
    let java =
        PathBuf::from(std::env::var_os("JAVA_BIN").unwrap_or_else(|| "/usr/bin/java".into()));
    assert!(
        java.is_file() && Path::new(JDBC_JAR).is_file(),
        "{} or {JDBC_JAR} is missing: this test needs a JDK and Debian's sqlite-jdbc (scripts/test.sh installs them: apt-get install -y default-jdk-headless libxerial-sqlite-jdbc-java)",
        java.display()
    );
    let w = Work::new();
    let (rep, out) = replica_of_rows(&w, 500, 300);
    let queries = [
        "SELECT id, hex(v) FROM t ORDER BY id",
        "PRAGMA integrity_check",
    ];
    let want = Command::new(sqlite3_bin())
        .arg(&out)
        .args(queries)
        .output()
        .unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/vfs_jvm/VfsQuery.java");
    let url = format!(
        "jdbc:sqlite:file:app.db?vfs=sqlite-replicate&replica={}",
        rep.display()
    );
    let got = Command::new(&java)
        .args(["-cp", JDBC_JAR])
        .arg(&src)
        .arg(vfs_lib())
        .arg(&url)
        .args(queries)
        .output()
        .unwrap();
    assert!(got.status.success(), "java: {}", text(&got.stderr));
    assert!(text(&want.stdout).ends_with("ok\n"));
    assert!(
        got.stdout == want.stdout,
        "the JVM through the VFS differs from the restored copy"
    );
}

/// Runs `sql` in a fresh Python process on `uri` (through the VFS when `vfs`, else a plain
/// file): the rows as text, and the VFS's `sqlite_replicate_stats` after them.
fn python_query(
    uri: &str,
    vfs: bool,
    sql: &str,
    env: &[(&str, String)],
) -> (String, serde_json::Value) {
    let script = format!(
        r#"
import json, sqlite3
if {vfs}:
    m = sqlite3.connect(':memory:')
    m.enable_load_extension(True)
    m.load_extension({lib:?})
c = sqlite3.connect({uri:?}, uri={vfs})
rows = repr(c.execute({sql:?}).fetchall())
stats = json.loads(c.execute('PRAGMA sqlite_replicate_stats').fetchone()[0]) if {vfs} else {{}}
print(json.dumps({{"rows": rows, "stats": stats}}))
"#,
        vfs = if vfs { "True" } else { "False" },
        lib = vfs_lib().display().to_string(),
    );
    let out = run_python(&script, uri, env);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    (v["rows"].as_str().unwrap().to_string(), v["stats"].clone())
}

/// The disk cache entries under `dir`: path and size.
fn cache_entries(dir: &Path) -> Vec<(PathBuf, u64)> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.path().extension().is_some_and(|x| x == "blk"))
        .map(|e| (e.path(), e.metadata().unwrap().len()))
        .collect()
}

/// A replica of a 1.5 MB database (its snapshot read by ranges) and one later transaction,
/// the replicator stopped; and a restored copy of it.
fn small_replica(w: &Work) -> (PathBuf, PathBuf) {
    replica_of_rows(w, 3000, 500)
}

/// A database of `rows` rows of `bytes` each, its file replica, and a replicator running
/// on it that has shipped them: the application's connection, the replica, the replicator.
fn replicating(w: &Work, rows: usize, bytes: usize) -> (rusqlite::Connection, PathBuf, Replicator) {
    let db = w.path("app.db");
    let rep = w.path("replica");
    let cfg = w.file_config(&db, &rep, "");
    let c = app_db(&db);
    insert_rows(&c, rows, bytes);
    let r = Replicator::start_ready(w, &["-config", cfg.to_str().unwrap()], 1);
    eventually(Duration::from_secs(30), "the first rows replicated", || {
        replica_max_txid(&rep) >= 1
    });
    (c, rep, r)
}

/// A file replica of `rows` rows of `bytes` each, then one more transaction, the
/// replicator stopped; and a restored copy of it.
fn replica_of_rows(w: &Work, rows: usize, bytes: usize) -> (PathBuf, PathBuf) {
    let (c, rep, r) = replicating(w, rows, bytes);
    let before = replica_max_txid(&rep);
    insert_rows(&c, 1, bytes);
    eventually(Duration::from_secs(30), "a transaction replicated", || {
        replica_max_txid(&rep) > before
    });
    assert_eq!(r.stop(), 0);
    let restored = w.path("restored.db");
    run_ok(&[
        "restore",
        "-o",
        restored.to_str().unwrap(),
        &format!("file://{}", rep.display()),
    ]);
    (rep, restored)
}

/// `cache_dir=`: a second process answers a point lookup from the disk cache without a
/// GET (pages, header or index); entries are private (0600 in a 0700 directory); a damaged
/// entry is detected, fetched again and never served; `cache_dir_size` bounds the
/// directory through a full dump; every answer equals the restored copy's.
#[test]
fn vfs_disk_cache_serves_a_second_process_and_refetches_a_damaged_entry_within_its_bound() {
    let w = Work::new();
    let (rep, restored) = small_replica(&w);
    let cache = w.path("cache");
    let base = format!("file:app.db?vfs=sqlite-replicate&replica={}", rep.display());
    let uri = format!("{base}&cache_dir={}", cache.display());
    let lookup = "SELECT id, hex(v) FROM t WHERE id IN (7, 1234, 2999) ORDER BY id";
    let (want, _) = python_query(restored.to_str().unwrap(), false, lookup, &[]);
    assert!(want.contains("1234"), "{want}");
    let n = |s: &serde_json::Value, k: &str| s[k].as_u64().unwrap_or_else(|| panic!("{k} in {s}"));
    let (got, first) = python_query(&uri, true, lookup, &[]);
    assert_eq!(got, want, "first process");
    assert!(n(&first, "gets") > 0, "{first}");
    let (got, second) = python_query(&uri, true, lookup, &[]);
    assert_eq!(got, want, "second process");
    assert!(
        n(&second, "gets") == 0 && n(&second, "index_gets") == 0 && n(&second, "disk_hits") > 0,
        "the second process fetched: {second}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&cache), 0o700);
        for (p, _) in cache_entries(&cache) {
            assert_eq!(mode(&p), 0o600, "{}", p.display());
        }
    }
    // Damage every entry: each is detected, fetched again, and the answer stays right.
    let entries = cache_entries(&cache);
    assert!(!entries.is_empty());
    for (p, _) in &entries {
        let mut b = std::fs::read(p).unwrap();
        let last = b.len() - 1;
        b[last] ^= 0x5a;
        std::fs::write(p, b).unwrap();
    }
    let (got, third) = python_query(&uri, true, lookup, &[]);
    assert_eq!(got, want, "with damaged entries");
    assert!(
        n(&third, "disk_bad") > 0 && n(&third, "gets") > 0,
        "damaged entries were not refetched: {third}"
    );
    let (got, fourth) = python_query(&uri, true, lookup, &[]);
    assert_eq!(got, want);
    assert!(
        n(&fourth, "gets") == 0 && n(&fourth, "disk_bad") == 0,
        "refetched entries were not stored again: {fourth}"
    );
    // The bound: a 1 MiB directory through a dump of a 1.5 MB database (with a 1 MiB
    // memory cache, so sequential runs are prefetched, through the disk cache).
    let small = w.path("small-cache");
    let dump = vfs_dump(
        &format!(
            "{base}&cache_size=1MiB&cache_dir={}&cache_dir_size=1MiB",
            small.display()
        ),
        &[],
    );
    let want_dump = file_dump(&restored);
    assert!(dump == want_dump, "dump through a bounded disk cache");
    assert!(
        vfs_dump(&format!("{base}&cache_size=1MiB"), &[]) == want_dump,
        "dump with prefetch, no disk cache"
    );
    let held: u64 = cache_entries(&small).iter().map(|(_, n)| n).sum();
    assert!(
        held > 0 && held <= 1 << 20,
        "the 1 MiB cache holds {held} bytes"
    );
    // A size without a directory is refused, naming the parameter.
    let o = sqlite3(
        &format!(".open '{base}&cache_dir_size=1GiB'\nSELECT 1;\n"),
        &[],
    );
    assert!(
        text(&o.stderr).contains("cache_dir_size") && text(&o.stderr).contains("give cache_dir"),
        "{}",
        text(&o.stderr)
    );
}

/// `hydrate=1`: once the background download is done (the stats say so), a full read
/// makes no GET of page data, with a memory cache far smaller than the database, and
/// answers as the restored copy; after the replicator writes more, the new pages come from
/// the new files (the rest still from the copy) and the answer is again the restored
/// copy's. Run with and without a cache directory (the copy's two homes).
#[test]
fn vfs_hydrate_serves_from_the_local_copy_and_overlays_newer_files() {
    let python = python_bin();
    let w = Work::new();
    let (c, rep, _r) = replicating(&w, 3000, 500);
    let cache = w.path("cache");
    for dir in [None, Some(&cache)] {
        let mut uri = format!(
            "file:app.db?vfs=sqlite-replicate&replica={}&hydrate=1&cache_size=1MiB&poll=100ms",
            rep.display()
        );
        if let Some(d) = dir {
            uri.push_str(&format!("&cache_dir={}", d.display()));
        }
        let script = format!(
            r#"
import hashlib, json, sqlite3, sys, time
m = sqlite3.connect(':memory:'); m.enable_load_extension(True); m.load_extension({lib:?})
c = sqlite3.connect({uri:?}, uri=True)
c.execute('PRAGMA cache_size = 10')  # SQLite's own page cache: pages come from the VFS
stats = lambda: json.loads(c.execute('PRAGMA sqlite_replicate_stats').fetchone()[0])
def rows():
    h = hashlib.sha256(); n = 0
    for row in c.execute('SELECT id, v FROM t ORDER BY id'):
        h.update(repr(row).encode()); n += 1
    return f"{{n}} {{h.hexdigest()}} {{c.execute('PRAGMA integrity_check').fetchone()[0]}}"
def report(before):
    r = rows()
    after = stats()
    print(json.dumps({{"rows": r, "txid": after["txid"], "gets": after["gets"] - before["gets"],
                      "hydrated_reads": after["hydrated_reads"] - before["hydrated_reads"],
                      "hydrate": after["hydrate"]}}), flush=True)
c.execute('SELECT count(*) FROM t').fetchone()
deadline = time.monotonic() + 120
while stats()["hydrate"]["state"] == "running" and time.monotonic() < deadline:
    time.sleep(0.05)
report(stats())
want = int(sys.stdin.readline())
before = stats()
deadline = time.monotonic() + 30
while c.execute('SELECT count(*) FROM t').fetchone()[0] != want and time.monotonic() < deadline:
    time.sleep(0.05)
report(before)
"#,
            lib = vfs_lib().display().to_string(),
        );
        let mut child = Command::new(&python)
            .args(["-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut next = || -> serde_json::Value {
            serde_json::from_str(&lines.next().expect("python ended").unwrap()).unwrap()
        };
        let restored_rows = |txid: &str, name: &str| {
            let out = w.path(name);
            run_ok(&[
                "restore",
                "-o",
                out.to_str().unwrap(),
                "-txid",
                txid,
                &format!("file://{}", rep.display()),
            ]);
            python_rows(out.to_str().unwrap(), false, &[])
        };
        let tag = if dir.is_some() { "cache-dir" } else { "temp" };
        let first = next();
        assert_eq!(first["hydrate"]["state"], "done", "{first}");
        assert_eq!(first["hydrate"]["txid"], first["txid"], "{first}");
        assert_eq!(first["gets"], 0, "page GETs after hydration: {first}");
        assert!(first["hydrated_reads"].as_u64().unwrap() > 0, "{first}");
        assert_eq!(
            format!("{}\n", first["rows"].as_str().unwrap()),
            restored_rows(first["txid"].as_str().unwrap(), &format!("h1-{tag}.db")),
            "after hydration"
        );
        // More rows, replicated: served from the new files over the copy.
        let before = replica_max_txid(&rep);
        c.execute_batch("UPDATE t SET v = randomblob(400) WHERE id % 100 = 3")
            .unwrap();
        insert_rows(&c, 20, 300);
        eventually(Duration::from_secs(30), "the new rows replicated", || {
            replica_max_txid(&rep) > before
        });
        let count: i64 = c
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        writeln!(stdin, "{count}").unwrap();
        let second = next();
        assert!(
            second["txid"].as_str().unwrap() > first["txid"].as_str().unwrap(),
            "{second}"
        );
        assert!(second["hydrated_reads"].as_u64().unwrap() > 0, "{second}");
        assert_eq!(
            format!("{}\n", second["rows"].as_str().unwrap()),
            restored_rows(second["txid"].as_str().unwrap(), &format!("h2-{tag}.db")),
            "after the replicator wrote more"
        );
        assert!(child.wait().unwrap().success());
        if let Some(d) = dir {
            let left: Vec<_> = std::fs::read_dir(d)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .filter(|n| n.to_string_lossy().starts_with("hydrate-"))
                .collect();
            assert!(
                left.is_empty(),
                "the local copy outlived its database: {left:?}"
            );
        }
    }
}
