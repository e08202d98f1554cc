//! Streaming LTX writer.
//!
//! Owns: writing header, page frames, terminator, page index and trailer in order,
//! enforcing the page rules (ascending, within commit, no lock page, complete
//! snapshots) and computing the file checksum. Only the page index is kept in
//! memory, never the pages. It does not choose header values, file names or
//! which pages to write.

use std::io::Write;

use crate::checksum::Crc64Hasher;
use crate::error::EncodeError;
use crate::header::{Header, Trailer};
use crate::index::{put_entry, Frames, PageIndexEntry};
use crate::lz4::{encode_payload, PageEncoding, PAGE_HEADER_SIZE};
use crate::types::PageNo;

/// Index entries encoded and written at a time by [`Encoder::finish`].
const INDEX_PIECE_ENTRIES: usize = 4096;

/// Writes one LTX file to `W`. Call [`Encoder::write_page`] for each page in
/// ascending order, then [`Encoder::finish`]; dropping the encoder without
/// finishing leaves an incomplete file.
pub struct Encoder<W: Write> {
    w: W,
    header: Header,
    encoding: PageEncoding,
    offset: u64,
    hasher: Crc64Hasher,
    index: Frames,
    /// Reused buffer for one frame (page header + payload).
    frame: Vec<u8>,
    poisoned: bool,
}

impl<W: Write> Encoder<W> {
    /// Validates `header` and writes it.
    pub fn new(w: W, header: &Header, encoding: PageEncoding) -> Result<Encoder<W>, EncodeError> {
        header.validate()?;
        let mut enc = Encoder {
            w,
            header: header.clone(),
            encoding,
            offset: 0,
            hasher: Crc64Hasher::new(),
            index: Frames::default(),
            frame: Vec::new(),
            poisoned: false,
        };
        let bytes = header.to_bytes();
        enc.hasher.update(&bytes);
        enc.write(&bytes)?;
        Ok(enc)
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Bytes written so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Pages written so far.
    pub fn page_count(&self) -> usize {
        self.index.len()
    }

    fn write(&mut self, b: &[u8]) -> Result<(), EncodeError> {
        if let Err(source) = self.w.write_all(b) {
            // The writer may have taken part of `b`; the file is unusable now.
            self.poisoned = true;
            return Err(EncodeError::Io {
                offset: self.offset,
                source,
            });
        }
        self.offset += b.len() as u64;
        Ok(())
    }

    /// Changes the payload encoding for the following pages. Readers accept files
    /// that mix both encodings.
    pub fn set_encoding(&mut self, encoding: PageEncoding) {
        self.encoding = encoding;
    }

    /// Compresses and writes one page. `data` must be exactly one page.
    pub fn write_page(&mut self, pgno: PageNo, data: &[u8]) -> Result<(), EncodeError> {
        if self.poisoned {
            return Err(EncodeError::Poisoned);
        }
        let page_size = self.header.page_size;
        if data.len() != page_size.bytes() {
            return Err(EncodeError::WrongPageSize {
                pgno: pgno.get(),
                expected: page_size.get(),
                got: data.len(),
            });
        }
        if let Some(prev) = self.index.last_pgno() {
            if pgno <= prev {
                return Err(EncodeError::PageOrder {
                    prev: prev.get(),
                    pgno: pgno.get(),
                });
            }
        }
        if pgno.get() > self.header.commit {
            return Err(EncodeError::PageBeyondCommit {
                pgno: pgno.get(),
                commit: self.header.commit,
            });
        }
        if pgno.is_lock_page(page_size) {
            return Err(EncodeError::LockPage { pgno: pgno.get() });
        }

        let flags = self.encoding.page_flags();
        let mut frame = std::mem::take(&mut self.frame);
        frame.clear();
        frame.extend_from_slice(&pgno.get().to_be_bytes());
        frame.extend_from_slice(&flags.to_be_bytes());
        encode_payload(self.encoding, data, &mut frame).map_err(|reason| {
            EncodeError::Compression {
                pgno: pgno.get(),
                reason,
            }
        })?;

        // The checksum covers the page header, the size field if present, and the
        // uncompressed page, not the compressed bytes.
        let hashed_prefix = match self.encoding {
            PageEncoding::Block => PAGE_HEADER_SIZE + 4,
            PageEncoding::LegacyFrame => PAGE_HEADER_SIZE,
        };
        self.hasher.update(&frame[..hashed_prefix]);
        self.hasher.update(data);

        let entry = PageIndexEntry {
            pgno,
            offset: self.offset,
            size: frame.len() as u64,
        };
        let result = self.write(&frame);
        self.frame = frame;
        result?;
        self.index.push(entry);
        Ok(())
    }

    /// Writes the terminator, page index and trailer, flushes, and returns the
    /// writer and the trailer. For a snapshot header, fails unless every page
    /// `1..=commit` except the lock page was written.
    pub fn finish(mut self) -> Result<(W, Trailer), EncodeError> {
        if self.poisoned {
            return Err(EncodeError::Poisoned);
        }
        if self.header.is_snapshot() {
            let commit = self.header.commit;
            let expected = self.header.page_size.snapshot_page_count(commit);
            // Pages are unique, ascending, <= commit and never the lock page, so
            // the count alone proves completeness.
            let written = self.index.len() as u32;
            if written != expected {
                return Err(EncodeError::IncompleteSnapshot {
                    missing: expected - written,
                    commit,
                });
            }
        }

        // The terminator frame, then the index, written in pieces of about 64 KiB: an
        // 8 GiB database's index is some 14 MiB, not to be held twice (issue 27).
        let mut tail = vec![0u8; PAGE_HEADER_SIZE];
        let mut index_len = 0u64;
        let index = std::mem::take(&mut self.index);
        let mut entries = index.iter().peekable();
        while entries.peek().is_some() {
            let start = tail.len();
            for e in entries.by_ref().take(INDEX_PIECE_ENTRIES) {
                put_entry(&mut tail, e);
            }
            index_len += (tail.len() - start) as u64;
            self.hasher.update(&tail);
            let piece = std::mem::take(&mut tail);
            self.write(&piece)?;
        }
        tail.push(0);
        index_len += 1;
        tail.extend_from_slice(&index_len.to_be_bytes());
        tail.extend_from_slice(&0u64.to_be_bytes()); // post-apply checksum: never written
        self.hasher.update(&tail);
        let trailer = Trailer {
            post_apply_checksum: 0,
            file_checksum: self.hasher.ltx_value(),
        };
        tail.extend_from_slice(&trailer.file_checksum.to_be_bytes());
        self.write(&tail)?;
        let offset = self.offset;
        self.w
            .flush()
            .map_err(|source| EncodeError::Io { offset, source })?;
        Ok((self.w, trailer))
    }
}
