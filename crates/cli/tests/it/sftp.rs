//! SFTP replicas against a real OpenSSH server on loopback (see `sshd`): the storage
//! contract (the suite every backend passes), what lands on the server's disk,
//! reconnecting after the server drops every connection, replicate → restore by config
//! and by URL, Litestream 0.5.17 restoring what we wrote, a replica Litestream 0.3 wrote
//! restored over SFTP, and what an operator sees for an unknown or wrong host key and a
//! wrong password.

use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use engine::storage::sftp::SftpStore;
use engine::storage::{ErrorKind, ReplicaStore};
use ltx::Level;

use crate::harness::*;
use crate::s3::{
    assert_created_is_header_timestamp, block_on, conformance_at_resolution, key,
    litestream_restore_ok, litestream_version, one_error_line, replicate_with_writes, s3_config,
    ConditionalCreate,
};
use crate::sshd::{keygen, Sshd};
use crate::v3::{v3_files, Litestream03};

#[test]
fn sftp_store_passes_the_storage_conformance_suite_on_openssh() {
    let sshd = Sshd::start();
    let root = sshd.data("conf/db");
    std::fs::create_dir_all(root.join("ltx/0/sub")).unwrap();
    std::fs::write(root.join("ltx/0/junk.txt"), b"not ltx").unwrap();
    // An LTX name one directory too deep is not in level 0.
    std::fs::write(
        root.join("ltx/0/sub/0000000000000009-0000000000000009.ltx"),
        b"x",
    )
    .unwrap();
    let s = SftpStore::new(sshd.options("conf/db")).unwrap();
    // SFTP v3 mtimes are whole seconds.
    block_on(conformance_at_resolution(
        &s,
        ConditionalCreate::Atomic,
        Duration::from_secs(1),
    ));
    assert_eq!(
        std::fs::read(root.join("lock.json")).unwrap(),
        b"one",
        "the first create wins"
    );

    // On the server's disk: Litestream's layout, mtime = created, no temp files left.
    let t = UNIX_EPOCH + Duration::from_secs(1_700_000_123);
    block_on(s.put(&key(3, 7, 9), b"seven".to_vec().into(), t)).unwrap();
    let f = root.join("ltx/3/0000000000000007-0000000000000009.ltx");
    assert_eq!(std::fs::read(&f).unwrap(), b"seven");
    assert_eq!(std::fs::metadata(&f).unwrap().modified().unwrap(), t);
    let leftovers: Vec<_> = walk(&root)
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
}

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
fn sftp_store_reconnects_after_the_server_drops_its_connections() {
    let mut sshd = Sshd::start();
    let s = SftpStore::new(sshd.options("re/db")).unwrap();
    let t = SystemTime::now();
    block_on(async {
        s.put(&key(0, 1, 1), b"before".to_vec().into(), t)
            .await
            .unwrap();
    });
    // Every session is killed; the store's connection is dead without knowing it yet.
    sshd.restart();
    block_on(async {
        let l = s.list(Level::L0).await.unwrap();
        assert_eq!(l.len(), 1);
        s.put(&key(0, 2, 2), b"after".to_vec().into(), t)
            .await
            .unwrap();
        assert_eq!(&s.get(&key(0, 2, 2), None).await.unwrap()[..], b"after");
    });
    sshd.kill();
    // No server at all: a transient error naming the replica.
    let e = block_on(s.list(Level::L0)).unwrap_err();
    assert!(
        e.is_retryable() && e.to_string().contains(s.location()),
        "{e}"
    );
}

