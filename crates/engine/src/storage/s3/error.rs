//! The S3 backend's edge: each `object_store` failure becomes one [`StorageError`] variant.
//!
//! Owns: reading the HTTP status and S3 error document out of a failure, the codes that
//! mean "retry", "credentials" or "missing bucket", the TLS hint, and scrubbing secrets
//! and newlines from every detail. Callers read the variant, never the text.

use object_store::client::HttpErrorKind;

pub(super) use crate::storage::objstore_error::scrub;
use crate::storage::objstore_error::{chain_text, find_http_error, xml_tag};
use crate::storage::StorageError;

/// The parts of an S3 error response that a message needs.
#[derive(Debug, Default, PartialEq, Eq)]
struct S3Reply {
    status: Option<u16>,
    code: Option<String>,
    message: Option<String>,
    /// The bucket's real region, when the request went to the wrong one.
    region: Option<String>,
}

impl S3Reply {
    /// Reads the status and error document out of the client's error text.
    ///
    /// Why text: for most requests `object_store` keeps the HTTP status and response body
    /// only in a crate-private error type that ends up in its message
    /// ("Server returned non-2xx status code: 403 Forbidden: <Error>..."). This is the one
    /// place that reads it; callers get variants.
    fn parse(text: &str) -> S3Reply {
        let status = text.find("status code: ").and_then(|i| {
            let digits = text.get(i + 13..i + 16)?;
            digits.parse::<u16>().ok()
        });
        let code = xml_tag(text, "Code");
        // Some servers (Garage) put their region in every error; it names the bucket's
        // real region only when the error is about the region.
        let wrong_region = status == Some(301)
            || code
                .as_deref()
                .is_some_and(|c| WRONG_REGION_CODES.contains(&c));
        S3Reply {
            status,
            message: xml_tag(text, "Message"),
            region: xml_tag(text, "Region").filter(|_| wrong_region),
            code,
        }
    }

    fn describe(&self) -> String {
        let mut s = match (&self.code, &self.message) {
            (Some(c), Some(m)) => format!("{c}: {m}"),
            (Some(c), None) => c.clone(),
            (None, Some(m)) => m.clone(),
            (None, None) => String::new(),
        };
        if let Some(st) = self.status {
            s = if s.is_empty() {
                format!("HTTP {st}")
            } else {
                format!("HTTP {st} {s}")
            };
        }
        if let Some(r) = &self.region {
            s.push_str(&format!(
                " (the bucket is in region {r}: set `region: {r}`)"
            ));
        }
        s
    }
}

const WRONG_REGION_CODES: &[&str] = &[
    "AuthorizationHeaderMalformed",
    "PermanentRedirect",
    "IllegalLocationConstraintException",
];
const AUTH_CODES: &[&str] = &[
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidToken",
    "ExpiredToken",
    "TokenRefreshRequired",
    "AllAccessDisabled",
    "AccountProblem",
    "InvalidSecurity",
    "InvalidClientTokenId",
];
const TRANSIENT_CODES: &[&str] = &[
    "SlowDown",
    "InternalError",
    "ServiceUnavailable",
    "RequestTimeout",
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "TooManyRequests",
    "OperationAborted",
];

const CREDENTIALS_HINT: &str = "check access-key-id and secret-access-key (or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY) and the key's permissions on the bucket";

