//! Interoperability with the real Litestream binaries, both ways, on file replicas and on
//! S3 (a real Garage): each program restores what the other wrote after a history with
//! compaction into levels 1-3, snapshots, retention deletions, application checkpoints
//! and a replicator restart; each takes over replicating a database the other started;
//! Litestream 0.5.15 restores our legacy page encoding. (Litestream 0.3 replicas: `v3`.)
//!
//! Shared set-up: `programs` (the replicators as processes), `dest` (file or Garage
//! replica, looked at through the engine's backends), `history` (the history, the
//! settled points, the restores compared page for page).

mod dest;
mod handover;
mod history;
mod programs;
mod restore_both_ways;

pub use programs::Program;
