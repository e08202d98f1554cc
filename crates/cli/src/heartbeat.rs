//! `heartbeat-url`: a GET to a monitoring URL (healthchecks.io, Cronitor, ...) while every
//! database keeps reaching its replicas, so that the monitor raises an alarm when the
//! pings stop.
//!
//! The rule, as Litestream's (`store.go`, `heartbeat.go`): every [`CHECK_EVERY`] (the
//! first check one period after start) a ping is sent when
//! - the last ping *attempt* is at least `heartbeat-interval` ago (or there was none): a
//!   failed ping is not retried sooner;
//! - there is at least one database, and every database synced within the interval.
//!
//! A replica "synced" when it holds everything captured locally (its last check is now),
//! else at its last upload. Stricter than Litestream, which would ping while a replica
//! whose last success is still within the interval has started failing: here a database
//! whose captures are failing, or any replica whose uploads are failing, stops the pings
//! at once (the monitor is there to hear about exactly that). The GET has a 30 s timeout;
//! any 2xx answer is a success.
//!
//! Owns: the decision ([`decide`], pure, table-tested), the loop ([`spawn`]) and the last
//! outcome ([`HeartbeatStatus`], shown in `/status`). Reads the engine's live status
//! atomics; steers nothing. The URL may carry a token: only its scheme and host are ever
//! logged or shown, and request errors are stripped of the URL.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use engine::clock::now_ms;
use engine::runtime::{DbView, Runtime};
use serde::Serialize;
use std::sync::atomic::Ordering;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::config::HeartbeatConfig;

/// How often the decision is taken (Litestream's `DefaultHeartbeatCheckInterval`).
pub const CHECK_EVERY: Duration = Duration::from_secs(15);
/// The GET's whole time limit (Litestream's `DefaultHeartbeatTimeout`).
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// One replica, as the decision sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplicaHealth {
    /// When it last held everything captured locally, or last uploaded (Unix ms).
    pub synced_unix_ms: Option<i64>,
    /// Its uploads are failing now.
    pub failing: bool,
}

/// One database, as the decision sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DbHealth {
    /// Its captures are failing now.
    pub failing: bool,
    pub replicas: Vec<ReplicaHealth>,
}

/// What [`decide`] says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Ping,
    /// The last attempt is less than an interval ago.
    NotDue,
    /// No database to vouch for.
    NoDatabases,
    /// A database or replica is failing, or has not synced within the interval.
    Unhealthy,
}

/// Whether to ping now (see the module docs for the rule).
pub fn decide(
    dbs: &[DbHealth],
    last_attempt_unix_ms: Option<i64>,
    now_unix_ms: i64,
    interval: Duration,
) -> Verdict {
    let interval_ms = interval.as_millis() as i64;
    if last_attempt_unix_ms.is_some_and(|t| now_unix_ms - t < interval_ms) {
        return Verdict::NotDue;
    }
    if dbs.is_empty() {
        return Verdict::NoDatabases;
    }
    let since = now_unix_ms - interval_ms;
    let healthy = |r: &ReplicaHealth| !r.failing && r.synced_unix_ms.is_some_and(|t| t >= since);
    if dbs
        .iter()
        .all(|d| !d.failing && !d.replicas.is_empty() && d.replicas.iter().all(healthy))
    {
        Verdict::Ping
    } else {
        Verdict::Unhealthy
    }
}

/// The last ping, for `/status`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HeartbeatView {
    /// `scheme://host[:port]` of the URL: never its path or query (a token).
    pub target: String,
    pub interval_seconds: u64,
    pub last_attempt_unix_ms: Option<i64>,
    pub last_success_unix_ms: Option<i64>,
    /// Why the last attempt failed (`None` after a success or before any attempt).
    pub last_error: Option<String>,
}

/// The heartbeat's outcomes, shared with the `addr` server.
#[derive(Debug, Default)]
pub struct HeartbeatStatus(Mutex<HeartbeatView>);

