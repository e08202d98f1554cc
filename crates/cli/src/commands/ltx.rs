//! `ltx`: the LTX files a replica holds, per level (`level min_txid max_txid size created`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use ltx::Level;

use crate::setup::{self, ReplicaChoice};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    config: Option<PathBuf>,
    /// 0-9 or all.
    #[arg(long, default_value = "all")]
    level: String,
    #[arg(long)]
    json: bool,
    #[arg(long = "no-expand-env")]
    no_expand_env: bool,
    /// Which configured replica (default: the first).
    #[arg(long)]
    replica: Option<String>,
    /// DB_PATH or REPLICA_URL.
    target: String,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let levels: Vec<Level> = if a.level == "all" {
        Level::all().collect()
    } else {
        let n: u8 = a
            .level
            .parse()
            .with_context(|| format!("-level {:?}: expected 0-9 or all", a.level))?;
        vec![Level::new(n).with_context(|| format!("-level {n}"))?]
    };
    crate::setup::refuse_malformed_url(&a.target)?;
    let is_url = a.target.contains("://");
    let cfg = if is_url && a.config.is_none() {
        setup::load_config_if_present(!a.no_expand_env)?
    } else {
        Some(setup::load_config(a.config.as_deref(), !a.no_expand_env)?)
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let choice = ReplicaChoice { target: a.target.clone(), replica: a.replica.clone() };
        let (name, store) = setup::restore_candidates(cfg.as_ref(), &choice)?.into_iter().next().context("no replica")?;
        let mut rows = Vec::new();
        for level in levels {
            for f in store.list(level).await.with_context(|| format!("listing replica {name}"))? {
                rows.push(f);
            }
        }
        if a.json {
            let v: Vec<_> = rows
                .iter()
                .map(|f| {
                    serde_json::json!({
                        "level": f.key.level.get(), "min_txid": f.key.min.to_string(), "max_txid": f.key.max.to_string(),
                        "size": f.size_bytes, "created": setup::rfc3339_ms(f.created),
                    })
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&v)?);
        } else {
            println!("{:<6} {:<17} {:<17} {:>12} created", "level", "min_txid", "max_txid", "size");
            for f in rows {
                println!("{:<6} {:<17} {:<17} {:>12} {}", f.key.level, f.key.min, f.key.max, f.size_bytes, setup::rfc3339_ms(f.created));
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}
