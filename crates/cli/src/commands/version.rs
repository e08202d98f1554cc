//! `version`: the version, and with `-verbose` the build details.

use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    verbose: bool,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    println!("sqlite-replicate {}", env!("CARGO_PKG_VERSION"));
    if a.verbose {
        println!("ltx format: version 3 (Litestream 0.5 compatible)");
        println!(
            "target: {}-{}",
            std::env::consts::ARCH,
            std::env::consts::OS
        );
    }
    Ok(ExitCode::SUCCESS)
}
