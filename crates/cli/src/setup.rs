//! From a parsed config to running parts: engine options per database and replica,
//! storage backends, the default config path, logging, and helpers shared by commands.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context};
use engine::replicate::status::ReplicaStatus;
use engine::replicate::{DbOptions, ReplicaOptions, ReplicaSpec};
use engine::restore::output::IntegrityCheck;
use engine::restore::run::{self, Outcome, RestoreOptions, RestoredAt, V3Fallback};
use engine::runtime::DbRun;
use engine::storage::metered::MeteredStore;
use engine::storage::ReplicaStore;
use ltx::PageEncoding;
use tokio::sync::watch;

use crate::config::{self, Config, DbConfig, DbSource, ReplicaConfig};
use crate::logging;
pub use crate::stores::build_store;

/// The config file to read: `-config`, else `$SQLITE_REPLICATE_CONFIG`, `$LITESTREAM_CONFIG`,
/// then the first of [`default_config_files`] that exists (on Unix
/// `/etc/sqlite-replicate.yml`, `/etc/litestream.yml`).
pub fn config_path(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return Some(p.to_path_buf());
    }
    for var in ["SQLITE_REPLICATE_CONFIG", "LITESTREAM_CONFIG"] {
        if let Ok(v) = std::env::var(var) {
            if !v.is_empty() {
                return Some(PathBuf::from(v));
            }
        }
    }
    default_config_files().into_iter().find(|p| p.exists())
}

/// Where a config file is looked for when neither `-config` nor a variable names one.
#[cfg(unix)]
pub fn default_config_files() -> Vec<PathBuf> {
    ["/etc/sqlite-replicate.yml", "/etc/litestream.yml"]
        .iter()
        .map(PathBuf::from)
        .collect()
}

/// Where a config file is looked for when neither `-config` nor a variable names one:
/// `%ProgramData%\sqlite-replicate\sqlite-replicate.yml` (where the MSI puts it), then
/// Litestream's usual `C:\Litestream\litestream.yml`. The ProgramData folder is the one
/// the MSI resolves (`process::program_data_dir`), the variable only when that fails.
#[cfg(windows)]
pub fn default_config_files() -> Vec<PathBuf> {
    let data = engine::platform::process::program_data_dir()
        .and_then(|p| p.into_os_string().into_string().ok())
        .or_else(|| std::env::var("ProgramData").ok());
    windows_config_files(data.as_deref())
}

/// [`default_config_files`] on Windows, given `%ProgramData%` (`C:\ProgramData` when
/// unset). Pure, so it is tested on every OS.
#[cfg_attr(not(windows), allow(dead_code))]
pub fn windows_config_files(program_data: Option<&str>) -> Vec<PathBuf> {
    let data = program_data
        .filter(|d| !d.is_empty())
        .unwrap_or(r"C:\ProgramData")
        .trim_end_matches(['\\', '/']);
    vec![
        PathBuf::from(format!(r"{data}\sqlite-replicate\sqlite-replicate.yml")),
        PathBuf::from(r"C:\Litestream\litestream.yml"),
    ]
}

pub fn load_config(explicit: Option<&Path>, expand_env: bool) -> anyhow::Result<Config> {
    let path = config_path(explicit)
        .context("no config file: pass -config FILE (or set $SQLITE_REPLICATE_CONFIG)")?;
    Ok(config::load(&path, expand_env)?)
}

/// [`load_config`], with the file's top level for databases registered while running
/// (`config::load_with_template`).
pub fn load_config_with_template(
    explicit: Option<&Path>,
    expand_env: bool,
) -> anyhow::Result<(Config, serde_norway::Value)> {
    let path = config_path(explicit)
        .context("no config file: pass -config FILE (or set $SQLITE_REPLICATE_CONFIG)")?;
    Ok(config::load_with_template(&path, expand_env)?)
}

