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
//! that TXID. See `docs/design.md`, invariants E1-E7. Those steps are the engine's
//! (`engine::restore::standby`); this module watches the lease and the `-promote` file,
//! reports, and runs replication afterwards.
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
use engine::restore::standby;
use engine::storage::ReplicaStore;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::config::LeaseConfig;
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

pub fn promote(a: PromoteArgs) -> anyhow::Result<ExitCode> {
    let db = std::path::absolute(&a.db).unwrap_or(a.db.clone());
    let p = standby::promote_path(&db);
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
    setup::init_daemon_logging(&cfg, a.log_level.as_deref());
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
        crate::signals::listen().context("listening for SIGTERM and SIGINT")?;
        let store = setup::build_replica_store(first)?;
        let lease = Arc::new(Lease::new(store.clone(), failover::lease_options(&lc)));
        // Fails at once, clearly, on a backend without conditional writes.
        let named = async {
            store
                .named()?
                .get_name_versioned(engine::storage::layout::LEASE_NAME)
                .await
        };
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
            super::replicate::start_http(
                addr,
                super::replicate::Reported::Runs(&[]),
                &[holder],
                cfg.health_failing_after,
                None,
            )
            .await?;
        }
        let s = Standby {
            db,
            lc,
            interval,
            store,
            lease,
        };
        let Some((decided, reason)) = s.follow_until_promoted(&mut stop).await? else {
            return Ok(ExitCode::SUCCESS);
        };
        s.replicate_as_primary(&cfg, a.exec.as_deref(), decided, reason, &stop)
            .await
    });
    if result.is_err() {
        // A failed run (a lost lease above all) exits now: work still on a blocking
        // thread must not hold the process up, as dropping the runtime would.
        rt.shutdown_timeout(Duration::from_secs(2));
    }
    result
}

/// One standby: its database, lease and the replica it follows (the database's first).
struct Standby {
    db: PathBuf,
    lc: LeaseConfig,
    interval: Duration,
    store: Arc<dyn ReplicaStore>,
    lease: Arc<Lease>,
}

impl Standby {
    /// Restores the copy if missing, then follows the replica until the lease is ours
    /// (`Some(when decided, why)`) or a stop signal comes (`None`). Following has stopped
    /// either way.
    async fn follow_until_promoted(
        &self,
        stop: &mut watch::Receiver<bool>,
    ) -> anyhow::Result<Option<(Instant, &'static str)>> {
        let db = &self.db;
        let applied = if db.exists() {
            read_applied_txid(db).with_context(|| {
                format!(
                    "{} exists but is not a standby copy (no {}): move it away to start afresh",
                    db.display(),
                    engine::restore::follow::txid_path(db).display()
                )
            })?
        } else {
            // The first catch-up can take minutes: its progress goes to the log.
            let (progress, _shown) =
                crate::progress::start("standby restore", crate::progress::Style::Log);
            let txid = standby::restore_copy(self.store.clone(), db, progress)
                .await
                .with_context(|| format!("restoring {}", db.display()))?;
            info!(db = %db.display(), txid = %txid, "standby copy restored");
            txid
        };
        let (fstop_tx, fstop_rx) = watch::channel(false);
        let mut follow_task = tokio::spawn(follow_owned(
            self.store.clone(),
            db.clone(),
            applied,
            self.interval,
            fstop_rx,
        ));
        let mut observer = Observer::default();
        let tick = self.lc.renew_interval.min(Duration::from_secs(1));
        let mut last_report = Instant::now() - REPORT_EVERY;
        self.lease
            .status
            .update(|v| v.role = Some(engine::lease::Role::Standby));
        let decided = loop {
            tokio::select! {
                _ = tokio::time::sleep(tick) => {}
                _ = stop.changed() => break None,
                r = &mut follow_task => {
                    r.context("follow task")??;
                    bail!("following stopped unexpectedly");
                }
            }
            let requested = standby::promote_path(db).exists();
            let Some(expired) = self.observe_lease(&mut observer).await? else {
                continue;
            };
            report_lag(db, &self.store, &self.lease.status, &mut last_report).await;
            if requested || (self.lc.auto_promote && expired) {
                let decided = Instant::now();
                if let Some(reason) = self.try_take(&mut observer, requested).await {
                    break Some((decided, reason));
                }
            }
        };
        fstop_tx.send_replace(true);
        let followed = follow_task.await.context("follow task");
        if decided.is_some() {
            // Promotion: following must have ended cleanly before the epoch begins.
            followed??;
        }
        Ok(decided)
    }

