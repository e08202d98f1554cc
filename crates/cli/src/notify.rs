//! `notify-url` (ours; Litestream has no such key): a JSON POST to a webhook when a
//! database or a replica turns failing and when it recovers, and when a restore drill
//! (`drill-interval`) or a validation (`validation-interval`) fails and when one passes
//! again.
//!
//! The rule, checked every [`POLL_EVERY`] against the engine's live status:
//! - a database (its captures) or a replica (its uploads) is *failing* once it has been
//!   failing for `health-failing-after` (the rule of `/healthz`, `observe/health.rs`), and
//!   *recovered* as soon as it no longer fails;
//! - a drill or a validation is failing when its last run failed, recovered when a later
//!   run passes.
//!
//! Everything starts healthy, so the first event of a subject is always `failing`, and a
//! subject that never fails costs no request. Events go through a bounded queue to one
//! sender task: the checks only read atomics and never wait on the webhook, so a slow or
//! dead endpoint never holds replication up. A POST that meets a connection error, a
//! timeout, a 408, a 429 or a 5xx is retried with exponential backoff ([`BACKOFF`]), at
//! most [`ATTEMPTS`] times; any 2xx is a success; another answer drops the event (the
//! endpoint refused it). A full queue drops new events with a warning.
//!
//! The payload never holds a secret: it names the replica by its name and type (never its
//! URL), and every error text is scrubbed of the config's secrets and of URL userinfo and
//! queries ([`scrub`]). Like the heartbeat's, the webhook URL itself may carry a token:
//! only its scheme and host are logged.
//!
//! Owns: the transition rule ([`Tracker`], pure, table-tested), the payload ([`Event`]),
//! the scrubbing, the poll and the sender ([`spawn`]). Steers nothing.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use engine::clock::now_ms;
use engine::replicate::status::{DbStatus, ReplicaStatus};
use engine::runtime::DbRun;
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use crate::config::{Config, ReplicaKind};
use crate::heartbeat::{describe, target_of};

/// How often the status is looked at (atomics only: no request, no I/O).
pub const POLL_EVERY: Duration = Duration::from_secs(1);
/// One POST's whole time limit.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts per event, the first included.
pub const ATTEMPTS: u32 = 6;
/// The pause before the first retry, doubled after each (1, 2, 4, 8, 16 s: about half a
/// minute of trying).
pub const BACKOFF: Duration = Duration::from_secs(1);
/// Events waiting to be sent; more are dropped with a warning.
const QUEUE: usize = 256;

/// What an event is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Check {
    /// A database's captures.
    Database,
    /// A replica's uploads.
    Replica,
    /// A restore drill of a replica.
    Drill,
    /// A validation of a replica's history.
    Validation,
}

impl Check {
    pub fn as_str(self) -> &'static str {
        match self {
            Check::Database => "database",
            Check::Replica => "replica",
            Check::Drill => "drill",
            Check::Validation => "validation",
        }
    }
}

/// `failing` or `recovered`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Failing,
    Recovered,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Failing => "failing",
            State::Recovered => "recovered",
        }
    }
}

/// A replica, as an event names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReplicaRef {
    /// Its `name`, else its type.
    pub name: String,
    /// `file`, `s3`, `gs`, `abs`, `sftp`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// The JSON body of one POST.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Event {
    /// `<check>.<state>`, e.g. `replica.failing`.
    pub event: String,
    pub check: Check,
    pub state: State,
    /// The database's path.
    pub database: String,
    /// `null` for a database event.
    pub replica: Option<ReplicaRef>,
    /// Why it fails (scrubbed); `null` on recovery.
    pub error: Option<String>,
    /// When the failing spell began (Unix ms), when known.
    pub failing_since_unix_ms: Option<i64>,
    /// When the event was seen: RFC 3339 and Unix ms.
    pub timestamp: String,
    pub unix_ms: i64,
    /// This machine's host name.
    pub host: String,
}

/// What one subject looks like at one poll.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub failing: bool,
    pub error: Option<String>,
    pub since_unix_ms: Option<i64>,
}

/// One subject's last reported state; hands out an event on each change.
#[derive(Debug, Default)]
pub struct Tracker {
    failing: bool,
}

impl Tracker {
    /// The state to report, if `seen` differs from the last one reported.
    pub fn observe(&mut self, seen: &Seen) -> Option<State> {
        if seen.failing == self.failing {
            return None;
        }
        self.failing = seen.failing;
        Some(if seen.failing {
            State::Failing
        } else {
            State::Recovered
        })
    }
}

