//! Deterministic compaction tests; the randomized model check is in `props.rs`.

mod common;

use common::*;
use ltx::{compact, compact_as_snapshot, CompactError, DecodeError, Decoder, Header, PageEncoding};

fn file(ps: u32, commit: u32, min: u64, max: u64, ts: i64, pages: &[(u32, u8)]) -> Vec<u8> {
    let mut h = Header::new(page_size(ps), commit, txid(min), txid(max), ts);
    h.wal_offset = 32;
    h.wal_size = 100;
    h.wal_salt1 = 9;
    let pages: Vec<_> = pages
        .iter()
        .map(|&(n, fill)| {
            (
                n,
                make_page(ps as usize, Fill::Pattern(fill)),
                PageEncoding::Block,
            )
        })
        .collect();
    encode(&h, &pages).0
}

fn decoders(files: &[Vec<u8>]) -> Vec<Decoder<&[u8]>> {
    files
        .iter()
        .map(|f| Decoder::new(f.as_slice()).unwrap())
        .collect()
}

#[test]
fn newest_page_wins_and_truncates_to_last_commit() {
    let files = vec![
        file(512, 4, 2, 2, 10, &[(1, 1), (2, 1), (4, 1)]),
        file(512, 5, 3, 4, 20, &[(2, 2), (5, 2)]),
        file(512, 3, 5, 5, 30, &[(1, 3)]),
    ];
    let (out, h) = compact(decoders(&files), Vec::new(), PageEncoding::LegacyFrame).unwrap();
    assert_eq!(
        (h.min_txid.get(), h.max_txid.get(), h.commit, h.timestamp_ms),
        (2, 5, 3, 30)
    );
    assert_eq!(
        (h.wal_offset, h.wal_size, h.wal_salt1, h.wal_salt2, h.flags),
        (0, 0, 0, 0, 2)
    );
    let (got_h, pages, _) = decode_all(&out).unwrap();
    assert_eq!(got_h, h);
    let fills: Vec<(u32, Vec<u8>)> = [(1, 3), (2, 2)]
        .iter()
        .map(|&(n, f)| (n, make_page(512, Fill::Pattern(f))))
        .collect();
    assert_eq!(pages, fills);
}

#[test]
fn input_checks() {
    let a = file(512, 2, 2, 3, 0, &[(1, 1)]);
    let gap = file(512, 2, 5, 5, 0, &[(1, 1)]);
    let stale = file(512, 2, 3, 3, 0, &[(1, 1)]);
    let overlap = file(512, 2, 3, 4, 0, &[(1, 1)]);
    let big = file(1024, 2, 4, 4, 0, &[(1, 1)]);
    let run =
        |files: &[Vec<u8>]| compact(decoders(files), Vec::new(), PageEncoding::Block).map(|_| ());
    assert!(matches!(
        run(&[a.clone(), gap]),
        Err(CompactError::NotContiguous {
            prev_max: 3,
            next_min: 5
        })
    ));
    assert!(matches!(
        run(&[a.clone(), stale]),
        Err(CompactError::NotContiguous { .. })
    ));
    assert!(
        run(&[a.clone(), overlap]).is_ok(),
        "overlapping but advancing ranges are contiguous"
    );
    assert!(matches!(
        run(&[a.clone(), big]),
        Err(CompactError::PageSizeMismatch { index: 1, .. })
    ));
    assert!(matches!(run(&[]), Err(CompactError::NoInputs)));
}

#[test]
fn corrupt_input_fails_the_compaction() {
    let a = file(512, 2, 2, 2, 0, &[(1, 1), (2, 1)]);
    let mut b = file(512, 2, 3, 3, 0, &[(2, 2)]);
    let n = b.len();
    b[n - 1] ^= 1; // checksum only: pages decode fine, finish must catch it
    let e = compact(decoders(&[a, b]), Vec::new(), PageEncoding::Block).unwrap_err();
    assert!(
        matches!(
            e,
            CompactError::Decode {
                input: Some(1),
                source: DecodeError::ChecksumMismatch { .. }
            }
        ),
        "{e}"
    );
}

#[test]
fn full_l0_becomes_a_snapshot() {
    // A full-database L0 after a resync: min = max = 8 but every page present.
    let full = file(512, 3, 8, 8, 50, &[(1, 1), (2, 2), (3, 3)]);
    let (out, h) = compact_as_snapshot(
        decoders(std::slice::from_ref(&full)),
        Vec::new(),
        PageEncoding::Block,
    )
    .unwrap();
    assert_eq!((h.min_txid.get(), h.max_txid.get(), h.commit), (1, 8, 3));
    assert!(h.is_snapshot());
    assert_eq!(decode_all(&out).unwrap().1.len(), 3);

    // Snapshot + a delta that grows the database without writing the new page 5.
    let snap = file(512, 3, 1, 8, 0, &[(1, 1), (2, 2), (3, 3)]);
    let grow = file(512, 5, 9, 9, 0, &[(4, 4)]);
    let e = compact_as_snapshot(
        decoders(&[snap.clone(), grow]),
        Vec::new(),
        PageEncoding::Block,
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            CompactError::IncompleteSnapshot {
                missing: 1,
                commit: 5
            }
        ),
        "{e}"
    );
    let grow = file(512, 5, 9, 9, 0, &[(4, 4), (5, 5)]);
    let (out, h) = compact_as_snapshot(
        decoders(&[snap.clone(), grow.clone()]),
        Vec::new(),
        PageEncoding::Block,
    )
    .unwrap();
    assert_eq!((h.min_txid.get(), h.max_txid.get(), h.commit), (1, 9, 5));
    assert_eq!(decode_all(&out).unwrap().1.len(), 5);
    // Plain compact of a snapshot with later files yields a snapshot too.
    let (_, h) = compact(decoders(&[snap, grow]), Vec::new(), PageEncoding::Block).unwrap();
    assert!(h.is_snapshot());

    // A partial L0 cannot become a snapshot.
    let partial = file(512, 3, 8, 8, 0, &[(1, 1), (3, 3)]);
    let e = compact_as_snapshot(decoders(&[partial]), Vec::new(), PageEncoding::Block).unwrap_err();
    assert!(
        matches!(
            e,
            CompactError::IncompleteSnapshot {
                missing: 1,
                commit: 3
            }
        ),
        "{e}"
    );
}
