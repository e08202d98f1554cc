//! `databases`: the databases a config replicates, with their replicas.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::setup;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(long)]
    json: bool,
    #[arg(long = "no-expand-env")]
    no_expand_env: bool,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let cfg = setup::load_config(a.config.as_deref(), !a.no_expand_env)?;
    let rows = setup::describe_dbs(&cfg)?;
    if a.json {
        let v: Vec<_> = rows
            .iter()
            .map(|(p, r)| serde_json::json!({"path": p, "replicas": r}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("{:<50} replicas", "path");
        for (p, r) in rows {
            println!("{:<50} {}", p, r.join(", "));
        }
    }
    Ok(ExitCode::SUCCESS)
}
