//! Size bounds a reader can trust before it reads a file: every file the encoder writes
//! fits [`ltx::max_file_bytes`] of its header, and a legacy frame that would grow past the
//! bound (empty blocks, endless blocks) is refused where it goes wrong.

mod common;

use common::*;
use ltx::{DecodeError, Decoder, Header, PageEncoding};

#[test]
fn encoded_files_fit_their_headers_bound() {
    for ps in [512u32, 4096, 65536] {
        for encoding in [PageEncoding::Block, PageEncoding::LegacyFrame] {
            for commit in [1u32, 3, 9] {
                let h = Header::new(page_size(ps), commit, txid(1), txid(1), 0);
                let pages: Vec<_> = (1..=commit)
                    .map(|n| (n, make_page(ps as usize, Fill::Noise(n.into())), encoding))
                    .collect();
                let (file, _) = encode(&h, &pages);
                let bound = h.max_file_bytes();
                assert!(
                    file.len() as u64 <= bound,
                    "{ps}-byte pages, {encoding:?}, {commit} pages: {} > {bound}",
                    file.len()
                );
                assert!(file.len() as u64 >= u64::from(commit) * ltx::MIN_PAGE_BYTES);
            }
        }
    }
    let any = ltx::max_any_file_bytes();
    assert!(any > 1 << 47 && any < 1 << 50, "{any}");
}

/// A page written as a legacy frame of 1-byte blocks that each add nothing would make a
/// file grow without bound while still decoding to one page: refused at the block.
#[test]
fn legacy_frame_that_does_not_progress_is_refused() {
    let h = Header::new(page_size(512), 1, txid(1), txid(1), 0);
    let (good, _) = encode(
        &h,
        &[(1, make_page(512, Fill::Zeros), PageEncoding::LegacyFrame)],
    );
    // Page frame at 100: pgno u32, flags u16, then the LZ4 frame: magic, FLG, BD, HC.
    let frame_at = 100 + 6;
    let descriptor_end = frame_at + 7;
    let flg = good[frame_at + 4];
    assert_eq!(flg & 0x08, 0, "no content size in the encoder's frames");
    // Insert a stored block of 0 bytes before the real first block.
    let mut bad = good.clone();
    bad.splice(descriptor_end..descriptor_end, 0x8000_0000u32.to_le_bytes());
    let mut dec = Decoder::new(&bad[..]).unwrap();
    let mut buf = vec![0u8; 512];
    match dec.next_page(&mut buf) {
        Err(DecodeError::BadCompression { offset, reason }) => {
            assert_eq!(offset, descriptor_end as u64);
            assert!(reason.contains("block of 0 bytes"), "{reason}");
        }
        other => panic!("want BadCompression, got {other:?}"),
    }
}
