//! The replica a URL on the command line names (`restore`, `ltx` and `verify` take a
//! `REPLICA_URL`), with every setting it needs. One rule for every command, so a replica
//! gets the same endpoint and credentials however it is named: by its database's path,
//! by a bare URL, or by a URL with a query (parity issue 18: `restore -config FILE
//! s3://bucket/path` missed the config's top-level keys and got HTTP 403).
//!
//! The rule, setting by setting: the URL's own parts (bucket, path, query) first; then
//! the configured replica at the same location, if there is one (its keys, its URL and
//! the top-level defaults, as `build.rs` merged them), else the config's top-level
//! defaults; then the environment (`AWS_*`, `LITESTREAM_*`). The same location: the
//! same type, bucket (container, SFTP host) and path, and the same endpoint (ABS
//! account) when the URL gives one; a replica of a `dir:` entry also holds the locations
//! under its path (one per database found there).
//!
//! Fed by the commands through `setup.rs`; feeds `build_store`. No I/O, apart from
//! making a relative file path absolute as `build.rs` does for the config's paths.

use serde_norway::Value;

use super::build::{local_path, make_kind, Env};
use super::error::{ConfigError, ErrorKind};
use super::settings::{settings_from_url, Settings};
use super::types::{Config, DbSource, ReplicaConfig, ReplicaKind};
use super::url::{parse_url, redact_url};
use super::yaml::Map;

/// The replica `url` names, with settings from `cfg` (when given) and `env`. The
/// commands use [`resolve_replica_url_keys`]; the unit tests and the fuzz target this.
#[allow(dead_code)]
pub fn resolve_replica_url(
    cfg: Option<&Config>,
    url: &str,
    env: Env<'_>,
) -> Result<ReplicaKind, ConfigError> {
    resolve_replica_url_keys(cfg, url, env).map(|(kind, _)| kind)
}

/// [`resolve_replica_url`], with the replica's age keys by the same rule (the configured
/// replica's, else the top-level ones), so an encrypted replica named by URL decrypts.
pub fn resolve_replica_url_keys(
    cfg: Option<&Config>,
    url: &str,
    env: Env<'_>,
) -> Result<(ReplicaKind, Option<super::age::AgeConfig>), ConfigError> {
    let bad = |reason: String| {
        ConfigError::new(
            "",
            ErrorKind::BadUrl {
                url: redact_url(url),
                reason,
            },
        )
    };
    let parsed = parse_url(url)?;
    let (from_url, path) = settings_from_url(&parsed, url, "")?;
    let wanted = Location::of_url(parsed.replica_type, &from_url, &path, env);
    let mut s = from_url;
    match cfg.and_then(|c| configured_at(c, &wanted)) {
        Some(r) => s.fill_from(&r.settings),
        None => {
            if let Some(c) = cfg {
                s.fill_from(&c.replica_defaults);
            }
        }
    }
    let empty = Value::Null;
    let m = Map::new(&empty, "")?;
    let age = s.age.clone();
    make_kind(
        parsed.replica_type,
        Some(path).filter(|p| !p.is_empty()),
        s,
        env,
        &m,
    )
    .map(|kind| (kind, age))
    .map_err(|e| match e.kind() {
        ErrorKind::Invalid(why) => bad(why.clone()),
        _ => e,
    })
}

/// The configured replica at `wanted`: one whose location is the same, else the first
/// `dir:` entry's replica whose location holds it.
fn configured_at<'c>(cfg: &'c Config, wanted: &Location) -> Option<&'c ReplicaConfig> {
    let all = || {
        cfg.dbs.iter().flat_map(|db| {
            let dir = matches!(db.source, DbSource::Dir { .. });
            db.replicas.iter().map(move |r| (dir, r))
        })
    };
    all()
        .find(|(_, r)| Location::of_kind(&r.kind).is(wanted, false))
        .or_else(|| all().find(|(dir, r)| *dir && Location::of_kind(&r.kind).is(wanted, true)))
        .map(|(_, r)| r)
}

/// Where a replica's files are, as far as a URL says.
#[derive(Debug, PartialEq, Eq)]
struct Location {
    replica_type: &'static str,
    /// Bucket, container, SFTP host or WebDAV server URL; empty for files.
    bucket: String,
    /// Key prefix, remote directory, or local directory; no trailing `/`.
    path: String,
    /// S3 or ABS endpoint; for a URL, only when it names one.
    endpoint: Option<String>,
    /// ABS account; for a URL, only when it names one.
    account: Option<String>,
}

impl Location {
    fn of_url(replica_type: &'static str, s: &Settings, path: &str, env: Env<'_>) -> Location {
        let (bucket, path) = match replica_type {
            "file" => (String::new(), local_path(path, env).display().to_string()),
            "sftp" => (s.host.clone().unwrap_or_default(), path.to_string()),
            "webdav" => (s.webdav_url.clone().unwrap_or_default(), path.to_string()),
            _ => (s.bucket.clone().unwrap_or_default(), path.to_string()),
        };
        Location {
            replica_type,
            bucket,
            path: path.trim_end_matches('/').to_string(),
            endpoint: s.endpoint.as_deref().map(endpoint_key),
            account: s.account_name.clone(),
        }
    }

    fn of_kind(kind: &ReplicaKind) -> Location {
        let (bucket, path, endpoint, account) = match kind {
            ReplicaKind::File { path } => (String::new(), path.display().to_string(), None, None),
            ReplicaKind::S3(c) => (c.bucket.clone(), c.path.clone(), c.endpoint.clone(), None),
            ReplicaKind::Gcs(c) => (c.bucket.clone(), c.path.clone(), None, None),
            ReplicaKind::Abs(c) => (
                c.bucket.clone(),
                c.path.clone(),
                c.endpoint.clone(),
                c.account_name.clone(),
            ),
            ReplicaKind::Sftp(c) => (c.host.clone(), c.path.clone(), None, None),
            ReplicaKind::WebDav(c) => (c.url.clone(), c.path.clone(), None, None),
            ReplicaKind::Nats(c) => (c.bucket.clone(), c.path.clone(), None, None),
        };
        Location {
            replica_type: kind.type_name(),
            bucket,
            path: path.trim_end_matches('/').to_string(),
            endpoint: endpoint.as_deref().map(endpoint_key),
            account,
        }
    }

    /// Whether this (configured) location is `wanted` (a URL's), or with `or_under`
    /// holds it: `wanted`'s path is below this one's.
    fn is(&self, wanted: &Location, or_under: bool) -> bool {
        let path = self.path == wanted.path
            || (or_under
                && (self.path.is_empty() || wanted.path.starts_with(&format!("{}/", self.path))));
        self.replica_type == wanted.replica_type
            && self.bucket == wanted.bucket
            && path
            && (wanted.endpoint.is_none() || self.endpoint == wanted.endpoint)
            && (wanted.account.is_none() || self.account == wanted.account)
    }
}

/// An endpoint for comparing: scheme and host are case-insensitive, a trailing `/` is
/// not a difference.
fn endpoint_key(e: &str) -> String {
    e.trim_end_matches('/').to_ascii_lowercase()
}
