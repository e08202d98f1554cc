//! Byte-level tests of whole LTX files: hand-built files, checksums, corruption,
//! page rules.

mod common;

use common::*;
use ltx::{
    crc64_iso, parse_page_index, DecodeError, Decoder, EncodeError, Encoder, Header, PageEncoding,
    HEADER_SIZE, TRAILER_SIZE,
};

fn header(ps: u32, commit: u32, min: u64, max: u64) -> Header {
    Header::new(
        page_size(ps),
        commit,
        txid(min),
        txid(max),
        1_700_000_000_000,
    )
}

/// Builds a file by hand, with a literal-only LZ4 block page and a legacy frame
/// page holding one stored block, and an independently computed checksum.
#[test]
fn hand_built_file_decodes_and_checksum_verifies() {
    let h = header(512, 4, 3, 3);
    let page2 = make_page(512, Fill::Noise(2));
    let page4 = make_page(512, Fill::Pattern(4));
    let mut file = h.to_bytes().to_vec();
    let mut hashed = file.clone();

    // Page 2: block encoding. One LZ4 sequence of 512 literals: token 0xF0, then
    // the literal length 512 - 15 = 255 + 242.
    let mut block = vec![0xF0, 255, 242];
    block.extend_from_slice(&page2);
    let off2 = file.len() as u64;
    let mut ph = vec![0, 0, 0, 2, 0, 1];
    ph.extend_from_slice(&(block.len() as u32).to_be_bytes());
    file.extend_from_slice(&ph);
    file.extend_from_slice(&block);
    hashed.extend_from_slice(&ph);
    hashed.extend_from_slice(&page2);
    let size2 = file.len() as u64 - off2;

    // Page 4: legacy frame, no optional fields, one stored block, no checksums.
    // Header checksum byte = second byte of xxh32(FLG BD) = xxh32([0x60, 0x40]).
    let off4 = file.len() as u64;
    let ph = [0, 0, 0, 4, 0, 0];
    file.extend_from_slice(&ph);
    hashed.extend_from_slice(&ph);
    file.extend_from_slice(&[0x04, 0x22, 0x4D, 0x18, 0x60, 0x40, 0x82]);
    file.extend_from_slice(&(512u32 | 0x8000_0000).to_le_bytes());
    file.extend_from_slice(&page4);
    file.extend_from_slice(&[0, 0, 0, 0]);
    hashed.extend_from_slice(&page4);
    let size4 = file.len() as u64 - off4;

    let mut tail = vec![0u8; 6];
    let mut index = Vec::new();
    for (n, off, size) in [(2u64, off2, size2), (4, off4, size4)] {
        for mut v in [n, off, size] {
            while v >= 0x80 {
                index.push(v as u8 | 0x80);
                v >>= 7;
            }
            index.push(v as u8);
        }
    }
    index.push(0);
    tail.extend_from_slice(&index);
    tail.extend_from_slice(&(index.len() as u64).to_be_bytes());
    tail.extend_from_slice(&[0u8; 8]);
    hashed.extend_from_slice(&tail);
    let checksum = crc64_iso(&hashed) | 1 << 63;
    tail.extend_from_slice(&checksum.to_be_bytes());
    file.extend_from_slice(&tail);

    let (got_h, pages, trailer) = decode_all(&file).unwrap();
    assert_eq!(got_h, h);
    assert_eq!(pages, vec![(2, page2.clone()), (4, page4.clone())]);
    assert_eq!(trailer.file_checksum, checksum);
    assert_eq!(trailer.post_apply_checksum, 0);
    let idx = parse_page_index(&file[file.len() - 40..]).unwrap();
    assert_eq!(
        idx.iter()
            .map(|e| (e.pgno.get(), e.offset, e.size))
            .collect::<Vec<_>>(),
        vec![(2, off2, size2), (4, off4, size4)]
    );

    // Our encoder's output, checked the same independent way.
    let (enc_file, t) = encode(
        &h,
        &[
            (2, page2, PageEncoding::Block),
            (4, page4, PageEncoding::LegacyFrame),
        ],
    );
    assert_eq!(t.file_checksum, independent_checksum(&enc_file));
    assert_eq!(
        u64::from_be_bytes(enc_file[enc_file.len() - 8..].try_into().unwrap()),
        t.file_checksum
    );

    let mut bad = file.clone();
    let n = bad.len();
    bad[n - 1] ^= 1;
    let e = decode_all(&bad).unwrap_err();
    assert!(matches!(e, DecodeError::ChecksumMismatch { .. }), "{e}");
    assert_eq!(e.offset(), n as u64 - 8);
    assert!(
        e.to_string()
            .starts_with(&format!("at byte {}: file checksum mismatch", n - 8)),
        "{e}"
    );
}