#[test]
fn unknown_and_wrong_host_keys_are_refused_and_known_hosts_are_trusted() {
    let sshd = Sshd::start();
    let hp = format!("127.0.0.1:{}", sshd.port);
    // A key that is not the server's.
    let other = sshd.dir.path().join("other_ed25519");
    keygen(&other);
    let other_pub = std::fs::read_to_string(other.with_extension("pub")).unwrap();

    block_on(async {
        let mut o = sshd.options("hk");
        o.host_key = Some(other_pub.trim().to_string());
        let e = SftpStore::new(o)
            .unwrap()
            .list(Level::L0)
            .await
            .unwrap_err();
        let msg = e.to_string();
        assert!(
            matches!(e.kind(), ErrorKind::Permanent)
                && msg.contains(&hp)
                && msg.contains("not the expected")
                && msg.contains("host-key"),
            "{msg}"
        );

        // No host-key and no known_hosts entry: unknown, refused.
        let mut o = sshd.options("hk");
        o.host_key = None;
        let kh = sshd.dir.path().join("known_hosts");
        o.known_hosts = vec![kh.clone()];
        let e = SftpStore::new(o.clone())
            .unwrap()
            .list(Level::L0)
            .await
            .unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains(&hp)
                && msg.contains("not known")
                && msg.contains(&format!("ssh-keyscan -p {} 127.0.0.1", sshd.port)),
            "{msg}"
        );

        // The same key recorded in known_hosts, as ssh-keyscan prints it: trusted.
        std::fs::write(
            &kh,
            format!("[127.0.0.1]:{} {}\n", sshd.port, sshd.host_key),
        )
        .unwrap();
        SftpStore::new(o.clone())
            .unwrap()
            .list(Level::L0)
            .await
            .unwrap();
        // A different key recorded for this host: a mismatch, naming the file.
        std::fs::write(&kh, format!("[127.0.0.1]:{} {}", sshd.port, other_pub)).unwrap();
        let e = SftpStore::new(o)
            .unwrap()
            .list(Level::L0)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("known_hosts line 1"), "{e}");

        // The fingerprint alone serves as host-key.
        let fp = Command::new("ssh-keygen")
            .arg("-lf")
            .arg(sshd.dir.path().join("host_ed25519.pub"))
            .output()
            .unwrap();
        let fp = String::from_utf8(fp.stdout).unwrap();
        let fp = fp.split_whitespace().nth(1).unwrap().to_string();
        assert!(fp.starts_with("SHA256:"), "{fp}");
        let mut o = sshd.options("hk");
        o.host_key = Some(fp);
        SftpStore::new(o).unwrap().list(Level::L0).await.unwrap();
    });

    // What the operator sees from the binary: one error line naming host and setting.
    let w = Work::new();
    let db = w.path("app.db");
    let yaml = sshd
        .replica_yaml("hk")
        .replace(&sshd.host_key, other_pub.trim());
    let cfg = s3_config(&w, &db, &yaml);
    let out = run(&[
        "restore",
        "-config",
        cfg.to_str().unwrap(),
        "-o",
        w.path("out.db").to_str().unwrap(),
        db.to_str().unwrap(),
    ]);
    let e = one_error_line(&out);
    assert!(
        e.contains(&sshd.url("hk")) && e.contains(&hp) && e.contains("host-key"),
        "{e}"
    );
}

#[test]
fn wrong_password_is_permission_denied_and_never_shown() {
    // Password logins that succeed need an account password on this machine, which tests
    // must not set; a refused password still runs the whole password path.
    let sshd = Sshd::start();
    let password = "correct-horse-battery-staple";
    let mut o = sshd.options("pw");
    o.key_path = None;
    o.password = Some(password.into());
    let e = block_on(SftpStore::new(o).unwrap().list(Level::L0)).unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(e.kind(), ErrorKind::PermissionDenied)
            && msg.contains("password")
            && msg.contains(&format!("sftp://{}@127.0.0.1:{}", sshd.user, sshd.port)),
        "{msg}"
    );
    assert!(!msg.contains(password), "password leaked: {msg}");
    assert!(
        !format!("{e:?}").contains(password),
        "password leaked: {e:?}"
    );

    // A key and a wrong password: the key logs in.
    let mut o = sshd.options("pw");
    o.password = Some(password.into());
    block_on(SftpStore::new(o).unwrap().list(Level::L0)).unwrap();
}

