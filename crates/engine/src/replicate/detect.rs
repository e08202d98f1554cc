//! Change detection: one file-system watcher for the whole process, waking the
//! database whose WAL was written, within milliseconds of the write.
//!
//! Owns: the `notify` watcher (inotify on Linux) over the directories that hold watched
//! databases, and the map from WAL path to the database's wake-up handle; and the safety
//! poll ([`SafetyPoll`]), in case an event is lost or the watcher cannot be created: one
//! task for the whole process that `stat`s every database's WAL and file each tick and
//! wakes only those whose size, times or inode changed (no SQLite, no WAL read), plus a
//! staggered unconditional wake of each database every five minutes (at the default
//! 1 s tick). This module never
//! decides what to capture.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::{watch, Notify};
use tracing::warn;

type Targets = Arc<Mutex<HashMap<PathBuf, Vec<Arc<Notify>>>>>;

pub struct ChangeWatcher {
    watcher: Option<notify::RecommendedWatcher>,
    targets: Targets,
    dirs: HashMap<PathBuf, usize>,
}

impl ChangeWatcher {
    /// Creates the watcher. If the platform refuses (no inotify instances left), returns a
    /// watcher that only relies on polling, and says so once.
    pub fn new() -> ChangeWatcher {
        let targets: Targets = Arc::new(Mutex::new(HashMap::new()));
        let t = targets.clone();
        let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            let Ok(ev) = res else { return };
            if matches!(ev.kind, notify::EventKind::Access(_)) {
                return;
            }
            let map = t.lock().unwrap_or_else(|p| p.into_inner());
            for p in &ev.paths {
                if let Some(list) = map.get(p) {
                    for n in list {
                        n.notify_one();
                    }
                }
            }
        });
        let watcher = match watcher {
            Ok(w) => Some(w),
            Err(e) => {
                warn!(error = %e, "file-system notifications unavailable; falling back to polling");
                None
            }
        };
        ChangeWatcher {
            watcher,
            targets,
            dirs: HashMap::new(),
        }
    }

    /// Wakes `notify` whenever `db`'s WAL (or the database file itself) changes.
    pub fn watch(&mut self, db: &Path, notify: Arc<Notify>) {
        let db = absolute(db);
        let mut wal = db.as_os_str().to_os_string();
        wal.push("-wal");
        {
            let mut map = self.targets.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(PathBuf::from(wal))
                .or_default()
                .push(notify.clone());
            map.entry(db.clone()).or_default().push(notify);
        }
        let dir = db
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let count = self.dirs.entry(dir.clone()).or_insert(0);
        *count += 1;
        if *count == 1 {
            if let Some(w) = self.watcher.as_mut() {
                if let Err(e) = w.watch(&dir, RecursiveMode::NonRecursive) {
                    warn!(dir = %dir.display(), error = %e, "cannot watch directory; relying on polling");
                }
            }
        }
    }

    pub fn is_event_driven(&self) -> bool {
        self.watcher.is_some()
    }
}

impl Default for ChangeWatcher {
    fn default() -> Self {
        ChangeWatcher::new()
    }
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// What a `stat` says about a file: (inode, size, mtime, ctime), both times in ns.
type FileStat = Option<(u64, u64, i128, i128)>;

fn file_stat(p: &Path) -> FileStat {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(p).ok()?;
    let ns = |s: i64, n: i64| s as i128 * 1_000_000_000 + n as i128;
    Some((
        m.ino(),
        m.size(),
        ns(m.mtime(), m.mtime_nsec()),
        ns(m.ctime(), m.ctime_nsec()),
    ))
}

/// Each tick, every database whose files changed is woken; on top, each database is
/// woken unconditionally once every this many ticks (staggered across databases), in
/// case a write left size and times unchanged (a coarse clock, a WAL rewritten in place).
const FORCE_EVERY_TICKS: usize = 300;

struct Polled {
    db: PathBuf,
    wal: PathBuf,
    notify: Arc<Notify>,
    last: (FileStat, FileStat),
}

/// The process-wide safety poll: see the module docs.
#[derive(Default)]
pub struct SafetyPoll {
    dbs: Vec<Polled>,
}

impl SafetyPoll {
    pub fn new() -> SafetyPoll {
        SafetyPoll::default()
    }

    /// Polls `db` (and its `-wal`), waking `notify` when they change.
    pub fn add(&mut self, db: &Path, notify: Arc<Notify>) {
        let db = absolute(db);
        let mut wal = db.as_os_str().to_os_string();
        wal.push("-wal");
        let wal = PathBuf::from(wal);
        let last = (file_stat(&wal), file_stat(&db));
        self.dbs.push(Polled {
            db,
            wal,
            notify,
            last,
        });
    }

    /// Runs until `shutdown` turns true. One blocking sweep per tick for all databases.
    pub async fn run(self, interval: Duration, mut shutdown: watch::Receiver<bool>) {
        let dbs = Arc::new(Mutex::new(self.dbs));
        let mut tick = 0usize;
        let mut timer = tokio::time::interval(interval);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        timer.tick().await;
        loop {
            tokio::select! {
                _ = timer.tick() => {}
                r = shutdown.changed() => {
                    if r.is_err() || *shutdown.borrow() { return; }
                    continue;
                }
            }
            tick = tick.wrapping_add(1);
            let d = dbs.clone();
            // `sweep` cannot panic; a poisoned lock is recovered on the next tick anyway.
            let _ = tokio::task::spawn_blocking(move || {
                let mut dbs = d.lock().unwrap_or_else(|p| p.into_inner());
                sweep(&mut dbs, tick);
            })
            .await;
        }
    }
}

fn sweep(dbs: &mut [Polled], tick: usize) {
    for (i, p) in dbs.iter_mut().enumerate() {
        let now = (file_stat(&p.wal), file_stat(&p.db));
        let forced = i % FORCE_EVERY_TICKS == tick % FORCE_EVERY_TICKS;
        if now != p.last || forced {
            p.last = now;
            p.notify.notify_one();
        }
    }
}
