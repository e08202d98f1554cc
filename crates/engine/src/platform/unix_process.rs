//! Process-level calls for the CLI on Unix, with the same interface as
//! `windows/process.rs`: holding SIGTERM/SIGINT during start-up, signalling a child, a
//! child's exit code, the open-file limit, glibc's allocator tunables, a file's mode
//! bits, the host name.

use std::process::ExitStatus;

fn shutdown_set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise and fill a sigset_t we own.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        set
    }
}

fn set_mask(how: libc::c_int) {
    let set = shutdown_set();
    // SAFETY: pthread_sigmask with a valid set and a null old-set pointer. Threads made
    // afterwards inherit the mask; children get a clear mask from std's spawn.
    unsafe {
        libc::pthread_sigmask(how, &set, std::ptr::null_mut());
    }
}

/// Blocks SIGTERM and SIGINT in this thread and every thread made after it, so one that
/// comes before the handlers are installed waits (pending) instead of killing the
/// process. Call it first in `main`, before any thread starts.
pub fn hold_shutdown_signals() {
    set_mask(libc::SIG_BLOCK);
}

/// Unblocks SIGTERM and SIGINT on this thread (after the handlers are installed), so one
/// held since start-up is delivered now.
pub fn release_shutdown_signals() {
    set_mask(libc::SIG_UNBLOCK);
}

/// Which stop signal to send a child.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopSignal {
    Terminate,
    Interrupt,
}

/// Sends SIGTERM or SIGINT to process `pid`.
pub fn send_stop(pid: u32, sig: StopSignal) {
    let sig = match sig {
        StopSignal::Terminate => libc::SIGTERM,
        StopSignal::Interrupt => libc::SIGINT,
    };
    // SAFETY: kill(2) with a pid we spawned and a valid signal number.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// The exit status as one byte, as a shell reports it: the code, or 128 + the signal's
/// number for a process that died of a signal.
pub fn exit_code(status: &ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => c as u8,
        (None, Some(s)) => 128u8.saturating_add(s as u8),
        _ => 1,
    }
}

/// Raises the soft limit on open descriptors to the hard limit. `Err((soft, hard))` when
/// the raise was refused.
// rlim_t is u64 on Linux, not on every Unix.
#[allow(clippy::unnecessary_cast)]
pub fn raise_open_file_limit() -> Result<(), (u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 || lim.rlim_cur >= lim.rlim_max {
            return Ok(());
        }
        let before = lim.rlim_cur;
        lim.rlim_cur = lim.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
            return Err((before as u64, lim.rlim_max as u64));
        }
    }
    Ok(())
}

/// One malloc arena, and buffers of 256 KiB and more mapped on their own (see the caller,
/// `replicate`, for why). Call before other threads start.
pub fn tune_allocator_for_daemon() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator tunables; called before other threads start.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
    }
}

/// A fixed 4 MiB mmap threshold and a 32 MiB trim threshold (see the caller, `restore`,
/// for why). Call before other threads start.
pub fn tune_allocator_for_restore() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator tunables; called before other threads start.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 32 << 20);
    }
}

/// Whether `path`'s group and others may read it, and its mode bits; `None` when it
/// cannot be read.
pub fn group_other_readable(path: &std::path::Path) -> Option<(bool, bool, u32)> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    Some((mode & 0o040 != 0, mode & 0o004 != 0, mode))
}

/// This machine's host name.
pub fn host_name() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: `buf` is writable for its whole length, which is what we pass.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    (end > 0).then(|| String::from_utf8_lossy(&buf[..end]).into_owned())
}
