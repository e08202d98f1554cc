//! From the YAML tree to a validated [`Config`]: the checks of each section, defaults,
//! the merging of top-level replica defaults, URL parts and per-replica keys, and the
//! checks across databases (duplicates, shared replica locations).
//!
//! Precedence for a replica setting: the replica's own key, then its URL (host, path,
//! query), then the top-level default, then the environment (credentials, endpoint).
//! Litestream lets a top-level default beat the URL; a URL written for one replica is
//! more specific, so here it wins.

use engine::defaults;
use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use serde_norway::Value;

use super::envdefaults::EnvDefaults;
use super::error::{ConfigError, ErrorKind};
use super::glob::validate_pattern;
use super::nats::NATS_KEYS;
use super::secret::Secret;
use super::settings::*;
use super::types::*;
use super::url::{ensure_endpoint_scheme, parse_url, redact_url, ParsedUrl};
use super::yaml::{child, invalid, Elsewhere, Map};

pub(crate) use super::envdefaults::Env;

pub(crate) const SUPPORTED_TYPES: &str = "file, s3, gs, abs, sftp, webdav, oss, nats";
const MAX_LEVELS: usize = 8;

const fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// The whole config from the parsed YAML.
pub(crate) fn build(root: &Value, env: Env<'_>) -> Result<Config, ConfigError> {
    let top = Map::new(root, "")?.without_extensions();
    top.check_keys(
        &[TOP_KEYS, SETTINGS_KEYS, NATS_KEYS],
        &[
            Elsewhere {
                keys: DB_KEYS,
                note: "it is a database key: put it in an entry of `dbs:`",
            },
            Elsewhere {
                keys: REPLICA_KEYS,
                note: "it is a replica key: put it under `replica:` in an entry of `dbs:`",
            },
        ],
    )?;
    let from_env = EnvDefaults::read(env)?;
    let defaults = replica_defaults(&top, &from_env)?;
    let mut warnings = Vec::new();
    let snapshot = build_snapshot(&top, &from_env)?;
    let levels = build_levels(&top)?;
    let retention_enabled = match top.map("retention")? {
        None => true,
        Some(m) => {
            m.check_keys(&[&["enabled"]], &[])?;
            m.bool("enabled")?.unwrap_or(true)
        }
    };

    let mut dbs = Vec::new();
    for (path, v) in top.seq("dbs")?.unwrap_or_default() {
        dbs.push(build_db(
            v,
            &path,
            &snapshot,
            &defaults,
            env,
            &mut warnings,
        )?);
    }
    check_across_dbs(&dbs)?;
    let drill_interval = positive(&top, "drill-interval")?;
    for db in &mut dbs {
        db.drill_interval = db.drill_interval.or(drill_interval);
    }

    let heartbeat = build_heartbeat(&top, &mut warnings)?;
    let notify_url = build_notify_url(&top)?;

    Ok(Config {
        dbs,
        addr: top.string("addr")?,
        mcp_addr: build_mcp_addr(&top)?,
        health_failing_after: positive(&top, "health-failing-after")?.unwrap_or(secs(60)),
        socket: build_socket(&top)?,
        levels,
        snapshot,
        l0_retention: top
            .duration("l0-retention")?
            .unwrap_or(defaults::L0_RETENTION),
        l0_retention_check_interval: positive(&top, "l0-retention-check-interval")?
            .unwrap_or(defaults::L0_RETENTION_CHECK_INTERVAL),
        retention_enabled,
        exec: top.string("exec")?,
        logging: build_logging(&top, env)?,
        shutdown_sync_timeout: top
            .duration("shutdown-sync-timeout")?
            .unwrap_or(defaults::SHUTDOWN_SYNC_TIMEOUT),
        shutdown_sync_interval: positive(&top, "shutdown-sync-interval")?
            .unwrap_or(defaults::SHUTDOWN_SYNC_INTERVAL),
        heartbeat,
        verify_compaction: top.bool("verify-compaction")?.unwrap_or(false),
        notify_url,
        warnings,
        replica_defaults: defaults,
    })
}

/// The replica settings at the top level: every replica's defaults. `validation:
/// {interval}` (Litestream's global setting) stands for `validation-interval` below a
/// top-level `validation-interval`; the environment's durations come below every key of
/// the file and above the built-in defaults.
fn replica_defaults(top: &Map<'_>, from_env: &EnvDefaults) -> Result<Settings, ConfigError> {
    let mut defaults = Settings::read(top)?;
    if let Some(m) = top.map("validation")? {
        m.check_keys(&[&["interval"]], &[])?;
        defaults.validation_interval = defaults.validation_interval.or(m.duration("interval")?);
    }
    defaults.sync_interval = defaults.sync_interval.or(from_env.sync_interval);
    defaults.validation_interval = defaults
        .validation_interval
        .or(from_env.validation_interval);
    Ok(defaults)
}

