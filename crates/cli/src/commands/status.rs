//! `status`: per database and replica, the local TXID, the replicated TXID, the lag, the
//! WAL size, the last checkpoint and the last error.
//!
//! Prefers the live figures of a running `replicate` (its `/status` at the config's
//! `addr`); without one, works them out offline from the local meta directory and a
//! listing of each replica (the last checkpoint is then unknown). Litestream's `status`
//! shows `database status local_txid wal_size`, local only; this adds the replicas.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use engine::clock::now_ms;
use engine::history::{list_levels, Times};
use engine::replicate::local::LocalDir;
use engine::replicate::report::{self, DbReport, ReplicaReport, Report};
use engine::runtime::DbRun;
use ltx::Level;

use crate::config::Config;
use crate::{observe, setup};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(long)]
    json: bool,
    #[arg(long = "no-expand-env")]
    no_expand_env: bool,
    /// Only this database (a path from the config).
    db: Option<PathBuf>,
}

/// How long to wait for a running daemon's `/status` before working offline.
const DAEMON_TIMEOUT: Duration = Duration::from_secs(2);

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let cfg = setup::load_config(a.config.as_deref(), !a.no_expand_env)?;
    let want =
        a.db.as_deref()
            .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut report = rt.block_on(async {
        if let Some(addr) = &cfg.addr {
            match observe::client::daemon_status(addr, DAEMON_TIMEOUT).await {
                Ok(r) => return Ok(r),
                Err(e) => tracing::debug!(error = %format!("{e:#}"), "no running daemon"),
            }
        }
        offline(&cfg, want.as_deref()).await
    })?;
    if let Some(w) = &want {
        report.databases.retain(|d| Path::new(&d.db) == w);
        if report.databases.is_empty() {
            anyhow::bail!("database {} is not in the config", w.display());
        }
    }
    let leases = rt.block_on(leases(&cfg, want.as_deref()))?;
    if a.json {
        let mut v = serde_json::to_value(&report)?;
        if !leases.is_empty() {
            v["leases"] = serde_json::Value::Array(leases);
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print_table(&report);
        print_leases(&leases);
    }
    Ok(ExitCode::SUCCESS)
}

/// The lease of every database with `lease:` (read from its first replica), and, where
/// this host keeps a standby copy (`<db>-txid`), how far it has applied the replica.
async fn leases(cfg: &Config, want: Option<&Path>) -> anyhow::Result<Vec<serde_json::Value>> {
    let mut out = Vec::new();
    for (path, db) in setup::concrete_dbs(cfg)? {
        let (Some(lc), Some(first)) = (&db.lease, db.replicas.first()) else {
            continue;
        };
        if want.is_some_and(|w| w != path) {
            continue;
        }
        let store = setup::build_store(&first.kind)?;
        let lease = engine::lease::Lease::new(store.clone(), crate::failover::lease_options(lc));
        let mut v = serde_json::json!({ "db": path.display().to_string() });
        match lease.read().await {
            Ok(Some((r, _))) => {
                v["holder"] = r.owner.into();
                v["epoch"] = r.epoch.into();
                v["released"] = r.released.into();
                v["expires_at"] =
                    setup::rfc3339_ms(engine::clock::ms_to_time(r.expires_at_ms)).into();
                v["epoch_start_txid"] =
                    format!("{:016x}", r.start_txid.map_or(0, ltx::TxId::get)).into();
            }
            Ok(None) => v["holder"] = serde_json::Value::Null,
            Err(e) => v["error"] = e.to_string().into(),
        }
        if let Some(applied) = engine::restore::follow::read_applied_txid(&path) {
            let replica_txid = list_levels(store.as_ref(), Level::all(), Times::Listed)
                .await
                .ok()
                .and_then(|l| l.iter().map(|f| f.key.max.get()).max())
                .unwrap_or(0);
            v["standby_applied_txid"] = applied.to_string().into();
            v["standby_lag_txids"] = replica_txid.saturating_sub(applied.get()).into();
        }
        out.push(v);
    }
    Ok(out)
}

fn print_leases(leases: &[serde_json::Value]) {
    for l in leases {
        let s = |k: &str| {
            l[k].as_str()
                .map(str::to_string)
                .unwrap_or_else(|| l[k].to_string())
        };
        println!(
            "lease {}: holder {} epoch {} expires {}{}",
            s("db"),
            s("holder"),
            s("epoch"),
            s("expires_at"),
            if l["released"].as_bool() == Some(true) {
                " (released)"
            } else {
                ""
            }
        );
        if l.get("standby_applied_txid").is_some() {
            println!(
                "standby {}: applied TXID {}, {} TXID(s) behind the replica",
                s("db"),
                s("standby_applied_txid"),
                s("standby_lag_txids")
            );
        }
    }
}

/// A report from the local state and replica listings, no daemon involved.
async fn offline(cfg: &Config, want: Option<&Path>) -> anyhow::Result<Report> {
    let now = now_ms();
    let mut databases = Vec::new();
    for run in setup::db_runs(cfg)? {
        if want.is_some_and(|w| w != run.opts.path) {
            continue;
        }
        databases.push(offline_db(&run, now).await);
    }
    Ok(Report {
        taken_unix_ms: now,
        source: "offline".into(),
        databases,
    })
}

