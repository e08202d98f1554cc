//! Replica durations from the environment, for containers without a config file
//! (`replicate /data/app.db s3://bucket/app` plus `SQLITE_REPLICATE_SYNC_INTERVAL=1s`).
//!
//! Owns: the variables, their parsing, and their place in the precedence: a key in the
//! config (in the replica, its URL, its database, or at the top level as a default) beats
//! the environment, which beats the built-in default. They apply to command-line replicas
//! (whose config is built from the URL) and, as defaults, to every replica of a config
//! file. An empty variable counts as unset; a bad value is an error naming the variable.
//!
//! Litestream's `replicate` reads no such variables; its VFS reads
//! `LITESTREAM_SYNC_INTERVAL`, accepted here as a second name for the sync interval.

use std::time::Duration;

use super::duration::parse_duration;
use super::error::{ConfigError, ErrorKind};

/// Where variables are read from: the process environment, or a test's map.
pub(crate) type Env<'e> = &'e dyn Fn(&str) -> Option<String>;

/// `sync-interval`; `LITESTREAM_SYNC_INTERVAL` when this one is unset.
pub const SYNC_INTERVAL: &str = "SQLITE_REPLICATE_SYNC_INTERVAL";
const LITESTREAM_SYNC_INTERVAL: &str = "LITESTREAM_SYNC_INTERVAL";
/// `validation-interval` (0 turns validation off).
pub const VALIDATION_INTERVAL: &str = "SQLITE_REPLICATE_VALIDATION_INTERVAL";
/// `snapshot.interval` (and a replica's `snapshot-interval`).
pub const SNAPSHOT_INTERVAL: &str = "SQLITE_REPLICATE_SNAPSHOT_INTERVAL";
/// `snapshot.retention` (and a replica's `retention`).
pub const RETENTION: &str = "SQLITE_REPLICATE_RETENTION";

/// The durations the environment sets; `None`: unset.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct EnvDefaults {
    pub sync_interval: Option<Duration>,
    pub validation_interval: Option<Duration>,
    pub snapshot_interval: Option<Duration>,
    pub retention: Option<Duration>,
}

impl EnvDefaults {
    pub fn read(env: Env<'_>) -> Result<EnvDefaults, ConfigError> {
        Ok(EnvDefaults {
            sync_interval: match positive(env, SYNC_INTERVAL)? {
                Some(d) => Some(d),
                None => positive(env, LITESTREAM_SYNC_INTERVAL)?,
            },
            validation_interval: duration(env, VALIDATION_INTERVAL)?,
            snapshot_interval: positive(env, SNAPSHOT_INTERVAL)?,
            retention: positive(env, RETENTION)?,
        })
    }
}

fn duration(env: Env<'_>, var: &str) -> Result<Option<Duration>, ConfigError> {
    let at = format!("${var}");
    match env(var).filter(|v| !v.trim().is_empty()) {
        None => Ok(None),
        Some(v) => parse_duration(v.trim()).map(Some).map_err(|e| e.at(&at)),
    }
}

fn positive(env: Env<'_>, var: &str) -> Result<Option<Duration>, ConfigError> {
    let d = duration(env, var)?;
    if d == Some(Duration::ZERO) {
        return Err(ConfigError::new(
            format!("${var}"),
            ErrorKind::Invalid("must be greater than 0".into()),
        ));
    }
    Ok(d)
}
