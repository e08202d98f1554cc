//! S3 replicas against a real Garage server on loopback (see `garage`): the storage
//! contract, run identically on the file backend; replicate → restore by config and by
//! URL; Litestream 0.5.17 restoring what we wrote; and what an operator sees when the
//! credentials are wrong or the endpoint is dead.

use std::future::Future;
use std::io::{Seek, SeekFrom, Write};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use engine::storage::file::FileStore;
use engine::storage::layout::v3::{V3File, V3Kind};
use engine::storage::s3::{S3Options, S3Store};
use engine::storage::{ErrorKind, LtxInfo, LtxKey, ReplicaStore, StorageError};
use ltx::{Level, TxId};

use crate::garage::{Garage, REGION};
use crate::harness::*;

pub(crate) fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

pub(crate) fn key(level: u8, min: u64, max: u64) -> LtxKey {
    LtxKey::new(
        Level::new(level).unwrap(),
        TxId::new(min).unwrap(),
        TxId::new(max).unwrap(),
    )
}

fn keys(l: &[LtxInfo]) -> Vec<LtxKey> {
    l.iter().map(|i| i.key).collect()
}

pub(crate) fn millis(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH).unwrap().as_millis()
}

/// Deterministic incompressible bytes.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

pub(crate) fn s3_options(g: &Garage, prefix: &str) -> S3Options {
    S3Options {
        bucket: g.bucket.clone(),
        prefix: prefix.into(),
        endpoint: Some(g.endpoint()),
        region: Some(REGION.into()),
        force_path_style: true,
        access_key_id: Some(g.key_id.clone()),
        secret_access_key: Some(g.secret.clone()),
        ..Default::default()
    }
}

/// What `put_if_not_exists` can promise on a backend.
#[derive(Clone, Copy, Debug)]
pub(crate) enum ConditionalCreate {
    /// Creates atomically, or `Precondition` when the object exists.
    Atomic,
    /// The server cannot do it (Garage ignores `If-None-Match` on PUT): refused, `Permanent`.
    Refused,
}

/// [`conformance`] on an object-store backend, plus what every such backend must add: plants
/// a non-LTX name and an LTX name one directory too deep in level 0's directory `l0_dir`
/// (with `put_object`), then checks that levels live under the prefix (`parent` is the
/// same replica one directory up) and that a missing bucket or container is named as such
/// (`missing`, whose bucket or container is `missing_name`).
pub(crate) async fn object_store_conformance(
    s: &dyn ReplicaStore,
    put_object: impl AsyncFn(&str, Vec<u8>) -> Result<(), StorageError>,
    l0_dir: &str,
    conditional: ConditionalCreate,
    parent: &dyn ReplicaStore,
    missing: &dyn ReplicaStore,
    missing_name: &str,
) {
    put_object(&format!("{l0_dir}/junk.txt"), b"not ltx".to_vec())
        .await
        .unwrap();
    // Same name one level down: not in level 0.
    put_object(
        &format!("{l0_dir}/sub/0000000000000009-0000000000000009.ltx"),
        b"x".to_vec(),
    )
    .await
    .unwrap();
    conformance(s, conditional).await;
    s.put(&key(9, 1, 2), b"snap".to_vec().into(), SystemTime::now())
        .await
        .unwrap();
    assert!(
        parent.list(Level::SNAPSHOT).await.unwrap().is_empty(),
        "levels live under the prefix"
    );
    let e = missing.list(Level::L0).await.unwrap_err();
    assert!(
        e.kind() == ErrorKind::NotFound && e.what().contains(missing_name),
        "{e}"
    );

    // Litestream 0.3's generations/ (read-only): what 0.3 wrote is listed and read back
    // whole; other names are not.
    assert!(
        s.v3().unwrap().list_v3().await.unwrap().is_empty(),
        "no generations/ yet"
    );
    let g = "generations/d644f78ac6339b2c";
    for (rel, data) in [
        (format!("{g}/snapshots/00000001.snapshot.lz4"), "snap"),
        (format!("{g}/wal/00000001_00001038.wal.lz4"), "wal1!"),
        (format!("{g}/wal/notes.txt"), "x"),
        (format!("{g}/wal/x/00000001_00000000.wal.lz4"), "x"),
        (format!("{g}/snapshots/00000002.snapshot.lz4.tmp"), "x"),
        (
            "generations/not-a-generation/wal/00000001_00000000.wal.lz4".into(),
            "x",
        ),
    ] {
        put_object(&rel, data.as_bytes().to_vec()).await.unwrap();
    }
    let mut l = s.v3().unwrap().list_v3().await.unwrap();
    l.sort_by_key(|f| f.kind);
    assert_eq!(
        l.iter()
            .map(|f| (f.path(), f.size_bytes))
            .collect::<Vec<_>>(),
        [
            (format!("{g}/snapshots/00000001.snapshot.lz4"), 4),
            (format!("{g}/wal/00000001_00001038.wal.lz4"), 5),
        ]
    );
    assert_eq!(&s.v3().unwrap().get_v3(&l[1]).await.unwrap()[..], b"wal1!");
    // Ranged reads (restores read 0.3 files in pieces): exactly the bytes asked for; past
    // the end is an error, not a short answer.
    assert_eq!(
        &s.v3().unwrap().get_v3_range(&l[1], 1..4).await.unwrap()[..],
        b"al1"
    );
    assert_eq!(
        &s.v3().unwrap().get_v3_range(&l[1], 0..5).await.unwrap()[..],
        b"wal1!"
    );
    assert!(s.v3().unwrap().get_v3_range(&l[1], 2..9).await.is_err());
    assert!(
        parent.v3().unwrap().list_v3().await.unwrap().is_empty(),
        "under the prefix"
    );
    let gone = V3File {
        kind: V3Kind::Wal {
            index: 2,
            offset: 0,
        },
        ..l[1].clone()
    };
    assert!(s
        .v3()
        .unwrap()
        .get_v3(&gone)
        .await
        .unwrap_err()
        .is_not_found());
    assert!(s
        .v3()
        .unwrap()
        .get_v3_range(&gone, 0..1)
        .await
        .unwrap_err()
        .is_not_found());
}

