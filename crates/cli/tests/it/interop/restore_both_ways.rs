//! Each program restores a history the other wrote (see `history`), on file and Garage
//! replicas: latest, past TXID and past timestamp, page for page.

use super::history::{check_restores, on_file_and_garage, write_history};
use super::programs::Program;

/// Issue 6, test 1: Litestream 0.5.17 restores what we wrote.
#[test]
fn litestream_restores_our_history() {
    let ls = Program::litestream_0517();
    on_file_and_garage(|w, dest| {
        let h = write_history(w, dest, &Program::Ours, "");
        check_restores(w, &ls, &h, dest);
    });
}

/// Issue 6, test 2: we restore what Litestream 0.5.17 wrote.
#[test]
fn we_restore_litestreams_history() {
    let ls = Program::litestream_0517();
    on_file_and_garage(|w, dest| {
        let h = write_history(w, dest, &ls, "");
        check_restores(w, &Program::Ours, &h, dest);
    });
}

/// Issue 6, test 4: with `page-encoding: legacy` every file we write (L0, compactions,
/// snapshots) uses one LZ4 frame per page, which Litestream 0.5.0-0.5.15 require; 0.5.15
/// restores them.
#[test]
fn litestream_0515_restores_our_legacy_encoding() {
    let old = Program::litestream_0515();
    on_file_and_garage(|w, dest| {
        let h = write_history(w, dest, &Program::Ours, "      page-encoding: legacy\n");
        let files = dest.list_all(false);
        assert!(files.len() > 3, "{files:?}");
        for f in &files {
            // The first page frame's header follows the 100-byte file header.
            let b = dest.get(f, Some(0..106));
            let pgno = u32::from_be_bytes(b[100..104].try_into().unwrap());
            let flags = u16::from_be_bytes(b[104..106].try_into().unwrap());
            assert!(
                pgno == 0 || flags == 0,
                "{} on {}: page flags {flags:#x}, not the legacy frame encoding",
                f.key,
                dest.name
            );
        }
        check_restores(w, &old, &h, dest);
    });
}
