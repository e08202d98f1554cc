//! Placeholder until WA's platform module is merged.

pub mod eventlog;
pub mod job;
pub mod pipe;
pub mod process;
pub mod service;
