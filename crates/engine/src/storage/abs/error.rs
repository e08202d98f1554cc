//! The ABS backend's edge: each `object_store` failure becomes one [`StorageError`] variant.
//!
//! Owns: Azure's error codes that mean "retry", "credentials" or "missing container", the
//! statuses behind them, and scrubbing secrets from every detail (through the shared
//! helpers). Callers read the variant, never the text.

use object_store::client::HttpErrorKind;

use crate::storage::objstore_error::{chain_text, find_http_error, scrub, status_in, xml_tag};
use crate::storage::StorageError;

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

/// The edge: one `object_store` failure → one [`StorageError`] variant.
pub(super) fn classify(
    location: &str,
    container: &str,
    what: String,
    e: &object_store::Error,
    secrets: &[String],
) -> StorageError {
    use object_store::Error as E;
    let location = location.to_string();
    let text = e.to_string();
    let clean = |s: &str| scrub(s, secrets);

    // No response at all: connection refused, DNS, timeouts, resets, TLS.
    if let Some(h) = find_http_error(e) {
        let detail = clean(&chain_text(h));
        let lower = detail.to_ascii_lowercase();
        if ["certificate", "tls", "handshake", "peer is incompatible"]
            .iter()
            .any(|w| lower.contains(w))
        {
            return StorageError::Permanent {
                location,
                what,
                detail: format!(
                    "TLS failure: {detail} (check the endpoint's certificate and scheme)"
                ),
            };
        }
        let detail = match h.kind() {
            HttpErrorKind::Connect => format!("cannot connect to the endpoint: {detail}"),
            HttpErrorKind::Timeout => format!("no answer in time: {detail}"),
            _ => detail,
        };
        return match h.kind() {
            HttpErrorKind::Connect
            | HttpErrorKind::Request
            | HttpErrorKind::Timeout
            | HttpErrorKind::Interrupted
            | HttpErrorKind::Decode => StorageError::Transient {
                location,
                what,
                detail,
            },
            _ => StorageError::Permanent {
                location,
                what,
                detail,
            },
        };
    }

    let status = status_in(&text);
    let code = xml_tag(&text, "Code").unwrap_or_default();
    let detail = {
        let mut d = match (code.as_str(), xml_tag(&text, "Message")) {
            ("", None) => String::new(),
            (c, None) => c.to_string(),
            ("", Some(m)) => m,
            // Azure's messages carry a request id and time after a newline.
            (c, Some(m)) => format!("{c}: {}", m.lines().next().unwrap_or_default()),
        };
        if let Some(st) = status {
            d = if d.is_empty() {
                format!("HTTP {st}")
            } else {
                format!("HTTP {st} {d}")
            };
        }
        if d.is_empty() {
            clean(&text)
        } else {
            clean(&d)
        }
    };
    if code == NOT_FOUND_CONTAINER {
        return StorageError::NotFound {
            location,
            what: format!("container {container:?}"),
        };
    }
    let denied = |detail: String| StorageError::PermissionDenied {
        location: location.clone(),
        what: what.clone(),
        detail: format!("{detail}; {CREDENTIALS_HINT}"),
    };
    match e {
        E::NotFound { .. } => return StorageError::NotFound { location, what },
        E::Precondition { .. } | E::AlreadyExists { .. } => {
            return StorageError::Precondition { location, what }
        }
        E::PermissionDenied { .. } | E::Unauthenticated { .. } => return denied(detail),
        E::NotSupported { .. } | E::NotImplemented { .. } => {
            return StorageError::Permanent {
                location,
                what,
                detail: clean(&text),
            };
        }
        _ => {}
    }
    if AUTH_CODES.contains(&code.as_str()) || matches!(status, Some(401 | 403)) {
        return denied(detail);
    }
    if TRANSIENT_CODES.contains(&code.as_str()) || matches!(status, Some(408 | 429 | 500..=599)) {
        return StorageError::Transient {
            location,
            what,
            detail,
        };
    }
    match status {
        Some(404) => StorageError::NotFound { location, what },
        Some(409 | 412) => StorageError::Precondition { location, what },
        _ => StorageError::Permanent {
            location,
            what,
            detail,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_reads_status_and_code() {
        let generic = |msg: &str| object_store::Error::Generic {
            store: "MicrosoftAzure",
            source: msg.to_string().into(),
        };
        let c = |msg: &str| {
            classify(
                "abs://c/p",
                "c",
                "x".into(),
                &generic(msg),
                &["s3cr3t-value".into()],
            )
        };
        assert!(matches!(
            c("status code: 503 Service Unavailable: <Code>ServerBusy</Code>"),
            StorageError::Transient { .. }
        ));
        assert!(
            matches!(c("status code: 404 Not Found: <Code>ContainerNotFound</Code>"), StorageError::NotFound { what, .. } if what == "container \"c\"")
        );
        let e = c("status code: 403 Forbidden: <Code>AuthenticationFailed</Code><Message>bad s3cr3t-value\nRequestId:1</Message>");
        assert!(matches!(e, StorageError::PermissionDenied { .. }));
        let msg = e.to_string();
        assert!(
            !msg.contains("s3cr3t-value")
                && !msg.contains("RequestId")
                && msg.contains("account-key"),
            "{msg}"
        );
        assert!(matches!(
            c("status code: 400 Bad Request: <Code>InvalidHeaderValue</Code>"),
            StorageError::Permanent { .. }
        ));
        assert!(matches!(
            c("status code: 409 Conflict: <Code>BlobAlreadyExists</Code>"),
            StorageError::Precondition { .. }
        ));
        let nf = object_store::Error::NotFound {
            path: "k".into(),
            source: "<Code>BlobNotFound</Code>".to_string().into(),
        };
        assert!(classify("l", "c", "k".into(), &nf, &[]).is_not_found());
    }
}
