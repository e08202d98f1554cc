//! [`StorageError`]: what went wrong talking to a replica, classified for callers.
//!
//! Owns: the error kinds callers decide from ([`ErrorKind`]: retry, give up, treat as
//! absent or as a lost race), the context every error carries (the replica's location,
//! the key or name, the operation where known) and its cause, kept as the error's
//! `source`. The message reads the same for every backend, one line per kind.
//!
//! A cause whose text can hold a secret (an `object_store` error quotes request URLs, and
//! an Azure SAS token lives in the query) is not kept as the source: its scrubbed text is
//! the detail instead (see `objstore_error`). Local I/O and SSH causes are kept.

use std::error::Error as StdError;
use std::fmt;

/// The boxed cause of a [`StorageError`].
pub type Cause = Box<dyn StdError + Send + Sync + 'static>;

/// What kind of failure a [`StorageError`] is; callers match on it, never on the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The object (or the bucket, container or directory) does not exist.
    NotFound,
    /// A conditional write lost: the object exists, or its tag changed.
    Precondition,
    /// The credentials or the permissions are wrong.
    PermissionDenied,
    /// The storage is full (local disk, quota, HTTP 507).
    NoSpace,
    /// Worth retrying: timeouts, connection resets, 5xx, throttling.
    Transient,
    /// Retrying will not help until someone changes something (including what the backend
    /// does not support).
    Permanent,
}

impl ErrorKind {
    /// The kind's name: `NotFound`, `Precondition`, ... (the metrics' `code` label).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "NotFound",
            ErrorKind::Precondition => "Precondition",
            ErrorKind::PermissionDenied => "PermissionDenied",
            ErrorKind::NoSpace => "NoSpace",
            ErrorKind::Transient => "Transient",
            ErrorKind::Permanent => "Permanent",
        }
    }
}

/// What went wrong talking to a replica: a kind, where (location, key, operation), why
/// (a detail for the operator, and the cause as the source). One pointer wide, so results
/// carrying it stay small.
#[derive(Debug)]
pub struct StorageError(Box<Inner>);

#[derive(Debug)]
struct Inner {
    kind: ErrorKind,
    location: String,
    what: String,
    detail: String,
    op: Option<&'static str>,
    source: Option<Cause>,
}

impl StorageError {
    /// An error of `kind` at `location` about `what` (a key, a name, a step).
    pub fn new(kind: ErrorKind, location: impl Into<String>, what: impl Into<String>) -> Self {
        StorageError(Box::new(Inner {
            kind,
            location: location.into(),
            what: what.into(),
            detail: String::new(),
            op: None,
            source: None,
        }))
    }

    pub fn not_found(location: impl Into<String>, what: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, location, what)
    }

    pub fn precondition(location: impl Into<String>, what: impl Into<String>) -> Self {
        Self::new(ErrorKind::Precondition, location, what)
    }

    pub fn no_space(location: impl Into<String>, what: impl Into<String>) -> Self {
        Self::new(ErrorKind::NoSpace, location, what)
    }

    pub fn permission_denied(
        location: impl Into<String>,
        what: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        Self::new(ErrorKind::PermissionDenied, location, what).with_detail(detail)
    }

    pub fn transient(
        location: impl Into<String>,
        what: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        Self::new(ErrorKind::Transient, location, what).with_detail(detail)
    }

    pub fn permanent(
        location: impl Into<String>,
        what: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        Self::new(ErrorKind::Permanent, location, what).with_detail(detail)
    }

    /// `Permanent`: the backend cannot do this at all (`detail` says what).
    pub fn unsupported(
        location: impl Into<String>,
        what: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        Self::permanent(location, what, detail)
    }

    /// With `detail`, the operator's explanation.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.0.detail = detail.into();
        self
    }

    /// With `cause` as the source.
    pub fn with_source(mut self, cause: impl Into<Cause>) -> Self {
        self.0.source = Some(cause.into());
        self
    }

    /// With the operation that failed (`PUT`, `GET`, `LIST`, ...), unless one is set.
    pub fn during(mut self, op: &'static str) -> Self {
        self.0.op.get_or_insert(op);
        self
    }

    pub fn kind(&self) -> ErrorKind {
        self.0.kind
    }

    /// The replica, as [`super::ReplicaStore::location`] names it.
    pub fn location(&self) -> &str {
        &self.0.location
    }

    /// The key, object name or step the error is about.
    pub fn what(&self) -> &str {
        &self.0.what
    }

    /// The operator's explanation; empty where the kind says it all.
    pub fn detail(&self) -> &str {
        &self.0.detail
    }

    /// The operation that failed, where the layer that saw it knew (`metered` sets it).
    pub fn op(&self) -> Option<&'static str> {
        self.0.op
    }

    pub fn is_retryable(&self) -> bool {
        self.0.kind == ErrorKind::Transient
    }

    pub fn is_not_found(&self) -> bool {
        self.0.kind == ErrorKind::NotFound
    }

    /// A hint for the operator, printed by the CLI beside the error.
    pub fn hint(&self) -> Option<&'static str> {
        match self.0.kind {
            ErrorKind::NotFound => Some("check the replica path, bucket and prefix"),
            ErrorKind::PermissionDenied => {
                Some("check the credentials and the permissions on the replica location")
            }
            ErrorKind::NoSpace => Some("free space on the replica's storage"),
            ErrorKind::Transient => Some("check that the endpoint is reachable"),
            _ => None,
        }
    }
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (l, w, d) = (&self.0.location, &self.0.what, &self.0.detail);
        match self.0.kind {
            ErrorKind::NotFound => write!(f, "{l}: {w} not found"),
            ErrorKind::Precondition => write!(f, "{l}: precondition failed for {w}"),
            ErrorKind::PermissionDenied => write!(f, "{l}: permission denied for {w}: {d}"),
            ErrorKind::NoSpace => write!(f, "{l}: no space left writing {w}"),
            ErrorKind::Transient => write!(f, "{l}: transient error on {w}: {d}"),
            ErrorKind::Permanent => write!(f, "{l}: {w}: {d}"),
        }
    }
}

impl StdError for StorageError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.0
            .source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_read_per_kind_and_the_cause_is_the_source() {
        let io = std::io::Error::from(std::io::ErrorKind::NotFound);
        let e = StorageError::not_found("file:///r", "0000/a.ltx")
            .with_source(io)
            .during("GET");
        assert_eq!(e.to_string(), "file:///r: 0000/a.ltx not found");
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert_eq!(e.op(), Some("GET"));
        assert!(e.source().is_some_and(|s| s.is::<std::io::Error>()));
        assert_eq!(
            e.during("PUT").op(),
            Some("GET"),
            "the first operation stays"
        );
        let e = StorageError::transient("s3://b", "lock.json", "HTTP 503");
        assert_eq!(
            e.to_string(),
            "s3://b: transient error on lock.json: HTTP 503"
        );
        assert!(e.is_retryable() && e.source().is_none());
        assert_eq!(
            StorageError::precondition("s3://b", "lock.json").to_string(),
            "s3://b: precondition failed for lock.json"
        );
    }
}
