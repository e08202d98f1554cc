//! Streaming LTX reader.
//!
//! Owns: reading a file front to back with bounded memory (one compressed page
//! plus the page index), checking the page rules, decompressing both page
//! encodings (even mixed in one file), checking that the page index matches the
//! pages seen, and verifying the file checksum and the absence of trailing data.
//! It does not apply pages to a database or decide what to do with a bad file.

use std::io::{BufRead, Read};

use crate::checksum::Crc64Hasher;
use crate::error::DecodeError;
use crate::header::{Header, Trailer, HEADER_SIZE};
use crate::index::{visit_entries, Frames, PageIndexEntry, INDEX_FOOTER_SIZE, MAX_ENTRY_LEN};
use crate::lz4::{
    decode_block, max_compressed_size, read_legacy_frame, PAGE_FLAG_SIZE, PAGE_HEADER_SIZE,
};
use crate::source::{be_u64, Source};
use crate::types::PageNo;

/// How `read_page` gets one LZ4 block of `csize` bytes (at offset `at`) into a page.
type BlockReader<R> =
    fn(&mut Source<R>, &mut Vec<u8>, usize, &mut [u8], u64) -> Result<(), DecodeError>;

/// Copies the block into `scratch`, then decompresses it.
fn copy_block<R: Read>(
    src: &mut Source<R>,
    scratch: &mut Vec<u8>,
    csize: usize,
    buf: &mut [u8],
    at: u64,
) -> Result<(), DecodeError> {
    scratch.resize(csize, 0);
    src.read_exact(scratch)?;
    decode_block(scratch, buf, at)
}

/// Decompresses the block straight from the reader's buffer when it holds it whole;
/// otherwise as [`copy_block`].
fn borrow_block<R: BufRead>(
    src: &mut Source<R>,
    scratch: &mut Vec<u8>,
    csize: usize,
    buf: &mut [u8],
    at: u64,
) -> Result<(), DecodeError> {
    match src.with_buffered(csize, |block| decode_block(block, buf, at))? {
        Some(decoded) => decoded,
        None => copy_block(src, scratch, csize, buf, at),
    }
}

/// Reads one LTX file from `R`. Call [`Decoder::next_page`] until it returns
/// `Ok(None)`, then [`Decoder::finish`] to verify the index and checksum. Pages
/// are only trustworthy once `finish` succeeds. After any error the decoder is
/// unusable and further calls return [`DecodeError::Poisoned`].
pub struct Decoder<R: Read> {
    src: Source<R>,
    header: Header,
    hasher: Crc64Hasher,
    /// The frames read so far (8 bytes a page), checked against the index at the end.
    seen: Frames,
    /// Compressed bytes of the current page (bounded by the LZ4 worst case).
    scratch: Vec<u8>,
    pages_done: bool,
    poisoned: bool,
}

