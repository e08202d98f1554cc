//! Change detection: one file-system watcher for the whole process, waking the
//! database whose WAL was written, within milliseconds of the write.
//!
//! Owns: the watcher (inotify read on the runtime's event loop on Linux, the `notify`
//! crate elsewhere) over the directories that hold watched databases, and the map from
//! WAL name to the database's wake-up handle; and the safety poll ([`SafetyPoll`]) for
//! the databases events do not cover: one task for the whole process that `stat`s each
//! such database's WAL and file each tick and wakes only those whose size, times or
//! inode changed (no SQLite, no WAL read), plus a staggered unconditional wake of each
//! every five minutes (at the default 1 s tick).
//!
//! Which databases are polled: on Linux, only those inotify cannot cover (no inotify
//! instance, a directory that cannot be watched, e.g. missing or out of watches; a
//! network file system, where writes from other hosts raise no event; a directory whose
//! watch the kernel dropped, `IN_IGNORED`). A database inotify covers costs nothing while
//! quiet: no timer, no `stat`; a lost event is an overflow, which wakes every database.
//! Elsewhere (the `notify` crate's watchers coalesce and may drop events) every database
//! is polled as well as watched. With nothing to poll, the poll has no timer either.
//! A database waiting out its pace or budget says so ([`Changes::not_listening`]); while
//! every database covered by inotify waits, inotify is not read (Linux; see
//! `platform::inotify::Listeners`). This module never decides what to capture.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tracing::warn;

/// A database's wake-up from the watcher and the safety poll (a [`Notify`]: `notified`,
/// `notify_one`), and whether the database looks at its changes now.
#[derive(Debug, Default)]
pub struct Changes {
    notify: Notify,
    listen: Mutex<Listen>,
}

/// Whether a database listens, and to which reader it counts (Linux's inotify, once it
/// covers the database).
#[derive(Debug, Default)]
struct Listen {
    #[cfg(target_os = "linux")]
    listeners: Option<Arc<crate::platform::inotify::Listeners>>,
    waiting: bool,
}

impl std::ops::Deref for Changes {
    type Target = Notify;

    fn deref(&self) -> &Notify {
        &self.notify
    }
}

impl Changes {
    pub fn new() -> Changes {
        Changes::default()
    }

    fn listen(&self) -> std::sync::MutexGuard<'_, Listen> {
        self.listen.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The database looks at no change until the guard drops: it waits for its pace or
    /// its budget and captures after whatever the WAL holds. Wake-ups meanwhile are kept
    /// (one permit), as ever; only the watcher's reads may stop (module docs).
    pub fn not_listening(self: &Arc<Self>) -> NotListening {
        let mut l = self.listen();
        if !l.waiting {
            l.waiting = true;
            #[cfg(target_os = "linux")]
            if let Some(r) = &l.listeners {
                r.leave();
            }
        }
        NotListening(self.clone())
    }

    /// Counts this database among `readers`' listeners from now on (once).
    #[cfg(target_os = "linux")]
    fn attach(&self, readers: &Arc<crate::platform::inotify::Listeners>) {
        let mut l = self.listen();
        if l.listeners.is_none() {
            if !l.waiting {
                readers.join();
            }
            l.listeners = Some(readers.clone());
        }
    }

    /// No longer counted by the reader it was attached to (unwatched, or polled now).
    #[cfg(target_os = "linux")]
    fn detach(&self) {
        let mut l = self.listen();
        if let Some(r) = l.listeners.take() {
            if !l.waiting {
                r.leave();
            }
        }
    }
}

/// See [`Changes::not_listening`]: the database listens again when this drops.
#[derive(Debug)]
pub struct NotListening(Arc<Changes>);

impl Drop for NotListening {
    fn drop(&mut self) {
        let mut l = self.0.listen();
        if l.waiting {
            l.waiting = false;
            #[cfg(target_os = "linux")]
            if let Some(r) = &l.listeners {
                r.join();
            }
        }
    }
}

