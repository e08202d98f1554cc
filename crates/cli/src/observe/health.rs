//! `/healthz`'s decision, a pure function of a [`Report`]: healthy unless a database's
//! captures or a replica's uploads have been failing for at least `health-failing-after`.
//! A short failure (one refused request, a server restart) is not an outage; retries
//! cover it.

use std::time::Duration;

use engine::replicate::report::Report;

/// `Err` lists one reason per failing database or replica.
pub fn check(r: &Report, failing_after: Duration) -> Result<(), String> {
    let limit = failing_after.as_millis() as i64;
    let mut reasons = Vec::new();
    let long = |since: Option<i64>| since.map(|t| r.taken_unix_ms - t).filter(|&d| d >= limit);
    for d in &r.databases {
        if let Some(ms) = long(d.failing_since_unix_ms) {
            reasons.push(format!(
                "database {}: failing for {}s: {}",
                d.db,
                ms / 1000,
                d.last_error.as_deref().unwrap_or("unknown error")
            ));
        }
        for rep in &d.replicas {
            if let Some(ms) = long(rep.failing_since_unix_ms) {
                reasons.push(format!(
                    "database {} replica {}: uploads failing for {}s: {}",
                    d.db,
                    rep.name,
                    ms / 1000,
                    rep.last_error.as_deref().unwrap_or("unknown error")
                ));
            }
        }
    }
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(reasons.join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::replicate::report::{DbReport, ReplicaReport};

    fn report(db_since: Option<i64>, replica_since: Option<i64>) -> Report {
        Report {
            taken_unix_ms: 100_000,
            source: "daemon".into(),
            databases: vec![DbReport {
                db: "/a.db".into(),
                failing_since_unix_ms: db_since,
                last_error: db_since.map(|_| "disk I/O error".into()),
                replicas: vec![ReplicaReport {
                    name: "s3".into(),
                    failing_since_unix_ms: replica_since,
                    last_error: replica_since.map(|_| "connection refused".into()),
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    #[test]
    fn healthy_until_a_failure_lasts() {
        let m = Duration::from_secs(60);
        // (what, database failing since, replica failing since, verdict)
        type Case<'a> = (&'a str, Option<i64>, Option<i64>, Result<(), &'a str>);
        let cases: &[Case<'_>] = &[
            ("all well", None, None, Ok(())),
            ("replica failing briefly", None, Some(50_000), Ok(())),
            (
                "replica failing for exactly the limit",
                None,
                Some(40_000),
                Err("database /a.db replica s3: uploads failing for 60s: connection refused"),
            ),
            (
                "database and replica",
                Some(0),
                Some(10_000),
                Err("database /a.db: failing for 100s: disk I/O error\ndatabase /a.db replica s3: uploads failing for 90s: connection refused"),
            ),
        ];
        for (what, db, rep, want) in cases {
            assert_eq!(
                check(&report(*db, *rep), m),
                want.map_err(str::to_string),
                "{what}"
            );
        }
    }
}
