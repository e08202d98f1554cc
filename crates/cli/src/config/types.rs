//! The validated config: what the rest of the binary reads. Every default is already
//! applied (Litestream 0.5's unless noted), every duration is a `Duration`, and
//! credentials are [`Secret`]s that never print.
//!
//! Built by `build.rs` from the YAML; nothing here parses.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::secret::Secret;
use super::settings::Settings;
use super::url::redact_url;

/// The whole config file.
#[derive(Clone, Debug)]
pub struct Config {
    pub dbs: Vec<DbConfig>,
    /// `addr`: where to serve Prometheus metrics (`:9090`).
    pub addr: Option<String>,
    /// `mcp-addr`: where to serve MCP (Streamable HTTP) while replicating, checked to be
    /// `HOST:PORT` or `:PORT` (`mcp/`).
    pub mcp_addr: Option<String>,
    /// `health-failing-after` (ours): `/healthz` answers 503 once a replica's uploads (or
    /// a database's captures) have been failing this long. Default 1m.
    pub health_failing_after: Duration,
    /// `socket`: the control socket (`control/`), served by `replicate` when enabled.
    pub socket: SocketConfig,
    /// `levels[].interval`: compaction intervals of L1, L2, ... Default `[30s, 5m, 1h]`.
    pub levels: Vec<Duration>,
    /// `snapshot`: the level-9 snapshot schedule. Default 24h / 24h.
    pub snapshot: SnapshotConfig,
    /// `l0-retention`: how long L0 files outlive their compaction. Default 5m; 0 disables.
    pub l0_retention: Duration,
    /// `l0-retention-check-interval`. Default 15s.
    pub l0_retention_check_interval: Duration,
    /// `retention.enabled`: delete remote files past retention. Default true.
    pub retention_enabled: bool,
    /// `exec`: the child command to run while replicating.
    pub exec: Option<String>,
    pub logging: LoggingConfig,
    /// `shutdown-sync-timeout`: how long the final sync may retry. Default 30s.
    pub shutdown_sync_timeout: Duration,
    /// `shutdown-sync-interval`: the pause between retries of a failed upload during the
    /// final sync. Default 500ms; must be greater than 0 (as in Litestream).
    pub shutdown_sync_interval: Duration,
    /// `heartbeat-url` and `heartbeat-interval`: `None` without a URL.
    pub heartbeat: Option<HeartbeatConfig>,
    /// `verify-compaction`: every merged file is read back and checked against its
    /// inputs before it counts (`engine::replicate::compaction_check`). Default false.
    pub verify_compaction: bool,
    /// `notify-url` (ours): where failure and recovery events are POSTed (`notify.rs`).
    /// `None` without a URL (or an empty one).
    pub notify_url: Option<Secret>,
    /// Things that were accepted but have no effect (keys for another replica type,
    /// Litestream 0.3 keys), one line each with its key path, for the CLI to log.
    pub warnings: Vec<String>,
    /// The replica settings given at the top level: defaults for every replica, and for
    /// a replica named by URL on the command line (`resolve.rs`).
    pub(crate) replica_defaults: Settings,
}

/// `heartbeat-url` / `heartbeat-interval`: a GET to `url` at most once per `interval`,
/// while every database keeps syncing (`heartbeat.rs`).
#[derive(Clone, Debug)]
pub struct HeartbeatConfig {
    /// An `http://` or `https://` URL; it may carry a token, so it is a [`Secret`].
    pub url: Secret,
    /// At least [`HeartbeatConfig::MIN_INTERVAL`]. Default 5m.
    pub interval: Duration,
}

impl HeartbeatConfig {
    /// Litestream's `DefaultHeartbeatInterval`.
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(300);
    /// Litestream's `MinHeartbeatInterval`: its config refuses less.
    pub const MIN_INTERVAL: Duration = Duration::from_secs(60);
}

/// `snapshot:` at the top level or in a database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotConfig {
    pub interval: Duration,
    pub retention: Duration,
}