/// `snapshot:` (interval and retention; default 24h each, or the environment's).
fn build_snapshot(top: &Map<'_>, from_env: &EnvDefaults) -> Result<SnapshotConfig, ConfigError> {
    let interval = from_env
        .snapshot_interval
        .unwrap_or(defaults::SNAPSHOT_INTERVAL);
    let retention = from_env.retention.unwrap_or(defaults::SNAPSHOT_RETENTION);
    Ok(match top.map("snapshot")? {
        None => SnapshotConfig {
            interval,
            retention,
        },
        Some(m) => {
            m.check_keys(&[&["interval", "retention"]], &[])?;
            SnapshotConfig {
                interval: positive(&m, "interval")?.unwrap_or(interval),
                retention: positive(&m, "retention")?.unwrap_or(retention),
            }
        }
    })
}

/// `levels[].interval`: the compaction intervals of L1, L2, ... (default 30s, 5m, 1h).
fn build_levels(top: &Map<'_>) -> Result<Vec<Duration>, ConfigError> {
    Ok(match top.seq("levels")? {
        None => defaults::LEVEL_INTERVALS.to_vec(),
        Some(items) => {
            if items.len() > MAX_LEVELS {
                return Err(ConfigError::new(
                    "levels",
                    ErrorKind::Invalid(format!(
                        "at most {MAX_LEVELS} levels (L1..L8; L9 is the snapshot level)"
                    )),
                ));
            }
            let mut out = Vec::new();
            for (path, v) in items {
                let m = Map::new(v, &path)?;
                m.check_keys(&[&["interval"]], &[])?;
                let d = positive(&m, "interval")?.ok_or_else(|| {
                    ConfigError::new(&path, ErrorKind::Invalid("`interval` is required".into()))
                })?;
                out.push(d);
            }
            out
        }
    })
}

/// `mcp-addr`: `HOST:PORT`, `[IPv6]:PORT` or `:PORT` (Go's listen address), checked here
/// so a typo stops the start with the key's name rather than when binding.
fn build_mcp_addr(top: &Map<'_>) -> Result<Option<String>, ConfigError> {
    let Some(addr) = top.string("mcp-addr")? else {
        return Ok(None);
    };
    match check_listen_addr(&addr) {
        Ok(()) => Ok(Some(addr)),
        Err(why) => Err(ConfigError::new(
            top.key_path("mcp-addr"),
            ErrorKind::Invalid(format!(
                "{addr:?} is not an address to listen on ({why}): expected HOST:PORT or :PORT, e.g. 127.0.0.1:3001"
            )),
        )),
    }
}

/// Why `addr` is not `HOST:PORT` / `[IPv6]:PORT` / `:PORT` with a port of 0-65535.
pub(crate) fn check_listen_addr(addr: &str) -> Result<(), &'static str> {
    let (host, port) = if let Some(rest) = addr.strip_prefix('[') {
        let (v6, after) = rest.split_once(']').ok_or("`[` without `]`")?;
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return Err("the bracketed host is not an IPv6 address");
        }
        let port = after
            .strip_prefix(':')
            .ok_or("no `:PORT` after the IPv6 address")?;
        (None, port)
    } else {
        let (host, port) = addr.rsplit_once(':').ok_or("no `:PORT`")?;
        (Some(host), port)
    };
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) || port.parse::<u16>().is_err()
    {
        return Err("the port is not a number from 0 to 65535");
    }
    if let Some(host) = host {
        let ok = |c: char| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_';
        if !host.chars().all(ok) {
            return Err("the host is not a name or an IPv4 address (IPv6 goes in brackets)");
        }
    }
    Ok(())
}

/// `heartbeat-url` and `heartbeat-interval`, checked as Litestream's config does: the URL
/// must start with `http://` or `https://`, the interval must be at least a minute. The
/// URL never appears in an error: it may carry a token.
fn build_heartbeat(
    top: &Map<'_>,
    warnings: &mut Vec<String>,
) -> Result<Option<HeartbeatConfig>, ConfigError> {
    let interval = top.duration("heartbeat-interval")?;
    if let Some(d) = interval.filter(|d| *d < HeartbeatConfig::MIN_INTERVAL) {
        return Err(ConfigError::new(
            top.key_path("heartbeat-interval"),
            ErrorKind::Invalid(format!(
                "{} is too short: the heartbeat interval must be at least 1m (as in Litestream)",
                super::format_duration(d)
            )),
        ));
    }
    let Some(url) = top.secret("heartbeat-url")? else {
        if interval.is_some() {
            warnings.push(format!(
                "{}: no effect without `heartbeat-url`",
                top.key_path("heartbeat-interval")
            ));
        }
        return Ok(None);
    };
    if let Err(why) = check_heartbeat_url(url.expose()) {
        return Err(ConfigError::new(
            top.key_path("heartbeat-url"),
            ErrorKind::Invalid(format!(
                "must be an http:// or https:// URL with a host ({why}; the value is not shown: it may carry a token)"
            )),
        ));
    }
    Ok(Some(HeartbeatConfig {
        url,
        interval: interval.unwrap_or(HeartbeatConfig::DEFAULT_INTERVAL),
    }))
}

/// `notify-url`: checked as `heartbeat-url` (http or https, with a host); never quoted.
fn build_notify_url(top: &Map<'_>) -> Result<Option<Secret>, ConfigError> {
    let Some(url) = top.secret("notify-url")? else {
        return Ok(None);
    };
    if let Err(why) = check_heartbeat_url(url.expose()) {
        return Err(ConfigError::new(
            top.key_path("notify-url"),
            ErrorKind::Invalid(format!(
                "must be an http:// or https:// URL with a host ({why}; the value is not shown: it may carry a token)"
            )),
        ));
    }
    Ok(Some(url))
}

