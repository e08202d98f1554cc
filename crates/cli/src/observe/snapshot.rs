//! The bodies `addr` serves, built from one report and shared by every request for up to
//! [`MAX_AGE`] (issue 17: each request used to build its own report on the blocking
//! threads captures use, so a flood of requests stalled captures).
//!
//! Owns: [`Snapshot`] (one report, and the `/metrics` text, the `/status` JSON, the
//! `/healthz` verdict and the status page rendered from it, each on first use: with
//! 10,000 databases a body is tens of MiB, and a scrape of `/metrics` has no use for the
//! page) and [`Snapshots`], which keeps the latest and builds a new one only when it is
//! older than its maximum age. Concurrent requests share one build: the server runs on
//! its own single thread (`server`), and a build runs to completion on it before any other
//! request is looked at.
//!
//! Does not: decide what a report holds (`Watched::report`), render it (`metrics`,
//! `health`), or speak HTTP (`server`). Fed by the server; feeds its responses.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use engine::lease::LeaseView;
use engine::replicate::report::Report;
use hyper::body::Bytes;

use super::history::History;
use super::{health, metrics, page, Watched};
use crate::heartbeat::HeartbeatView;

/// How long a snapshot is served before the next request builds a new one. A scrape is
/// at most this much behind; Prometheus scrapes every 15 s or more.
pub const MAX_AGE: Duration = Duration::from_secs(1);

/// One report, and what the endpoints answer from it (each body rendered once, when
/// first asked for).
pub struct Snapshot {
    pub taken: Instant,
    report: Report,
    leases: Vec<(String, LeaseView)>,
    heartbeat: Option<HeartbeatView>,
    history: Arc<History>,
    /// `health::check`'s verdict (cheap: taken with the report).
    health: Result<(), String>,
    metrics: OnceLock<Bytes>,
    status: OnceLock<Result<Bytes, String>>,
    page: OnceLock<Bytes>,
}

impl Snapshot {
    /// Takes a report of `watched` now and keeps its lag figures in `history`. Lists the
    /// local meta directory of each database a replica is behind: blocking, but short.
    pub fn build(watched: &Watched, failing_after: Duration, history: &Arc<History>) -> Snapshot {
        let report = watched.report();
        history.record(&report);
        Snapshot::of(
            report,
            watched.lease_views(),
            watched.heartbeat_view(),
            history.clone(),
            failing_after,
        )
    }

    fn of(
        report: Report,
        leases: Vec<(String, LeaseView)>,
        heartbeat: Option<HeartbeatView>,
        history: Arc<History>,
        failing_after: Duration,
    ) -> Snapshot {
        Snapshot {
            taken: Instant::now(),
            health: health::check(&report, failing_after),
            report,
            leases,
            heartbeat,
            history,
            metrics: OnceLock::new(),
            status: OnceLock::new(),
            page: OnceLock::new(),
        }
    }

    /// `/metrics`: the report's and the leases' Prometheus text.
    pub fn metrics(&self) -> Bytes {
        self.metrics
            .get_or_init(|| {
                Bytes::from(metrics::render(&self.report) + &metrics::render_leases(&self.leases))
            })
            .clone()
    }

    /// `/status`: the report as JSON, or why it could not be encoded.
    pub fn status(&self) -> Result<Bytes, String> {
        self.status
            .get_or_init(|| {
                status_json(&self.report, self.heartbeat.clone())
                    .map(|j| Bytes::from(j + "\n"))
                    .map_err(|e| e.to_string())
            })
            .clone()
    }

    /// The status page (`/`), HTML, with the plots as the history holds them now.
    pub fn page(&self) -> Bytes {
        self.page
            .get_or_init(|| Bytes::from(page::render(&self.report, &self.leases, &self.history)))
            .clone()
    }

    /// `/healthz`: `health::check`'s verdict.
    pub fn health(&self) -> &Result<(), String> {
        &self.health
    }
}

/// `/status`: the report, plus `heartbeat` (the last ping) when `heartbeat-url` is set.
/// The `status` command reads the report back and ignores `heartbeat`.
fn status_json(report: &Report, heartbeat: Option<HeartbeatView>) -> serde_json::Result<String> {
    #[derive(serde::Serialize)]
    struct WithHeartbeat<'a> {
        #[serde(flatten)]
        report: &'a Report,
        heartbeat: HeartbeatView,
    }
    match heartbeat {
        None => serde_json::to_string_pretty(report),
        Some(heartbeat) => serde_json::to_string_pretty(&WithHeartbeat { report, heartbeat }),
    }
}

/// The latest snapshot, rebuilt when older than `max_age`.
pub struct Snapshots {
    max_age: Duration,
    latest: Mutex<Option<Arc<Snapshot>>>,
}

impl Snapshots {
    pub fn new(max_age: Duration) -> Snapshots {
        Snapshots {
            max_age,
            latest: Mutex::new(None),
        }
    }

    /// The latest snapshot if fresh enough, else one made by `build` (kept for the next
    /// callers). `build` runs under the lock: callers meanwhile wait for its result
    /// instead of building their own.
    pub fn get(&self, build: impl FnOnce() -> Snapshot) -> Arc<Snapshot> {
        let mut latest = self.latest.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = latest.as_ref().filter(|s| s.taken.elapsed() < self.max_age) {
            return s.clone();
        }
        let s = Arc::new(build());
        *latest = Some(s.clone());
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A snapshot told apart from others by its report's `taken_unix_ms`.
    fn snap(n: u8) -> Snapshot {
        let report = Report {
            taken_unix_ms: n as i64,
            ..Default::default()
        };
        Snapshot::of(
            report,
            vec![],
            None,
            Arc::new(History::new()),
            Duration::from_secs(60),
        )
    }

    fn id(s: &Snapshot) -> i64 {
        s.report.taken_unix_ms
    }

    #[test]
    fn bodies_are_rendered_from_the_report_on_first_use() {
        let s = snap(7);
        assert!(s.metrics.get().is_none() && s.page.get().is_none() && s.status.get().is_none());
        let j = s.status().unwrap();
        assert!(std::str::from_utf8(&j)
            .unwrap()
            .contains("\"taken_unix_ms\": 7"));
        assert!(s.metrics.get().is_none(), "/status renders no metrics text");
        assert_eq!(s.metrics(), s.metrics(), "rendered once, then shared");
        assert!(!s.page().is_empty());
    }

    #[test]
    fn builds_once_per_max_age() {
        let s = Snapshots::new(Duration::from_secs(60));
        let mut built = 0;
        let a = s.get(|| {
            built += 1;
            snap(1)
        });
        let b = s.get(|| {
            built += 1;
            snap(2)
        });
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!((built, id(&b)), (1, 1));

        // Nothing is fresh with a zero max age: every call builds.
        let s = Snapshots::new(Duration::ZERO);
        let a = s.get(|| snap(1));
        let b = s.get(|| snap(2));
        assert_eq!((id(&a), id(&b)), (1, 2));
    }

    #[test]
    fn concurrent_callers_share_one_build() {
        let s = Arc::new(Snapshots::new(Duration::from_secs(60)));
        let built = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (s, built) = (s.clone(), built.clone());
                std::thread::spawn(move || {
                    s.get(|| {
                        built.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(50));
                        snap(1)
                    })
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(built.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
