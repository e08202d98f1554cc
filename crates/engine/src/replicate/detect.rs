//! Change detection: one file-system watcher for the whole process, waking the
//! database whose WAL was written, within milliseconds of the write.
//!
//! Owns: the `notify` watcher (inotify on Linux) over the directories that hold watched
//! databases, and the map from WAL path to the database's wake-up handle. Databases
//! also keep a slow safety poll (in `replicate::run_database`) in case an event is lost
//! or the watcher cannot be created; this module never decides what to capture.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use notify::{RecursiveMode, Watcher};
use tokio::sync::Notify;
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
