//! One file per command; each exposes `Args` (clap) and `run`.

pub mod check;
pub mod control;
pub mod databases;
pub mod ltx;
pub mod rekey;
pub mod replicate;
pub mod reset;
pub mod restore;
pub mod service;
pub mod standby;
pub mod status;
pub mod verify;
pub mod version;
