//! Read-only looks at a live database, for `check` and the restore drill.
//!
//! Owns: the facts `check` judges ([`inspect`]: journal mode, page size and count, what a
//! new connection gets for the per-connection settings `synchronous` and
//! `wal_autocheckpoint`, `PRAGMA quick_check`, the WAL's size), and [`SourceSnapshot`]: a
//! read transaction on the source together with the WAL position it sees, so a drill can
//! tell whether the source is exactly at a TXID the replicator captured.
//!
//! Writes nothing: connections are `query_only` and never checkpoint on close (closing the
//! last connection would otherwise checkpoint and delete the WAL under the replicator).
//! Does not judge anything (`check` does) or know about replicas.

use crate::platform::FileExt;
use std::path::Path;
use std::time::Duration;

use ltx::{PageNo, PageSize};
use rusqlite::{Connection, OpenFlags};

use super::db::{read_live_db_header, DbError, DbPaths};
use super::wal::FRAME_HEADER_SIZE;

/// What `check` needs to know about one database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DbFacts {
    /// `PRAGMA journal_mode`, lower case (`wal`, `delete`, ...).
    pub journal_mode: String,
    pub page_size: u32,
    pub page_count: u64,
    /// `PRAGMA synchronous` of a fresh connection (0 OFF, 1 NORMAL, 2 FULL, 3 EXTRA). The
    /// setting is per connection: the application's own connections may differ, and no
    /// other process can see what they use.
    pub new_connection_synchronous: i64,
    /// `PRAGMA wal_autocheckpoint` of a fresh connection, in pages (per connection too).
    pub new_connection_wal_autocheckpoint: i64,
    /// `PRAGMA quick_check`'s rows (`["ok"]` when sound); `None` when not asked.
    pub quick_check: Option<Vec<String>>,
    /// Size of the `-wal` file, `None` when there is none.
    pub wal_size_bytes: Option<u64>,
}

/// A read-only connection that never checkpoints on close.
fn open_reader(db: &Path, busy: Duration) -> Result<Connection, DbError> {
    let sq = |op| {
        let path = db.to_path_buf();
        move |source| DbError::Sqlite { path, op, source }
    };
    // READ_WRITE (not READ_ONLY): a read-only connection cannot create a missing `-shm`,
    // and `query_only` below forbids writes anyway. SQLite falls back to read-only by
    // itself when the file is not writable.
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let c = Connection::open_with_flags(db, flags).map_err(sq("open"))?;
    c.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
        true,
    )
    .map_err(sq("disable checkpoint on close"))?;
    c.busy_timeout(busy).map_err(sq("set busy timeout"))?;
    c.execute_batch("PRAGMA query_only=1; PRAGMA cache_size=-256;")
        .map_err(sq("configure"))?;
    Ok(c)
}

/// Reads the facts of `db`. A missing file or one that is not SQLite is an error; a
/// corrupt one is not: its `quick_check` rows (or the error SQLite raised running it)
/// say what is wrong.
pub fn inspect(db: &Path, quick_check: bool, busy: Duration) -> Result<DbFacts, DbError> {
    let page_size = read_live_db_header(db)?;
    let c = open_reader(db, busy)?;
    let sq = |op| {
        let path = db.to_path_buf();
        move |source| DbError::Sqlite { path, op, source }
    };
    let int = |pragma: &'static str| {
        c.query_row(pragma, [], |r| r.get::<_, i64>(0))
            .map_err(sq(pragma))
    };
    let journal_mode: String = c
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .map_err(sq("PRAGMA journal_mode"))?;
    let facts_page_count = int("PRAGMA page_count")?;
    let synchronous = int("PRAGMA synchronous")?;
    let autocheckpoint = int("PRAGMA wal_autocheckpoint")?;
    let quick = if quick_check {
        Some(match run_rows(&c, "PRAGMA quick_check") {
            Ok(rows) => rows,
            // A corrupt file can make the pragma itself fail: that is its finding.
            Err(e) => vec![e.to_string()],
        })
    } else {
        None
    };
    let wal = DbPaths::new(db).wal;
    let wal_size_bytes = match std::fs::metadata(&wal) {
        Ok(m) => Some(m.len()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(source) => {
            return Err(DbError::Io {
                path: wal,
                op: "stat",
                source,
            })
        }
    };
    Ok(DbFacts {
        journal_mode: journal_mode.to_ascii_lowercase(),
        page_size: page_size.get(),
        page_count: facts_page_count.max(0) as u64,
        new_connection_synchronous: synchronous,
        new_connection_wal_autocheckpoint: autocheckpoint,
        quick_check: quick,
        wal_size_bytes,
    })
}

