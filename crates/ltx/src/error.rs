//! Errors of the format crate.
//!
//! Owns: every error type the crate returns. Decoding errors carry the byte offset
//! where the problem was found, so a corrupt replica file can be pinpointed. This
//! module does not decide what a caller should do about an error (retry, skip a
//! file, resnapshot): that is policy and lives in `engine`.

use std::io;

use thiserror::Error;

/// A value outside what a validated newtype accepts.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum TypeError {
    #[error("TXID 0 is not valid (TXIDs start at 1)")]
    ZeroTxId,
    #[error("TXID counter overflow")]
    TxIdOverflow,
    #[error("TXID {0:?} is not 16 hex digits")]
    BadTxIdSpelling(String),
    #[error("page size {0} is not a power of two from 512 to 65536")]
    BadPageSize(u32),
    #[error("page number 0 is not valid (pages start at 1)")]
    ZeroPageNo,
    #[error("level {0} is out of range 0..=9")]
    BadLevel(u8),
}

/// Why a header is invalid (shared by the encoder, which refuses to write it, and
/// the decoder, which refuses to read it).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum HeaderError {
    #[error("header is {0} bytes, need 100")]
    TooShort(usize),
    #[error("flags {0:#010x} have bits other than NoChecksum (0x2)")]
    BadFlags(u32),
    #[error("page size {0} is not a power of two from 512 to 65536")]
    BadPageSize(u32),
    #[error("min TXID is 0")]
    ZeroMinTxId,
    #[error("max TXID is 0")]
    ZeroMaxTxId,
    #[error("max TXID {max:#x} is below min TXID {min:#x}")]
    MaxBelowMin { min: u64, max: u64 },
    #[error("WAL salts are set but the WAL offset is 0")]
    SaltsWithoutWalOffset,
    #[error("WAL size {0} is set but the WAL offset is 0")]
    WalSizeWithoutOffset(u64),
    #[error("pre-apply checksum {0:#018x} is not allowed with the NoChecksum flag")]
    PreApplyWithNoChecksum(u64),
    #[error("pre-apply checksum {0:#018x} is not allowed on a snapshot (min TXID 1)")]
    PreApplyOnSnapshot(u64),
}

/// A file could not be decoded. Every variant records the absolute byte offset
/// (from the start of the LTX file) where the problem was found.
#[derive(Debug, Error)]
pub enum DecodeError {
    #[error("at byte {offset}: I/O error: {source}")]
    Io {
        offset: u64,
        #[source]
        source: io::Error,
    },
    #[error("at byte {offset}: unexpected end of file")]
    UnexpectedEof { offset: u64 },
    #[error("at byte {offset}: bad magic {found:02x?}, expected \"LTX1\"{}", if found == b"age-" { " (the file is age-encrypted: configure the replica's age identity)" } else { "" })]
    BadMagic { offset: u64, found: [u8; 4] },
    #[error("at byte {offset}: bad header: {reason}")]
    BadHeader { offset: u64, reason: HeaderError },
    #[error("at byte {offset}: bad page header: {reason}")]
    BadPageHeader { offset: u64, reason: String },
    #[error("at byte {offset}: page {pgno} is not above the previous page {prev}")]
    PageOrder { offset: u64, prev: u32, pgno: u32 },
    #[error("at byte {offset}: page {pgno} is beyond the commit size {commit}")]
    PageBeyondCommit { offset: u64, pgno: u32, commit: u32 },
    #[error("at byte {offset}: bad page compression: {reason}")]
    BadCompression { offset: u64, reason: String },
    #[error("at byte {offset}: file checksum mismatch: stored {stored:#018x}, computed {computed:#018x}")]
    ChecksumMismatch {
        offset: u64,
        stored: u64,
        computed: u64,
    },
    #[error("at byte {offset}: bad page index: {reason}")]
    BadIndex { offset: u64, reason: String },
    #[error("at byte {offset}: bad trailer: {reason}")]
    BadTrailer { offset: u64, reason: String },
    #[error("at byte {offset}: trailing data after the trailer")]
    TrailingData { offset: u64 },
    #[error("at byte {offset}: decoder used after an earlier error")]
    Poisoned { offset: u64 },
}