/// A database's or replica's spell, as `/healthz` sees it: failing once it has lasted
/// `failing_after`, healthy as soon as it ends.
pub fn spell(since_ms: i64, error: Option<String>, now: i64, failing_after: Duration) -> Seen {
    let long = since_ms != 0 && now - since_ms >= failing_after.as_millis() as i64;
    Seen {
        failing: long,
        error,
        since_unix_ms: (since_ms != 0).then_some(since_ms),
    }
}

/// `s` with every secret replaced by `***`, and every URL's userinfo and query removed.
/// Secrets shorter than 4 characters are left alone (they would mangle ordinary text and
/// protect nothing).
pub fn scrub(s: &str, secrets: &[String]) -> String {
    let mut out = s.to_string();
    for sec in secrets.iter().filter(|x| x.len() >= 4) {
        out = out.replace(sec.as_str(), "***");
    }
    strip_url_parts(&out)
}

/// Removes `user[:password]@` after each `scheme://`, and `?query` up to the next space
/// or quote.
fn strip_url_parts(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("://") {
        out.push_str(&rest[..i + 3]);
        rest = &rest[i + 3..];
        let end = rest
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '>' | ')' | ','))
            .unwrap_or(rest.len());
        let url = &rest[..end];
        let auth_end = url.find(['/', '?', '#']).unwrap_or(url.len());
        let (auth, tail) = url.split_at(auth_end);
        let host = auth.rsplit_once('@').map_or(auth, |(_, h)| h);
        let tail = tail.split_once('?').map_or(tail, |(p, _)| p);
        out.push_str(host);
        out.push_str(tail);
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// Every secret the config holds: credentials of every replica and the two URLs that
/// may carry tokens.
pub fn secrets_of(cfg: &Config) -> Vec<String> {
    let mut out = Vec::new();
    let mut add = |s: Option<&crate::config::Secret>| {
        if let Some(s) = s {
            out.push(s.expose().to_string());
        }
    };
    add(cfg.notify_url.as_ref());
    add(cfg.heartbeat.as_ref().map(|h| &h.url));
    for db in &cfg.dbs {
        for r in &db.replicas {
            match &r.kind {
                ReplicaKind::File { .. } | ReplicaKind::Gcs(_) => {}
                ReplicaKind::S3(c) => {
                    add(c.access_key_id.as_ref());
                    add(c.secret_access_key.as_ref());
                    add(c.sse_customer_key.as_ref());
                }
                ReplicaKind::Abs(c) => {
                    add(c.account_key.as_ref());
                    add(c.sas_token.as_ref());
                }
                ReplicaKind::Sftp(c) => {
                    add(c.password.as_ref());
                    add(c.key_passphrase.as_ref());
                }
                ReplicaKind::WebDav(c) => add(c.password.as_ref()),
                ReplicaKind::Nats(c) => {
                    for s in [&c.password, &c.token, &c.nkey, &c.jwt, &c.seed] {
                        add(s.as_ref());
                    }
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The type of a replica from its store's location (`s3://…`; a bare path is a file).
fn kind_of(location: &str) -> String {
    match location.split_once("://") {
        Some((scheme, _)) if !scheme.is_empty() => scheme.to_ascii_lowercase(),
        _ => "file".to_string(),
    }
}

/// This machine's name, or `unknown`.
fn host_name() -> String {
    engine::platform::process::host_name().unwrap_or_else(|| "unknown".into())
}

/// One subject and where its state is read.
struct Subject {
    check: Check,
    db: String,
    replica: Option<ReplicaRef>,
    source: Source,
    tracker: Tracker,
}

enum Source {
    Db(Arc<DbStatus>),
    Replica(Arc<ReplicaStatus>),
    Drill(Arc<ReplicaStatus>),
    Validation(Arc<ReplicaStatus>),
}

impl Source {
    fn seen(&self, now: i64, failing_after: Duration) -> Seen {
        match self {
            Source::Db(s) => spell(
                s.failing_since_ms.load(Ordering::Acquire),
                s.last_error(),
                now,
                failing_after,
            ),
            Source::Replica(s) => spell(
                s.failing_since_ms.load(Ordering::Acquire),
                s.last_error(),
                now,
                failing_after,
            ),
            Source::Drill(s) => match s.drill() {
                Some(d) if !d.ok => Seen {
                    failing: true,
                    error: d.error,
                    since_unix_ms: Some(d.last_run_unix_ms),
                },
                _ => Seen {
                    failing: false,
                    error: None,
                    since_unix_ms: None,
                },
            },
            Source::Validation(s) => match s.validation() {
                Some(v) if !v.ok => Seen {
                    failing: true,
                    error: v.error,
                    since_unix_ms: Some(v.last_run_unix_ms),
                },
                _ => Seen {
                    failing: false,
                    error: None,
                    since_unix_ms: None,
                },
            },
        }
    }
}

/// Starts the checks and the sender for `runs` (before they are handed to the engine);
/// both end when `shutdown` turns true. Fails only when the URL or the HTTP client
/// cannot be made.
pub fn spawn(
    cfg: &Config,
    url: &crate::config::Secret,
    runs: &[DbRun],
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    // Checked when the config was read; parsed again here for the client.
    let url =
        reqwest::Url::parse(url.expose()).map_err(|_| anyhow::anyhow!("notify-url: not a URL"))?;
    let target = target_of(&url);
    let client = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .build()
        .map_err(|e| anyhow::anyhow!("notify: cannot build the HTTP client: {}", e))?;
    let mut subjects = Vec::new();
    for r in runs {
        let db = r.opts.path.display().to_string();
        subjects.push(Subject {
            check: Check::Database,
            db: db.clone(),
            replica: None,
            source: Source::Db(r.status.clone()),
            tracker: Tracker::default(),
        });
        for rep in &r.replicas {
            let rref = ReplicaRef {
                name: rep.opts.name.clone(),
                kind: kind_of(rep.store.location()),
            };
            for (check, source) in [
                (Check::Replica, Source::Replica(rep.status.clone())),
                (Check::Drill, Source::Drill(rep.status.clone())),
                (Check::Validation, Source::Validation(rep.status.clone())),
            ] {
                subjects.push(Subject {
                    check,
                    db: db.clone(),
                    replica: Some(rref.clone()),
                    source,
                    tracker: Tracker::default(),
                });
            }
        }
    }
    let (tx, rx) = mpsc::channel(QUEUE);
    info!(target = %target, "failure notifications enabled");
    tokio::spawn(watch_loop(
        subjects,
        cfg.health_failing_after,
        secrets_of(cfg),
        host_name(),
        tx,
        shutdown.clone(),
    ));
    tokio::spawn(send_loop(client, url, target, rx, shutdown));
    Ok(())
}

async fn watch_loop(
    mut subjects: Vec<Subject>,
    failing_after: Duration,
    secrets: Vec<String>,
    host: String,
    tx: mpsc::Sender<Event>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(POLL_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        let now = now_ms();
        for s in &mut subjects {
            let seen = s.source.seen(now, failing_after);
            let Some(state) = s.tracker.observe(&seen) else {
                continue;
            };
            let check = s.check;
            let ev = Event {
                event: format!("{}.{}", check.as_str(), state.as_str()),
                check,
                state,
                database: s.db.clone(),
                replica: s.replica.clone(),
                error: match state {
                    State::Failing => seen.error.as_deref().map(|e| scrub(e, &secrets)),
                    State::Recovered => None,
                },
                failing_since_unix_ms: seen.since_unix_ms,
                timestamp: jiff::Timestamp::from_millisecond(now)
                    .map(|t| t.to_string())
                    .unwrap_or_default(),
                unix_ms: now,
                host: host.clone(),
            };
            info!(event = %ev.event, db = %ev.database, replica = ev.replica.as_ref().map(|r| r.name.as_str()).unwrap_or(""), "notify: event queued");
            if tx.try_send(ev).is_err() {
                warn!("notify: too many events waiting to be sent; one was dropped");
            }
        }
    }
}

async fn send_loop(
    client: reqwest::Client,
    url: reqwest::Url,
    target: String,
    mut rx: mpsc::Receiver<Event>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let ev = tokio::select! {
            e = rx.recv() => match e { Some(e) => e, None => return },
            _ = shutdown.wait_for(|s| *s) => return,
        };
        let body = match serde_json::to_vec(&ev) {
            Ok(b) => b,
            Err(e) => {
                warn!(error = %e, "notify: cannot encode an event");
                continue;
            }
        };
        let mut pause = BACKOFF;
        for attempt in 1..=ATTEMPTS {
            let result = tokio::select! {
                r = post(&client, &url, &body) => r,
                _ = shutdown.wait_for(|s| *s) => return,
            };
            match result {
                Ok(()) => {
                    debug!(target = %target, event = %ev.event, attempt, "notify: event sent");
                    break;
                }
                Err((why, retry)) if retry && attempt < ATTEMPTS => {
                    warn!(target = %target, event = %ev.event, attempt, error = %why, retry_in = ?pause, "notify: POST failed; will retry");
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = shutdown.wait_for(|s| *s) => return,
                    }
                    pause *= 2;
                }
                Err((why, _)) => {
                    warn!(target = %target, event = %ev.event, attempt, error = %why, "notify: POST failed; event dropped");
                    break;
                }
            }
        }
    }
}

/// One POST; `Err((why, worth retrying))`. The error never holds the URL.
async fn post(
    client: &reqwest::Client,
    url: &reqwest::Url,
    body: &[u8],
) -> Result<(), (String, bool)> {
    let resp = client
        .post(url.clone())
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body.to_vec())
        .send()
        .await
        .map_err(|e| (describe(e.without_url()), true))?;
    let code = resp.status();
    if code.is_success() {
        Ok(())
    } else {
        let retry = code.is_server_error() || matches!(code.as_u16(), 408 | 429);
        Err((format!("unexpected status code {}", code.as_u16()), retry))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(failing: bool) -> Seen {
        Seen {
            failing,
            error: None,
            since_unix_ms: None,
        }
    }

    #[test]
    fn events_on_changes_only() {
        let mut t = Tracker::default();
        // (what, seen failing, event)
        let steps = [
            ("healthy at start", false, None),
            ("turns failing", true, Some(State::Failing)),
            ("still failing", true, None),
            ("recovers", false, Some(State::Recovered)),
            ("stays well", false, None),
            ("fails again", true, Some(State::Failing)),
        ];
        for (what, failing, want) in steps {
            assert_eq!(t.observe(&seen(failing)), want, "{what}");
        }
    }

    #[test]
    fn a_spell_counts_once_it_lasts() {
        let after = Duration::from_secs(60);
        assert!(!spell(0, None, 100_000, after).failing, "healthy");
        assert!(!spell(50_000, None, 100_000, after).failing, "brief");
        assert!(
            spell(40_000, None, 100_000, after).failing,
            "exactly the limit"
        );
        assert_eq!(
            spell(40_000, None, 100_000, after).since_unix_ms,
            Some(40_000)
        );
    }

    #[test]
    fn scrub_hides_secrets_userinfo_and_queries() {
        let secrets = vec!["hunter2-secret".to_string(), "ab".to_string()];
        let cases = [
            (
                "PUT https://bob:pw@s3.example.com/b/k?X-Amz-Signature=abc failed",
                "PUT https://s3.example.com/b/k failed",
            ),
            ("auth hunter2-secret refused", "auth *** refused"),
            ("sftp://bob@h:22/p: denied", "sftp://h:22/p: denied"),
            ("no url, ab stays", "no url, ab stays"),
            ("\"http://h/x?tok=1\"", "\"http://h/x\""),
        ];
        for (input, want) in cases {
            assert_eq!(scrub(input, &secrets), want, "{input}");
        }
    }

    #[test]
    fn kinds_from_locations() {
        assert_eq!(kind_of("/srv/replica"), "file");
        assert_eq!(kind_of("s3://bucket/path"), "s3");
        assert_eq!(kind_of("sftp://bob@h:22/p"), "sftp");
    }

    #[test]
    fn payload_shape() {
        let ev = Event {
            event: "replica.failing".into(),
            check: Check::Replica,
            state: State::Failing,
            database: "/a.db".into(),
            replica: Some(ReplicaRef {
                name: "s3".into(),
                kind: "s3".into(),
            }),
            error: Some("connection refused".into()),
            failing_since_unix_ms: Some(1),
            timestamp: "1970-01-01T00:00:00.002Z".into(),
            unix_ms: 2,
            host: "h".into(),
        };
        let v = serde_json::to_value(&ev).unwrap();
        assert_eq!(v["check"], "replica");
        assert_eq!(v["state"], "failing");
        assert_eq!(v["replica"]["type"], "s3");
    }
}
