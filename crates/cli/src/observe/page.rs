//! The status page served at `/` on `addr`: one self-contained HTML page (inline CSS and
//! SVG, no script, no external asset) for someone without Grafana to see whether their
//! data is safe.
//!
//! Owns: [`render`], a pure function of a report, the lease views and the [`History`],
//! and the page's rule for a state's colour ([`State`]). The page shows every database
//! and replica with its state, the lag in transactions and the RPO (lag in seconds) over
//! the last hour as small plots, the last error, the last restore drill and the lease. It
//! reloads itself every [`REFRESH_SECONDS`].
//!
//! Does not: take reports or keep history (`snapshot`, `history`), or speak HTTP
//! (`server`). Costs no object-store request: everything it shows is already in memory.

use std::fmt::Write as _;

use engine::lease::{LeaseView, Role};
use engine::replicate::report::{DbReport, ReplicaReport, Report};

use super::history::{History, Sample, WINDOW};

/// The page reloads itself this often.
pub const REFRESH_SECONDS: u32 = 5;
/// A replica this far behind (its oldest missing transaction this old) is `behind`.
pub const BEHIND_AFTER_SECONDS: f64 = 60.0;

/// The state a database or replica is shown in, worst last.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum State {
    /// Caught up, or behind by less than [`BEHIND_AFTER_SECONDS`].
    Current,
    /// Not failing, but its oldest missing transaction is older than that.
    Behind,
    /// Its last attempt failed (uploads for a replica, captures for a database).
    Failing,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Current => "current",
            State::Behind => "behind",
            State::Failing => "failing",
        }
    }

    pub fn of_replica(r: &ReplicaReport) -> State {
        if r.failing_since_unix_ms.is_some() {
            State::Failing
        } else if r.lag_seconds >= BEHIND_AFTER_SECONDS {
            State::Behind
        } else {
            State::Current
        }
    }

    /// A failing database is failing; otherwise it is as bad as its worst replica.
    pub fn of_db(d: &DbReport) -> State {
        if d.failing_since_unix_ms.is_some() {
            return State::Failing;
        }
        d.replicas
            .iter()
            .map(State::of_replica)
            .max()
            .unwrap_or(State::Current)
    }
}

const STYLE: &str = "\
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}\
h1{font-size:1.4em;margin:0 0 .2em}h2{font-size:1.1em;margin:0 0 .3em;word-break:break-all}\
.sub{color:#666;margin:0 0 1em}.sub a{color:#555}\
section.db{background:#fff;border:1px solid #ddd;border-left:8px solid #999;border-radius:4px;padding:.8em 1em;margin:0 0 1em}\
section.db[data-state=current]{border-left-color:#2e7d32}\
section.db[data-state=behind]{border-left-color:#f9a825}\
section.db[data-state=failing]{border-left-color:#c62828}\
.badge{display:inline-block;padding:0 .5em;border-radius:3px;color:#fff;font-size:.85em;font-weight:600;background:#999}\
.badge.current{background:#2e7d32}.badge.behind{background:#f9a825;color:#222}.badge.failing{background:#c62828}\
table{border-collapse:collapse;width:100%;margin-top:.5em}\
th,td{text-align:left;vertical-align:top;padding:.3em .5em;border-top:1px solid #eee}th{font-weight:600;color:#555;font-size:.9em}\
tr[data-state=failing] td{background:#fdecea}tr[data-state=behind] td{background:#fff8e1}\
.error{color:#b71c1c;word-break:break-word}.muted{color:#888}\
svg.plot{background:#f4f4f4;border-radius:2px}svg.plot polyline{fill:none;stroke:#1565c0;stroke-width:1.5}\
svg.plot{display:block}.val{font-size:.8em;color:#666}\
.summary{font-weight:600}";