/// Why `u` is not a URL a heartbeat can be sent to; the reason never quotes `u`.
fn check_heartbeat_url(u: &str) -> Result<(), &'static str> {
    let lower = u.get(..8).unwrap_or(u).to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) {
        return Err("the scheme is not http or https");
    }
    // Checked by hand rather than with a URL crate: this module is also built into the
    // config fuzz target, which has only the parser's own dependencies. The request
    // itself (`heartbeat.rs`) parses the URL fully and reports what it refuses.
    let bad = "it does not parse as a URL";
    if u.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad);
    }
    let rest = &u[u.find("://").map_or(0, |i| i + 3)..];
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit('@').next().unwrap_or("");
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        let (inside, after) = v6.split_once(']').ok_or(bad)?;
        if !(after.is_empty() || after.starts_with(':')) {
            return Err(bad);
        }
        inside
    } else {
        host_port.split(':').next().unwrap_or("")
    };
    if host.is_empty() {
        return Err(bad);
    }
    if let Some(port) = host_port.rsplit_once("]:").map(|p| p.1).or_else(|| {
        (!host_port.starts_with('['))
            .then(|| host_port.split_once(':').map(|p| p.1))
            .flatten()
    }) {
        if port.parse::<u16>().is_err() {
            return Err(bad);
        }
    }
    Ok(())
}

/// A duration that must be more than zero.
fn positive(m: &Map<'_>, key: &str) -> Result<Option<Duration>, ConfigError> {
    let d = m.duration(key)?;
    if d == Some(Duration::ZERO) {
        return Err(ConfigError::new(
            m.key_path(key),
            ErrorKind::Invalid("must be greater than 0".into()),
        ));
    }
    Ok(d)
}

fn build_logging(top: &Map<'_>, env: Env<'_>) -> Result<LoggingConfig, ConfigError> {
    let Some(m) = top.map("logging")? else {
        return Ok(LoggingConfig {
            level: env_log_level(env)?.unwrap_or_default(),
            json: false,
            stdout: false,
            source: false,
        });
    };
    m.check_keys(&[&["level", "type", "stderr", "source"]], &[])?;
    let level = match m.string("level")? {
        None => LogLevel::Info,
        Some(s) => LogLevel::parse(&s).ok_or_else(|| {
            invalid(
                &m.key_path("level"),
                m.get("level").unwrap_or(&Value::Null),
                "a log level (trace, debug, info, warn, error)",
                None,
            )
        })?,
    };
    let json = match m.string("type")?.as_deref() {
        None | Some("text") | Some("pretty") => false,
        Some("json") => true,
        Some(_) => {
            return Err(invalid(
                &m.key_path("type"),
                m.get("type").unwrap_or(&Value::Null),
                "a log type (text or json)",
                None,
            ));
        }
    };
    Ok(LoggingConfig {
        level: env_log_level(env)?.unwrap_or(level),
        json,
        stdout: m.bool("stderr")? == Some(false),
        source: m.bool("source")?.unwrap_or(false),
    })
}

/// `$LOG_LEVEL`, which overrides `logging.level` as in Litestream.
fn env_log_level(env: Env<'_>) -> Result<Option<LogLevel>, ConfigError> {
    match env("LOG_LEVEL").filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => LogLevel::parse(&v).map(Some).ok_or_else(|| {
            ConfigError::new(
                "$LOG_LEVEL",
                ErrorKind::InvalidValue {
                    value: format!("{v:?}"),
                    expected: "a log level (trace, debug, info, warn, error)".into(),
                    detail: None,
                },
            )
        }),
    }
}

/// `socket:`: the control socket `replicate` serves when enabled (`control/`).
fn build_socket(top: &Map<'_>) -> Result<SocketConfig, ConfigError> {
    let mut s = SocketConfig {
        enabled: false,
        path: PathBuf::from("/var/run/litestream.sock"),
        permissions: 0o600,
    };
    let Some(m) = top.map("socket")? else {
        return Ok(s);
    };
    m.check_keys(&[&["enabled", "path", "permissions"]], &[])?;
    s.enabled = m.bool("enabled")?.unwrap_or(false);
    if let Some(p) = m.string("path")? {
        s.path = PathBuf::from(p);
    }
    if let Some(v) = m.get("permissions") {
        // `0600` is octal, as in Go's YAML 1.1; YAML 1.2 reads it as a string, not 600.
        let mode = match v {
            Value::Number(n) => n.as_u64(),
            Value::String(t) => {
                let digits = t
                    .strip_prefix("0o")
                    .or_else(|| t.strip_prefix('0'))
                    .unwrap_or(t);
                u64::from_str_radix(digits, 8).ok()
            }
            _ => None,
        };
        // Permission bits only: set-id and sticky bits mean nothing on a socket, and a
        // decimal `600` (0o1130, a likely slip for 0600) is caught here.
        s.permissions = mode.filter(|&m| m <= 0o777).ok_or_else(|| {
            invalid(
                &m.key_path("permissions"),
                v,
                "file permissions (e.g. 0600)",
                None,
            )
        })? as u32;
    }
    Ok(s)
}

