//! Directory discovery (`watch: true` on a `dir:` entry): which files under a directory
//! are databases to replicate, kept current while the replicator runs.
//!
//! Owns: the watch on the directory tree (the `notify` crate: inotify on Linux, one
//! watch per directory), the rule for which names count (the entry's pattern, at the top
//! level only unless recursive; never hidden names, so never our meta directories
//! `.<db>-sqlite-replicate` or Litestream's; never SQLite's `-wal`, `-shm`, `-journal`
//! files or our `.tmp` files), the wait for a new file to become a database (its 100-byte
//! header valid: a file being created is looked at again on its next write event, or at
//! the next rescan, until it is), and a
//! full rescan as a safety net: every [`RESCAN_INTERVAL`] while events flow, every
//! [`POLL_INTERVAL`] once they cannot be trusted (the watcher could not be created, a
//! watch could not be added, e.g. `fs.inotify.max_user_watches` exhausted), which is said
//! once with a warning; at once when the event queue overflowed (events were lost then;
//! the watch goes on). A missed event therefore delays a database, never loses it.
//!
//! Does not: start or stop anything. It reports [`Found`] changes on a channel; the
//! caller turns a new file into a run (its replicas derived from the entry's template)
//! and hands it to the [`Runtime`](super::Runtime).
//!
//! Feeds on: the initial scan (the files already replicating, `known`). Reads a file's
//! header only while it is not replicating (reading a live one through a short-lived
//! descriptor would drop this process's SQLite locks on it).

use std::collections::{BTreeSet, HashSet};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use notify::{RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

/// Full rescan period while file-system events are trusted.
pub const RESCAN_INTERVAL: Duration = Duration::from_secs(10);
/// Full rescan period once they are not (no watcher, a failed watch, lost events).
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// How long after an event the paths it touched are looked at: events within one tick
/// are handled together, as a burst of writes to a new file is. No timer runs while no
/// event comes (but the rescan's).
const TICK: Duration = Duration::from_millis(200);

/// A watched directory entry.
#[derive(Clone)]
pub struct DirSpec {
    pub dir: PathBuf,
    pub recursive: bool,
    /// Whether a file name matches the entry's pattern.
    pub matches: Arc<dyn Fn(&str) -> bool + Send + Sync>,
}

/// A change in the set of databases under a watched directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// A database to replicate (a valid SQLite header, a matching name).
    Appeared(PathBuf),
    /// A database that was replicating and whose file is gone.
    Vanished(PathBuf),
}

impl DirSpec {
    /// Whether `path` is a name under the directory that may be a database (the pattern,
    /// the depth rule, no hidden component, no SQLite side file or temp file).
    pub fn is_candidate(&self, path: &Path) -> bool {
        let Ok(rel) = path.strip_prefix(&self.dir) else {
            return false;
        };
        let mut parts = Vec::new();
        for c in rel.components() {
            match c {
                Component::Normal(s) => match s.to_str() {
                    Some(s) if !s.starts_with('.') => parts.push(s),
                    _ => return false,
                },
                _ => return false,
            }
        }
        let Some(name) = parts.last() else {
            return false;
        };
        if !self.recursive && parts.len() != 1 {
            return false;
        }
        const SKIP: &[&str] = &["-wal", "-shm", "-journal", crate::fsutil::TMP_SUFFIX];
        !SKIP.iter().any(|s| name.ends_with(s)) && (self.matches)(name)
    }

    /// Every candidate file under the directory now. `Err` when the directory itself
    /// cannot be read; an unreadable subdirectory is reported in the second value (the
    /// databases known under it must not be taken for deleted).
    fn scan(&self) -> std::io::Result<(HashSet<PathBuf>, Vec<PathBuf>)> {
        let mut files = HashSet::new();
        let mut unreadable = Vec::new();
        self.scan_in(&self.dir.clone(), &mut files, &mut unreadable, true)?;
        Ok((files, unreadable))
    }

