//! Progress of long work (issue 25): the phases a restore, a drill, a standby's first
//! catch-up, a first full image or a large compaction go through, and the bytes done in
//! each, reported to whoever watches ([`Observer`]).
//!
//! Owns: the phase names ([`Phase`]), the observer contract, and [`Progress`], the handle
//! the work carries (nothing attached costs one branch per report).
//!
//! Does not: render anything, know about terminals or time reports (the CLI's
//! `progress` module draws bars, writes log lines or JSON events from these calls).
//! Fed by `restore::run` (listing), `restore::apply` and `restore::v3` (fetch and apply,
//! verify, install) and `replicate` (snapshot, compaction); feeds the CLI.

use std::fmt;
use std::sync::Arc;

/// A stage of long work. A phase with a known total reports bytes towards it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Listing the replicas' files (no byte total).
    Listing,
    /// Downloading the planned files and writing their pages into the temp file.
    FetchApply,
    /// fsync of the restored file and SQLite's integrity check.
    Verify,
    /// Putting the verified file in place (rename, directory fsync).
    Install,
    /// Writing a full image of the database (a first snapshot or a forced one).
    Snapshot,
    /// Merging files of one level into the next.
    Compaction,
}

impl Phase {
    /// The phase's name in JSON events and log fields.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Listing => "listing",
            Phase::FetchApply => "fetch",
            Phase::Verify => "verify",
            Phase::Install => "install",
            Phase::Snapshot => "snapshot",
            Phase::Compaction => "compaction",
        }
    }

    /// The phase as a person reads it.
    pub fn label(self) -> &'static str {
        match self {
            Phase::Listing => "listing",
            Phase::FetchApply => "fetch and apply",
            Phase::Verify => "verify",
            Phase::Install => "install",
            Phase::Snapshot => "snapshot",
            Phase::Compaction => "compaction",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// Watches long work. Phases come one at a time: `start`, any number of `advance`,
/// then `finish` when the phase succeeded (a failed phase gets no `finish`; the work's
/// error says what happened). Called from any thread, often (once per received body
/// piece): implementations keep `advance` cheap.
pub trait Observer: Send + Sync {
    /// `phase` begins; `total_bytes` when the work knows its size.
    fn start(&self, phase: Phase, total_bytes: Option<u64>);
    /// `bytes` more of the current phase are done.
    fn advance(&self, bytes: u64);
    /// `phase` is done.
    fn finish(&self, phase: Phase);
}

/// The handle work carries to report progress: an [`Observer`] or none.
#[derive(Clone, Default)]
pub struct Progress(Option<Arc<dyn Observer>>);

impl Progress {
    /// Reports to `observer`.
    pub fn new(observer: Arc<dyn Observer>) -> Progress {
        Progress(Some(observer))
    }

    /// Reports to nobody.
    pub fn none() -> Progress {
        Progress(None)
    }

    pub fn start(&self, phase: Phase, total_bytes: Option<u64>) {
        if let Some(o) = &self.0 {
            o.start(phase, total_bytes);
        }
    }

    pub fn advance(&self, bytes: u64) {
        if let Some(o) = &self.0 {
            o.advance(bytes);
        }
    }

    pub fn finish(&self, phase: Phase) {
        if let Some(o) = &self.0 {
            o.finish(phase);
        }
    }
}

impl fmt::Debug for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Progress(observed)"
        } else {
            "Progress(none)"
        })
    }
}

/// Progress of background work (a replicator's full image, snapshot or compaction) as
/// log events: nothing for work that ends within the period ([`set_log_every`], 5 s),
/// then one `info` event at most every period while bytes advance, and one when the
/// phase ends. So
/// only large work is logged, and a thousand small compactions add no lines.
pub struct Logged {
    work: &'static str,
    db: String,
    replica: Option<String>,
    state: std::sync::Mutex<LoggedState>,
}

struct LoggedState {
    phase: Option<(Phase, Option<u64>, std::time::Instant)>,
    done: u64,
    last_log: Option<std::time::Instant>,
}

/// [`Logged`]'s period in milliseconds (5 s unless the process says otherwise).
static LOG_EVERY_MS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(5000);

/// Sets the period of [`Logged`] events for this process (the CLI passes on
/// `$SQLITE_REPLICATE_PROGRESS_INTERVAL`).
pub fn set_log_every(every: std::time::Duration) {
    LOG_EVERY_MS.store(
        every.as_millis().clamp(1, u64::MAX as u128) as u64,
        std::sync::atomic::Ordering::Relaxed,
    );
}

fn log_every() -> std::time::Duration {
    std::time::Duration::from_millis(LOG_EVERY_MS.load(std::sync::atomic::Ordering::Relaxed))
}

impl Logged {
    /// Reports `work` (`"full image"`, `"snapshot"`, `"compaction"`) of `db` (and
    /// `replica`) to the log.
    pub fn progress(work: &'static str, db: &str, replica: Option<&str>) -> Progress {
        Progress::new(Arc::new(Logged {
            work,
            db: db.to_string(),
            replica: replica.map(str::to_string),
            state: std::sync::Mutex::new(LoggedState {
                phase: None,
                done: 0,
                last_log: None,
            }),
        }))
    }

    fn log(&self, phase: Phase, done: u64, total: Option<u64>, elapsed: std::time::Duration) {
        let secs = elapsed.as_secs_f64();
        let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
        let left = match total {
            Some(t) if rate > 0.0 => Some((t.saturating_sub(done) as f64 / rate) as u64),
            _ => None,
        };
        let pct = total.map(|t| (done * 100).checked_div(t).unwrap_or(100));
        tracing::info!(
            db = %self.db,
            replica = self.replica.as_deref().unwrap_or(""),
            work = self.work,
            phase = phase.as_str(),
            bytes = done,
            total_bytes = total,
            percent = pct,
            bytes_per_second = rate as u64,
            seconds_left = left,
            "{} in progress",
            self.work
        );
    }
}

impl Observer for Logged {
    fn start(&self, phase: Phase, total_bytes: Option<u64>) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.phase = Some((phase, total_bytes, std::time::Instant::now()));
        s.done = 0;
        s.last_log = None;
    }

    fn advance(&self, bytes: u64) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.done += bytes;
        let Some((phase, total, started)) = s.phase else {
            return;
        };
        let since = s.last_log.unwrap_or(started);
        if since.elapsed() >= log_every() {
            s.last_log = Some(std::time::Instant::now());
            let done = s.done;
            drop(s);
            self.log(phase, done, total, started.elapsed());
        }
    }

    fn finish(&self, phase: Phase) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let Some((p, total, started)) = s.phase.take() else {
            return;
        };
        if p == phase && s.last_log.is_some() {
            tracing::info!(
                db = %self.db,
                replica = self.replica.as_deref().unwrap_or(""),
                work = self.work,
                phase = phase.as_str(),
                bytes = total.unwrap_or(s.done).max(s.done),
                seconds = started.elapsed().as_secs_f64(),
                "{} {} done",
                self.work,
                phase.label()
            );
        }
    }
}
