//! The S3 backend's configuration: [`S3Options`] checked and turned into a client.
//!
//! Owns: defaults (region, part size, concurrency), where credentials come from (options,
//! then `AWS_*`, then `LITESTREAM_*`, then the AWS chain), endpoint styles, SSE settings,
//! `AWS_CA_BUNDLE`, TLS verification (and the warnings, on every start, about
//! `skip-verify` and about credentials or an SSE-C key sent over plain HTTP to another
//! machine), and which of the shared object-store settings S3 uses (layout, metadata key,
//! error dialect, parts, storage class). Makes no request.

use std::fmt;

use std::sync::Arc;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::{Attribute, Attributes, Certificate};

use crate::storage::objstore::{
    client_options, parse_prefix, plain_http_warning, retry_config, trim_endpoint,
    ObjectStoreReplica, SharedHttp, SKIP_VERIFY_WARNING,
};
use crate::storage::objstore_error::scrub;
use crate::storage::{Layout, StorageError};

/// Files larger than this go up in parts (Litestream's default part size).
pub const DEFAULT_PART_SIZE_BYTES: u64 = 5 * 1024 * 1024;

/// S3's limits on a part (every part but the last).
const MIN_PART_SIZE_BYTES: u64 = 5 * 1024 * 1024;
const MAX_PART_SIZE_BYTES: u64 = 5 * 1024 * 1024 * 1024;

/// Parts of one file in flight at once (Litestream's default `concurrency`).
pub const DEFAULT_CONCURRENCY: usize = 5;

/// Environment variables handed to the client's credential chain when no keys are given:
/// web identity (EKS) and container credentials (ECS). Without them the client asks the
/// EC2 instance metadata service.
const CREDENTIAL_CHAIN_ENV: &[&str] = &[
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
    "AWS_ENDPOINT_URL_STS",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
];

/// Where and how to reach a bucket. Secrets never print (`Debug` shows `***`).
#[derive(Clone, Default)]
pub struct S3Options {
    pub bucket: String,
    /// Key prefix without leading or trailing `/`; may be empty.
    pub prefix: String,
    /// With a scheme (`http://127.0.0.1:3900`); `None` is AWS.
    pub endpoint: Option<String>,
    /// Default: `us-east-1` with an endpoint, else `$AWS_REGION`/`$AWS_DEFAULT_REGION`,
    /// else `us-east-1`.
    pub region: Option<String>,
    /// `https://endpoint/bucket/key` rather than `https://bucket.endpoint/key`.
    pub force_path_style: bool,
    /// Default: `$AWS_ACCESS_KEY_ID`, else `$LITESTREAM_ACCESS_KEY_ID`, else the AWS chain.
    pub access_key_id: Option<String>,
    /// Default: `$AWS_SECRET_ACCESS_KEY`, else `$LITESTREAM_SECRET_ACCESS_KEY`.
    pub secret_access_key: Option<String>,
    /// Accept any TLS certificate.
    pub skip_verify: bool,
    pub sse_kms_key_id: Option<String>,
    /// SSE-C key (AES256): 32 raw bytes or their base64.
    pub sse_customer_key: Option<String>,
    /// Default [`DEFAULT_PART_SIZE_BYTES`]; at least 5 MiB.
    pub part_size: Option<u64>,
    /// Parts uploaded at once. Default [`DEFAULT_CONCURRENCY`].
    pub concurrency: Option<usize>,
    pub storage_class: Option<String>,
    /// Sign the payload's SHA-256 (default true); false sends `UNSIGNED-PAYLOAD`.
    pub sign_payload: Option<bool>,
    /// Litestream's `require-content-md5` (default true): deletes go as DeleteObjects
    /// batches of up to 1000 keys, which carry `Content-MD5` (S3 requires it there; no
    /// other request carries one). False: one DELETE request per object instead, with no
    /// `Content-MD5`, for providers that reject it; DELETE requests are free on AWS S3.
    pub require_content_md5: Option<bool>,
}