/// Recomputes a file's checksum from its bytes and decoded pages without the
/// decoder's hashing: header, page headers and size fields, uncompressed pages,
/// then everything from the terminator to the post-apply checksum.
fn independent_checksum(file: &[u8]) -> u64 {
    let (_, pages, _) = decode_all(file).unwrap();
    let idx = parse_page_index(file).unwrap();
    let mut hashed = file[..HEADER_SIZE].to_vec();
    for (e, (n, data)) in idx.iter().zip(&pages) {
        assert_eq!(e.pgno.get(), *n);
        let at = e.offset as usize;
        let prefix = if file[at + 5] & 1 == 1 { 10 } else { 6 };
        hashed.extend_from_slice(&file[at..at + prefix]);
        hashed.extend_from_slice(data);
    }
    let last = idx
        .last()
        .map_or(HEADER_SIZE, |e| (e.offset + e.size) as usize);
    hashed.extend_from_slice(&file[last..file.len() - 8]);
    crc64_iso(&hashed) | 1 << 63
}

/// A file with incompressible pages in both encodings, a compressible page, and an
/// all-zero page.
fn sample_file() -> Vec<u8> {
    let pages = vec![
        (1, make_page(1024, Fill::Noise(1)), PageEncoding::Block),
        (
            2,
            make_page(1024, Fill::Noise(2)),
            PageEncoding::LegacyFrame,
        ),
        (5, make_page(1024, Fill::Pattern(7)), PageEncoding::Block),
        (6, make_page(1024, Fill::Zeros), PageEncoding::LegacyFrame),
    ];
    let mut h = header(1024, 6, 10, 12);
    h.wal_offset = 32;
    h.wal_size = 4096;
    h.wal_salt1 = 1;
    h.wal_salt2 = 2;
    encode(&h, &pages).0
}

#[test]
fn every_single_byte_flip_is_detected() {
    let file = sample_file();
    let (_, original, _) = decode_all(&file).unwrap();
    assert_eq!(
        independent_checksum(&file),
        decode_all(&file).unwrap().2.file_checksum
    );
    // Compressed LZ4 block bytes: after the page header and size field of block
    // pages; inside legacy frames, between the 7-byte frame header plus 4-byte
    // block size and the EndMark plus content checksum.
    let block_payloads: Vec<(u64, u64)> = parse_page_index(&file)
        .unwrap()
        .iter()
        .map(|e| match file[e.offset as usize + 5] {
            1 => (e.offset + 10, e.offset + e.size),
            _ => (e.offset + 6 + 11, e.offset + e.size - 8),
        })
        .collect();
    for at in 0..file.len() {
        for mask in [0xFFu8, 0x01, 0x80] {
            let mut bad = file.clone();
            bad[at] ^= mask;
            match decode_all(&bad) {
                Err(e) => assert!(e.offset() <= file.len() as u64, "flip {at}: {e}"),
                // The only bytes a flip may leave unnoticed are ones LZ4 ignores,
                // such as the match-length nibble of a block's last sequence; the
                // pages must then be unchanged, and the file checksum proves it.
                Ok((_, pages, _)) => {
                    assert_eq!(
                        pages, original,
                        "flip at {at} mask {mask:#x} decoded to different pages"
                    );
                    let in_block = block_payloads
                        .iter()
                        .any(|&(a, b)| (a..b).contains(&(at as u64)));
                    assert!(
                        in_block,
                        "flip at {at} mask {mask:#x} outside an LZ4 block went unnoticed"
                    );
                }
            }
        }
    }
}

