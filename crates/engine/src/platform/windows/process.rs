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

/// The machine's ProgramData folder (`C:\ProgramData`) as Windows Installer's
/// `CommonAppDataFolder` resolves it: the `ProgramData` value of
/// `HKLM\SOFTWARE\Microsoft\Windows NT\CurrentVersion\ProfileList` (the known folder's
/// backing value, `%SystemDrive%\ProgramData`, expanded). Not `%ProgramData%`: Wine sets
/// that variable to `C:\users\Public`, so a service found no config where the MSI put it.
/// `None` when the value cannot be read.
pub fn program_data_dir() -> Option<std::path::PathBuf> {
    use windows_sys::Win32::System::Registry::{RegGetValueW, HKEY_LOCAL_MACHINE, RRF_RT_REG_SZ};
    let wide = |s: &str| -> Vec<u16> { s.encode_utf16().chain(std::iter::once(0)).collect() };
    let key = wide(r"SOFTWARE\Microsoft\Windows NT\CurrentVersion\ProfileList");
    let value = wide("ProgramData");
    let mut buf = vec![0u16; 1024];
    let mut bytes = (buf.len() * 2) as u32;
    // SAFETY: nul-terminated key and value names; `buf` holds `bytes` bytes; a string
    // only. RRF_RT_REG_SZ takes a REG_EXPAND_SZ value too and expands it (asking for
    // RRF_RT_REG_EXPAND_SZ without RRF_NOEXPAND is ERROR_INVALID_PARAMETER).
    let rc = unsafe {
        RegGetValueW(
            HKEY_LOCAL_MACHINE,
            key.as_ptr(),
            value.as_ptr(),
            RRF_RT_REG_SZ,
            std::ptr::null_mut(),
            buf.as_mut_ptr().cast(),
            &mut bytes,
        )
    };
    if rc != 0 {
        return None;
    }
    let len = (bytes as usize / 2).min(buf.len());
    let s = &buf[..len];
    let end = s.iter().position(|&c| c == 0).unwrap_or(len);
    (end > 0).then(|| std::path::PathBuf::from(OsString::from_wide(&s[..end])))
}

#[cfg(test)]
mod tests {
    #[test]
    fn program_data_is_the_machine_folder() {
        let dir = super::program_data_dir().expect("ProfileList's ProgramData value");
        let s = dir.to_string_lossy().to_string();
        assert!(s.ends_with("ProgramData") && !s.contains('%'), "{s}");
    }
}
