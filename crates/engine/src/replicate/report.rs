//! A point-in-time copy of a database's figures, as plain data: what `/status` serves,
//! what `/metrics` renders and what the `status` command prints.
//!
//! Owns: the report types (serde, so a running daemon's `/status` can be read back), the
//! lag arithmetic ([`lag`], pure), and taking a report from the live `status` atomics
//! plus the local meta directory ([`DbReport::live`]). Knows nothing of HTTP or of the
//! Prometheus text format; the `status` command builds offline reports from listings.
//!
//! TXIDs are spelled as 16-digit hex strings in JSON, as everywhere else in the CLI.

use std::path::Path;
use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};

use super::budget::UploadBudget;
use super::local::{LocalDir, LocalFile};
use super::progress::raw;
use super::status::{DbStatus, DrillSchedule, DrillStatus, ReplicaStatus, ValidationStatus};
use crate::storage::metered::OperationFigures;

/// Every database of a process (or of a config, offline).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Unix ms when the report was taken.
    pub taken_unix_ms: i64,
    /// `daemon` (live figures of a running `replicate`) or `offline` (local state and
    /// replica listings).
    pub source: String,
    pub databases: Vec<DbReport>,
}

/// One database.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DbReport {
    pub db: String,
    /// Newest TXID captured locally (0: none).
    #[serde(with = "hex_txid")]
    pub local_txid: u64,
    pub db_size_bytes: Option<u64>,
    pub wal_size_bytes: Option<u64>,
    pub last_capture_unix_ms: Option<i64>,
    /// Our last checkpoint; unknown offline.
    pub last_checkpoint_unix_ms: Option<i64>,
    /// Since when captures have been failing (or replication stopped).
    pub failing_since_unix_ms: Option<i64>,
    pub last_error: Option<String>,
    /// Counters since the daemon started; absent offline.
    pub counters: Option<DbCounters>,
    pub replicas: Vec<ReplicaReport>,
}

/// Counters of one database since the daemon started.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DbCounters {
    pub syncs: u64,
    pub sync_errors: u64,
    pub sync_seconds: f64,
    pub captures: u64,
    pub full_images: u64,
    pub wal_bytes_captured: u64,
    pub checkpoints: u64,
    pub checkpoint_errors: u64,
    pub checkpoint_seconds: f64,
    /// The last capture cycle failed for lack of local disk space.
    #[serde(default)]
    pub disk_full: bool,
}

/// One replica of one database.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ReplicaReport {
    pub name: String,
    /// `file`, `s3`, `abs`, ...: Litestream's `replica_type` label.
    pub replica_type: String,
    /// Highest TXID on the replica (0: none). Offline, `None` when listing failed.
    #[serde(with = "hex_txid_opt")]
    pub replicated_txid: Option<u64>,
    pub lag_txids: u64,
    /// Bytes of local files the replica does not hold yet.
    pub pending_bytes: u64,
    /// Age of the oldest transaction the replica does not hold yet (0 when caught up).
    pub lag_seconds: f64,
    pub last_upload_unix_ms: Option<i64>,
    pub failing_since_unix_ms: Option<i64>,
    pub last_error: Option<String>,
    /// Counters since the daemon started; absent offline.
    pub counters: Option<ReplicaCounters>,
    pub drill: Option<DrillStatus>,
    /// When drills run (`drill-interval`); absent when none are scheduled.
    #[serde(default)]
    pub drill_schedule: Option<DrillSchedule>,
    /// The last validation of the replica's LTX history (`validation-interval`).
    #[serde(default)]
    pub validation: Option<ValidationStatus>,
    /// Requests to the replica's store per operation since the daemon started (only
    /// operations seen); empty offline.
    #[serde(default)]
    pub operations: Vec<OperationFigures>,
    /// The last L0 retention run's classification; absent offline or before one ran.
    #[serde(default)]
    pub l0_retention: Option<L0RetentionFigures>,
    /// Requests to the replica's store now, and the request budget; absent offline.
    #[serde(default)]
    pub requests: Option<RequestFigures>,
}