async fn offline_db(run: &DbRun, now: i64) -> DbReport {
    let path = &run.opts.path;
    let mut last_error = None;
    let (local_txid, files) = match LocalDir::existing(&run.opts.meta_dir) {
        None => (0, Vec::new()),
        Some(l) => {
            let txid = match l.position() {
                Ok(p) => p.map_or(0, |p| p.txid.get()),
                Err(e) => {
                    last_error = Some(format!("local state {}: {e}", run.opts.meta_dir.display()));
                    0
                }
            };
            (txid, l.files().unwrap_or_default())
        }
    };
    let db_size_bytes = std::fs::metadata(path).ok().map(|m| m.len());
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let wal_size_bytes = db_size_bytes.map(|_| std::fs::metadata(&wal).map_or(0, |m| m.len()));
    let mut replicas = Vec::new();
    for spec in &run.replicas {
        let mut r = ReplicaReport {
            name: spec.opts.name.clone(),
            replica_type: observe::replica_type(spec.store.location()).to_string(),
            ..Default::default()
        };
        match list_levels(spec.store.as_ref(), Level::all(), Times::Listed).await {
            Ok(list) => {
                let max = list.iter().map(|f| f.key.max.get()).max().unwrap_or(0);
                r.last_upload_unix_ms = list
                    .iter()
                    .filter_map(|f| f.created.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| d.as_millis() as i64)
                    .max();
                let l = report::lag(local_txid, max, &files, r.last_upload_unix_ms, now);
                r.replicated_txid = Some(max);
                (r.lag_txids, r.pending_bytes, r.lag_seconds) = (l.txids, l.bytes, l.seconds);
            }
            Err(e) => {
                r.last_error = Some(match e.hint() {
                    Some(h) => format!("{e} (hint: {h})"),
                    None => e.to_string(),
                })
            }
        }
        replicas.push(r);
    }
    DbReport {
        db: path.display().to_string(),
        local_txid,
        db_size_bytes,
        wal_size_bytes,
        last_error,
        replicas,
        ..Default::default()
    }
}

/// One word for a row: the worst thing about it.
fn state(d: &DbReport, r: Option<&ReplicaReport>) -> &'static str {
    if d.failing_since_unix_ms.is_some() || d.last_error.is_some() {
        return "failing";
    }
    if d.db_size_bytes.is_none() && d.local_txid == 0 {
        return "no database";
    }
    match r {
        Some(r) if r.failing_since_unix_ms.is_some() || r.replicated_txid.is_none() => "failing",
        Some(r) if r.lag_txids > 0 => "behind",
        _ => "ok",
    }
}

fn print_table(report: &Report) {
    eprintln!(
        "({})",
        if report.source == "daemon" {
            "live figures from the running replicate"
        } else {
            "offline: local state and replica listings"
        }
    );
    println!(
        "{:<40} {:<10} {:<11} {:<16} {:<16} {:>6} {:>10} {:>10} {:<24} {:<24} {:>7} {:>10} last_error",
        "database",
        "replica",
        "status",
        "local_txid",
        "replicated_txid",
        "lag",
        "pending",
        "wal_size",
        "last_upload",
        "last_checkpoint",
        "req/s",
        "req/month"
    );
    let time = |ms: Option<i64>| {
        ms.map(|t| setup::rfc3339_ms(engine::clock::ms_to_time(t)))
            .unwrap_or_else(|| "-".into())
    };
    for d in &report.databases {
        let rows: Vec<Option<&ReplicaReport>> = if d.replicas.is_empty() {
            vec![None]
        } else {
            d.replicas.iter().map(Some).collect()
        };
        for r in rows {
            let error = r
                .and_then(|r| r.last_error.as_deref())
                .or(d.last_error.as_deref())
                .unwrap_or("-");
            let requests = r.and_then(|r| r.requests.as_ref());
            println!(
                "{:<40} {:<10} {:<11} {:<16} {:<16} {:>6} {:>10} {:>10} {:<24} {:<24} {:>7} {:>10} {}",
                d.db,
                r.map_or("-", |r| r.name.as_str()),
                state(d, r),
                format!("{:016x}", d.local_txid),
                r.and_then(|r| r.replicated_txid)
                    .map_or("-".into(), |t| format!("{t:016x}")),
                r.map_or(0, |r| r.lag_txids),
                r.map_or(0, |r| r.pending_bytes),
                d.wal_size_bytes.map_or("-".into(), |b| b.to_string()),
                time(r.and_then(|r| r.last_upload_unix_ms)),
                time(d.last_checkpoint_unix_ms),
                requests.map_or("-".into(), |q| format!("{:.2}", q.per_second)),
                requests.map_or("-".into(), |q| format!("{:.0}", q.projected_per_month)),
                error.replace('\n', " ")
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_states() {
        let ok = ReplicaReport {
            replicated_txid: Some(5),
            ..Default::default()
        };
        let behind = ReplicaReport {
            replicated_txid: Some(3),
            lag_txids: 2,
            ..Default::default()
        };
        let unlisted = ReplicaReport::default();
        let db = DbReport {
            local_txid: 5,
            db_size_bytes: Some(4096),
            ..Default::default()
        };
        assert_eq!(state(&db, Some(&ok)), "ok");
        assert_eq!(state(&db, Some(&behind)), "behind");
        assert_eq!(state(&db, Some(&unlisted)), "failing");
        let gone = DbReport::default();
        assert_eq!(state(&gone, Some(&ok)), "no database");
        let failing = DbReport {
            last_error: Some("x".into()),
            ..db
        };
        assert_eq!(state(&failing, Some(&ok)), "failing");
    }
}
