//! Many databases in a small open-file limit (issue 27): the replicator sizes a
//! descriptor budget from `RLIMIT_NOFILE`, lets idle databases go dormant (their
//! descriptors closed) while others wait, and when descriptors run out anyway says so
//! once, naming the limit to raise, and backs off instead of retrying every second. The
//! limit is set on the replicator alone with `prlimit`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::*;

/// The replicator under `limit` open files (soft and hard), with `RUST_LOG=info`.
fn start_limited(w: &Work, cfg: &Path, limit: u32) -> Proc {
    let mut cmd = Command::new("prlimit");
    cmd.arg(format!("--nofile={limit}:{limit}"))
        .arg(bin())
        .args(["replicate", "-config", cfg.to_str().unwrap()])
        .env("RUST_LOG", "info");
    Proc::spawn("replicator", cmd, w.path("replicate.log"))
}

/// `n` databases `data/dbNNN.db` with a few rows each, connections closed.
fn make_dbs(w: &Work, n: usize) -> Vec<PathBuf> {
    let dir = w.path("data");
    std::fs::create_dir_all(&dir).unwrap();
    (0..n)
        .map(|i| {
            let p = dir.join(format!("db{i:03}.db"));
            insert_rows(&app_db(&p), 3, 200);
            p
        })
        .collect()
}

fn dir_config(w: &Work) -> PathBuf {
    w.config(&format!(
        "dbs:\n  - dir: {}\n    pattern: '*.db'\n    replica:\n      type: file\n      path: {}\n",
        w.path("data").display(),
        w.path("replica").display()
    ))
}

fn replica_of(w: &Work, db: &Path) -> PathBuf {
    w.path("replica").join(db.file_name().unwrap())
}

/// CPU seconds (user + system) the process has used.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// 300 databases under a limit of 1000 open files, where 11 descriptors each (what a
/// replicating database held before) would need 3300, and a dormant database with its
/// file replica's level directories open (as before `ReplicaStore::close_idle`) up to
/// 1800: every one replicates, twice, and each restores to its source page for page;
/// descriptors never run out.
#[test]
fn three_hundred_databases_replicate_within_a_limit_too_small_for_all_open() {
    let w = Work::new();
    let dbs = make_dbs(&w, 300);
    let cfg = dir_config(&w);
    let mut r = start_limited(&w, &cfg, 1000);
    let started = Instant::now();
    eventually(
        Duration::from_secs(240),
        "every database's first file",
        || {
            dbs.iter()
                .all(|d| replica_max_txid(&replica_of(&w, d)) >= 1)
        },
    );
    eprintln!("300 databases replicated after {:?}", started.elapsed());
    // A second round of commits: dormant databases wake, capture and go quiet again.
    for d in &dbs {
        insert_rows(&app_db(d), 2, 300);
    }
    for (i, d) in dbs.iter().enumerate() {
        let want = pages_of_live(d);
        wait_replica_has(&w, &cfg, d, &want, &[], Duration::from_secs(120));
        if i % 50 == 0 {
            eprintln!(
                "{i} restores equal their sources after {:?}",
                started.elapsed()
            );
        }
    }
    let log = r.log_text();
    assert!(
        !log.contains("Too many open files") && !log.contains("out of file descriptors"),
        "{}",
        r.log_tail(4000)
    );
    r.terminate(Duration::from_secs(120));
}

/// Descriptors run out (the limit lowered under a running replicator with `prlimit
/// --pid`, then new databases appear in its watched directory): one clear error naming
/// the limit and how to raise it, a backoff per database (a handful of lines each over
/// half a minute, not one a second), little CPU, and a database that was replicating
/// keeps replicating.
#[test]
fn running_out_of_descriptors_is_one_clear_error_then_backoff() {
    let w = Work::new();
    let dbs = make_dbs(&w, 8);
    let cfg = w.config(&format!(
        "dbs:\n  - dir: {}\n    pattern: '*.db'\n    watch: true\n    replica:\n      type: file\n      path: {}\n",
        w.path("data").display(),
        w.path("replica").display()
    ));
    let mut r = start_limited(&w, &cfg, 4096);
    eventually(
        Duration::from_secs(60),
        "every database's first file",
        || {
            dbs.iter()
                .all(|d| replica_max_txid(&replica_of(&w, d)) >= 1)
        },
    );
    let open = std::fs::read_dir(format!("/proc/{}/fd", r.id()))
        .unwrap()
        .count();
    // Room for one database's capture, not for five new databases.
    let limit = open + 12;
    let out = Command::new("prlimit")
        .args([
            format!("--pid={}", r.id()),
            format!("--nofile={limit}:{limit}"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (t0, cpu0, from) = (Instant::now(), cpu_seconds(r.id()), r.log_text().len());
    let fresh: Vec<PathBuf> = (0..5)
        .map(|i| {
            let p = w.path("data").join(format!("new{i}.db"));
            insert_rows(&app_db(&p), 1, 100);
            p
        })
        .collect();
    let line = r.wait_for_line(
        &format!("out of file descriptors: the open-file limit ({limit})"),
        Duration::from_secs(60),
    );
    for needle in ["ulimit -n", "LimitNOFILE="] {
        assert!(line.contains(needle), "{line}");
    }
    // A database that was replicating goes on: a new commit reaches its replica.
    let before = replica_max_txid(&replica_of(&w, &dbs[0]));
    insert_rows(&app_db(&dbs[0]), 2, 300);
    eventually(
        Duration::from_secs(90),
        "db000's new commit replicated",
        || replica_max_txid(&replica_of(&w, &dbs[0])) > before,
    );
    let window = Duration::from_secs(30);
    if let Some(rest) = window.checked_sub(t0.elapsed()) {
        // The observation window for the log and CPU counts below.
        std::thread::sleep(rest);
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu = (cpu_seconds(r.id()) - cpu0) / elapsed;
    let text = r.log_text();
    let new = &text[from..];
    // The database's own lines: its retries and the captures that failed before the
    // exhaustion was recognised. (An uploader's retries of a replica's maintenance are
    // logged by the replica's loop, not throttled here.)
    let noisy: Vec<&str> = new
        .lines()
        .filter(|l| l.contains("out of file descriptors") || l.contains("capture failed"))
        .collect();
    eprintln!(
        "{} warning/error lines and {:.1}% of a core over {elapsed:.0} s",
        noisy.len(),
        cpu * 100.0
    );
    assert_eq!(
        text.matches("out of file descriptors: the open-file limit")
            .count(),
        1,
        "the clear error is said once"
    );
    for d in dbs.iter().chain(&fresh) {
        let name = d.display().to_string();
        let n = noisy.iter().filter(|l| l.contains(&*name)).count();
        // Backoff 1, 2, 4, 8, 16 s: at most 5 retries in 30 s, each with at most a
        // capture error or two before it is recognised.
        assert!(n <= 12, "{n} lines for {name} in {elapsed:.0} s:\n{new}");
    }
    assert!(cpu < 0.10, "{:.1}% of a core", cpu * 100.0);
}
