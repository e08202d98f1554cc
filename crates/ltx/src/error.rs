//! Errors of the format crate. Decoding errors carry the byte offset where the
//! problem was found, so a corrupt replica file can be pinpointed.

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
