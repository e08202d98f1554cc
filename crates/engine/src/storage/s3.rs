//! The S3 backend: a replica in an S3-compatible bucket (AWS S3, Garage, MinIO, R2, ...).
//!
//! Owns: mapping [`ReplicaStore`] calls onto `<prefix>/<level %04x>/<min>-<max>.ltx` objects
//! (Litestream's S3 layout, spelled only by [`Layout::HexLevel`]); the `litestream-timestamp`
//! object metadata that carries each file's creation time; multipart uploads of large files;
//! conditional creates; and the translation of `object_store` failures into [`StorageError`]
//! variants, so callers decide retries from the variant alone.
//!
//! Does not: retry for long (the client retries a few times within seconds; the uploader
//! owns backoff), discover a bucket's region (give `region`; AWS answers a wrong one with
//! an error naming the right one, which we pass on), or send `Content-MD5` (the client signs
//! the payload's SHA-256 instead).
//!
//! Fed by replicate/restore through `dyn ReplicaStore`; feeds Apache Arrow's `object_store`
//! S3 client, which signs requests (SigV4) from explicit keys, `AWS_*`/`LITESTREAM_*`
//! variables, web identity, container or instance credentials.

use std::error::Error as StdError;
use std::fmt;
use std::ops::Range;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, StreamExt, TryStreamExt};
use ltx::Level;
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::client::{HttpError, HttpErrorKind};
use object_store::path::Path;
use object_store::{
    Attribute, Attributes, BackoffConfig, Certificate, ClientOptions, GetOptions, GetRange, ObjectStore,
    PutMode, PutMultipartOptions, PutOptions, PutPayload, RetryConfig, WriteMultipart,
};

use super::layout::{Layout, LtxInfo, LtxKey};
use super::{ReplicaStore, StorageError};

/// The object metadata key holding a file's creation time (Litestream's name), as
/// RFC 3339 with up to nanoseconds, UTC.
pub const TIMESTAMP_METADATA: &str = "litestream-timestamp";

/// Files larger than this go up in parts (Litestream's default part size).
pub const DEFAULT_PART_SIZE_BYTES: u64 = 5 * 1024 * 1024;

/// S3's limits on a part (every part but the last).
const MIN_PART_SIZE_BYTES: u64 = 5 * 1024 * 1024;
const MAX_PART_SIZE_BYTES: u64 = 5 * 1024 * 1024 * 1024;

/// Parts of one file in flight at once (Litestream's default `concurrency`).
pub const DEFAULT_CONCURRENCY: usize = 5;

/// HEAD requests in flight while reading exact timestamps.
const HEAD_CONCURRENCY: usize = 16;

/// Environment variables handed to the client's credential chain when no keys are given:
/// web identity (EKS), container credentials (ECS), and the session token.
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
            .finish()
    }
}

/// A replica in an S3 bucket.
#[derive(Debug)]
pub struct S3Store {
    store: AmazonS3,
    bucket: String,
    /// `None` for an empty prefix.
    prefix: Option<Path>,
    location: String,
    part_size_bytes: u64,
    concurrency: usize,
    storage_class: Option<String>,
    /// Values scrubbed from every error text, should a server echo one back.
    secrets: Vec<String>,
}

