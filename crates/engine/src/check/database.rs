//! Checks of one database on this machine: its settings (through `sqlite::inspect`), its
//! integrity, its WAL's size, and whether this user may write where the replicator writes.
//!
//! Permissions are asked of the kernel (`faccessat` with the effective user; on Windows an
//! open with the access wanted, see `platform::check_access`), so ACLs and read-only
//! mounts count; they hold for the user running `check`, which should be the user that
//! runs `replicate`.

use crate::platform::{self, Access};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{human_bytes, wal_level, Finding, Level, Thresholds};
use crate::sqlite::db::{DbError, DbPaths};
use crate::sqlite::inspect::{self, DbFacts};

/// What to check about a database.
#[derive(Clone, Debug)]
pub struct DbCheck {
    pub db: PathBuf,
    /// The replicator's local state directory for it.
    pub meta_dir: PathBuf,
    /// Run `PRAGMA quick_check` (reads the whole database).
    pub quick_check: bool,
    pub busy_timeout: Duration,
}

/// Every finding about one database. Blocking: run it off the async runtime.
pub fn check(c: &DbCheck, t: &Thresholds) -> Vec<Finding> {
    let mut out = permissions(c);
    match inspect::inspect(&c.db, c.quick_check, c.busy_timeout) {
        Ok(facts) => out.extend(judge(&facts, t)),
        Err(DbError::Missing { .. }) => out.push(Finding::warn(
            "database",
            format!("{} does not exist yet", c.db.display()),
            "`replicate` waits for it to appear; check the path if the application should have created it",
        )),
        Err(e @ DbError::NotSqlite { .. }) => out.push(Finding::fail(
            "database",
            e.to_string(),
            "point the config at the application's SQLite database file",
        )),
        Err(e) => out.push(Finding::fail(
            "database",
            format!("cannot read the database: {e}"),
            "check the file's permissions and that no other process holds an exclusive lock",
        )),
    }
    out
}

/// The findings the facts of a database call for (pure).
pub fn judge(f: &DbFacts, t: &Thresholds) -> Vec<Finding> {
    let mut out = Vec::new();
    out.push(if f.journal_mode == "wal" {
        Finding::ok("journal-mode", "journal mode is WAL")
    } else {
        Finding::fail(
            "journal-mode",
            format!("journal mode is {:?}, not WAL: nothing can be replicated", f.journal_mode),
            "run `PRAGMA journal_mode=WAL` once (it is stored in the file), or have the application set it at startup",
        )
    });
    let sync_name = match f.new_connection_synchronous {
        0 => "OFF",
        1 => "NORMAL",
        2 => "FULL",
        3 => "EXTRA",
        _ => "unknown",
    };
    let note = "synchronous is a per-connection setting that no other process can see: make sure the \
                application's connections use NORMAL (safe from corruption in WAL mode; a power loss may \
                drop the last commits) or FULL";
    out.push(if f.new_connection_synchronous == 0 {
        Finding::warn(
            "synchronous",
            "a new connection gets synchronous=OFF (compiled default): a power loss can corrupt the database",
            format!("set `PRAGMA synchronous=NORMAL` on every application connection; {note}"),
        )
    } else {
        Finding::ok(
            "synchronous",
            format!("a new connection gets synchronous={sync_name}"),
        )
        .with_action(note)
    });
    out.push(
        Finding::ok(
            "wal-autocheckpoint",
            match f.new_connection_wal_autocheckpoint {
                n if n > 0 => format!("a new connection checkpoints (PASSIVE) every {n} WAL pages"),
                _ => "a new connection never checkpoints by itself (wal_autocheckpoint=0)".to_string(),
            },
        )
        .with_action(
            "wal_autocheckpoint is per connection; either value is fine while `replicate` runs, which \
             checkpoints after min-checkpoint-page-count pages; avoid TRUNCATE or RESTART checkpoints \
             from the application while it runs",
        ),
    );
    out.push(Finding::ok(
        "page-size",
        format!(
            "page size {} bytes, {} pages ({})",
            f.page_size,
            f.page_count,
            human_bytes(f.page_count * f.page_size as u64)
        ),
    ));
    if let Some(rows) = &f.quick_check {
        out.push(if rows.len() == 1 && rows[0] == "ok" {
            Finding::ok("quick-check", "PRAGMA quick_check: ok")
        } else {
            let shown: Vec<&str> = rows.iter().take(5).map(String::as_str).collect();
            let more = rows.len().saturating_sub(shown.len());
            Finding::fail(
                "quick-check",
                format!(
                    "PRAGMA quick_check found damage: {}{}",
                    shown.join("; "),
                    if more > 0 { format!(" (and {more} more)") } else { String::new() }
                ),
                "the database file is damaged: restore the last good state from a replica \
                 (`sqlite-replicate restore -timestamp ...`) or salvage it with the sqlite3 shell's `.recover`",
            )
        });
    }
    let wal_action = "the WAL is not being checkpointed: make sure `sqlite-replicate replicate` is running \
                      (it checkpoints), and look for long read transactions in the application that block \
                      checkpoints";
    out.push(match f.wal_size_bytes {
        None => Finding::ok(
            "wal-size",
            "no WAL file (SQLite creates it at the next write)",
        ),
        Some(n) => match wal_level(n, t) {
            Level::Ok => Finding::ok(
                "wal-size",
                format!(
                    "WAL is {} (warning at {})",
                    human_bytes(n),
                    human_bytes(t.wal_warn_bytes)
                ),
            ),
            Level::Warn => Finding::warn(
                "wal-size",
                format!(
                    "WAL is {}, above the warning threshold of {}",
                    human_bytes(n),
                    human_bytes(t.wal_warn_bytes)
                ),
                wal_action,
            ),
            Level::Fail => Finding::fail(
                "wal-size",
                format!(
                    "WAL is {}, above the failure threshold of {}",
                    human_bytes(n),
                    human_bytes(t.wal_fail_bytes)
                ),
                wal_action,
            ),
        },
    });
    out
}

