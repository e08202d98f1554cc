//! WebDAV replicas against a real WsgiDAV server on loopback (see `wsgidav`): the storage
//! contract (the suite every backend passes; conditional writes refused), what lands on
//! the server's disk, the server killed and restarted under the store and under a running
//! replicator, replicate → restore by config and by URL, a wrong password, and Litestream
//! 0.5.17 both ways (it restores what we wrote, we restore what it wrote).

use std::process::Command;
use std::time::{Duration, SystemTime};

use engine::storage::webdav::WebDavStore;
use engine::storage::{ErrorKind, ReplicaStore};
use ltx::Level;

use crate::harness::*;
use crate::s3::{
    assert_created_is_header_timestamp, block_on, conformance_created_in_headers, key,
    litestream_restore_ok, litestream_version, litestream_writes_then_we_restore, one_error_line,
    replicate_with_writes, s3_config, ConditionalCreate,
};
use crate::wsgidav::{WsgiDav, PASSWORD};

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn webdav_store_passes_the_storage_conformance_suite_on_wsgidav() {
    let dav = WsgiDav::start();
    let root = dav.data("conf/db");
    std::fs::create_dir_all(root.join("ltx/0/sub")).unwrap();
    std::fs::write(root.join("ltx/0/junk.txt"), b"not ltx").unwrap();
    // An LTX name one directory too deep is not in level 0.
    std::fs::write(
        root.join("ltx/0/sub/0000000000000009-0000000000000009.ltx"),
        b"x",
    )
    .unwrap();
    let s = WebDavStore::new(dav.options("conf/db")).unwrap();
    // WsgiDAV checks If-None-Match apart from the write: no atomic conditional create.
    block_on(conformance_created_in_headers(
        &s,
        ConditionalCreate::Refused,
    ));
    assert!(!root.join("lock.json").exists(), "a refused create wrote");

    // On the server's disk: Litestream's layout, collections made on the way (a fresh
    // level and a fresh root), no temp files left.
    let t = SystemTime::now();
    block_on(s.put(&key(3, 7, 9), b"seven".to_vec().into(), t)).unwrap();
    let f = root.join("ltx/3/0000000000000007-0000000000000009.ltx");
    assert_eq!(std::fs::read(&f).unwrap(), b"seven");
    let deep = WebDavStore::new(dav.options("a/b/c")).unwrap();
    block_on(deep.put(&key(0, 1, 1), b"one".to_vec().into(), t)).unwrap();
    assert_eq!(
        std::fs::read(dav.data("a/b/c/ltx/0/0000000000000001-0000000000000001.ltx")).unwrap(),
        b"one"
    );
    let leftovers: Vec<_> = walk(&dav.data(""))
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
}

#[test]
fn webdav_store_carries_on_after_the_server_restarts_and_names_a_dead_one() {
    let mut dav = WsgiDav::start();
    let s = WebDavStore::new(dav.options("re/db")).unwrap();
    let t = SystemTime::now();
    block_on(s.put(&key(0, 1, 1), b"before".to_vec().into(), t)).unwrap();
    // Every connection is cut; pooled ones are dead without the store knowing yet.
    dav.restart();
    block_on(async {
        assert_eq!(s.list(Level::L0).await.unwrap().len(), 1);
        s.put(&key(0, 2, 2), b"after".to_vec().into(), t)
            .await
            .unwrap();
        assert_eq!(&s.get(&key(0, 2, 2), None).await.unwrap()[..], b"after");
    });
    dav.kill();
    // No server at all: a transient error naming the replica, never the password.
    let e = block_on(s.list(Level::L0)).unwrap_err();
    let msg = format!("{e} {e:?}");
    assert!(
        e.is_retryable() && msg.contains(s.location()) && !msg.contains(PASSWORD),
        "{msg}"
    );
}

