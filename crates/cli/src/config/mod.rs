//! The config file: Litestream 0.5's YAML format (plus older forms Litestream users
//! still have), read into validated, typed structs.
//!
//! Owns: reading the file, `$VAR` expansion inside parsed values (`expand.rs`), strict
//! key checking with key paths in every error (`yaml.rs`), Go durations (`duration.rs`)
//! and sizes (`size.rs`), replica URLs (`url.rs`), replica keys and their merging
//! (`settings.rs`), the `age:` encryption block (`age.rs`), defaults and cross-checks
//! (`build.rs`), replica durations from the environment (`envdefaults.rs`), the
//! typed result (`types.rs`), directory entries (`dir.rs`,
//! `glob.rs`), the replica a command-line URL names (`resolve.rs`), the error type
//! (`error.rs`), and which secrets a config file holds inline (`secrets.rs`, for `check`).
//!
//! Does not: touch databases, replicas or the network, read key files, or scan
//! directories. `setup.rs` turns a [`Config`] into engine options and backends.
//!
//! Forms accepted beyond Litestream 0.5: `replicas:` with more than one entry (several
//! replicas per database), `snapshot-interval`/`retention` per replica (0.3), replica
//! settings at the top level as defaults (`access-key-id`, `region`, ...), and our own
//! replica key `page-encoding: legacy|block`, and Litestream 0.3's `age:` block (with key
//! files, `age.rs`). Unknown keys are errors, where Litestream
//! ignores them; every Litestream 0.5 key is acted on; keys that cannot apply (another replica type's, Litestream 0.3's) are returned in
//! [`Config::warnings`]. A replica URL given on the command line is resolved against the
//! config by one rule (`resolve.rs`).

mod age;
mod build;
mod dir;
mod duration;
mod envdefaults;
mod error;
mod expand;
mod glob;
mod nats;
mod rate;
mod resolve;
mod secret;
mod secrets;
mod settings;
mod size;
mod types;
mod url;
mod yaml;

#[cfg(test)]
mod tests;

use std::path::Path;

pub use age::AgeConfig;
pub use dir::expand_dir_db;
pub use duration::{format_duration, parse_duration};
pub use error::{ConfigError, ErrorKind};
pub use glob::glob_match;
pub use nats::NatsConfig;
#[allow(unused_imports)]
pub use resolve::resolve_replica_url;
pub use resolve::resolve_replica_url_keys;
pub use secret::Secret;
/// For `check`'s warning about a readable config file holding secrets.
pub(crate) use secrets::inline_secrets;
/// Byte sizes for command-line flags (`check -wal-warn-size`).
pub(crate) use size::parse_size;
pub use types::{
    AbsConfig, Config, DbConfig, DbSource, GcsConfig, HeartbeatConfig, LeaseConfig, ReplicaConfig,
    ReplicaKind, S3Config, SftpConfig, SocketConfig,
};
/// Named by the unit tests (here and in `setup.rs`); the commands reach them through
/// [`Config`]'s fields.
#[cfg(test)]
pub use types::{LogLevel, LoggingConfig, SnapshotConfig};
pub use url::{malformed_scheme, redact_url};

/// Reads and validates the config file at `path`, expanding `$VAR`s from the process
/// environment when `expand_env` is set. Errors name the file.
pub fn load(path: &Path, expand_env: bool) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new("", ErrorKind::Read(e)).in_file(path))?;
    parse(&text, expand_env, &|k| std::env::var(k).ok()).map_err(|e| e.in_file(path))
}

/// [`load`], also returning the file's top level without `dbs` (values expanded as
/// the config's were): the template a database registered while running is built from
/// ([`for_url_in`]), so it gets the file's defaults rather than the built-in ones.
pub fn load_with_template(
    path: &Path,
    expand_env: bool,
) -> Result<(Config, serde_norway::Value), ConfigError> {
    let env = |k: &str| std::env::var(k).ok();
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new("", ErrorKind::Read(e)).in_file(path))?;
    let mut root = parse_root(&text, expand_env, &env).map_err(|e| e.in_file(path))?;
    let cfg = build::build(&root, &env).map_err(|e| e.in_file(path))?;
    if let serde_norway::Value::Mapping(m) = &mut root {
        m.remove("dbs");
    }
    Ok((cfg, root))
}

/// The config of one database `db` replicated to `url`, with every other key from
/// `template` (a file's top level, see [`load_with_template`]): its top-level replica
/// settings, durations and levels apply as they do to the file's own databases. An empty
/// template is [`for_url`].
pub fn for_url_in(
    template: &serde_norway::Value,
    db: &str,
    url: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    use serde_norway::{Mapping, Value};
    let mut replica = Mapping::new();
    replica.insert("url".into(), url.into());
    let mut entry = Mapping::new();
    entry.insert("path".into(), db.into());
    entry.insert("replica".into(), Value::Mapping(replica));
    let mut root = match template {
        Value::Mapping(m) => m.clone(),
        _ => Mapping::new(),
    };
    root.insert("dbs".into(), Value::Sequence(vec![Value::Mapping(entry)]));
    build::build(&Value::Mapping(root), env)
}

/// Parses and validates config text. `env` looks up environment variables, for `$VAR`
/// expansion (when `expand_env`), `$LOG_LEVEL`, `$HOME` and credential fallbacks.
pub fn parse(
    text: &str,
    expand_env: bool,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    build::build(&parse_root(text, expand_env, env)?, env)
}

/// Config text as YAML, merge keys applied and `$VAR`s expanded (when `expand_env`).
fn parse_root(
    text: &str,
    expand_env: bool,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<serde_norway::Value, ConfigError> {
    let yaml_error = |e: serde_norway::Error| ConfigError::new("", ErrorKind::Yaml(e.to_string()));
    let mut root: serde_norway::Value = serde_norway::from_str(text).map_err(yaml_error)?;
    // YAML merge keys (`<<: *defaults`), which Go's yaml.v2 applies.
    root.apply_merge().map_err(yaml_error)?;
    // After parsing, inside string values only: a variable cannot change the document's
    // structure (see `expand.rs`).
    if expand_env {
        expand::expand_values(&mut root, "", env)?;
    }
    Ok(root)
}

/// The config of `replicate DB_PATH REPLICA_URL`: one database with one replica, every other
/// key at its default. Built as the file `dbs: [{path: DB_PATH, replica: {url: REPLICA_URL}}]`
/// would be, from values rather than YAML text (nothing to quote; `$VAR`s are not expanded).
pub fn for_url(
    db: &str,
    url: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    for_url_in(&serde_norway::Value::Null, db, url, env)
}

/// The replica a URL names, from the URL alone. A bare path is a file replica (kept as
/// written, not made absolute). Credentials are not looked up: commands resolve a URL with
/// [`resolve_replica_url`], which also takes them from the config and the environment.
/// The config fuzz target's entry for URLs, and the unit tests'; the commands resolve.
#[cfg_attr(not(test), allow(dead_code))]
pub fn parse_replica_url(url: &str) -> Result<ReplicaKind, ConfigError> {
    build::kind_from_url(url)
}