/// The edge: one `object_store` failure → one [`StorageError`] variant.
pub(super) fn classify(
    location: &str,
    bucket: &str,
    what: String,
    e: &object_store::Error,
    secrets: &[String],
) -> StorageError {
    use object_store::Error as E;
    let location = location.to_string();
    let text = e.to_string();
    let reply = S3Reply::parse(&text);
    let clean = |s: &str| scrub(s, secrets);

    // No response at all: connection refused, DNS, timeouts, resets, TLS.
    if let Some(h) = find_http_error(e) {
        let detail = clean(&chain_text(h));
        let lower = detail.to_ascii_lowercase();
        // rustls's errors, as they read through reqwest (no rustls type to downcast to
        // without depending on it): bad certificates, alerts, and a plain-HTTP peer.
        if [
            "certificate",
            "tls",
            "handshake",
            "corrupt message",
            "alert",
            "peer is incompatible",
            "peer misbehaved",
            "unknownissuer",
            "invalidcertificate",
        ]
        .iter()
        .any(|w| lower.contains(w))
        {
            return StorageError::Permanent {
                location,
                what,
                detail: format!(
                    "TLS failure: {detail} (check the endpoint's certificate and scheme; set AWS_CA_BUNDLE for a private CA, or skip-verify: true)"
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

    let code = reply.code.as_deref().unwrap_or_default();
    let detail = clean(&reply.describe());
    let detail_or_text = || {
        if detail.is_empty() {
            clean(&text)
        } else {
            detail.clone()
        }
    };
    if code == "NoSuchBucket" {
        return StorageError::NotFound {
            location,
            what: format!("bucket {bucket:?}"),
        };
    }
    match e {
        E::NotFound { .. } => return StorageError::NotFound { location, what },
        E::Precondition { .. } | E::AlreadyExists { .. } => {
            return StorageError::Precondition { location, what }
        }
        E::PermissionDenied { .. } | E::Unauthenticated { .. } => {
            return StorageError::PermissionDenied {
                location,
                what,
                detail: format!("{}; {CREDENTIALS_HINT}", detail_or_text()),
            };
        }
        E::NotSupported { .. } | E::NotImplemented { .. } => {
            return StorageError::Permanent {
                location,
                what,
                detail: clean(&text),
            };
        }
        _ => {}
    }
    if AUTH_CODES.contains(&code) || matches!(reply.status, Some(401 | 403)) {
        return StorageError::PermissionDenied {
            location,
            what,
            detail: format!("{}; {CREDENTIALS_HINT}", detail_or_text()),
        };
    }
    if TRANSIENT_CODES.contains(&code)
        || matches!(reply.status, Some(408 | 429 | 500..=599)) && reply.status != Some(507)
    {
        return StorageError::Transient {
            location,
            what,
            detail: detail_or_text(),
        };
    }
    match reply.status {
        Some(404) => StorageError::NotFound { location, what },
        Some(409 | 412) => StorageError::Precondition { location, what },
        Some(507) => StorageError::NoSpace { location, what },
        _ => StorageError::Permanent {
            location,
            what,
            detail: detail_or_text(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_replies() {
        let text = "Generic S3 error: Error performing list request: Error performing GET http://h/b in 2ms - \
                    Server returned non-2xx status code: 403 Forbidden: <?xml version=\"1.0\"?><Error><Code>InvalidAccessKeyId</Code>\
                    <Message>No such key</Message></Error>";
        let r = S3Reply::parse(text);
        assert_eq!(r.status, Some(403));
        assert_eq!(r.code.as_deref(), Some("InvalidAccessKeyId"));
        assert_eq!(r.describe(), "HTTP 403 InvalidAccessKeyId: No such key");
        let r = S3Reply::parse("status code: 400 Bad Request: <Error><Code>AuthorizationHeaderMalformed</Code><Region>eu-west-1</Region></Error>");
        assert!(
            r.describe().contains("set `region: eu-west-1`"),
            "{}",
            r.describe()
        );
        assert_eq!(S3Reply::parse("nothing"), S3Reply::default());
        let garage = "status code: 403 Forbidden: <Error><Code>AccessDenied</Code>\
                      <Message>Forbidden: Invalid signature</Message><Region>garage</Region></Error>";
        assert_eq!(
            S3Reply::parse(garage).describe(),
            "HTTP 403 AccessDenied: Forbidden: Invalid signature"
        );
    }

    #[test]
    fn classification_reads_status_and_code() {
        let generic = |msg: &str| object_store::Error::Generic {
            store: "S3",
            source: msg.to_string().into(),
        };
        let c = |msg: &str| {
            classify(
                "s3://b/p",
                "b",
                "x".into(),
                &generic(msg),
                &["s3cr3t-value".into()],
            )
        };
        assert!(matches!(
            c("status code: 503 Service Unavailable: "),
            StorageError::Transient { .. }
        ));
        assert!(matches!(
            c("status code: 200 OK: <Code>SlowDown</Code>"),
            StorageError::Transient { .. }
        ));
        assert!(
            matches!(c("status code: 404 Not Found: <Code>NoSuchBucket</Code>"), StorageError::NotFound { what, .. } if what == "bucket \"b\"")
        );
        let e = c("status code: 403 Forbidden: <Code>SignatureDoesNotMatch</Code><Message>bad s3cr3t-value\nsig</Message>");
        assert!(matches!(e, StorageError::PermissionDenied { .. }));
        let msg = e.to_string();
        assert!(
            !msg.contains("s3cr3t-value") && !msg.contains('\n') && msg.contains("access-key-id"),
            "{msg}"
        );
        assert!(matches!(
            c("status code: 400 Bad Request: <Code>InvalidArgument</Code>"),
            StorageError::Permanent { .. }
        ));
        assert!(matches!(
            c("status code: 412 Precondition Failed"),
            StorageError::Precondition { .. }
        ));
        let nf = object_store::Error::NotFound {
            path: "k".into(),
            source: "<Code>NoSuchKey</Code>".to_string().into(),
        };
        assert!(classify("l", "b", "k".into(), &nf, &[]).is_not_found());
    }
}
