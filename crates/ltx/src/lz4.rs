//! Page payload encodings: how one page's bytes are stored after its 6-byte header.
//!
//! Owns: the two encodings Litestream uses, [`PageEncoding::Block`] (flags 0x0001,
//! u32 BE compressed size, one LZ4 block) and [`PageEncoding::LegacyFrame`]
//! (flags 0x0000, one self-delimiting LZ4 frame), and a frame parser that never
//! reads past the end of the frame. It does not hash, order or index pages: the
//! encoder and decoder do that.

use std::io::Read;

use lz4_flex::block::{
    compress_into, decompress_into, decompress_into_with_dict, get_maximum_output_size,
};
use lz4_flex::frame::{BlockMode, BlockSize, FrameEncoder, FrameInfo};

use crate::error::DecodeError;
use crate::source::Source;

/// Size of the page header: `pgno u32 | flags u16`.
pub(crate) const PAGE_HEADER_SIZE: usize = 6;
/// Page header flag: a u32 compressed size and an LZ4 block follow.
pub(crate) const PAGE_FLAG_SIZE: u16 = 0x0001;

/// How page payloads are written. Readers accept both.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PageEncoding {
    /// Flags 0x0001, u32 BE compressed size, one LZ4 block. Written by Litestream
    /// >= 0.5.16; rejected by Litestream 0.5.0-0.5.15.
    #[default]
    Block,
    /// Flags 0x0000, one complete standard LZ4 frame per page, no size prefix.
    /// Written by Litestream 0.5.0-0.5.15 and readable by every 0.5.x.
    LegacyFrame,
}

impl PageEncoding {
    /// The page header flags this encoding writes.
    pub fn page_flags(self) -> u16 {
        match self {
            PageEncoding::Block => PAGE_FLAG_SIZE,
            PageEncoding::LegacyFrame => 0,
        }
    }
}

/// Appends the payload of `page` (everything after the page header) to `out`.
pub(crate) fn encode_payload(
    encoding: PageEncoding,
    page: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), String> {
    match encoding {
        PageEncoding::Block => {
            let start = out.len();
            out.resize(start + 4 + get_maximum_output_size(page.len()), 0);
            let n = compress_into(page, &mut out[start + 4..]).map_err(|e| e.to_string())?;
            let csize =
                u32::try_from(n).map_err(|_| format!("compressed size {n} overflows u32"))?;
            out[start..start + 4].copy_from_slice(&csize.to_be_bytes());
            out.truncate(start + 4 + n);
            Ok(())
        }
        PageEncoding::LegacyFrame => {
            // Same shape as pierrec/lz4 v4's defaults that Litestream used: 64 KiB
            // blocks (a page is one block) and a content checksum.
            let info = FrameInfo::new()
                .block_size(BlockSize::Max64KB)
                .block_mode(BlockMode::Independent)
                .content_checksum(true);
            let mut enc = FrameEncoder::with_frame_info(info, out);
            std::io::Write::write_all(&mut enc, page).map_err(|e| e.to_string())?;
            enc.finish().map_err(|e| e.to_string())?;
            Ok(())
        }
    }
}

/// Decompresses one LZ4 block that must expand to exactly `out.len()` bytes.
/// `offset` is where the block starts in the file.
pub(crate) fn decode_block(
    compressed: &[u8],
    out: &mut [u8],
    offset: u64,
) -> Result<(), DecodeError> {
    let n = decompress_into(compressed, out).map_err(|e| DecodeError::BadCompression {
        offset,
        reason: format!("LZ4 block: {e}"),
    })?;
    if n != out.len() {
        return Err(DecodeError::BadCompression {
            offset,
            reason: format!(
                "LZ4 block decompressed to {n} bytes, the page size is {}",
                out.len()
            ),
        });
    }
    Ok(())
}

/// Largest compressed block we accept for `n` output bytes. Bounds memory on
/// corrupt input: no LZ4 encoder produces more than this for `n` bytes.
pub(crate) fn max_compressed_size(n: usize) -> usize {
    get_maximum_output_size(n)
}

/// Bytes a legacy LZ4 frame may take beyond [`max_compressed_size`] of its page: the
/// frame header (at most 19 bytes), the end mark and content checksum (8), and up to 16
/// blocks with their size word, block checksum and LZ4's own slack (24 each). Encoders
/// write one block per page; the allowance is generous, but it makes a frame's size,
/// and so an LTX file's, bounded by its header (see `Header::max_file_bytes`).
pub(crate) const LEGACY_FRAME_OVERHEAD: usize = 19 + 8 + 16 * 24;

