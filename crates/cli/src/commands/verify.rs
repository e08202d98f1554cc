//! `verify`: the restore drill. Restores each replica's latest state into scratch space,
//! runs `PRAGMA integrity_check`, measures the restore time (RTO) and the replica's RPO,
//! and, where the source database lives, compares the result page for page with it.
//!
//! `verify [-config FILE | REPLICA_URL] [-json] [-random-point] [-scratch DIR]
//! [-source DB] [-replica NAME] [-parallelism N] [DB]`
//!
//! Without DB or URL every database of the config is drilled, each replica in turn. The
//! source to compare with is the database's path when the file exists here (or `-source`);
//! the comparison fails the drill only when the source is provably at the restored TXID
//! (see `engine::restore::drill`). `-random-point` adds a second drill per replica at a
//! random restorable TXID. The exit status is 0 only when every drill passed.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use engine::restore::drill::{self, DrillOptions, DrillReport, DrillSource, DrillTarget};
use engine::storage::ReplicaStore;

use crate::setup::{self, ReplicaChoice};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    config: Option<PathBuf>,
    /// Print the reports as JSON.
    #[arg(long)]
    json: bool,
    /// Also restore a random TXID among those the replica can restore.
    #[arg(long = "random-point")]
    random_point: bool,
    /// Where to create the scratch directory (default: the system's temp directory).
    #[arg(long)]
    scratch: Option<PathBuf>,
    /// The live database to compare with (default: the database's path, when it exists).
    #[arg(long)]
    source: Option<PathBuf>,
    /// Drill only this replica of each database.
    #[arg(long)]
    replica: Option<String>,
    /// Ranged reads in flight.
    #[arg(long, default_value_t = engine::restore::run::DEFAULT_PARALLELISM)]
    parallelism: usize,
    #[arg(long = "no-expand-env")]
    no_expand_env: bool,
    #[arg(long = "log-level")]
    log_level: Option<String>,
    /// DB_PATH or REPLICA_URL (default: every database of the config).
    target: Option<String>,
}

/// One replica to drill.
struct Subject {
    db: Option<PathBuf>,
    replica: String,
    store: Arc<dyn ReplicaStore>,
    source: Option<DrillSource>,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let is_url = a.target.as_deref().is_some_and(|t| t.contains("://"));
    let cfg = if is_url && a.config.is_none() {
        setup::load_config_if_present(!a.no_expand_env)?
    } else {
        Some(setup::load_config(a.config.as_deref(), !a.no_expand_env)?)
    };
    crate::logging::init(
        a.log_level.as_deref().unwrap_or("warn"),
        crate::logging::Format::Text,
    );
    let subjects = subjects(&a, cfg.as_ref(), is_url)?;
    let scratch = a.scratch.clone().unwrap_or_else(std::env::temp_dir);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // The drills' progress (listing, fetch and apply, verify, install) on stderr.
    let (progress, _shown) =
        crate::progress::start("verify", crate::progress::Style::for_stderr(a.json));
    let results = rt.block_on(async {
        let mut results: Vec<(&Subject, DrillReport)> = Vec::new();
        for s in &subjects {
            let opts = DrillOptions {
                scratch_parent: scratch.clone(),
                parallelism: a.parallelism.max(1),
                source: s.source.clone(),
                progress: progress.clone(),
            };
            let mut targets = vec![DrillTarget::Latest];
            if a.random_point {
                targets.push(DrillTarget::RandomPoint);
            }
            for target in targets {
                let report = drill::drill(s.store.clone(), target, &opts).await;
                results.push((s, report));
            }
        }
        results
    });
    let ok = results.iter().all(|(_, r)| r.ok);
    if a.json {
        let drills: Vec<_> = results
            .iter()
            .map(|(s, r)| {
                let mut v = r.to_json();
                v["db"] = serde_json::json!(s.db);
                v["replica"] = serde_json::json!(s.replica);
                v["location"] = serde_json::json!(s.store.location());
                v["source"] = serde_json::json!(s.source.as_ref().map(|x| &x.db));
                v
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"ok": ok, "drills": drills}))?
        );
    } else {
        let mut last: Option<(&Option<PathBuf>, &str)> = None;
        for (s, r) in &results {
            let here = (&s.db, s.replica.as_str());
            if last != Some(here) {
                match &s.db {
                    Some(db) => println!(
                        "database {} replica {} ({})",
                        db.display(),
                        s.replica,
                        s.store.location()
                    ),
                    None => println!("replica {}", s.store.location()),
                }
                last = Some(here);
            }
            println!("  {}", r.summary());
            if let Some(h) = &r.hint {
                println!("  what to do: {h}");
            }
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn subjects(
    a: &Args,
    cfg: Option<&crate::config::Config>,
    is_url: bool,
) -> anyhow::Result<Vec<Subject>> {
    let source_of = |db: Option<&PathBuf>, meta: Option<PathBuf>| -> Option<DrillSource> {
        let path = a.source.clone().or_else(|| db.cloned())?;
        if !path.exists() {
            return None;
        }
        let meta_dir = meta
            .filter(|_| a.source.is_none() || db == a.source.as_ref())
            .unwrap_or_else(|| engine::replicate::local::default_meta_dir(&path));
        Some(DrillSource { db: path, meta_dir })
    };
    if let Some(target) = a.target.clone().filter(|_| is_url) {
        let choice = ReplicaChoice {
            target,
            replica: None,
        };
        let (name, store) = setup::restore_candidates(cfg, &choice)?
            .into_iter()
            .next()
            .context("no replica")?;
        // A source named with -source gets its meta dir from the config when listed there.
        let meta = a.source.as_ref().and_then(|s| {
            let cfg = cfg?;
            let dbs = super::check::selected_dbs(cfg, Some(s)).ok()?;
            dbs.into_iter().next().and_then(|(_, d)| d.meta_path)
        });
        return Ok(vec![Subject {
            db: None,
            replica: name,
            store,
            source: source_of(None, meta),
        }]);
    }
    let cfg = cfg.context("verify needs a config file (-config) or a replica URL")?;
    let only = a.target.as_ref().map(PathBuf::from);
    let mut out = Vec::new();
    for (path, db) in super::check::selected_dbs(cfg, only.as_deref())? {
        let meta = Some(
            db.meta_path
                .clone()
                .unwrap_or_else(|| engine::replicate::local::default_meta_dir(&path)),
        );
        for r in &db.replicas {
            let name = setup::replica_name(r);
            if a.replica.as_ref().is_some_and(|w| *w != name) {
                continue;
            }
            let store = setup::build_replica_store(r)
                .with_context(|| format!("{}: replica {name}", path.display()))?;
            out.push(Subject {
                db: Some(path.clone()),
                replica: name,
                store,
                source: source_of(Some(&path), meta.clone()),
            });
        }
    }
    if out.is_empty() {
        anyhow::bail!(
            "no replica to drill{}",
            a.replica
                .as_ref()
                .map(|r| format!(" named {r:?}"))
                .unwrap_or_default()
        );
    }
    Ok(out)
}