/// The config if one is found by the default rules, for commands that can run without one.
pub fn load_config_if_present(expand_env: bool) -> anyhow::Result<Option<Config>> {
    match config_path(None) {
        Some(p) => Ok(Some(config::load(&p, expand_env)?)),
        None => Ok(None),
    }
}

/// A config for `replicate DB_PATH REPLICA_URL`.
pub fn config_for_url(db: &str, url: &str) -> anyhow::Result<Config> {
    Ok(config::for_url(db, url, &|k| std::env::var(k).ok())?)
}

/// Logging for a one-shot command: always on stderr (stdout carries its results).
pub fn init_logging(cfg: &Config, override_level: Option<&str>) {
    init_logging_to(cfg, override_level, false);
}

/// Logging for `replicate` and `standby`: on stdout when the config says
/// `logging.stderr: false`, as Litestream's `replicate` does.
pub fn init_daemon_logging(cfg: &Config, override_level: Option<&str>) {
    init_logging_to(cfg, override_level, cfg.logging.stdout);
}

fn init_logging_to(cfg: &Config, override_level: Option<&str>, stdout: bool) {
    let level = override_level
        .map(str::to_string)
        .unwrap_or_else(|| cfg.logging.level.to_string());
    let format = if cfg.logging.json {
        logging::Format::Json
    } else {
        logging::Format::Text
    };
    let out = logging::Output {
        stdout,
        source: cfg.logging.source,
    };
    logging::init_to(&level, format, out);
}

pub fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    Ok(config::parse_duration(s)?)
}

/// The store of a configured replica: its backend, encrypting with age when the replica
/// has an `age:` block (`encryption.rs`).
pub fn build_replica_store(r: &ReplicaConfig) -> anyhow::Result<Arc<dyn ReplicaStore>> {
    crate::encryption::with_age(build_store(&r.kind)?, r.age.as_ref(), &replica_name(r))
}

/// A replica's display name: its `name`, else its type (two unnamed replicas of one type
/// share it).
pub fn replica_name(r: &ReplicaConfig) -> String {
    r.name
        .clone()
        .unwrap_or_else(|| r.kind.type_name().to_string())
}

fn replica_options(cfg: &Config, db: &DbConfig, r: &ReplicaConfig) -> ReplicaOptions {
    let mut o = ReplicaOptions::with_defaults(replica_name(r));
    if let Some(d) = r.sync_interval {
        o.min_upload_interval = d;
    }
    o.levels = cfg.levels.clone();
    let snap = db.snapshot.as_ref().unwrap_or(&cfg.snapshot);
    o.snapshot_interval = r.snapshot_interval.unwrap_or(snap.interval);
    o.snapshot_retention = r.retention.unwrap_or(snap.retention);
    o.l0_retention = cfg.l0_retention;
    o.l0_retention_check_interval = cfg.l0_retention_check_interval;
    o.retention_enabled = cfg.retention_enabled;
    o.verify_compaction = cfg.verify_compaction;
    o.auto_recover = r.auto_recover;
    o.max_batch = r.max_sync_ltx_files;
    o.budget = r
        .upload_budget
        .map(|b| engine::replicate::budget::UploadBudget {
            per_sec: b.per_sec,
            burst: b.burst,
        });
    o.encoding = if r.legacy_page_encoding {
        PageEncoding::LegacyFrame
    } else {
        PageEncoding::Block
    };
    o
}

fn db_options(cfg: &Config, db: &DbConfig, path: &Path) -> DbOptions {
    let mut o = DbOptions::with_defaults(path.to_path_buf());
    if let Some(m) = &db.meta_path {
        o.meta_dir = m.clone();
    }
    o.busy_timeout = db.busy_timeout;
    o.min_checkpoint_pages = db.min_checkpoint_page_count;
    o.checkpoint_interval = db.checkpoint_interval;
    if let Some(mi) = db.monitor_interval {
        o.poll_interval = mi;
    }
    o.shutdown_sync_timeout = cfg.shutdown_sync_timeout;
    o.shutdown_sync_interval = cfg.shutdown_sync_interval;
    o.truncate_pages = db.truncate_page_n;
    o.max_capture_wal_bytes = db.max_sync_wal_bytes;
    if db.replicas.iter().any(|r| r.legacy_page_encoding) {
        o.encoding = PageEncoding::LegacyFrame;
    }
    o
}