/// `socket:`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SocketConfig {
    pub enabled: bool,
    /// Default `/var/run/litestream.sock` (Litestream's, so its scripts find it).
    pub path: PathBuf,
    /// Unix mode bits. Default `0o600`.
    pub permissions: u32,
}

/// `logging:`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggingConfig {
    /// `level`, overridden by `$LOG_LEVEL`. Default info.
    pub level: LogLevel,
    /// `type: json` (else `text`; Litestream's `pretty` is read as text).
    pub json: bool,
    /// `stderr: false`: `replicate` and `standby` log to stdout (Litestream's default
    /// output). Default: stderr, so other commands' stdout carries only their results.
    pub stdout: bool,
    /// `source: true`: each line carries its source file and line. Default false.
    pub source: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum LogLevel {
    Trace,
    Debug,
    #[default]
    Info,
    Warn,
    Error,
}

impl LogLevel {
    /// Case-insensitive, `warning` for `warn`, as Litestream.
    pub fn parse(s: &str) -> Option<LogLevel> {
        Some(match s.to_ascii_lowercase().as_str() {
            "trace" => LogLevel::Trace,
            "debug" => LogLevel::Debug,
            "info" => LogLevel::Info,
            "warn" | "warning" => LogLevel::Warn,
            "error" => LogLevel::Error,
            _ => return None,
        })
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        })
    }
}

/// One entry of `dbs:`.
#[derive(Clone, Debug)]
pub struct DbConfig {
    pub source: DbSource,
    /// `meta-path`: the local state directory. For a [`DbSource::Dir`] entry it is the base
    /// (`meta-dir`/`meta-path`) under which each file gets `<reldir>/.<file>-sqlite-replicate`;
    /// see [`super::expand_dir_db`]. `None`: `.<file>-sqlite-replicate` beside the database.
    pub meta_path: Option<PathBuf>,
    /// One or more; names are unique within the database.
    pub replicas: Vec<ReplicaConfig>,
    /// `monitor-interval`: the safety poll of the WAL. `None`: the engine's default.
    pub monitor_interval: Option<Duration>,
    /// `checkpoint-interval`: time-based PASSIVE checkpoint. Default 1m; 0 disables.
    pub checkpoint_interval: Duration,
    /// `busy-timeout`. Default 1s.
    pub busy_timeout: Duration,
    /// `min-checkpoint-page-count`. Default 1000.
    pub min_checkpoint_page_count: u32,
    /// `truncate-page-n`: emergency TRUNCATE checkpoint once the WAL file holds this many
    /// pages. Default 121359 (as Litestream's: about 500 MB at 4 KiB pages); 0 is the
    /// default too (Litestream's meaning).
    pub truncate_page_n: u32,
    /// `max-sync-wal-bytes`: one L0 file covers at most about this many WAL bytes (cut
    /// at the first commit past it). `None`: no limit.
    pub max_sync_wal_bytes: Option<u64>,
    /// `restore-if-db-not-exists`.
    pub restore_if_db_not_exists: bool,
    /// `snapshot:` inside the database, with missing fields from the top level.
    pub snapshot: Option<SnapshotConfig>,
    /// `drill-interval` (ours) of this database, else the top-level one; `None`: no drills.
    pub drill_interval: Option<Duration>,
    /// `lease:` (ours): single-writer lease in the first replica; `None`: no lease.
    pub lease: Option<LeaseConfig>,
}

/// `lease:` in a database: `ttl` (default 10s), `renew-interval` (default a third of the
/// TTL), `owner` (default the host name), `auto-promote` (standby takes over when the
/// lease expires; default false).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseConfig {
    pub ttl: Duration,
    pub renew_interval: Duration,
    pub owner: Option<String>,
    pub auto_promote: bool,
}

/// Where a [`DbConfig`]'s databases are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DbSource {
    /// `path:`, absolute and cleaned (`~` and `sqlite://` prefixes resolved).
    Path(PathBuf),
    /// `dir:` with `pattern` (validated) and `recursive`; scanned when replication starts,
    /// and with `watch: true` kept under watch while it runs (new databases start, deleted
    /// ones stop: `engine::runtime::discover`).
    Dir {
        dir: PathBuf,
        pattern: String,
        recursive: bool,
        watch: bool,
    },
}

