//! Issue 27, big databases: LTX files above the streaming threshold go up from local
//! files in pieces (`ReplicaStore::put_file`), never whole in memory: the first full
//! image, the level-9 snapshot and level-1 compactions (with `verify-compaction`, whose
//! read-back streams too), to a file replica and to S3 (Garage, multipart uploads), and
//! both restore page for page. The threshold (32 MiB) is lowered through the internal
//! `SQLITE_REPLICATE_STREAM_ABOVE_BYTES` so a 128 MiB database takes that path in a test;
//! the replicator's peak RSS must stay well under the database's size.
//!
//! The same for the backends that send an upload as a stream of bytes: SFTP (OpenSSH),
//! WebDAV (WsgiDAV) and NATS (nats-server), each fed from pieces of the local file.
//!
//! The 8 GiB figures are `bench/bench.py restore --size-mib 8192 --maintenance`.

use std::path::Path;
use std::time::Duration;

use crate::garage::Garage;
use crate::harness::*;
use crate::nats_server::NatsServer;
use crate::sshd::Sshd;
use crate::wsgidav::WsgiDav;

/// A replica's lines from a server helper's `replica_yaml` (at 6 spaces) as an item of a
/// `replicas:` list named `name` (at 8).
fn replica_item(name: &str, yaml: &str) -> String {
    let body: String = yaml.lines().map(|l| format!("  {l}\n")).collect();
    format!("      - name: {name}\n{body}")
}

/// A 128 MiB database replicated with the streaming threshold at 1 MiB: returns the
/// database, its connection, the config and the running replicator once every replica in
/// `names` holds a level-9 snapshot and a level-1 file past it.
fn replicate_big(
    w: &Work,
    db_mib: u64,
    replicas_yaml: &str,
    names: &[&str],
    extra_config: &str,
) -> (
    std::path::PathBuf,
    rusqlite::Connection,
    std::path::PathBuf,
    Replicator,
) {
    let db = w.path("app.db");
    let app = app_db(&db);
    app.execute_batch("BEGIN").unwrap();
    insert_rows(&app, (db_mib << 20) as usize / 4000, 4000);
    app.execute_batch("COMMIT").unwrap();
    // L1 every second so a compaction (of the full image and what follows) comes soon.
    let cfg = w.config(&format!(
        "{extra_config}levels:\n  - interval: 1s\ndbs:\n  - path: {}\n    replicas:\n{replicas_yaml}",
        db.display(),
    ));
    let r = Replicator::start_env(
        w,
        &["-config", cfg.to_str().unwrap(), "-log-level", "debug"],
        &[("SQLITE_REPLICATE_STREAM_ABOVE_BYTES", "1048576")],
    );
    let minutes = Duration::from_secs(120);
    let mut snapshot_max = 0;
    for name in names {
        let maxes = wait_for(&format!("a level-9 snapshot on {name}"), minutes, || {
            let m = level_maxes(&cfg, &db, name, 9);
            (!m.is_empty()).then_some(m)
        });
        snapshot_max = snapshot_max.max(maxes.into_iter().max().unwrap());
    }
    // News past the snapshot, so level 1 merges the full image with it.
    insert_rows(&app, 10, 4000);
    for name in names {
        eventually(
            minutes,
            &format!("a level-1 file past the snapshot on {name}"),
            || {
                level_maxes(&cfg, &db, name, 1)
                    .into_iter()
                    .any(|m| m > snapshot_max)
            },
        );
    }
    (db, app, cfg, r)
}

/// The replicator's peak resident set (VmHWM), in MiB.
#[cfg(target_os = "linux")]
fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM in /proc/PID/status");
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib / 1024
}

