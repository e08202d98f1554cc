//! `check`: the pre-flight check. For each database of the config (or the one named) and
//! each of its replicas, says what is wrong and what to do about it.
//!
//! `check [-config FILE] [-json] [-wal-warn-size SIZE] [-wal-fail-size SIZE]
//! [-skew-warn DURATION] [-skew-fail DURATION] [-no-quick-check] [-replica NAME] [DB]`
//!
//! The checks themselves live in `engine::check`; this file picks the databases and
//! replicas, prints the findings and sets the exit status: 0 when nothing failed (warnings
//! allowed), 1 otherwise. One check is about the config file itself: secrets written
//! inline in a file that group or others can read (`config-secrets`). Another is each
//! replica's request budget (`request-budget`): what sustained writes cost in uploads,
//! and, when a daemon answers on the config's `addr`, its request rate now and the month
//! that rate projects to.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use engine::check::database::DbCheck;
use engine::check::{self, Finding, Level, Thresholds};
use engine::replicate::report::{RequestFigures, MONTH_SECS};

use crate::config::{self, Config, DbConfig};
use crate::setup;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    config: Option<PathBuf>,
    /// Print the findings as JSON.
    #[arg(long)]
    json: bool,
    /// Warn when a WAL is at least this large (e.g. 100MiB).
    #[arg(long = "wal-warn-size", default_value = "100MiB")]
    wal_warn_size: String,
    /// Fail when a WAL is at least this large (e.g. 1GiB).
    #[arg(long = "wal-fail-size", default_value = "1GiB")]
    wal_fail_size: String,
    /// Warn when the storage's clock is at least this far from ours.
    #[arg(long = "skew-warn", default_value = "5s")]
    skew_warn: String,
    /// Fail when the storage's clock is at least this far from ours.
    #[arg(long = "skew-fail", default_value = "30s")]
    skew_fail: String,
    /// Skip `PRAGMA quick_check` (it reads the whole database).
    #[arg(long = "no-quick-check")]
    no_quick_check: bool,
    /// Check only this replica of each database.
    #[arg(long)]
    replica: Option<String>,
    #[arg(long = "no-expand-env")]
    no_expand_env: bool,
    /// Check only this database of the config.
    db: Option<PathBuf>,
}