impl S3Store {
    /// Builds the client; no request is made. Errors are `Permanent` and name the replica.
    pub fn new(opts: S3Options) -> Result<S3Store, StorageError> {
        S3Store::with_env(opts, &|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    fn with_env(opts: S3Options, env: &dyn Fn(&str) -> Option<String>) -> Result<S3Store, StorageError> {
        let prefix_str = opts.prefix.trim_matches('/').to_string();
        let endpoint = opts.endpoint.as_deref().map(|e| e.trim_end_matches('/').to_string()).filter(|e| !e.is_empty());
        let location = match &endpoint {
            Some(e) => format!("s3://{}/{} ({})", opts.bucket, prefix_str, display_endpoint(e)),
            None => format!("s3://{}/{}", opts.bucket, prefix_str),
        };
        let bad = |detail: String| StorageError::Permanent { location: location.clone(), what: "replica configuration".into(), detail };

        if opts.bucket.is_empty() {
            return Err(bad("no bucket given".into()));
        }
        let prefix = match prefix_str.as_str() {
            "" => None,
            p => Some(Path::parse(p).map_err(|e| bad(format!("invalid path {p:?}: {e}")))?),
        };
        let part_size_bytes = opts.part_size.unwrap_or(DEFAULT_PART_SIZE_BYTES);
        if !(MIN_PART_SIZE_BYTES..=MAX_PART_SIZE_BYTES).contains(&part_size_bytes) {
            return Err(bad(format!("part-size {part_size_bytes} is outside S3's limits (5 MiB to 5 GiB)")));
        }
        let concurrency = opts.concurrency.unwrap_or(DEFAULT_CONCURRENCY).max(1);

        let mut b = AmazonS3Builder::new().with_bucket_name(&opts.bucket);
        let mut allow_http = false;
        match &endpoint {
            Some(e) => {
                allow_http = e.starts_with("http://");
                if !e.starts_with("http://") && !e.starts_with("https://") {
                    return Err(bad(format!("endpoint {:?} needs http:// or https://", display_endpoint(e))));
                }
                if opts.force_path_style {
                    b = b.with_endpoint(e).with_virtual_hosted_style_request(false);
                } else {
                    // The client takes a virtual-hosted endpoint with the bucket already in
                    // the host, as AWS SDKs build it.
                    b = b.with_endpoint(bucket_in_host(e, &opts.bucket)).with_virtual_hosted_style_request(true);
                }
            }
            None => b = b.with_virtual_hosted_style_request(!opts.force_path_style),
        }
        let region = opts
            .region
            .clone()
            .filter(|r| !r.is_empty())
            .or_else(|| if endpoint.is_some() { None } else { env("AWS_REGION").or_else(|| env("AWS_DEFAULT_REGION")) })
            .unwrap_or_else(|| "us-east-1".to_string());
        b = b.with_region(region);

        let mut secrets = Vec::new();
        let (key_id, secret, token) = match (&opts.access_key_id, &opts.secret_access_key) {
            (Some(k), Some(s)) => (Some(k.clone()), Some(s.clone()), None),
            (None, None) => match (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
                (Some(k), Some(s)) => (Some(k), Some(s), env("AWS_SESSION_TOKEN")),
                _ => (env("LITESTREAM_ACCESS_KEY_ID"), env("LITESTREAM_SECRET_ACCESS_KEY"), None),
            },
            (Some(_), None) => return Err(bad("access-key-id is given without secret-access-key".into())),
            (None, Some(_)) => return Err(bad("secret-access-key is given without access-key-id".into())),
        };
        match (key_id, secret) {
            (Some(k), Some(s)) => {
                secrets.push(s.clone());
                b = b.with_access_key_id(k).with_secret_access_key(s);
                if let Some(t) = token {
                    secrets.push(t.clone());
                    b = b.with_token(t);
                }
            }
            (None, None) => {
                let mut chain = false;
                for name in CREDENTIAL_CHAIN_ENV {
                    if let (Some(v), Ok(key)) = (env(name), name.to_ascii_lowercase().parse::<AmazonS3ConfigKey>()) {
                        chain = true;
                        b = b.with_config(key, v);
                    }
                }
                // Without keys the client would fall back to the EC2 instance metadata
                // service, which a custom endpoint almost never goes with: say so now
                // rather than after its timeouts.
                if endpoint.is_some() && !chain {
                    return Err(bad("no credentials: set access-key-id and secret-access-key (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)".into()));
                }
            }
            _ => return Err(bad("LITESTREAM_ACCESS_KEY_ID and LITESTREAM_SECRET_ACCESS_KEY must be set together".into())),
        }

        match (&opts.sse_kms_key_id, &opts.sse_customer_key) {
            (Some(_), Some(_)) => return Err(bad("sse-kms-key-id and an SSE-C key cannot be used together".into())),
            (Some(kms), None) => b = b.with_sse_kms_encryption(kms),
            (None, Some(key)) => {
                let key = sse_customer_key_base64(key.as_bytes()).map_err(bad)?;
                secrets.push(key.clone());
                secrets.push(opts.sse_customer_key.clone().unwrap_or_default());
                b = b.with_ssec_encryption(key);
            }
            (None, None) => {}
        }
        if opts.sign_payload == Some(false) {
            b = b.with_unsigned_payload(true);
        }

        let mut client = ClientOptions::new()
            .with_allow_http(allow_http)
            .with_allow_invalid_certificates(opts.skip_verify)
            .with_connect_timeout(Duration::from_secs(5))
            // Per request: a 5 MiB part on a slow link must fit.
            .with_timeout(Duration::from_secs(120));
        // The client does not read AWS_CA_BUNDLE itself; AWS SDKs (and so Litestream) do.
        if let Some(bundle) = env("AWS_CA_BUNDLE") {
            let pem = std::fs::read(&bundle).map_err(|e| bad(format!("reading AWS_CA_BUNDLE {bundle}: {e}")))?;
            let certs = Certificate::from_pem_bundle(&pem).map_err(|e| bad(format!("AWS_CA_BUNDLE {bundle}: {e}")))?;
            for c in certs {
                client = client.with_root_certificate(c);
            }
        }
        b = b.with_client_options(client);
        // A few quick attempts so a dead endpoint fails in seconds; the uploader retries
        // with its own backoff, and restore reports the error.
        b = b.with_retry(RetryConfig {
            backoff: BackoffConfig { init_backoff: Duration::from_millis(100), max_backoff: Duration::from_secs(2), base: 2.0 },
            max_retries: 3,
            retry_timeout: Duration::from_secs(10),
        });

        let store = b.build().map_err(|e| bad(scrub(&e.to_string(), &secrets)))?;
        secrets.retain(|s| !s.is_empty());
        Ok(S3Store {
            store,
            bucket: opts.bucket,
            prefix,
            location,
            part_size_bytes,
            concurrency,
            storage_class: opts.storage_class.filter(|s| !s.is_empty()),
            secrets,
        })
    }

    /// The object path of `rel` (a path relative to the replica root).
    fn path(&self, rel: &str) -> Path {
        match &self.prefix {
            Some(p) => rel.split('/').fold(p.clone(), |acc, part| acc.child(part)),
            None => Path::from_iter(rel.split('/')),
        }
    }

    fn key_path(&self, key: &LtxKey) -> Path {
        self.path(&Layout::HexLevel.key_path(key))
    }

    fn attributes(&self, created: Option<SystemTime>) -> Attributes {
        let mut a = Attributes::new();
        if let Some(t) = created {
            a.insert(Attribute::Metadata(TIMESTAMP_METADATA.into()), format_timestamp(t).into());
        }
        if let Some(c) = &self.storage_class {
            a.insert(Attribute::StorageClass, c.clone().into());
        }
        a
    }

    fn err(&self, what: impl Into<String>, e: object_store::Error) -> StorageError {
        classify(&self.location, &self.bucket, what.into(), &e, &self.secrets)
    }

    /// [`ReplicaStore::list`] with `created` from each file's `litestream-timestamp`
    /// metadata, one HEAD per file, where `list` reports the object's LastModified (S3
    /// listings carry no user metadata). Files without the metadata keep LastModified;
    /// files deleted between the LIST and their HEAD are left out.
    pub async fn list_with_timestamps(&self, level: Level) -> Result<Vec<LtxInfo>, StorageError> {
        let files = self.list(level).await?;
        let exact: Vec<Option<LtxInfo>> = stream::iter(files)
            .map(|info| async move {
                match self.created_of(&info.key).await {
                    Ok(Some(created)) => Ok(Some(LtxInfo { created, ..info })),
                    Ok(None) => Ok(Some(info)),
                    Err(e) if e.is_not_found() => Ok(None),
                    Err(e) => Err(e),
                }
            })
            .buffered(HEAD_CONCURRENCY)
            .try_collect()
            .await?;
        Ok(exact.into_iter().flatten().collect())
    }

    async fn created_of(&self, key: &LtxKey) -> Result<Option<SystemTime>, StorageError> {
        let head = GetOptions { head: true, ..Default::default() };
        let r = self.store.get_opts(&self.key_path(key), head).await.map_err(|e| self.err(format!("reading the timestamp of {key}"), e))?;
        Ok(r.attributes.get(&Attribute::Metadata(TIMESTAMP_METADATA.into())).and_then(|v| parse_timestamp(v.as_ref())))
    }

    /// Creates `key_path` (relative to the prefix) unless an object is there already:
    /// `Precondition` then, and the existing object is untouched (`If-None-Match: *`).
    pub async fn put_if_absent(&self, key_path: &str, data: Bytes) -> Result<(), StorageError> {
        let valid = !key_path.is_empty() && key_path.split('/').all(|s| !s.is_empty() && s != "." && s != "..");
        if !valid {
            return Err(StorageError::Permanent {
                location: self.location.clone(),
                what: format!("{key_path:?}"),
                detail: "not a relative object path".into(),
            });
        }
        let opts = PutOptions { mode: PutMode::Create, attributes: self.attributes(None), ..Default::default() };
        self.store.put_opts(&self.path(key_path), PutPayload::from(data), opts).await.map_err(|e| self.err(key_path, e))?;
        Ok(())
    }

    async fn put_multipart(&self, path: &Path, mut data: Bytes, attributes: Attributes) -> object_store::Result<()> {
        let upload = self.store.put_multipart_opts(path, PutMultipartOptions { attributes, ..Default::default() }).await?;
        let part = self.part_size_bytes as usize;
        let mut w = WriteMultipart::new_with_chunk_size(upload, part);
        while !data.is_empty() {
            if let Err(e) = w.wait_for_capacity(self.concurrency).await {
                let _ = w.abort().await;
                return Err(e);
            }
            w.put(data.split_to(part.min(data.len())));
        }
        // `finish` aborts the upload itself when a part or the completion fails.
        w.finish().await?;
        Ok(())
    }
}

#[async_trait]
impl ReplicaStore for S3Store {
    fn location(&self) -> &str {
        &self.location
    }

    async fn list(&self, level: Level) -> Result<Vec<LtxInfo>, StorageError> {
        let dir = self.path(&Layout::HexLevel.level_dir(level));
        let listing =
            self.store.list_with_delimiter(Some(&dir)).await.map_err(|e| self.err(format!("listing {dir}/"), e))?;
        let mut out: Vec<LtxInfo> = listing
            .objects
            .into_iter()
            .filter_map(|meta| {
                let key = LtxKey::parse_file_name(level, meta.location.filename()?)?;
                Some(LtxInfo { key, size_bytes: meta.size, created: SystemTime::from(meta.last_modified) })
            })
            .collect();
        out.sort_by_key(|i| (i.key.min, i.key.max));
        Ok(out)
    }

    async fn list_exact_times(&self, level: Level) -> Result<Vec<LtxInfo>, StorageError> {
        self.list_with_timestamps(level).await
    }

    async fn get(&self, key: &LtxKey, range: Option<Range<u64>>) -> Result<Bytes, StorageError> {
        let path = self.key_path(key);
        let what = key.to_string();
        let out_of_range = |r: &Range<u64>, size: u64| StorageError::Permanent {
            location: self.location.clone(),
            what: what.clone(),
            detail: format!("range {}..{} outside object of {size} bytes", r.start, r.end),
        };
        let opts = match &range {
            None => GetOptions::default(),
            // S3 has no empty range; a HEAD checks the object and the bounds.
            Some(r) if r.start >= r.end => {
                let head = self.store.get_opts(&path, GetOptions { head: true, ..Default::default() }).await;
                let size = head.map_err(|e| self.err(&what, e))?.meta.size;
                if r.start > r.end || r.end > size {
                    return Err(out_of_range(r, size));
                }
                return Ok(Bytes::new());
            }
            Some(r) => GetOptions { range: Some(GetRange::Bounded(r.clone())), ..Default::default() },
        };
        let result = self.store.get_opts(&path, opts).await.map_err(|e| self.err(&what, e))?;
        let size = result.meta.size;
        if let Some(r) = &range {
            if r.end > size {
                return Err(out_of_range(r, size));
            }
        }
        let data = result.bytes().await.map_err(|e| self.err(&what, e))?;
        let want = range.as_ref().map_or(size, |r| r.end - r.start);
        if data.len() as u64 != want {
            return Err(StorageError::Transient {
                location: self.location.clone(),
                what,
                detail: format!("short read: {} of {want} bytes", data.len()),
            });
        }
        Ok(data)
    }

    async fn put(&self, key: &LtxKey, data: Bytes, created: SystemTime) -> Result<(), StorageError> {
        let path = self.key_path(key);
        let attributes = self.attributes(Some(created));
        let r = if data.len() as u64 <= self.part_size_bytes {
            let opts = PutOptions { mode: PutMode::Overwrite, attributes, ..Default::default() };
            self.store.put_opts(&path, PutPayload::from(data), opts).await.map(|_| ())
        } else {
            self.put_multipart(&path, data, attributes).await
        };
        r.map_err(|e| self.err(key.to_string(), e))
    }

    async fn delete(&self, keys: &[LtxKey]) -> Result<(), StorageError> {
        if keys.is_empty() {
            return Ok(());
        }
        let paths: Vec<object_store::Result<Path>> = keys.iter().map(|k| Ok(self.key_path(k))).collect();
        // The client batches these into DeleteObjects requests of up to 1000 keys.
        let mut results = self.store.delete_stream(stream::iter(paths).boxed());
        while let Some(r) = results.next().await {
            match r {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => {
                    let what = if keys.len() == 1 { format!("deleting {}", keys[0]) } else { format!("deleting {} files", keys.len()) };
                    return Err(self.err(what, e));
                }
            }
        }
        Ok(())
    }

    async fn put_if_not_exists(&self, name: &str, data: Bytes) -> Result<(), StorageError> {
        self.put_if_absent(name, data).await
    }
}

/// Go's RFC3339Nano in UTC, as Litestream writes it: fraction trimmed of trailing zeros,
/// omitted when zero (`2026-01-02T03:04:05.123Z`, `2026-01-02T03:04:05Z`).
pub fn format_timestamp(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    let base = match jiff::Timestamp::from_second(secs) {
        Ok(ts) => ts.strftime("%Y-%m-%dT%H:%M:%S").to_string(),
        Err(_) => "9999-12-31T23:59:59".to_string(),
    };
    match d.subsec_nanos() {
        0 => format!("{base}Z"),
        n => format!("{base}.{}Z", format!("{n:09}").trim_end_matches('0')),
    }
}

/// Reads a `litestream-timestamp` value (any RFC 3339 form).
pub fn parse_timestamp(s: &str) -> Option<SystemTime> {
    s.trim().parse::<jiff::Timestamp>().ok().map(SystemTime::from)
}

/// An SSE-C key as S3 takes it, base64 of 32 bytes, from either the 32 raw bytes or
/// their base64 (Litestream accepts both).
pub fn sse_customer_key_base64(key: &[u8]) -> Result<String, String> {
    if key.len() == 32 {
        return Ok(base64_encode(key));
    }
    let text = std::str::from_utf8(key).map(str::trim).unwrap_or_default();
    let b64 = |c: u8| c.is_ascii_alphanumeric() || c == b'+' || c == b'/';
    if text.len() == 44 && text.ends_with('=') && !text.ends_with("==") && text.bytes().take(43).all(b64) {
        return Ok(text.to_string());
    }
    Err(format!("the SSE-C key must be 32 bytes or their base64 (44 characters), not {} bytes", key.len()))
}

fn base64_encode(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, &b)| acc | (u32::from(b) << (16 - 8 * i)));
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
    let mut s = if scheme.is_empty() { host.to_string() } else { format!("{scheme}://{host}") };
    if !path.is_empty() {
        s.push('/');
        s.push_str(path);
    }
    s
}

