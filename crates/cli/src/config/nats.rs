//! NATS replica keys (Litestream's): reading them from a mapping, merging them, and the
//! checks that build a [`NatsConfig`].
//!
//! Keys: `url` (`nats://[user:password@]host[:port]/bucket[/path]`), `bucket`, `path`,
//! `username`, `password`, `token`, `nkey` (an nkey seed), `creds` (a creds file),
//! `jwt` with `seed`, `tls`, `root-cas`, `client-cert` with `client-key`,
//! `max-reconnects` (-1: unlimited), `reconnect-wait`, `timeout`. Litestream takes the
//! whole URL path as the bucket and writes at the bucket's root; here the first segment is
//! the bucket and the rest (or `path:`) a prefix inside it, so one bucket can hold several
//! databases (`dir:` entries need that). With no prefix the objects are where Litestream
//! puts them.
//!
//! Fed by `settings.rs` (the [`NatsSettings`] of each mapping) and `build.rs`
//! (`make_kind`); feeds `types.rs`'s [`NatsConfig`]. Reads no file (`creds` and the TLS
//! files are read when connecting).

use std::path::PathBuf;
use std::time::Duration;

use serde_norway::Value;

use super::error::{ConfigError, ErrorKind};
use super::secret::Secret;
use super::yaml::{invalid, Map};

/// The NATS keys (a replica's, or top-level defaults).
pub(crate) const NATS_KEYS: &[&str] = &[
    "jwt",
    "seed",
    "creds",
    "nkey",
    "username",
    "token",
    "tls",
    "root-cas",
    "client-cert",
    "client-key",
    "max-reconnects",
    "reconnect-wait",
    "timeout",
];

/// A NATS JetStream object store bucket.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct NatsConfig {
    /// The server, `nats://host[:port]`, from the URL; `None` is Litestream's default
    /// (`nats://127.0.0.1:4222`).
    pub server: Option<String>,
    pub bucket: String,
    /// Object name prefix inside the bucket; empty is the bucket's root (Litestream's).
    pub path: String,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub token: Option<Secret>,
    /// `nkey`: an nkey seed.
    pub nkey: Option<Secret>,
    pub creds: Option<PathBuf>,
    pub jwt: Option<Secret>,
    pub seed: Option<Secret>,
    pub tls: bool,
    pub root_cas: Vec<PathBuf>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// `None`: unlimited (Litestream's -1, its default).
    pub max_reconnects: Option<u64>,
    pub reconnect_wait: Option<Duration>,
    pub timeout: Option<Duration>,
}

/// The NATS settings of one mapping; `None` is "not given". `Debug` hides secrets.
#[derive(Clone, Default, Debug)]
pub(crate) struct NatsSettings {
    /// `host[:port]` from a `nats://` URL (no key sets it).
    pub server: Option<String>,
    pub jwt: Option<Secret>,
    pub seed: Option<Secret>,
    pub creds: Option<String>,
    pub nkey: Option<Secret>,
    pub username: Option<String>,
    pub token: Option<Secret>,
    pub tls: Option<bool>,
    pub root_cas: Option<Vec<String>>,
    pub client_cert: Option<String>,
    pub client_key: Option<String>,
    /// `Some(None)`: unlimited.
    pub max_reconnects: Option<Option<u64>>,
    pub reconnect_wait: Option<Duration>,
    pub timeout: Option<Duration>,
}

impl NatsSettings {
    pub fn read(m: &Map<'_>) -> Result<NatsSettings, ConfigError> {
        Ok(NatsSettings {
            server: None,
            jwt: m.secret("jwt")?,
            seed: m.secret("seed")?,
            creds: m.string("creds")?,
            nkey: m.secret("nkey")?,
            username: m.string("username")?,
            token: m.secret("token")?,
            tls: m.bool("tls")?,
            root_cas: read_list(m, "root-cas")?,
            client_cert: m.string("client-cert")?,
            client_key: m.string("client-key")?,
            max_reconnects: read_max_reconnects(m)?,
            reconnect_wait: m.duration("reconnect-wait")?,
            timeout: positive(m, "timeout")?,
        })
    }

