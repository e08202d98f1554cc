//! Everything that touches a live database's files: the only module that opens a
//! database, its WAL or its wal-index.
//!
//! - [`wal`]: parse the `-wal` file (header, frames, checksum chain, commit boundaries).
//! - [`db`]: the replicator's connections, the read-transaction pin that keeps SQLite
//!   from restarting the WAL over frames not yet captured, checkpoints, whole-database
//!   page images.
//!
//! Fed by nothing; feeds `replicate::capture`.

pub mod db;
pub mod wal;