/// `https://host:port/p` → `https://bucket.host:port/p` (virtual-hosted style).
fn bucket_in_host(endpoint: &str, bucket: &str) -> String {
    match endpoint.split_once("://") {
        Some((scheme, rest)) => format!("{scheme}://{bucket}.{rest}"),
        None => format!("{bucket}.{endpoint}"),
    }
}

/// Removes secrets and newlines from text bound for an error message.
fn scrub(text: &str, secrets: &[String]) -> String {
    let mut s = text.replace(['\n', '\r'], " ");
    for secret in secrets.iter().filter(|s| s.len() >= 4) {
        s = s.replace(secret.as_str(), "***");
    }
    s
}

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
        S3Reply { status, code: xml_tag(text, "Code"), message: xml_tag(text, "Message"), region: xml_tag(text, "Region") }
    }

    fn describe(&self) -> String {
        let mut s = match (&self.code, &self.message) {
            (Some(c), Some(m)) => format!("{c}: {m}"),
            (Some(c), None) => c.clone(),
            (None, Some(m)) => m.clone(),
            (None, None) => String::new(),
        };
        if let Some(st) = self.status {
            s = if s.is_empty() { format!("HTTP {st}") } else { format!("HTTP {st} {s}") };
        }
        if let Some(r) = &self.region {
            s.push_str(&format!(" (the bucket is in region {r}: set `region: {r}`)"));
        }
        s
    }
}

