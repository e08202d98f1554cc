//! `rekey`: re-encrypt an age-encrypted replica's history to the keys its config names now
//! (issue 24), so a retired key can no longer read any point in time.
//!
//! Every LTX file of every level is read through a store that holds the config's
//! identities plus the retired ones (`-old-identity-file`), and written back under the same
//! key, with the same timestamp, through the replica's own store, which encrypts to the
//! config's recipients and identities only. Each put replaces the object atomically, so a
//! restore running meanwhile reads the old ciphertext or the new one. A file that
//! disappears meanwhile (retention) is skipped. Run it with the replicator stopped: a
//! running one remembers the headers of the objects it wrote and would have to list them
//! again. Litestream 0.3 `generations/` are not rewritten (read-only here).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use engine::storage::ReplicaStore;
use ltx::Level;

use crate::config::ReplicaConfig;
use crate::setup;

#[derive(clap::Args)]
pub struct Args {
    /// Config file (default: as for `replicate`); its `age:` block holds the new keys.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Do not expand $VAR / ${VAR} in the config file.
    #[arg(long = "no-expand-env")]
    no_expand_env: bool,
    /// A file of retired age identities that can still read older objects (repeatable).
    #[arg(long = "old-identity-file")]
    old_identity_files: Vec<PathBuf>,
    /// Only this replica (its `name`, or its type when it has none).
    #[arg(long)]
    replica: Option<String>,
    /// List what would be re-encrypted, write nothing.
    #[arg(long = "dry-run")]
    dry_run: bool,
    /// The database whose replicas to re-encrypt.
    db: PathBuf,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let cfg = setup::load_config(a.config.as_deref(), !a.no_expand_env)?;
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let want = abs(&a.db);
    let (_, db) = setup::concrete_dbs(&cfg)?
        .into_iter()
        .find(|(p, _)| abs(p) == want)
        .ok_or_else(|| anyhow!("database {} is not in the config", a.db.display()))?;
    let chosen: Vec<&ReplicaConfig> = db
        .replicas
        .iter()
        .filter(|r| {
            a.replica
                .as_ref()
                .is_none_or(|n| *n == setup::replica_name(r))
        })
        .collect();
    if chosen.is_empty() {
        bail!(
            "database {} has no replica named {:?}",
            a.db.display(),
            a.replica.as_deref().unwrap_or_default()
        );
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    for r in chosen {
        let name = setup::replica_name(r);
        if r.age.is_none() {
            if a.replica.is_some() {
                bail!("replica {name} has no age: block: nothing to re-encrypt");
            }
            println!("{name}: not encrypted, skipped");
            continue;
        }
        let (reader, writer) = stores(r, &a.old_identity_files)?;
        let (files, bytes) = rt
            .block_on(rekey(&*reader, &*writer, a.dry_run))
            .with_context(|| format!("rekey of replica {name}"))?;
        let verb = if a.dry_run {
            "would re-encrypt"
        } else {
            "re-encrypted"
        };
        println!("{name}: {verb} {files} files ({bytes} bytes of LTX)");
    }
    Ok(ExitCode::SUCCESS)
}

/// The replica read with every identity (the config's and the retired ones), and the
/// replica as configured, which encrypts to the new keys.
fn stores(
    r: &ReplicaConfig,
    old_identity_files: &[PathBuf],
) -> anyhow::Result<(Arc<dyn ReplicaStore>, Arc<dyn ReplicaStore>)> {
    let name = setup::replica_name(r);
    let mut read_keys = r.age.clone().unwrap_or_default();
    read_keys
        .identity_files
        .extend(old_identity_files.iter().cloned());
    let raw = setup::build_store(&r.kind)?;
    let reader = crate::encryption::with_age(raw.clone(), Some(&read_keys), &name)?;
    let writer = crate::encryption::with_age(raw, r.age.as_ref(), &name)?;
    Ok((reader, writer))
}

/// Every LTX file, decrypted by `reader` and written back by `writer`: (files, bytes).
async fn rekey(
    reader: &dyn ReplicaStore,
    writer: &dyn ReplicaStore,
    dry_run: bool,
) -> anyhow::Result<(usize, u64)> {
    let (mut files, mut bytes) = (0, 0);
    for level in Level::all() {
        for info in reader.list_exact_times(level).await? {
            if !dry_run {
                let data = match reader.get(&info.key, None).await {
                    Ok(d) => d,
                    Err(e) if e.is_not_found() => continue,
                    Err(e) => return Err(e.into()),
                };
                writer.put(&info.key, data, info.created).await?;
            }
            files += 1;
            bytes += info.size_bytes;
        }
    }
    Ok((files, bytes))
}
