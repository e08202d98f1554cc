//! Shared helpers: temp workspaces, the binary under test, SQLite writers, page-level
//! comparison of databases.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rusqlite::Connection;

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sqlite-replicate"))
}

pub struct Work {
    pub dir: tempfile::TempDir,
}

impl Work {
    pub fn new() -> Work {
        Work {
            dir: tempfile::Builder::new().prefix("sr-it-").tempdir().unwrap(),
        }
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    /// Writes a config with one database and the given replica YAML lines (already indented
    /// for an entry of `replicas:`), returning its path.
    pub fn config(&self, body: &str) -> PathBuf {
        let p = self.path("sr.yml");
        std::fs::write(&p, body).unwrap();
        p
    }
    pub fn file_config(&self, db: &Path, replica_dir: &Path, extra_db: &str) -> PathBuf {
        self.config(&format!(
            "dbs:\n  - path: {}\n{extra_db}    replicas:\n      - type: file\n        path: {}\n",
            db.display(),
            replica_dir.display()
        ))
    }
}

pub fn run(args: &[&str]) -> Output {
    let out = Command::new(bin()).args(args).output().expect("run binary");
    out
}

pub fn run_ok(args: &[&str]) -> Output {
    let out = run(args);
    assert!(
        out.status.success(),
        "{:?} failed: {}\n{}",
        args,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A running replicator, killed on drop.
pub struct Replicator {
    pub child: Child,
    pub log: PathBuf,
}

impl Replicator {
    pub fn start(work: &Work, args: &[&str]) -> Replicator {
        let log = work.path(&format!("replicate-{}.log", rand_suffix()));
        let f = std::fs::File::create(&log).unwrap();
        let child = Command::new(bin())
            .arg("replicate")
            .args(args)
            .env("RUST_LOG", "debug")
            .stdout(Stdio::from(f.try_clone().unwrap()))
            .stderr(Stdio::from(f))
            .spawn()
            .unwrap();
        Replicator { child, log }
    }
    /// SIGTERM, then wait for a clean exit (final sync) and return the status code.
    pub fn stop(mut self) -> i32 {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let st = wait_timeout(&mut self.child, Duration::from_secs(60))
            .expect("replicator did not exit after SIGTERM");
        st.code().unwrap_or(-1)
    }
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Replicator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rand_suffix() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

pub fn wait_timeout(child: &mut Child, d: Duration) -> Option<std::process::ExitStatus> {
    let t = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        if t.elapsed() > d {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Opens an application connection in WAL mode with a table `t`.
pub fn app_db(path: &Path) -> Connection {
    let c = Connection::open(path).unwrap();
    c.busy_timeout(Duration::from_secs(10)).unwrap();
    c.execute_batch(
        "PRAGMA journal_mode=WAL; CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v BLOB);",
    )
    .unwrap();
    c
}

pub fn insert_rows(c: &Connection, n: usize, size: usize) {
    for _ in 0..n {
        c.execute("INSERT INTO t(v) VALUES (randomblob(?1))", [size as i64])
            .unwrap();
    }
}

/// The committed page images of a live database, as SQLite sees them now.
pub fn pages_of_live(path: &Path) -> Vec<Vec<u8>> {
    let c = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let mut st = c
        .prepare("SELECT data FROM sqlite_dbpage ORDER BY pgno")
        .unwrap();
    let v: Vec<Vec<u8>> = st
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    v
}

/// The pages of a restored (checkpointed, no WAL) database file, read raw.
pub fn pages_of_file(path: &Path) -> Vec<Vec<u8>> {
    let data = std::fs::read(path).unwrap();
    let ps = u16::from_be_bytes([data[16], data[17]]) as usize;
    let ps = if ps == 1 { 65536 } else { ps };
    data.chunks(ps).map(|c| c.to_vec()).collect()
}

/// Asserts two page lists are equal, naming the first differing page.
pub fn assert_same_pages(want: &[Vec<u8>], got: &[Vec<u8>], what: &str) {
    assert_eq!(
        want.len(),
        got.len(),
        "{what}: page count differs (want {}, got {})",
        want.len(),
        got.len()
    );
    for (i, (a, b)) in want.iter().zip(got).enumerate() {
        assert!(a == b, "{what}: page {} differs", i + 1);
    }
}

/// Restores `db` (by config) into `out` and checks it equals `want` page for page, and
/// passes `PRAGMA integrity_check`.
pub fn restore_and_compare(cfg: &Path, db: &Path, out: &Path, want: &[Vec<u8>], extra: &[&str]) {
    let mut args = vec![
        "restore",
        "-config",
        cfg.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "-integrity-check",
        "full",
    ];
    args.extend_from_slice(extra);
    args.push(db.to_str().unwrap());
    run_ok(&args);
    assert_same_pages(
        want,
        &pages_of_file(out),
        &format!("restore of {}", db.display()),
    );
}

/// Waits until `f` is true or panics after `d`.
pub fn eventually(d: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while t.elapsed() < d {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("timed out waiting for {what}");
}

/// Highest TXID among a file replica's L0 file names.
pub fn replica_max_txid(replica: &Path) -> u64 {
    let mut max = 0;
    for level in 0..=9 {
        let dir = replica.join(format!("ltx/{level}"));
        if let Ok(rd) = std::fs::read_dir(&dir) {
            for e in rd {
                let n = e.unwrap().file_name().to_string_lossy().into_owned();
                if let Some(m) = n.strip_suffix(".ltx").and_then(|s| s.split('-').nth(1)) {
                    max = max.max(u64::from_str_radix(m, 16).unwrap_or(0));
                }
            }
        }
    }
    max
}

/// Every L0 TXID in a file replica, sorted.
pub fn replica_l0_txids(replica: &Path) -> Vec<u64> {
    let mut v = Vec::new();
    if let Ok(rd) = std::fs::read_dir(replica.join("ltx/0")) {
        for e in rd {
            let n = e.unwrap().file_name().to_string_lossy().into_owned();
            if let Some(m) = n.strip_suffix(".ltx").and_then(|s| s.split('-').nth(1)) {
                v.push(u64::from_str_radix(m, 16).unwrap());
            }
        }
    }
    v.sort();
    v
}