fn xml_tag(text: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = text.find(&open)? + open.len();
    let end = text[start..].find(&format!("</{tag}>"))? + start;
    let v = text[start..end].trim();
    (!v.is_empty()).then(|| v.to_string())
}

fn find_http_error<'a>(e: &'a (dyn StdError + 'static)) -> Option<&'a HttpError> {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(c) = cur {
        if let Some(h) = c.downcast_ref::<HttpError>() {
            return Some(h);
        }
        cur = c.source();
    }
    None
}

/// An error and its sources, each once, joined by `: `.
fn chain_text(e: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(c) = cur {
        let s = c.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = c.source();
    }
    parts.join(": ")
}

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
fn classify(location: &str, bucket: &str, what: String, e: &object_store::Error, secrets: &[String]) -> StorageError {
    use object_store::Error as E;
    let location = location.to_string();
    let text = e.to_string();
    let reply = S3Reply::parse(&text);
    let clean = |s: &str| scrub(s, secrets);

    // No response at all: connection refused, DNS, timeouts, resets, TLS.
    if let Some(h) = find_http_error(e) {
        let detail = clean(&chain_text(h));
        let lower = detail.to_ascii_lowercase();
        if ["certificate", "tls", "handshake", "unknownissuer", "invalidcertificate"].iter().any(|w| lower.contains(w)) {
            return StorageError::Permanent {
                location,
                what,
                detail: format!(
                    "TLS failure: {detail} (check the endpoint's certificate and scheme; set AWS_CA_BUNDLE for a private CA, or skip-verify: true)"
                ),
            };
        }
        return match h.kind() {
            HttpErrorKind::Connect
            | HttpErrorKind::Request
            | HttpErrorKind::Timeout
            | HttpErrorKind::Interrupted
            | HttpErrorKind::Decode => StorageError::Transient { location, what, detail },
            _ => StorageError::Permanent { location, what, detail },
        };
    }

    let code = reply.code.as_deref().unwrap_or_default();
    let detail = clean(&reply.describe());
    let detail_or_text = || if detail.is_empty() { clean(&text) } else { detail.clone() };
    if code == "NoSuchBucket" {
        return StorageError::NotFound { location, what: format!("bucket {bucket:?}") };
    }
    match e {
        E::NotFound { .. } => return StorageError::NotFound { location, what },
        E::Precondition { .. } | E::AlreadyExists { .. } => return StorageError::Precondition { location, what },
        E::PermissionDenied { .. } | E::Unauthenticated { .. } => {
            return StorageError::PermissionDenied { location, what, detail: format!("{}; {CREDENTIALS_HINT}", detail_or_text()) };
        }
        E::NotSupported { .. } | E::NotImplemented { .. } => {
            return StorageError::Permanent { location, what, detail: clean(&text) };
        }
        _ => {}
    }
    if AUTH_CODES.contains(&code) || matches!(reply.status, Some(401 | 403)) {
        return StorageError::PermissionDenied { location, what, detail: format!("{}; {CREDENTIALS_HINT}", detail_or_text()) };
    }
    if TRANSIENT_CODES.contains(&code) || matches!(reply.status, Some(408 | 429 | 500..=599)) && reply.status != Some(507) {
        return StorageError::Transient { location, what, detail: detail_or_text() };
    }
    match reply.status {
        Some(404) => StorageError::NotFound { location, what },
        Some(409 | 412) => StorageError::Precondition { location, what },
        Some(507) => StorageError::NoSpace { location, what },
        _ => StorageError::Permanent { location, what, detail: detail_or_text() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_match_go_rfc3339nano() {
        let cases: &[(u64, u32, &str)] = &[
            (1_700_000_000, 123_000_000, "2023-11-14T22:13:20.123Z"),
            (1_700_000_000, 0, "2023-11-14T22:13:20Z"),
            (1_700_000_000, 1, "2023-11-14T22:13:20.000000001Z"),
            (0, 120_000, "1970-01-01T00:00:00.00012Z"),
        ];
        for &(s, n, want) in cases {
            let t = UNIX_EPOCH + Duration::new(s, n);
            assert_eq!(format_timestamp(t), want);
            assert_eq!(parse_timestamp(want), Some(t), "{want}");
        }
        assert_eq!(parse_timestamp("2023-11-14T23:13:20.123+01:00"), Some(UNIX_EPOCH + Duration::new(1_700_000_000, 123_000_000)));
        assert_eq!(parse_timestamp("yesterday"), None);
    }

    #[test]
    fn sse_c_keys() {
        let raw = [7u8; 32];
        let b64 = sse_customer_key_base64(&raw).unwrap();
        assert_eq!(b64, "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=");
        assert_eq!(sse_customer_key_base64(b64.as_bytes()).unwrap(), b64);
        assert_eq!(sse_customer_key_base64(format!("{b64}\n").as_bytes()).unwrap(), b64);
        assert!(sse_customer_key_base64(b"short").is_err());
        assert_eq!(base64_encode(b"ab"), "YWI=");
        assert_eq!(base64_encode(b"abc"), "YWJj");
        assert_eq!(base64_encode(b"a"), "YQ==");
    }

    #[test]
    fn endpoints_for_messages() {
        assert_eq!(display_endpoint("https://user:pw@s3.example.com:9000/x?token=1"), "https://s3.example.com:9000/x");
        assert_eq!(display_endpoint("http://127.0.0.1:3900"), "http://127.0.0.1:3900");
        assert_eq!(bucket_in_host("https://s3.example.com", "b"), "https://b.s3.example.com");
    }

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
        assert!(r.describe().contains("set `region: eu-west-1`"), "{}", r.describe());
        assert_eq!(S3Reply::parse("nothing"), S3Reply::default());
    }

    #[test]
    fn classification_reads_status_and_code() {
        let generic = |msg: &str| object_store::Error::Generic { store: "S3", source: msg.to_string().into() };
        let c = |msg: &str| classify("s3://b/p", "b", "x".into(), &generic(msg), &["s3cr3t-value".into()]);
        assert!(matches!(c("status code: 503 Service Unavailable: "), StorageError::Transient { .. }));
        assert!(matches!(c("status code: 200 OK: <Code>SlowDown</Code>"), StorageError::Transient { .. }));
        assert!(matches!(c("status code: 404 Not Found: <Code>NoSuchBucket</Code>"), StorageError::NotFound { what, .. } if what == "bucket \"b\""));
        let e = c("status code: 403 Forbidden: <Code>SignatureDoesNotMatch</Code><Message>bad s3cr3t-value\nsig</Message>");
        assert!(matches!(e, StorageError::PermissionDenied { .. }));
        let msg = e.to_string();
        assert!(!msg.contains("s3cr3t-value") && !msg.contains('\n') && msg.contains("access-key-id"), "{msg}");
        assert!(matches!(c("status code: 400 Bad Request: <Code>InvalidArgument</Code>"), StorageError::Permanent { .. }));
        assert!(matches!(c("status code: 412 Precondition Failed"), StorageError::Precondition { .. }));
        let nf = object_store::Error::NotFound { path: "k".into(), source: "<Code>NoSuchKey</Code>".to_string().into() };
        assert!(classify("l", "b", "k".into(), &nf, &[]).is_not_found());
    }

    #[test]
    fn options_are_checked_without_io() {
        let env = |_: &str| None;
        let base = S3Options {
            bucket: "b".into(),
            prefix: "/db/x/".into(),
            endpoint: Some("http://u:p@127.0.0.1:3900/".into()),
            access_key_id: Some("GK1".into()),
            secret_access_key: Some("secret".into()),
            force_path_style: true,
            ..Default::default()
        };
        let s = S3Store::with_env(base.clone(), &env).unwrap();
        assert_eq!(s.location(), "s3://b/db/x (http://127.0.0.1:3900)");
        let k = LtxKey::new(Level::SNAPSHOT, ltx::TxId::new(1).unwrap(), ltx::TxId::new(6).unwrap());
        assert_eq!(s.key_path(&k).as_ref(), "db/x/0009/0000000000000001-0000000000000006.ltx");
        assert!(!format!("{base:?}").contains("secret"));

        let err = |o: S3Options| S3Store::with_env(o, &env).unwrap_err().to_string();
        assert!(err(S3Options { part_size: Some(1024), ..base.clone() }).contains("part-size"));
        assert!(err(S3Options { access_key_id: None, secret_access_key: None, ..base.clone() }).contains("no credentials"));
        assert!(err(S3Options { sse_customer_key: Some("short".into()), ..base.clone() }).contains("SSE-C"));
        let e = err(S3Options { secret_access_key: None, ..base.clone() });
        assert!(e.contains("without secret-access-key") && e.starts_with("s3://b/db/x"), "{e}");

        let lit = |k: &str| match k {
            "LITESTREAM_ACCESS_KEY_ID" => Some("LK".to_string()),
            "LITESTREAM_SECRET_ACCESS_KEY" => Some("LS".to_string()),
            _ => None,
        };
        let s = S3Store::with_env(S3Options { access_key_id: None, secret_access_key: None, prefix: String::new(), ..base }, &lit).unwrap();
        assert_eq!(s.key_path(&k).as_ref(), "0009/0000000000000001-0000000000000006.ltx");
    }
}
