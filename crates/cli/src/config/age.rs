//! The `age:` block of a replica (issue 24): client-side encryption keys.
//!
//! Owns: reading the block. Litestream 0.3's keys and meaning, `identities` (secret keys,
//! `AGE-SECRET-KEY-1...`, each entry one or more lines) and `recipients` (public keys,
//! `age1...`), inline; plus ours, `identity-file` and `recipients-file` (a path or a
//! list of paths, named after age's own `--identity` and `--recipients-file`), so keys
//! need not sit in the config. `$VAR` expansion applies as to every value.
//!
//! Does not: parse keys or read key files (`setup.rs` does, with the `age` crate, when it
//! builds the replica's store): the config never holds key material it could print.
//! Identities are [`Secret`]s; no error here quotes a value of this block.

use std::path::PathBuf;

use serde_norway::Value;

use super::error::{ConfigError, ErrorKind};
use super::secret::Secret;
use super::yaml::Map;

/// The keys of an `age:` block.
pub(crate) const AGE_KEYS: &[&str] = &[
    "identities",
    "recipients",
    "identity-file",
    "recipients-file",
];

/// A replica's age keys, as configured.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AgeConfig {
    /// `identities`: inline secret keys, each entry one or more lines.
    pub identities: Vec<Secret>,
    /// `recipients`: inline public keys, each entry one or more lines.
    pub recipients: Vec<String>,
    /// `identity-file`: files of secret keys (age-keygen's output).
    pub identity_files: Vec<PathBuf>,
    /// `recipients-file`: files of public keys, one a line.
    pub recipients_files: Vec<PathBuf>,
}

impl AgeConfig {
    /// The `age` block of mapping `m`, if any. At least one identity (inline or by file)
    /// is required: compaction, snapshots, `verify` and every restore decrypt what they
    /// read, so a replicator with recipients only could not maintain its replica.
    pub(crate) fn read(m: &Map<'_>) -> Result<Option<AgeConfig>, ConfigError> {
        let Some(a) = m.map("age")? else {
            return Ok(None);
        };
        a.check_keys(&[AGE_KEYS], &[])?;
        let c = AgeConfig {
            identities: strings(&a, "identities")?
                .into_iter()
                .map(Secret::new)
                .collect(),
            recipients: strings(&a, "recipients")?,
            identity_files: strings(&a, "identity-file")?
                .into_iter()
                .map(PathBuf::from)
                .collect(),
            recipients_files: strings(&a, "recipients-file")?
                .into_iter()
                .map(PathBuf::from)
                .collect(),
        };
        if c.identities.is_empty() && c.identity_files.is_empty() {
            return Err(ConfigError::new(
                a.path(),
                ErrorKind::Invalid(
                    "give at least one identity (`identities` or `identity-file`): \
                     compaction, snapshots, verify and restores decrypt what they read"
                        .into(),
                ),
            ));
        }
        Ok(Some(c))
    }
}

/// `key` as a list of non-empty strings: one string, or a list of them. Values are
/// never quoted in errors (identities are secrets).
fn strings(a: &Map<'_>, key: &str) -> Result<Vec<String>, ConfigError> {
    let not = |at: String| {
        ConfigError::new(
            at,
            ErrorKind::Invalid("must be a string or a list of strings".into()),
        )
    };
    match a.get(key) {
        None => Ok(Vec::new()),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Sequence(_)) => {
            let mut out = Vec::new();
            for (at, v) in a.seq(key)?.unwrap_or_default() {
                match v {
                    Value::String(s) if !s.trim().is_empty() => out.push(s.clone()),
                    Value::String(_) => {
                        return Err(ConfigError::new(at, ErrorKind::Invalid("is empty".into())))
                    }
                    _ => return Err(not(at)),
                }
            }
            Ok(out)
        }
        Some(_) => Err(not(a.key_path(key))),
    }
}
