//! Shutdown requests: one listener for the whole process. On Unix SIGTERM and SIGINT; on
//! Windows Ctrl-C, Ctrl-Break, Ctrl-Close and Ctrl-Shutdown, and the service's Stop and
//! Shutdown controls ([`inject`], called by `commands::service`), all on the same path.
//!
//! Owns: keeping a signal that arrives while the process starts from killing it before
//! the final sync ([`hold`] blocks both signals from the first line of `main`, or on
//! Windows ignores Ctrl-C; [`listen`] installs the handlers, then lets them through, so
//! one that came early is delivered then), and telling every part that waits for a
//! signal about each one, including those that start waiting after it came
//! ([`subscribe`]: a count, never a missed edge).
//!
//! Only the long-running commands (`replicate`, `standby`) call [`hold`]; they call
//! [`listen`] first thing in their runtime. The others keep the default action: Ctrl-C
//! stops a restore at once, and a restore never touches its output until verified.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use engine::platform::process;
use tokio::sync::watch;

/// Which signal came.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// SIGTERM; on Windows Ctrl-Close, Ctrl-Shutdown or the service's Stop/Shutdown.
    Terminate,
    /// SIGINT; on Windows Ctrl-C or Ctrl-Break.
    Interrupt,
}

/// The signals received so far: how many, and the last one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Received {
    pub count: u64,
    pub last: Option<Kind>,
}

/// The process's one record of signals, made on first use (so [`inject`] works before
/// [`listen`]).
fn channel() -> &'static (watch::Sender<Received>, watch::Receiver<Received>) {
    static CHANNEL: OnceLock<(watch::Sender<Received>, watch::Receiver<Received>)> =
        OnceLock::new();
    CHANNEL.get_or_init(|| watch::channel(Received::default()))
}

static LISTENING: AtomicBool = AtomicBool::new(false);

/// Blocks SIGTERM and SIGINT in this thread and every thread made after it (on Windows:
/// ignores Ctrl-C), so a signal that comes before [`listen`] does not kill the process.
/// Call it first in `main`, before any thread starts.
pub fn hold() {
    process::hold_shutdown_signals();
}

/// Records a shutdown request that did not come as a signal (the Windows service's Stop).
pub fn inject(kind: Kind) {
    channel().0.send_modify(|r| {
        r.count += 1;
        r.last = Some(kind);
    });
}

/// Installs the process's one listener (inside a tokio runtime, on the thread that called
/// [`hold`]), then lets the signals through, so one held since start-up is delivered now.
/// Idempotent.
pub fn listen() -> io::Result<()> {
    if LISTENING.load(Ordering::Acquire) {
        return Ok(());
    }
    let mut next = os_listener()?;
    if LISTENING.swap(true, Ordering::AcqRel) {
        return Ok(());
    }
    tokio::spawn(async move {
        while let Some(kind) = next.recv().await {
            inject(kind);
        }
    });
    process::release_shutdown_signals();
    Ok(())
}

/// The OS's shutdown signals as one stream of [`Kind`]s.
#[cfg(unix)]
fn os_listener() -> io::Result<tokio::sync::mpsc::UnboundedReceiver<Kind>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let kind = tokio::select! {
                Some(()) = term.recv() => Kind::Terminate,
                Some(()) = int.recv() => Kind::Interrupt,
                else => return,
            };
            if tx.send(kind).is_err() {
                return;
            }
        }
    });
    Ok(rx)
}

/// The OS's shutdown signals as one stream of [`Kind`]s.
#[cfg(windows)]
fn os_listener() -> io::Result<tokio::sync::mpsc::UnboundedReceiver<Kind>> {
    use tokio::signal::windows::{ctrl_break, ctrl_c, ctrl_close, ctrl_shutdown};
    let mut c = ctrl_c()?;
    let mut brk = ctrl_break()?;
    let mut close = ctrl_close()?;
    let mut shutdown = ctrl_shutdown()?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let kind = tokio::select! {
                Some(()) = c.recv() => Kind::Interrupt,
                Some(()) = brk.recv() => Kind::Interrupt,
                Some(()) = close.recv() => Kind::Terminate,
                Some(()) = shutdown.recv() => Kind::Terminate,
                else => return,
            };
            if tx.send(kind).is_err() {
                return;
            }
        }
    });
    Ok(rx)
}

/// The signals received so far and a way to wait for the next. Starts the listener if
/// [`listen`] was not called (inside a runtime).
pub fn subscribe() -> io::Result<watch::Receiver<Received>> {
    listen()?;
    Ok(channel().1.clone())
}

/// Waits until at least one signal has come (returns at once if one already has).
pub async fn requested(rx: &mut watch::Receiver<Received>) -> Kind {
    let last = rx.wait_for(|r| r.count > 0).await.map(|r| r.last);
    match last {
        Ok(kind) => kind.unwrap_or(Kind::Terminate),
        // The sender lives in a static: this never ends; treat its end as no signal.
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