#[test]
fn corruption_offsets_are_sensible() {
    let file = sample_file();
    let idx = parse_page_index(&file).unwrap();
    let index_len =
        u64::from_be_bytes(file[file.len() - 24..file.len() - 16].try_into().unwrap()) as usize;
    let index_start = file.len() - 24 - index_len;

    let flip = |at: usize| {
        let mut b = file.clone();
        b[at] ^= 0xFF;
        decode_all(&b).unwrap_err()
    };
    // Header: the magic.
    assert!(matches!(flip(1), DecodeError::BadMagic { offset: 0, .. }));
    // Header: the commit field is only caught by the checksum (or a page beyond it).
    let e = flip(15);
    assert!(
        matches!(
            e,
            DecodeError::ChecksumMismatch { .. } | DecodeError::PageBeyondCommit { .. }
        ),
        "{e}"
    );
    // Page payload of an incompressible block page: within or after that page.
    let p1 = idx[0];
    let e = flip((p1.offset + p1.size / 2) as usize);
    assert!(e.offset() >= p1.offset, "{e}");
    // A page header's pgno.
    let p5 = idx[2];
    let e = flip(p5.offset as usize + 3);
    assert!(e.offset() >= p5.offset, "{e}");
    // The page index.
    let e = flip(index_start + 1);
    assert!(matches!(e, DecodeError::BadIndex { .. }), "{e}");
    assert!(e.offset() >= index_start as u64, "{e}");
    // The trailer's post-apply checksum.
    let e = flip(file.len() - 12);
    assert!(matches!(e, DecodeError::BadTrailer { .. }), "{e}");
    assert_eq!(e.offset(), (file.len() - TRAILER_SIZE) as u64);
    // Trailing data and truncation.
    let mut longer = file.clone();
    longer.push(0);
    assert!(
        matches!(decode_all(&longer), Err(DecodeError::TrailingData { offset }) if offset == file.len() as u64)
    );
    for cut in [
        0,
        50,
        HEADER_SIZE,
        HEADER_SIZE + 3,
        index_start - 2,
        index_start + 1,
        file.len() - 1,
    ] {
        let e = decode_all(&file[..cut]).unwrap_err();
        assert!(
            matches!(e, DecodeError::UnexpectedEof { .. }),
            "cut at {cut}: {e}"
        );
        assert!(e.offset() <= cut as u64, "cut at {cut}: {e}");
    }
}

#[test]
fn finish_without_reading_pages_still_verifies() {
    let file = sample_file();
    let mut r = file.as_slice();
    let mut dec = Decoder::new(&mut r).unwrap();
    let mut buf = vec![0u8; 1024];
    assert_eq!(dec.next_page(&mut buf).unwrap().unwrap().get(), 1);
    let t = dec.finish().unwrap();
    assert_eq!(t, decode_all(&file).unwrap().2);
    assert!(r.is_empty(), "the decoder consumed the whole file");

    let mut bad = file.clone();
    let idx = parse_page_index(&file).unwrap();
    bad[(idx[1].offset + idx[1].size - 20) as usize] ^= 0x55; // inside page 2's stored block
    assert!(Decoder::new(bad.as_slice()).unwrap().finish().is_err());
}

#[test]
fn index_matches_pages_and_tail_parse() {
    let file = sample_file();
    let mut r = file.as_slice();
    let mut dec = Decoder::new(&mut r).unwrap();
    let mut buf = vec![0u8; 1024];
    let mut offsets = vec![dec.offset()];
    while dec.next_page(&mut buf).unwrap().is_some() {
        offsets.push(dec.offset());
    }
    let idx = parse_page_index(&file).unwrap();
    assert_eq!(
        idx.iter().map(|e| e.pgno.get()).collect::<Vec<_>>(),
        vec![1, 2, 5, 6]
    );
    for (i, e) in idx.iter().enumerate() {
        assert_eq!(e.offset, offsets[i]);
        assert_eq!(e.offset + e.size, offsets[i + 1]);
    }
    // The first page starts right after the header.
    assert_eq!(idx[0].offset, HEADER_SIZE as u64);
    // Frames are self-contained: decoding a frame cut out by the index works.
    let p2 = idx[1];
    assert_eq!(
        &file[p2.offset as usize..p2.offset as usize + 6],
        &[0, 0, 0, 2, 0, 0]
    );
}

