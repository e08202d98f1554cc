//! GCS replicas against a real fake-gcs-server on loopback (see `gcs_server`), reached as
//! Google's clients reach an emulator: `STORAGE_EMULATOR_HOST`, unsigned requests.
//!
//! The emulator does not take `object_store`'s XML uploads (see `gcs_server`), so what is
//! tested is the read side, which is all of restore: the store's listing, gets (whole,
//! ranged, out of range, missing), HEADs, deletes and 0.3 generations against objects
//! planted through the JSON API; `sqlite-replicate restore` rebuilding, page for page,
//! what Litestream 0.5.17 replicated there under writes; and a refused write being a
//! permanent, named, one-line error. The write side (uploads, timestamp metadata,
//! conditional creates, multipart) is untested against a server.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

use engine::storage::gcs::{GcsOptions, GcsStore};
use engine::storage::{ErrorKind, ReplicaStore};
use ltx::Level;

use crate::gcs_server::FakeGcs;
use crate::harness::*;
use crate::s3::{block_on, key, litestream_version, s3_config};

fn gcs_options(g: &FakeGcs, prefix: &str) -> GcsOptions {
    GcsOptions {
        bucket: g.bucket.clone(),
        prefix: prefix.into(),
        application_credentials: None,
        endpoint: Some(engine::storage::gcs::emulator_endpoint(&g.emulator_host())),
        anonymous: true,
    }
}

fn keys(l: &[engine::storage::LtxInfo]) -> Vec<engine::storage::LtxKey> {
    l.iter().map(|i| i.key).collect()
}

/// The object name of an LTX file under `prefix`, as Litestream's GCS layout spells it.
fn ltx_name(prefix: &str, level: u8, min: u64, max: u64) -> String {
    format!("{prefix}/ltx/{level}/{min:016x}-{max:016x}.ltx")
}

