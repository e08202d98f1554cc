//! Leases for databases with `lease:` in the config: taking one before replicating,
//! fencing every replica write by it, renewing it, giving it up at a clean stop.
//!
//! Used by `replicate` (wait for the lease, then replicate) and by `standby` (take it at
//! promotion, then replicate). Beginning an epoch and fencing are the engine's
//! (`engine::restore::standby`); this module loops, logs and renews. The lease lives in the database's first replica; the
//! writes to every replica of that database are fenced by it (`engine::lease::fence`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use engine::lease::fence::FencedStore;
use engine::lease::{Acquire, Lease, LeaseOptions, Observer};
use engine::restore::standby;
use engine::runtime::DbRun;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::config::{Config, LeaseConfig};
use crate::setup;

/// How long after taking a lease the fenced stores keep sweeping for late writes of the
/// old epoch: longer than any signed request stays valid (S3 SigV4: 15 minutes).
const SWEEP_FOR: Duration = Duration::from_secs(16 * 60);

/// One database's lease, held, and the fenced stores of its replicas.
pub struct Held {
    pub db: PathBuf,
    pub lease: Arc<Lease>,
    pub fenced: Vec<Arc<FencedStore>>,
    pub taken_at: Instant,
}

/// The lease options of a database: owner from the config, else the host name.
pub fn lease_options(c: &LeaseConfig) -> LeaseOptions {
    let mut o = LeaseOptions::new(c.owner.clone().unwrap_or_else(host_name), c.ttl);
    o.renew_interval = c.renew_interval;
    o
}

fn host_name() -> String {
    engine::platform::process::host_name().unwrap_or_else(|| "unknown-host".into())
}

/// `replicate` with leases: for every run whose database has `lease:`, fences its stores
/// and waits until the lease is ours (or `stop` turns true: then `None`). A host that
/// takes a lease last held by someone else starts from a full image (its local state may
/// predate the other holder's history).
pub async fn take_leases(
    cfg: &Config,
    runs: &mut [DbRun],
    stop: &mut watch::Receiver<bool>,
) -> anyhow::Result<Option<Vec<Held>>> {
    let mut held = Vec::new();
    // One scan of the config's directories, not one per database: with thousands of
    // databases a scan per database made the start quadratic.
    let leases: std::collections::HashMap<_, _> = setup::concrete_dbs(cfg)?
        .into_iter()
        .filter_map(|(p, db)| db.lease.map(|l| (p, l)))
        .collect();
    for run in runs.iter_mut() {
        let Some(lc) = leases.get(&run.opts.path).cloned() else {
            continue;
        };
        let Some(first) = run.replicas.first() else {
            continue;
        };
        let lease = Arc::new(Lease::new(first.store.clone(), lease_options(&lc)));
        let fenced = standby::fence_run(run, &lease);
        let db = run.opts.path.clone();
        let mut observer = Observer::default();
        let mut said = None;
        let previous = loop {
            match lease.try_acquire(&mut observer, false).await {
                Ok(Acquire::Acquired { previous }) => break previous,
                Ok(Acquire::HeldBy { record, .. }) => {
                    if said.as_ref() != Some(&(record.owner.clone(), record.epoch)) {
                        info!(db = %db.display(), holder = %record.owner, epoch = record.epoch,
                              "lease held by another replicator: waiting (not uploading)");
                        said = Some((record.owner.clone(), record.epoch));
                    }
                }
                Err(e) => {
                    if e.is_permanent() {
                        return Err(e).with_context(|| format!("{}: lease", db.display()));
                    }
                    warn!(db = %db.display(), error = %e, "reading the lease failed; retrying");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(lease.options().renew_interval) => {}
                _ = stop.changed() => return Ok(None),
            }
        };
        if previous
            .as_ref()
            .is_some_and(|p| p.owner != lease.options().owner)
        {
            standby::reset_local_state(run)?;
        }
        let start = standby::begin_epoch(&lease, &fenced).await?;
        info!(db = %db.display(), owner = %lease.options().owner, epoch = lease.epoch().unwrap_or(0),
              start_txid = %start, "lease taken: replicating as primary");
        held.push(Held {
            db,
            lease,
            fenced,
            taken_at: Instant::now(),
        });
    }
    Ok(Some(held))
}

/// Renews every held lease on its interval, sweeping for late writes early in an epoch.
/// Sends the reason on `lost` when a lease is lost: the caller stops at once, without a
/// final sync (its writes are fenced), stopping an `-exec` child too.
pub fn spawn_renewals(held: &[Held], lost: watch::Sender<Option<String>>) {
    let lost = Arc::new(lost);
    for h in held {
        let (lease, fenced, db, taken) =
            (h.lease.clone(), h.fenced.clone(), h.db.clone(), h.taken_at);
        let lost = lost.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(lease.options().renew_interval).await;
                match lease.renew().await {
                    Ok(()) => {
                        if taken.elapsed() < SWEEP_FOR {
                            for f in &fenced {
                                if let Err(e) = f.sweep().await {
                                    warn!(db = %db.display(), error = %e, "sweep for late writes failed");
                                }
                            }
                        }
                    }
                    Err(e @ engine::lease::LeaseError::Lost { .. }) => {
                        // The one line that says why everything stops now (issue 18).
                        tracing::error!(db = %db.display(), error = %e,
                            "lease lost: another replicator is primary now; stopping at once (this host's writes can no longer be replicated)");
                        lost.send_replace(Some(format!("{}: {e}", db.display())));
                        return;
                    }
                    Err(e) => {
                        warn!(db = %db.display(), error = %e, "lease renewal failed (writes stop when it runs out)")
                    }
                }
            }
        });
    }
}

/// Gives up every lease still held (after the final sync of a clean stop).
pub async fn release(held: &[Held]) {
    for h in held {
        if h.lease.epoch().is_none() {
            continue;
        }
        match h.lease.release().await {
            Ok(()) => info!(db = %h.db.display(), "lease released"),
            Err(e) => warn!(db = %h.db.display(), error = %e, "releasing the lease failed"),
        }
    }
}

/// Waits for SIGINT/SIGTERM (`Ok(None)`) or the loss of a lease (`Ok(Some(reason))`).
pub async fn wait_for_signal_or_loss(
    lost: &mut watch::Receiver<Option<String>>,
) -> anyhow::Result<Option<String>> {
    let mut signals = crate::signals::subscribe()?;
    tokio::select! {
        _ = crate::signals::requested(&mut signals) => Ok(None),
        l = lease_lost(lost) => Ok(Some(l)),
    }
}

/// Resolves with the reason once a lease is lost; never, when no lease is held (every
/// sender gone).
pub async fn lease_lost(lost: &mut watch::Receiver<Option<String>>) -> String {
    match lost.wait_for(|l| l.is_some()).await {
        Ok(l) => l.clone().unwrap_or_default(),
        Err(_) => std::future::pending().await,
    }
}