/// One finding with the database and replica it is about (or the config file).
struct Row {
    /// The config file, for a finding about the file itself (then `db` is empty).
    config: Option<String>,
    db: String,
    replica: Option<String>,
    finding: Finding,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let thresholds = thresholds(&a)?;
    let cfg = setup::load_config(a.config.as_deref(), !a.no_expand_env)?;
    crate::logging::init("warn", crate::logging::Format::Text);
    let dbs = selected_dbs(&cfg, a.db.as_deref())?;
    let config_rows: Vec<Row> = setup::config_path(a.config.as_deref())
        .and_then(|p| config_secrets(&p).map(|f| (p, f)))
        .map(|(p, finding)| Row {
            config: Some(p.display().to_string()),
            db: String::new(),
            replica: None,
            finding,
        })
        .into_iter()
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let rows = rt.block_on(async {
        let live = match &cfg.addr {
            Some(addr) => crate::observe::client::daemon_status(addr, DAEMON_TIMEOUT)
                .await
                .ok(),
            None => None,
        };
        let mut rows = config_rows;
        for (path, db) in &dbs {
            let label = path.display().to_string();
            let c = DbCheck {
                db: path.clone(),
                meta_dir: db
                    .meta_path
                    .clone()
                    .unwrap_or_else(|| engine::replicate::local::default_meta_dir(path)),
                quick_check: !a.no_quick_check,
                busy_timeout: db.busy_timeout,
            };
            let t = thresholds;
            let found = tokio::task::spawn_blocking(move || check::database::check(&c, &t))
                .await
                .context("database check task")?;
            rows.extend(found.into_iter().map(|finding| Row {
                config: None,
                db: label.clone(),
                replica: None,
                finding,
            }));
            for r in &db.replicas {
                let name = setup::replica_name(r);
                if a.replica.as_ref().is_some_and(|w| *w != name) {
                    continue;
                }
                let shown = format!("{name} ({})", r.kind.describe());
                let mut found = match setup::build_replica_store(r) {
                    Ok(store) => check::replica::check(store.as_ref(), &thresholds).await,
                    Err(e) => vec![Finding::fail(
                        "replica-config",
                        format!("cannot set up the replica: {e:#}"),
                        "fix the replica's settings in the config",
                    )],
                };
                let now = live
                    .as_ref()
                    .and_then(|rep| rep.databases.iter().find(|d| Path::new(&d.db) == path))
                    .and_then(|d| d.replicas.iter().find(|x| x.name == name))
                    .and_then(|x| x.requests.clone());
                found.push(budget_finding(r, now.as_ref()));
                rows.extend(found.into_iter().map(|finding| Row {
                    config: None,
                    db: label.clone(),
                    replica: Some(shown.clone()),
                    finding,
                }));
            }
        }
        anyhow::Ok(rows)
    })?;
    let failures = rows
        .iter()
        .filter(|r| r.finding.level == Level::Fail)
        .count();
    let warnings = rows
        .iter()
        .filter(|r| r.finding.level == Level::Warn)
        .count();
    print_rows(&rows, a.json, failures, warnings)?;
    Ok(if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Prints the findings as JSON or as a table with a summary line.
fn print_rows(rows: &[Row], json: bool, failures: usize, warnings: usize) -> anyhow::Result<()> {
    if json {
        let findings: Vec<_> = rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "level": r.finding.level.as_str(),
                    "config": r.config,
                    "db": r.config.is_none().then_some(&r.db),
                    "replica": r.replica,
                    "check": r.finding.check,
                    "message": r.finding.message,
                    "action": r.finding.action,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "ok": failures == 0,
                "failures": failures,
                "warnings": warnings,
                "findings": findings,
            }))?
        );
    } else {
        print_text(rows);
        println!(
            "{} finding(s): {failures} failure(s), {warnings} warning(s)",
            rows.len()
        );
    }
    Ok(())
}

/// How long to wait for a running daemon's `/status` (request rates) before going on
/// without it.
const DAEMON_TIMEOUT: Duration = Duration::from_secs(2);

/// `request-budget`: what sustained writes cost the replica in uploads under its
/// `upload-rate` (or, unlimited, its `sync-interval`), and the live rate when a daemon
/// answered. An object store without a budget is a warning: one upload per
/// `sync-interval` can be a large bill.
fn budget_finding(r: &config::ReplicaConfig, now: Option<&RequestFigures>) -> Finding {
    const CHECK: &str = "request-budget";
    let month = |per_sec: f64| human_count(per_sec * MONTH_SECS);
    let pace = r.sync_interval.unwrap_or(engine::defaults::SYNC_INTERVAL);
    let pace_rate = 1.0 / pace.as_secs_f64();
    let mut msg = match r.upload_budget {
        Some(b) => {
            let most = b.per_sec.min(pace_rate);
            format!(
                "upload-rate {}/s, upload-burst {}: sustained writes cost at most {} uploads/s ({} a month) plus compaction",
                trim(b.per_sec),
                b.burst,
                trim(most),
                month(most)
            )
        }
        None => format!(
            "no upload-rate: sustained writes cost one upload per sync-interval ({}), {} uploads/s ({} a month) plus compaction",
            config::format_duration(pace),
            trim(pace_rate),
            month(pace_rate)
        ),
    };
    if let Some(q) = now {
        msg.push_str(&format!(
            "; now {} requests/s, {} a month at this rate",
            trim(q.per_second),
            human_count(q.projected_per_month)
        ));
    }
    let object_store = !matches!(
        r.kind,
        config::ReplicaKind::File { .. }
            | config::ReplicaKind::Sftp(_)
            | config::ReplicaKind::WebDav(_)
    );
    if object_store && r.upload_budget.is_none() && pace_rate > 1.0 {
        Finding::warn(
            CHECK,
            msg,
            "set upload-rate (e.g. 1, the default of object stores) unless every upload is worth its request",
        )
    } else {
        Finding::ok(CHECK, msg)
    }
}