#[test]
fn gcs_store_reads_what_the_emulator_holds() {
    let g = FakeGcs::start();
    let p = "conf/db";
    for (name, data) in [
        (ltx_name(p, 0, 2, 2), "second"),
        (ltx_name(p, 0, 1, 1), "first"),
        (ltx_name(p, 0, 3, 5), "third"),
        // Not LTX names, or one directory too deep: never listed.
        (format!("{p}/ltx/0/junk.txt"), "not ltx"),
        (format!("{p}/ltx/0/sub/{:016x}-{:016x}.ltx", 9, 9), "x"),
        (ltx_name(p, 9, 1, 6), "snapshot"),
        // Litestream 0.3's generations/.
        (
            format!("{p}/generations/d644f78ac6339b2c/snapshots/00000001.snapshot.lz4"),
            "snap",
        ),
        (
            format!("{p}/generations/d644f78ac6339b2c/wal/00000001_00001038.wal.lz4"),
            "wal1!",
        ),
        (
            format!("{p}/generations/d644f78ac6339b2c/wal/notes.txt"),
            "x",
        ),
        (
            format!("{p}/{}", engine::storage::layout::check_scratch_name(42)),
            "0123456789",
        ),
    ] {
        g.upload(&name, data.as_bytes());
    }
    let s = GcsStore::new(gcs_options(&g, p)).unwrap();
    let parent = GcsStore::new(gcs_options(&g, "conf")).unwrap();
    let missing = GcsStore::new(GcsOptions {
        bucket: "no-such-bucket".into(),
        ..gcs_options(&g, "x")
    })
    .unwrap();
    let before = SystemTime::now() - Duration::from_secs(60);
    block_on(async {
        // list: sorted, sizes, other names ignored, levels apart, under the prefix.
        let l = s.list(Level::L0).await.unwrap();
        assert_eq!(keys(&l), [key(0, 1, 1), key(0, 2, 2), key(0, 3, 5)]);
        assert_eq!(
            l.iter().map(|i| i.size_bytes).collect::<Vec<_>>(),
            [5, 6, 5]
        );
        assert!(s.list(Level::new(1).unwrap()).await.unwrap().is_empty());
        assert_eq!(s.list(Level::SNAPSHOT).await.unwrap().len(), 1);
        assert!(parent.list(Level::SNAPSHOT).await.unwrap().is_empty());
        assert!(parent.list(Level::L0).await.unwrap().is_empty());

        // list_exact_times: the same files; the emulator serves no x-goog-meta-* headers,
        // so `created` is the object's own time (recent), as for files without metadata.
        let exact = s.list_exact_times(Level::L0).await.unwrap();
        assert_eq!(keys(&exact), keys(&l));
        assert!(exact.iter().all(|i| i.created > before), "{exact:?}");

        // get: whole, ranged, empty range, out of range, missing.
        assert_eq!(&s.get(&key(0, 2, 2), None).await.unwrap()[..], b"second");
        assert_eq!(&s.get(&key(0, 2, 2), Some(1..4)).await.unwrap()[..], b"eco");
        assert_eq!(&s.get(&key(0, 2, 2), Some(5..6)).await.unwrap()[..], b"d");
        assert!(s.get(&key(0, 2, 2), Some(2..2)).await.unwrap().is_empty());
        let e = s.get(&key(0, 2, 2), Some(1..40)).await.unwrap_err();
        assert!(!e.is_retryable() && !e.is_not_found(), "{e}");
        assert!(s.get(&key(0, 7, 7), None).await.unwrap_err().is_not_found());
        assert!(s
            .get(&key(0, 7, 7), Some(0..1))
            .await
            .unwrap_err()
            .is_not_found());

        // Named objects outside the levels: HEAD, whole and ranged gets, delete.
        let scratch = engine::storage::layout::check_scratch_name(42);
        let head = s.named().unwrap().head_name(&scratch).await.unwrap();
        assert_eq!(head.size_bytes, 10);
        assert!(head.modified > before);
        assert_eq!(
            &s.named()
                .unwrap()
                .get_name(&scratch, Some(2..5))
                .await
                .unwrap()[..],
            b"234"
        );
        assert_eq!(
            &s.named().unwrap().get_name(&scratch, None).await.unwrap()[..],
            b"0123456789"
        );
        s.named()
            .unwrap()
            .delete_name(&scratch)
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", g.log()));
        assert!(s
            .named()
            .unwrap()
            .head_name(&scratch)
            .await
            .unwrap_err()
            .is_not_found());
        s.named().unwrap().delete_name(&scratch).await.unwrap();

        // Litestream 0.3's generations/: what 0.3 wrote is listed and read back.
        let mut v3 = s.v3().unwrap().list_v3().await.unwrap();
        v3.sort_by_key(|f| f.kind);
        assert_eq!(
            v3.iter()
                .map(|f| (f.path(), f.size_bytes))
                .collect::<Vec<_>>(),
            [
                (
                    "generations/d644f78ac6339b2c/snapshots/00000001.snapshot.lz4".to_string(),
                    4
                ),
                (
                    "generations/d644f78ac6339b2c/wal/00000001_00001038.wal.lz4".to_string(),
                    5
                ),
            ]
        );
        assert_eq!(&s.v3().unwrap().get_v3(&v3[1]).await.unwrap()[..], b"wal1!");

        // delete: missing keys are fine, and so is nothing.
        s.delete(&[key(0, 1, 1), key(0, 9, 9)]).await.unwrap();
        s.delete(&[]).await.unwrap();
        assert_eq!(
            keys(&s.list(Level::L0).await.unwrap()),
            [key(0, 2, 2), key(0, 3, 5)]
        );

        // A missing bucket fails the listing, never reads as empty. (GCS answers 404
        // NoSuchBucket, which the unit tests classify; this emulator answers 500.)
        let e = missing.list(Level::L0).await.unwrap_err();
        assert!(e.to_string().contains("no-such-bucket"), "{e}");

        // A write the server refuses (this emulator takes no XML upload) is a permanent
        // error naming the replica and the file, on one line: never a silent success.
        let e = s
            .put(&key(0, 8, 8), b"x".to_vec().into(), SystemTime::now())
            .await
            .unwrap_err();
        let msg = e.to_string();
        assert!(
            matches!(&e.kind(), ErrorKind::Permanent)
                && msg.contains("gs://sr-test/conf/db")
                && !msg.contains('\n'),
            "{msg}"
        );
    });
}