impl DecodeError {
    /// Wraps an I/O error met at `offset`. A short read becomes
    /// [`DecodeError::UnexpectedEof`], since for a file format that means truncation.
    pub fn io(offset: u64, e: io::Error) -> DecodeError {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            DecodeError::UnexpectedEof { offset }
        } else {
            DecodeError::Io { offset, source: e }
        }
    }

    /// The absolute byte offset where the problem was found.
    pub fn offset(&self) -> u64 {
        match self {
            DecodeError::Io { offset, .. }
            | DecodeError::UnexpectedEof { offset }
            | DecodeError::BadMagic { offset, .. }
            | DecodeError::BadHeader { offset, .. }
            | DecodeError::BadPageHeader { offset, .. }
            | DecodeError::PageOrder { offset, .. }
            | DecodeError::PageBeyondCommit { offset, .. }
            | DecodeError::BadCompression { offset, .. }
            | DecodeError::ChecksumMismatch { offset, .. }
            | DecodeError::BadIndex { offset, .. }
            | DecodeError::BadTrailer { offset, .. }
            | DecodeError::TrailingData { offset }
            | DecodeError::Poisoned { offset } => *offset,
        }
    }
}

/// A file could not be encoded: the caller broke a format rule or the writer failed.
#[derive(Debug, Error)]
pub enum EncodeError {
    #[error("I/O error at byte {offset}: {source}")]
    Io {
        offset: u64,
        #[source]
        source: io::Error,
    },
    #[error("bad header: {0}")]
    BadHeader(#[from] HeaderError),
    #[error("page {pgno} is not above the previous page {prev}")]
    PageOrder { prev: u32, pgno: u32 },
    #[error("page {pgno} has {got} bytes, the page size is {expected}")]
    WrongPageSize {
        pgno: u32,
        expected: u32,
        got: usize,
    },
    #[error("page {pgno} is the lock page and is never stored")]
    LockPage { pgno: u32 },
    #[error("page {pgno} is beyond the commit size {commit}")]
    PageBeyondCommit { pgno: u32, commit: u32 },
    #[error("snapshot is missing {missing} of the pages 1..={commit}")]
    IncompleteSnapshot { missing: u32, commit: u32 },
    #[error("LZ4 compression of page {pgno} failed: {reason}")]
    Compression { pgno: u32, reason: String },
    #[error("encoder used after an earlier error")]
    Poisoned,
}

/// Compaction failed: the inputs do not fit together, or one of them (or the
/// output) failed to decode or encode.
#[derive(Debug, Error)]
pub enum CompactError {
    #[error("no input files")]
    NoInputs,
    #[error("inputs are not contiguous: previous max TXID {prev_max}, next min TXID {next_min}")]
    NotContiguous { prev_max: u64, next_min: u64 },
    #[error("input {index} has page size {got}, the first input has {expected}")]
    PageSizeMismatch {
        index: usize,
        expected: u32,
        got: u32,
    },
    #[error("snapshot output is missing {missing} of the pages 1..={commit}")]
    IncompleteSnapshot { missing: u32, commit: u32 },
    /// An input failed to decode; `input` is its position in the input list when known.
    #[error("decoding input {}: {source}", input.map_or_else(|| "?".to_string(), |i| i.to_string()))]
    Decode {
        input: Option<usize>,
        #[source]
        source: DecodeError,
    },
    #[error("encoding output: {0}")]
    Encode(#[from] EncodeError),
}

impl From<DecodeError> for CompactError {
    fn from(source: DecodeError) -> CompactError {
        CompactError::Decode {
            input: None,
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_eof_becomes_unexpected_eof() {
        let e = DecodeError::io(42, io::Error::from(io::ErrorKind::UnexpectedEof));
        assert!(matches!(e, DecodeError::UnexpectedEof { offset: 42 }));
        let e = DecodeError::io(7, io::Error::other("boom"));
        assert!(matches!(e, DecodeError::Io { offset: 7, .. }));
        assert_eq!(e.offset(), 7);
        assert!(e.to_string().starts_with("at byte 7:"), "{e}");
    }
}