/// Every concrete database of the config (directory entries expanded) with its config.
pub fn concrete_dbs(cfg: &Config) -> anyhow::Result<Vec<(PathBuf, DbConfig)>> {
    let mut out = Vec::new();
    for db in &cfg.dbs {
        match &db.source {
            DbSource::Path(p) => out.push((p.clone(), db.clone())),
            DbSource::Dir {
                dir,
                pattern,
                recursive,
                watch,
            } => {
                let mut files = Vec::new();
                find_files(dir, pattern, *recursive, &mut files)
                    .with_context(|| format!("scanning {}", dir.display()))?;
                files.sort();
                if *watch {
                    // As Litestream: a watched directory's files count once they are
                    // databases (a file being created is picked up when it is one).
                    files.retain(|f| engine::sqlite::db::read_db_header(f).is_ok());
                }
                for f in files {
                    let expanded = config::expand_dir_db(db, &f)?;
                    out.push((f, expanded));
                }
            }
        }
    }
    Ok(out)
}

fn find_files(
    dir: &Path,
    pattern: &str,
    recursive: bool,
    out: &mut Vec<PathBuf>,
) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let ft = e.file_type()?;
        if ft.is_dir() && recursive {
            find_files(&p, pattern, recursive, out)?;
        } else if ft.is_file() && config::glob_match(pattern, &name) {
            out.push(p);
        }
    }
    Ok(())
}

/// Engine runs for every database of the config.
pub fn db_runs(cfg: &Config) -> anyhow::Result<Vec<DbRun>> {
    concrete_dbs(cfg)?
        .into_iter()
        .map(|(path, db)| db_run(cfg, &path, &db))
        .collect()
}

/// The engine run of one concrete database (`db` is a `path:` entry, or a directory
/// entry expanded for `path`).
pub fn db_run(cfg: &Config, path: &Path, db: &DbConfig) -> anyhow::Result<DbRun> {
    let mut replicas = Vec::new();
    for r in &db.replicas {
        let store = build_replica_store(r)
            .with_context(|| format!("{}: replica {}", path.display(), replica_name(r)))?;
        let status = Arc::new(ReplicaStatus::default());
        // Every request to the replica, whoever makes it (uploads, maintenance, the
        // lease, drills), is counted and timed here, whatever the backend.
        let store = Arc::new(MeteredStore::new(store, status.ops.clone()));
        replicas.push(ReplicaSpec {
            opts: replica_options(cfg, db, r),
            store,
            status,
        });
    }
    let mut run = DbRun::new(db_options(cfg, db, path), replicas);
    run.checks = engine::runtime::Checks {
        drill_interval: db.drill_interval,
        validation_intervals: (db.replicas.iter())
            .filter_map(|r| Some((replica_name(r), r.validation_interval?)))
            .collect(),
    };
    Ok(run)
}

/// `databases`: each path with its replicas' names.
pub fn describe_dbs(cfg: &Config) -> anyhow::Result<Vec<(String, Vec<String>)>> {
    Ok(concrete_dbs(cfg)?
        .into_iter()
        .map(|(p, db)| {
            (
                p.display().to_string(),
                db.replicas
                    .iter()
                    .map(|r| format!("{} ({})", replica_name(r), r.kind.describe()))
                    .collect(),
            )
        })
        .collect())
}

/// Refuses a command-line target that looks like a replica URL with a malformed scheme
/// (`gs:/bucket`), which would otherwise be taken as a database path.
pub fn refuse_malformed_url(target: &str) -> anyhow::Result<()> {
    if let Some(intended) = crate::config::malformed_scheme(target) {
        bail!(
            "{target:?} is not a replica URL: the scheme is malformed: write {intended} (for a local path of that name, write ./{target})"
        );
    }
    Ok(())
}