impl<R: Read> Decoder<R> {
    /// Reads and validates the header.
    pub fn new(r: R) -> Result<Decoder<R>, DecodeError> {
        let mut src = Source::new(r, 0);
        let bytes = src.read_array::<HEADER_SIZE>()?;
        let header = Header::from_bytes(&bytes)?;
        let mut hasher = Crc64Hasher::new();
        hasher.update(&bytes);
        Ok(Decoder {
            src,
            header,
            hasher,
            seen: Frames::default(),
            scratch: Vec::new(),
            pages_done: false,
            poisoned: false,
        })
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Bytes consumed so far.
    pub fn offset(&self) -> u64 {
        self.src.offset()
    }

    /// Decompresses the next page into `buf` and returns its number, or `Ok(None)`
    /// at the end of the pages.
    ///
    /// # Panics
    /// If `buf.len()` is not the header's page size.
    pub fn next_page(&mut self, buf: &mut [u8]) -> Result<Option<PageNo>, DecodeError> {
        self.page_with(buf, copy_block::<R>)
    }

    /// The checks around one page read, whichever way its block is read: the buffer
    /// is one page, a failed decoder stays failed, nothing after the last page.
    fn page_with(
        &mut self,
        buf: &mut [u8],
        read_block: BlockReader<R>,
    ) -> Result<Option<PageNo>, DecodeError> {
        assert_eq!(
            buf.len(),
            self.header.page_size.bytes(),
            "next_page buffer must be one page"
        );
        if self.poisoned {
            return Err(DecodeError::Poisoned {
                offset: self.src.offset(),
            });
        }
        if self.pages_done {
            return Ok(None);
        }
        let result = self.read_page(buf, read_block);
        if result.is_err() {
            self.poisoned = true;
        }
        result
    }

    /// Reads and decompresses one page; `read_block` gets the LZ4 block of `csize`
    /// bytes that starts at `at` into `buf`.
    fn read_page(
        &mut self,
        buf: &mut [u8],
        read_block: BlockReader<R>,
    ) -> Result<Option<PageNo>, DecodeError> {
        let start = self.src.offset();
        let ph = self.src.read_array::<PAGE_HEADER_SIZE>()?;
        let pgno = u32::from_be_bytes([ph[0], ph[1], ph[2], ph[3]]);
        let flags = u16::from_be_bytes([ph[4], ph[5]]);
        self.hasher.update(&ph);
        let Ok(pgno) = PageNo::new(pgno) else {
            if flags != 0 {
                return Err(DecodeError::BadPageHeader {
                    offset: start,
                    reason: format!("end-of-pages marker has flags {flags:#06x}"),
                });
            }
            self.pages_done = true;
            return Ok(None);
        };
        if flags & !PAGE_FLAG_SIZE != 0 {
            return Err(DecodeError::BadPageHeader {
                offset: start,
                reason: format!("page {pgno} has unknown flags {flags:#06x}"),
            });
        }
        if let Some(prev) = self.seen.last_pgno() {
            if pgno <= prev {
                return Err(DecodeError::PageOrder {
                    offset: start,
                    prev: prev.get(),
                    pgno: pgno.get(),
                });
            }
        }
        if pgno.get() > self.header.commit {
            return Err(DecodeError::PageBeyondCommit {
                offset: start,
                pgno: pgno.get(),
                commit: self.header.commit,
            });
        }

        if flags & PAGE_FLAG_SIZE != 0 {
            let size_at = self.src.offset();
            let size_field = self.src.read_array::<4>()?;
            let csize = u32::from_be_bytes(size_field) as usize;
            if csize > max_compressed_size(buf.len()) {
                return Err(DecodeError::BadPageHeader {
                    offset: size_at,
                    reason: format!(
                        "compressed size {csize} is too large for a {}-byte page",
                        buf.len()
                    ),
                });
            }
            self.hasher.update(&size_field);
            read_block(&mut self.src, &mut self.scratch, csize, buf, size_at + 4)?;
        } else {
            read_legacy_frame(&mut self.src, &mut self.scratch, buf)?;
        }
        self.hasher.update(buf);
        self.seen.push(PageIndexEntry {
            pgno,
            offset: start,
            size: self.src.offset() - start,
        });
        Ok(Some(pgno))
    }

    /// [`Decoder::next_page`] for a reader with its own buffer (`BufRead`): an LZ4
    /// block the buffer already holds whole is decompressed straight from it instead
    /// of being copied out first. Same checks, same errors, same result.
    ///
    /// # Panics
    /// If `buf.len()` is not the header's page size.
    pub fn next_page_buffered(&mut self, buf: &mut [u8]) -> Result<Option<PageNo>, DecodeError>
    where
        R: BufRead,
    {
        self.page_with(buf, borrow_block::<R>)
    }

    /// Skips any unread pages (still checking and hashing them), then reads and
    /// checks the page index, the trailer and the file checksum, and makes sure
    /// nothing follows the trailer.
    pub fn finish(mut self) -> Result<Trailer, DecodeError> {
        if self.poisoned {
            return Err(DecodeError::Poisoned {
                offset: self.src.offset(),
            });
        }
        if !self.pages_done {
            let mut buf = vec![0u8; self.header.page_size.bytes()];
            while self.next_page(&mut buf)?.is_some() {}
        }

        let index_start = self.src.offset();
        // The index is bounded by what the pages seen allow, so corrupt input cannot
        // make us buffer more; one extra byte detects trailing data.
        let limit = (self.seen.len() * MAX_ENTRY_LEN + 10 + INDEX_FOOTER_SIZE + 1) as u64;
        let tail = self.src.read_up_to(limit)?;
        let end = index_start + tail.len() as u64;

        // Compared entry by entry as the index is parsed, never collected: the first
        // difference is reported once the whole index parsed and its count matched.
        let mut want = self.seen.iter();
        let mut first_difference = None;
        let mut i = 0usize;
        let visited = visit_entries(&tail, index_start, |got| {
            let differs = want.next().filter(|w| *w != got);
            if let Some(want) = differs.filter(|_| first_difference.is_none()) {
                first_difference = Some(DecodeError::BadIndex {
                    offset: index_start,
                    reason: format!(
                        "entry {i} is page {} at {} size {}, but the pages have page {} at {} size {}",
                        got.pgno, got.offset, got.size, want.pgno, want.offset, want.size
                    ),
                });
            }
            i += 1;
        });
        let (count, used) = visited.map_err(|e| match e {
            DecodeError::UnexpectedEof { offset } if tail.len() as u64 == limit => {
                DecodeError::BadIndex {
                    offset,
                    reason: format!("index is longer than {} pages allow", self.seen.len()),
                }
            }
            e => e,
        })?;
        if count != self.seen.len() {
            return Err(DecodeError::BadIndex {
                offset: index_start,
                reason: format!(
                    "index lists {} pages, the file has {}",
                    count,
                    self.seen.len()
                ),
            });
        }
        if let Some(e) = first_difference {
            return Err(e);
        }
        if tail.len() < used + INDEX_FOOTER_SIZE {
            return Err(DecodeError::UnexpectedEof { offset: end });
        }
        let size = be_u64(&tail, used);
        if size != used as u64 {
            return Err(DecodeError::BadIndex {
                offset: index_start + used as u64,
                reason: format!("index size field says {size}, the index is {used} bytes"),
            });
        }
        let trailer_at = used + 8;
        self.hasher.update(&tail[..trailer_at + 8]);
        let trailer = Trailer::from_slice(&tail[trailer_at..trailer_at + 16]);
        if self.header.no_checksum() && trailer.post_apply_checksum != 0 {
            return Err(DecodeError::BadTrailer {
                offset: index_start + trailer_at as u64,
                reason: format!(
                    "post-apply checksum {:#018x} is not allowed with the NoChecksum flag",
                    trailer.post_apply_checksum
                ),
            });
        }
        let computed = self.hasher.ltx_value();
        if trailer.file_checksum != computed {
            return Err(DecodeError::ChecksumMismatch {
                offset: index_start + trailer_at as u64 + 8,
                stored: trailer.file_checksum,
                computed,
            });
        }
        if tail.len() > trailer_at + 16 {
            return Err(DecodeError::TrailingData {
                offset: index_start + trailer_at as u64 + 16,
            });
        }
        Ok(trailer)
    }
}