fn build_db(
    v: &Value,
    path: &str,
    top_snapshot: &SnapshotConfig,
    defaults: &Settings,
    env: Env<'_>,
    warnings: &mut Vec<String>,
) -> Result<DbConfig, ConfigError> {
    let m = Map::new(v, path)?;
    let replica_note = "it is a replica key: put it under `replica:`";
    m.check_keys(
        &[DB_KEYS, LEGACY_DB_KEYS],
        &[
            Elsewhere {
                keys: SETTINGS_KEYS,
                note: replica_note,
            },
            Elsewhere {
                keys: NATS_KEYS,
                note: replica_note,
            },
            Elsewhere {
                keys: REPLICA_KEYS,
                note: replica_note,
            },
            Elsewhere {
                keys: TOP_KEYS,
                note: "it is a top-level key, not a database key",
            },
        ],
    )?;
    for key in m.keys().filter(|k| LEGACY_DB_KEYS.contains(k)) {
        warnings.push(format!("{}: Litestream 0.3 key; ignored", m.key_path(key)));
    }
    let source = db_source(&m, path, env)?;
    let meta_path = match (m.string("meta-path")?, m.string("meta-dir")?) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(
                path,
                ErrorKind::Invalid("give `meta-path` or `meta-dir`, not both".into()),
            ));
        }
        (p, d) => p.or(d).map(|p| local_path(&p, env)),
    };
    let snapshot = match m.map("snapshot")? {
        None => None,
        Some(s) => {
            s.check_keys(&[&["interval", "retention"]], &[])?;
            Some(SnapshotConfig {
                interval: positive(&s, "interval")?.unwrap_or(top_snapshot.interval),
                retention: positive(&s, "retention")?.unwrap_or(top_snapshot.retention),
            })
        }
    };

    let lease = build_lease(&m)?;
    if lease.is_some() && matches!(source, DbSource::Dir { watch: true, .. }) {
        // A database found while running would replicate without taking its lease.
        return Err(ConfigError::new(
            m.key_path("watch"),
            ErrorKind::Invalid("`watch: true` cannot be combined with `lease:` (databases found while replicating would not take the lease); remove one".into()),
        ));
    }
    let replicas = build_replicas(&m, defaults, env, warnings)?;
    Ok(DbConfig {
        source,
        meta_path,
        replicas,
        monitor_interval: positive(&m, "monitor-interval")?,
        checkpoint_interval: m
            .duration("checkpoint-interval")?
            .unwrap_or(defaults::CHECKPOINT_INTERVAL),
        busy_timeout: m
            .duration("busy-timeout")?
            .unwrap_or(defaults::BUSY_TIMEOUT),
        min_checkpoint_page_count: m
            .u32("min-checkpoint-page-count")?
            .unwrap_or(defaults::MIN_CHECKPOINT_PAGES),
        truncate_page_n: match m.u32("truncate-page-n")? {
            None | Some(0) => defaults::TRUNCATE_PAGES,
            Some(n) => n,
        },
        max_sync_wal_bytes: m.size("max-sync-wal-bytes")?.filter(|n| *n > 0),
        restore_if_db_not_exists: m.bool("restore-if-db-not-exists")?.unwrap_or(false),
        snapshot,
        drill_interval: positive(&m, "drill-interval")?,
        lease,
    })
}

/// Where a `dbs:` entry's databases are: one `path`, or the files of a `dir` that match
/// `pattern` (with `recursive`, `watch`).
fn db_source(m: &Map<'_>, path: &str, env: Env<'_>) -> Result<DbSource, ConfigError> {
    Ok(match (m.string("path")?, m.string("dir")?) {
        (Some(_), Some(_)) => return Err(ConfigError::new(path, ErrorKind::PathAndDir)),
        (None, None) => return Err(ConfigError::new(path, ErrorKind::NoPathOrDir)),
        (Some(p), None) => {
            for key in ["pattern", "recursive", "watch", "meta-dir"] {
                if m.has(key) {
                    return Err(ConfigError::new(
                        m.key_path(key),
                        ErrorKind::Invalid(
                            "applies only to a directory (`dir:`), not to `path:`".into(),
                        ),
                    ));
                }
            }
            DbSource::Path(local_path(&p, env))
        }
        (None, Some(d)) => {
            let pattern = m
                .string("pattern")?
                .ok_or_else(|| ConfigError::new(path, ErrorKind::PatternRequired))?;
            validate_pattern(&pattern).map_err(|why| {
                invalid(
                    &m.key_path("pattern"),
                    m.get("pattern").unwrap_or(&Value::Null),
                    "a file name pattern (e.g. *.db)",
                    Some(why),
                )
            })?;
            DbSource::Dir {
                dir: local_path(&d, env),
                pattern,
                recursive: m.bool("recursive")?.unwrap_or(false),
                watch: m.bool("watch")?.unwrap_or(false),
            }
        }
    })
}