    fn scan_in(
        &self,
        dir: &Path,
        files: &mut HashSet<PathBuf>,
        unreadable: &mut Vec<PathBuf>,
        top: bool,
    ) -> std::io::Result<()> {
        let rd = match std::fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) if top => return Err(e),
            Err(_) => {
                unreadable.push(dir.to_path_buf());
                return Ok(());
            }
        };
        for e in rd {
            let Ok(e) = e else {
                unreadable.push(dir.to_path_buf());
                continue;
            };
            if e.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let Ok(ft) = e.file_type() else { continue };
            let p = e.path();
            if ft.is_dir() && self.recursive {
                self.scan_in(&p, files, unreadable, false)?;
            } else if ft.is_file() && self.is_candidate(&p) {
                files.insert(p);
            }
        }
        Ok(())
    }
}

/// Whether `path` holds a SQLite database yet (magic and page size in its header).
fn is_database(path: &Path) -> bool {
    crate::sqlite::db::read_db_header(path).is_ok()
}

/// What discovery knows, moved to a blocking thread for each look at the disk. Sets
/// are hashed: a rescan of 10,000 databases compares every path found with them, and
/// ordered sets made it cost half a second of CPU (path comparison is by component).
struct State {
    spec: DirSpec,
    /// Replicating (reported as appeared and not since as vanished).
    known: HashSet<PathBuf>,
    /// Candidates whose header is not valid yet.
    waiting: HashSet<PathBuf>,
    /// The last rescan could not read the directory (deleted, or its permissions
    /// changed): a watch on it is gone, so only rescans can find what comes next.
    root_unreadable: bool,
}

impl State {
    /// Looks at the paths events named. A waiting file is looked at again when an event
    /// names it (becoming a database is a write) or at the next rescan.
    fn look(&mut self, touched: BTreeSet<PathBuf>, out: &mut Vec<Found>) {
        let mut paths = BTreeSet::new();
        for p in touched {
            match std::fs::symlink_metadata(&p) {
                Ok(m) if m.is_dir() => {
                    // A new (or renamed) directory: its files may predate its watch.
                    if self.spec.recursive && p.starts_with(&self.spec.dir) {
                        let mut files = HashSet::new();
                        let mut unreadable = Vec::new();
                        let _ = self.spec.scan_in(&p, &mut files, &mut unreadable, false);
                        paths.extend(files);
                    }
                }
                Ok(_) => {
                    paths.insert(p);
                }
                Err(_) => {
                    // Gone: the file itself, or a directory with databases under it.
                    let under: Vec<PathBuf> = self
                        .known
                        .iter()
                        .filter(|k| k.starts_with(&p))
                        .cloned()
                        .collect();
                    paths.extend(under);
                    self.waiting.retain(|w| !w.starts_with(&p));
                }
            }
        }
        for p in paths {
            self.settle(p, out);
        }
    }

    /// Decides one path: appeared, vanished, waiting, or nothing to say.
    fn settle(&mut self, p: PathBuf, out: &mut Vec<Found>) {
        if self.known.contains(&p) {
            if std::fs::symlink_metadata(&p).is_err() {
                self.known.remove(&p);
                out.push(Found::Vanished(p));
            }
            return;
        }
        if !self.spec.is_candidate(&p) {
            return;
        }
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_file() => {
                if is_database(&p) {
                    self.waiting.remove(&p);
                    self.known.insert(p.clone());
                    out.push(Found::Appeared(p));
                } else {
                    self.waiting.insert(p);
                }
            }
            _ => {
                self.waiting.remove(&p);
            }
        }
    }

    /// A full rescan: every candidate now against what is known.
    fn rescan(&mut self, out: &mut Vec<Found>) {
        let (files, unreadable) = match self.spec.scan() {
            Ok(r) => {
                self.root_unreadable = false;
                r
            }
            Err(e) => {
                debug!(dir = %self.spec.dir.display(), error = %e, "rescan: cannot read the directory");
                self.root_unreadable = true;
                return;
            }
        };
        let mut gone: Vec<PathBuf> = self
            .known
            .iter()
            .filter(|k| !files.contains(*k) && !unreadable.iter().any(|u| k.starts_with(u)))
            .cloned()
            .collect();
        gone.sort_unstable();
        for p in gone {
            self.settle(p, out);
        }
        self.waiting.retain(|w| files.contains(w));
        // In path order, as a listing gives them.
        let mut new: Vec<PathBuf> = files
            .into_iter()
            .filter(|p| !self.known.contains(p))
            .collect();
        new.sort_unstable();
        for p in new {
            self.settle(p, out);
        }
    }
}

