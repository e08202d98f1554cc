//! Property tests: encode/decode identity, snapshot completeness, compaction
//! against a reference model, and decoder robustness on arbitrary bytes.

mod common;

use std::collections::BTreeMap;

use common::*;
use ltx::{
    compact, compact_as_snapshot, parse_page_index, CompactError, Decoder, Encoder, Header,
    PageEncoding,
};
use proptest::prelude::*;

fn fill_strategy() -> impl Strategy<Value = Fill> {
    prop_oneof![
        Just(Fill::Zeros),
        any::<u8>().prop_map(Fill::Pattern),
        any::<u64>().prop_map(Fill::Noise)
    ]
}

fn encoding_strategy() -> impl Strategy<Value = PageEncoding> {
    prop_oneof![Just(PageEncoding::Block), Just(PageEncoding::LegacyFrame)]
}

/// How the pages of a file are encoded: all one way, or mixed per page.
#[derive(Clone, Debug)]
enum Encodings {
    All(PageEncoding),
    Mixed(Vec<PageEncoding>),
}

impl Encodings {
    fn get(&self, i: usize) -> PageEncoding {
        match self {
            Encodings::All(e) => *e,
            Encodings::Mixed(v) => v[i % v.len()],
        }
    }
}

/// A file: page size, sorted unique pgnos with fills, extra commit headroom,
/// TXIDs, and encodings. Few pages for big page sizes to keep the suite fast.
fn file_strategy() -> impl Strategy<Value = (u32, Vec<(u32, Fill)>, u32, u64, u64, Encodings)> {
    (9u32..=16).prop_flat_map(|shift| {
        let ps = 1u32 << shift;
        let max_pages = (262_144 / ps).clamp(2, 24) as usize;
        (
            Just(ps),
            prop::collection::btree_map(1u32..=64, fill_strategy(), 0..max_pages)
                .prop_map(|m| m.into_iter().collect::<Vec<_>>()),
            0u32..3,
            2u64..1000,
            0u64..5,
            prop_oneof![
                encoding_strategy().prop_map(Encodings::All),
                prop::collection::vec(encoding_strategy(), 1..5).prop_map(Encodings::Mixed)
            ],
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn encode_decode_identity((ps, pages, extra, min, span, encs) in file_strategy(), ts in any::<i64>()) {
        let commit = pages.last().map_or(0, |p| p.0) + extra;
        let mut h = Header::new(page_size(ps), commit, txid(min), txid(min + span), ts);
        h.wal_offset = 32;
        h.wal_size = 4120;
        h.wal_salt1 = 0xdead_beef;
        let pages: Vec<(u32, Vec<u8>, PageEncoding)> = pages
            .iter()
            .enumerate()
            .map(|(i, &(n, fill))| (n, make_page(ps as usize, fill), encs.get(i)))
            .collect();
        let (bytes, trailer) = encode(&h, &pages);
        let (got_h, got_pages, got_trailer) = decode_all(&bytes).unwrap();
        prop_assert_eq!(got_h, h);
        prop_assert_eq!(got_trailer, trailer);
        prop_assert_eq!(trailer.post_apply_checksum, 0);
        prop_assert!(trailer.file_checksum >> 63 == 1);
        let want: Vec<(u32, Vec<u8>)> = pages.into_iter().map(|(n, d, _)| (n, d)).collect();
        prop_assert_eq!(got_pages, want);
        let idx = parse_page_index(&bytes).unwrap();
        prop_assert_eq!(idx.len(), got_h_len(&bytes));
    }

    #[test]
    fn snapshot_requires_every_page(commit in 0u32..24, missing in prop::collection::btree_set(1u32..24, 0..3)) {
        let h = Header::new(page_size(512), commit, txid(1), txid(3), 0);
        let mut enc = Encoder::new(Vec::new(), &h, PageEncoding::Block).unwrap();
        let mut written = 0;
        for n in (1..=commit).filter(|n| !missing.contains(n)) {
            enc.write_page(pgno(n), &make_page(512, Fill::Pattern(n as u8))).unwrap();
            written += 1;
        }
        let result = enc.finish();
        if written == commit {
            let (bytes, _) = result.unwrap();
            let (_, pages, _) = decode_all(&bytes).unwrap();
            prop_assert_eq!(pages.iter().map(|p| p.0).collect::<Vec<_>>(), (1..=commit).collect::<Vec<_>>());
        } else {
            let is_incomplete = matches!(result, Err(ltx::EncodeError::IncompleteSnapshot { missing: m, .. }) if m == commit - written);
            prop_assert!(is_incomplete);
        }
    }

    #[test]
    fn compaction_matches_model(
        ps_shift in 9u32..=12,
        first_min in 1u64..5,
        inputs in prop::collection::vec(
            (0u64..3, 0u64..3, 1u32..=20, prop::collection::btree_set(1u32..=20, 0..12), any::<u8>(), encoding_strategy()),
            1..5,
        ),
        out_encoding in encoding_strategy(),
        as_snapshot in any::<bool>(),
    ) {
        let ps = 1u32 << ps_shift;
        // Build contiguous inputs: each starts at most one past the previous max
        // (`back` steps into the previous range) and advances by 1 + `span`.
        let mut files = Vec::new();
        let mut model: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
        let mut prev_max = 0u64;
        let mut last_commit = 0;
        for (i, (back, span, commit, pgnos, seed, enc)) in inputs.iter().enumerate() {
            let min = if i == 0 { first_min } else { (prev_max + 1).saturating_sub(*back).max(1) };
            let max = prev_max.max(min) + 1 + span;
            let h = Header::new(page_size(ps), *commit, txid(min), txid(max), i as i64 * 1000);
            let pages: Vec<(u32, Vec<u8>, PageEncoding)> = if h.is_snapshot() {
                (1..=*commit).collect::<Vec<_>>()
            } else {
                pgnos.iter().copied().filter(|n| n <= commit).collect()
            }
            .into_iter()
            .map(|n| (n, make_page(ps as usize, Fill::Noise(u64::from(*seed) << 32 | u64::from(n))), *enc))
            .collect();
            for (n, d, _) in &pages {
                model.insert(*n, d.clone());
            }
            files.push(encode(&h, &pages).0);
            prev_max = max;
            last_commit = *commit;
        }
        model.retain(|&n, _| n <= last_commit);
        let decoders: Vec<Decoder<&[u8]>> = files.iter().map(|f| Decoder::new(f.as_slice()).unwrap()).collect();
        let snapshot_out = as_snapshot || first_min == 1;
        let result = if as_snapshot {
            compact_as_snapshot(decoders, Vec::new(), out_encoding)
        } else {
            compact(decoders, Vec::new(), out_encoding)
        };
        let complete = model.len() as u32 == last_commit;
        match result {
            Ok((out, h)) => {
                prop_assert!(!snapshot_out || complete);
                prop_assert_eq!(h.min_txid.get(), if as_snapshot { 1 } else { first_min });
                prop_assert_eq!(h.max_txid.get(), prev_max);
                prop_assert_eq!(h.commit, last_commit);
                prop_assert_eq!(h.timestamp_ms, (inputs.len() as i64 - 1) * 1000);
                let (got_h, pages, _) = decode_all(&out).unwrap();
                prop_assert_eq!(got_h, h);
                prop_assert_eq!(pages, model.into_iter().collect::<Vec<_>>());
            }
            Err(CompactError::IncompleteSnapshot { missing, commit }) => {
                prop_assert!(snapshot_out && !complete);
                prop_assert_eq!(commit, last_commit);
                prop_assert_eq!(missing, last_commit - model.len() as u32);
            }
            Err(e) => prop_assert!(false, "unexpected error {}", e),
        }
    }

}

proptest! {
    // Robustness cases are cheap (small files), so run more of them.
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..3000), with_header in any::<bool>()) {
        let mut input = Vec::new();
        if with_header {
            input.extend_from_slice(&Header::new(page_size(512), 8, txid(2), txid(2), 0).to_bytes());
        }
        input.extend_from_slice(&bytes);
        let _ = decode_all(&input);
        let _ = parse_page_index(&input);
    }

    #[test]
    fn mutated_files_never_panic_and_never_lie(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in prop::option::of(any::<prop::sample::Index>()),
        seed in any::<u64>(),
    ) {
        let h = Header::new(page_size(512), 6, txid(4), txid(5), 0);
        let pages = vec![
            (1, make_page(512, Fill::Noise(seed)), PageEncoding::Block),
            (2, make_page(512, Fill::Pattern(seed as u8)), PageEncoding::LegacyFrame),
            (4, make_page(512, Fill::Zeros), PageEncoding::Block),
            (6, make_page(512, Fill::Noise(!seed)), PageEncoding::LegacyFrame),
        ];
        let (good, _) = encode(&h, &pages);
        let original = decode_all(&good).unwrap();
        let mut bad = good.clone();
        for (at, v) in &edits {
            let at = at.index(bad.len());
            bad[at] = *v;
        }
        if let Some(cut) = cut {
            bad.truncate(cut.index(bad.len()));
        }
        let _ = parse_page_index(&bad);
        if let Ok(decoded) = decode_all(&bad) {
            // Whatever still decodes must be what was written: the checksum covers it.
            prop_assert_eq!(decoded.0, original.0);
            prop_assert_eq!(decoded.1, original.1);
        }
    }
}

/// Number of pages according to a full decode (used to cross-check the index).
fn got_h_len(bytes: &[u8]) -> usize {
    decode_all(bytes).unwrap().1.len()
}