/// One replica of a database.
#[derive(Clone)]
pub struct ReplicaConfig {
    /// `name`; see [`ReplicaConfig::display_name`] for the default.
    pub name: Option<String>,
    pub kind: ReplicaKind,
    /// `url`, as written (after env expansion). May hold a password: print it with
    /// [`redact_url`].
    pub url: Option<String>,
    /// `sync-interval`: minimum time between uploads. `None`: the engine's pace.
    pub sync_interval: Option<Duration>,
    /// `validation-interval` (else the top-level one, else `validation.interval`): how
    /// often the replica's LTX history is checked for TXID gaps and overlaps. `None`:
    /// never (also when set to zero).
    pub validation_interval: Option<Duration>,
    /// `snapshot-interval` (Litestream 0.3 key): overrides the database/top-level one.
    pub snapshot_interval: Option<Duration>,
    /// `retention` (Litestream 0.3 key): overrides `snapshot.retention`.
    pub retention: Option<Duration>,
    /// `page-encoding: legacy` (ours): write LZ4 frames that Litestream 0.5.0–0.5.15 can
    /// restore. Default `block` (false).
    pub legacy_page_encoding: bool,
    /// `auto-recover` (replica, or top-level default): when the replica's history cannot
    /// be trusted, restart it from a new snapshot instead of failing. Default false.
    pub auto_recover: bool,
    /// `max-sync-ltx-files`: at most this many files uploaded back to back, then a pause
    /// of one `sync-interval`. `None` (or 0): no limit.
    pub max_sync_ltx_files: Option<u32>,
    /// `upload-rate` and `upload-burst` (replica, else top level, else the type's
    /// default: 1/s with a burst of 20 for object stores, unlimited for file, SFTP and WebDAV).
    /// `None`: unlimited.
    pub upload_budget: Option<UploadBudget>,
    /// `age` (replica, or top-level default): encrypt everything written to the replica
    /// with age, decrypt what is read (issue 24). `None`: plaintext.
    pub age: Option<super::age::AgeConfig>,
    /// The replica's settings as merged (its keys, its URL, the top-level defaults),
    /// before the environment: what a command-line URL naming this replica's location
    /// inherits (`resolve.rs`).
    pub(crate) settings: Settings,
}

/// A replica's request budget: a token bucket of `burst` refilled at `per_sec` uploads
/// a second (the engine's `replicate::budget`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct UploadBudget {
    pub per_sec: f64,
    pub burst: u32,
}

impl ReplicaConfig {
    /// `name`, else the type (`file`, `s3`, `gs`, `abs`, `sftp`). Two replicas of a
    /// database cannot share one, so two unnamed replicas of the same type need names.
    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or(self.kind.type_name())
    }
}

impl fmt::Debug for ReplicaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplicaConfig")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("url", &self.url.as_deref().map(redact_url))
            .field("sync_interval", &self.sync_interval)
            .field("validation_interval", &self.validation_interval)
            .field("snapshot_interval", &self.snapshot_interval)
            .field("retention", &self.retention)
            .field("legacy_page_encoding", &self.legacy_page_encoding)
            .field("auto_recover", &self.auto_recover)
            .field("max_sync_ltx_files", &self.max_sync_ltx_files)
            .field("age", &self.age.is_some())
            .finish()
    }
}

/// Where a replica lives, with the backend's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplicaKind {
    /// A directory (absolute).
    File {
        path: PathBuf,
    },
    S3(S3Config),
    Gcs(GcsConfig),
    Abs(AbsConfig),
    Sftp(SftpConfig),
    WebDav(WebDavConfig),
    Nats(super::nats::NatsConfig),
}

