//! Leases, warm standby and failover (issue 10), on the backends with conditional writes:
//! a local directory, Azure (Azurite) and S3 (moto, which honours `If-None-Match` and
//! `If-Match` as AWS S3, MinIO and R2 do). Garage ignores conditional writes, so a lease
//! there must fail with a clear error. The race of several standbys for one lease is in
//! `lease_race`.
//!
//! Every scenario ends in a restore of the replica compared page for page with the
//! database of whoever holds the lease last.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use engine::storage::layout::LEASE_NAME;
use engine::storage::s3::S3Store;
use engine::storage::ReplicaStore;
use ltx::Level;

use crate::azurite::Azurite;
use crate::garage::Garage;
use crate::harness::*;
use crate::moto::Moto;
use crate::s3::{block_on, s3_options};

pub(crate) const TTL: &str = "2s";
const RENEW: &str = "500ms";

/// One side of a failover: its database, config and log.
pub(crate) struct Host {
    pub(crate) db: PathBuf,
    pub(crate) cfg: PathBuf,
}

pub(crate) fn host(work: &Work, name: &str, replica_yaml: &str, auto_promote: bool) -> Host {
    let db = work.path(&format!("{name}.db"));
    let cfg = work.path(&format!("{name}.yml"));
    std::fs::write(
        &cfg,
        format!(
            "dbs:\n  - path: {}\n    meta-path: {}\n    lease:\n      ttl: {TTL}\n      renew-interval: {RENEW}\n      owner: {name}\n      auto-promote: {auto_promote}\n    replica:\n{replica_yaml}",
            db.display(),
            work.path(&format!("{name}-meta")).display(),
        ),
    )
    .unwrap();
    Host { db, cfg }
}

pub(crate) fn file_replica(dir: &Path) -> String {
    format!("      type: file\n      path: {}\n", dir.display())
}

/// A `standby` process, killed on drop; its log is `standby-<database stem>.log`.
pub(crate) struct Standby {
    proc: Proc,
}

impl std::ops::Deref for Standby {
    type Target = Proc;
    fn deref(&self) -> &Proc {
        &self.proc
    }
}

impl std::ops::DerefMut for Standby {
    fn deref_mut(&mut self) -> &mut Proc {
        &mut self.proc
    }
}

impl Standby {
    pub(crate) fn start(work: &Work, h: &Host) -> Standby {
        Standby::start_with(work, h, &[])
    }
    /// Starts the standby of `h` and waits until it has applied TXID `m`.
    pub(crate) fn caught_up(work: &Work, h: &Host, m: u64) -> Standby {
        let sb = Standby::start(work, h);
        eventually(Duration::from_secs(60), "the standby to catch up", || {
            engine::restore::follow::read_applied_txid(&h.db).is_some_and(|t| t.get() >= m)
        });
        sb
    }
    pub(crate) fn start_with(work: &Work, h: &Host, extra: &[&str]) -> Standby {
        let stem = h.db.file_stem().unwrap().to_string_lossy().into_owned();
        let mut cmd = Command::new(bin());
        cmd.args(["standby", "-config", h.cfg.to_str().unwrap()])
            .args(["-follow-interval", "200ms"])
            .args(extra)
            .arg(&h.db)
            .env("RUST_LOG", "debug");
        Standby {
            proc: Proc::spawn("standby", cmd, work.path(&format!("standby-{stem}.log"))),
        }
    }
    pub(crate) fn stop(mut self) -> i32 {
        self.proc
            .terminate(Duration::from_secs(60))
            .code()
            .unwrap_or(-1)
    }
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) takes plain integers and touches no memory of ours; the pid is our
    // own unreaped child, so it cannot have been reused by another process.
    unsafe { libc::kill(child.id() as i32, sig) };
}