/// Seconds in the month of [`RequestFigures::projected_per_month`] (30 days).
pub const MONTH_SECS: f64 = 30.0 * 86_400.0;

/// A replica's request rate and budget.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RequestFigures {
    /// Requests per second to the store over the last minute (every operation).
    pub per_second: f64,
    /// Requests a 30-day month at that rate comes to.
    pub projected_per_month: f64,
    /// `upload-rate` in uploads per second (`None`: unlimited).
    pub upload_rate: Option<f64>,
    /// `upload-burst` (`None`: unlimited).
    pub upload_burst: Option<u32>,
}

impl RequestFigures {
    /// The figures at `per_second` under `budget`.
    pub fn new(per_second: f64, budget: Option<UploadBudget>) -> RequestFigures {
        RequestFigures {
            per_second,
            projected_per_month: (per_second * MONTH_SECS).round(),
            upload_rate: budget.map(|b| b.per_sec),
            upload_burst: budget.map(|b| b.burst),
        }
    }
}

/// How the last L0 retention run classified a replica's L0 files (see
/// [`super::status::L0RetentionStatus`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct L0RetentionFigures {
    pub eligible: u64,
    pub not_compacted: u64,
    pub too_recent: u64,
}

/// Counters of one replica since the daemon started.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaCounters {
    pub uploads: u64,
    pub upload_bytes: u64,
    pub upload_errors: u64,
    pub compactions: u64,
    pub compaction_bytes: u64,
    pub deletes: u64,
    pub maintenance_errors: u64,
    /// Merged files `verify-compaction` found wrong (absent from older daemons' reports).
    #[serde(default)]
    pub compaction_verify_failures: u64,
}

/// How far a replica is behind the local captures.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Lag {
    pub txids: u64,
    pub bytes: u64,
    pub seconds: f64,
}

/// A replica's lag from the local TXID, its replicated TXID and the local files. The age
/// is that of the oldest local file the replica lacks; when none is left locally (the
/// replica waits for a full image) it is the time since its last upload, else unknown (0).
pub fn lag(
    local_txid: u64,
    replicated_txid: u64,
    local_files: &[LocalFile],
    last_upload_unix_ms: Option<i64>,
    now_unix_ms: i64,
) -> Lag {
    let txids = local_txid.saturating_sub(replicated_txid);
    if txids == 0 {
        return Lag {
            txids,
            bytes: 0,
            seconds: 0.0,
        };
    }
    let pending = local_files
        .iter()
        .filter(|f| f.txid > replicated_txid && f.txid <= local_txid);
    let bytes = pending.clone().map(|f| f.size_bytes).sum();
    let since = pending
        .map(|f| f.modified_unix_ms)
        .min()
        .or(last_upload_unix_ms);
    let seconds = since
        .map(|t| (now_unix_ms - t).max(0) as f64 / 1000.0)
        .unwrap_or(0.0);
    Lag {
        txids,
        bytes,
        seconds,
    }
}

/// One replica's live figures, for [`DbReport::live`].
pub struct LiveReplica<'a> {
    pub name: &'a str,
    pub replica_type: &'a str,
    pub status: &'a ReplicaStatus,
}

fn nonzero(ms: i64) -> Option<i64> {
    (ms > 0).then_some(ms)
}

