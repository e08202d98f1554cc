//! Restoring a database from a replica.
//!
//! One path for every command ([`run`]): pick the replica (the newest LTX history, else
//! Litestream 0.3 generations), list it (`history::list_all`), plan
//! (`history::plan`, pure: which files, in which order, or a precise gap error), then
//! [`apply`] (parallel ranged fetches, newest-page-wins merge into a temp file, every
//! file's checksum and optionally SQLite's integrity check verified) and [`output`] (fsync,
//! rename, directory fsync) → done. [`follow`] keeps a restored copy current; [`standby`]
//! is the warm standby's promotion protocol on top of it. [`drill`] runs the same steps
//! into scratch space to prove a replica works and measure RTO/RPO. [`validate`] checks,
//! from listings only, that each level's history has no gap. [`v3`] plans and applies
//! replicas that Litestream 0.3 wrote (`generations/` layout).
//!
//! The output path is never touched until everything is verified.

pub mod apply;
pub mod drill;
pub mod follow;
pub mod output;
pub mod run;
pub mod standby;
pub mod v3;
pub mod validate;
