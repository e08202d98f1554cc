//! Which replica keys exist and where, and [`Settings`]: the replica settings of one
//! mapping (top level, replica, or what a URL carries), merged field by field.
//!
//! Fed by `build.rs`, which decides the precedence (replica, URL, top level); this file
//! only reads and merges.

use std::time::Duration;

use serde_norway::Value;

use super::error::{ConfigError, ErrorKind};
use super::nats::{split_url_path, NatsSettings, NATS_KEYS};
use super::secret::Secret;
use super::url::{ensure_endpoint_scheme, parse_oss_host, parse_s3_host, redact_url, ParsedUrl};
use super::yaml::{invalid, Map};

pub(crate) const TOP_KEYS: &[&str] = &[
    "dbs",
    "addr",
    "health-failing-after",
    "socket",
    "levels",
    "snapshot",
    "validation",
    "l0-retention",
    "l0-retention-check-interval",
    "verify-compaction",
    "retention",
    "heartbeat-url",
    "heartbeat-interval",
    "notify-url",
    "exec",
    "logging",
    "mcp-addr",
    "shutdown-sync-timeout",
    "shutdown-sync-interval",
    "drill-interval",
];

/// Replica settings: valid in a replica, and at the top level as defaults for all (so are
/// the NATS keys, [`NATS_KEYS`]).
pub(crate) const SETTINGS_KEYS: &[&str] = &[
    "sync-interval",
    "validation-interval",
    "auto-recover",
    "max-sync-ltx-files",
    "upload-rate",
    "upload-burst",
    "page-encoding",
    "access-key-id",
    "secret-access-key",
    "region",
    "bucket",
    "endpoint",
    "force-path-style",
    "sign-payload",
    "require-content-md5",
    "skip-verify",
    "part-size",
    "concurrency",
    "storage-class",
    "sse-customer-algorithm",
    "sse-customer-key",
    "sse-customer-key-path",
    "sse-kms-key-id",
    "account-name",
    "account-key",
    "sas-token",
    "host",
    "user",
    "password",
    "key-path",
    "key-passphrase",
    "host-key",
    "concurrent-writes",
    "webdav-url",
    "webdav-username",
    "webdav-password",
    "age",
];

/// Keys only a replica has (the last three are Litestream 0.3's).
pub(crate) const REPLICA_KEYS: &[&str] = &[
    "name",
    "type",
    "url",
    "path",
    "snapshot-interval",
    "retention",
    "retention-check-interval",
];

pub(crate) const DB_KEYS: &[&str] = &[
    "path",
    "dir",
    "pattern",
    "recursive",
    "watch",
    "meta-dir",
    "meta-path",
    "snapshot",
    "monitor-interval",
    "checkpoint-interval",
    "busy-timeout",
    "min-checkpoint-page-count",
    "truncate-page-n",
    "max-sync-wal-bytes",
    "restore-if-db-not-exists",
    "drill-interval",
    "lease",
    "replica",
    "replicas",
];

/// Litestream 0.3 database keys: accepted with a warning, no effect.
pub(crate) const LEGACY_DB_KEYS: &[&str] = &[
    "max-checkpoint-page-count",
    "shadow-retention-count",
    "monitor-delay-interval",
];

