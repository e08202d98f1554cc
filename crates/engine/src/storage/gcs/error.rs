//! The GCS backend's edge: each `object_store` failure becomes one
//! [`StorageError`](crate::storage::StorageError) variant.
//!
//! Owns: GCS's [`Dialect`] for the shared classification in `objstore_error`: reading a
//! GCS XML error reply (code and message), the codes that mean "retry", "credentials" or
//! "missing bucket", and the TLS and credentials hints. Callers read the variant, never
//! the text.

use crate::storage::objstore_error::{Dialect, Reply};

const AUTH_CODES: &[&str] = &[
    "AccessDenied",
    "AuthenticationRequired",
    "InvalidSecurity",
    "UserProjectMissing",
    "AccountDisabled",
];
const TRANSIENT_CODES: &[&str] = &[
    "InternalError",
    "ServiceUnavailable",
    "SlowDown",
    "RequestTimeout",
    "BackendError",
];
const NOT_FOUND_BUCKET: &str = "NoSuchBucket";

const CREDENTIALS_HINT: &str = "check GOOGLE_APPLICATION_CREDENTIALS (a service account key file) or `gcloud auth application-default login`, and the account's permissions on the bucket";

/// GCS's error replies, for the shared classification.
pub(super) const DIALECT: Dialect = Dialect {
    container_noun: "bucket",
    object_noun: "object",
    missing_container_code: NOT_FOUND_BUCKET,
    auth_codes: AUTH_CODES,
    transient_codes: TRANSIENT_CODES,
    credentials_hint: CREDENTIALS_HINT,
    tls_words: &["certificate", "tls", "handshake", "peer is incompatible"],
    tls_hint: "check the endpoint's certificate and scheme; for a private CA, give its PEM bundle in SSL_CERT_FILE, or add it to the system trust store",
    no_space_on_507: false,
    read_reply: Reply::from_xml,
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::objstore_error::classify;
    use crate::storage::ErrorKind;

    #[test]
    fn classification_reads_status_and_code() {
        let generic = |msg: &str| object_store::Error::Generic {
            store: "GCS",
            source: msg.to_string().into(),
        };
        let c = |msg: &str| classify(&DIALECT, "gs://b/p", "b", "x".into(), &generic(msg), &[]);
        assert!(matches!(
            c("status code: 503 Service Unavailable: <Code>ServiceUnavailable</Code>").kind(),
            ErrorKind::Transient
        ));
        assert!({
            let e = c("status code: 404 Not Found: <Error><Code>NoSuchBucket</Code></Error>");
            e.kind() == ErrorKind::NotFound && e.what() == "bucket \"b\""
        });
        let e = c("status code: 403 Forbidden: <Code>AccessDenied</Code><Message>no</Message>");
        assert!(
            e.kind() == ErrorKind::PermissionDenied
                && e.detail().contains("GOOGLE_APPLICATION_CREDENTIALS"),
            "{e}"
        );
        assert!(matches!(
            c("status code: 412 Precondition Failed: <Code>PreconditionFailed</Code>").kind(),
            ErrorKind::Precondition
        ));
        assert!(matches!(
            c("status code: 400 Bad Request: <Code>InvalidArgument</Code>").kind(),
            ErrorKind::Permanent
        ));
    }
}
