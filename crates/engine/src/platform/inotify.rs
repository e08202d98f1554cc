//! Linux's inotify, read on the tokio runtime: one descriptor, directories added to it,
//! each event handed to a callback as (watch descriptor, name) or an overflow.
//!
//! While events flow the descriptor is read on a timer, not on readiness: see
//! [`COALESCE`]. While nobody listens ([`Listeners`]) it is not read at all.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
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
    /// The watch `wd` is gone (`IN_IGNORED`: its directory was deleted or unmounted):
    /// nothing more comes from it.
    Gone { wd: i32 },
}

/// An inotify descriptor and the task reading it.
pub struct Inotify {
    fd: Arc<OwnedFd>,
    reader: tokio::task::JoinHandle<()>,
    /// The wait between two reads while events flow, in microseconds (see [`COALESCE`]).
    window_us: Arc<AtomicU64>,
    listeners: Arc<Listeners>,
}

/// How many of the watched databases look at their changes now. A database waiting out
/// its pace or its request budget captures at the end of the wait whatever its WAL holds
/// by then, so events meanwhile tell it nothing: it leaves ([`Listeners::leave`]) for the
/// wait and joins again after. While nobody listens the descriptor is not read; events
/// wait in the kernel's queue (identical ones merged, an overflow reported as such) and
/// are read as soon as someone joins. At `upload-rate: 1` (the object stores' default)
/// and 200 commits a second, reading every [`COALESCE`] was most of the replicator's CPU
/// between two uploads (issue 27).
#[derive(Debug, Default)]
pub struct Listeners {
    count: AtomicUsize,
    back: tokio::sync::Notify,
    /// Tests see when the reader waits for a listener.
    #[cfg(test)]
    waiting: std::sync::atomic::AtomicBool,
    #[cfg(test)]
    stopped: tokio::sync::Notify,
}

impl Listeners {
    /// One more database listens; the reader resumes if it was the first.
    pub fn join(&self) {
        if self.count.fetch_add(1, Ordering::AcqRel) == 0 {
            self.back.notify_one();
        }
    }

    /// One database stops listening (each `leave` follows a `join`).
    pub fn leave(&self) {
        self.count.fetch_sub(1, Ordering::AcqRel);
    }

    /// How many databases listen now.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// Resolves once somebody listens (at once if somebody does now).
    async fn until_any(&self) {
        loop {
            let back = self.back.notified();
            tokio::pin!(back);
            back.as_mut().enable();
            if self.count() > 0 {
                return;
            }
            #[cfg(test)]
            {
                self.waiting.store(true, Ordering::Release);
                self.stopped.notify_waiters();
            }
            back.await;
            #[cfg(test)]
            self.waiting.store(false, Ordering::Release);
        }
    }

    /// Whether the reader has stopped reading until somebody listens.
    #[cfg(test)]
    pub(crate) fn reader_waits(&self) -> bool {
        self.waiting.load(Ordering::Acquire)
    }

    /// Resolves once the reader has stopped reading until somebody listens.
    #[cfg(test)]
    pub(crate) async fn until_reader_waits(&self) {
        loop {
            let stopped = self.stopped.notified();
            tokio::pin!(stopped);
            stopped.as_mut().enable();
            if self.reader_waits() {
                return;
            }
            stopped.await;
        }
    }
}

/// The descriptor as the runtime's event loop registers it: the reader registers it
/// while waiting for a first event and deregisters it while events flow.
struct Shared(Arc<OwnedFd>);