#[test]
fn index_inconsistent_with_pages_is_rejected() {
    // Rewrite the index of a valid file to claim a different frame size, and fix
    // up the checksum, so only the consistency check can catch it.
    let file = sample_file();
    let index_len =
        u64::from_be_bytes(file[file.len() - 24..file.len() - 16].try_into().unwrap()) as usize;
    let index_start = file.len() - 24 - index_len;
    let (_, pages, _) = decode_all(&file).unwrap();
    let mut hashed = file[..HEADER_SIZE].to_vec();
    for e in parse_page_index(&file).unwrap() {
        let flags = file[e.offset as usize + 5];
        let hdr = if flags == 1 { 10 } else { 6 };
        hashed.extend_from_slice(&file[e.offset as usize..e.offset as usize + hdr]);
        hashed.extend_from_slice(&pages.iter().find(|p| p.0 == e.pgno.get()).unwrap().1);
    }
    let mut bad = file.clone();
    // The first entry is pgno 1, offset 100 (one byte each), then the frame size varint.
    assert_eq!(&bad[index_start..index_start + 2], &[1, 100]);
    bad[index_start + 2] ^= 0x01;
    hashed.extend_from_slice(&bad[index_start - 6..bad.len() - 8]);
    let ck = crc64_iso(&hashed) | 1 << 63;
    let n = bad.len();
    bad[n - 8..].copy_from_slice(&ck.to_be_bytes());
    let e = decode_all(&bad).unwrap_err();
    assert!(matches!(e, DecodeError::BadIndex { .. }), "{e}");
    // Sanity: the untouched file with a recomputed checksum is accepted.
    let mut hashed_ok = hashed.clone();
    let tail_start = hashed.len() - (bad.len() - 8 - (index_start - 6));
    hashed_ok.truncate(tail_start);
    hashed_ok.extend_from_slice(&file[index_start - 6..file.len() - 8]);
    assert_eq!(
        crc64_iso(&hashed_ok) | 1 << 63,
        decode_all(&file).unwrap().2.file_checksum
    );
}

#[test]
fn encoder_page_rules() {
    let ps = 512;
    let data = make_page(ps, Fill::Zeros);
    let mut enc = Encoder::new(Vec::new(), &header(512, 10, 5, 5), PageEncoding::Block).unwrap();
    assert!(matches!(
        enc.write_page(pgno(1), &data[..100]),
        Err(EncodeError::WrongPageSize { .. })
    ));
    assert!(matches!(
        enc.write_page(pgno(11), &data),
        Err(EncodeError::PageBeyondCommit {
            pgno: 11,
            commit: 10
        })
    ));
    enc.write_page(pgno(3), &data).unwrap();
    assert!(matches!(
        enc.write_page(pgno(3), &data),
        Err(EncodeError::PageOrder { prev: 3, pgno: 3 })
    ));
    assert!(matches!(
        enc.write_page(pgno(2), &data),
        Err(EncodeError::PageOrder { .. })
    ));
    enc.write_page(pgno(10), &data).unwrap();
    let (bytes, _) = enc.finish().unwrap();
    assert_eq!(decode_all(&bytes).unwrap().1.len(), 2);

    let mut bad = header(512, 10, 5, 4);
    assert!(matches!(
        Encoder::new(Vec::new(), &bad, PageEncoding::Block),
        Err(EncodeError::BadHeader(_))
    ));
    bad = header(512, 10, 5, 5);
    bad.wal_salt1 = 1;
    assert!(matches!(
        Encoder::new(Vec::new(), &bad, PageEncoding::Block),
        Err(EncodeError::BadHeader(_))
    ));
}

#[test]
fn lock_page_is_never_encoded() {
    // 512-byte pages: lock page 0x40000000/512 + 1 = 2097153.
    let lock = 2_097_153;
    assert_eq!(page_size(512).lock_page().get(), lock);
    let data = make_page(512, Fill::Zeros);
    let mut enc = Encoder::new(
        Vec::new(),
        &header(512, lock + 1, 7, 7),
        PageEncoding::Block,
    )
    .unwrap();
    assert!(
        matches!(enc.write_page(pgno(lock), &data), Err(EncodeError::LockPage { pgno }) if pgno == lock)
    );
    enc.write_page(pgno(lock + 1), &data).unwrap();
    let (bytes, _) = enc.finish().unwrap();
    assert_eq!(decode_all(&bytes).unwrap().1, vec![(lock + 1, data)]);
}