/// `lease:` of a database entry (the warm standby's lease), checked.
fn build_lease(m: &Map<'_>) -> Result<Option<LeaseConfig>, ConfigError> {
    Ok(match m.map("lease")? {
        None => None,
        Some(l) => {
            l.check_keys(&[&["ttl", "renew-interval", "owner", "auto-promote"]], &[])?;
            let ttl = positive(&l, "ttl")?.unwrap_or(defaults::LEASE_TTL);
            let renew_interval = positive(&l, "renew-interval")?.unwrap_or(ttl / 3);
            if renew_interval * 2 > ttl {
                return Err(ConfigError::new(
                    l.key_path("renew-interval"),
                    ErrorKind::Invalid("must be at most half of `ttl`".into()),
                ));
            }
            Some(LeaseConfig {
                ttl,
                renew_interval,
                owner: l.string("owner")?,
                auto_promote: l.bool("auto-promote")?.unwrap_or(false),
            })
        }
    })
}

/// `replica:` or `replicas:`, at least one, names unique.
fn build_replicas(
    db: &Map<'_>,
    defaults: &Settings,
    env: Env<'_>,
    warnings: &mut Vec<String>,
) -> Result<Vec<ReplicaConfig>, ConfigError> {
    let items: Vec<(String, &Value)> = match (db.get("replica"), db.get("replicas")) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(db.path(), ErrorKind::ReplicaAndReplicas))
        }
        (Some(v @ Value::Sequence(_)), None) => {
            return Err(invalid(
                &db.key_path("replica"),
                v,
                "a mapping (`key: value` lines)",
                Some("use `replicas:` for a list".into()),
            ));
        }
        (Some(v), None) => vec![(db.key_path("replica"), v)],
        (None, Some(v @ Value::Mapping(_))) => {
            return Err(invalid(
                &db.key_path("replicas"),
                v,
                "a list (`- ` items)",
                Some("use `replica:` for a single replica".into()),
            ));
        }
        (None, Some(_)) => db.seq("replicas")?.unwrap_or_default(),
        (None, None) => Vec::new(),
    };
    if items.is_empty() {
        return Err(ConfigError::new(db.path(), ErrorKind::NoReplica));
    }
    let mut out = Vec::new();
    let mut names: HashMap<String, String> = HashMap::new();
    for (path, v) in items {
        let r = build_replica(v, &path, defaults, env, warnings)?;
        let rel = path
            .strip_prefix(db.path())
            .unwrap_or(&path)
            .trim_start_matches('.')
            .to_string();
        if let Some(first) = names.insert(r.display_name().to_string(), rel.clone()) {
            return Err(ConfigError::new(
                db.path(),
                ErrorKind::DuplicateReplicaName {
                    name: r.display_name().to_string(),
                    first,
                    second: rel,
                },
            ));
        }
        out.push(r);
    }
    Ok(out)
}

fn build_replica(
    v: &Value,
    path: &str,
    defaults: &Settings,
    env: Env<'_>,
    warnings: &mut Vec<String>,
) -> Result<ReplicaConfig, ConfigError> {
    let m = Map::new(v, path)?;
    m.check_keys(
        &[REPLICA_KEYS, SETTINGS_KEYS, NATS_KEYS],
        &[Elsewhere {
            keys: DB_KEYS,
            note: "it is a database key: move it up one level, next to `path`",
        }],
    )?;
    let own = Settings::read(&m)?;
    let url = m.string("url")?;
    let parsed = url
        .as_deref()
        .map(parse_url)
        .transpose()
        .map_err(|e| e.at(&m.key_path("url")))?;
    let rtype = replica_type(&m, parsed.as_ref())?;

    let own_path = m.string("path")?;
    if let Some(p) = &own_path {
        if p.contains("://") {
            return Err(ConfigError::new(
                m.key_path("path"),
                ErrorKind::Invalid("is a URL; give it as `url:` instead".into()),
            ));
        }
    }
    if url.is_some() {
        let conflicts: &[&str] = match rtype {
            "s3" | "gs" | "abs" | "oss" | "nats" => &["path", "bucket"],
            "sftp" => &["path", "host"],
            "webdav" => &["path", "webdav-url"],
            _ => &["path"],
        };
        if let Some(key) = conflicts.iter().find(|k| m.has(k)) {
            return Err(ConfigError::new(
                m.key_path(key),
                ErrorKind::Invalid(format!(
                    "give the {key} either in `url` or as `{key}:`, not both"
                )),
            ));
        }
    }
    for key in m.keys() {
        if !applies(rtype, key) {
            warnings.push(format!(
                "{}: `{key}` does not apply to a {rtype} replica; ignored",
                m.path()
            ));
        } else if key == "retention-check-interval" {
            warnings.push(format!(
                "{}: Litestream 0.3 key; ignored (see l0-retention-check-interval)",
                m.key_path(key)
            ));
        }
    }

    let mut s = own;
    let mut url_path = None;
    if let Some(p) = &parsed {
        let (from_url, path) =
            settings_from_url(p, url.as_deref().unwrap_or_default(), &m.key_path("url"))?;
        s.fill_from(&from_url);
        url_path = Some(path);
    }
    s.fill_from(defaults);
    let kind = make_kind(rtype, own_path.or(url_path), s.clone(), env, &m)?;

    let sync_interval = s.sync_interval;
    if sync_interval == Some(Duration::ZERO) {
        return Err(ConfigError::new(
            m.key_path("sync-interval"),
            ErrorKind::Invalid("must be greater than 0".into()),
        ));
    }
    Ok(ReplicaConfig {
        name: m.string("name")?,
        kind,
        url,
        sync_interval,
        // Zero turns validation off (Litestream's meaning), e.g. for one replica when
        // the top level sets a default.
        validation_interval: s.validation_interval.filter(|d| !d.is_zero()),
        snapshot_interval: positive(&m, "snapshot-interval")?,
        retention: positive(&m, "retention")?,
        legacy_page_encoding: s.legacy_page_encoding.unwrap_or(false),
        auto_recover: s.auto_recover.unwrap_or(false),
        max_sync_ltx_files: s.max_sync_ltx_files.filter(|n| *n > 0),
        upload_budget: upload_budget(rtype, &s, &m)?,
        age: s.age.clone(),
        settings: s,
    })
}

