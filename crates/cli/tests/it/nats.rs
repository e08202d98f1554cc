//! NATS replicas (JetStream object store) against a real `nats-server -js` on loopback
//! (see `nats_server`): the storage contract (the suite every backend passes, with
//! conditional creates refused), prefixes and foreign names, a missing bucket, the
//! server killed and restarted under the store and under a running replicator,
//! replicate → restore by config and by URL, and Litestream 0.5.17 both ways.

use std::time::{Duration, SystemTime};

use engine::storage::nats::NatsStore;
use engine::storage::{ErrorKind, ReplicaStore};
use ltx::Level;

use crate::harness::*;
use crate::nats_server::{NatsServer, PASSWORD};
use crate::s3::{
    assert_created_is_header_timestamp, conformance, key, litestream_restore_ok,
    litestream_version, litestream_writes_then_we_restore, replicate_with_writes, s3_config,
    ConditionalCreate,
};

/// One runtime for a whole test: the store's client lives on the runtime it connected in.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn nats_store_passes_the_storage_conformance_suite_on_nats_server() {
    let n = NatsServer::start();
    n.create_bucket("conf");
    let rt = runtime();
    let s = NatsStore::new(n.options("conf", "db/app")).unwrap();
    // Foreign names in level 0's directory (not LTX; LTX one directory too deep), put
    // through the bucket's root replica, where they are ordinary named objects.
    let raw = NatsStore::new(n.options("conf", "")).unwrap();
    for name in [
        "db/app/ltx/0/junk.txt",
        "db/app/ltx/0/sub/0000000000000009-0000000000000009.ltx",
    ] {
        rt.block_on(raw.named().unwrap().put_name(name, b"x".to_vec().into()))
            .unwrap();
    }
    rt.block_on(conformance(&s, ConditionalCreate::Refused));

    rt.block_on(async {
        // Levels live under the prefix: the bucket's root replica sees none of them.
        s.put(&key(9, 1, 2), b"snap".to_vec().into(), SystemTime::now())
            .await
            .unwrap();
        assert!(raw.list(Level::SNAPSHOT).await.unwrap().is_empty());
        assert_eq!(s.list(Level::SNAPSHOT).await.unwrap().len(), 1);
        // Fenced puts are refused too, saying why.
        let e = s
            .named()
            .unwrap()
            .put_if_absent(&key(0, 1, 1), b"x".to_vec().into(), SystemTime::now())
            .await
            .unwrap_err();
        assert!(
            e.kind() == ErrorKind::Permanent && e.detail().contains("conditional writes"),
            "{e}"
        );
        // A missing bucket is NotFound naming it, with how to create it.
        let missing = NatsStore::new(n.options("nope", "")).unwrap();
        let e = missing.list(Level::L0).await.unwrap_err();
        assert!(
            e.kind() == ErrorKind::NotFound
                && e.what().contains("nope")
                && e.detail().contains("nats object add nope"),
            "{e}"
        );
        // A wrong password is PermissionDenied, and the password never shows.
        let mut o = n.options("conf", "");
        o.password = Some("wrong-password-xyz".into());
        let e = NatsStore::new(o)
            .unwrap()
            .list(Level::L0)
            .await
            .unwrap_err();
        let shown = format!("{e} {e:?}");
        assert!(e.kind() == ErrorKind::PermissionDenied, "{shown}");
        assert!(
            !shown.contains("wrong-password-xyz") && !shown.contains(PASSWORD),
            "{shown}"
        );
    });
}

#[test]
fn nats_store_survives_the_server_killed_and_restarted() {
    let mut n = NatsServer::start();
    n.create_bucket("re");
    let rt = runtime();
    let s = NatsStore::new(n.options("re", "")).unwrap();
    let t = SystemTime::now();
    rt.block_on(s.put(&key(0, 1, 1), b"before".to_vec().into(), t))
        .unwrap();
    n.kill();
    // No server: a transient error naming the replica, soon (the request timeout).
    let e = rt.block_on(s.list(Level::L0)).unwrap_err();
    assert!(
        e.is_retryable() && e.to_string().contains(s.location()),
        "{e}"
    );
    n.restart();
    // The client reconnects by itself; what was stored before the kill is there.
    let l = wait_for(
        "the store to answer after the restart",
        Duration::from_secs(30),
        || rt.block_on(s.list(Level::L0)).ok(),
    );
    assert_eq!(l.len(), 1);
    rt.block_on(async {
        s.put(&key(0, 2, 2), b"after".to_vec().into(), t)
            .await
            .unwrap();
        assert_eq!(&s.get(&key(0, 1, 1), None).await.unwrap()[..], b"before");
        assert_eq!(&s.get(&key(0, 2, 2), None).await.unwrap()[..], b"after");
    });
}