/// `sqlite-replicate restore -config CFG -o OUT [extra] DB` with `STORAGE_EMULATOR_HOST`.
fn restore_from_emulator(g: &FakeGcs, cfg: &Path, db: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut c = Command::new(bin());
    c.args(["restore", "-config", cfg.to_str().unwrap()])
        .args(["-o", out.to_str().unwrap(), "-integrity-check", "full"])
        .args(extra)
        .arg(db)
        .env("STORAGE_EMULATOR_HOST", g.emulator_host())
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS");
    c.output().unwrap()
}

#[test]
fn we_restore_what_litestream_writes_to_fake_gcs() {
    litestream_version();
    let g = FakeGcs::start();
    let w = Work::new();
    let db = w.path("app.db");
    let app = app_db(&db);
    insert_rows(&app, 20, 300);
    // The same YAML serves both programs; both find the server in STORAGE_EMULATOR_HOST.
    let yaml = format!(
        "{}      sync-interval: 100ms\n",
        g.replica_yaml("from-ls/app")
    );
    let cfg = s3_config(&w, &db, &yaml);
    let mut cmd = Command::new("litestream");
    cmd.args(["replicate", "-config", cfg.to_str().unwrap()])
        .env("STORAGE_EMULATOR_HOST", g.emulator_host())
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS");
    let mut ls = Proc::spawn("litestream", cmd, w.path("litestream.log"));
    for i in 0..25 {
        insert_rows(&app, 4, 200 + 40 * (i % 9));
        if i % 10 == 9 {
            app.execute("DELETE FROM t WHERE id % 5 = 0", []).unwrap();
        }
        // Paces the writer: commits spread over many 100 ms syncs.
        std::thread::sleep(Duration::from_millis(80));
    }
    // Litestream has shipped every commit (its final sync then has nothing left to race).
    let live = pages_of_live(&db);
    let probe = w.path("probe.db");
    eventually(
        Duration::from_secs(60),
        "Litestream's replica to restore to the source",
        || {
            let _ = std::fs::remove_file(&probe);
            restore_from_emulator(&g, &cfg, &db, &probe, &[])
                .status
                .success()
                && pages_of_file(&probe) == live
        },
    );
    let st = ls.terminate(Duration::from_secs(40));
    let ls_log = ls.log_text();
    assert!(st.success(), "litestream exit {st}:\n{ls_log}");
    // After Litestream stops: it adds its own tables to the database.
    let want = pages_of_live(&db);

    // What Litestream wrote is there, in its layout, read through our store.
    let s = GcsStore::new(gcs_options(&g, "from-ls/app")).unwrap();
    let files: usize = block_on(async {
        let mut n = 0;
        for level in Level::all() {
            n += s.list(level).await.unwrap().len();
        }
        n
    });
    assert!(files > 1, "Litestream wrote {files} files:\n{ls_log}");

    let out = w.path("restored.db");
    let r = restore_from_emulator(&g, &cfg, &db, &out, &[]);
    assert!(
        r.status.success(),
        "restore: {}{}\nfake-gcs-server:\n{}",
        String::from_utf8_lossy(&r.stdout),
        String::from_utf8_lossy(&r.stderr),
        g.log()
    );
    assert_same_pages(&want, &pages_of_file(&out), "restore from fake-gcs-server");

    // Without the emulator variable the same config goes to Google with no credentials:
    // it fails (never a restore from elsewhere) and leaves no output.
    let out2 = w.path("not-restored.db");
    let r = Command::new(bin())
        .args(["restore", "-config", cfg.to_str().unwrap()])
        .args(["-o", out2.to_str().unwrap()])
        .arg(&db)
        .env_remove("STORAGE_EMULATOR_HOST")
        .env(
            "GOOGLE_APPLICATION_CREDENTIALS",
            w.path("no-such-creds.json"),
        )
        .output()
        .unwrap();
    assert!(!r.status.success() && !out2.exists());
}
