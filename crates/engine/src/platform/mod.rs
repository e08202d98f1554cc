//! Placeholder until WA's platform module is merged (WC's process-level pieces only).

#[cfg(unix)]
#[path = "unix_process.rs"]
pub mod process;
#[cfg(unix)]
pub mod unix_socket;
#[cfg(windows)]
pub mod windows;
#[cfg(windows)]
pub use windows::process;