fn run_rows(c: &Connection, sql: &str) -> rusqlite::Result<Vec<String>> {
    let mut st = c.prepare(sql)?;
    let rows = st.query_map([], |r| r.get::<_, String>(0))?;
    rows.collect()
}

/// Where a read transaction's view of the WAL ends: the WAL's salts and the byte offset
/// just past the last frame it sees (32 when it sees no frame).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalEnd {
    pub salt1: u32,
    pub salt2: u32,
    pub offset: u64,
}

/// A read transaction on a live database, held until dropped, and where its view ends.
pub struct SourceSnapshot {
    conn: Connection,
    db: std::path::PathBuf,
    page_size: PageSize,
    /// `None` when the wal-index kept changing while the transaction started (a busy
    /// writer), so the view's end could not be pinned down.
    pub wal_end: Option<WalEnd>,
}

/// Attempts at starting a read transaction between two identical wal-index readings.
const SNAPSHOT_ATTEMPTS: usize = 20;

impl SourceSnapshot {
    /// Starts a read transaction on `db` and finds where its view of the WAL ends: the
    /// wal-index header is read before and after the transaction starts; when both
    /// readings agree (same salts, same last frame), the transaction took exactly that view
    /// (the last frame only grows while the salts stay, and a WAL restart changes salt-1).
    /// Invariant D1: only such a pinned view is compared page for page.
    pub fn open(db: &Path, busy: Duration) -> Result<SourceSnapshot, DbError> {
        let page_size = read_live_db_header(db)?;
        let conn = open_reader(db, busy)?;
        let sq = |op| {
            let path = db.to_path_buf();
            move |source| DbError::Sqlite { path, op, source }
        };
        // A first read outside a transaction makes sure the wal-index exists.
        conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| {
            r.get::<_, i64>(0)
        })
        .map_err(sq("read schema"))?;
        let shm = DbPaths::new(db).shm;
        let frame_size = FRAME_HEADER_SIZE + page_size.get() as u64;
        let mut wal_end = None;
        for attempt in 0..SNAPSHOT_ATTEMPTS {
            let before = read_wal_index_header(&shm);
            conn.execute_batch("BEGIN")
                .map_err(sq("begin read transaction"))?;
            conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| {
                r.get::<_, i64>(0)
            })
            .map_err(sq("start read transaction"))?;
            let after = read_wal_index_header(&shm);
            if let (Some(b), Some(a)) = (before, after) {
                if a == b {
                    wal_end = Some(WalEnd {
                        salt1: a.salt1,
                        salt2: a.salt2,
                        offset: 32 + a.mx_frame as u64 * frame_size,
                    });
                    break;
                }
            }
            if attempt + 1 < SNAPSHOT_ATTEMPTS {
                conn.execute_batch("ROLLBACK")
                    .map_err(sq("end read transaction"))?;
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        Ok(SourceSnapshot {
            conn,
            db: db.to_path_buf(),
            page_size,
            wal_end,
        })
    }

    pub fn page_size(&self) -> PageSize {
        self.page_size
    }

    /// Every page the transaction sees, in order, through SQLite's pager
    /// (`sqlite_dbpage`); the lock page is skipped. Returns the page count.
    pub fn for_each_page(
        &self,
        mut f: impl FnMut(PageNo, &[u8]) -> Result<(), DbError>,
    ) -> Result<u32, DbError> {
        let sq = |op| {
            let path = self.db.clone();
            move |source| DbError::Sqlite { path, op, source }
        };
        let mut stmt = self
            .conn
            .prepare("SELECT pgno, data FROM sqlite_dbpage('main') ORDER BY pgno")
            .map_err(sq("read pages"))?;
        let mut rows = stmt.query([]).map_err(sq("read pages"))?;
        let lock = self.page_size.lock_page();
        let mut count = 0;
        while let Some(row) = rows.next().map_err(sq("read pages"))? {
            let pgno: i64 = row.get(0).map_err(sq("read pages"))?;
            let Ok(pgno) = PageNo::new(pgno as u32) else {
                continue;
            };
            count = pgno.get();
            if pgno == lock {
                continue;
            }
            let data = row.get_ref(1).map_err(sq("read pages"))?;
            let bytes = data.as_blob().map_err(|e| sq("read pages")(e.into()))?;
            f(pgno, bytes)?;
        }
        Ok(count)
    }
}

