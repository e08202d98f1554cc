//! The last hour of each replica's lag, in memory, for the status page's plots.
//!
//! Owns: [`History`], a bounded series of [`Sample`]s (lag in transactions and in seconds,
//! the latter being the replica's RPO now) per database and replica, fed from the reports
//! the `addr` server builds anyway. A sample is kept at most every [`SAMPLE_EVERY`] and
//! for [`WINDOW`]; the server asks for a report every [`SAMPLE_EVERY`] even when nobody
//! looks, so the plots have no holes. Memory: at most `WINDOW / SAMPLE_EVERY` (720)
//! samples of 24 bytes per replica, two while its lag stays the same.
//!
//! Does not: read anything itself (it costs no object-store request: a report reads the
//! engine's live figures and the local meta directory), survive a restart, or render
//! (`page`). Fed by `snapshot`; feeds `page`.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use engine::replicate::report::Report;

/// How long samples are kept: the plots span this.
pub const WINDOW: Duration = Duration::from_secs(3600);
/// The least time between two kept samples, and how often the server takes a report.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// One replica's lag at one time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    pub unix_ms: i64,
    pub lag_txids: u64,
    /// Age of the oldest transaction the replica lacks (0 when caught up): the RPO now.
    pub lag_seconds: f64,
}

/// (database, replica) → its samples, oldest first.
type Series = BTreeMap<(String, String), VecDeque<Sample>>;

/// The samples of every replica, shared by the server's requests.
#[derive(Debug, Default)]
pub struct History {
    series: Mutex<Series>,
}

impl History {
    pub fn new() -> History {
        History::default()
    }

    /// Keeps `report`'s figures when the last kept sample is at least [`SAMPLE_EVERY`]
    /// older (by the report's clock), drops samples older than [`WINDOW`], and forgets
    /// replicas the report no longer has.
    pub fn record(&self, report: &Report) {
        let now = report.taken_unix_ms;
        let every = SAMPLE_EVERY.as_millis() as i64;
        let window = WINDOW.as_millis() as i64;
        let reported: HashSet<(&str, &str)> = report
            .databases
            .iter()
            .flat_map(|d| d.replicas.iter().map(|r| (d.db.as_str(), r.name.as_str())))
            .collect();
        let mut series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        series.retain(|(db, rep), _| reported.contains(&(db.as_str(), rep.as_str())));
        for d in &report.databases {
            for r in &d.replicas {
                let s = series.entry((d.db.clone(), r.name.clone())).or_default();
                while s.front().is_some_and(|x| now - x.unix_ms > window) {
                    s.pop_front();
                }
                if s.back().is_some_and(|x| now - x.unix_ms < every) {
                    continue;
                }
                push(
                    s,
                    Sample {
                        unix_ms: now,
                        lag_txids: r.lag_txids,
                        lag_seconds: r.lag_seconds,
                    },
                );
            }
        }
    }

    /// The samples of one replica, oldest first. A run of equal lags is its first and
    /// last sample (the plotted line is the same).
    pub fn samples(&self, db: &str, replica: &str) -> Vec<Sample> {
        let series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        series
            .get(&(db.to_string(), replica.to_string()))
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }
}

/// Appends `new`, or moves the end of a run of equal lags to it: a caught-up replica
/// keeps two samples, not 720 (10,000 databases: 17 KiB each, 170 MiB an hour).
fn push(s: &mut VecDeque<Sample>, new: Sample) {
    let same = |x: &Sample| x.lag_txids == new.lag_txids && x.lag_seconds == new.lag_seconds;
    let n = s.len();
    if n >= 2 && same(&s[n - 1]) && same(&s[n - 2]) {
        s[n - 1].unix_ms = new.unix_ms;
    } else {
        s.push_back(new);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::replicate::report::{DbReport, ReplicaReport};

    fn report(at_ms: i64, replicas: &[(&str, u64)]) -> Report {
        Report {
            taken_unix_ms: at_ms,
            source: "daemon".into(),
            databases: vec![DbReport {
                db: "/a.db".into(),
                replicas: replicas
                    .iter()
                    .map(|(n, lag)| ReplicaReport {
                        name: n.to_string(),
                        lag_txids: *lag,
                        lag_seconds: *lag as f64 / 2.0,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
        }
    }

    #[test]
    fn keeps_one_sample_per_interval_for_the_window() {
        let h = History::new();
        // A report every second for two hours: one sample per 5 s is kept, of the last
        // hour only.
        for s in 0..7200 {
            h.record(&report(s * 1000, &[("s3", s as u64)]));
        }
        let got = h.samples("/a.db", "s3");
        assert_eq!(got.len(), 720, "an hour of 5 s samples");
        assert_eq!(
            (got[0].unix_ms, got.last().unwrap().unix_ms),
            (3_600_000, 7_195_000)
        );
        assert_eq!(got.last().unwrap().lag_txids, 7195);
        assert_eq!(got.last().unwrap().lag_seconds, 3597.5);
        assert!(got.windows(2).all(|w| w[1].unix_ms - w[0].unix_ms == 5000));
    }

    #[test]
    fn a_run_of_equal_lags_is_its_first_and_last_sample() {
        let h = History::new();
        for (i, lag) in [3, 0, 0, 0, 0, 0, 2, 2].iter().enumerate() {
            h.record(&report(i as i64 * 5000, &[("s3", *lag)]));
        }
        let got: Vec<(i64, u64)> = h
            .samples("/a.db", "s3")
            .iter()
            .map(|s| (s.unix_ms, s.lag_txids))
            .collect();
        assert_eq!(
            got,
            [(0, 3), (5000, 0), (25_000, 0), (30_000, 2), (35_000, 2)]
        );
    }

    #[test]
    fn forgets_replicas_no_longer_reported() {
        let h = History::new();
        h.record(&report(0, &[("s3", 1), ("file", 2)]));
        h.record(&report(10_000, &[("file", 3)]));
        assert!(h.samples("/a.db", "s3").is_empty());
        assert_eq!(h.samples("/a.db", "file").len(), 2);
        assert!(h.samples("/b.db", "file").is_empty());
    }
}
