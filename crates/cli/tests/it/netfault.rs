//! Network faults between the replicator and a real S3 server (Garage), under steady
//! writes: added latency, throttled bandwidth, connections reset or cut mid-request and
//! mid-response at seeded random points (the userspace [`FaultProxy`]), and where the
//! kernel has it, `tc netem` delay and loss on the loopback of a network namespace.
//!
//! After the faults stop the replicator must have caught up with no TXID gap (every TXID
//! is an L0 file ever listed or inside an L1 file), stop cleanly, and the replica must
//! restore to the source page for page, both directly and through the faulty proxy.
//!
//! netem: probed at test start in a throwaway namespace. When present, the test binary
//! re-runs this same test inside a namespace whose loopback has netem delay and loss (the
//! proxy runs there too); either way the test prints which was used.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use crate::crash::{busy_config, create_model_table, model_prefix, seed, History, Rng, Writer};
use crate::faultproxy::{FaultProxy, Faults};
use crate::garage::Garage;
use crate::harness::*;

/// Set in the environment of the copy of the test that runs inside the netem namespace.
const INSIDE_NETEM: &str = "SR_TEST_INSIDE_NETEM";

/// A `replicas:` list entry for Garage at `path`, reached through `endpoint`.
pub fn s3_entry(g: &Garage, path: &str, endpoint: &str) -> String {
    let yaml = g
        .replica_yaml(path)
        .replace(&g.endpoint(), endpoint)
        .lines()
        .map(|l| format!("  {l}\n"))
        .collect::<String>();
    // `      type: s3` at 8 spaces becomes the list item `      - type: s3`. Unlimited
    // uploads (`upload-rate: 0`, not the object-store default of 1/s): these tests need
    // many requests for their faults to fire, not a realistic bill.
    let yaml = yaml.replacen("        type:", "      - type:", 1);
    format!("{yaml}        upload-rate: 0\n")
}

/// A plain config (default intervals) for `db` with the given `replicas:` entry, at `name`.
pub fn plain_config(w: &Work, name: &str, db: &Path, entry: &str) -> std::path::PathBuf {
    let p = w.path(name);
    std::fs::write(
        &p,
        format!("dbs:\n  - path: {}\n    replicas:\n{entry}", db.display()),
    )
    .unwrap();
    p
}

/// A network namespace, deleted on drop.
struct Netns(String);

impl Netns {
    fn create(tag: &str) -> Result<Netns, String> {
        let name = format!("sr-{tag}-{}", std::process::id());
        sh(&["ip", "netns", "add", &name])?;
        let ns = Netns(name);
        sh(&["ip", "-n", &ns.0, "link", "set", "lo", "up"])?;
        Ok(ns)
    }
    fn tc(&self, args: &[&str]) -> Result<(), String> {
        let mut v = vec!["ip", "netns", "exec", &self.0, "tc"];
        v.extend_from_slice(args);
        sh(&v)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = sh(&["ip", "netns", "delete", &self.0]);
    }
}