/// Most bytes one page's payload may take after its 6-byte header, either encoding.
pub(crate) fn max_payload_size(page_bytes: usize) -> usize {
    max_compressed_size(page_bytes) + LEGACY_FRAME_OVERHEAD.max(4)
}

const FRAME_MAGIC: u32 = 0x184D_2204;

/// Reads one LZ4 frame from `src` and decompresses it into `out`, which it must
/// fill exactly. Reads exactly the frame's bytes and nothing after it. The
/// header, block and content checksums (xxHash32) are verified when present.
pub(crate) fn read_legacy_frame<R: Read>(
    src: &mut Source<R>,
    scratch: &mut Vec<u8>,
    out: &mut [u8],
) -> Result<(), DecodeError> {
    let start = src.offset();
    let frame = FrameDescriptor::read(src, out.len())?;
    let mut pos = 0usize;
    while let Some(n) = frame.read_block(src, scratch, out, pos, start)? {
        pos += n;
    }
    if pos != out.len() {
        return Err(bad(
            start,
            format!(
                "LZ4 frame decompressed to {pos} bytes, the page size is {}",
                out.len()
            ),
        ));
    }
    if frame.content_checksum {
        let at = src.offset();
        let stored = u32::from_le_bytes(src.read_array::<4>()?);
        let computed = xxh32(out);
        if stored != computed {
            return Err(bad(
                at,
                format!("LZ4 content checksum {stored:#010x}, computed {computed:#010x}"),
            ));
        }
    }
    Ok(())
}

fn bad(offset: u64, reason: String) -> DecodeError {
    DecodeError::BadCompression { offset, reason }
}

/// What a legacy frame's descriptor says about the blocks that follow.
struct FrameDescriptor {
    independent: bool,
    block_checksums: bool,
    content_checksum: bool,
    max_block: usize,
}

impl FrameDescriptor {
    /// Reads and checks the magic, FLG, BD, the optional content size (which must be
    /// `page_len`) and dictionary ID, and the header checksum.
    fn read<R: Read>(src: &mut Source<R>, page_len: usize) -> Result<Self, DecodeError> {
        let start = src.offset();
        let magic = u32::from_le_bytes(src.read_array::<4>()?);
        if magic != FRAME_MAGIC {
            return Err(bad(
                start,
                format!("LZ4 frame magic {magic:#010x}, expected {FRAME_MAGIC:#010x}"),
            ));
        }
        let [flg, bd] = src.read_array::<2>()?;
        // FLG through the dictionary ID, which the header checksum covers.
        let mut descriptor: Vec<u8> = vec![flg, bd];
        if flg >> 6 != 1 || flg & 0x02 != 0 {
            return Err(bad(
                start + 4,
                format!("unsupported LZ4 frame FLG byte {flg:#04x}"),
            ));
        }
        if bd & 0x8F != 0 {
            return Err(bad(
                start + 5,
                format!("unsupported LZ4 frame BD byte {bd:#04x}"),
            ));
        }
        let max_block = match (bd >> 4) & 0x7 {
            4 => 64 << 10,
            5 => 256 << 10,
            6 => 1 << 20,
            7 => 4 << 20,
            code => {
                return Err(bad(
                    start + 5,
                    format!("LZ4 frame block size code {code} is invalid"),
                ))
            }
        };
        if flg & 0x08 != 0 {
            let at = src.offset();
            let raw = src.read_array::<8>()?;
            descriptor.extend_from_slice(&raw);
            let size = u64::from_le_bytes(raw);
            if size != page_len as u64 {
                return Err(bad(
                    at,
                    format!("LZ4 frame content size {size}, the page size is {page_len}"),
                ));
            }
        }
        if flg & 0x01 != 0 {
            // A frame that really needs a dictionary fails below with an
            // out-of-range match offset; the ID itself is only skipped.
            descriptor.extend_from_slice(&src.read_array::<4>()?);
        }
        let hc_at = src.offset();
        let [hc] = src.read_array::<1>()?;
        let want_hc = (xxh32(&descriptor) >> 8) as u8;
        if hc != want_hc {
            return Err(bad(
                hc_at,
                format!("LZ4 frame header checksum {hc:#04x}, computed {want_hc:#04x}"),
            ));
        }
        Ok(FrameDescriptor {
            independent: flg & 0x20 != 0,
            block_checksums: flg & 0x10 != 0,
            content_checksum: flg & 0x04 != 0,
            max_block,
        })
    }

