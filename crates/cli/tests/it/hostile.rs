//! A hostile or damaged replica (security issue 17): sizes that lie, headers that do not
//! match their names, decompression bombs, files far larger than their content, names and
//! links that point outside the replica. Each restore or follow ends in an ordinary error
//! naming the object (exit status 1, never a signal or an abort), with memory bounded
//! (the binary runs under `ulimit -v`), and nothing written outside the output's temp file.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::harness::*;

/// Address space the binary may use in these tests, in KiB: 1 GiB. A restore needs half
/// of it (measured on a 50 MB database: it runs in 512 MiB of address space, aborts in
/// 256 MiB, with a peak RSS of 40 MiB; the rest is thread stacks and allocator arenas
/// reserved, not used); reading a multi-GiB object whole would not fit.
const ADDRESS_SPACE_KIB: u64 = 1 << 20;

/// Runs the binary with its address space limited to [`ADDRESS_SPACE_KIB`].
fn run_bounded(args: &[&str]) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -v {ADDRESS_SPACE_KIB} && exec \"$0\" \"$@\""
        ))
        .arg(bin())
        .args(args)
        .output()
        .expect("run binary")
}

/// The run failed as a program does, with status 1 and a message: not killed by a signal
/// (an abort on a failed allocation is SIGABRT), not a panic. Returns stderr.
fn failed_cleanly(o: &Output, what: &str) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{what}: {:?}\n{err}", o.status);
    assert!(!err.contains("panicked"), "{what}: panicked:\n{err}");
    assert!(
        !err.contains("memory allocation"),
        "{what}: ran out of memory:\n{err}"
    );
    err
}

/// Nothing but `keep` in `dir`: no temp file left beside the output.
fn only(dir: &Path, keep: &[&str]) {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !keep.contains(&n.as_str()))
        .collect();
    names.sort();
    assert!(
        names.is_empty(),
        "left behind in {}: {names:?}",
        dir.display()
    );
}

/// A file replica with L0 files 1..=2 of a small database.
fn small_replica(w: &Work) -> (PathBuf, String) {
    let db = w.path("app.db");
    let replica = w.path("replica");
    let url = format!("file://{}", replica.display());
    let app = app_db(&db);
    for _ in 0..2 {
        insert_rows(&app, 10, 300);
        run_ok(&["replicate", "-once", db.to_str().unwrap(), &url]);
    }
    (replica, url)
}

fn l0(replica: &Path, min: u64, max: u64) -> PathBuf {
    replica.join(format!("ltx/0/{min:016x}-{max:016x}.ltx"))
}

/// Finding 1: an LTX file whose size (8 TiB, sparse) is far beyond what its header allows.
/// The restore built every 1 MiB range of the listed size up front (8 Mi ranges, hundreds
/// of MiB); now the size is checked against the header before anything else is read.
#[test]
fn ltx_file_far_larger_than_its_header_allows_is_refused() {
    let w = Work::new();
    let (replica, url) = small_replica(&w);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(l0(&replica, 2, 2))
        .unwrap();
    f.set_len(8 << 40).unwrap();
    drop(f);
    let out = w.path("out.db");
    let o = run_bounded(&["restore", "-o", out.to_str().unwrap(), &url]);
    let err = failed_cleanly(&o, "8 TiB LTX file");
    assert!(
        err.contains("L0/0000000000000002-0000000000000002.ltx: the store lists it as 8796093022208 bytes, more than its header allows"),
        "{err}"
    );
    assert!(!out.exists());
    only(
        w.dir.path(),
        &[
            "app.db",
            "app.db-wal",
            "app.db-shm",
            ".app.db-sqlite-replicate",
            "replica",
        ],
    );
}

