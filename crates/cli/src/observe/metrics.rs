//! The Prometheus text exposition (format 0.0.4) of a [`Report`]: a pure function.
//!
//! Litestream's metric names and labels come first, so its dashboards keep working:
//! `litestream_db_size`, `_wal_size`, `_total_wal_bytes`, `_txid`, `_sync_count`,
//! `_sync_error_count`, `_sync_seconds` {db}; `litestream_checkpoint_count`,
//! `_checkpoint_error_count`, `_checkpoint_seconds` {db, mode}; `litestream_disk_full`
//! {db}; `litestream_replica_operation_total`, `_bytes`, `_duration_seconds` (a histogram
//! with Litestream's buckets) {replica_type, operation} and `_errors_total`
//! {replica_type, operation, code}, from every request to each replica's store
//! (`storage::metered`); and `litestream_l0_retention_files_total` {db, status}. Ours follow
//! as `sqlite_replicate_*` with labels `db` (path) and `replica` (name): lag in TXIDs,
//! bytes and seconds, time since the last upload, failing spells, drills, the request
//! rate (last minute) with its projection over a month and the request budget.
//!
//! Error texts are not labels (unbounded); `/status` carries them.

use std::collections::BTreeMap;
use std::fmt::Write;

use engine::lease::{LeaseView, Role};
use engine::replicate::report::{DbCounters, DbReport, ReplicaReport, Report};
use engine::storage::metered::{OperationFigures, DURATION_BUCKETS_SECONDS};

/// Our checkpoints are PASSIVE (Litestream's `mode` label value).
const CHECKPOINT_MODE: &str = "PASSIVE";

type Labels<'a> = Vec<(&'a str, &'a str)>;

/// One metric family, written only when it has samples.
struct Family<'a> {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    samples: Vec<(Labels<'a>, f64)>,
}

impl<'a> Family<'a> {
    fn new(name: &'static str, kind: &'static str, help: &'static str) -> Family<'a> {
        Family {
            name,
            kind,
            help,
            samples: Vec::new(),
        }
    }

    fn add(&mut self, labels: Labels<'a>, v: f64) {
        self.samples.push((labels, v));
    }

    fn write(&self, out: &mut String) {
        if self.samples.is_empty() {
            return;
        }
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} {}", self.name, self.kind);
        for (labels, v) in &self.samples {
            out.push_str(self.name);
            if !labels.is_empty() {
                out.push('{');
                for (i, (k, val)) in labels.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{k}=\"{}\"", escape(val));
                }
                out.push('}');
            }
            let _ = writeln!(out, " {}", number(*v));
        }
    }
}

/// Sums `f` into `into` (operations of one replica type from several replicas).
fn merge(into: &mut OperationFigures, f: &OperationFigures) {
    into.total += f.total;
    into.bytes += f.bytes;
    into.duration_count += f.duration_count;
    into.duration_seconds_sum += f.duration_seconds_sum;
    if into.duration_buckets.len() < f.duration_buckets.len() {
        into.duration_buckets.resize(f.duration_buckets.len(), 0);
    }
    for (a, b) in into.duration_buckets.iter_mut().zip(&f.duration_buckets) {
        *a += b;
    }
    for (code, n) in &f.errors {
        *into.errors.entry(code.clone()).or_default() += n;
    }
}

/// The name of Litestream's duration histogram.
const DURATION_HISTOGRAM: &str = "litestream_replica_operation_duration_seconds";

/// The duration histogram `m`: `_bucket` {le}, `_sum` and `_count` per (replica type,
/// operation).
fn write_duration_histogram(
    m: &Metric,
    ops: &BTreeMap<(&str, String), OperationFigures>,
    out: &mut String,
) {
    if ops.is_empty() {
        return;
    }
    let name = m.name;
    let _ = writeln!(out, "# HELP {name} {}", m.help);
    let _ = writeln!(out, "# TYPE {name} {}", m.kind);
    for ((ty, op), f) in ops {
        let l = format!(
            "replica_type=\"{}\",operation=\"{}\"",
            escape(ty),
            escape(op)
        );
        for (le, n) in DURATION_BUCKETS_SECONDS.iter().zip(&f.duration_buckets) {
            let _ = writeln!(out, "{name}_bucket{{{l},le=\"{}\"}} {n}", number(*le));
        }
        let _ = writeln!(out, "{name}_bucket{{{l},le=\"+Inf\"}} {}", f.duration_count);
        let _ = writeln!(out, "{name}_sum{{{l}}} {}", number(f.duration_seconds_sum));
        let _ = writeln!(out, "{name}_count{{{l}}} {}", f.duration_count);
    }
}

/// Label values escape backslash, double quote and newline.
fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => o.push_str("\\\\"),
            '"' => o.push_str("\\\""),
            '\n' => o.push_str("\\n"),
            c => o.push(c),
        }
    }
    o
}

/// Whole numbers without a fraction; others as Rust prints them (never an exponent).
fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 9.0e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