/// The replica settings of one mapping (top level or a replica); `None` is "not given".
/// `Debug` shows secrets as `***` ([`Secret`]).
#[derive(Clone, Default, Debug)]
pub(crate) struct Settings {
    pub sync_interval: Option<Duration>,
    pub validation_interval: Option<Duration>,
    pub auto_recover: Option<bool>,
    pub max_sync_ltx_files: Option<u32>,
    /// `upload-rate` in uploads per second (0: unlimited).
    pub upload_rate: Option<f64>,
    pub upload_burst: Option<u32>,
    pub legacy_page_encoding: Option<bool>,
    pub access_key_id: Option<Secret>,
    pub secret_access_key: Option<Secret>,
    pub region: Option<String>,
    pub bucket: Option<String>,
    pub endpoint: Option<String>,
    pub force_path_style: Option<bool>,
    pub sign_payload: Option<bool>,
    pub require_content_md5: Option<bool>,
    pub skip_verify: Option<bool>,
    pub part_size: Option<u64>,
    pub concurrency: Option<u32>,
    pub storage_class: Option<String>,
    pub sse_customer_algorithm: Option<String>,
    pub sse_customer_key: Option<Secret>,
    pub sse_customer_key_path: Option<String>,
    pub sse_kms_key_id: Option<String>,
    pub account_name: Option<String>,
    pub account_key: Option<Secret>,
    pub sas_token: Option<Secret>,
    pub host: Option<String>,
    pub user: Option<String>,
    pub password: Option<Secret>,
    pub key_path: Option<String>,
    pub key_passphrase: Option<Secret>,
    pub host_key: Option<String>,
    pub concurrent_writes: Option<bool>,
    /// `webdav-url`: `http(s)://host[:port][/path]`, or from a `webdav(s)://` URL.
    pub webdav_url: Option<String>,
    pub webdav_username: Option<String>,
    pub webdav_password: Option<Secret>,
    pub nats: NatsSettings,
    /// `age`: client-side encryption keys (`age.rs`).
    pub age: Option<super::age::AgeConfig>,
}

macro_rules! fill_from {
    ($dst:expr, $src:expr; $($field:ident),* $(,)?) => {
        $( if $dst.$field.is_none() { $dst.$field = $src.$field.clone(); } )*
    };
}

impl Settings {
    pub fn read(m: &Map<'_>) -> Result<Settings, ConfigError> {
        let legacy_page_encoding = match m.string("page-encoding")?.as_deref() {
            None => None,
            Some("legacy") => Some(true),
            Some("block") => Some(false),
            Some(_) => {
                let v = m.get("page-encoding").unwrap_or(&Value::Null);
                return Err(invalid(
                    &m.key_path("page-encoding"),
                    v,
                    "a page encoding (legacy or block)",
                    None,
                ));
            }
        };
        Ok(Settings {
            sync_interval: m.duration("sync-interval")?,
            validation_interval: m.duration("validation-interval")?,
            auto_recover: m.bool("auto-recover")?,
            max_sync_ltx_files: m.u32("max-sync-ltx-files")?,
            upload_rate: read_rate(m, "upload-rate")?,
            upload_burst: m.u32("upload-burst")?,
            legacy_page_encoding,
            access_key_id: m.secret("access-key-id")?,
            secret_access_key: m.secret("secret-access-key")?,
            region: m.string("region")?,
            bucket: m.string("bucket")?,
            endpoint: m.string("endpoint")?,
            force_path_style: m.bool("force-path-style")?,
            sign_payload: m.bool("sign-payload")?,
            require_content_md5: m.bool("require-content-md5")?,
            skip_verify: m.bool("skip-verify")?,
            part_size: m.size("part-size")?,
            concurrency: m.u32("concurrency")?,
            storage_class: m.string("storage-class")?,
            sse_customer_algorithm: m.string("sse-customer-algorithm")?,
            sse_customer_key: m.secret("sse-customer-key")?,
            sse_customer_key_path: m.string("sse-customer-key-path")?,
            sse_kms_key_id: m.string("sse-kms-key-id")?,
            account_name: m.string("account-name")?,
            account_key: m.secret("account-key")?,
            sas_token: m.secret("sas-token")?,
            host: m.string("host")?,
            user: m.string("user")?,
            password: m.secret("password")?,
            key_path: m.string("key-path")?,
            key_passphrase: m.secret("key-passphrase")?,
            host_key: m.string("host-key")?,
            concurrent_writes: m.bool("concurrent-writes")?,
            webdav_url: m.string("webdav-url")?,
            webdav_username: m.string("webdav-username")?,
            webdav_password: m.secret("webdav-password")?,
            nats: NatsSettings::read(m)?,
            age: super::age::AgeConfig::read(m)?,
        })
    }