/// What a restore (or `ltx`) names: a database path from the config, or a replica URL.
pub struct ReplicaChoice {
    pub target: String,
    pub replica: Option<String>,
}

/// The replicas to consider for a restore of `choice.target`, as (name, store).
pub fn restore_candidates(
    cfg: Option<&Config>,
    choice: &ReplicaChoice,
) -> anyhow::Result<Vec<(String, Arc<dyn ReplicaStore>)>> {
    refuse_malformed_url(&choice.target)?;
    if choice.target.contains("://") {
        // Endpoint and credentials as for the configured replica at that location, or
        // from the config's top-level keys, or from the environment (`resolve.rs`).
        let (kind, age) =
            config::resolve_replica_url_keys(cfg, &choice.target, &|k| std::env::var(k).ok())?;
        let name = config::redact_url(&choice.target);
        let store = crate::encryption::with_age(build_store(&kind)?, age.as_ref(), &name)?;
        return Ok(vec![(name, store)]);
    }
    let cfg = cfg.context("restoring by database path needs a config file (-config)")?;
    let want =
        std::path::absolute(&choice.target).unwrap_or_else(|_| PathBuf::from(&choice.target));
    let (_, db) = concrete_dbs(cfg)?
        .into_iter()
        .find(|(p, _)| std::path::absolute(p).unwrap_or_else(|_| p.clone()) == want)
        .with_context(|| format!("database {} is not in the config", choice.target))?;
    let mut out = Vec::new();
    for r in &db.replicas {
        let name = replica_name(r);
        if choice.replica.as_ref().is_some_and(|w| *w != name) {
            continue;
        }
        out.push((name, build_replica_store(r)?));
    }
    if out.is_empty() {
        bail!(
            "database {} has no replica named {:?}",
            choice.target,
            choice.replica.as_deref().unwrap_or("")
        );
    }
    Ok(out)
}

/// `replicate -restore-if-db-not-exists`: restore each missing database first, from the
/// replica with the newest data (a Litestream 0.3 replica too), as `restore` would, with
/// SQLite's quick check.
pub async fn restore_missing_dbs(cfg: &Config) -> anyhow::Result<()> {
    for (path, db) in concrete_dbs(cfg)? {
        if path.exists() {
            continue;
        }
        let mut candidates = Vec::new();
        for r in &db.replicas {
            candidates.push((replica_name(r), build_replica_store(r)?));
        }
        let mut opts = RestoreOptions::latest(IntegrityCheck::Quick);
        opts.v3 = V3Fallback::Latest { generation: None };
        let (progress, _shown) = crate::progress::start("restore", crate::progress::Style::Log);
        opts.apply.progress = progress;
        match run::restore(&candidates, &path, &opts).await? {
            Outcome::Restored(r) => match r.at {
                RestoredAt::Txid(txid) => {
                    tracing::info!(db = %path.display(), txid = %txid, "restored before replicating")
                }
                RestoredAt::V3 {
                    generation,
                    wal_index,
                } => {
                    tracing::info!(db = %path.display(), %generation, wal_index = %format!("{wal_index:08x}"),
                    "restored from Litestream 0.3 before replicating")
                }
            },
            Outcome::NoBackup { .. } | Outcome::DryRun { .. } => {
                tracing::info!(db = %path.display(), "no backup to restore; starting fresh")
            }
        }
    }
    Ok(())
}

/// A channel that turns true on SIGINT or SIGTERM.
pub fn shutdown_signal() -> watch::Receiver<bool> {
    match crate::signals::shutdown_flag() {
        Ok(flag) => flag,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM and SIGINT");
            watch::channel(false).1
        }
    }
}