/// A rate with at most two decimals, no trailing zeros.
fn trim(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// A count as 2.6M, 130M, 950k, 12.
fn human_count(v: f64) -> String {
    if v >= 1e9 {
        format!("{}G", trim(v / 1e9))
    } else if v >= 1e6 {
        format!("{}M", trim(v / 1e6))
    } else if v >= 1e3 {
        format!("{}k", trim(v / 1e3))
    } else {
        format!("{v:.0}")
    }
}

fn print_text(rows: &[Row]) {
    let mut heading: Option<(&str, Option<&str>)> = None;
    for r in rows {
        let h = (r.db.as_str(), r.replica.as_deref());
        if let Some(c) = &r.config {
            println!("config {c}");
        } else if heading != Some(h) {
            match h.1 {
                None => println!("database {}", h.0),
                Some(rep) => println!("  replica {rep}"),
            }
            heading = Some(h);
        }
        let indent = if r.replica.is_some() { "    " } else { "  " };
        println!(
            "{indent}{:<5} {:<27} {}",
            r.finding.level.as_str(),
            r.finding.check,
            r.finding.message
        );
        if r.finding.level != Level::Ok {
            if let Some(action) = &r.finding.action {
                println!("{indent}{:<5} {:<27} what to do: {action}", "", "");
            }
        }
    }
}

/// A warning when the config file at `path` holds secrets inline and group or others may
/// read it; `None` when it is private, holds none, or cannot be read (loading it already
/// succeeded, so that is a race not worth a finding). On Windows, where access is an ACL
/// and not mode bits, never a finding.
fn config_secrets(path: &Path) -> Option<Finding> {
    let (group, others, mode) = engine::platform::process::group_other_readable(path)?;
    let who = match (group, others) {
        (true, true) => "its group and all users",
        (true, false) => "its group",
        (false, true) => "all users",
        (false, false) => return None,
    };
    let keys = config::inline_secrets(&std::fs::read_to_string(path).ok()?);
    if keys.is_empty() {
        return None;
    }
    let shown = path.display();
    Some(Finding::warn(
        "config-secrets",
        format!(
            "{shown} holds secrets inline ({}) and {who} can read it (mode {mode:04o})",
            keys.join(", ")
        ),
        format!(
            "chmod 600 {shown} (and chown it to the user that runs sqlite-replicate), or take the secrets from the environment (`secret-access-key: $AWS_SECRET_ACCESS_KEY`)"
        ),
    ))
}

fn thresholds(a: &Args) -> anyhow::Result<Thresholds> {
    let size = |flag: &str, v: &str| {
        config::parse_size(v)
            .with_context(|| format!("-{flag} {v:?}: expected a size such as 100MiB or 1GB"))
    };
    let dur = |flag: &str, v: &str| -> anyhow::Result<Duration> {
        setup::parse_duration(v).with_context(|| format!("-{flag} {v:?}"))
    };
    let t = Thresholds {
        wal_warn_bytes: size("wal-warn-size", &a.wal_warn_size)?,
        wal_fail_bytes: size("wal-fail-size", &a.wal_fail_size)?,
        skew_warn: dur("skew-warn", &a.skew_warn)?,
        skew_fail: dur("skew-fail", &a.skew_fail)?,
    };
    if t.wal_warn_bytes > t.wal_fail_bytes {
        bail!("-wal-warn-size is above -wal-fail-size");
    }
    if t.skew_warn > t.skew_fail {
        bail!("-skew-warn is above -skew-fail");
    }
    Ok(t)
}

/// The config's databases, or the one named (by its path, as `restore` finds it).
pub(crate) fn selected_dbs(
    cfg: &Config,
    only: Option<&Path>,
) -> anyhow::Result<Vec<(PathBuf, DbConfig)>> {
    let all = setup::concrete_dbs(cfg)?;
    let Some(want) = only else {
        if all.is_empty() {
            bail!("the config lists no database");
        }
        return Ok(all);
    };
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let found: Vec<_> = all
        .into_iter()
        .filter(|(p, _)| abs(p) == abs(want))
        .collect();
    if found.is_empty() {
        bail!("database {} is not in the config", want.display());
    }
    Ok(found)
}