/// The `ReplicaStore` contract. The caller has planted `junk.txt` in level 0's directory.
pub(crate) async fn conformance(s: &dyn ReplicaStore, conditional: ConditionalCreate) {
    conformance_at_resolution(s, conditional, Duration::from_millis(1)).await
}

/// [`conformance`] for a backend that records `created` only to `resolution` for files
/// that are not LTX (SFTP v3 mtimes are whole seconds; its exact times come from LTX
/// headers, which the suite's small files do not have).
pub(crate) async fn conformance_at_resolution(
    s: &dyn ReplicaStore,
    conditional: ConditionalCreate,
    resolution: Duration,
) {
    conformance_with_times(s, conditional, Some(resolution)).await
}

/// [`conformance`] for a backend that records `created` only in the LTX header itself
/// (WebDAV: no portable way to set a file's time), which the suite's small files do not
/// have: every check of `created` is skipped; `assert_created_is_header_timestamp` on a
/// replicated database checks it instead.
pub(crate) async fn conformance_created_in_headers(
    s: &dyn ReplicaStore,
    conditional: ConditionalCreate,
) {
    conformance_with_times(s, conditional, None).await
}

async fn conformance_with_times(
    s: &dyn ReplicaStore,
    conditional: ConditionalCreate,
    resolution: Option<Duration>,
) {
    // `None`: every time compares equal (see `conformance_created_in_headers`).
    let millis = |t: SystemTime| match resolution {
        Some(r) => millis(t) / r.as_millis() * r.as_millis(),
        None => 0,
    };
    let t1 = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
    let t2 = UNIX_EPOCH + Duration::from_millis(1_700_000_100_456);
    let l0 = Level::L0;

    // put, out of order; list sorted, other names ignored.
    s.put(&key(0, 2, 2), b"second".to_vec().into(), t2)
        .await
        .unwrap();
    s.put(&key(0, 1, 1), b"first".to_vec().into(), t1)
        .await
        .unwrap();
    s.put(&key(0, 3, 5), b"third".to_vec().into(), t1)
        .await
        .unwrap();
    let l = s.list(l0).await.unwrap();
    assert_eq!(keys(&l), [key(0, 1, 1), key(0, 2, 2), key(0, 3, 5)]);
    assert_eq!(
        l.iter().map(|i| i.size_bytes).collect::<Vec<_>>(),
        [5, 6, 5]
    );
    assert!(s.list(Level::new(1).unwrap()).await.unwrap().is_empty());

    // created round-trips to the millisecond (or the backend's resolution).
    let exact = s.list_exact_times(l0).await.unwrap();
    assert_eq!(keys(&exact), keys(&l));
    assert_eq!(
        exact.iter().map(|i| millis(i.created)).collect::<Vec<_>>(),
        [millis(t1), millis(t2), millis(t1)]
    );

    // get: whole, ranged, empty range, out of range, missing.
    assert_eq!(&s.get(&key(0, 2, 2), None).await.unwrap()[..], b"second");
    assert_eq!(&s.get(&key(0, 2, 2), Some(1..4)).await.unwrap()[..], b"eco");
    assert_eq!(&s.get(&key(0, 2, 2), Some(5..6)).await.unwrap()[..], b"d");
    assert!(s.get(&key(0, 2, 2), Some(2..2)).await.unwrap().is_empty());
    let e = s.get(&key(0, 2, 2), Some(1..40)).await.unwrap_err();
    assert!(!e.is_retryable() && !e.is_not_found(), "{e}");
    let e = s.get(&key(0, 7, 7), None).await.unwrap_err();
    assert!(e.is_not_found(), "{e}");
    assert!(s
        .get(&key(0, 7, 7), Some(0..1))
        .await
        .unwrap_err()
        .is_not_found());

    // put replaces (a retried upload).
    s.put(&key(0, 3, 5), b"THIRD!".to_vec().into(), t2)
        .await
        .unwrap();
    assert_eq!(&s.get(&key(0, 3, 5), None).await.unwrap()[..], b"THIRD!");
    assert_eq!(
        millis(s.list_exact_times(l0).await.unwrap()[2].created),
        millis(t2)
    );

    // delete: missing keys are fine, and so is nothing.
    s.delete(&[key(0, 1, 1), key(0, 9, 9)]).await.unwrap();
    s.delete(&[]).await.unwrap();
    assert_eq!(
        keys(&s.list(l0).await.unwrap()),
        [key(0, 2, 2), key(0, 3, 5)]
    );

    // Conditional create, for leases.
    let first = s
        .named()
        .unwrap()
        .create_name("lock.json", b"one".to_vec().into())
        .await;
    match conditional {
        ConditionalCreate::Atomic => {
            first.unwrap();
            let e = s
                .named()
                .unwrap()
                .create_name("lock.json", b"two".to_vec().into())
                .await
                .unwrap_err();
            assert!(matches!(e.kind(), ErrorKind::Precondition), "{e}");
        }
        ConditionalCreate::Refused => {
            let e = first.unwrap_err();
            assert!(
                e.kind() == ErrorKind::Permanent && e.detail().contains("conditional writes"),
                "{e}"
            );
        }
    }
    assert!(s
        .named()
        .unwrap()
        .create_name("../escape", b"x".to_vec().into())
        .await
        .is_err());

    // Named objects outside the levels (check's scratch object): put replaces, HEAD reports
    // the size and the storage's own time, ranged and whole gets, delete (twice is fine),
    // and no listing ever shows them; names inside a level directory are refused.
    let scratch = engine::storage::layout::check_scratch_name(42);
    let before = SystemTime::now();
    s.named()
        .unwrap()
        .put_name(&scratch, b"old".to_vec().into())
        .await
        .unwrap();
    s.named()
        .unwrap()
        .put_name(&scratch, b"0123456789".to_vec().into())
        .await
        .unwrap();
    let head = s.named().unwrap().head_name(&scratch).await.unwrap();
    assert_eq!(head.size_bytes, 10);
    let off = match head.modified.duration_since(before) {
        Ok(d) => d,
        Err(e) => e.duration(),
    };
    assert!(
        off < Duration::from_secs(60),
        "modified {off:?} away from now"
    );
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
    let mut everything = Vec::new();
    for level in Level::all() {
        everything.extend(keys(&s.list(level).await.unwrap()));
    }
    assert_eq!(
        everything,
        [key(0, 2, 2), key(0, 3, 5)],
        "scratch object listed"
    );
    s.named().unwrap().delete_name(&scratch).await.unwrap();
    assert!(s
        .named()
        .unwrap()
        .head_name(&scratch)
        .await
        .unwrap_err()
        .is_not_found());
    assert!(s
        .named()
        .unwrap()
        .get_name(&scratch, None)
        .await
        .unwrap_err()
        .is_not_found());
    s.named().unwrap().delete_name(&scratch).await.unwrap();
    for bad in [
        "ltx/0/0000000000000001-0000000000000001.ltx",
        "0000/x",
        "../x",
        "",
    ] {
        assert!(
            s.named()
                .unwrap()
                .put_name(bad, b"x".to_vec().into())
                .await
                .is_err(),
            "{bad:?}"
        );
    }

    // A large file (multipart on S3) reads back identical, with its timestamp.
    let big = noise(20 << 20, 7);
    let snap = key(9, 1, 5);
    s.put(&snap, big.clone().into(), t1).await.unwrap();
    let got = s.get(&snap, None).await.unwrap();
    assert_eq!(got.len(), big.len());
    assert!(
        got[..] == big[..],
        "20 MiB object differs after the round trip"
    );
    let mid = (5 << 20) - 10..(5 << 20) + 10;
    assert_eq!(
        &s.get(&snap, Some(mid.clone())).await.unwrap()[..],
        &big[mid.start as usize..mid.end as usize]
    );
    let l9 = s.list_exact_times(Level::SNAPSHOT).await.unwrap();
    assert_eq!(
        (keys(&l9), l9[0].size_bytes, millis(l9[0].created)),
        (vec![snap], 20 << 20, millis(t1))
    );

    // The same from a local file (`put_file`, which large uploads take, issue 27): only
    // its first `len_bytes`, read at offsets (the cursor is neither used nor moved),
    // `created` recorded as `put` records it, and a call may be repeated with the same
    // handle. A file shorter than it is said to be fails, not retryable, leaving no file.
    let mut f = tempfile::tempfile().unwrap();
    f.write_all(&big).unwrap();
    f.write_all(b"not part of the upload").unwrap();
    f.seek(SeekFrom::Start(3)).unwrap();
    let from_file = key(9, 1, 6);
    for _ in 0..2 {
        s.put_file(&from_file, &f, big.len() as u64, t2)
            .await
            .unwrap();
    }
    let got = s.get(&from_file, None).await.unwrap();
    assert!(
        got[..] == big[..],
        "20 MiB object put from a file differs after the round trip"
    );
    let l9 = s.list_exact_times(Level::SNAPSHOT).await.unwrap();
    assert_eq!(
        (keys(&l9), l9[1].size_bytes, millis(l9[1].created)),
        (vec![snap, from_file], 20 << 20, millis(t2))
    );
    let e = s
        .put_file(&key(9, 1, 7), &f, big.len() as u64 + (1 << 20), t2)
        .await
        .unwrap_err();
    assert!(!e.is_retryable(), "{e}");
    assert_eq!(
        keys(&s.list(Level::SNAPSHOT).await.unwrap()),
        [snap, from_file]
    );
    assert_eq!(f.stream_position().unwrap(), 3, "put_file moved the cursor");

    s.delete(&[key(0, 2, 2), key(0, 3, 5), snap, from_file])
        .await
        .unwrap();
    assert!(s.list(l0).await.unwrap().is_empty());
    assert!(s.list(Level::SNAPSHOT).await.unwrap().is_empty());
}