/// The page for `report`, the lease of each database that has one, and the samples of
/// `history`. Each plot ends with the report's own figure.
pub fn render(report: &Report, leases: &[(String, LeaseView)], history: &History) -> String {
    let now = report.taken_unix_ms;
    let mut o = String::with_capacity(8192);
    let worst = report
        .databases
        .iter()
        .map(State::of_db)
        .max()
        .unwrap_or(State::Current);
    let count = |s: State| {
        report
            .databases
            .iter()
            .flat_map(|d| &d.replicas)
            .filter(|r| State::of_replica(r) == s)
            .count()
    };
    let replicas: usize = report.databases.iter().map(|d| d.replicas.len()).sum();
    let _ = write!(
        o,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{} sqlite-replicate</title><style>{STYLE}</style></head><body data-state=\"{}\">\
         <h1>sqlite-replicate <span class=\"badge {}\">{}</span></h1>\
         <p class=\"sub\">{} databases, {replicas} replicas: <span class=\"summary\">{} failing, {} behind</span>. \
         As of {} UTC; reloads every {REFRESH_SECONDS} s. Plots: the last hour, or since start. \
         Also: <a href=\"/status\">/status</a> (JSON), <a href=\"/metrics\">/metrics</a>, <a href=\"/healthz\">/healthz</a>.</p>",
        match worst {
            State::Failing => "✖",
            State::Behind => "▲",
            State::Current => "✔",
        },
        worst.as_str(),
        worst.as_str(),
        worst.as_str(),
        report.databases.len(),
        count(State::Failing),
        count(State::Behind),
        clock(now),
    );
    if report.databases.is_empty() {
        o.push_str("<p class=\"muted\">No databases.</p>");
    }
    for d in &report.databases {
        db_section(&mut o, d, leases, history, now);
    }
    o.push_str("</body></html>\n");
    o
}

fn db_section(
    o: &mut String,
    d: &DbReport,
    leases: &[(String, LeaseView)],
    history: &History,
    now: i64,
) {
    let state = State::of_db(d);
    let _ = write!(
        o,
        "<section class=\"db\" data-db=\"{}\" data-state=\"{}\"><h2>{} <span class=\"badge {}\">{}</span></h2><p>",
        esc(&d.db),
        state.as_str(),
        esc(&d.db),
        state.as_str(),
        state.as_str()
    );
    let _ = write!(o, "TXID {:016x}", d.local_txid);
    if let Some(b) = d.db_size_bytes {
        let _ = write!(o, " · database {}", bytes(b));
    }
    if let Some(b) = d.wal_size_bytes {
        let _ = write!(o, " · WAL {}", bytes(b));
    }
    let _ = write!(
        o,
        " · last capture {} · last checkpoint {}</p>",
        ago(d.last_capture_unix_ms, now),
        ago(d.last_checkpoint_unix_ms, now)
    );
    if let Some(since) = d.failing_since_unix_ms {
        let _ = write!(
            o,
            "<p class=\"error\">Captures failing since {}: {}</p>",
            ago(Some(since), now),
            esc(d.last_error.as_deref().unwrap_or("unknown error"))
        );
    }
    if d.counters.as_ref().is_some_and(|c| c.disk_full) {
        o.push_str("<p class=\"error\">The local disk is full: captures wait for space.</p>");
    }
    o.push_str("<p class=\"lease\">");
    match leases.iter().find(|(db, _)| *db == d.db) {
        None => o.push_str("Lease: none configured."),
        Some((_, v)) => lease(o, v, now),
    }
    o.push_str("</p>");
    o.push_str(
        "<table><thead><tr><th>replica</th><th>state</th><th>replicated TXID</th>\
         <th>lag (transactions)</th><th>RPO (seconds)</th><th>last upload</th>\
         <th>last drill</th><th>last error</th></tr></thead><tbody>",
    );
    for r in &d.replicas {
        replica_row(o, d, r, history, now);
    }
    if d.replicas.is_empty() {
        o.push_str("<tr><td colspan=\"8\" class=\"muted\">No replicas.</td></tr>");
    }
    o.push_str("</tbody></table></section>");
}