#[test]
fn snapshot_must_hold_every_page() {
    let data = make_page(512, Fill::Pattern(3));
    let h = header(512, 3, 1, 4);
    let (bytes, _) = encode(
        &h,
        &[
            (1, data.clone(), PageEncoding::Block),
            (2, data.clone(), PageEncoding::Block),
            (3, data.clone(), PageEncoding::Block),
        ],
    );
    assert!(decode_all(&bytes).unwrap().0.is_snapshot());

    let mut enc = Encoder::new(Vec::new(), &h, PageEncoding::Block).unwrap();
    enc.write_page(pgno(1), &data).unwrap();
    enc.write_page(pgno(3), &data).unwrap();
    assert!(matches!(
        enc.finish(),
        Err(EncodeError::IncompleteSnapshot {
            missing: 1,
            commit: 3
        })
    ));

    // An empty database snapshot (commit 0) has no pages.
    let (bytes, _) = encode(&header(512, 0, 1, 1), &[]);
    assert!(decode_all(&bytes).unwrap().1.is_empty());
}

/// A real snapshot that crosses the lock page: 64 KiB pages, commit 16386, so
/// 16385 pages of 64 KiB (1 GiB) go through LZ4 and CRC (the codec is built optimised
/// in test profiles for this; see the workspace Cargo.toml).
#[test]
fn snapshot_across_lock_page() {
    let ps = page_size(65536);
    let lock = ps.lock_page().get();
    assert_eq!(lock, 16_385);
    let commit = lock + 1;
    let zeros = vec![0u8; 65536];
    let mut enc = Encoder::new(
        Vec::new(),
        &header(65536, commit, 1, 1),
        PageEncoding::Block,
    )
    .unwrap();
    for n in (1..=commit).filter(|&n| n != lock) {
        enc.write_page(pgno(n), &zeros).unwrap();
    }
    let (bytes, _) = enc.finish().unwrap();
    let mut r = bytes.as_slice();
    let mut dec = Decoder::new(&mut r).unwrap();
    let mut buf = vec![0u8; 65536];
    let mut count = 0;
    while let Some(n) = dec.next_page(&mut buf).unwrap() {
        assert_ne!(n.get(), lock);
        count += 1;
    }
    dec.finish().unwrap();
    assert_eq!(count, commit - 1);
}

#[test]
fn decoder_rejects_page_rule_violations() {
    // Build files with raw frames that break the rules, with valid checksums.
    fn raw_file(h: &Header, frames: &[(u32, u16)]) -> Vec<u8> {
        let page = vec![0u8; h.page_size.bytes()];
        let mut f = h.to_bytes().to_vec();
        for &(n, flags) in frames {
            f.extend_from_slice(&n.to_be_bytes());
            f.extend_from_slice(&flags.to_be_bytes());
            let block = lz4_block_of(&page);
            f.extend_from_slice(&(block.len() as u32).to_be_bytes());
            f.extend_from_slice(&block);
        }
        f.extend_from_slice(&[0u8; 6]);
        f
    }
    fn lz4_block_of(page: &[u8]) -> Vec<u8> {
        // Literal-only block.
        let mut b = vec![0xF0];
        let mut rest = page.len() - 15;
        while rest >= 255 {
            b.push(255);
            rest -= 255;
        }
        b.push(rest as u8);
        b.extend_from_slice(page);
        b
    }
    let h = header(512, 5, 2, 2);
    let first_page_at = HEADER_SIZE as u64;
    let e = decode_all(&raw_file(&h, &[(3, 1), (3, 1)])).unwrap_err();
    assert!(
        matches!(
            e,
            DecodeError::PageOrder {
                prev: 3,
                pgno: 3,
                ..
            }
        ),
        "{e}"
    );
    let e = decode_all(&raw_file(&h, &[(6, 1)])).unwrap_err();
    assert!(
        matches!(e, DecodeError::PageBeyondCommit { offset, pgno: 6, commit: 5 } if offset == first_page_at)
    );
    let e = decode_all(&raw_file(&h, &[(2, 3)])).unwrap_err();
    assert!(
        matches!(e, DecodeError::BadPageHeader { offset, .. } if offset == first_page_at),
        "{e}"
    );
    // A block that expands to less than a page.
    let mut f = h.to_bytes().to_vec();
    f.extend_from_slice(&[0, 0, 0, 1, 0, 1]);
    let block = lz4_block_of(&[7u8; 100]);
    f.extend_from_slice(&(block.len() as u32).to_be_bytes());
    f.extend_from_slice(&block);
    let e = decode_all(&f).unwrap_err();
    assert!(matches!(e, DecodeError::BadCompression { .. }), "{e}");
    // A nonzero flag on the end-of-pages marker.
    let mut f = h.to_bytes().to_vec();
    f.extend_from_slice(&[0, 0, 0, 0, 0, 1]);
    assert!(matches!(
        decode_all(&f).unwrap_err(),
        DecodeError::BadPageHeader { .. }
    ));
    // Error display always names the offset.
    assert!(e.to_string().starts_with("at byte "), "{e}");
}