impl HeartbeatStatus {
    pub fn get(&self) -> HeartbeatView {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn update(&self, f: impl FnOnce(&mut HeartbeatView)) {
        f(&mut self.0.lock().unwrap_or_else(|p| p.into_inner()));
    }
}

/// `scheme://host[:port]` of a heartbeat URL, the only part that is ever shown.
pub fn target_of(url: &reqwest::Url) -> String {
    let host = url.host_str().unwrap_or("");
    match url.port() {
        Some(p) => format!("{}://{host}:{p}", url.scheme()),
        None => format!("{}://{host}", url.scheme()),
    }
}

/// One database's health now, from its live figures.
fn health(view: &DbView, now: i64) -> DbHealth {
    let db = &view.status;
    let local = db.local_txid();
    DbHealth {
        failing: db.failing_since_ms.load(Ordering::Acquire) != 0,
        replicas: view
            .replicas
            .iter()
            .map(|r| &r.status)
            .map(|r| {
                let failing = r.failing_since_ms.load(Ordering::Acquire) != 0;
                let caught_up = local.is_some() && r.progress.holds(local);
                let last_upload = r.last_upload_ms.load(Ordering::Acquire);
                ReplicaHealth {
                    synced_unix_ms: if caught_up {
                        Some(now)
                    } else {
                        (last_upload > 0).then_some(last_upload)
                    },
                    failing,
                }
            })
            .collect(),
    }
}

/// Starts the heartbeat loop for the databases `runtime` runs (at each check: those
/// added and removed while running count as they come and go); it ends when `shutdown`
/// turns true. Fails only when the HTTP client cannot be built.
pub fn spawn(
    cfg: &HeartbeatConfig,
    runtime: Runtime,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<Arc<HeartbeatStatus>> {
    // Checked when the config was read; parsed again here for the client.
    let url = reqwest::Url::parse(cfg.url.expose())
        .map_err(|_| anyhow::anyhow!("heartbeat-url: not a URL"))?;
    let target = target_of(&url);
    let client = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .build()
        .map_err(|e| anyhow::anyhow!("heartbeat: cannot build the HTTP client: {}", e))?;
    let status = Arc::new(HeartbeatStatus::default());
    status.update(|v| {
        v.target = target.clone();
        v.interval_seconds = cfg.interval.as_secs();
    });
    info!(target = %target, interval = ?cfg.interval, "heartbeat pings scheduled");
    tokio::spawn(run(
        client,
        url,
        target,
        cfg.interval,
        runtime,
        status.clone(),
        shutdown,
    ));
    Ok(status)
}

async fn run(
    client: reqwest::Client,
    url: reqwest::Url,
    target: String,
    interval: Duration,
    runtime: Runtime,
    status: Arc<HeartbeatStatus>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + CHECK_EVERY, CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_attempt = None;
    // Said once per spell, not every check.
    let mut withheld = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        let now = now_ms();
        let dbs: Vec<DbHealth> = runtime.views().iter().map(|v| health(v, now)).collect();
        match decide(&dbs, last_attempt, now, interval) {
            Verdict::Ping => withheld = false,
            Verdict::Unhealthy => {
                if !withheld {
                    info!(target = %target, "heartbeat withheld: a database or replica is failing, or has not synced within the interval");
                    withheld = true;
                }
                continue;
            }
            Verdict::NotDue | Verdict::NoDatabases => continue,
        }
        // The attempt counts even when it fails, so a failing endpoint is not hammered.
        last_attempt = Some(now);
        let result = tokio::select! {
            r = ping(&client, &url) => r,
            _ = shutdown.wait_for(|s| *s) => return,
        };
        status.update(|v| {
            v.last_attempt_unix_ms = Some(now);
            match &result {
                Ok(()) => {
                    v.last_success_unix_ms = Some(now);
                    v.last_error = None;
                }
                Err(e) => v.last_error = Some(e.clone()),
            }
        });
        match result {
            Ok(()) => debug!(target = %target, "heartbeat ping sent"),
            Err(e) => warn!(target = %target, error = %e, "heartbeat ping failed"),
        }
    }
}

/// One GET; any 2xx is a success. The error never holds the URL.
async fn ping(client: &reqwest::Client, url: &reqwest::Url) -> Result<(), String> {
    let resp = client
        .get(url.clone())
        .send()
        .await
        .map_err(|e| describe(e.without_url()))?;
    let code = resp.status();
    if code.is_success() {
        Ok(())
    } else {
        Err(format!("unexpected status code {}", code.as_u16()))
    }
}

/// A request error with its causes (`error sending request: connection refused`).
pub(crate) fn describe(e: reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn rep(synced: Option<i64>, failing: bool) -> ReplicaHealth {
        ReplicaHealth {
            synced_unix_ms: synced,
            failing,
        }
    }

    fn db(failing: bool, replicas: &[ReplicaHealth]) -> DbHealth {
        DbHealth {
            failing,
            replicas: replicas.to_vec(),
        }
    }

    #[test]
    fn decision_table() {
        let now = 10 * MIN;
        let interval = Duration::from_secs(60);
        let fresh = rep(Some(now - 1_000), false);
        let edge = rep(Some(now - MIN), false);
        let stale = rep(Some(now - MIN - 1), false);
        let never = rep(None, false);
        let failing = rep(Some(now), true);
        use Verdict::*;
        // (what, databases, last attempt, verdict)
        type Case<'a> = (&'a str, Vec<DbHealth>, Option<i64>, Verdict);
        let cases: Vec<Case<'_>> = vec![
            (
                "first check, all synced",
                vec![db(false, &[fresh])],
                None,
                Ping,
            ),
            (
                "synced exactly an interval ago",
                vec![db(false, &[edge])],
                None,
                Ping,
            ),
            (
                "synced just over an interval ago",
                vec![db(false, &[stale])],
                None,
                Unhealthy,
            ),
            ("never synced", vec![db(false, &[never])], None, Unhealthy),
            (
                "replica failing though synced just now",
                vec![db(false, &[failing])],
                None,
                Unhealthy,
            ),
            (
                "one of two replicas failing",
                vec![db(false, &[fresh, failing])],
                None,
                Unhealthy,
            ),
            (
                "database captures failing",
                vec![db(true, &[fresh])],
                None,
                Unhealthy,
            ),
            (
                "one of two databases stale",
                vec![db(false, &[fresh]), db(false, &[stale])],
                None,
                Unhealthy,
            ),
            (
                "two healthy databases",
                vec![db(false, &[fresh]), db(false, &[fresh, edge])],
                None,
                Ping,
            ),
            (
                "a database without replicas",
                vec![db(false, &[])],
                None,
                Unhealthy,
            ),
            ("no databases", vec![], None, NoDatabases),
            (
                "last attempt under an interval ago",
                vec![db(false, &[fresh])],
                Some(now - MIN + 1),
                NotDue,
            ),
            (
                "last attempt exactly an interval ago",
                vec![db(false, &[fresh])],
                Some(now - MIN),
                Ping,
            ),
            (
                "not due wins over unhealthy",
                vec![db(true, &[never])],
                Some(now - 1),
                NotDue,
            ),
        ];
        for (what, dbs, last, want) in cases {
            assert_eq!(decide(&dbs, last, now, interval), want, "{what}");
        }
    }

    #[test]
    fn target_hides_path_and_query() {
        let cases = [
            ("https://hc-ping.com/1234-secret", "https://hc-ping.com"),
            (
                "http://127.0.0.1:8080/ping/tok?k=secret",
                "http://127.0.0.1:8080",
            ),
            (
                "https://user:pw@example.com:8443/x",
                "https://example.com:8443",
            ),
        ];
        for (url, want) in cases {
            assert_eq!(target_of(&reqwest::Url::parse(url).unwrap()), want, "{url}");
        }
    }

    #[tokio::test]
    async fn ping_errors_do_not_carry_the_url() {
        // A port nothing listens on: bound, then let go.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url =
            reqwest::Url::parse(&format!("http://127.0.0.1:{port}/ping/secret-token")).unwrap();
        let client = reqwest::Client::builder().timeout(TIMEOUT).build().unwrap();
        let e = ping(&client, &url).await.unwrap_err();
        assert!(!e.contains("secret-token"), "{e}");
        assert!(!e.contains("127.0.0.1"), "{e}");
    }
}
