//! The process's file-descriptor budget, so that thousands of databases fit in the
//! open-file limit (issue 27), and what happens when descriptors run out anyway.
//!
//! Owns: sizing the budget from `RLIMIT_NOFILE` (the soft limit, which `replicate` raises
//! to the hard limit before the runtime starts), the units a running database holds while
//! it is awake, the *dormant* state of a quiet database and its cheap wake-up check
//! ([`Probe`]), recognising descriptor exhaustion in an error, and the backoff after it.
//!
//! The model: an awake database (its replication run: SQLite connections on the database,
//! WAL and `-shm`, our WAL and `-shm` descriptors, the meta directory's lock, the
//! transient second pin and barrier connections, temp files) holds [`AWAKE_COST`] units; a
//! dormant one holds only what outlives its run: the long-lived descriptor of its
//! database file (`sqlite::db::kept_open`, [`dormant_cost`]); a file replica's store
//! keeps its level directories open while the database is awake (counted in
//! [`Budget::awake`]) and closes them when it goes dormant, so 10,000 databases with file
//! replicas fit in 20,000 descriptors (they held 60,000 before). A run waits (first come, first served) for its
//! units before it opens anything, so descriptors never run out because of databases;
//! while any run waits, databases that are idle (everything captured and uploaded, no
//! capture for [`DORMANT_AFTER`]) end their run and go dormant, giving their units back.
//! With enough descriptors for every database nobody waits and no database ever goes
//! dormant: the behaviour (and the request count) of a small deployment is unchanged.
//!
//! Why nothing is lost while dormant (docs/design.md W1 and C2/C3): a dormant database
//! holds no pin, so the application may checkpoint and restart the WAL. The run that
//! wakes it starts exactly as after a restart of the process: `Capture::open` takes a pin
//! first, then checks that the WAL still holds our captured position (same salts, the
//! frames up to the cursor intact); if it does, the frames after it were never
//! overwritten (a restart changes the salts) and the capture is incremental; if not
//! (restarted, truncated, deleted), the next TXID is a full image read under the write
//! lock (C3), which holds every change the checkpoint moved into the database file. The
//! price of a WAL restart during dormancy is one full image, never a lost change.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tracing::error;

use super::DbRun;
use crate::replicate::local::{LocalDir, WalPosition};

/// Units (descriptors) an awake database may hold at once: 8 measured in steady state
/// (database file 3, WAL 2, `-shm` 2, meta lock 1), plus the second pin connection and
/// the barrier opened for moments, and a temp file.
pub const AWAKE_COST: u32 = 16;

/// How long an awake database stays up with nothing to capture while others wait for
/// descriptors.
pub const DORMANT_AFTER: Duration = Duration::from_secs(2);

/// Level directories a file replica's store keeps open for good (`storage::file`).
const FILE_REPLICA_DIRS: u32 = 5;

/// The descriptor budget of one process. See the module docs.
pub struct Budget {
    units: Arc<Semaphore>,
    /// Runs waiting for units now: while any wait, idle databases go dormant. A watch,
    /// so that awake databases wait for contention to begin instead of polling for it.
    waiting: watch::Sender<usize>,
    /// The process-wide "out of descriptors" error is said once.
    said_exhausted: AtomicBool,
}

impl Budget {
    /// Sized from this process's soft `RLIMIT_NOFILE`, less a reserve for everything
    /// else (sockets to the stores and clients, the watcher, logs).
    pub fn from_limit() -> Budget {
        Budget::of(open_file_limit())
    }

    /// A budget for a process allowed `limit` descriptors.
    pub fn of(limit: u64) -> Budget {
        let reserve = 64 + limit / 8;
        let units = limit
            .saturating_sub(reserve)
            .min(Semaphore::MAX_PERMITS as u64) as usize;
        Budget {
            // At least one database can always run.
            units: Arc::new(Semaphore::new(units.max(AWAKE_COST as usize))),
            waiting: watch::Sender::new(0),
            said_exhausted: AtomicBool::new(false),
        }
    }