/// The process-wide change watcher (see the module docs), with the safety poll it hands
/// the databases it cannot cover.
pub struct ChangeWatcher {
    #[cfg(target_os = "linux")]
    inner: Option<linux::Inotify>,
    #[cfg(not(target_os = "linux"))]
    inner: Option<portable::Portable>,
    poll: SafetyPoll,
}

impl ChangeWatcher {
    /// Creates the watcher. If the platform refuses (no inotify instances left, or no
    /// runtime to read it on), returns a watcher that hands every database to `poll`, and
    /// says so once.
    pub fn new(poll: SafetyPoll) -> ChangeWatcher {
        #[cfg(target_os = "linux")]
        let inner = linux::Inotify::new(poll.clone());
        #[cfg(not(target_os = "linux"))]
        let inner = portable::Portable::new();
        let inner = match inner {
            Ok(w) => Some(w),
            Err(e) => {
                warn!(error = %e, "file-system notifications unavailable; falling back to polling");
                None
            }
        };
        ChangeWatcher { inner, poll }
    }

    /// A database that captures at most once per `pace` is watched: on Linux, events
    /// are read while they flow at least every quarter of the shortest such pace
    /// (`platform::inotify::COALESCE`), so a database at `sync-interval: 1s` does not
    /// cost the reads a 20 ms one needs.
    pub fn pace_of_watched(&self, pace: Duration) {
        #[cfg(target_os = "linux")]
        if let Some(w) = &self.inner {
            w.coalesce_for_pace(pace);
        }
        #[cfg(not(target_os = "linux"))]
        let _ = pace;
    }

    /// Wakes `notify` whenever `db`'s WAL (or the database file itself) changes: by
    /// events, and by the safety poll where events do not cover it (see the module docs).
    pub fn watch(&mut self, db: &Path, notify: Arc<Changes>) {
        let db = absolute(db);
        let dir = db
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let Some(name) = db.file_name().map(|n| n.to_os_string()) else {
            return;
        };
        let covered = match self
            .inner
            .as_mut()
            .map(|w| w.watch(&dir, &name, notify.clone()))
        {
            Some(Ok(covered)) => covered,
            Some(Err(e)) => {
                warn!(dir = %dir.display(), error = %e, "cannot watch directory; relying on polling");
                false
            }
            None => false,
        };
        if !covered {
            self.poll.add(&db, notify);
        }
    }

    /// Stops waking `notify` for `db` (a database removed while the others run). The
    /// directory stays watched: it is one watch however many databases it holds.
    pub fn unwatch(&mut self, db: &Path, notify: &Arc<Changes>) {
        self.poll.remove(notify);
        let db = absolute(db);
        let (Some(dir), Some(name)) = (db.parent(), db.file_name()) else {
            return;
        };
        if let Some(w) = self.inner.as_mut() {
            w.unwatch(dir, name, notify);
        }
    }

    pub fn is_event_driven(&self) -> bool {
        self.inner.is_some()
    }
}

/// The names in one watched directory whose changes wake databases: each database's file
/// and its `-wal`.
type Names = HashMap<std::ffi::OsString, Vec<Arc<Changes>>>;

fn add_names(names: &mut Names, db_name: &std::ffi::OsStr, notify: Arc<Changes>) {
    let mut wal = db_name.to_os_string();
    wal.push("-wal");
    names.entry(wal).or_default().push(notify.clone());
    names
        .entry(db_name.to_os_string())
        .or_default()
        .push(notify);
}

fn remove_names(names: &mut Names, db_name: &std::ffi::OsStr, notify: &Arc<Changes>) {
    let mut wal = db_name.to_os_string();
    wal.push("-wal");
    for n in [wal.as_os_str(), db_name] {
        if let Some(list) = names.get_mut(n) {
            list.retain(|x| !Arc::ptr_eq(x, notify));
            if list.is_empty() {
                names.remove(n);
            }
        }
    }
}

