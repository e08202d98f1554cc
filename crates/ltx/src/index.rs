//! The page index that follows the page frames.
//!
//! Owns: the index byte layout (uvarint pgno, absolute offset, frame size per page;
//! a uvarint 0 terminator; then a big-endian u64 with the byte length of the
//! varints) and parsing it from the tail of a file for ranged page reads. It does not
//! fetch bytes: callers hand it the tail they read.

use crate::error::DecodeError;
use crate::header::TRAILER_SIZE;
use crate::source::be_u64;
use crate::types::PageNo;

/// Where one page frame sits in an LTX file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageIndexEntry {
    pub pgno: PageNo,
    /// Absolute offset of the 6-byte page header.
    pub offset: u64,
    /// Bytes of the whole frame: page header, size field if any, and compressed payload.
    pub size: u64,
}

/// Bytes after the varints: the u64 index size and the trailer.
pub(crate) const INDEX_FOOTER_SIZE: usize = 8 + TRAILER_SIZE;

/// Longest uvarint we accept (a u64 needs at most 10 bytes).
const MAX_VARINT_LEN: usize = 10;

/// Upper bound on the encoded size of one index entry.
pub(crate) const MAX_ENTRY_LEN: usize = 5 + MAX_VARINT_LEN + MAX_VARINT_LEN;

pub(crate) fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Decodes a uvarint at the start of `b`: `Ok(Some((value, len)))`, `Ok(None)` when
/// `b` ends inside the varint, `Err(())` on a varint longer than a u64.
fn get_uvarint(b: &[u8]) -> Result<Option<(u64, usize)>, ()> {
    let mut v: u64 = 0;
    for (i, &byte) in b.iter().enumerate().take(MAX_VARINT_LEN) {
        if i == MAX_VARINT_LEN - 1 && byte > 1 {
            return Err(());
        }
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            return Ok(Some((v, i + 1)));
        }
    }
    if b.len() >= MAX_VARINT_LEN {
        Err(())
    } else {
        Ok(None)
    }
}

/// The page index of a file being written or read, in page order, in 8 bytes a page:
/// frames follow one another with no gap, so an entry's offset is the previous one's plus
/// its size and only (page number, frame size) are kept. An 8 GiB database of 4 KiB pages
/// takes 16 MiB here, not the 48 MiB of whole entries (issue 27: snapshots of big
/// databases in bounded memory).
#[derive(Debug, Default)]
pub(crate) struct Frames {
    first_offset: u64,
    next_offset: u64,
    pages: Vec<(u32, u32)>,
}

impl Frames {
    pub(crate) fn len(&self) -> usize {
        self.pages.len()
    }

    pub(crate) fn last_pgno(&self) -> Option<PageNo> {
        self.pages.last().and_then(|&(p, _)| PageNo::new(p).ok())
    }

    /// Adds the next frame, which starts where the previous one ended.
    pub(crate) fn push(&mut self, e: PageIndexEntry) {
        if self.pages.is_empty() {
            self.first_offset = e.offset;
        }
        debug_assert!(
            self.pages.is_empty() || e.offset == self.next_offset,
            "frames are contiguous"
        );
        // A frame is one page (at most 64 KiB) plus its headers, or its LZ4 worst case.
        let size = u32::try_from(e.size).expect("a frame is far below 4 GiB");
        self.next_offset = e.offset + e.size;
        self.pages.push((e.pgno.get(), size));
    }

    /// The entries, in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = PageIndexEntry> + '_ {
        let mut offset = self.first_offset;
        self.pages.iter().map(move |&(p, size)| {
            let e = PageIndexEntry {
                pgno: PageNo::new(p).expect("stored from a PageNo"),
                offset,
                size: u64::from(size),
            };
            offset += u64::from(size);
            e
        })
    }
}

/// Appends the varint entries and the 0 terminator (not the u64 size).
#[cfg(test)]
pub(crate) fn encode_entries(entries: impl IntoIterator<Item = PageIndexEntry>, out: &mut Vec<u8>) {
    for e in entries {
        put_entry(out, e);
    }
    out.push(0);
}

/// Appends one entry's varints.
pub(crate) fn put_entry(out: &mut Vec<u8>, e: PageIndexEntry) {
    put_uvarint(out, u64::from(e.pgno.get()));
    put_uvarint(out, e.offset);
    put_uvarint(out, e.size);
}

/// Parses varint entries from the start of `b` up to and including the 0
/// terminator. `base` is the absolute offset of `b[0]`, for error messages.
/// Returns the entries and the number of bytes consumed.
pub(crate) fn parse_entries(
    b: &[u8],
    base: u64,
) -> Result<(Vec<PageIndexEntry>, usize), DecodeError> {
    let mut entries = Vec::new();
    let (_, used) = visit_entries(b, base, |e| entries.push(e))?;
    Ok((entries, used))
}