/// An S3-compatible bucket.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct S3Config {
    pub bucket: String,
    /// Key prefix, no leading `/`; may be empty.
    pub path: String,
    /// `endpoint` (with a scheme), else `$LITESTREAM_S3_ENDPOINT`; `None` is AWS.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// `force-path-style`; when not given, true exactly when an endpoint is set.
    pub force_path_style: bool,
    /// From the config, else `$AWS_ACCESS_KEY_ID`, else `$LITESTREAM_ACCESS_KEY_ID`.
    pub access_key_id: Option<Secret>,
    /// From the config, else `$AWS_SECRET_ACCESS_KEY`, else `$LITESTREAM_SECRET_ACCESS_KEY`.
    pub secret_access_key: Option<Secret>,
    pub skip_verify: bool,
    /// Defaults to `AES256` when a customer key is given.
    pub sse_customer_algorithm: Option<String>,
    pub sse_customer_key: Option<Secret>,
    /// Read by the backend, not here (parsing does no I/O).
    pub sse_customer_key_path: Option<PathBuf>,
    pub sse_kms_key_id: Option<String>,
    pub storage_class: Option<String>,
    pub part_size: Option<u64>,
    pub concurrency: Option<u32>,
    /// `None`: the backend decides (Litestream: true, per-provider defaults).
    pub sign_payload: Option<bool>,
    /// `require-content-md5` (Litestream's, default true): `Content-MD5` on DeleteObjects.
    /// `Some(false)`: no `Content-MD5` anywhere (deletes go one object per request).
    pub require_content_md5: Option<bool>,
    /// `type: oss`: Alibaba OSS through its S3-compatible API (virtual-hosted, keys from
    /// `OSS_ACCESS_KEY_ID`/`OSS_ACCESS_KEY_SECRET` rather than `AWS_*`).
    pub oss: bool,
}

/// A Google Cloud Storage bucket (credentials: Google ADC).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct GcsConfig {
    pub bucket: String,
    pub path: String,
}

/// An Azure Blob Storage container.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct AbsConfig {
    pub account_name: Option<String>,
    /// From the config, else `$LITESTREAM_AZURE_ACCOUNT_KEY`.
    pub account_key: Option<Secret>,
    /// From the config, else `$LITESTREAM_AZURE_SAS_TOKEN`.
    pub sas_token: Option<Secret>,
    /// The container (`bucket` in the config).
    pub bucket: String,
    pub path: String,
    pub endpoint: Option<String>,
}

/// A directory on an SFTP server.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct SftpConfig {
    /// `host` or `host:port`.
    pub host: String,
    pub user: String,
    /// The login password (Litestream's meaning); never opens the key.
    pub password: Option<Secret>,
    pub key_path: Option<PathBuf>,
    /// `key-passphrase` (ours): opens an encrypted `key_path`; never sent to the server.
    pub key_passphrase: Option<Secret>,
    pub host_key: Option<String>,
    /// Remote directory, as given (usually absolute).
    pub path: String,
    pub concurrent_writes: Option<bool>,
}

/// A collection on a WebDAV server (Litestream's `webdav` type).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct WebDavConfig {
    /// `webdav-url`: `http(s)://host[:port][/path]`, never with a login.
    pub url: String,
    /// `webdav-username`, or the user of a `webdav://USER@HOST/path` URL.
    pub username: Option<String>,
    /// `webdav-password`, or the password of the URL.
    pub password: Option<Secret>,
    /// The replica's collection under the URL's path, as given.
    pub path: String,
}