    /// Fills every unset field from `src`.
    pub fn fill_from(&mut self, src: &Settings) {
        fill_from!(self, src;
            sync_interval, validation_interval, auto_recover, max_sync_ltx_files, upload_rate,
            upload_burst, legacy_page_encoding,
            access_key_id, secret_access_key, region, bucket, endpoint, force_path_style, sign_payload,
            require_content_md5, skip_verify, part_size, concurrency, storage_class, sse_customer_algorithm,
            sse_customer_key, sse_customer_key_path, sse_kms_key_id, account_name, account_key, sas_token,
            host, user, password, key_path, key_passphrase, host_key, concurrent_writes, age,
            webdav_url, webdav_username, webdav_password,
        );
        self.nats.fill_from(&src.nats);
    }
}

/// `upload-rate`: a YAML number or a string such as `50/s` ([`super::rate`]).
fn read_rate(m: &Map<'_>, key: &str) -> Result<Option<f64>, ConfigError> {
    let Some(v) = m.get(key) else {
        return Ok(None);
    };
    let text = match v {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(s.clone()),
        _ => None,
    };
    text.as_deref()
        .and_then(super::rate::parse_rate)
        .map(Some)
        .ok_or_else(|| invalid(&m.key_path(key), v, super::rate::EXPECTED, None))
}

/// Whether replica key `key` means something for a replica of type `t`.
pub(crate) fn applies(t: &str, key: &str) -> bool {
    match key {
        "bucket" => matches!(t, "s3" | "gs" | "abs" | "oss" | "nats"),
        "password" => matches!(t, "sftp" | "nats"),
        k if NATS_KEYS.contains(&k) => t == "nats",
        "endpoint" => matches!(t, "s3" | "abs" | "oss"),
        // Litestream's oss keys.
        "access-key-id" | "secret-access-key" | "region" | "part-size" | "concurrency" => {
            matches!(t, "s3" | "oss")
        }
        "force-path-style"
        | "sign-payload"
        | "require-content-md5"
        | "skip-verify"
        | "storage-class"
        | "sse-customer-algorithm"
        | "sse-customer-key"
        | "sse-customer-key-path"
        | "sse-kms-key-id" => t == "s3",
        "account-name" | "account-key" | "sas-token" => t == "abs",
        "host" | "user" | "key-path" | "key-passphrase" | "host-key" | "concurrent-writes" => {
            t == "sftp"
        }
        "webdav-url" | "webdav-username" | "webdav-password" => t == "webdav",
        _ => true,
    }
}