    /// Fills every unset field from `src`.
    pub fn fill_from(&mut self, src: &NatsSettings) {
        macro_rules! fill {
            ($($f:ident),*) => { $( if self.$f.is_none() { self.$f = src.$f.clone(); } )* };
        }
        fill!(
            server,
            jwt,
            seed,
            creds,
            nkey,
            username,
            token,
            tls,
            root_cas,
            client_cert,
            client_key,
            max_reconnects,
            reconnect_wait,
            timeout
        );
    }
}

/// A list of strings (a single string is a list of one, as a YAML scalar).
fn read_list(m: &Map<'_>, key: &str) -> Result<Option<Vec<String>>, ConfigError> {
    match m.get(key) {
        None => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(vec![s.clone()])),
        Some(Value::Sequence(items)) => items
            .iter()
            .map(|v| match v {
                Value::String(s) if !s.is_empty() => Ok(s.clone()),
                other => Err(invalid(
                    &m.key_path(key),
                    other,
                    "a list of file paths",
                    None,
                )),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(other) => Err(invalid(
            &m.key_path(key),
            other,
            "a list of file paths",
            None,
        )),
    }
}

/// `max-reconnects`: a whole number, or -1 (any negative) for unlimited.
fn read_max_reconnects(m: &Map<'_>) -> Result<Option<Option<u64>>, ConfigError> {
    let key = "max-reconnects";
    let Some(v) = m.get(key) else {
        return Ok(None);
    };
    let n = match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    match n {
        Some(n) if n < 0 => Ok(Some(None)),
        Some(n) => Ok(Some(Some(n as u64))),
        None => Err(invalid(
            &m.key_path(key),
            v,
            "a whole number (-1: unlimited)",
            None,
        )),
    }
}

fn positive(m: &Map<'_>, key: &str) -> Result<Option<Duration>, ConfigError> {
    match m.duration(key)? {
        Some(d) if d.is_zero() => Err(ConfigError::new(
            m.key_path(key),
            ErrorKind::Invalid("must be greater than 0".into()),
        )),
        d => Ok(d),
    }
}

/// What a NATS config takes from the shared settings: the bucket, the prefix and the
/// password (keys other replica types have too).
pub(crate) struct NatsParts {
    pub bucket: Option<String>,
    pub path: String,
    pub password: Option<Secret>,
}

/// Checks pairs and builds the config; `at` is the replica's key path, `home` expands `~`.
pub(crate) fn make(
    parts: NatsParts,
    s: &NatsSettings,
    at: &str,
    home: &dyn Fn(&str) -> PathBuf,
) -> Result<NatsConfig, ConfigError> {
    let bad = |why: String| ConfigError::new(at, ErrorKind::Invalid(why));
    let bucket = parts.bucket.ok_or_else(|| {
        bad("a nats replica needs a bucket: `bucket:` or `url: nats://HOST:PORT/BUCKET`".into())
    })?;
    if !bucket
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(bad(format!(
            "{bucket:?} is not an object store bucket name (letters, digits, `_`, `-`)"
        )));
    }
    if s.client_cert.is_some() != s.client_key.is_some() {
        return Err(bad(
            "client-cert and client-key must both be given for mutual TLS".into(),
        ));
    }
    if s.jwt.is_some() != s.seed.is_some() {
        return Err(bad("jwt and seed must be given together".into()));
    }
    Ok(NatsConfig {
        server: s.server.as_ref().map(|h| format!("nats://{h}")),
        bucket,
        path: parts.path,
        username: s.username.clone(),
        password: parts.password,
        token: s.token.clone(),
        nkey: s.nkey.clone(),
        creds: s.creds.as_deref().map(home),
        jwt: s.jwt.clone(),
        seed: s.seed.clone(),
        tls: s.tls.unwrap_or(false),
        root_cas: s.root_cas.iter().flatten().map(|p| home(p)).collect(),
        client_cert: s.client_cert.as_deref().map(home),
        client_key: s.client_key.as_deref().map(home),
        max_reconnects: s.max_reconnects.flatten(),
        reconnect_wait: s.reconnect_wait,
        timeout: s.timeout,
    })
}

/// The bucket and the prefix of a `nats://host/bucket/prefix` URL path.
pub(crate) fn split_url_path(path: &str) -> (Option<String>, String) {
    let mut parts = path.split('/').filter(|s| !s.is_empty() && *s != ".");
    let bucket = parts.next().map(str::to_string);
    (bucket, parts.collect::<Vec<_>>().join("/"))
}