    /// Reads the next block of the frame that started at `start` into `out[pos..]`:
    /// the bytes it added, or `None` at the end mark.
    fn read_block<R: Read>(
        &self,
        src: &mut Source<R>,
        scratch: &mut Vec<u8>,
        out: &mut [u8],
        pos: usize,
        start: u64,
    ) -> Result<Option<usize>, DecodeError> {
        let at = src.offset();
        let word = u32::from_le_bytes(src.read_array::<4>()?);
        if word == 0 {
            return Ok(None);
        }
        let stored = word & 0x8000_0000 != 0;
        let len = (word & 0x7FFF_FFFF) as usize;
        self.check_block_len(at, len, out.len(), pos, start)?;
        let remaining = out.len() - pos;
        let (n, block_hash) = if stored {
            if len > remaining {
                return Err(bad(
                    at,
                    format!(
                        "stored LZ4 block of {len} bytes overflows the page ({remaining} left)"
                    ),
                ));
            }
            src.read_exact(&mut out[pos..pos + len])?;
            (len, self.hash_if_checked(&out[pos..pos + len]))
        } else {
            if len > max_compressed_size(remaining) {
                return Err(bad(at, format!("LZ4 block of {len} bytes cannot fit the {remaining} bytes left of the page")));
            }
            scratch.resize(len, 0);
            src.read_exact(scratch)?;
            let hash = self.hash_if_checked(scratch);
            let (prev, rest) = out.split_at_mut(pos);
            let result = if self.independent || pos == 0 {
                decompress_into(scratch, rest)
            } else {
                // Linked blocks may refer back into the previous 64 KiB of output.
                decompress_into_with_dict(
                    scratch,
                    rest,
                    &prev[prev.len().saturating_sub(64 << 10)..],
                )
            };
            let n = result.map_err(|e| bad(at + 4, format!("LZ4 frame block: {e}")))?;
            (n, hash)
        };
        if self.block_checksums {
            let at = src.offset();
            let stored = u32::from_le_bytes(src.read_array::<4>()?);
            if stored != block_hash {
                return Err(bad(
                    at,
                    format!("LZ4 block checksum {stored:#010x}, computed {block_hash:#010x}"),
                ));
            }
        }
        Ok(Some(n))
    }

    /// A block of `len` bytes at `at` must add something to a page not yet full, keep
    /// the frame within what a page may take, and fit the frame's block size.
    fn check_block_len(
        &self,
        at: u64,
        len: usize,
        page_len: usize,
        pos: usize,
        start: u64,
    ) -> Result<(), DecodeError> {
        let remaining = page_len - pos;
        // A block that adds nothing (or a page already full) would let a frame grow
        // without bound while decoding to one page; no encoder writes one.
        if remaining == 0 || len == 0 {
            return Err(bad(
                at,
                format!("LZ4 frame block of {len} bytes with {remaining} bytes of the page left"),
            ));
        }
        if at + 4 + len as u64 > start + max_payload_size(page_len) as u64 {
            return Err(bad(
                at,
                format!(
                    "LZ4 frame is longer than the {} bytes a {page_len}-byte page may take",
                    max_payload_size(page_len),
                ),
            ));
        }
        if len > self.max_block {
            return Err(bad(
                at,
                format!(
                    "LZ4 frame block of {len} bytes exceeds the frame's {}-byte blocks",
                    self.max_block
                ),
            ));
        }
        Ok(())
    }

    fn hash_if_checked(&self, block: &[u8]) -> u32 {
        if self.block_checksums {
            xxh32(block)
        } else {
            0
        }
    }
}