#[test]
fn file_store_passes_the_storage_conformance_suite() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("ltx/0")).unwrap();
    std::fs::write(d.path().join("ltx/0/junk.txt"), b"not ltx").unwrap();
    let s = FileStore::new(d.path());
    block_on(conformance(&s, ConditionalCreate::Atomic));
    assert_eq!(
        std::fs::read(d.path().join("lock.json")).unwrap(),
        b"one",
        "the first create wins"
    );
}

#[test]
fn s3_store_passes_the_storage_conformance_suite_on_garage() {
    let g = Garage::start();
    let s = S3Store::new(s3_options(&g, "conf/db")).unwrap();
    let parent = S3Store::new(s3_options(&g, "conf")).unwrap();
    let missing = S3Store::new(S3Options {
        bucket: "no-such-bucket".into(),
        ..s3_options(&g, "x")
    })
    .unwrap();
    // The layout is Litestream's: <path>/<level %04x>/<min>-<max>.ltx.
    block_on(object_store_conformance(
        &s,
        async |p: &str, d: Vec<u8>| s.put_object(p, d.into()).await,
        "0000",
        ConditionalCreate::Refused,
        &parent,
        &missing,
        "no-such-bucket",
    ));
}

#[test]
fn s3_sse_c_round_trips_on_garage() {
    let g = Garage::start();
    let with_key = S3Options {
        sse_customer_key: Some("k".repeat(32)),
        ..s3_options(&g, "ssec")
    };
    let s = S3Store::new(with_key).unwrap();
    let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_999);
    let big = noise(6 << 20, 3);
    block_on(async {
        s.put(&key(0, 1, 1), b"secret page".to_vec().into(), t)
            .await
            .unwrap();
        s.put(&key(9, 1, 1), big.clone().into(), t).await.unwrap();
        assert_eq!(
            &s.get(&key(0, 1, 1), Some(2..6)).await.unwrap()[..],
            b"cret"
        );
        assert!(s.get(&key(9, 1, 1), None).await.unwrap()[..] == big[..]);
        assert_eq!(
            millis(s.list_exact_times(Level::L0).await.unwrap()[0].created),
            millis(t)
        );
        // Without the key the object cannot be read.
        let plain = S3Store::new(s3_options(&g, "ssec")).unwrap();
        let e = plain.get(&key(0, 1, 1), None).await.unwrap_err();
        assert!(
            !e.is_retryable() && !e.to_string().contains(&"k".repeat(32)),
            "{e}"
        );
    });
}

