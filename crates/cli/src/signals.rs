//! Shutdown signals (SIGTERM, SIGINT): one listener for the whole process.
//!
//! Owns: keeping a signal that arrives while the process starts from killing it before
//! the final sync ([`hold`] blocks both signals from the first line of `main`; [`listen`]
//! installs the handlers, then lets them through, so one that came early is delivered
//! then), and telling every part that waits for a signal about each one, including those
//! that start waiting after it came ([`subscribe`]: a count, never a missed edge).
//!
//! Only the long-running commands (`replicate`, `standby`) call [`hold`]; they call
//! [`listen`] first thing in their runtime. The others keep the default action: Ctrl-C
//! stops a restore at once, and a restore never touches its output until verified.

use std::io;
use std::sync::OnceLock;

use tokio::sync::watch;

/// Which signal came.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Terminate,
    Interrupt,
}

impl Kind {
    /// The signal's number, to forward it to a child.
    pub fn number(self) -> i32 {
        match self {
            Kind::Terminate => libc::SIGTERM,
            Kind::Interrupt => libc::SIGINT,
        }
    }
}

/// The signals received so far: how many, and the last one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Received {
    pub count: u64,
    pub last: Option<Kind>,
}

static RECEIVED: OnceLock<watch::Receiver<Received>> = OnceLock::new();

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

/// Blocks SIGTERM and SIGINT in this thread and every thread made after it, so a signal
/// that comes before [`listen`] waits (pending) instead of killing the process. Call it
/// first in `main`, before any thread starts.
pub fn hold() {
    set_mask(libc::SIG_BLOCK);
}

/// Installs the process's one listener (inside a tokio runtime, on the thread that called
/// [`hold`]), then unblocks the signals on this thread, so one held since start-up is
/// delivered now. Idempotent.
pub fn listen() -> io::Result<()> {
    if RECEIVED.get().is_some() {
        return Ok(());
    }
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let (tx, rx) = watch::channel(Received::default());
    if RECEIVED.set(rx).is_err() {
        return Ok(());
    }
    tokio::spawn(async move {
        loop {
            let kind = tokio::select! {
                Some(()) = term.recv() => Kind::Terminate,
                Some(()) = int.recv() => Kind::Interrupt,
                else => return,
            };
            tx.send_modify(|r| {
                r.count += 1;
                r.last = Some(kind);
            });
        }
    });
    set_mask(libc::SIG_UNBLOCK);
    Ok(())
}

/// The signals received so far and a way to wait for the next. Starts the listener if
/// [`listen`] was not called (inside a runtime).
pub fn subscribe() -> io::Result<watch::Receiver<Received>> {
    listen()?;
    Ok(RECEIVED.get().expect("set by listen").clone())
}

/// Waits until at least one signal has come (returns at once if one already has).
pub async fn requested(rx: &mut watch::Receiver<Received>) -> Kind {
    let last = rx.wait_for(|r| r.count > 0).await.map(|r| r.last);
    match last {
        Ok(kind) => kind.unwrap_or(Kind::Terminate),
        // The listener never ends while the runtime runs; treat its end as no signal.
        Err(_) => std::future::pending().await,
    }
}

/// A flag that turns true at the first signal (or is true already), for the engine's
/// APIs that take a shutdown `watch::Receiver<bool>`.
pub fn shutdown_flag() -> io::Result<watch::Receiver<bool>> {
    let mut rx = subscribe()?;
    let already = rx.borrow().count > 0;
    let (tx, flag) = watch::channel(already);
    if !already {
        tokio::spawn(async move {
            requested(&mut rx).await;
            tx.send_replace(true);
        });
    }
    Ok(flag)
}
