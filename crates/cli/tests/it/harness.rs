//! Shared helpers: temp workspaces, the binary under test, SQLite writers, page-level
//! comparison of databases.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
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

/// With `SR_IT_KEEP=1`, a failing test's work directory is kept (its path printed) so the
/// replica and databases it left can be examined.
impl Drop for Work {
    fn drop(&mut self) {
        if std::thread::panicking() && std::env::var_os("SR_IT_KEEP").is_some() {
            let dir = std::mem::replace(
                &mut self.dir,
                tempfile::Builder::new().prefix("sr-it-").tempdir().unwrap(),
            );
            eprintln!("SR_IT_KEEP: kept {}", dir.keep().display());
        }
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

/// A child process under test: stdout and stderr go to a log file, it is killed (SIGKILL)
/// and reaped on drop. Every long-running program the tests start (the replicator, a
/// standby, Litestream, Garage, sshd, Azurite, ...) is one of these.
pub struct Proc {
    /// What it is, for failure messages ("replicator", "garage node 2", ...).
    pub name: String,
    pub child: Child,
    /// Its stdout and stderr, interleaved.
    pub log: PathBuf,
}

impl Proc {
    /// Spawns `cmd` with stdout and stderr written to `log` (created or truncated).
    pub fn spawn(name: &str, cmd: Command, log: PathBuf) -> Proc {
        Proc::spawn_logging(name, cmd, log, false)
    }

    /// Spawns `cmd` with stdout and stderr appended to `log` (a restart keeps the log of
    /// the run before).
    pub fn spawn_appending(name: &str, cmd: Command, log: PathBuf) -> Proc {
        Proc::spawn_logging(name, cmd, log, true)
    }

    fn spawn_logging(name: &str, mut cmd: Command, log: PathBuf, append: bool) -> Proc {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(&log)
            .unwrap();
        let child = cmd
            .stdout(Stdio::from(f.try_clone().unwrap()))
            .stderr(Stdio::from(f))
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name} ({cmd:?}): {e}"));
        Proc {
            name: name.to_string(),
            child,
            log,
        }
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `n` bytes of the log, for failure messages.
    pub fn log_tail(&self, n: usize) -> String {
        let t = self.log_text();
        let start = t.len().saturating_sub(n);
        let start = (start..t.len())
            .find(|&i| t.is_char_boundary(i))
            .unwrap_or(t.len());
        t[start..].to_string()
    }

    /// Sends `sig` (SIGTERM, SIGSTOP, SIGCONT, ...).
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) takes plain integers and touches no memory of ours; the pid is
        // our own unreaped child, so it cannot have been reused by another process.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// Its exit status, if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// Waits until the log holds `needle` at least `n` times and returns the log. Panics
    /// after `deadline`, or as soon as the process exits without it, with the log's tail.
    pub fn wait_for_lines(&mut self, needle: &str, n: usize, deadline: Duration) -> String {
        let what = format!("{needle:?} logged {n} time(s)");
        self.wait_for_log(&what, deadline, |text| text.matches(needle).count() >= n)
    }

    /// Waits until `ok(log)` holds and returns the log. Panics after `deadline`, or as
    /// soon as the process exits without it, naming `what` and showing the log's tail.
    pub fn wait_for_log(
        &mut self,
        what: &str,
        deadline: Duration,
        ok: impl Fn(&str) -> bool,
    ) -> String {
        let t = Instant::now();
        loop {
            let text = self.log_text();
            if ok(&text) {
                return text;
            }
            if let Some(st) = self.exited() {
                // The log is complete now: one last look.
                let text = self.log_text();
                if ok(&text) {
                    return text;
                }
                panic!(
                    "{} exited ({st}) before {what}; log tail:\n{}",
                    self.name,
                    self.log_tail(4000)
                );
            }
            if t.elapsed() > deadline {
                panic!(
                    "timed out after {deadline:?} waiting for {} : {what}; log tail:\n{}",
                    self.name,
                    self.log_tail(4000)
                );
            }
            // Spaces the polls of this wait loop.
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the log holds `needle`; see [`Proc::wait_for_lines`].
    pub fn wait_for_line(&mut self, needle: &str, deadline: Duration) -> String {
        self.wait_for_lines(needle, 1, deadline)
    }

    /// Waits for the process to exit within `deadline`, panicking with its log otherwise.
    pub fn wait_exit(&mut self, deadline: Duration) -> ExitStatus {
        match wait_timeout(&mut self.child, deadline) {
            Some(st) => st,
            None => panic!(
                "{} did not exit within {deadline:?}; log tail:\n{}",
                self.name,
                self.log_tail(4000)
            ),
        }
    }

    /// SIGTERM, then wait up to `deadline` for the exit.
    pub fn terminate(&mut self, deadline: Duration) -> ExitStatus {
        self.signal(libc::SIGTERM);
        self.wait_exit(deadline)
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The log line each replica's upload task writes once it has listed the replica and
/// started: after it, the replicator is replicating (and handles SIGTERM with a final sync).
pub const REPLICA_STARTED: &str = "replica position";

/// A running replicator (`sqlite-replicate replicate ARGS`, `RUST_LOG=debug`), killed on
/// drop. Derefs to its [`Proc`] (`r.child`, `r.log`, `r.wait_for_line(..)`).
pub struct Replicator {
    proc: Proc,
}

impl std::ops::Deref for Replicator {
    type Target = Proc;
    fn deref(&self) -> &Proc {
        &self.proc
    }
}

impl std::ops::DerefMut for Replicator {
    fn deref_mut(&mut self) -> &mut Proc {
        &mut self.proc
    }
}

impl Replicator {
    pub fn start(work: &Work, args: &[&str]) -> Replicator {
        Replicator::start_env(work, args, &[])
    }

    /// [`Replicator::start`] with these environment variables set too.
    pub fn start_env(work: &Work, args: &[&str], env: &[(&str, &str)]) -> Replicator {
        let log = work.path(&format!("replicate-{}.log", rand_suffix()));
        let mut cmd = Command::new(bin());
        cmd.arg("replicate").args(args).env("RUST_LOG", "debug");
        cmd.envs(env.iter().copied());
        Replicator {
            proc: Proc::spawn("replicator", cmd, log),
        }
    }

    /// Starts and waits until `replicas` replica tasks have started
    /// ([`REPLICA_STARTED`]).
    pub fn start_ready(work: &Work, args: &[&str], replicas: usize) -> Replicator {
        let mut r = Replicator::start(work, args);
        r.wait_ready(replicas);
        r
    }

    /// Waits until `replicas` replica tasks have started ([`REPLICA_STARTED`]).
    pub fn wait_ready(&mut self, replicas: usize) {
        self.wait_for_lines(REPLICA_STARTED, replicas, Duration::from_secs(60));
    }

    /// SIGTERM, then wait for a clean exit (final sync) and return the status code.
    pub fn stop(mut self) -> i32 {
        self.proc
            .terminate(Duration::from_secs(60))
            .code()
            .unwrap_or(-1)
    }

    pub fn kill9(mut self) {
        self.proc.kill9();
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
        // Spaces the polls of this wait loop.
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

/// Waits until `f` is true or panics after `d`, naming `what`.
pub fn eventually(d: Duration, what: &str, mut f: impl FnMut() -> bool) {
    wait_for(what, d, || f().then_some(()))
}

/// Polls `f` until it returns `Some`, and returns that; panics after `deadline` with a
/// message naming `what` was awaited.
pub fn wait_for<T>(what: &str, deadline: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let t = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if t.elapsed() > deadline {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        // Spaces the polls of this wait loop.
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Waits until the replica of `db` (by config) restores to exactly `want`: the observable
/// end of "the replicator has shipped everything the application committed". Each try
/// restores into a fresh file under `work`; `extra` goes to `restore` (`-replica NAME`).
pub fn wait_replica_has(
    work: &Work,
    cfg: &Path,
    db: &Path,
    want: &[Vec<u8>],
    extra: &[&str],
    deadline: Duration,
) {
    let what = format!("the replica of {} to restore to the source", db.display());
    wait_for(&what, deadline, || {
        let out = work.path(&format!("probe-{}.db", rand_suffix()));
        let mut args = vec!["restore", "-config", cfg.to_str().unwrap(), "-o"];
        args.push(out.to_str().unwrap());
        args.extend_from_slice(extra);
        args.push(db.to_str().unwrap());
        let ok = run(&args).status.success() && pages_of_file(&out) == want;
        let _ = std::fs::remove_file(&out);
        ok.then_some(())
    })
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
