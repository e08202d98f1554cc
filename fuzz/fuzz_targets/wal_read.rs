//! Feeds arbitrary bytes to the WAL reader as a `-wal` file: a scan from the start, a scan
//! continuing from a cursor taken from the input, and prefix verification. Any panic, hang
//! or out-of-bounds read is a bug; "nothing here" answers are expected.
#![no_main]

use engine::sqlite::wal::{self, Outcome, ScanFrom, WalCursor};
use libfuzzer_sys::fuzz_target;
use ltx::PageSize;

fuzz_target!(|data: &[u8]| {
    // Small pages keep frames short so the fuzzer reaches the checksum chain quickly.
    let page_size = match data.first().map(|b| b % 3) {
        Some(0) => PageSize::new(512),
        Some(1) => PageSize::new(1024),
        _ => PageSize::new(4096),
    }
    .expect("valid page size");
    let wal_bytes = data.get(1..).unwrap_or(&[]);
    let Ok(scan) = wal::scan(wal_bytes, page_size, &ScanFrom::Start) else {
        return;
    };
    if let Outcome::Frames(f) = &scan.outcome {
        assert!(f.end.offset <= scan.file_size);
        assert!(f.pages.windows(2).all(|w| w[0].0 < w[1].0));
        let mut buf = vec![0u8; page_size.bytes()];
        for &(_, off) in &f.pages {
            wal::read_page(wal_bytes, off, &mut buf).expect("pages lie inside the WAL");
        }
        let again =
            wal::verify_prefix(wal_bytes, page_size, f.end.salt1, f.end.salt2, f.end.offset);
        assert_eq!(
            again.expect("in memory").map(|c| c.offset),
            Some(f.end.offset)
        );
        // Continue from an arbitrary cursor: must not panic whatever it says.
        let c = WalCursor {
            offset: (data.len() as u64).wrapping_mul(7) % (scan.file_size + 1),
            ..f.end
        };
        let _ = wal::scan(wal_bytes, page_size, &ScanFrom::Cursor(c));
    }
});
