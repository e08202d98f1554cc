//! Process-level calls for the CLI on Windows, with the same interface as
//! `unix_process.rs`: holding console control events during start-up, a child's exit
//! code, the host name; the Unix-only tunables (open-file limit, glibc's allocator,
//! file mode bits) are no-ops here.

use std::ffi::OsString;
use std::os::windows::ffi::OsStringExt;
use std::process::ExitStatus;

use windows_sys::Win32::System::Console::SetConsoleCtrlHandler;
use windows_sys::Win32::System::SystemInformation::{ComputerNameDnsHostname, GetComputerNameExW};

/// Ignores Ctrl-C until [`release_shutdown_signals`], so one pressed during start-up does
/// not kill the process before its handlers are installed (unlike Unix, where a held
/// signal stays pending, an ignored Ctrl-C is dropped). Ctrl-Close and Ctrl-Shutdown
/// cannot be ignored.
pub fn hold_shutdown_signals() {
    // SAFETY: a null handler with TRUE makes this process ignore Ctrl-C.
    unsafe { SetConsoleCtrlHandler(None, 1) };
}

/// Undoes [`hold_shutdown_signals`] once our handlers listen.
pub fn release_shutdown_signals() {
    // SAFETY: restores normal Ctrl-C processing (our handlers, installed by tokio, run).
    unsafe { SetConsoleCtrlHandler(None, 0) };
}

/// The exit status as one byte, as a shell would see it: codes above 255 (NTSTATUS
/// values such as 0xC000013A for a Ctrl-C) become 1.
pub fn exit_code(status: &ExitStatus) -> u8 {
    match status.code() {
        Some(c) if (0..=255).contains(&c) => c as u8,
        _ => 1,
    }
}

/// Windows has no per-process descriptor limit to raise.
pub fn raise_open_file_limit() -> Result<(), (u64, u64)> {
    Ok(())
}

/// glibc's allocator tunables: nothing to do here.
pub fn tune_allocator_for_daemon() {}

/// glibc's allocator tunables: nothing to do here.
pub fn tune_allocator_for_restore() {}

/// Who besides the owner may read `path` (group, others), from Unix mode bits; `None` on
/// Windows, where access is an ACL (inherited from the directory).
pub fn group_other_readable(_path: &std::path::Path) -> Option<(bool, bool, u32)> {
    None
}

/// This machine's DNS host name.
pub fn host_name() -> Option<String> {
    let mut buf = [0u16; 256];
    let mut len = buf.len() as u32;
    // SAFETY: `buf` holds `len` wide characters.
    let ok = unsafe { GetComputerNameExW(ComputerNameDnsHostname, buf.as_mut_ptr(), &mut len) };
    if ok == 0 || len == 0 {
        return std::env::var("COMPUTERNAME").ok().filter(|s| !s.is_empty());
    }
    Some(
        OsString::from_wide(&buf[..len as usize])
            .to_string_lossy()
            .into_owned(),
    )
}
