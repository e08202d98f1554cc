//! Shows the progress of long work (issue 25): a restore, a `verify` drill, a standby's
//! first catch-up, a replicator's restore before it starts. The engine reports phases and
//! bytes (`engine::progress`); this module renders them one of four ways ([`Style`]):
//!
//! - on a terminal, one progress bar per phase (indicatif) on stderr: bytes done, rate,
//!   time left; a phase without a byte total (listing, install) is a spinner;
//! - on a pipe or file, one plain line on stderr when a phase starts, every few seconds
//!   while it runs, and when it ends (no control characters);
//! - with `-json`, the same events as JSON lines on stderr (stdout keeps the command's
//!   one result object);
//! - in the long-running commands, the same events as log events (`info`), so they go
//!   wherever and however the log goes.
//!
//! Owns the choice of style, the periodic ticker and the formats. Does not decide what a
//! phase is or count bytes (the engine does).
//!
//! `$SQLITE_REPLICATE_PROGRESS_INTERVAL` (a duration such as `500ms`) changes the period
//! of lines and events from 5 s (the engine's progress logs too, [`configure_engine`]);
//! tests use it to see several within a short restore.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use engine::progress::{Observer, Phase, Progress};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    Bar,
    Lines,
    Json,
    Log,
}

impl Style {
    /// For a command's output: JSON events with `-json`, a bar on a terminal, else lines.
    pub fn for_stderr(json: bool) -> Style {
        if json {
            Style::Json
        } else if std::io::stderr().is_terminal() {
            Style::Bar
        } else {
            Style::Lines
        }
    }
}

/// The period of lines and events when the environment does not say.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
const INTERVAL_ENV: &str = "SQLITE_REPLICATE_PROGRESS_INTERVAL";

/// Passes the period on to the engine's own progress logs (`engine::progress::Logged`:
/// a replicator's full image, snapshot, compaction).
pub fn configure_engine() {
    engine::progress::set_log_every(interval());
}

fn interval() -> Duration {
    std::env::var(INTERVAL_ENV)
        .ok()
        .and_then(|v| crate::config::parse_duration(&v).ok())
        .filter(|d| !d.is_zero())
        .unwrap_or(DEFAULT_INTERVAL)
}