impl ReplicaKind {
    /// `file`, `s3`, `gs`, `abs`, `sftp` or `webdav`: the `type:` value, and the default name.
    pub fn type_name(&self) -> &'static str {
        match self {
            ReplicaKind::File { .. } => "file",
            ReplicaKind::S3(c) if c.oss => "oss",
            ReplicaKind::S3(_) => "s3",
            ReplicaKind::Gcs(_) => "gs",
            ReplicaKind::Abs(_) => "abs",
            ReplicaKind::Sftp(_) => "sftp",
            ReplicaKind::WebDav(_) => "webdav",
            ReplicaKind::Nats(_) => "nats",
        }
    }

    /// A URL for people: where the replica is, never a secret.
    pub fn describe(&self) -> String {
        match self {
            ReplicaKind::File { path } => format!("file://{}", path.display()),
            ReplicaKind::S3(c) => {
                let scheme = if c.oss { "oss" } else { "s3" };
                let mut s = format!("{scheme}://{}/{}", c.bucket, c.path);
                if let Some(e) = &c.endpoint {
                    s.push_str(&format!(" (endpoint {e})"));
                }
                s
            }
            ReplicaKind::Gcs(c) => format!("gs://{}/{}", c.bucket, c.path),
            ReplicaKind::Abs(c) => match &c.account_name {
                Some(a) => format!("abs://{a}@{}/{}", c.bucket, c.path),
                None => format!("abs://{}/{}", c.bucket, c.path),
            },
            ReplicaKind::Sftp(c) => format!(
                "sftp://{}@{}/{}",
                c.user,
                c.host,
                c.path.trim_start_matches('/')
            ),
            ReplicaKind::WebDav(c) => {
                let (tls, rest) = match c.url.split_once("://") {
                    Some((scheme, rest)) => (scheme.eq_ignore_ascii_case("https"), rest),
                    None => (false, c.url.as_str()),
                };
                format!(
                    "webdav{}://{}/{}",
                    if tls { "s" } else { "" },
                    rest.trim_end_matches('/'),
                    c.path.trim_start_matches('/')
                )
            }
            ReplicaKind::Nats(c) => {
                let server = c.server.as_deref().unwrap_or("nats://127.0.0.1:4222");
                match c.path.as_str() {
                    "" => format!("{server}/{}", c.bucket),
                    p => format!("{server}/{}/{p}", c.bucket),
                }
            }
        }
    }

    /// Fills what the config left unset from the environment, through `env`:
    /// S3 keys from `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, else the `LITESTREAM_`
    /// ones; the S3 endpoint from `LITESTREAM_S3_ENDPOINT`; ABS from
    /// `LITESTREAM_AZURE_ACCOUNT_KEY`/`LITESTREAM_AZURE_SAS_TOKEN`. `parse` calls it for
    /// every replica; call it yourself on a [`super::parse_replica_url`] result.
    pub fn apply_env_defaults(&mut self, env: &dyn Fn(&str) -> Option<String>) {
        let get = |names: &[&str]| names.iter().find_map(|n| env(n).filter(|v| !v.is_empty()));
        match self {
            ReplicaKind::S3(c) if c.oss => {
                // Alibaba's SDK names, as Litestream's oss client reads them.
                if c.access_key_id.is_none() {
                    c.access_key_id = get(&["OSS_ACCESS_KEY_ID"]).map(Secret::new);
                }
                if c.secret_access_key.is_none() {
                    c.secret_access_key = get(&["OSS_ACCESS_KEY_SECRET"]).map(Secret::new);
                }
            }
            ReplicaKind::S3(c) => {
                if c.access_key_id.is_none() {
                    c.access_key_id =
                        get(&["AWS_ACCESS_KEY_ID", "LITESTREAM_ACCESS_KEY_ID"]).map(Secret::new);
                }
                if c.secret_access_key.is_none() {
                    c.secret_access_key =
                        get(&["AWS_SECRET_ACCESS_KEY", "LITESTREAM_SECRET_ACCESS_KEY"])
                            .map(Secret::new);
                }
                if c.endpoint.is_none() {
                    if let Some(e) = get(&["LITESTREAM_S3_ENDPOINT"]) {
                        c.endpoint = Some(super::url::ensure_endpoint_scheme(&e));
                        c.force_path_style = true;
                    }
                }
            }
            ReplicaKind::Abs(c) => {
                if c.account_key.is_none() {
                    c.account_key = get(&["LITESTREAM_AZURE_ACCOUNT_KEY"]).map(Secret::new);
                }
                if c.sas_token.is_none() {
                    c.sas_token = get(&["LITESTREAM_AZURE_SAS_TOKEN"]).map(Secret::new);
                }
            }
            ReplicaKind::File { .. }
            | ReplicaKind::Gcs(_)
            | ReplicaKind::Sftp(_)
            | ReplicaKind::WebDav(_)
            | ReplicaKind::Nats(_) => {}
        }
    }

    /// Identifies the storage location, to catch two replicas writing the same files.
    pub(crate) fn location_key(&self) -> String {
        match self {
            ReplicaKind::File { path } => format!("file:{}", path.display()),
            ReplicaKind::S3(c) => {
                format!(
                    "s3:{}|{}|{}",
                    c.endpoint.as_deref().unwrap_or(""),
                    c.bucket,
                    c.path.trim_matches('/')
                )
            }
            ReplicaKind::Gcs(c) => format!("gs:{}|{}", c.bucket, c.path.trim_matches('/')),
            ReplicaKind::Abs(c) => {
                format!(
                    "abs:{}|{}|{}|{}",
                    c.account_name.as_deref().unwrap_or(""),
                    c.endpoint.as_deref().unwrap_or(""),
                    c.bucket,
                    c.path.trim_matches('/')
                )
            }
            ReplicaKind::Sftp(c) => format!("sftp:{}|{}", c.host, c.path.trim_end_matches('/')),
            ReplicaKind::WebDav(c) => format!(
                "webdav:{}|{}",
                c.url.trim_end_matches('/').to_ascii_lowercase(),
                c.path.trim_matches('/')
            ),
            ReplicaKind::Nats(c) => format!(
                "nats:{}|{}|{}",
                c.server.as_deref().unwrap_or(""),
                c.bucket,
                c.path.trim_matches('/')
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?} {:?}", Some(&s)), "*** *** Some(***)");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn log_levels() {
        let cases: &[(&str, Option<LogLevel>)] = &[
            ("info", Some(LogLevel::Info)),
            ("DEBUG", Some(LogLevel::Debug)),
            ("Warning", Some(LogLevel::Warn)),
            ("trace", Some(LogLevel::Trace)),
            ("error", Some(LogLevel::Error)),
            ("verbose", None),
        ];
        for (s, want) in cases {
            assert_eq!(LogLevel::parse(s), *want, "{s}");
        }
        assert_eq!(LogLevel::Warn.to_string(), "warn");
    }

    #[test]
    fn env_defaults_fill_only_what_is_unset() {
        let env = |k: &str| match k {
            "AWS_ACCESS_KEY_ID" => Some("AKIA".to_string()),
            "LITESTREAM_ACCESS_KEY_ID" => Some("LS-ID".to_string()),
            "LITESTREAM_SECRET_ACCESS_KEY" => Some("LS-SECRET".to_string()),
            "LITESTREAM_S3_ENDPOINT" => Some("localhost:9000".to_string()),
            _ => None,
        };
        let mut k = ReplicaKind::S3(S3Config {
            bucket: "b".into(),
            ..Default::default()
        });
        k.apply_env_defaults(&env);
        let ReplicaKind::S3(c) = &k else {
            unreachable!()
        };
        assert_eq!(c.access_key_id.as_ref().unwrap().expose(), "AKIA");
        assert_eq!(c.secret_access_key.as_ref().unwrap().expose(), "LS-SECRET");
        assert_eq!(c.endpoint.as_deref(), Some("http://localhost:9000"));
        assert!(c.force_path_style);

        let mut k = ReplicaKind::S3(S3Config {
            bucket: "b".into(),
            access_key_id: Some(Secret::new("mine")),
            endpoint: Some("https://e".into()),
            ..Default::default()
        });
        k.apply_env_defaults(&env);
        let ReplicaKind::S3(c) = &k else {
            unreachable!()
        };
        assert_eq!(c.access_key_id.as_ref().unwrap().expose(), "mine");
        assert_eq!(c.endpoint.as_deref(), Some("https://e"));
        assert!(!c.force_path_style, "an explicit choice is kept");
    }
}