#[test]
fn writer_failure_poisons_the_encoder() {
    /// Accepts `room` bytes, then fails.
    struct Failing {
        room: usize,
    }
    impl std::io::Write for Failing {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            if self.room == 0 {
                return Err(std::io::Error::other("disk full"));
            }
            let n = b.len().min(self.room);
            self.room -= n;
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let data = make_page(512, Fill::Noise(5));
    let mut enc = Encoder::new(
        Failing { room: 300 },
        &header(512, 3, 2, 2),
        PageEncoding::Block,
    )
    .unwrap();
    enc.write_page(pgno(1), &data).unwrap_err();
    let e = enc.write_page(pgno(2), &data).unwrap_err();
    assert!(matches!(e, EncodeError::Poisoned), "{e}");
    assert!(matches!(enc.finish(), Err(EncodeError::Poisoned)));
    let e = Encoder::new(
        Failing { room: 10 },
        &header(512, 3, 2, 2),
        PageEncoding::Block,
    )
    .err()
    .unwrap();
    assert!(matches!(e, EncodeError::Io { offset: 0, .. }), "{e}");
}

/// Decodes through `next_page_buffered` over a `BufReader` of `capacity` bytes, so LZ4
/// blocks sometimes lie whole in the buffer (decoded in place) and sometimes straddle
/// its end (copied out), with errors rendered for comparison.
fn decode_buffered(bytes: &[u8], capacity: usize) -> Result<Decoded, String> {
    let r = std::io::BufReader::with_capacity(capacity, bytes);
    let mut dec = Decoder::new(r).map_err(|e| e.to_string())?;
    let header = dec.header().clone();
    let mut buf = vec![0u8; header.page_size.bytes()];
    let mut pages = Vec::new();
    while let Some(n) = dec
        .next_page_buffered(&mut buf)
        .map_err(|e| e.to_string())?
    {
        pages.push((n.get(), buf.clone()));
    }
    let trailer = dec.finish().map_err(|e| e.to_string())?;
    Ok((header, pages, trailer))
}

#[test]
fn buffered_decoding_matches_plain_decoding() {
    let file = sample_file();
    let plain = |b: &[u8]| decode_all(b).map_err(|e| e.to_string());
    for capacity in [1, 7, 100, 1030, 1 << 16] {
        assert_eq!(
            decode_buffered(&file, capacity),
            plain(&file),
            "cap {capacity}"
        );
        // Same pages, or the same error at the same offset, for every flip and cut.
        for at in 0..file.len() {
            let mut bad = file.clone();
            bad[at] ^= 0x41;
            assert_eq!(
                decode_buffered(&bad, capacity),
                plain(&bad),
                "cap {capacity} flip {at}"
            );
            assert_eq!(
                decode_buffered(&file[..at], capacity),
                plain(&file[..at]),
                "cap {capacity} cut {at}"
            );
        }
    }
}
