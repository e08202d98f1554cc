//! The bodies `addr` serves, built from one report and shared by every request for up to
//! [`MAX_AGE`] (issue 17: each request used to build its own report on the blocking
//! threads captures use, so a flood of requests stalled captures).
//!
//! Owns: [`Snapshot`] (the `/metrics` text, the `/status` JSON, the `/healthz`
//! verdict and the status page of one report) and [`Snapshots`], which keeps the latest
//! and builds a new one only when it is older than its maximum age. Concurrent requests share one build: the
//! server runs on its own single thread (`server`), and a build runs to completion on it
//! before any other request is looked at.
//!
//! Does not: decide what a report holds (`Watched::report`), render it (`metrics`,
//! `health`), or speak HTTP (`server`). Fed by the server; feeds its responses.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::body::Bytes;

use super::history::History;
use super::{health, metrics, page, Watched};

/// How long a snapshot is served before the next request builds a new one. A scrape is
/// at most this much behind; Prometheus scrapes every 15 s or more.
pub const MAX_AGE: Duration = Duration::from_secs(1);

/// What the three endpoints answer, from one report.
#[derive(Debug)]
pub struct Snapshot {
    pub taken: Instant,
    pub metrics: Bytes,
    /// The report as JSON, or why it could not be encoded.
    pub status: Result<Bytes, String>,
    /// `health::check`'s verdict.
    pub health: Result<(), String>,
    /// The status page (`/`), HTML.
    pub page: Bytes,
}

impl Snapshot {
    /// Takes a report of `watched` now, keeps its lag figures in `history`, and renders
    /// it. Lists each local meta directory: blocking, but short.
    pub fn build(watched: &Watched, failing_after: Duration, history: &History) -> Snapshot {
        let taken = Instant::now();
        let leases = watched.lease_views();
        let report = watched.report();
        history.record(&report);
        Snapshot {
            page: Bytes::from(page::render(&report, &leases, history)),
            taken,
            metrics: Bytes::from(metrics::render(&report) + &metrics::render_leases(&leases)),
            status: status_json(&report, watched.heartbeat_view())
                .map(|j| Bytes::from(j + "\n"))
                .map_err(|e| e.to_string()),
            health: health::check(&report, failing_after),
        }
    }
}

/// `/status`: the report, plus `heartbeat` (the last ping) when `heartbeat-url` is set.
/// The `status` command reads the report back and ignores `heartbeat`.
fn status_json(
    report: &engine::replicate::report::Report,
    heartbeat: Option<crate::heartbeat::HeartbeatView>,
) -> serde_json::Result<String> {
    #[derive(serde::Serialize)]
    struct WithHeartbeat<'a> {
        #[serde(flatten)]
        report: &'a engine::replicate::report::Report,
        heartbeat: crate::heartbeat::HeartbeatView,
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

    fn snap(n: u8) -> Snapshot {
        Snapshot {
            taken: Instant::now(),
            metrics: Bytes::from(vec![n]),
            status: Ok(Bytes::new()),
            health: Ok(()),
            page: Bytes::new(),
        }
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
        assert_eq!((built, &b.metrics[..]), (1, &[1u8][..]));

        // Nothing is fresh with a zero max age: every call builds.
        let s = Snapshots::new(Duration::ZERO);
        let a = s.get(|| snap(1));
        let b = s.get(|| snap(2));
        assert_eq!((&a.metrics[..], &b.metrics[..]), (&[1u8][..], &[2u8][..]));
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
