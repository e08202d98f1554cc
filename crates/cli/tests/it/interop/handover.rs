//! Issue 6, test 3: hand-over. Litestream 0.5.17 takes over replicating a database whose
//! replica we started, and we take over from it, twice each way, on file and Garage
//! replicas. Each takes the next TXID (no gap, nothing reused), every L0 file carries real
//! WAL coordinates (what Litestream resumes from, reference section 10.7), and both
//! programs restore every hand-over point and the end page for page.

use std::time::{Duration, Instant};

use ltx::Level;

use super::history::{config, on_file_and_garage, settle, KEEP};
use super::programs::Program;
use crate::harness::*;

#[test]
fn litestream_and_we_take_over_from_each_other() {
    let ls = Program::litestream_0517();
    on_file_and_garage(|w, dest| {
        let db = w.path("app.db");
        let app = app_db(&db);
        insert_rows(&app, 20, 300);
        let cfg = config(w, "handover", &db, dest, KEEP, "");
        let mut logs = Vec::new();
        let mut points = Vec::new();
        // In round 2 we write nothing while running, so the L0 file Litestream resumes
        // from in round 3 is our full image, not an incremental one as in round 1.
        for (round, program, busy) in [
            (0, &Program::Ours, true),
            (1, &ls, true),
            (2, &Program::Ours, false),
            (3, &ls, true),
        ] {
            // Written while nobody replicates: the next replicator must ship them.
            insert_rows(&app, 5, 400);
            let d = program.replicate(w, &cfg);
            logs.push(d.log_path().to_path_buf());
            let t = Instant::now();
            let mut i = 0;
            while busy && t.elapsed() < Duration::from_millis(1500) {
                i += 1;
                insert_rows(&app, 2, 150 + 40 * (i % 5));
                if i % 15 == 0 {
                    app.execute("DELETE FROM t WHERE id % 6 = 0", []).unwrap();
                }
                // Paces the writer over the round's 1.5 s.
                std::thread::sleep(Duration::from_millis(40));
            }
            let m = settle(w, &cfg, &db, dest, &logs);
            d.stop_ok();
            points.push((round, program.name(), m));
        }

        // The end state "latest" restores must reproduce, taken with every replicator
        // stopped: the last settle point can be stale, as Litestream may checkpoint and
        // bump its `_litestream_seq` row after it (a new L0 file, a changed page).
        let end = settle(w, &cfg, &db, dest, &logs);
        let files = dest.list_all(false);
        let l0: Vec<u64> = files
            .iter()
            .filter(|f| f.key.level == Level::L0)
            .map(|f| f.key.max.get())
            .collect();
        // The last program may still write a file after the last settle point (Litestream
        // can, on its way out): the L0 TXIDs must run from 1 without gap or repeat and
        // reach at least that point.
        let max = points.last().unwrap().2.txid;
        let top = l0.last().copied().unwrap_or(0);
        assert!(
            top >= max,
            "{}: L0 reaches {top}, short of {max}",
            dest.name
        );
        assert_eq!(
            l0,
            (1..=top).collect::<Vec<_>>(),
            "{}: L0 TXIDs are 1..={top} without gap or repeat",
            dest.name
        );
        for pair in points.windows(2) {
            assert!(
                pair[1].2.txid > pair[0].2.txid,
                "{}: {} after {} did not advance",
                dest.name,
                pair[1].1,
                pair[0].1
            );
        }
        for f in files.iter().filter(|f| f.key.level == Level::L0) {
            let h = dest.header(f);
            assert!(
                h.wal_offset >= 32,
                "{}: {} has WAL offset {}: Litestream cannot resume from it",
                dest.name,
                f.key,
                h.wal_offset
            );
        }
        for program in [&Program::Ours, &ls] {
            for (round, writer, m) in &points {
                let out = w.path(&format!("{}-{round}.db", program.name().replace(' ', "-")));
                let txid = format!("{:016x}", m.txid);
                let r = program.restore(&cfg, &db, &out, &["-txid", &txid]);
                assert!(
                    r.status.success(),
                    "{} restore of round {round} ({writer}) TXID {txid} from {}: {}",
                    program.name(),
                    dest.name,
                    String::from_utf8_lossy(&r.stderr)
                );
                assert_same_pages(
                    &m.pages,
                    &pages_of_file(&out),
                    &format!(
                        "{} restore of round {round} ({writer}) from {}",
                        program.name(),
                        dest.name
                    ),
                );
            }
            let out = w.path(&format!("{}-latest.db", program.name().replace(' ', "-")));
            let r = program.restore(&cfg, &db, &out, &[]);
            assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
            assert_same_pages(
                &end.pages,
                &pages_of_file(&out),
                &format!("{} restore of the end from {}", program.name(), dest.name),
            );
        }
    });
}