#[test]
fn a_wrong_password_is_permission_denied_and_never_shown() {
    let dav = WsgiDav::start();
    let wrong = "not-the-password-31337";
    let mut o = dav.options("pw/db");
    o.password = Some(wrong.into());
    let e = block_on(WebDavStore::new(o).unwrap().list(Level::L0)).unwrap_err();
    let msg = format!("{e} {e:?}");
    assert!(
        e.kind() == ErrorKind::PermissionDenied && msg.contains("webdav-password"),
        "{msg}"
    );
    assert!(!msg.contains(wrong), "password leaked: {msg}");

    // What the operator sees from the binary: one error line naming the replica.
    let w = Work::new();
    let db = w.path("app.db");
    let app = app_db(&db);
    insert_rows(&app, 5, 100);
    let yaml = dav.replica_yaml("pw/db").replace(PASSWORD, wrong);
    let cfg = s3_config(&w, &db, &yaml);
    let out = run(&[
        "restore",
        "-config",
        cfg.to_str().unwrap(),
        "-o",
        w.path("out.db").to_str().unwrap(),
        db.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!all.contains(wrong), "password leaked: {all}");
    let e = one_error_line(&out);
    assert!(
        e.contains(&format!("webdav://127.0.0.1:{}/pw/db", dav.port)),
        "{e}"
    );
}

#[test]
fn replicate_over_webdav_then_restore_by_config_and_by_url() {
    let dav = WsgiDav::start();
    let w = Work::new();
    let db = w.path("app.db");
    let cfg = s3_config(&w, &db, &dav.replica_yaml("db/app"));
    let want = replicate_with_writes(&w, &cfg, &db);
    restore_and_compare(&cfg, &db, &w.path("by-config.db"), &want, &[]);

    // By URL alone, login in the URL (Litestream's form), no config file.
    let url = dav.url("db/app");
    let out = w.path("by-url.db");
    let r = Command::new(bin())
        .args(["restore", "-integrity-check", "full", "-o"])
        .arg(&out)
        .arg(&url)
        .env_remove("SQLITE_REPLICATE_CONFIG")
        .env_remove("LITESTREAM_CONFIG")
        .current_dir(w.dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert!(r.status.success(), "restore {url}: {stderr}");
    assert!(!stderr.contains(PASSWORD), "password printed: {stderr}");
    assert_same_pages(&want, &pages_of_file(&out), "restore by webdav:// URL");

    let s = WebDavStore::new(dav.options("db/app")).unwrap();
    assert!(block_on(assert_created_is_header_timestamp(&s)) > 0);
    // On disk: Litestream's layout under the path.
    assert!(dav.data("db/app/ltx/0").is_dir() || dav.data("db/app/ltx/1").is_dir());
}

#[test]
fn replication_carries_on_across_a_webdav_server_restart() {
    let mut dav = WsgiDav::start();
    let w = Work::new();
    let db = w.path("app.db");
    let yaml = format!("{}      sync-interval: 100ms\n", dav.replica_yaml("rs/app"));
    let cfg = s3_config(&w, &db, &yaml);
    let app = app_db(&db);
    insert_rows(&app, 20, 300);
    let mut r = Replicator::start_ready(&w, &["-config", cfg.to_str().unwrap()], 1);
    let live = pages_of_live(&db);
    wait_replica_has(&w, &cfg, &db, &live, &[], Duration::from_secs(60));

    // The server dies; the application keeps committing.
    dav.kill();
    for i in 0..10 {
        insert_rows(&app, 3, 200 + 50 * (i % 4));
    }
    // The replicator saw it fail (it retries; the log says so), and is still running.
    r.wait_for_line("webdav://127.0.0.1", Duration::from_secs(30));
    assert!(r.exited().is_none(), "{}", r.log_tail(4000));

    dav.restart();
    for i in 0..10 {
        insert_rows(&app, 3, 300 + 50 * (i % 4));
    }
    let live = pages_of_live(&db);
    wait_replica_has(&w, &cfg, &db, &live, &[], Duration::from_secs(60));
    let log = r.log.clone();
    assert_eq!(
        r.stop(),
        0,
        "{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
    let want = pages_of_live(&db);
    restore_and_compare(&cfg, &db, &w.path("restored.db"), &want, &[]);
}

#[test]
fn litestream_restores_what_we_write_over_webdav() {
    litestream_version();
    let dav = WsgiDav::start();
    let w = Work::new();
    let db = w.path("app.db");
    // The same YAML serves both programs.
    let cfg = s3_config(&w, &db, &dav.replica_yaml("ls/app"));
    let want = replicate_with_writes(&w, &cfg, &db);
    let out = w.path("litestream.db");
    litestream_restore_ok(&cfg, &db, &out);
    assert_same_pages(
        &want,
        &pages_of_file(&out),
        "litestream restore over WebDAV",
    );
}

#[test]
fn we_restore_what_litestream_writes_over_webdav() {
    litestream_version();
    let dav = WsgiDav::start();
    let w = Work::new();
    let db = w.path("app.db");
    let yaml = format!(
        "{}      sync-interval: 100ms\n",
        dav.replica_yaml("from-ls/app")
    );
    let cfg = s3_config(&w, &db, &yaml);
    let ls_log = litestream_writes_then_we_restore(&w, &cfg, &db, Command::new("litestream"));
    // Its files are where Litestream's webdav client puts them, and we read their times
    // from the LTX headers.
    assert!(dav.data("from-ls/app/ltx/0").is_dir(), "{ls_log}");
    let s = WebDavStore::new(dav.options("from-ls/app")).unwrap();
    assert!(
        block_on(assert_created_is_header_timestamp(&s)) > 0,
        "{ls_log}"
    );
}

/// WebDAV has no atomic conditional write (see `engine::storage::webdav`): a lease there
/// would not exclude anyone, so `replicate` refuses it, saying why, and writes nothing.
#[test]
fn a_lease_on_webdav_is_refused_clearly() {
    let dav = WsgiDav::start();
    let w = Work::new();
    let db = w.path("app.db");
    let app = app_db(&db);
    insert_rows(&app, 5, 100);
    let cfg = w.config(&format!(
        "dbs:\n  - path: {}\n    lease:\n      ttl: 10s\n      owner: a\n    replica:\n{}",
        db.display(),
        dav.replica_yaml("lease/app")
    ));
    let out = run(&["replicate", "-config", cfg.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("lease") && err.contains("conditional writes are not supported"),
        "{err}"
    );
    assert!(
        !dav.data("lease/app/ltx/0").exists(),
        "replicated without a lease"
    );
}