impl fmt::Debug for S3Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |o: &Option<String>| o.as_ref().map(|_| "***");
        f.debug_struct("S3Options")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint.as_deref().map(display_endpoint))
            .field("region", &self.region)
            .field("force_path_style", &self.force_path_style)
            .field("access_key_id", &redacted(&self.access_key_id))
            .field("secret_access_key", &redacted(&self.secret_access_key))
            .field("skip_verify", &self.skip_verify)
            .field("sse_kms_key_id", &self.sse_kms_key_id)
            .field("sse_customer_key", &redacted(&self.sse_customer_key))
            .field("part_size", &self.part_size)
            .field("concurrency", &self.concurrency)
            .field("storage_class", &self.storage_class)
            .field("sign_payload", &self.sign_payload)
            .field("require_content_md5", &self.require_content_md5)
            .finish()
    }
}

/// Checks `opts` and builds the client with S3's layout, metadata key, error dialect,
/// part size and storage class; `env` reads environment variables. Errors are `Permanent`
/// and name the replica.
pub(super) fn build(
    opts: S3Options,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ObjectStoreReplica, StorageError> {
    let prefix_str = opts.prefix.trim_matches('/').to_string();
    let endpoint = trim_endpoint(opts.endpoint.as_deref());
    let location = match &endpoint {
        Some(e) => format!(
            "s3://{}/{} ({})",
            opts.bucket,
            prefix_str,
            display_endpoint(e)
        ),
        None => format!("s3://{}/{}", opts.bucket, prefix_str),
    };
    let bad =
        |detail: String| StorageError::permanent(location.clone(), "replica configuration", detail);

    if opts.bucket.is_empty() {
        return Err(bad("no bucket given".into()));
    }
    let prefix = parse_prefix(&prefix_str).map_err(bad)?;
    let part_size_bytes = opts.part_size.unwrap_or(DEFAULT_PART_SIZE_BYTES);
    if !(MIN_PART_SIZE_BYTES..=MAX_PART_SIZE_BYTES).contains(&part_size_bytes) {
        return Err(bad(format!(
            "part-size {part_size_bytes} is outside S3's limits (5 MiB to 5 GiB)"
        )));
    }
    let concurrency = opts.concurrency.unwrap_or(DEFAULT_CONCURRENCY).max(1);

    let (mut b, allow_http) = addressing(&opts, endpoint.as_deref()).map_err(bad)?;
    let region = opts
        .region
        .clone()
        .filter(|r| !r.is_empty())
        .or_else(|| {
            if endpoint.is_some() {
                None
            } else {
                env("AWS_REGION").or_else(|| env("AWS_DEFAULT_REGION"))
            }
        })
        .unwrap_or_else(|| "us-east-1".to_string());
    b = b.with_region(region);

    let mut secrets = Vec::new();
    // What travels with each request, for the plain-HTTP warning.
    let mut sent: Vec<&str> = Vec::new();
    b = credentials(b, &opts, endpoint.is_some(), env, &mut secrets, &mut sent).map_err(bad)?;

    b = encryption(b, &opts, &mut secrets, &mut sent).map_err(bad)?;
    if opts.require_content_md5 == Some(false) {
        b = b.with_disable_bulk_delete(true);
    }
    if opts.sign_payload == Some(false) {
        b = b.with_unsigned_payload(true);
    }

    for w in transport_warnings(endpoint.as_deref(), opts.skip_verify, &sent) {
        tracing::warn!(replica = %location, "{w}");
    }
    let client = client_options(allow_http).with_allow_invalid_certificates(opts.skip_verify);
    // The client does not read AWS_CA_BUNDLE itself; AWS SDKs (and so Litestream) do. The
    // bundle is parsed once per process and handed to the shared HTTP client, not copied
    // into every replica's settings.
    let bundle = env("AWS_CA_BUNDLE");
    let roots = match &bundle {
        Some(path) => Some(ca_bundle(path).map_err(bad)?),
        None => None,
    };
    let shared = SharedHttp::new(
        format!(
            "s3|{allow_http}|{}|{}",
            opts.skip_verify,
            bundle.as_deref().unwrap_or("")
        ),
        roots,
    );
    b = b
        .with_client_options(client)
        .with_http_connector(shared)
        .with_retry(retry_config());

    let store = b
        .build()
        .map_err(|e| bad(scrub(&e.to_string(), &secrets)))?;
    secrets.retain(|s| !s.is_empty());
    let mut base_attributes = Attributes::new();
    if let Some(c) = opts.storage_class.filter(|s| !s.is_empty()) {
        base_attributes.insert(Attribute::StorageClass, c.into());
    }
    Ok(ObjectStoreReplica {
        store: Arc::new(store),
        container: opts.bucket,
        prefix,
        location,
        secrets,
        layout: Layout::HexLevel,
        timestamp_key: super::TIMESTAMP_METADATA,
        dialect: &super::error::DIALECT,
        part_size_bytes: usize::try_from(part_size_bytes).unwrap_or(usize::MAX),
        part_concurrency: concurrency,
        base_attributes,
        // S3 answers a range past the end with what there is; only an empty range needs a HEAD.
        head_before_range: false,
    })
}

/// The builder for `opts.bucket` at `endpoint` (AWS when `None`), path-style or
/// virtual-hosted, and whether plain HTTP is allowed.
fn addressing(opts: &S3Options, endpoint: Option<&str>) -> Result<(AmazonS3Builder, bool), String> {
    let mut b = AmazonS3Builder::new().with_bucket_name(&opts.bucket);
    let mut allow_http = false;
    match endpoint {
        Some(e) => {
            allow_http = e.starts_with("http://");
            if !e.starts_with("http://") && !e.starts_with("https://") {
                return Err(format!(
                    "endpoint {:?} needs http:// or https://",
                    display_endpoint(e)
                ));
            }
            if opts.force_path_style {
                b = b.with_endpoint(e).with_virtual_hosted_style_request(false);
            } else {
                // The client takes a virtual-hosted endpoint with the bucket already in
                // the host, as AWS SDKs build it.
                b = b
                    .with_endpoint(bucket_in_host(e, &opts.bucket))
                    .with_virtual_hosted_style_request(true);
            }
        }
        None => b = b.with_virtual_hosted_style_request(!opts.force_path_style),
    }
    Ok((b, allow_http))
}

/// The credentials: explicit keys, else `AWS_*` keys, else `LITESTREAM_*` keys, else the
/// client's credential chain (web identity, container, instance). Adds what must be
/// scrubbed from messages to `secrets` and what travels with requests to `sent`.
fn credentials(
    mut b: AmazonS3Builder,
    opts: &S3Options,
    custom_endpoint: bool,
    env: &dyn Fn(&str) -> Option<String>,
    secrets: &mut Vec<String>,
    sent: &mut Vec<&'static str>,
) -> Result<AmazonS3Builder, String> {
    let (key_id, secret, token) = match (&opts.access_key_id, &opts.secret_access_key) {
        (Some(k), Some(s)) => (Some(k.clone()), Some(s.clone()), None),
        (None, None) => match (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
            (Some(k), Some(s)) => (Some(k), Some(s), env("AWS_SESSION_TOKEN")),
            _ => (
                env("LITESTREAM_ACCESS_KEY_ID"),
                env("LITESTREAM_SECRET_ACCESS_KEY"),
                None,
            ),
        },
        (Some(_), None) => return Err("access-key-id is given without secret-access-key".into()),
        (None, Some(_)) => return Err("secret-access-key is given without access-key-id".into()),
    };
    match (key_id, secret) {
        (Some(k), Some(s)) => {
            secrets.push(s.clone());
            sent.push("the access key id with signed (replayable) requests");
            b = b.with_access_key_id(k).with_secret_access_key(s);
            if let Some(t) = token {
                secrets.push(t.clone());
                sent.push("the session token");
                b = b.with_token(t);
            }
        }
        (None, None) => {
            let mut chain = false;
            for name in CREDENTIAL_CHAIN_ENV {
                if let (Some(v), Ok(key)) = (
                    env(name),
                    name.to_ascii_lowercase().parse::<AmazonS3ConfigKey>(),
                ) {
                    chain = true;
                    b = b.with_config(key, v);
                }
            }
            // Without keys the client would fall back to the EC2 instance metadata
            // service, which a custom endpoint almost never goes with: say so now
            // rather than after its timeouts.
            if custom_endpoint && !chain {
                return Err("no credentials: set access-key-id and secret-access-key (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)".into());
            }
            sent.push("temporary credentials (session token)");
        }
        _ => {
            return Err(
                "LITESTREAM_ACCESS_KEY_ID and LITESTREAM_SECRET_ACCESS_KEY must be set together"
                    .into(),
            )
        }
    }
    Ok(b)
}

/// Server-side encryption: SSE-KMS or SSE-C (whose key is a secret that travels).
fn encryption(
    mut b: AmazonS3Builder,
    opts: &S3Options,
    secrets: &mut Vec<String>,
    sent: &mut Vec<&'static str>,
) -> Result<AmazonS3Builder, String> {
    match (&opts.sse_kms_key_id, &opts.sse_customer_key) {
        (Some(_), Some(_)) => {
            return Err("sse-kms-key-id and an SSE-C key cannot be used together".into())
        }
        (Some(kms), None) => b = b.with_sse_kms_encryption(kms),
        (None, Some(key)) => {
            let key = sse_customer_key_base64(key.as_bytes())?;
            secrets.push(key.clone());
            secrets.push(opts.sse_customer_key.clone().unwrap_or_default());
            sent.push("the SSE-C encryption key");
            b = b.with_ssec_encryption(key);
        }
        (None, None) => {}
    }
    Ok(b)
}

/// What is unsafe about how this replica's requests travel, one warning each: TLS checks
/// turned off, or `sent` (credentials, an SSE-C key) going over plain HTTP to another
/// machine. `build` logs them on every start, naming the replica.
fn transport_warnings(endpoint: Option<&str>, skip_verify: bool, sent: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    if skip_verify {
        out.push(SKIP_VERIFY_WARNING.to_string());
    }
    out.extend(plain_http_warning(endpoint, sent));
    out
}

/// An SSE-C key as S3 takes it, base64 of 32 bytes, from either the 32 raw bytes or
/// their base64 (Litestream accepts both).
pub fn sse_customer_key_base64(key: &[u8]) -> Result<String, String> {
    if key.len() == 32 {
        return Ok(base64_encode(key));
    }
    let text = std::str::from_utf8(key).map(str::trim).unwrap_or_default();
    let b64 = |c: u8| c.is_ascii_alphanumeric() || c == b'+' || c == b'/';
    if text.len() == 44
        && text.ends_with('=')
        && !text.ends_with("==")
        && text.bytes().take(43).all(b64)
    {
        return Ok(text.to_string());
    }
    Err(format!(
        "the SSE-C key must be 32 bytes or their base64 (44 characters), not {} bytes",
        key.len()
    ))
}

fn base64_encode(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &b)| acc | (u32::from(b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// An endpoint for messages: without user info, query or fragment.
fn display_endpoint(endpoint: &str) -> String {
    let (scheme, rest) = endpoint.split_once("://").unwrap_or(("", endpoint));
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let mut s = if scheme.is_empty() {
        host.to_string()
    } else {
        format!("{scheme}://{host}")
    };
    if !path.is_empty() {
        s.push('/');
        s.push_str(path);
    }
    s
}

/// The certificates of a CA bundle file, read and parsed once per process.
fn ca_bundle(path: &str) -> Result<Arc<Vec<Certificate>>, String> {
    type Bundles = std::sync::Mutex<std::collections::HashMap<String, Arc<Vec<Certificate>>>>;
    static BUNDLES: std::sync::OnceLock<Bundles> = std::sync::OnceLock::new();
    let mut cache = BUNDLES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(c) = cache.get(path) {
        return Ok(c.clone());
    }
    let pem = std::fs::read(path).map_err(|e| format!("reading AWS_CA_BUNDLE {path}: {e}"))?;
    let certs = Arc::new(
        Certificate::from_pem_bundle(&pem).map_err(|e| format!("AWS_CA_BUNDLE {path}: {e}"))?,
    );
    cache.insert(path.to_string(), certs.clone());
    Ok(certs)
}

/// `https://host:port/p` → `https://bucket.host:port/p` (virtual-hosted style).
fn bucket_in_host(endpoint: &str, bucket: &str) -> String {
    match endpoint.split_once("://") {
        Some((scheme, rest)) => format!("{scheme}://{bucket}.{rest}"),
        None => format!("{bucket}.{endpoint}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_c_keys() {
        let raw = [7u8; 32];
        let b64 = sse_customer_key_base64(&raw).unwrap();
        assert_eq!(b64, "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=");
        assert_eq!(sse_customer_key_base64(b64.as_bytes()).unwrap(), b64);
        assert_eq!(
            sse_customer_key_base64(format!("{b64}\n").as_bytes()).unwrap(),
            b64
        );
        assert!(sse_customer_key_base64(b"short").is_err());
        assert_eq!(base64_encode(b"ab"), "YWI=");
        assert_eq!(base64_encode(b"abc"), "YWJj");
        assert_eq!(base64_encode(b"a"), "YQ==");
    }

    #[test]
    fn endpoints_for_messages() {
        assert_eq!(
            display_endpoint("https://user:pw@s3.example.com:9000/x?token=1"),
            "https://s3.example.com:9000/x"
        );
        assert_eq!(
            display_endpoint("http://127.0.0.1:3900"),
            "http://127.0.0.1:3900"
        );
        assert_eq!(
            bucket_in_host("https://s3.example.com", "b"),
            "https://b.s3.example.com"
        );
    }

    #[test]
    fn options_are_checked_without_io() {
        let env = |_: &str| None;
        let base = S3Options {
            bucket: "b".into(),
            prefix: "/db/x/".into(),
            endpoint: Some("http://u:p@127.0.0.1:3900/".into()),
            access_key_id: Some("GK1".into()),
            secret_access_key: Some("hunter2".into()),
            force_path_style: true,
            ..Default::default()
        };
        let s = build(base.clone(), &env).unwrap();
        assert_eq!(s.location, "s3://b/db/x (http://127.0.0.1:3900)");
        assert_eq!(s.prefix.as_ref().map(|p| p.as_ref()), Some("db/x"));
        assert_eq!(s.secrets, ["hunter2"]);
        assert!(!format!("{base:?}").contains("hunter2"));

        let err = |o: S3Options| build(o, &env).unwrap_err().to_string();
        assert!(err(S3Options {
            part_size: Some(1024),
            ..base.clone()
        })
        .contains("part-size"));
        assert!(err(S3Options {
            access_key_id: None,
            secret_access_key: None,
            ..base.clone()
        })
        .contains("no credentials"));
        assert!(err(S3Options {
            sse_customer_key: Some("short".into()),
            ..base.clone()
        })
        .contains("SSE-C"));
        let e = err(S3Options {
            secret_access_key: None,
            ..base.clone()
        });
        assert!(
            e.contains("without secret-access-key") && e.starts_with("s3://b/db/x"),
            "{e}"
        );

        let lit = |k: &str| match k {
            "LITESTREAM_ACCESS_KEY_ID" => Some("LK".to_string()),
            "LITESTREAM_SECRET_ACCESS_KEY" => Some("LS".to_string()),
            _ => None,
        };
        let s = build(
            S3Options {
                access_key_id: None,
                secret_access_key: None,
                prefix: String::new(),
                ..base
            },
            &lit,
        )
        .unwrap();
        assert_eq!((s.prefix, s.secrets), (None, vec!["LS".to_string()]));
    }

    #[test]
    fn insecure_transports_are_warned_about() {
        let keys: &[&str] = &["the access key id with signed (replayable) requests"];
        let w = transport_warnings(Some("https://s3.example.com"), true, keys);
        assert_eq!(w.len(), 1);
        assert!(
            w[0].contains("skip-verify") && w[0].contains("SSL_CERT_FILE"),
            "{w:?}"
        );
        let w = transport_warnings(Some("http://s3.example.com"), false, keys);
        assert!(w.len() == 1 && w[0].contains("access key id"), "{w:?}");
        assert!(transport_warnings(Some("http://127.0.0.1:3900"), false, keys).is_empty());
        assert!(transport_warnings(None, false, keys).is_empty());
        // The hint on a TLS failure points at the CA bundle, not at skip-verify.
        let hint = crate::storage::s3::error::DIALECT.tls_hint;
        assert!(
            !hint.contains("skip-verify") && hint.contains("SSL_CERT_FILE"),
            "{hint}"
        );
    }

    #[test]
    fn built_replicas_never_print_their_secrets() {
        let sse = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";
        let s = build(
            S3Options {
                bucket: "b".into(),
                endpoint: Some("http://127.0.0.1:3900".into()),
                access_key_id: Some("GK1".into()),
                secret_access_key: Some("hunter2".into()),
                sse_customer_key: Some(sse.into()),
                force_path_style: true,
                ..Default::default()
            },
            &|_| None,
        )
        .unwrap();
        let dbg = format!("{s:?}");
        assert!(
            !dbg.contains("hunter2") && !dbg.contains(sse) && dbg.contains("s3://b/"),
            "{dbg}"
        );
    }
}