/// `upload-rate` and `upload-burst` as merged, else the type's default: object stores
/// (S3, OSS, GCS, Azure, WebDAV, NATS: servers that may bill or throttle per request) get
/// `OBJECT_STORE_UPLOAD_RATE`, file and SFTP replicas no limit. A burst on a replica
/// whose rate is unlimited would do nothing: refused when the replica itself sets it (a
/// top-level one is a default for the replicas that have a rate).
fn upload_budget(
    rtype: &str,
    s: &Settings,
    m: &Map<'_>,
) -> Result<Option<UploadBudget>, ConfigError> {
    let object_store = !matches!(rtype, "file" | "sftp");
    let per_sec = match s.upload_rate {
        Some(r) => r,
        None if object_store => defaults::OBJECT_STORE_UPLOAD_RATE,
        None => 0.0,
    };
    if s.upload_burst == Some(0) {
        let at = if m.has("upload-burst") {
            m.key_path("upload-burst")
        } else {
            "upload-burst".to_string()
        };
        return Err(ConfigError::new(
            at,
            ErrorKind::Invalid("must be at least 1 (one upload)".into()),
        ));
    }
    if per_sec == 0.0 {
        if m.has("upload-burst") {
            let why = if s.upload_rate.is_some() {
                "upload-rate is 0 (unlimited)".to_string()
            } else {
                format!("a {rtype} replica has no upload-rate by default; set one")
            };
            return Err(ConfigError::new(
                m.key_path("upload-burst"),
                ErrorKind::Invalid(format!("has no effect: {why}")),
            ));
        }
        return Ok(None);
    }
    Ok(Some(UploadBudget {
        per_sec,
        burst: s.upload_burst.unwrap_or(defaults::UPLOAD_BURST),
    }))
}