impl DbReport {
    /// A report from the live figures of a running database. Reads the local meta
    /// directory (a listing and a stat per pending file) when some replica is behind the
    /// local TXID, so call it off the async workers; a caught-up database costs no system
    /// call (the server builds a report every few seconds: 10,000 listings every 5 s
    /// were 23% of a core). A meta directory that cannot be read leaves the byte and age
    /// figures 0.
    pub fn live(
        db: &str,
        meta_dir: &Path,
        status: &DbStatus,
        replicas: &[LiveReplica<'_>],
        now_unix_ms: i64,
    ) -> DbReport {
        let local_txid = raw(status.local_txid());
        let behind = replicas
            .iter()
            .any(|r| raw(r.status.replicated()) < local_txid);
        let files = if behind {
            LocalDir::existing(meta_dir)
                .and_then(|l| l.files().ok())
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        let micros = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed) as f64 / 1e6;
        let n = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let replicas = replicas
            .iter()
            .map(|r| {
                let s = r.status;
                let replicated = raw(s.replicated());
                let last_upload = nonzero(s.last_upload_ms.load(Ordering::Acquire));
                let l = lag(local_txid, replicated, &files, last_upload, now_unix_ms);
                ReplicaReport {
                    name: r.name.to_string(),
                    replica_type: r.replica_type.to_string(),
                    replicated_txid: Some(replicated),
                    lag_txids: l.txids,
                    pending_bytes: l.bytes,
                    lag_seconds: l.seconds,
                    last_upload_unix_ms: last_upload,
                    failing_since_unix_ms: nonzero(s.failing_since_ms.load(Ordering::Acquire)),
                    last_error: s.last_error(),
                    counters: Some(ReplicaCounters {
                        uploads: n(&s.uploads),
                        upload_bytes: n(&s.upload_bytes),
                        upload_errors: n(&s.upload_errors),
                        compactions: n(&s.compactions),
                        compaction_bytes: n(&s.compaction_bytes),
                        deletes: n(&s.deletes),
                        maintenance_errors: n(&s.maintenance_errors),
                        compaction_verify_failures: n(&s.compaction_verify_failures),
                    }),
                    drill: s.drill(),
                    drill_schedule: s.drill_schedule(),
                    validation: s.validation(),
                    operations: s.ops.figures(),
                    l0_retention: s.l0_retention.get().map(
                        |(eligible, not_compacted, too_recent)| L0RetentionFigures {
                            eligible,
                            not_compacted,
                            too_recent,
                        },
                    ),
                    requests: Some(RequestFigures::new(s.ops.requests_per_second(), s.budget())),
                }
            })
            .collect();
        DbReport {
            db: db.to_string(),
            local_txid,
            db_size_bytes: Some(n(&status.db_size_bytes)).filter(|&b| b > 0),
            wal_size_bytes: Some(n(&status.wal_size_bytes)),
            last_capture_unix_ms: nonzero(status.last_capture_ms.load(Ordering::Acquire)),
            last_checkpoint_unix_ms: nonzero(status.last_checkpoint_ms.load(Ordering::Acquire)),
            failing_since_unix_ms: nonzero(status.failing_since_ms.load(Ordering::Acquire)),
            last_error: status.last_error(),
            counters: Some(DbCounters {
                syncs: n(&status.syncs),
                sync_errors: n(&status.sync_errors),
                sync_seconds: micros(&status.sync_micros),
                captures: n(&status.captures),
                full_images: n(&status.snapshots_full),
                wal_bytes_captured: n(&status.wal_bytes_captured),
                checkpoints: n(&status.checkpoints),
                checkpoint_errors: n(&status.checkpoint_errors),
                checkpoint_seconds: micros(&status.checkpoint_micros),
                disk_full: status.disk_full.load(Ordering::Relaxed),
            }),
            replicas,
        }
    }
}

/// A TXID as its 16-digit hex spelling.
mod hex_txid {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{t:016x}"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let s = String::deserialize(d)?;
        u64::from_str_radix(&s, 16).map_err(serde::de::Error::custom)
    }
}