fn lease(o: &mut String, v: &LeaseView, now: i64) {
    let role = match v.role {
        None => "not read yet",
        Some(Role::Primary) => "this process holds it",
        Some(Role::Standby) => "this process is a standby",
        Some(Role::Waiting) => "this process waits for it",
    };
    if v.expires_at_ms <= 0 || v.expires_at_ms < now {
        let _ = write!(
            o,
            "Lease: <span class=\"error\">no holder</span> (epoch {}; {role}).",
            v.epoch
        );
    } else {
        let _ = write!(
            o,
            "Lease: held by <b>{}</b>, epoch {}, expires in {} ({role}).",
            esc(&v.holder),
            v.epoch,
            span_ms(v.expires_at_ms - now)
        );
    }
    if v.role == Some(Role::Standby) {
        let _ = write!(
            o,
            " Standby copy at TXID {:016x}, {} behind.",
            v.applied_txid,
            span_ms(v.lag_ms as i64)
        );
    }
}

fn replica_row(o: &mut String, d: &DbReport, r: &ReplicaReport, history: &History, now: i64) {
    let state = State::of_replica(r);
    let mut samples = history.samples(&d.db, &r.name);
    samples.push(Sample {
        unix_ms: now,
        lag_txids: r.lag_txids,
        lag_seconds: r.lag_seconds,
    });
    let _ = write!(
        o,
        "<tr class=\"replica\" data-replica=\"{}\" data-state=\"{}\"><td><b>{}</b> <span class=\"muted\">{}</span></td>\
         <td><span class=\"badge {}\">{}</span></td><td>{}</td><td>",
        esc(&r.name),
        state.as_str(),
        esc(&r.name),
        esc(&r.replica_type),
        state.as_str(),
        state.as_str(),
        r.replicated_txid
            .map_or_else(|| "unknown".into(), |t| format!("{t:016x}")),
    );
    plot(o, &samples, now, |s| s.lag_txids as f64, "transactions");
    o.push_str("</td><td>");
    plot(o, &samples, now, |s| s.lag_seconds, "seconds");
    let _ = write!(o, "</td><td>{}</td><td>", ago(r.last_upload_unix_ms, now));
    match &r.drill {
        None => o.push_str("<span class=\"muted\">none run</span>"),
        Some(dr) if dr.ok => {
            let _ = write!(
                o,
                "passed {} · RTO {} · RPO {}",
                ago(Some(dr.last_run_unix_ms), now),
                span_ms(dr.restore_duration_ms as i64),
                span_ms(dr.rpo_ms as i64)
            );
        }
        Some(dr) => {
            let _ = write!(
                o,
                "<span class=\"error\">failed {}: {}</span>",
                ago(Some(dr.last_run_unix_ms), now),
                esc(dr.error.as_deref().unwrap_or("unknown error"))
            );
            if let Some(t) = dr.last_success_unix_ms {
                let _ = write!(o, "; last passed {}", ago(Some(t), now));
            }
        }
    }
    o.push_str("</td><td>");
    match (&r.last_error, r.failing_since_unix_ms) {
        (Some(e), Some(since)) => {
            let _ = write!(
                o,
                "<span class=\"error\">failing since {}: {}</span>",
                ago(Some(since), now),
                esc(e)
            );
        }
        (Some(e), None) => {
            let _ = write!(o, "<span class=\"muted\">(recovered) {}</span>", esc(e));
        }
        (None, _) => o.push_str("<span class=\"muted\">none</span>"),
    }
    o.push_str("</td></tr>");
}

