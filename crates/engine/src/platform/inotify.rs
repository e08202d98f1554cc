//! Linux's inotify, read on the tokio runtime: one descriptor, directories added to it,
//! each event handed to a callback as (watch descriptor, name) or an overflow.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use tokio::io::unix::AsyncFd;
use tracing::warn;

/// What is watched in each directory: writes, attribute changes, creations, deletions and
/// renames of its entries.
const MASK: u32 = libc::IN_MODIFY
    | libc::IN_ATTRIB
    | libc::IN_CREATE
    | libc::IN_DELETE
    | libc::IN_MOVED_FROM
    | libc::IN_MOVED_TO;

/// One event, as the callback gets it.
pub enum Event<'a> {
    /// Something happened to `name` in the directory watched as `wd`.
    Name { wd: i32, name: &'a OsStr },
    /// The kernel's queue overflowed: events were lost.
    Overflow,
}

/// An inotify descriptor and the task reading it.
pub struct Inotify {
    fd: Arc<AsyncFd<OwnedFd>>,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Inotify {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Inotify {
    /// A new descriptor, read on the current tokio runtime; `on_event` gets every event.
    pub fn new(on_event: impl FnMut(Event<'_>) + Send + 'static) -> io::Result<Inotify> {
        let handle = tokio::runtime::Handle::try_current().map_err(io::Error::other)?;
        // SAFETY: plain syscall; the descriptor is owned below.
        let raw = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor nothing else owns.
        let owned = unsafe { OwnedFd::from_raw_fd(raw) };
        let _enter = handle.enter();
        // SAFETY: the OwnedFd is a valid open descriptor and stays the AsyncFd's own
        // until it drops.
        let fd = unsafe { AsyncFd::register_with_interest(owned, tokio::io::Interest::READABLE) }
            .map_err(io::Error::from)?;
        let fd = Arc::new(fd);
        let reader = handle.spawn(read_events(fd.clone(), on_event));
        Ok(Inotify { fd, reader })
    }

    /// Watches directory `dir`; returns its watch descriptor (the same for a directory
    /// added twice).
    pub fn add_watch(&self, dir: &Path) -> io::Result<i32> {
        let c = CString::new(dir.as_os_str().as_bytes()).map_err(io::Error::other)?;
        // SAFETY: valid descriptor and NUL-terminated path.
        let wd =
            unsafe { libc::inotify_add_watch(self.fd.get_ref().as_raw_fd(), c.as_ptr(), MASK) };
        if wd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(wd)
    }
}

/// Size of `struct inotify_event` before its name.
const EVENT_HEADER: usize = 16;
/// Room for the largest single event (header and a NAME_MAX name with its NUL).
const EVENT_MAX: usize = EVENT_HEADER + 256;

async fn read_events(fd: Arc<AsyncFd<OwnedFd>>, mut on_event: impl FnMut(Event<'_>)) {
    let mut buf = vec![0u8; 16 * EVENT_MAX];
    loop {
        let Ok(mut guard) = fd.readable().await else {
            return;
        };
        let r = guard.try_io(|inner| {
            // SAFETY: reading into a buffer we own, of its length.
            let n = unsafe {
                libc::read(
                    inner.get_ref().as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                )
            };
            if n < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(n as usize)
            }
        });
        match r {
            Ok(Ok(n)) => {
                dispatch(&buf[..n], &mut on_event);
                // Room was left for more: the queue was empty when read, so readiness
                // can be cleared without the read that would say EAGAIN (an event
                // queued since is a newer readiness, which this does not clear).
                if n + EVENT_MAX <= buf.len() {
                    guard.clear_ready();
                }
            }
            Ok(Err(e)) => {
                warn!(error = %e, "reading file-system notifications failed; relying on polling");
                return;
            }
            Err(_would_block) => {}
        }
    }
}

fn dispatch(mut events: &[u8], on_event: &mut impl FnMut(Event<'_>)) {
    while events.len() >= EVENT_HEADER {
        let word = |i: usize| u32::from_ne_bytes(events[i..i + 4].try_into().expect("4 bytes"));
        let (wd, mask, len) = (word(0) as i32, word(4), word(12) as usize);
        let end = (EVENT_HEADER + len).min(events.len());
        let raw = &events[EVENT_HEADER..end];
        events = &events[end..];
        if mask & libc::IN_Q_OVERFLOW != 0 {
            on_event(Event::Overflow);
            continue;
        }
        let name = raw.split(|&b| b == 0).next().unwrap_or_default();
        on_event(Event::Name {
            wd,
            name: OsStr::from_bytes(name),
        });
    }
}