/// An optional TXID as its 16-digit hex spelling, or null.
mod hex_txid_opt {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => super::hex_txid::serialize(t, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| u64::from_str_radix(&s, 16).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(txid: u64, size_bytes: u64, modified_unix_ms: i64) -> LocalFile {
        LocalFile {
            txid,
            size_bytes,
            modified_unix_ms,
        }
    }

    #[test]
    fn lag_cases() {
        let files = [f(3, 100, 1_000), f(4, 200, 2_000), f(5, 400, 4_000)];
        let cases: &[(&str, u64, u64, Option<i64>, Lag)] = &[
            (
                "caught up",
                5,
                5,
                Some(4_500),
                Lag {
                    txids: 0,
                    bytes: 0,
                    seconds: 0.0,
                },
            ),
            (
                "two behind: bytes of 4 and 5, age of 4",
                5,
                3,
                Some(1_500),
                Lag {
                    txids: 2,
                    bytes: 600,
                    seconds: 8.0,
                },
            ),
            (
                "nothing local to measure: time since the last upload",
                9,
                5,
                Some(7_000),
                Lag {
                    txids: 4,
                    bytes: 0,
                    seconds: 3.0,
                },
            ),
            (
                "never uploaded and nothing local: age unknown",
                9,
                6,
                None,
                Lag {
                    txids: 3,
                    bytes: 0,
                    seconds: 0.0,
                },
            ),
            (
                "replica ahead (restored database): no lag",
                2,
                5,
                None,
                Lag {
                    txids: 0,
                    bytes: 0,
                    seconds: 0.0,
                },
            ),
        ];
        for (what, local, replicated, last_upload, want) in cases {
            assert_eq!(
                lag(*local, *replicated, &files, *last_upload, 10_000),
                *want,
                "{what}"
            );
        }
    }

    #[test]
    fn txids_are_hex_in_json_and_read_back() {
        let r = DbReport {
            db: "/a.db".into(),
            local_txid: 0x1f,
            replicas: vec![
                ReplicaReport {
                    name: "s3".into(),
                    replicated_txid: Some(0x1e),
                    ..Default::default()
                },
                ReplicaReport {
                    name: "file".into(),
                    replicated_txid: None,
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let j = serde_json::to_value(&r).unwrap();
        assert_eq!(j["local_txid"], "000000000000001f");
        assert_eq!(j["replicas"][0]["replicated_txid"], "000000000000001e");
        assert!(j["replicas"][1]["replicated_txid"].is_null());
        let back: DbReport = serde_json::from_value(j).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn live_report_reads_atomics_and_local_files() {
        let dir = tempfile::tempdir().unwrap();
        let local = LocalDir::open(dir.path(), crate::fsutil::FileMode::PRIVATE).unwrap();
        for t in 1..=3u64 {
            local
                .write(ltx::TxId::new(t).unwrap(), &vec![0u8; 10 * t as usize], 0)
                .unwrap();
        }
        let db = DbStatus::default();
        db.progress.set_local(ltx::TxId::new(3).ok());
        db.record_failure("disk on fire".into(), 1_000);
        db.record_failure("still on fire".into(), 2_000);
        let rs = ReplicaStatus::default();
        rs.progress.set_replicated(ltx::TxId::new(1).ok());
        rs.uploads.store(7, Ordering::Relaxed);
        let r = DbReport::live(
            "/x.db",
            dir.path(),
            &db,
            &[LiveReplica {
                name: "r1",
                replica_type: "file",
                status: &rs,
            }],
            5_000,
        );
        assert_eq!(r.local_txid, 3);
        assert_eq!(r.failing_since_unix_ms, Some(1_000), "first failure kept");
        assert_eq!(r.last_error.as_deref(), Some("still on fire"));
        let rr = &r.replicas[0];
        assert_eq!((rr.lag_txids, rr.pending_bytes), (2, 50));
        assert_eq!(rr.counters.as_ref().unwrap().uploads, 7);
        assert_eq!(rr.last_upload_unix_ms, None);
        db.record_ok();
        assert_eq!(db.failing_since_ms.load(Ordering::Acquire), 0);
        assert_eq!(db.last_error(), None);
    }
}