#[test]
fn replicate_to_nats_then_restore_by_config_and_by_url() {
    let n = NatsServer::start();
    n.create_bucket("backups");
    let w = Work::new();
    let db = w.path("app.db");
    // A prefix inside the bucket (ours: Litestream writes at the bucket's root).
    let cfg = w.config(&format!(
        "dbs:\n  - path: {}\n    replica:\n      url: {}\n",
        db.display(),
        n.replica_url("backups/db/app")
    ));
    let want = replicate_with_writes(&w, &cfg, &db);
    restore_and_compare(&cfg, &db, &w.path("by-config.db"), &want, &[]);

    // By URL alone, credentials in it; the password never reaches the output.
    let out = w.path("by-url.db");
    let url = n.replica_url("backups/db/app");
    let r = std::process::Command::new(bin())
        .args(["restore", "-integrity-check", "full", "-o"])
        .arg(&out)
        .arg(&url)
        .env_remove("SQLITE_REPLICATE_CONFIG")
        .env_remove("LITESTREAM_CONFIG")
        .current_dir(w.dir.path())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&r.stdout),
        String::from_utf8_lossy(&r.stderr)
    );
    assert!(r.status.success(), "restore {url}: {text}");
    assert!(!text.contains(PASSWORD), "{text}");
    assert_same_pages(&want, &pages_of_file(&out), "restore by URL");

    // Every file carries Litestream's timestamp header, equal to its LTX header's.
    let rt = runtime();
    let s = NatsStore::new(n.options("backups", "db/app")).unwrap();
    assert!(rt.block_on(assert_created_is_header_timestamp(&s)) > 0);
    // Nothing at the bucket's root: the prefix holds it all.
    let root = NatsStore::new(n.options("backups", "")).unwrap();
    assert!(rt.block_on(root.list(Level::SNAPSHOT)).unwrap().is_empty());
}

#[test]
fn a_nats_server_killed_mid_replication_loses_nothing() {
    let mut n = NatsServer::start();
    n.create_bucket("outage");
    let w = Work::new();
    let db = w.path("app.db");
    let cfg = s3_config(&w, &db, &n.replica_yaml("outage"));
    let app = app_db(&db);
    insert_rows(&app, 20, 300);
    let mut r = Replicator::start(&w, &["-config", cfg.to_str().unwrap()]);
    r.wait_for_line(REPLICA_STARTED, Duration::from_secs(30));
    let live = pages_of_live(&db);
    wait_replica_has(&w, &cfg, &db, &live, &[], Duration::from_secs(60));

    // The server dies (SIGKILL) while the application keeps writing.
    n.kill();
    for i in 0..20 {
        insert_rows(&app, 3, 100 + 50 * (i % 7));
    }
    let log = r.wait_for_line("replica write failed", Duration::from_secs(60));
    assert!(!log.contains(PASSWORD), "the password reached the log");
    n.restart();
    for i in 0..10 {
        insert_rows(&app, 3, 100 + 50 * (i % 7));
    }
    // Everything committed, before, during and after the outage, reaches the replica.
    let live = pages_of_live(&db);
    wait_replica_has(&w, &cfg, &db, &live, &[], Duration::from_secs(90));
    let code = r.stop();
    assert_eq!(code, 0, "replicator exit; log:\n{}", r_log(&w));
    restore_and_compare(&cfg, &db, &w.path("after.db"), &live, &[]);
}

/// Every replicator log of the work dir, for failure messages.
fn r_log(w: &Work) -> String {
    let mut out = String::new();
    for e in std::fs::read_dir(w.dir.path()).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if name.starts_with("replicate-") {
            out.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
        }
    }
    out
}

#[test]
fn litestream_restores_what_we_write_to_nats() {
    litestream_version();
    let n = NatsServer::start();
    n.create_bucket("ours");
    let w = Work::new();
    let db = w.path("app.db");
    // The same YAML serves both programs (at the bucket's root, where Litestream reads).
    let cfg = s3_config(&w, &db, &n.replica_yaml("ours"));
    let want = replicate_with_writes(&w, &cfg, &db);
    let out = w.path("litestream.db");
    litestream_restore_ok(&cfg, &db, &out);
    assert_same_pages(&want, &pages_of_file(&out), "litestream restore from NATS");
}