/// A 160×36 line plot of `value` ending at `now`, over the last [`WINDOW`] or since the
/// first sample when that is more recent (a process started ten minutes ago plots ten
/// minutes across the width, at least one), scaled to its maximum, with the latest value
/// and the maximum written beside it.
fn plot(o: &mut String, samples: &[Sample], now: i64, value: impl Fn(&Sample) -> f64, unit: &str) {
    const W: f64 = 160.0;
    const H: f64 = 36.0;
    let first = samples.first().map_or(now, |s| s.unix_ms);
    let window = (now - first).clamp(60_000, WINDOW.as_millis() as i64) as f64;
    let max = samples.iter().map(&value).fold(0.0, f64::max);
    let top = if max > 0.0 { max } else { 1.0 };
    let last = samples.last().map_or(0.0, &value);
    let _ = write!(
        o,
        "<svg class=\"plot\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" role=\"img\">\
         <title>{} {unit} now, at most {} in the last {}</title><polyline points=\"",
        num(last),
        num(max),
        span_ms(window as i64)
    );
    for s in samples {
        let x = W * (1.0 - ((now - s.unix_ms) as f64 / window)).clamp(0.0, 1.0);
        let y = (H - 2.0) - (H - 4.0) * (value(s) / top).clamp(0.0, 1.0);
        let _ = write!(o, "{x:.1},{y:.1} ");
    }
    let _ = write!(
        o,
        "\"/></svg><div class=\"val\">now {} · max {} · {}</div>",
        num(last),
        num(max),
        span_ms(window as i64)
    );
}

/// A figure for a plot's label: whole from 100 up, else to one decimal place (two below 1).
fn num(x: f64) -> String {
    if (x.fract() == 0.0 && x.abs() < 1e15) || x.abs() >= 100.0 {
        format!("{x:.0}")
    } else if x.abs() < 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.1}")
    }
}

fn bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// `3 s`, `4 min`, `2 h 5 min`, `3 d`.
fn span_ms(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        _ if ms < 1000 => format!("{} ms", ms.max(0)),
        0..=119 => format!("{s} s"),
        120..=7199 => format!("{} min", s / 60),
        7200..=172_799 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d", s / 86_400),
    }
}

fn ago(t: Option<i64>, now: i64) -> String {
    match t {
        None => "never".into(),
        Some(t) => format!(
            "<span title=\"{} UTC\">{} ago</span>",
            clock(t),
            span_ms(now - t)
        ),
    }
}

/// `2026-12-07 06:55:32`.
fn clock(unix_ms: i64) -> String {
    jiff::Timestamp::from_millisecond(unix_ms)
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|_| unix_ms.to_string())
}