fn sh(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args[0]))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{}`: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Whether `tc qdisc ... netem` works, tried in a throwaway namespace; the reason if not.
fn probe_netem() -> Result<(), String> {
    let ns = Netns::create("probe")?;
    ns.tc(&["qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"])
}

/// Re-runs `test` (this binary, exact name) inside a namespace whose loopback delays and
/// drops packets, and asserts it passed.
fn run_inside_netem(test: &str, seed: u64) {
    let ns = Netns::create("netem").expect("netns for netem");
    ns.tc(&[
        "qdisc", "add", "dev", "lo", "root", "netem", "delay", "5ms", "3ms", "loss", "1%",
    ])
    .expect("netem on the namespace's loopback");
    let exe = std::env::current_exe().unwrap();
    let st = Command::new("ip")
        .args(["netns", "exec", &ns.0])
        .arg(exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(INSIDE_NETEM, "1")
        .env("CRASH_SEED", seed.to_string())
        .status()
        .unwrap();
    assert!(
        st.success(),
        "{test} inside netem (delay 5ms±3ms, loss 1%) failed: {st}"
    );
}

#[test]
fn s3_replication_through_network_faults_restores_equal() {
    let test = "netfault::s3_replication_through_network_faults_restores_equal";
    let seed = seed(test);
    if std::env::var_os(INSIDE_NETEM).is_some() {
        eprintln!("network faults: inside a netns with tc netem on lo, plus the userspace proxy");
        proxy_scenario(seed);
        return;
    }
    match probe_netem() {
        Ok(()) => {
            eprintln!(
                "network faults: tc netem available: running the scenario inside a netns with netem, then with the userspace proxy alone"
            );
            run_inside_netem(test, seed);
        }
        Err(why) => eprintln!(
            "network faults: tc netem NOT available ({why}); using the userspace fault proxy only"
        ),
    }
    proxy_scenario(seed);
}

/// Faults while replicating: every connection dies at some point, most within a few
/// requests, by RST or FIN, in the request or the response.
fn replication_faults() -> Faults {
    Faults {
        latency_ms: (0, 15),
        bytes_per_sec: 8 << 20,
        reset_response_pct: 35,
        cut_response_pct: 30,
        reset_request_pct: 35,
        response_fault_within_bytes: 6 << 10,
        request_fault_within_bytes: 192 << 10,
    }
}

/// Faults while restoring: responses reset or cut, rarer (a restore retries each read a
/// few times, then fails; this is not a test of giving up).
fn restore_faults() -> Faults {
    Faults {
        latency_ms: (0, 10),
        bytes_per_sec: 4 << 20,
        reset_response_pct: 15,
        cut_response_pct: 15,
        reset_request_pct: 0,
        response_fault_within_bytes: 96 << 10,
        request_fault_within_bytes: 1,
    }
}

/// The replicator's log line for a replica write that failed after the client's retries.
const WRITE_FAILED: &str = "replica write failed";

fn proxy_scenario(seed: u64) {
    let mut rng = Rng::new(seed);
    let g = Garage::start();
    let proxy = FaultProxy::start(g.s3_port, rng.next(), replication_faults());
    let w = Work::new();
    let db = w.path("app.db");
    create_model_table(&Connection::open(&db).unwrap());
    let cfg = busy_config(&w, &db, &s3_entry(&g, "net/app.db", &proxy.endpoint()));
    let direct = plain_config(
        &w,
        "direct.yml",
        &db,
        &s3_entry(&g, "net/app.db", &g.endpoint()),
    );
    let writer = Writer::start(&db, Rng::new(rng.next()), true);
    let mut r = Replicator::start(&w, &["-config", cfg.to_str().unwrap()]);
    let mut history = History::default();
    let started = Instant::now();
    // The fault phase lasts until enough faults fired and enough was replicated through
    // them (work, not time: a slow machine just takes longer).
    let mut rounds = 0;
    eventually(
        Duration::from_secs(300),
        "faults to fire and the replica to advance through them",
        || {
            // Spaces the polls of this wait (each lists the replica).
            std::thread::sleep(Duration::from_millis(500));
            rounds += 1;
            history.observe_listing(&direct, &db, &format!("seed {seed} listing {rounds}"));
            let s = proxy.stats();
            let faults = s.resets.load(Ordering::Relaxed) + s.cuts.load(Ordering::Relaxed);
            faults >= 20 && history.max_txid() >= 200
        },
    );
    // A blackout: every connection, new or pooled, is reset at its next request byte, so the client's
    // own retries run out and the replicator's failures and backoff take over; then the
    // network heals and the replica must move on while the replicator runs.
    proxy.set_faults(Faults::none());
    let failed_before = r.log_text().matches(WRITE_FAILED).count();
    proxy.set_blackout(true);
    // The blackout lasts until the replicator itself reports a failed write (the client's
    // retries ran out), however long that takes.
    r.wait_for_lines(WRITE_FAILED, failed_before + 1, Duration::from_secs(120));
    proxy.set_blackout(false);
    history.observe_listing(&direct, &db, "after the blackout");
    let at_heal = history.max_txid();
    eventually(
        Duration::from_secs(180),
        "the replica to advance after the network healed",
        || {
            // Spaces the polls of this wait (each lists the replica).
            std::thread::sleep(Duration::from_millis(300));
            history.observe_listing(&direct, &db, "healing");
            history.max_txid() > at_heal
        },
    );
    let fault_secs = started.elapsed().as_secs_f64();
    let committed = writer.stop();
    let want = pages_of_live(&db);
    let log = r.log.clone();
    let code = r.stop();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(code, 0, "replicator after the faults; log:\n{text}");
    let failed_writes = text.matches(WRITE_FAILED).count();
    assert!(
        failed_writes > 0,
        "seed {seed}: the blackout never surfaced as a failed replica write; log:\n{text}"
    );
    history.observe_listing(&direct, &db, "final");
    let max = history.assert_no_gap(&format!("seed {seed}"));
    let out = w.path("restored.db");
    run_ok(&[
        "restore",
        "-config",
        direct.to_str().unwrap(),
        "-integrity-check",
        "full",
        "-o",
        out.to_str().unwrap(),
        db.to_str().unwrap(),
    ]);
    // The model first: a restore that lags says by how many transactions.
    let n = model_prefix(&out, "restore");
    let local_max = replica_max_txid(&w.path(".app.db-sqlite-replicate"));
    if n != committed || want != pages_of_file(&out) {
        // Keep the evidence: the replicator log, the restored file, and the plan the
        // restore followed.
        let keep = std::env::temp_dir().join(format!("sr-netfault-{seed}"));
        std::fs::create_dir_all(&keep).unwrap();
        std::fs::copy(&log, keep.join("replicate.log")).unwrap();
        std::fs::copy(&out, keep.join("restored.db")).unwrap();
        let plan = run(&[
            "restore",
            "-config",
            direct.to_str().unwrap(),
            "-dry-run",
            "-o",
            w.path("unused.db").to_str().unwrap(),
            db.to_str().unwrap(),
        ]);
        eprintln!(
            "seed {seed}: restore differs; plan:\n{}{}\nlisting:\n{}\nlog and restored file kept in {}",
            String::from_utf8_lossy(&plan.stdout),
            String::from_utf8_lossy(&plan.stderr),
            String::from_utf8_lossy(
                &run(&["ltx", "-config", direct.to_str().unwrap(), db.to_str().unwrap()]).stdout
            ),
            keep.display()
        );
    }
    assert_eq!(
        n, committed,
        "seed {seed}: the restore holds {n} of {committed} committed transactions (replica max TXID {max:#x}, local meta max {local_max:#x})"
    );
    assert_same_pages(
        &want,
        &pages_of_file(&out),
        &format!("seed {seed}: restore"),
    );

    // The same restore through the proxy, its responses reset and cut.
    let before =
        proxy.stats().resets.load(Ordering::Relaxed) + proxy.stats().cuts.load(Ordering::Relaxed);
    proxy.set_faults(restore_faults());
    let out2 = w.path("restored-through-faults.db");
    restore_and_compare(&cfg, &db, &out2, &want, &[]);
    let during_restore = proxy.stats().resets.load(Ordering::Relaxed)
        + proxy.stats().cuts.load(Ordering::Relaxed)
        - before;
    eprintln!(
        "seed {seed}: {fault_secs:.1}s of faults, {committed} transactions, {max} TXIDs, {failed_writes} failed replica writes logged, {during_restore} faults during the restore; proxy: {}",
        proxy.stats().summary()
    );
}
