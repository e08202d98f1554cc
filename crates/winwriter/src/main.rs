//! `winwriter`: the application side of the Windows end-to-end tests
//! (crates/cli/tests/it/windows.rs). Cross-built for x86_64-pc-windows-gnu and run under
//! Wine, it is a Windows process using SQLite's Windows VFS (its `LockFileEx` locks on the
//! database and `-shm`), which is what the replicator must coexist with there. It builds on
//! Linux too, only so the workspace's gates cover it; it is not part of any release.
//!
//! ```text
//! winwriter write DB ROWS SIZE [BATCH]  commit ROWS rows of SIZE random bytes, BATCH rows
//!                                       per transaction (default 1), WAL mode; prints
//!                                       "committed ROWS"
//! winwriter checkpoint DB MODE          PRAGMA wal_checkpoint(MODE); prints
//!                                       "checkpoint MODE busy=B log=L checkpointed=C"
//! winwriter dump DB OUT                 the committed pages, in page order, into OUT
//!                                       (one read transaction); prints "pages N"
//! winwriter query DB SQL                the rows SQL returns on DB, opened read-only: one
//!                                       a line, columns tab-separated, blobs in hex
//! winwriter vfs-query DLL URI SQL       loads the extension DLL (sqlite_replicate_vfs.dll,
//!                                       through load_extension), then as `query` on the
//!                                       SQLite URI (file:app.db?vfs=sqlite-replicate&...);
//!                                       a failed query adds the VFS's own error (PRAGMA
//!                                       sqlite_replicate_error)
//! ```
//!
//! Every connection waits up to `BUSY_TIMEOUT` for locks, as an application would. Errors
//! go to stderr with exit status 1; bad usage exits 2.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};

/// How long a connection waits for a lock (SQLite's busy handler), like a typical
/// application; a checkpoint that still reports busy after it is what the tests look for.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const USAGE: &str = "usage: winwriter write DB ROWS SIZE [BATCH] | checkpoint DB MODE | dump DB OUT | query DB SQL | vfs-query DLL URI SQL";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        ["write", db, rows, size, rest @ ..] if rest.len() <= 1 => {
            match (
                rows.parse(),
                size.parse(),
                rest.first().map_or(Ok(1), |b| b.parse()),
            ) {
                (Ok(rows), Ok(size), Ok(batch)) if batch > 0 => write(db, rows, size, batch),
                _ => return usage(),
            }
        }
        ["checkpoint", db, mode] => checkpoint(db, mode),
        ["dump", db, out] => dump(db, Path::new(out)),
        ["query", db, sql] => Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(Into::into)
            .and_then(|c| query(&c, sql)),
        ["vfs-query", dll, uri, sql] => vfs_query(Path::new(dll), uri, sql),
        _ => return usage(),
    };
    match result {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("winwriter {}: {e}", args.join(" "));
            ExitCode::FAILURE
        }
    }
}

fn usage() -> ExitCode {
    eprintln!("{USAGE}");
    ExitCode::from(2)
}

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn open(db: &str) -> Result<Connection> {
    let c = Connection::open(db)?;
    c.busy_timeout(BUSY_TIMEOUT)?;
    let mode: String = c.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(format!("{db}: journal_mode is {mode}, not wal").into());
    }
    c.execute_batch("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v BLOB)")?;
    Ok(c)
}

fn write(db: &str, rows: u64, size: u64, batch: u64) -> Result<String> {
    let mut c = open(db)?;
    let mut left = rows;
    while left > 0 {
        let n = left.min(batch);
        let tx = c.transaction()?;
        for _ in 0..n {
            tx.execute("INSERT INTO t(v) VALUES (randomblob(?1))", [size as i64])?;
        }
        tx.commit()?;
        left -= n;
    }
    Ok(format!("committed {rows}"))
}

fn checkpoint(db: &str, mode: &str) -> Result<String> {
    if !["PASSIVE", "FULL", "RESTART", "TRUNCATE"].contains(&mode) {
        return Err(format!("unknown checkpoint mode {mode}").into());
    }
    let c = open(db)?;
    let (busy, log, done): (i64, i64, i64) =
        c.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
    Ok(format!(
        "checkpoint {mode} busy={busy} log={log} checkpointed={done}"
    ))
}

fn dump(db: &str, out: &Path) -> Result<String> {
    let mut c = open(db)?;
    // One read transaction: every page from the same snapshot.
    let tx = c.transaction()?;
    let mut pages = Vec::new();
    {
        let mut st = tx.prepare("SELECT data FROM sqlite_dbpage ORDER BY pgno")?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            let page: Vec<u8> = r.get(0)?;
            pages.push(page);
        }
    }
    tx.commit()?;
    std::fs::write(out, pages.concat()).map_err(|e| format!("writing {}: {e}", out.display()))?;
    Ok(format!("pages {}", pages.len()))
}

/// The rows of `sql`: one a line, columns tab-separated, blobs in hex.
fn query(c: &Connection, sql: &str) -> Result<String> {
    let mut st = c.prepare(sql)?;
    let n = st.column_count();
    let mut rows = st.query([])?;
    let mut lines = Vec::new();
    while let Some(r) = rows.next()? {
        let mut cols = Vec::with_capacity(n);
        for i in 0..n {
            cols.push(match r.get_ref(i)? {
                ValueRef::Null => "NULL".to_string(),
                ValueRef::Integer(v) => v.to_string(),
                ValueRef::Real(v) => v.to_string(),
                ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
                ValueRef::Blob(b) => b.iter().map(|x| format!("{x:02x}")).collect(),
            });
        }
        lines.push(cols.join("\t"));
    }
    Ok(lines.join("\n"))
}

/// Loads the VFS extension `dll` (it registers the VFS for the whole process), then runs
/// `sql` on `uri` through it.
fn vfs_query(dll: &Path, uri: &str, sql: &str) -> Result<String> {
    let loader = Connection::open_in_memory()?;
    // SAFETY: the extension is the one under test, loaded on purpose; loading is
    // switched off again at once.
    unsafe {
        let _guard = rusqlite::LoadExtensionGuard::new(&loader)?;
        loader
            .load_extension(dll, None::<&str>)
            .map_err(|e| format!("loading {}: {e}", dll.display()))?;
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI;
    let c = Connection::open_with_flags(uri, flags).map_err(|e| format!("opening {uri}: {e}"))?;
    query(&c, sql).map_err(|e| {
        let vfs: rusqlite::Result<String> =
            c.query_row("PRAGMA sqlite_replicate_error", [], |r| r.get(0));
        format!(
            "{e} (sqlite_replicate_error: {})",
            vfs.unwrap_or_else(|e| e.to_string())
        )
        .into()
    })
}