/// xxHash32 with seed 0, the checksum LZ4 frames use. Verifying it lets a
/// corrupt legacy frame fail at the frame, not only at the file checksum.
fn xxh32(data: &[u8]) -> u32 {
    const P1: u32 = 2_654_435_761;
    const P2: u32 = 2_246_822_519;
    const P3: u32 = 3_266_489_917;
    const P4: u32 = 668_265_263;
    const P5: u32 = 374_761_393;
    fn round(acc: u32, lane: u32) -> u32 {
        acc.wrapping_add(lane.wrapping_mul(P2))
            .rotate_left(13)
            .wrapping_mul(P1)
    }
    let word = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);

    let mut rest = data;
    let mut h = if data.len() >= 16 {
        let mut v = [P1.wrapping_add(P2), P2, 0, 0u32.wrapping_sub(P1)];
        while rest.len() >= 16 {
            for (i, acc) in v.iter_mut().enumerate() {
                *acc = round(*acc, word(&rest[i * 4..]));
            }
            rest = &rest[16..];
        }
        v[0].rotate_left(1)
            .wrapping_add(v[1].rotate_left(7))
            .wrapping_add(v[2].rotate_left(12))
            .wrapping_add(v[3].rotate_left(18))
    } else {
        P5
    };
    h = h.wrapping_add(data.len() as u32);
    while rest.len() >= 4 {
        h = h
            .wrapping_add(word(rest).wrapping_mul(P3))
            .rotate_left(17)
            .wrapping_mul(P4);
        rest = &rest[4..];
    }
    for &b in rest {
        h = h
            .wrapping_add(u32::from(b).wrapping_mul(P5))
            .rotate_left(11)
            .wrapping_mul(P1);
    }
    h ^= h >> 15;
    h = h.wrapping_mul(P2);
    h ^= h >> 13;
    h = h.wrapping_mul(P3);
    h ^= h >> 16;
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xxh32_known_answers() {
        assert_eq!(xxh32(b""), 0x02CC_5D05);
        assert_eq!(xxh32(b"a"), 0x550D_7456);
        assert_eq!(xxh32(b"abc"), 0x32D1_53FF);
        assert_eq!(
            xxh32(b"Nobody inspects the spammish repetition"),
            0xE229_3B2F
        );
    }

    fn pages() -> Vec<Vec<u8>> {
        let mut noisy = vec![0u8; 4096];
        let mut x: u32 = 12345;
        for b in noisy.iter_mut() {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            *b = (x >> 16) as u8;
        }
        vec![
            vec![0u8; 512],
            (0..4096u32).map(|i| (i % 7) as u8).collect(),
            noisy,
            vec![9u8; 65536],
        ]
    }

    fn decode_frame(bytes: &[u8], page_size: usize) -> Result<(Vec<u8>, u64), DecodeError> {
        let mut src = Source::new(bytes, 0);
        let mut out = vec![0u8; page_size];
        read_legacy_frame(&mut src, &mut Vec::new(), &mut out)?;
        Ok((out, src.offset()))
    }

    #[test]
    fn block_round_trip() {
        for p in pages() {
            let mut out = Vec::new();
            encode_payload(PageEncoding::Block, &p, &mut out).unwrap();
            let csize = u32::from_be_bytes(out[..4].try_into().unwrap()) as usize;
            assert_eq!(csize, out.len() - 4);
            let mut back = vec![0u8; p.len()];
            decode_block(&out[4..], &mut back, 0).unwrap();
            assert_eq!(back, p);
            let mut short = vec![0u8; p.len() - 1];
            assert!(decode_block(&out[4..], &mut short, 0).is_err());
            let mut long = vec![0u8; p.len() + 1];
            assert!(decode_block(&out[4..], &mut long, 0).is_err());
        }
    }

    #[test]
    fn frame_round_trip_reads_exactly_the_frame() {
        for p in pages() {
            let mut out = Vec::new();
            encode_payload(PageEncoding::LegacyFrame, &p, &mut out).unwrap();
            let frame_len = out.len() as u64;
            out.extend_from_slice(b"after the frame");
            let (back, end) = decode_frame(&out, p.len()).unwrap();
            assert_eq!(back, p);
            assert_eq!(end, frame_len);
            assert!(decode_frame(&out, p.len() * 2).is_err());
        }
    }

    /// A hand-built frame like a minimal writer would make: content size and
    /// block checksums present, one stored (uncompressed) block, no content checksum.
    #[test]
    fn frame_with_optional_fields_and_stored_block() {
        let page: Vec<u8> = (0..512u32).map(|i| i as u8).collect();
        let mut f = FRAME_MAGIC.to_le_bytes().to_vec();
        f.push(0b0111_1000); // version 01, independent, block checksums, content size
        f.push(0x40); // 64 KiB blocks
        f.extend_from_slice(&512u64.to_le_bytes());
        f.push((xxh32(&f[4..]) >> 8) as u8);
        f.extend_from_slice(&(512u32 | 0x8000_0000).to_le_bytes());
        f.extend_from_slice(&page);
        f.extend_from_slice(&xxh32(&page).to_le_bytes());
        f.extend_from_slice(&0u32.to_le_bytes());
        let (back, end) = decode_frame(&f, 512).unwrap();
        assert_eq!(back, page);
        assert_eq!(end, f.len() as u64);

        assert!(
            decode_frame(&f, 1024).is_err(),
            "content size differs from the page size"
        );
        for at in [14, 20, f.len() - 6] {
            let mut corrupt = f.clone();
            corrupt[at] ^= 0x10;
            assert!(
                decode_frame(&corrupt, 512).is_err(),
                "flip at {at} (header, stored data, block checksum)"
            );
        }
        assert!(matches!(
            decode_frame(&f[..f.len() - 2], 512),
            Err(DecodeError::UnexpectedEof { .. })
        ));
        let mut bad_magic = f.clone();
        bad_magic[0] ^= 1;
        assert!(matches!(
            decode_frame(&bad_magic, 512),
            Err(DecodeError::BadCompression { offset: 0, .. })
        ));
    }
}