/// Finding 4: follow mode took a file's header TXIDs on trust: a file named for TXID 4
/// whose header says 4-9 moved the applied TXID to 9, and the follower silently skipped
/// whatever later came for 5..=9. Now it stops with an error naming the file. On the way,
/// a 3 MiB file (TXID 3) is applied from ranged reads of 1 MiB (finding 2: follow read
/// each file whole into memory).
#[test]
fn follow_stops_at_a_file_whose_header_disagrees_with_its_name() {
    let w = Work::new();
    let (replica, url) = small_replica(&w);
    let out = w.path("follower.db");
    let mut f = Command::new(bin())
        .args([
            "restore",
            "-f",
            "-follow-interval",
            "50ms",
            "-o",
            out.to_str().unwrap(),
            &url,
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let txid_file = w.path("follower.db-txid");
    let at = |t: &str| std::fs::read_to_string(&txid_file).is_ok_and(|s| s.trim() == t);
    eventually(Duration::from_secs(20), "the follower at TXID 2", || {
        at("0000000000000002")
    });
    let app = app_db(&w.path("app.db"));
    insert_rows(&app, 3, 1 << 20);
    let db = w.path("app.db");
    run_ok(&["replicate", "-once", db.to_str().unwrap(), &url]);
    assert!(std::fs::metadata(l0(&replica, 3, 3)).unwrap().len() > 3 << 20);
    eventually(Duration::from_secs(20), "the follower at TXID 3", || {
        at("0000000000000003")
    });
    let c = rusqlite::Connection::open_with_flags(&out, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap();
    let n: i64 = c
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 23);
    drop(c);
    // TXID 3's pages again, under a header saying 4-9, named 4-4.
    let data = std::fs::read(l0(&replica, 3, 3)).unwrap();
    let mut dec = ltx::Decoder::new(&data[..]).unwrap();
    let mut h = dec.header().clone();
    h.min_txid = ltx::TxId::new(4).unwrap();
    h.max_txid = ltx::TxId::new(9).unwrap();
    let mut enc = ltx::Encoder::new(Vec::new(), &h, ltx::PageEncoding::Block).unwrap();
    let mut buf = vec![0u8; h.page_size.bytes()];
    while let Some(p) = dec.next_page(&mut buf).unwrap() {
        enc.write_page(p, &buf).unwrap();
    }
    let (bytes, _) = enc.finish().unwrap();
    let tmp = replica.join("ltx/0/tmp.partial");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, l0(&replica, 4, 4)).unwrap();
    let status = {
        let mut st = None;
        eventually(Duration::from_secs(20), "the follower to stop", || {
            st = f.try_wait().unwrap();
            st.is_some()
        });
        st.unwrap()
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut f.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains("L0/0000000000000004-0000000000000004.ltx: at byte 16: the header holds TXIDs 0000000000000004-0000000000000009"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(&txid_file).unwrap().trim(),
        "0000000000000003",
        "the applied TXID did not move"
    );
}

const GENERATION: &str = "0123456789abcdef";

/// An LZ4 frame with a content checksum, as 0.3 writes them.
fn lz4(data: impl std::io::Read) -> Vec<u8> {
    let info = lz4_flex::frame::FrameInfo::new().content_checksum(true);
    let mut enc = lz4_flex::frame::FrameEncoder::with_frame_info(info, Vec::new());
    std::io::copy(&mut { data }, &mut enc).unwrap();
    enc.finish().unwrap()
}

/// A database file of a few pages, as a 0.3 snapshot holds it.
fn small_db(w: &Work) -> Vec<u8> {
    let p = w.path("snap-src.db");
    let c = rusqlite::Connection::open(&p).unwrap();
    c.execute_batch("CREATE TABLE t(v); INSERT INTO t VALUES (randomblob(3000));")
        .unwrap();
    drop(c);
    let b = std::fs::read(&p).unwrap();
    std::fs::remove_file(&p).unwrap();
    b
}

fn snapshot_path(v3: &Path) -> PathBuf {
    v3.join(format!(
        "generations/{GENERATION}/snapshots/00000000.snapshot.lz4"
    ))
}

fn put(path: &Path, data: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
}

/// Finding 3: a 0.3 snapshot of a 3-page database followed by 1 GiB of zeros, 4 MiB
/// compressed. It decompressed without bound (into the temp file: 1 GiB of disk, and a
/// restore that then succeeded); now it stops as soon as it passes the size its SQLite
/// header gives, naming the file.
#[test]
fn v3_snapshot_bomb_stops_at_its_header_size() {
    let w = Work::new();
    let v3 = w.path("v3");
    let db = small_db(&w);
    let pages = u32::from_be_bytes(db[28..32].try_into().unwrap());
    let zeros = std::io::Read::take(std::io::repeat(0), 1 << 30);
    let bomb = lz4(std::io::Read::chain(&db[..], zeros));
    assert!(bomb.len() < 8 << 20, "{} bytes compressed", bomb.len());
    put(&snapshot_path(&v3), &bomb);
    let out = w.path("out.db");
    let o = run_bounded(&[
        "restore",
        "-o",
        out.to_str().unwrap(),
        &format!("file://{}", v3.display()),
    ]);
    let err = failed_cleanly(&o, "snapshot bomb");
    assert!(
        err.contains(&format!(
            "generations/{GENERATION}/snapshots/00000000.snapshot.lz4: decompresses to more than {} bytes, the most the {pages} pages",
            db.len()
        )),
        "{err}"
    );
    assert!(!out.exists());
    only(w.dir.path(), &["v3"]);
}

/// Finding 2: a 0.3 file was read whole into memory before decompressing. A snapshot of
/// 64 GiB (sparse: a real frame, then a hole) was a 64 GiB allocation; now it is read in
/// pieces, and the bytes after its frame are refused unread.
#[test]
fn v3_huge_file_is_read_in_pieces() {
    let w = Work::new();
    let v3 = w.path("v3");
    let snap = snapshot_path(&v3);
    put(&snap, &lz4(&small_db(&w)[..]));
    let f = std::fs::OpenOptions::new().write(true).open(&snap).unwrap();
    f.set_len(64 << 30).unwrap();
    drop(f);
    let out = w.path("out.db");
    let o = run_bounded(&[
        "restore",
        "-o",
        out.to_str().unwrap(),
        &format!("file://{}", v3.display()),
    ]);
    let err = failed_cleanly(&o, "64 GiB snapshot");
    assert!(
        err.contains(&format!(
            "generations/{GENERATION}/snapshots/00000000.snapshot.lz4: the LZ4 frame does not decompress: 6871947"
        )) && err.contains("bytes follow the end of the frame"),
        "{err}"
    );
    assert!(!out.exists());
    only(w.dir.path(), &["v3"]);
}

/// Finding 5: a 0.3 snapshot that is a symlink to a file outside the replica was listed
/// and read (any file the restoring user can read, restored into the output). Links are
/// not followed now, as LTX listings already did not; names with `..`, NUL or slashes
/// are never parsed as 0.3 or LTX names.
#[test]
fn links_and_names_pointing_outside_the_replica_are_not_followed() {
    let w = Work::new();
    let v3 = w.path("v3");
    let outside = w.path("outside.snapshot.lz4");
    std::fs::write(&outside, lz4(&small_db(&w)[..])).unwrap();
    let snap = snapshot_path(&v3);
    std::fs::create_dir_all(snap.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(&outside, &snap).unwrap();
    // Decoy names beside it: none is a 0.3 name, so none is opened.
    let wal = v3.join(format!("generations/{GENERATION}/wal"));
    std::fs::create_dir_all(&wal).unwrap();
    for decoy in [
        "..%2f00000000_00000000.wal.lz4",
        "00000000_00000000.wal.lz4.tmp",
    ] {
        std::fs::write(wal.join(decoy), b"x").unwrap();
    }
    let out = w.path("out.db");
    let o = run_bounded(&[
        "restore",
        "-o",
        out.to_str().unwrap(),
        &format!("file://{}", v3.display()),
    ]);
    let err = failed_cleanly(&o, "symlinked snapshot");
    assert!(!out.exists(), "restored from a file outside the replica");
    assert!(err.contains("holds no backup"), "{err}");
}
