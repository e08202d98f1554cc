//! `reset`: clear a database's local replication state (`<meta>/ltx`), so the next
//! `replicate` start writes a full image at the replicas' next TXID (Litestream 0.5's
//! `reset`). The database file and the replicas are untouched. With `-dry-run`, print what
//! would be removed and change nothing. Refused while a replicator runs for the database
//! (the engine's `replicate::meta` owns the lock and the removal).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};

use crate::setup;

#[derive(clap::Args)]
pub struct Args {
    /// Config file (default: as for `replicate`); the database's `meta-path` comes from it.
    /// Without one, the meta directory is the default beside the database.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Do not expand $VAR / ${VAR} in the config file.
    #[arg(long = "no-expand-env")]
    no_expand_env: bool,
    /// Print what would be removed, remove nothing.
    #[arg(long = "dry-run")]
    dry_run: bool,
    /// The database whose local state to clear.
    db: PathBuf,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let meta = meta_dir_of(&a)?;
    let report = engine::replicate::meta::reset(&meta, a.dry_run)
        .with_context(|| format!("reset {}", a.db.display()))?;
    let verb = if a.dry_run { "would remove" } else { "removed" };
    let Some(dir) = &report.removed_dir else {
        println!("{}: no local state in {}", a.db.display(), meta.display());
        return Ok(ExitCode::SUCCESS);
    };
    for f in &report.files {
        println!("{verb} {} ({} bytes)", f.path.display(), f.size_bytes);
    }
    println!(
        "{verb} {} ({} files, {} bytes); the next replicate start writes a full image",
        dir.display(),
        report.files.len(),
        report.total_bytes()
    );
    Ok(ExitCode::SUCCESS)
}

/// The database's meta directory: its `meta-path` when the config lists it, else the
/// default beside it. A config given with `-config` must list the database.
fn meta_dir_of(a: &Args) -> anyhow::Result<PathBuf> {
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let want = abs(&a.db);
    let cfg = match &a.config {
        Some(p) => Some(setup::load_config(Some(p), !a.no_expand_env)?),
        None => setup::load_config_if_present(!a.no_expand_env)?,
    };
    let listed = match &cfg {
        Some(cfg) => setup::concrete_dbs(cfg)?
            .into_iter()
            .find(|(p, _)| abs(p) == want),
        None => None,
    };
    match listed {
        Some((path, db)) => Ok(db
            .meta_path
            .unwrap_or_else(|| engine::replicate::local::default_meta_dir(&path))),
        None if a.config.is_some() => {
            bail!("database {} is not in the config", a.db.display())
        }
        None => Ok(engine::replicate::local::default_meta_dir(&want)),
    }
}
