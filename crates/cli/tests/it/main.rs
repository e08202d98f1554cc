//! Integration tests: the real `sqlite-replicate` binary beside real SQLite writers,
//! against real replicas, each ending in a restore compared page for page with the source.
//!
//! One test binary; shared helpers in `harness`.

mod abs;
mod azurite;
mod badinput;
mod crash;
mod diskfull;
mod garage;
mod harness;
mod litestream;
mod replicate;
mod restore;
mod s3;
mod v3;
