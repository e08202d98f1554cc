//! `service install`, `service uninstall` and `service run`: the Windows service.
//!
//! `install` registers a service (automatic start, LocalSystem) whose command line is
//! `sqlite-replicate.exe service run -config <CONFIG> -name <NAME>` (without `-config`
//! when none was given: the config is then looked up at each start, as `replicate`
//! does), and the Event Log source `<NAME>` with this executable as its message file.
//! `run` is what the Service Control Manager starts: `replicate` with that config, the
//! Event Log added to its logging; Stop and Shutdown are a shutdown request (the same
//! path as Ctrl-C), and the SCM hears "stopped" only after the final sync. `uninstall`
//! stops the service, waits for it, and removes the service and the event source.
//!
//! On Unix every subcommand fails with a pointer to systemd.

use std::path::PathBuf;
use std::process::ExitCode;

#[cfg(unix)]
use anyhow::bail;

/// The default service (and event source) name.
pub const DEFAULT_NAME: &str = "sqlite-replicate";

#[derive(clap::Subcommand)]
pub enum Command {
    /// Register the Windows service (runs `replicate` with the config) and its Event Log source.
    Install(InstallArgs),
    /// Stop and remove the Windows service and its Event Log source.
    Uninstall(NameArgs),
    /// Print the service's newest Event Log events (type, event ID, message), newest first.
    Events(EventsArgs),
    /// What the Service Control Manager starts (not for interactive use).
    #[command(hide = true)]
    Run(RunArgs),
}

#[derive(clap::Args)]
pub struct InstallArgs {
    /// Config file the service reads (default: looked up at each start: $SQLITE_REPLICATE_CONFIG, $LITESTREAM_CONFIG, %ProgramData%\sqlite-replicate\sqlite-replicate.yml, C:\Litestream\litestream.yml).
    #[arg(long)]
    config: Option<PathBuf>,
    #[command(flatten)]
    name: NameArgs,
}

#[derive(clap::Args)]
pub struct NameArgs {
    /// Service name, also the Event Log source.
    #[arg(long, default_value = DEFAULT_NAME)]
    name: String,
}

#[derive(clap::Args)]
pub struct EventsArgs {
    /// How many of the Application log's newest events to look through.
    #[arg(long, default_value_t = 200)]
    last: usize,
    #[command(flatten)]
    name: NameArgs,
}

#[derive(clap::Args)]
pub struct RunArgs {
    /// Config file.
    #[arg(long)]
    config: Option<PathBuf>,
    #[command(flatten)]
    name: NameArgs,
}

#[cfg(unix)]
pub fn run(_c: Command) -> anyhow::Result<ExitCode> {
    bail!(
        "`service` manages a Windows service; on Linux run `sqlite-replicate replicate -config FILE` under systemd (a unit with ExecStart=/usr/local/bin/sqlite-replicate replicate -config /etc/sqlite-replicate.yml, Restart=on-failure, and KillSignal=SIGTERM so the final sync runs)"
    )
}

#[cfg(windows)]
pub fn run(c: Command) -> anyhow::Result<ExitCode> {
    match c {
        Command::Install(a) => windows::install(a),
        Command::Uninstall(a) => windows::uninstall(a),
        Command::Events(a) => windows::events(a),
        Command::Run(a) => windows::run(a),
    }
}

#[cfg(windows)]
mod windows {
    use std::ffi::OsString;
    use std::process::ExitCode;
    use std::time::Duration;

    use anyhow::{bail, Context};
    use engine::platform::{eventlog, service};

    use super::{InstallArgs, NameArgs, RunArgs};
    use crate::eventlog as ids;
    use crate::setup;

    /// How long `uninstall` waits for a running service's final sync.
    const UNINSTALL_STOP_WAIT: Duration = Duration::from_secs(120);

