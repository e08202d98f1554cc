//! Everything that touches a live database's files: the only module that opens a
//! database, its WAL or its wal-index.
//!
//! - [`wal`]: parse the `-wal` file (header, frames, checksum chain, commit boundaries).
//! - [`db`]: the replicator's connections, the read-transaction pin that keeps SQLite
//!   from restarting the WAL over frames not yet captured, checkpoints, whole-database
//!   page images.
//! - [`inspect`]: read-only facts for `check`, and a read transaction that knows where
//!   its view of the WAL ends, for the restore drill's page comparison.
//!
//! Fed by nothing; feeds `replicate::capture`.

pub mod db;
pub mod inspect;
pub mod wal;
