//! `restore`: bring a database back from a replica, at the latest TXID or a point in
//! time, verified before it is put in place.
//!
//! `restore [flags] DB_PATH` takes the replica from the config; `restore [flags]
//! REPLICA_URL` takes it from the URL (credentials from a config replica with the same
//! URL, or the environment).
//!
//! A replica without LTX files that holds what Litestream 0.3 wrote (`generations/`) is
//! restored from that instead, to its latest state. Choosing the replica, planning and
//! applying are `engine::restore::run`'s; this module parses the flags and prints.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use engine::history::plan::Target;
use engine::restore::output::{ApplyOptions, IntegrityCheck};
use engine::restore::run::{
    self, Outcome, Planned, RestoreError, RestoreOptions, Restored, RestoredAt, V3Fallback,
};
use ltx::TxId;

use crate::setup::{self, ReplicaChoice};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    config: Option<PathBuf>,
    /// Output path (default: the database path).
    #[arg(short = 'o')]
    output: Option<PathBuf>,
    /// Restore up to and including this TXID (16 hex digits).
    #[arg(long)]
    txid: Option<String>,
    /// Restore the state as of this time (RFC 3339): files created strictly before it.
    #[arg(long)]
    timestamp: Option<String>,
    /// Exit successfully, doing nothing, if the output database already exists.
    #[arg(long = "if-db-not-exists")]
    if_db_not_exists: bool,
    /// Exit successfully, doing nothing, if the replica holds no backup.
    #[arg(long = "if-replica-exists")]
    if_replica_exists: bool,
    /// Print the plan (files, levels, TXID ranges, bytes) and do nothing.
    #[arg(long = "dry-run")]
    dry_run: bool,
    /// Replace an existing output database and its -wal/-shm.
    #[arg(long)]
    force: bool,
    /// Print the plan or result as JSON.
    #[arg(long)]
    json: bool,
    /// none|quick|full: run SQLite's check on the result before putting it in place.
    #[arg(long = "integrity-check", default_value = "none")]
    integrity_check: String,
    /// Ranged reads in flight.
    #[arg(long, default_value_t = run::DEFAULT_PARALLELISM)]
    parallelism: usize,
    /// Which configured replica to restore from (default: the one with the newest data).
    #[arg(long)]
    replica: Option<String>,
    /// Litestream 0.3 replicas only: the generation to restore (default: the one with the
    /// newest file, as 0.3 picks it).
    #[arg(long)]
    generation: Option<String>,
    /// Follow mode: keep the output current with the replica (read-only copy).
    #[arg(short = 'f')]
    follow: bool,
    /// Poll interval in follow mode.
    #[arg(long = "follow-interval", default_value = "1s")]
    follow_interval: String,
    #[arg(long = "no-expand-env")]
    no_expand_env: bool,
    #[arg(long = "log-level")]
    log_level: Option<String>,
    /// DB_PATH or REPLICA_URL.
    target: String,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let target = match (&a.txid, &a.timestamp) {
        (Some(_), Some(_)) => bail!("-txid and -timestamp cannot be used together"),
        (Some(t), None) => {
            Target::TxId(TxId::parse_hex16(t).with_context(|| format!("-txid {t:?}"))?)
        }
        (None, Some(ts)) => {
            let t: jiff::Timestamp = ts.parse().with_context(|| {
                format!("-timestamp {ts:?} is not RFC 3339 (e.g. 2026-01-02T15:04:05Z)")
            })?;
            Target::Timestamp(std::time::SystemTime::from(t))
        }
        (None, None) => Target::Latest,
    };
    let integrity = match a.integrity_check.as_str() {
        "none" => IntegrityCheck::None,
        "quick" => IntegrityCheck::Quick,
        "full" => IntegrityCheck::Full,
        other => bail!("-integrity-check {other:?}: expected none, quick or full"),
    };
    let follow_interval = setup::parse_duration(&a.follow_interval)
        .with_context(|| format!("-follow-interval {:?}", a.follow_interval))?;
    if a.follow && (a.txid.is_some() || a.timestamp.is_some()) {
        bail!("-f cannot be combined with -txid or -timestamp");
    }
    setup::refuse_malformed_url(&a.target)?;
    let is_url = a.target.contains("://");
    let cfg = if is_url && a.config.is_none() {
        setup::load_config_if_present(!a.no_expand_env)?
    } else {
        Some(setup::load_config(a.config.as_deref(), !a.no_expand_env)?)
    };
    if let Some(c) = &cfg {
        setup::init_logging(c, a.log_level.as_deref().or(Some("warn")));
    } else {
        crate::logging::init(
            a.log_level.as_deref().unwrap_or("warn"),
            crate::logging::Format::Text,
        );
    }
    let output = match (&a.output, is_url) {
        (Some(o), _) => o.clone(),
        (None, false) => PathBuf::from(&a.target),
        (None, true) => bail!("restoring from a URL needs -o OUTPUT"),
    };
    if a.if_db_not_exists && output.exists() {
        println!("database already exists at {}, skipping", output.display());
        return Ok(ExitCode::SUCCESS);
    }
    keep_freed_memory();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let choice = ReplicaChoice {
            target: a.target.clone(),
            replica: a.replica.clone(),
        };
        let candidates = setup::restore_candidates(cfg.as_ref(), &choice)?;
        // Phases and bytes on stderr: a bar on a terminal, lines on a pipe, JSON events
        // with -json; nothing for a dry run, which fetches nothing.
        let (progress, shown) = if a.dry_run {
            (Default::default(), None)
        } else {
            let (p, g) =
                crate::progress::start("restore", crate::progress::Style::for_stderr(a.json));
            (p, Some(g))
        };
        let opts = RestoreOptions {
            target,
            apply: ApplyOptions {
                parallelism: a.parallelism.max(1),
                integrity,
                force: a.force,
                progress: progress.clone(),
            },
            v3: V3Fallback::Latest {
                generation: a.generation.clone(),
            },
            follow: a.follow,
            dry_run: a.dry_run,
        };
        let outcome = run::restore(&candidates, &output, &opts).await;
        drop(shown);
        let outcome = match outcome {
            Ok(o) => o,
            Err(e) => {
                if let Some(h) = e.v3_hint() {
                    eprintln!("hint: {h}");
                }
                return Err(e.into());
            }
        };
        let restored = match outcome {
            Outcome::NoBackup { replica, location } => {
                if a.if_replica_exists {
                    println!("no backups found on replica {replica}, skipping");
                    return Ok(ExitCode::SUCCESS);
                }
                return Err(RestoreError::NoBackup { replica, location }.into());
            }
            Outcome::DryRun { picked, plan } => {
                print_plan(a.json, &picked.name, picked.location(), &plan)?;
                return Ok(ExitCode::SUCCESS);
            }
            Outcome::Restored(r) => r,
        };
        print_restored(&a, &restored);
        if a.follow {
            restored
                .follow(follow_interval, setup::shutdown_signal())
                .await?;
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// The result, as JSON or as one line on stderr (nothing on stderr when following).
fn print_restored(a: &Args, r: &Restored) {
    let rep = &r.report;
    match (&r.at, a.json) {
        (RestoredAt::Txid(txid), true) => println!(
            "{}",
            serde_json::json!({
                "output": r.output, "replica": r.replica, "txid": txid.to_string(),
                "files": rep.files, "bytes": rep.bytes_fetched, "pages": rep.pages,
                "page_size": rep.page_size, "seconds": rep.seconds,
            })
        ),
        (RestoredAt::Txid(_), false) if a.follow => {}
        (RestoredAt::Txid(txid), false) => eprintln!(
            "restored {} to TXID {txid} from {} file(s), {} bytes, in {:.3}s",
            r.output.display(),
            rep.files,
            rep.bytes_fetched,
            rep.seconds
        ),
        (RestoredAt::V3 { generation, wal_index }, true) => println!(
            "{}",
            serde_json::json!({
                "output": r.output, "replica": r.replica, "generation": generation.as_str(),
                "wal_index": format!("{wal_index:08x}"),
                "files": rep.files, "bytes": rep.bytes_fetched, "pages": rep.pages,
                "page_size": rep.page_size, "seconds": rep.seconds,
            })
        ),
        (RestoredAt::V3 { generation, wal_index }, false) => eprintln!(
            "restored {} from Litestream 0.3 generation {generation} to WAL index {wal_index:08x} from {} file(s), {} bytes, in {:.3}s",
            r.output.display(),
            rep.files,
            rep.bytes_fetched,
            rep.seconds
        ),
    }
}

/// `-dry-run`: the plan as JSON, or as text under the replica's name.
fn print_plan(json: bool, name: &str, location: &str, plan: &Planned) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(&plan.to_json())?);
    } else {
        println!("replica {name} ({location})");
        print!("{plan}");
    }
    Ok(())
}

/// A restore streams hundreds of MiB through short-lived buffers of a few hundred KiB
/// (the HTTP client's reads). glibc would map some of them fresh and hand freed memory
/// back to the system between reads, so the same memory is faulted in and zeroed over
/// and over (a tenth of a restore's CPU). A fixed mmap threshold and a higher trim
/// threshold keep up to 32 MiB of freed memory for reuse (the process ends with the
/// restore, or follows a replica with little memory churn).
fn keep_freed_memory() {
    engine::platform::process::tune_allocator_for_restore();
}
