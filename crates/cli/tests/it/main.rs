//! Integration tests: the real `sqlite-replicate` binary beside real SQLite writers,
//! against real replicas, each ending in a restore compared page for page with the source.
//!
//! One test binary; shared helpers in `harness`.

mod abs;
mod app_checkpoint;
mod auto_recover;
mod azurite;
mod badinput;
mod budget;
mod check;
mod compaction_verify;
mod config_keys;
mod control;
mod crash;
mod diskfull;
mod faultproxy;
mod fd_budget;
mod first_use;
mod flood;
mod garage;
mod garage_cluster;
mod gcs;
mod gcs_server;
mod harness;
mod heartbeat;
mod hostile;
mod interop;
mod keys;
mod lease;
mod litestream;
mod mcp;
mod metrics;
mod netfault;
mod notify;
mod operate;
mod outage;
mod perms;
mod progress;
mod replicate;
mod reset;
mod restore;
mod restore_path;
mod runtime_added;
mod s3;
mod sftp;
mod sshd;
mod v3;
mod validate;
mod verify;
mod vfs;
mod watch;
mod windows;
mod winsvc;
