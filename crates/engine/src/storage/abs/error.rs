//! The ABS backend's edge: each `object_store` failure becomes one
//! [`StorageError`](crate::storage::StorageError) variant.
//!
//! Owns: Azure's [`Dialect`] for the shared classification in `objstore_error`: reading
//! an Azure error reply (code and the first line of its message), the codes that mean
//! "retry", "credentials" or "missing container", and the TLS and credentials hints.
//! Callers read the variant, never the text.

use crate::storage::objstore_error::{Dialect, Reply};

const AUTH_CODES: &[&str] = &[
    "AuthenticationFailed",
    "AuthorizationFailure",
    "AuthorizationPermissionMismatch",
    "AuthorizationResourceTypeMismatch",
    "AuthorizationServiceMismatch",
    "AuthorizationProtocolMismatch",
    "AuthorizationSourceIPMismatch",
    "InsufficientAccountPermissions",
    "AccountIsDisabled",
    "InvalidAuthenticationInfo",
];
const TRANSIENT_CODES: &[&str] = &[
    "ServerBusy",
    "InternalError",
    "OperationTimedOut",
    "ServiceUnavailable",
];
const NOT_FOUND_CONTAINER: &str = "ContainerNotFound";

const CREDENTIALS_HINT: &str = "check account-name and account-key or sas-token (or LITESTREAM_AZURE_ACCOUNT_KEY/LITESTREAM_AZURE_SAS_TOKEN) and their permissions on the container";

/// Azure's error replies, for the shared classification.
pub(super) const DIALECT: Dialect = Dialect {
    container_noun: "container",
    object_noun: "blob",
    missing_container_code: NOT_FOUND_CONTAINER,
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
            store: "MicrosoftAzure",
            source: msg.to_string().into(),
        };
        let c = |msg: &str| {
            classify(
                &DIALECT,
                "abs://c/p",
                "c",
                "x".into(),
                &generic(msg),
                &["s3cr3t-value".into()],
            )
        };
        assert!(matches!(
            c("status code: 503 Service Unavailable: <Code>ServerBusy</Code>").kind(),
            ErrorKind::Transient
        ));
        assert!({
            let e = c("status code: 404 Not Found: <Code>ContainerNotFound</Code>");
            e.kind() == ErrorKind::NotFound && e.what() == "container \"c\""
        });
        let e = c("status code: 403 Forbidden: <Code>AuthenticationFailed</Code><Message>bad s3cr3t-value\nRequestId:1</Message>");
        assert!(matches!(e.kind(), ErrorKind::PermissionDenied));
        let msg = e.to_string();
        assert!(
            !msg.contains("s3cr3t-value")
                && !msg.contains("RequestId")
                && msg.contains("account-key"),
            "{msg}"
        );
        assert!(matches!(
            c("status code: 400 Bad Request: <Code>InvalidHeaderValue</Code>").kind(),
            ErrorKind::Permanent
        ));
        assert!(matches!(
            c("status code: 409 Conflict: <Code>BlobAlreadyExists</Code>").kind(),
            ErrorKind::Precondition
        ));
        let nf = object_store::Error::NotFound {
            path: "k".into(),
            source: "<Code>BlobNotFound</Code>".to_string().into(),
        };
        assert!(classify(&DIALECT, "l", "c", "k".into(), &nf, &[]).is_not_found());
    }
}
