//! Client-side encryption with age (issue 24), against the real binary: replicas on a
//! file directory, Garage (S3) and Azurite (ABS) hold only age files; restores of the
//! latest state, of a past point and in follow mode equal the source page for page;
//! a wrong identity, a missing one and a tampered object each fail with one clear line
//! and no key material; a replica Litestream 0.3.13 wrote with its `age:` block
//! restores with the same keys; Litestream 0.5.17 refuses our encrypted replica.
//!
//! Keys are generated here with the `age` crate (the engine's own). Garage, Azurite
//! and both Litestreams are found as their own modules find them; a missing one fails.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use age::secrecy::ExposeSecret;

use crate::harness::*;
use crate::lease::file_replica;

const MAGIC: &[u8] = b"age-encryption.org/v1\n";

/// A fresh X25519 key pair: (identity, recipient). X25519, which age 0.13 deprecates for
/// post-quantum keys, because Litestream 0.3 knows no other.
#[allow(deprecated)]
fn keypair() -> (String, String) {
    let id = age::x25519::Identity::generate();
    (
        id.to_string().expose_secret().to_string(),
        id.to_public().to_string(),
    )
}

/// Go's `age` command (Debian's package, installed by `scripts/test.sh`); `$AGE_BIN`
/// points elsewhere. Missing, the test fails naming the install step.
fn age_cli() -> PathBuf {
    if let Some(p) = std::env::var_os("AGE_BIN") {
        return PathBuf::from(p);
    }
    let p = PathBuf::from("/usr/bin/age");
    assert!(
        p.exists(),
        "the age CLI is missing: `apt-get install age` (scripts/test.sh installs it)"
    );
    p
}

/// An `age:` block at replica indentation (6 spaces).
fn age_yaml(identities: &[&str], recipients: &[&str]) -> String {
    let mut s = String::from("      age:\n");
    if !identities.is_empty() {
        s.push_str("        identities:\n");
        for i in identities {
            s.push_str(&format!("          - {i}\n"));
        }
    }
    if !recipients.is_empty() {
        s.push_str("        recipients:\n");
        for r in recipients {
            s.push_str(&format!("          - {r}\n"));
        }
    }
    s
}

/// A config file `name` with one database and `replica` (the `replica:` body).
fn config(w: &Work, name: &str, top: &str, db: &Path, replica: &str) -> PathBuf {
    let p = w.path(name);
    std::fs::write(
        &p,
        format!(
            "{top}dbs:\n  - path: {}\n    replica:\n{replica}",
            db.display()
        ),
    )
    .unwrap();
    p
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

fn restore_args<'a>(cfg: &'a Path, out: &'a Path, db: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec![
        "restore",
        "-config",
        cfg.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ];
    a.extend_from_slice(extra);
    a.push(db.to_str().unwrap());
    a
}

/// Replicates two states of a database to `replica` (encrypted with a fresh identity),
/// then restores the latest and the first (by timestamp) and compares them page for page.
/// Returns the config and the identity.
fn round_trip(w: &Work, replica: &str) -> (PathBuf, PathBuf, String) {
    let db = w.path("app.db");
    let app = app_db(&db);
    insert_rows(&app, 40, 300);
    let (id, _) = keypair();
    let cfg = config(
        w,
        "enc.yml",
        "",
        &db,
        &format!("{replica}      upload-rate: 0\n{}", age_yaml(&[&id], &[])),
    );
    run_ok(&["replicate", "-config", cfg.to_str().unwrap(), "-once"]);
    let first = pages_of_live(&db);
    let t1 = SystemTime::now();
    insert_rows(&app, 30, 2000);
    app.execute("DELETE FROM t WHERE id % 3 = 0", []).unwrap();
    run_ok(&["replicate", "-config", cfg.to_str().unwrap(), "-once"]);
    let second = pages_of_live(&db);

    restore_and_compare(&cfg, &db, &w.path("latest.db"), &second, &[]);
    let ts = jiff::Timestamp::try_from(t1).unwrap().to_string();
    restore_and_compare(&cfg, &db, &w.path("first.db"), &first, &["-timestamp", &ts]);
    (cfg, db, id)
}

