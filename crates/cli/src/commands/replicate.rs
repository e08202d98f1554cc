//! `replicate`: stream every configured database to its replicas until SIGINT/SIGTERM
//! (final sync, exit 0), or once (`-once`), or for the life of a child (`-exec`). A lost
//! lease stops everything at once: no final sync (the writes are fenced), the child is
//! stopped, and the exit is non-zero.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use engine::replicate::RunMode;
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::config::Config;
use crate::{child, config, control, dirwatch, failover, heartbeat, mcp, notify, observe, setup};

#[derive(clap::Args)]
pub struct Args {
    /// Config file (default: $SQLITE_REPLICATE_CONFIG, $LITESTREAM_CONFIG, /etc/sqlite-replicate.yml, /etc/litestream.yml).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Run this command as a child; replicate while it runs, then sync and exit with its status.
    #[arg(long)]
    exec: Option<String>,
    /// Capture and upload what is there, then exit.
    #[arg(long)]
    once: bool,
    /// With -once: start with a full-database file.
    #[arg(long = "force-snapshot")]
    force_snapshot: bool,
    /// With -once: after the sync, delete snapshots past snapshot.retention (and the files
    /// they make useless), as Litestream does.
    #[arg(long = "enforce-retention")]
    enforce_retention: bool,
    /// Restore each database from its replica first if the file does not exist.
    #[arg(long = "restore-if-db-not-exists")]
    restore_if_db_not_exists: bool,
    /// Do not expand $VAR / ${VAR} in the config file.
    #[arg(long = "no-expand-env")]
    no_expand_env: bool,
    /// trace|debug|info|warn|error (overrides the config).
    #[arg(long = "log-level")]
    log_level: Option<String>,
    /// DB_PATH REPLICA_URL: replicate one database without a config file.
    #[arg(num_args = 0..=2)]
    positional: Vec<String>,
}

impl Args {
    /// What the Windows service runs: `replicate -config CONFIG` (or the looked-up config).
    #[cfg_attr(not(windows), allow(dead_code))]
    pub fn for_service(config: Option<PathBuf>) -> Args {
        Args {
            config,
            exec: None,
            once: false,
            force_snapshot: false,
            enforce_retention: false,
            restore_if_db_not_exists: false,
            no_expand_env: false,
            log_level: None,
            positional: Vec::new(),
        }
    }
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let (cfg, template) = config_of(&a)?;
    setup::init_daemon_logging(&cfg, a.log_level.as_deref());
    crate::progress::configure_engine();
    // Keys accepted without effect (another replica type's, Litestream 0.3's).
    cfg.warnings.iter().for_each(|w| warn!("config: {w}"));
    prepare_process();
    // Blocking work (captures, local file I/O) is short; a few threads serve thousands of
    // databases, where tokio's default (up to 512 threads) would cost memory at startup.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .build()
        .context("starting runtime")?;
    let result = rt.block_on(replicate(a, cfg, template));
    if result.is_err() {
        // A failed run (a lost lease above all) exits now: a capture still on a blocking
        // thread must not hold the process up, as dropping the runtime would.
        rt.shutdown_timeout(Duration::from_secs(2));
    }
    result
}

/// Process-wide settings for many databases, before any thread starts.
fn prepare_process() {
    limit_malloc_arenas();
    raise_open_file_limit();
    // Before any thread starts and before SQLite's first use in this process.
    // SAFETY: the runtime is not built yet and `replicate` has started no other thread, so
    // nothing else can be calling into SQLite.
    if !unsafe { engine::sqlite::db::configure_sqlite_for_many_connections() } {
        warn!("SQLite was already initialised; connections keep their default buffers");
    }
}