/// From the URL scheme if there is a URL (a `type` must agree), else `type`, else file.
fn replica_type(m: &Map<'_>, url: Option<&ParsedUrl>) -> Result<&'static str, ConfigError> {
    let given = match m.string("type")? {
        None => None,
        Some(t) => Some(match t.to_ascii_lowercase().as_str() {
            "file" => "file",
            "s3" => "s3",
            "gs" | "gcs" => "gs",
            "abs" => "abs",
            "sftp" => "sftp",
            "webdav" => "webdav",
            "nats" => "nats",
            "oss" => "oss",
            _ => {
                let v = m.get("type").unwrap_or(&Value::Null);
                return Err(invalid(
                    &m.key_path("type"),
                    v,
                    &format!("a replica type ({SUPPORTED_TYPES})"),
                    None,
                ));
            }
        }),
    };
    let t = match (given, url) {
        (Some(t), Some(u)) if t != u.replica_type => {
            return Err(ConfigError::new(
                m.key_path("type"),
                ErrorKind::Invalid(format!(
                    "{t:?} does not match the {}:// URL in `url`",
                    u.replica_type
                )),
            ));
        }
        (_, Some(u)) => u.replica_type,
        (Some(t), None) => t,
        (None, None) => "file",
    };
    Ok(t)
}

/// The backend description from the merged settings; checks what each type requires.
pub(crate) fn make_kind(
    t: &str,
    path: Option<String>,
    s: Settings,
    env: Env<'_>,
    m: &Map<'_>,
) -> Result<ReplicaKind, ConfigError> {
    let need = |what: &str| {
        ConfigError::new(
            m.path(),
            ErrorKind::Invalid(format!("a {t} replica needs {what}")),
        )
    };
    let mut kind = match t {
        "file" => {
            let p = path.ok_or_else(|| need("`path` (or `url: file:///...`)"))?;
            ReplicaKind::File {
                path: local_path(&p, env),
            }
        }
        "s3" => {
            let bucket = s
                .bucket
                .ok_or_else(|| need("a bucket: `bucket:` or `url: s3://BUCKET/path`"))?;
            let endpoint = s
                .endpoint
                .or_else(|| env("LITESTREAM_S3_ENDPOINT").filter(|e| !e.is_empty()))
                .map(|e| ensure_endpoint_scheme(&e));
            if s.sse_customer_key.is_some() && s.sse_customer_key_path.is_some() {
                return Err(ConfigError::new(
                    m.path(),
                    ErrorKind::Invalid(
                        "give `sse-customer-key` or `sse-customer-key-path`, not both".into(),
                    ),
                ));
            }
            let sse_c = s.sse_customer_key.is_some() || s.sse_customer_key_path.is_some();
            ReplicaKind::S3(S3Config {
                bucket,
                path: clean_key_prefix(path.as_deref().unwrap_or_default()),
                force_path_style: s.force_path_style.unwrap_or(endpoint.is_some()),
                endpoint,
                region: s.region,
                access_key_id: s.access_key_id,
                secret_access_key: s.secret_access_key,
                skip_verify: s.skip_verify.unwrap_or(false),
                sse_customer_algorithm: s
                    .sse_customer_algorithm
                    .or_else(|| sse_c.then(|| "AES256".to_string())),
                sse_customer_key: s.sse_customer_key,
                sse_customer_key_path: s.sse_customer_key_path.map(|p| home(&p, env)),
                sse_kms_key_id: s.sse_kms_key_id,
                storage_class: s.storage_class,
                part_size: s.part_size,
                concurrency: s.concurrency,
                sign_payload: s.sign_payload,
                require_content_md5: s.require_content_md5,
                oss: false,
            })
        }
        "oss" => ReplicaKind::S3(oss_config(s, path, &need)?),
        "gs" => ReplicaKind::Gcs(GcsConfig {
            bucket: s
                .bucket
                .ok_or_else(|| need("a bucket: `bucket:` or `url: gs://BUCKET/path`"))?,
            path: clean_key_prefix(path.as_deref().unwrap_or_default()),
        }),
        "abs" => ReplicaKind::Abs(AbsConfig {
            account_name: s.account_name,
            account_key: s.account_key,
            sas_token: s.sas_token,
            bucket: s.bucket.ok_or_else(|| {
                need("a container: `bucket:` or `url: abs://[ACCOUNT@]CONTAINER/path`")
            })?,
            path: clean_key_prefix(path.as_deref().unwrap_or_default()),
            endpoint: s.endpoint,
        }),
        "sftp" => ReplicaKind::Sftp(SftpConfig {
            host: s
                .host
                .ok_or_else(|| need("a host: `host:` or `url: sftp://USER@HOST/path`"))?,
            user: s
                .user
                .ok_or_else(|| need("a user: `user:` or `url: sftp://USER@HOST/path`"))?,
            password: s.password,
            key_path: s.key_path.map(|p| home(&p, env)),
            key_passphrase: s.key_passphrase,
            host_key: s.host_key,
            path: path.unwrap_or_default(),
            concurrent_writes: s.concurrent_writes,
        }),
        "webdav" => ReplicaKind::WebDav(WebDavConfig {
            url: s.webdav_url.ok_or_else(|| {
                need(
                    "a server: `webdav-url: http(s)://HOST[:PORT]` or `url: webdav(s)://HOST/path`",
                )
            })?,
            username: s.webdav_username,
            password: s.webdav_password,
            path: path.unwrap_or_default(),
        }),
        "nats" => ReplicaKind::Nats(super::nats::make(
            super::nats::NatsParts {
                bucket: s.bucket.clone(),
                path: path.unwrap_or_default(),
                password: s.password.clone(),
            },
            &s.nats,
            m.path(),
            &|p| home(p, env),
        )?),
        other => unreachable!("replica type {other} was checked"),
    };
    kind.apply_env_defaults(env);
    Ok(kind)
}

/// Alibaba OSS through its S3-compatible API (Litestream's `oss` type and keys): the S3
/// client at `https://oss-REGION.aliyuncs.com` (or `endpoint`), virtual-hosted (OSS refuses
/// path-style requests), region `cn-hangzhou` unless given, the `HexLevel` layout and
/// `litestream-timestamp` metadata (OSS stores `x-amz-meta-*` as its `x-oss-meta-*`).
fn oss_config(
    s: Settings,
    path: Option<String>,
    need: &dyn Fn(&str) -> ConfigError,
) -> Result<S3Config, ConfigError> {
    let bucket = s
        .bucket
        .ok_or_else(|| need("a bucket: `bucket:` or `url: oss://BUCKET/path`"))?;
    let region = s.region.unwrap_or_else(|| "cn-hangzhou".to_string());
    let endpoint = match s.endpoint {
        Some(e) => ensure_endpoint_scheme(&e),
        None => format!("https://oss-{region}.aliyuncs.com"),
    };
    Ok(S3Config {
        bucket,
        path: clean_key_prefix(path.as_deref().unwrap_or_default()),
        endpoint: Some(endpoint),
        region: Some(region),
        force_path_style: false,
        access_key_id: s.access_key_id,
        secret_access_key: s.secret_access_key,
        part_size: s.part_size,
        concurrency: s.concurrency,
        oss: true,
        ..Default::default()
    })
}

/// A replica kind from a URL alone (the CLI's `replicate DB URL` and `restore URL`).
pub(crate) fn kind_from_url(url: &str) -> Result<ReplicaKind, ConfigError> {
    let parsed = parse_url(url)?;
    let (s, path) = settings_from_url(&parsed, url, "")?;
    let empty = Value::Null;
    let m = Map::new(&empty, "")?;
    let no_env = |_: &str| None;
    let mut kind = make_kind(
        parsed.replica_type,
        Some(path).filter(|p| !p.is_empty()),
        s,
        &no_env,
        &m,
    )
    .map_err(|e| match e.kind() {
        ErrorKind::Invalid(why) => ConfigError::new(
            "",
            ErrorKind::BadUrl {
                url: redact_url(url),
                reason: why.clone(),
            },
        ),
        _ => e,
    })?;
    // A bare or file path stays as written: no process state (cwd, $HOME) is read here.
    if let ReplicaKind::File { path: p } = &mut kind {
        *p = clean(Path::new(&parsed.path));
    }
    Ok(kind)
}

/// The checks that need every database: one config per path, one owner per replica location.
fn check_across_dbs(dbs: &[DbConfig]) -> Result<(), ConfigError> {
    let mut sources: HashMap<String, String> = HashMap::new();
    let mut metas: HashMap<PathBuf, String> = HashMap::new();
    let mut locations: HashMap<String, String> = HashMap::new();
    for (i, db) in dbs.iter().enumerate() {
        let at = format!("dbs[{i}]");
        let (key, shown) = match &db.source {
            DbSource::Path(p) => (format!("path:{}", p.display()), p.display().to_string()),
            DbSource::Dir { dir, pattern, .. } => (
                format!("dir:{}|{pattern}", dir.display()),
                format!("{} (pattern {pattern})", dir.display()),
            ),
        };
        if let Some(first) = sources.insert(key, at.clone()) {
            return Err(ConfigError::new(
                &at,
                ErrorKind::DuplicateDb { path: shown, first },
            ));
        }
        if let (Some(meta), DbSource::Path(_)) = (&db.meta_path, &db.source) {
            if let Some(first) = metas.insert(meta.clone(), at.clone()) {
                return Err(ConfigError::new(
                    child(&at, "meta-path"),
                    ErrorKind::Invalid(format!(
                        "{} is also the meta-path of {first}",
                        meta.display()
                    )),
                ));
            }
        }
        // Directory entries get a per-file suffix on their replica locations, so only
        // plain paths can collide here.
        if let DbSource::Path(_) = &db.source {
            for (j, r) in db.replicas.iter().enumerate() {
                let r_at = format!("{at}.replicas[{j}]");
                if let Some(first) = locations.insert(r.kind.location_key(), r_at.clone()) {
                    return Err(ConfigError::new(
                        &r_at,
                        ErrorKind::SharedReplicaLocation {
                            location: r.kind.describe(),
                            first,
                        },
                    ));
                }
            }
        }
    }
    Ok(())
}

/// A local path from the config: `sqlite://` prefix dropped, `~` expanded, made absolute
/// against the current directory (as Litestream does), and cleaned.
pub(crate) fn local_path(s: &str, env: Env<'_>) -> PathBuf {
    let s = s
        .strip_prefix("sqlite3://")
        .or_else(|| s.strip_prefix("sqlite://"))
        .unwrap_or(s);
    let p = home(s, env);
    let abs = std::path::absolute(&p).unwrap_or(p);
    clean(&abs)
}

/// `~` and `~/...` with `$HOME` (through `env`); other paths unchanged.
fn home(s: &str, env: Env<'_>) -> PathBuf {
    let home = || env("HOME").filter(|h| !h.is_empty());
    match s.strip_prefix('~') {
        Some("") => home()
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(s)),
        Some(rest) if rest.starts_with('/') => match home() {
            Some(h) => Path::new(&h).join(rest.trim_start_matches('/')),
            None => PathBuf::from(s),
        },
        _ => PathBuf::from(s),
    }
}