/// inotify read on the runtime's own event loop: no thread of its own, so an event costs
/// one read on a worker and wakes the database's task there. Only events that can mean
/// new content are asked for (no opens, reads or closes: our own WAL reads would wake us),
/// and names other than the databases' files and WALs (`-shm`, journals, unrelated files
/// in the same directory) are dropped after one hash lookup.
#[cfg(target_os = "linux")]
mod linux {
    use super::*;
    use crate::platform::inotify::{self, Event};
    use std::ffi::OsStr;
    use std::io;

    /// One watched directory.
    struct Dir {
        path: PathBuf,
        names: Names,
        /// Events miss writes made elsewhere (a network file system): polled as well.
        remote: bool,
    }

    #[derive(Default)]
    struct State {
        /// Watch descriptor → its directory.
        by_wd: HashMap<i32, Dir>,
        /// Watched directories → watch descriptor.
        dirs: HashMap<PathBuf, i32>,
    }

    pub(super) struct Inotify {
        fd: inotify::Inotify,
        state: Arc<Mutex<State>>,
    }

    impl Inotify {
        /// `poll` takes the databases of a directory whose watch the kernel drops.
        pub(super) fn new(poll: SafetyPoll) -> io::Result<Inotify> {
            let state: Arc<Mutex<State>> = Arc::default();
            let st = state.clone();
            let fd = inotify::Inotify::new(move |e| dispatch(e, &st, &poll))?;
            Ok(Inotify { fd, state })
        }

        /// Watches `db_name` in `dir`; true when events cover it (a local file system).
        pub(super) fn watch(
            &mut self,
            dir: &Path,
            db_name: &OsStr,
            notify: Arc<Changes>,
        ) -> io::Result<bool> {
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let wd = match st.dirs.get(dir) {
                Some(&wd) => wd,
                None => {
                    let wd = self.fd.add_watch(dir)?;
                    st.dirs.insert(dir.to_path_buf(), wd);
                    let remote = inotify::misses_remote_writes(dir);
                    let names = Names::default();
                    let path = dir.to_path_buf();
                    st.by_wd.entry(wd).or_insert(Dir {
                        path,
                        names,
                        remote,
                    });
                    wd
                }
            };
            let d = st
                .by_wd
                .get_mut(&wd)
                .expect("a watched directory has its entry");
            if !d.remote {
                // The databases events cover count among the reader's listeners.
                notify.attach(&self.fd.listeners());
            }
            add_names(&mut d.names, db_name, notify);
            Ok(!d.remote)
        }

        /// Who listens to the descriptor's events now.
        #[cfg(test)]
        pub(super) fn listeners(&self) -> Arc<crate::platform::inotify::Listeners> {
            self.fd.listeners()
        }

        pub(super) fn coalesce_for_pace(&self, pace: Duration) {
            self.fd.coalesce_for_pace(pace);
        }

        pub(super) fn unwatch(&mut self, dir: &Path, db_name: &OsStr, notify: &Arc<Changes>) {
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(&wd) = st.dirs.get(dir) {
                if let Some(d) = st.by_wd.get_mut(&wd) {
                    remove_names(&mut d.names, db_name, notify);
                }
            }
            notify.detach();
        }
    }

    fn dispatch(event: Event<'_>, state: &Mutex<State>, poll: &SafetyPoll) {
        let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
        match event {
            Event::Overflow => {
                // Events were lost: wake every database (each finds out for itself).
                let all = st.by_wd.values().flat_map(|d| d.names.values()).flatten();
                all.for_each(|n| n.notify_one());
            }
            Event::Name { wd, name } => {
                if let Some(list) = st.by_wd.get(&wd).and_then(|d| d.names.get(name)) {
                    for n in list {
                        n.notify_one();
                    }
                }
            }
            Event::Gone { wd } => {
                // The directory was deleted, moved away or unmounted: no event will come
                // for its databases again. They are polled from now on (a later watch of
                // the same path adds a fresh watch), and woken to look now.
                let Some(d) = st.by_wd.remove(&wd) else {
                    return;
                };
                st.dirs.remove(&d.path);
                drop(st);
                for (db, notify) in databases(&d) {
                    notify.detach();
                    if !d.remote {
                        poll.add(&db, notify.clone());
                    }
                    notify.notify_one();
                }
            }
        }
    }

