//! The LTX file format, wire-compatible with Litestream 0.5.
//!
//! Map of the crate:
//! - [`types`]: validated newtypes (`TxId`, `PageNo`, `PageSize`, `Level`).
//! - [`error`]: typed errors; decode errors name the byte offset.
//! - [`header`]: the 100-byte header, its validation, and the 16-byte trailer.
//! - [`bounds`]: the most bytes a file with a given header can take.
//! - `source`: the offset-tracking reader and big-endian field reads the parsers share.
//! - [`lz4`]: the two page payload encodings (LZ4 block, legacy LZ4 frame).
//! - [`checksum`]: CRC-64/ISO, the file checksum hasher, the rolling DB checksum.
//! - [`index`]: the page index after the pages, and parsing it from a file's tail.
//! - [`encoder`]: streaming writer of one file.
//! - [`decoder`]: streaming reader of one file, verifying index and checksum.
//! - [`frame`]: one page frame on its own, checked against its index entry (ranged reads).
//! - [`mod@compact`]: newest-page-wins merge of contiguous files (and snapshots).
//!
//! This crate does synchronous `Read`/`Write` only, never depends on an async runtime,
//! and holds no policy (which files to write, when, where): that lives in `engine`.

pub mod bounds;
pub mod checksum;
pub mod compact;
pub mod decoder;
pub mod encoder;
pub mod error;
pub mod frame;
pub mod header;
pub mod index;
pub mod lz4;
mod source;
pub mod types;

pub use bounds::{max_any_file_bytes, max_file_bytes};
pub use checksum::{crc64_iso, page_checksum, Crc64Hasher, DbChecksum};
pub use compact::{compact, compact_as_snapshot};
pub use decoder::Decoder;
pub use encoder::Encoder;
pub use error::{CompactError, DecodeError, EncodeError, HeaderError, TypeError};
pub use frame::decode_page_frame;
pub use header::{Header, Trailer, FLAG_NO_CHECKSUM, HEADER_SIZE, MIN_PAGE_BYTES, TRAILER_SIZE};
pub use index::{parse_page_index, PageIndexEntry};
pub use lz4::PageEncoding;
pub use types::{Level, PageNo, PageSize, TxId};