    pub fn install(a: InstallArgs) -> anyhow::Result<ExitCode> {
        let name = a.name.name;
        check_name(&name)?;
        let exe = std::env::current_exe().context("finding this executable")?;
        let mut args: Vec<OsString> = vec!["service".into(), "run".into()];
        if let Some(c) = &a.config {
            // Checked now, so a typo fails here and not at the service's start.
            let c = std::path::absolute(c).with_context(|| format!("config {}", c.display()))?;
            setup::load_config(Some(&c), true)?;
            args.extend(["-config".into(), c.into_os_string()]);
        }
        args.extend(["-name".into(), name.clone().into()]);
        service::install(&service::InstallSpec {
            name: name.clone(),
            display_name: format!("sqlite-replicate ({name})"),
            description: "Continuous replication of SQLite databases (Litestream-compatible)"
                .into(),
            executable: exe.clone(),
            arguments: args,
        })?;
        eventlog::register_source(&name, &exe)
            .with_context(|| format!("registering the Event Log source {name}"))?;
        println!(
            "installed service {name}; start it with `Start-Service {name}` or `sc start {name}`"
        );
        Ok(ExitCode::SUCCESS)
    }

    pub fn uninstall(a: NameArgs) -> anyhow::Result<ExitCode> {
        let name = a.name;
        check_name(&name)?;
        service::uninstall(&name, UNINSTALL_STOP_WAIT)?;
        eventlog::deregister_source(&name)
            .with_context(|| format!("removing the Event Log source {name}"))?;
        println!("removed service {name}");
        Ok(ExitCode::SUCCESS)
    }

    /// One line per event of the source among the log's newest `last`:
    /// `TYPE ID MESSAGE` (TYPE is error, warning or information).
    pub fn events(a: super::EventsArgs) -> anyhow::Result<ExitCode> {
        let events =
            eventlog::read_application_log(a.last).context("reading the Application event log")?;
        for e in events.iter().filter(|e| e.source == a.name.name) {
            let kind = match e.kind {
                Some(eventlog::EventType::Error) => "error",
                Some(eventlog::EventType::Warning) => "warning",
                Some(eventlog::EventType::Information) => "information",
                None => "other",
            };
            println!(
                "{kind} {} {}",
                e.id,
                e.strings.join(" ").replace(['\r', '\n'], " ")
            );
        }
        Ok(ExitCode::SUCCESS)
    }

    /// A name the SCM and the registry path take: no separators, not empty.
    fn check_name(name: &str) -> anyhow::Result<()> {
        if name.is_empty() || name.len() > 256 || name.contains(['\\', '/']) {
            bail!("-name {name:?}: a service name is 1 to 256 characters without / or \\");
        }
        Ok(())
    }

    pub fn run(a: RunArgs) -> anyhow::Result<ExitCode> {
        let name = a.name.name;
        crate::logging::log_to_event_log(&name);
        let source = name.clone();
        let body = Box::new(move |running: &dyn Fn()| -> u32 {
            // The config is checked before the service reports RUNNING: a bad one makes
            // the start fail (`Start-Service` says so), with the error in the Event Log.
            let result = crate::setup::load_config(a.config.as_deref(), true).and_then(|_| {
                running();
                report(
                    &source,
                    eventlog::EventType::Information,
                    ids::SERVICE_STARTED,
                    &format!("service {source} started"),
                );
                let args = crate::commands::replicate::Args::for_service(a.config);
                crate::commands::replicate::run(args)
            });
            match result {
                Ok(_) => {
                    tracing::info!(event_id = ids::SERVICE_STOPPED, "service {source} stopped");
                    0
                }
                Err(e) => {
                    let text = crate::error_text(&e);
                    // Logging may not be set up yet (a config error): write directly.
                    report(
                        &source,
                        eventlog::EventType::Error,
                        ids::SERVICE_ERROR,
                        &format!("service {source} stopped with an error: {text}"),
                    );
                    eprintln!("error: {text}");
                    1
                }
            }
        });
        let on_stop = Box::new(|| crate::signals::inject(crate::signals::Kind::Terminate));
        service::run(&name, on_stop, body)?;
        Ok(ExitCode::SUCCESS)
    }

    /// One event straight to the Event Log (before logging is set up, or after it).
    fn report(source: &str, kind: eventlog::EventType, id: u32, text: &str) {
        if let Ok(log) = eventlog::EventLog::open(source) {
            let _ = log.report(kind, id, text);
        }
    }
}
