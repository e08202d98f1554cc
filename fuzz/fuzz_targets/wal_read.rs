//! Feeds the WAL reader `-wal` files built from arbitrary bytes. Random bytes almost never
//! carry a valid header checksum, so the input is used as raw material: a header whose
//! checksum is made valid, then frames whose salts and cumulative checksums are repaired or
//! left broken as control bytes decide. That reaches the frame walk, commit boundaries, the
//! torn-tail/corruption distinction, cursors and restarts. Any panic, hang or out-of-bounds
//! read is a bug; "nothing here" answers are expected.
#![no_main]

// The WAL reader, compiled here from engine's own source file (it depends on std and ltx
// only), so a fuzz build needs none of engine's I/O stack.
#[allow(dead_code)]
#[path = "../../crates/engine/src/sqlite/wal.rs"]
mod wal;

/// What `wal.rs` takes from engine's platform module: positional reads (the fuzz build is
/// Linux-only, so std's Unix trait is the same interface).
mod platform {
    pub use std::os::unix::fs::FileExt;
}

use wal::{checksum_bytes, Outcome, ScanFrom, WalCursor};
use libfuzzer_sys::fuzz_target;
use ltx::PageSize;

const PAGE: usize = 512;
const FRAME: usize = 24 + PAGE;

/// Builds a WAL from `data`: byte 0 picks byte order and the raw-or-built mode, bytes 1..9
/// the salts, then per frame one control byte and up to 512 bytes of page data.
fn build(data: &[u8]) -> Vec<u8> {
    let Some((&mode, rest)) = data.split_first() else {
        return Vec::new();
    };
    if mode & 0x80 != 0 {
        return rest.to_vec(); // raw bytes, as a damaged file would be
    }
    let big_endian = mode & 1 == 1;
    let salts: [u8; 8] = rest
        .get(..8)
        .and_then(|s| s.try_into().ok())
        .unwrap_or([7; 8]);
    let body = rest.get(8..).unwrap_or(&[]);
    let mut w = Vec::with_capacity(32 + body.len() / 513 * FRAME);
    w.extend_from_slice(&(0x377f_0682u32 | big_endian as u32).to_be_bytes());
    w.extend_from_slice(&3_007_000u32.to_be_bytes());
    w.extend_from_slice(&(PAGE as u32).to_be_bytes());
    w.extend_from_slice(&0u32.to_be_bytes());
    w.extend_from_slice(&salts);
    let mut sum = checksum_bytes(big_endian, &w[..24], (0, 0));
    w.extend_from_slice(&sum.0.to_be_bytes());
    w.extend_from_slice(&sum.1.to_be_bytes());
    for (i, chunk) in body.chunks(PAGE + 1).enumerate() {
        let (ctl, page) = (chunk[0], &chunk[1..]);
        let pgno = 1 + (ctl as u32 & 0x0f);
        let commit = if ctl & 0x10 != 0 {
            pgno + (ctl as u32 >> 5)
        } else {
            0
        };
        let mut frame = Vec::with_capacity(FRAME);
        frame.extend_from_slice(&pgno.to_be_bytes());
        frame.extend_from_slice(&commit.to_be_bytes());
        if ctl & 0x20 != 0 && i > 0 {
            frame.extend_from_slice(&[0xee; 8]); // another generation's salts
        } else {
            frame.extend_from_slice(&salts);
        }
        let mut data = page.to_vec();
        data.resize(PAGE, (i as u8).wrapping_mul(31));
        let next = checksum_bytes(
            big_endian,
            &data,
            checksum_bytes(big_endian, &frame[..8], sum),
        );
        let stored = if ctl & 0x40 != 0 {
            (next.0 ^ 1, next.1)
        } else {
            next
        };
        sum = stored;
        frame.extend_from_slice(&stored.0.to_be_bytes());
        frame.extend_from_slice(&stored.1.to_be_bytes());
        frame.extend_from_slice(&data);
        if ctl == 0xff {
            frame.truncate(FRAME / 2); // a torn tail
        }
        w.extend_from_slice(&frame);
    }
    w
}

fuzz_target!(|data: &[u8]| {
    let page_size = PageSize::new(PAGE as u32).expect("valid page size");
    let wal_bytes = build(data);
    let wal_bytes = &wal_bytes[..];
    let Ok(scan) = wal::scan(wal_bytes, page_size, &ScanFrom::Start) else {
        return;
    };
    if let Outcome::Frames(f) = &scan.outcome {
        assert!(f.end.offset <= scan.file_size);
        assert!(f.pages.windows(2).all(|w| w[0].0 < w[1].0));
        let mut buf = vec![0u8; PAGE];
        for &(_, off) in &f.pages {
            wal::read_page(wal_bytes, off, &mut buf).expect("pages lie inside the WAL");
        }
        let again =
            wal::verify_prefix(wal_bytes, page_size, f.end.salt1, f.end.salt2, f.end.offset);
        assert_eq!(
            again.expect("in memory").map(|c| c.offset),
            Some(f.end.offset)
        );
        // Continue from the end, and from an arbitrary cursor: must not panic.
        let _ = wal::scan(wal_bytes, page_size, &ScanFrom::Cursor(f.end));
        let c = WalCursor {
            offset: (data.len() as u64).wrapping_mul(7) % (scan.file_size + 1),
            ..f.end
        };
        let _ = wal::scan(wal_bytes, page_size, &ScanFrom::Cursor(c));
        let restarted = WalCursor {
            salt1: f.end.salt1.wrapping_sub(1),
            ..c
        };
        let _ = wal::scan(wal_bytes, page_size, &ScanFrom::Cursor(restarted));
    }
});
