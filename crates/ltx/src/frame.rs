//! Decoding one page frame on its own, for readers that fetch single pages by byte range
//! (the VFS extension) instead of reading a file front to back.
//!
//! Owns: checking that a frame fetched from the offset and size a page index gave holds
//! the page that index names, with a payload that decompresses to exactly one page and
//! ends exactly at the frame's end. It does not verify the file checksum (only a whole
//! file read can: `Decoder`), nor fetch bytes.

use crate::error::DecodeError;
use crate::index::PageIndexEntry;
use crate::lz4::{
    decode_block, max_compressed_size, read_legacy_frame, PAGE_FLAG_SIZE, PAGE_HEADER_SIZE,
};
use crate::source::Source;

/// Decompresses the frame `frame` (the `entry.size` bytes at `entry.offset` of a file)
/// into `out` (one page). Fails unless the frame's page number is `entry.pgno`, its flags
/// are known, and its payload fills `out` exactly and uses every byte of the frame.
pub fn decode_page_frame(
    entry: &PageIndexEntry,
    frame: &[u8],
    out: &mut [u8],
) -> Result<(), DecodeError> {
    let at = entry.offset;
    if frame.len() as u64 != entry.size || frame.len() < PAGE_HEADER_SIZE {
        return Err(DecodeError::BadIndex {
            offset: at,
            reason: format!(
                "page {} frame is {} bytes, the index says {}",
                entry.pgno,
                frame.len(),
                entry.size
            ),
        });
    }
    let pgno = u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
    let flags = u16::from_be_bytes([frame[4], frame[5]]);
    if pgno != entry.pgno.get() {
        return Err(DecodeError::BadPageHeader {
            offset: at,
            reason: format!("frame holds page {pgno}, the index says {}", entry.pgno),
        });
    }
    if flags & !PAGE_FLAG_SIZE != 0 {
        return Err(DecodeError::BadPageHeader {
            offset: at,
            reason: format!("page {pgno} has unknown flags {flags:#06x}"),
        });
    }
    let payload = &frame[PAGE_HEADER_SIZE..];
    let payload_at = at + PAGE_HEADER_SIZE as u64;
    if flags & PAGE_FLAG_SIZE != 0 {
        if payload.len() < 4 {
            return Err(DecodeError::UnexpectedEof {
                offset: payload_at + payload.len() as u64,
            });
        }
        let csize = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]) as usize;
        if csize > max_compressed_size(out.len()) || csize != payload.len() - 4 {
            return Err(DecodeError::BadPageHeader {
                offset: payload_at,
                reason: format!(
                    "compressed size {csize} does not fill the {}-byte frame of page {pgno}",
                    payload.len() - 4
                ),
            });
        }
        return decode_block(&payload[4..], out, payload_at + 4);
    }
    let mut src = Source::new(payload, payload_at);
    let mut scratch = Vec::new();
    read_legacy_frame(&mut src, &mut scratch, out)?;
    if src.offset() != at + entry.size {
        return Err(DecodeError::TrailingData {
            offset: src.offset(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Encoder, Header, PageEncoding, PageNo, PageSize, TxId};

    /// One file with pages 1..=3, in `encoding`, and its index.
    fn file(encoding: PageEncoding) -> (Vec<u8>, Vec<PageIndexEntry>) {
        let ps = PageSize::new(4096).unwrap();
        let h = Header::new(ps, 3, TxId::ONE, TxId::ONE, 0);
        let mut out = Vec::new();
        let mut enc = Encoder::new(&mut out, &h, encoding).unwrap();
        for p in 1..=3u32 {
            enc.write_page(PageNo::new(p).unwrap(), &vec![p as u8; 4096])
                .unwrap();
        }
        enc.finish().unwrap();
        let idx = crate::parse_page_index(&out).unwrap();
        (out, idx)
    }

    #[test]
    fn decodes_each_frame_of_both_encodings_and_refuses_mismatches() {
        for encoding in [PageEncoding::Block, PageEncoding::LegacyFrame] {
            let (f, idx) = file(encoding);
            let mut page = vec![0u8; 4096];
            for e in &idx {
                let frame = &f[e.offset as usize..(e.offset + e.size) as usize];
                decode_page_frame(e, frame, &mut page).unwrap();
                assert!(page.iter().all(|&b| b == e.pgno.get() as u8));
            }
            // The index names another page than the frame holds.
            let e = idx[0];
            let frame = &f[idx[1].offset as usize..(idx[1].offset + idx[1].size) as usize];
            let wrong = PageIndexEntry {
                size: idx[1].size,
                ..e
            };
            assert!(decode_page_frame(&wrong, frame, &mut page).is_err());
            // A damaged byte in the payload.
            let mut bad = f[e.offset as usize..(e.offset + e.size) as usize].to_vec();
            let n = bad.len();
            bad[n - 2] ^= 0xff;
            assert!(decode_page_frame(&e, &bad, &mut page).is_err() || page != vec![1u8; 4096]);
            // A cut frame.
            let cut = &f[e.offset as usize..(e.offset + e.size - 1) as usize];
            assert!(decode_page_frame(&e, cut, &mut page).is_err());
        }
    }
}