    /// Takes what a database holds for as long as it is in the runtime, awake or not.
    /// `None` when the budget is spent: the database still runs (it then competes for
    /// the rest, and exhaustion is handled when it comes).
    /// What is left always lets one run start (otherwise databases that merely exist
    /// could starve every run).
    pub fn hold_dormant(&self, db: &DbRun) -> Option<OwnedSemaphorePermit> {
        let cost = dormant_cost(db);
        if self.units.available_permits() < (cost + AWAKE_COST) as usize {
            return None;
        }
        self.units.clone().try_acquire_many_owned(cost).ok()
    }

    /// Waits for the units of one awake run of `db`: [`AWAKE_COST`], and a file
    /// replica's level directories.
    pub async fn awake(&self, db: &DbRun) -> OwnedSemaphorePermit {
        // Counted while waiting, and no longer once the wait ends or is given up (a
        // shutdown or stop request drops this future).
        let _waiting = Waiting::new(&self.waiting);
        let cost = AWAKE_COST + file_replicas(db) * FILE_REPLICA_DIRS;
        let p = self.units.clone().acquire_many_owned(cost).await;
        p.expect("the budget's semaphore is never closed")
    }

    /// Whether a run waits for descriptors now.
    pub fn contended(&self) -> bool {
        *self.waiting.borrow() > 0
    }

    /// Resolves once a run waits for descriptors (at once if one does now).
    pub async fn until_contended(&self) {
        let mut rx = self.waiting.subscribe();
        // The sender lives in `self`: the wait cannot fail while we borrow it.
        let _ = rx.wait_for(|n| *n > 0).await;
    }

    /// The soft open-file limit now (it may have been lowered since start).
    pub fn limit(&self) -> u64 {
        open_file_limit()
    }

    /// Says once per process that descriptors ran out, and which limit to raise.
    pub fn say_exhausted(&self) {
        if !self.said_exhausted.swap(true, Ordering::SeqCst) {
            // Read again: it may have been lowered since start (`prlimit --pid`).
            let limit = open_file_limit();
            error!(
                limit,
                "out of file descriptors: the open-file limit ({limit}) is too low for these databases; raise it (`ulimit -n` in the shell, `LimitNOFILE=` in a systemd unit, `--ulimit nofile=` for Docker). Databases that could not open retry with backoff; the others keep replicating"
            );
        }
    }
}

/// One run counted in [`Budget`]'s `waiting` for as long as this lives.
struct Waiting<'a>(&'a watch::Sender<usize>);

