//! `standby`: keep a warm copy of a database current from its replica (follow mode),
//! report its lag and the lease, and on promotion take the lease, finish applying, and
//! replicate as the new primary. `promote`: ask a database's standby to take over now.
//!
//! Promotion happens on `promote` (which creates `<db>-promote`, polled by the standby),
//! or, with `auto-promote: true`, when the lease has been seen unchanged for its TTL (the
//! primary stopped renewing) or released. The order is what makes it safe: take the lease
//! (a new epoch), wait out a live old holder if the promotion was forced, record the
//! epoch's first TXID (one past everything in the replica), apply everything before it,
//! switch the copy back to WAL mode, then replicate: the first file is a full image at
//! that TXID. See `docs/design.md`, invariants E1-E7.
//!
//! With `-exec CMD`, the application is started only then, once the copy is writable and
//! replicating (as `replicate -exec` runs it: `child.rs`), so nobody has to watch the log
//! for the promotion.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use engine::lease::{Acquire, Lease, LeaseStatus, Observer};
use engine::replicate::RunMode;
use engine::restore::follow::{follow, read_applied_txid};
use engine::storage::ReplicaStore;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::{child, failover, setup};

#[derive(clap::Args)]
pub struct Args {
    /// Config file (the database's entry must have `lease:`).
    #[arg(long)]
    config: Option<PathBuf>,
    /// How often to poll the replica for new files.
    #[arg(long = "follow-interval", default_value = "1s")]
    follow_interval: String,
    /// trace|debug|info|warn|error (overrides the config).
    #[arg(long = "log-level")]
    log_level: Option<String>,
    /// Start this command once promoted (the database writable, replicating as primary);
    /// SIGINT/SIGTERM are forwarded to it; when it exits, final sync, then exit with its
    /// status. A lost lease stops it (SIGTERM, SIGKILL after 5 s). Only `-exec` starts a
    /// child here: the config's top-level `exec` applies to `replicate`, not to `standby`.
    #[arg(long)]
    exec: Option<String>,
    /// The database (its path in the config): restored here if missing, then kept current.
    db: PathBuf,
}

#[derive(clap::Args)]
pub struct PromoteArgs {
    /// The database whose standby should take over (its path in the config).
    db: PathBuf,
}

/// The file `promote` creates beside the database: `<db>-promote`.
pub fn promote_path(db: &Path) -> PathBuf {
    let mut p = db.as_os_str().to_os_string();
    p.push("-promote");
    PathBuf::from(p)
}