pub(crate) fn s3_config(w: &Work, db: &std::path::Path, replica_yaml: &str) -> std::path::PathBuf {
    w.config(&format!(
        "dbs:\n  - path: {}\n    replica:\n{replica_yaml}",
        db.display()
    ))
}

/// Replicates a database with writes in flight to Garage, stops with SIGTERM and returns
/// the live pages at the stop.
pub(crate) fn replicate_with_writes(
    w: &Work,
    cfg: &std::path::Path,
    db: &std::path::Path,
) -> Vec<Vec<u8>> {
    let app = app_db(db);
    insert_rows(&app, 20, 300);
    let mut r = Replicator::start(w, &["-config", cfg.to_str().unwrap()]);
    for i in 0..40 {
        insert_rows(&app, 4, 200 + 40 * (i % 9));
        if i % 10 == 9 {
            app.execute("DELETE FROM t WHERE id % 5 = 0", []).unwrap();
        }
        // Paces the writer: commits spread over many capture cycles.
        std::thread::sleep(Duration::from_millis(40));
    }
    let want = pages_of_live(db);
    r.wait_ready(1);
    let log = r.log.clone();
    let code = r.stop();
    assert_eq!(
        code,
        0,
        "replicator exit status; log:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
    want
}

/// `restore -o OUT URL` with only the given environment (no config file).
fn restore_url(
    w: &Work,
    url: &str,
    out: &std::path::Path,
    env: &[(&str, &str)],
) -> std::process::Output {
    let mut c = Command::new(bin());
    c.args([
        "restore",
        "-integrity-check",
        "full",
        "-o",
        out.to_str().unwrap(),
        url,
    ]);
    for v in [
        "SQLITE_REPLICATE_CONFIG",
        "LITESTREAM_CONFIG",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "LITESTREAM_ACCESS_KEY_ID",
        "LITESTREAM_SECRET_ACCESS_KEY",
        "LITESTREAM_S3_ENDPOINT",
    ] {
        c.env_remove(v);
    }
    c.envs(env.iter().copied()).current_dir(w.dir.path());
    c.output().unwrap()
}

/// Every file's `created` (as `list_exact_times` reads it back: object metadata, or the
/// header itself where mtimes are coarse) is its LTX header's timestamp, as Litestream
/// writes and reads it; returns how many files there are.
pub(crate) async fn assert_created_is_header_timestamp(s: &dyn ReplicaStore) -> usize {
    let mut n = 0;
    for level in Level::all() {
        for f in s.list_exact_times(level).await.unwrap() {
            let head = s
                .get(&f.key, Some(0..ltx::HEADER_SIZE as u64))
                .await
                .unwrap();
            let h = ltx::Header::from_bytes(&head).unwrap();
            assert_eq!(
                millis(f.created) as i64,
                h.timestamp_ms,
                "{}: metadata vs header",
                f.key
            );
            n += 1;
        }
    }
    n
}

#[test]
fn replicate_to_garage_then_restore_by_config_and_by_url() {
    let g = Garage::start();
    let w = Work::new();
    let db = w.path("app.db");
    let cfg = s3_config(&w, &db, &g.replica_yaml("db/app"));
    let want = replicate_with_writes(&w, &cfg, &db);
    restore_and_compare(&cfg, &db, &w.path("by-config.db"), &want, &[]);

    // By URL, endpoint and region in the query, keys from AWS_*.
    let url = format!(
        "s3://{}/db/app?endpoint={}&region={REGION}&forcePathStyle=true",
        g.bucket,
        g.endpoint()
    );
    let out = w.path("by-url.db");
    let r = restore_url(
        &w,
        &url,
        &out,
        &[
            ("AWS_ACCESS_KEY_ID", &g.key_id),
            ("AWS_SECRET_ACCESS_KEY", &g.secret),
        ],
    );
    assert!(
        r.status.success(),
        "restore {url}: {}",
        String::from_utf8_lossy(&r.stderr)
    );
    assert_same_pages(&want, &pages_of_file(&out), "restore by URL");

    // By URL, endpoint from LITESTREAM_S3_ENDPOINT (no scheme: http for loopback) and
    // keys from LITESTREAM_*.
    let url = format!("s3://{}/db/app?region={REGION}", g.bucket);
    let out = w.path("by-url-env.db");
    let endpoint = format!("127.0.0.1:{}", g.s3_port);
    let r = restore_url(
        &w,
        &url,
        &out,
        &[
            ("LITESTREAM_S3_ENDPOINT", &endpoint),
            ("LITESTREAM_ACCESS_KEY_ID", &g.key_id),
            ("LITESTREAM_SECRET_ACCESS_KEY", &g.secret),
        ],
    );
    assert!(
        r.status.success(),
        "restore {url}: {}",
        String::from_utf8_lossy(&r.stderr)
    );
    assert_same_pages(
        &want,
        &pages_of_file(&out),
        "restore by URL with LITESTREAM_S3_ENDPOINT",
    );

    let s = S3Store::new(s3_options(&g, "db/app")).unwrap();
    assert!(block_on(assert_created_is_header_timestamp(&s)) > 0);
}

#[test]
fn litestream_restores_what_we_write_to_garage() {
    litestream_version();
    let g = Garage::start();
    let w = Work::new();
    let db = w.path("app.db");
    // The same YAML serves both programs.
    let cfg = s3_config(&w, &db, &g.replica_yaml("ls/app"));
    let want = replicate_with_writes(&w, &cfg, &db);
    let out = w.path("litestream.db");
    litestream_restore_ok(&cfg, &db, &out);
    assert_same_pages(
        &want,
        &pages_of_file(&out),
        "litestream restore from Garage",
    );
}

/// `litestream restore -config CFG -o OUT DB` (Litestream 0.5.17 on PATH), which must succeed.
pub(crate) fn litestream_restore_ok(
    cfg: &std::path::Path,
    db: &std::path::Path,
    out: &std::path::Path,
) {
    let r = Command::new("litestream")
        .args([
            "restore",
            "-config",
            cfg.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            db.to_str().unwrap(),
        ])
        // With AWS_CA_BUNDLE set, Litestream 0.5.17 fails before any request ("unable to
        // add custom RootCAs HTTPClient, has no WithTransportOptions"): its S3 client
        // brings its own HTTP client. The endpoints here are plain HTTP anyway.
        .env_remove("AWS_CA_BUNDLE")
        .output()
        .unwrap();
    assert!(
        r.status.success(),
        "litestream restore: {}{}",
        String::from_utf8_lossy(&r.stdout),
        String::from_utf8_lossy(&r.stderr)
    );
}

pub(crate) fn litestream_version() {
    crate::interop::Program::litestream_0517();
}

#[test]
fn we_restore_what_litestream_writes_to_garage() {
    litestream_version();
    let g = Garage::start();
    let w = Work::new();
    let db = w.path("app.db");
    let yaml = format!(
        "{}      sync-interval: 100ms\n",
        g.replica_yaml("from-ls/app")
    );
    let cfg = s3_config(&w, &db, &yaml);
    let mut cmd = Command::new("litestream");
    cmd.env_remove("AWS_CA_BUNDLE"); // see litestream_restores_what_we_write_to_garage
    let ls_log = litestream_writes_then_we_restore(&w, &cfg, &db, cmd);
    // We read Litestream's timestamps: metadata equals each file's header timestamp.
    let s = S3Store::new(s3_options(&g, "from-ls/app")).unwrap();
    assert!(
        block_on(assert_created_is_header_timestamp(&s)) > 0,
        "{ls_log}"
    );
}

/// Litestream (`cmd`: `litestream` with the environment the test needs) replicates the
/// database at `cfg` while an application commits, paced over many of its 100 ms syncs,
/// until the replica holds every commit; then it stops, and our restore must equal the
/// source page for page. Returns Litestream's log.
pub(crate) fn litestream_writes_then_we_restore(
    w: &Work,
    cfg: &std::path::Path,
    db: &std::path::Path,
    mut cmd: Command,
) -> String {
    let app = app_db(db);
    insert_rows(&app, 20, 300);
    cmd.args(["replicate", "-config", cfg.to_str().unwrap()]);
    let mut ls = Proc::spawn("litestream", cmd, w.path("litestream.log"));
    for i in 0..25 {
        insert_rows(&app, 4, 200 + 40 * (i % 9));
        // Paces the writer: commits spread over many 100 ms syncs.
        std::thread::sleep(Duration::from_millis(80));
    }
    // Litestream has shipped every commit (its final sync then has nothing left to race).
    let live = pages_of_live(db);
    wait_replica_has(w, cfg, db, &live, &[], Duration::from_secs(60));
    let st = ls.terminate(Duration::from_secs(40));
    let ls_log = ls.log_text();
    assert!(st.success(), "litestream exit {st}:\n{ls_log}");
    // After Litestream stops: it adds its own tables to the database.
    let want = pages_of_live(db);
    restore_and_compare(cfg, db, &w.path("restored.db"), &want, &[]);
    ls_log
}

/// The `error:` line of a failed run, checked to be the only one.
pub(crate) fn one_error_line(out: &std::process::Output) -> String {
    assert!(!out.status.success(), "expected failure");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(errors.len(), 1, "one error line expected:\n{stderr}");
    errors[0].to_string()
}

#[test]
fn wrong_credentials_and_dead_endpoints_fail_fast_with_clear_errors() {
    let g = Garage::start();
    let w = Work::new();
    let db = w.path("app.db");
    let location = format!("s3://{}/db/app", g.bucket);
    let restore = |yaml: String| {
        let cfg = s3_config(&w, &db, &yaml);
        let t = Instant::now();
        let out = run(&[
            "restore",
            "-config",
            cfg.to_str().unwrap(),
            "-o",
            w.path("out.db").to_str().unwrap(),
            db.to_str().unwrap(),
        ]);
        (one_error_line(&out), t.elapsed())
    };

    let wrong_secret = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let yaml = g.replica_yaml("db/app").replace(&g.secret, wrong_secret);
    let (e, _) = restore(yaml);
    assert!(
        e.contains(&location)
            && e.contains("permission denied")
            && e.contains("check access-key-id"),
        "{e}"
    );
    assert!(
        !e.contains(wrong_secret) && !e.contains(&g.secret),
        "secret leaked: {e}"
    );

    let yaml = g
        .replica_yaml("db/app")
        .replace(&g.key_id, "GK0000000000000000deadbeef");
    let (e, _) = restore(yaml);
    assert!(
        e.contains(&location) && e.contains("check access-key-id"),
        "{e}"
    );
    assert!(!e.contains(&g.secret), "secret leaked: {e}");

    // Nothing listening: refused at once, retried briefly, reported as unreachable.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let yaml = g
        .replica_yaml("db/app")
        .replace(&g.endpoint(), &format!("http://127.0.0.1:{closed}"));
    let (e, took) = restore(yaml);
    assert!(
        e.contains(&format!("(http://127.0.0.1:{closed})")) && e.contains("transient"),
        "{e}"
    );
    assert!(took < Duration::from_secs(15), "took {took:?}: {e}");
    assert!(!e.contains(&g.secret), "secret leaked: {e}");

    // TLS spoken to a plain-HTTP server: permanent, with a hint that points at the CA
    // bundle, never at turning verification off (security issue 17).
    let https = g.endpoint().replace("http://", "https://");
    let yaml = g.replica_yaml("db/app").replace(&g.endpoint(), &https);
    let (e, took) = restore(yaml);
    assert!(
        e.contains("TLS") && e.contains("SSL_CERT_FILE") && !e.contains("skip-verify"),
        "{e}"
    );
    assert!(took < Duration::from_secs(15), "took {took:?}: {e}");

    // A black hole (connects hang, as to a firewalled address): bounded by the connect
    // timeout and the client's retry budget. Outbound addresses cannot serve here (a
    // sandbox may answer them), so a loopback port with a full accept queue stands in.
    let (_hole, port) = black_hole();
    let yaml = g
        .replica_yaml("db/app")
        .replace(&g.endpoint(), &format!("http://127.0.0.1:{port}"));
    let (e, took) = restore(yaml);
    assert!(
        e.contains(&format!("(http://127.0.0.1:{port})")) && e.contains("transient"),
        "{e}"
    );
    assert!(took < Duration::from_secs(15), "took {took:?}: {e}");
}

/// A loopback port where connects hang: a listener with an accept backlog of zero whose
/// one queue slot is taken, so the kernel drops further SYNs. Keep the pair alive.
fn black_hole() -> ((std::net::TcpListener, std::net::TcpStream), u16) {
    use std::os::fd::AsRawFd;
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    // Linux applies a new backlog to a listening socket.
    // SAFETY: listen(2) on a valid socket fd that `l` owns and keeps open.
    assert_eq!(unsafe { libc::listen(l.as_raw_fd(), 0) }, 0);
    let port = l.local_addr().unwrap().port();
    let filler = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    ((l, filler), port)
}

/// The reference user's config shape, verbatim apart from endpoint, bucket and keys:
/// credentials as top-level keys, an `http://127.0.0.1:PORT` endpoint (MinIO-style),
/// `force-path-style: true`, and no region: the server answers as MinIO does by default
/// (`us-east-1`). A server in another region gets a clear error naming the region to set
/// (`wrong_credentials_and_dead_endpoints_fail_fast_with_clear_errors`).
#[test]
fn reference_users_config_shape_works_against_garage() {
    let g = Garage::start_with("sr-test", "us-east-1");
    let w = Work::new();
    let db = w.path("app.db");
    let cfg = w.config(&format!(
        "access-key-id: {key}\nsecret-access-key: {secret}\n\ndbs:\n  - path: {db}\n    replicas:\n      - type: s3\n        bucket: {bucket}\n        path: app\n        endpoint: {endpoint}\n        force-path-style: true\n",
        key = g.key_id,
        secret = g.secret,
        db = db.display(),
        bucket = g.bucket,
        endpoint = g.endpoint(),
    ));
    let want = replicate_with_writes(&w, &cfg, &db);
    restore_and_compare(&cfg, &db, &w.path("restored.db"), &want, &[]);

    // The same config against a server in another region: one line saying what to set.
    let other = Garage::start();
    let cfg = w.config(
        &std::fs::read_to_string(&cfg)
            .unwrap()
            .replace(
                &format!("{}\n", g.endpoint()),
                &format!("{}\n", other.endpoint()),
            )
            .replace(&g.key_id, &other.key_id)
            .replace(&g.secret, &other.secret),
    );
    let out = run(&[
        "restore",
        "-config",
        cfg.to_str().unwrap(),
        "-o",
        w.path("x.db").to_str().unwrap(),
        db.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = one_error_line(&out);
    assert!(err.contains("set `region: garage`"), "{err}");
    assert!(!err.contains(&other.secret), "{err}");
}

/// `sqlite-replicate ARGS` with only the given environment variables among those that
/// carry S3 settings or name a config.
fn run_env(w: &Work, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut c = Command::new(bin());
    c.args(args);
    for v in [
        "SQLITE_REPLICATE_CONFIG",
        "LITESTREAM_CONFIG",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "LITESTREAM_ACCESS_KEY_ID",
        "LITESTREAM_SECRET_ACCESS_KEY",
        "LITESTREAM_S3_ENDPOINT",
    ] {
        c.env_remove(v);
    }
    c.envs(env.iter().copied()).current_dir(w.dir.path());
    c.output().unwrap()
}

/// Parity issue 18: the reference user's recovery step, `restore -config FILE -o OUT
/// s3://bucket/path` with the keys at the top level of the config, answered 403 (the
/// URL did not pick up the config's keys). Every way of naming the replica (database
/// path, bare URL, URL with a query) with every way of giving the keys (top level, in the
/// replica, `AWS_*`, `LITESTREAM_*`) restores the same pages; `ltx` and `verify` by URL
/// resolve the same way.
#[test]
fn every_way_of_naming_a_replica_gets_the_same_credentials() {
    let g = Garage::start_with("sr-test", "us-east-1");
    let w = Work::new();
    let db = w.path("app-data.db");
    let (bucket, endpoint) = (g.bucket.clone(), g.endpoint());
    let location = format!(
        "        type: s3\n        bucket: {bucket}\n        path: database\n        endpoint: {endpoint}\n        force-path-style: true\n"
    );
    let keys = format!(
        "access-key-id: {}\nsecret-access-key: {}\n",
        g.key_id, g.secret
    );
    let dbs = |replica: &str| {
        format!(
            "dbs:\n  - path: {}\n    replicas:\n      - {}",
            db.display(),
            replica.trim_start()
        )
    };
    let write = |name: &str, text: String| {
        let p = w.path(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let top_level = write("top-level.yml", format!("{keys}{}", dbs(&location)));
    let per_replica = write(
        "per-replica.yml",
        dbs(&format!(
            "        url: s3://{bucket}/database\n        endpoint: {endpoint}\n        access-key-id: {}\n        secret-access-key: {}\n",
            g.key_id, g.secret
        )),
    );
    let no_keys = write("no-keys.yml", dbs(&location));

    let cfg = per_replica.clone();
    let want = replicate_with_writes(&w, &cfg, &db);

    let aws = [
        ("AWS_ACCESS_KEY_ID", g.key_id.as_str()),
        ("AWS_SECRET_ACCESS_KEY", g.secret.as_str()),
    ];
    let litestream = [
        ("LITESTREAM_ACCESS_KEY_ID", g.key_id.as_str()),
        ("LITESTREAM_SECRET_ACCESS_KEY", g.secret.as_str()),
    ];
    type Vars<'a> = &'a [(&'a str, &'a str)];
    let styles: [(&str, &std::path::Path, Vars); 4] = [
        ("top-level keys", &top_level, &[]),
        ("per-replica keys", &per_replica, &[]),
        ("AWS_* variables", &no_keys, &aws),
        ("LITESTREAM_* variables", &no_keys, &litestream),
    ];
    let bare = format!("s3://{bucket}/database");
    let with_query = format!("s3://{bucket}/database?endpoint={endpoint}&region=us-east-1");
    let namings = [
        ("database path", db.to_str().unwrap()),
        ("bare URL", bare.as_str()),
        ("URL with query", with_query.as_str()),
    ];
    let mut n = 0;
    for (style, cfg, env) in styles {
        for (naming, target) in namings {
            n += 1;
            let out = w.path(&format!("restored-{n}.db"));
            let args = [
                "restore",
                "-config",
                cfg.to_str().unwrap(),
                "-integrity-check",
                "full",
                "-o",
                out.to_str().unwrap(),
                target,
            ];
            let r = run_env(&w, &args, env);
            assert!(
                r.status.success(),
                "{style}, by {naming}: {}",
                String::from_utf8_lossy(&r.stderr)
            );
            assert_same_pages(
                &want,
                &pages_of_file(&out),
                &format!("{style}, by {naming}"),
            );
        }
    }

    // `ltx` and `verify` by bare URL, keys at the top level: the same resolution.
    let top = top_level.to_str().unwrap();
    let r = run_env(&w, &["ltx", "-config", top, "-level", "0", &bare], &[]);
    assert!(
        r.status.success(),
        "ltx: {}",
        String::from_utf8_lossy(&r.stderr)
    );
    assert!(
        String::from_utf8_lossy(&r.stdout).lines().count() > 1,
        "ltx lists files:\n{}",
        String::from_utf8_lossy(&r.stdout)
    );
    let r = run_env(&w, &["verify", "-config", top, &bare], &[]);
    assert!(
        r.status.success(),
        "verify: {}{}",
        String::from_utf8_lossy(&r.stdout),
        String::from_utf8_lossy(&r.stderr)
    );

    // The keys matter: the same bare URL with wrong keys is refused.
    let wrong = [
        ("AWS_ACCESS_KEY_ID", g.key_id.as_str()),
        (
            "AWS_SECRET_ACCESS_KEY",
            "0000000000000000000000000000000000000000000000000000000000000000",
        ),
    ];
    let out = w.path("wrong.db");
    let r = run_env(
        &w,
        &[
            "restore",
            "-config",
            no_keys.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            &bare,
        ],
        &wrong,
    );
    assert!(!r.status.success(), "restore with a wrong secret succeeded");
    assert!(!out.exists());
}
