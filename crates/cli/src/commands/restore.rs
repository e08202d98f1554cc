//! `restore`: bring a database back from a replica, at the latest TXID or a point in
//! time, verified before it is put in place.
//!
//! `restore [flags] DB_PATH` takes the replica from the config; `restore [flags]
//! REPLICA_URL` takes it from the URL (credentials from a config replica with the same
//! URL, or the environment).
//!
//! A replica without LTX files that holds what Litestream 0.3 wrote (`generations/`) is
//! restored from that instead, to its latest state (`engine::restore::v3`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use engine::restore::apply::{self, ApplyOptions, IntegrityCheck};
use engine::restore::plan::{self, Listing, Target};
use engine::restore::v3;
use engine::storage::layout::v3::V3File;
use engine::storage::ReplicaStore;
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
    #[arg(long, default_value_t = 8)]
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
        // With several replicas, pick the one holding the newest TXID.
        let mut best = None;
        for (name, store) in candidates.iter().cloned() {
            let files = if matches!(target, Target::Timestamp(_)) {
                setup::list_all_exact_times(store.as_ref()).await
            } else {
                setup::list_all(store.as_ref()).await
            }
            .with_context(|| format!("listing replica {name}"))?;
            let listing = Listing::new(files);
            let newest = plan::latest_txid(&listing);
            if best.as_ref().is_none_or(|(_, _, _, n)| newest > *n) {
                best = Some((name, store, listing, newest));
            }
        }
        let Some((name, store, listing, newest)) = best else {
            bail!("no replica configured for {}", a.target)
        };
        if newest.is_none() {
            // No LTX history anywhere: perhaps Litestream 0.3 wrote these replicas.
            if let Some((name, store, files)) = newest_v3_replica(&candidates).await {
                return restore_v3(&a, &name, store, &files, &output, integrity).await;
            }
            if a.if_replica_exists {
                println!("no backups found on replica {name}, skipping");
                return Ok(ExitCode::SUCCESS);
            }
            bail!("replica {name} ({}) holds no backup", store.location());
        }
        if a.generation.is_some() {
            bail!(
                "-generation applies to Litestream 0.3 replicas (generations/), but replica {name} holds LTX files"
            );
        }
        let p = plan::plan(&listing, target).with_context(|| {
            format!(
                "planning restore from replica {name} ({})",
                store.location()
            )
        })?;
        if a.dry_run {
            print_plan(a.json, &name, store.location(), &p.to_json(), &p)?;
            return Ok(ExitCode::SUCCESS);
        }
        let opts = apply_options(&a, integrity);
        let report = apply::apply(store.clone(), &p, &output, &opts)
            .await
            .with_context(|| format!("restoring {}", output.display()))?;
        if a.json {
            println!(
                "{}",
                serde_json::json!({
                    "output": output, "replica": name, "txid": p.target_txid.to_string(),
                    "files": report.files, "bytes": report.bytes_fetched, "pages": report.pages,
                    "page_size": report.page_size, "seconds": report.seconds,
                })
            );
        } else if !a.follow {
            eprintln!(
                "restored {} to TXID {} from {} file(s), {} bytes, in {:.3}s",
                output.display(),
                p.target_txid,
                report.files,
                report.bytes_fetched,
                report.seconds
            );
        }
        if a.follow {
            engine::restore::follow::follow(
                store,
                &output,
                p.target_txid,
                follow_interval,
                setup::shutdown_signal(),
            )
            .await?;
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// Among replicas without LTX files, the one whose Litestream 0.3 generations hold the
/// newest file: 0.3's rule for choosing a generation, applied across replicas. A backend
/// that cannot list them counts as holding none: the error is logged, not fatal, so
/// `-if-replica-exists` still skips an empty replica on such a backend.
async fn newest_v3_replica(
    candidates: &[(String, Arc<dyn ReplicaStore>)],
) -> Option<(String, Arc<dyn ReplicaStore>, Vec<V3File>)> {
    let mut best: Option<(String, Arc<dyn ReplicaStore>, Vec<V3File>)> = None;
    for (name, store) in candidates {
        let files = match async { store.v3()?.list_v3().await }.await {
            Ok(f) if !f.is_empty() => f,
            Ok(_) => continue,
            Err(e) => {
                tracing::warn!(replica = %name, error = %e, "cannot list Litestream 0.3 generations");
                continue;
            }
        };
        let newest = |f: &[V3File]| f.iter().map(|f| f.modified).max();
        if best
            .as_ref()
            .is_none_or(|(_, _, b)| newest(&files) > newest(b))
        {
            best = Some((name.clone(), store.clone(), files));
        }
    }
    best
}

/// Restores the latest state of a Litestream 0.3 generation (`generations/` layout).
async fn restore_v3(
    a: &Args,
    name: &str,
    store: Arc<dyn ReplicaStore>,
    files: &[V3File],
    output: &Path,
    integrity: IntegrityCheck,
) -> anyhow::Result<ExitCode> {
    if a.txid.is_some() || a.timestamp.is_some() || a.follow {
        bail!(
            "replica {name} ({}) holds only Litestream 0.3 generations: -txid, -timestamp and -f need LTX history; without them the latest state is restored",
            store.location()
        );
    }
    let p = match v3::plan_v3(files, a.generation.as_deref()) {
        Ok(p) => p,
        Err(e) => {
            if let Some(h) = e.hint() {
                eprintln!("hint: {h}");
            }
            return Err(anyhow::Error::new(e).context(format!(
                "planning restore from replica {name} ({}) (Litestream 0.3 generations)",
                store.location()
            )));
        }
    };
    if a.dry_run {
        print_plan(a.json, name, store.location(), &p.to_json(), &p)?;
        return Ok(ExitCode::SUCCESS);
    }
    let opts = apply_options(a, integrity);
    let report = v3::apply_v3(store, &p, output, &opts)
        .await
        .with_context(|| format!("restoring {}", output.display()))?;
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "output": output, "replica": name, "generation": p.generation.as_str(),
                "wal_index": format!("{:08x}", p.last_index()),
                "files": report.files, "bytes": report.bytes_fetched, "pages": report.pages,
                "page_size": report.page_size, "seconds": report.seconds,
            })
        );
    } else {
        eprintln!(
            "restored {} from Litestream 0.3 generation {} to WAL index {:08x} from {} file(s), {} bytes, in {:.3}s",
            output.display(),
            p.generation,
            p.last_index(),
            report.files,
            report.bytes_fetched,
            report.seconds
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `-dry-run`: the plan as JSON, or as text under the replica's name.
fn print_plan(
    json: bool,
    name: &str,
    location: &str,
    as_json: &serde_json::Value,
    as_text: &dyn std::fmt::Display,
) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(as_json)?);
    } else {
        println!("replica {name} ({location})");
        print!("{as_text}");
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
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator tunables; called before other threads start.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 32 << 20);
    }
}

fn apply_options(a: &Args, integrity: IntegrityCheck) -> ApplyOptions {
    ApplyOptions {
        parallelism: a.parallelism.max(1),
        integrity,
        force: a.force,
    }
}