    /// Reads the lease and notes it in the status: `Some(expired)`, or `None` after a
    /// passing read error (logged).
    async fn observe_lease(&self, observer: &mut Observer) -> anyhow::Result<Option<bool>> {
        let db = &self.db;
        let current = match self.lease.read().await {
            Ok(c) => c,
            Err(e) if e.is_permanent() => {
                return Err(e).context(format!("{}: lease", db.display()))
            }
            Err(e) => {
                warn!(db = %db.display(), error = %e, "reading the lease failed");
                return Ok(None);
            }
        };
        let Some((rec, tag)) = &current else {
            return Ok(Some(false));
        };
        let unchanged = observer.observe(tag);
        self.lease.status.update(|v| {
            v.role = Some(engine::lease::Role::Standby);
            v.holder = rec.owner.clone();
            v.epoch = rec.epoch;
            v.expires_at_ms = if rec.released { 0 } else { rec.expires_at_ms };
        });
        Ok(Some(
            rec.released || unchanged >= rec.ttl().max(self.lc.ttl),
        ))
    }

    /// Tries to take the lease; the reason to log when taken.
    async fn try_take(&self, observer: &mut Observer, requested: bool) -> Option<&'static str> {
        let db = &self.db;
        match self.lease.try_acquire(observer, requested).await {
            Ok(Acquire::Acquired { previous }) => {
                let reason = if requested {
                    "promote requested"
                } else {
                    "lease expired"
                };
                info!(db = %db.display(), reason, previous = ?previous.map(|p| (p.owner, p.epoch)),
                      epoch = self.lease.epoch().unwrap_or(0), "lease taken: promoting");
                return Some(reason);
            }
            Ok(Acquire::HeldBy { record, .. }) => {
                info!(db = %db.display(), holder = %record.owner, epoch = record.epoch, "lease still held");
            }
            Err(e) => warn!(db = %db.display(), error = %e, "taking the lease failed"),
        }
        None
    }

    /// Finishes the promotion (`engine::restore::standby::finish_promotion`), then
    /// replicates as the primary, with the `-exec` child if any, until stopped or the lease
    /// is lost.
    async fn replicate_as_primary(
        &self,
        cfg: &crate::config::Config,
        exec: Option<&str>,
        decided: Instant,
        reason: &'static str,
        stop: &watch::Receiver<bool>,
    ) -> anyhow::Result<ExitCode> {
        let (db, lease) = (&self.db, &self.lease);
        let mut runs: Vec<_> = setup::db_runs(cfg)?
            .into_iter()
            .filter(|r| r.opts.path == *db)
            .collect();
        let Some(run) = runs.first_mut() else {
            bail!("database {} is not in the config", db.display());
        };
        let (fenced, start) = standby::finish_promotion(run, lease, db, self.interval).await?;
        info!(db = %db.display(), epoch = lease.epoch().unwrap_or(0), first_txid = %start,
              took_ms = decided.elapsed().as_millis() as u64, reason,
              "promoted: the database accepts writes; replicating as primary");
        let held = vec![failover::Held {
            db: db.clone(),
            lease: lease.clone(),
            fenced,
            taken_at: Instant::now(),
        }];
        let (lost_tx, mut lost_rx) = watch::channel(None);
        failover::spawn_renewals(&held, lost_tx);
        let (stop_tx, stop_rx) = watch::channel(false);
        let handle = run.handle.clone();
        let task = tokio::spawn(engine::runtime::replicate_all(
            runs,
            stop_rx,
            RunMode::default(),
        ));
        let mut child_status = None;
        let mut stop = stop.clone();
        let lost = match exec {
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
    }
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
    let applied = read_applied_txid(db);
    let Ok(files) = store.list(ltx::Level::L0).await else {
        return;
    };
    let unapplied = || files.iter().filter(|f| Some(f.key.max) > applied);
    // The oldest file not yet applied says how long the copy has been behind.
    let lag_ms = unapplied()
        .map(|f| f.created)
        .min()
        .and_then(|t| t.elapsed().ok())
        .map_or(0, |d| d.as_millis() as u64);
    let replica_txid = files.iter().map(|f| f.key.max).max().max(applied);
    // `LeaseStatus` still counts TXIDs as u64 with 0 for none.
    let raw = |t: Option<ltx::TxId>| t.map_or(0, ltx::TxId::get);
    status.update(|v| {
        v.applied_txid = raw(applied);
        v.lag_ms = lag_ms;
    });
    let v = status.get();
    info!(db = %db.display(), applied = %format!("{:016x}", raw(applied)), replica = %format!("{:016x}", raw(replica_txid)),
          lag_ms, holder = %v.holder, epoch = v.epoch, "standby");
}
