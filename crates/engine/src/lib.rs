//! sqlite-replicate's library: capture committed transactions from a SQLite WAL,
//! ship them to replicas as LTX files, and restore databases from those files.
//!
//! Map of the crate, in data-flow order:
//! - [`sqlite`]: the only module that opens database and WAL files (WAL reader, connections,
//!   checkpoints).
//! - `replicate`: detect changes, encode L0 files, upload to each replica, compact, retain.
//! - [`history`]: listing every level of a replica, and the pure planner (shared by
//!   `restore` and `replicate`'s compaction, so neither imports the other).
//! - [`restore`]: one path for every restore (`restore::run`: pick the replica, list, plan,
//!   apply; then follow), fetch → apply → verify, the drill, and the warm standby's
//!   promotion protocol (`restore::standby`).
//! - [`storage`]: the replica trait, its backends, and the one place that spells keys.
//! - [`check`]: the pre-flight check of databases and replicas (`check`); the restore
//!   drill lives in `restore::drill`.
//! - [`lease`]: the single-writer lease kept in a replica, and the store wrapper that fences
//!   every write made under it (warm standby and failover).
//! - [`fsutil`]: durable local writes (temp, fsync, rename, dir fsync).
//! - [`platform`]: every OS-specific call (Unix and Windows), behind one interface.
//! - [`clock`]: wall-clock milliseconds as headers and records carry them.
//!
//! The `ltx` crate owns the file format; this crate owns every policy around it.

pub mod check;
pub mod clock;
pub mod defaults;
pub mod fsutil;
pub mod history;
pub mod lease;
pub mod platform;
pub mod replicate;
pub mod restore;
pub mod runtime;
pub mod sqlite;
pub mod storage;