/// RFC 3339 with milliseconds, UTC (Litestream's CLI spelling).
pub fn rfc3339_ms(t: SystemTime) -> String {
    match jiff::Timestamp::try_from(t) {
        Ok(ts) => ts.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        Err(_) => "-".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ReplicaKind;

    #[test]
    fn windows_config_lookup_order() {
        assert_eq!(
            windows_config_files(Some(r"D:\Data\")),
            [
                PathBuf::from(r"D:\Data\sqlite-replicate\sqlite-replicate.yml"),
                PathBuf::from(r"C:\Litestream\litestream.yml"),
            ]
        );
        assert_eq!(
            windows_config_files(None)[0],
            PathBuf::from(r"C:\ProgramData\sqlite-replicate\sqlite-replicate.yml")
        );
    }

    fn store_for(url: &str) -> anyhow::Result<Arc<dyn ReplicaStore>> {
        build_store(&config::parse_replica_url(url)?)
    }

    #[test]
    fn config_for_url_takes_the_path_and_url_as_written() {
        // Quotes, colons and `#` would need quoting in YAML text; values need none.
        let db = "/tmp/it's: #1.db";
        let replica = "/tmp/re'plica: 2";
        let cfg = config_for_url(db, &format!("file://{replica}")).unwrap();
        assert_eq!(cfg.dbs.len(), 1);
        let DbSource::Path(p) = &cfg.dbs[0].source else {
            panic!("a path source");
        };
        assert_eq!(p, Path::new(db));
        assert_eq!(cfg.dbs[0].replicas.len(), 1);
        let ReplicaKind::File { path } = &cfg.dbs[0].replicas[0].kind else {
            panic!("a file replica");
        };
        assert_eq!(path, Path::new(replica));
    }

    #[test]
    fn sftp_and_gcs_urls_build_their_backends_without_io() {
        // The password is a credential, never part of the location.
        let s = store_for("sftp://bob:hunter2@backup.example:2222/srv/app").unwrap();
        assert_eq!(s.location(), "sftp://bob@backup.example:2222/srv/app");
        let s = store_for("sftp://bob:hunter2@backup.example/srv/app").unwrap();
        assert_eq!(s.location(), "sftp://bob@backup.example:22/srv/app");
        // Without a password or key-path there is nothing to log in with.
        let Err(e) = store_for("sftp://bob@backup.example/srv") else {
            panic!("built an sftp replica without credentials");
        };
        let e = format!("{e:#}");
        assert!(e.contains("key-path") && e.contains("sftp://bob@"), "{e}");

        let s = store_for("gs://my-bucket/db/app").unwrap();
        assert_eq!(s.location(), "gs://my-bucket/db/app");
    }

    #[test]
    fn sftp_config_keys_reach_the_backend() {
        let c = crate::config::SftpConfig {
            host: "[::1]:2200".into(),
            user: "bob".into(),
            password: Some(crate::config::Secret::new("login-pw")),
            key_path: Some("/keys/id_ed25519".into()),
            key_passphrase: Some(crate::config::Secret::new("key-pw")),
            host_key: Some("SHA256:abc".into()),
            path: "backups".into(),
            concurrent_writes: Some(false),
        };
        let o = crate::stores::sftp_options(&c).unwrap();
        assert_eq!((o.host.as_str(), o.port), ("::1", 2200));
        assert_eq!(o.write_concurrency, 1);
        assert_eq!(o.host_key.as_deref(), Some("SHA256:abc"));
        // Each secret goes to its own use: the password logs in, the passphrase opens the key.
        assert_eq!(o.password.as_deref(), Some("login-pw"));
        assert_eq!(o.key_passphrase.as_deref(), Some("key-pw"));
        assert_eq!(o.location(), "sftp://bob@[::1]:2200/~/backups");
        let bad = crate::config::SftpConfig {
            host: "h:port".into(),
            ..c
        };
        assert!(crate::stores::sftp_options(&bad)
            .unwrap_err()
            .to_string()
            .contains("port"));
    }
}
