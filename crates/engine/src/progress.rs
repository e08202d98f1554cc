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