/// The highest TXID of the database's replica, as `ltx` lists it.
pub(crate) fn replica_max(h: &Host) -> u64 {
    let out = run_ok(&[
        "ltx",
        "-config",
        h.cfg.to_str().unwrap(),
        "-json",
        h.db.to_str().unwrap(),
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|f| u64::from_str_radix(f["max_txid"].as_str().unwrap(), 16).unwrap())
        .max()
        .unwrap_or(0)
}

/// Waits until the replica holds everything `h`'s replicator has captured so far: its
/// `status` reports the replicated TXID equal to the local one.
pub(crate) fn wait_replicated(h: &Host, at_least: u64) -> u64 {
    let mut max = 0;
    eventually(Duration::from_secs(60), "replica to catch up", || {
        max = replica_max(h);
        max >= at_least
    });
    max
}

/// Plays an old epoch's late writes into a file replica, as an old primary's delayed
/// requests would land: a snapshot and an L0 file reaching into the new epoch, holding old
/// state. The new primary must remove them (invariant E6) before anyone builds on them.
fn inject_late_writes(dir: &Path, s: &Host) {
    let out = run_ok(&["status", "-config", s.cfg.to_str().unwrap(), "-json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let start =
        u64::from_str_radix(v["leases"][0]["epoch_start_txid"].as_str().unwrap(), 16).unwrap();
    assert!(start > 1);
    let old = std::fs::read(dir.join("ltx/0/0000000000000001-0000000000000001.ltx"))
        .or_else(|_| {
            let d = dir.join("ltx/9");
            let f = std::fs::read_dir(&d).unwrap().next().unwrap().unwrap();
            std::fs::read(f.path())
        })
        .unwrap();
    let late = [
        dir.join(format!("ltx/9/0000000000000001-{start:016x}.ltx")),
        dir.join(format!(
            "ltx/0/{:016x}-{:016x}.ltx",
            start + 1000,
            start + 1000
        )),
    ];
    for p in &late {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, &old).unwrap();
    }
    eventually(
        Duration::from_secs(30),
        "the late writes to be removed",
        || late.iter().all(|p| !p.exists()),
    );
}

pub(crate) fn lease_owner_epoch(h: &Host) -> (String, u64) {
    let out = run_ok(&["status", "-config", h.cfg.to_str().unwrap(), "-json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let l = &v["leases"][0];
    (
        l["holder"].as_str().unwrap_or_default().to_string(),
        l["epoch"].as_u64().unwrap_or(0),
    )
}

fn two_replicators_only_one_uploads(replica_a: String, replica_b: String) {
    let work = Work::new();
    let a = host(&work, "a", &replica_a, false);
    // The same database file, a second replicator with its own meta directory.
    let b = Host {
        db: a.db.clone(),
        cfg: host(&work, "b", &replica_b, false).cfg,
    };
    std::fs::write(
        &b.cfg,
        std::fs::read_to_string(&b.cfg)
            .unwrap()
            .replace(work.path("b.db").to_str().unwrap(), a.db.to_str().unwrap()),
    )
    .unwrap();
    let app = app_db(&a.db);
    insert_rows(&app, 20, 300);
    let ra = Replicator::start(&work, &["-config", a.cfg.to_str().unwrap()]);
    eventually(Duration::from_secs(30), "a to take the lease", || {
        ra.log_text().contains("lease taken")
    });
    let mut rb = Replicator::start(&work, &["-config", b.cfg.to_str().unwrap()]);
    eventually(Duration::from_secs(30), "b to wait for the lease", || {
        rb.log_text().contains("lease held by another replicator")
    });
    for _ in 0..5 {
        insert_rows(&app, 10, 300);
        // Paces the writer: the commits spread over a few renewals.
        std::thread::sleep(Duration::from_millis(200));
    }
    wait_replicated(&a, 3);
    assert_eq!(lease_owner_epoch(&a), ("a".to_string(), 1));
    // b never started an uploader (they start only once the lease is held).
    let b_log = rb.log_text();
    assert!(
        !b_log.contains("replica position"),
        "b uploads without the lease:\n{b_log}"
    );
    assert!(!b_log.contains("lease taken"), "{b_log}");
    // a dies: b takes over after the TTL and uploads from a full image.
    ra.kill9();
    eventually(Duration::from_secs(30), "b to take the lease", || {
        rb.log_text().contains("lease taken")
    });
    insert_rows(&app, 30, 300);
    // b replicates (its uploader started) before the SIGTERM: the final sync ships the rest.
    rb.wait_for_line(REPLICA_STARTED, Duration::from_secs(60));
    assert_eq!(rb.stop(), 0);
    assert_eq!(lease_owner_epoch(&a).1, 2);
    drop(app);
    let want = pages_of_live(&a.db);
    restore_and_compare(&a.cfg, &a.db, &work.path("out.db"), &want, &[]);
}

#[test]
fn file_two_replicators_only_one_uploads() {
    let work = Work::new();
    let dir = work.path("replica");
    two_replicators_only_one_uploads(file_replica(&dir), file_replica(&dir));
}

#[test]
fn abs_two_replicators_only_one_uploads() {
    let az = Azurite::start();
    two_replicators_only_one_uploads(az.replica_yaml("db"), az.replica_yaml("db"));
}

#[test]
fn s3_two_replicators_only_one_uploads() {
    let m = Moto::start();
    two_replicators_only_one_uploads(m.replica_yaml("db"), m.replica_yaml("db"));
}

/// The primary is frozen past its lease, the standby promotes, the old primary resumes
/// with commits it never uploaded: it must stop without changing the history, and a
/// restore equals the new primary.
fn frozen_primary_cannot_corrupt(replica: String, file_dir: Option<&Path>) {
    let work = Work::new();
    let p = host(&work, "primary", &replica, false);
    let s = host(&work, "standby", &replica, true);
    let app = app_db(&p.db);
    insert_rows(&app, 50, 500);
    let mut rp = Replicator::start(&work, &["-config", p.cfg.to_str().unwrap()]);
    let m = wait_replicated(&p, 1);
    let sb = Standby::caught_up(&work, &s, m);
    insert_rows(&app, 20, 500);
    let before_freeze = wait_replicated(&p, m + 1);
    // Freeze the primary; its application keeps committing locally.
    signal(&rp.child, libc::SIGSTOP);
    insert_rows(&app, 40, 500);
    eventually(Duration::from_secs(60), "the standby to promote", || {
        sb.log_text().contains("promoted")
    });
    let (holder, epoch) = lease_owner_epoch(&s);
    assert_eq!((holder.as_str(), epoch), ("standby", 2));
    // The new primary's application writes.
    let app2 = app_db(&s.db);
    insert_rows(&app2, 30, 500);
    let after = wait_replicated(&s, before_freeze + 2);
    if let Some(dir) = file_dir {
        inject_late_writes(dir, &s);
    }
    // The old primary resumes: it must notice, stop, and leave the history alone.
    signal(&rp.child, libc::SIGCONT);
    let st = wait_timeout(&mut rp.child, Duration::from_secs(90))
        .expect("the old primary did not stop after losing its lease");
    assert!(!st.success(), "old primary exited 0:\n{}", rp.log_text());
    let log = rp.log_text();
    assert!(log.contains("lease lost"), "{log}");
    insert_rows(&app2, 30, 500);
    wait_replicated(&s, after + 1);
    drop(app2);
    assert_eq!(sb.stop(), 0);
    let want = pages_of_live(&s.db);
    restore_and_compare(&s.cfg, &s.db, &work.path("out.db"), &want, &[]);
    drop(app);
}

#[test]
fn file_frozen_primary_cannot_corrupt_history() {
    let work = Work::new();
    let dir = work.path("replica");
    frozen_primary_cannot_corrupt(file_replica(&dir), Some(&dir));
}

#[test]
fn abs_frozen_primary_cannot_corrupt_history() {
    let az = Azurite::start();
    frozen_primary_cannot_corrupt(az.replica_yaml("db"), None);
}

#[test]
fn s3_frozen_primary_cannot_corrupt_history() {
    let m = Moto::start();
    frozen_primary_cannot_corrupt(m.replica_yaml("db"), None);
}

/// Promotion drill: the primary dies (SIGKILL); measures the time until the standby's
/// database has accepted a write as the new primary (RTO).
fn promotion_drill(replica: String, backend: &str) {
    let work = Work::new();
    let p = host(&work, "primary", &replica, false);
    let s = host(&work, "standby", &replica, true);
    let app = app_db(&p.db);
    insert_rows(&app, 50, 500);
    let rp = Replicator::start(&work, &["-config", p.cfg.to_str().unwrap()]);
    let m = wait_replicated(&p, 1);
    let sb = Standby::caught_up(&work, &s, m);
    drop(app);
    let want_before = pages_of_live(&p.db);
    let died = Instant::now();
    rp.kill9();
    eventually(Duration::from_secs(60), "the standby to promote", || {
        sb.log_text().contains("promoted")
    });
    let app2 = app_db(&s.db);
    insert_rows(&app2, 1, 10);
    let rto = died.elapsed();
    eprintln!(
        "promotion drill ({backend}): RTO {} ms from the primary's death to the standby accepting a write (lease TTL {TTL}, renew {RENEW})",
        rto.as_millis()
    );
    // Nothing the primary had replicated is lost: the promoted copy held its state.
    drop(app2);
    let after = wait_replicated(&s, m + 1);
    assert!(after > m);
    assert_eq!(sb.stop(), 0);
    let want = pages_of_live(&s.db);
    assert!(want.len() >= want_before.len());
    restore_and_compare(&s.cfg, &s.db, &work.path("out.db"), &want, &[]);
}

#[test]
fn file_promotion_drill_reports_rto() {
    let work = Work::new();
    promotion_drill(file_replica(&work.path("replica")), "file");
}

#[test]
fn abs_promotion_drill_reports_rto() {
    let az = Azurite::start();
    promotion_drill(az.replica_yaml("db"), "abs");
}

#[test]
fn s3_promotion_drill_reports_rto() {
    let m = Moto::start();
    promotion_drill(m.replica_yaml("db"), "s3 (moto)");
}

/// `promote` on a live primary: the standby takes the lease, waits out the old holder's
/// TTL, and the old primary stops at its next renewal.
fn manual_promote_of_a_live_primary(replica: String) {
    let work = Work::new();
    let p = host(&work, "primary", &replica, false);
    let s = host(&work, "standby", &replica, false);
    let app = app_db(&p.db);
    insert_rows(&app, 30, 300);
    let mut rp = Replicator::start(&work, &["-config", p.cfg.to_str().unwrap()]);
    let m = wait_replicated(&p, 1);
    let mut sb = Standby::caught_up(&work, &s, m);
    run_ok(&["promote", s.db.to_str().unwrap()]);
    eventually(Duration::from_secs(60), "the standby to promote", || {
        sb.log_text().contains("promoted")
    });
    let st = wait_timeout(&mut rp.child, Duration::from_secs(90))
        .expect("the old primary did not stop after losing its lease");
    assert!(!st.success());
    assert!(rp.log_text().contains("lease lost"), "{}", rp.log_text());
    let app2 = app_db(&s.db);
    insert_rows(&app2, 10, 300);
    drop(app2);
    // The promoted standby replicates (its uploader started) before the SIGTERM.
    sb.wait_for_line(REPLICA_STARTED, Duration::from_secs(60));
    assert_eq!(sb.stop(), 0);
    let want = pages_of_live(&s.db);
    restore_and_compare(&s.cfg, &s.db, &work.path("out.db"), &want, &[]);
    drop(app);
}

#[test]
fn file_manual_promote_of_a_live_primary() {
    let work = Work::new();
    manual_promote_of_a_live_primary(file_replica(&work.path("replica")));
}

#[test]
fn s3_manual_promote_of_a_live_primary() {
    let m = Moto::start();
    manual_promote_of_a_live_primary(m.replica_yaml("db"));
}

/// Garage ignores `If-None-Match` (and so conditional writes): a lease there would not
/// exclude anyone, so `replicate` and `standby` refuse it, saying why, after the probe
/// (a create made twice, the second expected to fail) and before writing anything.
#[test]
fn garage_lease_is_refused_clearly() {
    let g = Garage::start();
    let work = Work::new();
    let p = host(&work, "primary", &g.replica_yaml("db"), false);
    let app = app_db(&p.db);
    insert_rows(&app, 5, 100);
    let out = run(&["replicate", "-config", p.cfg.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ignores conditional writes") && err.contains("lease"),
        "{err}"
    );
    let s = host(&work, "standby", &g.replica_yaml("db"), true);
    let out = run(&[
        "standby",
        "-config",
        s.cfg.to_str().unwrap(),
        s.db.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ignores conditional writes"), "{err}");
    // Refused before anything was written: no lease record, no LTX file.
    let store = S3Store::new(s3_options(&g, "db")).unwrap();
    block_on(async {
        let lease = store.named().unwrap().head_name(LEASE_NAME).await;
        assert!(lease.unwrap_err().is_not_found());
        for level in Level::all() {
            assert!(store.list(level).await.unwrap().is_empty(), "{level:?}");
        }
    });
}

/// Issue 18: the primary is frozen past its lease, the standby promotes, the primary
/// resumes. It must stop at once: exit non-zero within seconds (no final sync of writes
/// that are fenced now), with `-exec` after stopping its child (which here ignores
/// SIGTERM, so it takes the SIGKILL after the grace), and say in its log that the lease
/// was lost, to whom.
fn lost_lease_stops_at_once(with_child: bool) {
    let work = Work::new();
    let dir = work.path("replica");
    let p = host(&work, "primary", &file_replica(&dir), false);
    let s = host(&work, "standby", &file_replica(&dir), true);
    let app = app_db(&p.db);
    insert_rows(&app, 30, 300);
    let pid_file = work.path("child.pid");
    let mut args = vec!["-config".to_string(), p.cfg.display().to_string()];
    if with_child {
        args.push("-exec".into());
        args.push(format!(
            "sh -c 'trap \"\" TERM; echo $$ > {}; while :; do sleep 0.1; done'",
            pid_file.display()
        ));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut rp = Replicator::start(&work, &args);
    let m = wait_replicated(&p, 1);
    let child_pid = with_child.then(|| {
        let mut pid = 0;
        eventually(Duration::from_secs(30), "the child to start", || {
            pid = std::fs::read_to_string(&pid_file)
                .ok()
                .and_then(|t| t.trim().parse().ok())
                .unwrap_or(0);
            pid > 0
        });
        pid
    });
    let sb = Standby::caught_up(&work, &s, m);
    // Frozen past its TTL while its application goes on committing.
    signal(&rp.child, libc::SIGSTOP);
    insert_rows(&app, 20, 300);
    eventually(Duration::from_secs(60), "the standby to promote", || {
        sb.log_text().contains("promoted")
    });
    assert_eq!(lease_owner_epoch(&s), ("standby".to_string(), 2));
    insert_rows(&app, 20, 300);
    signal(&rp.child, libc::SIGCONT);
    let resumed = Instant::now();
    let st = wait_timeout(&mut rp.child, Duration::from_secs(20)).unwrap_or_else(|| {
        panic!(
            "the old primary still runs 20 s after losing its lease:\n{}",
            rp.log_text()
        )
    });
    let took = resumed.elapsed();
    eprintln!("old primary (child: {with_child}) exited {took:?} after resuming");
    assert!(!st.success(), "old primary exited 0:\n{}", rp.log_text());
    // Detection is the next renewal (due at once after the freeze); with a child, plus the
    // 5 s grace before SIGKILL.
    let limit = Duration::from_secs(if with_child { 12 } else { 5 });
    assert!(took < limit, "stopping took {took:?}:\n{}", rp.log_text());
    let log = rp.log_text();
    assert!(
        log.lines().any(|l| l.contains("ERROR")
            && l.contains("lease lost to standby")
            && l.contains(&p.db.display().to_string())),
        "no error line naming the new holder and the database:\n{log}"
    );
    if let Some(pid) = child_pid {
        // SAFETY: signal 0 only checks that the process exists.
        let alive = unsafe { libc::kill(pid, 0) } == 0;
        assert!(!alive, "the child {pid} still runs:\n{log}");
        assert!(log.contains("killing it"), "{log}");
    }
    drop(sb);
    drop(app);
}

#[test]
fn file_lost_lease_stops_the_exec_child_and_exits_at_once() {
    lost_lease_stops_at_once(true);
}

#[test]
fn file_lost_lease_exits_at_once_without_exec() {
    lost_lease_stops_at_once(false);
}

/// `standby -exec`: the application starts only once the standby is promoted and the
/// database is writable; its writes reach the replica; stopping the standby stops it.
#[test]
fn file_standby_exec_starts_the_app_only_after_promotion() {
    let work = Work::new();
    let dir = work.path("replica");
    let p = host(&work, "primary", &file_replica(&dir), false);
    let s = host(&work, "standby", &file_replica(&dir), true);
    let app = app_db(&p.db);
    insert_rows(&app, 30, 300);
    drop(app);
    let rp = Replicator::start(&work, &["-config", p.cfg.to_str().unwrap()]);
    let m = wait_replicated(&p, 1);
    // The child writes the database, then records its pid and becomes a long sleep.
    let marker = work.path("started");
    let cmd = format!(
        "sh -c 'sqlite3 {} \"INSERT INTO t(v) VALUES (4242)\" && echo $$ > {} && exec sleep 1000'",
        s.db.display(),
        marker.display()
    );
    let sb = Standby::start_with(&work, &s, &["-exec", &cmd]);
    eventually(Duration::from_secs(60), "the standby to catch up", || {
        engine::restore::follow::read_applied_txid(&s.db).is_some_and(|t| t.get() >= m)
    });
    // It follows, and has read the live lease and reported its lag (the first loop turn).
    eventually(
        Duration::from_secs(30),
        "the standby to follow and report",
        || {
            let log = sb.log_text();
            log.contains("following replica") && log.contains("lag_ms")
        },
    );
    assert!(
        !marker.exists(),
        "the child started before promotion:\n{}",
        sb.log_text()
    );
    rp.kill9();
    eventually(
        Duration::from_secs(60),
        "the child to start after promotion",
        || std::fs::read_to_string(&marker).is_ok_and(|t| t.ends_with('\n')),
    );
    let log = sb.log_text();
    let promoted = log.find("promoted").expect("promotion logged");
    let started = log
        .find("starting the -exec child")
        .expect("child start logged");
    assert!(promoted < started, "child started before promotion:\n{log}");
    let pid: i32 = std::fs::read_to_string(&marker)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // The child's write reaches the replica.
    wait_replicated(&s, m + 1);
    let restored = work.path("out.db");
    eventually(
        Duration::from_secs(30),
        "the child's row in the replica",
        || {
            let _ = std::fs::remove_file(&restored);
            run(&[
                "restore",
                "-o",
                restored.to_str().unwrap(),
                "-config",
                s.cfg.to_str().unwrap(),
                s.db.to_str().unwrap(),
            ])
            .status
            .success()
                && rusqlite::Connection::open(&restored)
                    .and_then(|c| {
                        c.query_row("SELECT count(*) FROM t WHERE v = 4242", [], |r| {
                            r.get::<_, i64>(0)
                        })
                    })
                    .is_ok_and(|n| n == 1)
        },
    );
    // SIGTERM to the standby reaches the child; the standby syncs and exits with its status.
    let code = sb.stop();
    assert_eq!(
        code,
        128 + libc::SIGTERM,
        "exit status is the child's (killed by SIGTERM)"
    );
    // SAFETY: signal 0 only checks that the process exists.
    let alive = unsafe { libc::kill(pid, 0) } == 0;
    assert!(
        !alive,
        "the child {pid} still runs after the standby stopped"
    );
    let want = pages_of_live(&s.db);
    restore_and_compare(&s.cfg, &s.db, &work.path("final.db"), &want, &[]);
}
