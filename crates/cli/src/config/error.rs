//! The one error type of the config parser.
//!
//! A [`ConfigError`] is a [`ErrorKind`] (what is wrong) plus where: the key path inside
//! the file (`dbs[0].replica.sync-interval`) and, when the config was loaded from a file,
//! that file. It renders as one line: `FILE: KEY.PATH: what is wrong`.
//!
//! Values are quoted in messages so the user sees what was read, except secrets: a
//! secret key (`secret-access-key`, `password`, ...) accepts any scalar, so its value can
//! never be the subject of an error, and URLs are shown with their password replaced by
//! `***`.

use std::fmt;
use std::path::{Path, PathBuf};

/// A config file that could not be read, parsed or validated. Boxed: it travels
/// through every function of the parser, which stays cheap on the happy path.
#[derive(Debug)]
pub struct ConfigError(Box<Inner>);

#[derive(Debug)]
struct Inner {
    file: Option<PathBuf>,
    at: String,
    kind: ErrorKind,
}

/// What is wrong with a config.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    #[error("cannot read the config file: {0}")]
    Read(#[source] std::io::Error),
    #[error("invalid YAML: {0}")]
    Yaml(String),
    #[error("environment expansion: {0}")]
    Expand(String),
    #[error("unknown key {key:?}{}", suggestion.as_ref().map(|s| format!(" ({s})")).unwrap_or_default())]
    UnknownKey {
        key: String,
        suggestion: Option<String>,
    },
    /// `value` is already rendered for display (quoted string, number, "a list", ...).
    #[error("{value} is not {expected}{}", detail.as_ref().map(|d| format!(": {d}")).unwrap_or_default())]
    InvalidValue {
        value: String,
        expected: String,
        detail: Option<String>,
    },
    #[error("give either `path` or `dir`, not both")]
    PathAndDir,
    #[error("give `path` (a database file) or `dir` (a directory of databases)")]
    NoPathOrDir,
    #[error("`pattern` is required with `dir` (e.g. pattern: \"*.db\")")]
    PatternRequired,
    #[error("no replica: add `replica:` with a `url` (or `type` and `path`)")]
    NoReplica,
    #[error("give `replica` or `replicas`, not both")]
    ReplicaAndReplicas,
    #[error("{first} and {second} are both named {name:?}; give each replica its own `name`")]
    DuplicateReplicaName {
        name: String,
        first: String,
        second: String,
    },
    #[error("{path} is already configured by {first}")]
    DuplicateDb { path: String, first: String },
    #[error(
        "{location} is also the replica of {first}; each database needs its own replica location"
    )]
    SharedReplicaLocation { location: String, first: String },
    /// `url` has its password replaced by `***`.
    #[error("invalid replica URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("{0}")]
    Invalid(String),
}

impl ConfigError {
    pub(crate) fn new(at: impl Into<String>, kind: ErrorKind) -> ConfigError {
        ConfigError(Box::new(Inner {
            file: None,
            at: at.into(),
            kind,
        }))
    }

    /// The same error, attributed to `file`.
    pub(crate) fn in_file(mut self, file: &Path) -> ConfigError {
        self.0.file = Some(file.to_path_buf());
        self
    }

    /// The same error at key path `at`, unless it already has one.
    pub(crate) fn at(mut self, at: &str) -> ConfigError {
        if self.0.at.is_empty() {
            self.0.at = at.to_string();
        }
        self
    }

    /// What is wrong.
    pub fn kind(&self) -> &ErrorKind {
        &self.0.kind
    }

    /// The key path in the config (`dbs[0].replica.url`); empty for the whole file.
    #[cfg(test)]
    pub fn key_path(&self) -> &str {
        &self.0.at
    }

    /// The config file, when the config was loaded from one.
    #[cfg(test)]
    pub fn file(&self) -> Option<&Path> {
        self.0.file.as_deref()
    }

    /// A suggestion for the user, for the CLI to print under the error.
    pub fn hint(&self) -> Option<&'static str> {
        match &self.0.kind {
            ErrorKind::DuplicateReplicaName { .. } => Some("a replica without `name` is named after its type (file, s3, gs, abs, sftp, webdav, oss, nats)"),
            ErrorKind::Yaml(_) => Some("YAML indents with spaces; quote values that contain `: ` or start with `*`, `&`, `!`"),
            ErrorKind::InvalidValue { expected, .. } if expected.starts_with("a duration") => Some("durations use Go syntax: 500ms, 30s, 1m30s, 1h, 24h"),
            _ => None,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.0.file {
            write!(f, "{}: ", file.display())?;
        }
        if !self.0.at.is_empty() {
            write!(f, "{}: ", self.0.at)?;
        }
        write!(f, "{}", self.0.kind)
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.0.kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_one_line_with_file_and_key_path() {
        let cases: &[(ConfigError, &str)] = &[
            (
                ConfigError::new(
                    "dbs[0].replica",
                    ErrorKind::UnknownKey {
                        key: "sync_interval".into(),
                        suggestion: Some("did you mean \"sync-interval\"?".into()),
                    },
                ),
                r#"dbs[0].replica: unknown key "sync_interval" (did you mean "sync-interval"?)"#,
            ),
            (
                ConfigError::new("", ErrorKind::Yaml("bad".into()))
                    .in_file(Path::new("/etc/litestream.yml")),
                "/etc/litestream.yml: invalid YAML: bad",
            ),
            (
                ConfigError::new("dbs[1]", ErrorKind::PathAndDir).in_file(Path::new("a.yml")),
                "a.yml: dbs[1]: give either `path` or `dir`, not both",
            ),
            (
                ConfigError::new(
                    "",
                    ErrorKind::InvalidValue {
                        value: "\"x\"".into(),
                        expected: "a duration (e.g. 1m30s)".into(),
                        detail: None,
                    },
                )
                .at("dbs[0].busy-timeout"),
                "dbs[0].busy-timeout: \"x\" is not a duration (e.g. 1m30s)",
            ),
        ];
        for (err, want) in cases {
            assert_eq!(err.to_string(), *want);
        }
    }

    #[test]
    fn at_keeps_the_innermost_path() {
        let e = ConfigError::new("dbs[0].replica", ErrorKind::NoReplica).at("dbs[0]");
        assert_eq!(e.key_path(), "dbs[0].replica");
    }
}