impl AsRawFd for Shared {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
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
        let fd = Arc::new(unsafe { OwnedFd::from_raw_fd(raw) });
        let _enter = handle.enter();
        let registered = register(&fd)?;
        let window_us = Arc::new(AtomicU64::new(COALESCE_MAX.as_micros() as u64));
        let listeners = Arc::new(Listeners::default());
        let reader = handle.spawn(read_events(
            fd.clone(),
            registered,
            Pace {
                window_us: window_us.clone(),
                listeners: listeners.clone(),
            },
            on_event,
        ));
        Ok(Inotify {
            fd,
            reader,
            window_us,
            listeners,
        })
    }

    /// Who listens to this descriptor's events (see [`Listeners`]).
    pub fn listeners(&self) -> Arc<Listeners> {
        self.listeners.clone()
    }

    /// A database that captures at most once per `pace` is watched: events are read at
    /// least every quarter of it (never more often than every [`COALESCE`]). The window
    /// only shrinks: a database that leaves does not widen it.
    pub fn coalesce_for_pace(&self, pace: std::time::Duration) {
        let w = (pace / 4).clamp(COALESCE, COALESCE_MAX);
        self.window_us
            .fetch_min(w.as_micros() as u64, Ordering::Relaxed);
    }

    /// Watches directory `dir`; returns its watch descriptor (the same for a directory
    /// added twice).
    pub fn add_watch(&self, dir: &Path) -> io::Result<i32> {
        let c = CString::new(dir.as_os_str().as_bytes()).map_err(io::Error::other)?;
        // SAFETY: valid descriptor and NUL-terminated path.
        let wd = unsafe { libc::inotify_add_watch(self.fd.as_raw_fd(), c.as_ptr(), MASK) };
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

/// How long events gather between two reads while they flow. Unread, an event is merged
/// by the kernel into an identical one at the tail of the queue, and with the descriptor
/// out of the event loop nothing wakes the process: a database committing hundreds of
/// times a second (each commit a few WAL writes, each an `IN_MODIFY`), or a log file
/// written next to it, costs at most one wake-up per window instead of one per write. A
/// first event after a quiet spell is read at once. Shorter than the default capture pace
/// (20 ms), so a busy database's next capture is never later for it (that capture waits
/// for the pace anyway); another database's first event may wait up to this long while
/// events flow.
///
/// That is the floor: a process whose databases all capture less often waits longer
/// between reads ([`Inotify::coalesce_for_pace`]), a quarter of the shortest pace, at
/// most [`COALESCE_MAX`]. At `sync-interval: 1s` and 200 commits a second, 100 reads a
/// second were most of the replicator's CPU between two uploads (issue 27).
pub const COALESCE: std::time::Duration = std::time::Duration::from_millis(10);

/// The longest wait between two reads while events flow (see [`COALESCE`]).
pub const COALESCE_MAX: std::time::Duration = std::time::Duration::from_millis(250);

/// Registers the descriptor with the runtime's event loop, for readability.
fn register(fd: &Arc<OwnedFd>) -> io::Result<AsyncFd<Shared>> {
    // SAFETY: `Shared` holds the descriptor open (an `Arc` of its owner) for as long as
    // the AsyncFd lives.
    unsafe { AsyncFd::register_with_interest(Shared(fd.clone()), tokio::io::Interest::READABLE) }
        .map_err(io::Error::from)
}

/// When the reader reads while events flow.
struct Pace {
    /// The wait between two reads, in microseconds (see [`COALESCE`]).
    window_us: Arc<AtomicU64>,
    /// No read while nobody listens.
    listeners: Arc<Listeners>,
}

/// Waits for a first event on readiness, then reads on a timer: at once, then every
/// window (at least [`COALESCE`]) and once somebody listens, until a read finds the queue
/// empty, the descriptor out of the event loop meanwhile (an event queued while it is
/// re-registered makes it ready at once).
async fn read_events(
    fd: Arc<OwnedFd>,
    mut registered: AsyncFd<Shared>,
    pace: Pace,
    mut on_event: impl FnMut(Event<'_>),
) {
    let mut buf = vec![0u8; 16 * EVENT_MAX];
    loop {
        match registered.readable().await {
            Ok(mut guard) => guard.clear_ready(),
            Err(_) => return,
        }
        drop(registered);
        loop {
            match drain(fd.as_raw_fd(), &mut buf, &mut on_event) {
                Ok(true) => {
                    let us = pace.window_us.load(Ordering::Relaxed);
                    tokio::time::sleep(std::time::Duration::from_micros(us)).await;
                    pace.listeners.until_any().await;
                }
                Ok(false) => break,
                Err(e) => {
                    warn!(error = %e, "reading file-system notifications failed; relying on polling");
                    return;
                }
            }
        }
        registered = match register(&fd) {
            Ok(r) => r,
            Err(e) => {
                warn!(error = %e, "watching file-system notifications failed; relying on polling");
                return;
            }
        };
    }
}

/// Reads and hands out what is queued (the descriptor is non-blocking). False when there
/// was nothing.
fn drain(fd: RawFd, buf: &mut [u8], on_event: &mut impl FnMut(Event<'_>)) -> io::Result<bool> {
    let mut any = false;
    loop {
        // SAFETY: reading into a buffer we own, of its length.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock => Ok(any),
                io::ErrorKind::Interrupted => continue,
                _ => Err(e),
            };
        }
        let n = n as usize;
        dispatch(&buf[..n], on_event);
        any = true;
        // Room was left for more: the queue was empty when read.
        if n + EVENT_MAX <= buf.len() {
            return Ok(true);
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
        if mask & libc::IN_IGNORED != 0 {
            on_event(Event::Gone { wd });
            continue;
        }
        let name = raw.split(|&b| b == 0).next().unwrap_or_default();
        on_event(Event::Name {
            wd,
            name: OsStr::from_bytes(name),
        });
    }
}

/// Whether inotify misses changes to files under `dir` made by other hosts: a network
/// or cluster file system (NFS, SMB/CIFS, 9p, Ceph, GlusterFS and others over FUSE), where
/// only this host's own writes raise events. Unknown file systems count as local.
pub fn misses_remote_writes(dir: &Path) -> bool {
    const REMOTE: &[i64] = &[
        0x6969,      // NFS
        0x517b,      // SMB
        0xff53_4d42, // CIFS
        0xfe53_4d42, // SMB2
        0x0102_1997, // 9p (v9fs)
        0x00c3_6400, // Ceph
        0x6573_5546, // FUSE (sshfs, GlusterFS, s3fs, ...)
        0x0bd0_0bd0, // Lustre
        0x5346_414f, // AFS
    ];
    let Ok(c) = CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: a zeroed statfs is a valid out-parameter; the path is NUL-terminated.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return false;
    }
    REMOTE.contains(&(st.f_type as i64))
}