    /// The databases of a watched directory, each once with its wake-up handle: the
    /// names that have a `-wal` name beside them.
    fn databases(d: &Dir) -> Vec<(PathBuf, Arc<Changes>)> {
        let mut out = Vec::new();
        for (name, notifies) in &d.names {
            let mut wal = name.clone();
            wal.push("-wal");
            if d.names.contains_key(&wal) {
                out.extend(notifies.iter().map(|n| (d.path.join(name), n.clone())));
            }
        }
        out
    }
}

/// Other platforms: the `notify` crate's watcher, with its own thread.
#[cfg(not(target_os = "linux"))]
mod portable {
    use super::*;
    use notify::{RecursiveMode, Watcher};

    pub(super) struct Portable {
        watcher: notify::RecommendedWatcher,
        targets: Arc<Mutex<HashMap<PathBuf, Names>>>,
    }

    impl Portable {
        pub(super) fn new() -> notify::Result<Portable> {
            let targets: Arc<Mutex<HashMap<PathBuf, Names>>> = Arc::default();
            let t = targets.clone();
            let watcher =
                notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
                    let Ok(ev) = res else { return };
                    if matches!(ev.kind, notify::EventKind::Access(_)) {
                        return;
                    }
                    let map = t.lock().unwrap_or_else(|p| p.into_inner());
                    for p in &ev.paths {
                        let (Some(dir), Some(name)) = (p.parent(), p.file_name()) else {
                            continue;
                        };
                        if let Some(list) = map.get(dir).and_then(|names| names.get(name)) {
                            for n in list {
                                n.notify_one();
                            }
                        }
                    }
                })?;
            Ok(Portable { watcher, targets })
        }

        pub(super) fn watch(
            &mut self,
            dir: &Path,
            db_name: &std::ffi::OsStr,
            notify: Arc<Changes>,
        ) -> notify::Result<bool> {
            let first = {
                let mut map = self.targets.lock().unwrap_or_else(|p| p.into_inner());
                let first = !map.contains_key(dir);
                add_names(map.entry(dir.to_path_buf()).or_default(), db_name, notify);
                first
            };
            if first {
                self.watcher.watch(dir, RecursiveMode::NonRecursive)?;
            }
            // These watchers coalesce and may drop events: the safety poll stays on.
            Ok(false)
        }

        pub(super) fn unwatch(
            &mut self,
            dir: &Path,
            db_name: &std::ffi::OsStr,
            notify: &Arc<Changes>,
        ) {
            let mut map = self.targets.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(names) = map.get_mut(dir) {
                remove_names(names, db_name, notify);
            }
        }
    }
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// What a `stat` says about a file: identity, size, modification and change times.
type FileStat = Option<crate::platform::ChangeStamp>;

fn file_stat(p: &Path) -> FileStat {
    crate::platform::change_stamp(p)
}

/// Each tick, every database whose files changed is woken; on top, each database is
/// woken unconditionally once every this many ticks (staggered across databases), in
/// case a write left size and times unchanged (a coarse clock, a WAL rewritten in place).
const FORCE_EVERY_TICKS: usize = 300;

struct Polled {
    db: PathBuf,
    wal: PathBuf,
    notify: Arc<Changes>,
    last: (FileStat, FileStat),
}

/// The process-wide safety poll: see the module docs. Clones share one list, so
/// databases can be added and removed while it runs.
#[derive(Default, Clone)]
pub struct SafetyPoll {
    dbs: Arc<Mutex<Vec<Polled>>>,
    /// Woken when a database is added, so an empty poll waits with no timer.
    added: Arc<Notify>,
}

impl SafetyPoll {
    pub fn new() -> SafetyPoll {
        SafetyPoll::default()
    }

    /// Polls `db` (and its `-wal`), waking `notify` when they change.
    pub fn add(&self, db: &Path, notify: Arc<Changes>) {
        let db = absolute(db);
        let mut wal = db.as_os_str().to_os_string();
        wal.push("-wal");
        let wal = PathBuf::from(wal);
        let last = (file_stat(&wal), file_stat(&db));
        let mut dbs = self.dbs.lock().unwrap_or_else(|p| p.into_inner());
        dbs.push(Polled {
            db,
            wal,
            notify,
            last,
        });
        self.added.notify_waiters();
    }