pub fn promote(a: PromoteArgs) -> anyhow::Result<ExitCode> {
    let db = std::path::absolute(&a.db).unwrap_or(a.db.clone());
    let p = promote_path(&db);
    engine::fsutil::write_durable(&p, b"promote\n", None)
        .with_context(|| format!("writing {}", p.display()))?;
    eprintln!(
        "asked the standby of {} to promote ({} created)",
        db.display(),
        p.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// How often the standby reports its lag and the lease in the log.
const REPORT_EVERY: Duration = Duration::from_secs(5);

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    if let Some(cmd) = &a.exec {
        child::check_command(cmd)?;
    }
    let cfg = setup::load_config(a.config.as_deref(), true)?;
    setup::init_logging(&cfg, a.log_level.as_deref());
    let interval = setup::parse_duration(&a.follow_interval)
        .with_context(|| format!("-follow-interval {:?}", a.follow_interval))?;
    let db = std::path::absolute(&a.db).unwrap_or(a.db.clone());
    let Some((_, dbc)) = setup::concrete_dbs(&cfg)?
        .into_iter()
        .find(|(p, _)| *p == db)
    else {
        bail!("database {} is not in the config", db.display());
    };
    let Some(lc) = dbc.lease.clone() else {
        bail!(
            "database {} has no `lease:` in the config: a standby needs one",
            db.display()
        );
    };
    let first = dbc
        .replicas
        .first()
        .context("the database has no replica")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting runtime")?;
    let result = rt.block_on(async move {
        let store = setup::build_store(&first.kind)?;
        let lease = Arc::new(Lease::new(store.clone(), failover::lease_options(&lc)));
        // Fails at once, clearly, on a backend without conditional writes.
        let named = async { store.named()?.get_name_versioned(engine::storage::layout::LEASE_NAME).await };
        if let Err(e) = named.await {
            if !e.is_not_found() {
                return Err(e).context(format!("{}: lease", db.display()));
            }
        }
        let mut stop = setup::shutdown_signal();
        if let Some(addr) = &cfg.addr {
            // The lease and the standby's lag (the database's replication figures once
            // promoted are in the log and `status`).
            let holder = failover::Held {
                db: db.clone(),
                lease: lease.clone(),
                fenced: Vec::new(),
                taken_at: Instant::now(),
            };
            super::replicate::start_http(addr, &[], &[holder], cfg.health_failing_after, None).await?;
        }
        let applied = if db.exists() {
            read_applied_txid(&db).with_context(|| {
                format!(
                    "{} exists but is not a standby copy (no {}): move it away to start afresh",
                    db.display(),
                    engine::restore::follow::txid_path(&db).display()
                )
            })?
        } else {
            restore_latest(store.clone(), &db).await?
        };
        let (fstop_tx, fstop_rx) = watch::channel(false);
        let mut follow_task = tokio::spawn(follow_owned(store.clone(), db.clone(), applied, interval, fstop_rx));
        let mut observer = Observer::default();
        let tick = lc.renew_interval.min(Duration::from_secs(1));
        let mut last_report = Instant::now() - REPORT_EVERY;
        let status = lease.status.clone();
        status.update(|v| v.role = Some(engine::lease::Role::Standby));
        let (decided, reason) = loop {
            tokio::select! {
                _ = tokio::time::sleep(tick) => {}
                _ = stop.changed() => {
                    fstop_tx.send_replace(true);
                    let _ = follow_task.await;
                    return Ok(ExitCode::SUCCESS);
                }
                r = &mut follow_task => {
                    r.context("follow task")??;
                    bail!("following stopped unexpectedly");
                }
            }
            let requested = promote_path(&db).exists();
            let current = match lease.read().await {
                Ok(c) => c,
                Err(e) if e.is_permanent() => return Err(e).context(format!("{}: lease", db.display())),
                Err(e) => {
                    warn!(db = %db.display(), error = %e, "reading the lease failed");
                    continue;
                }
            };
            let mut expired = false;
            if let Some((rec, tag)) = &current {
                let unchanged = observer.observe(tag);
                expired = rec.released || unchanged >= rec.ttl().max(lc.ttl);
                status.update(|v| {
                    v.role = Some(engine::lease::Role::Standby);
                    v.holder = rec.owner.clone();
                    v.epoch = rec.epoch;
                    v.expires_at_ms = if rec.released { 0 } else { rec.expires_at_ms };
                });
            }
            report_lag(&db, &store, &status, &mut last_report).await;
            let auto = lc.auto_promote && expired;
            if requested || auto {
                let decided = Instant::now();
                match lease.try_acquire(&mut observer, requested).await {
                    Ok(Acquire::Acquired { previous }) => {
                        let reason = if requested { "promote requested" } else { "lease expired" };
                        info!(db = %db.display(), reason, previous = ?previous.map(|p| (p.owner, p.epoch)),
                              epoch = lease.epoch().unwrap_or(0), "lease taken: promoting");
                        break (decided, reason);
                    }
                    Ok(Acquire::HeldBy { record, .. }) => {
                        info!(db = %db.display(), holder = %record.owner, epoch = record.epoch, "lease still held");
                    }
                    Err(e) => warn!(db = %db.display(), error = %e, "taking the lease failed"),
                }
            }
        };
        // Promotion: stop following, begin our epoch, apply everything before it.
        fstop_tx.send_replace(true);
        follow_task.await.context("follow task")??;
        let mut runs: Vec<_> = setup::db_runs(&cfg)?
            .into_iter()
            .filter(|r| r.opts.path == db)
            .collect();
        let Some(run) = runs.first_mut() else {
            bail!("database {} is not in the config", db.display());
        };
        let fenced = failover::fence_run(run, &lease);
        let local = engine::replicate::local::LocalDir::open(
                &run.opts.meta_dir,
                engine::fsutil::FileMode::of_db(&run.opts.path).unwrap_or_default(),
            )
            .with_context(|| format!("opening {}", run.opts.meta_dir.display()))?;
        local.reset().with_context(|| format!("resetting {}", run.opts.meta_dir.display()))?;
        let start = failover::begin_epoch(&lease, &fenced).await?;
        let applied = read_applied_txid(&db).context("reading the applied TXID")?;
        let (tx, rx) = watch::channel(false);
        tx.send_replace(true);
        let first_store: Arc<dyn ReplicaStore> = fenced[0].clone();
        follow(first_store, &db, applied, interval, rx).await?;
        let applied = read_applied_txid(&db).context("reading the applied TXID")?;
        if applied.get() + 1 != start {
            bail!(
                "{}: applied TXID {applied} but the replicas end at {:016x}: not promoting",
                db.display(),
                start - 1
            );
        }
        let path = db.clone();
        tokio::task::spawn_blocking(move || engine::sqlite::db::switch_to_wal(&path))
            .await??;
        let _ = std::fs::remove_file(engine::restore::follow::txid_path(&db));
        let _ = std::fs::remove_file(promote_path(&db));
        info!(db = %db.display(), epoch = lease.epoch().unwrap_or(0), first_txid = %format!("{start:016x}"),
              took_ms = decided.elapsed().as_millis() as u64, reason,
              "promoted: the database accepts writes; replicating as primary");
        // Replicate as the primary until stopped or the lease is lost.
        let held = vec![failover::Held { db: db.clone(), lease: lease.clone(), fenced, taken_at: Instant::now() }];
        let (lost_tx, mut lost_rx) = watch::channel(None);
        failover::spawn_renewals(&held, lost_tx);
        let (stop_tx, stop_rx) = watch::channel(false);
        let handle = run.handle.clone();
        let task = tokio::spawn(engine::runtime::replicate_all(runs, stop_rx, RunMode::default()));
        let mut child_status = None;
        let lost = match &a.exec {
            // Not when a stop came during the promotion: nobody wants the app now.
            Some(cmd) if !*stop.borrow() => {
                // Its writes must be captured from the first: wait for our first capture
                // (the full image at the epoch's first TXID).
                first_capture(&handle)
                    .await
                    .with_context(|| format!("{}: not starting the -exec child", db.display()))?;
                info!(db = %db.display(), command = %cmd, "starting the -exec child");
                match child::run_child(cmd, &mut lost_rx).await? {
                    child::ChildEnd::Exited(code) => {
                        child_status = Some(code);
                        None
                    }
                    child::ChildEnd::LeaseLost(reason) => Some(reason),
                }
            }
            _ => tokio::select! {
                _ = stop.changed() => None,
                l = failover::lease_lost(&mut lost_rx) => Some(l),
            },
        };
        if let Some(reason) = lost {
            // No final sync: our writes are fenced now (issue 18).
            task.abort();
            bail!("stopped replicating: {reason}");
        }
        info!("shutting down: final sync");
        stop_tx.send_replace(true);
        let errors = task.await.context("replication task")?;
        failover::release(&held).await;
        for e in &errors {
            warn!(error = %e, "database did not finish cleanly");
        }
        // As `replicate -exec`: the child's status, once the final sync is done.
        if let Some(code) = child_status {
            return Ok(ExitCode::from(code));
        }
        if let Some(e) = errors.first() {
            bail!("{} database(s) failed: {e}", errors.len());
        }
        Ok(ExitCode::SUCCESS)
    });
    if result.is_err() {
        // A failed run (a lost lease above all) exits now: work still on a blocking
        // thread must not hold the process up, as dropping the runtime would.
        rt.shutdown_timeout(Duration::from_secs(2));
    }
    result
}

/// How long a promoted standby waits for its first capture before starting `-exec`.
const FIRST_CAPTURE_TIMEOUT: Duration = Duration::from_secs(60);

/// Waits until the database replicates (its run opened it) and one capture has run.
async fn first_capture(handle: &engine::replicate::handle::DbHandle) -> anyhow::Result<()> {
    use engine::replicate::handle::RunState;
    let deadline = Instant::now() + FIRST_CAPTURE_TIMEOUT;
    while handle.state() == RunState::Starting {
        if Instant::now() >= deadline {
            bail!("the database was not open for replication within {FIRST_CAPTURE_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let left = deadline.saturating_duration_since(Instant::now());
    handle.sync(false, left).await?;
    Ok(())
}

async fn follow_owned(
    store: Arc<dyn ReplicaStore>,
    db: PathBuf,
    applied: ltx::TxId,
    interval: Duration,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    follow(store, &db, applied, interval, stop).await?;
    Ok(())
}

/// Restores the newest state of the replica into `db`; returns its TXID.
async fn restore_latest(store: Arc<dyn ReplicaStore>, db: &Path) -> anyhow::Result<ltx::TxId> {
    use engine::restore::{apply, plan};
    let listing = plan::Listing::new(setup::list_all(store.as_ref()).await?);
    if plan::latest_txid(&listing).is_none() {
        bail!(
            "replica {} holds no backup yet: start the primary first",
            store.location()
        );
    }
    let p = plan::plan(&listing, plan::Target::Latest)?;
    let opts = apply::ApplyOptions {
        parallelism: 8,
        integrity: apply::IntegrityCheck::Quick,
        force: false,
    };
    apply::apply(store, &p, db, &opts)
        .await
        .with_context(|| format!("restoring {}", db.display()))?;
    info!(db = %db.display(), txid = %p.target_txid, "standby copy restored");
    Ok(p.target_txid)
}

/// Logs, now and then, how far the copy is behind the replica, and keeps `status` current.
async fn report_lag(
    db: &Path,
    store: &Arc<dyn ReplicaStore>,
    status: &LeaseStatus,
    last: &mut Instant,
) {
    if last.elapsed() < REPORT_EVERY {
        return;
    }
    *last = Instant::now();
    let applied = read_applied_txid(db).map_or(0, |t| t.get());
    let Ok(files) = store.list(ltx::Level::L0).await else {
        return;
    };
    let newest = files.iter().max_by_key(|f| f.key.max);
    let lag_ms = match newest {
        Some(f) if f.key.max.get() > applied => {
            // The oldest file not yet applied says how long the copy has been behind.
            files
                .iter()
                .filter(|f| f.key.max.get() > applied)
                .map(|f| f.created)
                .min()
                .and_then(|t| t.elapsed().ok())
                .map_or(0, |d| d.as_millis() as u64)
        }
        _ => 0,
    };
    let replica_txid = newest.map_or(applied, |f| f.key.max.get().max(applied));
    status.update(|v| {
        v.applied_txid = applied;
        v.lag_ms = lag_ms;
    });
    let v = status.get();
    info!(db = %db.display(), applied = %format!("{applied:016x}"), replica = %format!("{replica_txid:016x}"),
          lag_ms, holder = %v.holder, epoch = v.epoch, "standby");
}
