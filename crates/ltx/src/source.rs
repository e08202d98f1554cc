//! Reading bytes with their place in the file.
//!
//! Owns: the offset-tracking reader every decoding step reads through (so each error
//! names the byte offset where it happened) and the big-endian field reads of fixed-size
//! structures. Knows nothing of the LTX layout itself; the decoder, the payload
//! encodings and the header/index parsers build on it.

use std::io::{BufRead, Read};

use crate::error::DecodeError;

/// A reader that knows its absolute offset in the LTX file, so every error can
/// name it without requiring `Seek`.
pub(crate) struct Source<R> {
    r: R,
    offset: u64,
}

impl<R: Read> Source<R> {
    pub(crate) fn new(r: R, offset: u64) -> Source<R> {
        Source { r, offset }
    }

    pub(crate) fn offset(&self) -> u64 {
        self.offset
    }

    /// Fills `buf`; on failure the error names the offset where `buf` starts.
    pub(crate) fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), DecodeError> {
        self.r
            .read_exact(buf)
            .map_err(|e| DecodeError::io(self.offset, e))?;
        self.offset += buf.len() as u64;
        Ok(())
    }

    pub(crate) fn read_array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut b = [0u8; N];
        self.read_exact(&mut b)?;
        Ok(b)
    }

    /// Runs `f` over the next `n` bytes without copying them when the reader's own
    /// buffer already holds them all, and consumes them; `None` (nothing consumed) when
    /// it holds fewer, so the caller reads them the ordinary way.
    pub(crate) fn with_buffered<T>(
        &mut self,
        n: usize,
        f: impl FnOnce(&[u8]) -> T,
    ) -> Result<Option<T>, DecodeError>
    where
        R: BufRead,
    {
        let avail = self
            .r
            .fill_buf()
            .map_err(|e| DecodeError::io(self.offset, e))?;
        if avail.len() < n {
            return Ok(None);
        }
        let t = f(&avail[..n]);
        self.r.consume(n);
        self.offset += n as u64;
        Ok(Some(t))
    }

    /// Reads up to `limit` bytes, stopping early only at end of file.
    pub(crate) fn read_up_to(&mut self, limit: u64) -> Result<Vec<u8>, DecodeError> {
        let mut v = Vec::new();
        (&mut self.r)
            .take(limit)
            .read_to_end(&mut v)
            .map_err(|e| DecodeError::io(self.offset, e))?;
        self.offset += v.len() as u64;
        Ok(v)
    }
}

pub(crate) fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().expect("4-byte slice"))
}

pub(crate) fn be_u64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().expect("8-byte slice"))
}