/// `s` safe in HTML text and in a double-quoted attribute.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::replicate::report::DbCounters;
    use engine::replicate::status::DrillStatus;

    const NOW: i64 = 1_700_000_060_000;

    fn replica(name: &str, failing: bool, lag_seconds: f64) -> ReplicaReport {
        ReplicaReport {
            name: name.into(),
            replica_type: "s3".into(),
            replicated_txid: Some(40),
            lag_txids: 2,
            lag_seconds,
            last_upload_unix_ms: Some(NOW - 5_000),
            failing_since_unix_ms: failing.then_some(NOW - 30_000),
            last_error: failing.then(|| "connection refused <to> \"b\" & co".into()),
            ..Default::default()
        }
    }

    fn report() -> Report {
        Report {
            taken_unix_ms: NOW,
            source: "daemon".into(),
            databases: vec![
                DbReport {
                    db: "/d/<a>.db".into(),
                    local_txid: 42,
                    wal_size_bytes: Some(4 << 20),
                    last_capture_unix_ms: Some(NOW - 1000),
                    counters: Some(DbCounters::default()),
                    replicas: vec![
                        replica("s3", true, 12.0),
                        ReplicaReport {
                            drill: Some(DrillStatus {
                                last_run_unix_ms: NOW - 120_000,
                                ok: true,
                                restore_duration_ms: 350,
                                rpo_ms: 1500,
                                ..Default::default()
                            }),
                            ..replica("file", false, 0.0)
                        },
                    ],
                    ..Default::default()
                },
                DbReport {
                    db: "/d/b.db".into(),
                    replicas: vec![replica("slow", false, 600.0)],
                    ..Default::default()
                },
            ],
        }
    }

    #[test]
    fn states_and_colours() {
        let r = report();
        let states: Vec<_> = r.databases.iter().map(State::of_db).collect();
        assert_eq!(states, [State::Failing, State::Behind]);
        let page = render(&r, &[], &History::new());
        assert!(page.contains("<body data-state=\"failing\">"), "{page}");
        assert!(page
            .contains("<section class=\"db\" data-db=\"/d/&lt;a&gt;.db\" data-state=\"failing\">"));
        assert!(page.contains("<tr class=\"replica\" data-replica=\"s3\" data-state=\"failing\">"));
        assert!(
            page.contains("<tr class=\"replica\" data-replica=\"file\" data-state=\"current\">")
        );
        assert!(page.contains("<tr class=\"replica\" data-replica=\"slow\" data-state=\"behind\">"));
        assert!(page.contains("1 failing, 1 behind"));
        // The error, escaped, with how long it has lasted.
        assert!(page.contains(
            "failing since <span title=\"2023-11-14 22:13:50 UTC\">30 s ago</span>: connection refused &lt;to&gt; &quot;b&quot; &amp; co"
        ), "{page}");
        assert!(page.contains("passed <span title=\"2023-11-14 22:12:20 UTC\">2 min ago</span> · RTO 350 ms · RPO 1 s"));
        assert!(page.contains("Lease: none configured."));
        // Self-contained: nothing is fetched from elsewhere, and it reloads itself.
        assert!(!page.contains("<script") && !page.contains("src=") && !page.contains("http://"));
        assert!(page.contains("<meta http-equiv=\"refresh\" content=\"5\">"));
    }

    #[test]
    fn plots_span_the_last_hour() {
        let h = History::new();
        let mut r = report();
        // Samples 60 and 30 minutes ago, then the report's own figures now.
        for (ago_ms, lag) in [(3_600_000, 10), (1_800_000, 5)] {
            let mut old = r.clone();
            old.taken_unix_ms = NOW - ago_ms;
            old.databases[0].replicas[0].lag_txids = lag;
            h.record(&old);
        }
        r.databases[0].replicas[0].lag_txids = 0;
        let page = render(&r, &[], &h);
        // x runs 0..160 over the hour; y from 34 (zero) up to 2 (the maximum).
        assert!(
            page.contains("<title>0 transactions now, at most 10 in the last 60 min</title><polyline points=\"0.0,2.0 80.0,18.0 160.0,34.0 \"/>"),
            "{page}"
        );
    }

    #[test]
    fn a_young_history_spans_the_width() {
        let h = History::new();
        let mut old = report();
        old.taken_unix_ms = NOW - 600_000;
        old.databases[0].replicas[0].lag_txids = 4;
        h.record(&old);
        let page = render(&report(), &[], &h);
        assert!(
            page.contains("<title>2 transactions now, at most 4 in the last 10 min</title><polyline points=\"0.0,2.0 160.0,18.0 \"/>"),
            "{page}"
        );
    }

    #[test]
    fn lease_lines() {
        let mut o = String::new();
        let held = LeaseView {
            role: Some(Role::Standby),
            holder: "db1".into(),
            epoch: 3,
            expires_at_ms: NOW + 12_000,
            applied_txid: 41,
            lag_ms: 1500,
        };
        lease(&mut o, &held, NOW);
        assert_eq!(
            o,
            "Lease: held by <b>db1</b>, epoch 3, expires in 12 s (this process is a standby). Standby copy at TXID 0000000000000029, 1 s behind."
        );
        o.clear();
        lease(
            &mut o,
            &LeaseView {
                role: Some(Role::Waiting),
                expires_at_ms: NOW - 1,
                ..held
            },
            NOW,
        );
        assert_eq!(
            o,
            "Lease: <span class=\"error\">no holder</span> (epoch 3; this process waits for it)."
        );
    }
}