/// Lexical cleaning, like Go's `filepath.Clean`: no `.`, `..` folded, no trailing `/`.
pub(crate) fn clean(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if matches!(out.components().next_back(), Some(Component::Normal(_))) {
                    out.pop();
                } else if !out.has_root() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleans_paths_lexically() {
        let cases: &[(&str, &str)] = &[
            ("/a/b/../c", "/a/c"),
            ("/a/./b/", "/a/b"),
            ("/../a", "/a"),
            ("a/../../b", "../b"),
            ("", "."),
            ("//a//b", "/a/b"),
        ];
        for (p, want) in cases {
            assert_eq!(clean(Path::new(p)), PathBuf::from(want), "{p}");
        }
    }

    #[test]
    fn local_paths_expand_home_and_prefixes() {
        let env = |k: &str| (k == "HOME").then(|| "/home/me".to_string());
        let cases: &[(&str, &str)] = &[
            ("~/app.db", "/home/me/app.db"),
            ("~", "/home/me"),
            ("sqlite:///var/app.db", "/var/app.db"),
            ("sqlite3:///var/app.db", "/var/app.db"),
            ("/var/lib/../app.db", "/var/app.db"),
        ];
        for (p, want) in cases {
            assert_eq!(local_path(p, &env), PathBuf::from(want), "{p}");
        }
        assert!(local_path("relative.db", &env).is_absolute());
    }
}
