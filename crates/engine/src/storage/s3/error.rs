//! The S3 backend's edge: each `object_store` failure becomes one
//! [`StorageError`](crate::storage::StorageError) variant.
//!
//! Owns: S3's [`Dialect`] for the shared classification in `objstore_error`: reading the
//! S3 error document (code, message, the bucket's real region) out of a failure, the codes
//! that mean "retry", "credentials" or "missing bucket", HTTP 507 as no space, and the TLS
//! and credentials hints. Callers read the variant, never the text.

use crate::storage::objstore_error::{status_in, xml_tag, Dialect, Reply};

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
    /// place that reads it; callers get kinds.
    fn parse(text: &str) -> S3Reply {
        let status = status_in(text);
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

/// S3's error replies, for the shared classification.
pub(super) const DIALECT: Dialect = Dialect {
    container_noun: "bucket",
    object_noun: "object",
    missing_container_code: "NoSuchBucket",
    auth_codes: AUTH_CODES,
    transient_codes: TRANSIENT_CODES,
    credentials_hint: CREDENTIALS_HINT,
    // rustls's errors, as they read through reqwest (no rustls type to downcast to
    // without depending on it): bad certificates, alerts, and a plain-HTTP peer.
    tls_words: &[
        "certificate",
        "tls",
        "handshake",
        "corrupt message",
        "alert",
        "peer is incompatible",
        "peer misbehaved",
        "unknownissuer",
        "invalidcertificate",
    ],
    tls_hint: "check the endpoint's certificate and scheme; for a private CA, give its PEM bundle in AWS_CA_BUNDLE or SSL_CERT_FILE, or add it to the system trust store",
    no_space_on_507: true,
    read_reply: |text| {
        let r = S3Reply::parse(text);
        Reply {
            status: r.status,
            description: r.describe(),
            code: r.code.unwrap_or_default(),
        }
    },
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::objstore_error::classify;
    use crate::storage::ErrorKind;

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
                &DIALECT,
                "s3://b/p",
                "b",
                "x".into(),
                &generic(msg),
                &["s3cr3t-value".into()],
            )
        };
        assert!(matches!(
            c("status code: 503 Service Unavailable: ").kind(),
            ErrorKind::Transient
        ));
        assert!(matches!(
            c("status code: 200 OK: <Code>SlowDown</Code>").kind(),
            ErrorKind::Transient
        ));
        assert!({
            let e = c("status code: 404 Not Found: <Code>NoSuchBucket</Code>");
            e.kind() == ErrorKind::NotFound && e.what() == "bucket \"b\""
        });
        let e = c("status code: 403 Forbidden: <Code>SignatureDoesNotMatch</Code><Message>bad s3cr3t-value\nsig</Message>");
        assert!(matches!(e.kind(), ErrorKind::PermissionDenied));
        let msg = e.to_string();
        assert!(
            !msg.contains("s3cr3t-value") && !msg.contains('\n') && msg.contains("access-key-id"),
            "{msg}"
        );
        assert!(matches!(
            c("status code: 400 Bad Request: <Code>InvalidArgument</Code>").kind(),
            ErrorKind::Permanent
        ));
        assert!(matches!(
            c("status code: 412 Precondition Failed").kind(),
            ErrorKind::Precondition
        ));
        let nf = object_store::Error::NotFound {
            path: "k".into(),
            source: "<Code>NoSuchKey</Code>".to_string().into(),
        };
        assert!(classify(&DIALECT, "l", "b", "k".into(), &nf, &[]).is_not_found());
    }
}
