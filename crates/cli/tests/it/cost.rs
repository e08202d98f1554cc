//! What replication costs beyond the uploads themselves (issue 27): requests at start
//! (a replica lists only the levels that exist: one LIST for a new replica on S3, where
//! it was ten, so 10,000 databases starting no longer make 100,000 LISTs), and wake-ups
//! (change notifications are read in batches while they flow, engine
//! `platform::inotify::COALESCE`, 10 ms, so a file written a thousand times a second next
//! to the database does not wake the process a thousand times a second, and a commit
//! made meanwhile is still replicated); and quiet databases cost no wake-ups (no timer
//! per database, no `stat` poll where inotify covers them: 10,000 quiet databases in one
//! process cost 28% of a core before).

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::garage::Garage;
use crate::harness::*;
use crate::metrics::{free_port, scrape_settled, Scrape};

const S3_LISTS: &str = "litestream_replica_operation_total{replica_type=\"s3\",operation=\"LIST\"}";

fn lists(s: &Scrape) -> f64 {
    s.sample(S3_LISTS).unwrap_or(0.0)
}

fn s3_config(w: &Work, g: &Garage, db: &Path, port: u16) -> std::path::PathBuf {
    w.config(&format!(
        "addr: 127.0.0.1:{port}\ndbs:\n  - path: {}\n    replica:\n      name: s3\n{}",
        db.display(),
        g.replica_yaml("lists/app.db")
    ))
}

/// A new replica's start lists once (the level directories: none); after a restart,
/// once more per level that holds files (L0 and the snapshot level here). Before, every
/// start listed all ten levels.
#[test]
fn a_replica_start_lists_only_the_levels_that_exist() {
    let g = Garage::start();
    let w = Work::new();
    let db = w.path("app.db");
    let app = app_db(&db);
    insert_rows(&app, 10, 100);
    let port = free_port();
    let cfg = s3_config(&w, &g, &db, port);
    let args = ["-config", cfg.to_str().unwrap()];

    let r = Replicator::start(&w, &args);
    let first = scrape_settled(port, "the first upload to a new replica", |s| {
        s.replicated_txid() >= 1
    });
    assert_eq!(lists(&first), 1.0, "a new replica's start: one LIST");
    assert_eq!(r.stop(), 0);

    insert_rows(&app, 10, 100);
    let want = pages_of_live(&db);
    let r = Replicator::start(&w, &args);
    let again = scrape_settled(port, "the restarted replicator caught up", |s| {
        s.replicated_txid() >= 2
    });
    let n = lists(&again);
    // The root, then the levels written by the first run: L0, and the snapshot (L9).
    assert!(
        (2.0..=3.0).contains(&n),
        "a restart listed {n} times (ten levels would be 10)"
    );
    wait_replica_has(&w, &cfg, &db, &want, &[], Duration::from_secs(60));
    assert_eq!(r.stop(), 0);
}

#[cfg(target_os = "linux")]
/// Voluntary context switches of every thread of `pid` so far: each is a wake-up (a
/// thread that slept and was woken).
fn wakeups(pid: u32) -> u64 {
    let mut total = 0;
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let Ok(s) = std::fs::read_to_string(t.path().join("status")) else {
            continue; // a thread that ended meanwhile
        };
        for line in s.lines() {
            if let Some(v) = line.strip_prefix("voluntary_ctxt_switches:") {
                total += v.trim().parse::<u64>().unwrap();
            }
        }
    }
    total
}