/// The replicator: leases, the side services (`addr`, heartbeat, notifications, MCP,
/// control socket, drills), the databases, then the wait for a signal, the child's end,
/// a lost lease or every database stopping, and the final sync.
async fn replicate(
    a: Args,
    cfg: Config,
    template: serde_norway::Value,
) -> anyhow::Result<ExitCode> {
    crate::signals::listen().context("listening for SIGTERM and SIGINT")?;
    let exec = a.exec.clone().or_else(|| cfg.exec.clone());
    restore_missing(&cfg, a.restore_if_db_not_exists).await?;
    let mut runs = setup::db_runs(&cfg)?;
    // A watched directory may get its databases later.
    let watching = !a.once
        && cfg
            .dbs
            .iter()
            .any(|d| matches!(d.source, config::DbSource::Dir { watch: true, .. }));
    if runs.is_empty() && !watching {
        bail!("no databases to replicate (the config has no `dbs`, or no file matched a `dir` pattern)");
    }
    // Databases with `lease:` replicate only while they hold it.
    let Some(held) = failover::take_leases(&cfg, &mut runs, &mut setup::shutdown_signal()).await?
    else {
        return Ok(ExitCode::SUCCESS);
    };
    let (lost_tx, mut lost_rx) = watch::channel(None);
    failover::spawn_renewals(&held, lost_tx);
    for r in &runs {
        info!(db = %r.opts.path.display(), replicas = r.replicas.len(), "replicating");
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let mode = RunMode {
        once: a.once,
        force_full_image: a.force_snapshot,
    };
    // The set of databases, which `register`, `unregister` and watched directories
    // change while it runs.
    let runtime = engine::runtime::Runtime::new(stop_rx.clone(), mode);
    // The control socket (`sync -wait`, ...): removed when this function returns.
    let _socket = start_services(&a, &cfg, template, &runs, &held, &runtime, &stop_rx).await?;
    if watching {
        dirwatch::spawn(&cfg, &runtime, &runs, &stop_rx);
        runtime.keep_open();
    }
    // `-once -enforce-retention`: each replica's retention, after the run (Litestream's
    // order: sync, optional snapshot, then retention).
    let retention = if a.enforce_retention {
        Retained::of(&runs)
    } else {
        Vec::new()
    };
    // Everything the databases need was copied out of the config: with thousands of
    // databases the parsed file is megabytes that would otherwise stay for good.
    drop(cfg);
    for run in runs {
        if let Err(e) = runtime.add(run) {
            warn!(error = %e, "database not started");
        }
    }
    let mut task = tokio::spawn(runtime.wait());
    let mut child_status = None;
    let mut finished = None;
    let mut interrupted = false;
    if !a.once {
        let mut lost: Option<String> = None;
        match exec {
            Some(cmd) => match child::run_child(&cmd, &mut lost_rx).await? {
                child::ChildEnd::Exited(code) => child_status = Some(code),
                child::ChildEnd::LeaseLost(reason) => lost = Some(reason),
            },
            None => tokio::select! {
                r = failover::wait_for_signal_or_loss(&mut lost_rx) => lost = r?,
                // Every database stopped on its own (each one failed: not SQLite, not
                // WAL, ...): exit with their errors rather than wait for a signal.
                r = &mut task => finished = Some(r),
            },
        }
        if let Some(reason) = lost {
            // No final sync: every replica write is fenced now, and retrying them
            // until the shutdown timeout would only keep a stale primary alive (issue
            // 18). What was not uploaded belongs to no one's history any more.
            task.abort();
            bail!("stopped replicating: {reason}");
        }
        if finished.is_none() {
            info!("shutting down: final sync");
            stop_tx.send_replace(true);
        }
    } else {
        // `-once` ends by itself; a signal before then ends it sooner, after a final sync.
        let mut signals = crate::signals::subscribe()?;
        tokio::select! {
            r = &mut task => finished = Some(r),
            _ = crate::signals::requested(&mut signals) => {
                info!("shutting down: final sync");
                stop_tx.send_replace(true);
                interrupted = true;
            }
        }
    }
    let errors = match finished {
        Some(r) => r,
        None => task.await,
    }
    .context("replication task")?;
    for e in &errors {
        warn!(error = %e, "database did not finish cleanly");
    }
    failover::release(&held).await;
    if let Some(code) = child_status {
        return Ok(ExitCode::from(code));
    }
    if !errors.is_empty() {
        bail!("{} database(s) failed: {}", errors.len(), errors[0]);
    }
    if !interrupted {
        enforce_retention(&retention).await?;
    }
    Ok(ExitCode::SUCCESS)
}

/// A replica whose retention `-enforce-retention` applies after the run.
struct Retained {
    db: PathBuf,
    opts: engine::replicate::ReplicaOptions,
    store: std::sync::Arc<dyn engine::storage::ReplicaStore>,
    status: std::sync::Arc<engine::replicate::status::ReplicaStatus>,
}

impl Retained {
    /// Every replica of `runs`.
    fn of(runs: &[engine::runtime::DbRun]) -> Vec<Retained> {
        runs.iter()
            .flat_map(|r| {
                r.replicas.iter().map(move |s| Retained {
                    db: r.opts.path.clone(),
                    opts: s.opts.clone(),
                    store: s.store.clone(),
                    status: s.status.clone(),
                })
            })
            .collect()
    }
}

/// `-once -enforce-retention`: applies each replica's snapshot retention now
/// (`maintain::enforce_snapshot_retention`: one LIST per level, one batched DELETE).
async fn enforce_retention(replicas: &[Retained]) -> anyhow::Result<()> {
    for r in replicas {
        let db = &r.db;
        info!(db = %db.display(), replica = %r.opts.name, "enforcing retention");
        let deleted = engine::replicate::maintain::enforce_snapshot_retention(
            r.store.as_ref(),
            &r.opts,
            &r.status,
        )
        .await
        .with_context(|| {
            format!(
                "enforcing retention of {} on replica {}",
                db.display(),
                r.opts.name
            )
        })?;
        info!(db = %db.display(), replica = %r.opts.name, deleted, "retention enforced");
    }
    Ok(())
}

/// Starts what runs beside the databases (none with `-once`, which exits at once: nothing
/// to scrape, and no clash with a daemon on `addr`): the heartbeat, notifications, the
/// `addr` server, MCP, drills, validations, and the control socket, returned so it is
/// removed when the caller ends.
async fn start_services(
    a: &Args,
    cfg: &Config,
    template: serde_norway::Value,
    runs: &[engine::runtime::DbRun],
    held: &[failover::Held],
    runtime: &engine::runtime::Runtime,
    stop_rx: &watch::Receiver<bool>,
) -> anyhow::Result<Option<control::server::SocketGuard>> {
    if a.once {
        return Ok(None);
    }
    // `heartbeat-url`: pings while every database keeps syncing.
    let heartbeat = match &cfg.heartbeat {
        Some(hb) => Some(heartbeat::spawn(hb, runtime.clone(), stop_rx.clone())?),
        None => None,
    };
    // `notify-url`: failure and recovery events.
    if let Some(url) = &cfg.notify_url {
        notify::spawn(cfg, url, runs, stop_rx.clone())?;
    }
    if let Some(addr) = &cfg.addr {
        start_http(
            addr,
            Reported::Live(runtime),
            held,
            cfg.health_failing_after,
            heartbeat,
        )
        .await?;
    }
    // `mcp-addr`: MCP tools over HTTP.
    if let Some(addr) = &cfg.mcp_addr {
        mcp::start(addr, mcp_options(a))?;
    }
    start_checks(cfg, runtime);
    cfg.socket
        .enabled
        .then(|| control::server::start(&cfg.socket, runtime.clone(), template))
        .transpose()
}

/// What the MCP tools need: the config file read (an absolute path, as the tools' commands
/// run from wherever) and whether `$VAR`s in it are expanded. (`mcp-addr` comes only
/// from a config file, so `replicate DB_PATH REPLICA_URL` never gets here.)
fn mcp_options(a: &Args) -> mcp::Options {
    let config =
        setup::config_path(a.config.as_deref()).map(|p| std::path::absolute(&p).unwrap_or(p));
    mcp::Options {
        config,
        expand_env: !a.no_expand_env,
    }
}

/// The flags checked against each other, and the config: the file, or one database and
/// replica from the command line; with the file's top level (empty without a file), the
/// template of databases registered while running.
fn config_of(a: &Args) -> anyhow::Result<(Config, serde_norway::Value)> {
    if a.exec.is_some() && a.once {
        bail!("-exec cannot be combined with -once");
    }
    if a.force_snapshot && !a.once {
        bail!("-force-snapshot requires -once");
    }
    if a.enforce_retention && !a.once {
        bail!("-enforce-retention requires -once");
    }
    Ok(match a.positional.as_slice() {
        [] => setup::load_config_with_template(a.config.as_deref(), !a.no_expand_env)?,
        [db, url] => {
            if a.config.is_some() {
                bail!("give either -config or DB_PATH REPLICA_URL, not both");
            }
            (setup::config_for_url(db, url)?, serde_norway::Value::Null)
        }
        _ => bail!(
            "usage: sqlite-replicate replicate [-config FILE] | replicate DB_PATH REPLICA_URL"
        ),
    })
}

/// Restores the missing databases that ask for it: every one with
/// `-restore-if-db-not-exists` (`all`), else those whose config sets the key.
async fn restore_missing(cfg: &Config, all: bool) -> anyhow::Result<()> {
    let wanted = Config {
        dbs: (cfg.dbs.iter())
            .filter(|d| all || d.restore_if_db_not_exists)
            .cloned()
            .collect(),
        ..cfg.clone()
    };
    if wanted.dbs.is_empty() {
        return Ok(());
    }
    setup::restore_missing_dbs(&wanted).await
}

/// The databases the `addr` server reports on.
pub(crate) enum Reported<'a> {
    /// These, for good.
    Runs(&'a [engine::runtime::DbRun]),
    /// Whatever the runtime runs at each request (databases added and removed while
    /// running included).
    Live(&'a engine::runtime::Runtime),
}

/// Binds `addr` (failing the start when it cannot) and serves `/metrics`, `/healthz` and
/// `/status` (with the last heartbeat, when `heartbeat` is given) for the life of the
/// process.
pub(crate) async fn start_http(
    addr: &str,
    runs: Reported<'_>,
    held: &[failover::Held],
    failing_after: Duration,
    heartbeat: Option<std::sync::Arc<heartbeat::HeartbeatStatus>>,
) -> anyhow::Result<()> {
    let bind = observe::bind_addr(addr);
    let listener = tokio::net::TcpListener::bind(&bind)
        .await
        .with_context(|| format!("addr {addr}: cannot listen on {bind}"))?;
    let local = listener.local_addr().map(|a| a.to_string()).unwrap_or(bind);
    info!(addr = %local, "serving /metrics, /healthz and /status");
    let leases = held
        .iter()
        .map(|h| (h.db.display().to_string(), h.lease.status.clone()))
        .collect();
    let watched = std::sync::Arc::new(
        match runs {
            Reported::Runs(runs) => observe::Watched::of(runs),
            Reported::Live(rt) => observe::Watched::live(rt.clone()),
        }
        .with_leases(leases)
        .with_heartbeat(heartbeat),
    );
    let listener = listener
        .into_std()
        .with_context(|| format!("addr {addr}: taking the listener"))?;
    observe::server::spawn(
        listener,
        watched,
        observe::server::ServeOptions { failing_after },
    )
    .with_context(|| format!("addr {addr}: starting the server thread"))?;
    Ok(())
}

/// Starts the periodic checks of every database `runtime` gets from now on (configured,
/// found in a watched directory, or registered), each for as long as its database runs.
fn start_checks(cfg: &Config, runtime: &engine::runtime::Runtime) {
    // Level 0 and levels 1..=n: what Litestream validates (its compaction levels).
    let top_level = cfg.levels.len() as u8;
    runtime.on_add(std::sync::Arc::new(move |run, stop| {
        start_drills(run, &stop);
        start_validations(run, top_level, &stop);
    }));
}

/// Spawns a restore drill loop for every replica of `run` when it has a `drill-interval`:
/// each drill restores the latest state into a scratch directory under the system temp
/// dir, checks it, compares it with the live database when provably at the same TXID,
/// and its report feeds `/metrics` and `/status`. The loops end when `stop` turns true
/// (the database is removed, or the replicator stops).
fn start_drills(run: &engine::runtime::DbRun, stop: &watch::Receiver<bool>) {
    use engine::replicate::status::DrillStatus;
    use engine::restore::drill::{self, DrillOptions, DrillSource, DrillTarget};
    let Some(interval) = run.checks.drill_interval else {
        return;
    };
    for r in &run.replicas {
        let opts = DrillOptions {
            scratch_parent: std::env::temp_dir(),
            parallelism: 4,
            source: Some(DrillSource {
                db: run.opts.path.clone(),
                meta_dir: run.opts.meta_dir.clone(),
            }),
            progress: Default::default(),
        };
        let (status, db_name, replica) = (
            r.status.clone(),
            run.opts.path.display().to_string(),
            r.opts.name.clone(),
        );
        info!(db = %db_name, replica = %replica, interval = ?interval, "restore drills scheduled");
        status.schedule_drills(interval);
        tokio::spawn(drill::drill_loop(
            r.store.clone(),
            DrillTarget::Latest,
            opts,
            interval,
            stop.clone(),
            move |report| {
                if report.ok {
                    info!(db = %db_name, replica = %replica, restore_ms = report.restore_duration.as_millis() as u64, files = report.files, "restore drill ok");
                } else {
                    warn!(db = %db_name, replica = %replica, error = report.error.as_deref().unwrap_or(""), "restore drill failed");
                }
                status.set_drill(DrillStatus {
                    last_run_unix_ms: jiff::Timestamp::now().as_millisecond(),
                    ok: report.ok,
                    restore_duration_ms: report.restore_duration.as_millis() as u64,
                    files: report.files as u64,
                    bytes: report.bytes,
                    rpo_ms: report.rpo.map(|d| d.as_millis() as u64).unwrap_or(0),
                    error: report.error.clone(),
                    last_success_unix_ms: None,
                });
            },
        ));
    }
}

/// Spawns a validation loop for every replica of `run` with a `validation-interval` (its
/// own, the top-level one, or `validation.interval`): each run lists level 0 and the
/// compaction levels in use and checks each level's history for TXID gaps and overlaps
/// (one listing per level, no download: Litestream's validation). A fault is logged as an
/// error naming the replica, the files and the missing range; every run feeds `/metrics`
/// and `/status`. The loops end when `stop` turns true.
fn start_validations(run: &engine::runtime::DbRun, top_level: u8, stop: &watch::Receiver<bool>) {
    use engine::replicate::status::ValidationStatus;
    use engine::restore::validate;
    for r in &run.replicas {
        let Some(&(_, interval)) =
            (run.checks.validation_intervals.iter()).find(|(name, _)| *name == r.opts.name)
        else {
            continue;
        };
        let (status, db_name, replica) = (
            r.status.clone(),
            run.opts.path.display().to_string(),
            r.opts.name.clone(),
        );
        info!(db = %db_name, replica = %replica, interval = ?interval, "replica validation scheduled");
        tokio::spawn(validate::validate_loop(
            r.store.clone(),
            top_level,
            interval,
            stop.clone(),
            move |report| {
                let problem = report.problem();
                match &problem {
                    None => {
                        info!(db = %db_name, replica = %replica, levels = report.levels, files = report.files, "replica validation ok")
                    }
                    Some(p) => {
                        error!(db = %db_name, replica = %replica, faults = report.faults.len(), problem = %p, "replica validation failed")
                    }
                }
                status.set_validation(ValidationStatus {
                    last_run_unix_ms: jiff::Timestamp::now().as_millisecond(),
                    ok: report.ok,
                    levels: report.levels as u64,
                    files: report.files as u64,
                    faults: report.faults.len() as u64,
                    error: problem,
                    ..Default::default()
                });
            },
        ));
    }
}

/// Raises this process's soft limit on open descriptors to the hard limit. Every
/// replicating database holds a few descriptors (its SQLite connection's database, WAL
/// and `-shm` files, and the long-lived descriptor its header is read through), so the
/// usual soft limit of 1024 stops a replicator at a few hundred databases (issue 27)
/// while the hard limit, which an unprivileged process may raise to, is often far higher.
/// The one place the limit is touched.
fn raise_open_file_limit() {
    if let Err((soft, hard)) = engine::platform::process::raise_open_file_limit() {
        warn!(
            soft,
            hard, "cannot raise the open-file limit to the hard limit"
        );
    }
}

/// Threads for blocking work in the replicator's runtime.
const MAX_BLOCKING_THREADS: usize = 16;

/// glibc gives every thread that allocates its own malloc arena (up to 8 per core), each
/// keeping freed memory; the replicator's allocations are small and short, so one arena
/// serves it (each thread keeps its small cache in front of it), and resident memory stays
/// low with many databases. Buffers of 256 KiB and more (LTX files, merges) are mapped
/// on their own and given back when freed: by default glibc raises that threshold after
/// the first such free, and a large buffer then lives in the heap, where it keeps the
/// pages around it resident.
fn limit_malloc_arenas() {
    engine::platform::process::tune_allocator_for_daemon();
}