/// A progress reporter for `what` (e.g. `restore`), drawn in `style`. Keep the returned
/// guard alive as long as the work runs: dropping it stops the ticker.
pub fn start(what: &'static str, style: Style) -> (Progress, Guard) {
    let shown = Arc::new(Shown {
        what,
        style,
        state: Mutex::new(None),
        done: AtomicU64::new(0),
        bar: Mutex::new(None),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let ticker = (style != Style::Bar).then(|| {
        let (shown, stop) = (shown.clone(), stop.clone());
        let every = interval();
        std::thread::spawn(move || loop {
            std::thread::park_timeout(every);
            if stop.load(Ordering::Acquire) {
                return;
            }
            shown.tick();
        })
    });
    (Progress::new(shown), Guard { stop, ticker })
}

/// Stops the ticker thread when dropped.
pub struct Guard {
    stop: Arc<AtomicBool>,
    ticker: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.ticker.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

/// The phase running: its name, byte total and start.
#[derive(Clone, Copy)]
struct Running {
    phase: Phase,
    total: Option<u64>,
    started: Instant,
}

struct Shown {
    what: &'static str,
    style: Style,
    state: Mutex<Option<Running>>,
    /// Bytes done in the running phase.
    done: AtomicU64,
    bar: Mutex<Option<ProgressBar>>,
}

/// A snapshot of a phase for a line or an event.
struct Figures {
    phase: Phase,
    done: u64,
    total: Option<u64>,
    elapsed: Duration,
}

impl Figures {
    fn rate(&self) -> f64 {
        let s = self.elapsed.as_secs_f64();
        if s > 0.0 {
            self.done as f64 / s
        } else {
            0.0
        }
    }

    fn eta(&self) -> Option<Duration> {
        let (total, rate) = (self.total?, self.rate());
        (rate > 0.0).then(|| Duration::from_secs_f64(total.saturating_sub(self.done) as f64 / rate))
    }
}

impl Shown {
    fn figures(&self) -> Option<Figures> {
        let r = (*self.state.lock().unwrap_or_else(|e| e.into_inner()))?;
        Some(Figures {
            phase: r.phase,
            done: self.done.load(Ordering::Relaxed),
            total: r.total,
            elapsed: r.started.elapsed(),
        })
    }

    fn tick(&self) {
        if let Some(f) = self.figures() {
            self.emit("progress", &f);
        }
    }

    fn emit(&self, event: &str, f: &Figures) {
        match self.style {
            Style::Bar => {}
            Style::Lines => {
                let _ = writeln!(std::io::stderr(), "{}", line(self.what, event, f));
            }
            Style::Json => {
                let v = serde_json::json!({
                    "progress": self.what,
                    "phase": f.phase.as_str(),
                    "event": event,
                    "bytes": f.done,
                    "total_bytes": f.total,
                    "elapsed_seconds": round3(f.elapsed.as_secs_f64()),
                    "bytes_per_second": f.rate().round() as u64,
                    "seconds_left": f.eta().map(|d| round3(d.as_secs_f64())),
                });
                let _ = writeln!(std::io::stderr(), "{v}");
            }
            Style::Log => {
                tracing::info!(
                    work = self.what,
                    phase = f.phase.as_str(),
                    event,
                    bytes = f.done,
                    total_bytes = f.total,
                    bytes_per_second = f.rate().round() as u64,
                    seconds_left = f.eta().map(|d| d.as_secs()),
                    "{}",
                    line("", event, f).trim_start_matches(": ")
                );
            }
        }
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// One plain line: `restore: fetch and apply: 12.0 MiB of 40.0 MiB (30%), 4.0 MiB/s,
/// about 7s left`.
fn line(what: &str, event: &str, f: &Figures) -> String {
    let mut s = format!("{what}: {}", f.phase.label());
    match event {
        "start" => {
            s.push_str(" started");
            if let Some(t) = f.total {
                s.push_str(&format!(" ({})", bytes(t)));
            }
        }
        "finish" => {
            s.push_str(&format!(" done in {:.1}s", f.elapsed.as_secs_f64()));
            if f.total.is_some() {
                s.push_str(&format!(
                    ": {} at {}/s",
                    bytes(f.done),
                    bytes(f.rate() as u64)
                ));
            }
        }
        _ => {
            s.push_str(&format!(": {}", bytes(f.done)));
            if let Some(t) = f.total {
                let pct = (f.done * 100).checked_div(t).unwrap_or(100);
                s.push_str(&format!(" of {} ({pct}%)", bytes(t)));
            }
            s.push_str(&format!(", {}/s", bytes(f.rate() as u64)));
            if let Some(eta) = f.eta() {
                s.push_str(&format!(", about {}s left", eta.as_secs()));
            }
        }
    }
    s
}

/// Bytes in binary units with one decimal (`12.0 MiB`).
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

impl Observer for Shown {
    fn start(&self, phase: Phase, total_bytes: Option<u64>) {
        self.done.store(0, Ordering::Relaxed);
        let running = Running {
            phase,
            total: total_bytes,
            started: Instant::now(),
        };
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = Some(running);
        if self.style == Style::Bar {
            let bar = match total_bytes {
                Some(t) => ProgressBar::with_draw_target(Some(t), ProgressDrawTarget::stderr())
                    .with_style(
                        ProgressStyle::with_template(
                            "{prefix:>16} [{bar:30}] {percent:>3}% {bytes}/{total_bytes} {bytes_per_sec} {eta} left",
                        )
                        .expect("valid template")
                        .progress_chars("=> "),
                    ),
                None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
                    .with_style(
                        ProgressStyle::with_template("{prefix:>16} {spinner} {elapsed} {msg}")
                            .expect("valid template"),
                    ),
            };
            bar.set_prefix(phase.label());
            bar.enable_steady_tick(Duration::from_millis(200));
            *self.bar.lock().unwrap_or_else(|e| e.into_inner()) = Some(bar);
        } else if let Some(f) = self.figures() {
            self.emit("start", &f);
        }
    }

    fn advance(&self, bytes: u64) {
        self.done.fetch_add(bytes, Ordering::Relaxed);
        if self.style == Style::Bar {
            if let Some(b) = &*self.bar.lock().unwrap_or_else(|e| e.into_inner()) {
                b.inc(bytes);
            }
        }
    }

    fn finish(&self, phase: Phase) {
        let Some(mut f) = self.figures() else { return };
        if f.phase != phase {
            return;
        }
        if let Some(t) = f.total {
            // A phase that ends has done all of it (the listed size of a file is the
            // total; a coarse count may stop short).
            f.done = f.done.max(t);
        }
        if let Some(b) = self.bar.lock().unwrap_or_else(|e| e.into_inner()).take() {
            match f.total {
                Some(t) => {
                    b.set_position(t);
                    b.finish();
                }
                None => b.finish_with_message("done"),
            }
        }
        if self.style != Style::Bar {
            self.emit("finish", &f);
        }
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_carry_bytes_rate_and_time_left_without_control_characters() {
        let f = Figures {
            phase: Phase::FetchApply,
            done: 12 << 20,
            total: Some(40 << 20),
            elapsed: Duration::from_secs(3),
        };
        let l = line("restore", "progress", &f);
        assert_eq!(
            l,
            "restore: fetch and apply: 12.0 MiB of 40.0 MiB (30%), 4.0 MiB/s, about 7s left"
        );
        assert!(!l.chars().any(|c| c.is_control()));
        assert_eq!(
            line("restore", "start", &f),
            "restore: fetch and apply started (40.0 MiB)"
        );
        assert_eq!(bytes(512), "512 B");
    }
}