/// Says once per process that a directory watch lost events (they are made good by a
/// rescan at once).
fn overflowed(dir: &Path) {
    static SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !SAID.swap(true, std::sync::atomic::Ordering::Relaxed) {
        info!(dir = %dir.display(), "directory watch: the event queue overflowed; rescanning the directory");
    }
}

/// The notification watcher of `dir` (or why there is none) and the channel its events
/// arrive on.
type EventRx = mpsc::UnboundedReceiver<notify::Result<notify::Event>>;
fn start_watcher(dir: &Path, recursive: bool) -> (notify::Result<impl notify::Watcher>, EventRx) {
    let (ev_tx, ev_rx) = mpsc::unbounded_channel();
    let mode = if recursive {
        RecursiveMode::Recursive
    } else {
        RecursiveMode::NonRecursive
    };
    let watcher = notify::recommended_watcher(move |ev| {
        let _ = ev_tx.send(ev);
    })
    .and_then(|mut w| w.watch(dir, mode).map(|()| w));
    (watcher, ev_rx)
}

/// Watches `spec` until `shutdown` turns true, sending each change on `tx`. `known` are
/// the databases already replicating (the start-up scan).
pub async fn watch_dir(
    spec: DirSpec,
    known: BTreeSet<PathBuf>,
    tx: mpsc::UnboundedSender<Found>,
    mut shutdown: watch::Receiver<bool>,
) {
    let dir = spec.dir.clone();
    let (watcher, mut ev_rx) = start_watcher(&dir, spec.recursive);
    let mut degraded = false;
    let degrade = |degraded: &mut bool, why: &dyn std::fmt::Display| {
        if !*degraded {
            warn!(dir = %dir.display(), error = %why, interval = ?POLL_INTERVAL,
                "directory watch: file-system notifications unreliable; falling back to rescanning the directory");
            *degraded = true;
        }
    };
    let _watcher = match watcher {
        Ok(w) => Some(w),
        Err(e) => {
            degrade(&mut degraded, &e);
            None
        }
    };
    info!(dir = %dir.display(), recursive = spec.recursive, databases = known.len(), "watching directory for databases");
    let mut state = Some(State {
        spec,
        known: known.into_iter().collect(),
        waiting: HashSet::new(),
        root_unreadable: false,
    });
    let mut touched = BTreeSet::new();
    let mut last_rescan = Instant::now();
    let mut rescan_now = false;
    // When the paths touched so far are looked at (one TICK after the first of them).
    let mut look_at: Option<Instant> = None;
    let mut events_closed = false;
    loop {
        let period = if degraded {
            POLL_INTERVAL
        } else {
            RESCAN_INTERVAL
        };
        // No timer but the next rescan while nothing happens.
        let due = match (rescan_now, look_at) {
            (true, _) => Instant::now(),
            (false, Some(t)) => t.min(last_rescan + period),
            (false, None) => last_rescan + period,
        };
        tokio::select! {
            r = shutdown.wait_for(|s| *s) => { drop(r); return; }
            ev = ev_rx.recv(), if !events_closed => {
                match ev {
                    Some(Ok(ev)) => {
                        if ev.need_rescan() {
                            // Events were lost then, not for good: one rescan now finds
                            // what they said (10,000 databases starting overflow the
                            // queue; rescanning every second after that cost 4% of a core).
                            rescan_now = true;
                            overflowed(&dir);
                        }
                        if !matches!(ev.kind, notify::EventKind::Access(_)) {
                            touched.extend(ev.paths);
                            look_at.get_or_insert_with(|| Instant::now() + TICK);
                        }
                    }
                    Some(Err(e)) => {
                        rescan_now = true;
                        degrade(&mut degraded, &e);
                    }
                    // No watcher (it could not be created): the rescans alone, and
                    // no busy loop on the closed channel.
                    None => events_closed = true,
                }
                continue;
            }
            _ = tokio::time::sleep_until(due.into()) => {}
        }
        let full = rescan_now || last_rescan.elapsed() >= period;
        if !full && look_at.is_none_or(|t| t > Instant::now()) {
            continue;
        }
        look_at = None;
        let mut st = state.take().expect("state is back after each look");
        let batch = std::mem::take(&mut touched);
        let looked = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            st.look(batch, &mut out);
            if full {
                st.rescan(&mut out);
            }
            (st, out)
        })
        .await;
        let Ok((st, out)) = looked else {
            warn!("directory watch: a look at the directory panicked; stopping the watch");
            return;
        };
        if st.root_unreadable {
            degrade(&mut degraded, &"the directory cannot be read (deleted?)");
        }
        state = Some(st);
        if full {
            last_rescan = Instant::now();
            rescan_now = false;
        }
        for f in out {
            if tx.send(f).is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(recursive: bool) -> DirSpec {
        DirSpec {
            dir: PathBuf::from("/data"),
            recursive,
            matches: Arc::new(|n: &str| n.ends_with(".db") || n.ends_with(".db-wal")),
        }
    }

    #[test]
    fn candidates() {
        let cases: &[(&str, bool, bool)] = &[
            // path, recursive, candidate
            ("/data/a.db", false, true),
            ("/data/t/a.db", false, false),
            ("/data/t/a.db", true, true),
            ("/data/a.db-wal", true, false),
            ("/data/.a.db-sqlite-replicate/x.db", true, false),
            ("/data/.hidden.db", true, false),
            ("/data/a.txt", true, false),
            ("/data", true, false),
            ("/elsewhere/a.db", true, false),
            ("/data/../a.db", true, false),
        ];
        for (p, rec, want) in cases {
            assert_eq!(spec(*rec).is_candidate(Path::new(p)), *want, "{p} {rec}");
        }
    }

    #[test]
    fn files_become_databases_when_their_header_is_valid_and_vanish_when_deleted() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let mut st = State {
            spec: DirSpec {
                dir: dir.clone(),
                recursive: true,
                matches: Arc::new(|n: &str| n.ends_with(".db")),
            },
            known: HashSet::new(),
            waiting: HashSet::new(),
            root_unreadable: false,
        };
        std::fs::create_dir(dir.join("t")).unwrap();
        let a = dir.join("t/a.db");
        std::fs::write(&a, b"SQLite format 3").unwrap();
        let mut out = Vec::new();
        st.rescan(&mut out);
        assert!(
            out.is_empty(),
            "a half-written header is not a database yet"
        );
        assert!(st.waiting.contains(&a));
        rusqlite::Connection::open(dir.join("b.db"))
            .unwrap()
            .execute_batch("CREATE TABLE t(x)")
            .unwrap();
        std::fs::remove_file(&a).unwrap();
        rusqlite::Connection::open(&a)
            .unwrap()
            .execute_batch("CREATE TABLE t(x)")
            .unwrap();
        st.look([a.clone()].into(), &mut out);
        assert_eq!(
            out,
            vec![Found::Appeared(a.clone())],
            "the waiting file, written"
        );
        assert!(st.waiting.is_empty());
        out.clear();
        st.rescan(&mut out);
        assert_eq!(out, vec![Found::Appeared(dir.join("b.db"))]);
        out.clear();
        std::fs::remove_dir_all(dir.join("t")).unwrap();
        st.look([dir.join("t")].into(), &mut out);
        assert_eq!(out, vec![Found::Vanished(a)], "a deleted directory");
    }
}