#[test]
fn we_restore_what_litestream_writes_to_nats() {
    litestream_version();
    let n = NatsServer::start();
    n.create_bucket("theirs");
    let w = Work::new();
    let db = w.path("app.db");
    let yaml = format!("{}      sync-interval: 100ms\n", n.replica_yaml("theirs"));
    let cfg = s3_config(&w, &db, &yaml);
    let ls_log =
        litestream_writes_then_we_restore(&w, &cfg, &db, std::process::Command::new("litestream"));
    // We read Litestream's timestamp headers: each equals its file's LTX header.
    let rt = runtime();
    let s = NatsStore::new(n.options("theirs", "")).unwrap();
    assert!(
        rt.block_on(assert_created_is_header_timestamp(&s)) > 0,
        "{ls_log}"
    );
}

/// What each call costs in NATS messages from the client (each one a round trip: a
/// request or an acknowledged publish), counted by the server (`/connz`), so the README's
/// figures stay true.
#[test]
fn nats_calls_cost_a_few_round_trips_each() {
    let n = NatsServer::start();
    n.create_bucket("cost");
    let rt = runtime();
    let s = NatsStore::new(n.options("cost", "")).unwrap();
    let t = SystemTime::now();
    // Connecting and looking the bucket up happen once, on the first call.
    rt.block_on(s.put(&key(0, 1, 1), vec![7u8; 4000].into(), t))
        .unwrap();
    let cost = |f: &dyn Fn()| {
        let before = n.client_msgs();
        f();
        let after = n.client_msgs();
        (after.0 - before.0, after.1 - before.1)
    };
    // A new small file: the existing-object lookup, one chunk, the metadata.
    let (sent, _) = cost(&|| {
        for i in 2..12 {
            rt.block_on(s.put(&key(0, i, i), vec![7u8; 4000].into(), t))
                .unwrap();
        }
    });
    assert_eq!(sent, 3 * 10, "messages for 10 small uploads");
    // A file of 300 KiB: three 128 KiB chunks.
    let (sent, _) = cost(&|| {
        rt.block_on(s.put(&key(1, 1, 11), vec![1u8; 300 << 10].into(), t))
            .unwrap();
    });
    assert_eq!(sent, 5, "messages for a 3-chunk upload");
    // Replacing a file adds the purge of its old chunks.
    let (sent, _) = cost(&|| {
        rt.block_on(s.put(&key(0, 1, 1), vec![8u8; 4000].into(), t))
            .unwrap();
    });
    assert_eq!(sent, 4, "messages for replacing a small file");
    // A listing: one consumer created, then one message per object of the bucket.
    let (sent, received) = cost(&|| {
        assert_eq!(rt.block_on(s.list(Level::L0)).unwrap().len(), 11);
    });
    assert!(
        sent <= 2 && received >= 12,
        "list: {sent} sent, {received} received"
    );
    // A ranged read: the object's info, one consumer, then the chunks up to the range.
    let (sent, received) = cost(&|| {
        let b = rt
            .block_on(s.get(&key(1, 1, 11), Some((200 << 10)..(200 << 10) + 10)))
            .unwrap();
        assert_eq!(b.len(), 10);
    });
    assert!(
        sent <= 3 && received >= 2,
        "get: {sent} sent, {received} received"
    );
    eprintln!("ranged get: {sent} sent, {received} received");
}

/// `check` passes on a NATS replica (conditional creates reported as unavailable), and a
/// lease on one is refused, saying why, before anything is uploaded.
#[test]
fn check_passes_on_nats_and_a_lease_there_is_refused() {
    let n = NatsServer::start();
    n.create_bucket("chk");
    let w = Work::new();
    let db = w.path("app.db");
    let app = app_db(&db);
    insert_rows(&app, 10, 200);
    let cfg = s3_config(&w, &db, &n.replica_yaml("chk"));
    run_ok(&["replicate", "-once", "-config", cfg.to_str().unwrap()]);
    let out = run(&["check", "-json", "-config", cfg.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "check: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("conditional create is not available") && text.contains("conditional writes"),
        "{text}"
    );
    assert!(!text.contains(PASSWORD), "{text}");

    // A lease needs conditional writes: refused, naming the reason.
    let leased = w.config(&format!(
        "dbs:\n  - path: {}\n    lease:\n      ttl: 5s\n      owner: a\n    replica:\n{}",
        db.display(),
        n.replica_yaml("chk")
    ));
    let mut r = Replicator::start(&w, &["-config", leased.to_str().unwrap()]);
    let log = r.wait_for_line("conditional writes", Duration::from_secs(60));
    assert!(!log.contains(PASSWORD), "the password reached the log");
    let rt = runtime();
    let s = NatsStore::new(n.options("chk", "")).unwrap();
    assert!(
        rt.block_on(s.named().unwrap().head_name("lock.json"))
            .unwrap_err()
            .is_not_found(),
        "no lease object was written"
    );
}