/// [`parse_entries`] handing each entry to `f` as it is parsed instead of collecting
/// them (a decoder compares them with the pages it read, in bounded memory). Returns the
/// number of entries and of bytes consumed.
pub(crate) fn visit_entries(
    b: &[u8],
    base: u64,
    mut f: impl FnMut(PageIndexEntry),
) -> Result<(usize, usize), DecodeError> {
    let mut pos = 0usize;
    let mut count = 0usize;
    let mut prev: Option<PageNo> = None;
    let next = |pos: &mut usize, what: &str| -> Result<u64, DecodeError> {
        let at = base + *pos as u64;
        match get_uvarint(&b[*pos..]) {
            Ok(Some((v, n))) => {
                *pos += n;
                Ok(v)
            }
            // The caller knows whether running out of bytes means truncation.
            Ok(None) => Err(DecodeError::UnexpectedEof {
                offset: base + b.len() as u64,
            }),
            Err(()) => Err(DecodeError::BadIndex {
                offset: at,
                reason: format!("{what} varint overflows u64"),
            }),
        }
    };
    loop {
        let at = base + pos as u64;
        let pgno = next(&mut pos, "page number")?;
        if pgno == 0 {
            return Ok((count, pos));
        }
        let pgno = u32::try_from(pgno)
            .ok()
            .and_then(|p| PageNo::new(p).ok())
            .ok_or_else(|| DecodeError::BadIndex {
                offset: at,
                reason: format!("page number {pgno} out of range"),
            })?;
        if let Some(prev) = prev {
            if pgno <= prev {
                return Err(DecodeError::BadIndex {
                    offset: at,
                    reason: format!("page {pgno} is not above the previous entry {prev}"),
                });
            }
        }
        let offset = next(&mut pos, "page offset")?;
        let size = next(&mut pos, "frame size")?;
        prev = Some(pgno);
        count += 1;
        f(PageIndexEntry { pgno, offset, size });
    }
}

/// Parses the page index from the last bytes of an LTX file. `tail` must end at
/// the end of the file and include the whole index, the u64 index size and the
/// trailer (Litestream readers fetch the last 32 KiB). Error offsets are relative
/// to the start of `tail`. The file checksum is not verified here.
pub fn parse_page_index(tail: &[u8]) -> Result<Vec<PageIndexEntry>, DecodeError> {
    if tail.len() < INDEX_FOOTER_SIZE + 1 {
        return Err(DecodeError::BadIndex {
            offset: 0,
            reason: format!(
                "tail is {} bytes, need at least {}",
                tail.len(),
                INDEX_FOOTER_SIZE + 1
            ),
        });
    }
    let size_at = tail.len() - INDEX_FOOTER_SIZE;
    let size = be_u64(tail, size_at);
    if size == 0 || size > size_at as u64 {
        return Err(DecodeError::BadIndex {
            offset: size_at as u64,
            reason: format!("index size {size} does not fit in the {size_at} bytes before it"),
        });
    }
    let start = size_at - size as usize;
    let (entries, used) =
        parse_entries(&tail[start..size_at], start as u64).map_err(|e| match e {
            DecodeError::UnexpectedEof { offset } => DecodeError::BadIndex {
                offset,
                reason: format!("no terminator within the {size}-byte index"),
            },
            e => e,
        })?;
    if used != size as usize {
        return Err(DecodeError::BadIndex {
            offset: (start + used) as u64,
            reason: format!("index terminator after {used} bytes, index size says {size}"),
        });
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(pgno: u32, offset: u64, size: u64) -> PageIndexEntry {
        PageIndexEntry {
            pgno: PageNo::new(pgno).unwrap(),
            offset,
            size,
        }
    }

    #[test]
    fn reference_index_bytes() {
        // Section 2.9: pgno 5 at offset 100, frame size 340.
        let mut b = Vec::new();
        encode_entries([entry(5, 100, 340)], &mut b);
        assert_eq!(b, [0x05, 0x64, 0xd4, 0x02, 0x00]);
        b.extend_from_slice(&(b.len() as u64).to_be_bytes());
        assert_eq!(b[5..], [0, 0, 0, 0, 0, 0, 0, 5]);
        b.extend_from_slice(&[0u8; 8]);
        b.extend_from_slice(&0xf3eb_c244_d302_03d0u64.to_be_bytes());
        assert_eq!(parse_page_index(&b).unwrap(), vec![entry(5, 100, 340)]);
        // A longer tail (page bytes before the index) parses the same.
        let mut longer = vec![0xAA; 50];
        longer.extend_from_slice(&b);
        assert_eq!(parse_page_index(&longer).unwrap(), vec![entry(5, 100, 340)]);
    }

    #[test]
    fn varint_round_trip() {
        for v in [0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let mut b = Vec::new();
            put_uvarint(&mut b, v);
            assert_eq!(get_uvarint(&b), Ok(Some((v, b.len()))));
            assert_eq!(get_uvarint(&b[..b.len() - 1]), Ok(None));
        }
        assert_eq!(get_uvarint(&[0xff; 10]), Err(()));
        assert_eq!(
            get_uvarint(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]),
            Err(())
        );
    }

    #[test]
    fn rejects_bad_tails() {
        let mut good = Vec::new();
        encode_entries([entry(1, 100, 20), entry(3, 120, 30)], &mut good);
        let n = good.len() as u64;
        good.extend_from_slice(&n.to_be_bytes());
        good.extend_from_slice(&[0u8; 16]);
        assert_eq!(parse_page_index(&good).unwrap().len(), 2);

        assert!(
            parse_page_index(&good[1..]).is_err(),
            "index cut at the front"
        );
        assert!(
            parse_page_index(&good[..good.len() - 1]).is_err(),
            "trailer cut"
        );
        let mut unsorted = Vec::new();
        encode_entries([entry(3, 100, 20), entry(1, 120, 30)], &mut unsorted);
        let n = unsorted.len() as u64;
        unsorted.extend_from_slice(&n.to_be_bytes());
        unsorted.extend_from_slice(&[0u8; 16]);
        assert!(matches!(
            parse_page_index(&unsorted),
            Err(DecodeError::BadIndex { .. })
        ));
        let mut wrong_size = good.clone();
        let at = wrong_size.len() - INDEX_FOOTER_SIZE;
        wrong_size[at..at + 8].copy_from_slice(&(n - 1).to_be_bytes());
        assert!(parse_page_index(&wrong_size).is_err());
    }
}
