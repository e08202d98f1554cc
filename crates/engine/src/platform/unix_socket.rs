//! The control socket's transport on Unix: binding a Unix socket file with a given mode
//! (never more open, not even between bind and chmod), and telling our socket file from
//! anything else at the path.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::UnixListener;
use std::path::Path;

/// The identity (device, inode) of the socket file at `path`; `Ok(None)` if nothing is
/// there; an error of kind `AlreadyExists` if something that is not a socket is.
pub fn socket_identity(path: &Path) -> io::Result<Option<(u64, u64)>> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => Ok(Some((m.dev(), m.ino()))),
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "the path exists and is not a socket",
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Binds a listening socket at `path` (nothing may be there) with mode `mode`, for the
/// current tokio runtime. The mode is set through the umask while binding, then with
/// chmod; the umask is process-wide, so call this before other threads create files (one
/// created meanwhile would only get a stricter mode).
pub fn bind_with_mode(path: &Path, mode: u32) -> io::Result<tokio::net::UnixListener> {
    let mode = mode & 0o777;
    // SAFETY: umask(2) only swaps the process's file creation mask.
    let old = unsafe { libc::umask((!mode & 0o777) as libc::mode_t) };
    let bound = UnixListener::bind(path);
    // SAFETY: as above, restoring the previous mask.
    unsafe { libc::umask(old) };
    let listener = bound?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    listener.set_nonblocking(true)?;
    tokio::net::UnixListener::from_std(listener)
}