/// Can this user write what the replicator writes: the database and its `-wal`/`-shm`, the
/// database's directory (SQLite creates `-wal`/`-shm` there), and the local state directory
/// (or the directory it will be created in)?
fn permissions(c: &DbCheck) -> Vec<Finding> {
    let user = platform::user_description();
    let mut out = Vec::new();
    let mut problems = Vec::new();
    let paths = DbPaths::new(&c.db);
    for (what, p) in [
        ("database", &paths.db),
        ("WAL", &paths.wal),
        ("wal-index", &paths.shm),
    ] {
        if p.exists() {
            if let Err(e) = platform::check_access(p, Access::ReadWrite) {
                problems.push(Finding::fail(
                    "permissions",
                    format!("{what} file {} is not readable and writable by {user}: {e}", p.display()),
                    format!("chown or chmod {} so the user running sqlite-replicate can read and write it", p.display()),
                ));
            }
        }
    }
    if let Some(dir) = c.db.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Err(e) = platform::check_access(dir, Access::CreateIn) {
            problems.push(Finding::fail(
                "permissions",
                format!(
                    "database directory {} is not writable by {user}: {e}; SQLite cannot create the -wal and -shm files there",
                    dir.display()
                ),
                format!("chown or chmod {} so the user running sqlite-replicate can create files in it", dir.display()),
            ));
        }
    }
    let meta_target = if c.meta_dir.exists() {
        c.meta_dir.clone()
    } else {
        nearest_existing(&c.meta_dir)
    };
    if let Err(e) = platform::check_access(&meta_target, Access::CreateIn) {
        let msg = if meta_target == c.meta_dir {
            format!(
                "local state directory {} is not writable by {user}: {e}",
                c.meta_dir.display()
            )
        } else {
            format!(
                "local state directory {} cannot be created: {} is not writable by {user}: {e}",
                c.meta_dir.display(),
                meta_target.display()
            )
        };
        problems.push(Finding::fail(
            "permissions",
            msg,
            format!(
                "chown or chmod {} (or set meta-path in the config to a writable place)",
                meta_target.display()
            ),
        ));
    }
    if problems.is_empty() {
        out.push(Finding::ok(
            "permissions",
            format!(
                "{user} can write the database, its directory and the local state directory {}",
                c.meta_dir.display()
            ),
        ));
    }
    out.extend(problems);
    out
}

fn nearest_existing(p: &Path) -> PathBuf {
    let mut cur = p;
    while let Some(parent) = cur.parent() {
        if parent.as_os_str().is_empty() {
            return PathBuf::from(".");
        }
        if parent.exists() {
            return parent.to_path_buf();
        }
        cur = parent;
    }
    PathBuf::from("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> DbFacts {
        DbFacts {
            journal_mode: "wal".into(),
            page_size: 4096,
            page_count: 10,
            new_connection_synchronous: 2,
            new_connection_wal_autocheckpoint: 1000,
            quick_check: Some(vec!["ok".into()]),
            wal_size_bytes: Some(4096),
        }
    }

    fn levels(f: &DbFacts, t: &Thresholds) -> Vec<(&'static str, Level)> {
        judge(f, t)
            .into_iter()
            .map(|f| (f.check, f.level))
            .collect()
    }

    #[test]
    fn a_sound_database_is_all_ok() {
        assert!(levels(&facts(), &Thresholds::default())
            .iter()
            .all(|(_, l)| *l == Level::Ok));
    }

    #[test]
    fn each_broken_setting_fails_or_warns_alone() {
        let t = Thresholds::default();
        let cases: Vec<(DbFacts, &str, Level)> = vec![
            (
                DbFacts {
                    journal_mode: "delete".into(),
                    ..facts()
                },
                "journal-mode",
                Level::Fail,
            ),
            (
                DbFacts {
                    new_connection_synchronous: 0,
                    ..facts()
                },
                "synchronous",
                Level::Warn,
            ),
            (
                DbFacts {
                    quick_check: Some(vec![
                        "*** in database main ***".into(),
                        "Page 2: btreeInitPage() returns error code 11".into(),
                    ]),
                    ..facts()
                },
                "quick-check",
                Level::Fail,
            ),
            (
                DbFacts {
                    wal_size_bytes: Some(200 << 20),
                    ..facts()
                },
                "wal-size",
                Level::Warn,
            ),
            (
                DbFacts {
                    wal_size_bytes: Some(2 << 30),
                    ..facts()
                },
                "wal-size",
                Level::Fail,
            ),
        ];
        for (f, check, want) in cases {
            let got = levels(&f, &t);
            for (c, l) in got {
                let expect = if c == check { want } else { Level::Ok };
                assert_eq!(l, expect, "{check}: finding {c}");
            }
        }
    }

    #[test]
    fn damage_is_quoted_in_the_message() {
        let f = DbFacts {
            quick_check: Some(vec!["Page 2: btreeInitPage() returns error code 11".into()]),
            ..facts()
        };
        let m = judge(&f, &Thresholds::default())
            .into_iter()
            .find(|f| f.check == "quick-check")
            .unwrap();
        assert!(
            m.message.contains("Page 2: btreeInitPage()"),
            "{}",
            m.message
        );
    }
}
