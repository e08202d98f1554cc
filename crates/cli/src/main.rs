//! `sqlite-replicate`: continuous replication and verified restore for SQLite,
//! speaking Litestream's command line, config and replica layout.
//!
//! `main` → `run` → one dispatch per command; each command lives in `commands/`.
//! Config files are parsed in `config/`; `setup` turns them into engine options;
//! `observe` serves and reads the `addr` HTTP endpoint (metrics, health, status);
//! `control` serves and reads the control socket (`sync -wait`, `info`, `list`); `child`
//! runs the `-exec` child of `replicate` and `standby`; `mcp` serves `mcp-addr`.

mod args;
mod child;
mod commands;
mod config;
mod control;
mod dirwatch;
mod encryption;
mod eventlog;
mod failover;
mod generated;
mod heartbeat;
mod logging;
mod mcp;
mod notify;
mod observe;
mod progress;
mod setup;
mod signals;
mod stores;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "sqlite-replicate",
    version,
    about = "Continuous replication and verified restore for SQLite (Litestream-compatible)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Stream databases to their replicas until stopped.
    Replicate(commands::replicate::Args),
    /// Restore a database from a replica.
    Restore(commands::restore::Args),
    /// Clear a database's local replication state; the next start writes a full image.
    Reset(commands::reset::Args),
    /// Re-encrypt an age-encrypted replica's history to the keys the config names now.
    Rekey(commands::rekey::Args),
    /// List the databases in the config.
    Databases(commands::databases::Args),
    /// List the LTX files of a replica, per level.
    Ltx(commands::ltx::Args),
    /// Print the version.
    Version(commands::version::Args),
    /// Show each database's replication state: local and replicated TXIDs, lag, WAL size.
    Status(commands::status::Args),
    /// Pre-flight check of databases and replicas: what is wrong and what to do.
    Check(commands::check::Args),
    /// Restore drill: restore into scratch space, check integrity, report RTO and RPO.
    Verify(commands::verify::Args),
    /// Warm standby: follow the replica into a local copy; promote on request or when the
    /// primary's lease expires, then replicate as the new primary.
    Standby(commands::standby::Args),
    /// Ask the standby of a database to take over now.
    Promote(commands::standby::PromoteArgs),
    /// Capture a database now through the running replicator's control socket; with
    /// -wait, return once every replica holds it.
    Sync(commands::control::SyncArgs),
    /// Show the running replicator's version, pid, uptime and database count (control socket).
    Info(commands::control::QueryArgs),
    /// List the running replicator's databases and their state (control socket).
    List(commands::control::QueryArgs),
    /// Start replicating a database again after `stop` (control socket).
    Start(commands::control::PathArgs),
    /// Stop replicating one database, after a final sync (control socket).
    Stop(commands::control::PathArgs),
    /// Add a database to the running replicator (control socket).
    Register(commands::control::RegisterArgs),
    /// Remove a database from the running replicator, after a final sync (control socket).
    Unregister(commands::control::PathArgs),
    /// Install or remove the Windows service (Windows only).
    #[command(subcommand)]
    Service(commands::service::Command),
}

fn main() -> ExitCode {
    let argv = args::normalize(std::env::args());
    let cli = match Cli::try_parse_from(argv) {
        Ok(cli) => cli,
        Err(e) => return args::print_clap_error(&e),
    };
    // A SIGTERM during start-up must not kill a replicator before its final sync: held
    // until the command's runtime listens for it (`signals`).
    if matches!(
        cli.command,
        Command::Replicate(_)
            | Command::Standby(_)
            | Command::Service(commands::service::Command::Run(_))
    ) {
        signals::hold();
    }
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", error_text(&e));
            let config_error = e
                .chain()
                .find_map(|c| c.downcast_ref::<config::ConfigError>());
            if let Some(h) = config_error.and_then(config::ConfigError::hint) {
                eprintln!("hint: {h}");
            }
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, like `{:#}`, but without repeating a cause that
/// the message before it already spells (our typed errors print their source inline).
fn error_text(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let s = cause.to_string();
        if out.contains(&s) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&s);
    }
    out
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Replicate(a) => commands::replicate::run(a),
        Command::Restore(a) => commands::restore::run(a),
        Command::Reset(a) => commands::reset::run(a),
        Command::Rekey(a) => commands::rekey::run(a),
        Command::Databases(a) => commands::databases::run(a),
        Command::Ltx(a) => commands::ltx::run(a),
        Command::Version(a) => commands::version::run(a),
        Command::Status(a) => commands::status::run(a),
        Command::Check(a) => commands::check::run(a),
        Command::Verify(a) => commands::verify::run(a),
        Command::Standby(a) => commands::standby::run(a),
        Command::Promote(a) => commands::standby::promote(a),
        Command::Sync(a) => commands::control::sync(a),
        Command::Info(a) => commands::control::info(a),
        Command::List(a) => commands::control::list(a),
        Command::Start(a) => commands::control::path_command("start", a),
        Command::Stop(a) => commands::control::path_command("stop", a),
        Command::Register(a) => commands::control::register(a),
        Command::Unregister(a) => commands::control::path_command("unregister", a),
        Command::Service(c) => commands::service::run(c),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// `-help` shows every long flag with one dash: each must then work with one dash.
    #[test]
    fn every_long_flag_is_accepted_with_one_dash() {
        let cli = super::Cli::command();
        let mut missing = Vec::new();
        for cmd in std::iter::once(&cli).chain(cli.get_subcommands()) {
            for a in cmd.get_arguments() {
                if let Some(long) = a.get_long() {
                    if !super::args::LONG_FLAGS.contains(&long) {
                        missing.push(format!("{} --{long}", cmd.get_name()));
                    }
                }
            }
        }
        assert!(missing.is_empty(), "add to args::LONG_FLAGS: {missing:?}");
    }
}