/// The replica of `db` as `cfg` configures it, but with `age` replaced by `age_block`
/// (empty: none), in a new config `name`.
fn with_age_block(w: &Work, cfg: &Path, name: &str, age_block: &str) -> PathBuf {
    let text = std::fs::read_to_string(cfg).unwrap();
    let start = text.find("      age:\n").unwrap();
    let p = w.path(name);
    std::fs::write(&p, format!("{}{age_block}", &text[..start])).unwrap();
    p
}

fn one_line_error(out: &std::process::Output) -> String {
    assert!(!out.status.success(), "should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn file_replica_is_encrypted_and_restores_latest_past_and_following() {
    let w = Work::new();
    let dir = w.path("replica");
    let (cfg, db, id) = round_trip(&w, &file_replica(&dir));

    // Every object is an age file; nothing of the page content is readable.
    let files = files_under(&dir.join("ltx"));
    assert!(!files.is_empty());
    for f in &files {
        let b = std::fs::read(f).unwrap();
        assert!(b.starts_with(MAGIC), "{} is not an age file", f.display());
        assert!(
            !b.windows(4).any(|x| x == b"LTX1"),
            "{} holds an LTX header in clear",
            f.display()
        );
    }

    // Compaction and retention decrypt and re-encrypt: run the daemon with L1 every
    // second and a short L0 retention until an L1 file exists and L0 files are gone.
    let app = app_db(&db);
    let daemon_cfg = w.path("daemon.yml");
    std::fs::write(
        &daemon_cfg,
        format!(
            "levels:\n  - interval: 1s\nl0-retention: 1s\nl0-retention-check-interval: 1s\nverify-compaction: true\n{}",
            std::fs::read_to_string(&cfg).unwrap()
        ),
    )
    .unwrap();
    let l1_before = files_under(&dir.join("ltx/1"));
    let l0_before = files_under(&dir.join("ltx/0"));
    assert!(!l0_before.is_empty());
    let r = Replicator::start_ready(&w, &["-config", daemon_cfg.to_str().unwrap()], 1);
    eventually(
        Duration::from_secs(60),
        "a new encrypted L1 file, and the old L0 files deleted",
        || {
            insert_rows(&app, 1, 100);
            let l1 = files_under(&dir.join("ltx/1"));
            let l0 = files_under(&dir.join("ltx/0"));
            l1.iter().any(|f| !l1_before.contains(f)) && l0_before.iter().all(|f| !l0.contains(f))
        },
    );
    assert_eq!(r.stop(), 0);
    for f in files_under(&dir.join("ltx")) {
        assert!(
            std::fs::read(&f).unwrap().starts_with(MAGIC),
            "{}",
            f.display()
        );
    }
    let want = pages_of_live(&db);
    restore_and_compare(&cfg, &db, &w.path("after-compaction.db"), &want, &[]);
    let v = run(&["verify", "-config", cfg.to_str().unwrap()]);
    assert!(
        v.status.success(),
        "verify of an encrypted replica: {}{}",
        String::from_utf8_lossy(&v.stdout),
        String::from_utf8_lossy(&v.stderr)
    );

    // Follow mode decrypts each new file as it arrives.
    let out = w.path("follower.db");
    let mut f = Command::new(bin())
        .args(restore_args(
            &cfg,
            &out,
            &db,
            &["-f", "-follow-interval", "50ms"],
        ))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    eventually(Duration::from_secs(30), "the first follow restore", || {
        out.exists()
    });
    insert_rows(&app, 9, 700);
    run_ok(&["replicate", "-config", cfg.to_str().unwrap(), "-once"]);
    let want: i64 = app
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap();
    eventually(Duration::from_secs(30), "the follower to catch up", || {
        let Ok(c) =
            rusqlite::Connection::open_with_flags(&out, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        else {
            return false;
        };
        let _ = c.busy_timeout(Duration::from_secs(5));
        c.query_row("SELECT count(*) FROM t", [], |r| r.get::<_, i64>(0))
            .is_ok_and(|n| n == want)
    });
    let _ = f.kill();
    let _ = f.wait();

    // Wrong identity: one line naming the replica, no key material.
    let (other, _) = keypair();
    let wrong = with_age_block(&w, &cfg, "wrong.yml", &age_yaml(&[&other], &[]));
    let e = one_line_error(&run(&restore_args(&wrong, &w.path("w.db"), &db, &[])));
    assert!(e.contains("none of the configured age identities"), "{e}");
    assert!(
        e.contains(&dir.display().to_string()),
        "names the replica: {e}"
    );
    assert!(!e.contains("AGE-SECRET-KEY"), "{e}");
    assert!(!w.path("w.db").exists());

    // No age block at all: LTX decoding stops at the age header and says so.
    let none = with_age_block(&w, &cfg, "none.yml", "");
    let e = one_line_error(&run(&restore_args(&none, &w.path("n.db"), &db, &[])));
    assert!(e.contains("age-encrypted"), "{e}");

    // A bad key in the config: the replica and the key's position, never the key.
    let bad = with_age_block(
        &w,
        &cfg,
        "bad.yml",
        &age_yaml(&[&id, "AGE-SECRET-KEY-1NOTAREALKEYATALL"], &[]),
    );
    let e = one_line_error(&run(&restore_args(&bad, &w.path("b.db"), &db, &[])));
    assert!(
        e.contains("age.identities[1]") && e.contains("replica file"),
        "{e}"
    );
    assert!(!e.contains("NOTAREALKEY") && !e.contains(&id), "{e}");

    // Tampering: one flipped byte in the payload of the newest file is rejected.
    let newest = files_under(&dir.join("ltx"))
        .into_iter()
        .max_by_key(|f| std::fs::metadata(f).unwrap().modified().unwrap())
        .unwrap();
    let mut b = std::fs::read(&newest).unwrap();
    let at = b.len() - 20;
    b[at] ^= 0x40;
    std::fs::write(&newest, &b).unwrap();
    let e = one_line_error(&run(&restore_args(&cfg, &w.path("t.db"), &db, &[])));
    assert!(e.contains("fails authentication"), "{e}");
    assert!(!w.path("t.db").exists());
}

#[test]
fn key_rotation_adds_a_recipient_and_old_objects_keep_their_identity() {
    let w = Work::new();
    let db = w.path("app.db");
    let dir = w.path("replica");
    let app = app_db(&db);
    insert_rows(&app, 20, 300);
    let (old_id, _) = keypair();
    let (new_id, new_r) = keypair();
    let old = config(
        &w,
        "old.yml",
        "",
        &db,
        &format!("{}{}", file_replica(&dir), age_yaml(&[&old_id], &[])),
    );
    run_ok(&["replicate", "-config", old.to_str().unwrap(), "-once"]);
    let before = files_under(&dir.join("ltx"));
    // The new recipient is added (from a recipients file, as age-keygen -y writes one);
    // the replicator keeps its old identity.
    let rfile = w.path("new.pub");
    std::fs::write(&rfile, format!("# the new key\n{new_r}\n")).unwrap();
    let both = config(
        &w,
        "both.yml",
        "",
        &db,
        &format!(
            "{}{}        recipients-file: {}\n",
            file_replica(&dir),
            age_yaml(&[&old_id], &[]),
            rfile.display()
        ),
    );
    insert_rows(&app, 20, 300);
    run_ok(&["replicate", "-config", both.to_str().unwrap(), "-once"]);
    let want = pages_of_live(&db);
    // The old identity restores everything.
    restore_and_compare(&old, &db, &w.path("old.db"), &want, &[]);
    // The new identity alone reads the new objects but not the old ones.
    let idfile = w.path("new.key");
    std::fs::write(
        &idfile,
        format!("# created: now\n# public key: {new_r}\n{new_id}\n"),
    )
    .unwrap();
    let only_new = config(
        &w,
        "new.yml",
        "",
        &db,
        &format!(
            "{}      age:\n        identity-file: {}\n",
            file_replica(&dir),
            idfile.display()
        ),
    );
    let newer: Vec<_> = files_under(&dir.join("ltx"))
        .into_iter()
        .filter(|f| !before.contains(f))
        .collect();
    assert!(!newer.is_empty());
    // The old objects (the first run's snapshot at least: snapshots are kept for a day)
    // do not open with it. (Whether a restore of the latest state needs them depends on
    // whether the second run compacted or snapshotted, so the objects are checked.)
    let new_identity: age::x25519::Identity = new_id.parse().unwrap();
    let old_left: Vec<_> = before.iter().filter(|f| f.exists()).collect();
    assert!(!old_left.is_empty(), "the first run's objects are gone");
    for f in &old_left {
        let b = std::fs::read(f).unwrap();
        let d = age::Decryptor::new(&b[..]).unwrap();
        assert!(
            d.decrypt(std::iter::once(&new_identity as &dyn age::Identity))
                .is_err(),
            "{} opens with the new identity",
            f.display()
        );
    }
    // ... but every new object decrypts with it: the recipients file was used.
    for f in &newer {
        let b = std::fs::read(f).unwrap();
        let id: age::x25519::Identity = new_id.parse().unwrap();
        let d = age::Decryptor::new(&b[..]).unwrap();
        let mut plain = Vec::new();
        std::io::Read::read_to_end(
            &mut d
                .decrypt(std::iter::once(&id as &dyn age::Identity))
                .unwrap(),
            &mut plain,
        )
        .unwrap();
        assert!(plain.starts_with(b"LTX1"), "{}", f.display());
        // The reference implementation (Go's `age`) reads it too: a standard age file.
        let out = Command::new(age_cli())
            .args(["-d", "-i", idfile.to_str().unwrap(), f.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "age -d: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.stdout, plain, "age -d of {}", f.display());
    }
    // Both identities together restore everything.
    let ids = config(
        &w,
        "ids.yml",
        "",
        &db,
        &format!(
            "{}{}",
            file_replica(&dir),
            age_yaml(&[&new_id, &old_id], &[])
        ),
    );
    restore_and_compare(&ids, &db, &w.path("ids.db"), &want, &[]);

    // `rekey` re-encrypts the whole history to the new key alone (the config names it;
    // the retired identity comes from its file): every point then restores with the new
    // identity, and the old one reads nothing.
    let oldfile = w.path("old.key");
    std::fs::write(&oldfile, format!("{old_id}\n")).unwrap();
    let dry = run_ok(&[
        "rekey",
        "-config",
        only_new.to_str().unwrap(),
        "-old-identity-file",
        oldfile.to_str().unwrap(),
        "-dry-run",
        db.to_str().unwrap(),
    ]);
    let dry = String::from_utf8_lossy(&dry.stdout).to_string();
    assert!(dry.contains("would re-encrypt"), "{dry}");
    // Nothing was rewritten: the old identity alone still restores the latest state.
    restore_and_compare(&old, &db, &w.path("dry.db"), &want, &[]);
    let out = run_ok(&[
        "rekey",
        "-config",
        only_new.to_str().unwrap(),
        "-old-identity-file",
        oldfile.to_str().unwrap(),
        db.to_str().unwrap(),
    ]);
    let out = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.contains("re-encrypted"), "{out}");
    assert!(!out.contains(&old_id) && !out.contains(&new_id), "{out}");
    restore_and_compare(&only_new, &db, &w.path("rekeyed.db"), &want, &[]);
    let e = one_line_error(&run(&restore_args(&old, &w.path("o2.db"), &db, &[])));
    assert!(e.contains("none of the configured age identities"), "{e}");
    // A rekey that cannot read an object (no retired identity given) stops, naming it.
    let (other_id, _) = keypair();
    let other = config(
        &w,
        "other.yml",
        "",
        &db,
        &format!("{}{}", file_replica(&dir), age_yaml(&[&other_id], &[])),
    );
    let o = run(&[
        "rekey",
        "-config",
        other.to_str().unwrap(),
        db.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(e.contains("rekey of replica") && e.contains(".ltx"), "{e}");
    assert!(!e.contains(&other_id), "{e}");
}

/// A standby on an encrypted replica follows with its identity, promotes once the
/// primary has stopped and its lease has run out, and replicates encrypted as the new
/// primary: every object is an age file, and a restore equals the new primary.
#[test]
fn standby_follows_and_promotes_on_an_encrypted_replica() {
    use crate::lease::{host, wait_replicated, Standby};
    let work = Work::new();
    let dir = work.path("replica");
    let (id, _) = keypair();
    let replica = format!("{}{}", file_replica(&dir), age_yaml(&[&id], &[]));
    let p = host(&work, "primary", &replica, false);
    let s = host(&work, "standby", &replica, true);
    let app = app_db(&p.db);
    insert_rows(&app, 50, 500);
    let rp = Replicator::start(&work, &["-config", p.cfg.to_str().unwrap()]);
    let m = wait_replicated(&p, 1);
    let sb = Standby::caught_up(&work, &s, m);
    drop(app);
    assert_eq!(rp.stop(), 0);
    eventually(Duration::from_secs(60), "the standby to promote", || {
        sb.log_text().contains("promoted")
    });
    let app2 = app_db(&s.db);
    insert_rows(&app2, 30, 500);
    let after = wait_replicated(&s, m + 1);
    assert!(after > m);
    drop(app2);
    assert_eq!(sb.stop(), 0);
    for f in files_under(&dir.join("ltx")) {
        assert!(
            std::fs::read(&f).unwrap().starts_with(MAGIC),
            "{} is not an age file",
            f.display()
        );
    }
    let want = pages_of_live(&s.db);
    restore_and_compare(&s.cfg, &s.db, &work.path("out.db"), &want, &[]);
}

#[test]
fn garage_replica_is_encrypted_and_restores() {
    let g = crate::garage::Garage::start();
    let w = Work::new();
    round_trip(&w, &g.replica_yaml("enc"));
}

#[test]
fn azurite_replica_is_encrypted_and_restores() {
    let a = crate::azurite::Azurite::start();
    let w = Work::new();
    round_trip(&w, &a.replica_yaml("enc"));
}

#[test]
fn restores_what_litestream_03_encrypted() {
    let w = Work::new();
    let db = w.path("app.db");
    let dir = w.path("replica");
    let app = app_db(&db);
    insert_rows(&app, 20, 300);
    let (id, r) = keypair();
    let replica = format!(
        "type: file\npath: {}\nage:\n  identities:\n    - {id}\n  recipients:\n    - {r}\n",
        dir.display()
    );
    let ls = crate::v3::Litestream03::start_with(&w, &db, &replica, "");
    eventually(Duration::from_secs(30), "a 0.3 snapshot", || {
        crate::v3::v3_files(&dir).iter().any(|f| f.1 == "snapshots")
    });
    insert_rows(&app, 10, 1500);
    app.execute("DELETE FROM t WHERE id % 4 = 0", []).unwrap();
    ls.stop();
    let want = pages_of_live(&db);
    let files = files_under(&dir.join("generations"));
    assert!(!files.is_empty());
    for f in &files {
        assert!(
            std::fs::read(f).unwrap().starts_with(MAGIC),
            "0.3 encrypted {}",
            f.display()
        );
    }
    let cfg = config(
        &w,
        "ours.yml",
        "",
        &db,
        &format!("{}{}", file_replica(&dir), age_yaml(&[&id], &[])),
    );
    restore_and_compare(&cfg, &db, &w.path("restored.db"), &want, &[]);
    // Without the identity: a clear refusal.
    let (other, _) = keypair();
    let wrong = config(
        &w,
        "wrong.yml",
        "",
        &db,
        &format!("{}{}", file_replica(&dir), age_yaml(&[&other], &[])),
    );
    let e = one_line_error(&run(&restore_args(&wrong, &w.path("w.db"), &db, &[])));
    assert!(e.contains("none of the configured age identities"), "{e}");
}

#[test]
fn litestream_05_refuses_our_encrypted_replica() {
    let w = Work::new();
    let dir = w.path("replica");
    let (_cfg, _db, _id) = round_trip(&w, &file_replica(&dir));
    let ls = crate::interop::Program::litestream_0517().bin();
    let out = w.path("ls.db");
    let r = Command::new(ls)
        .args([
            "restore",
            "-o",
            out.to_str().unwrap(),
            &format!("file://{}", dir.display()),
        ])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&r.stdout),
        String::from_utf8_lossy(&r.stderr)
    );
    eprintln!("litestream 0.5.17 on an encrypted replica: {text}");
    assert!(
        !r.status.success(),
        "litestream 0.5.17 restored an encrypted replica: {text}"
    );
    // What 0.5.17 prints (quoted in the README).
    assert!(text.contains("invalid LTX file"), "{text}");
    assert!(!out.exists() || pages_of_file(&out).is_empty(), "{text}");
}