fn secs(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

/// Where one family's samples come from, and so its labels.
enum Read {
    /// Labels {db}: one sample per database whose value is known.
    Db(fn(&DbReport, i64) -> Option<f64>),
    /// Labels {db, mode}: one sample per database with counters (mode is always PASSIVE).
    Checkpoint(fn(&DbCounters) -> f64),
    /// Labels {db, replica}: one sample per replica whose value is known.
    Replica(fn(&ReplicaReport, i64) -> Option<f64>),
    /// Labels {replica_type, operation}: Litestream's operation figures, summed per type
    /// over every replica of every database.
    Operation(fn(&str, &OperationFigures) -> Option<f64>),
    /// Labels {replica_type, operation, code}: failed operations per error code.
    OperationErrors,
    /// The duration histogram of the operations ([`write_duration_histogram`]).
    OperationDurations,
    /// Labels {db, status}: L0 retention, by database file name (see [`l0_retention`]).
    L0Retention,
}

/// One metric family: what the exposition says about it and how to read its samples.
struct Metric {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    read: Read,
}

const fn metric(name: &'static str, kind: &'static str, help: &'static str, read: Read) -> Metric {
    Metric {
        name,
        kind,
        help,
        read,
    }
}

const GAUGE: &str = "gauge";
const COUNTER: &str = "counter";

fn since(now: i64, t: i64) -> f64 {
    secs((now - t).max(0))
}

fn flag(b: bool) -> f64 {
    b as u8 as f64
}

/// A value read from a database's counters, absent offline.
macro_rules! db_counter {
    ($f:expr) => {
        Read::Db(|d, _| d.counters.as_ref().map($f))
    };
}

/// A value read from a replica's counters, absent offline.
macro_rules! replica_counter {
    ($field:ident) => {
        Read::Replica(|r, _| r.counters.as_ref().map(|c| c.$field as f64))
    };
}

/// Every family [`render`] writes, in the order it writes them: Litestream's first.
#[rustfmt::skip]
const METRICS: &[Metric] = &[
    metric("litestream_db_size", GAUGE, "The current size of the database, in bytes.",
        Read::Db(|d, _| d.db_size_bytes.map(|b| b as f64))),
    metric("litestream_wal_size", GAUGE, "The current size of the WAL, in bytes.",
        Read::Db(|d, _| d.wal_size_bytes.map(|b| b as f64))),
    metric("litestream_total_wal_bytes", COUNTER, "WAL bytes captured since start.",
        db_counter!(|c| c.wal_bytes_captured as f64)),
    metric("litestream_txid", GAUGE, "The newest TXID captured locally.",
        Read::Db(|d, _| Some(d.local_txid as f64))),
    metric("litestream_sync_count", COUNTER, "Capture cycles (looks at the WAL).",
        db_counter!(|c| c.syncs as f64)),
    metric("litestream_sync_error_count", COUNTER, "Capture cycles that failed.",
        db_counter!(|c| c.sync_errors as f64)),
    metric("litestream_sync_seconds", COUNTER, "Time spent in capture cycles, in seconds.",
        db_counter!(|c| c.sync_seconds)),
    metric("litestream_checkpoint_count", COUNTER, "Checkpoints run by the replicator.",
        Read::Checkpoint(|c| c.checkpoints as f64)),
    metric("litestream_checkpoint_error_count", COUNTER, "Checkpoints that failed.",
        Read::Checkpoint(|c| c.checkpoint_errors as f64)),
    metric("litestream_checkpoint_seconds", COUNTER, "Time spent checkpointing, in seconds.",
        Read::Checkpoint(|c| c.checkpoint_seconds)),
    metric("litestream_replica_operation_total", COUNTER,
        "Replica operations, by replica type and operation.",
        Read::Operation(|_, f| Some(f.total as f64))),
    metric("litestream_replica_operation_bytes", COUNTER,
        "Bytes moved by replica operations, by replica type and operation.",
        Read::Operation(|op, f| (op == "PUT" || op == "GET").then_some(f.bytes as f64))),
    metric(DURATION_HISTOGRAM, "histogram",
        "Duration of replica operations by type and operation, in seconds.",
        Read::OperationDurations),
    metric("litestream_replica_operation_errors_total", COUNTER,
        "Replica operations that failed, by replica type, operation and error code.",
        Read::OperationErrors),
    metric("litestream_disk_full", GAUGE,
        "1 while replication is paused because the local disk is full, else 0.",
        db_counter!(|c| flag(c.disk_full))),
    metric("litestream_l0_retention_files_total", GAUGE,
        "L0 files by status at the last L0 retention run (eligible, not_compacted, too_recent).",
        Read::L0Retention),
    metric("sqlite_replicate_wal_size_bytes", GAUGE, "The current size of the WAL, in bytes.",
        Read::Db(|d, _| d.wal_size_bytes.map(|b| b as f64))),
    metric("sqlite_replicate_last_capture_timestamp_seconds", GAUGE,
        "Unix time of the last local capture.",
        Read::Db(|d, _| d.last_capture_unix_ms.map(secs))),
    metric("sqlite_replicate_checkpoints_total", COUNTER, "Checkpoints run by the replicator.",
        db_counter!(|c| c.checkpoints as f64)),
    metric("sqlite_replicate_last_checkpoint_timestamp_seconds", GAUGE,
        "Unix time of the replicator's last checkpoint.",
        Read::Db(|d, _| d.last_checkpoint_unix_ms.map(secs))),
    metric("sqlite_replicate_db_failing", GAUGE,
        "1 while captures of the database fail (or its replication stopped), else 0.",
        Read::Db(|d, _| Some(flag(d.failing_since_unix_ms.is_some())))),
    metric("sqlite_replicate_db_failing_seconds", GAUGE,
        "How long captures of the database have been failing, in seconds (0 when healthy).",
        Read::Db(|d, now| Some(d.failing_since_unix_ms.map_or(0.0, |t| since(now, t))))),
    metric("sqlite_replicate_replica_txid", GAUGE,
        "The highest TXID durably stored on the replica.",
        Read::Replica(|r, _| r.replicated_txid.map(|t| t as f64))),
    metric("sqlite_replicate_replica_lag_txids", GAUGE,
        "Transactions captured locally but not yet on the replica.",
        Read::Replica(|r, _| Some(r.lag_txids as f64))),
    metric("sqlite_replicate_replica_pending_bytes", GAUGE,
        "Bytes of local files not yet on the replica.",
        Read::Replica(|r, _| Some(r.pending_bytes as f64))),
    metric("sqlite_replicate_replica_lag_seconds", GAUGE,
        "Age of the oldest transaction not yet on the replica, in seconds (0 when caught up).",
        Read::Replica(|r, _| Some(r.lag_seconds))),
    metric("sqlite_replicate_replica_last_upload_timestamp_seconds", GAUGE,
        "Unix time of the last durable upload to the replica.",
        Read::Replica(|r, _| r.last_upload_unix_ms.map(secs))),
    metric("sqlite_replicate_replica_seconds_since_last_upload", GAUGE,
        "Seconds since the last durable upload to the replica.",
        Read::Replica(|r, now| r.last_upload_unix_ms.map(|t| since(now, t)))),
    metric("sqlite_replicate_replica_failing", GAUGE,
        "1 while uploads to the replica fail, else 0.",
        Read::Replica(|r, _| Some(flag(r.failing_since_unix_ms.is_some())))),
    metric("sqlite_replicate_replica_failing_seconds", GAUGE,
        "How long uploads to the replica have been failing, in seconds (0 when healthy).",
        Read::Replica(|r, now| Some(r.failing_since_unix_ms.map_or(0.0, |t| since(now, t))))),
    metric("sqlite_replicate_replica_uploads_total", COUNTER,
        "L0 files uploaded to the replica.",
        replica_counter!(uploads)),
    metric("sqlite_replicate_replica_upload_bytes_total", COUNTER,
        "Bytes of L0 files uploaded to the replica.",
        replica_counter!(upload_bytes)),
    metric("sqlite_replicate_replica_upload_errors_total", COUNTER,
        "Uploads to the replica that failed.",
        replica_counter!(upload_errors)),
    metric("sqlite_replicate_replica_compactions_total", COUNTER,
        "Compacted and snapshot files written to the replica.",
        replica_counter!(compactions)),
    metric("sqlite_replicate_replica_deletes_total", COUNTER,
        "Files deleted from the replica by retention.",
        replica_counter!(deletes)),
    metric("sqlite_replicate_replica_maintenance_errors_total", COUNTER,
        "Compaction, snapshot or retention runs on the replica that failed.",
        replica_counter!(maintenance_errors)),
    metric("sqlite_replicate_replica_compaction_verify_failures_total", COUNTER,
        "Merged files that verify-compaction found not to match their inputs (deleted and merged again).",
        replica_counter!(compaction_verify_failures)),
    metric("sqlite_replicate_replica_requests_per_second", GAUGE,
        "Requests per second to the replica's store over the last minute, every operation.",
        Read::Replica(|r, _| r.requests.as_ref().map(|q| q.per_second))),
    metric("sqlite_replicate_replica_projected_requests_per_month", GAUGE,
        "Requests to the replica's store a 30-day month comes to at the last minute's rate.",
        Read::Replica(|r, _| r.requests.as_ref().map(|q| q.projected_per_month))),
    metric("sqlite_replicate_replica_upload_rate_limit", GAUGE,
        "The replica's upload-rate, in uploads per second (absent when unlimited).",
        Read::Replica(|r, _| r.requests.as_ref()?.upload_rate)),
    metric("sqlite_replicate_replica_upload_burst", GAUGE,
        "The replica's upload-burst, in uploads (absent when unlimited).",
        Read::Replica(|r, _| r.requests.as_ref()?.upload_burst.map(f64::from))),
    metric("sqlite_replicate_drill_ok", GAUGE,
        "1 if the last restore drill of the replica succeeded, else 0.",
        Read::Replica(|r, _| r.drill.as_ref().map(|d| flag(d.ok)))),
    metric("sqlite_replicate_drill_last_success_timestamp_seconds", GAUGE,
        "Unix time of the last successful restore drill.",
        Read::Replica(|r, _| r.drill.as_ref()?.last_success_unix_ms.map(secs))),
    metric("sqlite_replicate_drill_last_run_timestamp_seconds", GAUGE,
        "Unix time of the last restore drill.",
        Read::Replica(|r, _| r.drill.as_ref().map(|d| secs(d.last_run_unix_ms)))),
    metric("sqlite_replicate_drill_restore_seconds", GAUGE,
        "How long the last drill's restore took, in seconds.",
        Read::Replica(|r, _| r.drill.as_ref().map(|d| d.restore_duration_ms as f64 / 1000.0))),
    metric("sqlite_replicate_drill_rpo_seconds", GAUGE,
        "How far the last drill's restored state was behind the source, in seconds.",
        Read::Replica(|r, _| r.drill.as_ref().map(|d| d.rpo_ms as f64 / 1000.0))),
    metric("sqlite_replicate_drill_interval_seconds", GAUGE,
        "The replica's drill-interval, in seconds (absent when no drills are scheduled).",
        Read::Replica(|r, _| r.drill_schedule.map(|d| d.interval_ms as f64 / 1000.0))),
    metric("sqlite_replicate_drill_scheduled_timestamp_seconds", GAUGE,
        "Unix time when the replica's drills were scheduled (a drill is overdue when none ran for twice the interval since the later of this and the last run).",
        Read::Replica(|r, _| r.drill_schedule.map(|d| secs(d.since_unix_ms)))),
    metric("sqlite_replicate_validation_ok", GAUGE,
        "1 if the last validation of the replica's LTX history (no TXID gap or overlap) succeeded, else 0.",
        Read::Replica(|r, _| r.validation.as_ref().map(|v| flag(v.ok)))),
    metric("sqlite_replicate_validation_last_success_timestamp_seconds", GAUGE,
        "Unix time of the last successful validation.",
        Read::Replica(|r, _| r.validation.as_ref()?.last_success_unix_ms.map(secs))),
    metric("sqlite_replicate_validation_last_run_timestamp_seconds", GAUGE,
        "Unix time of the last validation.",
        Read::Replica(|r, _| r.validation.as_ref().map(|v| secs(v.last_run_unix_ms)))),
    metric("sqlite_replicate_validation_faults", GAUGE,
        "TXID gaps and overlaps the last validation found.",
        Read::Replica(|r, _| r.validation.as_ref().map(|v| v.faults as f64))),
    metric("sqlite_replicate_validation_runs_total", COUNTER,
        "Validations of the replica run since the daemon started.",
        Read::Replica(|r, _| r.validation.as_ref().map(|v| v.runs as f64))),
    metric("sqlite_replicate_validation_failures_total", COUNTER,
        "Validations of the replica that failed (a fault found or a listing failed).",
        Read::Replica(|r, _| r.validation.as_ref().map(|v| v.failures as f64))),
];

/// Litestream's operation figures have no db or replica label: summed per (replica type,
/// operation), over every replica of every database.
fn operations(r: &Report) -> BTreeMap<(&str, String), OperationFigures> {
    let mut ops: BTreeMap<(&str, String), OperationFigures> = BTreeMap::new();
    for rep in r.databases.iter().flat_map(|d| &d.replicas) {
        for f in &rep.operations {
            merge(
                ops.entry((rep.replica_type.as_str(), f.operation.clone()))
                    .or_default(),
                f,
            );
        }
    }
    ops
}

/// Litestream labels L0 retention with the database's file name, not its path; two
/// databases of the same name (and several replicas of one) are summed, so no series is
/// written twice.
fn l0_retention(r: &Report) -> BTreeMap<(String, &'static str), u64> {
    let mut l0 = BTreeMap::new();
    for d in &r.databases {
        let db_name = std::path::Path::new(&d.db)
            .file_name()
            .map_or(d.db.clone(), |n| n.to_string_lossy().into_owned());
        for r in d
            .replicas
            .iter()
            .filter_map(|rep| rep.l0_retention.as_ref())
        {
            for (status, n) in [
                ("eligible", r.eligible),
                ("not_compacted", r.not_compacted),
                ("too_recent", r.too_recent),
            ] {
                *l0.entry((db_name.clone(), status)).or_default() += n;
            }
        }
    }
    l0
}

/// Renders every family of [`METRICS`] for `r`, each only when it has samples.
pub fn render(r: &Report) -> String {
    let now = r.taken_unix_ms;
    let ops = operations(r);
    let l0 = l0_retention(r);
    let mut out = String::new();
    for m in METRICS {
        let mut f = Family::new(m.name, m.kind, m.help);
        match m.read {
            Read::Db(read) => {
                for d in &r.databases {
                    if let Some(v) = read(d, now) {
                        f.add(vec![("db", d.db.as_str())], v);
                    }
                }
            }
            Read::Checkpoint(read) => {
                for d in &r.databases {
                    if let Some(c) = &d.counters {
                        f.add(
                            vec![("db", d.db.as_str()), ("mode", CHECKPOINT_MODE)],
                            read(c),
                        );
                    }
                }
            }
            Read::Replica(read) => {
                for d in &r.databases {
                    for rep in &d.replicas {
                        if let Some(v) = read(rep, now) {
                            f.add(vec![("db", &d.db), ("replica", &rep.name)], v);
                        }
                    }
                }
            }
            Read::Operation(read) => {
                for ((ty, op), figures) in &ops {
                    if let Some(v) = read(op, figures) {
                        f.add(vec![("replica_type", *ty), ("operation", op)], v);
                    }
                }
            }
            Read::OperationErrors => {
                for ((ty, op), figures) in &ops {
                    for (code, n) in &figures.errors {
                        let l = vec![("replica_type", *ty), ("operation", op), ("code", code)];
                        f.add(l, *n as f64);
                    }
                }
            }
            Read::OperationDurations => write_duration_histogram(m, &ops, &mut out),
            Read::L0Retention => {
                for ((db, status), n) in &l0 {
                    f.add(vec![("db", db), ("status", status)], *n as f64);
                }
            }
        }
        f.write(&mut out);
    }
    out
}

/// One lease family: labels {db} (or, with `holder_and_role`, {db, holder, role}), one
/// sample per lease whose value is known.
struct LeaseMetric {
    name: &'static str,
    help: &'static str,
    holder_and_role: bool,
    read: fn(&LeaseView) -> Option<f64>,
}

/// The lease families: holder and epoch (`sqlite_replicate_lease_epoch` {db, holder, role},
/// role `primary`, `standby` or `waiting`), the holder's stated expiry, and a standby's
/// applied TXID and lag. All gauges.
const LEASE_METRICS: &[LeaseMetric] = &[
    LeaseMetric {
        name: "sqlite_replicate_lease_epoch",
        help: "The lease's epoch, labelled with its holder and this process's role.",
        holder_and_role: true,
        read: |v| Some(v.epoch as f64),
    },
    LeaseMetric {
        name: "sqlite_replicate_lease_expires_timestamp_seconds",
        help: "When the holder's lease expires unless renewed (the holder's clock), Unix seconds.",
        holder_and_role: false,
        read: |v| (v.expires_at_ms > 0).then(|| secs(v.expires_at_ms)),
    },
    LeaseMetric {
        name: "sqlite_replicate_standby_applied_txid",
        help: "The TXID a standby has applied to its copy.",
        holder_and_role: false,
        read: |v| (v.role == Some(Role::Standby)).then_some(v.applied_txid as f64),
    },
    LeaseMetric {
        name: "sqlite_replicate_standby_lag_seconds",
        help: "How long the standby copy has been behind its replica (0 when current).",
        holder_and_role: false,
        read: |v| (v.role == Some(Role::Standby)).then_some(v.lag_ms as f64 / 1000.0),
    },
];

/// Renders every family of [`LEASE_METRICS`] for `leases` (database, view).
pub fn render_leases(leases: &[(String, LeaseView)]) -> String {
    let mut out = String::new();
    for m in LEASE_METRICS {
        let mut f = Family::new(m.name, GAUGE, m.help);
        for (db, v) in leases {
            if let Some(x) = (m.read)(v) {
                let mut l = vec![("db", db.as_str())];
                if m.holder_and_role {
                    l.extend([
                        ("holder", v.holder.as_str()),
                        ("role", v.role.map_or("", Role::as_str)),
                    ]);
                }
                f.add(l, x);
            }
        }
        f.write(&mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::replicate::report::{L0RetentionFigures, ReplicaCounters, RequestFigures};
    use engine::replicate::status::{DrillSchedule, DrillStatus, ValidationStatus};

    fn fixed() -> Report {
        Report {
            taken_unix_ms: 1_700_000_060_000,
            source: "daemon".into(),
            databases: vec![DbReport {
                db: "/data/a \"q\".db".into(),
                local_txid: 42,
                db_size_bytes: Some(8192),
                wal_size_bytes: Some(4152),
                last_capture_unix_ms: Some(1_700_000_059_500),
                last_checkpoint_unix_ms: Some(1_700_000_000_000),
                failing_since_unix_ms: None,
                last_error: None,
                counters: Some(DbCounters {
                    syncs: 100,
                    sync_errors: 1,
                    sync_seconds: 0.25,
                    captures: 42,
                    full_images: 1,
                    wal_bytes_captured: 123_456,
                    checkpoints: 3,
                    checkpoint_errors: 0,
                    checkpoint_seconds: 0.5,
                    disk_full: true,
                }),
                replicas: vec![
                    ReplicaReport {
                        name: "s3".into(),
                        replica_type: "s3".into(),
                        replicated_txid: Some(40),
                        lag_txids: 2,
                        pending_bytes: 600,
                        lag_seconds: 1.5,
                        last_upload_unix_ms: Some(1_700_000_050_000),
                        failing_since_unix_ms: Some(1_700_000_030_000),
                        last_error: Some("connection refused".into()),
                        counters: Some(ReplicaCounters {
                            uploads: 40,
                            upload_bytes: 4000,
                            upload_errors: 5,
                            compactions: 2,
                            compaction_bytes: 1000,
                            deletes: 7,
                            maintenance_errors: 0,
                            compaction_verify_failures: 0,
                        }),
                        drill: Some(DrillStatus {
                            last_run_unix_ms: 1_700_000_040_000,
                            ok: false,
                            restore_duration_ms: 1250,
                            files: 3,
                            bytes: 999,
                            rpo_ms: 2000,
                            error: Some("gap".into()),
                            last_success_unix_ms: Some(1_700_000_000_000),
                        }),
                        drill_schedule: Some(DrillSchedule {
                            interval_ms: 86_400_000,
                            since_unix_ms: 1_699_999_000_000,
                        }),
                        validation: Some(ValidationStatus {
                            last_run_unix_ms: 1_700_000_045_000,
                            ok: false,
                            levels: 4,
                            files: 9,
                            faults: 2,
                            error: Some("level 0: TXID gap".into()),
                            last_success_unix_ms: Some(1_700_000_044_000),
                            runs: 5,
                            failures: 1,
                        }),
                        operations: vec![
                            OperationFigures {
                                operation: "PUT".into(),
                                total: 42,
                                bytes: 5000,
                                duration_count: 47,
                                duration_seconds_sum: 2.5,
                                duration_buckets: vec![40, 45, 46, 47, 47, 47, 47, 47, 47],
                                errors: [("Transient".to_string(), 5)].into(),
                            },
                            OperationFigures {
                                operation: "DELETE".into(),
                                total: 7,
                                duration_count: 1,
                                duration_seconds_sum: 0.004,
                                duration_buckets: vec![1; 9],
                                ..Default::default()
                            },
                        ],
                        l0_retention: Some(L0RetentionFigures {
                            eligible: 3,
                            not_compacted: 1,
                            too_recent: 2,
                        }),
                        requests: Some(RequestFigures {
                            per_second: 1.25,
                            projected_per_month: 3_240_000.0,
                            upload_rate: Some(1.0),
                            upload_burst: Some(20),
                        }),
                    },
                    ReplicaReport {
                        name: "backup".into(),
                        replica_type: "s3".into(),
                        replicated_txid: Some(42),
                        counters: Some(ReplicaCounters {
                            uploads: 1,
                            upload_bytes: 10,
                            ..Default::default()
                        }),
                        operations: vec![OperationFigures {
                            operation: "PUT".into(),
                            total: 1,
                            bytes: 10,
                            duration_count: 1,
                            duration_seconds_sum: 0.5,
                            duration_buckets: vec![0, 0, 0, 1, 1, 1, 1, 1, 1],
                            errors: [("Transient".to_string(), 1)].into(),
                        }],
                        l0_retention: Some(L0RetentionFigures {
                            eligible: 1,
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                ],
            }],
        }
    }

    fn sample(text: &str, line_start: &str) -> String {
        text.lines()
            .find(|l| l.starts_with(line_start))
            .unwrap_or_else(|| panic!("no {line_start:?} in:\n{text}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .to_string()
    }

    #[test]
    fn renders_lease_families() {
        let v = engine::lease::LeaseView {
            role: Some(Role::Standby),
            holder: "db1".into(),
            epoch: 3,
            expires_at_ms: 1_700_000_000_500,
            applied_txid: 42,
            lag_ms: 1500,
        };
        let out = render_leases(&[("/d/a.db".into(), v)]);
        for line in [
            "sqlite_replicate_lease_epoch{db=\"/d/a.db\",holder=\"db1\",role=\"standby\"} 3",
            "sqlite_replicate_lease_expires_timestamp_seconds{db=\"/d/a.db\"} 1700000000.5",
            "sqlite_replicate_standby_applied_txid{db=\"/d/a.db\"} 42",
            "sqlite_replicate_standby_lag_seconds{db=\"/d/a.db\"} 1.5",
        ] {
            assert!(out.lines().any(|l| l == line), "{line} not in:\n{out}");
        }
        assert_eq!(render_leases(&[]), "");
    }

    #[test]
    fn renders_litestream_and_our_families_from_a_fixed_report() {
        let t = render(&fixed());
        let db = r#"db="/data/a \"q\".db""#;
        let cases: &[(String, &str)] = &[
            (format!("litestream_db_size{{{db}}}"), "8192"),
            (format!("litestream_wal_size{{{db}}}"), "4152"),
            (format!("litestream_total_wal_bytes{{{db}}}"), "123456"),
            (format!("litestream_txid{{{db}}}"), "42"),
            (format!("litestream_sync_count{{{db}}}"), "100"),
            (format!("litestream_sync_error_count{{{db}}}"), "1"),
            (format!("litestream_sync_seconds{{{db}}}"), "0.25"),
            (
                format!("litestream_checkpoint_count{{{db},mode=\"PASSIVE\"}}"),
                "3",
            ),
            (
                format!("litestream_checkpoint_seconds{{{db},mode=\"PASSIVE\"}}"),
                "0.5",
            ),
            (
                "litestream_replica_operation_total{replica_type=\"s3\",operation=\"PUT\"}".into(),
                "43",
            ),
            (
                "litestream_replica_operation_total{replica_type=\"s3\",operation=\"DELETE\"}"
                    .into(),
                "7",
            ),
            (
                "litestream_replica_operation_bytes{replica_type=\"s3\",operation=\"PUT\"}".into(),
                "5010",
            ),
            (
                "litestream_replica_operation_errors_total{replica_type=\"s3\",operation=\"PUT\",code=\"Transient\"}".into(),
                "6",
            ),
            (
                "litestream_replica_operation_duration_seconds_bucket{replica_type=\"s3\",operation=\"PUT\",le=\"0.01\"}".into(),
                "40",
            ),
            (
                "litestream_replica_operation_duration_seconds_bucket{replica_type=\"s3\",operation=\"PUT\",le=\"0.5\"}".into(),
                "48",
            ),
            (
                "litestream_replica_operation_duration_seconds_bucket{replica_type=\"s3\",operation=\"PUT\",le=\"+Inf\"}".into(),
                "48",
            ),
            (
                "litestream_replica_operation_duration_seconds_sum{replica_type=\"s3\",operation=\"PUT\"}".into(),
                "3",
            ),
            (
                "litestream_replica_operation_duration_seconds_count{replica_type=\"s3\",operation=\"DELETE\"}".into(),
                "1",
            ),
            (format!("litestream_disk_full{{{db}}}"), "1"),
            (
                "litestream_l0_retention_files_total{db=\"a \\\"q\\\".db\",status=\"eligible\"}".into(),
                "4",
            ),
            (
                "litestream_l0_retention_files_total{db=\"a \\\"q\\\".db\",status=\"too_recent\"}".into(),
                "2",
            ),
            (
                format!("sqlite_replicate_last_checkpoint_timestamp_seconds{{{db}}}"),
                "1700000000",
            ),
            (format!("sqlite_replicate_db_failing{{{db}}}"), "0"),
            (
                format!("sqlite_replicate_replica_txid{{{db},replica=\"s3\"}}"),
                "40",
            ),
            (
                format!("sqlite_replicate_replica_lag_txids{{{db},replica=\"s3\"}}"),
                "2",
            ),
            (
                format!("sqlite_replicate_replica_pending_bytes{{{db},replica=\"s3\"}}"),
                "600",
            ),
            (
                format!("sqlite_replicate_replica_lag_seconds{{{db},replica=\"s3\"}}"),
                "1.5",
            ),
            (
                format!(
                    "sqlite_replicate_replica_seconds_since_last_upload{{{db},replica=\"s3\"}}"
                ),
                "10",
            ),
            (
                format!("sqlite_replicate_replica_failing{{{db},replica=\"s3\"}}"),
                "1",
            ),
            (
                format!("sqlite_replicate_replica_failing_seconds{{{db},replica=\"s3\"}}"),
                "30",
            ),
            (
                format!("sqlite_replicate_replica_upload_errors_total{{{db},replica=\"s3\"}}"),
                "5",
            ),
            (
                format!("sqlite_replicate_replica_failing{{{db},replica=\"backup\"}}"),
                "0",
            ),
            (
                format!("sqlite_replicate_replica_lag_txids{{{db},replica=\"backup\"}}"),
                "0",
            ),
            (
                format!("sqlite_replicate_drill_ok{{{db},replica=\"s3\"}}"),
                "0",
            ),
            (
                format!(
                    "sqlite_replicate_drill_last_success_timestamp_seconds{{{db},replica=\"s3\"}}"
                ),
                "1700000000",
            ),
            (
                format!("sqlite_replicate_drill_restore_seconds{{{db},replica=\"s3\"}}"),
                "1.25",
            ),
            (
                format!("sqlite_replicate_drill_rpo_seconds{{{db},replica=\"s3\"}}"),
                "2",
            ),
            (
                format!("sqlite_replicate_validation_ok{{{db},replica=\"s3\"}}"),
                "0",
            ),
            (
                format!("sqlite_replicate_validation_faults{{{db},replica=\"s3\"}}"),
                "2",
            ),
            (
                format!("sqlite_replicate_validation_runs_total{{{db},replica=\"s3\"}}"),
                "5",
            ),
            (
                format!("sqlite_replicate_validation_failures_total{{{db},replica=\"s3\"}}"),
                "1",
            ),
            (
                format!(
                    "sqlite_replicate_validation_last_success_timestamp_seconds{{{db},replica=\"s3\"}}"
                ),
                "1700000044",
            ),
        ];
        for (start, want) in cases {
            assert_eq!(sample(&t, &format!("{start} ")), *want, "{start}");
        }
        // Never a last-upload time that is not known, nor a drill that did not run.
        assert!(!t
            .contains("seconds_since_last_upload{db=\"/data/a \\\"q\\\".db\",replica=\"backup\"}"));
        assert!(!t.contains("drill_ok{db=\"/data/a \\\"q\\\".db\",replica=\"backup\"}"));
        assert!(!t.contains("validation_ok{db=\"/data/a \\\"q\\\".db\",replica=\"backup\"}"));
        // Every sample belongs to a family declared just before with HELP and TYPE (a
        // histogram's samples carry its name with _bucket, _sum or _count).
        let mut declared = String::new();
        for line in t.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                declared = rest.split(' ').next().unwrap().to_string();
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s))
                    .filter(|b| *b == declared)
                    .unwrap_or(name);
                assert_eq!(base, declared, "sample outside its family: {line}");
            }
        }
        assert!(t.contains("# TYPE litestream_replica_operation_duration_seconds histogram"));
        assert!(
            !t.contains("connection refused"),
            "error texts are not labels"
        );
    }

    /// [`fixed`] plus a second database seen offline (no counters, captures failing, a
    /// replica that never uploaded) and one of the same file name elsewhere.
    fn pinned() -> Report {
        let mut r = fixed();
        r.databases.push(DbReport {
            db: "/other/b.db".into(),
            local_txid: 7,
            db_size_bytes: Some(4096),
            wal_size_bytes: None,
            last_capture_unix_ms: None,
            last_checkpoint_unix_ms: None,
            failing_since_unix_ms: Some(1_700_000_055_250),
            last_error: Some("disk I/O error".into()),
            counters: None,
            replicas: vec![ReplicaReport {
                name: "file".into(),
                replica_type: "file".into(),
                lag_txids: 7,
                pending_bytes: 1 << 40,
                lag_seconds: 0.125,
                operations: vec![OperationFigures {
                    operation: "LIST".into(),
                    total: 3,
                    duration_count: 3,
                    duration_seconds_sum: 0.0003,
                    duration_buckets: vec![3; 9],
                    errors: [("NotFound".to_string(), 2), ("Permanent".to_string(), 1)].into(),
                    ..Default::default()
                }],
                validation: Some(ValidationStatus {
                    last_run_unix_ms: 1_700_000_001_001,
                    ok: true,
                    last_success_unix_ms: Some(1_700_000_001_001),
                    runs: 1,
                    ..Default::default()
                }),
                requests: Some(RequestFigures {
                    per_second: 0.0,
                    projected_per_month: 0.0,
                    upload_rate: None,
                    upload_burst: None,
                }),
                ..Default::default()
            }],
        });
        r.databases.push(DbReport {
            db: "/data/copy/a \"q\".db".into(),
            replicas: vec![ReplicaReport {
                name: "s3".into(),
                replica_type: "s3".into(),
                l0_retention: Some(L0RetentionFigures {
                    eligible: 10,
                    not_compacted: 20,
                    too_recent: 30,
                }),
                ..Default::default()
            }],
            ..Default::default()
        });
        r
    }

    /// The whole exposition of [`pinned`], byte for byte: the family order, HELP texts,
    /// label order and number formatting are what dashboards and scrapers see.
    #[test]
    fn exposition_of_a_fixed_report_is_pinned() {
        let got = render(&pinned());
        if let Ok(p) = std::env::var("METRICS_PIN_WRITE") {
            std::fs::write(p, &got).unwrap();
        }
        assert_eq!(got, include_str!("testdata/metrics_pinned.prom"));
        let leases = [
            (
                "/d/a.db".to_string(),
                engine::lease::LeaseView {
                    role: Some(Role::Standby),
                    holder: "db1".into(),
                    epoch: 3,
                    expires_at_ms: 1_700_000_000_500,
                    applied_txid: 42,
                    lag_ms: 1500,
                },
            ),
            (
                "/d/b.db".to_string(),
                engine::lease::LeaseView {
                    role: Some(Role::Primary),
                    holder: "me".into(),
                    epoch: 9,
                    ..Default::default()
                },
            ),
        ];
        let got = render_leases(&leases);
        if let Ok(p) = std::env::var("METRICS_PIN_WRITE_LEASES") {
            std::fs::write(p, &got).unwrap();
        }
        assert_eq!(got, include_str!("testdata/metrics_leases_pinned.prom"));
    }

    #[test]
    fn empty_report_renders_nothing_and_numbers_print_plainly() {
        assert_eq!(render(&Report::default()), "");
        assert_eq!(number(3.0), "3");
        assert_eq!(number(0.001), "0.001");
        assert_eq!(number(1.7e9), "1700000000");
        assert_eq!(escape("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
    }
}