/// The settings a URL carries, and its path (`file`: the local path; `sftp`, `webdav`:
/// as written; others: without the leading `/`).
pub(crate) fn settings_from_url(
    p: &ParsedUrl,
    url: &str,
    at: &str,
) -> Result<(Settings, String), ConfigError> {
    let bad = |reason: String| {
        ConfigError::new(
            at,
            ErrorKind::BadUrl {
                url: redact_url(url),
                reason,
            },
        )
    };
    let mut s = Settings::default();
    let mut path = p.path.clone();
    match p.replica_type {
        "s3" => {
            let (bucket, region, endpoint) = parse_s3_host(&p.host);
            s.bucket = Some(bucket).filter(|b| !b.is_empty());
            s.region = region;
            s.endpoint = endpoint;
            for (k, v) in &p.query {
                let flag = || match v.to_ascii_lowercase().as_str() {
                    "true" | "1" => Ok(Some(true)),
                    "false" | "0" => Ok(Some(false)),
                    _ => Err(bad(format!("{k}={v:?} is not true or false"))),
                };
                match k.as_str() {
                    "endpoint" => s.endpoint = Some(ensure_endpoint_scheme(v)),
                    "region" => s.region = Some(v.clone()),
                    "forcePathStyle" | "force-path-style" => s.force_path_style = flag()?,
                    "skipVerify" | "skip-verify" => s.skip_verify = flag()?,
                    "signPayload" | "sign-payload" => s.sign_payload = flag()?,
                    "requireContentMD5" | "require-content-md5" => s.require_content_md5 = flag()?,
                    "concurrency" => {
                        s.concurrency = Some(v.parse().map_err(|_| {
                            bad(format!("concurrency={v:?} is not a whole number"))
                        })?);
                    }
                    "partSize" | "part-size" => {
                        s.part_size = Some(
                            super::size::parse_size(v)
                                .ok_or_else(|| bad(format!("{k}={v:?} is not a size")))?,
                        );
                    }
                    "storageClass" | "storage-class" => s.storage_class = Some(v.clone()),
                    _ => {
                        return Err(bad(format!(
                            "unknown query parameter {k:?} (endpoint, region, forcePathStyle, skipVerify, \
                             signPayload, requireContentMD5, concurrency, partSize, storageClass)"
                        )));
                    }
                }
            }
        }
        other => {
            if !p.query.is_empty() {
                return Err(bad(format!("a {other} URL takes no query parameters")));
            }
            match other {
                "gs" => s.bucket = Some(p.host.clone()),
                "oss" => {
                    let (bucket, region) = parse_oss_host(&p.host);
                    s.bucket = Some(bucket);
                    s.region = region;
                }
                "abs" => {
                    s.bucket = Some(p.host.clone());
                    s.account_name = p.user.clone();
                }
                "sftp" => {
                    s.host = Some(p.host.clone());
                    s.user = p.user.clone();
                    s.password = p.password.clone().map(Secret::new);
                }
                "webdav" => {
                    // As Litestream: webdavs:// is https, webdav:// is http.
                    let tls = url
                        .get(..8)
                        .is_some_and(|s| s.eq_ignore_ascii_case("webdavs:"));
                    let scheme = if tls { "https" } else { "http" };
                    s.webdav_url = Some(format!("{scheme}://{}", p.host));
                    s.webdav_username = p.user.clone();
                    s.webdav_password = p.password.clone().map(Secret::new);
                }
                "nats" => {
                    s.nats.server = Some(p.host.clone());
                    s.nats.username = p.user.clone();
                    s.password = p.password.clone().map(Secret::new);
                    let (bucket, prefix) = split_url_path(&path);
                    s.bucket = bucket;
                    path = prefix;
                }
                _ => {}
            }
        }
    }
    if matches!(p.replica_type, "s3" | "gs" | "abs" | "oss") {
        path = clean_key_prefix(&path);
    }
    Ok((s, path))
}

/// An object-store prefix: no leading or trailing `/`, no empty or `.` segments.
pub(crate) fn clean_key_prefix(p: &str) -> String {
    p.split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_applicability() {
        let cases: &[(&str, &str, bool)] = &[
            ("s3", "bucket", true),
            ("gs", "bucket", true),
            ("file", "bucket", false),
            ("s3", "region", true),
            ("gs", "region", false),
            ("abs", "endpoint", true),
            ("sftp", "password", true),
            ("s3", "password", false),
            ("file", "sync-interval", true),
            ("s3", "jwt", false),
            ("webdav", "webdav-password", true),
            ("sftp", "webdav-url", false),
            ("webdav", "password", false),
            ("oss", "region", true),
            ("oss", "part-size", true),
            ("oss", "force-path-style", false),
            ("nats", "jwt", true),
            ("nats", "bucket", true),
            ("nats", "password", true),
            ("nats", "host", false),
            ("sftp", "token", false),
        ];
        for (t, key, want) in cases {
            assert_eq!(applies(t, key), *want, "{t} {key}");
        }
    }
}