#[cfg(target_os = "linux")]
#[test]
fn a_log_written_a_thousand_times_a_second_next_to_the_database_costs_few_wakeups() {
    let w = Work::new();
    let db = w.path("app.db");
    let replica = w.path("replica");
    let c = app_db(&db);
    insert_rows(&c, 1, 100);
    let cfg = w.file_config(&db, &replica, "");
    let r = Replicator::start_ready(&w, &["-config", cfg.to_str().unwrap()], 1);
    eventually(Duration::from_secs(30), "the first upload", || {
        replica_max_txid(&replica) >= 1
    });

    // The application's log, in the database's directory: one write(2) a millisecond.
    let stop = Arc::new(AtomicBool::new(false));
    let writes = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, writes) = (stop.clone(), writes.clone());
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(w.path("app.log"))
            .unwrap();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                log.write_all(b"GET /index.html 200\n").unwrap();
                writes.fetch_add(1, Ordering::Relaxed);
                // Paces the log writer (the load under test), not a synchronisation.
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    eventually(Duration::from_secs(10), "the log writer to run", || {
        writes.load(Ordering::Relaxed) > 100
    });
    // A measuring window of two seconds: wake-ups against writes made in it.
    let (s0, w0, t0) = (
        wakeups(r.id()),
        writes.load(Ordering::Relaxed),
        Instant::now(),
    );
    while t0.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let (s1, w1) = (wakeups(r.id()), writes.load(Ordering::Relaxed));
    // A commit made while the log is written is still replicated.
    insert_rows(&c, 1, 100);
    let want = pages_of_live(&db);
    wait_replica_has(&w, &cfg, &db, &want, &[], Duration::from_secs(30));
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let (switches, written) = (s1 - s0, w1 - w0);
    let secs = t0.elapsed().as_secs_f64().max(2.0);
    eprintln!("{written} log writes, {switches} wake-ups of the replicator in {secs:.1} s");
    assert!(
        written >= 200,
        "the log writer was starved ({written} writes)"
    );
    // Read once per write, the replicator would wake at least once per write; read in
    // batches, about once per 10 ms (two threads at most per batch).
    assert!(
        switches * 3 < written,
        "{switches} wake-ups for {written} writes next to the database: notifications are \
         not batched\n{}",
        r.log_tail(20)
    );
    assert_eq!(r.stop(), 0);
}

#[cfg(target_os = "linux")]
fn has_level(replica_db: &Path, level: u8) -> bool {
    std::fs::read_dir(replica_db.join(format!("ltx/{level}")))
        .map(|rd| rd.count() > 0)
        .unwrap_or(false)
}

/// 200 quiet databases in a watched directory, every one replicated and snapshotted:
/// the process sleeps. Each database used to keep two interval timers (250 and 500 ms)
/// and be `stat`ed twice a second, about 1,000 wake-ups a second here; now a quiet
/// database waits on its change notification alone.
#[cfg(target_os = "linux")]
#[test]
fn quiet_databases_do_not_wake_the_process() {
    const DBS: usize = 200;
    let w = Work::new();
    let root = w.path("data");
    std::fs::create_dir_all(&root).unwrap();
    let replica = w.path("replica");
    let names: Vec<String> = (0..DBS).map(|i| format!("db{i:03}.db")).collect();
    for n in &names {
        insert_rows(&app_db(&root.join(n)), 1, 100);
    }
    let cfg = w.config(&format!(
        "dbs:\n  - dir: {}\n    pattern: '*.db'\n    watch: true\n    replica:\n      path: {}\n",
        root.display(),
        replica.display()
    ));
    let r = Replicator::start(&w, &["-config", cfg.to_str().unwrap()]);
    // Quiet: every database's first file uploaded and its start-up snapshot written
    // (nothing left for compaction, snapshots or retention to do).
    eventually(
        Duration::from_secs(120),
        "every database snapshotted",
        || {
            names
                .iter()
                .all(|n| has_level(&replica.join(n), 0) && has_level(&replica.join(n), 9))
        },
    );
    // The last captures' pin re-checks (half a second after each) and blocking threads
    // finishing their work come just after: quiet is a window of two seconds with fewer
    // wake-ups than a tenth of the databases, within half a minute. Before, each database
    // woke six times a second for good.
    let bound = DBS as f64 / 10.0;
    let deadline = Instant::now() + Duration::from_secs(30);
    let rate = loop {
        let (s0, t0) = (wakeups(r.id()), Instant::now());
        while t0.elapsed() < Duration::from_secs(2) {
            std::thread::sleep(Duration::from_millis(100));
        }
        let rate = wakeups(r.id()).saturating_sub(s0) as f64 / t0.elapsed().as_secs_f64();
        eprintln!("{DBS} quiet databases: {rate:.0} wake-ups a second");
        if rate < bound || Instant::now() > deadline {
            break rate;
        }
    };
    assert!(
        rate < bound,
        "{rate:.0} wake-ups a second for {DBS} quiet databases after 30 s: something wakes \
         per database\n{}",
        r.log_tail(20)
    );
    // Still watching: a commit now is uploaded at once.
    let (db, replica_db) = (root.join(&names[7]), replica.join(&names[7]));
    let before = replica_max_txid(&replica_db);
    insert_rows(&app_db(&db), 1, 100);
    eventually(Duration::from_secs(10), "the commit uploaded", || {
        replica_max_txid(&replica_db) > before
    });
    assert_eq!(r.stop(), 0);
}