    /// How many databases are polled.
    pub fn len(&self) -> usize {
        self.dbs.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Resolves once a database is polled (at once if one is now).
    async fn until_not_empty(&self) {
        loop {
            let added = self.added.notified();
            tokio::pin!(added);
            added.as_mut().enable();
            if !self.is_empty() {
                return;
            }
            added.await;
        }
    }

    /// Stops polling for `notify` (a database removed while the others run).
    pub fn remove(&self, notify: &Arc<Changes>) {
        let mut dbs = self.dbs.lock().unwrap_or_else(|p| p.into_inner());
        dbs.retain(|p| !Arc::ptr_eq(&p.notify, notify));
    }

    /// Runs until `shutdown` turns true. One blocking sweep per tick for all polled
    /// databases; no tick while there are none.
    pub async fn run(self, interval: Duration, mut shutdown: watch::Receiver<bool>) {
        let mut tick = 0usize;
        loop {
            let next = async {
                self.until_not_empty().await;
                tokio::time::sleep(interval).await;
            };
            tokio::select! {
                _ = next => {}
                r = shutdown.changed() => {
                    if r.is_err() || *shutdown.borrow() { return; }
                    continue;
                }
            }
            tick = tick.wrapping_add(1);
            let d = self.dbs.clone();
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

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// Whether `c` is woken within `within`.
    async fn woken(c: &Changes, within: Duration) -> bool {
        tokio::time::timeout(within, c.notified()).await.is_ok()
    }

    fn listening(w: &ChangeWatcher) -> usize {
        w.inner.as_ref().expect("inotify here").listeners().count()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn inotify_is_not_read_while_every_database_waits_and_is_read_when_one_listens() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("app.db");
        let wal = dir.path().join("app.db-wal");
        std::fs::write(&db, b"").unwrap();
        let mut w = ChangeWatcher::new(SafetyPoll::new());
        assert!(w.is_event_driven(), "inotify on a local temp dir");
        w.pace_of_watched(Duration::from_millis(20));
        let changes = Arc::new(Changes::new());
        w.watch(&db, changes.clone());
        assert_eq!(
            listening(&w),
            1,
            "a covered database listens from the start"
        );
        let long = Duration::from_secs(10);

        std::fs::write(&wal, b"1").unwrap();
        assert!(
            woken(&changes, long).await,
            "a WAL write wakes a listening database"
        );

        let quiet = changes.not_listening();
        assert_eq!(listening(&w), 0, "a waiting database does not listen");
        // The reader reads at most what was queued when it last looked (it may be back on
        // readiness, or still reading the first write's events), then stops until one listens.
        std::fs::write(&wal, b"2").unwrap();
        let readers = w.inner.as_ref().expect("inotify here").listeners();
        let stopped = tokio::time::timeout(long, readers.until_reader_waits()).await;
        assert!(
            stopped.is_ok(),
            "the reader did not stop within {long:?} while nobody listened"
        );
        // Whatever it read before stopping woke the database; take that wake-up.
        let _ = woken(&changes, Duration::from_millis(1)).await;
        // Nothing more is read while nobody listens: the next event waits in the kernel.
        std::fs::write(&wal, b"3").unwrap();
        assert!(
            !woken(&changes, Duration::from_millis(500)).await,
            "no read while every database waits"
        );
        assert!(readers.reader_waits(), "still waiting for a listener");
        drop(quiet);
        assert_eq!(listening(&w), 1, "listening again after the wait");
        assert!(
            woken(&changes, long).await,
            "the waiting event is read once one listens"
        );

        // A second wait, and the database unwatched during it: it counts nowhere after.
        let quiet = changes.not_listening();
        w.unwatch(&db, &changes);
        drop(quiet);
        assert_eq!(listening(&w), 0, "an unwatched database is not counted");
    }
}