/// The max TXIDs of replica `name`'s files at `level` (the `ltx` listing).
fn level_maxes(cfg: &Path, db: &Path, name: &str, level: u8) -> Vec<u64> {
    let out = run(&[
        "ltx",
        "-config",
        cfg.to_str().unwrap(),
        "-replica",
        name,
        "-level",
        &level.to_string(),
        db.to_str().unwrap(),
    ]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .filter_map(|l| u64::from_str_radix(l.split_whitespace().nth(2)?, 16).ok())
        .collect()
}

#[cfg(target_os = "linux")]
#[test]
fn a_database_above_the_threshold_streams_to_file_and_s3_and_restores() {
    const DB_MIB: u64 = 128;
    let g = Garage::start();
    let w = Work::new();
    let replicas = format!(
        "      - name: file\n        path: {}\n{}",
        w.path("replica").display(),
        replica_item("s3", &g.replica_yaml("big/app.db")),
    );
    // verify-compaction reads each merged file back, in pieces too.
    let (db, _app, cfg, r) = replicate_big(
        &w,
        DB_MIB,
        &replicas,
        &["file", "s3"],
        "verify-compaction: true\n",
    );
    let peak = peak_rss_mib(r.id());
    eprintln!("replicator peak RSS {peak} MiB for a {DB_MIB} MiB database");
    let log = r.log_text();
    assert!(
        log.contains("uploading from the local file in pieces"),
        "the full image did not take the streaming path:\n{}",
        r.log_tail(40)
    );
    assert!(!log.contains("verify-compaction:"), "{}", r.log_tail(40));
    // Whole-file reads cost the image at least twice over (the L0 upload, the snapshot's
    // output read back); streamed, what remains is the process itself, S3's parts in
    // flight (5 of 5 MiB) and both replicas' buffers: 78 MiB in a debug build for 96 MiB,
    // the same for 128 (issue 27's bound is 100 MiB for 8 GiB, release build).
    assert!(
        peak < 100,
        "peak RSS {peak} MiB for a {DB_MIB} MiB database"
    );
    assert_eq!(r.stop(), 0);
    let want = pages_of_live(&db);
    for name in ["file", "s3"] {
        let out = w.path(&format!("restored-{name}.db"));
        restore_and_compare(&cfg, &db, &out, &want, &["-replica", name]);
    }
}

/// SFTP, WebDAV and NATS upload large files from the local file too (`put_file`): the
/// temp file's writes, the `PUT` body and the object's chunks are read in pieces as they
/// go. One replicator per backend, so each peak is that backend's: read whole, one
/// 128 MiB upload alone would put the replicator past the bound.
#[cfg(target_os = "linux")]
#[test]
fn a_database_above_the_threshold_streams_to_sftp_webdav_and_nats_and_restores() {
    const DB_MIB: u64 = 128;
    let sshd = Sshd::start();
    let dav = WsgiDav::start();
    let nats = NatsServer::start();
    nats.create_bucket("big");
    let backends = [
        ("sftp", sshd.replica_yaml("big/app.db")),
        ("webdav", dav.replica_yaml("big/app.db")),
        ("nats", nats.replica_yaml("big")),
    ];
    for (name, yaml) in backends {
        let w = Work::new();
        let replicas = replica_item(name, &yaml);
        let (db, _app, cfg, r) = replicate_big(&w, DB_MIB, &replicas, &[name], "");
        let peak = peak_rss_mib(r.id());
        eprintln!("replicator peak RSS {peak} MiB for a {DB_MIB} MiB database on {name}");
        assert!(
            r.log_text()
                .contains("uploading from the local file in pieces"),
            "the full image did not take the streaming path to {name}:\n{}",
            r.log_tail(40)
        );
        // Measured in a debug build on a busy machine: sftp 58-69 MiB (SSH's buffers),
        // webdav 42-73, nats 42-79 (the snapshot reads its input back from the bucket, and
        // nats-server pushes up to 32 MiB of an object ahead of its reader: JetStream's
        // flow-control window).
        assert!(
            peak < 100,
            "peak RSS {peak} MiB for a {DB_MIB} MiB database on {name}"
        );
        assert_eq!(r.stop(), 0);
        let want = pages_of_live(&db);
        restore_and_compare(&cfg, &db, &w.path("restored.db"), &want, &[]);
    }
}