#[test]
fn replicate_over_sftp_then_restore_by_config_and_by_url() {
    let sshd = Sshd::start();
    let w = Work::new();
    let db = w.path("app.db");
    let cfg = s3_config(&w, &db, &sshd.replica_yaml("db/app"));
    let want = replicate_with_writes(&w, &cfg, &db);
    restore_and_compare(&cfg, &db, &w.path("by-config.db"), &want, &[]);
    // By URL: key-path and host-key come from the configured replica with that URL.
    let url = sshd.url("db/app");
    let cfg_url = w.path("url.yml");
    let yaml = sshd.replica_yaml("db/app");
    let by_url: String = yaml
        .lines()
        .filter(|l| !l.contains("type:") && !l.contains("host:") && !l.contains("user:"))
        .map(|l| {
            if l.contains(" path:") {
                format!("      url: {url}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(
        &cfg_url,
        format!("dbs:\n  - path: {}\n    replica:\n{by_url}", db.display()),
    )
    .unwrap();
    let out = w.path("by-url.db");
    run_ok(&[
        "restore",
        "-config",
        cfg_url.to_str().unwrap(),
        "-integrity-check",
        "full",
        "-o",
        out.to_str().unwrap(),
        &url,
    ]);
    assert_same_pages(&want, &pages_of_file(&out), "restore by sftp:// URL");

    let s = SftpStore::new(sshd.options("db/app")).unwrap();
    assert!(block_on(assert_created_is_header_timestamp(&s)) > 0);
    // On disk: Litestream's layout under the path.
    assert!(sshd.data("db/app/ltx/0").is_dir() || sshd.data("db/app/ltx/1").is_dir());
}

#[test]
fn litestream_restores_what_we_write_over_sftp() {
    litestream_version();
    let sshd = Sshd::start();
    let w = Work::new();
    let db = w.path("app.db");
    // The same YAML serves both programs.
    let cfg = s3_config(&w, &db, &sshd.replica_yaml("ls/app"));
    let want = replicate_with_writes(&w, &cfg, &db);
    let out = w.path("litestream.db");
    litestream_restore_ok(&cfg, &db, &out);
    assert_same_pages(&want, &pages_of_file(&out), "litestream restore over SFTP");
}

#[test]
fn restores_a_litestream_03_replica_over_sftp() {
    let sshd = Sshd::start();
    let w = Work::new();
    let db = w.path("app.db");
    // 0.3 writes its generations/ into the directory the SSH server serves.
    let replica = sshd.data("v3/app");
    let app = app_db(&db);
    insert_rows(&app, 20, 300);
    let ls = Litestream03::start(&w, &db, &replica, "    min-checkpoint-page-count: 20\n");
    eventually(Duration::from_secs(30), "a 0.3 snapshot", || {
        v3_files(&replica).iter().any(|f| f.1 == "snapshots")
    });
    for i in 0..20 {
        insert_rows(&app, 2, 1500 + 97 * (i % 5));
        // Paces the writer: 0.3 syncs every 100 ms, so the commits span many syncs.
        std::thread::sleep(Duration::from_millis(50));
    }
    ls.stop();
    let want = pages_of_live(&db);
    assert!(v3_files(&replica).iter().any(|f| f.1 == "wal"));
    let cfg = s3_config(&w, &db, &sshd.replica_yaml("v3/app"));
    restore_and_compare(&cfg, &db, &w.path("restored.db"), &want, &[]);
}

/// The client key of `sshd`, encrypted in place with `passphrase` (`ssh-keygen -p`).
fn encrypt_client_key(sshd: &Sshd, passphrase: &str) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-p", "-P", "", "-N", passphrase, "-f"])
        .arg(&sshd.client_key)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ssh-keygen -p: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn an_encrypted_key_opens_with_key_passphrase_never_with_the_password() {
    // Security issue 17: `password` was also the key's passphrase, so a passphrase could
    // be sent to a server that refused the key.
    let sshd = Sshd::start();
    let passphrase = "key pass #1";
    encrypt_client_key(&sshd, passphrase);
    let w = Work::new();
    let db = w.path("app.db");
    let app = app_db(&db);
    insert_rows(&app, 10, 200);
    let yaml =
        |extra: &str| s3_config(&w, &db, &format!("{}{extra}", sshd.replica_yaml("enc/app")));
    let replicate =
        |cfg: &std::path::Path| run(&["replicate", "-once", "-config", cfg.to_str().unwrap()]);

    // The passphrase given as the login password does not open the key.
    let out = replicate(&yaml(&format!("      password: '{passphrase}'\n")));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "logged in: {stderr}");
    assert!(stderr.contains("key-passphrase"), "{stderr}");
    assert!(!stderr.contains(passphrase), "passphrase printed: {stderr}");
    assert!(!sshd.data("enc/app/ltx/0").is_dir());

    // key-passphrase does.
    let out = replicate(&yaml(&format!("      key-passphrase: '{passphrase}'\n")));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(sshd.data("enc/app/ltx/0").is_dir());
    let want = pages_of_live(&db);
    let cfg = yaml(&format!("      key-passphrase: '{passphrase}'\n"));
    restore_and_compare(&cfg, &db, &w.path("restored.db"), &want, &[]);
}

#[test]
fn debug_logs_show_our_events_not_the_ssh_library_internals() {
    // Security issue 17: the log level applied to every crate, so `-log-level debug`
    // printed russh's protocol trace (and the HTTP libraries' for object stores).
    let sshd = Sshd::start();
    let w = Work::new();
    let db = w.path("app.db");
    let app = app_db(&db);
    insert_rows(&app, 10, 200);
    let cfg = s3_config(&w, &db, &sshd.replica_yaml("dbg/app"));
    let out = run_ok(&[
        "replicate",
        "-once",
        "-log-level",
        "debug",
        "-config",
        cfg.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("SFTP session started"),
        "our debug events are shown:\n{stderr}"
    );
    // russh's debug messages on every login (client/encrypted.rs).
    for internal in [
        "userauth_success",
        "channel_open_confirmation",
        "server-sig-algs",
    ] {
        assert!(
            !stderr.contains(internal),
            "russh's {internal:?} printed:\n{stderr}"
        );
    }

    // Asked for explicitly, the libraries' events are shown.
    let out = Command::new(bin())
        .args(["replicate", "-once", "-config", cfg.to_str().unwrap()])
        .env("SQLITE_REPLICATE_LOG", "info,russh=debug")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("userauth_success"), "{stderr}");
}
