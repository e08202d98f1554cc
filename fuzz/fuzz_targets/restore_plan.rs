//! Feeds arbitrary listings and targets to the restore planner (`history::plan`) and checks
//! what a plan promises: it never panics, and a plan it returns starts with a full database
//! (a snapshot or a file from TXID 1), continues without gaps, never passes the target, and
//! ends exactly at the target TXID, using only files of the listing.
#![no_main]

use std::time::{Duration, UNIX_EPOCH};

// The planner and the object-key layout, compiled here from engine's own source files
// (they depend on std, ltx, serde_json and thiserror only), so a fuzz build needs none of
// engine's I/O stack (tokio, object_store, russh, rusqlite): a cold build takes a minute
// or two instead of ten.
// (The paths are at the crate root: a `#[path]` inside an inline module would resolve
// through a directory that does not exist.)
#[allow(dead_code)]
#[path = "../../crates/engine/src/storage/layout.rs"]
pub mod layout;
#[allow(dead_code)]
#[path = "../../crates/engine/src/history/plan.rs"]
mod plan;
/// `crate::storage::layout`, as the planner names it.
mod storage {
    pub use super::layout;
}

use layout::{LtxInfo, LtxKey};
use plan::{plan, Listing, Target};
use libfuzzer_sys::fuzz_target;
use ltx::{Level, TxId};

fuzz_target!(|data: &[u8]| {
    // Small TXIDs so files overlap and chain often: 6 bytes per file (level, min, span, time).
    let Some((head, body)) = data.split_first_chunk::<3>() else {
        return;
    };
    let mut files = Vec::new();
    for c in body.chunks_exact(6) {
        let level = Level::new(c[0] % 10).unwrap();
        let min = u64::from(c[1] % 64) + 1;
        let max = min + u64::from(c[2] % 16);
        let (min, max) = if level == Level::SNAPSHOT {
            (1, max)
        } else {
            (min, max)
        };
        let created = UNIX_EPOCH + Duration::from_secs(u64::from(u16::from_be_bytes([c[3], c[4]])));
        files.push(LtxInfo {
            key: LtxKey::new(level, TxId::new(min).unwrap(), TxId::new(max).unwrap()),
            size_bytes: u64::from(c[5]),
            created,
        });
    }
    let target = match head[0] % 3 {
        0 => Target::Latest,
        1 => Target::TxId(TxId::new(u64::from(head[1] % 96) + 1).unwrap()),
        _ => Target::Timestamp(
            UNIX_EPOCH + Duration::from_secs(u64::from(u16::from_be_bytes([head[1], head[2]]))),
        ),
    };
    let listing = Listing::new(files.clone());
    let Ok(p) = plan(&listing, target) else {
        return;
    };
    assert!(!p.files.is_empty());
    assert_eq!(
        p.files[0].key.min.get(),
        1,
        "plan starts with a full database: {p:?}"
    );
    let mut cur = 0u64;
    for f in &p.files {
        assert!(files.contains(f), "file not from the listing: {f:?}");
        assert!(f.key.min.get() <= cur + 1, "gap before {f:?} in {p:?}");
        assert!(f.key.max.get() > cur, "file adds nothing: {f:?} in {p:?}");
        cur = f.key.max.get();
        if let Target::Timestamp(t) = target {
            assert!(f.created < t, "file created after the target: {f:?}");
        }
    }
    assert_eq!(cur, p.target_txid.get(), "plan ends at its target: {p:?}");
    if let Target::TxId(t) = target {
        assert_eq!(p.target_txid, t);
    }
});
