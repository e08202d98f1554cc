//! The LTX file format, wire-compatible with Litestream 0.5.
//!
//! Map of the crate:
//! - [`types`]: validated newtypes (`TxId`, `PageNo`, `PageSize`, `Level`).
//! - [`error`]: typed errors; decode errors name the byte offset.
//!
//! This crate does synchronous `Read`/`Write` only, never depends on an async runtime,
//! and holds no policy (which files to write, when, where): that lives in `engine`.

pub mod error;
pub mod types;

pub use error::TypeError;
pub use types::{Level, PageNo, PageSize, TxId};
