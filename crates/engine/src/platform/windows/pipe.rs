//! The control socket's transport on Windows: a local named pipe whose DACL lets in only
//! LocalSystem, the Administrators group and the pipe's owner (the account that runs the
//! replicator), not the default DACL's read access for Everyone and Anonymous.
//!
//! The first instance is created with `FILE_FLAG_FIRST_PIPE_INSTANCE`, so a process that
//! already holds the name (a second replicator, or a squatter) makes the start fail
//! instead of receiving our clients. Remote clients are rejected.

use std::io;

use tokio::net::windows::named_pipe::{NamedPipeServer, ServerOptions};
use windows_sys::Win32::Foundation::LocalFree;
use windows_sys::Win32::Security::Authorization::ConvertStringSecurityDescriptorToSecurityDescriptorW;
use windows_sys::Win32::Security::{PSECURITY_DESCRIPTOR, SECURITY_ATTRIBUTES};

/// Protected DACL: full access for SYSTEM (SY), Administrators (BA) and the owner (OW).
const PIPE_SDDL: &str = "D:P(A;;GA;;;SY)(A;;GA;;;BA)(A;;GA;;;OW)";

/// Creates one instance of the pipe `name` (`\\.\pipe\...`) with the private DACL;
/// `first` for the first instance (fails if the name is taken).
pub fn create_private_pipe(name: &str, first: bool) -> io::Result<NamedPipeServer> {
    let sddl: Vec<u16> = PIPE_SDDL.encode_utf16().chain(std::iter::once(0)).collect();
    let mut sd: PSECURITY_DESCRIPTOR = std::ptr::null_mut();
    // SAFETY: a nul-terminated SDDL string (revision 1) and an out pointer; the
    // descriptor is freed with LocalFree below.
    let ok = unsafe {
        ConvertStringSecurityDescriptorToSecurityDescriptorW(
            sddl.as_ptr(),
            1,
            &mut sd,
            std::ptr::null_mut(),
        )
    };
    if ok == 0 {
        return Err(io::Error::last_os_error());
    }
    let mut attrs = SECURITY_ATTRIBUTES {
        nLength: std::mem::size_of::<SECURITY_ATTRIBUTES>() as u32,
        lpSecurityDescriptor: sd,
        bInheritHandle: 0,
    };
    let mut opts = ServerOptions::new();
    opts.first_pipe_instance(first).reject_remote_clients(true);
    // SAFETY: `attrs` is a valid SECURITY_ATTRIBUTES pointing at a valid descriptor, both
    // alive for the call.
    let r = unsafe {
        opts.create_with_security_attributes_raw(
            name,
            (&mut attrs as *mut SECURITY_ATTRIBUTES).cast(),
        )
    };
    // SAFETY: the descriptor was allocated by the conversion above; freed once.
    unsafe { LocalFree(sd) };
    r
}