impl Drop for SourceSnapshot {
    fn drop(&mut self) {
        if !self.conn.is_autocommit() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }
}

/// The fields of the wal-index header a snapshot needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct WalIndexHeader {
    mx_frame: u32,
    salt1: u32,
    salt2: u32,
}

/// Reads the wal-index header without a lock: both 48-byte copies must agree (SQLite
/// writes the second, then the first) and be initialised, else `None`. Bytes 0..96 only,
/// clear of the lock bytes (see `db::SHM_RAW_READ`).
fn read_wal_index_header(shm: &Path) -> Option<WalIndexHeader> {
    // Never open-and-close: drills run inside the replicator, beside its pin (`kept_open`).
    let f = super::db::kept_open(shm).ok()?;
    let mut buf = [0u8; 96];
    f.read_exact_at(&mut buf, 0).ok()?;
    if buf[..48] != buf[48..] || buf[12] == 0 {
        return None;
    }
    // Offsets from SQLite's wal.c (WalIndexHdr): mxFrame at 16 in native order; aSalt at 32,
    // copied verbatim from the WAL header, so big-endian like the WAL header itself.
    Some(WalIndexHeader {
        mx_frame: u32::from_ne_bytes(buf[16..20].try_into().ok()?),
        salt1: u32::from_be_bytes(buf[32..36].try_into().ok()?),
        salt2: u32::from_be_bytes(buf[36..40].try_into().ok()?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::wal::WalHeader;

    fn app(dir: &Path) -> (std::path::PathBuf, Connection) {
        let p = dir.join("app.db");
        let c = Connection::open(&p).unwrap();
        c.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0;
             CREATE TABLE t(x); INSERT INTO t VALUES (1);",
        )
        .unwrap();
        (p, c)
    }

    #[test]
    fn facts_of_a_wal_database() {
        let d = tempfile::tempdir().unwrap();
        let (p, _app) = app(d.path());
        let f = inspect(&p, true, Duration::from_secs(1)).unwrap();
        assert_eq!(f.journal_mode, "wal");
        assert_eq!(f.page_size, 4096);
        assert_eq!(f.quick_check.as_deref(), Some(&["ok".to_string()][..]));
        assert!(f.wal_size_bytes.unwrap() > 32);
        assert_eq!(f.new_connection_wal_autocheckpoint, 1000);
        let rollback = d.path().join("r.db");
        Connection::open(&rollback)
            .unwrap()
            .execute_batch("CREATE TABLE t(x)")
            .unwrap();
        let f = inspect(&rollback, false, Duration::from_secs(1)).unwrap();
        assert_eq!(f.journal_mode, "delete");
        assert_eq!(f.quick_check, None);
    }

    #[test]
    fn snapshot_end_matches_the_wal_it_sees() {
        let d = tempfile::tempdir().unwrap();
        let (p, app) = app(d.path());
        app.execute("INSERT INTO t VALUES (2)", []).unwrap();
        let wal = std::fs::read(DbPaths::new(&p).wal).unwrap();
        let h = WalHeader::parse(&wal).unwrap();
        let snap = SourceSnapshot::open(&p, Duration::from_secs(1)).unwrap();
        let end = snap.wal_end.unwrap();
        assert_eq!((end.salt1, end.salt2), (h.salt1, h.salt2));
        assert_eq!(end.offset, wal.len() as u64);
        // A commit after the snapshot began is not in its view.
        app.execute("INSERT INTO t VALUES (3)", []).unwrap();
        let mut pages = 0;
        snap.for_each_page(|_, _| {
            pages += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(pages, 2);
        drop(snap);
        let again = SourceSnapshot::open(&p, Duration::from_secs(1)).unwrap();
        assert!(again.wal_end.unwrap().offset > end.offset);
    }
}