impl<'a> Waiting<'a> {
    fn new(waiting: &'a watch::Sender<usize>) -> Waiting<'a> {
        waiting.send_modify(|n| *n += 1);
        Waiting(waiting)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}

/// `wait` spread over half to one and a half times itself: databases that ran out of
/// descriptors together (their runs end on the failure itself, at the same moment) do
/// not all retry at the same instant, where the few descriptors free would fail them all
/// again.
pub fn jittered(wait: Duration) -> Duration {
    wait.mul_f64(0.5 + rand::random::<f64>())
}

/// What a dormant database keeps open: its database file's long-lived descriptor (its
/// replicas' stores close theirs: `ReplicaStore::close_idle`).
pub fn dormant_cost(_db: &DbRun) -> u32 {
    1
}

/// How many of `db`'s replicas are file replicas.
fn file_replicas(db: &DbRun) -> u32 {
    db.replicas
        .iter()
        .filter(|r| r.store.location().starts_with("file://"))
        .count() as u32
}

/// The soft open-file limit (a large default where there is none to read).
fn open_file_limit() -> u64 {
    crate::platform::open_file_limit().unwrap_or(1 << 20)
}

/// Exponential backoff after running out of descriptors: 1 s doubling to 5 min.
pub struct Backoff(Duration);

impl Default for Backoff {
    fn default() -> Self {
        Backoff(Duration::from_secs(1))
    }
}

impl Backoff {
    /// The next wait.
    pub fn step(&mut self) -> Duration {
        let d = self.0;
        self.0 = (self.0 * 2).min(Duration::from_secs(300));
        d
    }
}

/// What a dormant database's files looked like when it went dormant, to tell a change
/// from a safety-poll tick without opening it: nothing new is there while the database
/// file is the same file with the same size and modification time, and the WAL holds no frame of our captured
/// generation after our captured position (a new commit is appended there with the same
/// salts, or the WAL restarts and its salts change). Any doubt wakes the database.
pub struct Probe {
    wal_path: std::path::PathBuf,
    db_path: std::path::PathBuf,
    db: Option<(u64, u64, u64, i128)>,
    /// The database file was modified just before the probe (see [`MTIME_DOUBT_NS`]).
    doubtful: bool,
    /// `None`: no local position (wake at the first change), or `Some(None)`: captured
    /// with no WAL content.
    position: Option<Option<WalPosition>>,
}

impl Probe {
    /// Looks now (blocking: a listing of the meta directory and a read of its newest
    /// file).
    pub fn take(db: &Path, meta_dir: &Path) -> Probe {
        let position = LocalDir::existing(meta_dir)
            .and_then(|l| l.position().ok().flatten())
            .map(|p| p.wal);
        let identity = db_identity(db);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as i128)
            .unwrap_or(0);
        Probe {
            wal_path: crate::sqlite::db::DbPaths::new(db).wal,
            db_path: db.to_path_buf(),
            db: identity,
            doubtful: identity.is_none_or(|(_, _, _, t)| now - t < MTIME_DOUBT_NS),
            position,
        }
    }

    /// Whether the database may have changed since [`Probe::take`] (blocking: a stat of
    /// each file and at most two small reads of the WAL).
    pub fn changed(&self) -> bool {
        use crate::platform::FileExt;
        let Some(position) = self.position else {
            return true;
        };
        if self.doubtful || db_identity(&self.db_path) != self.db {
            return true;
        }
        let wal = match std::fs::File::open(&self.wal_path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return position.is_some(),
            Err(_) => return true,
        };
        let Ok(len) = wal.metadata().map(|m| m.len()) else {
            return true;
        };
        let Some(w) = position else {
            // Captured with no WAL content: any frame is new.
            return len > 32;
        };
        let mut header = [0u8; 32];
        if wal.read_exact_at(&mut header, 0).is_err() {
            return true;
        }
        let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        if (be(&header[16..20]), be(&header[20..24])) != (w.salt1, w.salt2) {
            return true;
        }
        let mut frame = [0u8; 24];
        match wal.read_exact_at(&mut frame, w.offset) {
            // A frame of our generation after our position: a new commit.
            Ok(()) => (be(&frame[8..12]), be(&frame[12..16])) == (w.salt1, w.salt2),
            // Nothing after our position.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => false,
            Err(_) => true,
        }
    }
}

/// The database file's device, inode, size and modification time (ns): a checkpoint
/// that moved frames into it (the application's, closing its last connection, which
/// also deletes the WAL) changes the time even when the size stays.
fn db_identity(p: &Path) -> Option<(u64, u64, u64, i128)> {
    let stamp = crate::platform::change_stamp(p)?;
    let id = crate::platform::file_id(p).ok()?;
    Some((id.volume, id.index, stamp.size, stamp.modified_ns))
}

/// A modification this close to the probe may share its timestamp with a later write
/// (file times come from a coarse clock): such a probe wakes at the first change seen.
const MTIME_DOUBT_NS: i128 = 100_000_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_keeps_a_reserve_and_backoff_doubles_to_a_cap() {
        let b = Budget::of(1024);
        assert_eq!(b.units.available_permits(), 1024 - 64 - 128);
        let tiny = Budget::of(10);
        assert_eq!(tiny.units.available_permits(), AWAKE_COST as usize);
        let mut o = Backoff::default();
        let waits: Vec<u64> = (0..12).map(|_| o.step().as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert!(crate::platform::descriptors_exhausted(
            "open: Too many open files (os error 24)"
        ));
        assert!(!crate::platform::descriptors_exhausted(
            "unable to open database file"
        ));
    }
}
